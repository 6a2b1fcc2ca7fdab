"""Reading and writing ``.tflite`` flatbuffers through the generated TFLite schema module.

Parsing goes through the flatc object API (``Model.GetRootAs`` + ``ModelT.InitFromObj``) after a
cheap bounds check of the big vectors, so malformed bytes raise ``ValueError`` instead of hanging
or raising random internal errors. Serialising goes through ``ModelT.Pack`` with one documented
change: every ``Buffer.data`` vector is started with ``Builder.StartVector(1, n, 16)``, which the
flatbuffers builder honours by padding so that the data begins on a 16-byte boundary of the
finished file (flatbuffers aligns relative to the end of the buffer and ``Finish`` pads the whole
buffer to the largest alignment used, so end-relative alignment is also start-relative alignment).
``tests/test_export_pack.py`` checks the alignment of every buffer of every written model.
"""
from __future__ import annotations

import numpy as np

try:  # LiteRT's copy is the newer schema; TF's is the fallback.
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - depends on the installed runtime
    from tensorflow.lite.python import schema_py_generated as schema

import flatbuffers

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3  # Model.version written by every converter since TF 1.x; runtimes reject others
BUFFER_ALIGNMENT = 16
CUSTOM_CODE = 32  # BuiltinOperator.CUSTOM
HUFFDECODE = b"HuffDecode"

# schema TensorType -> numpy dtype, for the element types the packer handles.
NUMPY_DTYPES = {
    schema.TensorType.FLOAT32: np.dtype("<f4"),
    schema.TensorType.FLOAT16: np.dtype("<f2"),
    schema.TensorType.INT32: np.dtype("<i4"),
    schema.TensorType.UINT8: np.dtype("u1"),
    schema.TensorType.INT16: np.dtype("<i2"),
    schema.TensorType.INT8: np.dtype("i1"),
}

TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}


class _AlignedBufferT(schema.BufferT):
    """``BufferT`` whose data vector starts on a ``BUFFER_ALIGNMENT`` boundary of the file."""

    def Pack(self, builder):
        data_off = None
        if self.data is not None and len(self.data) > 0:
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            data_off = builder.EndVector()
        schema.BufferStart(builder)
        if data_off is not None:
            schema.BufferAddData(builder, data_off)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _check_vector(n: int, elem_size: int, size: int, what: str) -> None:
    if n < 0 or n * elem_size > size:
        raise ValueError(f"malformed .tflite: {what} declares {n} entries, more than the file can hold")


def _bounds_check(model, size: int) -> None:
    """Rejects absurd vector lengths before the object API walks them element by element."""
    _check_vector(model.SubgraphsLength(), 4, size, "subgraph list")
    _check_vector(model.BuffersLength(), 4, size, "buffer list")
    _check_vector(model.OperatorCodesLength(), 4, size, "operator code list")
    _check_vector(model.MetadataLength(), 4, size, "metadata list")
    _check_vector(model.SignatureDefsLength(), 4, size, "signature list")
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf is not None:
            _check_vector(buf.DataLength(), 1, size, f"buffer {i}")
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        if sg is None:
            raise ValueError(f"malformed .tflite: subgraph {s} is missing")
        _check_vector(sg.TensorsLength(), 4, size, f"subgraph {s} tensor list")
        _check_vector(sg.OperatorsLength(), 4, size, f"subgraph {s} operator list")
        _check_vector(sg.InputsLength(), 4, size, f"subgraph {s} inputs")
        _check_vector(sg.OutputsLength(), 4, size, f"subgraph {s} outputs")
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            if tensor is not None:
                _check_vector(tensor.ShapeLength(), 4, size, f"tensor {t} shape")
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            if op is not None:
                _check_vector(op.InputsLength(), 4, size, f"operator {o} inputs")
                _check_vector(op.OutputsLength(), 4, size, f"operator {o} outputs")
                _check_vector(op.CustomOptionsLength(), 1, size, f"operator {o} custom options")


def read_model(data) -> "schema.ModelT":
    """Parses ``.tflite`` bytes into a mutable ``ModelT``; ``ValueError`` if they are not a valid model."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"expected .tflite content as bytes, got {type(data).__name__}")
    if len(data) < 16:
        raise ValueError(f"not a .tflite model: only {len(data)} bytes")
    if data[4:8] != FILE_IDENTIFIER:
        raise ValueError(
            f"not a .tflite model: file identifier is {data[4:8]!r}, expected {FILE_IDENTIFIER!r}"
        )
    try:
        root = schema.Model.GetRootAs(data, 0)
        _bounds_check(root, len(data))
        model = schema.ModelT.InitFromObj(root)
    except ValueError:
        raise
    except Exception as exc:  # flatbuffers raises struct.error, IndexError, ... on garbage
        raise ValueError(f"malformed .tflite: {type(exc).__name__}: {exc}") from None
    if model.version != SCHEMA_VERSION:
        raise ValueError(f"unsupported .tflite schema version {model.version} (this tool reads version "
                         f"{SCHEMA_VERSION}, the only one TFLite runtimes load)")
    if not model.subgraphs:
        raise ValueError("malformed .tflite: the model has no subgraph")
    nbuf = len(model.buffers or [])
    nops = len(model.operatorCodes or [])
    for b in model.buffers or []:
        if b.offset > 1 or b.size > 0:
            raise ValueError(
                "this .tflite keeps buffer data outside the flatbuffer (models > 2 GB); not supported"
            )
    for s, sg in enumerate(model.subgraphs):
        n = len(sg.tensors or [])
        for t in sg.tensors or []:
            if not 0 <= t.buffer < max(nbuf, 1):
                raise ValueError(f"malformed .tflite: subgraph {s} tensor refers to missing buffer {t.buffer}")
            if getattr(t, "externalBuffer", 0):
                raise ValueError("this .tflite uses external buffers; not supported")
        for o, op in enumerate(sg.operators or []):
            if not 0 <= op.opcodeIndex < nops:
                raise ValueError(f"malformed .tflite: subgraph {s} operator {o} has no operator code")
            for idx in list(op.inputs if op.inputs is not None else []) + list(
                op.outputs if op.outputs is not None else []
            ):
                if not -1 <= int(idx) < n:
                    raise ValueError(
                        f"malformed .tflite: subgraph {s} operator {o} refers to missing tensor {idx}"
                    )
        for idx in list(sg.inputs if sg.inputs is not None else []) + list(
            sg.outputs if sg.outputs is not None else []
        ):
            if not 0 <= int(idx) < n:
                raise ValueError(f"malformed .tflite: subgraph {s} input/output {idx} is not a tensor")
    return model


def write_model(model: "schema.ModelT") -> bytes:
    """Serialises a ``ModelT`` with every buffer's data 16-byte aligned."""
    model.buffers = [_as_aligned(b) for b in (model.buffers or [])]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _as_aligned(b: "schema.BufferT") -> _AlignedBufferT:
    if isinstance(b, _AlignedBufferT):
        return b
    out = _AlignedBufferT()
    out.__dict__.update(b.__dict__)
    return out


def buffer_bytes(model, index: int) -> bytes:
    """The data of buffer ``index`` (``b''`` when empty)."""
    if index <= 0 or index >= len(model.buffers or []):
        return b""
    data = model.buffers[index].data
    if data is None or len(data) == 0:
        return b""
    return np.asarray(data, dtype=np.uint8).tobytes()


def opcode_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == CUSTOM_CODE:
        name = code.customCode
        return (name.decode() if isinstance(name, bytes) else str(name)) if name else "CUSTOM"
    for k, v in vars(schema.BuiltinOperator).items():
        if v == builtin and not k.startswith("_"):
            return k
    return str(builtin)


def is_huffdecode_code(code) -> bool:
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = code.customCode
    if isinstance(name, str):
        name = name.encode()
    return builtin == CUSTOM_CODE and name == HUFFDECODE


def tensor_name(t) -> str:
    n = t.name
    if n is None:
        return ""
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
