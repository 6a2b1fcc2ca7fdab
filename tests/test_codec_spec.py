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

    def check_end(self):
        assert len(self.bits) - self.pos < 8 and not any(self.bits[self.pos:])


def reference_decode(buf):
    assert buf[:4] == b"DCHF" and buf[4] == 1  # §2
    dtype, rank, layout = np.dtype(DT[buf[5]]), buf[6], buf[7]
    dims = struct.unpack_from(f"<{rank}I", buf, 8)
    pos = 8 + 4 * rank
    check_a, check_b, k = struct.unpack_from("<IIH", buf, pos)
    pos += 10
    n = int(np.prod(dims)) if rank else 1
    if n == 0:
        out = np.zeros(0, dtype)
        header_end = pos
    else:
        codebook = np.frombuffer(buf, dtype, k, pos)  # §3
        pos += k * dtype.itemsize
        if layout == 0:  # §5
            itab, pos = read_alphabet(buf, pos, k)
        else:  # §6
            bg, e, g = struct.unpack_from("<HIH", buf, pos)
            pos += 8
            gtab, pos = read_alphabet(buf, pos, g)
            itab, pos = read_alphabet(buf, pos, k)
        sizes = struct.unpack_from("<4I", buf, pos)
        header_end = pos = pos + 16
        streams = []
        for s in sizes:
            streams.append(BitStream(buf[pos:pos + s]))
            pos += s
        assert pos == len(buf)
        if layout == 0:
            idx = [streams[i % 4].symbol(itab) for i in range(n)]
            out = codebook[idx]
        else:
            out = np.full(n, codebook[bg], dtype)
            p = 0
            for j in range(e):
                st = streams[j % 4]
                gap = st.symbol(gtab)
                index = st.symbol(itab)
                p += gap
                assert p < n
                out[p] = codebook[index]
                p += 1
            assert n - p < g
        for st in streams:
            st.check_end()
    # §8, literally
    header = bytearray(buf[:header_end])
    header[8 + 4 * rank:16 + 4 * rank] = bytes(8)
    checked = out.tobytes()
    checked += bytes(-len(checked) % 4) + bytes(header) + bytes(-len(header) % 4)
    a, b, P = 1, 0, 2**32 - 1
    for (w,) in struct.iter_unpack("<I", checked):
        a = (a + w) % P
        b = (b + a) % P
    assert (a, b) == (check_a, check_b)
    return out.reshape(dims)


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


@pytest.mark.parametrize("name,array,layout", cases(), ids=[c[0] for c in cases()])
def test_spec_reader_agrees_with_encoder_and_c_decoder(name, array, layout):
    kw = {"max_code_length": 5} if name.endswith("limit5") else {}
    packed = codec.encode(array, layout=layout, **kw)
    ref = reference_decode(packed)
    assert ref.dtype == array.dtype and ref.shape == array.shape
    assert ref.tobytes() == array.tobytes()
    assert codec.decode(packed).tobytes() == ref.tobytes()
