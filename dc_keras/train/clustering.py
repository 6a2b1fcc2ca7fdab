"""Trained weight sharing (Deep Compression stage 2): k-means clustering with centroid fine-tuning.

:class:`ClusterWrapper` replaces each clustered weight by ``2**bits`` trainable centroids and a
non-trainable int32 assignment per entry. The forward pass gathers ``centroids[assignments]``, so
autodiff gives each centroid the sum of the gradients of the weights in its cluster (the paper's
update rule) and the assignments never change. With ``preserve_sparsity=True`` the weights that
are exactly zero (pruned) point at an extra constant zero slot: they stay 0 and are no cluster.
"""
import numbers

import keras
import numpy as np
from keras import ops

from dc_keras.train import _base, bn_fold
from dc_keras.train import report as _report
from dc_keras.train.kmeans import INITS, kmeans_1d


def _check_bits(bits, where="bits"):
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= bits <= _base.MAX_BITS:
        raise ValueError(
            f"`{where}` must be an integer between 1 and {_base.MAX_BITS}, got {bits!r}: the packed format "
            f"holds at most {_base.MAX_CODEBOOK} shared values per tensor (docs/FORMAT.md §2)."
        )
    return int(bits)


@keras.saving.register_keras_serializable(package="dc_keras")
class ClusterWrapper(_base.CompressionWrapper):
    """Wraps a layer and shares the values of its kernel(s) among ``2**bits`` trainable centroids.

    Usually created by :func:`cluster`. If ``layer`` is already built, its current weights are
    clustered right away (k-means in numpy); otherwise call :meth:`initialize_clusters` after
    the wrapper is built and the weights are loaded into ``wrapper.layer``.

    Args:
        layer: a supported layer (see :func:`dc_keras.prune`).
        bits: index width; ``2**bits`` centroids per weight.
        init: ``"linear"``, ``"density"``, ``"random"`` or ``"kmeans++"``.
        preserve_sparsity: keep exact zeros at 0 and out of the clusters.
        seed: RNG seed of the random / kmeans++ initialisations.
        clusters: optional number of centroids when it is not a power of two (tfmot's
            ``number_of_clusters``, up to 4096); ``bits`` then becomes the index width it needs.
    """

    def __init__(self, layer, bits=5, init="linear", preserve_sparsity=True, seed=0, clusters=None, **kwargs):
        if clusters is not None:
            if isinstance(clusters, bool) or not isinstance(clusters, numbers.Integral) or not 1 <= clusters <= 4096:
                raise ValueError(f"`clusters` must be an integer between 1 and 4096, got {clusters!r}.")
            bits = max(1, int(clusters - 1).bit_length())
        self._n_clusters = None if clusters is None else int(clusters)
        self.bits = _check_bits(bits)
        if init not in INITS:
            raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
        self.init = init
        if not isinstance(preserve_sparsity, (bool, np.bool_)):
            raise ValueError(f"`preserve_sparsity` must be True or False, got {preserve_sparsity!r}.")
        self.preserve_sparsity = bool(preserve_sparsity)
        self.seed = int(seed)
        super().__init__(layer, **kwargs)
        self._untracked("_centroids", [])
        self._untracked("_assignments", [])
        # A built layer has trained weights: cluster them now (eagerly, in numpy); build() then
        # creates the variables with these values, also when Keras builds inside a symbolic trace.
        self._untracked("_pending", None)
        self._untracked("_clustered_at_init", bool(getattr(layer, "built", False)))
        if getattr(layer, "built", False):
            self._untracked("_pending", [self._kmeans(var) for _, var, _ in _base.compressible_weights(layer)])

    @property
    def clusters(self):
        return self._n_clusters if self._n_clusters is not None else 2 ** self.bits

    def build(self, input_shape=None):
        super().build(input_shape)
        self._untracked("_centroids", [])
        self._untracked("_assignments", [])
        pending = self._pending or [None] * len(self._targets)
        for (name, var, _), values in zip(self._targets, pending):
            c_init, a_init = "zeros", "zeros"
            if values is not None:
                c_init = _ValueInitializer(values[0])
                a_init = _ValueInitializer(values[1])
            centroids = self.add_weight(
                name=f"{name}_centroids", shape=(self.clusters,), dtype=var.dtype, initializer=c_init,
                trainable=True,
            )
            assignments = self.add_weight(
                name=f"{name}_assignments", shape=tuple(var.shape), dtype="int32", initializer=a_init,
                trainable=False,
            )
            self._centroids.append(centroids)
            self._assignments.append(assignments)
            var.trainable = False  # only the centroids train
        self._untracked("_pending", None)

    def _release(self):
        for _, var, _ in self._targets:
            var.trainable = True

    def _kmeans(self, var):
        w = np.asarray(ops.convert_to_numpy(var), dtype=np.float64)
        idx = np.full(w.shape, self.clusters, dtype=np.int32)  # the constant-zero slot
        keep = (w != 0) if self.preserve_sparsity else np.ones(w.shape, bool)
        if not keep.all() and self.clusters + 1 > _base.MAX_CODEBOOK:
            raise ValueError(
                f"Layer {self.layer.name!r}: bits={self.bits} with preserve_sparsity=True on a kernel with "
                f"zeros needs {self.clusters + 1} codebook entries; the packed format holds "
                f"{_base.MAX_CODEBOOK} (docs/FORMAT.md §2). Use bits <= {_base.MAX_BITS - 1} or "
                "preserve_sparsity=False."
            )
        c = np.zeros(self.clusters)
        if keep.any():
            c, a = kmeans_1d(w[keep], self.clusters, init=self.init, seed=self.seed)
            idx[keep] = a.astype(np.int32)
        return c, idx

    def initialize_clusters(self):
        """Run k-means (numpy) on the inner layer's current weights and set centroids/assignments."""
        for (name, var, _), centroids, assignments in zip(self._targets, self._centroids, self._assignments):
            c, idx = self._kmeans(var)
            centroids.assign(c.astype(centroids.dtype))
            assignments.assign(idx)

    def compressed_values(self, training):
        pairs = []
        for (name, var, _), centroids, assignments in zip(self._targets, self._centroids, self._assignments):
            table = ops.concatenate([ops.convert_to_tensor(centroids), ops.zeros((1,), centroids.dtype)], axis=0)
            pairs.append((var, ops.cast(ops.take(table, assignments, axis=0), var.dtype)))
        return pairs

    def distinct_values(self):
        """``{weight_name: number of distinct non-zero values}`` of the current shared weights."""
        out = {}
        for (name, _, _), (_, value) in zip(self._targets, self.compressed_values(False)):
            v = ops.convert_to_numpy(value)
            out[name] = int(np.unique(v[v != 0]).size)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits, init=self.init, preserve_sparsity=self.preserve_sparsity, seed=self.seed)
        if self._n_clusters is not None:
            config["clusters"] = self._n_clusters
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"), custom_objects=custom_objects)
        return cls(layer, **config)


class _ValueInitializer:
    """Initializer returning a precomputed array (the k-means result)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, shape, dtype=None):
        return ops.cast(ops.convert_to_tensor(np.asarray(self.value).reshape(shape)), dtype)


def _bits_for(layer, bits):
    if not isinstance(bits, dict):
        return bits
    if layer.name in bits:
        return bits[layer.name]
    for key, value in bits.items():
        if isinstance(key, type) and isinstance(layer, key):
            return value
    return 8 if _base.is_conv(layer) else 5


def _check_cluster_args(bits, init, preserve_sparsity, fold_batchnorm):
    if isinstance(bits, dict):
        for key, value in bits.items():
            if not isinstance(key, (str, type)):
                raise ValueError(f"`bits` keys must be layer names or classes, got {key!r}.")
            _check_bits(value, f"bits[{key!r}]")
    else:
        _check_bits(bits)
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
    if not isinstance(preserve_sparsity, (bool, np.bool_)):
        raise ValueError(f"`preserve_sparsity` must be True or False, got {preserve_sparsity!r}.")
    if not isinstance(fold_batchnorm, (bool, np.bool_)):
        raise ValueError(f"`fold_batchnorm` must be True or False, got {fold_batchnorm!r}.")


def cluster(model_or_layer, bits=5, init="linear", preserve_sparsity=True, layers=None, seed=0,
            fold_batchnorm=True, include_frozen=False, min_params=0, clusters=None):
    """Share weights: cluster each selected layer's kernel(s) into ``2**bits`` trainable centroids.

    Args:
        model_or_layer: a Sequential/Functional model (rebuilt with :class:`ClusterWrapper` layers
            through ``keras.models.clone_model``, weights copied and clustered, input untouched,
            result not compiled) or one layer (returns a wrapper; for subclassed models).
        bits: an int in 1..12 (the packed format holds at most 4096 shared values), or a dict
            mapping layer names and/or classes to bits; layers the dict does not mention get the
            paper's defaults, 8 bits for convolutions and 5 otherwise. ``None`` means all defaults.
        init: centroid initialisation, ``"linear"`` (paper's best), ``"density"``, ``"random"``,
            ``"kmeans++"``; followed by Lloyd iterations.
        preserve_sparsity: exact zeros (pruned weights) stay 0 and take no cluster.
        layers: None (every supported layer) or a list of layer names and/or classes.
        seed: seed of the random initialisations.
        fold_batchnorm: fold each BatchNormalization that directly follows a clustered
            Conv/Depthwise/Separable/Dense layer into that layer's kernel and bias (inference
            statistics) before k-means, and replace it by ``keras.layers.Identity``; otherwise the
            TFLite converter folds it at export and the kernel loses its sharing. Each fold is
            reported; fine-tuning then trains the folded kernel (BN statistics frozen).
        include_frozen: also cluster layers with ``trainable=False`` (default: left, reported).
        min_params: leave layers with fewer compressible weights dense (reported as too small).
        clusters: optional centroid count for every clustered layer when it is not a power of two
            (tfmot's ``number_of_clusters``, up to 4096); overrides ``bits``.

    The documented flow is ``prune`` -> fit -> ``strip`` -> ``cluster`` -> fit -> ``strip``. The
    returned model has a ``compression_report`` (also logged): clustered layers, folds, skipped
    layers with reasons.

    Example:
        >>> clustered = dc_keras.cluster(dc_keras.strip(pruned), bits={"fc1": 5, "fc3": 6})
        >>> print(clustered.compression_report)
        >>> clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> clustered.fit(x, y, epochs=2)
        >>> final = dc_keras.strip(clustered)  # each kernel: at most 2**bits distinct non-zeros
    """
    if bits is None:
        bits = {}
    _check_cluster_args(bits, init, preserve_sparsity, fold_batchnorm)
    if not isinstance(model_or_layer, keras.layers.Layer):
        raise ValueError(f"cluster() takes a Keras model or layer, got {type(model_or_layer).__name__}.")

    if not isinstance(model_or_layer, keras.Model):
        if layers is not None:
            raise ValueError("`layers` only applies to models; pass the layer itself to cluster one layer.")
        layer = model_or_layer
        return ClusterWrapper(layer, _bits_for(layer, bits), init, preserve_sparsity, seed, clusters=clusters)
    return _cluster_model(model_or_layer, bits, init, preserve_sparsity, layers, seed, fold_batchnorm,
                          include_frozen, min_params, clusters)


def _cluster_model(model, bits, init, preserve_sparsity, layers, seed, fold_batchnorm, include_frozen,
                   min_params, clusters=None):
    existing = _base.find_wrappers(model)
    if existing:
        raise ValueError(
            f"Model {model.name!r} still has {type(existing[0]).__name__} {existing[0].name!r}: "
            "call dc_keras.strip() before cluster() (flow: prune -> fit -> strip -> cluster -> fit -> strip)."
        )
    _base.check_buildable(model, "cluster")
    chosen, skipped = _base.select_layers(model, layers, what="clustered", mapping_ok=False,
                                          include_frozen=include_frozen, min_params=min_params)
    if isinstance(bits, dict):
        names = {l.name for l, _ in _base.graph_layers(model)}
        unknown = [k for k in bits if isinstance(k, str) and k not in names]
        if unknown:
            raise ValueError(f"Unknown layer name(s) {unknown} in `bits`; model {model.name!r} has {sorted(names)}.")
    folds, notes = bn_fold.plan(model, chosen) if fold_batchnorm else ({}, [])
    skipped = [(layer, reason) for layer, reason in skipped if id(layer) not in folds]
    report = _report.build_report("cluster", model, chosen, skipped)
    report.notes.extend(notes)
    wrappers = []

    def replace(original, rebuilder):
        if id(original) in folds and isinstance(original, keras.layers.BatchNormalization):
            return keras.layers.Identity(name=original.name)
        if id(original) in folds:
            report.folds.append((original.name, folds[id(original)].name))
            fresh = bn_fold.fold_clone(original, folds[id(original)], rebuilder)
        else:
            fresh = rebuilder.clone(original)
        if id(original) not in chosen:
            return fresh
        wrapper = ClusterWrapper(fresh, _bits_for(original, bits), init, preserve_sparsity, seed, clusters=clusters)
        wrapper.trainable = fresh.trainable
        wrappers.append(wrapper)
        return wrapper

    new_model, _ = _base.rewrite_model(model, replace, "cluster")
    for wrapper in wrappers:
        if not wrapper._clustered_at_init:
            wrapper.initialize_clusters()
    return _report.attach(new_model, report)


__all__ = ["ClusterWrapper", "cluster"]
