"""Round trips and error handling of dc_keras.codec (docs/FORMAT.md), through the public API."""
import ctypes
import heapq
import struct

import numpy as np
import pytest

from dc_keras import codec
import ml_dtypes

DTYPES = [np.float32, np.float16, np.int32, np.int16, np.int8, np.uint8]
LAYOUTS = [None, "dense", "sparse"]


def roundtrip(a, **kw):
    a = np.asarray(a)
    packed = codec.encode(a, **kw)
    assert isinstance(packed, bytes)
    b = codec.decode(packed)
    assert b.dtype == a.dtype.newbyteorder("=")
    assert b.shape == a.shape
    assert b.tobytes() == np.ascontiguousarray(a, dtype=b.dtype).tobytes()  # bit-exact
    return packed


def values_for(dtype, k, rng):
    """k distinct values of dtype."""
    if np.dtype(dtype) == np.float16:  # distinct bit patterns (finite: below the NaN range)
        return rng.permutation(np.arange(k, dtype=np.uint16) * 7).view(np.float16)
    if np.dtype(dtype).kind == "f":
        return (np.arange(k) * 0.125 - k / 16).astype(dtype)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -40000), min(info.max, 40000)
    return rng.choice(np.arange(lo, hi + 1, dtype=np.int64), size=k, replace=False).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (), (1,), (7,), (5, 3), (2, 3, 4), (2, 1, 3, 2, 5), (64, 33)])
def test_roundtrip_dtypes_shapes_layouts(dtype, layout, shape):
    rng = np.random.default_rng(hash((np.dtype(dtype).str, layout, shape)) % 2**32)
    vals = values_for(dtype, 9, rng)
    a = rng.choice(vals, size=shape) if shape else np.asarray(rng.choice(vals), dtype)
    a = np.asarray(a, dtype)
    packed = roundtrip(a, layout=layout)
    info = codec.info(packed)
    assert info["shape"] == a.shape and info["dtype"] == np.dtype(dtype)
    if a.size and layout:
        assert info["layout"] == layout


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_no_zero_and_one_value(dtype):
    z = np.zeros((50, 40), dtype)
    packed = roundtrip(z)
    assert len(packed) < 64  # zero-bit code: nothing but the header
    for layout in LAYOUTS:
        roundtrip(z, layout=layout)
    c = np.full((3, 7), 5, dtype)
    assert len(roundtrip(c)) < 64
    rng = np.random.default_rng(0)
    nz = rng.choice(np.array([1, 2, 3, 4], dtype), size=(30, 30))
    for layout in LAYOUTS:
        roundtrip(nz, layout=layout)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int16])
def test_many_distinct_values(dtype):
    rng = np.random.default_rng(1)
    for k in (256, 257, 1000, 4096):
        a = rng.permutation(np.repeat(values_for(dtype, k, rng), 3))
        packed = roundtrip(a, layout="dense")
        assert len(roundtrip(a)) <= len(packed)  # the automatic choice is never larger
        assert codec.info(packed)["codebook_size"] == k
        assert codec.info(packed)["index_code"]["max_length"] <= 12
    a = np.concatenate([values_for(dtype, 4097, rng)])
    if np.dtype(dtype).kind == "f":  # unclustered floats: §12 float planes (version 2)
        assert codec.info(roundtrip(a))["layout"] == "float_planes"
        with pytest.raises(ValueError, match="distinct values"):
            codec.encode(a, version=1)
    else:  # unclustered ints: §17 integer planes (version 4); versions 2 and 3 have no layout for them
        packed = roundtrip(a)
        assert codec.info(packed)["layout"] == "int_planes" and packed[4] == 4
        for version in (2, 3):
            with pytest.raises(ValueError, match="distinct values"):
                codec.encode(a, version=version)


def test_int_planes_decoder_paths():
    """§17 through the C decoder's loops (dc_codec.c int_planes_body): 1 to 4 elements per 8-byte
    load (the longest element's bits), 8-byte elements of more than 56 bits (their extra bits in
    two loads) in the fast rounds and in the one-at-a-time tail, both predictors, every length
    mod 16 near the ends of the streams."""
    rng = np.random.default_rng(17)
    seen = set()
    for dtype in (np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        info = np.iinfo(dtype)
        for bits in (3, 6, 9, 12, 14, 16, 22, 30, 50, 64):
            for n in (1, 2, 5, 13, 16, 31, 64, 67, 1000, 4099):
                a = (rng.integers(0, 2**min(bits, 62), n, dtype=np.uint64) * (1 + (bits == 64) * 3)).view(np.int64)
                a = (a.astype(np.int64) - (2**(min(bits, 62) - 1) if info.min < 0 else 0)).astype(dtype)
                if bits == 64:  # a few full-width values among small ones: classes up to 64 for int64
                    a[::7] = rng.integers(info.min, info.max, len(a[::7]), dtype=dtype, endpoint=True)
                walk = (np.cumsum(a.astype(np.uint64), dtype=np.uint64) + np.uint64(2**63 - 5)).astype(dtype)
                steps = rng.integers(-4, 4, n)
                steps[::50] = rng.integers(-2**15, 2**15, len(steps[::50]))  # rare long residuals
                jumps = (np.cumsum(steps).astype(np.uint64) + np.uint64(bits)).astype(dtype)
                for b in (a, walk, jumps):  # the walks: the previous-element predictor wins
                    packed = roundtrip(b, layout="int_planes")
                    info6 = codec.info(packed)
                    hi = info6["element_bit_range"][1]
                    per_load = 4 if hi <= 14 else 3 if hi <= 18 else 2 if hi <= 28 else 1 if hi <= 56 else 0
                    seen.add((np.dtype(dtype).itemsize, info6["predictor"], per_load, n >= 1000))
    for esz in (2, 4, 8):
        for predictor in ("base", "previous"):
            for per_load in (1, 2, 3, 4) if esz > 2 else (2, 3, 4):
                assert (esz, predictor, per_load, True) in seen, (esz, predictor, per_load)
    for predictor in ("base", "previous"):  # long elements in the fast rounds and in the tail alone
        assert (8, predictor, 0, True) in seen and (8, predictor, 0, False) in seen


def test_uint8_int8_all_256_values():
    for dt in (np.uint8, np.int8):
        a = np.arange(256).astype(dt).repeat(5)
        np.random.default_rng(2).shuffle(a)
        for layout in LAYOUTS:
            roundtrip(a, layout=layout)


def test_uniform_and_skewed_distributions_size():
    rng = np.random.default_rng(3)
    uni = rng.integers(0, 32, size=100_000).astype(np.uint8)
    p = roundtrip(uni)
    bits = 8 * len(p) / uni.size
    assert 4.99 < bits < 5.1  # 32 equiprobable symbols: 5 bits each
    geo = np.minimum(rng.geometric(0.5, size=100_000) - 1, 40).astype(np.uint8)
    p = roundtrip(geo)
    counts = np.bincount(geo)
    ent = -(counts[counts > 0] / geo.size * np.log2(counts[counts > 0] / geo.size)).sum()
    assert 8 * len(p) / geo.size < ent + 0.05  # Huffman on a dyadic-like source: ~entropy


def test_length_limit_respected_and_optimal():
    rng = np.random.default_rng(4)
    fib = np.array([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181])
    a = np.repeat(np.arange(len(fib)), fib).astype(np.int16)  # unlimited Huffman depth would be 18
    rng.shuffle(a)
    sizes = []
    for limit in (5, 8, 12):
        p = roundtrip(a, max_code_length=limit, layout="dense")  # (§17 is smaller at limit 5)
        info = codec.info(p)
        assert info["index_code"]["max_length"] == limit
        sizes.append(len(p))
    assert sizes[0] > sizes[1] > sizes[2]
    with pytest.raises(ValueError, match="max_code_length"):
        codec.encode(a, max_code_length=4, version=3)  # 19 symbols need >= 5 bits (§17 has 17 classes)
    with pytest.raises(ValueError):
        codec.encode(a, max_code_length=13)


def huffman_cost(counts):
    h = [int(c) for c in counts if c > 0]
    if len(h) < 2:
        return 0
    heapq.heapify(h)
    cost = 0
    while len(h) > 1:
        x, y = heapq.heappop(h), heapq.heappop(h)
        cost += x + y
        heapq.heappush(h, x + y)
    return cost


def test_package_merge_matches_huffman_when_unconstrained():
    from dc_keras.codec._encode import code_lengths

    rng = np.random.default_rng(5)
    for _ in range(50):
        counts = rng.integers(0, 1000, size=rng.integers(2, 60))
        counts[rng.integers(0, len(counts))] += 1
        lengths, L = code_lengths(counts, 12)
        used = counts > 0
        if used.sum() >= 2:
            assert np.sum(2.0 ** -lengths[used].astype(float)) == 1.0  # complete code
            assert int(np.dot(counts, lengths)) == huffman_cost(counts)
            assert (lengths[~used] == 0).all() and L == lengths.max()


def test_floats_bit_exact_nan_negative_zero():
    a = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 0.0, 0.0], np.float32)
    a = np.concatenate([a, np.frombuffer(struct.pack("<I", 0x7FC00123), np.float32)])
    for layout in LAYOUTS:
        roundtrip(a, layout=layout)
    roundtrip(a.astype(np.float16))


def test_sparse_background_is_most_frequent_value_and_explicit():
    rng = np.random.default_rng(6)
    q = np.full((100, 64), -3, np.int8)  # int8 zero point -3 is the background, not 0
    m = rng.random(q.shape) < 0.08
    q[m] = rng.integers(-128, 128, size=int(m.sum()))
    p = roundtrip(q)
    info = codec.info(p)
    assert info["layout"] == "sparse" and info["background"] == -3
    assert len(p) < len(codec.encode(q, layout="dense"))  # the auto choice is the smaller


def test_huge_gaps_use_fillers():
    w = np.zeros(200_000, np.float32)
    w[[5, 6, 150_000, 199_999]] = [1.0, -1.0, 0.5, 2.0]
    for layout in (None, "sparse"):
        roundtrip(w, layout=layout)
    info = codec.info(codec.encode(w, layout="sparse"))
    assert info["entries"] > 4  # fillers bridge gaps longer than the gap alphabet
    assert info["gap_alphabet"] <= 4096
    w2 = w.reshape(2, 10, 100, 10, 10)
    roundtrip(w2)


def test_pruned_clustered_layer_beats_dense_and_paper_bits():
    rng = np.random.default_rng(7)
    w = rng.laplace(size=(784, 300)).astype(np.float32)
    keep = np.abs(w) > np.quantile(np.abs(w), 0.92)
    centroids = np.linspace(-6, 6, 32).astype(np.float32)
    idx = np.clip(np.searchsorted(centroids, w), 0, 31)
    w = np.where(keep, centroids[idx], 0).astype(np.float32)
    p = roundtrip(w)
    assert codec.info(p)["layout"] == "sparse"
    bits_per_nonzero = 8 * len(p) / np.count_nonzero(w)
    assert bits_per_nonzero < 10  # gap + 5-bit index, Huffman-coded


def test_input_variants_and_not_modified():
    rng = np.random.default_rng(8)
    a = rng.choice(np.array([0, 1.5, -2], np.float32), size=(20, 30))
    before = a.copy()
    p1 = codec.encode(a)
    assert np.array_equal(a, before)
    assert codec.encode(a.astype(">f4")) == p1  # byte order of the input does not matter
    t = a.T  # non-contiguous
    roundtrip(t)
    roundtrip(a[::2, ::3])
    for data in (p1, bytearray(p1), memoryview(p1), np.frombuffer(p1, np.uint8)):
        assert np.array_equal(codec.decode(data), a)
    with pytest.raises(TypeError):
        codec.decode("not bytes")


@pytest.mark.parametrize("bad", [np.zeros(3, np.complex128), np.zeros(3, "V8"), np.zeros(3, np.complex64),
                                 np.zeros(3, "datetime64[s]"), np.array(["a"]), np.zeros(3, object)])
def test_unsupported_dtypes(bad):
    with pytest.raises(ValueError, match="unsupported dtype"):
        codec.encode(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="layout"):
        codec.encode(np.zeros(3, np.float32), layout="csr")
    with pytest.raises(ValueError, match="rank"):
        codec.encode(np.zeros((1,) * 9, np.float32))


def test_corrupt_data_error_carries_reason():
    p = codec.encode(np.arange(10, dtype=np.int16), version=2)  # dense (version 4 would pick §17)
    assert issubclass(codec.CorruptDataError, ValueError)
    cases = {b"XXXX" + p[4:]: "magic", p[:4] + b"\x06" + p[5:]: "version", p[:-1]: "truncated",
             p + b"\0": "sizes", b"": "truncated"}
    for data, word in cases.items():
        with pytest.raises(codec.CorruptDataError, match=word) as e:
            codec.decode(data)
        assert e.value.status != 0
    # flip a codebook value: only the checksum can tell
    i = codec.info(p)
    off = i["header_bytes"] - 16 - 1 - (10 + 1) // 2 - i["codebook_bytes"]
    bad = bytearray(p)
    bad[off] ^= 0x40
    with pytest.raises(codec.CorruptDataError, match="checksum"):
        codec.decode(bytes(bad))
    with pytest.raises(codec.CorruptDataError):
        codec.info(p[:20])


def test_info_fields():
    w = np.zeros((30, 40), np.float32)
    w[::3, ::7] = 0.25
    p = codec.encode(w)
    i = codec.info(p)
    assert i["packed_bytes"] == len(p) and i["raw_bytes"] == w.nbytes
    assert i["header_bytes"] + sum(i["stream_bytes"]) == len(p)
    assert i["num_elements"] == 1200 and i["codebook"].tolist() == [0.0, 0.25]
    assert i["entries"] >= np.count_nonzero(w)


def test_large_constant_tensor_uses_one_bit_code():
    # FORMAT.md §9: all-zero-bit codes are limited to 16 MiB of output.
    a = np.full(5_000_000, 3, np.int32)
    p = roundtrip(a)
    info = codec.info(p)
    assert info["codebook_size"] == 2 and info["index_code"]["max_length"] == 1
    assert len(p) < a.size // 8 + 100
    # forced §6: one bit per filler entry (tests/test_export_edge_cases.py); the grouped layouts
    # (one codebook entry per group) cannot get the spare entry, so they still refuse
    assert len(roundtrip(np.zeros(5_000_000, np.float32), layout="sparse")) < 5_000_000 // 4096 // 8 + 100
    with pytest.raises(ValueError, match="zero-bit"):
        codec.encode(np.zeros((2, 2_500_000), np.float32), layout="grouped_sparse")
    small = roundtrip(np.zeros(4_000_000, np.float32))
    assert len(small) < 64


@pytest.mark.slow
def test_ten_million_elements_roundtrip():
    rng = np.random.default_rng(12)
    centroids = np.linspace(-0.2, 0.2, 32).astype(np.float32)
    w = np.where(rng.random(10_000_000) < 0.08, rng.choice(centroids, size=10_000_000), 0).astype(np.float32)
    p = roundtrip(w)
    assert codec.info(p)["layout"] == "sparse"
    d = rng.choice(centroids, size=(2500, 4000))
    roundtrip(d)


def _v1_vectors():
    """(name, packed, raw) of the frozen version 1 files checked in for the C tests."""
    import os
    import re

    path = os.path.join(os.path.dirname(__file__), "..", "tflite_kernels", "tests", "codec_vectors_v1.h")
    text = open(path).read()
    arrays = {m.group(1): bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", m.group(2)))
              for m in re.finditer(r"static const uint8_t (\w+)\[\] = \{([^}]*)\};", text)}
    names = sorted({k[:-len("_packed")] for k in arrays if k.endswith("_packed")})
    return [(n, arrays[n + "_packed"], arrays[n + "_raw"]) for n in names]


def test_checked_in_version1_files_still_decode():
    """FORMAT.md §10: files written under version 1 decode forever, with the v1 rules."""
    vectors = _v1_vectors()
    assert len(vectors) >= 12
    for name, packed, raw in vectors:
        assert packed[4] == 1, name
        info = codec.info(packed)
        assert info["version"] == 1 and len(info["checksum"]) == 2
        assert codec.decode(packed, raw=True).tobytes() == raw, name
        bad = bytearray(packed)
        bad[8 + 4 * packed[6]] ^= 1  # check_a
        with pytest.raises(codec.CorruptDataError, match="checksum"):
            codec.decode(bytes(bad))


def test_version1_encoding_refuses_what_it_cannot_express():
    import ml_dtypes

    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    assert codec.encode(a, version=1)[4] == 1 and codec.encode(a)[4] == 2
    for layout in ("grouped_dense", "grouped_sparse", "float_planes"):
        with pytest.raises(ValueError, match="version"):
            codec.encode(a.astype(np.float32), layout=layout, version=1)
    with pytest.raises(ValueError, match="version"):
        codec.encode(np.zeros(4, ml_dtypes.int4), version=1)
    with pytest.raises(ValueError, match="version"):
        codec.encode(np.zeros(4, np.int8), version=6)
    for version in (1, 2):  # §16's types need version 3
        with pytest.raises(ValueError, match=f"format version {version} cannot hold int64 tensors"):
            codec.encode(np.zeros(4, np.int64), version=version)
    # the same tensor, both versions: same payload, different header/checksum
    p1, p2 = codec.encode(a, version=1), codec.encode(a, version=2)
    assert len(p1) == len(p2) + 4 and codec.decode(p1).tobytes() == codec.decode(p2).tobytes()


def test_pack_version_option_writes_that_version():
    """pack(version=1) for apps with an old decoder: every packed tensor is a version 1 file."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from dc_keras.export import pack

    rng = np.random.default_rng(3)
    w = np.where(rng.random((64, 32)) < 0.1, rng.choice([-0.5, 0.25, 1.0], (64, 32)), 0).astype(np.float32)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
        def f(self, x):
            return tf.matmul(x, tf.constant(w))

    m = M()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m)
    model = conv.convert()
    for version in (1, 2):
        packed = pack(model, version=version, min_bytes=0)
        assert len(packed) < len(model)
        assert packed.count(b"DCHF" + bytes([version])) >= 1
        assert packed.count(b"DCHF" + bytes([3 - version])) == 0
    # default: version 2 unless a tensor's dtype needs 3 (none here); version=3 writes 3
    assert pack(model, min_bytes=0).count(b"DCHF\x02") >= 1 and b"DCHF\x03" not in pack(model, min_bytes=0)
    assert pack(model, version=3, min_bytes=0).count(b"DCHF\x03") >= 1
    with pytest.raises(ValueError, match="version"):
        pack(model, version=6)


# ----------------------------------------------------------------------------------------------
# §14 context-modelled sparse layout
# ----------------------------------------------------------------------------------------------
def _sign_runs(rng, shape, density, switch, k):
    """Pruned, clustered weights whose kept values come in runs of one sign along the last axis
    (as neighbouring inputs of one neuron in a TFLite [out, in] kernel)."""
    sign = np.where(np.cumsum(rng.random(shape) < switch, axis=-1) % 2, -1.0, 1.0)
    return np.where(rng.random(shape) < density, sign * rng.choice(np.linspace(0.05, 1, k), shape), 0)


def _with_crc(buf):
    """Recomputes the version 2 CRC (§8) of a patched packed tensor."""
    import zlib

    at = 8 + 4 * buf[6]
    body = bytes(buf[:at]) + bytes(buf[at + 4:])
    return bytes(buf[:at]) + struct.pack("<I", zlib.crc32(body)) + bytes(buf[at + 4:])


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8, np.int16, np.int32, np.uint8])
def test_context_sparse_roundtrip(dtype):
    rng = np.random.default_rng(19)
    for trial in range(40):
        n = int(rng.integers(1, 2500))
        a = _sign_runs(rng, (n,), float(rng.random()), 0.2, int(rng.integers(2, 30)))
        if dtype in (np.uint8,):
            a = np.abs(a)
        a = (a * 50).astype(dtype)
        if trial % 5 == 0:
            a[: n // 2] = 0  # long gaps: fillers
        if len(np.unique(a.view(f"u{a.itemsize}"))) < 2:
            continue
        packed = codec.encode(a, layout="context_sparse", max_code_length=int(rng.integers(7, 13)))
        info = codec.info(packed)
        assert info["layout"] == "context_sparse" and info["contexts"] == 4
        assert info["segment_starts"] == sorted(info["segment_starts"])
        assert codec.decode(packed).tobytes() == a.tobytes()


def test_context_sparse_picked_only_when_smaller():
    rng = np.random.default_rng(5)
    runs = _sign_runs(rng, (300, 784), 0.07, 0.005, 28).astype(np.float32)
    assert codec.info(codec.encode(runs))["layout"] == "sparse"  # opt-in: decodes ~0.8x as fast
    packed = codec.encode(runs, context_model=True)
    assert codec.info(packed)["layout"] == "context_sparse"
    assert len(packed) < 0.97 * len(codec.encode(runs, layout="sparse"))
    assert codec.decode(packed).tobytes() == runs.tobytes()
    iid = np.where(rng.random((300, 784)) < 0.07, rng.choice(np.linspace(-1, 1, 28), (300, 784)), 0)
    assert codec.info(codec.encode(iid.astype(np.float32), context_model=True))["layout"] == "sparse"  # no correlation
    assert codec.info(codec.encode(np.eye(50, dtype=np.float32), context_model=True))["layout"] != "context_sparse"
    with pytest.raises(ValueError):  # sub-byte types use §5/§6 only
        codec.encode(np.array([0, 1, 0, 1], ml_dtypes.int4), layout="context_sparse")
    with pytest.raises(ValueError, match="version"):
        codec.encode(runs, layout="context_sparse", version=1)


def test_context_sparse_hostile_fields_rejected_with_valid_crc():
    rng = np.random.default_rng(7)
    a = _sign_runs(rng, (40, 50), 0.2, 0.1, 9).astype(np.float32)
    packed = codec.encode(a, layout="context_sparse")
    info = codec.info(packed)
    k = info["codebook_size"]
    at = 8 + 4 * 2 + 4 + 2 + 4 * k + 8 + (1 + (info["gap_alphabet"] + 1) // 2)  # P1 (§14)
    assert list(struct.unpack_from("<3I", packed, at)) == info["segment_starts"][1:]
    patches = {
        "P1 beyond P2": (at, struct.pack("<I", info["segment_starts"][2] + 1)),
        "P3 beyond N": (at + 8, struct.pack("<I", a.size + 1)),
        "P2 shifted": (at + 4, struct.pack("<I", info["segment_starts"][2] - 1)),
        "odd context count": (at + 12, b"\x03"),
        "context count 10": (at + 12, b"\x0a"),
        "class 2 with C = 4": (at + 13, b"\x22"),
    }
    for what, (off, new) in patches.items():
        bad = bytearray(packed)
        bad[off:off + len(new)] = new
        bad = _with_crc(bad)
        with pytest.raises(codec.CorruptDataError):
            codec.decode(bad)
        if what != "P2 shifted":  # caught by the header parser too; a shifted start only by decoding
            with pytest.raises(codec.CorruptDataError):
                codec.info(bad)
    # every single byte changed, CRC fixed: rejected or decoded, never a crash
    for off in range(8, len(packed)):
        bad = bytearray(packed)
        bad[off] ^= 0x5A
        try:
            codec.decode(_with_crc(bad))
        except codec.CorruptDataError:
            pass


@pytest.fixture
def portable_and_simd():
    """Decodes with the x86-64 fast paths (BMI2 loops, carry-less CRC, the §6 float32 pair-table
    loop with AVX-512 stores where the CPU has them), with those but AVX-512
    (dc_codec_use_simd(2)), without any (dc_codec_use_simd(0): the portable reference code) and
    with the portable §5 spread-codebook loop forced (dc_codec_portable_fast(2); the default on
    64-bit ARM), restoring the settings afterwards: [fast, portable, fast without AVX-512,
    portable spread]."""
    from dc_keras.codec._decode import _library

    lib = _library()
    for name in ("dc_codec_use_simd", "dc_codec_portable_fast"):
        getattr(lib, name).argtypes = [ctypes.c_int]
        getattr(lib, name).restype = ctypes.c_int

    def both(packed):
        out = []
        for switch, on in ((lib.dc_codec_use_simd, 1), (lib.dc_codec_use_simd, 0),
                           (lib.dc_codec_use_simd, 2), (lib.dc_codec_portable_fast, 2)):
            was = switch(on)
            try:
                out.append(codec.decode(packed))
            except codec.CorruptDataError as e:
                out.append(f"error {e.status}")
            finally:
                switch(was)
        return out

    return both


@pytest.mark.parametrize("version,dtype", [(1, np.float32), (1, np.int32), (2, np.float32), (2, np.int32),
                                           (3, np.uint32), (3, np.int64)])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_fast_paths_match_portable_decoder(portable_and_simd, version, dtype, layout):
    """§5 / §6 32-bit: the BMI2 loops give the portable loops' bytes for every size (stream tails,
    fast-loop chunk edges), density and code length up to 12 bits, and the same error for corrupt
    data. uint32 (version 3, §16) takes the same 32-bit loops; int64 its 8-byte ones on every
    setting."""
    rng = np.random.default_rng(version)
    for n, k, skew in [(1, 2, 0), (15, 3, 0), (16, 5, 0), (17, 7, 1), (63, 256, 0), (64, 256, 1),
                       (65, 9, 2), (1000, 31, 1), (16 * 1024 * 4 + 5, 200, 2), (40000, 4000, 3),
                       (70001, 256, 0)]:
        vals = values_for(dtype, k, rng)
        p = rng.random(k) ** (1 + 4 * skew)  # skewed: long codes (the encoder caps them at 12 bits)
        a = vals[rng.choice(k, size=n, p=p / p.sum())]
        if layout == "sparse":  # long and short gaps
            a = np.where(rng.random(n) < (0.02, 0.1, 0.5)[skew % 3], a, 0).astype(dtype)
            a[: min(n, 3)] = vals[-1]
        packed = codec.encode(a, layout=layout, version=version)
        fast, portable, avx2, spread = portable_and_simd(packed)
        assert (fast.tobytes() == portable.tobytes() == avx2.tobytes() == spread.tobytes()
                == a.tobytes()), (n, k)
        bad = bytearray(packed)
        for pos in rng.integers(len(packed) // 2, len(packed), size=6):
            bad[pos] ^= 1 << int(rng.integers(8))
            _assert_same_result(*portable_and_simd(bytes(bad)))
            bad[pos] = packed[pos]


def test_context_pair_loops_match_portable_decoder(portable_and_simd):
    """§14 float32 on x86-64: the pair-table loop (two tables, one per class of the previous index,
    after the §14 tables in dc_decode's workspace) gives the portable loop's bytes and statuses, as
    does a workspace of dc_workspace_size() bytes (no room for them: the portable loop): segments
    that end inside an iteration's reach, long gaps (12-bit gap codes) and 10-bit index codes, one
    or two classes, a non-zero background, a zero-bit gap code; and every corrupt variant alike."""
    from dc_keras.codec._decode import _library

    lib = _library()
    rng = np.random.default_rng(14)
    cases = [((300, 784), 0.07, 0.005, 28, 0), ((784, 300), 0.08, 0.3, 32, 0), ((200, 500), 0.4, 0.05, 300, 1),
             ((4096 * 3 + 5,), 0.01, 0.1, 9, 2), ((1000, 61), 0.6, 0.02, 500, 0), ((5000,), 1.0, 0.1, 40, 3),
             ((97, 89), 0.05, 0.5, 3, 4)]
    for shape, density, switch, k, kind in cases:
        a = _sign_runs(rng, shape, density, switch, k)
        if kind == 1:  # empty stretches: long gap codes
            flat = a.reshape(-1)
            for start in rng.integers(0, flat.size, size=10):
                flat[start:start + int(rng.integers(300, 4000))] = 0
        if kind == 2:
            a = np.abs(a)  # one class
        if kind == 3:  # a non-zero background: the most common value
            a[rng.random(a.shape) < 0.7] = a.reshape(-1)[0]
        a = a.astype(np.float32)
        packed = codec.encode(a, layout="context_sparse", max_code_length=12)
        info = codec.info(packed)
        assert info["layout"] == "context_sparse", info
        want = a.tobytes()
        fast, portable, avx2, spread = portable_and_simd(packed)
        assert fast.tobytes() == portable.tobytes() == avx2.tobytes() == spread.tobytes() == want, shape
        size = ctypes.c_size_t()
        assert lib.dc_workspace_size(packed, len(packed), ctypes.byref(size)) == 0
        ws = np.zeros(size.value, np.uint8)  # exactly what the tables need: no pair tables
        out = np.empty_like(a)
        args = (packed, len(packed), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(out.nbytes),
                ws.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(size.value))
        assert lib.dc_decode_ws(*args) == 0 and out.tobytes() == want, shape
        bad = bytearray(packed)
        for pos in rng.integers(len(packed) // 3, len(packed), size=8):
            bad[pos] ^= 1 << int(rng.integers(8))
            variant = _with_crc(bad)
            results = portable_and_simd(variant)
            _assert_same_result(*results)
            status = lib.dc_decode_ws(variant, len(variant), *args[2:])
            assert status == (int(results[1].split()[1]) if isinstance(results[1], str) else 0), (shape, pos)
            bad[pos] = packed[pos]


def _assert_same_result(fast, portable, avx2, spread):
    for other in (fast, avx2, spread):
        assert str(other) == str(portable) or (
            not isinstance(other, str) and other.tobytes() == portable.tobytes())


@pytest.mark.parametrize("version", [1, 2])
def test_sparse_pair_loop_matches_portable_decoder(portable_and_simd, version):
    """§6 float32, the x86-64 pair-table loop (one lookup per entry when gap and index codes fit
    in 12 bits, 3 entries per stream load, background stores interleaved ahead of the entries):
    the portable loop's bytes and statuses for dense and sparse stretches side by side (the
    background stores fall behind and catch up), every gap alphabet up to 4096, a non-zero
    background, 12-bit codes on both sides, and tensors ending inside the loop's last reach."""
    rng = np.random.default_rng(17 + version)
    cases = [(784 * 300, 0.08, 32, 0), (300 * 784, 0.3, 200, 1), (50_000, 0.01, 5, 0),
             (4096 * 9 + 7, 0.6, 4000, 1), (20_011, 0.08, 32, 2), (3000, 0.5, 3, 0)]
    for n, density, k, kind in cases:
        vals = (rng.laplace(size=k) * 0.05).astype(np.float32)
        p = rng.random(k) ** 4  # skewed: index codes up to 12 bits
        a = vals[rng.choice(k, size=n, p=p / p.sum())]
        keep = rng.random(n) < density
        if kind == 1:  # empty stretches (pruned input rows): far apart entries, long gap codes
            for start in rng.integers(0, n, size=12):
                keep[start:start + int(rng.integers(300, 5000))] = False
        a = np.where(keep, a, np.float32(0.25) if kind == 2 else np.float32(0)).astype(np.float32)
        packed = codec.encode(a, layout="sparse", version=version)
        assert codec.info(packed)["layout"] == "sparse"
        fast, portable, avx2, spread = portable_and_simd(packed)
        assert (fast.tobytes() == portable.tobytes() == avx2.tobytes() == spread.tobytes()
                == a.tobytes()), (n, density)
        bad = bytearray(packed)
        for pos in rng.integers(len(packed) // 3, len(packed), size=8):
            bad[pos] ^= 1 << int(rng.integers(8))  # in the streams; v2: with a valid CRC
            _assert_same_result(*portable_and_simd(_with_crc(bad) if version == 2 else bytes(bad)))
            bad[pos] = packed[pos]


def test_ml_dtypes_loads_only_for_its_types(tmp_path):
    """The codec imports ml_dtypes (its extension takes ~1 s to load, ~11 s under qemu) only for
    bfloat16 / int4 / uint4 / int2 tensors: packing, unpacking and inspecting a float32 model, and
    coding float32 / int8 tensors, leave it unloaded; an int4 header then loads it."""
    import os
    import subprocess
    import sys

    import _export_models as em

    (tmp_path / "m.tflite").write_bytes(em.tflite("dense", None))  # made here: Keras loads ml_dtypes
    script = """
import sys
import numpy as np
from dc_keras import codec, export
plain = open(sys.argv[1], "rb").read()
export.inspect(export.pack(plain)); export.unpack(export.pack(plain))
for dt in (np.float32, np.float16, np.int8, np.int16, np.uint8, np.int32):
    a = np.array([0, 3, 0, 3, 1, 0], dt)
    assert codec.decode(codec.encode(a)).dtype == a.dtype
assert "ml_dtypes" not in sys.modules, "loaded for a non-ml_dtypes type"
import ml_dtypes  # what a caller with an int4 array has done
packed = codec.encode(np.array([0, 1, -2, 0], ml_dtypes.int4))
del sys.modules["ml_dtypes"]  # the header alone must load it again to name the dtype
assert codec.info(packed)["dtype"] == np.dtype(ml_dtypes.int4) and "ml_dtypes" in sys.modules
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.tflite")], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-3000:]


# ----------------------------------------------------------------------------------------------
# §16 format version 3: int64, bool, float64, uint64, uint32, uint16
# ----------------------------------------------------------------------------------------------
_I64 = np.iinfo(np.int64)
_NAN_PAYLOADS = np.array([0x7FF0000000000001, 0xFFF8000000000123, 0x7FF8DEADBEEF0001, 0x8000000000000000,
                          0x7FF0000000000000, 0xFFF0000000000000], np.uint64).view(np.float64)


def _v3_tensors():
    """(name, array) of every version 3 dtype: edge values, pruned (sparse) and dense mixes, sizes
    past the decoder's 4-stream fast loops and odd tails."""
    rng = np.random.default_rng(31)
    keep = rng.random((67, 129)) < 0.1
    return [
        ("int64_edges", np.where(keep, rng.choice([_I64.min, _I64.max, -1, 1, 2**33], keep.shape), 0).astype(np.int64)),
        ("int64_dense", (rng.integers(-50, 50, (41, 37)) * 10**12 + _I64.max // 3).astype(np.int64)),
        ("uint64_max", np.where(keep, np.uint64(2**64 - 1), np.uint64(2**63)).astype(np.uint64)),
        ("float64_special", rng.choice(np.concatenate([_NAN_PAYLOADS, [0.0, -0.0, 1e-310, 2.5]]), (33, 31))),
        ("float64_pruned", np.where(keep, rng.choice([-0.75, 0.5, 1e300], keep.shape), 0.0)),
        ("bool_dense", rng.random(1001) < 0.5),
        ("bool_sparse", keep),
        ("uint32_edges", rng.choice(np.array([0, 1, 2**31, 2**32 - 1], np.uint32), (3, 5, 77))),
        ("uint16_pruned", np.where(keep, rng.integers(1, 65536, keep.shape), 0).astype(np.uint16)),
    ]


@pytest.mark.parametrize("name,a", _v3_tensors(), ids=[t[0] for t in _v3_tensors()])
def test_version3_dtypes_round_trip_bit_exact(name, a):
    """Every layout each §16 dtype may use, bit-exact through the C decoder, version byte 3."""
    layouts = [None, "dense", "sparse"] + (["context_sparse"] if a.dtype != np.bool_ else []) \
        + (["grouped_dense", "grouped_sparse"] if a.dtype in (np.uint16, np.uint32) else [])
    for layout in layouts:
        packed = codec.encode(a, layout=layout)
        info = codec.info(packed)
        v = 4 if info["layout"] == "int_planes" else 3  # §17 where it is smaller (uint16_pruned)
        assert packed[4] == v and info["version"] == v and info["dtype"] == a.dtype
        assert layout is None or info["layout"] == layout
        back = codec.decode(packed)
        assert back.dtype == a.dtype and back.shape == a.shape and back.tobytes() == a.tobytes(), (name, layout)
        assert codec.decode(packed, raw=True).tobytes() == a.tobytes()
    assert len(codec.encode(a)) < a.nbytes // 3  # few distinct values: much smaller than raw


def test_version3_only_where_needed():
    """§10: the encoder writes version 2 for every dtype version 2 holds (deployed decoders read
    those files), 3 only for §16's; version=3 can be asked for any dtype."""
    a = np.arange(24, dtype=np.int8).reshape(4, 6)
    assert codec.encode(a)[4] == 2
    p3 = codec.encode(a, version=3)
    assert p3[4] == 3 and p3[5:] != codec.encode(a)[5:] and codec.decode(p3).tobytes() == a.tobytes()
    b = a % 3  # (np.arange itself takes §17, version 4: below)
    assert codec.encode(b.astype(np.int64))[4] == 3 and codec.encode(b.astype(np.int64), version=3)[4] == 3
    assert codec.encode(a.astype(np.int64))[4] == 4 and codec.encode(a.astype(np.int64), version=3)[4] == 3
    for dtype in (np.int64, np.uint64, np.float64, np.uint32, np.uint16, np.bool_):
        for version in (1, 2):
            with pytest.raises(ValueError, match=f"format version {version} cannot hold .* use version=3"):
                codec.encode(np.zeros(5, dtype), version=version)


def test_version3_refusals_name_the_problem():
    with pytest.raises(ValueError, match="bool tensor holds the byte value 2.*0 or 1"):
        codec.encode(np.array([0, 1, 2, 1], np.uint8).view(np.bool_))
    for dtype, layout in ((np.int64, "grouped_dense"), (np.float64, "grouped_sparse"), (np.uint64, "float_planes"),
                          (np.float64, "float_planes"), (np.bool_, "context_sparse"), (np.bool_, "grouped_dense"),
                          (np.uint16, "float_planes")):
        with pytest.raises(ValueError, match=f"does not hold {np.dtype(dtype).name} tensors"):
            codec.encode(np.zeros((4, 5), dtype), layout=layout)
    a = np.array([5, -3], np.int64)
    assert np.array_equal(codec.decode(codec.encode(a)), a) and a.tolist() == [5, -3]  # input untouched


def test_one_distinct_value_keeps_its_codebook_unless_only_int_planes_can_hold_it():
    """§10/§17: a constant (or 1-element) int tensor would be 1 byte smaller as layout 6, but
    stays a one-entry codebook of version 2 / 3 (old decoders read it); with layouts that leave
    no codebook plan for it, layout 6 holds it."""
    for a in (np.full((4, 5), -9, np.int32), np.array([2**40], np.int64), np.array(7, np.uint16)):
        packed = codec.encode(a)
        assert codec.info(packed)["layout"] == "dense" and packed[4] == (3 if a.dtype.itemsize == 8
                                                                         or a.dtype == np.uint16 else 2)
        only = codec.encode(a, layouts=("context_sparse", "int_planes"), context_model=True)
        assert codec.info(only)["layout"] == "int_planes" and len(only) == len(packed) - 1
        assert codec.decode(only).tobytes() == a.tobytes()


def test_int_planes_refusals_name_the_problem():
    """§17: layout 6 forced where it cannot be: an older version (the fix: version=4 or None), a
    type it does not hold (the fix: layout=None), a huge tensor whose codes would all be zero-bit
    (§9); and a version 4 tensor with a predictor byte other than 0 / 1 is corrupt. The input is
    left as it was."""
    a = np.arange(-50, 50, dtype=np.int32)
    for version in (2, 3):
        with pytest.raises(ValueError, match=r"layout 'int_planes' holds int16, .* format version >= 4 "
                                             rf"\(FORMAT.md §17\), not version {version} int32; use version=4 or None"):
            codec.encode(a, layout="int_planes", version=version)
    for dtype in (np.float32, np.int8, np.uint8, np.float64, np.bool_):
        with pytest.raises(ValueError, match=r"use layout=None"):
            codec.encode(np.zeros(8, dtype), layout="int_planes")
    with pytest.raises(ValueError, match=r"zero-bit is limited to 16777216 bytes"):
        codec.encode(np.full(2**21 + 1, 7, np.int64), layout="int_planes")
    assert np.array_equal(a, np.arange(-50, 50, dtype=np.int32))
    p = bytearray(codec.encode(a, layout="int_planes"))
    at = 12 + 4  # header of a rank-1 tensor, then the predictor byte
    assert p[at] in (0, 1)
    p[at] = 2
    with pytest.raises(codec.CorruptDataError, match="layout") as e:
        codec.decode(_with_crc(p))
    assert e.value.status == 7  # DC_ERR_LAYOUT
    with pytest.raises(codec.CorruptDataError, match=r"predictor 2 is not 0 \(base\) or 1"):
        codec.info(_with_crc(p))


def test_version3_corruption_is_rejected():
    """A version 3 file relabelled version 2 (re-sealed), a bool codebook value 2, an 8-byte type
    relabelled as a grouped layout or float planes, and a huge zero-bit int64 tensor: one clear
    CorruptDataError each, before anything is decoded or allocated."""
    b = np.array([True, False, False, True] * 40)
    p = codec.encode(b, layout="dense")
    v2 = bytearray(p)
    v2[4] = 2
    with pytest.raises(codec.CorruptDataError, match="element type") as e:
        codec.decode(_with_crc(v2))
    assert e.value.status == 4  # DC_ERR_DTYPE
    with pytest.raises(codec.CorruptDataError, match="dtype code 6 for format version 2"):
        codec.info(_with_crc(v2))
    bad = bytearray(p)
    at = 12 + 4 * 1 + 2  # header, K, then the codebook: values 0 and 1
    assert bytes(bad[at:at + 2]) == b"\x00\x01"
    bad[at + 1] = 2
    with pytest.raises(codec.CorruptDataError, match="codebook") as e:
        codec.decode(_with_crc(bad))
    assert e.value.status == 6  # DC_ERR_CODEBOOK
    with pytest.raises(codec.CorruptDataError, match="bool codebook value 2"):
        codec.info(_with_crc(bad))
    q = bytearray(codec.encode(np.arange(8, dtype=np.int64) % 3, layout="dense"))
    for layout in (2, 4):
        q[7] = layout
        with pytest.raises(codec.CorruptDataError, match="layout") as e:
            codec.decode(_with_crc(q))
        assert e.value.status == 7  # DC_ERR_LAYOUT
    # §9: all-zero-bit codes may not declare more than 16 MiB: 2^31 - 1 int64 elements (16 GiB)
    c = bytearray(codec.encode(np.full(4, -7, np.int64)))
    c[8:12] = struct.pack("<I", 2**31 - 1)
    with pytest.raises(codec.CorruptDataError, match="sizes") as e:
        codec.decode(_with_crc(c))
    assert e.value.status == 10  # DC_ERR_SIZE_MISMATCH, from dc_peek: nothing allocated


def test_version3_large_constant_uses_the_one_bit_code():
    """§9's rule with 8-byte elements: a constant int64 tensor of more than 16 MiB gets the spare
    codebook entry (one bit per element) and decodes bit-exact."""
    a = np.full(2**21 + 3, _I64.min + 5, np.int64)  # 16 MiB + 24 B
    packed = codec.encode(a)
    info = codec.info(packed)
    assert info["codebook_size"] == 2 and info["index_code"]["max_length"] == 1
    assert np.array_equal(codec.decode(packed), a)


def test_a_refused_format_version_is_named():
    """codec.decode names a refused version as the C tools and dc_unpack() do: which decoder reads
    a newer one; a version byte of 0 is damage, not a newer file (both were "unsupported packed
    tensor format version (newer than this decoder?)"). codec.info (the Python header parser) says
    0 does not exist instead of "upgrade dc_keras"."""
    good = bytearray(codec.encode(np.arange(40, dtype=np.float32) % 7))
    for v, says in ((9, ": it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads"),
                    (0, ": version 0 does not exist (the first is 1)")):
        bad = bytes(good[:4] + bytes([v]) + good[5:])
        with pytest.raises(codec.CorruptDataError) as e:
            codec.decode(bad)
        assert str(e.value) == "unsupported packed tensor format version (newer than this decoder?)" + says
    with pytest.raises(codec.CorruptDataError, match=r"^unsupported format version 0: version 0 does not exist "
                       r"\(the first is 1\)$"):
        codec.info(bytes(good[:4] + b"\0" + good[5:]))


def test_a_version2_reader_says_upgrade_on_version3(monkeypatch):
    """§10: a reader that knows versions 1 and 2 only (the Python parser with its version list cut
    back to what dc_keras read before version 3) refuses a version 3 tensor with "upgrade", and
    still reads the version 2 tensor of the same model. The C decoder's path for an unknown
    version is the same check (DC_ERR_VERSION, tests/test_codec.c "version 4")."""
    from dc_keras.codec import _format

    v3, v2 = codec.encode(np.arange(9, dtype=np.int64), version=3), codec.encode(np.arange(9, dtype=np.int8))
    v4 = codec.encode(np.arange(9, dtype=np.int64))  # §17
    assert v4[4] == 4
    monkeypatch.setattr(_format, "VERSIONS", (1, 2, 3))
    with pytest.raises(codec.CorruptDataError, match=r"unsupported format version 4 .*\(1, 2, 3\).*upgrade"):
        codec.info(v4)
    assert codec.info(v3)["version"] == 3
    monkeypatch.setattr(_format, "VERSIONS", (1, 2))
    with pytest.raises(codec.CorruptDataError, match=r"unsupported format version 3 .*\(1, 2\).*upgrade"):
        codec.info(v3)
    assert codec.info(v2)["version"] == 2


@pytest.mark.parametrize("dtype", [">i8", ">f8", ">u8", ">u4", ">u2", "?"])
def test_version3_big_endian_and_strided_inputs(dtype):
    """Byte order and strides of the input do not matter: the decoded tensor has the same values
    (native order), and the input array is left as it was."""
    a = (np.arange(60) % 5 == 0 if dtype == "?" else np.arange(60) % 5).astype(dtype).reshape(6, 10)[:, ::2].T
    before = a.copy()
    back = codec.decode(codec.encode(a))
    assert back.dtype == a.dtype.newbyteorder("=") and np.array_equal(back, a)
    assert np.array_equal(a, before) and a.dtype == before.dtype


# ----------------------------------------------------------------------------------------------
# The decoder's build options (dc_codec.h, docs/microcontrollers.md): what pack writes for them
# ----------------------------------------------------------------------------------------------
def test_version_1_packs_only_what_a_minimal_decoder_reads(minimal_decoder):
    """docs/microcontrollers.md: pack(version=1) (codec.encode(version=1), per tensor) writes only
    layouts 0/1 of the six original types, which a DC_CODEC_MINIMAL decoder decodes; the default
    picks grouped, float-planes, sub-byte, 8-byte and (context_model=True) context layouts, which
    that decoder refuses with DC_ERR_UNSUPPORTED (15) naming the option, never a wrong result."""
    lib = minimal_decoder
    rng = np.random.default_rng(5)
    kept = rng.random((48, 40)) < 0.15
    cases = [  # (name, array, encode options, default layout)
        ("per-channel int8", (rng.integers(-3, 4, (16, 64)) * rng.integers(1, 40, (16, 1))).astype(np.int8),
         {}, "grouped_dense"),
        ("unclustered float32", rng.normal(size=(64, 32)).astype(np.float32), {}, "float_planes"),
        ("int4", rng.integers(-8, 8, 300).astype(ml_dtypes.int4), {}, "dense"),
        ("int64 bias", rng.integers(-2**40, 2**40, 64).astype(np.int64), {}, "int_planes"),
        ("int64 clustered", rng.integers(-2**40, 2**40, 4)[rng.integers(0, 4, 64)].astype(np.int64), {}, "dense"),
        ("pruned same-sign runs", np.where(kept, np.repeat(rng.choice([-0.5, 0.25, 0.75], (48, 4)), 10, 1), 0)
         .astype(np.float32), {"context_model": True, "layout": "context_sparse"}, "context_sparse"),
        ("pruned float32", np.where(kept, rng.choice([-0.5, 0.25], kept.shape), 0).astype(np.float32), {}, "sparse"),
    ]
    info = ctypes.create_string_buffer(256)  # >= sizeof(dc_tensor_info)
    for name, a, opts, layout in cases:
        packed = codec.encode(a, **opts)
        assert codec.info(packed)["layout"] == layout, name
        st = lib.dc_peek(packed, len(packed), info)
        refused = layout != "sparse"
        assert st == (15 if refused else 0), (name, st)
        if refused:
            assert b"DC_CODEC_MINIMAL" in lib.dc_strerror(st), name
        try:
            v1 = codec.encode(a, version=1)
        except ValueError as e:  # pack keeps such a tensor raw, with this reason
            assert a.dtype in (np.dtype(ml_dtypes.int4), np.dtype(np.int64)) and "version 1" in str(e), name
            continue
        assert codec.info(v1)["layout"] in ("dense", "sparse"), name
        out = np.empty_like(a)
        assert lib.dc_decode(v1, len(v1), out.ctypes.data, out.nbytes) == 0, name
        assert out.tobytes() == a.tobytes(), name


def test_layouts_restricts_the_choice_to_what_a_trimmed_decoder_reads(minimal_decoder):
    """encode(layouts=...) picks the smallest of the named layouts: with ("dense", "sparse") a
    tensor the default packs grouped or as float planes decodes bit-exact with a DC_CODEC_MINIMAL
    decoder; naming every layout is the default; a tensor none of them holds is refused."""
    rng = np.random.default_rng(7)
    cases = [  # (array, default layout)
        ((rng.integers(-3, 4, (16, 64)) * rng.integers(1, 40, (16, 1))).astype(np.int8), "grouped_dense"),
        (np.where(rng.random((64, 96)) < 0.2, rng.integers(-3, 4, (64, 96)) * rng.integers(1, 200, (64, 1)), 0)
         .astype(np.int16), "grouped_sparse"),
        (rng.normal(size=(64, 32)).astype(np.float32), "float_planes"),
    ]
    for a, default in cases:
        assert codec.info(codec.encode(a))["layout"] == default
        assert codec.encode(a, layouts=list(codec._format.LAYOUT_CODES), context_model=True) == \
            codec.encode(a, context_model=True)
        packed = codec.encode(a, layouts=("dense", "sparse"))
        assert packed == min((codec.encode(a, layout=lay) for lay in ("dense", "sparse")), key=len)
        out = np.empty_like(a)
        assert minimal_decoder.dc_decode(packed, len(packed), out.ctypes.data, out.nbytes) == 0
        assert out.tobytes() == a.tobytes() and codec.decode(packed).tobytes() == a.tobytes()
        assert codec.info(codec.encode(a, layouts={"dense", default}))["layout"] == default
    noise = rng.normal(size=(80, 80)).astype(np.float32)  # 6400 distinct values
    with pytest.raises(ValueError, match="more than 4096 distinct values"):
        codec.encode(noise, layouts=("dense", "sparse"))
    assert codec.info(codec.encode(noise, layouts=("sparse", "float_planes")))["layout"] == "float_planes"
    with pytest.raises(ValueError, match=r"none of layouts \['float_planes'\] holds a format version 2 int8"):
        codec.encode(cases[0][0], layouts=["float_planes"])


@pytest.mark.parametrize("kw, message", [
    ({"layouts": ("dense",), "layout": "sparse"}, "not both"),
    ({"layouts": ("dense", "grouped")}, r"unknown layout name\(s\) 'grouped' in layouts: valid names are \["),
    ({"layouts": "dense"}, "not the string 'dense'"),
    ({"layouts": ()}, "leaves no layout to pick: name at least one"),
    ({"layouts": ("context_sparse",)}, "tried only with context_model=True"),
    ({"layouts": 3}, "iterable of layout names"),
])
def test_layouts_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        codec.encode(np.arange(50, dtype=np.int8), **kw)


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.uint16, np.uint32, np.bool_])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_minimal_decoder_reads_the_1_2_4_byte_types_of_versions_2_and_3(dtype, layout, minimal_decoder):
    """DC_CODEC_MINIMAL leaves out only the sub-byte and 8-byte types (dc_codec.h), so
    pack(decoder="minimal") packs these (format version 2 or 3) and that build decodes them."""
    a = (np.arange(300) % 3).astype(dtype)
    a[::7] = 0
    packed = codec.encode(a, layout=layout)
    out = np.zeros_like(a)
    assert minimal_decoder.dc_decode(packed, len(packed), out.ctypes.data, out.nbytes) == 0
    assert out.tobytes() == a.tobytes()


@pytest.mark.parametrize("seed", range(3))
def test_small_alphabet_codes_match_the_numpy_path(seed, monkeypatch):
    """code_lengths / canonical_codes / _Code build small alphabets' codes on Python ints
    (_SMALL_ALPHABET): the same lengths, codes, bit counts and errors as the numpy path, for
    alphabets on both sides of the threshold, skewed and tied counts, every length limit."""
    from dc_keras.codec import _encode

    rng = np.random.default_rng(seed)
    cases = []
    for k in range(400):
        n = int(rng.integers(1, 130))
        kind = k % 4
        counts = (rng.integers(0, 100, n) if kind == 0 else rng.integers(0, 3, n) if kind == 1
                  else 2 ** rng.integers(0, 30, n) * rng.integers(0, 2, n) if kind == 2
                  else np.where(rng.random(n) < 0.3, rng.geometric(0.05, n), 0))
        cases.append((counts.astype(np.int64), int(rng.integers(1, 13))))

    def run(threshold):
        monkeypatch.setattr(_encode, "_SMALL_ALPHABET", threshold)
        out = []
        for counts, limit in cases:
            try:
                lengths, max_len = _encode.code_lengths(counts, limit)
                code = _encode._Code(counts, limit)
            except ValueError as exc:
                out.append(str(exc))
                continue
            codes = _encode.canonical_codes(lengths)
            assert lengths.dtype == np.uint8 and codes.dtype == np.uint64 and type(max_len) is int
            assert np.array_equal(code.lengths, lengths) and np.array_equal(code.codes, codes)
            out.append((lengths.tolist(), max_len, codes.tolist(), code.bits, code.max_len, code.single))
        return out

    small, numpy_path = run(10**6), run(-1)
    assert small == numpy_path
    assert sum(isinstance(r, str) for r in small) > 10 and sum(isinstance(r, tuple) for r in small) > 200


@pytest.mark.parametrize("paths", ["numpy", "python"])
def test_small_tensor_paths_write_the_identity_corpus_bytes(paths, monkeypatch):
    """The codes, the sparse layout's candidate histograms and the bit packing of small tensors
    run on Python ints (_SMALL_ALPHABET, _SMALL_PACK: numpy's per-call overhead made a small
    tensor's encode ~1.5 ms). Forced onto the numpy paths everywhere, or onto the Python paths
    for alphabets and streams ~10x bigger than the defaults, test_codec_identity's ~1,400 cases
    still write the digests of ec2a7a6's encoder (or raise its errors)."""
    import json

    import test_codec_identity as ident
    from dc_keras.codec import _encode

    monkeypatch.setattr(_encode, "_SMALL_ALPHABET", -1 if paths == "numpy" else 512)
    monkeypatch.setattr(_encode, "_SMALL_PACK", -1 if paths == "numpy" else 2048)
    calls = {"small": 0}
    small = _encode._code_lengths_small

    def spy(counts, limit):
        calls["small"] += 1
        return small(counts, limit)

    monkeypatch.setattr(_encode, "_code_lengths_small", spy)
    with open(ident.DIGESTS) as f:
        expected = json.load(f)
    newer = []  # the 27 tensors §17's int_planes and the 14 §18's sparse_planes now code smaller: their
    got = ident.digests(ident.old_choice(newer))  # older choice is compared
    assert len(newer) == 41, newer
    diff = [f"{k}: {got[k]} (was {expected[k]})" for k in expected if got.get(k) != expected[k]]
    assert not diff, f"{len(diff)} of {len(expected)} differ:\n" + "\n".join(diff[:10])
    assert (calls["small"] > 1000) == (paths == "python"), calls


def _stride_tail(n, dtype, tail_value, values=(3, 5, 7)):
    """Every other element kept (the gap 1 before every entry: a zero-bit gap code), positive
    values, then in the last eighth (inside §14's last stream) one negative value only: after a
    negative entry the next is always that value, a zero-bit index code of §14 whose entries can
    follow each other forever (§9's unbounded case)."""
    a = np.zeros(n, dtype)
    kept = np.arange(1, n, 2)
    a[kept] = np.asarray(values, dtype)[np.arange(len(kept)) % len(values)]
    a[kept[len(kept) - len(kept) // 8:]] = tail_value
    return a


def test_context_sparse_zero_bit_entries_in_a_cycle_decode_up_to_16_mib():
    """§9 for §14: a zero-bit gap code and a zero-bit index code whose symbol leads back to its own
    context code any number of entries in no bits. Up to 16 MiB such tensors decode (Python parser
    and C decoder), and the parser says the run of zero-bit entries has no limit."""
    a = _stride_tail(4000, np.float32, -0.5)
    packed = codec.encode(a, layout="context_sparse")
    info = codec.info(packed)
    assert info["layout"] == "context_sparse" and info["gap_code"]["max_length"] == 0
    assert info["free_run"] is None
    np.testing.assert_array_equal(codec.decode(packed), a)


def test_context_sparse_unbounded_zero_bit_entries_over_16_mib_are_refused(monkeypatch):
    """Fuzzing found that dc_peek and codec.info accepted a 241-byte §14 tensor declaring 629 MB
    (§9's bound counted a zero-bit index code as if entries cost bits): a runtime would have
    allocated that. Now a §14 tensor whose zero-bit entries can repeat forever is held to §9's
    16 MiB, by both decoders; the encoder does not write one over it (another layout codes it)."""
    a = _stride_tail((1 << 21) + 2, np.int64, -5)  # 16 MiB + 16 B of int64
    with pytest.raises(ValueError):
        codec.encode(a, layout="context_sparse")
    packed = codec.encode(a, context_model=True)
    assert codec.info(packed)["layout"] != "context_sparse"
    np.testing.assert_array_equal(codec.decode(packed), a)
    from dc_keras.codec import _layouts

    monkeypatch.setattr(_layouts, "context_free_run", lambda *_: 0)  # an encoder without the check
    bad = codec.encode(a, layout="context_sparse")
    with pytest.raises(codec.CorruptDataError, match="zero-bit codes > 16777216"):
        codec.info(bad)  # the Python parser
    with pytest.raises(codec.CorruptDataError, match="sizes disagree"):
        codec.decode(bad)  # dc_decode: DC_ERR_SIZE_MISMATCH
    monkeypatch.undo()
    small = _stride_tail(1 << 20, np.int64, -5)  # 8 MiB: within §9's 16 MiB, written and read
    np.testing.assert_array_equal(codec.decode(codec.encode(small, layout="context_sparse")), small)


def test_context_sparse_contexts_no_entry_has_make_no_false_cycle_over_16_mib():
    """A context no entry has got a zero-bit code of symbol 0; with 0 below the background (class
    1), after-a-negative-entry's context then led to itself: a cycle the data never takes, which
    made the encoder drop §14 over 16 MiB (helper-114's review). Such a context's symbol is now
    the background's: the zero-bit run is bounded and the tensor is written and read as §14."""
    n = (1 << 21) + 2  # 16 MiB + 16 B of int64
    a = np.full(n, 5, np.int64)  # background 5
    a[1::2] = np.where(np.arange(n // 2) % 3 == 0, 6, 7)  # kept at one stride (a zero-bit gap code)
    a[-1] = 0  # the one value below the background, last: no entry follows it
    packed = codec.encode(a, layout="context_sparse")
    info = codec.info(packed)
    assert info["layout"] == "context_sparse" and info["gap_code"]["max_length"] == 0
    assert info["free_run"] is not None, info["free_run"]
    assert [c["single_symbol"] for c in info["index_codes"]][2] == 1  # symbol 1: 5, the background
    np.testing.assert_array_equal(codec.decode(packed), a)  # the C decoder
    small = a[:4000].copy()
    small[-1] = 0  # under 16 MiB the unused context keeps symbol 0 (the bytes of earlier encoders)
    assert codec.info(codec.encode(small, layout="context_sparse"))["index_codes"][2]["single_symbol"] == 0


# fuzz_decode's finding (tflite_kernels/fuzz/regressions/decode/context-sparse-629MB): §14, version
# 2, N = 157,286,550 float32 (629 MB) and E = 50,331,798 entries from 241 bytes, its zero-bit gap
# code making every entry cost only its index code, 2 bits at least (the zero-bit codes are of
# contexts no entry can reach): 17 stream bytes hold at most 136 entries.
_FUZZ_CONTEXT_629MB = (
    "RENIRgIABAUFAAAABQAAAAEAEAAGAAAAhE4BuREAAAAAAPw6BjzzjxQ8ei4ePI8QKjyAzw89mGlnPXoScz08YO49mnsBPtYnGD5D"
    "Djw+rok9Ptz5sj5Bm0e9VCR9va5WBL4AAJYAAAP/AAAAACYAAABMAAAAcQAAAAQAAAAAAAAAEQEAAAAFUlNUVVVUVUQEAAAABEJE"
    "QEBAQERDABEAAAARAAAAEgAAABAAAACbpEglsoc3j3SMRZmAU/GrAY4XcPmxRnSb/BBGCCSp/xoA3gd2uTgvU3u6AR61+j2jAYIF"
    "j5/bkD8/cELHAOoBBolvAQ==")


def test_context_sparse_entries_beyond_the_stream_bits_are_refused_before_decoding():
    import base64

    data = base64.b64decode(_FUZZ_CONTEXT_629MB)
    assert len(data) == 241 and data[7] == 5  # layout 5: §14
    for read in (codec.info, codec.decode):
        with pytest.raises(codec.CorruptDataError, match="more than fit|sizes disagree|size"):
            read(data)


def test_int_planes_with_a_small_max_code_length_falls_back_to_another_layout():
    """encode(max_code_length=1..4) on integer tensors raised 'N symbols cannot be coded with code
    lengths <= k' from layout 6's class code (helper-113's review), where the encoder before it
    kept a dense plan; now a §17 plan needing longer codes is not made."""
    a = np.array([0, 1, 1, 0, 1, 0, 0, 1] * 8, np.int32)
    packed = codec.encode(a, max_code_length=1)
    assert codec.info(packed)["layout"] == "dense" and packed == codec.encode(a, max_code_length=1, version=2)
    np.testing.assert_array_equal(codec.decode(packed), a)
    b = np.array([-2, 16, 16777218, 268435457] * 16, np.int32)
    for limit in (2, 3, 4):
        np.testing.assert_array_equal(codec.decode(codec.encode(b, max_code_length=limit)), b)
    with pytest.raises(ValueError, match=r"^layout 'int_planes' needs max_code_length >= 2 \(4 value classes\)$"):
        codec.encode(b, max_code_length=1, layouts=("int_planes",))  # layout 6 alone: no plan fits 1-bit codes


def test_a_too_small_max_code_length_names_the_length_int_planes_needs():
    """The error named only the codebook's need (59 distinct values: >= 6) when int_planes holds the
    tensor from max_code_length 2 (helper-114's review): it names both."""
    a = np.tile(np.arange(-29, 30), 10).astype(np.int32)
    with pytest.raises(ValueError) as err:
        codec.encode(a, max_code_length=1)
    assert str(err.value) == ("59 distinct values need max_code_length >= 6; layout 'int_planes' needs "
                              "max_code_length >= 2 (3 value classes)")
    packed = codec.encode(a, max_code_length=2)
    assert codec.info(packed)["layout"] == "int_planes"
    np.testing.assert_array_equal(codec.decode(packed), a)
