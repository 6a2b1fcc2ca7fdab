"""Sparsity-preserving clustering with tfmot 0.8.1 itself; run by tests/test_compat_tfmot.py.

Runs in its own process with ``TF_USE_LEGACY_KERAS=1`` (tfmot needs tf_keras):

    TF_USE_LEGACY_KERAS=1 python tests/_tfmot_cluster_child.py NUMBER_OF_CLUSTERS...
    TF_USE_LEGACY_KERAS=1 python tests/_tfmot_cluster_child.py registry

Clusters the MLP of ``tests/_tfmot_masks_child.py`` (same weights, half of each kernel's entries
set to zero as a pruned model has them) with ``cluster_weights(..., preserve_sparsity=True)``,
fits one epoch with Adam, strips it and prints one line ``RESULT <json>``: per number of clusters,
per layer, the kernel's distinct values (zero included) and its zero mask. ``registry`` instead
prints which weights ``prune_low_magnitude`` and ``cluster_weights`` compress in a model with a
DepthwiseConv2D, a SeparableConv2D and a Dense layer (``{"prune"|"cluster": {layer: [weight]}}``).
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


def cluster(counts):
    """Per number of clusters, per layer: the stripped kernel's distinct values and zero mask."""
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
    return result


def registry():
    """{"prune"|"cluster": {layer: [weight]}}: what tfmot compresses in a depthwise/separable model."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("run with TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)")
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    def model():
        return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3, name="dw"),
                                 keras.layers.SeparableConv2D(4, 3, name="sep"), keras.layers.Flatten(),
                                 keras.layers.Dense(3, name="fc")])

    def short(variable):
        return variable.name.split("/")[-1].split(":")[0]

    pruned = tfmot.sparsity.keras.prune_low_magnitude(model())
    clustered = tfmot.clustering.keras.cluster_weights(model(), number_of_clusters=4)
    result = {
        "prune": {layer.layer.name: sorted(short(w) for w, _, _ in layer.pruning_vars) for layer in pruned.layers
                  if hasattr(layer, "pruning_vars")},
        "cluster": {layer.layer.name: sorted(short(w) for w in layer.original_clusterable_weights.values())
                    for layer in clustered.layers if hasattr(layer, "original_clusterable_weights")},
    }
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(registry() if sys.argv[1:] == ["registry"] else cluster([int(n) for n in sys.argv[1:]])))
