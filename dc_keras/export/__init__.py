"""Export: Keras model -> ``.tflite`` (TFLite converter) -> packed ``.tflite`` (``HuffDecode`` ops).

* ``to_tflite(model, pack=True, quantize=None, path=None, batch_size=None, converter_options=None,
  configure=None, pack_options=None)``: convert (+ optional float16 / int8 post-training
  quantization) and pack (``pack_options``: a dict of ``pack``'s other arguments);
  recurrent models get a static batch; ``ClusterSpreadWarning`` when a clustered kernel reaches
  the packer with far more distinct values (e.g. a folded BatchNormalization).
* ``pack(tflite_bytes, min_bytes=...)`` / ``unpack(packed_bytes)``: the pass itself, on any
  ``.tflite``.
* ``inspect(tflite_bytes)``: per-tensor size report (``dc-keras inspect``); also takes a
  ``.tflite`` file's path.

Run packed models with ``dc_keras.runtime.Interpreter``.
"""
from dc_keras.export._convert import ClusterSpreadWarning, to_tflite
from dc_keras.export._inspect import Report, TensorRow, inspect
from dc_keras.export._pack import DEFAULT_MIN_BYTES, DEFAULT_MIN_SAVING, pack, unpack

__all__ = ["to_tflite", "ClusterSpreadWarning", "pack", "unpack", "inspect", "Report", "TensorRow", "DEFAULT_MIN_BYTES",
           "DEFAULT_MIN_SAVING"]
