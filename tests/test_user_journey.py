"""What a new user meets when following the README and docs/ (session 5 user-journey review):
errors that name the problem *and* the fix, documented CLI flags that exist, `python -m dc_keras`,
tfmot names the drop-in does not have, and exporting a model that was not stripped.

The CLI cases run `dc_keras.cli.main` in-process (the subprocess path is covered by
tests/test_cli_errors.py); each must print exactly one `dc-keras CMD: error: ...` line.
"""
import errno
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tokenize
import warnings
import zipfile

import numpy as np
import pytest

from dc_keras import _fileio, cli, export

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def plain():
    import _export_models as em

    return em.tflite("dense", None)


def _error(capsys, argv):
    """Runs the CLI; returns its one error line (asserting exit 1, one line, no traceback)."""
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert status == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"dc-keras {argv[0]}: error: "), err
    assert "Traceback" not in err
    return err


# -- bad input files: the problem and what to do ------------------------------------------------

@pytest.mark.parametrize("cut", [16, 100, 0.5, -1])
def test_truncated_file_says_truncated_and_what_to_do(plain, cut):
    n = cut if isinstance(cut, int) and cut > 0 else len(plain) - 1 if cut == -1 else int(len(plain) * cut)
    for fn in (export.pack, export.unpack, export.inspect):
        with pytest.raises(ValueError) as info:
            fn(plain[:n])
        text = str(info.value)
        assert "malformed .tflite" in text and "truncated or corrupt" in text and "again" in text, text
        assert "unpack_from" not in text  # no struct internals


def test_truncated_file_through_the_cli(tmp_path, plain, capsys):
    src = tmp_path / "cut.tflite"
    src.write_bytes(plain[: len(plain) // 2])
    line = _error(capsys, ["pack", src, tmp_path / "out.tflite"])
    assert "points past the end of the file" in line and "truncated or corrupt" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tflite"]


def test_not_a_tflite_says_what_to_give(tmp_path, plain, capsys):
    src = tmp_path / "notes.tflite"
    src.write_text("some text, not a model\n" * 4)
    line = _error(capsys, ["inspect", src])
    assert "not a .tflite model" in line and "TFLiteConverter" in line, line
    with pytest.raises(ValueError, match=r"zip archive \(a \.keras model\?\).*to_tflite"):
        export.inspect(b"PK\x03\x04" + bytes(60))
    with pytest.raises(ValueError, match=r"HDF5 file \(a Keras \.h5 model\?\).*load_model.*to_tflite"):
        export.pack(b"\x89HDF\r\n\x1a\n" + bytes(60))  # the signature every HDF5 file starts with
    bundle = io.BytesIO()  # a MediaPipe Tasks .task file: a zip of .tflite models
    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("hand_detector.tflite", plain)
        z.writestr("hand_landmarks_detector.tflite", plain)
    src.write_bytes(bundle.getvalue())
    line = _error(capsys, ["pack", src, tmp_path / "out.tflite"])
    assert ("zip archive of .tflite models (hand_detector.tflite, hand_landmarks_detector.tflite; a "
            "MediaPipe Tasks .task bundle?): extract them and pack each one") in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tflite"]


def test_path_instead_of_bytes_says_read_it(plain):
    # export.inspect takes a path too (tests/test_inspect_cli.py), as `dc-keras inspect FILE` does
    for fn in (export.pack, export.unpack):
        with pytest.raises(TypeError, match=r"got str: read the file first"):
            fn("model.tflite")
        with pytest.raises(TypeError, match=r"got PosixPath: read the file first"):
            fn(pathlib.Path("model.tflite"))


def test_appended_associated_files_are_kept(tmp_path, plain, capsys):
    """A model with TFLite metadata's associated files (a zip after the flatbuffer, as Model
    Maker / MediaPipe files have): the packed and the unpacked file keep them, and the CLI says so
    (tests/test_associated_files.py checks the bytes, the offsets, dc_unpack and inspect)."""
    import io
    import zipfile

    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("labels.txt", "cat\ndog\n")
    src = tmp_path / "m.tflite"
    src.write_bytes(plain + z.getvalue())
    packed, unpacked = tmp_path / "p.tflite", tmp_path / "u.tflite"
    assert cli.main(["pack", str(src), str(packed)]) == 0
    assert cli.main(["unpack", str(packed), str(unpacked)]) == 0
    out, err = capsys.readouterr()
    assert f"associated files kept: 1 (labels.txt), in the zip after {packed}'s model" in out and \
        f"associated files kept: 1 (labels.txt), in the zip after {unpacked}'s model" in out and err == "", out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped: no warning
        assert export.pack(src.read_bytes()) == packed.read_bytes()
        assert export.unpack(packed.read_bytes()) == unpacked.read_bytes()
    for path in (packed, unpacked):
        with zipfile.ZipFile(path) as f:
            assert f.read("labels.txt") == b"cat\ndog\n"


def test_pack_that_packs_nothing_says_where_the_reasons_are(tmp_path, plain, capsys):
    """A full-int8 file often packs nothing (no tensor saves min_saving): the summary says so and
    points at inspect, also when --compact rewrote the model (a smaller file, no tensor packed)."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    for extra, unchanged in (([], True), (["--compact"], False)):
        assert cli.main(["pack", str(src), str(tmp_path / "p.tflite"), "--min_bytes", str(len(plain)), *extra]) == 0
        out = capsys.readouterr().out
        # the inspect command carries --min-bytes (session 49: at the default min_bytes it called the
        # tensors this run skipped packable), and a line says what --min_bytes left alone
        why = (f"(no tensor packed{': written unchanged' if unchanged else ''}; `dc-keras inspect --min-bytes "
               f"{len(plain)} {src}` says why")
        assert why in out, out
        assert re.search(rf"\nskipped: [1-9]\d* constant tensor\(s\), \d+ B, smaller than --min-bytes {len(plain)} ",
                         out), out
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert "no tensor packed" not in capsys.readouterr().out


# -- input and output paths ---------------------------------------------------------------------

def test_missing_input_names_it_and_the_fix(tmp_path, capsys):
    line = _error(capsys, ["pack", tmp_path / "missing.tflite", tmp_path / "o.tflite"])
    assert "missing.tflite: No such file or directory; check the path" in line, line
    line = _error(capsys, ["inspect", tmp_path])
    assert "give the path of a .tflite file" in line, line


def test_empty_path_is_a_usage_error(tmp_path, plain, capsys):
    """`dc-keras pack "$IN" "$OUT"` with OUT unset: said so (was a missing-directory error naming
    the parent of the working directory; `inspect --plot=` silently wrote no chart)."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    for argv, arg in ((["pack", src, ""], "OUT"), (["pack", "", src], "IN"), (["unpack", src, ""], "OUT"),
                      (["inspect", ""], "FILE"), (["inspect", src, "--plot="], "--plot")):
        assert cli.main([str(a) for a in argv]) == 2, argv
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
        assert errors == [f"dc-keras {argv[0]}: error: argument {arg}: empty path (an unset variable in the "
                          "command?): give a file path"], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"] and src.read_bytes() == plain


def test_dash_path_is_a_usage_error(tmp_path, plain, capsys, monkeypatch):
    """`dc-keras pack m.tflite -` wrote a file named "-" (Unix tools read stdin / write stdout
    there), and `pack - OUT` said "No such file" (found by an audit). OUT - is standard output
    since session 47 (tests/test_cli_options.py); - as an input or --plot stays refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.tflite").write_bytes(plain)
    for argv, arg in ((["pack", "-", "o.tflite"], "IN"), (["unpack", "-", "o.tflite"], "IN"), (["inspect", "-"], "FILE")):
        assert cli.main(argv) == 2, argv
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
        assert errors == [f"dc-keras {argv[0]}: error: argument {arg}: '-' (standard input) is not supported here: "
                          "give a file path (./- for a file named -), or /dev/stdin to read a model piped in"], errors
    assert cli.main(["inspect", "m.tflite", "--plot", "-"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ": error: " in ln]
    assert errors == ["dc-keras inspect: error: argument --plot: '-' (standard output) is not supported: the table "
                      "goes there; give an image file path, e.g. --plot sizes.png (./- for a file named -)"], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    assert cli.main(["pack", "m.tflite", "./-"]) == 0 and (tmp_path / "-").is_file()


def test_longest_output_name_the_file_system_allows(tmp_path, plain, capsys):
    """A 255-byte output name is valid: the temporary file next to it must not be longer (it was
    '.NAME.xxxxxxxx.tmp': 'File name too long')."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    for name in ("a" * (255 - len(".tflite")) + ".tflite", "模" * 80 + ".tflite"):  # 255 and 247 bytes
        out = tmp_path / name
        assert cli.main(["pack", str(src), str(out)]) == 0, capsys.readouterr().err
        assert out.read_bytes() == export.pack(plain)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.tflite", out.name])
        out.unlink()


def test_output_in_missing_directory(tmp_path, plain, capsys):
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    out = tmp_path / "no_such_dir" / "m.packed.tflite"
    line = _error(capsys, ["pack", src, out])
    assert str(out) in line and f"the directory {out.parent} does not exist: create it" in line, line
    assert src.read_bytes() == plain and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_output_with_a_trailing_slash(tmp_path, plain, capsys):
    """`pack m.tflite out/` (no such directory) and `pack m.tflite p.tflite/` (a file): the message
    was "<the current directory> is not a directory", which is false."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    (tmp_path / "p.tflite").write_bytes(b"old")
    line = _error(capsys, ["pack", src, f"{tmp_path / 'out'}/"])
    assert f"the directory {tmp_path / 'out'} does not exist: create it first and give a file name in it, " \
           f"e.g. {tmp_path / 'out' / 'model.tflite'}" in line, line
    line = _error(capsys, ["unpack", src, f"{tmp_path / 'p.tflite'}/"])
    assert f"{tmp_path / 'p.tflite'} is a file: give the output path without the trailing separator" in line, line
    with pytest.raises(FileNotFoundError, match="the directory .*out does not exist"):
        _fileio.atomic_write(f"{tmp_path / 'out'}/", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "p.tflite"]
    assert src.read_bytes() == plain and (tmp_path / "p.tflite").read_bytes() == b"old"


def test_output_is_a_directory(tmp_path, plain, capsys):
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    (tmp_path / "outdir").mkdir()
    line = _error(capsys, ["pack", src, tmp_path / "outdir"])
    assert "give a file name for the output" in line, line
    assert os.listdir(tmp_path / "outdir") == [] and src.read_bytes() == plain


@pytest.mark.parametrize("err,fix", [(errno.EROFS, "choose an output path in a writable directory"),
                                     (errno.EACCES, "choose an output path in a writable directory"),
                                     (errno.ENOSPC, "free some space")])
def test_unwritable_output_names_the_fix(tmp_path, monkeypatch, err, fix):
    """atomic_write (every output: CLI, to_tflite(path=), plots) says what to do; the strerror and
    the output path stay in the message (scripts grep for them)."""
    real_open = os.open

    def failing_open(path, flags, mode=0o777, **kw):
        if str(path).endswith(".tmp"):
            raise OSError(err, os.strerror(err), path)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(_fileio.os, "open", failing_open)
    target = tmp_path / "m.tflite"
    with pytest.raises(OSError) as info:
        _fileio.atomic_write(target, b"x")
    e = info.value
    assert e.errno == err and e.filename == str(target)
    assert e.strerror.startswith(os.strerror(err)) and fix in e.strerror, e.strerror
    assert os.listdir(tmp_path) == []


# -- documented CLI flags exist -----------------------------------------------------------------

def _documented_flags():
    """``(command, flag)`` for every ``dc-keras [COMMAND] ... --flag`` (or ``python -m dc_keras ...``) a
    user reads: README.md, docs/*.md, the notebooks (markdown and ``!`` cells) and dc_keras's own
    docstrings and messages; command ``None`` for the top-level options (``--version``)."""
    import _docs

    texts = dict(_docs.texts())
    for path in sorted((ROOT / "dc_keras").rglob("*.py")):  # docstrings and messages, not comments
        with open(path, "rb") as f:
            strings = [t.string for t in tokenize.tokenize(f.readline) if t.type == tokenize.STRING]
        texts[str(path.relative_to(ROOT))] = "\n".join(strings)
    found = set()
    for text in texts.values():
        for m in re.finditer(r"(?:dc-keras|python3? -m dc_keras)((?: +(?:[a-z][a-z_]*|--[a-z][a-z_=.-]*))*)", text):
            words = m.group(1).split()
            cmd = words[0] if words and words[0] in ("pack", "unpack", "inspect", "demo") else None
            if words and not words[0].startswith("-") and cmd is None:
                continue  # prose ("dc-keras and ..."), not a command line
            rest = text[m.start(1):].split("\n", 1)[0].split("`", 1)[0]
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z_-]*)", rest):
                found.add((cmd, flag))
    return sorted(found, key=str)


def test_every_documented_cli_flag_exists():
    flags = _documented_flags()
    assert ("pack", "--strip-strings") in flags and (None, "--version") in flags and len(flags) >= 8, flags
    parser, _ = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices  # argparse has no public API
    missing = [(c, f) for c, f in flags
               if f not in (subparsers[c] if c else parser)._option_string_actions]
    assert not missing, f"documented but not accepted by the CLI: {missing}"


def test_underscore_and_dash_spellings(tmp_path, plain, capsys):
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    assert cli.main(["pack", str(src), str(a), "--strip_strings", "--context_model"]) == 0
    assert cli.main(["pack", str(src), str(b), "--strip-strings", "--context-model"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert "strings stripped" in capsys.readouterr().out


def test_unknown_option_names_the_command(capsys):
    """`dc-keras pack IN OUT --typo` used to print the top-level usage and "dc-keras: error: ..."."""
    assert cli.main(["pack", "a.tflite", "b.tflite", "--strip-text"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dc-keras pack ") and "--strip-strings" in err, err
    assert "dc-keras pack: error: unrecognized arguments: --strip-text; `dc-keras pack --help`" in err, err
    assert cli.main(["--verbosity=1"]) == 2
    assert "dc-keras: error: missing command; one of: demo, inspect, pack, unpack" in capsys.readouterr().err


def test_python_dash_m_dc_keras():
    r = subprocess.run([sys.executable, "-m", "dc_keras", "--version"], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("dc-keras "), (r.stdout, r.stderr)


def test_multi_worker_help_documents_worker_id():
    """docs/multi_worker.md tells users on real hosts to pass --worker-id: --help must list it."""
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "multi_worker.py"), "--help"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "--worker-id" in r.stdout and "--coordinator" in r.stdout, r.stdout


# -- tfmot users ----------------------------------------------------------------------------------

def test_tfmot_quantization_names_the_replacement():
    import dc_keras.compat.tfmot as tfmot

    with pytest.raises(AttributeError, match=r"quantize='int8'.*docs/quantization.md"):
        tfmot.quantization.keras.quantize_model  # noqa: B018
    with pytest.raises(AttributeError, match="preserve_sparsity=True"):
        tfmot.experimental  # noqa: B018
    with pytest.raises(AttributeError, match="migrating_from_tfmot"):
        tfmot.no_such_name  # noqa: B018
    assert not hasattr(tfmot, "quantization")
    assert tfmot.sparsity.keras.prune_low_magnitude and tfmot.clustering.keras.cluster_weights


def test_tfmot_modules_not_provided_import_with_the_same_message():
    """The import spellings of tfmot's modules the drop-in does not have raise one ImportError with
    the replacement (was Python's generic "cannot import name 'quantization' from ..." / "No module
    named ..."), and leave nothing behind in sys.modules; the attribute spelling stays an
    AttributeError (hasattr works)."""
    import importlib
    import sys

    import dc_keras.compat.tfmot as tfmot

    spellings = {
        "from dc_keras.compat.tfmot import quantization": r"quantize='int8'.*docs/quantization.md",
        "import dc_keras.compat.tfmot.quantization": r"quantize='int8'",
        "from dc_keras.compat.tfmot.quantization.keras import quantize_model": r"quantize='int8'",
        "import dc_keras.compat.tfmot.quantization.keras.default_8bit": r"quantize='int8'",
        "from dc_keras.compat.tfmot import experimental": r"preserve_sparsity=True",
        "from dc_keras.compat.tfmot.experimental.combine import Default8BitClusterPreserveQuantizeScheme":
            r"preserve_sparsity=True",
        "from dc_keras.compat.tfmot.sparsity.keras import PruningPolicy": r"clone_function",
        "from dc_keras.compat.tfmot.sparsity.keras import PruneForLatencyOnXNNPack": r"clone_function",
        "from dc_keras.compat.tfmot.clustering.keras import ClusterableLayer": r"get_prunable_weights\(\)",
        "from dc_keras.compat.tfmot.clustering.keras import ClusteringAlgorithm": r"not supported",
        "from dc_keras.compat.tfmot.clustering.keras.experimental import cluster": r"preserve_sparsity=True",
    }
    for statement, fix in spellings.items():
        with pytest.raises(ImportError, match=fix) as caught:
            exec(statement, {})
        assert "cannot import name" not in str(caught.value) and "No module named" not in str(caught.value)
        assert not isinstance(caught.value, ModuleNotFoundError), statement
    assert not [m for m in sys.modules if m.startswith(("dc_keras.compat.tfmot.quantization",
                                                        "dc_keras.compat.tfmot.experimental"))]
    assert not hasattr(tfmot, "quantization") and not hasattr(tfmot.sparsity.keras, "PruningPolicy")
    # Names tfmot does not have either keep Python's own errors; the provided ones import as before.
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'"):
        exec("from dc_keras.compat.tfmot.sparsity.keras import no_such_name", {})
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dc_keras.compat.tfmot.no_such_module")
    namespace = {}
    exec("from dc_keras.compat.tfmot.sparsity.keras import *\n"
         "from dc_keras.compat.tfmot.sparsity import keras as sparsity\n"
         "from dc_keras.compat.tfmot.clustering.keras import cluster_weights", namespace)
    assert namespace["prune_low_magnitude"] is tfmot.sparsity.keras.prune_low_magnitude
    assert namespace["sparsity"] is tfmot.sparsity.keras and namespace["cluster_weights"]


# -- exporting a model that was not stripped ------------------------------------------------------

def test_to_tflite_of_a_wrapped_model_strips_it_and_says_so():
    """Forgetting `strip` before `to_tflite` used to raise a false ClusterSpreadWarning about the
    pruning mask ("clustered to 2 distinct values in Keras"); now the export is that of the
    stripped model, with one warning that says to strip, and the model passed in is unchanged."""
    import keras

    import dc_keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(128), keras.layers.Dense(2)])
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.8, 0, frequency=1))
    pruned.compile("sgd", "mse")
    pruned.fit(x, np.zeros((64, 2), "float32"), epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    before = [w.copy() for w in pruned.get_weights()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = dc_keras.export.to_tflite(pruned)
    ours = [w for w in caught if issubclass(w.category, UserWarning) and "to_tflite" in str(w.message)]
    assert len(ours) == 1 and "dc_keras.strip" in str(ours[0].message), [str(w.message) for w in ours]
    assert not issubclass(ours[0].category, dc_keras.export.ClusterSpreadWarning)
    assert isinstance(pruned.layers[0], dc_keras.train.PruneWrapper)
    assert all(np.array_equal(a, b) for a, b in zip(before, pruned.get_weights()))
    stripped = dc_keras.export.to_tflite(dc_keras.strip(pruned))
    assert len(data) == len(stripped)
    outs = []
    for blob in (data, stripped):
        it = dc_keras.runtime.Interpreter(model_content=blob)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x[:1])
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert np.array_equal(outs[0], outs[1])


# -- exporting from the JAX backend -------------------------------------------------------------

_JAX_EXPORT = r"""
import json, sys, warnings, numpy as np, keras, dc_keras
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
model = keras.Sequential([keras.Input((6, 4)), keras.layers.LSTM(16, name="rnn"),
                          keras.layers.Dense(64, activation="relu", name="fc1"),
                          keras.layers.Dense(3, activation="softmax", name="fc2")], name="seq")
model.set_weights([np.where(rng.random(w.shape) < 0.2, np.round(rng.normal(size=w.shape), 1) + 0.0, 0).astype("float32")
                   for w in model.get_weights()])  # + 0.0: np.round makes -0.0 (to_tflite warns of those)
model.save(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    dc_keras.export.to_tflite(model, path=sys.argv[2])
print("WARNINGS " + json.dumps([str(w.message) for w in caught if str(w.message).startswith("to_tflite")]))
print("WARNED_AT " + json.dumps([w.filename for w in caught if str(w.message).startswith("to_tflite")]))
"""


@pytest.mark.long  # the JAX pass's test_export_on_this_backend_matches_keras exports on JAX in make test
def test_jax_export_is_the_tensorflow_backends_file(tmp_path):
    """A JAX user gets the .tflite a TF user gets (converted in a TF-backend child), and the child's
    warnings (here: the recurrent model's static batch) reach the caller. The in-process jax2tf route
    gave an unfused graph: 61 ops instead of 11 and +11 % packed bytes on LeNet-300-100."""
    import keras

    import dc_keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares against the TensorFlow backend's export in this process")
    src, out = tmp_path / "m.keras", tmp_path / "jax.tflite"
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _JAX_EXPORT, str(src), str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    relayed = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("WARNINGS ")][-1][9:])
    assert len(relayed) == 1 and "fixed batch of 1" in relayed[0], relayed
    where = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("WARNED_AT ")][-1][10:])
    assert where == ["<string>"], where  # the relayed warning points at the caller's to_tflite line
    with pytest.warns(UserWarning, match="fixed batch of 1"):
        assert out.read_bytes() == dc_keras.export.to_tflite(keras.saving.load_model(src))


def test_jax_routing(monkeypatch):
    """What the JAX backend converts where: in a TF child unless the call needs this process; a
    failing child falls back to this process with a warning."""
    import keras

    from dc_keras.export import _backend, _convert

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert _backend.prefers_tensorflow_child()
    assert _backend.prefers_tensorflow_child(representative_data=np.zeros((2, 3)))
    assert not _backend.prefers_tensorflow_child(configure=print)
    assert not _backend.prefers_tensorflow_child(converter_options={"allow_custom_ops": True})
    assert not _backend.prefers_tensorflow_child(representative_data=lambda: iter([]))
    assert not _backend.needs_tensorflow_child()

    def failing_child(*args, **kwargs):
        raise RuntimeError("to_tflite: converting in a TensorFlow-backend subprocess failed:\nValueError: Unknown layer")

    monkeypatch.setattr(_backend, "to_tflite_in_tensorflow", failing_child)
    with pytest.warns(UserWarning, match=r"failed \(ValueError: Unknown layer\); converting in this process"):
        assert _convert._in_tensorflow_child(None, True, None, None, 256, None, None, None, None) is None
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match="Unknown layer"):
        _convert._in_tensorflow_child(None, True, None, None, 256, None, None, None, None)


# -- dc_keras.pipeline on a small data set -----------------------------------------------------

def test_prune_retrain_reaches_the_target_in_the_steps_it_trains():
    """README's "Beyond LeNet" recipe on a few batches: prune_retrain knows how many steps it trains,
    so the schedule constructor's guess ("training for end_step steps ... ends at sparsity 0") must
    not fire, and the target is reached at the last step at the latest: with ramp_fraction=1 or one
    batch in all, its schedule ended one step after the last one trained (end_step = steps), so the
    model came back pruned less or not at all, with a warning to change end_step, which
    prune_retrain's caller does not set."""
    import keras

    import dc_keras

    (x, y), _ = dc_keras.datasets.mnist.load_data()
    x, y = dc_keras.datasets.normalize(x[:256]), y[:256]

    def run(n=256, **kw):
        keras.utils.set_random_seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = dc_keras.pipeline.prune_retrain(dc_keras.models.lenet_300_100(), x[:n], y[:n], 0.75, epochs=1,
                                                    verbose=0, **kw)
        fc1 = model.get_layer("fc1").get_weights()[0]
        return [str(w.message) for w in caught if "instead of 0.75" in str(w.message)], float(np.mean(fc1 == 0))

    for kw in ({}, {"ramp_fraction": 1.0}, {"n": 100}):  # 2 steps (end_step 1), the same with a full ramp, 1 step
        messages, sparsity = run(**kw)
        assert messages == [] and sparsity == pytest.approx(0.75, abs=0.01), (kw, messages, sparsity)


def test_prune_retrain_names_its_own_sparsity_argument():
    """prune_retrain(..., sparsity=90 or 1.0) reported `final_sparsity` (or, with one step of data,
    `initial_sparsity`), parameters of the schedule it builds that its caller never passed, and for a
    dict did not say which layer was wrong. It names `sparsity`, the layer and the fix, before training."""
    import dc_keras

    x = np.zeros((64, 28, 28), "float32")
    y = np.zeros(64, "int64")
    for bad, fix in ((90, r" \(a fraction: 0\.9 for 90 %\)"), (1.0, r" \(1\.0 would remove every weight\)"),
                     (-0.1, ""), ("0.5", ""), (True, ""), (float("nan"), ""), ([0.5], "")):
        with pytest.raises(ValueError, match=rf"^`sparsity` must be a number in \[0, 1\){fix} or a dict layer "
                                             rf"name -> sparsity, got {re.escape(repr(bad))}\.$"):
            dc_keras.pipeline.prune_retrain(dc_keras.models.lenet_300_100(), x, y, bad, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"^`sparsity` of layer 'fc2' must be a number in \[0, 1\) "
                                         r"\(1\.0 would remove every weight\), got 1\.0\.$"):
        dc_keras.pipeline.prune_retrain(dc_keras.models.lenet_300_100(), x, y, {"fc1": 0.5, "fc2": 1.0}, epochs=1,
                                        verbose=0)
    with pytest.raises(ValueError, match=r"^`sparsity` is an empty dict"):
        dc_keras.pipeline.prune_retrain(dc_keras.models.lenet_300_100(), x, y, {}, epochs=1, verbose=0)


def test_to_tflite_of_a_path_or_bytes_names_the_fix():
    """`to_tflite("model.keras")` (or the bytes of a .tflite) failed with "AttributeError: 'str' object
    has no attribute '_flatten_layers'" from inside dc_keras; it now says what to pass instead."""
    with pytest.raises(ValueError, match=r"takes a Keras model, got str: load it first: "
                                         r"to_tflite\(keras.saving.load_model\('model.keras'\)\)"):
        export.to_tflite("model.keras")
    with pytest.raises(ValueError, match=r"got PosixPath: load it first"):
        export.to_tflite(pathlib.Path("model.keras"))
    with pytest.raises(ValueError, match=r"got bytes: .*dc_keras.export.pack\(data\)"):
        export.to_tflite(b"TFL3" + bytes(60))
    with pytest.raises(ValueError, match=r"got NoneType"):
        export.to_tflite(None, path="never_written.tflite")
    assert not os.path.exists("never_written.tflite")


def test_representative_data_mistakes_name_the_fix():
    """quantize="int8" with the training pair `(x, y)`, a tf.data.Dataset or samples of another shape
    failed inside TFLite's converter ("Invalid input shapes: expected 1 items got 2 items", then a
    hint about Flex ops) or with "float() argument must be ... not '_BatchDataset'"."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    x = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    y = np.arange(16) % 4
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    cases = [((x, y), r"holds 2 arrays, but the model takes 1 input\(s\): give its inputs only \(no labels"),
             (dataset, r"got _BatchDataset\. For a tf.data.Dataset .*representative_data=lambda: \(\[x\] for x, _ in "
                       r"dataset.take\(100\)\)"),
             (x[:, :6], r"an array of shape \(16, 6\) for the model's input .* of shape \(None, 8\)")]
    for data, message in cases:
        with pytest.raises(ValueError, match=message):
            export.to_tflite(model, quantize="int8", representative_data=data)
    # the fix the Dataset message gives converts
    assert export.to_tflite(model, quantize="int8", representative_data=lambda: ([x] for x, _ in dataset.take(100)))


def test_strip_of_an_unfinished_schedule_warns_once():
    """README's schedule (end_step=2000) on a small data set: the fit() trains far fewer steps, no
    mask update reaches a non-zero sparsity, and strip() used to return an unpruned model without a
    word. strip() now warns once, naming the layers, the sparsity held, the target and the fix;
    not when the schedule finished, and not again when fit() already warned about it."""
    import keras

    import dc_keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, 64)
    schedules = dc_keras.schedules

    def run(schedule, epochs=1):
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, name="fc1"), keras.layers.Dense(2, name="fc2")])
        pruned = dc_keras.prune(model, schedule)
        pruned.compile("sgd", "sparse_categorical_crossentropy")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruned.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[dc_keras.PruningCallback()])
            plain = dc_keras.strip(pruned)
        ours = [str(w.message) for w in caught if str(w.message).startswith("strip:")]
        fit_warnings = [str(w.message) for w in caught if "fit() of layer" in str(w.message)]
        return ours, fit_warnings, float(np.mean(plain.get_layer("fc1").get_weights()[0] == 0))

    ours, _, zeros = run(schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2000, frequency=100))
    assert zeros == 0.0 and len(ours) == 1, ours
    assert "['fc1', 'fc2'] hold sparsity 0, below the target 0.8" in ours[0] and "after 2 training steps" in ours[0]
    assert "end_step to the steps you train" in ours[0], ours[0]
    ours, _, zeros = run(schedules.StdThreshold(1.0, begin_step=50, frequency=10))
    assert zeros == 0.0 and len(ours) == 1 and "['fc1', 'fc2'] never pruned" in ours[0], ours
    assert run(schedules.ConstantSparsity(0.5, 0, frequency=1))[0] == []  # reached: silent
    with warnings.catch_warnings():  # the constructors' guess (end_step steps trained) warns
        warnings.simplefilter("ignore")
        finished = schedules.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=3, frequency=1)
        short = schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=2, frequency=100)
    assert run(finished, epochs=2)[0] == []
    ours, fit_warnings, _ = run(short)  # fit() said it falls short: strip() does not repeat it
    assert len(fit_warnings) == 1 and ours == [], (fit_warnings, ours)


def test_to_tflite_of_a_mixed_precision_model_names_the_policy(capfd):
    """A model trained under a mixed-precision policy computes its MatMuls in float16, which the
    converter cannot lower; the error used to advise SELECT_TF_OPS (Flex) for the "missing" op, then
    to rebuild the model under float32 and copy the weights, which a clustered model whose
    BatchNormalization cluster() folded (an Identity in its place) does not fit. It names the layers
    (not the InputLayer, which computes nothing), their dtype and a float32 copy made from the model
    itself; that copy, made as the message says, exports and packs bit-exactly."""
    import keras
    from _compress_flow import run_tflite

    import dc_keras

    def build(dtype):
        inp = keras.Input((6, 6, 2))
        h = keras.layers.Conv2D(4, 3, name="conv", dtype=dtype)(inp)
        h = keras.layers.BatchNormalization(name="bn", dtype=dtype)(h)
        h = keras.layers.Flatten(name="flat", dtype=dtype)(h)
        return keras.Model(inp, keras.layers.Dense(2, name="fc", dtype="float32")(h))

    mixed = dc_keras.strip(dc_keras.cluster(build("mixed_float16"), bits=2))  # bn folded: an Identity
    capfd.readouterr()
    with pytest.raises(RuntimeError) as info:
        export.to_tflite(mixed, pack=False)
    text = str(info.value)
    # the converter's log (MLIR loc(...) lines, "Some ops are not supported") was replayed to stderr
    # before this message, which names the cause itself (s40); the converter's error stays chained
    err = capfd.readouterr().err
    assert "loc(" not in err and "Some ops are not supported" not in err, err[-2000:]
    assert "Could not translate MLIR" in str(info.value.__cause__)  # the converter's error, chained
    assert "Layer(s) 'conv', 'flat' compute in float16 (a mixed-precision dtype policy)" in text, text
    assert "SELECT_TF_OPS" not in text and "set_global_policy" not in text, text
    with pytest.raises(ValueError):  # the former advice: the rebuilt model has a BatchNormalization's 4 weights
        build("float32").set_weights(mixed.get_weights())
    recipe = re.search(r"export a float32 copy, to_tflite\((dc_keras\.strip\(model, dtype='float32'\))\)", text)
    f32 = eval(recipe.group(1), {"dc_keras": dc_keras, "model": mixed})  # noqa: S307  the message's own code
    assert {l.dtype_policy.name for l in f32.layers} == {"float32"}
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype("float32")
    raw = export.to_tflite(f32, pack=False)
    outs = [run_tflite(content, x) for content in (raw, export.pack(raw))]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], f32.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs[0], mixed.predict(x, verbose=0), rtol=2e-2, atol=2e-2)  # float16 compute


def test_wrappers_under_mixed_precision_keep_a_float32_layer_float32():
    """Under a mixed-precision policy the usual float32 head (``dtype="float32"``) was wrapped by a
    wrapper computing in float16, which read the kernel it substitutes (and the centroids) as
    float16: the wrapped model's outputs differed from the original's at sparsity 0 (4.9e-4 on this
    model) and strip() did not reproduce them (3e-4). The wrapper now takes its layer's dtype policy:
    identical before training, and strip() keeps the trained model's predictions exactly."""
    import keras

    import dc_keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        inp = keras.Input((12,))
        model = keras.Model(inp, keras.layers.Dense(3, dtype="float32", name="head")(keras.layers.Dense(32, name="body")(inp)))
        x = np.random.default_rng(0).normal(size=(8, 12)).astype("float32")
        y = np.zeros((8, 3), "float32")
        pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0, frequency=1))
        assert {l.name: l.dtype_policy.name for l in pruned.layers[1:]} == {"body": "mixed_float16", "head": "float32"}
        np.testing.assert_array_equal(pruned.predict(x, verbose=0), model.predict(x, verbose=0))  # masks all 1 yet
        pruned.compile("adam", "mse")
        pruned.fit(x, y, verbose=0, callbacks=[dc_keras.PruningCallback()])
        stripped = dc_keras.strip(pruned)
        np.testing.assert_array_equal(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0))
        assert float(np.mean(keras.ops.convert_to_numpy(stripped.get_layer("head").kernel) == 0)) == 0.5
        clustered = dc_keras.cluster(stripped, bits=3)
        clustered.compile("adam", "mse")
        clustered.fit(x, y, verbose=0)
        final = dc_keras.strip(clustered)
        np.testing.assert_array_equal(final.predict(x, verbose=0), clustered.predict(x, verbose=0))
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("mode", ["int8", "float8"])
def test_to_tflite_of_a_keras_quantized_model_names_the_converter_route(mode, capfd):
    """docs/quantization.md's row "Keras 3 model.quantize('int8'), then to_tflite": the converter
    rejects Keras' int8 (and float8) layers, and the error advised SELECT_TF_OPS (Flex), which fails
    the same way. It now names the layers, their quantization and the route that works: the float
    model through the converter's own quantization (which then exports)."""
    import keras

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                                 keras.layers.Dense(2, name="fc2")])

    quantized = build()
    quantized.quantize(mode)
    capfd.readouterr()
    with pytest.raises(RuntimeError) as info:
        export.to_tflite(quantized, pack=False)
    text = str(info.value)
    assert "loc(" not in capfd.readouterr().err  # no converter log before a message that names the cause
    assert f"Layer(s) 'fc1', 'fc2' were quantized by Keras (model.quantize('{mode}'))" in text, text
    assert "quantize='int8', representative_data=" in text and "SELECT_TF_OPS" not in text, text
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    assert export.to_tflite(build(), quantize="int8", representative_data=x)[:8]  # the route named


def test_fit_after_the_schedule_ended_does_not_warn(tmp_path):
    """Training on once the schedule has finished (another fit(), or a reloaded model) warned
    "fit() ... runs steps 8..11, so it never updates the masks instead of 0.6" although the masks
    already held 0.6; that fit() is now not checked, and neither it nor strip() warns."""
    import keras

    import dc_keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(128, 8)).astype("float32"), rng.integers(0, 2, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constructor's guess (end_step steps trained) warns
        schedule = dc_keras.schedules.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=7, frequency=1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, name="fc1"), keras.layers.Dense(2, name="fc2")])
    pruned = dc_keras.prune(model, schedule)
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    fit = dict(batch_size=32, verbose=0, callbacks=[dc_keras.PruningCallback()])
    pruned.fit(x, y, epochs=2, **fit)  # steps 0..7: reaches 0.6 at end_step
    masks = [np.array(m) for w in pruned.layers for m in w._masks]
    pruned.save(tmp_path / "pruned.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned.fit(x, y, epochs=1, **fit)  # steps 8..11
        reloaded = keras.saving.load_model(tmp_path / "pruned.keras")
        reloaded.fit(x, y, epochs=1, **fit)
        dc_keras.strip(pruned), dc_keras.strip(reloaded)
    ours = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
            and ("fit() of layer" in str(w.message) or str(w.message).startswith("strip:"))]
    assert ours == [], ours
    assert all(np.array_equal(a, np.array(m)) for a, m in zip(masks, [m for w in pruned.layers for m in w._masks]))
    assert pruned.get_layer("fc1").sparsity()["kernel"] == pytest.approx(0.6, abs=0.01)


def test_cluster_seed_that_is_not_an_integer_is_named():
    """`cluster(model, seed="a")` failed with "invalid literal for int() with base 10: 'a'" and
    seed=1.7 was truncated to 1 without a word."""
    import keras

    import dc_keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="fc1")])
    for bad in ("a", 1.7, None, True):
        with pytest.raises(ValueError, match=r"`seed` must be an integer .*got " + re.escape(repr(bad))):
            dc_keras.cluster(model, bits=3, seed=bad)
    assert dc_keras.cluster(model, bits=3, seed=np.int64(3)).get_layer("fc1").seed == 3


def test_fitting_the_original_model_after_prune_says_prune_returns_a_new_model():
    """`dc_keras.prune(model, s)` with its result dropped, then `model.fit(..., callbacks=[PruningCallback()])`:
    the error said "use dc_keras.prune first" to a user who just had; it now says prune() returns a
    new model and which one to fit."""
    import keras

    import dc_keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc1")])
    dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))  # result dropped
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"has no pruned layers\. dc_keras\.prune\(\) returns a new model .*"
                                         r"`pruned = dc_keras\.prune\(model, schedule\)`, then compile and fit `pruned`"):
        model.fit(np.zeros((8, 8), "float32"), np.zeros((8, 4), "float32"), verbose=0,
                  callbacks=[dc_keras.PruningCallback()])
