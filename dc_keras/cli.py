"""dc-keras: Deep Compression for Keras 3 and TensorFlow Lite.

Commands:
  dc-keras demo [--full] [--epochs=N] [--out_dir=DIR]
      Train LeNet-300-100 on the embedded MNIST and run the Deep Compression chain, printing
      one row per stage: file size, ratio to the float .tflite, test error measured on the
      .tflite through the interpreter.
  dc-keras pack IN OUT        Huffman-pack the weights of any .tflite (adds HuffDecode ops).
  dc-keras unpack IN OUT      Restore an ordinary .tflite from a packed one.
  dc-keras inspect FILE [--plot=OUT.png]
                              Per-tensor size table of a .tflite (packed or not).

Run `dc-keras COMMAND --help` for the options of one command.
"""
import argparse
import errno
import os
import signal
import sys
import threading
import warnings

from absl import flags as absl_flags
from absl.flags import argparse_flags

from dc_keras import __version__
from dc_keras._logs import native_stderr_captured, quiet_tensorflow_startup, verbose
from dc_keras.demo import FULL_EPOCHS, QUICK_EPOCHS  # cheap: demo imports Keras only when run
from dc_keras.export import cli_commands as _export_cli
from dc_keras.export.cli_commands import int_at_least


def _cmd_demo(args):
    from dc_keras import demo

    demo.run_demo(full=args.full, epochs=args.epochs, out_dir=args.out_dir, seed=args.seed,
                  train_subset=args.train_subset)


def _out_dir(text):
    """An argparse ``type``: a non-empty directory path (``--out_dir ""``, an unset variable, ran the
    demo into a temporary directory instead)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path (an unset variable in the command?): give a directory, or "
                                         "leave --out_dir out for a temporary one")
    return text


def _seed(text):
    """An argparse ``type``: a seed NumPy takes (0 to 2**32-1); -1 was refused by NumPy only after
    Keras had loaded (7-13 s), as "Seed must be between 0 and 2**32 - 1"."""
    value = int_at_least(0)(text)
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be at most 2**32-1 = {2**32 - 1}, got {value}")
    return value


def _add_demo(commands):
    about = "train LeNet-300-100 on the embedded MNIST and run the compression chain"
    p = commands.add_parser("demo", help=about, description=about[0].upper() + about[1:] + ".")
    p.add_argument("--full", action="store_true", help="train to paper quality (longer) instead of the quick default")
    p.add_argument("--epochs", type=int_at_least(1), metavar="N",
                   help=f"baseline training epochs (default: {QUICK_EPOCHS[0]} quick, {FULL_EPOCHS[0]} with --full)")
    p.add_argument("--out_dir", "--out-dir", metavar="DIR", type=_out_dir,
                   help="directory for the .tflite files it writes, created if missing (default: a temporary "
                        "directory)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32-1 (default: 0)")
    p.add_argument("--train_subset", "--train-subset", type=int_at_least(100), metavar="N",
                   help="train on the first N training images only (smoke tests)")
    p.set_defaults(func=_cmd_demo)
    return ("demo",)


def _absl_logging_flags():
    """A FlagValues holding just absl's logging flags (the same Flag objects as absl.flags.FLAGS)."""
    import absl.logging  # noqa: F401  (defines those flags; at parse time, not at import)

    fv = absl_flags.FlagValues()
    for name in ("verbosity", "logtostderr", "alsologtostderr", "stderrthreshold", "log_dir"):
        if name in absl_flags.FLAGS:
            fv[name] = absl_flags.FLAGS[name]
    return fv


class _CommandParser(argparse.ArgumentParser):
    """A sub-command's parser: plain argparse, without abbreviations (``--min_b`` is not taken for
    ``--min_bytes``: a typo must not silently become another option), keeping the option strings
    it was given (``dc_options``) and the arguments it did not know (``dc_command_unknown`` on the
    namespace), so that :func:`main` can tell them from those before the command."""

    def __init__(self, *args, **kwargs):
        self.dc_options = []  # (option strings of one argument), before argparse's __init__, which adds -h/--help
        self.dc_positionals = []  # (dest, metavar) of IN OUT / FILE, in order
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.dc_options.append(tuple(action.option_strings))
        else:
            self.dc_positionals.append((action.dest, action.metavar or action.dest))
        return action

    def parse_known_args(self, args=None, namespace=None):
        self.dc_args = list(args) if args is not None else []  # for error(): a file named like an option
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.dc_command_unknown = list(extras)
        return namespace, extras

    def error(self, message):
        """argparse's usage error; ``pack --version`` with no value (a user asking for dc-keras's
        version after the command) also says where that option is."""
        if message.endswith("argument --format-version/--version: expected one argument"):
            message += (" (the packed format version to write, 1 to 4; dc-keras's own version: "
                        "`dc-keras --version`, before the command)")
        if message.startswith("the following arguments are required"):  # `pack -m.tflite OUT`
            message += _dash_file_note(getattr(self, "dc_args", []))
        super().error(message)


def _too_many_paths(name, command, args, unknown):
    """The error for more paths than ``command`` takes (``dc-keras pack *.tflite packed/``: a shell
    pattern gave several models), which argparse called "unrecognized arguments: ..." naming only the
    last ones; None when an unknown argument is an option (``-x``), or the command takes no path."""
    if any(t.startswith("-") and t != "-" for t in unknown):
        return None
    positionals = command.dc_positionals
    if not positionals:
        return None
    given = [str(getattr(args, dest)) for dest, _ in positionals] + list(unknown)
    wanted = " and ".join(f"one {metavar}" for _, metavar in positionals)
    from dc_keras._fileio import shell_path

    if len(positionals) == 1:
        way = f'run it once per file, e.g. for f in *.tflite; do dc-keras {name} "$f"; done'
    else:
        last = given[-1]
        folder = shell_path(last.rstrip("/") or "/") + "/" if os.path.isdir(last) else ""  # `... outdir/`
        ins, outs = ("*.tflite", '"${f%.tflite}.packed.tflite"') if name == "pack" else \
            ("*.packed.tflite", '"${f%.packed.tflite}.tflite"')
        way = f'{name} one model per command, e.g. for f in {ins}; do dc-keras {name} "$f" {folder}{outs}; done'
    return (f"{name} takes {wanted}, got {len(given)} paths: {' '.join(shell_path(g) for g in given)} (a shell "
            f"pattern such as *.tflite?): {way}")


def _dash_file_note(tokens):
    """`` (NAME was read as an option ...)`` when one of ``tokens`` argparse took for an option is a
    file's name (``-m.tflite``), else ``""``: the command then missed IN, or called it unrecognized."""
    files = [t for t in tokens if t.startswith("-") and t != "-" and "=" not in t and os.path.isfile(t)]
    if not files:
        return ""
    from dc_keras._fileio import shell_path

    return (f" ({files[0]} was read as an option, as a name starting with - is: write the file as "
            f"{shell_path(files[0])}, or put -- before the file names)")


def _global_options(absl_flags_held):
    """The options ``dc-keras`` takes before the command, each as a tuple of its spellings: its own,
    absl's logging flags (``--noNAME`` for a boolean one), ``--flagfile`` and ``--undefok``, which
    absl reads itself."""
    groups = [("-h", "--help"), ("--helpfull",), ("--version",)]
    flags_held = {absl_flags_held[name].name: absl_flags_held[name] for name in absl_flags_held}  # -v: --verbosity
    for name, flag in flags_held.items():
        groups.append(("--" + name,) + (("-" + flag.short_name,) if flag.short_name else ())
                      + (("--no" + name,) if flag.boolean else ()))
    return groups + [("--flagfile",), ("--undefok",)]


def build_parser():
    """The ``dc-keras`` argument parser and the names of its commands."""
    first, rest = __doc__.split("\n\n", 1)
    # absl's argparse integration: sub-commands as argparse does them, plus absl's logging flags
    # (--verbosity, --logtostderr, --helpfull); only those, so that absl flags other modules of
    # the process defined (e.g. a benchmark's --seed) cannot clash with a command's options.
    logging_flags = _absl_logging_flags()
    parser = argparse_flags.ArgumentParser(prog="dc-keras", description=first, epilog=rest, allow_abbrev=False,
                                           formatter_class=argparse.RawDescriptionHelpFormatter,
                                           inherited_absl_flags=logging_flags)
    parser.add_argument("--version", action="version", version=f"dc-keras {__version__}")
    parser.dc_options = _global_options(logging_flags)
    # sub-commands are plain argparse parsers (no abbreviations): only the top level carries absl's flags
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                     parser_class=_CommandParser)
    names = _add_demo(commands) + _export_cli.add_commands(commands)
    parser.dc_commands = dict(commands.choices)  # name -> sub-command parser (usage of a bad option)
    return parser, sorted(names)


def _one_line(exc):
    """``exc`` as a user reads it: "PATH: reason" for file errors (no "[Errno N]")."""
    if isinstance(exc, OSError) and exc.strerror:
        from dc_keras._fileio import show_path

        return f"{show_path(exc.filename)}: {exc.strerror}" if exc.filename else exc.strerror
    return " ".join(str(exc).split())


def _abbreviation_of(token, groups):
    """The options (the first matching spelling of each) that ``token`` (``--min_b`` or ``--min_b=10``) is a
    prefix of, when it is not an option itself: what argparse would have taken it for."""
    name = token.split("=", 1)[0]
    if not name.startswith("--") or len(name) < 3 or any(name in g for g in groups):
        return []
    return [next(o for o in g if o.startswith(name)) for g in groups if any(o.startswith(name) for o in g)]


def _abbreviation_error(token, full):
    name = token.split("=", 1)[0]
    if len(full) == 1:
        return (f"{name} is not an option, only the start of {full[0]}, and abbreviations are not accepted "
                f"(a typo must not be taken for another option): write {full[0]} in full")
    return (f"{name} is not an option, only the start of {', '.join(full[:-1])} and {full[-1]}, and abbreviations "
            "are not accepted: write the option you mean in full")


def _unknown_before_command(unknown, command, parser):
    """The error for options before the command that ``dc-keras`` does not take there (they used
    to be blamed on the command, with its usage)."""
    own = [g for g in parser.dc_commands[command].dc_options if g[0] not in ("-h", "--help")]
    for token in unknown:
        name = token.split("=", 1)[0]
        if any(name in g for g in own):
            return (f"{name} is an option of {command} and goes after the command, not before it: "
                    f"dc-keras {command} ... {token}")
    for token in unknown:
        full = _abbreviation_of(token, parser.dc_options)
        if full:
            return f"before the command {command}: {_abbreviation_error(token, full)}"
    import difflib

    spellings = [o for g in parser.dc_options for o in g]
    close = difflib.get_close_matches(unknown[0].split("=", 1)[0], spellings, n=1)
    return (f"unknown option{'s' if len(unknown) > 1 else ''} {' '.join(unknown)} before the command {command}"
            + (f" (did you mean {close[0]}?)" if close else "")
            + "; the options valid before a command are " + ", ".join("/".join(g) for g in parser.dc_options)
            + f" (`dc-keras --helpfull` describes them); {command}'s own options go after it "
              f"(`dc-keras {command} --help` lists them)")


def _absl_flag_error(exc):
    """One line for a bad absl flag before the command (``--verbosity=abc``, ``--stderrthreshold=x``,
    a ``--flagfile`` that cannot be read or is not text), which absl raised as a traceback."""
    if isinstance(exc, absl_flags.CantOpenFlagFileError) and isinstance(exc.__context__, OSError):
        return f"--flagfile {_one_line(exc.__context__)}: give a readable text file of flags, one per line"
    if isinstance(exc, UnicodeDecodeError):
        return f"a --flagfile is not text ({_one_line(exc)}): give a text file of flags, one per line"
    return f"{_one_line(exc)}; `dc-keras --helpfull` lists these flags"


class _Report:
    """``sys.stdout`` while a command runs: where its report (and Keras's progress) is printed.

    A write or flush that fails (stdout on a full disk or ``/dev/full``, an I/O error, a closed
    descriptor: ``>&-``, where Python's ``sys.stdout`` is ``None``) is recorded in ``error`` and
    the rest of the report dropped, not raised: the command goes on and writes its output files,
    and :func:`main` then says the report was lost (status 1), as the C tools do at the end
    (tool_finish_stdout) and as C's stdio keeps a stream's error until it is checked. A closed
    pipe (``| head``) still raises ``BrokenPipeError``: the reader went away, the command stops.
    """

    def __init__(self, stream):
        self.stream = stream
        self.error = None

    def _guarded(self, call, *args):
        if self.error is None:
            try:
                if self.stream is None:
                    raise OSError(errno.EBADF, os.strerror(errno.EBADF))
                return call(*args)
            except BrokenPipeError:
                raise
            except OSError as exc:
                self.error = exc
        return None

    def write(self, text):
        self._guarded(lambda t: self.stream.write(t), text)
        return len(text)

    def flush(self):
        self._guarded(lambda: self.stream.flush())

    def isatty(self):
        return self.stream is not None and self.error is None and self.stream.isatty()

    def __getattr__(self, name):  # encoding, fileno, ... of the real stream
        if self.stream is None:
            raise AttributeError(name)
        return getattr(self.stream, name)


def _warning_line(command):
    """``warnings.showwarning`` for a command: ``dc-keras COMMAND: warning: ...`` on one stderr line
    (Python's default adds the file and source line of the call, which mean nothing to a CLI user)."""
    def show(message, _category, _filename, _lineno, file=None, _line=None):
        print(f"dc-keras {command}: warning: {_one_line(message)}", file=file or sys.stderr)
    return show


def main(argv=None) -> int:
    """Runs one command; returns the exit status (0 ok, 1 failed, 2 usage error).

    ``argv`` excludes the program name (default: ``sys.argv[1:]``). Errors a user can fix (bad
    or missing file, unwritable output, ...) are printed as one line
    ``dc-keras COMMAND: error: ...`` on stderr.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, names = build_parser()
    if not argv:
        parser.print_usage(sys.stderr)
        print("dc-keras: error: missing command; one of: " + ", ".join(names), file=sys.stderr)
        return 2
    if not argv[0].startswith("-") and argv[0] not in names:
        parser.print_usage(sys.stderr)
        print(f"dc-keras: error: unknown command {argv[0]!r}; one of: " + ", ".join(names), file=sys.stderr)
        return 2
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as e:  # --help / --version (0) or a usage error argparse already printed (2)
        return e.code if isinstance(e.code, int) else 2
    except (absl_flags.Error, ValueError) as e:  # absl's own flags, which it parses itself (not argparse)
        parser.print_usage(sys.stderr)
        print(f"dc-keras: error: {_absl_flag_error(e)}", file=sys.stderr)
        return 2
    if args.command is None:  # only options, e.g. `dc-keras --foo`
        parser.print_usage(sys.stderr)
        print("dc-keras: error: " + (f"unrecognized arguments: {' '.join(unknown)}; " if unknown else "")
              + "missing command; one of: " + ", ".join(names), file=sys.stderr)
        return 2
    after = list(getattr(args, "dc_command_unknown", []))
    before = list(unknown)
    for token in reversed(after):  # argparse lists the command's unknown arguments last
        if token in before:
            del before[len(before) - 1 - before[::-1].index(token)]
    if before:  # e.g. `dc-keras --no_such_flag pack ...`: not the command's fault
        parser.print_usage(sys.stderr)
        print(f"dc-keras: error: {_unknown_before_command(before, args.command, parser)}", file=sys.stderr)
        return 2
    if unknown:  # argparse would blame the top-level parser ("dc-keras: error: ...") with its usage
        command = parser.dc_commands[args.command]
        command.print_usage(sys.stderr)
        full = next(((t, f) for t in unknown for f in [_abbreviation_of(t, command.dc_options)] if f), None)
        extra_paths = _too_many_paths(args.command, command, args, unknown)
        if full:  # `--min_b=10`: argparse took it for --min_bytes, silently
            print(f"dc-keras {args.command}: error: {_abbreviation_error(*full)}", file=sys.stderr)
        elif extra_paths:
            print(f"dc-keras {args.command}: error: {extra_paths}", file=sys.stderr)
        else:
            print(f"dc-keras {args.command}: error: unrecognized arguments: {' '.join(unknown)}"
                  f"{_dash_file_note(unknown)}; `dc-keras {args.command} --help` lists its options", file=sys.stderr)
        return 2
    report = sys.stdout = _Report(sys.stdout)
    shown = warnings.showwarning
    warnings.showwarning = _warning_line(args.command)
    try:
        status = args.func(args) or 0
        report.flush()  # here, not at exit: a full disk's error is reported below
    except BrokenPipeError:  # stdout closed early (`dc-keras inspect m.tflite | head`): quiet, as cat is
        os.dup2(os.open(os.devnull, os.O_WRONLY), report.stream.fileno())  # no second error at exit
        return 128 + 13  # killed by SIGPIPE, as a C tool would be
    except _export_cli.UsageError as e:  # options that cannot go together: as argparse's usage errors
        parser.dc_commands[args.command].print_usage(sys.stderr)
        print(f"dc-keras {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # user-facing errors: one line, non-zero exit
        print(f"dc-keras {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except MemoryError as e:  # a model too large for the memory (limit) this process has
        what = _one_line(e)
        print(f"dc-keras {args.command}: error: out of memory{': ' + what if what else ''}; free some memory "
              "or raise the process's memory limit (ulimit -v)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dc-keras {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = report.stream
        warnings.showwarning = shown
    if report.error is not None:  # the command's own work succeeded
        _drop_unwritten(report.stream)
        print(f"dc-keras {args.command}: error: cannot write the report to standard output: "
              f"{report.error.strerror or report.error} (the output files, if any, were written)", file=sys.stderr)
        return 1
    return status


def _drop_unwritten(stream):
    """Points a failed stdout at /dev/null, so that what its buffer still holds does not fail a
    second time when the interpreter flushes it at exit ("Exception ignored ... OSError")."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # None, or a stream without a descriptor (tests)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class _Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised where the command is, so that its clean-up runs (the
    temporary file of an output being written is removed) before the process ends by the signal."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, _frame):
    raise _Terminated(signum)


def _end_by_signal(signum):
    """Ends the process by ``signum`` with the default action, as if it had not been caught (the
    caller sees the usual status: -15 from subprocess, 143 in a shell)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # not reached where the signal's default action ends the process


def _open_standard_descriptors():
    """Descriptors 0-2 closed at start-up (``<&-``, ``>&-``, ``2>&-``, a daemon) get /dev/null, as
    gnulib's stdopen does: else the first file the command opens (the output's temporary file) gets
    that number, and a line a library writes to stdout/stderr meanwhile (TensorFlow's log, a C
    extension's printf) ends up in the output. Stdin and stdout are opened in the contrary mode, so
    that a write to stdout still fails with EBADF (``_Report``: the report was lost); stderr for
    writing, and ``sys.stderr`` (None then) writes there: an error is lost with stderr, as a C
    tool's, instead of ``print(file=None)`` printing it into the report on stdout."""
    for fd, mode in ((0, os.O_WRONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, mode)  # the lowest free number: fd
            except OSError:
                continue
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)  # as a standard descriptor is, for the processes it starts
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")


def run(argv=None):
    """Console-script entry point (``dc-keras``).

    SIGTERM (``kill``) and SIGHUP (a closed terminal) end a command as Ctrl-C does, through its
    clean-up (no temporary file is left next to the output), and then the process by that signal;
    a signal the caller ignores (``nohup``) stays ignored. Ctrl-C ends it with "interrupted" and
    status 130, also before a command started (``dc_keras._launch`` covers the import of this
    module). Closed descriptors 0-2 are opened on /dev/null first (``_open_standard_descriptors``).
    """
    _open_standard_descriptors()
    main_thread = threading.current_thread() is threading.main_thread()  # signal handlers: main thread only
    caught = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if main_thread and s is not None
              and signal.getsignal(s) is signal.SIG_DFL]
    for signum in caught:
        signal.signal(signum, _raise_terminated)
    try:
        quiet_tensorflow_startup()  # before any TensorFlow import: no C++ start-up chatter
        if verbose():
            status = main(argv)
        else:
            # TensorFlow's C++ lines go to a temporary file, shown only if a crash (traceback)
            # follows; Python's stderr (progress bars, errors) is unaffected.
            with native_stderr_captured(keep_python_stderr=True, replay=(Exception,)):
                status = main(argv)
    except _Terminated as term:
        _end_by_signal(term.signum)
    except KeyboardInterrupt:  # before main() knew the command (its start-up, the parser): as main() says
        print("dc-keras: interrupted", file=sys.stderr)
        status = 130
    finally:
        for signum in caught:  # as they were (run() called in a process that goes on)
            signal.signal(signum, signal.SIG_DFL)
    sys.exit(status)


if __name__ == "__main__":
    run()
