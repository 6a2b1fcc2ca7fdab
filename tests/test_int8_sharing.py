"""int8 exports of a clustered model keep the weight sharing (issue 15): per-tensor scales map each
kernel's shared values to as many int8 codes, so the packed int8 file is about as small as the
packed float one. The full measurement on trained LeNet-300-100 is benchmarks/bench_quantized.py."""
import numpy as np
import pytest

import _export_models as em
from dc_keras import export
from dc_keras.export import _flatbuffer as fb


def _int8_kernels(content):
    m = fb.read_model(content)
    return [(np.frombuffer(fb.buffer_bytes(m, t.buffer), np.int8), t.quantization)
            for t in m.subgraphs[0].tensors
            if t.type == fb.schema.TensorType.INT8 and len(fb.buffer_bytes(m, t.buffer)) >= 1024]


@pytest.mark.parametrize("quantize", ["int8", "dynamic"])
def test_clustered_model_quantizes_per_tensor_and_packs_like_float(quantize):
    model = em.keras_model("dense")
    rep = em.inputs("dense", 32, seed=5)
    float_packed = export.to_tflite(model)
    # int8: per tensor is the default for clustered models; dynamic: opt-in (docs/quantization.md)
    auto = export.to_tflite(model, quantize=quantize, representative_data=rep, pack=False,
                            **({} if quantize == "int8" else {"per_channel": False}))
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


def test_dynamic_range_default_stays_per_channel():
    """Per-tensor dynamic range is opt-in: TFLite's per-tensor hybrid kernels gave NaN outputs on a
    BatchNorm-folded DS-CNN (docs/quantization.md)."""
    model = em.keras_model("dense")
    got = _int8_kernels(export.to_tflite(model, quantize="dynamic", pack=False))
    assert got and all(len(q.scale) > 1 for _, q in got)
