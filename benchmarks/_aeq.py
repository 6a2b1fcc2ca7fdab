"""ai-edge-quantizer in a venv of its own (it pins its own ai-edge-litert; kept out of the main
environment), used by benchmarks/bench_quantized.py and tests/test_litert_files.py.

``quantize(float_bytes, calib, recipes)`` creates ``~/.cache/dc_keras/venvs/ai-edge-quantizer-0.10.0``
on first use (pip from PyPI, ~20 s; reused afterwards) and runs ``tests/_aeq_child.py`` there.
"""
import os
import subprocess
import tempfile

import numpy as np

from _venv import cached_venv

AEQ_VERSION = "0.10.0"
CHILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "_aeq_child.py")


def venv_python():
    """The venv's python, created once under a lock; RuntimeError with pip's output if it cannot be."""
    return cached_venv(f"ai-edge-quantizer-{AEQ_VERSION}", [f"ai-edge-quantizer=={AEQ_VERSION}"], "ai-edge-quantizer")


def quantize(float_bytes, calib, recipes):
    """{recipe: .tflite bytes} for each ``ai_edge_quantizer.recipe`` name, from a float .tflite and
    calibration inputs ``calib`` (first axis = samples, the model's input shape after it)."""
    py = venv_python()
    with tempfile.TemporaryDirectory(prefix="dc_keras-aeq-") as d:
        with open(os.path.join(d, "float.tflite"), "wb") as f:
            f.write(float_bytes)
        np.save(os.path.join(d, "calib.npy"), np.asarray(calib, np.float32))
        r = subprocess.run([py, CHILD, os.path.join(d, "float.tflite"), os.path.join(d, "calib.npy"), d, *recipes],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"ai-edge-quantizer failed:\n{r.stderr[-3000:]}")
        out = {}
        for name in recipes:
            with open(os.path.join(d, name + ".tflite"), "rb") as f:
                out[name] = f.read()
        return out
