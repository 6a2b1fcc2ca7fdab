import os
import subprocess

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def shared_dir():
    """A directory every user may write (pytest's tmp_path is private to root when run as root)."""
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="dc_keras_ro_")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tools():
    """The C tools, built: {"dc_decode": path, "dc_unpack": path} (tests/test_c_tools.py, test_faults.py)."""
    kernels = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tflite_kernels")
    r = subprocess.run(["make", "-s", "-C", kernels, "tools"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {name: os.path.join(kernels, "build", name) for name in ("dc_decode", "dc_unpack")}
