"""Session 55's review of the "models people ship" journey (ResNet50 / MobileNetV3Small /
EfficientNetB0 at 64x64, a BatchNorm CNN, a functional transformer block, LSTM/GRU text
classifiers, keras.io's TransformerBlock): prune -> fit -> strip -> cluster -> fit -> strip ->
to_tflite -> packed vs unpacked, and the mistakes users make on the way."""
import keras
import numpy as np
import pytest
from keras import layers as L

import dc_keras
from dc_keras.pipeline import predict_tflite


@keras.saving.register_keras_serializable(package="test_models_review_s55")
class Block(L.Layer):
    """keras.io's TransformerBlock, opted in the way the "left dense" warning says: its
    get_prunable_weights() lists its sublayers' kernels, six variables all named ``kernel``."""

    def __init__(self, dim=8, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.att = L.MultiHeadAttention(num_heads=2, key_dim=dim)
        self.ffn = keras.Sequential([L.Dense(16, activation="relu"), L.Dense(dim)])
        self.norm = L.LayerNormalization()

    def call(self, x):
        h = self.norm(x + self.att(x, x))
        return h + self.ffn(h)

    def get_prunable_weights(self):
        a = self.att
        return [a.query_dense.kernel, a.key_dense.kernel, a.value_dense.kernel, a.output_dense.kernel,
                *(d.kernel for d in self.ffn.layers)]

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def _block_model():
    keras.utils.set_random_seed(55)
    inputs = keras.Input((6,), dtype="int32")
    h = Block(name="block")(L.Embedding(20, 8, name="emb")(inputs))
    return keras.Model(inputs, L.Dense(3, name="head")(L.GlobalAveragePooling1D()(h)))


NAMES = ["kernel"] + [f"kernel_{i}" for i in range(1, 6)]


def test_declared_sublayer_kernels_of_one_name_are_named_apart():
    """The cheap half of the test below: prune's and cluster's reports name the six apart."""
    model = _block_model()
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))
    assert {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped}["block"] == NAMES
    clustered = dc_keras.cluster(model, bits=3)
    assert {e["layer"]: e["weights"] for e in clustered.compression_report.wrapped}["block"] == NAMES


@pytest.mark.long
def test_declared_sublayer_kernels_of_one_name_each_keep_their_own_entry(tmp_path):
    """A custom layer declaring six sublayer variables all named ``kernel`` was reported as
    "kernel, kernel, kernel, kernel, kernel, kernel", and PruningCallback.sparsity() (a dict by
    "layer/weight") kept one entry of six, so the other five were not reported; the TensorBoard
    summaries the same. Each now has its own name (kernel, kernel_1, ... in the declared order), the
    same after a .keras round trip, and the whole chain still packs bit-exactly."""
    model = _block_model()
    rng = np.random.default_rng(55)
    x, y = rng.integers(0, 20, (16, 6)).astype("int32"), rng.integers(0, 3, 16)
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))
    names = NAMES
    wrapped = {e["layer"]: e["weights"] for e in pruned.compression_report.wrapped}
    assert wrapped["block"] == names, wrapped
    cb = dc_keras.PruningCallback()
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[cb])
    sparsity = {k: v for k, v in cb.sparsity().items() if k.startswith("block/")}
    assert sorted(sparsity) == sorted(f"block/{n}" for n in names) and set(sparsity.values()) == {0.5}
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert [n for n, _, _ in loaded.get_layer("block")._targets] == names
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=3)
    assert {e["layer"]: e["weights"] for e in clustered.compression_report.wrapped}["block"] == names
    final = dc_keras.strip(clustered)
    for v in final.get_layer("block").get_prunable_weights():
        w = keras.ops.convert_to_numpy(v)
        assert np.mean(w == 0) >= 0.5 and np.unique(w).size <= 9, v.path
    packed, plain = dc_keras.export.to_tflite(final), dc_keras.export.to_tflite(final, pack=False)
    assert len(packed) < len(plain)
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()


def test_unique_names_skips_a_name_the_layer_already_declares():
    """``kernel_1`` given to a second ``kernel`` must not clash with a declared ``kernel_1``."""
    from dc_keras.train._base import _unique_names

    got = [n for n, _, _ in _unique_names([("kernel", 0, -2), ("kernel", 1, -2), ("kernel_1", 2, -2)])]
    assert got == ["kernel", "kernel_2", "kernel_1"]


def _nested_model():
    inner_in = keras.Input((8,))
    base = keras.Model(inner_in, L.Dense(6, name="inner_b")(L.Dense(16, name="inner_a")(inner_in)), name="base")
    inputs = keras.Input((8,))
    return keras.Model(inputs, L.Dense(2, name="head")(base(inputs)))


def test_bits_naming_a_nested_model_or_a_class_name_says_what_to_give():
    """cluster(bits={"base": 3}) for a nested model gave "Unknown layer name(s) ['base'] in `bits`"
    without the hint `layers=` has had since session 50 (name the layers inside it); a class name
    given as a string ("Dense", in `layers` or `bits`) was only "unknown". Both now say what to give."""
    model = _nested_model()
    with pytest.raises(ValueError) as err:
        dc_keras.cluster(model, bits={"base": 3, "Dense": 4})
    text = str(err.value)
    assert text.startswith("Unknown layer name(s) ['base', 'Dense'] in `bits`; model "), text
    assert text.endswith(" 'base' is a nested model, not a layer: name the layers inside it ('inner_a', 'inner_b'), "
                         "or give an int `bits` (every layer then gets it, inside nested models too). 'Dense' is a "
                         "layer class name, not a layer name: pass the class itself, bits={keras.layers.Dense: 4}."), text
    clustered = dc_keras.cluster(model, bits={keras.layers.Dense: 4, "inner_a": 3})  # what the error says works
    assert {e["layer"] for e in clustered.compression_report.wrapped} == {"inner_a", "inner_b", "head"}


def test_layers_naming_a_class_name_says_to_pass_the_class():
    model = _nested_model()
    schedule = dc_keras.schedules.ConstantSparsity(0.5, 0)
    with pytest.raises(ValueError, match=r"'Dense' is a layer class name, not a layer name: pass the class "
                                         r"itself, layers=\[keras\.layers\.Dense\]\.$"):
        dc_keras.prune(model, schedule, layers=["Dense"])
    with pytest.raises(ValueError, match=r"pass the class itself, layers=\{keras\.layers\.Dense: \.\.\.\}\.$"):
        dc_keras.prune(model, layers={"Dense": schedule})
    with pytest.raises(ValueError) as err:  # a name that is neither: as before, no hint
        dc_keras.prune(model, schedule, layers=["nope"])
    assert "class name" not in str(err.value) and "nested model" not in str(err.value), str(err.value)
    pruned = dc_keras.prune(model, schedule, layers=[keras.layers.Dense])
    assert len(pruned.compression_report.wrapped) == 3


def test_strip_names_at_most_seven_unfinished_layers():
    """strip() of a ResNet50 stopped before its schedule's end named all 54 pruned layers in one
    2,000-character warning. It now names six and says how many more, and that they are all."""
    inputs = keras.Input((4,))
    h = inputs
    for i in range(9):
        h = L.Dense(4, name=f"fc{i}")(h)
    pruned = dc_keras.prune(keras.Model(inputs, h), dc_keras.schedules.PolynomialDecay(0.0, 0.5, 0, 10))
    with pytest.warns(UserWarning) as record:
        dc_keras.strip(pruned)
    text = " ".join(str(w.message) for w in record if "strip: pruned layer(s)" in str(w.message))
    assert ("strip: pruned layer(s) ['fc0', 'fc1', 'fc2', 'fc3', 'fc4', 'fc5', ... and 3 more] (all 9 pruned "
            "layers) hold sparsity 0, below the target 0.5") in text, text
    seven = dc_keras.prune(keras.Model(inputs, h), dc_keras.schedules.PolynomialDecay(0.0, 0.5, 0, 10),
                           layers=[f"fc{i}" for i in range(7)])
    with pytest.warns(UserWarning, match=r"\['fc0', 'fc1', 'fc2', 'fc3', 'fc4', 'fc5', 'fc6'\] hold sparsity 0"):
        dc_keras.strip(seven)


def test_spread_warning_for_a_shared_layer_gives_a_fix_that_applies():
    """A conv layer called twice, one call followed by a BatchNormalization: cluster() cannot fold
    (it reports so), the converter folds the BatchNormalization into that call's copy of the kernel,
    and to_tflite's ClusterSpreadWarning said "dc_keras.cluster folds BatchNormalization ... by
    default (do not pass fold_batchnorm=False)" to a user who had not passed it. It now names the
    shared layer as what stops the fold and gives the fix for that."""
    from dc_keras import export

    keras.utils.set_random_seed(55)
    inputs = keras.Input((8, 8, 8))
    shared = L.Conv2D(8, 3, padding="same", name="shared")
    h = shared(L.BatchNormalization(name="bn_after_shared")(shared(inputs)))
    model = keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(h)))
    rng = np.random.default_rng(55)
    bn = model.get_layer("bn_after_shared")
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.1, 8), rng.uniform(0.5, 2, 8)])
    final = dc_keras.strip(dc_keras.cluster(model, bits=4))
    with pytest.warns(export.ClusterSpreadWarning) as caught:
        export.to_tflite(final)
    messages = [str(w.message) for w in caught if issubclass(w.category, export.ClusterSpreadWarning)]
    assert len(messages) == 1, messages
    assert "BatchNormalization 'bn_after_shared'" in messages[0] and "fold_batchnorm=False" not in messages[0]
    assert messages[0].endswith("Fix: dc_keras.cluster cannot fold it, as 'shared' is called 2 times (a shared "
                                "layer): folding would rescale the layer's other calls too. Give the call that "
                                "BatchNormalization follows a layer of its own (not shared; cluster() then folds "
                                "it), or remove that BatchNormalization."), messages[0]
    assert dc_keras.train.bn_fold.fold_blocked(final, "shared", "bn_after_shared") == \
        "'shared' is called 2 times (a shared layer)"
    assert dc_keras.train.bn_fold.fold_blocked(final, "head", "bn_after_shared") is None


def _text_model():
    vectorize = L.TextVectorization(max_tokens=40, output_sequence_length=6, name="vectorize")
    vectorize.adapt(["the cat sat on the mat", "a dog ran far away", "the bird flew home"])
    inputs = keras.Input((1,), dtype="string")
    h = L.GlobalAveragePooling1D()(L.Embedding(40, 8, name="emb")(vectorize(inputs)))
    return dc_keras.strip(dc_keras.cluster(keras.Model(inputs, L.Dense(2, name="head")(h)), bits=3))


def test_a_text_model_with_text_vectorization_is_one_error_naming_the_layer_and_the_split():
    """A text classifier shipped with its TextVectorization inside (keras.io's way) failed with the
    converter's first line and a hint to allow TensorFlow ops, whose file does not run in Python.
    The error now names the layer that computes on strings and the split that exports (the test
    below exports it)."""
    from dc_keras import export

    with pytest.raises(RuntimeError) as err:
        export.to_tflite(_text_model())
    text = str(err.value)
    assert "Layer(s) 'vectorize' compute on strings (TextVectorization)" in text, text
    assert "to_tflite(keras.Model(model.get_layer('vectorize').output, model.output))" in text, text


@pytest.mark.long
def test_the_split_the_text_vectorization_error_gives_converts_and_packs_bit_exact():
    from dc_keras import export

    model = _text_model()
    tail = keras.Model(model.get_layer("vectorize").output, model.output)  # what the error says
    packed = export.to_tflite(tail)
    ids = keras.ops.convert_to_numpy(model.get_layer("vectorize")(np.array([["the cat ran"], ["a bird sat far"]])))
    assert predict_tflite(packed, ids).tobytes() == predict_tflite(export.unpack(packed), ids).tobytes()
