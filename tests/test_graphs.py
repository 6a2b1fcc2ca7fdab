"""Issue 14: prune/cluster/strip on any Functional graph (operator nodes, keras.ops calls, shared
layers, nested models with a frozen base, multiple inputs/outputs, Sequential <-> Functional)."""
import keras
import numpy as np
import pytest
from _compress_flow import assert_same_predictions, check_compressed, five_calls, kernels, np_, random_data, wrappers_of

import dc_keras
from dc_keras.train import ClusterWrapper, PruneWrapper


def residual_ops_model():
    """What crashed with "'Add' object has no attribute 'set_weights'": +, *, keras.ops calls."""
    inputs = keras.Input((12,))
    h = keras.layers.Dense(12, name="d1")(inputs)
    h = h + inputs
    h = h * 2.0
    h = keras.ops.relu(h)
    h = keras.ops.concatenate([h, keras.ops.tanh(inputs)], axis=-1)
    return keras.Model(inputs, keras.layers.Dense(4, name="d2")(h), name="residual")


def test_operator_nodes_and_keras_ops():
    model = residual_ops_model()
    before = [np_(v).copy() for v in model.weights]
    ops_before = [type(op).__name__ for op in model.operations]
    pruned, clustered, final = five_calls(model)
    check_compressed(final, ["d1", "d2"])
    assert [type(op).__name__ for op in final.operations] == ops_before
    assert {type(op).__name__ for op in pruned.operations} >= {"Add", "Multiply", "Relu", "Concatenate"}
    # the input model is never modified
    assert [type(op).__name__ for op in model.operations] == ops_before
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(np_(v), b)


def test_shared_layer_gets_one_shared_wrapper():
    inputs = keras.Input((8,))
    shared = keras.layers.Dense(8, name="shared")
    h = shared(inputs)
    h = shared(keras.ops.relu(h))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h + inputs))
    pruned, clustered, final = five_calls(model)
    for m in (pruned, clustered):
        ws = [w for w in dc_keras.train._base.find_wrappers(m) if w.name == "shared"]
        assert len(ws) == 1
    assert len([l for l in final.layers if l.name == "shared"]) == 1
    check_compressed(final, ["shared", "head"])


def nested_model(frozen=True):
    base_in = keras.Input((6, 6, 2))
    b = keras.layers.Conv2D(4, 3, name="base_conv")(base_in)
    b = keras.layers.GlobalAveragePooling2D()(b)
    b = keras.layers.Dense(6, name="base_fc")(b)
    base = keras.Model(base_in, b, name="base")
    base.trainable = not frozen
    tower = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="tower_fc")], name="tower")
    inputs = keras.Input((6, 6, 2))
    out = keras.layers.Dense(3, name="head")(tower(base(inputs)))
    return keras.Model(inputs, out, name="transfer")


def test_nested_frozen_base_is_skipped_and_reported():
    model = nested_model(frozen=True)
    pruned, clustered, final = five_calls(model)
    report = pruned.compression_report
    assert sorted(e["layer"] for e in report.wrapped) == ["head", "tower_fc"]
    skipped = {e["layer"]: e["reason"] for e in report.skipped}
    assert set(skipped) == {"base_conv", "base_fc"} and all("frozen" in r for r in skipped.values())
    assert report.covered_params == 6 * 5 + 5 * 3
    assert report.total_params == sum(int(np.prod(v.shape)) for v in model.weights)
    # the frozen base keeps its exact weights and stays frozen
    ks, original = kernels(final), kernels(model)
    for path in ("base_conv/kernel", "base_fc/kernel"):
        np.testing.assert_array_equal(ks[path], original[path])
    assert not final.get_layer("base").trainable
    check_compressed(final, ["head", "tower_fc"])
    assert "frozen" in str(report)


def test_include_frozen_wraps_inside_the_nested_model():
    model = nested_model(frozen=True)
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0), include_frozen=True)
    names = sorted(w.name for w in wrappers_of(pruned, PruneWrapper))
    assert names == ["base_conv", "base_fc", "head", "tower_fc"]
    assert isinstance(pruned.get_layer("base").get_layer("base_conv"), PruneWrapper)
    assert not pruned.get_layer("base").trainable
    with pytest.raises(ValueError, match="frozen.*include_frozen=True"):
        dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0), layers=["base_fc"])


def test_trainable_nested_model_is_wrapped_inside():
    model = nested_model(frozen=False)
    pruned, clustered, final = five_calls(model)
    check_compressed(final, ["base_conv", "base_fc", "tower_fc", "head"])
    assert isinstance(clustered.get_layer("tower").layers[0], ClusterWrapper)
    assert isinstance(final.get_layer("tower"), keras.Sequential)


def test_multiple_inputs_and_outputs():
    a, b = keras.Input((5,), name="a"), keras.Input((3,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(6, name="fa")(a), keras.layers.Dense(6, name="fb")(b)])
    out1 = keras.layers.Dense(2, name="o1")(h)
    out2 = keras.layers.Dense(1, name="o2")(keras.ops.sigmoid(h))
    model = keras.Model([a, b], [out1, out2])
    pruned, clustered, final = five_calls(model)
    assert len(final.inputs) == 2 and len(final.outputs) == 2
    check_compressed(final, ["fa", "fb", "o1", "o2"])


def test_functional_inside_sequential():
    inner_in = keras.Input((7,))
    inner = keras.Model(inner_in, keras.layers.Dense(7, name="inner_fc")(inner_in) + inner_in, name="block")
    model = keras.Sequential([keras.Input((7,)), inner, keras.layers.Dense(2, name="top")], name="seq")
    pruned, clustered, final = five_calls(model)
    assert isinstance(final, keras.Sequential)
    check_compressed(final, ["inner_fc", "top"])


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed model"):
        dc_keras.prune(net, dc_keras.schedules.ConstantSparsity(0.5, 0))


def test_a_nested_subclassed_model_keeps_its_name():
    """A subclassed model nested in a Functional one is copied as it is (left dense) under its own
    name: its config holds none (Keras 3 puts the name in a subclassed model's config only when its
    __init__'s catch-all is spelt **kwargs), and the copy was 'inner_1' (layers={'inner': ...},
    weights by name, compression_report lines then named a layer the user never made)."""

    class Inner(keras.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.fc = keras.layers.Dense(8)

        def call(self, x):
            return self.fc(x)

    class NoName(keras.layers.Layer):  # an __init__ that takes no name: Keras names the copy
        def __init__(self, trainable=True, dtype=None):
            super().__init__(trainable=trainable, dtype=dtype)

        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(NoName()(Inner(name="inner")(inputs)))
    model = keras.Model(inputs, outputs)
    Inner()  # takes Keras's first automatic name for Inner ('inner'): a copy would be 'inner_1'
    for rewrite in (lambda m: dc_keras.prune(m, dc_keras.schedules.ConstantSparsity(0.5, 0), layers=["head"]),
                    lambda m: dc_keras.cluster(m, bits=2, layers=["head"])):
        new = rewrite(model)
        assert "inner" in [layer.name for layer in new.layers], [layer.name for layer in new.layers]
        copied = new.get_layer("inner").get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(model.get_layer("inner").get_weights(), copied))


def test_wrapped_graph_predictions_match_before_training():
    """Cloning copies every weight: at sparsity 0 and before training the wrapped model computes
    what the original does (operator nodes included)."""
    model = residual_ops_model()
    x, _ = random_data(model)
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 10_000))
    assert_same_predictions(model, pruned, x)
    with pytest.warns(UserWarning, match=r"strip: pruned layer\(s\) .* after 0 training steps"):
        stripped = dc_keras.strip(pruned)  # never trained: the schedule (begin_step 10,000) did not start
    assert_same_predictions(model, stripped, x)


@keras.saving.register_keras_serializable("dc_keras_tests")
class WrapsInInit(keras.Model):
    """docs/models.md's way for subclassed models: wrap the layers in __init__."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = dc_keras.prune(keras.layers.Dense(2), dc_keras.schedules.ConstantSparsity(0.5, 0))

    def call(self, x):
        return self.fc(x)


def test_stripped_subclassed_model_file_says_why_it_does_not_load(tmp_path):
    """strip() strips a subclassed model in place, so its .keras file holds a plain Dense, while the
    class's __init__ wraps it again on load: the error said 'saved from a different model. Load it
    into the model it was saved from' (it was). It now names strip and the two ways out."""
    net = WrapsInInit()
    net(np.zeros((1, 3), "float32"))
    net.save(tmp_path / "wrapped.keras")
    keras.models.load_model(tmp_path / "wrapped.keras")  # before strip: loads
    dc_keras.strip(net)
    assert isinstance(net.fc, keras.layers.Dense)
    net.save(tmp_path / "stripped.keras")
    with pytest.raises(ValueError, match=r"(?s)PruneWrapper.*no dc_keras variables.*after dc_keras\.strip.*without the wrappers"):
        keras.models.load_model(tmp_path / "stripped.keras")
