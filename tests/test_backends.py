"""Keras 3 backends (issue 16): prune + cluster train, save, load and export on TensorFlow, JAX and
PyTorch, and a ``.keras`` saved on one backend loads (and resumes pruning) on another.

The in-process tests run on whatever ``KERAS_BACKEND`` pytest runs with (``make test-backends``
runs them under jax and torch too); the cross-backend tests start one child process per backend.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.schedules import PolynomialDecay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()
RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 12)).astype("float32")
Y = RNG.integers(0, 3, size=64)


@keras.saving.register_keras_serializable("dc_keras_tests")
class Scale(keras.layers.Layer):
    """A custom layer at the top level of an importable module (this one)."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 4), name="w")

    def call(self, x):
        return x @ self.w


class Unregistered(keras.layers.Layer):
    """Not registered: Keras loads it given custom_objects, which the TF-backend child builds."""

    def call(self, x):
        return x + 1.0


class NoConfig(keras.layers.Layer):
    """An __init__ argument its (default) get_config does not return: the .keras file does not load."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"name": self.name}  # (forgets factor)


@keras.saving.register_keras_serializable("dc_keras_tests")
class ClusteredNet(keras.Model):
    """Clusters in __init__: an unbuilt Dense (dc_keras.cluster) and a built one (ClusterWrapper)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = dc_keras.cluster(keras.layers.Dense(10, activation="relu"), bits=3)
        head = keras.layers.Dense(3)
        head.build((None, 10))
        self.head = dc_keras.train.ClusterWrapper(head, bits=2)

    def call(self, x, training=None):
        return self.head(self.hidden(x, training=training), training=training)


@keras.saving.register_keras_serializable("dc_keras_tests")
class SubclassedNet(keras.Model):
    """A plain subclassed model (importable: the TensorFlow-backend child loads it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(3)

    def call(self, x):
        return self.head(self.hidden(x))


@keras.saving.register_keras_serializable("dc_keras_tests")
class TwoInputNet(keras.Model):
    """A subclassed model of two inputs, called with a list or a dict (``keyed``)."""

    def __init__(self, keyed=False, **kwargs):
        super().__init__(**kwargs)
        self.keyed = keyed
        self.left = keras.layers.Dense(3)
        self.right = keras.layers.Dense(3)

    def call(self, x):
        a, b = (x["a"], x["b"]) if self.keyed else x
        return self.left(a) + self.right(b)

    def get_config(self):
        return {**super().get_config(), "keyed": self.keyed}


class TokenNet(keras.Model):
    """A subclassed text model: token ids -> Embedding -> mean -> Dense."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.emb = keras.layers.Embedding(50, 8)
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.head = keras.layers.Dense(3)

    def call(self, ids):
        return self.head(self.pool(self.emb(ids)))


def mlp():
    inputs = keras.Input((12,))
    h = keras.layers.Dense(24, activation="relu", name="d1")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


def _compile(model, jit_compile, steps, run_eagerly=False):
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile, steps_per_execution=steps, run_eagerly=run_eagerly)
    return model


def _masks(model):
    out = []
    for layer in model.layers:
        if isinstance(layer, dc_keras.train.PruneWrapper):
            for (_, var, _), mask in zip(layer._targets, layer._masks):
                out.append((layer, keras.ops.convert_to_numpy(var), keras.ops.convert_to_numpy(mask)))
    return out


# torch: Keras allows steps_per_execution=1 only, and jit_compile means torch.compile (slow, and
# not what a torch user gets by default); TF and JAX: the jitted multi-step path.
MODES = [(False, 1), (True, 4)] if BACKEND != "torch" else [(False, 1)]


@pytest.mark.parametrize("jit_compile,steps", MODES, ids=[f"jit{int(j)}-spe{s}" for j, s in MODES])
def test_prune_cluster_train_on_this_backend(jit_compile, steps):
    pruned = _compile(dc_keras.prune(mlp(), PolynomialDecay(0.2, 0.75, begin_step=0, end_step=10, frequency=3)),
                      jit_compile, steps)
    pruned.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()])
    for layer, w, mask in _masks(pruned):
        assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == 16
        assert (mask == 0).mean() == pytest.approx(0.75, abs=0.02)
        assert np.all(w[mask == 0] == 0.0), "pruned weights must stay exactly 0"
        assert np.all(w[mask == 1] != 0.0)
    stripped = dc_keras.strip(pruned)
    clustered = _compile(dc_keras.cluster(stripped, bits=2), jit_compile, steps)
    before = [keras.ops.convert_to_numpy(w) for w in clustered.trainable_weights]
    clustered.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in clustered.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "centroids did not train"
    final = dc_keras.strip(clustered)
    for name in ("d1", "out"):
        kernel = final.get_layer(name).get_weights()[0]
        assert np.unique(kernel[kernel != 0]).size <= 4
        assert (kernel == 0).mean() >= 0.74  # the zeros survived clustering


def test_repeated_mask_update_on_the_same_arrays_is_reused():
    """On JAX (immutable arrays) an update repeated at the same step on the same input arrays
    reuses the first result (fit() repeats one after an epoch of unknown length); new weights at
    the same step are pruned afresh; the result equals a fresh computation everywhere."""
    wrapper = dc_keras.prune(keras.layers.Dense(8), PolynomialDecay(0.2, 0.6, 0, 10, frequency=2))
    wrapper.build((None, 16))
    (_, var, _), mask, threshold = wrapper._targets[0], wrapper._masks[0], wrapper._thresholds[0]
    before = [v.value for v in (var, mask, threshold)]
    wrapper.update_masks(4)
    first = keras.ops.convert_to_numpy(mask).copy()
    first_value = mask.value
    for v, value in zip((var, mask, threshold), before):  # what fit() does after the extra callback
        v.assign(value)
    wrapper.update_masks(4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), first)
    if BACKEND == "jax":
        assert mask.value is first_value  # reused, not recomputed
    fresh = RNG.normal(size=tuple(var.shape)).astype("float32")
    var.assign(fresh)
    mask.assign(np.ones(tuple(var.shape), "float32"))
    wrapper.update_masks(4)
    got = keras.ops.convert_to_numpy(mask)
    assert not np.array_equal(got, first) and (got == 0).sum() == 65  # floor(0.5136 * 128)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(var), fresh * got)


@pytest.fixture(scope="module")
def clustered_mlp():
    """A stripped clustered mlp(), its unpacked export (to_tflite(pack=False)) and the warnings that
    export gave: one conversion (on JAX and torch a TensorFlow-backend child, ~5 CPU s) for the tests
    below that compare against it, each of which converted the same kind of model again."""
    import warnings

    model = dc_keras.strip(dc_keras.cluster(mlp(), bits=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = dc_keras.export.to_tflite(model, pack=False)
    return model, plain, [str(w.message) for w in caught]


def test_export_on_this_backend_matches_keras(tmp_path, clustered_mlp):
    """to_tflite works on every backend (torch: through a TF-backend subprocess) and the packed
    .tflite computes what the Keras model computes."""
    from ai_edge_litert.interpreter import Interpreter as LiteRT

    from dc_keras.runtime import Interpreter

    model, plain, _ = clustered_mlp
    path = tmp_path / "m.tflite"
    data = dc_keras.export.to_tflite(model, path=str(path))
    assert path.read_bytes() == data
    expected = keras.ops.convert_to_numpy(model(X[:5]))
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [5, 12])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], X[:5])
    interp.invoke()
    np.testing.assert_allclose(interp.get_tensor(out["index"]), expected, rtol=1e-5, atol=1e-5)
    ref = LiteRT(model_content=plain)
    ref.resize_tensor_input(ref.get_input_details()[0]["index"], [5, 12])
    ref.allocate_tensors()
    ref.set_tensor(ref.get_input_details()[0]["index"], X[:5])
    ref.invoke()
    np.testing.assert_array_equal(interp.get_tensor(out["index"]), ref.get_tensor(ref.get_output_details()[0]["index"]))


def test_export_positive_zeros_on_this_backend():
    """to_tflite(positive_zeros=True) reaches the packer on every backend (JAX and torch: in the
    TF-backend child): the kernels' -0.0 entries are packed as +0.0, with no -0.0 warning."""
    import warnings

    model = dc_keras.strip(dc_keras.cluster(mlp(), bits=3))
    for layer in model.layers[1:]:
        k = keras.ops.convert_to_numpy(layer.kernel)
        k = np.where(np.arange(k.size).reshape(k.shape) % 3 == 0, 0.0, k)  # +0.0: pruned
        layer.kernel.assign(np.where(np.arange(k.size).reshape(k.shape) % 3 == 1, -0.0, k).astype("float32"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = dc_keras.export.to_tflite(model, positive_zeros=True)
    assert not [w for w in caught if "-0.0" in str(w.message)], [str(w.message) for w in caught]
    plain = dc_keras.export.unpack(data)
    report = dc_keras.export.inspect(plain)
    assert report.negative_zeros == (0, 0), report
    kernels = [r for r in report.rows if len(r.shape) == 2]
    assert len(kernels) == 2 and all(r.density < 0.7 for r in kernels), kernels  # both zeros are +0.0 now
    with pytest.raises(ValueError, match="positive_zeros must be True or False"):
        dc_keras.export.to_tflite(model, positive_zeros=1)


def test_export_pack_options_on_this_backend(clustered_mlp):
    """to_tflite(pack_options=...) reaches the packer on every backend (JAX and torch: in the
    TF-backend child, the options crossing as JSON, layouts as a list): the file is byte for byte
    pack(to_tflite(pack=False), **options), not the default packing."""
    model, plain, _ = clustered_mlp
    options = {"strip_strings": True, "decoder": "minimal", "version": 2, "layouts": ("sparse",), "compact": False}
    data = dc_keras.export.to_tflite(model, min_bytes=128, pack_options=options)
    assert data == dc_keras.export.pack(plain, min_bytes=128, **options)
    assert data != dc_keras.export.pack(plain, min_bytes=128)
    with pytest.raises(ValueError, match=r"unknown pack_options key\(s\) \['strip'\]"):
        dc_keras.export.to_tflite(model, pack_options={"strip": True})


@pytest.mark.skipif(BACKEND != "torch", reason="the TF-subprocess export route is the torch backend's")
def test_torch_export_rejects_what_cannot_cross_the_process_boundary():
    model = mlp()
    with pytest.raises(ValueError, match="configure= and converter_options= cannot be used.*torch"):
        dc_keras.export.to_tflite(model, configure=print)
    with pytest.raises(ValueError, match="not a generator function"):
        dc_keras.export.to_tflite(model, quantize="int8", representative_data=lambda: iter([X[:1]]))
    data = dc_keras.export.to_tflite(model, quantize="int8", representative_data=X[:20], batch_size=2)
    assert data[4:8] == b"TFL3"
    # per_channel crosses the process boundary (it was dropped before)
    from dc_keras import _flatbuffer as fb

    def kernel_scales(content):
        m = fb.read_model(content)
        return sorted(len(t.quantization.scale) for t in m.subgraphs[0].tensors
                      if t.type == fb.schema.TensorType.INT8 and t.quantization is not None
                      and t.quantization.scale is not None and len(fb.buffer_bytes(m, t.buffer)) >= 36)

    for per_channel, want in ((False, [1, 1]), (True, [3, 24])):
        assert kernel_scales(dc_keras.export.to_tflite(model, quantize="int8", representative_data=X[:20],
                                                       per_channel=per_channel, pack=False)) == want


# --------------------------------------------------------------------------------------------
# across backends (children)

_CHILD = r"""
import json, sys
import numpy as np, keras, dc_keras
results = []
for mode, src, dst in json.loads(sys.argv[1]):  # several files in one process: one start-up of the backend
    X = np.load(src + ".x.npy")
    Y = np.load(src + ".y.npy")
    model = keras.saving.load_model(src)  # no custom_objects
    out = {"backend": keras.backend.backend(), "layers": [type(l).__name__ for l in model.layers if type(l).__name__ != "InputLayer"],
           "pred": keras.ops.convert_to_numpy(model.predict(X, verbose=0)).tolist()}
    if mode == "resume":
        model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
        w = [l for l in model.layers if isinstance(l, dc_keras.train.PruneWrapper)]
        out["steps"] = [int(keras.ops.convert_to_numpy(l.pruning_step)) for l in w]
        out["sparsity"] = [v for l in w for v in l.sparsity().values()]
        out["zeros_ok"] = all(bool(np.all(keras.ops.convert_to_numpy(v)[keras.ops.convert_to_numpy(m) == 0] == 0))
                              for l in w for (_, v, _), m in zip(l._targets, l._masks))
        model.save(dst)
    results.append(out)
print("RESULT " + json.dumps(results))
"""


def _other_backends():
    names = ["tensorflow", "jax"] + (["torch"] if importlib.util.find_spec("torch") else [])
    return [b for b in names if b != BACKEND]


def _child(backend, *jobs):
    """_CHILD's results for ``jobs``, (mode, src[, dst]) each, run in that order in one process."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    jobs = [(mode, str(src), str(dst[0]) if dst else "") for mode, src, *dst in jobs]
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(jobs)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.long  # make test: the JAX and PyTorch passes train, save and load on their backend
@pytest.mark.parametrize("other", _other_backends())
def test_keras_file_moves_between_backends(other, tmp_path):
    """Pruned .keras saved here resumes pruning on ``other`` (same masks, step counter, zeros);
    the file saved there loads back here with the same outputs. Clustered too."""
    pruned = _compile(dc_keras.prune(mlp(), PolynomialDecay(0.2, 0.8, begin_step=0, end_step=12, frequency=2)),
                      False, 1)
    pruned.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])  # 8 steps
    src, dst = tmp_path / "pruned.keras", tmp_path / f"pruned_{other}.keras"
    pruned.save(src)
    np.save(str(src) + ".x.npy", X)
    np.save(str(src) + ".y.npy", Y)
    res, = _child(other, ("resume", src, dst))
    assert res["backend"] == other
    assert res["layers"] == ["PruneWrapper", "PruneWrapper"]
    np.testing.assert_allclose(res["pred"], keras.ops.convert_to_numpy(pruned.predict(X, verbose=0)),
                               rtol=1e-5, atol=1e-5)
    assert res["steps"] == [16, 16] and res["zeros_ok"]
    assert res["sparsity"] == pytest.approx([0.8, 0.8], abs=0.02)  # schedule finished over there
    back = keras.saving.load_model(dst)
    np.save(str(dst) + ".x.npy", X)
    np.save(str(dst) + ".y.npy", Y)
    here = keras.ops.convert_to_numpy(back.predict(X, verbose=0))
    for layer, w, mask in _masks(back):
        assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == 16
        assert np.all(w[mask == 0] == 0)
    clustered = dc_keras.cluster(dc_keras.strip(back), bits=2)
    csrc = tmp_path / "clustered.keras"
    clustered.save(csrc)
    np.save(str(csrc) + ".x.npy", X)
    np.save(str(csrc) + ".y.npy", Y)
    there, res = _child(other, ("load", dst), ("load", csrc))
    np.testing.assert_allclose(here, there["pred"], rtol=1e-5, atol=1e-5)
    assert res["layers"] == ["ClusterWrapper", "ClusterWrapper"]
    np.testing.assert_allclose(res["pred"], keras.ops.convert_to_numpy(clustered.predict(X, verbose=0)),
                               rtol=1e-5, atol=1e-5)


# The optimizer entry of a .keras file compiled on torch (Keras 3.15 records torch's own class).
_TORCH_ADAM = {"module": "keras.src.backend.torch.optimizers.torch_adam", "class_name": "Adam",
               "config": {"name": "adam", "learning_rate": 0.01}, "registered_name": None}


@pytest.mark.skipif(not importlib.util.find_spec("torch"), reason="torch is not installed: no torch optimizer class")
def test_a_torch_optimizer_class_trains_on_torch_and_is_a_clear_error_elsewhere():
    """What load_model restores from a .keras file compiled on torch: torch's own Adam. On torch it
    trains; on JAX / TensorFlow fit failed in its first step with torch's "TypeError: expected Tensor
    as element 0 in argument 0, but got jaxlib._jax.ArrayImpl" (plain Keras too); PruningCallback
    now stops it first with a TypeError naming the cause and the fix."""
    optimizer = keras.saving.deserialize_keras_object(_TORCH_ADAM)
    assert dc_keras._compat.optimizer_backend(optimizer) == "torch"
    assert dc_keras._compat.optimizer_backend(keras.optimizers.Adam()) == ("torch" if BACKEND == "torch" else None)
    pruned = dc_keras.prune(mlp(), PolynomialDecay(0.2, 0.8, begin_step=0, end_step=8, frequency=2))
    pruned.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if BACKEND == "torch":
        pruned.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
        assert [l.sparsity() for l in pruned.layers if isinstance(l, dc_keras.train.PruneWrapper)]
        return
    with pytest.raises(TypeError, match=r"optimizer is keras\.src\.backend\.torch\.optimizers\.torch_adam\.Adam, "
                                        r"the class Keras uses on the torch backend.*"
                                        r"load_model\(path, compile=False\) and compile\(\) the model again"):
        pruned.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])


_COMPILED_CHILD = r"""
import json, sys
import numpy as np, keras, dc_keras
out = []
for mode, path in json.loads(sys.argv[1]):
    X = np.load(path + ".x.npy"); Y = np.load(path + ".y.npy")
    if mode == "save":  # a plain and a pruned model, compiled here, trained 8 steps, saved compiled
        for kind in ("plain", "pruned"):
            inputs = keras.Input((12,))
            model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.Dense(24, name="d1")(inputs)))
            if kind == "pruned":
                model = dc_keras.prune(model, dc_keras.schedules.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=16,
                                                                                  frequency=2))
            model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()] if kind == "pruned" else [])
            model.save(path.replace("KIND", kind))
        out.append("saved")
        continue
    model = keras.saving.load_model(path, compile=(mode != "recompile"))
    if mode == "recompile":
        model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned = [l for l in model.layers if isinstance(l, dc_keras.train.PruneWrapper)]
    try:
        model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()] if pruned else [])
        out.append({"ok": [int(keras.ops.convert_to_numpy(l.pruning_step)) for l in pruned]})
    except TypeError as e:
        out.append({"error": str(e)})
print("RESULT " + json.dumps(out))
"""


def _compiled_child(backend, *jobs):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _COMPILED_CHILD, json.dumps([(m, str(p)) for m, p in jobs])],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][len("RESULT "):])


@pytest.mark.long  # four child processes (~60 s); the in-process test above covers the error
@pytest.mark.skipif(not importlib.util.find_spec("torch"), reason="torch is not installed")
def test_compiled_keras_files_across_backends_train_or_say_how(tmp_path):
    """load_model(path) (compile=True) then fit, through the public API only: files compiled on JAX
    or TensorFlow train on torch (the pruning schedule resumes: step 8 -> 16); files compiled on
    torch do not train on JAX or TensorFlow, plain Keras included (torch's TypeError: Keras's
    limitation), and a pruned one says why and how (compile=False, compile again), which then
    trains."""
    files = {}
    for backend in ("torch", "jax", "tensorflow"):
        path = tmp_path / f"{backend}_KIND.keras"
        np.save(str(path) + ".x.npy", X)
        np.save(str(path) + ".y.npy", Y)
        for kind in ("plain", "pruned"):
            files[backend, kind] = str(path).replace("KIND", kind)
            np.save(files[backend, kind] + ".x.npy", X)
            np.save(files[backend, kind] + ".y.npy", Y)
        files[backend] = path
    assert _compiled_child("torch", ("save", files["torch"])) == ["saved"]
    jax = _compiled_child("jax", ("save", files["jax"]), ("fit", files["torch", "plain"]),
                          ("fit", files["torch", "pruned"]), ("recompile", files["torch", "pruned"]))
    tf = _compiled_child("tensorflow", ("save", files["tensorflow"]), ("fit", files["torch", "plain"]),
                         ("fit", files["torch", "pruned"]))
    for plain, pruned in ((jax[1], jax[2]), (tf[1], tf[2])):
        assert "expected Tensor as element 0" in plain["error"], plain  # Keras's own failure
        assert re.search(r"optimizer is keras\.src\.backend\.torch\..*compile=False\) and compile\(\)",
                         pruned["error"]), pruned
    assert jax[3] == {"ok": [16, 16]}  # the documented fix: the schedule resumes at step 8
    torch = _compiled_child("torch", ("fit", files["jax", "plain"]), ("fit", files["jax", "pruned"]),
                            ("fit", files["tensorflow", "plain"]), ("fit", files["tensorflow", "pruned"]))
    assert torch == [{"ok": []}, {"ok": [16, 16]}, {"ok": []}, {"ok": [16, 16]}]

def _readme_example():
    """The README's first Python example as tests/test_docs.py runs it (placeholders filled with a tiny
    model and data), plus a line reporting what it made."""
    import _docs
    from test_docs import runnable

    code = _docs.blocks("README.md", "python")[0][2]
    assert "dc_keras.export.to_tflite(model" in code
    return runnable("README.md", code) + textwrap.dedent("""
        import json
        print("RESULT " + json.dumps({"backend": keras.backend.backend(), "bytes": len(packed),
                                      "outputs": interpreter.get_output_details()[0]["shape"].tolist()}))
    """)


@pytest.mark.parametrize("backend", [b for b in ("jax", "torch") if importlib.util.find_spec(b)])
@pytest.mark.long  # make test: the JAX and PyTorch passes run this file's export test on their backend
def test_readme_example_unchanged_on_backend(backend, tmp_path):
    """A JAX or PyTorch user runs the README example as is (only KERAS_BACKEND differs)."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _readme_example()], env=env, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
    assert res["backend"] == backend and res["bytes"] > 0
    assert (tmp_path / "model.packed.tflite").read_bytes()[4:8] == b"TFL3"


def test_fit_counts_steps_and_saves_them_whatever_the_callback_order(tmp_path):
    # JAX: the compiled step carries no step counter or threshold (PruningCallback counts on the
    # host); on every backend the counter is exact at each epoch end, also in a checkpoint written
    # by a callback that runs before PruningCallback, and model.weights is the same after fit().
    pruned = _compile(dc_keras.prune(mlp(), PolynomialDecay(0.2, 0.75, begin_step=0, end_step=10, frequency=3)),
                      False, 1)
    names = [v.path for v in pruned.weights]
    seen = []

    class Save(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if BACKEND == "jax" and batch == 1:  # inside the epoch: out of fit()'s carried state
                carried = {id(v) for v in self.model.non_trainable_variables}
                seen.append([id(w.pruning_step) in carried for w in self.model.layers
                             if isinstance(w, dc_keras.train.PruneWrapper)])

        def on_epoch_end(self, epoch, logs=None):
            self.model.save_weights(str(tmp_path / f"e{epoch}.weights.h5"))

    pruned.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[Save(), dc_keras.PruningCallback()])
    assert [v.path for v in pruned.weights] == names
    if BACKEND == "jax":
        assert seen == [[False, False]] * 2
    for epoch, steps in ((0, 8), (1, 16)):
        fresh = _compile(dc_keras.prune(mlp(), PolynomialDecay(0.2, 0.75, begin_step=0, end_step=10, frequency=3)),
                         False, 1)
        fresh.load_weights(str(tmp_path / f"e{epoch}.weights.h5"))
        assert [int(keras.ops.convert_to_numpy(layer.pruning_step)) for layer, _, _ in _masks(fresh)] == [steps] * 2
    for (layer, w, mask), (other, w2, mask2) in zip(_masks(pruned), _masks(fresh)):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(mask, mask2)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer._thresholds[0]),
                                      keras.ops.convert_to_numpy(other._thresholds[0]))


# steps_per_execution=3 over 4 batches: the second execution runs out of data after one step.
UNKNOWN_LENGTH_MODES = [(False, 1), (True, 3)] if BACKEND != "torch" else [(False, 1)]


def _four_batches():
    """A generator of 4 batches of 16: data of unknown length (no len())."""
    for i in range(4):
        yield X[i * 16:(i + 1) * 16], Y[i * 16:(i + 1) * 16]


def _assert_at_step_and_target(pruned, step, sparsity):
    for layer, w, mask in _masks(pruned):
        assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == step, layer.name
        assert (mask == 0).mean() == pytest.approx(sparsity, abs=1e-6), (layer.name, (mask == 0).mean())
        assert np.all(w[mask == 0] == 0)


@pytest.mark.parametrize("jit_compile,steps", UNKNOWN_LENGTH_MODES,
                         ids=[f"jit{int(j)}-spe{s}" for j, s in UNKNOWN_LENGTH_MODES])
def test_fit_over_data_of_unknown_length_counts_its_steps_and_reaches_the_target(jit_compile, steps):
    """fit() over a generator (no length: Keras runs the step once more after the last batch and
    calls on_train_batch_begin for it). On TensorFlow that extra call counted a step that never
    trained (the counter's increment did not wait for the data): 10 steps after 8. On JAX the
    update at end_step, made in that extra call, was undone when Keras wrote back its state, and
    the fit ended short of the target (0.49 for 0.5); checking whether it stuck then read values
    a later compiled step had consumed (JAX: "Array has been deleted")."""
    pruned = _compile(dc_keras.prune(mlp(), PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)),
                      jit_compile, steps)
    for _ in range(2):
        pruned.fit(_four_batches(), epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    _assert_at_step_and_target(pruned, 8, 0.5)


def _six_batches():
    """A generator of 6 batches of 10 (data of unknown length): steps_per_execution=3 runs it as
    two whole executions, so the updates scheduled inside them are those of a fit of known length."""
    for i in range(6):
        yield X[i * 10:(i + 1) * 10], Y[i * 10:(i + 1) * 10]


@pytest.mark.parametrize("jit_compile,steps", UNKNOWN_LENGTH_MODES,
                         ids=[f"jit{int(j)}-spe{s}" for j, s in UNKNOWN_LENGTH_MODES])
def test_fit_over_data_of_unknown_length_updates_the_masks_where_a_fit_of_known_length_does(jit_compile, steps):
    """Keras calls on_train_batch_begin once more after a generator's last batch, for an execution
    that finds no data. On TensorFlow the update scheduled for the next step (6, then 12) was made
    there and stayed: a step early, past the end of the fit (d1's sparsity 0.326 after the first
    fit instead of 0.243, 0.465 after the second instead of 0.438). Now the generator's fits
    leave every variable (weights, masks, thresholds, counters) bit for bit as the same fits over
    arrays do (JAX wrote back the state of its last step itself; torch makes no such call). Plain
    SGD: on TensorFlow Keras's own optimizer.iterations counts that empty step too, which Adam's
    bias correction would carry into the weights of the second fit."""
    def trained(generator):
        keras.utils.set_random_seed(1)
        pruned = dc_keras.prune(mlp(), PolynomialDecay(0.0, 0.5, begin_step=0, end_step=20, frequency=2))
        pruned.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       jit_compile=jit_compile, steps_per_execution=steps)
        states = []
        for _ in range(2):
            if generator:
                pruned.fit(_six_batches(), epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
            else:
                pruned.fit(X[:60], Y[:60], batch_size=10, shuffle=False, epochs=1, verbose=0,
                           callbacks=[dc_keras.PruningCallback()])
            states.append({v.path: keras.ops.convert_to_numpy(v) for v in pruned.weights})
        return states

    for fit, (unknown, known) in enumerate(zip(trained(True), trained(False))):
        assert unknown.keys() == known.keys()
        for path in known:
            np.testing.assert_array_equal(unknown[path], known[path], err_msg=f"fit {fit}: {path}")
    assert {path: int(v) for path, v in known.items() if path.endswith("pruning_step")} == \
        {"d1/pruning_step": 12, "out/pruning_step": 12}


@pytest.mark.parametrize("jit_compile,steps", UNKNOWN_LENGTH_MODES,
                         ids=[f"jit{int(j)}-spe{s}" for j, s in UNKNOWN_LENGTH_MODES])
def test_epochs_over_a_filtered_dataset_update_the_masks_where_epochs_of_known_length_do(jit_compile, steps):
    """The same within one fit() of two epochs over a filtered tf.data dataset (unknown
    cardinality): the update undone at the first epoch's end is made at the second epoch's first
    batch, and the one after the fit's last step (12) is not made. On TensorFlow d1's masks ended
    at sparsity 0.465 (spe 1) / 0.486 (spe 3), 0.438 over arrays; now every variable matches bit for
    bit."""
    import tensorflow as tf

    def trained(unknown):
        keras.utils.set_random_seed(1)
        pruned = dc_keras.prune(mlp(), PolynomialDecay(0.0, 0.5, begin_step=0, end_step=20, frequency=2))
        pruned.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       jit_compile=jit_compile, steps_per_execution=steps)
        data = tf.data.Dataset.from_tensor_slices((X[:60], Y[:60])).batch(10)
        if unknown:
            data = data.filter(lambda *_: True)
            assert data.cardinality() == tf.data.UNKNOWN_CARDINALITY
        pruned.fit(data, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()])
        return pruned

    unknown, known = trained(True), trained(False)
    for a, b in zip(unknown.weights, known.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)
    assert _steps_of(unknown) == {"d1": 12, "out": 12}


# run_eagerly=True: the step runs eagerly on every backend (torch's fit() always does).
SHARED_MODES = [(j, s, False) for j, s in MODES] + [(False, 1, True)]


def _shared_model(schedule):
    inputs = keras.Input((12,))
    shared = keras.layers.Dense(12, name="shared")
    return dc_keras.prune(keras.Model(inputs, keras.layers.Dense(3, name="out")(shared(shared(inputs)))), schedule)


def _steps_of(pruned):
    return {layer.name: int(keras.ops.convert_to_numpy(layer.pruning_step)) for layer, _, _ in _masks(pruned)}


@pytest.mark.parametrize("jit_compile,steps,eager", SHARED_MODES,
                         ids=[f"jit{int(j)}-spe{s}" + ("-eager" if e else "") for j, s, e in SHARED_MODES])
def test_a_shared_pruned_layer_counts_one_step_per_training_step(jit_compile, steps, eager, tmp_path):
    """A pruned layer called twice per step (d(d(x))) advanced its counter twice per step wherever
    the step counts (here: fit() over a generator): 8 after 4 batches, so its schedule ran twice as
    fast. A traced step counts once per trace; a step run eagerly (torch's fit(), run_eagerly=True
    on every backend) counted once per call (8 on TensorFlow and torch) and now counts once per
    forward pass of the model. Saved mid-schedule to .keras and reloaded, it resumes bit for bit."""
    pruned = _compile(_shared_model(PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)),
                      jit_compile, steps, run_eagerly=eager)
    pruned.fit(_four_batches(), epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    assert _steps_of(pruned) == {"shared": 4, "out": 4}
    pruned.save(str(tmp_path / "shared.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "shared.keras"))
    assert loaded.run_eagerly == pruned.run_eagerly and _steps_of(loaded) == {"shared": 4, "out": 4}
    for model in (pruned, loaded):
        model.fit(_four_batches(), epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
        _assert_at_step_and_target(model, 8, 0.5)
    for a, b in zip(pruned.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)


def _custom_loop_step(pruned, traced):
    """One training step of a custom loop on this backend (``traced``: tf.function / jax.jit;
    otherwise eager), with a Keras optimizer."""
    optimizer = keras.optimizers.Adam(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, pruned(x, training=True))
            optimizer.apply_gradients(zip(tape.gradient(loss, pruned.trainable_variables), pruned.trainable_variables))

        return tf.function(step) if traced else step
    if BACKEND == "torch":
        import torch

        def step(x, y):
            pruned.zero_grad()
            loss_fn(torch.as_tensor(y), pruned(torch.as_tensor(x), training=True)).backward()
            optimizer.apply([v.value.grad for v in pruned.trainable_variables], pruned.trainable_variables)

        return step
    import jax

    optimizer.build(pruned.trainable_variables)

    def loss_and_state(trainable, non_trainable, x, y):
        out, non_trainable = pruned.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, out), non_trainable

    def pure(trainable, non_trainable, opt_vars, x, y):
        (_, non_trainable), grads = jax.value_and_grad(loss_and_state, has_aux=True)(trainable, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return trainable, non_trainable, opt_vars

    pure = jax.jit(pure) if traced else pure

    def step(x, y):
        groups = (pruned.trainable_variables, pruned.non_trainable_variables, optimizer.variables)
        values = pure(*[[v.value for v in group] for group in groups], x, y)
        for group, new in zip(groups, values):
            for variable, value in zip(group, new):
                variable.assign(value)

    return step


CUSTOM_LOOP_MODES = [True, False] if BACKEND != "torch" else [False]


@pytest.mark.parametrize("traced", CUSTOM_LOOP_MODES, ids=["traced" if t else "eager" for t in CUSTOM_LOOP_MODES])
def test_a_shared_pruned_layer_in_a_custom_loop_counts_and_updates_once_per_step(traced):
    """A custom loop (the step updates the masks itself): a layer called twice per step counted
    each call when the step ran eagerly (TensorFlow eager, torch), so its schedule ran twice as
    fast; and in a traced step its second call read the counter the first had advanced and applied
    the next step's update a step early (TensorFlow: sparsity 0.285 after step 1, scheduled at
    step 2). Now after each step the counter says how many ran and the masks hold the schedule's
    last update at or before it, for the shared layer as for the single-use one."""
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)
    pruned = _shared_model(schedule)
    step = _custom_loop_step(pruned, traced)
    cb = dc_keras.PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    for i in range(9):
        step(X[(i % 4) * 16:(i % 4 + 1) * 16], Y[(i % 4) * 16:(i % 4 + 1) * 16])
        target = float(keras.ops.convert_to_numpy(schedule.sparsity(i - i % 2)))
        for layer, w, mask in _masks(pruned):
            assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == i + 1, (layer.name, i)
            pruned_now = int((mask == 0).sum())
            assert pruned_now == int(np.floor(np.float32(target) * np.float32(mask.size) + np.float32(1e-3))), \
                (layer.name, i, pruned_now, target)
            assert np.all(w[mask == 0] == 0)
    cb.on_train_end()
    _assert_at_step_and_target(pruned, 9, 0.5)


@pytest.mark.skipif(BACKEND != "torch", reason="a torch.optim optimizer trains Keras variables on the torch backend only")
def test_torch_custom_loop_with_a_torch_optimizer_prunes_and_clusters():
    """docs/models.md's torch custom loop with a native ``torch.optim`` optimizer (which applies no
    Keras constraint, so the stored pruned weights are not zeroed by it): the pruned weights get
    exactly zero gradient, the masks reach the target, the model computes what its stripped form
    computes and strip() holds exact zeros; the clustered phase then trains the centroids."""
    import torch

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train(model, steps):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        grads, pruned_before = [], {}
        for i in range(steps):
            optimizer.zero_grad()
            x, y = torch.as_tensor(X[(i % 8) * 8:(i % 8 + 1) * 8]), torch.as_tensor(Y[(i % 8) * 8:(i % 8 + 1) * 8])
            loss_fn(y, model(x, training=True)).backward()
            grads.append({id(v): v.value.grad.detach().numpy().copy() for v in model.trainable_variables})
            optimizer.step()
            for k, (_, _, mask) in enumerate(_masks(model)):  # a pruned weight never comes back (ranked by weight * mask)
                assert np.all(mask[pruned_before.get(k, mask) == 0] == 0), (k, i)
                pruned_before[k] = mask
        return grads

    pruned = dc_keras.prune(mlp(), PolynomialDecay(0.0, 0.75, begin_step=0, end_step=12, frequency=3))
    cb = dc_keras.PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    grads = train(pruned, 16)
    cb.on_train_end()
    stored_nonzero = 0
    for layer, w, mask in _masks(pruned):
        var = layer._targets[0][1]
        assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == 16
        assert (mask == 0).mean() == pytest.approx(0.75, abs=0.02), layer.name
        assert np.all(grads[-1][id(var)][mask == 0] == 0.0), "a pruned weight got a gradient"
        stored_nonzero += int(np.count_nonzero(w[mask == 0]))
    assert stored_nonzero > 0  # torch.optim moved them (Adam's moments): the forward pass must mask
    stripped = dc_keras.strip(pruned)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned(X)), keras.ops.convert_to_numpy(stripped(X)))
    for layer, _, mask in _masks(pruned):
        kernel = stripped.get_layer(layer.name).get_weights()[0]
        assert np.all(kernel[mask == 0] == 0.0) and np.all(kernel[mask == 1] != 0.0), layer.name
    clustered = dc_keras.cluster(stripped, bits=2)
    before = [keras.ops.convert_to_numpy(w).copy() for w in clustered.trainable_weights]
    train(clustered, 8)
    assert any(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, clustered.trainable_weights))
    final = dc_keras.strip(clustered)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clustered(X)), keras.ops.convert_to_numpy(final(X)))
    for name in ("d1", "out"):
        kernel = final.get_layer(name).get_weights()[0]
        assert np.unique(kernel[kernel != 0]).size <= 4 and (kernel == 0).mean() >= 0.74, name


def _family(name):
    """A small model of each family docs/models.md lists, and inputs for it."""
    rng, layers = np.random.default_rng(1), keras.layers
    if name == "embedding":
        inputs = keras.Input((7,), dtype="int32")
        h = layers.Dense(16, activation="relu", name="d1")(layers.GlobalAveragePooling1D()(layers.Embedding(40, 16, name="emb")(inputs)))
        return keras.Model(inputs, layers.Dense(3, name="out")(h)), rng.integers(0, 40, size=(32, 7)).astype("int32")
    if name == "bn_residual_cnn":
        inputs = keras.Input((8, 8, 3))
        h = layers.ReLU()(layers.BatchNormalization(name="bn1")(layers.Conv2D(8, 3, padding="same", name="c1")(inputs)))
        r = layers.BatchNormalization(name="bn2")(layers.Conv2D(8, 3, padding="same", name="c2")(h))
        h = layers.GlobalAveragePooling2D()(layers.Add()([h, r]))
        return keras.Model(inputs, layers.Dense(3, name="out")(h)), rng.normal(size=(32, 8, 8, 3)).astype("float32")
    if name == "bidirectional_rnn":
        inputs = keras.Input((5, 4))
        h = layers.Bidirectional(layers.LSTM(6, return_sequences=True), name="bl")(inputs)
        h = layers.Bidirectional(layers.GRU(6), name="bg")(h)
        return keras.Model(inputs, layers.Dense(3, name="out")(h)), rng.normal(size=(32, 5, 4)).astype("float32")
    inputs = keras.Input((5, 16))
    h = layers.LayerNormalization(name="ln1")(inputs + layers.MultiHeadAttention(2, 8, name="mha")(inputs, inputs))
    f = layers.EinsumDense("btd,df->btf", output_shape=(None, 32), activation="relu", name="ein")(h)
    h = layers.GlobalAveragePooling1D()(layers.LayerNormalization(name="ln2")(h + layers.Dense(16, name="ff2")(f)))
    return keras.Model(inputs, layers.Dense(3, name="out")(h)), rng.normal(size=(32, 5, 16)).astype("float32")


def _compressed_kernels(model):
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights
            if w.path.endswith(("kernel", "embeddings")) and "bn" not in w.path}


@pytest.mark.long  # ~10-60 s each, per backend (make test-long's JAX and PyTorch passes)
@pytest.mark.parametrize("family", ["bn_residual_cnn", "bidirectional_rnn", "transformer", "embedding"])
def test_prune_then_cluster_each_model_family_on_this_backend(family, tmp_path):
    """docs/models.md's two-phase recipe on a BatchNorm CNN with a residual Add, Bidirectional
    LSTM/GRU, a MultiHeadAttention/EinsumDense/LayerNormalization block and an Embedding model:
    every compressed weight reaches the target sparsity, then <= 2**bits shared values (+0) on the
    same zeros; evaluate() agrees with predict(); the .keras file reloads without custom_objects
    and computes bit for bit the same."""
    keras.utils.set_random_seed(1)
    model, x = _family(family)
    y = RNG.integers(0, 3, size=len(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruned = dc_keras.prune(model, PolynomialDecay(0.0, 0.7, begin_step=0, end_step=8, frequency=1))
    pruned.compile("adam", loss)
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()])
    stripped = dc_keras.strip(pruned)
    zeros = {path: k == 0 for path, k in _compressed_kernels(stripped).items()}
    assert len(zeros) >= 3, sorted(zeros)
    for path, z in zeros.items():
        assert z.mean() == pytest.approx(0.7, abs=0.04), (path, z.mean())
    clustered = dc_keras.cluster(stripped, bits=3)
    clustered.compile("adam", loss)
    clustered.fit(x, y, batch_size=8, epochs=1, verbose=0)
    predicted = clustered.predict(x, batch_size=8, verbose=0)
    assert clustered.evaluate(x, y, batch_size=32, verbose=0) == pytest.approx(
        float(keras.ops.convert_to_numpy(loss(y, predicted))), rel=1e-5)
    clustered.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    np.testing.assert_array_equal(loaded.predict(x, batch_size=8, verbose=0), predicted)
    final = dc_keras.strip(loaded)
    np.testing.assert_array_equal(final.predict(x, batch_size=8, verbose=0), predicted)
    kernels = _compressed_kernels(final)
    assert set(kernels) == set(zeros), (sorted(kernels), sorted(zeros))
    for path, k in kernels.items():  # (a folded BatchNorm scales a kernel's channels: zeros stay zeros)
        assert np.unique(k[k != 0]).size <= 8, path
        np.testing.assert_array_equal(k == 0, zeros[path], err_msg=path)


@pytest.mark.parametrize("jit_compile,steps", MODES, ids=[f"jit{int(j)}-spe{s}" for j, s in MODES])
def test_fit_without_the_callback_keeps_the_model(jit_compile, steps):
    """The missing-PruningCallback error leaves the model as it was on every backend: on JAX, Keras
    detaches the variables' values before the first step and only reattaches them after a step
    returned, so the error (raised while that step is traced) left every weight empty before
    ('NoneType' object is not callable on the next fit/predict)."""
    pruned = _compile(dc_keras.prune(mlp(), PolynomialDecay(0.2, 0.75, begin_step=0, end_step=10, frequency=3)),
                      jit_compile, steps)
    before = [keras.ops.convert_to_numpy(v).copy() for v in pruned.weights]
    expected = keras.ops.convert_to_numpy(pruned.predict(X, verbose=0))
    with pytest.raises(RuntimeError, match="trained without dc_keras.PruningCallback"):
        pruned.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    for v, b in zip(pruned.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b, err_msg=v.path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pruned.predict(X, verbose=0)), expected)
    pruned.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()])
    for layer, w, mask in _masks(pruned):
        assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == 16
        assert np.all(w[mask == 0] == 0.0)


def _negative_zeros(a):
    return int(np.sum(np.signbit(a) & (a == 0)))


def test_stripped_zeros_are_positive_zeros(tmp_path):
    """A pruned weight is stored as w * 0, i.e. -0.0 where w was negative, in proportions that
    differ between backends (the same training gave 285 on TF and 280 on torch); strip() wrote those
    sign bits into the kernels, so the same model made different .tflite files on different
    backends and packed larger (-0.0 is a value of its own to the packer: 2,882 B instead of
    2,726 B for a 64x40 kernel at 17 % density). strip() now writes +0.0 for every zero."""
    model = mlp()
    kernel = model.get_layer("d1").get_weights()
    assert (kernel[0] < 0).any()
    pruned = _compile(dc_keras.prune(model, PolynomialDecay(0.2, 0.75, begin_step=0, end_step=10, frequency=3)),
                      False, 1)
    pruned.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()])
    assert sum(_negative_zeros(w) for _, w, _ in _masks(pruned)) > 0  # what training leaves
    stripped = dc_keras.strip(pruned)
    for layer in ("d1", "out"):
        k = stripped.get_layer(layer).get_weights()[0]
        assert (k == 0).mean() >= 0.74 and _negative_zeros(k) == 0, layer
    final = dc_keras.strip(dc_keras.cluster(stripped, bits=2))
    for layer in ("d1", "out"):
        k = final.get_layer(layer).get_weights()[0]
        assert (k == 0).mean() >= 0.74 and _negative_zeros(k) == 0, layer


def test_loading_a_pruned_model_does_not_repeat_the_schedule_warning(tmp_path):
    """PolynomialDecay warns once, where the user builds it, when end_step - begin_step steps stop
    short of the target; load_model (here, or on another backend when resuming there) rebuilt the
    schedule from its config and repeated that warning at the load_model line, after training."""
    import warnings

    with pytest.warns(UserWarning, match="training for end_step - begin_step = 16 steps"):
        schedule = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=16, frequency=4)
    pruned = _compile(dc_keras.prune(mlp(), schedule), False, 1)
    pruned.save(tmp_path / "p.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(tmp_path / "p.keras")
    assert [str(w.message) for w in caught if "PolynomialDecay" in str(w.message)] == []
    assert loaded.layers[1].schedule == schedule


@pytest.mark.skipif(BACKEND != "jax", reason="the in-process jax2tf export route is the JAX backend's")
def test_jax_export_says_when_it_does_not_make_the_tensorflow_backends_file(clustered_mlp):
    """On JAX, to_tflite converts in a TF-backend child (the TF backend's file, README) unless the call
    needs this process (configure=, converter_options=, a generator as representative_data); it then
    took the jax2tf route without a word: a different, larger file (here 4,328 B instead of 1,144 B)."""
    model, default, said = clustered_mlp  # default: to_tflite(model, pack=False), the warnings it gave
    assert not [m for m in said if "jax2tf" in m], said
    for kwargs in ({"configure": lambda _: None}, {"converter_options": {"allow_custom_ops": True}}):
        with pytest.warns(UserWarning, match=r"jax2tf.*KERAS_BACKEND=tensorflow") as record:
            data = dc_keras.export.to_tflite(model, pack=False, **kwargs)
        hit = [w for w in record if "jax2tf" in str(w.message)]
        assert len(hit) == 1 and hit[0].filename == __file__, [(w.filename, str(w.message)) for w in record]
        assert data != default


@pytest.mark.skipif(BACKEND != "jax", reason="the in-process jax2tf export route is the JAX backend's")
@pytest.mark.parametrize("kind", ["dropout", "lstm"])
def test_jax_in_process_export_of_a_model_with_a_seed_generator(kind):
    """On JAX, to_tflite with converter_options= (or configure=) converts through jax2tf in this
    process, and Keras's endpoint wrote every non-trainable variable back, a SeedGenerator's uint32
    state too: every model with Dropout or an LSTM/GRU failed there ("TFLite conversion failed:
    'tfl.assign_variable' op operand #1 must be tensor of 32-bit float ... but got 'tensor<2xui32>'",
    to_tflite's own docstring example on an LSTM among them). They convert now, with Keras's outputs."""
    import warnings

    if kind == "dropout":
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dropout(0.5), keras.layers.Dense(3)])
        x, batch = np.random.default_rng(0).random((4, 6), dtype=np.float32), None
    else:
        model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)])
        x, batch = np.random.default_rng(0).random((8, 5, 3), dtype=np.float32), 8
    assert "uint32" in {str(v.dtype) for v in model.non_trainable_variables}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = dc_keras.export.to_tflite(model, batch_size=batch, pack=False,
                                         converter_options={"experimental_enable_resource_variables": True})
    np.testing.assert_allclose(_predict_tflite(data, x), keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)

def _predict_tflite(data, x):
    from ai_edge_litert.interpreter import Interpreter as LiteRT

    interp = LiteRT(model_content=data)
    interp.resize_tensor_input(interp.get_input_details()[0]["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_export_of_a_custom_layer_from_an_importable_module():
    """torch could not export a model with a custom layer at all (the TF-backend child did not import its
    module: Keras's raw "Could not locate class" traceback), JAX fell back to jax2tf; both now convert
    in the child like a built-in layer."""
    import warnings

    inputs = keras.Input((12,))
    model = keras.Model(inputs, Scale(name="sc")(inputs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = dc_keras.export.to_tflite(model)
    assert not [str(w.message) for w in caught if "jax2tf" in str(w.message)]
    np.testing.assert_allclose(_predict_tflite(data, X[:5]), keras.ops.convert_to_numpy(model(X[:5])),
                               rtol=1e-5, atol=1e-5)


def test_export_of_a_custom_layer_defined_inside_a_function():
    """A class the TF-backend child cannot import: torch says which and how to fix it (before starting
    the child); JAX converts through jax2tf, with a warning saying so."""
    @keras.saving.register_keras_serializable("dc_keras_tests")
    class Inner(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((12,))
    model = keras.Model(inputs, Inner(name="inner")(inputs))
    if BACKEND == "torch":
        with pytest.raises(ValueError, match=r"'Inner' is not a top-level name of module .*Fix: move it to the "
                                             r"top level of a module"):
            dc_keras.export.to_tflite(model)
        return
    if BACKEND == "jax":
        with pytest.warns(UserWarning, match=r"'Inner' is not a top-level name.*jax2tf"):
            data = dc_keras.export.to_tflite(model)
    else:
        data = dc_keras.export.to_tflite(model)
    np.testing.assert_allclose(_predict_tflite(data, X[:5]), 2 * X[:5], rtol=1e-6)


def test_export_of_an_unbuilt_model_says_how_to_build_it():
    """It gave the converter's RuntimeError and an irrelevant SELECT_TF_OPS hint."""
    with pytest.raises(ValueError, match=r"model 'unbuilt' is not built.*keras.Input.*model.build"):
        dc_keras.export.to_tflite(keras.Sequential([keras.layers.Dense(3)], name="unbuilt"))


_SCRIPT = """
import json, sys, warnings
import numpy as np, keras, dc_keras
from mylayers import Twice  # a module next to this script (not on PYTHONPATH; run from another directory)

@keras.saving.register_keras_serializable("script")
class Thrice(keras.layers.Layer):
    def call(self, x):
        return x * 3.0

x = np.ones((2, 4), "float32")
out = {}
for layer in (Twice(), Thrice()):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer(inputs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out[type(layer).__name__] = {"pred": dc_keras.pipeline.predict_tflite(dc_keras.export.to_tflite(model),
                                                                                   x).tolist()}
        except Exception as exc:
            out[type(layer).__name__] = {"error": type(exc).__name__ + ": " + str(exc)}
    out[type(layer).__name__]["warnings"] = [str(w.message) for w in caught if "to_tflite" in str(w.message)]
print("RESULT " + json.dumps(out))
"""


@pytest.mark.long  # make test-long: one JAX and one PyTorch process
@pytest.mark.parametrize("backend", [b for b in ("jax", "torch") if importlib.util.find_spec(b)])
def test_script_with_custom_layers_exports_on_backend(backend, tmp_path):
    """A script's custom layer imported from the module next to it exports on JAX and torch (the child
    searches the script's sys.path too); one defined in the script itself (__main__) is named with
    the fix on torch and converted through jax2tf with a warning on JAX."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "mylayers.py").write_text(textwrap.dedent("""
        import keras

        @keras.saving.register_keras_serializable("mylayers")
        class Twice(keras.layers.Layer):
            def call(self, x):
                return x * 2.0
    """))
    (project / "script.py").write_text(_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, str(project / "script.py")], env=env, cwd=str(elsewhere),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads([l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
    assert res["Twice"] == {"pred": [[2.0] * 4] * 2, "warnings": []}, res["Twice"]
    if backend == "torch":
        assert res["Thrice"]["error"] == (
            "UnimportableClassError: to_tflite: this model's custom class(es) cannot be loaded by the "
            "TensorFlow-backend subprocess that converts it on the torch backend: 'Thrice' is defined in __main__ "
            "(the script or notebook that runs). Fix: move it to the top level of a module (a .py file, e.g. next "
            "to your script), decorated with @keras.saving.register_keras_serializable(), and import it from there")
    else:
        assert res["Thrice"]["pred"] == [[3.0] * 4] * 2
        assert len(res["Thrice"]["warnings"]) == 1 and "'Thrice' is defined in __main__" in res["Thrice"]["warnings"][0]


@pytest.mark.skipif(BACKEND != "torch", reason="torch converts in the TF-backend child only (JAX falls back)")
def test_torch_export_of_custom_layers_that_load_or_do_not():
    """An unregistered custom layer of an importable module exports; one whose .keras does not load in the
    child is one message with the fix (it was Keras's traceback, cut to its last 8 lines)."""
    inputs = keras.Input((12,))
    model = keras.Model(inputs, Unregistered(name="un")(inputs))
    np.testing.assert_allclose(_predict_tflite(dc_keras.export.to_tflite(model), X[:5]), X[:5] + 1.0, rtol=1e-6)
    model = keras.Model(inputs, NoConfig(2.0, name="nc")(inputs))
    with pytest.raises(RuntimeError) as err:
        dc_keras.export.to_tflite(model)
    message = str(err.value)
    assert message.startswith("to_tflite: the model, saved as .keras, does not load in the TensorFlow-backend "
                              "subprocess that converts it (TypeError: ")
    assert "Exception encountered: NoConfig.__init__() missing 1 required positional argument: 'factor'" in message
    assert message.endswith("with a get_config() that returns their __init__ arguments") and "\n" not in message


def test_subclassed_model_clustering_in_init_keeps_its_values_through_a_keras_file(tmp_path):
    """A subclassed model that wraps layers with cluster()/ClusterWrapper in __init__: load_model
    rebuilds it in a symbolic pass, where the unbuilt layer's wrapper refused to build; its weights
    were silently not loaded (an unbuilt model; its first eager call clustered fresh random weights)."""
    net = ClusteredNet()
    net(X[:2])
    _compile(net, False, 1).fit(X, Y, epochs=2, batch_size=16, verbose=0)
    path = str(tmp_path / "net.keras")
    net.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    assert loaded.built and loaded.hidden.built
    for a, b in ((net.hidden, loaded.hidden), (net.head, loaded.head)):
        for x, y in zip(a.weights, b.weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y), err_msg=x.path)
    want = net.predict(X, verbose=0)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), want)
    assert loaded.hidden.distinct_values()["kernel"] == 8 and loaded.head.distinct_values()["kernel"] == 4
    loaded.fit(X, Y, epochs=1, batch_size=16, verbose=0)  # trains on: the assignments stay
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.hidden._assignments[0]),
                                  keras.ops.convert_to_numpy(net.hidden._assignments[0]))
    stripped = dc_keras.strip(loaded)
    assert np.unique(keras.ops.convert_to_numpy(stripped.hidden.kernel)).size <= 9


def test_export_of_a_subclassed_model_loaded_from_a_keras_file(tmp_path):
    """A subclassed model knows its inputs only once called in the process: one loaded from a
    .keras file failed to convert ("input shapes have not been set"), and on torch (and JAX's
    TensorFlow-backend child) every subclassed model did, since the child loads it from a file."""
    from dc_keras.pipeline import predict_tflite

    net = SubclassedNet()
    net(X[:1])
    path = str(tmp_path / "sub.keras")
    net.save(path)
    loaded = keras.saving.load_model(path)
    data = dc_keras.export.to_tflite(loaded)
    np.testing.assert_allclose(predict_tflite(data, X[:5]), keras.ops.convert_to_numpy(net(X[:5])),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keyed", [False, True], ids=["list", "dict"])
def test_export_of_a_two_input_subclassed_model_loaded_from_a_keras_file(tmp_path, keyed):
    """The same with two inputs (a list, or a dict: their build config is a list or a dict of
    shapes): only single-input models were called before the conversion, so these still failed
    with "input shapes have not been set". The dict's inputs came out named args_0, args_0_1 (the
    SavedModel route flattens the dict), so predict_tflite refused the dict by its keys."""
    from dc_keras.pipeline import predict_tflite

    net = TwoInputNet(keyed=keyed)
    a, b = X[:5, :4], X[:5, 4:]
    net({"a": a, "b": b} if keyed else [a, b])
    path = str(tmp_path / "two.keras")
    net.save(path)
    loaded = keras.saving.load_model(path)
    data = dc_keras.export.to_tflite(loaded)
    want = keras.ops.convert_to_numpy(net({"a": a, "b": b} if keyed else [a, b]))
    np.testing.assert_allclose(predict_tflite(data, [a, b]), want, rtol=1e-5, atol=1e-5)
    if keyed:  # inputs named by the dict's keys, as for the model exported without a reload (not args_0, args_0_1)
        np.testing.assert_allclose(predict_tflite(data, {"b": b, "a": a}), want, rtol=1e-5, atol=1e-5)


def test_export_with_an_input_signature(clustered_mlp):
    """input_signature= (as keras.Model.export takes it): a subclassed text model's token ids came out as a
    float32 input (Keras knows a subclassed model's inputs only as float32, also after a call with ints),
    and there was no way to ask for int32 or a fixed sequence length. Now the .tflite input has the given
    dtype, shape and name, on every backend (torch/JAX: through the TensorFlow-backend child), and gives
    the model's outputs; unnamed specs of a Functional model take its input names (as without a signature)."""
    from ai_edge_litert.interpreter import Interpreter

    from dc_keras.pipeline import predict_tflite

    ids = np.random.RandomState(0).randint(0, 50, (5, 12)).astype("int32")
    net = TokenNet()
    net(ids)
    want = keras.ops.convert_to_numpy(net(ids))
    data = dc_keras.export.to_tflite(net, pack=False,
                                     input_signature=[keras.InputSpec(shape=(None, 12), dtype="int32", name="ids")])
    (spec,) = Interpreter(model_content=data).get_input_details()
    assert spec["dtype"] == np.int32 and list(spec["shape_signature"]) == [-1, 12] and "ids" in spec["name"], spec
    np.testing.assert_allclose(predict_tflite(data, ids), want, rtol=1e-5, atol=1e-5)
    model, plain, _ = clustered_mlp  # a Functional model and its export without input_signature
    data = dc_keras.export.to_tflite(model, pack=False, input_signature=[keras.InputSpec(shape=(4, 12))])
    (spec,) = Interpreter(model_content=data).get_input_details()
    assert spec["dtype"] == np.float32 and list(spec["shape_signature"]) == [4, 12], spec
    (default,) = Interpreter(model_content=plain).get_input_details()
    assert spec["name"] == default["name"], (spec["name"], default["name"])  # named as without input_signature
    np.testing.assert_allclose(predict_tflite(data, X[:4], batch_size=4),
                               keras.ops.convert_to_numpy(model(X[:4])), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,says", [
    ({"input_signature": [keras.InputSpec(shape=(8, 12))], "batch_size": 8}, "either batch_size or input_signature"),
    ({"input_signature": [keras.InputSpec(shape=(None, 0))]}, "None or positive ints"),
    ({"input_signature": ["ids"]}, "has no shape and dtype"),
    ({"input_signature": [types.SimpleNamespace(shape=(None, 12), dtype="text")]}, "not a dtype"),
    ({"input_signature": []}, "empty list"),
    ({"input_signature": [{1: keras.InputSpec(shape=(None, 12))}]}, "input names (strings)"),
    ({"input_signature": keras.InputSpec(shape=(None, 12))}, "must be a list with an entry per argument"),
    ({"input_signature": [keras.InputSpec(shape=(None, 12))] * 2}, "takes one argument holding 1 input"),
    ({"input_signature": [keras.InputSpec(shape=(None, 13))]}, "cannot be called with the input_signature"),
])
def test_a_bad_input_signature_is_one_clear_error_before_converting(kwargs, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        dc_keras.export.to_tflite(mlp(), **kwargs)
