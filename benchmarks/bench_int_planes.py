"""Decode speed of the integer-planes layout (docs/FORMAT.md §17) against a dense layout-0 tensor of
the same dtype and element count, with the C decoder (one ``dc_decode`` call through ctypes).

Tensors (1,048,576 elements each): int32 residuals of a bias-like tensor (normal, sd 20,000: ~15
bits per element), a sorted int64 index table (previous-element predictor), and for comparison
an int32 / int64 tensor of 16 values coded densely (§5, ~4 bits per element). Times are the
calling thread's CPU time, best of ``--reps`` runs; the load average is printed with them.

Usage: python benchmarks/bench_int_planes.py [--reps 20] [--json out.json]
"""
import argparse
import os

import numpy as np

from _common import command_line, decode_best_us as best_us, machine_info, write_json
from dc_keras import codec

N = 1 << 20


def tensors():
    rng = np.random.default_rng(0)
    yield "int32 bias-like (int_planes)", rng.normal(0, 20000, N).astype(np.int32), "int_planes"
    yield "int32 16 values (dense)", rng.integers(-8, 8, N).astype(np.int32) * 1000, "dense"
    yield "int64 sorted indices (int_planes)", np.sort(rng.integers(0, 4 * N, N)).astype(np.int64), "int_planes"
    yield "int64 16 values (dense)", rng.integers(-8, 8, N).astype(np.int64) * 10**12, "dense"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows, machine = [], machine_info(frameworks=False)
    print(f"load average before: {os.getloadavg()}")
    for name, a, layout in tensors():
        packed = codec.encode(a, layout=layout)
        out = np.empty_like(a)
        us = best_us(packed, out, args.reps)
        assert out.tobytes() == a.tobytes()
        info = codec.info(packed)
        rows.append({"tensor": name, "layout": info["layout"], "elements": N, "packed_bytes": len(packed),
                     "bits_per_element": 8 * len(packed) / N, "decode_us": round(us, 1),
                     "ns_per_element": round(1000 * us / N, 2)})
        print(f"{name:36s} {info['layout']:10s} {len(packed):9d} B {8 * len(packed) / N:6.2f} bit/el "
              f"{us:9.1f} us {1000 * us / N:6.2f} ns/el")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        write_json(args.json, {"benchmark": "int_planes_speed", "rows": rows, "reps": args.reps,
                               "command": command_line(__file__, argv), "machine": machine, "loadavg_after": os.getloadavg()})


if __name__ == "__main__":
    main()
