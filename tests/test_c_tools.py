"""The command-line tools in tflite_kernels/tools (``dc_decode``, ``dc_unpack``) as a C developer
runs them: ``--help``, exit codes, outputs written atomically with the umask's mode, inputs never
touched, one error line naming the problem and the fix.  (dc_unpack's unpacking itself:
tests/test_runtime_unpack.py.)"""
import functools
import os
import subprocess
import time

import numpy as np
import pytest

from dc_keras import codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "tflite_kernels", "build")



def _run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)


def _packed_tensor():
    array = np.repeat(np.arange(-8, 8, dtype=np.float32), 16).reshape(16, 16)
    return array, codec.encode(array)


@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_help_and_usage_errors(tools, name, tmp_path):
    """--help / -h print the usage on stdout and exit 0 (not "cannot read --help" or status 2);
    a wrong argument count prints it on stderr and exits 2."""
    for flag in ("--help", "-h"):
        r = _run([tools[name], flag], cwd=tmp_path)
        assert r.returncode == 0, (flag, r.stdout, r.stderr)
        assert r.stdout.startswith(f"usage: {name} ") and "PACKED" in r.stdout and r.stderr == ""
        assert "exit status" in r.stdout  # says what the exit codes mean
        text = " ".join(r.stdout.split())
        assert "copy it again from its source" in text and "newer format version" in text  # damage: the fix
    r = _run([tools[name]], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"usage: {name} ") and r.stdout == ""
    assert "--help" in r.stderr
    assert os.listdir(tmp_path) == []


def test_dc_decode_refuses_to_overwrite_its_input(tools, tmp_path):
    _, packed = _packed_tensor()
    src = tmp_path / "w.dcp"
    src.write_bytes(packed)
    os.link(src, tmp_path / "hard.dcp")
    os.symlink(src, tmp_path / "sym.dcp")
    for out in [src, tmp_path / "." / "w.dcp", tmp_path / "hard.dcp", tmp_path / "sym.dcp"]:
        r = _run([tools["dc_decode"], src, out])
        assert r.returncode == 1, (out, r.stdout)
        assert "same file as the input" in r.stderr and "choose a different output path" in r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
        assert src.read_bytes() == packed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.dcp", "sym.dcp", "w.dcp"]


def test_dc_decode_writes_atomically_with_the_umask(tools, tmp_path):
    array, packed = _packed_tensor()
    src = tmp_path / "w.dcp"
    src.write_bytes(packed)
    out = tmp_path / "w.raw"
    old = os.umask(0o027)
    try:
        r = _run([tools["dc_decode"], src, out])
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "dtype=0 shape=[16,16] bytes=1024\n"
    assert out.read_bytes() == array.astype("<f4").tobytes() and src.read_bytes() == packed
    assert (out.stat().st_mode & 0o777) == 0o640  # 0666 minus the umask
    # a failed decode leaves an existing output as it was, and no temporary file
    bad = bytearray(packed)
    bad[len(bad) // 2] ^= 0x10
    (tmp_path / "bad.dcp").write_bytes(bytes(bad))
    out.write_bytes(b"previous result")
    r = _run([tools["dc_decode"], tmp_path / "bad.dcp", out])
    assert r.returncode == 1 and "bad.dcp" in r.stderr and r.stderr.count("\n") == 1
    assert out.read_bytes() == b"previous result"
    # an unwritable output directory: one line naming the fix, nothing left behind
    r = _run([tools["dc_decode"], src, tmp_path / "no_dir" / "w.raw"])
    assert r.returncode == 1 and "its directory does not exist" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dcp", "w.dcp", "w.raw"]


def test_dc_decode_errors_name_the_fix(tools, tmp_path):
    """A missing input names the errno and the fix; a whole .tflite (the likeliest mistake: the
    tool takes one packed tensor) says so and points to dc_unpack."""
    r = _run([tools["dc_decode"], tmp_path / "missing.dcp", tmp_path / "o.raw"])
    assert r.returncode == 1 and "No such file" in r.stderr and "check the path" in r.stderr
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    r = _run([tools["dc_decode"], model, tmp_path / "o.raw"])
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "is a .tflite model, not a packed tensor" in r.stderr and "dc_unpack" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_check_abi_refuses_what_is_not_a_shared_library(tmp_path):
    """tools/arm/check_abi.py (docs/android.md: the portability check of the .so): the host
    library passes; --help prints the usage and checks nothing (it printed "ok --help": readelf
    took it as its own option); a missing file or a non-ELF file is a one-line FAIL naming the
    file, never a traceback or an "ok"."""
    import sys

    tool = os.path.join(ROOT, "tools", "arm", "check_abi.py")
    lib = os.path.join(BUILD, "libdc_huffdecode.so")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels")], check=True, timeout=600)
    r = _run([sys.executable, tool, lib])
    assert r.returncode == 0 and r.stdout == f"ok   {lib}\n", (r.stdout, r.stderr)
    r = _run([sys.executable, tool, "--help"])
    assert r.returncode == 0 and "Usage: ``check_abi.py LIB.so" in r.stdout and "ok" not in r.stdout.split()
    (tmp_path / "text.so").write_text("not an ELF file\n")
    for path, why in [(tmp_path / "missing.so", "no such file"), (tmp_path / "text.so", "not an ELF shared library")]:
        r = _run([sys.executable, tool, path])
        assert r.returncode == 1 and "Traceback" not in r.stderr, (path, r.stdout, r.stderr)
        assert r.stdout.startswith(f"FAIL {path}") and why in r.stdout, (path, r.stdout)


@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_a_device_as_input_is_refused_at_once(tools, name, tmp_path):
    """/dev/zero as PACKED: the tools read until memory ran out (here capped at 1 GB of address
    space so that the old behaviour cannot take the machine's memory), then blamed its size. A
    device is refused before reading, as dc-keras does ("a device, not a file")."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    r = subprocess.run([tools[name], "/dev/zero", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=60, preexec_fn=cap)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "/dev/zero: a device, not a file: give the path of a" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_outputs_are_written_as_dc_keras_writes_them(tools, name, tmp_path):
    """The C tools' output rules match dc-keras's (dc_keras/_fileio.py): a replaced OUT keeps its
    mode (a 0600 output stayed private, it became 0666 minus the umask), a symbolic link is written
    through (the link stays, its target gets the bytes), and a FIFO is refused with one line, left
    as it was (the rename had replaced it by a regular file; as root a device such as /dev/null
    would have gone the same way)."""
    import _export_models as em

    from dc_keras import export

    if name == "dc_decode":
        _, data = _packed_tensor()
    else:
        data = export.pack(em.tflite("dense", None))
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    out.chmod(0o600)
    r = _run([tools[name], src, out])
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() != b"old" and (out.stat().st_mode & 0o777) == 0o600
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target.name)
    r = _run([tools[name], src, link])
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and target.read_bytes() == out.read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = _run([tools[name], src, fifo])
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "is a FIFO, not a file" in r.stderr and str(fifo) in r.stderr, r.stderr
    assert os.path.exists(fifo) and not os.path.isfile(fifo)


@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_a_fifo_nothing_writes_to_is_refused_and_a_fed_one_is_read(tools, name, tmp_path):
    """A named FIFO as the input, with no process writing to it: the tools waited in fopen forever
    (dc-keras refuses it, s40). Now one line saying what to do, at once; a FIFO a writer feeds
    (``cat in > FIFO &`` started first or after) and an anonymous pipe (``<(cat in)``) still give
    the same bytes as the file."""
    import _export_models as em

    from dc_keras import export

    data = _packed_tensor()[1] if name == "dc_decode" else export.pack(em.tflite("dense", None))
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    r = _run([tools[name], src, tmp_path / "want"])
    assert r.returncode == 0, r.stderr
    want = (tmp_path / "want").read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = subprocess.run([tools[name], fifo, tmp_path / "out"], capture_output=True, text=True,
                       timeout=20)  # the old tools: TimeoutExpired
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"{fifo}: a FIFO (named pipe) that no process is writing to" in r.stderr, r.stderr
    assert "start the process writing the" in r.stderr and not (tmp_path / "out").exists()
    writer = subprocess.Popen(f"cat {src} > {fifo}", shell=True)  # waits in its open for a reader
    try:
        time.sleep(0.5)
        r = _run([tools[name], fifo, tmp_path / "out"])
    finally:
        writer.wait(timeout=30)
    assert r.returncode == 0 and (tmp_path / "out").read_bytes() == want, r.stderr
    r = subprocess.run(["bash", "-c", '"$0" <(cat "$1") "$2"', tools[name], src, tmp_path / "piped"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and (tmp_path / "piped").read_bytes() == want, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_a_replaced_output_keeps_its_owner_and_group(tools, name, tmp_path):
    """Run as root over a user's output (65534:65534), the tools gave the new file to root:root
    (dc-keras keeps both, s40); now the owner and group stay, with the mode."""
    data = _packed_tensor()[1] if name == "dc_decode" else None
    if data is None:
        import _export_models as em

        from dc_keras import export

        data = export.pack(em.tflite("dense", None))
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    os.chown(out, 65534, 65534)
    out.chmod(0o640)
    r = _run([tools[name], src, out])
    assert r.returncode == 0, r.stderr
    st = out.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o640) and out.read_bytes() != b"old"


@pytest.mark.parametrize("out_name", ["out.bin", "it's my out.bin"])
@pytest.mark.parametrize("name", ["dc_decode", "dc_unpack"])
def test_a_read_only_output_is_refused(tools, name, shared_dir, out_name):
    """A read-only OUT is refused as cp, gcc -o and zip refuse it, with one line naming the file,
    its mode and the fix, and left as it was (the rename replaced it). Run as `nobody` when the
    tests run as root (root may write any file: then it is replaced and keeps its mode). The fix's
    ``chmod u+w PATH`` quotes PATH as ``shlex.quote`` does, so it runs as pasted (session 49: it was
    printed bare, and ``it's my out.bin`` chmodded other names)."""
    import shlex

    import _export_models as em

    from dc_keras import export

    import pathlib

    shared = pathlib.Path(shared_dir)
    data = _packed_tensor()[1] if name == "dc_decode" else export.pack(em.tflite("dense", None))
    src = shared / "in.bin"
    src.write_bytes(data)
    src.chmod(0o644)
    out = shared / out_name
    out.write_bytes(b"keep me")
    out.chmod(0o444)
    root = os.geteuid() == 0
    if root:
        os.chown(out, 65534, 65534)
    r = _run([tools[name], src, out], preexec_fn=(lambda: os.setuid(65534)) if root else None)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"{out} is read-only (mode 0444)" in r.stderr, r.stderr
    assert f"(chmod u+w {shlex.quote(str(out))})" in r.stderr, r.stderr
    assert shlex.split(r.stderr.split("(chmod ")[1].split(") or")[0]) == ["u+w", str(out)]
    assert out.read_bytes() == b"keep me" and sorted(os.listdir(shared)) == sorted(["in.bin", out_name])
    if root:
        r = _run([tools[name], src, out])
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() != b"keep me" and (out.stat().st_mode & 0o777) == 0o444


# What dc_decode says to do about a damaged packed tensor file (tflite_kernels/tools/tool_packed.h):
# the words of dc_keras/_flatbuffer.py's CORRUPT_FIX and NEWER_FIX for a file dc_keras.codec.encode
# makes again (with the tools' own update). dc_unpack's come from the library (dc_unpack.h), as
# CORRUPT_FIX and NEWER_FIX themselves.
TENSOR_CORRUPT_FIX = ("the file is truncated or corrupt: encode it again (dc_keras.codec.encode) or copy it again "
                      "from its source")
NEWER = ("it was {made} by a newer dc_keras: update dc_keras and rebuild these tools from it (make -C "
         "tflite_kernels tools), or {redo} again with a version= this decoder reads (1 to "
         f"{codec._format.VERSIONS[-1]}, docs/FORMAT.md §10)")  # DC_VERSION_MAX


TENSOR_DAMAGES = ["truncated", "checksum", "bad magic", "newer version", "version 0", "unknown layout",
                  "layout of a later version", "unknown dtype"]
MODEL_DAMAGES = ["truncated tensor", "checksum", "bad magic", "newer version", "version 0", "unknown layout",
                 "HuffDecode op with two inputs", "output shape not the packed one", "packed shape not its size",
                 "truncated model"]


def _set(data, offset, value):
    bad = bytearray(data)
    bad[offset] = value
    return bytes(bad)


@functools.cache
def _damaged_tensors():
    """{damage class: (packed tensor bytes, problem as the decoder names it, fix)}."""
    _, good = _packed_tensor()
    good = bytes(good)
    newer = NEWER.format(made="encoded", redo="encode it")
    return {
        "truncated": (good[:-3], "truncated: the buffer is shorter than the sizes it declares", TENSOR_CORRUPT_FIX),
        "checksum": (_set(good, len(good) - 1, good[-1] ^ 0x10), "checksum mismatch: the packed data is corrupt",
                     TENSOR_CORRUPT_FIX),
        "bad magic": (b"XXXX" + good[4:], "not a packed tensor (bad magic)",
                      "give a packed tensor file (the bytes dc_keras.codec.encode returns); if it is one, it is "
                      "corrupt: encode it again or copy it again from its source"),
        "newer version": (_set(good, 4, 9), "unsupported packed tensor format version (newer than this decoder?): "
                          "it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads", newer),
        "version 0": (_set(good, 4, 0), "unsupported packed tensor format version (newer than this decoder?): "
                      "version 0 does not exist (the first is 1)", TENSOR_CORRUPT_FIX),
        "unknown layout": (_set(good, 7, 9), "unknown layout, or a layout parameter out of range (e.g. more "
                           "entries than elements)", TENSOR_CORRUPT_FIX),
        "layout of a later version": (_set(good, 7, 6), "unknown layout, or a layout parameter out of range (e.g. "
                                      "more entries than elements)", TENSOR_CORRUPT_FIX),
        "unknown dtype": (_set(good, 5, 99), "unknown element type (for this format version)", TENSOR_CORRUPT_FIX),
    }


@pytest.mark.parametrize("damage", TENSOR_DAMAGES)
def test_dc_decode_names_a_damaged_tensor_and_the_fix(tools, damage, tmp_path):
    """Each damage class of a packed tensor file: one line naming the file, the problem (the
    decoder's words, as dc_keras.codec.decode raises them) and the fix -- encode it again or copy
    it again; a newer format version: which decoder reads it and the update. Exit status 1, the
    output and the input untouched. (It printed the problem alone: "dc_decode: f.bin: checksum
    mismatch: the packed data is corrupt".)"""
    data, problem, fix = _damaged_tensors()[damage]
    with pytest.raises(codec.CorruptDataError) as e:  # Python's decoder names the same problem
        codec.decode(data)
    assert problem.startswith(str(e.value)), (str(e.value), problem)
    src, out = tmp_path / "bad.dcp", tmp_path / "out.raw"
    src.write_bytes(data)
    out.write_bytes(b"previous result")
    r = _run([tools["dc_decode"], src, out])
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr == f"dc_decode: {src}: {problem}; {fix}\n", r.stderr
    assert out.read_bytes() == b"previous result" and src.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.dcp", "out.raw"]


@functools.cache
def _damaged_models():
    """{damage class: (model bytes, the problem's words in dc_unpack's line, fix)}: a packed
    tensor inside the model damaged as _damaged_tensors damages one, and the model's own structure."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    import _export_models as em

    good = export.pack(em.tflite("dense", None))
    at = good.find(b"DCHF")

    def edit(change):
        m = fb.read_model(good)
        s, i, o = export._pack.packed_tensors(m)[0]
        change(m, m.subgraphs[s], i, o)
        return fb.write_model(m)

    def cut(m, sg, i, o):  # the packed tensor's last 3 bytes lost, its shape says so
        buf = m.buffers[sg.tensors[i].buffer]
        buf.data = np.frombuffer(bytes(fb.buffer_bytes(m, sg.tensors[i].buffer))[:-3], np.uint8)
        sg.tensors[i].shape = np.array([len(buf.data)], np.int32)

    def flip_end(m, sg, i, o):
        data = np.frombuffer(bytes(fb.buffer_bytes(m, sg.tensors[i].buffer)), np.uint8).copy()
        data[-1] ^= 0x10
        m.buffers[sg.tensors[i].buffer].data = data

    def two_inputs(m, sg, i, o):
        (op,) = [op for op in sg.operators if list(op.outputs) == [o]]
        op.inputs = np.array([i, i], np.int32)

    def out_shape(m, sg, i, o):
        sg.tensors[o].shape = sg.tensors[o].shape[::-1].copy()

    def shape_entry(m, sg, i, o):
        sg.tensors[i].shape = np.array([int(sg.tensors[i].shape[0]) - 1], np.int32)

    return {
        "truncated tensor": (edit(cut), "invalid packed tensor: truncated: the buffer is shorter than the sizes "
                             "it declares", fb.CORRUPT_FIX),
        "checksum": (edit(flip_end), "decoding failed: checksum mismatch: the packed data is corrupt",
                     fb.CORRUPT_FIX),
        "bad magic": (_set(good, at, ord("X")), "invalid packed tensor: not a packed tensor (bad magic)",
                      fb.CORRUPT_FIX),
        "newer version": (_set(good, at + 4, 9), "packed tensor not readable here: unsupported packed tensor "
                          "format version (newer than this decoder?): it is version 9, which only a decoder "
                          "with DC_VERSION_MAX >= 9 reads", fb.NEWER_FIX),
        "version 0": (_set(good, at + 4, 0), "invalid packed tensor: unsupported packed tensor format version "
                      "(newer than this decoder?): version 0 does not exist (the first is 1)", fb.CORRUPT_FIX),
        "unknown layout": (_set(good, at + 7, 9), "invalid packed tensor: unknown layout", fb.CORRUPT_FIX),
        "HuffDecode op with two inputs": (edit(two_inputs), "(HuffDecode): expected one input and one output",
                                          fb.CORRUPT_FIX),
        "output shape not the packed one": (edit(out_shape), "the packed data's dtype/shape do not match the "
                                            "tensor's", fb.CORRUPT_FIX),
        "packed shape not its size": (edit(shape_entry), "bytes, but its shape says", fb.CORRUPT_FIX),
        "truncated model": (good[: len(good) // 2], "malformed .tflite: ", fb.CORRUPT_FIX),
    }


@pytest.mark.parametrize("damage", MODEL_DAMAGES)
def test_dc_unpack_names_a_damaged_model_and_the_fix(tools, damage, tmp_path):
    """Each damage class of a packed model (a packed tensor truncated, bit-flipped, with a bad
    magic, a newer version, version 0 or an unknown layout; the HuffDecode op's tensors or the
    flatbuffer damaged): one line naming the file, the problem and the fix once, word for word
    dc_keras.runtime.unpack's (the same C library names the fix: Python's CORRUPT_FIX / NEWER_FIX);
    exit status 1, nothing written, the input untouched. (A refused packed tensor was printed
    without a fix: "dc_unpack: m.tflite: HuffDecode(W): decoding failed: checksum mismatch: the
    packed data is corrupt"; then with the tool's own, and a newer version's differed from
    runtime.unpack's.)"""
    from dc_keras import runtime

    data, problem, fix = _damaged_models()[damage]
    src, out = tmp_path / "bad.tflite", tmp_path / "out.tflite"
    src.write_bytes(data)
    out.write_bytes(b"previous result")
    r = _run([tools["dc_unpack"], src, out])
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    line = r.stderr
    assert line.count("\n") == 1 and line.startswith(f"dc_unpack: {src}: "), line
    assert problem in line and line.endswith(f"; {fix}\n") and line.count(fix) == 1, line
    assert out.read_bytes() == b"previous result" and src.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tflite", "out.tflite"]
    with pytest.raises(ValueError) as e:
        runtime.unpack(data)
    said = str(e.value)[len("dc_unpack: "):]
    assert line == f"dc_unpack: {src}: {said}\n", (line, said)  # the Python side's words, word for word


def _c_call(name, data):
    """(status, why) of the library's ``name`` (dc_unpack, dc_list_huffdecode or dc_align_packed)
    on ``data``, called through ctypes as an app calls the C API (no Python wording added)."""
    import ctypes

    from dc_keras import runtime

    runtime.load_library()  # built and checked
    lib = ctypes.CDLL(runtime.library_path())  # a handle of our own: its argtypes are ours
    fn = getattr(lib, name)
    size_args = [ctypes.c_size_t] if name == "dc_align_packed" else []  # the alignment
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, *size_args, ctypes.POINTER(ctypes.c_void_p),
                   ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    lib.dc_unpack_free.argtypes = [ctypes.c_void_p]  # free(): also for dc_list_huffdecode's list
    out, size, why = ctypes.c_void_p(), ctypes.c_size_t(0), ctypes.create_string_buffer(512)
    status = fn(data, len(data), *([64] if size_args else []), ctypes.byref(out), ctypes.byref(size), why,
                len(why))
    assert status == 0 or not out.value, (name, status)
    lib.dc_unpack_free(out)
    return status, why.value.decode()


@pytest.mark.parametrize("damage", MODEL_DAMAGES)
def test_the_library_names_a_damaged_packed_models_fix_once(damage):
    """The C library's own ``why`` (dc_unpack, and dc_list_huffdecode / dc_align_packed, which the
    LiteRT kernel and compiled_model call) names the problem and the fix exactly once, in the
    Python side's words (CORRUPT_FIX, NEWER_FIX): an app calling the C API gets them without
    dc_keras. (A refused packed tensor or HuffDecode op, DC_UNPACK_BAD_PACKED, had no fix:
    "HuffDecode(W): decoding failed: checksum mismatch: the packed data is corrupt".)"""
    from dc_keras import _flatbuffer as fb

    data, problem, fix = _damaged_models()[damage]
    for name in ("dc_unpack", "dc_list_huffdecode", "dc_align_packed"):
        status, why = _c_call(name, data)
        if name != "dc_unpack" and damage == "checksum":  # found by decoding, which these do not do
            assert status == 0, (name, why)
            continue
        assert status in (1, 2), (name, status, why)  # DC_UNPACK_MALFORMED, DC_UNPACK_BAD_PACKED
        assert problem in why and why.endswith(f"; {fix}") and why.count(fix) == 1, (name, why)
        assert all(f not in why for f in (fb.CORRUPT_FIX, fb.NEWER_FIX) if f != fix), (name, why)
