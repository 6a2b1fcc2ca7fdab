"""A user's `.keras` round trip: save a wrapped model, load it in a fresh process after a plain
`import dc_keras` with no custom_objects."""
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


def _load_in_fresh_process(path):
    code = textwrap.dedent(f"""
        import numpy as np, keras, dc_keras
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
    out, pred = _load_in_fresh_process(path)
    assert "PruneWrapper" in out
    np.testing.assert_array_equal(pred, pruned.predict(np.ones((2, 8), np.float32), verbose=0))


def test_clustered_model_loads_after_plain_import(tmp_path):
    clustered = dc_keras.cluster(_tiny_model(), bits=2)
    path = tmp_path / "clustered.keras"
    clustered.save(path)
    out, pred = _load_in_fresh_process(path)
    assert "ClusterWrapper" in out
    np.testing.assert_array_equal(pred, clustered.predict(np.ones((2, 8), np.float32), verbose=0))
