"""Writes the back-compat fixtures tests/test_compat_files.py loads: a pruned model saved halfway
through its schedule and a clustered model during fine-tuning, each with the input/outputs it gave
when saved. They were written ONCE by the code of main c838317 (2026-11-30), before the fit-step
bookkeeping changed, so that files users saved earlier keep loading; do not regenerate them unless
the saved format is meant to change.

    KERAS_BACKEND=tensorflow python tests/data/make_compat_models.py tests/data
"""
import os
import sys

import keras
import numpy as np

import dc_keras


def _mlp():
    inputs = keras.Input((12,))
    h = keras.layers.Dense(24, activation="relu", name="d1")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, name="d2")(h))


def main(out_dir):
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = rng.integers(0, 4, size=64)
    probe = rng.normal(size=(5, 12)).astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # 16 steps into PolynomialDecay(0.2 -> 0.8, steps 0..40, every 8): masks updated at 0, 8, 16.
    sched = dc_keras.schedules.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=40, frequency=8)
    pruned = dc_keras.prune(_mlp(), sched)
    pruned.compile(keras.optimizers.Adam(1e-2), loss)
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    pruned.save(os.path.join(out_dir, "compat_pruned_c838317.keras"))

    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=3, cluster_biases=2)
    clustered.compile(keras.optimizers.Adam(1e-2), loss)
    clustered.fit(x, y, batch_size=8, epochs=1, verbose=0)
    clustered.save(os.path.join(out_dir, "compat_clustered_c838317.keras"))

    np.savez(os.path.join(out_dir, "compat_c838317.npz"), x=x, y=y, probe=probe,
             pruned_out=pruned.predict(probe, verbose=0), clustered_out=clustered.predict(probe, verbose=0),
             **{f"pruned/{v.path}": keras.ops.convert_to_numpy(v) for v in pruned.weights},
             **{f"clustered/{v.path}": keras.ops.convert_to_numpy(v) for v in clustered.weights})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
