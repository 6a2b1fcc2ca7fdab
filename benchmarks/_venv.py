"""A venv of its own for a tool that pins its own packages (ai-edge-quantizer, the codec peers):
created once under a lock, reused afterwards. Standard library only (it is imported inside such
venvs too)."""
import fcntl
import os
import subprocess
import sys

ROOT = os.path.join(os.path.expanduser("~/.cache/dc_keras/venvs"))


def cached_venv(name, packages, what):
    """The python of ``~/.cache/dc_keras/venvs/<name>`` with ``packages`` pip-installed, created once
    under a lock (pip from PyPI; reused afterwards); RuntimeError with pip's output if it cannot be.
    ``what`` names the venv in that error."""
    venv = os.path.join(ROOT, name)
    py = os.path.join(venv, "bin", "python")
    os.makedirs(ROOT, exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(venv, ".complete")):
            for cmd in ([sys.executable, "-m", "venv", "--clear", venv],
                        [py, "-m", "pip", "install", "-q", *packages]):
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if r.returncode != 0:
                    raise RuntimeError(f"could not create the {what} venv at {venv} ({' '.join(cmd)}):\n"
                                       f"{r.stdout[-2000:]}{r.stderr[-2000:]}\nIt needs PyPI access once "
                                       "(the venv is reused afterwards).")
            open(os.path.join(venv, ".complete"), "w").close()
    return py


#: litert-torch (PyTorch -> LiteRT) and the CPU wheel of torch: without the pin pip takes the newest
#: torch litert-torch allows, a CUDA build with several GB of NVIDIA packages.
LITERT_TORCH = ("litert-torch-0.10.0", ["litert-torch==0.10.0", "torch==2.13.0+cpu"], "litert-torch")


def litert_torch_venv():
    """The python of litert-torch's venv (tests/data/litert_torch/README.md), created once."""
    return cached_venv(*LITERT_TORCH)
