#!/usr/bin/env bash
# Builds the image every Kubeflow step runs in (the repository Dockerfile) on a bare
# Debian host, CPU-only unless --cuda; .ci/run uses it before the tests.
#
#   scripts/build_image.sh [--tag NAME] [--cuda] [--prepare] [-- MORE DOCKER BUILD ARGUMENTS]
#
# --prepare stops after steps 1 and 2 (all that needs apt and root, python3 for the label too),
# so the build can run beside other work, as .ci/run runs it beside the environment's set-up.
#
# 1. Docker: without `dockerd`, installs Debian's docker.io; when no daemon answers,
#    starts `dockerd` in the background (overlay2, default flags; log in
#    /var/log/cns-dockerd.log). Both need root; a running daemon needs neither.
# 2. Base image (Dockerfile BASE_IMAGE, default debian:trixie-slim): if it is not local
#    and cannot be pulled (no registry reachable), makes it with debootstrap
#    --variant=minbase and `docker import`s it under that name.
# 3. Extra CA certificates of this host (/usr/local/share/ca-certificates, e.g. a
#    TLS-intercepting proxy's) go to the build as EXTRA_CA_CERTS, so pip trusts them.
#
# Environment knobs:
#   CNS_IMAGE           image name (default cns-vaegan:dev; the tests' default too)
#   CNS_BASE_IMAGE      base image (default debian:trixie-slim)
#   CNS_DEBIAN_MIRROR   Debian mirror for debootstrap (as for scripts/env.sh)
# The image is labelled with the hash of the files it is built from (kubeflow/image_source.py,
# run with the host's python3), which the kfp.local test compares with its checkout's.
# Prints how long each part took (docker install, dockerd start, base image, build).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${CNS_IMAGE:-cns-vaegan:dev}
BASE=${CNS_BASE_IMAGE:-debian:trixie-slim}
MIRROR=${CNS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CUDA=0
PREPARE=0
DOCKERD_LOG=/var/log/cns-dockerd.log

die() { echo "build_image.sh: $*" >&2; exit 1; }
log() { echo "build_image.sh: $*" >&2; }
timed() {  # timed PART CMD...: runs CMD, logs "PART: N s"
  local part=$1 start=$SECONDS; shift
  "$@"
  log "time: $part $((SECONDS - start)) s"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --cuda) CUDA=1; shift ;;
    --prepare) PREPARE=1; shift ;;
    --) shift; break ;;
    *) die "unknown argument $1 (usage: scripts/build_image.sh [--tag NAME] [--cuda] [--prepare] [-- DOCKER BUILD ARGS])" ;;
  esac
done

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root: re-run as root, or $2"; }

install_docker() {
  command -v dockerd >/dev/null && return
  need_root "installing Docker (apt-get install docker.io)" "install Docker yourself"
  log "installing Debian's docker.io"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null \
    || die "apt-get install docker.io failed"
}

daemon_up() { docker info >/dev/null 2>&1; }

start_dockerd() {
  daemon_up && return
  need_root "starting dockerd" "start the Docker daemon yourself"
  log "starting dockerd in the background (log: $DOCKERD_LOG)"
  setsid dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  local i
  for i in $(seq 60); do
    daemon_up && return
    kill -0 $! 2>/dev/null || die "dockerd exited; see $DOCKERD_LOG"
    sleep 1
  done
  die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
}

# A registry's base image, or where none is reachable, the same Debian made locally.
base_image() {
  docker image inspect "$BASE" >/dev/null 2>&1 && { log "base image $BASE is present"; return; }
  if timeout 120 docker pull -q "$BASE" >/dev/null 2>&1; then log "pulled $BASE"; return; fi
  local suite=${BASE#debian:}; suite=${suite%-slim}
  [ "$BASE" = "debian:$suite-slim" ] || [ "$BASE" = "debian:$suite" ] \
    || die "cannot pull $BASE, and only a debian:<suite>[-slim] base can be made locally"
  need_root "making $BASE with debootstrap (no registry reachable)" "docker load a $BASE image"
  command -v debootstrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
    || die "could not install debootstrap"
  local dir; dir=$(mktemp -d /var/tmp/cns-base.XXXXXX)
  log "no registry reachable: making $BASE with debootstrap --variant=minbase $suite"
  debootstrap --variant=minbase "$suite" "$dir" "$MIRROR" >"$dir.log" 2>&1 \
    || die "debootstrap failed; see $dir.log"
  tar -C "$dir" -c . | docker import - "$BASE" >/dev/null || die "docker import failed"
  rm -rf --one-file-system "$dir" "$dir.log"
}

install_python3() {  # for the image's label (kubeflow/image_source.py, standard library only)
  command -v python3 >/dev/null && return
  need_root "installing python3 (apt-get install python3), which labels the image" "install python3 yourself"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null \
    || die "apt-get install python3 failed"
}

build() {
  local ca="" f label
  label=$(python3 "$REPO/kubeflow/image_source.py" "$REPO") || die "hashing the build context failed"
  for f in /usr/local/share/ca-certificates/*.crt /usr/local/share/ca-certificates/*/*.crt; do
    [ -f "$f" ] && ca+="$(cat "$f")"$'\n'
  done
  [ -z "$ca" ] || log "passing this host's extra CA certificates (/usr/local/share/ca-certificates) to the build"
  log "building $TAG (CUDA=$CUDA) from $REPO, label $label"
  docker build --build-arg BASE_IMAGE="$BASE" --build-arg CUDA="$CUDA" --build-arg EXTRA_CA_CERTS="$ca" \
    --label "$label" -t "$TAG" "$@" "$REPO" || die "docker build failed (see above)"
}

total=$SECONDS
timed "docker install" install_docker
timed "dockerd start" start_dockerd
timed "base image" base_image
install_python3
[ "$PREPARE" = 0 ] || exit 0
timed "image build" build "$@"
log "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.2f GB", $1/1e9}')) in $((SECONDS - total)) s"
