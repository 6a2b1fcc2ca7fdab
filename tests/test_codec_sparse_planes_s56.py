"""The encoder's side of layout 7, sparse float planes (docs/FORMAT.md §18, format version 5):
which version and layout it writes, the options that keep it out, its errors, the budget, and
tfmot's signed zeros. The bytes are read back by the independent spec reader of
tests/test_codec_spec.py (and, where cheap, by the C decoder)."""
import numpy as np
import pytest

from dc_keras import codec
from test_codec_spec import reference_bytes


def pruned(shape, keep, seed=0, dtype=np.float32):
    """N(0, 0.05) weights with a ``keep`` share left after magnitude pruning: every kept value distinct."""
    w = np.random.default_rng(seed).normal(0, 0.05, shape).astype(np.float32)
    w[np.abs(w) < np.quantile(np.abs(w), 1 - keep)] = 0
    return w.astype(dtype)


def spec_reads(w, data):
    raw, dims = reference_bytes(data)
    assert tuple(dims) == w.shape and raw == np.ascontiguousarray(w).tobytes()


def test_version_none_writes_version5_only_for_the_tensors_layout7_makes_smaller():
    """§10: a pruned unclustered kernel takes layout 7 (version 5), smaller than every older
    layout; the same kernel clustered (16 values) stays §6 at version 2, byte for byte what
    version=4 writes for it but the version byte and its CRC; an unpruned one stays §12."""
    w = pruned((120, 80), 0.2)
    v5, v4 = codec.encode(w), codec.encode(w, version=4)
    assert (v5[4], codec.info(v5)["layout"]) == (5, "sparse_planes")
    assert v4[4] == 4 and codec.info(v4)["layout"] in ("sparse", "float_planes")  # 1,920 distinct: a codebook
    assert len(v5) < 0.6 * len(v4)
    spec_reads(w, v5)
    clustered = np.where(w == 0, 0, np.round(w * 40) / 40).astype(np.float32)
    c = codec.encode(clustered)
    assert (c[4], codec.info(c)["layout"]) == (2, "sparse")
    assert c[8:] != b"" and len(c) == len(codec.encode(clustered, version=4))
    dense = np.random.default_rng(1).normal(0, 1, (64, 64)).astype(np.float32)
    assert codec.info(codec.encode(dense))["layout"] == "float_planes" and codec.encode(dense)[4] == 2


def test_version5_writes_version5_for_every_tensor_and_lower_versions_never_layout7():
    w = pruned((60, 50), 0.2)
    assert codec.encode(np.arange(6, dtype=np.int8), version=5)[4] == 5
    for v in (2, 3, 4):
        data = codec.encode(w, version=v)
        assert data[4] == v and codec.info(data)["layout"] != "sparse_planes"
        spec_reads(w, data)
    forced = codec.encode(w, version=5, layout="sparse_planes")
    assert forced == codec.encode(w) and forced[4] == 5


def test_layouts_option_keeps_layout7_out():
    """``layouts=`` for a decoder built with DC_CODEC_NO_SPARSE_PLANES: the next smallest."""
    w = pruned((60, 50), 0.2)
    data = codec.encode(w, layouts=("dense", "sparse", "float_planes"))
    assert data == codec.encode(w, version=2) and codec.info(data)["layout"] != "sparse_planes"


def test_forcing_layout7_where_it_cannot_go_names_the_fix():
    with pytest.raises(ValueError, match=r"layout 'sparse_planes' holds float32, float16 and bfloat16 tensors of "
                                         r"format version >= 5 \(FORMAT.md §18\), not version 2 int8; use layout=None"):
        codec.encode(np.zeros(10, np.int8), layout="sparse_planes")
    with pytest.raises(ValueError, match=r"not version 4 float32; use version=5 or None"):
        codec.encode(np.zeros(10, np.float32), layout="sparse_planes", version=4)
    with pytest.raises(ValueError, match="version must be None"):
        codec.encode(np.zeros(10, np.float32), version=6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_floats(dtype):
    import ml_dtypes

    w = pruned((40, 30), 0.15, seed=3, dtype=getattr(ml_dtypes, dtype) if dtype == "bfloat16" else np.float16)
    data = codec.encode(w)
    assert codec.info(data)["layout"] == "sparse_planes" and data[4] == 5
    info = codec.info(data)
    assert info["plane_bytes"] == info["stored_entries"]  # one rest byte per stored 16-bit element
    spec_reads(w, data)


def test_tfmot_signed_zeros_cost_about_a_bit_each_not_a_stored_value():
    """tfmot's strip_pruning leaves -0.0 for the pruned negatives (docs/packing.md): symbol 257
    codes them without a rest, so the bit-exact file is about 1 bit per pruned weight (the sign's
    entropy) larger than the one with every zero +0.0: measured 1.18 bits here (3,974 B for 27,000
    zeros), where a stored -0.0 would cost its 3 raw bytes and its symbol."""
    w = pruned((200, 150), 0.1, seed=4)
    signed = w.copy()
    neg = (w == 0) & (np.random.default_rng(5).random(w.shape) < 0.5)
    signed[neg] = -0.0
    a, b = codec.encode(w), codec.encode(signed)
    info = codec.info(b)
    assert info["layout"] == "sparse_planes" and info["stored_entries"] == int(np.count_nonzero(w))
    assert int(np.count_nonzero(w == 0)) / 8 < len(b) - len(a) < int(np.count_nonzero(w == 0)) / 8 * 1.25
    spec_reads(signed, b)
    assert codec.decode(b).tobytes() == signed.tobytes()  # the C decoder too


def test_max_bytes_budget():
    """A budget below layout 7's floor (its rest plane alone) raises MaxBytesError naming a lower
    bound; a budget it fits writes the same bytes as no budget."""
    w = pruned((100, 100), 0.3, seed=6)
    full = codec.encode(w)
    assert codec.encode(w, max_bytes=len(full)) == full
    with pytest.raises(codec.MaxBytesError) as e:
        codec.encode(w, max_bytes=int(np.count_nonzero(w)) * 3 - 1)
    assert e.value.packed_bytes >= int(np.count_nonzero(w)) * 3 and not e.value.exact


def test_a_large_all_background_tensor_is_not_all_zero_bit():
    """§9: over 16 MiB, codes that are all zero-bit are refused; forced layout 7 on a constant
    tensor of 4.4 M float32 (17.6 MB) gets a 1-bit symbol code, as §6 does, and parses."""
    w = np.zeros((2100, 2100), np.float32)
    data = codec.encode(w, layout="sparse_planes")
    info = codec.info(data)
    assert info["index_code"]["max_length"] == 1 and info["stored_entries"] == 0 and len(data) < 1000


def test_a_code_length_limit_too_small_names_each_layout_and_the_limit_it_needs():
    """max_code_length below what the exponent symbols need: each planes layout says the limit it
    needs (it was "no layout can hold this tensor" when forced, and a bare "12 symbols cannot be
    coded with code lengths <= 3" from the float planes' code builder otherwise); each reason once."""
    w = np.random.default_rng(0).normal(0, 1, 1000).astype(np.float32)
    w[::2] = 0
    with pytest.raises(ValueError, match=r"^layout 'sparse_planes' needs max_code_length >= 4 \(12 symbols\)$"):
        codec.encode(w, layout="sparse_planes", max_code_length=3)
    with pytest.raises(ValueError) as e:
        codec.encode(w, max_code_length=3)
    reasons = str(e.value).split("; ")
    assert "layout 'float_planes' needs max_code_length >= 4 (12 exponent symbols)" in reasons
    assert "layout 'sparse_planes' needs max_code_length >= 4 (12 symbols)" in reasons
    assert len(reasons) == len(set(reasons))
    assert codec.info(codec.encode(w, max_code_length=4))["layout"] == "sparse_planes"
