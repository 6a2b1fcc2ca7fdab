"""An independent, deliberately naive reader written from docs/FORMAT.md alone (bit by bit, dict
lookups, the checksum loop exactly as §8 writes it). The encoder's bytes must satisfy it and the C
decoder must agree with it, so an error shared by encoder and decoder but not by the spec fails."""
import struct

import numpy as np
import pytest

from dc_keras import codec

DT = {0: "<f4", 1: "<f2", 2: "<i4", 3: "u1", 7: "<i2", 9: "i1"}


def read_alphabet(buf, pos, n):  # §4
    L = buf[pos]
    pos += 1
    if L == 0:
        (sym,) = struct.unpack_from("<H", buf, pos)
        return {(): sym}, pos + 2  # zero-bit code: the empty bit string
    lengths = []
    for i in range(n):
        byte = buf[pos + i // 2]
        lengths.append(byte & 15 if i % 2 == 0 else byte >> 4)
    pos += (n + 1) // 2
    assert max(lengths) == L and sum(2 ** (L - x) for x in lengths if x) == 2**L
    code, table, prev_len = 0, {}, 0  # RFC 1951 canonical assignment
    for length, sym in sorted((x, s) for s, x in enumerate(lengths) if x):
        code <<= length - prev_len
        prev_len = length
        table[tuple((code >> (length - 1 - b)) & 1 for b in range(length))] = sym  # MSB first
        code += 1
    return table, pos


class BitStream:  # §7: LSB first
    def __init__(self, data):
        self.bits = [(byte >> b) & 1 for byte in data for b in range(8)]
        self.pos = 0

    def symbol(self, table):
        word = ()
        while word not in table:
            word += (self.bits[self.pos],)
            self.pos += 1
        return table[word]

    def raw(self, count):  # §17 extra bits: the value's bit 0 first
        value = sum(self.bits[self.pos + j] << j for j in range(count))
        self.pos += count
        return value

    def check_end(self):
        assert len(self.bits) - self.pos < 8 and not any(self.bits[self.pos:])


DTYPES_V2 = {17: ("int4", 4), 18: ("bfloat16", 16), 19: ("int2", 2), 20: ("uint4", 4)}
DTYPES_V3 = {4: ("int64", 64), 6: ("bool", 8), 10: ("float64", 64), 12: ("uint64", 64), 15: ("uint32", 32),
             16: ("uint16", 16)}  # §16


def crc32(data):  # §8: bit by bit, reflected polynomial 0xEDB88320, init and final xor ~0
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def fletcher_ok(out_bytes, buf, rank, header_end):  # §8.1, literally
    header = bytearray(buf[:header_end])
    check_a, check_b = struct.unpack_from("<II", buf, 8 + 4 * rank)
    header[8 + 4 * rank:16 + 4 * rank] = bytes(8)
    checked = out_bytes + bytes(-len(out_bytes) % 4) + bytes(header) + bytes(-len(header) % 4)
    a, b, P = 1, 0, 2**32 - 1
    for (w,) in struct.iter_unpack("<I", checked):
        a = (a + w) % P
        b = (b + a) % P
    return (a, b) == (check_a, check_b)


def reference_decode(buf):
    """Returns the decoded tensor as a list of element bit patterns (ints) and its dims."""
    assert buf[:4] == b"DCHF" and buf[4] in (1, 2, 3, 4, 5)  # §2
    version, code, rank, layout = buf[4], buf[5], buf[6], buf[7]
    if code in DT:
        esize, bits = np.dtype(DT[code]).itemsize, 8 * np.dtype(DT[code]).itemsize
    elif code in DTYPES_V2:
        assert version >= 2
        bits = DTYPES_V2[code][1]
        esize = max(1, bits // 8)
    else:  # §16
        assert version >= 3
        bits = DTYPES_V3[code][1]
        esize = bits // 8
        assert layout not in (4, 7) and (layout in (0, 1) if code == 6 else bits < 64 or layout not in (2, 3))
    assert layout <= (1 if version == 1 else 5 if version < 4 else 6 if version < 5 else 7)
    assert layout not in (4, 7) or code in (0, 1, 18)  # §12, §18: the floats
    assert layout != 6 or code in (7, 16, 2, 15, 4, 12)  # §17: the 16, 32 and 64-bit integers
    dims = struct.unpack_from(f"<{rank}I", buf, 8)
    pos = 8 + 4 * rank
    check_pos = pos
    pos += 8 if version == 1 else 4
    if version >= 2:  # §8: CRC of everything but the check field, before decoding
        (check,) = struct.unpack_from("<I", buf, check_pos)
        assert crc32(buf[:check_pos] + buf[check_pos + 4:]) == check
    n = int(np.prod(dims)) if rank else 1
    if n == 0:
        assert struct.unpack_from("<H", buf, pos)[0] == 0 and layout == 0 and len(buf) == pos + 2
        return [], dims, bits, pos + 2
    groups, inner = 1, n
    if layout in (2, 3):  # §11
        axis = buf[pos]
        pos += 1
        groups = dims[axis]
        inner = int(np.prod(dims[axis + 1:])) if axis + 1 < rank else 1
    if layout == 4:  # §12
        sym_table, pos = read_alphabet(buf, pos, 256)
        k = 0
    elif layout == 7:  # §18: B, E, R, G, gap code, symbol code (n = 258)
        background = int.from_bytes(buf[pos:pos + esize], "little")
        e, stored, g = struct.unpack_from("<IIH", buf, pos + esize)
        pos += esize + 10
        assert e <= n and stored <= e and 1 <= g <= 4096 and n < (e + 1) * g
        gtab, pos = read_alphabet(buf, pos, g)
        itab, pos = read_alphabet(buf, pos, 258)  # the symbol code: the §6 loop below, filler 256
        bg = 256
    elif layout == 6:  # §17
        predictor, base = buf[pos], int.from_bytes(buf[pos + 1:pos + 1 + esize], "little")
        assert predictor in (0, 1)
        pos += 1 + esize
        class_table, pos = read_alphabet(buf, pos, bits + 1)
    else:
        (k,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        tables = []
        for _ in range(groups):  # §3 / §11
            tables.append([int.from_bytes(buf[pos + i * esize:pos + (i + 1) * esize], "little") for i in range(k)])
            pos += k * esize
        if bits < 8:
            assert all(v < 2**bits for v in tables[0])  # §13
        if code == 6:
            assert all(v in (0, 1) for v in tables[0])  # §16: bool
    if layout in (0, 2):  # §5
        itab, pos = read_alphabet(buf, pos, k)
    elif layout in (1, 3):  # §6
        bg, e, g = struct.unpack_from("<HIH", buf, pos)
        pos += 8
        gtab, pos = read_alphabet(buf, pos, g)
        itab, pos = read_alphabet(buf, pos, k)
        itabs = None
    elif layout == 5:  # §14: §6 fields, then C, the class nibbles, C index codes
        bg, e, g = struct.unpack_from("<HIH", buf, pos)
        pos += 8
        gtab, pos = read_alphabet(buf, pos, g)
        seg_start = [0, *struct.unpack_from("<3I", buf, pos)]
        assert seg_start == sorted(seg_start) and seg_start[3] <= n
        pos += 12
        assert k <= 1024
        n_codes = buf[pos]
        pos += 1
        assert n_codes % 2 == 0 and 2 <= n_codes <= 8
        klass = [(buf[pos + i // 2] >> (4 * (i % 2))) & 15 for i in range(k)]
        assert all(c < n_codes // 2 for c in klass)
        pos += (k + 1) // 2
        itabs = []
        for _ in range(n_codes):
            t, pos = read_alphabet(buf, pos, k)
            itabs.append(t)
    sizes = struct.unpack_from("<4I", buf, pos)
    header_end = pos = pos + 16
    streams = []
    for s in sizes:
        streams.append(BitStream(buf[pos:pos + s]))
        pos += s

    def compose(sym, k):  # §12: the element of symbol sym and the k-th rest of the plane at pos
        r = bits // 8 - 1
        rest = int.from_bytes(buf[pos + k * r:pos + (k + 1) * r], "little")
        return (rest & (2 ** (bits - 9) - 1)) | sym << (bits - 9) | (rest >> (bits - 9)) << (bits - 1)

    stored_read = []

    def value(i, index):  # §11: element i's group table (one table otherwise)
        if layout != 7:
            return tables[(i // inner) % groups][index]
        if index >= 256:  # §18: B (256), B with its sign flipped (257)
            return background ^ (index - 256) << (bits - 1)
        assert len(stored_read) < stored
        stored_read.append(i)
        return compose(index, len(stored_read) - 1)

    if layout == 6:
        assert pos == len(buf)
        out = []
        for i in range(n):
            st = streams[i % 4]
            c = st.symbol(class_table)
            z = (1 << (c - 1)) + st.raw(c - 1) if c else 0
            d = z // 2 if z % 2 == 0 else -(z + 1) // 2  # zigzag: 0, -1, 1, -2, 2, ...
            pred = base if predictor == 0 or i == 0 else out[i - 1]
            out.append((pred + d) % 2**bits)
    elif layout == 4:  # §12: a symbol from the streams and a rest from the plane per element
        assert len(buf) == pos + n * (bits // 8 - 1)
        out = [compose(streams[i % 4].symbol(sym_table), i) for i in range(n)]
    elif layout in (0, 2):
        assert pos == len(buf)
        out = [value(i, streams[i % 4].symbol(itab)) for i in range(n)]
    else:  # §6 (and §11's layout 3, §14, §18)
        assert len(buf) == pos + (stored * (bits // 8 - 1) if layout == 7 else 0)
        out = [value(i, bg) for i in range(n)]
        p = 0
        if layout == 5:  # §14: four runs, one per stream, each from its own start
            for s in range(4):
                p, prev, st = seg_start[s], bg, streams[s]
                end = seg_start[s + 1] if s < 3 else n
                for _ in range((e - s + 3) // 4 if e > s else 0):
                    gap = st.symbol(gtab)
                    index = st.symbol(itabs[2 * klass[prev] + (1 if gap == 0 else 0)])
                    prev = index
                    p += gap
                    assert p < end
                    out[p] = value(p, index)
                    p += 1
                assert p == end if s < 3 else n - p < g
            e = 0
            p = n
        for j in range(e):
            st = streams[j % 4]
            gap = st.symbol(gtab)
            index = st.symbol(itab)
            p += gap
            assert p < n
            out[p] = value(p, index)
            p += 1
        assert n - p < g and (layout != 7 or len(stored_read) == stored)
    for st in streams:
        st.check_end()
    return out, dims, bits, header_end


def to_bytes(out, bits):
    """The decoded tensor's bytes: little-endian elements, or §13 sub-byte packing."""
    if bits >= 8:
        return b"".join(v.to_bytes(bits // 8, "little") for v in out)
    per = 8 // bits
    res = bytearray((len(out) * bits + 7) // 8)
    for i, v in enumerate(out):
        res[i // per] |= v << ((i % per) * bits)
    return bytes(res)


def reference_bytes(buf):
    out, dims, bits, header_end = reference_decode(buf)
    raw = to_bytes(out, bits)
    if buf[4] == 1:
        assert fletcher_ok(raw, buf, buf[6], header_end)
    return raw, dims


def cases():
    rng = np.random.default_rng(21)
    sparse = np.zeros((30, 20), np.float32)
    sparse.flat[rng.choice(600, 40, replace=False)] = rng.choice([0.5, -1.0, 2.0], 40)
    gaps = np.zeros(3000, np.int16)
    gaps[[0, 1, 1500, 2999]] = [1, 2, 3, 4]
    skew = np.minimum(rng.geometric(0.3, size=700), 14).astype(np.uint8)
    return [
        ("dense_f32", rng.choice(np.array([0, 1.5, -2, 3.25], np.float32), size=(5, 7)), None),
        ("sparse_f32", sparse, None),
        ("sparse_f32_forced_dense", sparse, "dense"),
        ("fillers_i16", gaps, "sparse"),
        ("skewed_u8_limit5", skew, None),
        ("i8_zero_point", np.where(rng.random(500) < 0.1, rng.integers(-100, 100, 500), -7).astype(np.int8), None),
        ("f16_constant", np.full((4, 4), -0.5, np.float16), None),
        ("i32_scalar", np.array(42, np.int32), None),
        ("empty", np.zeros((2, 0), np.float32), None),
        ("all_background", np.zeros(100, np.float32), "sparse"),
        ("odd_alphabet", rng.choice(np.arange(7, dtype=np.int32), size=101), "dense"),
    ]


def cases_v2():
    import ml_dtypes

    rng = np.random.default_rng(22)
    cent = np.linspace(-1, 1, 16)
    scale = rng.uniform(0.5, 2, 6)
    pc = (cent[rng.integers(0, 16, (6, 5, 4))] * scale[:, None, None]).astype(np.float32)
    pcs = pc.copy()
    pcs[rng.random(pc.shape) < 0.7] = 0
    dw = np.moveaxis(np.round(pc * 20), 0, 2).astype(np.int8).copy()
    # §14: kept weights in runs of one sign (as neighbouring pixels of one neuron's row)
    sign = np.where(np.cumsum(rng.random((8, 40)) < 0.15, axis=1) % 2, -1.0, 1.0)
    runs = np.where(rng.random((8, 40)) < 0.3, sign * rng.choice([0.25, 0.5, 1.0], (8, 40)), 0).astype(np.float32)
    long_gaps = np.zeros(400, np.float32)
    long_gaps[[0, 1, 2, 150, 151, 399]] = [0.5, 0.25, -0.5, -1.0, -0.5, 1.0]
    sign = np.where(np.cumsum(rng.random((60, 200)) < 0.03, axis=1) % 2, -1.0, 1.0)
    runs_big = np.where(rng.random((60, 200)) < 0.3, sign * rng.choice(np.linspace(0.1, 1, 8), (60, 200)), 0)
    runs_big = runs_big.astype(np.float32)
    return [
        ("grouped_dense_f32_axis0", pc, {"layout": "grouped_dense", "axis": 0}),
        ("grouped_sparse_f32_axis0", pcs, {"layout": "grouped_sparse", "axis": 0}),
        ("grouped_dense_i8_last_axis", dw, {"layout": "grouped_dense", "axis": 2}),
        ("grouped_sparse_i16_middle_axis", np.round(pcs * 100).astype(np.int16), {"layout": "grouped_sparse", "axis": 1}),
        ("float_planes_f32", rng.normal(0, 0.1, (7, 9)).astype(np.float32), {"layout": "float_planes"}),
        ("float_planes_f16", rng.normal(0, 3, 41).astype(np.float16), {"layout": "float_planes"}),
        ("float_planes_bf16", rng.normal(0, 1, (3, 11)).astype(ml_dtypes.bfloat16), {}),
        ("float_planes_constant_exponent", np.full(9, 1.5, np.float32) + np.arange(9, dtype=np.float32) / 64,
         {"layout": "float_planes"}),
        ("int4_dense_odd", rng.integers(-8, 8, 37).astype(ml_dtypes.int4), {"layout": "dense"}),
        ("int4_sparse", np.where(rng.random(50) < 0.2, rng.integers(-8, 8, 50), 0).astype(ml_dtypes.int4),
         {"layout": "sparse"}),
        ("uint4_rank2", rng.integers(0, 16, (3, 5)).astype(ml_dtypes.uint4), {}),
        ("int2_dense_odd", rng.integers(-2, 2, 23).astype(ml_dtypes.int2), {"layout": "dense"}),
        ("int2_sparse", np.where(rng.random(61) < 0.3, 1, 0).astype(ml_dtypes.int2), {"layout": "sparse"}),
        ("v1_sparse", pcs, {"version": 1}),
        ("v1_dense_i8", dw, {"version": 1, "layout": "dense"}),
        ("context_sparse_f32_runs", runs, {"layout": "context_sparse"}),
        ("context_sparse_i16_fillers", np.round(long_gaps * 50).astype(np.int16), {"layout": "context_sparse"}),
        ("context_sparse_u8_odd_k", np.where(rng.random(90) < 0.4, rng.integers(0, 7, 90), 3).astype(np.uint8),
         {"layout": "context_sparse"}),
        ("context_sparse_picked_automatically", runs_big, {"context_model": True}),
    ]


def cases_v3():
    """§16's dtypes: edge values, every layout each may use."""
    rng = np.random.default_rng(23)
    i64 = np.iinfo(np.int64)
    edges = np.where(rng.random(90) < 0.2, rng.choice([i64.min, i64.max, -1, 2**40], 90), 0).astype(np.int64)
    nan = np.array([0x7FF0000000000001, 0xFFF8000000000123, 0x8000000000000000, 0x7FF0000000000000],
                   np.uint64).view(np.float64)
    runs = np.where(rng.random((6, 30)) < 0.3, rng.choice([-2.5, -1.0, 0.5, 3.0], (6, 30)), 0.0)
    grouped = (rng.integers(0, 4, (5, 12)) * 70001 + np.arange(5)[:, None] * 3).astype(np.uint32)
    return [
        ("int64_sparse_edges", edges, {"layout": "sparse"}),
        ("int64_dense_edges", edges, {"layout": "dense"}),
        ("uint64_max", rng.choice(np.array([0, 1, 2**63, 2**64 - 1], np.uint64), (4, 9)), {}),
        ("float64_nan_payloads", rng.choice(np.concatenate([nan, [0.0, 1.5]]), 41), {}),
        ("float64_context_sparse", runs, {"layout": "context_sparse"}),
        ("int64_context_sparse", (runs * 2**50).astype(np.int64), {"layout": "context_sparse"}),
        ("bool_dense", rng.random((7, 5)) < 0.5, {"layout": "dense"}),
        ("bool_sparse", rng.random(70) < 0.1, {"layout": "sparse"}),
        ("uint32_grouped_dense", grouped, {"layout": "grouped_dense", "axis": 0}),
        ("uint16_grouped_sparse", np.where(rng.random((4, 20)) < 0.7, 9, grouped[:4, :1] % 60000 + np.arange(20))
         .astype(np.uint16), {"layout": "grouped_sparse", "axis": 0}),
        ("uint16_dense", rng.integers(0, 65536, 33).astype(np.uint16), {"layout": "dense"}),  # §17 is smaller
    ]


def cases_v4():
    """§17 (layout 6, version 4): every dtype, both predictors, edge values, 0, 1 and 2 elements,
    all equal, the 64-bit extremes, a zero-bit class code."""
    rng = np.random.default_rng(24)
    i64, u64 = np.iinfo(np.int64), np.iinfo(np.uint64)
    return [
        ("int16_normal", rng.normal(0, 300, 77).astype(np.int16), {}),
        ("uint16_offset", (40000 + rng.normal(0, 50, (5, 9))).astype(np.uint16), {}),
        ("int32_bias", rng.normal(0, 20000, 61).astype(np.int32), {}),
        ("uint32_sorted_previous", np.sort(rng.integers(0, 2**32, 50, dtype=np.uint64)).astype(np.uint32), {}),
        ("int64_arange_previous", np.arange(-20, 70, dtype=np.int64), {}),
        ("int64_extremes", np.array([i64.min, i64.max, 0, -1, i64.min, 1], np.int64), {"layout": "int_planes"}),
        ("uint64_extremes", np.array([u64.max, 0, 2**63, u64.max - 1, 7], np.uint64), {"layout": "int_planes"}),
        ("int32_one", np.array([-123456], np.int32), {"layout": "int_planes"}),
        ("int16_two", np.array([5, -5], np.int16), {"layout": "int_planes"}),
        ("int32_all_equal_zero_bit", np.full((3, 4), 99, np.int32), {"layout": "int_planes"}),
        ("uint16_descending", np.arange(300, 0, -3).astype(np.uint16), {"layout": "int_planes"}),
    ]


def cases_v5():
    """§18 (layout 7, version 5): pruned unclustered float32, float16, bfloat16; both zeros (symbol
    257), NaN payloads and infinities kept, a long gap (fillers), a trailing run (implicit), G = 1,
    a background that is not zero, no stored element, one element."""
    import ml_dtypes

    rng = np.random.default_rng(25)

    def pruned(shape, keep, dtype, seed_scale=0.05):
        w = rng.normal(0, seed_scale, shape).astype(np.float32)
        w[rng.random(shape) > keep] = 0
        return w.astype(dtype)

    both_zeros = pruned((40, 30), 0.15, np.float32)
    both_zeros[rng.random(both_zeros.shape) < 0.4] = -0.0
    special = pruned(300, 0.2, np.float32)
    special[[3, 50, 51]] = [np.inf, -np.inf, np.nan]
    special.view(np.uint32)[77] = 0x7FC00123  # a NaN payload
    long_gap = np.zeros(9000, np.float32)
    long_gap[[0, 8000]] = [0.5, -0.25]
    dense_pruned = pruned((16, 16), 0.6, np.float32)
    bf16 = pruned((20, 20), 0.2, np.float32).astype(ml_dtypes.bfloat16)
    return [
        ("f32_pruned", pruned((60, 50), 0.2, np.float32), {}),
        ("f32_both_zeros", both_zeros, {}),
        ("f32_specials", special, {"layout": "sparse_planes"}),
        ("f32_long_gap_fillers", long_gap, {"layout": "sparse_planes"}),
        ("f32_dense_g1", dense_pruned, {"layout": "sparse_planes"}),
        ("f32_background_not_zero", np.where(rng.random(500) < 0.8, np.float32(0.125),
                                             rng.normal(0, 1, 500).astype(np.float32)), {"layout": "sparse_planes"}),
        ("f32_all_background", np.zeros((3, 5), np.float32), {"layout": "sparse_planes"}),
        ("f32_one_element", np.array([-1.5], np.float32), {"layout": "sparse_planes"}),
        ("f16_pruned", pruned((50, 40), 0.2, np.float16), {}),
        ("bf16_pruned", bf16, {"layout": "sparse_planes"}),
    ]


NEW_VERSION_CASES = [(4, "int_planes", *c) for c in cases_v4()] + [(5, "sparse_planes", *c) for c in cases_v5()]


@pytest.mark.parametrize("version,layout,name,array,kw", NEW_VERSION_CASES, ids=[c[2] for c in NEW_VERSION_CASES])
def test_spec_reader_new_version_layouts(version, layout, name, array, kw):
    """§17 (version 4) and §18 (version 5): what the encoder writes as layout 6 or 7 (picked as the
    smallest, or forced) is that version and reads the same in the spec reader and the C decoder."""
    packed = codec.encode(array, **kw)
    assert packed[4] == version and codec.info(packed)["layout"] == layout
    check_against_reference(array, packed)
    back = codec.decode(packed)
    assert back.dtype == array.dtype and back.tobytes() == array.tobytes()
    if name.endswith("_previous"):
        assert codec.info(packed)["predictor"] == "previous"


@pytest.mark.parametrize("name,array,kw", cases_v3(), ids=[c[0] for c in cases_v3()])
def test_spec_reader_version3_dtypes(name, array, kw):
    """§16: version 3 (only for these dtypes), read by the spec reader and the C decoder alike."""
    packed = codec.encode(array, **kw)
    assert packed[4] == 3
    if "layout" in kw:
        assert codec.info(packed)["layout"] == kw["layout"]
    check_against_reference(array, packed)
    back = codec.decode(packed)
    assert back.dtype == array.dtype and back.tobytes() == array.tobytes()


def check_against_reference(array, packed):
    raw, dims = reference_bytes(packed)
    assert tuple(dims) == array.shape
    want = np.ascontiguousarray(array)
    if want.dtype.itemsize == 1 and want.dtype.kind == "V":  # ml_dtypes sub-byte: TFLite packing
        want_bytes = codec.pack_subbyte(want, packed[5])
    else:
        want_bytes = want.astype(want.dtype.newbyteorder("<")).tobytes()
    assert raw == want_bytes
    assert codec.decode(packed, raw=True).tobytes() == raw


@pytest.mark.parametrize("name,array,layout", cases(), ids=[c[0] for c in cases()])
def test_spec_reader_agrees_with_encoder_and_c_decoder(name, array, layout):
    kw = {"max_code_length": 5} if name.endswith("limit5") else {}
    for version in (1, 2):
        packed = codec.encode(array, layout=layout, version=version, **kw)
        assert packed[4] == version
        check_against_reference(array, packed)
        assert codec.decode(packed).tobytes() == array.tobytes()


@pytest.mark.parametrize("name,array,kw", cases_v2(), ids=[c[0] for c in cases_v2()])
def test_spec_reader_new_layouts(name, array, kw):
    packed = codec.encode(array, **kw)
    if "layout" in kw:
        assert codec.info(packed)["layout"] == kw["layout"]
    if name.endswith("picked_automatically"):  # §14 is smaller here, so the encoder picks it (opt-in)
        assert codec.info(packed)["layout"] == "context_sparse"
        assert len(packed) < len(codec.encode(array, layout="sparse"))
    check_against_reference(array, packed)
    back = codec.decode(packed)
    assert back.dtype == array.dtype and back.tobytes() == array.tobytes()


def test_crc_reference_is_zlib():
    import zlib

    for data in (b"", b"123456789", bytes(range(256)) * 3):
        assert crc32(data) == zlib.crc32(data)
    assert crc32(b"123456789") == 0xCBF43926
