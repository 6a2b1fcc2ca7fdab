"""``pack`` / ``inspect`` on .tflite files made elsewhere: what they say about the constants pack
leaves raw for reasons of the file's structure (a buffer shared with a tensor pack cannot pack),
worded the same by both; a WHILE op's constant loop state, which pack packs."""
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
    output also reads stays raw (TF's converter deduplicates read-only buffers, so e.g. a WHILE
    loop's zero initial state and a zero constant of the same bytes share one). pack's warning named only the output, and inspect called the
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


def test_weight_sharing_its_buffer_with_a_tensor_of_another_size_is_refused_by_both(tmp_path):
    """A small weight reading the first bytes of a larger one's buffer (larger than it declares;
    TFLite runs such a file): pack kept the buffer raw, naming only the small weight, and inspect
    called the large one "packable" (counted in "packable to"), before and after packing; now both
    give the large weight the shared buffer as its reason, with the small one's."""
    plain = em.tflite("dense", None)
    m = fb.read_model(plain)
    s = 0
    sg = m.subgraphs[s]
    kernel, bias = (sg.tensors[w] for w in sorted((w for _, _, w in _pack.packed_tensors(fb.read_model(
        export.pack(plain)))), key=lambda w: -len(fb.buffer_bytes(m, sg.tensors[w].buffer)))[::2])
    bias.buffer = kernel.buffer
    data = fb.write_model(m)
    name, bias_name = fb.tensor_name(kernel), fb.tensor_name(bias)
    nbytes = len(fb.buffer_bytes(m, kernel.buffer))
    mismatch = f"buffer holds {nbytes} B, not the float32{[int(d) for d in bias.shape]} the tensor declares"
    shared = (f"shares its buffer with tensor {bias_name!r} (subgraph {s}), which cannot be packed ({mismatch}): "
              "the data stays raw, stored once for both")
    out, stats = _pack.pack_with_stats(data)
    refused = {n: why for n, _, why in stats["refused"]}
    assert (refused[bias_name], refused[name]) == (mismatch, shared)
    packed = fb.read_model(out)
    (t,) = [t for t in packed.subgraphs[s].tensors if fb.tensor_name(t) == name]
    assert len(fb.buffer_bytes(packed, t.buffer)) == nbytes  # kept raw: read by both
    for f in (data, out):
        report = export.inspect(f)
        rows = {r.name: r for r in report.rows}
        assert (rows[name].status, rows[name].reason, rows[name].packed_bytes) == ("refused", shared, None)
        assert (rows[bias_name].status, rows[bias_name].reason) == ("refused", mismatch)


def test_refused_totals_count_a_shared_buffer_once(tmp_path, capsys):
    """Two refused tensors reading one buffer (a weight and a graph output sharing it) hold its bytes
    once in the file: pack's warning, the CLI's "not packed" line and inspect's "refused" total
    counted them twice."""
    from dc_keras import cli

    data, name = _with_weight_also_an_output()
    _, stats = _pack.pack_with_stats(data)
    sizes = {n: nbytes for n, nbytes, _ in stats["refused"]}
    assert len(sizes) == 2 and sizes[name] == sizes["weights_out"] > 0
    once = sizes[name]
    assert stats["refused_bytes"] == once
    with pytest.warns(UserWarning, match=f"2 constant tensor\\(s\\), {once} B, not packed"):
        export.pack(data)
    assert f"refused: 2 tensor(s), {once} B stay raw" in export.inspect(data).to_text()
    src = tmp_path / "m.tflite"
    src.write_bytes(data)
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert f"not packed: 2 constant tensor(s), {once} B " in capsys.readouterr().out


def test_while_loop_state_is_packed_and_runs_bit_exact():
    """A constant input of a WHILE op (an initial state the loop starts from) was reported as "written
    by an operator (not a constant)", then refused as "loop state of a WHILE op" (the loop was thought
    to write into it). The WHILE kernel copies its inputs into the loop and never writes them: pack
    packs it like any constant, and the packed file gives the unpacked file's outputs bit for bit,
    also over repeated invokes (the loop starts from the same decoded state each time)."""
    import tensorflow as tf

    from dc_keras import runtime

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
    packed, stats = _pack.pack_with_stats(data)
    assert list(stats["refused"]) == [] and stats["packed_tensors"] == 2  # the loop body's weight and the state
    row = [r for r in export.inspect(packed).rows if r.raw_bytes == init.nbytes]
    assert len(row) == 1 and row[0].status == "packed", row
    x = rng.randn(8, 16).astype(np.float32)
    for kwargs in ({}, {"backend": "tensorflow", "decode": "op",
                        "experimental_op_resolver_type": tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}):
        outs = []
        for content in (data, packed):
            it = runtime.Interpreter(model_content=content, **(kwargs if content is packed else
                                                               {k: v for k, v in kwargs.items() if k != "decode"}))
            it.allocate_tensors()
            got = []
            for k in range(3):
                it.set_tensor(it.get_input_details()[0]["index"], x * (k + 1))
                it.invoke()
                got.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
            outs.append(np.stack(got))
        assert outs[0].tobytes() == outs[1].tobytes(), kwargs


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
    assert row.reason == (f"packs to {size} B, but a packed tensor adds up to {_pack._PER_TENSOR_OVERHEAD} B of "
                          f"HuffDecode op and tensor: no saving on {c.nbytes} B")
    assert report.packed_total == report.raw_total


def _custom_options(data):
    """{(subgraph, op): the custom options every runtime reads}: inline, else at the file offset
    ``large_custom_options_offset`` (> 1) gives, as TFLite's InterpreterBuilder reads them."""
    m = fb.schema.ModelT.InitFromObj(fb.schema.Model.GetRootAs(data, 0))
    out = {}
    for s, sg in enumerate(m.subgraphs):
        for o, op in enumerate(sg.operators):
            if op.customOptions is not None and len(op.customOptions):
                out[(s, o)] = bytes(np.asarray(op.customOptions, np.uint8))
            elif op.largeCustomOptionsOffset > 1:
                out[(s, o)] = data[op.largeCustomOptionsOffset:op.largeCustomOptionsOffset + op.largeCustomOptionsSize]
    return out


def test_custom_options_stored_after_the_flatbuffer_survive_pack_and_unpack():
    """Writers of models over 2 GB store a custom op's options after the flatbuffer
    (Operator.large_custom_options_offset/_size, an absolute file offset). pack rewrites what
    follows the flatbuffer and kept the offset, so the packed file's custom op read other bytes as
    its options (here: past the end of the file); now they are moved inline, where TFLite reads
    them too, and pack, unpack and inspect keep them."""
    import tensorflow as tf

    w = (np.round(np.random.RandomState(0).randn(32, 64) * 4) / 8).astype(np.float32)

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
        def f(self, x):
            return tf.math.bessel_i0e(tf.matmul(x, w))  # no TFLite kernel: a custom op with options

    m = M()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m)
    conv.allow_custom_ops = True
    inline = bytes(conv.convert())
    [(key, options)] = _custom_options(inline).items()
    model = fb.schema.ModelT.InitFromObj(fb.schema.Model.GetRootAs(inline, 0))
    op = model.subgraphs[key[0]].operators[key[1]]
    op.customOptions, op.largeCustomOptionsOffset, op.largeCustomOptionsSize = None, 2**40, len(options)
    size = len(fb.write_model(model))  # the 8-byte fields keep the file size when set again
    op.largeCustomOptionsOffset = (size + 15) // 16 * 16
    data = fb.write_model(model)
    data += bytes(op.largeCustomOptionsOffset - len(data)) + options
    assert len(fb.write_model(model)) == size and _custom_options(data) == {key: options}

    packed = export.pack(data)
    assert _pack.packed_tensors(fb.read_model(packed))  # the weight packs
    assert list(_custom_options(packed).values()) == [options]
    assert list(_custom_options(export.unpack(packed)).values()) == [options]
    assert list(_custom_options(export.pack(data, buffers="external")).values()) == [options]
    assert export.inspect(data).rows
    cut = data[:-1]
    with pytest.raises(ValueError, match="custom options lie outside the file"):
        export.pack(cut)


def _with_unread_constant():
    """The dense model with one more constant, 16 KB of clustered float32 data no operator reads (as
    a tool that leaves a dead weight behind writes): (file, its name, its bytes)."""
    m = fb.read_model(em.tflite("dense", None))
    data = np.round(np.random.default_rng(0).normal(0, 1, 4096) * 2).astype("<f4")
    buf = fb.schema.BufferT()
    buf.data = np.frombuffer(data.tobytes(), np.uint8)
    m.buffers.append(buf)
    t = fb.schema.TensorT()
    t.name, t.type, t.shape, t.buffer = "dead_weight", fb.schema.TensorType.FLOAT32, [64, 64], len(m.buffers) - 1
    m.subgraphs[0].tensors.append(t)
    return fb.write_model(m), "dead_weight", data.nbytes


def test_a_constant_no_operator_reads_is_named_by_pack_as_by_inspect(tmp_path, capsys):
    """inspect listed a 16 KB constant no operator reads as "refused: no operator reads it", but pack
    left it raw without a word (its stats, warning and CLI "not packed" lines skipped that reason):
    the packed file kept 16,384 B the user was not told about."""
    from dc_keras import cli

    data, name, nbytes = _with_unread_constant()
    rows = {r.name: r for r in export.inspect(data).rows}
    assert (rows[name].status, rows[name].reason) == ("refused", "no operator reads it")
    packed, stats = _pack.pack_with_stats(data)
    assert stats["packed_tensors"] > 0 and (name, nbytes, "no operator reads it") in list(stats["refused"])
    with pytest.warns(UserWarning, match=f"{name} \\({nbytes} B\\): no operator reads it"):
        export.pack(data)
    src = tmp_path / "m.tflite"
    src.write_bytes(data)
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert f"  {name}: {nbytes} B: no operator reads it" in capsys.readouterr().out
    back = fb.read_model(packed)  # kept as it was
    t = next(t for t in back.subgraphs[0].tensors if fb.tensor_name(t) == name)
    assert fb.buffer_bytes(back, t.buffer) == fb.buffer_bytes(fb.read_model(data), len(fb.read_model(data).buffers) - 1)


def test_a_constant_that_packs_larger_than_raw_is_kept_for_that_reason():
    """A float32 weight of random bits packs to more than its 1,920 raw bytes; inspect's reason
    said "packs to N B, but a packed tensor adds ~80 B of HuffDecode op and tensor: no saving on
    1920 B", blaming the op's cost when the packed form alone is already no smaller."""
    from dc_keras import codec

    m = fb.read_model(em.tflite("dense", None))
    [w] = [t for t in m.subgraphs[0].tensors if list(t.shape) == [10, 48]]
    bits = np.random.default_rng(3).integers(0, 2**32, 480, dtype=np.uint32) & np.uint32(0xBFFFFFFF)  # finite
    values = bits.astype("<u4").view("<f4")
    m.buffers[w.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
    data = fb.write_model(m)
    size = len(codec.encode(values.reshape(10, 48)))
    assert size >= values.nbytes  # the case under test: no smaller packed
    [row] = [r for r in export.inspect(data).rows if r.name == fb.tensor_name(w)]
    assert (row.status, row.packed_bytes) == ("kept", None)
    assert row.reason == (f"packs to {size} B, no smaller than its {values.nbytes} B raw "
                          "(data the packed format cannot shrink)")
    _, stats = _pack.pack_with_stats(data)
    assert stats["packed_tensors"] > 0 and fb.tensor_name(w) not in [n for n, _, _ in stats["refused"]]


def test_a_buffer_no_tensor_refers_to_is_reported_by_pack_and_inspect(tmp_path, capsys):
    """A 16,384 B buffer no tensor and no metadata refers to (dead data a tool left in the file)
    stayed in pack's output, and neither pack (stats, warning, CLI) nor inspect said a word: a
    packed file of 19,328 B whose own model packs to 2,912 B. Now each names it; it is kept."""
    from dc_keras import cli

    m = fb.read_model(em.tflite("dense", None))
    dead = fb.schema.BufferT()
    dead.data = np.arange(16384, dtype=np.uint8)
    m.buffers.append(dead)
    data = fb.write_model(m)
    note = "1 buffer(s), 16384 B, that no tensor or metadata refers to: kept as they are"
    packed, stats = _pack.pack_with_stats(data)
    assert stats["packed_tensors"] > 0 and stats["unreferenced"] == (1, 16384)
    assert stats["refused"] == []
    back = fb.read_model(packed)
    assert dead.data.tobytes() in [fb.buffer_bytes(back, b) for b in range(len(back.buffers))]
    with pytest.warns(UserWarning, match=note.replace("(", "\\(").replace(")", "\\)")):
        export.pack(data)
    assert export.inspect(data).unreferenced == (1, 16384)
    assert "note: " + note in export.inspect(data).to_text()
    src = tmp_path / "m.tflite"
    src.write_bytes(data)
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert "note: " + note in capsys.readouterr().out
    _, plain_stats = _pack.pack_with_stats(em.tflite("dense", None))  # a converter's file has none
    assert plain_stats["unreferenced"] == (0, 0) and export.inspect(em.tflite("dense", None)).unreferenced == (0, 0)
