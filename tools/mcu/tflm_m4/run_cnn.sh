#!/usr/bin/env bash
# tools/mcu/tflm_m4/run_cnn.sh TFLM_TREE [WORK_DIR] -- development-only end-to-end check, like
# run.sh but for the int8 CNNs of tests/test_micro_cnn_s40.py (DS-CNN: CONV_2D, DEPTHWISE_CONV_2D,
# MEAN, FULLY_CONNECTED; conv autoencoder: CONV_2D, TRANSPOSE_CONV, SHAPE, STRIDED_SLICE, PACK):
# TFLM compiled for Cortex-M4 runs each unpacked and packed (decode once / every invoke) under
# qemu mps2-an386; every output must equal the x86 TFLM wheel's for the unpacked model bit for bit.
# Needs TFLM's source tree with its downloads (flatbuffers, gemmlowp, ruy) in place and, for
# arm-none-eabi-g++, libstdc++-arm-none-eabi-newlib.  Prints TFLM_M4 lines and exits with the
# failure count.
set -euo pipefail
T="$(cd "$1" && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
W="${2:-$ROOT/build/mcu/tflm_m4_cnn}"
mkdir -p "$W/tflm_obj"
PY="${PY:-$ROOT/.venv/bin/python}"
CPU="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"
DL="$T/tensorflow/lite/micro/tools/make/downloads"
TFLAGS="$CPU -std=c++17 -Os -fno-rtti -fno-exceptions -fno-threadsafe-statics -fno-unwind-tables
        -ffunction-sections -fdata-sections -DTF_LITE_STATIC_MEMORY -DTF_LITE_MCU_DEBUG_LOG
        -DTF_LITE_USE_CTIME -I$T -I$DL/flatbuffers/include -I$DL/gemmlowp -I$DL/ruy -I$DL/kissfft"
while read -r src; do
  o="$W/tflm_obj/$(echo "$src" | tr / _ | sed 's/\.cc$/.o/')"
  # shellcheck disable=SC2086
  [ -f "$o" ] || (cd "$T" && arm-none-eabi-g++ $TFLAGS -c "$src" -o "$o.tmp" && mv "$o.tmp" "$o")
done < <(cat "$HERE/tflm_sources.txt" "$HERE/tflm_sources_cnn.txt")
INC="-I$T -I$DL/flatbuffers/include -I$DL/gemmlowp -I$DL/ruy
     -I$ROOT/tflite_kernels/micro -I$ROOT/tflite_kernels/include -I$ROOT/tools/mcu -I$W"
make -s -C "$ROOT/tflite_kernels/micro" BUILD="$W/hostlib"
TF_CPP_MIN_LOG_LEVEL=3 "$PY" "$HERE/gen_cnn_data.py" "$W" "$W/hostlib/libdc_huffdecode_tflm.so" 4 2>/dev/null
# shellcheck disable=SC2086
arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror $INC -c -o "$W/dc_codec.o" "$ROOT/tflite_kernels/src/dc_codec.c"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror ${KFLAGS:-} $INC -c -o "$W/huffdecode_tflm.o" "$ROOT/tflite_kernels/micro/huffdecode_tflm.c"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CPU -std=c99 -O2 $INC -c -o "$W/startup.o" "$ROOT/tools/mcu/startup.c"
arm-none-eabi-gcc $CPU -c -o "$W/cnn_models.o" "$W/cnn_models.S"
# shellcheck disable=SC2086
arm-none-eabi-g++ $CPU -std=c++17 -O2 -fno-rtti -fno-exceptions -fno-threadsafe-statics -DTF_LITE_STATIC_MEMORY \
  -Wall -Werror $INC -c -o "$W/register.o" "$ROOT/tflite_kernels/micro/huffdecode_tflm_register.cc"
# shellcheck disable=SC2086
arm-none-eabi-g++ $CPU -std=c++17 -Os -fno-rtti -fno-exceptions -fno-threadsafe-statics -DTF_LITE_STATIC_MEMORY \
  $INC -c -o "$W/firmware_cnn.o" "$HERE/firmware_cnn.cc"
# shellcheck disable=SC2086
arm-none-eabi-g++ $CPU --specs=rdimon.specs -nostartfiles -T "$ROOT/tools/mcu/mps2.ld" -Wl,--gc-sections \
  -o "$W/firmware_cnn.elf" "$W/firmware_cnn.o" "$W/register.o" "$W/huffdecode_tflm.o" "$W/dc_codec.o" \
  "$W/startup.o" "$W/cnn_models.o" "$W"/tflm_obj/*.o -lm
arm-none-eabi-size "$W/firmware_cnn.elf"
timeout 1200 qemu-system-arm -M mps2-an386 -icount shift=0,align=off,sleep=off -nographic -monitor none -serial none \
  -semihosting-config enable=on,target=native -kernel "$W/firmware_cnn.elf" | tee "$W/result.txt"
