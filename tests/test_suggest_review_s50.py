"""Review of sensitivity / suggest_sparsity / suggest_bits as a user applies them to his own model
(2026-12-06): each test failed on the code before its fix."""
import logging
import math

import keras
import numpy as np
import pytest

import dc_keras

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 8)).astype("float32")
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("int64")


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(32, activation="relu", name="wide")(inputs)
    outputs = keras.layers.Dense(2, name="head")(h)  # logits
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.02), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=20, batch_size=50, verbose=0)
    return model


REPORT = {"metric": "accuracy", "higher_is_better": True, "baseline": 0.9, "mode": "sparsity",
          "values": [0.5, 0.8, 0.9], "layers": {"a": [0.9, 0.89, 0.7], "b": [0.88, 0.8, 0.6]},
          "params": {"a": 1000, "b": 100}, "chance": 0.5}
BITS = dict(REPORT, mode="bits", values=[2, 3, 4])


@pytest.mark.parametrize("suggest, report", [(dc_keras.suggest_sparsity, REPORT), (dc_keras.suggest_bits, BITS)])
def test_a_nan_budget_or_max_drop_is_refused(suggest, report):
    # before: budget=nan gave every layer the most compression swept ({"a": 0.9, "b": 0.9}), max_drop=nan none
    with pytest.raises(ValueError, match=r"`budget` must be None or a non-negative number .*got nan"):
        suggest(report, budget=math.nan)
    with pytest.raises(ValueError, match=r"`max_drop` must be a non-negative number .*got nan"):
        suggest(report, max_drop=math.nan)


def test_a_numpy_float_budget_is_a_number():
    # before: "`budget` must be None or a non-negative number, got np.float32(0.01)" (it is one)
    assert dc_keras.suggest_sparsity(REPORT, budget=np.float32(0.015)) == \
        dc_keras.suggest_sparsity(REPORT, budget=0.015) == {"a": 0.8, "b": 0.0}
    assert dc_keras.suggest_bits(BITS, max_drop=np.float32(0.011)) == dc_keras.suggest_bits(BITS, max_drop=0.011)


@pytest.mark.parametrize("arg", ["budget", "max_drop"])
def test_a_percent_for_accuracy_is_refused_with_the_fraction(arg):
    # before: budget=5 (meant as 5 %) returned {"a": 0.9, "b": 0.9}: an accuracy cannot drop by more than 1
    with pytest.raises(ValueError, match=rf"`{arg}` is a drop of the accuracy, a fraction in \[0, 1\].*{arg}=0.05 "
                                         r"for 5 %"):
        dc_keras.suggest_sparsity(REPORT, **{arg: 5})
    with pytest.raises(ValueError, match="drop of the error"):
        dc_keras.suggest_bits(dict(BITS, metric="error", higher_is_better=False, baseline=0.1), **{arg: 5})
    custom = dict(REPORT, metric="loss", higher_is_better=False, baseline=3.0, chance=None,
                  layers={"a": [3.0, 4.0, 9.0], "b": [3.5, 6.0, 8.0]})
    assert dc_keras.suggest_sparsity(custom, **{arg: 1.5}) == {"a": 0.8, "b": 0.5}  # a callable's scale is its own
    assert dc_keras.suggest_sparsity(REPORT, **{arg: 1}) == {"a": 0.9, "b": 0.9}  # 1: any drop, as asked


@pytest.mark.parametrize("labels", [Y[:100], np.eye(3)[Y]], ids=["too-few", "one-hot-of-3-classes"])
def test_labels_that_are_not_one_per_prediction_are_named(trained, labels):
    # before: numpy's "operands could not be broadcast together with shapes (200,) (100,)"
    with pytest.raises(ValueError, match=r"labels of `data` \(shape \(\d+,( 3)?\)\) are not one per prediction "
                                         r"\(.*\(200, 2\)\).*integer classes \(shape \(200,\)\) or one-hot rows"):
        dc_keras.sensitivity(trained, (X, labels), sparsities=[0.5])


def test_one_hot_and_column_labels_score_as_integer_labels(trained):
    want = dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, 0.9])
    assert dc_keras.sensitivity(trained, (X, np.eye(2)[Y]), sparsities=[0.5, 0.9]) == want
    assert dc_keras.sensitivity(trained, (X, Y[:, None]), sparsities=[0.5, 0.9]) == want


def test_an_unbuilt_model_is_named_as_unbuilt():
    # before: "Model 'sequential' has no layer that can be pruned (nothing prunable). Supported: Dense, ..."
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"model '.*' is not built, so it has no weights yet: sweep a trained model"):
        dc_keras.sensitivity(model, (X, Y))


def test_frozen_layers_are_reported_and_include_frozen_sweeps_them(trained):
    # before: a frozen layer was left out of the report without a word, and layers=["wide"] said "pass
    # include_frozen=True", which sensitivity() did not take (TypeError)
    before = [w.copy() for w in trained.get_weights()]
    trained.get_layer("wide").trainable = False
    try:
        report = dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, 0.9])
        assert list(report["layers"]) == ["head"]
        assert report["skipped"] == {"wide": "frozen (trainable=False); pass include_frozen=True to compress it"}
        both = dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, 0.9], include_frozen=True)
        assert list(both["layers"]) == ["wide", "head"] and both["skipped"] == {}
        assert both["layers"]["head"] == report["layers"]["head"]
        only = dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, 0.9], layers=["wide"], include_frozen=True)
        assert only["layers"] == {"wide": both["layers"]["wide"]}
    finally:
        trained.get_layer("wide").trainable = True
    for a, b in zip(before, trained.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_sweep_logs_its_progress_layer_by_layer(trained, caplog):
    # before: nothing until the whole sweep returned (minutes for a large model)
    with caplog.at_level(logging.INFO, logger="dc_keras"):
        dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, 0.9])
    lines = [r.getMessage() for r in caplog.records if "dc_keras sensitivity" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("dc_keras sensitivity: layer 1/2 'wide' swept (2 sparsities), ") and "s left" in lines[0]
    assert lines[1].startswith("dc_keras sensitivity: layer 2/2 'head' swept (2 sparsities), ")


def test_layers_of_one_name_in_two_nested_models_are_swept_together():
    # before: the second "fc" overwrote the first in the report ("params": {"fc": 128}), so the target
    # prune(layers={"fc": ...}) applies to both came from one of them alone
    keras.utils.set_random_seed(0)

    def branch(name):
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc")], name=name)

    inputs = keras.Input((8,))
    merged = keras.layers.Concatenate()([branch("b1")(inputs), branch("b2")(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(merged))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=5, batch_size=50, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    report = dc_keras.sensitivity(model, (X, Y), sparsities=[0.9])
    assert list(report["layers"]) == ["fc", "head"] and report["params"] == {"fc": 256, "head": 64}
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    kernels = [model.get_layer(name).get_layer("fc").kernel for name in ("b1", "b2")]
    for k in kernels:  # both pruned at once, by hand
        w = k.numpy()
        k.assign(np.where(np.abs(w) > np.sort(np.abs(w).ravel())[int(0.9 * w.size) - 1], w, 0))
    both = float(np.mean(np.argmax(model.predict(X, batch_size=256, verbose=0), -1) == Y))
    assert report["layers"]["fc"] == [both]


def test_a_bits_sweep_folds_batchnorm_as_cluster_does():
    # before: the conv kernel was clustered without its BatchNormalization's per-channel scale, while
    # cluster() (fold_batchnorm=True) clusters the folded kernel: the sweep measured another model
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.Flatten()(keras.layers.ReLU()(h))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(h))
    bn = model.get_layer("bn1")
    bn.gamma.assign(np.array([0.05, 1.0, 8.0, 30.0], "float32"))
    bn.moving_variance.assign(np.array([4.0, 1.0, 0.5, 0.01], "float32"))
    x = np.random.default_rng(1).normal(size=(64, 6, 6, 1)).astype("float32")
    data = (x, np.zeros(64))

    def first(y_true, y_pred):
        return float(np.mean(y_pred[:, 0]))

    before = [w.copy() for w in model.get_weights()]
    report = dc_keras.sensitivity(model, data, bits=[1, 2], metric=first, layers=["c1"])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    folded = dc_keras.train.fold_batchnorm(model)
    assert report == dc_keras.sensitivity(folded, data, bits=[1, 2], metric=first, layers=["c1"])
    shared = dc_keras.strip(dc_keras.cluster(model, bits={"c1": 2}, layers=["c1"]))
    assert report["layers"]["c1"][1] == first(None, shared.predict(x, batch_size=256, verbose=0))


def test_a_nan_in_the_sweep_is_never_within_a_budget():
    # before: max(0.0, nan) is 0.0, so budget= took a value where the metric was NaN as free ({"a": 0.9});
    # max_drop= already left it out
    report = dict(REPORT, metric="f1", chance=None, layers={"a": [0.9, 0.895, float("nan")], "b": [0.9, 0.8, 0.6]})
    assert dc_keras.suggest_sparsity(report, budget=0.01) == dc_keras.suggest_sparsity(report, max_drop=0.01) == \
        {"a": 0.8, "b": 0.5}
    bits = dict(BITS, metric="f1", chance=None, layers={"a": [float("nan"), 0.9, 0.9], "b": [0.9, 0.9, 0.9]})
    assert dc_keras.suggest_bits(bits, budget=0.01)["a"] == 3


def test_suggest_sparsitys_targets_given_to_prune_as_they_are_say_how_to_wrap_them():
    # before: "`layers`['wide'] must be a dc_keras.schedules schedule, got 0.8." and no word of how
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="wide"), keras.layers.Dense(2, name="head")])
    targets = dc_keras.suggest_sparsity(REPORT | {"layers": {"wide": [0.9, 0.895, 0.7], "head": [0.8, 0.7, 0.6]}},
                                        max_drop=0.01)
    assert targets == {"wide": 0.8, "head": 0.0}
    with pytest.raises(ValueError, match=r"`layers`\['wide'\] must be a dc_keras.schedules schedule, got 0.8 \(a target "
                                         r"sparsity, e.g. from suggest_sparsity\(\): give each layer a schedule, .*"
                                         r"PolynomialDecay\(0.0, s, 0, end_step\) for name, s in targets.items\(\) if "
                                         r"s > 0\}, or pass the targets to dc_keras.pipeline.prune_retrain\("):
        dc_keras.prune(model, layers=targets)
    with pytest.raises(ValueError, match=r"got 0.9 \(a sparsity: wrap it in a schedule, e.g. "
                                         r"dc_keras.schedules.PolynomialDecay\(0.0, 0.9, 0, end_step\) or "
                                         r"ConstantSparsity\(0.9, 0\)\)\.$"):
        dc_keras.prune(model, 0.9)
    with pytest.raises(ValueError, match=r"got 'x'\.$"):  # not a sparsity: as before
        dc_keras.prune(model, "x")
    pruned = dc_keras.prune(model, layers={n: dc_keras.schedules.PolynomialDecay(0.0, s, 0, 300, frequency=10)
                                           for n, s in targets.items() if s > 0})
    assert [type(layer).__name__ for layer in pruned.layers] == ["PruneWrapper", "Dense"]


def test_a_regression_model_is_told_to_measure_its_error():
    # before: the one-score message spoke of a binary classifier only; a regression (one value per sample)
    # found no fix for its case. The metric it now names runs as written.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="wide"),
                              keras.layers.Dense(1, name="out")])
    target = (X[:, 0] - 0.5 * X[:, 1]).astype("float32")
    with pytest.raises(ValueError, match=r"A regression model \(one value per sample\) is measured by its error: "
                                         r"metric=lambda y_true, y_pred: .*higher_is_better=False\.$"):
        dc_keras.sensitivity(model, (X, target), sparsities=[0.5], metric="accuracy")
    report = dc_keras.sensitivity(
        model, (X, target), sparsities=[0.5, 0.9],
        metric=lambda y_true, y_pred: float(np.mean((y_pred.reshape(-1) - y_true.reshape(-1)) ** 2)),
        higher_is_better=False)
    assert not report["higher_is_better"] and set(report["layers"]) == {"wide", "out"}
    assert all(math.isfinite(v) for values in report["layers"].values() for v in values)
