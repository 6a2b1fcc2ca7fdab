"""dc_keras/_exportdir.py: an export killed at any point of making, removing or sweeping its temporary
``dc_keras-export-*`` directory leaves nothing the next export's sweep does not remove, and a sweep
run while an export is stopped at any of those points never removes a directory in use.

Before, a SIGKILL between ``mkdtemp`` and the lock file (or between removing the lock file and the
directory) left a directory without a lock file, which no sweep removes (it may be another
process's, being made), for good.

Each test runs the operation in a child process under a profiler that counts every call made from
_exportdir's code (os.open, fcntl.flock, os.rename, os.unlink, os.rmdir, tempfile.mkdtemp, ...) and,
right after the k-th, sends the child SIGKILL (or SIGSTOP), for every k from the first call to the
last.
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from dc_keras import _exportdir

pytestmark = pytest.mark.skipif(_exportdir.fcntl is None or not hasattr(signal, "SIGKILL"),
                                reason="flock and signals (POSIX)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = textwrap.dedent("""
    import fcntl, os, signal, sys
    sys.path.insert(0, {root!r})
    from dc_keras import _exportdir as ed
    import tempfile
    op, action, k, parent = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    steps, made = 0, []
    mkdtemp = tempfile.mkdtemp
    tempfile.mkdtemp = lambda *args, **kwargs: made.append(1) or mkdtemp(*args, **kwargs)  # make()'s attempts

    def at_step(frame, event, arg):
        global steps
        caller = frame if event in ("c_return", "c_exception") else frame.f_back if event == "return" else None
        if caller is None or caller.f_code.co_filename != ed.__file__:
            return
        steps += 1
        if steps == k:
            sys.setprofile(None)
            what = arg.__name__ if event.startswith("c_") else frame.f_code.co_name
            print(f"step {{k}}: after {{what}} in {{caller.f_code.co_name}}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)

    def fill(path):  # what an export writes there: a SavedModel's files and directories
        os.makedirs(os.path.join(path, "saved", "variables"))
        for name in ("saved/saved_model.pb", "saved/variables/variables.index", "model.tflite"):
            with open(os.path.join(path, name), "wb") as f:
                f.write(b"x" * 1000)

    if op == "make":
        sys.setprofile(at_step)
        path, fd = ed.make(parent)
        sys.setprofile(None)
        # the directory in use: its final name, its marker the file this process holds locked
        name = os.path.basename(path)
        assert name.startswith(ed.PREFIX) and "." not in name[len(ed.PREFIX):], name
        held, now = os.fstat(fd), os.stat(os.path.join(path, ed.MARKER))
        assert (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
        other = os.open(os.path.join(path, ed.MARKER), os.O_RDONLY)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the marker is not locked")
        except BlockingIOError:
            pass
        fill(path)
        print("made", len(made), path, flush=True)
        sys.stdin.read()  # in use until the test ends this process
    elif op == "remove":
        path, fd = ed.make(parent)
        fill(path)
        sys.setprofile(at_step)
        gone = ed.remove(path)
        sys.setprofile(None)
        ed.close(fd)
        print("removed" if gone else "kept", path, flush=True)
    elif op == "sweep":
        sys.setprofile(at_step)
        removed = ed.sweep(parent)
        sys.setprofile(None)
        print("swept", len(removed), flush=True)
    print("steps", steps, flush=True)
""").format(root=ROOT)


def _start(op, action, k, parent):
    return subprocess.Popen([sys.executable, "-c", _CHILD, op, action, str(k), str(parent)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _steps(op, parent):
    """How many calls the child makes from _exportdir's code in ``op``, run to its end (no signal)."""
    p = _start(op, "none", 0, parent)
    out, err = p.communicate("", timeout=120)
    assert p.returncode == 0, (out, err)
    n = int(out.split("steps ")[-1])
    assert n >= 8, out
    return n


def _ours(parent):
    return sorted(n for n in os.listdir(parent) if n.startswith(_exportdir.PREFIX))


def _dead_directory(parent):
    """A directory a killed export left: made, filled, its lock released without a removal."""
    path, fd = _exportdir.make(str(parent))
    os.makedirs(os.path.join(path, "saved"))
    with open(os.path.join(path, "saved", "saved_model.pb"), "wb") as f:
        f.write(b"x" * 1000)
    _exportdir.close(fd)
    return path


def _sweep_after_kill(op, k, parent):
    """The child killed right after its k-th call of ``op``: what a sweep then leaves."""
    p = _start(op, "kill", k, parent)
    out, err = p.communicate("", timeout=120)
    assert p.returncode == -signal.SIGKILL, (k, p.returncode, out, err)
    before = _ours(parent)
    _exportdir.sweep(str(parent))
    return out.strip(), before, _ours(parent)


def _stopped_at(op, k, parent):
    """The child stopped right after its k-th call of ``op`` (its step line read)."""
    p = _start(op, "stop", k, parent)
    line = p.stdout.readline()
    assert line.startswith(f"step {k}:"), (k, line, p.communicate(timeout=60))
    _, status = os.waitpid(p.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), (k, status)
    return p, line.strip()


def _sweep_while_stopped(op, k, parent):
    """A sweep (another export's) while the child is stopped right after its k-th call of ``op``;
    then the child goes on. make() must still return a directory under its final name whose marker
    it holds locked (the child checks), which another sweep keeps while the child lives and removes
    once it is killed; remove() and a sweep must end with nothing left. make()'s attempts (1: the
    sweep took nothing of it)."""
    p, step = _stopped_at(op, k, parent)
    attempts = None
    try:
        _exportdir.sweep(str(parent))
        os.kill(p.pid, signal.SIGCONT)
        line = p.stdout.readline()
        if op == "make":
            assert line.startswith("made "), (step, line, p.communicate("", timeout=60))
            _, attempts, path = line.split(" ", 2)
            path = path.strip()
            _exportdir.sweep(str(parent))
            assert _ours(parent) == [os.path.basename(path)], (step, _ours(parent))
            assert os.path.isfile(os.path.join(path, "model.tflite")), step
            p.kill()
        out, err = p.communicate("", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=60)
    if op == "make":
        assert p.returncode == -signal.SIGKILL, (step, p.returncode, err)
    else:
        assert p.returncode == 0, (step, line, out, err)
        assert line.startswith("removed " if op == "remove" else "swept "), (step, line, err)
    _exportdir.sweep(str(parent))
    assert _ours(parent) == [], (step, line, _ours(parent))
    return attempts


@pytest.mark.parametrize("op", ["make", "remove", "sweep"])
def test_every_point_of_an_export_directory_op_killed_or_stopped(tmp_path, op):
    """At every step of make(), remove() and a sweep's removal:

    - the child killed there: the next sweep leaves nothing. The old code, killed after make()'s
      mkdtemp (until its marker was renamed in), left a dc_keras-export-* directory without a marker,
      and remove() or a sweep killed between the marker's unlink and the rmdir an empty one: no
      sweep removes those (they may be another process's, being made), so they stayed for good.
    - the child stopped there while another sweep runs (_sweep_while_stopped): nothing in use is
      removed. A sweep may take make()'s staging directory before its marker is locked: make() sees
      it and starts again under a new name (at least one step of make() is such a point)."""
    (tmp_path / "probe").mkdir()
    if op == "sweep":
        _dead_directory(tmp_path / "probe")
    n = _steps(op, tmp_path / "probe")
    left, retried = [], []
    for k in range(1, n + 1):
        for action in ("kill", "stop"):
            parent = tmp_path / f"{action}{k}"
            parent.mkdir()
            if op == "sweep":
                _dead_directory(parent)
            if action == "kill":
                step, before, after = _sweep_after_kill(op, k, parent)
                if after:
                    left.append(f"{step}: left {after} (before the sweep: {before})")
            elif _sweep_while_stopped(op, k, parent) not in (None, "1"):
                retried.append(k)
    assert not left, f"{len(left)} of {n} kill points left a directory no sweep removes:\n" + "\n".join(left)
    assert op != "make" or retried, "no sweep took a staging directory: make()'s new attempt is untested"


def test_make_refuses_after_its_attempts_naming_the_directory(tmp_path, monkeypatch):
    """Each staging directory swept before its marker is made (a stand-in for other processes
    sweeping the same $TMPDIR in a loop): make() gives up after its attempts with one error naming
    the directory and what to do, and leaves nothing behind."""
    import tempfile

    made = []
    real = tempfile.mkdtemp

    def mkdtemp_swept(*args, **kwargs):
        path = real(*args, **kwargs)
        made.append(path)
        os.rmdir(path)  # as a sweep's rmdir of an empty staging directory
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_swept)
    with pytest.raises(FileExistsError) as e:
        _exportdir.make(str(tmp_path))
    assert str(tmp_path) in str(e.value) and "set TMPDIR to another one" in str(e.value), e.value
    assert len(made) == _exportdir._ATTEMPTS and all(p.endswith(_exportdir.STAGING) for p in made), made
    assert os.listdir(tmp_path) == []
