"""`dc-keras pack` / `unpack` on bad input and hostile environments (issue 10): not a flatbuffer,
truncated .tflite, unsupported schema version, read-only output directory, disk full. Each must
exit non-zero with a one-line reason, leave the input unchanged and leave no (partial) output
file behind.

Read-only directory and disk full are real when the tests run as root (a read-only tmpfs and a
tiny tmpfs are mounted); otherwise the directory is chmod 0555 and disk full is simulated in
process by a write that raises ENOSPC, through the same command function.
"""
import contextlib
import errno
import os
import stat
import struct
import subprocess
import sys

import pytest

import _export_models as em
from dc_keras import export


def _error_line(r):
    """The CLI's error: non-zero exit and stderr is exactly one 'dc-keras CMD: error: ...' line
    (printed once: no absl/logging copy such as 'E1129 12:00:00 ... error')."""
    assert r.returncode != 0, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ": error: " in ln and ln.startswith("dc-keras ")]
    assert len(lines) == 1, r.stderr
    assert r.stderr.strip() == lines[0], r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _snapshot(d):
    return sorted(p.name for p in d.iterdir())


@pytest.fixture(scope="module")
def plain():
    return em.tflite("dense", None)


def _with_schema_version(model, version):
    """``model`` with the Model.version field (flatbuffer field 0) set to ``version``."""
    from dc_keras._flatbuffer import schema

    root = schema.Model.GetRootAs(model, 0)
    o = root._tab.Offset(4)
    assert o, "converter output always stores the schema version"
    pos = root._tab.Pos + o
    assert struct.unpack_from("<I", model, pos)[0] == 3
    return model[:pos] + struct.pack("<I", version) + model[pos + 4:]


def test_bad_inputs_through_the_cli(tmp_path, plain):
    """One CLI process per kind of bad input; each fails with one line and writes nothing."""
    cases = {
        "garbage.tflite": b"this is not a flatbuffer, just text\n" * 10,
        "empty.tflite": b"",
        "truncated.tflite": plain[: len(plain) // 2],
        "version99.tflite": _with_schema_version(plain, 99),
        "packed_then_truncated.tflite": export.pack(plain)[:-100],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    before = _snapshot(tmp_path)
    reasons = {}
    for name, data in cases.items():
        cmd = "unpack" if name.startswith("packed") else "pack"
        r = em.cli(cmd, tmp_path / name, tmp_path / ("out_" + name))
        reasons[name] = _error_line(r)
        assert (tmp_path / name).read_bytes() == data  # input unchanged
        assert _snapshot(tmp_path) == before, name  # no output, no temporary file
    assert "not a .tflite" in reasons["garbage.tflite"]
    assert "version" in reasons["version99.tflite"] and "99" in reasons["version99.tflite"]
    r = em.cli("pack", tmp_path / "missing.tflite", tmp_path / "out.tflite")
    assert "missing.tflite" in _error_line(r)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_output_that_is_not_a_regular_file_is_refused(tmp_path, plain):
    """An OUT that is a FIFO, a device (`dc-keras pack m.tflite /dev/null` as root) or a link to
    one is refused: the atomic rename would replace the node itself with a file."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    packed = tmp_path / "p.tflite"
    packed.write_bytes(export.pack(plain))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    os.symlink(fifo, tmp_path / "link")
    before = _snapshot(tmp_path)
    for args in (("pack", src, fifo), ("unpack", packed, fifo), ("pack", src, tmp_path / "link"),
                 ("inspect", packed, f"--plot={fifo}")):
        line = _error_line(em.cli(*args))
        assert "a FIFO, not a regular file" in line and "give the path of a regular file" in line, line
        assert _snapshot(tmp_path) == before, args
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.path.islink(tmp_path / "link"), args
    assert src.read_bytes() == plain


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd on this platform")
def test_pipe_or_device_as_out_is_told_to_use_standard_output(tmp_path, plain):
    """pack / unpack to a pipe or a device: the same refusal, plus the command line's way out, OUT -
    (process substitution `dc-keras pack m.tflite >(gzip > m.gz)` hands the child /dev/fd/63, a pipe:
    it was refused as a FIFO without a word about - ; /dev/null and a named FIFO get `- > OUT`)."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    packed = tmp_path / "p.tflite"
    packed.write_bytes(export.pack(plain))
    read_end, write_end = os.pipe()
    try:
        for cmd, inp in (("pack", src), ("unpack", packed)):
            line = _error_line(em.cli(cmd, inp, f"/dev/fd/{write_end}", pass_fds=(write_end,)))
            assert f"OUT /dev/fd/{write_end} is a FIFO, not a regular file" in line, line
            assert line.endswith(f"or - to write the model to standard output (dc-keras {cmd} {inp} - | COMMAND)"), line
        os.set_blocking(read_end, False)
        with pytest.raises(BlockingIOError):
            os.read(read_end, 1)  # nothing was written to the pipe
    finally:
        os.close(read_end)
        os.close(write_end)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out, kind in ((fifo, "FIFO"), ("/dev/null", "character device")):
        line = _error_line(em.cli("pack", src, out))
        assert line.endswith(f"is a {kind}, not a regular file: writing the output there would replace the {kind} "
                             f"with a file; give the path of a regular file, or - to write the model to standard "
                             f"output (dc-keras pack {src} - > {out})"), line
    r = subprocess.run([sys.executable, "-m", "dc_keras.cli", "pack", str(src), "-"], capture_output=True, timeout=600)
    assert r.returncode == 0 and r.stdout == export.pack(plain), r.stderr  # the way out works


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero on this platform")
def test_input_that_is_a_device_is_refused(tmp_path):
    """`dc-keras inspect /dev/zero` read until memory ran out (a terminal: until typed input)."""
    for args in (("pack", "/dev/zero", tmp_path / "o.tflite"), ("unpack", "/dev/zero", tmp_path / "o.tflite"),
                 ("inspect", "/dev/zero")):
        line = _error_line(em.cli(*args, timeout=120))
        assert line.endswith("/dev/zero: a device, not a file: give the path of a .tflite file"), line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("cut", [1, 8, 16, 64, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, -1])
def test_truncated_tflite_rejected(plain, cut):
    """Truncations anywhere: pack/unpack/inspect raise ValueError naming the problem."""
    n = cut if isinstance(cut, int) and cut > 0 else int(len(plain) * cut) if cut > 0 else len(plain) - 1
    data = plain[:n]
    for fn in (export.pack, export.unpack, export.inspect):
        with pytest.raises(ValueError, match="tflite|malformed|truncated|bytes"):
            fn(data)


def test_unsupported_schema_version_rejected(plain):
    for v in (0, 2, 4, 99, 2**31):
        with pytest.raises(ValueError, match="version"):
            export.pack(_with_schema_version(plain, v))


@contextlib.contextmanager
def _tmpfs(path, options):
    """Mounts a tmpfs at ``path`` (root only); yields False when that is not possible."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        yield False
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_output_directory(tmp_path, plain):
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    ro = tmp_path / "ro"
    with _tmpfs(ro, "ro,size=1m") as mounted:
        if not mounted:
            ro.chmod(0o555)
        try:
            r = em.cli("pack", src, ro / "m.packed.tflite")
            line = _error_line(r)
            assert "Read-only" in line or "Permission denied" in line, line
            assert str(ro / "m.packed.tflite") in line and ".tmp" not in line, line  # the output, not a temp file
            assert os.listdir(ro) == []
        finally:
            if not mounted:
                ro.chmod(0o755)
    assert src.read_bytes() == plain


def test_disk_full_real_tmpfs(tmp_path, plain):
    """A 4 KiB tmpfs cannot hold the packed model: ENOSPC, one line, nothing left behind."""
    packed = export.pack(plain)
    full = tmp_path / "full"
    with _tmpfs(full, "size=4k") as mounted:
        if not mounted:
            pytest.skip("needs root to mount a tmpfs (the in-process ENOSPC test covers this path)")
        assert len(packed) > 4096, "model too small to fill the tmpfs"
        src = tmp_path / "m.tflite"
        src.write_bytes(plain)
        r = em.cli("pack", src, full / "m.packed.tflite")
        line = _error_line(r)
        assert "No space left" in line, line
        assert os.listdir(full) == []
        assert src.read_bytes() == plain


def test_disk_full_simulated_in_process(tmp_path, plain, monkeypatch, capsys):
    """ENOSPC from the write itself, through the CLI's command dispatcher in this process."""
    from dc_keras import cli

    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    real_fdopen = os.fdopen

    class _Full:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            self._f.write(data[: len(data) // 2])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _Full(real_fdopen(fd, *a, **k)))
    for cmd, inp in (("pack", src),):
        rc = cli.main([cmd, str(inp), str(tmp_path / "out.tflite")])
        err = capsys.readouterr().err
        assert rc == 1
        lines = [ln for ln in err.splitlines() if ln.startswith(f"dc-keras {cmd}: error:")]
        assert len(lines) == 1 and "No space left" in lines[0], err
        assert str(tmp_path / "out.tflite") in lines[0] and ".tmp" not in lines[0], lines[0]
    assert _snapshot(tmp_path) == ["m.tflite"]
    assert src.read_bytes() == plain


def test_cli_options_do_not_clash_with_other_absl_flags_of_the_process():
    """A benchmark (or user code) that defined an absl flag named like a command option (--seed)
    must not break the CLI in the same process (the sub-commands carry no absl flags)."""
    code = ("from absl import flags\nflags.DEFINE_integer('seed', 0, 'another module')\n"
            "from dc_keras import cli\nparser, _ = cli.build_parser()\n"
            "print(parser.parse_args(['demo', '--seed', '3']).seed)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr[-2000:]


_INTERRUPT_AT_IMPORT = """
import sys
from importlib import abc


class CtrlC(abc.MetaPathFinder):  # Ctrl-C while the command line's modules are being imported
    def find_spec(self, fullname, path=None, target=None):
        if fullname == {module!r}:
            raise KeyboardInterrupt
        return None


sys.meta_path.insert(0, CtrlC())
{entry}
"""


@pytest.mark.parametrize("entry", ["from dc_keras._launch import run; run(['inspect', 'absent.tflite'])",
                                   "import runpy; sys.argv = ['dc_keras', 'inspect', 'absent.tflite']; "
                                   "runpy.run_module('dc_keras', run_name='__main__')"],
                         ids=["console-script", "python-m"])
def test_ctrl_c_while_the_cli_is_imported_says_interrupted(entry):
    """Ctrl-C in the first half second of ``dc-keras`` (importing absl and the commands) printed a
    KeyboardInterrupt traceback; it now ends as Ctrl-C during a command does: one line, status 130."""
    code = _INTERRUPT_AT_IMPORT.format(module="absl.flags.argparse_flags", entry=entry)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr.strip()) == (130, "dc-keras: interrupted"), (r.returncode, r.stderr[-2000:])


def test_the_console_script_is_the_launcher():
    """The installed ``dc-keras`` script (next to this Python) calls the launcher that covers the
    import (setup.cfg's entry point), not ``dc_keras.cli`` directly."""
    import pathlib

    script = pathlib.Path(sys.executable).parent / "dc-keras"
    assert script.is_file(), f"{script}: not installed (make install)"
    assert "from dc_keras._launch import run" in script.read_text(), script.read_text()


def test_ctrl_c_before_the_command_starts_says_interrupted(monkeypatch, capsys):
    """Ctrl-C after the import but before main() knew the command (TensorFlow's log set-up, the
    parser): the same line and status, no traceback."""
    from dc_keras import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    with pytest.raises(SystemExit) as e:
        cli.run(["inspect", "absent.tflite"])
    assert e.value.code == 130
    assert capsys.readouterr().err.strip() == "dc-keras: interrupted"
