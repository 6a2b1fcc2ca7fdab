"""Regenerates codec_vectors.h (format version 2 to 5 test vectors for test_codec.c) with the
numpy encoder (version 3 only for the dtypes it added, §16, version 4 only for layout 6, §17,
version 5 only for layout 7, §18: encode's default). codec_vectors_v1.h holds the version 1
vectors and is frozen (never regenerated).

Run from the repository root: .venv/bin/python tflite_kernels/tests/gen_codec_vectors.py
"""
import os
import struct

import ml_dtypes
import numpy as np

from dc_keras import codec


def vectors():
    rng = np.random.default_rng(1234)
    out = []
    a = rng.integers(-4, 5, size=(3, 5, 2)).astype(np.float32)
    out.append(("dense_float32_rank3", a, "dense"))
    w = np.zeros(3000, np.float32)
    w[[3, 4, 700, 2999]] = [0.5, -0.25, 0.5, 1.0]  # gaps far beyond the gap bound
    out.append(("sparse_float32_huge_gaps", w, "sparse"))
    q = np.full((40, 25), -3, np.int8)  # background = zero point -3
    m = rng.random(q.shape) < 0.1
    q[m] = rng.integers(-128, 128, size=m.sum())
    out.append(("sparse_int8_zero_point", q, "sparse"))
    out.append(("dense_uint8_256_values", rng.permutation(np.arange(256, dtype=np.uint8).repeat(3)), "dense"))
    out.append(("float16_one_value", np.full((7, 3), 1.5, np.float16), None))
    out.append(("int16_empty", np.zeros((0, 4), np.int16), None))
    out.append(("int32_scalar", np.array(-123456789, np.int32), None))
    out.append(("sparse_all_background", np.zeros(100, np.float32), "sparse"))
    p = 0.5 ** np.arange(1, 17)
    sk = rng.choice(16, size=6000, p=p / p.sum()).astype(np.uint8)
    out.append(("dense_skewed_long_codes", sk, "dense"))
    vals = np.arange(-1500, 1500, dtype=np.int16)
    out.append(("dense_int16_3000_values", rng.choice(vals, size=4000), "dense"))
    sp = np.zeros(5000, np.float32)
    idx = rng.choice(5000, size=900, replace=False)
    sp[idx] = rng.choice(np.linspace(-1, 1, 32).astype(np.float32), size=900)
    out.append(("sparse_float32_5000", sp, "sparse"))
    out.append(("sparse_int32_rank5", np.where(rng.random((2, 3, 4, 5, 6)) < 0.2, 7, 0).astype(np.int32), "sparse"))
    # version 2 layouts (§11-§13)
    cent = np.linspace(-1, 1, 16)
    scale = rng.uniform(0.5, 2, 12)
    pc = (cent[rng.integers(0, 16, (12, 3, 3, 5))] * scale[:, None, None, None]).astype(np.float32)
    out.append(("grouped_dense_f32_axis0", pc, "grouped_dense"))
    pcs = pc.copy()
    pcs[rng.random(pc.shape) < 0.8] = 0
    out.append(("grouped_sparse_f32_axis0", pcs, "grouped_sparse"))
    out.append(("grouped_dense_i8_axis3", np.moveaxis(np.round(pc * 30), 0, 3).astype(np.int8).copy(), ("grouped_dense", 3)))
    out.append(("grouped_sparse_i16_axis1", np.round(pcs * 300).astype(np.int16), ("grouped_sparse", 1)))
    out.append(("grouped_dense_constant_per_group", np.repeat(scale.astype(np.float32)[:, None], 40, 1), "grouped_dense"))
    out.append(("float_planes_f32", rng.normal(0, 0.05, (33, 7)).astype(np.float32), "float_planes"))
    out.append(("float_planes_f16", rng.normal(0, 2, 301).astype(np.float16), "float_planes"))
    out.append(("float_planes_bf16", rng.normal(0, 1, (5, 13)).astype(ml_dtypes.bfloat16), "float_planes"))
    out.append(("float_planes_one_exponent", (1 + rng.random(50) / 2).astype(np.float32), "float_planes"))
    out.append(("int4_dense_odd", rng.integers(-8, 8, 301).astype(ml_dtypes.int4), "dense"))
    out.append(("int4_sparse", np.where(rng.random(999) < 0.1, rng.integers(-8, 8, 999), 0).astype(ml_dtypes.int4), "sparse"))
    out.append(("uint4_dense", rng.integers(0, 16, (6, 7)).astype(ml_dtypes.uint4), "dense"))
    out.append(("int2_dense", rng.integers(-2, 2, 203).astype(ml_dtypes.int2), "dense"))
    out.append(("int2_sparse", np.where(rng.random(1001) < 0.1, -1, 0).astype(ml_dtypes.int2), "sparse"))
    out.append(("int4_constant", np.full(77, -3, ml_dtypes.int4), None))
    # §14 context-modelled sparse: runs of same-sign values (the fast loop, fillers, odd K)
    cs = np.zeros((60, 97), np.float32)
    runs = rng.random(cs.shape) < 0.15
    sign = np.where(np.cumsum(rng.random(cs.shape) < 0.2, axis=1) % 2, -1.0, 1.0)
    cs[runs] = (sign * rng.choice(np.linspace(0.1, 1, 9), size=cs.shape))[runs].astype(np.float32)
    cs[:, 40:] = 0  # long gaps: fillers
    out.append(("context_sparse_f32", cs, "context_sparse"))
    ci = np.where(rng.random(777) < 0.3, rng.integers(-20, 20, 777), -5).astype(np.int8)
    out.append(("context_sparse_i8_zero_point", ci, "context_sparse"))
    out.append(("context_sparse_f16_small", np.array([0, 1, 1, -1, 0, 0, 2, 0], np.float16), "context_sparse"))
    # 2-D float32 / int8 sparse with a zero background: the compressed FC form is built from
    # these straight from the entries (dc_decode_rows): fast loop, rows skipped by one gap,
    # -0.0 stored as an entry but not kept, one column, §11 grouped by row and by column
    fw = np.zeros((37, 300), np.float32)
    keep = rng.random(fw.shape) < 0.1
    fw[keep] = rng.choice(np.linspace(-1, 1, 32).astype(np.float32), size=keep.sum())
    fw[5:9] = 0
    fw[20, ::7] = -0.0
    out.append(("sparse_fc_f32_rows", fw, "sparse"))
    qi = np.where(rng.random((50, 33)) < 0.15, rng.integers(-128, 128, (50, 33)), 0).astype(np.int8)
    out.append(("sparse_fc_i8_rows", qi, "sparse"))
    out.append(("sparse_fc_i8_one_col", np.ascontiguousarray(qi[:, :1]), "sparse"))
    out.append(("grouped_sparse_fc_f32_by_row", pcs.reshape(12, 45), "grouped_sparse"))
    out.append(("grouped_sparse_fc_i8_by_col", np.round(pcs.reshape(36, 15) * 60).astype(np.int8),
                ("grouped_sparse", 1)))
    # version 3 dtypes (§16): 8-byte elements (fast loops and tails), edge values, bool, uint16/32
    i64 = np.iinfo(np.int64)
    e = np.where(rng.random(301) < 0.15, rng.choice([i64.min, i64.max, -1, 1 << 40], 301), 0).astype(np.int64)
    out.append(("v3_int64_sparse_edges", e, "sparse"))
    out.append(("v3_int64_dense", (rng.integers(-7, 8, (9, 31)) * 10**15 + 3).astype(np.int64), "dense"))
    out.append(("v3_int64_constant", np.full(37, -0x0102030405060708, np.int64), None))
    out.append(("v3_uint64_dense_max", rng.choice(np.array([0, 1, 2**63, 2**64 - 1], np.uint64), 203), "dense"))
    nan = np.array([0x7FF0000000000001, 0xFFF8000000000123, 0x8000000000000000, 0x7FF0000000000000],
                   np.uint64).view(np.float64)
    out.append(("v3_float64_special", rng.choice(np.concatenate([nan, [0.0, 1.5, -2.25]]), 157), "dense"))
    out.append(("v3_float64_context_sparse", np.where(rng.random(400) < 0.2, rng.choice([-1.5, 0.5, 2.0], 400),
                                                       0.0), "context_sparse"))
    out.append(("v3_bool_dense", rng.random((13, 11)) < 0.5, "dense"))
    out.append(("v3_bool_sparse", rng.random(999) < 0.05, "sparse"))
    out.append(("v3_uint32_grouped_dense", (rng.integers(0, 5, (6, 40)) * 1000003
                                            + np.arange(6)[:, None] * 7).astype(np.uint32), "grouped_dense"))
    out.append(("v3_uint16_sparse", np.where(rng.random(500) < 0.1, rng.integers(0, 65536, 500), 7).astype(np.uint16),
                "sparse"))
    # version 4 (§17 integer planes): every dtype, both predictors, the fast and the tail refills,
    # 64-bit classes above 33 (two extra-bit reads), extremes, 1 element, a zero-bit class code
    u64 = np.iinfo(np.uint64)
    out.append(("v4_int16_normal", rng.normal(0, 300, 1001).astype(np.int16), "int_planes"))
    out.append(("v4_uint16_offset", (40000 + rng.normal(0, 50, (7, 9))).astype(np.uint16), "int_planes"))
    out.append(("v4_int32_bias", rng.normal(0, 20000, 2050).astype(np.int32), "int_planes"))
    out.append(("v4_uint32_sorted", np.sort(rng.integers(0, 2**32, 333, dtype=np.uint64)).astype(np.uint32), "int_planes"))
    out.append(("v4_int64_arange", np.arange(-50, 950, dtype=np.int64), "int_planes"))
    out.append(("v4_int64_wide", rng.integers(i64.min, i64.max, 257, dtype=np.int64), "int_planes"))
    out.append(("v4_int64_extremes", np.array([i64.min, i64.max, 0, -1, i64.min, 1, i64.max], np.int64), "int_planes"))
    out.append(("v4_uint64_extremes", np.array([u64.max, 0, 2**63, u64.max - 1, 7], np.uint64), "int_planes"))
    out.append(("v4_int32_one", np.array([-123456], np.int32), "int_planes"))
    out.append(("v4_int32_zero_bit", np.full((3, 4), 99, np.int32), "int_planes"))
    # version 5 (§18 sparse float planes): float32, float16, bfloat16; tfmot's -0.0 (symbol 257),
    # fillers, an implicit tail, G = 1, no stored entry (R = 0), NaN payloads and infinities, a
    # background other than 0.0, enough entries for the 4-stream fast loop and a few for the tail
    for name, dt, minus in (("f32_tfmot", np.float32, 0.5), ("f16_pruned", np.float16, 0.03),
                            ("bf16_pruned", ml_dtypes.bfloat16, 0.03)):
        w = rng.normal(0, 0.05, (40, 30)).astype(dt)
        pruned = rng.random(w.shape) >= 0.2
        w[pruned] = 0
        w[pruned & (rng.random(w.shape) < minus)] = -0.0  # tfmot's strip_pruning: half of them
        w[10:12] = w[:, -3:] = 0  # runs past G (fillers) and an implicit tail, where G > 1
        out.append((f"v5_{name}", w, "sparse_planes"))
    gaps = np.zeros(3000, np.float32)
    gaps[[3, 4, 700, 2500]] = [0.5, -0.25, np.float32(1e-30), -3.0]
    out.append(("v5_f32_huge_gaps", gaps, "sparse_planes"))
    dense = np.where(rng.random(200) < 0.9, rng.normal(0, 1, 200), 0.0).astype(np.float32)
    out.append(("v5_f32_g1", dense, "sparse_planes"))
    out.append(("v5_f16_signed_zeros_only", np.where(rng.random(333) < 0.4, -0.0, 0.0).astype(np.float16),
                "sparse_planes"))
    special = np.full(257, 2.0, np.float32)  # background 2.0; -2.0 is its sign flip
    special[::5] = -2.0
    special.view(np.uint32)[[1, 17, 101]] = [0x7FC00001, 0xFF812345, 0x00000001]  # NaNs, a subnormal
    special[[50, 60]] = [np.inf, -np.inf]
    out.append(("v5_f32_special", special, "sparse_planes"))
    out.append(("v5_bf16_one", np.array([-1.5], ml_dtypes.bfloat16), "sparse_planes"))
    return out


def sparse_planes_fields(packed):
    """§18's (B, E, R, G) of a layout 7 tensor."""
    esz = 4 if packed[5] == 0 else 2
    pos = 12 + 4 * packed[6]
    return (packed[pos:pos + esz], *struct.unpack_from("<IIH", packed, pos + esz))


def check_v5(name, arr, packed):
    """The §18 features each v5_ vector is there for (so that an encoder change cannot drop one)."""
    bits = np.ascontiguousarray(arr).view(np.uint32 if arr.dtype.itemsize == 4 else np.uint16).ravel()
    b, e, r, g = sparse_planes_fields(packed)
    bg = int.from_bytes(b, "little")
    flipped = bg ^ (1 << (8 * arr.dtype.itemsize - 1))
    assert r == int(np.count_nonzero((bits != bg) & (bits != flipped))), name
    runs = np.diff(np.flatnonzero(np.concatenate([[1], bits != bg, [1]]))) - 1  # B runs, tail last
    if name.endswith(("_tfmot", "_pruned")):
        assert np.any(bits == flipped) and e >= 8 * 4, name
    if name.endswith("_pruned"):
        assert runs.max() >= g > 1 and runs[-1] % g > 0, name
    if name == "v5_f32_huge_gaps":
        assert runs.max() >= 2 * g and runs[-1] % g > 0, name
    if name == "v5_f32_g1":
        assert g == 1 and e == bits.size, name
    if name == "v5_f16_signed_zeros_only":
        assert r == 0 and e > 0, name


def c_bytes(b):
    s = ", ".join(f"0x{x:02x}" for x in b)
    return "{" + (s if s else "0") + "}"


def main():
    lines = ["/* Generated by gen_codec_vectors.py from the numpy encoder (format versions 2 to 5); do not edit. */",
             "#include <stddef.h>", "#include <stdint.h>", ""]
    entries = []
    for name, arr, layout in vectors():
        axis = None
        if isinstance(layout, tuple):
            layout, axis = layout
        packed = codec.encode(arr, layout=layout, axis=axis)
        info = codec.info(packed)
        assert codec.decode(packed).tobytes() == arr.tobytes()
        assert info["version"] == (5 if name.startswith("v5_") else 4 if name.startswith("v4_")
                                   else 3 if name.startswith("v3_") else 2)
        if name.startswith("v5_"):
            check_v5(name, arr, packed)
        if info["dtype_name"] in ("int4", "uint4", "int2"):
            raw = codec.pack_subbyte(arr, info["dtype_code"])
        else:
            raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        lines.append(f"static const uint8_t {name}_packed[] = {c_bytes(packed)};")
        lines.append(f"static const uint8_t {name}_raw[] = {c_bytes(raw)};")
        dims = ", ".join(str(d) for d in arr.shape) or "0"
        entries.append(f'  {{"{name}", {name}_packed, {len(packed)}, {name}_raw, {len(raw)}, '
                       f'{info["dtype_code"]}, {arr.ndim}, {{{dims}}}, '
                       f'{codec._format.LAYOUT_CODES[info["layout"]]}}},')
    lines += ["", "typedef struct {", "  const char* name;", "  const uint8_t* packed;",
              "  size_t packed_size;", "  const uint8_t* raw;", "  size_t raw_size;",
              "  uint32_t dtype, rank;", "  uint64_t dims[8];", "  uint32_t layout;", "} codec_vector;", "",
              "static const codec_vector codec_vectors[] = {"] + entries + ["};", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "codec_vectors.h")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
