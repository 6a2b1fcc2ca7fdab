"""Training faults (issue 10): a pruning-then-clustering run killed with SIGKILL mid-epoch and
resumed with ``keras.callbacks.BackupAndRestore`` ends with the same masks, cluster assignments,
pruning step counter and final weights as an uninterrupted run; NaN loss during pruning.

The run (this file with ``--run``) is: ``prune`` (PolynomialDecay) -> ``fit`` 3 epochs with
``PruningCallback`` + ``BackupAndRestore`` -> ``strip`` -> saved as ``phase1.keras`` (atomic) ->
``cluster`` (3 bits) -> ``fit`` 3 epochs with ``BackupAndRestore`` -> final state saved. A restarted
run skips phase 1 when ``phase1.keras`` exists. The kill is a callback that sends SIGKILL to its
own process at a given (phase, epoch, batch): the same as an external ``kill -9`` at that step,
but deterministic. Data order is fixed (``shuffle=False``), the optimizer is plain SGD (no state
besides the step), ops are deterministic, so the resumed run must match the uninterrupted one.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 3
BATCH = 32
SAMPLES = 256  # 8 batches per epoch


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 20)).astype(np.float32)
    w = rng.normal(size=(20, 10)).astype(np.float32)
    y = np.argmax(x @ w, axis=1).astype(np.int32)
    return x, y


def _state(model):
    """Masks / assignments / step counters / weights of a (wrapped or plain) model, by path."""
    return {v.path: np.asarray(v.numpy()) for v in model.weights}


def _run(out_dir, kill_at):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    import dc_keras.train as dt
    from dc_keras.train import schedules

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(1)
    x, y = _data()

    class Kill(keras.callbacks.Callback):
        def __init__(self, phase):
            super().__init__()
            self.phase, self.epoch = phase, 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if kill_at == [self.phase, self.epoch, batch]:
                os.kill(os.getpid(), signal.SIGKILL)

    phase1 = os.path.join(out_dir, "phase1.keras")
    if not os.path.exists(phase1):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                                  keras.layers.Dense(10, name="fc2")])
        pruned = dt.prune(model, schedules.PolynomialDecay(0.2, 0.8, begin_step=0,
                                                           end_step=EPOCHS * SAMPLES // BATCH, frequency=2))
        pruned.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        pruned.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                   callbacks=[dt.PruningCallback(),
                              keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup1")),
                              Kill(1)])
        np.savez(os.path.join(out_dir, "phase1_state.npz"), **_state(pruned))
        tmp = phase1 + ".tmp.keras"
        dt.strip(pruned).save(tmp)
        os.replace(tmp, phase1)
    plain = keras.saving.load_model(phase1)
    clustered = dt.cluster(plain, bits=3)
    clustered.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    clustered.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup2")), Kill(2)])
    np.savez(os.path.join(out_dir, "phase2_state.npz"), **_state(clustered))
    np.savez(os.path.join(out_dir, "final.npz"), **_state(dt.strip(clustered)))


def _start(out_dir, kill_at=None):
    return subprocess.run([sys.executable, os.path.abspath(__file__), "--run", str(out_dir),
                           json.dumps(kill_at)], capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT))


def _load(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("uninterrupted")
    r = _start(d)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def _compare(ref_dir, got_dir, name, exact_keys):
    ref, got = _load(ref_dir / name), _load(got_dir / name)
    assert sorted(ref) == sorted(got)
    for k in ref:
        if any(s in k for s in exact_keys):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{name}: {k}")
        else:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")


@pytest.mark.parametrize("kill_at", [pytest.param([1, 1, 3], marks=pytest.mark.long), [2, 1, 5]],
                         ids=["pruning-epoch1", "clustering-epoch1"])
def test_sigkill_mid_epoch_then_resume(tmp_path, reference, kill_at):
    r = _start(tmp_path, kill_at)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])
    assert not (tmp_path / "final.npz").exists()
    r = _start(tmp_path)  # the same command again: resumes from the backups
    assert r.returncode == 0, r.stderr[-3000:]
    ref1 = _load(reference / "phase1_state.npz")
    assert any("mask" in k for k in ref1) and any("pruning_step" in k for k in ref1)
    assert [int(ref1[k]) for k in ref1 if "pruning_step" in k] == [EPOCHS * SAMPLES // BATCH] * 2
    _compare(reference, tmp_path, "phase1_state.npz", ("mask", "pruning_step"))
    ref2 = _load(reference / "phase2_state.npz")
    assert any("assignments" in k for k in ref2)
    _compare(reference, tmp_path, "phase2_state.npz", ("assignments",))
    _compare(reference, tmp_path, "final.npz", ())


def test_nan_loss_during_pruning_stops_with_clear_message():
    """A NaN loss (here: one NaN input row) makes every weight NaN; magnitude pruning of NaN
    weights marks everything pruned. The run must stop with a message saying so instead of
    finishing "successfully" with all-zero masks."""
    import keras

    import dc_keras.train as dt
    from dc_keras.train import schedules

    keras.utils.set_random_seed(0)
    x, y = _data()
    x = x.copy()
    x[100] = np.nan  # batch 3 of epoch 0
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, name="fc1"), keras.layers.Dense(10, name="fc2")])
    pruned = dt.prune(model, schedules.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=16, frequency=2))
    pruned.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    with pytest.raises(RuntimeError, match="(?i)nan|not finite"):
        pruned.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[dt.PruningCallback()])
    steps = [int(v.numpy()) for v in pruned.weights if "pruning_step" in v.path]
    assert steps == [SAMPLES // BATCH] * 2  # stopped after the first epoch, not at the end
    # a clean run afterwards (same model object, finite data) is not refused
    x2, y2 = _data()
    clean = dt.prune(keras.Sequential([keras.Input((20,)), keras.layers.Dense(16), keras.layers.Dense(10)]),
                     schedules.ConstantSparsity(0.5, frequency=2))
    clean.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    clean.fit(x2, y2, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[dt.PruningCallback()])


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--run":
    sys.path.insert(0, ROOT)
    _run(sys.argv[2], json.loads(sys.argv[3]))
