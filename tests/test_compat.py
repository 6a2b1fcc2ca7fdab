"""One test per private-framework shim in dc_keras/_compat.py: fails loudly if an upgrade moves it."""
import keras

from dc_keras import _compat


def test_is_functional():
    inputs = keras.Input((2,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert _compat.is_functional(functional)
    assert not _compat.is_functional(Sub())
    assert not _compat.is_functional(keras.layers.Dense(1))
    assert isinstance(sequential, keras.Model)


def test_flatten_layers_sees_nested_and_held_layers():
    lstm = keras.layers.LSTM(2)
    inputs = keras.Input((3, 2))
    inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="inner_fc")], name="inner")
    model = keras.Model(inputs, inner(lstm(inputs)))
    names = {l.name for l in _compat.flatten_layers(model)}
    assert {"inner", "inner_fc", lstm.name, lstm.cell.name} <= names
    assert model.name not in names
    assert model.name in {l.name for l in _compat.flatten_layers(model, include_self=True)}
