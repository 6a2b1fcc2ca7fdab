"""Training-time compression: scheduled magnitude pruning and trained weight sharing (clustering).

Flow: ``prune`` -> ``fit(callbacks=[PruningCallback()])`` -> ``strip`` -> ``cluster`` -> ``fit``
-> ``strip``; the stripped model holds plain Keras layers with sparse, shared-value kernels.

Importing this module registers the wrapper layers and schedules with Keras, so a ``.keras`` file
of a pruned/clustered model loads with ``keras.saving.load_model`` and no ``custom_objects``.
``import dc_keras`` is enough: it imports this module as soon as Keras is imported (at once if
Keras already is), in either order.
"""
from dc_keras.train import schedules
from dc_keras.train.bn_fold import fold_batchnorm
from dc_keras.train.clustering import ClusterWrapper, cluster
from dc_keras.train.pruning import PruneWrapper, PruningCallback, prune
from dc_keras.train.report import CoverageReport, coverage
from dc_keras.train.sensitivity import plot_sensitivity, sensitivity, suggest_bits, suggest_sparsity
from dc_keras.train.strip import strip
from dc_keras.train.summaries import ClusteringSummaries

__all__ = [
    "schedules",
    "prune",
    "PruneWrapper",
    "PruningCallback",
    "cluster",
    "ClusterWrapper",
    "ClusteringSummaries",
    "strip",
    "coverage",
    "fold_batchnorm",
    "CoverageReport",
    "sensitivity",
    "suggest_sparsity",
    "suggest_bits",
    "plot_sensitivity",
]
