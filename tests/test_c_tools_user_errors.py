"""Review s44 of the C command-line tools (tflite_kernels/tools): what a user's slip must not do.

- dc_decode's line for a damaged packed tensor printed an uninitialized stack buffer after the
  decoder's text (garbage bytes, or a read past the buffer when it held no NUL);
- an OUT that is another pair's PACKED (``dc_decode a.dcp b.dcp b.dcp c.raw``) or an existing
  packed tensor file (``dc_decode *.dcp`` over two files) was overwritten with raw decoded bytes;
- an empty path decoded the tensor, then failed to write it with "its directory does not exist";
  "-" wrote a file named "-" (the tools have no standard input/output mode).
"""
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from dc_keras import codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "tflite_kernels")
PACKED_MODEL = os.path.join(ROOT, "tests", "data", "conv_int8_tail.packed.tflite")


def _run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, timeout=60, **kw)


def _packed(scale=1.0):
    array = (np.repeat(np.arange(-8, 8, dtype=np.float32), 16).reshape(16, 16) * scale).astype(np.float32)
    return array, codec.encode(array)


def test_a_damaged_tensors_line_holds_no_uninitialized_bytes(tools, tmp_path):
    """dc_decode built with every uninitialized stack variable filled with a pattern (0xFE bytes,
    no NUL: what was there before is anyone's guess) prints exactly the decoder's text and the fix
    for a truncated tensor; the old code printed the pattern, read past the buffer, after it."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    assert cc, "a C compiler (cc, or $CC) is needed"
    build = os.path.dirname(tools["dc_decode"])
    exe = tmp_path / "dc_decode_pattern"
    probe = _run([cc, "-ftrivial-auto-var-init=pattern", "-x", "c", "-c", "-o", os.devnull, "-"],
                 input=b"int x;\n")
    if probe.returncode != 0:
        pytest.skip(f"{cc} has no -ftrivial-auto-var-init=pattern (gcc >= 12, clang >= 8)")
    r = _run([cc, "-std=c99", "-O2", "-ftrivial-auto-var-init=pattern", "-I", os.path.join(KERNELS, "include"),
              "-o", exe, os.path.join(KERNELS, "tools", "dc_decode.c"), "-L", build, "-ldc_huffdecode",
              f"-Wl,-rpath,{build}"])
    assert r.returncode == 0, r.stderr.decode()
    _, packed = _packed()
    src = tmp_path / "t.dcp"
    expected_fix = ("the file is truncated or corrupt: encode it again (dc_keras.codec.encode) or copy it again "
                    "from its source")
    for n in (0, 10, 100, len(packed) - 1):
        src.write_bytes(packed[:n])
        for tool in (exe, tools["dc_decode"]):
            r = _run([tool, src, tmp_path / "out"])
            assert r.returncode == 1, (n, r.stderr)
            assert r.stderr == (f"dc_decode: {src}: truncated: the buffer is shorter than the sizes it declares; "
                                f"{expected_fix}\n").encode(), (n, r.stderr)
            assert not (tmp_path / "out").exists()


def test_an_output_that_is_another_pairs_packed_input_is_refused(tools, tmp_path):
    a, b = tmp_path / "a.dcp", tmp_path / "b.dcp"
    a.write_bytes(_packed()[1])
    b_bytes = _packed(2.0)[1]
    for argv in ([a, b, b, tmp_path / "c.raw"],             # b.dcp overwritten before it was read
                 [a, tmp_path / "x.raw", b, a],              # a.dcp overwritten after it was read
                 [a, tmp_path / "x.raw", a, tmp_path / "y.raw", b, tmp_path / "y" / ".." / "a.dcp"]):
        b.write_bytes(b_bytes)
        (tmp_path / "y").mkdir(exist_ok=True)
        r = _run([tools["dc_decode"]] + argv, text=True)
        assert r.returncode == 1, (argv, r.stdout, r.stderr)
        assert "is the packed input" in r.stderr and "choose a different output path" in r.stderr, r.stderr
        assert "nothing was written" in r.stderr and r.stderr.count("\n") == 1 and r.stdout == ""
        assert a.read_bytes() == _packed()[1] and b.read_bytes() == b_bytes
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcp", "b.dcp", "y"]  # no pair written


def test_an_output_holding_a_packed_tensor_is_refused(tools, tmp_path):
    """``dc_decode *.dcp`` over a.dcp and b.dcp: b.dcp is the OUT of a.dcp's pair by position; it
    is kept, not replaced by a.dcp's raw bytes with status 0. An OUT holding anything else (an
    earlier decode's raw bytes, a 3-byte file) is replaced as before."""
    array, packed = _packed()
    a, b = tmp_path / "a.dcp", tmp_path / "b.dcp"
    a.write_bytes(packed)
    b.write_bytes(_packed(2.0)[1])
    r = _run([tools["dc_decode"], a, b], text=True)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "holds a packed tensor" in r.stderr and f"remove {b} first" in r.stderr and "did an OUT go missing" in r.stderr
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert b.read_bytes() == _packed(2.0)[1]
    raw = array.astype("<f4").tobytes()
    for previous in (b"DCH", raw, b"other bytes"):
        b.write_bytes(previous)
        r = _run([tools["dc_decode"], a, b], text=True)
        assert r.returncode == 0, r.stderr
        assert b.read_bytes() == raw and a.read_bytes() == packed


@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_an_empty_path_or_dash_is_a_usage_error(tools, name, tmp_path):
    src = tmp_path / "in"
    src.write_bytes(_packed()[1] if name == "dc_decode" else open(PACKED_MODEL, "rb").read())
    before = src.read_bytes()
    for argv, n, what in (([src, ""], 2, "empty path"), (["", "out"], 1, "empty path"),
                          ([src, "-"], 2, '"-"'), (["-", "out"], 1, '"-"')):
        r = _run([tools[name]] + argv, cwd=tmp_path, text=True)
        assert r.returncode == 2, (argv, r.stdout, r.stderr)
        assert r.stderr.startswith(f"{name}: argument {n} is ") and what in r.stderr, r.stderr
        assert "give the path of a file" in r.stderr and r.stderr.count("\n") == 1 and r.stdout == ""
        assert sorted(os.listdir(tmp_path)) == ["in"] and src.read_bytes() == before
    # ./- is a file named -
    r = _run([tools[name], src, "./-"], cwd=tmp_path, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "-").stat().st_size > 0


# examples/multi_worker.py's worker mode (one per host, docs/multi_worker.md)
SCRIPT = os.path.join(ROOT, "examples", "multi_worker.py")


def _worker(worker_id, coordinator, tmp_path, timeout=3):
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, SCRIPT, "--workers", "2", "--worker-id", str(worker_id), "--coordinator",
                           coordinator, "--work-dir", str(tmp_path), "--timeout", str(timeout), "--samples", "256"],
                          capture_output=True, text=True, errors="backslashreplace", timeout=300, env=env)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_refuses_a_coordinator_jax_would_crash_on(tmp_path):
    """No port, a port that is no number or out of range: exit 2 naming HOST:PORT (JAX: IndexError,
    a segmentation fault, a wait of --timeout and an abort)."""
    for address in ("localhost", "127.0.0.1:abc", "127.0.0.1:99999", ":123"):
        r = _worker(0, address, tmp_path)
        assert r.returncode == 2, (address, r.returncode, r.stderr[-2000:])
        assert f"--coordinator {address!r} is not HOST:PORT" in r.stderr and "give worker 0's host" in r.stderr
    assert os.listdir(tmp_path) == []


def test_multi_worker_names_a_taken_coordinator_port(tmp_path):
    """A port another program listens on, for worker 0 (which runs the coordinator): exit 2 naming
    the port (JAX: "Failed to add port to server", then a segmentation fault)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _worker(0, f"127.0.0.1:{port}", tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert f"port {port} of --coordinator 127.0.0.1:{port} is in use" in r.stderr and "choose another port" in r.stderr
    assert os.listdir(tmp_path) == []


def test_a_lone_worker_says_what_it_waits_for(tmp_path):
    """Worker 1 started without worker 0: JAX aborts after --timeout with "another task died", which
    names neither the missing worker nor the fix; the worker said both first."""
    r = _worker(1, f"127.0.0.1:{_free_port()}", tmp_path, timeout=2)
    assert r.returncode != 0, r.stderr[-2000:]
    first = r.stderr.splitlines()[0]
    assert first.startswith("worker 1 of 2: joining the job at 127.0.0.1:") and "waiting up to 2 s" in first, r.stderr
    assert "start every worker, --worker-id 0 to 1, with the same --workers and --coordinator" in first


def test_multi_worker_refuses_a_work_dir_it_cannot_make(tmp_path):
    """--work-dir naming a file, or a path through one: exit 2 naming it, in both modes (the launcher
    died of a FileExistsError / NotADirectoryError traceback; a worker joined the job first)."""
    (tmp_path / "file").write_bytes(b"kept")
    for work_dir, why in ((tmp_path / "file", "it is a file"), (tmp_path / "file" / "sub", "Not a directory")):
        for mode in ([], ["--worker-id", "1", "--coordinator", "127.0.0.1:1234"]):
            r = subprocess.run([sys.executable, SCRIPT, "--workers", "2", "--work-dir", str(work_dir)] + mode,
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 2, (work_dir, mode, r.stderr[-2000:])
            assert f"--work-dir {work_dir}: cannot make it a directory ({why})" in r.stderr, r.stderr[-2000:]
            assert "Traceback" not in r.stderr
    assert (tmp_path / "file").read_bytes() == b"kept"
