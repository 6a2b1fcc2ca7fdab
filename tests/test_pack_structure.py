"""What ``pack`` adds as flatbuffer structure (docs/FORMAT.md §15): nameless packed tensors,
4-byte aligned packed data, ``compact`` on by default; bit-exact on every route, and files written
by the older packer (named ``<name>/dc_packed``, 16-byte aligned, no compact) still run and unpack."""
import os

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb
from dc_keras.export import _pack

OLD_FIXTURE = os.path.join(os.path.dirname(__file__), "data", "zoo_lstm128.packed.tflite")


def _zero_overhead_twin(packed):
    """``packed`` with every HuffDecode op and packed tensor removed and the packed bytes put in the
    decoded tensor's own buffer: the same data with none of the structure pack adds per tensor.
    Only sized, never run."""
    m = fb.read_model(packed)
    pairs = _pack.packed_tensors(m)
    for s, p, o in pairs:
        sg = m.subgraphs[s]
        m.buffers[sg.tensors[o].buffer].data = m.buffers[sg.tensors[p].buffer].data
    hd = {k for k, c in enumerate(m.operatorCodes) if fb.is_huffdecode_code(c)}
    for s, sg in enumerate(m.subgraphs):
        sg.operators = [op for op in sg.operators if op.opcodeIndex not in hd]
        _pack._remove_tensors(m, s, {p for s2, p, _ in pairs if s2 == s})
    _pack._remove_unused_buffers(m, {b for b in range(len(m.buffers))})
    return fb.write_model(m), len(pairs)  # (the HuffDecode operator code, once per model, stays)


@pytest.mark.parametrize("kind,quantize", [("dense", None), ("conv", None), ("conv", "int8")])
def test_bytes_added_per_packed_tensor(kind, quantize):
    """Besides its packed bytes, a packed tensor costs at most the planning constant (80 B): no
    name, 4-byte aligned data, one op; the old packer added ~140 B plus the name twice."""
    packed = export.pack(em.tflite(kind, quantize), compact=False)
    twin, n = _zero_overhead_twin(packed)
    assert n >= 2
    per_tensor = (len(packed) - len(twin)) / n
    assert 40 <= per_tensor <= _pack._PER_TENSOR_OVERHEAD, per_tensor
    m = fb.read_model(packed)
    assert all(m.subgraphs[s].tensors[p].name is None for s, p, _ in _pack.packed_tensors(m))
    assert all(fb.tensor_name(m.subgraphs[s].tensors[o]) for s, _, o in _pack.packed_tensors(m))


def _same_outputs(plain, packed_files, xs):
    """Each packed file gives ``plain``'s outputs bit for bit: through the delegate (LiteRT) and the
    op (TensorFlow), each against the same runtime on ``plain`` with the same kernels (no default
    delegates), and unpacked by the C tool (``runtime.unpack``) in an ordinary interpreter."""
    refs = {}
    for backend, decode in [("litert", "delegate"), ("tensorflow", "op")]:
        r = em.no_default_delegates(backend)
        refs[backend] = em.run(em.reference_interpreter(backend, plain, experimental_op_resolver_type=r), xs)
        for data in packed_files:
            got = em.run(runtime.Interpreter(model_content=data, backend=backend, decode=decode,
                                             experimental_op_resolver_type=r), xs)
            np.testing.assert_array_equal(got, refs[backend])
    r = em.no_default_delegates("litert")
    for data in packed_files:
        c = runtime.unpack(data)
        got = em.run(em.reference_interpreter("litert", c, experimental_op_resolver_type=r), xs)
        np.testing.assert_array_equal(got, refs["litert"])


@pytest.mark.parametrize("kind,quantize", [("dense", None), ("conv", "int8"), ("conv", "float16")])
def test_compact_default_is_output_identical_and_smaller(kind, quantize):
    plain = em.tflite(kind, quantize)
    default, full = export.pack(plain), export.pack(plain, compact=False)
    assert default == export.pack(plain, compact=True)
    assert len(default) < len(full)
    _same_outputs(plain, [default, full], em.inputs(kind, 16, seed=9))
    assert export.unpack(export.unpack(default)) == export.unpack(default)


def test_compact_argument_and_nothing_to_pack():
    plain = em.tflite("dense", None)
    assert export.pack(plain, min_bytes=10**9) == plain  # default: nothing packs -> input as is
    assert export.pack(plain, min_bytes=10**9, compact=False) == plain
    compacted = export.pack(plain, min_bytes=10**9, compact=True)  # asked for: rewritten
    assert len(compacted) < len(plain)
    xs = em.inputs("dense", 8, seed=1)
    np.testing.assert_array_equal(em.run(em.reference_interpreter("litert", compacted), xs),
                                  em.run(em.reference_interpreter("litert", plain), xs))
    for bad in ("yes", 1, 0):
        with pytest.raises(ValueError, match="compact must be None"):
            export.pack(plain, compact=bad)


def test_file_of_the_older_packer_runs_unpacks_and_repacks_smaller():
    """tests/data/zoo_lstm128.packed.tflite was written by the packer of 2026-11-29 (named packed
    tensors, 16-byte aligned data, no compact): it still runs through the delegate, the op and the
    C unpack tool, bit-identical to its unpacked model, and re-packs smaller to the same outputs."""
    with open(OLD_FIXTURE, "rb") as f:
        old = f.read()
    m = fb.read_model(old)
    names = [fb.tensor_name(m.subgraphs[s].tensors[p]) for s, p, _ in _pack.packed_tensors(m)]
    assert names and all(n.endswith(_pack.PACKED_SUFFIX) for n in names)
    plain = export.unpack(old)
    new = export.pack(plain)
    assert len(new) < len(old) - 40 * len(names)
    xs = np.random.default_rng(4).normal(size=(3, 32, 8)).astype("float32")  # the file's batch is 1
    _same_outputs(plain, [old, new], xs)


def test_packed_tensor_lookup_works_on_new_and_old_files():
    """``to_tflite``'s "clustered but packed poorly / left raw" warning finds the packed tensors
    through their HuffDecode op: the decoded names, for nameless and for old named packed tensors."""
    from dc_keras.export import _convert

    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    m = fb.read_model(packed)
    want = {fb.tensor_name(m.subgraphs[s].tensors[o]) for s, _, o in _pack.packed_tensors(m)}
    assert want and all(want) and _convert._packed_names(packed) == want
    with open(OLD_FIXTURE, "rb") as f:
        old = f.read()
    m = fb.read_model(old)
    by_suffix = {fb.tensor_name(t)[: -len(_pack.PACKED_SUFFIX)] for sg in m.subgraphs for t in sg.tensors
                 if fb.tensor_name(t).endswith(_pack.PACKED_SUFFIX)}
    assert by_suffix and _convert._packed_names(old) == by_suffix
    assert _convert._packed_names(None) == set()


def _unshared(data):
    """``data`` serialised with a plain ``flatbuffers.Builder`` (every vector written again)."""
    import flatbuffers

    m = fb.read_model(data)
    m.buffers = [fb._as_aligned(b) for b in m.buffers]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=fb.FILE_IDENTIFIER)
    return bytes(builder.Output())


@pytest.mark.parametrize("kind,quantize", [("conv", "float16"), ("conv", "int8")])
def test_shared_vectors_read_the_same(kind, quantize):
    """write_model writes each distinct numeric vector once (several tensors' shape offsets point
    at one vector): smaller, the same ModelT when read back, the same outputs on every route and
    after the C unpack tool; unpack then pack again gives the same bytes."""
    plain = em.tflite(kind, quantize)
    packed = export.pack(plain)
    unshared = _unshared(packed)
    assert len(packed) < len(unshared)
    a, b = fb.read_model(packed), fb.read_model(unshared)
    ours = {p for _, p, _ in _pack.packed_tensors(a)}  # shapes written from a list: not shared
    root = fb.schema.Model.GetRootAs(packed, 0)
    sg = root.Subgraphs(0)
    by_value = {}  # shape -> offsets of the tensors' shape vectors
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        if t.ShapeLength() and i not in ours:
            by_value.setdefault(tuple(t.ShapeAsNumpy()), set()).add(t._tab.Vector(t._tab.Offset(4)))
    assert all(len(offsets) == 1 for offsets in by_value.values())  # equal shapes: one vector
    assert sg.TensorsLength() - len(ours) > len(by_value)  # (the model repeats some shapes)
    for sa, sb in zip(a.subgraphs, b.subgraphs):
        for ta, tb in zip(sa.tensors, sb.tensors):
            assert (fb.tensor_name(ta), ta.type, list(ta.shape), ta.buffer) == \
                   (fb.tensor_name(tb), tb.type, list(tb.shape), tb.buffer)
    assert [fb.buffer_bytes(a, i) for i in range(len(a.buffers))] == \
           [fb.buffer_bytes(b, i) for i in range(len(b.buffers))]
    _same_outputs(plain, [packed, unshared], em.inputs(kind, 12, seed=3))
    assert export.pack(export.unpack(packed)) == packed


@pytest.mark.parametrize("past", [1, 10**6])
def test_metadata_naming_a_missing_buffer_is_kept_dangling_with_a_warning(past, tmp_path):
    """A metadata entry naming a buffer the file does not have (LiteRT runs such a file: it ignores
    metadata it does not read) made pack and unpack fail with a KeyError traceback. Both now keep
    the entry pointing past the buffers, also where packing adds buffers up to its index (past=1:
    it would otherwise name a packed buffer), and warn naming it; the outputs stay bit-exact."""
    m = fb.read_model(em.tflite("dense", None))
    m.metadata[0].buffer = len(m.buffers) + past
    name = fb.tensor_name(m.metadata[0])
    plain = fb.write_model(m, "auto")
    with pytest.warns(UserWarning, match=f"metadata '{name}' names a buffer the file does not have"):
        packed = export.pack(plain)
    with pytest.warns(UserWarning, match=f"metadata '{name}' names a buffer the file does not have"):
        unpacked = export.unpack(packed)
    for data in (packed, unpacked):
        out = fb.read_model(data)
        entry = [e for e in out.metadata if fb.tensor_name(e) == name]
        assert len(entry) == 1 and entry[0].buffer >= len(out.buffers), (entry, len(out.buffers))
        assert [fb.tensor_name(e) for e in out.metadata] == [fb.tensor_name(e) for e in m.metadata]
    _same_outputs(plain, [packed], em.inputs("dense", 4, seed=2))
    if past == 1:  # the CLI says it on one line of its own, not with Python's file and source line
        (tmp_path / "in.tflite").write_bytes(plain)
        r = em.cli("pack", tmp_path / "in.tflite", tmp_path / "out.tflite")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "out.tflite").read_bytes() == packed
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"dc-keras pack: warning: the input's metadata '{name}'"), r.stderr


def _signed_zero_model():
    """A Dense model pruned as tfmot's strip_pruning leaves it (``w * mask``: -0.0 where a pruned
    weight was negative, +0.0 where positive) and shared to 16 values; the first bias holds both
    zeros too (_with_signed_zero_bias: a bias is added, not multiplied, so its zeros are left alone)."""
    import keras

    keras.utils.set_random_seed(4)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    m.layers[0].bias.assign(np.where(np.arange(128) % 3, 0.5, 0.0).astype(np.float32))
    for layer in m.layers:
        w = layer.kernel.numpy()
        w = np.round(w / np.abs(w).max() * 8) / 8 * np.abs(w).max()
        layer.kernel.assign(w * (np.abs(w) > np.quantile(np.abs(w), 0.8)))
    return m


def _with_signed_zero_bias(data):
    """``data`` with every other zero of its first FC bias made -0.0 (the converter writes +0.0)."""
    m = fb.read_model(data)
    t = [t for t in m.subgraphs[0].tensors if "BiasAdd" in fb.tensor_name(t)][0]
    bits = np.frombuffer(fb.buffer_bytes(m, t.buffer), np.uint32).copy()
    zeros = np.flatnonzero(bits == 0)
    assert len(zeros) >= 4
    bits[zeros[::2]] = 0x80000000
    m.buffers[t.buffer].data = np.frombuffer(bits.tobytes(), np.uint8)
    return fb.write_model(m, "auto")


def _bits(data):
    """{tensor name: its constant data's bytes} of a .tflite."""
    m = fb.read_model(data)
    return {fb.tensor_name(t): fb.buffer_bytes(m, t.buffer) for sg in m.subgraphs for t in sg.tensors
            if fb.buffer_bytes(m, t.buffer)}


def test_to_tflite_says_when_the_converter_folds_a_negative_batchnorm_scale_into_pruned_zeros():
    """A pruned Keras kernel holds +0.0 only (strip writes +0.0), but the converter folds a following
    BatchNormalization into it, and 0 * a negative scale is -0.0: the packed file stores those like
    kept weights. to_tflite says so and how to pack them as +0.0 (found by this audit)."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(16, 3, use_bias=False, name="conv")(inp))
    m = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(h))
    k = m.get_layer("conv").kernel.numpy()
    m.get_layer("conv").kernel.assign(np.where(np.abs(k) > np.quantile(np.abs(k), 0.8), k, 0.0))
    assert not np.signbit(m.get_layer("conv").kernel.numpy()[k == 0]).any()  # +0.0 only in Keras
    g, b, mu, v = m.get_layer("bn").get_weights()
    m.get_layer("bn").set_weights([np.where(np.arange(16) % 2, -1.0, 1.0).astype("float32"), b, mu, v])
    with pytest.warns(UserWarning, match=r"to_tflite: 1 weight tensor\(s\) hold both -0.0 and \+0.0.*the converter "
                                         r"where it folds a negative BatchNormalization scale"):
        export.to_tflite(m)


def test_positive_zeros_packs_tfmot_style_signed_zeros_smaller_with_the_same_outputs(tmp_path):
    """Bit-exact packing stores each -0.0 of a weight that also holds +0.0 like a kept weight
    (tfmot's strip_pruning leaves ~half the zeros -0.0: 1.15x-1.7x the bytes, found by an audit).
    Default: kept bit-exact and reported (stats and a CLI note); positive_zeros=True makes the -0.0
    of FC / conv / BATCH_MATMUL weights +0.0 before packing: smaller, the same outputs bit for bit
    here (no output is exactly zero), biases untouched."""
    plain = _with_signed_zero_bias(export.to_tflite(_signed_zero_model(), pack=False))
    kernels = [n for n, b in _bits(plain).items() if "MatMul" in n]
    assert any(np.any(np.frombuffer(b, np.uint32) == 0x80000000) for n, b in _bits(plain).items() if "BiasAdd" in n)
    assert len(kernels) == 2 and all(np.any(np.frombuffer(_bits(plain)[n], np.uint32) == 0x80000000) for n in kernels)
    default, stats = _pack.pack_with_stats(plain)
    positive, pstats = _pack.pack_with_stats(plain, positive_zeros=True)
    assert stats["negative_zeros"][0] == 2 and stats["positive_zeros"] == (0, 0)
    assert pstats["positive_zeros"] == stats["negative_zeros"] and pstats["negative_zeros"] == (0, 0)
    assert export.pack(plain, positive_zeros=True) == positive
    # the Python API says so too (it was silent: only the CLI noted it), at the caller's line
    with pytest.warns(UserWarning, match=r"pack: 2 weight tensor\(s\) hold both -0.0 and \+0.0 \(\d+ -0.0 entries.*"
                                         r"positive_zeros=True packs them as \+0.0") as caught:
        assert export.pack(plain) == default
    assert [w.filename for w in caught if "-0.0" in str(w.message)] == [__file__]
    report = export.inspect(plain)  # inspect counted -0.0 and +0.0 as two distinct values without a word
    assert report.negative_zeros == stats["negative_zeros"]
    assert "note: 2 weight tensor(s) hold both -0.0 and +0.0" in str(report) and "--positive-zeros" in str(report)
    assert export.inspect(positive).negative_zeros == (0, 0) and "-0.0" not in str(export.inspect(positive))
    with pytest.warns(UserWarning, match=r"to_tflite: \d weight tensor\(s\) hold both -0.0 and \+0.0.*"
                                         r"to_tflite\(\.\.\., positive_zeros=True\) packs them") as caught:
        export.to_tflite(_signed_zero_model())
    assert [w.filename for w in caught if "-0.0" in str(w.message)] == [__file__]
    assert len(positive) < 0.8 * len(default), (len(positive), len(default))
    assert _bits(export.unpack(default)) == _bits(plain)  # default: bit-exact, -0.0 included
    got, want = _bits(export.unpack(positive)), _bits(plain)
    for name, data in want.items():
        bits = np.frombuffer(data, np.uint32).copy()
        if name in kernels:
            bits[bits == 0x80000000] = 0
        assert np.frombuffer(got[name], np.uint32).tolist() == bits.tolist(), name  # biases keep their -0.0
    xs = np.random.default_rng(5).standard_normal((8, 64)).astype(np.float32)
    _same_outputs(plain, [positive], xs)
    with pytest.raises(ValueError, match="positive_zeros must be True or False"):
        export.pack(plain, positive_zeros="yes")
    (tmp_path / "in.tflite").write_bytes(plain)
    r = em.cli("pack", tmp_path / "in.tflite", tmp_path / "a.tflite")
    assert r.returncode == 0 and (tmp_path / "a.tflite").read_bytes() == default, r.stderr
    assert f"note: 2 weight tensor(s) hold both -0.0 and +0.0 ({stats['negative_zeros'][1]} -0.0 entries" in r.stdout
    assert "--positive-zeros packs them as +0.0" in r.stdout
    r = em.cli("pack", tmp_path / "in.tflite", tmp_path / "b.tflite", "--positive-zeros")
    assert r.returncode == 0 and (tmp_path / "b.tflite").read_bytes() == positive, r.stderr
    assert f"positive zeros: {stats['negative_zeros'][1]} -0.0 entries of 2 weight tensor(s) packed as +0.0" in r.stdout
