"""int8 of a clustered zoo CNN keeps the sharing (issue 15 goal, second model): DS-CNN on Fashion-MNIST.

    .venv/bin/python benchmarks/bench_quantized_zoo.py [--model ds_cnn] [--epoch_scale 1.0]
        [--train_subset 20000] [--json docs/results/quantized_zoo.json]

The model of benchmarks/model_zoo.py (same config table, BatchNorm folded by `cluster`) is
trained, pruned and clustered once; the same final weights are exported as float32, full-integer
int8 and dynamic-range int8 (dc_keras' defaults: one scale per tensor for clustered kernels) and
packed. Errors on the full 10,000-image test split, measured on the packed files; every packed file
is checked bit-identical to its unpacked original. Goal: int8 and dynamic packed <= 1.05x the
packed float file at <= its error + 0.1 pp. Machine load is recorded.
"""
import argparse
import time

import numpy as np

import _common
import model_zoo


def _row(name, packed, unpacked, x, y, float_packed):
    from dc_keras import pipeline

    out_p = pipeline.predict_tflite(packed, x)
    out_u = pipeline.predict_tflite(unpacked, x)
    return {"variant": name, "bytes": len(unpacked), "packed_bytes": len(packed),
            "vs_float_packed": len(packed) / float_packed if float_packed else 1.0,
            "test_error": float(np.mean(np.argmax(out_p, -1) != y)),
            "bit_exact": out_p.tobytes() == out_u.tobytes()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ds_cnn", choices=["ds_cnn", "resnet"])
    p.add_argument("--epoch_scale", type=float, default=1.0)
    p.add_argument("--train_subset", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    load0, t0 = _common.machine_info(), time.time()
    import keras

    from dc_keras import export, pipeline

    cfg = model_zoo.ZOO[args.model]
    (x, y), _, (xt, yt) = model_zoo.load(cfg["data"], args.train_subset)
    epochs = model_zoo._epochs(cfg, args.epoch_scale)
    keras.utils.set_random_seed(args.seed)
    model = pipeline.train_baseline(model_zoo.BUILDERS[args.model](), x, y, epochs=epochs[0], lr=cfg["lr"],
                                    max_shift=2, seed=args.seed)
    model, _, _ = model_zoo.compress(model, cfg, (x, y), epochs, args.seed)
    rows, fp = [], None
    for name, kw in (("float32", {}), ("int8 per-tensor (default)", {"quantize": "int8", "representative_data": x[:500]}),
                     ("dynamic int8 per-tensor (opt-in)", {"quantize": "dynamic", "per_channel": False})):
        unpacked = export.to_tflite(model, pack=False, **kw)
        packed = export.pack(unpacked)
        rows.append(_row(name, packed, unpacked, xt, yt, fp))
        fp = fp or len(packed)
        print(f"{name:36s} {len(unpacked):>10,} B -> {len(packed):>9,} B  {rows[-1]['vs_float_packed']:.3f}x  "
              f"error {100 * rows[-1]['test_error']:.2f} %  bit-exact {rows[-1]['bit_exact']}", flush=True)
    base = rows[0]["test_error"]
    for r in rows:
        r["error_vs_float_pp"] = 100 * (r["test_error"] - base)
        r["goal_met"] = r["vs_float_packed"] <= 1.05 and r["error_vs_float_pp"] <= 0.1
    result = {"benchmark": "quantized_zoo", "model": args.model, "epochs": epochs,
              "train_samples": int(len(x)), "rows": rows, "minutes": (time.time() - t0) / 60,
              "machine": {**load0, "loadavg_after": list(__import__("os").getloadavg())},
              "command": "benchmarks/bench_quantized_zoo.py " + " ".join(argv or [])}
    if args.json:
        _common.write_json(args.json, result)
    print("goal (<= 1.05x, <= +0.1 pp):", "; ".join(f"{r['variant']}: {r['vs_float_packed']:.3f}x "
                                                     f"{r['error_vs_float_pp']:+.2f} pp" for r in rows[1:]))


if __name__ == "__main__":
    main()
