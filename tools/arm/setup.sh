#!/usr/bin/env bash
# tools/arm/setup.sh -- host tooling for `make test-arm` (see docs/android.md).
#
#  1. apt-installs (amd64 packages only, as root): qemu-user-static, the aarch64 and armhf
#     cross compilers and their libc dev packages.  Never installs any `:arm64` package.
#  2. Builds a private aarch64 Python 3.11 sysroot from `apt-get download`ed :arm64 .debs,
#     each unpacked with `dpkg -x` (nothing is registered with dpkg), plus a fake
#     /proc/cpuinfo inside it (qemu 7.2 shows LiteRT the host's x86 cpuinfo and it crashes).
#  3. Downloads aarch64 wheels of ai-edge-litert and numpy (same versions as the host venv,
#     so x86 and aarch64 run the same runtime) and installs them into a --target dir.
#
# Everything is cached outside the git tree in $DC_ARM_CACHE (default ~/.cache/dc_keras/arm);
# a second run only checks stamps (< 1 s).  On success it writes $DC_ARM_CACHE/env.sh and
# prints READY.  If the tools are missing and cannot be installed (not root, no apt-get) it
# prints a line starting with SKIP and exits 0, so `make test-arm` can skip cleanly.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${DC_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dc_keras/arm}"
HOST_PY="${HOST_PY:-$ROOT/.venv/bin/python}"
[ -x "$HOST_PY" ] || HOST_PY="$(command -v python3 || echo python3)"

log() { echo "[arm-setup] $*" >&2; }
skip() { echo "SKIP: $*"; exit 0; }

HOST_PKGS=(qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
           gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
# :arm64 packages unpacked into the sysroot (never installed).
SYSROOT_PKGS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1
              libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libcrypt1
              libuuid1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libdb5.3 libnsl2
              libtirpc3)

is_root() { [ "$(id -u)" = 0 ]; }
have_tools() {
  command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null &&
  command -v aarch64-linux-gnu-gcc >/dev/null && command -v arm-linux-gnueabihf-gcc >/dev/null &&
  [ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] && [ -e /usr/arm-linux-gnueabihf/lib/libc.so.6 ]
}
apt_updated=0
apt_update() {
  # `apt-get update` may fail on indexes of other foreign architectures: do not die on it.
  if [ $apt_updated = 0 ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update reported errors (continuing)"
    apt_updated=1
  fi
}

# ---- 1. host tools ---------------------------------------------------------------------
if ! have_tools; then
  if ! is_root || ! command -v apt-get >/dev/null; then
    skip "ARM cross tools are missing (need ${HOST_PKGS[*]}) and this is not root with apt-get; run tools/arm/setup.sh as root once."
  fi
  apt_update
  log "apt-get install ${HOST_PKGS[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${HOST_PKGS[@]}" >/dev/null \
    || skip "apt-get install of ${HOST_PKGS[*]} failed"
  have_tools || skip "ARM cross tools still missing after apt-get install"
fi

# ---- 2. aarch64 python sysroot ---------------------------------------------------------
mkdir -p "$CACHE"
SYSROOT="$CACHE/sysroot-aarch64"
SYSROOT_KEY="v1 ${SYSROOT_PKGS[*]}"
if [ "$(cat "$SYSROOT/.stamp" 2>/dev/null)" != "$SYSROOT_KEY" ]; then
  DEBS="$CACHE/debs-arm64"
  mkdir -p "$DEBS"
  missing=()
  for p in "${SYSROOT_PKGS[@]}"; do
    ls "$DEBS/${p}"_*_arm64.deb >/dev/null 2>&1 || missing+=("$p:arm64")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      is_root || skip "dpkg has no arm64 architecture (needs root: dpkg --add-architecture arm64)"
      log "dpkg --add-architecture arm64 (package index only)"
      dpkg --add-architecture arm64
      apt_updated=0
    fi
    if ! ls /var/lib/apt/lists/*binary-arm64_Packages* >/dev/null 2>&1; then
      is_root || skip "no arm64 package index (needs root: apt-get update)"
      apt_update
    fi
    log "apt-get download ${#missing[@]} arm64 packages"
    # _apt cannot write into root-owned dirs: download in a temp dir we chmod.
    tmp="$(mktemp -d)"; chmod 777 "$tmp"
    (cd "$tmp" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1) || {
      # A failed index (stale lists) is the usual cause: refresh once and retry.
      if is_root; then apt_updated=0; apt_update; (cd "$tmp" && apt-get download -qq "${missing[@]}" >/dev/null); else false; fi
    } || { rm -rf "$tmp"; skip "apt-get download of arm64 packages failed"; }
    mv "$tmp"/*.deb "$DEBS"/ && rm -rf "$tmp"
  fi
  log "unpacking sysroot into $SYSROOT"
  rm -rf "$SYSROOT.tmp" && mkdir -p "$SYSROOT.tmp"
  for p in "${SYSROOT_PKGS[@]}"; do
    deb="$(ls "$DEBS/${p}"_*_arm64.deb | sort | tail -n1)"
    dpkg -x "$deb" "$SYSROOT.tmp"
  done
  # Keep only /etc /lib /usr (and our /proc): with `qemu -L` every absolute path that exists
  # in the sysroot shadows the host's, and /tmp or the project must resolve to the host.
  for d in "$SYSROOT.tmp"/*; do
    case "$(basename "$d")" in etc|lib|lib64|usr) ;; *) rm -rf "$d" ;; esac
  done
  # Fake /proc/cpuinfo (`-L` redirects it too): ARM CPU detection needs implementer/
  # architecture/part lines, one block per host CPU (Cortex-A72: 0x41 / 8 / 0xd08).
  mkdir -p "$SYSROOT.tmp/proc"
  ncpu="$(nproc 2>/dev/null || echo 1)"
  for ((i = 0; i < ncpu; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 100.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
  done > "$SYSROOT.tmp/proc/cpuinfo"
  echo "$SYSROOT_KEY" > "$SYSROOT.tmp/.stamp"
  rm -rf "$SYSROOT" && mv "$SYSROOT.tmp" "$SYSROOT"
fi
[ -x "$SYSROOT/usr/bin/python3.11" ] || skip "sysroot has no python3.11"

# ---- 3. aarch64 wheels -----------------------------------------------------------------
# Same versions as the host venv when it has them, so x86 and aarch64 references agree.
pin() {
  "$HOST_PY" - "$1" <<'EOF' 2>/dev/null || echo "$1"
import sys, importlib.metadata as m
try: print(f"{sys.argv[1]}=={m.version(sys.argv[1])}")
except Exception: print(sys.argv[1])
EOF
}
REQS=("$(pin ai-edge-litert)" "$(pin numpy)")
SITE="$CACHE/site-aarch64"
SITE_KEY="v1 ${REQS[*]}"
if [ "$(cat "$SITE/.stamp" 2>/dev/null)" != "$SITE_KEY" ]; then
  WHEELS="$CACHE/wheels-aarch64"
  mkdir -p "$WHEELS"
  PIPA=(--only-binary=:all: --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64
        --python-version 3.11 --implementation cp)
  log "pip download ${REQS[*]} (aarch64)"
  "$HOST_PY" -m pip download -q --disable-pip-version-check "${PIPA[@]}" -d "$WHEELS" "${REQS[@]}" \
    >"$CACHE/pip.log" 2>&1 || { cat "$CACHE/pip.log" >&2; skip "pip download of aarch64 wheels failed"; }
  rm -rf "$SITE.tmp"
  "$HOST_PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" \
    "${PIPA[@]}" --target "$SITE.tmp" "${REQS[@]}" >"$CACHE/pip.log" 2>&1 \
    || { cat "$CACHE/pip.log" >&2; skip "pip install --target of aarch64 wheels failed"; }
  echo "$SITE_KEY" > "$SITE.tmp/.stamp"
  rm -rf "$SITE" && mv "$SITE.tmp" "$SITE"
fi

QEMU_VERSION="$(qemu-aarch64-static --version | head -n1)"
cat > "$CACHE/env.sh.tmp" <<EOF
# written by tools/arm/setup.sh
DC_ARM_SYSROOT='$SYSROOT'
DC_ARM_SITE='$SITE'
DC_ARM_REQS='${REQS[*]}'
DC_ARM_QEMU_VERSION='$QEMU_VERSION'
EOF
mv "$CACHE/env.sh.tmp" "$CACHE/env.sh"
echo "READY $CACHE/env.sh"
