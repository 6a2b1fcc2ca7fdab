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


@pytest.mark.long  # two JAX processes (~1 min on 2 shared cores)
def test_multi_worker_md_worker_block_runs_in_two_processes_on_data_not_a_multiple_of_the_batch(tmp_path):
    """docs/multi_worker.md's "What each worker does" block, run as written by 2 processes on
    127.0.0.1 with 1,001 samples and a global batch of 100: its `.batch(GLOBAL_BATCH)` left a last
    batch of 1 that the 2 processes could not share, one worker ran out of data ("Your input ran out
    of data") and the other waited in a collective: the job hung, with no error. With the doc's
    `drop_remainder=True` both workers finish and agree."""
    import os
    import socket
    import subprocess
    import sys

    import _docs

    blocks = [code for _, _, code in _docs.blocks("docs/multi_worker.md", "python") if "jax.distributed.initialize" in code]
    assert len(blocks) == 1, blocks
    code = _docs.fill(blocks[0], {
        "N, i": "N, i = 2, int(os.environ['DC_TEST_WORKER'])",
        "x, y": "import numpy as np\nrng = np.random.default_rng(0)\n"
                "x, y = rng.random((1001, 20), dtype=np.float32), rng.integers(0, 4, 1001)",
        "GLOBAL_BATCH, E": "GLOBAL_BATCH, E = 100, 2",
        "model": "model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation='relu'),\n"
                 "                          keras.layers.Dense(4, activation='softmax')])",
        "schedule": "schedule = dc_keras.schedules.PolynomialDecay(0.0, 0.8, 0, 20, frequency=5)",
    })
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert code.count('"10.0.0.1:12345"') == 1 and code.count('f"/ckpt/worker{i}"') == 1, code
    code = code.replace('"10.0.0.1:12345"', f'"127.0.0.1:{port}"').replace('f"/ckpt/worker{i}"',
                                                                           f'f"{tmp_path}/ckpt/worker{{i}}"')
    code += ("\nimport numpy as np\nk = dc_keras.strip(pruned).layers[0].get_weights()[0]\n"
             "print('RESULT', i, round(float(np.mean(k == 0)), 3), flush=True)\n")
    (tmp_path / "worker.py").write_text(code)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu", PYTHONPATH=_docs.ROOT)
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py")], cwd=tmp_path, text=True,
                              env=dict(env, DC_TEST_WORKER=str(w)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for w in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = [p.communicate()[0][-1500:] for p in procs]
        pytest.fail(f"the doc's worker block hung in 2 processes (no result after 240 s):\n{logs}", pytrace=False)
    assert [p.returncode for p in procs] == [0, 0], [o[-3000:] for o in outs]
    results = [line.split()[1:] for o in outs for line in o.splitlines() if line.startswith("RESULT ")]
    assert sorted(results) == [["0", "0.8"], ["1", "0.8"]], [o[-2000:] for o in outs]


def test_every_notebook_cell_has_the_id_nbformat_4_5_requires():
    """The notebooks are nbformat 4.5, where each cell has an `id`: 04's install cell had none, so
    opening or executing it printed nbformat's MissingIDFieldWarning ("will become a hard error in
    future nbformat versions")."""
    import glob
    import json
    import os
    import warnings

    nbformat = pytest.importorskip("nbformat")
    import _docs

    paths = sorted(glob.glob(os.path.join(_docs.ROOT, "examples", "*.ipynb")))
    assert len(paths) >= 4, paths
    for path in paths:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        assert (raw["nbformat"], raw["nbformat_minor"]) >= (4, 5), path
        assert all("id" in c for c in raw["cells"]), (path, [i for i, c in enumerate(raw["cells"]) if "id" not in c])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nbformat.validate(nbformat.reads(json.dumps(raw), as_version=4))


def _packed(model, **kwargs):
    import warnings

    with warnings.catch_warnings():  # "kept raw" (unclustered weights), "exports them with batch 1"
        warnings.simplefilter("ignore")
        return dc_keras.export.to_tflite(model, **kwargs)


def test_set_tensor_of_a_whole_batch_says_to_resize_first_or_names_the_fixed_batch():
    """README's route for a .tflite: `Interpreter(model_path=...)`, `allocate_tensors()`,
    `set_tensor(index, x)`. With x a batch (x_test[:100]) TFLite said only "Dimension mismatch. Got
    100 but expected 1 for dimension 0 of input 0". It now says to resize the input first (dynamic
    batch: the shape signature has -1) or, for a model exported with a fixed batch (recurrent
    layers: batch 1), to feed that batch or export with `batch_size=`. Still a ValueError; a batch
    that fits goes through unchanged."""
    import keras

    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    it = dc_keras.runtime.Interpreter(model_content=_packed(mlp))
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    x = np.random.default_rng(0).random((100, 20), dtype=np.float32)
    with pytest.raises(ValueError, match=rf"batch of 1, the array a batch of 100: its batch is dynamic, so call "
                                         rf"resize_tensor_input\({index}, \[100, 20\]\) and allocate_tensors\(\)"):
        it.set_tensor(index, x)
    it.resize_tensor_input(index, x.shape)
    it.allocate_tensors()
    it.set_tensor(index, x)
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (100, 4)

    rnn = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(8), keras.layers.Dense(2)])
    it = dc_keras.runtime.Interpreter(model_content=_packed(rnn))
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    with pytest.raises(ValueError, match=r"fixed batch of 1 .*feed 1 sample\(s\) at a time .*batch_size=N"):
        it.set_tensor(index, np.zeros((3, 5, 3), np.float32))
    with pytest.raises(ValueError, match="Got value of type FLOAT64"):  # other mistakes: TFLite's words, unchanged
        it.set_tensor(index, np.zeros((1, 5, 3)))


def test_quantization_md_per_tensor_int8_code_count_is_the_measured_one():
    """docs/quantization.md said per-tensor int8 maps the <= 32 shared values "to <= 32 int8 codes",
    but its own JSON (docs/results/quantized.json) has 33 in fc2: the pruned zero is a code too.
    The doc now gives the measured counts, rebuilt here from the JSON."""
    import json
    import os
    import re

    import _docs

    with open(os.path.join(_docs.ROOT, "docs", "results", "quantized.json")) as f:
        rows = json.load(f)["rows"]
    codes = next(r for r in rows if r["variant"] == "int8 per-tensor (TFLite converter)")["distinct_int_codes"]
    body = re.sub(r"\s+", " ", _docs.read("docs/quantization.md"))
    said = f"to <= {max(codes)} int8 codes (fc1 / fc2: {codes[0]} / {codes[1]})"
    assert said in body, f"docs/quantization.md does not say {said!r} (docs/results/quantized.json)"


@pytest.mark.parametrize(("argv", "said"), [
    # host 0 of docs/multi_worker.md's "On real hosts" without its --worker-id: the launcher ignored
    # --coordinator and trained 2 workers on this host alone (host 1 then waits for a coordinator)
    (["--workers", "2", "--coordinator", "10.0.0.1:12345", "--work-dir", "{tmp}"],
     "--coordinator is for one worker per host: give each host's --worker-id"),
    # fewer samples than one global batch: the workers failed with a bare StopIteration in their logs
    (["--samples", "100", "--batch-size", "128"], "--samples 100 is less than one global batch"),
    (["--workers", "2", "--worker-id", "2", "--coordinator", "10.0.0.1:12345", "--work-dir", "{tmp}"],
     "--worker-id 2 is not a worker of --workers 2: give 0 .. 1"),
])
def test_multi_worker_example_refuses_a_command_it_cannot_run_as_meant(argv, said, tmp_path):
    """examples/multi_worker.py's arguments a user gets wrong following docs/multi_worker.md: one
    usage error naming the mistake and the fix, before any worker starts (exit status 2)."""
    import os
    import subprocess
    import sys

    import _docs

    script = os.path.join(_docs.ROOT, "examples", "multi_worker.py")
    r = subprocess.run([sys.executable, script, *[a.replace("{tmp}", str(tmp_path)) for a in argv]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and said in r.stderr, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
