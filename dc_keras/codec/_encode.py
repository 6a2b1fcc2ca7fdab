"""Vectorised numpy encoder of the packed tensor format (docs/FORMAT.md)."""
import functools
import operator
import struct

import numpy as np

from ._format import MAX_CODE_LENGTH, MAX_SYMBOLS, MAX_TABLE_ENTRIES, NUM_STREAMS

_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32}


# ----------------------------------------------------------------------------------------------
# §4 Huffman code lengths and canonical codes
# ----------------------------------------------------------------------------------------------
# Alphabets with at most this many used symbols get their code built on Python ints: numpy's
# per-call overhead (~25 calls per package-merge level) made a 17-symbol code cost ~0.2 ms, and a
# small tensor's encode builds up to 7 codes (_sparse_plan's candidates): ~70 % of pack's time on a
# model of 4,000 small kernels. Both paths give the same lengths and codes (tests/test_codec.py).
_SMALL_ALPHABET = 48


def code_lengths(counts, limit=MAX_CODE_LENGTH):
    """Optimal length-limited Huffman code lengths for ``counts`` (package-merge, §4).

    Returns ``(lengths, max_length)``: ``lengths`` is uint8 with 0 for unused symbols. With fewer
    than two used symbols the code is the zero-bit code of §4 and ``max_length`` is 0.

    >>> code_lengths(np.array([5, 1, 1, 0]))[0].tolist()
    [1, 2, 2, 0]
    """
    counts = np.asarray(counts, dtype=np.int64)
    if np.count_nonzero(counts) <= _SMALL_ALPHABET:
        lengths, max_len = _code_lengths_small(counts.tolist(), limit)
        return np.array(lengths, np.uint8), max_len
    n = len(counts)
    lengths = np.zeros(n, np.uint8)
    used = np.flatnonzero(counts > 0)
    m = len(used)
    if m <= 1:
        return lengths, 0
    if m > (1 << limit):
        raise ValueError(f"{m} symbols cannot be coded with code lengths <= {limit}")
    order = used[np.argsort(counts[used], kind="stable")]
    leaves = counts[order] << 1  # keys: 2 w for a leaf, 2 w + 1 for a package (leaves first on ties)
    levels = [leaves]
    for _ in range(limit - 1):
        cur = levels[-1]
        half = len(cur) // 2
        packages = (cur[0:2 * half:2] >> 1) + (cur[1:2 * half:2] >> 1)
        packages <<= 1
        packages |= 1
        merged = np.sort(np.concatenate([leaves, packages]))
        if np.array_equal(merged, cur):  # a fixed point: every level above is the same
            levels += [cur] * (limit - len(levels))
            break
        levels.append(merged)
    sorted_len = np.zeros(m, np.int64)
    take = 2 * m - 2
    for level in reversed(levels):  # top level (length 1) first
        if take <= 0:
            break
        nleaf = take - int(np.count_nonzero(level[:take] & 1))
        sorted_len[:nleaf] += 1
        take = 2 * (take - nleaf)
    lengths[order] = sorted_len
    return lengths, int(sorted_len.max())


def _code_lengths_small(counts, limit):
    """``code_lengths`` of a list of ints, as lists: the same package-merge on Python ints. The
    items of a level are keys 2 w (a leaf of weight w) and 2 w + 1 (a package): sorting them
    puts leaves before packages of equal weight (the order the package-merge needs); which of
    two equal keys comes first changes nothing, only how many leaves a level's prefix holds."""
    n = len(counts)
    used = [i for i in range(n) if counts[i] > 0]
    m = len(used)
    if m <= 2:  # no code, or the two 1-bit codes (what the package-merge gives for any limit)
        lengths, bits = [0] * n, m // 2
        for i in used:
            lengths[i] = bits
        return lengths, bits
    if m > (1 << limit):
        raise ValueError(f"{m} symbols cannot be coded with code lengths <= {limit}")
    order = sorted(used, key=counts.__getitem__)  # stable: equal counts by symbol
    leaves = [2 * counts[i] for i in order]
    levels = [leaves]
    for _ in range(limit - 1):
        cur = levels[-1]
        pairs = iter(cur)
        merged = sorted(leaves + [((a >> 1) + (b >> 1)) << 1 | 1 for a, b in zip(pairs, pairs)])
        if merged == cur:  # a fixed point: every level above is the same
            levels += [cur] * (limit - len(levels))
            break
        levels.append(merged)
    sorted_len = [0] * m
    take = 2 * m - 2
    for level in reversed(levels):  # top level (length 1) first
        if take <= 0:
            break
        nleaf = take - len([k for k in level[:take] if k & 1])
        for j in range(nleaf):
            sorted_len[j] += 1
        take = 2 * (take - nleaf)
    lengths = [0] * n
    for j, i in enumerate(order):
        lengths[i] = sorted_len[j]
    return lengths, sorted_len[0]


def canonical_codes(lengths):
    """Canonical codes (§4) for ``lengths``, bit-reversed for the LSB-first streams (§7).

    Returns a uint64 array: the value to OR into the stream at the symbol's bit offset.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) <= 2 * _SMALL_ALPHABET:
        return np.array(_canonical_codes_small(lengths.tolist()), np.uint64)
    n = len(lengths)
    codes = np.zeros(n, np.uint64)
    used = np.flatnonzero(lengths > 0)
    if len(used) == 0:
        return codes
    L = int(lengths.max())
    bl_count = np.bincount(lengths[used], minlength=L + 1)
    next_code = np.zeros(L + 2, np.int64)
    code = 0
    for bits in range(1, L + 1):
        code = (code + (bl_count[bits - 1] if bits > 1 else 0)) << 1
        next_code[bits] = code
    order = used[np.lexsort((used, lengths[used]))]  # by (length, symbol)
    ol = lengths[order]
    first_of_len = np.searchsorted(ol, ol, side="left")
    c = next_code[ol] + (np.arange(len(order)) - first_of_len)
    rev = np.zeros(len(order), np.int64)
    for b in range(L):
        bit = (c >> b) & 1
        target = ol - 1 - b
        rev |= np.where(target >= 0, bit << np.maximum(target, 0), 0)
    codes[order] = rev.astype(np.uint64)
    return codes


def _canonical_codes_small(lengths):
    """``canonical_codes`` of a list of lengths, as a list of ints: symbols by (length, symbol)
    get consecutive codes, shifted left where the length grows (§4), then bit-reversed (§7)."""
    codes = [0] * len(lengths)
    code, prev = -1, 0
    for i in sorted((i for i, ln in enumerate(lengths) if ln > 0), key=lengths.__getitem__):
        ln = lengths[i]
        code = (code + 1) << (ln - prev)
        prev = ln
        codes[i] = int(format(code, f"0{ln}b")[::-1], 2)
    return codes


def _descriptor(lengths, max_len, single_symbol=0):
    """§4 alphabet descriptor bytes."""
    if max_len == 0:
        return struct.pack("<BH", 0, single_symbol)
    n = len(lengths)
    nib = np.zeros(n + (n & 1), np.uint8)
    nib[:n] = lengths
    packed = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)
    return bytes([max_len]) + packed.tobytes()


def _descriptor_size(n, max_len):
    return 3 if max_len == 0 else 1 + (n + 1) // 2


class _Code:
    """A Huffman code for one alphabet: lengths, codes, descriptor."""

    def __init__(self, counts, limit, force_two=False):
        """``counts``: an array or a list of ints (_sparse_plan's small histograms)."""
        self.n = len(counts)
        if not force_two and self.n <= 2 * _SMALL_ALPHABET:
            counts = np.asarray(counts, dtype=np.int64).tolist() if isinstance(counts, np.ndarray) else counts
            if self.n - counts.count(0) <= _SMALL_ALPHABET:
                self._init_small(counts, limit)
                return
        counts = np.asarray(counts, dtype=np.int64)
        if force_two:  # two symbols of length 1 even if one is unused
            self.lengths, self.max_len = np.ones(2, np.uint8), 1
        else:
            self.lengths, self.max_len = code_lengths(counts, limit)
        used = np.flatnonzero(counts)
        self.single = int(used[0]) if self.max_len == 0 and len(used) else 0
        self.bits = int(np.dot(counts, self.lengths.astype(np.int64)))

    def _init_small(self, counts, limit):
        """``__init__`` of a small alphabet, on Python ints (``_code_lengths_small``)."""
        lengths, self.max_len = _code_lengths_small(counts, limit)
        self.single = next((i for i, c in enumerate(counts) if c), 0) if self.max_len == 0 else 0
        self.lengths = np.array(lengths, np.uint8)
        self.bits = sum(map(operator.mul, counts, lengths))

    @functools.cached_property
    def codes(self):
        """Canonical codes of ``lengths`` (``canonical_codes``): made for the code written only,
        not for every candidate code an encode compares."""
        return canonical_codes(self.lengths)

    def descriptor(self):
        return _descriptor(self.lengths, self.max_len, self.single)

    def descriptor_size(self):
        return _descriptor_size(self.n, self.max_len)


# ----------------------------------------------------------------------------------------------
# §7 bit packing
# ----------------------------------------------------------------------------------------------
# Fields (codes) bit-packed per step (_pack_chunked), elements per step elsewhere: the step's
# int64/uint64 work arrays (~100 B per field) stay ~25 MB however big the tensor. Whole-tensor
# work arrays made encoding a 1 GB int8 tensor allocate ~16 GB (tests/test_scale.py).
_PACK_CHUNK = 1 << 18
_SMALL_PACK = 256  # fields packed on Python ints (up to this, faster than numpy: 16 fields 38 -> 3 us)


def pack_bits(codes, lengths):
    """Concatenates codes (already bit-reversed) LSB first into bytes, zero padded (§7)."""
    return pack_symbols(None, codes, lengths)


def pack_symbols(symbols, codes, lengths):
    """``pack_bits(codes[symbols], lengths[symbols])`` (all of ``codes``/``lengths`` when
    ``symbols`` is None), without making the per-symbol code and length arrays for the whole
    tensor (``_pack_chunked``)."""
    n = len(lengths) if symbols is None else len(symbols)

    def chunk(a, b, with_codes):
        sel = slice(a, b) if symbols is None else symbols[a:b]
        ln = np.asarray(lengths[sel], dtype=np.int64)
        return (np.asarray(codes[sel], dtype=np.uint64) if with_codes else None), ln

    return _pack_chunked(n, chunk)


def _pack_chunked(n, chunk, fields=1):
    """The §7 bit packing of ``n`` items, ``_PACK_CHUNK`` fields at a time: ``chunk(a, b,
    with_codes)`` gives (codes or None, lengths) of the fields of items a..b-1 (an item may have
    several: ``fields``). Two passes: the bit count (lengths only), then the words."""
    if n * fields <= _SMALL_PACK:  # on Python ints: numpy's ~15 calls cost more than the loop
        codes, lengths = chunk(0, n, True)
        word = pos = 0
        for c, ln in zip(codes.tolist(), lengths.tolist()):
            word |= c << pos
            pos += ln
        return word.to_bytes((pos + 7) // 8, "little") if pos else b""
    step = max(1, _PACK_CHUNK // fields)
    one = chunk(0, n, True) if n <= step else None  # a small tensor: one pass
    nbits = int(one[1].sum()) if one else sum(
        int(chunk(a, min(a + step, n), False)[1].sum()) for a in range(0, n, step))
    if nbits == 0:
        return b""
    words = np.zeros(nbits // 64 + 2, np.uint64)
    base = 0
    for a in range(0, n, step):
        c, ln = one or chunk(a, min(a + step, n), True)
        if not len(ln):
            continue
        ends = np.cumsum(ln) + base
        offs = ends - ln
        base = int(ends[-1])
        wi = offs >> 6
        sh = offs & 63
        lo = c << sh.astype(np.uint64)
        starts = np.flatnonzero(np.concatenate([[True], wi[1:] != wi[:-1]]))
        words[wi[starts]] += np.add.reduceat(lo, starts)  # fields are disjoint: sum == OR
        spill = np.flatnonzero(sh + ln > 64)
        if len(spill):
            words[wi[spill] + 1] += c[spill] >> (64 - sh[spill]).astype(np.uint64)
    return words.astype("<u8").tobytes()[: (nbits + 7) // 8]


# ----------------------------------------------------------------------------------------------
# §8.1 checksum of version 1
# ----------------------------------------------------------------------------------------------
_P = 0xFFFFFFFF  # §8.1 modulus 2^32 - 1


def checksum(content, header):
    """§8.1 (version 1): Fletcher-64 (check_a, check_b) of ``content`` (the tensor's bytes), then ``header``
    (all bytes before the streams, checksum fields zero), each zero-padded to whole words."""
    header = bytes(header) + b"\0" * ((-len(header)) % 4)
    if isinstance(content, np.ndarray):
        c = np.ascontiguousarray(content).reshape(-1).view(np.uint8)
    else:
        c = np.frombuffer(content, np.uint8)
    body_len = len(c) - len(c) % 4
    tail = c[body_len:].tobytes()
    parts = [c[:body_len].view("<u4"),
             np.frombuffer(tail + b"\0" * ((-len(tail)) % 4), "<u4"),
             np.frombuffer(header, "<u4")]
    m = sum(len(p) for p in parts)
    # a = 1 + sum w_i, b = m + sum (m - i) w_i  (mod 2^32 - 1). Each product (< 2^63) is exact
    # in uint64 and is reduced as hi + lo (2^32 = 1 mod P), so the partial sums stay exact.
    a, b, i = 1, m, 0
    chunk = 1 << 22
    m32 = np.uint64(0xFFFFFFFF)
    for p in parts:
        for s in range(0, len(p), chunk):
            w = p[s:s + chunk].astype(np.uint64)
            prod = np.arange(m - i, m - i - len(w), -1, dtype=np.int64).view(np.uint64)
            prod *= w
            a += int(w.sum(dtype=np.uint64))
            b += int((prod >> np.uint64(32)).sum(dtype=np.uint64)) + int((prod & m32).sum(dtype=np.uint64))
            i += len(w)
    return a % _P, b % _P


# ----------------------------------------------------------------------------------------------
# encoder
# ----------------------------------------------------------------------------------------------
def _entropy_bits(counts):
    """Shannon bits of ``counts`` (an int array, or a list of ints: the same float64 array)."""
    c = np.array([x for x in counts if x > 0], np.float64) if isinstance(counts, list) \
        else counts[counts > 0].astype(np.float64)
    t = c.sum()
    return float((c * np.log2(t / c)).sum()) if t else 0.0


def _floor_bits(bits, scale):
    """``bits`` rounded down past float error (sums of terms up to ``scale`` bits): a code exactly
    at the bound (dyadic counts) must not be ruled out."""
    return max(0.0, bits - 1e-9 * scale - 1.0)


def _gap_candidates(max_gap):
    cands = {1}
    p = 2
    while p <= MAX_SYMBOLS:
        cands.add(p)
        if p + p // 2 <= MAX_SYMBOLS:
            cands.add(p + p // 2)
        p *= 2
    top = min(max_gap + 1, MAX_SYMBOLS)
    return sorted(c for c in cands | {top} if c <= top)


def _gap_chunks(idx, bg):
    """The elements whose index is not ``bg``, ``_PACK_CHUNK`` elements at a time: (positions,
    gaps: background elements before each), int64 arrays of one chunk's stored elements."""
    last = -1
    for a in range(0, len(idx), _PACK_CHUNK):
        pos = np.flatnonzero(idx[a:a + _PACK_CHUNK] != bg)
        if len(pos):
            pos += a
            gaps = np.diff(pos, prepend=last)
            gaps -= 1
            last = int(pos[-1])
            yield pos, gaps


# Gaps below this are counted in a histogram; the larger ones (fewer than N / _GAP_HIST of them)
# are kept as values.
_GAP_HIST = 1 << 16


def _one_bit_code(counts):
    """§9: a code of two 1-bit symbols for an alphabet ``counts`` uses one symbol of: that symbol
    and another (1, or 0 when the used one is 1), unused: one bit per symbol coded instead of a
    zero-bit code. ``counts`` needs at least two symbols (a spare codebook entry for K = 1)."""
    counts = np.asarray(counts, dtype=np.int64)
    used = int(np.flatnonzero(counts)[0])
    code = _Code.__new__(_Code)
    code.n, code.max_len, code.single = len(counts), 1, 0
    code.lengths = np.zeros(len(counts), np.uint8)
    code.lengths[[used, 1 if used == 0 else 0]] = 1
    code.bits = int(counts.sum())
    return code


def _sparse_plan(idx, counts, limit, big=False, bg=None):
    """Chooses G (§6) minimising the estimated size; returns the parameters of the sparse layout.
    Only the histogram of the gaps is made (a chunk at a time): every plan encode compares is
    alive at once, and per-element positions, values, gaps and quotients cost 16 B per stored
    element per plan; _entries finds them again for the plan written. ``big``: the tensor
    decodes to more than 16 MiB, so its entries may not all be zero-bit (§9): when they would be
    (a constant tensor: fillers only; entries all alike) the index code gets a second, unused
    1-bit symbol (``"spare"``: a codebook entry added for it when K = 1), and G is the candidate
    with the fewest bits then, the largest: N / G bits instead of dense's N (FORMAT.md §9). ``bg``:
    the background symbol (default: the most frequent; §18 gives its filler symbol, 256)."""
    n = len(idx)
    bg = int(np.argmax(counts)) if bg is None else bg
    stored = n - int(counts[bg])
    h = min(n, _GAP_HIST)  # gaps are < n
    hist, large, max_gap, gap_sum = np.zeros(h, np.int64), [], 0, 0
    for _, gaps in _gap_chunks(idx, bg):
        top = int(gaps.max())
        max_gap, gap_sum = max(max_gap, top), gap_sum + int(gaps.sum())
        if top >= h:
            large.append(gaps[gaps >= h])
            gaps = gaps[gaps < h]
        hist += np.bincount(gaps, minlength=h)
    trail = n - stored - gap_sum  # background after the last stored element
    max_gap = max(max_gap, trail)
    val_counts = np.asarray(counts, np.int64).copy()  # the stored elements' indices: all but bg
    val_counts[bg] = 0
    gap_values = np.flatnonzero(hist)  # the distinct gaps and how often each occurs
    gap_weights = hist[gap_values]
    if large:
        values, weights = np.unique(np.concatenate(large), return_counts=True)
        gap_values, gap_weights = np.concatenate([gap_values, values]), np.concatenate([gap_weights, weights])

    # Few distinct gaps and values (a small tensor): the candidates' histograms as lists of ints
    # (the same counts; numpy's per-call overhead was most of a small tensor's plan).
    small = len(gap_values) <= _SMALL_ALPHABET and len(val_counts) <= 2 * _SMALL_ALPHABET
    gaps = list(zip(gap_values.tolist(), gap_weights.tolist())) if small else None
    weights = [w for _, w in gaps] if small else None

    def fillers(g):
        if small:
            return sum(map(operator.mul, [v // g for v, _ in gaps], weights)) + trail // g
        return int(np.dot(gap_values // g, gap_weights)) + trail // g

    def histograms(g):
        fill = fillers(g)
        if small and g <= 4 * _SMALL_ALPHABET:
            gh = [0] * g
            for v, w in gaps:
                gh[v % g] += w
            gh[g - 1] += fill
            ih = val_counts.tolist()
            ih[bg] += fill
            return gh, ih
        gh = np.bincount(gap_values % g, weights=gap_weights, minlength=g).astype(np.int64)
        gh[g - 1] += fill
        ih = val_counts.copy()
        ih[bg] += fill
        return gh, ih

    est, made, index_bits = [], {}, {}  # index_bits: the index histogram's bits by fill count
    for g in _gap_candidates(min(max_gap, (1 << limit) - 1)):  # every gap symbol codable
        made[g] = gh, ih = histograms(g)
        fill = ih[bg]
        if fill not in index_bits:
            index_bits[fill] = _entropy_bits(ih)
        bits = _entropy_bits(gh) + index_bits[fill] + 8 * (1 + (g + 1) // 2)
        est.append((bits, g))
    est.sort()
    best = None
    for _, g in est[:3]:
        gh, ih = made[g]
        gcode, icode = _Code(gh, limit), _Code(ih, limit)
        size = (gcode.bits + icode.bits) / 8 + gcode.descriptor_size() + icode.descriptor_size() + 8
        if best is None or size < best[0]:
            best = (size, g, gcode, icode)
    spare = False
    if big and best[2].max_len == 0 and best[3].max_len == 0:  # §9: refused as it is
        best = None
        for g, (gh, ih) in made.items():
            gcode, icode = _Code(gh, limit), _Code(ih, limit)
            if gcode.max_len == 0 and icode.max_len == 0:
                icode = _one_bit_code(list(ih) + [0] * (len(ih) < 2))
            size = (gcode.bits + icode.bits) / 8 + gcode.descriptor_size() + icode.descriptor_size() + 8
            if best is None or size < best[0]:
                best = (size, g, gcode, icode)
        spare = best[3].n > len(counts)
    size, g, gcode, icode = best
    return {"size": size, "bg": bg, "idx": idx, "entries": stored + fillers(g), "G": g,
            "gap_code": gcode, "index_code": icode, "spare": spare}


def _streams_dense(idx, code):
    out = []
    for s in range(NUM_STREAMS):
        out.append(pack_symbols(idx[s::NUM_STREAMS], code.codes, code.lengths))
    return out


def _entries(plan):
    """§6 entries (gap, index) with the fillers: (gaps, indices), uint16 arrays of length E (gap
    symbols < G <= 4096, indices < 4096); trailing fillers: fewer than G implicit (§6)."""
    g, bg, idx = plan["G"], plan["bg"], plan["idx"]
    gaps_out = np.full(plan["entries"], g - 1, np.uint16)
    idx_out = np.full(plan["entries"], bg, np.uint16)
    done = 0  # entries of the chunks before
    for pos, gaps in _gap_chunks(idx, bg):  # as _sparse_plan found them
        last = np.cumsum(gaps // g + 1)
        last += done - 1
        gaps_out[last] = gaps % g
        idx_out[last] = idx[pos]
        done = int(last[-1]) + 1
    return gaps_out, idx_out


def _streams_sparse(plan):
    gaps_out, idx_out = _entries(plan)
    gc, ic = plan["gap_code"], plan["index_code"]
    return len(gaps_out), _pack_entries(gaps_out, idx_out, gc, [ic], None)  # one index table


def _segments(e):
    """§14: first entry of each stream's segment (stream s holds ceil((E - s) / 4) entries)."""
    counts = [(e - s + NUM_STREAMS - 1) // NUM_STREAMS if e > s else 0 for s in range(NUM_STREAMS)]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _pack_entries(gaps_out, idx_out, gc, icodes, ctx, segmented=False):
    """§6 streams (entry j in stream j mod 4) or §14's (stream s = segment s of the entries):
    each entry's gap code, then its index code from table ctx[j]."""
    ilen = np.stack([c.lengths.astype(np.int64) for c in icodes])
    icod = np.stack([c.codes for c in icodes])
    bounds = _segments(len(gaps_out))
    out = []
    for s in range(NUM_STREAMS):
        sl = slice(bounds[s], bounds[s + 1]) if segmented else slice(s, None, NUM_STREAMS)
        gs, is_ = gaps_out[sl], idx_out[sl]
        cs = ctx[sl] if ctx is not None else 0

        def chunk(a, b, with_codes, gs=gs, is_=is_, cs=cs):
            g, i = gs[a:b], is_[a:b]
            c = cs[a:b] if ctx is not None else 0
            lens = np.empty(2 * len(g), np.int64)
            lens[0::2], lens[1::2] = gc.lengths[g], ilen[c, i]
            if not with_codes:
                return None, lens
            codes = np.empty(2 * len(g), np.uint64)
            codes[0::2], codes[1::2] = gc.codes[g], icod[c, i]
            return codes, lens

        out.append(_pack_chunked(len(gs), chunk, 2))  # a gap and an index per entry
    return out


def index_contexts(gaps_out, idx_out, classes, bg):
    """§14: context of each entry's index code = 2 * class of the previous entry's index in its
    segment (the background's for a segment's first entry) + (1 if the entry's gap is 0)."""
    prev = np.empty(len(idx_out), np.uint16)  # 2 B per entry, contexts 1 B (int64: 8 B each)
    prev[:1], prev[1:] = bg, idx_out[:-1]
    firsts = _segments(len(idx_out))[:-1]
    prev[firsts[firsts < len(idx_out)]] = bg
    return (2 * np.asarray(classes, np.uint8))[prev] + (gaps_out == 0)


def segment_starts(gaps_out):
    """§14: position where the segments of streams 1, 2, 3 start (after the previous ones' entries)."""
    ends = np.concatenate([[0], np.cumsum(gaps_out + 1, dtype=np.int64)])
    return [int(ends[j]) for j in _segments(len(gaps_out))[1:4]]


def _context_plan(plan, classes, n_ctx, k, limit):
    """§14 on top of a §6 plan: one index code per context; None if the tables would not fit."""
    gaps_out, idx_out = _entries(plan)
    ctx = index_contexts(gaps_out, idx_out, classes, plan["bg"])
    gc = plan["gap_code"]
    for lim in range(limit, 0, -1):
        try:
            icodes = [_Code(np.bincount(idx_out[ctx == c], minlength=k), lim) for c in range(n_ctx)]
        except ValueError:  # more symbols than 2^lim
            return None
        if (1 << gc.max_len) + n_ctx * (1 << max(c.max_len for c in icodes)) <= MAX_TABLE_ENTRIES:
            break
    else:
        return None
    bits = gc.bits + sum(c.bits for c in icodes)
    size = bits / 8 + gc.descriptor_size() + sum(c.descriptor_size() for c in icodes) + 21 + (k + 1) // 2
    return {"size": size, "gaps_out": gaps_out, "idx_out": idx_out, "ctx": ctx, "classes": classes,
            "index_codes": icodes}


def chunked_bincount(values, k):
    """``np.bincount(values, minlength=k)`` as int64, per chunk: bincount copies its whole input
    to int64 first (8 B per element)."""
    counts = np.zeros(k, np.int64)
    for a in range(0, len(values), _PACK_CHUNK):
        counts += np.bincount(values[a:a + _PACK_CHUNK], minlength=k)
    return counts


def _unique_small(bits):
    """(sorted distinct values, index of each element, counts) for a tensor with few distinct
    values: binary search against a candidate codebook instead of sorting all elements."""
    # the first 4096 elements and a sample of the rest (the tensor itself when that is all of it)
    cand = np.unique(bits if len(bits) <= 4096 else np.concatenate([bits[:4096], bits[:: max(1, len(bits) // 4096)]]))
    while True:
        if len(cand) > MAX_SYMBOLS:
            raise ValueError(f"more than {MAX_SYMBOLS} distinct values: cluster the tensor first")
        idx = np.empty(len(bits), np.uint16)  # < 4096 entries; int64 would be 8 B per element
        missing = []
        for a in range(0, len(bits), _PACK_CHUNK):  # searchsorted's int64 result one chunk at a time
            part = bits[a:a + _PACK_CHUNK]
            i = np.minimum(np.searchsorted(cand, part), len(cand) - 1)
            miss = cand[i] != part
            if miss.any():
                missing.append(np.unique(part[miss]))
            idx[a:a + _PACK_CHUNK] = i
        if not missing:
            return cand, idx, chunked_bincount(idx, len(cand))
        cand = np.union1d(cand, np.unique(np.concatenate(missing)))


