"""Files written by Google's LiteRT quantizer (ai-edge-quantizer) and the buffers-after-the-flatbuffer
layout (``Buffer.offset``/``size``): pack, unpack and inspect read them, packed files run bit-exact.

ai-edge-quantizer pins its own ``ai-edge-litert`` (and TF tooling moves fast), so it lives in a
venv of its own, created here on first use under ``~/.cache/dc_keras/venvs/`` (reused afterwards;
~20 s from PyPI). Creating it at test time rather than in ``make install`` keeps the test
self-contained (a fresh clone's ``make test`` creates it; a developer's single ``pytest`` run too)
and keeps the main environment free of a second TFLite runtime. If the venv cannot be created
(no network / PyPI), the tests FAIL with the pip output - they are never skipped silently. The venv
helper is benchmarks/_aeq.py (shared with benchmarks/bench_quantized.py).
"""

import functools
import numpy as np
import pytest

import _export_models as em
from _benchmarks import load as load_bench
from _interp_outputs import per_sample_outputs
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb

RECIPES = ["dynamic_wi8_afp32", "weight_only_wi8_afp32", "static_wi8_ai8", "weight_only_wi4_afp32",
           "dynamic_wi4_afp32"]


def _aeq():
    """benchmarks/_aeq.py (venv creation + quantizer run), loaded by path (it imports _venv)."""
    return load_bench("_aeq")


@functools.lru_cache(maxsize=None)  # seeded, bytes: built once per process (several tests read it)
def _lenet_float():
    """A LeNet-300-100-shaped MLP with clustered + pruned weights (no training: bytes and bit-exactness
    are what these tests check), as float .tflite (1 MB: the quantizer's int8 files exceed the
    256 KiB from which it stores buffers after the flatbuffer)."""
    import keras

    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300, activation="relu"),
                          keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])
    return export.to_tflite(em.cluster_and_prune(m, levels=16, prune=0.9), pack=False)


def _inputs(n, seed=0):
    return np.random.RandomState(seed).rand(n, 784).astype(np.float32)


@pytest.fixture(scope="module")
def files():
    """{"float": bytes, recipe: bytes} made by ai-edge-quantizer from the same float model."""
    flt = _lenet_float()
    try:
        out = _aeq().quantize(flt, _inputs(16, seed=1), RECIPES)
    except RuntimeError as exc:  # no venv / quantizer failure: a failure with the reason, never a skip
        pytest.fail(str(exc), pytrace=False)
    out["float"] = flt
    return out


def _run(content, xs, packed=False, default_delegates=False):
    """Outputs for float inputs ``xs``; int8-input models get them quantized with the input's params."""
    return np.concatenate(per_sample_outputs(content, xs, packed, default_delegates))


def _tensor_contents(model_bytes):
    m = fb.read_model(model_bytes)
    return [[(fb.tensor_name(t), t.type, list(t.shape), fb.buffer_bytes(m, t.buffer)) for t in sg.tensors]
            for sg in m.subgraphs]


def _check_alignment_and_bounds(data):
    """Buffer data 16-byte aligned; inline packed data (HuffDecode inputs, read at any offset) 4."""
    model = fb.read_model(data)
    packed = {model.subgraphs[s].tensors[p].buffer for s, p, _ in export._pack.packed_tensors(model)}
    root = fb.schema.Model.GetRootAs(data, 0)
    for i in range(root.BuffersLength()):
        b = root.Buffers(i)
        if b.Offset() > 1:
            assert b.Offset() % 16 == 0 and b.Offset() + b.Size() <= len(data), (i, b.Offset(), b.Size())
        elif b.DataLength():
            assert b._tab.Vector(b._tab.Offset(4)) % (4 if i in packed else 16) == 0, i


@pytest.mark.parametrize("recipe", ["dynamic_wi8_afp32", "weight_only_wi8_afp32", "static_wi8_ai8"])
def test_quantizer_int8_files_pack_and_run_bit_exact(files, recipe):
    plain = files[recipe]
    assert fb.uses_external_buffers(fb.read_model(plain)), "the quantizer's file should use Buffer.offset"
    packed = export.pack(plain)
    assert len(packed) < 0.4 * len(plain), (len(packed), len(plain))
    assert any(fb.is_huffdecode_code(c) for c in fb.read_model(packed).operatorCodes)
    _check_alignment_and_bounds(packed)
    xs = _inputs(30, seed=7)
    np.testing.assert_array_equal(_run(packed, xs, packed=True), _run(plain, xs))
    np.testing.assert_array_equal(_run(packed, xs, packed=True, default_delegates=True),
                                  _run(plain, xs, default_delegates=True))
    # unpack: every tensor's contents back; the input's convention (data after the flatbuffer) kept
    back = export.unpack(packed, buffers="external")
    assert fb.uses_external_buffers(fb.read_model(back))
    _check_alignment_and_bounds(back)
    assert _tensor_contents(back) == _tensor_contents(plain)
    np.testing.assert_array_equal(_run(back, xs), _run(plain, xs))


def test_output_keeps_the_external_convention_when_large(files):
    plain = files["dynamic_wi8_afp32"]
    # the packed model is small (< 256 KiB): "auto" inlines it, "external" keeps Buffer.offset
    auto = export.pack(plain)
    assert not fb.uses_external_buffers(fb.read_model(auto))
    ext = export.pack(plain, buffers="external")
    assert fb.uses_external_buffers(fb.read_model(ext))
    _check_alignment_and_bounds(ext)
    xs = _inputs(10, seed=2)
    np.testing.assert_array_equal(_run(ext, xs, packed=True), _run(plain, xs))
    # unpacking the auto output: data is > 256 KiB again but the input was inline -> stays inline
    assert not fb.uses_external_buffers(fb.read_model(export.unpack(auto)))
    # a large file that packs poorly keeps its convention under "auto"
    unpacked_ext = export.unpack(ext)  # ext input, > 256 KiB of data -> external
    assert fb.uses_external_buffers(fb.read_model(unpacked_ext))


def test_self_written_external_layout_round_trips_and_runs():
    """A float model rewritten through the generated schema with its buffers after the flatbuffer."""
    plain = _lenet_float()
    model = fb.read_model(plain)
    assert not fb.uses_external_buffers(model)
    ext = fb.write_model(model, "external")
    root = fb.schema.Model.GetRootAs(ext, 0)
    outside = [i for i in range(root.BuffersLength()) if root.Buffers(i).Offset() > 1]
    assert len(outside) >= 3 and all(root.Buffers(i).DataLength() == 0 for i in outside)
    _check_alignment_and_bounds(ext)
    assert _tensor_contents(ext) == _tensor_contents(plain)
    xs = _inputs(10, seed=4)
    ref = _run(plain, xs)
    np.testing.assert_array_equal(_run(ext, xs), ref)  # LiteRT itself reads our layout
    packed = export.pack(ext, buffers="external")
    assert fb.uses_external_buffers(fb.read_model(packed)) and len(packed) < len(ext) / 5
    np.testing.assert_array_equal(_run(packed, xs, packed=True), ref)
    assert _tensor_contents(export.unpack(packed)) == _tensor_contents(plain)
    rep = export.inspect(ext)
    assert rep.external_buffers and "after the flatbuffer" in rep.to_text()
    assert sum(r.status == "packable" for r in rep.rows) >= 3


def test_truncated_external_buffer_is_a_clear_error(tmp_path):
    """Also from runtime.Interpreter (and check_model): it passed LiteRT's bare "Constant buffer N
    specified an out of range offset." through, with no model name or fix (found by an audit)."""
    ext = fb.write_model(fb.read_model(_lenet_float()), "external")
    for fn in (export.pack, export.unpack, export.inspect, fb.check_model):
        with pytest.raises(ValueError, match="lies outside the file"):
            fn(ext[: len(ext) - 1000])
    cut = export.pack(ext, buffers="external")
    cut = cut[: len(cut) - 7]  # the last buffer's last bytes
    (tmp_path / "cut.tflite").write_bytes(cut)
    for backend in ("litert", "tensorflow"):
        for kw in ({"model_content": cut}, {"model_path": str(tmp_path / "cut.tflite")}):
            with pytest.raises(ValueError, match=r"lies outside the file .*truncated or corrupt"):
                runtime.Interpreter(backend=backend, **kw).allocate_tensors()


@pytest.mark.parametrize("recipe", ["weight_only_wi4_afp32", "dynamic_wi4_afp32"])
def test_int4_files_pack_and_run_bit_exact(files, recipe):
    """INT4 weights (two per byte, FORMAT.md §13) pack; the decoder writes them packed again."""
    plain = files[recipe]
    rep = export.inspect(plain)
    int4 = [r for r in rep.rows if r.dtype == "int4"]
    assert len(int4) == 3 and all(r.status == "packable" for r in int4 if r.raw_bytes > 10000), rep
    packed = export.pack(plain)
    assert len(packed) < 0.5 * len(plain), (len(packed), len(plain))
    m = fb.read_model(packed)
    outs = {int(op.outputs[0]) for op in m.subgraphs[0].operators if fb.opcode_name(m, op) == "HuffDecode"}
    assert any(m.subgraphs[0].tensors[i].type == fb.schema.TensorType.INT4 for i in outs)
    xs = _inputs(20, seed=5)
    np.testing.assert_array_equal(_run(packed, xs, packed=True), _run(plain, xs))
    assert _tensor_contents(export.unpack(packed)) == _tensor_contents(plain)


def _run_tf(content, xs, decode=None):
    """TF's interpreter without default delegates: plain for the unpacked file, dc_keras' with the
    given decode route for a packed one."""
    from tensorflow.lite.python.interpreter import Interpreter, OpResolverType

    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_content=content, **kw) if decode is None else \
        runtime.Interpreter(model_content=content, backend="tensorflow", decode=decode, **kw)
    return em.run(it, xs)


def test_op_route_refuses_dynamic_int4_and_runs_weight_only_int4_bit_exact(files, tmp_path):
    """decode='op' on a dynamic-range INT4 FULLY_CONNECTED: TFLite's optimized 4-bit hybrid kernel
    needs a constant filter, the op's decoded output is not one, so the generic int8 hybrid kernel
    would run instead (outputs differ in the last bits): refused with the reason and the fix. The
    weight-only INT4 file (DEQUANTIZE -> float FC) and the delegate route stay bit-exact."""
    xs = _inputs(12, seed=9)
    dynamic = export.pack(files["dynamic_wi4_afp32"])
    path = tmp_path / "dynamic_wi4.tflite"
    path.write_bytes(dynamic)
    for kwargs in ({"model_content": dynamic}, {"model_path": str(path)}):
        with pytest.raises(ValueError, match=r"decode='op' cannot run this model bit-exactly: 3 packed INT4.*"
                                             r"FULLY_CONNECTED.*decode='delegate'"):
            runtime.Interpreter(backend="tensorflow", decode="op", **kwargs)
    np.testing.assert_array_equal(_run_tf(dynamic, xs, decode="delegate"), _run_tf(files["dynamic_wi4_afp32"], xs))
    weight_only = export.pack(files["weight_only_wi4_afp32"])
    for decode in ("op", "delegate"):
        np.testing.assert_array_equal(_run_tf(weight_only, xs, decode=decode),
                                      _run_tf(files["weight_only_wi4_afp32"], xs))


def test_strip_strings_keeps_signatures_and_outputs(files):
    from ai_edge_litert.interpreter import Interpreter

    for name in ("float", "static_wi8_ai8"):
        plain = files[name]
        packed = export.pack(plain)
        stripped, stats = export._pack.pack_with_stats(plain, strip_strings=True)
        assert stats["strings_saved"] > 0 and len(stripped) == len(packed) - stats["strings_saved"]
        m = fb.read_model(stripped)
        assert all(not fb.tensor_name(t) for sg in m.subgraphs for t in sg.tensors)
        xs = _inputs(8, seed=6)
        np.testing.assert_array_equal(_run(stripped, xs, packed=True), _run(plain, xs))
        # the signature runner works on the stripped file, with the original signature names
        ref_sig = Interpreter(model_content=plain).get_signature_list()
        it = runtime.Interpreter(model_content=stripped, backend="litert")
        assert it.get_signature_list() == ref_sig
        key = next(iter(ref_sig))
        (in_name,), (out_name,) = ref_sig[key]["inputs"], ref_sig[key]["outputs"]
        x = _inputs(1, seed=9)
        if name == "static_wi8_ai8":
            continue  # int8 input: the bit-exact check above covers it
        got = it.get_signature_runner(key)(**{in_name: x})[out_name]
        ref = Interpreter(model_content=plain).get_signature_runner(key)(**{in_name: x})[out_name]
        np.testing.assert_array_equal(got, ref)
    # default: the model's names kept (only pack's own packed tensors are nameless, FORMAT.md §15)
    m = fb.read_model(export.pack(files["float"]))
    ours = {p for s, p, _ in export._pack.packed_tensors(m) if s == 0}
    assert ours and all(fb.tensor_name(t) for i, t in enumerate(m.subgraphs[0].tensors) if i not in ours)


def test_corrupted_external_layout_raises_value_error_only():
    """Random byte flips in the flatbuffer part of a Buffer.offset file: reading either works or
    raises ValueError naming the problem - never another exception, never a hang."""
    ext = fb.write_model(fb.read_model(_lenet_float()), "external")
    head = min(b.Offset() for b in (fb.schema.Model.GetRootAs(ext, 0).Buffers(i)
                                      for i in range(fb.schema.Model.GetRootAs(ext, 0).BuffersLength()))
               if b.Offset() > 1)  # the data starts after the flatbuffer
    rng = np.random.RandomState(0)
    outcomes = {"ok": 0, "ValueError": 0}
    for _ in range(300):
        bad = bytearray(ext)
        for pos in rng.randint(0, head, size=rng.randint(1, 4)):
            bad[pos] ^= 1 << rng.randint(8)
        try:
            fb.read_model(bytes(bad))
            outcomes["ok"] += 1
        except ValueError:
            outcomes["ValueError"] += 1
    assert outcomes["ValueError"] > 0 and sum(outcomes.values()) == 300


def test_a_name_that_is_not_utf8_is_a_clear_load_error(tmp_path):
    """LiteRT's Python API decodes signature names while it loads: a byte that is not UTF-8 raised
    a bare UnicodeDecodeError from inside it (found by an audit's fuzzer)."""
    m = fb.read_model(em.tflite("dense", None))
    m.signatureDefs[0].inputs[0].name = b"k\xa0ras_tensor"
    bad = fb.write_model(m, "auto")
    (tmp_path / "bad.tflite").write_bytes(bad)
    for backend in ("litert", "tensorflow"):
        for kw in ({"model_content": bad}, {"model_path": str(tmp_path / "bad.tflite")}):
            with pytest.raises(ValueError, match=r"(bad.tflite|model_content).*not valid UTF-8 .*truncated or corrupt"):
                runtime.Interpreter(backend=backend, **kw)
