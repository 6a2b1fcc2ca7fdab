"""ai-edge-quantizer in a venv of its own (it pins its own ai-edge-litert; kept out of the main
environment), used by benchmarks/bench_quantized.py and tests/test_litert_files.py.

``quantize(float_bytes, calib, recipes)`` creates ``~/.cache/dc_keras/venvs/ai-edge-quantizer-0.10.0``
on first use (pip from PyPI, ~20 s; reused afterwards) and runs ``tests/_aeq_child.py`` there.
"""
import fcntl
import os
import subprocess
import sys
import tempfile

import numpy as np

AEQ_VERSION = "0.10.0"
VENV = os.path.join(os.path.expanduser("~/.cache/dc_keras/venvs"), f"ai-edge-quantizer-{AEQ_VERSION}")
CHILD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "_aeq_child.py")


def venv_python():
    """The venv's python, created once under a lock; RuntimeError with pip's output if it cannot be."""
    py = os.path.join(VENV, "bin", "python")
    os.makedirs(os.path.dirname(VENV), exist_ok=True)
    with open(VENV + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(VENV, ".complete")):
            for cmd in ([sys.executable, "-m", "venv", "--clear", VENV],
                        [py, "-m", "pip", "install", "-q", f"ai-edge-quantizer=={AEQ_VERSION}"]):
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if r.returncode != 0:
                    raise RuntimeError(f"could not create the ai-edge-quantizer venv at {VENV} ({' '.join(cmd)}):\n"
                                       f"{r.stdout[-2000:]}{r.stderr[-2000:]}\nIt needs PyPI access once "
                                       "(the venv is reused afterwards).")
            open(os.path.join(VENV, ".complete"), "w").close()
    return py


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
