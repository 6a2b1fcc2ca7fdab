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
# foreign-architecture ones) and qemu-user-static, apt-installed when root (tools/ensure_tools.sh);
# otherwise a message and nothing run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
T0=$(date +%s)
step() { echo "== test-bigendian [$(( $(date +%s) - T0 ))s] $*"; }

PKGS=(gcc-s390x-linux-gnu libc6-dev-s390x-cross qemu-user-static)
have_tools() { command -v s390x-linux-gnu-gcc >/dev/null && command -v qemu-s390x-static >/dev/null; }
step "tools"
# shellcheck disable=SC1091
. "$ROOT/tools/ensure_tools.sh"
ensure_tools test-bigendian "${PKGS[@]}"
echo "   $(s390x-linux-gnu-gcc --version | head -n1); $(qemu-s390x-static --version | head -n1)"

B=build/s390x
BINS=""
for t in test_codec test_codec_spread1 test_codec_minimal test_codec_no_64bit test_codec_no_int_planes \
         test_codec_no_sparse_planes test_unpack test_pages test_parallel test_huffdecode_op test_sparse_fc; do
  BINS="$BINS $B/$t"
done
step "s390x (big-endian): build + C tests under qemu-s390x"
make -s -C tflite_kernels CC=s390x-linux-gnu-gcc BUILD=$B RUN="qemu-s390x-static -L /usr/s390x-linux-gnu" \
  TEST_BINS="$BINS" test
step "done"
