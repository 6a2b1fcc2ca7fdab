"""Trained weight sharing (issue 5) through the public API: dc_keras.cluster / strip, and the 1-D k-means."""
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.schedules import ConstantSparsity
from dc_keras.train.clustering import centroid_sums_reference
from dc_keras.train.kmeans import init_centroids, kmeans_1d, split_counts

from _compress_flow import LAYER_CASES, layer_case

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 16)).astype("float32")
Y = RNG.integers(0, 4, size=96)


def mlp():
    inputs = keras.Input((16,))
    x = keras.layers.Dense(32, activation="relu", name="d1")(inputs)
    x = keras.layers.Dense(16, activation="relu", name="d2")(x)
    outputs = keras.layers.Dense(4, name="out")(x)
    return keras.Model(inputs, outputs, name="mlp")


def compile_(model, optimizer="adam", **kwargs):
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **kwargs)
    return model


def wrappers(model):
    return [l for l in model.layers if isinstance(l, dc_keras.train.ClusterWrapper)]


def np_(v):
    return keras.ops.convert_to_numpy(v)


# --------------------------------------------------------------------------------------------
# k-means


def test_kmeans_1d_finds_clusters_with_every_init():
    rng = np.random.default_rng(3)
    centers = np.array([-2.0, -0.5, 0.3, 1.7])
    values = np.concatenate([c + 0.01 * rng.normal(size=200) for c in centers])
    for init in ("linear", "density", "random", "kmeans++"):
        c, a = kmeans_1d(values, 4, init=init, seed=1)
        assert a.shape == values.shape and a.dtype == np.int64
        if init in ("linear", "density", "kmeans++"):
            np.testing.assert_allclose(c, centers, atol=0.01)
        # Lloyd fixed point: each centroid is the mean of its members; each value is nearest to its centroid
        for j in range(4):
            if np.any(a == j):
                assert c[j] == pytest.approx(values[a == j].mean())
        assert np.all(np.abs(values - c[a]) <= np.min(np.abs(values[:, None] - c[None, :]), axis=1) + 1e-12)


def test_kmeans_linear_init_spans_range():
    values = np.array([0.0, 0.1, 0.2, 10.0])
    c, a = kmeans_1d(values, 2, init="linear", max_iter=0)
    np.testing.assert_allclose(c, [0.0, 10.0])
    with pytest.raises(ValueError, match="init"):
        kmeans_1d(values, 2, init="nope")
    with pytest.raises(ValueError, match="NaN"):
        kmeans_1d(np.array([1.0, np.nan]), 2)
    with pytest.raises(ValueError, match="positive integer"):
        kmeans_1d(values, 0)


def _pruned_normal(shape, sparsity, seed=0, scale=1.0):
    """Normal weights with the ``sparsity`` fraction of smallest magnitudes set to 0 (as magnitude
    pruning leaves them: nothing in (-t, t) but the zeros)."""
    w = scale * np.random.default_rng(seed).normal(size=shape)
    return np.where(np.abs(w) > np.quantile(np.abs(w), sparsity), w, 0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_init_split_at_zero_keeps_every_centroid_live_on_pruned_weights(seed):
    """Linear over [min, max] of a pruned kernel's non-zero weights puts centroids in the empty
    interval around zero; no weight is nearest to them and they stay empty (the official
    LeNet-300-100 fc1 kept 7 of 8 shared values at 3 bits, fc2 13 of 16 at 4; here 6 of 8, 10 of
    16). split_at_zero spaces each side's centroids separately: all of them hold weights, and the
    k-means error is lower."""
    w = _pruned_normal(20000, 0.92, seed)
    nz = w[w != 0]
    for k in (8, 16):
        c_all, a_all = kmeans_1d(nz, k)
        c, a = kmeans_1d(nz, k, split_at_zero=True)
        assert np.unique(a_all).size < k  # the empty centroids of the plain linear init
        assert np.unique(a).size == k
        assert np.mean((nz - c[a]) ** 2) < 0.8 * np.mean((nz - c_all[a_all]) ** 2)
        c0 = init_centroids(nz, k, split_at_zero=True)
        assert not np.any((c0 > nz[nz < 0].max()) & (c0 < nz[nz > 0].min()))  # none starts in the gap
        assert c0[0] == nz.min() and c0[-1] == nz.max()  # the largest weights still have their own


def test_split_counts_shares_the_centroids_by_side():
    """In proportion to the number of weights on each side (tfmot's rule), with at least one per
    side that has weights and at most the side's distinct values; one-sided values take all k."""
    assert split_counts(np.r_[-np.ones(30) * np.arange(1, 31), np.arange(1, 11)], 8) == (6, 2)
    assert split_counts(np.r_[-0.5, np.linspace(0.1, 1, 99)], 8) == (1, 7)  # round(0.08) = 0: still one
    assert split_counts(np.r_[-0.5, -0.5, -0.4, np.linspace(0.2, 1, 7)], 8) == (2, 6)  # 2 distinct negatives
    assert split_counts(np.r_[-0.5, -0.5, -0.4, np.linspace(0.1, 1, 3)], 8) == (2, 6)  # 5 values for 8
    assert split_counts(np.r_[-1.0, -0.9, -0.8, -0.7, 0.5, 0.5], 4) == (3, 1)
    assert split_counts(np.linspace(0.1, 1, 10), 4) == (0, 4)
    assert split_counts(-np.linspace(0.1, 1, 10), 4) == (4, 0)
    values = np.linspace(0.1, 1, 10)  # one-sided: split_at_zero changes nothing
    np.testing.assert_array_equal(init_centroids(values, 4, split_at_zero=True), init_centroids(values, 4))
    with pytest.raises(ValueError, match="split_at_zero"):
        kmeans_1d(values, 2, split_at_zero="yes")


def test_cluster_keeps_every_shared_value_of_a_pruned_kernel(tmp_path):
    """dc_keras.cluster (default linear init, preserve_sparsity) on a magnitude-pruned kernel gives
    it 2**bits shared non-zero values, also after fine-tuning and strip (it gave 6 of 8 and 11 of
    16 here); an unpruned kernel is clustered as before (linear over [min, max]), and the file
    round-trips."""
    kernel = _pruned_normal((128, 128), 0.9, scale=0.1).astype("float32")
    for bits in (3, 4):
        model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(128, name="fc")])
        model.get_layer("fc").kernel.assign(kernel)
        clustered = compile_(dc_keras.cluster(model, bits=bits), keras.optimizers.Adam(1e-3))
        wrapper = clustered.get_layer("fc")
        assert wrapper.distinct_values() == {"kernel": 2 ** bits}
        clustered.fit(RNG.normal(size=(64, 128)).astype("float32"), RNG.integers(0, 128, 64), epochs=1, verbose=0)
        final = dc_keras.strip(clustered).get_layer("fc").kernel.numpy()
        assert np.unique(final[final != 0]).size == 2 ** bits
        np.testing.assert_array_equal(final == 0, kernel == 0)
    path = str(tmp_path / "clustered.keras")
    clustered.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("fc").init == "linear"
    np.testing.assert_array_equal(np_(loaded.get_layer("fc")._centroids[0]), np_(wrapper._centroids[0]))
    dense = mlp()
    k = dense.get_layer("d1").kernel.numpy().astype(np.float64)
    c, _ = kmeans_1d(k, 4)  # no zeros left out: the plain linear init
    np.testing.assert_allclose(np_(dc_keras.cluster(dense, bits=2).get_layer("d1")._centroids[0]), c, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# the wrapper


def test_cluster_unpruned_model_and_strip():
    model = mlp()
    before = [w.copy() for w in model.get_weights()]
    clustered = dc_keras.cluster(model, bits=3)
    assert [type(l).__name__ for l in clustered.layers[1:]] == ["ClusterWrapper"] * 3
    for w in wrappers(clustered):
        assert w.distinct_values()["kernel"] <= 8
        assert len(w.trainable_weights) == 2  # centroids + bias; the kernel itself is frozen
    plain = dc_keras.strip(clustered)
    for layer in plain.layers[1:]:
        assert type(layer) is keras.layers.Dense
        k = layer.kernel.numpy()
        assert 2 <= np.unique(k).size <= 8
    np.testing.assert_allclose(plain.predict(X, verbose=0), clustered.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # input untouched


def test_centroid_gradient_is_sum_of_member_gradients():
    import tensorflow as tf

    clustered = dc_keras.cluster(mlp(), bits=2, layers=["d1"])
    wrapper = clustered.get_layer("d1")
    plain = dc_keras.strip(clustered)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(Y, clustered(X, training=True))
    g_centroids = np_(tape.gradient(loss, wrapper._centroids[0]))
    with tf.GradientTape() as tape:
        loss = loss_fn(Y, plain(X, training=True))
    g_kernel = np_(tape.gradient(loss, plain.get_layer("d1").kernel))
    a = np_(wrapper._assignments[0])
    expected = np.array([g_kernel[a == j].sum() for j in range(4)])
    np.testing.assert_allclose(g_centroids, expected, rtol=1e-4, atol=1e-6)


def _value_and_centroid_grad(gather, centroids, assignments, upstream):
    """sum(gather(centroids, assignments) * upstream) and its gradient w.r.t. the centroids."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        c = tf.Variable(centroids)
        with tf.GradientTape() as tape:
            w = gather(tf.convert_to_tensor(c), tf.constant(assignments))
            loss = tf.reduce_sum(w * upstream)
        return np_(w), np_(tape.gradient(loss, c))
    if backend == "jax":
        import jax

        def f(c):
            w = gather(c, assignments)
            return (w * upstream).sum(), w

        (_, w), g = jax.value_and_grad(f, has_aux=True)(centroids)
        return np_(w), np_(g)
    import torch

    c = torch.tensor(centroids, requires_grad=True)
    w = gather(c, torch.tensor(assignments))
    (w * torch.tensor(upstream)).sum().backward()
    return np_(w.detach()), np_(c.grad)


# Each backend's native centroid kernels: (module in dc_keras.train, its switch, its make target).
_NATIVE = {"tensorflow": ("_tf_ops", "DC_KERAS_TF_OPS", "make tf-ops"),
           "jax": ("_jax_ffi", "DC_KERAS_JAX_FFI", "make jax-ffi")}


@pytest.fixture(params=["native", "fallback"])
def route(request, monkeypatch):
    """The training step's gather with the backend's native kernels (required: they must load) and
    without them (switched off); yields the native module (None on torch) to check which one ran."""
    if keras.backend.backend() not in _NATIVE:  # torch: one route, no native kernels
        if request.param == "native":
            pytest.skip(f"no native centroid kernels on the {keras.backend.backend()} backend (its route: 'fallback')")
        yield None
        return
    import importlib

    name, env, target = _NATIVE[keras.backend.backend()]
    module = importlib.import_module(f"dc_keras.train.{name}")
    monkeypatch.setattr(module, "_state", {})
    if request.param == "native" and not os.path.isfile(module.library_path()):
        pytest.skip(f"{module.library_path()} not built: run `{target}`")
    if request.param == "native":
        _skip_below_jax_ffi()
    monkeypatch.setenv(env, "1" if request.param == "native" else "0")
    yield module
    assert module._state.get("ok") is (request.param == "native"), module._state.get("why")


@pytest.mark.parametrize("clusters,shape", [(4, (300, 70)), (33, (300, 70)), (256, (300, 70)), (257, (3000, 300)),
                                            (33, (100, 10)), (16, (64, 64)), (16, (4097,))])  # TF: native <= 4096
def test_fast_centroid_gather_is_bit_exact_with_generic_take(clusters, shape, route):
    # The training step's gather (the native kernels, else XLA-compiled gather and segment sum on
    # TF, a promise_in_bounds lax.gather on JAX) must give exactly what keras.ops.take gives, and as
    # the centroid sums exactly dc_keras's part order (centroid_sums_reference: up to 8 parts, each
    # in index order, added in part order), which equals take's own gradient (plain index order)
    # where the kernel forms one part (up to 8,192 entries) and is within rounding of it elsewhere.
    from dc_keras.train.clustering import gather_centroids

    rng = np.random.default_rng(clusters)
    centroids = rng.normal(size=clusters).astype("float32")
    assignments = rng.integers(0, clusters + 1, size=shape).astype("int32")  # clusters: zero slot
    upstream = rng.normal(size=shape).astype("float32")

    def generic(c, a):
        table = keras.ops.concatenate([c, keras.ops.zeros((1,), c.dtype)], axis=0)
        return keras.ops.take(table, a, axis=0)

    w_fast, g_fast = _value_and_centroid_grad(gather_centroids, centroids, assignments, upstream)
    w_ref, g_ref = _value_and_centroid_grad(generic, centroids, assignments, upstream)
    np.testing.assert_array_equal(w_fast, w_ref)
    assert g_fast.shape == (clusters,)
    np.testing.assert_array_equal(g_fast, centroid_sums_reference(upstream, assignments, clusters + 1)[:clusters])
    if assignments.size <= 8192:
        np.testing.assert_array_equal(g_fast, g_ref)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-4, atol=1e-4)
    members = [upstream[assignments == j].sum(dtype=np.float64) for j in range(clusters)]
    np.testing.assert_allclose(g_fast, members, rtol=1e-4, atol=1e-4)


def test_centroid_sums_order_is_parts_in_index_order(route):
    # The order is dc_keras's own (every route gives these bits): 200,000 entries form 7 parts of
    # 32,768 (ceil(200,000 / 8) rounded up to a multiple of 8,192), the last one shorter; values
    # chosen so that plain index order and the part order differ in float32: 1e8 in part 0, then
    # 1.0 in every other entry of part 1, then -1e8 in part 5. Index order loses every 1.0
    # (1e8 + 1 == 1e8); the parts sum the ones exactly (16,384) before adding them to 1e8.
    from dc_keras.train.clustering import gather_centroids, sums_part_size

    assert [sums_part_size(c) for c in (1, 8192, 8193, 65_537, 200_000, 784 * 300)] == [8192] * 3 + [16_384] + [32_768] * 2
    count = 200_000
    assignments = np.zeros(count, "int32")
    assignments[1::2] = 1  # a second centroid takes the odd entries
    assignments[-5:] = 2  # the zero slot (2 centroids)
    upstream = np.zeros(count, "float32")
    upstream[0] = 1e8
    upstream[32_768:65_536:2] = 1.0
    upstream[190_000] = -1e8
    upstream[1::2] = 0.5
    _, grad = _value_and_centroid_grad(gather_centroids, np.array([0.25, -0.5], "float32"), assignments, upstream)
    expected = centroid_sums_reference(upstream, assignments, 3)[:2]
    np.testing.assert_array_equal(grad, expected)
    assert grad[0] == 16_384.0 and grad[1] == 0.5 * (count // 2 - 3)  # the odd entries but the last three
    serial = np.zeros(3, np.float32)
    np.add.at(serial, assignments, upstream)  # plain index order: every 1.0 lost next to 1e8
    assert serial[0] == 0.0


# --------------------------------------------------------------------------------------------
# JAX: the native centroid kernels (dc_keras/train/_jax_ffi.py, jax_kernels/dc_centroids.cc)


def _skip_below_jax_ffi():
    """The JAX native kernels need jax.ffi (JAX >= 0.5.0): an older JAX (setup.cfg's floor is lower)
    runs the lax.gather path, which the other cases test."""
    if keras.backend.backend() == "jax":
        import jax

        from dc_keras.train import _jax_ffi

        if not hasattr(jax, "ffi"):
            pytest.skip(f"JAX {jax.__version__} has no jax.ffi: the native kernels need JAX >= {_jax_ffi.MIN_JAX}")


@pytest.fixture
def jax_ffi():
    """The native-kernel module on the JAX backend; skips elsewhere, and (reported) when the library
    was not built (`make jax-ffi`, part of `make install`)."""
    if keras.backend.backend() != "jax":
        pytest.skip("the native centroid kernels are for the JAX backend (run with KERAS_BACKEND=jax)")
    from dc_keras.train import _jax_ffi

    if not os.path.isfile(_jax_ffi.library_path()):
        pytest.skip(f"{_jax_ffi.library_path()} not built: run `make jax-ffi`")
    _skip_below_jax_ffi()
    assert _jax_ffi.available()
    return _jax_ffi


def _lax_reference(c, a):
    from dc_keras.train.clustering import _gather_jax

    return _gather_jax(keras.ops.concatenate([c, keras.ops.zeros((1,), c.dtype)], axis=0), a)


# The native kernels' cases on both backends. 33 slots: the AVX-512 register-table gather; 48 the
# largest such table; 49+: the scalar loop; >= 65,536 entries the two-thread gather. Sizes that are not
# multiples of 16 exercise the tail. `pruned`: that fraction of the entries (mixed with blocks of
# none) point at the zero slot, as after prune -> cluster (the sums skip them by blocks). On TF,
# kernels below and above 4,096 entries also take the fallback's TF-kernel and XLA routes.
_NATIVE_CASES = pytest.mark.parametrize("clusters,shape,pruned", [
    (1, (5, 3), 0), (4, (7, 13), 0), (32, (784, 300), 0), (47, (61, 17), 0), (48, (100, 3), 0),
    (256, (300, 70), 0), (4096, (999, 31), 0), (32, (784, 300), 0.9), (5, (333, 77), 0.5)])


def _native_case(clusters, shape, pruned):
    """One case's ``(rng, centroids, assignments, upstream)``: signed zeros in the centroids and
    the upstream gradients (the sums start from +0.0 like XLA's scatter-add / unsorted_segment_sum)."""
    rng = np.random.default_rng(clusters)
    centroids = rng.normal(size=clusters).astype("float32")
    centroids[0] = -0.0
    assignments = rng.integers(0, clusters + 1, size=shape).astype("int32")
    if pruned:
        flat = assignments.reshape(-1)
        flat[rng.random(flat.size) < pruned] = clusters
        flat[5000:9000] = rng.integers(0, clusters, size=flat[5000:9000].size)  # blocks without zeros
    assignments.reshape(-1)[:3] = 0
    upstream = rng.normal(size=shape).astype("float32")
    upstream.reshape(-1)[:3] = -0.0
    return rng, centroids, assignments, upstream


def _assert_native_matches(native, reference, compiled, centroids, assignments, upstream):
    """The native gather's values and centroid gradients equal the reference's bit for bit (signs
    of zeros too), inside ``compiled`` (jax.jit / tf.function) and eagerly, and the gradients equal
    numpy's sums in dc_keras's part order; returns the eager ``(values, gradients)``."""
    for fn in (compiled, lambda f: f):
        w_fast, g_fast = _value_and_centroid_grad(fn(native), centroids, assignments, upstream)
        w_ref, g_ref = _value_and_centroid_grad(fn(reference), centroids, assignments, upstream)
        np.testing.assert_array_equal(w_fast, w_ref)
        assert np.signbit(w_fast).tolist() == np.signbit(w_ref).tolist()
        np.testing.assert_array_equal(g_fast, g_ref)
        assert np.signbit(g_fast).tolist() == np.signbit(g_ref).tolist()
    clusters = centroids.shape[0]
    np.testing.assert_array_equal(g_fast, centroid_sums_reference(upstream, assignments, clusters + 1)[:clusters])
    return w_fast, g_fast


@_NATIVE_CASES
def test_jax_native_kernels_are_bit_exact_with_the_lax_path(jax_ffi, clusters, shape, pruned):
    import jax

    rng, centroids, assignments, upstream = _native_case(clusters, shape, pruned)
    assert jax_ffi.usable(centroids, assignments)
    w_fast, g_fast = _assert_native_matches(jax_ffi.gather, _lax_reference, jax.jit, centroids, assignments, upstream)
    if assignments.size >= 65_536:  # chunks and parts shared with a pool thread, or not: the same bits
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DC_KERAS_JAX_FFI_SPLIT", "1" if not jax_ffi.split_mode() else "0")
            w_one, g_one = _value_and_centroid_grad(jax.jit(jax_ffi.gather), centroids, assignments, upstream)
        np.testing.assert_array_equal(w_one, w_fast)
        np.testing.assert_array_equal(g_one, g_fast)

    # Reverse over reverse (e.g. a gradient penalty): the gather and the sums transpose each other.
    def hvp(gather, c, a, u, v):
        grad = jax.grad(lambda c: (gather(c, a) ** 2 * u).sum())
        return jax.grad(lambda c: (grad(c) * v).sum())(c)

    v = rng.normal(size=clusters).astype("float32")
    np.testing.assert_array_equal(np_(jax.jit(hvp, static_argnums=0)(jax_ffi.gather, centroids, assignments, upstream, v)),
                                  np_(jax.jit(hvp, static_argnums=0)(_lax_reference, centroids, assignments, upstream, v)))


def test_jax_native_kernels_refuse_out_of_range_assignments(jax_ffi):
    import jax

    centroids = np.arange(4, dtype="float32")
    for bad in (5, -1):
        assignments = np.zeros((40,), "int32")
        assignments[33] = bad  # past the 32-entry vector part: found by the tail too
        with pytest.raises(Exception, match=rf"assignment {bad} outside 0\.\.4"):
            np.asarray(jax.jit(jax_ffi.gather)(centroids, assignments))
        with pytest.raises(Exception, match=rf"assignment {bad} outside 0\.\.4"):
            np.asarray(jax.grad(lambda c, a=assignments: jax_ffi.gather(c, a).sum())(centroids))
    large = np.zeros((400, 300), "int32")  # also a gather split between two threads: the first bad one
    large.reshape(-1)[[70_001, 110_003]] = (7, 9)
    with pytest.raises(Exception, match=r"assignment 7 outside 0\.\.4"):
        np.asarray(jax.jit(jax_ffi.gather)(centroids, large))
    sums = jax.ffi.ffi_call(jax_ffi._SUMS, jax.ShapeDtypeStruct((4,), "float32"))  # the sums kernel alone
    for first in (50_000, 50_030, 100_000):  # in a block the sums compress (mostly zero slot), in a later part
        pruned = np.full((400, 300), 4, "int32")
        pruned.reshape(-1)[[first, 110_000]] = (6, 8)
        for split in (False, True):  # the parts on one thread or shared: the first bad one either way
            with pytest.raises(Exception, match=r"assignment 6 outside 0\.\.4"):
                np.asarray(sums(np.ones(pruned.shape, "float32"), pruned, split=np.bool_(split)))
    for first, bad in ((50_175, -1), (51_199, 6), (100_000, 7)):  # dense blocks (no zero slot): the
        dense = np.arange(120_000, dtype="int32").reshape(400, 300) % 4  # range is checked per block
        dense.reshape(-1)[[first, 110_000]] = (bad, 8)
        for split in (False, True):
            with pytest.raises(Exception, match=rf"assignment {bad} outside 0\.\.4"):
                np.asarray(sums(np.ones(dense.shape, "float32"), dense, split=np.bool_(split)))
    with pytest.raises(Exception, match="120000 gradients for 119999 assignments"):
        np.asarray(sums(np.ones(120_000, "float32"), np.zeros(119_999, "int32"), split=np.bool_(True)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DC_KERAS_JAX_FFI_SPLIT", "yes")
        with pytest.raises(ValueError, match="DC_KERAS_JAX_FFI_SPLIT must be 0 or 1"):
            jax.jit(jax_ffi.gather)(centroids, np.zeros(8, "int32"))


# --------------------------------------------------------------------------------------------
# TensorFlow: the same kernel loops as custom ops (dc_keras/train/_tf_ops.py, jax_kernels/dc_centroids_tf.cc)


@pytest.fixture
def tf_ops():
    """The native-op module on the TF backend; skips elsewhere, and (reported) when the library was
    not built (`make tf-ops`, part of `make install`)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the native centroid ops are for the TensorFlow backend")
    from dc_keras.train import _tf_ops

    if not os.path.isfile(_tf_ops.library_path()):
        pytest.skip(f"{_tf_ops.library_path()} not built: run `make tf-ops`")
    assert _tf_ops.available(), _tf_ops._state.get("why")
    return _tf_ops


def _tf_fallback(c, a):
    import tensorflow as tf

    from dc_keras.train.clustering import _gather_tf

    return _gather_tf(tf.concat([c, tf.zeros((1,), c.dtype)], 0), a)


def _tf_hvp(gather, c, a, u, v):
    """Reverse over reverse (e.g. a gradient penalty): the gather's gradient differentiated again."""
    import tensorflow as tf

    c = tf.constant(c)
    with tf.GradientTape() as outer:
        outer.watch(c)
        with tf.GradientTape() as inner:
            inner.watch(c)
            loss = tf.reduce_sum(gather(c, tf.constant(a)) ** 2 * u)
        g = inner.gradient(loss, c)
        s = tf.reduce_sum(g * v)
    return np_(outer.gradient(s, c))


@_NATIVE_CASES
def test_tf_native_ops_are_bit_exact_with_the_fallback(tf_ops, clusters, shape, pruned):
    import tensorflow as tf

    rng, centroids, assignments, upstream = _native_case(clusters, shape, pruned)
    _, g_fast = _assert_native_matches(tf_ops.gather, _tf_fallback, tf.function, centroids, assignments, upstream)
    if assignments.size >= 65_536:  # the sums op's parts shared with a pool thread: the same bits
        split = np_(tf_ops._state["ops"][1](upstream, assignments, n=clusters, split=True))
        np.testing.assert_array_equal(split, g_fast)
    v = rng.normal(size=clusters).astype("float32")
    np.testing.assert_array_equal(_tf_hvp(tf_ops.gather, centroids, assignments, upstream, v),
                                  _tf_hvp(_tf_fallback, centroids, assignments, upstream, v))


def test_tf_native_ops_refuse_out_of_range_assignments(tf_ops):
    import tensorflow as tf

    centroids = tf.constant(np.arange(4, dtype="float32"))
    gather_op, sums_op = tf_ops._state["ops"]
    for bad in (5, -1):
        assignments = np.zeros((40,), "int32")
        assignments[33] = bad  # past the 32-entry vector part: found by the tail too
        for fn in (tf.function(tf_ops.gather), tf_ops.gather):
            with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assignment {bad} outside 0\.\.4"):
                fn(centroids, tf.constant(assignments))
    large = np.zeros((400, 300), "int32")  # also a gather split between two threads: the first bad one
    large.reshape(-1)[[70_001, 110_003]] = (7, 9)
    for split in (False, True):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"assignment 7 outside 0\.\.4"):
            gather_op(centroids, large, split=split)
    shared = np_(gather_op(centroids, np.minimum(np.arange(200_000, dtype="int32") % 7, 4), split=True))
    np.testing.assert_array_equal(shared, np.append(np_(centroids), 0)[np.minimum(np.arange(200_000) % 7, 4)])
    for first in (50_000, 50_030):  # in a block the sums compress (mostly zero slot): found there too
        pruned = np.full((400, 300), 4, "int32")
        pruned.reshape(-1)[[first, 90_000]] = (6, 8)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"assignment 6 outside 0\.\.4"):
            sums_op(np.ones(pruned.shape, "float32"), pruned, n=4)
    for first, bad in ((50_175, -1), (51_199, 6), (100_000, 7)):  # dense blocks (no zero slot): the
        dense = np.arange(120_000, dtype="int32").reshape(400, 300) % 4  # range is checked per block
        dense.reshape(-1)[[first, 110_000]] = (bad, 8)
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"assignment {bad} outside 0\.\.4"):
            sums_op(np.ones(dense.shape, "float32"), dense, n=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="120000 gradients for 119999 assignments"):
        sums_op(np.ones(120_000, "float32"), np.zeros(119_999, "int32"), n=4)
    # Before fit(): assignments damaged in memory used to stop the step with this op's error; since
    # 2026-12-06 the assign itself refuses them with the wrapper's (tests/test_training_wrappers_and_assignments.py).
    model = compile_(dc_keras.cluster(mlp(), bits=2, layers=["d1"]))
    a = np_(model.get_layer("d1")._assignments[0]).copy()
    a[3, 5] = 9
    with pytest.raises(ValueError, match=r"'d1'.*assignments of 'kernel' hold index 9, outside 0\.\.4"):
        model.get_layer("d1")._assignments[0].assign(a)


# --------------------------------------------------------------------------------------------
# Both backends: without the native library, clustered training falls back bit-identically.
# Per backend (besides _NATIVE's module, switch and make target): what the log says the fallback
# uses, the check that the module reports itself off, and the error each library that does not
# load gives: a foreign one (a shared library without the two kernels / ops) and a broken one
# (not an ELF file).
_FALLBACKS = {
    "jax": dict(route="lax.gather", off=lambda m: not m.usable(np.zeros(2, "float32"), np.zeros(3, "int32")),
                unloadable={"foreign": "AttributeError", "broken": "OSError"}),
    "tensorflow": dict(route="XLA-compiled tf.gather", off=lambda m: not m.available(),
                       unloadable={"foreign": "AttributeError", "broken": "NotFoundError"}),
}


@pytest.mark.parametrize("backend", sorted(_FALLBACKS))
def test_without_native_library_falls_back_bit_identically(backend, request, monkeypatch, caplog, tmp_path):
    spec = _FALLBACKS[backend]
    module, env, fix = _NATIVE[backend]
    native_module = request.getfixturevalue(module.lstrip("_"))  # the jax_ffi / tf_ops fixture: skips elsewhere

    def train():
        monkeypatch.setattr(native_module, "_state", {})  # decided afresh inside fit()'s trace of the step
        keras.utils.set_random_seed(1)
        model = mlp()
        k = model.get_layer("d1").kernel.numpy()
        model.get_layer("d1").kernel.assign(np.where(np.abs(k) < 0.2, 0.0, k))  # "pruned" weights
        model = compile_(dc_keras.cluster(model, bits=3), keras.optimizers.Adam(0.01))
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        return model

    native = train()
    assert native_module._state["ok"] is True, native_module.unavailable_reason()  # checked inside the trace
    assert native_module.unavailable_reason() is None
    missing = str(tmp_path / "absent.so")
    monkeypatch.setenv(f"{env}_LIBRARY", missing)
    with caplog.at_level("INFO", logger="dc_keras"):
        fallback = train()
        assert spec["off"](native_module)
    notes = [r.getMessage() for r in caplog.records if spec["route"] in r.getMessage()]
    assert len(notes) == 1 and missing in notes[0] and fix in notes[0]  # once, naming the fix
    assert missing in native_module.unavailable_reason()
    for a, b in zip(native.weights, fallback.weights):
        np.testing.assert_array_equal(np_(a), np_(b), err_msg=a.path)
    d1 = dc_keras.strip(native).get_layer("d1").kernel.numpy()
    np.testing.assert_array_equal(d1 == 0, dc_keras.strip(fallback).get_layer("d1").kernel.numpy() == 0)
    assert np.mean(d1 == 0) > 0.3  # preserve_sparsity: the zero slot stayed 0 on both routes
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not an ELF file")
    libraries = {"foreign": np._core._multiarray_umath.__file__, "broken": str(broken)}
    for kind, error in spec["unloadable"].items():
        path = libraries[kind]
        monkeypatch.setattr(native_module, "_state", {})
        monkeypatch.setenv(f"{env}_LIBRARY", path)
        with caplog.at_level("INFO", logger="dc_keras"):
            assert not native_module.available()
        assert f"{path} did not load ({error}" in caplog.records[-1].getMessage()
    monkeypatch.setattr(native_module, "_state", {})
    monkeypatch.setenv(f"{env}_LIBRARY", missing)
    monkeypatch.setenv(env, "1")  # asked for: an error naming the fix, not a fallback
    with pytest.raises(RuntimeError, match=f"{env}=1 .*{fix}"):
        native_module.available()
    monkeypatch.setenv(env, "0")
    assert not native_module.available()
    monkeypatch.setattr(native_module, "_state", {})
    monkeypatch.setenv(env, "yes")
    with pytest.raises(ValueError, match=f"{env} must be auto, 0 or 1"):
        native_module.available()


def test_loading_out_of_range_assignments_is_a_clear_error(tmp_path):
    import zipfile

    import h5py

    clustered = dc_keras.cluster(mlp(), bits=2)
    wrapper = wrappers(clustered)[0]
    good = tmp_path / "good.keras"
    clustered.save(good)
    # assign() refuses such an index (tests/test_training_wrappers_and_assignments.py): damage the file itself, the
    # wrapper's int32 array of its kernel's shape in model.weights.h5
    with zipfile.ZipFile(good) as z:
        members = {name: z.read(name) for name in z.namelist()}
    (tmp_path / "w.h5").write_bytes(members["model.weights.h5"])
    with h5py.File(tmp_path / "w.h5", "r+") as f:  # (groups named after the class: layers/cluster_wrapper/vars)
        found = []
        f.visititems(lambda _name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.dtype == np.int32
                     and obj.shape == tuple(wrapper.layer.kernel.shape) else None)
        a = found[0][...]
        a[0, 0] = 5  # 4 centroids + the zero slot 4: index 5 is outside the codebook
        found[0][...] = a
    members["model.weights.h5"] = (tmp_path / "w.h5").read_bytes()
    path = tmp_path / "damaged.keras"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ValueError, match=r"assignments of 'kernel' hold index 5, outside 0\.\.4"):
        keras.saving.load_model(path)


def test_prune_then_cluster_flow_keeps_zeros_and_assignments():
    pruned = compile_(dc_keras.prune(mlp(), ConstantSparsity(0.8, 0)))
    pruned.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    stripped = dc_keras.strip(pruned)
    zeros = {l.name: l.kernel.numpy() == 0 for l in stripped.layers[1:]}
    clustered = compile_(dc_keras.cluster(stripped, bits=2), keras.optimizers.Adam(0.01))
    c0 = {w.name: np_(w._centroids[0]).copy() for w in wrappers(clustered)}
    a0 = {w.name: np_(w._assignments[0]).copy() for w in wrappers(clustered)}
    for w in wrappers(clustered):
        # pruned weights point at the constant-zero slot (index 2**bits), i.e. are no cluster
        np.testing.assert_array_equal(a0[w.name] == 4, zeros[w.name])
    clustered.fit(X, Y, batch_size=16, epochs=2, verbose=0)
    for w in wrappers(clustered):
        assert not np.allclose(np_(w._centroids[0]), c0[w.name])  # centroids trained
        np.testing.assert_array_equal(np_(w._assignments[0]), a0[w.name])  # assignments fixed
    final = dc_keras.strip(clustered)
    for layer in final.layers[1:]:
        k = layer.kernel.numpy()
        np.testing.assert_array_equal(k == 0, zeros[layer.name])
        assert np.unique(k[k != 0]).size <= 4


def test_preserve_sparsity_false_clusters_zeros():
    model = mlp()
    k = model.get_layer("d1").kernel.numpy()
    k[np.abs(k) < np.median(np.abs(k))] = 0.0
    model.get_layer("d1").kernel.assign(k)
    kept = compile_(dc_keras.cluster(model, bits=2, layers=["d1"], preserve_sparsity=True), keras.optimizers.Adam(0.05))
    with pytest.warns(UserWarning, match=r"cluster: layer 'd1' weight 'kernel' is 50% exact zeros \(pruned\?\), and "
                                         r"preserve_sparsity=False .* the kernel becomes dense") as caught:
        mixed = compile_(dc_keras.cluster(model, bits=2, layers=["d1"], preserve_sparsity=False),
                         keras.optimizers.Adam(0.05))
    assert [w.filename for w in caught if "preserve_sparsity=False" in str(w.message)] == [__file__]  # the user's line
    with warnings.catch_warnings(record=True) as dense:
        warnings.simplefilter("always")
        dc_keras.cluster(mlp(), bits=2, layers=["d1"], preserve_sparsity=False)
    assert not [w for w in dense if "exact zeros" in str(w.message)]  # a dense kernel: no warning
    assert np.all(np_(kept.get_layer("d1")._assignments[0])[k == 0] == 4)  # the constant-zero slot
    assert np.all(np_(mixed.get_layer("d1")._assignments[0])[k == 0] < 4)  # a real, trainable cluster
    for m in (kept, mixed):
        m.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    zk = dc_keras.strip(kept).get_layer("d1").kernel.numpy()
    zm = dc_keras.strip(mixed).get_layer("d1").kernel.numpy()
    np.testing.assert_array_equal(zk == 0, k == 0)
    assert np.count_nonzero(zm == 0) == 0  # the zeros' centroid moved with training
    assert np.unique(zm).size <= 4


def test_bits_mapping_and_defaults():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, name="a")(x)
    outputs = keras.layers.Dense(2, name="b")(x)
    model = keras.Model(inputs, outputs)
    got = {w.name: w.bits for w in wrappers(dc_keras.cluster(model, bits={"b": 3}))}
    assert got == {"c": 8, "a": 5, "b": 3}
    got = {w.name: w.bits for w in wrappers(dc_keras.cluster(model, bits={keras.layers.Dense: 4, "c": 2}))}
    assert got == {"c": 2, "a": 4, "b": 4}
    got = {w.name: w.bits for w in wrappers(dc_keras.cluster(model, bits=6, layers=[keras.layers.Conv2D]))}
    assert got == {"c": 6}


# dense and conv2d: the other tests of this file cluster them.
@pytest.mark.parametrize("case", sorted(set(LAYER_CASES) - {"dense", "conv2d"}))
def test_supported_layer_types(case):
    model, layer, x, y, names = layer_case(case)
    clustered = dc_keras.cluster(model, bits=2, layers=[type(layer)])
    clustered.compile("adam", "mse")
    clustered.fit(x, y, batch_size=8, epochs=1, verbose=0)
    plain = dc_keras.strip(clustered)
    assert type(plain.layers[0]) is type(layer)
    for name in names:
        w = [v for v in plain.layers[0].weights if v.name == name][0].numpy()
        assert np.unique(w[w != 0]).size <= 4, name
    np.testing.assert_allclose(plain.predict(x, verbose=0), clustered.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_modes(jit_compile):
    clustered = compile_(dc_keras.cluster(mlp(), bits=3), keras.optimizers.Adam(0.01),
                         steps_per_execution=3, jit_compile=jit_compile)
    a0 = [np_(w._assignments[0]).copy() for w in wrappers(clustered)]
    c0 = [np_(w._centroids[0]).copy() for w in wrappers(clustered)]
    clustered.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    for w, a, c in zip(wrappers(clustered), a0, c0):
        np.testing.assert_array_equal(np_(w._assignments[0]), a)
        assert not np.allclose(np_(w._centroids[0]), c)


def test_custom_training_loop_and_subclassed_model():
    import tensorflow as tf

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.head = keras.layers.Dense(4)

        def call(self, x, training=None):
            return self.head(self.hidden(x))

    class Shared(keras.Model):
        def __init__(self, trained):
            super().__init__()
            self.hidden = dc_keras.cluster(trained.hidden, bits=2)  # built layer: clustered on build
            self.head = trained.head

        def call(self, x, training=None):
            return self.head(self.hidden(x))

    base = Net()
    base(X[:2])
    net = Shared(base)
    net(X[:2])
    assert net.hidden.distinct_values()["kernel"] <= 4
    assert len(net.trainable_variables) == 4  # centroids, bias, head kernel and bias: no duplicates
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    c0 = np_(net.hidden._centroids[0]).copy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(x, training=True))
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))

    for i in range(3):
        step(X[i * 32:(i + 1) * 32], Y[i * 32:(i + 1) * 32])
    assert not np.allclose(np_(net.hidden._centroids[0]), c0)
    dc_keras.strip(net)
    assert type(net.hidden) is keras.layers.Dense
    assert np.unique(net.hidden.kernel.numpy()).size <= 4


def test_layer_wrapped_before_it_is_built_is_clustered_when_built():
    """`dc_keras.cluster(keras.layers.Dense(16))` (and tfmot's guide: `cluster_weights(Dense(20, ...))`
    in a Sequential) left the centroids and assignments at 0 when the layer was built inside the
    wrapper: training then moved one shared value, and the stripped kernel had a single distinct value."""
    for model in (keras.Sequential([keras.Input((16,)), dc_keras.cluster(keras.layers.Dense(12), bits=3),
                                    keras.layers.Dense(4)]),
                  keras.Model(*(lambda i: (i, keras.layers.Dense(4)(dc_keras.cluster(keras.layers.Dense(12), bits=3)(i))))(
                      keras.Input((16,))))):
        wrapper = model.layers[0] if isinstance(model, keras.Sequential) else model.layers[1]
        assert wrapper.distinct_values()["kernel"] == 8
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
        kernel = dc_keras.strip(model).get_layer(wrapper.name).get_weights()[0]
        assert np.unique(kernel).size == 8, np.unique(kernel)


def test_layer_wrapped_before_it_is_built_inside_a_subclassed_models_fit_is_refused():
    """A subclassed model whose unbuilt layer is wrapped in __init__ is built in a symbolic pass,
    where its weights have no values: the clustering waits for the first use outside it. fit()'s
    first step is traced on TF and JAX, where the weights cannot be read either: that collapsed
    silently like the case above; it is one error saying to build the layer first. On torch the
    step runs eagerly: it clusters there."""
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = dc_keras.cluster(keras.layers.Dense(12), bits=3)
            self.head = keras.layers.Dense(4)

        def call(self, x, training=None):
            return self.head(self.hidden(x, training=training))

    net = Net()
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if keras.backend.backend() == "torch":
        net.fit(X, Y, epochs=1, batch_size=32, verbose=0)
        assert net.hidden.distinct_values()["kernel"] == 8
        assert len(net.trainable_variables) == 4
    else:
        with pytest.raises(ValueError, match=r"Cannot cluster layer 'dense.*': it was not built when it was wrapped.*"
                                             r"Build it before wrapping it \(`layer.build\(input_shape\)`"):
            net.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    net = Net()
    net(X[:2])  # the fix: an eager first call builds (and clusters) it
    # once: the build of the symbolic pass before it made the weights, the eager call clustered them
    # (no second set of centroids and assignments, the first of them never trained)
    assert [v.path.rsplit("/", 1)[1] for v in net.hidden.weights] == [
        "kernel_centroids", "kernel_assignments", "kernel", "bias"]
    assert len(net.trainable_variables) == 4  # centroids, bias, head kernel and bias
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    assert net.hidden.distinct_values()["kernel"] == 8


def test_keras_round_trip(tmp_path):
    clustered = compile_(dc_keras.cluster(mlp(), bits={"d1": 3, "d2": 4}, init="density"), keras.optimizers.Adam(0.01))
    clustered.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    path = str(tmp_path / "clustered.keras")
    clustered.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    for a, b in zip(wrappers(clustered), wrappers(loaded)):
        assert (a.bits, a.init) == (b.bits, b.init)
        np.testing.assert_array_equal(np_(a._centroids[0]), np_(b._centroids[0]))
        np.testing.assert_array_equal(np_(a._assignments[0]), np_(b._assignments[0]))
    np.testing.assert_allclose(loaded.predict(X, verbose=0), clustered.predict(X, verbose=0), rtol=1e-6)
    a0 = [np_(w._assignments[0]).copy() for w in wrappers(loaded)]
    loaded.fit(X, Y, batch_size=32, epochs=1, verbose=0)  # resumes with the restored optimizer
    for w, a in zip(wrappers(loaded), a0):
        np.testing.assert_array_equal(np_(w._assignments[0]), a)


def _with_random_biases(model):
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(RNG.normal(size=layer.bias.shape).astype("float32"))
    return model


def test_cluster_biases_share_and_keep_sharing_through_fit(tmp_path):
    model = _with_random_biases(mlp())
    free = compile_(dc_keras.cluster(model, bits=3), keras.optimizers.Adam(0.01))
    shared = compile_(dc_keras.cluster(model, bits=3, cluster_biases=2), keras.optimizers.Adam(0.01))
    report = str(shared.compression_report)
    assert "d1 (Dense): kernel, bias [544]" in report and "cluster_biases: 2 bits" in report
    assert "bias" not in str(free.compression_report)
    assert "d1 (Dense): kernel, bias [544]" in str(dc_keras.coverage(shared))
    d1 = shared.get_layer("d1")
    assert [tuple(c.shape) for c in d1._centroids] == [(8,), (4,)]
    before = [np_(a).copy() for a in d1._assignments]
    for m in (free, shared):
        m.fit(X, Y, batch_size=32, epochs=2, verbose=0)
    for a, b in zip(before, d1._assignments):
        np.testing.assert_array_equal(a, np_(b))  # assignments never change
    for name in ("d1", "d2", "out"):
        kept = dc_keras.strip(shared).get_layer(name)
        assert len(np.unique(np_(kept.bias))) <= 4 and len(np.unique(np_(kept.kernel))) <= 8
        if name != "out":  # (4 biases) default: biases stay free floats
            assert len(np.unique(np_(dc_keras.strip(free).get_layer(name).bias))) > 4
    # True: the kernel's count; the option survives a .keras round trip without custom_objects
    same = dc_keras.cluster(model, bits=3, cluster_biases=True)
    assert same.get_layer("d2").bias_clusters == 8
    path = str(tmp_path / "biases.keras")
    shared.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("d1").cluster_biases == 2
    np.testing.assert_array_equal(np_(loaded.get_layer("d1")._centroids[1]), np_(d1._centroids[1]))
    np.testing.assert_allclose(loaded.predict(X, verbose=0), shared.predict(X, verbose=0), rtol=1e-6)
    with pytest.raises(ValueError, match="cluster_biases"):
        dc_keras.cluster(model, cluster_biases="yes")
    with pytest.raises(ValueError, match="cluster_biases"):
        dc_keras.cluster(model, cluster_biases=13)


def test_cluster_biases_without_bias_is_reported():
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, use_bias=False, name="nb"),
                              keras.layers.Dense(4, name="wb")])
    clustered = dc_keras.cluster(model, bits=2, cluster_biases=True)
    assert "nb: no bias to cluster" in str(clustered.compression_report)
    assert clustered.get_layer("wb").cluster_targets()[-1][0] == "bias"


def test_bad_arguments():
    with pytest.raises(ValueError, match="bits"):
        dc_keras.cluster(mlp(), bits=0)
    with pytest.raises(ValueError, match="bits"):
        dc_keras.cluster(mlp(), bits=17)
    with pytest.raises(ValueError, match="bits"):
        dc_keras.cluster(mlp(), bits="5")
    with pytest.raises(ValueError, match="bits.*d1"):
        dc_keras.cluster(mlp(), bits={"d1": 2.5})
    with pytest.raises(ValueError, match="Unknown layer name.*zz"):
        dc_keras.cluster(mlp(), bits={"zz": 4})
    with pytest.raises(ValueError, match="Unknown layer name.*zz"):
        dc_keras.cluster(mlp(), layers=["zz"])
    with pytest.raises(ValueError, match="init"):
        dc_keras.cluster(mlp(), init="uniform")
    with pytest.raises(ValueError, match="preserve_sparsity"):
        dc_keras.cluster(mlp(), preserve_sparsity="yes")
    with pytest.raises(ValueError, match="strip"):
        dc_keras.cluster(dc_keras.prune(mlp(), ConstantSparsity(0.5, 0)))
    with pytest.raises(ValueError, match="nothing prunable"):
        dc_keras.cluster(keras.Sequential([keras.Input((4,)), keras.layers.ReLU()]))


DISTRIBUTED = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, dc_keras
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 16)).astype("float32"); y = rng.integers(0, 4, size=128)
    with strategy.scope():
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu", name="d1"),
                                  keras.layers.Dense(4, name="out")])
        clustered = dc_keras.cluster(model, bits=3)
        clustered.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    a0 = [keras.ops.convert_to_numpy(l._assignments[0]).copy() for l in clustered.layers]
    c0 = [keras.ops.convert_to_numpy(l._centroids[0]).copy() for l in clustered.layers]
    clustered.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for layer, a, c in zip(clustered.layers, a0, c0):
        assert np.array_equal(keras.ops.convert_to_numpy(layer._assignments[0]), a)
        assert not np.allclose(keras.ops.convert_to_numpy(layer._centroids[0]), c)
        replicas = [v.numpy() for v in layer._centroids[0].value.values]
        assert len(replicas) == 2 and np.array_equal(replicas[0], replicas[1])
    plain = dc_keras.strip(clustered)
    print("OK", [int(np.unique(l.kernel.numpy()).size) for l in plain.layers])
    """
)


@pytest.mark.long  # MirroredStrategy over two CPU devices, ~40 s; multi-worker: test_multi_worker (long too)
def test_mirrored_strategy_two_devices():
    result = subprocess.run([sys.executable, "-c", DISTRIBUTED], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def test_kernel_regularizer_still_applies_during_clustered_fine_tuning():
    """A user's kernel_regularizer (L2 weight decay) was dropped without a word while the centroids
    were fine-tuned: Keras adds regularizers of trainable variables only, and the clustered kernel
    is not one. It now applies to the shared kernel the layer runs with (the pruned model already
    kept it; strip keeps the regularizer on the plain layer)."""
    import keras

    import dc_keras

    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, kernel_regularizer=keras.regularizers.L2(0.1), name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="o")(h))
    clustered = dc_keras.cluster(model, bits=2)
    x = np.ones((2, 6), "float32")
    clustered(x, training=True)
    final = dc_keras.strip(clustered)
    want = 0.1 * float(np.sum(keras.ops.convert_to_numpy(final.get_layer("h").kernel) ** 2))
    assert len(clustered.losses) == 1, clustered.losses
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(clustered.losses[0])), want, rtol=1e-6)
    assert final.get_layer("h").kernel_regularizer is not None


def _nonneg_model():
    rng = np.random.default_rng(4)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(24, kernel_constraint="non_neg", bias_constraint="non_neg", name="pos")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(h))
    pos = model.get_layer("pos")
    pos.set_weights([np.abs(w).astype("float32") + 0.01 for w in (rng.normal(size=(8, 24)), rng.normal(size=24))])
    out = model.get_layer("out")  # positive too: a lower target pulls every weight of "pos" down
    out.set_weights([np.abs(rng.normal(size=(24, 1))).astype("float32") + 0.01, np.zeros(1, "float32")])
    return model


@pytest.mark.parametrize("cluster_biases", [False, True])
def test_nonneg_constraint_holds_on_the_shared_values(tmp_path, cluster_biases):
    """A kernel_constraint/bias_constraint did not act during the clustered fine-tuning (the kernel
    is not trainable, the centroids had no constraint): a "non_neg" Dense came out with negative
    shared values. NonNeg now constrains the centroids, so the fine-tuned and stripped kernel (and a
    clustered bias) stay >= 0 and keep their sharing, also after a .keras round trip."""
    x = np.abs(np.random.default_rng(5).normal(size=(64, 8))).astype("float32")
    y = np.full((64, 1), -50.0, "float32")  # far below the outputs: every weight of "pos" is pulled down
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # NonNeg is held: no warning
        clustered = dc_keras.cluster(_nonneg_model(), bits=3, cluster_biases=cluster_biases)
    assert clustered.get_layer("pos").unheld_constraints == []
    clustered.compile(keras.optimizers.Adam(0.1), "mse")
    clustered.fit(x, y, epochs=3, batch_size=16, verbose=0)
    path = tmp_path / "c.keras"
    clustered.save(path)
    for model in (clustered, keras.saving.load_model(path)):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # the loaded one keeps the constraint too
        kernel, bias = dc_keras.strip(model).get_layer("pos").get_weights()
        assert kernel.min() >= 0  # was -0.87 after the first fit()
        assert np.count_nonzero(kernel == 0) > 0  # the loss did pull shared values down to the bound
        assert np.unique(kernel).size <= 2 ** 3 + 1
        if cluster_biases:
            assert bias.min() >= 0 and np.unique(bias).size <= 2 ** 3 + 1


def test_norm_constraint_that_cannot_hold_is_warned_and_reported():
    """MaxNorm (a norm per column) cannot hold on shared values without undoing the sharing: cluster()
    says so once, naming the layer, the weight and the constraint, lists it in the report's notes
    and in the wrapper's unheld_constraints; strip() keeps the constraint on the layer."""
    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, kernel_constraint=keras.constraints.MaxNorm(1.0), name="capped")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    with pytest.warns(UserWarning, match=r"layer 'capped' has a MaxNorm constraint on its 'kernel'.*strip\(\) keeps"):
        clustered = dc_keras.cluster(model, bits=3)
    assert clustered.get_layer("capped").unheld_constraints == [("kernel", "MaxNorm")]
    assert clustered.get_layer("out").unheld_constraints == []
    assert any("capped" in note and "MaxNorm" in note for note in clustered.compression_report.notes)
    assert isinstance(dc_keras.strip(clustered).get_layer("capped").kernel_constraint, keras.constraints.MaxNorm)


def test_wrapper_weights_option_compresses_only_the_named_weights(tmp_path):
    """ClusterWrapper/PruneWrapper(weights=[...]) compress only the named weights (the tfmot
    drop-in's registry: a SeparableConv's pointwise kernel); the others train as plain weights,
    the option survives a .keras round trip, and an unknown name is one error naming the choices."""
    rng = np.random.default_rng(7)
    inputs = keras.Input((6, 6, 3))
    sep = keras.layers.SeparableConv2D(8, 3, name="sep")
    model = keras.Model(inputs, keras.layers.Flatten()(sep(inputs)))
    depthwise = sep.get_weights()[0].copy()
    wrapper = dc_keras.train.ClusterWrapper(sep, bits=2, weights=["pointwise_kernel"])
    clustered = keras.Model(inputs, keras.layers.Flatten()(wrapper(inputs)))
    assert [w.name for w in wrapper.weights if "centroids" in w.name] == ["pointwise_kernel_centroids"]
    assert wrapper.get_config()["weights"] == ["pointwise_kernel"]
    clustered.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), clustered.get_weights()))
    final = dc_keras.strip(loaded).get_layer("sep").get_weights()
    assert np.array_equal(final[0], depthwise)  # bit for bit: not clustered
    assert np.unique(final[1]).size <= 4
    x = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    assert np.array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(clustered(x)))
    with pytest.raises(ValueError, match=r"'sep2'.*\['kernel'\].*'depthwise_kernel', 'pointwise_kernel'"):
        layer = keras.layers.SeparableConv2D(8, 3, name="sep2")
        layer.build((None, 6, 6, 3))
        dc_keras.train.PruneWrapper(layer, ConstantSparsity(0.5, 0), weights=["kernel"]).build((None, 6, 6, 3))
    with pytest.raises(ValueError, match="non-empty list of weight names"):
        dc_keras.train.PruneWrapper(keras.layers.Dense(2), ConstantSparsity(0.5, 0), weights="kernel")
    assert model.get_layer("sep") is sep


def test_nan_weight_names_the_layer_and_the_fix():
    """cluster() on a weight holding NaN said only "Cannot cluster weights containing NaN or
    infinity" (from the k-means), naming neither the layer nor what to do."""
    model = mlp()
    kernel, bias = model.get_layer("d2").get_weights()
    kernel[0, 0], kernel[1, 1] = np.nan, np.inf
    model.get_layer("d2").set_weights([kernel, bias])
    with pytest.raises(ValueError, match=r"Layer 'd2' weight 'kernel' has 2 of 512 values NaN or infinite.*diverged"
                                         r".*restore a checkpoint with finite weights before cluster\(\)"):
        dc_keras.cluster(model, bits=3)


def test_batchnorm_before_a_layer_note_says_why_it_is_not_folded():
    """A BatchNormalization before a Dense was reported as "not exact with zero padding", which
    only applies to convolutions padding with zeros."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization(name="bn1")(keras.layers.Flatten()(inputs))
    x = keras.layers.Dense(8, name="fc")(x)
    y = keras.layers.BatchNormalization(name="bn2")(keras.layers.Reshape((2, 2, 2))(x))
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv")(y)
    notes = dc_keras.cluster(keras.Model(inputs, y), bits=2).compression_report.notes
    dense = [n for n in notes if "'bn1' precedes 'fc'" in n]
    conv = [n for n in notes if "'bn2' precedes 'conv'" in n]
    assert len(dense) == 1 and "zero padding" not in dense[0], notes
    assert "folds a BatchNormalization only into the layer before it" in dense[0], notes
    assert len(conv) == 1 and "its zero padding is not normalized" in conv[0], notes
