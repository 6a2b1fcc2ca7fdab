"""Packed models on LiteRT's ``CompiledModel`` through its C API, with ``HuffDecode`` registered
as a custom op kernel (``LiteRtAddCustomOpKernelOption``; C side: tflite_kernels/src/dc_litert_op.c).

LiteRT's Python ``CompiledModel`` cannot take a custom op, so this drives the wheel's
``libLiteRt.so`` with ctypes: the same calls a C/JNI app makes (see docs/android.md). The public
LiteRT C API is used as declared in LiteRT 2.2/2.3 (``litert/c/*.h``).
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from dc_keras._native import load_library

_P = ctypes.c_void_p
# numpy dtype -> LiteRtElementType (= TfLiteType codes)
_ETYPES = {np.dtype(np.float32): 1, np.dtype(np.int32): 2, np.dtype(np.uint8): 3, np.dtype(np.int64): 4,
           np.dtype(np.bool_): 6, np.dtype(np.int16): 7, np.dtype(np.int8): 9, np.dtype(np.float16): 10}
_HW_CPU = 1


class _Layout(ctypes.Structure):  # LiteRtLayout: rank:7 + has_strides:1 bit-fields, dims, strides
    _fields_ = [("bits", ctypes.c_uint32), ("dims", ctypes.c_int32 * 8), ("strides", ctypes.c_uint32 * 8)]


class _Ranked(ctypes.Structure):  # LiteRtRankedTensorType
    _fields_ = [("element_type", ctypes.c_int), ("layout", _Layout)]


class _Api(ctypes.Structure):  # DcLiteRtApi (dc_litert_op.c)
    _fields_ = [("lock", _P), ("unlock", _P), ("size", _P)]


def _litert():
    import ai_edge_litert

    lib = ctypes.CDLL(os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so"))
    sigs = {"LiteRtCreateEnvironment": [ctypes.c_int, _P, ctypes.POINTER(_P)],
            "LiteRtCreateModelFromBuffer": [_P, _P, ctypes.c_size_t, ctypes.POINTER(_P)],
            "LiteRtCreateOptions": [ctypes.POINTER(_P)],
            "LiteRtSetOptionsHardwareAccelerators": [_P, ctypes.c_int],
            "LiteRtAddCustomOpKernelOption": [_P, ctypes.c_char_p, ctypes.c_int, _P, _P],
            "LiteRtCreateCompiledModel": [_P, _P, _P, ctypes.POINTER(_P)],
            "LiteRtCreateTensorBufferFromHostMemory": [ctypes.POINTER(_Ranked), _P, ctypes.c_size_t, _P,
                                                       ctypes.POINTER(_P)],
            "LiteRtRunCompiledModel": [_P, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(_P),
                                       ctypes.c_size_t, ctypes.POINTER(_P)]}
    for name, args in sigs.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = args, ctypes.c_int
    for name in ("LiteRtDestroyTensorBuffer", "LiteRtDestroyCompiledModel", "LiteRtDestroyOptions",
                 "LiteRtDestroyModel", "LiteRtDestroyEnvironment"):
        getattr(lib, name).argtypes, getattr(lib, name).restype = [_P], None
    return lib


def _dc():
    lib = load_library()
    lib.DcKerasLiteRtHuffDecodeCreate.restype = _P
    lib.DcKerasLiteRtHuffDecodeCreate.argtypes = [_P, ctypes.c_size_t, ctypes.POINTER(_Api), ctypes.c_char_p,
                                                  ctypes.c_size_t]
    lib.DcKerasLiteRtHuffDecodeKernel.restype = _P
    lib.DcKerasLiteRtHuffDecodeError.restype = ctypes.c_char_p
    lib.DcKerasLiteRtHuffDecodeError.argtypes = [_P]
    lib.DcKerasLiteRtHuffDecodeDestroy.argtypes = [_P]
    return lib


def _align_packed(lib, content):
    """The model with its packed tensors' bytes 64-byte aligned in the file (``dc_align_packed``):
    LiteRT's custom-op dispatcher passes a constant input as a host buffer and refuses one that is
    not 64-byte aligned ("Unaligned host memory pointer"); .tflite writers align data to 16."""
    fn = lib.dc_align_packed
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
                   ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    out, size, why = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t(0), ctypes.create_string_buffer(512)
    if fn(content, len(content), 64, ctypes.byref(out), ctypes.byref(size), why, len(why)) != 0:
        raise ValueError(f"dc_align_packed: {why.value.decode(errors='replace')}")
    try:
        return ctypes.string_at(out, size.value)
    finally:
        lib.dc_unpack_free.argtypes = [ctypes.POINTER(ctypes.c_uint8)]
        lib.dc_unpack_free(out)


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"LiteRT {what} failed (LiteRtStatus {status})")


def _io_specs(content):
    """[(shape, dtype)] of signature 0's inputs and outputs (subgraph 0's inputs/outputs if none).
    A signature's tensor indices are those of its own subgraph (``subgraphIndex``), which need not
    be subgraph 0 (LiteRT runs signature 0 as the file lists it)."""
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(content)
    sigs = model.signatureDefs or []
    where = "subgraph 0"
    if sigs:
        key = sigs[0].signatureKey.decode(errors="replace") if sigs[0].signatureKey else ""
        where = f"signature 0 ({key!r}, subgraph {sigs[0].subgraphIndex})"
        if not 0 <= sigs[0].subgraphIndex < len(model.subgraphs):
            raise ValueError(f"{where}: the model has {len(model.subgraphs)} subgraph(s), so the file is corrupt; "
                             "export the model again")
    sg = model.subgraphs[sigs[0].subgraphIndex if sigs else 0]
    ins = [m.tensorIndex for m in sigs[0].inputs or []] if sigs else list(sg.inputs)
    outs = [m.tensorIndex for m in sigs[0].outputs or []] if sigs else list(sg.outputs)

    def spec(i):
        if not 0 <= i < len(sg.tensors or []):
            raise ValueError(f"{where} names tensor {i}, but its subgraph has {len(sg.tensors or [])} tensors, "
                             "so the file is corrupt; export the model again")
        t = sg.tensors[i]
        return tuple(int(d) for d in t.shape), fb.NUMPY_DTYPES[t.type]

    return [spec(i) for i in ins], [spec(i) for i in outs]


def _aligned(shape, dtype):
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(n + 128, np.uint8)
    off = (-raw.ctypes.data) % 64  # LiteRT host buffers: 64-byte aligned
    return raw[off:off + n].view(dtype).reshape(shape)


class CustomOpCompiledModel:
    """A packed ``.tflite`` compiled by LiteRT's C ``CompiledModel`` API (CPU), ``HuffDecode`` run
    by the library's custom op kernel.

    Every packed tensor is decoded once, here (a corrupt one raises ``ValueError`` naming it);
    each run copies the decoded weights into the op's output. Consumers see non-constant weights,
    so LiteRT picks its dynamic-weight kernels: outputs equal the unpacked model's for ops that do
    no reduction over the weights (gather, add, ...) and agree to ~1e-6 relative for FC/conv
    (summation order). ``dc_keras.runtime.compiled_model`` (in-memory unpack) is bit-identical and
    as fast as the unpacked file: prefer it; this class shows and tests the custom-op route.

    Example:
      >>> with CustomOpCompiledModel(open("m.packed.tflite", "rb").read()) as m:
      ...     (y,) = m.run(x)
    """

    def __init__(self, model_content):
        self._rt, self._dc = _litert(), _dc()
        self._state = None
        aligned = _align_packed(self._dc, bytes(model_content))
        self._buf = _aligned((len(aligned),), np.dtype(np.uint8))  # the model, 64-byte aligned
        self._buf[:] = np.frombuffer(aligned, np.uint8)
        self._data = (ctypes.c_char * len(aligned)).from_address(self._buf.ctypes.data)
        self._inputs, self._outputs = _io_specs(bytes(model_content))
        self._env, self._model, self._opts, self._cm = _P(), _P(), _P(), _P()
        rt = self._rt
        _check(rt.LiteRtCreateEnvironment(0, None, ctypes.byref(self._env)), "CreateEnvironment")
        _check(rt.LiteRtCreateModelFromBuffer(self._env, ctypes.addressof(self._data), len(self._data),
                                              ctypes.byref(self._model)), "CreateModelFromBuffer")
        _check(rt.LiteRtCreateOptions(ctypes.byref(self._opts)), "CreateOptions")
        _check(rt.LiteRtSetOptionsHardwareAccelerators(self._opts, _HW_CPU), "SetOptionsHardwareAccelerators")
        self._api = _Api(*(ctypes.cast(getattr(rt, n), _P) for n in
                           ("LiteRtLockTensorBuffer", "LiteRtUnlockTensorBuffer", "LiteRtGetTensorBufferSize")))
        why = ctypes.create_string_buffer(512)
        self._state = self._dc.DcKerasLiteRtHuffDecodeCreate(ctypes.addressof(self._data), len(self._data),
                                                             ctypes.byref(self._api), why, len(why))
        if not self._state:
            self.close()
            raise ValueError(f"dc_keras HuffDecode kernel: {why.value.decode(errors='replace')}")
        _check(rt.LiteRtAddCustomOpKernelOption(self._opts, b"HuffDecode", 1,
                                                self._dc.DcKerasLiteRtHuffDecodeKernel(), self._state),
               "AddCustomOpKernelOption")
        _check(rt.LiteRtCreateCompiledModel(self._env, self._model, self._opts, ctypes.byref(self._cm)),
               "CreateCompiledModel")
        self._error()

    def _error(self):
        msg = self._dc.DcKerasLiteRtHuffDecodeError(self._state).decode(errors="replace")
        if msg:
            raise RuntimeError(f"dc_keras HuffDecode kernel: {msg}")

    def _buffer(self, arr):
        layout = _Layout()
        layout.bits = arr.ndim  # rank in the low 7 bits, has_strides = 0
        for i, d in enumerate(arr.shape):
            layout.dims[i] = d
        ranked, buf = _Ranked(_ETYPES[arr.dtype], layout), _P()
        _check(self._rt.LiteRtCreateTensorBufferFromHostMemory(ctypes.byref(ranked), arr.ctypes.data, arr.nbytes,
                                                               None, ctypes.byref(buf)), "CreateTensorBuffer")
        return buf

    def run(self, *inputs):
        """Runs signature 0 on ``inputs`` (numpy arrays, signature order); returns the outputs."""
        if not self._cm:  # closed: LiteRT said only "RunCompiledModel failed (LiteRtStatus 1)"
            raise RuntimeError("this CustomOpCompiledModel is closed (close() or a with block released it): "
                               "create a new one from the model to run it again")
        if len(inputs) != len(self._inputs):
            raise ValueError(f"expected {len(self._inputs)} inputs, got {len(inputs)}")
        ins = []
        for i, (x, (shape, dtype)) in enumerate(zip(inputs, self._inputs)):
            # as TFLite's set_tensor: a float64 or int array was cast silently (wrong values for ints
            # into a float model, a different rounding for float64), a wrong shape got numpy's reshape error
            x = np.asarray(x)
            if x.dtype != dtype:
                raise ValueError(f"input {i}: got a {x.dtype} array, the model takes {np.dtype(dtype)}: pass "
                                 f"x.astype(np.{np.dtype(dtype).name}).")
            if tuple(x.shape) != tuple(shape):
                raise ValueError(f"input {i}: got shape {tuple(x.shape)}, the model takes {tuple(shape)}.")
            a = _aligned(shape, dtype)
            a[...] = x
            ins.append(a)
        outs = [_aligned(shape, dtype) for shape, dtype in self._outputs]
        bufs = [self._buffer(a) for a in ins + outs]
        try:
            n = len(ins)
            _check(self._rt.LiteRtRunCompiledModel(self._cm, 0, n, (_P * n)(*bufs[:n]), len(outs),
                                                   (_P * len(outs))(*bufs[n:])), "RunCompiledModel")
        finally:
            for b in bufs:
                self._rt.LiteRtDestroyTensorBuffer(b)
        self._error()
        return [o.copy() for o in outs]

    def close(self):
        """Releases the compiled model, then the kernel's decoded weights."""
        rt = getattr(self, "_rt", None)
        if rt is None:
            return
        for handle, fn in ((self._cm, rt.LiteRtDestroyCompiledModel), (self._opts, rt.LiteRtDestroyOptions),
                           (self._model, rt.LiteRtDestroyModel), (self._env, rt.LiteRtDestroyEnvironment)):
            if handle:
                fn(handle)
        self._cm = self._opts = self._model = self._env = _P()
        if self._state:
            self._dc.DcKerasLiteRtHuffDecodeDestroy(self._state)
            self._state = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass
