"""TensorBoard summaries (issue 16): pruning sparsity per mask update and clustering cluster count /
centroid drift land in ``<log_dir>/train`` on keras.callbacks.TensorBoard's batch step axis.
Checked by reading the event files back (tf.compat.v1.train.summary_iterator)."""
import glob
import importlib.util
import os

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.schedules import PolynomialDecay

RNG = np.random.default_rng(1)
X = RNG.normal(size=(96, 10)).astype("float32")
Y = RNG.integers(0, 3, size=96)


def mlp():
    inputs = keras.Input((10,))
    h = keras.layers.Dense(16, activation="relu", name="d1")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


# keras.callbacks.TensorBoard writes through tf.summary.scalar, which needs the tensorboard package.
# Without it the test checks our points against the axis that callback uses (one step per
# on_train_batch_end call of the fit, from 1) instead of against its files.
HAVE_TB = importlib.util.find_spec("tensorboard") is not None


def keras_tb(log_dir):
    return [keras.callbacks.TensorBoard(str(log_dir), update_freq=1)] if HAVE_TB else []


def batch_steps(scalars, calls):
    """Keras's batch axis: from its own event files when available."""
    return [s for s, _ in scalars["batch_loss"]] if HAVE_TB else list(range(1, calls + 1))


def read_scalars(log_dir):
    """{tag: [(step, value), ...]} from every event file in ``log_dir/train``."""
    import tensorflow as tf

    out = {}
    files = glob.glob(os.path.join(str(log_dir), "train", "events.*"))
    assert files, os.listdir(str(log_dir))
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                v = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                out.setdefault(value.tag, []).append((int(event.step), v))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("spe", [1, 2])
def test_sparsity_per_update_step_lines_up_with_keras_tensorboard(tmp_path, spe):
    with pytest.warns(UserWarning, match="ends at sparsity 0.778 instead of 0.8"):  # 12 steps: 0..11
        schedule = PolynomialDecay(0.2, 0.8, begin_step=0, end_step=12, frequency=4)
    pruned = dc_keras.prune(mlp(), schedule)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=spe)
    pruned.fit(X, Y, batch_size=16, epochs=3, verbose=0,  # 18 steps; updates at 0, 4, 8, 12
               callbacks=keras_tb(tmp_path) + [dc_keras.PruningCallback(log_dir=str(tmp_path))])
    scalars = read_scalars(tmp_path)
    keras_steps = batch_steps(scalars, 18 // spe)
    assert keras_steps == list(range(1, 18 // spe + 1))
    points = scalars["sparsity/d1/kernel"]
    # the call that ran step s is number s // spe + 1 on Keras's axis
    assert [s for s, _ in points] == [keras_steps[s // spe] for s in (0, 4, 8, 12)]
    expected = [schedule.sparsity_at(s) for s in (0, 4, 8, 12)]
    assert [v for _, v in points] == pytest.approx(expected, abs=1 / 160 + 1e-6)  # 160 weights
    assert points[-1][1] == pytest.approx(0.8, abs=0.01)
    assert [s for s, _ in scalars["sparsity/out/kernel"]] == [s for s, _ in points]  # every layer logged
    assert not glob.glob(os.path.join(str(tmp_path), "events.*")), "nothing outside Keras's run folders"


def test_clustering_summaries(tmp_path):
    clustered = dc_keras.cluster(mlp(), bits=2)
    clustered.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clustered.fit(X, Y, batch_size=16, epochs=2, verbose=0,
                  callbacks=keras_tb(tmp_path) + [dc_keras.train.ClusteringSummaries(str(tmp_path), update_freq=3)])
    scalars = read_scalars(tmp_path)
    counts = scalars["clusters/d1/kernel"]
    drift = scalars["centroid_drift/d1/kernel"]
    steps = [s for s, _ in counts]
    assert steps == [3, 6, 6, 9, 12, 12]  # every 3 batches and at each epoch end (6 batches/epoch)
    assert all(0 < v <= 4 for _, v in counts)
    assert drift[0][1] > 0 and drift[-1][1] >= drift[0][1] * 0.5
    assert {s for s, _ in drift} <= set(batch_steps(scalars, 12))


def test_clustering_summaries_epoch_mode_steps(tmp_path):
    clustered = dc_keras.cluster(mlp(), bits=2)
    clustered.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=4)
    clustered.fit(X, Y, batch_size=16, epochs=2, verbose=0,
                  callbacks=[dc_keras.train.ClusteringSummaries(str(tmp_path))])
    # 6 batches per epoch in executions of 4 -> 2 calls per epoch
    assert [s for s, _ in read_scalars(tmp_path)["clusters/out/kernel"]] == [2, 4]
    with pytest.raises(ValueError, match="update_freq"):
        dc_keras.train.ClusteringSummaries(str(tmp_path), update_freq=0)


def pruned_mlp(levels=None):
    """mlp() with half of d1's kernel exactly 0 (``out`` keeps no zeros); ``levels``: d1's
    non-zero weights set to these few values (fewer than the clusters: k-means leaves some empty)."""
    keras.utils.set_random_seed(0)
    model = mlp()
    kernel, bias = model.get_layer("d1").get_weights()
    kernel[np.abs(kernel) < np.median(np.abs(kernel))] = 0
    if levels is not None:
        nonzero = np.flatnonzero(kernel)
        kernel.flat[nonzero] = np.resize(np.asarray(levels, kernel.dtype), nonzero.size)
    model.get_layer("d1").set_weights([kernel, bias])
    return model


def centroids_of(model, name):
    """Layer ``name``'s kernel centroids and assignments (its variables, by name)."""
    from dc_keras.train.summaries import sync_model_state

    sync_model_state(model)  # JAX keeps fit()'s values apart during an epoch
    value = {v.name: keras.ops.convert_to_numpy(v).copy() for v in model.get_layer(name).weights}
    return value["kernel_centroids"], value["kernel_assignments"]


@pytest.mark.parametrize("route", ["tfmot", "wrapper", "cluster"])
def test_centroid_drift_averages_the_centroids_that_hold_weights(tmp_path, route):
    """centroid_drift/<layer>/<weight> averaged |now - start| over every centroid, also those no
    weight is assigned to: the spare centroid a kernel with zeros keeps at 0 under tfmot's count
    (cluster_weights(preserve_sparsity=True), ClusterWrapper(zero_takes_a_cluster=True)), and
    clusters k-means left empty. They never move, so with 8 clusters the drift read 7/8 of the
    trained centroids' mean. Now the mean is over the centroids that hold weights, checked
    against the values read from the layer before fit and at each epoch end; clusters/ counts
    the distinct non-zero values (the zero is not one of them)."""
    from dc_keras.compat import tfmot

    n = 8
    if route == "tfmot":
        clustered = tfmot.clustering.keras.cluster_weights(
            pruned_mlp(), number_of_clusters=n, preserve_sparsity=True,
            cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR)
        summaries = tfmot.clustering.keras.ClusteringSummaries(str(tmp_path))
    elif route == "wrapper":
        model = pruned_mlp()
        inputs = keras.Input((10,))
        h = dc_keras.train.ClusterWrapper(model.get_layer("d1"), clusters=n, preserve_sparsity=True,
                                          zero_takes_a_cluster=True, name="d1")(inputs)
        out = dc_keras.train.ClusterWrapper(model.get_layer("out"), clusters=n, preserve_sparsity=True,
                                            zero_takes_a_cluster=True, name="out")(h)
        clustered = keras.Model(inputs, out)
        summaries = dc_keras.train.ClusteringSummaries(str(tmp_path))
    else:  # dc_keras.cluster's own count: no spare centroid, but 3 weight values for 8 clusters
        clustered = dc_keras.cluster(pruned_mlp(levels=[-0.5, 0.25, 0.75]), clusters=n, preserve_sparsity=True)
        summaries = dc_keras.train.ClusteringSummaries(str(tmp_path))
    start, assignments = centroids_of(clustered, "d1")
    held = np.isin(np.arange(n), assignments)
    trained = {"tfmot": n - 1, "wrapper": n - 1, "cluster": 3}[route]
    assert held.sum() == trained
    ends = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda _epoch, _logs: ends.append(centroids_of(clustered, "d1")[0]))
    clustered.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clustered.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[summaries, record])

    scalars = read_scalars(tmp_path)
    drift = [v for _, v in scalars["centroid_drift/d1/kernel"]]
    assert [s for s, _ in scalars["centroid_drift/d1/kernel"]] == [6, 12]
    assert np.array_equal(centroids_of(clustered, "d1")[1], assignments)  # only the centroids train
    for value, now in zip(drift, ends):
        assert np.array_equal(now[~held], start[~held])  # the unused centroids never move
        expected = np.mean(np.abs(now[held] - start[held]))
        assert value == pytest.approx(expected, rel=1e-6)
        assert abs(value - np.mean(np.abs(now - start))) > 0.05 * value  # what the old code wrote
    assert drift[-1] > 0
    # clusters/: the distinct non-zero values in use (tfmot counts the zero among its n; not here)
    final = dc_keras.strip(clustered)
    kernel = final.get_layer("d1").get_weights()[0]
    assert [v for _, v in scalars["clusters/d1/kernel"]] == [trained, trained]
    assert np.unique(kernel[kernel != 0]).size == trained and np.unique(kernel).size == trained + 1
    assert [v for _, v in scalars["clusters/out/kernel"]] == [n, n]  # no zeros there: all n centroids used


@pytest.mark.parametrize("kind", ["pruning", "clustering"])
def test_one_callback_listed_twice_acts_once(tmp_path, kind):
    """The same PruningCallback / ClusteringSummaries instance listed twice in fit()'s callbacks
    got every hook twice: its batch counter ran at double speed, so its points landed at twice
    Keras TensorBoard's step. Listed twice it now writes exactly what it writes listed once (same
    tags, steps and values, bit for bit) and trains the same weights."""
    def run(log_dir, twice):
        keras.utils.set_random_seed(3)
        model = mlp()
        if kind == "pruning":
            compressed = dc_keras.prune(model, PolynomialDecay(0.2, 0.6, begin_step=0, end_step=10, frequency=2))
            cb = dc_keras.PruningCallback(log_dir=str(log_dir))
        else:
            compressed = dc_keras.cluster(model, bits=2)
            cb = dc_keras.train.ClusteringSummaries(str(log_dir), update_freq=2)
        compressed.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        compressed.fit(X, Y, batch_size=16, epochs=2, verbose=0, shuffle=False,
                       callbacks=[cb, keras.callbacks.History(), cb] if twice else [cb])
        return read_scalars(log_dir), [w.copy() for w in compressed.get_weights()]

    once, once_weights = run(tmp_path / "once", False)
    twice, twice_weights = run(tmp_path / "twice", True)
    assert once and twice == once
    assert len(twice_weights) == len(once_weights)
    assert all(np.array_equal(a, b) for a, b in zip(twice_weights, once_weights))
    assert max(s for points in once.values() for s, _ in points) <= 12  # 6 batches per epoch, 2 epochs


def test_an_unwritable_log_dir_is_refused_when_the_callback_is_made(tmp_path, monkeypatch):
    """PruningCallback(log_dir=) / ClusteringSummaries(log_dir) took a log_dir under a regular file
    (or in a read-only directory) and failed only inside fit(), after training started, with
    TensorFlow's raw CreateSummaryFileWriter error. Now the constructor raises the OSError
    to_tflite(path=) gives: errno, what to do, the path."""
    from dc_keras.compat import tfmot
    from dc_keras.train import summaries

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    makers = (lambda d: dc_keras.PruningCallback(log_dir=d), lambda d: dc_keras.train.ClusteringSummaries(d),
              lambda d: tfmot.sparsity.keras.PruningSummaries(log_dir=d),
              lambda d: tfmot.clustering.keras.ClusteringSummaries(log_dir=d))
    for bad in (a_file / "logs", a_file, str(a_file / "deeper" / "logs")):
        for make in makers:
            with pytest.raises(NotADirectoryError, match=rf"Not a directory; {a_file} is a file, so `log_dir` cannot "
                                                         r"be created there .*: choose a log_dir in a writable "
                                                         r"directory, e.g. 'logs'"):
                make(bad)
    assert os.listdir(tmp_path) == ["notes.txt"]
    monkeypatch.setattr(summaries, "_writable", lambda *_: False)  # root ignores chmod
    for make in makers:
        with pytest.raises(PermissionError, match=rf"Permission denied; {tmp_path} is not writable, so the summaries "
                                                  r"cannot be written to <log_dir>/train: choose a log_dir"):
            make(tmp_path / "new" / "logs")
    monkeypatch.undo()
    assert dc_keras.PruningCallback(log_dir=tmp_path / "new" / "logs").log_dir == str(tmp_path / "new" / "logs")
    assert dc_keras.train.ClusteringSummaries("gs://bucket/logs").log_dir == "gs://bucket/logs"
    assert os.listdir(tmp_path) == ["notes.txt"]  # nothing created before fit()
