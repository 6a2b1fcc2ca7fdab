"""``to_tflite``'s temporary ``dc_keras-export-*`` directories: made with an owner lock, removed by
the next export once their owners are gone.

An export removes its directory on return and on any exception, and on the JAX/torch backends the
child's janitor removes it when the caller is killed (dc_keras/export/_backend.py). Nothing can
run when every process of an export is killed at once (SIGKILL of all of them, the OOM killer, a
container stopped), nor when a plain ``kill`` ends an in-process (TensorFlow backend) export: the
directory, often megabytes of SavedModel, stayed until the system cleaned ``$TMPDIR``, and CI
runners and notebooks that are killed this way piled them up.

So each directory holds a marker file, :data:`MARKER`, on which every process using the directory
holds a shared ``flock`` for as long as it does: the process that made it (the janitor, or the
exporting process itself) and, on the JAX/torch backends, the caller once told the path. The
kernel drops a process's locks when it dies, however it dies, and a PID reused later holds none.
:func:`sweep` (run once per ``to_tflite``, by the caller: not again by the TF-backend child of a
JAX/torch export) removes the ``dc_keras-export-*`` directories of ``$TMPDIR`` whose marker it can
lock exclusively, i.e. that no live process uses, and reports them on the ``dc_keras`` logger
(level WARNING: printed on stderr when logging is not configured). It leaves alone anything it did
not make: a directory without the marker (another program's, or one made by a dc_keras without this
file), a symbolic link, another user's directory (skipped without a word: in a shared ``/tmp`` it
is not ours to judge, and the sticky bit forbids removing it anyway).
Where ``fcntl.flock`` does not exist (Windows) or the file system refuses locks, no marker is made
and nothing is swept. A directory left in another ``$TMPDIR`` is removed by the next export that
uses that one.

Kept dependency-free: the child's janitor imports it before anything heavy.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile

try:
    import fcntl
except ImportError:  # Windows: no flock; directories are then made without a marker and never swept
    fcntl = None

PREFIX = "dc_keras-export-"
MARKER = "dc_keras-export.lock"
_NOTE = (b"dc_keras to_tflite's temporary directory. A process using it holds a lock on this file; once none\n"
         b"does (the export was killed), the next dc_keras export in this temporary directory removes it.\n")

logger = logging.getLogger("dc_keras")

# Descriptors only this process may hold (the janitor's pipe, the child's arguments, the locks): a
# fork without exec (os.fork, multiprocessing's "fork") would copy them into a child that outlives
# the export, so they are closed in every forked child. O_CLOEXEC (Python's default) covers exec.
_CALLER_ONLY = set()
_reported_failures = set()


def _close_in_forked_child():
    for fd in list(_CALLER_ONLY):
        with contextlib.suppress(OSError):
            os.close(fd)
    _CALLER_ONLY.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_forked_child)


def caller_only(fd):
    """``fd``, closed in any child this process forks from now on (until :func:`close`)."""
    if fd is not None:
        _CALLER_ONLY.add(fd)
    return fd


def close(fd):
    """Closes ``fd`` (None: nothing) and forgets it (first: its number may be reused at once)."""
    if fd is not None:
        _CALLER_ONLY.discard(fd)
        os.close(fd)


def make(parent=None):
    """A new ``dc_keras-export-*`` directory in ``parent`` (default: ``tempfile.gettempdir()``) and
    the descriptor holding its marker's shared lock (None where locks do not work: no marker then).
    The marker appears under its name already locked, so no sweep ever sees it unlocked in use."""
    path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    if fcntl is None:
        return path, None
    new = os.path.join(path, MARKER + ".new")
    try:
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # a file system without locks: no marker, never swept
            os.close(fd)
            os.unlink(new)
            return path, None
        try:
            os.write(fd, _NOTE)
            os.rename(new, os.path.join(path, MARKER))
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path, caller_only(fd)


def hold(path):
    """The descriptor of a shared lock on ``path``'s marker, held by this process too (None: no marker,
    or no locks here)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(os.path.join(path, MARKER), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return caller_only(fd)


def remove(path):
    """Removes ``path``: its content, then the marker, then the directory (killed in between, the
    marker is still there, unlocked, and the next sweep finishes). Errors are ignored; True when
    ``path`` is gone."""
    with contextlib.suppress(OSError):
        _remove(path)
    return not os.path.lexists(path)


def _remove(path):
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, MARKER))
    os.rmdir(path)


@contextlib.contextmanager
def directory():
    """``make()``'s directory for the ``with`` block; removed (then unlocked) at its end."""
    path, lock = make()
    try:
        yield path
    finally:
        remove(path)
        close(lock)


def sweep(parent=None):
    """Removes the ``dc_keras-export-*`` directories in ``parent`` (default: ``tempfile.gettempdir()``)
    that this user's exports made and no live process uses; logs them. Their paths."""
    if fcntl is None:
        return []
    if parent is None:
        try:
            parent = tempfile.gettempdir()
        except OSError:
            return []
    removed, size, failed = [], 0, []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue  # a link, a file, another user's: not ours to judge
        outcome = _sweep_one(entry.path)
        if isinstance(outcome, OSError):
            failed.append((entry.path, outcome))
        elif outcome is not None:
            removed.append(entry.path)
            size += outcome
    if removed:
        logger.warning("dc_keras: to_tflite removed %d temporary director%s (%s) left in %s by exports that were "
                       "killed: %s", len(removed), "y" if len(removed) == 1 else "ies", _size_text(size), parent,
                       ", ".join(os.path.basename(p) for p in sorted(removed)))
    for path, exc in failed:
        if path not in _reported_failures:  # once per process, not at every export
            _reported_failures.add(path)
            logger.warning("dc_keras: to_tflite cannot remove %s, left by an export that was killed (%s); remove "
                           "it by hand", path, exc.strerror or exc)
    return removed


def _sweep_one(path):
    """The bytes removed with ``path`` when it was unused and is gone, None when it is kept (no marker,
    in use, no locks), the OSError when removing it failed."""
    marker = os.path.join(path, MARKER)
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # no marker: not made by to_tflite
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # in use (or no locks on this file system)
        try:  # still that marker? (another sweep removed it meanwhile and a new export took the name)
            now, held = os.stat(marker, follow_symlinks=False), os.fstat(fd)
        except OSError:
            return None
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return None
        size = _tree_size(path)
        try:
            _remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return exc
        return size
    finally:
        os.close(fd)


def _tree_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _size_text(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
