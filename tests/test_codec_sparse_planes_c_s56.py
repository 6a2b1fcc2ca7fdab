"""The C decoder of layout 7, sparse float planes (docs/FORMAT.md §18, format version 5), through
dc_keras.codec.decode (libdc_huffdecode.so's dc_peek / dc_decode): bit-exact round trips of pruned
float32 / float16 / bfloat16 tensors (tfmot's -0.0 as symbol 257, NaN payloads, infinities, gaps
past G, tensors all background), damaged bytes refused with CorruptDataError naming the reason (also
after the CRC is made to match, so that §9's and §18's own checks answer), and a decoder that
reads up to version 4 refusing version 5 with DC_ERR_VERSION ("upgrade"), as FORMAT.md §10 says."""
import ctypes
import os
import struct
import zlib

import ml_dtypes
import numpy as np
import pytest

import _cbuild
from dc_keras import codec
from dc_keras.codec import CorruptDataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype.itemsize == 4 else np.uint16)


def _pruned(rng, shape, dtype, kept=0.2, signed_zeros=True):
    """Magnitude-pruned N(0, 0.05) weights; pruned negatives as -0.0 (tfmot's strip_pruning) if asked."""
    w = rng.normal(0, 0.05, shape)
    cut = np.quantile(np.abs(w), 1 - kept)
    out = np.where(np.abs(w) >= cut, w, np.where((w < 0) & signed_zeros, -0.0, 0.0))
    return out.astype(dtype)


def _tensors(dtype):
    """{name: array} of one dtype: each a §18 feature the decoder must get right."""
    rng = np.random.default_rng(56)
    t = {"tfmot_20pct": _pruned(rng, (60, 50), dtype),
         "plus_zeros_5pct": _pruned(rng, (300,), dtype, kept=0.05, signed_zeros=False)}
    special = _pruned(rng, (40, 40), dtype)
    b = _bits(special).reshape(-1)  # NaN payloads and infinities among the kept values
    if special.dtype.itemsize == 4:
        b[[3, 77, 500]] = [0x7FC00001, 0xFFBFFFFF, 0x7F800001]
        b[[9, 10]] = [0x7F800000, 0xFF800000]
    else:
        inf = 0x7C00 if special.dtype == np.float16 else 0x7F80
        b[[3, 77, 500]] = [inf | 1, 0x8000 | inf | 0x3F, inf | 0x41]
        b[[9, 10]] = [inf, 0x8000 | inf]
    t["nan_inf"] = special
    gaps = np.zeros(20000, dtype)  # runs far past any G: fillers; a long implicit tail
    gaps[[0, 1, 9000, 14000]] = np.array([1.5, -0.25, 3.0, -7.0], dtype)
    gaps[[5000, 5001]] = -0.0
    t["large_gaps"] = gaps
    t["all_plus_zero"] = np.zeros((17, 3), dtype)
    t["signed_zeros_only"] = np.where(rng.random(999) < 0.5, -0.0, 0.0).astype(dtype)
    t["background_two"] = np.where(rng.random(500) < 0.7, 2.0, rng.normal(0, 1, 500)).astype(dtype)
    t["background_two"][::9] = -2.0  # B's sign flip: symbol 257 with B = 2.0
    t["one_element"] = np.array([-0.5], dtype)
    return t


@pytest.fixture(scope="module")
def tensors():
    return {d: _tensors(t) for d, t in DTYPES.items()}


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_layout7_round_trips_bit_exact_through_the_c_decoder(dtype, tensors):
    for name, a in tensors[dtype].items():
        packed = codec.encode(a, layout="sparse_planes")
        info = codec.info(packed)
        assert (packed[4], info["layout"]) == (5, "sparse_planes"), name
        out = codec.decode(packed)  # the C decoder (libdc_huffdecode.so)
        assert out.dtype == a.dtype and out.shape == a.shape, name
        assert out.tobytes() == a.tobytes(), name  # bit patterns: -0.0, NaN payloads


def test_what_each_case_is_there_for(tensors):
    """The features above are in the packed bytes (an encoder change cannot silently drop one)."""
    def fields(p):
        esz, pos = (4 if p[5] == 0 else 2), 12 + 4 * p[6]
        b = int.from_bytes(p[pos:pos + esz], "little")
        e, r, g = struct.unpack_from("<IIH", p, pos + esz)
        return b, e, r, g
    for dtype, ts in tensors.items():
        sign = 1 << (8 * ts["tfmot_20pct"].dtype.itemsize - 1)
        for name, a in ts.items():
            b, e, r, g = fields(codec.encode(a, layout="sparse_planes"))
            bits = _bits(a).reshape(-1).astype(np.int64)
            assert r == np.count_nonzero((bits != b) & (bits != b ^ sign)), (dtype, name)
            if name in ("tfmot_20pct", "signed_zeros_only", "background_two"):
                assert np.any(bits == b ^ sign), (dtype, name)  # symbol 257
            if name == "large_gaps":
                assert e > r + 2 and g < 5000, (dtype, name, e, r, g)  # fillers
            if name in ("all_plus_zero", "signed_zeros_only"):
                assert r == 0, (dtype, name)
            if name == "background_two":
                assert b in (0x40000000, 0x4000), (dtype, hex(b))


def test_the_default_encoder_picks_layout7_for_a_pruned_float_and_the_c_decoder_reads_it():
    a = _pruned(np.random.default_rng(1), (784, 30), np.float32, kept=0.1)
    packed = codec.encode(a)
    assert codec.info(packed)["layout"] == "sparse_planes" and packed[4] == 5
    assert codec.decode(packed).tobytes() == a.tobytes()


def _reseal(p):
    """§8: the CRC-32 of the bytes other than the check field (12 + 4 * rank - 4 .. + 4)."""
    at = 8 + 4 * p[6]
    crc = zlib.crc32(bytes(p[:at]) + bytes(p[at + 4:]))
    p[at:at + 4] = struct.pack("<I", crc)
    return bytes(p)


def _damaged(packed):
    """(what, bytes, the C decoder's words) for damage §18 defines, CRC made to match where marked."""
    p = bytearray(packed)
    esz, pos = (4 if p[5] == 0 else 2), 12 + 4 * p[6]
    e, r, g = struct.unpack_from("<IIH", p, pos + esz)
    out = [("a flipped stream bit", bytes(p[:-r * (esz - 1) - 1]) + bytes([p[-r * (esz - 1) - 1] ^ 4])
            + bytes(p[-r * (esz - 1):]), "checksum mismatch"),
           ("one byte cut", bytes(p[:-1]), "truncated"),
           ("one byte more", bytes(p) + b"\0", "declared sizes disagree")]
    q = bytearray(p)
    struct.pack_into("<I", q, pos + esz + 4, e + 1)  # R > E
    out.append(("R > E", _reseal(q), "layout parameter out of range"))
    q = bytearray(p[:len(p) - (esz - 1)])  # R - 1 and a plane to match: the last stored entry has no rest
    struct.pack_into("<I", q, pos + esz + 4, r - 1)
    out.append(("R one short", _reseal(q), "corrupt bit stream"))
    q = bytearray(p) + bytes(esz - 1)  # R + 1 and a plane to match: a rest no entry reads
    struct.pack_into("<I", q, pos + esz + 4, r + 1)
    out.append(("R one more", _reseal(q), "declared sizes disagree"))
    q = bytearray(p)
    struct.pack_into("<H", q, pos + esz + 8, 0)  # G = 0
    out.append(("G = 0", _reseal(q), "layout parameter out of range"))
    return out


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_damaged_layout7_bytes_raise_corrupt_data_error_naming_the_reason(dtype, tensors):
    a = tensors[dtype]["tfmot_20pct"]
    packed = codec.encode(a, layout="sparse_planes")
    for what, bad, words in _damaged(packed):
        with pytest.raises(CorruptDataError) as e:
            codec.decode(bad)
        assert e.value.status != 0 and words in str(e.value), (what, str(e.value))
    assert codec.decode(packed).tobytes() == a.tobytes()  # the input was not touched


@pytest.fixture(scope="module")
def version4_decoder(tmp_path_factory):
    """dc_codec.c built as a decoder that reads versions 1 to 4 (DC_VERSION_MAX 4, the value before
    §18): the header's constant redefined by a force-included header (as test_export_v4_ints.py's
    version 3 decoder)."""
    return _cbuild.older_decoder(tmp_path_factory.mktemp("v4dec"), 4)


def test_a_version4_decoder_refuses_version5_with_dc_err_version(version4_decoder):
    """§10: a decoder that reads up to version 4 meets version 5 only in layout 7 tensors and refuses
    them with DC_ERR_VERSION (3) at dc_peek, decoding nothing; it reads the same tensor packed with
    version=4 (no layout 7)."""
    a = _pruned(np.random.default_rng(2), (100, 30), np.float32)
    v5, v4 = codec.encode(a), codec.encode(a, version=4)
    assert codec.info(v5)["layout"] == "sparse_planes" and v5[4] == 5 and v4[4] == 4
    info = ctypes.create_string_buffer(256)
    out = np.empty_like(a)
    assert version4_decoder.dc_peek(v5, len(v5), info) == 3
    assert version4_decoder.dc_decode(v5, len(v5), out.ctypes.data, out.nbytes) == 3
    assert version4_decoder.dc_decode(v4, len(v4), out.ctypes.data, out.nbytes) == 0
    assert out.tobytes() == a.tobytes()
    with pytest.raises(CorruptDataError, match="version 9, which only a decoder with DC_VERSION_MAX >= 9"):
        codec.decode(v5[:4] + b"\x09" + v5[5:])  # and this decoder names what reads a newer one
