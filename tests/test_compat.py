"""One test per private-API shim in dc_keras/_compat.py."""
import numpy as np


def test_converter_per_tensor_gives_one_scale_per_weight_tensor():
    import keras
    import tensorflow as tf

    from dc_keras import _compat
    from dc_keras.export import _flatbuffer as fb

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6)])

    def scales(per_tensor):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([np.random.rand(1, 8).astype(np.float32)] for _ in range(8))
        if per_tensor:
            _compat.converter_per_tensor(conv)
        model = fb.read_model(conv.convert())
        return [len(t.quantization.scale) for t in model.subgraphs[0].tensors
                if t.type == fb.schema.TensorType.INT8 and fb.buffer_bytes(model, t.buffer)]

    assert scales(False) == [6]  # the converter's default: per channel
    assert scales(True) == [1]
