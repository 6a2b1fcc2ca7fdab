"""Review of the microcontroller side (s46), as an integrator following docs/microcontrollers.md:
the TFLM kernel refuses a HuffDecode op whose tensor index is -1 (TFLM's GetEvalTensor checks no
bounds: the kernel read before TFLM's tensor array and reported garbage types); tools/mcu/tflm_run.py
ends a model that fails, or an input of the wrong type, in one line naming the stage instead of a
traceback; tools/mcu/tflm_env.py gives each project venv its own TFLM venv (two checkouts rebuilt one
shared venv under each other's running tests); the doc's count of the kernel's messages."""
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

import _docs

ROOT = _docs.ROOT
MCU = os.path.join(ROOT, "tools", "mcu")
sys.path.insert(0, MCU)
import tflm_env  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A packed float MLP, the same with its HuffDecode op's input / output index set to -1, and
    inputs as float32 (what the model takes) and float64 (numpy's default)."""
    import keras
    import numpy as np

    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    d = tmp_path_factory.mktemp("micro_s46")
    m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])
    with warnings.catch_warnings():  # the 64x4 kernel stays raw (too small to gain): expected
        warnings.simplefilter("ignore", UserWarning)
        packed = export.pack(export.to_tflite(m, pack=False))
    out = {"packed": d / "packed.tflite"}
    out["packed"].write_bytes(packed)
    for which in ("inputs", "outputs"):
        model = fb.read_model(packed)
        ops = [op for sg in model.subgraphs for op in sg.operators
               if fb.is_huffdecode_code(model.operatorCodes[op.opcodeIndex])]
        assert len(ops) == 1, len(ops)
        setattr(ops[0], which, [-1])
        out[which] = d / f"minus1_{which}.tflite"
        out[which].write_bytes(fb.write_model(model))
    rng = np.random.default_rng(0)
    out["x32"], out["x64"] = d / "x32.npy", d / "x64.npy"
    np.save(out["x32"], rng.random((2, 16), dtype=np.float32))
    np.save(out["x64"], rng.random((2, 16)))
    return out


def _tflm_run(lib, *args):
    return subprocess.run([tflm_env.ensure(), os.path.join(MCU, "tflm_run.py"), "--lib", lib, *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


REGISTERERS = ["DcKerasRegisterHuffDecodeTflm", "DcKerasRegisterHuffDecodeTflmEachInvoke"]


@pytest.fixture(scope="module")
def minus_one_runs(micro_lib, files, tmp_path_factory):
    """The models whose HuffDecode input / output index is -1, in the wheel, in both modes (one
    tflm_run.py --jobs process): {(which, registerer): result}."""
    d = tmp_path_factory.mktemp("minus1")
    keys = [(which, reg) for which in ("inputs", "outputs") for reg in REGISTERERS]
    jobs = [{"model": str(files[which]), "registerers": [reg], "input": str(files["x32"]), "out": str(d / f"{i}.npy")}
            for i, (which, reg) in enumerate(keys)]
    (d / "jobs.json").write_text(json.dumps(jobs))
    r = _tflm_run(micro_lib, "--jobs", d / "jobs.json")
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(zip(keys, json.loads(r.stdout.strip().splitlines()[-1])))


@pytest.mark.parametrize("registerer", REGISTERERS)
@pytest.mark.parametrize("which", ["inputs", "outputs"])
def test_a_tensor_index_of_minus_one_is_refused_in_prepare(minus_one_runs, which, registerer):
    """Before the fix the kernel handed -1 to GetEvalTensor, which read the struct before TFLM's tensor
    array: "packed dtype/rank (0/2) differ from the output's (type 1317155904, rank -1)" for the output."""
    r = minus_one_runs[(which, registerer)]
    assert not r["ok"] and r["stage"] == "load", r
    assert "HuffDecode: expected 1 input and 1 output tensor; re-export the model with dc_keras.export.pack\n" \
        in r["log"], r
    assert "differ from" not in r["log"] and "must be a 1-D uint8" not in r["log"], r


def test_tflm_run_reports_a_failed_model_and_a_wrong_input_in_one_line(micro_lib, files, tmp_path):
    """docs/microcontrollers.md sends an integrator to tflm_run.py to see, on the host, where the
    firmware would fail: that used to end in a Python traceback (after TFLM's log); now one line
    naming the stage, exit 1. An input of another type than the model's (np.random's float64)
    says so in the same way; missing arguments are a usage error, not a TypeError."""
    r = _tflm_run(micro_lib, "--model", files["inputs"], "--input", files["x32"], "--out", tmp_path / "y.npy")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last == (f"tflm_run.py: {files['inputs']} failed to load (TFLM's AllocateTensors: every op's Prepare; "
                    "TFLM's log above says why): RuntimeError: TFLM failed to allocate tensors"), r.stderr[-3000:]
    assert "Node HuffDecode (number 0) failed to prepare" in r.stderr

    r = _tflm_run(micro_lib, "--model", files["packed"], "--input", files["x64"], "--out", tmp_path / "y.npy")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tflm_run.py: {files['packed']} failed at an invoke ({files['x64']}: float64 rows of "
                           "shape [16], one per inference, which must have the type and shape of the model's "
                           "input 0): ValueError: "), last
    assert "FLOAT64" in last and "FLOAT32" in last, last
    assert not (tmp_path / "y.npy").exists()

    r = _tflm_run(micro_lib, "--model", files["packed"], "--input", files["x32"])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == \
        "tflm_run.py: error: --model, --input and --out are needed (or --jobs)", r.stderr

    r = _tflm_run(micro_lib, "--model", files["packed"], "--input", files["x32"], "--out", tmp_path / "y.npy",
                  "--arena-usage")  # and a good run still works
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["outputs"] == 2
    assert (tmp_path / "y.npy").exists()


def test_each_project_venv_gets_its_own_tflm_venv(tmp_path, monkeypatch):
    """~/.cache/dc_keras/venvs/tflm was one directory for every project venv, keyed by a stamp of the
    project's site directories: a CI copy and a working tree (two project venvs) each rebuilt it when
    the other had built it, removing it under a test running in it ("ImportError: cannot import name
    '_runtime' from 'tflite_micro.python.tflite_micro'", seen 2026-12-06). Now the directory is named
    by that key, and ensure() of one project leaves another project's venv alone."""
    here, other = tflm_env._project_site_dirs(), ["/elsewhere/.venv/lib/python3.11/site-packages"]
    monkeypatch.delenv("DC_TFLM_VENV", raising=False)
    monkeypatch.setattr(tflm_env, "VENVS", str(tmp_path))
    mine, theirs = tflm_env.default_venv(), tflm_env.default_venv(other)
    assert mine != theirs and os.path.dirname(mine) == os.path.dirname(theirs) == str(tmp_path)
    assert tflm_env.default_venv(here) == mine
    monkeypatch.setattr(tflm_env, "requirements", lambda: ["tflite-micro==0.dev1"])
    assert tflm_env.default_venv() != mine  # a changed pin: another directory too
    monkeypatch.undo()
    monkeypatch.setattr(tflm_env, "VENVS", str(tmp_path))
    for venv, key in ((mine, tflm_env._key()), (theirs, tflm_env._key(other))):  # two built venvs
        os.makedirs(os.path.join(venv, "bin"))
        open(os.path.join(venv, "bin", "python"), "w").close()
        with open(os.path.join(venv, ".dc_stamp"), "w") as f:
            f.write(key)
    assert tflm_env.ensure(mine) == os.path.join(mine, "bin", "python")  # built: nothing to do
    assert os.path.exists(os.path.join(theirs, "bin", "python")) and os.path.exists(os.path.join(mine, ".dc_stamp"))
    monkeypatch.setenv("DC_TFLM_VENV", str(tmp_path / "mine"))
    assert tflm_env.default_venv() == tflm_env.default_venv(other) == str(tmp_path / "mine")


def test_doc_counts_the_kernels_messages():
    """*Release builds* says how many messages go through DC_TFLM_LOG (it said 20; 22 since the
    messages for a too-new format version and a left-out layout)."""
    with open(os.path.join(ROOT, "tflite_kernels", "micro", "huffdecode_tflm.c")) as f:
        calls = len(re.findall(r"^\s+DC_TFLM_LOG\(ctx,", f.read(), re.M))
    doc = " ".join(_docs.read("docs/microcontrollers.md").split())
    assert f"its {calls} messages go through one macro, `DC_TFLM_LOG`" in doc, calls
