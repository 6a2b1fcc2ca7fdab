"""dc_keras._fileio.atomic_write: the one writer of every output file (to_tflite(path=), the CLI,
the demo, the plots). Permissions follow the umask; failures leave nothing behind and name the
output path."""
import errno
import os
import stat

import pytest

from dc_keras import _fileio
from dc_keras._fileio import atomic_write


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    saved = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(saved)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)])
def test_new_file_mode_follows_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    out = tmp_path / "out.bin"
    assert atomic_write(out, b"abc") == str(out)
    assert out.read_bytes() == b"abc"
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert os.listdir(tmp_path) == ["out.bin"]


def test_replaces_an_existing_file_and_leaves_other_files_alone(tmp_path, umask):
    umask(0o022)
    src, out = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(b"input")
    src.chmod(0o444)
    out.write_bytes(b"old contents, longer than the new ones")
    atomic_write(out, src.read_bytes() + b"!")
    assert out.read_bytes() == b"input!"
    assert src.read_bytes() == b"input" and stat.S_IMODE(src.stat().st_mode) == 0o444
    assert sorted(os.listdir(tmp_path)) == ["in.bin", "out.bin"]


def test_a_replaced_file_keeps_its_mode_and_a_symlink_is_written_through(tmp_path, umask):
    """Replacing an output keeps what the user set up: a 0600 file stays 0600 (the umask would
    make it 0644), and a symbolic link stays a link whose target gets the new bytes (the rename
    used to turn models/latest.tflite -> v3.tflite into a regular file); a dangling link is
    refused, not written through."""
    umask(0o022)
    out = tmp_path / "private.bin"
    out.write_bytes(b"old")
    out.chmod(0o600)
    atomic_write(out, b"new")
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o600
    sub = tmp_path / "models"
    sub.mkdir()
    target, link = sub / "v3.tflite", tmp_path / "latest.tflite"
    target.write_bytes(b"v3")
    link.symlink_to(os.path.join("models", "v3.tflite"))
    atomic_write(link, b"v4")
    assert link.is_symlink() and os.readlink(link) == os.path.join("models", "v3.tflite")
    assert target.read_bytes() == b"v4" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(os.listdir(sub)) == ["v3.tflite"] and sorted(os.listdir(tmp_path)) == [
        "latest.tflite", "models", "private.bin"]
    dangling = tmp_path / "dangling.tflite"
    dangling.symlink_to(os.path.join("models", "new.tflite"))
    with pytest.raises(FileNotFoundError, match="not written through a dangling link"):
        atomic_write(dangling, b"fresh")  # a link to no file: refused, as GNU cp (test_faults.py)
    assert dangling.is_symlink() and sorted(os.listdir(sub)) == ["v3.tflite"]


def test_failed_write_leaves_no_temporary_file_and_names_the_output(tmp_path, monkeypatch):
    out = tmp_path / "out.bin"
    out.write_bytes(b"previous")

    def no_space(src, _dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError) as info:
        atomic_write(out, b"new")
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(out) and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == ["out.bin"] and out.read_bytes() == b"previous"


def test_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda _fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.bin", b"x" * 1000)
    assert os.listdir(tmp_path) == []


def test_missing_directory_is_reported_with_the_output_path(tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "out.bin"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write(out, b"x")
    assert info.value.filename == str(out)
    assert not (tmp_path / "no").exists()


def test_an_output_under_a_regular_file_says_the_file_is_in_the_way(tmp_path):
    """notes.txt/sub/model.tflite: the message said the directory did not exist and to "create it
    first", which cannot be done; it names the file in the way. A merely missing directory keeps
    its advice."""
    (tmp_path / "notes.txt").write_text("x")
    for out in (tmp_path / "notes.txt" / "sub" / "model.tflite", tmp_path / "notes.txt" / "a" / "b" / "m.tflite"):
        for call, arg in ((atomic_write, (out, b"x")), (_fileio.check_writable, (str(out),))):
            with pytest.raises(OSError) as info:
                call(*arg)
            message = str(info.value)
            assert f"{tmp_path / 'notes.txt'} is a file, not a directory" in message, message
            assert "create it first" not in message, message
    assert (tmp_path / "notes.txt").read_text() == "x"
    with pytest.raises(FileNotFoundError, match="does not exist: create it first"):
        _fileio.check_writable(str(tmp_path / "missing" / "m.tflite"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_or_device_is_not_replaced(tmp_path):
    """The rename would replace the node itself (for /dev/null as root: the system's /dev/null)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for fn in (_fileio.check_writable, lambda p: atomic_write(p, b"x")):
        with pytest.raises(OSError, match="a FIFO, not a regular file") as info:
            fn(fifo)
        assert info.value.filename == str(fifo)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]


def test_figure_bytes_render_atomically(tmp_path, umask):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    umask(0o027)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    data = _fileio.figure_bytes(fig, "png")
    plt.close(fig)
    assert data.startswith(b"\x89PNG")
    atomic_write(tmp_path / "f.png", data)
    assert stat.S_IMODE((tmp_path / "f.png").stat().st_mode) == 0o640


def test_library_writers_follow_the_umask(tmp_path, umask):
    """to_tflite(path=), the demo's stage files and the sensitivity plot under umask 027."""
    import keras

    import dc_keras
    from dc_keras import demo, export

    umask(0o027)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    data = export.to_tflite(model, pack=False, path=tmp_path / "m.tflite")
    assert (tmp_path / "m.tflite").read_bytes() == data
    demo._write(str(tmp_path), "stage.tflite", data)
    report = {"mode": "sparsity", "metric": "accuracy", "baseline": 0.9, "values": [0.5, 0.9],
              "layers": {"dense": [0.9, 0.8]}}
    dc_keras.plot_sensitivity(report, tmp_path / "s.png")
    for name in ("m.tflite", "stage.tflite", "s.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "s.png", "stage.tflite"]


@pytest.mark.parametrize("sticky", [False, True], ids=["writable-dir", "sticky-dir"])
def test_another_users_output_file_names_the_owner_and_a_fix_that_works(shared_dir, capsys, monkeypatch, sticky):
    """An output file another user owns: (a) mode 0644 in a directory we may write was called
    "read-only (mode 0644) ... chmod u+w OUT", which only its owner may run: now the owner is named,
    with fixes that work (another path; removing it, as the directory allows; asking the owner).
    (b) mode 0666 in a sticky directory (drwxrwxrwt, like /tmp) failed only after packing, with
    "Operation not permitted; DIR is not writable" (the rename over another user's file is what
    the sticky bit forbids): now check_writable says so before any work. As root, the checks run
    with the effective user id of `nobody`; otherwise os.geteuid is made to name another user."""
    import pwd

    import _export_models as em

    from dc_keras import cli

    src = os.path.join(shared_dir, "m.tflite")
    with open(src, "wb") as f:
        f.write(em.tflite("dense", None))
    os.chmod(src, 0o644)
    d = os.path.join(shared_dir, "d")
    os.mkdir(d)
    os.chmod(d, 0o1777 if sticky else 0o777)
    out = os.path.join(d, "out.tflite")
    with open(out, "wb") as f:
        f.write(b"keep me")
    os.chmod(out, 0o666 if sticky else 0o644)
    uid = os.stat(out).st_uid
    name = pwd.getpwuid(uid).pw_name
    root = os.geteuid() == 0
    if not root:  # the file is ours: another effective user id, which may not write it (its mode says 0644)
        monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
        if not sticky:
            writable = _fileio._writable
            monkeypatch.setattr(_fileio, "_writable", lambda p, m=os.W_OK: p != out and writable(p, m))
    if sticky:
        want = (f"{out}: Operation not permitted; the existing file belongs to {name} (uid {uid}), and {d} is a "
                "sticky directory (mode 1777, like /tmp) where only a file's owner may replace or remove it "
                f"(outputs are written to a temporary file renamed over the old one): choose another output "
                f"path, or ask {name} to remove it")
    else:
        want = (f"{out}: Permission denied; the existing file belongs to {name} (uid {uid}) and is not writable "
                f"for you (mode 0644), so it was not replaced: choose another output path, or, if it may go, "
                f"remove it first (rm {out}: {d} is writable for you) or ask {name} to make it writable for you")
    if root:
        os.seteuid(65534)
    try:
        for call in (_fileio.check_writable, lambda p: atomic_write(p, b"new")):
            with pytest.raises(PermissionError) as info:
                call(out)
            assert (info.value.filename, f"{out}: {info.value.strerror}") == (out, want), str(info.value)
        capsys.readouterr()
        assert cli.main(["pack", src, out]) == 1
        err = capsys.readouterr().err
        assert err == f"dc-keras pack: error: {want}\n", err
        with open(out, "rb") as f:
            assert f.read() == b"keep me"
        assert os.listdir(d) == ["out.tflite"]
        if not sticky and root:  # the fix named works: the directory lets this user remove it
            os.remove(out)
            assert cli.main(["pack", src, out]) == 0
    finally:
        if root:
            os.seteuid(0)


def test_a_read_only_output_file_is_refused_not_replaced(shared_dir, capsys):
    """An existing output the user made read-only (chmod 444) is refused, as `cp`, `gcc -o`, `zip`
    and `open(path, "wb")` refuse it (measured: all four 'Permission denied' as non-root): error
    naming the file and the fix, the file and the directory unchanged - for the CLI (before
    packing) and to_tflite's writer alike. Before, the atomic rename replaced it silently. As
    root, which may write any file (those tools then replace it too), it is replaced and keeps its
    mode. Run as root, the non-root half runs with the effective user id of `nobody`."""
    import _export_models as em

    from dc_keras import cli

    src = os.path.join(shared_dir, "m.tflite")
    with open(src, "wb") as f:
        f.write(em.tflite("dense", None))
    os.chmod(src, 0o644)
    assert cli.main(["pack", src, os.path.join(shared_dir, "warm.tflite")]) == 0  # imports done as root
    import keras

    from dc_keras import export

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    out = os.path.join(shared_dir, "out.tflite")
    with open(out, "wb") as f:
        f.write(b"keep me")
    os.chmod(out, 0o444)
    root = os.geteuid() == 0
    if root:
        os.chown(out, 65534, 65534)
        os.seteuid(65534)
    try:
        with pytest.raises(PermissionError) as info:
            atomic_write(out, b"new")
        message = str(info.value)
        assert out in message and "read-only (mode 0444)" in message and f"chmod u+w {out}" in message, message
        with pytest.raises(PermissionError, match="read-only"):
            _fileio.check_writable(out)
        capsys.readouterr()
        assert cli.main(["pack", src, out]) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("dc-keras pack: error: ") and "read-only (mode 0444)" in err and out in err, err
        with pytest.raises(PermissionError, match="read-only"):  # before converting anything
            export.to_tflite(model, path=out)
    finally:
        if root:
            os.seteuid(0)
    with open(out, "rb") as f:
        assert f.read() == b"keep me"
    assert sorted(os.listdir(shared_dir)) == ["m.tflite", "out.tflite", "warm.tflite"]
    if root:  # root may write it: replaced, like cp / open(path, "wb") as root
        atomic_write(out, b"new")
        with open(out, "rb") as f:
            assert f.read() == b"new"
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o444
