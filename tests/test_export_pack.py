"""dc_keras.export.pack / unpack / inspect / to_tflite, checked through the public API."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb

ROUTES = [("litert", "delegate"), ("tensorflow", "delegate"), ("tensorflow", "op")]
QUANT = [None, "float16", "int8"]


def _ops(model_bytes):
    m = fb.read_model(model_bytes)
    return m, [[fb.opcode_name(m, op) for op in sg.operators] for sg in m.subgraphs]


@pytest.mark.parametrize("quantize", QUANT)
@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("backend,decode", ROUTES)
def test_packed_outputs_bit_identical(kind, quantize, backend, decode):
    plain = em.tflite(kind, quantize)
    packed = export.pack(plain)
    assert len(packed) < len(plain)
    assert any("HuffDecode" in names for names in _ops(packed)[1])
    xs = em.inputs(kind, 40, seed=11)
    resolver = em.no_default_delegates(backend)
    ref = em.run(em.reference_interpreter(backend, plain, experimental_op_resolver_type=resolver), xs)
    got = em.run(runtime.Interpreter(model_content=packed, backend=backend, decode=decode,
                                     experimental_op_resolver_type=resolver), xs)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("quantize", QUANT)
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_delegate_route_keeps_xnnpack_bit_identical_with_default_options(kind, quantize):
    """Default options (XNNPACK on): the delegate hands decoded weights back as constants, so
    XNNPACK takes the same layers as in the unpacked model and the outputs stay identical."""
    plain = em.tflite(kind, quantize)
    packed = export.pack(plain)
    xs = em.inputs(kind, 20, seed=3)
    ref = em.run(em.reference_interpreter("litert", plain), xs)
    got = em.run(runtime.Interpreter(model_content=packed, backend="litert"), xs)
    np.testing.assert_array_equal(got, ref)


def _quant(q):
    """Quantization parameters as the runtimes read them: None for no table or an empty one."""
    if q is None:
        return None
    fields = {f: getattr(q, f) for f in ("scale", "zeroPoint", "min", "max")}
    fields = {f: np.asarray(v).tolist() for f, v in fields.items() if v is not None and len(v)}
    if not fields and q.details is None:
        return None
    return fields, q.quantizedDimension, q.detailsType


@pytest.mark.parametrize("quantize", QUANT)
def test_pack_structure_names_order_alignment(quantize):
    plain = em.tflite("conv", quantize)
    packed = export.pack(plain)
    before, after = fb.read_model(plain), fb.read_model(packed)
    assert len(after.subgraphs) == len(before.subgraphs)
    sg0, sg1 = before.subgraphs[0], after.subgraphs[0]
    # Original tensors keep their index, name, type, shape and quantization.
    for i, t in enumerate(sg0.tensors):
        u = sg1.tensors[i]
        assert (fb.tensor_name(u), u.type, list(u.shape)) == (fb.tensor_name(t), t.type, list(t.shape))
        assert _quant(t.quantization) == _quant(u.quantization)  # an empty table = none (compact)
    # Each HuffDecode: uint8 1-D constant input, output = an original constant, before its consumers.
    decoded = 0
    for j, op in enumerate(sg1.operators):
        if fb.opcode_name(after, op) != "HuffDecode":
            continue
        decoded += 1
        (p,), (o,) = list(op.inputs), list(op.outputs)
        pt = sg1.tensors[p]
        assert pt.type == fb.schema.TensorType.UINT8 and len(pt.shape) == 1
        assert len(fb.buffer_bytes(after, pt.buffer)) == pt.shape[0]
        assert o < len(sg0.tensors) and fb.buffer_bytes(before, sg0.tensors[o].buffer)
        assert fb.buffer_bytes(after, sg1.tensors[o].buffer) == b""
        consumers = [k for k, op2 in enumerate(sg1.operators) if o in list(op2.inputs)]
        assert consumers and min(consumers) > j
    assert decoded >= 2
    # Non-HuffDecode operators are unchanged and in the same order.
    names0 = [fb.opcode_name(before, op) for op in sg0.operators]
    names1 = [fb.opcode_name(after, op) for op in sg1.operators if fb.opcode_name(after, op) != "HuffDecode"]
    assert names0 == names1
    # The packed tensors are nameless (FORMAT.md §15); every non-empty buffer starts on a 16-byte
    # boundary of the file, a packed one (read only by the decoder, at any offset) on a 4-byte one.
    pairs = export._pack.packed_tensors(after)
    assert len(pairs) == decoded and all(sg1.tensors[p].name is None for _, p, _ in pairs)
    packed_buffers = {sg1.tensors[p].buffer for _, p, _ in pairs}
    root = fb.schema.Model.GetRootAs(packed, 0)
    for i in range(root.BuffersLength()):
        b = root.Buffers(i)
        if b.DataLength():
            start = b._tab.Vector(b._tab.Offset(4))
            assert start % (4 if i in packed_buffers else 16) == 0, (i, start)
    # and pack()'s docstring says so (it said "Buffer data in the output is 16-byte aligned")
    doc = " ".join(export.pack.__doc__.split())
    assert "the data of every buffer left raw is 16-byte aligned, and a packed tensor's data 4-byte aligned" in doc


@pytest.mark.parametrize("quantize", QUANT)
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_unpack_restores_every_tensor(kind, quantize):
    plain = em.tflite(kind, quantize)
    back = export.unpack(export.pack(plain))
    a, b = fb.read_model(plain), fb.read_model(back)
    assert [fb.opcode_name(a, op) for op in a.subgraphs[0].operators] == \
           [fb.opcode_name(b, op) for op in b.subgraphs[0].operators]
    assert not any(fb.is_huffdecode_code(c) for c in b.operatorCodes)
    for sa, sb in zip(a.subgraphs, b.subgraphs):
        assert len(sa.tensors) == len(sb.tensors)
        for ta, tb in zip(sa.tensors, sb.tensors):
            assert fb.tensor_name(ta) == fb.tensor_name(tb)
            assert (ta.type, list(ta.shape)) == (tb.type, list(tb.shape))
            assert fb.buffer_bytes(a, ta.buffer) == fb.buffer_bytes(b, tb.buffer)
        for oa, ob in zip(sa.operators, sb.operators):
            assert list(oa.inputs) == list(ob.inputs) and list(oa.outputs) == list(ob.outputs)
    # compact (the default) lets activation tensors share buffer 0; without it every buffer stays
    assert len(b.buffers) < len(a.buffers)
    assert len(fb.read_model(export.unpack(export.pack(plain, compact=False))).buffers) == len(a.buffers)
    # and the unpacked file runs like the original
    xs = em.inputs(kind, 5)
    r = em.no_default_delegates("litert")
    np.testing.assert_array_equal(
        em.run(em.reference_interpreter("litert", back, experimental_op_resolver_type=r), xs),
        em.run(em.reference_interpreter("litert", plain, experimental_op_resolver_type=r), xs))


def test_pack_twice_is_refused_and_unpack_of_plain_is_identity():
    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    with pytest.raises(ValueError, match="already packed"):
        export.pack(packed)
    assert export.unpack(plain) == plain


def test_unclustered_tensors_use_the_lossless_float_layout():
    """Codec v2: an unclustered float kernel (10^4 distinct values) packs with the float-planes
    layout (FORMAT.md §12, exponent/byte planes) when that saves min_saving, bit-exact; format
    version 1 has no such layout and leaves it raw."""
    import keras

    from dc_keras import codec

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((100,)), keras.layers.Dense(100), keras.layers.Dense(50)])
    w = m.layers[1].kernel.numpy()
    m.layers[1].kernel.assign(np.round(w * 4) / 4)  # only the second layer is clustered
    plain = export.to_tflite(m, pack=False)

    def layouts(packed):
        model = fb.read_model(packed)
        sg, out = model.subgraphs[0], {}
        for op in sg.operators:
            if fb.opcode_name(model, op) == "HuffDecode":
                t = sg.tensors[int(op.outputs[0])]
                out[tuple(t.shape)] = codec.info(fb.buffer_bytes(model, sg.tensors[int(op.inputs[0])].buffer))["layout"]
        return out

    packed = export.pack(plain)
    got = layouts(packed)
    assert got[(100, 100)] == "float_planes" and got[(50, 100)] != "float_planes"
    assert _tensors(export.unpack(packed)) == _tensors(plain)
    assert (100, 100) not in layouts(export.pack(plain, version=1))
    # nothing saves 50 % (or, in version 1, nothing is clustered): the model comes back unchanged
    m2 = keras.Sequential([keras.Input((100,)), keras.layers.Dense(100)])
    plain2 = export.to_tflite(m2, pack=False)
    assert export.pack(plain2, min_saving=0.5) == plain2
    assert export.pack(plain2, version=1) == plain2


def _tensors(data):
    m = fb.read_model(data)
    return [(fb.tensor_name(t), list(t.shape), fb.buffer_bytes(m, t.buffer)) for t in m.subgraphs[0].tensors]


def test_min_bytes():
    plain = em.tflite("dense", None)
    assert export.pack(plain, min_bytes=10**9) == plain
    small = export.pack(plain, min_bytes=0)
    assert len(small) <= len(export.pack(plain))
    with pytest.raises(ValueError):
        export.pack(plain, min_bytes=-1)


def test_min_saving_keeps_nearly_incompressible_tensors_raw():
    plain = em.tflite("dense", None)
    assert export.pack(plain, min_saving=0.999) == plain
    loose, strict = fb.read_model(export.pack(plain, min_saving=0.0)), fb.read_model(export.pack(plain, min_saving=0.85))
    count = [sum(fb.opcode_name(m, op) == "HuffDecode" for op in m.subgraphs[0].operators) for m in (loose, strict)]
    assert count[0] >= count[1]
    for bad in (-0.1, 1.0, "0.5"):
        with pytest.raises(ValueError, match="min_saving"):
            export.pack(plain, min_saving=bad)


def test_malformed_tflite_gives_value_error():
    plain = em.tflite("dense", None)
    with pytest.raises(ValueError, match="not a .tflite"):
        export.pack(b"")
    with pytest.raises(ValueError, match="not a .tflite"):
        export.pack(b"\x00" * 64)
    with pytest.raises(ValueError):
        export.pack(plain[: len(plain) // 3])
    with pytest.raises(TypeError):
        export.pack("model.tflite")
    for fn in (export.unpack, export.inspect):
        with pytest.raises(ValueError):
            fn(b"garbage garbage garbage")
    rng = np.random.RandomState(0)
    for _ in range(40):  # random byte corruption: a ValueError or a valid result, nothing else
        data = bytearray(plain)
        for pos in rng.randint(8, len(data), size=rng.randint(1, 20)):
            data[pos] = rng.randint(256)
        try:
            out = export.pack(bytes(data))
        except ValueError:
            continue
        assert out[4:8] == b"TFL3"


def _corrupt_first_packed(packed, how):
    model = fb.read_model(packed)
    sg = model.subgraphs[0]
    ops = [op for op in sg.operators if fb.opcode_name(model, op) == "HuffDecode"]
    if how == "flip":
        buf = model.buffers[sg.tensors[int(ops[0].inputs[0])].buffer]
        data = np.array(buf.data, np.uint8)
        data[len(data) // 2:] ^= 0x5A
        buf.data = data
    elif how == "not_uint8":
        sg.tensors[int(ops[0].inputs[0])].type = fb.schema.TensorType.INT8
    elif how == "not_1d":
        t = sg.tensors[int(ops[0].inputs[0])]
        t.shape = [1, int(t.shape[0])]
    elif how == "not_constant":
        sg.tensors[int(ops[0].inputs[0])].buffer = 0
    elif how == "swap":  # two packed tensors of different shapes exchange their inputs
        a, b = ops[0], next(op for op in ops[1:]
                            if list(sg.tensors[int(op.outputs[0])].shape) != list(sg.tensors[int(ops[0].outputs[0])].shape))
        a.inputs, b.inputs = list(b.inputs), list(a.inputs)
    return fb.write_model(model)


CORRUPTIONS = {
    "flip": r"HuffDecode\(.+\): decoding failed: \w",
    "swap": r"HuffDecode\(.+\): packed (dim|rank|dtype) .*(does not match|but the output)",
    "not_uint8": r"HuffDecode\(.+\): packed input .* must be uint8",
    "not_1d": r"HuffDecode\(.+\): packed input .* must be 1-D",
    "not_constant": r"HuffDecode\(.+\): packed input .* must be a constant",
}


@pytest.mark.long  # corruption in make test: test_corruption.py's op-route sweep, the C tests, the sanitizer replays
def test_corrupted_packed_models_fail_prepare_with_reason(tmp_path):
    packed = export.pack(em.tflite("dense", None))
    paths = {}
    for how in CORRUPTIONS:
        bad = _corrupt_first_packed(packed, how)
        with pytest.raises(ValueError, match="HuffDecode"):
            export.unpack(bad)
        paths[how] = tmp_path / f"{how}.tflite"
        paths[how].write_bytes(bad)
    with pytest.raises(ValueError, match="invalid"):
        export.inspect(paths["flip"].read_bytes())
    with pytest.raises(ValueError, match=r"packed data is float32\[.*\] but the tensor is float32\[.*no runtime loads"):
        export.inspect(paths["swap"].read_bytes())  # it said nothing (found by an audit)
    # In subprocesses (one per backend): a crash must not take pytest down, and fails the test.
    for backend in ("litert", "tensorflow"):
        routes = [r for r in ROUTES if r[0] == backend]
        code = textwrap.dedent(f"""
            from dc_keras import runtime
            for how, path in {dict((k, str(v)) for k, v in paths.items())!r}.items():
                for backend, decode in {routes!r}:
                    try:  # the CRC fails at construction, other corruption at allocate_tensors()
                        it = runtime.Interpreter(model_path=path, backend=backend, decode=decode)
                        it.allocate_tensors()
                    except RuntimeError as e:
                        print(how, backend, decode, "ERROR:", str(e).replace("\\n", " "), flush=True)
                    else:
                        print(how, backend, decode, "NO ERROR", flush=True)
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(lines) == len(routes) * len(CORRUPTIONS), proc.stdout + proc.stderr[-2000:]
        for line in lines:
            how = line.split()[0]
            assert "ERROR:" in line and re.search(CORRUPTIONS[how], line), line
            # the model named, the fix given, not TFLite's "...300Node number 3 (HuffDecode) failed"
            assert str(paths[how]) in line and "corrupt" in line and "Node number" not in line, line


def test_inspect_report_and_plot(tmp_path):
    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    rp, rq = export.inspect(plain), export.inspect(packed)
    assert not rp.packed and rq.packed
    assert {r.status for r in rq.rows} >= {"packed"}
    assert [r.name for r in rp.rows if r.status == "packable"] == [r.name for r in rq.rows if r.status == "packed"]
    assert rq.raw_total == rp.raw_total and rq.packed_total == rp.packed_total < rp.raw_total
    kernel = max(rq.rows, key=lambda r: r.raw_bytes)
    assert 0 < kernel.density < 1 and 1 < kernel.distinct <= 17
    text = str(rq)
    assert "HuffDecode" not in text and kernel.name[-20:] in text and "packed" in text
    rq.plot(tmp_path / "sizes.png")
    assert (tmp_path / "sizes.png").stat().st_size > 1000


def test_to_tflite_arguments_and_atomic_write(tmp_path):
    model = em.keras_model("dense")
    with pytest.raises(ValueError, match="quantize"):
        export.to_tflite(model, quantize="int4")
    with pytest.raises(ValueError, match="representative_data"):
        export.to_tflite(model, quantize="int8")
    out = tmp_path / "m.tflite"
    data = export.to_tflite(model, path=out)
    assert out.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]
    assert export.unpack(data) != data  # it is packed


@pytest.mark.parametrize("options", [
    {"strip_strings": True, "layouts": ("dense", "sparse"), "version": 2, "min_saving": 0.2, "compact": False,
     "verify": False},
    {"decoder": "minimal", "buffers": "external", "min_saving": 0.05},
], ids=["strings-layouts-version", "minimal-external"])
def test_to_tflite_pack_options_give_the_bytes_pack_gives(options, tmp_path):
    """to_tflite(pack_options=...) packs with exactly those pack arguments: byte for byte the file
    pack(to_tflite(pack=False), **options) makes, not the default packing; the dict is not modified."""
    model = em.keras_model("dense")
    given = dict(options)
    path = tmp_path / "m.tflite"
    data = export.to_tflite(model, path=path, min_bytes=128, pack_options=options)
    assert options == given
    plain = export.to_tflite(model, pack=False, pack_options={})  # empty: no contradiction with pack=False
    assert data == export.pack(plain, min_bytes=128, **options) == path.read_bytes()
    assert data != export.pack(plain, min_bytes=128)  # the options changed the file
    assert export.unpack(data) == export.unpack(export.pack(plain, min_bytes=128, **options))
    # a generator of layout names is read once, not consumed by the check before the packing
    if "layouts" in options:
        again = dict(options, layouts=(name for name in options["layouts"]))
        assert export.to_tflite(model, min_bytes=128, pack_options=again) == data


@pytest.mark.parametrize("kwargs,says", [
    ({"pack_options": {"strip_string": True}}, r"unknown pack_options key\(s\) \['strip_string'\]: the valid keys "
     r"are \['verify', 'min_saving', 'version', 'strip_strings', 'buffers', 'context_model', 'compact', 'layouts', "
     r"'decoder'\]"),
    ({"pack_options": {"min_bytes": 64}}, r"min_bytes is given in pack_options \({'min_bytes': 64}\), but it is "
     r"to_tflite's own argument: give it once, as to_tflite\(\.\.\., min_bytes=64\)"),
    ({"pack_options": {"positive_zeros": True}, "positive_zeros": True}, "positive_zeros is given in pack_options"),
    ({"pack_options": {"strip_strings": True}, "pack": False}, r"given with pack=False, which does not pack"),
    ({"pack_options": [("strip_strings", True)]}, "pack_options must be a dict"),
    ({"pack_options": {"decoder": "tiny"}}, r"to_tflite: decoder must be None .* got 'tiny'"),
    ({"pack_options": {"strip_strings": "yes"}}, r"to_tflite: strip_strings must be True or False, got 'yes'"),
    ({"pack_options": {"layouts": ("dense", "huffman")}}, r"unknown layout name\(s\) 'huffman'"),
    ({"pack_options": {"decoder": "minimal", "layouts": ("float_planes",)}}, r"reads only layouts"),
    ({"pack_options": {"version": 6}}, r"version must be None"),
    ({"pack_options": {"version": 2.0}}, r"version must be None.*got 2\.0"),  # failed after converting
    ({"min_bytes": -1}, r"to_tflite: min_bytes must be a non-negative int, got -1"),
    ({"per_channel": "no"}, r"per_channel must be None .* True or False, got 'no'"),  # was read as True
])
def test_to_tflite_pack_options_are_checked_before_converting(kwargs, says):
    """A bad pack option is one ValueError naming it (the valid keys, the fix) before the
    conversion starts: the converter hook is never reached."""
    reached = []
    with pytest.raises(ValueError, match=says):
        export.to_tflite(em.keras_model("dense"), configure=reached.append, **kwargs)
    assert not reached


@pytest.mark.long  # the C harnesses are fuzzed in test-long too (fuzz-smoke); corruption sweeps: test_corruption
def test_fuzzed_packed_models_never_crash(tmp_path):
    """Random byte flips inside the packed buffers: unpack raises ValueError or gives the exact
    original data; loading through the delegate and the op either fails with a reason or runs."""
    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    model = fb.read_model(packed)
    sg = model.subgraphs[0]
    packed_buffers = [sg.tensors[int(op.inputs[0])].buffer for op in sg.operators
                      if fb.opcode_name(model, op) == "HuffDecode"]
    rng = np.random.RandomState(1)
    paths = []
    for trial in range(24):
        m = fb.read_model(packed)
        b = packed_buffers[trial % len(packed_buffers)]
        data = np.array(m.buffers[b].data, np.uint8)
        for pos in rng.randint(0, len(data), size=rng.randint(1, 4)):
            data[pos] ^= rng.randint(1, 256)
        m.buffers[b].data = data
        bad = fb.write_model(m)
        try:
            back = export.unpack(bad)
        except ValueError:
            pass
        else:  # the checksum let it through only if the content is intact
            assert export.unpack(packed) == back
        path = tmp_path / f"fuzz{trial}.tflite"
        path.write_bytes(bad)
        paths.append(str(path))
    code = textwrap.dedent(f"""
        import numpy as np
        from dc_keras import runtime
        for path in {paths!r}:
            for backend, decode in [("litert", "delegate"), ("tensorflow", "op")]:
                try:  # the CRC fails at construction, other corruption at allocate_tensors()
                    it = runtime.Interpreter(model_path=path, backend=backend, decode=decode)
                    it.allocate_tensors()
                except RuntimeError as e:
                    assert "HuffDecode" in str(e), str(e)
                    print("error")
                else:
                    print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert proc.stdout.split().count("error") + proc.stdout.split().count("ok") == 2 * len(paths)
    assert "error" in proc.stdout.split()


def test_fuzzed_packed_file_bytes_give_value_error_or_result():
    packed = export.pack(em.tflite("conv", None))
    rng = np.random.RandomState(2)
    for _ in range(30):
        data = bytearray(packed)
        for pos in rng.randint(8, len(data), size=rng.randint(1, 12)):
            data[pos] = rng.randint(256)
        for fn in (export.unpack, export.inspect):
            try:
                fn(bytes(data))
            except ValueError:
                pass


def _sparse_tflite(block, quantize=None):
    """Converter's EXPERIMENTAL_SPARSITY output of a pruned, clustered MLP (blocks of 1x4 along the
    input dimension if ``block``: then FULLY_CONNECTED reads the sparse tensor itself)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(4)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(48, activation="relu"), keras.layers.Dense(8)])
    em.cluster_and_prune(m, levels=8, prune=0.0)
    rng = np.random.RandomState(0)
    for layer in m.layers:
        k = layer.kernel.numpy()
        keep = rng.rand(k.shape[0] // 4 if block else k.shape[0], k.shape[1]) < 0.15
        k = k * (np.repeat(keep, 4, axis=0) if block else keep)
        layer.kernel.assign(k)
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] + ([tf.lite.Optimize.DEFAULT] if quantize else [])
    return bytes(conv.convert()), m


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_tflite_sparse_tensors_read_by_densify_are_packed_bit_exact(quantize):
    from dc_keras.export import _sparse

    plain, keras_model = _sparse_tflite(block=False, quantize=quantize)
    before = fb.read_model(plain)
    assert [fb.opcode_name(before, op) for op in before.subgraphs[0].operators].count("DENSIFY") == 2
    # densify() reproduces the Keras kernels (transposed: TFLite FC weights are [out, in]; a sparse
    # tensor stores no -0.0, DENSIFY writes +0.0 there too)
    if quantize is None:
        dense = sorted((d.shape, d.tobytes()) for _, _, d in _sparse.densify_plans(before, 0))
        want = sorted((k.T.shape, np.ascontiguousarray(k.T + np.float32(0)).tobytes())  # -0 -> +0
                      for k in (layer.kernel.numpy() for layer in keras_model.layers))
        assert dense == want
    rep = export.inspect(plain)
    assert [r.status for r in rep.rows if r.shape == (48, 64)] == ["packable"]
    packed = export.pack(plain)
    names = _ops(packed)[1][0]
    assert names.count("DENSIFY") == 1 and names.count("HuffDecode") == 1 and len(packed) < 0.8 * len(plain)
    # (the small 8x48 kernel does not pay for a decoder op and stays sparse)
    xs = np.random.RandomState(1).rand(10, 64).astype(np.float32)
    r = em.no_default_delegates("litert")
    ref = em.run(em.reference_interpreter("litert", plain, experimental_op_resolver_type=r), xs)
    np.testing.assert_array_equal(
        em.run(runtime.Interpreter(model_content=packed, backend="litert", experimental_op_resolver_type=r), xs), ref)
    back = export.unpack(packed)  # dense constants now, same outputs
    if quantize is None:  # README: unpacked, a TFLite-sparse file comes out larger (benchmarks/unpack_sizes.py)
        assert len(back) > 3 * len(plain), (len(back), len(plain))
    np.testing.assert_array_equal(
        em.run(em.reference_interpreter("litert", back, experimental_op_resolver_type=r), xs), ref)


def test_sparse_tensor_read_by_a_sparse_kernel_is_kept_with_a_reason():
    plain, _ = _sparse_tflite(block=True)
    m = fb.read_model(plain)
    sparse = [t for t in m.subgraphs[0].tensors if t.sparsity is not None]
    assert sparse, "the converter should have written a sparse tensor"
    rep = export.inspect(plain, min_bytes=0)  # every constant's own reason, small ones too (else "skipped")
    direct = [r for r in rep.rows if "sparse kernel" in r.reason]
    densified = [r for r in rep.rows if "DENSIFY becomes HuffDecode" in r.reason]
    assert len(direct) + len(densified) == len(sparse)
    packed = export.pack(plain)
    xs = np.random.RandomState(2).rand(10, 64).astype(np.float32)
    r = em.no_default_delegates("litert")
    np.testing.assert_array_equal(
        em.run(runtime.Interpreter(model_content=packed, backend="litert", experimental_op_resolver_type=r), xs),
        em.run(em.reference_interpreter("litert", plain, experimental_op_resolver_type=r), xs))
    if direct:
        after = fb.read_model(packed)
        assert sum(t.sparsity is not None for t in after.subgraphs[0].tensors) >= len(direct)


def test_cli_pack_strip_strings_reports_saving(tmp_path):
    src, dst = tmp_path / "m.tflite", tmp_path / "m.packed.tflite"
    src.write_bytes(em.tflite("dense", None))
    out = em.cli("pack", "--strip-strings", src, dst)
    assert out.returncode == 0, out.stderr
    saved = int(re.search(r"strings stripped: (\d+) B saved", out.stdout).group(1))
    assert saved > 0 and len(dst.read_bytes()) + saved == len(export.pack(em.tflite("dense", None)))
    m = fb.read_model(dst.read_bytes())
    assert not any(fb.tensor_name(t) for t in m.subgraphs[0].tensors)


def test_int2_tensor_is_left_raw_with_a_reason():
    """INT2 is in the packed format (§13) but TFLite cannot size int2 tensors, so the op could not
    output one: pack leaves it raw and inspect says why (the file is only inspected, not run)."""
    from dc_keras.codec import pack_subbyte

    m = fb.read_model(em.tflite("dense", "int8"))
    sg = m.subgraphs[0]
    i, t = max(((i, t) for i, t in enumerate(sg.tensors) if t.type == fb.schema.TensorType.INT8
                and len(fb.buffer_bytes(m, t.buffer)) > 1000), key=lambda it: len(fb.buffer_bytes(m, it[1].buffer)))
    n = int(np.prod(t.shape))
    t.type = fb.schema.TensorType.INT2
    m.buffers[t.buffer].data = np.frombuffer(pack_subbyte(np.arange(n) % 2, 19), np.uint8)
    data = fb.write_model(m)
    row = next(r for r in export.inspect(data).rows if r.dtype == "int2")
    assert row.status == "refused" and "cannot size int2" in row.reason
    packed = fb.read_model(export.pack(data))
    assert fb.buffer_bytes(packed, packed.subgraphs[0].tensors[i].buffer) == fb.buffer_bytes(m, t.buffer)


def test_clustered_biases_pack_when_it_saves_bytes():
    """cluster(cluster_biases=3): the 300-entry bias packs as indices + codebook (it saves more
    than a HuffDecode op and tensor cost), the 10-entry one stays raw (under min_bytes); the
    packed file computes bit-identically. Free float biases do not pack (no sharing to use)."""
    import keras

    import dc_keras

    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(300, activation="relu", name="h"),
                              keras.layers.Dense(10, name="o")])
    for layer in model.layers:
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))

    def bias_rows(cluster_biases):
        plain = export.to_tflite(dc_keras.strip(dc_keras.cluster(model, bits=4, cluster_biases=cluster_biases)),
                                 pack=False)
        packed = export.pack(plain)
        xs = rng.normal(size=(8, 64)).astype("float32")
        np.testing.assert_array_equal(em.run(runtime.Interpreter(model_content=packed), xs),
                                      em.run(runtime.Interpreter(model_content=plain), xs))
        return {r.shape: r for r in export.inspect(packed).rows if len(r.shape) == 1}, len(packed)

    shared, shared_size = bias_rows(3)
    free, free_size = bias_rows(False)
    assert shared[(300,)].status == "packed" and shared[(300,)].distinct == 8
    assert shared[(300,)].packed_bytes < 1200 // 4
    assert shared[(10,)].status == "skipped" and shared[(10,)].reason == "below min_bytes = 256"
    assert free[(300,)].status == "kept"
    assert shared_size < free_size - 800


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_pack_compact_drops_unread_tables_and_keeps_outputs(quantize):
    """compact=True: empty quantization tables go, activation tensors share buffer 0; outputs stay
    bit-identical (both decode routes), int8 scales survive, unpack still restores every constant."""
    plain = em.tflite("conv", quantize)
    packed, compact = export.pack(plain, compact=False), export.pack(plain, compact=True)
    assert len(compact) < len(packed)
    m = fb.read_model(compact)
    tensors = [t for sg in m.subgraphs for t in sg.tensors]
    assert all(t.quantization is None or t.quantization.scale is not None for t in tensors)
    if quantize:
        assert any(t.quantization is not None for t in tensors)  # real scales are kept
    assert len(m.buffers) < len(fb.read_model(packed).buffers)
    xs = em.inputs("conv", 12, seed=5)
    for backend, decode in ROUTES:
        resolver = em.no_default_delegates(backend)
        ref = em.run(em.reference_interpreter(backend, plain, experimental_op_resolver_type=resolver), xs)
        got = em.run(runtime.Interpreter(model_content=compact, backend=backend, decode=decode,
                                         experimental_op_resolver_type=resolver), xs)
        np.testing.assert_array_equal(got, ref)
    assert _tensors(export.unpack(compact)) == _tensors(export.unpack(packed))


def test_cli_pack_compact(tmp_path):
    src, dst = tmp_path / "m.tflite", tmp_path / "m.packed.tflite"
    src.write_bytes(em.tflite("dense", None))
    out = em.cli("pack", "--compact", src, dst)
    assert out.returncode == 0, out.stderr
    assert dst.read_bytes() == export.pack(src.read_bytes(), compact=True) == export.pack(src.read_bytes())
    full = tmp_path / "full.tflite"
    out = em.cli("pack", "--no-compact", src, full)
    assert out.returncode == 0, out.stderr
    assert full.read_bytes() == export.pack(src.read_bytes(), compact=False)
    assert len(dst.read_bytes()) < len(full.read_bytes())


@pytest.mark.parametrize("block", [False, True])
def test_pack_names_as_not_packed_exactly_the_tensors_inspect_calls_refused(block, tmp_path):
    """`dc-keras pack` of an EXPERIMENTAL_SPARSITY file listed every TFLite-sparse constant under
    "not packed: ... read by an operator's own sparse kernel (not through DENSIFY)", also those read
    through DENSIFY that it had just packed (inspect: "DENSIFY becomes HuffDecode"). The CLI's list
    and ``pack_with_stats``' ``refused`` are now inspect's "refused" rows, name for name."""
    plain, _ = _sparse_tflite(block=block)
    src, dst = tmp_path / "sparse.tflite", tmp_path / "packed.tflite"
    src.write_bytes(plain)
    refused = [(r.name, r.raw_bytes) for r in export.inspect(plain).rows if r.status == "refused"]
    _, stats = export._pack.pack_with_stats(plain)
    assert [(name, n) for name, n, _ in stats["refused"]] == refused
    out = em.cli("pack", src, dst)
    assert out.returncode == 0, out.stderr
    if refused:
        assert f"not packed: {len(refused)} constant tensor(s)" in out.stdout, out.stdout
    else:
        assert "not packed" not in out.stdout, out.stdout
    packable = [r.name for r in export.inspect(plain).rows if r.status == "packable"]
    assert packable or block
    assert not any(name in out.stdout for name in packable), out.stdout


def test_min_bytes_leaves_small_tflite_sparse_tensors_alone(tmp_path):
    """`dc-keras pack --min-bytes N` (help: "leave constant tensors smaller than N bytes alone")
    still turned the DENSIFY of a TFLite-sparse constant far below N into a HuffDecode, and
    inspect called it "packable"; now both leave it ("skipped", as any other constant)."""
    plain, _ = _sparse_tflite(block=False)
    rows = [r for r in export.inspect(plain, min_bytes=0).rows if "TFLite-sparse" in r.reason]
    assert rows and any(r.status == "packable" for r in rows)
    above = max(r.raw_bytes for r in rows) + 1
    assert export.pack(plain, min_bytes=above) == plain
    assert {r.status for r in export.inspect(plain, min_bytes=above).rows if r.name in {x.name for x in rows}} \
        == {"skipped"}
    src, dst = tmp_path / "sparse.tflite", tmp_path / "packed.tflite"
    src.write_bytes(plain)
    out = em.cli("pack", "--min-bytes", str(above), src, dst)
    assert out.returncode == 0 and "no tensor packed: written unchanged" in out.stdout, out.stdout + out.stderr
    assert dst.read_bytes() == plain


def test_c_unpacker_restores_a_packed_densify_tensor_of_the_converter():
    """docs/android.md listed "a packed tensor that came from a TFLite DENSIFY op" as not handled by
    the C unpacker (dc_unpack / runtime.unpack); TFLite's converter gives DENSIFY's output a buffer of
    its own and pack keeps it, so such files unpack in C, bit-exact (only a DENSIFY output written
    without a buffer is refused)."""
    plain, _ = _sparse_tflite(block=False)
    packed = export.pack(plain)
    assert "HuffDecode" in _ops(packed)[1][0]
    back = runtime.unpack(packed)
    assert "HuffDecode" not in _ops(back)[1][0]
    xs = np.random.RandomState(3).rand(10, 64).astype(np.float32)
    r = em.no_default_delegates("litert")
    np.testing.assert_array_equal(
        em.run(em.reference_interpreter("litert", back, experimental_op_resolver_type=r), xs),
        em.run(em.reference_interpreter("litert", plain, experimental_op_resolver_type=r), xs))


def test_option_values_are_refused_or_taken_by_their_type():
    """pack(version=2.0) raised struct.error deep in the codec, version=True / min_bytes=True were
    read as 1, inspect(min_bytes=None) raised a TypeError from a comparison and took -5, and
    min_saving=np.float32(0.2) was refused with a message that contradicted itself: every number
    option now takes what is a number of its kind (numpy's too) and refuses the rest, by name."""
    plain = em.tflite("dense", None)
    for kw, says in (({"version": 2.0}, "version must be None"), ({"version": True}, "version must be None"),
                     ({"min_bytes": True}, "min_bytes must be a non-negative int"),
                     ({"min_saving": True}, "min_saving must be a number"),
                     ({"min_saving": "0.2"}, "min_saving must be a number")):
        with pytest.raises(ValueError, match=says):
            export.pack(plain, **kw)
    for bad in (None, "256", -5, True):
        with pytest.raises(ValueError, match=f"min_bytes must be a non-negative int, got {re.escape(repr(bad))}"):
            export.inspect(plain, min_bytes=bad)
    want = export.pack(plain, min_saving=0.2, version=2, min_bytes=256)
    assert export.pack(plain, min_saving=np.float32(0.2), version=np.int64(2), min_bytes=np.int32(256)) == want
    assert export.inspect(plain, min_bytes=np.int64(256)).rows == export.inspect(plain, min_bytes=256).rows


def test_per_channel_without_quantize_is_said_to_be_ignored():
    """per_channel sets int8 scales: given with quantize=None or "float16" it was ignored silently."""
    m = em.keras_model("dense")
    with pytest.warns(UserWarning, match=r"to_tflite: per_channel=False is ignored: .* quantize=None"):
        got = export.to_tflite(m, pack=False, per_channel=False)
    assert got == export.to_tflite(m, pack=False)


def test_bytes_paths_are_taken_as_the_os_takes_them(tmp_path):
    """to_tflite(path=b"...") and Report.plot(b"...") raised "a bytes-like object is required, not
    'str'" from the file writer (the Interpreter took bytes paths)."""
    m = em.keras_model("dense")
    out = os.fsencode(tmp_path / "m.tflite")
    data = export.to_tflite(m, pack=False, path=out)
    assert (tmp_path / "m.tflite").read_bytes() == data
    export.inspect(data).plot(os.fsencode(tmp_path / "sizes.png"))
    assert (tmp_path / "sizes.png").read_bytes()[:4] == b"\x89PNG"


def test_bytes_like_inputs_are_read_and_others_refused_by_name():
    """pack / inspect / unpack take any bytes-like input (bytes, bytearray, memoryview, mmap, a
    uint8 array), as their docs say; others are a TypeError naming what was given."""
    import mmap

    plain = em.tflite("dense", None)
    want = export.pack(plain)
    arr = np.frombuffer(plain, np.uint8)
    assert export.pack(bytearray(plain)) == export.pack(memoryview(plain)) == export.pack(arr) == want
    with mmap.mmap(-1, len(plain)) as mm:
        mm.write(plain)
        assert export.pack(mm) == want
    for wrong, name in ((None, "NoneType"), (5, "int"), ([1, 2], "list"), ("m.tflite", "str")):
        with pytest.raises(TypeError, match=f"expected .tflite content as bytes, got {name}"):
            export.pack(wrong)
