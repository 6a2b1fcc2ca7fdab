"""``dc-keras pack`` reviewed as an engineer who has a .tflite and wants it smaller (helper session
49), following docs/packing.md with files made by TF 2.21's converter and Keras 3's exporter (float,
dynamic-range, full int8, float16, two signatures, a shared weight, LSTM/GRU, a tiny model):

- the commands a report or an error tells the user to run (`dc-keras inspect PATH`, `dc-keras unpack
  PATH PLAIN.tflite`, ``rm PATH``, ``chmod u+w PATH``) showed PATH unquoted: for ``my model.tflite``
  the pasted command ran on ``my`` and ``model.tflite``; now quoted as a POSIX shell reads it
  (``./`` before a name starting with ``-``, which would be read as an option);
- ``pack --min-bytes N`` said nothing of the constants it left alone under N (all of them, for a
  large N: "no tensor packed ... `dc-keras inspect IN` says why per tensor", where inspect, at the
  default min_bytes, called them packable); now a "skipped:" line, and the inspect command named
  carries ``--min-bytes N``;
- ``pack --layouts dense`` (``layouts=("dense",)``) on an unclustered float kernel reported "the
  codec refuses its data: more than 4096 distinct values: cluster the tensor first", as if only
  clustering could pack it; now, as for ``--decoder`` and ``--format-version``, it names the
  option that left out layout float_planes and the size the default packs it to; a weight those
  options' layouts pack by too little (an unclustered 64x32 float kernel under --decoder minimal) was
  "kept raw: ... typically weights neither pruned nor clustered", while the inspect named called it
  packable: now kept raw with those options as the reason;
- the C tools' (``dc_decode``, ``dc_unpack``) read-only-OUT line named ``chmod u+w PATH`` unquoted too
  (tested in test_c_tools.test_a_read_only_output_is_refused);
- ``dc-keras pack m.tflite - > m.tflite``: the shell empties m.tflite before dc-keras starts, and the
  error said only "inputs are never modified"; it now says the input is empty now and why. The
  terminal-as-OUT and FIFO-as-OUT errors' suggested commands showed IN (and OUT) unquoted;
- ``pack --layouts dense --layouts float_planes`` packed with float_planes alone (argparse keeps the
  last value) without a word: now a usage error naming the one list to give;
- ``dc-keras pack --version`` (pack's alias of ``--format-version``) with no value: "expected one
  argument" only; now it also says where dc-keras's own ``--version`` goes;
- ``pack --layouts context_sparse`` without ``--context-model`` failed after reading IN, worded in
  Python (``layouts=('context_sparse',)``, ``context_model=True``), exit 1: now a usage error naming
  the flag to add, before any file is read.
"""
import os
import shlex
import stat

import numpy as np
import pytest

from dc_keras import _fileio, cli, export

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def plain():
    """A float .tflite from TF's converter: an unclustered 64x96 kernel (over 4096 distinct values:
    only layout float_planes packs it) and a 96x4 one, kept raw (packs by less than the op costs)."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(96, activation="relu"),
                              keras.layers.Dense(4)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _pack(capsys, *args):
    rc = cli.main(["pack", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _commands(text, verb):
    """The `dc-keras VERB ...` commands quoted in ``text``, split as a shell splits them."""
    return [shlex.split(part) for part in text.split("`") if part.startswith(f"dc-keras {verb} ")]


@pytest.mark.parametrize("name", ["my model.tflite", "-model's.tflite"])
def test_the_inspect_command_a_report_names_runs_as_pasted(plain, tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(plain)
    rc, out, err = _pack(capsys, "--", name, "out.tflite") if name.startswith("-") else _pack(capsys, name,
                                                                                             "out.tflite")
    assert rc == 0, err
    assert "kept raw:" in out, out
    commands = _commands(out, "inspect")
    assert commands, out
    for argv in commands:
        assert argv[-1] in (name, "./" + name), (argv, out)
        assert cli.main(argv[1:]) == 0, capsys.readouterr().err
        assert "kept" in capsys.readouterr().out
    assert (tmp_path / name).read_bytes() == plain


def test_the_unpack_command_for_an_already_packed_input_runs_as_pasted(plain, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    packed = tmp_path / "packed model.tflite"
    packed.write_bytes(export.pack(plain))
    rc, out, err = _pack(capsys, packed.name, "again.tflite")
    assert rc == 1 and "already packed" in err, err
    (argv,) = _commands(err, "unpack")
    assert argv[2] == packed.name, err
    assert cli.main(argv[1:]) == 0, capsys.readouterr().err
    assert export.unpack((tmp_path / "PLAIN.tflite").read_bytes()) == (tmp_path / "PLAIN.tflite").read_bytes()


def test_the_chmod_a_read_only_output_error_names_runs_as_pasted(tmp_path, monkeypatch):
    """The read-only-output error (what a non-root user gets; root may replace the file, as cp
    does: _fileio._writable reports it not writable here) names ``chmod u+w PATH`` quoted."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "my out.tflite"
    out.write_bytes(b"old")
    out.chmod(0o444)
    real = _fileio._writable
    monkeypatch.setattr(_fileio, "_writable", lambda p, mode=os.W_OK: real(p, mode) and not str(p).endswith(out.name))
    with pytest.raises(PermissionError) as info:
        _fileio.check_writable(out.name)
    message = str(info.value)
    assert "chmod u+w 'my out.tflite'" in message, message
    assert shlex.split(message.split("(chmod ")[1].split(")")[0]) == ["u+w", out.name]


def test_shell_path():
    assert _fileio.shell_path("model.tflite") == "model.tflite"
    assert _fileio.shell_path("a b/ü.tflite") == "'a b/ü.tflite'"
    assert _fileio.shell_path("-x.tflite") == "./-x.tflite"
    assert _fileio.shell_path("it's.tflite") == "'it'\"'\"'s.tflite'"
    assert _fileio.shell_path("a\nb") == _fileio.show_path("a\nb")  # never a line break in a message


def test_pack_says_what_an_explicit_min_bytes_left_alone(plain, tmp_path, capsys):
    src, dst = tmp_path / "m.tflite", tmp_path / "out.tflite"
    src.write_bytes(plain)
    rc, out, err = _pack(capsys, "--min-bytes", 10 ** 6, src, dst)
    assert rc == 0, err
    assert dst.read_bytes() == plain  # nothing packed: written unchanged
    lines = out.splitlines()
    skipped = [ln for ln in lines if ln.startswith("skipped:")]
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(plain)
    sizes = {t.buffer: fb.buffer_size(model, t.buffer) for t in model.subgraphs[0].tensors if t.buffer > 0
             and fb.buffer_size(model, t.buffer)}
    assert skipped == [f"skipped: {len(sizes)} constant tensor(s), {sum(sizes.values())} B, smaller than "
                       "--min-bytes 1000000 (left alone, as asked: a lower --min-bytes lets pack try them)"], out
    (argv,) = _commands(lines[0], "inspect")
    assert argv[2:4] == ["--min-bytes", "1000000"], lines[0]
    assert cli.main(argv[1:]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if "float32" in ln]
    assert rows and all(" skipped " in ln for ln in rows), rows  # what "says why per tensor" promised
    # the default min_bytes: no such line (a few biases and shapes; inspect's totals say them)
    rc, out, err = _pack(capsys, src, dst)
    assert rc == 0 and "skipped:" not in out and "--min-bytes" not in out, out


def test_a_layouts_restriction_is_named_as_the_reason_a_tensor_stays_raw(plain, tmp_path, capsys):
    src, dst = tmp_path / "m.tflite", tmp_path / "out.tflite"
    src.write_bytes(plain)
    full = len(export.pack(plain))
    rc, out, err = _pack(capsys, "--layouts", "dense,sparse", src, dst)
    assert rc == 0, err
    (row,) = [ln for ln in out.splitlines() if ln.startswith("  ") and "24576 B" in ln]
    assert "--layouts dense,sparse leaves out" in row and "'float_planes'" in row, row  # CLI spelling (s52)
    assert "the default, no --layouts, packs it (" in row, row
    assert len(export.pack(plain, layouts=("dense", "sparse", "float_planes"))) == full
    with pytest.warns(UserWarning, match=r"layouts=\('dense',\) leaves out"):
        export.pack(plain, layouts=("dense",))
    # each option that leaves the layout out is named, the defaults of all of them packing it
    rc, out, err = _pack(capsys, "--layouts", "dense", "--format-version", "1", src, dst)
    assert "--format-version 1 --layouts dense keeps it raw" in out, out
    assert "the defaults, no --format-version and no --layouts, pack it" in out, out


def test_packed_outputs_are_bit_identical_and_umask_respected(plain, tmp_path, capsys):
    """The files of the tests above, packed with the options combined, run bit for bit as the
    original through LiteRT's interpreter with the library's delegate (docs/runtime.md)."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    from dc_keras import runtime

    src = tmp_path / "m ü.tflite"
    src.write_bytes(plain)
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)

    def outputs(path, delegate):
        kw = {"experimental_delegates": [litert.load_delegate(runtime.library_path())]} if delegate else {}
        it = litert.Interpreter(model_path=str(path), **kw)
        return it.get_signature_runner()(**{next(iter(it.get_signature_runner().get_input_details())): x})

    want = {k: v.tobytes() for k, v in outputs(src, False).items()}
    old = os.umask(0o027)
    try:
        for i, opts in enumerate((["--layouts", "dense,float_planes", "--strip-strings"],
                                  ["--min-bytes", "2000", "--buffers", "external", "--format-version", "2"])):
            dst = tmp_path / f"out {i}.tflite"
            rc, out, err = _pack(capsys, *opts, src, dst)
            assert rc == 0, err
            assert stat.S_IMODE(dst.stat().st_mode) == 0o640
            assert {k: v.tobytes() for k, v in outputs(dst, True).items()} == want, opts
    finally:
        os.umask(old)
    assert src.read_bytes() == plain


def test_layouts_context_sparse_without_context_model_is_a_usage_error_in_flags(tmp_path, capsys):
    """It was found after reading IN, worded in Python (``layouts=('context_sparse',)``,
    ``context_model=True``), exit 1; now a usage error (exit 2) before any file is read, naming the
    flag to add."""
    rc = cli.main(["pack", "--layouts", "context_sparse", str(tmp_path / "absent.tflite"), str(tmp_path / "o.tflite")])
    err = capsys.readouterr().err
    assert rc == 2, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("dc-keras pack: error:")]
    assert "add --context-model" in line and "absent.tflite" not in line and "context_model=" not in line, line
    assert not (tmp_path / "o.tflite").exists()


def test_a_weight_only_the_options_make_pack_too_little_is_kept_raw_with_that_reason(tmp_path, capsys):
    """An unclustered 64x32 float kernel (2048 distinct values): float planes pack it (the
    default), the dense codebook layout only to more than raw. With --decoder minimal or --layouts
    dense,sparse, pack's "kept raw" line said "packing saves less than min_saving ... (typically
    weights neither pruned nor clustered)", and the inspect it named called the kernel packable;
    now it names those options as the reason."""
    import keras

    from dc_keras.export._pack import pack_with_stats

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, use_bias=False)])
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert pack_with_stats(data)[1]["packed_tensors"] == 1
    for kw in ({"decoder": "minimal"}, {"layouts": ("dense", "sparse")}, {"version": 1}):
        _, stats = pack_with_stats(data, **kw)
        assert stats["packed_tensors"] == 0 and [n for _, n in stats["kept_raw"]] == [8192], kw
        assert stats["kept_raw_kinds"] == ["restricted"], kw
    src = tmp_path / "m.tflite"
    src.write_bytes(data)
    rc, out, err = _pack(capsys, "--layouts", "dense,sparse", src, tmp_path / "o.tflite")
    assert rc == 0, err
    (line,) = [ln for ln in out.splitlines() if ln.startswith("kept raw:")]
    assert "kept raw: 1 constant tensor(s), 8192 B, the layouts allowed by --decoder, --layouts or " \
           "--format-version (decoder=, layouts=, version=) pack them by too little; the defaults pack them " \
           "smaller: " in line, line
    # with no option restricting the layouts the reason stays the weights' own
    _, stats = pack_with_stats(data, min_saving=0.9)
    assert stats["kept_raw_kinds"] == ["weights"]


@pytest.mark.parametrize("argv", [["pack", "--version"], ["pack", "m.tflite", "o.tflite", "--version"]])
def test_pack_version_without_a_value_names_dc_keras_version(capsys, argv):
    """``--version`` is ``pack``'s alias of ``--format-version``: without a value it was only
    "expected one argument", for a user who asked for dc-keras's version after the command."""
    assert cli.main(argv) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert "expected one argument" in line and "`dc-keras --version`, before the command" in line, line


def test_standard_output_redirected_over_the_input_says_the_shell_emptied_it(plain, tmp_path):
    """``dc-keras pack m.tflite - > m.tflite``: the shell empties m.tflite before dc-keras starts;
    the error said "inputs are never modified" only, while the model was gone from that file."""
    import subprocess
    import sys

    src = tmp_path / "my model.tflite"
    src.write_bytes(plain)
    with open(src, "wb") as f:  # what the shell's > does before dc-keras runs
        r = subprocess.run([sys.executable, "-m", "dc_keras", "pack", str(src), "-"], stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("dc-keras pack: error:")]
    assert f"standard output is {src}, the input, which is empty now (the shell's > IN empties it before " \
           "dc-keras starts: copy the model there again)" in line, line
    assert line.endswith("redirect standard output to another file (dc-keras pack IN - > OUT.tflite)"), line
    assert src.read_bytes() == b""


def test_the_redirect_a_terminal_error_suggests_runs_as_pasted(plain, tmp_path):
    import pty
    import subprocess
    import sys

    src = tmp_path / "my model.tflite"
    src.write_bytes(plain)
    master, slave = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "dc_keras", "pack", str(src), "-"], stdout=slave,
                           stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 1
    assert f"(dc-keras pack {shlex.quote(str(src))} - > OUT.tflite)" in r.stderr, r.stderr


def test_the_way_out_a_fifo_output_error_suggests_runs_as_pasted(plain, tmp_path, capsys):
    src, fifo = tmp_path / "my model.tflite", tmp_path / "my pipe"
    src.write_bytes(plain)
    os.mkfifo(fifo)
    rc, out, err = _pack(capsys, src, fifo)
    assert rc == 1, err
    assert f"(dc-keras pack {shlex.quote(str(src))} - > {shlex.quote(str(fifo))})" in err, err


def test_layouts_given_twice_is_a_usage_error_not_the_last_list_alone(plain, tmp_path, capsys):
    """``--layouts dense --layouts float_planes`` packed with float_planes alone (argparse keeps the
    last value), without a word; now a usage error naming the one list to give. The same list
    twice stays accepted."""
    src, dst = tmp_path / "m.tflite", tmp_path / "o.tflite"
    src.write_bytes(plain)
    rc, out, err = _pack(capsys, "--layouts", "dense", "--layouts=float_planes", src, dst)
    assert rc == 2 and not dst.exists(), err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("dc-keras pack: error:")]
    assert line.endswith("argument --layouts: given twice (dense, then float_planes), and only one list is used: "
                         "give every layout in one, e.g. --layouts dense,float_planes"), line
    rc, out, err = _pack(capsys, "--layouts", "dense,sparse", "--layouts", "sparse,dense", src, dst)
    assert rc == 0, err


def test_positive_zeros_with_no_negative_zero_says_it_had_nothing_to_do(plain, tmp_path, capsys):
    """``pack --positive-zeros`` on weights without a -0.0 printed nothing of the option, as if it
    had not been read; now one line says there was nothing to change (and the file is the default's)."""
    src, default, asked = tmp_path / "m.tflite", tmp_path / "default.tflite", tmp_path / "asked.tflite"
    src.write_bytes(plain)
    rc, out, err = _pack(capsys, src, default)
    assert rc == 0 and "positive zeros" not in out, out + err
    rc, out, err = _pack(capsys, "--positive-zeros", src, asked)
    assert rc == 0, err
    assert asked.read_bytes() == default.read_bytes()
    assert "positive zeros: no packed float weight holds -0.0: nothing to change" in out, out
