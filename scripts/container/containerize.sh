#!/usr/bin/env bash
# Check the store has MODEL_TAG (only the default model is trained when missing; any other missing
# tag stops with exit code 2 and one line, see tabserve/core/model_tags.py), `bentoml build` a Bento that
# packs exactly that model and installs what it needs (requirements.txt, plus an imported model's library
# and Debian packages from its card: the build file `model_tags bentofile` prints, as `make build` does),
# make sure the base image exists (offline stand-in if it can't be pulled),
# `bentoml containerize` with the backend that works, then slim the image (drop the build tools the
# service does not need). The image serves the packed model with no MODEL_TAG set, and carries the
# label tabserve.model=<name:version> naming it.
#
#   scripts/container/containerize.sh IMAGE          e.g. tabserve:latest
#
# Environment: MODEL_TAG (default penguins:latest), BENTOML_HOME (the model/Bento store),
# CONTAINER_BACKEND, CONTAINER_BASE (see base-image.sh), CONTAINER_SLIM=0 to keep the image as
# BentoML built it, BUILD_TIMEOUT (seconds, default 2400).
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT" || exit 1

IMAGE=${1:?usage: containerize.sh IMAGE}
MODEL_TAG=${MODEL_TAG:-penguins:latest}
export MODEL_TAG  # `bentoml build` packs the model service.py's ModelService declares: this one
BUILD_TIMEOUT=${BUILD_TIMEOUT:-2400}
[ -x "$BIN/bentoml" ] || die "$BIN/bentoml not found: run \`make install\` first"

# Exit code 2 and the helper's one line when another tag is missing (no ERR-trap line on top).
timeout 900 "$BIN/python" -m tabserve.core.model_tags ensure "$MODEL_TAG" || exit $?

BACKEND=$(pick_backend) || exit 1
RUNNER=$(runner_for "$BACKEND") || exit 1
say "backend: $BACKEND (images run with $RUNNER); storage: ${CONTAINER_ROOT}"

# The build file: bentofile.yaml, or a copy with what the packed models need (in a directory of our own).
BUILD_FILES=$(mktemp -d "$CONTAINER_ROOT/tmp/bentofile.XXXXXX")
trap 'rm -rf "$BUILD_FILES"' EXIT
BENTOFILE=$(timeout 300 "$BIN/python" -m tabserve.core.model_tags bentofile "$BUILD_FILES") || exit $?
say "bentoml build -f $BENTOFILE (MODEL_TAG=$MODEL_TAG)"
out=$(timeout 900 "$BIN/bentoml" build -f "$BENTOFILE" --output tag 2>&1) || { echo "$out" >&2; die "bentoml build failed"; }
BENTO=$(echo "$out" | sed -n 's/^__tag__://p' | tail -n 1)
[ -n "$BENTO" ] || { echo "$out" >&2; die "bentoml build printed no Bento tag"; }
BENTO_DIR=$(timeout 120 "$BIN/bentoml" get "$BENTO" -o path 2>/dev/null) || die "bentoml get $BENTO -o path failed"
DOCKERFILE=$BENTO_DIR/env/docker/Dockerfile
[ -f "$DOCKERFILE" ] || die "the Bento has no generated Dockerfile at $DOCKERFILE"
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$DOCKERFILE")
[ -n "$BASE" ] || die "no FROM line in $DOCKERFILE"
# The model the Bento packs (and serves by default), read from its bento.yaml as the service does.
MODEL=$("$BIN/python" -c 'import sys; from pathlib import Path; from tabserve.core.config import packed_model_tag
print(packed_model_tag(Path(sys.argv[1], "src", "tabserve", "config.py")) or "")' "$BENTO_DIR")
case "${MODEL_TAG#*:}" in "$MODEL_TAG" | latest) want="${MODEL_TAG%%:*}:*" ;; *) want=$MODEL_TAG ;; esac
# shellcheck disable=SC2254
case "$MODEL" in $want) ;; *) die "Bento $BENTO packs model '${MODEL:-none}', not MODEL_TAG=$MODEL_TAG";; esac
say "built Bento $BENTO with model $MODEL; its Dockerfile starts FROM $BASE"

"$(dirname "$0")/base-image.sh" "$RUNNER" "$BASE" || exit 1

previous=$(timeout 60 "$RUNNER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
opts=()
case "$BACKEND" in
# Build steps run with chroot isolation: the OCI runtime fails here with "cgroups in hybrid mode
# not supported"; chroot needs no cgroups or namespaces of its own and is fine for RUN steps.
podman | buildah) opts=(--opt isolation=chroot) ;;
esac
opts+=(--opt "label=tabserve.model=$MODEL")
say "bentoml containerize --backend $BACKEND ${opts[*]} -t $IMAGE $BENTO (at most ${BUILD_TIMEOUT}s)"
start=$SECONDS
timeout "$BUILD_TIMEOUT" "$BIN/bentoml" containerize --backend "$BACKEND" "${opts[@]}" -t "$IMAGE" "$BENTO" \
    || die "bentoml containerize failed (backend $BACKEND)"
say "containerize took $((SECONDS - start))s"

if [ "${CONTAINER_SLIM:-1}" != 0 ]; then
    "$BIN/python" "$(dirname "$0")/slim.py" --engine "$RUNNER" --backend "$BACKEND" "$IMAGE" \
        || die "slimming the image failed (CONTAINER_SLIM=0 skips this step)"
fi
current=$(timeout 60 "$RUNNER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    # The image this tag named before is untagged now: drop it (not its parents, the build cache).
    timeout 120 "$RUNNER" rmi --no-prune "$previous" >/dev/null 2>&1 || true
fi
size=$(timeout 60 "$RUNNER" image inspect --format '{{.Size}}' "$IMAGE") || die "image $IMAGE is missing after the build"
echo "image $IMAGE: $(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }') (model $MODEL, Bento $BENTO, base $BASE, backend $BACKEND)"
