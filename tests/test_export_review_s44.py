"""Export, CLI and file-IO review (session 44): defects found by reading dc_keras/codec, dc_keras/export,
dc_keras/cli.py and dc_keras/_fileio.py, each test failing on the code before its fix."""
import numpy as np
import pytest

from dc_keras import codec

from test_codec_spec import check_against_reference


# ----------------------------------------------------------------------------------------------
# 1. A tensor over 16 MiB whose entries would all be zero-bit (FORMAT.md §9)
# ----------------------------------------------------------------------------------------------
def _every_4096th(n, value):
    a = np.zeros(n, np.int8)
    a[4095::4096] = value
    return a


@pytest.mark.parametrize("array", [np.zeros(2**24 + 1, np.int8), np.full(2**24 + 1, 3, np.int8),
                                   np.zeros(2**22 + 1, np.float32), _every_4096th(2**24 + 4096, 5)],
                         ids=["int8_zeros", "int8_threes", "float32_zeros_16MiB+4", "int8_entries_all_alike"])
@pytest.mark.parametrize("version", [None, 1])
def test_over_16_mib_all_zero_bit_tensor_packs_to_one_bit_per_entry(array, version):
    """§9 refuses a tensor over 16 MiB whose codes are all zero-bit, so the encoder gave such a
    constant a 1-bit dense code: one bit per element, an all-zero int8 tensor of 2^24 + 1 elements
    2,097,191 B against 38 B at 2^24 (and a sparse tensor whose entries are all alike the same).
    Now §6 with an index code of two 1-bit symbols (the second unused; a spare codebook entry for a
    constant) and G = 4096: one bit per entry, N / 4096 bits. Layout 1 exists in every version, so
    every decoder reads it; the C decoder and codec.info (which keep the 16 MiB rule) accept it and
    decode it bit-exact."""
    packed = codec.encode(array, version=version)
    info = codec.info(packed)  # the Python parser's §9 checks
    assert info["layout"] == "sparse" and info["gap_alphabet"] == 4096
    assert info["index_code"]["max_length"] == 1 and info["gap_code"]["max_length"] == 0
    assert info["entries"] == array.size // 4096
    assert len(packed) < info["entries"] // 8 + 64, len(packed)  # dense: array.size // 8 + 38
    assert codec.decode(packed).tobytes() == array.tobytes()  # the C decoder, bit-exact
    if version is None and array.dtype == np.int8 and not array.any():
        assert len(packed) == 561  # docs/FORMAT.md §9's figure


def test_over_16_mib_constant_reads_in_the_spec_reader():
    """The same through tests/test_codec_spec.py's reader written from FORMAT.md alone (bit by
    bit; the smallest tensor over 16 MiB, 8-byte elements, keeps it to ~2 M elements)."""
    a = np.full(2**21 + 1, -7, np.int64)
    packed = codec.encode(a)
    assert codec.info(packed)["layout"] == "sparse" and len(packed) < 200
    check_against_reference(a, packed)


# ----------------------------------------------------------------------------------------------
# 2. inspect's "packable to" counted equal data held in two buffers twice; pack stores it once
# ----------------------------------------------------------------------------------------------
def test_inspect_counts_equal_data_in_two_buffers_once_as_pack_stores_it():
    """Two constants of the same type and shape whose data is equal but in two buffers: pack's
    ``_add_packed`` shares the packed buffer by content, so the packed file holds the packed bytes
    once; inspect of the unpacked file said "packable to" twice that (330 B against the 165 B pack
    writes, 2 x 165)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import export
    from test_export_review_s43 import S, _model

    w = np.where(np.arange(4096) % 5 == 0, 0.5, 0.0).astype(np.float32).tobytes()
    other = np.where(np.arange(4096) % 3 == 0, -0.25, 0.0).astype(np.float32).tobytes()
    data = _model([(S.TensorType.FLOAT32, [64, 64], w), (S.TensorType.FLOAT32, [64, 64], w),
                   (S.TensorType.FLOAT32, [64, 64], other)])
    m = fb.read_model(data)
    bufs = [t.buffer for t in m.subgraphs[0].tensors[1:4]]
    assert len(set(bufs)) == 3  # three buffers, two of them with equal bytes
    report = export.inspect(data)
    assert [r.status for r in report.rows] == ["packable"] * 3
    packed = export.pack(data)
    pm = fb.read_model(packed)
    hd = {k for k, c in enumerate(pm.operatorCodes) if fb.is_huffdecode_code(c)}
    written = {pm.subgraphs[0].tensors[op.inputs[0]].buffer for op in pm.subgraphs[0].operators
               if op.opcodeIndex in hd}
    assert len(written) == 2  # pack wrote the equal data's packed bytes once
    written_bytes = sum(fb.buffer_size(pm, b) for b in written)
    assert report.packed_total == written_bytes == export.inspect(packed).packed_total
    assert report.raw_total == export.inspect(packed).raw_total == 3 * 16384
    assert f"packable to {written_bytes} B" in str(report)
