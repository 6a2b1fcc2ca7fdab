"""docs/packing.md's signed-zero figure: a tfmot-pruned (not clustered) float MLP packed as tfmot leaves it
and with ``pack(positive_zeros=True)``.

    .venv/bin/python benchmarks/tfmot_signed_zeros.py [--seeds 0,1] [--json docs/results/tfmot_signed_zeros.json]

tfmot's ``strip_pruning`` leaves -0.0 where a pruned weight was negative; bit-exact packing stores
each -0.0 like a kept weight. Per seed: LeNet-300-100 (784-300-100-10) trained 2 epochs on MNIST
(tf_keras, Adam 1e-3, batch 128), pruned with tfmot 0.8.1's ``prune_low_magnitude``
(``ConstantSparsity(0.9)``, 2 epochs), ``strip_pruning``, converted to a float ``.tflite``, then
packed by default and with ``positive_zeros=True``: bytes, the -0.0 count, test error of both
packed files (the whole MNIST test set) and whether their outputs are identical. Also, side by side:
both packed with ``version=4`` (the format before the sparse float planes of FORMAT.md §18, which
code such kernels since 2026-12-07) and the float file's zip (``zipfile`` deflate, as tfmot's
tutorials measure it). Runs the training
in a child with ``TF_USE_LEGACY_KERAS=1`` (tfmot needs tf_keras), as tests/_tfmot_child.py does.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def child(seed, out):
    """In the tf_keras process: train, prune, strip, convert; writes OUT.tflite."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    import dc_keras

    keras.utils.set_random_seed(seed)
    (x, y), _ = dc_keras.datasets.mnist.load_data()
    x = dc_keras.datasets.normalize(x)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(300, activation="relu", name="fc1"),
                              keras.layers.Dense(100, activation="relu", name="fc2"),
                              keras.layers.Dense(10, name="fc3")])

    def fit(m, callbacks=()):
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, batch_size=128, epochs=2, verbose=0, callbacks=list(callbacks))

    fit(model)
    sp = tfmot.sparsity.keras
    pruned = sp.prune_low_magnitude(model, pruning_schedule=sp.ConstantSparsity(0.9, begin_step=0, frequency=100))
    fit(pruned, callbacks=[sp.UpdatePruningStep()])
    stripped = sp.strip_pruning(pruned)
    with open(out, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(stripped).convert())
    with open(out + ".json", "w") as f:
        json.dump({"tfmot": tfmot.__version__, "tf_keras": keras.__version__}, f)


def zip_size(content):
    """Bytes of a zip holding ``content`` as one deflated member (tfmot's get_gzipped_model_size)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.tflite", content)
    return len(buf.getvalue())


def error(content, x, y):
    from dc_keras.runtime import Interpreter

    it = Interpreter(model_content=content)
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
    it.allocate_tensors()
    it.set_tensor(inp["index"], x.reshape(len(x), *inp["shape"][1:]).astype(np.float32))
    it.invoke()
    out = it.get_tensor(outp["index"]).copy()
    return float(np.mean(out.argmax(-1) != y)), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--json", default=None)
    p.add_argument("--child", nargs=2, metavar=("SEED", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(int(args.child[0]), args.child[1])
    from _common import command_line, machine_info, record

    import dc_keras
    from dc_keras.export import _pack

    t0, info = time.time(), machine_info()
    _, (x_test, y_test) = dc_keras.datasets.mnist.load_data()
    x_test = dc_keras.datasets.normalize(x_test)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        with tempfile.TemporaryDirectory(prefix="dc_keras-tfmot-") as d:
            out = os.path.join(d, "pruned.tflite")
            env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(seed), out],
                               env=env, capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                raise SystemExit(f"tf_keras child failed:\n{r.stderr[-3000:]}")
            with open(out, "rb") as f:
                plain = f.read()
            with open(out + ".json") as f:
                versions = json.load(f)
        default, stats = _pack.pack_with_stats(plain)
        positive, pstats = _pack.pack_with_stats(plain, positive_zeros=True)
        v4 = {k: len(_pack.pack_with_stats(plain, version=4, positive_zeros=pz)[0]) for k, pz in
              (("packed_bytes", False), ("packed_bytes_positive_zeros", True))}
        e_def, o_def = error(default, x_test, y_test)
        e_pos, o_pos = error(positive, x_test, y_test)
        row = {"seed": seed, "float_tflite_bytes": len(plain), "packed_bytes": len(default),
               "packed_bytes_positive_zeros": len(positive), "larger": len(default) / len(positive) - 1,
               "negative_zeros": {"tensors": stats["negative_zeros"][0], "entries": stats["negative_zeros"][1]},
               "test_error": e_def, "test_error_positive_zeros": e_pos,
               "outputs_identical": bool(np.array_equal(o_def, o_pos)), "version4": v4,
               "zip_bytes": zip_size(plain), **versions}
        print(row, flush=True)
        rows.append(row)
    result = {"benchmark": "tfmot_signed_zeros", "rows": rows, "minutes": round((time.time() - t0) / 60, 1),
              "command": command_line(__file__, argv),
              "machine": dict(info, loadavg_after=[round(v, 2) for v in os.getloadavg()])}
    return record(args.json, result)


if __name__ == "__main__":
    main()
