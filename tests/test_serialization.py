"""A user's `.keras` round trip: save a wrapped model, load it in a fresh process after a plain
`import dc_keras` with no custom_objects, whichever of keras and dc_keras is imported first."""
import subprocess
import sys
import textwrap

import numpy as np

import dc_keras


def _tiny_model():
    import keras

    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, activation="relu", name="a")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="b")(x))


def _load_in_fresh_process(path, first="keras"):
    imports = "keras, dc_keras" if first == "keras" else "dc_keras, keras"
    code = textwrap.dedent(f"""
        import numpy as np, {imports}
        m = keras.saving.load_model({str(path)!r})
        print(sorted(type(l).__name__ for l in m.layers))
        np.save({str(path) + '.npy'!r}, m.predict(np.ones((2, 8), np.float32), verbose=0))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, np.load(str(path) + ".npy")


def test_pruned_model_loads_after_plain_import(tmp_path):
    model = _tiny_model()
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "mse")
    pruned.fit(np.ones((16, 8), np.float32), np.ones((16, 3), np.float32), epochs=1, verbose=0,
               callbacks=[dc_keras.PruningCallback()])
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    for first in ("keras", "dc_keras"):
        out, pred = _load_in_fresh_process(path, first)
        assert "PruneWrapper" in out
        np.testing.assert_array_equal(pred, pruned.predict(np.ones((2, 8), np.float32), verbose=0))


def test_clustered_model_loads_after_plain_import(tmp_path):
    clustered = dc_keras.cluster(_tiny_model(), bits=2)
    path = tmp_path / "clustered.keras"
    clustered.save(path)
    out, pred = _load_in_fresh_process(path)
    assert "ClusterWrapper" in out
    np.testing.assert_array_equal(pred, clustered.predict(np.ones((2, 8), np.float32), verbose=0))


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
