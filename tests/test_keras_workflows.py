"""Everyday Keras workflows around prune / cluster / strip, checked for the right result (not only
that they run): losses a wrapped layer adds in its call (activity regularizers, add_loss)."""
import keras
import numpy as np
import pytest
from keras import ops

import dc_keras
from dc_keras.schedules import ConstantSparsity

RNG = np.random.default_rng(39)
X = RNG.normal(size=(64, 8)).astype("float32")
Y = RNG.integers(0, 3, size=64)


@keras.saving.register_keras_serializable(package="test_keras_workflows")
class PenalizedDense(keras.layers.Dense):
    """A Dense that adds a loss of its own in call() (a custom sparsity penalty)."""

    def call(self, inputs):
        outputs = super().call(inputs)
        self.add_loss(0.5 * ops.mean(ops.abs(outputs)))
        return outputs


def _model(kind):
    keras.utils.set_random_seed(39)
    if kind == "activity_regularizer":
        first = keras.layers.Dense(16, activation="relu", name="fc1", activity_regularizer=keras.regularizers.L1(0.1))
    else:
        first = PenalizedDense(16, activation="relu", name="fc1")
    return keras.Sequential([keras.Input((8,)), first, keras.layers.Dense(3, name="fc2")])


def _compile(model):
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _loss(model):
    return float(model.evaluate(X, Y, batch_size=len(X), verbose=0))


@pytest.mark.parametrize("kind", ["activity_regularizer", "add_loss"])
def test_a_loss_the_wrapped_layer_adds_in_its_call_counts_in_evaluate_and_fit(kind):
    """On TensorFlow the wrapper ran the inner layer in a StatelessScope that dropped the losses it
    added (its activity_regularizer, its own add_loss): the pruned model's evaluate() and fit() loss
    left them out, so pruning retraining and the clustered fine-tuning trained without them."""
    model = _compile(_model(kind))
    plain = _loss(model)
    without = _compile(keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                         keras.layers.Dense(3)]))
    without.set_weights(model.get_weights())
    assert plain > _loss(without) + 1e-3  # the layer's own loss is part of the plain model's

    # No mask update in these steps (begin_step far away): the same weights, the same loss.
    pruned = _compile(dc_keras.prune(model, ConstantSparsity(0.5, begin_step=10**6)))
    assert _loss(pruned) == pytest.approx(plain, rel=1e-6)
    trained = pruned.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0,
                         callbacks=[dc_keras.PruningCallback()])
    assert trained.history["loss"][0] == pytest.approx(plain, rel=1e-5)

    clustered = _compile(dc_keras.cluster(model, bits=4))
    stripped = _compile(dc_keras.strip(clustered))
    shared = _loss(stripped)  # the plain layers holding the shared values
    assert shared > _loss(without) + 1e-3
    assert _loss(clustered) == pytest.approx(shared, rel=1e-6)
    tuned = clustered.fit(X, Y, batch_size=len(X), epochs=1, shuffle=False, verbose=0)
    assert tuned.history["loss"][0] == pytest.approx(shared, rel=1e-5)


def test_a_loss_the_wrapped_layer_adds_is_in_model_losses_after_a_call():
    """``model(x)`` outside fit (eager): the wrapped layer's activity loss is in ``model.losses``,
    as for the plain model."""
    model = _model("activity_regularizer")
    model(X)
    expected = [float(ops.convert_to_numpy(v)) for v in model.losses]
    pruned = dc_keras.prune(model, ConstantSparsity(0.5, begin_step=10**6))
    pruned(X)
    got = [float(ops.convert_to_numpy(v)) for v in pruned.losses]
    assert len(expected) == 1
    assert got == pytest.approx(expected, rel=1e-6)


def test_layer_stats_lists_frozen_layers_and_the_layers_of_a_nested_model():
    """pipeline.layer_stats left out the kernel of a frozen layer (trainable=False, as in transfer
    learning: prune/cluster leave it dense, so it is part of what the model stores) and gave the
    layers of a nested model one row each under the nested model's name ('kernel' twice)."""
    keras.utils.set_random_seed(39)
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="a"), keras.layers.Dense(4, name="b")],
                             name="inner")
    inputs = keras.Input((8,))
    outputs = keras.layers.Dense(3, name="head")(inner(inputs))
    model = keras.Model(inputs, outputs)
    model.get_layer("inner").get_layer("a").trainable = False
    rows = dc_keras.pipeline.layer_stats(model)
    assert [(r["layer"], r["weight"], r["params"]) for r in rows] == [
        ("a", "kernel", 8 * 16), ("b", "kernel", 16 * 4), ("head", "kernel", 4 * 3)]
    assert all(r["nonzero"] == r["params"] and r["density"] == 1.0 for r in rows)


def _preprocessed_model(kind):
    """A model whose first layer is an adapted preprocessing layer (keras.io's structured-data and
    text-classification tutorials), and the inputs to call it on."""
    keras.utils.set_random_seed(39)
    if kind == "normalization":
        data = RNG.normal(3.0, 5.0, size=(32, 8)).astype("float32")
        layer = keras.layers.Normalization()
        layer.adapt(data)
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(16, activation="relu", name="fc1")(layer(inputs))
        return keras.Model(inputs, keras.layers.Dense(3, name="fc2")(hidden)), data
    import tensorflow as tf

    texts = ["the cat sat on the mat", "dogs bark at night", "a bird sings in the tree", "cats and dogs play"] * 8
    if kind == "string_lookup":
        layer = keras.layers.StringLookup()
        layer.adapt([t.split()[0] for t in texts])
        data = tf.constant([[t.split()[0]] for t in texts])
        ids = layer(keras.Input((1,), dtype="string"))
    else:
        layer = keras.layers.TextVectorization(max_tokens=32, output_sequence_length=6)
        layer.adapt(texts)
        data = tf.constant([[t] for t in texts])
        ids = layer(keras.Input((1,), dtype="string"))
    inputs = ids._keras_history[0].input
    hidden = keras.layers.Flatten()(keras.layers.Embedding(32, 8, name="emb")(ids))
    return keras.Model(inputs, keras.layers.Dense(3, name="fc2")(hidden)), data


@pytest.mark.parametrize("kind", ["normalization", "string_lookup", "text_vectorization"])
def test_an_adapted_preprocessing_layer_keeps_its_state_through_prune_cluster_and_strip(kind, tmp_path):
    """prune()/cluster()/strip() rebuild every layer from its config and copy its weights: an adapted
    Normalization computed with mean 0 / variance 1 (its state is set by finalize_state(), which
    set_weights() does not call: outputs off by 10x, silently), and StringLookup / TextVectorization
    lost their vocabulary (not a weight: 'Table not initialized' at the first call)."""
    if kind != "normalization" and keras.backend.backend() != "tensorflow":
        pytest.skip("string lookups run in a TensorFlow graph (tf.data on the other backends)")
    model, data = _preprocessed_model(kind)
    expected = ops.convert_to_numpy(model(data))

    pruned = dc_keras.prune(model, ConstantSparsity(0.5, begin_step=10**6))  # masks all ones: same outputs
    np.testing.assert_allclose(ops.convert_to_numpy(pruned(data)), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(dc_keras.strip(pruned)(data)), expected, rtol=1e-6, atol=1e-6)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    np.testing.assert_allclose(ops.convert_to_numpy(keras.saving.load_model(path)(data)), expected,
                               rtol=1e-6, atol=1e-6)

    clustered = dc_keras.cluster(model, bits=8)  # 256 shared values: close to the original
    shared = ops.convert_to_numpy(clustered(data))
    np.testing.assert_allclose(shared, expected, atol=0.02 * float(np.abs(expected).max()))
    np.testing.assert_allclose(ops.convert_to_numpy(dc_keras.strip(clustered)(data)), shared, rtol=1e-5, atol=1e-6)


_INPUT_MODEL_AFTER_FIT = """
import keras, numpy as np, dc_keras
x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
y = np.arange(32) % 3
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="fc1"), keras.layers.Dense(3, name="fc2")])
before = model.predict(x, verbose=0)
for make in (lambda: dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0)),
             lambda: dc_keras.cluster(model, bits=3)):
    copy = make()
    copy.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    copy.fit(x, y, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()] if dc_keras.train._base.find_wrappers(
        copy, dc_keras.train.PruneWrapper) else [])
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
print("OK")
"""


# [jax]: make test runs it in the JAX pass (Makefile's BACKEND_TESTS), in that process; in the TensorFlow
# pass it is a child importing TensorFlow and JAX again (8 CPU s): make test-long's there.
@pytest.mark.parametrize("backend", [pytest.param("jax", marks=[pytest.mark.long] if keras.backend.backend() != "jax"
                                                  else []), "tensorflow"])
def test_the_input_model_still_works_after_its_pruned_or_clustered_copy_trains(backend):
    """prune()/cluster() leave the input model untouched, also on JAX, where fit() donates the
    arrays its variables hold: a copy whose variables were assigned the input model's arrays
    themselves (not copies) deleted them ('Array has been deleted' at the input model's next call)."""
    import contextlib
    import io
    import os
    import subprocess
    import sys

    if backend == keras.backend.backend():  # this process's backend: no child (it imported TensorFlow again)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(_INPUT_MODEL_AFTER_FIT, "<_INPUT_MODEL_AFTER_FIT>", "exec"), {"__name__": "__child__"})
        assert out.getvalue().strip().endswith("OK"), out.getvalue()
        return
    env = dict(os.environ, KERAS_BACKEND=backend)
    run = subprocess.run([sys.executable, "-c", _INPUT_MODEL_AFTER_FIT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stderr[-3000:]


def test_a_wrapped_stateful_rnn_carries_its_state_from_call_to_call():
    """A stateful LSTM (keras.layers.LSTM(stateful=True)) keeps its state in variables Keras does not
    track (``layer.states``): the wrapper's StatelessScope swallowed their update, so a pruned or
    clustered stateful RNN started every call from a zero state."""
    keras.utils.set_random_seed(39)
    seq = RNG.normal(size=(4, 5, 3)).astype("float32")
    inputs = keras.Input((5, 3), batch_size=4)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(8, stateful=True, name="rnn")(inputs)))
    pruned = dc_keras.prune(model, ConstantSparsity(0.5, begin_step=10**6))  # masks all ones
    clustered = dc_keras.cluster(model, bits=4)
    stripped = dc_keras.strip(clustered)  # plain layers holding the shared values, a state of their own

    expected = [ops.convert_to_numpy(model(seq)) for _ in range(3)]
    assert not np.allclose(expected[0], expected[1], atol=1e-4)  # the state carries over
    for call in range(3):
        np.testing.assert_allclose(ops.convert_to_numpy(pruned(seq)), expected[call], rtol=1e-5, atol=1e-6)
    for _ in range(3):
        np.testing.assert_allclose(ops.convert_to_numpy(clustered(seq)), ops.convert_to_numpy(stripped(seq)),
                                   rtol=1e-5, atol=1e-6)
    pruned.get_layer("rnn").layer.reset_state()
    np.testing.assert_allclose(ops.convert_to_numpy(pruned(seq)), expected[0], rtol=1e-5, atol=1e-6)


def test_pipeline_trains_a_model_on_features_that_are_not_images():
    """dc_keras.pipeline's recipe on tabular data: max_shift=0 (no shift augmentation) trains it, as the
    argument says; it failed inside fit() with random_shift's 'expected images of shape (N, H, W[, C])'
    whatever max_shift was. With a shift and non-image data the error says to pass max_shift=0,
    before any training."""
    keras.utils.set_random_seed(39)
    x = RNG.normal(size=(96, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")

    def model():
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="fc1"),
                                 keras.layers.Dense(2, activation="softmax", name="fc2")])

    with pytest.raises(ValueError, match=r"max_shift=0"):
        dc_keras.pipeline.train_baseline(model(), x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"max_shift=0"):
        dc_keras.pipeline.prune_retrain(model(), x, y, 0.5, epochs=1, verbose=0)
    baseline = dc_keras.pipeline.train_baseline(model(), x, y, epochs=1, batch_size=32, max_shift=0, verbose=0)
    pruned = dc_keras.pipeline.prune_retrain(baseline, x, y, 0.5, epochs=2, batch_size=32, max_shift=0, verbose=0)
    assert [round(r["density"], 2) for r in dc_keras.pipeline.layer_stats(pruned)] == [0.5, 0.5]
    shared = dc_keras.pipeline.cluster_finetune(pruned, x, y, bits=2, epochs=1, batch_size=32, max_shift=0, verbose=0)
    assert [r["distinct"] for r in dc_keras.pipeline.layer_stats(shared)] == [4, 4]


def test_the_step_count_follows_the_steps_keras_runs_when_steps_per_epoch_is_not_a_multiple_of_steps_per_execution():
    """fit(steps_per_epoch=5) with compile(steps_per_execution=2) over data that does not end there:
    Keras 3.15 runs the epoch's last execution whole (6 steps an epoch). PruningCallback counted 5,
    so the pruning schedule fell one step behind the optimizer each epoch; the count now follows the
    steps that ran (the optimizer's count), whatever Keras runs."""
    def batches():
        while True:
            for i in range(0, len(X), 16):
                yield X[i:i + 16], Y[i:i + 16]

    model = _model("activity_regularizer")
    pruned = dc_keras.prune(model, ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=2)
    pruned.fit(batches(), steps_per_epoch=5, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback()])
    ran = int(ops.convert_to_numpy(pruned.optimizer.iterations))
    assert ran >= 10
    assert int(ops.convert_to_numpy(pruned.get_layer("fc1").pruning_step)) == ran
