"""Fold BatchNormalization into the preceding Conv/ConvTranspose/Depthwise/Separable/Dense before clustering.

Why: the TFLite converter folds an inference-mode BatchNormalization into the kernel in front of
it (``W * gamma / sqrt(var + eps)`` per output channel), so a kernel clustered to 32 shared values
in Keras reaches the ``.tflite`` with up to one distinct value per (value, channel) pair and the
packer cannot share it. Folding first and clustering the folded kernel leaves the converter
nothing to fold: the exported kernel holds the ``2**bits`` centroids. Folding is exact in
inference (per-channel scale and shift); pruned zeros stay zeros. See docs/models.md "BatchNorm".

A fold needs: the layer's only output consumer is the BatchNormalization, no activation in
between, channels-last data, the BatchNormalization normalises the last axis and has one call.
"""
import keras
import numpy as np

from dc_keras.train import _base

# A transposed conv's kernel is (..., filters, in_channels): its output channels are axis -2.
_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
_FOLD_INTO = (
    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense,
) + _TRANSPOSED


def _refs(obj, found):
    """Every ``keras_history`` ``(name, node, tensor)`` inside a serialized node."""
    if isinstance(obj, dict):
        if "keras_history" in obj:
            found.append(tuple(obj["keras_history"]))
            return found
        for value in obj.values():
            _refs(value, found)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _refs(value, found)
    return found


def _output_names(obj, found):
    """Layer names in a Functional config's ``output_layers`` (nested ``[name, node, tensor]``)."""
    if isinstance(obj, (list, tuple)):
        if len(obj) == 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            found.add(obj[0])
        else:
            for value in obj:
                _output_names(value, found)
    elif isinstance(obj, dict):
        for value in obj.values():
            _output_names(value, found)
    return found


def _graph(model):
    """One read of a Functional model's config (``get_config`` serialises every layer):
    ``(nodes, consumers, outputs, by_name)``: each layer's inbound nodes, the readers of each
    layer's output (``[(reader, keras_history)]``), the output layers' names, the layers by name.
    None for a Sequential (a plain chain)."""
    if isinstance(model, keras.Sequential):
        return None
    config = model.get_config()
    nodes = {entry["name"]: entry.get("inbound_nodes", []) for entry in config["layers"]}
    consumers = {}
    for name, inbound in nodes.items():
        for node in inbound:
            for ref in set(_refs(node, [])):
                consumers.setdefault(ref[0], []).append((name, ref))
    outputs = _output_names(config.get("output_layers", []), set())
    return nodes, consumers, outputs, {layer.name: layer for layer in model.layers}


def _edges(model, graph):
    """``[(producer, consumer)]`` pairs where ``consumer``'s only input is ``producer``'s only
    output and nothing else reads it (also not a model output). ``graph``: :func:`_graph`."""
    if graph is None:
        layers = model.layers
        return list(zip(layers[:-1], layers[1:]))
    nodes, consumers, outputs, by_name = graph
    pairs = []
    for name, uses in consumers.items():
        if len(nodes.get(name, [])) != 1 or name in outputs or len(uses) != 1 or name not in by_name:
            continue
        consumer, ref = uses[0]
        if len(nodes.get(consumer, [])) == 1 and len(_refs(nodes[consumer][0], [])) == 1 and consumer in by_name:
            pairs.append((by_name[name], by_name[consumer]))
    return pairs


def _blocked(graph):
    """``[(producer, batchnorm, reason)]``: a BatchNormalization whose one input comes from a layer
    that :func:`_edges` cannot pair with it (the layer is shared, or its output is read elsewhere).
    ``graph``: :func:`_graph` (None, a Sequential: none)."""
    if graph is None:
        return []
    nodes, consumers, outputs, by_name = graph
    blocked = []
    for name, layer in by_name.items():
        if not isinstance(layer, keras.layers.BatchNormalization) or len(nodes.get(name, [])) != 1:
            continue
        refs = _refs(nodes[name][0], [])
        producer = refs[0][0] if len(refs) == 1 else None
        if producer not in by_name:
            continue
        readers = [reader for reader, _ in consumers.get(producer, [])]
        if len(nodes.get(producer, [])) != 1:
            reason = f"{producer!r} is called {len(nodes[producer])} times (a shared layer)"
        elif producer in outputs:
            reason = f"{producer!r}'s output is also a model output"
        elif len(readers) != 1:
            others = sorted(set(readers) - {name})
            reason = f"{producer!r}'s output also feeds {', '.join(repr(o) for o in others)}"
        else:
            continue
        blocked.append((by_name[producer], layer, reason))
    return blocked


def _bn_last_axis(bn):
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    if axis is None:
        return False
    if axis < 0:
        return axis == -1
    build = bn.get_build_config() or {}
    shape = build.get("input_shape")
    return shape is not None and axis == len(shape) - 1


def foldable(layer, bn):
    """None if ``bn`` can be folded into ``layer`` (``layer`` -> ``bn`` directly), else why not."""
    if not isinstance(layer, _FOLD_INTO):
        return f"{type(layer).__name__} is not a Conv/ConvTranspose/Depthwise/Separable/Dense layer"
    if layer.get_config().get("activation", "linear") != "linear":
        return f"{layer.name!r} has an activation before the BatchNormalization"
    if layer.get_config().get("data_format", "channels_last") != "channels_last":
        return f"{layer.name!r} is channels_first"
    if not _bn_last_axis(bn):
        return "the BatchNormalization does not normalise the last (channel) axis"
    return None


def plan(model, chosen):
    """``(folds, notes)``: ``folds`` maps ``id(layer)`` -> its BatchNormalization and ``id(bn)`` ->
    the layer, for chosen layers of ``model`` and its nested graph models; ``notes`` lists
    BatchNormalizations next to a chosen layer that are not folded, with the reason."""
    folds, notes = {}, []

    def walk(m):
        try:
            graph = _graph(m)
            edges, blocked = _edges(m, graph), _blocked(graph)
        except Exception as e:  # a custom layer without get_config(): its graph cannot be read
            notes.append(f"BatchNormalization folding skipped in {m.name!r}: its config cannot be read ({e})")
            edges, blocked = [], []
        for producer, consumer in edges:
            if isinstance(consumer, keras.layers.BatchNormalization) and id(producer) in chosen \
                    and not isinstance(producer, keras.Model):
                reason = foldable(producer, consumer)
                if reason is None:
                    folds[id(producer)] = consumer
                    folds[id(consumer)] = producer
                else:
                    notes.append(f"BatchNormalization {consumer.name!r} after {producer.name!r} not folded: {reason}")
        for producer, bn, reason in blocked:
            if id(producer) in chosen and not isinstance(producer, keras.Model):
                notes.append(f"BatchNormalization {bn.name!r} after {producer.name!r} not folded: {reason}")
        for producer, consumer in edges:
            if isinstance(producer, keras.layers.BatchNormalization) and id(producer) not in folds \
                    and id(consumer) in chosen and _base.is_supported(consumer):
                why = "dc_keras folds a BatchNormalization only into the layer before it"
                if getattr(consumer, "padding", "valid") != "valid":  # a convolution padding with zeros
                    why += (f"; into {consumer.name!r} it would not be exact, as its zero padding is not "
                            "normalized")
                notes.append(
                    f"BatchNormalization {producer.name!r} precedes {consumer.name!r} and is not folded "
                    f"({why}); the TFLite converter may fold its scale into that kernel, which breaks the "
                    "weight sharing")
        for layer in m.layers:
            if isinstance(layer, keras.Model) and _base.is_graph_model(layer):
                walk(layer)

    walk(model)
    return folds, notes


def fold_blocked(model, layer_name, bn_name):
    """Why ``cluster`` does not fold BatchNormalization ``bn_name`` into layer ``layer_name`` of
    ``model`` (or of a graph model nested in it), though it reads that layer's output: the layer is
    shared, or its output is also read elsewhere or a model output; None when nothing blocks it
    (``to_tflite``'s ClusterSpreadWarning gives the fix that fits the cause).

    Example:
        >>> fold_blocked(model, "fc1", "bn") is None  # the MLP has no BatchNormalization
        True
    """
    for m in [model, *_base._nested_graph_models(model)]:
        try:
            blocked = _blocked(_graph(m))
        except Exception:  # noqa: BLE001  a config that cannot be read: no reason known
            blocked = []
        for producer, bn, reason in blocked:
            if producer.name == layer_name and bn.name == bn_name:
                return reason
    return None


def _scale_shift(bn):
    mean = np.asarray(_base.to_numpy(bn.moving_mean), np.float64)
    var = np.asarray(_base.to_numpy(bn.moving_variance), np.float64)
    gamma = np.asarray(_base.to_numpy(bn.gamma), np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(_base.to_numpy(bn.beta), np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def folded_weights(layer, bn):
    """``{weight_name: value}`` of ``layer`` with ``bn`` folded in (kernel scaled per output
    channel, bias = old_bias * scale + shift)."""
    scale, shift = _scale_shift(bn)
    values = {w.name: np.asarray(_base.to_numpy(w), np.float64) for w in layer.weights}
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        kernel = values["kernel"]
        values["kernel"] = kernel * scale.reshape(kernel.shape[-2:])
    elif isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        values["pointwise_kernel"] = values["pointwise_kernel"] * scale
    elif isinstance(layer, _TRANSPOSED):
        values["kernel"] = values["kernel"] * scale[:, None]
    else:
        values["kernel"] = values["kernel"] * scale
    bias = values.get("bias", np.zeros_like(scale))
    values["bias"] = bias * scale + shift
    return values


def fold_clone(layer, bn, rebuilder):
    """A copy of ``layer`` with ``use_bias=True`` holding the folded weights."""
    values = folded_weights(layer, bn)

    def weights_of(fresh):
        return [values[w.name].astype(w.dtype) for w in fresh.weights]

    return rebuilder.clone(layer, weights=weights_of, use_bias=True)


def fold_batchnorm(model):
    """A copy of ``model`` with every foldable BatchNormalization folded into the layer before it
    (and replaced by ``keras.layers.Identity``): the same inference outputs, nothing left for the
    TFLite converter to fold. :func:`dc_keras.cluster` does this itself for the layers it
    clusters (``fold_batchnorm=True``); this function is for inspection and tests.

    The result has ``compression_report.folds`` / ``.notes`` listing folds and what was not folded.

    Example:
        >>> folded = dc_keras.train.fold_batchnorm(model)
        >>> np.allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
        True
    """
    from dc_keras.train import report as _report

    _base.check_buildable(model, "fold_batchnorm")
    everything = {id(layer): (layer, None) for layer, _ in _base.graph_layers(model)}
    folds, notes = plan(model, everything)
    report = _report.CoverageReport("fold_batchnorm", _base.params(model.weights))
    report.notes.extend(notes)

    def replace(original, rebuilder):
        if id(original) in folds and isinstance(original, keras.layers.BatchNormalization):
            return keras.layers.Identity(name=original.name)
        if id(original) in folds:
            report.folds.append((original.name, folds[id(original)].name))
            return fold_clone(original, folds[id(original)], rebuilder)
        return rebuilder.clone(original)

    new_model, _ = _base.rewrite_model(model, replace, "fold_batchnorm")
    return _report.attach(new_model, report)
