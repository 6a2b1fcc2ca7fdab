"""Writes the libFuzzer seed corpora of tflite_kernels/fuzz/ from real packed tensors.

Every seed is made by the numpy encoder (``dc_keras.codec.encode``) at build time, so the
corpus follows the format as it evolves and no binary blobs are committed:

  OUT/decode/  one packed tensor per file (fuzz_decode.c input)
  OUT/op/      a control byte + a packed tensor (fuzz_op.c input; the control byte picks the
               route: op / legacy ResizeTensor / delegate / failing allocation, and mismatches)
  OUT/tflm/    the same packed tensors behind fuzz_tflm.c's control bytes (TFLM_CONTROLS: every
               decode mode / options case, mismatch and arena case at least once)
  OUT/unpack/  packed .tflite files (fuzz_unpack.c input): tiny FULLY_CONNECTED models built
               with the TFLite schema module and packed by dc_keras.export.pack (with and
               without compact; one with a zip of associated files appended, classic and zip64),
               plus the committed tests/data/zoo_lstm128.packed.tflite
               (several subgraphs; written by the older packer: named packed tensors)

The tensors are Deep Compression shaped: clustered (k-means-like: few distinct values) and
pruned weights of a small LeNet-style network in every supported dtype, every layout (format
versions 1 to 5), short and long codes, plus the edge cases (scalar, empty, constant,
all-background), per-channel tensors (§11), unclustered floats (§12), int4/int2 (§13), the version 3 dtypes (§16),
unclustered wide integers (§17, version 4) and pruned unclustered floats (§18, version 5). They are kept small
(< 4 KB each) so that the fuzzer mutates them quickly.

Usage (from the repository root): python tflite_kernels/fuzz/gen_seeds.py OUT_DIR
"""
import hashlib
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..")))

from dc_keras import codec  # noqa: E402


def _clustered(rng, shape, k, sparsity, dtype=np.float32):
    centroids = np.sort(rng.normal(0, 0.1, size=k)).astype(np.float32)
    w = centroids[rng.integers(0, k, size=shape)]
    w[rng.random(shape) < sparsity] = 0.0
    return w.astype(dtype)


def tensors():
    rng = np.random.default_rng(20261123)
    out = [
        ("conv1_f32_sparse", _clustered(rng, (5, 5, 1, 6), 16, 0.3)),
        ("conv2_f32_dense", _clustered(rng, (3, 3, 6, 4), 16, 0.0)),
        ("fc_f32_sparse_k4", _clustered(rng, (40, 30), 4, 0.9)),
        ("fc_f16_sparse", _clustered(rng, (30, 20), 32, 0.8, np.float16)),
        ("bias_f32_dense", _clustered(rng, (64,), 8, 0.0)),
        ("int8_zero_point_sparse", np.where(rng.random((24, 16)) < 0.85, -3,
                                           rng.integers(-128, 128, (24, 16))).astype(np.int8)),
        ("uint8_dense_256", rng.permutation(np.arange(256, dtype=np.uint8))),
        ("int16_dense", rng.integers(-300, 300, size=500).astype(np.int16)),
        ("int32_bias", rng.integers(-5000, 5000, size=32).astype(np.int32)),
        ("scalar_int32", np.array(-123456789, np.int32)),
        ("empty_int16", np.zeros((0, 4), np.int16)),
        ("constant_f16", np.full((7, 3), 1.5, np.float16)),
        ("all_background_f32", np.zeros((10, 10), np.float32)),
        ("rank8_int8", rng.integers(-2, 3, size=(2,) * 8).astype(np.int8)),
    ]
    p = 0.5 ** np.arange(1, 14)
    out.append(("skewed_long_codes_u8", rng.choice(13, size=1500, p=p / p.sum()).astype(np.uint8)))
    big_gaps = np.zeros(3000, np.float32)
    big_gaps[[3, 4, 900, 2999]] = [0.5, -0.25, 0.5, 1.0]
    out.append(("sparse_big_gaps", big_gaps))
    # version 2 layouts: per-channel tables (§11), float planes (§12), sub-byte types (§13)
    import ml_dtypes
    scale = rng.uniform(0.5, 2, 8).astype(np.float32)
    pc = _clustered(rng, (8, 3, 3, 4), 16, 0.0) * scale[:, None, None, None]
    out.append(("per_channel_f32", pc))
    pcs = pc * (rng.random(pc.shape) > 0.7)
    out.append(("per_channel_sparse_f32", pcs.astype(np.float32)))
    out.append(("per_channel_int8_depthwise", np.clip(np.round(np.moveaxis(pc, 0, 3) * 400), -127, 127).astype(np.int8)))
    out.append(("unclustered_f32", rng.normal(0, 0.05, (20, 30)).astype(np.float32)))
    out.append(("unclustered_f16", rng.normal(0, 0.5, 400).astype(np.float16)))
    out.append(("unclustered_bf16", rng.normal(0, 0.5, (9, 40)).astype(ml_dtypes.bfloat16)))
    out.append(("int4_weights", rng.integers(-8, 8, (13, 11)).astype(ml_dtypes.int4)))
    out.append(("int4_pruned", np.where(rng.random(777) < 0.15, rng.integers(-8, 8, 777), 0).astype(ml_dtypes.int4)))
    out.append(("uint4_weights", rng.integers(0, 16, 101).astype(ml_dtypes.uint4)))
    out.append(("int2_weights", rng.integers(-2, 2, (7, 9)).astype(ml_dtypes.int2)))
    # §14: kept weights in runs of one sign along a row (context-modelled sparse)
    sign = np.where(np.cumsum(rng.random((30, 60)) < 0.03, axis=1) % 2, -1.0, 1.0)
    runs = np.where(rng.random((30, 60)) < 0.2, sign * rng.choice(np.linspace(0.1, 1, 12), (30, 60)), 0)
    out.append(("sign_runs_f32", runs.astype(np.float32)))
    out.append(("sign_runs_int8", np.round(runs * 60).astype(np.int8)))
    # 2-D FC weights with a zero background, which the compressed FC form builds straight from
    # the entries (dc_decode_rows): empty rows, -0.0 entries, per-row / per-column int8 tables
    fc = _clustered(rng, (24, 40), 16, 0.9)
    fc[3:6] = 0
    fc[10, ::5] = -0.0
    out.append(("fc_f32_rows_negzero", fc))
    out.append(("fc_int8_per_row_sparse", np.clip(np.round(fc * 300 * rng.uniform(0.5, 2, (24, 1))),
                                                  -127, 127).astype(np.int8)))
    # more than 255 distinct non-zero floats: refused from the codebook (dc_sparse_fc_check); 255
    # values and -0.0: the FC form keeps 255 (it drops -0.0), a table 256 (refused)
    many = rng.permutation(np.linspace(0.01, 1, 300).astype(np.float32))[:300].reshape(15, 20)
    out.append(("fc_f32_300_values", many * (rng.random((15, 20)) < 0.9)))
    vals = np.append(np.linspace(0.01, 1, 255).astype(np.float32), np.float32(-0.0))
    out.append(("fc_f32_255_values_negzero", rng.permutation(vals).reshape(16, 16)))
    # format version 3 dtypes (§16): int64 biases, bool masks, 8-byte and unsigned tables
    out.append(("v3_int64_bias", np.where(rng.random(300) < 0.3, rng.integers(-2**40, 2**40, 300), 0).astype(np.int64)))
    out.append(("v3_uint64_table", rng.choice(np.array([0, 7, 2**63, 2**64 - 1], np.uint64), (9, 11))))
    out.append(("v3_float64_weights", _clustered(rng, (12, 20), 8, 0.5, np.float64)))
    out.append(("v3_bool_mask", rng.random((5, 60)) < 0.1))
    out.append(("v3_uint32_table", (rng.integers(0, 6, (6, 25)) * 99991 + np.arange(6)[:, None]).astype(np.uint32)))
    out.append(("v3_uint16_ids", rng.choice(np.array([3, 60000, 65535], np.uint16), 401)))
    # format version 4 (§17 integer planes): unclustered biases, sorted index tables, extremes
    out.append(("v4_int32_bias", rng.normal(0, 3000, 257).astype(np.int32)))
    out.append(("v4_int64_bias", rng.normal(0, 2**20, 130).astype(np.int64)))
    out.append(("v4_int16_table", rng.normal(0, 400, (9, 13)).astype(np.int16)))
    out.append(("v4_uint32_sorted", np.sort(rng.integers(0, 2**32, 300, dtype=np.uint64)).astype(np.uint32)))
    i64 = np.iinfo(np.int64)
    out.append(("v4_int64_extremes", np.array([i64.min, i64.max, 0, -1, 3, i64.min + 1], np.int64)))
    out.append(("v4_uint64_wide", rng.integers(0, 2**64 - 1, 70, dtype=np.uint64)))
    out.append(("v4_uint16_arange", np.arange(1000, 1600, dtype=np.uint16)))
    # format version 5 (§18 sparse float planes): pruned unclustered floats, tfmot's -0.0 (symbol
    # 257), fillers, G = 1 (mostly kept), NaN payloads and infinities, a background other than 0.0
    for name, dt in (("f32", np.float32), ("f16", np.float16), ("bf16", ml_dtypes.bfloat16)):
        w = rng.normal(0, 0.05, (24, 40))
        pruned = rng.random(w.shape) >= 0.2
        w[pruned] = np.where(rng.random(w.shape)[pruned] < 0.5, -0.0, 0.0)
        w[5:8] = 0
        out.append((f"v5_pruned_{name}", w.astype(dt)))
    out.append(("v5_mostly_kept_f32", np.where(rng.random(300) < 0.9, rng.normal(0, 1, 300), 0.0).astype(np.float32)))
    special = np.full(200, 2.0, np.float32)
    special[::3] = -2.0
    special.view(np.uint32)[[1, 50]] = [0x7FC00001, 0xFF812345]
    special[[70, 80]] = [np.inf, -np.inf]
    out.append(("v5_special_f32", special))
    # an FC weight of > 255 distinct non-zero values (the value form, built straight from the §18
    # entries: dc_decode_value_rows), tfmot's -0.0s, a NaN and an infinity among them, empty rows
    w = rng.normal(0, 0.05, (32, 48)) * (rng.random((32, 48)) < 0.25)
    w[w == 0] = np.where(rng.random(int((w == 0).sum())) < 0.5, -0.0, 0.0)
    w[3:6] = 0.0
    w[7, 5], w[9, 40] = np.nan, -np.inf
    out.append(("v5_values_f32", w.astype(np.float32)))
    return out


LAYOUTS = (None, "dense", "sparse", "grouped_dense", "grouped_sparse", "float_planes", "context_sparse", "int_planes",
           "sparse_planes")


def seeds():
    """(name, packed bytes, array) for every tensor, each layout the encoder accepts."""
    for name, a in tensors():
        done = set()
        for layout in LAYOUTS:
            for version in (None, 2, 1):  # the lowest (3 for §16's dtypes, 4 for §17, 5 for §18); 1 must keep decoding
                try:
                    data = codec.encode(a, layout=layout, version=version)
                except ValueError:
                    continue
                if data in done:
                    continue
                done.add(data)
                yield f"{name}_{layout or 'auto'}_v{data[4]}", data, a
        # shorter codes: exercises other table sizes
        try:
            data = codec.encode(a, max_code_length=5)
        except ValueError:  # more symbols than 5-bit codes can hold
            continue
        if data not in done:
            yield f"{name}_maxlen5", data, a


def _fc_model(w):
    """A one-op FULLY_CONNECTED .tflite with constant weights ``w`` (units x inputs)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras._flatbuffer import schema

    def tensor(shape, buffer, name, ttype=schema.TensorType.FLOAT32):
        t = schema.TensorT()
        t.shape, t.buffer, t.name, t.type = list(shape), buffer, name, ttype
        return t

    m = schema.ModelT()
    m.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    m.operatorCodes = [code]
    empty, wbuf = schema.BufferT(), schema.BufferT()
    wbuf.data = np.frombuffer(np.ascontiguousarray(w).tobytes(), np.uint8)
    m.buffers = [empty, wbuf]
    sg = schema.SubGraphT()
    sg.tensors = [tensor((1, w.shape[1]), 0, "x"), tensor(w.shape, 1, "w"), tensor((1, w.shape[0]), 0, "y")]
    sg.inputs, sg.outputs = [0], [2]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    sg.operators = [op]
    m.subgraphs = [sg]
    return fb.write_model(m)


def _with_zip(model, zip64):
    """``model`` + a zip of two associated files, appended as tflite_support's MetadataPopulator
    does (zipfile mode "a": offsets from the file start); ``zip64``: with zip64 records."""
    import io
    import zipfile

    f = io.BytesIO(model)
    f.seek(0, 2)
    limits = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    if zip64:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 8, 1
    try:
        with zipfile.ZipFile(f, "a") as z:
            z.writestr("labels.txt", "cat\ndog\nbird\n")
            z.writestr("vocab.txt", "a\nb\n")
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = limits
    return f.getvalue()


def tflite_seeds():
    """(name, packed .tflite bytes) for fuzz_unpack.c."""
    from dc_keras import export

    rng = np.random.default_rng(7)
    for name, shape, k, sparsity in (("fc_small", (6, 10), 4, 0.5), ("fc_dense", (16, 24), 16, 0.0),
                                     ("fc_sparse", (32, 40), 8, 0.9)):
        model = _fc_model(_clustered(rng, shape, k, sparsity))
        yield name, export.pack(model, min_bytes=0, min_saving=0.0)
        if name == "fc_sparse":  # every table kept (pack's compact=False; FORMAT.md §15)
            yield name + "_full", export.pack(model, min_bytes=0, min_saving=0.0, compact=False)
            packed = export.pack(model, min_bytes=0, min_saving=0.0)
            yield name + "_zip", _with_zip(packed, zip64=False)  # associated files after it (§15)
            yield name + "_zip64", _with_zip(packed, zip64=True)
            # data after the flatbuffer (Buffer.offset/size), the packed ones last: dc_unpack cuts them
            yield name + "_external", export.pack(model, min_bytes=0, min_saving=0.0, buffers="external")
    lstm = os.path.join(HERE, "..", "..", "tests", "data", "zoo_lstm128.packed.tflite")
    if os.path.exists(lstm):
        with open(lstm, "rb") as f:
            yield "zoo_lstm128", f.read()


# fuzz_tflm.c's control byte = mode + 6 * mismatch + 48 * arena (its header): every mode / options
# case (0-5), each mismatch (1-7) alone (arena ample) and each arena case (1-5) alone (no mismatch),
# in both decode modes where the case has them, and the CRC fix-up with the exact arena
TFLM_CONTROLS = (0, 1, 2, 3, 4, 5, 8, 9, 12, 19, 24, 25, 32, 39, 42, 48, 49, 96, 97, 144, 145, 192, 193,
                 240, 241, 246)


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = argv[1]
    os.makedirs(os.path.join(out, "decode"), exist_ok=True)
    os.makedirs(os.path.join(out, "op"), exist_ok=True)
    os.makedirs(os.path.join(out, "tflm"), exist_ok=True)
    count = 0
    for name, data, a in seeds():
        if codec.decode(data).tobytes() != a.tobytes():  # a seed must be a valid packed tensor
            raise SystemExit(f"gen_seeds: {name} does not round-trip (codec bug)")
        with open(os.path.join(out, "decode", name), "wb") as f:
            f.write(data)
        # op route: 0 op, 1 legacy resize, 2 delegate, 3 failing allocation; 4/8 = mismatches
        for ctl in (0, 1, 2, 3, 4, 8, 36, 16, 80):
            with open(os.path.join(out, "op", f"{name}_c{ctl}"), "wb") as f:
                f.write(bytes([ctl]) + data)
        for ctl in TFLM_CONTROLS:
            with open(os.path.join(out, "tflm", f"{name}_c{ctl}"), "wb") as f:
                f.write(bytes([ctl]) + data)
        count += 1
    os.makedirs(os.path.join(out, "unpack"), exist_ok=True)
    for name, data in tflite_seeds():
        with open(os.path.join(out, "unpack", name), "wb") as f:
            f.write(data)
    digest = hashlib.sha256(b"".join(d for _, d, _ in seeds())).hexdigest()[:12]
    print(f"gen_seeds: {count} packed tensors -> {out}/decode, {out}/op, {out}/tflm (sha256 {digest}); {out}/unpack")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
