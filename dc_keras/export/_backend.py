"""Export from the JAX and PyTorch Keras backends.

TFLite's converter traces TensorFlow graphs. Per backend:

- ``tensorflow``: the converter runs in this process (:func:`dc_keras.export.to_tflite`).
- ``jax``: the TF-backend child below, like torch, so a JAX user gets the file a TF user gets.
  The in-process route (Keras exports the JAX model as a TF SavedModel through jax2tf, which the
  converter reads) gives a correct but unfused graph: bias adds, activations and the softmax as
  separate ops plus shape-polymorphism ops. Measured on LeNet-300-100 (2026-11-30, load ~10):
  61 ops instead of 11, packed file 73,056 B instead of 65,888 B (+11 %), 50 us instead of 30 us
  CPU per batch-1 invoke. It is still used when the call needs this process (``configure=``,
  ``converter_options=``, a generator as ``representative_data``) and, with a warning, when the
  child fails (e.g. a custom layer that does not load from ``.keras``).
- ``torch``: Keras 3.15's ``model.export(path, format="litert")`` needs the separate
  ``litert-torch`` package and replaces every dynamic dimension (the batch) by 1, so the model is
  instead saved as ``.keras`` and converted by a child Python process running the TensorFlow
  backend (``KERAS_BACKEND=tensorflow``): same converter, same ``.tflite`` as on the TF backend.

The child is given the saved model, the arguments and (for ``quantize="int8"``) the
representative data as ``.npy`` files; a generator function cannot cross the process boundary,
so it is rejected with an error saying what to pass instead.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_CHILD = r"""
import json, os, sys
import numpy as np
import keras
import dc_keras.train  # registers the wrapper layers (unstripped models load too)
from dc_keras.export._convert import to_tflite

args = json.loads(sys.argv[1])
model = keras.saving.load_model(args["model"], compile=False)
rep = None
if args["representative"] is not None:
    rep = [np.load(p) for p in args["representative"]]
    rep = rep[0] if len(rep) == 1 else rep
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    to_tflite(model, pack=args["pack"], quantize=args["quantize"], path=args["out"],
              representative_data=rep, min_bytes=args["min_bytes"], batch_size=args["batch_size"],
              per_channel=args["per_channel"])
relay = [{"category": w.category.__name__, "message": str(w.message)} for w in caught
         if issubclass(w.category, UserWarning) and str(w.message).startswith("to_tflite")]
with open(args["warnings"], "w") as f:
    json.dump(relay, f)
"""

# Seconds the TF child may take (TF start-up + conversion of a large model on a slow machine).
CHILD_TIMEOUT = 1800


def needs_tensorflow_child():
    """True when ``to_tflite`` must convert in a TF-backend child process (torch backend)."""
    import keras

    return keras.backend.backend() == "torch"


def prefers_tensorflow_child(configure=None, converter_options=None, representative_data=None):
    """True when ``to_tflite`` should convert in a TF-backend child though this process could (JAX:
    the child's graph is the TF backend's, fused; see the module docstring), i.e. on the JAX backend
    when nothing in the call needs this process."""
    import keras

    return (keras.backend.backend() == "jax" and configure is None and not converter_options
            and not callable(representative_data))


def to_tflite_in_tensorflow(model, pack, quantize, *, representative_data, min_bytes, batch_size=None,
                            converter_options=None, configure=None, per_channel=None):
    """Save ``model`` as ``.keras`` and convert it in a ``KERAS_BACKEND=tensorflow`` child.

    Returns the ``.tflite`` bytes (packed when ``pack``).
    """
    if configure is not None or converter_options:
        raise ValueError(
            "configure= and converter_options= cannot be used when exporting from the torch backend: the "
            "conversion runs in a TensorFlow-backend subprocess. Save the model (model.save('m.keras')) and "
            "call to_tflite on it in a process with KERAS_BACKEND=tensorflow."
        )
    if callable(representative_data):
        raise ValueError(
            "representative_data must be an array or a list of arrays (not a generator function) "
            "when exporting from the torch backend: the conversion runs in a TensorFlow-backend "
            "subprocess. Pass e.g. x_train[:200]."
        )
    with tempfile.TemporaryDirectory(prefix="dc_keras-export-") as tmp:
        model_path = os.path.join(tmp, "model.keras")
        model.save(model_path)
        rep_paths = None
        if representative_data is not None:
            arrays = representative_data if isinstance(representative_data, (list, tuple)) else [representative_data]
            rep_paths = []
            for i, a in enumerate(arrays):
                rep_paths.append(os.path.join(tmp, f"rep{i}.npy"))
                a = np.asarray(a)  # float data as float32; integer inputs (token ids) keep their type
                np.save(rep_paths[-1], a.astype(np.float32) if a.dtype.kind == "f" else a)
        out = os.path.join(tmp, "model.tflite")
        args = {"model": model_path, "pack": bool(pack), "quantize": quantize, "out": out,
                "representative": rep_paths, "min_bytes": int(min_bytes), "warnings": os.path.join(tmp, "warnings.json"),
                "batch_size": None if batch_size is None else int(batch_size),
                "per_channel": None if per_channel is None else bool(per_channel)}
        env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env,
                                  capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"to_tflite: the TensorFlow-backend conversion did not finish in "
                               f"{CHILD_TIMEOUT} s") from None
        if proc.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise RuntimeError(
                "to_tflite: converting in a TensorFlow-backend subprocess failed (the model was saved "
                f"as .keras and loaded with KERAS_BACKEND=tensorflow):\n{tail}"
            )
        _relay_warnings(args["warnings"])
        with open(out, "rb") as f:
            return f.read()


def _relay_warnings(path):
    """Re-issues here the ``to_tflite`` warnings the child recorded (static batch, ClusterSpreadWarning,
    ...): without this they would stay in the child's captured stderr."""
    import warnings

    from dc_keras.export._convert import ClusterSpreadWarning

    if not os.path.exists(path):
        return
    with open(path) as f:
        relayed = json.load(f)
    for w in relayed:
        category = ClusterSpreadWarning if w["category"] == "ClusterSpreadWarning" else UserWarning
        warnings.warn(w["message"], category, stacklevel=5)  # the caller of to_tflite
