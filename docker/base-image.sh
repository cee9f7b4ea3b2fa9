#!/usr/bin/env bash
# Print the base image the project's Dockerfiles should build on (last line of stdout), making it
# available first:
#   1. the official Python image ($PYTHON_IMAGE), if it is present or can be pulled;
#   2. otherwise a local equivalent made from Debian's own packages ($LOCAL_BASE_IMAGE): debootstrap
#      bookworm (Python 3.11, venv, CA certificates) from the Debian mirror apt already uses, with
#      the bookworm-updates and security updates applied, imported with `docker import`. Nothing
#      comes from an image registry. Takes about 2-3 minutes; made once, then reused.
#
# Usage: docker/base-image.sh [--local]   (--local: skip the official image, always use the local one)
# Environment: PYTHON_IMAGE, LOCAL_BASE_IMAGE, DEBIAN_MIRROR (default: the first Debian URI in
# /etc/apt/sources.list*), REBUILD_BASE=1 (make the local image again).
# Making the local image needs root (debootstrap) and the packages debootstrap and docker.io.
set -euo pipefail

PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11.11-slim-bookworm}
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-melanoma-mlops/python-base:3.11-bookworm}
SUITE=bookworm
log() { echo "base-image: $*" >&2; }

have() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "${1:-}" != "--local" ]; then
    if have "$PYTHON_IMAGE"; then
        echo "$PYTHON_IMAGE"
        exit 0
    fi
    log "pulling $PYTHON_IMAGE"
    if timeout 600 docker pull --quiet "$PYTHON_IMAGE" >&2; then
        echo "$PYTHON_IMAGE"
        exit 0
    fi
    log "$PYTHON_IMAGE cannot be pulled (no registry reachable?): using the local Debian base $LOCAL_BASE_IMAGE"
fi

if have "$LOCAL_BASE_IMAGE" && [ "${REBUILD_BASE:-0}" != "1" ]; then
    echo "$LOCAL_BASE_IMAGE"
    exit 0
fi

debian_mirror() {
    # The first Debian archive URI apt uses here (deb822 "URIs:" or one-line "deb" entries),
    # skipping the security archive, which holds no full suite.
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -E 's/^URIs:[[:space:]]*//p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//p' \
        | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | grep -v security | head -n 1 || true
}
MIRROR=${DEBIAN_MIRROR:-$(debian_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian*}/debian-security}

for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { log "$tool is not installed (sudo apt-get install debootstrap docker.io)"; exit 1; }
done
[ "$(id -u)" = "0" ] || { log "making $LOCAL_BASE_IMAGE runs debootstrap, which needs root: sudo $0 $*"; exit 1; }

ROOTFS=$(mktemp -d /var/tmp/melanoma-base.XXXXXX)
chmod 0755 "$ROOTFS"  # becomes the image's /: mktemp made it private
trap 'rm -rf "$ROOTFS"' EXIT
log "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,netbase,tzdata \
    "$SUITE" "$ROOTFS" "$MIRROR" >&2

# Security and point-release updates, as the official images carry them.
cat >"$ROOTFS/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
chroot "$ROOTFS" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    'apt-get update -qq && apt-get upgrade -y -qq >/dev/null && apt-get clean' >&2
# Leave nothing of this machine in the image: its resolver, apt's downloaded lists and caches.
: >"$ROOTFS/etc/resolv.conf"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache

PY_VERSION=$(chroot "$ROOTFS" /usr/bin/python3 -c 'import platform; print(platform.python_version())')
log "importing as $LOCAL_BASE_IMAGE (Python $PY_VERSION)"
# An imported image has no environment at all: give it the PATH and locale the official image has,
# so `ENV PATH=/opt/venv/bin:$PATH` in the Dockerfiles expands the same on both bases.
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap --variant=minbase $SUITE from $MIRROR (Python $PY_VERSION)" \
    - "$LOCAL_BASE_IMAGE" >&2
echo "$LOCAL_BASE_IMAGE"
