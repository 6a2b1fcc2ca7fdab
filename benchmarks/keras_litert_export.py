"""Keras 3's own exporter, ``model.export(path, format="litert")``, against ``dc_keras.export.to_tflite``,
each then packed by ``dc_keras.export.pack``: the figures of docs/models.md ("Exporting with Keras's
model.export"), on the TensorFlow backend here, on JAX and torch in children.

    .venv/bin/python benchmarks/keras_litert_export.py --json docs/results/keras_litert_export.json \\
        [--torch-python ~/.cache/dc_keras/venvs/keras-litert-torch-s42/bin/python]

Models (``keras.utils.set_random_seed(0)``, 64 random samples, 10 classes): ``mlp`` 64-256-128-10;
``cnn`` 16x16x3, two 3x3 Conv2D (32, 64) each followed by BatchNormalization (folded by ``cluster``),
global pooling, Dense(10); ``lstm`` LSTM(64) over 12 steps of 16 features, Dense(10). Each: ``prune``
(``ConstantSparsity(0.8)``, 1 epoch), ``strip``, ``cluster(bits=4)``, 1 epoch, ``strip``.

Per backend and model: the Keras export's bytes and packed bytes; ``to_tflite(pack=False)``'s (the
TF-backend file, which ``to_tflite`` also makes on JAX and torch) and packed; whether both files hold the
same weight values (sorted constant arrays); whether the packed file's outputs are bit-identical to the
unpacked one's through ``dc_keras.runtime.Interpreter`` and the unpacked file's through plain
``ai_edge_litert``; the export of the still-wrapped pruned and clustered models. The torch venv needs
keras, torch (CPU) and litert-torch: ``python -m venv V; V/bin/pip install litert-torch==0.10.0
torch==2.13.0+cpu keras==3.15.1`` (dc_keras from this tree through PYTHONPATH).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from _common import command_line, machine_info, record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("mlp", "cnn", "lstm")


def bn_cnn(side=16, filters=(32, 64)):
    """The ``cnn`` model: a ``side`` x ``side`` x 3 input, two 3x3 Conv2D (``filters``; the first without
    bias) each followed by BatchNormalization and ReLU, global pooling, Dense(10). Unseeded: ``build``
    seeds; tests/test_keras_litert_export.py builds a smaller one (8, (16, 32))."""
    import keras

    i = keras.Input((side, side, 3))
    h = keras.layers.Conv2D(filters[0], 3, padding="same", use_bias=False)(i)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    h = keras.layers.Conv2D(filters[1], 3, padding="same")(h)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    return keras.Model(i, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h)))


def build(name):
    import keras

    keras.utils.set_random_seed(0)
    if name == "mlp":
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    if name == "cnn":
        return bn_cnn()
    return keras.Sequential([keras.Input((12, 16)), keras.layers.LSTM(64), keras.layers.Dense(10)])


def compress(model):
    """(pruned, clustered, stripped): the wrapped models as trained, and the final plain one."""
    import dc_keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64,) + tuple(model.inputs[0].shape[1:])).astype("float32")
    y = rng.integers(0, 10, size=(64,))
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.8, 0))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=4)
    clustered.compile("adam", "sparse_categorical_crossentropy")
    clustered.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return pruned, clustered, dc_keras.strip(clustered), x[:1]


def keras_export(model, path, **kwargs):
    """``model.export(path, format="litert")``: None, or the error as one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(path, format="litert", verbose=False, **kwargs)
        return None
    except Exception as exc:  # noqa: BLE001 - recorded as the row's result
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        first = [ln for ln in lines if "error" in ln.lower()] or lines[-1:]  # a converter's first error line
        return f"{type(exc).__name__}: {(first[0] if first else '')[:400]}"


def child(out, models):
    """On this process's backend (JAX or torch): compress, save the .keras files and try Keras's export.
    On torch the still-wrapped clustered model is exported in a process of its own (``--wrapped``):
    a second ``model.export`` in one torch process fails on an int32 gather (see docs/models.md)."""
    import keras

    rows = {}
    for name in models:
        pruned, clustered, stripped, x = compress(build(name))
        stripped.save(os.path.join(out, f"{name}.keras"))
        pruned.save(os.path.join(out, f"{name}_pruned_wrapped.keras"))
        clustered.save(os.path.join(out, f"{name}_clustered_wrapped.keras"))
        np.save(os.path.join(out, f"{name}_x.npy"), x)
        np.save(os.path.join(out, f"{name}_y.npy"), keras.ops.convert_to_numpy(stripped(x, training=False)))
        rows[name] = {"stripped": keras_export(stripped, os.path.join(out, f"{name}.keras_export.tflite"))}
        rows[name]["pruned_wrapped"] = keras_export(pruned, os.path.join(out, f"{name}_pruned_wrapped.keras_export.tflite"))
    with open(os.path.join(out, "child.json"), "w") as f:
        json.dump({"backend": keras.backend.backend(), "errors": rows}, f)


def wrapped_child(out, name):
    """One still-wrapped clustered model's export, alone in its process."""
    import keras

    import dc_keras  # noqa: F401 - registers the wrappers

    m = keras.saving.load_model(os.path.join(out, f"{name}_clustered_wrapped.keras"), compile=False)
    with open(os.path.join(out, f"wrapped_{name}.json"), "w") as f:
        json.dump(keras_export(m, os.path.join(out, f"{name}_clustered_wrapped.keras_export.tflite")), f)


def constants(content, kernels=False):
    """The file's constant arrays of 64 entries or more as sorted ``(dtype, bytes)`` (``kernels``: only the
    float matrices of 256 entries or more, each with its values sorted: the same weights in another
    layout, and not the zero state tensors a converter may add)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export._convert import _tensor_array

    m = fb.read_model(content)
    out = []
    for sg in m.subgraphs:
        for t in sg.tensors or []:
            a = _tensor_array(m, t)
            if a is None or a.size < 64:
                continue
            if not kernels:
                out.append((str(a.dtype), a.tobytes()))
            elif a.ndim >= 2 and a.size >= 256 and a.dtype.kind == "f":
                out.append((str(a.dtype), np.sort(a.reshape(-1)).tobytes()))
    return sorted(out)


def negative_zeros(content):
    n = 0
    for d, b in constants(content):
        if d.startswith("float"):
            a = np.frombuffer(b, dtype=d)
            n += int(np.sum((a == 0) & np.signbit(a)))
    return n


def outputs(content, x, plain=False):
    if plain:
        from ai_edge_litert.interpreter import Interpreter
    else:
        from dc_keras.runtime import Interpreter
    it = Interpreter(model_content=content)
    d = it.get_input_details()[0]
    if list(d["shape"]) != list(x.shape):
        it.resize_tensor_input(d["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(d["index"], x.astype(d["dtype"]))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def same_bits(a, b):
    return bool(a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8)))


def file_row(content, reference, x, y):
    """Sizes, packed size, pack's notes, same weights as ``reference``, bit-exactness, inspect's statuses."""
    from dc_keras import export

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = export.pack(content)
    row = {"bytes": len(content), "packed": len(packed), "same_weights_as_to_tflite": constants(content) == constants(reference),
           "same_kernel_values_as_to_tflite": constants(content, True) == constants(reference, True),
           "negative_zeros": negative_zeros(content), "pack_notes": [str(w.message)[:160] for w in caught]}
    statuses = {}
    for r in export.inspect(content).rows:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    row["inspect_statuses"] = statuses
    try:
        unpacked = outputs(content, x)
        row["packed_bit_exact"] = same_bits(outputs(packed, x), unpacked)
        row["plain_litert_same"] = same_bits(outputs(content, x, plain=True), unpacked)
        row["max_diff_vs_keras"] = float(np.max(np.abs(unpacked - y))) if y is not None else None
    except RuntimeError as exc:
        row["run_error"] = " ".join(str(exc).split())[:300]
    return row


def analyse(folder, models, child_errors, wrapped_errors):
    """TF-backend process: the files the child wrote (if any) and this process's own exports."""
    import keras

    import dc_keras
    from dc_keras import export

    result = {}
    for name in models:
        x, y = np.load(os.path.join(folder, f"{name}_x.npy")), np.load(os.path.join(folder, f"{name}_y.npy"))
        stripped = keras.saving.load_model(os.path.join(folder, f"{name}.keras"), compile=False)
        batch = 1 if name == "lstm" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = export.to_tflite(stripped, pack=False, batch_size=batch)
        r = {"to_tflite": {"bytes": len(ours), "packed": len(export.pack(ours))}}
        for tag in ("stripped", "pruned_wrapped", "clustered_wrapped") if child_errors is not None else ():
            reference = ours
            if tag != "stripped":  # a wrapped model's reference: to_tflite of its own strip
                wrapped = keras.saving.load_model(os.path.join(folder, f"{name}_{tag}.keras"), compile=False)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reference = export.to_tflite(dc_keras.strip(wrapped), pack=False, batch_size=batch)
                r[f"to_tflite_of_strip_{tag}"] = {"bytes": len(reference), "packed": len(export.pack(reference))}
            label = "" if tag == "stripped" else f"_{tag}"
            path = os.path.join(folder, f"{name}{label}.keras_export.tflite")
            error = child_errors.get(name, {}).get(tag) if tag != "clustered_wrapped" else (wrapped_errors or {}).get(name)
            if error is not None or not os.path.exists(path):
                r[f"keras_export_{tag}"] = {"error": error}
            else:
                with open(path, "rb") as f:
                    r[f"keras_export_{tag}"] = file_row(f.read(), reference, x, y if tag == "stripped" else None)
        # model.export in this TF-backend process (on JAX/torch files: the workaround for JAX)
        for tag, model, kwargs in (("stripped", stripped, {}),
                                   ("stripped_fixed_batch", stripped, {"input_signature": [keras.InputSpec(
                                       shape=(1,) + tuple(stripped.inputs[0].shape[1:]), dtype="float32")]})):
            if tag == "stripped_fixed_batch" and name != "lstm":
                continue
            path = os.path.join(folder, f"{name}.tf_{tag}.tflite")
            error = keras_export(model, path, **kwargs)
            if error:
                r[f"tf_export_{tag}"] = {"error": error}
                continue
            with open(path, "rb") as f:
                r[f"tf_export_{tag}"] = file_row(f.read(), ours, x, y)
        if child_errors is None:  # the TF backend: the wrapped models, exported here
            for tag in ("pruned_wrapped", "clustered_wrapped"):
                wrapped = keras.saving.load_model(os.path.join(folder, f"{name}_{tag}.keras"), compile=False)
                kwargs = ({"input_signature": [keras.InputSpec(shape=(1, 12, 16), dtype="float32")]}
                          if name == "lstm" else {})
                path = os.path.join(folder, f"{name}_{tag}.tf_export.tflite")
                error = keras_export(wrapped, path, **kwargs)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    reference = export.to_tflite(dc_keras.strip(wrapped), pack=False, batch_size=batch)
                r[f"to_tflite_of_strip_{tag}"] = {"bytes": len(reference), "packed": len(export.pack(reference))}
                if error:
                    r[f"tf_export_{tag}"] = {"error": error}
                else:
                    with open(path, "rb") as f:
                        r[f"tf_export_{tag}"] = file_row(f.read(), reference, x, None)
        print(name, json.dumps(r), flush=True)
        result[name] = r
    return result


def quantized(folder):
    """TF backend, the stripped mlp: Keras's converter keywords for dynamic range (per channel, the
    converter's default, and per tensor), to_tflite(quantize="dynamic"), and model.quantize("int8")."""
    import keras
    import tensorflow as tf

    from dc_keras import export

    stripped = keras.saving.load_model(os.path.join(folder, "mlp.keras"), compile=False)
    rows = {}
    for tag, kwargs in (("keras_dynamic_per_channel", {"optimizations": [tf.lite.Optimize.DEFAULT]}),
                        ("keras_dynamic_per_tensor", {"optimizations": [tf.lite.Optimize.DEFAULT],
                                                      "_experimental_disable_per_channel": True})):
        path = os.path.join(folder, f"mlp.{tag}.tflite")
        error = keras_export(stripped, path, **kwargs)
        if error:
            rows[tag] = {"error": error}
            continue
        with open(path, "rb") as f:
            data = f.read()
        rows[tag] = {"bytes": len(data), "packed": len(export.pack(data))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = export.to_tflite(stripped, pack=False, quantize="dynamic")
    rows["to_tflite_dynamic"] = {"bytes": len(ours), "packed": len(export.pack(ours))}
    q = keras.models.clone_model(stripped)
    q.set_weights(stripped.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q.quantize("int8")
    rows["keras_quantize_int8_model_export"] = {"error": keras_export(q, os.path.join(folder, "q.tflite"))}
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--torch-python", default=None, help="a venv's python with keras, torch and litert-torch")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--wrapped", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child, MODELS)
    if args.wrapped:
        return wrapped_child(*args.wrapped.split(os.pathsep))
    t0 = time.time()
    info = machine_info()
    result = {"benchmark": "keras_litert_export", "backends": {}}
    with tempfile.TemporaryDirectory(prefix="dc_keras-keras-export-") as d:
        runs = [("tensorflow", None), ("jax", sys.executable)]
        if args.torch_python:
            runs.append(("torch", args.torch_python))
        for backend, python in runs:
            folder = os.path.join(d, backend)
            os.makedirs(folder)
            env = dict(os.environ, KERAS_BACKEND=backend,
                       PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
            if python is None:  # the TF backend: compress in a child too, so every backend's models come alike
                python = sys.executable
            subprocess.run([python, os.path.abspath(__file__), "--child", folder], env=env, check=True, timeout=1800)
            with open(os.path.join(folder, "child.json")) as f:
                child_errors = json.load(f)["errors"]
            wrapped_errors = None
            if backend != "tensorflow":
                wrapped_errors = {}
                for name in MODELS:
                    subprocess.run([python, os.path.abspath(__file__), "--wrapped", folder + os.pathsep + name],
                                   env=env, check=True, timeout=1800)
                    with open(os.path.join(folder, f"wrapped_{name}.json")) as f:
                        wrapped_errors[name] = json.load(f)
            result["backends"][backend] = analyse(folder, MODELS, child_errors if backend != "tensorflow" else None,
                                                  wrapped_errors)
            if backend == "tensorflow":
                result["quantized_mlp"] = quantized(folder)
                print(json.dumps(result["quantized_mlp"]), flush=True)
    if args.torch_python:
        out = subprocess.run([args.torch_python, "-c", "import torch, litert_torch, keras; print(torch.__version__, "
                              "getattr(litert_torch, '__version__', '?'), keras.__version__)"],
                             capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="torch"))
        info["torch_venv"] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-200:]
    result.update(seconds=round(time.time() - t0, 1), machine=info,
                  command=command_line(__file__, argv))
    return record(args.json, result)


if __name__ == "__main__":
    main()
