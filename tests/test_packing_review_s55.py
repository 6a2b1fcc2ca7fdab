"""Session 55's review of "I already have a .tflite and want it smaller" (helper-212): packing files
of every kind the TF 2.21 converter writes, and the user mistakes around ``dc-keras pack`` /
``unpack``."""
import os

import _export_models as em
import numpy as np
import pytest


def _cli(capsys, *argv):
    from dc_keras import cli

    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, " ".join(err.split())


def _files(folder):
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def models():
    """Two different models, plain and packed: (MLP, while loop + two signatures, and packed)."""
    from dc_keras import export

    a, b = _mlp(), _while_and_two_signatures()
    return a, b, export.pack(a), export.pack(b)


def _shared(rng, shape):
    """Pruned (80 % zeros) weights of 8 shared values."""
    w = rng.normal(0, 0.1, 8).astype(np.float32)[rng.integers(0, 8, shape)]
    w[rng.random(shape) > 0.2] = 0
    return w


def _mlp():
    import tensorflow as tf

    rng = np.random.default_rng(2)

    class MLP(tf.Module):
        def __init__(self):
            self.w = tf.Variable(_shared(rng, (20, 96)))
            self.v = tf.Variable(_shared(rng, (96, 10)))

        @tf.function(input_signature=[tf.TensorSpec([1, 20], tf.float32)])
        def __call__(self, x):
            return tf.matmul(tf.nn.relu(tf.matmul(x, self.w)), self.v)

    m = MLP()
    return tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m).convert()


def test_unpack_refuses_to_replace_another_models_file(tmp_path, capsys, models):
    """``dc-keras unpack a.packed.tflite b.tflite`` replaced b.tflite, another model, without a
    word (``dc-keras unpack *.tflite`` in a folder of a packed and a plain model does it), and a
    packed file of another model too: pack refused the first since session 52, unpack did not. It
    now refuses both, naming the cause and the way out, the files untouched; an OUT of IN's own
    model (its earlier output, or the model it was packed from) is still replaced."""
    a, b, pa, pb = models
    src, other, other_packed = tmp_path / "a.packed.tflite", tmp_path / "b.tflite", tmp_path / "b.packed.tflite"
    src.write_bytes(pa)
    other.write_bytes(b)
    other_packed.write_bytes(pb)
    rc, out, err = _cli(capsys, "unpack", str(src), str(other))
    assert rc == 1 and not out
    assert err == (f"dc-keras unpack: error: OUT {other} is an existing .tflite model that is not packed and holds "
                   "other weights than IN's unpacked model: unpack replaces an OUT it wrote before, never another "
                   "model, which would be lost (did a shell pattern such as *.tflite expand to two models? unpack "
                   f"takes one IN and one OUT). Choose a new OUT, or delete {other} first to replace it"), err
    rc, out, err = _cli(capsys, "unpack", str(src), str(other_packed))
    assert rc == 1 and not out
    assert (f"error: OUT {other_packed} is an existing packed .tflite of another model (its inputs and outputs "
            "are not IN's, in number, type or shape): unpack replaces an OUT it wrote before") in err, err
    assert other.read_bytes() == b and other_packed.read_bytes() == pb and src.read_bytes() == pa
    assert _files(tmp_path) == ["a.packed.tflite", "b.packed.tflite", "b.tflite"]  # no temporary file left
    # its own earlier output, and the model it was packed from (same weights), are replaced as before
    back, original = tmp_path / "u.tflite", tmp_path / "a.tflite"
    original.write_bytes(a)
    for out_path in (back, back, original):
        rc, out, err = _cli(capsys, "unpack", str(src), str(out_path))
        assert rc == 0, err
    assert "replaced the existing" in out and back.read_bytes() == original.read_bytes()


def test_pack_refuses_to_replace_a_packed_file_of_another_model(tmp_path, capsys, models):
    """``dc-keras pack a.tflite b.packed.tflite`` replaced b's packed file, another model that may
    exist nowhere else (pack refused only an unpacked OUT of other weights). A packed OUT whose
    inputs and outputs are not IN's is now refused; a re-run over its own output, with other options
    too (``--strip-strings``, ``--min-saving``: other bytes, the same model), still replaces it."""
    from dc_keras import export

    a, b, pa, pb = models
    src, other_packed = tmp_path / "a.tflite", tmp_path / "b.packed.tflite"
    src.write_bytes(a)
    other_packed.write_bytes(pb)
    rc, out, err = _cli(capsys, "pack", str(src), str(other_packed))
    assert rc == 1 and not out
    assert err == (f"dc-keras pack: error: OUT {other_packed} is an existing packed .tflite of another model (its "
                   "inputs and outputs are not IN's, in number, type or shape): pack replaces an OUT it wrote "
                   "before, never another model, which would be lost (did a shell pattern such as *.tflite expand "
                   f"to two models? pack takes one IN and one OUT). Choose a new OUT, or delete {other_packed} "
                   "first to replace it"), err
    assert other_packed.read_bytes() == pb and src.read_bytes() == a
    assert _files(tmp_path) == ["a.tflite", "b.packed.tflite"]
    out_path = tmp_path / "a.packed.tflite"
    for extra in ([], ["--strip-strings"], ["--min-saving", "0"], []):
        rc, out, err = _cli(capsys, "pack", str(src), str(out_path), *extra)
        assert rc == 0, err
    assert "replaced the existing" in out and out_path.read_bytes() == export.pack(a)


def test_usage_spells_min_bytes_as_the_docs_and_messages_do(capsys, tmp_path, models):
    """``dc-keras pack`` / ``inspect``'s usage showed ``--min_bytes N`` while docs/packing.md, the
    help of every other option and pack's own report ("a lower --min-bytes lets pack try them") say
    ``--min-bytes``; ``--min_bytes`` still works."""
    from dc_keras import cli

    for command in ("pack", "inspect"):
        assert cli.main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "[--min-bytes N]" in text and "--min_bytes N" not in text.split("options:")[0], text
    src = tmp_path / "a.tflite"
    src.write_bytes(models[0])
    rc, out, err = _cli(capsys, "pack", str(src), str(tmp_path / "o.tflite"), "--min_bytes", "100000")
    assert rc == 0 and "smaller than --min-bytes 100000" in out, (out, err)


def _while_and_two_signatures():
    """A tf.Module with two signatures, one of them a while loop over a pruned, shared weight (the
    loop body is its own subgraph): the files a tf.function user converts."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    class Two(tf.Module):
        def __init__(self):
            self.w = tf.Variable(_shared(rng, (32, 32)))
            self.v = tf.Variable(_shared(rng, (32, 64)))

        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
        def loop(self, x):
            _, h = tf.while_loop(lambda i, _h: i < 3, lambda i, h: (i + 1, tf.tanh(tf.matmul(h, self.w))),
                                 [tf.constant(0), x])
            return {"h": h}

        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
        def project(self, y):
            return {"z": tf.matmul(y, self.v)}

    m = Two()
    fns = [m.loop.get_concrete_function(), m.project.get_concrete_function()]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(fns, m)
    return converter.convert()


def test_a_while_loop_and_two_signatures_pack_bit_exact_through_cli_and_api(tmp_path, capsys, models):
    """The review's files: the CLI writes the Python API's bytes, the report's sizes are the
    files', and every signature of the packed file gives the unpacked file's outputs bit for bit
    (``dc_keras.runtime.Interpreter`` against TFLite's interpreter, as the docs say)."""
    from dc_keras import export, runtime

    plain = models[1]
    src, out_path = tmp_path / "m.tflite", tmp_path / "m.packed.tflite"
    src.write_bytes(plain)
    rc, out, err = _cli(capsys, "pack", str(src), str(out_path))
    packed = out_path.read_bytes()
    assert rc == 0 and packed == export.pack(plain), err
    assert out.splitlines()[0].startswith(f"{src}: {len(plain)} B -> {out_path}: {len(packed)} B ("), out
    assert len(packed) < len(plain) / 2
    rows = {r.label: r for r in export.inspect(packed).rows}
    assert sum(r.status == "packed" for r in rows.values()) == 2, rows  # the loop body's weight and v
    got = runtime.Interpreter(model_content=packed)  # the default route; the same backend's plain interpreter
    ref = em.reference_interpreter(got.backend, plain)
    assert sorted(got.get_signature_list()) == ["loop", "project"]
    rng = np.random.default_rng(1)
    for key, name in (("loop", "x"), ("project", "y")):
        x = rng.normal(size=(1, 32)).astype(np.float32)
        want, have = ref.get_signature_runner(key)(**{name: x}), got.get_signature_runner(key)(**{name: x})
        for k in want:
            assert want[k].tobytes() == have[k].tobytes(), (key, k)


def test_a_file_without_its_weights_is_named_as_such(tmp_path, capsys):
    """TF 2.21's ``from_concrete_functions([fn], model)`` of a Keras 3 model writes its weights as
    resource variables nothing assigns: a file that cannot run (READ_VARIABLE fails). ``dc-keras
    pack`` said only "the model holds no constant tensor (weights), so there is nothing to pack";
    pack now warns, and the CLI notes, that the weights are not in the file and how to convert so
    that they are. A stateful model whose variables are assigned gets no such note."""
    import warnings

    from dc_keras import export

    plain = em.weightless_tflite("dense")
    with pytest.warns(UserWarning, match=r"^pack: the model reads 4 resource variable\(s\) \(VAR_HANDLE ops\) that "
                                         r"no operator assigns: its weights are not in the file"):
        assert export.pack(plain) == plain
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    rc, out, err = _cli(capsys, "pack", str(src), str(tmp_path / "p.tflite"))
    assert rc == 0, err
    assert "note: the model reads 4 resource variable(s) (VAR_HANDLE ops) that no operator assigns" in out, out
    assert 'model.export(path, format="litert")' in out

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export.pack(em.stateful_tflite())


def test_a_gzipped_tflite_is_named_as_such(tmp_path, capsys, models):
    """A ``.tflite.gz`` (a download, or ``dc-keras pack IN - | gzip``'s output) given to pack was
    "not a .tflite model ... give a TensorFlow Lite model", as for any other file; it is now named
    gzip-compressed, with the fix, as .keras and .h5 files are named."""
    import gzip

    from dc_keras import export

    src = tmp_path / "m.tflite.gz"
    src.write_bytes(gzip.compress(models[0]))
    rc, out, err = _cli(capsys, "pack", str(src), str(tmp_path / "o.tflite"))
    assert rc == 1 and not out
    assert err.startswith(f"dc-keras pack: error: {src}: not a .tflite model: file identifier is ") and err.endswith(
        "it is gzip-compressed (a .gz download, or `dc-keras pack IN - | gzip`'s output?): decompress it first "
        "(gunzip -k FILE.gz, or gzip.decompress in Python) and give the .tflite inside"), err
    assert _files(tmp_path) == ["m.tflite.gz"]
    with pytest.raises(ValueError, match="it is gzip-compressed"):
        export.pack(src.read_bytes())


def test_a_savedmodel_directory_is_named_with_the_conversion(tmp_path, capsys, models):
    """A SavedModel directory (``model.export(path)``, ``tf.saved_model.save``) given as IN was "Is a
    directory; give the path of a .tflite file": it is now named a SavedModel, with the
    conversion; any other directory keeps the plain message. The same for
    ``dc_keras.export.inspect`` and ``dc_keras.runtime.Interpreter``."""
    from dc_keras import export, runtime

    saved, plain_dir = tmp_path / "sm", tmp_path / "d"
    saved.mkdir()
    plain_dir.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    fix = (f"it is a TensorFlow SavedModel directory, not a .tflite: convert it first, e.g. "
           f"tf.lite.TFLiteConverter.from_saved_model({str(saved)!r}).convert(), and give that file")
    rc, out, err = _cli(capsys, "pack", str(saved), str(tmp_path / "o.tflite"))
    assert rc == 1 and err == f"dc-keras pack: error: {saved}: Is a directory; {fix}", err
    rc, out, err = _cli(capsys, "inspect", str(plain_dir))
    assert rc == 1 and err == f"dc-keras inspect: error: {plain_dir}: Is a directory; give the path of a .tflite file"
    with pytest.raises(IsADirectoryError, match="it is a TensorFlow SavedModel directory"):
        export.inspect(str(saved))
    with pytest.raises(IsADirectoryError) as info:
        runtime.Interpreter(model_path=str(saved))
    assert str(info.value) == f"{saved} is a directory: {fix}"
    assert _files(tmp_path) == ["d", "sm"]


def test_the_inspect_command_pack_names_for_a_piped_model_is_one_that_can_run(tmp_path):
    """``dc-keras pack /dev/stdin OUT < m.tflite`` (or ``<(cmd)``) told the user to run ``dc-keras
    inspect /dev/stdin``, which would read the terminal (or a pipe gone once read); it now names
    ``dc-keras inspect FILE`` on a saved copy of that model. A file keeps its own path."""
    import argparse

    from dc_keras.export.cli_commands import _inspect_command

    src = tmp_path / "m.tflite"
    src.write_bytes(b"x")
    assert _inspect_command(argparse.Namespace(input=str(src), min_bytes=None)) == f"`dc-keras inspect {src}`"
    assert _inspect_command(argparse.Namespace(input="/dev/stdin", min_bytes=7)) == (
        "`dc-keras inspect --min-bytes 7 FILE` (FILE: a saved copy of the model read from /dev/stdin)")
    rd, wr = os.pipe()
    try:
        if os.path.exists(f"/dev/fd/{rd}"):
            assert _inspect_command(argparse.Namespace(input=f"/dev/fd/{rd}", min_bytes=None)) == (
                f"`dc-keras inspect FILE` (FILE: a saved copy of the model read from /dev/fd/{rd})")
    finally:
        os.close(rd)
        os.close(wr)


def test_a_truncated_zip_of_associated_files_is_named_as_such(tmp_path, capsys, models):
    """A model whose zip of associated files (labels) was cut short -- a truncated download --
    packed with "N B after the model that are neither part of it nor a zip of associated files ...
    if they are not needed (appended by mistake), remove them": the labels were lost and the note
    said the opposite of what happened. pack, unpack and inspect now name an archive cut short and
    the fix (copy the file again); the bytes are still kept, and other bytes keep their note."""
    import io
    import zipfile

    from dc_keras import export

    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("labels.txt", "cat\ndog\n")
    whole = models[0] + z.getvalue()
    cut = whole[:len(models[0]) + 40]
    src, out_path, back = tmp_path / "m.tflite", tmp_path / "p.tflite", tmp_path / "u.tflite"
    src.write_bytes(cut)
    rc, out, err = _cli(capsys, "pack", str(src), str(out_path))
    assert rc == 0, err
    text = " ".join(out.split())
    assert (f"note: {src} has 40 B after the model that start like a zip of associated files (a local header) but "
            "have no end record: an archive cut short, so the file was probably truncated (an interrupted download "
            "or copy): copy it again from its source to keep its associated files (labels, vocabularies); kept "
            f"unchanged after {out_path}'s model (TFLite ignores them)") in text, text
    assert out_path.read_bytes() == export.pack(models[0]) + cut[-40:]
    rc, out, err = _cli(capsys, "unpack", str(out_path), str(back))
    assert rc == 0 and "an archive cut short" in out, (out, err)
    report = export.inspect(cut)
    assert report.trailing_bytes == 40 and report.trailing_cut_zip and "an archive cut short" in report.to_text()
    junk = export.inspect(models[0] + b"\x01" * 40)
    assert junk.trailing_bytes == 40 and not junk.trailing_cut_zip
    assert "are neither part of it nor a zip" in junk.to_text()
    whole_report = export.inspect(whole)  # the whole zip: its files, no note
    assert whole_report.associated_files and not whole_report.trailing_bytes
