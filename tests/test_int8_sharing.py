"""int8 exports of a clustered model keep the weight sharing (issue 15): per-tensor scales map each
kernel's shared values to as many int8 codes, so the packed int8 file is about as small as the
packed float one. The full measurement on trained LeNet-300-100 is benchmarks/bench_quantized.py."""
import numpy as np
import pytest

import _export_models as em
from dc_keras import export
from dc_keras import _flatbuffer as fb


def _int8_kernels(content):
    m = fb.read_model(content)
    return [(np.frombuffer(fb.buffer_bytes(m, t.buffer), np.int8), t.quantization)
            for t in m.subgraphs[0].tensors
            if t.type == fb.schema.TensorType.INT8 and len(fb.buffer_bytes(m, t.buffer)) >= 1024]


@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_clustered_model_quantizes_per_tensor_and_packs_like_float(quantize):
    model = em.keras_model("dense")
    rep = em.inputs("dense", 32, seed=5) if quantize == "int8" else None  # calibrates int8 only
    float_packed = export.to_tflite(model)
    # per tensor is the default for clustered models (docs/quantization.md)
    auto = export.to_tflite(model, quantize=quantize, representative_data=rep, pack=False)
    per_channel = export.to_tflite(model, quantize=quantize, representative_data=rep, pack=False,
                                   per_channel=True)
    kernels = [w.numpy() for w in model.weights if w.numpy().ndim == 2 and w.numpy().size >= 1024]
    distinct_float = sorted(np.unique(k).size for k in kernels)
    got = _int8_kernels(auto)
    assert len(got) == len(kernels)
    for _codes, q in got:
        assert len(q.scale) == 1  # per tensor
    # shared values -> at most as many int8 codes (two may round to one code)
    assert sorted(np.unique(c).size for c, _ in got) <= distinct_float
    assert max(np.unique(c).size for c, _ in _int8_kernels(per_channel)) > max(distinct_float)
    packed, packed_pc = export.pack(auto), export.pack(per_channel)
    assert len(packed) < len(packed_pc)
    # each packed kernel is no larger than the packed float kernel (this toy model's fixed int8
    # overhead - quantization tables, int32 biases - is not the point; LeNet: bench_quantized.py)
    def kernel_sizes(content):
        return {r.shape: r.packed_bytes for r in export.inspect(content).rows if r.status == "packed"}

    fsz, qsz = kernel_sizes(float_packed), kernel_sizes(packed)
    assert {tuple(k.T.shape) for k in kernels} <= set(qsz) <= set(fsz)
    for shape, n in qsz.items():
        assert n <= 1.05 * fsz[shape], (shape, n, fsz[shape])
    # the quantized model still computes the float model's function
    xs = em.inputs("dense", 50, seed=8)
    from dc_keras import runtime

    ref = em.run(runtime.Interpreter(model_content=float_packed, backend="litert"), xs)
    out = em.run(runtime.Interpreter(model_content=packed, backend="litert"), xs)
    assert np.mean(np.argmax(out, -1) == np.argmax(ref, -1)) >= 0.9
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


def test_unclustered_model_keeps_per_channel():
    import keras

    keras.utils.set_random_seed(2)
    m = keras.Sequential([keras.Input((40,)), keras.layers.Dense(64)])  # 2560 distinct weights
    data = export.to_tflite(m, quantize="int8", representative_data=np.random.rand(8, 40), pack=False)
    assert [len(q.scale) for _, q in _int8_kernels(data)] == [64]


def test_dynamic_range_default_is_per_tensor_for_clustered_models():
    model = em.keras_model("dense")
    got = _int8_kernels(export.to_tflite(model, quantize="dynamic", pack=False))
    assert got and all(len(q.scale) == 1 for _, q in got)


def _depthwise_model():
    """Clustered Conv -> DepthwiseConv(128 channels: 1,152 weights, enough for the converter to
    quantize it) -> 1x1 Conv -> Dense, the DS-CNN pattern whose per-tensor dynamic-range file gave NaN."""
    import keras

    keras.utils.set_random_seed(4)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(128, 3, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(64, 1, activation="relu")(h)
    out = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    return em.cluster_and_prune(keras.Model(inp, out), levels=12)


def _outputs(content, xs, **kwargs):
    from dc_keras import runtime

    return em.run(runtime.Interpreter(model_content=content, backend="litert", **kwargs), xs)


def test_dynamic_range_per_tensor_depthwise_is_finite_and_keeps_the_sharing():
    """TFLite's hybrid DEPTHWISE_CONV_2D reads one scale per channel; a per-tensor filter made it read
    past the one scale (NaN / 1e38 outputs). The default dynamic export of a clustered model keeps
    per-tensor int8 codes and must compute the float model's function on every kernel set."""
    model = _depthwise_model()
    xs = np.random.RandomState(3).rand(6, 8, 8, 3).astype(np.float32)
    ref = _outputs(export.to_tflite(model, pack=False), xs)
    plain = export.to_tflite(model, quantize="dynamic", pack=False)
    m = fb.read_model(plain)
    depthwise = [op for op in m.subgraphs[0].operators if fb.opcode_name(m, op) == "DEPTHWISE_CONV_2D"]
    dw_filter = m.subgraphs[0].tensors[int(depthwise[0].inputs[1])]
    kernels = _int8_kernels(plain)
    assert len(kernels) == 3 and all(len(q.scale) == 1 for _, q in kernels)  # conv, dw, 1x1 conv
    assert all(np.unique(c).size <= 25 for c, _ in kernels)  # 2 * 12 levels + 0: the sharing stays
    packed = export.pack(plain)
    r = em.no_default_delegates("litert")
    for content in (plain, packed):
        for kwargs in ({}, {"experimental_op_resolver_type": r}):
            out = _outputs(content, xs, **kwargs)
            assert np.isfinite(out).all()
            np.testing.assert_allclose(out, ref, atol=0.02 * np.abs(ref).max())
    assert _outputs(packed, xs).tobytes() == _outputs(plain, xs).tobytes()
    # the depthwise filter is int8 (one scale) read through a DEQUANTIZE, not by the hybrid kernel
    assert dw_filter.type == fb.schema.TensorType.FLOAT32


def test_misread_depthwise_file_is_refused():
    """Forcing TF's MLIR dynamic-range quantizer back (the converter's default) writes the per-tensor
    hybrid depthwise filter the kernel misreads: to_tflite refuses it, naming the filter and the fix."""
    model = _depthwise_model()
    with pytest.raises(RuntimeError, match=r"DEPTHWISE_CONV_2D.*one scale per channel.*per_channel=True"):
        export.to_tflite(model, quantize="dynamic", pack=False,
                         converter_options={"experimental_new_dynamic_range_quantizer": True})
    per_channel = export.to_tflite(model, quantize="dynamic", pack=False, per_channel=True,
                                   converter_options={"experimental_new_dynamic_range_quantizer": True})
    assert all(len(q.scale) > 1 for _, q in _int8_kernels(per_channel))
