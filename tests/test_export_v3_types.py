"""Models with constants of the types format version 3 added (FORMAT.md §16): the int64 biases of
an int16x8 model (16-bit activations, TFLite's EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_
WEIGHTS_INT8), and an int64 GATHER index table with a bool SELECT_V2 mask, through pack, the
runtime (delegate and op routes), inspect, the CLI, unpack and the C unpacker, bit-exact."""
import warnings

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import _export_models as em  # noqa: E402

UNITS = 2048


@pytest.fixture(scope="module")
def int16x8():
    return int16x8_model()


def int16x8_model(clustered=True, zeros=True):
    """16 -> 2048 (relu) -> 10, int16x8: two int64 bias tensors (2048 and 10 entries). Weights
    shared among 16 values (``clustered``; else Keras' initial weights), 75 % of the hidden biases
    zero (pruned units; none with ``zeros=False``); the biases still quantize to many distinct
    int64 values (per-channel scales)."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(UNITS, activation="relu"), keras.layers.Dense(10)])
    rng = np.random.default_rng(1)
    for layer in m.layers:
        w, b = layer.get_weights()
        if clustered:
            w = rng.choice(np.linspace(-0.2, 0.2, 16), w.shape).astype(np.float32)
        keep = rng.random(b.shape) < 0.25 if zeros else True
        b = np.where(keep, rng.choice(np.linspace(-0.5, 0.5, 16), b.shape), 0).astype(np.float32)
        layer.set_weights([w, b])
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        r = np.random.default_rng(2)
        for _ in range(20):
            yield [r.normal(size=(1, 16)).astype(np.float32)]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


@pytest.fixture(scope="module")
def gather_mask():
    """GATHER with a 4096-entry int64 index constant, SELECT_V2 with a (1, 4096) bool mask constant."""
    rng = np.random.default_rng(0)
    idx = tf.constant(rng.integers(0, 64, 4096).astype(np.int64))
    mask = tf.constant(rng.random((1, 4096)) < 0.2)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([64], tf.float32)])
        def f(self, x):
            return tf.where(mask, tf.gather(x, idx)[None], 0.0)

    m = M()
    return tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m).convert()


def _constants(data):
    """{tensor name: (type name, shape, buffer bytes)} of the constants of subgraph 0."""
    m = fb.read_model(data)
    return {fb.tensor_name(t): (fb.TYPE_NAMES[t.type], list(t.shape), fb.buffer_bytes(m, t.buffer))
            for t in m.subgraphs[0].tensors if t.buffer > 0 and fb.buffer_size(m, t.buffer)}


def _decoded_types(data):
    """Type names of the HuffDecode outputs of ``data``."""
    m = fb.read_model(data)
    return sorted(fb.TYPE_NAMES[m.subgraphs[s].tensors[o].type] for s, _, o in export._pack.packed_tensors(m))


def _outputs(content, xs, **kwargs):
    it = runtime.Interpreter(model_content=content, **kwargs)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for x in xs:
        it.set_tensor(inp["index"], x.reshape(inp["shape"]).astype(inp["dtype"]))
        it.invoke()
        res.append(it.get_tensor(out["index"]).copy())
    return np.stack(res)


ROUTES = [{}, {"backend": "tensorflow"}, {"backend": "tensorflow", "decode": "op"}, {"weights": "compressed", "max_density": 1.0}]


def test_int16x8_int64_biases_pack_and_run_bit_exact(int16x8):
    """The hidden layer's int64 bias (2048 x 8 = 16,384 B) now packs (sparse: 74 % of it is 0);
    sizes: docs/results/int_biases.json (benchmarks/int_biases.py, row int16x8).
    Outputs bit-identical to the plain model on every route."""
    consts = _constants(int16x8)
    bias = [n for n, (t, s, _) in consts.items() if t == "int64" and s == [UNITS]]
    assert len(bias) == 1 and len(consts[bias[0]][2]) == 8 * UNITS
    with pytest.warns(UserWarning, match=r"int64 needs packed format version 3 .*pack\(version=2\)"):
        p2 = export.pack(int16x8, version=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing refused by default
        p3 = export.pack(int16x8)
    assert "int64" not in _decoded_types(p2) and "int64" in _decoded_types(p3)
    assert b"DCHF\x03" in p3 and b"DCHF\x03" not in p2  # int8 weights stay version 2 in both
    assert len(p3) < len(p2) - 12_000 < len(int16x8)
    row = next(r for r in export.inspect(int16x8).rows if r.name == bias[0])
    assert row.status == "packable" and row.packed_bytes < 4_000
    xs = np.random.default_rng(3).normal(size=(6, 16)).astype(np.float32)
    want = _outputs(int16x8, xs)
    for kw in ROUTES:
        np.testing.assert_array_equal(_outputs(p3, xs, **kw), want, err_msg=str(kw))


def test_int16x8_unpack_python_and_c_restore_every_constant(int16x8):
    packed = export.pack(int16x8)
    want = _constants(int16x8)
    assert _constants(export.unpack(packed)) == want
    assert _constants(runtime.unpack(packed)) == want  # the C dc_unpack


def test_int64_gather_index_and_bool_mask_pack_and_run_bit_exact(gather_mask):
    """The converter keeps both constants in their own types; both pack (38,716 B -> 6,000 B),
    the GATHER / SELECT_V2 outputs stay bit-identical, both unpackers restore them."""
    types = sorted(t for t, _, _ in _constants(gather_mask).values())
    assert "int64" in types and "bool" in types
    packed = export.pack(gather_mask)
    assert _decoded_types(packed) == ["bool", "int64"]
    assert len(packed) < len(gather_mask) // 4
    xs = np.random.default_rng(4).normal(size=(3, 64)).astype(np.float32)
    want = _outputs(gather_mask, xs)
    for kw in ROUTES:
        np.testing.assert_array_equal(_outputs(packed, xs, **kw), want, err_msg=str(kw))
    consts = _constants(gather_mask)
    assert _constants(export.unpack(packed)) == consts
    assert _constants(runtime.unpack(packed)) == consts


def test_cli_packs_and_inspects_version3_tensors(gather_mask, tmp_path):
    src, dst = tmp_path / "m.tflite", tmp_path / "p.tflite"
    src.write_bytes(gather_mask)
    r = em.cli("pack", src, dst)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _decoded_types(dst.read_bytes()) == ["bool", "int64"]
    r = em.cli("inspect", dst)
    assert r.returncode == 0 and "int64" in r.stdout and "bool" in r.stdout, r.stdout + r.stderr


def test_a_bool_buffer_holding_other_bytes_stays_raw_with_the_reason(gather_mask):
    """A bool constant whose buffer holds a byte other than 0 / 1 (a malformed file: TFLite's
    bool is one byte, 0 or 1) cannot be a version 3 tensor (§16); pack keeps its bytes as they
    are and names the problem; the int64 index still packs."""
    m = fb.read_model(gather_mask)
    t = next(t for t in m.subgraphs[0].tensors if t.type == fb.schema.TensorType.BOOL and t.buffer > 0)
    data = bytearray(fb.buffer_bytes(m, t.buffer))
    data[5] = 2
    m.buffers[t.buffer].data = np.frombuffer(bytes(data), np.uint8)
    bad = fb.write_model(m)
    with pytest.warns(UserWarning, match=r"the codec refuses its data: bool tensor holds the byte value 2"):
        packed = export.pack(bad)
    assert _decoded_types(packed) == ["int64"]
    consts = _constants(packed)
    assert consts[fb.tensor_name(t)][2] == bytes(data)
