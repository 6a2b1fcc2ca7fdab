"""Peers of dc_keras on the same trained model, measured side by side (used by paper_table1.py).

* ``tfmot_recipe``: TensorFlow Model Optimization 0.8.1 on tf_keras, its documented recipe
  (``prune_low_magnitude`` + fine-tune with ``UpdatePruningStep``, ``strip_pruning``,
  ``cluster_weights(preserve_sparsity=True)`` + fine-tune, ``strip_clustering``,
  ``TFLiteConverter``, then zip). It runs in a subprocess with ``TF_USE_LEGACY_KERAS=1`` (tfmot
  needs Keras 2) that rebuilds the same architecture in tf_keras and loads the SAME trained
  baseline weights from a ``.npz``; it gets the same per-layer sparsity, the same number of
  clusters, the same epochs, optimizer, learning rates and augmentation as our chain.
* ``generic_compressors``: gzip -9, bzip2 -9, xz -9e, zstd -19 and zip (deflate) of a ``.tflite``.
* ``int8_rows``: TFLite int8 post-training quantization (representative dataset) with and
  without our packing.

Every test error is measured on the ``.tflite`` itself through ``dc_keras.runtime.Interpreter``.

Stand-alone (the tfmot side only, from the saved baseline):

    .venv/bin/python benchmarks/peers.py --model lenet-300-100 --json /tmp/tfmot.json
"""
import bz2
import gzip
import io
import json
import lzma
import os
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

from _common import write_json

# tf_keras rebuild of dc_keras.models (same layer names, so weights map by name).
_ARCH = {
    "lenet-300-100": [("flatten", "Flatten", {}),
                      ("fc1", "Dense", {"units": 300, "activation": "relu"}),
                      ("fc2", "Dense", {"units": 100, "activation": "relu"}),
                      ("fc3", "Dense", {"units": 10, "activation": "softmax"})],
    "lenet-5": [("conv1", "Conv2D", {"filters": 20, "kernel_size": 5}),
                ("pool1", "MaxPooling2D", {"pool_size": 2}),
                ("conv2", "Conv2D", {"filters": 50, "kernel_size": 5}),
                ("pool2", "MaxPooling2D", {"pool_size": 2}),
                ("flatten", "Flatten", {}),
                ("fc1", "Dense", {"units": 500, "activation": "relu"}),
                ("fc2", "Dense", {"units": 10, "activation": "softmax"})],
}


# ----------------------------------------------------------------------------------------------
# generic compressors and zip
# ----------------------------------------------------------------------------------------------
def zip_bytes(data: bytes, name: str = "model.tflite") -> int:
    """Size of a .zip (deflate) holding ``data``: what tfmot's guides report as the compressed size."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return len(buf.getvalue())


def generic_compressors(data: bytes) -> dict:
    """``{"gzip -9": bytes, "bzip2 -9": bytes, "xz -9e": bytes, "zstd -19": bytes, "zip": bytes}`` for ``data`` at their best levels."""
    import zstandard

    return {
        "gzip -9": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "bzip2 -9": len(bz2.compress(data, 9)),
        "xz -9e": len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)),
        "zstd -19": len(zstandard.ZstdCompressor(level=19).compress(data)),
        "zip": zip_bytes(data),
    }


# ----------------------------------------------------------------------------------------------
# int8 post-training quantization
# ----------------------------------------------------------------------------------------------
def int8_rows(model, label, x_rep, x_test, y_test, evaluate):
    """int8 PTQ of ``model`` with and without our packing: two rows ``(method, bytes, error, tflite)``."""
    from dc_keras import export

    q = export.to_tflite(model, pack=False, quantize="int8", representative_data=x_rep)
    packed = export.pack(q)
    rows = [(f"{label} + TFLite int8 PTQ", q), (f"{label} + TFLite int8 PTQ + dc_keras pack", packed)]
    return [(name, len(data), evaluate(data, x_test, y_test), data) for name, data in rows]


# ----------------------------------------------------------------------------------------------
# tfmot (parent side)
# ----------------------------------------------------------------------------------------------
def save_weights_npz(model, path):
    """Kernels and biases of ``model`` by ``<layer>/<index>``, the format the tfmot child loads."""
    arrays = {}
    for layer in model.layers:
        for i, w in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{i}"] = np.asarray(w)
    np.savez(path, **arrays)


def tfmot_recipe(model_name, baseline_model, sparsity, bits, prune_epochs, cluster_epochs, *,
                 prune_lr=5e-4, cluster_lr=2e-4, ramp_fraction=0.6, seed=0, train_subset=None,
                 out_dir=None, timeout=7200, log=print):
    """Runs tfmot's recipe in a subprocess; returns ``{"tflite": bytes, "zip_bytes": int, ...}``.

    Raises RuntimeError with the child's stderr tail if it fails.
    """
    out_dir = out_dir or tempfile.mkdtemp(prefix="dc_keras_tfmot_")
    os.makedirs(out_dir, exist_ok=True)
    weights = os.path.join(out_dir, "baseline_weights.npz")
    save_weights_npz(baseline_model, weights)
    config = {
        "model": model_name, "weights": weights, "sparsity": sparsity, "bits": bits,
        "prune_epochs": prune_epochs, "cluster_epochs": cluster_epochs, "prune_lr": prune_lr,
        "cluster_lr": cluster_lr, "ramp_fraction": ramp_fraction, "seed": seed,
        "train_subset": train_subset, "out_dir": out_dir,
    }
    cfg_path = os.path.join(out_dir, "config.json")
    write_json(cfg_path, config)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.time()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--tfmot_child", cfg_path],
                          env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"tfmot subprocess failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(out_dir, "result.json")) as f:
        result = json.load(f)
    with open(result["tflite_path"], "rb") as f:
        result["tflite"] = f.read()
    result["zip_bytes"] = zip_bytes(result["tflite"])
    result["wall_seconds"] = time.time() - t0
    log(f"tfmot: {len(result['tflite']):,} B .tflite, {result['zip_bytes']:,} B zipped "
        f"({result['wall_seconds']:.0f}s)")
    return result


# ----------------------------------------------------------------------------------------------
# tfmot (child side: runs under TF_USE_LEGACY_KERAS=1)
# ----------------------------------------------------------------------------------------------
def _child(cfg_path):
    with open(cfg_path) as f:
        cfg = json.load(f)
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from dc_keras import datasets

    if not keras.__version__.startswith("2."):
        raise SystemExit(f"tfmot needs Keras 2 (tf_keras); got keras {keras.__version__}")
    keras.utils.set_random_seed(cfg["seed"])
    (x, y), _ = datasets.mnist.load_data()
    if cfg.get("train_subset"):
        x, y = x[:cfg["train_subset"]], y[:cfg["train_subset"]]
    x = datasets.normalize(x)

    class Shifted(keras.utils.Sequence):  # same augmentation as dc_keras.datasets.ShiftedBatches
        def __init__(self, batch_size=128, seed=0):
            super().__init__()
            self.bs, self.rng = batch_size, np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))

        def __len__(self):
            return -(-len(x) // self.bs)

        def __getitem__(self, i):
            idx = self.order[i * self.bs:(i + 1) * self.bs]
            return datasets.random_shift(x[idx], 2, self.rng), y[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(x))

    inputs = keras.Input((28, 28, 1), name="image")
    h = inputs
    for name, kind, kw in _ARCH[cfg["model"]]:
        h = getattr(keras.layers, kind)(name=name, **kw)(h)
    model = keras.Model(inputs, h)
    w = np.load(cfg["weights"])
    for layer in model.layers:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([w[f"{layer.name}/{i}"] for i in range(n)])

    def fit(m, epochs, lr, callbacks=()):
        batches = Shifted(seed=cfg["seed"])
        sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * len(batches)))
        m.compile(optimizer=keras.optimizers.Adam(sched), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
        t0 = time.time()
        m.fit(batches, epochs=epochs, verbose=2, callbacks=list(callbacks))
        return (time.time() - t0) / max(1, epochs * len(batches))

    steps = cfg["prune_epochs"] * len(Shifted())
    end = max(1, int(steps * cfg["ramp_fraction"]))
    sp = tfmot.sparsity.keras

    def prune_fn(layer):
        if layer.name in cfg["sparsity"]:
            sched = sp.PolynomialDecay(initial_sparsity=0.0, final_sparsity=float(cfg["sparsity"][layer.name]),
                                       begin_step=0, end_step=end, frequency=max(1, min(50, end)))
            return sp.prune_low_magnitude(layer, pruning_schedule=sched)
        return layer

    pruned = keras.models.clone_model(model, clone_function=prune_fn)
    t_prune = fit(pruned, cfg["prune_epochs"], cfg["prune_lr"], [sp.UpdatePruningStep()])
    stripped = sp.strip_pruning(pruned)

    cl = tfmot.clustering.keras

    def cluster_fn(layer):
        if layer.name in cfg["bits"]:
            # With preserve_sparsity the zero is one of tfmot's clusters: 2**bits + 1 gives it the
            # same 2**bits shared non-zero values as dc_keras.
            return cl.cluster_weights(layer, number_of_clusters=2 ** int(cfg["bits"][layer.name]) + 1,
                                      cluster_centroids_init=cl.CentroidInitialization.LINEAR,
                                      preserve_sparsity=True)
        return layer

    clustered = keras.models.clone_model(stripped, clone_function=cluster_fn)
    t_cluster = fit(clustered, cfg["cluster_epochs"], cfg["cluster_lr"]) if cfg["cluster_epochs"] else None
    final = cl.strip_clustering(clustered)

    tflite = tf.lite.TFLiteConverter.from_keras_model(final).convert()
    path = os.path.join(cfg["out_dir"], "tfmot.tflite")
    with open(path, "wb") as f:
        f.write(tflite)
    stats = {}
    for layer in final.layers:
        ws = layer.get_weights()
        if ws and layer.name in cfg["sparsity"]:
            k = ws[0]
            stats[layer.name] = {"params": int(k.size), "nonzero": int(np.count_nonzero(k)),
                                 "distinct": int(np.unique(k[k != 0]).size)}
    result = {"tflite_path": path, "tf_keras": keras.__version__, "tfmot": tfmot.__version__,
              "prune_step_seconds": t_prune, "cluster_step_seconds": t_cluster, "layers": stats}
    write_json(os.path.join(cfg["out_dir"], "result.json"), result)


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tfmot_child", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=sorted(_ARCH), default="lenet-300-100")
    p.add_argument("--baseline_dir", default=os.path.expanduser("~/.cache/dc_keras/baselines"))
    p.add_argument("--prune_epochs", type=int, default=10)
    p.add_argument("--cluster_epochs", type=int, default=3)
    p.add_argument("--train_subset", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.tfmot_child:
        return _child(args.tfmot_child)

    import keras

    from _common import CONFIG  # per-layer targets shared with paper_table1.py
    from dc_keras import datasets, pipeline

    stem = os.path.join(args.baseline_dir, args.model.replace("-", "_"))
    if not os.path.exists(stem + ".keras"):
        raise SystemExit(f"no baseline at {stem}.keras: run benchmarks/baselines.py first")
    model = keras.saving.load_model(stem + ".keras")
    cfg = CONFIG[args.model]
    res = tfmot_recipe(args.model, model, cfg["sparsity"], cfg["bits"], args.prune_epochs, args.cluster_epochs,
                       prune_lr=cfg["prune_lr"], train_subset=args.train_subset, seed=args.seed)
    _, (x_test, y_test) = datasets.mnist.load_data()
    err = pipeline.evaluate_tflite(res["tflite"], datasets.normalize(x_test), y_test)
    out = {"model": args.model, "command": shlex.join(["python", "benchmarks/peers.py"] + sys.argv[1:]),
           "tflite_bytes": len(res["tflite"]), "zip_bytes": res["zip_bytes"],
           "test_error": err, **{k: v for k, v in res.items() if k != "tflite"}}
    print(json.dumps(out, indent=1))
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
