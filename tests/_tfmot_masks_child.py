"""Trains small pruned models with tfmot 0.8.1 and reports their masks; run by tests/test_compat_tfmot.py.

Runs in its own process with ``TF_USE_LEGACY_KERAS=1`` (tfmot needs tf_keras):

    TF_USE_LEGACY_KERAS=1 python tests/_tfmot_masks_child.py CASES_JSON

Each case (see ``MASK_CASES`` and ``dc_masks`` in tests/test_compat_tfmot.py, which runs the same case through
dc_keras.compat.tfmot) prunes the same two-layer MLP, with the same weights and data, by
``prune_low_magnitude`` + ``UpdatePruningStep`` and fits it with plain SGD, no shuffling. Prints
one line ``RESULT <json>``: per case, after every batch, the pruning step and the mask of layer
``d1``.
"""
import json
import os
import sys

import numpy as np


def mlp_weights():
    rng = np.random.RandomState(0)
    return [rng.normal(size=(12, 24)).astype("float32"), np.zeros(24, "float32"),
            rng.normal(size=(24, 3)).astype("float32"), np.zeros(3, "float32")]


def data(n):
    rng = np.random.RandomState(1)
    return rng.normal(size=(n, 12)).astype("float32"), rng.randint(0, 3, size=n)


def masks(cases):
    """Per case, per batch: [pruning step, mask of d1] (needs TF_USE_LEGACY_KERAS=1)."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("run with TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)")
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    s = tfmot.sparsity.keras

    class Record(keras.callbacks.Callback):
        def __init__(self, layer):
            super().__init__()
            self.layer, self.rows = layer, []

        def on_train_batch_end(self, batch, logs=None):
            self.rows.append([int(self.layer.pruning_step.numpy()), self.layer.pruning_vars[0][1].numpy().tolist()])

    out = []
    for case in cases:
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"),
                                  keras.layers.Dense(3, name="out")])
        model.set_weights(mlp_weights())
        schedule = getattr(s, case["schedule"][0])(**case["schedule"][1])
        pruned = s.prune_low_magnitude(model, pruning_schedule=schedule, **case.get("prune", {}))
        pruned.compile(keras.optimizers.SGD(case["lr"]),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        record = Record(pruned.get_layer("prune_low_magnitude_d1"))
        x, y = data(case["batch_size"] * case["batches"])
        pruned.fit(x, y, batch_size=case["batch_size"], epochs=1, shuffle=False, verbose=0,
                   callbacks=[s.UpdatePruningStep(), record])
        out.append(record.rows)
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(masks(json.loads(sys.argv[1]))))
