"""``dc-keras`` reviewed as an engineer who has a .tflite and wants it smaller (helper session 46).

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
"""
import hashlib
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import cli, runtime

tf = pytest.importorskip("tensorflow")
litert = pytest.importorskip("ai_edge_litert.interpreter")


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
    path = tmp_path_factory.mktemp("cli_s46") / "m.tflite"
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
    r = subprocess.run([sys.executable, "-m", "dc_keras", "--verbosity=abc", "pack", str(model_file),
                        str(tmp_path / "p.tflite")], capture_output=True, text=True, timeout=300)
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
    """{(signature, call, output): array} for 3 calls of every signature in turn (state such as a
    resource variable carries from one call to the next)."""
    res = {}
    for key in it.get_signature_list():
        runner = it.get_signature_runner(key)
        for call in range(3):
            xs = {n: _inputs(d, call) for n, d in runner.get_input_details().items()}
            for n, y in runner(**xs).items():
                res[(key, call, n)] = np.array(y).copy()
    assert res
    return res


def _assert_bit_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        if a[k].dtype == object:  # strings
            assert a[k].ravel().tolist() == b[k].ravel().tolist(), k
        else:
            assert a[k].tobytes() == b[k].tobytes(), k


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
    _assert_bit_identical(reference, _outputs(runtime.Interpreter(model_content=packed)))
    no_delegates = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    _assert_bit_identical(_outputs(TFInterpreter(model_content=data, experimental_op_resolver_type=no_delegates)),
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
    _assert_bit_identical(reference, _outputs(litert.Interpreter(model_content=back)))
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
    assert f"(no tensor packed: written unchanged; `dc-keras inspect {model_file}` says why per tensor)" in \
        capsys.readouterr().out
