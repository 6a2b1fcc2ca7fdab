"""What ``prune`` / ``cluster`` compressed, and what they left dense and why.

Every model returned by :func:`dc_keras.prune` / :func:`dc_keras.cluster` carries a
:class:`CoverageReport` as ``model.compression_report`` (also logged at INFO level on the
``dc_keras`` logger); :func:`coverage` computes one for any model. Layers left dense because
dc_keras cannot compress them (a custom layer without ``get_prunable_weights()``...) are also
named in a ``UserWarning`` (:func:`warn_unsupported`).
"""
import logging
import warnings

import keras

from dc_keras.train import _base
from dc_keras.train.schedules import _user_stacklevel

logger = logging.getLogger("dc_keras")


class CoverageReport:
    """Which layers are compressed, the share of the model's parameters they hold, and each layer
    with weights that is left dense, with the reason.

    Attributes:
        action: ``"prune"``, ``"cluster"`` or ``"coverage"``.
        wrapped: ``[{"layer", "type", "weights", "params"}]``: compressed layers, their
            compressed weight names and entry count.
        skipped: ``[{"layer", "type", "reason", "params"}]``.
        folds: ``[(layer, batchnorm)]``: BatchNormalization layers folded into the preceding
            layer before clustering (``cluster(fold_batchnorm=True)``).
        notes: other remarks (e.g. a BatchNormalization that cannot be folded).
        total_params: every weight of the model.

    Example:
        >>> pruned = dc_keras.prune(model, schedule)
        >>> print(pruned.compression_report)          # or dc_keras.coverage(pruned)
        >>> pruned.compression_report.fraction         # e.g. 0.97 of the parameters are pruned
    """

    def __init__(self, action, total_params):
        self.action = action
        self.total_params = int(total_params)
        self.wrapped = []
        self.skipped = []
        self.folds = []
        self.notes = []

    @property
    def covered_params(self):
        return sum(entry["params"] for entry in self.wrapped)

    @property
    def fraction(self):
        """Share of the model's parameters held by compressed weights."""
        return self.covered_params / self.total_params if self.total_params else 0.0

    def add_wrapped(self, layer, targets):
        self.wrapped.append({
            "layer": layer.name, "type": type(layer).__name__,
            "weights": [name for name, _, _ in targets],
            "params": _base.params(v for _, v, _ in targets),
        })

    def add_skipped(self, layer, reason):
        self.skipped.append({
            "layer": layer.name, "type": type(layer).__name__, "reason": reason,
            "params": _base.params(layer.weights),
        })

    def to_dict(self):
        return {"action": self.action, "total_params": self.total_params,
                "covered_params": self.covered_params, "fraction": self.fraction,
                "wrapped": list(self.wrapped), "skipped": list(self.skipped),
                "folds": [list(f) for f in self.folds], "notes": list(self.notes)}

    def __str__(self):
        if self.wrapped or not self.folds:
            lines = [f"dc_keras {self.action}: {len(self.wrapped)} layer(s) compressed, {self.covered_params:,} "
                     f"of {self.total_params:,} parameters ({100 * self.fraction:.1f} %)"]
        else:
            lines = [f"dc_keras {self.action}: {len(self.folds)} BatchNormalization layer(s) folded"]
        for e in self.wrapped:
            lines.append(f"  + {e['layer']} ({e['type']}): {', '.join(e['weights'])} [{e['params']:,}]")
        for conv, bn in self.folds:
            lines.append(f"  ~ {bn} (BatchNormalization) folded into {conv}")
        for e in self.skipped:
            lines.append(f"  - {e['layer']} ({e['type']}, {e['params']:,} params): {e['reason']}")
        lines.extend(f"  ! {note}" for note in self.notes)
        return "\n".join(lines)

    __repr__ = __str__

    def log(self):
        for line in str(self).splitlines():
            logger.info("%s", line)


def build_report(action, model, chosen, skipped, targets_of=None):
    """Report for ``model`` (the input of prune/cluster) given :func:`_base.select_layers` output
    (``targets_of(layer)``: the compressed weights, default all of ``compressible_weights``)."""
    report = CoverageReport(action, _base.params(model.weights))
    for layer, _ in chosen.values():
        report.add_wrapped(layer, targets_of(layer) if targets_of else _base.compressible_weights(layer))
    for layer, reason in skipped:
        report.add_skipped(layer, reason)
    return report


def warn_unsupported(action, model, skipped):
    """One ``UserWarning`` naming the layers ``prune`` / ``cluster`` (``action``) leave dense because
    dc_keras cannot compress them though they hold trainable matrices (:func:`_base.left_dense_unsupported`):
    each one's share of ``model``'s parameters, why, and the fix. The report is only logged (INFO,
    invisible with Python's default logging), and a model whose largest layer is a custom one without
    ``get_prunable_weights()`` shrank 1.76x without a word. Layers left dense by design (normalisations,
    frozen layers, vectors, layers ``layers=`` leaves out, too small for ``min_params``) are not named.
    Returns the warning's text, or None."""
    unsupported = [(layer, reason) for layer, reason in skipped if _base.left_dense_unsupported(layer)]
    if not unsupported:
        return None
    total = _base.params(model.weights)
    sizes = [_base.params(layer.weights) for layer, _ in unsupported]
    share = sum(sizes) / total if total else 0.0
    listed = "; ".join(
        f"{layer.name!r} ({type(layer).__name__}, {size:,} params, {100 * size / total if total else 0:.1f} %): {reason}"
        for (layer, reason), size in zip(unsupported, sizes))
    many = len(unsupported) > 1
    them, done = ("them" if many else "it"), {"prune": "pruned", "cluster": "clustered"}.get(action, action)
    fixes = []
    if any(not isinstance(layer, keras.Model) and not type(layer).__module__.startswith("keras")
           for layer, _ in unsupported):
        fixes.append("give a custom layer a get_prunable_weights() method returning the variables to compress "
                     "(tfmot's PrunableLayer interface, e.g. `def get_prunable_weights(self): return [self.w]`)")
    if any(isinstance(layer, keras.Model) for layer, _ in unsupported):
        fixes.append(f"wrap a subclassed model's layers in its __init__ (self.fc = dc_keras.{action}("
                     "keras.layers.Dense(...), ...))")
    if any(type(layer).__module__.startswith("keras") and not isinstance(layer, keras.Model) for layer, _ in unsupported):
        fixes.append("build the model from the supported layer types (docs/models.md)")
    message = (
        f"dc_keras.{action}(): {len(unsupported)} layer{'s' if many else ''} holding {100 * share:.1f} % of the "
        f"model's {total:,} parameters {'are' if many else 'is'} left dense (not {done}) because dc_keras cannot "
        f"{action} {them}: {listed}. To {action} {them}, {'; or '.join(fixes)}. To leave {them} dense on purpose, "
        f"name the layers to {action} with layers=[...] (no warning then). The returned model's "
        "compression_report lists every layer and why.")
    warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())
    return message


def attach(model, report):
    """Store ``report`` on ``model`` as ``compression_report`` (not tracked by Keras) and log it."""
    object.__setattr__(model, "compression_report", report)
    report.log()
    return model


def _held_layers(model):
    """``[(layer, frozen, weights)]`` of a subclassed model: the layers it holds at any depth
    (attributes, lists, nested models, custom layers that hold layers), down to a wrapper or a layer
    that can be compressed (an LSTM is one entry, not its cell). A custom layer that holds layers is
    entered, and listed too when it has weights of its own (``weights``: those only). Each layer once."""
    from dc_keras import _compat

    seen, out = {id(model)}, []
    # a layer inside a wrapper is the wrapper's (also when the model still tracks it: `self.fc =
    # Dense(...)` then `self.fc = dc_keras.prune(self.fc, ...)` keeps both in its layers)
    seen.update(id(inner) for w in _base.find_wrappers(model) for inner in _compat.flatten_layers(w))

    def walk(parent, frozen):
        for layer in _compat.flatten_layers(parent, recursive=False):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            f = frozen or not layer.trainable
            children = [] if isinstance(layer, _base.CompressionWrapper) or _base.is_supported(layer) else \
                _compat.flatten_layers(layer, recursive=False)
            if not children:
                out.append((layer, f, list(layer.weights)))
                continue
            held = {id(v) for c in _compat.flatten_layers(layer) for v in c.weights}
            own = [v for v in layer.weights if id(v) not in held]
            if own:
                out.append((layer, f, own))
            walk(layer, f)

    walk(model, not model.trainable)
    return out


def _subclassed_report(model, leaves, wrappers, include_frozen):
    inner = {id(v) for w in wrappers for v in w.layer.weights}
    state = {id(v) for w in wrappers for v in w.weights if id(v) not in inner}  # masks, centroids
    report = CoverageReport("coverage", _base.params(v for v in model.weights if id(v) not in state))
    for wrapper in wrappers:
        report.add_wrapped(wrapper.layer, wrapper._targets or _base.compressible_weights(wrapper.layer))
    for layer, frozen, own in leaves:
        if isinstance(layer, _base.CompressionWrapper) or not own:
            continue
        reason = _base.unsupported_reason(layer)
        if reason is None and frozen and not include_frozen:
            reason = "frozen (trainable=False)"
        if reason is None and not wrappers:
            report.add_wrapped(layer, _base.compressible_weights(layer))
            continue
        if reason is None:
            reason = "not wrapped"
        elif len(own) < len(layer.weights):
            reason = f"its own weights (the layers it holds are listed on their own): {reason}"
        report.skipped.append({"layer": layer.name, "type": type(layer).__name__, "reason": reason,
                               "params": _base.params(own)})
    report.notes.append(
        f"{type(model).__name__} is a subclassed model: dc_keras.prune()/cluster() do not rewrite it; wrap its "
        "layers in its __init__ (self.fc = dc_keras.prune(keras.layers.Dense(...), schedule))"
        + ("" if wrappers else "; listed as compressed: the layers that can be"))
    return report


def coverage(model, include_frozen=False):
    """Coverage of a model: for a wrapped model (output of prune/cluster) the compressed layers;
    for a plain model what ``dc_keras.prune(model, ...)`` would compress by default. For a subclassed
    model (built: called once), the layers it holds at any depth: those its ``__init__`` wrapped
    with ``prune``/``cluster``, or, when none is wrapped, the ones that can be.

    Example:
        >>> print(dc_keras.coverage(keras.applications.MobileNetV2(weights=None)))
    """
    if not isinstance(model, keras.Model):
        raise _base.not_keras3_error("coverage()", "a Keras model", model)
    subclassed = not _base.is_graph_model(model)
    if subclassed and not model.built:
        raise ValueError(f"Model {model.name!r} ({type(model).__name__}, subclassed) is not built, so its layers "
                         "have no weights yet: call it once on a batch (model(x[:1])) before coverage().")
    if not subclassed:
        _base.check_buildable(model, "coverage")
    wrappers = _base.find_wrappers(model)
    if subclassed:
        return _subclassed_report(model, _held_layers(model), wrappers, include_frozen)
    if not wrappers:
        chosen, skipped = _base.select_layers(model, None, "compressed", include_frozen=include_frozen)
        return build_report("coverage", model, chosen, skipped)
    inner = {id(v) for w in wrappers for v in w.layer.weights}
    state = {id(v) for w in wrappers for v in w.weights if id(v) not in inner}  # masks, centroids
    report = CoverageReport("coverage", _base.params(v for v in model.weights if id(v) not in state))
    for wrapper in wrappers:  # a wrapper's targets include clustered biases (cluster_biases=...)
        report.add_wrapped(wrapper.layer, wrapper._targets or _base.compressible_weights(wrapper.layer))
    for layer, frozen in _base.graph_layers(model):
        if layer.weights and not isinstance(layer, _base.CompressionWrapper):
            reason = _base.unsupported_reason(layer) or (
                "frozen (trainable=False)" if frozen else "not wrapped")
            report.add_skipped(layer, reason)
    return report


__all__ = ["CoverageReport", "coverage"]
