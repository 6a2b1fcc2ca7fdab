"""Installing dc_keras the way a Colab user does: ``pip install "dc_keras @ <source>"``.

pip builds a wheel from the source tree (setup.py compiles the C library into it); the installed
copy must find its own library and decode, away from the checkout. The notebooks' install cell
must point at the project's declared home (``url`` in setup.cfg).
"""
import configparser
import glob
import json
import os
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


def test_pip_wheel_from_source_builds_a_working_native_library(tmp_path):
    # A copy of the source tree without build products (pip builds in-tree: keep the checkout clean).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "build-*", "__pycache__", "*.egg-info", "*.so", ".pytest_cache",
        ".hypothesis", "examples", "benchmarks"))
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
