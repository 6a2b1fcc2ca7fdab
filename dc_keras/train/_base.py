"""Shared machinery of the pruning and clustering wrappers.

- :func:`compressible_weights`: which variables of a layer are pruned / clustered.
- :class:`CompressionWrapper`: a ``keras.layers.Wrapper`` whose forward pass substitutes computed
  values (masked or centroid-gathered kernels) for the inner layer's variables, and which
  :func:`dc_keras.strip` turns back into the plain inner layer.
- :func:`rewrite_model`: rebuild a Sequential/Functional model with some layers wrapped, copying
  every weight (the input model is never modified).
"""
import keras
from keras import ops
from keras.src.backend.common import stateless_scope as _stateless

# (class, names of the compressed weights, axis of the input dimension), most specific first.
_SUPPORTED = (
    (keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel"), -2),
    (keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel"), -2),
    (keras.layers.DepthwiseConv1D, ("kernel",), -2),
    (keras.layers.DepthwiseConv2D, ("kernel",), -2),
    (keras.layers.Conv1DTranspose, ("kernel",), -1),
    (keras.layers.Conv2DTranspose, ("kernel",), -1),
    (keras.layers.Conv3DTranspose, ("kernel",), -1),
    (keras.layers.Conv1D, ("kernel",), -2),
    (keras.layers.Conv2D, ("kernel",), -2),
    (keras.layers.Conv3D, ("kernel",), -2),
    (keras.layers.Dense, ("kernel",), -2),
    (keras.layers.Embedding, ("embeddings",), -1),
)

_CONV_TYPES = tuple(cls for cls, _, _ in _SUPPORTED[:10])


def is_conv(layer):
    """True for the convolution layer types (default 8 bits when clustering, like the paper)."""
    return isinstance(layer, _CONV_TYPES)


def _declared(layer):
    """Weights a custom layer declares prunable: ``get_prunable_weights()`` (tfmot's API) or a
    ``prunable_weights`` attribute/method listing variables or variable names."""
    if hasattr(layer, "get_prunable_weights"):
        declared = layer.get_prunable_weights()
    elif hasattr(layer, "prunable_weights"):
        declared = layer.prunable_weights
        if callable(declared):
            declared = declared()
    else:
        return None
    return list(declared or [])


def is_supported(layer):
    """Can this layer be pruned or clustered (built-in type, or a custom layer that opts in)?"""
    if isinstance(layer, keras.Model):
        return False
    if hasattr(layer, "get_prunable_weights") or hasattr(layer, "prunable_weights"):
        return True
    return any(isinstance(layer, cls) for cls, _, _ in _SUPPORTED)


def _own_variable(layer, name):
    for var in layer.weights:
        if var.name == name:
            return var
    raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no weight named {name!r}.")


def compressible_weights(layer):
    """List of ``(name, variable, input_axis)`` to prune/cluster in a built ``layer``."""
    declared = _declared(layer)
    if declared is not None:
        result = []
        for item in declared:
            var = _own_variable(layer, item) if isinstance(item, str) else item
            if not isinstance(var, keras.Variable):
                raise ValueError(
                    f"Layer {layer.name!r} declared a prunable weight that is not a keras.Variable: {item!r}."
                )
            axis = 0 if len(var.shape) < 2 else -2
            result.append((var.name, var, axis))
        if not result:
            raise ValueError(f"Layer {layer.name!r} declares no prunable weights.")
        return result
    for cls, names, axis in _SUPPORTED:
        if isinstance(layer, cls):
            return [(n, _own_variable(layer, n), axis) for n in names]
    raise ValueError(
        f"Layer {layer.name!r} of type {type(layer).__name__} has no prunable weights; supported: "
        "Dense, Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose, Embedding, "
        "or a custom layer with `get_prunable_weights()` / `prunable_weights`."
    )


class substitute_variables:
    """Context manager: reads of the given variables return the given tensors instead.

    Built on ``keras.StatelessScope``; an enclosing stateless scope (e.g. a stateless training
    step) keeps its own substitutions and collected losses.
    """

    def __init__(self, pairs):
        self.pairs = pairs

    def __enter__(self):
        parent = _stateless.get_stateless_scope()
        self.scope = keras.StatelessScope(
            state_mapping=self.pairs,
            collect_losses=bool(parent is not None and parent.collect_losses),
            initialize_variables=False,
        )
        if parent is not None:
            merged = dict(parent.state_mapping)
            merged.update(self.scope.state_mapping)
            self.scope.state_mapping = merged
            self.scope.losses = parent.losses
        self.parent = parent
        return self.scope.__enter__()

    def __exit__(self, *exc):
        self.scope.__exit__(*exc)
        if self.parent is not None:
            # Forward state updates made inside (e.g. by the inner layer) to the enclosing scope.
            own = {id(v) for v, _ in self.pairs}
            for key, value in self.scope.state_mapping.items():
                if key not in own:
                    self.parent.state_mapping[key] = value
        return False


class CompressionWrapper(keras.layers.Wrapper):
    """Base of :class:`PruneWrapper` and :class:`ClusterWrapper`.

    Subclasses implement :meth:`compressed_values` (the tensors the inner layer sees in place of
    its compressed variables) and may restore variable attributes in :meth:`_release`.
    """

    def __init__(self, layer, **kwargs):
        if isinstance(layer, CompressionWrapper):
            raise ValueError(
                f"Layer {layer.name!r} is already wrapped by {type(layer).__name__}; "
                "call dc_keras.strip() before pruning or clustering it again."
            )
        if isinstance(layer, keras.layers.Layer) and not is_supported(layer):
            raise ValueError(
                f"Layer {layer.name!r} of type {type(layer).__name__} has no prunable weights; "
                "custom layers opt in with `get_prunable_weights()` or `prunable_weights`."
            )
        kwargs.setdefault("name", getattr(layer, "name", None))
        super().__init__(layer, **kwargs)
        self._untracked("_targets", [])

    # -- subclass interface -------------------------------------------------------------------
    def compressed_values(self, training):
        """Return ``[(variable, tensor), ...]`` used by the forward pass."""
        raise NotImplementedError

    def _release(self):
        """Undo changes made to the inner layer's variables (constraints, trainable flags)."""

    # -- Keras layer API ----------------------------------------------------------------------
    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
            self.layer.built = True
        self._untracked("_targets", compressible_weights(self.layer))

    def _untracked(self, name, value):
        """Set an attribute without Keras tracking (it holds the inner layer's variables)."""
        object.__setattr__(self, name, value)

    def call(self, inputs, training=None, **kwargs):
        pairs = self.compressed_values(bool(training) if isinstance(training, bool) else False)
        with substitute_variables(pairs):
            if training is not None:
                kwargs["training"] = training
            return self.layer(inputs, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # -- strip ---------------------------------------------------------------------------------
    def stripped_weights(self):
        """Numpy weights of the inner layer (``layer.get_weights()`` order) with the compressed
        variables replaced by their final (masked / clustered) values."""
        values = {id(var): ops.convert_to_numpy(value) for var, value in self.compressed_values(False)}
        return [values[id(v)] if id(v) in values else ops.convert_to_numpy(v) for v in self.layer.weights]

    def strip_layer(self):
        """Write the final values into the inner layer and return it (the wrapper is spent)."""
        weights = self.stripped_weights()
        self._release()
        self.layer.set_weights(weights)
        return self.layer


def flatten_layers(model):
    """All layers of ``model`` (recursively; wrappers and their inner layers included)."""
    if isinstance(model, keras.Model):
        return list(model._flatten_layers(include_self=False, recursive=True))
    return list(model._flatten_layers(include_self=True, recursive=True))


def find_wrappers(model, cls=CompressionWrapper):
    return [layer for layer in flatten_layers(model) if isinstance(layer, cls)]


def _is_graph_model(model):
    return isinstance(model, keras.Sequential) or isinstance(model, keras.src.models.functional.Functional)


def select_layers(model, layers, what="pruned", mapping_ok=True):
    """Resolve a ``layers=`` argument into ``{id(layer): (layer, value)}`` over the leaf layers.

    ``layers`` is None (every supported layer, value None), a sequence of layer names and/or
    classes (value None), or a dict name-or-class -> value.
    """
    leaves = [l for l in flatten_layers(model) if not isinstance(l, keras.Model)]
    by_name = {}
    for layer in leaves:
        by_name.setdefault(layer.name, []).append(layer)
    if layers is None:
        chosen = {id(l): (l, None) for l in leaves if is_supported(l)}
        if not chosen:
            raise ValueError(f"Model {model.name!r} has no layer that can be {what} (nothing prunable).")
        return chosen
    if isinstance(layers, dict):
        if not mapping_ok:
            raise ValueError("`layers` must be a list of layer names or classes here, not a dict.")
        items = list(layers.items())
    elif isinstance(layers, (str, type)):
        items = [(layers, None)]
    else:
        try:
            items = [(key, None) for key in layers]
        except TypeError:
            raise ValueError(f"`layers` must be None, a list of names/classes or a dict; got {layers!r}.")
    if not items:
        raise ValueError("`layers` is empty: nothing to be " + what + ".")
    chosen = {}
    unknown = []
    for key, value in items:
        if isinstance(key, str):
            if key not in by_name:
                unknown.append(key)
                continue
            for layer in by_name[key]:
                if not is_supported(layer):
                    raise ValueError(
                        f"Layer {key!r} ({type(layer).__name__}) has no weights that can be {what}."
                    )
                chosen[id(layer)] = (layer, value)
        elif isinstance(key, type) and issubclass(key, keras.layers.Layer):
            for layer in leaves:
                if isinstance(layer, key) and is_supported(layer) and id(layer) not in chosen:
                    chosen[id(layer)] = (layer, value)
        else:
            raise ValueError(f"`layers` entries must be layer names or Layer classes, got {key!r}.")
    if unknown:
        raise ValueError(
            f"Unknown layer name(s) {unknown} in `layers`; model {model.name!r} has {sorted(by_name)}."
        )
    if not chosen:
        raise ValueError(f"No layer selected by `layers`={layers!r} can be {what} (nothing prunable).")
    return chosen


def rewrite_model(model, wrap, what):
    """Clone a Sequential/Functional ``model``; ``wrap(layer_clone, original)`` returns the layer to
    put in its place (a wrapper, or the clone itself). Weights of every layer are copied.

    Returns ``(new_model, [(original, replacement), ...])``.
    """
    if not _is_graph_model(model):
        raise ValueError(
            f"{what}() rebuilds Sequential and Functional models; {type(model).__name__} is a subclassed "
            f"model: apply dc_keras.{what}() to its layers inside the model instead."
        )
    if not model.built:
        raise ValueError(f"Model {model.name!r} is not built; build it (call it once) before {what}().")
    pairs = []

    def clone_function(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        replacement = wrap(fresh, layer)
        pairs.append((layer, replacement))
        return replacement

    new_model = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    for original, replacement in pairs:
        if isinstance(original, CompressionWrapper):
            continue  # handled by the caller (strip)
        target = replacement.layer if isinstance(replacement, CompressionWrapper) else replacement
        target.set_weights(original.get_weights())
    return new_model, pairs

