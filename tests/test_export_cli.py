"""`dc-keras pack`, `unpack`, `inspect` as a user runs them."""
import os
import stat
import subprocess
import sys

import _export_models as em
from dc_keras import export


def _cli(*args):
    return em.cli(*args, timeout=300)


def test_pack_unpack_inspect_commands(tmp_path):
    plain = em.tflite("dense", None)
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    packed, restored = tmp_path / "m.packed.tflite", tmp_path / "m.restored.tflite"
    r = _cli("pack", src, packed)
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == plain  # input untouched
    assert packed.read_bytes() == export.pack(plain)
    r = _cli("unpack", packed, restored)
    assert r.returncode == 0, r.stderr
    assert restored.read_bytes() == export.unpack(packed.read_bytes())
    r = _cli("inspect", packed, f"--plot={tmp_path / 'sizes.png'}")
    assert r.returncode == 0, r.stderr
    assert "packed" in r.stdout and "file:" in r.stdout and (tmp_path / "sizes.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.tflite", "m.packed.tflite", "m.restored.tflite", "sizes.png"])  # no temporary files left


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all, definitely")
    r = _cli("pack", bad, tmp_path / "out.tflite")
    assert r.returncode != 0 and "not a .tflite" in r.stderr
    assert not (tmp_path / "out.tflite").exists()
    r = _cli("pack", bad, bad)
    assert r.returncode != 0 and "must differ" in r.stderr
    assert bad.read_bytes() == b"not a model at all, definitely"
    os.link(bad, tmp_path / "hard.tflite")
    os.symlink(bad, tmp_path / "sym.tflite")
    for out in ("hard.tflite", "sym.tflite"):  # another name of the same file
        for cmd in ("pack", "unpack"):
            r = _cli(cmd, bad, tmp_path / out)
            assert r.returncode != 0 and "choose a different output path" in r.stderr, r.stderr
            assert (tmp_path / out).read_bytes() == b"not a model at all, definitely"
            assert os.path.islink(tmp_path / "sym.tflite")
    r = _cli("inspect")
    assert r.returncode != 0


def test_stdout_closed_early_is_not_an_error(tmp_path):
    """`dc-keras inspect m.tflite | head -1`: the reader goes away before the table is printed;
    the command ends quietly (exit 141, as SIGPIPE would), not with 'error: Broken pipe'."""
    src = tmp_path / "m.tflite"
    src.write_bytes(em.tflite("dense", None))
    for args in (("inspect", src), ("pack", src, tmp_path / "p.tflite")):
        proc = subprocess.Popen([sys.executable, "-m", "dc_keras.cli", *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        proc.stdout.close()  # before the interpreter has even imported dc_keras
        err = proc.communicate(timeout=300)[1]
        assert proc.returncode == 141 and err == "", (args, proc.returncode, err)


def test_help_and_version_exit_zero():
    r = _cli("--help")
    assert r.returncode == 0, r.stderr
    for name in ("demo", "pack", "unpack", "inspect"):
        assert name in r.stdout
    for cmd in ("pack", "unpack", "inspect", "demo"):
        r = _cli(cmd, "--help")
        assert r.returncode == 0 and f"usage: dc-keras {cmd}" in r.stdout, (cmd, r.stderr)
    r = _cli("--version")
    import dc_keras

    assert r.returncode == 0 and r.stdout.strip() == f"dc-keras {dc_keras.__version__}", r


def test_usage_errors_are_one_message_exit_2():
    for args, expect in ((), "missing command"), (("frobnicate",), "unknown command 'frobnicate'"), \
            (("pack", "only_in.tflite"), "required: OUT"), (("demo", "--epochs=0"), "at least 1"), \
            (("pack", "missing.tflite", "o.tflite", "--decoder", "minimal", "--layouts", "float_planes"),
             # was exit 1 after reading the input, blaming it, in Python's spelling (layouts=None)
             "--decoder minimal reads only layouts dense,sparse, and --layouts names float_planes: drop --layouts"):
        r = _cli(*args)
        assert r.returncode == 2, (args, r)
        errors = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
        assert len(errors) == 1 and expect in errors[0], (args, r.stderr)


def test_unpack_of_an_ordinary_tflite_says_so(tmp_path):
    plain = em.tflite("dense", None)
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    r = _cli("unpack", src, tmp_path / "out.tflite")
    assert r.returncode == 1
    assert r.stderr.startswith("dc-keras unpack: error: ") and "not packed" in r.stderr, r.stderr
    assert str(src) in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    assert src.read_bytes() == plain


def test_cli_module_defines_no_global_flags():
    """Importing the CLI (or the export commands) registers nothing process-wide: no absl flags,
    so a program that imports dc_keras can define its own --min_bytes/--plot/--epochs."""
    code = ("from absl import flags\n"
            "before = set(flags.FLAGS)\n"
            "import dc_keras.cli, dc_keras.export.cli_commands\n"
            "assert set(flags.FLAGS) == before, set(flags.FLAGS) - before\n"
            "flags.DEFINE_integer('min_bytes', 1, 'mine'); flags.DEFINE_string('plot', None, 'mine')\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def _cli_umask(umask, *args):
    return em.cli(*args, timeout=300, preexec_fn=lambda: os.umask(umask))


def test_outputs_follow_the_umask(tmp_path):
    plain = em.tflite("dense", None)
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    src.chmod(0o640)
    mtime = src.stat().st_mtime_ns
    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        d = tmp_path / f"u{umask:03o}"
        d.mkdir()
        assert _cli_umask(umask, "pack", src, d / "p.tflite").returncode == 0
        assert _cli_umask(umask, "unpack", d / "p.tflite", d / "u.tflite").returncode == 0
        r = _cli_umask(umask, "inspect", d / "p.tflite", f"--plot={d / 'sizes.png'}")
        assert r.returncode == 0, r.stderr
        for name in ("p.tflite", "u.tflite", "sizes.png"):
            assert stat.S_IMODE((d / name).stat().st_mode) == mode, (umask, name)
        assert sorted(p.name for p in d.iterdir()) == ["p.tflite", "sizes.png", "u.tflite"]
    assert src.read_bytes() == plain and stat.S_IMODE(src.stat().st_mode) == 0o640
    assert src.stat().st_mtime_ns == mtime  # the input is only read


def test_long_pack_shows_elapsed_time_on_a_terminal_only(monkeypatch):
    import io
    import time

    from dc_keras.export import _pack, cli_commands

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(_pack, "PROGRESS_MIN_BYTES", 100)  # one threshold: pack's bar, unpack's line
    for stream, size, shown in ((Tty(), 1000, True), (Tty(), 10, False), (io.StringIO(), 1000, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with cli_commands._working("packing m.tflite", size):
            time.sleep(0.7)
        text = stream.getvalue()
        assert ("packing m.tflite: 00:0" in text) == shown, text
        if shown:
            assert text.endswith("\r"), repr(text)  # the line is cleared when done


def test_pack_lists_the_constants_it_kept_raw_as_it_lists_those_it_cannot_pack(tmp_path):
    """A file converted with Optimize.EXPERIMENTAL_SPARSITY: pack turns one TFLite-sparse kernel into a
    HuffDecode and keeps the other, a 515 B sparse tensor whose dense form packs no smaller. Only
    `dc-keras inspect` named it; `dc-keras pack` printed the result line alone (its "kept raw" line
    came only when the kept constants were a tenth of the output). The CLI's report now names every
    constant it kept raw, like those it cannot pack, with the reason that fits a TFLite-sparse tensor;
    the Python warning keeps its threshold (no warning for this one: nothing to act on, and a few kept
    constants are normal)."""
    import warnings

    import numpy as np
    import tensorflow as tf

    rng = np.random.RandomState(0)
    inputs = tf.keras.Input((64,))
    h = tf.keras.layers.Dense(128, activation="relu")(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(h))
    for w in model.weights:
        if len(w.shape) == 2:
            w.assign(np.where(rng.rand(*w.shape) < 0.8, 0, w.numpy()))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    conv.representative_dataset = lambda: ([rng.rand(1, 64).astype(np.float32)] for _ in range(16))
    data = conv.convert()
    kept = [(r.name, r.raw_bytes) for r in export.inspect(data).rows if r.status == "kept"]
    assert kept and all("TFLite-sparse" in r.reason for r in export.inspect(data).rows if r.status == "kept"), kept
    src, dst = tmp_path / "sparse.tflite", tmp_path / "sparse.packed.tflite"
    src.write_bytes(data)
    r = _cli("pack", src, dst)
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x.startswith("kept raw: ")]
    assert len(lines) == 1, r.stdout
    assert f"kept raw: {len(kept)} constant tensor(s), {sum(n for _, n in kept)} B," in lines[0], lines
    assert all(f"{name} ({nbytes} B)" in lines[0] for name, nbytes in kept) and f"dc-keras inspect {src}" in lines[0]
    # the reason that fits a TFLite-sparse tensor (the line said "typically weights neither pruned nor clustered")
    assert " B, TFLite-sparse (Optimize.EXPERIMENTAL_SPARSITY), whose packed dense form" in lines[0], lines
    assert "neither pruned nor clustered" not in lines[0], lines
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert export.pack(data) == dst.read_bytes()
    assert not [str(w.message) for w in caught if "kept raw" in str(w.message)]
