"""Per-layer sensitivity analysis: how much each layer can be pruned (or how few bits it needs)
before the model's quality drops, measured one layer at a time without retraining.

The paper chose per-layer thresholds and bit widths by hand; :func:`suggest_sparsity` and
:func:`suggest_bits` turn a sweep into per-layer targets automatically.
"""
import collections.abc
import itertools
import logging
import numbers
import os
import time
import warnings

import keras
import numpy as np
from keras import tree

from dc_keras._fileio import write_figure
from dc_keras.train import _base, bn_fold
from dc_keras.train.kmeans import kmeans_1d
from dc_keras.train.schedules import _user_stacklevel

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
_LOG = logging.getLogger("dc_keras")


def _is_count(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _endless(data):
    """True for a ``tf.data.Dataset`` that repeats forever or a ``keras.utils.PyDataset`` without
    a length (``num_batches`` None): reading it to its end never returns."""
    if hasattr(data, "element_spec") and hasattr(data, "cardinality"):
        try:
            return int(data.cardinality()) == -1  # tf.data.INFINITE_CARDINALITY
        except Exception:  # noqa: BLE001 -- a Dataset-like object without a usable cardinality
            return False
    if isinstance(data, keras.utils.PyDataset):
        try:
            return data.num_batches is None
        except NotImplementedError:
            return True
    return False


def _check_batch(batch):
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(f"`data` batches must be (x, y) pairs, got a {type(batch).__name__}.")
    return batch


def _two_batches(data, model):
    """``[(x1, y1), (x2, y2)]``: a list of two (x, y) batches, not one (x, y) pair whose x is two
    inputs, when the model takes one input (a list of two batches was read as x = (x1, y1) and
    failed in numpy: "inhomogeneous shape")."""
    inputs = getattr(model, "inputs", None)
    return (isinstance(data, list) and inputs is not None and len(inputs) == 1
            and all(isinstance(b, (tuple, list)) and len(b) == 2 and hasattr(b[0], "shape") for b in data))


def _source(data, steps, batch_size, reads, model=None):
    """``data`` checked once, as something :func:`_collect` reads again for each of the ``reads``
    measurements: ``("arrays", x, y)`` or ``("batches", a function giving an iterator of the
    batches, steps)``; a ``tf.data.Dataset`` is read as numpy (on JAX / torch ``predict_on_batch``
    refuses TensorFlow tensors). A one-pass iterator
    (a generator) is read here, once: its first ``steps`` batches (or ``len(data)``) are kept in
    memory; without either it is refused, since an endless one would never return."""
    if steps is not None and not _is_count(steps):
        raise ValueError(f"`steps` must be None or a positive whole number of batches, got {steps!r}.")
    if isinstance(data, (tuple, list)) and len(data) == 2 and not hasattr(data[0], "element_spec") \
            and not _two_batches(data, model):
        x, y = data
        if steps is not None:
            x, y = (tree.map_structure(lambda a: a[:steps * batch_size], v) for v in (x, y))
        return ("arrays", x, y)
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        raise ValueError(f"`data` must be an (x, y) tuple or an iterable of (x, y) batches, got one array of shape "
                         f"{tuple(data.shape)} (x alone?): pass (x_val, y_val).")
    if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise ValueError(f"`data` must be an (x, y) tuple or an iterable of (x, y) batches, got "
                         f"{type(data).__name__}.")
    alternatives = ("or pass the data in a form that can be read again: (x_val, y_val) arrays, a list of (x, y) "
                    "batches or a tf.data.Dataset")
    if isinstance(data, collections.abc.Iterator):
        count = steps if steps is not None else len(data) if hasattr(data, "__len__") else None
        if count is None:
            raise ValueError(
                f"`data` is an iterator ({type(data).__name__}), which can be read only once and may never end, and "
                f"sensitivity() measures the model {reads} times on the same data: pass steps=N to read its first N "
                f"batches once (they are kept in memory and reused), {alternatives}.")
        batches = [_check_batch(b) for b in itertools.islice(data, count)]
        if not batches:
            raise ValueError("`data` is empty: the iterator yielded no batch.")
        if len(batches) < count:
            warnings.warn(f"sensitivity(): `data` ended after {len(batches)} batches, fewer than steps={count}; "
                          f"measuring on those {len(batches)}.", UserWarning, stacklevel=_user_stacklevel())
        return ("batches", lambda: iter(batches), None)
    if steps is None and _endless(data):
        raise ValueError(f"`data` ({type(data).__name__}) never ends (a repeated tf.data.Dataset or a PyDataset "
                         f"without a length), and sensitivity() reads it {reads} times: pass steps=N to measure on "
                         f"its first N batches, or pass data that ends.")
    if hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator"):
        return ("batches", data.as_numpy_iterator, steps)
    return ("batches", lambda: iter(data), steps)


def _to_numpy(value, like):
    """``value`` (labels) as numpy in the structure of ``like`` (the predictions): one array for a
    single-output model, a list / dict of arrays for several outputs. Left as it is where it does
    not fit (a callable metric gets it unchanged)."""
    if isinstance(like, dict) and isinstance(value, dict):
        return {k: _to_numpy(v, like.get(k)) for k, v in value.items()}
    if isinstance(like, (list, tuple)) and isinstance(value, (list, tuple)) and len(like) == len(value):
        return type(value)(_to_numpy(v, p) for v, p in zip(value, like))
    try:
        return np.asarray(value)
    except ValueError:  # ragged: several outputs' labels the predictions do not mirror
        return value


def _concat(parts):
    if isinstance(parts[0], dict):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    if isinstance(parts[0], (list, tuple)):
        return type(parts[0])(_concat([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate(parts)


def _collect(model, source, batch_size):
    """(y_true, y_pred) as numpy (lists / dicts of arrays for several outputs) for a :func:`_source`."""
    if source[0] == "arrays":
        _, x, y = source
        y_pred = tree.map_structure(np.asarray, model.predict(x, batch_size=batch_size, verbose=0))
        return _to_numpy(y, y_pred), y_pred
    _, batches, steps = source
    ys, ps = [], []
    for batch in itertools.islice(batches(), steps):
        x, y = _check_batch(batch)[:2]
        ps.append(tree.map_structure(np.asarray, model.predict_on_batch(x)))
        ys.append(_to_numpy(y, ps[-1]))
    if not ys:
        raise ValueError("`data` is empty.")
    return _concat(ys), _concat(ps)


def _single_output(name, y_true, y_pred):
    """``(y_true, y_pred)`` as single arrays for the built-in metric ``name``; one ValueError saying
    what to pass for a model with several outputs."""
    if not tree.is_nested(y_pred):
        return y_true, y_pred
    outputs = tree.flatten(y_pred)
    if len(outputs) == 1:
        return (tree.flatten(y_true)[0] if tree.is_nested(y_true) else y_true), outputs[0]
    raise ValueError(
        f"sensitivity(): the model has {len(outputs)} outputs and metric={name!r} scores one. Pass a "
        f"metric=callable(y_true, y_pred) -> float: it gets y_true as given and y_pred as the model returns it (one "
        f"array per output), e.g. metric=lambda y_true, y_pred: float(np.mean(np.argmax(y_pred[0], -1) == "
        f"y_true[0])) for the first output's accuracy.")


def _check_class_scores(name, y_pred):
    """The built-in metric ``name`` takes the class of the highest score: one ValueError, before the
    sweep, when ``y_pred`` holds one score per sample (a sigmoid or logit binary classifier, or a
    regression's value), whose argmax is always class 0. Its "accuracy" was then the share of label 0 at every swept value,
    and suggest_sparsity() / suggest_bits() blamed an untrained model."""
    if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
        return
    raise ValueError(
        f"sensitivity(): the model gives one score per sample (predictions of shape {y_pred.shape}: a binary "
        f"classifier with a sigmoid or a logit output?), and metric={name!r} takes the class of the highest score, "
        f"which would always be 0. Pass a metric=callable(y_true, y_pred) -> float that thresholds the score, e.g. "
        f"metric=lambda y_true, y_pred: float(np.mean((y_pred.reshape(-1) > 0.5) == y_true.reshape(-1))) for a "
        f"sigmoid output (> 0 for a logit), or score two classes (softmax over 2 units). A regression model (one "
        f"value per sample) is measured by its error: metric=lambda y_true, y_pred: float(np.mean((y_pred.reshape(-1) "
        f"- y_true.reshape(-1)) ** 2)), higher_is_better=False.")


def _labels(y_true, y_pred):
    """Class labels of ``y_true`` as :func:`_accuracy` reads them (one-hot rows: their argmax); one
    ValueError when they are not one per prediction (numpy said only "operands could not be
    broadcast together with shapes (300,) (100,)")."""
    y_true = np.asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1] and y_pred.shape[-1] > 1:
        y_true = np.argmax(y_true, axis=-1)
    labels = y_true.reshape(-1)
    if labels.size != int(np.prod(y_pred.shape[:-1])):
        raise ValueError(
            f"sensitivity(): the labels of `data` (shape {np.shape(y_true)}) are not one per prediction (the model "
            f"gives predictions of shape {y_pred.shape}): pass the labels of the same validation samples as x, as "
            f"integer classes (shape {y_pred.shape[:-1]}) or one-hot rows (shape {y_pred.shape}).")
    return labels


def _accuracy(y_true, y_pred):
    return float(np.mean(np.argmax(y_pred, axis=-1) == _labels(y_true, y_pred)))


def _chance(metric, y_true, y_pred):
    """The ``"accuracy"`` / ``"error"`` of always predicting the most frequent class of ``y_true``
    (what a model that learned nothing scores at best), None for other metrics."""
    if metric not in ("accuracy", "error") or y_pred.ndim < 2 or y_pred.shape[-1] < 2:
        return None
    labels = _labels(y_true, y_pred)
    if labels.size == 0:
        return None
    majority = float(np.max(np.unique(labels, return_counts=True)[1]) / labels.size)
    return majority if metric == "accuracy" else 1.0 - majority


def _metric(metric, higher_is_better):
    if metric == "accuracy":
        return "accuracy", _accuracy, True if higher_is_better is None else higher_is_better
    if metric == "error":
        return "error", (lambda t, p: 1.0 - _accuracy(t, p)), False if higher_is_better is None else higher_is_better
    if callable(metric):
        name = getattr(metric, "__name__", type(metric).__name__)
        return name, (lambda t, p: float(metric(t, p))), True if higher_is_better is None else higher_is_better
    raise ValueError(f"`metric` must be 'accuracy', 'error' or a callable(y_true, y_pred) -> float, got {metric!r}.")


def _magnitude_prune(w, sparsity):
    k = int(np.floor(sparsity * w.size + 1e-6))
    if k == 0:
        return w
    threshold = np.sort(np.abs(w).ravel())[k - 1]
    return np.where(np.abs(w) > threshold, w, 0).astype(w.dtype)


def _share(w, bits):
    out = np.zeros_like(w)
    keep = w != 0
    if keep.any():
        c, a = kmeans_1d(w[keep], 2 ** bits, init="linear", split_at_zero=not keep.all())  # as cluster()
        out[keep] = c[a].astype(w.dtype)
    return out


def _is_bits(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= value <= _base.MAX_BITS


def _is_sparsity(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0


def _sweep_values(name, given, valid, meaning, cast):
    """``given`` (a list, or one value: a sweep of that one value) as a list of ``cast`` values;
    one ValueError naming the first bad entry otherwise (a 1.5 bit width is not rounded down)."""
    items = [given] if isinstance(given, (numbers.Number, np.generic)) else given
    if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
        raise ValueError(f"`{name}` must be a list of {meaning} (or one of them), got {given!r}.")
    items = list(items)
    if not items:
        raise ValueError(f"`{name}` must be a non-empty list of {meaning}, got {given!r}.")
    bad = [v for v in items if not valid(v)]
    if bad:
        raise ValueError(f"`{name}` must be a list of {meaning} (or one of them), got {given!r}: {bad[0]!r} is not "
                         f"one. Example: {name}={[2, 3, 4, 5] if name == 'bits' else list(DEFAULT_SPARSITIES[:4])}.")
    return [cast(v) for v in items]


def sensitivity(model, data, sparsities=DEFAULT_SPARSITIES, metric="accuracy", layers=None, bits=None,
                batch_size=256, higher_is_better=None, steps=None, include_frozen=False):
    """Prune (or cluster) one layer at a time by magnitude, without retraining, and measure ``metric``.

    Args:
        model: a built Keras model (not wrapped; strip it first). Its weights are restored before
            returning, also on error.
        data: ``(x, y)`` arrays or an iterable of ``(x, y)`` batches: a list, a ``tf.data.Dataset``,
            a ``keras.utils.PyDataset``, or an iterator such as a generator (read once with
            ``steps``, see there). ``x`` / ``y`` may be lists or dicts (several inputs / outputs).
        sparsities: fractions of each layer's weights to remove (each in [0, 1); one number
            sweeps that one value).
        metric: ``"accuracy"`` (default), ``"error"`` or ``callable(y_true, y_pred) -> float``
            (numpy arrays; for a model with several outputs, a list or dict of them: the built-in
            metrics score one output, so such a model needs a callable, as does a binary classifier
            with one score per sample: the built-in metrics take the class of the highest score).
        layers: None (all prunable layers) or a list of names and/or classes.
        include_frozen: sweep frozen layers (``trainable=False``) too; left out by default, as
            :func:`prune` and :func:`cluster` leave them (named in the report's ``"skipped"``).
        bits: instead of pruning, sweep weight sharing with these bit widths (integers; one
            integer sweeps that one width; k-means, linear init, zeros kept); feed the report to
            :func:`suggest_bits`. As :func:`cluster` does, a layer followed by a
            BatchNormalization is clustered with it folded in (the sweep runs on a folded copy).
        batch_size: batch size for ``(x, y)`` arrays.
        higher_is_better: override the metric's direction (callables default to True).
        steps: measure on the first ``steps`` batches only (as ``model.evaluate(steps=)``): of
            ``(x, y)`` arrays, ``steps * batch_size`` samples. An iterator (a generator, even an
            endless one) is read once: its first ``steps`` batches are kept in memory and reused
            for every measurement; without ``steps`` (and no ``len()``) it is refused, as is a
            ``tf.data.Dataset`` that repeats forever.

    Returns a dict: ``{"metric", "higher_is_better", "baseline", "mode": "sparsity"|"bits",
    "values": [...], "layers": {layer_name: [metric at each value]} (layers of one name, e.g. in
    two nested models, swept together, as ``prune(layers={name: ...})`` prunes them), "params": {layer_name:
    compressible weights (non-zeros in bits mode)}, "chance": the metric of always predicting the
    most frequent class (``"accuracy"`` / ``"error"``; None for a callable), "skipped": {layer_name:
    why it was not swept} for every other layer with weights (frozen, unsupported, not in
    ``layers``)}``. Progress (one line per layer swept) goes to the ``"dc_keras"`` logger at INFO
    level: ``logging.basicConfig(level=logging.INFO)`` shows it. Sweep a trained
    model: on one that scores no better than chance, or whose metric does not move at any swept
    value of any layer, :func:`suggest_sparsity` / :func:`suggest_bits` warn that their
    suggestions are meaningless.

    Example:
        >>> report = dc_keras.sensitivity(model, (x_val, y_val), sparsities=[0.5, 0.8, 0.9, 0.95])
        >>> targets = dc_keras.suggest_sparsity(report, max_drop=0.005)   # {"fc1": 0.95, ...}
        >>> dc_keras.plot_sensitivity(report, "sensitivity.png")
        >>> def batches():                         # a generator, endless as fit(steps_per_epoch=) takes
        ...     while True:
        ...         yield x_val[:32], y_val[:32]
        >>> report = dc_keras.sensitivity(model, batches(), steps=2)   # its first 2 batches, kept
    """
    if not isinstance(model, keras.Model):
        raise _base.not_keras3_error("sensitivity()", "a Keras model", model)
    if _base.find_wrappers(model):
        raise ValueError("sensitivity() needs a plain model: call dc_keras.strip() on the wrapped model first.")
    if not model.built:  # was "has no layer that can be pruned (nothing prunable)", which it has once built
        raise ValueError(f"sensitivity(): model {model.name!r} is not built, so it has no weights yet: sweep a trained "
                         f"model (fit() builds it), or build it first (keras.Input(...) as its first layer, or "
                         f"model.build(input_shape)) and load its trained weights.")
    name, fn, better = _metric(metric, higher_is_better)
    if bits is not None:
        if sparsities is not DEFAULT_SPARSITIES:
            raise ValueError("sensitivity() sweeps either sparsities (pruning) or bits (weight sharing), got both: "
                             "drop `sparsities=` to sweep bit widths, or `bits=` to sweep sparsities.")
        values = _sweep_values("bits", bits, _is_bits, f"integers in [1, {_base.MAX_BITS}]", int)
        mode = "bits"
    else:
        values = _sweep_values("sparsities", sparsities, _is_sparsity, "numbers in [0, 1)", float)
        mode = "sparsity"
    chosen, skipped = _base.select_layers(model, layers, what="pruned", mapping_ok=False,
                                          include_frozen=include_frozen)
    if mode == "bits" and _base.is_graph_model(model) and bn_fold.plan(model, chosen)[0]:
        # cluster() (fold_batchnorm=True) clusters a conv/dense kernel with the BatchNormalization after
        # it folded in (per-channel scales): the unfolded kernel's k-means measured something else (a
        # Conv2D's one-shot accuracy at 2 bits: 0.312 swept, 0.122 after cluster()). A folded copy is
        # swept; the caller's model is left as it is.
        model = bn_fold.fold_batchnorm(model)
        _LOG.info("dc_keras sensitivity: swept with %s folded, as cluster() clusters them",
                  ", ".join(f"{bn} into {layer}" for layer, bn in model.compression_report.folds))
        chosen, skipped = _base.select_layers(model, layers, what="pruned", mapping_ok=False,
                                              include_frozen=include_frozen)
    source = _source(data, steps, batch_size, reads=1 + len(chosen) * len(values), model=model)
    y_true, y_pred = _collect(model, source, batch_size)
    score = fn
    if isinstance(metric, str):  # scores one output: a model with several is refused here, before the sweep
        y_true, y_pred = _single_output(metric, y_true, y_pred)
        _check_class_scores(metric, y_pred)
        score = lambda t, p: fn(*_single_output(metric, t, p))  # noqa: E731
    baseline = fn(y_true, y_pred)
    report = {"metric": name, "higher_is_better": bool(better), "baseline": baseline, "mode": mode,
              "values": values, "layers": {}, "params": {},
              "chance": _chance(metric, y_true, y_pred) if isinstance(metric, str) else None,
              "skipped": {layer.name: reason for layer, reason in skipped}}
    if skipped:
        _LOG.info("dc_keras sensitivity: not swept: %s",
                  "; ".join(f"{layer.name}: {reason}" for layer, reason in skipped))
    # Layers of one name (in different nested models: two backbones' "fc") are swept together, as
    # prune(layers={"fc": ...}) / cluster(bits={"fc": ...}) compress every layer of that name: each
    # overwrote the one before in the report, whose "fc" then held the last one's sweep alone.
    groups = {}
    for layer, _ in chosen.values():
        groups.setdefault(layer.name, []).append(layer)
    start = time.monotonic()
    for done, (layer_name, group) in enumerate(groups.items()):
        targets = [t for layer in group for t in _base.compressible_weights(layer)]
        originals = [_base.to_numpy(var).copy() for _, var, _ in targets]
        results = []
        try:
            for value in values:
                for (_, var, _), w in zip(targets, originals):
                    var.assign(_share(w, value) if mode == "bits" else _magnitude_prune(w, value))
                results.append(score(*_collect(model, source, batch_size)))
        finally:
            for (_, var, _), w in zip(targets, originals):
                var.assign(w)
        report["layers"][layer_name] = results
        report["params"][layer_name] = int(sum(np.count_nonzero(w) if mode == "bits" else w.size for w in originals))
        elapsed = time.monotonic() - start
        _LOG.info("dc_keras sensitivity: layer %d/%d %r%s swept (%d %s), %.1f s elapsed, about %.0f s left", done + 1,
                  len(groups), layer_name, f" ({len(group)} layers of that name)" if len(group) > 1 else "",
                  len(values), "bit widths" if mode == "bits" else "sparsities", elapsed,
                  elapsed / (done + 1) * (len(groups) - done - 1))
    return report


def _drop(report, value):
    delta = report["baseline"] - value
    return delta if report["higher_is_better"] else -delta


def _check_suggest_args(report, mode, max_drop, budget):
    """suggest_sparsity's / suggest_bits' arguments: a report of ``mode``, then ``max_drop``, then
    ``budget``."""
    if isinstance(report, dict) and "layers" in report and report.get("mode") in ("sparsity", "bits") and \
            report.get("mode") != mode:
        other, swept = ("suggest_bits", "bits=[...]") if report["mode"] == "bits" else ("suggest_sparsity", "sparsities=[...]")
        ours = "bits=[...]" if mode == "bits" else "sparsities=[...] (the default)"
        raise ValueError(
            f"suggest_{'bits' if mode == 'bits' else 'sparsity'}() takes a report of sensitivity(..., {ours}); this "
            f"one is from sensitivity(..., {swept}) (mode {report['mode']!r}): pass it to dc_keras.{other}(report).")
    if not isinstance(report, dict) or report.get("mode") != mode or "layers" not in report:
        raise ValueError(f"Expected a report from dc_keras.sensitivity() in {mode!r} mode.")
    # numbers.Real: a numpy float32 (a value read from an array) is a number too; NaN was taken: a
    # NaN budget pruned every layer to the highest sparsity swept, a NaN max_drop none
    if isinstance(max_drop, bool) or not isinstance(max_drop, numbers.Real) or not max_drop >= 0:
        raise ValueError(f"`max_drop` must be a non-negative number (the metric drop allowed per layer, e.g. "
                         f"0.005), got {max_drop!r}.")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, numbers.Real) or not budget >= 0):
        raise ValueError(f"`budget` must be None or a non-negative number (the total metric drop, e.g. 0.01), got "
                         f"{budget!r}.")
    # "accuracy" / "error" are fractions: a drop above 1 cannot happen, so max_drop=5 or budget=5 (meant as
    # 5 %) allowed every swept value of every layer without a word
    name = report.get("metric")
    for arg, value in (("max_drop", max_drop), ("budget", budget)):
        if name in ("accuracy", "error") and value is not None and 1.0 < value < float("inf"):
            raise ValueError(f"`{arg}` is a drop of the {name}, a fraction in [0, 1], so {value!r} allows any drop: "
                             f"pass {arg}={value / 100:g} for {value:g} %.")


def _warn_if_meaningless(report, call):
    """One ``UserWarning`` when ``report`` cannot rank the layers: its baseline is no better than
    chance (always predicting the most frequent class, ``report["chance"]``), or the metric equals
    the baseline (within 1e-9) at every swept value of every layer. An untrained model's accuracy
    stayed 13.4 % at every sparsity and ``suggest_sparsity`` gave every layer the highest sparsity
    without a word. Returns the warning's text, or None."""
    baseline, name = report.get("baseline"), report.get("metric", "metric")
    results = [r for rs in report["layers"].values() for r in rs]
    if not isinstance(baseline, numbers.Real) or not results:
        return None
    chance = report.get("chance")
    better = report.get("higher_is_better", True)
    at_chance = isinstance(chance, numbers.Real) and (baseline <= chance + 1e-9 if better else baseline >= chance - 1e-9)
    flat = all(isinstance(r, numbers.Real) and abs(r - baseline) <= 1e-9 * max(1.0, abs(baseline)) for r in results)
    if not (at_chance or flat):
        return None
    bits = report["mode"] == "bits"
    why = []
    if at_chance:
        why.append(f"the model's baseline {name} {baseline:.4g} is no better than chance (always predicting the most "
                   f"frequent class gives {chance:.4g})")
    if flat:
        values = ", ".join(f"{v:g}" for v in report["values"])
        why.append(f"the {name} stays at the baseline {baseline:.4g} at every swept "
                   f"{'bit width' if bits else 'sparsity'} ({values}) of every layer")
    outcome = (f"every layer gets the {'fewest bits' if bits else 'highest sparsity'} swept" if flat else
               "the differences between the layers are noise")
    mild = "" if at_chance else (
        " If the model is trained, the sweep stopped before any layer suffers: sweep "
        + ("fewer bits (e.g. bits=[1, 2, 3])." if bits else "higher sparsities (e.g. sparsities=[0.9, 0.95, 0.98, 0.99])."))
    message = (f"{call}(): the suggestions are meaningless: {' and '.join(why)}, so {outcome}. Train the model "
               f"first, then sweep it again with dc_keras.sensitivity() on validation data.{mild}")
    warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())
    return message


def _spend(report, budget, levels, start, saving):
    """Greedy split of a total metric-drop ``budget`` over the layers: repeatedly move one layer to
    the level that saves the most weights (or index bits) per unit of added drop, while the sum
    of the one-at-a-time drops stays within ``budget``. ``levels``: swept values from least to
    most compression; ``start``: a layer's value before any step; ``saving(value)``: the fraction
    saved at ``value``."""
    size = report.get("params") or {}
    results = {layer: dict(zip(report["values"], r)) for layer, r in report["layers"].items()}
    chosen = {layer: start for layer in results}
    cost = {layer: 0.0 for layer in results}
    total = 0.0
    while True:
        best = None
        for layer, table in results.items():
            after = levels[levels.index(chosen[layer]) + 1:] if chosen[layer] in levels else levels
            for value in after:
                drop = _drop(report, table[value])
                if np.isnan(drop):  # a metric that gave NaN: never allowed (max(0.0, nan) made it free)
                    continue
                extra = max(0.0, drop) - cost[layer]
                gain = size.get(layer, 1) * (saving(value) - saving(chosen[layer]))
                if gain <= 0 or total + extra > budget + 1e-12:
                    continue
                score = gain / max(extra, 1e-9)
                if best is None or score > best[0]:
                    best = (score, layer, value, extra)
        if best is None:
            return chosen
        _, layer, value, extra = best
        chosen[layer], cost[layer], total = value, cost[layer] + extra, total + extra


def suggest_sparsity(report, max_drop=0.01, budget=None):
    """Per layer, the largest swept sparsity whose metric drop stays within ``max_drop``; or, with
    ``budget``, a split of one total metric drop over the layers that removes the most weights.

    Returns ``{layer_name: sparsity}`` (0.0 when even the smallest sparsity costs too much). The
    layers were measured one at a time, so pruning all at once costs more than each alone:
    retrain, or use a smaller ``max_drop`` / ``budget``. Sweep on validation data, never the
    test set.

    Args:
        report: a :func:`sensitivity` report in sparsity mode.
        max_drop: largest drop of the metric allowed per layer (ignored with ``budget``).
        budget: total drop allowed, summed over the layers' one-at-a-time drops; spent greedily
            where it removes the most weights per unit of drop (big, robust layers first). The
            split is made anew for each budget: a larger one can give one layer a lower sparsity
            while others get more.

    Example:
        >>> targets = dc_keras.suggest_sparsity(report, max_drop=0.005)
        >>> schedules = {n: dc_keras.schedules.PolynomialDecay(0.0, s, 0, 3000) for n, s in targets.items() if s > 0}
        >>> pruned = dc_keras.prune(model, layers=schedules)
    """
    _check_suggest_args(report, "sparsity", max_drop, budget)
    _warn_if_meaningless(report, "suggest_sparsity")
    if budget is not None:
        return _spend(report, budget, sorted(report["values"]), 0.0, lambda s: s)
    out = {}
    for layer, results in report["layers"].items():
        ok = [s for s, r in zip(report["values"], results) if _drop(report, r) <= max_drop]
        out[layer] = max(ok) if ok else 0.0
    return out


def suggest_bits(report, max_drop=0.01, budget=None):
    """Per layer, the fewest swept bits whose metric drop stays within ``max_drop`` (the largest
    swept width when none does); or, with ``budget``, a split of one total metric drop over the
    layers that saves the most index bits (layers with many kept weights go lowest first).

    Sweep with ``sensitivity(model, (x_val, y_val), bits=[...])`` on a pruned, stripped model and
    validation data (never the test set); feed the result to ``dc_keras.cluster(model, bits=...)``.
    Fine-tuning the centroids recovers part of the one-shot drop, so the sweep is conservative.

    Args:
        report: a :func:`sensitivity` report in bits mode.
        max_drop: largest drop of the metric allowed per layer (ignored with ``budget``).
        budget: total drop allowed, summed over the layers' one-at-a-time drops.

    Example:
        >>> sparse = dc_keras.strip(pruned)                        # after the pruning fit
        >>> report = dc_keras.sensitivity(sparse, (x_val, y_val), bits=[2, 3, 4, 5, 6], metric="error")
        >>> bits = dc_keras.suggest_bits(report, budget=0.004)    # e.g. {"fc1": 3, "fc2": 4, "fc3": 5}
        >>> shared = dc_keras.cluster(sparse, bits=bits)
    """
    _check_suggest_args(report, "bits", max_drop, budget)
    _warn_if_meaningless(report, "suggest_bits")
    if budget is not None:
        widest = max(report["values"])
        return _spend(report, budget, sorted(report["values"], reverse=True), widest, lambda b: 1.0 - b / widest)
    out = {}
    for layer, results in report["layers"].items():
        ok = [b for b, r in zip(report["values"], results) if _drop(report, r) <= max_drop]
        out[layer] = min(ok) if ok else max(report["values"])
    return out


def plot_sensitivity(report, path):
    """Draw one curve per layer (metric vs sparsity or bits) with the baseline; writes ``path``
    atomically (format from its extension, e.g. .png, .svg, .pdf)."""
    if not isinstance(report, dict) or "layers" not in report:
        raise ValueError("Expected a report from dc_keras.sensitivity().")
    # a Figure of its own, not pyplot's: matplotlib.use("Agg") here switched the caller's backend
    # (a notebook's inline plots stopped showing)
    from matplotlib.figure import Figure

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if not ext:
        raise ValueError(f"`path` needs an image extension such as .png, got {path!r}.")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for layer, results in report["layers"].items():
        ax.plot(report["values"], results, marker="o", label=layer)
    ax.axhline(report["baseline"], color="gray", linestyle="--", label="baseline")
    ax.set_xlabel("sparsity (fraction pruned)" if report["mode"] == "sparsity" else "bits per weight")
    ax.set_ylabel(report["metric"])
    ax.set_title("Per-layer sensitivity (one layer at a time, no retraining)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    write_figure(fig, path, ext)
    return path


__all__ = ["sensitivity", "suggest_sparsity", "suggest_bits", "plot_sensitivity"]
