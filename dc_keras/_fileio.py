"""The one way dc_keras writes a file: atomically, with the permissions the user's umask asks for
(and :func:`content_bytes`, the one way a model given as bytes is taken in).

Every output (``to_tflite(path=)``, ``dc-keras pack``/``unpack``/``demo``, plots) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target directory, are flushed to
disk, and the file is renamed over ``path``. A reader never sees a half-written file, a failure
leaves neither a partial output nor the temporary file behind, and inputs are never opened for
writing. An existing output the process may not write (a read-only file) is refused, not replaced
by the rename (root may write any file: replaced, as ``cp`` does), and so is another user's file in
a sticky directory such as /tmp (the rename over it would fail, after the work). A symbolic link is written
through (the link stays); one that leads to no file (dangling, or a loop) is refused, as GNU ``cp``
refuses it, rather than creating a file where it points or replacing the link by a file. The C
tools (tflite_kernels/tools/tool_io.h) follow the same rules.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat


def show_path(path) -> str:
    """``path`` as every message shows it: unchanged when each of its characters is printable, else
    as Python's ``repr`` writes it, quoted, with ``\\n``, ``\\x1b``, ``\\x00``... (a byte the file
    system's encoding cannot decode as ``\\udcff``), as GNU coreutils quote such names: a file named
    with a newline or an escape sequence can neither split a message's line nor drive the terminal.

    Example:
      >>> show_path("model.tflite"), show_path("a\\nb.tflite")
      ('model.tflite', "'a\\\\nb.tflite'")
    """
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return text if text.isprintable() else repr(text)


def shell_path(path) -> str:
    """``path`` as a command a message suggests (`dc-keras inspect PATH`, ``rm PATH``) must show it,
    to be pasted into a POSIX shell: quoted when it holds a space, a quote or another character
    the shell reads (``shlex.quote``), after ``./`` when it starts with ``-`` (it would be read as an
    option); a name :func:`show_path` must escape (a newline, an escape sequence) is shown as it
    shows it.

    Example:
      >>> shell_path("model.tflite"), shell_path("my model.tflite"), shell_path("-m.tflite")
      ('model.tflite', "'my model.tflite'", './-m.tflite')
    """
    import shlex

    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    if not text.isprintable():
        return show_path(text)
    return shlex.quote("./" + text if text.startswith("-") else text)


def check_path(path, what: str = "the path") -> str:
    """``path`` as a string (``str``, ``bytes`` or ``os.PathLike``), or a ``ValueError`` naming it
    (:func:`show_path`) and the fix when it holds a null byte, which no file name can (the OS
    functions' own error is a bare "embedded null byte", naming neither)."""
    path = os.fsdecode(path)
    if "\0" in path:
        raise ValueError(f"{show_path(path)}: {what} holds a null byte (\\x00), which no file name can hold: "
                         "check how the path was made (a C string or a fixed-width field read with its padding?) "
                         "and give it without the null byte")
    return path


def _create_exclusive(directory: str, name: str) -> tuple[int, str]:
    """Creates a new, empty temporary file next to ``name``: (fd, path).

    Unlike ``tempfile.mkstemp`` (always mode 0600), the file is created with mode 0666 so the
    kernel applies the process umask, exactly as for ``open(path, "wb")``. Its name keeps at most
    200 bytes of ``name``, so any output name the file system allows (255 bytes) works.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while len(os.fsencode(name)) > 200:  # the temporary name stays within NAME_MAX (255 bytes)
        name = name[:-1]
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {show_path(directory)}")


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable (POSIX); silently a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _name_max(directory: str) -> int:
    """The longest file name (bytes) the file system of ``directory`` allows (255 where unknown)."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no such directory
        return 255


def _nearest_existing(path: str) -> str:
    """``path`` (absolute) or its nearest ancestor that exists: where creating the missing folders
    would start."""
    d = os.path.abspath(path)
    while not os.path.exists(d) and os.path.dirname(d) != d:
        d = os.path.dirname(d)
    return d


def _file_in_the_way(directory: str) -> str | None:
    """The nearest existing ancestor of ``directory`` when it is not a directory (a regular file),
    else None."""
    d = _nearest_existing(directory)
    return d if d != os.path.abspath(directory) and not os.path.isdir(d) else None


def _write_fix(err: int, path: str, example: str = "model.tflite", directory: str | None = None) -> str:
    """What to do about ``errno`` ``err`` when writing ``path`` ("" when there is no general advice);
    ``directory``: the one the file is written in (of a symbolic link's target; default ``path``'s)."""
    directory = directory or os.path.dirname(os.path.abspath(path))
    if err in (errno.ENOENT, errno.ENOTDIR):
        blocker = _file_in_the_way(directory)
        if blocker is not None:  # a/file.txt/sub/x: no directory can be made under a file
            return (f"{show_path(blocker)} is a file, not a directory, so {show_path(directory)} cannot exist: choose an output path "
                    "in an existing directory")
    if err == errno.ENOENT and os.path.isdir(directory):  # /proc, /sys: the directory is there, no file can be
        return (f"the directory {show_path(directory)} exists but no file can be created in it (a virtual file system "
                "such as /proc or /sys?): choose an output path in an ordinary directory")
    if err == errno.ENOENT:
        return f"the directory {show_path(directory)} does not exist: create it first or choose another output path"
    if err == errno.ENOTDIR:
        return f"{show_path(directory)} is not a directory: choose an output path in an existing directory"
    if err == errno.EISDIR:
        return f"give a file name for the output, e.g. {show_path(os.path.join(path, example))}"
    if err in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{show_path(directory)} is not writable: choose an output path in a writable directory"
    if err in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free some space or choose an output path on another disk (nothing was written)"
    if err == errno.ENAMETOOLONG:
        return f"the file system allows names of at most {_name_max(directory)} bytes: choose a shorter output name"
    if err == errno.EIO:
        return ("the disk reported an input/output error: check the disk or file system, or choose an output "
                "path on another disk (nothing was written)")
    if err == errno.EBUSY:
        return (f"{show_path(path)} is in use by the system (a mount point: another file is mounted on it), so it cannot be "
                "replaced: unmount it or choose another output path (nothing was written)")
    if err == errno.EFBIG:
        return ("the output is larger than this process may write (ulimit -f) or the file system allows: "
                "raise the limit or choose an output path on another file system (nothing was written)")
    return ""


def _naming(exc: OSError, path: str, directory: str | None = None) -> OSError:
    """``exc`` re-raised as the error ``open(path, "wb")`` would give: the output path, not the
    temporary file, in the message, and what to do about it (``directory``: as for _write_fix)."""
    if not exc.errno:
        return exc
    fix = _write_fix(exc.errno, path, directory=directory)
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"{reason}; {fix}" if fix else reason, path)


def _bad_link(path: str):
    """The ``OSError`` for an output ``path`` that is a symbolic link leading to no file, ``None``
    otherwise. A dangling link (its target missing) is not written through, as GNU ``cp`` refuses
    ("not writing through dangling symlink"): the link usually outlived what it named, and writing
    through it would create a file wherever it points (in another directory, possibly one another
    user controls); replacing the link by a file would silently undo what the user set up. A loop
    names no file at all. Either way: one error saying what the link is and what to do."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
        return None
    except OSError as exc:
        err = exc.errno
    try:
        to = os.readlink(path)
    except OSError:
        to = "?"
    if err == errno.ELOOP:
        return OSError(errno.ELOOP, f"a symbolic link loop ({os.strerror(errno.ELOOP)}): remove or fix the link, "
                       "or choose another output path", path)
    return OSError(errno.ENOENT, f"a symbolic link to {show_path(to)}, which does not exist: outputs are not written "
                   f"through a dangling link (as cp does not); create {show_path(to)} first, remove the link, or choose "
                   "another output path", path)


def _pipe_device():
    """``st_dev`` of an anonymous pipe (``<(cmd)``, ``/dev/fd/N``: opening one never waits), told
    apart from a named FIFO, whose ``open`` waits for a writer."""
    r, w = os.pipe()
    try:
        return os.fstat(r).st_dev
    finally:
        os.close(r)
        os.close(w)


def _read_fifo(fd, path):
    """The bytes of the FIFO open (non-blocking) on ``fd``. A named FIFO that no process has open
    for writing is refused: reading it would wait for a writer forever (``open`` of a FIFO with no
    writer blocks; a writer already waiting in its ``open``, e.g. ``cat m.tflite > FIFO &``, counts
    as one). An anonymous pipe (process substitution) is read to its end, as any input."""
    try:
        first = os.read(fd, 1 << 16)
    except BlockingIOError:  # a writer is there, nothing written yet
        first = None
    if first == b"" and os.fstat(fd).st_dev != _pipe_device():
        raise OSError(errno.EINVAL, "a FIFO (named pipe) that no process is writing to, so reading it would wait "
                      "forever: start the process writing the model into it first (e.g. cat model.tflite > "
                      f"{show_path(path)} &), or give the path of a .tflite file", path)
    os.set_blocking(fd, True)
    with open(fd, "rb", closefd=False) as f:
        return (first or b"") + f.read()


# A regular file larger than this is read only when its first bytes are a .tflite's (a 30 GB file
# given by mistake was read whole before "not a .tflite model", or ended in "out of memory").
_HEAD_FIRST_BYTES = 64 << 20


def _check_head(f, path):
    """``ValueError`` (naming ``path``) when the file open as ``f`` does not start as a ``.tflite``
    (``_flatbuffer``'s wording, from its first 64 KiB); ``f`` is left at its start."""
    from dc_keras import _flatbuffer as fb  # only for a large file: it imports the schema

    head = f.read(64 << 10)
    f.seek(0)
    if head[4:8] != fb.FILE_IDENTIFIER:
        try:
            fb.read_model(head)
        except ValueError as exc:
            raise ValueError(f"{show_path(path)}: {' '.join(str(exc).split())}") from None


def directory_fix(path) -> str:
    """What to do with a directory given as the input ``.tflite``: a TensorFlow SavedModel (what
    ``model.export(path)`` and ``tf.saved_model.save`` write) is converted first."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return ("it is a TensorFlow SavedModel directory, not a .tflite: convert it first, e.g. "
                f"tf.lite.TFLiteConverter.from_saved_model({os.fsdecode(path)!r}).convert(), and give that file")
    return "give the path of a .tflite file"


def read_input(path) -> bytes:
    """The bytes of an input file (``dc-keras pack / inspect / unpack``'s IN, ``runtime.compiled_model``'s
    pipe); a missing or unreadable path, a directory, a device, a socket or
    a named FIFO nothing writes to raises ``OSError`` saying what to do (never waits for an input
    that cannot come: the FIFO is opened non-blocking); a path holding a null byte ``ValueError``
    (``_fileio.check_path``)."""
    path = check_path(path, "the input path")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as exc:
        fix = "check the path of the input .tflite"
        if os.path.islink(path):  # the link is there, what it names is not
            fix = f"it is a symbolic link to {show_path(os.readlink(path))}, which does not exist: fix the link or {fix}"
        raise type(exc)(exc.errno, f"{exc.strerror}; {fix}", path) from None
    except IsADirectoryError as exc:  # (Windows; POSIX opens a directory: fstat below)
        raise type(exc)(exc.errno, f"{exc.strerror}; {directory_fix(path)}", path) from None
    except PermissionError as exc:
        raise type(exc)(exc.errno, f"{exc.strerror}; the input must be readable by you", path) from None
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISSOCK(os.stat(path).st_mode):  # a Unix socket opens as no file
            raise OSError(errno.EINVAL, "a socket, not a file: give the path of a .tflite file", path) from None
        too_long = ("the path is longer than the system allows (PATH_MAX), though no name in it is: use a shorter "
                    "path, e.g. a relative one from a directory closer to the file")
        if exc.errno == errno.ENAMETOOLONG and all(len(os.fsencode(n)) <= 255 for n in path.split(os.sep)):
            raise type(exc)(exc.errno, f"{exc.strerror}; {too_long}", path) from None
        fix = {errno.ENOTDIR: "a part of the path before the last / is a file, not a directory (a trailing / after "
                              "the file's name?): check the path of the input .tflite",
               errno.ELOOP: "a symbolic link in the path leads back to itself (a loop): fix the link or give the "
                            "path of the .tflite file",
               errno.ENAMETOOLONG: "a name in the path is longer than the file system allows: check the path of "
                                   "the input .tflite"}.get(exc.errno)
        if fix and exc.strerror:
            raise type(exc)(exc.errno, f"{exc.strerror}; {fix}", path) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, f"{os.strerror(errno.EISDIR)}; {directory_fix(path)}", path)
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            # /dev/zero never ends, a terminal waits for typing, a disk is no model
            raise OSError(errno.EINVAL, "a device, not a file: give the path of a .tflite file", path)
        if stat.S_ISFIFO(mode):
            return _read_fifo(fd, path)
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            if os.fstat(fd).st_size > _HEAD_FIRST_BYTES:
                _check_head(f, path)
            return f.read()
    finally:
        os.close(fd)


def special_file_kind(mode: int) -> str:
    """What an ``st_mode`` that is neither a regular file nor a directory names, in words."""
    return ("character device" if stat.S_ISCHR(mode) else "block device" if stat.S_ISBLK(mode)
            else "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "special file")


def _bad_target(path: str, example: str = "model.tflite"):
    """The ``OSError`` for an output ``path`` that cannot name a file whatever the directory allows,
    ``None`` otherwise: an empty path, a symbolic link leading to no file (:func:`_bad_link`), a path ending in a
    separator that is not an existing directory (``out/`` would otherwise be reported as "the
    parent directory is not a directory"), or an existing ``path`` (or symlink target) that is
    neither a regular file nor a directory (``/dev/null``, a FIFO, a socket: renaming the output
    over it would replace the node itself)."""
    if not path:  # "" would name the current directory's parent as where the file goes
        return OSError(errno.ENOENT, f"{os.strerror(errno.ENOENT)}; the output path is empty (an unset variable?): "
                       f"give a file name, e.g. {example}", path)
    bad = _bad_link(path)
    if bad:
        return bad
    if path.endswith((os.sep, os.altsep or os.sep)) and not os.path.isdir(path):
        name = path.rstrip(os.sep + (os.altsep or ""))
        if os.path.exists(name):
            return OSError(errno.ENOTDIR, f"{os.strerror(errno.ENOTDIR)}; {show_path(name)} is a file: give the output path "
                           "without the trailing separator", path)
        return OSError(errno.ENOENT, f"{os.strerror(errno.ENOENT)}; the directory {show_path(name)} does not exist: create "
                       f"it first and give a file name in it, e.g. {show_path(os.path.join(path, example))}", path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = special_file_kind(mode)
    return OSError(errno.EINVAL, f"a {kind}, not a regular file: writing the output there would replace "
                   f"the {kind} with a file; give the path of a regular file", path)


def _writable(path: str, mode: int = os.W_OK) -> bool:
    """``os.access`` for this process's effective user (as the kernel checks an ``open``)."""
    if os.access in getattr(os, "supports_effective_ids", ()):
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def _owner(uid: int) -> tuple[str, str]:
    """(the user name of ``uid``, or "uid N" where it has none; "NAME (uid N)") for messages."""
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # no pwd (Windows), or a uid with no passwd entry
        return f"uid {uid}", f"uid {uid}"
    return name, f"{name} (uid {uid})"


def _foreign_file(path: str, target: str, directory: str):
    """The ``PermissionError`` for an existing output file the process may not replace, in a
    directory it may write; ``None`` otherwise:

    - a file it may not write (mode 0444, or another user's 0644 file): the rename could replace
      it, but a read-only file says "do not overwrite": refused as ``open(path, "wb")``, ``cp``,
      ``gcc -o`` and ``zip`` refuse it (not as root: root may write any file, and those tools then
      replace it too). The fix named depends on who owns it: only the owner may chmod it.
    - another user's file in a sticky directory (``drwxrwxrwt``, like /tmp): only the file's (or
      the directory's) owner may rename over it or remove it, so the atomic rename would fail
      with EPERM after all the work, even when the file itself is writable (mode 0666)."""
    if not os.path.isfile(target) or not _writable(directory, os.W_OK | os.X_OK):
        return None
    st, dst = os.stat(target), os.stat(directory)
    mode = stat.S_IMODE(st.st_mode)
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    if euid not in (None, 0) and st.st_uid != euid and dst.st_mode & stat.S_ISVTX and dst.st_uid != euid:
        name, owner = _owner(st.st_uid)
        return PermissionError(errno.EPERM, f"{os.strerror(errno.EPERM)}; the existing file belongs to {owner}, and "
                               f"{show_path(directory)} is a sticky directory (mode {stat.S_IMODE(dst.st_mode):04o}, like /tmp) "
                               "where only a file's owner may replace or remove it (outputs are written to a "
                               "temporary file renamed over the old one): choose another output path, or ask "
                               f"{name} to remove it", path)
    if _writable(target):
        return None
    if euid is None or st.st_uid == euid:
        fix = f"make it writable (chmod u+w {shell_path(path)})" if not mode & stat.S_IWUSR else "make it writable for you"
        return PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)}; the existing file is read-only (mode "
                               f"{mode:04o}) and was not replaced: {fix} or choose another output path", path)
    name, owner = _owner(st.st_uid)
    return PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)}; the existing file belongs to {owner} and is "
                           f"not writable for you (mode {mode:04o}), so it was not replaced: choose another output "
                           f"path, or, if it may go, remove it first (rm {shell_path(path)}: {show_path(directory)} is writable for you) or "
                           f"ask {name} to make it writable for you", path)


def _read_only_mount(directory: str) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & getattr(os, "ST_RDONLY", 0))
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def check_writable(path, example: str = "model.tflite") -> str:
    """Raises the ``OSError`` :func:`atomic_write` would raise for ``path`` (missing or read-only
    directory, a directory given as the file, a device such as ``/dev/null``), before any work:
    commands call it first so a bad output path fails at once, not after minutes of packing. ``example`` is the file name the
    message suggests when ``path`` is a directory. Returns ``path`` as a string.

    Example:
      >>> check_writable("out/model.tflite")
    """
    path = check_path(path, "the output path")  # str, bytes (a bytes path as the OS takes it) or PathLike
    bad = _bad_target(path, example)
    if bad:
        raise bad
    target = os.path.realpath(path) if os.path.islink(path) else path  # the file written (through a link)
    directory = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(path):
        err = errno.EISDIR
    elif not os.path.exists(directory):
        err = errno.ENOENT if not os.path.lexists(directory) or os.path.islink(directory) else errno.ENOTDIR
    elif not os.path.isdir(directory):
        err = errno.ENOTDIR
    elif not _writable(directory, os.W_OK | os.X_OK):  # as the kernel checks an open: effective ids
        err = errno.EROFS if _read_only_mount(directory) else errno.EACCES
    elif len(os.fsencode(os.path.basename(path))) > _name_max(directory):
        err = errno.ENAMETOOLONG
    else:
        foreign = _foreign_file(path, target, directory)
        if foreign:
            raise foreign
        return path
    fix = _write_fix(err, path, example, directory)
    raise OSError(err, f"{os.strerror(err)}; {fix}", path)


def _keep_owner(fd: int, old: os.stat_result) -> None:
    """Gives the new file on ``fd`` the group of the file it replaces (``old``), and as root its
    owner too, as writing into the old file would have kept them: a file shared through its group
    (mode 0660, group ``ml``) would otherwise become the writer's primary group's, and a file root
    rewrites for a user root's. A group the process may not give (it is not a member) is left as a
    new file gets it; best effort, as editors do (no error: the bytes are what was asked)."""
    if not hasattr(os, "fchown"):
        return
    st = os.fstat(fd)
    uid = old.st_uid if hasattr(os, "geteuid") and os.geteuid() == 0 and old.st_uid != st.st_uid else -1
    gid = old.st_gid if old.st_gid != st.st_gid else -1
    if uid == -1 and gid == -1:
        return
    with contextlib.suppress(OSError):
        os.fchown(fd, uid, gid)


def atomic_write(path, data: bytes) -> str:
    """Writes ``data`` to ``path`` atomically; returns ``path`` as a string.

    A new file's permissions follow the umask (0644 under umask 022, 0600 under 077); a file
    replaced keeps its permissions and its group (when the process may give it: a member of it, or
    root; root also keeps its owner), and a symbolic link is written through (a file with other hard
    links is replaced under this name only: the other names keep the old bytes) (the link stays, the
    file it points to gets the new bytes), as an editor saving the file would; a link that leads
    to no file (dangling or a loop) is refused (``OSError`` saying so), as GNU ``cp`` refuses it. An existing file
    the process may not write (read-only, or another user's) is not replaced: ``PermissionError``
    naming it and the fix, as ``open(path, "wb")``, ``cp``, ``gcc -o`` and ``zip`` refuse it (root
    may write any file, so as root it is replaced, as by those tools). Errors are raised as
    ``OSError`` naming ``path`` (not the temporary file), and nothing is left behind.

    Example:
      >>> atomic_write("model.tflite", tflite_bytes)
    """
    path = check_path(path, "the output path")
    bad = _bad_target(path)
    if bad:
        raise bad
    target = os.path.realpath(path) if os.path.islink(path) else path  # (_bad_target refused a dangling one)
    directory = os.path.dirname(os.path.abspath(target))
    try:
        old = os.stat(target)
        keep_mode = stat.S_IMODE(old.st_mode)
    except OSError:
        old = keep_mode = None  # a new file: the umask decides
    foreign = _foreign_file(path, target, directory)
    if foreign:
        raise foreign
    try:
        fd, tmp = _create_exclusive(directory, os.path.basename(target))
    except OSError as exc:
        raise _naming(exc, path, directory) from None
    try:
        if old is not None:
            _keep_owner(fd, old)
        if keep_mode is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, keep_mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path, directory) from None
        raise
    _fsync_directory(directory)
    return path


def figure_bytes(fig, fmt: str) -> bytes:
    """A matplotlib figure rendered to bytes (``fmt``: "png", "pdf", "svg", ...), for atomic_write."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


def write_figure(fig, path, fmt: str) -> None:
    """Lays out a ``matplotlib.figure.Figure`` (made without pyplot, so nothing switches the
    caller's matplotlib backend or keeps the figure open) and writes it to ``path`` atomically as
    ``fmt``."""
    fig.tight_layout()
    atomic_write(path, figure_bytes(fig, fmt))


def content_bytes(data, what: str, path_hint: str = "") -> bytes:
    """``data`` as ``bytes`` when it is bytes-like (bytes, bytearray, memoryview, mmap, a numpy array:
    anything with the buffer protocol; never modified), else a ``TypeError`` naming ``what`` was
    expected and what came; for a path: read the file first (``path_hint``: another way, if any).

    Example:
      >>> content_bytes(bytearray(b"TFL3"), ".tflite content")
      b'TFL3'
    """
    if isinstance(data, bytes):
        return data
    if isinstance(data, (str, os.PathLike)):
        raise TypeError(f"expected {what} as bytes, got {type(data).__name__}: read the file first, e.g. "
                        f"open(path, 'rb').read(){path_hint}")
    try:
        return memoryview(data).tobytes()
    except TypeError:
        if callable(getattr(data, "read", None)):  # open(path, "rb") or a BytesIO: its content was meant
            raise TypeError(f"expected {what} as bytes, got {type(data).__name__}, an open file: pass its content, "
                            f"e.g. f.read() of a file opened with 'rb'{path_hint}") from None
        raise TypeError(f"expected {what} as bytes, got {type(data).__name__}") from None
