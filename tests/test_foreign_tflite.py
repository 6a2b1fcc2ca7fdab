"""``pack`` / ``inspect`` on .tflite files made elsewhere: what they say about the constants pack
leaves raw for reasons of the file's structure (a buffer shared with a tensor pack cannot pack,
WHILE loop state), worded the same by both."""
import numpy as np
import pytest

import _export_models as em
from dc_keras import export
from dc_keras import _flatbuffer as fb
from dc_keras.export import _pack


def _with_weight_also_an_output():
    """The dense model with a new tensor reading its first packed weight's buffer listed as a graph
    output (a constant output sharing a weight's buffer, as buffer-deduplicating tools write):
    (file, name of that weight)."""
    plain = em.tflite("dense", None)
    s, _, w = _pack.packed_tensors(fb.read_model(export.pack(plain)))[0]
    m = fb.read_model(plain)
    sg = m.subgraphs[s]
    weight = sg.tensors[w]
    twin = fb.schema.TensorT()
    twin.name, twin.type, twin.shape, twin.buffer = "weights_out", weight.type, list(weight.shape), weight.buffer
    sg.tensors.append(twin)
    sg.outputs = list(sg.outputs) + [len(sg.tensors) - 1]
    return fb.write_model(m), fb.tensor_name(weight)


def test_weight_sharing_its_buffer_with_an_output_is_reported_by_pack_and_inspect():
    """pack empties a buffer only when every tensor reading it packs: a weight whose buffer a graph
    output also reads stays raw. pack's warning named only the output, and inspect called the
    weight "packable" (counted in "packable to"): both now give it the shared buffer as reason."""
    data, name = _with_weight_also_an_output()
    _, stats = _pack.pack_with_stats(data)  # (pack's warnings come from its stats)
    refused = {n: why for n, _, why in stats["refused"]}
    assert refused["weights_out"] == "graph input/output"
    assert refused[name] == ("shares its buffer with tensor 'weights_out' (subgraph 0), which cannot be packed "
                             "(graph input/output): the data stays raw, stored once for both")
    with pytest.warns(UserWarning, match=f"{name} .*shares its buffer with tensor 'weights_out'"):
        export.pack(data)
    rows = {r.name: r for r in export.inspect(data).rows}
    assert (rows[name].status, rows[name].reason) == ("refused", refused[name])
    assert rows[name].packed_bytes is None
    assert (rows["weights_out"].status, rows["weights_out"].reason) == ("refused", "graph input/output")


def test_while_loop_state_is_reported_as_loop_state():
    """A constant input of a WHILE op (an initial state or tensor-list accumulator the loop writes
    into) was reported as "written by an operator (not a constant)" although it is a constant in
    the file: pack's warning and inspect now say it is WHILE loop state."""
    import tensorflow as tf

    rng = np.random.RandomState(0)
    w = (np.round(rng.randn(16, 16) * 4) / 8).astype(np.float32)
    init = (np.round(rng.randn(8, 16) * 4) / 8).astype(np.float32)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([8, 16], tf.float32)])
        def f(self, x):
            def body(i, h):
                return i + 1, tf.tanh(tf.matmul(h, tf.constant(w)) + x)

            return tf.while_loop(lambda i, _h: i < 3, body, [tf.constant(0), tf.constant(init)])[1]

    m = M()
    data = bytes(tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m).convert())
    reason = "loop state of a WHILE op (an initial value the loop writes its results into, not a read-only weight)"
    _, stats = _pack.pack_with_stats(data)
    assert [(nbytes, why) for _, nbytes, why in stats["refused"]] == [(init.nbytes, reason)]
    assert stats["packed_tensors"] == 1  # the loop body's weight
    assert [(r.raw_bytes, r.status, r.reason) for r in export.inspect(data).rows if r.status == "refused"] == \
        [(init.nbytes, "refused", reason)]


def test_inspect_keeps_what_pack_keeps_when_the_saving_would_not_pay_for_the_op():
    """A 384-byte constant that packs to ~338 B shrinks by min_saving, but not by the ~80 B a
    HuffDecode op and packed tensor add, so pack leaves it raw ("no tensor packed: ... `dc-keras
    inspect` says why"). inspect called it "packable" (counted in "packable to"); now it is "kept",
    with that reason, and what inspect calls packable is what pack packs."""
    import tensorflow as tf

    from dc_keras import codec

    rng = np.random.RandomState(0)
    for _ in range(200):  # 96 float32 over 64 values: ~12 % smaller packed, < 80 B saved
        c = rng.choice(rng.randn(64).astype(np.float32), size=96)
        size = len(codec.encode(c))
        if _pack._saves_enough(size, c.nbytes) and size + _pack._PER_TENSOR_OVERHEAD >= c.nbytes:
            break
    else:
        pytest.fail("no constant in the window")

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 96], tf.float32)])
        def f(self, x):
            return x * tf.constant(c)

    m = M()
    data = bytes(tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m).convert())
    _, stats = _pack.pack_with_stats(data)
    assert stats["packed_tensors"] == 0 and export.pack(data) == data
    report = export.inspect(data)
    [row] = [r for r in report.rows if r.raw_bytes == c.nbytes]
    assert (row.status, row.packed_bytes) == ("kept", None)
    assert row.reason == (f"packs to {size} B, but a packed tensor adds ~{_pack._PER_TENSOR_OVERHEAD} B of "
                          f"HuffDecode op and tensor: no saving on {c.nbytes} B")
    assert report.packed_total == report.raw_total
