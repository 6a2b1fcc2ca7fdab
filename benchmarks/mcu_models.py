"""Makes the LeNet-300-100 models of benchmarks/mcu_bench.py (trained once, cached).

    python benchmarks/mcu_models.py [--out DIR] [--epochs 15 15 3]

Deep Compression stages 1-2 as `dc-keras demo` runs them (dc_keras.demo.SPARSITY: 7 % of the
weights kept; 5-bit shared values per layer), then four .tflite files in DIR (default
~/.cache/dc_keras/mcu/lenet): float32 and full-int8 (int8 activations, for TFLM), each unpacked and
packed (HuffDecode), plus the stripped Keras model and a small MNIST test slice (x_test.npy,
y_test.npy). Runs in the project venv (TensorFlow); the TFLM side runs elsewhere.
"""
import argparse
import json
import os
import time

import numpy as np

import _common

DEFAULT_OUT = os.path.join(os.path.expanduser("~"), ".cache", "dc_keras", "mcu", "lenet")


def _write(path, data):
    _common.atomic_write(path, data)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, nargs=3, default=None, metavar=("BASE", "PRUNE", "CLUSTER"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import keras

    from dc_keras import datasets, demo, export, models, pipeline

    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    e_base, e_prune, e_cluster = args.epochs or demo.QUICK_EPOCHS
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    x_train, x_test = datasets.normalize(x_train), datasets.normalize(x_test)
    t0 = time.time()
    model = pipeline.train_baseline(models.lenet_300_100(), x_train, y_train, epochs=e_base, seed=args.seed)
    model = pipeline.prune_retrain(model, x_train, y_train, demo.SPARSITY, epochs=e_prune, lr=demo.PRUNE_LR,
                                   seed=args.seed)
    model = pipeline.cluster_finetune(model, x_train, y_train, bits=5, epochs=e_cluster, seed=args.seed)
    train_s = time.time() - t0
    model.save(os.path.join(args.out, "lenet_300_100.keras"))
    files = {
        "float.tflite": export.to_tflite(model, pack=False),
        "float.packed.tflite": export.to_tflite(model, pack=True),
        "int8.tflite": export.to_tflite(model, pack=False, quantize="int8",
                                        representative_data=x_train[:500]),
    }
    files["int8.packed.tflite"] = export.pack(files["int8.tflite"])
    for name, data in files.items():
        _write(os.path.join(args.out, name), data)
    np.save(os.path.join(args.out, "x_test.npy"), x_test[:200].astype(np.float32))
    np.save(os.path.join(args.out, "y_test.npy"), y_test[:200])
    stats = pipeline.layer_stats(model)
    meta = {"epochs": [e_base, e_prune, e_cluster], "seed": args.seed, "train_seconds": round(train_s, 1),
            "float_error_full_test": pipeline.evaluate_tflite(files["float.packed.tflite"], x_test, y_test,
                                                              progress=False),
            "layers": [{k: (int(v) if isinstance(v, (int, np.integer)) else v) for k, v in r.items()}
                       for r in stats],
            "bytes": {k: len(v) for k, v in files.items()}}
    _write(os.path.join(args.out, "meta.json"), json.dumps(meta, indent=1, default=float).encode())
    print(json.dumps(meta["bytes"]), f"trained in {train_s:.0f} s")


if __name__ == "__main__":
    main()
