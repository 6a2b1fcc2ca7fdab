# tools/mcu/tflm_m4/firmware_build.sh -- sourced by run.sh, run_edited.sh and run_cnn.sh (not run on
# its own), as `. "$HERE/firmware_build.sh" NAME "$@"` after `set -euo pipefail` and HERE (this
# folder): what the three share to put a firmware together, so that all are compiled with the same flags.
#   On sourcing: T (TFLM's tree: the script's first argument), ROOT (the repository), W (the work dir:
#     its second argument, or ROOT/build/mcu/NAME; created), PY (default: the venv's python) and
#     MODELS (default: benchmarks/mcu_models.py's cached LeNet, which run.sh and run_edited.sh read);
#   tflm_objects LIST...: the TFLM sources named in each list, compiled from T into W/tflm_obj
#     (arm-none-eabi-g++ -Os with TFLM's defines; an object already there is kept);
#   firmware_run NAME MODELS: HERE/NAME.cc with our kernel (C99; huffdecode_tflm_check.c too, which
#     --gc-sections drops unless NAME.cc calls it), the decoder, tools/mcu/startup.c and W/MODELS.S (the .incbin'd models) linked against those objects into W/NAME.elf, its size
#     printed, then run under qemu-system-arm (mps2-an386, -icount shift=0) into W/result.txt; its
#     status is the firmware's (the failure count). KFLAGS: extra flags for the kernel's compile.
if [ $# -lt 2 ]; then
  echo "usage: $0 TFLM_TREE [WORK_DIR]: TFLM_TREE is TFLM's source tree with its third-party downloads" \
    "in place (see docs/microcontrollers.md, \"TFLM on Cortex-M4\")" >&2
  exit 2
fi
T="$(cd "$2" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
W="${3:-$ROOT/build/mcu/$1}"
mkdir -p "$W"
PY="${PY:-$ROOT/.venv/bin/python}"
MODELS="${MODELS:-$HOME/.cache/dc_keras/mcu/lenet}"
CPU="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"
DL="$T/tensorflow/lite/micro/tools/make/downloads"
TFLAGS="$CPU -std=c++17 -Os -fno-rtti -fno-exceptions -fno-threadsafe-statics -fno-unwind-tables
        -ffunction-sections -fdata-sections -DTF_LITE_STATIC_MEMORY -DTF_LITE_MCU_DEBUG_LOG
        -DTF_LITE_USE_CTIME -I$T -I$DL/flatbuffers/include -I$DL/gemmlowp -I$DL/ruy -I$DL/kissfft"
INC="-I$T -I$DL/flatbuffers/include -I$DL/gemmlowp -I$DL/ruy
     -I$ROOT/tflite_kernels/micro -I$ROOT/tflite_kernels/include -I$ROOT/tools/mcu -I$W"

tflm_objects() {
  local list src o
  # shellcheck disable=SC2086
  if ! echo '#include <cstdarg>' | arm-none-eabi-g++ $CPU -x c++ -fsyntax-only - 2>/dev/null; then
    echo "firmware_build.sh: arm-none-eabi-g++ finds no C++ standard library headers (<cstdarg>), which" \
      "TFLM's sources need: install libstdc++-arm-none-eabi-newlib (Debian/Ubuntu)" >&2
    return 1
  fi
  mkdir -p "$W/tflm_obj"
  for list in "$@"; do
    while read -r src; do
      o="$W/tflm_obj/$(echo "$src" | tr / _ | sed 's/\.cc$/.o/')"
      # shellcheck disable=SC2086
      [ -f "$o" ] || (cd "$T" && arm-none-eabi-g++ $TFLAGS -c "$src" -o "$o.tmp" && mv "$o.tmp" "$o")
    done < "$list"
  done
}

firmware_run() {
  local name="$1" models="$2"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror $INC -c -o "$W/dc_codec.o" "$ROOT/tflite_kernels/src/dc_codec.c"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror ${KFLAGS:-} $INC -c -o "$W/huffdecode_tflm.o" \
    "$ROOT/tflite_kernels/micro/huffdecode_tflm.c"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $CPU -std=c99 -O2 -Wall -Wextra -Werror ${KFLAGS:-} $INC -c -o "$W/huffdecode_tflm_check.o" \
    "$ROOT/tflite_kernels/micro/huffdecode_tflm_check.c"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $CPU -std=c99 -O2 $INC -c -o "$W/startup.o" "$ROOT/tools/mcu/startup.c"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $CPU -c -o "$W/$models.o" "$W/$models.S"
  # shellcheck disable=SC2086
  arm-none-eabi-g++ $CPU -std=c++17 -O2 -fno-rtti -fno-exceptions -fno-threadsafe-statics -DTF_LITE_STATIC_MEMORY \
    -Wall -Werror $INC -c -o "$W/register.o" "$ROOT/tflite_kernels/micro/huffdecode_tflm_register.cc"
  # shellcheck disable=SC2086
  arm-none-eabi-g++ $CPU -std=c++17 -Os -fno-rtti -fno-exceptions -fno-threadsafe-statics -DTF_LITE_STATIC_MEMORY \
    $INC -c -o "$W/$name.o" "$HERE/$name.cc"
  # shellcheck disable=SC2086
  arm-none-eabi-g++ $CPU --specs=rdimon.specs -nostartfiles -T "$ROOT/tools/mcu/mps2.ld" -Wl,--gc-sections \
    -o "$W/$name.elf" "$W/$name.o" "$W/register.o" "$W/huffdecode_tflm.o" "$W/huffdecode_tflm_check.o" "$W/dc_codec.o" \
    "$W/startup.o" "$W/$models.o" "$W"/tflm_obj/*.o -lm
  arm-none-eabi-size "$W/$name.elf"
  timeout 1200 qemu-system-arm -M mps2-an386 -icount shift=0,align=off,sleep=off -nographic -monitor none \
    -serial none -semihosting-config enable=on,target=native -kernel "$W/$name.elf" | tee "$W/result.txt"
}
