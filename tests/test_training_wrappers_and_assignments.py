"""A review of the training API (dc_keras/train/, dc_keras/compat/tfmot/), session 47:

* the tfmot drop-in's wrapper classes ``PruneLowMagnitude`` / ``ClusterWeights`` take tfmot 0.8.1's
  constructor arguments (``PruneLowMagnitude(layer, pruning_schedule=...)`` was Keras's generic
  ``TypeError``: the name was an alias of ``PruneWrapper(layer, schedule)``);
* numpy 2's ``DeprecationWarning`` "__array__ implementation doesn't accept a copy keyword", raised by
  dc_keras's reads of Keras variables (``keras.ops.convert_to_numpy(variable)``, ``variable.numpy()``,
  ``layer.get_weights()`` on JAX) at every mask update, step count and rebuild;
* centroid assignments put out of range by ``set_weights`` / ``assign``: trained on clamped indices on
  JAX without the native kernels, reported late (or not at all in a ``fit(verbose=0)``) with them,
  and with TF's own ``InvalidArgumentError`` at the first step; now refused by the ``assign`` itself,
  one ``ValueError`` on every backend;
* ``RNN(StackedRNNCells([...]))`` of LSTM/GRU/SimpleRNN cells was left dense ("unsupported recurrent
  cell"): its cells' kernels are compressed now, as tfmot's registry does.

Runs in the TensorFlow pass and again under JAX and PyTorch (the Makefile's BACKEND_TESTS); the export
test is TensorFlow's (export imports it).
"""
import traceback
import warnings

import keras
import numpy as np
import pytest

import dc_keras
import dc_keras.compat.tfmot as tfmot
from dc_keras.train import ClusterWrapper, PruneWrapper

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
RNG = np.random.default_rng(47)
X = RNG.normal(size=(64, 16)).astype("float32")
Y = RNG.integers(0, 4, 64)


def np_(v):
    return keras.ops.convert_to_numpy(keras.ops.copy(v))


def _mlp(first):
    keras.utils.set_random_seed(7)
    return keras.Sequential([keras.Input((16,)), first, keras.layers.Dense(4, name="out")])


def _compile(model):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


# --------------------------------------------------------------------------------------------
# 1. PruneLowMagnitude / ClusterWeights with tfmot's constructor arguments


def test_prune_low_magnitude_class_takes_tfmots_constructor_arguments(tmp_path):
    schedule = sparsity.ConstantSparsity(0.5, begin_step=0)
    wrapper = sparsity.PruneLowMagnitude(keras.layers.Dense(8, name="fc"), pruning_schedule=schedule,
                                         block_size=(1, 1), block_pooling_type="MAX", sparsity_m_by_n=(1, 4))
    assert type(wrapper) is PruneWrapper and isinstance(wrapper, sparsity.PruneLowMagnitude)
    assert wrapper.schedule is schedule and wrapper.name == "fc"
    assert wrapper.sparsity_m_by_n == (3, 4)  # tfmot's (1, 4): 1 zero in every 4 = dc_keras's 3 kept of 4
    assert isinstance(sparsity.prune_low_magnitude(keras.layers.Dense(3)), sparsity.PruneLowMagnitude)
    assert issubclass(PruneWrapper, sparsity.PruneLowMagnitude) and issubclass(sparsity.PruneLowMagnitude, PruneWrapper)
    assert not isinstance(keras.layers.Dense(3), sparsity.PruneLowMagnitude)
    # tfmot's default schedule, ConstantSparsity(0.5, 0); positional as in tfmot
    default = sparsity.PruneLowMagnitude(keras.layers.Dense(8))
    assert (default.schedule.target_sparsity, default.schedule.begin_step) == (0.5, 0)
    positional = sparsity.PruneLowMagnitude(keras.layers.Dense(8), schedule)
    assert positional.schedule is schedule

    model = _compile(_mlp(wrapper))
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the file names dc_keras's PruneWrapper
    assert type(loaded.get_layer("fc")) is PruneWrapper
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np_(a), np_(b))
    kernel = np_(sparsity.strip_pruning(loaded).get_layer("fc").kernel)
    groups = (kernel.T.reshape(8, 4, 4) == 0).sum(axis=-1)  # along the input dimension, 4 by 4
    assert np.all(groups == 1), groups


def test_prune_low_magnitude_class_refuses_what_it_does_not_support_with_one_clear_error():
    dense = keras.layers.Dense(8)
    with pytest.raises(TypeError, match=r"PruneLowMagnitude\(\) got schedule=, .*tfmot's arguments, "
                                        r"pruning_schedule=ConstantSparsity\(0\.5, 0\)"):
        sparsity.PruneLowMagnitude(dense, schedule=sparsity.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match=r"block_size=\(2, 2\): block sparsity is not supported by dc_keras; use "
                                         r"block_size=\(1, 1\)"):
        sparsity.PruneLowMagnitude(dense, block_size=(2, 2))
    with pytest.raises(ValueError, match="block_pooling_type must be 'AVG' or 'MAX', got 'MIN'"):
        sparsity.PruneLowMagnitude(dense, block_pooling_type="MIN")
    with pytest.raises(TypeError, match=r"got pruning_policy=.*argument of prune_low_magnitude\(model, \.\.\.\)"):
        sparsity.PruneLowMagnitude(dense, pruning_policy=None)
    with pytest.raises(ValueError, match=r"PruneLowMagnitude\(\) wraps one layer, got a model: call "
                                         r"prune_low_magnitude\(\.\.\.\) on it instead"):
        sparsity.PruneLowMagnitude(_mlp(keras.layers.Dense(8)))
    with pytest.raises(ValueError, match=r"wraps one layer, got a list"):
        sparsity.PruneLowMagnitude([dense])
    with pytest.raises(TypeError, match=r"PruneLowMagnitude cannot be subclassed here: .*Subclass "
                                        r"dc_keras\.train\.PruneWrapper"):
        type("Mine", (sparsity.PruneLowMagnitude,), {})
    assert not dense.built and not dense.weights  # nothing was wrapped on the way


def test_cluster_weights_class_takes_tfmots_constructor_arguments(tmp_path):
    wrapper = clustering.ClusterWeights(keras.layers.Dense(8, name="fc"), number_of_clusters=6,
                                        cluster_centroids_init=clustering.CentroidInitialization.LINEAR,
                                        preserve_sparsity=False, cluster_per_channel=False,
                                        cluster_gradient_aggregation="GradientAggregation.SUM")
    assert type(wrapper) is ClusterWrapper and isinstance(wrapper, clustering.ClusterWeights)
    assert (wrapper.clusters, wrapper.init, wrapper.preserve_sparsity, wrapper.name) == (6, "linear", False, "fc")
    positional = clustering.ClusterWeights(keras.layers.Dense(8), 5, "CentroidInitialization.DENSITY_BASED")
    assert (positional.clusters, positional.init) == (5, "density")
    assert isinstance(clustering.cluster_weights(keras.layers.Dense(3), 4), clustering.ClusterWeights)
    model = _compile(_mlp(wrapper))
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    path = tmp_path / "clustered.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.get_layer("fc")) is ClusterWrapper
    kernel = np_(clustering.strip_clustering(loaded).get_layer("fc").kernel)
    assert len(np.unique(kernel)) == 6
    # tfmot's cluster_weights passes the wrapper's keyword on too (SUM, its default, also for a model)
    clustered = clustering.cluster_weights(_mlp(keras.layers.Dense(8)), 4, cluster_gradient_aggregation="SUM")
    assert len(clustered.compression_report.wrapped) == 2


def test_cluster_weights_class_refuses_what_it_does_not_support_with_one_clear_error():
    dense = keras.layers.Dense(8)
    with pytest.raises(ValueError, match=r"cluster_gradient_aggregation=GradientAggregation\.AVG is not supported: "
                                         r"dc_keras gives each centroid the sum .* lower the learning rate"):
        clustering.ClusterWeights(dense, 4, cluster_gradient_aggregation="GradientAggregation.AVG")
    with pytest.raises(ValueError, match="cluster_gradient_aggregation=GradientAggregation.AVG is not supported"):
        clustering.cluster_weights(_mlp(keras.layers.Dense(8)), 4, cluster_gradient_aggregation="AVG")
    with pytest.raises(ValueError, match=r"cluster_gradient_aggregation must be GradientAggregation\.SUM .*got 'MEAN'"):
        clustering.ClusterWeights(dense, 4, cluster_gradient_aggregation="MEAN")
    with pytest.raises(TypeError, match=r"ClusterWeights\(\) got bits=, .*tfmot's arguments, number_of_clusters=2\*\*bits"):
        clustering.ClusterWeights(dense, bits=4)
    with pytest.raises(TypeError, match=r"got clusters=, .*number_of_clusters="):
        clustering.ClusterWeights(dense, 4, clusters=4)
    with pytest.raises(TypeError, match=r"got init=, .*cluster_centroids_init=CentroidInitialization\.LINEAR"):
        clustering.ClusterWeights(dense, 4, init="linear")
    with pytest.raises(TypeError, match=r"ClusterWeights\(\) missing its argument number_of_clusters \(as in tfmot\)"):
        clustering.ClusterWeights(dense)
    with pytest.raises(ValueError, match="cluster_per_channel=True: per-channel clustering is not supported"):
        clustering.ClusterWeights(dense, 4, cluster_per_channel=True)
    with pytest.raises(ValueError, match=r"ClusterWeights\(\) wraps one layer, got a model: call cluster_weights"):
        clustering.ClusterWeights(_mlp(keras.layers.Dense(8)), 4)
    with pytest.raises(TypeError, match="ClusterWeights cannot be subclassed here"):
        type("Mine", (clustering.ClusterWeights,), {})
    assert not dense.built


# --------------------------------------------------------------------------------------------
# 2. numpy 2's __array__ DeprecationWarning from dc_keras's reads of variables

# Keras's own (not caused by a read of dc_keras's): its .h5 writer converting the variables any
# layer's save_own_variables hands it (a plain Dense's too), and clone_model copying the compile
# config (the optimizer's learning_rate.numpy(), on JAX).
_KERAS_OWN = ("/keras/src/saving/", "/keras/src/models/cloning.py")


def _ours(record):
    """The dc_keras frame that made a copy-keyword DeprecationWarning, unless Keras's own code did."""
    frames = record["stack"]
    idx = [i for i, f in enumerate(frames) if "/dc_keras/" in f.filename and "site-packages" not in f.filename]
    if not idx:
        return None
    callee = frames[idx[-1] + 1].filename if idx[-1] + 1 < len(frames) else ""
    if any(part in callee for part in _KERAS_OWN):
        return None
    f = frames[idx[-1]]
    return f"{f.filename.rsplit('/dc_keras/', 1)[-1]}:{f.lineno} {f.name}"


def test_pruning_and_clustering_fits_raise_no_array_copy_deprecation_warning(tmp_path):
    # numpy 2 warns when np.array() calls an __array__ without a `copy` keyword: Keras 3.15's
    # Variable.__array__ (and, on TF, tf.Variable's) has none, so keras.ops.convert_to_numpy(variable)
    # warned at each of dc_keras's host reads: 99 warnings in this flow on TF before (mask updates,
    # step counts, the rebuild's weight copies, k-means, the assignment checks), 80 on JAX (also
    # get_weights() and BatchNormalization folding); -W error::DeprecationWarning stopped the fit.
    records = []
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning) and "copy keyword" in str(message):
            records.append({"stack": traceback.extract_stack()[:-1]})
        else:
            previous(message, category, filename, lineno, file, line)

    keras.utils.set_random_seed(3)
    x = RNG.normal(size=(64, 6, 6, 1)).astype("float32")

    def model():
        return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                                 keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Flatten(),
                                 keras.layers.Dense(12, name="fc1"), keras.layers.Dense(4, name="fc2")])

    with warnings.catch_warnings():
        warnings.simplefilter("always", DeprecationWarning)
        warnings.showwarning = show
        try:
            pruned = _compile(dc_keras.prune(model(), dc_keras.schedules.PolynomialDecay(0.2, 0.6, 0, 6, frequency=2)))
            pruned.fit(x, Y, batch_size=16, epochs=2, verbose=0,
                       callbacks=[dc_keras.PruningCallback(log_dir=str(tmp_path / "p"))])
            clustered = _compile(dc_keras.cluster(dc_keras.strip(pruned), bits=3, cluster_biases=True))
            clustered.fit(x, Y, batch_size=16, epochs=1, verbose=0,
                          callbacks=[dc_keras.train.ClusteringSummaries(str(tmp_path / "c"), update_freq=1)])
            dc_keras.strip(clustered)
            t = _compile(sparsity.prune_low_magnitude(model()))
            t.fit(x, Y, batch_size=16, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
            tc = _compile(clustering.cluster_weights(sparsity.strip_pruning(t), 8, preserve_sparsity=True))
            tc.fit(x, Y, batch_size=16, epochs=1, verbose=0)
            clustering.strip_clustering(tc)
        finally:
            warnings.showwarning = previous
    ours = [where for where in map(_ours, records) if where]
    assert ours == [], sorted(set(ours))


# --------------------------------------------------------------------------------------------
# 3. centroid assignments put out of range by the user

def _expected(bad, slots=4):
    return (f"Layer 'fc': the assignments of 'kernel' hold index {bad}, outside 0..{slots} ({slots} centroids and "
            f"the zero slot {slots}); the weights are damaged or were not written by dc_keras for this layer. "
            f"Give indices 0..{slots} (what get_weights() returns for a layer clustered with {slots} centroids), or "
            "cluster the stripped model again with dc_keras.cluster(). The variable keeps its previous values.")


@pytest.mark.parametrize("bad", [5, 99, -1])
def test_out_of_range_assignments_are_refused_by_assign_with_one_error_on_every_backend(bad):
    # Before: JAX without the native kernels clamped them in fit (99 -> the zero slot, -1 -> centroid 0),
    # its native kernels failed the step with an error that surfaced at a later read (a fit(verbose=0)
    # finished without one), TF's gathers raised InvalidArgumentError at the first step; only strip
    # and loads named the layer. Now every way in is checked before anything is stored.
    model = _compile(dc_keras.cluster(_mlp(keras.layers.Dense(8, name="fc")), bits=2, layers=["fc"]))
    wrapper = model.get_layer("fc")
    (variable,) = [v for v in wrapper.weights if v.path.endswith("kernel_assignments")]
    good = np_(variable)
    bad_values = good.copy()
    bad_values[3, 5] = bad
    message = "^" + _expected(bad).replace(".", r"\.").replace("(", r"\(").replace(")", r"\)") + "$"
    with pytest.raises(ValueError, match=message):
        variable.assign(bad_values)
    with pytest.raises(ValueError, match=message):
        wrapper.set_weights([bad_values if v is variable else np_(v) for v in wrapper.weights])
    with pytest.raises(ValueError, match=message):
        model.set_weights([bad_values if v is variable else np_(v) for v in model.weights])
    with pytest.raises(ValueError, match=message):
        variable.assign(keras.ops.convert_to_tensor(bad_values))
    np.testing.assert_array_equal(np_(variable), good)  # kept
    centroids = np_(wrapper._centroids[0])
    # in range (the zero slot included) it goes in and trains as usual (JAX writes the state back
    # through assign at each epoch end: checked, in range)
    in_range = good.copy()
    in_range[3, 5] = 4
    variable.assign(in_range)
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0)
    np.testing.assert_array_equal(np_(variable), in_range)
    assert not np.array_equal(np_(wrapper._centroids[0]), centroids)  # the centroids trained
    kernel = np_(dc_keras.strip(model).get_layer("fc").kernel)
    np.testing.assert_array_equal(kernel, np.append(np_(wrapper._centroids[0]), 0)[in_range])


# --------------------------------------------------------------------------------------------
# 4. RNN(StackedRNNCells([...])) of LSTM/GRU/SimpleRNN cells

def _stacked(name="stacked"):
    keras.utils.set_random_seed(11)
    cells = [keras.layers.LSTMCell(8), keras.layers.GRUCell(8), keras.layers.SimpleRNNCell(8)]
    return keras.Sequential([keras.Input((5, 3)), keras.layers.RNN(keras.layers.StackedRNNCells(cells), name=name),
                             keras.layers.Dense(4, name="out")])


_STACKED_WEIGHTS = ["cell_0_kernel", "cell_0_recurrent_kernel", "cell_1_kernel", "cell_1_recurrent_kernel",
                    "cell_2_kernel", "cell_2_recurrent_kernel"]
XS = RNG.normal(size=(64, 5, 3)).astype("float32")


def _prune_fit_strip(tmp_path):
    pruned = _compile(dc_keras.prune(_stacked(), dc_keras.schedules.ConstantSparsity(0.5, 0)))
    assert not pruned.compression_report.skipped, pruned.compression_report
    assert [n for n, _, _ in pruned.get_layer("stacked")._targets] == _STACKED_WEIGHTS
    pruned.fit(XS, Y, batch_size=16, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    for a, b in zip(pruned.weights, loaded.weights):
        np.testing.assert_array_equal(np_(a), np_(b))
    final = dc_keras.strip(loaded)
    for cell in final.get_layer("stacked").cell.cells:
        for kernel in (cell.kernel, cell.recurrent_kernel):
            assert np.mean(np_(kernel) == 0) == 0.5, (cell.name, kernel.path)
    path = tmp_path / "final.keras"
    final.save(path)
    again = keras.saving.load_model(path)
    assert type(again.get_layer("stacked").cell).__name__ == "StackedRNNCells"
    np.testing.assert_array_equal(np_(again(XS[:4])), np_(final(XS[:4])))
    return final


@pytest.fixture(scope="module")
def stacked_final(tmp_path_factory):
    """_prune_fit_strip's stripped model (its checks made once): the two tests below each made it."""
    return _prune_fit_strip(tmp_path_factory.mktemp("stacked"))


def test_stacked_rnn_cells_are_pruned_and_clustered_like_lstm(stacked_final):
    final = stacked_final
    clustered = _compile(dc_keras.cluster(final, bits=3, cluster_biases=True))
    names = [n for n, _, _ in clustered.get_layer("stacked")._targets]
    assert names == _STACKED_WEIGHTS + ["cell_0_bias", "cell_1_bias", "cell_2_bias"]
    clustered.fit(XS, Y, batch_size=16, epochs=1, verbose=0)
    shared = dc_keras.strip(clustered)
    for cell in shared.get_layer("stacked").cell.cells:
        for kernel in (cell.kernel, cell.recurrent_kernel):
            values = np_(kernel)
            assert len(np.unique(values[values != 0])) <= 8 and np.mean(values == 0) == 0.5
    # Bidirectional of a stacked RNN: forward_/backward_ before the cell's names
    keras.utils.set_random_seed(2)
    bi = keras.Sequential([keras.Input((5, 3)), keras.layers.Bidirectional(keras.layers.RNN(
        keras.layers.StackedRNNCells([keras.layers.LSTMCell(4), keras.layers.LSTMCell(4)])), name="bi")])
    names = [n for n, _, _ in dc_keras.cluster(bi, bits=2, cluster_biases=True).get_layer("bi")._targets]
    assert names[:2] == ["forward_cell_0_kernel", "forward_cell_0_recurrent_kernel"] and len(names) == 12
    assert names[-2:] == ["backward_cell_0_bias", "backward_cell_1_bias"]
    # the tfmot drop-in too (tfmot's registry takes a StackedRNNCells of these cells)
    assert type(sparsity.prune_low_magnitude(_stacked()).get_layer("stacked")) is PruneWrapper
    assert type(clustering.cluster_weights(_stacked(), 8).get_layer("stacked")) is ClusterWrapper


def test_stacked_rnn_cells_export_and_pack_bit_exact(request):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs in the TensorFlow pass (the other backends export through a TF child)")
    from dc_keras import export
    from dc_keras.pipeline import predict_tflite

    final = request.getfixturevalue("stacked_final")  # (after the skip: JAX/torch do not train it for this test)
    shared = dc_keras.strip(_compile(dc_keras.cluster(final, bits=3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the static-batch note for recurrent models
        plain = export.to_tflite(shared, pack=False)
    packed = export.pack(plain)
    rows = [r for r in export.inspect(packed).rows if r.dtype == "float32" and len(r.shape) == 2 and r.distinct > 1
            and "stacked" in r.name]  # the cells' six kernels (the 4x8 head is too small to pack)
    assert len(rows) == 6 and all(r.status == "packed" and r.distinct <= 9 for r in rows), \
        [(r.name, r.status, r.distinct) for r in export.inspect(packed).rows]
    assert len(packed) < len(plain)
    x = XS[:1]
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()
    np.testing.assert_allclose(predict_tflite(plain, x), np_(shared(x)), rtol=1e-4, atol=1e-5)


def test_to_numpy_returns_a_copy_on_every_backend():
    """_base.to_numpy (dc_keras's host read) gives an array of its own, as keras.ops.convert_to_numpy
    does: writing to it changes neither the variable nor the tensor read (on PyTorch it reads with
    the tensor's own .numpy(), which shares memory, to avoid numpy 2's __array__ warning)."""
    from dc_keras.train._base import to_numpy

    v = keras.Variable(np.arange(4, dtype="float32"))
    t = keras.ops.convert_to_tensor(np.arange(4, dtype="float32"))
    for source in (v, t):
        a = to_numpy(source)
        a[0] = 99.0
        np.testing.assert_array_equal(to_numpy(source), np.arange(4, dtype="float32"))
