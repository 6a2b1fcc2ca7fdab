"""Issue 14: recurrent and attention layers (LSTM, GRU, SimpleRNN, Bidirectional, EinsumDense,
MultiHeadAttention), Conv1D/3D and Embedding are pruned and clustered (kernel and
recurrent_kernel; the four attention projections), round-trip through .keras with no
custom_objects, and strip back to plain layers."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from _compress_flow import MinimalCell, check_compressed, five_calls, random_data, run_tflite, wrappers_of

import dc_keras
from dc_keras.train import PruneWrapper


def sequence_model():
    inputs = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(12, 8, name="emb")(inputs)
    h = keras.layers.Conv1D(8, 3, padding="same", name="conv1d")(h)
    h = keras.layers.LSTM(8, return_sequences=True, name="lstm")(h)
    h = keras.layers.GRU(8, return_sequences=True, name="gru")(h)
    h = h + keras.layers.MultiHeadAttention(2, 4, name="mha")(h, h)
    h = keras.layers.EinsumDense("btd,de->bte", output_shape=(None, 8), name="einsum")(h)
    h = keras.layers.Bidirectional(keras.layers.SimpleRNN(4, name="srnn"), name="bi")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(h), name="seq")


KERNELS = ["emb", "conv1d", "lstm_cell", "gru_cell", "query", "key", "value", "attention_output", "einsum",
           "simple_rnn_cell", "out"]


@pytest.fixture(scope="module")
def seq_chain():
    """sequence_model() through five_calls (prune -> fit -> strip -> cluster -> fit -> strip):
    (pruned, clustered, final), trained once for the two tests below (each trained its own)."""
    return five_calls(sequence_model())


def test_rnn_attention_embedding_five_calls(seq_chain):
    pruned, clustered, final = seq_chain
    report = pruned.compression_report
    assert not report.skipped, report.skipped
    wrapped = {e["layer"]: e["weights"] for e in report.wrapped}
    assert wrapped["lstm"] == ["kernel", "recurrent_kernel"]
    assert wrapped["mha"] == ["query_kernel", "key_kernel", "value_kernel", "output_kernel"]
    assert wrapped["bi"] == ["forward_kernel", "forward_recurrent_kernel", "backward_kernel",
                             "backward_recurrent_kernel"]
    check_compressed(final, KERNELS)
    assert {type(l).__name__ for l in final.layers} >= {"LSTM", "GRU", "MultiHeadAttention", "Bidirectional"}
    # biases are left alone
    assert all(np.count_nonzero(keras.ops.convert_to_numpy(v)) == np.prod(v.shape) or "bias" not in v.path
               for v in final.weights if "bias" in v.path and "lstm" in v.path)


def conv3d_model():
    inputs = keras.Input((4, 4, 4, 2))
    h = keras.layers.Conv3D(4, 2, name="conv3d")(inputs)
    h = keras.layers.GlobalAveragePooling3D()(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(h))


def test_conv3d():
    _, _, final = five_calls(conv3d_model())
    check_compressed(final, ["conv3d", "out"])


def _load_in_fresh_process(paths, x_path):
    """Each of ``paths`` loaded by keras.saving.load_model in one new process (no custom_objects):
    its layers' class names (one stdout line per file) and its predictions on ``x_path``."""
    code = textwrap.dedent(f"""
        import numpy as np, keras, dc_keras
        for path in {[str(p) for p in paths]!r}:
            m = keras.saving.load_model(path)
            print(sorted(type(l).__name__ for l in m.layers))
            np.save(path + '.npy', m.predict(np.load({str(x_path)!r}), verbose=0))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == len(paths), r.stdout
    return [(line, np.load(str(p) + ".npy")) for line, p in zip(lines, paths)]


def test_keras_round_trip_without_custom_objects(tmp_path, seq_chain):
    # pruned: ConstantSparsity(0.5, 0), one epoch with PruningCallback; clustered: cluster(strip(pruned), bits=3)
    pruned, clustered, _ = seq_chain
    x, _ = random_data(pruned)
    np.save(tmp_path / "x.npy", x)
    pruned.save(tmp_path / "p.keras")
    clustered.save(tmp_path / "c.keras")
    loaded = _load_in_fresh_process([tmp_path / "p.keras", tmp_path / "c.keras"], tmp_path / "x.npy")
    for (out, pred), m, cls in zip(loaded, (pruned, clustered), ("PruneWrapper", "ClusterWrapper")):
        assert out.count(cls) == 8, out
        np.testing.assert_array_equal(pred, m.predict(x, verbose=0))


def test_single_layer_wrappers_for_rnn_and_attention():
    lstm = keras.layers.LSTM(4)
    lstm(np.zeros((1, 3, 2), "float32"))
    w = dc_keras.prune(lstm, dc_keras.schedules.ConstantSparsity(0.5, 0))
    assert [n for n, _, _ in dc_keras.train._base.compressible_weights(w.layer)] == ["kernel", "recurrent_kernel"]
    mha = keras.layers.MultiHeadAttention(2, 2)
    q = np.ones((1, 3, 4), "float32")
    ref = keras.ops.convert_to_numpy(mha(q, q))
    cw = dc_keras.cluster(mha, bits=12, preserve_sparsity=False)
    got = keras.ops.convert_to_numpy(cw(q, q))
    np.testing.assert_allclose(got, ref, atol=1e-3)  # 4096 centroids over a few dozen weights
    unbuilt = dc_keras.prune(keras.layers.MultiHeadAttention(2, 2), dc_keras.schedules.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match="call the layer once"):
        unbuilt(q, q)


def test_unsupported_layers_named_explicitly_give_accurate_errors():
    inputs = keras.Input((5, 3))
    h = keras.layers.LayerNormalization(name="ln")(inputs)
    h = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(3), MinimalCell(3)]), name="stacked")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(h))
    s = dc_keras.schedules.ConstantSparsity(0.5, 0)
    with pytest.raises(ValueError, match="'ln'.*normalization layer LayerNormalization: per-channel vectors, left dense by design"):
        dc_keras.prune(model, s, layers=["ln"])
    with pytest.raises(ValueError, match="'stacked'.*unsupported recurrent cell StackedRNNCells"):
        dc_keras.cluster(model, layers=["stacked"])
    pruned = dc_keras.prune(model, s)
    skipped = {e["layer"]: e["reason"] for e in pruned.compression_report.skipped}
    # the BatchNormalization fold is named only for a BatchNormalization (cluster folds no other)
    assert skipped == {"ln": "normalization layer LayerNormalization: per-channel vectors, left dense by design",
                       "stacked": "unsupported recurrent cell StackedRNNCells of LSTMCell, MinimalCell (supported: "
                                  "LSTM, GRU, SimpleRNN cells, alone or in StackedRNNCells; ConvLSTM1D/2D/3D)"}
    assert [w.name for w in wrappers_of(pruned, PruneWrapper)] == ["fc"]
    bn = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc"), keras.layers.BatchNormalization(name="bn")])
    skipped = {e["layer"]: e["reason"] for e in dc_keras.prune(bn, s).compression_report.skipped}
    assert skipped == {"bn": "normalization layer BatchNormalization: per-channel vectors, left dense by design "
                             "(cluster folds a BatchNormalization that follows a conv or Dense layer into it)"}


def time_distributed_model():
    inputs = keras.Input((3, 6, 6, 2))
    h = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3, name="conv"), name="td_conv")(inputs)
    h = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="td_pool")(h)
    h = keras.layers.TimeDistributed(keras.layers.Dense(16, name="fc"), name="td_dense")(h)
    h = keras.layers.TimeDistributed(keras.layers.LayerNormalization(), name="td_ln")(h)
    h = keras.layers.LSTM(4, name="lstm")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(h), name="td")


def test_time_distributed_layers_are_compressed(tmp_path):
    """TimeDistributed(Conv2D) / TimeDistributed(Dense) (video and sequence-tagging models) were
    left dense as 'unsupported layer type TimeDistributed': wrapped as a whole, like Bidirectional,
    with the inner layer's weight names; a TimeDistributed of an unsupported layer says which."""
    model = time_distributed_model()
    pruned, clustered, final = five_calls(model)
    wrapped = {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped}
    assert wrapped == {"td_conv": ["kernel"], "td_dense": ["kernel"], "lstm": ["kernel", "recurrent_kernel"],
                       "out": ["kernel"]}
    skipped = {e["layer"]: e["reason"] for e in pruned.compression_report.skipped}
    assert skipped["td_ln"].startswith("TimeDistributed of a normalization layer LayerNormalization: "), skipped
    check_compressed(final, ["conv", "fc", "out"])  # variable paths name the inner layers
    assert isinstance(final.get_layer("td_conv"), keras.layers.TimeDistributed)
    assert dc_keras.train._base.is_conv(final.get_layer("td_conv"))  # default 8 bits, as for Conv2D
    path = tmp_path / "td.keras"
    clustered.save(path)
    x, _ = random_data(model)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.models.load_model(path)(x)),
                                  keras.ops.convert_to_numpy(clustered(x)))


class _Scale(keras.layers.Layer):
    """A user's own layer with a weight and no get_prunable_weights()."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], shape[-1]), name="w")

    def call(self, x):
        return keras.ops.matmul(x, self.w)


def test_custom_layer_without_prunable_weights_is_reported_with_the_fix():
    """The report said 'unsupported layer type _Scale' for a user's own layer, as for a Keras layer
    dc_keras does not support: it now names the opt-in (get_prunable_weights())."""
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(_Scale(name="mine")(inputs)))
    skipped = {e["layer"]: e["reason"] for e in dc_keras.coverage(model).skipped}
    assert "get_prunable_weights()" in skipped["mine"] and "_Scale" in skipped["mine"], skipped
    with pytest.raises(ValueError, match=r"'mine'.*_Scale \(a custom layer: .*get_prunable_weights\(\)"):
        dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0), layers=["mine"])


@pytest.mark.parametrize("kind", ["1d", "2d"])
def test_conv_lstm_is_compressed(kind):
    """ConvLSTM1D/2D (precipitation / video models) were left dense: 'unsupported recurrent cell
    ConvLSTMCell'. Their cell has a kernel and a recurrent kernel like LSTM's (conv layout)."""
    if kind == "1d":
        inputs, rnn = keras.Input((3, 6, 2)), keras.layers.ConvLSTM1D(4, 3, name="clstm")
    else:
        inputs, rnn = keras.Input((3, 5, 5, 2)), keras.layers.ConvLSTM2D(4, 3, name="clstm")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(keras.layers.Flatten()(rnn(inputs))))
    pruned, clustered, final = five_calls(model)
    wrapped = {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped}
    assert wrapped == {"clstm": ["kernel", "recurrent_kernel"], "out": ["kernel"]}, pruned.compression_report
    check_compressed(final, ["conv_lstm_cell", "out"])
    assert isinstance(final.get_layer("clstm"), type(rnn))


def test_default_bits_treat_conv_lstm_as_conv():
    """bits=None gives the paper's widths: 8 for convolutions, 5 for the rest. ConvLSTM1D/2D/3D took
    the RNN default (5) although their kernels are convolution kernels; now 8 (also inside
    Bidirectional), while LSTM keeps 5 and a bits dict still wins."""
    inputs = keras.Input((3, 5, 5, 2))
    h = keras.layers.ConvLSTM2D(4, 3, return_sequences=True, name="clstm")(inputs)
    h = keras.layers.TimeDistributed(keras.layers.Flatten())(h)
    h = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bilstm")(h)
    h = keras.layers.LSTM(4, name="lstm")(h)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    clustered = dc_keras.cluster(model, bits=None)
    bits = {layer.name: layer.bits for layer in clustered.layers if isinstance(layer, dc_keras.train.ClusterWrapper)}
    assert bits == {"clstm": 8, "bilstm": 5, "lstm": 5, "out": 5}, bits
    assert {layer.name: layer.bits for layer in dc_keras.cluster(model, bits={"lstm": 3}).layers
            if isinstance(layer, dc_keras.train.ClusterWrapper)} == {"clstm": 8, "bilstm": 5, "lstm": 3, "out": 5}
    for rnn, shape in ((keras.layers.ConvLSTM1D(4, 3), (3, 6, 2)), (keras.layers.ConvLSTM3D(2, 2), (2, 3, 3, 3, 1))):
        inputs = keras.Input(shape)
        one = keras.Model(inputs, keras.layers.Bidirectional(rnn, name="bi")(inputs))
        assert dc_keras.cluster(one, bits=None).get_layer("bi").bits == 8


def test_group_query_attention_is_compressed(tmp_path):
    """GroupQueryAttention (grouped-query attention: fewer key/value heads than query heads) was left
    dense as 'unsupported layer type GroupQueryAttention' (1,616 of 1,667 parameters of this model).
    Wrapped as a whole, like MultiHeadAttention: its four projections are pruned and clustered, the
    wrapped model round-trips through .keras, and the packed .tflite gives the unpacked one's outputs."""
    inputs = keras.Input((6, 16))
    h = keras.layers.GroupQueryAttention(head_dim=8, num_query_heads=4, num_key_value_heads=2, name="gqa")(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling1D()(h)))
    pruned, clustered, final = five_calls(model, cluster_biases=True)
    assert not pruned.compression_report.skipped, pruned.compression_report.skipped
    names = ["query_kernel", "key_kernel", "value_kernel", "output_kernel"]
    assert {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped}["gqa"] == names
    check_compressed(final, ["query", "key", "value", "attention_output", "out"])
    biases = [v for v in final.get_layer("gqa").weights if v.path.endswith("/bias")]
    assert len(biases) == 4  # cluster_biases: at most 2**3 shared values besides the exact zeros
    assert all(len(np.unique(b[b != 0])) <= 8 for b in map(keras.ops.convert_to_numpy, biases)), biases
    assert type(final.get_layer("gqa")) is keras.layers.GroupQueryAttention
    x, _ = random_data(model)
    clustered.save(tmp_path / "gqa.keras")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "gqa.keras").predict(x, verbose=0),
                                  clustered.predict(x, verbose=0))
    raw = dc_keras.export.to_tflite(final, pack=False)
    outs = [run_tflite(content, x) for content in (raw, dc_keras.export.pack(raw))]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], final.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
