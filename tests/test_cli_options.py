"""``dc-keras``'s command line as users type it: absl's flags and the commands' options, OUT on a
standard stream, the demo's arguments, and the files ``tf.lite`` writes through ``pack`` / ``unpack``.

Reviewed as an engineer who has a .tflite and wants it smaller (helper session 46):

- absl's flags before the command (``--verbosity``, ``--stderrthreshold``, ``--flagfile``), which absl
  parses itself, ended in a Python traceback on a bad value or an unreadable flag file (exit 1);
  now one ``dc-keras: error: ...`` line and exit 2, as for argparse's usage errors;
- the packer's promise, "any .tflite, whoever made it, bit-exact", on files ``tf.lite`` writes from
  ``tf.function`` / ``tf.Module`` / concrete functions / a SavedModel: several signatures, WHILE and
  IF subgraphs, a string constant, resource variables (state kept across calls), float16,
  dynamic-range, int16x8 and int8-I/O quantized, every weight zero, no weights at all. Each goes
  through ``dc-keras pack`` and ``unpack`` (IN untouched, OUT's mode from the umask) and gives the
  original's outputs bit for bit, on every signature: the packed file through
  ``runtime.Interpreter`` (default route, and TF's op route without default delegates), the
  unpacked one through the plain interpreter; the unpacked file's tensors hold the original bytes.
  Packing the packed file again, or unpacking a file with nothing packed, is one clear error.

Reviewed again as a user types it, through ``python -m dc_keras`` (helper session 47):

- an unknown option before the command (``dc-keras --no_such_flag pack ...``, a typo of a global
  flag) was blamed on the command, with the command's usage and "`dc-keras pack --help` lists its
  options", where it is not; now the top-level usage and one error naming the option, that it was
  before the command, and the options valid there (or that it is the command's, to go after it);
- a command's options took abbreviations (argparse's prefix matching: ``--min_b=10`` was
  ``--min_bytes``, ``--vers 2`` was ``--format-version``), so a typo could silently become another
  option; refused now (exit 2), naming the option it would have been taken for;
- ``dc-keras pack m.tflite /dev/stdout > f.tflite``: the rename of the atomic write replaced
  f.tflite through /proc/self/fd/1 and the report went to the replaced inode (lost); with stdout a
  pipe it was refused as a FIFO, and ``-`` was refused. OUT ``-`` (or /dev/stdout, /dev/fd/1) now
  writes the model to standard output, the same bytes as to a file, and the report to stderr;
  stdout on a terminal, closed, full, or being IN itself (``>> IN``) is one clear error; /dev/stderr
  and /dev/stdin as OUT, and --plot on a standard stream, are usage errors;
- ``dc-keras demo --out_dir X`` checked X after Keras and TensorFlow had loaded (7-13 s); now
  first, with nothing heavy imported. ``--out_dir ""`` ran the demo into a temporary directory,
  ``--seed -1`` failed after Keras loaded: both usage errors now;
- an input path longer than PATH_MAX was "a name in the path is longer than the file system
  allows" (no name was): it now says the whole path is too long.
"""
import hashlib
import os
import pty
import stat
import subprocess
import sys

import numpy as np
import pytest

import _export_models as em
from dc_keras import _flatbuffer as fb
from dc_keras import cli, export, runtime

tf = pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")


def _run(*args, timeout=300, **kwargs):
    """``python -m dc_keras ARGS`` as a user runs it: CompletedProcess, text unless told otherwise."""
    kwargs.setdefault("capture_output", "stdout" not in kwargs and "stderr" not in kwargs)
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, "-m", "dc_keras", *map(str, args)], timeout=timeout, **kwargs)


def _one_error_line(err, prefix="dc-keras: error: "):
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small float .tflite with a clustered, pruned weight (what pack packs)."""
    w = np.random.default_rng(0).choice(np.linspace(-1, 1, 8).astype(np.float32), (32, 64))

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
        def f(self, x):
            return tf.matmul(x, w)

    m = M()
    path = tmp_path_factory.mktemp("cli_model_file") / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m).convert())
    return path


@pytest.mark.parametrize("flags, expected", [
    (["--verbosity=abc"], "dc-keras: error: flag --verbosity=abc: invalid literal for int() with base 10: 'abc'; "
                          "`dc-keras --helpfull` lists these flags"),
    (["--stderrthreshold=loud"], "dc-keras: error: --stderrthreshold must be one of"),
    (["--flagfile={missing}"], "dc-keras: error: --flagfile {missing}: No such file or directory: give a readable "
                               "text file of flags, one per line"),
    (["--flagfile={dir}"], "dc-keras: error: --flagfile {dir}: Is a directory: give a readable text file of flags"),
    (["--flagfile={model}"], "dc-keras: error: a --flagfile is not text ('utf-8' codec can't decode byte"),
    (["--flagfile={bad_flags}"], "dc-keras: error: flag --verbosity=zz: invalid literal"),
])
def test_a_bad_absl_flag_is_one_usage_error_not_a_traceback(model_file, tmp_path, capsys, flags, expected):
    """absl parses its flags (and reads --flagfile) inside the parser and raised IllegalFlagValueError,
    CantOpenFlagFileError, UnicodeDecodeError or a ValueError through dc-keras: a traceback, exit 1."""
    bad_flags = tmp_path / "flags.txt"
    bad_flags.write_text("--verbosity=zz\n")
    names = {"missing": str(tmp_path / "no_such_flags"), "dir": str(tmp_path), "model": str(model_file),
             "bad_flags": str(bad_flags)}
    flags = [f.format(**names) for f in flags]
    out = tmp_path / "p.tflite"
    assert cli.main([*flags, "pack", str(model_file), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dc-keras "), err
    assert _one_error_line(err).startswith(expected.format(**names)), err
    assert not out.exists()


def test_flagfile_with_no_argument_is_one_usage_error(capsys):
    assert cli.main(["--flagfile"]) == 2
    assert _one_error_line(capsys.readouterr().err) == ("dc-keras: error: --flagfile with no argument; "
                                                        "`dc-keras --helpfull` lists these flags")


def test_a_bad_absl_flag_through_the_console_entry_point(model_file, tmp_path):
    """The same through ``python -m dc_keras`` (where the traceback was printed): exit 2, one line."""
    r = _run("--verbosity=abc", "pack", model_file, tmp_path / "p.tflite")
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert _one_error_line(r.stderr) == ("dc-keras: error: flag --verbosity=abc: invalid literal for int() with "
                                         "base 10: 'abc'; `dc-keras --helpfull` lists these flags")
    assert not (tmp_path / "p.tflite").exists()


def test_good_absl_flags_still_work(model_file, tmp_path, capsys):
    flags = tmp_path / "flags.txt"
    flags.write_text("--verbosity=0\n")
    for i, before in enumerate((["--verbosity=0"], [f"--flagfile={flags}"], ["--logtostderr"])):
        out = tmp_path / f"p{i}.tflite"
        assert cli.main([*before, "pack", str(model_file), str(out)]) == 0, capsys.readouterr().err
        assert out.read_bytes()[4:8] == b"TFL3"


# ---- unusual but valid tf.lite files ---------------------------------------------------------


def _clustered(shape, seed):
    rng = np.random.default_rng(seed)
    w = rng.choice(np.linspace(-1, 1, 8).astype(np.float32), shape)
    w[rng.random(shape) < 0.7] = 0
    return w


W1, W2, W3 = _clustered((32, 64), 1), _clustered((64, 16), 2), _clustered((32, 16), 3)


def _convert(module, *fns, setup=None):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function() for f in fns], module)
    if setup is not None:
        setup(conv)
    return bytes(conv.convert())


def _representative():
    rng = np.random.default_rng(9)
    for _ in range(16):
        yield [rng.standard_normal((1, 32)).astype(np.float32)]


def _float16(c):
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_types = [tf.float16]


def _dynamic_range(c):
    c.optimizations = [tf.lite.Optimize.DEFAULT]


def _int16x8(c):
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = _representative
    c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


def _int8_io(c):
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = _representative
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = c.inference_output_type = tf.int8


def _make(kind, workdir):
    """The .tflite bytes of ``kind``, written by tf.lite's converter."""
    spec = tf.TensorSpec([1, 32], tf.float32)
    if kind in ("signatures", "signatures_saved_model"):
        class Sig(tf.Module):
            @tf.function(input_signature=[spec])
            def enc(self, x):
                return {"h": tf.nn.relu(tf.matmul(x, W1))}

            @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
            def dec(self, h):
                return {"y": tf.matmul(h, W2)}

            @tf.function(input_signature=[spec])
            def both(self, x):
                return {"y": tf.matmul(tf.nn.relu(tf.matmul(x, W1)), W2), "z": tf.matmul(x, W3)}

        m = Sig()
        if kind == "signatures":
            return _convert(m, m.enc, m.dec, m.both)
        tf.saved_model.save(m, str(workdir / "sm"), signatures={k: getattr(m, k).get_concrete_function()
                                                                for k in ("enc", "dec", "both")})
        return bytes(tf.lite.TFLiteConverter.from_saved_model(str(workdir / "sm"),
                                                              signature_keys=["enc", "dec", "both"]).convert())
    if kind == "while_if":
        class CF(tf.Module):
            @tf.function(input_signature=[spec])
            def f(self, x):
                def body(i, h):
                    return i + 1, tf.tanh(tf.matmul(tf.matmul(h, W1), tf.transpose(W1)) * 0.1 + h)

                _, h = tf.while_loop(lambda i, _h: i < 3, body, [tf.constant(0), x])
                return tf.cond(tf.reduce_sum(h) > 0, lambda: tf.matmul(h, W3), lambda: tf.matmul(h - 1.0, W3) * 2.0)

        m = CF()
        return _convert(m, m.f)
    if kind == "strings":
        vocab = tf.constant([(b"word%03d" % i) * (1 + i % 5) for i in range(300)])

        class Str(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([4], tf.int32), spec])
            def f(self, i, x):
                return {"words": tf.gather(vocab, i), "y": tf.matmul(x, W1)}

        m = Str()
        return _convert(m, m.f)
    if kind == "resource_variables":
        class Var(tf.Module):
            def __init__(self):
                self.v = tf.Variable(_clustered((1, 64), 4))

            @tf.function(input_signature=[spec])
            def f(self, x):
                y = tf.matmul(x, W1) + self.v
                self.v.assign(self.v * 0.5 + y * 0.5)
                return {"y": tf.matmul(y, W2)}

        m = Var()
        tf.saved_model.save(m, str(workdir / "sm"), signatures={"serving_default": m.f.get_concrete_function()})
        conv = tf.lite.TFLiteConverter.from_saved_model(str(workdir / "sm"))
        conv.experimental_enable_resource_variables = True
        return bytes(conv.convert())
    if kind in ("float16", "dynamic_range", "int16x8", "int8_io"):
        class MLP(tf.Module):
            @tf.function(input_signature=[spec])
            def f(self, x):
                return tf.matmul(tf.nn.relu(tf.matmul(x, W1) + 0.1), W2)

        m = MLP()
        return _convert(m, m.f, setup=globals()["_" + kind])
    if kind == "zero_weights":
        class Z(tf.Module):
            @tf.function(input_signature=[spec])
            def f(self, x):
                return tf.matmul(x, tf.zeros([32, 64])) + x[:, :1]

        m = Z()
        return _convert(m, m.f)
    if kind == "no_weights":
        class E(tf.Module):
            @tf.function(input_signature=[spec])
            def f(self, x):
                return tf.nn.relu(x * x)

        m = E()
        return _convert(m, m.f)
    raise ValueError(kind)


def _inputs(details, seed):
    rng = np.random.default_rng(seed)
    dtype, shape = np.dtype(details["dtype"]), [max(1, int(s)) for s in details["shape"]]
    if dtype == np.float32:
        return rng.standard_normal(shape).astype(dtype)
    if dtype == np.int32:  # the string table's indices
        return rng.integers(0, 300, shape).astype(dtype)
    assert dtype == np.int8, dtype
    return rng.integers(-100, 100, shape).astype(dtype)


def _outputs(it):
    """{(signature, call, output): array} for 3 calls of every signature in turn, each input seeded by
    the call's number (_inputs)."""
    return em.signature_outputs(it, lambda details, call: {n: _inputs(d, call) for n, d in details.items()})


KINDS = ["signatures", "signatures_saved_model", "while_if", "strings", "resource_variables", "float16",
         "dynamic_range", "int16x8", "int8_io", "zero_weights", "no_weights"]


@pytest.mark.parametrize("kind", KINDS)
def test_tf_lite_files_pack_and_unpack_through_the_cli_bit_exact(kind, tmp_path, capsys):
    from tensorflow.lite.python.interpreter import Interpreter as TFInterpreter
    from tensorflow.lite.python.interpreter import OpResolverType

    data = _make(kind, tmp_path)
    src, packed_path, plain_path = tmp_path / "in.tflite", tmp_path / "out.tflite", tmp_path / "back.tflite"
    src.write_bytes(data)
    src.chmod(0o640)
    before = (hashlib.sha256(data).hexdigest(), os.stat(src).st_mtime_ns, stat.S_IMODE(os.stat(src).st_mode))
    umask = os.umask(0o027)
    try:
        assert cli.main(["pack", str(src), str(packed_path)]) == 0, capsys.readouterr().err
    finally:
        os.umask(umask)
    report = capsys.readouterr().out
    assert report.startswith(f"{src}: {len(data)} B -> {packed_path}: "), report
    assert stat.S_IMODE(os.stat(packed_path).st_mode) == 0o640  # 0666 & ~0027
    assert (hashlib.sha256(src.read_bytes()).hexdigest(), os.stat(src).st_mtime_ns,
            stat.S_IMODE(os.stat(src).st_mode)) == before
    packed = packed_path.read_bytes()
    has_huffdecode = any(fb.is_huffdecode_code(c) for c in fb.read_model(packed).operatorCodes or [])
    if kind == "no_weights":  # nothing to pack: the copy is the input, and unpack says it is not packed
        assert not has_huffdecode and packed == data
        assert report.endswith("(no tensor packed: written unchanged; the model holds no constant tensor (weights), "
                               "so there is nothing to pack)\n"), report
    else:
        assert has_huffdecode and len(packed) < len(data), (kind, len(packed), len(data))
    if kind == "strings":  # the string table stays raw, and the report says why
        assert "string: no packed-format element type for it" in report, report

    reference = _outputs(litert.Interpreter(model_content=data))
    em.assert_bit_identical(reference, _outputs(runtime.Interpreter(model_content=packed)))
    no_delegates = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    em.assert_bit_identical(_outputs(TFInterpreter(model_content=data, experimental_op_resolver_type=no_delegates)),
                            _outputs(runtime.Interpreter(model_content=packed, backend="tensorflow", decode="op",
                                                         experimental_op_resolver_type=no_delegates)))

    # packing the packed file again: one clear error, nothing written
    again = tmp_path / "again.tflite"
    status = cli.main(["pack", str(packed_path), str(again)])
    err = capsys.readouterr().err
    if has_huffdecode:
        assert status == 1 and not again.exists()
        assert _one_error_line(err, "dc-keras pack: error: ") == (
            f"dc-keras pack: error: {packed_path} is already packed (it has HuffDecode ops), so there is nothing to "
            f"pack: use it as it is, or run `dc-keras unpack {packed_path} PLAIN.tflite` first to pack it again "
            "with other options")
    else:
        assert status == 0 and again.read_bytes() == data, err

    status = cli.main(["unpack", str(packed_path), str(plain_path)])
    err = capsys.readouterr().err
    if not has_huffdecode:
        assert status == 1 and not plain_path.exists()
        assert "is not packed (it has no HuffDecode op)" in _one_error_line(err, "dc-keras unpack: error: ")
        return
    assert status == 0, err
    back = plain_path.read_bytes()
    assert not any(fb.is_huffdecode_code(c) for c in fb.read_model(back).operatorCodes or [])
    em.assert_bit_identical(reference, _outputs(litert.Interpreter(model_content=back)))
    a, b = fb.read_model(data), fb.read_model(back)
    assert len(a.subgraphs) == len(b.subgraphs)
    for sa, sb in zip(a.subgraphs, b.subgraphs):
        assert [fb.buffer_bytes(a, t.buffer) for t in sa.tensors] == [fb.buffer_bytes(b, t.buffer) for t in sb.tensors]
    assert [(m.name, fb.buffer_bytes(a, m.buffer)) for m in a.metadata] == \
           [(m.name, fb.buffer_bytes(b, m.buffer)) for m in b.metadata]  # min_runtime_version, CONVERSION_METADATA, ...


def test_pack_of_a_model_without_constants_says_so_not_to_ask_inspect(model_file, tmp_path, capsys):
    """A model whose weights were stripped (every buffer emptied), or that has none: pack's summary
    said "`dc-keras inspect FILE` says why per tensor", and inspect lists no tensor at all. It now
    says there is no constant tensor; a model with constants that packs none still points at inspect."""
    model = fb.read_model(model_file.read_bytes())
    for b in model.buffers:
        b.data = None
    stripped = tmp_path / "stripped.tflite"
    stripped.write_bytes(fb.write_model(model))
    for extra, unchanged in (([], True), (["--compact"], False)):
        assert cli.main(["pack", str(stripped), str(tmp_path / "p.tflite"), *extra]) == 0
        out = capsys.readouterr().out
        assert f"(no tensor packed{': written unchanged' if unchanged else ''}; the model holds no constant tensor " \
               "(weights), so there is nothing to pack)" in out, out
    assert cli.main(["pack", "--min-bytes", "1000000", str(model_file), str(tmp_path / "q.tflite")]) == 0
    # the inspect named carries --min-bytes, so that its rows say "skipped" (session 49)
    assert f"(no tensor packed: written unchanged; `dc-keras inspect --min-bytes 1000000 {model_file}` says why " \
        "per tensor)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(directory, plain .tflite path, its bytes, the packed bytes ``export.pack`` makes)."""
    d = tmp_path_factory.mktemp("cli_files")
    plain = em.tflite("dense", None)
    (d / "m.tflite").write_bytes(plain)
    packed = export.pack(plain)
    (d / "p.tflite").write_bytes(packed)
    return d, d / "m.tflite", plain, packed


# ---- 1. an unknown option before the command ------------------------------------------------

TOP_USAGE = "usage: dc-keras [-h] [--helpfull] [--version] COMMAND ..."
VALID_BEFORE = ("the options valid before a command are -h/--help, --helpfull, --version, --verbosity/-v, "
                "--logtostderr/--nologtostderr, --alsologtostderr/--noalsologtostderr, --stderrthreshold, "
                "--log_dir, --flagfile, --undefok (`dc-keras --helpfull` describes them)")


@pytest.mark.parametrize("before, command, expected", [
    (["--no_such_flag"], "pack", "unknown option --no_such_flag before the command pack; " + VALID_BEFORE
     + "; pack's own options go after it (`dc-keras pack --help` lists them)"),
    (["--verbosty=1"], "pack", "unknown option --verbosty=1 before the command pack (did you mean --verbosity?); "
     + VALID_BEFORE),
    (["-x"], "inspect", "unknown option -x before the command inspect; " + VALID_BEFORE),
    (["--no_such_flag", "--other"], "unpack", "unknown options --no_such_flag --other before the command unpack"),
    (["--logtostder"], "pack", "before the command pack: --logtostder is not an option, only the start of "
     "--logtostderr, and abbreviations are not accepted (a typo must not be taken for another option): write "
     "--logtostderr in full"),
    (["--verb=1"], "unpack", "before the command unpack: --verb is not an option, only the start of --verbosity"),
    (["--min_bytes=10"], "pack", "--min_bytes is an option of pack and goes after the command, not before it: "
     "dc-keras pack ... --min_bytes=10"),
    (["--plot=x.png"], "inspect", "--plot is an option of inspect and goes after the command, not before it: "
     "dc-keras inspect ... --plot=x.png"),
])
def test_an_unknown_option_before_the_command_is_not_blamed_on_the_command(files, tmp_path, before, command,
                                                                             expected):
    _, plain_path, _, _ = files
    src = files[0] / ("p.tflite" if command == "unpack" else "m.tflite")
    outs = [] if command == "inspect" else [tmp_path / "o.tflite"]
    r = _run(*before, command, src if command != "pack" else plain_path, *outs, "--typo_after")
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    # the top-level usage, not the command's, and the error about the option before it (not --typo_after)
    assert r.stderr.splitlines()[0] == TOP_USAGE, r.stderr
    assert len(r.stderr.splitlines()) == 2, r.stderr
    assert _one_error_line(r.stderr, "dc-keras: error: ").startswith("dc-keras: error: " + expected), r.stderr
    assert "unrecognized arguments" not in r.stderr and f"dc-keras {command}: error" not in r.stderr
    assert os.listdir(tmp_path) == [] and not (tmp_path.parent / "x.png").exists()


def test_an_unknown_option_after_the_command_is_still_the_commands_and_undefok_still_works(files, tmp_path):
    _, src, plain, packed = files
    r = _run("pack", src, tmp_path / "o.tflite", "--no_such_flag")
    assert r.returncode == 2 and r.stderr.startswith("usage: dc-keras pack "), r.stderr
    assert _one_error_line(r.stderr, "dc-keras pack: error: ") == ("dc-keras pack: error: unrecognized arguments: "
                                                          "--no_such_flag; `dc-keras pack --help` lists its options")
    # absl's --undefok (accept these unknown flags) covers them on either side of the command, as before
    for i, args in enumerate((["--undefok=foo", "--foo", "pack", src], ["--undefok=foo", "pack", src, "--foo"])):
        out = tmp_path / f"u{i}.tflite"
        r = _run(*args, out)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == packed


# ---- 2. abbreviations of a command's options ----------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["pack", "{m}", "{o}", "--min_b=10"], "dc-keras pack: error: --min_b is not an option, only the start of "
     "--min_bytes, and abbreviations are not accepted (a typo must not be taken for another option): write "
     "--min_bytes in full"),
    (["pack", "{m}", "{o}", "--min-b", "10"], "dc-keras pack: error: --min-b is not an option, only the start of "
     "--min-bytes,"),
    (["pack", "{m}", "{o}", "--comp"], "dc-keras pack: error: --comp is not an option, only the start of --compact,"),
    (["pack", "{m}", "{o}", "--no-comp"], "dc-keras pack: error: --no-comp is not an option, only the start of "
     "--no-compact,"),
    (["pack", "{m}", "{o}", "--co"], "dc-keras pack: error: --co is not an option, only the start of --compact and "
     "--context-model, and abbreviations are not accepted: write the option you mean in full"),
    (["pack", "{m}", "{o}", "--vers", "2"], "dc-keras pack: error: --vers is not an option, only the start of "
     "--version,"),
    (["pack", "{m}", "{o}", "--strip"], "dc-keras pack: error: --strip is not an option, only the start of "
     "--strip-strings,"),
    (["unpack", "{p}", "{o}", "--buf=inline"], "dc-keras unpack: error: --buf is not an option, only the start of "
     "--buffers,"),
    (["inspect", "{p}", "--pl={x}"], "dc-keras inspect: error: --pl is not an option, only the start of --plot,"),
    (["demo", "--ep=1", "--out_dir={x}"], "dc-keras demo: error: --ep is not an option, only the start of --epochs,"),
])
def test_an_abbreviated_option_is_refused_naming_the_option(files, tmp_path, args, expected):
    """argparse took ``--min_b=10`` for ``--min_bytes=10`` silently (allow_abbrev was off at the top
    level only): a typo, or an option added later that shares the prefix, changed the result."""
    d, _, _, _ = files
    names = {"m": d / "m.tflite", "p": d / "p.tflite", "o": tmp_path / "o.tflite", "x": tmp_path / "x.png"}
    r = _run(*[a.format(**names) for a in args])
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"usage: dc-keras {args[0]} "), r.stderr
    assert _one_error_line(r.stderr, f"dc-keras {args[0]}: error: ").startswith(expected), r.stderr
    assert os.listdir(tmp_path) == []  # nothing written (the demo did not start)


def test_full_names_both_spellings_and_negations_still_work(files, tmp_path):
    """The options written in full (both spellings), ``--no-compact``, and absl's ``--nologtostderr``
    and ``-v`` before the command: the outputs are bit-identical to the Python API's."""
    _, src, plain, packed = files
    cases = [(["--nologtostderr", "pack", src, "{o}", "--no-compact", "--min_bytes=10"],
              export.pack(plain, min_bytes=10, compact=False)),
             (["-v", "0", "pack", src, "{o}", "--min-bytes", "10", "--compact"], export.pack(plain, min_bytes=10)),
             (["pack", src, "{o}", "--format-version", "2"], export.pack(plain, version=2)),
             (["pack", src, "{o}", "--version=2"], export.pack(plain, version=2)),
             (["unpack", files[0] / "p.tflite", "{o}", "--buffers=inline"], export.unpack(packed))]
    for i, (args, expected) in enumerate(cases):
        out = tmp_path / f"o{i}.tflite"
        r = _run(*[str(a).format(o=out) for a in args])
        assert r.returncode == 0, (args, r.stderr)
        assert out.read_bytes() == expected, args


# ---- 3. OUT on standard output --------------------------------------------------------------------

@pytest.mark.parametrize("out", ["-", "/dev/stdout", "/dev/fd/1"])
@pytest.mark.parametrize("command", ["pack", "unpack"])
def test_out_on_standard_output_writes_the_files_bytes_and_reports_on_stderr(files, tmp_path, command, out):
    """To a file (``> f.tflite``, where the report used to be lost) and to a pipe (refused as a FIFO):
    stdout holds exactly the bytes the command writes to a file, and stderr the report."""
    d, _, plain, packed = files
    src = d / ("m.tflite" if command == "pack" else "p.tflite")
    data = src.read_bytes()
    expected = packed if command == "pack" else export.unpack(packed)
    to_file = tmp_path / "to_file.tflite"
    r = _run(command, src, to_file)
    assert r.returncode == 0 and to_file.read_bytes() == expected, r.stderr

    redirected = tmp_path / "redirected.tflite"
    with open(redirected, "wb") as f:
        r = _run(command, src, out, stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert redirected.read_bytes() == expected  # bit-identical to the file's, and nothing else in it
    assert r.stderr == f"{src}: {len(data)} B -> standard output: {len(expected)} B" + (
        f" ({len(data) / len(expected):.2f}x)" if command == "pack" else "") + "\n", r.stderr

    r = _run(command, src, out, capture_output=True, text=False)  # a pipe
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected and r.stderr.decode().startswith(f"{src}: {len(data)} B -> standard output: ")
    assert sorted(os.listdir(tmp_path)) == ["redirected.tflite", "to_file.tflite"]
    assert src.read_bytes() == data


def test_a_reader_that_goes_away_early_ends_the_command_as_sigpipe_would(files, tmp_path):
    """``dc-keras pack big.tflite - | head -c 10``: a write to a pipe whose reader left takes part of
    the bytes without an error (Python's buffered write returned 65536 of 2 MB), so the command went
    on, printed its report and exited 0 with the model cut short; now the rest of the write fails,
    and the command ends quietly with 141 (as a C tool killed by SIGPIPE), as for the report."""
    _, _, plain, _ = files
    big = tmp_path / "big.tflite"
    big.write_bytes(plain + bytes(range(256)) * 8192)  # 2 MiB after the model (kept by pack): more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "dc_keras", "pack", str(big), "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.read(10)
    proc.stdout.close()
    err = proc.communicate(timeout=300)[1]
    assert first == export.pack(big.read_bytes())[:10]
    assert (proc.returncode, err) == (141, b""), (proc.returncode, err)
    r = _run("pack", big, "-", capture_output=True, text=False)  # the control: a reader that reads it all
    assert r.returncode == 0 and r.stdout == export.pack(big.read_bytes()), r.stderr


def test_standard_output_appended_to_keeps_what_it_held(files, tmp_path):
    """``>> archive`` appends, as for any tool writing to stdout (the atomic rename used to replace
    the whole file)."""
    _, src, _, packed = files
    archive = tmp_path / "archive"
    archive.write_bytes(b"held before\n")
    with open(archive, "ab") as f:
        r = _run("pack", src, "-", stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert archive.read_bytes() == b"held before\n" + packed


@pytest.mark.parametrize("command", ["pack", "unpack"])
def test_standard_output_that_is_the_input_is_refused(files, tmp_path, command):
    """``dc-keras pack m.tflite - >> m.tflite`` appended the output to the input."""
    d, _, _, _ = files
    src = tmp_path / "in.tflite"
    src.write_bytes((d / ("m.tflite" if command == "pack" else "p.tflite")).read_bytes())
    before = src.read_bytes()
    with open(src, "ab") as f:
        r = _run(command, src, "-", stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 1
    assert _one_error_line(r.stderr, f"dc-keras {command}: error: ") == (
        f"dc-keras {command}: error: standard output is {src}, the input, and inputs are never modified: redirect "
        f"standard output to another file (dc-keras {command} IN - > OUT.tflite)")
    assert src.read_bytes() == before


@pytest.mark.parametrize("out, name", [("/dev/stderr", "standard error, where the messages go"),
                                       ("/dev/fd/2", "standard error, where the messages go"),
                                       ("/dev/stdin", "standard input")])
def test_out_on_standard_error_or_input_is_a_usage_error(files, tmp_path, out, name):
    """``pack m.tflite /dev/stderr 2> f`` wrote the model into the CLI's own capture file of
    TensorFlow's log (fd 2 is redirected while a command runs), lost."""
    _, src, _, _ = files
    with open(tmp_path / "err.txt", "w") as err:
        r = _run("pack", src, out, stdout=subprocess.PIPE, stderr=err)
    text = (tmp_path / "err.txt").read_text()
    assert r.returncode == 2 and r.stdout == "", text
    assert _one_error_line(text, "dc-keras pack: error: ") == (
        f"dc-keras pack: error: OUT {out} is {name}: give a file path, or - for standard output "
        "(dc-keras pack IN - > OUT.tflite)")


def test_out_on_a_terminal_is_refused_and_nothing_reaches_it(files):
    _, src, _, _ = files
    master, slave = pty.openpty()
    try:
        r = _run("pack", src, "-", stdout=slave, stderr=subprocess.PIPE)
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 1 << 16)
        except (BlockingIOError, OSError):
            shown = b""
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 1 and shown == b"", (r.returncode, shown)
    assert _one_error_line(r.stderr, "dc-keras pack: error: ") == (
        "dc-keras pack: error: OUT - is standard output, which is a terminal: the model is binary, not text; "
        f"redirect it (dc-keras pack {src} - > OUT.tflite) or give a file path")


def test_out_on_a_closed_or_full_standard_output_is_one_error(files):
    _, src, _, _ = files
    r = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m dc_keras pack "{src}" - >&-'], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1
    assert _one_error_line(r.stderr, "dc-keras pack: error: ") == (
        "dc-keras pack: error: OUT - is standard output, which is closed (>&-): give a file path or redirect "
        "standard output to a file")
    if not os.path.exists("/dev/full"):
        return
    with open("/dev/full", "wb") as full:
        r = _run("pack", src, "-", stdout=full, stderr=subprocess.PIPE)
    assert r.returncode == 1
    assert _one_error_line(r.stderr, "dc-keras pack: error: ") == (
        "dc-keras pack: error: standard output: No space left on device: the model written there is incomplete")


@pytest.mark.parametrize("plot", ["/dev/stdout", "/dev/stderr", "/dev/fd/1"])
def test_plot_on_a_standard_stream_is_a_usage_error(files, plot):
    """``inspect --plot /dev/stdout > x.png`` printed the table into the file the rename replaced."""
    d, _, _, _ = files
    r = _run("inspect", d / "p.tflite", "--plot", plot)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert _one_error_line(r.stderr, "dc-keras inspect: error: ") == (
        f"dc-keras inspect: error: --plot {plot} is a standard stream, where the table (or the messages) go: give "
        "an image file path, e.g. --plot sizes.png")


# ---- 4. demo: its arguments checked before Keras loads ----------------------------------------

# ``python -m dc_keras ARGS`` that records in the file REPORT the heavy packages (TensorFlow, Keras,
# JAX, PyTorch) it imports: an import statement of one is recorded and stopped as Ctrl-C would stop
# it (the CLI: "interrupted", 130), and at exit those in sys.modules (imported by importlib) are
# recorded. ``-X importtime`` cannot tell: the CLI sends fd 2 to a capture file while a command runs;
# a finder cannot either: ``import dc_keras`` asks importlib.util.find_spec("keras") without importing it.
_STOP_HEAVY = """
import atexit
import builtins
import runpy
import sys

HEAVY = ("tensorflow", "keras", "tf_keras", "jax", "torch")
real_import = builtins.__import__


def record(names):
    with open({report!r}, "a") as f:
        f.write("".join(n + "\\n" for n in names))


def stopping_import(name, *args, **kwargs):
    if name.split(".")[0] in HEAVY and name not in sys.modules:
        record([name])
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)


builtins.__import__ = stopping_import
atexit.register(lambda: record(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)))
sys.argv = ["dc_keras", *{args!r}]
runpy.run_module("dc_keras", run_name="__main__", alter_sys=True)
"""


def _demo_stopping_heavy_imports(tmp_path, args):
    """(CompletedProcess of ``python -m dc_keras demo ARGS``, the heavy modules it began to import)."""
    report = tmp_path / "heavy_imports.txt"
    code = _STOP_HEAVY.format(report=str(report), args=["demo", *map(str, args)])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    heavy = report.read_text().split() if report.exists() else []
    report.unlink(missing_ok=True)
    return r, heavy


def _no_write_dir(tmp_path):
    """A directory this process may not create files in: a 0555 one, or as root (who may write it)
    a directory under /sys, which sysfs refuses to create; None where neither exists."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d / "out"
    return "/sys/dc_keras_no_write_out" if os.path.isdir("/sys/kernel") else None


@pytest.mark.parametrize("kind", ["file", "under_a_file", "device", "no_write", "empty", "seed"])
def test_demo_refuses_a_bad_argument_before_importing_tensorflow(files, tmp_path, kind):
    """``demo --out_dir X`` checked X after ``import keras`` (7-13 s, TensorFlow loaded); the
    refusal now comes before any of them is imported."""
    _, src, _, _ = files
    args, status = ["--out_dir"], 1
    if kind == "file":
        args.append(src)
        expected = (f"dc-keras demo: error: {src}: a file, not a directory: give out_dir (--out_dir) a directory "
                    "you may write; it is created if missing")
    elif kind == "under_a_file":
        args.append(f"{src}/out")
        expected = (f"dc-keras demo: error: {src}/out: Not a directory; give out_dir (--out_dir) a directory you "
                    "may write; it is created if missing")
    elif kind == "device":
        args.append("/dev/null")
        expected = "dc-keras demo: error: /dev/null: a file, not a directory: give out_dir (--out_dir) a directory"
    elif kind == "no_write":
        target = _no_write_dir(tmp_path)
        assert target is not None, "no directory to make unwritable here"
        args.append(target)
        expected = f"dc-keras demo: error: {target}: "
    elif kind == "empty":
        args.append("")
        status, expected = 2, ("dc-keras demo: error: argument --out_dir/--out-dir: empty path (an unset variable in "
                               "the command?): give a directory, or leave --out_dir out for a temporary one")
    else:
        args = ["--out_dir", tmp_path / "demo", "--seed=-1"]
        status, expected = 2, "dc-keras demo: error: argument --seed: must be at least 0, got -1"
    r, heavy = _demo_stopping_heavy_imports(tmp_path, args)
    assert heavy == [], (heavy, r.stderr[-3000:])
    assert r.returncode == status and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    line = _one_error_line(r.stderr, "dc-keras demo: error: ")
    assert line.startswith(expected), line
    if kind == "no_write":
        assert ("Permission denied" in line or "Operation not permitted" in line or "Read-only" in line) \
            and line.endswith("; give out_dir (--out_dir) a directory you may write; it is created if missing"), line
    assert not (tmp_path / "demo").exists()


def test_demo_with_good_arguments_goes_on_to_import_keras(tmp_path):
    """The control of the test above (its check can fail): with good arguments the same child
    creates out_dir, then imports Keras, where the finder stops it."""
    r, heavy = _demo_stopping_heavy_imports(tmp_path, ["--out_dir", tmp_path / "demo", "--epochs=1"])
    assert heavy[:1] == ["keras"], (heavy, r.stderr[-3000:])
    assert (r.returncode, r.stderr.strip()) == (130, "dc-keras demo: interrupted"), (r.returncode, r.stderr[-3000:])
    assert (tmp_path / "demo").is_dir() and os.listdir(tmp_path / "demo") == []


# ---- other misuse ------------------------------------------------------------------------------

def test_an_input_path_longer_than_path_max_says_so(files, tmp_path):
    """A path of short names longer than PATH_MAX (4096) was reported as "a name in the path is
    longer than the file system allows"; no name was."""
    long_path = "/".join(["d"] * 2100) + "/m.tflite"
    for args in (("inspect", long_path), ("pack", long_path, tmp_path / "o.tflite"),
                 ("unpack", long_path, tmp_path / "o.tflite")):
        r = _run(*args, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert _one_error_line(r.stderr, f"dc-keras {args[0]}: error: ").endswith(
            "/d/m.tflite: File name too long; the path is longer than the system allows (PATH_MAX), though no name "
            "in it is: use a shorter path, e.g. a relative one from a directory closer to the file"), r.stderr
    assert os.listdir(tmp_path) == []
