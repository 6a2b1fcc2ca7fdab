"""``dc-keras`` reviewed again as a user types it (helper session 47), through ``python -m dc_keras``.

- an unknown option before the command (``dc-keras --no_such_flag pack ...``, a typo of a global
  flag) was blamed on the command, with the command's usage and "`dc-keras pack --help` lists its
  options", where it is not; now the top-level usage and one error naming the option, that it was
  before the command, and the options valid there (or that it is the command's, to go after it);
- a command's options took abbreviations (argparse's prefix matching: ``--min_b=10`` was
  ``--min_bytes``, ``--vers 2`` was ``--format-version``), so a typo could silently become another
  option; refused now (exit 2), naming the option it would have been taken for;
- ``dc-keras pack m.tflite /dev/stdout > f.tflite``: the rename of the atomic write replaced
  f.tflite through /proc/self/fd/1 and the report went to the replaced inode (lost); with stdout a
  pipe it was refused as a FIFO, and ``-`` was refused. OUT ``-`` (or /dev/stdout, /dev/fd/1) now
  writes the model to standard output, the same bytes as to a file, and the report to stderr;
  stdout on a terminal, closed, full, or being IN itself (``>> IN``) is one clear error; /dev/stderr
  and /dev/stdin as OUT, and --plot on a standard stream, are usage errors;
- ``dc-keras demo --out_dir X`` checked X after Keras and TensorFlow had loaded (7-13 s); now
  first, with nothing heavy imported. ``--out_dir ""`` ran the demo into a temporary directory,
  ``--seed -1`` failed after Keras loaded: both usage errors now;
- an input path longer than PATH_MAX was "a name in the path is longer than the file system
  allows" (no name was): it now says the whole path is too long.
"""
import os
import pty
import subprocess
import sys

import pytest

import _export_models as em
from dc_keras import export


def _run(*args, timeout=300, **kwargs):
    """``python -m dc_keras ARGS`` as a user runs it: CompletedProcess, text unless told otherwise."""
    kwargs.setdefault("capture_output", "stdout" not in kwargs and "stderr" not in kwargs)
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, "-m", "dc_keras", *map(str, args)], timeout=timeout, **kwargs)


def _error(stderr, prefix):
    """The one error line of ``stderr`` (which has no traceback), starting with ``prefix``."""
    lines = [ln for ln in stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(directory, plain .tflite path, its bytes, the packed bytes ``export.pack`` makes)."""
    d = tmp_path_factory.mktemp("cli_s47")
    plain = em.tflite("dense", None)
    (d / "m.tflite").write_bytes(plain)
    packed = export.pack(plain)
    (d / "p.tflite").write_bytes(packed)
    return d, d / "m.tflite", plain, packed


# ---- 1. an unknown option before the command ------------------------------------------------

TOP_USAGE = "usage: dc-keras [-h] [--helpfull] [--version] COMMAND ..."
VALID_BEFORE = ("the options valid before a command are -h/--help, --helpfull, --version, --verbosity/-v, "
                "--logtostderr/--nologtostderr, --alsologtostderr/--noalsologtostderr, --stderrthreshold, "
                "--log_dir, --flagfile, --undefok (`dc-keras --helpfull` describes them)")


@pytest.mark.parametrize("before, command, expected", [
    (["--no_such_flag"], "pack", "unknown option --no_such_flag before the command pack; " + VALID_BEFORE
     + "; pack's own options go after it (`dc-keras pack --help` lists them)"),
    (["--verbosty=1"], "pack", "unknown option --verbosty=1 before the command pack (did you mean --verbosity?); "
     + VALID_BEFORE),
    (["-x"], "inspect", "unknown option -x before the command inspect; " + VALID_BEFORE),
    (["--no_such_flag", "--other"], "unpack", "unknown options --no_such_flag --other before the command unpack"),
    (["--logtostder"], "pack", "before the command pack: --logtostder is not an option, only the start of "
     "--logtostderr, and abbreviations are not accepted (a typo must not be taken for another option): write "
     "--logtostderr in full"),
    (["--verb=1"], "unpack", "before the command unpack: --verb is not an option, only the start of --verbosity"),
    (["--min_bytes=10"], "pack", "--min_bytes is an option of pack and goes after the command, not before it: "
     "dc-keras pack ... --min_bytes=10"),
    (["--plot=x.png"], "inspect", "--plot is an option of inspect and goes after the command, not before it: "
     "dc-keras inspect ... --plot=x.png"),
])
def test_an_unknown_option_before_the_command_is_not_blamed_on_the_command(files, tmp_path, before, command,
                                                                             expected):
    _, plain_path, _, _ = files
    src = files[0] / ("p.tflite" if command == "unpack" else "m.tflite")
    outs = [] if command == "inspect" else [tmp_path / "o.tflite"]
    r = _run(*before, command, src if command != "pack" else plain_path, *outs, "--typo_after")
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    # the top-level usage, not the command's, and the error about the option before it (not --typo_after)
    assert r.stderr.splitlines()[0] == TOP_USAGE, r.stderr
    assert len(r.stderr.splitlines()) == 2, r.stderr
    assert _error(r.stderr, "dc-keras: error: ").startswith("dc-keras: error: " + expected), r.stderr
    assert "unrecognized arguments" not in r.stderr and f"dc-keras {command}: error" not in r.stderr
    assert os.listdir(tmp_path) == [] and not (tmp_path.parent / "x.png").exists()


def test_an_unknown_option_after_the_command_is_still_the_commands_and_undefok_still_works(files, tmp_path):
    _, src, plain, packed = files
    r = _run("pack", src, tmp_path / "o.tflite", "--no_such_flag")
    assert r.returncode == 2 and r.stderr.startswith("usage: dc-keras pack "), r.stderr
    assert _error(r.stderr, "dc-keras pack: error: ") == ("dc-keras pack: error: unrecognized arguments: "
                                                          "--no_such_flag; `dc-keras pack --help` lists its options")
    # absl's --undefok (accept these unknown flags) covers them on either side of the command, as before
    for i, args in enumerate((["--undefok=foo", "--foo", "pack", src], ["--undefok=foo", "pack", src, "--foo"])):
        out = tmp_path / f"u{i}.tflite"
        r = _run(*args, out)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == packed


# ---- 2. abbreviations of a command's options ----------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["pack", "{m}", "{o}", "--min_b=10"], "dc-keras pack: error: --min_b is not an option, only the start of "
     "--min_bytes, and abbreviations are not accepted (a typo must not be taken for another option): write "
     "--min_bytes in full"),
    (["pack", "{m}", "{o}", "--min-b", "10"], "dc-keras pack: error: --min-b is not an option, only the start of "
     "--min-bytes,"),
    (["pack", "{m}", "{o}", "--comp"], "dc-keras pack: error: --comp is not an option, only the start of --compact,"),
    (["pack", "{m}", "{o}", "--no-comp"], "dc-keras pack: error: --no-comp is not an option, only the start of "
     "--no-compact,"),
    (["pack", "{m}", "{o}", "--co"], "dc-keras pack: error: --co is not an option, only the start of --compact and "
     "--context-model, and abbreviations are not accepted: write the option you mean in full"),
    (["pack", "{m}", "{o}", "--vers", "2"], "dc-keras pack: error: --vers is not an option, only the start of "
     "--version,"),
    (["pack", "{m}", "{o}", "--strip"], "dc-keras pack: error: --strip is not an option, only the start of "
     "--strip-strings,"),
    (["unpack", "{p}", "{o}", "--buf=inline"], "dc-keras unpack: error: --buf is not an option, only the start of "
     "--buffers,"),
    (["inspect", "{p}", "--pl={x}"], "dc-keras inspect: error: --pl is not an option, only the start of --plot,"),
    (["demo", "--ep=1", "--out_dir={x}"], "dc-keras demo: error: --ep is not an option, only the start of --epochs,"),
])
def test_an_abbreviated_option_is_refused_naming_the_option(files, tmp_path, args, expected):
    """argparse took ``--min_b=10`` for ``--min_bytes=10`` silently (allow_abbrev was off at the top
    level only): a typo, or an option added later that shares the prefix, changed the result."""
    d, _, _, _ = files
    names = {"m": d / "m.tflite", "p": d / "p.tflite", "o": tmp_path / "o.tflite", "x": tmp_path / "x.png"}
    r = _run(*[a.format(**names) for a in args])
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"usage: dc-keras {args[0]} "), r.stderr
    assert _error(r.stderr, f"dc-keras {args[0]}: error: ").startswith(expected), r.stderr
    assert os.listdir(tmp_path) == []  # nothing written (the demo did not start)


def test_full_names_both_spellings_and_negations_still_work(files, tmp_path):
    """The options written in full (both spellings), ``--no-compact``, and absl's ``--nologtostderr``
    and ``-v`` before the command: the outputs are bit-identical to the Python API's."""
    _, src, plain, packed = files
    cases = [(["--nologtostderr", "pack", src, "{o}", "--no-compact", "--min_bytes=10"],
              export.pack(plain, min_bytes=10, compact=False)),
             (["-v", "0", "pack", src, "{o}", "--min-bytes", "10", "--compact"], export.pack(plain, min_bytes=10)),
             (["pack", src, "{o}", "--format-version", "2"], export.pack(plain, version=2)),
             (["pack", src, "{o}", "--version=2"], export.pack(plain, version=2)),
             (["unpack", files[0] / "p.tflite", "{o}", "--buffers=inline"], export.unpack(packed))]
    for i, (args, expected) in enumerate(cases):
        out = tmp_path / f"o{i}.tflite"
        r = _run(*[str(a).format(o=out) for a in args])
        assert r.returncode == 0, (args, r.stderr)
        assert out.read_bytes() == expected, args


# ---- 3. OUT on standard output --------------------------------------------------------------------

@pytest.mark.parametrize("out", ["-", "/dev/stdout", "/dev/fd/1"])
@pytest.mark.parametrize("command", ["pack", "unpack"])
def test_out_on_standard_output_writes_the_files_bytes_and_reports_on_stderr(files, tmp_path, command, out):
    """To a file (``> f.tflite``, where the report used to be lost) and to a pipe (refused as a FIFO):
    stdout holds exactly the bytes the command writes to a file, and stderr the report."""
    d, _, plain, packed = files
    src = d / ("m.tflite" if command == "pack" else "p.tflite")
    data = src.read_bytes()
    expected = packed if command == "pack" else export.unpack(packed)
    to_file = tmp_path / "to_file.tflite"
    r = _run(command, src, to_file)
    assert r.returncode == 0 and to_file.read_bytes() == expected, r.stderr

    redirected = tmp_path / "redirected.tflite"
    with open(redirected, "wb") as f:
        r = _run(command, src, out, stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert redirected.read_bytes() == expected  # bit-identical to the file's, and nothing else in it
    assert r.stderr == f"{src}: {len(data)} B -> standard output: {len(expected)} B" + (
        f" ({len(data) / len(expected):.2f}x)" if command == "pack" else "") + "\n", r.stderr

    r = _run(command, src, out, capture_output=True, text=False)  # a pipe
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected and r.stderr.decode().startswith(f"{src}: {len(data)} B -> standard output: ")
    assert sorted(os.listdir(tmp_path)) == ["redirected.tflite", "to_file.tflite"]
    assert src.read_bytes() == data


def test_a_reader_that_goes_away_early_ends_the_command_as_sigpipe_would(files, tmp_path):
    """``dc-keras pack big.tflite - | head -c 10``: a write to a pipe whose reader left takes part of
    the bytes without an error (Python's buffered write returned 65536 of 2 MB), so the command went
    on, printed its report and exited 0 with the model cut short; now the rest of the write fails,
    and the command ends quietly with 141 (as a C tool killed by SIGPIPE), as for the report."""
    _, _, plain, _ = files
    big = tmp_path / "big.tflite"
    big.write_bytes(plain + bytes(range(256)) * 8192)  # 2 MiB after the model (kept by pack): more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "dc_keras", "pack", str(big), "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.read(10)
    proc.stdout.close()
    err = proc.communicate(timeout=300)[1]
    assert first == export.pack(big.read_bytes())[:10]
    assert (proc.returncode, err) == (141, b""), (proc.returncode, err)
    r = _run("pack", big, "-", capture_output=True, text=False)  # the control: a reader that reads it all
    assert r.returncode == 0 and r.stdout == export.pack(big.read_bytes()), r.stderr


def test_standard_output_appended_to_keeps_what_it_held(files, tmp_path):
    """``>> archive`` appends, as for any tool writing to stdout (the atomic rename used to replace
    the whole file)."""
    _, src, _, packed = files
    archive = tmp_path / "archive"
    archive.write_bytes(b"held before\n")
    with open(archive, "ab") as f:
        r = _run("pack", src, "-", stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert archive.read_bytes() == b"held before\n" + packed


@pytest.mark.parametrize("command", ["pack", "unpack"])
def test_standard_output_that_is_the_input_is_refused(files, tmp_path, command):
    """``dc-keras pack m.tflite - >> m.tflite`` appended the output to the input."""
    d, _, _, _ = files
    src = tmp_path / "in.tflite"
    src.write_bytes((d / ("m.tflite" if command == "pack" else "p.tflite")).read_bytes())
    before = src.read_bytes()
    with open(src, "ab") as f:
        r = _run(command, src, "-", stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 1
    assert _error(r.stderr, f"dc-keras {command}: error: ") == (
        f"dc-keras {command}: error: standard output is {src}, the input, and inputs are never modified: redirect "
        "standard output to another file")
    assert src.read_bytes() == before


@pytest.mark.parametrize("out, name", [("/dev/stderr", "standard error, where the messages go"),
                                       ("/dev/fd/2", "standard error, where the messages go"),
                                       ("/dev/stdin", "standard input")])
def test_out_on_standard_error_or_input_is_a_usage_error(files, tmp_path, out, name):
    """``pack m.tflite /dev/stderr 2> f`` wrote the model into the CLI's own capture file of
    TensorFlow's log (fd 2 is redirected while a command runs), lost."""
    _, src, _, _ = files
    with open(tmp_path / "err.txt", "w") as err:
        r = _run("pack", src, out, stdout=subprocess.PIPE, stderr=err)
    text = (tmp_path / "err.txt").read_text()
    assert r.returncode == 2 and r.stdout == "", text
    assert _error(text, "dc-keras pack: error: ") == (
        f"dc-keras pack: error: OUT {out} is {name}: give a file path, or - for standard output "
        "(dc-keras pack IN - > OUT.tflite)")


def test_out_on_a_terminal_is_refused_and_nothing_reaches_it(files):
    _, src, _, _ = files
    master, slave = pty.openpty()
    try:
        r = _run("pack", src, "-", stdout=slave, stderr=subprocess.PIPE)
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 1 << 16)
        except (BlockingIOError, OSError):
            shown = b""
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 1 and shown == b"", (r.returncode, shown)
    assert _error(r.stderr, "dc-keras pack: error: ") == (
        "dc-keras pack: error: OUT - is standard output, which is a terminal: the model is binary, not text; "
        f"redirect it (dc-keras pack {src} - > OUT.tflite) or give a file path")


def test_out_on_a_closed_or_full_standard_output_is_one_error(files):
    _, src, _, _ = files
    r = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m dc_keras pack "{src}" - >&-'], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1
    assert _error(r.stderr, "dc-keras pack: error: ") == (
        "dc-keras pack: error: OUT - is standard output, which is closed (>&-): give a file path or redirect "
        "standard output to a file")
    if not os.path.exists("/dev/full"):
        return
    with open("/dev/full", "wb") as full:
        r = _run("pack", src, "-", stdout=full, stderr=subprocess.PIPE)
    assert r.returncode == 1
    assert _error(r.stderr, "dc-keras pack: error: ") == (
        "dc-keras pack: error: standard output: No space left on device: the model written there is incomplete")


@pytest.mark.parametrize("plot", ["/dev/stdout", "/dev/stderr", "/dev/fd/1"])
def test_plot_on_a_standard_stream_is_a_usage_error(files, plot):
    """``inspect --plot /dev/stdout > x.png`` printed the table into the file the rename replaced."""
    d, _, _, _ = files
    r = _run("inspect", d / "p.tflite", "--plot", plot)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert _error(r.stderr, "dc-keras inspect: error: ") == (
        f"dc-keras inspect: error: --plot {plot} is a standard stream, where the table (or the messages) go: give "
        "an image file path, e.g. --plot sizes.png")


# ---- 4. demo: its arguments checked before Keras loads ----------------------------------------

# ``python -m dc_keras ARGS`` that records in the file REPORT the heavy packages (TensorFlow, Keras,
# JAX, PyTorch) it imports: an import statement of one is recorded and stopped as Ctrl-C would stop
# it (the CLI: "interrupted", 130), and at exit those in sys.modules (imported by importlib) are
# recorded. ``-X importtime`` cannot tell: the CLI sends fd 2 to a capture file while a command runs;
# a finder cannot either: ``import dc_keras`` asks importlib.util.find_spec("keras") without importing it.
_STOP_HEAVY = """
import atexit
import builtins
import runpy
import sys

HEAVY = ("tensorflow", "keras", "tf_keras", "jax", "torch")
real_import = builtins.__import__


def record(names):
    with open({report!r}, "a") as f:
        f.write("".join(n + "\\n" for n in names))


def stopping_import(name, *args, **kwargs):
    if name.split(".")[0] in HEAVY and name not in sys.modules:
        record([name])
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)


builtins.__import__ = stopping_import
atexit.register(lambda: record(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)))
sys.argv = ["dc_keras", *{args!r}]
runpy.run_module("dc_keras", run_name="__main__", alter_sys=True)
"""


def _demo_stopping_heavy_imports(tmp_path, args):
    """(CompletedProcess of ``python -m dc_keras demo ARGS``, the heavy modules it began to import)."""
    report = tmp_path / "heavy_imports.txt"
    code = _STOP_HEAVY.format(report=str(report), args=["demo", *map(str, args)])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    heavy = report.read_text().split() if report.exists() else []
    report.unlink(missing_ok=True)
    return r, heavy


def _no_write_dir(tmp_path):
    """A directory this process may not create files in: a 0555 one, or as root (who may write it)
    a directory under /sys, which sysfs refuses to create; None where neither exists."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return d / "out"
    return "/sys/dc_keras_s47_out" if os.path.isdir("/sys/kernel") else None


@pytest.mark.parametrize("kind", ["file", "under_a_file", "device", "no_write", "empty", "seed"])
def test_demo_refuses_a_bad_argument_before_importing_tensorflow(files, tmp_path, kind):
    """``demo --out_dir X`` checked X after ``import keras`` (7-13 s, TensorFlow loaded); the
    refusal now comes before any of them is imported."""
    _, src, _, _ = files
    args, status = ["--out_dir"], 1
    if kind == "file":
        args.append(src)
        expected = (f"dc-keras demo: error: {src}: a file, not a directory: give out_dir (--out_dir) a directory "
                    "you may write; it is created if missing")
    elif kind == "under_a_file":
        args.append(f"{src}/out")
        expected = (f"dc-keras demo: error: {src}/out: Not a directory; give out_dir (--out_dir) a directory you "
                    "may write; it is created if missing")
    elif kind == "device":
        args.append("/dev/null")
        expected = "dc-keras demo: error: /dev/null: a file, not a directory: give out_dir (--out_dir) a directory"
    elif kind == "no_write":
        target = _no_write_dir(tmp_path)
        assert target is not None, "no directory to make unwritable here"
        args.append(target)
        expected = f"dc-keras demo: error: {target}: "
    elif kind == "empty":
        args.append("")
        status, expected = 2, ("dc-keras demo: error: argument --out_dir/--out-dir: empty path (an unset variable in "
                               "the command?): give a directory, or leave --out_dir out for a temporary one")
    else:
        args = ["--out_dir", tmp_path / "demo", "--seed=-1"]
        status, expected = 2, "dc-keras demo: error: argument --seed: must be at least 0, got -1"
    r, heavy = _demo_stopping_heavy_imports(tmp_path, args)
    assert heavy == [], (heavy, r.stderr[-3000:])
    assert r.returncode == status and r.stdout == "", (r.returncode, r.stdout, r.stderr[-3000:])
    line = _error(r.stderr, "dc-keras demo: error: ")
    assert line.startswith(expected), line
    if kind == "no_write":
        assert ("Permission denied" in line or "Operation not permitted" in line or "Read-only" in line) \
            and line.endswith("; give out_dir (--out_dir) a directory you may write; it is created if missing"), line
    assert not (tmp_path / "demo").exists()


def test_demo_with_good_arguments_goes_on_to_import_keras(tmp_path):
    """The control of the test above (its check can fail): with good arguments the same child
    creates out_dir, then imports Keras, where the finder stops it."""
    r, heavy = _demo_stopping_heavy_imports(tmp_path, ["--out_dir", tmp_path / "demo", "--epochs=1"])
    assert heavy[:1] == ["keras"], (heavy, r.stderr[-3000:])
    assert (r.returncode, r.stderr.strip()) == (130, "dc-keras demo: interrupted"), (r.returncode, r.stderr[-3000:])
    assert (tmp_path / "demo").is_dir() and os.listdir(tmp_path / "demo") == []


# ---- other misuse ------------------------------------------------------------------------------

def test_an_input_path_longer_than_path_max_says_so(files, tmp_path):
    """A path of short names longer than PATH_MAX (4096) was reported as "a name in the path is
    longer than the file system allows"; no name was."""
    long_path = "/".join(["d"] * 2100) + "/m.tflite"
    for args in (("inspect", long_path), ("pack", long_path, tmp_path / "o.tflite"),
                 ("unpack", long_path, tmp_path / "o.tflite")):
        r = _run(*args, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert _error(r.stderr, f"dc-keras {args[0]}: error: ").endswith(
            "/d/m.tflite: File name too long; the path is longer than the system allows (PATH_MAX), though no name "
            "in it is: use a shorter path, e.g. a relative one from a directory closer to the file"), r.stderr
    assert os.listdir(tmp_path) == []
