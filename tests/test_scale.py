"""Scale: the packer and writer on big and wide models (memory, per-tensor cost, > 2 GiB files).

Models are synthesised through the TFLite schema module (a chain of FULLY_CONNECTED ops whose
weights are pruned to 10 % and shared among 16 values), so a 32 MB model costs no converter run.
Figures (times, peak RSS on 100 MB .. 2.2 GB models) are in benchmarks/bench_scale.py's output,
not asserted here: these tests check bounds a whole-model copy too many breaks.
"""
import os
import tracemalloc

import numpy as np
import pytest

from _benchmarks import load as load_bench
from dc_keras import _flatbuffer as fb
from dc_keras import export
from dc_keras._flatbuffer import schema


def fc_chain(layers, width, buffers="auto"):
    """A ``.tflite`` of ``layers`` FULLY_CONNECTED float32 ops ``width`` x ``width`` (pruned,
    shared): benchmarks/bench_scale.py's model."""
    return load_bench("bench_scale").build(layers, width, buffers=buffers)


def _peak(fn, *args, **kwargs):
    """(result, peak bytes Python and numpy allocated while ``fn`` ran)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn(*args, **kwargs)
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("buffers", ["inline", "external"])
def test_write_model_holds_at_most_one_copy_of_the_data_besides_the_model(buffers):
    """``write_model`` of a model holding D bytes of weights allocates the output (D) and, inline,
    the flatbuffer builder's buffer (D) -- not a copy of every buffer first, nor a builder that
    doubled as it grew, nor a second copy of the output: unpack of a 2.2 GB model held ~4x."""
    data = fc_chain(4, 1448, buffers=buffers)  # 4 x 8 MiB of kernels
    model = fb.read_model(data)
    out, peak = _peak(fb.write_model, model, buffers)
    again = fb.read_model(out)
    assert [fb.buffer_bytes(again, i) for i in range(len(again.buffers))] == [
        fb.buffer_bytes(model, i) for i in range(len(model.buffers))]
    limit = (2.0 if buffers == "inline" else 1.0) * len(data) + (4 << 20)
    assert peak <= limit, f"write_model({buffers!r}) allocated {peak / len(data):.2f}x the model's size"


@pytest.mark.parametrize("dtype,limit", [("int8", 7.0), ("float32", 4.0)])
def test_codec_encode_works_in_memory_a_few_times_the_tensor(dtype, limit):
    """``codec.encode`` (what pack runs per tensor) of a pruned, shared tensor allocates a few
    times its size: element indices as uint16, sparse positions as int32 and the bit packing in
    chunks. With whole-tensor int64 work arrays it took 16x (int8) / 9x (float32), so a 1 GB
    int8 embedding needed ~16 GB to pack."""
    from dc_keras import codec

    rng = np.random.default_rng(0)
    n = 1 << 22
    centroids = (rng.integers(-127, 128, 16) if dtype == "int8" else rng.standard_normal(16)).astype(dtype)
    w = (centroids[rng.integers(0, 16, n)] * (rng.random(n) < 0.1)).astype(dtype).reshape(2048, -1)
    data, peak = _peak(codec.encode, w)
    assert np.array_equal(codec.decode(data), w)
    assert peak <= limit * w.nbytes, f"encode allocated {peak / w.nbytes:.2f}x the {dtype} tensor's size"


def test_pack_and_inspect_read_buffers_without_copying_them():
    """pack and inspect read each buffer through a view: they copied it for every use (its size,
    the array to encode, the verification), 5x the model's size allocated on a one-tensor model,
    ~30 % of pack's time on big models. Now: encoding (~3x the tensor) is the peak."""
    import warnings

    data = fc_chain(1, 2048)  # one 16 MiB kernel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed, peak = _peak(export.pack, data)
        _, peak_inspect = _peak(export.inspect, data)
    assert len(packed) < len(data) // 5
    assert peak <= 3.5 * len(data), f"pack allocated {peak / len(data):.2f}x the model's size"
    assert peak_inspect <= 3.5 * len(data), f"inspect allocated {peak_inspect / len(data):.2f}x the model's size"
    assert _kernel(export.unpack(packed)) == _kernel(data)


def _kernel(data):
    m = fb.read_model(data)
    t = next(t for t in m.subgraphs[0].tensors if fb.tensor_name(t) == "s0/fc0/kernel")
    return fb.buffer_bytes(m, t.buffer)


def _packed_zeros_model(tensors, elements):
    """A packed ``.tflite`` (synthesised, no unpacked form in memory) whose ``tensors`` HuffDecode
    ops each decode ``elements`` float32 zeros, from one shared packed buffer."""
    from dc_keras import codec

    packed = np.frombuffer(codec.encode(np.zeros(elements, np.float32)), np.uint8)
    m = schema.ModelT()
    m.version, m.subgraphs = fb.SCHEMA_VERSION, [schema.SubGraphT()]
    m.buffers = [schema.BufferT(), fb.PackedBufferT()]
    m.buffers[1].data = packed
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.CUSTOM_CODE
    code.customCode, code.version = fb.HUFFDECODE.decode(), 1
    m.operatorCodes = [code]
    sg = m.subgraphs[0]
    sg.tensors, sg.operators, sg.inputs = [], [], []
    src = schema.TensorT()
    src.shape, src.type, src.buffer = [len(packed)], schema.TensorType.UINT8, 1
    sg.tensors.append(src)
    for i in range(tensors):
        m.buffers.append(schema.BufferT())
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = f"w{i}", [elements], schema.TensorType.FLOAT32, len(m.buffers) - 1
        sg.tensors.append(t)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [0], [len(sg.tensors) - 1]
        sg.operators.append(op)
    sg.outputs = list(range(1, tensors + 1))
    return fb.write_model(m, "inline")


@pytest.mark.long  # ~15 s: encodes 1 GiB of zeros
def test_c_unpacker_refuses_a_result_over_2_gib_naming_the_fix():
    """``runtime.unpack`` (the C ``dc_unpack``, also behind ``runtime.compiled_model`` and the
    Android recipe) writes weights inside the flatbuffer, so a model whose weights pass 2 GiB
    cannot be unpacked there: it said only "would exceed 2147483647 bytes". The error now says
    what to use instead, and ``dc_keras.export.unpack`` is that: it writes them after the
    flatbuffer (checked here on the sizes its header declares, without decoding 3 GiB)."""
    from dc_keras import runtime

    packed = _packed_zeros_model(3, 1 << 28)  # 3 x 1 GiB decoded, 32 MB packed
    with pytest.raises(ValueError, match=r"would exceed 2147483647 bytes .*2 GiB.*dc_keras\.export\.unpack"):
        runtime.unpack(packed)


def test_pack_shows_progress_on_a_terminal_for_big_models_only(monkeypatch):
    """pack of a 2.4 GB model runs for a minute or more: on a terminal it draws a bar over the
    constant bytes it has looked at (as inspect does; removed when done); small models and
    non-terminals get none. It said nothing (the CLI only an elapsed time)."""
    import io
    import sys
    import warnings

    from dc_keras.export import _pack

    class Tty(io.StringIO):
        def isatty(self):
            return True

    data = fc_chain(2, 256)
    for stream, threshold, shown in ((Tty(), 1024, True), (Tty(), 1 << 40, False), (io.StringIO(), 1024, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setattr(_pack, "PROGRESS_MIN_BYTES", threshold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export.pack(data)
        assert ("pack" in stream.getvalue() and "B/s" in stream.getvalue()) == shown, stream.getvalue()


def test_pack_strip_strings_does_not_hold_two_outputs():
    """``strip_strings=True`` serialises the model once more to report the bytes the names took:
    that first output was kept alive while the second was written (one more model-sized copy at
    the peak). Only its length is kept now. Nothing is packed here (``min_bytes`` above every
    tensor), so the output is as big as the input and writing it is the peak."""
    import warnings

    from dc_keras.export._pack import pack_with_stats

    data = fc_chain(2, 1448)  # 2 x 8 MiB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (out, stats), peak = _peak(pack_with_stats, data, min_bytes=1 << 30, strip_strings=True)
    assert stats["packed_tensors"] == 0 and stats["strings_saved"] > 0 and 0.99 * len(data) < len(out) < len(data)
    assert peak <= 2.4 * len(data), f"pack(strip_strings=True) allocated {peak / len(data):.2f}x the model's size"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_codec_encode_of_unclustered_floats_works_in_a_few_times_the_tensor(dtype):
    """An unclustered float tensor (a big .tflite nobody pruned: pack still saves ~17 % by the
    float-planes layout, FORMAT.md §12) took 6x (float32) / 12x (float16) its size to encode: the
    plane symbols were int64 and every bit operation went through uint32. Now uint8 symbols and
    the element's own width: ~4x."""
    from dc_keras import codec

    w = np.random.default_rng(0).standard_normal(1 << 22).astype(dtype)
    data, peak = _peak(codec.encode, w)
    assert codec.info(data)["layout"] == "float_planes"
    assert np.array_equal(codec.decode(data).view(np.uint8), w.view(np.uint8))
    assert peak <= 4.5 * w.nbytes, f"encode allocated {peak / w.nbytes:.2f}x the {dtype} tensor's size"


@pytest.mark.parametrize("kind", ["unclustered", "per_channel"])
def test_codec_encode_of_int8_weights_tries_its_layouts_in_bounded_memory(kind):
    """An int8 PTQ weight has > 64 distinct values, so encode also tries the grouped layouts
    (§11) on two axes, two alignments each, plus the sparse form of each: every plan was alive
    until the smallest was chosen. Their int64 per-element arrays (group ids, pair indices, table
    indices, and the sparse plans' positions, values, gaps and quotients) took 121x (unclustered)
    / 92x (16 values per channel) the tensor's size: a 1 GB int8 embedding would need ~100 GB.
    Now only the smallest plan so far keeps its uint16 indices, groups and gaps are counted a
    chunk at a time: ~11x here, most of it the chunks' fixed ~30 MB (~6x on 8192 x 8192)."""
    from dc_keras import codec

    rng = np.random.default_rng(0)
    if kind == "unclustered":
        w = np.clip(np.round(rng.standard_normal((2048, 2048)) * 30), -127, 127).astype(np.int8)
    else:
        table = rng.integers(-127, 128, (2048, 16)).astype(np.int8)
        w = np.take_along_axis(table, rng.integers(0, 16, (2048, 2048)), 1) * (rng.random((2048, 2048)) < 0.3)
        w = w.astype(np.int8)
    data, peak = _peak(codec.encode, w)
    assert np.array_equal(codec.decode(data), w)
    assert peak <= 16 * w.nbytes, f"encode allocated {peak / w.nbytes:.1f}x the int8 tensor's size"


def test_bench_scale_codec_mode_reports_encode_of_its_tensors(tmp_path):
    """``bench_scale.py --codec`` (encode's peak memory and time on big tensors of the grouped
    layouts' wide path, a child process per case) reports the encode of the tensor it names:
    its size, layout and output hash are codec.encode's of codec_tensor here; unknown cases
    and sizes are refused by name."""
    import hashlib
    import json
    import subprocess
    import sys

    from _benchmarks import BENCH
    from dc_keras import codec

    bench = load_bench("bench_scale")
    script = os.path.join(BENCH, "bench_scale.py")
    out = tmp_path / "codec.json"
    r = subprocess.run([sys.executable, script, "--codec", "i16_pc,f32_cl256", "--size", "96", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["case"] for row in rows] == ["i16_pc", "f32_cl256"]
    for row in rows:
        w = bench.codec_tensor(row["case"], 96)
        data = codec.encode(w)
        assert row["tensor_bytes"] == w.nbytes and row["packed_bytes"] == len(data)
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["layout"] == codec.info(data)["layout"]
        assert row["traced_peak_bytes"] > 0 and row["seconds"] > 0
    for bad, msg in ((["--codec", "i8_pc"], "unknown --codec case"), (["--codec", "all", "--size", "0"], "--size must be")):
        r = subprocess.run([sys.executable, script, *bad], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and msg in r.stderr, r.stderr


@pytest.mark.parametrize("case,limit", [("i16_pc", 7.0), ("i16_pcq", 9.0), ("i32_wide", 7.0), ("f32_pc", 4.5)])
def test_codec_encode_of_wide_alphabets_groups_them_in_bounded_memory(case, limit):
    """int16 with > 64 channels, int32 and float32 (and float16 with > 64 channels) take the
    grouped layouts' wide path: its per-group distinct values came from one np.unique over the
    whole tensor's int64 (group, value) keys, ~58 B per element: 29x (int16 per channel), 40x
    (int16 per-channel quantized), 22x (int32 wide range), 15x (float32 per channel) the
    tensor's size on 2048 x 2048 (bench_scale.py --codec). Now blocks of whole groups, a uint16
    rank per element, tables of alignments that cannot win not built: ~2.5-6.5x, about 20 MB
    of it the blocks' fixed temporaries. (Version 3: i16_pcq and i32_wide take §17's integer
    planes at version 4, smaller.)"""
    from dc_keras import codec

    w = load_bench("bench_scale").codec_tensor(case, 2048)
    data, peak = _peak(codec.encode, w, version=3)
    assert codec.info(data)["layout"].startswith("grouped")
    assert np.array_equal(codec.decode(data), w)
    assert peak <= limit * w.nbytes, f"encode allocated {peak / w.nbytes:.1f}x the {case} tensor's size"


@pytest.mark.parametrize("dtype", ["int16", "int32"])
def test_bench_scale_gather_models_run_and_pack_their_clustered_tables_only(dtype):
    """bench_scale.py's big_i16 / big_i32 models (GATHER on int16 / int32 constant tables, here
    96 x 96): TFLite runs them, pack packs the clustered tables and keeps the unclustered int16
    ones raw (inspect says why; the int32 ones of +-2^20 take §17's integer planes, version 4),
    and the packed model's lookups are the plain model's, bit for bit."""
    from dc_keras.runtime import Interpreter

    bench = load_bench("bench_scale")
    data = bench.build(4, 96, dtype)
    packed = export.pack(data)
    rows = {r.name: r for r in export.inspect(data).rows}
    odd = ("packable", "packed") if dtype == "int32" else ("kept", "kept")
    assert [rows[f"table{i}"].status for i in range(4)] == ["packable", odd[0], "packable", odd[0]]
    assert all(rows[f"table{i}"].reason.startswith("packs to ") for i in (1, 3)) or dtype == "int32"
    packed_rows = {r.name: r.status for r in export.inspect(packed).rows}
    assert [packed_rows[f"table{i}"] for i in range(4)] == ["packed", odd[1], "packed", odd[1]]
    if dtype == "int32":
        assert all(rows[f"table{i}"].packed_bytes < 0.7 * 96 * 96 * 4 for i in (1, 3))
    idx = np.array([0, 95, 3, 3, 50, 7, 1, 2], np.int32)
    outs = []
    for model in (data, packed):
        runner = Interpreter(model_content=model).get_signature_runner("lookup")
        outs.append(runner(indices=idx[: bench.GATHER_ROWS]))
    assert sorted(outs[0]) == [f"y{i}" for i in range(4)]
    for key, want in outs[0].items():
        assert want.dtype == np.dtype(dtype) and np.array_equal(outs[1][key], want), key
    table = fb.read_model(data)
    t = next(t for t in table.subgraphs[0].tensors if fb.tensor_name(t) == "table2")
    assert np.array_equal(outs[0]["y2"], np.frombuffer(fb.buffer_bytes(table, t.buffer), dtype).reshape(96, 96)[idx])
