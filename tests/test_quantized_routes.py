"""Quantized exports of a shipped-style model through every runtime route, and what a user is told.

The chain is the one users run: prune -> fit(PruningCallback) -> strip -> cluster -> fit -> strip ->
``to_tflite`` with each documented ``quantize`` / ``per_channel``; every packed file must give the
unpacked file's outputs bit for bit on each ``dc_keras.runtime.Interpreter`` route the docs call
bit-exact for it (README "Decoded or compressed weights", docs/quantization.md)."""
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L

import dc_keras
from dc_keras import export
from dc_keras.runtime import Interpreter


def _ds_cnn():
    """A keyword-spotting DS-CNN (49x10 MFCC input) at a quarter of its width."""
    keras.utils.set_random_seed(41)
    inp = keras.Input((49, 10, 1))
    h = L.Conv2D(16, (10, 4), strides=2, padding="same", name="conv0")(inp)
    h = L.ReLU()(L.BatchNormalization()(h))
    for i in range(2):
        h = L.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(h)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.Conv2D(64, 1, name=f"pw{i}")(h)
        h = L.ReLU()(L.BatchNormalization()(h))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(32, name="fc")(h))


@pytest.fixture(scope="module")
def shipped():
    model = _ds_cnn()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 49, 10, 1)).astype("float32")
    y = rng.integers(0, 32, 16)

    def fit(m, callbacks):
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, batch_size=8, epochs=1, callbacks=callbacks, verbose=0)

    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.7, 0))
    fit(pruned, [dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=4)  # folds the BatchNormalizations
    fit(clustered, [])
    return dc_keras.strip(clustered), x


def _outputs(data, x, **kwargs):
    it = Interpreter(model_content=data, **kwargs)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


# (quantize, per_channel): every option docs/quantization.md lists for to_tflite
OPTIONS = [(None, None), ("float16", None), ("dynamic", None), ("dynamic", True), ("int8", None), ("int8", True)]


@pytest.mark.parametrize("quantize,per_channel", OPTIONS)
def test_every_quantized_export_runs_bit_exact_on_the_documented_routes(shipped, quantize, per_channel):
    from tensorflow.lite.python.interpreter import OpResolverType

    model, x = shipped
    kwargs = {"quantize": quantize}
    if quantize == "int8":
        kwargs["representative_data"] = x
    if per_channel is not None:
        kwargs["per_channel"] = per_channel
    raw = export.to_tflite(model, pack=False, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what each export reports is checked in the tests below
        packed = export.to_tflite(model, **kwargs)
    assert len(packed) < len(raw)
    xs = x[:4]
    want = _outputs(raw, xs)
    assert np.isfinite(want).all()
    # the default delegate route, with release_decoded, on both backends: bit-identical
    for route in ({}, {"release_decoded": True}, {"backend": "tensorflow"}):
        np.testing.assert_array_equal(_outputs(packed, xs, **route), want, err_msg=str(route))
    # decode="op": bit-exact when neither interpreter applies default delegates (docs/quantization.md)
    plain = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    np.testing.assert_array_equal(_outputs(packed, xs, backend="tensorflow", decode="op", **plain),
                                  _outputs(raw, xs, backend="tensorflow", **plain))
    compressed = {"weights": "compressed", "max_density": 1.0}  # the 30 %-dense fc too
    it = Interpreter(model_content=packed, **compressed)
    it.allocate_tensors()
    report = it.compressed_report()
    assert report and all(r["route"] in ("compressed", "dense") for r in report)
    assert all(r["reason"] for r in report if r["route"] == "dense"), report  # never silent
    if quantize in ("int8", "float16"):
        # int8 FULLY_CONNECTED runs compressed with identical outputs (README); float16 weights are
        # read through a DEQUANTIZE and stay decoded, so that file runs the dense kernels
        got = _outputs(packed, xs, **compressed)
        np.testing.assert_array_equal(got, want)
    if quantize == "int8":
        assert any(r["route"] == "compressed" and r["op"] == "FULLY_CONNECTED" for r in report), report


def test_per_tensor_int8_keeps_the_sharing_on_the_shipped_model(shipped):
    """docs/quantization.md: per-tensor int8 packs about like the packed float file, per channel
    markedly larger (the DS-CNN of the zoo: 1.02x / 1.78x)."""
    model, x = shipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sizes = {pc: len(export.to_tflite(model, quantize="int8", representative_data=x, per_channel=pc))
                 for pc in (None, True)}
        float_size = len(export.to_tflite(model))
    assert sizes[None] <= 1.1 * float_size, (sizes, float_size)
    assert sizes[True] > 1.2 * sizes[None], (sizes, float_size)


def _spread_conv_model(layers=4):
    """Conv layers whose kernels hold 17 shared values (16 + zero) but whose channels keep different
    magnitudes, so that per-channel int8 gives each channel its own scale (deterministic spread)."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((10, 10, 16))
    h = inp
    for i in range(layers):
        h = L.Conv2D(16, 3, padding="same", activation="relu", name=f"conv_{i}")(h)
    model = keras.Model(inp, L.Dense(4, name="fc")(L.GlobalAveragePooling2D()(h)))
    rng = np.random.default_rng(0)
    codebook = np.linspace(-0.4, 0.4, 16).astype("float32")
    for i in range(layers):
        layer = model.get_layer(f"conv_{i}")
        w = rng.choice(codebook, layer.kernel.shape) * (rng.random(layer.kernel.shape) < 0.5)
        for c in range(w.shape[-1]):  # channel c keeps values up to its own cap
            cap = np.abs(codebook)[8 + c % 8]
            w[..., c] = np.where(np.abs(w[..., c]) > cap, 0.0, w[..., c])
        layer.kernel.assign(w.astype("float32"))
    return model


@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_per_channel_export_of_a_clustered_model_warns_once_naming_every_layer_and_the_fix(quantize):
    """A clustered model exported with per_channel=True spreads every kernel for the same reason;
    to_tflite gave one ClusterSpreadWarning per kernel (~35 identical cause/fix texts on a clustered
    MobileNetV2); now one warning for them all, naming each layer, the cause and the fix."""
    model = _spread_conv_model()
    x = np.random.default_rng(1).standard_normal((8, 10, 10, 16)).astype("float32")
    extra = {"representative_data": x} if quantize == "int8" else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.to_tflite(model, quantize=quantize, per_channel=True, **extra)
    spread = [str(w.message) for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    assert len(spread) == 1, spread
    msg = spread[0]
    assert msg.startswith("to_tflite: 4 tensors hold far more distinct values"), msg
    for i in range(4):
        assert f"layer 'conv_{i}'" in msg, msg
    assert f"quantize='{quantize}' quantizes per output channel" in msg
    assert "export with per_channel=False" in msg
    # the default (per tensor for a clustered model) keeps the sharing: nothing to report
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ClusterSpreadWarning)
        export.to_tflite(model, quantize=quantize, **extra)


def test_many_spread_tensors_are_listed_up_to_a_limit_with_the_count_of_the_others():
    model = _spread_conv_model(layers=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.to_tflite(model, quantize="dynamic", per_channel=True)
    spread = [str(w.message) for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    assert len(spread) == 1, spread
    assert spread[0].startswith("to_tflite: 8 tensors hold far more distinct values"), spread[0]
    assert spread[0].count("Keras weight") == 6 and "and 2 more (dc_keras.export.inspect" in spread[0]


def _clustered_text_classifier():
    keras.utils.set_random_seed(3)
    inp = keras.Input((16,), dtype="int32")
    h = L.GlobalAveragePooling1D()(L.Embedding(200, 16, name="emb")(inp))
    return dc_keras.strip(dc_keras.cluster(keras.Model(inp, L.Dense(4, name="fc")(h)), bits=4))


def test_int8_calibration_takes_numpy_int64_token_ids_for_an_int32_input():
    """numpy's integer arrays are int64; an Embedding's input is int32. to_tflite(quantize="int8")
    failed after the whole conversion with TF's "Got value of type INT64 but expected type INT32",
    raised as a conversion failure hinting at Flex ops; the ids are now cast to the input's dtype."""
    model = _clustered_text_classifier()
    ids = np.random.default_rng(0).integers(0, 200, (16, 16))
    assert ids.dtype == np.int64
    raw = export.to_tflite(model, pack=False, quantize="int8", representative_data=ids)
    packed = export.to_tflite(model, quantize="int8", representative_data=ids)
    assert raw == export.to_tflite(model, pack=False, quantize="int8", representative_data=ids.astype("int32"))
    x = ids[:4].astype("int32")
    want = _outputs(raw, x)
    np.testing.assert_array_equal(_outputs(packed, x), want)
    np.testing.assert_array_equal(_outputs(packed, x, weights="compressed", max_density=1.0), want)


def test_int8_calibration_refuses_float_ids_or_ids_outside_the_inputs_dtype_naming_the_fix():
    model = _clustered_text_classifier()
    ids = np.random.default_rng(0).integers(0, 200, (16, 16))
    with pytest.raises(ValueError, match=r"a float32 array for the model's int32 input .*astype\('int32'\)"):
        export.to_tflite(model, quantize="int8", representative_data=ids.astype("float32"))
    with pytest.raises(ValueError, match=r"values from 0 to 4294967296, outside the range of int32"):
        export.to_tflite(model, quantize="int8", representative_data=np.where(ids == ids.max(), 2 ** 32, ids))


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_int8_calibration_ids_outside_the_embedding_table_are_named_before_converting(dtype):
    """They failed after the conversion as TFLite's "gather index out of bounds", with the hint for a
    converter that lacks an op (Flex ops)."""
    model = _clustered_text_classifier()
    ids = np.random.default_rng(0).integers(0, 200, (16, 16)).astype(dtype)
    ids[3, 5] = 200
    with pytest.raises(ValueError, match=r"holds ids from 0 to 200, but Embedding 'emb' has input_dim=200 \(ids 0 to 199\)"):
        export.to_tflite(model, quantize="int8", representative_data=ids)


@pytest.mark.parametrize("form", ["list", "array", "dict"])
def test_int8_calibration_generator_of_int64_ids_for_an_int32_input(form):
    """A generator function (the form a tf.data pipeline takes: TextVectorization gives int64 ids)
    failed like the int64 array, after the conversion, with the Flex-ops hint."""
    model = _clustered_text_classifier()
    ids = np.random.default_rng(0).integers(0, 200, (16, 16))
    name = model.inputs[0].name

    def samples():
        for i in range(16):
            x = ids[i:i + 1]
            yield {"list": [x], "array": x, "dict": {name: x}}[form]

    data = export.to_tflite(model, pack=False, quantize="int8", representative_data=samples)
    assert data == export.to_tflite(model, pack=False, quantize="int8", representative_data=ids.astype("int32"))
