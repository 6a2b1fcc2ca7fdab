"""Session 55's lead review: checks of what the session changed."""
import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.schedules import PolynomialDecay


def _pruned():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, name="d1"), keras.layers.Dense(3, name="out")])
    pruned = dc_keras.prune(model, PolynomialDecay(0.2, 0.8, begin_step=0, end_step=16, frequency=1), layers=["d1"])
    pruned.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    return pruned, rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)


class _CtrlC(keras.callbacks.Callback):
    """Ctrl-C after the third step of the fit: Keras calls no on_train_end."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            raise KeyboardInterrupt


def _weights(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def test_a_fit_cut_by_ctrl_c_then_a_fit_without_the_callback_is_refused_before_it_trains():
    """A fit() with PruningCallback cut by Ctrl-C never reaches on_train_end: its wrappers stayed
    armed and its train function unguarded, so a next fit() (or train_on_batch) without the callback
    trained with the masks frozen and the schedule stopped at step 3 of 16, silently (session 53's
    note; reproduced on TensorFlow and JAX). Now it is the usual error at its first step, nothing
    trained; a fit() with the callback then resumes the schedule and reaches its target."""
    pruned, x, y = _pruned()
    with pytest.raises(KeyboardInterrupt):
        pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback(), _CtrlC()])
    before = _weights(pruned)
    for train in (lambda: pruned.fit(x, y, batch_size=8, epochs=2, verbose=0),
                  lambda: pruned.train_on_batch(x[:8], y[:8])):
        with pytest.raises(RuntimeError, match=r"Layer 'd1' is pruned but is being trained without "
                                               r"dc_keras\.PruningCallback"):
            train()
        for want, v in zip(before, pruned.weights):
            np.testing.assert_array_equal(want, keras.ops.convert_to_numpy(v), err_msg=v.path)
    pruned.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[dc_keras.PruningCallback()])
    layer = pruned.get_layer("d1")
    assert int(keras.ops.convert_to_numpy(layer.pruning_step)) == 3 + 16
    assert layer.sparsity()["kernel"] == pytest.approx(0.8, abs=0.01)
    # the fit() that ended normally leaves the guard of the fits between
    with pytest.raises(RuntimeError, match="without dc_keras.PruningCallback"):
        pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_two_pruning_callbacks_in_one_fit_and_one_listed_twice_train_as_one():
    """The guard a fit() with PruningCallback keeps on its train function lets each step run once the
    driving callback's batch hook has run: a second PruningCallback of the same fit() (tfmot's
    UpdatePruningStep beside PruningSummaries), or the same one listed twice, must not take it away
    (their on_train_begin releases guards left by earlier fits only)."""
    runs = []
    for callbacks in (lambda: [dc_keras.PruningCallback()],
                      lambda: [dc_keras.PruningCallback(), dc_keras.PruningCallback()],
                      lambda: [cb := dc_keras.PruningCallback(), cb]):
        pruned, x, y = _pruned()
        pruned.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=callbacks())
        runs.append(_weights(pruned))
        with pytest.raises(RuntimeError, match="without dc_keras.PruningCallback"):
            pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            np.testing.assert_array_equal(a, b)


def test_a_custom_loop_after_a_fit_cut_by_ctrl_c_trains_as_documented():
    """A custom training loop (cb.set_model; cb.on_train_begin(); steps; cb.on_train_end()) after a
    fit() cut by Ctrl-C: its on_train_begin puts the train function back, so train_on_batch trains."""
    pruned, x, y = _pruned()
    with pytest.raises(KeyboardInterrupt):
        pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[dc_keras.PruningCallback(), _CtrlC()])
    cb = dc_keras.PruningCallback()
    cb.set_model(pruned)
    cb.on_train_begin()
    before = _weights(pruned)
    pruned.train_on_batch(x[:8], y[:8])
    cb.on_train_end()
    assert any(not np.array_equal(a, keras.ops.convert_to_numpy(v)) for a, v in zip(before, pruned.weights))


def test_the_big_endian_run_is_in_make_test_long_and_the_doc_names_what_it_runs():
    """make test-bigendian (session 55) runs the decoder's C tests on s390x under qemu-user from
    make test-long's C lane; docs/microcontrollers.md's *Byte order* names each test it runs."""
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    make = open(os.path.join(root, "Makefile")).read()
    lane = re.search(r"^test-long-lane-c:\n((?:\t.*\n)+)", make, re.M).group(1)
    assert "$(call step,test-bigendian)" in lane
    script = open(os.path.join(root, "tools", "bigendian", "test_bigendian.sh")).read()
    run = re.search(r"for t in (.*?); do", script, re.S).group(1).replace("\\\n", " ").split()
    doc = " ".join(open(os.path.join(root, "docs", "microcontrollers.md")).read().split())
    for name in run:
        base = "test_codec" if name.startswith("test_codec") else name
        assert base in doc or name == "test_sparse_fc", name
    assert "test_sparse_fc" in run and "test_threads" not in run
