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
file; an empty one named as make() or remove() names theirs for a moment excepted, below), a
symbolic link, another user's directory (skipped without a word: in a shared ``/tmp`` it
is not ours to judge, and the sticky bit forbids removing it anyway).
Where ``fcntl.flock`` does not exist (Windows) or the file system refuses locks, no marker is made
and nothing is swept. A directory left in another ``$TMPDIR`` is removed by the next export that
uses that one.

Where locks work, no moment exists where the directory an export uses is without its lock, nor
one where a killed export leaves a directory no sweep removes. :func:`make` makes the directory under a
staging name, ``dc_keras-export-XXXXXXXX.new``, makes and locks the marker in it, then renames it
to ``dc_keras-export-XXXXXXXX`` (a rename is atomic: the final name always holds a locked marker
while in use). :func:`remove` first renames the directory to ``dc_keras-export-XXXXXXXX.del``,
then removes its content, the marker, the directory. So an export killed at any point leaves
nothing, or one of: a staging or ``.del`` directory without a marker (then it is empty: the sweep
removes it with ``rmdir``, which removes only an empty directory), or a directory of any of the
three names whose marker nobody holds (removed as above). A sweep may also remove the staging
directory of a live export that has not locked its marker yet; :func:`make` then finds its marker
gone (it checks after locking) and starts again under a new name. The directory in use, under its
final name, is never removed by a sweep. (One exception, when ``X.del`` is in use by another
removal, i.e. two exports drew the same random name: ``X`` is then removed in place, as before.)

Kept dependency-free: the child's janitor imports it before anything heavy.
"""
from __future__ import annotations

import contextlib
import errno
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
STAGING = ".new"  # a directory being made: dc_keras-export-XXXXXXXX.new (mkdtemp's names hold no dot)
DYING = ".del"  # one being removed
_ATTEMPTS = 20  # make()'s new names when each one was taken or swept while being made
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
    Made as ``dc_keras-export-XXXXXXXX.new``, its marker made and locked in it, then renamed: the
    final name never exists without a locked marker (the module's docstring)."""
    if fcntl is None:
        return tempfile.mkdtemp(prefix=PREFIX, dir=parent), None
    for _ in range(_ATTEMPTS):
        made = _make_once(parent)
        if made is not None:
            return made
    where = parent if parent is not None else tempfile.gettempdir()
    raise FileExistsError(errno.EEXIST, f"could not make a {PREFIX}* directory in {_ATTEMPTS} attempts (each "
                                        "new name was taken, or its directory removed while being made, by other "
                                        "processes): end what is sweeping or filling this directory, or set TMPDIR "
                                        "to another one", where)


def _make_once(parent):
    """make()'s directory and lock, or None when another process took the final name or swept the
    staging directory meanwhile (try again under a new name)."""
    staging = tempfile.mkdtemp(prefix=PREFIX, suffix=STAGING, dir=parent)
    marker = os.path.join(staging, MARKER)
    fd, ours = None, False  # ours: our lock on the marker, which is still in the staging directory
    try:
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                         0o600)
        except FileNotFoundError:
            return None  # a sweep removed the empty staging directory
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None  # a sweep holds it: it is removing the staging directory
            os.close(fd)  # a file system without locks: no marker, never swept
            fd = None
            os.unlink(marker)
            os.rmdir(staging)
            return tempfile.mkdtemp(prefix=PREFIX, dir=parent), None
        if not _same_file(marker, fd):
            return None  # a sweep removed it between our open and our lock
        ours = True
        os.write(fd, _NOTE)
        try:
            os.rename(staging, staging[: -len(STAGING)])
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                return None  # that final name is taken (a file, a directory in use)
            raise
        done, fd = fd, None
        return staging[: -len(STAGING)], caller_only(done)
    except BaseException:
        if ours:  # (locked: no sweep touches it)
            with contextlib.suppress(OSError):
                _remove(staging)
        elif fd is None:
            with contextlib.suppress(OSError):
                os.rmdir(staging)  # (empty)
        raise
    finally:
        if fd is not None:
            if ours:
                with contextlib.suppress(OSError):
                    _remove(staging)
            os.close(fd)


def _same_file(path, fd):
    """``path`` names the file open as ``fd`` (not removed or replaced meanwhile)."""
    try:
        now, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


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
    """Removes ``path``: renamed to ``path.del`` first, then its content, the marker, the directory
    (killed in between, the next sweep finishes: the module's docstring). Errors are ignored; True
    when ``path`` and ``path.del`` are gone (called again, it goes on with ``path.del``)."""
    with contextlib.suppress(OSError):
        _remove(_to_dying(path) if os.path.lexists(path) else path + DYING)
    return not os.path.lexists(path) and not os.path.lexists(path + DYING)


def _to_dying(path):
    """``path`` renamed to ``path.del``, its new path; ``path`` itself when that cannot be done (a
    live ``path.del``: two exports that drew the same name, one of them being removed)."""
    dying = path + DYING
    for _ in range(2):
        try:
            os.rename(path, dying)
            return dying
        except OSError:
            if _sweep_one(dying, DYING) is None:  # (one left by a killed export: gone now)
                break
    return path


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
        rest = entry.name[len(PREFIX):]
        kind = rest[rest.index("."):] if "." in rest else ""
        if kind not in ("", STAGING, DYING):
            continue  # not a name make() or remove() gives
        outcome = _sweep_one(entry.path, kind)
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


def _sweep_one(path, kind):
    """The bytes removed with ``path`` (of ``kind``: "" a final name, STAGING, DYING) when it was
    unused and is gone, None when it is kept (no marker, in use, no locks), the OSError when
    removing it failed."""
    marker = os.path.join(path, MARKER)
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if not kind:
            return None  # no marker: not made by to_tflite
        try:  # made or removed by an export killed before its marker was made or after it was removed:
            os.rmdir(path)  # empty (anything else, or a marker made meanwhile: kept, rmdir fails)
        except OSError:
            return None
        return 0
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # in use (or no locks on this file system)
        if not _same_file(marker, fd):
            return None  # another sweep removed it meanwhile and a new export took the name
        size = _tree_size(path)
        try:  # a final name: out of the pattern first, so that no empty directory of that name is left
            _remove(_to_dying(path) if not kind else path)
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
