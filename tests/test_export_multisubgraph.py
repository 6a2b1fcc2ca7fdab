"""pack / unpack / run on a model with several subgraphs (WHILE and IF bodies hold the weights)."""
import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb


@pytest.fixture(scope="module")
def control_flow_tflite():
    import tensorflow as tf

    rng = np.random.RandomState(0)
    w1 = (np.round(rng.randn(32, 32) * 4) / 8).astype(np.float32)
    w2 = (np.round(rng.randn(32, 16) * 4) / 8).astype(np.float32)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
        def f(self, x):
            def body(i, h):
                return i + 1, tf.tanh(tf.matmul(h, tf.constant(w1)))

            _, h = tf.while_loop(lambda i, _h: i < 3, body, [tf.constant(0), x])
            return tf.cond(tf.reduce_sum(h) > 0, lambda: tf.matmul(h, tf.constant(w2)),
                           lambda: tf.matmul(h - 1.0, tf.constant(w2)) * 2.0)

    m = M()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m)
    return bytes(conv.convert())


def test_multi_subgraph_pack_run_unpack(control_flow_tflite):
    plain = control_flow_tflite
    packed = export.pack(plain, min_bytes=64)
    model = fb.read_model(packed)
    assert len(model.subgraphs) > 2
    per_sg = [sum(fb.opcode_name(model, op) == "HuffDecode" for op in sg.operators) for sg in model.subgraphs]
    assert sum(1 for n in per_sg if n) >= 2, per_sg  # weights packed inside more than one subgraph
    xs = np.random.RandomState(4).randn(12, 32).astype(np.float32)
    for backend, decode in [("litert", "delegate"), ("tensorflow", "delegate"), ("tensorflow", "op")]:
        r = em.no_default_delegates(backend)
        ref = em.run(em.reference_interpreter(backend, plain, experimental_op_resolver_type=r), xs)
        got = em.run(runtime.Interpreter(model_content=packed, backend=backend, decode=decode,
                                         experimental_op_resolver_type=r), xs)
        np.testing.assert_array_equal(got, ref)
    back = fb.read_model(export.unpack(packed))
    orig = fb.read_model(plain)
    for sa, sb in zip(orig.subgraphs, back.subgraphs):
        assert [fb.buffer_bytes(orig, t.buffer) for t in sa.tensors] == \
               [fb.buffer_bytes(back, t.buffer) for t in sb.tensors]
