"""ctypes binding of the C decoder (tflite_kernels/include/dc_codec.h)."""
import ctypes
import threading

import numpy as np

from ._format import DTYPE_TABLE, MAX_RANK, VERSIONS, CorruptDataError, code_dtype, dtype_bits

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
        ("layout", ctypes.c_uint32),
        ("element_bits", ctypes.c_uint32),
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


_ERR_VERSION = 3  # dc_codec.h DC_ERR_VERSION


def _raise(lib, status, buf):
    """CorruptDataError with the decoder's reason; a refused format version named as the C tools and
    dc_unpack() name it (the decoder refuses it only after the magic, so ``buf[4]`` is there): which
    decoder reads a newer one, or that it does not exist (damage)."""
    msg = lib.dc_strerror(status).decode("ascii")
    if status == _ERR_VERSION and len(buf) > 4:
        v = buf[4]
        msg += (f": it is version {v}, which only a decoder with DC_VERSION_MAX >= {v} reads" if v > VERSIONS[-1]
                else f": version {v} does not exist (the first is {VERSIONS[0]})")
    raise CorruptDataError(msg, status)


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


def unpack_subbyte(raw, shape, dtype_code):
    """§13: elements of a sub-byte tensor from its bytes as TFLite stores them (element i in bits
    (i mod m)·b .. of byte i div m, m = 8 / b, low bits first) -> array of ``shape`` (ml_dtypes
    int4 / uint4 / int2 when available, else int8/uint8 values)."""
    bits = dtype_bits(dtype_code)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(bytes(raw), np.uint8)
    if len(raw) != (n * bits + 7) // 8:
        raise ValueError(f"{len(raw)} bytes cannot hold {n} elements of {bits} bits")
    per = 8 // bits
    vals = ((raw[:, None] >> (np.arange(per, dtype=np.uint8) * bits)) & ((1 << bits) - 1)).reshape(-1)[:n]
    dt = code_dtype(dtype_code)
    if dt is not None:
        return vals.view(dt).reshape(shape)
    if DTYPE_TABLE[dtype_code][0].startswith("int"):
        return np.where(vals >= 1 << (bits - 1), vals.astype(np.int16) - (1 << bits), vals).astype(np.int8).reshape(shape)
    return vals.reshape(shape)


def pack_subbyte(array, dtype_code):
    """Inverse of ``unpack_subbyte``: the TFLite bytes of a sub-byte tensor (padding bits zero)."""
    bits = dtype_bits(dtype_code)
    per = 8 // bits
    v = np.asarray(array).reshape(-1).view(np.uint8) & ((1 << bits) - 1)
    v = np.concatenate([v, np.zeros(-len(v) % per, np.uint8)]).reshape(-1, per)
    return np.bitwise_or.reduce(v << (np.arange(per, dtype=np.uint8) * bits), axis=1).astype(np.uint8).tobytes()


def decode(data, *, raw=False):
    """Decodes a packed tensor (docs/FORMAT.md) with the native decoder; returns a numpy array.

    With ``raw=True`` returns the decoder's output bytes as a 1-D uint8 array: the tensor's
    buffer exactly as TFLite stores it (for sub-byte types, §13: packed elements).

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
        _raise(lib, st, buf)
    shape = tuple(int(info.dims[i]) for i in range(info.rank))
    out = np.empty(int(info.output_bytes), np.uint8)
    st = lib.dc_decode(buf, len(buf), out.ctypes.data_as(ctypes.c_void_p), int(info.output_bytes))
    if st:
        _raise(lib, st, buf)
    if raw:
        return out
    if info.element_bits < 8:
        return unpack_subbyte(out, shape, info.dtype)
    dtype = code_dtype(info.dtype)
    if dtype is None:  # bfloat16 without ml_dtypes: the bit patterns
        dtype = np.dtype(np.uint16)
    return out.view(dtype.newbyteorder("<")).astype(dtype.newbyteorder("="), copy=False).reshape(shape)
