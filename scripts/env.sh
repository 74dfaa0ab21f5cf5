#!/usr/bin/env bash
# The project's environment, made and entered the same way by `make`, CI and users.
#
#   scripts/env.sh setup         make the environment (idempotent, cached)
#   scripts/env.sh run CMD ...   run CMD inside it, in the current folder (so relative paths
#                                in CMD mean what they mean here)
#   scripts/env.sh lock          re-resolve requirements.in into requirements.lock (and the
#                                image's GPU additions into requirements-gpu.lock)
#   scripts/env.sh gpu           what it sees of an NVIDIA driver, and what it binds in for it
#   scripts/env.sh doctor        that, then what TensorFlow sees inside: devices, its CUDA and
#                                cuDNN build, the profile --profile auto picks and why
#
# On a host with an NVIDIA driver (its /proc/driver/nvidia/version, a /dev/nvidia0, or a
# working nvidia-smi) it also installs requirements-gpu.lock, the CUDA libraries of
# tensorflow[and-cuda], and in the root filesystem gives TensorFlow what the NVIDIA
# container toolkit gives a container: the /dev/nvidia* devices (with /dev, bound whole)
# and the driver's user-space libraries (libcuda.so.1, libnvidia-*, found through the
# host's `ldconfig -p`), bound into /run/cns-nvidia and put on LD_LIBRARY_PATH. The
# environment's key then includes the GPU lock (a host without a driver keeps its key).
#
# Why two paths: TFX 1.21's ml-metadata and tensorflow-data-validation wheels need
# glibc >= 2.38. On such a host (Ubuntu 24.04, Debian 13) this is a plain venv in
# .venv/. On an older host (Debian 12) it builds a Debian 13 root filesystem with
# debootstrap (needs root), installs the same lock into a venv inside it, and runs
# every command there through `unshare -m` + `chroot`, with the repository and the
# usual data folders bind-mounted at the same paths. The root filesystem is cached
# outside the clone, keyed by the hash of requirements.lock and this recipe, so
# a second clone on the same machine reuses it and a changed lock rebuilds it.
#
# Environment knobs:
#   CNS_ENV_CACHE   where root filesystems are cached (default /var/cache/cns-vaegan)
#   CNS_ENV_MODE    force "venv" or "rootfs" instead of choosing by glibc version
#   CNS_EXTRA_MOUNTS  colon-separated host paths to also bind into the root filesystem
#   CNS_GPU         force "nvidia" or "none" instead of detecting the driver
#   CNS_NVIDIA_ROOT, CNS_LDCONFIG  where driver files are looked for (default /) and the
#                   command listing the host's libraries (default "ldconfig -p"): tests
#                   point them at a fake driver tree
#   TF_ENABLE_ONEDNN_OPTS  TensorFlow's oneDNN CPU kernels; default 1 here. TensorFlow turns
#                   them on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on an AVX2-only
#                   CPU its other kernels train the cpu profile several times slower
#                   (benchmarks/cpu_kernels.py: docs/generated/cpu_kernels.md). 0 turns them off.
# The Docker daemon's socket (DOCKER_HOST's unix path, default /var/run/docker.sock) is
# bound in too when it exists, so code inside reaches the host's Docker (kfp.local).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK="$REPO/requirements.lock"
CACHE=${CNS_ENV_CACHE:-/var/cache/cns-vaegan}
SUITE=trixie
MIRROR=${CNS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Debian packages inside the root filesystem; g++ because pyfarmhash builds from source;
# chromium for the playground's browser tests (driven by Playwright), and dbus-x11 because
# debootstrap does not resolve the virtual dbus-session-bus that chromium's GTK needs.
APT_PACKAGES="python3,python3-venv,python3-dev,g++,ca-certificates,fonts-cns11643-kai,procps,chromium,dbus-x11"
RECIPE_VERSION=1
# Host folders visible inside the root filesystem at the same paths (user data, temp).
DEFAULT_MOUNTS="/home:/root:/tmp:/var/tmp:/mnt:/media:/srv:/data:/work"

die() { echo "env.sh: $*" >&2; exit 1; }
log() { echo "env.sh: $*" >&2; }

glibc_ok() {  # glibc >= 2.39: TFX 1.21's wheels load natively
  local v; v=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  [ -n "$v" ] && [ "$(printf '%s\n2.39\n' "$v" | sort -V | head -1)" = "2.39" ]
}

mode() {
  if [ -n "${CNS_ENV_MODE:-}" ]; then echo "$CNS_ENV_MODE"
  elif glibc_ok; then echo venv
  else echo rootfs; fi
}

GPU_LOCK="$REPO/requirements-gpu.lock"
NVIDIA_ROOT=${CNS_NVIDIA_ROOT:-}
NVIDIA_DIR=/run/cns-nvidia  # inside the root filesystem: the driver's libraries, bound in

gpu() {  # "nvidia" when the host has an NVIDIA driver, else "none"
  if [ -n "${CNS_GPU:-}" ]; then echo "$CNS_GPU"
  elif [ -r "$NVIDIA_ROOT/proc/driver/nvidia/version" ] || [ -e "$NVIDIA_ROOT/dev/nvidia0" ]; then echo nvidia
  elif [ -z "$NVIDIA_ROOT" ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then echo nvidia
  else echo none; fi
}

# The driver's user-space libraries, "soname host-path" a line, 64-bit only: what the NVIDIA
# container toolkit mounts (libcuda, libnvidia-*: ml, ptxjitcompiler, nvvm, ...).
nvidia_libraries() {
  ${CNS_LDCONFIG:-ldconfig -p} 2>/dev/null \
    | awk '$1 ~ /^(libcuda\.so|libcudadebugger\.so|libnvidia-[a-z0-9-]+\.so)/ && $2 ~ /64/ && $NF ~ /^\// {print $1, $NF}' \
    | sort -u -k1,1
}

gpu_requirements() {  # pip arguments for this host's GPU, if any
  [ "$(gpu)" = nvidia ] && [ -f "$GPU_LOCK" ] && echo "-r $GPU_LOCK"
  return 0
}

env_key() {  # without a GPU exactly as before GPUs counted, so existing environments stay valid
  { cat "$LOCK" 2>/dev/null; echo "$SUITE $APT_PACKAGES $RECIPE_VERSION"
    if [ "$(gpu)" = nvidia ]; then echo "gpu nvidia"; cat "$GPU_LOCK" 2>/dev/null; fi
  } | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------- plain venv
setup_venv() {
  local venv="$REPO/.venv" key; key=$(env_key)
  if [ ! -f "$venv/.cns-key" ] || [ "$(cat "$venv/.cns-key")" != "$key" ]; then
    log "creating $venv from requirements.lock"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
    "$venv/bin/pip" install -q --upgrade pip
    # shellcheck disable=SC2046
    "$venv/bin/pip" install -q -r "$LOCK" $(gpu_requirements) || die "pip install -r requirements.lock failed (see above)"
    echo "$key" > "$venv/.cns-key"
  fi
  install_project "$venv/bin/pip" "$venv"
  local font=/usr/share/fonts/truetype/cns11643/TW-Kai-98_1.ttf
  if [ ! -f "$font" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -q fonts-cns11643-kai >/dev/null || die "apt-get install fonts-cns11643-kai failed"
    else
      log "warning: $font missing; run 'sudo apt-get install fonts-cns11643-kai' or pass --font"
    fi
  fi
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -q chromium >/dev/null || die "apt-get install chromium failed"
    else
      log "warning: /usr/bin/chromium missing (the browser tests need it); run 'sudo apt-get install chromium'"
    fi
  fi
}

# Editable install of the project itself; repeated only when the clone path changes.
install_project() {
  local pip=$1 prefix=$2 marker="$2/.cns-project"
  local stamp; stamp="$REPO $(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$stamp" ]; then
    "$pip" install -q --no-deps --no-build-isolation -e "$REPO" || die "installing the project (pip install -e .) failed"
    echo "$stamp" > "$marker"
  fi
}

# ------------------------------------------------------- Debian 13 root filesystem
rootfs_dir() { echo "$CACHE/rootfs-$(env_key)"; }

# The Docker socket's real path (symlinks such as /var/run -> /run resolved), if it exists.
docker_socket() {
  local host=${DOCKER_HOST:-unix:///var/run/docker.sock} path
  [ "${host#unix://}" != "$host" ] || return 0
  path=$(readlink -f "${host#unix://}" 2>/dev/null) || return 0
  [ -S "$path" ] && echo "$path"
  return 0
}

# Runs "$@" inside root filesystem $1 in a private mount namespace (mounts vanish on exit).
enter() {
  local root=$1; shift
  local mounts="$DEFAULT_MOUNTS:${CNS_EXTRA_MOUNTS:-}:$REPO" libraries=""
  [ "$(gpu)" != nvidia ] || libraries=$(nvidia_libraries)
  # shellcheck disable=SC2016
  unshare -m --propagation private -- bash -c '
    set -e
    root=$1; mounts=$2; socket=$3; libraries=$4; nvidia=$5; shift 5
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    IFS=: ; for d in $mounts; do
      [ -n "$d" ] && [ -d "$d" ] || continue
      mkdir -p "$root$d" && mount --rbind "$d" "$root$d"
    done
    unset IFS
    if [ -n "$socket" ]; then
      mkdir -p "$root${socket%/*}" && touch "$root$socket" && mount --bind "$socket" "$root$socket"
    fi
    gpu_env=()
    if [ -n "$libraries" ]; then  # the driver libraries, by soname, in one folder
      mkdir -p "$root$nvidia" && mount -t tmpfs tmpfs "$root$nvidia"
      while read -r name path; do
        touch "$root$nvidia/$name" && mount --bind "$(readlink -f "$path")" "$root$nvidia/$name"
      done <<< "$libraries"
      gpu_env=(LD_LIBRARY_PATH="$nvidia")
    fi
    exec chroot "$root" /usr/bin/env -u PIP_FIND_LINKS -u PYTHONPATH -u PYTHONHOME \
      PATH=/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      PIP_CONFIG_FILE=/dev/null "${gpu_env[@]}" "$@"
  ' enter "$root" "$mounts" "$(docker_socket)" "$libraries" "$NVIDIA_DIR" "$@"
}

# Whether folder $1 is visible inside the root filesystem: a bound folder or below one
# (elsewhere, the root filesystem's own folder of that name, or none, would be there).
bound_inside() {
  local d mounts="$DEFAULT_MOUNTS:${CNS_EXTRA_MOUNTS:-}:$REPO" IFS=:
  for d in $mounts; do
    d=${d%/}
    [ -n "$d" ] || continue
    case "$1/" in "$d"/*) return 0 ;; esac
  done
  return 1
}

in_root() {  # run a command in the root filesystem with the venv on PATH, cwd = $PWD
  local root=$1; shift
  enter "$root" /usr/bin/env VIRTUAL_ENV=/venv HOME="${HOME:-/root}" /bin/bash -c 'cd "$0" && exec "$@"' "$PWD" "$@"
}

build_rootfs() {  # $1: target dir; $2: pip arguments (requirement set)
  local target=$1; shift
  local tmp="$target.partial"
  [ "$(id -u)" = 0 ] || die "this host's glibc is older than 2.39, so the environment is a Debian 13 root filesystem, which needs root: re-run as root (or use a glibc >= 2.39 host)"
  command -v debootstrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } \
    || die "could not install debootstrap: run 'apt-get update && apt-get install debootstrap'"
  rm -rf --one-file-system "$tmp"
  log "building Debian 13 root filesystem in $tmp (debootstrap, ~1 min)"
  debootstrap --variant=minbase --include="$APT_PACKAGES" "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $CACHE/debootstrap.log"
  # The registry's TLS may go through a proxy whose CA lives in the host's store.
  if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    cp -r /usr/local/share/ca-certificates/. "$tmp/usr/local/share/ca-certificates/"
  fi
  enter "$tmp" update-ca-certificates >/dev/null || die "update-ca-certificates failed inside the root filesystem"
  log "installing Python packages into the root filesystem (~3 min, ~3.5 GB)"
  enter "$tmp" /usr/bin/python3 -m venv /venv || die "python3 -m venv failed inside the root filesystem"
  enter "$tmp" /venv/bin/pip install -q --upgrade pip || die "pip upgrade failed"
  enter "$tmp" /venv/bin/pip install -q "$@" \
    || die "pip install failed inside the root filesystem (network or CA certificates? see above)"
  mv "$tmp" "$target"
}

# Root filesystems of other lock hashes are stale: free their space (~4 GB each).
remove_stale_rootfs() {
  local keep=$1 old
  for old in "$CACHE"/rootfs-*; do
    [ "$old" = "$keep" ] || [ ! -d "$old" ] || rm -rf --one-file-system "$old"
  done
}

setup_rootfs() {
  mkdir -p "$CACHE"
  local root; root=$(rootfs_dir)
  exec 9>"$CACHE/.lock"; flock 9
  if [ ! -d "$root" ]; then
    [ -f "$LOCK" ] || die "requirements.lock is missing: run 'scripts/env.sh lock'"
    # shellcheck disable=SC2046
    build_rootfs "$root" -r "$REPO/requirements.lock" $(gpu_requirements) 2>&1 || exit 1
    remove_stale_rootfs "$root"
  fi
  flock -u 9
  install_project_rootfs "$root"
}

install_project_rootfs() {
  local root=$1 stamp marker="$1/venv/.cns-project"
  stamp="$REPO $(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$marker" ] || [ "$(cat "$marker")" != "$stamp" ]; then
    (cd "$REPO" && in_root "$root" pip install -q --no-deps --no-build-isolation -e "$REPO") \
      || die "installing the project (pip install -e .) inside the root filesystem failed"
    echo "$stamp" > "$marker"
  fi
}

# ----------------------------------------------------------------------- main
cmd=${1:-}; shift || true
case "$cmd" in
  setup)
    if [ "$(mode)" = venv ]; then setup_venv; else setup_rootfs; fi ;;
  run)
    [ $# -gt 0 ] || die "usage: scripts/env.sh run CMD [ARGS...]"
    export TF_ENABLE_ONEDNN_OPTS=${TF_ENABLE_ONEDNN_OPTS:-1}
    # In the caller's folder: relative paths the command is given mean what they mean there.
    if [ "$(mode)" = venv ]; then
      setup_venv; PATH="$REPO/.venv/bin:$PATH" VIRTUAL_ENV="$REPO/.venv" exec "$@"
    else
      bound_inside "$PWD" || die "the current folder $PWD is not visible inside the environment," \
        "which binds only ${DEFAULT_MOUNTS//:/, } and the repository: cd into one of them, or add" \
        "a folder above it to CNS_EXTRA_MOUNTS (colon-separated)"
      setup_rootfs; in_root "$(rootfs_dir)" "$@"
    fi ;;
  lock)
    # Resolve requirements.in in a scratch environment of the same kind and freeze it.
    cd "$REPO"  # it takes no paths, and its last step runs inside, where the repository is bound
    if [ "$(mode)" = venv ]; then
      tmpv=$(mktemp -d); python3 -m venv "$tmpv"
      "$tmpv/bin/pip" install -q -r "$REPO/requirements.in" && "$tmpv/bin/pip" freeze --exclude-editable > "$LOCK"
      rm -rf "$tmpv"
    else
      mkdir -p "$CACHE"; scratch="$CACHE/rootfs-lock"
      rm -rf --one-file-system "$scratch"
      cp "$REPO/requirements.in" /tmp/cns-requirements.in
      build_rootfs "$scratch" -r /tmp/cns-requirements.in
      in_root "$scratch" pip freeze --exclude-editable > "$LOCK"
      # The scratch filesystem has exactly the lock installed: keep it as the cached one.
      rm -rf --one-file-system "$(rootfs_dir)"; mv "$scratch" "$(rootfs_dir)"
      remove_stale_rootfs "$(rootfs_dir)"
    fi
    log "wrote $LOCK ($(wc -l < "$LOCK") packages)"
    "$0" run python "$REPO/scripts/resolve_gpu_lock.py" ;;
  gpu)
    echo "driver: $(gpu)${CNS_GPU:+ (CNS_GPU)}"
    [ ! -r "$NVIDIA_ROOT/proc/driver/nvidia/version" ] || echo "version: $(head -1 "$NVIDIA_ROOT/proc/driver/nvidia/version")"
    echo "mode: $(mode); key: $(env_key)"
    if [ "$(gpu)" = nvidia ]; then
      echo "installs: requirements.lock requirements-gpu.lock"
      for device in "$NVIDIA_ROOT"/dev/nvidia*; do [ ! -e "$device" ] || echo "device: $device"; done
      if [ "$(mode)" = rootfs ]; then
        nvidia_libraries | while read -r name path; do echo "binds: $path -> $NVIDIA_DIR/$name"; done
      fi
    else
      echo "installs: requirements.lock"
    fi ;;
  doctor)
    "$0" gpu
    "$0" run python -m cns_vaegan.pipeline.doctor ;;
  *) die "usage: scripts/env.sh setup | run CMD [ARGS...] | lock | gpu | doctor" ;;
esac
