"""Runs every docstring example of dc_keras (doctest) in this fresh interpreter and prints
``RESULTS {name: null | failure report}`` (tests/test_docstrings.py::test_docstring_examples_run).

Conventions (a docstring example is what a user copies):
- an example runs in its module's namespace, with ``np``, ``keras`` and ``dc_keras`` imported;
- the user's objects it reads (``model``, ``x``, ``y``, ``pruned``, ...) are the tiny ones of
  ``INPUTS`` below; a name that is neither defined by the example nor one of these fails;
- an example with output shown must print exactly that; one without shown output must only run
  (its output is not compared: ``print(report)`` lines illustrate the call, not the text);
- ``# doctest: +SKIP`` only where running is not possible here (a file the user has, minutes of
  training), with the docstring saying what the example needs.
"""
import doctest
import importlib
import io
import json
import os
import pkgutil
import re
import sys
import tempfile

import keras
import numpy as np

import dc_keras


def _mlp():
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                             keras.layers.Dense(16, activation="relu", name="fc2"),
                             keras.layers.Dense(4, activation="softmax", name="fc3")])


def _compiled(model):
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(images):
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1) if images else (64, 20), dtype=np.float32)
    return x, rng.integers(0, 10 if images else 4, 64)


def _schedule():
    return dc_keras.schedules.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=1)


# The user's objects the examples read, by name: an MLP with layers fc1..fc3 (as LeNet-300-100) and
# its data; dc_keras.pipeline's examples take MNIST-shaped images and LeNet-300-100, and their
# `pruned` is what prune_retrain returns (a plain model); dc_keras.runtime's `x` is one input row.
# user_files() adds the .tflite bytes (`packed`, `data`, `tflite_bytes`) and an LSTM model.
INPUTS = {
    "x": lambda: _data(False)[0], "y": lambda: _data(False)[1],
    "model": lambda: _compiled(_mlp()),
    "schedule": _schedule,
    "pruned": lambda: _compiled(dc_keras.prune(_mlp(), _schedule())),
    "pruned_model": lambda: dc_keras.prune(_mlp(), _schedule()),
    "clustered": lambda: _compiled(dc_keras.cluster(_mlp(), bits=3)),
    "wrapper": lambda: dc_keras.prune(_mlp(), _schedule()).get_layer("fc1"),
    "trained_dense": lambda: keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]).layers[0],
    "report": lambda: dc_keras.sensitivity(_compiled(_mlp()), _data(False), sparsities=[0.5, 0.8]),
}
for _name, _part in (("x_train", 0), ("x_test", 0), ("x_val", 0), ("y_train", 1), ("y_test", 1), ("y_val", 1)):
    INPUTS[_name] = lambda part=_part: _data(False)[part]
PIPELINE = dict(INPUTS, model=lambda: dc_keras.models.lenet_300_100(),
                pruned=lambda: dc_keras.models.lenet_300_100(),
                **{n: (lambda part=p: _data(True)[part]) for n, p in (("x_train", 0), ("x_test", 0),
                                                                      ("y_train", 1), ("y_test", 1))})


def inputs(test):
    """Fresh user objects for the names ``test``'s examples read (built only when read)."""
    keras.utils.set_random_seed(0)
    read = set(re.findall(r"[A-Za-z_]\w*", "\n".join(e.source for e in test.examples)))
    table = (PIPELINE if test.name.startswith("dc_keras.pipeline.") else
             RUNTIME if test.name.startswith("dc_keras.runtime.") else INPUTS)
    return {name: make() for name, make in table.items() if name in read}


def _shared_mlp():
    """A pruned + clustered MLP (fc1 20x32 and fc2 32x16 at 20 % density, fc3 16x8 dense; 8 values
    each), as the packer and the compressed runtime meet them."""
    model = _mlp_sizes(32, 16, 8)
    rng = np.random.default_rng(1)
    for layer, density in (("fc1", 0.2), ("fc2", 0.2), ("fc3", 1.0)):
        kernel, bias = model.get_layer(layer).get_weights()
        values = rng.choice(np.linspace(-0.5, 0.5, 8).astype(np.float32), kernel.shape)
        model.get_layer(layer).set_weights([np.where(rng.random(kernel.shape) < density, values, 0), bias])
    return model


def _mlp_sizes(a, b, c):
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(a, activation="relu", name="fc1"),
                             keras.layers.Dense(b, activation="relu", name="fc2"),
                             keras.layers.Dense(c, activation="softmax", name="fc3")])


def user_files():
    """The files and bytes examples use as the user's: .keras files of a pruned / clustered model,
    a .tflite (model.tflite, m.tflite) and its packed form (m.packed.tflite), an out/ folder."""
    dc_keras.prune(_mlp(), _schedule()).save("pruned.keras")
    dc_keras.cluster(_mlp(), bits=3).save("clustered.keras")
    plain = dc_keras.export.to_tflite(_shared_mlp(), pack=False)
    packed = dc_keras.export.pack(plain)
    for name, data in (("model.tflite", plain), ("m.tflite", plain), ("m.packed.tflite", packed)):
        with open(name, "wb") as f:
            f.write(data)
    os.makedirs("out", exist_ok=True)
    INPUTS.update(packed=lambda: packed, data=lambda: plain, tflite_bytes=lambda: plain,
                  lstm_model=lambda: keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)]))
    RUNTIME.update(INPUTS, x=lambda: _data(False)[0][:1])


RUNTIME = {}


class Checker(doctest.OutputChecker):
    def check_output(self, want, got, optionflags):
        return want == "" or super().check_output(want, got, optionflags)


def main():
    os.chdir(tempfile.mkdtemp(prefix="dc_keras_docstrings_"))
    user_files()
    names = ["dc_keras"] + [m.name for m in pkgutil.walk_packages(dc_keras.__path__, "dc_keras.")
                            if not m.name.startswith("dc_keras._native")]
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(checker=Checker(), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    results, seen = {}, set()
    for name in names:
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            key = (test.filename, test.lineno, test.name.rsplit(".", 1)[-1])
            if not test.examples or key in seen:
                continue
            seen.add(key)
            test.globs.update(np=np, keras=keras, dc_keras=dc_keras, **inputs(test))
            out = io.StringIO()
            real = sys.stdout
            try:
                r = runner.run(test, out=out.write, clear_globs=True)
            finally:
                sys.stdout = real
            where = f"{os.path.relpath(test.filename, os.path.dirname(os.path.dirname(dc_keras.__file__)))}"
            results[f"{test.name} ({where})"] = out.getvalue()[-3000:] if r.failed else None
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
