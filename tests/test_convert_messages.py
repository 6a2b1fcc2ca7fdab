"""to_tflite's messages for what a user gets wrong around recurrent layers and converter_options: one
ValueError naming the problem and the fix (a signature to copy, the attribute meant), without the
converter's log on stderr. Before: a subclassed LSTM model with no arguments failed with "batch_size
needs a model with known inputs" (no batch_size given); an input_signature with a dynamic batch with
the converter's TensorListReserve error, advice for SELECT_TF_OPS and its log on stderr; a misspelt
converter_options key with 55 attribute names, most private, as a private exception class."""
import re

import keras
import numpy as np
import pytest

from dc_keras import export
from dc_keras.pipeline import predict_tflite

T = 8


class TextNet(keras.Model):
    """Embedding -> LSTM -> Dense, subclassed: Keras knows no input shapes or dtypes for it."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.emb = keras.layers.Embedding(50, 4, name="embedding")
        self.rnn = keras.layers.LSTM(4, name="lstm")
        self.out = keras.layers.Dense(2)

    def call(self, x, training=False):
        return self.out(self.rnn(self.emb(x)))


class Wrapped(keras.layers.Layer):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.rnn = keras.layers.GRU(3, name="gru")

    def call(self, x):
        return self.rnn(x)


class HiddenLoop(keras.Model):
    """A subclassed model whose GRU is inside a custom layer (not in model.layers): float inputs."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.body = Wrapped()
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.body(x))


def _ids(n=3):
    return np.random.default_rng(0).integers(0, 50, (n, T)).astype("int32")


def _text_net():
    net = TextNet()
    net(_ids(2))  # built by a call on a batch, as a user does
    return net


def _signature_in(message):
    """The input_signature a message tells to use, evaluated as a user copying it would."""
    found = re.search(r"input_signature=(\[.*?\)\]+)", message)
    assert found, message
    return eval(found.group(1), {"keras": keras})  # noqa: S307 (our own message)


def _raised(call):
    with pytest.raises(ValueError) as info:
        call()
    assert type(info.value) is ValueError, type(info.value)  # public: no private subclass shown to the user
    return str(info.value)


def test_subclassed_recurrent_model_gets_the_signature_to_give(capfd):
    net = _text_net()
    message = _raised(lambda: export.to_tflite(net))
    assert "batch_size" not in message and "model 'text_net' has recurrent layer(s) 'lstm'" in message, message
    assert f"input_signature=[keras.InputSpec(shape=(1, {T}), dtype='int32')]" in message, message
    assert "TensorList" not in capfd.readouterr().err  # no converter log replayed under a message that explains
    data = export.to_tflite(net, pack=False, input_signature=_signature_in(message))
    x = _ids(5)
    np.testing.assert_allclose(predict_tflite(data, x), keras.ops.convert_to_numpy(net(x)), rtol=1e-4, atol=1e-5)


def test_a_recurrent_layer_inside_a_custom_layer_too(capfd):
    """Not in model.layers: the dynamic-batch conversion fails on tensor-list ops, named as the layer."""
    net = HiddenLoop()
    net(np.zeros((2, 5, 3), "float32"))
    message = _raised(lambda: export.to_tflite(net))
    assert "recurrent layer(s) 'gru'" in message, message
    assert "input_signature=[keras.InputSpec(shape=(1, 5, 3), dtype='float32')]" in message, message
    err = capfd.readouterr().err
    assert "TensorListReserve" not in err and "SELECT_TF_OPS" not in message, err[-2000:]
    message = _raised(lambda: export.to_tflite(net, batch_size=4))  # the batch asked for goes in the signature
    assert message.startswith("to_tflite: batch_size needs a model with known inputs"), message
    assert "input_signature=[keras.InputSpec(shape=(4, 5, 3), dtype='float32')]" in message, message


def test_an_input_signature_with_a_dynamic_batch_is_told_the_static_one(capfd):
    """The README's signature, shape=(None, T), on a text model with an LSTM."""
    net = _text_net()
    message = _raised(lambda: export.to_tflite(net, input_signature=[keras.InputSpec(shape=(None, T),
                                                                                     dtype="int32")]))
    assert "recurrent layer(s) 'lstm' need a static batch size in the input signature" in message, message
    assert f"use shape=(1, {T}) instead of (None, {T})" in message, message
    assert "SELECT_TF_OPS" not in message and "TensorList" not in message, message
    assert "TensorListReserve" not in capfd.readouterr().err
    (spec,) = _signature_in(message)
    assert tuple(spec.shape) == (1, T) and spec.dtype == "int32", spec
    assert export.to_tflite(net, pack=False, input_signature=[spec])[4:8] == b"TFL3"


def test_several_inputs_each_get_a_static_batch():
    a, b = keras.Input((5, 3), name="seq"), keras.Input((2,), name="side")
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([keras.layers.GRU(3)(a), b])))
    message = _raised(lambda: export.to_tflite(model, input_signature=[[keras.InputSpec(shape=(None, 5, 3)),
                                                                        keras.InputSpec(shape=(None, 2))]]))
    assert "give every spec a fixed first dimension" in message, message
    assert ("input_signature=[[keras.InputSpec(shape=(1, 5, 3), dtype='float32'), "
            "keras.InputSpec(shape=(1, 2), dtype='float32')]]") in message, message


def test_a_misspelt_converter_option_names_the_one_meant():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    message = _raised(lambda: export.to_tflite(model, converter_options={"optimisations": []}))
    assert message.startswith("to_tflite: converter_options key 'optimisations': the converter has no attribute "
                              "'optimisations' (did you mean 'optimizations'?)"), message
    listed = message.split("public attributes: ", 1)[1].split(", ")
    assert "allow_custom_ops" in listed and not [n for n in listed if n.startswith("_")], listed
    assert len(message) < 1000, len(message)
    message = _raised(lambda: export.to_tflite(model, converter_options={"target_spec.suported_ops": []}))
    assert "(did you mean 'target_spec.supported_ops'?); converter.target_spec's public attributes:" in message
    # a private flag named without its underscore: the private name is suggested, and set when given
    message = _raised(lambda: export.to_tflite(model, converter_options={"experimental_lower_tensor_list_ops": 0}))
    assert "did you mean '_experimental_lower_tensor_list_ops'?" in message, message
    assert export.to_tflite(model, pack=False,
                            converter_options={"_experimental_lower_tensor_list_ops": False})[4:8] == b"TFL3"


def test_a_misspelt_converter_option_fails_before_the_export(monkeypatch):
    """The keys are checked on an empty converter first: a typo costs a moment, not the SavedModel
    export and conversion of the whole model (they are not reached)."""
    from dc_keras.export import _convert

    def not_reached(*args, **kwargs):
        raise AssertionError("the model was exported before its converter_options keys were checked")

    monkeypatch.setattr(_convert, "_convert_checked", not_reached)
    monkeypatch.setattr(_convert, "_in_tensorflow_child", not_reached)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    message = _raised(lambda: export.to_tflite(model, converter_options={"allow_custom_op": True}))
    assert message.startswith("to_tflite: converter_options key 'allow_custom_op': the converter has no "
                              "attribute 'allow_custom_op' (did you mean 'allow_custom_ops'?)"), message
    message = _raised(lambda: export.to_tflite(model, converter_options={"target_spec.supported_ops.x": 1}))
    assert "converter_options key 'target_spec.supported_ops.x'" in message, message
    with pytest.raises(AssertionError, match="exported before"):  # good keys reach the export
        export.to_tflite(model, converter_options={"allow_custom_ops": True, "target_spec.supported_types": []})
