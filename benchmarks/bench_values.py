"""weights="compressed" on pruned but *unclustered* float32 FULLY_CONNECTED layers (the value form,
dc_sparse_fc.h: a 16-bit column and the float32 weight per non-zero, 6 bytes) against the decoded
route (XNNPACK's dense kernel), by density: the figures behind the value form's default
``max_density`` (tflite_kernels/src/huffdecode_op.c, docs/runtime.md).

For each shape ([inputs, units]: 784 x 300, LeNet-300-100's first layer, and 1024 x 1024), density
(5, 10, 15, 20, 30, 40 %) and batch (1, 8): one Dense layer (bias, no activation) whose weights are
standard-normal draws (every non-zero distinct: > 255 values, as tfmot's pruning without clustering
leaves them), the density's share non-zero (unstructured), packed (FORMAT.md §18, sparse float
planes). Measured as benchmarks/bench_density.py does (its ``_alternate``: the compressed and the
decoded interpreter of the packed file invoked alternately ``--rounds`` times after a warm-up, in 3
blocks; the figure is compressed / decoded of the median invoke, the median of the 3 blocks'
ratios), for the kernel variants ``native`` (dc_sparse_fc_use_simd(1): the value form runs the
scalar kernels on every CPU, so this is a second measurement of the same kernels) and ``scalar``
(dc_sparse_fc_use_simd(0)). For comparison, ``codes``: the same layer with its
non-zeros clustered to 15 values (the row or tile form of 1-byte codes, native kernels). Memory:
the compact form's bytes (compressed_report) against the dense weight's. Build: the median time of
``Interpreter(...).allocate_tensors()`` for the compressed and the decoded route (the value form of a
§18 weight went through a transient dense copy of the weight until session 57 -- values_density.json
was recorded so -- and is built straight from the packed entries since: bench_values_build.py).

    python benchmarks/bench_values.py [--rounds 100] [--wait-load 1.5] [--json docs/results/values_density.json]
"""
import argparse
import os
import shlex
import statistics
import sys
import time

from _common import compressed_kernel_name, log, machine_info, write_json
from bench_density import BLOCKS, _alternate, _lib, _prepared, _weight_rows, wait_for_load

SHAPES = ((784, 300), (1024, 1024))
DENSITIES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
BATCHES = (1, 8)
VARIANTS = {"native": 1, "scalar": 0}  # dc_sparse_fc_use_simd at load and around the invokes


def _model(n_in, n_out, density, rng, clustered):
    import keras
    import numpy as np

    inp = keras.Input((n_in,))
    fc = keras.layers.Dense(n_out)
    model = keras.Model(inp, fc(inp))
    keep = rng.permutation(n_in * n_out).reshape(n_in, n_out) < int(density * n_in * n_out)
    if clustered:
        values = np.linspace(-0.3, 0.3, 16, dtype=np.float32)
        w = rng.choice(values[values != 0], (n_in, n_out))
    else:
        w = rng.standard_normal((n_in, n_out)).astype(np.float32) * 0.1
    fc.kernel.assign((w * keep).astype(np.float32))
    fc.bias.assign(rng.standard_normal(n_out).astype(np.float32) * 0.1)
    return model


def _build_ms(packed, x, reps=7, **kw):
    """Median milliseconds of Interpreter(...) + allocate_tensors (the compact form's build)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        it = _prepared(packed, x, **kw)
        times.append(time.perf_counter() - t0)
        del it
    return 1e3 * statistics.median(times)


def _stats(blocks, v):
    med = [{k: statistics.median(t) for k, t in b.items()} for b in blocks]
    ratios = [m[v] / m["decoded"] for m in med]
    mid = sorted(range(BLOCKS), key=lambda i: ratios[i])[BLOCKS // 2]
    return {"compressed_ms": 1e3 * med[mid][v], "decoded_ms": 1e3 * med[mid]["decoded"], "ratio": ratios[mid],
            "block_ratios": ratios}


def measure(n_in, n_out, density, batch, rounds, rng):
    import numpy as np
    from dc_keras import codec, export

    lib = _lib()
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    row = {"shape": [n_in, n_out], "batch": batch, "variants": {}}
    for kind in ("values", "codes"):
        plain = export.to_tflite(_model(n_in, n_out, density, rng, kind == "codes"), pack=False)
        packed = export.pack(plain)
        decoded = _prepared(packed, x)
        ref = decoded.get_tensor(decoded.get_output_details()[0]["index"])
        for v, simd in VARIANTS.items():
            if kind == "codes" and v != "native":
                continue
            was = lib.dc_sparse_fc_use_simd(simd)
            try:
                it = _prepared(packed, x, weights="compressed", max_density=1.0)
                (r,) = _weight_rows(it)
                assert r["route"] == "compressed", r
            finally:
                lib.dc_sparse_fc_use_simd(was)
            blocks, outs = _alternate({"decoded": decoded, v: it}, rounds, lib, {"decoded": None, v: simd})
            scale = float(np.abs(outs["decoded"]).max()) or 1.0
            np.testing.assert_allclose(outs[v], outs["decoded"], rtol=1e-5, atol=1e-5 * scale)
            name = v if kind == "values" else "codes"
            row["variants"][name] = dict(_stats(blocks, v), compact_bytes=r["bytes"], nonzeros=r["nonzeros"])
            del it
        if kind == "values":
            row["density"] = row["variants"]["native"]["nonzeros"] / (n_in * n_out)
            row["dense_bytes"] = 4 * n_in * n_out
            default = _prepared(packed, x, weights="compressed")
            (d,) = _weight_rows(default)
            row["default"], row["default_reason"] = d["route"], d.get("reason", "")
            del default
            if batch == 1:
                row["build_ms"] = {"compressed": _build_ms(packed, x, weights="compressed", max_density=1.0),
                                   "decoded": _build_ms(packed, x)}
                row["packed_layouts"] = sorted({codec.info(t)["layout"] for t in _packed_tensors(packed)})
        del decoded, ref
    return row


def _packed_tensors(packed):
    """The packed tensors (HuffDecode inputs) of a packed .tflite, as bytes."""
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(packed)
    out = []
    for t in model.subgraphs[0].tensors:
        b = fb.buffer_bytes(model, t.buffer)
        if b and b[:4] == b"DCHF":
            out.append(bytes(b))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--wait-load", type=float, default=None)
    p.add_argument("--wait-max", type=float, default=1200)
    args = p.parse_args(argv)
    import numpy as np

    waited = wait_for_load(args.wait_load, args.wait_max) if args.wait_load else None
    machine = machine_info()
    rng = np.random.default_rng(0)
    rows = []
    for n_in, n_out in SHAPES:
        for density in DENSITIES:
            for batch in BATCHES:
                r = measure(n_in, n_out, density, batch, args.rounds, rng)
                r["loadavg"] = round(os.getloadavg()[0], 2)
                rows.append(r)
                v = r["variants"]
                log(f"{n_in}x{n_out} {100 * r['density']:4.1f} % batch {batch}: decoded {v['native']['decoded_ms']:.4f} ms, "
                    f"values {v['native']['compressed_ms']:.4f} ms -> {v['native']['ratio']:.2f}x, scalar "
                    f"{v['scalar']['ratio']:.2f}x, codes {v['codes']['ratio']:.2f}x; memory "
                    f"{v['native']['compact_bytes'] / r['dense_bytes']:.2f}x (codes "
                    f"{v['codes']['compact_bytes'] / r['dense_bytes']:.2f}x); default {r['default']}"
                    + (f"; build {r['build_ms']['compressed']:.2f} / {r['build_ms']['decoded']:.2f} ms "
                       f"{r['packed_layouts']}" if "build_ms" in r else "") + f"; load {r['loadavg']}")
    machine["loadavg_end"] = machine_info(frameworks=False)["loadavg"]
    if waited is not None:
        machine["load_wait"] = {"limit": args.wait_load, "waited_s": waited[0], "loadavg_then": waited[1]}
    result = {"benchmark": "values_density", "machine": machine, "rounds": args.rounds,
              "command": "python benchmarks/bench_values.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "compressed_kernel": compressed_kernel_name(), "rows": rows}
    if args.json:
        write_json(args.json, result)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
