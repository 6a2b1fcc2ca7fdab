"""Runs the command-line tools (tools/dc_decode.c, tools/dc_unpack.c), built with ASan + UBSan,
over damaged inputs: part of ``make test-sanitize`` (tflite_kernels/Makefile).

The corpus is fixed (seed 20261206) and made from what the other tests use: the packed tensors
of fuzz/gen_seeds.py (every dtype, layout and format version), its packed .tflite seeds and
tests/data's .tflite files. Each input is truncated or has bytes flipped; a packed tensor's
flips are sometimes followed by a fixed-up CRC (FORMAT.md §8, versions 2-5), so that the damage
reaches the decoder's later checks, and its version byte is sometimes raised past the newest
(the "newer format" message). Every run of the sanitized tool must:

- exit 0 or 1 (2 for the usage errors run first), within TIMEOUT seconds, with no sanitizer
  report (its exit status is set to 99 and any report's text is looked for);
- on status 1 (and 2): print exactly one line on stderr, "TOOL: ..." (2: or "usage: TOOL ..."),
  of printable UTF-8 (an uninitialized buffer's bytes in it fail), nothing on stdout, and leave
  its directory as it was (no output, no temporary file);
- on status 0: print nothing on stderr and write OUT;
- give the status, stdout, stderr and OUT of the same tool built without sanitizers (PLAIN
  build dir); a damaged packed tensor whose CRC was not fixed up that still decodes must give
  the undamaged tensor's bytes.

Usage: python tools_replay.py SANITIZED_BUILD_DIR PLAIN_BUILD_DIR WORK_DIR
(``make test-sanitize`` passes build-sanitize, build and build-sanitize/tools-replay). Exit 0 when
every run passes, 1 after listing the failures (each with the input saved under WORK_DIR/failed).
"""
import glob
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

SEED = 20261206
TIMEOUT = 120  # seconds per run: a hang, not a slow machine
SAN_ENV = {
    # any report ends the run with status 99 (abort_on_error: a core-less abort otherwise)
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99:max_allocation_size_mb=2048",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=99",
    "LSAN_OPTIONS": "exitcode=99",
}
REPORT_MARKS = (b"Sanitizer", b"runtime error:", b"==ERROR", b"SUMMARY:")


def _crc_fixed(data):
    """``data`` with its version 2-5 CRC (FORMAT.md §8) recomputed, or None when its header does
    not say where the check is."""
    if len(data) < 8 or data[4] not in (2, 3, 4, 5) or data[6] > 8:
        return None
    at = 8 + 4 * data[6]
    if len(data) < at + 4:
        return None
    crc = zlib.crc32(data[at + 4:], zlib.crc32(data[:at]))
    return data[:at] + struct.pack("<I", crc) + data[at + 4:]


def _flip(rng, data, count, lo=0, hi=None):
    d = bytearray(data)
    hi = len(d) if hi is None else min(hi, len(d))
    for _ in range(count):
        d[rng.randrange(lo, hi)] ^= rng.randrange(1, 256)
    return bytes(d)


def damaged_tensors(rng, seeds):
    """(seed name, name, bytes, same): one damaged variant per packed tensor, the kinds taken in
    turn, plus the first few undamaged; ``same``: a status 0 must give the seed's decode."""
    kinds = ("cut", "flip", "flip_crc", "header_crc", "version_crc", "flips_crc")
    for i, (name, data) in enumerate(seeds):
        kind = kinds[i % len(kinds)]
        if i < 6:
            yield name, f"{name}_intact", data, True
        if kind == "cut":
            yield name, f"{name}_{kind}", data[:rng.randrange(len(data))], True
        elif kind == "flip":
            yield name, f"{name}_{kind}", _flip(rng, data, 1), True
        else:
            if kind == "header_crc":  # dtype, rank, layout, dims, K, axis...
                d = _flip(rng, data, 1, 4, 24)
            elif kind == "version_crc":  # a newer version than the decoder reads, or 0
                d = data[:4] + bytes([rng.choice((0, 6, 7, 200, 255))]) + data[5:]
            else:
                d = _flip(rng, data, 1 if kind == "flip_crc" else 3)
            fixed = _crc_fixed(d)
            # version 1 (no CRC) or a damaged header: the damage as it is, still checked
            yield name, f"{name}_{kind}", fixed if fixed is not None else d, fixed is None


def damaged_models(rng, models):
    """(name, bytes): each packed .tflite as it is, cut and flipped (anywhere, in the flatbuffer's
    first 64 bytes, in a packed tensor's header)."""
    for name, data in models:
        yield f"{name}_intact", data
        for j in range(3):
            yield f"{name}_cut{j}", data[:rng.randrange(len(data))]
        for j in range(4):
            yield f"{name}_flip{j}", _flip(rng, data, 1 + (j == 3) * 3)
        for j in range(2):
            yield f"{name}_head{j}", _flip(rng, data, 1, 0, 64)
        at = data.find(b"DCHF")
        for j in range(3 if at >= 0 else 0):
            yield f"{name}_tensor{j}", _flip(rng, data, 1, at, at + 32)


def _decode(plain, work, data):
    """The plain dc_decode's output for an undamaged packed tensor."""
    src, out = os.path.join(work, "seed.dcp"), os.path.join(work, "seed.raw")
    with open(src, "wb") as f:
        f.write(data)
    r = subprocess.run([os.path.join(plain, "dc_decode"), src, out], capture_output=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise SystemExit(f"tools_replay: the plain dc_decode refuses an undamaged seed: {r.stderr!r}")
    with open(out, "rb") as f:
        return f.read()


class Runner:
    def __init__(self, san, plain, work):
        self.san, self.plain, self.work = san, plain, work
        self.failures = []
        self.runs = 0
        self.status = {0: 0, 1: 0, 2: 0}

    def _run(self, exe, argv, cwd, env):
        try:
            r = subprocess.run([exe] + argv, cwd=cwd, env=env, capture_output=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        return r

    def fail(self, tool, name, data, why):
        keep = os.path.join(self.work, "failed")
        os.makedirs(keep, exist_ok=True)
        path = os.path.join(keep, f"{tool}-{name}")
        with open(path, "wb") as f:
            f.write(data)
        self.failures.append((f"{tool} {name} (input {path})", why))

    def check(self, tool, name, data, argv=("in", "out"), usage=False, expected=None):
        """One input through the sanitized and the plain build of ``tool``."""
        results = {}
        for build, extra in ((self.san, SAN_ENV), (self.plain, {})):
            d = os.path.join(self.work, "plain" if build is self.plain else "san")
            shutil.rmtree(d, ignore_errors=True)
            os.mkdir(d)
            if data is not None:
                with open(os.path.join(d, "in"), "wb") as f:
                    f.write(data)
            env = {k: v for k, v in os.environ.items() if not k.endswith("SAN_OPTIONS")}
            env.update(extra)
            r = self._run(os.path.join(build, tool), list(argv), d, env)
            if r is None:
                return self.fail(tool, name, data or b"", f"no exit within {TIMEOUT} s ({build})")
            out = os.path.join(d, "out")
            written = open(out, "rb").read() if os.path.isfile(out) else None
            results[build] = (r.returncode, r.stdout, r.stderr, sorted(os.listdir(d)), written)
        self.runs += 1
        rc, stdout, stderr, listing, written = results[self.san]
        self.status[rc] = self.status.get(rc, 0) + 1
        before = ["in"] if data is not None else []
        if any(m in stderr for m in REPORT_MARKS) or rc == 99:
            return self.fail(tool, name, data or b"", f"sanitizer report (status {rc}):\n{stderr.decode(errors='replace')}")
        if rc not in ((2,) if usage else (0, 1)):
            what = f"killed by signal {-rc}" if rc < 0 else f"status {rc}"
            return self.fail(tool, name, data or b"", f"{what}, expected {'2' if usage else '0 or 1'}; stderr: {stderr!r}")
        if rc != 0:
            text = stderr.decode("utf-8", errors="replace")  # messages hold a few non-ASCII signs (§)
            one_line = stderr.endswith(b"\n") and stderr.count(b"\n") == 1
            printable = "\ufffd" not in text and text[:-1].isprintable()
            starts = (f"{tool}: ", f"usage: {tool} ") if usage else (f"{tool}: ",)
            if not (one_line and printable and text.startswith(starts)):
                return self.fail(tool, name, data or b"", f"status {rc}: not one line of text naming {tool}: {stderr!r}")
            if stdout or listing != before:
                return self.fail(tool, name, data or b"", f"status {rc}: stdout {stdout!r}, directory left {listing} "
                                                           f"(was {before})")
        else:
            if stderr or written is None or listing != before + ["out"]:
                return self.fail(tool, name, data, f"status 0: stderr {stderr!r}, directory {listing}")
            if expected is not None and written != expected:
                return self.fail(tool, name, data, "status 0 for a damaged tensor whose CRC was not fixed up, "
                                                   "and the output differs from the undamaged tensor's")
        if results[self.plain] != results[self.san]:
            p = results[self.plain]
            return self.fail(tool, name, data or b"", f"the plain build differs: status {p[0]} vs {rc}, stdout {p[1]!r} vs "
                                                       f"{stdout!r}, stderr {p[2]!r} vs {stderr!r}, directory {p[3]} vs "
                                                       f"{listing}, output {'same' if p[4] == written else 'different'}")


def main(argv):
    if len(argv) != 4:
        print(__doc__)
        return 2
    san, plain, work = (os.path.abspath(a) for a in argv[1:])
    for b in (san, plain):
        for tool in ("dc_decode", "dc_unpack"):
            if not os.access(os.path.join(b, tool), os.X_OK):
                print(f"tools_replay: {b}/{tool} is missing: build it first (make BUILD={os.path.basename(b)} tools)")
                return 1
    try:
        import gen_seeds  # dc_keras' encoder and packer (numpy, ml_dtypes): a python with dc_keras
    except ImportError as e:
        print(f"tools_replay: cannot import dc_keras' codec ({e}): run it with the project's python "
              f"(make test-sanitize PY=.venv/bin/python)")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = random.Random(SEED)
    runner = Runner(san, plain, work)

    # usage errors: status 2, one line, nothing written
    for tool in ("dc_decode", "dc_unpack"):
        for args in ((), ("in",), ("in", "out", "in"), ("", "out"), ("in", "-")):
            runner.check(tool, "usage_" + "_".join(a or "empty" for a in args), b"DCHF", args, usage=True)

    seeds = [(name, data) for name, data, _ in gen_seeds.seeds()]
    originals = dict(seeds)
    decoded = {}
    for base, name, data, same in damaged_tensors(rng, seeds):
        if same and base not in decoded:
            decoded[base] = _decode(plain, work, originals[base])
        runner.check("dc_decode", name, data, expected=decoded[base] if same else None)

    models = list(gen_seeds.tflite_seeds())
    names = {n for n, _ in models}
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", "**", "*.tflite"), recursive=True)):
        name = os.path.basename(path).split(".")[0]
        if name not in names:
            with open(path, "rb") as f:
                models.append((name, f.read()))
    for name, data in damaged_models(rng, models):
        runner.check("dc_unpack", name, data)

    counts = ", ".join(f"status {k}: {v}" for k, v in sorted(runner.status.items()) if v)
    print(f"tools_replay: {runner.runs} runs of dc_decode / dc_unpack under ASan+UBSan ({len(seeds)} packed tensors, "
          f"{len(models)} packed models, seed {SEED}; {counts}), each compared with the plain build")
    if runner.failures:
        for i, (what, why) in enumerate(runner.failures):  # the first three in full, then one line each
            lines = why.splitlines()
            print(f"FAILED: {what}: " + "\n".join(lines if i < 3 else lines[:1])[:4000 if i < 3 else 300])
        print(f"tools_replay: {len(runner.failures)} of {runner.runs} runs failed")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
