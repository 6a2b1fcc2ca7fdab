"""weights="compressed" against the decoded route as a FULLY_CONNECTED layer gets denser: the
figures behind the default ``max_density`` (float32 weights: 30 % on the row form, 50 % on the
tile form of AVX-512 CPUs; int8: 25 %; dc_keras/runtime, tflite_kernels/src/huffdecode_op.c).

For each weight type (float32; int8: the converter's full-integer model), size (1024^2, 4096^2),
density and batch (1, 8; float32 also 32, the batched serving the default is not chosen for):
one Dense layer (bias, no activation) with 15 shared non-zero values,
the density's share of its weights non-zero (unstructured), packed. Two interpreters of the packed
file in one process -- ``weights="decoded"`` (XNNPACK's dense kernels) and ``weights="compressed",
max_density=1.0`` (every layer compressed) -- invoked alternately ``--rounds`` times after a
warm-up, in 3 blocks; the figure is compressed / decoded of the median invoke, the median of the
3 blocks' ratios (a passing disturbance spoils one block; also the ratio of the fastest
invokes). Memory: the compact form's bytes (compressed_report) against the dense weight's.
``default``: the route the layer gets with ``weights="compressed"`` and no ``max_density``.

    python benchmarks/bench_density.py [--rounds 100] [--quick] [--json docs/results/density.json]

``--quick``: 1024^2 only. benchmarks/results_doc.py ``--density`` renders the JSON in
docs/results.md.
"""
import argparse
import contextlib
import io
import statistics
import sys
import time

from _common import compressed_kernel_name, log, machine_info, write_json

DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
SIZES = (1024, 4096)
BATCHES = (1, 8)
BATCHES_FLOAT32 = BATCHES + (32,)  # batched serving: not what the default is chosen for
BLOCKS = 3


def _model(n, density, rng):
    import keras
    import numpy as np

    inp = keras.Input((n,))
    fc = keras.layers.Dense(n)
    model = keras.Model(inp, fc(inp))
    values = np.linspace(-0.3, 0.3, 16, dtype=np.float32)
    values = values[values != 0]
    keep = rng.permutation(n * n).reshape(n, n) < int(density * n * n)  # at most the density
    fc.kernel.assign((rng.choice(values, (n, n)) * keep).astype(np.float32))
    fc.bias.assign(rng.standard_normal(n).astype(np.float32) * 0.1)
    return model


def _plain(model, dtype, n, rng):
    import numpy as np
    import tensorflow as tf

    if dtype == "float32":
        from dc_keras import export

        return export.to_tflite(model, pack=False)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.standard_normal((1, n)).astype(np.float32)] for _ in range(16))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):  # the SavedModel export's listing
        return conv.convert()


def _weight_rows(it):
    """compressed_report()'s rows of the FC weights (the packed bias has a row too)."""
    return [r for r in it.compressed_report()
            if r["op"] == "FULLY_CONNECTED" and "not its weights" not in r.get("reason", "")]


def _prepared(packed, x, **kw):
    from dc_keras import runtime

    it = runtime.Interpreter(model_content=packed, **kw)
    idx = it.get_input_details()[0]["index"]
    it.resize_tensor_input(idx, x.shape)
    it.allocate_tensors()
    it.set_tensor(idx, x)
    return it


def measure(dtype, n, density, batch, rounds, rng):
    import numpy as np
    from dc_keras import export

    packed = export.pack(_plain(_model(n, density, rng), dtype, n, rng))
    shape = (batch, n)
    x = (rng.integers(-128, 128, shape).astype(np.int8) if dtype == "int8"
         else rng.standard_normal(shape).astype(np.float32))
    its = {"decoded": _prepared(packed, x),
           "compressed": _prepared(packed, x, weights="compressed", max_density=1.0)}
    (row,) = _weight_rows(its["compressed"])
    assert row["route"] == "compressed", row
    default = _prepared(packed, x, weights="compressed")
    (drow,) = _weight_rows(default)
    del default
    for it in its.values():
        for _ in range(10):
            it.invoke()
    blocks = []  # BLOCKS blocks of `rounds` alternating invokes: a disturbance spoils one block
    for _ in range(BLOCKS):
        times = {k: [] for k in its}
        for _ in range(rounds):
            for k, it in its.items():
                t0 = time.perf_counter()
                it.invoke()
                times[k].append(time.perf_counter() - t0)
        blocks.append(times)
    out = {k: its[k].get_tensor(its[k].get_output_details()[0]["index"]) for k in its}
    if dtype == "int8":
        assert np.array_equal(out["decoded"], out["compressed"])
    med = [{k: statistics.median(v) for k, v in b.items()} for b in blocks]
    fast = {k: min(min(b[k]) for b in blocks) for k in its}
    ratios = [m["compressed"] / m["decoded"] for m in med]
    mid = sorted(range(BLOCKS), key=lambda i: ratios[i])[BLOCKS // 2]  # the block of the median ratio
    return {"dtype": dtype, "n": n, "batch": batch, "density": row["nonzeros"] / (n * n),
            "decoded_ms": 1e3 * med[mid]["decoded"], "compressed_ms": 1e3 * med[mid]["compressed"],
            "ratio": ratios[mid], "block_ratios": ratios,
            "ratio_fastest": fast["compressed"] / fast["decoded"],
            "compact_bytes": row["bytes"], "dense_bytes": n * n * (1 if dtype == "int8" else 4),
            "default": drow["route"], "default_reason": drow.get("reason", "")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="1024^2 only")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    import numpy as np

    machine = machine_info()
    rng = np.random.default_rng(0)
    rows = []
    for dtype in ("float32", "int8"):
        for n in SIZES[:1] if args.quick else SIZES:
            for density in DENSITIES:
                for batch in BATCHES_FLOAT32 if dtype == "float32" else BATCHES:
                    r = measure(dtype, n, density, batch, args.rounds, rng)
                    rows.append(r)
                    log(f"{dtype} {n}^2 {100 * r['density']:5.1f} % batch {batch}: decoded {r['decoded_ms']:.4f} ms, "
                        f"compressed {r['compressed_ms']:.4f} ms -> {r['ratio']:.2f}x (fastest {r['ratio_fastest']:.2f}x), "
                        f"memory {r['compact_bytes'] / r['dense_bytes']:.2f}x, default {r['default']}")
    machine["loadavg_end"] = machine_info(frameworks=False)["loadavg"]
    result = {"benchmark": "density", "machine": machine, "rounds": args.rounds,
              "command": "python benchmarks/bench_density.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "compressed_kernel": compressed_kernel_name(), "rows": rows}
    if args.json:
        write_json(args.json, result)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
