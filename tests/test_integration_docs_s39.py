"""The integration steps of docs/microcontrollers.md and docs/android.md, followed as written by a
user outside this repository: the files the MCU doc says to copy compile on their own with the
flags it shows; the Android doc's TFLite C API snippet compiles against headers laid out as
upstream's (TfLiteInterpreterOptionsAddCustomOp in c_api_experimental.h, not c_api.h); its CMake
cross-toolchain command configures; and the TFLM kernel's messages for a too-new format version
and for a layout left out of a DC_CODEC_MINIMAL build name the fixes the MCU doc quotes."""
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest

import _docs
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

    d = tmp_path_factory.mktemp("s39_tflm")
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
    assert ("packed tensor not readable here: format version 9, newer than this decoder's 4: pack with "
            "--format-version 4 (pack(version=4)), or update dc_codec.c") in r["log"], r


def test_tflm_kernel_names_a_layout_a_minimal_build_left_out_and_both_fixes(tflm_runs):
    assert tflm_runs["default.planes_ok"]["ok"], tflm_runs["default.planes_ok"]
    r = tflm_runs["minimal.planes"]
    assert not r["ok"], r
    assert ("packed tensor not readable here: layout 4 / type 0 is left out of this dc_codec.c build "
            "(DC_CODEC_NO_* / DC_CODEC_MINIMAL): rebuild it without that, or pack with --decoder minimal "
            "or --layouts") in r["log"], r


def test_tflm_missing_registration_gives_the_message_the_doc_quotes(tflm_runs):
    r = tflm_runs["default.planes"]
    assert not r["ok"], r
    assert "Failed to get registration from op code CUSTOM" in r["log"], r
    assert "Failed to get registration from op code CUSTOM" in " ".join(_docs.read("docs/microcontrollers.md").split())
