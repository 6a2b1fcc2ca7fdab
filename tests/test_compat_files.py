"""`.keras` files saved by earlier versions keep loading and training: a pruned model saved halfway
through its schedule and a clustered model in fine-tuning, written by main c838317
(tests/data/make_compat_models.py) before the fit-step bookkeeping changed."""
import json
import os
import zipfile

import keras
import numpy as np
import pytest
from packaging.version import Version

import dc_keras

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REF = dict(np.load(os.path.join(DATA, "compat_c838317.npz")))
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _load(kind):
    path = os.path.join(DATA, f"compat_{kind}_c838317.keras")
    with zipfile.ZipFile(path) as z:
        saved_by = json.loads(z.read("metadata.json"))["keras_version"]
    if Version(keras.__version__) < Version(saved_by):  # e.g. at setup.cfg's Keras floor
        pytest.skip(f"saved by Keras {saved_by}: a .keras file of a newer Keras does not load in Keras "
                    f"{keras.__version__} (Keras's limit, not dc_keras's)")
    return keras.saving.load_model(path)


def _same_outputs(model, key):
    """Bit for bit on the backend that wrote the file (TensorFlow); other backends' matmuls round
    differently in the last bits (the weights themselves are compared exactly)."""
    out = model.predict(REF["probe"], verbose=0)
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_array_equal(out, REF[key])
    else:
        np.testing.assert_allclose(out, REF[key], rtol=1e-5, atol=1e-6)


def _saved_weights(model, kind):
    """Every variable of the loaded model equals the one saved (same path, value and shape)."""
    saved = {k.split("/", 1)[1]: v for k, v in REF.items() if k.startswith(kind + "/")}
    loaded = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    assert set(saved) <= set(loaded), sorted(set(saved) - set(loaded))
    for path, value in saved.items():
        np.testing.assert_array_equal(loaded[path].astype(value.dtype), value, err_msg=path)


def test_pruned_file_of_c838317_loads_and_resumes_its_schedule():
    model = _load("pruned")
    _same_outputs(model, "pruned_out")
    _saved_weights(model, "pruned")
    wrappers = [l for l in model.layers if isinstance(l, dc_keras.train.PruneWrapper)]
    assert [int(keras.ops.convert_to_numpy(w.pruning_step)) for w in wrappers] == [16, 16]
    # 16 more steps (16..31): the schedule goes on from step 16, so the last mask update is step 24's.
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    model.fit(REF["x"], REF["y"], batch_size=4, epochs=1, verbose=0, shuffle=False,
              callbacks=[dc_keras.PruningCallback()])
    for w in wrappers:
        assert int(keras.ops.convert_to_numpy(w.pruning_step)) == 32
        size = int(np.prod(w.layer.kernel.shape))
        target = float(keras.ops.convert_to_numpy(w.schedule.sparsity(24)))
        kernel = keras.ops.convert_to_numpy(w.layer.kernel)
        assert int((kernel == 0).sum()) == int(np.floor(np.float32(target) * np.float32(size) + np.float32(1e-3)))
    stripped = dc_keras.strip(model)
    assert not any(isinstance(l, dc_keras.train.PruneWrapper) for l in stripped.layers)


def test_clustered_file_of_c838317_loads_and_fine_tunes():
    model = _load("clustered")
    _same_outputs(model, "clustered_out")
    _saved_weights(model, "clustered")
    model.compile(keras.optimizers.Adam(1e-2), LOSS)
    model.fit(REF["x"], REF["y"], batch_size=8, epochs=1, verbose=0, shuffle=False)
    for w in model.layers:
        if isinstance(w, dc_keras.train.ClusterWrapper):
            for (name, _, _), a, c in zip(w._targets, w._assignments, w._centroids):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), REF[f"clustered/{a.path}"])
                assert not np.array_equal(keras.ops.convert_to_numpy(c), REF[f"clustered/{c.path}"]), name
    final = dc_keras.strip(model)
    for layer in final.layers[1:]:
        assert np.unique(layer.kernel.numpy()[layer.kernel.numpy() != 0]).size <= 8
        assert np.unique(layer.bias.numpy()).size <= 4
