#!/usr/bin/env bash
# A private Docker engine for the docker backend's tests, and for trying the backend by hand.
#
#   docker/engine.sh start   install docker.io and debootstrap when missing; start a dockerd of
#                            our own (own data root and socket; --bridge=none, no iptables, no IP
#                            forwarding: the host's networking is never changed); make the base
#                            image without a registry (debootstrap + docker import) and build the
#                            grader image on it. Both are kept in the data root, so a second start
#                            on the same machine reuses them (and Docker's layer cache).
#   docker/engine.sh stop    stop that dockerd, by its process id
#   docker/engine.sh host    print its DOCKER_HOST (unix://...)
#
# VITSSL_DOCKER_STATE moves the state folder (default /var/lib/vitssl-docker). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${VITSSL_DOCKER_STATE:-/var/lib/vitssl-docker}
SOCK=$STATE/docker.sock
PIDFILE=$STATE/dockerd.pid
BASE=vitssl-base:bookworm
export DOCKER_HOST=unix://$SOCK

say() { echo "engine: $*" >&2; }

# the pid file's process is alive and is a dockerd (a stale file's pid may have been reused)
running() { [ -f "$PIDFILE" ] && [ "$(cat "/proc/$(cat "$PIDFILE")/comm" 2>/dev/null)" = dockerd ]; }

install_missing() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" = 0 ] || { say "needs root to install ${missing[*]}"; exit 1; }
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_daemon() {
  running && { say "dockerd already running (pid $(cat "$PIDFILE"))"; return; }
  mkdir -p "$STATE"
  say "starting dockerd with data root $STATE/data"
  dockerd --data-root "$STATE/data" --exec-root "$STATE/exec" --pidfile "$PIDFILE" -H "$DOCKER_HOST" \
    --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    >"$STATE/dockerd.log" 2>&1 &
  for _ in $(seq 60); do
    docker version >/dev/null 2>&1 && return
    sleep 1
  done
  say "dockerd did not answer within 60 s; its log:"; tail -20 "$STATE/dockerd.log" >&2; exit 1
}

base_image() {
  docker image inspect "$BASE" >/dev/null 2>&1 && return
  say "making $BASE with debootstrap (minbase + python3), no registry involved"
  local rootfs
  rootfs=$(mktemp -d "$STATE/rootfs.XXXX")
  debootstrap --variant=minbase --include=python3 bookworm "$rootfs" http://deb.debian.org/debian >"$STATE/debootstrap.log"
  tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$rootfs"
}

grader_image() {
  python3 -m pip install -q uv
  if uv run --locked course image check >/dev/null 2>&1; then
    say "grader image is current"; return
  fi
  say "building the grader image on $BASE"
  uv run --locked course image build --base "$BASE" >"$STATE/image-build.log" \
    || { tail -30 "$STATE/image-build.log" >&2; exit 1; }
  tail -1 "$STATE/image-build.log" >&2
}

case "${1:-}" in
  start) install_missing; start_daemon; base_image; grader_image; echo "$DOCKER_HOST" ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE"); kill "$pid"
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      say "dockerd stopped"
    fi ;;
  host) echo "$DOCKER_HOST" ;;
  *) echo "usage: $0 start|stop|host" >&2; exit 2 ;;
esac
