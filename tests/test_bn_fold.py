"""Issue 14: BatchNormalization folded into the preceding Conv/ConvTranspose/Depthwise/Separable/Dense before
clustering, so the exported .tflite kernels keep 2**bits shared values (the converter would fold
BN itself otherwise and multiply the distinct values by the number of channels)."""
import keras
import numpy as np
import pytest
from _compress_flow import five_calls, np_

import dc_keras
from dc_keras.train import fold_batchnorm

RNG = np.random.default_rng(0)


def _randomize_bn(model):
    """Non-trivial inference statistics, as after training."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            weights = {"gamma": RNG.uniform(0.5, 2, n), "beta": RNG.normal(size=n),
                       "moving_mean": RNG.normal(size=n), "moving_variance": RNG.uniform(0.2, 3, n)}
            layer.set_weights([weights[v.name] for v in layer.weights])
    return model


def bn_cnn():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.ops.relu(h)
    h = keras.layers.SeparableConv2D(5, 3, padding="same", name="sep")(h)
    h = keras.layers.BatchNormalization(name="bn3")(h)
    h = h + keras.layers.Conv2D(5, 1, name="proj")(inputs)
    h = keras.layers.BatchNormalization(name="bn_pre")(h)
    h = keras.layers.Conv2D(4, 3, name="c2")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(7, name="fc")(h)
    h = keras.layers.BatchNormalization(name="bn4")(h)
    return _randomize_bn(keras.Model(inputs, keras.layers.Dense(3, name="out")(h)))


def test_fold_is_inference_equivalent():
    model = bn_cnn()
    x = RNG.normal(size=(8, 8, 8, 3)).astype("float32")
    folded = fold_batchnorm(model)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert sorted(folded.compression_report.folds) == [("c1", "bn1"), ("dw", "bn2"), ("fc", "bn4"), ("sep", "bn3")]
    assert isinstance(folded.get_layer("bn1"), keras.layers.Identity)
    assert isinstance(folded.get_layer("bn_pre"), keras.layers.BatchNormalization)
    assert any("'bn_pre' precedes 'c2'" in n for n in folded.compression_report.notes)
    assert folded.get_layer("c1").use_bias
    # the input model still has its BatchNormalization layers
    assert isinstance(model.get_layer("bn1"), keras.layers.BatchNormalization)


def test_fold_keeps_pruned_zeros_and_needs_a_linear_producer():
    inputs = keras.Input((4, 4, 2))
    h = keras.layers.Conv2D(3, 2, name="c")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Conv2D(3, 2, activation="relu", name="c_act")(h)
    h = keras.layers.BatchNormalization(name="bn_act")(h)
    model = _randomize_bn(keras.Model(inputs, h))
    kernel = np_(model.get_layer("c").kernel)
    kernel[..., ::2] = 0.0
    kernel[0] = 0.0
    model.get_layer("c").kernel.assign(kernel)
    folded = fold_batchnorm(model)
    np.testing.assert_array_equal(np_(folded.get_layer("c").kernel) == 0, kernel == 0)
    assert folded.compression_report.folds == [("c", "bn")]
    assert any("'bn_act' after 'c_act' not folded" in n and "activation" in n
               for n in folded.compression_report.notes)
    x = RNG.normal(size=(4, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_sequential_fold_and_option_off(tmp_path):
    model = _randomize_bn(keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="fc"),
                                            keras.layers.BatchNormalization(name="bn"),
                                            keras.layers.Dense(2, name="out")]))
    clustered = dc_keras.cluster(model, bits=4)
    assert clustered.compression_report.folds == [("fc", "bn")]
    assert isinstance(clustered.get_layer("bn"), keras.layers.Identity)
    final = dc_keras.strip(clustered)
    final.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras")  # plain Keras layers only
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Identity", "Dense"]
    x = RNG.normal(size=(3, 6)).astype("float32")
    np.testing.assert_array_equal(np_(loaded(x)), np_(final(x)))
    kept = dc_keras.cluster(model, bits=4, fold_batchnorm=False)
    assert kept.compression_report.folds == []
    assert isinstance(kept.get_layer("bn"), keras.layers.BatchNormalization)
    assert "bn" in {e["layer"] for e in kept.compression_report.skipped}
    with pytest.raises(ValueError, match="fold_batchnorm"):
        dc_keras.cluster(model, fold_batchnorm="yes")


def _exported_kernel_distinct(model):
    from dc_keras import export

    report = export.inspect(export.to_tflite(model, pack=False))
    return {r.name: r.distinct for r in report.rows if len(r.shape) >= 2}


def test_five_calls_export_keeps_the_sharing():
    """prune -> fit -> strip -> cluster -> fit -> strip -> to_tflite: every exported kernel has at
    most 2**bits non-zero values (+ zero); without folding the converter breaks the sharing."""
    model = bn_cnn()
    bits = 3
    _, clustered, final = five_calls(model, sparsity=0.5, bits=bits)
    assert len(clustered.compression_report.folds) == 4
    distinct = _exported_kernel_distinct(final)
    assert len(distinct) >= 6, distinct
    assert max(distinct.values()) <= 2 ** bits + 1, distinct
    unfolded = dc_keras.strip(dc_keras.cluster(dc_keras.strip(dc_keras.prune(
        model, dc_keras.schedules.ConstantSparsity(0.5, 0))), bits=bits, fold_batchnorm=False))
    assert max(_exported_kernel_distinct(unfolded).values()) > 2 ** bits + 1


@pytest.mark.parametrize("layer", [
    lambda: keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", use_bias=False, name="tr"),
    lambda: keras.layers.Conv1DTranspose(4, 3, name="tr"),
    lambda: keras.layers.Conv3DTranspose(4, 2, name="tr"),
], ids=["2d", "1d", "3d"])
def test_transposed_conv_then_batchnorm_is_folded_and_keeps_the_sharing(layer):
    """A decoder's Conv2DTranspose -> BatchNormalization: the converter folds the BN's scale into the
    TRANSPOSE_CONV kernel (49 distinct values for a 3-bit kernel, seen in a user model), so cluster
    must fold it first, as for Conv2D (the transposed kernel's output channels are axis -2)."""
    tr = layer()
    shape = {"Conv2DTranspose": (5, 5, 3), "Conv1DTranspose": (6, 3), "Conv3DTranspose": (3, 3, 3, 3)}[type(tr).__name__]
    inputs = keras.Input(shape)
    h = keras.layers.BatchNormalization(name="bn")(tr(inputs))
    h = keras.layers.Flatten()(keras.layers.ReLU()(h))
    model = _randomize_bn(keras.Model(inputs, keras.layers.Dense(2, name="out")(h)))
    x = RNG.normal(size=(4,) + shape).astype("float32")
    folded = fold_batchnorm(model)
    assert folded.compression_report.folds == [("tr", "bn")], folded.compression_report.notes
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    bits = 3
    final = dc_keras.strip(dc_keras.cluster(model, bits=bits))
    assert max(_exported_kernel_distinct(final).values()) <= 2 ** bits + 1


def test_batchnorm_after_a_shared_or_branching_layer_is_reported():
    """A BatchNormalization after a layer that is called twice (a shared conv) or whose output also
    feeds another layer cannot be folded; cluster said nothing (only to_tflite warned later, when
    the converter had folded it into the shared kernel): the report now says which and why."""
    inputs = keras.Input((6, 6, 4))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="sconv")
    a = keras.layers.BatchNormalization(name="bn_shared")(shared(inputs))
    b = shared(keras.layers.ReLU()(a))
    c = keras.layers.Conv2D(4, 3, padding="same", name="bconv")(inputs)
    d = keras.layers.BatchNormalization(name="bn_branch")(c)
    h = keras.layers.Concatenate()([a + b, c, d])
    model = _randomize_bn(keras.Model(inputs, keras.layers.Dense(2, name="out")(h)))
    clustered = dc_keras.cluster(model, bits=3)
    notes = clustered.compression_report.notes
    assert clustered.compression_report.folds == []
    assert any("'bn_shared' after 'sconv' not folded" in n and "called 2 times" in n for n in notes), notes
    assert any("'bn_branch' after 'bconv' not folded" in n and "also feeds" in n for n in notes), notes
