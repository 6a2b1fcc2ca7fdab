"""Keras model -> ``.tflite`` through TFLite's converter, then (optionally) the packing pass."""
from __future__ import annotations

import tempfile

import numpy as np

from dc_keras._fileio import atomic_write
from dc_keras._logs import quiet_conversion
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


def to_tflite(model, pack: bool = True, quantize=None, path=None, *, representative_data=None,
              min_bytes: int = DEFAULT_MIN_BYTES) -> bytes:
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

    Returns:
      The ``.tflite`` bytes.

    Example:
      >>> data = dc_keras.export.to_tflite(model, path="lenet.tflite")                   # doctest: +SKIP
      >>> data8 = dc_keras.export.to_tflite(model, quantize="int8", representative_data=x[:100])  # doctest: +SKIP
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    import tensorflow as tf

    def configure(conv):
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
    with quiet_conversion():  # converter/Keras log lines: dc_keras._logs (DC_KERAS_VERBOSE=1 shows them)
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
        atomic_write(path, data)
    return data
