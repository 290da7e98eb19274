#!/usr/bin/env bash
# Install what `make containerize` / `make container-test` need on a fresh Debian machine without a
# Docker engine: podman (builds and runs the image) and debootstrap (the offline stand-in base).
# Does nothing when a Docker engine answers or both tools are already there.
source "$(dirname "$0")/env.sh"

if docker_healthy; then say "Docker engine answers: nothing to install"; exit 0; fi
missing=()
for tool in podman debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -eq 0 ]; then say "podman and debootstrap are installed"; exit 0; fi
command -v apt-get >/dev/null || die "cannot install ${missing[*]}: no apt-get here; install them with your package manager"
[ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root (sudo $0)"
say "apt-get install ${missing[*]}"
timeout 600 apt-get update -q >/dev/null || die "apt-get update failed"
DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
say "installed: $(podman --version), debootstrap $(dpkg-query -W -f='${Version}' debootstrap)"
