"""The models people ship through the whole chain: prune -> fit(PruningCallback) -> strip -> cluster
-> fit -> strip -> to_tflite -> packed vs unpacked bit-exact (dc_keras.runtime), with a .keras round
trip (no custom_objects) at every stage and every layer left dense named, not silent.

keras.io's transformer examples (text classification, ViT) build their own layers the Keras way:
sublayers made in ``__init__`` and built by their first call in ``call()``, no ``build()``
(``TokenAndPositionEmbedding``, ``PatchEncoder``, ``TransformerBlock``)."""
import importlib.util
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import layers as L
from keras import ops

import dc_keras
from dc_keras import export
from dc_keras.pipeline import predict_tflite

MAXLEN, VOCAB, DIM = 8, 30, 8


@keras.saving.register_keras_serializable(package="test_keras_io_models_chain")
class TokenAndPositionEmbedding(L.Layer):
    """keras.io's text-classification-with-transformer layer, as written there (no build())."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.maxlen, self.vocab_size, self.embed_dim = maxlen, vocab_size, embed_dim
        self.token_emb = L.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = L.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = ops.arange(start=0, stop=ops.shape(x)[-1], step=1)
        return self.token_emb(x) + self.pos_emb(positions)

    def get_config(self):
        return {**super().get_config(), "maxlen": self.maxlen, "vocab_size": self.vocab_size,
                "embed_dim": self.embed_dim}


@keras.saving.register_keras_serializable(package="test_keras_io_models_chain")
class PrunableTokenAndPositionEmbedding(TokenAndPositionEmbedding):
    """The same, opted in as the "left dense" warning says: get_prunable_weights()."""

    def get_prunable_weights(self):
        return [self.token_emb.embeddings]


@keras.saving.register_keras_serializable(package="test_keras_io_models_chain")
class TransformerBlock(L.Layer):
    """keras.io's TransformerBlock (no build()): attention, a Sequential feed-forward, LayerNorms."""

    def __init__(self, embed_dim, num_heads, ff_dim, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.ff_dim = embed_dim, num_heads, ff_dim
        self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([L.Dense(ff_dim, activation="relu"), L.Dense(embed_dim)])
        self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = L.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        out1 = self.layernorm1(inputs + self.att(inputs, inputs))
        return self.layernorm2(out1 + self.ffn(out1))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim}


def _text_classifier(embedding=TokenAndPositionEmbedding):
    keras.utils.set_random_seed(40)
    inputs = keras.Input((MAXLEN,), dtype="int32")
    h = embedding(MAXLEN, VOCAB, DIM, name="tok_pos")(inputs)
    h = TransformerBlock(DIM, 2, 16, name="block")(h)
    h = L.GlobalAveragePooling1D()(h)
    h = L.Dense(16, activation="relu", name="fc")(h)
    return keras.Model(inputs, L.Dense(3, name="head")(h), name="text_transformer")


def _data():
    rng = np.random.default_rng(40)
    return rng.integers(0, VOCAB, size=(16, MAXLEN)).astype("int32"), rng.integers(0, 3, 16)


def _outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _round_trip(model, x, tmp_path, tag):
    """Saved and loaded (no custom_objects): the same outputs, bit for bit."""
    path = os.path.join(str(tmp_path), f"{tag}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _outputs(loaded, x).tobytes() == _outputs(model, x).tobytes(), tag
    return loaded


def _fit(model, x, y, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=list(callbacks))


def _chain(model, x, y, tmp_path):
    """The five calls with a round trip at each stage; returns (pruned, clustered, final, packed)."""
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))
    _fit(pruned, x, y, [dc_keras.PruningCallback()])
    _round_trip(pruned, x, tmp_path, "pruned")
    stripped = _round_trip(dc_keras.strip(pruned), x, tmp_path, "stripped")
    clustered = dc_keras.cluster(stripped, bits=3)
    _fit(clustered, x, y)
    _round_trip(clustered, x, tmp_path, "clustered")
    final = _round_trip(dc_keras.strip(clustered), x, tmp_path, "final")
    np.testing.assert_allclose(_outputs(final, x), _outputs(clustered, x), rtol=1e-5, atol=1e-6)
    packed, plain = export.to_tflite(final), export.to_tflite(final, pack=False)
    assert len(packed) < len(plain)
    out = predict_tflite(packed, x)
    assert out.tobytes() == predict_tflite(plain, x).tobytes()  # packed vs unpacked: bit-exact
    np.testing.assert_allclose(out, _outputs(final, x), rtol=1e-4, atol=1e-5)
    return pruned, clustered, final, packed


def test_keras_io_layers_that_build_in_call_are_copied_left_dense_and_named(tmp_path):
    """prune / cluster / strip / fold_batchnorm copy each layer from its config and build it from its
    build config: a layer without a build() of its own (keras.io's TokenAndPositionEmbedding,
    TransformerBlock: sublayers built by their first call) was only marked built, its sublayers held
    no weights, and every one of the four failed with "You called `set_weights(weights)` on layer
    'tok_pos' with a weight list of length 2, but the layer was expecting 0 weights". Such a layer is
    now built by running its call() symbolically, holds the original's weights, and is named in the
    "left dense" warning with the fix (get_prunable_weights)."""
    model = _text_classifier()
    x, y = _data()
    want = _outputs(model, x)
    for rewrite in (dc_keras.strip, dc_keras.train.fold_batchnorm):
        assert _outputs(rewrite(model), x).tobytes() == want.tobytes()
    with pytest.warns(UserWarning, match=r"(?s)left dense.*'tok_pos' \(TokenAndPositionEmbedding.*'block' "
                                         r"\(TransformerBlock.*get_prunable_weights"):
        pruned, clustered, final, _ = _chain(model, x, y, tmp_path)
    skipped = {e["layer"]: e["reason"] for e in pruned.compression_report.skipped}
    assert "get_prunable_weights" in skipped["tok_pos"] and "get_prunable_weights" in skipped["block"]
    assert sorted(e["layer"] for e in pruned.compression_report.wrapped) == ["fc", "head"]
    original = model.get_layer("tok_pos").get_weights()  # left dense: the weights it trained to, not reset
    assert [w.shape for w in final.get_layer("tok_pos").get_weights()] == [w.shape for w in original]
    fc = keras.ops.convert_to_numpy(final.get_layer("fc").kernel)
    assert np.mean(fc == 0) == 0.5 and np.unique(fc[fc != 0]).size <= 8


def test_a_layer_that_builds_in_call_and_declares_its_weights_is_compressed(tmp_path):
    """The same layer given get_prunable_weights() (what the warning asks for): the wrapper's build
    read the declared sublayer kernel before it existed ("You must build the layer before accessing
    `embeddings`"), and a .keras file of the pruned or clustered model failed to load the same way
    (Keras marks such a layer built when it loads it). It is now pruned and clustered, round-trips,
    and packs bit-exactly; cluster() starts from the trained embeddings (k-means on them, not on
    fresh initial values)."""
    model = _text_classifier(PrunableTokenAndPositionEmbedding)
    x, y = _data()
    clustered0 = dc_keras.cluster(model, bits=8, layers=["tok_pos"])  # 240 values, 256 clusters: ~no change
    table = keras.ops.convert_to_numpy(model.get_layer("tok_pos").token_emb.embeddings)
    shared = keras.ops.convert_to_numpy(dc_keras.strip(clustered0).get_layer("tok_pos").token_emb.embeddings)
    np.testing.assert_allclose(shared, table, atol=0.01)
    pruned, clustered, final, packed = _chain(model, x, y, tmp_path)
    wrapped = {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped}
    assert wrapped["tok_pos"] == ["embeddings"], wrapped
    emb = keras.ops.convert_to_numpy(final.get_layer("tok_pos").token_emb.embeddings)
    assert np.mean(emb == 0) == 0.5 and np.unique(emb[emb != 0]).size <= 8
    assert isinstance(final.get_layer("tok_pos"), PrunableTokenAndPositionEmbedding)
    row = [r for r in export.inspect(packed).rows if tuple(r.shape) == (VOCAB, DIM)]  # packed: _chain's to_tflite(final)
    assert row and row[0].status == "packed", row


def test_a_layer_that_cannot_be_built_from_its_input_shape_is_one_clear_error():
    """A layer with no build() whose call() does not run on one input of the shape it is given: one
    error naming the layer and the fix, not Keras's AttributeError from inside the wrapper."""

    class TwoInputs(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = L.Dense(4)

        def call(self, x):
            a, b = x  # needs two tensors
            return self.dense(a) + b

        def get_prunable_weights(self):
            return [self.dense.kernel]

    wrapper = dc_keras.train.PruneWrapper(TwoInputs(name="two"), dc_keras.schedules.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match=r"Cannot build TwoInputs 'two': it has no build\(\) method.*"
                                         r"Give the layer a build\(\) that builds its sublayers"):
        wrapper.build((None, 4))



@keras.saving.register_keras_serializable(package="test_keras_io_models_chain")
class CrossAttention(L.Layer):
    """A layer called on two inputs (query, context) that builds in its call(), declaring one
    kernel: its Dense has as many entries as each attention projection (16 x 16)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.att = L.MultiHeadAttention(2, 8)
        self.proj = L.Dense(16)

    def call(self, query, context):
        return self.proj(self.att(query, context))

    def get_prunable_weights(self):
        return [self.proj.kernel]


@keras.saving.register_keras_serializable(package="test_keras_io_models_chain")
class BuiltCrossAttention(CrossAttention):
    """The same with a build() of its own (two input shapes)."""

    def build(self, query_shape, context_shape):
        self.att.build(query_shape, context_shape)
        self.proj.build(query_shape)


def _cross_model(cls):
    keras.utils.set_random_seed(40)
    q, c = keras.Input((5, 16), name="query"), keras.Input((3, 16), name="context")
    h = L.GlobalAveragePooling1D()(cls(name="cross")(q, c))
    model = keras.Model([q, c], L.Dense(3, name="head")(h))
    rng = np.random.default_rng(40)
    x = [rng.random((16, 5, 16)).astype("float32"), rng.random((16, 3, 16)).astype("float32")]
    return model, x, rng.integers(0, 3, 16)


def test_a_layer_called_on_two_inputs_that_builds_in_call_goes_through_the_chain(tmp_path):
    """Built by a symbolic run of its first call's arguments (both tensors); a .keras file of the
    wrapped model records them ("call_inputs"), as Keras's load builds the wrapper from one shape."""
    model, x, y = _cross_model(CrossAttention)
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))
    _fit(pruned, x, y, [dc_keras.PruningCallback()])
    _round_trip(pruned, x, tmp_path, "pruned")
    assert pruned.get_layer("cross").get_config()["call_inputs"] == [[[None, 5, 16], "float32"],
                                                                      [[None, 3, 16], "float32"]]
    clustered = dc_keras.cluster(_round_trip(dc_keras.strip(pruned), x, tmp_path, "stripped"), bits=3)
    _fit(clustered, x, y)
    _round_trip(clustered, x, tmp_path, "clustered")
    final = _round_trip(dc_keras.strip(clustered), x, tmp_path, "final")
    kernel = keras.ops.convert_to_numpy(final.get_layer("cross").proj.kernel)
    assert np.mean(kernel == 0) == 0.5 and np.unique(kernel[kernel != 0]).size <= 8
    packed, plain = export.to_tflite(final), export.to_tflite(final, pack=False)
    assert predict_tflite(packed, dict(zip(["query", "context"], x))).tobytes() == \
        predict_tflite(plain, dict(zip(["query", "context"], x))).tobytes()


def test_no_spread_warning_for_an_unclustered_sublayer_tensor_of_the_same_size():
    """to_tflite matched each .tflite tensor to a clustered Keras kernel by the outer layer's name in
    the tensor's name and the element count: the custom layer's four attention projections (never
    clustered, 256 distinct values each) were each reported as its clustered Dense kernel (17
    values) "spread by the converter" -- four false ClusterSpreadWarnings. A tensor named after
    another sublayer of the layer is not that kernel's."""
    model, x, y = _cross_model(BuiltCrossAttention)
    final = dc_keras.strip(dc_keras.cluster(model, bits=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ClusterSpreadWarning)
        packed = export.to_tflite(final)
    assert predict_tflite(packed, dict(zip(["query", "context"], x))).tobytes() == \
        predict_tflite(export.to_tflite(final, pack=False), dict(zip(["query", "context"], x))).tobytes()


def test_pipeline_trains_a_model_that_ends_in_logits():
    """dc_keras.pipeline compiled every model with sparse_categorical_crossentropy on probabilities: a
    classifier ending in a plain Dense (logits, keras.io's usual head) trained on its logits read as
    probabilities and stayed near chance (35 % here, where the same model with a softmax reaches
    97 %), silently. The recipe now reads from the model's outputs which it gives: both train alike."""
    rng = np.random.default_rng(40)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32") + 2 * (x[:, 2] > 0)
    for activation in ("softmax", None):
        keras.utils.set_random_seed(40)
        model = keras.Sequential([keras.Input((8,)), L.Dense(32, activation="relu", name="fc1"),
                                  L.Dense(4, activation=activation, name="fc2")])
        kw = dict(batch_size=32, max_shift=0, verbose=0)
        baseline = dc_keras.pipeline.train_baseline(model, x, y, epochs=10, lr=1e-2, **kw)
        pruned = dc_keras.pipeline.prune_retrain(baseline, x, y, 0.5, epochs=3, **kw)
        shared = dc_keras.pipeline.cluster_finetune(pruned, x, y, bits=4, epochs=1, **kw)
        for stage, m in (("baseline", baseline), ("pruned", pruned), ("shared", shared)):
            accuracy = float(np.mean(np.argmax(_outputs(m, x), axis=-1) == y))
            assert accuracy > 0.9, (activation, stage, accuracy)


@pytest.mark.long  # ~40-60 s: a 4-stage ConvNeXt through the chain, four .keras round trips, two exports
def test_convnext_left_dense_layers_are_named_and_the_rest_packs_bit_exact(tmp_path):
    """docs/models.md: ConvNeXt's LayerScale and LayerNormalization are left dense and reported while
    the other layers compress, round-trip and pack bit-exactly (keras.applications' ConvNeXt builder
    at 4 stages of one block, 32 x 32 input: the same layer types as ConvNeXtTiny)."""
    from keras.src.applications.convnext import ConvNeXt

    keras.utils.set_random_seed(40)
    model = ConvNeXt(depths=[1, 1, 1, 1], projection_dims=[8, 16, 24, 32], default_size=32, input_shape=(32, 32, 3),
                     classes=3, classifier_activation=None, weights=None, name="convnext_small")
    rng = np.random.default_rng(40)
    x, y = (255 * rng.random((8, 32, 32, 3))).astype("float32"), rng.integers(0, 3, 8)
    pruned, clustered, final, _ = _chain(model, x, y, tmp_path)
    skipped = {e["layer"]: e["reason"] for e in pruned.compression_report.skipped}
    scales = [name for name, reason in skipped.items() if "LayerScale" in reason]
    norms = [name for name, reason in skipped.items() if "LayerNormalization" in reason]
    assert len(scales) == 4 and len(norms) == 9, skipped
    wrapped = {e["layer"] for e in clustered.compression_report.wrapped}
    assert len(wrapped) == 17 and not wrapped & set(skipped), wrapped


@pytest.mark.long  # one child process per backend (imports TensorFlow and the backend: ~1 min)
@pytest.mark.parametrize("backend", [b for b in ("jax", "torch") if importlib.util.find_spec(b)])
def test_a_layer_that_builds_in_call_through_the_chain_on_backend(backend, tmp_path):
    """The test above (train, save and load on ``backend``; export through TensorFlow) in a child
    process on JAX and PyTorch: the symbolic build runs there too."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join([here, os.path.dirname(here), os.environ.get("PYTHONPATH", "")]))
    code = ("import pathlib, sys, keras, test_keras_io_models_chain as t; "
            "t.test_a_layer_that_builds_in_call_and_declares_its_weights_is_compressed(pathlib.Path(sys.argv[1])); "
            "print('CHAIN-OK', keras.backend.backend())")
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"CHAIN-OK {backend}" in r.stdout
