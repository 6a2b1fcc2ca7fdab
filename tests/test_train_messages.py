"""What the training API tells its user: layers left dense because they cannot be compressed (a
UserWarning, not only an INFO log), sparsity_m_by_n's meaning against the schedule's target,
cluster()'s bits / clusters slips, and a sensitivity sweep that cannot rank the layers."""
import inspect
import warnings

import keras
import numpy as np
import pytest

import dc_keras
import dc_keras.compat.tfmot as tfmot
from dc_keras.schedules import ConstantSparsity, PolynomialDecay
from dc_keras.train.clustering import ClusterWrapper

from _compress_flow import MinimalCell

S = ConstantSparsity(0.5, 0)


class Plain(keras.layers.Layer):
    """A custom layer with a matrix and no get_prunable_weights(): dc_keras cannot compress it."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 64), name="w")

    def call(self, x):
        return keras.ops.matmul(x, self.w)


class Offset(keras.layers.Layer):
    """A custom layer holding only a vector (a bias): left dense by design."""

    def build(self, shape):
        self.b = self.add_weight(shape=(shape[-1],), name="b")

    def call(self, x):
        return x + self.b


class OptOut(Plain):
    """tfmot's way to keep a custom layer dense: get_prunable_weights() returns []."""

    def get_prunable_weights(self):
        return []


class Inner(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(16)

    def call(self, x):
        return self.fc(x)


def mostly_custom():
    return keras.Sequential([keras.Input((16,)), Plain(name="plain"), keras.layers.Dense(4, name="fc")])


def ours(caught):
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning) and "dc_keras." in str(w.message)]


# -- 1. layers left dense because they are unsupported --------------------------------------------------

@pytest.mark.parametrize("action", ["prune", "cluster"])
def test_a_custom_layer_left_dense_warns_once_with_its_share_reason_and_fix(action):
    # 1,024 of 1,284 parameters in a custom layer without get_prunable_weights(): only an INFO log said so
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = dc_keras.prune(mostly_custom(), S) if action == "prune" else dc_keras.cluster(mostly_custom(), bits=4)
    said = ours(caught)
    assert len(said) == 1, said
    done = {"prune": "pruned", "cluster": "clustered"}[action]
    assert said[0] == (
        f"dc_keras.{action}(): 1 layer holding 79.8 % of the model's 1,284 parameters is left dense (not {done}) "
        f"because dc_keras cannot {action} it: 'plain' (Plain, 1,024 params, 79.8 %): unsupported layer type Plain "
        f"(a custom layer: list the weights to compress in get_prunable_weights()). To {action} it, give a custom "
        "layer a get_prunable_weights() method returning the variables to compress (tfmot's PrunableLayer "
        "interface, e.g. `def get_prunable_weights(self): return [self.w]`). To leave it dense on purpose, name "
        f"the layers to {action} with layers=[...] (no warning then). The returned model's compression_report "
        "lists every layer and why.")
    assert [w.filename for w in caught if str(w.message) == said[0]] == [__file__]  # the user's line
    assert [e["layer"] for e in result.compression_report.skipped] == ["plain"]


def test_other_unsupported_layers_are_named_in_one_warning():
    inputs = keras.Input((5, 3))
    h = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(3), MinimalCell(3)]),
                         name="stacked")(inputs)
    h = Inner(name="inner")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(h))
    with pytest.warns(UserWarning) as caught:
        dc_keras.prune(model, S)
    said = ours(caught)
    assert len(said) == 1, said
    assert "dc_keras.prune(): 2 layers holding" in said[0] and "are left dense (not pruned)" in said[0]
    assert "'stacked' (RNN, 102 params, " in said[0]
    assert "unsupported recurrent cell StackedRNNCells of LSTMCell, MinimalCell" in said[0]
    assert "'inner' (Inner, 64 params, " in said[0] and "a subclassed model nested in this one" in said[0]
    assert "wrap a subclassed model's layers in its __init__ (self.fc = dc_keras.prune(" in said[0]


def test_the_tfmot_drop_in_refuses_every_layer_it_would_leave_dense():
    """tfmot refuses a layer it cannot compress; the drop-in refused only custom layers ("unsupported
    layer type"): a nested subclassed model or a stacked RNN cell passed prune_low_magnitude and
    cluster_weights silently, left dense (and dc_keras's own warning is off on the drop-in path)."""
    for make in (lambda h: keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(3), MinimalCell(3)]),
                                            name="odd")(h),
                 lambda h: Inner(name="odd")(h)):
        inputs = keras.Input((5, 3))
        model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(make(inputs)))
        with pytest.raises(ValueError, match=r"^prune_low_magnitude: layer\(s\) 'odd' \(.*cannot be pruned"):
            tfmot.sparsity.keras.prune_low_magnitude(model)
        with pytest.raises(ValueError, match=r"^cluster_weights: layer\(s\) 'odd' \(.*cannot be clustered"):
            tfmot.clustering.keras.cluster_weights(
                model, number_of_clusters=8,
                cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR)


def test_layers_left_dense_by_design_do_not_warn():
    inputs = keras.Input((16,))
    h = keras.layers.LayerNormalization(name="ln")(inputs)
    h = Offset(name="offset")(h)                               # vectors only
    h = OptOut(name="opt_out")(h)                              # get_prunable_weights() returns []
    h = Plain(name="frozen", trainable=False)(h)               # frozen, left frozen
    h = keras.layers.Dense(8, name="fc")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="tiny")(h))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruned = dc_keras.prune(model, S, min_params=20)        # 'tiny' (16 weights): too small
        dc_keras.cluster(model)
        dc_keras.prune(mostly_custom(), S, layers=["fc"])      # the user chose the layers
        dc_keras.cluster(mostly_custom(), layers=[keras.layers.Dense])
        with pytest.raises(ValueError, match="'plain' \\(Plain: unsupported layer type Plain .*cannot be pruned"):  # drop-in
            tfmot.sparsity.keras.prune_low_magnitude(mostly_custom())
    assert {e["layer"] for e in pruned.compression_report.skipped} == {"ln", "offset", "opt_out", "frozen", "bn", "tiny"}


# -- 2. sparsity_m_by_n counts the weights kept -----------------------------------------------------------

def test_m_by_n_against_the_schedules_target_warns_once_in_dc_keras_terms():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    with pytest.warns(UserWarning) as caught:
        dc_keras.prune(model, ConstantSparsity(0.5, 0), sparsity_m_by_n=(1, 4))
    said = ours(caught)
    assert said == [
        "dc_keras.prune(): sparsity_m_by_n=(1, 4) keeps 1 of every 4 weights (sparsity 0.75), but the schedule's "
        "target sparsity is 0.5: with sparsity_m_by_n the pattern alone sets the sparsity and the schedule only "
        "decides when it is applied (from its first update at a sparsity above 0), so the pruned layers end at "
        "sparsity 0.75. dc_keras's m counts the weights KEPT; tfmot's sparsity_m_by_n (and dc_keras.compat.tfmot's) "
        "counts the zeros: tfmot's (m, n) is dc_keras's (n - m, n). For sparsity 0.5 in groups of 4 pass "
        "sparsity_m_by_n=(2, 4). If you meant tfmot's (1, 4) (1 zero in every 4: sparsity 0.25), pass "
        "sparsity_m_by_n=(3, 4). A schedule whose target is 0.75 says what happens and silences this warning."]
    # ours points at this line (on JAX, Keras warns first from its variables.py: not ours)
    assert [w.filename for w in caught if str(w.message).startswith("dc_keras.prune(): sparsity_m_by_n")] == [__file__]
    with pytest.warns(UserWarning, match=r"the schedules' target sparsities are 0\.25, 0\.8: .*end at sparsity 0\.5\. dc_keras's m"):
        dc_keras.prune(  # one schedule per layer: those that differ, named once
            keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(4, name="b"),
                              keras.layers.Dense(4, name="c")]),
            layers={"a": ConstantSparsity(0.25, 0), "b": PolynomialDecay(0.0, 0.8, 0, 10, frequency=1), "c": ConstantSparsity(0.5, 0)},
            sparsity_m_by_n=(2, 4))
    with pytest.warns(UserWarning, match=r"target sparsity is 0\.8: .*end at sparsity 0\.5\. dc_keras's m"):
        dc_keras.prune(keras.layers.Dense(4), PolynomialDecay(0.0, 0.8, 0, 10, frequency=1), sparsity_m_by_n=(2, 4))


def test_m_by_n_that_matches_the_target_and_the_tfmot_drop_in_stay_silent():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dc_keras.prune(model, ConstantSparsity(0.5, 0), sparsity_m_by_n=(2, 4))
        dc_keras.prune(model, ConstantSparsity(0.75, 0), sparsity_m_by_n=(1, 4))
        dc_keras.prune(model, PolynomialDecay(0.0, 0.25, 0, 10, frequency=1), sparsity_m_by_n=(3, 4))
        # the drop-in speaks tfmot's meaning (1 zero of 4) and, as tfmot, ignores the schedule's sparsity
        pruned = tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0), sparsity_m_by_n=(1, 4))
    assert pruned.get_layer("fc").sparsity_m_by_n == (3, 4)


def test_the_prune_docstring_says_m_counts_the_weights_kept():
    doc = " ".join(inspect.getdoc(dc_keras.prune).split())
    assert "``m`` is the number of weights KEPT of every ``n`` consecutive weights" in doc
    assert "``(1, 4)`` keeps 1 of every 4 (sparsity 0.75)" in doc and "tfmot's ``(m, n)`` is this ``(n - m, n)``" in doc


# -- 3. cluster(model, 16): bits or clusters ------------------------------------------------------------

def mlp():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="fc1"), keras.layers.Dense(3, name="fc2")])


def test_a_cluster_count_given_as_bits_names_clusters():
    with pytest.raises(ValueError) as info:
        dc_keras.cluster(mlp(), bits=16)  # tfmot's cluster_weights(model, 16), spelt with bits=
    assert str(info.value) == (
        "`bits` must be an integer between 1 and 12 (2**bits shared values), got 16. Is 16 a number of clusters "
        "(tfmot's cluster_weights(model, number_of_clusters))? `bits` is the index width: for 16 clusters pass "
        "clusters=16 (or bits=4). The packed format holds at most 4096 shared values per tensor (docs/FORMAT.md §2).")
    with pytest.raises(ValueError, match=r"for 24 clusters pass clusters=24 \(or bits=5: 32 shared values\)"):
        dc_keras.cluster(mlp(), bits=24)
    for not_a_count in (0, 5000, 2.5):
        with pytest.raises(ValueError, match="between 1 and 12") as info:
            dc_keras.cluster(mlp(), bits=not_a_count)
        assert "clusters=" not in str(info.value)


def test_cluster_takes_only_the_model_by_position(tmp_path):
    """``cluster(model, 8)`` (tfmot's ``cluster_weights(model, 8)``: 8 clusters) silently gave 2**8 = 256
    shared values per kernel: ``bits`` was the second positional parameter. Every argument after the
    model (ClusterWrapper: the layer) is keyword-only; a positional one is a TypeError naming both
    readings of an int, and each value by its name."""
    with pytest.raises(TypeError) as info:
        dc_keras.cluster(mlp(), 8)
    assert str(info.value) == (
        "cluster() takes only the model (or layer) by position, got 1 more argument (8): pass it by name, "
        "cluster(..., bits=8) (bits=8: 2**8 = 256 shared values per weight), or clusters=8 for 8 shared values "
        "(tfmot's cluster_weights(model, number_of_clusters=8)).")
    with pytest.raises(TypeError) as info:  # not a valid bits: the count reading only
        dc_keras.cluster(mlp(), 16)
    assert str(info.value).endswith(
        "pass it by name, cluster(..., clusters=16) for 16 shared values (tfmot's cluster_weights(model, "
        "number_of_clusters=16)); `bits` is the index width, 1..12.")
    with pytest.raises(TypeError, match=r"got 3 more arguments \(5, 'density', False\): pass them by name, "
                                        r"cluster\(\.\.\., bits=5, init='density', preserve_sparsity=False\)"):
        dc_keras.cluster(mlp(), 5, "density", False)
    with pytest.raises(TypeError, match=r"\(\{'fc1': 4\}\): pass it by name, cluster\(\.\.\., bits=\{'fc1': 4\}\)\.$"):
        dc_keras.cluster(mlp(), {"fc1": 4})
    with pytest.raises(TypeError, match=r"^cluster\(\) takes only the model \(or layer\) by position"):
        dc_keras.cluster(keras.layers.Dense(3), 4)
    with pytest.raises(TypeError, match=r"^ClusterWrapper\(\) takes only the layer by position, got 1 more argument "
                                        r"\(4\): pass it by name, ClusterWrapper\(\.\.\., bits=4\) \(bits=4: 2\*\*4 = 16 "):
        ClusterWrapper(keras.layers.Dense(3), 4)
    # the signatures say so (help()); the private parameters of the tfmot drop-in are not named in errors
    for fn, first in ((dc_keras.cluster, "model_or_layer"), (ClusterWrapper.__init__, "layer")):
        params = inspect.signature(fn).parameters
        assert [p.name for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD] in ([first], ["self", first])
        assert params["bits"].kind is inspect.Parameter.KEYWORD_ONLY
    # by name, as documented: unchanged, and the wrappers still save and load without custom_objects
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    clustered = dc_keras.cluster(mlp(), bits=2)
    assert (clustered.get_layer("fc1").bits, clustered.get_layer("fc1").clusters) == (2, 4)
    assert len(np.unique(dc_keras.strip(clustered).get_layer("fc1").kernel.numpy())) <= 4
    clustered.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert isinstance(loaded.get_layer("fc1"), ClusterWrapper) and loaded.get_layer("fc1").bits == 2
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), clustered.predict(x, verbose=0))


def test_pipeline_training_steps_take_their_settings_by_name():
    """``pipeline.cluster_finetune(model, x, y, 8)`` silently gave bits=8 (256 shared values), where
    ``dc_keras.cluster(model, 8)`` is refused for its two readings (fd7f64e). The training steps take
    their data and required arguments by position (model, x, y; epochs; sparsity) and their settings
    by name, with cluster()'s error (the int's two readings only where the setting is ``bits``)."""
    from dc_keras import pipeline

    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    y = np.arange(16) % 3
    with pytest.raises(TypeError) as info:
        pipeline.cluster_finetune(mlp(), x, y, 8)
    assert str(info.value) == (
        "cluster_finetune() takes only the model, x and y by position, got 1 more argument (8): pass it by name, "
        "cluster_finetune(..., bits=8) (bits=8: 2**8 = 256 shared values per weight), or clusters=8 for 8 shared "
        "values (tfmot's cluster_weights(model, number_of_clusters=8)).")
    with pytest.raises(TypeError, match=r"got 2 more arguments \(5, 0\): pass them by name, "
                                        r"cluster_finetune\(\.\.\., bits=5, epochs=0\) \(bits=5: "):
        pipeline.cluster_finetune(mlp(), x, y, 5, 0)
    with pytest.raises(TypeError) as info:
        pipeline.train_baseline(mlp(), x, y, 1, 0.01, 8)
    assert str(info.value) == ("train_baseline() takes only the model, x, y and epochs by position, got 2 more "
                               "arguments (0.01, 8): pass them by name, train_baseline(..., lr=0.01, batch_size=8).")
    with pytest.raises(TypeError, match=r"^prune_retrain\(\) takes only the model, x, y, sparsity and epochs by "
                                        r"position, got 1 more argument \(0\.5\): pass it by name, "
                                        r"prune_retrain\(\.\.\., ramp_fraction=0\.5\)\.$"):
        pipeline.prune_retrain(mlp(), x, y, 0.5, 1, 0.5)
    for fn, positional in ((pipeline.train_baseline, ["model", "x", "y", "epochs"]),
                           (pipeline.prune_retrain, ["model", "x", "y", "sparsity", "epochs"]),
                           (pipeline.cluster_finetune, ["model", "x", "y"])):
        params = inspect.signature(fn).parameters.values()
        assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == positional, fn
    # as the README and the module docstring call them: unchanged
    kw = {"batch_size": 8, "max_shift": 0, "verbose": 0}
    base = pipeline.train_baseline(mlp(), x, y, epochs=1, **kw)
    pruned = pipeline.prune_retrain(base, x, y, 0.5, epochs=1, **kw)
    shared = pipeline.cluster_finetune(pruned, x, y, bits=2, epochs=1, **kw)
    assert len(np.unique(shared.get_layer("fc1").kernel.numpy())) <= 5  # 4 shared values and the zero


def test_bits_and_clusters_together_are_refused():
    message = (r"Give either `bits` or `clusters`, not both: got bits=5 and clusters=16\. `clusters` is the number "
               r"of shared values \(any count up to 4096\), `bits` its index width \(2\*\*bits shared values\): drop "
               r"one of them\.")
    with pytest.raises(ValueError, match=message):
        dc_keras.cluster(mlp(), bits=5, clusters=16)  # clusters won silently
    with pytest.raises(ValueError, match="Give either `bits` or `clusters`"):
        dc_keras.cluster(mlp(), bits={"fc1": 4}, clusters=16)
    with pytest.raises(ValueError, match="Give either `bits` or `clusters`"):
        ClusterWrapper(keras.layers.Dense(3), bits=4, clusters=16)
    # the defaults are still 5 (signatures, help()); clusters alone, bits=None with clusters and the drop-in work
    assert inspect.signature(dc_keras.cluster).parameters["bits"].default == 5
    assert repr(inspect.signature(ClusterWrapper).parameters["bits"].default) == "5"
    clustered = dc_keras.cluster(mlp(), clusters=6)
    assert (clustered.get_layer("fc1").clusters, clustered.get_layer("fc1").bits) == (6, 3)
    assert dc_keras.cluster(mlp(), bits=None, clusters=6).get_layer("fc2").clusters == 6
    assert dc_keras.cluster(keras.layers.Dense(3), clusters=16).clusters == 16
    assert tfmot.clustering.keras.cluster_weights(mlp(), 16).get_layer("fc1").clusters == 16
    again = ClusterWrapper.from_config(clustered.get_layer("fc1").get_config())  # its config holds both
    assert (again.clusters, again.bits) == (6, 3)


def test_a_clusters_model_saves_and_loads(tmp_path):
    clustered = dc_keras.cluster(mlp(), clusters=6)
    clustered.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert loaded.get_layer("fc1").clusters == 6
    x = np.ones((2, 8), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), clustered.predict(x, verbose=0))


# -- 4. a sensitivity sweep that cannot rank the layers ------------------------------------------------

def test_an_untrained_models_sweep_warns_that_the_suggestions_are_meaningless():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 8)).astype("float32"), rng.integers(0, 4, 200)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="a", kernel_initializer="zeros"),
                              keras.layers.Dense(4, name="b")])  # predicts one class whatever the input
    report = dc_keras.sensitivity(model, (x, y), sparsities=[0.5, 0.9])
    chance = float(np.max(np.bincount(y)) / y.size)
    assert report["chance"] == report["baseline"] == pytest.approx(chance)
    with pytest.warns(UserWarning) as caught:
        assert dc_keras.suggest_sparsity(report) == {"a": 0.9, "b": 0.9}
    assert [str(w.message) for w in caught] == [
        f"suggest_sparsity(): the suggestions are meaningless: the model's baseline accuracy {chance:.4g} is no "
        f"better than chance (always predicting the most frequent class gives {chance:.4g}) and the accuracy stays "
        f"at the baseline {chance:.4g} at every swept sparsity (0.5, 0.9) of every layer, so every layer gets the "
        "highest sparsity swept. Train the model first, then sweep it again with dc_keras.sensitivity() on "
        "validation data."]
    assert caught[0].filename == __file__
    bits = dc_keras.sensitivity(model, (x, y), bits=[2, 4], metric="error")
    with pytest.warns(UserWarning, match=r"suggest_bits\(\): the suggestions are meaningless: the model's baseline "
                                         r"error .* at every swept bit width \(2, 4\) of every layer, so every layer "
                                         r"gets the fewest bits swept"):
        dc_keras.suggest_bits(bits, budget=0.01)


def test_a_flat_or_chance_level_report_warns_and_a_useful_one_does_not():
    flat = {"metric": "accuracy", "higher_is_better": True, "baseline": 0.97, "mode": "sparsity",
            "values": [0.5], "layers": {"a": [0.97], "b": [0.97]}}  # (no "chance": a report of an older version)
    with pytest.warns(UserWarning, match=r"stays at the baseline 0\.97 .*If the model is trained, the sweep stopped "
                                         r"before any layer suffers: sweep higher sparsities"):
        dc_keras.suggest_sparsity(flat)
    noisy = dict(flat, baseline=0.24, chance=0.26, values=[0.5, 0.9], layers={"a": [0.25, 0.2], "b": [0.24, 0.26]})
    with pytest.warns(UserWarning, match=r"no better than chance .* gives 0\.26\), so the differences between the "
                                         r"layers are noise\. Train the model first"):
        dc_keras.suggest_sparsity(noisy)
    useful = dict(flat, chance=0.1, values=[0.5, 0.9], layers={"a": [0.97, 0.95], "b": [0.97, 0.97]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert dc_keras.suggest_sparsity(useful, max_drop=0.01) == {"a": 0.5, "b": 0.9}
        assert dc_keras.suggest_sparsity(dict(useful, chance=None), budget=0.0) == {"a": 0.5, "b": 0.9}
