"""The user documentation followed as written by a user outside this repository: what it says to
copy, compile, run or type, done as written, and the traps found doing so.

The integration steps of docs/microcontrollers.md and docs/android.md: the files the MCU doc says to
copy compile on their own with the flags it shows; the Android doc's TFLite C API snippet compiles
against headers laid out as upstream's (TfLiteInterpreterOptionsAddCustomOp in c_api_experimental.h,
not c_api.h); its CMake cross-toolchain command configures; and the TFLM kernel's messages for a
too-new format version and for a layout left out of a DC_CODEC_MINIMAL build name the fixes the MCU
doc quotes.

The Python user's documentation (README.md, docs/models.md, docs/quantization.md,
docs/migrating_from_tfmot.md, docs/multi_worker.md, the notebooks in examples/): the traps found,
each through the public API."""
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import _docs
import dc_keras
from test_c_headers import STUBS

ROOT = _docs.ROOT
KERNELS = os.path.join(ROOT, "tflite_kernels")


def _sh_block(doc, needle):
    blocks = [code for lang, _, code in _docs.blocks(doc) if lang in ("sh", "bash") and needle in code]
    assert len(blocks) == 1, f"{doc}: expected one sh block containing {needle!r}, found {len(blocks)}"
    return blocks[0].replace("\\\n", " ")  # continuation lines joined


def test_mcu_doc_build_block_compiles_outside_the_repository(tmp_path):
    """docs/microcontrollers.md's build block, in an empty directory: its `cp` must bring every header
    the two C files include (they are compiled with only the copy directory on the include path) and
    its C flags must be warning-free. The C++ line needs TFLM's tree: run only with DC_TFLM_TREE set
    (a tree whose tools/make/downloads holds flatbuffers, gemmlowp and ruy)."""
    lines = [ln.strip() for ln in _sh_block("docs/microcontrollers.md", "huffdecode_tflm_register.cc").splitlines()
             if ln.strip() and not ln.strip().startswith("#")]
    tflm = os.environ.get("DC_TFLM_TREE")
    have_arm = shutil.which("arm-none-eabi-gcc") is not None
    script = []
    for ln in lines:
        if ln.startswith("K="):
            ln = f"K={KERNELS}"
        elif ln.startswith("TFLM="):
            ln = f"TFLM={tflm or '/nonexistent'}"
        elif ln.startswith("arm-none-eabi-gcc") and not have_arm:
            ln = ln.replace("arm-none-eabi-gcc $CPU", "gcc", 1)
        elif ln.startswith("arm-none-eabi-g++") and not (tflm and shutil.which("arm-none-eabi-g++")):
            continue
        script.append(ln)
    assert any(ln.startswith("cp ") for ln in script) and any(" -c " in ln for ln in script), script
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (script, r.stdout[-2000:], r.stderr[-4000:])
    assert (tmp_path / "dc_codec.o").exists() and (tmp_path / "huffdecode_tflm.o").exists(), os.listdir(tmp_path)
    # every "..." include of the copied sources is among the copied files (nothing found in the repo)
    copied = set(os.listdir(tmp_path / "dc_op"))
    for name in copied:
        with open(tmp_path / "dc_op" / name, encoding="utf-8") as f:
            for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), re.M):
                if not inc.startswith("tensorflow/"):
                    assert inc in copied, f"{name} includes {inc}, which the doc's cp line does not copy"


# TFLite's C API as upstream lays it out (tensorflow/lite/c/c_api.h, c_api_experimental.h): the
# custom-op registration is experimental and only in the second header; the stand-ins are
# test_c_headers.py's.
UPSTREAM_STUBS = {name: text for name, text in STUBS.items() if name.startswith("tensorflow/lite/c/")}


def test_android_c_api_snippet_compiles_against_upstream_header_layout(tmp_path):
    snippets = [code for lang, _, code in _docs.blocks("docs/android.md")
                if lang == "c" and "TfLiteInterpreterOptionsAddCustomOp" in code]
    assert len(snippets) == 1, snippets
    for name, text in UPSTREAM_STUBS.items():
        (tmp_path / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("#pragma once\n" + "\n".join(ln.strip() for ln in text.splitlines()) + "\n")
    lines = snippets[0].splitlines()
    head = [ln for ln in lines if ln.startswith("#include")]
    body = [ln for ln in lines if not ln.startswith("#include")]
    src = tmp_path / "snippet.c"
    src.write_text("\n".join(head) + "\nvoid f(const TfLiteModel* model);\nvoid f(const TfLiteModel* model) {\n"
                   + "\n".join(body) + "\n}\n")
    inc = [f"-I{os.path.join(KERNELS, 'include')}", f"-I{tmp_path}"]
    for argv in (["gcc", "-std=c99"], ["g++", "-std=c++17", "-x", "c++"]):
        if not shutil.which(argv[0]):
            pytest.skip(f"needs {argv[0]}")
        r = subprocess.run(argv + ["-Wall", "-Wextra", "-Werror", "-Wno-unused-variable", *inc,
                                   "-fsyntax-only", str(src)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (argv[0], r.stderr, src.read_text())


def test_android_doc_cross_toolchain_command_configures(tmp_path):
    """The aarch64 line of docs/android.md's CMake block, run from the repository root with its build
    directory moved under tmp_path: configure only (the doc's relative toolchain path failed)."""
    if not (shutil.which("cmake") and shutil.which("aarch64-linux-gnu-gcc")):
        pytest.skip("needs cmake and gcc-aarch64-linux-gnu (make test-arm installs it)")
    block = _sh_block("docs/android.md", "CMAKE_TOOLCHAIN_FILE")
    line = next(ln for ln in block.splitlines() if "CMAKE_TOOLCHAIN_FILE" in ln)
    line = line.replace("/tmp/dc-cmake-aarch64", str(tmp_path / "b"))
    r = subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (line, r.stdout[-2000:], r.stderr[-3000:])
    with open(tmp_path / "b" / "CMakeCache.txt") as f:
        assert "aarch64-linux-gnu-gcc" in f.read()


def _patch_version(packed_model, version):
    """``packed_model`` with its first packed tensor's format-version byte (FORMAT.md §2) set."""
    i = packed_model.index(b"DCHF")
    return packed_model[:i + 4] + bytes([version]) + packed_model[i + 5:]


@pytest.fixture(scope="module")
def tflm_runs(tmp_path_factory, micro_lib, make_env):
    """The PyPI tflite-micro wheel (tools/mcu/tflm_env.py) running, with a default and a
    DC_CODEC_MINIMAL build of the kernel: a model packed at a format version newer than the
    decoder's, a float_planes model (layout 4, left out of MINIMAL), and a packed model with no
    registerer."""
    import keras
    import numpy as np

    from dc_keras import export

    sys.path.insert(0, os.path.join(ROOT, "tools", "mcu"))
    import tflm_env

    d = tmp_path_factory.mktemp("tflm_runs")
    rng = np.random.default_rng(0)
    m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)])
    plain = export.to_tflite(m, pack=False)       # random weights: float planes (layout 4)
    with warnings.catch_warnings():  # the 64x4 kernel stays raw (too small to gain): expected
        warnings.simplefilter("ignore", UserWarning)
        planes = export.pack(plain)
    info = export.inspect(planes)
    assert "float_planes" in str(info), info
    x = rng.random((1, 16), dtype=np.float32)
    np.save(d / "x.npy", x)
    files = {"v9": _patch_version(planes, 9), "planes": planes}
    for name, data in files.items():
        (d / f"{name}.tflite").write_bytes(data)
    libs = {"default": micro_lib}  # built once for the session (tests/conftest.py)
    b = d / "lib_minimal"
    subprocess.run(["make", "-s", "-C", os.path.join(KERNELS, "micro"), f"BUILD={b}", "CFLAGS=-DDC_CODEC_MINIMAL"],
                   check=True, env=make_env)
    libs["minimal"] = str(b / "libdc_huffdecode_tflm.so")
    py = tflm_env.ensure()
    out = {}
    for kind, jobs in (("default", [("v9", ["DcKerasRegisterHuffDecodeTflm"]), ("planes", []),
                                    ("planes_ok", ["DcKerasRegisterHuffDecodeTflm"])]),
                       ("minimal", [("planes", ["DcKerasRegisterHuffDecodeTflm"])])):
        spec = [{"model": str(d / f"{name.split('_')[0]}.tflite"), "registerers": reg, "input": str(d / "x.npy"),
                 "out": str(d / f"{kind}_{name}.npy")} for name, reg in jobs]
        (d / f"{kind}.json").write_text(json.dumps(spec))
        r = subprocess.run([py, os.path.join(ROOT, "tools", "mcu", "tflm_run.py"), "--lib", libs[kind],
                            "--jobs", str(d / f"{kind}.json")], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert r.returncode == 0, r.stderr[-3000:]
        for (name, _), res in zip(jobs, json.loads(r.stdout.strip().splitlines()[-1])):
            out[f"{kind}.{name}"] = res
    return out


def test_tflm_kernel_names_a_too_new_format_version_and_the_fix(tflm_runs):
    r = tflm_runs["default.v9"]
    assert not r["ok"], r
    from dc_keras.codec._format import VERSIONS

    v = VERSIONS[-1]  # the decoder's DC_VERSION_MAX
    assert ("packed tensor not readable here: format version 9, newer than this decoder's "
            f"{v}: pack with --format-version {v} (pack(version={v})), or update dc_codec.c") in r["log"], r


def test_tflm_kernel_names_a_layout_a_minimal_build_left_out_and_both_fixes(tflm_runs):
    assert tflm_runs["default.planes_ok"]["ok"], tflm_runs["default.planes_ok"]
    r = tflm_runs["minimal.planes"]
    assert not r["ok"], r
    assert ("packed tensor not readable here: layout 4 (DC_CODEC_NO_FLOAT_PLANES or DC_CODEC_MINIMAL), left "
            "out of this dc_codec.c build: rebuild without that option, or pack with --decoder minimal "
            "or --layouts") in r["log"], r


def test_tflm_missing_registration_gives_the_message_the_doc_quotes(tflm_runs):
    r = tflm_runs["default.planes"]
    assert not r["ok"], r
    assert "Failed to get registration from op code CUSTOM" in r["log"], r
    assert "Failed to get registration from op code CUSTOM" in " ".join(_docs.read("docs/microcontrollers.md").split())


# ---- the Python user's documentation (README, docs/*.md, the notebooks) ------------------------


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

    try:
        venv_py = load_bench("_aeq").venv_python()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    venv = os.path.dirname(os.path.dirname(venv_py))
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)])
    (tmp_path / "float.tflite").write_bytes(dc_keras.export.to_tflite(model, pack=False))
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((8, 16), dtype=np.float32))
    script = []
    for line in _sh_block("docs/quantization.md", "_aeq_child.py").splitlines():
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
    with pytest.raises(ValueError, match="Got value of type FLOAT64"):  # a dtype: TFLite's words kept, with the fix
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
