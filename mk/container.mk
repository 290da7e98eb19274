# Containers (included by the Makefile). Docker when its engine answers, else Podman (or buildah
# with CONTAINER_BACKEND=buildah); when the base image can't be pulled, an offline stand-in is
# built from Debian packages. See docs/containers.md.
#   make containerize                    build the image CONTAINER_IMAGE (default tabserve:latest) packing MODEL_TAG
#   make container-test                  build it, run it with no MODEL_TAG, check /readyz, that it serves
#                                        that model (its own example record), non-root; clean up
#   MODEL_TAG=churn make container-test  ... for the model "churn" (default penguins:latest; only the
#                                        default is trained when missing, another missing tag stops: exit 2)
#   make container-test KEEP_IMAGES=1    ... and keep the image
# Settings: CONTAINER_BACKEND=auto|docker|podman|buildah, CONTAINER_BASE=auto|offline|pull,
# CONTAINER_ROOT (podman storage, default .containers/), CONTAINER_CACHE (debootstrap cache,
# default ~/.cache/tabserve/containers), CONTAINER_SLIM=0 (keep the build tools), READY_TIMEOUT.
CONTAINER_IMAGE ?= tabserve:latest
CONTAINER_SCRIPTS := scripts/container

.PHONY: container-deps containerize container-test container-push container-clean

container-deps:  ## install podman and debootstrap when no Docker engine answers (Debian, root)
	$(CONTAINER_SCRIPTS)/install-deps.sh

containerize: $(INSTALLED)  ## bentoml build with MODEL_TAG, then build the image CONTAINER_IMAGE serving it (Docker or Podman; offline base)
	BIN=$(BIN) $(CONTAINER_SCRIPTS)/containerize.sh $(CONTAINER_IMAGE)

container-test: containerize  ## build CONTAINER_IMAGE, run it with no MODEL_TAG, check /readyz, that it serves MODEL_TAG, non-root, clean up
	BIN=$(BIN) $(CONTAINER_SCRIPTS)/container-test.sh $(CONTAINER_IMAGE)

container-push:  ## push CONTAINER_IMAGE to PUSH_TO (e.g. make container-push PUSH_TO=registry.example.com/ml/tabserve:1.0)
	@test -n "$(PUSH_TO)" || { echo "error: set PUSH_TO=registry/name:tag" >&2; exit 2; }
	if timeout 20 docker info >/dev/null 2>&1; then docker tag $(CONTAINER_IMAGE) $(PUSH_TO) && docker push $(PUSH_TO); \
	else $(CONTAINER_SCRIPTS)/podman.sh push $(CONTAINER_IMAGE) docker://$(PUSH_TO); fi

container-clean:  ## remove the project-local container storage (the debootstrap cache stays)
	@if [ -f .containers/.tabserve-owned ]; then $(CONTAINER_SCRIPTS)/podman.sh system reset -f >/dev/null 2>&1; umount .containers/storage/overlay 2>/dev/null; rm -rf .containers; fi
