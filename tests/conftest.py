import os
import subprocess

import pytest

import _cbuild

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
    r = _cbuild.build(cc, ["-std=c99", "-O1", "-fPIC", "-DDC_CODEC_MINIMAL",
                           "-I" + os.path.join(root, "tflite_kernels", "include")],
                      [os.path.join(root, "tflite_kernels", "src", "dc_codec.c")], so,
                      ldflags=["-shared", "-Wl,-Bsymbolic"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lib = ctypes.CDLL(str(so))
    lib.dc_peek.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    lib.dc_strerror.argtypes = [ctypes.c_int]
    lib.dc_strerror.restype = ctypes.c_char_p
    return lib


# The environment of the makes the tests run: not the jobserver of a make that runs pytest (make
# test -j3 gave "make[2]: warning: jobserver unavailable" on stderr, which the builds must not print).
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


@pytest.fixture(scope="session")
def make_env():
    """MAKE_ENV, for the makes test files run themselves."""
    return MAKE_ENV


_KERNELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tflite_kernels")


def shared_build(tmp_path_factory, name, inputs, build):
    """A build made once per pytest session and shared by its test files, on every xdist worker:
    ``build(d)`` writes into the empty directory ``d``, which is then renamed to the returned
    directory. Its name holds a hash of ``name`` (say what and how: the flags) and of the contents
    of ``inputs`` (the source files), so a changed source or flag is a new build. A file lock makes a
    second worker wait for the first one's build instead of making its own; a failed build leaves
    nothing in place and the next caller builds again (and fails the same way)."""
    import fcntl
    import hashlib
    import shutil
    import tempfile

    h = hashlib.sha256(name.encode())
    for path in sorted(inputs):
        with open(path, "rb") as f:
            h.update(path.encode() + b"\0" + f.read() + b"\0")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # gw0's basetemp is <session>/popen-gw0
        base = base.parent
    root = base / "dc_keras_shared_builds"
    root.mkdir(exist_ok=True)
    final = root / f"{name}-{h.hexdigest()[:16]}"
    with open(root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not final.is_dir():
            tmp = tempfile.mkdtemp(dir=root, prefix=f"{final.name}.tmp")
            try:
                build(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            os.rename(tmp, final)
    return final


def _kernel_sources(*dirs):
    return [os.path.join(_KERNELS, d, f) for d in dirs for f in os.listdir(os.path.join(_KERNELS, d))
            if os.path.isfile(os.path.join(_KERNELS, d, f))]


@pytest.fixture(scope="session")
def micro_lib(tmp_path_factory):
    """The wheel's HuffDecode library, `make -C tflite_kernels/micro` with its default flags (-Wall
    -Wextra -Werror), built once for the session (tests/test_micro.py, test_micro_cnn.py,
    test_docs_as_written.py): its path."""

    def build(d):
        r = subprocess.run(["make", "-s", "-C", os.path.join(_KERNELS, "micro"), f"BUILD={d}"],
                           capture_output=True, text=True, env=MAKE_ENV, timeout=300)
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]

    d = shared_build(tmp_path_factory, "tflm_lib", _kernel_sources("micro", "include", "src"), build)
    return str(d / "libdc_huffdecode_tflm.so")


def _sanitized_codec_obj(tmp_path_factory, name, cc, sanitize):
    """dc_codec.c compiled (-c) once for the session by ``cc`` with ``-fsanitize=SANITIZE``
    -fno-sanitize-recover=all -O1 -g -Wall -Wextra -Werror (shared_build ``name``): its path."""
    def build(d):
        r = _cbuild.compile_one(cc, ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-fsanitize={sanitize}",
                                     "-fno-sanitize-recover=all", f"-I{_KERNELS}/include"],
                                os.path.join(_KERNELS, "src", "dc_codec.c"), os.path.join(d, "dc_codec.o"))
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]

    d = shared_build(tmp_path_factory, name, _kernel_sources("include", "src"), build)
    return str(d / "dc_codec.o")


@pytest.fixture(scope="session")
def codec_ubsan_obj(tmp_path_factory):
    """dc_codec.c compiled (-c) once for the session by clang with -fsanitize=undefined
    -fno-sanitize-recover=all -O1 -g -Wall -Wextra -Werror (~8 s of CPU; tests/test_micro.py and
    test_codec_ubsan.py link it, with `clang -fsanitize=undefined`): its path. gcc's UBSan does not
    report NULL + 0, so without clang the tests that need it skip."""
    import shutil

    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("needs clang (its UBSan reports NULL + 0; gcc's does not)")
    return _sanitized_codec_obj(tmp_path_factory, "dc_codec_ubsan", clang, "undefined")


@pytest.fixture(scope="session")
def codec_asan_obj(tmp_path_factory):
    """dc_codec.c compiled (-c) once for the session by the host C compiler with
    -fsanitize=address,undefined -fno-sanitize-recover=all -O1 -g -Wall -Wextra -Werror (~15-20 s of
    CPU): its path, for stand-ins that must see the decoder's own reads (the project's library is
    not instrumented); link it with the same -fsanitize flags."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    return _sanitized_codec_obj(tmp_path_factory, "dc_codec_asan_ubsan", cc, "address,undefined")
