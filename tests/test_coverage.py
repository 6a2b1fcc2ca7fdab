"""Issue 14: prune/cluster report what they compress (share of parameters), what they skip and why
(unsupported type, frozen, too small); `bits` limited to what the packed format holds."""
import logging

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.train import ClusterWrapper

S = dc_keras.schedules.ConstantSparsity(0.5, 0)


def model():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(10, name="big")(inputs)
    h = keras.layers.LayerNormalization(name="ln")(h)
    h = keras.layers.Dense(10, name="frozen_fc", trainable=False)(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="tiny")(h))


def test_prune_report_and_log(caplog):
    with caplog.at_level(logging.INFO, logger="dc_keras"):
        pruned = dc_keras.prune(model(), S)
    report = pruned.compression_report
    assert [e["layer"] for e in report.wrapped] == ["big", "tiny"]
    assert report.covered_params == 60 + 20
    assert report.total_params == 70 + 20 + 110 + 22
    assert report.fraction == pytest.approx(80 / 222)
    reasons = {e["layer"]: e["reason"] for e in report.skipped}
    # normalisation layers are dense by design: said so, not reported as an unsupported type
    assert reasons["ln"].startswith("normalization layer LayerNormalization: per-channel vectors, left dense by design")
    assert reasons["frozen_fc"].startswith("frozen") and "include_frozen=True" in reasons["frozen_fc"]
    log = caplog.text
    assert "2 layer(s) compressed, 80 of 222 parameters (36.0 %)" in log
    assert "frozen_fc (Dense, 110 params): frozen" in log and "ln (LayerNormalization" in log
    assert report.to_dict()["covered_params"] == 80


def test_include_frozen_and_min_params():
    clustered = dc_keras.cluster(model(), bits=2, include_frozen=True, min_params=30)
    report = clustered.compression_report
    assert [e["layer"] for e in report.wrapped] == ["big", "frozen_fc"]
    reasons = {e["layer"]: e["reason"] for e in report.skipped}
    assert reasons["tiny"] == "too small (20 weights < min_params=30)"
    wrapper = clustered.get_layer("frozen_fc")
    assert isinstance(wrapper, ClusterWrapper) and not wrapper.trainable
    assert not wrapper.trainable_weights  # a frozen layer keeps its centroids fixed too


def test_coverage_function_on_plain_and_wrapped_models():
    plain = dc_keras.coverage(model())
    assert [e["layer"] for e in plain.wrapped] == ["big", "tiny"]
    wrapped = dc_keras.coverage(dc_keras.prune(model(), S))
    assert [e["layer"] for e in wrapped.wrapped] == ["big", "tiny"]
    assert wrapped.total_params == plain.total_params  # masks are not model parameters
    assert {e["layer"] for e in wrapped.skipped} == {"ln", "frozen_fc"}
    assert "36.0 %" in str(wrapped)


def test_naming_unsupported_or_frozen_layers():
    with pytest.raises(ValueError, match="'ln' \\(LayerNormalization\\) cannot be pruned: normalization layer"):
        dc_keras.prune(model(), S, layers=["ln"])
    with pytest.raises(ValueError, match="'frozen_fc' is frozen.*include_frozen=True"):
        dc_keras.cluster(model(), layers=["frozen_fc"])
    frozen_only = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, trainable=False)])
    with pytest.raises(ValueError, match="nothing prunable.*include_frozen=True"):
        dc_keras.prune(frozen_only, S)


@pytest.mark.parametrize("bits", [0, 13, 16, 2.5, True])
def test_bits_limited_to_the_packed_format(bits):
    with pytest.raises(ValueError, match="between 1 and 12.*4096.*FORMAT.md"):
        dc_keras.cluster(model(), bits=bits)
    with pytest.raises(ValueError, match="between 1 and 12"):
        dc_keras.cluster(model(), bits={"big": bits})
    with pytest.raises(ValueError, match="between 1 and 12"):
        ClusterWrapper(keras.layers.Dense(2), bits=bits)


def test_bits_12_fits_the_codebook_only_without_a_zero_slot():
    m = model()
    k = keras.ops.convert_to_numpy(m.get_layer("big").kernel)
    k[0] = 0.0
    m.get_layer("big").kernel.assign(k)
    with pytest.raises(ValueError, match="'big'.*bits=12.*4097 codebook entries.*bits <= 11 or preserve_sparsity=False"):
        dc_keras.cluster(m, bits=12, layers=["big"])
    clustered = dc_keras.cluster(m, bits=12, layers=["big"], preserve_sparsity=False)
    final = dc_keras.strip(clustered)
    assert len(np.unique(keras.ops.convert_to_numpy(final.get_layer("big").kernel))) <= 4096


class CoverageBlock(keras.layers.Layer):
    """A custom layer holding layers and a weight of its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(8, name=f"{self.name}_fc")
        self.ln = keras.layers.LayerNormalization(name=f"{self.name}_ln")

    def build(self, shape):
        self.scale = self.add_weight(shape=(8,), name="scale")

    def call(self, x):
        return self.ln(self.fc(x)) * self.scale


class CoverageNet(keras.Model):
    def __init__(self, wrap=False, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(8, name="first")
        if wrap:
            self.first.build((None, 6))
            self.first = dc_keras.cluster(self.first, bits=2)  # the model keeps tracking the Dense too
        self.blocks = [CoverageBlock(name="b0"), CoverageBlock(name="b1")]
        self.lstm = keras.layers.LSTM(4, name="lstm")
        self.frozen = keras.layers.Dense(4, trainable=False, name="frozen")

    def call(self, x):
        h = self.first(x)
        for block in self.blocks:
            h = block(h)
        return self.frozen(self.lstm(keras.ops.expand_dims(h, 1)))


def test_coverage_of_a_subclassed_model():
    """coverage() refused subclassed models with advice it could not follow (apply coverage() to
    the layers: it takes models only). It now lists the layers held at any depth."""
    with pytest.raises(ValueError, match=r"'.*net' \(CoverageNet, subclassed\) is not built.*model\(x\[:1\]\)"):
        dc_keras.coverage(CoverageNet())
    net = CoverageNet()
    net(np.zeros((2, 6), "float32"))
    report = dc_keras.coverage(net)
    assert [e["layer"] for e in report.wrapped] == ["first", "b0_fc", "b1_fc", "lstm"]
    assert report.covered_params == 48 + 64 + 64 + 4 * 4 * (8 + 4)
    reasons = {e["layer"]: (e["reason"], e["params"]) for e in report.skipped}
    assert set(reasons) == {"b0", "b0_ln", "b1", "b1_ln", "frozen"}
    assert reasons["b0"][1] == 8 and "its own weights" in reasons["b0"][0] and "custom layer" in reasons["b0"][0]
    assert reasons["b0_ln"][0].startswith("normalization layer") and reasons["frozen"][0].startswith("frozen")
    assert report.total_params == sum(int(np.prod(v.shape)) for v in net.weights)
    assert "subclassed model" in str(report) and "__init__" in str(report)
    assert [e["layer"] for e in dc_keras.coverage(net, include_frozen=True).wrapped][-1] == "frozen"

    wrapped = CoverageNet(wrap=True)
    wrapped(np.zeros((2, 6), "float32"))
    report = dc_keras.coverage(wrapped)
    assert [e["layer"] for e in report.wrapped] == ["first"] and report.covered_params == 48
    reasons = {e["layer"]: e["reason"] for e in report.skipped}
    assert "first" not in reasons  # the Dense inside the wrapper, tracked by the model too
    assert reasons["b0_fc"] == reasons["lstm"] == "not wrapped"
    state = sum(int(np.prod(v.shape)) for v in wrapped.first.weights) - 48 - 8  # centroids, assignments
    assert report.total_params == sum(int(np.prod(v.shape)) for v in wrapped.weights) - state


def test_a_subclassed_model_nested_in_a_functional_one_is_reported_as_left_dense():
    """prune()/cluster() walk into nested Sequential/Functional models, not into a subclassed one,
    whose layers stay dense: the report said 'a model (its own layers are handled one by one)'."""
    inputs = keras.Input((6,))
    inner = CoverageNet()
    model = keras.Model(inputs, keras.layers.Dense(2, name="top")(inner(inputs)))
    pruned = dc_keras.prune(model, S)
    reasons = {e["layer"]: e["reason"] for e in pruned.compression_report.skipped}
    assert reasons[inner.name].startswith("a subclassed model nested in this one: prune()/cluster() do not "
                                          "rewrite its layers, which stay dense; wrap them in its __init__")
    assert [e["layer"] for e in pruned.compression_report.wrapped] == ["top"]
