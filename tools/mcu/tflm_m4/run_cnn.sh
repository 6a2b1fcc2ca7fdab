#!/usr/bin/env bash
# tools/mcu/tflm_m4/run_cnn.sh TFLM_TREE [WORK_DIR] -- development-only end-to-end check, like
# run.sh but for the int8 CNNs of tests/test_micro_cnn.py (DS-CNN: CONV_2D, DEPTHWISE_CONV_2D,
# MEAN, FULLY_CONNECTED; conv autoencoder: CONV_2D, TRANSPOSE_CONV, SHAPE, STRIDED_SLICE, PACK):
# TFLM compiled for Cortex-M4 runs each unpacked and packed (decode once / every invoke) under
# qemu mps2-an386; every output must equal the x86 TFLM wheel's for the unpacked model bit for bit.
# Needs TFLM's source tree with its downloads (flatbuffers, gemmlowp, ruy) in place and, for
# arm-none-eabi-g++, libstdc++-arm-none-eabi-newlib.  Prints TFLM_M4 lines and exits with the
# failure count. The TFLM objects, the firmware's compile and link and the qemu run are
# firmware_build.sh's (shared with run.sh: the same flags for both).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/mcu/tflm_m4/firmware_build.sh
. "$HERE/firmware_build.sh" tflm_m4_cnn "$@"
tflm_objects "$HERE/tflm_sources.txt" "$HERE/tflm_sources_cnn.txt"
make -s -C "$ROOT/tflite_kernels/micro" BUILD="$W/hostlib"
TF_CPP_MIN_LOG_LEVEL=3 "$PY" "$HERE/gen_cnn_data.py" "$W" "$W/hostlib/libdc_huffdecode_tflm.so" 4 2>/dev/null
firmware_run firmware_cnn cnn_models
