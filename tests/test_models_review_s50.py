"""The "models people ship" journey reviewed with fresh eyes (helper session 50): models the docs do
not show (keras.applications DenseNet121 / EfficientNetV2B0 / ConvNeXtTiny / ResNet50V2 at 32x32, a
Bidirectional GRU text classifier with Embedding masking, a Transformer encoder block, a Conv1D audio
model with BatchNorm, a layer shared by two inputs, a Lambda layer, a nested model called twice)
through prune + PruningCallback, strip, cluster, strip, ``to_tflite`` and ``pack``: each went through,
packed outputs bit-exact with the unpacked file's.

What was found: ``to_tflite(model, quantize="dynamic")`` kept some weights float32 without a word:
TFLite's dynamic-range quantizer leaves a weight of fewer than 1024 elements float (measured: a
1023-element kernel stays float32, a 1024-element one becomes int8), and a CONV_3D filter of any size
(no hybrid kernel). A small model (the text classifier and the transformer block above, every kernel
under 1024 weights) came back as the float model, byte for byte, for a user who asked for int8
weights. ``to_tflite`` now says so in one UserWarning naming the tensors, why, and the fixes.

``to_tflite(quantize="int8")`` of a model with several inputs passed on TensorFlow's "Warning:
tf.lite.Interpreter is deprecated ... use the LiteRT interpreter": TF's calibrator makes one when
fed inputs by name; the conversion now drops it with TF's other spurious conversion warning.

A schedule at ``frequency=1`` whose last update jumps more than 1 % after the last step (a linear
PolynomialDecay over 50 steps) was told to "Lower `frequency`", which cannot go below 1.

``pipeline.layer_stats`` named a Bidirectional's forward and backward kernels, and a
MultiHeadAttention's four projections, each ``kernel``: now as the coverage report names them.

``prune`` / ``cluster`` with ``layers=`` naming a nested model said only "Unknown layer name(s)":
now that it is a nested model, and the layers inside it to name instead.
"""
import warnings

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras import export

L = keras.layers

FLOAT_LEFT = "quantize='dynamic' left"


def _dynamic(model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = export.to_tflite(model, pack=False, quantize="dynamic")
    return data, [str(w.message) for w in caught if FLOAT_LEFT in str(w.message)]


def test_dynamic_export_that_quantizes_nothing_says_the_file_is_the_float_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), L.Dense(8, name="a"), L.Dense(3, name="b")])
    model = dc_keras.strip(dc_keras.cluster(model, bits=3))
    data, ours = _dynamic(model)
    rows = export.inspect(data).rows
    assert rows and {r.dtype for r in rows} == {"float32"}, [(r.name, r.dtype) for r in rows]  # a float file
    assert len(ours) == 1, ours
    text = ours[0]
    assert text.startswith("to_tflite: quantize='dynamic' left all 2 weight tensor(s) float32, so the .tflite is "
                           "the float model: TFLite's dynamic-range quantizer keeps weights of fewer than 1024 "
                           "elements float: "), text
    assert "a_1/MatMul' [8, 16] (128 elements)" in text and "b_1/MatMul' [3, 8] (24 elements)" in text, text
    assert "quantize='float16'" in text and "quantize='int8' with representative_data" in text, text


def test_dynamic_export_names_the_weights_it_left_float_and_is_silent_when_none():
    """At 1024 elements the kernel is int8 (no warning); a 1023-element kernel and a CONV_3D filter
    stay float32, each named with the reason."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((1024,))
    _, ours = _dynamic(keras.Model(inp, L.Dense(1, name="d")(inp)))
    assert ours == []
    inp = keras.Input((1023,))
    _, ours = _dynamic(keras.Model(inp, L.Dense(1, name="d")(inp)))
    assert len(ours) == 1 and "left all 1 weight tensor(s)" in ours[0] and "[1, 1023] (1023 elements)" in ours[0]
    inp = keras.Input((3, 4, 4, 8))
    h = L.Flatten()(L.Conv3D(8, 3, name="c3")(inp))
    model = keras.Model(inp, L.Dense(2, name="small")(L.Dense(128, name="big")(h)))
    data, ours = _dynamic(model)
    assert len(ours) == 1, ours
    text = ours[0]
    assert text.startswith("to_tflite: quantize='dynamic' left 2 of 3 weight tensors float32 (the rest are "
                           "int8): TFLite's dynamic-range quantizer keeps weights of fewer than 1024 elements "
                           "float: "), text
    assert "small_1/MatMul' [2, 128] (256 elements)" in text, text
    assert "it has no int8 weights for these operators: " in text and "c3_1/convolution/ReadVariableOp' [3, 3, 3, 8, 8] (1728 elements, CONV_3D)" \
        in text, text
    kinds = {r.name: r.dtype for r in export.inspect(data).rows}
    assert [d for n, d in kinds.items() if "big" in n] == ["int8"], kinds


@pytest.mark.parametrize("quantize", [None, "float16"])
def test_other_modes_do_not_warn_of_float_weights(quantize):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), L.Dense(8), L.Dense(3)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.to_tflite(model, pack=False, quantize=quantize)
    assert not [w for w in caught if FLOAT_LEFT in str(w.message)]


def test_int8_export_of_a_model_of_two_inputs_does_not_pass_on_tensorflows_interpreter_deprecation():
    """A layer shared by two inputs, exported with quantize='int8': TF's calibrator, fed the inputs by
    name, makes a tf.lite.Interpreter, whose "Warning: tf.lite.Interpreter is deprecated ... use the
    LiteRT interpreter" reached the user, who made no interpreter. The export itself works."""
    keras.utils.set_random_seed(0)
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    shared = L.Dense(16, activation="relu", name="shared")
    model = keras.Model([a, b], L.Dense(2, name="out")(L.Concatenate()([shared(a), shared(b)])))
    x = [np.random.default_rng(i).normal(size=(16, 8)).astype("float32") for i in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = export.to_tflite(model, quantize="int8", representative_data=x)
    assert not [str(w.message) for w in caught if "tf.lite.Interpreter is deprecated" in str(w.message)]
    assert {r.dtype for r in export.inspect(data).rows if "MatMul" in r.name} == {"int8"}


def test_last_jump_warning_at_frequency_one_does_not_ask_for_a_lower_frequency():
    """A linear schedule (power=1) at frequency=1 over 50 steps, trained exactly end_step steps as the
    docs advise, jumps 1.6 % at end_step after the last step: the warning told the user to lower
    `frequency`, which cannot go below 1. It now asks for more steps; frequency > 1 keeps its advice."""
    from dc_keras.schedules import PolynomialDecay

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        linear = PolynomialDecay(0.0, 0.8, 0, end_step=50, power=1, frequency=1)  # warns itself, the same fix
        assert [str(w.message) for w in caught][-1].endswith("so that the last jump is small.")
        assert "Lower `frequency`" not in str(caught[-1].message)
        coarse = PolynomialDecay(0.0, 0.8, 0, end_step=12, frequency=4)
        one, four = linear.check_reachable(0, 50), coarse.check_reachable(0, 12)
    assert "ends at sparsity 0.784 instead of 0.8" in one and "Lower `frequency`" not in one, one
    assert one.endswith("With frequency=1 that jump is the schedule's own last step: give it more steps (end_step - "
                        "begin_step = 50 now; train as many) so that the last jump is small."), one
    assert four.endswith("Lower `frequency` so that the last jump is small."), four


def test_layer_stats_names_each_kernel_of_a_layer_with_sublayers_as_the_report_does():
    """pipeline.layer_stats of a Bidirectional GRU + MultiHeadAttention text model: the forward and
    backward kernels were two rows named 'kernel', the attention's four projections four more, so a
    per-layer table could not say which was which. Now named as in compression_report."""
    from dc_keras import pipeline

    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), dtype="int32")
    h = L.Embedding(50, 16, mask_zero=True, name="emb")(inp)
    h = L.Bidirectional(L.GRU(8, return_sequences=True), name="bi")(h)
    h = L.MultiHeadAttention(2, 8, name="mha")(h, h)
    model = keras.Model(inp, L.Dense(3, name="out")(L.GlobalAveragePooling1D()(h)))
    clustered = dc_keras.cluster(model, bits=3)
    expected = {(e["layer"], w) for e in clustered.compression_report.wrapped for w in e["weights"]}
    for m in (clustered, dc_keras.strip(clustered)):
        rows = pipeline.layer_stats(m)
        named = [(r["layer"], r["weight"]) for r in rows]
        assert expected <= set(named), (expected, named)
        kernels = [n for n in named if n[1] != "bias"]
        assert len(kernels) == len(set(kernels)) == len(expected), kernels  # one row each, no two alike
        assert all(r["distinct"] <= 8 for r in rows if (r["layer"], r["weight"]) in expected)


@pytest.mark.parametrize("call", ["prune", "cluster"])
def test_naming_a_nested_model_in_layers_says_to_name_the_layers_inside_it(call):
    """layers={"backbone": ...} for a nested Functional model (a transfer-learning backbone) was
    "Unknown layer name(s) ['backbone']", with a list of names without it and no word of why: the
    name is the model's. Now the error says so and names the layers inside it to give instead."""
    keras.utils.set_random_seed(0)
    sub_in = keras.Input((16,))
    h = L.Dense(16, name="inner_a")(sub_in)
    backbone = keras.Model(sub_in, L.BatchNormalization(name="bn")(L.Dense(16, name="inner_b")(h)), name="backbone")
    inp = keras.Input((8,))
    model = keras.Model(inp, L.Dense(3, name="out")(backbone(L.Dense(16, name="first")(inp))))
    what = {"prune": "pruned", "cluster": "clustered"}[call]
    with pytest.raises(ValueError) as err:
        if call == "prune":
            dc_keras.prune(model, layers={"backbone": dc_keras.schedules.ConstantSparsity(0.5, 0)})
        else:
            dc_keras.cluster(model, layers=["backbone"], bits=3)
    text = str(err.value)
    assert text.startswith("Unknown layer name(s) ['backbone'] in `layers`; model "), text
    assert text.endswith("'backbone' is a nested model, not a layer: name the layers inside it ('inner_a', "
                         f"'inner_b'), or leave `layers` out (every supported layer is then {what}, inside nested "
                         "models too)."), text
    with pytest.raises(ValueError) as err:  # an unknown name that is no model: as before
        dc_keras.cluster(model, layers=["nope"], bits=3)
    assert "nested model" not in str(err.value)
