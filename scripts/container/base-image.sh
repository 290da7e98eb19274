#!/usr/bin/env bash
# Make sure the base image a generated Dockerfile starts FROM is in the engine's store.
#
#   scripts/container/base-image.sh ENGINE IMAGE        ENGINE: docker or podman
#
# CONTAINER_BASE=auto (default): use the image if present, else pull it (bounded by PULL_TIMEOUT,
#   default 120 s), else build the offline stand-in.
# CONTAINER_BASE=offline: never pull; use the image if present, else build the stand-in.
# CONTAINER_BASE=pull: the official image or nothing.
#
# The stand-in: Debian bookworm `debootstrap --variant=minbase` with python3, python3-venv,
# python3-pip and ca-certificates, made to look like python:3.11-slim (`python` on PATH, pip may
# install system-wide, the same apt sources), trusting the host's extra CAs from
# /usr/local/share/ca-certificates/, imported under IMAGE so the Bento's Dockerfile is unchanged.
# The debootstrap output is cached as a tarball in CONTAINER_CACHE; CAs are added on every import.
source "$(dirname "$0")/env.sh"

ENGINE=${1:?usage: base-image.sh ENGINE IMAGE}
IMAGE=${2:?usage: base-image.sh ENGINE IMAGE}
MODE=${CONTAINER_BASE:-auto}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEBOOTSTRAP_TIMEOUT=${DEBOOTSTRAP_TIMEOUT:-900}
PULL_TIMEOUT=${PULL_TIMEOUT:-120}
PACKAGES=python3,python3-venv,python3-pip,ca-certificates

case "$MODE" in auto | offline | pull) ;; *) die "CONTAINER_BASE=$MODE: expected auto, offline or pull";; esac

if timeout 60 "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1; then
    say "base image $IMAGE is already in the $ENGINE store"
    exit 0
fi

if [ "$MODE" != offline ]; then
    say "pulling base image $IMAGE (at most ${PULL_TIMEOUT}s)"
    if timeout "$PULL_TIMEOUT" "$ENGINE" pull "$IMAGE"; then exit 0; fi
    [ "$MODE" = pull ] && die "could not pull base image $IMAGE (CONTAINER_BASE=pull: no stand-in)"
    say "pull failed; building the offline stand-in instead"
fi

# The stand-in has Debian bookworm's Python 3.11; it can only replace a Python 3.11 slim image.
case "${IMAGE#docker.io/}" in
python:3.11-slim | library/python:3.11-slim | python:3.11-slim-bookworm | library/python:3.11-slim-bookworm) ;;
*) die "the offline stand-in replaces only python:3.11-slim (Debian bookworm ships Python 3.11), not $IMAGE";;
esac
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "building the stand-in base needs root (debootstrap, chroot)"

mkdir -p "$CONTAINER_CACHE"
ROOTFS_TAR=$CONTAINER_CACHE/debootstrap-$SUITE-minbase-$(echo "$PACKAGES $MIRROR" | sha256sum | cut -c1-12).tar
WORK=$(mktemp -d "$CONTAINER_ROOT/tmp/standin.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs

if [ -s "$ROOTFS_TAR" ]; then
    say "using cached debootstrap rootfs $ROOTFS_TAR"
    mkdir -p "$ROOTFS"
    tar -C "$ROOTFS" -xf "$ROOTFS_TAR" || die "cannot unpack cached rootfs $ROOTFS_TAR (delete it to rebuild)"
else
    say "debootstrap --variant=minbase $SUITE with $PACKAGES from $MIRROR (at most ${DEBOOTSTRAP_TIMEOUT}s; about 1-2 min)"
    start=$SECONDS
    if ! timeout "$DEBOOTSTRAP_TIMEOUT" debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log" >&2
        die "debootstrap of $SUITE from $MIRROR failed (log above; set DEBIAN_MIRROR to use another mirror)"
    fi
    # Trim what a container never uses, then cache the pristine rootfs for the next run.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
    tar -C "$ROOTFS" -cf "$ROOTFS_TAR.part" . && mv "$ROOTFS_TAR.part" "$ROOTFS_TAR" \
        || die "cannot write the debootstrap cache $ROOTFS_TAR"
    say "debootstrap done in $((SECONDS - start))s; cached as $ROOTFS_TAR"
fi

# Make it look like the official python:3.11-slim (Debian's slim images keep no docs, man pages
# or translations, and tell dpkg not to install them later either).
rm -rf "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/slim-excludes" <<EXCLUDES
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
EXCLUDES
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
[ -e "$ROOTFS/usr/bin/pip" ] || ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/pip"
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
# Trust the same extra CAs as the host (a TLS-intercepting proxy's CA, a company CA).
mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
extra=$(find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null | wc -l)
if [ "$extra" -gt 0 ]; then
    cp -a /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
fi
timeout 120 chroot "$ROOTFS" update-ca-certificates >"$WORK/ca.log" 2>&1 || { cat "$WORK/ca.log" >&2; die "update-ca-certificates failed inside the stand-in"; }
say "stand-in trusts $extra extra CA certificate(s) from /usr/local/share/ca-certificates"

CERTS=/etc/ssl/certs/ca-certificates.crt
# Name it as Docker Hub would: podman resolves the Dockerfile's short "python:3.11-slim" to this.
first=${IMAGE%%/*}
if [ "$ENGINE" = podman ] && { [ "$first" = "$IMAGE" ] || ! [[ $first == *.* || $first == *:* || $first == localhost ]]; }; then
    [ "$first" = "$IMAGE" ] && IMAGE=docker.io/library/$IMAGE || IMAGE=docker.io/$IMAGE
fi
say "importing the stand-in as $IMAGE"
tar -C "$ROOTFS" -c . | timeout 600 "$ENGINE" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV SSL_CERT_FILE=$CERTS" \
    --change "ENV PIP_CERT=$CERTS" \
    --change "ENV REQUESTS_CA_BUNDLE=$CERTS" \
    --change 'LABEL org.opencontainers.image.description=tabserve-offline-stand-in-for-python-3.11-slim-debootstrap-bookworm' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >"$WORK/import.log" 2>&1 || { cat "$WORK/import.log" >&2; die "$ENGINE import of the stand-in base as $IMAGE failed"; }
say "base image $IMAGE is the offline stand-in ($(timeout 60 "$ENGINE" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
