"""Sparsity-preserving clustering with tfmot 0.8.1 itself; run by tests/test_compat_tfmot.py.

Runs in its own process with ``TF_USE_LEGACY_KERAS=1`` (tfmot needs tf_keras):

    TF_USE_LEGACY_KERAS=1 python tests/_tfmot_cluster_child.py NUMBER_OF_CLUSTERS...

Clusters the MLP of ``tests/_tfmot_masks_child.py`` (same weights, half of each kernel's entries
set to zero as a pruned model has them) with ``cluster_weights(..., preserve_sparsity=True)``,
fits one epoch with Adam, strips it and prints one line ``RESULT <json>``: per number of clusters,
per layer, the kernel's distinct values (zero included) and its zero mask.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tfmot_masks_child import data, mlp_weights  # noqa: E402


def pruned_weights():
    """mlp_weights() with the half of each kernel of smallest magnitude set to 0 (as strip_pruning
    leaves a ConstantSparsity(0.5) model)."""
    weights = mlp_weights()
    for i in (0, 2):
        k = weights[i]
        t = np.sort(np.abs(k).ravel())[k.size // 2 - 1]
        weights[i] = np.where(np.abs(k) > t, k, 0).astype("float32")
    return weights


def main(counts):
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("run with TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)")
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    cl = tfmot.clustering.keras
    result = {}
    for number_of_clusters in counts:
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="d1"),
                                  keras.layers.Dense(3, name="out")])
        model.set_weights(pruned_weights())
        clustered = cl.cluster_weights(model, number_of_clusters=number_of_clusters, preserve_sparsity=True,
                                       cluster_centroids_init=cl.CentroidInitialization.LINEAR)
        clustered.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = data(64)
        clustered.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        final = cl.strip_clustering(clustered)
        result[number_of_clusters] = {
            layer.name: {"distinct": int(np.unique(layer.get_weights()[0]).size),
                         "zeros": (layer.get_weights()[0] == 0).astype(int).tolist()} for layer in final.layers}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main([int(n) for n in sys.argv[1:]])
