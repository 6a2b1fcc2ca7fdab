"""Magnitude pruning inside ``model.fit`` (Deep Compression stage 1) for Keras 3.

How it works: :class:`PruneWrapper` holds, per pruned weight, a non-trainable 0/1 mask and the
last threshold, plus a step counter. The weight variable carries a constraint ``w -> w * mask``
that every Keras optimizer applies after its update, so the stored pruned weights are exactly 0
after every step whatever the optimizer state (momentum, Adam moments, AdamW decay). (A
``torch.optim`` optimizer in a torch custom loop applies no Keras constraint: there the stored
pruned weights drift, the forward pass masks them and ``strip`` zeroes them; docs/models.md.) Inside
``fit()`` the mask is folded into the stored weights (they are zeroed at every mask update and at
the start of ``fit()``), so the forward pass reads them as they are, bit for bit what
``weight * mask`` gives, and the step costs one multiply per pruned weight (the constraint) over
the plain model's. The pruned weights then get a gradient, which the constraint discards (the
optimizer's own state for them is never used); with an optimizer that clips by norm, and in a
custom training loop, the forward pass feeds ``weight * mask`` instead, so a pruned weight gets
exactly zero gradient. Each training step advances the step counter; in a ``fit()`` of known
length (outside ``tf.distribute`` and a JAX ``keras.distribution``) PruningCallback counts the
steps on the host instead and writes the counter back at every epoch end and before any save, so
the compiled step has no counter update; on JAX it also takes the counter and the thresholds out
of the variables Keras carries through the compiled step, so the JAX step carries nothing but the
masks.

When the masks change: inside ``fit()``, :class:`PruningCallback` recomputes them on the host
(numpy) in ``on_train_batch_begin`` of every step the schedule names, and zeroes the newly pruned
weights, so the compiled step only reads the masks (no conditional, no mask writes: the step
costs little more than the plain model's). With ``steps_per_execution = n`` Keras calls the
callback once per ``n`` steps: an update the schedule puts inside an execution is applied at the
start of that execution (with that update's sparsity). In a custom training loop (and in a
``fit()`` whose subclassed model builds its layers in the first step) the traced step itself
updates the masks at the scheduled steps. ``jit_compile``, ``tf.distribute`` and the JAX/torch
backends need nothing special.

:class:`PruningCallback` must be passed to ``fit`` (it arms the wrappers, updates the masks and
logs sparsity); training without it raises a clear error.
"""
import numbers
import warnings
import weakref

import keras
import numpy as np
from keras import ops

from dc_keras import _compat
from dc_keras.train import _base, summaries
from dc_keras.train import schedules as _schedules
from dc_keras.train import report as _report
from dc_keras.train.schedules import PruningSchedule

_NOT_TRAINING_MODE = (
    "{what} A subclassed model's call() must accept `training` and pass it on to the layers it calls: "
    "`def call(self, x, training=None): return self.dense(x, training=training)`. On JAX, Keras hands "
    "`training` only to the layers that are called with it (Dropout and BatchNormalization need it too). "
    "In a custom training loop, call the model with `training=True` in the step that trains it: "
    "`model(x, training=True)` (on JAX `model.stateless_call(trainable, non_trainable, x, training=True)`)."
)

_NO_CALLBACK = (
    "Layer {name!r} is pruned but is being trained without dc_keras.PruningCallback. Pass "
    "`callbacks=[dc_keras.PruningCallback()]` to fit() (tfmot.sparsity.keras.UpdatePruningStep() in "
    "dc_keras.compat.tfmot); in a custom training loop call "
    "`cb = dc_keras.PruningCallback(); cb.set_model(model); cb.on_train_begin()` before the first step."
)


class _MaskConstraint(keras.constraints.Constraint):
    """Variable constraint ``w -> base(w) * mask``, applied by the optimizer after each update.

    On JAX the optimizer runs statelessly (``optimizer.stateless_apply``) with only the trainable
    and optimizer variables in scope, so the mask variable has no readable value there. The
    wrapper's forward pass of the same traced step hands over the mask it just used
    (:attr:`live`); the constraint applies that one, which is also the value stored for the step.
    """

    def __init__(self, mask, base=None):
        self.mask = mask
        self.base = base
        self.live = None  # mask tensor of the current (JAX) training step, set by the forward pass

    def _mask_value(self):
        if self.live is not None:
            return self.live
        try:
            return ops.convert_to_tensor(self.mask)
        except Exception as e:
            if not _STATELESS_OPTIMIZER:
                raise
            # fit() on JAX: the forward pass did not hand over the mask (no training mode), and the
            # mask variable has no value in the optimizer's stateless scope
            _compat.jax_keep_fit_state()  # else fit() leaves every weight of the model empty
            raise RuntimeError(_NOT_TRAINING_MODE.format(
                what=f"Pruned weight {self.mask.path.rsplit('_mask', 1)[0]!r} reached the optimizer, but its "
                     "layer was not called with `training=True` in this training step, so it cannot keep its "
                     "zeros.")) from e

    def __call__(self, w):
        if self.base is not None:
            w = self.base(w)
        return w * ops.cast(self._mask_value(), w.dtype)


def _check_m_by_n(value, meaning="keep m of every n"):
    """``value`` as an ``(m, n)`` pair of ints with 0 < m < n (None stays None); ``meaning`` says
    what m counts in the error (the tfmot drop-in's m counts zeros)."""
    if value is None:
        return None
    try:
        m, n = value
    except (TypeError, ValueError):
        raise ValueError(f"`sparsity_m_by_n` must be a pair (m, n) such as (2, 4), got {value!r}.") from None
    for v in (m, n):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"`sparsity_m_by_n` must hold integers, got {value!r}.")
    if not 0 < m < n:
        raise ValueError(f"`sparsity_m_by_n` = ({m}, {n}) must satisfy 0 < m < n ({meaning}).")
    return (int(m), int(n))


def _warn_m_by_n_target(m_by_n, schedules):
    """``UserWarning`` (one) when ``sparsity_m_by_n=(m, n)`` (m KEPT of every n: sparsity 1 - m/n) and the
    target sparsity of a schedule in ``schedules`` differ: the pattern alone sets the sparsity, the
    schedule only when it is applied, so its target is not reached (nor warned about at strip time).
    ``(1, 4)`` with ``ConstantSparsity(0.5)`` kept 1 of 4 weights without a word: a tfmot habit
    (tfmot's m counts the zeros). Returns the warning's text, or None."""
    m, n = m_by_n
    sparsity = 1.0 - m / n
    targets = sorted({float(t) for t in (s.target_sparsity_value() for s in schedules if s.kind == "sparsity")
                      if t is not None and abs(float(t) - sparsity) > 1e-6})
    if not targets:
        return None
    said = ", ".join(f"{t:g}" for t in targets)
    which = f"the schedule's target sparsity is {said}" if len(targets) == 1 else \
        f"the schedules' target sparsities are {said}"
    hint = ""
    if len(targets) == 1 and abs(targets[0] * n - round(targets[0] * n)) < 1e-6 and 0 < round(targets[0] * n) < n:
        zeros = round(targets[0] * n)
        hint = f" For sparsity {targets[0]:g} in groups of {n} pass sparsity_m_by_n=({n - zeros}, {n})."
    if n - m != m:
        hint += (f" If you meant tfmot's ({m}, {n}) ({m} zero{'s' if m > 1 else ''} in every {n}: sparsity "
                 f"{m / n:g}), pass sparsity_m_by_n=({n - m}, {n}).")
    message = (
        f"dc_keras.prune(): sparsity_m_by_n=({m}, {n}) keeps {m} of every {n} weights (sparsity {sparsity:g}), but "
        f"{which}: with sparsity_m_by_n the pattern alone sets the sparsity and the schedule only decides when it "
        f"is applied (from its first update at a sparsity above 0), so the pruned layers end at sparsity "
        f"{sparsity:g}. dc_keras's m counts the weights KEPT; tfmot's sparsity_m_by_n (and dc_keras.compat.tfmot's) "
        f"counts the zeros: tfmot's (m, n) is dc_keras's (n - m, n).{hint} A schedule whose target is "
        f"{sparsity:g} says what happens and silences this warning.")
    warnings.warn(message, UserWarning, stacklevel=_schedules._user_stacklevel())
    return message


def _m_by_n_mask(w_abs, axis, m, n):
    """Keep the ``m`` largest of every ``n`` consecutive entries along ``axis``. When the axis is
    not a multiple of ``n`` (e.g. a Conv2D's 3 input channels), each run along it ends with a
    shorter group of ``r`` entries, which keeps ``min(r, m)``: tfmot 0.8.1 pads that group with
    zeros, which its top-k never prefers to a weight. ``w_abs`` holds magnitudes (>= 0).

    Example:
        >>> _m_by_n_mask(ops.convert_to_tensor([[4., 1., 3., 2., 5., 0.5]]), -1, 2, 4)  # [[1, 0, 1, 0, 1, 1]]
    """
    moved = ops.moveaxis(w_abs, axis, -1)
    moved_shape = tuple(moved.shape)
    pad = -moved_shape[-1] % n
    if pad:  # padding below any magnitude ranks first, so the group's real entries are kept first
        moved = ops.pad(moved, [(0, 0)] * (len(moved_shape) - 1) + [(0, pad)], constant_values=-1)
    groups = ops.reshape(moved, (-1, n))
    rank = ops.argsort(ops.argsort(groups, axis=-1), axis=-1)
    keep = ops.reshape(ops.cast(ops.greater_equal(rank, n - m), w_abs.dtype), moved_shape[:-1] + (-1,))
    return ops.moveaxis(keep[..., :moved_shape[-1]], -1, axis)


@keras.saving.register_keras_serializable(package="dc_keras")
class PruneWrapper(_base.CompressionWrapper):
    """Wraps a layer and prunes its kernel(s) by magnitude following ``schedule``.

    Usually created by :func:`prune`; use it directly (or ``dc_keras.prune(layer, ...)``) inside
    subclassed models.

    Args:
        layer: the layer to prune (Dense, Conv*, DepthwiseConv*, SeparableConv*, Conv*Transpose,
            Embedding, or a custom layer with ``get_prunable_weights()``/``prunable_weights``).
        schedule: a :mod:`dc_keras.schedules` schedule.
        sparsity_m_by_n: optional ``(m, n)``: structured sparsity keeping ``m`` of every ``n``
            consecutive weights along the input dimension (e.g. ``(1, 4)``: 1 kept of every 4,
            sparsity 0.75; tfmot's ``(m, n)`` counts zeros, it is this ``(n - m, n)``); the schedule
            then only decides when the pattern is applied.

    Magnitude pruning ranks weights by ``|w|``: weights that tie at the threshold magnitude are
    pruned together, so a kernel that is still all zeros when its first update comes
    (``kernel_initializer="zeros"``, a layer never trained) is pruned whole, for good. Inside
    ``fit()`` such an update warns (``UserWarning`` naming the layer, the weight, the target and
    what was pruned); a custom training loop's in-step update cannot warn.

    Attributes:
        pruning_step: int64 variable, training steps seen (saved with the model).

    Each pruned weight also gets ``<weight>_mask`` (0/1) and ``<weight>_threshold``: -1 until an
    update prunes, then the magnitude at or below which the last update that pruned something
    removed weights (for :class:`~dc_keras.schedules.StdThreshold`: ``quality`` x std, fixed at
    its first update). An update that prunes nothing new (e.g. ``ConstantSparsity`` repeating its
    target every ``frequency`` steps) leaves it as it is.

    Example:
        >>> wrapper = dc_keras.prune(keras.layers.Dense(4), dc_keras.schedules.ConstantSparsity(0.5, 0))
        >>> model = keras.Sequential([keras.Input((20,)), wrapper])
        >>> model.compile("sgd", "sparse_categorical_crossentropy")
        >>> model.fit(x, y, callbacks=[dc_keras.PruningCallback()])
        >>> wrapper.get_weights()  # [pruning_step, kernel_mask, kernel_threshold, kernel, bias]
    """

    def __init__(self, layer, schedule, sparsity_m_by_n=None, **kwargs):
        if not isinstance(schedule, PruningSchedule):
            raise ValueError(
                f"`schedule` must be a dc_keras.schedules schedule (ConstantSparsity, PolynomialDecay, "
                f"StdThreshold), got {schedule!r}."
            )
        schedule.check_usable()
        self.schedule = schedule
        self.sparsity_m_by_n = _check_m_by_n(sparsity_m_by_n)
        if self.sparsity_m_by_n is not None and schedule.kind != "sparsity":
            raise ValueError("`sparsity_m_by_n` needs a sparsity schedule (ConstantSparsity or PolynomialDecay).")
        super().__init__(layer, **kwargs)
        self._armed = False
        self._trace_failed = False
        self._host_updates = False  # masks updated by PruningCallback between steps (inside fit)
        self._fold = False  # host updates and the forward pass reads the stored (masked) weights
        self._count_on_host = False  # fit() of known length: PruningCallback counts the steps
        self._host_state = False  # pruning_step and thresholds are out of the variables fit() passes around
        self._traced_host = None  # mode the last traced training step used (None: not traced)
        self._traced_count = False  # ... and whether it left the step counting to the callback
        self._untracked("_host_steps", None)  # PruningCallback's counter writer (host-counted fit())
        self._untracked("_masks", [])
        self._untracked("_thresholds", [])
        self._untracked("_last_update", None)  # JAX: (step, input arrays, assigned values)
        self._untracked("_updated_at", None)  # step of the last update_masks() (PruningCallback's end_step update)
        self._untracked("_short_warned", False)  # a fit() already warned that the schedule falls short
        self._untracked("_ties_warned", set())  # weights whose update already warned about tied magnitudes
        self._untracked("_keep_undo", False)  # fit() of unknown length: update_masks keeps what it replaced
        self._untracked("_undo", None)  # ... (values before the last update, _updated_at, _last_update)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.sparsity_m_by_n is not None:
            n = self.sparsity_m_by_n[1]
            for name, var, _ in self._targets:
                if len(var.shape) == 0:  # (a shorter last group along the axis is fine, as in tfmot)
                    raise ValueError(
                        f"`sparsity_m_by_n` groups a weight's entries n={n} at a time along its input dimension; "
                        f"{self.layer.name}/{name} is a scalar. Leave it out of get_prunable_weights()."
                    )
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype=_STEP_DTYPE, initializer="zeros",
            trainable=False, aggregation="only_first_replica",
        )
        self._untracked("_masks", [])
        self._untracked("_thresholds", [])
        for name, var, _ in self._targets:
            mask = self.add_weight(
                name=f"{name}_mask", shape=tuple(var.shape), dtype=var.dtype, initializer="ones",
                trainable=False, aggregation="only_first_replica",
            )
            threshold = self.add_weight(
                name=f"{name}_threshold", shape=(), dtype="float32",
                initializer=keras.initializers.Constant(-1.0),
                trainable=False, aggregation="only_first_replica",
            )
            self._masks.append(mask)
            self._thresholds.append(threshold)
            base = var.constraint.base if isinstance(var.constraint, _MaskConstraint) else var.constraint
            var.constraint = _MaskConstraint(mask, base)

    def _forget_live_masks(self):
        """Drop the JAX step's mask tensors (tracers of a finished trace)."""
        for _, var, _ in self._targets:
            if isinstance(var.constraint, _MaskConstraint):
                var.constraint.live = None

    def _release(self):
        for _, var, _ in self._targets:
            if isinstance(var.constraint, _MaskConstraint):
                var.constraint = var.constraint.base

    # -- mask computation ------------------------------------------------------------------------
    def _new_mask(self, w, mask, threshold, axis, step):
        w_abs = ops.abs(w * mask)
        if self.sparsity_m_by_n is not None:
            m, n = self.sparsity_m_by_n
            active = ops.greater(self.schedule.sparsity(step), 0.0)
            new = ops.where(active, _m_by_n_mask(w_abs, axis, m, n), mask)
            return new, threshold
        if self.schedule.kind == "threshold":
            alive = ops.cast(ops.not_equal(w_abs, 0), "float32")
            signed = ops.cast(w * mask, "float32")
            count = ops.maximum(ops.sum(alive), 1.0)
            mean = ops.sum(signed) / count
            std = ops.sqrt(ops.sum(alive * ops.square(signed - mean)) / count)
            t = ops.where(ops.less(threshold, 0.0), self.schedule.quality * std, threshold)
            keep = ops.logical_and(ops.greater(w_abs, 0), ops.greater_equal(ops.cast(w_abs, "float32"), t))
            return ops.cast(keep, mask.dtype), t
        sparsity = self.schedule.sparsity(step)
        flat = ops.sort(ops.reshape(ops.cast(w_abs, "float32"), (-1,)))
        size = int(np.prod(w.shape))
        k = ops.cast(ops.floor(sparsity * float(size) + 1e-3), "int32")
        k = ops.minimum(k, size)
        t = ops.take(flat, ops.maximum(k - 1, 0))
        keep = ops.cast(ops.greater(ops.cast(w_abs, "float32"), t), mask.dtype)
        # An update that prunes nothing new (the k smallest are pruned already: t is 0) keeps the
        # threshold of the last update that pruned, as the host update does.
        prune_now = ops.logical_and(ops.greater(k, 0), ops.any(ops.not_equal(keep, mask)))
        return ops.where(prune_now, keep, mask), ops.where(prune_now, t, threshold)

    @staticmethod
    def _store_mask(mask_var, threshold_var, m, t):
        mask_var.assign(m)
        threshold_var.assign(t)
        return ops.convert_to_tensor(mask_var), ops.convert_to_tensor(threshold_var)

    def update_masks(self, step):
        """Recompute the masks on the host (numpy), as the schedule says for training step
        ``step``, and zero the newly pruned weights. :class:`PruningCallback` calls it between
        training steps inside ``fit()``. Same masks as the in-step update of a custom loop for
        sparsity schedules (ranks of magnitudes); with :class:`~dc_keras.schedules.StdThreshold`
        the threshold (quality x the weights' standard deviation) is summed in another order
        there and on each backend, so it can differ in the last bit (1 ulp seen: 1.15164053 on TF,
        1.1516406 on JAX in-step) and a weight lying exactly on it could be kept by one and pruned
        by the other.

        Example:
            >>> wrapper.update_masks(step=100)  # masks for step 100 of the schedule
        """
        # JAX values are immutable arrays: the same input arrays and step give the same update.
        # fit() over a dataset of unknown length calls the callback once more after the last
        # batch; Keras then restores the variables it holds (undoing that update), and the next
        # epoch's first batch repeats it on those very arrays: reuse the result then.
        inputs = [v.value for v in self._update_variables()] if _STATELESS_OPTIMIZER else None
        if self._keep_undo:
            self._untracked("_undo", ([(v, _base.to_numpy(v)) for v in self._update_variables()],
                                      self._updated_at, self._last_update))
        memo = self._last_update
        if inputs is not None and memo is not None and memo[0] == int(step) and \
                all(a is b for a, b in zip(memo[1], inputs)):
            for variable, value in memo[2]:
                variable.assign(value)
            return
        sparsity = None
        if self.schedule.kind == "sparsity":
            sparsity = np.float32(_base.to_numpy(self.schedule.sparsity(int(step))))
        assigned = []
        for (_name, var, axis), mask, threshold in zip(self._targets, self._masks, self._thresholds):
            w = _base.to_numpy(var)
            old = _base.to_numpy(mask)
            old_t = float(_base.to_numpy(threshold))
            new, t = self._new_mask_np(w, old, old_t, axis, sparsity)
            # Nothing new pruned: mask, weights and threshold stay. For a sparsity schedule the
            # threshold is the largest magnitude the last pruning update removed; an update whose
            # k smallest magnitudes are all pruned already would make it 0 (StdThreshold fixes its
            # threshold at its first update, whether or not that prunes).
            if np.array_equal(new, old) and (t == old_t or self.schedule.kind == "sparsity"):
                continue
            self._warn_ties(_name, new, old, sparsity, step, w, t)
            _assign_host(mask, new.astype(old.dtype))
            _assign_host(threshold, np.float32(t))
            _assign_host(var, (w * new.astype(w.dtype)).astype(w.dtype))
            assigned += [mask, threshold, var]
        if inputs is not None:
            self._untracked("_last_update", (int(step), inputs, [(v, v.value) for v in assigned]))
        self._untracked("_updated_at", int(step))

    def _undo_update(self):
        """Put back the masks, thresholds and weights the last :meth:`update_masks` replaced (kept
        only while PruningCallback drives a fit() of unknown length: ``_keep_undo``)."""
        if self._undo is None:
            return
        before, updated_at, last_update = self._undo
        for variable, value in before:
            _assign_host(variable, value)
        self._untracked("_updated_at", updated_at)
        self._untracked("_last_update", last_update)
        self._untracked("_undo", None)

    def _holds_update(self, step):
        """Did :meth:`update_masks` run for ``step``, and do the variables still hold what it wrote?
        On JAX, fit() over data of unknown length (a generator, a filtered ``tf.data`` dataset)
        calls ``on_train_batch_begin`` once more after the epoch's last batch, and then writes back
        the values it holds, undoing an update made there: at the end of the last epoch (the
        update at ``end_step``) nothing repeats it."""
        if self._updated_at != int(step):
            return False
        memo = self._last_update
        if memo is None or memo[0] != int(step):
            return True
        masks = {id(m) for m in self._masks}
        # A value a compiled step has consumed (donated: deleted) was trained with: it held.
        return all(variable.value is value or value.is_deleted() or
                   np.array_equal(_base.to_numpy(variable), _base.to_numpy(value))
                   for variable, value in memo[2] if id(variable) in masks)

    def _warn_ties(self, name, new, old, sparsity, step, w, threshold):
        """Warn (once per weight) when an update prunes beyond its target because many weights
        tie at the threshold magnitude: typically a kernel still all zeros when pruning starts
        (``kernel_initializer="zeros"``, a layer never trained). Magnitude pruning cannot choose
        among equal magnitudes; the tied weights are all masked, for good. With
        :class:`~dc_keras.schedules.StdThreshold`, an update that prunes every non-zero weight:
        its threshold ``quality * std`` exceeds the largest ``|w|`` (``quality`` too large),
        ``w``: the weights before this update, ``threshold``: the one it applied."""
        if self.sparsity_m_by_n is not None or name in self._ties_warned:
            return
        size = new.size
        pruned = size - int(np.count_nonzero(new))
        if self.schedule.kind == "sparsity":
            k = min(int(np.floor(sparsity * np.float32(size) + np.float32(1e-3))), size)
            if pruned <= k + max(1, _schedules._REACH_TOLERANCE * size):
                return
            what = f"target sparsity {float(sparsity):.3g} ({k} of {size} weights)"
        else:
            if pruned < size or not np.any(old):
                return
            what = f"the {self.schedule.__class__.__name__} threshold (quality {self.schedule.quality})"
            largest = float(np.max(np.abs(w * old)))
            if largest > 0 and threshold > largest:  # distinct, non-zero weights: the threshold is the cause
                self._ties_warned.add(name)
                quality = self.schedule.quality
                warnings.warn(
                    f"Pruning layer {self.name!r} weight {name!r} at step {int(step)}: StdThreshold(quality={quality:g}) "
                    f"pruned all {size} weights (sparsity 1.0; they stay 0 for the rest of training): its threshold "
                    f"quality * std = {threshold:.4g} exceeds every |w| (the largest is {largest:.4g}). Lower quality, "
                    f"below {quality * largest / threshold:.3g} for this weight to keep any (quality=1 removes about "
                    f"68 % of a Gaussian layer, 1.5 about 87 %), or use a sparsity schedule such as "
                    f"ConstantSparsity(0.9) for a fixed fraction.", UserWarning, stacklevel=2)
                return
        self._ties_warned.add(name)
        if "bias" in name.lower():  # tfmot's guide prunes a bias (get_prunable_weights: [self.bias])
            cause = ("A bias starts all zeros (Keras's default bias_initializer) until training moves it: start "
                     "the schedule after some training, begin_step > 0 (tfmot's first update comes only at step "
                     "`frequency`, after that many training steps).")
        else:
            cause = ("Is the kernel all zeros (kernel_initializer='zeros', or a layer not trained yet)? Initialise "
                     "it with non-zero values (e.g. Keras's default glorot_uniform) or start the schedule after "
                     "some training (begin_step).")
        warnings.warn(
            f"Pruning layer {self.name!r} weight {name!r} at step {int(step)}: {what}, but {pruned} of {size} "
            f"weights (sparsity {pruned / size:.3g}) tie at or below the threshold magnitude, so all of them are "
            f"pruned and stay 0 for the rest of training. Magnitude pruning needs distinct magnitudes. {cause} "
            "(Expected if they are the zeros of an earlier pruning, e.g. a stripped model pruned "
            "again: start the schedule at that sparsity.)", UserWarning, stacklevel=2)

    def _update_variables(self):
        return [v for (_n, var, _a), mask, thr in zip(self._targets, self._masks, self._thresholds)
                for v in (var, mask, thr)]

    def _new_mask_np(self, w, mask, threshold, axis, sparsity):
        """numpy twin of :meth:`_new_mask` (float32 arithmetic like the traced version)."""
        w_abs = np.abs(w * mask)
        if self.sparsity_m_by_n is not None:
            if not sparsity > 0:
                return mask, threshold
            m, n = self.sparsity_m_by_n
            moved = np.moveaxis(w_abs, axis, -1)
            length = moved.shape[-1]  # a shorter last group keeps min(r, m), as in _m_by_n_mask
            padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(0, -length % n)], constant_values=-1)
            rank = np.argsort(np.argsort(padded.reshape(-1, n), axis=-1, kind="stable"), axis=-1, kind="stable")
            keep = (rank >= n - m).reshape(padded.shape)[..., :length]
            return np.moveaxis(keep, -1, axis).astype(mask.dtype), threshold
        a32 = w_abs.astype(np.float32, copy=False)
        if self.schedule.kind == "threshold":
            signed = (w * mask).astype(np.float32)
            alive = (w_abs != 0).astype(np.float32)
            count = np.float32(max(alive.sum(dtype=np.float32), 1.0))
            mean = signed.sum(dtype=np.float32) / count
            std = np.sqrt((alive * np.square(signed - mean)).sum(dtype=np.float32) / count)
            t = np.float32(self.schedule.quality) * std if threshold < 0 else np.float32(threshold)
            return ((w_abs > 0) & (a32 >= t)).astype(mask.dtype), float(t)
        size = a32.size
        k = min(int(np.floor(sparsity * np.float32(size) + np.float32(1e-3))), size)
        if k <= 0:
            return mask, threshold
        return (a32 > (t := _kth_smallest_abs(a32.reshape(-1), k))).astype(mask.dtype), float(t)

    def compressed_values(self, training):
        if not training:  # +0.0 where pruned (w * 0 is -0.0 for a negative w): the kernel strip() stores, so an
            # exporter that folds it (keras's model.export) writes no -0.0, which would pack as a value of its own
            return [(var, ops.where(ops.cast(mask, "bool"), w, ops.zeros_like(w)))
                    for (_n, var, _a), mask in zip(self._targets, self._masks) for w in [ops.convert_to_tensor(var)]]
        if not self._armed:
            self._trace_failed = True
            if keras.backend.backend() == "jax":
                _compat.jax_keep_fit_state()  # else fit() leaves every weight of the model empty
            raise RuntimeError(_NO_CALLBACK.format(name=self.name))
        self._traced_host = (self._host_updates, self._fold)
        self._traced_count = self._count_on_host
        # A later call in the same training step (a shared layer, d(d(x))) neither counts nor
        # updates the masks again: it reads the masks its first call used (and stored), not those
        # of the step its advanced counter names, which updated them a step early.
        again = not (self._host_updates and self._count_on_host) and self._counted_in_this_step()
        if self._host_updates:
            pairs = self._masked_host()
        elif again:
            pairs = [self._use_mask(var, ops.convert_to_tensor(mask))
                     for (_n, var, _a), mask in zip(self._targets, self._masks)]
        else:
            pairs = self._masked_in_step()
        if not self._count_on_host and not again:
            self._count_step()
        return pairs

    def call(self, inputs, *args, training=None, **kwargs):
        self._untracked("_step_inputs", inputs)  # for _count_step
        try:
            return super().call(inputs, *args, training=training, **kwargs)
        finally:
            self._untracked("_step_inputs", None)

    def _counted_in_this_step(self):
        """True when this layer has already been called in the training step running (or being
        traced) now, and marks it called: a layer called n times per step (a shared layer,
        ``d(d(x))``) counted n steps per step wherever the step counts (data of unknown length,
        ``tf.distribute``, a JAX ``keras.distribution``, custom loops, torch), so its schedule ran
        n times faster. A traced step is the traced function (TensorFlow: its graph, per replica;
        JAX: the ``StatelessScope`` Keras traces it in). A step run eagerly (torch,
        ``run_eagerly=True``, an eager custom loop) is the model's forward pass: the call context
        Keras keeps for the outermost layer call (docs/models.md: an eager step that calls the
        model twice counts twice)."""
        trace = _step_trace()
        if trace is None:
            context = _compat.current_call_context()
            if context is None:
                return False  # called outside Layer.__call__ (layer.call(...) by hand): each call counts
            last = getattr(self, "_counted_pass", None)
            if last is not None and last() is context:
                return True
            self._untracked("_counted_pass", weakref.ref(context))
            return False
        owner, member = trace
        counted = getattr(self, "_counted_steps", None)
        if counted is None:
            counted = weakref.WeakKeyDictionary()
            self._untracked("_counted_steps", counted)
        members = counted.setdefault(owner, set())
        if member in members:
            return True
        members.add(member)
        return False

    def _count_step(self):
        """``pruning_step += 1`` in the traced training step. On TensorFlow the increment waits for
        the step's inputs: in a ``fit()`` over data of unknown length (a generator, a filtered
        ``tf.data`` dataset) Keras runs the compiled step once more after the last batch, and its
        ``next(iterator)`` fails only after the ops that do not need the data have run, so an
        increment that did not wait counted one step per epoch that never trained."""
        inputs = getattr(self, "_step_inputs", None)
        if keras.backend.backend() == "tensorflow" and inputs is not None:
            import tensorflow as tf

            tensors = [t for t in tf.nest.flatten(inputs) if tf.is_tensor(t)]
            if tensors:
                with tf.control_dependencies(tensors[:1]):
                    self.pruning_step.assign_add(1)
                return
        self.pruning_step.assign_add(1)

    def _use_mask(self, var, m):
        m = ops.stop_gradient(m)
        if _STATELESS_OPTIMIZER and isinstance(var.constraint, _MaskConstraint):
            var.constraint.live = m
        return (var, var * ops.cast(m, var.dtype))

    def _masked_host(self):
        """Training step inside fit(): the masks are read only (PruningCallback updates them).

        The stored weights already hold the mask (PruningCallback zeroes them at every update and
        at the start of fit(), the constraint after every optimizer step), so the forward pass
        reads them as they are: ``w * mask == w`` bit for bit. Only the constraint reads the
        mask. With an optimizer that clips by norm (``clipnorm``/``global_clipnorm``) the product
        stays, so the pruned weights' zero gradients keep the norm what it was.
        """
        if self._fold:
            for (_n, var, _a), mask in zip(self._targets, self._masks):
                if _STATELESS_OPTIMIZER and isinstance(var.constraint, _MaskConstraint):
                    var.constraint.live = ops.convert_to_tensor(mask)
            return []
        return [self._use_mask(var, ops.convert_to_tensor(mask))
                for (_n, var, _a), mask in zip(self._targets, self._masks)]

    def _zero_pruned(self, on_device=False):
        """Make the stored weights hold the mask (``w = w * mask``) where they do not (e.g. weights
        set by hand since the last update). ``on_device`` (TF outside tf.distribute, single-process
        JAX): the product is assigned as it is (bit for bit what the host check writes, and
        nothing where the weights already hold the mask): one device op per weight instead of two
        copies to the host and a numpy check (on JAX asynchronous, so fit() starts without waiting)."""
        if on_device and all(_fully_addressable(var) for _n, var, _a in self._targets):
            for (_n, var, _a), mask in zip(self._targets, self._masks):
                var.assign(var * ops.cast(mask, var.dtype))
            return
        for (_n, var, _a), mask in zip(self._targets, self._masks):
            w, m = _base.to_numpy(var), _base.to_numpy(mask)
            if np.any(w[m == 0] != 0):
                _assign_host(var, (w * m.astype(w.dtype)).astype(w.dtype))

    def _masked_in_step(self):
        """Custom training loops: the traced step itself updates the masks when the schedule says so."""
        pairs = []
        step = ops.convert_to_tensor(self.pruning_step)
        update = self.schedule.should_update(step)
        # JAX traces the cond branches as separate functions: a variable assigned inside one
        # would leak its tracer out of the branch, so there (as under tf.distribute, where an
        # aggregated variable's assign is a synchronization point TF does not allow inside a cond
        # branch) the assign follows the cond.
        in_strategy = _distributed() or _STATELESS_OPTIMIZER
        for (_name, var, axis), mask, threshold in zip(self._targets, self._masks, self._thresholds):
            w = ops.convert_to_tensor(var)
            m_old = ops.convert_to_tensor(mask)
            t_old = ops.convert_to_tensor(threshold)

            def recompute(w=w, m=m_old, t=t_old, a=axis, mv=mask, tv=threshold):
                new = self._new_mask(w, m, t, a, step)
                return new if in_strategy else self._store_mask(mv, tv, *new)

            m_new, t_new = ops.cond(update, recompute, lambda m=m_old, t=t_old: (m, t))
            if in_strategy:
                mask.assign(m_new)
                threshold.assign(t_new)
            pairs.append(self._use_mask(var, m_new))
        return pairs

    # -- state kept out of the compiled step (JAX fit) ---------------------------------------------
    def _ordered_state(self):
        """The wrapper's own variables in their saved order: ``pruning_step``, then the mask and the
        threshold of each pruned weight (the order ``build`` creates them in; files depend on it)."""
        return [self.pruning_step] + [v for pair in zip(self._masks, self._thresholds) for v in pair]

    def _set_host_state(self, host):
        """JAX ``fit()`` passes every model variable into and out of its compiled step. With
        ``host=True`` the step counter and the thresholds leave that set (the step neither reads
        nor changes them: PruningCallback counts the steps and updates the thresholds between
        steps); ``host=False`` puts them back, in their original order, for custom training loops
        (``stateless_call``) and everything else. Saving and loading use :meth:`_ordered_state`
        either way."""
        if not self.built or bool(host) == self._host_state:
            return
        aside = [self.pruning_step] + list(self._thresholds)
        if host:
            _compat.untrack_variables(self, aside)
        else:
            _compat.untrack_variables(self, list(self._masks))
            _compat.track_variables(self, self._ordered_state())
        self._host_state = bool(host)

    @property
    def weights(self):
        """Keras's ``weights``, so ``get_weights``/``set_weights`` (and ``EarlyStopping(
        restore_best_weights=True)``'s snapshot) see the same list during a JAX ``fit()`` that keeps
        the counter and thresholds out of its step (:meth:`_set_host_state`) as outside it."""
        weights = super().weights
        if not self._host_state:
            return weights
        own = self._ordered_state()
        ids = {id(v) for v in own}
        return own + [v for v in weights if id(v) not in ids]

    def save_own_variables(self, store):
        """Keras saving (``.keras``, ``.weights.h5``, checkpoints): the variables of
        :meth:`_ordered_state`, with the step count PruningCallback keeps in a fit() it counts."""
        if not self.built:
            return super().save_own_variables(store)
        if self._host_steps is not None:
            self._host_steps()
        for i, var in enumerate(self._ordered_state()):
            store[f"{i}"] = var

    def load_own_variables(self, store):
        """Keras loading: the variables of :meth:`_ordered_state` (files of every dc_keras version)."""
        if not self.built:
            return super().load_own_variables(store)
        self._check_store_not_stripped(store)
        ordered = self._ordered_state()
        if len(store.keys()) != len(ordered):
            raise ValueError(
                f"Layer {self.name!r} expects {len(ordered)} variables (pruning_step, then a mask and a "
                f"threshold per pruned weight) but the file holds {len(store.keys())}: it was saved from "
                "a different model. Load it into the model it was saved from."
            )
        for i, var in enumerate(ordered):
            var.assign(store[f"{i}"])

    # -- reporting -------------------------------------------------------------------------------
    def _short_of_target(self):
        """``(held, target, steps)`` when the masks hold less than the schedule's target sparsity
        (its schedule had not finished: too few steps trained), else None. Structured (m-by-n)
        pruning and a fit() that already warned about its schedule are not checked again."""
        if not self.built or self.sparsity_m_by_n is not None or self._short_warned:
            return None
        steps = int(_base.to_numpy(self.pruning_step))
        target = self.schedule.target_sparsity_value()
        if target is None:  # threshold schedule: short only if it never pruned
            applied = any(float(_base.to_numpy(t)) >= 0 for t in self._thresholds)
            return None if applied else (0.0, None, steps)
        short = []
        for mask in self._masks:
            m = _base.to_numpy(mask)
            need = min(int(np.floor(np.float32(target) * np.float32(m.size) + np.float32(1e-3))), m.size)
            if m.size - np.count_nonzero(m) < need - _schedules._REACH_TOLERANCE * m.size:
                short.append(1.0 - np.count_nonzero(m) / m.size)
        return (min(short), target, steps) if short else None

    def sparsity(self):
        """``{weight_name: fraction of entries pruned}`` from the current masks: the count of zeros
        over the size, exact (a 0.8-sparse mask gives 0.8, not float32's mean 0.79999999702)."""
        result = {}
        for (name, _, _), mask in zip(self._targets, self._masks):
            values = _base.to_numpy(mask)
            result[name] = int(np.count_nonzero(values == 0)) / max(values.size, 1)
        return result

    def get_config(self):
        config = super().get_config()
        config["schedule"] = keras.saving.serialize_keras_object(self.schedule)
        config["sparsity_m_by_n"] = list(self.sparsity_m_by_n) if self.sparsity_m_by_n else None
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"), custom_objects=custom_objects)
        schedule = keras.saving.deserialize_keras_object(config.pop("schedule"), custom_objects=custom_objects)
        return cls(layer, schedule, **config)


# Backends whose optimizer applies constraints statelessly, outside the model's variable scope.
_STATELESS_OPTIMIZER = keras.backend.backend() == "jax"
# JAX has no int64 unless jax_enable_x64 (it would truncate with a warning on every model): int32
# there (2**31 steps); a saved int64 counter loads into it.
_STEP_DTYPE = "int32" if keras.backend.backend() == "jax" else "int64"


def _assign_host(variable, value):
    """``variable.assign(value)`` for a host (numpy) value computed identically on every process.

    On JAX with a multi-process distribution a plain assign is a ``jax.device_put`` to a sharding
    spanning all processes, which first checks across processes that every one holds the same
    value (one collective per variable: ~400 ms per LeNet mask update on loopback). The value
    is built here in the variable's own sharding from the local copy (``jax.make_array_from_callback``,
    the public multi-controller constructor), so the assign itself moves nothing; every process
    computes the same value from the same weights, as examples/multi_worker.py's digests check.
    """
    if _STATELESS_OPTIMIZER:
        sharding = getattr(variable.value, "sharding", None)
        if sharding is not None and not sharding.is_fully_addressable:
            import jax

            value = np.asarray(value, dtype=variable.dtype)
            value = jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    variable.assign(value)


def _fully_addressable(variable):
    sharding = getattr(variable.value, "sharding", None)
    return sharding is None or sharding.is_fully_addressable


def _optimizer_steps(optimizer, unbuilt=None):
    """``optimizer.iterations`` as an int when it counts every training step (not with gradient
    accumulation or a loss-scale wrapper, which skips steps), else None; ``unbuilt``: the count of
    an optimizer not built yet (TensorFlow builds it in the first training step: 0 at the start of
    a fit())."""
    if optimizer is None or getattr(optimizer, "inner_optimizer", None) is not None or \
            getattr(optimizer, "gradient_accumulation_steps", None):
        return None
    if not optimizer.built:
        return unbuilt
    return int(_base.to_numpy(optimizer.iterations))


def _check_optimizer_backend(model):
    """TypeError naming the cause and the fix when ``fit`` would update the weights with another
    backend's optimizer class: a ``.keras`` file compiled on torch holds torch's own class, and
    ``load_model(path)`` on JAX / TensorFlow restores it (Keras 3.15; plain Keras models too), whose
    first step fails with "TypeError: expected Tensor as element 0 in argument 0, but got
    jaxlib._jax.ArrayImpl", naming neither."""
    optimizer = getattr(model, "optimizer", None)
    owner = _compat.optimizer_backend(optimizer) if optimizer is not None else None
    here = keras.backend.backend()
    if owner is None or owner == here:
        return
    cls = type(getattr(optimizer, "inner_optimizer", None) or optimizer)
    raise TypeError(
        f"the model's optimizer is {cls.__module__}.{cls.__qualname__}, the class Keras uses on the "
        f"{owner} backend: the model was compiled on {owner}, saved to a .keras file and loaded here on "
        f"{here}, and that class cannot update {here} weights (fit would fail in its first step with a "
        f"TypeError from {owner}; plain Keras models too: a Keras limitation). Load the file with "
        "keras.saving.load_model(path, compile=False) and compile() the model again on this backend: "
        "the weights, masks and pruning schedule carry over (the optimizer's state does not).")


def _clips_by_norm(optimizer):
    """Does ``optimizer`` (or the one a LossScaleOptimizer wraps) clip gradients by a norm?"""
    while optimizer is not None:
        if getattr(optimizer, "clipnorm", None) or getattr(optimizer, "global_clipnorm", None):
            return True
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return False


def _step_trace():
    """``(owner, member)`` naming the training step being traced (see
    ``PruneWrapper._counted_in_this_step``), or ``None`` when executing eagerly."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.inside_function():
            return None
        return tf.compat.v1.get_default_graph(), id(tf.distribute.get_replica_context())
    if backend == "jax":
        scope = _compat.current_stateless_scope()
        return None if scope is None else (scope, None)
    return None


def _jax_distribution():
    """Is a ``keras.distribution`` (DataParallel, ModelParallel) set? (JAX backend.)"""
    return keras.distribution.distribution() is not None


def _check_processes_prune_alike(wrappers, params):
    """ValueError on every process of a multi-process JAX ``keras.distribution`` job whose processes
    would not prune alike: a pruned layer's schedule or ``sparsity_m_by_n`` (the arguments of
    ``dc_keras.prune``), the set of pruned layers, or ``fit()``'s ``epochs`` / ``steps`` differ
    between processes. Their masks are computed on each process from its own schedule and written
    without a cross-process check (``_assign_host``), so different schedules trained to the end
    with different masks on each process and only ``strip()`` failed, in JAX's
    "passed to device_put is not the same on each process" with the weights dumped; a different
    number of epochs or steps leaves one process waiting in a collective for ever. Checked at the
    start of each ``fit()`` (``_base.processes_disagree``)."""
    if not _base.multi_process():
        return
    import json

    import jax

    def schedule_text(wrapper):
        try:
            config = keras.saving.serialize_keras_object(wrapper.schedule)
        except Exception:  # a custom schedule that cannot be serialized: its class and attributes
            config = [type(wrapper.schedule).__qualname__, sorted(vars(wrapper.schedule).items(), key=str)]
        m_by_n = list(wrapper.sparsity_m_by_n) if wrapper.sparsity_m_by_n else None
        return json.dumps([config, m_by_n], sort_keys=True, default=repr)

    params = params or {}
    rows = [("fit()", json.dumps([params.get("epochs"), params.get("steps")]))] + \
        [(w.name, schedule_text(w)) for w in wrappers]
    found = _base.processes_disagree(rows)
    if found is None:
        return
    here = jax.process_index()
    ends = "Every process must build the same model, prune it with the same dc_keras.prune() arguments " \
        "and fit() it with the same epochs over data of the same length (a global batch, the same " \
        "arrays in the same order: docs/multi_worker.md); start all processes with the same code and settings."
    if found[0] == "count":
        raise ValueError(
            f"PruningCallback: the processes of this multi-process keras.distribution job prune different "
            f"sets of layers: {[c - 1 for c in found[1]]} pruned layers on processes 0, 1, ... "
            f"(process {here}: {[name for name, _ in rows[1:]]}). {ends}")
    i, others = found
    name, text = rows[i]
    what = f"fit()'s [epochs, steps] are {text}" if i == 0 else \
        f"pruned layer {name!r} has the schedule and sparsity_m_by_n {text}"
    raise ValueError(
        f"PruningCallback: the processes of this multi-process keras.distribution job do not prune "
        f"alike: on process {here} {what}, which differs on process(es) {others}; their masks and "
        f"weights would differ (or one process would wait for ever in a collective). {ends}")


def _distributed(model=None):
    """True inside a ``tf.distribute`` strategy scope, or for a ``model`` built in one (TF backend:
    Keras's TF trainer keeps the strategy of its creation scope, public ``distribute_strategy``)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return True
    strategy = getattr(model, "distribute_strategy", None)
    return strategy is not None and strategy is not tf.distribute.get_strategy()


def _as_schedule(value, layers=False):
    """prune()'s hint for a bare sparsity where a schedule belongs (a suggest_sparsity() target
    passed as it is): how to wrap it; "" for anything else."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        return ""
    if layers:
        return (" (a target sparsity, e.g. from suggest_sparsity(): give each layer a schedule, e.g. layers={name: "
                "dc_keras.schedules.PolynomialDecay(0.0, s, 0, end_step) for name, s in targets.items() if s > 0}, "
                "or pass the targets to dc_keras.pipeline.prune_retrain(model, x, y, targets, epochs))")
    return (f" (a sparsity: wrap it in a schedule, e.g. dc_keras.schedules.PolynomialDecay(0.0, {value!r}, 0, "
            f"end_step) or ConstantSparsity({value!r}, 0))")


def prune(model_or_layer, schedule=None, layers=None, sparsity_m_by_n=None, include_frozen=False,
          min_params=0, _weights_of=None):
    """Wrap the prunable layers of a model (or one layer) for magnitude pruning during ``fit``.

    Args:
        model_or_layer: a Sequential/Functional model (rebuilt with ``keras.models.clone_model``:
            operator nodes, ``keras.ops`` calls, shared layers, nested models and multiple inputs/
            outputs are kept; weights copied; the input left untouched; the result is compiled
            like the input, with a fresh optimizer of the same config, if the input was compiled)
            or a single layer (returns a :class:`PruneWrapper`; use this inside subclassed models).
        schedule: default schedule, e.g. ``dc_keras.schedules.PolynomialDecay(0.5, 0.9, 0, 1000)``.
        layers: None (every supported layer), a list of layer names and/or classes, or a dict
            name-or-class -> schedule for per-layer targets (the dict's layers only).
        sparsity_m_by_n: optional ``(m, n)`` structured sparsity: ``m`` is the number of weights
            KEPT of every ``n`` consecutive weights along the input dimension (sparsity ``1 - m/n``),
            e.g. ``(1, 4)`` keeps 1 of every 4 (sparsity 0.75) and ``(3, 4)`` keeps 3 (sparsity 0.25).
            Along an input dimension that is not a multiple of ``n`` (an RGB Conv2D's 3 channels) the
            last group is shorter: of its ``r`` weights it keeps ``min(r, m)``, as tfmot does.
            The pattern alone sets the sparsity; the schedule only decides when it is applied (a
            ``UserWarning`` says so when its target sparsity differs from ``1 - m/n``). tfmot's
            ``sparsity_m_by_n`` (and :mod:`dc_keras.compat.tfmot`'s) counts the zeros instead:
            tfmot's ``(m, n)`` is this ``(n - m, n)`` (both read ``(2, 4)`` alike).
        include_frozen: also prune layers with ``trainable=False`` (or inside a frozen model);
            by default they are left dense and reported.
        min_params: leave layers with fewer compressible weights dense (reported as too small).

    The returned model has a ``compression_report`` (:class:`dc_keras.train.CoverageReport`):
    wrapped layers, share of parameters covered, skipped layers and why; it is also logged.

    Example:
        >>> s = dc_keras.schedules.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
        >>> pruned = dc_keras.prune(model, s, layers=["fc1", "fc2"])
        >>> print(pruned.compression_report)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> pruned.fit(x, y, epochs=2, callbacks=[dc_keras.PruningCallback()])
        >>> plain = dc_keras.strip(pruned)
    """
    m_by_n = _check_m_by_n(sparsity_m_by_n)
    if not isinstance(model_or_layer, keras.layers.Layer):
        raise _base.not_keras3_error("prune()", "a Keras model or layer", model_or_layer)
    _base.refuse_quantized(model_or_layer, "prune")
    if schedule is not None and not isinstance(schedule, PruningSchedule):
        raise ValueError(f"`schedule` must be a dc_keras.schedules schedule, got {schedule!r}{_as_schedule(schedule)}.")
    if isinstance(layers, dict):
        for key, value in layers.items():
            if not isinstance(value, PruningSchedule):
                raise ValueError(f"`layers`[{key!r}] must be a dc_keras.schedules schedule, got "
                                 f"{value!r}{_as_schedule(value, layers=True)}.")
    elif schedule is None:
        raise ValueError("`schedule` is required unless `layers` maps each layer to its schedule.")

    # warned once the layers are wrapped (not before an error); the tfmot drop-in stays silent, as tfmot
    warn_m_by_n = m_by_n is not None and _weights_of is None
    if not isinstance(model_or_layer, keras.Model):
        if layers is not None:
            raise ValueError("`layers` only applies to models; pass the layer itself to prune one layer.")
        wrapper = PruneWrapper(model_or_layer, schedule, sparsity_m_by_n=m_by_n)
        if warn_m_by_n:
            _warn_m_by_n_target(m_by_n, [schedule])
        return wrapper

    model = model_or_layer
    existing = _base.find_wrappers(model)
    if existing:
        raise ValueError(
            f"Model {model.name!r} already has compression wrappers ({existing[0].name!r}); "
            "call dc_keras.strip() first."
        )
    _base.check_buildable(model, "prune")
    chosen, skipped = _base.select_layers(model, layers, what="pruned", include_frozen=include_frozen,
                                          min_params=min_params)
    only, targets_of = {}, None
    if _weights_of is not None:  # the tfmot drop-in's layer registry (dc_keras.compat.tfmot)
        chosen, skipped, only, targets_of = _base.restrict(chosen, skipped, _weights_of, model, "pruned")
    report = _report.build_report("prune", model, chosen, skipped, targets_of)

    def replace(original, rebuilder):
        fresh = rebuilder.clone(original)
        if id(original) not in chosen:
            return fresh
        own = chosen[id(original)][1]
        wrapper = PruneWrapper(fresh, own if own is not None else schedule, sparsity_m_by_n=m_by_n,
                               weights=only.get(id(original)))
        wrapper.trainable = fresh.trainable
        return wrapper

    new_model, _ = _base.rewrite_model(model, replace, "prune")
    if warn_m_by_n:
        _warn_m_by_n_target(m_by_n, {id(s): s for _, s in chosen.values() if s is not None}.values()
                            if isinstance(layers, dict) else [schedule])
    if layers is None and _weights_of is None:  # (the tfmot drop-in refuses such layers itself)
        _report.warn_unsupported("prune", model, skipped)
    return _report.attach(new_model, report)


def _kth_smallest_abs(flat, k):
    """``np.partition(flat, k - 1)[k - 1]`` for non-negative ``flat`` (magnitudes), without
    sorting the zeros: pruned weights are stored as exact zeros, so once a layer holds its target
    sparsity the k-th smallest magnitude is 0 (no partition at all); below it, only the non-zero
    magnitudes are partitioned. Same value bit for bit (zeros sort first, NaN last, as in
    ``np.partition``)."""
    zeros = flat.size - np.count_nonzero(flat)
    if zeros >= k:
        return flat.dtype.type(0)
    rest = flat[flat != 0]
    return np.partition(rest, k - zeros - 1)[k - zeros - 1]


class _CallbackRequired:
    """``model.train_function`` between two ``fit()`` calls of a pruned model: the train function
    traced with ``PruningCallback`` is cached by Keras and reused by the next ``fit()``, which then
    never traces the pruned layers again, so the error a fresh trace raises without the callback
    (``_NO_CALLBACK``) never came: a ``fit()`` without the callback trained with the masks frozen and
    the schedule stopped, silently (tfmot's ``UpdatePruningStep`` missing from a second ``fit()``).
    ``PruningCallback.on_train_begin`` puts the train function back before the first step; without
    the callback the first step raises that error, as a fit() with no train function cached does.

    Inside a ``fit()`` with the callback (``owner``: that callback) the guard stays in place and
    lets a step run only when the callback's ``on_train_batch_begin`` has just run (its ticket, one
    per call): a ``fit()`` cut by Ctrl-C (or an error) never reaches ``on_train_end``, its
    wrappers stay armed, and a next ``fit()`` without the callback reused its train function with
    the masks frozen and the schedule stopped, silently (before 2026-12-07, session 55).

    Example:
        >>> pruned.fit(x, y, callbacks=[dc_keras.PruningCallback()], verbose=0)
        >>> pruned.fit(x, y, verbose=0)
        Traceback (most recent call last):
        ...
        RuntimeError: Layer ... is pruned but is being trained without dc_keras.PruningCallback...
    """

    def __init__(self, model, function, wrappers, owner=None):
        self._model = weakref.ref(model)
        self.function = function
        self._wrappers = [weakref.ref(w) for w in wrappers]
        self._owner = None if owner is None else weakref.ref(owner)

    def __call__(self, *args, **kwargs):
        wrappers = [w for w in (ref() for ref in self._wrappers) if w is not None]
        if not wrappers:
            allowed = True
        elif self._owner is not None:  # inside the owner's fit(): its batch hook has just run, or not that fit()
            owner = self._owner()
            allowed = owner is not None and owner._running and owner._take_ticket()
        else:  # between fit() calls: a custom loop's on_train_begin() arms the wrappers
            allowed = any(w._armed for w in wrappers)
        if not allowed:
            if keras.backend.backend() == "jax":
                _compat.jax_keep_fit_state()  # else fit() leaves every weight of the model empty
            raise RuntimeError(_NO_CALLBACK.format(name=wrappers[0].name))
        model = self._model()
        if self._owner is None and model is not None and getattr(model, "train_function", None) is self:
            model.train_function = self.function
        return self.function(*args, **kwargs)

    @staticmethod
    def release(model, params=None):
        """Put back the train function a fit() with ``PruningCallback`` left guarded; not the guard
        of the fit() whose callbacks got ``params`` (a second PruningCallback of that fit())."""
        function = getattr(model, "train_function", None)
        if isinstance(function, _CallbackRequired):
            owner = None if function._owner is None else function._owner()
            if params and owner is not None and owner._running and owner.params is params:
                return
            model.train_function = function.function


class PruningCallback(keras.callbacks.Callback):
    """Required in ``fit`` for pruned models: arms the wrappers, updates their masks between
    training steps when the schedule says so and, with ``log_dir``, writes per-layer sparsity
    (``sparsity/<layer>/<weight>``) to ``<log_dir>/train`` at every mask update, on
    ``keras.callbacks.TensorBoard``'s batch step axis (give both the same ``log_dir``; see
    :mod:`dc_keras.train.summaries`). It warns when the schedule cannot reach its target sparsity
    within this ``fit()``.

    The step counter counts training steps (one per batch, also with ``steps_per_execution > 1``):
    in a ``fit()`` of known length (outside ``tf.distribute`` and a JAX ``keras.distribution``) this
    callback counts them and writes the counter at every epoch end and before any save; otherwise the
    traced training step advances it (see the module docs). It is saved with the model, so a reloaded model (or
    ``keras.callbacks.BackupAndRestore``) resumes its schedule. With ``steps_per_execution = n``
    mask updates happen at execution boundaries (the start of the execution holding the scheduled
    step); over data of unknown length the epoch's last execution may run fewer steps than ``n``
    (the data ends inside it), and the updates scheduled inside it are still applied at its start
    (Keras cannot tell the callback it will be short). The call Keras makes once more after the last
    batch of such data, for an execution that runs no step, is undone at the epoch's end, so its
    update is made where a fit of known length makes it (the next epoch's first step). Tracing a
    training step of a pruned layer without the callback raises an error, and so does a later
    ``fit()`` without the callback that would reuse the train function Keras kept from a ``fit()``
    with it, also one cut by Ctrl-C (before 2026-12-07 that one trained with the masks fixed and the
    schedule stopped, silently): pass the callback to every ``fit()`` of a pruned model. Custom training loops: ``cb.set_model(model); cb.on_train_begin()`` before the first
    step (the step then updates the masks itself) and ``cb.on_train_end()`` after the last; there,
    with ``log_dir``, ``cb.on_epoch_begin(epoch)`` writes the sparsity the masks hold at that point,
    at the step count the pruned layers have reached (as tfmot's ``PruningSummaries`` does).

    The update at ``end_step`` is also made when a ``fit()`` ends with the step count at
    ``end_step`` (at its last epoch's end, after that epoch's last step): ``end_step = steps_per_epoch * epochs`` (training
    steps ``0 .. end_step - 1``) ends at the schedule's target; so does a custom training loop's
    ``cb.on_train_end()`` after ``end_step`` steps. A callback listed before this one
    that saves or snapshots the model at that epoch end (``ModelCheckpoint``, ``EarlyStopping``)
    sees the masks before that last update: list ``PruningCallback()`` first.

    A model loaded from a ``.keras`` file compiled on torch holds torch's own optimizer class, which
    cannot train on JAX or TensorFlow (Keras 3.15, plain models too): ``fit()`` with this callback then
    raises a ``TypeError`` saying so and how to fix it (``load_model(path, compile=False)``, then
    ``compile()`` again) instead of failing in its first step with a TypeError from torch.

    A ``fit()`` interrupted in the middle of an epoch (Ctrl-C) is picked up by the next ``fit()``
    with a PruningCallback: the schedule resumes from the steps the optimizer actually ran.

    ``keras.callbacks.EarlyStopping(restore_best_weights=True)`` (before or after this callback in
    the list) restores the best epoch's whole state: weights, masks, thresholds and step counter as
    they were at the end of that epoch, so a later ``fit()`` resumes the schedule from there.

    Several PruningCallbacks in one ``fit()`` (one you pass and one a helper adds, or tfmot's
    ``UpdatePruningStep()`` next to ``PruningSummaries(log_dir)``) act as one: the first in the list
    updates the masks and counts the steps, the others only write their own ``log_dir``. The same
    instance listed twice acts as if listed once (its ``log_dir`` gets each point once, on
    ``keras.callbacks.TensorBoard``'s step axis).

    In a multi-process JAX ``keras.distribution`` job (docs/multi_worker.md) it checks at the start
    of each ``fit()`` that every process prunes alike (the same pruned layers with the same
    schedules and ``sparsity_m_by_n``, the same ``epochs`` and, where known, steps) and raises the
    same ``ValueError`` on every process otherwise, naming the layer and the processes.

    ``keras.callbacks.TensorBoard`` (and viewing the logs) needs the ``tensorboard`` package
    (``pip install dc_keras[tensorboard]``); ``PruningCallback(log_dir=...)`` alone does not.

    Example (the second line needs the ``tensorboard`` package):
        >>> pruned.fit(x, y, epochs=3, callbacks=[dc_keras.PruningCallback(log_dir="logs")], verbose=0)
        >>> pruned.fit(x, y, epochs=3, callbacks=[keras.callbacks.TensorBoard("logs", update_freq="batch"),
        ...                                       dc_keras.PruningCallback(log_dir="logs")])  # doctest: +SKIP
    """

    def __init__(self, log_dir=None):
        super().__init__()
        self._log = None if log_dir is None else summaries.PruningLog(log_dir)
        self.log_dir = None if log_dir is None else self._log.log_dir
        self._host = False
        self._follower = False  # another PruningCallback of the same fit() drives the wrappers
        self._running = False  # between on_train_begin and on_train_end (as the driving callback)
        self._ticket = False  # set by on_train_batch_begin, taken by the step it precedes (_CallbackRequired)
        self._due, self._spe = None, 1
        self._batch = None  # first batch of the execution running now (host-counted fit(): the step count)
        self._epoch_iterations = None  # the optimizer's step count at the start of the epoch
        self._made_at = None  # per wrapper: batch of this epoch whose on_train_batch_begin updated its masks
        if self._log is not None:
            # A batch-end hook only when logging: Keras dispatches callbacks without one
            # asynchronously (on_train_batch_begin does not change that).
            self.on_train_batch_end = self._log_batch

    @summaries.instance_only
    def set_model(self, model):
        super().set_model(model)

    def _repeat(self, hook, *args):
        return summaries.repeated_call(self, hook, *args)

    def _log_batch(self, batch, logs=None):
        if self._repeat("on_train_batch_end", batch):
            return
        self._log.batch_end(self.model, batch)

    def on_epoch_begin(self, epoch, logs=None):
        if self._repeat("on_epoch_begin", epoch):
            return
        self._epoch_ran = True
        if getattr(self, "_unchecked", False) and self._running and not self._follower:
            self._unchecked = False
            self._check_schedules(self._wrappers_cache, first_epoch=epoch)
        if self._log is not None:
            if self.params:  # inside fit(): points at the mask updates, on TensorBoard's batch axis
                self._log.epoch_begin()
            else:  # a custom training loop (tfmot's guide calls this hook alone): the masks as they are now
                self._log.write_now(self._wrappers())
        if self._host:
            summaries.sync_model_state(self.model)
            wrappers = self._wrappers()
            self._bases = [self._step_of(w) for w in wrappers]
            # The update at end_step that the last epoch end applied (_finish_schedules) is not repeated.
            self._next = [w.schedule.next_update(b + w._holds_update(b)) for w, b in zip(wrappers, self._bases)]
            self._spe = max(int(getattr(self.model, "steps_per_execution", 1) or 1), 1)
            self._batch = None
            self._epoch_iterations = _optimizer_steps(getattr(self.model, "optimizer", None), unbuilt=0) \
                if self._wrappers_cache and self._wrappers_cache[0]._count_on_host else None
            self._made_at = [None] * len(wrappers)
            for wrapper in wrappers:
                wrapper._untracked("_undo", None)
            self._set_due()

    def on_train_batch_begin(self, batch, logs=None):
        """Inside fit(): update the masks due in the execution that starts at ``batch``.

        The steps ``batch .. batch + steps_per_execution - 1`` run as one call, so an update the
        schedule puts inside it is applied at its start (with that update's sparsity).
        """
        self._ticket = True  # the guard of this fit()'s train function lets the next call run
        if self._repeat("on_train_batch_begin", batch):
            return
        self._batch = batch
        if self._host and int(batch) + self._spe >= int((self.params or {}).get("steps") or 0) > 0:
            # The epoch's last execution: the counter already says where it will end, so a callback
            # listed before this one (EarlyStopping(restore_best_weights=True) taking its snapshot,
            # ModelCheckpoint) reads this epoch's count at epoch end, not the previous one's.
            self._write_steps()
        if not self._host or self._due is None or int(batch) + self._spe <= self._due:
            return  # no update is due in this execution (the usual case): no per-batch work
        spe = self._spe
        steps = (self.params or {}).get("steps")
        count = min(spe, int(steps) - int(batch)) if steps else spe
        synced = False
        for i, wrapper in enumerate(self._wrappers_cache):
            first = self._bases[i] + int(batch)
            if self._next[i] is None or self._next[i] >= first + count:
                continue
            found = wrapper.schedule.last_update(first, count)
            if not synced:  # JAX: fit() holds the variables' values apart; write them back first
                summaries.sync_model_state(self.model)
                synced = True
            wrapper.update_masks(found[0])
            self._made_at[i] = int(batch)
            self._next[i] = wrapper.schedule.next_update(first + count)
        self._set_due()

    def _write_steps(self, epoch_end=False, interrupted=False):
        """fit() of known length: set each wrapper's ``pruning_step`` to the steps it has trained
        (the compiled step does not count them; an execution counts from its start: at its end,
        where Keras saves and logs, that is exact). An epoch that ends short of ``steps`` without ``stop_training``
        ran out of data, and Keras may have called the batch hook once more without a batch: the
        optimizer's step count, when it counts every step, says how many ran. So it says for a
        fit() ``interrupted`` in the middle of an execution (KeyboardInterrupt), and for an epoch
        whose ``steps`` (``steps_per_epoch``) is not a multiple of ``steps_per_execution``: over data
        that goes on, Keras (3.15) runs its last execution whole, up to ``steps_per_execution - 1``
        steps more than ``steps`` (counted as ``steps``, the schedule fell behind the optimizer)."""
        if not self._host or self._batch is None:
            return
        steps = int((self.params or {}).get("steps") or 0)
        done = min(int(self._batch) + self._spe, steps)
        short = epoch_end and done < steps and not getattr(self.model, "stop_training", False)
        overrun = epoch_end and self._spe > 1 and steps % self._spe and done == steps
        if interrupted or short or overrun:
            ran = _optimizer_steps(getattr(self.model, "optimizer", None))
            if ran is not None and self._epoch_iterations is not None:
                ran -= self._epoch_iterations
                done = min(max(done, ran), int(self._batch) + self._spe) if overrun else min(done, ran)
        for wrapper, base in zip(self._wrappers_cache, self._bases):
            if wrapper._count_on_host:
                _assign_host(wrapper.pruning_step, np.asarray(base + done, dtype=wrapper.pruning_step.dtype))

    def _undo_unrun(self):
        """fit() over data of unknown length (TensorFlow): Keras calls ``on_train_batch_begin`` once
        more after the epoch's last batch, for an execution that finds no data and runs no step. An
        update made there was for a step this epoch did not run: the masks of the next epoch's
        first step, or of a step past the end of this fit() (one step early). The steps counted in
        the epoch say whether the execution it was made for ran; if not, it is undone (the next
        epoch's first batch, or the end-of-fit update at ``end_step``, makes it again). JAX writes
        back the state of its last step itself (the same values)."""
        made = getattr(self, "_made_at", None)
        if not self._host or (self.params or {}).get("steps") or not made or all(b is None for b in made):
            return
        summaries.sync_model_state(self.model)
        for wrapper, base, batch in zip(self._wrappers_cache, self._bases, made):
            if batch is not None and self._step_of(wrapper) - base <= batch:
                wrapper._undo_update()
        self._made_at = [None] * len(made)

    def _finish_schedules(self, train_end=False):
        """End of a fit() (its last epoch's end, or train end) or of a custom training loop
        (``train_end``: its ``on_train_end()``): apply the update at ``end_step`` to each wrapper
        whose step count has just reached it. The batch hook (a custom loop's step) updates the
        masks before the step the schedule names, so training ``end_step`` steps (the usual
        ``end_step = steps_per_epoch * epochs``) ran steps 0 .. end_step - 1 and would never reach
        that last update, ending short of the target."""
        if not self._wrappers_cache or not (self.params or train_end):
            return  # a custom loop's on_epoch_end (tfmot's guide calls it): its next step makes it
        updated = []
        for wrapper in self._wrappers_cache:
            end = wrapper.schedule.end_step
            if end == -1 or not wrapper.built or self._step_of(wrapper) != end or wrapper._holds_update(end):
                continue
            if not updated:  # JAX: fit() holds the variables' values apart; write them back first
                summaries.sync_model_state(self.model)
            wrapper.update_masks(end)
            updated.append(wrapper)
        if updated and self._log is not None:  # on TensorBoard's axis: right after the last call
            self._log.write_sparsity(updated, self._log.calls)

    def _set_due(self):
        """First batch index of this epoch at which some wrapper's next mask update falls."""
        due = [n - b for n, b in zip(self._next, self._bases) if n is not None]
        self._due = min(due) if due else None

    def _wrappers(self):
        if self.model is None:
            raise ValueError("PruningCallback has no model: call set_model(model) first.")
        wrappers = _base.find_wrappers(self.model, PruneWrapper)
        if not wrappers:
            raise ValueError(
                f"PruningCallback: model {self.model.name!r} has no pruned layers. dc_keras.prune() returns a new "
                "model and leaves its input unchanged: `pruned = dc_keras.prune(model, schedule)`, then compile and "
                "fit `pruned` (dc_keras.compat.tfmot: `pruned = prune_low_magnitude(model)`, callback "
                "UpdatePruningStep). If this model is not meant to be pruned, leave the callback out."
            )
        return wrappers

    def _follows(self, wrappers):
        """Another PruningCallback of this same fit() (Keras hands every callback of one fit() the
        same ``params`` dict) already drives these wrappers: this one only logs."""
        owner = getattr(wrappers[0], "_owner", None)
        return bool(self.params) and owner is not None and owner is not self and \
            getattr(owner, "_running", False) and owner.params is self.params

    def on_train_begin(self, logs=None):
        if self.model is not None:
            _CallbackRequired.release(self.model, self.params)  # this fit() has the callback
        if self._repeat("on_train_begin"):
            return
        if self.params and "epochs" in self.params:  # fit(): a custom loop may use its own optimizer
            _check_optimizer_backend(self.model)
            spe = getattr(self.model, "steps_per_execution", 1)
            if isinstance(spe, str):  # "auto": this callback's int(spe) failed with "invalid literal for int()"
                raise ValueError(
                    f"compile(steps_per_execution={spe!r}): Keras {keras.__version__}'s fit() takes a whole number "
                    "of steps per execution (a plain model fails too, with \"'str' object cannot be interpreted as "
                    "an integer\"): compile the model with steps_per_execution=N, e.g. 32.")
        wrappers = self._wrappers()
        self._follower = self._follows(wrappers)
        if not self._follower:
            _check_processes_prune_alike(wrappers, self.params)
        if self._follower:
            # A second PruningCallback in one fit() (e.g. tfmot's UpdatePruningStep next to
            # PruningSummaries, or one added by a helper): the first one updates the masks and
            # counts the steps; updating them twice would recompute each mask from weights the
            # first update already zeroed. This one only writes its log.
            self._host, self._wrappers_cache = False, wrappers
            if self._log is not None:
                self._log.begin(wrappers, [self._step_of(w) for w in wrappers])
            return
        # A counted fit() that ended by an exception (KeyboardInterrupt, an error in a callback)
        # in the middle of an epoch never reached on_epoch_end / on_train_end: its last steps
        # are not in the counters yet. Written now (the optimizer's count says how many ran), the
        # schedule resumes where training stopped instead of repeating those steps' updates.
        unfinished = {id(w._host_steps.__self__): w._host_steps.__self__ for w in wrappers
                      if w._host_steps is not None and getattr(w._host_steps, "__self__", None) is not None}
        for other in unfinished.values():
            other._write_steps(interrupted=True)
            other._disarm()
        self._running = True
        for wrapper in wrappers:
            wrapper._untracked("_owner", self)
        # Inside fit() (Keras gave the callback its params) the masks are updated here, between
        # training steps; a custom training loop (on_train_begin only) updates them in its step,
        # and so does a fit() whose model builds its layers in the first step (subclassed model).
        self._host = bool(self.params) and "epochs" in self.params and all(w.built for w in wrappers)
        self._wrappers_cache = wrappers
        fold = self._host and not _clips_by_norm(getattr(self.model, "optimizer", None))
        # fit() of known length (outside tf.distribute): this callback counts the steps, so the
        # compiled step has no counter update; on JAX the step counters and thresholds also stay
        # out of the variables carried through the compiled step.
        # Not under a keras.distribution on JAX (DataParallel, ModelParallel): Keras's JAX trainer
        # fixes the compiled step's output shardings from the model's variables when it makes the
        # train function, before this hook runs, so the variables a host-counted step leaves out
        # would not match them ("pytree structure error ... out_shardings"); the step counts.
        local = not _distributed(self.model) and not (_STATELESS_OPTIMIZER and _jax_distribution())
        count = self._host and bool((self.params or {}).get("steps")) and local
        lean = count and _STATELESS_OPTIMIZER
        on_device = self._zero_on_device()
        retrace = False
        for wrapper in wrappers:
            wrapper._armed = True
            wrapper._host_updates = self._host
            wrapper._fold = fold
            wrapper._count_on_host = count
            wrapper._untracked("_keep_undo", self._host and not (self.params or {}).get("steps"))
            wrapper._untracked("_undo", None)
            wrapper._set_host_state(lean)
            wrapper._untracked("_host_steps", self._write_steps if count else None)
            stale = wrapper._traced_host not in (None, (self._host, fold)) or \
                (wrapper._traced_host is not None and wrapper._traced_count != count)
            retrace = retrace or wrapper._trace_failed or stale
            if fold:
                wrapper._zero_pruned(on_device)
        self._start_steps = [self._step_of(w) for w in wrappers]
        self._verified = False
        # fit(epochs=n, initial_epoch=n) (a resumed job that had already finished) runs no epoch and
        # no step: nothing to verify at its end. A custom training loop has no epochs.
        self._epoch_ran = not (self.params and "epochs" in self.params)
        self._unchecked = True  # the schedules' reach: checked at the first epoch (fit(initial_epoch=) runs fewer)
        if self._log is not None:
            self._log.begin(wrappers, self._start_steps)
        # A train function whose tracing failed because this callback was missing, or that was
        # traced for the other mask-update mode, is stale: start from a fresh one (traced lazily
        # on the first batch). Otherwise keep the cached one.
        if retrace and hasattr(self.model, "make_train_function"):
            if getattr(self.model, "train_function", None) is not None:
                self.model.make_train_function(force=True)
        for wrapper in wrappers:
            wrapper._trace_failed = False
        # fit() made its train function before this hook: guarded while this fit() runs, so that
        # if it is cut (Ctrl-C: no on_train_end), a next fit() without this callback is refused
        self._ticket = False
        function = getattr(self.model, "train_function", None)
        if self.params and "epochs" in self.params and function is not None:
            self.model.train_function = _CallbackRequired(self.model, function, wrappers, owner=self)

    def _take_ticket(self):
        ticket, self._ticket = self._ticket, False
        return ticket

    def _check_schedules(self, wrappers, first_epoch=0):
        """Warn when this fit() ends before a schedule reaches its target sparsity. ``first_epoch``:
        the epoch it starts at (``fit(initial_epoch=)``): it runs the epochs from there to ``epochs``."""
        steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
        if not steps or not epochs:
            return  # length unknown (e.g. an unbounded dataset)
        epochs = int(epochs) - int(first_epoch)
        if epochs < 1:
            return
        seen = []
        for wrapper, start in zip(wrappers, self._start_steps):
            if wrapper.schedule in seen:
                continue
            seen.append(wrapper.schedule)
            sched, last = wrapper.schedule, start + int(steps) * int(epochs) - 1
            # Only a fit() that is meant to finish the schedule (ends within its last update
            # interval or later) is checked: training in several shorter fit() calls is fine. A fit()
            # that starts after end_step (fine-tuning on, a reloaded model) can change nothing:
            # strip() says whether the masks reached the target.
            if sched.end_step != -1 and last >= sched.end_step - sched.frequency and start <= sched.end_step:
                if sched.check_reachable(start, int(steps) * int(epochs), where=f"fit() of layer {wrapper.name!r}"):
                    for other in wrappers:  # strip() does not repeat the warning
                        if other.schedule == sched:
                            other._untracked("_short_warned", True)

    @staticmethod
    def _step_of(wrapper):
        return int(_base.to_numpy(wrapper.pruning_step)) if wrapper.built else 0

    def _verify_progress(self):
        # Not a batch hook on purpose: overriding on_train_batch_* makes Keras synchronise with
        # the device after every step, which costs more than the pruning itself.
        if self._verified:
            return
        self._verified = True
        wrappers = self._wrappers()
        # A step counted on the host proves nothing: there, the traced step must have run the
        # wrapper in training mode (which records the mode it was traced for).
        stuck = [w.name for w, start in zip(wrappers, self._start_steps)
                 if (w._traced_host is None if w._count_on_host else self._step_of(w) == start)]
        if stuck:
            what = f"Pruned layer(s) {stuck} were not called in training mode during training, so they cannot prune."
            if not self.params:  # a custom loop that ran no step (an exhausted iterator) was told only the above
                what = (f"Pruned layer(s) {stuck} counted no training step between on_train_begin() and "
                        "on_train_end() of this custom training loop: either no step ran (its data was empty, or an "
                        "iterator already exhausted: nothing was trained or pruned), or they were not called in "
                        "training mode, so they cannot prune.")
            raise RuntimeError(_NOT_TRAINING_MODE.format(what=what))

    def on_train_end(self, logs=None):
        if self._repeat("on_train_end"):
            return
        if self._follower:
            if self._log is not None:
                self._log.close()
            return
        self._write_steps(epoch_end=True)
        # also when a callback after this one stopped training at its epoch end, and at the end of a
        # custom training loop that ran end_step steps (it reaches the target as fit() does)
        self._finish_schedules(train_end=True)
        if getattr(getattr(self.model, "optimizer", None), "use_ema", False):
            # fit() has just written the optimizer's moving averages into the weights: the pruned
            # ones are averages of their values before they were pruned, not 0
            on_device = self._zero_on_device()
            for wrapper in self._wrappers():
                wrapper._zero_pruned(on_device)
        self._disarm()  # no longer running
        # Keras keeps this fit()'s train function for the next fit(): guard it, so that a fit()
        # without this callback fails at its first step as one that traces anew does
        function = getattr(self.model, "train_function", None)
        if isinstance(function, _CallbackRequired):
            function = function.function  # this fit()'s guard: the one between fit() calls instead
        if function is not None:
            self.model.train_function = _CallbackRequired(self.model, function, self._wrappers())
        if getattr(self, "_epoch_ran", True):
            self._verify_progress()

    def _zero_on_device(self):
        """``_zero_pruned``'s ``on_device``: TF outside tf.distribute, single-process JAX."""
        return not _distributed(self.model) and keras.backend.backend() in ("tensorflow", "jax")

    def _disarm(self):
        self._running = False
        for wrapper in self._wrappers():
            wrapper._armed = False
            wrapper._forget_live_masks()
            wrapper._untracked("_keep_undo", False)
            wrapper._untracked("_undo", None)
            wrapper._untracked("_host_steps", None)
            wrapper._set_host_state(False)
        if self._log is not None:
            self._log.close()

    def sparsity(self):
        """``{"layer/weight": sparsity}`` for every pruned weight of the model."""
        result = {}
        for wrapper in self._wrappers():
            for name, value in wrapper.sparsity().items():
                result[f"{wrapper.name}/{name}"] = value
        return result

    def on_epoch_end(self, epoch, logs=None):
        if self._repeat("on_epoch_end", epoch) or self._follower:
            return
        self._undo_unrun()
        self._write_steps(epoch_end=True)
        # Written: a later write (on_train_end) would undo a restore of the weights, step counter
        # included, that a callback listed before this one (EarlyStopping) makes at train end.
        self._batch = None
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self._disarm()
            raise RuntimeError(
                f"PruningCallback: the training loss is {loss} at the end of epoch {epoch + 1}: the "
                "weights are not finite, so magnitude pruning has masked all of them and the pruned "
                "model is lost. Lower the learning rate or check the data for NaN/inf, then restart "
                "from a checkpoint (e.g. keras.callbacks.BackupAndRestore)."
            )
        try:
            self._verify_progress()
        except RuntimeError:
            self._disarm()
            raise
        if epoch + 1 >= int((self.params or {}).get("epochs") or 0) or getattr(self.model, "stop_training", False):
            self._finish_schedules()  # the fit's last epoch (another epoch makes it at its first batch)


__all__ = ["PruneWrapper", "prune", "PruningCallback"]
