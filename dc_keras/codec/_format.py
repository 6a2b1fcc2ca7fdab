"""Constants of the packed tensor format (docs/FORMAT.md) and a pure-Python header parser."""
import struct
import sys

import numpy as np

MAGIC = b"DCHF"  # §2
VERSION = 2  # §10: what the encoder writes by default (3 for the dtypes version 3 added, 4 for layout 6, 5 for 7)
VERSIONS = (1, 2, 3, 4, 5)  # §10: every version the decoder reads (a decoder never drops one)
MAX_RANK = 8  # §1
MAX_ELEMENTS = 2**31 - 1  # §1
MAX_SYMBOLS = 4096  # §1: codebook size and gap alphabet size
MAX_CODE_LENGTH = 12  # §1, §4
NUM_STREAMS = 4  # §7
MAX_ZERO_BIT_OUTPUT = 1 << 24  # §9: output bytes of a tensor whose codes are all zero-bit
LAYOUT_DENSE = 0  # §5
LAYOUT_SPARSE = 1  # §6
LAYOUT_GROUPED_DENSE = 2  # §11
LAYOUT_GROUPED_SPARSE = 3  # §11
LAYOUT_FLOAT_PLANES = 4  # §12
LAYOUT_CONTEXT_SPARSE = 5  # §14
LAYOUT_INT_PLANES = 6  # §17
LAYOUT_SPARSE_PLANES = 7  # §18
MAX_CONTEXT_SYMBOLS = 1024  # §14: codebook size limit of the context layout
MAX_INDEX_CONTEXTS = 8  # §14: index codes of the context-modelled sparse layout
MAX_TABLE_ENTRIES = 2 * 4096  # §14: decode-table entries of all codes of a tensor together
LAYOUT_NAMES = {LAYOUT_DENSE: "dense", LAYOUT_SPARSE: "sparse", LAYOUT_GROUPED_DENSE: "grouped_dense",
                LAYOUT_GROUPED_SPARSE: "grouped_sparse", LAYOUT_FLOAT_PLANES: "float_planes",
                LAYOUT_CONTEXT_SPARSE: "context_sparse", LAYOUT_INT_PLANES: "int_planes",
                LAYOUT_SPARSE_PLANES: "sparse_planes"}
LAYOUT_CODES = {v: k for k, v in LAYOUT_NAMES.items()}
LAYOUT_SINCE = {LAYOUT_DENSE: 1, LAYOUT_SPARSE: 1, LAYOUT_GROUPED_DENSE: 2, LAYOUT_GROUPED_SPARSE: 2,
                LAYOUT_FLOAT_PLANES: 2, LAYOUT_CONTEXT_SPARSE: 2, LAYOUT_INT_PLANES: 4,
                LAYOUT_SPARSE_PLANES: 5}  # §10: first version that allows each layout
PLANE_SYMBOLS = 256  # §12
SPARSE_PLANE_SYMBOLS = 258  # §18: the §12 symbols, 256 (background) and 257 (background, sign flipped)

# §2: dtype code (TFLite TensorType) -> (name, bits per element, version since).
DTYPE_TABLE = {0: ("float32", 32, 1), 1: ("float16", 16, 1), 2: ("int32", 32, 1), 3: ("uint8", 8, 1),
               7: ("int16", 16, 1), 9: ("int8", 8, 1), 17: ("int4", 4, 2), 18: ("bfloat16", 16, 2),
               19: ("int2", 2, 2), 20: ("uint4", 4, 2), 4: ("int64", 64, 3), 6: ("bool", 8, 3),
               10: ("float64", 64, 3), 12: ("uint64", 64, 3), 15: ("uint32", 32, 3), 16: ("uint16", 16, 3)}
SUBBYTE_CODES = {17, 19, 20}  # §13
FLOAT_CODES = {0, 1, 18}  # §12 (float planes; float64 is not one of them, §16)
BOOL_CODE = 6  # §16: codebook values 0 and 1 only
WIDE_CODES = {4, 10, 12}  # §16: 8-byte elements, no grouped layouts (§11)
INT_PLANE_CODES = {7, 16, 2, 15, 4, 12}  # §17: int16, uint16, int32, uint32, int64, uint64
_ML_CODES = (17, 18, 19, 20)  # no numpy dtype: bfloat16 and the sub-byte integers are ml_dtypes' types
_NUMPY_CODES = {np.dtype(name): c for c, (name, _, _) in DTYPE_TABLE.items() if c not in _ML_CODES}


def layout_allowed(code, layout):
    """§10-§16: may a tensor of dtype ``code`` use ``layout`` (a layout number)? The version rule
    is separate (LAYOUT_SINCE, DTYPE_TABLE)."""
    if code in SUBBYTE_CODES or code == BOOL_CODE:  # §13, §16: dense and sparse only
        return layout in (LAYOUT_DENSE, LAYOUT_SPARSE)
    if layout in (LAYOUT_FLOAT_PLANES, LAYOUT_SPARSE_PLANES):
        return code in FLOAT_CODES
    if layout == LAYOUT_INT_PLANES:
        return code in INT_PLANE_CODES
    if code in WIDE_CODES:  # §16: no grouped layouts
        return layout not in (LAYOUT_GROUPED_DENSE, LAYOUT_GROUPED_SPARSE)
    return True


def _ml_dtypes():
    """ml_dtypes (ships with TF and JAX), imported on first need: its extension takes ~1 s to load
    (~11 s under qemu), and float / int8 / int16 tensors never need it. None if not installed."""
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - the codec then handles the six v1 types only
        return None
    return ml_dtypes


def code_dtype(code):
    """The numpy dtype of §2 dtype code ``code`` (sub-byte types: ml_dtypes' one-byte-per-element
    dtypes); None for an unknown code, or for an ml_dtypes type when ml_dtypes is not installed."""
    if code not in DTYPE_TABLE:
        return None
    name = DTYPE_TABLE[code][0]
    if code not in _ML_CODES:
        return np.dtype(name)
    mld = _ml_dtypes()
    return np.dtype(getattr(mld, name)) if mld is not None and hasattr(mld, name) else None


def dtype_code(dtype):
    """The §2 dtype code of numpy dtype ``dtype`` (native byte order), None if the format has none.
    An array of an ml_dtypes type means ml_dtypes is loaded: only then are its types compared."""
    dtype = np.dtype(dtype)
    code = _NUMPY_CODES.get(dtype)
    if code is None and "ml_dtypes" in sys.modules:
        code = next((c for c in _ML_CODES if code_dtype(c) == dtype), None)
    return code


def dtype_bits(code):
    return DTYPE_TABLE[code][1]


def cb_esize(code):
    """Bytes per codebook value (§3; 1 for the sub-byte types, §13)."""
    return max(1, DTYPE_TABLE[code][1] // 8)


def output_bytes(code, n):
    return (n * DTYPE_TABLE[code][1] + 7) // 8


class CorruptDataError(ValueError):
    """A packed tensor is malformed; ``status`` is the decoder's status code (0 if from Python)."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise CorruptDataError(f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                                   f"only {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what):
        return self.take(1, what)[0]

    def u16(self, what):
        return struct.unpack("<H", self.take(2, what))[0]

    def u32(self, what):
        return struct.unpack("<I", self.take(4, what))[0]


def _read_alphabet(r, n, what):
    """§4: returns a dict with the max length and the code lengths (numpy uint8, length n)."""
    L = r.u8(f"{what} max code length")
    if L > MAX_CODE_LENGTH:
        raise CorruptDataError(f"{what}: max code length {L} > {MAX_CODE_LENGTH}")
    lengths = np.zeros(n, np.uint8)
    if L == 0:
        sym = r.u16(f"{what} single symbol")
        if sym >= n:
            raise CorruptDataError(f"{what}: single symbol {sym} >= alphabet size {n}")
        lengths[sym] = 0
        return {"max_length": 0, "single_symbol": sym, "lengths": lengths}
    raw = np.frombuffer(r.take((n + 1) // 2, f"{what} code lengths"), np.uint8)
    nib = np.empty(2 * len(raw), np.uint8)
    nib[0::2] = raw & 15
    nib[1::2] = raw >> 4
    if n % 2 and nib[-1] != 0:
        raise CorruptDataError(f"{what}: padding nibble is not zero")
    lengths = nib[:n]
    if lengths.max(initial=0) != L:
        raise CorruptDataError(f"{what}: code lengths exceed or never reach the max length {L}")
    used = lengths[lengths > 0].astype(np.int64)
    if int(np.sum(1 << (L - used))) != 1 << L:
        raise CorruptDataError(f"{what}: code lengths do not form a complete prefix code")
    return {"max_length": int(L), "single_symbol": None, "lengths": lengths}


def _parse_prefix(r, data):
    """§2 up to the checksum field(s), with the §10 version/layout/dtype rules."""
    if r.take(4, "magic") != MAGIC:
        raise CorruptDataError("not a packed tensor (bad magic)")
    version = r.u8("version")
    if version not in VERSIONS:
        if version < VERSIONS[0]:
            raise CorruptDataError(f"unsupported format version {version}: version {version} does not exist "
                                   f"(the first is {VERSIONS[0]})")
        raise CorruptDataError(f"unsupported format version {version} (this decoder reads {VERSIONS}); "
                               "upgrade dc_keras")
    code = r.u8("dtype")
    if code not in DTYPE_TABLE or DTYPE_TABLE[code][2] > version:
        raise CorruptDataError(f"unknown dtype code {code} for format version {version}")
    rank = r.u8("rank")
    layout = r.u8("layout")
    if rank > MAX_RANK:
        raise CorruptDataError(f"rank {rank} > {MAX_RANK}")
    if layout not in LAYOUT_NAMES or LAYOUT_SINCE[layout] > version:
        raise CorruptDataError(f"unknown layout {layout} for format version {version}")
    if not layout_allowed(code, layout):
        raise CorruptDataError(f"layout {LAYOUT_NAMES[layout]} does not hold {DTYPE_TABLE[code][0]} tensors "
                               "(FORMAT.md §12, §13, §16, §17, §18)")
    shape = tuple(r.u32("dims") for _ in range(rank))
    n = 1
    for d in shape:  # §2: every partial product of the dims <= 2^31 - 1 (as dc_peek)
        n *= d
        if n > MAX_ELEMENTS:
            raise CorruptDataError(f"shape {shape}: element count (or a partial product) > {MAX_ELEMENTS}")
    out = {"version": version, "dtype": code_dtype(code), "dtype_code": code,
           "dtype_name": DTYPE_TABLE[code][0], "shape": shape, "num_elements": n,
           "layout": LAYOUT_NAMES[layout], "raw_bytes": output_bytes(code, n),
           "packed_bytes": len(data), "check_offset": r.pos}
    if version == 1:
        out["checksum"] = (r.u32("check_a"), r.u32("check_b"))
    else:
        out["checksum"] = r.u32("check")
    return out


def _parse_codebook(r, out):
    """§3, §11, §13: [axis,] K, codebook (shape (K,) or (C, K) for grouped layouts)."""
    groups = 1
    if out["layout"] in ("grouped_dense", "grouped_sparse"):
        axis = r.u8("axis")
        if axis >= len(out["shape"]):
            raise CorruptDataError(f"group axis {axis} >= rank {len(out['shape'])}")
        groups = out["shape"][axis]
        out.update(axis=axis, groups=groups)
    k = r.u16("codebook size")
    if not 1 <= k <= MAX_SYMBOLS:
        raise CorruptDataError(f"codebook size {k} not in 1..{MAX_SYMBOLS}")
    esz = cb_esize(out["dtype_code"])
    cb = r.take(groups * k * esz, "codebook")
    raw = np.frombuffer(cb, f"<u{esz}").astype(f"=u{esz}")
    bits = dtype_bits(out["dtype_code"])
    if bits < 8 and int(raw.max(initial=0)) >> bits:
        raise CorruptDataError(f"codebook value has bits above the {bits} of the element type (§13)")
    if out["dtype_code"] == BOOL_CODE and int(raw.max(initial=0)) > 1:
        raise CorruptDataError(f"bool codebook value {int(raw.max())} is not 0 or 1 (§16)")
    out["codebook_size"] = k
    out["codebook_bytes"] = len(cb)
    out["codebook_raw"] = raw if groups == 1 and "axis" not in out else raw.reshape(groups, k)
    out["codebook"] = _values(out["codebook_raw"], out["dtype_code"])


def _values(raw, code):
    """Codebook bit patterns as values of the tensor's numpy dtype (sub-byte: sign-extended)."""
    bits = dtype_bits(code)
    if bits < 8:
        v = raw.astype(np.int16)
        if DTYPE_TABLE[code][0].startswith("int"):
            v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
        dt = code_dtype(code)
        return v.astype(np.int8) if dt is None else v.astype(dt)
    dt = code_dtype(code)
    return raw if dt is None else raw.view(dt)


def _check_entries(n, e, g):
    """§6 (and §11, §14, §18): E <= N, 1 <= G <= 4096, N < (E + 1) * G."""
    if e > n:
        raise CorruptDataError(f"entry count {e} > element count {n}")
    if not 1 <= g <= MAX_SYMBOLS:
        raise CorruptDataError(f"gap alphabet size {g} not in 1..{MAX_SYMBOLS}")
    if n >= (e + 1) * g:
        raise CorruptDataError(f"{n} elements cannot be covered by {e} entries with gaps < {g}")


def _parse_sparse(r, out, n):
    """§6 / §11 sparse parameters and the gap code."""
    k = out["codebook_size"]
    bg = r.u16("background")
    e = r.u32("entry count")
    g = r.u16("gap alphabet size")
    if bg >= k:
        raise CorruptDataError(f"background index {bg} >= codebook size {k}")
    _check_entries(n, e, g)
    cb = out["codebook"]
    out.update(background_index=bg, background=cb[..., bg], entries=e, gap_alphabet=g)
    out["gap_code"] = _read_alphabet(r, g, "gap code")


def context_free_run(gap_max_length, gap_single, classes, code_max_lengths, code_singles):
    """§9 for §14: with a zero-bit gap code (the same gap before every entry) an entry whose
    context has a zero-bit index code costs no bits, and that code's one symbol fixes the next
    context (2 * class + (gap == 0)). The most such entries in a row: 0 when none can occur, at
    most C/2, or None when they can follow each other forever (a cycle of zero-bit contexts), as
    dc_codec.c's ``context_free_run``. Shared by the parser and the encoder."""
    if gap_max_length:
        return 0
    z, c = int(gap_single == 0), len(code_max_lengths)
    longest = 0
    for start in range(z, c, 2):
        cur, run = start, 0
        while code_max_lengths[cur] == 0:
            run += 1
            if run > c // 2:
                return None
            cur = 2 * int(classes[code_singles[cur]]) + z
        longest = max(longest, run)
    return longest


def _parse_contexts(r, out):
    """§14: C, the class map, the C index codes; index_code = their length range (for §9)."""
    k = out["codebook_size"]
    if k > MAX_CONTEXT_SYMBOLS:
        raise CorruptDataError(f"codebook size {k} > {MAX_CONTEXT_SYMBOLS} in the context layout (§14)")
    starts = [0] + [r.u32("segment start") for _ in range(3)]
    if any(b < a for a, b in zip(starts, starts[1:])) or starts[3] > out["num_elements"]:
        raise CorruptDataError(f"segment starts {starts[1:]} are not nondecreasing positions <= N")
    out["segment_starts"] = starts
    c = r.u8("context count")
    if not (2 <= c <= MAX_INDEX_CONTEXTS and c % 2 == 0):
        raise CorruptDataError(f"context count {c} is not an even number in 2..{MAX_INDEX_CONTEXTS}")
    raw = np.frombuffer(r.take((k + 1) // 2, "class map"), np.uint8)
    nib = np.stack([raw & 15, raw >> 4], axis=1).reshape(-1)
    if k % 2 and nib[-1]:
        raise CorruptDataError("class map: padding nibble is not zero")
    classes = nib[:k]
    if int(classes.max()) >= c // 2:
        raise CorruptDataError(f"class map: class {int(classes.max())} >= {c // 2}")
    codes = [_read_alphabet(r, k, f"index code of context {i}") for i in range(c)]
    if (1 << out["gap_code"]["max_length"]) + c * (1 << max(x["max_length"] for x in codes)) > MAX_TABLE_ENTRIES:
        raise CorruptDataError(f"decode tables need more than {MAX_TABLE_ENTRIES} entries (§14)")
    out.update(contexts=c, classes=classes, index_codes=codes)
    lo = min(int(x["lengths"][x["lengths"] > 0].min()) if x["max_length"] else 0 for x in codes)
    out["index_code"] = {"max_length": max(x["max_length"] for x in codes), "min_length": lo,
                         "lengths": np.zeros(k, np.uint8), "single_symbol": None}
    gap = out["gap_code"]
    out["free_run"] = context_free_run(gap["max_length"], gap["single_symbol"], classes,
                                       [x["max_length"] for x in codes], [x["single_symbol"] for x in codes])


def _parse_int_planes(r, out):
    """§17: predictor, base and the class code (``index_code``); ``element_bit_range``: the fewest
    and most bits of one element (class code length + extra bits), for §9's stream bounds."""
    predictor = r.u8("predictor")
    if predictor > 1:
        raise CorruptDataError(f"predictor {predictor} is not 0 (base) or 1 (previous element) (§17)")
    w = dtype_bits(out["dtype_code"])
    base = np.frombuffer(r.take(w // 8, "base value"), f"<u{w // 8}")
    code = _read_alphabet(r, w + 1, "class code")
    used = np.flatnonzero(code["lengths"]) if code["max_length"] else np.array([code["single_symbol"]])
    per = code["lengths"][used].astype(np.int64) + np.maximum(used - 1, 0)
    out.update(codebook_size=0, codebook_bytes=0, predictor=("base", "previous")[predictor],
               base=_values(base.astype(f"=u{w // 8}"), out["dtype_code"])[0], index_code=code,
               element_bit_range=(int(per.min()), int(per.max())))


def _parse_sparse_planes(r, out, n):
    """§18: background, E, R, G, the gap code and the symbol code (``index_code``)."""
    esz = cb_esize(out["dtype_code"])
    bg = np.frombuffer(r.take(esz, "background"), f"<u{esz}").astype(f"=u{esz}")
    e, stored, g = r.u32("entry count"), r.u32("stored entry count"), r.u16("gap alphabet size")
    _check_entries(n, e, g)
    if stored > e:
        raise CorruptDataError(f"stored entry count {stored} > entry count {e} (§18)")
    out.update(codebook_size=0, codebook_bytes=0, background=_values(bg, out["dtype_code"])[0],
               background_bits=int(bg[0]), entries=e, stored_entries=stored, gap_alphabet=g)
    out["gap_code"] = _read_alphabet(r, g, "gap code")
    out["index_code"] = _read_alphabet(r, SPARSE_PLANE_SYMBOLS, "symbol code")


def _parse_streams(r, out, data):
    """§7 stream sizes and bounds, §12 raw plane, §9 zero-bit rule."""
    sparse = "entries" in out
    sizes = [r.u32("stream size") for _ in range(NUM_STREAMS)]
    codes = [out["index_code"]] + ([out["gap_code"]] if sparse else [])
    # §9 (as dc_peek): each stream holds its symbols' bits, no more, no less (§17: code + extra bits)
    lo, hi = out.get("element_bit_range") or (
        sum(c["min_length"] if "min_length" in c else int(c["lengths"][c["lengths"] > 0].min())
            if c["max_length"] else 0 for c in codes),
        sum(c["max_length"] for c in codes))
    plane = {"float_planes": out["num_elements"], "sparse_planes": out.get("stored_entries")}.get(out["layout"], 0) \
        * (cb_esize(out["dtype_code"]) - 1)
    free = out.get("free_run", 0)  # §14: the most zero-bit entries in a row (None: no limit)
    if (hi == 0 or free is None) and out["layout"] != "float_planes" and out["raw_bytes"] > MAX_ZERO_BIT_OUTPUT:
        raise CorruptDataError(f"{out['raw_bytes']} bytes from zero-bit codes > {MAX_ZERO_BIT_OUTPUT}")
    out["header_bytes"] = r.pos
    out["stream_bytes"] = sizes
    out["plane_bytes"] = plane
    end = r.pos + sum(sizes) + plane
    if end > len(data):
        raise CorruptDataError(f"truncated: streams need {end} bytes, have {len(data)}")
    if end < len(data):
        raise CorruptDataError(f"{len(data) - end} trailing bytes after the streams")
    count = out["entries"] if sparse else out["num_elements"]
    for s, size in enumerate(sizes):
        cs = (count - s + NUM_STREAMS - 1) // NUM_STREAMS if count > s else 0
        if not -(-cs * lo // 8) <= size <= -(-cs * hi // 8):
            raise CorruptDataError(f"stream {s} has {size} bytes, but {cs} symbols of {lo}..{hi} bits "
                                   f"need {-(-cs * lo // 8)}..{-(-cs * hi // 8)}")
        if lo == 0 and hi and free is not None and cs >= (free + 1) * (8 * size + 1):
            raise CorruptDataError(f"stream {s} has {size} bytes for {cs} entries, more than fit: at least one "
                                   f"bit for every {free + 1} entries (§14, §9), so at most "
                                   f"{(free + 1) * (8 * size + 1) - 1}")


def parse_header(data):
    """Parses and checks the header of a packed tensor (docs/FORMAT.md §2-§18) without decoding.

    Returns a dict; raises CorruptDataError. Used by ``dc_keras.codec.info``. The checksum
    (§8) is reported, not verified (``decode`` verifies it).
    """
    data = bytes(data)
    r = _Reader(data)
    out = _parse_prefix(r, data)
    n = out["num_elements"]
    if n == 0:
        if r.u16("codebook size") != 0 or out["layout"] != "dense":
            raise CorruptDataError("empty tensor must have an empty codebook and dense layout")
        if r.pos != len(data):
            raise CorruptDataError("trailing bytes after an empty tensor")
        out.update(codebook_size=0, codebook_bytes=0, header_bytes=r.pos, stream_bytes=[0] * NUM_STREAMS,
                   plane_bytes=0, codebook=np.zeros(0, out["dtype"] or np.uint8))
        return out
    if out["layout"] == "float_planes":
        out.update(codebook_size=0, codebook_bytes=0)
        out["index_code"] = _read_alphabet(r, PLANE_SYMBOLS, "exponent code")
    elif out["layout"] == "int_planes":
        _parse_int_planes(r, out)
    elif out["layout"] == "sparse_planes":
        _parse_sparse_planes(r, out, n)
    else:
        _parse_codebook(r, out)
        if out["layout"] in ("sparse", "grouped_sparse", "context_sparse"):
            _parse_sparse(r, out, n)
        if out["layout"] == "context_sparse":
            _parse_contexts(r, out)
        else:
            out["index_code"] = _read_alphabet(r, out["codebook_size"], "index code")
    _parse_streams(r, out, data)
    return out
