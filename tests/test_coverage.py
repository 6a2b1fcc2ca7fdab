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
