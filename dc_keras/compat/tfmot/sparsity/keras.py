"""``tfmot.sparsity.keras`` on Keras 3: magnitude pruning by :func:`dc_keras.prune`.

Same names, argument names and defaults as tensorflow_model_optimization 0.8. Differences
(docs/migrating_from_tfmot.md): the first training batch is step 0 (tfmot: 1) and masks are
also updated at ``end_step`` itself; a pruned weight is never restored; a schedule that cannot
reach its target warns; ``PruningSummaries`` writes sparsity only (add
``keras.callbacks.TensorBoard`` for the loss curves) and also arms pruning; block sparsity and
pruning policies are not available (an error says so). As in tfmot's layer registry, depthwise
kernels stay dense (DepthwiseConv1D/2D, SeparableConv's depthwise kernel: ``_registry``).

Example:
    >>> import dc_keras.compat.tfmot as tfmot
    >>> pruned = tfmot.sparsity.keras.prune_low_magnitude(
    ...     model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0))
"""
import abc
import contextlib

import keras

from dc_keras.compat.tfmot import _keras2
from dc_keras.train import _base
from dc_keras.train import pruning as _pruning
from dc_keras.train.strip import strip as _strip_model
from dc_keras.train.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule


def prune_low_magnitude(to_prune, pruning_schedule=None, block_size=(1, 1), block_pooling_type="AVG",
                        pruning_policy=None, sparsity_m_by_n=None, **kwargs):
    """Wraps a model, a layer or a list of layers for magnitude pruning (tfmot's signature).

    Args:
        to_prune: a Sequential/Functional model (a pruned copy is returned), a layer (its
            wrapper is returned, e.g. from a ``clone_model`` ``clone_function``) or a list of layers.
        pruning_schedule: a ``PolynomialDecay`` / ``ConstantSparsity``; default
            ``ConstantSparsity(0.5, 0)`` as in tfmot.
        **kwargs: for a single layer, keyword arguments of its wrapper (a Keras layer), e.g. ``name``.
        block_size, block_pooling_type: only tfmot's defaults ``(1, 1)`` / ``"AVG"`` (no block sparsity).
        pruning_policy: only None.
        sparsity_m_by_n: ``(m, n)`` structured sparsity as in tfmot: ``m`` zeros in every ``n``
            consecutive weights along the input dimension, e.g. ``(2, 4)``. (``dc_keras.prune``'s
            own ``sparsity_m_by_n`` counts the weights kept: this is its ``(n - m, n)``.)

    Example:
        >>> pruned = prune_low_magnitude(model, pruning_schedule=PolynomialDecay(0.5, 0.8, 0, 1000))
    """
    _check_wrapper_kwargs("prune_low_magnitude()", to_prune, kwargs)
    try:
        block_size = tuple(block_size)
    except TypeError:
        raise ValueError(f"block_size must be a pair of ints such as (1, 1), got {block_size!r}.") from None
    if block_size != (1, 1):
        raise ValueError(f"block_size={block_size!r}: block sparsity is not supported by dc_keras; use "
                         "block_size=(1, 1) (unstructured) or sparsity_m_by_n=(m, n) for structured sparsity.")
    if block_pooling_type not in ("AVG", "MAX"):
        raise ValueError(f"block_pooling_type must be 'AVG' or 'MAX', got {block_pooling_type!r}.")
    if pruning_policy is not None:
        raise ValueError("pruning_policy is not supported by dc_keras (tfmot's PruneForLatencyOnXNNPack); "
                         "pass pruning_policy=None and choose the layers with a clone_function instead.")
    if isinstance(pruning_schedule, type) and issubclass(pruning_schedule, PruningSchedule):
        raise ValueError(f"pruning_schedule must be a schedule instance, got the class {pruning_schedule.__name__}: "
                         "e.g. pruning_schedule=ConstantSparsity(0.5, begin_step=0).")
    if pruning_schedule is not None and not isinstance(pruning_schedule, PruningSchedule):
        raise ValueError(f"pruning_schedule must be a PolynomialDecay, ConstantSparsity or other PruningSchedule of "
                         f"this module, got {pruning_schedule!r}.")
    schedule = ConstantSparsity(0.5, 0) if pruning_schedule is None else pruning_schedule
    keep_m_by_n = _kept_of(sparsity_m_by_n)

    def one(layer):
        if not isinstance(layer, keras.layers.Layer):
            raise _base.not_keras3_error("prune_low_magnitude()", "a Keras model, layer or list of layers", layer)
        if isinstance(layer, _pruning.PruneWrapper):
            return layer  # as tfmot: a layer pruned already is left as it is (its own schedule)
        if isinstance(layer, _base.CompressionWrapper):
            raise ValueError(f"prune_low_magnitude(): layer {layer.name!r} is still wrapped for clustering: "
                             "strip_clustering() the clustered model first, then prune_low_magnitude that.")
        choice = _registry(layer)
        if isinstance(choice, str):
            return layer  # as tfmot, nothing of it is pruned (tfmot wraps it with no weight to prune)
        return _pruning.PruneWrapper(layer, schedule, sparsity_m_by_n=keep_m_by_n, weights=choice, **kwargs)

    if isinstance(to_prune, (list, tuple)):
        return [one(layer) for layer in to_prune]
    if isinstance(to_prune, keras.Model):  # as tfmot: frozen layers too, and no layer silently left out
        _refuse_subclassed(to_prune, "prune_low_magnitude", "")
        _refuse_wrapped(to_prune)
        return _refuse_unsupported(_pruning.prune(to_prune, schedule, sparsity_m_by_n=keep_m_by_n, include_frozen=True,
                                                  _weights_of=_registry),
                                  "pruned", "prune_low_magnitude", to_prune)
    return one(to_prune)


def _check_wrapper_kwargs(call, target, kwargs):
    """As in tfmot, extra keyword arguments (``name=``, ...) of ``prune_low_magnitude`` /
    ``cluster_weights`` are for the wrapper of a single layer: refused for a model or a list."""
    if kwargs and not (isinstance(target, keras.layers.Layer) and not isinstance(target, keras.Model)):
        raise TypeError(f"{call} got unsupported argument(s) {sorted(kwargs)}: as in tfmot, extra keyword "
                        "arguments (name=, ...) go to the wrapper of a single layer only.")


_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
# The layers tfmot 0.8.1's registry lists with no weights to prune (activations, reshapes, pooling,
# dropout, merges, normalisations): its prune_low_magnitude / cluster_weights wrap them, with nothing
# to do, also given alone or in a list. Known by type since most have no weights only once built.
_WEIGHTLESS = tuple(getattr(keras.layers, name) for name in (
    "ELU", "LeakyReLU", "ReLU", "Softmax", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D",
    "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Activation",
    "ActivityRegularization", "Dropout", "Flatten", "Lambda", "Masking", "Permute", "RepeatVector", "Reshape",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "Add", "Average", "Concatenate", "Dot", "Maximum",
    "Minimum", "Multiply", "Subtract", "AlphaDropout", "GaussianDropout", "GaussianNoise", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPooling1D",
    "MaxPooling2D", "MaxPooling3D") if hasattr(keras.layers, name)) + _base._NORMALIZATIONS
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def _registry(layer):
    """Which weights of ``layer`` the drop-in compresses where tfmot 0.8.1's layer registry differs
    from dc_keras's: a DepthwiseConv1D/2D is left dense (the reason, as a string) and of a
    SeparableConv1D/2D only ``pointwise_kernel`` is compressed; a layer with no weights to compress
    (a type tfmot's registry lists without any, a built layer without weights, a ``PrunableLayer``
    whose ``get_prunable_weights()`` returns ``[]``) is left as it is (the reason); None (dc_keras's
    choice) for every other layer and for a layer that declares its weights (as in tfmot).

    Example:
        >>> _registry(keras.layers.SeparableConv2D(8, 3))  # ['pointwise_kernel']
        >>> _registry(keras.layers.Flatten())  # 'no weights to compress ...'
    """
    if _base.declares_weights(layer):
        return _base.unsupported_reason(layer)  # None, or why a built one declaring [] stays as it is
    if isinstance(layer, _WEIGHTLESS) or (layer.built and not layer.weights):
        return "no weights to compress (tfmot's registry wraps it with nothing to do)"
    if isinstance(layer, _DEPTHWISE):
        return ("depthwise kernel, left dense as tfmot 0.8.1's layer registry does (dc_keras.prune / "
                "dc_keras.cluster compress it)")
    if isinstance(layer, _SEPARABLE):
        return ["pointwise_kernel"]
    return None


def _refuse_subclassed(model, call, args):
    """A subclassed or unbuilt model: the error names the drop-in's own function and the fix (the
    rebuild's own errors named dc_keras.prune() / cluster(), which a tfmot user does not call)."""
    if not _base.is_graph_model(model):
        raise ValueError(
            f"{call}() wraps the layers of Sequential and Functional models (tfmot refuses subclassed models too); "
            f"{type(model).__name__} is a subclassed model: apply {call}(layer{args}) to the layers inside it "
            f"instead, e.g. self.dense = {call}(keras.layers.Dense(...){args}) in its __init__.")
    if not model.built:  # (the rebuild's own error named dc_keras.prune() / cluster())
        raise ValueError(
            f"{call}(): model {model.name!r} is not built (a Sequential given no input shape), so its layers "
            f"have no weights to {'prune' if call.startswith('prune') else 'cluster'} yet. Start it with "
            f"keras.Input(shape) (keras.Sequential([keras.Input((784,)), ...])) or call model.build((None, ...)) "
            f"first; or wrap the layers one by one as you build the model: {call}(keras.layers.Dense(...){args}).")


def _refuse_wrapped(model):
    """tfmot keeps a model's pruned layers and wraps the others; dc_keras rebuilds only models
    without wrappers. Name the layers and the two usual intents (go on pruning, prune again)."""
    wrapped = _base.find_wrappers(model)
    if not wrapped:
        return
    names = ", ".join(repr(w.name) for w in wrapped[:5]) + (", ..." if len(wrapped) > 5 else "")
    if all(isinstance(w, _pruning.PruneWrapper) for w in wrapped):
        raise ValueError(
            f"prune_low_magnitude(): model {model.name!r} is pruned already (layers {names}; tfmot would keep them "
            "and wrap only the others, dc_keras does not mix the two). To go on pruning it, fit it as it is with "
            "UpdatePruningStep(); to prune all of it with a new schedule, call strip_pruning(model) first and "
            "prune_low_magnitude that (or wrap the other layers in the model you build: "
            "prune_low_magnitude(layer)).")
    raise ValueError(f"prune_low_magnitude(): model {model.name!r} still has clustering wrappers (layers {names}): "
                     "call strip_clustering(model) first, then prune_low_magnitude that.")


def _refuse_unsupported(model, what, call, source):
    """tfmot refuses a model with a layer it cannot compress; dc_keras leaves such layers dense
    (``compression_report``). Raise an error for those holding a trainable matrix or larger (what
    the user expects compressed), naming the layers and the fixes; normalisation layers (vectors
    only, which tfmot also leaves) stay dense. ``source``: the model given, whose layer names the
    report uses (a clone may rename a nested subclassed model)."""
    report = getattr(model, "compression_report", None)  # its layer names: those of `source`, the model given
    unknown = [e for e in (report.skipped if report else [])
               if _base.left_dense_unsupported(source.get_layer(e["layer"]))]
    if unknown:  # (a nested subclassed model or a TimeDistributed of a custom layer passed before 2026-12-05)
        names = ", ".join(f"{e['layer']!r} ({e['type']}: {e['reason']})" for e in unknown)
        raise ValueError(
            f"{call}: layer(s) {names} cannot be {what}. As in tfmot, give a custom layer a get_prunable_weights() returning "
            "the variables to compress (tfmot.sparsity.keras.PrunableLayer), or wrap only the other layers: "
            f"{call}(layer) in a keras.models.clone_model clone_function (docs/migrating_from_tfmot.md).")
    return model


def _kept_of(m_by_n):
    """tfmot's ``(m, n)`` (m zeros in every n) as dc_keras's (n - m kept of every n); the same
    rule 0 < m < n holds for both."""
    pair = _pruning._check_m_by_n(m_by_n, meaning="m zeros in every n consecutive weights, e.g. (2, 4)")
    return None if pair is None else (pair[1] - pair[0], pair[1])


class UpdatePruningStep(_pruning.PruningCallback):
    """Required callback while training a pruned model (tfmot's name for
    :class:`dc_keras.PruningCallback`).

    Example:
        >>> pruned.fit(x, y, callbacks=[UpdatePruningStep()])
    """

    def __init__(self):
        super().__init__()

    def on_epoch_end(self, batch, logs=None):
        """tfmot's parameter name: its custom-training-loop guide calls ``on_epoch_end(batch=...)``."""
        super().on_epoch_end(batch, logs)


class PruningSummaries(_pruning.PruningCallback):
    """Writes each pruned weight's sparsity to ``<log_dir>/train`` at every mask update, on
    ``keras.callbacks.TensorBoard``'s step axis.

    Unlike tfmot's (a ``TensorBoard`` subclass) it writes no loss/metric curves: add
    ``keras.callbacks.TensorBoard(log_dir)`` for those. ``update_freq`` is accepted for tfmot's
    signature; sparsity is written whenever the masks change.

    Example:
        >>> pruned.fit(x, y, callbacks=[UpdatePruningStep(), PruningSummaries(log_dir="logs")])
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if kwargs:
            raise TypeError(f"PruningSummaries() got unsupported argument(s) {sorted(kwargs)} (TensorBoard "
                            "options belong to keras.callbacks.TensorBoard, which you can add next to it).")
        if log_dir is None:  # PruningCallback(log_dir=None) only prunes: this would write nothing, silently
            raise ValueError("PruningSummaries needs a log_dir (the folder TensorBoard reads, e.g. 'logs'), got None; "
                             "to prune without writing summaries use UpdatePruningStep().")
        if update_freq not in ("epoch", "batch") and (isinstance(update_freq, bool) or not isinstance(update_freq, int)):
            raise ValueError(f"update_freq must be 'epoch', 'batch' or an int, got {update_freq!r}.")
        self.update_freq = update_freq
        super().__init__(log_dir=log_dir)


def strip_pruning(model):
    """Removes the pruning wrappers; the kernels keep their zeros (:func:`dc_keras.strip`).

    Example:
        >>> final = strip_pruning(pruned)
    """
    return _strip_as("strip_pruning()", model)


def _strip_as(call, model):
    """:func:`dc_keras.strip` (its warning points at the user's line: the first frame outside
    dc_keras), but a model of Keras 2 (tf_keras) or no Keras object at all is refused naming
    ``call``, the drop-in's function the user called (``strip()`` is dc_keras's name)."""
    if not isinstance(model, keras.layers.Layer):
        raise _base.not_keras3_error(call, "a Keras model or layer", model)
    return _strip_model(model)


@contextlib.contextmanager
def prune_scope():
    """tfmot needs it to load pruned models; dc_keras's wrappers are registered with Keras, so
    ``keras.saving.load_model`` works with or without it. Inside it, a file that still holds
    tfmot's own (Keras 2) wrappers is one ``ValueError`` saying to ``strip_pruning`` it in tfmot.

    Example:
        >>> with prune_scope():
        ...     model = keras.saving.load_model("pruned.keras")
    """
    with _keras2.tfmot_file_scope():
        yield


class PrunableLayer(abc.ABC):
    """Mix-in for custom layers: implement :meth:`get_prunable_weights` (a list of the layer's
    variables to prune) and the layer can be given to ``prune_low_magnitude``.

    Example:
        >>> class MyDense(keras.layers.Dense, PrunableLayer):
        ...     def get_prunable_weights(self):
        ...         return [self.kernel]
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        raise NotImplementedError("Must be implemented in subclasses.")


class _TfmotWrapperClass(type(_pruning.PruneWrapper)):
    """Metaclass of the drop-in's wrapper class names (``PruneLowMagnitude``, ``ClusterWeights``).

    Each is a subclass of dc_keras's wrapper that is never instantiated itself: calling it takes
    tfmot 0.8.1's constructor arguments and returns what the drop-in's function gives for that one
    layer, a dc_keras wrapper (a ``.keras`` file names dc_keras's class, so it loads without the
    drop-in); ``isinstance`` / ``issubclass`` test against dc_keras's wrapper, so the wrappers
    ``prune_low_magnitude`` / ``cluster_weights`` return are instances of it, as in tfmot.

    Example:
        >>> isinstance(prune_low_magnitude(keras.layers.Dense(3)), PruneLowMagnitude)
        True
    """

    def __call__(cls, *args, **kwargs):
        return cls._from_tfmot_arguments(*args, **kwargs)

    def __instancecheck__(cls, instance):
        return isinstance(instance, cls._dc_keras_class)

    def __subclasscheck__(cls, subclass):
        return issubclass(subclass, cls._dc_keras_class)


def _refuse_subclass(name, replacement):
    """``__init_subclass__`` of a drop-in wrapper class name: a subclass would never be built (calling
    the name builds dc_keras's wrapper), so its overrides would be dropped silently."""
    def refuse(cls, **kwargs):  # noqa: ARG001 (__init_subclass__ signature)
        raise TypeError(f"{name} cannot be subclassed here: in the tfmot drop-in it builds a dc_keras wrapper "
                        f"({replacement}), so a subclass's overrides would never run. Subclass {replacement} "
                        "(dc_keras's own argument names) instead.")
    return classmethod(refuse)


def _refuse_dc_keras_arguments(call, kwargs, names):
    """One error for a keyword of dc_keras's wrapper (``schedule=``, ``bits=``...) given to the tfmot
    class name, which takes tfmot's arguments: ``names`` maps it to what to pass instead."""
    for key, instead in names.items():
        if key in kwargs:
            raise TypeError(f"{call}() got {key}=, an argument of dc_keras's own wrapper class: {call} takes "
                            f"tfmot's arguments, {instead}.")


def _one_layer(call, layer, function):
    """The tfmot wrapper classes wrap one layer (tfmot refuses a model there): the error says so."""
    if isinstance(layer, keras.Model) or isinstance(layer, (list, tuple)):
        what = "a model" if isinstance(layer, keras.Model) else "a list"
        raise ValueError(f"{call}() wraps one layer, got {what}: call {function}(...) on it instead (it wraps every "
                         "layer it can compress).")
    if not isinstance(layer, keras.layers.Layer):
        raise _base.not_keras3_error(f"{call}()", "a Keras layer", layer)


class PruneLowMagnitude(_pruning.PruneWrapper, metaclass=_TfmotWrapperClass):
    """tfmot's pruning wrapper class, with tfmot 0.8.1's constructor arguments.

    ``PruneLowMagnitude(layer, pruning_schedule=ConstantSparsity(0.5, 0), block_size=(1, 1),
    block_pooling_type="AVG", sparsity_m_by_n=None, **kwargs)`` is ``prune_low_magnitude(layer, ...)``
    with the same arguments and meanings (``sparsity_m_by_n=(m, n)``: m zeros in every n): it returns
    a :class:`dc_keras.train.PruneWrapper` (the class a ``.keras`` file names), or the layer itself
    when tfmot's registry gives it nothing to prune (a Flatten, a DepthwiseConv2D...). ``isinstance(w,
    PruneLowMagnitude)`` is true of every dc_keras pruning wrapper. Block sparsity (``block_size``
    other than ``(1, 1)``) raises, as in ``prune_low_magnitude``; dc_keras's own argument names
    (``schedule=``) raise a ``TypeError`` naming tfmot's.

    Example:
        >>> dense = PruneLowMagnitude(keras.layers.Dense(8), pruning_schedule=ConstantSparsity(0.5, 0))
        >>> model = keras.Sequential([keras.Input((16,)), dense])
    """

    _dc_keras_class = _pruning.PruneWrapper
    __init_subclass__ = _refuse_subclass("PruneLowMagnitude", "dc_keras.train.PruneWrapper")

    @classmethod
    def _from_tfmot_arguments(cls, layer, pruning_schedule=None, block_size=(1, 1), block_pooling_type="AVG",
                              sparsity_m_by_n=None, **kwargs):
        _refuse_dc_keras_arguments("PruneLowMagnitude", kwargs, {
            "schedule": "pruning_schedule=ConstantSparsity(0.5, 0) (or dc_keras.train.PruneWrapper(layer, schedule))"})
        if "pruning_policy" in kwargs:
            raise TypeError("PruneLowMagnitude() got pruning_policy=, which tfmot's wrapper does not take either: it "
                            "is an argument of prune_low_magnitude(model, ...), and dc_keras has no pruning policies; "
                            "choose the layers to wrap yourself.")
        _one_layer("PruneLowMagnitude", layer, "prune_low_magnitude")
        return prune_low_magnitude(layer, pruning_schedule=pruning_schedule, block_size=block_size,
                                   block_pooling_type=block_pooling_type, sparsity_m_by_n=sparsity_m_by_n, **kwargs)


_NOT_PROVIDED = {
    name: (f"tfmot.sparsity.keras.{name} is not provided: dc_keras has no pruning policies. Pass "
           "pruning_policy=None and choose the layers to prune yourself: prune_low_magnitude(layer) in a "
           "keras.models.clone_model clone_function (tfmot's 'prune some layers' recipe), or "
           "dc_keras.prune(model, schedule, layers=[...]) (docs/migrating_from_tfmot.md)")
    for name in ("PruneForLatencyOnXNNPack", "PruningPolicy")
}

# A package to the import system (a module with __path__ is one; no file is ever found under an
# empty path), so that `from ...keras import <name>` of a name in _NOT_PROVIDED asks the finder in
# dc_keras/compat/tfmot/__init__.py, which raises the ImportError with the message below.
__path__ = []


def __getattr__(name):
    """tfmot names this drop-in does not have: an AttributeError that names the replacement."""
    if name in _NOT_PROVIDED:
        raise AttributeError(_NOT_PROVIDED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (tfmot.sparsity.keras's names and what "
                         "replaces the missing ones: docs/migrating_from_tfmot.md)")

__all__ = ["prune_low_magnitude", "PolynomialDecay", "ConstantSparsity", "PruningSchedule", "UpdatePruningStep",
           "PruningSummaries", "strip_pruning", "prune_scope", "PrunableLayer", "PruneLowMagnitude"]

