"""weights="compressed" against the decoded route as a FULLY_CONNECTED layer gets denser: the
figures behind the default ``max_density`` (float32 weights: 30 % on the row form, 40 % on the
tile form of AVX-512 CPUs, a lower one with the AVX2 kernels; int8: 25 %; dc_keras/runtime,
tflite_kernels/src/huffdecode_op.c).

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

Kernel variants (``--variants``, default all that this CPU has), each one more compressed
interpreter of the same packed file, alternating with the decoded one as the main figure's does
(two interpreters at a time; a third one's weights would evict the dense weight from the cache),
its kernels switched with ``dc_sparse_fc_use_simd`` (dc_sparse_fc.h) for its load and around
each of its invokes:
``native`` (the kernels dc_sparse_fc_kernel_name() picks: the main figures), ``avx2`` (what an
x86-64 CPU without AVX-512 runs: use_simd(4) -- float32 on the rows with the scalar kernels, int8
on the AVX2 tile kernels), ``avx2_tiles`` (float32 only: the tile form built with the AVX-512
kernels, run on the AVX2 float tile kernels) and ``scalar`` (use_simd(0): the rows, the scalar
kernels, as on ARM). Each variant's row has its median-based ratio and its fastest invoke (the
minimum over all its rounds), the decoded route's in the same alternation too, and the route its
default ``max_density`` gives. ``--wait-load L`` waits (polling, up to ``--wait-max`` seconds) until the 1-minute load
average is below L before measuring and records the load it started at.
"""
import argparse
import contextlib
import ctypes
import io
import os
import shlex
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


VARIANTS = ("native", "avx2", "avx2_tiles", "scalar")
# dc_sparse_fc_use_simd settings per variant: (at load, around its invokes)
SIMD = {"native": (1, 1), "avx2": (4, 4), "avx2_tiles": (1, 4), "scalar": (0, 0)}


def _lib():
    """The delegate's library (the copy LiteRT loaded) with dc_sparse_fc_use_simd /
    dc_sparse_fc_kernel_name declared."""
    from dc_keras import runtime

    lib = ctypes.CDLL(runtime.library_path())
    lib.dc_sparse_fc_use_simd.argtypes = [ctypes.c_int]
    lib.dc_sparse_fc_kernel_name.restype = ctypes.c_char_p
    return lib


def available_variants():
    """The variants this CPU can run: avx2 / avx2_tiles need the AVX2 kernels (use_simd(4) names
    "avx2"), avx2_tiles the AVX-512 ones to build the tile form."""
    lib = _lib()
    was = lib.dc_sparse_fc_use_simd(1)
    native = lib.dc_sparse_fc_kernel_name().decode()
    lib.dc_sparse_fc_use_simd(4)
    avx2 = lib.dc_sparse_fc_kernel_name().decode() == "avx2"
    lib.dc_sparse_fc_use_simd(was)
    return [v for v in VARIANTS
            if v in ("native", "scalar") or (avx2 and (v == "avx2" or native == "avx512"))]


def wait_for_load(limit, max_seconds):
    """Polls the 1-minute load average until it is below ``limit`` or ``max_seconds`` passed;
    returns (seconds waited, load average then)."""
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < max_seconds:
        time.sleep(15)
    return round(time.time() - t0), round(os.getloadavg()[0], 2)


def _alternate(its, rounds, lib, run_simd):
    """Warm-up, then BLOCKS blocks of ``rounds`` invokes of each interpreter of ``its`` in turn (the
    kernels switched with dc_sparse_fc_use_simd around each invoke of a variant): per block, per
    interpreter, its invoke times; and each interpreter's output afterwards."""

    def invoke(k):
        if run_simd[k] is not None:
            lib.dc_sparse_fc_use_simd(run_simd[k])
        t0 = time.perf_counter()
        its[k].invoke()
        t = time.perf_counter() - t0
        if run_simd[k] is not None:
            lib.dc_sparse_fc_use_simd(1)
        return t

    for k in its:
        for _ in range(10):
            invoke(k)
    blocks = []  # BLOCKS blocks of `rounds` alternating invokes: a disturbance spoils one block
    for _ in range(BLOCKS):
        times = {k: [] for k in its}
        for _ in range(rounds):
            for k in its:
                times[k].append(invoke(k))
        blocks.append(times)
    outs = {}
    for k in its:
        invoke(k)
        outs[k] = its[k].get_tensor(its[k].get_output_details()[0]["index"]).copy()
    return blocks, outs


def measure(dtype, n, density, batch, rounds, rng, variants=("native",)):
    """One layer: for each variant, its compressed interpreter alternating with the decoded one
    (two interpreters at a time, as before the variants: a third one's weights in the same
    alternation would evict the dense weight from the cache and slow the decoded route), then freed."""
    import numpy as np
    from dc_keras import export

    lib = _lib()
    was = lib.dc_sparse_fc_use_simd(1)
    packed = export.pack(_plain(_model(n, density, rng), dtype, n, rng))
    shape = (batch, n)
    x = (rng.integers(-128, 128, shape).astype(np.int8) if dtype == "int8"
         else rng.standard_normal(shape).astype(np.float32))
    variants = [v for v in variants if v != "avx2_tiles" or dtype == "float32"]
    decoded = _prepared(packed, x)
    pairs, rows, defaults, outs = {}, {}, {}, {}
    try:
        for v in variants:
            lib.dc_sparse_fc_use_simd(SIMD[v][0])
            it = _prepared(packed, x, weights="compressed", max_density=1.0)
            (rows[v],) = _weight_rows(it)
            assert rows[v]["route"] == "compressed", rows[v]
            default = _prepared(packed, x, weights="compressed")
            (defaults[v],) = _weight_rows(default)
            del default
            lib.dc_sparse_fc_use_simd(1)
            pairs[v], out = _alternate({"decoded": decoded, v: it}, rounds, lib, {"decoded": None, v: SIMD[v][1]})
            outs[v], outs["decoded"] = out[v], out["decoded"]
            del it
    finally:
        lib.dc_sparse_fc_use_simd(was)
    if dtype == "int8":
        for v in variants:
            assert np.array_equal(outs["decoded"], outs[v]), v
    elif "avx2_tiles" in outs and lib.dc_sparse_fc_kernel_name() == b"avx512":
        np.testing.assert_array_equal(outs["native"], outs["avx2_tiles"])  # the same bits (NaN for NaN)

    def stats(v):
        blocks = pairs[v]
        med = [{k: statistics.median(t) for k, t in b.items()} for b in blocks]
        ratios = [m[v] / m["decoded"] for m in med]
        mid = sorted(range(BLOCKS), key=lambda i: ratios[i])[BLOCKS // 2]  # the block of the median ratio
        fast = {k: min(min(b[k]) for b in blocks) for k in ("decoded", v)}
        return med[mid], ratios, mid, fast

    main = variants[0]
    med, rs, mid, fast = stats(main)
    row = rows[main]
    result = {"dtype": dtype, "n": n, "batch": batch, "density": row["nonzeros"] / (n * n),
              "decoded_ms": 1e3 * med["decoded"], "compressed_ms": 1e3 * med[main],
              "ratio": rs[mid], "block_ratios": rs,
              "ratio_fastest": fast[main] / fast["decoded"],
              "compact_bytes": row["bytes"], "dense_bytes": n * n * (1 if dtype == "int8" else 4),
              "default": defaults[main]["route"], "default_reason": defaults[main].get("reason", ""),
              "decoded_fastest_ms": 1e3 * min(min(min(b["decoded"]) for b in pairs[v]) for v in variants),
              "variants": {}}
    for v in variants:
        med, rv, mv, fast = stats(v)
        result["variants"][v] = {
            "compressed_ms": 1e3 * med[v], "decoded_ms": 1e3 * med["decoded"], "ratio": rv[mv],
            "block_ratios": rv, "fastest_ms": 1e3 * fast[v], "decoded_fastest_ms": 1e3 * fast["decoded"],
            "ratio_fastest": fast[v] / fast["decoded"], "compact_bytes": rows[v]["bytes"],
            "default": defaults[v]["route"], "default_reason": defaults[v].get("reason", "")}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="1024^2 only")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--variants", default=None,
                   help="comma-separated kernel variants (native, avx2, avx2_tiles, scalar; default: all this CPU has)")
    p.add_argument("--wait-load", type=float, default=None,
                   help="wait until the 1-minute load average is below this before measuring")
    p.add_argument("--wait-max", type=float, default=1200, help="at most this many seconds of waiting")
    args = p.parse_args(argv)
    import numpy as np

    variants = args.variants.split(",") if args.variants else available_variants()
    assert variants[0] == "native" and set(variants) <= set(VARIANTS), variants
    waited = wait_for_load(args.wait_load, args.wait_max) if args.wait_load else None
    machine = machine_info()
    rng = np.random.default_rng(0)
    rows = []
    for dtype in ("float32", "int8"):
        for n in SIZES[:1] if args.quick else SIZES:
            for density in DENSITIES:
                for batch in BATCHES_FLOAT32 if dtype == "float32" else BATCHES:
                    r = measure(dtype, n, density, batch, args.rounds, rng,
                                variants if batch in BATCHES else variants[:1])
                    r["loadavg"] = round(os.getloadavg()[0], 2)
                    rows.append(r)
                    others = ", ".join(f"{v} {r['variants'][v]['ratio']:.2f}x" for v in r["variants"]
                                       if v != "native")
                    log(f"{dtype} {n}^2 {100 * r['density']:5.1f} % batch {batch}: decoded {r['decoded_ms']:.4f} ms, "
                        f"compressed {r['compressed_ms']:.4f} ms -> {r['ratio']:.2f}x (fastest {r['ratio_fastest']:.2f}x), "
                        f"memory {r['compact_bytes'] / r['dense_bytes']:.2f}x, default {r['default']}"
                        + (f"; {others} of decoded" if others else "") + f"; load {r['loadavg']}")
    machine["loadavg_end"] = machine_info(frameworks=False)["loadavg"]
    if waited is not None:
        machine["load_wait"] = {"limit": args.wait_load, "waited_s": waited[0], "loadavg_then": waited[1]}
    result = {"benchmark": "density", "machine": machine, "rounds": args.rounds,
              "command": "python benchmarks/bench_density.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "compressed_kernel": compressed_kernel_name(), "variants": variants, "rows": rows}
    if args.json:
        write_json(args.json, result)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
