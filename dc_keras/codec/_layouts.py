"""The encoder's layout plans (docs/FORMAT.md §5, §6, §11, §12, §13; §17, §18 in their modules) and ``encode``.

Each plan knows its exact packed size before it writes anything, so ``encode`` can pick the
smallest layout the requested format version can express.
"""
import math
import struct
import zlib

import numpy as np

from ._encode import (_PACK_CHUNK as _CHUNK, _Code, chunked_bincount, _context_plan, segment_starts, _descriptor, _pack_entries, _sparse_plan, _streams_dense,
                      _streams_sparse, _unique_small, _entropy_bits, _floor_bits, checksum)
from ._int_planes import IntPlanes
from ._sparse_planes import MIN_SHARE, SparsePlanes, background, rest_plane_bytes
from ._format import (BOOL_CODE, MAX_CONTEXT_SYMBOLS, DTYPE_TABLE, FLOAT_CODES, LAYOUT_CODES, LAYOUT_NAMES,
                      LAYOUT_SINCE, MAGIC, MAX_CODE_LENGTH, MAX_ELEMENTS, MAX_RANK, MAX_SYMBOLS,
                      MAX_ZERO_BIT_OUTPUT, PLANE_SYMBOLS, VERSION, VERSIONS,
                      cb_esize, context_free_run, dtype_bits, dtype_code, layout_allowed, output_bytes)

_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_STREAM_SIZES = 16  # §7: 4 x u32


# ----------------------------------------------------------------------------------------------
# input
# ----------------------------------------------------------------------------------------------
def _to_array(array, version):
    """(little-endian C-contiguous array, dtype code, element bit patterns as unsigned ints,
    format version to write: ``version``, or for None the lowest that holds the dtype, §10)."""
    a = np.asarray(array)
    code = dtype_code(a.dtype.newbyteorder("=")) if a.dtype.kind in "fiuVb" else None
    if code is None:
        raise ValueError(f"unsupported dtype {a.dtype}: packed tensors hold float64, float32, float16, "
                         "bfloat16, int64, int32, int16, int8, uint64, uint32, uint16, uint8, bool, int4, "
                         "uint4 or int2")
    if version is None:  # §10: version 2 unless the dtype needs 3, so old decoders read the rest
        version = max(VERSION, DTYPE_TABLE[code][2])
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
    if code == BOOL_CODE and bits.size and int(bits.max()) > 1:  # §16: a decoder rejects other bytes
        raise ValueError(f"bool tensor holds the byte value {int(bits.max())}: bool elements must be 0 or 1 "
                         "(FORMAT.md §16); convert it with array.astype(bool) (or .view(np.uint8) to keep the bytes)")
    return a, code, bits, version


# ----------------------------------------------------------------------------------------------
# plans: each has .layout, .size (packed bytes after the check field) and .parts()
# ----------------------------------------------------------------------------------------------
class _Plain:
    """§5 dense / §6 sparse over one codebook (§3)."""

    _lead = b""  # body bytes before the codebook size (§11: the axis)

    def __init__(self, uniq, idx, counts, esz, limit, sparse, big):
        self.layout = LAYOUT_CODES["sparse" if sparse else "dense"]
        self.uniq, self.idx, self.esz = uniq, idx, esz
        if sparse:
            self.plan = _sparse_plan(idx, counts, limit, big)
            if self.plan["spare"]:  # §9: the 1-bit index code's second symbol (_sparse_plan)
                self.uniq = np.concatenate([uniq, np.array([uniq[0] ^ 1], uniq.dtype)])
            self.size = self.plan["size"] + 2 + len(self.uniq) * esz + _STREAM_SIZES
            return
        self.code = _Code(counts, limit)
        if big and self.code.max_len == 0:  # §9: a large constant tensor gets a 1-bit code
            spare = (uniq[0] ^ 1).astype(uniq.dtype)
            self.uniq = np.concatenate([uniq, np.array([spare], uniq.dtype)])
            self.code = _Code([len(idx), 0], limit, force_two=True)
        self.size = (self.code.bits + 7) // 8 + self.code.descriptor_size() + 2 + len(self.uniq) * esz \
            + _STREAM_SIZES

    def _codebook(self):
        return np.asarray(self.uniq, self.uniq.dtype.newbyteorder("<")).tobytes()  # no copy first

    def parts(self):
        """(body bytes before the stream sizes, list of 4 streams, trailing plane bytes)."""
        head = [self._lead, struct.pack("<H", self._k()), self._codebook()]
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

    def __init__(self, uniq, idx, counts, esz, limit, code, big):
        super().__init__(uniq, idx, counts, esz, limit, True, False)
        self.layout = LAYOUT_CODES["context_sparse"]
        key = _numeric_key(uniq, code)
        classes = (key < key[self.plan["bg"]]).astype(np.int64)
        self.ctx = _context_plan(self.plan, classes, 4, len(uniq), limit)
        if self.ctx is None or all(c.max_len == 0 for c in self.ctx["index_codes"]) \
                and self.plan["gap_code"].max_len == 0:
            self.size = float("inf")
            return
        gap, codes = self.plan["gap_code"], self.ctx["index_codes"]

        def free_run():
            return context_free_run(gap.max_len, gap.single, classes, [c.max_len for c in codes],
                                    [c.single for c in codes])

        if big and free_run() is None:
            # A context no entry has gets a zero-bit code whose symbol (0 by default) no entry
            # uses either; symbol 0 below the background makes a cycle the data never takes:
            # the background's symbol leads to the segments' first context instead (FORMAT.md §9).
            unused = np.bincount(self.ctx["ctx"], minlength=len(codes)) == 0
            for code in (c for c, u in zip(codes, unused) if u and c.max_len == 0):
                code.single = int(self.plan["bg"])
            if free_run() is None:
                self.size = float("inf")  # §9: zero-bit entries that can repeat forever, over 16 MiB
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
        super().__init__(tables.reshape(-1), idx, counts, esz, limit, sparse, big)  # uniq: the tables, group by group
        self._lead = bytes([axis])
        self.layout = LAYOUT_CODES["grouped_sparse" if sparse else "grouped_dense"]
        if len(self.uniq) != tables.size:  # no spare-entry trick for groups
            self.size = float("inf")
        self.size += 1  # the axis byte (the codebook size already counts every group's table)

    def _k(self):
        return self.tables.shape[1]

    def release(self):
        """Also drops the tables: up to C x 4096 entries, as big as the tensor when unclustered."""
        super().release()
        self.tables = self.uniq = None


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
        counts = chunked_bincount(self.sym, PLANE_SYMBOLS)
        self.symbols_over_limit = 0  # symbols used when no code of <= limit bits holds them (encode's reason)
        try:
            self.code = _Code(counts, limit)
        except ValueError:  # more exponent symbols than codes of <= limit bits tell apart
            self.symbols_over_limit, self.size = int(np.count_nonzero(counts)), float("inf")
            return
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
    if w == 64:  # §16: 8-byte values, keyed in int64 without overflow
        return _numeric_key64(np.asarray(bits, np.uint64), DTYPE_TABLE[code][0])
    u = bits.astype(np.int64)
    if code in FLOAT_CODES:
        return np.where(u >> (w - 1), -(u & ((1 << (w - 1)) - 1)) - 1, u)
    if DTYPE_TABLE[code][0].startswith("int"):
        return np.where(u >> (w - 1), u - (1 << w), u)
    return u


def _numeric_key64(u, name):
    """_numeric_key of 64-bit patterns ``u`` (uint64) of an int64, uint64 or float64 tensor."""
    if name == "int64":
        return u.view(np.int64)
    if name == "uint64":
        return (u ^ np.uint64(1 << 63)).view(np.int64)
    mag = (u & np.uint64((1 << 63) - 1)).view(np.int64)  # float64: sign-magnitude
    return np.where(u >> np.uint64(63) != 0, -mag - 1, mag)


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


def _group_modes(cnt, start):
    """Pair index of each group's most frequent value (the smallest on ties): pairs sorted by
    group then value, group g's are start[g]..start[g + 1] - 1."""
    group = np.repeat(np.arange(len(start) - 1), np.diff(start))
    return np.lexsort((-cnt, group))[start[:-1]]


def _group_stats(cnt, start, mode):
    """(sum of c log2 c over each group's value counts c, each group's largest count): what
    ``_grouped_floor`` needs of the counts (float64 and int64, one per group; no group is empty)."""
    c = cnt.astype(np.float64)
    return np.add.reduceat(c * np.log2(c), start[:-1]), np.asarray(cnt[mode], np.int64)


def _pair_chunks(start, offset, per_group):
    """(a, b, i + offset[group of i] for the pairs i in a..b-1) over whole groups, about
    ``_CHUNK`` pairs at a time (a group has at most ``per_group``): int64 one chunk at a time."""
    sizes = np.diff(start)
    step = max(1, _CHUNK // max(1, per_group))
    for g0 in range(0, len(sizes), step):
        g1 = min(g0 + step, len(sizes))
        a, b = int(start[g0]), int(start[g1])
        pos = np.repeat(offset[g0:g1], sizes[g0:g1])
        pos += np.arange(a, b)
        yield a, b, pos


def _distinct_per_group(bits, code, shape3, stats=False):
    """Distinct (group, value) pairs sorted by group then value: (``start``: group g's pairs are
    start[g]..start[g + 1] - 1, bit pattern of each pair (``bits``' dtype), ``mode``: pair index
    of each group's most frequent value, ``index_of``: index_of(shift) is the uint16 array of
    (rank of the element's value in its group + shift[its group]), _group_stats's per-group
    figures if ``stats`` else None), or None when a group has more than MAX_SYMBOLS distinct
    values. ``shape3``: (outer, c, inner), the group of element j is (j // inner) % c."""
    esz = bits.dtype.itemsize
    outer, c, inner = shape3
    if not (esz <= 2 and c << (8 * esz) <= 1 << 22):
        return _distinct_per_group_wide(bits, code, shape3, stats=stats)
    v = 1 << (8 * esz)  # small alphabets: histogram, no sort
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
    start = np.searchsorted(dist, np.arange(c + 1) * v)

    def index_of(shift):
        table = np.zeros(c * v, np.uint16)
        for a, b, pos in _pair_chunks(start, shift - start[:-1], v):
            table[dist[a:b]] = pos
        out = np.empty(len(bits), np.uint16)
        for a, b, comb in combs():
            out[a:b] = table[comb]
        return out

    mode = _group_modes(hist[dist], start)
    return (start, bits_of_rank[dist % v].astype(bits.dtype), mode, index_of,
            _group_stats(hist[dist], start, mode) if stats else None)


def _unique_stable(keys):
    """``np.unique(keys, return_inverse=True, return_counts=True)`` of a 1-D int64 array, by a
    stable sort: np.unique's default one took 5-10x as long on keys with many repeats (the
    pairs of clustered groups: 0.15-0.25 s against 0.01-0.05 s for 256 K keys)."""
    perm = np.argsort(keys, kind="stable")
    ordered = keys[perm]
    new = np.empty(len(keys), bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    first = np.flatnonzero(new)
    inv = np.empty(len(keys), np.int64)
    inv[perm] = np.cumsum(new) - 1
    return ordered[first], inv, np.diff(np.append(first, len(keys)))


def _distinct_per_group_wide(bits, code, shape3, stats=False):
    """_distinct_per_group for alphabets too wide for a histogram (int32, float32, or > 64
    groups of a 16-bit type), by blocks of whole groups of about ``_CHUNK`` elements (a bigger
    group: by parts, counted first, ranked second): a block's sort costs int64 temporaries of
    its own size only, and each element keeps just its uint16 rank in its group. One np.unique
    over the whole tensor took ~14x an int32 tensor's size (int16: ~29x)."""
    outer, c, inner = shape3
    v3 = bits.reshape(shape3)
    rank = np.empty(len(bits), np.uint16)  # < MAX_SYMBOLS, or the result is None
    r3 = rank.reshape(shape3)
    size = outer * inner  # elements per group
    if size <= _CHUNK:
        m = _CHUNK // size
        blocks = [[(slice(None), slice(g, min(g + m, c)), slice(None))] for g in range(0, c, m)]
    elif inner >= _CHUNK:
        blocks = [[(slice(o, o + 1), slice(g, g + 1), slice(a, a + _CHUNK)) for o in range(outer)
                   for a in range(0, inner, _CHUNK)] for g in range(c)]
    else:
        rows = _CHUNK // inner
        blocks = [[(slice(o, o + rows), slice(g, g + 1), slice(None)) for o in range(0, outer, rows)]
                  for g in range(c)]

    def combs(sl):  # (group in the block) * 2^34 + numeric key + 2^33 >= 0: sorts by group, then value
        key = _numeric_key(v3[sl], code)
        key += (np.arange(key.shape[1], dtype=np.int64) << 34)[None, :, None] + (1 << 33)
        return key

    starts, modes, group_stats, done = [], [], [], 0
    ubits = np.empty(len(bits), bits.dtype)  # the pairs' values (<= one per element), cut to size at the end
    for block in blocks:
        if len(block) == 1:  # whole groups: one sort gives the distinct pairs and the ranks
            comb = combs(block[0])
            u, inv, cnt = _unique_stable(comb.reshape(-1))
            start = np.searchsorted(u, np.arange(comb.shape[1] + 1, dtype=np.int64) << 34)
            if np.diff(start).max() > MAX_SYMBOLS:
                return None
            r3[block[0]] = inv.reshape(comb.shape) - start[:-1][None, :, None]
            del comb, inv
        else:  # one group in parts: its distinct values (<= MAX_SYMBOLS) first, then the ranks
            u, cnt = np.zeros(0, np.int64), np.zeros(0, np.int64)
            for sl in block:
                part, _, part_cnt = _unique_stable(combs(sl).reshape(-1))
                if len(part) > MAX_SYMBOLS:
                    return None
                u, inv = np.unique(np.concatenate([u, part]), return_inverse=True)
                cnt = np.bincount(inv.reshape(-1), np.concatenate([cnt, part_cnt]), len(u)).astype(np.int64)
                if len(u) > MAX_SYMBOLS:
                    return None
            for sl in block:
                r3[sl] = np.searchsorted(u, combs(sl))
            start = np.array([0, len(u)])
        starts.append(start[:-1] + done)
        modes.append(_group_modes(cnt, start))
        if stats:
            group_stats.append(_group_stats(cnt, start, modes[-1]))
        modes[-1] += done
        ubits[done:done + len(u)] = _from_numeric_key((u & ((1 << 34) - 1)) - (1 << 33), code)
        done += len(u)
    start = np.concatenate(starts + [[done]])
    ubits.resize(done, refcheck=False)  # in place (no view of it exists): concatenating parts held them twice

    def index_of(shift):
        if not shift.any():  # "low" alignment: the ranks are the indices (read only, as plans use them)
            return rank
        shift = shift.astype(np.uint16)
        out = np.empty(len(bits), np.uint16)
        for a, b, g in _group_chunks(len(bits), c, inner, 1):
            np.add(rank[a:b], shift[g], out=out[a:b])
        return out

    group_stats = tuple(np.concatenate(part) for part in zip(*group_stats)) if stats else None
    return start, ubits, np.concatenate(modes), index_of, group_stats


def _group_tables(found, align="mode"):
    """§11 tables from ``found``, the distinct values of each group along one axis
    (_distinct_per_group): None when some group would need more than MAX_SYMBOLS entries, else
    (K, build): build() makes (tables (C, K), per-element index, index counts). Each group's
    values are sorted; ``align`` "mode" puts every group's most frequent value at one index b
    (ranks then correlate around it, and b can be the sparse background), "low" aligns the
    smallest values."""
    if found is None:
        return None
    start, ubits, mode, index_of, _ = found
    # anchor = each group's most frequent value; entries are aligned so that anchors share index b
    anchor = mode if align == "mode" else start[:-1]
    below, above = anchor - start[:-1], start[1:] - anchor - 1
    b = int(below.max())
    k = b + 1 + int(above.max())
    if k > MAX_SYMBOLS:
        return None

    def build():
        shift = b - below  # table index of each group's smallest value
        tables = np.repeat(ubits[anchor][:, None], k, axis=1)  # unused entries repeat the anchor
        flat = tables.reshape(-1)
        for a, z, pos in _pair_chunks(start, np.arange(len(anchor), dtype=np.int64) * k + shift - start[:-1], k):
            flat[pos] = ubits[a:z]
        idx = index_of(shift)  # table indices < k <= 4096: 2 B per element
        return tables, idx, chunked_bincount(idx, k)

    return k, build


def _plain_codebook(bits, esz, hist=None):
    """(sorted distinct bit patterns, index of each element, counts); ValueError if > 4096.
    ``hist``: the count of each bit pattern of a 1 or 2-byte tensor, if already made."""
    if esz <= 2:
        hist = chunked_bincount(bits, 1 << (8 * esz)) if hist is None else hist
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
_GROUPED_FIXED = 1 + 2 + _STREAM_SIZES  # §11 bytes besides the tables and the codes: axis, K, stream sizes


def _group_axes(shape, axis):
    if axis is not None:
        if not (isinstance(axis, (int, np.integer)) and -len(shape) <= axis < len(shape)):
            raise ValueError(f"axis {axis!r} is not an axis of a tensor of shape {shape}")
        return [int(axis) % len(shape)]
    # TFLite's quantized_dimension: 0 for conv / fully-connected, the last one for depthwise
    return sorted({ax for ax in (0, len(shape) - 1) if len(shape) >= 2 and shape[ax] > 1})


def _grouped_cannot_win(k0, n, c, esz, floats):
    """Cheap test before the full per-group count (seconds on millions of elements): every group's
    table has at least as many entries as group 0 has distinct values K0, so tables of
    C * K0 * esz bytes that reach the raw size rule the axis out (so does K0 > 4096). For floats
    the bar is the float-planes layout's raw plane, N * (esz - 1) bytes: tables that large mean an
    unclustered tensor (~N / C distinct values per group), which §11 is not for."""
    bar = n * (esz - 1 if floats else esz)
    return k0 > MAX_SYMBOLS or c * k0 * esz >= bar


def _group0_distinct(bits, shape, axis):
    """How many distinct values the first group along ``axis`` holds: every group's table has at
    least that many entries."""
    return len(np.unique(bits.reshape(shape).take(0, axis=axis)))


# ----------------------------------------------------------------------------------------------
# lower bounds of a layout's size (bytes after the check field, as plans' .size), from counts
# alone: encode(max_bytes=...) does not make a layout whose bound exceeds the budget. A Huffman
# code of symbols with counts c takes at least sum(c log2(total / c)) bits (Shannon), and a
# descriptor (§4) at least 2 bytes.
# ----------------------------------------------------------------------------------------------
_MIN_DESCRIPTOR = 2


def _sparse_floor(counts, esz, contexts=1):
    """§6 (``contexts`` = 1) or §14 (4): the index codes code every element but the background's
    (fillers only add bits); §14's contexts save at most log2(contexts) bits per element coded
    (the empirical mutual information of an index and its context)."""
    stored = np.asarray(counts, np.int64).copy()
    stored[int(np.argmax(stored))] = 0  # the background, as _sparse_plan picks it
    h = _entropy_bits(stored) - np.log2(contexts) * int(stored.sum())
    k = len(counts)
    fixed = 8 + 2 + 16 + _MIN_DESCRIPTOR * (1 + contexts) + (0 if contexts == 1 else 13 + (k + 1) // 2)
    return _floor_bits(h, 64.0 * stored.sum()) / 8 + fixed + k * esz


def _grouped_floor(tables_bytes, stats, per_group, sparse):
    """§11 plan whose tables take ``tables_bytes`` (with the axis, K and the stream sizes): its one
    index code costs at least the per-group entropy of the values (sharing a code across groups
    costs bits, not saves them); sparse codes every element but one value per group, which saves
    at most per_group * H2(p) bits, p: the group's largest count share (H2 rises up to p = 1/2)."""
    clog, top = stats
    total = len(clog) * per_group * np.log2(per_group)
    bits = total - float(clog.sum())
    fixed = _MIN_DESCRIPTOR
    if sparse:
        p = np.minimum(top / per_group, 0.5)
        q = 1.0 - p
        bits -= per_group * float(-(p * np.log2(p) + q * np.log2(q)).sum())
        fixed += 8 + _MIN_DESCRIPTOR
    return tables_bytes + fixed + _floor_bits(bits, total) / 8


def _keep_best(plans, new, at=None, budget=None):
    """Inserts ``new`` into ``plans`` (at the end or before plans[at]: the list keeps the order of
    the layouts tried, which breaks ties) and releases the per-element arrays (2 B or more per
    element each) of every plan but the one ``encode`` would pick now, the first smallest: it is
    the first smallest of the final list too if any is. Up to 8 plans otherwise held theirs
    together. A plan over ``budget`` releases them too: encode will not write it."""
    if at is None:
        plans += new
    else:
        plans[at:at] = new
    best = min(plans, key=lambda p: p.size, default=None)
    for p in plans:
        if p is not best or budget is not None and p.size > budget:
            p.release()


def _over_limit(layout, used, what):
    """The reason a layout is out: its code has more symbols than ``max_code_length`` tells apart."""
    return f"layout {layout!r} needs max_code_length >= {int(np.ceil(np.log2(used)))} ({used} {what})"


def _plans(a, code, bits, want, limit, version, axis, context_model=False, budget=None, choose=None, cap=None):
    """Every plan the request allows, plus the reason the others are out (for the error) and the
    smallest lower bound of the layouts not made for ``budget`` (inf if none): with a budget (bytes
    after the check field) a layout whose bound exceeds it is not made. ``choose``: None (every
    layout) or the set of layout names ``encode(layouts=...)`` allows. Only the smallest plan
    keeps its per-element arrays (_keep_best). ``cap``: the highest version whose layouts may be
    used (``encode(version=None)``: the newest; the messages name ``version``, the lowest)."""
    skipped = [float("inf")]

    def over(bound):  # a layout that cannot fit the budget: not made, its bound kept
        if budget is not None and bound > budget:
            skipped.append(bound)
            return True
        return False

    esz, n, shape = cb_esize(code), a.size, a.shape
    big = output_bytes(code, n) > MAX_ZERO_BIT_OUTPUT
    allowed = [lay for lay in LAYOUT_NAMES.values() if (want is None or lay == want) and (choose is None or lay in choose)
               and LAYOUT_SINCE[LAYOUT_CODES[lay]] <= (cap or version) and layout_allowed(code, LAYOUT_CODES[lay])]
    plans, reasons = [], []
    plain_k = value_counts = mode = None
    if {"dense", "sparse", "context_sparse"} & set(allowed):
        if esz == 2:  # the count of each bit pattern: the codebook's, and §17's base predictor's without a pass
            value_counts = chunked_bincount(bits, 1 << 16)
        try:
            uniq, idx, counts = _plain_codebook(bits, esz, value_counts)
            plain_k, mode = len(uniq), uniq[int(np.argmax(counts))]
            if plain_k > 1 << limit:
                raise ValueError(f"{plain_k} distinct values need max_code_length >= "
                                 f"{int(np.ceil(np.log2(plain_k)))}")
            _keep_best(plans, [_Plain(uniq, idx, counts, esz, limit, lay == "sparse", big)
                               for lay in ("dense", "sparse") if lay in allowed
                               and not (lay == "sparse" and over(_sparse_floor(counts, esz)))], None, budget)
            if "context_sparse" in allowed and (want or context_model) and 1 < len(uniq) <= MAX_CONTEXT_SYMBOLS \
                    and not over(_sparse_floor(counts, esz, 4)):
                _keep_best(plans, [_ContextSparse(uniq, idx, counts, esz, limit, code, big)], None, budget)
        except ValueError as exc:
            reasons.append(str(exc))
        idx = None  # the plans hold it (or not: _keep_best)
    if {"grouped_dense", "grouped_sparse"} & set(allowed) and (
            want is not None or axis is not None or plain_k is None or plain_k >= _GROUP_MIN_K):
        hopeless = want is None and (plans or code in FLOAT_CODES and "float_planes" in allowed)  # raw / float planes remain
        for ax in _group_axes(shape, axis):
            c, inner = int(shape[ax]), int(np.prod(shape[ax + 1:], dtype=np.int64))
            k0 = _group0_distinct(bits, shape, ax) if hopeless or budget is not None else None
            if hopeless and _grouped_cannot_win(k0, n, c, esz, code in FLOAT_CODES):
                continue
            if budget is not None:  # group 0's distinct values bound every group's table (K >= K0)
                if k0 > min(MAX_SYMBOLS, 1 << limit):  # what counting every group would find, for both alignments
                    reasons += [f"grouping along axis {ax} needs more than {min(MAX_SYMBOLS, 1 << limit)} "
                                "entries per group"] * 2
                    continue
                if over(c * k0 * esz + _GROUPED_FIXED + _MIN_DESCRIPTOR):
                    continue
            found = _distinct_per_group(bits, code, (n // (c * inner), c, inner), budget is not None)  # both alignments
            at = len(plans)  # the "mode" plans go before the "low" ones, made first
            for align in ("low", "mode"):  # unclustered groups: low's tables are smaller, mode's not made
                t = _group_tables(found, align)
                if t is None or t[0] > 1 << limit:
                    reasons.append(f"grouping along axis {ax} needs more than {min(MAX_SYMBOLS, 1 << limit)} "
                                   "entries per group")
                    continue
                fixed = c * t[0] * esz + _GROUPED_FIXED
                if fixed > min((p.size for p in plans), default=float("inf")):
                    continue  # its tables alone are bigger than a plan made: it cannot be picked
                lays = [lay for lay in ("grouped_dense", "grouped_sparse") if lay in allowed
                        and not (budget is not None
                                 and over(_grouped_floor(fixed, found[4], n // c, lay == "grouped_sparse")))]
                if not lays:
                    continue
                tables, idx, counts = t[1]()
                _keep_best(plans, [_Grouped(tables, idx, counts, ax, esz, limit, lay == "grouped_sparse", big)
                                   for lay in lays], at if align == "mode" else None, budget)
                del tables, idx
            found = t = None  # each element's rank in its group (2 B), each pair's value (t's build has them)
    # §12 stores N * (esz - 1) raw bytes at least: skip it when a codebook layout is smaller
    if "float_planes" in allowed and (want is not None or not plans or min(p.size for p in plans) > n * (esz - 1)) \
            and not over(n * (esz - 1) + _STREAM_SIZES + _MIN_DESCRIPTOR):
        plan = _Planes(bits, esz, limit)
        _keep_best(plans, [plan], None, budget)
        if plan.symbols_over_limit:
            reasons.append(_over_limit("float_planes", plan.symbols_over_limit, "exponent symbols"))
    # §18: tried when the background and its sign flip make 1/16 of the elements, and not when a plan
    # made is smaller than its rest plane alone (a clustered tensor: §6 holds it)
    if "sparse_planes" in allowed:
        if mode is None and value_counts is not None:
            mode = int(np.argmax(value_counts))
        bg, share = background(bits, mode)
        floor = rest_plane_bytes(n - share, esz) + esz + 10 + _STREAM_SIZES + 2 * _MIN_DESCRIPTOR
        if (want is not None or share * MIN_SHARE >= n and min((p.size for p in plans), default=float("inf")) > floor) \
                and not over(floor):
            plan = SparsePlanes(bits, esz, bg, limit, big)
            _keep_best(plans, [plan], None, budget)
            if plan.symbols_over_limit:
                reasons.append(_over_limit("sparse_planes", plan.symbols_over_limit, "symbols"))
    # §17 (exact size once its class counts are known); not picked for one distinct value when a
    # codebook plan holds it: one entry codes it with zero bits, layout 6's one byte less would not
    # pay for version 4. Made last: its pass over the elements stops once the size bounded from the
    # classes counted so far is over the budget or no smaller than the best plan made (it would not
    # be picked: the first smallest is); its size is then that bound (IntPlanes).
    if "int_planes" in allowed and not (want is None and plain_k == 1 and plans):
        known = min((p.size for p in plans), default=float("inf"))

        def cannot_win(size):
            return size >= known or budget is not None and size > budget

        plan = IntPlanes(bits, code, limit, LAYOUT_CODES["int_planes"], big, cannot_win, value_counts)
        if not over(plan.size) and plan.size < known:  # then exact: what cannot_win=None would make
            _keep_best(plans, [plan], None, budget)
        elif plan.size == float("inf") and plan.classes_over_limit:
            reasons.append(_over_limit("int_planes", plan.classes_over_limit, "value classes"))
    plans = [p for p in plans if p.size != float("inf")]
    if not allowed and want is None:  # encode(layouts=...) names none this version and dtype allow
        newer = {lay: LAYOUT_SINCE[LAYOUT_CODES[lay]] for lay in sorted(choose) if layout_allowed(code, LAYOUT_CODES[lay])
                 and (context_model or lay != "context_sparse")}  # listed, holding the dtype: from a later version
        needs = ": " + ", ".join(f"{lay!r} needs format version >= {v}" for lay, v in newer.items()) if newer else ""
        fix = f"use version={min(newer.values())} or None, or " if newer else ""
        reasons.append(f"none of layouts {sorted(choose)} holds a format version {version} {DTYPE_TABLE[code][0]} "
                       f"tensor{needs} (FORMAT.md §10-§17); {fix}allow 'dense' and 'sparse', which hold every type")
    elif not allowed and LAYOUT_SINCE[LAYOUT_CODES[want]] <= version and DTYPE_TABLE[code][2] >= 3:
        reasons.append(f"layout {want!r} does not hold {DTYPE_TABLE[code][0]} tensors (FORMAT.md §16); "
                       "use layout=None")
    elif not allowed and want == "int_planes":
        reasons.append(f"layout 'int_planes' holds int16, uint16, int32, uint32, int64 and uint64 tensors of "
                       f"format version >= 4 (FORMAT.md §17), not version {version} {DTYPE_TABLE[code][0]}; "
                       + ("use version=4 or None" if layout_allowed(code, LAYOUT_CODES[want]) else "use layout=None"))
    elif not allowed and want == "sparse_planes":
        reasons.append(f"layout 'sparse_planes' holds float32, float16 and bfloat16 tensors of format version >= 5 "
                       f"(FORMAT.md §18), not version {version} {DTYPE_TABLE[code][0]}; "
                       + ("use version=5 or None" if layout_allowed(code, LAYOUT_CODES[want]) else "use layout=None"))
    elif not allowed:  # the message of the encoders before version 3 (tests/test_codec_identity.py)
        reasons.append(f"layout {want!r} needs format version >= {LAYOUT_SINCE[LAYOUT_CODES[want]]} "
                       f"and a matching dtype (FORMAT.md §10-§13), not version {version} "
                       f"{DTYPE_TABLE[code][0]}")
    elif want == "context_sparse" and not plans and big:
        reasons.append(f"a {want} tensor whose zero-bit codes can follow one another forever (its kept "
                       f"entries at one stride, with zero-bit contexts forming a cycle) is limited to "
                       f"{MAX_ZERO_BIT_OUTPUT} bytes (FORMAT.md §9); use layout=None")
    elif want is not None and not plans and big:
        reasons.append(f"a {want} tensor whose codes are all zero-bit is limited to {MAX_ZERO_BIT_OUTPUT} "
                       "bytes (FORMAT.md §9); use layout=None")
    return plans, reasons, min(skipped)


def _assemble(a, code, version, layout, body, streams=(b"",) * 4, plane=b""):
    """§2 header, checksum (§8 / §8.1), body, stream sizes, streams, plane."""
    prefix = MAGIC + struct.pack("<BBBB", version, code, a.ndim, layout) + struct.pack(f"<{a.ndim}I", *a.shape)
    sizes = struct.pack("<4I", *(len(s) for s in streams)) if a.size else b""
    data = [*streams, plane]  # joined once, with the rest: the codebook and streams are not copied twice
    if version == 1:
        check = struct.pack("<II", *checksum(a.reshape(-1), b"".join([prefix, b"\0" * 8, body, sizes])))
    else:
        crc = zlib.crc32(prefix)
        for part in [body, sizes, *data]:
            crc = zlib.crc32(part, crc)
        check = struct.pack("<I", crc)
    return b"".join([prefix, check, body, sizes, *data])


class MaxBytesError(ValueError):
    """``encode(..., max_bytes=M)``: the packed tensor would take more than M bytes.

    ``packed_bytes`` is its size when ``exact``, else a lower bound of it: the layouts that could
    not fit were not made (their size bounded from counts), nor was the output written.
    """

    def __init__(self, max_bytes, packed_bytes, exact):
        self.max_bytes, self.packed_bytes, self.exact = int(max_bytes), int(packed_bytes), bool(exact)
        super().__init__(f"packs to {'' if exact else 'at least '}{packed_bytes} B, more than "
                         f"max_bytes = {max_bytes}: keep the tensor as it is, or pass a larger max_bytes")

    def __reduce__(self):
        return type(self), (self.max_bytes, self.packed_bytes, self.exact)


def encode(array, *, layout=None, max_code_length=MAX_CODE_LENGTH, version=None, axis=None,
           context_model=False, max_bytes=None, layouts=None):
    """Packs a numeric array into the format of docs/FORMAT.md and returns the bytes.

    Args:
      array: array-like of float32, float16, bfloat16, int32, int16, int8, uint8, (as
        ``ml_dtypes`` arrays) int4, uint4, int2, or (format version 3, §16) float64, int64,
        uint64, uint32, uint16, bool; rank <= 8. Tensors with at most 4096 distinct
        values (compared bit-exactly, e.g. after weight sharing) use a codebook; unclustered
        floats use the float-planes layout (§12), pruned unclustered floats the sparse
        float-planes layout (§18, format version 5) and unclustered 16 to 64-bit integers the
        integer-planes layout (§17, format version 4) where they are smaller.
      layout: ``None`` picks the smallest layout the format version allows (``"context_sparse"``
        only with ``context_model=True``); or one of
        ``"dense"``, ``"sparse"`` (§5, §6), ``"grouped_dense"``, ``"grouped_sparse"`` (§11: a
        codebook per slice along ``axis``, for per-channel quantized tensors), ``"float_planes"``
        (§12), ``"context_sparse"`` (§14: several index codes chosen by the previous kept
        value's sign class; smaller on pruned kernels whose neighbouring weights share a sign,
        ~20 % slower to decode than ``"sparse"``), ``"int_planes"`` (§17: int16 to uint64, each
        value's residual as a Huffman-coded bit length and raw low bits; format version 4),
        ``"sparse_planes"`` (§18: the positions of the elements other than the most frequent one
        as gaps, each of those as §12's exponent code and raw bits; float32, float16, bfloat16;
        format version 5) to force it.
      max_code_length: Huffman code length limit, 1..12 (lower = smaller decode table).
      version: format version to write (§10). Default None: the lowest that holds the tensor, i.e.
        2, or 3 for the types version 3 added (§16), or 4 when the integer-planes layout (§17)
        is picked, or 5 when the sparse float-planes layout (§18) is (each only where it is
        smaller than every older layout), so decoders that read version 2 only still read every
        other tensor. 1 for apps that ship a decoder that reads version 1 only
        (dense/sparse layouts of the six original types; Fletcher checksum); 2 or 1 refuse the
        version 3 types; 3 and lower never write layout 6, 4 and lower never layout 7; 4 and 5 write
        that version for every tensor.
      axis: the axis of the grouped layouts (default: try 0 and the last axis).
      context_model: let ``layout=None`` also pick ``"context_sparse"`` when it is smaller (off by
        default: it decodes ~0.8x as fast as ``"sparse"``, FORMAT.md §14).
      max_bytes: ``None`` (default), or the most bytes the caller will use: a packed tensor that
        would be larger raises ``MaxBytesError`` instead, and layouts whose size bounded from
        counts alone exceeds it are not made (an unclustered 4096 x 4096 int32 tensor: ~0.1 s
        instead of ~5 s; the integer planes' pass over the values stops once their size bounded
        from the counts so far exceeds it, or reaches the smallest layout made). Output that fits
        is byte-identical to ``max_bytes=None``'s.
      layouts: ``None`` (default: every layout), or the layout names (as ``layout`` takes) that
        ``layout=None`` may pick from, the smallest of them: for a decoder built without some
        (docs/microcontrollers.md), e.g. ``("dense", "sparse")`` for one built with
        ``DC_CODEC_NO_GROUPED`` and ``DC_CODEC_NO_FLOAT_PLANES``. It only restricts the choice:
        ``"context_sparse"`` is still tried only with ``context_model=True``. Not with
        ``layout`` (that forces one). A tensor none of them holds (e.g. over 4096 distinct values
        without the grouped and float-planes layouts) raises ValueError.

    Raises:
      ValueError: unsupported dtype, too many distinct values, too large, a layout or dtype the
        version cannot express, or bad arguments.
      MaxBytesError: (a ValueError) the output would exceed ``max_bytes``; its ``packed_bytes``
        is the size or (``exact`` False) a lower bound of it.

    Example:
      >>> import numpy as np
      >>> from dc_keras import codec
      >>> w = np.zeros((300, 100), np.float32); w[::7, ::3] = 0.25
      >>> data = codec.encode(w)
      >>> len(data) < w.nbytes // 20
      True
      >>> bool(np.array_equal(codec.decode(data), w))
      True
      >>> scaled = (np.arange(64 * 64).reshape(64, 64) % 5 * np.arange(1, 65)[:, None]).astype(np.int16)
      >>> codec.info(codec.encode(scaled))["layout"]  # a codebook per row
      'grouped_dense'
      >>> codec.info(codec.encode(scaled, layouts=("dense", "sparse")))["layout"]
      'dense'
      >>> bias = np.random.default_rng(0).normal(0, 3000, 512).astype(np.int32)  # distinct values
      >>> packed = codec.encode(bias)
      >>> codec.info(packed)["layout"], packed[4], len(packed) < bias.nbytes // 2
      ('int_planes', 4, True)
      >>> codec.info(codec.encode(bias, version=3))["layout"]  # before version 4: a codebook
      'dense'
      >>> pruned = np.random.default_rng(0).normal(0, 0.05, (300, 100)).astype(np.float32)
      >>> pruned[np.abs(pruned) < 0.06] = 0  # ~77 % pruned, no clustering: every kept value distinct
      >>> packed = codec.encode(pruned)
      >>> codec.info(packed)["layout"], packed[4], len(packed) < pruned.nbytes // 4
      ('sparse_planes', 5, True)
      >>> noise = np.random.default_rng(0).integers(-2**31, 2**31, (64, 64)).astype(np.int32)
      >>> try:
      ...     codec.encode(noise, max_bytes=noise.nbytes - 1)
      ... except codec.MaxBytesError as e:
      ...     print(e.packed_bytes >= noise.nbytes)
      True
    """
    if layout is not None and layout not in LAYOUT_CODES:
        raise ValueError(f"layout must be None or one of {sorted(LAYOUT_CODES)}, got {layout!r}")
    if isinstance(max_code_length, (bool, np.bool_)) or not (
            isinstance(max_code_length, (int, np.integer)) and 1 <= max_code_length <= MAX_CODE_LENGTH):
        raise ValueError(f"max_code_length must be an int in 1..{MAX_CODE_LENGTH}, got {max_code_length!r}")
    if version is not None and (isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer))
                                or version not in VERSIONS):  # True and 1.0 == 1: refused as pack refuses them
        raise ValueError(f"version must be None (the lowest that holds the dtype) or one of {VERSIONS}, "
                         f"got {version!r}")
    if max_bytes is not None and not (isinstance(max_bytes, (int, np.integer)) and not isinstance(max_bytes, bool)
                                      and max_bytes >= 0):
        raise ValueError(f"max_bytes must be None or a non-negative int, got {max_bytes!r}")
    choose = _layout_choice(layouts, layout, context_model)
    cap = max(VERSIONS) if version is None else None  # §10: a newer version only for a layout that needs it
    a, code, bits, version = _to_array(array, version)
    if a.size == 0:
        return _fits(_assemble(a, code, version, 0, struct.pack("<H", 0)), max_bytes)
    head = len(MAGIC) + 4 + 4 * a.ndim + (8 if version == 1 else 4)  # _assemble's bytes before the body
    budget = None if max_bytes is None else int(max_bytes) - head
    plans, reasons, skipped = _plans(a, code, bits, layout, int(max_code_length), version, axis, bool(context_model),
                                     budget, choose, cap)
    if not plans and skipped == float("inf"):
        raise ValueError("; ".join(dict.fromkeys(reasons)) or "no layout can hold this tensor")  # each reason once
    best = min(plans, key=lambda p: p.size, default=None)
    if budget is not None and (best is None or best.size > budget):  # sizes: the streams' bits / 8 at least
        raise MaxBytesError(max_bytes, head + math.ceil(min(skipped, best.size if best else skipped)), False)
    body, streams, plane = best.parts()
    version = max(version, LAYOUT_SINCE[best.layout])  # only with cap: _plans allowed nothing newer otherwise
    return _fits(_assemble(a, code, version, best.layout, body, streams, plane), max_bytes)


def _layout_choice(layouts, layout, context_model):
    """``encode``'s ``layouts`` checked: None, or a frozenset of layout names."""
    if layouts is None:
        return None
    if layout is not None:
        raise ValueError(f"give layout= (one layout, forced) or layouts= (the layouts to pick from), not both: "
                         f"got layout={layout!r} and layouts={layouts!r}")
    if isinstance(layouts, (str, bytes)):
        raise ValueError(f"layouts must be an iterable of layout names, e.g. ('dense', 'sparse'), not the "
                         f"string {layouts!r}")
    try:
        choose = frozenset(layouts)
    except TypeError:
        raise ValueError(f"layouts must be None or an iterable of layout names from {sorted(LAYOUT_CODES)}, "
                         f"got {layouts!r}") from None
    unknown = sorted(map(repr, choose - set(LAYOUT_CODES)))
    if unknown:
        raise ValueError(f"unknown layout name(s) {', '.join(unknown)} in layouts: valid names are "
                         f"{sorted(LAYOUT_CODES)}")
    if not choose - ({"context_sparse"} if not context_model else set()):
        raise ValueError(f"layouts={layouts!r} leaves no layout to pick"
                         + (" ('context_sparse' is tried only with context_model=True)" if choose else
                            ": name at least one, e.g. ('dense', 'sparse')"))
    return choose


def _fits(data, max_bytes):
    """``data``, or MaxBytesError when it is longer than ``max_bytes``."""
    if max_bytes is not None and len(data) > max_bytes:
        raise MaxBytesError(max_bytes, len(data), True)
    return data
