"""``dc_keras.export.inspect`` on big models (issue 18): a 25 M-parameter float model took 14.5 s
(numpy 2's hashing ``np.unique`` on many distinct float32 values); counting by sort keeps it
within the time ``pack`` needs. A progress bar shows on a terminal for big models only."""
import io

import numpy as np
import pytest

from dc_keras import export
from dc_keras.export import _inspect, _pack


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_distinct_count_matches_numpy_unique(dtype):
    rng = np.random.default_rng(0)
    for high in (1, 2, 7, 300, 2**16):
        words = rng.integers(0, min(high, np.iinfo(dtype).max), size=5000, endpoint=True).astype(dtype)
        assert _inspect._distinct(words) == len(np.unique(words)), high
    assert _inspect._distinct(np.zeros(0, dtype)) == 0


def test_distinct_counts_bit_patterns_of_floats():
    """-0.0 and 0.0, and NaNs with different payloads, are different stored values."""
    a = np.array([0.0, -0.0, 1.0, 1.0, np.nan], np.float32)
    a = np.concatenate([a, np.array([0x7FC00001], np.uint32).view(np.float32)])
    density, distinct = _inspect._stats(a)
    assert distinct == 5 and density == pytest.approx(4 / 6)


def _big_float_model(n):
    """A one-FULLY_CONNECTED .tflite with an n x n random float32 weight, written with the
    schema's object API (no TensorFlow needed)."""
    from dc_keras import _flatbuffer as fb

    S = fb.schema
    w = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)

    def tensor(name, shape, buffer):
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name, np.array(shape, np.int32), S.TensorType.FLOAT32, buffer
        return t

    code, op, sg, model = S.OperatorCodeT(), S.OperatorT(), S.SubGraphT(), S.ModelT()
    code.builtinCode = code.deprecatedBuiltinCode = S.BuiltinOperator.FULLY_CONNECTED
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1], np.int32), np.array([2], np.int32)
    sg.tensors = [tensor("x", [1, n], 0), tensor("dense/kernel", [n, n], 1), tensor("y", [1, n], 0)]
    sg.inputs, sg.outputs, sg.operators = np.array([0], np.int32), np.array([2], np.int32), [op]
    weights = S.BufferT()
    weights.data = np.frombuffer(w.tobytes(), np.uint8)
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [sg]
    model.buffers = [S.BufferT(), weights]
    return fb.write_model(model), w


def test_counting_distinct_floats_of_a_big_tensor():
    """The per-tensor statistics of 4 M distinct-ish float32 weights (sort-based count; timing is a
    benchmark matter, not a unit test's: these machines are noisy)."""
    w = np.random.default_rng(0).normal(size=4_000_000).astype(np.float32)
    density, distinct = _inspect._stats(w)
    assert density == 1.0 and 0.95 * w.size < distinct <= w.size


def test_inspect_reports_what_pack_writes_on_a_big_float_model():
    """inspect's packed size for the big unclustered tensor is what pack actually writes."""
    data, w = _big_float_model(1000)
    packed = export.pack(data)
    report = export.inspect(data)
    (row,) = [r for r in report.rows if r.raw_bytes == w.nbytes]
    assert 0.95 * w.size < row.distinct <= w.size  # random normal float32: nearly all distinct
    assert row.packed_bytes is not None and row.packed_bytes < w.nbytes and len(packed) < len(data)


def test_progress_bar_for_big_models_only(monkeypatch):
    """With a terminal on stderr the bar is drawn (and removed) for models above the threshold."""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    data, _ = _big_float_model(300)
    for threshold, shown in ((1 << 40, False), (1024, True)):
        err = Tty()
        monkeypatch.setattr("sys.stderr", err)
        monkeypatch.setattr(_pack, "PROGRESS_MIN_BYTES", threshold)  # inspect draws pack's bar
        export.inspect(data)
        assert ("inspect" in err.getvalue()) == shown, err.getvalue()
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: no bar even when big
    export.inspect(data)
    assert "inspect" not in __import__("sys").stderr.getvalue()


def test_layout_name_read_from_the_header_byte_is_codec_infos():
    """inspect names a packable row's layout from the header byte encode wrote (codec.info parsed
    the whole header: ~10 % of inspect on a model of 4,000 small kernels): the same name for
    every layout and format version."""
    from dc_keras import codec
    from dc_keras.codec._format import LAYOUT_CODES

    w = np.zeros((32, 48), np.float32)
    w[::3, ::5] = np.arange(16 * 10, dtype=np.float32)[: w[::3, ::5].size].reshape(w[::3, ::5].shape) % 7 - 3
    seen = set()
    for layout in sorted(LAYOUT_CODES):
        for t in (w, (w * 1000).astype(np.int32) + 7):  # int32 too: §17's int_planes codes integers only
            for version in (None, 1, 3, 4):
                try:
                    data = codec.encode(t, layout=layout, version=version)
                except ValueError:
                    continue
                assert _inspect._layout_name(data) == codec.info(data)["layout"] == layout
                seen.add(layout)
    assert seen == set(LAYOUT_CODES)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 22])
def test_distinct_count_in_chunks_and_in_place(monkeypatch, chunk):
    """The changes of the sorted words are counted a chunk at a time (chunk boundaries: every pair
    compared once), and a decoded tensor is sorted in place; both give numpy's count."""
    monkeypatch.setattr(_inspect, "_CHANGES_CHUNK", chunk)
    rng = np.random.default_rng(1)
    for size in (1, 2, 7, 8, 15, 1000):
        words = rng.integers(0, 5, size=size).astype(np.uint32)
        want = len(np.unique(words))
        assert _inspect._distinct(words) == want and _inspect._distinct(words.copy(), in_place=True) == want, size


def test_inspect_of_a_packed_tensor_takes_about_one_decoded_copy_of_memory():
    """inspect decodes each packed tensor to report its density and distinct values. It took ~2.25x
    the decoded size (the decoded array, a sorted copy, a bool per element): `dc-keras inspect` of
    a packed 8192 x 8192 float32 kernel (256 MiB decoded) peaked at 687 MB RSS, now 364 MB (and
    3.1 s -> 1.5 s). The decoded array is sorted in place and the changes counted in chunks."""
    import tracemalloc

    rng = np.random.default_rng(0)
    w = rng.choice(np.linspace(-1, 1, 16).astype(np.float32), size=(4096, 2048))
    w[rng.random(w.shape) < 0.5] = 0
    packed = export.pack(_with_kernel(w))
    tracemalloc.start()
    try:
        report = export.inspect(packed)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (row,) = [r for r in report.rows if r.raw_bytes == w.nbytes]
    assert row.status == "packed" and row.density == np.count_nonzero(w) / w.size
    assert row.distinct == len(np.unique(w.view(np.uint32)))
    assert peak < 1.5 * w.nbytes, (peak, w.nbytes)  # numpy's arrays are traced; ~2.25x before


def _with_kernel(w):
    """``_big_float_model``'s file with ``w`` (any 2-D float32 array) as its kernel."""
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(_big_float_model(1)[0])
    sg = model.subgraphs[0]
    sg.tensors[0].shape = np.array([1, w.shape[1]], np.int32)
    sg.tensors[1].shape = np.array(w.shape, np.int32)
    sg.tensors[2].shape = np.array([1, w.shape[0]], np.int32)
    model.buffers[1].data = np.frombuffer(w.tobytes(), np.uint8)
    return fb.write_model(model)
