"""The HuffDecode kernel on TensorFlow Lite Micro as an integrator following docs/microcontrollers.md
meets it: models with bad tensor indices or edited after packing, refused in Prepare with one message
(and LiteRT's op saying the same words), and the host tools (tools/mcu/tflm_run.py, tflm_env.py).

Review of the microcontroller side (s46): the TFLM kernel refuses a HuffDecode op whose tensor index is
-1 (TFLM's GetEvalTensor checks no bounds: the kernel read before TFLM's tensor array and reported
garbage types); tools/mcu/tflm_run.py ends a model that fails, or an input of the wrong type, in one
line naming the stage instead of a traceback; tools/mcu/tflm_env.py gives each project venv its own
TFLM venv (two checkouts rebuilt one shared venv under each other's running tests); the doc's count of
the kernel's messages.

Review of the microcontroller side (s47): models edited after packing, on TFLM. TFLM gives a
kernel a constant's data without its size and checks no constant's shape against its buffer, so
the HuffDecode kernel took the packed input's byte count from its shape: a buffer shorter than that
(payload cut, shape kept) made the decoder read past it (its CRC runs over the shape's count of
bytes; on the wheel the flatbuffer's next bytes, reported as "checksum mismatch"; ASan in the
stand-in context: heap-buffer-overflow in crc_clmul), and an output tensor with data of its own (a
constant) was decoded into at every invoke (ASan: a 6,144-byte WRITE into a 16-byte constant; the
wheel overwrote its copy of the model, the invoke failed "corrupt bit stream"; decode once ignored
the constant). Prepare now reads the buffer's size where TFLM points a constant (after the
flatbuffer vector's u32 count) and refuses both with one message; LiteRT's op says the same words.
Desktop LiteRT ran a constant output of the decoded size on the constant's bytes (NaN outputs);
huffdecode_op.c now refuses it with the TFLM kernel's message, on both routes."""
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import _cbuild
import _docs

ROOT = _docs.ROOT
MCU = os.path.join(ROOT, "tools", "mcu")
K = os.path.join(ROOT, "tflite_kernels")
sys.path.insert(0, MCU)
import tflm_env  # noqa: E402

sys.path.insert(0, os.path.join(MCU, "tflm_m4"))
import gen_edited_data  # noqa: E402  (the same edits as the Cortex-M4 firmware check)

ONCE, EACH = "DcKerasRegisterHuffDecodeTflm", "DcKerasRegisterHuffDecodeTflmEachInvoke"
REGISTERERS = [ONCE, EACH]
FIX = "the model was edited after packing: re-export the model with dc_keras.export.pack"


def _tflm_run(lib, *args, timeout=300):
    """tools/mcu/tflm_run.py ARGS in the TFLM venv, with the kernel library ``lib``."""
    return subprocess.run([tflm_env.ensure(), os.path.join(MCU, "tflm_run.py"), "--lib", lib, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A packed float MLP, the same with its HuffDecode op's input / output index set to -1, and
    inputs as float32 (what the model takes) and float64 (numpy's default)."""
    import keras
    import numpy as np

    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    d = tmp_path_factory.mktemp("micro_files")
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


# ---- models edited after packing (s47) ----------------------------------------------------------

def _says_size(out, inp, held, shape):
    return (f"HuffDecode (output tensor {out}): packed input {inp} holds {held} bytes, but its shape says "
            f"{shape}; {FIX}")


def _says_constant(out):
    return (f"HuffDecode (output tensor {out}): the output has data in the flatbuffer (a constant), which "
            f"decoding would overwrite; {FIX}")


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """A packed float MLP (one packed weight, n bytes) and copies edited through the TFLite schema
    module: the packed input's shape n + 64 / n - 64 (buffer kept), its buffer cut by 64 bytes (shape
    kept), the output given a constant of 16 bytes / of the decoded size. Returns (paths, facts)."""
    import keras

    from dc_keras import _flatbuffer as fb
    from dc_keras import export
    from dc_keras.export._pack import packed_tensors

    d = tmp_path_factory.mktemp("micro_edited")
    keras.utils.set_random_seed(47)
    m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])
    with warnings.catch_warnings():  # the 64x4 kernel stays raw (too small to gain): expected
        warnings.simplefilter("ignore", UserWarning)
        packed = export.pack(export.to_tflite(m, pack=False))
    model = fb.read_model(packed)
    assert len(packed_tensors(model)) == 1
    s, p, o = packed_tensors(model)[0]
    assert s == 0
    n = int(model.subgraphs[0].tensors[p].shape[0])
    out = model.subgraphs[0].tensors[o]
    out_bytes = int(np.prod(out.shape)) * 4
    assert out.type == fb.schema.TensorType.FLOAT32 and n > 200 and out_bytes == 4096

    files = {name: data for name, (data, _sizes) in gen_edited_data.edited_copies(packed, p, o, out_bytes).items()}
    paths = {}
    for name, data in files.items():
        paths[name] = d / f"{name}.tflite"
        paths[name].write_bytes(data)
    for name in ("grown", "shrunk", "cut", "const16"):  # the edit is in the file the tests run
        mm = fb.read_model(files[name])
        t = mm.subgraphs[0].tensors
        sizes = (int(t[p].shape[0]), fb.buffer_size(mm, t[p].buffer), fb.buffer_size(mm, t[o].buffer))
        assert sizes == {"grown": (n + 64, n, 0), "shrunk": (n - 64, n, 0), "cut": (n, n - 64, 0),
                         "const16": (n, n, 16)}[name], (name, sizes)
    paths["x"] = d / "x.npy"
    np.save(paths["x"], np.random.default_rng(47).random((2, 16), dtype=np.float32))
    return paths, {"n": n, "in": p, "out": o}


@pytest.fixture(scope="module")
def wheel_runs(micro_lib, edited, tmp_path_factory):
    """Every file in the TFLM wheel, both registerers, one tflm_run.py --jobs process."""
    paths, _ = edited
    d = tmp_path_factory.mktemp("micro_wheel_runs")
    keys = [(name, reg) for name in ("packed", "grown", "shrunk", "cut", "const16", "const_exact")
            for reg in (ONCE, EACH)]
    jobs = [{"model": str(paths[name]), "registerers": [reg], "input": str(paths["x"]), "out": str(d / f"{i}.npy")}
            for i, (name, reg) in enumerate(keys)]
    (d / "jobs.json").write_text(json.dumps(jobs))
    r = _tflm_run(micro_lib, "--jobs", d / "jobs.json", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    return {key: (res, d / f"{i}.npy") for i, (key, res) in enumerate(zip(keys, results))}


@pytest.mark.parametrize("reg", [ONCE, EACH])
def test_edited_models_fail_in_prepare_with_one_message(wheel_runs, edited, reg):
    """Before the fix, on the wheel: cut -> "invalid packed tensor: checksum mismatch" (after reading
    64 bytes past the buffer), grown -> "declared sizes disagree with each other", shrunk ->
    "truncated", const16 / const_exact decoded once -> ran, every invoke -> const16 failed at the
    invoke ("corrupt bit stream", after writing 4,096 bytes over a 16-byte constant), const_exact ran
    (decoded over the model's bytes). The unedited file still runs, the same in both modes."""
    _, f = edited
    good, y = wheel_runs[("packed", reg)]
    assert good["ok"], good
    other = wheel_runs[("packed", EACH if reg == ONCE else ONCE)]
    assert np.load(y).tobytes() == np.load(other[1]).tobytes()
    n = f["n"]
    want = {"grown": _says_size(f["out"], f["in"], n, n + 64), "shrunk": _says_size(f["out"], f["in"], n, n - 64),
            "cut": _says_size(f["out"], f["in"], n - 64, n), "const16": _says_constant(f["out"]),
            "const_exact": _says_constant(f["out"])}
    for name, message in want.items():
        res, y = wheel_runs[(name, reg)]
        assert not res["ok"] and res["stage"] == "load", (name, res)
        lines = [ln for ln in res["log"].splitlines() if ln.startswith("HuffDecode")]
        assert lines == [message], (name, res["log"])
        assert not y.exists(), name


def test_litert_op_says_the_same_words(edited):
    """Desktop LiteRT (dc_keras.runtime): a shape larger than the buffer is refused at load by LiteRT
    itself, a smaller one by huffdecode_op.c with "holds B bytes, but its shape says S", the words of
    the TFLM kernel's message."""
    from dc_keras import runtime

    paths, f = edited
    n = f["n"]
    with pytest.raises(RuntimeError) as e:
        runtime.Interpreter(model_path=str(paths["shrunk"])).allocate_tensors()
    assert f"holds {n} bytes, but its shape says {n - 64}" in str(e.value), str(e.value)
    assert f"holds {n} bytes, but its shape says {n - 64}" in _says_size(f["out"], f["in"], n, n - 64)
    for name in ("grown", "cut"):
        with pytest.raises(ValueError, match=r"required_bytes <= bytes was not true"):
            runtime.Interpreter(model_path=str(paths[name])).allocate_tensors()


@pytest.mark.parametrize("route", [{}, {"decode": "op", "backend": "tensorflow"}], ids=["delegate", "op"])
def test_litert_refuses_an_output_with_constant_data_too(edited, route):
    """The same constant output of the decoded size on desktop LiteRT ran without an error and gave
    NaN outputs: the delegate took the output for one it had decoded, and on the op route XNNPACK had
    packed the Dense layer's weights from the constant before the op decoded. Both routes now refuse
    it with the TFLM kernel's words (no second fix appended by the runtime)."""
    from dc_keras import runtime

    paths, _ = edited
    with pytest.raises(RuntimeError) as e:
        it = runtime.Interpreter(model_path=str(paths["const_exact"]), **route)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 16), np.float32))
        it.invoke()
    assert str(e.value).endswith("): the output has data in the flatbuffer (a constant), which decoding would "
                                 f"overwrite; {FIX}"), str(e.value)
    assert str(e.value).count("HuffDecode(") == 1, str(e.value)
    it = runtime.Interpreter(model_path=str(paths["packed"]), **route)  # the unedited file still runs
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.zeros((1, 16), np.float32))
    it.invoke()
    assert np.isfinite(it.get_tensor(it.get_output_details()[0]["index"])).all()


def _mock(tmp_path, strip, codec_obj):
    """tools/mcu/tflm_mock_ctx.c with the kernel AND the decoder (dc_codec.c: ``codec_obj``, conftest's
    codec_asan_obj) built with ASan + UBSan: test_micro.py's stand-in links the project's
    uninstrumented library, where the decoder's reads past the packed buffer went unseen."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    exe = tmp_path / ("mock_asan_strip" if strip else "mock_asan")
    r = _cbuild.build(cc, ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                           "-fno-sanitize-recover=all", f"-I{K}/include", f"-I{K}/micro",
                           *(["-DTF_LITE_STRIP_ERROR_STRINGS"] if strip else [])],
                      [os.path.join(MCU, "tflm_mock_ctx.c"), os.path.join(K, "micro", "huffdecode_tflm.c"), codec_obj],
                      exe, ldflags=["-lm"])
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
    return exe


def test_stand_in_context_under_asan_reads_and_writes_nothing_out_of_bounds(tmp_path, codec_asan_obj):
    """The stand-in context hands the kernel the packed bytes as TFLM does (after a u32 count, in an
    allocation of exactly their size). Before the fix: the cut buffer -> ASan heap-buffer-overflow,
    READ in crc_clmul (dc_verify / dc_decode, both modes); a 16-byte constant output decoded every
    invoke -> WRITE of 6,144 bytes. Now each fails Prepare with its one message (none in the
    stripped build, the same status), and the unedited tensor still decodes."""
    from dc_keras import codec

    rng = np.random.default_rng(47)
    raw = np.where(rng.random((64, 96)) < 0.2, rng.integers(-8, 8, (64, 96)), 0).astype(np.int8)
    packed = codec.encode(raw)
    n = len(packed)
    (tmp_path / "r.bin").write_bytes(raw.tobytes())
    exes = {False: _mock(tmp_path, False, codec_asan_obj), True: _mock(tmp_path, True, codec_asan_obj)}

    def run(strip, mode, data, *args):
        (tmp_path / "p.bin").write_bytes(data)
        r = subprocess.run([str(exes[strip]), str(mode), str(tmp_path / "p.bin"), str(tmp_path / "r.bin"), "9", "64",
                            "96", *map(str, args)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and not r.stderr.strip(), (args, r.stdout, r.stderr[-3000:])
        facts = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines() if not ln.startswith("log ")}
        return facts, [ln[4:] for ln in r.stdout.splitlines() if ln.startswith("log ")]

    cases = [(packed[:-64], ["--shape-bytes", n], _says_size(1, 0, n - 64, n)),
             (packed, ["--shape-bytes", n + 64], _says_size(1, 0, n, n + 64)),
             (packed, ["--shape-bytes", n - 64], _says_size(1, 0, n, n - 64)),
             (packed, ["--output-const", 16], _says_constant(1)),
             (packed, ["--output-const", raw.nbytes], _says_constant(1))]
    for mode in (0, 1):
        good, log = run(False, mode, packed)
        assert not log and good["prepare"] == ["0"] and good["invoke1"][:3] == ["0", "decoded", "1"], (mode, good)
        assert good["reprepare_after_invoke"][0] == "0", good  # a later Prepare (planned output) still passes
        for data, args, message in cases:
            got, log = run(False, mode, data, *args)
            assert got["prepare"] == ["1"] and log == [message], (mode, args, got, log)
            assert got["prepare_persistent"] == ["0"] and got["prepare_scratch_requests"] == ["0"], (mode, args, got)
            assert "invoke1" not in got, got  # (the stand-in invokes nothing after a failed Prepare)
            stripped, log = run(True, mode, data, *args)
            assert stripped == got and not log, (mode, args, stripped, log)

