"""Constants of the packed tensor format (docs/FORMAT.md) and a pure-Python header parser."""
import struct

import numpy as np

MAGIC = b"DCHF"  # §2
VERSION = 1  # §2, §10
MAX_RANK = 8  # §1
MAX_ELEMENTS = 2**31 - 1  # §1
MAX_SYMBOLS = 4096  # §1: codebook size and gap alphabet size
MAX_CODE_LENGTH = 12  # §1, §4
NUM_STREAMS = 4  # §7
MAX_ZERO_BIT_OUTPUT = 1 << 24  # §9: output bytes of a tensor whose codes are all zero-bit
LAYOUT_DENSE = 0  # §5
LAYOUT_SPARSE = 1  # §6
LAYOUT_NAMES = {LAYOUT_DENSE: "dense", LAYOUT_SPARSE: "sparse"}

# §2: dtype code (TFLite TensorType) <-> little-endian numpy dtype.
DTYPE_CODES = {
    np.dtype("float32"): 0,
    np.dtype("float16"): 1,
    np.dtype("int32"): 2,
    np.dtype("uint8"): 3,
    np.dtype("int16"): 7,
    np.dtype("int8"): 9,
}
CODE_DTYPES = {code: dt.newbyteorder("<") for dt, code in DTYPE_CODES.items()}


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


def parse_header(data):
    """Parses and checks the header of a packed tensor (docs/FORMAT.md §2-§7) without decoding.

    Returns a dict; raises CorruptDataError. Used by ``dc_keras.codec.info``.
    """
    data = bytes(data)
    r = _Reader(data)
    if r.take(4, "magic") != MAGIC:
        raise CorruptDataError("not a packed tensor (bad magic)")
    version = r.u8("version")
    if version != VERSION:
        raise CorruptDataError(f"unsupported format version {version}")
    code = r.u8("dtype")
    if code not in CODE_DTYPES:
        raise CorruptDataError(f"unknown dtype code {code}")
    dtype = CODE_DTYPES[code]
    rank = r.u8("rank")
    layout = r.u8("layout")
    if rank > MAX_RANK:
        raise CorruptDataError(f"rank {rank} > {MAX_RANK}")
    if layout not in LAYOUT_NAMES:
        raise CorruptDataError(f"unknown layout {layout}")
    shape = tuple(r.u32("dims") for _ in range(rank))
    n = 1
    for d in shape:  # §2: every partial product of the dims <= 2^31 - 1 (as dc_peek)
        n *= d
        if n > MAX_ELEMENTS:
            raise CorruptDataError(f"shape {shape}: element count (or a partial product) > {MAX_ELEMENTS}")
    r.u32("check_a")
    r.u32("check_b")
    k = r.u16("codebook size")
    out = {
        "version": version, "dtype": dtype.newbyteorder("="), "dtype_code": code, "shape": shape,
        "num_elements": n, "layout": LAYOUT_NAMES[layout], "codebook_size": k,
        "raw_bytes": n * dtype.itemsize, "packed_bytes": len(data),
    }
    if n == 0:
        if k != 0 or layout != LAYOUT_DENSE:
            raise CorruptDataError("empty tensor must have an empty codebook and dense layout")
        if r.pos != len(data):
            raise CorruptDataError("trailing bytes after an empty tensor")
        out.update(codebook_bytes=0, header_bytes=r.pos, stream_bytes=[0] * NUM_STREAMS,
                   codebook=np.zeros(0, dtype.newbyteorder("=")))
        return out
    if not 1 <= k <= MAX_SYMBOLS:
        raise CorruptDataError(f"codebook size {k} not in 1..{MAX_SYMBOLS}")
    cb = r.take(k * dtype.itemsize, "codebook")
    out["codebook"] = np.frombuffer(cb, dtype).astype(dtype.newbyteorder("="))
    out["codebook_bytes"] = len(cb)
    if layout == LAYOUT_DENSE:
        out["index_code"] = _read_alphabet(r, k, "index code")
    else:
        bg = r.u16("background")
        e = r.u32("entry count")
        g = r.u16("gap alphabet size")
        if bg >= k:
            raise CorruptDataError(f"background index {bg} >= codebook size {k}")
        if e > n:
            raise CorruptDataError(f"entry count {e} > element count {n}")
        if not 1 <= g <= MAX_SYMBOLS:
            raise CorruptDataError(f"gap alphabet size {g} not in 1..{MAX_SYMBOLS}")
        if n >= (e + 1) * g:
            raise CorruptDataError(f"{n} elements cannot be covered by {e} entries with gaps < {g}")
        out.update(background_index=bg, background=out["codebook"][bg], entries=e, gap_alphabet=g)
        out["gap_code"] = _read_alphabet(r, g, "gap code")
        out["index_code"] = _read_alphabet(r, k, "index code")
    sizes = [r.u32("stream size") for _ in range(NUM_STREAMS)]
    codes = [out["index_code"]] + ([out["gap_code"]] if layout == LAYOUT_SPARSE else [])
    if all(c["max_length"] == 0 for c in codes) and out["raw_bytes"] > MAX_ZERO_BIT_OUTPUT:
        raise CorruptDataError(f"{out['raw_bytes']} bytes from zero-bit codes > {MAX_ZERO_BIT_OUTPUT}")
    out["header_bytes"] = r.pos
    out["stream_bytes"] = sizes
    end = r.pos + sum(sizes)
    if end > len(data):
        raise CorruptDataError(f"truncated: streams need {end} bytes, have {len(data)}")
    if end < len(data):
        raise CorruptDataError(f"{len(data) - end} trailing bytes after the streams")
    # §9 (as dc_peek): each stream holds its symbols' bits, no more, no less
    count = n if layout == LAYOUT_DENSE else out["entries"]
    lo = sum(int(c["lengths"][c["lengths"] > 0].min()) if c["max_length"] else 0 for c in codes)
    hi = sum(c["max_length"] for c in codes)
    for s, size in enumerate(sizes):
        cs = (count - s + NUM_STREAMS - 1) // NUM_STREAMS if count > s else 0
        if not -(-cs * lo // 8) <= size <= -(-cs * hi // 8):
            raise CorruptDataError(f"stream {s} has {size} bytes, but {cs} symbols of {lo}..{hi} bits "
                                   f"need {-(-cs * lo // 8)}..{-(-cs * hi // 8)}")
    return out
