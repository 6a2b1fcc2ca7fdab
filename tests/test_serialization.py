"""A user's `.keras` round trip: save a wrapped model, load it in a fresh process after a plain
`import dc_keras` with no custom_objects, whichever of keras and dc_keras is imported first."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dc_keras


def _tiny_model():
    import keras

    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu", name="a")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="b")(x))


def _load_in_fresh_process(paths, first):
    """Each of ``paths`` loaded by keras.saving.load_model in one new process after `import keras,
    dc_keras` (``first`` "keras") or `import dc_keras, keras` ("dc_keras"): per path, its layers'
    class names (one stdout line) and its predictions."""
    imports = "keras, dc_keras" if first == "keras" else "dc_keras, keras"
    code = textwrap.dedent(f"""
        import numpy as np, {imports}
        for path in {[str(p) for p in paths]!r}:
            m = keras.saving.load_model(path)
            print(sorted(type(l).__name__ for l in m.layers))
            np.save(path + '.npy', m.predict(np.ones((2, 8), np.float32), verbose=0))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == len(paths), r.stdout
    return [(line, np.load(str(p) + ".npy")) for line, p in zip(lines, paths)]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A pruned (trained one epoch) and a clustered model saved, both loaded in each of two fresh
    processes, keras imported first and dc_keras first (one process per import order, not per
    model): ({"pruned"/"clustered": model}, {first: {name: (layer classes, predictions)}})."""
    d = tmp_path_factory.mktemp("serialization")
    pruned = dc_keras.prune(_tiny_model(), dc_keras.schedules.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "mse")
    pruned.fit(np.ones((16, 8), np.float32), np.ones((16, 3), np.float32), epochs=1, verbose=0,
               callbacks=[dc_keras.PruningCallback()])
    models = {"pruned": pruned, "clustered": dc_keras.cluster(_tiny_model(), bits=2)}
    for name, m in models.items():
        m.save(d / f"{name}.keras")
    runs = {}
    # each process loads a different model first (the one the original single-model process loaded
    # in that import order: the clustered one after keras, the pruned one after dc_keras)
    for first, order in (("keras", ["clustered", "pruned"]), ("dc_keras", ["pruned", "clustered"])):
        runs[first] = dict(zip(order, _load_in_fresh_process([d / f"{name}.keras" for name in order], first)))
    return models, runs


@pytest.mark.parametrize("name, wrapper", [("pruned", "PruneWrapper"), ("clustered", "ClusterWrapper")])
def test_compressed_model_loads_after_plain_import(loaded, name, wrapper):
    models, runs = loaded
    for first in ("keras", "dc_keras"):
        out, pred = runs[first][name]
        assert wrapper in out, (first, out)
        np.testing.assert_array_equal(pred, models[name].predict(np.ones((2, 8), np.float32), verbose=0))


def test_keras_free_uses_do_not_import_keras_or_tensorflow(tmp_path):
    """Packing, inspecting and decoding need neither Keras nor TensorFlow: `import dc_keras`
    defers the Keras registration until Keras itself is imported."""
    import _export_models as em

    src = tmp_path / "m.tflite"
    src.write_bytes(em.tflite("dense", None))
    code = textwrap.dedent(f"""
        import sys, dc_keras
        from dc_keras import codec, export
        packed = export.pack(open({str(src)!r}, "rb").read())
        report = export.inspect(packed)
        assert 0 < report.packed_total < report.raw_total
        assert export.unpack(packed)
        heavy = sorted(m for m in ("keras", "tensorflow") if m in sys.modules)
        print("heavy:", heavy)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "heavy: []" in r.stdout, r.stdout
