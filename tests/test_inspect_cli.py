"""`dc-keras inspect` / `pack` reporting (QA session 6): tensors the packer refuses show their
data's statistics and the reason (never `nan`), refusals are reported by `pack` too, and a bad
`--plot` path is refused before any work, with one error line naming the problem and the fix.

The CLI runs in-process (`dc_keras.cli.main`); tests/test_export_cli.py covers the subprocess path.
"""
import functools
import os

import numpy as np
import pytest

from dc_keras import cli, export


@functools.lru_cache(maxsize=None)
def _int64_tflite():
    """A .tflite whose one constant is int64 (2000 values in 0..6): ``x + c`` on an int64 input."""
    import tensorflow as tf

    c = tf.constant(np.arange(2000, dtype=np.int64) % 7)

    @tf.function(input_signature=[tf.TensorSpec([2000], tf.int64)])
    def f(x):
        return x + c

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


@functools.lru_cache(maxsize=None)
def _complex64_tflite():
    """A .tflite whose one constant (``mul/y``, 16000 B) has a type pack cannot pack: complex64
    (2000 values in 0..6), ``real(x * c)`` on a complex64 input. (int64 played this part until
    packed-format version 3 made int64 packable, FORMAT.md §16.)"""
    import tensorflow as tf

    c = tf.constant((np.arange(2000) % 7).astype(np.complex64))

    @tf.function(input_signature=[tf.TensorSpec([2000], tf.complex64)])
    def f(x):
        return tf.math.real(x * c)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


@pytest.fixture()
def refused_file(tmp_path):
    p = tmp_path / "complex64.tflite"
    p.write_bytes(_complex64_tflite())
    return p


def test_int64_constant_packs_since_format_version_3(tmp_path):
    """The int64 constant (2000 values in 0..6, 16000 B) inspect and pack used to refuse now packs
    as a version 3 tensor (FORMAT.md §16), by default as version 4's integer planes (§17: against
    the previous element its residuals are +1 or -6, smaller than a codebook); pack(version=2)
    still keeps it raw and says why."""
    data = _int64_tflite()
    (row,) = export.inspect(data).rows
    assert row.dtype == "int64" and row.status == "packable" and row.packed_bytes < 1000, row
    packed = export.pack(data)
    assert b"DCHF\x04" in packed and len(packed) < len(data) - 14000
    v3 = export.pack(data, version=3)
    assert b"DCHF\x03" in v3 and len(v3) < len(data) - 14000
    with pytest.warns(UserWarning, match=r"add/y \(16000 B\): int64 needs packed format version 3"):
        assert export.pack(data, version=2) == data


def test_inspect_takes_a_path_as_the_cli_interpreter_and_predict_tflite_do(refused_file, tmp_path):
    """export.inspect("model.tflite") raised "TypeError: expected .tflite content as bytes, got str"
    while `dc-keras inspect FILE`, runtime.Interpreter(model_path=) and pipeline.predict_tflite take a
    path. A str or PathLike is now read (bytes stay content); a bad path gets the CLI's error."""
    import pathlib

    expected = export.inspect(refused_file.read_bytes()).to_text()
    assert export.inspect(str(refused_file)).to_text() == expected
    assert export.inspect(pathlib.Path(refused_file), min_bytes=16001).to_text() == \
        export.inspect(refused_file.read_bytes(), min_bytes=16001).to_text()
    with pytest.raises(FileNotFoundError, match=r"No such file or directory; check the path of the input \.tflite"):
        export.inspect(tmp_path / "missing.tflite")
    with pytest.raises(IsADirectoryError, match=r"give the path of a \.tflite file"):
        export.inspect(str(tmp_path))
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a model at all" * 4)
    with pytest.raises(ValueError, match=rf"^{garbage}: not a \.tflite model"):
        export.inspect(garbage)
    with pytest.raises(ValueError, match="min_bytes"):  # checked before the file is read
        export.inspect(tmp_path / "missing.tflite", min_bytes=-1)


def test_inspect_of_a_refused_complex64_tensor_gives_stats_and_reason(refused_file, capsys):
    report = export.inspect(refused_file.read_bytes())
    (row,) = report.rows
    assert row.dtype == "complex64" and row.status == "refused" and row.packed_bytes is None
    assert row.density == pytest.approx(1 - 286 / 2000) and row.distinct == 7  # 286 zeros, 0..6
    assert "complex64" in row.reason and "no packed-format element type" in row.reason
    assert cli.main(["inspect", str(refused_file)]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out, out
    line = next(ln for ln in out.splitlines() if ln.lstrip().startswith("0 mul/y"))
    assert " 0.857 " in line and " 7 " in line and "refused" in line and "no packed-format" in line, line
    assert "refused: 1 tensor(s), 16000 B stay raw" in out, out


def test_constants_below_min_bytes_are_skipped_not_refused(refused_file, capsys):
    """pack leaves constants smaller than min_bytes alone by design, whatever their type: inspect
    calls them "skipped" with that reason (not "refused" with the complex64 type reason, which is for
    tensors pack looks at and cannot pack), counts them apart, and pack does not list them as not
    packed. With min_bytes lowered below their size the real reason shows again."""
    data = refused_file.read_bytes()  # one complex64 constant of 16000 B
    (row,) = export.inspect(data, min_bytes=16001).rows
    assert (row.status, row.reason) == ("skipped", "below min_bytes = 16001"), row
    assert row.distinct == 7  # statistics still shown
    text = str(export.inspect(data, min_bytes=16001))
    assert "refused" not in text, text
    assert "skipped: 1 tensor(s), 16000 B below min_bytes" in text, text
    assert export.inspect(data, min_bytes=16000).rows[0].status == "refused"
    assert cli.main(["inspect", "--min-bytes", "16001", str(refused_file)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.lstrip().startswith("0 mul/y"))
    assert "skipped" in line and "below min_bytes = 16001" in line and "complex64:" not in line, line
    _, stats = export._pack.pack_with_stats(data, min_bytes=16001)
    assert stats["refused"] == []


def test_unreadable_refused_tensor_shows_a_dash_not_nan():
    """A constant whose buffer does not hold its declared shape: no statistics, '-' and the reason."""
    from dc_keras.export._inspect import Report, TensorRow

    row = TensorRow(0, "t", "complex64", (3,), None, None, 5, None, "refused", "buffer holds 5 B, not ...")
    text = Report(file_bytes=100, rows=[row], packed=False).to_text()
    assert "nan" not in text and "buffer holds 5 B" in text, text
    assert Report(file_bytes=100, rows=[], packed=False).to_text().count("nan") == 0


def test_pack_reports_the_tensors_it_cannot_pack(refused_file, tmp_path, capsys):
    out = tmp_path / "p.tflite"
    assert cli.main(["pack", str(refused_file), str(out)]) == 0
    text = capsys.readouterr().out
    assert "not packed: 1 constant tensor(s), 16000 B" in text, text
    assert "mul/y: 16000 B: complex64: no packed-format element type for it" in text, text
    _, stats = export._pack.pack_with_stats(refused_file.read_bytes())
    assert stats["refused"] == [("mul/y", 16000, "complex64: no packed-format element type for it")]
    # the Python API reports it too (it used to skip it without a word), at the caller's line
    with pytest.warns(UserWarning, match=r"^pack: 1 constant tensor\(s\), 16000 B, not packed: mul/y \(16000 B\): "
                                         r"complex64: no packed-format element type for it; dc_keras.export.inspect") as caught:
        export.pack(refused_file.read_bytes())
    assert [w.filename for w in caught if "not packed" in str(w.message)] == [__file__]


def test_pack_reports_a_constant_whose_buffer_does_not_hold_its_shape(tmp_path, capsys):
    """A float32 constant whose buffer is not its declared shape's size cannot be packed: pack used
    to leave it without a word (inspect said "refused"); now both give the same reason. (A buffer
    larger than the shape: TFLite loads such a file; a smaller one it refuses, and so do pack and
    inspect: tests/test_bad_input_files.py.)"""
    import _export_models as em

    from dc_keras import _flatbuffer as fb

    model = fb.read_model(em.tflite("dense", None))
    sg = model.subgraphs[0]
    i, t = max(((i, t) for i, t in enumerate(sg.tensors) if t.buffer > 0),
               key=lambda it: len(fb.buffer_bytes(model, it[1].buffer)))
    nbytes = len(fb.buffer_bytes(model, t.buffer))
    t.shape = [int(d) for d in t.shape[:-1]] + [int(t.shape[-1]) - 1]  # one column less than stored
    src = tmp_path / "bad_shape.tflite"
    src.write_bytes(fb.write_model(model))
    name = fb.tensor_name(t)
    why = f"buffer holds {nbytes} B, not the float32{list(t.shape)} the tensor declares"
    row = next(r for r in export.inspect(src.read_bytes()).rows if r.name == name)
    assert (row.status, row.reason) == ("refused", why), row
    _, stats = export._pack.pack_with_stats(src.read_bytes())
    assert (name, nbytes, why) in stats["refused"], stats["refused"]
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert f"{name}: {nbytes} B: {why}" in capsys.readouterr().out


def test_names_with_control_characters_or_bytes_that_are_not_utf8_are_escaped(tmp_path, capsys):
    """A tensor name is data from the file: one holding a newline and ESC sequences was printed as
    it is by `dc-keras pack` (forging a "not packed: 0 constant tensor(s)" line), by `inspect`
    (recolouring the terminal) and in pack's warning; bytes that are not UTF-8 came out as U+FFFD.
    Now every printer escapes them as repr does (\\n, \\x1b, \\xff): one line per tensor."""
    import warnings

    import _export_models as em

    from dc_keras import _flatbuffer as fb

    model = fb.read_model(em.tflite("dense", None))
    sg = model.subgraphs[0]
    forged = b"b\nnot packed: 0 constant tensor(s) \x1b[31mRED\x1b[0m"
    unread = fb.schema.TensorT()  # a constant no operator reads: pack and inspect list it, by name
    unread.name, unread.type, unread.shape = forged, fb.schema.TensorType.FLOAT32, [64]
    buf = fb.schema.BufferT()
    buf.data = np.ones(64, "<f4").view(np.uint8)
    model.buffers.append(buf)
    unread.buffer = len(model.buffers) - 1
    sg.tensors.append(unread)
    weight = max((t for t in sg.tensors if t.buffer > 0), key=lambda t: len(fb.buffer_bytes(model, t.buffer)))
    weight.name = b"w\xff\xfe\tx"
    src = tmp_path / "names.tflite"
    src.write_bytes(fb.write_model(model))
    shown = "b\\nnot packed: 0 constant tensor(s) \\x1b[31mRED\\x1b[0m"
    capsys.readouterr()
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    out = capsys.readouterr().out
    assert f"  {shown}: 256 B: no operator reads it\n" in out, out
    assert "\x1b" not in out and not any(line.startswith("not packed: 0") for line in out.splitlines()), out
    assert cli.main(["inspect", str(src)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\t" not in out and "\ufffd" not in out, out
    rows = [line for line in out.splitlines() if line.startswith(" 0 ")]
    assert len(rows) == len(export.inspect(src.read_bytes()).rows), out  # one line per tensor
    assert any(" w\\xff\\xfe\\tx " in line for line in rows) and any("[31mRED" in line for line in rows), out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.pack(src.read_bytes())
    (note,) = [str(w.message) for w in caught if "not packed" in str(w.message)]
    assert f"{shown} (256 B): no operator reads it" in note and "\x1b" not in note and "\n" not in note, note


def test_pack_of_a_packable_model_reports_no_refusal(tmp_path, capsys):
    import _export_models as em

    src = tmp_path / "m.tflite"
    src.write_bytes(em.tflite("dense", None))
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert "not packed" not in capsys.readouterr().out


# -- `inspect --plot BADPATH`: refused before any work ------------------------------------------

def _plot_error(capsys, model, plot):
    """Runs `inspect MODEL --plot=PLOT`; returns the one error line (exit 1, nothing on stdout:
    the table is not printed before the path is checked)."""
    status = cli.main(["inspect", str(model), f"--plot={plot}"])
    out, err = capsys.readouterr()
    assert status == 1, (out, err)
    assert out == "", out  # failed before the table
    assert len(err.strip().splitlines()) == 1 and err.startswith("dc-keras inspect: error: "), err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("case,expect", [
    ("missing_dir", "does not exist: create it first"),
    ("a_directory", "give a file name for the output, e.g. "),
    ("under_a_file", "is not a directory: choose an output path"),
    ("bad_extension", "'.xyz' is not an image format matplotlib writes; end the plot path with one of"),
    ("pgf_without_latex", ".pgf output needs LaTeX"),
])
def test_bad_plot_path_fails_before_the_table(tmp_path, refused_file, capsys, monkeypatch, case, expect):
    (tmp_path / "afile").write_bytes(b"x")
    plot = {"missing_dir": tmp_path / "no_such_dir" / "s.png", "a_directory": tmp_path,
            "under_a_file": tmp_path / "afile" / "s.png", "bad_extension": tmp_path / "s.xyz",
            "pgf_without_latex": tmp_path / "s.pgf"}[case]
    if case == "pgf_without_latex":  # as on a machine without LaTeX, whatever this one has
        import shutil

        monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    before = sorted(os.listdir(tmp_path))
    line = _plot_error(capsys, refused_file, plot)
    assert str(plot) in line and expect in line, line
    if case == "a_directory":
        assert os.path.join(str(plot), "sizes.png") in line, line  # a plot name, not model.tflite
    assert sorted(os.listdir(tmp_path)) == before  # nothing written


def test_bad_plot_path_is_checked_before_the_model_is_read(tmp_path, capsys):
    """Even with a missing model, the plot path's error comes first (no work on a doomed run)."""
    line = _plot_error(capsys, tmp_path / "missing.tflite", tmp_path / "s.xyz")
    assert "'.xyz' is not an image format" in line, line


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_plot_path_that_is_the_model_itself_is_refused(tmp_path, refused_file, capsys, link):
    """`inspect model.tflite --plot sizes.png` where sizes.png is a link to model.tflite wrote the
    PNG through the link: the input model was replaced by a size chart. pack and unpack already
    refused an OUT that is IN; --plot is now checked the same way, before any work."""
    model = tmp_path / "model.tflite"
    model.write_bytes(refused_file.read_bytes())
    plot = tmp_path / "sizes.png"
    (os.symlink if link == "symlink" else os.link)(model, plot)
    line = _plot_error(capsys, model, plot)
    assert f"--plot must differ from FILE: {plot} is the same file as {model}" in line, line
    assert model.read_bytes() == refused_file.read_bytes()


def test_unwritable_plot_directory(tmp_path, refused_file, capsys, monkeypatch):
    """A directory the user cannot write (os.access: root writes even chmod 0555 directories, so
    the access check is simulated): Permission denied, the directory and the fix, nothing written."""
    from dc_keras import _fileio

    real_access = os.access
    monkeypatch.setattr(_fileio.os, "access",
                        lambda p, mode, **kw: False if str(p) == str(tmp_path) else real_access(p, mode, **kw))
    line = _plot_error(capsys, refused_file, tmp_path / "s.png")
    assert "Permission denied" in line and f"{tmp_path} is not writable" in line, line


def test_good_plot_path_and_formats(tmp_path, refused_file, capsys):
    for name in ("s.png", "s.svg", "S.PDF"):
        assert cli.main(["inspect", str(refused_file), f"--plot={tmp_path / name}"]) == 0
        assert f"size chart written to {tmp_path / name}" in capsys.readouterr().out
    assert (tmp_path / "s.svg").read_bytes().lstrip().startswith(b"<?xml")
    assert (tmp_path / "S.PDF").read_bytes().startswith(b"%PDF")


def test_pack_output_path_checked_before_packing(tmp_path, refused_file, capsys, monkeypatch):
    """pack/unpack check OUT before the (possibly long) packing: the codec is never reached."""
    from dc_keras.export import _pack

    def boom(*a, **k):
        raise AssertionError("packed before checking the output path")

    monkeypatch.setattr(_pack, "pack_with_stats", boom)
    for cmd in ("pack", "unpack"):
        status = cli.main([cmd, str(refused_file), str(tmp_path / "no_dir" / "o.tflite")])
        err = capsys.readouterr().err
        assert status == 1 and "does not exist: create it first" in err and "Traceback" not in err, err


# -- a new user's bad inputs: the error names the file -------------------------------------------

@pytest.fixture(scope="module")
def plain():
    import _export_models as em

    return em.tflite("dense", None)


@pytest.mark.parametrize("cmd", ["pack", "unpack", "inspect"])
def test_truncated_input_error_names_the_file(tmp_path, plain, capsys, cmd):
    """A script running over many files must see which one is truncated."""
    src = tmp_path / "cut.tflite"
    src.write_bytes(plain[: len(plain) // 2])
    argv = [cmd, str(src)] + ([str(tmp_path / "o.tflite")] if cmd != "inspect" else [])
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dc-keras {cmd}: error: {src}: malformed .tflite"), err
    assert "truncated or corrupt" in err and len(err.splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["cut.tflite"]


def test_packing_a_packed_file_names_it_and_the_way_out(tmp_path, plain, capsys):
    src = tmp_path / "m.packed.tflite"
    src.write_bytes(export.pack(plain))
    assert cli.main(["pack", str(src), str(tmp_path / "o.tflite")]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{src} is already packed" in err and f"dc-keras unpack {src} " in err, err
    assert not (tmp_path / "o.tflite").exists()


def test_existing_output_is_replaced_and_the_cli_says_so(tmp_path, plain, capsys):
    src, out, back = tmp_path / "m.tflite", tmp_path / "p.tflite", tmp_path / "u.tflite"
    src.write_bytes(plain)
    assert cli.main(["pack", str(src), str(out)]) == 0
    assert "replaced" not in capsys.readouterr().out
    out.write_bytes(b"old contents")
    assert cli.main(["pack", str(src), str(out)]) == 0
    assert f"replaced the existing {out}" in capsys.readouterr().out
    assert out.read_bytes() == export.pack(plain)
    back.write_bytes(b"old")
    assert cli.main(["unpack", str(out), str(back)]) == 0
    assert f"replaced the existing {back}" in capsys.readouterr().out
    assert back.read_bytes() == export.unpack(out.read_bytes())


def test_totals_count_a_buffer_shared_by_several_subgraphs_once(capsys):
    """A weight read in both branches of a tf.cond is one buffer for two subgraphs' tensors (the
    converter shares it, pack packs it once): inspect's totals counted it once per row, so the
    packed file's "packed" total was larger than the whole file (multi-signature and while/if
    models). Totals now count each buffer once and say how many rows share one."""
    import tensorflow as tf

    from dc_keras import _flatbuffer as fb

    module = tf.Module()
    module.w = tf.Variable(np.round(np.random.default_rng(0).standard_normal((64, 64)) * 2).astype(np.float32) / 2)

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def f(x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: tf.tanh(x @ module.w), lambda: -(x @ module.w))

    plain = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], module).convert()
    m = fb.read_model(plain)
    users = [(s, t.buffer) for s, sg in enumerate(m.subgraphs) for t in sg.tensors
             if len(fb.buffer_bytes(m, t.buffer)) == 64 * 64 * 4]
    assert len(users) == 2 and len({b for _, b in users}) == 1, users  # one buffer, two subgraphs
    packed = export.pack(plain)
    for data, kind in ((plain, "packable to"), (packed, "packed")):
        report = export.inspect(data)
        big = [r for r in report.rows if r.raw_bytes == 64 * 64 * 4]
        assert len(big) == 2 and big[0].packed_bytes == big[1].packed_bytes
        small = sum(r.raw_bytes for r in report.rows) - 2 * 64 * 64 * 4
        assert report.raw_total == 64 * 64 * 4 + small < len(plain)
        assert report.packed_total < len(data), (report.packed_total, len(data))
        text = report.to_text()
        assert f"raw {report.raw_total} B   {kind} {report.packed_total} B" in text, text
        assert "2 rows share 1 buffer: counted once in these totals" in text, text


def test_a_buffer_read_as_two_types_counts_once_per_type_in_the_packed_total():
    """The converter stores equal bytes once: a float32 constant and an int32 one of the same bit
    pattern share a buffer. pack packs it once per type (two packed tensors; packed data is shared
    only where its bytes are equal), but inspect counted it once: "packable to" 476 B for a file
    that packs its constants to 712 B (helper-116's probe). Now the total is what pack writes."""
    import tensorflow as tf

    from dc_keras import _flatbuffer as fb

    f = np.random.RandomState(0).choice(np.linspace(-1, 1, 16).astype(np.float32), (256,))

    @tf.function(input_signature=[tf.TensorSpec([256], tf.float32), tf.TensorSpec([256], tf.int32)])
    def fn(x, k):
        return {"a": x * tf.constant(f), "b": k + tf.constant(f.view(np.int32))}

    plain = bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    m = fb.read_model(plain)
    readers = [(t.type, t.buffer) for t in m.subgraphs[0].tensors if len(fb.buffer_bytes(m, t.buffer)) == 1024]
    assert len(readers) == 2 and len({b for _, b in readers}) == 1, readers  # one buffer, two types
    packed = export.pack(plain)
    pm = fb.read_model(packed)
    written = sum(len(fb.buffer_bytes(pm, pm.subgraphs[s].tensors[p].buffer))
                  for s, p, _ in export._pack.packed_tensors(pm))
    report = export.inspect(plain)
    assert report.raw_total == 1024 and report.packed_total == written, (report.packed_total, written)
    assert export.inspect(packed).packed_total == written
    assert "1 of them is read as several types or shapes: pack packs it once per type and shape" \
        in report.to_text(), report.to_text()


def _true_bytes(data, packed_inputs):
    """(raw, packed) bytes a .tflite really holds: the sum over the distinct buffers its constant
    tensors read (``packed_inputs``: only HuffDecode's inputs, else only the others) of their bytes."""
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(data)
    hd = {k for k, c in enumerate(m.operatorCodes or []) if fb.is_huffdecode_code(c)}
    inputs = {(s, int(op.inputs[0])) for s, sg in enumerate(m.subgraphs) for op in sg.operators or []
              if op.opcodeIndex in hd}
    bufs = {t.buffer for s, sg in enumerate(m.subgraphs) for i, t in enumerate(sg.tensors or [])
            if t.buffer > 0 and ((s, i) in inputs) == packed_inputs}
    return sum(len(fb.buffer_bytes(m, b)) for b in bufs)


def test_a_packed_file_counts_a_buffer_two_tensors_share_once_in_the_raw_total(tmp_path, capsys):
    """Two Keras Dense layers whose kernels hold the same bytes in TFLite's [out, in] layout, as
    [64, 64] and [128, 32]: the converter stores the bytes once, so two tensors read one buffer, and
    pack writes one packed buffer per shape. inspect of the unpacked file counted the buffer once,
    but inspect of the packed file counted it once per row (the rows' buffer was the packed one):
    raw 32768 B for the 16384 B the file unpacks to, and 7.6x where the unpacked file says 3.8x.
    The raw total now counts each raw buffer once in both (a decoded tensor keeps the buffer pack
    emptied), and the line after the table names the rows sharing it."""
    import keras

    from dc_keras import _flatbuffer as fb

    k = np.random.default_rng(0).choice(np.linspace(-1, 1, 16).astype(np.float32), (64, 64))
    k2 = np.ascontiguousarray(k.T).reshape(128, 32).T  # [32, 128]; its TFLite form k2.T has k.T's bytes
    x1, x2 = keras.Input((64,)), keras.Input((32,))
    a = keras.layers.Dense(64, use_bias=False, kernel_initializer=keras.initializers.Constant(k), name="a")(x1)
    b = keras.layers.Dense(128, use_bias=False, kernel_initializer=keras.initializers.Constant(k2), name="b")(x2)
    model = keras.Model([x1, x2], keras.layers.Concatenate()([a, b]))
    plain = export.to_tflite(model, pack=False)
    m = fb.read_model(plain)
    readers = [(fb.tensor_name(t), t.buffer) for t in m.subgraphs[0].tensors if fb.buffer_size(m, t.buffer)]
    assert len(readers) == 2 and len({b for _, b in readers}) == 1, readers  # two tensors, one buffer
    raw = _true_bytes(plain, False)
    assert raw == 64 * 64 * 4
    packed = export.to_tflite(model)
    assert packed == export.pack(plain)
    written = _true_bytes(packed, True)  # two packed buffers: one per shape
    assert _true_bytes(packed, False) < 100 and 0 < written < raw
    names = " = ".join(f"{name} (sg 0)" for name, _ in readers)
    for data, kind in ((packed, "packed"), (plain, "packable to")):
        report = export.inspect(data)
        assert len(report.rows) == 2 and {r.raw_bytes for r in report.rows} == {raw}  # a row per tensor
        assert (report.raw_total, report.packed_total) == (raw, written), (kind, report.raw_total, report.packed_total)
        text = report.to_text()
        line = f"raw {raw} B   {kind} {written} B ({raw / written:.1f}x)"
        assert line in text, text
        assert "2 rows share 1 buffer: counted once in these totals" in text and names in text, text
        path = tmp_path / f"{kind.split()[0]}.tflite"
        path.write_bytes(data)
        assert cli.main(["inspect", str(path)]) == 0
        out = capsys.readouterr().out
        assert line in out and names in out, out
    src, dst = tmp_path / "packable.tflite", tmp_path / "out.tflite"
    assert cli.main(["pack", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert dst.read_bytes() == packed
    assert f"{src}: {len(plain)} B -> {dst}: {len(packed)} B ({len(plain) / len(packed):.2f}x)" in out, out


def test_a_packed_lstm_counts_its_shared_zero_state_once_as_its_unpacked_file_does():
    """tests/data/zoo_lstm128.packed.tflite (a zoo LSTM): its two zero initial states ([1, 128] and
    [1, 1, 128]) read one 512 B buffer, packed once per shape. The packed file's raw total was
    286,836 B, 512 B over what it unpacks to (286,324 B, the unpacked file's own total)."""
    path = os.path.join(os.path.dirname(__file__), "data", "zoo_lstm128.packed.tflite")
    with open(path, "rb") as f:
        packed = f.read()
    plain = export.unpack(packed)
    report = export.inspect(packed)
    assert report.raw_total == export.inspect(plain).raw_total == _true_bytes(plain, False) == 286324
    assert report.packed_total == _true_bytes(packed, True) + _true_bytes(packed, False) == 13314
    assert "arith.constant (sg 0) = lstm_1/lstm_1/TensorArrayV2_1 (sg 0)" in report.to_text(), report.to_text()
