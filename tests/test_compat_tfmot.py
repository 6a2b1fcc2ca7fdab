"""dc_keras.compat.tfmot (issue 16): tfmot's Keras pruning/clustering API on Keras 3.

The schedules, masks, clusters and layer registry are compared with tensorflow_model_optimization
itself: the module fixture ``tfmot_side`` computes tfmot's side of every comparison in one child
process with TF_USE_LEGACY_KERAS=1, as tfmot needs tf_keras (tests/_tfmot_side_child.py); each
test then only compares. Those comparisons (marked ``legacy`` and ``long``: the child takes ~100 s)
run in ``make test-long``; the API tests here, in ``make test``. The tutorials' code runs in
examples/04_tfmot_tutorials.ipynb (tests/test_notebooks.py).
"""
import json
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import dc_keras
import dc_keras.compat.tfmot as tfmot

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
RNG = np.random.default_rng(2)
X = RNG.normal(size=(64, 12)).astype("float32")
Y = RNG.integers(0, 3, size=64)


def mlp():
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, activation="relu", name="d1"),
                             keras.layers.Dense(3, name="out")])


def _compile(m, lr=0.01):
    m.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def test_every_name_is_there():
    for name in ("prune_low_magnitude", "PolynomialDecay", "ConstantSparsity", "UpdatePruningStep",
                 "PruningSummaries", "strip_pruning", "PrunableLayer", "prune_scope", "PruningSchedule"):
        assert hasattr(sparsity, name), name
    for name in ("cluster_weights", "CentroidInitialization", "strip_clustering", "cluster_scope", "ClusteringSummaries"):
        assert hasattr(clustering, name), name
    assert {"LINEAR", "RANDOM", "DENSITY_BASED", "KMEANS_PLUS_PLUS"} <= set(vars(clustering.CentroidInitialization))


CASES = [
    ("PolynomialDecay", dict(initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=844), [0, 1, 99, 100, 400, 800, 843]),
    ("PolynomialDecay", dict(initial_sparsity=0.2, final_sparsity=0.9, begin_step=10, end_step=70, power=2, frequency=20),
     [0, 9, 10, 30, 50, 69]),
    ("ConstantSparsity", dict(target_sparsity=0.6, begin_step=5, end_step=45, frequency=10), [0, 5, 6, 15, 25, 35, 44]),
    ("ConstantSparsity", dict(target_sparsity=0.7, begin_step=0), [0, 1, 100, 250, 300]),
]


@pytest.mark.legacy
@pytest.mark.long
def test_schedules_match_tfmot_step_by_step(tfmot_side):
    theirs = tfmot_side["schedules"]
    for (kind, kwargs, steps), row in zip(CASES, theirs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = getattr(sparsity, kind)(**kwargs)
        for step, (should, value) in zip(steps, row):
            assert bool(keras.ops.convert_to_numpy(ours.should_update(step))) == should, (kind, kwargs, step)
            if should:
                assert float(keras.ops.convert_to_numpy(ours.sparsity(step))) == pytest.approx(value, abs=1e-6)
            called = [keras.ops.convert_to_numpy(t) for t in ours(step)]  # tfmot's spelling: schedule(step)
            assert bool(called[0]) == should and (not should or float(called[1]) == pytest.approx(value, abs=1e-6))


def test_tutorial_schedule_with_a_big_untrained_last_jump_warns():
    # 1000 images, batch 128, 2 epochs: end_step = 16 < frequency = 100, so the masks are set at
    # step 0 (sparsity 0.5), trained at 0.5, and the update at end_step takes them to 0.8 after the
    # last step, untrained (tfmot stays at 0.5... of its 16 steps none is an update: it never prunes).
    end_step = int(np.ceil(1000 * 0.9 / 128)) * 2
    with pytest.warns(UserWarning, match=r"training ends at sparsity 0\.5 instead of 0\.8 .*no training to recover"):
        schedule = sparsity.PolynomialDecay(initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step)
    pruned = _compile(sparsity.prune_low_magnitude(mlp(), pruning_schedule=schedule))
    with pytest.warns(UserWarning, match=r"fit\(\) of layer 'd1'.*steps 0\.\.15.*ends at sparsity 0\.5"):
        pruned.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    kernel = sparsity.strip_pruning(pruned).get_layer("d1").get_weights()[0]
    assert (kernel == 0).mean() == pytest.approx(0.8, abs=0.01)  # end_step = the steps trained: the target
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a schedule that finishes stays silent
        sparsity.PolynomialDecay(initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=844)
        sparsity.PolynomialDecay(0.5, 0.8, 0, end_step=16, frequency=4)


def test_prune_model_layer_list_and_clone_function():
    schedule = sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = sparsity.prune_low_magnitude(mlp(), pruning_schedule=schedule)
    assert [type(l).__name__ for l in pruned.layers] == ["PruneWrapper"] * 2
    assert isinstance(sparsity.prune_low_magnitude(keras.layers.Dense(3)), dc_keras.train.PruneWrapper)
    wrapped = sparsity.prune_low_magnitude([keras.layers.Dense(3), keras.layers.Dense(4)])
    assert [type(w).__name__ for w in wrapped] == ["PruneWrapper"] * 2
    assert sparsity.prune_low_magnitude(keras.layers.Dense(3)).schedule == sparsity.ConstantSparsity(0.5, 0)

    base = mlp()

    def apply_pruning_to_dense(layer):  # the tutorial's "prune some layers" pattern
        if isinstance(layer, keras.layers.Dense) and layer.name == "d1":
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    some = _compile(keras.models.clone_model(base, clone_function=apply_pruning_to_dense))
    assert [type(l).__name__ for l in some.layers] == ["PruneWrapper", "Dense"]
    some.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(some)
    kernel = stripped.get_layer("d1").get_weights()[0]
    assert (kernel == 0).mean() == pytest.approx(0.5, abs=0.01)
    assert (stripped.get_layer("out").get_weights()[0] == 0).mean() == 0


@keras.saving.register_keras_serializable(package="test_compat_tfmot")
class MyDense(keras.layers.Dense, sparsity.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel]


def test_prunable_layer_and_m_by_n():
    layer = MyDense(8)
    model = keras.Sequential([keras.Input((12,)), layer, keras.layers.Dense(3)])
    pruned = _compile(sparsity.prune_low_magnitude(model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0),
                                                   sparsity_m_by_n=(2, 4)))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    kernel = sparsity.strip_pruning(pruned).layers[0].get_weights()[0]
    groups = (kernel != 0).reshape(3, 4, 8).sum(axis=1)
    assert np.all(groups == 2)
    with pytest.raises(TypeError):
        sparsity.PrunableLayer()


def test_unsupported_tfmot_options_say_so():
    with pytest.raises(ValueError, match="block sparsity"):
        sparsity.prune_low_magnitude(mlp(), block_size=(1, 4))
    with pytest.raises(ValueError, match="pruning_policy"):
        sparsity.prune_low_magnitude(mlp(), pruning_policy=object())
    with pytest.raises(TypeError, match="unsupported"):
        sparsity.prune_low_magnitude(mlp(), foo=1)
    with pytest.raises(ValueError, match=r"0 < m < n \(m zeros in every n"):
        sparsity.prune_low_magnitude(mlp(), sparsity_m_by_n=(4, 4))
    with pytest.raises(ValueError, match="cluster_per_channel"):
        clustering.cluster_weights(mlp(), 8, cluster_per_channel=True)
    with pytest.raises(ValueError, match="cluster_centroids_init"):
        clustering.cluster_weights(mlp(), 8, cluster_centroids_init="LLOYD")
    with pytest.raises(ValueError, match="number_of_clusters"):
        clustering.cluster_weights(mlp(), 0)


@pytest.mark.parametrize("init", ["LINEAR", "RANDOM", "DENSITY_BASED", "KMEANS_PLUS_PLUS"])
def test_cluster_weights_any_count_and_init(init, tmp_path):
    clustered = _compile(clustering.cluster_weights(
        mlp(), number_of_clusters=5, cluster_centroids_init=getattr(clustering.CentroidInitialization, init)))
    clustered.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "c.keras"
    clustered.save(path)
    with clustering.cluster_scope():
        loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), clustered.predict(X, verbose=0), rtol=1e-6)
    final = clustering.strip_clustering(loaded)
    for layer in final.layers:
        assert np.unique(layer.get_weights()[0]).size <= 5


def test_sparsity_preserving_clustering_and_summaries(tmp_path):
    pruned = _compile(sparsity.prune_low_magnitude(mlp(), pruning_schedule=sparsity.ConstantSparsity(0.7, 0)))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0,
               callbacks=[sparsity.UpdatePruningStep(), sparsity.PruningSummaries(log_dir=str(tmp_path))])
    assert os.listdir(tmp_path / "train")
    stripped = sparsity.strip_pruning(pruned)
    zeros = {l.name: l.get_weights()[0] == 0 for l in stripped.layers}
    params = {"number_of_clusters": 8, "cluster_centroids_init": clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
              "preserve_sparsity": True}
    sc = _compile(clustering.cluster_weights(stripped, **params))
    sc.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    final = clustering.strip_clustering(sc)
    for layer in final.layers:
        k = layer.get_weights()[0]
        assert np.array_equal(k == 0, zeros[layer.name])  # same zeros, nothing revived
        assert np.unique(k).size <= 8  # as in tfmot, number_of_clusters counts the zero
    # tfmot's default preserve_sparsity=False clusters the zeros too
    plain = clustering.cluster_weights(stripped, 8)
    assert not any(w.preserve_sparsity for w in plain.layers)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_preserve_sparsity_gives_a_kernel_without_zeros_every_cluster(n, tmp_path):
    """cluster_weights(..., preserve_sparsity=True) took a cluster for the zero in every kernel: one
    without zeros (a layer left unpruned, e.g. by a clone_function) got n - 1 values (n=2: a
    constant kernel); tfmot gives it n. The zero takes a cluster only in a kernel that has zeros:
    checked on a model with one pruned layer, the whole model and one layer at a time, unbuilt
    layers (tfmot's guides) and after a .keras round trip."""
    model = mlp()
    w = model.get_layer("d1").get_weights()
    w[0][:, ::2] = 0  # d1 pruned (half its weights), out not
    model.get_layer("d1").set_weights(w)
    zeros = model.get_layer("d1").get_weights()[0] == 0

    def check(final, where):
        k1, k2 = (final.get_layer(name).get_weights()[0] for name in ("d1", "out"))
        assert np.array_equal(k1 == 0, zeros), where
        assert np.unique(k1).size == n, where  # n - 1 shared values and the zero, as in tfmot
        assert np.unique(k2).size == n and not (k2 == 0).any(), where  # no zeros: all n

    clustered = _compile(clustering.cluster_weights(model, number_of_clusters=n, preserve_sparsity=True))
    clustered.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    check(clustering.strip_clustering(clustered), "model")
    clustered.save(tmp_path / "c.keras")
    with clustering.cluster_scope():
        loaded = keras.saving.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(loaded.predict(X, verbose=0), clustered.predict(X, verbose=0), rtol=1e-6)
    loaded.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    check(clustering.strip_clustering(loaded), "loaded")
    per_layer = keras.models.clone_model(model, clone_function=lambda layer: clustering.cluster_weights(
        layer, number_of_clusters=n, preserve_sparsity=True))
    check(clustering.strip_clustering(per_layer), "clone_function")
    unbuilt = keras.Sequential([keras.Input((12,)), clustering.cluster_weights(
        keras.layers.Dense(24, name="d1"), number_of_clusters=n, preserve_sparsity=True)])
    assert np.unique(clustering.strip_clustering(unbuilt).get_layer("d1").get_weights()[0]).size == n
    # dc_keras.cluster's own count is unchanged: n non-zero values in every kernel, plus the zero
    final = dc_keras.strip(dc_keras.cluster(model, clusters=n, preserve_sparsity=True))
    assert np.unique(final.get_layer("d1").get_weights()[0]).size == n + 1
    assert np.unique(final.get_layer("out").get_weights()[0]).size == n


@pytest.mark.legacy
@pytest.mark.long
def test_preserve_sparsity_counts_the_zero_as_tfmot_does(tfmot_side):
    """cluster_weights(..., preserve_sparsity=True) made number_of_clusters non-zero values plus the
    zero (9 values for 8); tfmot 0.8.1's zero is one of its number_of_clusters centroids. Clustered
    the same way as tfmot in a tf_keras child (same weights with the zeros of a pruned model, same
    data), each kernel now ends with at most number_of_clusters distinct values, zero included, as
    many as tfmot's (every centroid used: both split the linear init at zero), and keeps exactly
    its zeros (tfmot: at least those); dc_keras.cluster(clusters=n) still means n non-zero values."""
    from _tfmot_cluster_child import pruned_weights

    theirs = tfmot_side["cluster"]
    for n in CLUSTER_COUNTS:
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"), keras.layers.Dense(3, name="out")])
        model.set_weights(pruned_weights())
        zeros = {layer.name: layer.get_weights()[0] == 0 for layer in model.layers}
        clustered = _compile(clustering.cluster_weights(model, number_of_clusters=n, preserve_sparsity=True,
                                                        cluster_centroids_init=clustering.CentroidInitialization.LINEAR))
        assert all(layer.clusters == n and layer.zero_takes_a_cluster for layer in clustered.layers)
        x, y = masks_child.data(64)
        clustered.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        for layer in clustering.strip_clustering(clustered).layers:
            k, tf_side = layer.get_weights()[0], theirs[str(n)][layer.name]
            ours = np.unique(k).size
            assert ours <= n and tf_side["distinct"] <= n, (n, layer.name, ours, tf_side["distinct"])
            # every centroid used on both sides: like tfmot, the linear init splits at zero (before,
            # at 8 one of ours started, and stayed, empty in the interval the pruned zeros leave)
            assert ours == tf_side["distinct"] == n, (n, layer.name, ours, tf_side["distinct"])
            assert np.array_equal(k == 0, zeros[layer.name])
            assert np.all(np.asarray(tf_side["zeros"], bool) >= zeros[layer.name])  # tfmot keeps them too
    with pytest.raises(ValueError, match="number_of_clusters >= 2"):
        clustering.cluster_weights(mlp(), number_of_clusters=1, preserve_sparsity=True)
    assert dc_keras.strip(dc_keras.cluster(mlp(), clusters=3)).get_layer("d1").get_weights()[0].size and \
        dc_keras.cluster(mlp(), clusters=3).get_layer("d1").clusters == 3


def test_dc_keras_api_warns_too_but_not_for_chunked_fits():
    with pytest.warns(UserWarning, match="ends at sparsity 0.5 instead of 0.8"):
        schedule = dc_keras.schedules.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=16)
    assert schedule.last_update(0, 16) == (0, 0.5)
    assert schedule.last_update(0, 17) == (16, pytest.approx(0.8))
    ok = dc_keras.schedules.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=16, frequency=4)
    pruned = _compile(dc_keras.prune(mlp(), ok))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])  # steps 0..3
        pruned.fit(X, Y, batch_size=16, epochs=4, verbose=0, callbacks=[dc_keras.PruningCallback()])  # 4..19
    never = dc_keras.schedules.ConstantSparsity(0.9, begin_step=50, end_step=60, frequency=5)
    with pytest.warns(UserWarning, match="never updates the masks.*begin_step=50 is after the last step"):
        assert never.check_reachable(0, 40) is not None


# -- side by side with tfmot 0.8.1 in training (tests/_tfmot_masks_child.py) -------------------------
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _tfmot_masks_child as masks_child  # noqa: E402  (same weights and data on both sides)

MASK_CASES = {
    # tfmot's sparsity_m_by_n=(m, n): m zeros in every n consecutive weights along the input dimension
    "m_by_n_1_4": dict(schedule=("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0)),
                       prune=dict(sparsity_m_by_n=[1, 4]), lr=0.0, batch_size=8, batches=3),
    "m_by_n_3_4": dict(schedule=("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0)),
                       prune=dict(sparsity_m_by_n=[3, 4]), lr=0.0, batch_size=8, batches=3),
    "constant_begin0": dict(schedule=("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, frequency=3)),
                            lr=0.0, batch_size=8, batches=8),
    "poly_begin2": dict(schedule=("PolynomialDecay", dict(initial_sparsity=0.2, final_sparsity=0.8, begin_step=2,
                                                          end_step=8, frequency=2)),
                        lr=0.0, batch_size=8, batches=10),
    "tutorial_small": dict(schedule=("PolynomialDecay", dict(initial_sparsity=0.5, final_sparsity=0.8, begin_step=0,
                                                             end_step=16)),
                           lr=0.0, batch_size=8, batches=16),
    "revive": dict(schedule=("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, frequency=1)),
                   lr=0.5, batch_size=16, batches=32),
}


CLUSTER_COUNTS = (3, 4, 8)  # test_preserve_sparsity_counts_the_zero_as_tfmot_does


class TfmotSide:
    """tfmot's results by part (see tests/_tfmot_side_child.py); a part the child did not deliver
    fails the test that needs it with the child's traceback or stderr."""

    def __init__(self, results, proc):
        self.results, self.proc = results, proc

    def __getitem__(self, part):
        got = self.results.get(part)
        if got is None:
            how = "timed out" if self.proc is None else f"exit code {self.proc.returncode}"
            stderr = "" if self.proc is None else self.proc.stderr[-3000:]
            pytest.fail(f"the tfmot child (tests/_tfmot_side_child.py) did not deliver part {part!r} ({how}):\n"
                        f"{stderr}", pytrace=False)
        if "error" in got:
            pytest.fail(f"the tfmot child (tests/_tfmot_side_child.py) failed in part {part!r}:\n{got['error']}",
                        pytrace=False)
        return got["result"]


@pytest.fixture(scope="module")
def tfmot_side(tmp_path_factory):
    """Runs tfmot 0.8.1's side of every comparison here in one tf_keras process (10-20 s of imports
    each, minutes under load, instead of once per test); the scripts run first, before tfmot is
    imported, and write their files under ``tfmot_side.dir / NAME``."""
    out = tmp_path_factory.mktemp("tfmot_side")
    spec = {"script:keras2_user": _KERAS2_USER, "script:wrapped": _TFMOT_WRAPPED_FILE, "schedules": CASES,
            "masks": list(MASK_CASES.values()), "cluster": list(CLUSTER_COUNTS), "registry": None}
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tfmot_side_child.py")
    try:
        proc = subprocess.run([sys.executable, child, json.dumps(spec), str(out)], env=env, capture_output=True,
                              text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        proc = None
    results = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else {}
    side = TfmotSide(results, proc)
    side.dir = out
    return side


@pytest.fixture(scope="module")
def tfmot_masks(tfmot_side):
    rows = tfmot_side["masks"]
    return {name: [(step, np.array(mask)) for step, mask in case_rows] for name, case_rows in zip(MASK_CASES, rows)}


def dc_masks(case):
    """The same case through dc_keras.compat.tfmot: the mask of d1 after every batch (batch b is step b)."""
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"), keras.layers.Dense(3, name="out")])
    model.set_weights(masks_child.mlp_weights())
    kind, kwargs = case["schedule"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # schedules that do not finish in these few steps
        pruned = sparsity.prune_low_magnitude(model, pruning_schedule=getattr(sparsity, kind)(**kwargs),
                                              **case.get("prune", {}))
        pruned.compile(keras.optimizers.SGD(case["lr"]), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        mask = [w for w in pruned.get_layer("d1").weights if w.name == "kernel_mask"][0]
        rows = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda b, logs: rows.append((b, keras.ops.convert_to_numpy(mask).copy())))  # noqa: ARG005
        x, y = masks_child.data(case["batch_size"] * case["batches"])
        pruned.fit(x, y, batch_size=case["batch_size"], epochs=1, shuffle=False, verbose=0,
                   callbacks=[sparsity.UpdatePruningStep(), record])
    return rows


@pytest.mark.legacy
@pytest.mark.long
@pytest.mark.parametrize("name", ["m_by_n_1_4", "m_by_n_3_4"])
def test_m_by_n_means_m_zeros_of_n_as_in_tfmot(tfmot_masks, name):
    # tfmot's (1, 4) prunes 1 of every 4 weights; dc_keras.prune's own (m, n) keeps m of n, and the
    # drop-in passed tfmot's pair through unchanged: (1, 4) pruned 3 of 4 (75 % instead of 25 %).
    theirs = tfmot_masks[name][-1][1]
    ours = dc_masks(MASK_CASES[name])[-1][1]
    m, n = MASK_CASES[name]["prune"]["sparsity_m_by_n"]
    assert (ours == 0).mean() == pytest.approx(m / n)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.legacy
@pytest.mark.long
def test_training_steps_are_numbered_as_documented(tfmot_masks):
    # tfmot 0.8.1 numbers the first batch step 1 (its wrapper increments the counter before the mask
    # update), dc_keras step 0; at every step both update, they prune the same weights (the count
    # may differ by one: tfmot keeps round(size * (1 - s)), dc_keras prunes floor(size * s)).
    theirs = tfmot_masks["poly_begin2"]
    assert [step for step, _ in theirs] == list(range(1, 11))
    ours = dc_masks(MASK_CASES["poly_begin2"])
    tf_at = dict(theirs)
    for step, mask in ours[1:]:
        diff = np.count_nonzero(mask != tf_at[step])
        assert diff <= 1, (step, diff)
        assert np.all(mask[tf_at[step] == 1] == 1)  # dc_keras never prunes a weight tfmot keeps
    # begin_step=0: dc_keras updates at step 0, i.e. the first batch; tfmot's first update is at
    # step `frequency` (3 = the third batch), as the migration guide says.
    theirs = [(m == 0).mean() for _, m in tfmot_masks["constant_begin0"]]
    ours = [(m == 0).mean() for _, m in dc_masks(MASK_CASES["constant_begin0"])]
    assert theirs[:2] == [0.0, 0.0] and theirs[2] == 0.5
    assert ours == [0.5] * 8
    # The guide's small-data tutorial case (end_step = 16 < frequency = 100): tfmot never prunes,
    # dc_keras prunes once, at step 0, to 0.5 (and warns).
    assert all(np.all(m == 1) for _, m in tfmot_masks["tutorial_small"])
    assert [(m == 0).mean() for _, m in dc_masks(MASK_CASES["tutorial_small"])] == [0.5] * 16


@pytest.mark.legacy
@pytest.mark.long
def test_pruned_weights_stay_pruned_unlike_tfmot(tfmot_masks):
    # tfmot recomputes the mask from weights the optimizer has moved off zero, so a pruned weight
    # can come back; dc_keras's masks only grow (migration guide, "Differences").
    def revived(rows):
        return sum(int(np.sum((a == 0) & (b == 1))) for (_, a), (_, b) in zip(rows, rows[1:]))

    assert revived(tfmot_masks["revive"]) > 0
    assert revived(dc_masks(MASK_CASES["revive"])) == 0


def test_tfmot_style_schedule_subclass_says_how_to_port():
    # tfmot's custom schedules implement __call__(step) -> (should_prune, sparsity) and need no
    # base __init__; the drop-in failed in fit() with "'Mine' object has no attribute 'end_step'".
    class Mine(sparsity.PruningSchedule):
        def __init__(self, target):
            self.target = target

        def __call__(self, step):
            return (True, self.target)

        def get_config(self):
            return {"target": self.target}

    with pytest.raises(ValueError, match=r"Mine implements tfmot's __call__\(step\).*super\(\)\.__init__.*sparsity\(step\)"):
        sparsity.prune_low_magnitude(mlp(), pruning_schedule=Mine(0.5))

    class Half(sparsity.PruningSchedule):  # a dc_keras-style one that skips the base __init__
        def __init__(self):
            pass

        def sparsity(self, step):
            return keras.ops.convert_to_tensor(0.5, "float32")

    with pytest.raises(ValueError, match=r"Half has no begin_step, end_step, frequency \(PruningSchedule.__init__"):
        dc_keras.prune(mlp(), Half())

    class Ported(sparsity.PruningSchedule):  # what the message asks for
        def __init__(self, target):
            super().__init__(begin_step=0, frequency=1)
            self.target = target

        def sparsity(self, step):
            return keras.ops.convert_to_tensor(self.target, "float32")

    pruned = _compile(sparsity.prune_low_magnitude(mlp(), pruning_schedule=Ported(0.5)))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert (sparsity.strip_pruning(pruned).get_layer("d1").get_weights()[0] == 0).mean() == 0.5


def test_tfmot_names_not_provided_say_what_to_use(tmp_path):
    # Every public name of tfmot 0.8.1's sparsity.keras / clustering.keras is there or an
    # AttributeError naming the replacement (was: "module ... has no attribute 'PruningPolicy'").
    expected = {
        sparsity: {"PruneForLatencyOnXNNPack": "clone_function", "PruningPolicy": "clone_function"},
        clustering: {"ClusterableLayer": "get_prunable_weights", "clusterable_layer": "get_prunable_weights",
                     "ClusteringAlgorithm": "not supported", "experimental": "preserve_sparsity=True"},
    }
    for module, names in expected.items():
        for name, fix in names.items():
            with pytest.raises(AttributeError, match=fix):
                getattr(module, name)
        with pytest.raises(AttributeError, match="docs/migrating_from_tfmot.md"):
            module.no_such_name  # noqa: B018
    # tfmot has ClusteringSummaries too (log_dir='logs', cluster_update_freq='epoch'): same name here.
    clustered = _compile(clustering.cluster_weights(mlp(), 4))
    clustered.fit(X, Y, batch_size=16, epochs=1, verbose=0,
                  callbacks=[clustering.ClusteringSummaries(log_dir=str(tmp_path), cluster_update_freq="batch")])
    assert os.listdir(tmp_path / "train")


_LOAD_IN_FRESH_PROCESS = r"""
import sys, keras
try:
    keras.saving.load_model(sys.argv[1])
    print("LOADED WITHOUT dc_keras")
except Exception:
    pass
import dc_keras.compat.tfmot  # registers the wrappers and schedules, as tfmot's prune_scope() did
m = keras.saving.load_model(sys.argv[1])
print("RESULT", [type(l).__name__ for l in m.layers])
"""


def test_saved_pruned_model_loads_after_import_without_scope(tmp_path):
    # The guide's promise: no prune_scope()/custom_objects; what it needs is dc_keras imported.
    pruned = _compile(sparsity.prune_low_magnitude(mlp(), pruning_schedule=sparsity.ConstantSparsity(0.5, 0)))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "-c", _LOAD_IN_FRESH_PROCESS, str(path)], env=env, capture_output=True,
                       text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "LOADED WITHOUT dc_keras" not in r.stdout
    assert "RESULT ['PruneWrapper', 'PruneWrapper']" in r.stdout
    guide = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "docs", "migrating_from_tfmot.md")).read()
    assert "once dc_keras is imported" in guide


def test_errors_a_migrator_hits_name_the_tfmot_spelling_of_the_fix():
    # The drop-in's user knows UpdatePruningStep and strip_pruning, not PruningCallback and strip.
    pruned = _compile(sparsity.prune_low_magnitude(mlp()))
    with pytest.raises(Exception, match=r"UpdatePruningStep\(\)"):
        pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"strip_pruning\(\)"):
        clustering.cluster_weights(pruned, 8)
    # UpdatePruningStep on a model that is not pruned (tfmot ignores it): the result of
    # prune_low_magnitude was dropped, or the callback is left over from a pruning fit().
    plain = _compile(mlp())
    with pytest.raises(ValueError, match=r"prune_low_magnitude\(model\).*leave the callback out"):
        plain.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])


class SubModel(keras.Model):
    def __init__(self, wrap=None):
        super().__init__()
        wrap = wrap or (lambda layer: layer)
        self.d1, self.d2 = wrap(keras.layers.Dense(24, activation="relu")), wrap(keras.layers.Dense(3))

    def call(self, x, training=None):
        return self.d2(self.d1(x, training=training), training=training)


def test_a_subclassed_model_is_refused_with_the_drop_ins_own_fix():
    """prune_low_magnitude / cluster_weights of a subclassed model (refused by tfmot too) said to apply
    dc_keras.prune() / dc_keras.cluster() to its layers: the error names the drop-in's own call on the
    layers inside the model, and that fix works."""
    sub = SubModel()
    sub(X[:1])
    for call, fix in ((lambda: sparsity.prune_low_magnitude(sub), r"apply prune_low_magnitude\(layer\) to the layers"),
                      (lambda: clustering.cluster_weights(sub, 8),
                       r"apply cluster_weights\(layer, number_of_clusters\) to the layers")):
        with pytest.raises(ValueError, match=r"SubModel is a subclassed model") as info:
            call()
        assert re.search(fix, str(info.value)) and "dc_keras" not in str(info.value), str(info.value)
    pruned = _compile(SubModel(lambda layer: sparsity.prune_low_magnitude(
        layer, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert np.mean(keras.ops.convert_to_numpy(pruned.d1.compressed_values(False)[0][1]) == 0) == pytest.approx(0.5, abs=0.01)
    clustered = _compile(SubModel(lambda layer: clustering.cluster_weights(layer, number_of_clusters=4)))
    clustered(X[:1])  # the unbuilt layers are clustered on their first call (not inside fit's traced step)
    clustered.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert np.unique(keras.ops.convert_to_numpy(clustered.d1.compressed_values(False)[0][1])).size == 4


_TFMOT_WRAPPED_FILE = r"""
import sys, numpy as np, tensorflow_model_optimization as tfmot, tf_keras as keras
s = tfmot.sparsity.keras
m = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"), keras.layers.Dense(3, name="out")])
p = s.prune_low_magnitude(m, pruning_schedule=s.ConstantSparsity(0.5, 0, frequency=1))
p.compile("sgd", "mse")
p.fit(np.ones((8, 12)), np.ones((8, 3)), verbose=0, callbacks=[s.UpdatePruningStep()])
p.save(sys.argv[1] + "/wrapped.h5")
s.strip_pruning(p).save(sys.argv[1] + "/stripped.h5")
"""


@pytest.mark.legacy
@pytest.mark.long
def test_tfmot_wrapped_keras2_file_in_prune_scope_says_to_strip_in_tfmot(tfmot_side):
    # A tfmot user loads checkpoints the tfmot way: `with prune_scope(): load_model(path)`. A file
    # holding tfmot's own (Keras 2) wrappers cannot be rebuilt on Keras 3; the no-op scope let Keras
    # say "Unknown layer: 'PruneLowMagnitude'. Please ensure you are using a custom_object_scope".
    tfmot_side["script:wrapped"]  # _TFMOT_WRAPPED_FILE ran: tfmot's files, made in a tf_keras process
    files = tfmot_side.dir / "wrapped"
    for scope in (sparsity.prune_scope, clustering.cluster_scope):
        # The fix it gives is one that works: .h5 (tf_keras's .keras files mostly do not load on Keras 3,
        # see test_keras2_model_is_named_with_the_fix) and compile=False.
        with pytest.raises(ValueError, match=r"tfmot's Keras 2 PruneLowMagnitude wrapper of layer 'd1'.*strip_pruning"
                                             r".*as \.h5 .*load_model\(path, compile=False\)"):
            with scope():
                keras.saving.load_model(files / "wrapped.h5")
    with sparsity.prune_scope():  # the fix the message gives: the stripped file loads
        stripped = keras.saving.load_model(files / "stripped.h5")
    assert (stripped.get_layer("d1").get_weights()[0] == 0).mean() == 0.5


_KERAS2_USER = r"""
import sys, numpy as np, tensorflow as tf
import keras, dc_keras, dc_keras.compat.tfmot as tfmot
# tfmot's tutorial model, written as a tfmot user writes it, with TF_USE_LEGACY_KERAS=1 still set
model = tf.keras.Sequential([tf.keras.layers.InputLayer(input_shape=(28, 28)), tf.keras.layers.Reshape((28, 28, 1)),
                             tf.keras.layers.Conv2D(4, 3), tf.keras.layers.BatchNormalization(),
                             tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
calls = {
    "prune_low_magnitude": lambda: tfmot.sparsity.keras.prune_low_magnitude(model),
    "prune_low_magnitude(layer)": lambda: tfmot.sparsity.keras.prune_low_magnitude(model.layers[-1]),
    "cluster_weights": lambda: tfmot.clustering.keras.cluster_weights(model, 8),
    "strip_pruning": lambda: tfmot.sparsity.keras.strip_pruning(model),
    "prune": lambda: dc_keras.prune(model), "cluster": lambda: dc_keras.cluster(model),
    "strip": lambda: dc_keras.strip(model), "coverage": lambda: dc_keras.coverage(model),
    "sensitivity": lambda: dc_keras.sensitivity(model, (np.zeros((2, 28, 28)), np.zeros(2))),
    "to_tflite": lambda: dc_keras.export.to_tflite(model),
}
for name, call in calls.items():
    try:
        call()
        print("NO ERROR", name)
    except ValueError as e:
        print("ERROR", name, "|", e)
model.compile("adam", "mse")
model.save(sys.argv[1] + "/m.h5")
model.save(sys.argv[1] + "/m.keras")
x = np.random.default_rng(0).random((2, 28, 28), dtype=np.float32)
loaded = keras.saving.load_model(sys.argv[1] + "/m.h5", compile=False)  # the fix the errors give
print("SAME", np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0)))
print("PRUNED", [type(l).__name__ for l in tfmot.sparsity.keras.prune_low_magnitude(loaded).layers])
try:
    keras.saving.load_model(sys.argv[1] + "/m.keras")
    print("KERAS FILE LOADS")
except TypeError:
    print("KERAS FILE FAILS")
"""


@pytest.mark.legacy
@pytest.mark.long
def test_keras2_model_is_named_with_the_fix(tfmot_side):
    # A tfmot user who keeps TF_USE_LEGACY_KERAS=1 builds tf.keras (tf_keras) models; every entry point
    # said "prune_low_magnitude() takes a Keras model, layer or list of layers, got Sequential." about
    # what is, to that user, a Keras Sequential model.
    out = tfmot_side["script:keras2_user"]  # _KERAS2_USER's stdout, run before tfmot is imported
    errors = {m[2]: m[0] for m in re.finditer(r"^(ERROR|NO ERROR) (\S+) .*$", out, re.M)}
    assert len(errors) == 10, out
    for name, line in errors.items():
        kind = "Dense" if name.endswith("(layer)") else "Sequential"
        assert line.startswith("ERROR") and f"got a Keras 2 (tf_keras) {kind}: dc_keras runs on Keras 3" in line, line
        assert "TF_USE_LEGACY_KERAS=1 is set" in line and "load_model('model.h5', compile=False)" in line, line
    assert "SAME True" in out and "PRUNED ['Reshape', 'PruneWrapper', 'BatchNormalization'" in out, out
    # Why the guide and the errors say .h5: tf_keras's .keras file of this model does not load on Keras 3.
    assert "KERAS FILE FAILS" in out, out


def test_tfmot_custom_training_loop_guide_runs_and_logs(tmp_path):
    """tfmot's *Pruning comprehensive guide*, "custom training loop", as written there (only the
    import changed). It failed on the drop-in: `log_callback.on_epoch_begin(...)` with an
    AttributeError ('PruningLog' object has no attribute 'done': on_train_begin, which tfmot's guide
    never calls on that callback, set it up), then `step_callback.on_epoch_end(batch=...)` with a
    TypeError (tfmot's UpdatePruningStep names that parameter `batch`)."""
    import glob

    import tensorflow as tf

    input_shape = [20]
    x_train = np.random.randn(1, 20).astype(np.float32)
    y_train = keras.utils.to_categorical(np.random.randn(1), num_classes=20)
    base_model = keras.Sequential([keras.Input(input_shape), keras.layers.Dense(20, name="d"), keras.layers.Flatten()])
    model_for_pruning = tfmot.sparsity.keras.prune_low_magnitude(base_model)
    log_dir = str(tmp_path)
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.Adam()
    unused_arg = -1
    epochs = 2
    batches = 1
    step_callback = tfmot.sparsity.keras.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)
    log_callback.set_model(model_for_pruning)
    step_callback.on_train_begin()
    for _ in range(epochs):
        log_callback.on_epoch_begin(epoch=unused_arg)
        for _ in range(batches):
            step_callback.on_train_batch_begin(batch=unused_arg)
            with tf.GradientTape() as tape:
                logits = model_for_pruning(x_train, training=True)
                loss_value = loss(y_train, logits)
                grads = tape.gradient(loss_value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)

    stripped = tfmot.sparsity.keras.strip_pruning(model_for_pruning)
    assert (stripped.get_layer("d").get_weights()[0] == 0).mean() == 0.5  # ConstantSparsity(0.5, 0): step 0
    points = []
    for path in glob.glob(os.path.join(log_dir, "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            points += [(value.tag, int(event.step), float(tf.make_ndarray(value.tensor))) for value in event.summary.value]
    # One point per on_epoch_begin, at the steps trained so far (tfmot: the optimizer's step count).
    assert sorted(points) == [("sparsity/d/kernel", 0, 0.0), ("sparsity/d/kernel", 1, 0.5)], points


def test_tfmot_guides_wrap_unbuilt_layers():
    """tfmot's comprehensive guides wrap layers before they are built: `cluster_weights(Dense(20,
    input_shape=...))` in a Sequential and `cluster_weights(Dense(20))(i)` collapsed each kernel to
    one value after training (no k-means at build), and `prune_low_magnitude(MyDenseLayer(20, ...))`
    of a PrunableLayer whose get_prunable_weights() returns [self.kernel] raised "You must build the
    layer before accessing `kernel`"."""
    input_shape = [20]
    x = np.random.default_rng(0).normal(size=(32, 20)).astype(np.float32)
    y = keras.utils.to_categorical(np.arange(32) % 20, num_classes=20)
    clustering_params = {"number_of_clusters": 3,
                         "cluster_centroids_init": tfmot.clustering.keras.CentroidInitialization.LINEAR}
    i = keras.Input(shape=(20,))
    functional = keras.Model(inputs=i, outputs=keras.layers.Flatten()(
        tfmot.clustering.keras.cluster_weights(keras.layers.Dense(20), **clustering_params)(i)))

    class MyDenseLayer(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: "Do not pass an `input_shape`" (the guide's code)
        sequential = keras.Sequential([
            tfmot.clustering.keras.cluster_weights(keras.layers.Dense(20, input_shape=input_shape), **clustering_params),
            keras.layers.Flatten()])
        custom = keras.Sequential([
            tfmot.sparsity.keras.prune_low_magnitude(MyDenseLayer(20, input_shape=input_shape)),
            keras.layers.Flatten()])
    for model in (sequential, functional):
        model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
        model.fit(x, y, verbose=0)
        kernel = tfmot.clustering.keras.strip_clustering(model).layers[-2].get_weights()[0]
        assert np.unique(kernel).size == 3, np.unique(kernel)
    custom.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    custom.fit(x, y, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    assert (tfmot.sparsity.keras.strip_pruning(custom).layers[0].get_weights()[0] == 0).mean() == 0.5


def test_strip_warning_points_at_the_callers_line_and_names_the_tfmot_callback():
    # Through the drop-in, strip's "schedule had not finished" warning pointed at
    # dc_keras/compat/tfmot/sparsity/keras.py and named only dc_keras.PruningCallback.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=40, frequency=2)
    pruned = _compile(sparsity.prune_low_magnitude(mlp(), pruning_schedule=schedule))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])  # 4 steps
    for strip in (sparsity.strip_pruning, clustering.strip_clustering, dc_keras.strip):
        with pytest.warns(UserWarning, match=r"had not finished.*UpdatePruningStep\(\)") as record:
            strip(pruned)
        assert [w.filename for w in record if "had not finished" in str(w.message)] == [__file__]


class _NoPrunableWeights(keras.layers.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 8), name="w")

    def call(self, x):
        return x @ self.w


def test_whole_model_like_tfmot_frozen_layers_compressed_unknown_layers_refused():
    # tfmot 0.8.1 (checked in a tf_keras child while writing this) wraps layers with trainable=False
    # too and raises for a layer it cannot prune/cluster; the drop-in silently left both dense
    # (dc_keras's own default, reported only on the INFO log).
    def frozen_model():
        frozen = keras.layers.Dense(16, name="frozen")
        frozen.trainable = False
        return keras.Sequential([keras.Input((12,)), frozen, keras.layers.Dense(3, name="head")])

    pruned = _compile(sparsity.prune_low_magnitude(frozen_model(),
                                                   pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1)))
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    for layer in sparsity.strip_pruning(pruned).layers:
        assert (layer.get_weights()[0] == 0).mean() == 0.5, layer.name
    clustered = clustering.cluster_weights(frozen_model(), 4)
    assert [type(l).__name__ for l in clustered.layers] == ["ClusterWrapper"] * 2
    custom = keras.Sequential([keras.Input((12,)), _NoPrunableWeights(name="mine"), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"'mine'.*get_prunable_weights"):
        sparsity.prune_low_magnitude(custom)
    with pytest.raises(ValueError, match=r"'mine'.*get_prunable_weights"):
        clustering.cluster_weights(custom, 4)
    # Layers whose weights are vectors (tfmot: BatchNormalization / LayerNormalization, "nothing to
    # prune") stay dense without an error.
    normed = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8), keras.layers.LayerNormalization(),
                               keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    assert [type(l).__name__ for l in sparsity.prune_low_magnitude(normed).layers] == \
        ["PruneWrapper", "LayerNormalization", "BatchNormalization", "PruneWrapper"]
    assert "ClusterWrapper" in [type(l).__name__ for l in clustering.cluster_weights(normed, 4).layers]


@pytest.mark.legacy
@pytest.mark.long
def test_depthwise_kernels_stay_dense_as_in_tfmot(tfmot_side, tmp_path):
    """The drop-in pruned and clustered DepthwiseConv kernels and SeparableConv's depthwise kernel,
    which tfmot 0.8.1's layer registry leaves dense. It now compresses the weights tfmot does (read
    from tfmot itself in a tf_keras child), in whole models and layer by layer, through a .keras
    round trip; dc_keras.prune/cluster still compress the depthwise kernels."""
    theirs = tfmot_side["registry"]

    def model():
        return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3, name="dw"),
                                 keras.layers.SeparableConv2D(4, 3, name="sep"), keras.layers.Flatten(),
                                 keras.layers.Dense(3, name="fc")])

    def compressed(m):
        return {l.name: sorted(name for name, _, _ in l._targets) for l in m.layers
                if isinstance(l, dc_keras.train.PruneWrapper) or isinstance(l, dc_keras.train.ClusterWrapper)}

    expected = {kind: {name: w for name, w in layers.items() if w} for kind, layers in theirs.items()}
    assert expected["prune"] == expected["cluster"] == {"sep": ["pointwise_kernel"], "fc": ["kernel"]}
    pruned = sparsity.prune_low_magnitude(model())
    clustered = clustering.cluster_weights(model(), number_of_clusters=4)
    assert compressed(pruned) == expected["prune"] and compressed(clustered) == expected["cluster"]
    assert {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped} == expected["prune"]
    assert any(e["layer"] == "dw" and "tfmot" in e["reason"] for e in pruned.compression_report.skipped)
    _compile(pruned).fit(np.ones((8, 8, 8, 3), "float32"), np.zeros(8), verbose=0,
                         callbacks=[sparsity.UpdatePruningStep()])
    pruned.save(tmp_path / "p.keras")
    loaded = keras.saving.load_model(tmp_path / "p.keras")
    assert compressed(loaded) == expected["prune"]
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), pruned.get_weights()))
    final = sparsity.strip_pruning(loaded)
    assert (final.get_layer("dw").get_weights()[0] != 0).all()
    assert (final.get_layer("sep").get_weights()[0] != 0).all()  # its depthwise kernel
    assert (final.get_layer("sep").get_weights()[1] == 0).mean() == 0.5  # its pointwise kernel
    # layer by layer (a clone_function): tfmot wraps a DepthwiseConv2D with nothing to prune; here it stays
    dw, sep = keras.layers.DepthwiseConv2D(3), keras.layers.SeparableConv2D(4, 3)
    assert sparsity.prune_low_magnitude(dw) is dw and clustering.cluster_weights(dw, 4) is dw
    assert sparsity.prune_low_magnitude(sep).only_weights == ("pointwise_kernel",)
    # dc_keras's own API compresses them
    own = dc_keras.prune(model(), sparsity.ConstantSparsity(0.5, 0))
    assert compressed(own) == {"dw": ["kernel"], "sep": ["depthwise_kernel", "pointwise_kernel"], "fc": ["kernel"]}


def test_schedule_warnings_point_at_the_users_line():
    # The fit()-time warning pointed at dc_keras/train/pruning.py (Keras calls the callback).
    with pytest.warns(UserWarning, match="ends at sparsity 0.5 instead of 0.8") as built:
        schedule = sparsity.PolynomialDecay(initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=16)
    pruned = _compile(sparsity.prune_low_magnitude(mlp(), pruning_schedule=schedule))
    with pytest.warns(UserWarning, match=r"fit\(\) of layer 'd1'") as fitted:
        pruned.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    for record in (built, fitted):
        assert [w.filename for w in record if "instead of 0.8" in str(w.message)] == [__file__]


class _OptsOut(keras.layers.Dense, sparsity.PrunableLayer):
    """tfmot's way to keep a custom layer dense in a pruned model: it declares no prunable weights."""

    def get_prunable_weights(self):
        return []


def test_layers_with_nothing_to_compress_are_left_as_they_are():
    # tfmot 0.8.1's registry wraps weightless layers (Flatten, pooling, Dropout, BatchNormalization...)
    # with nothing to do, and a PrunableLayer returning [] opts out; the drop-in raised "cannot be
    # pruned or clustered" for the first (given alone, in a list or by a clone_function) and
    # "declares no prunable weights" for the second, even in a whole model.
    assert isinstance(sparsity.prune_low_magnitude(keras.layers.Flatten()), keras.layers.Flatten)
    assert isinstance(clustering.cluster_weights(keras.layers.Dropout(0.1), 4), keras.layers.Dropout)
    dense, pool = sparsity.prune_low_magnitude([keras.layers.Dense(3), keras.layers.MaxPooling1D()])
    assert isinstance(dense, sparsity.PruneLowMagnitude) and isinstance(pool, keras.layers.MaxPooling1D)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Reshape((12, 1)), keras.layers.MaxPooling1D(),
                              keras.layers.Flatten(), keras.layers.Dense(3, name="out")])
    pruned = _compile(keras.models.clone_model(model, clone_function=sparsity.prune_low_magnitude))
    assert [type(layer).__name__ for layer in pruned.layers] == ["Reshape", "MaxPooling1D", "Flatten", "PruneWrapper"]
    pruned.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert (sparsity.strip_pruning(pruned).get_layer("out").get_weights()[0] == 0).mean() == 0.5

    def with_opt_out():
        return keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"), _OptsOut(3, name="mine")])

    for compressed in (sparsity.prune_low_magnitude(with_opt_out()), clustering.cluster_weights(with_opt_out(), 4),
                       dc_keras.prune(with_opt_out(), dc_keras.schedules.ConstantSparsity(0.5))):
        assert [type(layer).__name__ for layer in compressed.layers][1] == "_OptsOut"
        assert "returns []" in str(compressed.compression_report)
    # Given alone before it is built, the wrapper finds out only when built: the error says to leave it unwrapped.
    with pytest.raises(ValueError, match=r"'mine' declares no prunable weights \(its get_prunable_weights\(\) returns "
                                         r"\[\]\).*use the layer itself, unwrapped"):
        keras.Sequential([keras.Input((12,)), sparsity.prune_low_magnitude(_OptsOut(3, name="mine"))])


def test_centroid_initialization_is_tfmot_str_enum():
    # tfmot 0.8.1's CentroidInitialization is a (str, Enum) valued "CentroidInitialization.LINEAR"...
    # (cluster_config.py); the drop-in's was a plain class valued "LINEAR": a sweep over the members
    # raised "'type' object is not iterable", and a saved value string was refused.
    init = clustering.CentroidInitialization
    assert [m.name for m in init] == ["LINEAR", "RANDOM", "DENSITY_BASED", "KMEANS_PLUS_PLUS"]
    assert init.LINEAR == "CentroidInitialization.LINEAR" and init("CentroidInitialization.RANDOM") is init.RANDOM
    for value in (init.DENSITY_BASED, "CentroidInitialization.DENSITY_BASED", "DENSITY_BASED", "density_based"):
        clustered = clustering.cluster_weights(mlp(), 4, cluster_centroids_init=value)
        assert clustered.get_layer("d1").init == "density", value
    with pytest.raises(ValueError, match=r"one of CentroidInitialization\.\{LINEAR, RANDOM, DENSITY_BASED, "
                                         r"KMEANS_PLUS_PLUS\}, got 'CentroidInitialization\.FOO'"):
        clustering.cluster_weights(mlp(), 4, cluster_centroids_init="CentroidInitialization.FOO")


def test_to_tflite_with_the_file_as_second_argument_says_path(tmp_path):
    # Moving tfmot's export step (TFLiteConverter) to dc_keras.export.to_tflite(model, "model.tflite"):
    # the file went to `pack`, which took it as True, and no file was written, without a word.
    model = mlp()
    target = tmp_path / "model.tflite"
    for spelling in (str(target), target):
        with pytest.raises(ValueError, match=r"second argument is pack \(True/False\).*path="):
            dc_keras.export.to_tflite(model, spelling)
    with pytest.raises(ValueError, match=r"pack must be True or False, got 1"):
        dc_keras.export.to_tflite(model, 1)
    assert not target.exists()


def test_wrapping_again_keeps_tfmot_behaviour_or_names_the_tfmot_fix():
    # tfmot returns a layer it has wrapped already as it is; the drop-in raised "already wrapped ...
    # call dc_keras.strip()". For a pruned model it said to call dc_keras.strip() first, which ends the
    # pruning the user most likely meant to go on with.
    pruned_layer = sparsity.prune_low_magnitude(keras.layers.Dense(3))
    assert sparsity.prune_low_magnitude(pruned_layer) is pruned_layer
    assert sparsity.prune_low_magnitude([pruned_layer])[0] is pruned_layer
    clustered_layer = clustering.cluster_weights(keras.layers.Dense(3), 4)
    assert clustering.cluster_weights(clustered_layer, 4) is clustered_layer
    with pytest.raises(ValueError, match=r"still wrapped for pruning: strip_pruning\(\)"):
        clustering.cluster_weights(pruned_layer, 4)
    with pytest.raises(ValueError, match=r"still wrapped for clustering: strip_clustering\(\)"):
        sparsity.prune_low_magnitude(clustered_layer)
    with pytest.raises(ValueError, match=r"'d1', 'out'.*go on pruning it, fit it as it is with UpdatePruningStep\(\).*"
                                         r"strip_pruning\(model\) first"):
        sparsity.prune_low_magnitude(sparsity.prune_low_magnitude(mlp()))
    with pytest.raises(ValueError, match=r"clustering wrappers.*strip_clustering\(model\) first"):
        sparsity.prune_low_magnitude(clustering.cluster_weights(mlp(), 4))


def test_argument_errors_name_the_tfmot_argument():
    # number_of_clusters above the codebook limit was "`clusters` must be an integer between 1 and
    # 4096" (dc_keras's name); a schedule class or a number as pruning_schedule was "`schedule` must be
    # a dc_keras.schedules schedule".
    with pytest.raises(ValueError, match=r"number_of_clusters=5000: dc_keras shares at most 4096 values.*"
                                         r"number_of_clusters <= 4096"):
        clustering.cluster_weights(mlp(), 5000)
    assert clustering.cluster_weights(mlp(), 4096).get_layer("d1").clusters == 4096
    with pytest.raises(ValueError, match=r"pruning_schedule must be a schedule instance, got the class "
                                         r"ConstantSparsity: e\.g\. pruning_schedule=ConstantSparsity\(0\.5"):
        sparsity.prune_low_magnitude(mlp(), pruning_schedule=sparsity.ConstantSparsity)
    with pytest.raises(ValueError, match=r"pruning_schedule must be a PolynomialDecay, ConstantSparsity.*got 0\.5"):
        sparsity.prune_low_magnitude(keras.layers.Dense(3), pruning_schedule=0.5)
    with pytest.raises(ValueError, match=r"cluster_per_channel='yes': per-channel clustering is not supported"):
        clustering.cluster_weights(mlp(), 4, cluster_per_channel="yes")
    with pytest.raises(ValueError, match=r"block_size must be a pair of ints such as \(1, 1\), got 1"):
        sparsity.prune_low_magnitude(mlp(), block_size=1)  # was TypeError: 'int' object is not iterable


def test_extra_keyword_arguments_go_to_the_wrapper_of_a_layer(tmp_path):
    # tfmot passes prune_low_magnitude's / cluster_weights' **kwargs to the wrapper of a single layer
    # (its docstrings: "Additional keyword arguments to be passed to the keras wrapper"); the drop-in
    # refused them all ("supports tfmot's documented arguments only").
    model = keras.Sequential([keras.Input((12,)),
                              sparsity.prune_low_magnitude(keras.layers.Dense(24, name="d1"), name="pruned_d1"),
                              clustering.cluster_weights(keras.layers.Dense(3, name="out"), 4, name="clustered_out")])
    assert [layer.name for layer in model.layers] == ["pruned_d1", "clustered_out"]
    assert model.get_layer("pruned_d1").layer.name == "d1"
    model.save(tmp_path / "m.keras")
    assert [layer.name for layer in keras.saving.load_model(tmp_path / "m.keras").layers] == ["pruned_d1", "clustered_out"]
    with pytest.raises(TypeError, match=r"\['name'\].*single layer only"):
        sparsity.prune_low_magnitude(mlp(), name="pruned")
    with pytest.raises(TypeError, match=r"\['name'\].*single layer only"):
        clustering.cluster_weights(mlp(), 4, name="clustered")


def test_schedules_are_callable_as_in_tfmot():
    # tfmot's schedule(step) returns (should_prune, sparsity); the drop-in's schedules were not
    # callable ("'PolynomialDecay' object is not callable"), e.g. in code that plots a schedule.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        poly = sparsity.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
    should, value = (keras.ops.convert_to_numpy(t) for t in poly(50))
    assert bool(should) and float(value) == pytest.approx(0.8 - 0.8 * 0.5 ** 3)  # tfmot's cubic decay
    constant = sparsity.ConstantSparsity(0.5, begin_step=10, frequency=5)
    assert [bool(keras.ops.convert_to_numpy(constant(step)[0])) for step in (9, 10, 12, 15)] == [False, True, False, True]
    with pytest.raises(TypeError, match="StdThreshold sets a threshold.*should_update"):
        dc_keras.schedules.StdThreshold(1.0)(3)


def test_summaries_need_a_log_dir_as_in_tfmot():
    # tfmot refuses a log_dir that is not a non-empty string; the drop-in's PruningSummaries(log_dir=None)
    # was a plain UpdatePruningStep that wrote nothing, and log_dir='' wrote into ./train.
    with pytest.raises(ValueError, match=r"PruningSummaries needs a log_dir.*got None.*UpdatePruningStep\(\)"):
        sparsity.PruningSummaries(log_dir=None)
    for make in (sparsity.PruningSummaries, clustering.ClusteringSummaries, dc_keras.PruningCallback):
        with pytest.raises(ValueError, match=r"`log_dir` must be a non-empty path"):
            make(log_dir="")


def test_tfmot_internal_module_path_names_the_public_one():
    # tfmot's sparsity-preserving clustering example imports
    # `from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster`;
    # with the package name changed this was "No module named 'dc_keras.compat.tfmot.python'".
    code = "from dc_keras.compat.tfmot.python.core.clustering.keras.experimental import cluster"
    with pytest.raises(ImportError, match=r"tfmot\.python .*internal modules.*"
                                          r"tfmot\.clustering\.keras\.cluster_weights\(\.\.\., preserve_sparsity=True\)"):
        exec(code, {})
    with pytest.raises(AttributeError, match=r"tfmot\.python .*internal modules"):
        tfmot.python  # noqa: B018


def test_guide_bias_pruning_warning_says_to_start_later():
    # tfmot's guide prunes a custom layer's bias (get_prunable_weights: [self.bias]). The bias starts
    # all zeros; tfmot's first update comes after `frequency` training steps, the drop-in's at step 0,
    # so every bias weight ties and is pruned. The warning said to initialise the *kernel* with
    # Keras's default glorot_uniform, which is no fix for a bias (its default initializer is zeros).
    class MyDenseLayer(keras.layers.Dense, sparsity.PrunableLayer):
        def get_prunable_weights(self):
            return [self.bias]

    model = _compile(keras.Sequential([keras.Input((12,)), sparsity.prune_low_magnitude(MyDenseLayer(3, name="b"))]))
    with pytest.warns(UserWarning, match=r"weight 'bias' at step 0.*A bias starts all zeros \(Keras's default "
                                         r"bias_initializer\).*begin_step > 0") as record:
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert not [w for w in record if "kernel_initializer" in str(w.message)]
    later = _compile(keras.Sequential([keras.Input((12,)), sparsity.prune_low_magnitude(
        MyDenseLayer(3, name="b"), pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=2, frequency=2))]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the fix the warning names: no tie once trained
        later.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    assert (sparsity.strip_pruning(later).get_layer("b").get_weights()[1] == 0).mean() == pytest.approx(1 / 3)


def test_whole_float_steps_are_taken_as_in_tfmot(tmp_path):
    # end_step = np.ceil(num_images / batch_size) * epochs (the tutorial's formula without its
    # .astype(np.int32)) is a float64; tfmot takes it, the drop-in said "must be an integer".
    end_step = np.ceil(1000 / 128) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        schedule = sparsity.PolynomialDecay(0.5, 0.8, begin_step=0.0, end_step=end_step, frequency=np.float32(4))
    assert schedule.get_config() == {"initial_sparsity": 0.5, "final_sparsity": 0.8, "begin_step": 0, "end_step": 16,
                                     "power": 3.0, "frequency": 4}
    assert all(type(v) is int for k, v in schedule.get_config().items() if k.endswith(("step", "frequency")))
    sparsity.prune_low_magnitude(mlp(), pruning_schedule=schedule).save(tmp_path / "m.keras")  # JSON config
    for bad in (dict(end_step=15.5), dict(begin_step=0.5)):
        with pytest.raises(ValueError, match=r"must be a whole number of steps"):
            sparsity.PolynomialDecay(0.5, 0.8, **{"begin_step": 0, "end_step": 16, **bad})
