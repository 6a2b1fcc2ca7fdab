"""The converter pass: constant tensors -> Huffman-packed buffers + ``HuffDecode`` ops, and back."""
from __future__ import annotations

import numpy as np

from dc_keras.export import _flatbuffer as fb
from dc_keras.export._flatbuffer import schema

DEFAULT_MIN_BYTES = 256
DEFAULT_MIN_SAVING = 0.1
PACKED_SUFFIX = "/dc_packed"
# Flatbuffer bytes a packed tensor adds besides its data (tensor + operator tables, vectors,
# alignment padding) plus its name: a tensor is packed only if it saves more than that.
_PER_TENSOR_OVERHEAD = 128


def _codec():
    from dc_keras import codec  # imported lazily: the codec module is optional until used

    return codec


def _tensor_array(model, t):
    """The constant data of tensor ``t`` as a numpy array, or None (no data / unsupported)."""
    raw = fb.buffer_bytes(model, t.buffer)
    if not raw:
        return None
    dtype = fb.NUMPY_DTYPES.get(t.type)
    if dtype is None:
        return None
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if any(d < 0 for d in shape):
        return None
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(raw):
        return None
    return np.frombuffer(raw, dtype).reshape(shape)


def _graph_facts(sg):
    consumers = {}  # tensor -> index of first consuming operator
    produced = set()
    for i, op in enumerate(sg.operators or []):
        for x in op.inputs if op.inputs is not None else []:
            x = int(x)
            if x >= 0 and x not in consumers:
                consumers[x] = i
        for x in op.outputs if op.outputs is not None else []:
            produced.add(int(x))
        for x in op.intermediates if op.intermediates is not None else []:
            produced.add(int(x))
    io = set(int(x) for x in (sg.inputs if sg.inputs is not None else [])) | set(
        int(x) for x in (sg.outputs if sg.outputs is not None else [])
    )
    return consumers, produced, io


def _with_loop_state(model, sg, facts):
    """Inputs of WHILE ops are loop state, not read-only constants (the loop writes its results
    into them, e.g. an LSTM's zero initial state or tensor-list accumulator): never packed, since a
    HuffDecode output there makes the WHILE fail at invoke. (Added by issue 14's export work.)"""
    consumers, produced, io = facts
    for op in sg.operators or []:
        if fb.opcode_name(model, op) == "WHILE":
            produced = produced | {int(x) for x in (op.inputs if op.inputs is not None else []) if int(x) >= 0}
    return consumers, produced, io


def _buffer_users(model):
    users = {}
    for s, sg in enumerate(model.subgraphs):
        for i, t in enumerate(sg.tensors or []):
            if t.buffer > 0:
                users.setdefault(t.buffer, []).append((s, i))
    for m in model.metadata or []:
        users.setdefault(m.buffer, []).append(("metadata", m.buffer))
    for b in model.metadataBuffer if model.metadataBuffer is not None else []:
        users.setdefault(int(b), []).append(("metadata", int(b)))
    return users


def _is_candidate(model, t, idx, consumers, produced, io):
    return (
        t.buffer > 0
        and idx in consumers
        and idx not in produced
        and idx not in io
        and not t.isVariable
        and t.sparsity is None
        and t.type in fb.NUMPY_DTYPES
    )


def _saves_enough(packed_bytes, raw_bytes, min_saving=DEFAULT_MIN_SAVING):
    """The ``min_saving`` rule, shared by pack and inspect: packed to at most (1 - min_saving) of raw."""
    return packed_bytes <= (1.0 - min_saving) * raw_bytes


def pack(tflite_bytes, min_bytes: int = DEFAULT_MIN_BYTES, verify: bool = True,
         min_saving: float = DEFAULT_MIN_SAVING, version: int = 2) -> bytes:
    """Replaces every constant tensor that packs smaller by a Huffman-packed buffer + ``HuffDecode`` op.

    Works on any ``.tflite`` (Keras 3 or tf_keras made, float, float16-weight or int8 quantized,
    several subgraphs). A constant tensor of at least ``min_bytes`` bytes whose packed form
    (``dc_keras.codec.encode``) is smaller becomes a uint8 1-D constant feeding a ``HuffDecode``
    custom op, inserted just before the tensor's first consumer; the op's output is the original
    tensor (same index, name, type, shape and quantization), whose buffer is emptied. Tensors the
    codec refuses (e.g. > 4096 distinct values: an unclustered float tensor), that do not save
    more than the added op and tensor cost, or that shrink by less than ``min_saving`` (decoding
    costs load time, so near-incompressible tensors stay raw) are left as they are, and so is everything else in the model. Buffer data in the
    output is 16-byte aligned.

    Run it with ``dc_keras.runtime.Interpreter`` (or any TFLite runtime given the library's op /
    delegate, see ``dc_keras.runtime``).

    Args:
      tflite_bytes: the ``.tflite`` model (bytes; never modified).
      min_bytes: smaller constant tensors are left alone (their packed header would not pay off).
      verify: decode every packed tensor again and compare it bit for bit with the original
        before accepting it (default True).
      min_saving: smallest accepted relative saving per tensor, 0 <= min_saving < 1 (default
        0.1: a tensor must pack to at most 90 % of its raw size).
      version: packed-tensor format version (docs/FORMAT.md §10): 2 (default) or 1 for apps
        that ship a decoder that reads version 1 only (tensors version 1 cannot express stay raw).

    Returns:
      The packed model's bytes; the input itself when nothing packs smaller.

    Raises:
      ValueError: the input is not a valid ``.tflite``, or it is already packed (it contains
        ``HuffDecode`` ops; ``unpack`` it first - packing twice is refused rather than silently
        stacking decoders).
      TypeError: ``tflite_bytes`` is not bytes-like.

    Example:
      >>> packed = dc_keras.export.pack(open("model.tflite", "rb").read())   # doctest: +SKIP
      >>> open("model.packed.tflite", "wb").write(packed)                    # doctest: +SKIP
    """
    if not isinstance(min_bytes, (int, np.integer)) or min_bytes < 0:
        raise ValueError(f"min_bytes must be a non-negative int, got {min_bytes!r}")
    if not isinstance(min_saving, (int, float)) or not 0 <= min_saving < 1:
        raise ValueError(f"min_saving must be a number in [0, 1), got {min_saving!r}")
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2 (docs/FORMAT.md §10), got {version!r}")
    model = fb.read_model(tflite_bytes)
    codes = model.operatorCodes or []
    if any(fb.is_huffdecode_code(c) for c in codes):
        raise ValueError("model is already packed (it contains HuffDecode ops); unpack it first")
    codec = _codec()
    users = _buffer_users(model)

    # 1. Decide per buffer: every tensor using it must be a candidate of the same dtype/shape.
    plans = {}  # (subgraph, tensor) -> packed bytes
    packed_cache = {}  # (buffer, dtype, shape) -> bytes or None
    eligible = {}
    facts = [_with_loop_state(model, sg, _graph_facts(sg)) for sg in model.subgraphs]
    for b, refs in users.items():
        ok = all(r[0] != "metadata" for r in refs)
        if ok:
            for s, i in refs:
                consumers, produced, io = facts[s]
                t = model.subgraphs[s].tensors[i]
                if not _is_candidate(model, t, i, consumers, produced, io):
                    ok = False
                    break
        eligible[b] = ok
    for s, sg in enumerate(model.subgraphs):
        for i, t in enumerate(sg.tensors or []):
            if t.buffer <= 0 or not eligible.get(t.buffer, False):
                continue
            arr = _tensor_array(model, t)
            if arr is None or arr.nbytes < max(min_bytes, 1):
                continue
            key = (t.buffer, arr.dtype.str, arr.shape)
            if key not in packed_cache:
                packed_cache[key] = _encode_checked(codec, arr, verify, version)
            data = packed_cache[key]
            overhead = _PER_TENSOR_OVERHEAD + len(fb.tensor_name(t)) + len(PACKED_SUFFIX)
            if data is not None and len(data) + overhead < arr.nbytes \
                    and _saves_enough(len(data), arr.nbytes, min_saving):
                plans[(s, i)] = data
    # A buffer is emptied only if all of its tensors are packed.
    for b, refs in users.items():
        if eligible.get(b) and not all((s, i) in plans for s, i in refs):
            for s, i in refs:
                plans.pop((s, i), None)
    if not plans:
        return bytes(tflite_bytes)

    # 2. Rewrite.
    code = schema.OperatorCodeT()
    code.deprecatedBuiltinCode = fb.CUSTOM_CODE
    code.builtinCode = fb.CUSTOM_CODE
    code.customCode = fb.HUFFDECODE.decode()
    code.version = 1
    model.operatorCodes = list(codes) + [code]
    hd_index = len(model.operatorCodes) - 1
    new_buffers = {}  # packed bytes -> buffer index (shared constants stay shared)
    emptied = set()
    for s, sg in enumerate(model.subgraphs):
        consumers = facts[s][0]
        inserts = {}
        tensors = list(sg.tensors or [])
        for i, t in enumerate(sg.tensors or []):
            data = plans.get((s, i))
            if data is None:
                continue
            if data not in new_buffers:
                buf = schema.BufferT()
                buf.data = np.frombuffer(data, np.uint8)
                model.buffers.append(buf)
                new_buffers[data] = len(model.buffers) - 1
            pt = schema.TensorT()
            pt.shape = [len(data)]
            pt.type = schema.TensorType.UINT8
            pt.buffer = new_buffers[data]
            pt.name = fb.tensor_name(t) + PACKED_SUFFIX
            tensors.append(pt)
            op = schema.OperatorT()
            op.opcodeIndex = hd_index
            op.inputs = [len(tensors) - 1]
            op.outputs = [i]
            inserts.setdefault(consumers[i], []).append(op)
            emptied.add(t.buffer)
        sg.tensors = tensors
        ops = []
        for j, op in enumerate(sg.operators or []):
            ops.extend(inserts.get(j, []))
            ops.append(op)
        sg.operators = ops
    for b in emptied:
        model.buffers[b].data = None
    out = fb.write_model(model)
    if len(out) >= len(tflite_bytes):
        return bytes(tflite_bytes)  # nothing worth packing after all
    return out


def _encode_checked(codec, arr, verify, version=2):
    try:
        data = codec.encode(arr, version=version)
    except ValueError:
        return None  # refused: too many distinct values, unsupported shape, ...
    if verify:
        back = np.asarray(codec.decode(data))
        if back.dtype != arr.dtype or back.shape != arr.shape or back.tobytes() != arr.tobytes():
            raise RuntimeError(
                "dc_keras.codec round trip is not bit-exact for a tensor of shape "
                f"{arr.shape} {arr.dtype}; refusing to write a wrong model (codec bug)"
            )
    return bytes(data)


def unpack(packed_bytes) -> bytes:
    """Turns a packed ``.tflite`` back into an ordinary one with identical tensor contents.

    Every ``HuffDecode`` op is decoded in Python (``dc_keras.codec.decode``) and removed, its
    output tensor gets its constant data back, and the packed tensors, buffers and the operator
    code disappear. A model without ``HuffDecode`` ops is returned unchanged.

    Raises:
      ValueError: not a valid ``.tflite``, or a ``HuffDecode`` op / packed buffer is malformed
        (the message names the tensor and the decoder's reason).

    Example:
      >>> plain = dc_keras.export.unpack(packed)   # doctest: +SKIP
    """
    model = fb.read_model(packed_bytes)
    codes = model.operatorCodes or []
    hd = {k for k, c in enumerate(codes) if fb.is_huffdecode_code(c)}
    if not hd:
        return bytes(packed_bytes)
    codec = _codec()
    removed_buffers = set()
    for s, sg in enumerate(model.subgraphs):
        tensors = sg.tensors or []
        keep_ops, drop_tensors = [], set()
        for o, op in enumerate(sg.operators or []):
            if op.opcodeIndex not in hd:
                keep_ops.append(op)
                continue
            ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
            outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
            where = f"subgraph {s} operator {o} (HuffDecode)"
            if len(ins) != 1 or len(outs) != 1 or ins[0] < 0 or outs[0] < 0:
                raise ValueError(f"{where}: expected one input and one output")
            p, t = tensors[ins[0]], tensors[outs[0]]
            name = fb.tensor_name(t)
            raw = fb.buffer_bytes(model, p.buffer)
            if p.type != schema.TensorType.UINT8 or not raw:
                raise ValueError(f"{where}: packed input of {name!r} is not a constant uint8 tensor")
            if p.shape is None or [int(d) for d in p.shape] != [len(raw)]:
                raise ValueError(f"{where}: packed input of {name!r} must be 1-D with one entry per byte")
            try:
                arr = np.asarray(codec.decode(raw))
            except ValueError as exc:
                raise ValueError(f"{where}: packed data of {name!r} is invalid: {exc}") from None
            want = fb.NUMPY_DTYPES.get(t.type)
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
            if want is None or arr.dtype.newbyteorder("<") != want or arr.shape != shape:
                raise ValueError(
                    f"{where}: packed data of {name!r} is {arr.dtype}{list(arr.shape)} but the tensor is "
                    f"{fb.TYPE_NAMES.get(t.type, t.type)}{list(shape)}"
                )
            data = np.ascontiguousarray(arr, dtype=want).tobytes()
            b = t.buffer
            if b > 0 and b < len(model.buffers) and b not in removed_buffers:
                existing = fb.buffer_bytes(model, b)
                if existing and existing != data:
                    b = 0  # shared with different content: give it a buffer of its own
            if b <= 0:
                model.buffers.append(schema.BufferT())
                b = len(model.buffers) - 1
                t.buffer = b
            model.buffers[b].data = np.frombuffer(data, np.uint8)
            drop_tensors.add(ins[0])
            removed_buffers.add(p.buffer)
        sg.operators = keep_ops
        _remove_tensors(model, s, drop_tensors)
    _remove_unused_buffers(model, removed_buffers)
    _remove_unused_codes(model, hd)
    return fb.write_model(model)


def _remove_tensors(model, s, drop):
    sg = model.subgraphs[s]
    used = set()
    for op in sg.operators or []:
        for v in (op.inputs, op.outputs, op.intermediates):
            used.update(int(x) for x in (v if v is not None else []))
    used.update(int(x) for x in (sg.inputs if sg.inputs is not None else []))
    used.update(int(x) for x in (sg.outputs if sg.outputs is not None else []))
    drop = {d for d in drop if d not in used}
    if not drop:
        return
    mapping, kept = {}, []
    for i, t in enumerate(sg.tensors):
        if i not in drop:
            mapping[i] = len(kept)
            kept.append(t)
    sg.tensors = kept

    def remap(v):
        return None if v is None else [mapping[int(x)] if int(x) >= 0 else int(x) for x in v]

    for op in sg.operators or []:
        op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == s:
            for tm in list(sig.inputs or []) + list(sig.outputs or []):
                tm.tensorIndex = mapping.get(tm.tensorIndex, tm.tensorIndex)


def _remove_unused_buffers(model, candidates):
    referenced = set()
    for sg in model.subgraphs:
        referenced.update(t.buffer for t in sg.tensors or [])
    referenced.update(m.buffer for m in model.metadata or [])
    referenced.update(int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else []))
    drop = {b for b in candidates if b > 0 and b not in referenced}
    if not drop:
        return
    mapping, kept = {}, []
    for i, b in enumerate(model.buffers):
        if i not in drop:
            mapping[i] = len(kept)
            kept.append(b)
    model.buffers = kept
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            t.buffer = mapping[t.buffer]
    for m in model.metadata or []:
        m.buffer = mapping[m.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [mapping[int(b)] for b in model.metadataBuffer]


def _remove_unused_codes(model, candidates):
    used = {op.opcodeIndex for sg in model.subgraphs for op in sg.operators or []}
    drop = {c for c in candidates if c not in used}
    if not drop:
        return
    mapping, kept = {}, []
    for i, c in enumerate(model.operatorCodes):
        if i not in drop:
            mapping[i] = len(kept)
            kept.append(c)
    model.operatorCodes = kept
    for sg in model.subgraphs:
        for op in sg.operators or []:
            op.opcodeIndex = mapping[op.opcodeIndex]
