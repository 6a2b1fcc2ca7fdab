"""The C unpacker's structural check (``check_structure`` in tflite_kernels/src/dc_unpack.c): a
damaged .tflite is refused before anything is unpacked, naming the field by its path, in the words
of dc_keras._flatbuffer's walk -- which refuses exactly the files LiteRT's verifier refuses
(tests/test_flatbuffer_verify.py). Before it, the tables ``dc_unpack`` copies without reading went
into its result unchecked and LiteRT refused that result only when an app loaded it ("The model is
not a valid Flatbuffer buffer", no field named)."""
import importlib.util
import os
import re
import struct
import subprocess

import numpy as np
import pytest

import _export_models as em
from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime
from test_flatbuffer_verify import _litert_verifier_refuses, _structure_positions, _tensor_name_terminator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR = os.path.join(ROOT, "tflite_kernels", "tools", "gen_tflite_layout.py")


@pytest.fixture(scope="module")
def files():
    plain = em.tflite("conv", None)
    return {"plain": plain, "packed": export.pack(plain)}


def _python(data):
    try:
        fb.check_model(data)
    except ValueError as e:
        return str(e)
    return None


def _c(data):
    try:
        runtime.unpack(data)
    except ValueError as e:
        return str(e)
    return None


def test_the_layout_header_is_the_schema_modules():
    """dc_tflite_layout.h is generated from the schema module dc_keras reads: a newer schema (a
    LiteRT or TensorFlow upgrade) fails this until the header is generated again."""
    spec = importlib.util.spec_from_file_location("gen_tflite_layout", GENERATOR)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    with open(gen.PATH) as f:
        assert f.read() == gen.header(), f"run: .venv/bin/python {os.path.relpath(GENERATOR, ROOT)}"


@pytest.mark.parametrize("name, bit", [("plain", 0), ("packed", 7)])
def test_single_bit_flips_are_refused_as_python_refuses_them_in_the_same_words(files, name, bit):
    """Every structure byte, one bit flipped: where the Python walk refuses, dc_unpack refuses with
    its message word for word (path, problem, fix); where it accepts, dc_unpack's own checks may
    still refuse (a schema version, an operator code, a packed tensor), never as a structural
    fault."""
    data, refused, disagree = files[name], 0, []
    for p in _structure_positions(data):
        d = bytearray(data)
        d[p] ^= 1 << bit
        py, c = _python(bytes(d)), _c(bytes(d))
        if py is not None:
            refused += 1
            if c != "dc_unpack: " + py:
                disagree.append((int(p), py, c))
        elif c is not None and re.match(r"dc_unpack: malformed \.tflite: [^;]*: (its |the model refers)", c):
            # a structural message where Python found none (dc_unpack's own, e.g. "HuffDecode(x): its
            # buffer 11 already holds other data", are not)
            disagree.append((int(p), py, c))
    assert not disagree, disagree[:5]
    assert refused > 250


def test_random_damage_and_truncation_are_refused_in_the_same_words(files):
    rng = np.random.default_rng(20261205)
    for name, data in files.items():
        positions = _structure_positions(data)
        cases = [data[:n] for n in range(16, len(data), 61)]  # under 16 bytes: not a .tflite (its own error)
        for _ in range(300):
            d = bytearray(data)
            p = int(rng.choice(positions[positions >= 8]))
            d[p:p + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
            cases.append(bytes(d[:len(data)]))
        refused = 0
        for d in cases:
            py, c = _python(d), _c(d)
            if py is not None:
                refused += 1
                assert c == "dc_unpack: " + py, (name, py, c)
        assert refused > 100, name


def test_a_table_the_unpacker_copies_unread_is_checked(files, tmp_path):
    """A plain tensor's name (dc_unpack copies it without reading it) without its 0 terminator:
    the unpacked result used to be written and LiteRT's verifier refused it at load; now the
    input is refused, the field named, and the CLI writes nothing."""
    packed = files["packed"]
    model = fb.read_model(packed)
    packed_outputs = {op.outputs[0] for op in model.subgraphs[0].operators
                      if fb.opcode_name(model, op) == "HuffDecode"}
    k = next(i for i in range(len(model.subgraphs[0].tensors)) if i not in packed_outputs)
    end = _tensor_name_terminator(packed, k)
    data = bytearray(packed)
    data[end] = ord("x")
    data = bytes(data)
    assert _litert_verifier_refuses(data)
    want = (f"dc_unpack: malformed .tflite: subgraphs[0].tensors[{k}].name: its string does not end in "
            f"a 0 byte (byte {end:,}); {fb.CORRUPT_FIX}")
    assert _c(data) == want
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels"), "tools"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    src, out = tmp_path / "bad.tflite", tmp_path / "out.tflite"
    src.write_bytes(data)
    r = subprocess.run([os.path.join(ROOT, "tflite_kernels", "build", "dc_unpack"), str(src), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and want[len("dc_unpack: "):] in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not out.exists() and src.read_bytes() == data


def test_a_wrong_table_size_is_read_as_the_runtime_reads_it(files):
    """A vtable's table-size entry is not checked by flatbuffers' verifier (nor by the Python walk):
    a file whose root vtable says 0 loads everywhere, and dc_unpack (which refused it) now unpacks
    it to the same bytes, that entry aside."""
    packed = files["packed"]
    root = int.from_bytes(packed[:4], "little")
    vt = root - int.from_bytes(packed[root:root + 4], "little", signed=True)
    assert int.from_bytes(packed[vt + 2:vt + 4], "little") > 0
    data = bytearray(packed)
    data[vt + 2:vt + 4] = b"\0\0"
    assert fb.check_model(bytes(data)) is True
    got, want = runtime.unpack(bytes(data)), runtime.unpack(packed)
    assert len(got) == len(want)
    diff = [i for i in range(len(got)) if got[i] != want[i]]
    assert diff and set(diff) <= {vt + 2, vt + 3}, diff


def test_every_table_is_walked_once_under_the_first_path_that_reaches_it(files):
    """A tensors vector whose entries all point at tensor 0 (how a hostile file makes a walk
    exponential): each (table, position) is visited once, under the first path pushed, by both
    walks -- tensor 0's damaged name is reported as tensors[0]'s (a walk that checked at pop time
    named the last entry, tensors[n - 1])."""
    data = bytearray(files["plain"])
    sg = fb.schema.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    o = sg._tab.Offset(4)  # SubGraph.tensors
    start, n = sg._tab.Vector(o), sg._tab.VectorLen(o)
    first = start + int.from_bytes(data[start:start + 4], "little")
    for i in range(1, n):  # every entry of the vector -> tensor 0
        at = start + 4 * i
        data[at:at + 4] = (first - at).to_bytes(4, "little")
    assert _python(bytes(data)) is None and _c(bytes(data)) is None  # sound, if useless
    end = _tensor_name_terminator(bytes(data), 0)
    data[end] = ord("x")
    py = _python(bytes(data))
    assert py.startswith("malformed .tflite: subgraphs[0].tensors[0].name: its string does not end"), py
    assert _c(bytes(data)) == "dc_unpack: " + py


def _shared_tensors_vector(m, n):
    """A model of ``m`` SubGraph tables that all refer to one ``tensors`` vector of ``n`` offsets to
    one Tensor table: ``m * n + m + 2`` references to tables (the Model and one Buffer too)."""
    import flatbuffers

    S = fb.schema
    b = flatbuffers.Builder(0)
    S.TensorStart(b)
    tensor = S.TensorEnd(b)
    S.SubGraphStartTensorsVector(b, n)
    for _ in range(n):
        b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    subgraphs = []
    for _ in range(m):
        S.SubGraphStart(b)
        S.SubGraphAddTensors(b, tensors)
        subgraphs.append(S.SubGraphEnd(b))
    S.ModelStartSubgraphsVector(b, m)
    for s in reversed(subgraphs):
        b.PrependUOffsetTRelative(s)
    subgraphs = b.EndVector()
    S.BufferStart(b)
    buffer = S.BufferEnd(b)
    S.ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(buffer)
    buffers = b.EndVector()
    S.ModelStart(b)
    S.ModelAddVersion(b, 3)
    S.ModelAddSubgraphs(b, subgraphs)
    S.ModelAddBuffers(b, buffers)
    b.Finish(S.ModelEnd(b), b"TFL3")
    return bytes(b.Output())


def test_a_shared_vector_is_walked_once_and_every_reference_counts_as_the_verifier_counts_it():
    """Tables sharing one vector of table offsets: both walks went through the vector once per
    referrer (a 1 MB file of 64,000 subgraphs sharing one 64,000-entry vector took 12.6 s in C, the
    Python walk ~18 min; helper-122's review); now once. And LiteRT's verifier reads at most
    1,000,000 tables, counting each reference: both walks refuse exactly past that, in the same
    words (before, they accepted such files, which LiteRT refuses)."""
    for m, n, loads in ((999, 999, True), (1000, 999, False), (1, 999997, True), (1, 999998, False)):
        data = _shared_tensors_vector(m, n)
        assert _litert_verifier_refuses(data) is not loads, (m, n)
        py, c = _python(data), _c(data)
        if loads:
            assert py is None and c is None, (m, n, py, c)
        else:
            assert py.startswith("malformed .tflite: subgraphs[") and "the model refers to tables more than 1,000,000 " \
                "times, the most TFLite's flatbuffer verifier reads" in py, py
            assert c == "dc_unpack: " + py


@pytest.mark.parametrize("offset, size", [(2, 2**64 - 1), (2**64 - 1, 2**64 - 1), (10**6, 5), (3, 2**63)])
def test_a_buffer_outside_the_file_is_named_with_its_exact_end(offset, size):
    """A Buffer whose offset and size (uint64) point past the file: the same message in C, whose end
    offset + size wrapped past 2^64 ("bytes 2..1", where Python said "bytes 2..18446744073709551617")."""
    base = fb.write_model(fb.read_model(em.tflite("dense", None)), buffers="external")
    root = fb.schema.Model.GetRootAs(base, 0)
    k = next(i for i in range(root.BuffersLength()) if root.Buffers(i).Offset() > 1)
    t = root.Buffers(k)._tab
    data = bytearray(base)
    struct.pack_into("<Q", data, t.Pos + t.Offset(6), offset)  # Buffer.offset
    struct.pack_into("<Q", data, t.Pos + t.Offset(8), size)  # Buffer.size
    data = bytes(data)
    py = _python(data)
    assert py.startswith(f"malformed .tflite: buffer {k} lies outside the file (bytes {offset}..{offset + size} of"), py
    assert _c(data) == "dc_unpack: " + py
