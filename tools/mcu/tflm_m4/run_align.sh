#!/usr/bin/env bash
# tools/mcu/tflm_m4/run_align.sh TFLM_TREE [WORK_DIR] -- development-only check, like run.sh, of
# docs/microcontrollers.md's *Alignment* on TFLM compiled for Cortex-M4 under qemu (mps2-an386):
# firmware_align.cc runs the models of MODELS (int8.packed.tflite, float.packed.tflite,
# int8.tflite: benchmarks/mcu_models.py's cached LeNet by default, as run.sh; any models of the
# LeNet's ops) copied to RAM at 4-byte aligned offsets, bit-exact with offset 0, then the first at
# offset 1, which must end in the M4's UsageFault for an unaligned access (UFSR.UNALIGNED: CFSR
# 0x01000000), not run, and which DcTflmCheckModel (huffdecode_tflm_check.c, run before each copy)
# must refuse as misaligned. Prints TFLM_M4_ALIGN lines; exits 0 when all three hold.
# The TFLM objects, the firmware's compile and link and the qemu run are firmware_build.sh's.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/mcu/tflm_m4/firmware_build.sh
. "$HERE/firmware_build.sh" tflm_m4_align "$@"
tflm_objects "$HERE/tflm_sources.txt"
{
  echo ".section .rodata"
  for pair in int8_packed:int8.packed float_packed:float.packed int8_plain:int8; do
    sym="${pair%%:*}" file="$MODELS/${pair#*:}.tflite"
    [ -f "$file" ] || { echo "run_align.sh: no $file (MODELS=$MODELS)" >&2; exit 2; }
    printf '.global %s\n.balign 16\n%s:\n.incbin "%s"\n.global %s_end\n%s_end:\n' \
      "$sym" "$sym" "$file" "$sym" "$sym"
  done
} >"$W/align_models.S"
status=0
firmware_run firmware_align align_models || status=$?
grep -q "^TFLM_M4_ALIGN_ALIGNED_DONE 0" "$W/result.txt" || { echo "run_align.sh: aligned runs failed" >&2; exit 1; }
if grep -q "^TFLM_M4_ALIGN_MISALIGNED_RAN" "$W/result.txt" || ! grep -q "FAULT: CFSR=01000000" "$W/result.txt"; then
  echo "run_align.sh: the model at offset 1 did not end in an unaligned-access UsageFault (status $status)" >&2
  exit 1
fi
# DcTflmCheckModel (run before each copy, its answer then ignored) refuses the copy that faults
if ! grep -q "^TFLM_M4_ALIGN_CHECK .* offset 1: 2 model array: not 16-byte aligned" "$W/result.txt"; then
  echo "run_align.sh: DcTflmCheckModel did not refuse the model at offset 1 as misaligned" >&2
  exit 1
fi
echo "TFLM_M4_ALIGN_OK (offset 1: UsageFault UNALIGNED, refused first by DcTflmCheckModel, as docs/microcontrollers.md says)"
