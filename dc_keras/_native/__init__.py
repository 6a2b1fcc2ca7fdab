"""Locating and loading the native library ``libdc_huffdecode.so``.

The library holds the packed-tensor decoder (``dc_codec.h``) and the ``HuffDecode`` TFLite op.
It is built by ``make install`` (or ``pip install .``) into this package directory. Set the
environment variable ``DC_KERAS_LIBRARY`` to use a library built elsewhere.
"""
import ctypes
import os
import threading

LIBRARY_NAME = "libdc_huffdecode.so"
_ENV = "DC_KERAS_LIBRARY"
_lock = threading.Lock()
_cdll = None


def library_path() -> str:
    """Absolute path of the native library; raises ``FileNotFoundError`` naming the fix."""
    override = os.environ.get(_ENV)
    if override:
        if not os.path.isfile(override):
            raise FileNotFoundError(f"{_ENV}={override!r} does not name a file")
        return os.path.abspath(override)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"dc_keras native library not found at {path}. Build it with `make install` "
            f"(or `pip install .` from the source tree), or point {_ENV} at a built {LIBRARY_NAME}."
        )
    return path


def load_library() -> ctypes.CDLL:
    """Loads the library once per process with ``RTLD_GLOBAL`` (so TFLite can resolve its symbols)."""
    global _cdll
    with _lock:
        if _cdll is None:
            _cdll = ctypes.CDLL(library_path(), mode=ctypes.RTLD_GLOBAL)
        return _cdll
