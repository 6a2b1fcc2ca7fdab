"""Review of the tfmot drop-in (dc_keras.compat.tfmot) from a tfmot 0.8.1 user's side: tfmot's guide
code with only the import changed, on Keras 3. What it found:

- ``ClusteringSummaries(cluster_update_freq=...)``: a bad value was refused by an error naming
  ``update_freq`` (the dc_keras class's argument, not tfmot's) and a numpy integer, which tfmot
  takes, was refused.
- ``prune_low_magnitude`` / ``cluster_weights`` of an unbuilt Sequential (no input shape) raised
  "... before prune()." / "... before cluster()." (dc_keras's functions, which a tfmot user does
  not call) without saying how to give the model an input.
- Clustering a pruned kernel with ``preserve_sparsity=False`` (tfmot's default) warned "Pass
  preserve_sparsity=True (the default)": through ``cluster_weights`` False is the default.
- docs/migrating_from_tfmot.md said tfmot "never makes an update at end_step"; tfmot 0.8.1 numbers
  the batches 1..end_step and does update at end_step (before its last batch) when
  ``end_step - begin_step`` is a multiple of ``frequency`` (``test_tfmot_updates_at_end_step_when_aligned``).
- ``to_tflite`` of a model that still has the wrappers told a tfmot user to call ``dc_keras.strip``
  only, not the drop-in's ``strip_pruning`` / ``strip_clustering``.

Runs in the TensorFlow pass and again under JAX and PyTorch (the Makefile's BACKEND_TESTS).
"""
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import dc_keras.compat.tfmot as tfmot

sparsity = tfmot.sparsity.keras
clustering = tfmot.clustering.keras
RNG = np.random.default_rng(46)
X = RNG.normal(size=(64, 12)).astype("float32")
Y = RNG.integers(0, 3, size=64)


def test_cluster_update_freq_errors_name_tfmots_argument(tmp_path):
    for bad in ("step", 0, -2, True, 1.5, None):
        with pytest.raises(ValueError, match=r"^cluster_update_freq must be 'epoch', 'batch' or a positive int"):
            clustering.ClusteringSummaries(str(tmp_path), cluster_update_freq=bad)
    assert clustering.ClusteringSummaries(str(tmp_path)).update_freq == "epoch"
    assert clustering.ClusteringSummaries(str(tmp_path), cluster_update_freq="batch").update_freq == 1
    every = clustering.ClusteringSummaries(str(tmp_path), cluster_update_freq=np.int64(3))  # tfmot takes it
    assert every.update_freq == 3 and type(every.update_freq) is int


def _unbuilt():
    return keras.Sequential([keras.layers.Dense(16, name="d"), keras.layers.Dense(3, name="o")], name="seq")


def test_unbuilt_sequential_names_the_drop_ins_function_and_the_fix():
    with pytest.raises(ValueError, match=r"^prune_low_magnitude\(\): model 'seq' is not built .*keras\.Input\(shape\)"
                       r".*model\.build.*prune_low_magnitude\(keras\.layers\.Dense\(\.\.\.\)\)\.$"):
        sparsity.prune_low_magnitude(_unbuilt())
    with pytest.raises(ValueError, match=r"^cluster_weights\(\): model 'seq' is not built .*no weights to cluster"
                       r".*cluster_weights\(keras\.layers\.Dense\(\.\.\.\), number_of_clusters\)\.$"):
        clustering.cluster_weights(_unbuilt(), 4)
    # Both fixes the message gives work: an Input first, and wrapping the layers as the model is built.
    built = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, name="d"), keras.layers.Dense(3, name="o")])
    by_layer = keras.Sequential([sparsity.prune_low_magnitude(keras.layers.Dense(16, name="d")),
                                 keras.layers.Dense(3, name="o")])
    for model in (sparsity.prune_low_magnitude(built), by_layer):
        model.compile("sgd", "sparse_categorical_crossentropy")
        model.fit(X, Y, batch_size=16, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
        kernel = sparsity.strip_pruning(model).get_layer("d").get_weights()[0]
        assert np.count_nonzero(kernel == 0) == kernel.size // 2  # ConstantSparsity(0.5, 0): step 0


def test_preserve_sparsity_warning_gives_cluster_weights_default():
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, name="d")])
    kernel = model.get_layer("d").get_weights()[0]
    kernel[:, :8] = 0.0
    model.get_layer("d").set_weights([kernel, np.zeros(16, "float32")])
    with pytest.warns(UserWarning, match=r"50% exact zeros") as record:
        clustering.cluster_weights(model, 4)  # preserve_sparsity=False: tfmot's default
    text = " ".join(str(w.message) for w in record if "exact zeros" in str(w.message))
    assert "(the default)" not in text
    assert "preserve_sparsity=True (dc_keras.cluster's default; tfmot's cluster_weights defaults to False)" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clustering.cluster_weights(model, 4, preserve_sparsity=True)  # no warning: the zeros stay


_ALIGNED = dict(schedule=("PolynomialDecay", dict(initial_sparsity=0.5, final_sparsity=0.8, begin_step=0, end_step=8,
                                                  frequency=4)), lr=0.0, batch_size=8, batches=8)


@pytest.mark.legacy
@pytest.mark.long
def test_tfmot_updates_at_end_step_when_aligned():
    """The recipe end_step = the batches trained, with end_step - begin_step a multiple of frequency:
    tfmot 0.8.1 (batches are its steps 1..8) updates at steps 4 and 8 and trains its last batch at
    final_sparsity; the drop-in (steps 0..7) updates at 0 and 4 and, as fit() ends, at end_step: both
    end with the same mask. (The migration guide said tfmot never updates at end_step.)"""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _tfmot_masks_child as masks_child

    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tfmot_masks_child.py")
    proc = subprocess.run([sys.executable, child, json.dumps([_ALIGNED])], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    theirs = [(step, np.array(mask)) for step, mask in json.loads(lines[-1][len("RESULT "):])[0]]
    size = theirs[0][1].size
    assert [step for step, _ in theirs] == list(range(1, 9))
    zeros = [int(np.count_nonzero(m == 0)) for _, m in theirs]
    assert zeros == [0, 0, 0, zeros[3], zeros[3], zeros[3], zeros[3], int(np.floor(0.8 * size))], zeros
    assert 0 < zeros[3] < zeros[-1]

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"), keras.layers.Dense(3, name="out")])
    model.set_weights(masks_child.mlp_weights())
    x, y = masks_child.data(64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the last update's jump after the last step (documented)
        schedule = sparsity.PolynomialDecay(**_ALIGNED["schedule"][1])
        pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
        pruned.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        pruned.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[sparsity.UpdatePruningStep()])
    ours = keras.ops.convert_to_numpy([w for w in pruned.get_layer("d1").weights if w.name == "kernel_mask"][0])
    np.testing.assert_array_equal(ours, theirs[-1][1])


def test_export_of_an_unstripped_model_names_the_tfmot_strip_functions():
    from dc_keras.export import to_tflite
    model = sparsity.prune_low_magnitude(keras.Sequential([keras.Input((12,)), keras.layers.Dense(3)]))
    with pytest.warns(UserWarning, match=r"wrappers.*dc_keras\.strip.*tfmot drop-in: strip_pruning / strip_clustering"):
        to_tflite(model, pack=False)
