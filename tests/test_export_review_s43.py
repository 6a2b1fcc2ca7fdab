"""Export-side review (session 43): bugs found by reading dc_keras/export and dc_keras/codec, each
test failing on the code before its fix. Models are built here with the TFLite schema (no
converter), so each case is exactly the structure under test."""
import warnings

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import export

S = fb.schema


def _model(consts):
    """One subgraph: a float input, the constants ``[(TensorType, shape, bytes)]`` (tensor names
    c0, c1, ...) and a float output, all read or written by one custom operator ``FOO``."""
    m = S.ModelT()
    m.version = fb.SCHEMA_VERSION
    code = S.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.CUSTOM_CODE
    code.customCode = "FOO"
    code.version = 1
    m.operatorCodes, m.buffers, sg = [code], [S.BufferT()], S.SubGraphT()
    sg.tensors = []

    def add(ty, shape, name, data=b""):
        t, b = S.TensorT(), S.BufferT()
        t.type, t.shape, t.name = ty, list(shape), name
        b.data = np.frombuffer(data, np.uint8) if data else None
        m.buffers.append(b)
        t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    x = add(S.TensorType.FLOAT32, [1], "in")
    cs = [add(ty, shape, f"c{k}", data) for k, (ty, shape, data) in enumerate(consts)]
    y = add(S.TensorType.FLOAT32, [1], "out")
    op = S.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [x, *cs], [y]
    sg.operators, sg.inputs, sg.outputs = [op], [x], [y]
    m.subgraphs = [sg]
    return fb.write_model(m, "inline")


def _constants(data):
    """{tensor name: (type, shape, buffer bytes)} of the constants of ``data``."""
    m = fb.read_model(data)
    return {fb.tensor_name(t): (int(t.type), list(t.shape), fb.buffer_bytes(m, t.buffer))
            for sg in m.subgraphs for t in sg.tensors if fb.buffer_size(m, t.buffer)}


def _int4_bytes(values, pad_high=0):
    """``values`` (0..15) two a byte, low nibble first (FORMAT.md §13); ``pad_high``: the unused
    high nibble of the last byte when their count is odd."""
    raw = bytearray((len(values) + 1) // 2)
    for k, v in enumerate(values):
        raw[k // 2] |= (int(v) & 0xF) << (4 * (k % 2))
    if len(values) % 2:
        raw[-1] |= (pad_high & 0xF) << 4
    return bytes(raw)


def _dense_8_to_4():
    """A Keras model, 8 inputs to ``Dense(4)``, and 16 float32 samples for it (skips without Keras
    or TensorFlow, which ``to_tflite`` converts with)."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    return model, np.random.default_rng(0).normal(size=(16, 8)).astype("float32")


def _has_int8(data):
    """Whether the .tflite ``data`` holds an int8 tensor (a quantized model, not a float one)."""
    return S.TensorType.INT8 in {int(t.type) for t in fb.read_model(data).subgraphs[0].tensors}


@pytest.mark.parametrize("verify", [True, False])
def test_int4_constant_with_set_padding_bits_stays_raw_and_bit_exact(verify):
    """An int4 constant with an odd number of elements whose last byte's unused high nibble is not
    zero: the packed format decodes those bits as zero, so pack(verify=True) raised RuntimeError
    "round trip is not bit-exact ... (codec bug)" and pack(verify=False) wrote a file unpack gave
    other bytes for. It stays raw now, named with the reason (warning and inspect); the even
    neighbour, whose bytes have no padding, still packs."""
    rng = np.random.default_rng(0)
    odd = _int4_bytes(rng.integers(0, 4, 999), pad_high=0x7)
    even = _int4_bytes(rng.integers(0, 4, 1000))
    data = _model([(S.TensorType.INT4, [999], odd), (S.TensorType.INT4, [1000], even)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = export.pack(data, verify=verify)
    notes = " ".join(str(w.message) for w in caught)
    assert "c0 (500 B): the unused high 4 bits of its last byte are not zero (0x70)" in notes, notes
    assert len(packed) < len(data)
    m = fb.read_model(packed)
    decoded = {fb.tensor_name(m.subgraphs[s].tensors[o]) for s, _, o in export._pack.packed_tensors(m)}
    assert decoded == {"c1"}
    assert _constants(export.unpack(packed)) == _constants(data)
    rows = {r.name: r for r in export.inspect(data).rows}
    assert rows["c0"].status == "refused" and "not zero (0x70)" in rows["c0"].reason
    assert rows["c1"].status == "packable"


def test_int8_with_fewer_samples_than_the_fixed_batch_is_refused_not_exported_as_float():
    """quantize="int8" with batch_size=8 and 5 representative samples: the calibration generator fed
    whole batches of 8 yielded none, and TF's converter then wrote a float32 model (no quantization,
    no error, no warning). Now a ValueError before the conversion names the counts and the fix; 16
    samples still give an int8 model."""
    model, x = _dense_8_to_4()
    with pytest.raises(ValueError, match=r"representative_data holds 5 sample\(s\), fewer than the \.tflite's "
                                         r"fixed batch of 8.*give at least 8 samples"):
        export.to_tflite(model, quantize="int8", representative_data=x[:5], batch_size=8, pack=False)
    data = export.to_tflite(model, quantize="int8", representative_data=x, batch_size=8, pack=False)
    assert _has_int8(data)


def test_pack_arguments_with_pack_false_are_named_as_ignored():
    """to_tflite(pack=False, min_bytes=..., positive_zeros=True) dropped both without a word (the
    file is not packed), while pack_options with pack=False is an error and per_channel /
    representative_data a mode does not use are named in a warning; now a warning names them."""
    model, _ = _dense_8_to_4()
    with pytest.warns(UserWarning, match=r"to_tflite: min_bytes=5 and positive_zeros=True are ignored: .*"
                                         r"pack=False\. Fix: pack=True, or leave min_bytes and positive_zeros out"):
        export.to_tflite(model, pack=False, min_bytes=5, positive_zeros=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.to_tflite(model, pack=False)
    assert not [w for w in caught if "ignored" in str(w.message)], [str(w.message) for w in caught]


def test_an_empty_output_path_is_refused_before_any_work(tmp_path, monkeypatch):
    """check_writable("") passed (to_tflite(path="") then converted, and only atomic_write failed,
    blaming the current directory's parent: "the directory ... exists but no file can be created in
    it (a virtual file system such as /proc or /sys?)"). Both now say the path is empty."""
    from dc_keras import _fileio

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for call in (lambda: _fileio.check_writable(""), lambda: _fileio.atomic_write("", b"x"),
                 lambda: _fileio.check_writable(b"", example="sizes.png")):
        with pytest.raises(FileNotFoundError, match=r"the output path is empty \(an unset variable\?\): give a file "
                                                    r"name, e\.g\. (model\.tflite|sizes\.png)"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not list(work.iterdir())


def test_report_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    """Report.plot called matplotlib.use("Agg"): in a notebook (inline backend) or a script with a
    backend of its own, the caller's later plots went to Agg (plt.show() shows nothing). It now
    draws on a Figure of its own; the chart is written as before."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("matplotlib")
    model = tmp_path / "m.tflite"
    model.write_bytes(_model([(S.TensorType.FLOAT32, [2000], np.zeros(2000, np.float32).tobytes())]))
    script = textwrap.dedent(f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        from dc_keras import export
        plt.figure()
        export.inspect(open({str(model)!r}, "rb").read()).plot({str(tmp_path / "sizes.png")!r})
        print(matplotlib.get_backend(), plt.get_fignums())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "svg [1]", out.stdout
    assert (tmp_path / "sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kwargs", [{"version": True}, {"version": 2.0}, {"max_code_length": True}])
def test_codec_encode_refuses_a_bool_or_float_version_as_pack_does(kwargs):
    """codec.encode(version=True) wrote version 1 (True == 1), version=2.0 version 2 and
    max_code_length=True codes of at most 1 bit, where pack(version=True) is a ValueError; now
    encode says which argument is wrong, as pack does."""
    from dc_keras import codec

    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        codec.encode(np.zeros(64, np.float32), **kwargs)
    with pytest.raises(ValueError, match=r"^version must be None"):
        export.pack(_model([(S.TensorType.FLOAT32, [64], bytes(256))]), version=True)
    assert codec.info(codec.encode(np.zeros(64, np.float32), version=np.int64(2)))["version"] == 2


def test_a_tensor_with_an_external_weights_file_is_named_with_the_fix():
    """A tensor whose data lives in a LiteRT external weights file (Tensor.external_buffer) was
    refused as "this .tflite uses external buffers; not supported": no tensor, no fix, and the
    same words as the buffers after the flatbuffer that pack reads. Now the error names the
    tensor, the field and what to do."""
    m = fb.read_model(_model([(S.TensorType.FLOAT32, [64], bytes(256))]))
    t = m.subgraphs[0].tensors[1]
    m.buffers[t.buffer].data = None
    t.externalBuffer = 1
    data = fb.write_model(m, "inline")
    for call in (export.pack, export.unpack, export.inspect):
        with pytest.raises(ValueError, match=r"tensor 'c0' \(subgraph 0\) keeps its data in an external weights file "
                                             r"\(Tensor\.external_buffer 1.*export the model with its weights inside"):
            call(data)


def test_int8_with_a_representative_function_that_yields_nothing_is_refused():
    """quantize="int8" with a representative_data function that yields no sample (an exhausted
    iterator, a filter that drops everything): TF's converter wrote a float32 model, with no error
    and no warning. Now a ValueError says so; a function that yields samples still gives int8."""
    model, x = _dense_8_to_4()
    with pytest.raises(ValueError, match=r"representative_data \(a function\) yielded no sample, so the converter "
                                         r"calibrated nothing and wrote a float model"):
        export.to_tflite(model, quantize="int8", representative_data=lambda: iter([]), pack=False)
    data = export.to_tflite(model, quantize="int8", representative_data=lambda: ([x[i:i + 1]] for i in range(16)),
                            pack=False)
    assert _has_int8(data)


def test_int8_with_inputs_of_different_sample_counts_is_refused():
    """A two-input model's representative_data [a (40 samples), b (25 samples)] was read zip-like:
    calibrated on 25 samples, the other 15 dropped without a word (Keras's fit refuses such data as
    'Data cardinality is ambiguous'). Now a ValueError names the counts and the fix; equal counts
    still give an int8 model."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    a, b = keras.Input((6,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(4)(keras.layers.Concatenate()([a, b])))
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(40, 6)).astype("float32"), rng.normal(size=(40, 3)).astype("float32")
    with pytest.raises(ValueError, match=r"representative_data's arrays hold different numbers of samples \(40, 25\)"
                                         r".*give every input the same count"):
        export.to_tflite(model, quantize="int8", representative_data=[xa, xb[:25]], pack=False)
    data = export.to_tflite(model, quantize="int8", representative_data=[xa, xb], pack=False)
    assert _has_int8(data)
