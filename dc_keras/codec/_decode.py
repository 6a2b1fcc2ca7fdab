"""ctypes binding of the C decoder (tflite_kernels/include/dc_codec.h)."""
import ctypes
import threading

import numpy as np

from ._format import CODE_DTYPES, MAX_RANK, CorruptDataError

_lock = threading.Lock()
_lib = None


class _TensorInfo(ctypes.Structure):
    # Mirrors dc_tensor_info in dc_codec.h.
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("dtype", ctypes.c_uint32),
        ("rank", ctypes.c_uint32),
        ("dims", ctypes.c_uint64 * MAX_RANK),
        ("num_elements", ctypes.c_uint64),
        ("element_size", ctypes.c_uint64),
        ("output_bytes", ctypes.c_uint64),
    ]


def _library():
    global _lib
    with _lock:
        if _lib is None:
            from dc_keras._native import load_library

            lib = load_library()
            lib.dc_peek.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_TensorInfo)]
            lib.dc_peek.restype = ctypes.c_int
            lib.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
            lib.dc_decode.restype = ctypes.c_int
            lib.dc_strerror.argtypes = [ctypes.c_int]
            lib.dc_strerror.restype = ctypes.c_char_p
            _lib = lib
        return _lib


def _raise(lib, status):
    raise CorruptDataError(lib.dc_strerror(status).decode("ascii"), status)


def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 1:
            raise TypeError(f"packed data must be bytes or a 1-D uint8 array, got {data.dtype} {data.shape}")
        return data.tobytes()
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"packed data must be bytes-like, got {type(data).__name__}")


def decode(data):
    """Decodes a packed tensor (docs/FORMAT.md) with the native decoder; returns a numpy array.

    Raises ``CorruptDataError`` (a ``ValueError``) carrying the decoder's reason for any
    malformed input, and ``TypeError`` if ``data`` is not bytes-like.

    Example:
      >>> import numpy as np
      >>> from dc_keras import codec
      >>> a = np.array([[0, 0, 3], [0, 7, 0]], np.int8)
      >>> codec.decode(codec.encode(a)).tolist()
      [[0, 0, 3], [0, 7, 0]]
    """
    buf = _as_bytes(data)
    lib = _library()
    info = _TensorInfo()
    st = lib.dc_peek(buf, len(buf), ctypes.byref(info))
    if st:
        _raise(lib, st)
    dtype = CODE_DTYPES[info.dtype]
    shape = tuple(int(info.dims[i]) for i in range(info.rank))
    out = np.empty(int(info.num_elements), dtype)
    st = lib.dc_decode(buf, len(buf), out.ctypes.data_as(ctypes.c_void_p), int(info.output_bytes))
    if st:
        _raise(lib, st)
    return out.astype(dtype.newbyteorder("="), copy=False).reshape(shape)
