#!/usr/bin/env bash
# Build the project's images from the repository's Dockerfiles (`make images`, `make images-gpu`).
#
# Usage: docker/build-images.sh IMAGE...   with IMAGE one of
#   pipeline-cpu   components/Dockerfile, TF_PACKAGE=tensorflow-cpu     -> $PIPELINE_CPU_IMAGE
#   pipeline-gpu   components/Dockerfile, TF_PACKAGE=tensorflow[and-cuda] -> $PIPELINE_IMAGE
#   mlflow-server  mlflow/Dockerfile                                    -> $MLFLOW_IMAGE
#   app            app/Dockerfile                                       -> $APP_IMAGE
#   serving        serving/Dockerfile (the V2 inference server)         -> $SERVING_IMAGE
#
# Environment (the Makefile passes all of these):
#   PYTHON_IMAGE           official base image to use when it is present or can be pulled
#   BASE_IMAGE             skip the choice and build on this image
#   CA_BUNDLE              a CA bundle for pip behind a TLS-intercepting proxy, given to the build as
#                          the BuildKit secret `ca` (never stored in the image); empty = none
#   BAKE_IMAGENET_WEIGHTS  1 = bake ResNet50's ImageNet weights into the pipeline images
#   BUILD_NETWORK          network of the build's RUN steps (default host: no bridge is needed)
#   DOCKER                 the docker client to build with (default: one that can run BuildKit)
#
# Layer caches are reused: a second run rebuilds nothing, a code change only the project layer.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_PREFIX=${IMAGE_PREFIX:-melanoma-mlops}
PIPELINE_IMAGE=${PIPELINE_IMAGE:-$IMAGE_PREFIX/pipeline:$VERSION}
PIPELINE_CPU_IMAGE=${PIPELINE_CPU_IMAGE:-$IMAGE_PREFIX/pipeline:$VERSION-cpu}
MLFLOW_IMAGE=${MLFLOW_IMAGE:-$IMAGE_PREFIX/mlflow-server:$VERSION}
APP_IMAGE=${APP_IMAGE:-$IMAGE_PREFIX/app:$VERSION}
SERVING_IMAGE=${SERVING_IMAGE:-$IMAGE_PREFIX/serving:$VERSION}
BAKE_IMAGENET_WEIGHTS=${BAKE_IMAGENET_WEIGHTS:-0}
BUILD_NETWORK=${BUILD_NETWORK:-host}
CA_BUNDLE=${CA_BUNDLE:-}

log() { echo "build-images: $*" >&2; }

[ $# -gt 0 ] || { log "usage: $0 pipeline-cpu|pipeline-gpu|mlflow-server|app|serving ..."; exit 2; }

# The Dockerfiles use BuildKit features (secret and bind mounts). A client from Docker 23 or newer
# builds with BuildKit only through the buildx plugin; a 20.10 client (Debian's docker.io) has
# BuildKit built in and takes DOCKER_BUILDKIT=1. Neither pulls anything to build.
buildkit_client() {
    local candidate version
    for candidate in docker /usr/bin/docker; do
        command -v "$candidate" >/dev/null || continue
        if "$candidate" buildx version >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
        version=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
        if [ -n "$version" ] && [ "${version%%.*}" -lt 23 ] 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}
DOCKER=${DOCKER:-$(buildkit_client || true)}
if [ -z "$DOCKER" ]; then
    log "no docker client here can build with BuildKit: install the buildx plugin" \
        "(Docker CE: docker-buildx-plugin) or use Debian's docker.io client (/usr/bin/docker)"
    exit 1
fi
"$DOCKER" info >/dev/null 2>&1 || { log "the Docker engine does not answer: start it (sudo docker/dockerd.sh)"; exit 1; }

BASE_IMAGE=${BASE_IMAGE:-$(PYTHON_IMAGE=${PYTHON_IMAGE:-} docker/base-image.sh)}
log "base image $BASE_IMAGE, docker client $DOCKER ($("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null))"

secret=()
if [ -n "$CA_BUNDLE" ]; then
    [ -r "$CA_BUNDLE" ] || { log "CA_BUNDLE=$CA_BUNDLE is not a readable file"; exit 1; }
    secret=(--secret "id=ca,src=$CA_BUNDLE")
    log "CA bundle $CA_BUNDLE passed as the build secret 'ca' (not stored in any image)"
fi

build() {
    local tag=$1 dockerfile=$2
    shift 2
    local start=$SECONDS previous current
    previous=$("$DOCKER" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    log "building $tag from $dockerfile"
    DOCKER_BUILDKIT=1 "$DOCKER" build --network "$BUILD_NETWORK" --progress plain \
        -f "$dockerfile" -t "$tag" \
        --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" \
        "${secret[@]}" "$@" .
    log "built $tag in $((SECONDS - start)) s"
    # The image this tag named before is now untagged: remove it (its layers stay, shared with the
    # new one) unless something still uses it. Only the image this build replaced is touched.
    current=$("$DOCKER" image inspect --format '{{.Id}}' "$tag")
    if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
        "$DOCKER" image rm "$previous" >/dev/null 2>&1 || true
    fi
    built+=("$tag")
}

built=()
for image in "$@"; do
    case "$image" in
        pipeline-cpu)
            build "$PIPELINE_CPU_IMAGE" components/Dockerfile --build-arg TF_PACKAGE=tensorflow-cpu \
                --build-arg "BAKE_IMAGENET_WEIGHTS=$BAKE_IMAGENET_WEIGHTS" ;;
        pipeline-gpu)
            build "$PIPELINE_IMAGE" components/Dockerfile --build-arg "TF_PACKAGE=tensorflow[and-cuda]" \
                --build-arg "BAKE_IMAGENET_WEIGHTS=$BAKE_IMAGENET_WEIGHTS" ;;
        mlflow-server) build "$MLFLOW_IMAGE" mlflow/Dockerfile ;;
        app) build "$APP_IMAGE" app/Dockerfile ;;
        serving) build "$SERVING_IMAGE" serving/Dockerfile ;;
        *) log "unknown image $image (pipeline-cpu, pipeline-gpu, mlflow-server, app, serving)"; exit 2 ;;
    esac
done

echo
for tag in "${built[@]}"; do
    "$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}  {{.ID}}' "$tag"
done
