"""Decode speed of the sparse float planes layout (docs/FORMAT.md §18, layout 7) against §12's float
planes (layout 4) of the same tensor and §6's sparse layout (layout 1) of the same positions, with
the C decoder (one ``dc_decode`` call through ctypes).

Tensors: a 784 x 300 float32 kernel (LeNet-300-100's fc1 shape) of N(0, 0.05) weights, magnitude-
pruned to 20 % and to 5 % (the pruned ones +0.0, as dc_keras.prune leaves them), and the 20 % one as
tfmot's strip_pruning leaves it (pruned negatives -0.0: symbol 257 between the stored values). §6
cannot hold these unclustered values (more than 4096 distinct ones), so its row is the same mask
with the kept values clustered to 32 shared values (Deep Compression's case): the cost of §6's
walk over the same positions. §6 runs its x86-64 AVX2 / AVX-512 pair-table loop where the CPU has
it; ``portable`` rows run every layout with ``dc_codec_use_simd(0)`` (the plain C loops, which §12
and §18 always use; it also runs §8's CRC by the table instead of carry-less multiplication).
Times are the calling thread's CPU time, best of ``--reps`` runs in each of ``--rounds`` rounds
over all cases; the load average is recorded with them.

Usage: python benchmarks/bench_sparse_planes.py [--reps 30] [--rounds 5] [--json docs/results/sparse_planes_speed.json]
"""
import argparse
import ctypes
import os

import numpy as np

from _common import command_line, decode_best_us as best_us, machine_info, write_json
from dc_keras import codec
from dc_keras.codec._decode import _library

SHAPE = (784, 300)


def _pruned(kept, signed_zeros, seed=0):
    w = np.random.default_rng(seed).normal(0, 0.05, SHAPE)
    keep = np.abs(w) >= np.quantile(np.abs(w), 1 - kept)
    return np.where(keep, w, np.where((w < 0) & signed_zeros, -0.0, 0.0)).astype(np.float32), keep


def _clustered(w, keep, k=32):
    vals = w[keep].astype(np.float64)
    cent = np.quantile(vals, (np.arange(k) + 0.5) / k)
    out = np.zeros_like(w)
    out[keep] = cent[np.abs(vals[:, None] - cent[None, :]).argmin(1)].astype(np.float32)
    return out


def tensors():
    for pct, kept, signed in (("20 % kept", 0.2, False), ("5 % kept", 0.05, False),
                              ("20 % kept, pruned negatives -0.0 (tfmot)", 0.2, True)):
        w, keep = _pruned(kept, signed)
        yield pct, "sparse_planes", w
        yield pct, "float_planes", w
        if not signed:
            yield f"{pct}, values clustered to 32", "sparse", _clustered(w, keep)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5, help="rounds over all cases; the best of all is kept")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    lib = _library()
    lib.dc_codec_use_simd.argtypes = [ctypes.c_int]
    lib.dc_codec_use_simd.restype = ctypes.c_int
    rows, machine, n = [], machine_info(frameworks=False), SHAPE[0] * SHAPE[1]
    load_before = os.getloadavg()
    print(f"load average before: {load_before}")
    cases = []
    for pct, layout, a in tensors():
        packed = codec.encode(a, layout=layout)
        info = codec.info(packed)
        cases.append((a, packed, {"tensor": f"784x300 float32, {pct}", "layout": info["layout"], "elements": n,
                                  "kept": int(np.count_nonzero(a)), "packed_bytes": len(packed),
                                  "bits_per_element": 8 * len(packed) / n}))
    best = {}
    for _ in range(args.rounds):  # every case once per round: a slow spell of the machine hits all alike
        for k, (a, packed, _) in enumerate(cases):
            out = np.empty_like(a)
            for path, simd in (("default", 1), ("portable", 0)):
                was = lib.dc_codec_use_simd(simd)
                try:
                    us = best_us(packed, out, args.reps)
                finally:
                    lib.dc_codec_use_simd(was)
                assert out.tobytes() == a.tobytes()
                best[k, path] = min(best.get((k, path), float("inf")), us)
    for k, (_, _, row) in enumerate(cases):
        for path in ("default", "portable"):
            row[f"decode_us_{path}"] = round(best[k, path], 1)
            row[f"ns_per_element_{path}"] = round(1000 * best[k, path] / n, 3)
        rows.append(row)
        print(f"{row['tensor']:58s} {row['layout']:14s} {row['packed_bytes']:8d} B {row['decode_us_default']:8.1f} us "
              f"(portable {row['decode_us_portable']:8.1f} us) {row['ns_per_element_default']:6.3f} ns/el")
    load_after = os.getloadavg()
    print(f"load average after: {load_after}")
    if args.json:
        write_json(args.json, {"benchmark": "sparse_planes_speed", "rows": rows, "reps": args.reps, "rounds": args.rounds,
                               "command": command_line(__file__, argv), "machine": machine,
                               "loadavg_before": load_before, "loadavg_after": load_after})


if __name__ == "__main__":
    main()
