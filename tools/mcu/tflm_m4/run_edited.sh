#!/usr/bin/env bash
# tools/mcu/tflm_m4/run_edited.sh TFLM_TREE [WORK_DIR] -- development-only check, like run.sh, of
# the HuffDecode kernel's refusals on TFLM compiled for Cortex-M4 under qemu (mps2-an386): the
# packed int8 LeNet-300-100 (benchmarks/mcu_models.py's, MODELS as in run.sh) and copies edited
# after packing (gen_edited_data.py: a packed input's shape +64 / -64 bytes, its buffer cut by 64,
# its output given a constant of 16 bytes / of the decoded size), each in both decode modes:
# the unedited one must run, every edited one must fail in AllocateTensors with the kernel's
# message (firmware_edited.cc). Prints TFLM_M4_EDIT lines and exits with the failure count.
# The TFLM objects, the firmware's compile and link and the qemu run are firmware_build.sh's.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/mcu/tflm_m4/firmware_build.sh
. "$HERE/firmware_build.sh" tflm_m4_edited "$@"
tflm_objects "$HERE/tflm_sources.txt"
PYTHONPATH="$ROOT" "$PY" "$HERE/gen_edited_data.py" "$MODELS" "$W"
firmware_run firmware_edited edited_models
