"""``strip``: remove pruning/clustering wrappers, keeping the compressed weights."""
import warnings

import keras

from dc_keras.train import _base
from dc_keras.train import schedules as _schedules
from dc_keras.train.pruning import PruneWrapper


#: compute dtypes of mixed-precision (and half-precision) policies, which TFLite's converter cannot lower
_HALF_POLICIES = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def strip(model_or_layer, *, dtype=None):
    """Return plain Keras layers whose kernels hold the pruned and/or clustered values.

    - Sequential/Functional model: a new model (same layer names; compiled like the input, with
      a fresh optimizer of the same config, if the input was compiled) where every
      :class:`~dc_keras.train.PruneWrapper` / :class:`~dc_keras.train.ClusterWrapper` is replaced by
      its inner layer holding ``weight * mask`` or the centroid values. The input is not modified.
    - A subclassed model: stripped **in place** (Keras cannot rebuild it): every attribute holding
      a wrapper (directly or in a list) is replaced by the plain inner layer; the model is returned.
    - A wrapper: its inner layer with the final weights written in (the wrapper is spent).
    - Any other layer: returned unchanged.

    ``dtype="float32"`` (Sequential/Functional models): every layer of the copy computes in float32,
    also the layers a mixed-precision policy (``"mixed_float16"``, ``"mixed_bfloat16"``) or a
    float16 / bfloat16 one made compute in half precision, including the layers held inside others
    (a Bidirectional's RNNs, an RNN's cell); the weights are the same values. TFLite's converter
    cannot lower half-precision compute: this is the copy to export from a model trained under
    mixed precision. A ``Lambda`` layer is kept as it is (its config holds code that Keras does not
    deserialize): build it with ``dtype="float32"``, or use ``keras.ops`` on the model's tensors.

    Example:
        >>> plain = dc_keras.strip(pruned_model)
        >>> plain.save("pruned.keras")  # loads without dc_keras
        >>> f32 = dc_keras.strip(model, dtype="float32")  # e.g. a model trained under "mixed_float16"
        >>> tflite = dc_keras.export.to_tflite(f32)
    """
    if dtype is not None:
        _check_dtype(dtype, model_or_layer)
    if isinstance(model_or_layer, keras.layers.Layer):
        _warn_unfinished(_base.find_wrappers(model_or_layer, PruneWrapper))
    if isinstance(model_or_layer, _base.CompressionWrapper):
        return model_or_layer.strip_layer()
    if not isinstance(model_or_layer, keras.layers.Layer):
        raise _base.not_keras3_error("strip()", "a Keras model or layer", model_or_layer)
    if not isinstance(model_or_layer, keras.Model):
        return model_or_layer
    model = model_or_layer
    if not _base.is_graph_model(model):
        return _strip_in_place(model)

    def replace(original, rebuilder):
        layer, weights = original, None
        if isinstance(original, _base.CompressionWrapper):
            layer, weights = original.layer, original.stripped_weights()
        changes = _float32_changes(layer) if dtype is not None else {}
        return rebuilder.clone(layer, weights=weights, config_dict=changes)

    new_model, _ = _base.rewrite_model(model, replace, "strip")
    return new_model


# How to make a float32 copy of a model strip(dtype="float32") cannot rebuild (a subclassed one); said
# by strip and by to_tflite's half-precision error.
FLOAT32_COPY_BY_HAND = ("build the model again under keras.mixed_precision.set_global_policy('float32') (or with "
                        "dtype='float32' in its layers), call it once on a batch, copy the weights with "
                        "set_weights(model.get_weights())")


def _check_dtype(dtype, model_or_layer):
    """``strip(dtype=...)``: "float32" only, and only where the model is rebuilt (a graph model)."""
    name = getattr(dtype, "name", dtype)  # a keras.DTypePolicy("float32") too
    if name != "float32":
        raise ValueError(f"strip: dtype={dtype!r} is not supported: dtype='float32' gives a copy computing in "
                         "float32 (to export a model trained under mixed precision); leave dtype out to keep each "
                         "layer's dtype policy.")
    if not (isinstance(model_or_layer, keras.Model) and _base.is_graph_model(model_or_layer)):
        raise ValueError(
            f"strip: dtype='float32' rebuilds a Sequential or Functional model from its config, which a "
            f"{type(model_or_layer).__name__} cannot be (a subclassed model or a layer is stripped in place). Strip "
            f"it without dtype, then make the float32 copy yourself: {FLOAT32_COPY_BY_HAND}.")


def _float32_changes(layer):
    """The entries of ``layer``'s config to replace so that it, and each layer its config holds (a
    Bidirectional's RNNs, an RNN's cell, a TimeDistributed's layer), computes in float32: each
    half-precision dtype policy replaced by float32's. ``{}`` when there is none (a Lambda layer is
    left as it is: its config may hold code that Keras does not deserialize)."""
    if type(layer) is keras.layers.Lambda:
        return {}
    float32 = keras.dtype_policies.serialize(keras.DTypePolicy("float32"))

    def walk(value):
        if isinstance(value, dict):
            if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and \
                    (value.get("config") or {}).get("name") in _HALF_POLICIES:
                return float32
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(walk(v) for v in value)
        return value

    def is_half(value):
        return isinstance(value, str) and value in _HALF_POLICIES[:2]  # a policy given by its name

    try:
        config = layer.get_config()
    except Exception:  # noqa: BLE001  Rebuilder.clone names the layer and the cause
        return {}
    changes = {}
    for key, value in config.items():
        new = float32 if key == "dtype" and is_half(value) else walk(value)
        if new != value:
            changes[key] = new
    return changes


def _some_names(names, total, shown=6):
    """``names`` for a warning: all of them up to ``shown`` + 1, else the first ``shown`` and how
    many more (ResNet50's 54 pruned layers made a warning of 2,000 characters); ``(all N pruned
    layers)`` when they are every pruned layer of the model.

    Example:
        >>> _some_names([f"conv{i}" for i in range(9)], 9, shown=2)
        "['conv0', 'conv1', ... and 7 more] (all 9 pruned layers)"
    """
    if len(names) <= shown + 1:
        return repr(names)
    every = f" (all {total} pruned layers)" if len(names) == total else ""
    return repr(names[:shown])[:-1] + f", ... and {len(names) - shown} more]{every}"


def _warn_unfinished(wrappers):
    """One warning naming the pruned layers whose masks hold less than their schedule's target
    (e.g. ``end_step`` beyond the steps trained): stripping them would otherwise silently give a
    model pruned less, or not at all."""
    groups = {}
    for wrapper in wrappers:
        short = wrapper._short_of_target()
        if short is not None:
            entry = groups.setdefault(repr(wrapper.schedule), [wrapper.schedule, short, []])
            entry[1] = min(entry[1], short, key=lambda s: s[0])
            entry[2].append(wrapper.name)
    if not groups:
        return
    parts = []
    for text, (schedule, (held, target, steps), names) in groups.items():
        names = _some_names(names, len(wrappers))
        if target is None:
            parts.append(f"{names} never pruned ({text} starts at begin_step={schedule.begin_step}; "
                         f"{steps} training steps done)")
        else:
            parts.append(f"{names} hold sparsity {held:.3g}, below the target {target:.3g} of {text} "
                         f"after {steps} training steps")
    warnings.warn(
        "strip: pruned layer(s) " + "; ".join(parts) + ". The schedule had not finished: train on (more "
        "epochs, or another fit() with dc_keras.PruningCallback(), UpdatePruningStep() in dc_keras.compat.tfmot) "
        "or set end_step to the steps you train "
        "(steps_per_epoch * epochs) before strip(); the stripped model keeps the masks as they are now.",
        UserWarning, stacklevel=_schedules._user_stacklevel())  # the user's line, whichever entry point


def _strip_in_place(model):
    replaced = {}

    def plain_of(wrapper):
        if id(wrapper) not in replaced:
            replaced[id(wrapper)] = wrapper.strip_layer()
        return replaced[id(wrapper)]

    parents = [model] + [l for l in _base.flatten_layers(model) if not isinstance(l, _base.CompressionWrapper)]
    for parent in parents:
        for attr, value in _attributes(parent):
            if isinstance(value, _base.CompressionWrapper):
                _set_attribute(parent, attr, plain_of(value))
            elif isinstance(value, list) and attr != "_layers":
                for i, item in enumerate(value):
                    if isinstance(item, _base.CompressionWrapper):
                        list.__setitem__(value, i, plain_of(item))
        store = getattr(parent, "_layers", None)
        if isinstance(store, list):
            for i, item in enumerate(store):
                if isinstance(item, _base.CompressionWrapper):
                    list.__setitem__(store, i, plain_of(item))
    left = _base.find_wrappers(model) + [value for parent in parents for _, value in _attributes(parent)
                                         if isinstance(value, _base.CompressionWrapper)]
    if left:
        raise ValueError(
            f"strip() could not find the attribute holding wrapper {left[0].name!r} in {type(model).__name__}; "
            "call dc_keras.strip(layer) on it and rebuild the model."
        )
    for fn in ("train_function", "test_function", "predict_function"):
        if getattr(model, fn, None) is not None:
            setattr(model, fn, None)
    return model


def _attributes(layer):
    """``(name, value)`` of the layer's attributes; on the torch backend a layer is a
    ``torch.nn.Module``, which holds the layers assigned to it as submodules, outside ``vars()``."""
    held = list(vars(layer).items())
    if keras.backend.backend() == "torch":
        held += list(layer.named_children())
    return held


def _set_attribute(layer, name, value):
    """Set without Keras tracking (the inner layer's variables are tracked already), as a submodule
    on torch."""
    if keras.backend.backend() == "torch" and name not in vars(layer):
        import torch

        torch.nn.Module.__setattr__(layer, name, value)
    else:
        object.__setattr__(layer, name, value)


__all__ = ["strip"]
