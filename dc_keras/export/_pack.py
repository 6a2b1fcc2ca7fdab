"""The converter pass: constant tensors -> Huffman-packed buffers + ``HuffDecode`` ops, and back."""
from __future__ import annotations

import math
import numbers

import numpy as np

from dc_keras import _flatbuffer as fb
from dc_keras._flatbuffer import schema

DEFAULT_MIN_BYTES = 256
DEFAULT_MIN_SAVING = 0.1
# Name suffix of the packed uint8 tensors pack wrote before 2026-11-30 (FORMAT.md §15): such files
# still load and unpack; pack now writes its packed tensors nameless (names are for people and
# these tensors are the packer's own; the decoded tensor keeps its name). Find packed tensors
# through their HuffDecode op (``packed_tensors``), not by name.
PACKED_SUFFIX = "/dc_packed"
# Flatbuffer bytes a packed tensor adds besides its data (nameless uint8 tensor + its Buffer +
# the HuffDecode operator, vectors, 4-byte alignment; measured 63-68 B on the model zoo, see
# tests/test_export_pack.py): a tensor is packed only if it saves more than that.
_PER_TENSOR_OVERHEAD = 80
# What each further packed form of a buffer several tensors read (one per type and shape) adds
# besides its data and _PER_TENSOR_OVERHEAD: its length prefix (4 B) and up to 3 B of alignment
# (the first one's take the place of the raw buffer's; ``buffer_keep_reason``).
_PER_EXTRA_BUFFER = 7
#: pack and inspect draw a progress bar (stderr, on a terminal only) for models with this many
#: bytes of constants: packing a 2.4 GB model takes a minute or more, ~2 ms per tensor on wide models.
PROGRESS_MIN_BYTES = 16 << 20


def _codec():
    from dc_keras import codec  # imported lazily: the codec module is optional until used

    return codec


# TensorTypes the HuffDecode op outputs (tflite_kernels/src/huffdecode_op.c): the packed format's
# dtype codes are TensorType values; INT2 / UINT4 are in the format (§13) but TFLite 2.21 cannot
# size such tensors (GetSizeOfType), so the op refuses them and pack leaves them raw. The last six
# need format version 3 (§16): int64 biases of int16x8 models, index tables, bool masks.
_OP_TYPES = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.INT32,
             schema.TensorType.UINT8, schema.TensorType.INT16, schema.TensorType.INT8,
             schema.TensorType.INT4, schema.TensorType.BFLOAT16, schema.TensorType.INT64,
             schema.TensorType.BOOL, schema.TensorType.FLOAT64, schema.TensorType.UINT64,
             schema.TensorType.UINT32, schema.TensorType.UINT16}
PACK_VERSIONS = (None, 1, 2, 3, 4, 5)  # pack's ``version``: None = per tensor, the lowest that holds it (§10)
# pack's ``decoder``: the decoder build it writes for -> (layouts it reads, TensorTypes it does not
# read, what they are). DC_CODEC_MINIMAL (dc_codec.h) reads layouts 0/1 of the 1, 2 and 4 byte types,
# at every format version; it refuses the sub-byte (§13) and 8-byte (§16) types.
_DECODERS = {"minimal": (("dense", "sparse"), {
    **dict.fromkeys((schema.TensorType.INT4, schema.TensorType.INT2, schema.TensorType.UINT4),
                    "sub-byte (FORMAT.md §13)"),  # the codec's SUBBYTE_CODES (tests/test_pack_layouts.py)
    **dict.fromkeys((schema.TensorType.INT64, schema.TensorType.UINT64, schema.TensorType.FLOAT64),
                    "8-byte (FORMAT.md §16)")})}  # the codec's WIDE_CODES


def packable_type(tensor_type) -> bool:
    """True if ``pack`` can pack constants of this TFLite TensorType (format and op support it)."""
    return int(tensor_type) in _OP_TYPES


def _type_reason(tensor_type) -> str:
    name = fb.TYPE_NAMES.get(tensor_type, tensor_type)
    if tensor_type in (schema.TensorType.INT2, schema.TensorType.UINT4):
        return (f"{name}: in the packed format (FORMAT.md §13), but TFLite 2.21 cannot size {name} "
                "tensors (GetSizeOfType), so the HuffDecode op cannot output one")
    return f"{name}: no packed-format element type for it"


def _tensor_array(model, t):
    """The constant data of tensor ``t`` as a numpy array, or None (no data / unsupported).

    Sub-byte tensors (int4, uint4, int2), stored two or four per byte, come back one element per
    numpy item (``ml_dtypes`` types), as ``dc_keras.codec.encode`` takes them.
    """
    raw = fb.buffer_view(model, t.buffer)
    if not raw or not packable_type(t.type):
        return None
    from dc_keras.codec import _format, unpack_subbyte

    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if any(d < 0 for d in shape):
        return None
    n = int(np.prod(shape, dtype=np.int64))
    if _format.output_bytes(int(t.type), n) != len(raw):
        return None
    if int(t.type) in _format.SUBBYTE_CODES:
        return unpack_subbyte(raw, shape, int(t.type))
    dtype = _format.code_dtype(int(t.type))
    if dtype is None:
        return None
    return np.frombuffer(raw, dtype.newbyteorder("<")).reshape(shape)


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


def _quantization_refs(sg):
    """``{tensor: (index, name of the tensor whose quantization names it, field)}``: the tensors that
    another tensor's ``QuantizationParameters.details`` refer to by index, i.e. the ``scales`` /
    ``zero_points`` of a ``BlockwiseQuantization`` (LiteRT's blockwise INT4 weights, as
    ai-edge-quantizer and litert-torch write them). The kernel reads them through that weight's
    quantization when it is prepared, not as an operator input, so no operator lists them (pack
    said "no operator reads it"); a packed one would reach the kernel empty: they stay raw."""
    refs = {}
    blockwise = getattr(schema.QuantizationDetails, "BlockwiseQuantization", None)
    for i, t in enumerate(sg.tensors or []):
        q = t.quantization
        if blockwise is None or q is None or q.details is None or q.detailsType != blockwise:
            continue
        for field, attr in (("scales", "scales"), ("zero_points", "zeroPoints")):
            x = getattr(q.details, attr, -1)
            if x is not None and int(x) >= 0:
                refs.setdefault(int(x), (i, fb.tensor_name(t), field))
    return refs


def _subgraph_facts(sg):
    """(consumers, produced, graph io, quantization references) of a subgraph. A constant input of a
    WHILE op (an LSTM/GRU's zero initial state, a tensor-list accumulator) is packed like any constant:
    the WHILE kernels copy their inputs into the loop and never write them (TFLite, LiteRT, TFLM; packed
    runs bit-exact on every route, tests/test_export_rnn.py and test_micro.py). Until 2026-12-05 they
    were refused ("loop state of a WHILE op"), after a failure at invoke no runtime here reproduces."""
    return (*_graph_facts(sg), _quantization_refs(sg))


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


def unreferenced_buffers(model, users=None):
    """``(buffers, bytes)``: the buffers holding data that no tensor and no metadata entry refers to
    (dead data a tool left in the file). No runtime reads them; ``pack`` and ``unpack`` keep them as
    they are, and ``pack``'s warning, the CLI and ``inspect`` say so."""
    users = _buffer_users(model) if users is None else users
    sizes = [fb.buffer_size(model, b) for b in range(1, len(model.buffers or [])) if b not in users]
    sizes = [n for n in sizes if n]
    return len(sizes), sum(sizes)


def unreferenced_note(count, nbytes):
    """One line on ``unreferenced_buffers``' result."""
    return (f"{count} buffer(s), {nbytes} B, that no tensor or metadata refers to: kept as they are "
            "(no runtime reads them; the tool that wrote the file left them there)")


def size_mismatch(model, t):
    """Why the data of constant ``t``, of a type pack packs, is not the dtype and shape the tensor
    declares (its buffer is larger: TFLite runs such a file, e.g. a tensor reading the first bytes
    of another's buffer; a smaller one is refused first, by ``check_constant_sizes``), or None: such
    a tensor cannot be packed (``_tensor_array`` reads nothing), nor can the others sharing its
    buffer."""
    nbytes = fb.buffer_size(model, t.buffer) if t.buffer > 0 else 0
    if not nbytes or not packable_type(t.type):
        return None
    from dc_keras.codec import _format

    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if all(d >= 0 for d in shape) and _format.output_bytes(int(t.type), int(np.prod(shape, dtype=np.int64))) == nbytes:
        return None
    return f"buffer holds {nbytes} B, not the {fb.TYPE_NAMES.get(t.type, str(t.type))}{shape} the tensor declares"


def padding_bits(model, t):
    """Why sub-byte constant ``t`` (int4, uint4, int2: two or four elements a byte, FORMAT.md §13),
    whose last byte holds fewer elements than it could, cannot be packed bit-exactly: its unused
    high bits are not zero (the decoder writes them zero), or None. No kernel reads those bits, but
    packing must give back the buffer byte for byte (``verify`` raised "codec bug" on such a file;
    without it, ``unpack`` gave other bytes)."""
    from dc_keras.codec import _format

    code = int(t.type)
    nbytes = fb.buffer_size(model, t.buffer) if t.buffer > 0 else 0
    if code not in _format.SUBBYTE_CODES or not nbytes:
        return None
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    n = int(np.prod(shape, dtype=np.int64)) if all(d >= 0 for d in shape) else -1
    used = n * _format.dtype_bits(code) % 8
    if n < 0 or not used or _format.output_bytes(code, n) != nbytes:
        return None
    last = fb.buffer_view(model, t.buffer)[-1]
    if not last >> used:
        return None
    return (f"the unused high {8 - used} bits of its last byte are not zero (0x{last:02x}), and a packed "
            f"{fb.TYPE_NAMES.get(t.type, str(t.type))} tensor decodes them as zero (FORMAT.md §13): it stays raw "
            "to stay bit-exact")


# Bits per element TFLite sizes a constant's buffer by (BytesRequired) besides the codec's types
# (``_format.DTYPE_TABLE``); STRING, RESOURCE and VARIANT buffers have no size to check.
_OTHER_TYPE_BITS = {schema.TensorType.COMPLEX64: 64, schema.TensorType.COMPLEX128: 128}


def short_constant(model):
    """``(subgraph, tensor index, tensor, buffer bytes, declared bytes)`` of the first constant whose
    buffer holds fewer bytes than its dtype and shape need, or None. TFLite refuses such a file when
    it loads it ("required_bytes <= bytes was not true. Tensor N is invalidly specified in
    schema"): a dense constant of a fixed-size type must hold at least its shape's bytes (a larger
    buffer loads: a tensor may read the first bytes of another's). Sparse tensors, dynamic shapes
    and STRING / RESOURCE / VARIANT tensors are not sized (TFLite does not check them either)."""
    from dc_keras.codec import _format

    for s, sg in enumerate(model.subgraphs or []):
        for i, t in enumerate(sg.tensors or []):
            if t.buffer <= 0 or t.sparsity is not None:
                continue
            code = int(t.type)
            bits = _format.DTYPE_TABLE[code][1] if code in _format.DTYPE_TABLE else _OTHER_TYPE_BITS.get(code)
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            if bits is None or any(d < 0 for d in shape):
                continue
            nbytes = fb.buffer_size(model, t.buffer)
            need = (int(np.prod(shape, dtype=object)) * bits + 7) // 8
            if 0 < nbytes < need:  # an empty buffer: not a constant (an activation), as TFLite reads it
                return s, i, t, nbytes, need
    return None


def check_constant_sizes(model):
    """``ValueError`` naming the first constant whose buffer is shorter than its declared dtype and
    shape (``short_constant``): the TFLite interpreter refuses such a file, so pack, unpack and
    inspect refuse it too, rather than pass it on as if it were a model."""
    short = short_constant(model)
    if short is None:
        return
    s, i, t, nbytes, need = short
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    name = fb.printable(fb.tensor_name(t))
    which = f"{i} {name!r} (subgraph {s})" if name else f"{i} (unnamed, subgraph {s})"
    raise ValueError(f"malformed .tflite: constant tensor {which} declares "
                     f"{fb.TYPE_NAMES.get(t.type, str(t.type))}{shape} ({need} B) but its buffer {t.buffer} holds only "
                     f"{nbytes} B, so the TFLite interpreter refuses this file (\"Tensor {i} is invalidly specified "
                     "in schema\"): export the model again, or fix the tool that wrote the file")


def skip_reason(t, idx, facts, users, planned=None, model=None):
    """Why constant tensor ``idx`` (``t``) of a subgraph cannot be packed, or None if it can be.

    ``facts`` is ``_subgraph_facts`` of its subgraph, ``users`` is ``_buffer_users(model)``,
    ``planned`` is ``_planned_constants`` of the model's TFLM offline memory plans; with ``model``
    also a buffer whose size is not the declared dtype and shape's (``size_mismatch``) or a
    sub-byte one whose unused bits are set (``padding_bits``). The reasons
    are what ``inspect`` prints in its ``reason`` column. One policy reports them all: such a
    constant of at least ``min_bytes`` is named with its reason in ``pack``'s and ``to_tflite``'s
    warning and ``dc-keras pack``'s "not packed" lines (each reason is the file's structure or an
    option the user can change); the constants that pack but not smaller enough are "kept raw"
    (``keep_reason``: the CLI names them always, the warning from a tenth of the output); ``inspect``
    gives every tensor's reason. A structure every export of a layer type has is not refused: a
    WHILE op's constant inputs (an LSTM/GRU's initial state) pack like any constant.
    """
    consumers, produced, io, quant_refs = facts
    if t.sparsity is not None:
        return ("TFLite-sparse tensor read by an operator's own sparse kernel (not through DENSIFY): "
                "a decoded dense tensor would change the kernel, so it stays as stored")
    if not packable_type(t.type):
        return _type_reason(t.type)
    if t.isVariable:
        return "variable tensor (written at run time)"
    if idx in io:
        return "graph input/output"
    if idx in produced:
        return "written by an operator (not a constant)"
    if idx in quant_refs:
        owner, name, field = quant_refs[idx]
        owner = f"{owner} {fb.printable(name)!r}" if name else f"{owner}"
        return (f"the blockwise quantization {field} of tensor {owner}: the kernel reads it through that "
                "weight's quantization parameters, not as an operator input, so it stays raw")
    if idx not in consumers:
        return "no operator reads it"
    if any(r[0] == "metadata" for r in users.get(t.buffer, [])):
        return "buffer shared with metadata"
    if planned and id(t) in planned:
        return (f"TFLite Micro's offline memory plan (metadata {OFFLINE_PLAN!r}) gives it arena offset "
                f"{planned[id(t)]}: TFLM ignores that for a constant, but a packed weight decoded every "
                "invoke would be written there over other tensors; set its entry to -1 to pack it")
    return (size_mismatch(model, t) or padding_bits(model, t)) if model is not None else None


def shared_buffer_reason(model, s, i, facts, users, planned=None):
    """Why constant tensor ``i`` of subgraph ``s``, packable itself (``skip_reason`` None), stays
    raw because another tensor sharing its buffer cannot be packed (a buffer is emptied only when
    all of its tensors are packed), or None. ``facts``: ``_subgraph_facts`` of every subgraph."""
    t = model.subgraphs[s].tensors[i]
    for r in users.get(t.buffer, []):
        if r[0] == "metadata" or r == (s, i):
            continue
        other = model.subgraphs[r[0]].tensors[r[1]]
        why = skip_reason(other, r[1], facts[r[0]], users, planned, model)
        if why is not None:
            return (f"shares its buffer with tensor {fb.tensor_name(other) or r[1]!r} (subgraph {r[0]}), which "
                    f"cannot be packed ({why}): the data stays raw, stored once for both")
    return None


def packed_tensors(model):
    """``[(subgraph, packed tensor, decoded tensor)]``: the input and output index of every
    ``HuffDecode`` op of ``model`` (a ``ModelT``). The way to find packed tensors: ``pack`` writes
    them nameless (FORMAT.md §15), older files named them ``<name>/dc_packed``."""
    hd = {k for k, c in enumerate(model.operatorCodes or []) if fb.is_huffdecode_code(c)}
    return [(s, int(op.inputs[0]), int(op.outputs[0])) for s, sg in enumerate(model.subgraphs)
            for op in sg.operators or [] if op.opcodeIndex in hd
            and op.inputs is not None and len(op.inputs) == 1 and op.outputs is not None and len(op.outputs) == 1]


def _saves_enough(packed_bytes, raw_bytes, min_saving=DEFAULT_MIN_SAVING):
    """The ``min_saving`` rule, shared by pack and inspect: packed to at most (1 - min_saving) of raw."""
    return packed_bytes <= (1.0 - min_saving) * raw_bytes


def keep_reason(packed_bytes, raw_bytes, min_saving=DEFAULT_MIN_SAVING, at_least=False):
    """Why a constant of ``raw_bytes`` that packs to ``packed_bytes`` (``at_least``: to that many
    bytes or more, a lower bound: ``codec.MaxBytesError``) is kept raw, or None when ``pack`` packs
    it: it must save more than the op and tensor a packed tensor adds, and ``min_saving``. Shared
    by pack and inspect (its "kept" rows). A bound below raw says only that the encoding stopped
    at ``max_packed_bytes``: the full size, maybe over raw, is unknown, so no one rule is named."""
    if at_least and packed_bytes < raw_bytes:
        return (f"does not pack below {packed_bytes} B ({packed_bytes / raw_bytes:.0%} of its {raw_bytes} B raw), "
                f"over pack's cap of {max_packed_bytes(raw_bytes, min_saving)} B for it (the tighter of min_saving "
                "and the HuffDecode op's cost): encoding stopped there, so its full packed size, possibly over "
                "raw, is not known")
    packs = f"{'does not pack below' if at_least else 'packs to'} {packed_bytes} B"
    if packed_bytes >= raw_bytes:  # the op's cost is beside the point then
        return f"{packs}, no smaller than its {raw_bytes} B raw (data the packed format cannot shrink)"
    if packed_bytes + _PER_TENSOR_OVERHEAD >= raw_bytes:
        return (f"{packs}, but a packed tensor adds up to {_PER_TENSOR_OVERHEAD} B of HuffDecode op "
                f"and tensor: no saving on {raw_bytes} B")
    if not _saves_enough(packed_bytes, raw_bytes, min_saving):
        return f"{packs} = {packed_bytes / raw_bytes:.0%} of raw (min_saving)"
    return None


def buffer_keep_reason(raw_bytes, packed_sizes, tensors, min_saving=DEFAULT_MIN_SAVING):
    """Why a constant buffer of ``raw_bytes`` read by ``tensors`` tensors (several: an LSTM's zero
    loop state read as [1,64] and [1,1,64], a weight every signature's subgraph reads), each of which
    packs (``keep_reason`` None), is kept raw all the same, or None when ``pack`` packs them all.
    ``packed_sizes``: the sizes of their distinct packed forms (one per type and shape; equal bytes
    are stored once). Each packed tensor needs its own ``HuffDecode`` op and packed tensor (a decoded
    output belongs to one subgraph and has one shape), so the saving, counted once, must exceed the
    packed data plus ``tensors`` times what a packed tensor adds, and each packed form after the
    first its buffer's length prefix and alignment. Shared by pack and inspect."""
    data = sum(packed_sizes)
    extra = (len(packed_sizes) - 1) * _PER_EXTRA_BUFFER
    cost = data + extra + tensors * _PER_TENSOR_OVERHEAD
    sizes = " + ".join(f"{n} B" for n in packed_sizes)
    if cost >= raw_bytes:
        more = (f" + {extra} B (length prefix, alignment) for {len(packed_sizes) - 1} more packed buffer(s)"
                if extra else "")
        return (f"read by {tensors} tensors, each of which packed needs its own HuffDecode op: packed to "
                f"{sizes}{more} + up to {tensors} x {_PER_TENSOR_OVERHEAD} B of ops and tensors = {cost} B, "
                f"no saving on the {raw_bytes} B buffer they share")
    if not _saves_enough(data, raw_bytes, min_saving):
        return (f"read by {tensors} tensors, packed to {sizes} = {data / raw_bytes:.0%} of the {raw_bytes} B "
                "buffer they share (min_saving)")
    return None


def max_packed_bytes(raw_bytes, min_saving=DEFAULT_MIN_SAVING):
    """The largest packed size ``keep_reason`` lets ``pack`` use for a constant of ``raw_bytes``
    (negative: none): the ``max_bytes`` pack gives ``codec.encode``, so that the layouts of a tensor
    that would be kept raw (unclustered int32 / int16, random int8) are not made. Shared by pack and
    inspect."""
    return min(math.floor((1.0 - min_saving) * raw_bytes), raw_bytes - _PER_TENSOR_OVERHEAD - 1)


def check_min_bytes(min_bytes):
    """``pack``'s and ``inspect``'s ``min_bytes``: an int >= 0 (a bool is refused, not read as 0 / 1)."""
    if isinstance(min_bytes, bool) or not isinstance(min_bytes, numbers.Integral) or min_bytes < 0:
        raise ValueError(f"min_bytes must be a non-negative int, got {min_bytes!r}")


def _check_args(min_bytes, min_saving, buffers):
    check_min_bytes(min_bytes)
    if (isinstance(min_saving, bool) or not isinstance(min_saving, numbers.Real)
            or not 0 <= min_saving < 1):
        hint = ""  # notebook 02's min_saving=0.0 changed to 10 (a percent) or 1
        if isinstance(min_saving, numbers.Real) and not isinstance(min_saving, bool):
            if min_saving == 1:
                hint = " (1 would ask every tensor to shrink to nothing; the default is 0.1)"
            elif 1 < min_saving <= 100:
                hint = f" (the fraction of a tensor's bytes packing must save: {min_saving / 100:g} for {min_saving:g} %)"
        raise ValueError(f"min_saving must be a number in [0, 1){hint}, got {min_saving!r}")
    if buffers not in fb.BUFFER_LOCATIONS:
        raise ValueError(f"buffers must be one of {fb.BUFFER_LOCATIONS}, got {buffers!r}")


def check_options(min_bytes=DEFAULT_MIN_BYTES, verify=True, min_saving=DEFAULT_MIN_SAVING, version=None, *,
                  strip_strings=False, buffers="auto", context_model=False, compact=None, positive_zeros=False,
                  layouts=None, decoder=None):
    """``pack``'s options checked before any work: a ValueError naming the first bad one and its valid
    values. Returns ``layouts`` as ``codec.encode`` takes them (``_decoder_layouts``). Shared by pack
    and ``to_tflite(pack_options=)``, which checks them before converting."""
    _check_args(min_bytes, min_saving, buffers)
    for name, value in (("verify", verify), ("strip_strings", strip_strings), ("context_model", context_model),
                        ("positive_zeros", positive_zeros)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if compact is not None and not isinstance(compact, bool):
        raise ValueError(f"compact must be None (default: on when the model is rewritten), True or False, "
                         f"got {compact!r}")
    if version not in PACK_VERSIONS or (version is not None and (isinstance(version, bool)
                                                                 or not isinstance(version, numbers.Integral))):
        listed = [str(v) for v in PACK_VERSIONS if v is not None]
        raise ValueError(f"version must be None (per tensor, the lowest that holds it), {', '.join(listed[:-1])} "
                         f"or {listed[-1]} "
                         f"(docs/FORMAT.md §10), got {version!r}")
    choose = _decoder_layouts(decoder, layouts, context_model)
    newer = layouts_too_new(version, layouts)
    if newer:
        named = ", ".join(map(repr, newer))
        raise ValueError(f"layouts={layouts!r} names {named}, which version={version} does not have "
                         f"({_needs_text(newer, 'format version')}, docs/FORMAT.md §10): pass "
                         f"version={max(newer.values())} or None (per tensor, the lowest that holds it), "
                         f"or leave {named} out of layouts")
    return choose


def layouts_too_new(version, layouts) -> dict:
    """{name: the first format version that has it} of the layouts in ``layouts`` (valid names)
    that packed format ``version`` does not have (FORMAT.md §10), sorted by name: pack's check and
    the CLI's (which words it in flags, before reading the input)."""
    if version is None or layouts is None:
        return {}
    from dc_keras.codec._format import LAYOUT_CODES, LAYOUT_SINCE

    since = {name: LAYOUT_SINCE[LAYOUT_CODES[name]] for name in sorted(set(layouts))}
    return {name: v for name, v in since.items() if v > version}


def _needs_text(newer, version_word) -> str:
    """``layouts_too_new``'s result in words: "float_planes needs VERSION_WORD >= 2, ..."."""
    return ", ".join(f"{name} needs {version_word} >= {v}" for name, v in newer.items())


def pack(tflite_bytes, min_bytes: int = DEFAULT_MIN_BYTES, verify: bool = True,
         min_saving: float = DEFAULT_MIN_SAVING, version: int | None = None, *, strip_strings: bool = False,
         buffers: str = "auto", context_model: bool = False, compact=None,
         positive_zeros: bool = False, layouts=None, decoder: str | None = None) -> bytes:
    """Replaces every constant tensor that packs smaller by a Huffman-packed buffer + ``HuffDecode`` op.

    Works on any ``.tflite`` (Keras 3 or tf_keras made, float, float16-weight or int8 quantized,
    several subgraphs, buffers inside or after the flatbuffer as ai-edge-quantizer writes them).
    A constant tensor of at least ``min_bytes`` bytes whose packed form (``dc_keras.codec.encode``)
    is smaller becomes a uint8 1-D constant feeding a ``HuffDecode`` custom op, inserted just
    before the tensor's first consumer; the op's output is the original tensor (same index, name,
    type, shape and quantization), whose buffer is emptied. Tensors the codec refuses, that do not
    save more than the added op and tensor cost (a buffer several tensors read: its saving once,
    against the ops and tensors of all of them), or that shrink by less than ``min_saving``
    (decoding costs load time) are left as they are, and so is everything else in the model
    (``inspect`` says why per tensor). In the output, the data of every buffer left raw is 16-byte
    aligned, and a packed tensor's data 4-byte aligned (inline; 16-byte with ``buffers="external"``):
    only the decoder reads it, at any offset (docs/FORMAT.md §1, §15). A zip
    appended after the model (TFLite metadata's associated files: the labels MediaPipe Tasks and
    the TFLite Task Library read, vocabularies) is written after the packed model with the same
    members, byte for byte, its offsets counted from the new file's start (docs/FORMAT.md §15);
    a zip whose archive cannot be moved is reported by a warning (its bytes are not written).
    Other bytes after the model (not part of it, not such a zip: a signature, a file appended by
    mistake, an archive cut short) are written unchanged after the packed model, before the zip
    (TFLite ignores them; ``pack_with_stats`` counts them, the CLI and ``inspect`` name them).

    Run it with ``dc_keras.runtime.Interpreter`` (or any TFLite runtime given the library's op /
    delegate, see ``dc_keras.runtime``).

    Args:
      tflite_bytes: the ``.tflite`` model (bytes; never modified).
      min_bytes: smaller constant tensors are left alone (their packed header would not pay off).
      verify: decode every packed tensor again and compare it bit for bit with the original
        before accepting it (default True).
      min_saving: smallest accepted relative saving per tensor, 0 <= min_saving < 1 (default
        0.1: a tensor must pack to at most 90 % of its raw size).
      version: packed-tensor format version (docs/FORMAT.md §10). Default None: per tensor the
        lowest that holds it, i.e. 2, or 3 for the int64, uint64, float64, uint32, uint16 and bool
        tensors (§16), or 4 for a tensor the integer-planes layout (§17: unclustered int16 to
        int64, e.g. the int32 biases of per-channel int8 models) packs smaller than the others,
        or 5 for a tensor the sparse float planes layout (§18: pruned but unclustered float
        weights, e.g. tfmot's pruning without clustering) packs smaller than the others, so a
        decoder that reads version 2 only still reads every other tensor. 4, 3, 2 or 1 for apps
        that ship a decoder that reads only up to that version (tensors it cannot express stay
        raw, with the reason; 3 and lower never use §17, 4 and lower never §18); 3, 4 or 5 write
        that version for every tensor.
      context_model: also try the context-modelled sparse layout (FORMAT.md §14): a few percent
        smaller on pruned kernels whose neighbouring weights share a sign, but ~0.8x the decode
        speed of the plain sparse layout, so off by default.
      layouts: ``None`` (default: every layout), or the names of the layouts (FORMAT.md §5-§18,
        as ``dc_keras.codec.encode(layouts=...)`` takes them) each tensor may use, for a decoder
        built without the others (docs/microcontrollers.md): e.g. ``("dense", "sparse",
        "float_planes")`` for ``DC_CODEC_NO_GROUPED``. A tensor none of them holds stays raw,
        with the codec's reason.
      decoder: ``None`` (default: a decoder with every feature), or ``"minimal"`` for one built
        with ``DC_CODEC_MINIMAL``: ``layouts`` defaults to ``("dense", "sparse")`` (it may name a
        subset of them), and the int4, int64, uint64 and float64 tensors, which that build does
        not read, stay raw with that reason. Every format version is read by it. It does not read
        the context-modelled layout, so ``context_model=True`` with it is refused (ValueError).
      strip_strings: drop the tensor names, subgraph names and model description (signature
        keys and signature input/output names stay, so ``get_signature_runner`` keeps working;
        ``get_input_details()`` then shows empty names; errors, ``compressed_report()`` and
        ``dc-keras inspect`` name such a tensor "(unnamed tensor N)", N its index). Default False.
      compact: also drop flatbuffer tables no runtime reads: empty ``QuantizationParameters``
        (float tensors) and the empty buffer the converter gives every activation tensor (they
        then share buffer 0, the schema's empty buffer; variable tensors, decoded tensors and
        metadata keep theirs). The runtimes read both forms the same way (no quantization; an
        arena tensor), so outputs are unchanged; on a 68 K-parameter transformer it saves ~2.1 KB
        (5 %). Default None: on whenever the model is rewritten (something packs, or strings are
        stripped / buffers moved); ``True`` also rewrites a model with nothing to pack, ``False``
        keeps every table (the output of ``pack`` before this default).
      buffers: where buffer data goes: ``"auto"`` (the input's convention; inline when the data
        is under 256 KiB, as ai-edge-quantizer does), ``"inline"`` or ``"external"`` (after the
        flatbuffer, ``Buffer.offset``/``size``).
      positive_zeros: make every -0.0 of a float weight read only as the weights of
        FULLY_CONNECTED, convolutions, BATCH_MATMUL or UNIDIRECTIONAL_SEQUENCE_LSTM (a tf_keras
        LSTM's fused op), or as the table of a GATHER or EMBEDDING_LOOKUP (directly, or through a DEQUANTIZE read only
        so: the float16 weights of a float16 export) +0.0 before packing. Default False: packing
        is bit-exact, so a weight holding both zeros (tfmot's ``strip_pruning`` leaves -0.0 where a
        pruned weight was negative: about half its zeros) codes each -0.0 apart from +0.0: as an
        entry like a kept weight in a clustered tensor (e.g. 1.15x-1.7x the bytes), about one bit
        each in an unclustered one (FORMAT.md §18: 1.33x the bytes of tfmot's 90 %-pruned MLP,
        docs/packing.md); dc_keras's own ``strip`` writes +0.0 only. With True, outputs can
        differ from the input model's only in the sign of an output that is exactly zero.

    Returns:
      The packed model's bytes; the input itself when nothing packs smaller (and no strings are
      stripped / buffers moved).

    Warns:
      UserWarning: one naming the constant tensors of at least ``min_bytes`` it cannot pack and
        why (a string or complex tensor; over 4096 distinct values: not clustered; with
        ``version=2`` or ``1``, a type that version cannot hold), one naming the constants kept
        raw because they pack by less than ``min_saving`` when they are at least a tenth of the
        output (weights neither pruned nor clustered: the reason a file shrank little), one when
        weights hold both -0.0 and +0.0 and ``positive_zeros`` is False, and one when a zip after
        the input's model cannot be kept (naming the bytes dropped).

    Raises:
      ValueError: the input is not a valid ``.tflite``, or it is already packed (it contains
        ``HuffDecode`` ops; ``unpack`` it first - packing twice is refused rather than silently
        stacking decoders), or it holds data the TFLite schema read here has no field for (a
        field or an options table a newer converter's schema added: rewriting the model would
        drop it; the error names it and says to update ai-edge-litert; ``unpack`` refuses it too).
        Also when its TFLite Micro offline memory plan (metadata ``OfflineMemoryAllocation``, one
        arena offset per tensor), which pack rewrites for the tensors it adds (-1: planned at run
        time; ``unpack`` gives the plan back byte for byte), does not describe the model's tensors
        or, with several subgraphs, gives offsets (the error names the fix). A constant the plan
        gives an offset is left unpacked (the reason in the warning).
      TypeError: ``tflite_bytes`` is not bytes-like.

    Example:
      >>> packed = dc_keras.export.pack(open("model.tflite", "rb").read())
      >>> small = dc_keras.export.pack(data, strip_strings=True)
      >>> tables = dc_keras.export.pack(data, compact=False)   # keeps empty tables
      >>> mcu = dc_keras.export.pack(data, decoder="minimal")  # for a DC_CODEC_MINIMAL decoder
      >>> no_grouped = dc_keras.export.pack(data, layouts=("dense", "sparse", "float_planes"))
    """
    out, stats = pack_with_stats(tflite_bytes, min_bytes, verify, min_saving, version, strip_strings=strip_strings,
                                 buffers=buffers, context_model=context_model, compact=compact,
                                 positive_zeros=positive_zeros, layouts=layouts, decoder=decoder)
    warn_notes(stats, len(out), "positive_zeros=True", "pack")
    return out


def warn_notes(stats, out_bytes, positive_zeros_how, who):
    """``pack``'s warnings, from its ``stats``, at the line that called ``who``: the input's zip
    that could not be kept, the constant tensors left unpacked, the constants kept raw when they
    are at least a tenth of the ``out_bytes`` output, weights holding both zeros
    (``positive_zeros_how``: how the caller asks for +0.0)."""
    import warnings

    _warn_dropped(stats["dropped_zip"], stacklevel=4)
    if stats["refused"]:
        warnings.warn(f"{who}: {refused_note(stats['refused'], stats['refused_bytes'])}; dc_keras.export.inspect(data) lists every tensor",
                      UserWarning, stacklevel=3)
    kept_raw = kept_raw_note(stats["kept_raw"], out_bytes, "dc_keras.export.inspect(data)",
                             kinds=stats["kept_raw_kinds"])
    if kept_raw:
        warnings.warn(f"{who}: {kept_raw}", UserWarning, stacklevel=3)
    if stats["unreferenced"][0]:
        warnings.warn(f"{who}: {unreferenced_note(*stats['unreferenced'])}", UserWarning, stacklevel=3)
    if stats["unassigned_variables"]:
        warnings.warn(f"{who}: {fb.unassigned_variables_note(stats['unassigned_variables'])}", UserWarning, stacklevel=3)
    kept, kept_n = stats["negative_zeros"]
    if kept:
        warnings.warn(f"{who}: {negative_zeros_note(kept, kept_n, positive_zeros_how)}", UserWarning, stacklevel=3)


#: why ``pack`` kept a constant raw (``stats["kept_raw_kinds"]``), as ``kept_raw_note`` says it
KEPT_RAW_HINTS = {
    "weights": "packing saves less than min_saving or the HuffDecode op it would add (typically weights "
               "neither pruned nor clustered)",
    "shared": "one buffer read by several tensors (a recurrent layer's zero loop state, a weight every "
              "signature reads) whose saving, counted once, does not cover the HuffDecode op each reader "
              "would need",
    "sparse": "TFLite-sparse (Optimize.EXPERIMENTAL_SPARSITY), whose packed dense form is not smaller enough "
              "than its stored values and index arrays",
    "file": "they pack, but the packed file came out no smaller than the input",
    "restricted": "the layouts allowed by --decoder, --layouts or --format-version (decoder=, layouts=, version=) "
                  "pack them by too little; the defaults pack them smaller",
}


def kept_raw_note(kept, out_bytes, inspect_how, shown=3, kinds=None):
    """One line on the constants ``pack`` kept raw (``stats["kept_raw"]``), or None when there are
    none or, for a warning (``out_bytes``: the output's size), when they are less than a tenth of the
    output (e.g. unclustered int8 weights: ~256 distinct values each, a few percent smaller at best):
    the reason a file shrank little. ``out_bytes`` None: whenever any is kept (``dc-keras pack``'s
    report lists every tensor it left, as it lists those it cannot pack); ``inspect_how``: how the
    caller lists every tensor's reason; ``kinds``: ``stats["kept_raw_kinds"]`` (why each was kept,
    keys of ``KEPT_RAW_HINTS``; None: all ``"weights"``), said once per kind present."""
    total = sum(nbytes for _, nbytes in kept)
    if not kept or out_bytes is not None and total * 10 < out_bytes:
        return None
    largest = sorted(kept, key=lambda k: -k[1])[:shown]
    listed = ", ".join(f"{fb.printable(name) or '(unnamed)'} ({nbytes} B)" for name, nbytes in largest)
    more = f" and {len(kept) - shown} more" if len(kept) > shown else ""
    present = set(kinds or ()) or {"weights"}
    why = "; ".join(hint for kind, hint in KEPT_RAW_HINTS.items() if kind in present)
    return (f"kept raw: {len(kept)} constant tensor(s), {total} B, {why}: {listed}{more}; "
            f"{inspect_how} gives each tensor's packed size and reason at the default options")


def refused_note(refused, total, shown=3):
    """One line on the constant tensors ``pack`` could not pack (``stats["refused"]``); ``total``:
    their bytes with a buffer several of them read counted once (``stats["refused_bytes"]``)."""
    listed = "; ".join(f"{fb.printable(name) or '(unnamed)'} ({nbytes} B): {fb.printable(why)}"
                       for name, nbytes, why in refused[:shown])
    more = f"; and {len(refused) - shown} more" if len(refused) > shown else ""
    return f"{len(refused)} constant tensor(s), {total} B, not packed: {listed}{more}"


class _Refused(list):
    """``stats["refused"]``: (name, bytes, reason) per tensor, and ``buffers``: bytes per buffer
    index, so that a buffer two refused tensors read counts once in the totals; ``kept``: {buffer
    (or a TFLite-sparse tensor's key): (name, bytes)} of the constants that pack, but by less than
    ``min_saving`` or the added op's cost (kept raw: ``stats["kept_raw"]``); ``kinds``: {that key:
    why, a key of ``KEPT_RAW_HINTS``} (``stats["kept_raw_kinds"]``); ``skipped``: {buffer (or that
    key): (name, bytes)} of the constants pack could pack but left alone, smaller than ``min_bytes``
    (``stats["skipped"]``). Each names its tensor as ``fb.tensor_label`` does: a nameless one (a file
    packed with ``strip_strings=True``, then unpacked) "(unnamed tensor N)", N its index in ``model``."""

    def __init__(self, model):
        super().__init__()
        self.buffers = {}
        self.kept = {}
        self.kinds = {}
        self.skipped = {}
        self._unnamed = {id(t): fb.tensor_label(t, i, s) for s, sg in enumerate(model.subgraphs)
                         for i, t in enumerate(sg.tensors or []) if not fb.tensor_name(t)}

    def _name(self, t):
        return self._unnamed.get(id(t)) or fb.tensor_name(t)

    def skip(self, key, t, nbytes):
        self.skipped.setdefault(key, (self._name(t), nbytes))

    def keep(self, key, t, nbytes, kind="weights"):
        self.kept.setdefault(key, (self._name(t), nbytes))
        self.kinds.setdefault(key, kind)

    def add(self, t, nbytes, why):
        self.append((self._name(t), nbytes, why))
        if t.buffer > 0:
            self.buffers[t.buffer] = max(nbytes, self.buffers.get(t.buffer, 0))
        else:
            self.buffers[("no buffer", len(self))] = nbytes


def negative_zeros_note(tensors, entries, option):
    """What to say of float weights holding both -0.0 and +0.0, packed bit-exact (``option``: how to
    ask for +0.0, the CLI's flag or the Python argument)."""
    return (f"{tensors} weight tensor(s) hold both -0.0 and +0.0 ({entries} -0.0 entries: tfmot's "
            "strip_pruning leaves them where pruned weights were negative, the converter where it folds a "
            "negative BatchNormalization scale into a pruned kernel); packing is bit-exact, so each -0.0 "
            "is coded apart from +0.0 (as an entry like a kept weight; about one bit in unclustered weights, "
            f"FORMAT.md §18): {option} packs them as +0.0 (smaller; outputs can then "
            "differ only in the sign of an output that is exactly zero)")


def _warn_dropped(dropped, stacklevel=3):
    """``pack``/``unpack``'s warning about a zip after the model the output cannot keep
    (``with_zip``'s ``dropped``)."""
    if dropped:
        import warnings

        warnings.warn(dropped_zip_note("the input", dropped), stacklevel=stacklevel)


def pack_with_stats(tflite_bytes, min_bytes=DEFAULT_MIN_BYTES, verify=True,
                    min_saving=DEFAULT_MIN_SAVING, version=None, *, strip_strings=False, buffers="auto",
                    context_model=False, compact=None, positive_zeros=False, layouts=None, decoder=None):
    """``pack``, also returning ``{"packed_tensors": n, "strings_saved": bytes, "refused": [(name,
    bytes, reason)], "refused_bytes": their total (a buffer several read counted once),
    "kept_files": [name], "kept_bytes": n, "dropped_zip": None or (reason, bytes)}`` (for the CLI;
    ``refused``: constants of at least ``min_bytes`` that cannot be packed, e.g. complex64 ones; tensors
    that pack but not smaller enough are not listed; ``kept_files``: the associated files of a zip
    appended to the input, written after the output's model (``_zip``); ``kept_bytes``: bytes after
    the input's model that are neither part of it nor that zip, written unchanged after the
    output's model (``with_zip``); ``dropped_zip``: why a zip after the input's model could not be
    kept and how many bytes were dropped, when it could not; ``negative_zeros``: ``(tensors,
    entries)`` of the weights ``positive_zeros`` applies to that hold both -0.0 and +0.0, kept
    bit-exact; ``positive_zeros``: ``(tensors, entries)`` it made +0.0; ``unreferenced``:
    ``(buffers, bytes)`` of the input's buffers holding data no tensor or metadata refers to, kept;
    ``kept_raw``: [(name, bytes)] of the constants that pack, but not smaller enough, kept raw (a
    buffer several read listed once); ``kept_raw_kinds``: why, one ``KEPT_RAW_HINTS`` key per entry of
    ``kept_raw``; ``skipped``: [(name, bytes)] of the constants smaller than ``min_bytes``, left alone
    (a buffer several read listed once); ``unassigned_variables``: ``fb.unassigned_variables(model)``, the
    resource variables no operator gives a value (the weights are not in the file))."""
    asked = layouts
    layouts = check_options(min_bytes, verify, min_saving, version, strip_strings=strip_strings, buffers=buffers,
                            context_model=context_model, compact=compact, positive_zeros=positive_zeros,
                            layouts=layouts, decoder=decoder)
    model = fb.read_model(tflite_bytes)
    check_constant_sizes(model)  # a file TFLite refuses: the first thing to know about it
    if any(fb.is_huffdecode_code(c) for c in model.operatorCodes or []):
        raise ValueError("model is already packed (it contains HuffDecode ops), so there is nothing to pack: use it as "
                         "it is, or dc_keras.export.unpack(data) first to pack it again with other options")
    fb.check_rewritable(model, "pack")
    dangling = _dangling_metadata(model)
    unreferenced = unreferenced_buffers(model)
    offline_plans = _offline_plans(model)
    zeros = _signed_zeros(model, positive_zeros)
    facts = [_subgraph_facts(sg) for sg in model.subgraphs]
    enc = {"version": version, "context_model": bool(context_model), "layouts": layouts}  # codec.encode options
    refused = _Refused(model)
    sparse = _plan_sparse(model, min_bytes, min_saving, verify, enc, refused)
    plans = _plan(model, facts, min_bytes, verify, min_saving, enc, refused, _densified(model),
                  _planned_constants(offline_plans), _unwritable(version, decoder),
                  _Restricted.of(version, decoder, _decoder_layouts(None, asked, context_model), enc,
                                 _decoder_layouts(None, None, context_model)))
    stats = {"packed_tensors": len(plans) + sum(map(len, sparse.values())), "strings_saved": 0,
             "refused": refused, "refused_bytes": sum(refused.buffers.values()), "kept_files": [], "kept_bytes": 0, "dropped_zip": None,
             "negative_zeros": (0, 0) if positive_zeros else zeros, "positive_zeros": zeros if positive_zeros else (0, 0),
             "unreferenced": unreferenced, "kept_raw": list(refused.kept.values()),
             "kept_raw_kinds": list(refused.kinds.values()), "skipped": list(refused.skipped.values()),
             "unassigned_variables": fb.unassigned_variables(model)}
    rewrite = strip_strings or compact is True or buffers != "auto" or zeros[0] > 0 and positive_zeros
    if not stats["packed_tensors"] and not rewrite:
        return bytes(tflite_bytes), stats
    planned = _planned_raw(model, plans, sparse)  # kept raw after all if the packed file is no smaller
    if stats["packed_tensors"]:
        _rewrite(model, facts, plans, sparse)
    if compact is not False:
        _compact(model)
    _keep_dangling(model, dangling)
    _keep_plans(model, offline_plans, "pack")
    if strip_strings:  # only the length: a second model-sized output alive at the peak otherwise
        with_names = len(fb.write_model(model, buffers))
        _strip_strings(model)
    out = fb.write_model(model, buffers)
    if strip_strings:
        stats["strings_saved"] = with_names - len(out)
    out, stats["kept_files"], stats["kept_bytes"], stats["dropped_zip"] = with_zip(out, tflite_bytes, model)
    if not rewrite and len(out) >= len(tflite_bytes):
        stats["packed_tensors"], stats["kept_files"], stats["kept_bytes"], stats["dropped_zip"] = 0, [], 0, None
        stats["positive_zeros"] = (0, 0)
        stats["kept_raw"] = list({**refused.kept, **planned.kept}.values())
        stats["kept_raw_kinds"] = list({**refused.kinds, **planned.kinds}.values())
        return bytes(tflite_bytes), stats  # nothing worth packing after all
    return out, stats


def _planned_raw(model, plans, sparse):
    """A ``_Refused`` whose ``kept`` are the tensors ``_plan`` and ``_plan_sparse`` would pack (a
    buffer several read once), for ``stats["kept_raw"]`` when the packed file is no smaller."""
    from dc_keras.export import _sparse

    planned = _Refused(model)
    for s, i in plans:
        t = model.subgraphs[s].tensors[i]
        planned.keep(t.buffer, t, fb.buffer_size(model, t.buffer), "file")
    for s, entries in sparse.items():
        for _, i, _ in entries:
            t = model.subgraphs[s].tensors[i]
            planned.keep(("sparse", s, i), t, _sparse.stored_bytes(t, model), "file")
    return planned


#: operators (and input positions) whose result depends on a weight's zeros only through products:
#: a -0.0 there can change nothing but the sign of an output that is exactly zero.
#: UNIDIRECTIONAL_SEQUENCE_LSTM, the fused op a tf_keras LSTM (a tfmot-pruned one; also each half of a
#: Bidirectional) converts to: its input and recurrent weights (and projection) only multiply, and a
#: zero gate input gives sigmoid 0.5 and tanh 0 whatever its sign, so a -0.0 there, too, reaches only
#: the sign of an exactly-zero state or output. (tf_keras's SimpleRNN and GRU, and Keras 3's
#: recurrent layers, convert to FULLY_CONNECTED in a WHILE loop.)
#: the inputs whose -0.0 can change only the sign of an output that is exactly zero (the weights of
#: the product operators, and the table a lookup copies rows of), where ``positive_zeros`` makes
#: them +0.0
_WEIGHT_INPUTS = {"FULLY_CONNECTED": (1,), "CONV_2D": (1,), "DEPTHWISE_CONV_2D": (1,), "CONV_3D": (1,),
                  "TRANSPOSE_CONV": (1,), "CONV_3D_TRANSPOSE": (1,), "BATCH_MATMUL": (0, 1),
                  "UNIDIRECTIONAL_SEQUENCE_LSTM": (1, 2, 3, 4, 5, 6, 7, 8, 16), "GATHER": (0,),
                  "EMBEDDING_LOOKUP": (1,)}
_ZERO_BITS = {schema.TensorType.FLOAT32: (np.uint32, 0x80000000), schema.TensorType.FLOAT16: (np.uint16, 0x8000),
              schema.TensorType.BFLOAT16: (np.uint16, 0x8000)}


def weight_only_tensors(model) -> set:
    """``(subgraph, tensor)`` of the tensors read only as ``_WEIGHT_INPUTS``, directly or through a
    ``DEQUANTIZE`` whose output is read only so and is no output of its subgraph (the float16
    weights of a converter's float16 export): the tensors ``positive_zeros`` applies to (also
    ``inspect``'s count of the -0.0 a packed file keeps)."""
    readers = {}  # (subgraph, tensor) -> [is a weight input]
    dequantized = []  # (subgraph, DEQUANTIZE's input, its output)
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators or []:
            name = fb.opcode_name(model, op)
            inputs = [int(x) for x in (op.inputs if op.inputs is not None else [])]
            outputs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
            if name == "DEQUANTIZE" and len(inputs) == 1 and len(outputs) == 1 and inputs[0] >= 0:
                dequantized.append((s, inputs[0], outputs[0]))  # decided once every reader is known
                continue
            ok = _WEIGHT_INPUTS.get(name, ())
            for j, x in enumerate(inputs):
                readers.setdefault((s, x), []).append(j in ok)
    for s, x, y in dequantized:  # the sign of a zero survives DEQUANTIZE: a weight if its output is one
        out = readers.get((s, y))
        shown = y in [int(o) for o in (model.subgraphs[s].outputs if model.subgraphs[s].outputs is not None else [])]
        readers.setdefault((s, x), []).append(bool(out) and all(out) and not shown)
    return {u for u, r in readers.items() if r and all(r)}


def _signed_zeros(model, make_positive):
    """``(tensors, entries)``: the -0.0 entries of the float weight buffers read only as
    ``weight_only_tensors`` (every tensor sharing the buffer of one float type); with
    ``make_positive``, of those it set to +0.0 (in ``model``'s copy of the data), otherwise of those
    that also hold +0.0 (where keeping the sign bit costs bytes)."""
    weights = weight_only_tensors(model)
    tensors = entries = 0
    for b, users in _buffer_users(model).items():  # a metadata user has no readers: skipped
        if not all(u in weights for u in users):
            continue
        types = {int(model.subgraphs[s].tensors[i].type) for s, i in users}
        raw = fb.buffer_view(model, b)
        if len(types) != 1 or next(iter(types)) not in _ZERO_BITS or not raw:
            continue
        dtype, sign = _ZERO_BITS[next(iter(types))]
        if len(raw) % np.dtype(dtype).itemsize:
            continue
        bits = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))
        n, positive = zero_counts(bits)
        if not n or not make_positive and not positive:
            continue
        tensors, entries = tensors + 1, entries + n
        if make_positive:
            model.buffers[b].data = np.frombuffer(np.where(bits == sign, bits.dtype.type(0), bits).tobytes(), np.uint8)
    return tensors, entries


def zero_counts(bits) -> tuple:
    """``(negative, positive)``: the -0.0 and +0.0 entries of float bit patterns ``bits`` (unsigned
    integers of the float's width), counted a chunk at a time (no temporary near the array's size:
    ``inspect`` holds one decoded copy of a packed tensor at a time, tests/test_inspect_speed.py)."""
    sign = 1 << (8 * bits.dtype.itemsize - 1)
    negative = positive = 0
    for i in range(0, bits.size, 1 << 20):
        chunk = bits[i:i + (1 << 20)]
        negative += int(np.count_nonzero(chunk == sign))
        positive += int(np.count_nonzero(chunk == 0))
    return negative, positive


#: zero bytes after a model shorter than this are its writer's alignment padding, not data
PADDING = 64


def after_model(source, model=None):
    """What ``source`` (a ``.tflite`` file's bytes) holds after its model: ``(zip, kept, dropped, end)``.

    The model ends where its flatbuffer and the data it locates after itself end
    (``fb.model_extent``). ``zip``: the archive of associated files that ends the file
    (``_zip.TrailingZip``, movable), or None. ``kept``: the bytes between the model and that zip
    (or the file's end) that are neither (a signature, a second file, an archive cut short...),
    which ``pack`` and ``unpack`` write unchanged after their model (TFLite ignores them), from
    past the zero bytes that align the model's end to 16 bytes; empty when there are none or they
    are under ``PADDING`` zero bytes (a writer's alignment). ``dropped``: ``(reason, bytes)``
    when bytes after the model hold a zip end record whose archive cannot be moved (an offset
    pointing at no local header, a split archive, bytes after the archive...): copied unchanged
    to another position its offsets would be wrong, and readers of associated files would find it
    (minizip refuses one that moved backwards), so they are not kept; else None. ``end``: where the
    model ends. ``model``: ``read_model``'s result for ``source``, if the caller has it (its walk
    found the end already)."""
    from dc_keras.export import _zip

    extent = fb.model_extent(source, model)  # source passed read_model: every table is inside it
    _, z, error = _zip.split(source)
    if error:
        return None, b"", (str(error), len(source) - extent), extent
    end = z.start if z else len(source)
    start = extent  # past the zero bytes that align the model's end (to 16 bytes at most)
    while start < end and start % fb.BUFFER_ALIGNMENT and source[start] == 0:
        start += 1
    tail = bytes(source[start:end]) if start < end else b""
    if len(tail) < PADDING and not tail.strip(b"\0"):
        tail = b""
    if _zip.EOCD in tail:
        return z, b"", ("a zip end record that does not end the file: bytes follow its archive, or it was "
                        "cut short", len(tail)), extent
    return z, tail, None, extent


def with_zip(model_bytes, source, source_model=None):
    """``(output, kept file names, kept bytes, dropped)``: ``model_bytes`` followed by what
    ``source`` holds after its model (``after_model``): the unknown bytes there, unchanged, then
    TFLite metadata's associated files (label maps, vocabularies; tflite_support's
    MetadataPopulator, Model Maker and MediaPipe models carry a zip of them after the flatbuffer,
    and MediaPipe reads its labels there), byte for byte except for the zip's offsets, which count
    from the new file's start (docs/FORMAT.md §15, ``_zip``). ``kept bytes``: how many unknown
    bytes were kept; ``dropped``: ``(reason, bytes)`` for a zip that cannot be moved (then
    neither it nor the bytes before it are in the output), or None. ``source_model``:
    ``read_model``'s result for ``source``, if the caller has it."""
    from dc_keras.export import _zip

    z, tail, dropped, end = after_model(source, source_model)
    out = bytes(model_bytes) + tail
    if z is None:
        return out, [], len(tail), dropped
    try:
        return out + _zip.moved(source, z, len(out)), z.names, len(tail), dropped
    except _zip.ZipTailError as exc:
        return bytes(model_bytes), [], 0, (str(exc), len(source) - end)


def dropped_zip_note(what, dropped) -> str:
    """What to tell when the zip after the model of ``what`` could not be kept (``with_zip``'s
    ``dropped``: the reason, the bytes dropped)."""
    reason, nbytes = dropped
    return (f"{what} has a zip archive after the model, but it could not be kept in the output ({reason}): "
            f"{nbytes} B after the model were dropped; if the app reads associated files from it (e.g. labels "
            "for MediaPipe / the TFLite Task Library), attach them to the output again with the tool that "
            "added them (e.g. tflite_support's MetadataPopulator)")


#: what bytes after a model that start with a zip's local header but hold no end record are (a
#: truncated file's zip of associated files: review s55), as ``kept_bytes_note`` and inspect say it
CUT_ZIP_TEXT = ("start like a zip of associated files (a local header) but have no end record: an archive cut "
                "short, so the file was probably truncated (an interrupted download or copy): copy it again from "
                "its source to keep its associated files (labels, vocabularies)")


def is_cut_zip(tail) -> bool:
    """Whether ``tail`` (bytes after a model that are no movable zip: ``after_model``'s ``kept``)
    starts with a zip local header: an archive of associated files cut short."""
    from dc_keras.export import _zip

    return bytes(tail[:4]) == _zip.LOCAL


def kept_bytes_note(what, nbytes, output, cut_zip=False) -> str:
    """What to tell when ``nbytes`` unknown bytes after the model of ``what`` were written after
    ``output``'s model (``with_zip``); ``cut_zip``: they are a zip cut short (``is_cut_zip``)."""
    if cut_zip:
        return (f"{what} has {nbytes} B after the model that {CUT_ZIP_TEXT}; kept unchanged after {output}'s "
                "model (TFLite ignores them)")
    return (f"{what} has {nbytes} B after the model that are neither part of it nor a zip of associated "
            f"files: kept unchanged after {output}'s model (TFLite ignores them); if they are not needed "
            "(appended by mistake), remove them from the input and run again (`dc-keras inspect` says where "
            "its model ends)")


def _strip_strings(model):
    """Names no runtime needs: tensors, subgraphs, the description (signatures keep theirs)."""
    model.description = None
    for sg in model.subgraphs:
        sg.name = None
        for t in sg.tensors or []:
            t.name = None


def _compact(model):
    """``pack(compact=True)``: drops empty quantization tables; activation tensors share buffer 0."""
    hd = {k for k, c in enumerate(model.operatorCodes or []) if fb.is_huffdecode_code(c)}
    keep = {b for b, refs in _buffer_users(model).items() if any(r[0] == "metadata" for r in refs)}
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if op.opcodeIndex in hd:  # decoded tensors keep their own (empty) buffer
                keep.update(sg.tensors[int(i)].buffer for i in op.outputs if int(i) >= 0)
    moved = set()
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            q = t.quantization
            if q is not None and not any(_has_items(getattr(q, f, None))
                                         for f in ("min", "max", "scale", "zeroPoint", "details")):
                t.quantization = None
            if t.buffer > 0 and t.buffer not in keep and not t.isVariable and not fb.buffer_size(model, t.buffer):
                moved.add(t.buffer)
    for sg in model.subgraphs:  # a buffer also used by a variable tensor stays
        moved.difference_update(t.buffer for t in sg.tensors or [] if t.isVariable)
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            if t.buffer in moved:
                t.buffer = 0
    _remove_unused_buffers(model, moved)


def _has_items(v):
    return v is not None and (not hasattr(v, "__len__") or len(v) > 0)


def _refusal(model, t, reason, min_bytes, refused):
    """Records in ``refused`` a constant of at least ``min_bytes`` that cannot be packed: (name, bytes, why)."""
    nbytes = fb.buffer_size(model, t.buffer) if t.buffer > 0 else 0
    if refused is not None and nbytes >= max(min_bytes, 1):
        refused.add(t, nbytes, reason)


def _densified(model):
    """{(subgraph, tensor)} of the TFLite-sparse constants read through DENSIFY: ``_plan_sparse``
    decides about them (packed, kept, or refused by the codec), not ``_plan``."""
    from dc_keras.export import _sparse

    return {(s, i) for s in range(len(model.subgraphs)) for _, i, _ in _sparse.densify_plans(model, s)}


def _plan(model, facts, min_bytes, verify, min_saving, enc, refused=None, densified=frozenset(), planned=None,
          unwritable=None, restricted=None):
    """(subgraph, tensor) -> packed bytes, for every tensor worth packing (all users of a buffer).

    Constants that cannot be packed (a type or use pack refuses, or the codec refuses the data)
    are appended to ``refused`` as (name, bytes, reason), when given; ``densified`` (see
    ``_densified``) are not (they are ``_plan_sparse``'s). ``unwritable``: ``_unwritable``'s
    {TensorType: why pack keeps it raw}; ``restricted``: a ``_Restricted`` when pack's ``version`` or
    ``decoder`` leaves layouts out (a refusal then says when that option is the cause)."""
    codec = _codec()
    users = _buffer_users(model)
    eligible = {}
    for b, refs in users.items():
        eligible[b] = all(r[0] != "metadata" for r in refs) and all(
            skip_reason(model.subgraphs[s].tensors[i], i, facts[s], users, planned, model) is None
            for s, i in refs)
    plans, packed_cache = {}, {}  # cache: (buffer, dtype, shape) -> bytes or None
    with _progress(model, "pack") as bar:
        for s, sg in enumerate(model.subgraphs):
            for i, t in enumerate(sg.tensors or []):
                _plan_tensor(model, s, i, t, facts, users, eligible, planned, densified, min_bytes, verify,
                             min_saving, enc, refused, codec, plans, packed_cache, unwritable or {}, restricted)
                bar.update(fb.buffer_size(model, t.buffer))
    # A buffer is emptied only if all of its tensors are packed, and only if that saves bytes once
    # every one of them has its own HuffDecode op (the saving is the buffer's, counted once).
    for b, refs in users.items():
        if not eligible.get(b):
            continue
        if not all((s, i) in plans for s, i in refs):
            for s, i in refs:
                plans.pop((s, i), None)
        elif len(refs) > 1:
            nbytes = fb.buffer_size(model, b)
            sizes = [len(d) for d in dict.fromkeys(plans[r] for r in refs)]
            if buffer_keep_reason(nbytes, sizes, len(refs), min_saving) is not None:
                for r in refs:
                    plans.pop(r)
                if refused is not None:
                    refused.keep(b, model.subgraphs[refs[0][0]].tensors[refs[0][1]], nbytes, "shared")
    return plans


def _progress(model, desc):
    """A tqdm bar over the model's constant bytes (stderr; only on a terminal and from
    ``PROGRESS_MIN_BYTES`` on; removed when done)."""
    from dc_keras._logs import progress_bar_class

    tqdm = progress_bar_class()
    total = sum(fb.buffer_size(model, t.buffer) for sg in model.subgraphs for t in sg.tensors or [])
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False,
                disable=None if total >= PROGRESS_MIN_BYTES else True)


def _plan_tensor(model, s, i, t, facts, users, eligible, planned, densified, min_bytes, verify, min_saving, enc,
                 refused, codec, plans, packed_cache, unwritable, restricted=None):
    """``_plan``'s work on tensor ``i`` of subgraph ``s``: into ``plans`` when worth packing."""
    if t.buffer <= 0 or not eligible.get(t.buffer, False):
        why = skip_reason(t, i, facts[s], users, planned, model) if t.buffer > 0 else None
        if why is None and t.buffer > 0:
            why = shared_buffer_reason(model, s, i, facts, users, planned)
        if why is not None and (s, i) not in densified:
            _refusal(model, t, why, min_bytes, refused)
        return
    arr = _tensor_array(model, t)
    nbytes = fb.buffer_size(model, t.buffer)  # as stored (sub-byte types packed)
    if arr is None and nbytes >= max(min_bytes, 1):  # worded as inspect's row for it
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        _refusal(model, t, f"buffer holds {nbytes} B, not the "
                 f"{fb.TYPE_NAMES.get(t.type, str(t.type))}{shape} the tensor declares",
                 min_bytes, refused)
    if arr is not None and 0 < nbytes < min_bytes and refused is not None:
        refused.skip(t.buffer, t, nbytes)
    if arr is None or nbytes < max(min_bytes, 1):
        return
    key = (t.buffer, int(t.type), arr.shape)
    if int(t.type) in unwritable:
        _refusal(model, t, unwritable[int(t.type)], min_bytes, refused)
        return
    if key not in packed_cache:
        why = []
        packed_cache[key] = _encode_checked(codec, arr, verify, fb.buffer_view(model, t.buffer), enc,
                                            max_packed_bytes(nbytes, min_saving), why)
        if packed_cache[key] is None:
            reason = restricted.reason(codec, arr, verify, fb.buffer_view(model, t.buffer),
                                       max_packed_bytes(nbytes, min_saving), why[0]) if restricted else None
            _refusal(model, t, reason or f"the codec refuses its data: {why[0]}", min_bytes, refused)
    data = packed_cache[key]
    if isinstance(data, bytes) and keep_reason(len(data), nbytes, min_saving) is None:
        plans[(s, i)] = data
    elif data is not None and refused is not None and t.buffer not in refused.kept:  # a buffer read again: said once
        smaller = restricted is not None and restricted.packs(codec, arr, verify, fb.buffer_view(model, t.buffer),
                                                              nbytes, min_saving)
        refused.keep(t.buffer, t, nbytes, "restricted" if smaller else "weights")


# FORMAT.md section of each layout that a pack option can leave out
_LAYOUT_SECTIONS = {"grouped_dense": 11, "grouped_sparse": 11, "float_planes": 12, "context_sparse": 14,
                    "int_planes": 17, "sparse_planes": 18}


class _Restricted:
    """pack's ``version`` / ``decoder`` / ``layouts`` as they leave layouts out: says when one of
    them is why the codec refused a tensor that the defaults (``version=None``, ``decoder=None``,
    ``layouts=None``) pack, e.g. an unclustered float32 kernel (over 4096 distinct values), which
    only the float-planes layout (FORMAT.md §12, version >= 2) holds."""

    def __init__(self, version, decoder, layouts, enc):
        self.version, self.decoder, self.layouts, self.enc = version, decoder, layouts, enc

    @classmethod
    def of(cls, version, decoder, layouts, enc, default_layouts=None):
        """None when no option restricts anything; ``layouts``: the user's, as encode takes them;
        ``default_layouts``: encode's layouts with ``layouts=None`` (``context_model`` kept)."""
        if version is None and decoder is None and layouts is None:
            return None
        return cls(version, decoder, layouts, dict(enc, version=None, layouts=default_layouts))

    def packs(self, codec, arr, verify, raw, nbytes, min_saving):
        """Whether the defaults pack ``arr`` (``nbytes`` raw) by at least ``min_saving``, where the
        options' layouts pack it by less (kept raw: ``KEPT_RAW_HINTS["restricted"]``)."""
        data = _encode_checked(codec, arr, verify, raw, self.enc, max_packed_bytes(nbytes, min_saving))
        return isinstance(data, bytes) and keep_reason(len(data), nbytes, min_saving) is None

    def reason(self, codec, arr, verify, raw, max_bytes, why):
        """Why the options keep ``arr`` raw, when the defaults pack it (within ``max_bytes``) in a
        layout the options leave out, else None; ``why``: the codec's reason under the options."""
        data = _encode_checked(codec, arr, verify, raw, self.enc, max_bytes)
        if not isinstance(data, bytes):
            return None
        from dc_keras.codec._format import LAYOUT_CODES, LAYOUT_SINCE

        lay = codec.info(data)["layout"]
        since = LAYOUT_SINCE[LAYOUT_CODES[lay]]
        asked, defaults, which = [], [], []
        if self.version is not None and since > self.version:
            asked.append(f"version={self.version}")
            defaults.append("version=None")
            which.append(f"needs format version >= {since}")
        if self.decoder is not None and lay not in _DECODERS[self.decoder][0]:
            asked.append(f"decoder={self.decoder!r}")
            defaults.append("decoder=None")
            which.append("a DC_CODEC_MINIMAL decoder does not read")
        if self.layouts is not None and lay not in self.layouts:
            asked.append(f"layouts={self.layouts!r}")
            defaults.append("layouts=None")
            which.append(f"layouts={self.layouts!r} leaves out")
        if not asked:
            return None
        several = len(asked) > 1
        return (f"pack({', '.join(asked)}) keeps it raw: the codec refuses it without layout {lay!r} (FORMAT.md "
                f"§{_LAYOUT_SECTIONS[lay]}), which {' and which '.join(which)} ({why}); the default{'s' * several}, "
                f"{' and '.join(defaults)}, pack{'' if several else 's'} it ({len(data)} B)")


def _huffdecode_code(model):
    """Index of the ``HuffDecode`` operator code, appended on first use."""
    for k, c in enumerate(model.operatorCodes or []):
        if fb.is_huffdecode_code(c):
            return k
    code = schema.OperatorCodeT()
    code.deprecatedBuiltinCode = fb.CUSTOM_CODE
    code.builtinCode = fb.CUSTOM_CODE
    code.customCode = fb.HUFFDECODE.decode()
    code.version = 1
    model.operatorCodes = list(model.operatorCodes or []) + [code]
    return len(model.operatorCodes) - 1


def _add_packed(model, tensors, data, new_buffers):
    """Appends a nameless uint8 constant tensor holding ``data`` (buffers shared by content, data
    4-byte aligned: the decoder reads it at any offset, §1); its index."""
    if data not in new_buffers:
        buf = fb.PackedBufferT()
        buf.data = np.frombuffer(data, np.uint8)
        model.buffers.append(buf)
        new_buffers[data] = len(model.buffers) - 1
    pt = schema.TensorT()
    pt.shape = [len(data)]
    pt.type = schema.TensorType.UINT8
    pt.buffer = new_buffers[data]  # no name: FORMAT.md §15
    tensors.append(pt)
    return len(tensors) - 1


def _rewrite(model, facts, plans, sparse):
    """Adds the ``HuffDecode`` code, packed tensors/buffers and ops; empties the packed buffers.

    ``sparse``: {subgraph: [(DENSIFY op index, sparse tensor index, packed dense bytes)]}: those
    ``DENSIFY`` ops become ``HuffDecode`` ops and their sparse inputs are removed.
    """
    hd_index = _huffdecode_code(model)
    new_buffers = {}  # packed bytes -> buffer index (shared constants stay shared)
    emptied, dropped_buffers, densify_codes = set(), set(), set()
    for s, sg in enumerate(model.subgraphs):
        consumers = facts[s][0]
        inserts = {}
        tensors = list(sg.tensors or [])
        for i, t in enumerate(sg.tensors or []):
            data = plans.get((s, i))
            if data is None:
                continue
            op = schema.OperatorT()
            op.opcodeIndex = hd_index
            op.inputs = [_add_packed(model, tensors, data, new_buffers)]
            op.outputs = [i]
            inserts.setdefault(consumers[i], []).append(op)
            emptied.add(t.buffer)
        for j, i, data in sparse.get(s, []):
            op = sg.operators[j]  # DENSIFY(sparse) -> HuffDecode(packed), same output tensor
            densify_codes.add(op.opcodeIndex)
            op.opcodeIndex, op.builtinOptionsType, op.builtinOptions = hd_index, 0, None
            op.inputs = [_add_packed(model, tensors, data, new_buffers)]
            dropped_buffers.add(sg.tensors[i].buffer)
        sg.tensors = tensors
        ops = []
        for j, op in enumerate(sg.operators or []):
            ops.extend(inserts.get(j, []))
            ops.append(op)
        sg.operators = ops
    for b in emptied:
        model.buffers[b].data = None
    for s, items in sparse.items():
        _remove_tensors(model, s, {i for _, i, _ in items})
    _remove_unused_buffers(model, dropped_buffers)
    _remove_unused_codes(model, densify_codes)


def _unwritable(version, decoder):
    """{TensorType: why pack keeps its constants raw} for pack's ``version`` and ``decoder``: the
    types that version cannot hold (§16) and those the decoder build does not read."""
    out = {}
    if decoder is not None:
        out.update({tt: f"{fb.TYPE_NAMES[tt]}: a DC_CODEC_MINIMAL decoder does not read {what} tensors, so "
                        "pack(decoder='minimal') keeps it raw (the default, decoder=None, packs it)"
                    for tt, what in _DECODERS[decoder][1].items()})
    if version is not None:
        out.update({tt: f"{fb.TYPE_NAMES[tt]} needs packed format version {since} (FORMAT.md §16); "
                        f"pack(version={version}) was asked (the default, version=None, packs it)"
                    for tt, (_, _, since) in _codec()._format.DTYPE_TABLE.items()
                    if since > version and tt not in out})
    return out


def _decoder_layouts(decoder, layouts, context_model):
    """pack's ``layouts`` for ``codec.encode`` (None or a sorted tuple), checked against ``decoder``."""
    from dc_keras.codec._layouts import _layout_choice

    if decoder is not None and (not isinstance(decoder, str) or decoder not in _DECODERS):
        raise ValueError(f"decoder must be None (a decoder with every feature) or one of {sorted(_DECODERS)} "
                         f"(docs/microcontrollers.md), got {decoder!r}")
    choose = _layout_choice(layouts, None, context_model)  # the codec's errors, before any tensor
    if decoder is None:
        return None if choose is None else tuple(sorted(choose))
    reads = _DECODERS[decoder][0]
    if context_model:  # it was dropped without a word: the decoder reads no context_sparse tensor
        raise ValueError(f"context_model=True tries layout 'context_sparse' (FORMAT.md §14), which a {decoder!r} "
                         f"decoder does not read (it reads only layouts {list(reads)}): drop context_model=True "
                         f"with decoder={decoder!r}")
    extra = layouts_not_read(decoder, choose or ())
    if extra:
        raise ValueError(f"a {decoder!r} decoder reads only layouts {list(reads)}: layouts={layouts!r} names "
                         f"{extra}; leave layouts=None with decoder={decoder!r}")
    return tuple(sorted(reads if choose is None else choose))


def layouts_not_read(decoder, layouts) -> list:
    """The names in ``layouts`` a ``decoder`` (a key of ``_DECODERS``) does not read, sorted: pack's
    check and the CLI's (which words it in flags, before reading the input)."""
    return sorted(set(layouts) - set(_DECODERS[decoder][0]))


def _plan_sparse(model, min_bytes, min_saving, verify, enc, refused=None):
    """{subgraph: [(DENSIFY op, sparse tensor, packed dense bytes)]} where packing the dense
    tensor beats the sparse one (values + index arrays); those storing fewer than ``min_bytes``
    are left alone, as any constant. Tensors whose dense form the codec refuses are appended to
    ``refused`` (name, stored bytes, reason as ``inspect`` words it), when given."""
    from dc_keras.export import _sparse

    codec = _codec()
    out = {}
    for s, sg in enumerate(model.subgraphs):
        for j, i, dense in _sparse.densify_plans(model, s):
            t = sg.tensors[i]
            stored = _sparse.stored_bytes(t, model)
            if stored < max(min_bytes, 1):
                if 0 < stored and refused is not None:
                    refused.skip(("sparse", s, i), t, stored)
                continue
            data = _encode_checked(codec, dense, verify, enc=enc, max_bytes=max_packed_bytes(stored, min_saving))
            if data is None and refused is not None:
                refused.add(t, stored, "TFLite-sparse, densified: the codec refuses its data")
            if isinstance(data, bytes) and keep_reason(len(data), stored, min_saving) is None:
                out.setdefault(s, []).append((j, i, data))
            elif data is not None and refused is not None:
                refused.keep(("sparse", s, i), t, stored, "sparse")
    return out


#: ``_encode_checked``'s result for a tensor that would pack to more than the ``max_bytes`` given
_KEPT_RAW = "kept raw"


def _encode_checked(codec, arr, verify, raw=None, enc=None, max_bytes=None, why=None):
    """Packed bytes of ``arr`` (None if the codec refuses it: its reason appended to the list
    ``why`` when given; ``_KEPT_RAW`` if it would take more than ``max_bytes``:
    ``max_packed_bytes``); with ``verify`` decoded again and compared byte for byte with ``raw``
    (the tensor's buffer as TFLite stores it)."""
    try:
        data = codec.encode(arr, **(enc or {}), max_bytes=None if max_bytes is None else max(0, max_bytes))
    except codec.MaxBytesError:
        return _KEPT_RAW  # keep_reason would keep it: not worth the layouts or the bits
    except ValueError as exc:
        if why is not None:
            why.append(str(exc))
        return None  # refused: too many distinct values, unsupported shape, ...
    if verify:
        want = raw if raw is not None else _stored_bytes(arr)
        back = memoryview(np.ascontiguousarray(codec.decode(data, raw=True))).cast("B")  # no copy
        if back != memoryview(want).cast("B"):
            raise RuntimeError(
                "dc_keras.codec round trip is not bit-exact for a tensor of shape "
                f"{arr.shape} {arr.dtype}; refusing to write a wrong model (codec bug)"
            )
    return bytes(data)


def _stored_bytes(arr):
    """``arr`` as TFLite stores it (sub-byte types packed, §13)."""
    from dc_keras.codec import _format, pack_subbyte

    code = _format.dtype_code(arr.dtype)
    if code in _format.SUBBYTE_CODES:
        return pack_subbyte(arr, code)
    return np.ascontiguousarray(arr).tobytes()


def unpack(packed_bytes, *, buffers: str = "auto") -> bytes:
    """Turns a packed ``.tflite`` back into an ordinary one with identical tensor contents.

    Every ``HuffDecode`` op is decoded in Python (``dc_keras.codec.decode``) and removed, its
    output tensor gets its constant data back, and the packed tensors, buffers and the operator
    code disappear. ``buffers`` is as in ``pack`` (``"auto"``: the input's convention, inline under
    256 KiB of data). A model without ``HuffDecode`` ops is returned unchanged with ``"auto"``;
    ``"inline"`` / ``"external"`` rewrite it with its buffers stored that way. A zip appended
    after the model (TFLite metadata's associated files) follows the output's model, as in ``pack``,
    and so do other bytes after the model (unchanged, before the zip).

    Raises:
      ValueError: not a valid ``.tflite``, or a ``HuffDecode`` op / packed buffer is malformed
        (the message names the tensor and the decoder's reason), or the model holds data the
        TFLite schema read here has no field for (as in ``pack``: rewriting would drop it).

    Example:
      >>> plain = dc_keras.export.unpack(packed)
    """
    out, _, _, dropped = unpack_with_zip(packed_bytes, buffers=buffers)
    _warn_dropped(dropped)
    return out


def unpack_with_zip(packed_bytes, *, buffers="auto"):
    """``unpack``, also returning the associated files kept, the other bytes after the model kept
    and why a zip after it could not be kept (``with_zip``; for the CLI)."""
    if buffers not in fb.BUFFER_LOCATIONS:
        raise ValueError(f"buffers must be one of {fb.BUFFER_LOCATIONS}, got {buffers!r}")
    model = fb.read_model(packed_bytes)
    check_constant_sizes(model)
    if buffers == "auto" and not any(fb.is_huffdecode_code(c) for c in model.operatorCodes or []):
        return bytes(packed_bytes), [], 0, None
    fb.check_rewritable(model, "unpack")
    return with_zip(_unpack_model(model, buffers), packed_bytes, model)


def _unpack_model(model, buffers):
    """The rewritten, unpacked model of ``unpack`` (without what follows the flatbuffer)."""
    codes = model.operatorCodes or []
    hd = {k for k, c in enumerate(codes) if fb.is_huffdecode_code(c)}
    codec = _codec()
    dangling = _dangling_metadata(model)
    offline_plans = _offline_plans(model)
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
                raise ValueError(f"{where}: expected one input and one output; {fb.CORRUPT_FIX}")
            p, t = tensors[ins[0]], tensors[outs[0]]
            name = fb.tensor_label(t, outs[0], s)  # a nameless one (strip_strings): "(unnamed tensor N)"
            what = f"packed input {fb.tensor_name(p)!r}" if fb.tensor_name(p) else f"packed input of {name!r}"
            raw = fb.buffer_bytes(model, p.buffer)
            if p.type != schema.TensorType.UINT8 or not raw:
                raise ValueError(f"{where}: {what} is not a constant uint8 tensor; {fb.CORRUPT_FIX}")
            mismatch = packed_shape_mismatch(p, raw)
            if mismatch:
                raise ValueError(f"{where}: {what} {mismatch}; {fb.CORRUPT_FIX}")
            data = _decode_for(codec, raw, t, where, name)
            b = t.buffer
            if b > 0 and b < len(model.buffers) and b not in removed_buffers:
                existing = fb.buffer_view(model, b)
                if existing and existing != memoryview(data):
                    b = 0  # shared with different content: give it a buffer of its own
            if b <= 0:
                model.buffers.append(schema.BufferT())
                b = len(model.buffers) - 1
                t.buffer = b
            model.buffers[b].data = data
            drop_tensors.add(ins[0])
            removed_buffers.add(p.buffer)
        sg.operators = keep_ops
        _remove_tensors(model, s, drop_tensors)
    _remove_unused_buffers(model, removed_buffers)
    _remove_unused_codes(model, hd)
    _keep_dangling(model, dangling)
    _keep_plans(model, offline_plans, "unpack")
    return fb.write_model(model, buffers)


def _decode_for(codec, raw, t, where, name):
    """The buffer bytes of tensor ``t`` decoded from ``raw`` (a uint8 array); ValueError if they do not fit it."""
    try:
        head = codec.info(raw)
        data = np.ascontiguousarray(codec.decode(raw, raw=True), dtype=np.uint8)  # uint8, kept: no copy
    except ValueError as exc:
        raise ValueError(fb.with_corrupt_fix(f"{where}: packed data of {name!r} is invalid: {exc}")) from None
    mismatch = header_mismatch(head, t)
    if mismatch:
        raise ValueError(f"{where}: packed data of {name!r} is {mismatch}; {fb.CORRUPT_FIX}")
    return data


def packed_shape_mismatch(p, raw):
    """How packed tensor ``p`` (HuffDecode's input, holding the bytes ``raw``) declares a shape other
    than one entry per byte, which no runtime loads (HuffDecode checks it), or None."""
    shape = [int(d) for d in (p.shape if p.shape is not None else [])]
    if shape == [len(raw)]:
        return None
    return f"holds {len(raw)} bytes, but its shape is {shape} (one entry per byte: [{len(raw)}])"


def header_mismatch(head, t):
    """``"float32[150] but the tensor is float32[300]"`` when a packed header (``codec.info``) does
    not give tensor ``t``'s type and shape (every runtime refuses such a file), else ``None``."""
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    if head["dtype_code"] == int(t.type) and tuple(head["shape"]) == shape:
        return None
    return (f"{head.get('dtype_name', head['dtype_code'])}{list(head['shape'])} but the tensor is "
            f"{fb.TYPE_NAMES.get(t.type, t.type)}{list(shape)}")


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


def _without(items, drop):
    """``items`` without the indices in ``drop``, and each kept item's old index -> its new one."""
    mapping, kept = {}, []
    for i, item in enumerate(items):
        if i not in drop:
            mapping[i] = len(kept)
            kept.append(item)
    return kept, mapping


def _remove_unused_buffers(model, candidates):
    referenced = set()
    for sg in model.subgraphs:
        referenced.update(t.buffer for t in sg.tensors or [])
    referenced.update(m.buffer for m in model.metadata or [])
    referenced.update(int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else []))
    drop = {b for b in candidates if b > 0 and b not in referenced}
    if not drop:
        return
    model.buffers, mapping = _without(model.buffers, drop)
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            t.buffer = mapping[t.buffer]
    # A metadata index past the buffers keeps its value here; _dangling_metadata sets it at the end
    for m in model.metadata or []:
        m.buffer = mapping.get(m.buffer, m.buffer)
    if model.metadataBuffer is not None:
        model.metadataBuffer = [mapping.get(int(b), int(b)) for b in model.metadataBuffer]


def _dangling_metadata(model):
    """The metadata entries (and ``metadataBuffer`` positions) naming a buffer the model does not
    have. LiteRT ignores metadata it does not read, so such a file runs; a rewrite keeps the entry
    but must not let its index land on one of the buffers it adds (``_keep_dangling``)."""
    n = len(model.buffers or [])
    entries = [m for m in model.metadata or [] if m.buffer >= n]
    positions = [i for i, b in enumerate(model.metadataBuffer if model.metadataBuffer is not None else [])
                 if int(b) >= n]
    return entries, positions, n


def _keep_dangling(model, dangling):
    """Points ``_dangling_metadata``'s entries past the rewritten model's buffers again (the largest
    index the schema allows when the rewrite added buffers up to theirs) and warns, naming them."""
    entries, positions, n_in = dangling
    if not entries and not positions:
        return
    n = len(model.buffers or [])
    past = lambda b: b if b >= n else 0xFFFFFFFF  # noqa: E731
    for m in entries:
        m.buffer = past(m.buffer)
    for i in positions:
        model.metadataBuffer[i] = past(int(model.metadataBuffer[i]))
    import warnings

    names = [fb.tensor_name(m) or "(unnamed)" for m in entries] + [f"metadataBuffer[{i}]" for i in positions]
    warnings.warn(f"the input's metadata {', '.join(repr(x) for x in names)} names a buffer the file does not have "
                  f"(it has {n_in}): kept as it was, pointing past the buffers (LiteRT ignores metadata it does "
                  "not read); the tool that wrote the file may have a bug", UserWarning, stacklevel=4)


# TensorFlow Lite Micro's offline memory plan (TFLM's docs/memory_management.md): a metadata entry
# named "OfflineMemoryAllocation" whose buffer holds little-endian int32 words [format version,
# number of subgraphs, n, arena offset of tensor 0, ..., of tensor n - 1] (the tensors of every
# subgraph one after the other; -1: planned at run time). TFLM refuses a model whose n is not its
# tensor count ("Nbr of offline buffer offsets (n) in metadata not equal nbr tensors"), and TFLM's
# code reads the offsets of every subgraph from index 0 on, which its docs do not say.
OFFLINE_PLAN = "OfflineMemoryAllocation"
_PLAN_REMOVE = f"remove the {OFFLINE_PLAN!r} metadata entry (TFLM then plans every tensor at run time)"
_PLAN_FIX = "make the plan again for the packed model (run the offline planner on pack's output), or " + _PLAN_REMOVE


class _OfflinePlan:
    """One ``OfflineMemoryAllocation`` entry of a model: its buffer, header words and each tensor's
    offset, keyed by the tensor object (a rewrite adds and removes tensors; the objects stay), or
    ``problem``: why the input's plan does not describe its tensors."""

    def __init__(self, model, entry):
        self.entry, self.problem, self.offsets, self.tail, self.first = entry, None, None, b"", None
        self.tensors = [t for sg in model.subgraphs for t in sg.tensors or []]
        raw = fb.buffer_bytes(model, entry.buffer) if entry.buffer < len(model.buffers or []) else b""
        n = int.from_bytes(raw[8:12], "little") if len(raw) >= 12 else None
        if n is None or len(raw) < 12 + 4 * n:
            self.problem = (f"its buffer {entry.buffer} holds {len(raw)} B, not the 12-byte header and the "
                            f"{'' if n is None else f'{n} '}4-byte offsets it declares")
            return
        self.head, self.tail = raw[:12], raw[12 + 4 * n:]
        offsets = np.frombuffer(raw, "<i4", count=n, offset=12)
        if n != len(self.tensors):
            self.first = [id(t) for t in self.tensors[:n]] if n < len(self.tensors) else None
            self.problem = (f"it lists {n} arena offsets but the model has {len(self.tensors)} tensors (TFLM "
                            "refuses such a model)")
            return
        self.offsets = {id(t): int(o) for t, o in zip(self.tensors, offsets)}

    def planned(self, t):
        """The arena offset the plan gives tensor ``t`` (-1: none / planned at run time)."""
        return -1 if self.offsets is None else self.offsets.get(id(t), -1)

    def keep(self, model, what):
        """Rewrites the plan for ``model``'s tensors now (new tensors: -1, removed ones: dropped);
        untouched when the tensors are the ones it was made for. ValueError when it cannot be kept."""
        now = [t for sg in model.subgraphs for t in sg.tensors or []]
        if [id(t) for t in now] == [id(t) for t in self.tensors]:
            return
        where = f"{what}: the model's TFLite Micro offline memory plan (metadata {OFFLINE_PLAN!r})"
        if self.problem and what == "unpack" and [id(t) for t in now] == self.first:
            return  # packed before pack kept plans (it appended its tensors): the plan is the unpacked model's
        if self.problem:
            raise ValueError(f"{where} cannot be kept: {self.problem}; {what} changes the model's tensors, so "
                             f"it would have to rewrite it: fix the plan, or {_PLAN_REMOVE}")
        if len(model.subgraphs) > 1 and any(o != -1 for o in self.offsets.values()):
            raise ValueError(f"{where} cannot be kept: the model has {len(model.subgraphs)} subgraphs, and TFLM "
                             "reads every subgraph's offsets from index 0 on while its docs put them one after "
                             f"the other, so a plan with tensors added and removed has no one meaning; {_PLAN_FIX}")
        words = np.array([self.planned(t) for t in now], "<i4")
        data = self.head[:8] + len(words).to_bytes(4, "little") + words.tobytes() + self.tail
        model.buffers[self.entry.buffer].data = np.frombuffer(data, np.uint8)
        self.tensors = now


def _offline_plans(model):
    """The model's TFLM offline memory plans (``_OfflinePlan``; TFLM reads the last one)."""
    return [_OfflinePlan(model, m) for m in model.metadata or [] if fb.tensor_name(m) == OFFLINE_PLAN]


def _keep_plans(model, plans, what):
    for plan in plans:
        plan.keep(model, what)


def _planned_constants(plans):
    """{id(tensor): arena offset} of the tensors an offline plan gives an offset (the last plan
    wins, as in TFLM): a constant among them is not packed (``skip_reason``)."""
    out = {}
    for plan in plans:
        for t in plan.tensors:
            if plan.planned(t) >= 0:
                out[id(t)] = plan.planned(t)
    return out


def _remove_unused_codes(model, candidates):
    used = {op.opcodeIndex for sg in model.subgraphs for op in sg.operators or []}
    drop = {c for c in candidates if c not in used}
    if not drop:
        return
    model.operatorCodes, mapping = _without(model.operatorCodes, drop)
    for sg in model.subgraphs:
        for op in sg.operators or []:
            op.opcodeIndex = mapping[op.opcodeIndex]
