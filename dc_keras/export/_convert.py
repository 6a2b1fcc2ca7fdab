"""Keras model -> ``.tflite`` through TFLite's converter, then (optionally) the packing pass."""
from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np

from dc_keras.export._pack import DEFAULT_MIN_BYTES
from dc_keras.export._pack import pack as _pack

QUANTIZE_MODES = (None, "float16", "int8", "dynamic")


def _representative(data, model):
    """A converter representative-dataset generator from an array, a list of arrays or a callable."""
    if data is None:
        raise ValueError(
            "quantize='int8' needs representative_data: an array of typical inputs (first axis = "
            "samples), a list of such arrays for a multi-input model, or a generator function"
        )
    if callable(data):
        return data
    inputs = data if isinstance(data, (list, tuple)) else [data]
    inputs = [np.asarray(a, dtype=np.float32) for a in inputs]
    n = min(len(a) for a in inputs)
    if n == 0:
        raise ValueError("representative_data is empty")

    def gen():
        for i in range(min(n, 200)):
            yield [a[i : i + 1] for a in inputs]

    return gen


def _write_atomic(path, data: bytes) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dc_keras-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _is_clustered(model, max_values=256):
    """True if every weight matrix / kernel of ``model`` holds at most ``max_values`` distinct values."""
    kernels = [np.asarray(w) for w in model.get_weights() if np.ndim(w) >= 2]
    return bool(kernels) and all(np.unique(k).size <= max_values for k in kernels)


def to_tflite(model, pack: bool = True, quantize=None, path=None, *, representative_data=None,
              min_bytes: int = DEFAULT_MIN_BYTES, per_channel=None) -> bytes:
    """Converts a Keras 3 model to ``.tflite`` with TFLite's converter, then packs its weights.

    Args:
      model: a built ``keras.Model`` (typically after ``dc_keras.strip``: pruned, clustered
        weights, so they pack well).
      pack: run ``dc_keras.export.pack`` on the converted model (default True).
      quantize: ``None`` (float32), ``"float16"`` (float16 weights), ``"dynamic"`` (int8 weights,
        float activations) or ``"int8"`` (full integer post-training quantization; needs
        ``representative_data``; input/output stay float32).
      path: if given, the bytes are also written there (atomically).
      representative_data: for ``quantize="int8"``: array of typical inputs (first axis =
        samples), list of arrays (one per model input), or a generator function as the TFLite
        converter takes.
      min_bytes: passed to ``pack``.
      per_channel: for ``quantize="int8"``/``"dynamic"``: one int8 scale per output channel (the
        converter's default) or per tensor. ``None`` (default): per tensor when the model is
        clustered (every kernel has <= 256 distinct values), which keeps the weight sharing
        (<= 2**bits int8 codes per tensor, so it packs like the float model; per-channel scales
        spread them, see docs/quantization.md), else per channel.

    Returns:
      The ``.tflite`` bytes.

    Example:
      >>> data = dc_keras.export.to_tflite(model, path="lenet.tflite")                   # doctest: +SKIP
      >>> data8 = dc_keras.export.to_tflite(model, quantize="int8", representative_data=x[:100])  # doctest: +SKIP
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    import tensorflow as tf

    if per_channel is None:
        per_channel = not _is_clustered(model)

    def configure(conv):
        if quantize in ("int8", "dynamic") and not per_channel:
            from dc_keras import _compat

            _compat.converter_per_tensor(conv)
        if quantize == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = _representative(representative_data, model)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return conv

    if quantize == "int8":
        _representative(representative_data, model)  # validate before the slow conversion
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the SavedModel signature
        try:
            data = configure(tf.lite.TFLiteConverter.from_keras_model(model)).convert()
        except Exception as first:  # Keras 3 models the direct route cannot trace: SavedModel
            with tempfile.TemporaryDirectory(prefix="dc_keras-export-") as tmp:
                try:
                    model.export(tmp, format="tf_saved_model")
                except Exception:
                    raise first from None
                data = configure(tf.lite.TFLiteConverter.from_saved_model(tmp)).convert()
    data = bytes(data)
    if pack:
        data = _pack(data, min_bytes=min_bytes)
    if path is not None:
        _write_atomic(path, data)
    return data
