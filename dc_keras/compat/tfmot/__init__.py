"""tfmot's Keras pruning and clustering API on Keras 3, backed by dc_keras.

Replace ``import tensorflow_model_optimization as tfmot`` by::

    import dc_keras.compat.tfmot as tfmot

and ``tfmot.sparsity.keras`` / ``tfmot.clustering.keras`` code runs on Keras 3 (any backend). Every
name, what differs and why: ``docs/migrating_from_tfmot.md``.

The tfmot modules and names it does not provide (``quantization``, ``experimental``,
``sparsity.keras.PruningPolicy``...) raise one error naming the replacement, as an attribute
(``AttributeError``) and in ``from ... import`` / ``import`` statements (``ImportError``).

Example:
    >>> import dc_keras.compat.tfmot as tfmot
    >>> schedule = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=1000)
    >>> pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    >>> pruned.fit(x, y, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    >>> final = tfmot.sparsity.keras.strip_pruning(pruned)
    >>> from dc_keras.compat.tfmot import quantization
    Traceback (most recent call last):
    ...
    ImportError: tfmot.quantization (quantization-aware training) is not provided on Keras 3: ... quantize='int8'...
"""
import importlib.abc
import importlib.util
import sys

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
    "python": ("tfmot.python (tfmot's internal modules, e.g. python.core.clustering.keras.experimental.cluster) is not "
               "provided: use the public names, tfmot.sparsity.keras and tfmot.clustering.keras; the experimental "
               "cluster.cluster_weights(..., preserve_sparsity=True) is "
               "tfmot.clustering.keras.cluster_weights(..., preserve_sparsity=True) (docs/migrating_from_tfmot.md)"),
}


def __getattr__(name):
    """tfmot modules this drop-in does not have: an AttributeError that names the replacement."""
    if name in _NOT_PROVIDED:
        raise AttributeError(_NOT_PROVIDED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; it provides tfmot.sparsity.keras and "
                         "tfmot.clustering.keras (every name: docs/migrating_from_tfmot.md)")


def _not_provided_message(fullname):
    """The message for an import of a tfmot module or name this drop-in does not have
    (``dc_keras.compat.tfmot.quantization.keras``, ``...sparsity.keras.PruningPolicy``), else None."""
    parts = fullname.split(".")
    if parts[:3] != ["dc_keras", "compat", "tfmot"] or len(parts) < 4:
        return None
    if parts[3] in _NOT_PROVIDED:
        return _NOT_PROVIDED[parts[3]]
    tables = {"sparsity": sparsity.keras._NOT_PROVIDED, "clustering": clustering.keras._NOT_PROVIDED}
    if len(parts) >= 6 and parts[4] == "keras" and parts[3] in tables and parts[5] in tables[parts[3]]:
        return tables[parts[3]][parts[5]].format(name=parts[5])
    return None


class _Refusal(importlib.abc.Loader):
    """Loader whose module refuses to load, with the message that names the replacement."""

    def __init__(self, message):
        self.message = message

    def create_module(self, spec):  # noqa: ARG002 (the default module object)
        return None

    def exec_module(self, module):
        raise ImportError(self.message, name=module.__name__)


class _NotProvidedFinder(importlib.abc.MetaPathFinder):
    """``from dc_keras.compat.tfmot import quantization`` (and ``import ...tfmot.quantization.keras``,
    ``from ...sparsity.keras import PruningPolicy``): Python turns a missing name of a module into its
    generic "cannot import name" ImportError, dropping the AttributeError's message, unless the name
    is a submodule of a package. This finder (last on ``sys.meta_path``, answering only the names
    of the ``_NOT_PROVIDED`` tables) gives those names a module that raises an ImportError with the
    same message as the attribute spelling."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002 (MetaPathFinder signature)
        message = _not_provided_message(fullname)
        return None if message is None else importlib.util.spec_from_loader(fullname, _Refusal(message))


if not any(type(f).__name__ == "_NotProvidedFinder" and type(f).__module__ == __name__ for f in sys.meta_path):
    sys.meta_path.append(_NotProvidedFinder())
