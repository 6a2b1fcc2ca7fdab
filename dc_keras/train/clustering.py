"""Trained weight sharing (Deep Compression stage 2): k-means clustering with centroid fine-tuning.

:class:`ClusterWrapper` replaces each clustered weight by ``2**bits`` trainable centroids and a
non-trainable int32 assignment per entry. The forward pass gathers ``centroids[assignments]``, so
autodiff gives each centroid the sum of the gradients of the weights in its cluster (the paper's
update rule) and the assignments never change. With ``preserve_sparsity=True`` the weights that
are exactly zero (pruned) point at an extra constant zero slot: they stay 0 and are no cluster.
"""
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from dc_keras import _compat
from dc_keras.train import _base, bn_fold
from dc_keras.train import report as _report
from dc_keras.train.kmeans import INITS, kmeans_1d
from dc_keras.train.schedules import _user_stacklevel
from dc_keras._positional import _model_only_positional, _positional_refused  # noqa: F401 (defined there)


class _DefaultBits(int):
    """The default of ``bits`` (5, shown as 5 in signatures and ``help()``), told apart from an
    explicit ``bits=5``: giving ``bits`` and ``clusters`` both is an error."""

    def __repr__(self):
        return int.__repr__(self)


DEFAULT_BITS = _DefaultBits(5)


def _clusters_hint(bits):
    """``" (for 16 clusters pass clusters=16 (or bits=4))"`` when ``bits`` looks like a cluster count
    (tfmot's habit: ``cluster_weights(model, 16)``, the number of clusters positionally), else ``""``."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not _base.MAX_BITS < bits <= _base.MAX_CODEBOOK:
        return ""
    need = max(1, int(bits - 1).bit_length())
    exact = "" if 2 ** need == bits else f": {2 ** need} shared values"
    return (f". Is {bits} a number of clusters (tfmot's cluster_weights(model, number_of_clusters))? `bits` is the "
            f"index width: for {bits} clusters pass clusters={bits} (or bits={need}{exact})")


def _check_bits(bits, where="bits"):
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= bits <= _base.MAX_BITS:
        raise ValueError(
            f"`{where}` must be an integer between 1 and {_base.MAX_BITS} (2**bits shared values), got {bits!r}"
            f"{_clusters_hint(bits) if where == 'bits' else ''}. The packed format holds at most {_base.MAX_CODEBOOK} shared values per "
            "tensor (docs/FORMAT.md §2)."
        )
    return int(bits)


def _check_bits_or_clusters(bits, clusters):
    """``bits`` and ``clusters`` given both (``bits`` not its default): a ValueError saying to give one
    (``clusters`` used to win silently)."""
    if clusters is not None and not isinstance(bits, _DefaultBits) and bits is not None:
        raise ValueError(
            f"Give either `bits` or `clusters`, not both: got bits={bits!r} and clusters={clusters!r}. `clusters` is "
            f"the number of shared values (any count up to {_base.MAX_CODEBOOK}), `bits` its index width "
            "(2**bits shared values): drop one of them.")


@keras.saving.register_keras_serializable(package="dc_keras")
class ClusterWrapper(_base.CompressionWrapper):
    """Wraps a layer and shares the values of its kernel(s) among ``2**bits`` trainable centroids.

    Usually created by :func:`cluster`. If ``layer`` is already built, its current weights are
    clustered right away (k-means in numpy); otherwise when the wrapper is built, on the weights
    the layer is built with (as tfmot's ``cluster_weights`` does). To cluster other weights loaded
    into ``wrapper.layer`` later, call :meth:`initialize_clusters` again.

    Args:
        layer: a supported layer (see :func:`dc_keras.prune`).
        bits: index width; ``2**bits`` centroids per weight.
        init: ``"linear"``, ``"density"``, ``"random"`` or ``"kmeans++"`` (see :func:`cluster`).
        preserve_sparsity: keep exact zeros at 0 and out of the clusters (a linear init then
            splits at zero, see :func:`cluster`).
        seed: RNG seed of the random / kmeans++ initialisations.
        clusters: optional number of centroids when it is not a power of two (tfmot's
            ``number_of_clusters``, up to 4096), in place of ``bits`` (giving both is a ``ValueError``);
            ``bits`` then becomes the index width it needs.
        cluster_biases: also share the bias vector(s) of the layer (``False``, default: biases
            stay free float weights that train normally). ``True`` gives each bias as many
            centroids as the kernel; an int gives it ``2**cluster_biases`` centroids. A clustered
            bias keeps its assignments through fine-tuning like a kernel (only its centroids
            train), so the packed export can store it as indices + codebook.
        zero_takes_a_cluster: with ``preserve_sparsity``, count the zero among the ``clusters``
            shared values (tfmot's ``number_of_clusters``; the tfmot drop-in sets it): a weight
            that has exact zeros gets ``clusters - 1`` trainable values plus the zero (its last
            centroid is left unused), a weight without zeros all ``clusters``. ``False`` (default):
            the zeros never take a cluster, each weight gets ``clusters`` non-zero values.

    The arguments after ``layer`` are keyword-only, as :func:`cluster`'s (``ClusterWrapper(dense, 4)``
    is a ``TypeError`` naming ``bits=4`` and ``clusters=4``).

    Constraints: a clustered weight's ``keras.constraints.NonNeg`` (``kernel_constraint="non_neg"``,
    ``bias_constraint``...) is applied to its centroids after each optimizer step, so the shared
    kernel stays non-negative. Other constraints (MaxNorm, UnitNorm, MinMaxNorm, custom ones) act
    on whole rows/columns, and projecting the kernel would give each weight its own value again:
    they do not act during fine-tuning (a ``UserWarning`` at wrap time says so, and
    ``unheld_constraints`` lists them); ``strip`` keeps them on the layer.

    Example:
        >>> wrapper = ClusterWrapper(trained_dense, bits=4, cluster_biases=3)
    """

    @_model_only_positional("ClusterWrapper", "the layer", lead=2)
    def __init__(self, layer, *, bits=DEFAULT_BITS, init="linear", preserve_sparsity=True, seed=0, clusters=None,
                 cluster_biases=False, zero_takes_a_cluster=False, **kwargs):
        _check_bits_or_clusters(bits, clusters)
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
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"`seed` must be an integer (the seed of the random / kmeans++ initialisations), got {seed!r}.")
        self.seed = int(seed)
        self.cluster_biases = _check_cluster_biases(cluster_biases)
        if not isinstance(zero_takes_a_cluster, (bool, np.bool_)):
            raise ValueError(f"`zero_takes_a_cluster` must be True or False, got {zero_takes_a_cluster!r}.")
        self.zero_takes_a_cluster = bool(zero_takes_a_cluster)
        if self.zero_takes_a_cluster and self.preserve_sparsity and self.clusters < 2:
            raise ValueError(f"clusters={self.clusters} with zero_takes_a_cluster=True: the zero is one of the "
                             "clusters, which leaves none for the non-zero weights of a pruned kernel. Pass "
                             "clusters >= 2.")
        super().__init__(layer, **kwargs)
        self._untracked("_bias_names", set())
        self._untracked("unheld_constraints", [])  # [(weight name, constraint class)], set by build()
        self._untracked("_centroids", [])
        self._untracked("_assignments", [])
        # A built layer has trained weights: cluster them now (eagerly, in numpy); build() then
        # creates the variables with these values, also when Keras builds inside a symbolic trace.
        self._untracked("_pending", None)
        # (a layer with no build() of its own that Keras marked built before its call() built its
        # sublayers, as a .keras file's load does, is not: its weights are read once they exist)
        built = bool(getattr(layer, "built", False)) and not (
            isinstance(layer, keras.layers.Layer) and _base._builds_in_call(layer))
        self._untracked("_clustered_at_init", built)
        self._untracked("_from_config", False)  # set by from_config: the values come from a file or are copied in
        self._untracked("_deferred", False)  # built in a symbolic pass, to be clustered at its first real call
        if built:
            self._untracked("_pending", [self._kmeans(var, self._clusters_of(name))
                                         for name, var, _ in self.cluster_targets(layer)])

    @property
    def clusters(self):
        return self._n_clusters if self._n_clusters is not None else 2 ** self.bits

    @property
    def bias_clusters(self):
        """Centroids per clustered bias (0 when biases are not clustered)."""
        if self.cluster_biases is False:
            return 0
        return self.clusters if self.cluster_biases is True else 2 ** self.cluster_biases

    def _clusters_of(self, name):
        return self.bias_clusters if name in self._bias_names else self.clusters

    def cluster_targets(self, layer=None):
        """``[(name, variable, axis)]`` this wrapper clusters in ``layer`` (default: its own):
        the kernel(s), then the bias(es) when ``cluster_biases`` is set."""
        layer = self.layer if layer is None else layer
        biases = bias_weights(layer) if self.cluster_biases is not False else []
        self._untracked("_bias_names", {name for name, _, _ in biases})
        return self.selected(_base.compressible_weights(layer)) + biases

    def build(self, input_shape=None):
        super().build(input_shape)
        self._untracked("_targets", self.cluster_targets())
        self._untracked("_centroids", [])
        self._untracked("_assignments", [])
        self._untracked("unheld_constraints", [])
        # A layer that was not built when wrapped (tfmot's guide: `cluster_weights(Dense(20), ...)` in a
        # Sequential) is clustered here, on the weights it was just built with, as tfmot does at build;
        # without it the centroids and assignments stayed 0 and training collapsed each kernel to one value.
        fresh = self._pending is None and not self._clustered_at_init and not self._from_config
        # Keras builds a subclassed model's layers in a symbolic pass (keras.StatelessScope), where
        # the weights have no values yet: also when load_model rebuilds a model whose __init__
        # wraps an unbuilt layer. The variables are made there (zeros: a file's values are loaded
        # into them next) and the clustering waits for the first call outside the scope.
        deferred = fresh and bool(_compat.in_stateless_scope())
        if fresh and not deferred:
            self._check_readable()  # before any weight is made (a traced build cannot cluster)
        pending = self._pending or [None] * len(self._targets)
        for (name, var, _), values in zip(self._targets, pending):
            c_init, a_init = "zeros", "zeros"
            if values is not None:
                c_init = _ValueInitializer(values[0])
                a_init = _ValueInitializer(values[1])
            centroids = self.add_weight(
                name=f"{name}_centroids", shape=(self._clusters_of(name),), dtype=var.dtype, initializer=c_init,
                trainable=True, constraint=self._centroid_constraint(name, var),
            )
            assignments = self.add_weight(
                name=f"{name}_assignments", shape=tuple(var.shape), dtype="int32", initializer=a_init,
                trainable=False,
            )
            _refuse_out_of_range(assignments, self.name, name, self._clusters_of(name))
            self._centroids.append(centroids)
            self._assignments.append(assignments)
            var.trainable = False  # only the centroids train
        self._untracked("_pending", None)
        self._untracked("_deferred", deferred)
        if fresh and not deferred:
            self.initialize_clusters()
            self._untracked("_clustered_at_init", True)

    def _cluster_deferred(self):
        """The clustering a build in a symbolic pass left for later (see ``build``), at the first use
        outside such a pass (a call, strip, save): k-means on the layer's weights, unless values were
        put in meanwhile (loaded from a file, or set: the centroids or assignments are no longer all
        zero). Inside the pass (or Keras-JAX's stateless build call) nothing is done; in a traced
        training step (TF's tf.function, JAX's stateless call) the weights cannot be read: the clear
        error of :meth:`_check_readable`."""
        if not self._deferred or _compat.in_stateless_scope() and not _compat.stateless_scope_maps(self._centroids[0]):
            return
        self._check_readable()
        untouched = all(not np.any(_base.to_numpy(v)) for v in (*self._centroids, *self._assignments))
        if untouched:
            self.initialize_clusters()
        self._untracked("_deferred", False)
        self._untracked("_clustered_at_init", True)

    def save_own_variables(self, store):
        if self._deferred:
            self._cluster_deferred()  # a model built only symbolically (model.build) and saved
        super().save_own_variables(store)

    def _check_readable(self):
        """A layer wrapped before it was built is clustered when it is built (or, built in a symbolic
        pass, at its first use after it); raise if its weights have no values to cluster there (a
        traced training step)."""
        try:
            for _, var, _ in self._targets:
                _base.to_numpy(var)
        except Exception:  # noqa: BLE001 (TF graph, JAX tracer: any backend's "not a value" error)
            if keras.backend.backend() == "jax":
                _compat.jax_keep_fit_state()  # else a JAX fit() leaves every weight of the model empty
            raise ValueError(
                f"Cannot cluster layer {self.layer.name!r}: it was not built when it was wrapped, and it is first "
                "built or used inside a traced function (e.g. fit()'s compiled step), where its weights cannot "
                "be read. Build it before wrapping it (`layer.build(input_shape)`, or call it once on a batch), "
                "then dc_keras.cluster(layer), or call the model once on a batch before fit(); clustering shares "
                "the values of trained weights, so it is usually given a trained layer or model.") from None

    def _release(self):
        self._untracked("_released", True)
        for _, var, _ in self._targets:
            var.trainable = True
            # made in a subclassed model's symbolic pass after build() had marked it untrainable, its
            # tf.Variable is untrainable too: the stripped layer's kernel would get no gradient
            _compat.sync_tf_trainable(var)

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        # Keras's setter makes every variable of the layer and its sublayers trainable again
        # (model.trainable = False, then True: the usual freeze / unfreeze of fine-tuning), the
        # clustered kernels too: they then got optimizer slots and Keras's "Gradients do not exist
        # for variables ['fc1/kernel'] ... did you forget to provide a `loss` argument?" at every
        # fit(). Only the centroids train.
        keras.layers.Layer.trainable.fset(self, value)
        if not getattr(self, "_released", False):
            for _, var, _ in getattr(self, "_targets", None) or []:
                var.trainable = False

    def _centroid_constraint(self, name, var):
        """The constraint the centroids of ``var`` carry: the layer's own when it acts on each value
        alone (``keras.constraints.NonNeg``), since then constraining the shared values is
        constraining the kernel; else None, with a warning (once per weight) that it does not hold
        during fine-tuning, listed in :attr:`unheld_constraints` and in ``cluster``'s report."""
        constraint = getattr(var, "constraint", None)
        if constraint is None:
            return None
        if type(constraint) is keras.constraints.NonNeg:
            return keras.constraints.NonNeg()
        kind = type(constraint).__name__
        self.unheld_constraints.append((name, kind))
        warnings.warn(
            f"cluster: layer {self.layer.name!r} has a {kind} constraint on its {name!r}, which does not act "
            f"during the clustered fine-tuning: only the shared values train, and a constraint that is not "
            f"per value (a norm over an axis, or a custom one) cannot be applied to them without giving each "
            f"weight its own value again (NonNeg is applied to the shared values). The fine-tuned {name!r} may "
            f"not satisfy it; strip() keeps the constraint on the layer for later training. To silence this, "
            f"set the layer's constraint to None before cluster(), or check the stripped weights yourself.",
            UserWarning, stacklevel=_user_stacklevel())
        return None

    def _kmeans(self, var, clusters):
        w = np.asarray(_base.to_numpy(var), dtype=np.float64)
        if not np.all(np.isfinite(w)):
            bad = int(np.count_nonzero(~np.isfinite(w)))
            raise ValueError(
                f"Layer {self.layer.name!r} weight {var.name!r} has {bad} of {w.size} values NaN or infinite, so it "
                "cannot be clustered: the model it comes from diverged (or was loaded from a damaged file). "
                "Retrain it (e.g. with a lower learning rate) or restore a checkpoint with finite weights "
                "before cluster().")
        idx = np.full(w.shape, clusters, dtype=np.int32)  # the constant-zero slot
        keep = (w != 0) if self.preserve_sparsity else np.ones(w.shape, bool)
        zeros = np.count_nonzero(w == 0)
        if not self.preserve_sparsity and zeros >= 0.1 * w.size:
            warnings.warn(
                f"cluster: layer {self.layer.name!r} weight {var.name!r} is {zeros / w.size:.0%} exact zeros "
                "(pruned?), and preserve_sparsity=False clusters them with the other weights: their centroid "
                "trains away from 0, so the kernel becomes dense and the pruning is lost. Pass "
                "preserve_sparsity=True (dc_keras.cluster's default; tfmot's cluster_weights defaults to False) to keep "
                "them 0.", UserWarning, stacklevel=_user_stacklevel())
        # tfmot's count (zero_takes_a_cluster): the zero is one of the `clusters` values when the
        # weight has zeros (the last centroid stays unused: the variables' shapes cannot depend on
        # the values, which a wrapper built before its weights are copied in has not seen); a weight
        # without zeros (a layer that was not pruned) gets all `clusters` (it had one fewer)
        used = clusters - 1 if self.zero_takes_a_cluster and not keep.all() else clusters
        if not keep.all() and used + 1 > _base.MAX_CODEBOOK:
            raise ValueError(
                f"Layer {self.layer.name!r}: bits={max(1, int(clusters - 1).bit_length())} with "
                f"preserve_sparsity=True on a weight with "
                f"zeros needs {used + 1} codebook entries; the packed format holds "
                f"{_base.MAX_CODEBOOK} (docs/FORMAT.md §2). Use bits <= {_base.MAX_BITS - 1} or "
                "preserve_sparsity=False."
            )
        c = np.zeros(clusters)
        if keep.any():
            # the pruned zeros left out: a linear init splits at zero, none of its centroids starts
            # in the empty interval around 0 that pruning leaves (they would stay empty)
            c[:used], a = kmeans_1d(w[keep], used, init=self.init, seed=self.seed, split_at_zero=not keep.all())
            idx[keep] = a.astype(np.int32)
        return c, idx

    def initialize_clusters(self):
        """Run k-means (numpy) on the inner layer's current weights and set centroids/assignments."""
        self._untracked("_deferred", False)
        for (name, var, _), centroids, assignments in zip(self._targets, self._centroids, self._assignments):
            c, idx = self._kmeans(var, self._clusters_of(name))
            centroids.assign(c.astype(centroids.dtype))
            assignments.assign(idx)

    def compressed_values(self, training):
        if self._deferred:
            self._cluster_deferred()
        pairs = []
        for (_name, var, _), centroids, assignments in zip(self._targets, self._centroids, self._assignments):
            shared = gather_centroids(ops.convert_to_tensor(centroids), ops.convert_to_tensor(assignments),
                                      training=training)
            pairs.append((var, ops.cast(shared, var.dtype)))
        return pairs

    def load_own_variables(self, store):
        """Keras loading (``.keras``/``.weights.h5``): the centroids and assignments, then a range
        check of the assignments, which the training step's gather trusts to index the codebook."""
        self._check_store_not_stripped(store)
        super().load_own_variables(store)
        self._untracked("_deferred", False)  # the file's values, not a k-means of the layer's
        self.check_assignments()

    def finalize_state(self):
        """Keras's hook after a legacy ``.h5`` file's weights are set (``load_model("m.h5")``,
        ``load_weights("m.h5")``: ``set_weights``, not :meth:`load_own_variables`): the same range
        check of the assignments."""
        self.check_assignments()

    def stripped_weights(self):
        """As the base class's, after :meth:`check_assignments` (every ``assign`` refuses an index
        outside the codebook already; without the native kernels JAX's gather would clamp one: a
        silently wrong kernel in the stripped model)."""
        self.check_assignments()
        return super().stripped_weights()

    def check_assignments(self):
        """Raise ``ValueError`` if an assignment lies outside ``0..len(centroids)`` (the last index
        is the constant-zero slot).

        Example:
            >>> clustered.get_layer("fc1").check_assignments()
        """
        for (name, _, _), centroids, assignments in zip(self._targets, self._centroids, self._assignments):
            _check_index_range(_base.to_numpy(assignments), self.name, name, int(centroids.shape[0]))

    def distinct_values(self):
        """``{weight_name: number of distinct non-zero values}`` of the current shared weights."""
        out = {}
        for (name, _, _), (_, value) in zip(self._targets, self.compressed_values(False)):
            v = _base.to_numpy(value)
            out[name] = int(np.unique(v[v != 0]).size)
        return out

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits, init=self.init, preserve_sparsity=self.preserve_sparsity, seed=self.seed)
        if self._n_clusters is not None:
            config["clusters"] = self._n_clusters
        if self.cluster_biases is not False:
            config["cluster_biases"] = self.cluster_biases
        if self.zero_takes_a_cluster:
            config["zero_takes_a_cluster"] = True
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"), custom_objects=custom_objects)
        if config.get("clusters") is not None:  # get_config writes both: bits is the width clusters needs
            config.pop("bits", None)
        wrapper = cls(layer, **config)
        wrapper._untracked("_from_config", True)  # its values are loaded (or copied) after build: no k-means
        return wrapper


def _check_index_range(values, layer, weight, slots, refused=False):
    """Raise the one ``ValueError`` for assignments ``values`` (numpy) holding an index outside
    ``0..slots`` (``slots`` centroids, then the constant-zero slot); ``refused``: they were given to
    ``assign`` and not stored."""
    values = np.asarray(values)
    if not values.size:
        return
    low, high = values.min(), values.max()
    if low >= 0 and high <= slots:
        return
    bad = low if low < 0 else high
    bad = int(bad) if float(bad).is_integer() else float(bad)
    raise ValueError(
        f"Layer {layer!r}: the assignments of {weight!r} hold index {bad}, outside 0..{slots} ({slots} centroids "
        f"and the zero slot {slots}); the weights are damaged or were not written by dc_keras for this layer. "
        f"Give indices 0..{slots} (what get_weights() returns for a layer clustered with {slots} centroids), or "
        "cluster the stripped model again with dc_keras.cluster()."
        + (" The variable keeps its previous values." if refused else ""))


def _refuse_out_of_range(variable, layer, weight, slots):
    """Make the assignments ``variable`` (as ``add_weight`` made it) check every value ``assign``
    puts in: ``layer.set_weights``, ``model.set_weights``, a file's load, a checkpoint restore, a
    user's ``variable.assign(...)`` and JAX's write-back of the training state at each epoch end. An
    index outside ``0..slots`` raises :func:`_check_index_range`'s ``ValueError`` (naming the layer,
    the weight, the index and the fix) before anything is stored: the same error on every backend,
    before ``fit``. Before, such an index trained unchecked: JAX's gather without the native kernels
    clamped it silently (``promise_in_bounds``), the native kernels reported it without the layer's
    name at a later read (a ``fit(verbose=0)`` could finish without a word), TensorFlow's gathers
    raised their own ``InvalidArgumentError`` at the first step. A value that cannot be read on the
    host (a traced one, inside a compiled step; dc_keras assigns none there) is left to the gathers.
    The cost is one read of the values per ``assign``, nothing in the training step. The hook is
    :func:`dc_keras._compat.check_assigned_values` (Keras has no public one)."""
    where = (layer, weight, int(slots))

    def check(value):
        try:
            values = _base.to_numpy(value)
        except (TypeError, ValueError, NotImplementedError, RuntimeError):
            return  # traced: not readable here
        _check_index_range(values, *where, refused=True)

    _compat.check_assigned_values(variable, check)


def gather_centroids(centroids, assignments, training=True):
    """``concat(centroids, [0])[assignments]``: the shared weights (index ``len(centroids)`` is the
    constant-zero slot). The gradient of each centroid is the sum of its members' gradients, in
    dc_keras's part order (``SUMS_PARTS``: up to 8 parts of the entries, each summed in index order,
    then added in part order), the same on every route below, so they give the same bits.

    The generic ``ops.take`` is slow in the training step. On TensorFlow (no XLA for ``fit`` on
    CPU-only machines) ``tf.gather`` of one scalar per weight costs ~6 ns an entry and its gradient
    is an ``IndexedSlices`` that the concat and the optimizer turn dense again through
    ``unsorted_segment_sum``; with ``training`` the gather and the per-centroid sums run as two
    small XLA-compiled functions instead (a LeNet-300-100 fit step: 2.3 ms -> 0.3 ms of CPU for
    fc1's gather), a scatter-add into one set of sums per part, in index order (a weighted
    ``bincount``, used before, splits large tensors across threads in no defined order); kernels of
    at most 4,096 entries use TF's own gather and segment sum (cheaper than an XLA call). Faster
    still (and the default after ``make install``), two native TF CPU ops, the same kernel loops as
    the JAX ones below, do the gather and the sums without XLA's launch cost
    (:mod:`dc_keras.train._tf_ops`, ``make tf-ops``). Inference
    (``training=False``: ``strip``, export of an unstripped model) keeps the plain ``tf.gather``.
    On JAX ``take`` clamps or masks the indices (an extra pass over them in the gather and in its
    scatter-add gradient) and flattens them in a layout that makes XLA copy the kernel's gradient
    before the scatter; a ``lax.gather`` over the flat assignments with ``promise_in_bounds`` has
    neither (k-means makes the assignments in range, and every ``assign`` to them, ``set_weights``
    and a file's load included, refuses an index outside the codebook: ``_refuse_out_of_range``;
    ``strip`` checks them again, :meth:`ClusterWrapper.check_assignments`); its gradient is the part-ordered
    scatter-add (``jax.custom_vjp``: reverse mode, also twice, but no forward mode). Faster still
    (and the default after ``make install``), two native XLA CPU kernels through JAX's FFI do the
    gather and the sums (:mod:`dc_keras.train._jax_ffi`; a LeNet-300-100 fc1, each op timed alone:
    gather ~220 -> ~30 us on two threads, sums ~260 -> ~120-150 us on one thread; each call runs
    on one thread unless ``DC_KERAS_JAX_FFI_SPLIT=1`` shares large ones with a second). On PyTorch
    an ``index_select`` whose gradient (a ``torch.autograd.Function``) is one ``index_add_`` into
    zeros per part (CPU: one loop in index order), the parts then added in order; it also skips
    ``take``'s pass fixing negative indices and its int64 copy of them (fc1's gather and sums
    alone, one thread, load 6-8: ~0.9-1.2 -> ~0.7-0.8 ms of CPU; 3-24 ms before on two threads
    at that load, its parallel passes waiting for busy cores; a LeNet-300-100 fit step, ~7-8.5 ms
    on one thread, the same within noise). The order is dc_keras's, not a
    framework's: ``keras.ops.take``'s own gradient sums in plain index order and can differ in the
    last bits (tests/test_clustering.py compares every route bit for bit with
    :func:`centroid_sums_reference`, with and without the native kernels, on the three backends).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        from dc_keras.train import _jax_ffi

        if _jax_ffi.usable(centroids, assignments):
            return _jax_ffi.gather(centroids, assignments)
    if backend == "tensorflow" and training:
        from dc_keras.train import _tf_ops

        assignments = ops.convert_to_tensor(assignments)  # a Keras variable: pass its value
        if _tf_ops.usable(centroids, assignments):
            return _tf_ops.gather(centroids, assignments)
    table = ops.concatenate([centroids, ops.zeros((1,), centroids.dtype)], axis=0)
    if backend == "tensorflow":
        return _gather_tf(table, assignments) if training else ops.take(table, assignments, axis=0)
    if backend == "jax":
        return _gather_jax(table, assignments)
    if backend == "torch":
        return _gather_torch(table, assignments)
    return ops.take(table, assignments, axis=0)


# The order of the centroid sums (the gather's gradient), the same on every route (the native
# kernels, jax_kernels/dc_centroids_core.h, and the generic paths below): the entries, in index
# order, are cut into parts of sums_part_size(count) entries (at most SUMS_PARTS parts); within a
# part each centroid's members are added one by one in index order from +0.0, and then the parts'
# partial sums are added in part order, ((part0 + part1) + part2) + ... Parts let two threads share
# the sums of a large kernel (LeNet-300-100's fc1: ~120 us on one thread) with the same bits.
SUMS_PARTS, SUMS_PART_QUANTUM = 8, 8192


def sums_part_size(count):
    """Entries per part of the centroid sums' order: ``ceil(count / 8)`` rounded up to a multiple
    of 8,192 (so up to 8,192 entries form one part: plain index order).

    Example:
        >>> sums_part_size(784 * 300)
        32768
    """
    per = -(-int(count) // SUMS_PARTS)
    return max(1, -(-per // SUMS_PART_QUANTUM)) * SUMS_PART_QUANTUM


def centroid_sums_reference(upstream, assignments, slots):
    """The gather's gradient in numpy, in the order every route uses (see ``SUMS_PARTS``):
    float32 ``sums[j]`` for ``j < slots`` (the last slot: the zero slot's, which training drops).

    Example:
        >>> centroid_sums_reference(np.ones(3, "float32"), np.array([0, 1, 0]), 2)
        array([2., 1.], dtype=float32)
    """
    u = np.asarray(upstream, np.float32).reshape(-1)
    a = np.asarray(assignments).reshape(-1)
    partial = np.zeros((SUMS_PARTS, slots), np.float32)
    np.add.at(partial, (np.arange(a.size) // sums_part_size(a.size), a), u)  # in index order
    return _add_parts(partial.reshape(-1), slots)  # empty parts hold +0.0: adding them changes nothing


_JAX = {}  # the JAX path's custom_vjp gather, made on first use


def _add_parts(partial, slots):
    """``partial`` (``SUMS_PARTS * slots``: each part's sums) added in part order."""
    total = partial[:slots]
    for k in range(1, SUMS_PARTS):
        total = total + partial[k * slots:(k + 1) * slots]
    return total


def _gather_jax(table, assignments):
    """The path without the native kernels: a ``lax.gather`` whose gradient is the part-ordered
    scatter-add of :func:`_jax_sums` (``jax.custom_vjp``)."""
    if "gather" not in _JAX:
        _JAX["gather"] = _jax_gather_fn()
    return _JAX["gather"](table, assignments)


def _jax_sums(upstream, assignments, slots):
    """The centroid sums in part order on JAX: XLA's scatter-add (in index order) into one set of
    sums per part, then the parts added in order."""
    from jax import lax

    flat_a = ops.reshape(assignments, (-1,))
    count = int(flat_a.shape[0])
    part = lax.iota("int32", count) // sums_part_size(count)
    partial = ops.zeros((SUMS_PARTS * slots,), upstream.dtype).at[part * slots + flat_a].add(
        ops.reshape(upstream, (-1,)), mode="promise_in_bounds")
    return _add_parts(partial, slots)


def _jax_gather_fn():
    import functools

    import jax
    from jax import lax

    def take(table, assignments):
        flat = lax.gather(table, ops.reshape(assignments, (-1, 1)),
                          lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(), start_index_map=(0,)),
                          slice_sizes=(1,), mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
        return ops.reshape(flat, ops.shape(assignments))

    def no_cotangent(assignments):  # the int input's
        return np.zeros(assignments.shape, jax.dtypes.float0)

    # As for the native kernels (_jax_ffi): the gather and the sums are each other's transpose, and
    # each rule calls the other custom function, so a gradient of a gradient sums in part order too
    # (differentiating the plain lax.gather would give XLA's own scatter-add order).
    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def gather_n(slots, table, assignments):  # noqa: ARG001 (slots, static: the sums need it)
        return take(table, assignments)

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def sums_n(slots, upstream, assignments):
        return _jax_sums(upstream, assignments, slots)

    gather_n.defvjp(lambda n, t, a: (gather_n(n, t, a), a), lambda n, a, u: (sums_n(n, u, a), no_cotangent(a)))
    sums_n.defvjp(lambda n, u, a: (sums_n(n, u, a), a), lambda n, a, ct: (gather_n(n, ct, a), no_cotangent(a)))
    return lambda table, assignments: gather_n(int(table.shape[0]), table, assignments)


_TORCH = {}  # the torch path's autograd functions, made on first use


def _gather_torch(table, assignments):
    """The torch path: ``index_select`` whose gradient is the part-ordered sums of
    :func:`_torch_sums` (a ``torch.autograd.Function``; ``keras.ops.take``'s own gradient is
    ``index_add_`` over all the entries at once, plain index order)."""
    import torch

    if "gather" not in _TORCH:
        _TORCH["gather"] = _torch_gather_fn()
    assignments = ops.convert_to_tensor(assignments)
    flat = torch.reshape(assignments, (-1,))  # int32 as stored: both kernels take it without a copy
    if flat.dtype not in (torch.int32, torch.int64):
        flat = flat.to(torch.int64)
    return torch.reshape(_TORCH["gather"](table, flat), tuple(assignments.shape))


def _torch_sums(upstream, flat, slots):
    """The centroid sums in part order on torch: each part's sums by ``index_add_`` into zeros
    (for a 1-D tensor torch's CPU kernel is one loop over the entries in index order, adding each
    to its slot), then the parts added in order (the empty ones left out: adding their +0.0
    changes nothing, as in :func:`centroid_sums_reference`)."""
    import torch

    upstream = torch.reshape(upstream, (-1,))
    count, per = int(flat.shape[0]), sums_part_size(flat.shape[0])
    total = None
    for start in range(0, count, per):
        part = torch.zeros((slots,), dtype=upstream.dtype, device=upstream.device)
        part = part.index_add(0, flat[start:start + per], upstream[start:start + per])
        total = part if total is None else total + part
    return torch.zeros((slots,), dtype=upstream.dtype, device=upstream.device) if total is None else total


def _torch_gather_fn():
    import torch

    # As on JAX (_jax_gather_fn): the gather and the sums are each other's transpose and each
    # backward calls the other function, so a gradient of a gradient sums in part order too.
    class Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, table, flat):
            ctx.save_for_backward(flat)
            ctx.slots = int(table.shape[0])
            return torch.index_select(table, 0, flat)

        @staticmethod
        def backward(ctx, upstream):
            (flat,) = ctx.saved_tensors
            return Sums.apply(upstream, flat, ctx.slots), None

    class Sums(torch.autograd.Function):
        @staticmethod
        def forward(ctx, upstream, flat, slots):
            ctx.save_for_backward(flat)
            return _torch_sums(upstream, flat, slots)

        @staticmethod
        def backward(ctx, cotangent):
            (flat,) = ctx.saved_tensors
            return Gather.apply(cotangent, flat), None, None

    return Gather.apply


_XLA = {}  # the compiled TF functions, made on first use (training on JAX never imports TF)


def _segment_sums(upstream, assignments, n):
    """Each centroid's members' gradients summed in part order (the gather's gradient; see
    ``SUMS_PARTS``): one ``unsorted_segment_sum`` (in index order) over a set of sums per part, then
    the parts added in order."""
    import tensorflow as tf

    flat_a = tf.reshape(assignments, (-1,))
    count = assignments.shape.num_elements()
    part = tf.range(count, dtype=flat_a.dtype) // sums_part_size(count)
    partial = tf.math.unsorted_segment_sum(tf.reshape(upstream, (-1,)), part * n + flat_a, SUMS_PARTS * n)
    return _add_parts(partial, n)


def _xla_functions():
    if not _XLA:
        import tensorflow as tf

        _XLA["gather"] = tf.function(lambda t, a: tf.gather(t, a), jit_compile=True, autograph=False)
        _XLA["sums"] = tf.function(_segment_sums, jit_compile=True, autograph=False)
    return _XLA["gather"], _XLA["sums"]


# Up to this many entries the TF training step gathers and sums with TF's own kernels: each call of
# an XLA-compiled function costs ~50-70 us of launch overhead on CPU, more than the work on a small
# kernel (LeNet-300-100's fc3: 1,000 entries). Larger ones stay on XLA: tf.gather costs ~6 ns an
# entry, and tf.math.unsorted_segment_sum's CPU kernel shards by output segment, every shard
# scanning all the entries (235,200 entries, 33 segments, 2 threads: 7 ms of CPU instead of 0.7).
# Both kernels sum each centroid's members in index order, like the XLA scatter-add: same bits.
_XLA_MIN_ENTRIES = 4097


def _native_functions():
    import tensorflow as tf

    return tf.gather, _segment_sums


def _gather_tf(table, assignments):
    import tensorflow as tf

    assignments = tf.convert_to_tensor(assignments)  # a Keras variable: pass its value
    small = assignments.shape.num_elements() is not None and assignments.shape.num_elements() < _XLA_MIN_ENTRIES
    gather_fn, sums_fn = _native_functions() if small else _xla_functions()
    n = int(table.shape[0])

    @tf.custom_gradient
    def gather(table):
        def grad(upstream):
            return sums_fn(upstream, assignments, n)

        return gather_fn(table, assignments), grad

    return gather(table)


def _check_cluster_biases(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return _check_bits(value, "cluster_biases")
    raise ValueError(
        f"`cluster_biases` must be False, True (the kernel's bits) or an int of bits 1..{_base.MAX_BITS}, "
        f"got {value!r}."
    )


def bias_weights(layer):
    """``[(name, variable, 0)]``: the bias vector(s) of a supported layer (none with
    ``use_bias=False``). RNN biases live in the cell, attention biases in the projections."""
    if _base._is_time_distributed(layer):
        return bias_weights(layer.layer)
    if _base._is_bidirectional_rnn(layer):
        return _rnn_biases(layer.forward_layer, "forward_") + _rnn_biases(layer.backward_layer, "backward_")
    if _base._is_rnn(layer):
        return _rnn_biases(layer)
    if _base.is_attention(layer):
        return _base.attention_weights(layer, "bias")
    bias = getattr(layer, "bias", None)
    return [("bias", bias, 0)] if isinstance(bias, keras.Variable) else []


def _rnn_biases(rnn, prefix=""):
    """The bias vectors of a supported RNN's cell(s), named as its kernels (``forward_bias``,
    ``cell_1_bias``...; see :func:`dc_keras.train._base.rnn_cells`); none with ``use_bias=False``."""
    return [(name + "bias", cell.bias, 0) for name, cell in _base.rnn_cells(rnn, prefix)
            if isinstance(getattr(cell, "bias", None), keras.Variable)]


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


def _check_processes_cluster_alike(model_or_layer, arguments):
    """ValueError on every process of a multi-process JAX ``keras.distribution`` job whose processes
    call ``cluster()`` with other arguments or on other weights: the clustered model's variables
    (2**bits centroids per layer) are created replicated across the processes, so ``bits=3`` on one
    process and ``bits=4`` on another aborted in gloo ("Received data size doesn't match expected
    size. Is there a distributed collective mismatch"), naming neither the call nor the argument;
    different weights would give different centroids on each process."""
    if not _base.multi_process():
        return
    import hashlib
    import json

    import jax

    def plain(value):  # layer classes (bits / layers keys) by their qualified name
        if isinstance(value, dict):
            return sorted((plain(k), plain(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, type):
            return f"{value.__module__}.{value.__qualname__}"
        return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)

    rows = [("arguments", json.dumps({k: plain(v) for k, v in arguments.items()}, sort_keys=True))]
    digest = hashlib.sha256()
    try:
        for w in model_or_layer.weights:
            digest.update(np.ascontiguousarray(_base.to_numpy(w)).tobytes())
        rows.append(("weights", digest.hexdigest()))
    except Exception:  # weights sharded across processes (not addressable here): arguments only
        rows.append(("weights", "not addressable"))
    found = _base.processes_disagree(rows)  # two rows on every process: never ("count", ...)
    if found is None:
        return
    i, others = found
    what = (f"the arguments are {rows[0][1]}" if i == 0 else
            "the model's weights differ (another model, or one trained or pruned differently)")
    raise ValueError(
        f"cluster(): the processes of this multi-process keras.distribution job do not cluster alike: on process "
        f"{jax.process_index()} {what}, which differs on process(es) {others}; the clustered variables are created "
        "on every process, so they must match. Every process must call dc_keras.cluster() with the same arguments "
        "on the same model (strip() of the same pruned model): start all processes with the same code and settings "
        "(docs/multi_worker.md).")


@_model_only_positional("cluster", "the model (or layer)")
def cluster(model_or_layer, *, bits=DEFAULT_BITS, init="linear", preserve_sparsity=True, layers=None, seed=0,
            fold_batchnorm=True, include_frozen=False, min_params=0, clusters=None, cluster_biases=False,
            _weights_of=None, _zero_takes_a_cluster=False):
    """Share weights: cluster each selected layer's kernel(s) into ``2**bits`` trainable centroids.

    Args:
        model_or_layer: a Sequential/Functional model (rebuilt with :class:`ClusterWrapper` layers
            through ``keras.models.clone_model``, weights copied and clustered, input untouched,
            result compiled like the input, with a fresh optimizer, if the input was) or one
            layer (returns a wrapper; for subclassed models).
        bits: an int in 1..12 (the packed format holds at most 4096 shared values), or a dict
            mapping layer names and/or classes to bits; layers the dict does not mention get the
            paper's defaults, 8 bits for convolutions (Conv*, Depthwise, Separable, Transpose,
            ConvLSTM1D/2D/3D) and 5 otherwise (Dense, Embedding, LSTM/GRU/SimpleRNN, attention).
            ``None`` means all defaults. A name that is not in the model, or names a layer with
            nothing to cluster (Flatten, a normalization), is a ``ValueError``.
        init: centroid initialisation, ``"linear"`` (paper's best), ``"density"``, ``"random"``,
            ``"kmeans++"``; followed by Lloyd iterations. ``"linear"`` spaces the centroids
            evenly between the smallest and largest weight; when ``preserve_sparsity`` leaves
            zeros (pruned weights) out, evenly on each side of zero instead, the centroids shared
            between the negative and positive weights in proportion to their numbers (as tfmot's
            sparsity-preserving init), so that none starts in the empty interval magnitude
            pruning leaves around zero, where it would stay without members (a pruned kernel
            ended with fewer than ``2**bits`` shared values: LeNet-300-100's fc1 7 of 8).
        preserve_sparsity: exact zeros (pruned weights) stay 0 and take no cluster. ``False``
            clusters them with the other weights, so the kernel becomes dense as their centroid
            trains (a warning names each weight that is at least 10 % zeros).
        layers: None (every supported layer) or a list of layer names and/or classes.
        seed: seed of the random initialisations.
        fold_batchnorm: fold each BatchNormalization that directly follows a clustered
            Conv/ConvTranspose/Depthwise/Separable/Dense layer into that layer's kernel and bias (inference
            statistics) before k-means, and replace it by ``keras.layers.Identity``; otherwise the
            TFLite converter folds it at export and the kernel loses its sharing. Each fold is
            reported; fine-tuning then trains the folded kernel (BN statistics frozen).
        include_frozen: also cluster layers with ``trainable=False`` (default: left, reported).
        min_params: leave layers with fewer compressible weights dense (reported as too small).
        clusters: optional centroid count for every clustered layer when it is not a power of two
            (tfmot's ``number_of_clusters``, up to 4096), in place of ``bits``: giving both is a
            ``ValueError`` (``bits=16`` is refused with a hint to pass ``clusters=16`` or ``bits=4``).
        cluster_biases: also share each clustered layer's bias(es): ``False`` (default; biases
            stay free floats), ``True`` (as many centroids as the layer's kernel) or an int of
            bits for the biases (e.g. 3). Clustered biases keep their assignments through
            fine-tuning like the kernels, and the packed export stores them as indices +
            codebook when that is smaller (a 300-entry float bias: 1,200 B raw). The report
            lists ``bias`` among each layer's compressed weights.

    Every argument after the model is keyword-only: ``cluster(model, 8)`` would read as 8 clusters
    (tfmot's ``cluster_weights(model, 8)``) or as ``bits=8`` (256), so it is a ``TypeError`` naming both.

    The documented flow is ``prune`` -> fit -> ``strip`` -> ``cluster`` -> fit -> ``strip``. The
    returned model has a ``compression_report`` (also logged): clustered layers, folds, skipped
    layers with reasons.

    Example:
        >>> clustered = dc_keras.cluster(dc_keras.strip(pruned), bits={"fc1": 5, "fc3": 6})
        >>> print(clustered.compression_report)
        >>> clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> clustered.fit(x, y, epochs=2)
        >>> final = dc_keras.strip(clustered)  # each kernel: at most 2**bits distinct non-zeros
        >>> small = dc_keras.cluster(dc_keras.strip(pruned), bits=4, cluster_biases=3)  # biases too
    """
    _check_bits_or_clusters(bits, clusters)
    if bits is None:
        bits = {}
    _check_cluster_args(bits, init, preserve_sparsity, fold_batchnorm)
    cluster_biases = _check_cluster_biases(cluster_biases)
    if not isinstance(model_or_layer, keras.layers.Layer):
        raise _base.not_keras3_error("cluster()", "a Keras model or layer", model_or_layer)
    _base.refuse_quantized(model_or_layer, "cluster")
    _check_processes_cluster_alike(model_or_layer, dict(
        bits=bits, init=init, preserve_sparsity=preserve_sparsity, layers=layers, seed=seed,
        fold_batchnorm=fold_batchnorm, include_frozen=include_frozen, min_params=min_params, clusters=clusters,
        cluster_biases=cluster_biases))

    if not isinstance(model_or_layer, keras.Model):
        if layers is not None:
            raise ValueError("`layers` only applies to models; pass the layer itself to cluster one layer.")
        layer = model_or_layer
        return ClusterWrapper(layer, bits=DEFAULT_BITS if clusters is not None else _bits_for(layer, bits),
                              init=init, preserve_sparsity=preserve_sparsity, seed=seed, clusters=clusters,
                              cluster_biases=cluster_biases, zero_takes_a_cluster=_zero_takes_a_cluster)
    return _cluster_model(model_or_layer, bits, init, preserve_sparsity, layers, seed, fold_batchnorm,
                          include_frozen, min_params, clusters, cluster_biases, _weights_of, _zero_takes_a_cluster)


def _cluster_model(model, bits, init, preserve_sparsity, layers, seed, fold_batchnorm, include_frozen,
                   min_params, clusters=None, cluster_biases=False, weights_of=None, zero_takes_a_cluster=False):
    existing = _base.find_wrappers(model)
    if existing:
        raise ValueError(
            f"Model {model.name!r} still has {type(existing[0]).__name__} {existing[0].name!r}: "
            "call dc_keras.strip() before cluster() (tfmot's strip_pruning() before cluster_weights() in "
            "dc_keras.compat.tfmot; flow: prune -> fit -> strip -> cluster -> fit -> strip)."
        )
    _base.check_buildable(model, "cluster")
    chosen, skipped = _base.select_layers(model, layers, what="clustered", mapping_ok=False,
                                          include_frozen=include_frozen, min_params=min_params)
    only, targets_of = {}, None
    if weights_of is not None:  # the tfmot drop-in's layer registry (dc_keras.compat.tfmot)
        chosen, skipped, only, targets_of = _base.restrict(chosen, skipped, weights_of, model, "clustered")
    if isinstance(bits, dict):
        names = {l.name for l, _ in _base.graph_layers(model)}
        unknown = [k for k in bits if isinstance(k, str) and k not in names]
        if unknown:
            raise ValueError(f"Unknown layer name(s) {unknown} in `bits`; model {model.name!r} has {sorted(names)}."
                             + _base.unknown_names_hints(model, unknown, "bits", "clustered", bits))
        # a named layer with nothing to cluster (bits={"fc1": 5, "flatten": 5}) was ignored silently
        by_name = {l.name: l for l, _ in _base.graph_layers(model)}
        for key in bits:
            reason = _base.unsupported_reason(by_name[key]) if isinstance(key, str) else None
            if reason is not None:
                raise ValueError(
                    f"`bits` names layer {key!r} ({type(by_name[key]).__name__}), which cannot be clustered: "
                    f"{reason}. Remove it from `bits` (the layers `bits` does not name get the defaults).")
    folds, notes = bn_fold.plan(model, chosen) if fold_batchnorm else ({}, [])
    skipped = [(layer, reason) for layer, reason in skipped if id(layer) not in folds]
    report = _report.build_report("cluster", model, chosen, skipped, targets_of)
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
        wrapper = ClusterWrapper(fresh, bits=DEFAULT_BITS if clusters is not None else _bits_for(original, bits),
                                 init=init, preserve_sparsity=preserve_sparsity, seed=seed, clusters=clusters,
                                 cluster_biases=cluster_biases, weights=only.get(id(original)),
                                 zero_takes_a_cluster=zero_takes_a_cluster)
        wrapper.trainable = fresh.trainable
        wrappers.append(wrapper)
        return wrapper

    new_model, _ = _base.rewrite_model(model, replace, "cluster")
    for wrapper in wrappers:
        if not wrapper._clustered_at_init:
            wrapper.initialize_clusters()
        for name, kind in wrapper.unheld_constraints:
            report.notes.append(f"{wrapper.name}: its {kind} constraint on {name!r} does not act during the "
                                "clustered fine-tuning (only NonNeg is applied, to the shared values)")
    if cluster_biases is not False:
        _report_biases(report, wrappers)
    if layers is None and weights_of is None:  # (the tfmot drop-in refuses such layers itself)
        _report.warn_unsupported("cluster", model, skipped)
    return _report.attach(new_model, report)


def _report_biases(report, wrappers):
    """With ``cluster_biases``: the report lists each layer's clustered biases (and counts them),
    and says which clustered layers have no bias to share."""
    by_name = {w.layer.name: w for w in wrappers}
    for entry in report.wrapped:
        wrapper = by_name.get(entry["layer"])
        if wrapper is None:
            continue
        biases = [(n, v) for n, v, _ in wrapper._targets if n in wrapper._bias_names]
        if biases:
            entry["weights"] = entry["weights"] + [n for n, _ in biases]
            entry["params"] += _base.params(v for _, v in biases)
        else:
            report.notes.append(f"{entry['layer']}: no bias to cluster (use_bias=False)")
    bits = "the kernel's bits" if wrappers and wrappers[0].cluster_biases is True else \
        f"{wrappers[0].cluster_biases} bits" if wrappers else ""
    report.notes.append(f"biases clustered too (cluster_biases: {bits})")


__all__ = ["ClusterWrapper", "cluster"]
