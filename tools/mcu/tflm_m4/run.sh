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
# Steps 1 and 3 are firmware_build.sh's (shared with run_cnn.sh: the same flags for both).
# KFLAGS: extra flags for the kernel's compile, e.g. KFLAGS=-DTF_LITE_STRIP_ERROR_STRINGS (the
# kernel as TFLM's BUILD_TYPE=release compiles it: no message strings).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/mcu/tflm_m4/firmware_build.sh
. "$HERE/firmware_build.sh" tflm_m4 "$@"
tflm_objects "$HERE/tflm_sources.txt"
# expected int8 outputs: the x86 wheel on the unpacked model
"$PY" -c "import numpy as np; np.save('$W/x5.npy', np.load('$MODELS/x_test.npy')[:5])"
TFLM_PY="$("$PY" "$ROOT/tools/mcu/tflm_env.py")"
make -s -C "$ROOT/tflite_kernels/micro" BUILD="$W/hostlib"
TF_CPP_MIN_LOG_LEVEL=3 "$TFLM_PY" "$ROOT/tools/mcu/tflm_run.py" --lib "$W/hostlib/libdc_huffdecode_tflm.so" \
  --model "$MODELS/int8.tflite" --input "$W/x5.npy" --out "$W/expected_int8.npy" 2>/dev/null
PYTHONPATH="$ROOT" "$PY" "$HERE/gen_model_data.py" "$MODELS" "$W/model_data.h" "$W/expected_int8.npy" 5
firmware_run firmware models
