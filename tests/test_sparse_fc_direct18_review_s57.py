"""Pruned but unclustered float32 FULLY_CONNECTED weights packed as FORMAT.md §18 (sparse float
planes) build their compact form straight from the packed entries (review of session 57):
dc_sparse_fc.c's build_planes_direct through dc_codec.c's dc_decode_value_rows, with no dense copy
of the weight. Before, every §18 weight went through a transient dense copy (decoded whole, scanned,
freed): the whole float32 matrix in memory at load, for a form of 6 bytes per non-zero.
dc_sparse_fc_set_direct(0) still forces that route: both must give the same form byte for byte."""
import ctypes as C
import warnings
import zlib

import numpy as np
import pytest

from _export_models import run_batch
from dc_keras import codec, export, runtime
from test_runtime_compressed import _close, _plain, _sparse_fc_api
from test_runtime_compressed_review_s56 import _pruned_mlp


def _api():
    lib, SparseFc = _sparse_fc_api()
    lib.dc_sparse_fc_set_direct.argtypes = [C.c_int]
    lib.dc_sparse_fc_set_direct.restype = C.c_int
    return lib, SparseFc


def _build(lib, SparseFc, packed, direct=True):
    m, ds, why = SparseFc(), C.c_int(0), C.create_string_buffer(256)
    was = lib.dc_sparse_fc_set_direct(int(direct))
    try:
        st = lib.dc_sparse_fc_build(packed, len(packed), C.byref(m), C.byref(ds), why, 256)
    finally:
        lib.dc_sparse_fc_set_direct(was)
    return st, ds.value, m, why.value.decode()


def _arrays(m):
    """The form's arrays as numpy copies: row_ptr, col, and the values' bits or the codes."""
    n = m.nnz
    row_ptr = np.ctypeslib.as_array(C.cast(m.row_ptr, C.POINTER(C.c_uint32)), (m.rows + 1,)).copy()
    col = np.ctypeslib.as_array(C.cast(m.col, C.POINTER(C.c_uint16)), (n,)).copy() if n else np.zeros(0, np.uint16)
    if m.value:
        vals = np.ctypeslib.as_array(C.cast(m.value, C.POINTER(C.c_uint32)), (n,)).copy() if n else np.zeros(0, np.uint32)
        return row_ptr, col, vals, None
    codes = np.ctypeslib.as_array(C.cast(m.code, C.POINTER(C.c_uint8)), (n,)).copy() if n else np.zeros(0, np.uint8)
    return row_ptr, col, None, codes


def _weights():
    """(name, [out, in] float32 weight) of every kind the direct route must take: densities from
    1 to 60 %, tfmot's -0.0 (half the pruned elements), NaN payloads and infinities, empty rows,
    1 x N and N x 1, 65,536 inputs, and 40 distinct values (<= 255: rows of codes)."""
    rng = np.random.default_rng(57)
    out = []
    for density in (0.01, 0.05, 0.2, 0.6):
        w = (rng.standard_normal((50, 120)) * (rng.random((50, 120)) < density)).astype(np.float32)
        out.append((f"d{density}", w))
    tfmot = rng.standard_normal((64, 96)) * (rng.random((64, 96)) < 0.15)  # pruned negatives: -0.0
    tfmot[np.abs(tfmot) < 1e-12] = np.where(rng.random(int((np.abs(tfmot) < 1e-12).sum())) < 0.5, -0.0, 0.0)
    tfmot[10:20] = 0.0  # empty rows
    out.append(("tfmot", tfmot.astype(np.float32)))
    special = (rng.standard_normal((40, 70)) * (rng.random((40, 70)) < 0.3)).astype(np.float32)
    special.view(np.uint32)[3, :4] = [0x7FC00001, 0xFF812345, 0x7F800000, 0xFF800000]  # NaNs, +-inf
    special.view(np.uint32)[5, 9] = 0x00000001  # a subnormal
    out.append(("special", special))
    out.append(("row", (rng.standard_normal((1, 3000)) * (rng.random((1, 3000)) < 0.2)).astype(np.float32)))
    out.append(("column", (rng.standard_normal((3000, 1)) * (rng.random((3000, 1)) < 0.2)).astype(np.float32)))
    wide = np.zeros((2, 65536), np.float32)
    wide[:, rng.permutation(65536)[:400]] = rng.standard_normal((2, 400))
    wide[1, 65535] = 1.5  # the last column a uint16 holds
    out.append(("wide", wide))
    forty = np.linspace(-2, 2, 40, dtype=np.float32)
    out.append(("forty", (forty[rng.integers(0, 40, (30, 50))] * (rng.random((30, 50)) < 0.3)).astype(np.float32)))
    return out


@pytest.mark.parametrize("name,w", _weights(), ids=[n for n, _ in _weights()])
def test_direct_build_of_sparse_planes_equals_the_dense_copy_byte_for_byte(name, w):
    """Each weight packed as §18 builds from its entries (from_dense 0) into the same form as
    through the dense copy (dc_sparse_fc_set_direct(0), from_dense 1) and as the §12 float planes of
    the same weight (a dense copy too): row_ptr, col and the values bit for bit (more than 255
    distinct non-zero values: the value form) or the codes and codebook (<= 255: rows of codes),
    -0.0 left out, NaN and inf kept; the same bytes counted (dc_sparse_fc_bytes)."""
    lib, SparseFc = _api()
    packed = codec.encode(w, layout="sparse_planes")
    assert codec.info(packed)["layout"] == "sparse_planes"
    keep = w.view(np.uint32) << 1 != 0
    nnz = int(keep.sum())
    forms = []
    for p, direct in ((packed, True), (packed, False), (codec.encode(w, layout="float_planes"), True)):
        st, ds, m, why = _build(lib, SparseFc, p, direct)
        assert st == 0 and why == "", (name, st, ds, why)
        try:
            forms.append((m.from_dense, m.nnz, m.num_values, list(m.codebook[:m.num_values]), _arrays(m),
                          lib.dc_sparse_fc_bytes(C.byref(m))))
        finally:
            lib.dc_sparse_fc_free(C.byref(m))
    (fd, n, nv, cb, (row_ptr, col, vals, codes), size), *others = forms
    assert (fd, n) == (0, nnz), (name, fd, n)
    for o in others:  # the dense copy of the same §18 bytes, then of §12's
        assert o[0] == 1 and o[1:4] == (n, nv, cb), name
        for a, b in zip((row_ptr, col, vals, codes), o[4]):
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_array_equal(a, b)
        assert o[5] == size, name
    distinct = len(np.unique(w.view(np.uint32)[keep]))
    assert (vals is not None) == (distinct > 255) and nv == (0 if distinct > 255 else distinct), (name, distinct)
    np.testing.assert_array_equal(row_ptr, np.concatenate([[0], np.cumsum(keep.sum(axis=1))]))
    np.testing.assert_array_equal(col, np.nonzero(keep)[1])
    got = vals if vals is not None else np.array(cb, np.float32).view(np.uint32)[codes]
    np.testing.assert_array_equal(got, w.view(np.uint32)[keep])  # bit for bit


def test_damaged_sparse_planes_fail_as_dc_decode_on_both_routes():
    """Byte flips with the CRC (§8) recomputed, at every 3rd byte of a §18 weight: the direct build
    and the dense copy's give the same status and decode status, which is dc_decode's, and what
    builds is the same form on both; a flip without the CRC recomputed is DC_ERR_CHECKSUM (or the
    header's own error) on both."""
    lib, SparseFc = _api()
    lib.dc_decode.argtypes = [C.c_char_p, C.c_size_t, C.c_void_p, C.c_size_t]
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((12, 40)) * (rng.random((12, 40)) < 0.3)).astype(np.float32)
    packed = codec.encode(w, layout="sparse_planes")
    check = 8 + 4 * 2  # the CRC field of a rank-2 tensor (FORMAT.md §2)
    out = np.zeros(w.size, np.float32)
    statuses = set()
    for pos in range(0, len(packed), 3):
        if check <= pos < check + 4:
            continue
        for fix_crc in (True, False):
            bad = bytearray(packed)
            bad[pos] ^= 0x5A
            if fix_crc:
                bad[check:check + 4] = (zlib.crc32(bytes(bad[check + 4:]), zlib.crc32(bytes(bad[:check])))
                                        .to_bytes(4, "little"))
            bad = bytes(bad)
            a, b = _build(lib, SparseFc, bad, True), _build(lib, SparseFc, bad, False)
            try:
                assert a[:2] == b[:2], (pos, fix_crc, a[:2], b[:2])
                if a[0] == 3:  # DC_SFC_DECODE: dc_decode's status
                    assert lib.dc_decode(bad, len(bad), out.ctypes.data, out.nbytes) == a[1], (pos, a[1])
                    statuses.add(a[1])
                elif a[0] == 0:
                    assert fix_crc and a[2].nnz == b[2].nnz and all(
                        np.array_equal(x, y) for x, y in zip(_arrays(a[2]), _arrays(b[2])) if x is not None)
            finally:
                lib.dc_sparse_fc_free(C.byref(a[2]))
                lib.dc_sparse_fc_free(C.byref(b[2]))
    assert len(statuses) >= 3, statuses  # the checksum, and the entries' own checks


@pytest.mark.parametrize("max_density", [None, 1.0])
def test_pruned_unclustered_layers_run_the_same_bits_on_both_routes(max_density):
    """weights="compressed" on a pruned, unclustered MLP packed as §18 (10 % and 20 % dense, -0.0 where
    pruned weights were negative): the layers built from their entries give the same outputs, bit for
    bit, as the same layers built through the dense copy (the same form, the same kernels), and the
    same report rows (route, non-zeros, bytes); both match the unpacked model within summation order.
    With the default max_density (10 % for these layers) the 20 % layer is refused as too dense on
    both routes (its R stored entries exceed the limit: the dense copy counts it and hands its decoded
    weight over) and runs decoded; with max_density=1.0 both run compressed."""
    lib, _ = _api()
    model = _pruned_mlp(densities=(0.1, 0.2), seed=4, negative_zeros=True)
    plain = export.to_tflite(model, pack=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pack notes the -0.0s (docs/packing.md)
        packed = export.pack(plain)
    kw = {} if max_density is None else {"max_density": max_density}
    xs = np.random.default_rng(2).standard_normal((9, 40)).astype(np.float32)
    outs, reports = [], []
    for direct in (1, 0):
        was = lib.dc_sparse_fc_set_direct(direct)
        try:
            it = runtime.Interpreter(model_content=packed, weights="compressed", **kw)
            rows = [r for r in it.compressed_report() if r["op"] == "FULLY_CONNECTED"]
            outs.append([run_batch(it, xs[:n]) for n in (1, 2, 9)])
        finally:
            lib.dc_sparse_fc_set_direct(was)
        reports.append([(r["route"], r.get("nonzeros"), r.get("bytes"), r.get("reason")) for r in rows])
    assert reports[0] == reports[1], reports
    want = ["compressed", "dense"] if max_density is None else ["compressed", "compressed"]
    assert [r[0] for r in reports[0]] == want, reports[0]
    assert reports[0][0][1] == 512 and (max_density is None or reports[0][1][1] == 768), reports[0]
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    ref = _plain(plain)
    for n, got in zip((1, 2, 9), outs[0]):
        _close(got, run_batch(ref, xs[:n]))


def test_float16_sparse_planes_have_no_compact_form_on_either_route():
    """float16 / bfloat16 §18 weights: no compact form (the kernels are float32 and int8), refused with
    the same reason on both routes; a lookup table of a float32 §18 weight of <= 255 values (+0.0
    background) is built from the entries too (session 57: tables keep -0.0; the rows of codes here,
    the value form for > 255 values: tests/test_sparse_table_values_review_s57.py)."""
    import ml_dtypes

    lib, SparseFc = _api()
    w = (np.random.default_rng(1).standard_normal((20, 30)) * 0.1) * (np.random.default_rng(2).random((20, 30)) < 0.2)
    for dt in (np.float16, ml_dtypes.bfloat16):
        packed = codec.encode(w.astype(dt), layout="sparse_planes")
        a, b = _build(lib, SparseFc, packed, True), _build(lib, SparseFc, packed, False)
        assert a[0] == b[0] == 1 and a[3] == b[3] == "weights are neither float32 nor int8", (a, b)
    lib.dc_sparse_table_build.argtypes = [C.c_char_p, C.c_size_t, C.POINTER(SparseFc), C.POINTER(C.c_int),
                                          C.c_char_p, C.c_size_t]
    forty = np.where(w != 0, np.linspace(-2, 2, 40, dtype=np.float32)[np.arange(600).reshape(20, 30) % 40], 0)
    forty = forty.astype(np.float32)
    t, ds, why = SparseFc(), C.c_int(0), C.create_string_buffer(256)
    packed = codec.encode(forty, layout="sparse_planes")
    assert lib.dc_sparse_table_build(packed, len(packed), C.byref(t), C.byref(ds), why, 256) == 0
    try:
        assert t.from_dense == 0 and t.table == 1 and t.code and t.nnz == int((forty != 0).sum())
    finally:
        lib.dc_sparse_fc_free(C.byref(t))


def test_design_notes_build_table_follows_values_build_json():
    """docs/android_design_notes.md "Unclustered layers: the value form" quotes
    docs/results/values_build.json (benchmarks/bench_values_build.py) row by row: the CPU-time medians
    of the direct build and of the dense copy, and their peaks; every layer of 5-20 % density there
    built in less CPU time and a lower peak from the entries than through the dense copy (the 784 x 300
    forms at 5 and 10 % took no new pages at all), and at most the dense weight's size."""
    import json
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "results", "values_build.json")) as f:
        d = json.load(f)
    with open(os.path.join(root, "docs", "android_design_notes.md")) as f:
        notes = f.read().split("### Unclustered layers: the value form", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^  \| (\d+) × (\d+) \| (\d+) % \| ([\d.]+) ms \| ([\d.]+) ms \| (?:([\d.]+) MiB|\(([\d.]+) MiB form\)) "
                       r"\| ([\d.]+) MiB \|$", notes, re.M)
    assert len(table) == 5, table
    by = {(r["shape"][0], r["shape"][1], round(100 * r["density"]), r["negative_zeros"]): r for r in d["rows"]}
    for n_in, n_out, pct, direct, dense, peak, form, dense_peak in table:
        r = by[int(n_in), int(n_out), int(pct), False]
        assert (direct, dense) == (f"{r['cpu_ms']['direct']['median']:.2f}", f"{r['cpu_ms']['dense']['median']:.2f}")
        assert dense_peak == f"{r['peak_mib']['dense']:.2f}", (n_in, pct)
        if peak:
            assert peak == f"{r['peak_mib']['direct']:.2f}", (n_in, pct)
        else:  # no new pages: the form fit in the heap the process had
            assert r["peak_mib"]["direct"] == 0 and form == f"{r['compact_bytes'] / 2**20:.2f}", (n_in, pct, r)
    for r in d["rows"]:
        assert r["cpu_ms"]["direct"]["median"] < r["cpu_ms"]["dense"]["median"], r
        assert r["peak_mib"]["direct"] < r["peak_mib"]["dense"] and r["peak_mib"]["direct"] * 2**20 < r["dense_bytes"], r
