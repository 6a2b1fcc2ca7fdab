#!/usr/bin/env bash
# tools/bigendian/test_bigendian.sh -- `make test-bigendian` (in make test-long): the packed-tensor
# decoder's C tests on a big-endian host, s390x under qemu-user.
#
# Packed tensors and the tensors decoded from them are little-endian (docs/FORMAT.md §1); the
# decoder is written for either byte order (byte-assembled loads, whole-word stores only where
# __BYTE_ORDER__ says little-endian). This runs, built for s390x with the host's -Werror flags:
# test_codec (also its spread-loop and trimmed builds), test_unpack, test_pages, test_parallel,
# test_huffdecode_op, and test_sparse_fc, which there checks that the sparse kernels (computing in
# the host's byte order: little-endian hosts only) refuse every build with the reason, so that
# their callers decode instead. Left out: test_threads (its graphs expect the sparse kernels).
# Tools: gcc-s390x-linux-gnu, libc6-dev-s390x-cross (amd64 packages targeting s390x, not
# foreign-architecture ones) and qemu-user-static, apt-installed when root (under
# /tmp/apt.lock, waiting up to 10 min for dpkg's lock); otherwise a message and nothing run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
T0=$(date +%s)
step() { echo "== test-bigendian [$(( $(date +%s) - T0 ))s] $*"; }

PKGS=(gcc-s390x-linux-gnu libc6-dev-s390x-cross qemu-user-static)
have_tools() { command -v s390x-linux-gnu-gcc >/dev/null && command -v qemu-s390x-static >/dev/null; }
step "tools"
if ! have_tools; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "   apt-get install ${PKGS[*]} (under /tmp/apt.lock)"
    flock /tmp/apt.lock sh -c "(apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true) && \
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      ${PKGS[*]} >/dev/null" \
      || { echo "test-bigendian: FAILED: apt-get install ${PKGS[*]} failed"; exit 1; }
    have_tools || { echo "test-bigendian: FAILED: tools still missing after apt-get install"; exit 1; }
  else
    echo "test-bigendian: NOT RUN (nothing tested): needs ${PKGS[*]}; install them as root" \
         "(apt-get install ${PKGS[*]}) or run make test-bigendian as root."
    exit 0
  fi
fi
echo "   $(s390x-linux-gnu-gcc --version | head -n1); $(qemu-s390x-static --version | head -n1)"

B=build/s390x
BINS=""
for t in test_codec test_codec_spread1 test_codec_minimal test_codec_no_64bit test_codec_no_int_planes \
         test_unpack test_pages test_parallel test_huffdecode_op test_sparse_fc; do
  BINS="$BINS $B/$t"
done
step "s390x (big-endian): build + C tests under qemu-s390x"
make -s -C tflite_kernels CC=s390x-linux-gnu-gcc BUILD=$B RUN="qemu-s390x-static -L /usr/s390x-linux-gnu" \
  TEST_BINS="$BINS" test
step "done"
