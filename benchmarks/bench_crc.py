"""Speed of the C decoder's §8 CRC-32 (``dc_crc32``, docs/FORMAT.md §8) on one core: the run-time
choice (carry-less multiplication on x86-64 CPUs with PCLMULQDQ, inputs >= 256 B) and the portable
table code (slice-by-8 in four lanes for inputs >= 4 KiB; ``dc_codec_use_simd(0)`` selects it, as a
``-DDC_NO_SIMD`` build or a CPU without PCLMULQDQ does), next to Python's ``zlib.crc32`` (the same
CRC). Each result is checked equal to ``zlib.crc32``. Times are the calling thread's CPU time, best
of ``--reps`` runs per size in each of ``--rounds`` fresh processes; the result takes each cell's
best process (on these virtual machines a whole process is sometimes ~1.3x slower, every route
alike) and keeps every round's rows; the load average is recorded with them.

Usage: python benchmarks/bench_crc.py [--reps 30] [--rounds 5] [--json docs/results/crc_speed.json]
"""
import argparse
import ctypes
import json
import time
import zlib

import numpy as np

from _common import child_json, command_line, machine_info, record
from dc_keras.codec._decode import _library

SIZES = (64 * 1024, 1 << 20, 16 << 20)  # a layer, a small model's weights, a large one's (smaller inputs: the
# ctypes call, ~1 us, is most of the time)


def best_seconds(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
    return best


def measure(reps):
    lib = _library()
    lib.dc_crc32.restype = ctypes.c_uint32
    lib.dc_crc32.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
    lib.dc_codec_use_simd.restype = ctypes.c_int
    lib.dc_codec_use_simd.argtypes = [ctypes.c_int]
    data = np.random.default_rng(0).integers(0, 256, max(SIZES), dtype=np.uint8)
    rows = []
    for n in SIZES:
        buf, ptr = data[:n].tobytes(), data.ctypes.data
        want = zlib.crc32(buf)
        row = {"bytes": n}
        for route, simd in (("run_time_choice", 1), ("portable_table", 0)):
            was = lib.dc_codec_use_simd(simd)
            try:
                got = lib.dc_crc32(0, ptr, n)
                assert got == want, (route, n, got, want)
                reps_n = reps * max(1, (16 << 20) // n // 64)  # more runs of the small sizes
                row[route + "_gb_per_s"] = round(n / best_seconds(lambda p=ptr, k=n: lib.dc_crc32(0, p, k), reps_n) / 1e9, 2)
            finally:
                lib.dc_codec_use_simd(was)
        row["zlib_gb_per_s"] = round(n / best_seconds(lambda b=buf: zlib.crc32(b), reps) / 1e9, 2)
        print(row, flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        with open(args.child, "w") as f:
            json.dump(measure(args.reps), f)
        return None
    info = machine_info(frameworks=False)
    rounds = [child_json(__file__, "--reps", str(args.reps), prefix="dc_keras-crc-") for _ in range(args.rounds)]
    rows = [{"bytes": r0["bytes"], **{k: max(r[i][k] for r in rounds) for k in r0 if k != "bytes"}}
            for i, r0 in enumerate(rounds[0])]
    result = {"benchmark": "crc_speed", "rows": rows, "rounds": rounds, "reps": args.reps,
              "command": command_line(__file__, argv), "machine": info,
              "loadavg_after": machine_info(frameworks=False)["loadavg"]}
    for row in rows:
        print("best:", row)
    return record(args.json, result)

if __name__ == "__main__":
    main()
