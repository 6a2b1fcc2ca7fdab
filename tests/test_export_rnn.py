"""to_tflite on recurrent and attention models (static batch signature, converter hooks) and the
ClusterSpreadWarning for clustered kernels the converter spreads (folded BatchNormalization)."""
import warnings

import keras
import numpy as np
import pytest

from dc_keras import export
from dc_keras.pipeline import predict_tflite

T, F = 10, 6


def _share(model, values=12, density=0.5, seed=0):
    """Gives every >= 2-D weight few distinct values (as clustering would), half of them zero."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w in ws:
            if w.ndim >= 2 and w.size >= 64:
                codebook = rng.uniform(-0.5, 0.5, values).astype("float32")
                w = rng.choice(codebook, w.shape) * (rng.random(w.shape) < density)
            new.append(w.astype("float32"))
        layer.set_weights(new)
    return model


def _sequence_model(kind, units=24):
    inp = keras.Input((T, F))
    if kind == "mha":
        h = keras.layers.Dense(32)(inp)
        h = h + keras.layers.MultiHeadAttention(4, 16, name="mha")(h, h)
        h = keras.layers.LayerNormalization()(h)
        h = keras.layers.GlobalAveragePooling1D()(h)
    else:
        cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}[kind]
        h = cell(units, name=kind)(inp)
    out = keras.layers.Dense(5, name="head")(h)
    return _share(keras.Model(inp, out))


def _x(n, seed=1):
    return np.random.default_rng(seed).normal(size=(n, T, F)).astype("float32")


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn", "mha"])
def test_sequence_export_matches_keras_and_packs_bit_exact(kind):
    model = _sequence_model(kind)
    x = _x(7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = export.to_tflite(model, pack=False)
        packed = export.to_tflite(model)
    static = [w for w in caught if "fixed batch of 1" in str(w.message)]
    assert len(static) == (0 if kind == "mha" else 2), [str(w.message) for w in caught]
    assert not [w for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    report = export.inspect(packed)
    assert report.packed and any(r.status == "packed" for r in report.rows), str(report)
    assert len(packed) < len(plain)
    want = model.predict(x, verbose=0)
    got_plain = predict_tflite(plain, x)
    got_packed = predict_tflite(packed, x)
    assert got_plain.shape == want.shape
    np.testing.assert_allclose(got_plain, want, rtol=1e-4, atol=1e-5)
    assert got_packed.tobytes() == got_plain.tobytes()
    assert export.unpack(packed) is not None


def _while_constant_inputs(data):
    """Names of the constants of at least 256 B (pack's min_bytes) that feed a WHILE op: its loop state."""
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(data)
    names = set()
    for sg in m.subgraphs:
        for op in sg.operators or []:
            if fb.opcode_name(m, op) == "WHILE":
                names |= {fb.tensor_name(sg.tensors[i]) for i in op.inputs
                          if i >= 0 and fb.buffer_size(m, sg.tensors[i].buffer) >= 256}
    return names


def test_lstm_loop_state_is_packed_and_runs_bit_exact():
    """A trained, clustered LSTM(128) of the model zoo (tests/data). Its 512 B zero state and
    tensor-list accumulator feed the WHILE op as loop variables; pack refused them ("loop state of a
    WHILE op ...", after an earlier packer's file failed at invoke), so every LSTM/GRU export warned
    "2 constant tensor(s) ... not packed" although the user could do nothing. The WHILE kernels copy
    their inputs and never write them: packed now (this file: 20,880 -> 20,624 B), and the packed file
    runs bit for bit as the unpacked one on LiteRT and TF (delegate, op route on built-in kernels);
    TFLM in test_micro.py."""
    import os

    import tensorflow as tf

    from dc_keras import runtime

    with open(os.path.join(os.path.dirname(__file__), "data", "zoo_lstm128.packed.tflite"), "rb") as f:
        plain = export.unpack(f.read())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing refused any more: no warning
        packed = export.pack(plain)
    state = _while_constant_inputs(plain)
    assert len(state) == 2, state
    rows = {r.name: r.status for r in export.inspect(packed).rows}
    assert all(rows[name] == "packed" for name in state), rows
    x = np.random.default_rng(2).normal(size=(3, 32, 8)).astype("float32")
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()
    builtin = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    for kwargs in ({"backend": "tensorflow"}, {"backend": "tensorflow", "decode": "op", "experimental_op_resolver_type": builtin}):
        outs = []
        for data in (plain, packed):
            it = runtime.Interpreter(model_content=data, **{k: v for k, v in kwargs.items() if data is packed or k != "decode"})
            it.allocate_tensors()
            got = []
            for row in x:  # batch 1, one invoke after the other: the loop state must start from it each time
                it.set_tensor(it.get_input_details()[0]["index"], row[None])
                it.invoke()
                got.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
            outs.append(np.stack(got))
        assert outs[0].tobytes() == outs[1].tobytes(), kwargs
    assert any(r.status == "packed" and r.raw_bytes > 60000 for r in export.inspect(packed).rows)


@pytest.fixture(scope="module")
def rnn64():
    """rnn64(kind) -> (plain, packed, warnings): _sequence_model(kind, units=64) (seeded by _share)
    exported with to_tflite(pack=False, batch_size=1) and to_tflite(batch_size=1), and the warnings
    those gave; made once per kind for the tests below, which each converted the same model again."""
    made = {}

    def get(kind):
        if kind not in made:
            model = _sequence_model(kind, units=64)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                plain = export.to_tflite(model, pack=False, batch_size=1)
                packed = export.to_tflite(model, batch_size=1)
            made[kind] = plain, packed, [str(w.message) for w in caught]
        return made[kind]
    return get


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrent_export_packs_its_loop_state_without_a_warning(kind, rnn64):
    """Every LSTM/GRU export of 64 units warned "pack: 2 constant tensor(s), 256 B, not packed: ...
    loop state of a WHILE op": their zero initial state and accumulator are no longer refused, pack
    decides on them like any constant (at 64 units their one shared buffer does not pay for two
    HuffDecode ops: kept raw, which warns nothing; zoo LSTM128's packs), and the only warning left is
    the static-batch one (which batch_size=1 silences)."""
    plain, packed, said = rnn64(kind)
    assert not [m for m in said if "not packed" in m], said  # (_share's -0.0: its own note)
    rows = {r.name: r.status for r in export.inspect(packed).rows}
    state = _while_constant_inputs(plain)
    # one 256 B buffer read as [1,64] and [1,1,64], which two HuffDecode ops would not pay for: kept
    # raw, not refused (test_shared_loop_state_buffer_packs_only_when_it_saves_bytes)
    assert state and all(rows[name] == "kept" for name in state), (state, rows)
    x = _x(4)
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()


def _pack_keeping_raw(plain, keep):
    """``export.pack(plain)`` with the constants named in ``keep`` left raw (pack's planning told
    to leave them), to compare sizes with."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export import _pack

    plan = _pack._plan

    def without(model, *args, **kwargs):
        return {k: v for k, v in plan(model, *args, **kwargs).items()
                if fb.tensor_name(model.subgraphs[k[0]].tensors[k[1]]) not in keep}

    _pack._plan = without
    try:
        return export.pack(plain)
    finally:
        _pack._plan = plan


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_shared_loop_state_buffer_packs_only_when_it_saves_bytes(kind, rnn64):
    """An LSTM(64)'s (a GRU(64)'s) 256 B zero loop state is one buffer read by two tensors ([1,64]
    and [1,1,64]): packed, each needs its own HuffDecode op and packed tensor, but pack counted the
    256 B saving once per tensor, so the LSTM's to_tflite file was 16 B larger than with the state
    raw (15,664 vs 15,648 B here; d8d0e0d; the GRU's the same size both ways) and inspect called
    both "packable". The decision is now the buffer's: kept raw, the file is no larger, and inspect
    says why on both rows, of the unpacked file and the packed one. Bit-exact as before."""
    plain, packed, _ = rnn64(kind)  # (its warnings: _share's -0.0 note)
    state = _while_constant_inputs(plain)
    assert len(state) == 2, state
    assert len(packed) <= len(_pack_keeping_raw(plain, state)), len(packed)
    assert packed == export.pack(plain)
    x = _x(5, seed=4)
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()
    for data in (plain, packed):
        rows = {r.name: r for r in export.inspect(data).rows if r.name in state}
        assert set(rows) == state
        for name, row in rows.items():
            (other,) = state - {name}
            assert row.status == "kept" and row.packed_bytes is None, row
            assert row.reason.startswith("read by 2 tensors, each of which packed needs its own HuffDecode op: "
                                         "packed to "), row.reason
            assert "no saving on the 256 B buffer they share" in row.reason and repr(other) in row.reason


def test_pack_says_why_it_kept_the_loop_state_raw(tmp_path, rnn64):
    """`dc-keras pack` of the LSTM(64) file lists its 256 B zero loop state as kept raw (one buffer two
    tensors read: see above) with the reason that fits it. The line said "(typically weights neither
    pruned nor clustered)" for every constant kept raw, here for a constant of zeros."""
    import _export_models as em

    plain, _, _ = rnn64("lstm")  # to_tflite(_sequence_model("lstm", units=64), pack=False, batch_size=1)
    src = tmp_path / "lstm.tflite"
    src.write_bytes(plain)
    r = em.cli("pack", src, tmp_path / "lstm.packed.tflite", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    [line] = [x for x in r.stdout.splitlines() if x.startswith("kept raw: ")]
    assert line.startswith("kept raw: 1 constant tensor(s), 256 B, one buffer read by several tensors (a "
                           "recurrent layer's zero loop state"), line
    assert "neither pruned nor clustered" not in line, line


def test_static_batch_size_argument():
    model = _sequence_model("gru")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit batch_size gives no fixed-batch warning
        data = export.to_tflite(model, pack=False, batch_size=4)
    from dc_keras.runtime import Interpreter

    interp = Interpreter(model_content=data)
    assert list(interp.get_input_details()[0]["shape"]) == [4, T, F]
    x = _x(9)  # not a multiple of 4: predict_tflite pads the last batch
    np.testing.assert_allclose(predict_tflite(data, x), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(ValueError, match="batch_size"):
            export.to_tflite(model, batch_size=bad)


def test_converter_options_and_configure_hook():
    import tensorflow as tf

    model = _sequence_model("mha")
    seen = []

    def configure(converter):
        seen.append((converter.allow_custom_ops, list(converter.target_spec.supported_ops)))

    export.to_tflite(model, pack=False, configure=configure,
                     converter_options={"allow_custom_ops": True,
                                        "target_spec.supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
    assert seen == [(True, [tf.lite.OpsSet.TFLITE_BUILTINS])]
    with pytest.raises(ValueError, match="no attribute 'alow_custom_ops'"):
        export.to_tflite(model, converter_options={"alow_custom_ops": True})
    with pytest.raises(ValueError, match="no attribute 'target_spec.nope'"):
        export.to_tflite(model, converter_options={"target_spec.nope": 1})
    with pytest.raises(ValueError, match="converter_options must be a dict"):
        export.to_tflite(model, converter_options=[("allow_custom_ops", True)])
    with pytest.raises(ValueError, match="configure must be a callable"):
        export.to_tflite(model, configure="flex")


def test_converter_failure_is_one_clear_error():
    import tensorflow as tf

    model = _sequence_model("lstm")
    # Integer-only kernels without quantization cannot convert: the converter fails.
    with pytest.raises(RuntimeError, match="TFLite conversion failed.*converter_options"):
        export.to_tflite(model, pack=False, batch_size=1,
                         converter_options={"target_spec.supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]})


def _conv_bn_model(with_bn, seed=0):
    rng = np.random.default_rng(seed)
    inp = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(32, 3, name="conv_a")(inp)
    if with_bn:
        h = keras.layers.BatchNormalization(name="bn_a")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(32, 3, name="conv_b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="fc")(h))
    _share(model, values=16)
    if with_bn:
        bn = model.get_layer("bn_a")
        gamma, beta, mean, var = (w.shape for w in bn.get_weights())
        bn.set_weights([rng.uniform(0.5, 2, gamma).astype("float32"), rng.normal(size=beta).astype("float32"),
                        rng.normal(size=mean).astype("float32"), rng.uniform(0.5, 2, var).astype("float32")])
    return model


def test_cluster_spread_warning_names_tensor_counts_cause_and_fix():
    model = _conv_bn_model(with_bn=True)
    with pytest.warns(export.ClusterSpreadWarning) as caught:
        packed = export.to_tflite(model)
    messages = [str(w.message) for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    assert len(messages) == 1, messages  # conv_b, fc keep their 16 values: no warning for them
    msg = messages[0]
    assert "conv_a/kernel" in msg and "'conv_a'" in msg and "Conv2D" in msg
    assert "clustered to 17 distinct values in Keras" in msg  # 16 shared values + zero
    after = int(msg.split("but has ")[1].split(" ")[0])
    assert after > 100
    assert "BatchNormalization 'bn_a'" in msg and "fold_batchnorm" in msg
    tensor = msg.split("tensor '")[1].split("'")[0]
    rows = {r.name: r for r in export.inspect(export.unpack(packed)).rows}
    assert rows[tensor].distinct == after
    x = np.random.default_rng(3).normal(size=(4, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(predict_tflite(packed, x), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4)


def test_cluster_spread_warning_says_the_same_when_pack_strips_the_names():
    """With pack_options={"strip_strings": True} the packed file has no tensor names; the warning
    still says the spread kernel was packed (it said "left raw by the packer": it looked the
    kernel's name up among the packed file's names, all empty)."""
    model = _conv_bn_model(with_bn=True)
    said = []
    for options in (None, {"strip_strings": True}):
        with pytest.warns(export.ClusterSpreadWarning) as caught:
            export.to_tflite(model, pack_options=options)
        said.append([str(w.message) for w in caught if issubclass(w.category, export.ClusterSpreadWarning)])
    assert len(said[0]) == 1 and "so it was packed, but poorly" in said[0][0], said
    assert said[1] == said[0]


def test_no_cluster_spread_warning_without_bn_or_without_packing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ClusterSpreadWarning)
        export.to_tflite(_conv_bn_model(with_bn=False))
        export.to_tflite(_conv_bn_model(with_bn=True), pack=False)  # nothing reaches the packer


def test_cluster_spread_warning_for_per_channel_quantization():
    model = _conv_bn_model(with_bn=False)
    # Deterministic spread, whatever the initializer drew: channel c keeps only its values up to a
    # channel-specific magnitude, so the channels' max |w| (their int8 scales) differ while the
    # layer keeps its 17 shared values.
    kernel = model.get_layer("conv_a").kernel
    w = keras.ops.convert_to_numpy(kernel)
    levels = np.unique(np.abs(w[w != 0]))
    for c in range(w.shape[-1]):
        cap = levels[len(levels) // 2 + c % (len(levels) - len(levels) // 2)]
        w[..., c] = np.where(np.abs(w[..., c]) > cap, 0.0, w[..., c])
    kernel.assign(w)
    x = np.random.default_rng(4).normal(size=(16, 12, 12, 3)).astype("float32")
    with pytest.warns(export.ClusterSpreadWarning) as caught:
        export.to_tflite(model, quantize="int8", representative_data=x, per_channel=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    assert any("'conv_a'" in m for m in messages), messages  # 17 values -> a different scale per channel
    assert all("quantize='int8' quantizes per output channel" in m for m in messages), messages


def test_cluster_spread_warning_when_cluster_keeps_the_batchnorm():
    """The real flow: cluster(fold_batchnorm=False) leaves the BN, the converter folds it at export."""
    import dc_keras

    model = _conv_bn_model(with_bn=True)
    x = np.random.default_rng(5).normal(size=(8, 12, 12, 3)).astype("float32")
    y = np.arange(8) % 10
    kept = dc_keras.cluster(model, bits=4, fold_batchnorm=False)
    kept.compile("adam", "sparse_categorical_crossentropy")
    kept.fit(x, y, epochs=1, verbose=0)
    with pytest.warns(export.ClusterSpreadWarning, match=r"layer 'conv_a'.*BatchNormalization 'bn_a'"):
        export.to_tflite(dc_keras.strip(kept))
    folded = dc_keras.strip(dc_keras.cluster(model, bits=4))  # default: BN folded before k-means
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ClusterSpreadWarning)
        export.to_tflite(folded)


def test_time_distributed_and_conv_lstm_compress_export_and_pack_bit_exact():
    """The layers cluster now covers (TimeDistributed(Conv2D/Dense), ConvLSTM2D) reach the .tflite
    with their shared values and are packed (the TimeDistributed kernels were 'kept': 144 distinct
    values); packed runs bit-identical to unpacked."""
    import dc_keras

    inputs = keras.Input((3, 6, 6, 2))
    h = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3, padding="same"), name="td_conv")(inputs)
    h = keras.layers.ConvLSTM2D(8, 3, return_sequences=True, name="clstm")(h)
    h = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(h)
    h = keras.layers.TimeDistributed(keras.layers.Dense(16), name="td_fc")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(h)))
    clustered = dc_keras.cluster(model, bits=3)
    assert not clustered.compression_report.skipped, clustered.compression_report
    final = dc_keras.strip(clustered)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the static-batch note for ConvLSTM2D
        plain = export.to_tflite(final, pack=False)
    packed = export.pack(plain)
    big = [r for r in export.inspect(packed).rows if r.dtype == "float32" and len(r.shape) >= 2 and r.raw_bytes >= 512
           and r.distinct > 1]  # not the all-zero loop state (packed too, but not a clustered kernel)
    assert len(big) >= 5 and all(r.status == "packed" and r.distinct <= 2 ** 3 + 1 for r in big), \
        [(r.name, r.status, r.distinct) for r in big]
    x = np.random.default_rng(0).normal(size=(1, 3, 6, 6, 2)).astype("float32")
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()


class RnnEncoder(keras.layers.Layer):
    """A custom layer holding an LSTM (found inside a subclassed model too). No leading underscore in
    these class names: Keras 3.15 leaves a name scope open after the first call of a model whose
    class name starts with "_" (its auto name starts with "__"), and every layer built later in the
    process got that prefix in its variable paths (test_graphs.py failed after this file)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rnn = keras.layers.LSTM(4, name="inner_lstm")

    def call(self, x):
        return self.rnn(x)


class RnnSubclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.enc = RnnEncoder()
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(self.enc(x))


def _int8_rnn_models():
    seq = lambda layer: keras.Sequential([keras.Input((T, F)), layer, keras.layers.Dense(2)])  # noqa: E731
    sub = RnnSubclassed()
    sub(_x(1))
    return {
        "lstm": (seq(keras.layers.LSTM(4, name="lstm")), ["lstm"]),
        "gru": (seq(keras.layers.GRU(4, name="gru")), ["gru"]),
        "simple_rnn": (seq(keras.layers.SimpleRNN(4, name="simple_rnn")), ["simple_rnn"]),
        "bidirectional": (seq(keras.layers.Bidirectional(keras.layers.GRU(4), name="bidi")), ["bidi"]),
        "conv_lstm": (keras.Sequential([keras.Input((3, 6, 6, 2)), keras.layers.ConvLSTM2D(2, 3, name="clstm"),
                                        keras.layers.Flatten(), keras.layers.Dense(2)]), ["clstm"]),
        "subclassed": (sub, ["inner_lstm"]),
    }


def test_int8_of_recurrent_layers_is_refused_before_the_converter(monkeypatch):
    """TF's int8 calibrator segfaults on an LSTM/GRU/SimpleRNN loop (TF 2.21): the user's process
    died. to_tflite refuses before converting, naming the layers and what works instead. The
    converter is replaced so that reaching it fails the test instead of crashing pytest."""
    from dc_keras.export import _convert

    def reached(*args, **kwargs):
        raise AssertionError("the converter was reached: TF's int8 calibrator segfaults on recurrent loops")

    monkeypatch.setattr(_convert, "_convert", reached)
    monkeypatch.setattr(_convert, "_in_tensorflow_child", reached)
    for kind, (model, names) in _int8_rnn_models().items():
        x = np.zeros((4, *model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else (4, T, F), "float32")
        with pytest.raises(ValueError) as info:
            export.to_tflite(model, quantize="int8", representative_data=x)
        text = str(info.value)
        assert all(repr(n) in text for n in names), (kind, text)
        assert "quantize='dynamic'" in text and "unroll=True" in text and "segmentation fault" in text, text


@pytest.mark.long  # two conversions of recurrent models: make test-long
def test_int8_alternatives_named_in_the_refusal_work():
    """What the refusal offers: quantize='dynamic' of the LSTM loop, full int8 of unroll=True layers."""
    from dc_keras.runtime import Interpreter

    x = _x(8)

    def run(data, model):
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.set_tensor(inp["index"], x[:1])
        it.invoke()
        return it.get_tensor(out["index"]), model.predict(x[:1], verbose=0)

    lstm = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the static batch of 1
        got, want = run(export.to_tflite(lstm, quantize="dynamic"), lstm)
    np.testing.assert_allclose(got, want, atol=0.05)
    unrolled = keras.Sequential([keras.Input((T, F)), keras.layers.GRU(4, unroll=True), keras.layers.Dense(2)])
    got, want = run(export.to_tflite(unrolled, quantize="int8", representative_data=x), unrolled)
    np.testing.assert_allclose(got, want, atol=0.05)
