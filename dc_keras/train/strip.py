"""``strip``: remove pruning/clustering wrappers, keeping the compressed weights."""
import keras

from dc_keras.train import _base


def strip(model_or_layer):
    """Return plain Keras layers whose kernels hold the pruned and/or clustered values.

    - Sequential/Functional model: a new model (same layer names, not compiled) where every
      :class:`~dc_keras.train.PruneWrapper` / :class:`~dc_keras.train.ClusterWrapper` is replaced by
      its inner layer holding ``weight * mask`` or the centroid values. The input is not modified.
    - A subclassed model: stripped **in place** (Keras cannot rebuild it): every attribute holding
      a wrapper (directly or in a list) is replaced by the plain inner layer; the model is returned.
    - A wrapper: its inner layer with the final weights written in (the wrapper is spent).
    - Any other layer: returned unchanged.

    Example:
        >>> plain = dc_keras.strip(pruned_model)
        >>> plain.save("pruned.keras")  # loads without dc_keras
    """
    if isinstance(model_or_layer, _base.CompressionWrapper):
        return model_or_layer.strip_layer()
    if not isinstance(model_or_layer, keras.layers.Layer):
        raise ValueError(f"strip() takes a Keras model or layer, got {type(model_or_layer).__name__}.")
    if not isinstance(model_or_layer, keras.Model):
        return model_or_layer
    model = model_or_layer
    if not _base.is_graph_model(model):
        return _strip_in_place(model)

    def replace(original, rebuilder):
        if isinstance(original, _base.CompressionWrapper):
            return rebuilder.clone(original.layer, weights=original.stripped_weights())
        return rebuilder.clone(original)

    new_model, _ = _base.rewrite_model(model, replace, "strip")
    return new_model


def _strip_in_place(model):
    replaced = {}

    def plain_of(wrapper):
        if id(wrapper) not in replaced:
            replaced[id(wrapper)] = wrapper.strip_layer()
        return replaced[id(wrapper)]

    parents = [model] + [l for l in _base.flatten_layers(model) if not isinstance(l, _base.CompressionWrapper)]
    for parent in parents:
        for attr, value in list(vars(parent).items()):
            if isinstance(value, _base.CompressionWrapper):
                object.__setattr__(parent, attr, plain_of(value))
            elif isinstance(value, list) and attr != "_layers":
                for i, item in enumerate(value):
                    if isinstance(item, _base.CompressionWrapper):
                        list.__setitem__(value, i, plain_of(item))
        store = getattr(parent, "_layers", None)
        if isinstance(store, list):
            for i, item in enumerate(store):
                if isinstance(item, _base.CompressionWrapper):
                    list.__setitem__(store, i, plain_of(item))
    left = _base.find_wrappers(model)
    if left:
        raise ValueError(
            f"strip() could not find the attribute holding wrapper {left[0].name!r} in {type(model).__name__}; "
            "call dc_keras.strip(layer) on it and rebuild the model."
        )
    for fn in ("train_function", "test_function", "predict_function"):
        if getattr(model, fn, None) is not None:
            setattr(model, fn, None)
    return model


__all__ = ["strip"]
