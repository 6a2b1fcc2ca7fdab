"""Pruning schedules: when to update the masks and how much to prune.

A schedule is evaluated inside the pruning wrapper's forward pass (training mode), once per
training step, on the wrapper's step counter. All arithmetic uses ``keras.ops`` so it runs in
graph mode, under XLA and under ``tf.distribute``.

- :class:`ConstantSparsity`: one target sparsity, re-applied every ``frequency`` steps.
- :class:`PolynomialDecay`: Zhu & Gupta's automated gradual pruning (AGP), sparsity rising from
  ``initial_sparsity`` to ``final_sparsity`` with a cubic (``power``) curve.
- :class:`StdThreshold`: Han et al.'s rule, threshold = ``quality`` x std of the layer's weights.

The argument names are those of ``tfmot.sparsity.keras``; ``import dc_keras.compat.tfmot as tfmot``
provides tfmot's whole pruning/clustering API (docs/migrating_from_tfmot.md). Unlike tfmot, masks
are also updated at ``end_step``, also when training stops right after ``end_step`` steps (so
``end_step = steps_per_epoch * epochs`` ends at the target), and a schedule whose
``end_step``/``frequency`` cannot reach its target warns (:meth:`PruningSchedule.check_reachable`).
"""
import inspect
import math
import numbers
import os
import warnings

import keras
import numpy as np
from keras import ops

_PACKAGE = "dc_keras"
# Step arithmetic dtype: JAX has no int64 unless jax_enable_x64 (it truncates with a warning).
_INT = "int32" if keras.backend.backend() == "jax" else "int64"
_REBUILDING = 0  # > 0 while from_config rebuilds a schedule (no constructor warning then)
_REACH_TOLERANCE = 0.01  # sparsity short of the target that is not worth a warning
# Frames the schedule warnings skip to reach the user's line: the keras and dc_keras packages.
_INTERNAL_DIRS = (os.path.dirname(os.path.abspath(keras.__file__)) + os.sep,
                  os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep)


def _user_stacklevel():
    """``stacklevel`` for a ``warnings.warn`` in the function that calls this one, pointing at the
    first frame outside dc_keras and Keras: the user's ``PolynomialDecay(...)`` line, or the
    ``fit()`` call whose callback warns (Keras calls the callbacks)."""
    here = inspect.currentframe()
    if here is None:  # a Python without frame introspection: the caller of the warning's caller
        return 3
    frame, level = here.f_back, 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    return level


def _whole(value):
    """``value`` as an int when it is an integer or a whole float (``16.0``: tfmot takes it, and
    ``np.ceil(n / batch_size) * epochs`` gives one), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return int(value)
    return None


def _check_int(name, value, minimum):
    whole = _whole(value)
    if whole is None:
        raise ValueError(f"`{name}` must be a whole number of steps, got {value!r}.")
    if whole < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {whole}.")
    return whole


def _check_sparsity(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
    # np.float32(0.8) is 0.800000011920929 as a Python float: the value as written, as configs and
    # messages show it (its shortest repr gives the same float32 back)
    value = float(str(value)) if isinstance(value, np.floating) and value.dtype.itemsize < 8 else float(value)
    if not 0.0 <= value < 1.0:
        # A tutorial's 0.96 typed as 96 (a percent) or 1.0 ("prune it all"): say which was meant.
        hint = ""
        if value == 1.0:
            hint = " (1.0 would remove every weight: give at most 0.99, or leave the layer out)"
        elif 1.0 < value <= 100.0:
            hint = f" (a fraction: {value / 100:g} for {value:g} %)"
        raise ValueError(f"`{name}` must be in [0, 1){hint}, got {value}.")
    return value


class PruningSchedule:
    """Base class of the pruning schedules.

    Subclasses define ``kind`` (``"sparsity"`` or ``"threshold"``), :meth:`sparsity` or ``quality``,
    and share the step window logic of :meth:`should_update`.
    """

    kind = "sparsity"
    #: What the ``end_step`` errors suggest: -1 (no end) where the schedule takes it; a schedule that
    #: needs an end (:class:`PolynomialDecay`, which refuses -1) says so instead.
    _end_step_hint = "-1 for no end"

    def __init__(self, begin_step=0, end_step=-1, frequency=100):
        self.begin_step = _check_int("begin_step", begin_step, 0)
        whole = _whole(end_step)
        if whole is None:
            raise ValueError(f"`end_step` must be a whole number of steps ({self._end_step_hint}), got {end_step!r}.")
        end_step = whole
        if end_step != -1 and end_step < self.begin_step:
            raise ValueError(
                f"`end_step` ({end_step}) must be >= `begin_step` ({self.begin_step})"
                + (", or -1 for no end." if self._end_step_hint == PruningSchedule._end_step_hint else
                   f" ({self._end_step_hint}).")
            )
        self.end_step = end_step
        self.frequency = _check_int("frequency", frequency, 1)

    def should_update(self, step):
        """Boolean tensor: update the masks at ``step`` (0-based count of training steps done)?

        True at ``begin_step``, every ``frequency`` steps after it, and at ``end_step``.
        """
        step = ops.cast(step, _INT)
        begin = ops.cast(self.begin_step, _INT)
        after_begin = ops.greater_equal(step, begin)
        on_frequency = ops.equal(ops.mod(step - begin, ops.cast(self.frequency, _INT)), 0)
        if self.end_step == -1:
            return ops.logical_and(after_begin, on_frequency)
        end = ops.cast(self.end_step, _INT)
        in_window = ops.logical_and(after_begin, ops.less_equal(step, end))
        return ops.logical_and(in_window, ops.logical_or(on_frequency, ops.equal(step, end)))

    def __call__(self, step):
        """tfmot's schedule call: ``(should_prune, sparsity)`` at ``step``, as tensors (:meth:`should_update`
        and :meth:`sparsity`; unlike tfmot's, also an update at ``end_step``). Subclasses implement
        ``sparsity(step)``, not this.

        Example:
            >>> should_prune, sparsity = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)(50)
        """
        if self.kind != "sparsity":
            raise TypeError(f"{type(self).__name__} sets a threshold, not a sparsity: it has no (should_prune, "
                            "sparsity) value at a step; use should_update(step).")
        return self.should_update(step), self.sparsity(step)

    # -- reachability (host-side arithmetic, mirrors should_update / sparsity) -------------------
    def target_sparsity_value(self):
        """The sparsity this schedule is meant to end at (None for threshold schedules)."""
        return None

    def sparsity_at(self, step):
        """Python float: the sparsity the masks get at an update at ``step``."""
        return float(ops.convert_to_numpy(self.sparsity(step)))

    def last_update(self, first_step, num_steps):
        """``(step, sparsity)`` of the last mask update among the training steps
        ``first_step .. first_step + num_steps - 1``, or None when there is none."""
        last = first_step + num_steps - 1
        if num_steps <= 0 or last < self.begin_step:
            return None
        hi = last if self.end_step == -1 else min(last, self.end_step)
        if hi < first_step:
            return None
        if self.end_step != -1 and hi == self.end_step:
            step = hi
        else:
            step = self.begin_step + (hi - self.begin_step) // self.frequency * self.frequency
            if step < first_step:
                return None
        return step, (self.sparsity_at(step) if self.kind == "sparsity" else None)

    def next_update(self, step):
        """First step ``>= step`` at which the masks update (host-side ``should_update``), or None.

        Example:
            >>> ConstantSparsity(0.5, begin_step=3, frequency=4).next_update(5)
            7
        """
        step = max(int(step), self.begin_step)
        if self.end_step != -1 and step > self.end_step:
            return None
        found = self.begin_step + -(-(step - self.begin_step) // self.frequency) * self.frequency
        return found if self.end_step == -1 else min(found, self.end_step)

    def check_reachable(self, first_step, num_steps, where="training"):
        """Warn (``UserWarning``) when ``num_steps`` training steps from ``first_step`` end below
        the target sparsity because of ``end_step``/``frequency``. Returns the warning text or None.

        The masks are updated before the step the schedule names; the update at ``end_step`` is
        also applied when training stops right after ``end_step`` steps (``PruningCallback`` does it
        at the end of the fit()), so ``end_step = steps_per_epoch * epochs`` ends at the target. When that
        last update is a jump of more than 1 % that no training step follows, this warns too.

        Example:
            >>> PolynomialDecay(0.0, 0.8, 0, end_step=12, frequency=4).check_reachable(0, 12)
            'PolynomialDecay(...): training runs steps 0..11, so training ends at sparsity 0.77 instead of 0.8 ...'
        """
        target = self.target_sparsity_value()
        if target is None or num_steps is None:
            return None
        found = self.last_update(first_step, num_steps)
        reached = found[1] if found else None
        if reached is not None and reached >= target - _REACH_TOLERANCE:
            return None
        last = first_step + num_steps - 1
        # The update at end_step that PruningCallback applies after the last step, at the end of the fit().
        at_end = self.end_step != -1 and first_step <= self.end_step == first_step + num_steps
        span = (f"a divisor of end_step - begin_step = {self.end_step - self.begin_step}" if self.end_step != -1
                else "a divisor of the steps you train")
        every = f"masks update only every frequency={self.frequency} steps from begin_step={self.begin_step}"
        if at_end and self.sparsity_at(self.end_step) >= target - _REACH_TOLERANCE:
            ends = (f"training ends at sparsity {reached:.3g} instead of {target:.3g}" if reached is not None
                    else "training never updates the masks")
            # frequency=1 cannot go lower: there the last jump shrinks only with more steps to end_step
            fix = ("Lower `frequency` so that the last jump is small." if self.frequency > 1 else
                   f"With frequency=1 that jump is the schedule's own last step: give it more steps (end_step - "
                   f"begin_step = {self.end_step - self.begin_step} now; train as many) so that the last jump is small.")
            text = (f"{self!r}: {where} runs steps {first_step}..{last}, so {ends} ({every}); the update at "
                    f"end_step={self.end_step}, after the last step, then prunes to {target:.3g} with no training to "
                    f"recover from it. {fix}")
            warnings.warn(text, UserWarning, stacklevel=_user_stacklevel())
            return text
        ends = f"ends at sparsity {reached:.3g}" if reached is not None else "never updates the masks"
        if found is None and last < self.begin_step:
            why = f"begin_step={self.begin_step} is after the last step"
            fix = "Lower `begin_step` or train longer."
        else:
            why = every + (f" and at end_step={self.end_step}" if self.end_step != -1 else "")
            if self.end_step != -1 and last < self.end_step:
                fix = (f"Set end_step to the steps you train (steps_per_epoch * epochs; the update at end_step comes "
                       f"once end_step steps are done), or train {self.end_step - first_step} steps from step "
                       f"{first_step}.")
            else:
                fix = f"Lower `frequency` (e.g. to {span})."
        text = (f"{self!r}: {where} runs steps {first_step}..{last}, so it {ends} "
                f"instead of {target:.3g} ({why}). {fix}")
        warnings.warn(text, UserWarning, stacklevel=_user_stacklevel())
        return text

    def check_usable(self):
        """Raise one ``ValueError`` saying how to fix a subclass that cannot run: one written for
        tfmot (``__call__(step)`` returning ``(should_prune, sparsity)``, no base ``__init__``) or
        one that does not call ``PruningSchedule.__init__``. Called when a layer is wrapped.

        Example:
            >>> class MySchedule(dc_keras.schedules.PruningSchedule):
            ...     def __init__(self, target):
            ...         super().__init__(begin_step=0, end_step=1000, frequency=100)
            ...         self.target = target
            ...     def sparsity(self, step):
            ...         return keras.ops.convert_to_tensor(self.target, "float32")
            >>> MySchedule(0.5).check_usable()  # nothing happens when it can run
            >>> class TfmotStyle(dc_keras.schedules.PruningSchedule):
            ...     def __call__(self, step):
            ...         return True, 0.5
            >>> TfmotStyle().check_usable()
            Traceback (most recent call last):
            ...
            ValueError: Pruning schedule TfmotStyle implements tfmot's __call__(step) -> (should_prune, sparsity)...
        """
        name = type(self).__name__
        missing = [a for a in ("begin_step", "end_step", "frequency") if not hasattr(self, a)]
        no_rule = self.kind == "sparsity" and not callable(getattr(self, "sparsity", None))
        if not missing and not no_rule:
            return
        tfmot_style = any("__call__" in vars(k) for k in type(self).__mro__ if k is not PruningSchedule)
        problem = ("implements tfmot's __call__(step) -> (should_prune, sparsity)" if tfmot_style and no_rule
                   else "has no sparsity(step) method" if no_rule
                   else f"has no {', '.join(missing)} (PruningSchedule.__init__ was not called)")
        raise ValueError(
            f"Pruning schedule {name} {problem}. A dc_keras schedule calls "
            "super().__init__(begin_step, end_step, frequency) (when to update the masks: at begin_step, every "
            "frequency steps and at end_step) and implements sparsity(step) with keras.ops, returning the target "
            "sparsity at that step (docs/migrating_from_tfmot.md, note 4).")

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step, "frequency": self.frequency}

    @classmethod
    def from_config(cls, config):
        # A schedule rebuilt from a saved model (load_model, here or on another backend) does not
        # repeat the constructor's reachability warning: its user saw it when building it, and
        # fit() checks the steps it will run.
        global _REBUILDING
        _REBUILDING += 1
        try:
            return cls(**config)
        finally:
            _REBUILDING -= 1

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """Prune to ``target_sparsity`` at ``begin_step`` and every ``frequency`` steps until ``end_step``.

    Example:
        >>> schedule = dc_keras.schedules.ConstantSparsity(0.9, begin_step=0, frequency=100)
        >>> pruned = dc_keras.prune(model, schedule)
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)

    def sparsity(self, step):
        return ops.convert_to_tensor(self.target_sparsity, "float32")

    def target_sparsity_value(self):
        return self.target_sparsity

    def sparsity_at(self, step):
        return self.target_sparsity

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(PruningSchedule):
    """Automated gradual pruning (Zhu & Gupta 2017):

    ``s(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** power`` for
    ``begin <= t <= end``, masks updated every ``frequency`` steps and at ``end_step``.
    ``begin_step == end_step`` is one-shot pruning: one update, at that step, to ``final_sparsity``.

    Example:
        >>> schedule = dc_keras.schedules.PolynomialDecay(0.5, 0.92, begin_step=0, end_step=2000)
    """

    _end_step_hint = ("PolynomialDecay needs an end: the step it reaches final_sparsity at, e.g. steps_per_epoch * "
                      "epochs")

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100):
        if _whole(end_step) == -1:
            raise ValueError(f"`end_step` of PolynomialDecay must be a step >= `begin_step`, not -1 "
                             f"({self._end_step_hint}; -1, no end, is for ConstantSparsity and StdThreshold).")
        super().__init__(begin_step, end_step, frequency)
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        if self.final_sparsity < self.initial_sparsity:
            raise ValueError(
                f"`final_sparsity` ({self.final_sparsity}) is below `initial_sparsity` ({self.initial_sparsity}): "
                "pruning masks only grow (a pruned weight is never restored), so the layer would stay at "
                f"{self.initial_sparsity} from the first update. Give final_sparsity >= initial_sparsity.")
        if isinstance(power, bool) or not isinstance(power, numbers.Real) or not 0 < power < math.inf:
            raise ValueError(f"`power` must be a positive, finite number, got {power!r}.")
        self.power = float(power)
        # The usual recipe sets end_step = steps_per_epoch * epochs: training then runs steps
        # 0 .. end_step - 1 and never reaches the update at end_step itself. (A one-shot schedule,
        # begin_step == end_step, has no ramp to check: fit() checks the steps it runs.)
        if not _REBUILDING and self.end_step > self.begin_step:
            self.check_reachable(self.begin_step, self.end_step - self.begin_step,
                                 where=f"training for end_step - begin_step = {self.end_step - self.begin_step} steps")

    def target_sparsity_value(self):
        return self.final_sparsity

    def sparsity_at(self, step):
        span = self.end_step - self.begin_step
        if span == 0:  # one-shot: final_sparsity from begin_step (it was initial_sparsity, for good)
            progress = 1.0 if step >= self.begin_step else 0.0
        else:
            progress = min(max((step - self.begin_step) / span, 0.0), 1.0)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power

    def sparsity(self, step):
        step = ops.cast(step, "float32")
        span = self.end_step - self.begin_step
        if span == 0:
            progress = ops.cast(ops.greater_equal(step, float(self.begin_step)), "float32")
        else:
            progress = ops.clip((step - float(self.begin_step)) / float(span), 0.0, 1.0)
        remaining = ops.power(1.0 - progress, self.power)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * remaining

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StdThreshold(PruningSchedule):
    """The paper's rule: remove every weight with ``|w| < quality * std(w)``.

    The threshold is computed per pruned weight at ``begin_step`` from the standard deviation of
    the (surviving) weights, then re-applied every ``frequency`` steps until ``end_step``, so
    weights that shrink below it during retraining are removed too (iterative pruning). The
    resulting sparsity depends on the weight distribution: ``quality=1`` removes about 68 % of a
    Gaussian layer, ``quality=1.5`` about 87 %.

    Example:
        >>> schedule = dc_keras.schedules.StdThreshold(1.2, begin_step=0, end_step=3000, frequency=300)
    """

    kind = "threshold"

    def __init__(self, quality, begin_step=0, end_step=-1, frequency=100):
        super().__init__(begin_step, end_step, frequency)
        if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not quality > 0:
            raise ValueError(f"`quality` must be a positive number, got {quality!r}.")
        self.quality = float(quality)

    def get_config(self):
        return {"quality": self.quality, **super().get_config()}


__all__ = ["PruningSchedule", "ConstantSparsity", "PolynomialDecay", "StdThreshold"]
