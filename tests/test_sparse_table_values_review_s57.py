"""Lookup tables (EMBEDDING_LOOKUP / GATHER) pruned but not clustered -- more than 255 distinct non-zero
values, packed as FORMAT.md §18 sparse float planes -- run on the value form under weights="compressed"
(review of session 57). Before, dc_sparse_table_build refused them ("tables have no value form") and
the table, usually a text model's largest tensor, was decoded dense at load. A table's value form keeps
every element whose bits are not +0.0 (a lookup copies bits: -0.0 and NaN payloads come out as stored),
is built straight from the §18 entries (+0.0 background) with the same bytes as through the dense copy,
and runs up to 60 % kept elements (DC_TABLE_VALUES_MAX_DENSITY: 6 B per kept element + 4 per row against
4 B per element dense); a denser one stays decoded with the reason."""
import ctypes as C
import functools
import os
import re

import numpy as np
import pytest

from _export_models import run_batch
from dc_keras import codec, export, runtime
from test_runtime_compressed import _sparse_fc_api
from test_runtime_compressed_lookup import _as_embedding_lookup
from test_runtime_review_s55 import rss_growth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, DIM = 3000, 24


def _table(rows=ROWS, cols=DIM, density=0.1, seed=0, tfmot=False):
    """A float32 table of unclustered values (thousands of distinct ones), ``density`` of it kept;
    specials: -0.0, a quiet and a signalling NaN with payloads, +-inf, a subnormal. ``tfmot``: the
    pruned elements as tfmot's mask product leaves them (-0.0 where the weight was negative)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    keep = rng.random((rows, cols)) < density
    t = (w * keep).astype(np.float32) if tfmot else np.where(keep, w, np.float32(0)).astype(np.float32)
    bits = t.view(np.uint32)
    bits[1, :3] = [0x80000000, 0x7FC00123, 0x7F800001]  # -0.0, quiet NaN, signalling NaN (payloads)
    bits[2, :3] = [0x7F800000, 0xFF800000, 0x00000003]  # +inf, -inf, a subnormal
    bits[5] = 0  # an empty row
    return t


@functools.lru_cache(maxsize=None)
def _model(density=0.1, tfmot=False, lookup=False):
    """(plain, packed, table): a Keras Embedding holding _table, exported (GATHER), or with its GATHER
    rewritten as EMBEDDING_LOOKUP (``lookup``; 1-D ids)."""
    import keras

    model = keras.Sequential([keras.Input(() if lookup else (7,), dtype="int32"), keras.layers.Embedding(ROWS, DIM)])
    table = _table(density=density, tfmot=tfmot)
    model.layers[0].embeddings.assign(table)
    plain = export.to_tflite(model, pack=False)
    if lookup:
        plain = _as_embedding_lookup(plain)
    return plain, export.pack(plain), table


def _ids(shape, seed=0):
    ids = np.random.default_rng(seed).integers(0, ROWS, shape).astype(np.int32)
    ids.flat[:3] = [1, 2, 5]  # the specials' rows and the empty one
    return ids


def _lite(content):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content)


@pytest.mark.parametrize("lookup,tfmot", [(False, False), (True, False), (False, True)])
def test_an_unclustered_table_runs_on_the_value_form_bit_exact(lookup, tfmot):
    """GATHER (Keras Embedding) and EMBEDDING_LOOKUP on a 3,000 x 24 table of ~7,000 distinct values at
    10 %: the report says compressed, form "values", the kept elements (every bit pattern but +0.0:
    tfmot's -0.0s too) and the form's bytes (6 per kept element + 4 per row + the struct); outputs
    are bit for bit those of weights="decoded" and of the unpacked file (NaN payloads, -0.0, inf)."""
    plain, packed, table = _model(tfmot=tfmot, lookup=lookup)
    bits = table.view(np.uint32)
    assert len(np.unique(bits[bits != 0])) > 255
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    (row,) = it.compressed_report()
    kept = int((bits != 0).sum())
    op = "EMBEDDING_LOOKUP" if lookup else "GATHER"
    assert (row["route"], row["op"], row["form"], row["shape"], row["nonzeros"]) == (
        "compressed", op, "values", (ROWS, DIM), kept), row
    struct = row["bytes"] - 6 * kept - 4 * (ROWS + 1)
    assert 0 < struct < 4096, row  # the form's arrays exactly, plus its fixed struct
    assert row["bytes"] < table.nbytes * (0.9 if tfmot else 0.7), row
    decoded = runtime.Interpreter(model_content=packed, weights="decoded")
    for n, shape in enumerate(((9,), (4,)) if lookup else ((1, 7), (6, 7))):
        ids = _ids(shape, seed=n)
        got, want, dec = run_batch(it, ids), run_batch(_lite(plain), ids), run_batch(decoded, ids)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(got.view(np.uint32), dec.view(np.uint32))
    got = run_batch(it, _ids((3,) if lookup else (1, 7))).reshape(-1, DIM).view(np.uint32)
    # -0.0 and the NaN payloads as stored (the converter writes +-inf as +-FLT_MAX, on every route),
    # the empty row +0.0
    assert list(got[0, :3]) == [0x80000000, 0x7FC00123, 0x7F800001] and not got[2].any(), got[:3, :3]
    with pytest.raises(RuntimeError, match=rf"{op}.*index out of bounds"):
        run_batch(it, np.full((2,) if lookup else (1, 7), ROWS, np.int32))


def test_a_table_denser_than_60_percent_stays_decoded_with_the_reason():
    """At 70 % kept the value form (6 B per kept element) would take ~1.05x of the dense table: it stays
    decoded, the report saying the density, the 60 % limit and why; outputs still bit-exact."""
    plain, packed, table = _model(density=0.7)
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    (row,) = it.compressed_report()
    assert row["route"] == "dense" and row["op"] == "GATHER", row
    pct = 100 * np.count_nonzero(table.view(np.uint32)) / table.size
    assert row["reason"] == (f"density {pct:.1f} % > 60 % (the limit of unclustered float32 lookup tables, on "
                             "the value form: 6 bytes per kept element); decoded"), row
    ids = _ids((2, 7))
    np.testing.assert_array_equal(run_batch(it, ids).view(np.uint32), run_batch(_lite(plain), ids).view(np.uint32))


def _table_build(lib, SparseFc, packed, direct, max_nnz=2**64 - 1):
    lib.dc_sparse_table_build_max.argtypes = [C.c_char_p, C.c_size_t, C.c_uint64, C.POINTER(SparseFc),
                                              C.POINTER(C.c_void_p), C.POINTER(C.c_int), C.c_char_p, C.c_size_t]
    lib.dc_sparse_fc_set_direct.argtypes = [C.c_int]
    m, ds, why, dense = SparseFc(), C.c_int(0), C.create_string_buffer(256), C.c_void_p(0)
    was = lib.dc_sparse_fc_set_direct(int(direct))
    try:
        st = lib.dc_sparse_table_build_max(packed, len(packed), max_nnz, C.byref(m), C.byref(dense), C.byref(ds),
                                           why, 256)
    finally:
        lib.dc_sparse_fc_set_direct(was)
    return st, m, dense


def test_the_table_value_form_from_the_entries_equals_the_dense_copys():
    """The exported table's §18 bytes built straight from the entries (from_dense 0) and through the
    dense copy (dc_sparse_fc_set_direct(0)): the same row_ptr, col and value bits, which are the table's
    elements but +0.0 row by row; below its count the value form is refused (5, TOO_DENSE) and the
    decoded table handed over, equal to the table."""
    lib, SparseFc = _sparse_fc_api()
    table = _table(tfmot=True)
    packed = codec.encode(table, layout="sparse_planes")
    forms = []
    for direct in (True, False):
        st, m, _ = _table_build(lib, SparseFc, packed, direct)
        assert st == 0 and m.table == 1 and m.from_dense == (0 if direct else 1) and m.value and not m.code
        n = m.nnz
        forms.append((np.ctypeslib.as_array(C.cast(m.row_ptr, C.POINTER(C.c_uint32)), (ROWS + 1,)).copy(),
                      np.ctypeslib.as_array(C.cast(m.col, C.POINTER(C.c_uint16)), (n,)).copy(),
                      np.ctypeslib.as_array(C.cast(m.value, C.POINTER(C.c_uint32)), (n,)).copy()))
        lib.dc_sparse_fc_free(C.byref(m))
    bits = table.view(np.uint32)
    keep = bits != 0
    for a, b in zip(*forms):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(forms[0][0], np.concatenate([[0], np.cumsum(keep.sum(axis=1))]))
    np.testing.assert_array_equal(forms[0][1], np.nonzero(keep)[1])
    np.testing.assert_array_equal(forms[0][2], bits[keep])
    st, m, dense = _table_build(lib, SparseFc, packed, True, int(keep.sum()) - 1)
    try:
        assert st == 5 and m.nnz == keep.sum() and not m.row_ptr and dense.value
        got = np.ctypeslib.as_array(C.cast(dense, C.POINTER(C.c_uint32)), (table.size,)).copy()
        np.testing.assert_array_equal(got, bits.ravel())
    finally:
        libc = C.CDLL(None)
        libc.free.argtypes = [C.c_void_p]
        libc.free(dense)


@pytest.mark.long
def test_an_unclustered_tables_memory_is_its_value_form_not_the_dense_table(tmp_path):
    """30,000 x 128 at 10 % kept (fresh processes, anonymous memory, the model's bytes read before:
    test_runtime_review_s55's embedding test): compressed grows by the value form (6 B per kept element
    + 4 per row, 2.4 MB), under a fifth of the decoded route's growth (the dense table, 15.4 MB)."""
    import keras

    model = keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(30_000, 128)])
    table = _table(30_000, 128)
    model.layers[0].embeddings.assign(table)
    big = export.pack(export.to_tflite(model, pack=False))
    grew = rss_growth(tmp_path, big, _model()[1], width=7)
    kept = int(np.count_nonzero(table.view(np.uint32)))
    assert grew["decoded"] > 0.9 * table.nbytes, grew
    assert grew["compressed"] < 6 * kept + 4 * table.shape[0] + 2**20, (grew, kept)  # + page slack
    assert grew["compressed"] < grew["decoded"] / 5, grew


def test_the_docs_quote_the_tables_value_form_limit():
    """DC_TABLE_VALUES_MAX_DENSITY (huffdecode_op.c) is the limit docs/android.md, docs/runtime.md and the
    nothing-compressed warning quote; android.md's reason sentence is the delegate's, word for word."""
    src = open(os.path.join(ROOT, "tflite_kernels", "src", "huffdecode_op.c"), encoding="utf-8").read()
    (limit,) = re.findall(r"#define DC_TABLE_VALUES_MAX_DENSITY (\d+)", src)

    def read(*path):
        return " ".join(open(os.path.join(ROOT, *path), encoding="utf-8").read().split())

    android, rt = read("docs", "android.md"), read("docs", "runtime.md")
    assert f"It runs up to {limit} % kept elements" in android
    assert f"> {limit} % (the limit of unclustered float32 lookup tables, on the value form: 6 bytes per kept " \
           "element); decoded" in android
    assert f"up to {limit} % kept elements; above, decoded" in rt
    assert f"unclustered tables up to {limit} % kept" in read("dc_keras", "runtime", "__init__.py")
    assert "tables have no value form" not in android + rt
