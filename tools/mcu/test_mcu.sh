#!/usr/bin/env bash
# tools/mcu/test_mcu.sh -- `make test-mcu`: the packed-tensor decoder on emulated Cortex-M4/M7.
#
#  1. Tools: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (apt-get install when
#     root, under flock /tmp/apt.lock, waiting up to 10 min for dpkg's lock; otherwise a message
#     and exit 0 WITHOUT running anything).
#  2. Cross builds (cached in $DC_MCU_CACHE, default ~/.cache/dc_keras/mcu/build/<hash of sources,
#     flags, compiler>): tflite_kernels/tests/test_codec.c with its vectors, and
#     tools/mcu/bench_decode.c with synthetic LeNet-300-100 tensors (gen_bench_vectors.py), for
#     Cortex-M4 (mps2-an386, FPv4-SP) and Cortex-M7 (mps2-an500, FPv5-D16), bare metal
#     (tools/mcu/startup.c + mps2.ld, newlib + semihosting); the TFLM kernel
#     (tflite_kernels/micro/huffdecode_tflm.c) compiled for Cortex-M4 (its ILP32 layout asserts),
#     also with TF_LITE_STRIP_ERROR_STRINGS (TFLM's BUILD_TYPE=release: no message strings), and
#     the model array's check huffdecode_tflm_check.c (also for Cortex-M0; warning-free);
#     decoder and kernel compiled for Cortex-M0 (-Os, warning-free; code sizes only).
#  3. Runs under qemu-system-arm (semihosting: console + exit status): test_codec on M4 and M7
#     must report 0 failures; bench_decode on M4 with -icount shift=0 (instruction counts; a
#     calibration loop must count exactly) checks every decode by hash and reports
#     instructions per output element and the stack high-water mark.
#  4. With the workspace decoder (dc_decode_ws, codec v2): every decoder function except the
#     host convenience dc_decode (which carries a DC_MAX_WORKSPACE workspace on its own stack by
#     design) must have a frame <= 4096 bytes (-fstack-usage, -Wstack-usage=4096 as a warning),
#     and the measured stack of each dc_decode_ws call (painting) must be <= 4096 bytes.
# Results: $DC_MCU_OUT (default build/mcu/results.txt) and a JSON next to it.
# BENCH_TFLITE="a.tflite b.tflite" benchmarks those models' tensors instead of the synthetic ones.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
T0=$(date +%s)
step() { echo "== test-mcu [$(( $(date +%s) - T0 ))s] $*"; }

# ---- 1. tools ---------------------------------------------------------------------------
PKGS=(gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)
have_tools() {
  command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null &&
  [ -n "$(arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 \
          -print-file-name=librdimon.a 2>/dev/null | grep /)" ]
}
step "tools"
# shellcheck disable=SC1091
. "$ROOT/tools/ensure_tools.sh"
ensure_tools test-mcu "${PKGS[@]}"
echo "   $(arm-none-eabi-gcc --version | head -n1); $(qemu-system-arm --version | head -n1)"

# ---- 2. builds --------------------------------------------------------------------------
K=tflite_kernels
M4="-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16"
M7="-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16"
M0="-mcpu=cortex-m0 -mthumb -mfloat-abi=soft"
COMMON="-std=c99 -O2 -g -Wall -Wextra -Werror -ffunction-sections -fdata-sections -I$K/include -I$K/src -Itools/mcu"
LINK="--specs=rdimon.specs -nostartfiles -T tools/mcu/mps2.ld -Wl,--gc-sections"
WS=0
if grep -q "DC_MAX_WORKSPACE" $K/include/dc_codec.h; then WS=1; fi
DEC_FLAGS=""
[ $WS = 1 ] && DEC_FLAGS="-Wstack-usage=4096 -Wno-error=stack-usage="
KEY_FILES=($K/src/dc_codec*.c $K/src/dc_codec*.h $K/include/*.h $K/tests/test_codec.c $K/tests/codec_vectors.h $K/tests/dc_test_pack.h
           $K/micro/*.c $K/micro/*.h tools/mcu/*.c tools/mcu/*.h tools/mcu/mps2.ld
           tools/mcu/gen_bench_vectors.py tools/mcu/test_mcu.sh dc_keras/codec/*.py)
KEY="$( (cat "${KEY_FILES[@]}"; echo "$COMMON $LINK $M4 $M7 $M0 $DEC_FLAGS ${BENCH_TFLITE:-}";
         arm-none-eabi-gcc --version | head -n1; if [ -n "${BENCH_TFLITE:-}" ]; then cat ${BENCH_TFLITE}; fi) \
       | sha256sum | cut -c1-16)"
CACHE="${DC_MCU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dc_keras/mcu/build}"
B="$CACHE/$KEY"
if [ -f "$B/.done" ]; then
  step "builds: cached ($B)"
else
  step "builds -> $B"
  rm -rf "$B.tmp" && mkdir -p "$B.tmp"
  if [ -n "${BENCH_TFLITE:-}" ]; then
    # shellcheck disable=SC2086
    PYTHONPATH="$ROOT" "$PY" tools/mcu/gen_bench_vectors.py "$B.tmp/bench_vectors.h" --tflite $BENCH_TFLITE
  else
    PYTHONPATH="$ROOT" "$PY" tools/mcu/gen_bench_vectors.py "$B.tmp/bench_vectors.h"
  fi
  for cpu in m4 m7; do
    F=$M4; [ $cpu = m7 ] && F=$M7
    mkdir -p "$B.tmp/$cpu"
    # decoder: its own object, with -fstack-usage (and the 4 KiB limit once it has a workspace API)
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F $COMMON $DEC_FLAGS -fstack-usage -c -o "$B.tmp/$cpu/dc_codec.o" $K/src/dc_codec.c \
      2>&1 | grep -v "stack usage is\|^ *[0-9]* |\|^ *|\|In function" || true
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F $COMMON -c -o "$B.tmp/$cpu/startup.o" tools/mcu/startup.c
    # the C tests print uint32_t with %u (newlib's uint32_t is long): -Wno-format for that file only
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F $COMMON -Wno-format $LINK -o "$B.tmp/$cpu/test_codec.elf" \
      $K/tests/test_codec.c "$B.tmp/$cpu/dc_codec.o" "$B.tmp/$cpu/startup.o" -lm
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F $COMMON -I"$B.tmp" $LINK -o "$B.tmp/$cpu/bench.elf" \
      tools/mcu/bench_decode.c "$B.tmp/$cpu/dc_codec.o" "$B.tmp/$cpu/startup.o"
    # the TFLM kernel (compile only: its ILP32 layout asserts), -O2 and -Os code sizes
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F $COMMON -I$K/micro -c -o "$B.tmp/$cpu/huffdecode_tflm.o" $K/micro/huffdecode_tflm.c
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F ${COMMON/-O2/-Os} -c -o "$B.tmp/$cpu/dc_codec_Os.o" $K/src/dc_codec.c
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F ${COMMON/-O2/-Os} -I$K/micro -c -o "$B.tmp/$cpu/huffdecode_tflm_Os.o" $K/micro/huffdecode_tflm.c
    # the model array's check (huffdecode_tflm_check.c, optional for a firmware): warning-free
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F ${COMMON/-O2/-Os} -I$K/micro -c -o "$B.tmp/$cpu/huffdecode_tflm_check_Os.o" \
      $K/micro/huffdecode_tflm_check.c
    # the kernel as TFLM's release build (BUILD_TYPE=release) compiles it: same errors, no messages
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F $COMMON -DTF_LITE_STRIP_ERROR_STRINGS -I$K/micro -c -o "$B.tmp/$cpu/huffdecode_tflm_strip.o" \
      $K/micro/huffdecode_tflm.c
    # shellcheck disable=SC2086
    arm-none-eabi-gcc $F ${COMMON/-O2/-Os} -DTF_LITE_STRIP_ERROR_STRINGS -I$K/micro -c \
      -o "$B.tmp/$cpu/huffdecode_tflm_strip_Os.o" $K/micro/huffdecode_tflm.c
  done
  # Cortex-M0 (ARMv6-M, which faults on unaligned loads): decoder and kernel compile warning-free
  # (compile only: qemu's one M0 board, microbit, has 256 KB flash / 16 KB RAM and traps no
  # unaligned access; test_codec's test_unaligned_input under UBSan covers the loads)
  mkdir -p "$B.tmp/m0"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $M0 ${COMMON/-O2/-Os} -c -o "$B.tmp/m0/dc_codec_Os.o" $K/src/dc_codec.c
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $M0 ${COMMON/-O2/-Os} -I$K/micro -c -o "$B.tmp/m0/huffdecode_tflm_Os.o" $K/micro/huffdecode_tflm.c
  # shellcheck disable=SC2086
  arm-none-eabi-gcc $M0 ${COMMON/-O2/-Os} -I$K/micro -c -o "$B.tmp/m0/huffdecode_tflm_check_Os.o" \
    $K/micro/huffdecode_tflm_check.c
  touch "$B.tmp/.done"
  rm -rf "$B" && mv "$B.tmp" "$B"
fi

# ---- 3. runs ----------------------------------------------------------------------------
QEMU=(qemu-system-arm -nographic -monitor none -serial none -semihosting-config enable=on,target=native)
run() { # board elf [extra qemu args...]
  local board=$1 elf=$2; shift 2
  timeout 900 "${QEMU[@]}" -M "$board" "$@" -kernel "$elf"
}
OUTD="$(dirname "${DC_MCU_OUT:-$ROOT/build/mcu/results.txt}")"
OUT="${DC_MCU_OUT:-$ROOT/build/mcu/results.txt}"
mkdir -p "$OUTD"
fail=0
for pair in "m4 mps2-an386" "m7 mps2-an500"; do
  set -- $pair
  step "test_codec on Cortex-${1^^} ($2)"
  if log="$(run "$2" "$B/$1/test_codec.elf" 2>&1)"; then rc=0; else rc=$?; fi
  echo "   $(echo "$log" | tail -n 3 | tr '\n' ' ')"
  if [ $rc != 0 ] || ! echo "$log" | grep -q "^test_codec: [0-9]* passed, 0 failed"; then
    echo "test-mcu: FAILED: test_codec on $2 (exit $rc)"; echo "$log" | tail -n 30; fail=1
  fi
done
step "bench_decode on Cortex-M4 (qemu -icount shift=0: instruction counts)"
if blog="$(run mps2-an386 "$B/m4/bench.elf" -icount shift=0,align=off,sleep=off 2>&1)"; then rc=0; else rc=$?; fi
if [ $rc != 0 ] || ! echo "$blog" | grep -q "^BENCH_DONE 0"; then
  echo "test-mcu: FAILED: bench_decode (exit $rc)"; echo "$blog" | tail -n 20; fail=1
fi
if ! echo "$blog" | grep -q "^BENCH_CALIBRATION 2000000 2000000$"; then
  echo "test-mcu: FAILED: instruction counter calibration: $(echo "$blog" | grep CALIBRATION)"; fail=1
fi
SIZE() { arm-none-eabi-size -A "$1" | awk '$1 ~ /^\.(text|rodata|data)/ {s += $2} END {print s + 0}'; }
MAXFRAME="$(sort -t$'\t' -k2 -n "$B/m4/dc_codec.su" | tail -n1 | tr '\t' ' ')"
MAXFRAME_WS="$(grep -v ":dc_decode\s" "$B/m4/dc_codec.su" | sort -t$'\t' -k2 -n | tail -n1 | tr '\t' ' ')"
{
  echo "decoder_api $([ $WS = 1 ] && echo dc_decode_ws || echo dc_decode)"
  echo "code_bytes_O2 decoder $(SIZE "$B/m4/dc_codec.o") kernel $(SIZE "$B/m4/huffdecode_tflm.o")"
  echo "code_bytes_Os decoder $(SIZE "$B/m4/dc_codec_Os.o") kernel $(SIZE "$B/m4/huffdecode_tflm_Os.o")"
  echo "code_bytes_Os_m0 decoder $(SIZE "$B/m0/dc_codec_Os.o") kernel $(SIZE "$B/m0/huffdecode_tflm_Os.o")"
  echo "code_bytes_O2_strip decoder $(SIZE "$B/m4/dc_codec.o") kernel $(SIZE "$B/m4/huffdecode_tflm_strip.o")"
  echo "code_bytes_Os_strip decoder $(SIZE "$B/m4/dc_codec_Os.o") kernel $(SIZE "$B/m4/huffdecode_tflm_strip_Os.o")"
  echo "largest_frame_m4 $MAXFRAME"
  echo "largest_frame_m4_without_dc_decode $MAXFRAME_WS"
  echo "$blog" | grep "^BENCH"
} > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
"$PY" - "$OUT" "$WS" <<'PYEOF' || fail=1
import json, os, sys
path, ws = sys.argv[1], sys.argv[2] == "1"
rows, info = [], {}
for line in open(path):
    f = line.split()
    if f[0] == "BENCH" and len(f) == 10:
        n, nz, packed, insns, stack, wsb, ck = map(int, f[3:])
        rows.append(dict(name=f[1], layout=f[2], elements=n, nonzero=nz, packed_bytes=packed,
                         decode_insns=insns, insns_per_element=round(insns / n, 2), stack_bytes=stack,
                         workspace_bytes=wsb, checksum_insns=ck or None,
                         checksum_share=round(ck / insns, 3) if ck else None))
    elif f[0].startswith("code_bytes"):
        info[f[0]] = {"decoder": int(f[2]), "kernel": int(f[4])}
    elif f[0].startswith("largest_frame_m4"):
        info[f[0]] = " ".join(f[1:])
    elif f[0] == "decoder_api":
        info[f[0]] = f[1]
groups = {}
for r in rows:  # per model: "<model>_<tensor>" (BENCH_TFLITE) or "<tensor>_<dtype>" (synthetic)
    g = r["name"].split("_")[0] if not r["name"].startswith("fc") else r["name"].split("_")[-1]
    i, n = groups.get(g, (0, 0))
    groups[g] = (i + r["decode_insns"], n + r["elements"])
res = dict(info, cpu="cortex-m4 (qemu mps2-an386, -icount shift=0)", tensors=rows,
           max_stack_bytes=max(r["stack_bytes"] for r in rows),
           insns_per_element_by_model={g: round(i / n, 2) for g, (i, n) in groups.items()},
           loadavg=os.getloadavg())
print("   instructions per output element, all tensors of: " +
      ", ".join(f"{g} {v}" for g, v in res["insns_per_element_by_model"].items()))
json.dump(res, open(path.replace(".txt", ".json"), "w"), indent=1)
for r in rows:
    print(f"   {r['name']:<28} {r['layout']:<6} {r['elements']:>8} el {r['insns_per_element']:>6} insn/el "
          f"stack {r['stack_bytes']:>6} B ws {r['workspace_bytes']:>5} B"
          + (f" (checksum {100 * r['checksum_share']:.0f} %)" if r["checksum_share"] else ""))
print(f"   code (-O2, M4): decoder {info['code_bytes_O2']['decoder']} B, TFLM kernel "
      f"{info['code_bytes_O2']['kernel']} B ({info['code_bytes_O2_strip']['kernel']} B with "
      f"TF_LITE_STRIP_ERROR_STRINGS); largest frame: {info['largest_frame_m4']}")
if ws:
    frame = int(info["largest_frame_m4_without_dc_decode"].split()[1])
    print(f"   largest frame besides dc_decode: {info['largest_frame_m4_without_dc_decode']}")
    if res["max_stack_bytes"] > 4096 or frame > 4096:
        print(f"test-mcu: FAILED: decoder stack {res['max_stack_bytes']} B / frame {frame} B > 4096 B")
        sys.exit(1)
PYEOF
step "results: $OUT"
[ $fail = 0 ] && step "passed" || { step "FAILED"; exit 1; }
