"""pack(positive_zeros=True) on lookup tables (session 57): a tfmot-pruned Embedding's table holds
-0.0 for about half its pruned elements (tfmot's mask product), which a lookup gives back as stored,
so bit-exact packing keeps them (about one bit each on disk) and weights="compressed" keeps each as
an element of the table's value form (6 B). The tables of GATHER and EMBEDDING_LOOKUP are now among
the weights positive_zeros makes +0.0 (before: only the product operators' weights, so the option
left tables alone); outputs then differ only in the sign of a looked-up zero. pack says so about a
table with both zeros, inspect counts them on the packed file."""
import warnings

import numpy as np
import pytest

from _export_models import run_batch
from dc_keras import export, runtime
from test_sparse_table_values_review_s57 import DIM, ROWS, _ids, _lite, _model


@pytest.mark.parametrize("lookup", [False, True])
def test_positive_zeros_makes_a_tfmot_tables_zeros_positive(lookup):
    plain, kept_packed, table = _model(tfmot=True, lookup=lookup)
    bits = table.view(np.uint32)
    negative = int((bits == 0x80000000).sum())
    nonzero = int(((bits << 1) != 0).sum())
    assert negative > 0.3 * (table.size - nonzero), negative  # tfmot's -0.0s: about half the pruned ones
    with pytest.warns(UserWarning, match=rf"\b{negative} -0\.0 entries.*positive_zeros=True"):
        export.pack(plain)  # pack names the kept -0.0s and the option
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        positive = export.pack(plain, positive_zeros=True)
    assert len(positive) < 0.85 * len(kept_packed), (len(positive), len(kept_packed))
    assert export.inspect(kept_packed).packed_negative_zeros == (1, negative)
    assert export.inspect(positive).packed_negative_zeros == (0, 0)
    compressed = runtime.Interpreter(model_content=positive, weights="compressed")
    (row,) = compressed.compressed_report()
    assert (row["route"], row["form"], row["nonzeros"]) == ("compressed", "values", nonzero), row
    assert row["bytes"] < 0.25 * table.nbytes, row
    for n, shape in enumerate(((9,), (4,)) if lookup else ((1, 7), (6, 7))):
        ids = _ids(shape, seed=n)
        want = run_batch(_lite(plain), ids).view(np.uint32)
        want = np.where(want == 0x80000000, np.uint32(0), want)  # only a zero's sign changes
        for it in (compressed, runtime.Interpreter(model_content=positive)):
            got = run_batch(it, ids)
            assert got.shape[-1] == DIM
            np.testing.assert_array_equal(got.view(np.uint32), want)
    assert ROWS == table.shape[0]
