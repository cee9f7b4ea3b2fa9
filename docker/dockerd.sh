#!/usr/bin/env bash
# Start a Docker engine for this project's image builds and container tests, or reuse the one that
# already answers. Idempotent: run it as often as you like.
#
# The engine creates NO network bridge and touches no iptables rules (--bridge=none
# --iptables=false --ip-masq=false): containers and builds use the host network (`--network host`)
# and reach servers on 127.0.0.1. That suits machines where only loopback traffic is allowed, and
# it leaves a workstation's firewall alone.
#
# Environment:
#   DOCKER_DATA_ROOT  images, layers and build cache  (default /var/lib/melanoma-docker)
#   DOCKERD_LOG       the engine's log                (default /var/log/melanoma-dockerd.log)
#   DOCKERD_WAIT_S    how long to wait for the engine (default 60)
#
# dockerd must run as root; this script starts it detached (setsid + nohup) and returns once
# `docker info` answers. It is the only process of the project that keeps running as root.
# Stop it with: kill "$(cat "$DOCKER_DATA_ROOT.pid")"
set -euo pipefail

DATA_ROOT=${DOCKER_DATA_ROOT:-/var/lib/melanoma-docker}
LOG=${DOCKERD_LOG:-/var/log/melanoma-dockerd.log}
PIDFILE="$DATA_ROOT.pid"
WAIT_S=${DOCKERD_WAIT_S:-60}

if docker info >/dev/null 2>&1; then
    echo "docker: an engine already answers ($(docker info --format '{{.ServerVersion}}, data root {{.DockerRootDir}}')); reusing it"
    exit 0
fi
if ! command -v dockerd >/dev/null; then
    echo "docker/dockerd.sh: dockerd is not installed (Debian/Ubuntu: sudo apt-get install docker.io)" >&2
    exit 1
fi
if [ "$(id -u)" != "0" ]; then
    echo "docker/dockerd.sh: dockerd needs root: sudo $0" >&2
    exit 1
fi

mkdir -p "$DATA_ROOT" "$(dirname "$LOG")"
echo "docker: starting dockerd (data root $DATA_ROOT, log $LOG)"
# setsid: the engine gets its own session and survives the shell (or CI step) that started it.
setsid nohup dockerd \
    --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    --data-root "$DATA_ROOT" --pidfile "$PIDFILE" \
    >>"$LOG" 2>&1 </dev/null &

for _ in $(seq "$WAIT_S"); do
    if docker info >/dev/null 2>&1; then
        echo "docker: engine ready ($(docker info --format '{{.ServerVersion}}, storage driver {{.Driver}}'))"
        exit 0
    fi
    sleep 1
done
echo "docker/dockerd.sh: dockerd did not answer within ${WAIT_S} s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2
exit 1
