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


@pytest.fixture(scope="session")
def minimal_decoder(tmp_path_factory):
    """dc_codec.c compiled with -DDC_CODEC_MINIMAL (a microcontroller build that left out every
    optional layout and type) into a shared library: its dc_peek / dc_decode / dc_strerror
    (tests/test_codec.py, test_pack_layouts.py)."""
    import ctypes
    import shutil

    cc = shutil.which(os.environ.get("CC", "cc"))
    assert cc, "a C compiler (cc, or $CC) is needed to build the trimmed decoder"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    so = tmp_path_factory.mktemp("minimal") / "libdc_minimal.so"
    # -Bsymbolic: the library's own calls (dc_decode -> dc_decode_ws ...) stay inside it even if a
    # full decoder exporting the same names was loaded into the process's global scope first.
    subprocess.run([cc, "-std=c99", "-O1", "-shared", "-fPIC", "-Wl,-Bsymbolic", "-DDC_CODEC_MINIMAL",
                    "-I" + os.path.join(root, "tflite_kernels", "include"),
                    os.path.join(root, "tflite_kernels", "src", "dc_codec.c"), "-o", str(so)], check=True,
                   timeout=300)
    lib = ctypes.CDLL(str(so))
    lib.dc_peek.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    lib.dc_strerror.argtypes = [ctypes.c_int]
    lib.dc_strerror.restype = ctypes.c_char_p
    return lib
