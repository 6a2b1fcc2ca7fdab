#!/usr/bin/env bash
# tools/mcu/tflm_m4/run.sh TFLM_TREE -- development-only end-to-end check: TFLM compiled for
# Cortex-M4 runs the packed LeNet-300-100 with the HuffDecode kernel under qemu (mps2-an386).
# Not part of `make test`: it needs TFLM's source tree with its third-party downloads in place
# (never committed; see docs/microcontrollers.md, "TFLM on Cortex-M4").
#
#   1. TFLM: the interpreter and the 8 reference kernels the LeNet needs (tflm_sources.txt),
#      compiled from TFLM_TREE with arm-none-eabi-g++ -Os and TFLM's defines (objects cached in
#      the work dir; TFLM's own `make ... microlite` builds every kernel: ~20x longer here);
#   2. model_data.h from benchmarks/mcu_models.py's cached LeNet (gen_model_data.py) with the x86
#      wheel's int8 outputs as expected values;
#   3. firmware.cc + our kernel (C99) + decoder + tools/mcu/startup.c linked against it, run
#      under qemu -icount shift=0; prints TFLM_M4 lines and exits with the failure count.
# KFLAGS: extra flags for the kernel's compile, e.g. KFLAGS=-DTF_LITE_STRIP_ERROR_STRINGS (the
# kernel as TFLM's BUILD_TYPE=release compiles it: no message strings).
set -euo pipefail
T="$(cd "$1" && pwd)"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
W="${2:-$ROOT/build/mcu/tflm_m4}"
mkdir -p "$W"
PY="${PY:-$ROOT/.venv/bin/python}"
MODELS="${MODELS:-$HOME/.cache/dc_keras/mcu/lenet}"
CPU="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"
DL="$T/tensorflow/lite/micro/tools/make/downloads"
TFLAGS="$CPU -std=c++17 -Os -fno-rtti -fno-exceptions -fno-threadsafe-statics -fno-unwind-tables
        -ffunction-sections -fdata-sections -DTF_LITE_STATIC_MEMORY -DTF_LITE_MCU_DEBUG_LOG
        -DTF_LITE_USE_CTIME -I$T -I$DL/flatbuffers/include -I$DL/gemmlowp -I$DL/ruy -I$DL/kissfft"
mkdir -p "$W/tflm_obj"
while read -r src; do
  o="$W/tflm_obj/$(echo "$src" | tr / _ | sed 's/\.cc$/.o/')"
  # shellcheck disable=SC2086
  [ -f "$o" ] || (cd "$T" && arm-none-eabi-g++ $TFLAGS -c "$src" -o "$o.tmp" && mv "$o.tmp" "$o")
done < "$HERE/tflm_sources.txt"
INC="-I$T -I$T/tensorflow/lite/micro/tools/make/downloads/flatbuffers/include
     -I$T/tensorflow/lite/micro/tools/make/downloads/gemmlowp -I$T/tensorflow/lite/micro/tools/make/downloads/ruy
     -I$ROOT/tflite_kernels/micro -I$ROOT/tflite_kernels/include -I$ROOT/tools/mcu -I$W"
# expected int8 outputs: the x86 wheel on the unpacked model
"$PY" -c "import numpy as np; np.save('$W/x5.npy', np.load('$MODELS/x_test.npy')[:5])"
TFLM_PY="$("$PY" "$ROOT/tools/mcu/tflm_env.py")"
make -s -C "$ROOT/tflite_kernels/micro" BUILD="$W/hostlib"
TF_CPP_MIN_LOG_LEVEL=3 "$TFLM_PY" "$ROOT/tools/mcu/tflm_run.py" --lib "$W/hostlib/libdc_huffdecode_tflm.so" \
  --model "$MODELS/int8.tflite" --input "$W/x5.npy" --out "$W/expected_int8.npy" 2>/dev/null
PYTHONPATH="$ROOT" "$PY" "$HERE/gen_model_data.py" "$MODELS" "$W/model_data.h" "$W/expected_int8.npy" 5
# shellcheck disable=SC2086
arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror $INC -c -o "$W/dc_codec.o" "$ROOT/tflite_kernels/src/dc_codec.c"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror ${KFLAGS:-} $INC -c -o "$W/huffdecode_tflm.o" "$ROOT/tflite_kernels/micro/huffdecode_tflm.c"
# shellcheck disable=SC2086
arm-none-eabi-gcc $CPU -std=c99 -O2 $INC -c -o "$W/startup.o" "$ROOT/tools/mcu/startup.c"
arm-none-eabi-gcc $CPU -c -o "$W/models.o" "$W/models.S"
# shellcheck disable=SC2086
arm-none-eabi-g++ $CPU -std=c++17 -O2 -fno-rtti -fno-exceptions -fno-threadsafe-statics -DTF_LITE_STATIC_MEMORY \
  -Wall -Werror $INC -c -o "$W/register.o" "$ROOT/tflite_kernels/micro/huffdecode_tflm_register.cc"
# shellcheck disable=SC2086
arm-none-eabi-g++ $CPU -std=c++17 -Os -fno-rtti -fno-exceptions -fno-threadsafe-statics -DTF_LITE_STATIC_MEMORY \
  $INC -c -o "$W/firmware.o" "$HERE/firmware.cc"
# shellcheck disable=SC2086
arm-none-eabi-g++ $CPU --specs=rdimon.specs -nostartfiles -T "$ROOT/tools/mcu/mps2.ld" -Wl,--gc-sections \
  -o "$W/firmware.elf" "$W/firmware.o" "$W/register.o" "$W/huffdecode_tflm.o" "$W/dc_codec.o" "$W/startup.o" "$W/models.o" "$W"/tflm_obj/*.o -lm
arm-none-eabi-size "$W/firmware.elf"
timeout 1200 qemu-system-arm -M mps2-an386 -icount shift=0,align=off,sleep=off -nographic -monitor none -serial none \
  -semihosting-config enable=on,target=native -kernel "$W/firmware.elf" | tee "$W/result.txt"
