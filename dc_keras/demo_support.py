"""Conversion and interpreter helpers used by the demo until the export/runtime modules land."""


def keras_to_tflite(model) -> bytes:
    import contextlib
    import io

    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the temporary SavedModel's signature
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def make_interpreter(tflite_bytes: bytes):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=tflite_bytes)
