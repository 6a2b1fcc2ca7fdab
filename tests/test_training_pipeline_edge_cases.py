"""Training-side review (session 43): cases a user hits that the training code got wrong.

Runs on every backend (listed in the Makefile's BACKEND_TESTS): the pipeline case was silent on JAX.
"""
import keras
import numpy as np
import pytest

from dc_keras import pipeline

RNG = np.random.default_rng(0)
X = RNG.normal(size=(256, 12)).astype("float32")
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype("int32")


def _classifier(outputs=1, seed=0):
    """Dense(16) then one sigmoid score per sample (``outputs`` 1) or a softmax over ``outputs`` classes."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                             keras.layers.Dense(outputs, activation="sigmoid" if outputs == 1 else "softmax",
                                                name="out")])


@pytest.mark.parametrize("step", ["train_baseline", "prune_retrain", "cluster_finetune"])
def test_pipeline_refuses_a_model_with_one_score_per_sample(step):
    """The pipeline's recipe trains class scores with sparse_categorical_crossentropy. A binary
    classifier ending in Dense(1, sigmoid) has nothing to learn under it: on JAX train_baseline ran
    its epochs without changing a weight and returned as if trained (binary accuracy 0.54 on
    separable data); TensorFlow's fit() failed in its first step with 'Received a label value of 1
    which is outside the valid range of [0, 1)', torch's with 'IndexError: Target 1 is out of bounds.'. Each training step now refuses it before training,
    naming the fix, and leaves the model as it was."""
    model = _classifier()
    before = [w.copy() for w in model.get_weights()]
    call = {"train_baseline": lambda: pipeline.train_baseline(model, X, Y, 1, max_shift=0, verbose=0),
            "prune_retrain": lambda: pipeline.prune_retrain(model, X, Y, 0.5, 1, max_shift=0, verbose=0),
            "cluster_finetune": lambda: pipeline.cluster_finetune(model, X, Y, bits=3, epochs=1, max_shift=0,
                                                                  verbose=0)}[step]
    with pytest.raises(ValueError, match=rf"^{step}: the model gives one score per sample \(output shape \(16, 1\).*"
                                         r"End the model in one score per class \(Dense\(2\).*binary_crossentropy"):
        call()
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_pipeline_still_trains_two_class_scores():
    """The same data through a two-unit softmax head trains (the check above leaves such models alone)."""
    model = _classifier(2)
    pipeline.train_baseline(model, X, Y, 10, lr=1e-2, batch_size=32, max_shift=0, verbose=0)
    accuracy = float(np.mean(np.argmax(keras.ops.convert_to_numpy(model(X)), -1) == Y))
    assert accuracy > 0.9


def test_layer_stats_of_a_wrapped_model_counts_what_strip_gives():
    """pipeline.layer_stats of a clustered model that was not stripped yet returned no rows at all
    (a clustered kernel is not trainable: its centroids are), silently; a wrapped layer's rows now
    hold the values strip() gives it, so they equal the stripped model's rows, pruned or clustered."""
    import dc_keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                              keras.layers.Dense(2, name="out")])
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(X, Y, batch_size=64, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    sparse = dc_keras.strip(pruned)
    assert pipeline.layer_stats(pruned) == pipeline.layer_stats(sparse)
    clustered = dc_keras.cluster(sparse, bits=2)
    clustered.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clustered.fit(X, Y, batch_size=64, epochs=1, verbose=0)
    rows = pipeline.layer_stats(clustered)
    assert rows == pipeline.layer_stats(dc_keras.strip(clustered))
    assert [(r["layer"], r["params"], r["nonzero"], r["distinct"]) for r in rows] == \
        [("fc1", 192, 96, 4), ("out", 32, 16, 4)]


def test_polynomial_decay_with_begin_step_equal_to_end_step_prunes_to_final_sparsity():
    """PolynomialDecay(0.0, 0.9, begin_step=4, end_step=4): one-shot pruning at step 4. Its one update
    used initial_sparsity (the ramp's span was taken as 1 step, at progress 0), so the layer was never
    pruned, and the warnings blamed begin_step ('after the last step') and frequency ('Lower
    `frequency` (e.g. to a divisor of end_step - begin_step = 0)'). It now prunes to final_sparsity
    there, on the host and in a traced step alike, without a constructor warning."""
    import warnings

    import dc_keras

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schedule = dc_keras.schedules.PolynomialDecay(0.0, 0.9, begin_step=4, end_step=4, frequency=1)
    assert not [w for w in caught if "PolynomialDecay" in str(w.message)]
    assert schedule.sparsity_at(4) == pytest.approx(0.9) and schedule.sparsity_at(3) == 0.0
    assert float(keras.ops.convert_to_numpy(schedule.sparsity(4))) == pytest.approx(0.9)
    assert float(keras.ops.convert_to_numpy(schedule.sparsity(3))) == 0.0
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(20, activation="relu", name="fc1"),
                              keras.layers.Dense(2, name="out")])
    pruned = dc_keras.prune(model, schedule)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])  # 8 steps
    assert pruned.get_layer("fc1").sparsity()["kernel"] == pytest.approx(0.9)
    kernel = keras.ops.convert_to_numpy(dc_keras.strip(pruned).get_layer("fc1").kernel)
    assert np.count_nonzero(kernel) == 24  # 240 weights, 216 pruned


def test_fit_with_initial_epoch_checks_the_steps_it_runs():
    """fit(epochs=3, initial_epoch=1) runs 2 epochs, but PruningCallback checked the schedule's reach
    over 3 (Keras's params hold `epochs`, not the first epoch): with end_step=18 and 8 steps an
    epoch it took the update at step 18 as reached, stayed silent, and the layers ended at 0.77 of
    the 0.8 target (strip() warned later). The check now runs at the first epoch, over the epochs
    the fit runs."""
    import warnings

    import dc_keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(20, activation="relu", name="fc1"),
                              keras.layers.Dense(2, name="out")])
    pruned = dc_keras.prune(model, dc_keras.schedules.PolynomialDecay(0.0, 0.8, 0, end_step=18, frequency=4))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned.fit(X, Y, batch_size=32, epochs=3, initial_epoch=1, verbose=0,
                   callbacks=[dc_keras.PruningCallback()])
    said = [str(w.message) for w in caught if "fit() of layer 'fc1'" in str(w.message)]
    assert len(said) == 1 and "runs steps 0..15, so it ends at sparsity 0.77 instead of 0.8" in said[0], said
    assert pruned.get_layer("fc1").sparsity()["kernel"] == pytest.approx(0.77, abs=0.005)


def test_clustering_a_clustered_model_again_keeps_its_shared_values():
    """cluster() of a model clustered, fine-tuned and stripped before, with as many clusters, merged
    some of its shared values (linear init + Lloyd iterations: two values into one centroid, another
    centroid left empty) and changed its outputs, silently: resuming fine-tuning from a stripped
    checkpoint lost accuracy. A kernel with at most `clusters` distinct values now keeps each one."""
    import dc_keras
    from dc_keras.train.kmeans import kmeans_1d

    rng = np.random.default_rng(1)
    for k in (4, 8, 32):
        values = rng.normal(size=k) * 0.1
        w = rng.choice(values, size=3000, p=rng.dirichlet(np.full(k, 0.5)))
        for init in ("linear", "density", "random", "kmeans++"):
            centroids, assignments = kmeans_1d(w, k, init=init, split_at_zero=True)
            np.testing.assert_array_equal(centroids[assignments], w)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(2, name="out")])
    clustered = dc_keras.cluster(model, bits=3)
    clustered.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clustered.fit(X, Y, batch_size=32, epochs=3, verbose=0)
    once = dc_keras.strip(clustered)
    twice = dc_keras.strip(dc_keras.cluster(once, bits=3))
    for name in ("fc1", "out"):
        a = keras.ops.convert_to_numpy(once.get_layer(name).kernel)
        assert np.unique(a).size == 8
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(twice.get_layer(name).kernel), a)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(twice(X)), keras.ops.convert_to_numpy(once(X)))


def test_cluster_finetune_passes_preserve_sparsity_on():
    """cluster_finetune(..., preserve_sparsity=False) (a dc_keras.cluster keyword, which its
    **cluster_kwargs pass on) was Python's 'got multiple values for keyword argument
    'preserve_sparsity'' TypeError: the step set it to True itself. True stays the default; False
    clusters the zeros with the other weights: their shared value trains away from zero."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                              keras.layers.Dense(2, name="out")])
    kernel = model.get_layer("fc1").kernel
    pruned = keras.ops.convert_to_numpy(kernel).copy()
    pruned[np.abs(pruned) < np.quantile(np.abs(pruned), 0.5)] = 0.0
    kernel.assign(pruned)
    kept = pipeline.cluster_finetune(model, X, Y, bits=2, epochs=1, lr=1e-2, batch_size=32, max_shift=0, verbose=0)
    assert np.all(keras.ops.convert_to_numpy(kept.get_layer("fc1").kernel)[pruned == 0] == 0)
    mixed = pipeline.cluster_finetune(model, X, Y, bits=2, epochs=1, lr=1e-2, batch_size=32, max_shift=0, verbose=0,
                                      preserve_sparsity=False)
    values = keras.ops.convert_to_numpy(mixed.get_layer("fc1").kernel)
    assert len(np.unique(values)) <= 4 and np.any(values[pruned == 0] != 0)


@pytest.mark.parametrize("step", ["train_baseline", "prune_retrain", "cluster_finetune"])
def test_same_seed_gives_the_same_weights(step):
    """The pipeline's ``seed`` fixes its runs: the same model trained twice in one process with the same
    seed ends with the same weights, bit for bit. fit() used to shuffle the batches' order itself
    (Keras's PyDataset shuffle, from Python's unseeded ``random``) on top of ShiftedBatches' seeded
    order: paper_table1.py's pruned and shared LeNets differed from run to run (helper-186, session 48).
    Python's ``random`` is reseeded from the OS after each model is built (keras.utils.set_random_seed
    seeds it too), as in a process that never seeded it."""
    import random

    def run():
        model = _classifier(2, seed=1)
        random.seed()
        if step == "train_baseline":
            return pipeline.train_baseline(model, X, Y, 2, batch_size=32, max_shift=0, seed=3, verbose=0)
        if step == "prune_retrain":
            return pipeline.prune_retrain(model, X, Y, 0.5, 2, batch_size=32, max_shift=0, seed=3, verbose=0)
        return pipeline.cluster_finetune(model, X, Y, bits=3, epochs=2, batch_size=32, max_shift=0, seed=3, verbose=0)

    first, second = run().get_weights(), run().get_weights()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, second))


def test_each_step_draws_its_own_batch_stream(monkeypatch):
    """train_baseline, prune_retrain and cluster_finetune with the same ``seed`` see different batch
    orders: until session 49 retraining replayed the baseline's order and shifts epoch for epoch. The
    same step with the same seed still sees the same order (the run stays fixed by ``seed``)."""
    orders = {}
    made = pipeline._batches

    def recording(x, y, batch_size, max_shift, seed):
        batches = made(x, y, batch_size, max_shift, seed)
        orders.setdefault(step_now[0], []).append(batches.order.copy())
        return batches

    monkeypatch.setattr(pipeline, "_batches", recording)
    step_now = [None]
    for _ in range(2):
        step_now[0] = "train_baseline"
        model = pipeline.train_baseline(_classifier(2, seed=1), X, Y, 1, batch_size=32, max_shift=0, seed=3, verbose=0)
        step_now[0] = "prune_retrain"
        pruned = pipeline.prune_retrain(model, X, Y, 0.5, 1, batch_size=32, max_shift=0, seed=3, verbose=0)
        step_now[0] = "cluster_finetune"
        pipeline.cluster_finetune(pruned, X, Y, bits=3, epochs=1, batch_size=32, max_shift=0, seed=3, verbose=0)
    # prune_retrain also builds its batches once to count the steps: its last order is the one it trains on
    first = {step: o[len(o) // 2 - 1] for step, o in orders.items()}
    second = {step: o[-1] for step, o in orders.items()}
    assert len(first) == 3
    for step in first:
        assert np.array_equal(first[step], second[step]), step
    assert not np.array_equal(first["train_baseline"], first["prune_retrain"])
    assert not np.array_equal(first["train_baseline"], first["cluster_finetune"])
    assert not np.array_equal(first["prune_retrain"], first["cluster_finetune"])
