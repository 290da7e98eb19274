"""Slim a containerized Bento: drop the build tools BentoML's Dockerfile installs but the service
does not use at run time, then flatten the image into one layer so the removal saves space.

    python scripts/container/slim.py --engine podman --backend podman IMAGE

BentoML's Debian Dockerfile always runs `apt-get install ... build-essential git` (for packages
without wheels; every dependency of this project ships wheels) and `pip install uv` (only used to
build the venv). Here they are purged with their auto-installed dependencies, apt lists and caches
are removed, and the file system is exported and re-imported with the original image config (env,
user, workdir, entrypoint, ports, labels), so the image runs exactly as BentoML built it.
Ownership is kept (export/import is a tar stream), the non-root user stays the image's user.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

# Installed by BentoML's default Debian command for building wheels from source; not needed to run.
BUILD_PACKAGES = ["build-essential", "git", "gnupg2", "gnupg", "dpkg-dev", "make", "gcc", "g++", "cpp"]
PURGE = f"""set -eu
installed=""
for p in {" ".join(BUILD_PACKAGES)}; do
    if dpkg-query -W -f='${{Status}}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        installed="$installed $p"
    fi
done
if [ -n "$installed" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $installed >/dev/null
    # Their dependencies were marked "automatically installed"; the base image's own packages were not.
    # Suggests/Recommends of Python (binutils, perl) must not keep them.
    DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -q \\
        -o APT::AutoRemove::RecommendsImportant=false -o APT::AutoRemove::SuggestsImportant=false >/dev/null
fi
# uv built /app/.venv; the service does not use it (BentoML pip-installed it system-wide).
rm -rf /usr/local/bin/uv /usr/local/bin/uvx \\
       /usr/local/lib/python3*/*-packages/uv /usr/local/lib/python3*/*-packages/uv-*
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \\
       /root/.cache /tmp/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
echo "slim: purged:${{installed:- nothing}}"
"""


class Failed(Exception):
    pass


def run(cmd: list[str], timeout: int, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, timeout=timeout, text=True, capture_output=True, **kw)
    except subprocess.TimeoutExpired:
        raise Failed(f"timed out after {timeout}s: {' '.join(cmd[:3])} ...") from None
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise Failed(f"{' '.join(cmd[:3])} ... exited {proc.returncode}")
    return proc


def quote_env(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def changes_from(config: dict) -> list[str]:
    """The image config as Dockerfile instructions for `import --change`."""
    out = []
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        out.append(f"ENV {key}={quote_env(value)}")
    for key, value in (config.get("Labels") or {}).items():
        out.append(f"LABEL {key}={quote_env(value)}")
    for port in config.get("ExposedPorts") or {}:
        out.append(f"EXPOSE {port}")
    if config.get("WorkingDir"):
        out.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        out.append(f"USER {config['User']}")
    if config.get("StopSignal"):
        out.append(f"STOPSIGNAL {config['StopSignal']}")
    if config.get("Entrypoint"):
        out.append(f"ENTRYPOINT {json.dumps(config['Entrypoint'])}")
    if config.get("Cmd"):
        out.append(f"CMD {json.dumps(config['Cmd'])}")
    return out


def build_cmd(backend: str, containerfile: str, tag: str, context: str) -> list[str]:
    if backend == "docker":
        return ["docker", "build", "-f", containerfile, "-t", tag, context]
    if backend == "buildah":
        return ["buildah", "bud", "--isolation", "chroot", "-f", containerfile, "-t", tag, context]
    return ["podman", "build", "--isolation", "chroot", "-f", containerfile, "-t", tag, context]


def slim(engine: str, backend: str, image: str) -> None:
    config = json.loads(run([engine, "image", "inspect", "--format", "{{json .Config}}", image], 60).stdout)
    before = int(run([engine, "image", "inspect", "--format", "{{.Size}}", image], 60).stdout.strip())
    purged = f"{image.rsplit(':', 1)[0]}:slim-work"
    container = None
    with tempfile.TemporaryDirectory() as context:
        with open(f"{context}/Containerfile", "w") as f:
            f.write(f"FROM {image}\nUSER root\nRUN {json.dumps(['sh', '-c', PURGE])}\n")
        print(f"==> slim: purging build tools from {image}", flush=True)
        out = run(build_cmd(backend, f"{context}/Containerfile", purged, context), 1200).stdout
        print("\n".join(line for line in out.splitlines() if line.startswith("slim:")), flush=True)
    try:
        container = run([engine, "create", purged, "true"], 120).stdout.strip().splitlines()[-1]
        export = subprocess.Popen([engine, "export", container], stdout=subprocess.PIPE)
        cmd = [engine, "import"]
        for change in changes_from(config):
            cmd += ["--change", change]
        try:
            run(cmd + ["-", image], 1200, stdin=export.stdout)
        finally:
            export.stdout.close()
            if export.wait(timeout=60) != 0:
                raise Failed(f"{engine} export exited {export.returncode}")
    finally:
        if container:
            subprocess.run([engine, "rm", "-f", container], capture_output=True, timeout=120)
        # --no-prune: keep the image BentoML built (now untagged): its layers are the build cache.
        subprocess.run([engine, "rmi", "--no-prune", purged], capture_output=True, timeout=120)
    after = int(run([engine, "image", "inspect", "--format", "{{.Size}}", image], 60).stdout.strip())
    print(f"==> slim: {image} {before / 1e6:.0f} MB -> {after / 1e6:.0f} MB (one layer)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engine", choices=["docker", "podman"], required=True, help="the engine whose store holds IMAGE"
    )
    parser.add_argument("--backend", choices=["docker", "podman", "buildah"], required=True, help="the builder")
    parser.add_argument("image")
    args = parser.parse_args()
    try:
        slim(args.engine, args.backend, args.image)
    except (Failed, OSError, json.JSONDecodeError, ValueError) as exc:
        print(f"error: slim: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
