"""Per-layer sensitivity sweep: dc_keras.sensitivity / suggest_sparsity / plot_sensitivity (+ suggest_bits)."""
import os

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.train import suggest_bits

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 8)).astype("float32")
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("int64")


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(32, activation="relu", name="wide")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(X, Y, epochs=30, batch_size=50, verbose=0)
    return model


def test_sweep_restores_weights_and_degrades(trained):
    before = [w.copy() for w in trained.get_weights()]
    report = dc_keras.sensitivity(trained, (X, Y), sparsities=[0.0, 0.5, 0.9, 0.99])
    for a, b in zip(before, trained.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert report["mode"] == "sparsity" and report["metric"] == "accuracy" and report["higher_is_better"]
    assert set(report["layers"]) == {"wide", "head"}
    assert report["baseline"] > 0.9
    for results in report["layers"].values():
        assert results[0] == pytest.approx(report["baseline"])  # 0 % pruned = unchanged
        assert results[-1] < report["baseline"]  # 99 % pruned hurts
    # the same numbers by hand for one point
    k = trained.get_layer("wide").kernel.numpy()
    t = np.sort(np.abs(k).ravel())[int(0.9 * k.size) - 1]
    trained.get_layer("wide").kernel.assign(np.where(np.abs(k) > t, k, 0))
    acc = float(np.mean(np.argmax(trained.predict(X, verbose=0), -1) == Y))
    trained.get_layer("wide").kernel.assign(k)
    assert report["layers"]["wide"][2] == pytest.approx(acc)


def test_suggest_sparsity_and_bits():
    report = {"metric": "accuracy", "higher_is_better": True, "baseline": 0.90, "mode": "sparsity",
              "values": [0.5, 0.8, 0.9], "layers": {"a": [0.90, 0.895, 0.80], "b": [0.85, 0.80, 0.70]}}
    assert dc_keras.suggest_sparsity(report, max_drop=0.01) == {"a": 0.8, "b": 0.0}
    assert dc_keras.suggest_sparsity(report, max_drop=0.25) == {"a": 0.9, "b": 0.9}
    lower = dict(report, metric="error", higher_is_better=False, baseline=0.1,
                 layers={"a": [0.1, 0.105, 0.2]})
    assert dc_keras.suggest_sparsity(lower, max_drop=0.01) == {"a": 0.8}
    bits = {"metric": "accuracy", "higher_is_better": True, "baseline": 0.9, "mode": "bits",
            "values": [2, 3, 4, 5], "layers": {"a": [0.5, 0.89, 0.9, 0.9], "b": [0.1, 0.2, 0.3, 0.4]}}
    assert suggest_bits(bits, max_drop=0.02) == {"a": 3, "b": 5}
    with pytest.raises(ValueError, match="sensitivity"):
        dc_keras.suggest_sparsity(bits)
    with pytest.raises(ValueError, match="max_drop"):
        dc_keras.suggest_sparsity(report, max_drop=-1)


def test_suggest_from_a_budget_spends_it_where_it_saves_most():
    # "big" has 100x the weights of "small": a total budget of 1 point goes to big first
    report = {"metric": "error", "higher_is_better": False, "baseline": 0.10, "mode": "sparsity",
              "values": [0.5, 0.8, 0.9], "params": {"big": 10000, "small": 100},
              "layers": {"big": [0.100, 0.105, 0.130], "small": [0.101, 0.104, 0.106]}}
    assert dc_keras.suggest_sparsity(report, budget=0.01) == {"big": 0.8, "small": 0.8}
    assert dc_keras.suggest_sparsity(report, budget=0.0) == {"big": 0.5, "small": 0.0}
    assert dc_keras.suggest_sparsity(report, budget=1.0) == {"big": 0.9, "small": 0.9}
    bits = {"metric": "error", "higher_is_better": False, "baseline": 0.10, "mode": "bits",
            "values": [2, 3, 4, 5], "params": {"big": 10000, "small": 100},
            "layers": {"big": [0.20, 0.104, 0.101, 0.100], "small": [0.103, 0.101, 0.100, 0.100]}}
    assert dc_keras.suggest_bits(bits, budget=0.005) == {"big": 3, "small": 3}
    assert dc_keras.suggest_bits(bits, budget=0.0) == {"big": 5, "small": 4}
    assert dc_keras.suggest_bits(bits, budget=0.2) == {"big": 2, "small": 2}
    with pytest.raises(ValueError, match="budget"):
        dc_keras.suggest_bits(bits, budget=-0.1)


def test_bits_report_counts_kept_weights(trained):
    report = dc_keras.sensitivity(trained, (X, Y), bits=[2, 6], metric="error")
    assert report["params"] == {"wide": int(np.count_nonzero(trained.get_layer("wide").kernel.numpy())), "head": 64}
    assert set(dc_keras.suggest_bits(report, budget=0.05)) == {"wide", "head"}


def test_bits_sweep_and_plot(trained, tmp_path):
    report = dc_keras.sensitivity(trained, (X, Y), bits=[1, 4], layers=["wide"], metric="error")
    assert report["mode"] == "bits" and list(report["layers"]) == ["wide"]
    assert report["layers"]["wide"][1] <= report["layers"]["wide"][0] + 0.02
    path = tmp_path / "sens.png"
    assert dc_keras.plot_sensitivity(report, str(path)) == str(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["sens.png"]  # no temporary left behind


def test_bad_arguments(trained):
    with pytest.raises(ValueError, match="sparsities"):
        dc_keras.sensitivity(trained, (X, Y), sparsities=[1.0])
    with pytest.raises(ValueError, match="metric"):
        dc_keras.sensitivity(trained, (X, Y), metric="f1")
    with pytest.raises(ValueError, match="Unknown layer"):
        dc_keras.sensitivity(trained, (X, Y), layers=["nope"])
    with pytest.raises(ValueError, match="strip"):
        dc_keras.sensitivity(dc_keras.prune(trained, dc_keras.schedules.ConstantSparsity(0.5, 0)), (X, Y))
    with pytest.raises(ValueError, match="data"):
        dc_keras.sensitivity(trained, 5)


def test_sweep_values_are_checked_not_converted(trained):
    """bits=4 / sparsities=0.5 raised "'int' object is not iterable", bits=["a"] a raw int() error,
    bits=[1.5, 3] was silently swept as [1, 3], and suggest_sparsity() on a bits report only said
    it expected another mode. One value now sweeps that value; a bad one is named; the wrong
    suggest_* names the right one; x alone as `data` is named."""
    assert dc_keras.sensitivity(trained, (X, Y), bits=4)["values"] == [4]
    assert dc_keras.sensitivity(trained, (X, Y), bits=np.int64(3))["values"] == [3]
    assert dc_keras.sensitivity(trained, (X, Y), sparsities=0.5)["values"] == [0.5]
    for bad, shown in (([1.5, 3], "1.5"), (["a"], "'a'"), ([True], "True"), ([0, 2], "0"), ("4", None), ([], None)):
        with pytest.raises(ValueError) as info:
            dc_keras.sensitivity(trained, (X, Y), bits=bad)
        assert "`bits` must be a" in str(info.value) and repr(bad) in str(info.value), str(info.value)
        assert shown is None or f": {shown} is not one" in str(info.value), str(info.value)
    with pytest.raises(ValueError, match=r"`sparsities` must be .*got \[0\.5, '0\.9'\]: '0\.9' is not one"):
        dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, "0.9"])
    with pytest.raises(ValueError, match="either sparsities .* or bits .*got both"):
        dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5], bits=[2])
    with pytest.raises(ValueError, match=r"one array of shape \(200, 8\) \(x alone\?\): pass \(x_val, y_val\)"):
        dc_keras.sensitivity(trained, X)
    bits_report = dc_keras.sensitivity(trained, (X, Y), bits=[2, 4])
    with pytest.raises(ValueError, match=r"this one is from sensitivity\(\.\.\., bits=\[\.\.\.\]\).*dc_keras\.suggest_bits"):
        dc_keras.suggest_sparsity(bits_report)
    with pytest.raises(ValueError, match=r"from sensitivity\(\.\.\., sparsities=\[\.\.\.\]\).*dc_keras\.suggest_sparsity"):
        suggest_bits(dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5]))


def _batches(n=4, size=50):
    return ((X[i * size:(i + 1) * size], Y[i * size:(i + 1) * size]) for i in range(n))


def test_a_list_of_two_batches_is_read_as_batches(trained):
    """[(x1, y1), (x2, y2)] was read as one (x, y) pair whose x was (x1, y1), and failed with numpy's
    "inhomogeneous shape": for a model with one input a list of two batches is two batches."""
    two = list(_batches(n=2, size=100))
    assert dc_keras.sensitivity(trained, two, sparsities=[0.5]) == \
        dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5], batch_size=100)


def test_iterators_are_read_once_with_steps_and_endless_data_is_refused(trained):
    """A generator of (x, y) batches raised "`data` is empty." (read again for every measurement,
    exhausted after the first) and an endless one never returned. It is now read once (its first
    `steps` batches kept); without `steps` it is refused, as is a tf.data.Dataset repeated forever."""
    import tensorflow as tf

    expected = dc_keras.sensitivity(trained, list(_batches()), sparsities=[0.5, 0.9])
    assert dc_keras.sensitivity(trained, _batches(), sparsities=[0.5, 0.9], steps=4) == expected

    def endless():
        while True:
            yield from _batches()

    assert dc_keras.sensitivity(trained, endless(), sparsities=[0.5, 0.9], steps=4) == expected
    assert dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5, 0.9], batch_size=50, steps=4) == expected
    assert dc_keras.sensitivity(trained, (X, Y), sparsities=[0.5], batch_size=50, steps=2)["baseline"] == \
        dc_keras.sensitivity(trained, (X[:100], Y[:100]), sparsities=[0.5])["baseline"]
    with pytest.raises(ValueError, match=r"`data` is an iterator \(generator\), which can be read only once .* "
                                         r"measures the model 5 times .*: pass steps=N to read its first N batches"):
        dc_keras.sensitivity(trained, endless(), sparsities=[0.5, 0.9])
    with pytest.warns(UserWarning, match="ended after 4 batches, fewer than steps=10"):
        assert dc_keras.sensitivity(trained, _batches(), sparsities=[0.5, 0.9], steps=10) == expected
    repeated = tf.data.Dataset.from_tensor_slices((X, Y)).batch(50).repeat()
    with pytest.raises(ValueError, match=r"`data` \(.*\) never ends .*: pass steps=N"):
        dc_keras.sensitivity(trained, repeated, sparsities=[0.5, 0.9])
    assert dc_keras.sensitivity(trained, repeated, sparsities=[0.5, 0.9], steps=4) == expected

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return X[50 * i:50 * i + 50], Y[50 * i:50 * i + 50]

    assert dc_keras.sensitivity(trained, Batches(), sparsities=[0.5, 0.9]) == expected
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="`steps` must be None or a positive whole number of batches"):
            dc_keras.sensitivity(trained, _batches(), steps=bad)


def test_models_with_several_outputs_take_a_callable_metric():
    """sensitivity() on a two-output model failed with numpy's "inhomogeneous shape" error, also with
    a callable metric written for the two outputs. The callable now gets both outputs; the built-in
    metrics, which score one, are refused with what to pass."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8, name="h")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2, activation="softmax", name="o1")(h),
                                 keras.layers.Dense(3, activation="softmax", name="o2")(h)])
    y2 = (X[:, 2] > 0).astype("int64") + (X[:, 3] > 0)
    seen = []

    def both(y_true, y_pred):
        seen.append((len(y_true), [p.shape for p in y_pred]))
        return float(np.mean(np.argmax(y_pred[0], -1) == y_true[0]) + np.mean(np.argmax(y_pred[1], -1) == y_true[1]))

    report = dc_keras.sensitivity(model, (X, [Y, y2]), sparsities=[0.0, 0.9], metric=both)
    assert seen[0] == (2, [(200, 2), (200, 3)])
    p1, p2 = model.predict(X, verbose=0)
    assert report["baseline"] == pytest.approx(np.mean(np.argmax(p1, -1) == Y) + np.mean(np.argmax(p2, -1) == y2))
    assert report["layers"]["h"][0] == pytest.approx(report["baseline"]) and report["chance"] is None
    batched = [(X[i:i + 50], [Y[i:i + 50], y2[i:i + 50]]) for i in range(0, 200, 50)]
    assert dc_keras.sensitivity(model, batched, sparsities=[0.0, 0.9], metric=both)["layers"] == report["layers"]
    for metric in ("accuracy", "error"):
        with pytest.raises(ValueError, match=rf"the model has 2 outputs and metric='{metric}' scores one\. Pass a "
                                             r"metric=callable\(y_true, y_pred\)"):
            dc_keras.sensitivity(model, (X, [Y, y2]), metric=metric)


def test_one_score_per_sample_takes_a_callable_metric():
    """A binary classifier with one sigmoid unit: 'accuracy' took the argmax of one score, always
    class 0, so the baseline and every swept value were the share of label 0 (0.51 here for a model
    Keras scores at > 0.9) and suggest_sparsity() warned that the model was untrained. The built-in
    metrics are now refused before the sweep, naming the thresholding callable; that callable gives
    Keras's own binary accuracy."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu", name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="out")(h))
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy", metrics=["accuracy"])
    model.fit(X, Y, epochs=30, batch_size=50, verbose=0)
    keras_accuracy = model.evaluate(X, Y, verbose=0)[1]
    assert keras_accuracy > 0.9 and np.mean(Y == 0) < 0.6
    for metric in ("accuracy", "error"):
        with pytest.raises(ValueError, match=rf"one score per sample \(predictions of shape \(200, 1\).*metric="
                                             rf"'{metric}' takes the class of the highest score.*metric=lambda"):
            dc_keras.sensitivity(model, (X, Y), sparsities=[0.5], metric=metric)

    def binary(y_true, y_pred):
        return float(np.mean((y_pred.reshape(-1) > 0.5) == y_true.reshape(-1)))

    report = dc_keras.sensitivity(model, (X, Y), sparsities=[0.0, 0.99], metric=binary)
    assert report["baseline"] == pytest.approx(keras_accuracy)
    assert report["layers"]["h"][0] == pytest.approx(keras_accuracy)


def test_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    """plot_sensitivity called matplotlib.use("Agg"): in a notebook (inline backend) or a script
    with a backend of its own, the caller's later plots went to Agg, and pyplot kept the chart's
    figure open. It now draws on a Figure of its own (as inspect's Report.plot); the chart is
    written as before."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("matplotlib")
    report = {"mode": "bits", "metric": "error", "baseline": 0.02, "values": [2, 3, 4],
              "layers": {"fc1": [0.3, 0.05, 0.021], "fc2": [0.1, 0.03, 0.02]}}
    script = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        import dc_keras
        plt.figure()
        dc_keras.plot_sensitivity({report!r}, {str(tmp_path / "s.png")!r})
        print(matplotlib.get_backend(), plt.get_fignums())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "svg [1]", out.stdout
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
