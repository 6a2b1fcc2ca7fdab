"""Review s49 of dc_keras.compat.tfmot, as a tfmot user moving to Keras 3 runs tfmot's own code.

``sparsity_m_by_n`` on a kernel whose input dimension is not a multiple of ``n`` (an RGB Conv2D's 3
input channels, a Dense of 10 inputs): tfmot 0.8.1 pads each run along the input dimension with
zeros to a multiple of ``n``, so the last, shorter group of ``r`` weights keeps ``min(r, n - m)`` of
them; the drop-in (and ``dc_keras.prune``) raised ``ValueError: sparsity_m_by_n n=4 does not divide
the input dimension``, for a whole model too (``prune_low_magnitude(model, sparsity_m_by_n=(2, 4))``
of a model starting with an RGB convolution). Both mask paths are checked against a numpy port of
tfmot's ``generate_m_by_n_mask`` (the host update ``fit()`` uses and the in-step update of a custom
training loop), and, marked ``legacy``, against tfmot 0.8.1 itself in a tf_keras subprocess.

``strip_pruning`` / ``strip_clustering`` given something other than a Keras 3 model (a path, None, a
tf_keras model): the error named dc_keras's ``strip()``, not the function called.

The axis of the m-by-n groups for an Embedding, a Conv2DTranspose and a Conv1D differs from tfmot's
positional rule (not changed: the drop-in's is the ``.tflite`` tensor's last axis, which tfmot's
docstring aims at); docs/migrating_from_tfmot.md now says so and the last test pins the drop-in's axes.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import dc_keras.compat.tfmot as tfmot

sparsity = tfmot.sparsity.keras
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tfmot_m_by_n_mask(kernel, m, n):
    """tfmot 0.8.1's mask (pruning_utils.weights_rearrange / generate_m_by_n_mask /
    m_by_n_sparsity_mask_prepare) in numpy: rows of input weights, each padded with zeros to a
    multiple of n, the n - m largest magnitudes of every n kept (top_k: the lower index on ties)."""
    if kernel.ndim == 2:
        rows = kernel.T
    else:  # (kh, kw, cin, cout) -> (cout * kh * kw, cin)
        rows = np.transpose(kernel, (3, 0, 1, 2)).reshape(-1, kernel.shape[2])
    width = rows.shape[1]
    padded = np.pad(np.abs(rows), [(0, 0), (0, -width % n)])
    blocks = padded.reshape(-1, n)
    keep = np.zeros_like(blocks)
    order = np.argsort(-blocks, axis=-1, kind="stable")[:, :n - m]
    np.put_along_axis(keep, order, 1.0, axis=-1)
    mask = keep.reshape(padded.shape)[:, :width]
    if kernel.ndim == 2:
        return mask.T
    cout, kh, kw, cin = kernel.shape[3], kernel.shape[0], kernel.shape[1], kernel.shape[2]
    return np.transpose(mask.reshape(cout, kh, kw, cin), (1, 2, 3, 0))


def _model():
    """A Conv2D on 3 channels and a Dense on 10 inputs, each pruned 2 of every 4 (tfmot's (2, 4))."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(5, 3, name="rgb")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10, name="ten")(x)
    outputs = keras.layers.Dense(7, name="out")(x)
    base = keras.Model(inputs, outputs)
    return base, sparsity.prune_low_magnitude(base, sparsity_m_by_n=(2, 4))


def _kernels(model):
    return {name: keras.ops.convert_to_numpy(model.get_layer(name).layer.kernel).copy() for name in ("rgb", "ten", "out")}


def test_m_by_n_prunes_a_kernel_whose_input_dimension_is_not_a_multiple_of_n_as_tfmot():
    # fit() (host update at step 0) with a learning rate of 0: the masks come from the initial weights.
    base, pruned = _model()
    before = _kernels(pruned)
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6, 6, 3)).astype("float32"), rng.normal(size=(8, 7)).astype("float32")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    for name, kernel in before.items():
        expected = kernel * _tfmot_m_by_n_mask(kernel, 2, 4)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(stripped.get_layer(name).kernel), expected,
                                      err_msg=name)
    # (3 channels: 1 zero in each group of 3; 10 inputs: 2 + 2 + 0 zeros: tfmot's fractions)
    assert (keras.ops.convert_to_numpy(stripped.get_layer("rgb").kernel) == 0).mean() == pytest.approx(1 / 3)
    assert (keras.ops.convert_to_numpy(stripped.get_layer("out").kernel) == 0).mean() == pytest.approx(0.4)


def test_m_by_n_in_step_update_of_a_custom_loop_gives_the_same_masks():
    # tfmot's custom-training-loop recipe: the wrapper updates its masks inside the training call.
    _, pruned = _model()
    before = _kernels(pruned)
    step = sparsity.UpdatePruningStep()
    step.set_model(pruned)
    step.on_train_begin()
    step.on_train_batch_begin(batch=-1)
    pruned(np.zeros((2, 6, 6, 3), "float32"), training=True)
    for name, kernel in before.items():
        wrapper = pruned.get_layer(name)
        (mask,) = [w for w in wrapper.weights if w.path.endswith("kernel_mask")]
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), _tfmot_m_by_n_mask(kernel, 2, 4), err_msg=name)


_TFMOT_MASKS = r"""
import json, sys
import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.keras.compat import keras
kernels = {k: np.array(v, "float32") for k, v in json.load(open(sys.argv[1])).items()}
out = {}
for name, k in kernels.items():
    shape = (6, 6, 3) if k.ndim == 4 else (k.shape[0],)
    layer = keras.layers.Conv2D(k.shape[-1], 3) if k.ndim == 4 else keras.layers.Dense(k.shape[-1])
    model = keras.Sequential([keras.Input(shape), tfmot.sparsity.keras.prune_low_magnitude(
        layer, sparsity_m_by_n=(2, 4), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1))])
    model.layers[0].layer.kernel.assign(k)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.zeros((1,) + shape, "float32")
    model.fit(x, model.predict(x, verbose=0), verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    out[name] = model.layers[0].layer.kernel.numpy().tolist()
print("MASKED " + json.dumps(out))
"""


@pytest.mark.legacy
def test_m_by_n_partial_groups_match_tfmot_itself(tmp_path):
    _, pruned = _model()
    before = _kernels(pruned)
    path = tmp_path / "kernels.json"
    path.write_text(json.dumps({k: v.tolist() for k, v in before.items()}))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "-c", _TFMOT_MASKS, str(path)], env=env, capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    theirs = json.loads(r.stdout.split("MASKED ", 1)[1])
    pruned.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.zeros((1, 6, 6, 3), "float32")
    pruned.fit(x, np.zeros((1, 7), "float32"), verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    for name in before:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned.get_layer(name).layer.kernel),
                                      np.array(theirs[name], "float32"), err_msg=name)


@pytest.mark.parametrize("strip_name", ["strip_pruning", "strip_clustering"])
def test_strip_of_something_else_than_a_keras_model_names_the_tfmot_function(strip_name):
    # The error named dc_keras's strip(), a function the tfmot user never called.
    strip = getattr(sparsity if strip_name == "strip_pruning" else tfmot.clustering.keras, strip_name)
    with pytest.raises(ValueError, match=rf"^{strip_name}\(\) takes a Keras model or layer, got str: load it first: "
                                         r"keras.saving.load_model\('pruned.keras'\)$"):
        strip("pruned.keras")
    with pytest.raises(ValueError, match=rf"^{strip_name}\(\) takes a Keras model or layer, got NoneType\.$"):
        strip(None)


def test_m_by_n_groups_run_along_the_input_dimension_as_the_guide_says():
    # docs/migrating_from_tfmot.md: the groups run along each kernel's input dimension (the .tflite tensor's last
    # axis); tfmot 0.8.1's positional rule groups an Embedding's rows and a Conv2DTranspose's filters instead
    # (measured in tfmot 0.8.1: embeddings (12, 8) in groups along axis 0, a (3, 3, 8, 8) transposed kernel along
    # axis 2), and fails on a Conv1D. These are the drop-in's axes.
    rng = np.random.default_rng(1)
    cases = [(keras.layers.Embedding(12, 8), rng.integers(0, 12, (4, 5)), 1),
             (keras.layers.Conv2DTranspose(8, 3), rng.normal(size=(4, 5, 5, 8)).astype("float32"), 3),
             (keras.layers.Conv1D(8, 3), rng.normal(size=(4, 6, 8)).astype("float32"), 1),
             (keras.layers.Dense(8), rng.normal(size=(4, 8)).astype("float32"), 0)]
    for layer, x, axis in cases:
        wrapper = sparsity.prune_low_magnitude(layer, sparsity_m_by_n=(2, 4))
        wrapper(x)
        wrapper.update_masks(0)
        kernel = keras.ops.convert_to_numpy(layer.weights[0])
        groups = np.moveaxis(kernel != 0, axis, -1).reshape(-1, 4)
        assert np.all(groups.sum(axis=-1) == 2), type(layer).__name__


# make test's PyTorch pass: torch.compile of this step took 40 CPU s of the pass's 260 (session 54's
# profile); the TensorFlow and JAX passes run it in make test, the PyTorch one in make test-long.
@(pytest.mark.long if keras.backend.backend() == "torch" else lambda f: f)
def test_m_by_n_partial_groups_in_the_compiled_step_of_a_fit_of_unknown_length():
    # A generator without steps_per_epoch: the masks are updated inside the (XLA / jit) compiled training step.
    _, pruned = _model()
    before = _kernels(pruned)
    pruned.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=True)
    rng = np.random.default_rng(0)

    def batches():
        for _ in range(3):
            yield rng.normal(size=(4, 6, 6, 3)).astype("float32"), np.zeros((4, 7), "float32")

    pruned.fit(batches(), epochs=1, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    for name, kernel in before.items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned.get_layer(name).layer.kernel),
                                      kernel * _tfmot_m_by_n_mask(kernel, 2, 4), err_msg=name)


def test_the_wrappers_attributes_are_the_ones_the_guide_names():
    """docs/migrating_from_tfmot.md's wrapper rows: the drop-in's wrappers carry dc_keras's attributes,
    not tfmot's (``schedule``, ``sparsity_m_by_n`` counting the weights kept, ``clusters``, the
    ``kernel_centroids`` variable); tfmot's names (``pruning_schedule``, ``number_of_clusters``,
    ``cluster_centroids``) are not there."""
    schedule = sparsity.ConstantSparsity(0.75, 0)
    pruned = sparsity.prune_low_magnitude(keras.layers.Dense(3), pruning_schedule=schedule, sparsity_m_by_n=(1, 4))
    pruned.build((None, 8))
    assert pruned.sparsity_m_by_n == (3, 4) and pruned.schedule is schedule
    assert not hasattr(pruned, "pruning_schedule") and not hasattr(pruned, "block_size")
    clustered = tfmot.clustering.keras.cluster_weights(keras.layers.Dense(3, name="d"), number_of_clusters=4)
    clustered.build((None, 8))
    assert clustered.clusters == 4
    assert [v.path for v in clustered.weights if v.path.endswith("kernel_centroids")] == ["d/kernel_centroids"]
    assert not hasattr(clustered, "number_of_clusters") and not hasattr(clustered, "cluster_centroids")


def test_polynomial_decay_with_power_zero_is_refused_as_the_guide_says():
    """tfmot 0.8.1 takes power=0, which never leaves initial_sparsity; the drop-in refuses it
    (docs/migrating_from_tfmot.md, the PolynomialDecay row)."""
    with pytest.raises(ValueError, match="`power` must be a positive, finite number, got 0"):
        sparsity.PolynomialDecay(0.2, 0.8, 0, 1000, power=0)
    assert sparsity.PolynomialDecay(0.2, 0.8, 0, 1000.0).get_config()["end_step"] == 1000  # whole floats are fine
