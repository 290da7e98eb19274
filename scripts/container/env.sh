# shellcheck shell=bash
# Sourced by the container scripts: error helpers, timeouts, and project-local container storage.
# Settings (environment):
#   CONTAINER_BACKEND  docker | podman | buildah | auto (default): which tool builds the image
#   CONTAINER_ROOT     podman/buildah storage, default <repo>/.containers (never /var/lib/containers)
#   CONTAINER_CACHE    where the debootstrapped stand-in base is cached between runs,
#                      default $XDG_CACHE_HOME/tabserve/containers (~/.cache/tabserve/containers)
set -euo pipefail

# Any command that fails unexpectedly names itself in one line before the script exits.
trap 'echo "error: ${BASH_SOURCE[0]##*/} line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
die() { echo "error: $*" >&2; exit 1; }
say() { echo "==> $*"; }

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONTAINER_ROOT=${CONTAINER_ROOT:-$REPO_ROOT/.containers}
CONTAINER_CACHE=${CONTAINER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/cache}/.cache}/tabserve/containers}
BIN=${BIN:-$REPO_ROOT/.venv/bin}
case "$BIN" in /*) ;; *) BIN=$REPO_ROOT/$BIN ;; esac

# podman and buildah (and `bentoml containerize`, which calls them) read these: storage stays under
# CONTAINER_ROOT, events and logs go to files (no systemd/journald needed), cgroups via cgroupfs.
# A root these scripts created is marked as theirs: only such a root is ever wiped whole.
[ -e "$CONTAINER_ROOT" ] || { mkdir -p "$CONTAINER_ROOT" && touch "$CONTAINER_ROOT/.tabserve-owned"; }
mkdir -p "$CONTAINER_ROOT/storage" "$CONTAINER_ROOT/run" "$CONTAINER_ROOT/tmp"
cat >"$CONTAINER_ROOT/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CONTAINER_ROOT/storage"
runroot = "$CONTAINER_ROOT/run"
CONF
cat >"$CONTAINER_ROOT/containers.conf" <<CONF
[containers]
log_driver = "k8s-file"
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
tmp_dir = "$CONTAINER_ROOT/tmp"
CONF
export CONTAINERS_STORAGE_CONF=$CONTAINER_ROOT/storage.conf
export CONTAINERS_CONF=$CONTAINER_ROOT/containers.conf
export TMPDIR=${TMPDIR:-/tmp}

# The engine that builds (BACKEND) and the one that runs containers (RUNNER: docker or podman).
docker_healthy() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }

pick_backend() {
    local want=${CONTAINER_BACKEND:-auto}
    case "$want" in
    docker) docker_healthy || die "CONTAINER_BACKEND=docker but the Docker engine does not answer (docker info)";;
    podman | buildah) command -v "$want" >/dev/null || die "CONTAINER_BACKEND=$want but $want is not installed (apt-get install $want)";;
    auto)
        if docker_healthy; then want=docker
        elif command -v podman >/dev/null; then want=podman
        elif command -v buildah >/dev/null; then want=buildah
        else die "no container backend: the Docker engine does not answer and neither podman nor buildah is installed (apt-get install podman)"
        fi;;
    *) die "CONTAINER_BACKEND=$want: expected docker, podman, buildah or auto";;
    esac
    echo "$want"
}

# Podman or Docker run the image; buildah-built images live in the same storage podman reads.
runner_for() { if [ "$1" = docker ]; then echo docker; else command -v podman >/dev/null || die "podman is needed to run the image (apt-get install podman)"; echo podman; fi; }
