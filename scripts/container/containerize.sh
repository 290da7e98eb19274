#!/usr/bin/env bash
# Train (if the store lacks the model), `bentoml build`, make sure the base image exists (offline
# stand-in if it can't be pulled), `bentoml containerize` with the backend that works, then slim
# the image (drop the build tools the service does not need).
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
BUILD_TIMEOUT=${BUILD_TIMEOUT:-2400}
[ -x "$BIN/bentoml" ] || die "$BIN/bentoml not found: run \`make install\` first"

BACKEND=$(pick_backend) || exit 1
RUNNER=$(runner_for "$BACKEND") || exit 1
say "backend: $BACKEND (images run with $RUNNER); storage: ${CONTAINER_ROOT}"

if ! timeout 120 "$BIN/bentoml" models get "$MODEL_TAG" >/dev/null 2>&1; then
    say "model $MODEL_TAG is not in the store; training it"
    timeout 900 "$BIN/python" train.py || die "training failed"
fi

say "bentoml build"
out=$(timeout 900 "$BIN/bentoml" build --output tag 2>&1) || { echo "$out" >&2; die "bentoml build failed"; }
BENTO=$(echo "$out" | sed -n 's/^__tag__://p' | tail -n 1)
[ -n "$BENTO" ] || { echo "$out" >&2; die "bentoml build printed no Bento tag"; }
BENTO_DIR=$(timeout 120 "$BIN/bentoml" get "$BENTO" -o path 2>/dev/null) || die "bentoml get $BENTO -o path failed"
DOCKERFILE=$BENTO_DIR/env/docker/Dockerfile
[ -f "$DOCKERFILE" ] || die "the Bento has no generated Dockerfile at $DOCKERFILE"
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$DOCKERFILE")
[ -n "$BASE" ] || die "no FROM line in $DOCKERFILE"
say "built Bento $BENTO; its Dockerfile starts FROM $BASE"

"$(dirname "$0")/base-image.sh" "$RUNNER" "$BASE" || exit 1

previous=$(timeout 60 "$RUNNER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
opts=()
case "$BACKEND" in
# Build steps run with chroot isolation: the OCI runtime fails here with "cgroups in hybrid mode
# not supported"; chroot needs no cgroups or namespaces of its own and is fine for RUN steps.
podman | buildah) opts=(--opt isolation=chroot) ;;
esac
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
echo "image $IMAGE: $(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }') (Bento $BENTO, base $BASE, backend $BACKEND)"
