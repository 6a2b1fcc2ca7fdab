"""The TFLM Python environment of `make test-mcu`, tests/test_micro.py and benchmarks/mcu_bench.py.

A separate venv (default ~/.cache/dc_keras/venvs/tflm-<key>) holding only the PyPI ``tflite-micro``
nightly that tflite_kernels/micro/tflm_abi.h is pinned to (DC_TFLM_WHEEL_VERSION) and its small
``bitarray`` dependency, both ``--no-deps``; everything else (numpy, flatbuffers, and the
TensorFlow its flatbuffer_utils imports) comes from the project venv through a .pth file, so the
wheel runs against exactly the project's numpy/TensorFlow and nothing is downloaded twice
(`pip install --dry-run` into the project venv showed the wheel changes no pin there; keeping it
apart keeps a nightly out of the project's own environment).  Created once under a file lock;
a stamp holds the requirement list, so a changed pin rebuilds it.  <key> is a hash of that list
and of the project venv's site directories: two checkouts with their own project venvs (a CI
copy next to a working tree) get a venv each, instead of each rebuilding the one venv whenever the
other had built it, under the feet of a process running in it (it then failed, at random, with
"ImportError: cannot import name '_runtime' from 'tflite_micro.python.tflite_micro'").
DC_TFLM_VENV names the venv's directory instead.

    python tools/mcu/tflm_env.py          # prints the venv's python path (creating it if needed)
"""
import fcntl
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ABI_HEADER = os.path.join(ROOT, "tflite_kernels", "micro", "tflm_abi.h")
VENVS = os.path.join(os.path.expanduser("~"), ".cache", "dc_keras", "venvs")


def wheel_version():
    """The tflite-micro nightly pinned in tflm_abi.h (DC_TFLM_WHEEL_VERSION)."""
    with open(ABI_HEADER) as f:
        m = re.search(r'#define DC_TFLM_WHEEL_VERSION "([^"]+)"', f.read())
    if not m:
        raise RuntimeError(f"DC_TFLM_WHEEL_VERSION not found in {ABI_HEADER}")
    return m.group(1)


def requirements():
    # setuptools < 81: the wheel imports pkg_resources (postinstall_check), gone from newer ones.
    return [f"tflite-micro=={wheel_version()}", "bitarray==3.12.3", "setuptools==80.9.0"]


def _project_site_dirs():
    import sysconfig

    return sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})


def _key(site_dirs=None):
    """What the venv is built from: the requirements and the project venv's site directories."""
    return " ".join(requirements() + (_project_site_dirs() if site_dirs is None else list(site_dirs)))


def default_venv(site_dirs=None):
    """The venv's directory: $DC_TFLM_VENV, or ~/.cache/dc_keras/venvs/tflm-<hash of _key()>, one per
    project venv (``site_dirs``: its site directories, default this interpreter's) and pin."""
    import hashlib

    if os.environ.get("DC_TFLM_VENV"):
        return os.environ["DC_TFLM_VENV"]
    return os.path.join(VENVS, "tflm-" + hashlib.sha256(_key(site_dirs).encode()).hexdigest()[:12])


VENV = default_venv()


def ensure(venv=VENV):
    """Creates (once) and returns the path of the TFLM venv's python; raises RuntimeError."""
    py = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".dc_stamp")
    key = _key()
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    with open(venv + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(stamp) as f:
                if f.read() == key and os.path.exists(py):
                    return py
        except OSError:
            pass
        tmp = venv + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
        tpy = os.path.join(tmp, "bin", "python")
        for cmd in ([sys.executable, "-m", "venv", "--without-pip", tmp],
                    [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                     "--ignore-installed", "--disable-pip-version-check", "--prefix", tmp] + requirements()):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"creating the TFLM venv failed at {' '.join(cmd)}:\n"
                                   f"{(r.stdout + r.stderr)[-3000:]}")
        site = subprocess.run([tpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(site, "dc_keras_project_venv.pth"), "w") as f:
            f.write("\n".join(_project_site_dirs()) + "\n")
        os.replace(tmp, venv)
        with open(stamp, "w") as f:
            f.write(key)
    return py


if __name__ == "__main__":
    print(ensure())


#: Newer nightly whose pure-Python compression package also LUT-compresses float tensors (the
#: pinned runtime's only takes quantized ones); used for size comparisons only (tflm_lut.py).
LUT_TOOL_VERSION = "0.dev20261023182759"


def ensure_lut_tool(path=None):
    """Installs (once) that nightly + bitarray --no-deps into a directory; returns the directory
    to put on PYTHONPATH of the project venv's python (numpy, flatbuffers, yaml come from it)."""
    path = path or os.path.join(os.path.dirname(VENV), f"tflm-lut-{LUT_TOOL_VERSION}")
    stamp = os.path.join(path, ".dc_stamp")
    reqs = [f"tflite-micro=={LUT_TOOL_VERSION}", "bitarray==3.12.3"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(stamp):
            return path
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
                            "--disable-pip-version-check", "--target", tmp] + reqs, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"installing {reqs} failed:\n{(r.stdout + r.stderr)[-3000:]}")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        with open(stamp, "w") as f:
            f.write(" ".join(reqs))
    return path
