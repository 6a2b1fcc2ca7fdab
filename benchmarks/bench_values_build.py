"""Build of the value form (dc_sparse_fc.h: a 16-bit column and the float32 weight per non-zero) from a
pruned but unclustered float32 FULLY_CONNECTED weight packed as FORMAT.md §18 (sparse float planes):
straight from the packed entries (dc_sparse_fc_build's default: build_planes_direct, through
dc_codec.c's dc_decode_value_rows) against the transient dense copy it took before (forced with
dc_sparse_fc_set_direct(0): the whole weight decoded, scanned, freed), on the same packed bytes.

Weights ([inputs, units], as benchmarks/bench_values.py): 784 x 300 (LeNet-300-100's first layer),
1024 x 1024 and 4096 x 1024, standard-normal draws x 0.1 (every non-zero distinct: the value form),
5, 10 and 20 % of them kept at random, the others +0.0; plus 1024 x 1024 at 10 % as tfmot's
strip_pruning leaves it (pruned negatives -0.0, symbol 257: every element an entry, G = 1).

- Time: wall-clock and process CPU milliseconds (both threads) of one dc_sparse_fc_build call (the
  form freed between calls), the two routes and, for reference, the decoded route's dc_decode of the
  same bytes into a buffer of its own (``decode``) alternated ``--reps`` times in this process after a
  warm-up round; median and best. Forms of 1 MiB or more are built with the helper thread on both
  routes (it maps the form's pages and checks the CRC while the caller decodes).
- Memory: in a fresh child process per build (so that no earlier allocation is reused), after a
  warm-up build of a small tensor and with the peak RSS reset (/proc/self/clear_refs 5): the peak
  resident set during the build (VmHWM) minus the resident set before it, and the anonymous memory
  the form keeps afterwards (RssAnon delta), in MiB.

    python benchmarks/bench_values_build.py [--reps 15] [--json docs/results/values_build.json]
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import command_line, log, machine_info, write_json

SHAPES = ((784, 300), (1024, 1024), (4096, 1024))
DENSITIES = (0.05, 0.1, 0.2)


def _lib(path):
    lib = ctypes.CDLL(path)
    lib.dc_sparse_fc_build.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(SparseFc),
                                       ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_size_t]
    lib.dc_sparse_fc_free.argtypes = [ctypes.POINTER(SparseFc)]
    lib.dc_sparse_fc_bytes.argtypes = [ctypes.POINTER(SparseFc)]
    lib.dc_sparse_fc_bytes.restype = ctypes.c_size_t
    lib.dc_sparse_fc_set_direct.argtypes = [ctypes.c_int]
    lib.dc_sparse_fc_set_direct.restype = ctypes.c_int
    lib.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    return lib


class SparseFc(ctypes.Structure):
    """dc_sparse_fc (dc_sparse_fc.h) as the public header lays it out."""
    _fields_ = [("rows", ctypes.c_uint32), ("cols", ctypes.c_uint32), ("dtype", ctypes.c_uint32),
                ("num_values", ctypes.c_uint32), ("nnz", ctypes.c_uint64), ("row_ptr", ctypes.c_void_p),
                ("col", ctypes.c_void_p), ("code", ctypes.c_void_p), ("row_sum", ctypes.c_void_p),
                ("from_dense", ctypes.c_uint32), ("table", ctypes.c_uint32), ("fill", ctypes.c_int32),
                ("codebook", ctypes.c_float * 256), ("packed_file", ctypes.c_int32),
                ("tile_groups", ctypes.c_uint32), ("tile_ptr", ctypes.c_void_p), ("tile_block", ctypes.c_void_p),
                ("tile_steps", ctypes.c_void_p), ("tile_e", ctypes.c_void_p), ("tile_entries", ctypes.c_uint64),
                ("value", ctypes.c_void_p)]


def _build(lib, packed, m):
    ds = ctypes.c_int(0)
    why = ctypes.create_string_buffer(256)
    st = lib.dc_sparse_fc_build(packed, len(packed), ctypes.byref(m), ctypes.byref(ds), why, 256)
    if st != 0:
        raise RuntimeError(f"dc_sparse_fc_build: {st} ({ds.value}) {why.value.decode()}")


def _status():
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
                if k in ("VmRSS", "VmHWM", "RssAnon")}


def _child(lib_path, packed_path, small_path, direct):
    """One build in this (fresh) process: peak and kept memory, KiB (printed as JSON)."""
    lib = _lib(lib_path)
    with open(packed_path, "rb") as f:
        packed = f.read()
    with open(small_path, "rb") as f:
        small = f.read()
    m = SparseFc()
    lib.dc_sparse_fc_set_direct(direct)
    _build(lib, small, m)  # warm-up: code pages, the allocator's first arena
    lib.dc_sparse_fc_free(ctypes.byref(m))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status()
    _build(lib, packed, m)
    after = _status()
    print(json.dumps({"peak_kib": after["VmHWM"] - before["VmRSS"], "kept_anon_kib": after["RssAnon"] - before["RssAnon"],
                      "from_dense": m.from_dense, "value_form": bool(m.value), "nnz": m.nnz}))


def _weight(n_in, n_out, density, rng, negative_zeros):
    import numpy as np

    w = rng.standard_normal((n_out, n_in)).astype(np.float32) * np.float32(0.1)  # [units, inputs]
    keep = rng.random(w.shape) < density
    zero = np.where(w < 0, -0.0, 0.0).astype(np.float32) if negative_zeros else np.float32(0)
    return np.where(keep, w, zero).astype(np.float32)


def measure(lib, lib_path, packed, small_path, reps, tmp, n):
    m = SparseFc()
    times = {"direct": [], "dense": [], "decode": []}
    cpu = {"direct": [], "dense": [], "decode": []}
    out = ctypes.create_string_buffer(4 * n)
    for rep in range(reps + 1):  # the first round: warm-up
        for route, direct in (("direct", 1), ("dense", 0), ("decode", None)):
            was = lib.dc_sparse_fc_set_direct(1 if direct is None else direct)
            try:
                c0, t0 = time.process_time(), time.perf_counter()
                if direct is None:  # the decoded route's decode, into a buffer of its own
                    assert lib.dc_decode(packed, len(packed), out, 4 * n) == 0
                else:
                    _build(lib, packed, m)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
            finally:
                lib.dc_sparse_fc_set_direct(was)
            if direct is not None:
                nnz = m.nnz
                assert m.from_dense == (route == "dense") and m.value, (route, m.from_dense)
                compact = lib.dc_sparse_fc_bytes(ctypes.byref(m))
                lib.dc_sparse_fc_free(ctypes.byref(m))
            if rep:
                times[route].append(1e3 * dt)
                cpu[route].append(1e3 * dc)
    path = os.path.join(tmp, "w.dchf")
    with open(path, "wb") as f:
        f.write(packed)
    memory = {}
    for route, direct in (("direct", 1), ("dense", 0)):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", lib_path, path, small_path,
                            str(direct)], capture_output=True, text=True, timeout=600, check=True)
        memory[route] = json.loads(r.stdout)
        assert memory[route]["nnz"] == nnz and memory[route]["from_dense"] == (route == "dense"), memory
    return {"nonzeros": nnz, "compact_bytes": compact,
            "build_ms": {k: {"median": round(statistics.median(v), 3), "best": round(min(v), 3)}
                         for k, v in times.items()},
            "cpu_ms": {k: {"median": round(statistics.median(v), 3), "best": round(min(v), 3)}
                       for k, v in cpu.items()},
            "peak_mib": {k: round(v["peak_kib"] / 1024, 2) for k, v in memory.items()},
            "kept_mib": {k: round(v["kept_anon_kib"] / 1024, 2) for k, v in memory.items()}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    import numpy as np

    from dc_keras import codec, runtime

    lib_path = runtime.library_path()
    lib = _lib(lib_path)
    machine = machine_info(frameworks=False)
    rng = np.random.default_rng(0)
    rows = []
    cases = [(s, d, False) for s in SHAPES for d in DENSITIES] + [((1024, 1024), 0.1, True)]
    with tempfile.TemporaryDirectory(prefix="dc_keras-bench-") as tmp:
        small_path = os.path.join(tmp, "small.dchf")
        with open(small_path, "wb") as f:
            f.write(codec.encode(_weight(64, 32, 0.5, rng, False), layout="sparse_planes"))
        for (n_in, n_out), density, negative_zeros in cases:
            w = _weight(n_in, n_out, density, rng, negative_zeros)
            packed = codec.encode(w, layout="sparse_planes")
            assert codec.info(packed)["layout"] == "sparse_planes"
            r = {"shape": [n_in, n_out], "density": round(float((w.view(np.uint32) << 1 != 0).mean()), 4),
                 "negative_zeros": negative_zeros, "packed_bytes": len(packed), "dense_bytes": 4 * w.size}
            r.update(measure(lib, lib_path, packed, small_path, args.reps, tmp, w.size))
            r["loadavg"] = round(os.getloadavg()[0], 2)
            rows.append(r)
            b, c, pk = r["build_ms"], r["cpu_ms"], r["peak_mib"]
            log(f"{n_in}x{n_out} {100 * r['density']:4.1f} %{' tfmot' if negative_zeros else ''}: build "
                f"{b['direct']['median']:.2f} / {b['dense']['median']:.2f} ms (direct / dense copy, median; best "
                f"{b['direct']['best']:.2f} / {b['dense']['best']:.2f}; CPU {c['direct']['median']:.2f} / "
                f"{c['dense']['median']:.2f}; dc_decode {b['decode']['median']:.2f}), "
                f"peak {pk['direct']:.2f} / {pk['dense']:.2f} MiB, "
                f"form {r['compact_bytes'] / 2**20:.2f} MiB, dense {r['dense_bytes'] / 2**20:.2f} MiB; load {r['loadavg']}")
    machine["loadavg_end"] = machine_info(frameworks=False)["loadavg"]
    result = {"benchmark": "values_build", "machine": machine, "reps": args.reps,
              "command": command_line(__file__, argv, "python "), "rows": rows}
    if args.json:
        write_json(args.json, result)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
