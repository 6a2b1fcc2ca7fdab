"""weights="compressed" on pruned but unclustered float32 FULLY_CONNECTED layers (review of
session 56): they run from the value form (dc_sparse_fc.h: a 16-bit column and the float32 weight
per non-zero) instead of decoded. Before, every such layer (tfmot's pruning without clustering,
dc_keras.prune without cluster: more than 255 distinct non-zero values, packed as FORMAT.md §18 or
§12) stayed decoded with the reason "more than 255 distinct non-zero values", holding the whole
dense float matrix in memory."""
import ctypes as C
import warnings

import numpy as np
import pytest

from _export_models import run as em_run
from _export_models import run_batch
from dc_keras import codec, export, runtime
from test_runtime_compressed import _close, _plain, _sparse_fc_api

FIX = "cluster the weights to at most 255 values (dc_keras.cluster, bits <= 7) to run them compressed"


def _pruned_mlp(densities=(0.1, 0.1), seed=0, negative_zeros=False):
    """Dense(128, relu) then Dense(30) on 40 inputs, standard-normal weights (every non-zero
    distinct) pruned to the given densities, as tfmot's pruning without clustering leaves them
    (negative_zeros: -0.0 where a pruned weight was negative, as its strip_pruning does)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((40,))
    first, second = keras.layers.Dense(128, activation="relu"), keras.layers.Dense(30)
    model = keras.Model(inp, second(first(inp)))
    for layer, density in zip((first, second), densities):
        w = layer.kernel.numpy()
        keep = rng.permutation(w.size).reshape(w.shape) < round(density * w.size)
        layer.kernel.assign((w * keep if negative_zeros else np.where(keep, w, 0)).astype(np.float32))
    return model


def _weights(model):
    """The FC weights as the .tflite holds them: [units, inputs]."""
    return [layer.kernel.numpy().T for layer in model.layers[1:]]


def _packed_layouts(packed):
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(packed)
    return [codec.info(fb.buffer_bytes(model, model.subgraphs[s].tensors[p].buffer))["layout"]
            for s, p, _ in export._pack.packed_tensors(model)]


@pytest.mark.parametrize("negative_zeros", [False, True])
def test_pruned_unclustered_fc_layers_run_compressed_on_the_value_form(negative_zeros):
    """Both FC layers (10 % dense, 512 and 384 distinct non-zero values) pack as §18 and,
    with weights="compressed" and the default max_density, run compressed: the report gives each
    one's non-zeros (a -0.0 is no non-zero) and the value form's bytes, 6 per non-zero + 4 per row
    (plus the form's struct), under a quarter of the dense weight's at 10 %; the outputs match the
    unpacked model within summation order, as the other float forms' (batch 1, 2..9, and after
    the scalar kernels are switched on). Before: both decoded, "more than 255 distinct non-zero
    values"."""
    model = _pruned_mlp(negative_zeros=negative_zeros)
    plain = export.to_tflite(model, pack=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if negative_zeros else "error")  # -0.0: pack says so
        packed = export.pack(plain)
    ws = _weights(model)
    assert [len(np.unique(w[w != 0])) for w in ws] == [512, 384]
    assert _packed_layouts(packed).count("sparse_planes") == 2, _packed_layouts(packed)
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    rows = [r for r in it.compressed_report() if r["op"] == "FULLY_CONNECTED" and "shape" in r]
    assert [r["route"] for r in rows] == ["compressed", "compressed"], it.compressed_report()
    lib, SparseFc = _sparse_fc_api()
    for r, w in zip(rows, ws):
        nnz = int((w != 0).sum())
        assert r["shape"] == w.shape and r["dtype"] == "float32" and r["nonzeros"] == nnz, r
        assert r["bytes"] == C.sizeof(SparseFc) + 4 * (w.shape[0] + 1) + 6 * nnz, r
        assert r["form"] == "values", r
    assert rows[0]["bytes"] < 0.25 * ws[0].size * 4, rows[0]
    xs = np.random.default_rng(1).standard_normal((9, 40)).astype(np.float32)
    ref = _plain(plain)
    was = lib.dc_sparse_fc_use_simd(1)
    try:
        for simd in (1, 0):
            lib.dc_sparse_fc_use_simd(simd)
            for i in range(3):
                _close(run_batch(it, xs[i:i + 1]), run_batch(ref, xs[i:i + 1]))
            for n in (2, 8, 9):
                _close(run_batch(it, xs[:n]), run_batch(ref, xs[:n]))
    finally:
        lib.dc_sparse_fc_use_simd(was)


def _build(lib, SparseFc, packed, table=False):
    m, ds, why = SparseFc(), C.c_int(0), C.create_string_buffer(256)
    build = lib.dc_sparse_table_build if table else lib.dc_sparse_fc_build
    return build(packed, len(packed), C.byref(m), C.byref(ds), why, 256), m, why.value.decode()


@pytest.mark.parametrize("layout", ["sparse_planes", "float_planes"])
def test_value_form_holds_the_weights_row_by_row_and_its_kernels_match_the_dense_product(layout):
    """The build of a §18 / §12 float32 weight of more than 255 distinct non-zero values (300 x 70
    at 20 %, -0.0, inf and a NaN among them) makes the value form: row_ptr, col and value are the
    weight's non-zeros row by row (-0.0 left out, NaN and inf kept bit for bit), no codes, no
    codebook, built straight from the entries for §18 and through the dense copy for §12; the kernels (the choice of this CPU and the scalar
    ones, batch 1, 3 and 9 with and without scratch) give the double-precision dense product
    within 1e-5 of the sum of |terms| on the rows without inf / NaN. A lookup table of the same
    weights takes the value form too (session 57; before, refused): -0.0 kept, every bit as stored."""
    lib, SparseFc = _sparse_fc_api()
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((70, 300)) * (rng.random((70, 300)) < 0.2)).astype(np.float32)
    w[3, :5] = -0.0
    w[5, 7], w[6, 8] = np.inf, np.nan
    packed = codec.encode(w, layout=layout)
    assert codec.info(packed)["layout"] == layout
    st, m, why = _build(lib, SparseFc, packed)
    assert st == 0 and why == "", (st, why)
    try:
        keep = w.view(np.uint32) << 1 != 0
        nnz = int(keep.sum())
        direct = layout == "sparse_planes"  # §18: from the entries (session 57), §12: the dense copy
        assert (m.rows, m.cols, m.nnz, m.num_values, m.from_dense) == (70, 300, nnz, 0, 0 if direct else 1)
        assert m.value and not m.code and not m.tile_e and m.row_ptr
        row_ptr = np.ctypeslib.as_array(C.cast(m.row_ptr, C.POINTER(C.c_uint32)), (71,))
        col = np.ctypeslib.as_array(C.cast(m.col, C.POINTER(C.c_uint16)), (nnz,))
        value = np.ctypeslib.as_array(C.cast(m.value, C.POINTER(C.c_uint32)), (nnz,))
        np.testing.assert_array_equal(row_ptr, np.concatenate([[0], np.cumsum(keep.sum(axis=1))]))
        np.testing.assert_array_equal(col, np.nonzero(keep)[1])
        np.testing.assert_array_equal(value, w.view(np.uint32)[keep])  # bit for bit
        assert lib.dc_sparse_fc_bytes(C.byref(m)) == C.sizeof(SparseFc) + 4 * 71 + 6 * nnz
        fp = C.POINTER(C.c_float)
        lib.dc_sparse_fc_float.argtypes = [C.POINTER(SparseFc), fp, C.c_size_t, fp, C.c_float, C.c_float, fp, fp]
        finite = np.isfinite(w).all(axis=1)
        assert finite.sum() == 68
        x = rng.standard_normal((9, 300)).astype(np.float32)
        ws = np.where(keep, w, 0).astype(np.float64)
        want, mag = x.astype(np.float64) @ ws.T, np.abs(x.astype(np.float64)) @ np.abs(ws).T
        scratch = np.zeros(300 * 8, np.float32)
        was = lib.dc_sparse_fc_use_simd(1)
        try:
            for simd in (1, 0):
                lib.dc_sparse_fc_use_simd(simd)
                for batch in (1, 3, 9):
                    for s in (scratch, None):
                        y = np.full((batch, 70), np.nan, np.float32)
                        lib.dc_sparse_fc_float(C.byref(m), x.ctypes.data_as(fp), batch, None, -np.inf, np.inf,
                                               y.ctypes.data_as(fp), None if s is None else s.ctypes.data_as(fp))
                        with np.errstate(invalid="ignore"):  # the rows with inf / NaN
                            err = np.abs(y - want[:batch])[:, finite]
                        assert (err <= 1e-5 * mag[:batch][:, finite] + 1e-30).all(), (simd, batch, err.max())
                        assert np.isnan(y[:, 6]).all() and not np.isnan(y[:, finite]).any()
        finally:
            lib.dc_sparse_fc_use_simd(was)
    finally:
        lib.dc_sparse_fc_free(C.byref(m))
    st, t, why = _build(lib, SparseFc, packed, table=True)
    try:
        kept = w.view(np.uint32) != 0
        assert st == 0 and t.value and not t.code and t.nnz == kept.sum() and t.from_dense == (0 if direct else 1)
        value = np.ctypeslib.as_array(C.cast(t.value, C.POINTER(C.c_uint32)), (int(kept.sum()),))
        np.testing.assert_array_equal(value, w.view(np.uint32)[kept])  # -0.0 and NaN bit for bit
    finally:
        lib.dc_sparse_fc_free(C.byref(t))


def test_a_codebook_of_more_than_255_values_is_refused_with_the_fix():
    """A float32 weight clustered to 300 values (a §5 / §6 codebook: no value form, refused from
    the header before any decode) and a lookup table of more than 255 values: the reason names the
    fix."""
    lib, SparseFc = _sparse_fc_api()
    values = np.linspace(0.01, 0.3, 300, dtype=np.float32)
    w = np.resize(values, (20, 300)) * (np.random.default_rng(0).random((20, 300)) < 0.3)
    w[0] = values
    for layout in ("dense", "sparse"):
        packed = codec.encode(w.astype(np.float32), layout=layout)
        why = C.create_string_buffer(256)
        assert lib.dc_sparse_fc_check(packed, len(packed), 0, why, 256) == 1
        assert why.value.decode() == "more than 255 distinct non-zero values (in its codebook): " + FIX
        assert lib.dc_sparse_fc_form(packed, len(packed)) == 0


def test_default_max_density_of_unclustered_float32_layers_is_10_percent():
    """By default an unclustered float32 FC layer (float planes: the value form) runs compressed up
    to 10 % density (the value form's limit, benchmarks/bench_values.py): at 10 % it does, at 25 %
    it stays decoded with the limit and its name in the reason (outputs within summation order of
    the unpacked model: the first layer runs compressed); max_density=0.3 runs it compressed; the codes' 30 % limit is unchanged (a clustered layer at
    25 %)."""
    model = _pruned_mlp(densities=(0.1, 0.25))
    plain = export.to_tflite(model, pack=False)
    packed = export.pack(plain)
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    rows = [r for r in it.compressed_report() if r["op"] == "FULLY_CONNECTED" and "not its weights" not in r.get("reason", "")]
    assert [r["route"] for r in rows] == ["compressed", "dense"], rows
    assert rows[1]["reason"] == ("density 25.0 % > 10 % (default max_density for unclustered float32 weights, "
                                 "on the value form); decoded"), rows[1]
    xs = np.random.default_rng(2).standard_normal((3, 40)).astype(np.float32)
    _close(em_run(it, xs), em_run(_plain(plain), xs))
    it3 = runtime.Interpreter(model_content=packed, weights="compressed", max_density=0.3)
    assert all(r["route"] == "compressed" for r in it3.compressed_report() if r["op"] == "FULLY_CONNECTED"
               and "not its weights" not in r.get("reason", "")), it3.compressed_report()
    _close(em_run(it3, xs), em_run(_plain(plain), xs))
    values = np.linspace(-0.3, 0.3, 16, dtype=np.float32)  # the same layers clustered: rows of codes
    for layer in model.layers[1:]:
        w = layer.kernel.numpy()
        layer.kernel.assign(np.where(w != 0, values[np.arange(w.size).reshape(w.shape) % 16], 0).astype(np.float32))
    clustered_file = export.to_tflite(model)
    clustered = runtime.Interpreter(model_content=clustered_file, weights="compressed")
    assert all(r["route"] == "compressed" for r in clustered.compressed_report() if r["op"] == "FULLY_CONNECTED"
               and "not its weights" not in r.get("reason", "")), clustered.compressed_report()
    # the report names the form: 16 codebook values take the tile form where its SIMD kernels run
    # (and the tiles fit), else rows of codes; with the scalar kernels forced, rows of codes
    lib, _ = _sparse_fc_api()
    lib.dc_sparse_fc_kernel_name.restype = C.c_char_p
    simd = lib.dc_sparse_fc_kernel_name() in (b"avx2", b"avx512")
    forms = [r["form"] for r in clustered.compressed_report() if r["route"] == "compressed"]
    assert len(forms) == 2 and set(forms) <= ({"tiles", "codes"} if simd else {"codes"}), forms
    was = lib.dc_sparse_fc_use_simd(0)
    try:
        scalar = runtime.Interpreter(model_content=clustered_file, weights="compressed")
        assert [r["form"] for r in scalar.compressed_report() if r["route"] == "compressed"] == ["codes", "codes"]
    finally:
        lib.dc_sparse_fc_use_simd(was)



def test_count_values_says_whether_a_weight_takes_codes_or_values():
    """dc_sparse_fc_count_values (what the delegate asks of a float planes weight refused at the value
    form's limit, to apply the rows' limit to one of <= 255 values): distinct non-zero bit patterns,
    +-0 not counted, -1.0 and 1.0 two, NaN kept, counted up to 256."""
    lib, _ = _sparse_fc_api()
    lib.dc_sparse_fc_count_values.argtypes = [C.c_void_p, C.c_uint64]
    lib.dc_sparse_fc_count_values.restype = C.c_uint32

    def count(a):
        a = np.ascontiguousarray(a, np.float32)
        return lib.dc_sparse_fc_count_values(a.ctypes.data, a.size)

    pool = (0x3F800000 + 7919 * np.arange(300, dtype=np.uint32)).view(np.float32)
    assert count(np.zeros(10)) == 0 and count(np.array([0.0, -0.0, 0.0])) == 0
    assert count([1.0, -1.0, 1.0, np.nan, -0.0]) == 3
    assert count(np.repeat(pool[:255], 3)) == 255 and count(pool[:256]) == 256 and count(pool) == 256
    assert lib.dc_sparse_fc_count_values(None, 5) == 0


def test_value_form_default_and_design_notes_table_follow_values_density_json():
    """huffdecode_op.c's DC_DEFAULT_MAX_DENSITY_FLOAT32_VALUES is the densest density of
    docs/results/values_density.json (benchmarks/bench_values.py) at which both layers ran faster than
    XNNPACK at batch 1 and 8, every sparser one too, on both passes of the value form's kernels; the
    table of docs/android_design_notes.md "Unclustered layers: the value form" quotes that run's scalar
    pass and memory row by row."""
    import json
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "results", "values_density.json")) as f:
        d = json.load(f)
    with open(os.path.join(root, "tflite_kernels", "src", "huffdecode_op.c")) as f:
        default = int(re.search(r"#define DC_DEFAULT_MAX_DENSITY_FLOAT32_VALUES (\d+)", f.read()).group(1))
    pcts = sorted({round(100 * r["density"]) for r in d["rows"]})
    for variant in ("native", "scalar"):
        faster = [p for p in pcts if all(r["variants"][variant]["ratio"] < 1 for r in d["rows"]
                                         if round(100 * r["density"]) <= p)]
        assert max(faster) == default == 10, (variant, faster)
    assert all((r["default"] == "compressed") == (round(100 * r["density"]) <= default) for r in d["rows"])
    with open(os.path.join(root, "docs", "android_design_notes.md")) as f:
        notes = f.read().split("### Unclustered layers: the value form", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^  \| (784×300|1024²) \| (\d+) % \| ([\d.]+)x \| ([\d.]+)x \| ([\d.]+)x \|$", notes, re.M)
    assert len(table) == 10, table
    by = {(r["shape"][0], round(100 * r["density"]), r["batch"]): r for r in d["rows"]}
    for shape, pct, b1, b8, mem in table:
        n = 784 if shape == "784×300" else 1024
        one, eight = by[n, int(pct), 1], by[n, int(pct), 8]
        assert (b1, b8) == (f"{one['variants']['scalar']['ratio']:.2f}", f"{eight['variants']['scalar']['ratio']:.2f}")
        assert mem == f"{one['variants']['scalar']['compact_bytes'] / one['dense_bytes']:.2f}", (shape, pct)
