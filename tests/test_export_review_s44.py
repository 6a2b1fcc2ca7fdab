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


# ----------------------------------------------------------------------------------------------
# 3. the CLI printed user paths with raw control characters; 4. a null byte in a path
# ----------------------------------------------------------------------------------------------
NAME = "m\n\x1b[2J.tflite"  # a newline (splits a message's line) and ESC [2J (clears the terminal)
OUT = "o\x1b[31m.tflite"  # ESC [31m: turns the terminal's text red


def _small_model():
    from test_export_review_s43 import S, _model

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
