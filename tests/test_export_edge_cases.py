"""Export, codec, CLI and file-IO edge cases found by reading dc_keras/export, dc_keras/codec,
dc_keras/cli.py and dc_keras/_fileio.py (reviews of sessions 43 and 44), each test failing on the code
before its fix. Models are built here with the TFLite schema (no converter), so each case is exactly
the structure under test."""
import warnings

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import codec, export

from test_codec_spec import check_against_reference

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


# ----------------------------------------------------------------------------------------------
# 3. the CLI printed user paths with raw control characters; 4. a null byte in a path
# ----------------------------------------------------------------------------------------------
NAME = "m\n\x1b[2J.tflite"  # a newline (splits a message's line) and ESC [2J (clears the terminal)
OUT = "o\x1b[31m.tflite"  # ESC [31m: turns the terminal's text red


def _small_model():
    w = np.where(np.arange(4096) % 5 == 0, 0.5, 0.0).astype(np.float32).tobytes()
    return _model([(S.TensorType.FLOAT32, [64, 64], w)])


def _cli(capsys, *argv):
    """(status, stdout, stderr) of ``dc-keras ARGV`` run in this process."""
    from dc_keras import cli

    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _clean(text):
    assert "\x1b" not in text and "\x00" not in text, text
    return text


def test_cli_shows_paths_with_control_characters_escaped(tmp_path, capsys, monkeypatch):
    """A path holding a newline or an escape sequence was printed as it is: the newline split the
    report's and the error's one line in two, ESC [2J cleared the terminal, ESC [31m recoloured
    it. Paths are now shown as repr shows them when they hold a non-printable character
    (``_fileio.show_path``), plain otherwise."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).write_bytes(_small_model())
    rc, out, err = _cli(capsys, "pack", NAME, OUT)
    assert rc == 0 and (tmp_path / OUT).exists()
    line = _clean(out).splitlines()[0]
    assert line.startswith(repr(NAME) + ": ") and f" -> {OUT!r}: " in line
    rc, out, err = _cli(capsys, "pack", NAME, OUT)  # again: "replaced the existing OUT"
    assert rc == 0 and f"replaced the existing {OUT!r}" in _clean(out).splitlines()[0]
    rc, out, err = _cli(capsys, "unpack", NAME, "plain.tflite")  # not packed: one error line naming both
    assert rc == 1 and len(_clean(err).splitlines()) == 1 and repr(NAME) in err
    rc, out, err = _cli(capsys, "unpack", OUT, "plain.tflite")
    assert rc == 0 and _clean(out).startswith(f"{OUT!r}: ")
    rc, out, err = _cli(capsys, "inspect", "missing\n\x1b[2J.tflite")  # OSError: its filename
    assert rc == 1 and len(_clean(err).splitlines()) == 1 and repr("missing\n\x1b[2J.tflite") in err
    rc, out, err = _cli(capsys, "pack", NAME, "no\x1bdir/out.tflite")  # _fileio's message names the directory
    assert rc == 1 and len(_clean(err).splitlines()) == 1
    assert repr(str(tmp_path / "no\x1bdir")) in err
    rc, out, err = _cli(capsys, "pack", NAME, NAME)  # the same file: both named
    assert rc == 1 and len(_clean(err).splitlines()) == 1 and err.count(repr(NAME)) == 2
    rc, out, err = _cli(capsys, "inspect", NAME, "--plot", "sizes\n.xyz")  # not an image format
    assert rc == 1 and len(_clean(err).splitlines()) == 1 and repr("sizes\n.xyz") in err
    rc, out, err = _cli(capsys, "pack", "plain.tflite", "plain2.tflite")  # printable: shown as it is
    assert rc == 0 and out.startswith("plain.tflite: ") and " -> plain2.tflite: " in out


def test_show_path():
    from dc_keras._fileio import show_path

    assert show_path("dir/model.tflite") == "dir/model.tflite"
    assert show_path("caf\u00e9 model.tflite") == "caf\u00e9 model.tflite"  # printable non-ASCII: as it is
    assert show_path("a\nb") == "'a\\nb'" and show_path(b"\xff.tflite") == "'\\udcff.tflite'"


@pytest.mark.parametrize("call", ["atomic_write", "check_writable", "inspect", "plot", "interpreter"])
def test_null_byte_in_a_path_is_named_with_the_fix(call, tmp_path, monkeypatch):
    """A path holding a null byte raised the OS functions' bare ValueError "embedded null byte",
    naming neither the path nor the fix."""
    from dc_keras import _fileio, export

    monkeypatch.chdir(tmp_path)
    bad = "a\x00b.tflite"
    run = {"atomic_write": lambda: _fileio.atomic_write(bad, b"x"),
           "check_writable": lambda: _fileio.check_writable(bad.encode()),
           "inspect": lambda: export.inspect(bad),
           "plot": lambda: export.inspect(_small_model()).plot("sizes\x00.png"),
           "interpreter": lambda: __import__("dc_keras.runtime").runtime.Interpreter(model_path=bad)}[call]
    with pytest.raises(ValueError, match=r"holds a null byte \(\\x00\), which no file name can hold: check how "
                       r"the path was made") as e:
        run()
    assert repr(bad if call != "plot" else "sizes\x00.png") in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_null_byte_in_a_cli_path(tmp_path, capsys, monkeypatch):
    """The same through ``dc-keras`` (absl's argparse parser passes the argument on as it is): one
    error line naming the path, status 1, nothing written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.tflite").write_bytes(_small_model())
    for argv, named in ((("pack", "a\x00b.tflite", "o.tflite"), "the input path"),
                        (("pack", "m.tflite", "o\x00.tflite"), "the output path"),
                        (("unpack", "m\x00.tflite", "o.tflite"), "the input path"),
                        (("inspect", "m\x00.tflite"), "the input path"),
                        (("inspect", "m.tflite", "--plot", "s\x00.png"), "the output path")):
        rc, out, err = _cli(capsys, *argv)
        bad = next(a for a in argv if "\x00" in a)
        assert rc == 1 and err == f"dc-keras {argv[0]}: error: {bad!r}: {named} holds a null byte (\\x00), " \
            "which no file name can hold: check how the path was made (a C string or a fixed-width field read " \
            "with its padding?) and give it without the null byte\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_to_tflite_null_byte_in_its_path(tmp_path):
    """to_tflite(path=) checks the path before converting: the same error."""
    import keras

    from dc_keras import export

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"out\\x00\.tflite': the output path holds a null byte"):
        export.to_tflite(model, path=str(tmp_path / "out\x00.tflite"))
