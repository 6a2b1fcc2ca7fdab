"""`dc-keras demo`: LeNet-300-100 on the embedded MNIST through the Deep Compression chain.

Every test error in the table is measured on a ``.tflite`` file with the TFLite interpreter over
the full 10,000-image test set, never on the Keras model.
"""
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np


@dataclasses.dataclass
class StageResult:
    stage: str
    file_bytes: int
    test_error: float
    detail: str = ""


def _fit_verbose():
    return 1 if sys.stdout.isatty() else 2


def _print_table(rows, baseline_bytes):
    print()
    print(f"{'stage':<22}{'file size':>14}{'ratio':>9}{'test error':>12}  detail")
    print("-" * 80)
    for r in rows:
        ratio = baseline_bytes / r.file_bytes if r.file_bytes else float("nan")
        print(f"{r.stage:<22}{r.file_bytes:>12,} B{ratio:>8.1f}x{100 * r.test_error:>11.2f}%  {r.detail}")
    print()


def run_demo(full: bool = False, epochs=None, out_dir=None, seed: int = 0, train_subset=None):
    """Runs the chain and prints the stage table; returns the list of ``StageResult``."""
    import keras

    from dc_keras import datasets, models
    from dc_keras import export, pipeline

    keras.utils.set_random_seed(seed)
    epochs = epochs or (30 if full else 4)
    out_dir = out_dir or tempfile.mkdtemp(prefix="dc_keras_demo_")
    os.makedirs(out_dir, exist_ok=True)

    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    if train_subset:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    x_train, x_test = datasets.normalize(x_train), datasets.normalize(x_test)

    rows = []
    t0 = time.time()
    model = models.lenet_300_100()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"[1/1] training LeNet-300-100 for {epochs} epoch(s)")
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.0, verbose=_fit_verbose())
    float_bytes = export.to_tflite(model, pack=False)
    path = os.path.join(out_dir, "lenet_300_100_float.tflite")
    with open(path, "wb") as f:
        f.write(float_bytes)
    err = pipeline.evaluate_tflite(float_bytes, x_test, y_test)
    rows.append(StageResult("float .tflite", len(float_bytes), err, f"{model.count_params():,} params, {time.time() - t0:.0f}s"))

    _print_table(rows, len(float_bytes))
    print(f"files written to {out_dir}")
    return rows
