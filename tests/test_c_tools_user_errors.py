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
import subprocess

import numpy as np
import pytest

import _cbuild
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
    r = _cbuild.build(cc, ["-std=c99", "-O2", "-ftrivial-auto-var-init=pattern", "-I", os.path.join(KERNELS, "include")],
                      [os.path.join(KERNELS, "tools", "dc_decode.c")], exe,
                      ldflags=["-L", build, "-ldc_huffdecode", f"-Wl,-rpath,{build}"])
    assert r.returncode == 0, r.stderr
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

