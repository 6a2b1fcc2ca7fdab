"""``dc-keras pack``, ``unpack`` and ``inspect``: sub-commands added to ``dc_keras.cli``'s parser.

Outputs are written atomically with the umask's permissions (``dc_keras._fileio``); inputs are
never modified. Errors (bad file, already packed, not packed, ...) raise ``ValueError``/``OSError``
naming the file concerned, which the CLI prints as one line with a non-zero exit status.
Nothing here runs at import: the parsers are built by :func:`add_commands`.
"""
import argparse
import contextlib
import errno
import os
import re
import stat
import sys
import threading

from dc_keras._fileio import read_input as _read, shell_path, show_path, special_file_kind


class UsageError(ValueError):
    """Options that cannot go together: ``dc-keras`` prints the command's usage and exits 2, before
    reading any file."""


@contextlib.contextmanager
def _about(path):
    """Errors about the model read from ``path`` name that file (a user running a script over
    many files must see which one is truncated or already packed)."""
    try:
        yield
    except ValueError as exc:
        msg = " ".join(str(exc).split())
        if msg.startswith("model is already packed"):
            raise ValueError(f"{show_path(path)} is already packed (it has HuffDecode ops), so there is nothing to "
                             f"pack: use it as it is, or run `dc-keras unpack {shell_path(path)} PLAIN.tflite` first "
                             "to pack it again with other options") from None
        if not msg.startswith(show_path(path)):
            raise ValueError(f"{show_path(path)}: {msg}") from None
        raise


_FD_PATH = re.compile(r"/(?:dev/fd|proc/(self|thread-self|\d+)/fd)/(\d+)")
_STANDARD_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _standard_stream(path):
    """0, 1 or 2 when ``path`` names this process's standard input, output or error (``-`` for
    standard output; /dev/stdout, /dev/fd/1, /proc/self/fd/1, or a symbolic link to one), else
    ``None``. Told from the name, not by opening it: the descriptor itself may be a regular file
    (``> f.tflite``), which the atomic rename used to replace, losing the report printed there."""
    if path == "-":
        return 1
    p = os.path.abspath(path)
    for _ in range(40):  # links to links (the kernel stops at 40 too)
        if p in _STANDARD_NAMES:
            return _STANDARD_NAMES[p]
        m = _FD_PATH.fullmatch(p)
        if m:
            mine = m.group(1) in (None, "self", "thread-self") or int(m.group(1)) == os.getpid()
            return int(m.group(2)) if mine and int(m.group(2)) <= 2 else None
        try:
            if not os.path.islink(p):
                return None
            p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
        except OSError:
            return None
    return None


def _to_stdout(out, src, command):
    """Whether ``command``'s OUT is standard output (``-``, /dev/stdout, ...): the model's bytes then
    go there, as they are, and the report to stderr. Refused before any work: standard input or
    error as OUT, standard output that is a terminal or closed, or that is IN itself (``>> IN``)."""
    fd = _standard_stream(out)
    if fd is None:
        return False
    if fd != 1:
        name = "standard input" if fd == 0 else "standard error, where the messages go"
        raise UsageError(f"OUT {show_path(out)} is {name}: give a file path, or - for standard output "
                         f"(dc-keras {command} IN - > OUT.tflite)")
    if getattr(sys.stdout, "buffer", None) is None:
        raise ValueError(f"OUT {show_path(out)} is standard output, which is closed (>&-): give a file path or "
                         "redirect standard output to a file")
    if sys.stdout.isatty():
        raise ValueError(f"OUT {show_path(out)} is standard output, which is a terminal: the model is binary, not "
                         f"text; redirect it (dc-keras {command} {shell_path(src)} - > OUT.tflite) or give a file path")
    try:
        st = os.fstat(sys.stdout.fileno())
        same = os.path.samestat(st, os.stat(src))
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture), no IN: not the same file
        same = False
    if same:  # `>> IN` would append the output to the input; `> IN` has emptied it already
        emptied = (", which is empty now (the shell's > IN empties it before dc-keras starts: copy the model there "
                   "again)") if st.st_size == 0 else ""
        raise ValueError(f"standard output is {show_path(src)}, the input{emptied}, and inputs are never modified: "
                         f"redirect standard output to another file (dc-keras {command} IN - > OUT.tflite)")
    return True


def _refuse_special_output(out, src, command):
    """OUT that exists and is neither a regular file nor a directory (a named pipe, process
    substitution's ``>(COMMAND)`` -- /dev/fd/63, a pipe --, /dev/null, a socket) is refused as
    :func:`dc_keras._fileio.check_writable` refuses it (the atomic rename would replace the node
    itself), with the command line's way out: OUT ``-`` writes the model to standard output."""
    try:
        mode = os.stat(out).st_mode
    except (OSError, ValueError):  # missing, unreadable, a null byte: the checks after this one name it
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = special_file_kind(mode)
    piped = _FD_PATH.fullmatch(os.path.abspath(out)) is not None  # >(COMMAND): the pipe itself is the way
    example = f"dc-keras {command} {shell_path(src)} - " + ("| COMMAND" if piped else f"> {shell_path(out)}")
    raise ValueError(f"OUT {show_path(out)} is a {kind}, not a regular file: writing the output there would replace "
                     f"the {kind} with a file; give the path of a regular file, or - to write the model to standard "
                     f"output ({example})")


def _write_output(path, data, to_stdout):
    """``data`` to OUT: standard output as it is (one write), or ``path`` atomically."""
    from dc_keras._fileio import atomic_write

    if not to_stdout:
        atomic_write(path, data)
        return
    sys.stdout.flush()
    buffer, view = sys.stdout.buffer, memoryview(data)
    try:
        while view:  # a write to a pipe can take part of the bytes (its reader gone): the rest fails (EPIPE)
            taken = buffer.write(view)
            if not taken:  # a non-blocking stdout that is full: None, not an error
                raise BlockingIOError(errno.EAGAIN, "standard output is non-blocking and full; it took "
                                      f"{len(data) - len(view)} of {len(data)} B")
            view = view[taken:]
        buffer.flush()
    except BrokenPipeError:  # the reader went away (| head): quiet, as for the report (dc_keras.cli)
        raise
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc}: the model written there is incomplete",
                      "standard output") from None


def _report_stream(to_stdout):
    """Where a command's report goes: stdout, or stderr when stdout took the output."""
    return contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext()


def _weights(model):
    """The set of the non-empty buffers' data of a ``.tflite`` (a ``ModelT``): what makes it this
    model, whatever its names, empty tables (``--compact``) or buffer placement (``--buffers``)."""
    import hashlib

    from dc_keras import _flatbuffer as fb

    views = (fb.buffer_view(model, i) for i in range(len(model.buffers or [])))
    return {hashlib.sha256(view).digest() for view in views if len(view)}


def _io_tensors(model):
    """Each subgraph's inputs and outputs as (type, shape): what pack and unpack never change (they
    add or remove ``HuffDecode`` ops and constants inside a subgraph, and ``--strip-strings`` only
    names), so a packed file of IN's model has IN's."""
    def shape(t):
        return () if t.shape is None else tuple(int(d) for d in t.shape)

    return [tuple((sg.tensors[i].type, shape(sg.tensors[i])) for i in (*(sg.inputs if sg.inputs is not None else ()),
                                                                      *(sg.outputs if sg.outputs is not None else ())))
            for sg in model.subgraphs or []]


def _refuse_another_model_as_out(out, data, command="pack", output=None):
    """ValueError if ``out`` is an existing ``.tflite`` of another model than IN (``data``): ``pack``
    and ``unpack`` replace an OUT they wrote before (a packed file, or IN's model when nothing
    packed, as it was or compacted), never another model, which would be lost: with two models in a
    folder, ``dc-keras pack *.tflite`` packed the first into the second (review s52), and ``dc-keras
    unpack *.tflite`` unpacked a packed model over the next one (review s55). Another model: an
    unpacked ``.tflite`` whose weights are not IN's (for ``unpack``: not those of its ``output``, the
    unpacked model), or a packed one whose subgraphs' inputs and outputs (types, shapes) are not
    IN's. A file that is no ``.tflite`` (or not a regular file: refused elsewhere) is left to the
    overwrite rule."""
    from dc_keras import _flatbuffer as fb

    if not os.path.isfile(out):
        return
    try:
        with open(out, "rb") as f:
            head = f.read(8)  # the identifier first: a big file that is no model is not read whole
            if head[4:8] != b"TFL3":
                return
            existing = fb.read_model(head + f.read())
        if _has_huffdecode(existing):
            another = _io_tensors(existing) != _io_tensors(fb.read_model(data))
            what = ("packed .tflite of another model (its inputs and outputs are not IN's, in number, type or "
                    "shape)")
        else:
            another = _weights(existing) != _weights(fb.read_model(data if output is None else output))
            what = ".tflite model that is not packed and holds other weights than IN" + (
                "'s unpacked model" if command == "unpack" else "")
    except (OSError, ValueError):  # unreadable or damaged: the write decides (check_writable)
        return
    if another:
        raise ValueError(f"OUT {show_path(out)} is an existing {what}: {command} replaces an OUT it wrote before, "
                         "never another model, which would be lost (did a shell pattern such as *.tflite expand to "
                         f"two models? {command} takes one IN and one OUT). Choose a new OUT, or delete "
                         f"{shell_path(out)} first to replace it")


def _check_paths(src, dst, names=("OUT", "IN")):
    same = os.path.abspath(src) == os.path.abspath(dst) or (
        os.path.exists(src) and os.path.exists(dst) and os.path.samefile(src, dst))  # links too
    if same:
        raise ValueError(f"{names[0]} must differ from {names[1]}: {show_path(dst)} is the same file as {show_path(src)}, and inputs are "
                         "never modified: choose a different output path")


@contextlib.contextmanager
def _working(desc, nbytes):
    """An elapsed-time line on a terminal's stderr while ``unpack`` runs on a big model (it
    reports no fraction done; ``pack`` draws a bar of its own), from the size pack's and inspect's
    bars start at (``_pack.PROGRESS_MIN_BYTES``); removed when done."""
    from dc_keras.export import _pack

    if nbytes < _pack.PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield
        return
    from dc_keras._logs import progress_bar_class

    tqdm = progress_bar_class()
    done = threading.Event()
    with tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed}", leave=False) as bar:

        def tick():
            while not done.wait(0.5):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _min_bytes(args):
    from dc_keras.export import DEFAULT_MIN_BYTES

    return DEFAULT_MIN_BYTES if args.min_bytes is None else args.min_bytes


def cmd_pack(args):
    from dc_keras._fileio import check_writable
    from dc_keras.export._pack import (_DECODERS, DEFAULT_MIN_SAVING, _needs_text, layouts_not_read, layouts_too_new,
                                       pack_with_stats)

    if args.decoder is not None and args.context_model:
        raise UsageError(f"--decoder {args.decoder} reads only layouts {','.join(_DECODERS[args.decoder][0])}, and "
                         "--context-model tries layout context_sparse (docs/FORMAT.md section 14): drop "
                         f"--context-model (or --decoder {args.decoder})")
    if args.decoder is not None and args.layouts is not None:
        reads = _DECODERS[args.decoder][0]
        extra = layouts_not_read(args.decoder, args.layouts)
        if extra:
            raise UsageError(f"--decoder {args.decoder} reads only layouts {','.join(reads)}, and --layouts names "
                             f"{','.join(extra)}: drop --layouts (--decoder {args.decoder} picks among those), "
                             f"or name only those, e.g. --layouts {','.join(reads)}")
    if args.layouts is not None and set(args.layouts) == {"context_sparse"} and not args.context_model:
        raise UsageError("--layouts context_sparse leaves no layout to pick: layout context_sparse is tried only "
                         "with --context-model (docs/FORMAT.md section 14): add --context-model, or name other "
                         "layouts, e.g. --layouts dense,sparse")
    newer = layouts_too_new(args.version, args.layouts)
    if newer:
        named = ",".join(newer)
        raise UsageError(f"--layouts names {named}, which --format-version {args.version} does not have "
                         f"({_needs_text(newer, '--format-version')}; docs/FORMAT.md section 10): pass "
                         f"--format-version {max(newer.values())}, or drop --format-version (per tensor, the lowest "
                         f"version that holds it), or leave {named} out of --layouts")
    to_stdout = _to_stdout(args.output, args.input, "pack")
    if not to_stdout:
        _refuse_special_output(args.output, args.input, "pack")
        _check_paths(args.input, args.output)
    data = _read(args.input)
    if not to_stdout:
        _refuse_another_model_as_out(args.output, data)
    if not to_stdout:
        check_writable(args.output)  # a bad output path fails now, not after packing
    with _about(args.input):  # pack draws its own progress bar on a terminal
        out, stats = pack_with_stats(data, min_bytes=_min_bytes(args), strip_strings=args.strip_strings,
                                     min_saving=DEFAULT_MIN_SAVING if args.min_saving is None else args.min_saving,
                                     buffers=args.buffers, context_model=args.context_model,
                                     compact=args.compact, positive_zeros=args.positive_zeros,
                                     version=args.version, layouts=args.layouts, decoder=args.decoder)
    replaced = not to_stdout and os.path.exists(args.output)
    _write_output(args.output, out, to_stdout)
    shown = "standard output" if to_stdout else show_path(args.output)
    inspect_how = _inspect_command(args)
    note = "" if stats["packed_tensors"] else (
        " (no tensor packed" + (": written unchanged" if out == data else "")
        + ("; the model holds no constant tensor (weights), so there is nothing to pack)" if not _has_constants(data)
           else f"; {inspect_how} says why per tensor)"))
    note += f"; replaced the existing {shown}" if replaced else ""
    if args.strip_strings:
        note += f"; strings stripped: {stats['strings_saved']} B saved"
    with _report_stream(to_stdout):
        print(f"{show_path(args.input)}: {len(data)} B -> {shown}: {len(out)} B "
              f"({len(data) / len(out):.2f}x){note}")
        _print_refused(stats["refused"], inspect_how, stats["refused_bytes"])
        _print_kept_raw(stats["kept_raw"], stats["kept_raw_kinds"], inspect_how)
        _print_skipped(stats["skipped"], args.min_bytes, stats["packed_tensors"])
        if stats["unreferenced"][0]:
            from dc_keras.export._pack import unreferenced_note

            print("note: " + unreferenced_note(*stats["unreferenced"]))
        if stats["unassigned_variables"]:
            from dc_keras._flatbuffer import unassigned_variables_note

            print("note: " + unassigned_variables_note(stats["unassigned_variables"]))
        _print_zip(stats["kept_files"], stats["kept_bytes"], stats["dropped_zip"], args.input, shown, source=data)
        _print_zeros(stats, args.positive_zeros)


def _has_constants(data):
    """Whether a tensor of the model reads a non-empty buffer (what ``inspect`` lists a row for):
    none in a model without weights, or one whose weights were stripped."""
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(data)
    return any(fb.buffer_size(model, t.buffer) for sg in model.subgraphs or [] for t in sg.tensors or [])


def _print_zeros(stats, asked=False):
    """What ``--positive-zeros`` did (``asked``: it was given; nothing to do is said too), or a note
    that it would pay (weights holding both zeros)."""
    (made, made_n), (kept, kept_n) = stats["positive_zeros"], stats["negative_zeros"]
    if made:
        print(f"positive zeros: {made_n} -0.0 entries of {made} weight tensor(s) packed as +0.0")
    elif asked:
        print("positive zeros: no packed float weight holds -0.0: nothing to change (the file is what pack "
              "gives without --positive-zeros)")
    elif kept:
        from dc_keras.export._pack import negative_zeros_note

        print("note: " + negative_zeros_note(kept, kept_n, "--positive-zeros"))


def _print_zip(names, kept_bytes, dropped, path, output, shown=5, source=b""):
    """A line naming the associated files (the zip appended to ``path``) kept after ``output``'s
    model, or a note saying why they could not be kept; a note on other bytes after the model
    kept (``kept_bytes``; ``source``: ``path``'s bytes, whose end they are when no zip follows)."""
    from dc_keras.export._pack import dropped_zip_note, is_cut_zip, kept_bytes_note

    if names:
        from dc_keras._flatbuffer import printable

        listed = ", ".join(map(printable, names[:shown])) + (f" and {len(names) - shown} more"
                                                             if len(names) > shown else "")
        print(f"associated files kept: {len(names)} ({listed}), in the zip after {show_path(output)}'s model")
    if kept_bytes:
        cut = not names and is_cut_zip(memoryview(source)[len(source) - kept_bytes:])
        print("note: " + kept_bytes_note(show_path(path), kept_bytes, show_path(output), cut))
    if dropped:
        print("note: " + dropped_zip_note(show_path(path), dropped))


def _inspect_command(args):
    """The ``dc-keras inspect`` command the report points to for ``pack``'s IN, as a user pastes it
    into a shell: the path quoted when it must be, and ``--min-bytes N`` when pack was given it
    (inspect's rows then say "skipped" where pack skipped)."""
    option = "" if args.min_bytes is None else f"--min-bytes {args.min_bytes} "
    if _standard_stream(args.input) is not None or not os.path.isfile(args.input):  # /dev/stdin, <(cmd): read once
        return f"`dc-keras inspect {option}FILE` (FILE: a saved copy of the model read from {shell_path(args.input)})"
    return f"`dc-keras inspect {option}{shell_path(args.input)}`"


def _print_skipped(skipped, min_bytes, packed):
    """A line on the constants left alone under an explicit ``--min-bytes`` (pack could pack them);
    under the default, only when nothing was packed (``packed``: how many tensors were), where they
    are the reason: else they are a few biases and shapes, said by ``inspect``'s totals."""
    if not skipped or min_bytes is None and packed:
        return
    total = sum(n for _, n in skipped)
    if min_bytes is None:
        from dc_keras.export import DEFAULT_MIN_BYTES

        print(f"skipped: {len(skipped)} constant tensor(s), {total} B, smaller than the default --min-bytes "
              f"{DEFAULT_MIN_BYTES} (too small for a packed header to pay off; a lower --min-bytes lets pack try them)")
        return
    print(f"skipped: {len(skipped)} constant tensor(s), {total} B, smaller than "
          f"--min-bytes {min_bytes} (left alone, as asked: a lower --min-bytes lets pack try them)")


def _print_refused(refused, inspect_how, total, shown=5):
    """One line per constant tensor pack cannot pack (at most ``shown``), on stdout after the result;
    ``total``: their bytes, a buffer several of them read counted once; ``inspect_how``: the
    ``dc-keras inspect`` command that lists every tensor (``_inspect_command``)."""
    if not refused:
        return
    from dc_keras._flatbuffer import printable

    print(f"not packed: {len(refused)} constant tensor(s), {total} B "
          f"({inspect_how} lists every tensor):")
    for name, nbytes, why in refused[:shown]:
        print(f"  {printable(name) or '(unnamed)'}: {nbytes} B: {printable(as_options(why))}")
    if len(refused) > shown:
        print(f"  ... and {len(refused) - shown} more")


_PYTHON_ARGUMENTS = (  # pack's reasons name its Python arguments; the command line's options instead
    (re.compile(r"layouts=\(([^()]*)\)"), lambda m: "--layouts " + ",".join(re.findall(r"'(\w+)'", m.group(1)))),
    (re.compile(r"decoder='(\w+)'"), lambda m: f"--decoder {m.group(1)}"),
    (re.compile(r"\bversion=(\d+)"), lambda m: f"--format-version {m.group(1)}"),
    (re.compile(r"\b(decoder|version|layouts)=None"),
     lambda m: "no --" + {"version": "format-version"}.get(m.group(1), m.group(1))),
    (re.compile(r"\bpack\(((?:--[^()]*?)(?:, --[^()]*?)*)\)"), lambda m: m.group(1).replace(", ", " ")),
    (re.compile(r"\bmin_saving\b"), lambda _: "--min-saving"),
)


def as_options(reason):
    """``reason`` (pack's, naming its ``layouts=``, ``decoder=`` and ``version=`` arguments, e.g.
    "pack(version=1, layouts=('dense',)) keeps it raw ... the defaults, version=None and layouts=None,
    pack it") as the command line spells them ("--format-version 1 --layouts dense keeps it raw ...
    the defaults, no --format-version and no --layouts, pack it")."""
    for pattern, spelling in _PYTHON_ARGUMENTS:
        reason = pattern.sub(spelling, reason)
    return reason


def _print_kept_raw(kept, kinds, inspect_how):
    """``kept_raw_note``'s line on the constants kept raw, whenever there are any (a report, like
    ``_print_refused``'s lines; the Python warning says it only when they are a tenth of the output)."""
    from dc_keras.export._pack import kept_raw_note

    line = kept_raw_note(kept, None, inspect_how, kinds=kinds)
    if line:
        print(as_options(line))


def is_packed(tflite_bytes) -> bool:
    """True if the ``.tflite`` has ``HuffDecode`` ops (raises ValueError when it is not a .tflite)."""
    from dc_keras import _flatbuffer as fb

    return _has_huffdecode(fb.read_model(tflite_bytes))


def _has_huffdecode(model):
    """Does ``model`` (a ``ModelT``) have ``HuffDecode`` ops?"""
    from dc_keras import _flatbuffer as fb

    return any(fb.is_huffdecode_code(c) for c in model.operatorCodes or [])


def cmd_unpack(args):
    from dc_keras._fileio import check_writable
    from dc_keras.export._pack import unpack_with_zip

    to_stdout = _to_stdout(args.output, args.input, "unpack")
    if not to_stdout:
        _refuse_special_output(args.output, args.input, "unpack")
        _check_paths(args.input, args.output)
    data = _read(args.input)
    if not to_stdout:
        check_writable(args.output)
    shown = "standard output" if to_stdout else show_path(args.output)
    with _about(args.input):
        packed = is_packed(data)
    if not packed:
        raise ValueError(f"{show_path(args.input)} is not packed (it has no HuffDecode op): it already is an "
                         f"ordinary .tflite, nothing to unpack; {shown} was not written")
    with _working(f"unpacking {show_path(args.input)}", len(data)), _about(args.input):
        out, kept, kept_bytes, dropped = unpack_with_zip(data, buffers=args.buffers)
    if not to_stdout:
        _refuse_another_model_as_out(args.output, data, "unpack", out)
    replaced = not to_stdout and os.path.exists(args.output)
    _write_output(args.output, out, to_stdout)
    with _report_stream(to_stdout):
        print(f"{show_path(args.input)}: {len(data)} B -> {shown}: {len(out)} B"
              + (f"; replaced the existing {shown}" if replaced else ""))
        _print_zip(kept, kept_bytes, dropped, args.input, shown, source=data)


def cmd_inspect(args):
    from dc_keras.export import inspect
    from dc_keras.export._inspect import check_plot_path

    if args.plot and _standard_stream(args.plot) is not None:  # the table goes to stdout: the image cannot
        raise UsageError(f"--plot {show_path(args.plot)} is a standard stream, where the table (or the messages) "
                         "go: give an image file path, e.g. --plot sizes.png")
    if args.plot:
        _check_paths(args.file, args.plot, ("--plot", "FILE"))  # e.g. a link to FILE named sizes.png
        check_plot_path(args.plot)  # a bad --plot path fails now, not after the table
    data = _read(args.file)
    with _about(args.file):
        report = inspect(data, min_bytes=_min_bytes(args))
    print(report.to_text())
    if args.plot:
        report.plot(args.plot)
        print(f"size chart written to {show_path(args.plot)}")


def int_at_least(lower):
    """An argparse ``type``: an integer >= ``lower``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lower:
            raise argparse.ArgumentTypeError(f"must be at least {lower}, got {value}")
        return value

    return parse


def _path(text):
    """An argparse ``type``: a non-empty path (an empty one, e.g. an unset shell variable, would
    otherwise be reported as a missing file or directory with no name), not ``-``."""
    if not text:
        raise argparse.ArgumentTypeError("empty path (an unset variable in the command?): give a file path")
    if text == "-":  # would be a file named "-", where Unix tools read stdin / write stdout
        raise argparse.ArgumentTypeError("'-' (standard input) is not supported here: give a file path (./- for a "
                                         "file named -), or /dev/stdin to read a model piped in")
    return text


def _plot_path(text):
    """``_path`` for ``--plot``: ``-`` would be standard output, where the table goes."""
    if text == "-":
        raise argparse.ArgumentTypeError("'-' (standard output) is not supported: the table goes there; give an "
                                         "image file path, e.g. --plot sizes.png (./- for a file named -)")
    return _path(text)


def _out_path(text):
    """``_path`` for pack's and unpack's OUT, where ``-`` is standard output."""
    return text if text == "-" else _path(text)


def _min_bytes_option(parser):
    parser.add_argument("--min-bytes", "--min_bytes", type=int_at_least(0), metavar="N",
                        help="leave constant tensors smaller than N bytes alone "
                             "(default: dc_keras.export.DEFAULT_MIN_BYTES = 256)")


def _saving_fraction(text):
    """An argparse ``type``: ``pack``'s ``min_saving``, a fraction in [0, 1) (10 % is 0.1)."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1) such as 0.1 (or a percent, 10%), got {text!r}") \
            from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (a fraction: 0.1 for 10 %, or 10%), got {text!r}")
    return value


def _buffers_option(p):
    p.add_argument("--buffers", choices=("auto", "inline", "external"), default="auto",
                   help="where buffer data goes: auto (the input's convention, inline under 256 KiB), "
                        "inline, or external (after the flatbuffer, Buffer.offset/size)")


def _layout_names(text):
    """An argparse ``type``: comma-separated layout names (``--layouts dense,sparse``) as a tuple."""
    from dc_keras.codec._format import LAYOUT_CODES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in LAYOUT_CODES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{'unknown layout(s) ' + ', '.join(unknown) if unknown else 'no layout'} "
                                         f"in {text!r}: give comma-separated names from {', '.join(sorted(LAYOUT_CODES))}")
    return names


class _LayoutsOnce(argparse.Action):
    """``--layouts`` given again with other names is a usage error: argparse kept the last one
    alone (``--layouts dense --layouts sparse`` packed with sparse only, without a word)."""

    def __call__(self, parser, namespace, values, option_string=None):
        before = getattr(namespace, self.dest, None)
        if before is not None and set(before) != set(values):
            both = ",".join(dict.fromkeys(before + values))
            parser.error(f"argument --layouts: given twice ({','.join(before)}, then {','.join(values)}), and only one "
                         f"list is used: give every layout in one, e.g. --layouts {both}")
        setattr(namespace, self.dest, values)


# What happens to OUT (dc_keras._fileio.atomic_write), in pack's and unpack's --help.
_OUT_POLICY = ("OUT is written atomically (a temporary file in its directory, renamed over it: no partial "
               "OUT, even when interrupted). A new OUT's permissions follow the umask; an existing OUT is "
               "replaced without asking (the report says 'replaced the existing OUT'), keeping its "
               "permissions, and a symbolic link is written through (an OUT that is another model's .tflite "
               "is refused: an unpacked one of other weights, or a packed one with other inputs or outputs, a "
               "shell pattern's second model); a read-only OUT (root replaces it, as "
               "cp does), a dangling link, a device or a FIFO is refused. OUT - (or /dev/stdout) writes the "
               "model to standard output, which must not be a terminal, and the report to stderr.")


def add_commands(commands):
    """Adds ``pack``, ``unpack`` and ``inspect`` to ``commands`` (an argparse sub-parsers object);
    returns their names."""
    p = commands.add_parser("pack", help="Huffman-pack the weights of any .tflite (adds HuffDecode ops)",
                            description="Huffman-pack the weights of IN into OUT (IN is never modified). " + _OUT_POLICY)
    p.add_argument("input", metavar="IN", type=_path, help="the .tflite to pack")
    p.add_argument("output", metavar="OUT", type=_out_path,
                   help="where to write the packed .tflite; - for standard output (the report then goes to stderr)")
    _min_bytes_option(p)
    p.add_argument("--min-saving", "--min_saving", dest="min_saving", type=_saving_fraction, default=None,
                   metavar="F", help="pack a tensor only if it shrinks by at least this fraction of its bytes (or "
                                     "a percent: 5%%); default 0.1, dc_keras.export.pack's min_saving. 0 packs every "
                                     "tensor that gets smaller (dense int8 weights gain a little, at some load time)")
    p.add_argument("--strip-strings", "--strip_strings", dest="strip_strings", action="store_true",
                   help="drop tensor/subgraph names and the model description (signatures keep working); "
                        "prints the bytes saved")
    p.add_argument("--compact", action=argparse.BooleanOptionalAction, default=None,
                   help="drop flatbuffer tables no runtime reads (empty quantization tables, one empty "
                        "buffer per activation tensor); outputs unchanged. Default: on when the model is "
                        "rewritten; --compact also rewrites a model with nothing to pack, --no-compact "
                        "keeps every table")
    p.add_argument("--context-model", "--context_model", dest="context_model", action="store_true",
                   help="also try the context-modelled sparse layout (docs/FORMAT.md section 14): a few "
                        "percent smaller on some pruned kernels, ~0.8x the decode speed")
    p.add_argument("--positive-zeros", "--positive_zeros", dest="positive_zeros", action="store_true",
                   help="make every -0.0 of a float weight of FULLY_CONNECTED, convolution, BATCH_MATMUL or "
                        "fused LSTM operators or a GATHER / EMBEDDING_LOOKUP table (a float16 one too, read through DEQUANTIZE) +0.0 before packing (tfmot's strip_pruning leaves -0.0 for about half of "
                        "the pruned weights, which bit-exact packing stores like kept weights); outputs can "
                        "then differ only in the sign of an output that is exactly zero")
    p.add_argument("--format-version", "--version", dest="version", type=int, choices=(1, 2, 3, 4, 5), default=None,
                   help="packed format version to write (docs/FORMAT.md section 10; --version is the same option, "
                        "not dc-keras --version); default: per tensor the "
                        "lowest that holds it (2, or 3 for the 8-byte, uint32, uint16 and bool types, 4 for a "
                        "tensor that takes layout int_planes, 5 for one that takes sparse_planes). 4, 3, 2 or 1 "
                        "for a decoder that reads only up to "
                        "that version (tensors it cannot hold stay raw)")
    p.add_argument("--layouts", type=_layout_names, default=None, metavar="NAME,...", action=_LayoutsOnce,
                   help="the only layouts pack may use, for a decoder built without the others "
                        "(docs/microcontrollers.md), e.g. dense,sparse for DC_CODEC_NO_GROUPED and "
                        "DC_CODEC_NO_FLOAT_PLANES; names: context_sparse, dense, float_planes, grouped_dense, "
                        "grouped_sparse, int_planes, sparse, sparse_planes. Tensors none of them holds stay raw")
    p.add_argument("--decoder", choices=("minimal",), default=None,
                   help="minimal: write only what a DC_CODEC_MINIMAL decoder reads (layouts dense and sparse; "
                        "int4, int64, uint64 and float64 tensors stay raw)")
    _buffers_option(p)
    p.set_defaults(func=cmd_pack)

    p = commands.add_parser("unpack", help="restore an ordinary .tflite from a packed one",
                            description="Decode every HuffDecode op of IN; write the ordinary .tflite to OUT (IN is never "
                                        "modified). " + _OUT_POLICY)
    p.add_argument("input", metavar="IN", type=_path, help="a packed .tflite")
    p.add_argument("output", metavar="OUT", type=_out_path,
                   help="where to write the ordinary .tflite; - for standard output (the report then goes to stderr)")
    _buffers_option(p)
    p.set_defaults(func=cmd_unpack)

    p = commands.add_parser("inspect", help="per-tensor size table of a .tflite (packed or not)",
                            description="Per-tensor size table of FILE: raw vs packed bytes, density, "
                                        "distinct values. The totals count each buffer once (tensors sharing a "
                                        "buffer, e.g. a weight read in several subgraphs, are named after the "
                                        "table): raw = the distinct buffers' unpacked bytes, packed = the packed "
                                        "buffers' bytes.")
    p.add_argument("file", metavar="FILE", type=_path, help="a .tflite, packed or not")
    p.add_argument("--plot", metavar="OUT.png", type=_plot_path, help="also write a raw-vs-packed size chart to this path "
                   "(format from the extension: .png, .pdf, .svg, ...; PNG without one; checked before the model is read)")
    _min_bytes_option(p)
    p.set_defaults(func=cmd_inspect)
    return ("pack", "unpack", "inspect")
