"""KerasHub's layer patterns, written with plain Keras layers (keras_hub is not a dependency of
this project): each test reproduces how a keras_hub layer is written, found when its models
(BertBackbone, GPT2CausalLM, ViTBackbone, ... built tiny from their classes) went through
prune -> fit -> strip -> cluster -> fit -> strip -> .keras -> to_tflite -> pack."""
import keras
import numpy as np

import dc_keras

V, L, D = 50, 6, 8
TOKENS = np.random.default_rng(1).integers(0, V, size=(64, L)).astype("int32")


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
