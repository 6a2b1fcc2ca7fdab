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

_NOT_PROVIDED = {
    "quantization": ("tfmot.quantization (quantization-aware training) is not provided on Keras 3: train in "
                     "float with pruning/clustering, then quantize at export with "
                     "dc_keras.export.to_tflite(model, quantize='int8', representative_data=x) or "
                     "quantize='dynamic' (per-tensor scales keep the shared values; docs/quantization.md)"),
    "experimental": ("tfmot.experimental (PQAT/CQAT combinations) is not provided on Keras 3: use "
                     "cluster_weights(..., preserve_sparsity=True), then dc_keras.export.to_tflite(model, "
                     "quantize='int8', representative_data=x) (docs/migrating_from_tfmot.md)"),
}


def __getattr__(name):
    """tfmot modules this drop-in does not have: an AttributeError that names the replacement."""
    if name in _NOT_PROVIDED:
        raise AttributeError(_NOT_PROVIDED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; it provides tfmot.sparsity.keras and "
                         "tfmot.clustering.keras (every name: docs/migrating_from_tfmot.md)")
