#!/usr/bin/env bash
# tools/arm/test_arm.sh -- `make test-arm`: tflite_kernels on emulated aarch64 and armv7.
#
#  1. tools/arm/setup.sh (installs/caches qemu, cross gcc, aarch64 Python sysroot and wheels;
#     prints SKIP and we exit 0 when it cannot, e.g. not root on a bare machine).
#  2. Cross builds of tflite_kernels with the host's -Werror flags, for aarch64 and armv7
#     (hard-float), into tflite_kernels/build/{aarch64,armv7}; the C tests run under qemu-user.
#  3. ELF portability check of every libdc_huffdecode.so (tools/arm/check_abi.py).
#  4. pytest tests/arm: decoded bytes identical on x86_64/aarch64/armv7, and LiteRT on emulated
#     aarch64 (packed vs unpacked bit-exact, vs x86 int8 exact / float within tolerance).
# The C tests run under qemu on one architecture per target: `make test` runs aarch64's (the ABI
# phones ship), `make test-long` (ARM_MARK=long) armv7's (71-101 s there; ~215 s of make test's
# loaded emulation lane) and only the tests/arm tests marked `long`; otherwise those are left out.
# Both targets build both architectures: step 4 decodes on each.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3 || echo python3)"
T0=$(date +%s)
step() { echo "== test-arm [$(( $(date +%s) - T0 ))s] $*"; }

step "setup"
out="$(tools/arm/setup.sh)"
case "$out" in
  READY*) ENV_FILE="${out#READY }" ;;
  *) echo "test-arm: ${out:-setup printed nothing} -- skipping the ARM tests."; exit 0 ;;
esac
# shellcheck disable=SC1090
. "$ENV_FILE"
echo "   $DC_ARM_QEMU_VERSION; aarch64 wheels: $DC_ARM_REQS"

K=tflite_kernels
A64_TESTS=test A64_WHAT="build + C tests" V7_TESTS="" V7_WHAT="build (its C tests: make test-long)"
MARK="not long"
if [ "${ARM_MARK:-}" = long ]; then
  A64_TESTS="" A64_WHAT="build (its C tests: make test)" V7_TESTS=test V7_WHAT="build + C tests"
  MARK=long
fi
if ! ls $K/src/*.c >/dev/null 2>&1; then
  echo "test-arm: no C sources in $K/src yet -- nothing to cross-build."
else
  # NEON: armv7 gets -mfpu=neon only if the code has NEON intrinsics (aarch64 always has it).
  ARMV7_CFLAGS=""
  if grep -qs 'arm_neon.h' $K/src/*.c $K/src/*.h $K/include/*.h; then ARMV7_CFLAGS="-mfpu=neon"; fi
  step "host (x86_64 reference) build"
  # build/host, not build/x86_64: glibc searches $ORIGIN/x86_64 before $ORIGIN, so the tools in
  # tflite_kernels/build (RUNPATH $ORIGIN) loaded this dir's library, stale once the sources changed
  make -s -C $K BUILD=build/host all tools
  step "aarch64: $A64_WHAT under qemu-aarch64"
  make -s -C $K CC=aarch64-linux-gnu-gcc BUILD=build/aarch64 \
    RUN="qemu-aarch64-static -L /usr/aarch64-linux-gnu" all tools $A64_TESTS
  step "armv7 (hard-float${ARMV7_CFLAGS:+, NEON}): $V7_WHAT under qemu-arm"
  make -s -C $K CC=arm-linux-gnueabihf-gcc BUILD=build/armv7 CFLAGS="$ARMV7_CFLAGS" \
    RUN="qemu-arm-static -L /usr/arm-linux-gnueabihf" all tools $V7_TESTS
  step "ELF portability check"
  "$PY" tools/arm/check_abi.py $K/build/host/libdc_huffdecode.so $K/build/aarch64/libdc_huffdecode.so \
    $K/build/armv7/libdc_huffdecode.so
fi

step "pytest tests/arm"
# Own temp dir: concurrent pytest sessions on this machine prune /tmp/pytest-of-$USER.
mkdir -p build
DC_ARM_ENV="$ENV_FILE" "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -m "$MARK" -W ignore::UserWarning \
  --durations=8 --basetemp="$ROOT/build/arm-pytest" tests/arm
step "done"
