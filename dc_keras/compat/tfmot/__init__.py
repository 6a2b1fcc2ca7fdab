"""tfmot's Keras pruning and clustering API on Keras 3, backed by dc_keras.

Replace ``import tensorflow_model_optimization as tfmot`` by::

    import dc_keras.compat.tfmot as tfmot

and ``tfmot.sparsity.keras`` / ``tfmot.clustering.keras`` code runs on Keras 3 (any backend). Every
name, what differs and why: ``docs/migrating_from_tfmot.md``.

Example:
    >>> import dc_keras.compat.tfmot as tfmot
    >>> schedule = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=1000)
    >>> pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    >>> pruned.fit(x, y, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    >>> final = tfmot.sparsity.keras.strip_pruning(pruned)
"""
from dc_keras.compat.tfmot import clustering, sparsity

__all__ = ["sparsity", "clustering"]
