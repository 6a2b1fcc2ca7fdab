"""``tfmot.clustering.keras`` on Keras 3: trained weight sharing by :func:`dc_keras.cluster`.

Same names, argument names and defaults as tensorflow_model_optimization 0.8, including the
sparsity-preserving option (``preserve_sparsity=True``, tfmot's experimental flag). Differences
(docs/migrating_from_tfmot.md): per-channel clustering is not available (an error says so).

Example:
    >>> import dc_keras.compat.tfmot as tfmot
    >>> CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
    >>> clustered = tfmot.clustering.keras.cluster_weights(
    ...     model, number_of_clusters=16, cluster_centroids_init=CentroidInitialization.LINEAR)
"""
import contextlib
import enum
import numbers

import keras

from dc_keras.compat.tfmot import _keras2
from dc_keras.compat.tfmot.sparsity import keras as _sparsity_keras
from dc_keras.train import _base
from dc_keras.train import clustering as _clustering
from dc_keras.train import summaries as _summaries


class CentroidInitialization(str, enum.Enum):
    """How the centroids start: tfmot's enum (a ``str`` enum, same members and values, so it can be
    iterated and compared with saved strings); the members map to dc_keras's ``init``.

    Example:
        >>> cluster_weights(model, 16, cluster_centroids_init=CentroidInitialization.DENSITY_BASED)
        >>> [init.name for init in CentroidInitialization]
        ['LINEAR', 'RANDOM', 'DENSITY_BASED', 'KMEANS_PLUS_PLUS']
    """

    LINEAR = "CentroidInitialization.LINEAR"
    RANDOM = "CentroidInitialization.RANDOM"
    DENSITY_BASED = "CentroidInitialization.DENSITY_BASED"
    KMEANS_PLUS_PLUS = "CentroidInitialization.KMEANS_PLUS_PLUS"


_INITS = {
    CentroidInitialization.LINEAR: "linear",
    CentroidInitialization.RANDOM: "random",
    CentroidInitialization.DENSITY_BASED: "density",
    CentroidInitialization.KMEANS_PLUS_PLUS: "kmeans++",
}


def _init_of(value):
    """dc_keras's ``init`` for a member, its value (``"CentroidInitialization.LINEAR"``) or its name
    (``"LINEAR"``, any case); tfmot's own enum members are ``str`` values too."""
    if isinstance(value, str):
        name = value.rpartition(".")[2].upper() if value.startswith("CentroidInitialization.") else value.upper()
        if name in CentroidInitialization.__members__:
            return _INITS[CentroidInitialization[name]]
    raise ValueError(f"cluster_centroids_init must be one of CentroidInitialization."
                     f"{{{', '.join(CentroidInitialization.__members__)}}}, got {value!r}.")


_SUM = "GradientAggregation.SUM"  # tfmot's GradientAggregation (a str enum) has this value


def _check_gradient_aggregation(value):
    """tfmot's ``cluster_gradient_aggregation`` (a wrapper argument, passed on by its
    ``cluster_weights`` too): dc_keras's centroids always get the sum of their weights' gradients,
    tfmot's default ``GradientAggregation.SUM``; ``AVG`` is refused with what to do instead."""
    name = value.rpartition(".")[2].upper() if isinstance(value, str) else None
    if name == "SUM":
        return
    if name == "AVG":
        raise ValueError("cluster_gradient_aggregation=GradientAggregation.AVG is not supported: dc_keras gives each "
                         "centroid the sum of its weights' gradients (the paper's rule, tfmot's default SUM). Leave "
                         "the argument out (or pass GradientAggregation.SUM); to move the centroids more slowly, "
                         "lower the learning rate.")
    raise ValueError(f"cluster_gradient_aggregation must be GradientAggregation.SUM (tfmot's default; 'SUM'), got "
                     f"{value!r}.")


def cluster_weights(to_cluster, number_of_clusters, cluster_centroids_init=CentroidInitialization.KMEANS_PLUS_PLUS,
                    preserve_sparsity=False, cluster_per_channel=False, **kwargs):
    """Shares the kernel values of a model, layer or list of layers among ``number_of_clusters``
    trainable centroids (tfmot's signature and defaults).

    Args:
        to_cluster: a Sequential/Functional model (a clustered copy is returned), a layer or a list of layers.
        number_of_clusters: centroids per kernel (any integer >= 1, not only powers of two).
        cluster_centroids_init: a :class:`CentroidInitialization` value (default k-means++, as in tfmot).
        preserve_sparsity: keep pruned (exactly zero) weights at zero. As in tfmot the zero counts
            among ``number_of_clusters`` in a kernel that has zeros: ``number_of_clusters - 1``
            trainable shared values plus 0, so a pruned kernel ends with at most
            ``number_of_clusters`` distinct values; a kernel without zeros (a layer that was not
            pruned) gets all ``number_of_clusters`` (the wrappers' ``zero_takes_a_cluster``;
            ``dc_keras.cluster`` counts non-zero values only). Unlike tfmot, no non-zero weight becomes 0 (tfmot's zero
            centroid also takes the weights nearest to it). ``LINEAR`` then starts the centroids
            evenly on each side of zero, shared in proportion to the negative and positive
            weights, as tfmot does.
        cluster_per_channel: only False.
        cluster_gradient_aggregation: (tfmot's wrapper argument, passed on by its cluster_weights) only
            ``GradientAggregation.SUM``, tfmot's default: each centroid gets the sum of its weights' gradients.
        **kwargs: for a single layer, keyword arguments of its wrapper (a Keras layer), e.g. ``name``.

    Example:
        >>> clustered = cluster_weights(model, number_of_clusters=16,
        ...                             cluster_centroids_init=CentroidInitialization.LINEAR)
    """
    _check_gradient_aggregation(kwargs.pop("cluster_gradient_aggregation", _SUM))
    _sparsity_keras._check_wrapper_kwargs("cluster_weights()", to_cluster, kwargs)
    if isinstance(number_of_clusters, bool) or not isinstance(number_of_clusters, numbers.Integral) \
            or number_of_clusters < 1:
        raise ValueError(f"number_of_clusters must be a positive integer, got {number_of_clusters!r}.")
    if number_of_clusters > 4096:
        raise ValueError(f"number_of_clusters={number_of_clusters}: dc_keras shares at most 4096 values per kernel "
                         "(its packed format's codebook limit; 12-bit indices). Pass number_of_clusters <= 4096.")
    if cluster_per_channel:
        raise ValueError(f"cluster_per_channel={cluster_per_channel!r}: per-channel clustering is not supported by "
                         "dc_keras (one set of centroids per kernel). Pass cluster_per_channel=False.")
    init = _init_of(cluster_centroids_init)
    clusters = int(number_of_clusters)
    if preserve_sparsity and clusters < 2:
        raise ValueError(f"number_of_clusters={clusters} with preserve_sparsity=True: as in tfmot, the count "
                         "includes the zero, which leaves no cluster for the non-zero weights. Pass "
                         "number_of_clusters >= 2 (e.g. 16: 15 shared non-zero values and 0).")
    # tfmot's sparsity-preserving clustering has a zero centroid among its number_of_clusters;
    # dc_keras's zero slot is outside its centroids: each wrapper gives a kernel that has zeros one
    # centroid fewer, and one without zeros all of them (decided per kernel, on its values)
    args = dict(init=init, preserve_sparsity=bool(preserve_sparsity), clusters=clusters)
    zero_counts = dict(zero_takes_a_cluster=True) if preserve_sparsity else {}

    def one(layer):
        if not isinstance(layer, keras.layers.Layer):
            raise _base.not_keras3_error("cluster_weights()", "a Keras model, layer or list of layers", layer)
        if isinstance(layer, _clustering.ClusterWrapper):
            return layer  # as tfmot: a layer clustered already is left as it is
        if isinstance(layer, _base.CompressionWrapper):
            raise ValueError(f"cluster_weights(): layer {layer.name!r} is still wrapped for pruning: strip_pruning() "
                             "the pruned model first, then cluster_weights that (as in tfmot).")
        choice = _sparsity_keras._registry(layer)
        if isinstance(choice, str):
            return layer  # as tfmot, nothing of it is clustered (tfmot wraps it with no weight to cluster)
        return _clustering.ClusterWrapper(layer, weights=choice, **args, **zero_counts, **kwargs)

    if isinstance(to_cluster, (list, tuple)):
        return [one(layer) for layer in to_cluster]
    if isinstance(to_cluster, keras.Model):  # as tfmot: frozen layers too, and no layer silently left out
        _sparsity_keras._refuse_subclassed(to_cluster, "cluster_weights", ", number_of_clusters")
        return _sparsity_keras._refuse_unsupported(
            _clustering.cluster(to_cluster, include_frozen=True, _weights_of=_sparsity_keras._registry,
                                _zero_takes_a_cluster=bool(preserve_sparsity), **args),
            "clustered", "cluster_weights", to_cluster)
    return one(to_cluster)


def strip_clustering(model):
    """Removes the clustering wrappers; each kernel keeps only its shared values (:func:`dc_keras.strip`).

    Example:
        >>> final = strip_clustering(clustered)
    """
    return _sparsity_keras._strip_as("strip_clustering()", model)


@contextlib.contextmanager
def cluster_scope():
    """tfmot needs it to load clustered models; dc_keras's wrappers are registered with Keras.
    Inside it, a file that still holds tfmot's own (Keras 2) wrappers is one ``ValueError`` saying
    to ``strip_clustering`` / ``strip_pruning`` it in tfmot.

    Example:
        >>> with cluster_scope():
        ...     model = keras.saving.load_model("clustered.keras")
    """
    with _keras2.tfmot_file_scope():
        yield


class ClusteringSummaries(_summaries.ClusteringSummaries):
    """Writes each clustered layer's cluster count and centroid drift to ``<log_dir>/train``
    (tfmot's name and arguments for :class:`dc_keras.train.ClusteringSummaries`).

    Unlike tfmot's (a ``TensorBoard`` subclass, histograms of the wrappers' variables) it writes two
    scalars per clustered weight: ``clusters/<layer>/<weight>``, the distinct non-zero values in use
    (with ``preserve_sparsity=True`` a kernel with zeros shows ``number_of_clusters - 1``: the zero
    is one of tfmot's clusters but is not counted), and ``centroid_drift/<layer>/<weight>``, the
    mean absolute change since the start of ``fit`` of the centroids that hold weights (the spare
    centroid such a kernel keeps at 0 is left out; see :func:`dc_keras.train.summaries.centroid_drift`).
    No loss/metric curves: add ``keras.callbacks.TensorBoard(log_dir)`` for those.
    ``cluster_update_freq``: ``'epoch'``, ``'batch'`` or every ``n`` batches.

    Example:
        >>> clustered.fit(x, y, callbacks=[ClusteringSummaries(log_dir="logs", cluster_update_freq="batch")])
    """

    def __init__(self, log_dir="logs", cluster_update_freq="epoch", **kwargs):
        if kwargs:
            raise TypeError(f"ClusteringSummaries() got unsupported argument(s) {sorted(kwargs)} (TensorBoard "
                            "options belong to keras.callbacks.TensorBoard, which you can add next to it).")
        # checked here so that the error names tfmot's argument (the base class's says `update_freq`)
        if isinstance(cluster_update_freq, str) and cluster_update_freq in ("epoch", "batch"):
            update_freq = 1 if cluster_update_freq == "batch" else "epoch"
        elif isinstance(cluster_update_freq, numbers.Integral) and not isinstance(cluster_update_freq, bool) \
                and cluster_update_freq >= 1:
            update_freq = int(cluster_update_freq)
        else:
            raise ValueError(f"cluster_update_freq must be 'epoch', 'batch' or a positive int (write every n "
                             f"batches), got {cluster_update_freq!r}.")
        super().__init__(log_dir, update_freq=update_freq)


class ClusterWeights(_clustering.ClusterWrapper, metaclass=_sparsity_keras._TfmotWrapperClass):
    """tfmot's clustering wrapper class, with tfmot 0.8.1's constructor arguments.

    ``ClusterWeights(layer, number_of_clusters, cluster_centroids_init=KMEANS_PLUS_PLUS,
    preserve_sparsity=False, cluster_per_channel=False, cluster_gradient_aggregation=SUM, **kwargs)``
    is ``cluster_weights(layer, ...)`` with the same arguments and meanings: it returns a
    :class:`dc_keras.train.ClusterWrapper` (the class a ``.keras`` file names), or the layer itself
    when tfmot's registry gives it nothing to cluster. ``isinstance(w, ClusterWeights)`` is true of
    every dc_keras clustering wrapper. ``cluster_gradient_aggregation``: only tfmot's default, the
    sum (``GradientAggregation.SUM``, or ``"SUM"``); dc_keras's own argument names (``bits=``,
    ``clusters=``, ``init=``) raise a ``TypeError`` naming tfmot's.

    Example:
        >>> dense = ClusterWeights(keras.layers.Dense(8), number_of_clusters=16,
        ...                        cluster_centroids_init=CentroidInitialization.LINEAR)
    """

    _dc_keras_class = _clustering.ClusterWrapper
    __init_subclass__ = _sparsity_keras._refuse_subclass("ClusterWeights", "dc_keras.train.ClusterWrapper")

    @classmethod
    def _from_tfmot_arguments(cls, layer, number_of_clusters=None, cluster_centroids_init=
                              CentroidInitialization.KMEANS_PLUS_PLUS, preserve_sparsity=False,
                              cluster_per_channel=False, **kwargs):
        _sparsity_keras._refuse_dc_keras_arguments("ClusterWeights", kwargs, {
            "bits": "number_of_clusters=2**bits (or dc_keras.train.ClusterWrapper(layer, bits=...))",
            "clusters": "number_of_clusters= (or dc_keras.train.ClusterWrapper(layer, clusters=...))",
            "init": "cluster_centroids_init=CentroidInitialization.LINEAR (or ...KMEANS_PLUS_PLUS, "
                    "...DENSITY_BASED, ...RANDOM)"})
        if number_of_clusters is None:
            raise TypeError("ClusterWeights() missing its argument number_of_clusters (as in tfmot): e.g. "
                            "ClusterWeights(layer, number_of_clusters=16).")
        _sparsity_keras._one_layer("ClusterWeights", layer, "cluster_weights")
        return cluster_weights(layer, number_of_clusters, cluster_centroids_init=cluster_centroids_init,
                               preserve_sparsity=preserve_sparsity, cluster_per_channel=cluster_per_channel, **kwargs)


_CUSTOM_LAYERS = ("tfmot.clustering.keras.{name} is not provided: dc_keras clusters the weights a custom layer "
                  "lists in get_prunable_weights() (tfmot.sparsity.keras.PrunableLayer), with one set of centroids "
                  "per weight; implement that instead of get_clusterable_weights() (docs/migrating_from_tfmot.md)")
_NOT_PROVIDED = {
    "ClusterableLayer": _CUSTOM_LAYERS,
    "clusterable_layer": _CUSTOM_LAYERS,
    "ClusteringAlgorithm": ("tfmot.clustering.keras.ClusteringAlgorithm is not supported: dc_keras's centroids get "
                            "the summed gradient of their weights (the paper's rule) for every layer type; cluster "
                            "the layer's weights by listing them in get_prunable_weights() (docs/migrating_from_tfmot.md)"),
    "experimental": ("tfmot.clustering.keras.experimental is not provided: its cluster.cluster_weights(..., "
                     "preserve_sparsity=True) is cluster_weights(..., preserve_sparsity=True) here "
                     "(docs/migrating_from_tfmot.md)"),
}

# A package to the import system (a module with __path__ is one; no file is ever found under an
# empty path), so that `from ...keras import <name>` of a name in _NOT_PROVIDED asks the finder in
# dc_keras/compat/tfmot/__init__.py, which raises the ImportError with the message below.
__path__ = []


def __getattr__(name):
    """tfmot names this drop-in does not have: an AttributeError that names the replacement."""
    if name in _NOT_PROVIDED:
        raise AttributeError(_NOT_PROVIDED[name].format(name=name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (tfmot.clustering.keras's names and what "
                         "replaces the missing ones: docs/migrating_from_tfmot.md)")


__all__ = ["cluster_weights", "CentroidInitialization", "strip_clustering", "cluster_scope", "ClusteringSummaries",
           "ClusterWeights"]
