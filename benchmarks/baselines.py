"""Train LeNet-300-100 and LeNet-5 to the paper's baseline error, measured on the float .tflite.

Deep Compression, Table 1: LeNet-300-100 1.64 %, LeNet-5 0.80 % top-1 error on MNIST.
The trained models are saved as .keras files outside the repo for later stages.

    .venv/bin/python benchmarks/baselines.py --out_dir ~/.cache/dc_keras/baselines [--models lenet-300-100,lenet-5]

``--val N`` holds out the last N training images (the validation set of recipe_search.py /
paper_table1.py ``--val N``): the baseline then never saw the images later choices are made on.
"""
import json
import os
import time

from absl import app, flags

from _common import save_model, write_json
from dc_keras._fileio import atomic_write

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", os.path.expanduser("~/.cache/dc_keras/baselines"), "where the .keras/.tflite files go")
flags.DEFINE_list("models", ["lenet-300-100", "lenet-5"], "which models")
flags.DEFINE_integer("epochs", None, "epochs (default: 20 for LeNet-300-100, 15 for LeNet-5)")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_integer("val", 0, "hold out the last VAL training images (never trained on) so that choices made "
                     "later on them (benchmarks/recipe_search.py --val VAL) are on unseen data; 0: train on all")

TARGETS = {"lenet-300-100": 0.0164, "lenet-5": 0.0080}


EPOCHS = {"lenet-300-100": 20, "lenet-5": 15}


def train_baseline(name, x_train, y_train, x_test, y_test, epochs, seed):
    """dc_keras.pipeline's recipe (Adam, cosine decay, +-2 px shifts); fixed epoch budget, no test-set selection."""
    import keras

    from dc_keras import export, models, pipeline

    keras.utils.set_random_seed(seed)
    model = models.lenet_300_100() if name == "lenet-300-100" else models.lenet_5()
    t0 = time.time()
    pipeline.train_baseline(model, x_train, y_train, epochs=epochs, seed=seed, verbose=2)
    minutes = (time.time() - t0) / 60
    tfl = export.to_tflite(model, pack=False)
    tfl_err = pipeline.evaluate_tflite(tfl, x_test, y_test)
    print(f"{name}: {epochs} epochs, {minutes:.1f} min, .tflite test error {100 * tfl_err:.2f} %", flush=True)
    return model, tfl, {"model": name, "epochs": epochs, "minutes": minutes,
                        "tflite_test_error": tfl_err, "paper_error": TARGETS[name], "tflite_bytes": len(tfl)}


def main(argv):
    del argv
    from dc_keras import datasets

    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    x_train, x_test = datasets.normalize(x_train), datasets.normalize(x_test)
    if not 0 <= FLAGS.val < len(x_train):
        raise app.UsageError(f"--val must be between 0 and {len(x_train) - 1}, got {FLAGS.val}")
    x_train, y_train = x_train[:len(x_train) - FLAGS.val], y_train[:len(y_train) - FLAGS.val]
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    results = []
    for name in FLAGS.models:
        if name not in TARGETS:
            raise app.UsageError(f"unknown model {name!r}; one of {sorted(TARGETS)}")
        model, tfl, info = train_baseline(name, x_train, y_train, x_test, y_test, FLAGS.epochs or EPOCHS[name], FLAGS.seed)
        stem = os.path.join(FLAGS.out_dir, name.replace("-", "_"))
        save_model(model, stem + ".keras")
        atomic_write(stem + ".tflite", tfl)
        info["train_images"], info["val_held_out"] = len(x_train), FLAGS.val
        results.append(info)
        print(json.dumps(info), flush=True)
    print()
    print(f"{'model':<16}{'epochs':>8}{'minutes':>9}{'tflite error':>14}{'paper':>8}")
    for r in results:
        print(f"{r['model']:<16}{r['epochs']:>8}{r['minutes']:>9.1f}{100 * r['tflite_test_error']:>13.2f}%{100 * r['paper_error']:>7.2f}%")
    summary = os.path.join(FLAGS.out_dir, "baselines.json")
    write_json(summary, _merged(summary, results))


def _merged(path, results):
    """The entries already in ``path`` for models not trained now, then this run's (a run for one
    model keeps the other models' records of the same folder)."""
    old = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    done = {r["model"] for r in results}
    return [r for r in old if r.get("model") not in done] + results


if __name__ == "__main__":
    app.run(main)
