#!/usr/bin/env bash
# Run the image with no MODEL_TAG, wait for /readyz, check that it serves the model it was built
# with (the image label tabserve.model, set by containerize.sh) by POSTing that model's own example
# record, check that every process in the container runs as a non-root user, stop it, clean up.
#
#   scripts/container/container-test.sh IMAGE
#
# Environment: CONTAINER_PORT (default: a free port), READY_TIMEOUT (seconds, default 240),
# KEEP_IMAGES=1 to keep the images (and the project-local storage) afterwards.
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT" || exit 1

IMAGE=${1:?usage: container-test.sh IMAGE}
READY_TIMEOUT=${READY_TIMEOUT:-240}
BACKEND=$(pick_backend) || exit 1
RUNNER=$(runner_for "$BACKEND") || exit 1
PORT=${CONTAINER_PORT:-$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
NAME=tabserve-test-$$
LOG=$CONTAINER_ROOT/tmp/$NAME.log
URL=http://127.0.0.1:$PORT
# The API key reaches the service as the API_KEY environment variable (on Kubernetes from a Secret).
PROBE_API_KEY=$("$BIN/python" -c 'import secrets; print(secrets.token_hex(16))')
export PROBE_API_KEY
RUN_PID=

timeout 60 "$RUNNER" image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found in the $RUNNER store: run \`make containerize\` first"
# The model the image was built with; it must serve it with no MODEL_TAG in its environment.
MODEL=$(timeout 60 "$RUNNER" image inspect --format '{{ index .Config.Labels "tabserve.model" }}' "$IMAGE")
case "$MODEL" in "" | "<no value>") die "image $IMAGE has no label tabserve.model: build it with \`make containerize\`";; esac
if timeout 60 "$RUNNER" image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | grep -q '^MODEL_TAG='; then
    die "image $IMAGE sets MODEL_TAG in its environment: the Bento must choose its model by itself"
fi

stop_container() {
    if [ "$RUNNER" = podman ]; then
        # SIGTERM to `podman run` stops the container (BentoML shuts down cleanly); bounded wait.
        if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
            kill -TERM "$RUN_PID" 2>/dev/null || true
            for _ in $(seq 60); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$RUN_PID" 2>/dev/null || true
        fi
    fi
    timeout 60 "$RUNNER" rm -f "$NAME" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    stop_container
    if [ "${KEEP_IMAGES:-0}" = 1 ]; then
        say "kept image $IMAGE (KEEP_IMAGES=1)"
    else
        timeout 120 "$RUNNER" rmi -f "$IMAGE" >/dev/null 2>&1 || true
        if [ "$RUNNER" = podman ] && [ -f "$CONTAINER_ROOT/.tabserve-owned" ]; then
            # The storage is this project's own: drop it whole (base image included; the debootstrap
            # cache in $CONTAINER_CACHE stays, so the next build re-imports it in seconds).
            timeout 120 podman system reset -f >/dev/null 2>&1 || true
            umount "$CONTAINER_ROOT/storage/overlay" 2>/dev/null || true
            rm -rf "$CONTAINER_ROOT" || true
        fi
        say "removed container $NAME, image $IMAGE and the storage under $CONTAINER_ROOT"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting $IMAGE (built with model $MODEL) as $NAME on port $PORT ($RUNNER), with no MODEL_TAG"
if [ "$RUNNER" = docker ]; then
    timeout 120 env -u MODEL_TAG docker run -d --name "$NAME" -p "127.0.0.1:$PORT:3000" -e API_KEY="$PROBE_API_KEY" "$IMAGE" >/dev/null || die "docker run $IMAGE failed"
else
    # On cgroup v1/hybrid hosts crun fails ("cgroups in hybrid mode not supported"): run without a
    # cgroup of its own, in a private mount namespace where the cgroup2 mount is hidden, with
    # explicit ulimits (crun may not raise RLIMIT_NOFILE here). Host network on a loopback port.
    env -u MODEL_TAG API_KEY="$PROBE_API_KEY" unshare -m --propagation private sh -c '
        if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
        exec podman run --rm --name "$0" --cgroups=disabled --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
            --network host -e PORT="$1" -e API_KEY "$2"' "$NAME" "$PORT" "$IMAGE" >"$LOG" 2>&1 &
    RUN_PID=$!
fi

logs() { if [ "$RUNNER" = docker ]; then timeout 30 docker logs --tail 60 "$NAME" 2>&1; else tail -n 60 "$LOG"; fi; }
running() { if [ "$RUNNER" = docker ]; then [ "$(timeout 30 docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" = true ]; else kill -0 "$RUN_PID" 2>/dev/null; fi; }

start=$SECONDS
until "$BIN/python" scripts/container/probe.py ready "$URL"; do
    if ! running; then logs >&2; die "the container exited before /readyz answered (its log is above)"; fi
    if [ $((SECONDS - start)) -ge "$READY_TIMEOUT" ]; then logs >&2; die "GET $URL/readyz did not answer 200 within ${READY_TIMEOUT}s (container log above)"; fi
    sleep 2
done
say "ready: GET /readyz -> 200 after $((SECONDS - start))s"

"$BIN/python" scripts/container/probe.py predict "$URL" "$MODEL" || { logs >&2; die "the prediction check failed"; }

# Non-root: the image's configured user, and the real uid of every process in the container.
user=$(timeout 30 "$RUNNER" image inspect --format '{{.Config.User}}' "$IMAGE")
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || die "image $IMAGE is configured to run as '${user:-root}'"
if [ "$RUNNER" = docker ]; then
    uids=$(timeout 30 docker top "$NAME" -eo uid,pid,comm | awk 'NR > 1 { print $1 }' | sort -u | tr '\n' ' ')
else
    pid=$(timeout 30 podman inspect --format '{{.State.Pid}}' "$NAME") || die "cannot inspect container $NAME"
    ns=$(readlink "/proc/$pid/ns/pid") || die "container process $pid is gone"
    in_container() { for p in /proc/[0-9]*; do if [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ]; then echo "$p"; fi; done; }
    uids=$(for p in $(in_container); do awk '/^Uid:/ { print $2 }' "$p/status" 2>/dev/null || true; done | sort -u | tr '\n' ' ')
fi
[ -n "${uids// /}" ] || die "found no processes of container $NAME"
case " $uids " in *" 0 "*) die "a process in the container runs as root (uids: $uids)";; esac
nproc=$(if [ "$RUNNER" = docker ]; then timeout 30 docker top "$NAME" | tail -n +2 | wc -l; else in_container | wc -l; fi)
echo "non-root ok: image user '$user'; all $nproc processes in the container run as uid ${uids% } (not 0)"

stop_container
echo "container-test passed: $IMAGE, started with no MODEL_TAG, served its model $MODEL (a correct prediction for the model's example record), behind its API key, as a non-root user"
