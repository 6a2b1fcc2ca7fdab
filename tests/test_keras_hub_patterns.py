"""KerasHub's layer patterns, written with plain Keras layers (keras_hub is not a dependency of
this project): each test reproduces how a keras_hub layer is written, found when its models
(BertBackbone, GPT2CausalLM, ViTBackbone, ... built tiny from their classes) went through
prune -> fit -> strip -> cluster -> fit -> strip -> .keras -> to_tflite -> pack."""
import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.schedules import ConstantSparsity

S = ConstantSparsity(0.5, 0)


@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class SelfBuilding(keras.layers.Layer):
    """keras_hub's TransformerDecoder: its config holds the build shape, and __init__ builds the
    layer from it ("Work around for model saving, we need to ensure our model is built immediately
    after restoring from config"), so from_config returns a built layer whose build() makes its
    sublayers."""

    def __init__(self, units, sequence_shape=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self._sequence_shape = None
        if sequence_shape:
            self.build(sequence_shape)

    def build(self, sequence_shape):
        self._sequence_shape = sequence_shape
        self.dense = keras.layers.Dense(self.units, name="dense")
        self.dense.build(sequence_shape)
        self.built = True

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "sequence_shape": self._sequence_shape}


def _self_building_model():
    inputs = keras.Input((6, 8))
    h = keras.layers.Dense(8, name="fc")(inputs)
    h = SelfBuilding(8, name="block")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(h))


@pytest.mark.parametrize("action", ["prune", "cluster", "strip"])
def test_a_layer_built_by_its_own_from_config_is_rebuilt_without_building_it_twice(action):
    """prune() of a model holding keras_hub's TransformerDecoder failed in the rebuild: the copy made
    by from_config is already built, and Rebuilder.clone built it again from the build config
    (ValueError: You cannot add new elements of state ... to a layer that is already built)."""
    model = _self_building_model()
    x = np.random.default_rng(0).normal(size=(4, 6, 8)).astype("float32")
    if action == "prune":
        result = dc_keras.prune(model, S, layers=["fc", "head"])
    elif action == "cluster":
        result = dc_keras.cluster(model, bits=4, layers=["fc", "head"])
    else:
        with pytest.warns(UserWarning, match="had not finished"):  # (not trained: masks as they are)
            result = dc_keras.strip(dc_keras.prune(model, S, layers=["fc"]))
    block = result.get_layer("block")
    assert len(block.weights) == 2
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block.dense.kernel),
                                  keras.ops.convert_to_numpy(model.get_layer("block").dense.kernel))
    if action != "cluster":  # sparsity 0.5 is applied by the first step, not before: same outputs
        np.testing.assert_array_equal(result.predict(x, verbose=0), model.predict(x, verbose=0))


# -- KerasHub layers built from supported layers (TransformerEncoder, TokenAndPositionEmbedding) ------------

# KerasHub's layers are recognised by their module (a user cannot give them a get_prunable_weights()):
# these stand-ins are written as KerasHub writes them and declared to live there.
HUB = "keras_hub.src.layers.modeling.s41_stand_in"


@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class HubPositionEmbedding(keras.layers.Layer):
    """keras_hub.layers.PositionEmbedding: a learned (sequence, features) table of its own."""

    def __init__(self, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length

    def build(self, inputs_shape):
        self.position_embeddings = self.add_weight(shape=(self.sequence_length, inputs_shape[-1]),
                                                   name="embeddings", initializer="glorot_uniform")

    def call(self, inputs):
        return keras.ops.broadcast_to(self.position_embeddings[None, : keras.ops.shape(inputs)[1]],
                                      keras.ops.shape(inputs))

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length}


@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class HubTokenAndPosition(keras.layers.Layer):
    """keras_hub.layers.TokenAndPositionEmbedding: an Embedding and a PositionEmbedding made in
    __init__, built in build()."""

    def __init__(self, vocabulary_size, sequence_length, dim, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.sequence_length, self.dim = vocabulary_size, sequence_length, dim
        self.token_embedding = keras.layers.Embedding(vocabulary_size, dim, name="token_embedding")
        self.position_embedding = HubPositionEmbedding(sequence_length, name="position_embedding")

    def build(self, inputs_shape):
        self.token_embedding.build(inputs_shape)
        self.position_embedding.build((*inputs_shape, self.dim))

    def call(self, inputs):
        tokens = self.token_embedding(inputs)
        return tokens + self.position_embedding(tokens)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length, "dim": self.dim}


@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class HubEncoder(keras.layers.Layer):
    """keras_hub.layers.TransformerEncoder: attention, a feed-forward pair of Dense layers and
    LayerNormalizations, all made by build() from the input shape."""

    def __init__(self, intermediate_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim, self.num_heads = intermediate_dim, num_heads

    def build(self, inputs_shape):
        dim = inputs_shape[-1]
        self._self_attention_layer = keras.layers.MultiHeadAttention(self.num_heads, dim // self.num_heads,
                                                                     name="self_attention_layer")
        self._self_attention_layer.build(inputs_shape, inputs_shape)
        self._norm = keras.layers.LayerNormalization(name="norm")
        self._norm.build(inputs_shape)
        self._intermediate = keras.layers.Dense(self.intermediate_dim, activation="relu", name="intermediate")
        self._intermediate.build(inputs_shape)
        self._output = keras.layers.Dense(dim, name="output")
        self._output.build((*inputs_shape[:-1], self.intermediate_dim))
        self.built = True

    def call(self, inputs):
        h = self._norm(inputs + self._self_attention_layer(inputs, inputs))
        return h + self._output(self._intermediate(h))

    def get_config(self):
        return {**super().get_config(), "intermediate_dim": self.intermediate_dim, "num_heads": self.num_heads}


for _cls in (HubPositionEmbedding, HubTokenAndPosition, HubEncoder):
    _cls.__module__ = HUB

V, L, D = 50, 6, 8
TOKENS = np.random.default_rng(1).integers(0, V, size=(64, L)).astype("int32")
LABELS = np.random.default_rng(2).integers(0, 3, size=64)


def _hub_classifier():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((L,), dtype="int32")
    h = HubTokenAndPosition(V, L, D, name="embeddings")(inputs)
    h = HubEncoder(16, 2, name="encoder")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))


HUB_WEIGHTS = {
    "embeddings": ["position_embedding.embeddings", "token_embedding.embeddings"],
    "encoder": ["intermediate.kernel", "output.kernel", "self_attention_layer.key_kernel",
                "self_attention_layer.output_kernel", "self_attention_layer.query_kernel",
                "self_attention_layer.value_kernel"],
    "logits": ["kernel"],
}


def _kernels(model):
    """{path: array} of the stripped model's kernels and tables (not the attention's 2-D biases)."""
    return {v.path: keras.ops.convert_to_numpy(v) for v in model.weights
            if len(v.shape) >= 2 and not v.path.endswith("bias")}


def _fit(model, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(TOKENS, LABELS, batch_size=16, epochs=1, verbose=0, callbacks=list(callbacks))


def test_keras_hub_layers_are_compressed_through_the_layers_they_are_built_from(tmp_path):
    """BertBackbone(num_layers=2, hidden_dim=32) through prune(): 30.0 % of its 25,283 parameters were
    compressed, its TransformerEncoders (67.6 %) and PositionEmbedding left dense as 'unsupported layer
    type' (DistilBert: 4.4 %, its TokenAndPositionEmbedding too), with a fix a KerasHub user cannot
    apply (a get_prunable_weights() in KerasHub's class). They are wrapped as a whole, like
    MultiHeadAttention, their sublayers' kernels and their own tables compressed."""
    model = _hub_classifier()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left dense: no warning
        pruned = dc_keras.prune(model, ConstantSparsity(0.5, 0, frequency=1))
    report = pruned.compression_report
    assert {e["layer"]: sorted(e["weights"]) for e in report.wrapped} == HUB_WEIGHTS
    assert [e["layer"] for e in report.skipped] == []
    assert report.covered_params == 50 * 8 + 6 * 8 + 4 * 8 * 8 + 2 * 8 * 16 + 8 * 3
    _fit(pruned, [dc_keras.PruningCallback()])
    pruned.save(tmp_path / "pruned.keras")
    back = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_array_equal(back.predict(TOKENS, verbose=0), pruned.predict(TOKENS, verbose=0))
    stripped = dc_keras.strip(pruned)
    assert type(stripped.get_layer("encoder")) is HubEncoder
    np.testing.assert_array_equal(stripped.predict(TOKENS, verbose=0), pruned.predict(TOKENS, verbose=0))
    kernels = _kernels(stripped)
    for path, kernel in kernels.items():
        assert abs(float(np.mean(kernel == 0)) - 0.5) < 0.05, (path, float(np.mean(kernel == 0)))

    clustered = dc_keras.cluster(stripped, bits=3)
    _fit(clustered)
    clustered.save(tmp_path / "clustered.keras")
    back = keras.saving.load_model(tmp_path / "clustered.keras")
    np.testing.assert_array_equal(back.predict(TOKENS, verbose=0), clustered.predict(TOKENS, verbose=0))
    final = dc_keras.strip(clustered)
    for path, kernel in _kernels(final).items():
        assert np.array_equal(kernel == 0, kernels[path] == 0), path  # pruned zeros stay zeros
        assert len(np.unique(kernel[kernel != 0])) <= 8, path
    final.save(tmp_path / "final.keras")
    back = keras.saving.load_model(tmp_path / "final.keras")
    np.testing.assert_array_equal(back.predict(TOKENS, verbose=0), final.predict(TOKENS, verbose=0))


def test_a_keras_hub_layer_holding_only_vectors_stays_dense_by_design():
    """keras_hub's RMSNormalization / LlamaLayerNorm hold a scale vector: nothing to compress, no warning
    (and a (1, features) weight, as ViT's (1, 1, hidden) class token, is a vector too)."""

    class HubScale(keras.layers.Layer):
        def build(self, shape):
            self.scale = self.add_weight(shape=(shape[-1],), name="scale", initializer="ones")
            self.shift = self.add_weight(shape=(1, shape[-1]), name="shift", initializer="zeros")  # ViT's class token

        def call(self, x):
            return x * self.scale + self.shift

    HubScale.__module__ = HUB
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(HubScale(name="norm")(inputs)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruned = dc_keras.prune(model, S)
    assert [e["layer"] for e in pruned.compression_report.wrapped] == ["fc"]
    assert [(e["layer"], e["reason"]) for e in pruned.compression_report.skipped] == [
        ("norm", "it holds only vectors (scales, offsets): left dense by design")]


# -- to_tflite(batch_size=...) of a model taking a dict (KerasHub's token_ids / padding_mask) -------------

def test_a_static_batch_export_of_a_model_called_with_a_dict_feeds_it_a_dict():
    """GemmaCausalLM converts only with static shapes (TFLite's converter refuses its dynamic
    StridedSlice), and to_tflite(model, batch_size=1) failed on every model whose inputs are a dict:
    the signature was a list of specs ("The structure of `inputs` doesn't match the expected
    structure. Expected: {'token_ids': ..., 'padding_mask': ...}")."""
    ids = keras.Input((L,), dtype="int32", name="token_ids")
    mask = keras.Input((L,), dtype="int32", name="padding_mask")
    h = keras.layers.Embedding(V, D)(ids) * keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(3)(h))
    content = dc_keras.export.to_tflite(model, pack=False, batch_size=1)
    runner = dc_keras.runtime.Interpreter(model_content=content).get_signature_runner()
    feed = {"token_ids": TOKENS[:1], "padding_mask": np.ones((1, L), "int32")}
    (out,) = runner(**feed).values()
    assert out.shape == (1, L, 3)
    np.testing.assert_allclose(out, model.predict(feed, verbose=0), rtol=1e-5, atol=1e-6)


# -- ReversibleEmbedding: the tied output projection, and the untied one ------------------------------------

@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class Reversible(keras.layers.Embedding):
    """keras_hub.layers.ReversibleEmbedding (keras.layers.ReversibleEmbedding from Keras 3.12): an
    Embedding whose call(x, reverse=True) projects onto the vocabulary, through the table itself
    (tie_weights=True) or through a (features, vocabulary) matrix of its own."""

    def __init__(self, input_dim, output_dim, tie_weights=True, **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        self.tie_weights = tie_weights

    def build(self, inputs_shape=None):
        super().build(inputs_shape)
        if not self.tie_weights:
            self.reverse_embeddings = self.add_weight(shape=(self.output_dim, self.input_dim),
                                                      initializer="glorot_uniform", name="reverse_embeddings")

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        kernel = keras.ops.transpose(self.embeddings) if self.tie_weights else self.reverse_embeddings
        return keras.ops.matmul(inputs, kernel)

    def compute_output_spec(self, inputs, reverse=False):
        if reverse:
            return keras.KerasTensor((*inputs.shape[:-1], self.input_dim), dtype=self.compute_dtype)
        return super().compute_output_spec(inputs)

    def get_config(self):
        return {**super().get_config(), "tie_weights": self.tie_weights}

    # every variable saved and loaded (Embedding's own list, for its quantized forms, names the table only;
    # KerasHub extends that list with reverse_embeddings)
    save_own_variables = keras.layers.Layer.save_own_variables
    load_own_variables = keras.layers.Layer.load_own_variables


def _language_model(tie_weights, nested):
    """A causal LM as KerasHub's GPT2CausalLM / GemmaCausalLM is: a backbone (a Functional model)
    holding the token embedding, and the task's graph calling that embedding again, reversed."""
    keras.utils.set_random_seed(4)
    embedding = Reversible(V, D, tie_weights=tie_weights, name="token_embedding")
    ids = keras.Input((L,), dtype="int32", name="token_ids")
    hidden = keras.layers.Dense(D, activation="tanh", name="block")(embedding(ids))
    if nested:
        backbone = keras.Model(ids, hidden, name="backbone")
        ids = keras.Input((L,), dtype="int32", name="token_ids")
        hidden = backbone(ids)
    return keras.Model(ids, embedding(hidden, reverse=True))


def _lm_fit(model, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(TOKENS, np.roll(TOKENS, -1, axis=1), batch_size=16, epochs=1, verbose=0, callbacks=list(callbacks))


def test_an_untied_reversible_embedding_compresses_its_output_projection():
    """LlamaBackbone's ReversibleEmbedding(tie_weights=False): its reverse_embeddings, a matrix as
    large as the table, stayed dense under the Embedding rule, and the report and the warning named
    only `embeddings` (the layer looked compressed)."""
    model = _language_model(tie_weights=False, nested=False)
    pruned = dc_keras.prune(model, ConstantSparsity(0.5, 0, frequency=1))
    (entry,) = [e for e in pruned.compression_report.wrapped if e["layer"] == "token_embedding"]
    assert entry["weights"] == ["embeddings", "reverse_embeddings"] and entry["params"] == 2 * V * D
    _lm_fit(pruned, [dc_keras.PruningCallback()])
    layer = dc_keras.strip(pruned).get_layer("token_embedding")
    for variable in (layer.embeddings, layer.reverse_embeddings):
        assert abs(float(np.mean(keras.ops.convert_to_numpy(variable) == 0)) - 0.5) < 0.05, variable.path
    clustered = dc_keras.strip(dc_keras.cluster(dc_keras.strip(pruned), bits=3))
    reverse = keras.ops.convert_to_numpy(clustered.get_layer("token_embedding").reverse_embeddings)
    assert len(np.unique(reverse[reverse != 0])) <= 8


@pytest.mark.parametrize("action", ["prune", "cluster"])
def test_a_backbone_layer_the_task_calls_again_round_trips_through_a_keras_file(action, tmp_path):
    """GPT2CausalLM / GemmaCausalLM call the backbone's token_embedding again after the backbone (the
    tied projection). prune() / cluster() rebuild the task as a plain Functional model, whose config
    cannot say that the outer graph's token_embedding is the backbone's: its .keras file loaded with
    two copies of the layer, one without weights ("the file holds no dc_keras variables for it",
    and after strip() Keras's "expected 1 variables, but received 0"; a plain Keras model written
    that way fails the same). The backbone's layers are now called in the task's graph itself."""
    model = _language_model(tie_weights=True, nested=True)
    if action == "prune":
        wrapped = dc_keras.prune(model, ConstantSparsity(0.5, 0, frequency=1))
        _lm_fit(wrapped, [dc_keras.PruningCallback()])
    else:
        wrapped = dc_keras.cluster(model, bits=3)
        _lm_fit(wrapped)
    assert {e["layer"] for e in wrapped.compression_report.wrapped} == {"token_embedding", "block"}
    assert len([layer for layer in wrapped.layers if layer.name == "token_embedding"]) == 1  # called twice
    wrapped.save(tmp_path / "wrapped.keras")
    back = keras.saving.load_model(tmp_path / "wrapped.keras")
    np.testing.assert_array_equal(back.predict(TOKENS, verbose=0), wrapped.predict(TOKENS, verbose=0))
    stripped = dc_keras.strip(wrapped)
    np.testing.assert_array_equal(stripped.predict(TOKENS, verbose=0), wrapped.predict(TOKENS, verbose=0))
    stripped.save(tmp_path / "stripped.keras")
    back = keras.saving.load_model(tmp_path / "stripped.keras")
    np.testing.assert_array_equal(back.predict(TOKENS, verbose=0), stripped.predict(TOKENS, verbose=0))


def test_a_nested_model_that_shares_nothing_stays_nested():
    """Only a nested model whose layer the enclosing graph also calls is unfolded."""
    keras.utils.set_random_seed(5)
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, keras.layers.Dense(8, name="inner_fc")(inner_in), name="inner")
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    pruned = dc_keras.prune(model, S)
    assert [type(l).__name__ for l in pruned.layers] == ["InputLayer", "Functional", "PruneWrapper"]


# -- a layer whose config does not give back its own arguments ----------------------------------------------

@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class ExtraConfig(keras.layers.Dense):
    """ViTPatchingAndEmbedding (KerasHub 0.32): get_config() adds values computed in __init__
    (num_patches, num_positions), which its __init__ then refuses."""

    def get_config(self):
        return {**super().get_config(), "num_patches": 16}


@keras.saving.register_keras_serializable(package="dc_keras_hub_patterns")
class MissingAttribute(keras.layers.Dense):
    """LlamaTransformerDecoder (KerasHub 0.32): get_config() reads an attribute __init__ never sets."""

    def get_config(self):
        return {**super().get_config(), "rope_scaling_factor": self.rope_scaling_factor}


@pytest.mark.parametrize("cls, step", [(ExtraConfig, "ExtraConfig.from_config(layer.get_config()) raised TypeError"),
                                       (MissingAttribute, "its get_config() raised AttributeError")])
def test_a_layer_that_cannot_be_rebuilt_from_its_config_is_named_with_the_cause(cls, step):
    """LlamaCausalLM and a ViTBackbone classifier failed in prune() with KerasHub's bare error from
    deep inside clone_model (AttributeError: 'LlamaTransformerDecoder' object has no attribute
    'rope_scaling_factor'), though neither layer was to be compressed and both models save and load."""
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(cls(8, name="odd")(inputs)))
    with pytest.raises(ValueError) as caught:
        dc_keras.prune(model, S, layers=["head"])
    said = str(caught.value)
    assert said.startswith(f"Layer 'odd' ({__name__}.{cls.__name__}) cannot be rebuilt from its config: {step}")
    assert "also the layers they leave dense" in said
    assert f"bug of {cls.__name__}'s get_config()" in said


@pytest.mark.parametrize("signature_form", ["dict", "batch_size"])
def test_a_dict_signature_feeds_each_input_by_its_key(signature_form):
    """LlamaCausalLM / GemmaCausalLM through to_tflite(input_signature=[{"token_ids": spec, "padding_mask":
    spec}]): the .tflite's outputs were wrong (max |error| 0.27 against outputs of 0.20, 2.2 against 1.7),
    on the uncompressed models too. The specs had no names, so they took model.inputs' names in order,
    and model.inputs is the dict's values by sorted key (padding_mask, token_ids): the input named
    token_ids was the padding mask. Unnamed specs of a dict take their keys."""
    ids = keras.Input((L,), dtype="int32", name="token_ids")
    mask = keras.Input((L,), dtype="int32", name="padding_mask")
    h = keras.layers.Embedding(V, D)(ids) * keras.ops.expand_dims(keras.ops.cast(mask, "float32"), -1)
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(3)(h))
    if signature_form == "dict":
        spec = keras.InputSpec(shape=(1, L), dtype="int32")
        content = dc_keras.export.to_tflite(model, pack=False, input_signature=[{"token_ids": spec,
                                                                                 "padding_mask": spec}])
    else:
        content = dc_keras.export.to_tflite(model, pack=False, batch_size=1)
    runner = dc_keras.runtime.Interpreter(model_content=content).get_signature_runner()
    feed = {"token_ids": TOKENS[:1], "padding_mask": (TOKENS[1:2] % 2).astype("int32")}
    (out,) = runner(**feed).values()
    np.testing.assert_allclose(out, model.predict(feed, verbose=0), rtol=1e-5, atol=1e-6)


# -- a layer called with keywords only ----------------------------------------------------------------------

@pytest.mark.parametrize("action", ["prune", "cluster"])
def test_a_layer_called_with_keywords_only_is_wrapped(action, tmp_path):
    """keras_hub's BartBackbone calls its TransformerDecoder with keywords only (decoder_sequence=x,
    encoder_sequence=...), as keras.io's examples call MultiHeadAttention (query=x, value=x): the
    wrapper's call() takes `inputs` first and Keras's binding failed ("missing a required argument:
    'inputs'"), in prune() and cluster() alike."""
    keras.utils.set_random_seed(6)
    inputs = keras.Input((L, D))
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(query=inputs, value=inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    x = np.random.default_rng(7).normal(size=(4, L, D)).astype("float32")
    wrapped = dc_keras.prune(model, S) if action == "prune" else dc_keras.cluster(model, bits=3)
    assert [e["layer"] for e in wrapped.compression_report.wrapped] == ["mha", "head"]
    wrapped.save(tmp_path / "wrapped.keras")
    back = keras.saving.load_model(tmp_path / "wrapped.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), wrapped.predict(x, verbose=0))
    stripped = dc_keras.strip(wrapped) if action == "cluster" else None
    if stripped is not None:
        np.testing.assert_array_equal(stripped.predict(x, verbose=0), wrapped.predict(x, verbose=0))
