#!/usr/bin/env bash
# tools/mcu/trim_sizes.sh -- run by `make test-mcu` after test_mcu.sh: the decoder's build options
# (DC_CODEC_NO_* and DC_CODEC_MINIMAL, include/dc_codec.h) on Cortex-M4.
#
#  1. Compiles dc_codec.c for Cortex-M4 (test_mcu.sh's flags, -Wall -Wextra -Werror) with each
#     option alone, with DC_CODEC_MINIMAL, and with DC_CODEC_MINIMAL + DC_CRC_SMALL_TABLE, at -Os
#     and -O2, and reports the code size of each: `object` is .text+.rodata+.data of dc_codec.o
#     (test_mcu.sh's measure: every function, also the host-only sparse-FC row decoder), `linked`
#     what an application calling dc_peek, dc_workspace_size, dc_decode_ws and dc_strerror adds to
#     its image with --gc-sections (what a TFLM build with the HuffDecode kernel keeps).
#  2. Runs test_codec built with DC_CODEC_MINIMAL on emulated Cortex-M4 (qemu mps2-an386): the
#     kept layouts/types decode, the left-out ones get DC_ERR_UNSUPPORTED; it must report 0 failed.
#  3. Decode cost of the trimmed builds: bench_decode.c (test_mcu.sh's synthetic LeNet-300-100
#     tensors, sparse float32 and int8: what DC_CODEC_MINIMAL keeps) built -O2 with the default
#     decoder, DC_CODEC_MINIMAL, and DC_CODEC_MINIMAL + DC_CRC_SMALL_TABLE, run on emulated
#     Cortex-M4 under `-icount shift=0` (instruction counts: deterministic, whatever the load);
#     every decode is checked by hash; instructions per element per build.
# Needs test_mcu.sh's tools (it installs them); without them: a message and exit 0, nothing run.
# Cached like test_mcu.sh (key: sources, flags, compiler). Table: build/mcu/trim_sizes.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
K=tflite_kernels
if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null; then
  echo "trim_sizes: NOT RUN (nothing tested): needs gcc-arm-none-eabi and qemu-system-arm (make test-mcu installs them as root)"
  exit 0
fi
M4="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"
COMMON="-std=c99 -Wall -Wextra -Werror -ffunction-sections -fdata-sections -I$K/include -I$K/src -Itools/mcu"
LINK="--specs=rdimon.specs -nostartfiles -T tools/mcu/mps2.ld -Wl,--gc-sections"
VARIANTS=("" DC_CODEC_NO_64BIT DC_CODEC_NO_SUBBYTE DC_CODEC_NO_GROUPED DC_CODEC_NO_FLOAT_PLANES
          DC_CODEC_NO_CONTEXT DC_CODEC_NO_INT_PLANES DC_CODEC_NO_SPARSE_PLANES DC_CODEC_NO_SPREAD
          DC_CODEC_MINIMAL "DC_CODEC_MINIMAL DC_CRC_SMALL_TABLE")
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
KEY="$( (cat $K/src/dc_codec*.c $K/src/dc_codec*.h $K/include/dc_codec.h $K/tests/test_codec.c \
             $K/tests/codec_vectors*.h $K/tests/dc_test_pack.h tools/mcu/startup.c tools/mcu/mps2.ld \
             tools/mcu/mcu.h tools/mcu/bench_decode.c tools/mcu/gen_bench_vectors.py dc_keras/codec/*.py \
             "$0"; echo "$M4 $COMMON $LINK"; arm-none-eabi-gcc --version | head -n1) \
       | sha256sum | cut -c1-16)"
CACHE="${DC_MCU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dc_keras/mcu/build}/trim-$KEY"
OUT="${DC_MCU_OUT:-$ROOT/build/mcu/results.txt}"
OUT="$(dirname "$OUT")/trim_sizes.txt"
mkdir -p "$(dirname "$OUT")"
if [ -f "$CACHE/.done" ]; then
  echo "== trim_sizes: cached ($CACHE)"
  cat "$CACHE/table.txt"
  cp "$CACHE/table.txt" "$OUT"
  exit 0
fi
B="$CACHE.tmp"
rm -rf "$B" && mkdir -p "$B"
SIZE() { arm-none-eabi-size -A "$1" | awk '$1 ~ /^\.(text|rodata|data)/ {s += $2} END {print s + 0}'; }
# The application: the decoder entry points a TFLM kernel calls, on inputs the compiler cannot see.
cat >"$B/app.c" <<'EOF'
#include "dc_codec.h"
const uint8_t* volatile app_in;
volatile size_t app_n;
static uint8_t app_out[64];
int main(void) {
#ifdef APP_USES_DECODER
  static uint8_t app_ws[DC_MAX_WORKSPACE];
  dc_tensor_info info;
  size_t ws;
  const char* volatile msg;
  if (dc_peek(app_in, app_n, &info) != DC_OK) return 1;
  if (dc_workspace_size(app_in, app_n, &ws) != DC_OK) return 2;
  msg = dc_strerror(dc_decode_ws(app_in, app_n, app_out, sizeof app_out, app_ws, sizeof app_ws));
  (void)msg;
#endif
  return app_out[0];
}
EOF
echo "== trim_sizes: dc_codec.c on Cortex-M4 with each build option (-Werror)"
# shellcheck disable=SC2086
arm-none-eabi-gcc $M4 $COMMON -c -o "$B/startup.o" tools/mcu/startup.c
{
  printf "%-40s %9s %9s %9s %9s\n" "Cortex-M4 bytes (.text+.rodata+.data)" "object-Os" "object-O2" \
    "linked-Os" "linked-O2"
  for v in "${VARIANTS[@]}"; do
    defs=""
    for d in $v; do defs="$defs -D$d"; done
    row=()
    for O in -Os -O2; do
      # shellcheck disable=SC2086
      arm-none-eabi-gcc $M4 $COMMON $O $defs -c -o "$B/c$O.o" $K/src/dc_codec.c
      row+=("$(SIZE "$B/c$O.o")")
    done
    for O in -Os -O2; do
      # shellcheck disable=SC2086
      arm-none-eabi-gcc $M4 $COMMON $O $LINK -o "$B/base.elf" "$B/app.c" "$B/startup.o"
      # shellcheck disable=SC2086
      arm-none-eabi-gcc $M4 $COMMON $O -DAPP_USES_DECODER $LINK -o "$B/app.elf" "$B/app.c" \
        "$B/c$O.o" "$B/startup.o"
      row+=("$(( $(SIZE "$B/app.elf") - $(SIZE "$B/base.elf") ))")
    done
    printf "%-40s %9s %9s %9s %9s\n" "${v:-default (all features)}" "${row[@]}"
  done
} | tee "$B/table.txt"
echo "== trim_sizes: test_codec built with DC_CODEC_MINIMAL on Cortex-M4 (qemu mps2-an386)"
# shellcheck disable=SC2086
arm-none-eabi-gcc $M4 $COMMON -O2 -DDC_CODEC_MINIMAL -Wno-format $LINK -o "$B/test_codec_minimal.elf" \
  $K/tests/test_codec.c $K/src/dc_codec.c "$B/startup.o" -lm
if log="$(timeout 900 qemu-system-arm -nographic -monitor none -serial none \
            -semihosting-config enable=on,target=native -M mps2-an386 \
            -kernel "$B/test_codec_minimal.elf" 2>&1)"; then rc=0; else rc=$?; fi
echo "   $(echo "$log" | tail -n 1)"
if [ $rc != 0 ] || ! echo "$log" | grep -q "^test_codec: [0-9]* passed, 0 failed"; then
  echo "trim_sizes: FAILED: test_codec (DC_CODEC_MINIMAL) on mps2-an386 (exit $rc)"
  echo "$log" | tail -n 30
  exit 1
fi
echo "   $(echo "$log" | tail -n 1)" >>"$B/table.txt"
echo "== trim_sizes: decode cost on Cortex-M4 (qemu -icount shift=0), instructions per element"
PYTHONPATH="$ROOT" "$PY" tools/mcu/gen_bench_vectors.py "$B/bench_vectors.h"
declare -A INSNS=()
BUILDS=("default" "DC_CODEC_MINIMAL" "DC_CODEC_MINIMAL DC_CRC_SMALL_TABLE")
for v in "${BUILDS[@]}"; do
  defs=""
  for d in $v; do [ "$d" = default ] || defs="$defs -D$d"; done
  elf="$B/bench_${v// /_}.elf"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $M4 $COMMON -O2 $defs -I"$B" $LINK -o "$elf" tools/mcu/bench_decode.c \
    $K/src/dc_codec.c "$B/startup.o"
  if blog="$(timeout 900 qemu-system-arm -nographic -monitor none -serial none \
               -semihosting-config enable=on,target=native -M mps2-an386 \
               -icount shift=0,align=off,sleep=off -kernel "$elf" 2>&1)"; then rc=0; else rc=$?; fi
  if [ $rc != 0 ] || ! echo "$blog" | grep -q "^BENCH_DONE 0" ||
     ! echo "$blog" | grep -q "^BENCH_CALIBRATION 2000000 2000000$"; then
    echo "trim_sizes: FAILED: bench_decode ($v) on mps2-an386 (exit $rc)"
    echo "$blog" | tail -n 20
    exit 1
  fi
  # BENCH name layout elements nonzero packed insns stack ws ck_insns
  while read -r _ name _ elems _ _ insns _; do
    INSNS["$v|$name"]="$(awk -v i="$insns" -v e="$elems" 'BEGIN {printf "%.2f", i / e}')"
  done < <(echo "$blog" | grep "^BENCH ")
  NAMES="$(echo "$blog" | awk '/^BENCH / {print $2}')"
done
{
  printf "%-40s" "Cortex-M4 -O2 instructions per element"
  for n in $NAMES; do printf " %12s" "$n"; done
  echo
  for v in "${BUILDS[@]}"; do
    printf "%-40s" "$v"
    for n in $NAMES; do printf " %12s" "${INSNS["$v|$n"]}"; done
    echo
  done
} | tee -a "$B/table.txt"
touch "$B/.done"
rm -rf "$CACHE" && mv "$B" "$CACHE"
cp "$CACHE/table.txt" "$OUT"
echo "== trim_sizes: passed ($OUT)"
