"""The user documentation followed as written by a new user outside the repository (README.md,
docs/models.md, docs/quantization.md, docs/migrating_from_tfmot.md, docs/multi_worker.md, the
notebooks in examples/): the traps found doing so, each through the public API."""
import numpy as np
import pytest

import dc_keras


def test_normalize_refuses_images_scaled_already_instead_of_dividing_them_by_255_again():
    """Keras's tutorials scale with `x / 255.0`; `dc_keras.datasets.normalize` of that divided by 255
    a second time and returned images in [0, 1/255] without a word (the model then trains on
    near-black inputs). It now says what happened and the fix; uint8 and 0..255 floats still work."""
    (x, _), _ = dc_keras.datasets.mnist.load_data()
    x = x[:4]
    with pytest.raises(ValueError, match=r"already scaled to \[0, 1\].*uint8 images load_data\(\) returns"):
        dc_keras.datasets.normalize(x / 255.0)
    with pytest.raises(ValueError, match=r"already have a channel axis.*normalize's output"):
        dc_keras.datasets.normalize(dc_keras.datasets.normalize(x))
    out = dc_keras.datasets.normalize(x)
    assert out.shape == (4, 28, 28, 1) and out.dtype == np.float32 and out.max() == 1.0
    np.testing.assert_array_equal(dc_keras.datasets.normalize(x.astype(np.float32)), out)  # 0..255 floats
    np.testing.assert_array_equal(dc_keras.datasets.normalize(np.zeros((2, 3, 3), np.float32)), 0)  # black


def test_quantization_md_quantizer_block_runs_as_written_in_an_empty_directory(tmp_path):
    """docs/quantization.md's "Running the LiteRT quantizer yourself" block, line by line, in a
    directory holding only float.tflite and calib.npy (as the text above it describes them): it
    never created OUT_DIR, so its second command failed with FileNotFoundError
    'OUT_DIR/dynamic_wi8_afp32.tflite'. The venv lines use the suite's cached venv (created on first
    use like tests/test_litert_files.py's: a failure with pip's output, never a skip); `tests/...`
    and `.venv/bin/dc-keras` are the repository's."""
    import os
    import subprocess
    import sys

    import keras

    import _docs
    from _benchmarks import load as load_bench

    blocks = [code for lang, _, code in _docs.blocks("docs/quantization.md") if lang == "sh" and "_aeq_child.py" in code]
    assert len(blocks) == 1, blocks
    try:
        venv_py = load_bench("_aeq").venv_python()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    venv = os.path.dirname(os.path.dirname(venv_py))
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    (tmp_path / "float.tflite").write_bytes(dc_keras.export.to_tflite(model, pack=False))
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((8, 16), dtype=np.float32))
    script = []
    for line in blocks[0].replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith(("python3 -m venv", "~/.cache/dc_keras/venvs/ai-edge-quantizer-0.10.0/bin/pip ")):
            continue  # the venv: the suite's cached one
        line = line.replace("~/.cache/dc_keras/venvs/ai-edge-quantizer-0.10.0", venv)
        line = line.replace("tests/_aeq_child.py", os.path.join(_docs.ROOT, "tests", "_aeq_child.py"))
        line = line.replace(".venv/bin/dc-keras", f"{sys.executable} -m dc_keras")
        script.append(line)
    assert any("_aeq_child.py" in s for s in script) and any("dc_keras pack" in s for s in script), script
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=_docs.ROOT)
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (script, r.stdout[-2000:], r.stderr[-3000:])
    assert (tmp_path / "packed.tflite").read_bytes()[4:8] == b"TFL3"
    assert (tmp_path / "OUT_DIR" / "weight_only_wi4_afp32.tflite").stat().st_size > 0
