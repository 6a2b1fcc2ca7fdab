"""Every `Example:` / `>>>` block of dc_keras's docstrings runs (its own file, so that pytest-xdist
runs it next to tests/test_docs.py: it is the slowest doc test)."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("backend", [
    "tensorflow",
    # ~3.5 min; it found to_tflite's LSTM example failing on JAX (the in-process jax2tf route)
    pytest.param("jax", marks=[pytest.mark.long, pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                                                    reason="jax is not installed")]),
])
def test_docstring_examples_run(backend):
    """Every `Example:` / `>>>` block of dc_keras's docstrings runs as doctest (conventions and the
    tiny user objects in tests/_docstring_child.py), in one fresh interpreter of the backend (the
    package says it runs on every Keras 3 backend; torch: its training tests cover it)."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "_docstring_child.py")], env=env,
                       capture_output=True, text=True, timeout=900)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULTS ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    results = json.loads(lines[-1][8:])
    assert len(results) >= 60, sorted(results)
    failed = {name: report for name, report in results.items() if report}
    assert not failed, "docstring examples that fail:\n" + "\n".join(f"== {k}\n{v}" for k, v in failed.items())
