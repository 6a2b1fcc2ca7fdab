"""`dc-keras demo`: LeNet-300-100 on the embedded MNIST through the Deep Compression chain.

baseline -> iterative pruning (7 % of weights kept; the paper keeps 8 %) with retraining ->
trained weight sharing (5-bit clusters per layer) with centroid fine-tuning -> TFLite export ->
Huffman packing (``HuffDecode`` op). Every test error in the table is measured on a ``.tflite``
file with the interpreter over the full 10,000-image test set, never on the Keras model.
"""
import dataclasses
import errno
import os
import tempfile
import time

from dc_keras import pipeline
from dc_keras._fileio import atomic_write, check_writable, show_path

#: epochs per stage: (baseline, prune+retrain, cluster fine-tune). The quick default keeps the
#: baseline's error (pruning at Adam lr 1e-3 with as many epochs as the baseline had); about
#: 1.5 minutes of training on 2 idle CPU cores (2026-12-01; README's table).
QUICK_EPOCHS = (15, 15, 3)
FULL_EPOCHS = (20, 20, 4)
#: Adam learning rate of the pruning/retraining stage (cosine-decayed to 0). With few epochs the
#: survivors need the larger step to recover: 1e-3 vs 5e-4 measured 1.90 % vs 2.35 % (8/6/2 epochs).
PRUNE_LR = 1e-3
#: Per-layer sparsity: 7 % of the weights kept overall (the paper keeps 8 %: fc1 8 %, fc2 9 %,
#: fc3 26 %); measured by benchmarks/paper_table1.py at 41.9x and 1.39 % error with FULL_EPOCHS.
SPARSITY = {"fc1": 0.935, "fc2": 0.90, "fc3": 0.70}


@dataclasses.dataclass
class StageResult:
    stage: str
    file_bytes: int
    test_error: float
    path: str
    detail: str = ""


def _write(out_dir, name, data):
    return atomic_write(os.path.join(out_dir, name), data)


def _prepare_out_dir(out_dir):
    """Creates ``out_dir`` (and its parents) if missing; an ``OSError`` naming it and the fix,
    before any training, when the demo could not write its files there (it used to train for
    minutes and fail at the first file, or say only 'File exists' for a file)."""
    fix = "give out_dir (--out_dir) a directory you may write; it is created if missing"
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(errno.ENOTDIR, f"a file, not a directory: {fix}", out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise type(exc)(exc.errno, f"{exc.strerror or exc}; {fix}", out_dir) from None
    check_writable(os.path.join(out_dir, "lenet_300_100_float.tflite"))


def _print_stage_table(rows):
    base = rows[0].file_bytes
    print()
    print(f"{'stage':<30}{'file size':>13}{'ratio':>8}{'test error':>12}  detail")
    print("-" * 92)
    for r in rows:
        print(f"{r.stage:<30}{r.file_bytes:>11,} B{base / r.file_bytes:>7.1f}x{100 * r.test_error:>11.2f}%  {r.detail}")
    print()


def _print_layer_table(model, bits):
    print(f"{'layer':<8}{'params':>9}{'non-zero':>10}{'density':>9}{'bits':>6}{'distinct non-zero':>19}")
    for row in pipeline.layer_stats(model):
        print(f"{row['layer']:<8}{row['params']:>9,}{row['nonzero']:>10,}{100 * row['density']:>8.1f}%"
              f"{bits.get(row['layer'], '-'):>6}{row['distinct']:>19}")
    print()


def run_demo(full: bool = False, epochs=None, out_dir=None, seed: int = 0, train_subset=None):
    """Runs the chain, prints the tables and returns the list of ``StageResult`` (one per stage).

    Example (not run by the tests: a few minutes on 2 CPU cores):
        >>> rows = dc_keras.demo.run_demo()            # doctest: +SKIP
        >>> rows[0].file_bytes / rows[-1].file_bytes   # doctest: +SKIP
        41.1...
    """
    # out_dir first: a bad one (a file, not writable) is refused at once, not after Keras and
    # TensorFlow took their 7-13 s to import
    out_dir = tempfile.mkdtemp(prefix="dc_keras_demo_") if out_dir is None else os.fspath(out_dir)
    _prepare_out_dir(out_dir)

    import keras

    from dc_keras import datasets, export, models

    keras.utils.set_random_seed(seed)
    e_base, e_prune, e_cluster = FULL_EPOCHS if full else QUICK_EPOCHS
    if epochs:
        e_base = epochs

    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    if train_subset:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    x_train, x_test = datasets.normalize(x_train), datasets.normalize(x_test)
    sparsity = SPARSITY
    bits = {"fc1": 5, "fc2": 5, "fc3": 5}

    rows = []
    t0 = time.time()

    def stage(name, tflite_bytes, filename, detail):
        path = _write(out_dir, filename, tflite_bytes)
        err = pipeline.evaluate_tflite(tflite_bytes, x_test, y_test)
        rows.append(StageResult(name, len(tflite_bytes), err, path, f"{detail}; {time.time() - t0:.0f}s"))
        print(f"  -> {name}: {len(tflite_bytes):,} bytes, test error {100 * err:.2f} % (on the .tflite)", flush=True)

    print(f"[1/4] baseline: training LeNet-300-100 for {e_base} epoch(s) on {len(x_train):,} images "
          "(Adam, cosine decay, random +-2 px shifts)", flush=True)
    model = pipeline.train_baseline(models.lenet_300_100(), x_train, y_train, epochs=e_base, seed=seed)
    stage("baseline (float .tflite)", export.to_tflite(model, pack=False), "lenet_300_100_float.tflite",
          f"{model.count_params():,} params")

    print(f"[2/4] pruning, per-layer density {dict((k, f'{1 - v:.1%}') for k, v in sparsity.items())}"
          f" with {e_prune} epoch(s) of retraining", flush=True)
    model = pipeline.prune_retrain(model, x_train, y_train, sparsity, epochs=e_prune, lr=PRUNE_LR, seed=seed)
    kept = sum(r["nonzero"] for r in pipeline.layer_stats(model)) / sum(r["params"] for r in pipeline.layer_stats(model))
    stage("pruned (float .tflite)", export.to_tflite(model, pack=False), "lenet_300_100_pruned.tflite",
          f"{kept:.1%} of weights kept")

    print(f"[3/4] weight sharing: {bits} bits per layer, linear init, {e_cluster} epoch(s) of centroid fine-tuning",
          flush=True)
    model = pipeline.cluster_finetune(model, x_train, y_train, bits=bits, epochs=e_cluster, seed=seed)
    stage("pruned+shared (float .tflite)", export.to_tflite(model, pack=False), "lenet_300_100_shared.tflite",
          "same file size: TFLite stores every weight as float32")

    print("[4/4] Huffman packing: weight buffers -> HuffDecode ops", flush=True)
    packed = export.to_tflite(model, pack=True)
    stage("packed .tflite (HuffDecode)", packed, "lenet_300_100_packed.tflite", "decoded once at load by the C op")

    _print_stage_table(rows)
    _print_layer_table(model, bits)
    print(export.inspect(packed).to_text())
    print(f"\nfiles written to {show_path(out_dir)}")
    print(f"compression: {rows[0].file_bytes / rows[-1].file_bytes:.1f}x smaller .tflite, test error "
          f"{100 * rows[0].test_error:.2f} % -> {100 * rows[-1].test_error:.2f} %")
    return rows
