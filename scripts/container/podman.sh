#!/usr/bin/env bash
# podman with this project's storage (CONTAINER_ROOT, default .containers/), where
# `make containerize` leaves the image:  scripts/container/podman.sh images | push | run ...
source "$(dirname "$0")/env.sh"
trap - ERR
exec podman "$@"
