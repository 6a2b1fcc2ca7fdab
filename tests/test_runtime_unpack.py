"""On-device unpack (C ``dc_unpack``, ``dc_keras.runtime.unpack``), its CLI, and packed models
through LiteRT's ``CompiledModel`` (``dc_keras.runtime.compiled_model``)."""
import functools
import os
import re
import subprocess

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSTM = os.path.join(ROOT, "tests", "data", "zoo_lstm128.packed.tflite")


def _packed(kind, quantize=None):
    return export.pack(em.tflite(kind, quantize))


def _models():
    with open(LSTM, "rb") as f:
        lstm = f.read()
    return {"dense": _packed("dense"), "conv_int8": _packed("conv", "int8"), "lstm": lstm}


def _tensor_bytes(model_bytes):
    """{(subgraph, tensor name): constant bytes} of every tensor with data."""
    model = fb.read_model(model_bytes)
    out = {}
    for s, sg in enumerate(model.subgraphs):
        for t in sg.tensors or []:
            data = fb.buffer_bytes(model, t.buffer) if t.buffer > 0 else b""
            out[(s, fb.tensor_name(t))] = bytes(data)
    return out


def _ops(model_bytes):
    model = fb.read_model(model_bytes)
    return [[fb.opcode_name(model, op) for op in sg.operators or []] for sg in model.subgraphs]


@pytest.mark.parametrize("name", ["dense", "conv_int8", "lstm"])
def test_c_unpack_matches_python_unpack(name):
    packed = _models()[name]
    c, py = runtime.unpack(packed), export.unpack(packed)
    assert _ops(c) == _ops(py)  # the same operators in the same order, no HuffDecode left
    tc, tp = _tensor_bytes(c), _tensor_bytes(py)
    for key, data in tp.items():
        assert tc[key] == data, key  # every tensor of the Python result, same bytes
    extra = {k for k in tc if k not in tp}  # the packed tensors, now unused constants
    # nameless (pack since 2026-11-30) or "<name>/dc_packed" (the older LSTM fixture)
    assert extra and all(k[1] == "" or k[1].endswith(export._pack.PACKED_SUFFIX) for k in extra), extra
    assert runtime.unpack(c) == c  # nothing left to unpack: an identical copy
    # the same metadata entries (name, bytes) and signatures (names of inputs/outputs) in both;
    # their bytes differ by design (FORMAT.md §15: C patches a copy, Python rewrites)
    assert _metadata(c) == _metadata(py) and _metadata(c)
    assert _signatures(c) == _signatures(py)
    assert c != py


def _metadata(model_bytes):
    model = fb.read_model(model_bytes)
    return [(m.name, fb.buffer_bytes(model, m.buffer)) for m in model.metadata or []]


def _signatures(model_bytes):
    """{signature key: ([(input name, tensor name)], [(output name, tensor name)])}."""
    model = fb.read_model(model_bytes)
    out = {}
    for sig in model.signatureDefs or []:
        tensors = model.subgraphs[sig.subgraphIndex].tensors
        out[sig.signatureKey] = tuple([(m.name, fb.tensor_name(tensors[m.tensorIndex])) for m in maps or []]
                                      for maps in (sig.inputs, sig.outputs))
    return out


@pytest.mark.parametrize("kind,quantize", [("dense", None), ("conv", "int8")])
def test_c_unpacked_model_runs_bit_identical(kind, quantize):
    from ai_edge_litert.interpreter import Interpreter

    plain = em.tflite(kind, quantize)
    c = runtime.unpack(export.pack(plain))
    xs = em.inputs(kind, 4)
    if quantize:
        from ai_edge_litert.interpreter import Interpreter as I  # noqa: N814

        det = I(model_content=plain).get_input_details()[0]
        if det["dtype"] != np.float32:
            scale, zp = det["quantization"]
            xs = np.clip(np.round(xs / scale + zp), -128, 127).astype(det["dtype"])
    want = em.run(Interpreter(model_content=plain), xs)
    got = em.run(Interpreter(model_content=c), xs)
    np.testing.assert_array_equal(got, want)


def test_unpack_errors_are_clear():
    with pytest.raises(ValueError, match="not a .tflite"):
        runtime.unpack(b"\x00\x01")
    packed = bytearray(_models()["dense"])
    model = fb.read_model(bytes(packed))
    raw = max((bytes(fb.buffer_bytes(model, model.subgraphs[0].tensors[p].buffer))
               for _, p, _ in export._pack.packed_tensors(model)), key=len)
    at = bytes(packed).index(raw)
    packed[at + len(raw) // 2] ^= 0xFF  # corrupt the payload of one packed tensor
    with pytest.raises(ValueError, match=r"HuffDecode\(.*\): (decoding failed|invalid packed)") as e:
        runtime.unpack(bytes(packed))
    assert str(e.value).endswith(fb.CORRUPT_FIX), str(e.value)  # the fix, as the Interpreter names it
    with pytest.raises(ValueError, match=r"^model_content: dc_unpack: HuffDecode\(.*\): decoding failed.*"
                                         + re.escape(fb.CORRUPT_FIX) + "$"):
        runtime.compiled_model(model_content=bytes(packed))
    good = _models()["dense"]
    # another file identifier or schema version: refused as export.unpack refuses them (dc_unpack
    # gave back a file no runtime loads, exit 0)
    with pytest.raises(ValueError, match=r'^dc_unpack: not a \.tflite flatbuffer \(file identifier 58585858, '
                                         r'not "TFL3"\); give a packed \.tflite'):
        runtime.unpack(good[:4] + b"XXXX" + good[8:])
    model = fb.read_model(good)
    model.version = 4
    other = fb.write_model(model)
    with pytest.raises(ValueError, match="schema version 4, not 3; " + re.escape(fb.CORRUPT_FIX)):
        runtime.unpack(other)
    with pytest.raises(ValueError, match="unsupported .tflite schema version 4"):
        export.unpack(other)
    # bytes-like inputs only (bytes(5) made 5 zero bytes of an int, a list became bytes)
    assert runtime.unpack(bytearray(good)) == runtime.unpack(memoryview(good)) == runtime.unpack(good)
    for wrong in (5, [1, 2], None, "m.tflite"):
        with pytest.raises(TypeError, match=f"expected packed .tflite content as bytes, got {type(wrong).__name__}"):
            runtime.unpack(wrong)
    for n in range(0, len(good), max(1, len(good) // 97)):  # every truncation: an error, no crash
        try:
            runtime.unpack(good[:n])
        except ValueError as e:
            assert str(e).startswith("dc_unpack: ") and len(str(e)) > 12
            if "malformed .tflite" in str(e):  # names the fix, as dc_keras._flatbuffer does
                assert str(e).endswith(fb.CORRUPT_FIX), str(e)


def test_unpack_names_the_fix_of_a_damaged_huffdecode_op_once():
    """A HuffDecode op with two inputs, or an output whose shape is not its packed data's: runtime.unpack
    said the problem alone ("subgraph 0 operator 0 (HuffDecode): expected one input and one output",
    "HuffDecode(W): the packed data's dtype/shape do not match the tensor's"), where export.unpack and
    the dc_unpack tool name the fix. Now the C library names it (one mapping for every caller), once,
    as export.unpack words it; and a packed tensor of a newer format version names its version."""
    good = _models()["dense"]

    def edit(change):
        m = fb.read_model(good)
        s, i, o = export._pack.packed_tensors(m)[0]
        change(m.subgraphs[s], i, o)
        return fb.write_model(m)

    def two_inputs(sg, i, o):
        (op,) = [op for op in sg.operators if list(op.outputs) == [o]]
        op.inputs = np.array([i, i], np.int32)

    def out_shape(sg, i, o):
        sg.tensors[o].shape = sg.tensors[o].shape[::-1].copy()

    cases = {"expected one input and one output": edit(two_inputs),
             "the packed data's dtype/shape do not match the tensor's": edit(out_shape)}
    for problem, bad in cases.items():
        with pytest.raises(ValueError) as e:
            runtime.unpack(bad)
        msg = str(e.value)
        assert msg.startswith("dc_unpack: ") and f"{problem}; {fb.CORRUPT_FIX}" in msg, msg
        assert msg.endswith(fb.CORRUPT_FIX) and msg.count(fb.CORRUPT_FIX) == 1, msg
        with pytest.raises(ValueError) as e:  # the pure-Python unpacker names the same fix
            export.unpack(bad)
        assert str(e.value).endswith(fb.CORRUPT_FIX) and str(e.value).count(fb.CORRUPT_FIX) == 1, str(e.value)
    at = good.find(b"DCHF")
    for version, says, fix in ((9, "it is version 9, which only a decoder with DC_VERSION_MAX >= 9 reads", fb.NEWER_FIX),
                               (0, "version 0 does not exist (the first is 1)", fb.CORRUPT_FIX)):
        bad = good[:at + 4] + bytes([version]) + good[at + 5:]
        with pytest.raises(ValueError) as e:
            runtime.unpack(bad)
        msg = str(e.value)
        assert f"format version (newer than this decoder?): {says}; {fix}" in msg and msg.endswith(fix), msg
        assert msg.count(fb.CORRUPT_FIX) + msg.count(fb.NEWER_FIX) == 1, msg
        for route in (export.unpack, export.inspect):  # the Python routes (their header parser's words):
            with pytest.raises(ValueError) as e:  # version 0 said "upgrade dc_keras" there
                route(bad)
            msg = str(e.value)
            if version:
                assert "version 9" in msg and msg.endswith(("upgrade dc_keras", fb.NEWER_FIX)), msg
                assert fb.CORRUPT_FIX not in msg and msg.count(fb.NEWER_FIX) <= 1, msg
            else:
                assert "version 0 does not exist (the first is 1)" in msg and msg.endswith(fb.CORRUPT_FIX), msg
                assert "upgrade" not in msg and msg.count(fb.CORRUPT_FIX) == 1, msg


def test_cli_writes_atomically_and_reports_errors(tmp_path):
    tool = os.path.join(ROOT, "tflite_kernels", "build", "dc_unpack")
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels"), "tools"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    src = tmp_path / "m.packed.tflite"
    src.write_bytes(_models()["dense"])
    before = src.read_bytes()
    out = tmp_path / "m.tflite"
    old = os.umask(0o027)
    try:
        r = subprocess.run([tool, str(src), str(out)], capture_output=True, text=True, timeout=60)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == runtime.unpack(before) and src.read_bytes() == before
    assert (out.stat().st_mode & 0o777) == 0o640  # 0666 minus the umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.packed.tflite", "m.tflite"]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    r = subprocess.run([tool, str(bad), str(tmp_path / "x.tflite")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "not a .tflite" in r.stderr
    assert not (tmp_path / "x.tflite").exists()
    assert subprocess.run([tool], capture_output=True, timeout=60).returncode == 2


def _compiled_run(cm, x):
    ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)
    ins[0].write(x)
    cm.run_by_index(0, ins, outs)
    sig = list(cm.get_signature_list())[0]
    det = list(cm.get_output_tensor_details(sig).values())[0]
    return outs[0].read(int(np.prod(det["shape"])), np.dtype(det["dtype"]))


def test_compiled_model_runs_packed_bit_identical(tmp_path):
    from ai_edge_litert.compiled_model import CompiledModel

    plain = em.tflite("dense", None)
    packed = tmp_path / "m.packed.tflite"
    packed.write_bytes(export.pack(plain))
    unpacked = tmp_path / "m.tflite"
    unpacked.write_bytes(plain)
    x = em.inputs("dense", 1)
    want = _compiled_run(CompiledModel.from_file(str(unpacked)), x)
    got = _compiled_run(runtime.compiled_model(str(packed)), x)
    np.testing.assert_array_equal(got, want)
    got2 = _compiled_run(runtime.compiled_model(model_content=packed.read_bytes()), x)
    np.testing.assert_array_equal(got2, want)
    with pytest.raises(ValueError, match="exactly one"):
        runtime.compiled_model()


def test_compiled_model_reads_the_model_for_sparse_tensors_only_after_a_failure(monkeypatch):
    """compiled_model walked the whole flatbuffer for int8 TFLite sparse tensors at every load (to
    decide whether to name them in its errors; the schema module alone costs ~25 ms to import), as
    Interpreter does only after a failure. Now it looks only when a call fails with LiteRT's "Failed
    to allocate tensors" / "Failed to invoke" (test_sparse_tensors_runtime checks that message); a model
    that runs is never scanned, and runs as before."""
    pytest.importorskip("ai_edge_litert.compiled_model")
    scans = []
    real = runtime._sparse_tensors
    monkeypatch.setattr(runtime, "_sparse_tensors", lambda *a: scans.append(1) or real(*a))
    plain = em.tflite("dense", None)
    x = em.inputs("dense", 1)
    got = _compiled_run(runtime.compiled_model(model_content=export.pack(plain)), x)
    assert not scans
    from ai_edge_litert.compiled_model import CompiledModel

    np.testing.assert_array_equal(got, _compiled_run(CompiledModel.from_buffer(plain), x))


def test_compiled_model_and_unpack_path_errors_name_the_file_and_fix(tmp_path):
    """As Interpreter(model_path=...): a missing path, a directory, a non-.tflite and a corrupt
    packed file are named with the fix; unpack(path) says to read the file."""
    (tmp_path / "notes.tflite").write_text("not a model\n")
    packed = bytearray(_models()["dense"])
    packed[len(packed) - 64] ^= 0xFF  # in the packed data at the file's tail
    (tmp_path / "bad.packed.tflite").write_bytes(bytes(packed))
    for name, err, match in (("missing.tflite", FileNotFoundError, "missing.tflite: no such file: check the path"),
                             ("", IsADirectoryError, "is a directory: give the path of a .tflite file"),
                             ("notes.tflite", ValueError, "notes.tflite: not a .tflite model"),
                             ("bad.packed.tflite", ValueError, r"bad.packed.tflite: dc_unpack: HuffDecode\(")):
        with pytest.raises(err, match=match):
            runtime.compiled_model(str(tmp_path / name))
    for path in ("m.packed.tflite", tmp_path / "notes.tflite"):
        with pytest.raises(TypeError, match=r"got (str|PosixPath): read the file first"):
            runtime.unpack(path)


@functools.lru_cache(maxsize=None)  # seeded, bytes: built once per process (several tests read it)
def _embedding_tflite():
    import keras

    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(500, 32)])
    em.cluster_and_prune(m)
    return export.to_tflite(m, pack=False)


def test_custom_op_kernel_on_compiled_model_c_api(tmp_path):
    """HuffDecode as a LiteRT custom op kernel (LiteRtAddCustomOpKernelOption) via libLiteRt.so."""
    from ai_edge_litert.compiled_model import CompiledModel

    from dc_keras.runtime._litert_c import CustomOpCompiledModel

    plain = _embedding_tflite()  # GATHER: no arithmetic on the weights -> exact on any kernel
    packed = export.pack(plain)
    assert "HuffDecode" in sum(_ops(packed), [])
    (tmp_path / "e.tflite").write_bytes(plain)
    ids = np.random.RandomState(0).randint(0, 500, size=(1, 6)).astype(np.int32)
    want = _compiled_run(CompiledModel.from_file(str(tmp_path / "e.tflite")), ids)
    m = CustomOpCompiledModel(packed)
    for _ in range(2):  # the decoded weights are copied in on every run
        (got,) = m.run(ids)
        np.testing.assert_array_equal(got.ravel(), want)
    m.close()
    plain_fc = em.tflite("dense", None)  # FC: dynamic-weight kernel, summation order differs
    (tmp_path / "d.tflite").write_bytes(plain_fc)
    x = em.inputs("dense", 1)
    want = _compiled_run(CompiledModel.from_file(str(tmp_path / "d.tflite")), x)
    (got,) = CustomOpCompiledModel(export.pack(plain_fc)).run(x)
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-5, atol=1e-6)
    bad = bytearray(packed)
    model = fb.read_model(packed)
    raw = max((bytes(fb.buffer_bytes(model, model.subgraphs[0].tensors[p].buffer))
               for _, p, _ in export._pack.packed_tensors(model)), key=len)
    at = packed.index(raw)
    bad[at + len(raw) // 2] ^= 0xFF
    with pytest.raises(ValueError, match=r"HuffDecode\(.*\): (decoding failed|invalid packed)"):
        CustomOpCompiledModel(bytes(bad))


def test_custom_op_compiled_model_refuses_inputs_of_another_dtype_or_shape():
    """CustomOpCompiledModel.run cast its inputs with np.asarray(x, dtype).reshape(shape): float ids
    into an int32 GATHER were truncated and a (6,) array took the (1, 6) input without a word. As
    TFLite's set_tensor, a dtype or shape other than the model's is one error naming both."""
    from dc_keras.runtime._litert_c import CustomOpCompiledModel

    m = CustomOpCompiledModel(export.pack(_embedding_tflite()))
    ids = np.random.RandomState(0).randint(0, 500, size=(1, 6)).astype(np.int32)
    with pytest.raises(ValueError, match=r"input 0: got a float64 array, the model takes int32: pass x.astype\(np.int32\)"):
        m.run(ids + 0.7)
    with pytest.raises(ValueError, match=r"input 0: got shape \(6,\), the model takes \(1, 6\)"):
        m.run(ids.ravel())
    (got,) = m.run(ids)  # still runs after the refusals
    assert got.shape[:2] == (1, 6)
    m.close()


def _signature_zero_in_subgraph_one():
    """Two signatures, each a GATHER of its own clustered table: 'embed' (subgraph 0, one int32
    input) and 'other' (subgraph 1, a gather plus a float input); the converter lists them by key,
    so the signature list is reversed here: signature 0 is 'other', whose tensor indices are those
    of subgraph 1 (the schema allows any order; LiteRT runs signature 0 as the file lists it)."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    values = rng.normal(size=16).astype(np.float32)
    t1, t2 = (tf.constant(values[rng.integers(0, 16, shape)]) for shape in ((500, 32), (300, 48)))

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 6), tf.int32, name="ids")])
        def embed(self, ids):
            return {"vec": tf.gather(t1, ids)}

        @tf.function(input_signature=[tf.TensorSpec((2, 3), tf.int32, name="tok"),
                                      tf.TensorSpec((2, 3, 48), tf.float32, name="bias")])
        def other(self, tok, bias):
            return {"sum": tf.gather(t2, tok) + bias}

    two = Two()
    model = fb.read_model(tf.lite.TFLiteConverter.from_concrete_functions(
        [two.embed.get_concrete_function(), two.other.get_concrete_function()], two).convert())
    model.signatureDefs = model.signatureDefs[::-1]
    return fb.write_model(model)


def test_custom_op_compiled_model_runs_signature_zero_of_another_subgraph():
    """CustomOpCompiledModel read signature 0's tensor indices in subgraph 0 (IndexError here, or
    the wrong shapes and types where the indices exist there); they are its own subgraph's."""
    from ai_edge_litert.interpreter import Interpreter

    from dc_keras.runtime._litert_c import CustomOpCompiledModel

    plain = _signature_zero_in_subgraph_one()
    model = fb.read_model(plain)
    assert [(s.signatureKey, s.subgraphIndex) for s in model.signatureDefs] == [(b"other", 1), (b"embed", 0)]
    packed = export.pack(plain)
    assert [ops.count("HuffDecode") for ops in _ops(packed)] == [1, 1]  # both tables packed
    rng = np.random.default_rng(0)
    tok = rng.integers(0, 300, (2, 3)).astype(np.int32)
    bias = rng.normal(size=(2, 3, 48)).astype(np.float32)
    want = Interpreter(model_content=plain).get_signature_runner("other")(tok=tok, bias=bias)["sum"]
    (got,) = CustomOpCompiledModel(packed).run(bias, tok)  # the signature's order: bias, tok
    np.testing.assert_array_equal(got, want)
    bad = fb.read_model(packed)
    bad.signatureDefs[0].subgraphIndex = 2
    with pytest.raises(ValueError, match=r"signature 0 \('other', subgraph 2\): the model has 2 subgraph\(s\), "
                                         r"so the file is corrupt; export the model again"):
        CustomOpCompiledModel(fb.write_model(bad))


def _tool():
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels"), "tools"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return os.path.join(ROOT, "tflite_kernels", "build", "dc_unpack")


def test_cli_refuses_to_overwrite_its_input(tmp_path):
    tool = _tool()
    src = tmp_path / "m.packed.tflite"
    src.write_bytes(_models()["dense"])
    before = src.read_bytes()
    os.link(src, tmp_path / "hard.tflite")
    os.symlink(src, tmp_path / "sym.tflite")
    for out in [src, tmp_path / "." / "m.packed.tflite", tmp_path / "hard.tflite",
                tmp_path / "sym.tflite"]:
        r = subprocess.run([tool, str(src), str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, (out, r.stdout)
        assert "same file as the input" in r.stderr and "choose a different output path" in r.stderr
        assert r.stderr.count("\n") == 1
        assert src.read_bytes() == before and (tmp_path / "hard.tflite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.tflite", "m.packed.tflite",
                                                          "sym.tflite"]


def test_cli_refuses_a_model_without_packed_tensors(tmp_path):
    tool = _tool()
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(em.tflite("dense", None))
    r = subprocess.run([tool, str(plain), str(tmp_path / "out.tflite")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert "is not packed" in r.stderr and "nothing to unpack" in r.stderr
    assert not (tmp_path / "out.tflite").exists()


def test_cli_errors_name_the_fix(tmp_path):
    tool = _tool()
    good = _models()["dense"]
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(good[: len(good) // 2])  # truncated: tables point past the end
    r = subprocess.run([tool, str(bad), str(tmp_path / "o.tflite")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "malformed .tflite" in r.stderr, r.stderr
    assert r.stderr.strip().endswith(fb.CORRUPT_FIX)
    bad.write_bytes(b"not a model")
    r = subprocess.run([tool, str(bad), str(tmp_path / "o.tflite")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "not a .tflite" in r.stderr and "dc-keras pack" in r.stderr
    assert not (tmp_path / "o.tflite").exists()


def n_ops(model_bytes):
    return sum(len(ops) for ops in _ops(model_bytes))


def _packed_payload(packed):
    """(packed data bytes, number of packed buffers) of a packed model."""
    model = fb.read_model(packed)
    bufs = {model.subgraphs[s].tensors[p].buffer for s, p, _ in export._pack.packed_tensors(model)}
    return sum(len(fb.buffer_bytes(model, b)) for b in bufs), len(bufs)


def _run_all(model_bytes, xs):
    """Outputs under LiteRT and TF's interpreter (both must agree bit for bit)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    a = em.run(Interpreter(model_content=model_bytes), xs)
    b = em.run(tf.lite.Interpreter(model_content=model_bytes), xs)
    np.testing.assert_array_equal(a, b)
    return a


def _inputs_for(plain, kind):
    from ai_edge_litert.interpreter import Interpreter

    xs = em.inputs(kind, 4)
    det = Interpreter(model_content=plain).get_input_details()[0]
    if det["dtype"] != np.float32:
        scale, zp = det["quantization"]
        xs = np.clip(np.round(xs / scale + zp), -128, 127).astype(det["dtype"])
    return xs


@pytest.mark.parametrize("kind,quantize", [("conv", None), ("conv", "int8"), ("dense", None)])
def test_c_unpack_drops_the_packed_data_and_runs_bit_identical(kind, quantize):
    """pack writes the packed data vectors as the file's last bytes (FORMAT.md §15), so dc_unpack
    cuts them off: its output is dc_keras.export.unpack's size plus only the packing tables left
    in place (<= ~100 B per packed tensor) and its appended Buffer tables, not the packed payload
    (docs/results/unpack_sizes.json: MobileNetV2-0.35 +4,768 B; a file of the older layout keeps its
    payload: +12,464 B). Both unpacked files, the C one under LiteRT
    and TF's interpreter, give the original model's outputs bit for bit."""
    plain = em.tflite(kind, quantize)
    packed = export.pack(plain)
    payload, n = _packed_payload(packed)
    model = fb.read_model(packed)
    tail = [packed.rindex(fb.buffer_bytes(model, model.subgraphs[s].tensors[p].buffer))
            for s, p, _ in export._pack.packed_tensors(model)]
    assert min(tail) >= len(packed) - payload - 7 * n  # the packed data are the file's tail
    c, py = runtime.unpack(packed), export.unpack(packed)
    extra = len(c) - len(py)
    assert 0 < extra <= (100 + 27) * n + 64 < payload, (extra, payload, n)
    cm = fb.read_model(c)
    for s, p, o in export._pack.packed_tensors(model):  # packed tensors left without data,
        assert fb.buffer_bytes(cm, cm.subgraphs[s].tensors[p].buffer) == b""  # decoded ones full
        assert fb.buffer_bytes(cm, cm.subgraphs[s].tensors[o].buffer) == fb.buffer_bytes(
            fb.read_model(py), next(t.buffer for t in fb.read_model(py).subgraphs[s].tensors
                                    if t.name == model.subgraphs[s].tensors[o].name))
    assert runtime.unpack(c) == c
    xs = _inputs_for(plain, kind)
    want = _run_all(plain, xs)
    for unpacked in (c, py):
        np.testing.assert_array_equal(_run_all(unpacked, xs), want)


def _offset(model_bytes, b):
    """Buffer ``b``'s Buffer.offset field (> 1: its data are stored after the flatbuffer)."""
    return fb.schema.Model.GetRootAs(model_bytes, 0).Buffers(b).Offset()


@pytest.mark.parametrize("min_bytes", [256, 4096], ids=["all_packed", "biases_stay_external"])
def test_c_unpack_drops_packed_data_stored_after_the_flatbuffer(min_bytes):
    """A model packed with its data after the flatbuffer (``buffers="external"``, what ``"auto"``
    keeps for files of ai-edge-quantizer style past 256 KiB) has the packed data as the file's
    last bytes too (16-byte aligned, Buffer.offset/size): dc_unpack kept them as unused constants,
    its output 2,160,704 B against export.unpack's 2,102,080 B (58,624 B: the whole packed
    payload); now it cuts them off like inline ones. With biases left unpacked (min_bytes=4096)
    their data stay after the flatbuffer, before the cut. Outputs bit-identical to the original."""
    from _benchmarks import load as load_bench

    plain = load_bench("bench_scale").build(2, 256, buffers="external")
    packed = export.pack(plain, buffers="external", min_bytes=min_bytes)
    payload, n = _packed_payload(packed)
    model = fb.read_model(packed)
    packed_buffers = {model.subgraphs[s].tensors[p].buffer for s, p, _ in export._pack.packed_tensors(model)}
    assert all(_offset(packed, b) > 1 for b in packed_buffers)  # packed data after the flatbuffer
    c, py = runtime.unpack(packed), export.unpack(packed)
    extra = len(c) - len(py)
    assert 0 < extra <= (100 + 27) * n + 64 < payload, (extra, payload, n)
    cm, pm = fb.read_model(c), fb.read_model(py)
    kept_external = [b for b in range(len(cm.buffers)) if _offset(c, b) > 1]
    assert len(kept_external) == (0 if min_bytes == 256 else 2)  # unpacked biases: still after it
    for s, p, o in export._pack.packed_tensors(model):
        assert fb.buffer_bytes(cm, cm.subgraphs[s].tensors[p].buffer) == b""
        name = model.subgraphs[s].tensors[o].name
        assert fb.buffer_bytes(cm, cm.subgraphs[s].tensors[o].buffer) == fb.buffer_bytes(
            pm, next(t.buffer for t in pm.subgraphs[s].tensors if t.name == name))
    assert runtime.unpack(c) == c
    xs = np.random.RandomState(0).rand(3, 256).astype(np.float32)
    want = _run_all(plain, xs)
    for unpacked in (c, py):
        np.testing.assert_array_equal(_run_all(unpacked, xs), want)


def test_c_unpack_of_an_older_layout_keeps_the_packed_data():
    """Files packed before the tail layout (the LSTM fixture): the packed data are not the last
    bytes, so dc_unpack keeps them as unused constants (no rewrite on the device) and appends."""
    with open(LSTM, "rb") as f:
        packed = f.read()
    payload, n = _packed_payload(packed)
    c, py = runtime.unpack(packed), export.unpack(packed)
    assert payload <= len(c) - len(py) <= payload + (300 + 27) * n + 64  # older files: names, tables
    tc, tp = _tensor_bytes(c), _tensor_bytes(py)
    assert all(tc[k] == v for k, v in tp.items())


def test_cli_io_errors_name_the_fix(tmp_path):
    """dc_unpack's read/write errors say what to do, as dc-keras's do (a directory as OUT is
    refused before decoding)."""
    tool = _tool()
    src = tmp_path / "m.packed.tflite"
    src.write_bytes(_models()["dense"])
    (tmp_path / "afile").write_bytes(b"x")
    cases = [((tmp_path / "missing.tflite", tmp_path / "o.tflite"), "check the path of the packed .tflite"),
             ((tmp_path, tmp_path / "o.tflite"), "give the path of a .tflite file"),
             ((src, tmp_path / "no_dir" / "o.tflite"), "its directory does not exist: create it first"),
             ((src, tmp_path / "afile" / "o.tflite"), "choose an output path in an existing directory"),
             ((src, tmp_path), "give a file name for the output")]
    for (a, b), fix in cases:
        r = subprocess.run([tool, str(a), str(b)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and fix in r.stderr and r.stderr.count("\n") == 1, (a, b, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m.packed.tflite"]
