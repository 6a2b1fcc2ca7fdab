"""int8 of a clustered zoo CNN keeps the sharing (issue 15 goal, second model): DS-CNN on Fashion-MNIST.

    .venv/bin/python benchmarks/bench_quantized_zoo.py [--model ds_cnn] [--epoch_scale 1.0]
        [--train_subset 20000] [--json docs/results/quantized_zoo.json]

The model of benchmarks/model_zoo.py (same config table, BatchNorm folded by `cluster`) is
trained, pruned and clustered once; the same final weights are exported side by side as float32,
full-integer int8 and dynamic-range int8 with dc_keras' defaults (one scale per tensor for clustered
kernels) and per channel, and through ai-edge-quantizer (its int8 and int4 recipes, in its own venv:
benchmarks/_aeq.py), each packed with dc_keras. Errors on the full 10,000-image test split,
measured on the packed files; every packed file is checked bit-identical to its unpacked original
(an export that fails is recorded, not hidden). Goal: int8 and dynamic packed <= 1.05x the packed
float file at <= its error + 0.1 pp. Machine load is recorded.
"""
import argparse
import os
import shlex
import sys
import time

import numpy as np

import _common
import model_zoo


def _row(name, packed, unpacked, x, y, float_packed):
    from bench_quantized import distinct_int8, predict

    out_p, out_u = predict(packed, x), predict(unpacked, x)
    return {"variant": name, "bytes": len(unpacked), "packed_bytes": len(packed),
            "vs_float_packed": len(packed) / float_packed if float_packed else 1.0,
            "test_error": float(np.mean(np.argmax(out_p, -1) != y)),
            "finite": bool(np.isfinite(out_p).all()), "bit_exact": out_p.tobytes() == out_u.tobytes(),
            "distinct_int_codes": distinct_int8(unpacked)}


def _exports(model, rep):
    """{variant: unpacked .tflite bytes or the exception text}, float32 first."""
    from bench_quantized import AEQ_RECIPES, aeq_files

    from dc_keras import export

    out = {"float32": export.to_tflite(model, pack=False)}
    for q, extra in (("int8", {"representative_data": rep}), ("dynamic", {})):
        for pc, label in ((None, "per-tensor (default)"), (True, "per-channel")):
            out[f"{q} {label} (TFLite converter)"] = export.to_tflite(model, pack=False, quantize=q,
                                                                      per_channel=pc, **extra)
    try:
        for name, data in aeq_files(out["float32"], rep[:200]).items():
            out[f"ai-edge-quantizer {name}"] = data
    except Exception as exc:  # recorded in the JSON, not hidden
        from bench_quantized import _brief

        out[f"ai-edge-quantizer {', '.join(AEQ_RECIPES)}"] = _brief(exc)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ds_cnn", choices=["ds_cnn", "resnet"])
    p.add_argument("--epoch_scale", type=float, default=1.0)
    p.add_argument("--train_subset", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--cache", default=None, help="save the compressed model here (.keras); reused if present")
    args = p.parse_args(argv)
    load0, t0 = _common.machine_info(), time.time()
    import keras

    from dc_keras import export, pipeline

    cfg = model_zoo.ZOO[args.model]
    (x, y), _, (xt, yt) = model_zoo.load(cfg["data"], args.train_subset)
    epochs = model_zoo._epochs(cfg, args.epoch_scale)
    if args.cache and os.path.exists(args.cache):
        model = keras.saving.load_model(args.cache)
    else:
        keras.utils.set_random_seed(args.seed)
        model = pipeline.train_baseline(model_zoo.BUILDERS[args.model](), x, y, epochs=epochs[0], lr=cfg["lr"],
                                        max_shift=2, seed=args.seed)
        model, _, _ = model_zoo.compress(model, cfg, (x, y), epochs, args.seed)
        if args.cache:
            _common.save_model(model, args.cache)
    rows, failures, fp = [], [], None
    for name, unpacked in _exports(model, x[:500]).items():
        if isinstance(unpacked, str):  # the export failed: its one-line reason
            failures.append(f"{name}: {unpacked}")
            print("FAILED", failures[-1], flush=True)
            continue
        try:
            packed = export.pack(unpacked)
            rows.append(_row(name, packed, unpacked, xt, yt, fp))
        except Exception as exc:  # e.g. a kernel TFLite lacks for that recipe: recorded, not hidden
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            print("FAILED", failures[-1], flush=True)
            continue
        fp = fp or len(packed)
        print(f"{name:45s} {len(unpacked):>10,} B -> {len(packed):>9,} B  {rows[-1]['vs_float_packed']:.3f}x  "
              f"error {100 * rows[-1]['test_error']:.2f} %  bit-exact {rows[-1]['bit_exact']}  "
              f"codes {rows[-1]['distinct_int_codes']}", flush=True)
    base = rows[0]["test_error"]
    for r in rows:
        r["error_vs_float_pp"] = 100 * (r["test_error"] - base)
        r["goal_met"] = r["vs_float_packed"] <= 1.05 and r["error_vs_float_pp"] <= 0.1 and r["finite"]
    result = {"benchmark": "quantized_zoo", "model": args.model, "epochs": epochs,
              "train_samples": int(len(x)), "rows": rows, "failures": failures, "minutes": (time.time() - t0) / 60,
              "machine": {**load0, "loadavg_after": list(os.getloadavg())}, "trained_or_cached": args.cache,
              "command": "benchmarks/bench_quantized_zoo.py " + shlex.join(sys.argv[1:] if argv is None else argv)}
    if args.json:
        _common.write_json(args.json, result)
    print("goal (<= 1.05x, <= +0.1 pp):", "; ".join(f"{r['variant']}: {r['vs_float_packed']:.3f}x "
                                                     f"{r['error_vs_float_pp']:+.2f} pp" for r in rows[1:] if "(default)" in r["variant"]))


if __name__ == "__main__":
    main()
