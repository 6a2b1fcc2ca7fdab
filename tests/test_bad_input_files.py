"""Bad input to ``dc-keras pack`` / ``unpack`` / ``inspect`` and ``dc_keras.export`` (s40 red team):
inputs that are not regular files (a named FIFO nothing writes to, a socket), input paths the OS
rejects, a big file that is no model, a model TFLite itself refuses (a constant whose buffer is
shorter than its shape), bytes naming a file given as a model's content; outputs: the policy in
``--help``, the owner and group of a replaced file, a mount point, a plot over the model it
describes. Each gets one clear error naming the problem and the fix, never a hang or a silent
wrong result, and writes nothing.
"""
import os
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import _export_models as em
from dc_keras import _flatbuffer as fb
from dc_keras import cli, export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
# A safety net only (no test measures time): a command that waits on its input never ends, and
# the test must then fail, not hang the suite.
NEVER = 120

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")


@pytest.fixture(scope="module")
def plain():
    return em.tflite("dense", None)


def _error_line(r):
    """The CLI's error: exit 1 and stderr exactly one 'dc-keras CMD: error: ...' line."""
    assert r.returncode == 1, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dc-keras ") and ": error: " in lines[0], r.stderr
    return lines[0]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dc_keras", *map(str, args)], capture_output=True, text=True,
                          timeout=NEVER, env=ENV, **kw)


@needs_fifo
def test_a_named_fifo_nothing_writes_to_is_refused_not_waited_on(tmp_path):
    """`dc-keras inspect FIFO` (pack, unpack, export.inspect(path)) with no process writing to the
    FIFO waited forever in open(): now one error saying so and how to feed it."""
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    for args in (("pack", fifo, tmp_path / "o.tflite"), ("unpack", fifo, tmp_path / "o.tflite"), ("inspect", fifo)):
        try:
            r = _cli(*args)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dc-keras {args[0]} waited for a writer of the FIFO")
        line = _error_line(r)
        assert line == (f"dc-keras {args[0]}: error: {fifo}: a FIFO (named pipe) that no process is writing to, so "
                        "reading it would wait forever: start the process writing the model into it first (e.g. cat "
                        f"model.tflite > {fifo} &), or give the path of a .tflite file"), line
        assert sorted(os.listdir(tmp_path)) == ["model.fifo"]
    code = textwrap.dedent("""
        import sys
        from dc_keras import export
        try:
            export.inspect(sys.argv[1])
        except OSError as e:
            print(e.filename, e.strerror)
    """)
    try:
        r = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=NEVER,
                           env=ENV)
    except subprocess.TimeoutExpired:
        pytest.fail("export.inspect(FIFO) waited for a writer")
    assert r.stdout.startswith(f"{fifo} a FIFO (named pipe) that no process is writing to"), (r.stdout, r.stderr)


@needs_fifo
def test_a_fifo_or_pipe_holding_a_model_is_read_as_a_file(tmp_path, plain):
    """What the FIFO check must not refuse: a named FIFO whose writer already wrote the model
    (here: this process holds it open for reading, so the bytes stay in the pipe after the writer
    closed it), and an anonymous pipe (process substitution, ``<(cmd)``: /dev/fd/N), which is read
    to its end; an empty one is an empty model, not a FIFO without a writer."""
    packed = export.pack(plain)
    assert len(packed) < 16 << 10  # fits in a pipe's buffer: the writes below do not block
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader: opening the writer below does not wait
    try:
        w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(w, packed)
        os.close(w)
        r = _cli("unpack", fifo, tmp_path / "plain.tflite")
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        os.close(keep)
    assert export.unpack(packed) == (tmp_path / "plain.tflite").read_bytes()
    for data in (packed, b""):
        rd, w = os.pipe()
        try:
            os.write(w, data)
            os.close(w)
            r = _cli("inspect", f"/dev/fd/{rd}", pass_fds=(rd,))
        finally:
            os.close(rd)
        if data:
            assert r.returncode == 0 and f"file: {len(packed)} B (packed" in r.stdout, r.stderr[-2000:]
        else:
            assert _error_line(r).endswith(f"/dev/fd/{rd}: not a .tflite model: only 0 bytes; give a TensorFlow "
                                           "Lite model (the output of tf.lite.TFLiteConverter or "
                                           "dc_keras.export.to_tflite)"), r.stderr


def test_a_socket_or_a_directory_as_input_says_what_it_is(tmp_path, capsys):
    """A Unix socket given as IN was reported as 'No such device or address' (open's ENXIO)."""
    path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        for argv in (["inspect", str(path)], ["pack", str(path), str(tmp_path / "o.tflite")]):
            assert cli.main(argv) == 1
            err = capsys.readouterr().err.strip()
            assert err == f"dc-keras {argv[0]}: error: {path}: a socket, not a file: give the path of a .tflite file"
    finally:
        s.close()
    assert cli.main(["inspect", str(tmp_path)]) == 1  # a directory: as before the FIFO check
    assert capsys.readouterr().err.strip() == (f"dc-keras inspect: error: {tmp_path}: Is a directory; give the path "
                                               "of a .tflite file")
    assert sorted(os.listdir(tmp_path)) == ["s.sock"]


def _shorter_constant(data):
    """``data`` with its largest constant (a float32 weight; in a packed model the packed uint8
    data a HuffDecode op reads) declared one element wider than its buffer holds (the TFLite
    interpreter refuses such a file); the tensor's index, name, new shape, buffer and its bytes,
    and the bytes the shape needs."""
    model = fb.read_model(data)
    sg = model.subgraphs[0]
    i, t = max(((i, t) for i, t in enumerate(sg.tensors) if t.buffer > 0),
               key=lambda it: fb.buffer_size(model, it[1].buffer))
    nbytes = fb.buffer_size(model, t.buffer)
    t.shape = [int(d) for d in t.shape[:-1]] + [int(t.shape[-1]) + 1]
    need = {fb.schema.TensorType.FLOAT32: 4, fb.schema.TensorType.UINT8: 1}[t.type] * int(np.prod(t.shape))
    return fb.write_model(model), i, fb.tensor_name(t), t.shape, t.buffer, nbytes, need


def test_a_constant_shorter_than_its_shape_is_refused_as_tflite_refuses_it(tmp_path, plain, capsys):
    """A float32 constant whose buffer holds fewer bytes than its declared shape: the TFLite
    interpreter refuses the file, yet `dc-keras pack` exited 0 (the tensor in a 'not packed' note)
    and `inspect` listed it as 'refused', as if the file were a model. Now pack, unpack and inspect
    (CLI and API) refuse it with one error naming the tensor, the sizes and the fix."""
    from ai_edge_litert.interpreter import Interpreter

    bad, i, name, shape, buf, nbytes, need = _shorter_constant(plain)
    with pytest.raises(ValueError, match=f"Tensor {i} is invalidly specified in schema"):
        Interpreter(model_content=bad)  # the premise: TFLite itself refuses the file
    why = (f"malformed .tflite: constant tensor {i} {name!r} (subgraph 0) declares float32{shape} ({need} B) but "
           f"its buffer {buf} holds only {nbytes} B, so the TFLite interpreter refuses this file (\"Tensor {i} is "
           "invalidly specified in schema\"): export the model again, or fix the tool that wrote the file")
    for fn in (export.pack, export.inspect):
        with pytest.raises(ValueError, match="^malformed .tflite: constant tensor") as info:
            fn(bad)
        assert str(info.value) == why
    src = tmp_path / "bad.tflite"
    src.write_bytes(bad)
    for argv in (["pack", str(src), str(tmp_path / "o.tflite")], ["inspect", str(src)]):
        assert cli.main(argv) == 1
        captured = capsys.readouterr()
        assert captured.err.strip().startswith(f"dc-keras {argv[0]}: error: {src}: malformed .tflite: constant "
                                               f"tensor {i} {name!r}"), captured.err
        assert "not packed" not in captured.out
    assert sorted(os.listdir(tmp_path)) == ["bad.tflite"] and src.read_bytes() == bad
    # a packed file whose packed data is shorter than its tensor declares: unpack (and the TFLite
    # interpreter) refuse it, and so does pack (an error about the file, before 'already packed')
    bad_packed, i, name, shape, buf, nbytes, need = _shorter_constant(export.pack(plain))
    for fn in (export.unpack, export.inspect, export.pack):
        with pytest.raises(ValueError) as info:
            fn(bad_packed)
        assert name == ""  # pack writes packed tensors nameless
        assert str(info.value).startswith(f"malformed .tflite: constant tensor {i} (unnamed, subgraph 0) declares "
                                          f"uint8{shape} ({need} B) but its buffer {buf} holds only {nbytes} B"), info


def test_bytes_naming_a_file_given_as_content_say_so(tmp_path, plain, monkeypatch):
    """export.inspect(b"m.tflite") (or pack/unpack): bytes are a model's content, so the name was
    read as a model ("file identifier is b'...'"), with no word that a path was given."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    monkeypatch.chdir(tmp_path)
    for fn in (export.pack, export.unpack, export.inspect):
        for name in (os.fsencode(src), b"m.tflite"):
            with pytest.raises(ValueError, match="not a .tflite model") as info:
                fn(name)
            assert (f"these bytes are the name of an existing file, {os.fsdecode(name)!r}, but bytes are taken as "
                    "the model's content: give the file's content, open(path, 'rb').read()") in str(info.value)
    with pytest.raises(ValueError) as info:
        export.inspect(b"no-such-file.tflite")
    assert "name of an existing file" not in str(info.value)
    assert export.inspect(src).rows  # a path as str / PathLike is read


def test_pack_and_unpack_help_say_what_happens_to_an_existing_output(capsys):
    """The overwrite policy was not in --help: an existing OUT is replaced without asking (the
    report says so), keeping its permissions, through a symlink; a read-only one is refused."""
    for command in ("pack", "unpack"):
        assert cli.main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "an existing OUT is replaced without asking (the report says 'replaced the existing OUT'), keeping " \
               "its permissions" in text, text
        assert "A new OUT's permissions follow the umask" in text and "IN is never modified" in text, text


def test_a_large_file_that_is_no_tflite_is_refused_from_its_first_bytes(tmp_path, monkeypatch, capsys):
    """A big file that is no .tflite (a 30 GB data set given by mistake) was read whole before
    "not a .tflite model" (3 GB: 18 s, 3.2 GB of memory), or ended in "out of memory", a wrong fix.
    Files over 64 MiB are now refused from their first 64 KiB, with the same message; a zip keeps
    its hint."""
    from dc_keras.export import cli_commands

    read = []

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, *n):
            data = self.f.read(*n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(cli_commands, "open", lambda *a, **k: Spy(open(*a, **k)), raising=False)
    for name, head in (("data.npy", b"\x93NUMPY\x01\x00"), ("bundle.zip", b"PK\x03\x04")):
        path = tmp_path / name
        path.write_bytes(head)
        os.truncate(path, (64 << 20) + 1)  # sparse: no disk space used
        read.clear()
        assert cli.main(["inspect", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"dc-keras inspect: error: {path}: not a .tflite model: file identifier is "), err
        assert "zip archive" in err if name.endswith(".zip") else "give a TensorFlow Lite model" in err, err
        assert sum(read) <= 64 << 10, read
    assert sorted(os.listdir(tmp_path)) == ["bundle.zip", "data.npy"]


def test_a_replaced_output_keeps_its_owner_and_group(tmp_path, plain, capsys):
    """Replacing an output gave it the writer's owner and group: a file shared through its group
    (mode 0660) lost its group for the others, and a user's file that root re-packed became
    root's (unwritable for the user). The new file now keeps the old file's group (and, as root,
    its owner), like the mode it already kept. Giving a file away takes root: skipped otherwise."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the existing output another owner and group")
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    out, chart = tmp_path / "shared.tflite", tmp_path / "sizes.svg"
    for f in (out, chart):
        f.write_bytes(b"old")
        os.chown(f, 65534, 65534)
        os.chmod(f, 0o660)
    assert cli.main(["pack", str(src), str(out)]) == 0
    assert "replaced the existing" in capsys.readouterr().out
    export.inspect(src).plot(chart)  # the Python API's writer: the same rule
    for f in (out, chart):
        st = os.stat(f)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o660), f
    assert out.read_bytes()[4:8] == b"TFL3" and chart.read_bytes() != b"old"
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "shared.tflite", "sizes.svg"]


def test_input_path_errors_name_the_fix(tmp_path, plain, capsys, monkeypatch):
    """An input path ending in / after a file's name, a symbolic link loop or a name too long gave
    only the OS's words ('Not a directory', 'Too many levels of symbolic links', 'File name too
    long'), and a dangling link 'No such file or directory' with no word of the link: each now
    names what is wrong and what to do."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.tflite").write_bytes(plain)
    os.symlink("loop_b", "loop_a")
    os.symlink("loop_a", "loop_b")
    os.symlink("gone.tflite", "dangling.tflite")
    cases = {"m.tflite/": "Not a directory; a part of the path before the last / is a file, not a directory",
             "loop_a": "Too many levels of symbolic links; a symbolic link in the path leads back to itself (a loop): "
                       "fix the link",
             "dangling.tflite": "No such file or directory; it is a symbolic link to gone.tflite, which does not exist: "
                                "fix the link or check the path of the input .tflite",
             "x" * 300 + ".tflite": "File name too long; a name in the path is longer than the file system allows"}
    before = sorted(os.listdir(tmp_path))
    for path, why in cases.items():
        assert cli.main(["inspect", path]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"dc-keras inspect: error: {path}: {why}"), err
        with pytest.raises(OSError, match="; ") as info:  # the Python API: the same words
            export.inspect(path)
        assert why in info.value.strerror and info.value.filename == path
    assert sorted(os.listdir(tmp_path)) == before


def test_report_plot_does_not_write_over_the_model_it_was_read_from(tmp_path, plain):
    """export.inspect(path).plot(path) (or a link to it) replaced the model with a chart: the CLI
    refuses `inspect M --plot M`, the API did not. Now the same ValueError; the model is kept."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    os.symlink(src, tmp_path / "link.png")
    report = export.inspect(src)
    for path in (tmp_path / "link.png", src, str(src)):  # a link named like an image: the real loss
        with pytest.raises(ValueError, match="^the plot path must differ from the model inspected: .* is the same "
                                             "file as .*inputs are never modified: choose a different output path"):
            report.plot(path)
    assert src.read_bytes() == plain and sorted(os.listdir(tmp_path)) == ["link.png", "m.tflite"]
    report.plot(tmp_path / "sizes.png")  # another path: written
    export.inspect(plain).plot(src.with_suffix(".svg"))  # a report of bytes has no source file
    assert sorted(os.listdir(tmp_path)) == ["link.png", "m.svg", "m.tflite", "sizes.png"]


def test_an_output_with_a_file_mounted_on_it_names_the_mount(tmp_path, plain, capsys):
    """An OUT that is a mount point (a file bind-mounted on it: container set-ups do this) cannot
    be renamed over: 'Device or resource busy' and nothing else. Now the cause and the fix; the
    mounted file is untouched and no temporary file is left. Mounting takes root: skipped
    otherwise."""
    if os.geteuid() != 0:
        pytest.skip("needs root to bind-mount a file")
    src, out, mounted = tmp_path / "m.tflite", tmp_path / "out.tflite", tmp_path / "mounted.bin"
    src.write_bytes(plain)
    out.write_bytes(b"under")
    mounted.write_bytes(b"mounted")
    r = subprocess.run(["mount", "--bind", str(mounted), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, f"mount --bind failed as root: {r.stderr}"
    try:
        assert cli.main(["pack", str(src), str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"dc-keras pack: error: {out}: Device or resource busy; {out} is in use by the system (a mount "
                       "point: another file is mounted on it), so it cannot be replaced: unmount it or choose another "
                       "output path (nothing was written)"), err
        assert out.read_bytes() == b"mounted"
        assert sorted(os.listdir(tmp_path)) == ["m.tflite", "mounted.bin", "out.tflite"]
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)
    assert out.read_bytes() == b"under"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_output_in_a_directory_that_takes_no_new_files_is_not_called_missing(tmp_path, plain):
    """dc-keras pack m.tflite /proc/x.tflite said 'the directory /proc does not exist: create it
    first' (creating a file there fails with ENOENT); /proc exists: the message says it takes no
    new files and to choose an ordinary directory."""
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    line = _error_line(_cli("pack", src, "/proc/dc_keras_test.tflite"))
    assert "the directory /proc exists but no file can be created in it" in line, line
    assert "does not exist: create it" not in line and "choose an output path in an ordinary directory" in line
    missing = _error_line(_cli("pack", src, tmp_path / "no" / "x.tflite"))  # a missing one still says so
    assert f"the directory {tmp_path / 'no'} does not exist: create it first" in missing, missing
