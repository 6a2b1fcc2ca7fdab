"""Export: Keras model -> .tflite (TFLite converter) -> packed .tflite (HuffDecode ops)."""
from dc_keras.export._pack import DEFAULT_MIN_BYTES, pack, unpack

__all__ = ["pack", "unpack", "DEFAULT_MIN_BYTES"]
