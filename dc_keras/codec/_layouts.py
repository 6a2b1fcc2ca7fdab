"""The encoder's layout plans (docs/FORMAT.md §5, §6, §11, §12, §13) and ``encode``.

Each plan knows its exact packed size before it writes anything, so ``encode`` can pick the
smallest layout the requested format version can express.
"""
import struct
import zlib

import numpy as np

from ._encode import (_PACK_CHUNK as _CHUNK, _Code, chunked_bincount, _context_plan, segment_starts, _descriptor, _pack_entries, _sparse_plan, _streams_dense,
                      _streams_sparse, _unique_small, checksum)
from ._format import (MAX_CONTEXT_SYMBOLS, DTYPE_TABLE, FLOAT_CODES, LAYOUT_CODES, LAYOUT_NAMES,
                      LAYOUT_SINCE, MAGIC, MAX_CODE_LENGTH, MAX_ELEMENTS, MAX_RANK, MAX_SYMBOLS,
                      MAX_ZERO_BIT_OUTPUT, PLANE_SYMBOLS, SUBBYTE_CODES, VERSION, VERSIONS,
                      cb_esize, dtype_bits, dtype_code, output_bytes)

_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32}
_STREAM_SIZES = 16  # §7: 4 x u32


# ----------------------------------------------------------------------------------------------
# input
# ----------------------------------------------------------------------------------------------
def _to_array(array, version):
    """(little-endian C-contiguous array, dtype code, element bit patterns as unsigned ints)."""
    a = np.asarray(array)
    code = dtype_code(a.dtype.newbyteorder("=")) if a.dtype.kind in "fiuV" else None
    if code is None:
        raise ValueError(f"unsupported dtype {a.dtype}: packed tensors hold float32, float16, bfloat16, "
                         "int32, int16, int8, uint8, int4, uint4 or int2")
    if DTYPE_TABLE[code][2] > version:
        raise ValueError(f"format version {version} cannot hold {DTYPE_TABLE[code][0]} tensors "
                         f"(FORMAT.md §10); use version={DTYPE_TABLE[code][2]} or later")
    if a.ndim > MAX_RANK:
        raise ValueError(f"rank {a.ndim} > {MAX_RANK} is not supported")
    prod = 1
    for d in a.shape:  # §2: every partial product of the dims <= 2^31 - 1
        prod *= d
        if prod > MAX_ELEMENTS:
            raise ValueError(f"shape {a.shape} has {prod} elements or a partial product > {MAX_ELEMENTS} "
                             "(format limit)")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    a = a if a.flags.c_contiguous else a.copy(order="C")
    esz = cb_esize(code)
    bits = a.reshape(-1).view(_UINT_OF_SIZE[esz])
    if dtype_bits(code) < 8:  # §13: only the element's own bits count
        bits = bits & np.uint8((1 << dtype_bits(code)) - 1)
    return a, code, bits


# ----------------------------------------------------------------------------------------------
# plans: each has .layout, .size (packed bytes after the check field) and .parts()
# ----------------------------------------------------------------------------------------------
class _Plain:
    """§5 dense / §6 sparse over one codebook (§3)."""

    def __init__(self, uniq, idx, counts, esz, limit, sparse, big):
        self.layout = LAYOUT_CODES["sparse" if sparse else "dense"]
        self.uniq, self.idx, self.esz = uniq, idx, esz
        k = len(uniq)
        if sparse:
            self.plan = _sparse_plan(idx, counts, limit)
            zero_bit = self.plan["gap_code"].max_len == 0 and self.plan["index_code"].max_len == 0
            self.size = float("inf") if big and zero_bit else self.plan["size"] + 2 + k * esz + _STREAM_SIZES
            return
        self.code = _Code(counts, limit)
        if big and self.code.max_len == 0:  # §9: a large constant tensor gets a 1-bit code
            spare = (uniq[0] ^ 1).astype(uniq.dtype)
            self.uniq = np.concatenate([uniq, np.array([spare], uniq.dtype)])
            self.code = _Code([len(idx), 0], limit, force_two=True)
        self.size = (self.code.bits + 7) // 8 + self.code.descriptor_size() + 2 + len(self.uniq) * esz \
            + _STREAM_SIZES

    def _codebook(self):
        return self.uniq.astype(self.uniq.dtype.newbyteorder("<")).tobytes()

    def parts(self):
        """(body bytes before the stream sizes, list of 4 streams, trailing plane bytes)."""
        head = [struct.pack("<H", self._k()), self._codebook()]
        if self.layout in (LAYOUT_CODES["sparse"], LAYOUT_CODES["grouped_sparse"]):
            e, streams = _streams_sparse(self.plan)
            head += [struct.pack("<HIH", self.plan["bg"], e, self.plan["G"]),
                     self.plan["gap_code"].descriptor(), self.plan["index_code"].descriptor()]
        else:
            streams = _streams_dense(self.idx, self.code)
            head.append(self.code.descriptor())
        return b"".join(head), streams, b""

    def _k(self):
        return len(self.uniq)

    def release(self):
        """Drops the per-element arrays: ``encode`` will not write this plan (_keep_best)."""
        self.idx = None
        if hasattr(self, "plan"):
            self.plan["idx"] = None


class _ContextSparse(_Plain):
    """§14: §6's entries with one index code per context (class of the previous entry's value x
    gap = 0 or not); two classes: values below the background value (negative weights) or not."""

    def __init__(self, uniq, idx, counts, esz, limit, code):
        super().__init__(uniq, idx, counts, esz, limit, True, False)
        self.layout = LAYOUT_CODES["context_sparse"]
        key = _numeric_key(uniq, code)
        classes = (key < key[self.plan["bg"]]).astype(np.int64)
        self.ctx = _context_plan(self.plan, classes, 4, len(uniq), limit)
        if self.ctx is None or all(c.max_len == 0 for c in self.ctx["index_codes"]) \
                and self.plan["gap_code"].max_len == 0:
            self.size = float("inf")
            return
        self.size = self.ctx["size"] + 2 + len(uniq) * esz + _STREAM_SIZES

    def release(self):
        super().release()
        self.ctx = None

    def parts(self):
        p, c = self.plan, self.ctx
        classes = c["classes"]
        head = [struct.pack("<H", len(self.uniq)), self._codebook(),
                struct.pack("<HIH", p["bg"], len(c["gaps_out"]), p["G"]), p["gap_code"].descriptor(),
                struct.pack("<3I", *segment_starts(c["gaps_out"])), bytes([len(c["index_codes"])]), _descriptor(classes.astype(np.uint8), 1)[1:]]
        head += [ic.descriptor() for ic in c["index_codes"]]
        streams = _pack_entries(c["gaps_out"], c["idx_out"], p["gap_code"], c["index_codes"], c["ctx"], True)
        return b"".join(head), streams, b""


class _Grouped(_Plain):
    """§11: one codebook of K entries per slice along ``axis``; ranks aligned on each group's mode."""

    def __init__(self, tables, idx, counts, axis, esz, limit, sparse, big):
        self.axis, self.tables = axis, tables  # tables: (C, K) unsigned bit patterns
        super().__init__(tables.reshape(-1), idx, counts, esz, limit, sparse, big)
        self.layout = LAYOUT_CODES["grouped_sparse" if sparse else "grouped_dense"]
        if not sparse and len(self.uniq) != tables.size:  # no spare-entry trick for groups
            self.size = float("inf")
        self.size += 1  # the axis byte (the codebook size already counts every group's table)

    def _k(self):
        return self.tables.shape[1]

    def _codebook(self):
        t = self.tables
        return t.astype(t.dtype.newbyteorder("<")).tobytes()

    def parts(self):
        body, streams, plane = super().parts()
        return bytes([self.axis]) + body, streams, plane


class _Planes:
    """§12: Huffman code of the 8 bits below the sign, the other bits raw."""

    layout = LAYOUT_CODES["float_planes"]

    def __init__(self, bits, esz, limit):
        w = 8 * esz
        u = bits  # unsigned ints of the element's width: shifts and masks stay in it (no int64)
        t = np.right_shift(u, w - 9)
        self.sym = np.bitwise_and(t, 0xFF, out=t).astype(np.uint8)  # < 256: not int64 (8 B each)
        rest = np.bitwise_and(u, (1 << (w - 9)) - 1)
        t = np.right_shift(u, w - 1, out=t)
        rest |= np.left_shift(t, w - 9, out=t)
        del t
        self.rest, self.esz = rest, esz
        self.code = _Code(chunked_bincount(self.sym, PLANE_SYMBOLS), limit)
        self.size = (self.code.bits + 7) // 8 + self.code.descriptor_size() + _STREAM_SIZES \
            + len(bits) * (esz - 1)

    def release(self):
        self.sym = self.rest = None

    def parts(self):
        plane = np.asarray(self.rest, f"<u{self.esz}").view(np.uint8).reshape(-1, self.esz)[:, : self.esz - 1]
        return self.code.descriptor(), _streams_dense(self.sym, self.code), plane.tobytes()


def _numeric_key(bits, code):
    """int64 keys ordered like the values (floats: sign-magnitude to two's complement)."""
    w = dtype_bits(code)
    u = bits.astype(np.int64)
    if code in FLOAT_CODES:
        return np.where(u >> (w - 1), -(u & ((1 << (w - 1)) - 1)) - 1, u)
    if DTYPE_TABLE[code][0].startswith("int"):
        return np.where(u >> (w - 1), u - (1 << w), u)
    return u


def _from_numeric_key(key, code):
    """Inverse of _numeric_key: the bit patterns (as int64)."""
    w = dtype_bits(code)
    if code in FLOAT_CODES:
        return np.where(key < 0, (-key - 1) | (1 << (w - 1)), key)
    return key & ((1 << w) - 1)


def _group_chunks(n, c, inner, mult):
    """(start, stop, mult * group of each element in start..stop-1) for ``n`` elements, about
    ``_CHUNK`` at a time, where element j is in group (j // inner) % c: whole rows of ``inner``
    elements (a row's part when it is longer), so the groups are a repeat, not a division per
    element. The third item is an int64 array or, within one row, an int."""
    if inner >= _CHUNK:
        for r in range(n // inner):
            for a in range(r * inner, (r + 1) * inner, _CHUNK):
                yield a, min(a + _CHUNK, (r + 1) * inner), (r % c) * mult
        return
    rows = min(_CHUNK, n) // inner  # n is a multiple of c * inner
    if rows >= c:  # whole periods of c rows: one pattern for every chunk
        rows -= rows % c
        pattern = np.repeat(np.tile(np.arange(c, dtype=np.int64) * mult, rows // c), inner)
        for a in range(0, n, rows * inner):
            b = min(a + rows * inner, n)
            yield a, b, pattern[: b - a]
        return
    for r in range(0, n // inner, rows):
        r1 = min(r + rows, n // inner)
        yield r * inner, r1 * inner, np.repeat(np.arange(r, r1, dtype=np.int64) % c * mult, inner)


def _distinct_per_group(bits, code, shape3):
    """Distinct (group, value) pairs sorted by group then value: (group of each, bit pattern of
    each, count of each, ``index_of``: index_of(pos) is the uint16 array of pos[pair of each
    element]). ``shape3``: (outer, c, inner), the group of element j is (j // inner) % c."""
    esz = bits.dtype.itemsize
    outer, c, inner = shape3
    if esz <= 2 and c << (8 * esz) <= 1 << 22:  # small alphabets: histogram, no sort
        v = 1 << (8 * esz)
        bits_of_rank = np.argsort(_numeric_key(np.arange(v), code), kind="stable")
        rank = np.empty(v, np.int64)
        rank[bits_of_rank] = np.arange(v)

        def combs():  # (start, stop, group * v + rank): int64 a chunk at a time, no per-element array
            for a, b, gv in _group_chunks(len(bits), c, inner, v):
                yield a, b, gv + rank[bits[a:b]]

        hist = np.zeros(c * v, np.int64)
        for _, _, comb in combs():
            hist += np.bincount(comb, minlength=c * v)
        dist = np.flatnonzero(hist)

        def index_of(pos):
            table = np.zeros(c * v, np.uint16)
            table[dist] = pos
            out = np.empty(len(bits), np.uint16)
            for a, b, comb in combs():
                out[a:b] = table[comb]
            return out

        return dist // v, bits_of_rank[dist % v], hist[dist], index_of
    group = np.broadcast_to(np.arange(c, dtype=np.int64)[None, :, None], (outer, c, inner)).reshape(-1)
    comb = group * (1 << 34) + (_numeric_key(bits, code) + (1 << 33))
    del group
    ukeys, inv, cnt = np.unique(comb, return_inverse=True, return_counts=True)
    del comb
    ubits = _from_numeric_key((ukeys & ((1 << 34) - 1)) - (1 << 33), code)
    inv = inv.reshape(-1)
    return ukeys >> 34, ubits, cnt, lambda pos: pos.astype(np.uint16)[inv]


def _group_tables(bits, code, shape, axis, align="mode", _cache=None):
    """§11 tables for grouping along ``axis``: (tables (C, K), per-element index, index counts)
    or None when some group would need more than MAX_SYMBOLS entries. Each group's values are
    sorted; ``align`` "mode" puts every group's most frequent value at one index b (ranks then
    correlate around it, and b can be the sparse background), "low" aligns the smallest values."""
    c = int(shape[axis])
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    outer = len(bits) // (c * inner)
    key = (axis, len(bits))
    if _cache is None or key not in _cache:
        found = _distinct_per_group(bits, code, (outer, c, inner))
        if _cache is None:
            _cache = {}
        _cache[key] = found
    ugroup, ubits, cnt, index_of = _cache[key]
    start = np.searchsorted(ugroup, np.arange(c))  # first distinct value of each group
    stop = np.append(start[1:], len(ugroup))
    # anchor = each group's most frequent value; entries are aligned so that anchors share index b
    if align == "mode":
        order = np.lexsort((-cnt, ugroup))
        anchor = order[np.searchsorted(ugroup[order], np.arange(c))]
    else:
        anchor = start
    below, above = anchor - start, stop - anchor - 1
    b = int(below.max())
    k = b + 1 + int(above.max())
    if k > MAX_SYMBOLS:
        return None
    pos = np.arange(len(ugroup)) - anchor[ugroup] + b  # table index of each distinct pair
    tables = np.repeat(ubits[anchor][:, None], k, axis=1)  # unused entries repeat the anchor
    tables[ugroup, pos] = ubits
    idx = index_of(pos)  # table indices < k <= 4096: 2 B per element
    return tables.astype(bits.dtype), idx, chunked_bincount(idx, k)


def _plain_codebook(bits, esz):
    """(sorted distinct bit patterns, index of each element, counts); ValueError if > 4096."""
    if esz <= 2:
        hist = chunked_bincount(bits, 1 << (8 * esz))
        uniq = np.flatnonzero(hist)
        if len(uniq) > MAX_SYMBOLS:
            raise ValueError(f"{len(uniq)} distinct values > {MAX_SYMBOLS}: cluster the tensor first")
        lut = np.zeros(len(hist), np.uint16)  # indices < 4096: 2 B per element, not 8
        lut[uniq] = np.arange(len(uniq))
        return uniq.astype(bits.dtype), lut[bits], hist[uniq].astype(np.int64)
    return _unique_small(bits)


# ----------------------------------------------------------------------------------------------
# choosing a layout
# ----------------------------------------------------------------------------------------------
_GROUP_MIN_K = 64  # §11 is tried when one codebook needs at least this many entries (or > 4096)


def _group_axes(shape, axis):
    if axis is not None:
        if not (isinstance(axis, (int, np.integer)) and -len(shape) <= axis < len(shape)):
            raise ValueError(f"axis {axis!r} is not an axis of a tensor of shape {shape}")
        return [int(axis) % len(shape)]
    # TFLite's quantized_dimension: 0 for conv / fully-connected, the last one for depthwise
    return sorted({ax for ax in (0, len(shape) - 1) if len(shape) >= 2 and shape[ax] > 1})


def _grouped_cannot_win(bits, shape, axis, esz, floats):
    """Cheap test before the full per-group count (seconds on millions of elements): every group's
    table has at least as many entries as group 0 has distinct values K0, so tables of
    C * K0 * esz bytes that reach the raw size rule the axis out (so does K0 > 4096). For floats
    the bar is the float-planes layout's raw plane, N * (esz - 1) bytes: tables that large mean an
    unclustered tensor (~N / C distinct values per group), which §11 is not for."""
    k0 = len(np.unique(bits.reshape(shape).take(0, axis=axis)))
    bar = len(bits) * (esz - 1 if floats else esz)
    return k0 > MAX_SYMBOLS or int(shape[axis]) * k0 * esz >= bar


def _keep_best(plans, new):
    """Appends ``new`` to ``plans`` and releases the per-element arrays (2 B or more per element
    each) of every plan but the one ``encode`` would pick now, the first smallest: it is the first
    smallest of the final list too if any is. Up to 8 plans otherwise held theirs together."""
    plans += new
    best = min(plans, key=lambda p: p.size, default=None)
    for p in plans:
        if p is not best:
            p.release()


def _plans(a, code, bits, want, limit, version, axis, context_model=False):
    """Every plan the request allows, plus the reason the others are out (for the error). Only
    the smallest keeps its per-element arrays (_keep_best)."""
    esz, n, shape = cb_esize(code), a.size, a.shape
    big = output_bytes(code, n) > MAX_ZERO_BIT_OUTPUT
    allowed = [lay for lay in LAYOUT_NAMES.values() if (want is None or lay == want)
               and LAYOUT_SINCE[LAYOUT_CODES[lay]] <= version
               and not (code in SUBBYTE_CODES and (lay.startswith("grouped") or lay == "context_sparse"))
               and not (lay == "float_planes" and code not in FLOAT_CODES)]
    plans, reasons = [], []
    plain_k = None
    if {"dense", "sparse", "context_sparse"} & set(allowed):
        try:
            uniq, idx, counts = _plain_codebook(bits, esz)
            plain_k = len(uniq)
            if plain_k > 1 << limit:
                raise ValueError(f"{plain_k} distinct values need max_code_length >= "
                                 f"{int(np.ceil(np.log2(plain_k)))}")
            _keep_best(plans, [_Plain(uniq, idx, counts, esz, limit, lay == "sparse", big)
                               for lay in ("dense", "sparse") if lay in allowed])
            if "context_sparse" in allowed and (want or context_model) and 1 < len(uniq) <= MAX_CONTEXT_SYMBOLS:
                _keep_best(plans, [_ContextSparse(uniq, idx, counts, esz, limit, code)])
        except ValueError as exc:
            reasons.append(str(exc))
        idx = None  # the plans hold it (or not: _keep_best)
    if {"grouped_dense", "grouped_sparse"} & set(allowed) and (
            want is not None or axis is not None or plain_k is None or plain_k >= _GROUP_MIN_K):
        cache = {}  # the distinct (group, value) pairs of an axis serve both alignments
        hopeless = want is None and (plans or code in FLOAT_CODES)  # raw / float planes remain
        axes = [ax for ax in _group_axes(shape, axis) if not (hopeless and _grouped_cannot_win(bits, shape, ax, esz, code in FLOAT_CODES))]
        for ax, align in [(ax, al) for ax in axes for al in ("mode", "low")]:
            t = _group_tables(bits, code, shape, ax, align, cache)
            if align == "low":
                cache.clear()  # this axis is done (np.unique's pair indices: 8 B per element)
            if t is None or t[0].shape[1] > 1 << limit:
                reasons.append(f"grouping along axis {ax} needs more than {min(MAX_SYMBOLS, 1 << limit)} "
                               "entries per group")
                continue
            _keep_best(plans, [_Grouped(t[0], t[1], t[2], ax, esz, limit, lay == "grouped_sparse", big)
                               for lay in ("grouped_dense", "grouped_sparse") if lay in allowed])
            del t
    # §12 stores N * (esz - 1) raw bytes at least: skip it when a codebook layout is smaller
    if "float_planes" in allowed and (want is not None or not plans
                                      or min(p.size for p in plans) > n * (esz - 1)):
        _keep_best(plans, [_Planes(bits, esz, limit)])
    plans = [p for p in plans if p.size != float("inf")]
    if not allowed:
        reasons.append(f"layout {want!r} needs format version >= {LAYOUT_SINCE[LAYOUT_CODES[want]]} "
                       f"and a matching dtype (FORMAT.md §10-§13), not version {version} "
                       f"{DTYPE_TABLE[code][0]}")
    elif want is not None and not plans and big:
        reasons.append(f"a {want} tensor whose codes are all zero-bit is limited to {MAX_ZERO_BIT_OUTPUT} "
                       "bytes (FORMAT.md §9); use layout=None")
    return plans, reasons


def _assemble(a, code, version, layout, body, streams=(b"",) * 4, plane=b""):
    """§2 header, checksum (§8 / §8.1), body, stream sizes, streams, plane."""
    prefix = MAGIC + struct.pack("<BBBB", version, code, a.ndim, layout) + struct.pack(f"<{a.ndim}I", *a.shape)
    tail = body + (struct.pack("<4I", *(len(s) for s in streams)) if a.size else b"")
    data = b"".join(streams) + plane
    if version == 1:
        check = struct.pack("<II", *checksum(a.reshape(-1), prefix + b"\0" * 8 + tail))
    else:
        check = struct.pack("<I", zlib.crc32(data, zlib.crc32(tail, zlib.crc32(prefix))))
    return prefix + check + tail + data


def encode(array, *, layout=None, max_code_length=MAX_CODE_LENGTH, version=VERSION, axis=None,
           context_model=False):
    """Packs a numeric array into the format of docs/FORMAT.md and returns the bytes.

    Args:
      array: array-like of float32, float16, bfloat16, int32, int16, int8, uint8 or (as
        ``ml_dtypes`` arrays) int4, uint4, int2; rank <= 8. Tensors with at most 4096 distinct
        values (compared bit-exactly, e.g. after weight sharing) use a codebook; unclustered
        floats use the float-planes layout (§12).
      layout: ``None`` picks the smallest layout the format version allows (``"context_sparse"``
        only with ``context_model=True``); or one of
        ``"dense"``, ``"sparse"`` (§5, §6), ``"grouped_dense"``, ``"grouped_sparse"`` (§11: a
        codebook per slice along ``axis``, for per-channel quantized tensors), ``"float_planes"``
        (§12), ``"context_sparse"`` (§14: several index codes chosen by the previous kept
        value's sign class; smaller on pruned kernels whose neighbouring weights share a sign,
        ~20 % slower to decode than ``"sparse"``) to force it.
      max_code_length: Huffman code length limit, 1..12 (lower = smaller decode table).
      version: format version to write (§10): 2 (default) or 1 for apps that ship a decoder that
        reads version 1 only (dense/sparse layouts of the six original types; Fletcher checksum).
      axis: the axis of the grouped layouts (default: try 0 and the last axis).
      context_model: let ``layout=None`` also pick ``"context_sparse"`` when it is smaller (off by
        default: it decodes ~0.8x as fast as ``"sparse"``, FORMAT.md §14).

    Raises:
      ValueError: unsupported dtype, too many distinct values, too large, a layout or dtype the
        version cannot express, or bad arguments.

    Example:
      >>> import numpy as np
      >>> from dc_keras import codec
      >>> w = np.zeros((300, 100), np.float32); w[::7, ::3] = 0.25
      >>> data = codec.encode(w)
      >>> len(data) < w.nbytes // 20
      True
      >>> bool(np.array_equal(codec.decode(data), w))
      True
    """
    if layout is not None and layout not in LAYOUT_CODES:
        raise ValueError(f"layout must be None or one of {sorted(LAYOUT_CODES)}, got {layout!r}")
    if not (isinstance(max_code_length, (int, np.integer)) and 1 <= max_code_length <= MAX_CODE_LENGTH):
        raise ValueError(f"max_code_length must be an int in 1..{MAX_CODE_LENGTH}, got {max_code_length!r}")
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    a, code, bits = _to_array(array, version)
    if a.size == 0:
        return _assemble(a, code, version, 0, struct.pack("<H", 0))
    plans, reasons = _plans(a, code, bits, layout, int(max_code_length), version, axis, bool(context_model))
    if not plans:
        raise ValueError("; ".join(reasons) or "no layout can hold this tensor")
    best = min(plans, key=lambda p: p.size)
    body, streams, plane = best.parts()
    return _assemble(a, code, version, best.layout, body, streams, plane)
