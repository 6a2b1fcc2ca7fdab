"""Shared machinery of the pruning and clustering wrappers.

- :func:`compressible_weights`: which variables of a layer are pruned / clustered (also variables
  owned by sublayers: an RNN's cell, MultiHeadAttention's EinsumDense projections).
- :class:`CompressionWrapper`: a ``keras.layers.Wrapper`` whose forward pass substitutes computed
  values (masked or centroid-gathered kernels) for the inner layer's variables, and which
  :func:`dc_keras.strip` turns back into the plain inner layer.
- :func:`select_layers`: which layers of a graph get wrapped, and why the others do not.
- :func:`rewrite_model`: rebuild a Sequential/Functional model through ``keras.models.clone_model``
  (operator nodes, ``keras.ops`` calls, shared layers, nested models), every weight copied; the
  input model is never modified.
"""
import numbers
import os

import keras
import numpy as np
from keras import ops

from dc_keras import _compat

# The packed format holds at most 4096 codebook entries per tensor (docs/FORMAT.md §2: K ≤ 4096);
# defined in dc_keras._positional, which needs them without importing Keras.
from dc_keras._positional import MAX_BITS, MAX_CODEBOOK  # noqa: E402,F401

def multi_process():
    """Is this one process of a multi-process JAX ``keras.distribution`` job (the JAX backend, a
    distribution set, ``jax.process_count() >= 2``)? The cross-process checks of ``prune`` and
    ``cluster`` run only then, so a single-process job pays nothing for them.

    Example:
        >>> multi_process()  # one process
        False
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        return False
    import jax

    return jax.process_count() >= 2


def processes_disagree(rows):
    """In a multi-process JAX ``keras.distribution`` job: which of ``rows`` (``[(label, text)]``, the
    same labels in the same order on every process) differ between the processes. ``None`` when
    there is one process, no distribution, another backend, or every process has the same texts;
    ``("count", counts)`` when the processes hold different numbers of rows; else ``(i, others)``:
    the first differing row and the processes whose text differs from this one's. Two small
    all-gathers (one int32 per row, a hash of the label and text); every process gathers the same
    values, so all of them see the same disagreement and none waits in a collective for ever."""
    if not multi_process():
        return None
    import hashlib

    import jax
    from jax.experimental import multihost_utils

    counts = np.asarray(multihost_utils.process_allgather(np.int32(len(rows)))).ravel()
    if len(set(counts.tolist())) != 1:
        return "count", [int(c) for c in counts]
    mine = np.array([np.frombuffer(hashlib.sha256(f"{label}\0{text}".encode()).digest()[:4], "<i4")[0]
                     for label, text in rows], dtype=np.int32)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(len(counts), len(rows))
    here = jax.process_index()
    for i in range(len(rows)):
        others = [p for p in range(len(counts)) if every[p, i] != every[here, i]]
        if others:
            return i, others
    return None


def to_numpy(value):
    """``keras.ops.convert_to_numpy(value)``, reading a ``keras.Variable`` into a tensor first
    (``keras.ops.copy``; ``convert_to_tensor`` gives the variable back on TensorFlow). Keras 3.15's
    ``Variable.__array__`` takes no ``copy`` keyword (nor does the ``tf.Variable`` it holds on
    TensorFlow), so numpy 2's ``np.array(variable)`` inside ``convert_to_numpy`` raised a
    ``DeprecationWarning`` ("__array__ implementation doesn't accept a copy keyword") at each read
    of a mask, step counter or centroid (an error under ``python -W error::DeprecationWarning``).
    The same values. On PyTorch, ``convert_to_numpy``'s ``np.array(tensor)`` warns the same way
    (torch's ``Tensor.__array__`` takes no ``copy`` either): a tensor is read with its own
    ``detach().cpu().numpy()`` (a bfloat16 tensor, which numpy lacks, still through Keras's conversion,
    which warns; mixed precision keeps variables float32).

    Example:
        >>> to_numpy(keras.Variable([1.0, 2.0]))
        array([1., 2.], dtype=float32)
    """
    variable = isinstance(value, keras.Variable)
    if variable:
        value = ops.copy(value)
    if keras.backend.backend() == "torch" and hasattr(value, "detach") and str(value.dtype) != "torch.bfloat16":
        array = value.detach().cpu().numpy()  # shares the tensor's memory: a copy unless it is ops.copy's
        return array if variable else array.copy()
    return ops.convert_to_numpy(value)


def _weights_of(layer):
    """``layer.get_weights()``, read through :func:`to_numpy` when the layer does not override it
    (Keras's ``Layer.get_weights`` is ``[v.numpy() for v in layer.weights]``, which on JAX raised
    numpy 2's ``__array__`` ``DeprecationWarning`` for each weight)."""
    if type(layer).get_weights is keras.layers.Layer.get_weights:
        return [to_numpy(v) for v in layer.weights]
    return layer.get_weights()


# (class, names of the compressed weights, axis of the input dimension), most specific first.
_SIMPLE = (
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
    (keras.layers.EinsumDense, ("kernel",), 0),
    (keras.layers.Embedding, ("embeddings",), -1),
)
_CONV_TYPES = tuple(cls for cls, _, _ in _SIMPLE[:10])
_RNN_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)
# Their cell (ConvLSTMCell) is not exported by keras.layers: recognised by the public layer type.
_CONV_LSTMS = (keras.layers.ConvLSTM1D, keras.layers.ConvLSTM2D, keras.layers.ConvLSTM3D)
_MHA_PROJECTIONS = ("query", "key", "value", "output")
# GroupQueryAttention (Keras >= 3.1) keeps its EinsumDense projections in private attributes:
# their variables are found by path instead (``.../query/kernel``); (our name, sublayer name).
# "gate" exists from the Keras that added use_gate.
_GQA = getattr(keras.layers, "GroupQueryAttention", None)
_GQA_PROJECTIONS = (("query", "query"), ("key", "key"), ("value", "value"), ("gate", "gate"),
                    ("output", "attention_output"))

SUPPORTED_TYPES = (
    "Dense, EinsumDense, Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose, "
    "Embedding, LSTM, GRU, SimpleRNN, RNN(StackedRNNCells) of their cells, ConvLSTM1D/2D/3D (kernel and "
    "recurrent_kernel), Bidirectional of those, "
    "MultiHeadAttention, GroupQueryAttention (query/key/value/output projections), TimeDistributed of any of these, "
    "or a custom layer with `get_prunable_weights()` / `prunable_weights`"
)


def is_conv(layer):
    """True for the convolution layer types (default 8 bits when clustering, like the paper).

    The paper gives conv layers 8 bits and FC layers 5 because a conv kernel is small and each of
    its weights is applied at every position of the input, so sharing its values costs more
    accuracy. A ConvLSTM's kernel and recurrent kernel are convolution kernels of that kind (they
    slide over the image at every time step), so ConvLSTM1D/2D/3D (also inside Bidirectional or
    TimeDistributed) count as conv; LSTM/GRU/SimpleRNN kernels are matrix products, like FC.

    Example:
        >>> is_conv(keras.layers.ConvLSTM2D(8, 3))  # True: 8 bits by default
    """
    if _is_time_distributed(layer):
        return is_conv(layer.layer)
    if isinstance(layer, keras.layers.Bidirectional):
        return is_conv(layer.forward_layer)
    return isinstance(layer, _CONV_TYPES + _CONV_LSTMS)


def _is_time_distributed(layer):
    """A ``TimeDistributed`` of a layer that is not a model (wrapped as a whole, like Bidirectional:
    its inner layer is rebuilt from the config, so a wrapper placed inside would not round-trip)."""
    return isinstance(layer, keras.layers.TimeDistributed) and not isinstance(layer.layer, keras.Model)


def declares_weights(layer):
    """Does ``layer`` declare its prunable weights (``get_prunable_weights`` / ``prunable_weights``)?
    Asks without calling them: a custom Dense's ``get_prunable_weights()`` returning ``[self.kernel]``
    raises until the layer is built.

    Example:
        >>> declares_weights(keras.layers.Dense(4))  # False
    """
    return hasattr(layer, "get_prunable_weights") or hasattr(layer, "prunable_weights")


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


def _declared_if_built(layer):
    """:func:`_declared`, or None when it cannot be read yet: a layer without its own build() is
    marked built by Keras (``build_from_config`` when a ``.keras`` file loads) before the sublayers
    its call() builds hold variables, and ``[self.dense.kernel]`` raises there."""
    try:
        return _declared(layer)
    except AttributeError:
        if _builds_in_call(layer):
            return None
        raise


def _builds_in_call(layer, built=False):
    """A layer without its own build() whose sublayers are not all built (they build in its call);
    ``built=True``: such a layer, whether or not they are built yet."""
    return type(layer).build is keras.layers.Layer.build and any(
        built or not sub.built for sub in _compat.flatten_layers(layer))


def is_attention(layer):
    """MultiHeadAttention or GroupQueryAttention: wrapped as a whole, their projections compressed.

    Example:
        >>> is_attention(keras.layers.GroupQueryAttention(head_dim=8, num_query_heads=4, num_key_value_heads=2))
        True
    """
    return isinstance(layer, keras.layers.MultiHeadAttention) or (_GQA is not None and isinstance(layer, _GQA))


def attention_weights(layer, leaf):
    """``[(f"{projection}_{leaf}", variable, 0)]`` of an attention layer's projections (``leaf``:
    "kernel" or "bias"; a projection without a bias is left out).

    Example:
        >>> mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        >>> out = mha(np.ones((1, 3, 8)), np.ones((1, 3, 8)))  # builds the projections
        >>> [name for name, _, _ in attention_weights(mha, "kernel")]
        ['query_kernel', 'key_kernel', 'value_kernel', 'output_kernel']
    """
    if isinstance(layer, keras.layers.MultiHeadAttention):
        found = [(p, getattr(getattr(layer, f"{p}_dense"), leaf, None)) for p in _MHA_PROJECTIONS]
    else:
        by_sublayer = {tuple(v.path.split("/")[-2:]): v for v in layer.weights}
        found = [(p, by_sublayer.get((sub, leaf))) for p, sub in _GQA_PROJECTIONS]
    return [(f"{p}_{leaf}", v, 0) for p, v in found if isinstance(v, keras.Variable)]


#: Model libraries whose layers a user cannot give a ``get_prunable_weights()`` (KerasHub and its
#: predecessors): such a layer is compressed through the matrices it is built from (below).
_LIBRARIES = ("keras_hub.", "keras_nlp.", "keras_cv.")


def is_library_layer(layer):
    """A layer (not a model) defined by KerasHub / KerasNLP / KerasCV (``TransformerEncoder``,
    ``TransformerDecoder``, ``TokenAndPositionEmbedding``, ``PositionEmbedding``, a backbone's
    decoder block). One that is also of a supported type (KerasHub's ``ReversibleEmbedding``, an
    Embedding; ``CachedMultiHeadAttention``) is compressed as that type.

    Example:
        >>> is_library_layer(keras.layers.Dense(4))  # False: Keras's own
    """
    return type(layer).__module__.startswith(_LIBRARIES) and not isinstance(layer, keras.Model)


def _own_matrices(layer):
    """The trainable matrices (2 or more dimensions larger than 1) that ``layer`` holds itself, not
    through a sublayer: PositionEmbedding's table; not ViT's (1, 1, hidden) class token, a vector."""
    held = {id(v) for sub in _compat.flatten_layers(layer) for v in sub.weights}
    return [v for v in layer.trainable_weights
            if _is_matrix(v) and id(v) not in held]


def _is_matrix(variable):
    """At least two dimensions larger than 1 (a (1, 1, hidden) class token is a vector)."""
    return sum(int(d) > 1 for d in variable.shape) >= 2


def library_weights(layer, prefix=""):
    """``[(name, variable, axis)]`` of a built KerasHub layer (:func:`is_library_layer`): the
    compressible weights of the supported layers it is built from, found through its sublayers
    (each named by its sublayer path, ``self_attention_layer.query_kernel``,
    ``feedforward_output_dense.kernel``), and the matrices it or a KerasHub sublayer holds itself
    (``position_embedding.embeddings``); empty when it holds none (a normalization's vectors).
    The layer is wrapped as a whole, like MultiHeadAttention: its sublayers are made by its own
    build() from its config, so a wrapper placed inside would not survive a ``.keras`` round trip."""
    found = [(prefix + v.name, v, -2) for v in _own_matrices(layer)]
    for sub in _compat.flatten_layers(layer, recursive=False):
        if not sub.trainable or isinstance(sub, keras.Model):
            continue
        inner = prefix + sub.name + "."
        if is_library_layer(sub) and unsupported_reason(sub, composite=False) is not None:
            found += library_weights(sub, inner)
        elif sub.built and unsupported_reason(sub) is None:
            found += [(inner + name, var, axis) for name, var, axis in compressible_weights(sub)
                      if var.trainable]
    return found


def _is_rnn(layer):
    return isinstance(layer, keras.layers.RNN) and (isinstance(layer.cell, _RNN_CELLS) or _is_stacked_cells(layer.cell)
                                                    or isinstance(layer, _CONV_LSTMS))


def _is_stacked_cells(cell):
    """A ``keras.layers.StackedRNNCells`` of LSTM / GRU / SimpleRNN cells only (as tfmot's registry)."""
    return isinstance(cell, keras.layers.StackedRNNCells) and bool(cell.cells) \
        and all(isinstance(c, _RNN_CELLS) for c in cell.cells)


def rnn_cells(rnn, prefix=""):
    """``[(name prefix, cell)]`` of a supported RNN: its cell (``prefix``), or each cell of a
    ``StackedRNNCells``, ``cell_<i>_`` after ``prefix`` (``cell_0_kernel``, ``cell_1_recurrent_kernel``...).

    Example:
        >>> rnn_cells(keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(4)] * 2)))
        [('cell_0_', <LSTMCell ...>), ('cell_1_', <LSTMCell ...>)]
    """
    if isinstance(rnn.cell, keras.layers.StackedRNNCells):
        return [(f"{prefix}cell_{i}_", cell) for i, cell in enumerate(rnn.cell.cells)]
    return [(prefix, rnn.cell)]


def _is_bidirectional_rnn(layer):
    return isinstance(layer, keras.layers.Bidirectional) and _is_rnn(layer.forward_layer) \
        and _is_rnn(layer.backward_layer)


def is_supported(layer):
    """Can this layer be pruned or clustered (built-in type, or a custom layer that opts in)?"""
    return unsupported_reason(layer) is None


#: Layers whose weights are per-channel scale / offset vectors: left dense by design, reported as such
#: (not as an unsupported type). RMSNormalization exists from Keras 3.9.
_NORMALIZATIONS = tuple(getattr(keras.layers, n) for n in (
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")
    if hasattr(keras.layers, n))


#: Why a KerasHub layer holding no matrix (keras_hub's RMSNormalization, LlamaLayerNorm) is left dense.
_LIBRARY_VECTORS = "it holds only vectors (scales, offsets): left dense by design"

#: Why a layer whose ``get_prunable_weights()`` returns ``[]`` is left dense.
_DECLARES_NONE = "it declares no prunable weights (its get_prunable_weights() returns [])"


def unsupported_reason(layer, composite=True):
    """None for a supported layer, else why it cannot be pruned or clustered (``composite=False``:
    without the rule for KerasHub layers, :func:`library_weights`)."""
    if isinstance(layer, keras.Model):
        if not is_graph_model(layer):  # (graph models nested in graph models are walked into)
            return ("a subclassed model nested in this one: prune()/cluster() do not rewrite its layers, which "
                    "stay dense; wrap them in its __init__ (self.fc = dc_keras.prune(keras.layers.Dense(...), "
                    "schedule))")
        return "a model (its own layers are handled one by one)"
    if declares_weights(layer):
        if layer.built and _declared_if_built(layer) == []:  # tfmot's opt-out: a PrunableLayer with nothing to prune
            return _DECLARES_NONE
        return None
    if any(isinstance(layer, cls) for cls, _, _ in _SIMPLE):
        return None
    if _is_time_distributed(layer):
        inner = unsupported_reason(layer.layer)
        if inner is None:
            return None
        return f"TimeDistributed of {inner.replace('unsupported', 'an unsupported', 1).replace('normalization', 'a normalization', 1)}"
    if _is_rnn(layer) or _is_bidirectional_rnn(layer) or is_attention(layer):
        return None
    # (unbuilt: a wrapper loading from a .keras file, whose build() makes the sublayers; an empty
    # library_weights() is an error there)
    if composite and is_library_layer(layer) and (not layer.built or library_weights(layer)):
        return None
    if is_library_layer(layer) and layer.built and layer.weights and not any(map(_is_matrix, layer.weights)):
        return _LIBRARY_VECTORS
    if layer.built and not layer.weights:
        return "it has no weights, so no prunable weights"
    if isinstance(layer, keras.layers.Normalization):  # EfficientNet's input layer; an adapted one
        return ("preprocessing layer Normalization: its mean and variance are statistics computed by adapt() "
                "or loaded with the model, not trained weights: left dense by design")
    if isinstance(layer, _NORMALIZATIONS):
        fold = (" (cluster folds a BatchNormalization that follows a conv or Dense layer into it)"
                if isinstance(layer, keras.layers.BatchNormalization) else "")
        return f"normalization layer {type(layer).__name__}: per-channel vectors, left dense by design{fold}"
    if isinstance(layer, keras.layers.RNN):
        cell = type(layer.cell).__name__
        if isinstance(layer.cell, keras.layers.StackedRNNCells):
            cell += " of " + ", ".join(type(c).__name__ for c in layer.cell.cells)
        return (f"unsupported recurrent cell {cell} (supported: LSTM, GRU, SimpleRNN cells, alone or in "
                "StackedRNNCells; ConvLSTM1D/2D/3D)")
    if not type(layer).__module__.startswith(("keras.", "keras_hub.", "keras_nlp.", "keras_cv.")):
        return (f"unsupported layer type {type(layer).__name__} (a custom layer: list the weights to "
                "compress in get_prunable_weights())")
    return f"unsupported layer type {type(layer).__name__}"


def left_dense_unsupported(layer):
    """True when ``layer`` is left dense because dc_keras cannot compress it, though it holds a
    trainable matrix (or larger) of the kind prune/cluster compress: an unsupported layer type (a
    custom layer without ``get_prunable_weights()``, an unsupported recurrent cell, a subclassed
    model nested in a graph model, a TimeDistributed of one of these). False for a supported layer
    and for layers left dense by design: normalisations (per-channel vectors), a layer whose
    ``get_prunable_weights()`` returns ``[]``, and layers whose trainable weights are all vectors
    (biases, scales) or that are frozen (``trainable=False``: no trainable weights).

    Example:
        >>> left_dense_unsupported(keras.layers.LayerNormalization())  # False: by design
    """
    reason = unsupported_reason(layer)
    if reason is None or reason == _LIBRARY_VECTORS:
        return False
    inner = layer.layer if _is_time_distributed(layer) else layer
    if isinstance(inner, _NORMALIZATIONS) or declares_weights(inner):
        return False
    return any(len(v.shape) >= 2 for v in layer.trainable_weights)


def _own_variable(layer, name):
    for var in layer.weights:
        if var.name == name:
            return var
    raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) has no weight named {name!r}.")


def _unique_names(targets):
    """``targets`` with each name made unique: a custom layer declaring its sublayers' variables
    (``[self.att.query_dense.kernel, self.ffn.layers[0].kernel, ...]``) gives several named
    ``kernel``; the second is ``kernel_1``, the third ``kernel_2`` (in the declared order, so the
    names are the same in every process, as ``weights=`` in a saved config needs). The names key the
    report, ``sparsity()``, the TensorBoard summaries and the wrapper's own variables
    (``kernel_1_mask``), which kept one entry for all of them before.

    Example:
        >>> [n for n, _, _ in _unique_names([("kernel", None, -2), ("kernel", None, -2)])]
        ['kernel', 'kernel_1']
    """
    taken = {name for name, _, _ in targets}
    seen, result = set(), []
    for name, var, axis in targets:
        unique, k = name, 0
        while unique in seen or (k and unique in taken):
            k += 1
            unique = f"{name}_{k}"
        seen.add(unique)
        result.append((unique, var, axis))
    return result


def _declared_weights(layer, declared):
    result = []
    for item in declared:
        var = _own_variable(layer, item) if isinstance(item, str) else item
        if not isinstance(var, keras.Variable):
            raise ValueError(
                f"Layer {layer.name!r} declared a prunable weight that is not a keras.Variable: {item!r}."
            )
        axis = 0 if len(var.shape) < 2 else -2
        result.append((var.name, var, axis))
    result = _unique_names(result)
    if not result:
        raise ValueError(
            f"Layer {layer.name!r} declares no prunable weights (its get_prunable_weights() returns []), so "
            "a wrapper has nothing to prune or cluster: use the layer itself, unwrapped (given a whole model, "
            "prune() / cluster() and tfmot's prune_low_magnitude() / cluster_weights() leave it dense).")
    return result


def _rnn_weights(rnn, prefix=""):
    return [weight for name, cell in rnn_cells(rnn, prefix)
            for weight in ((name + "kernel", cell.kernel, -2), (name + "recurrent_kernel", cell.recurrent_kernel, -2))]


def _reverse_embeddings(layer):
    """``[("reverse_embeddings", variable, -2)]`` of a ``ReversibleEmbedding`` (Keras's and KerasHub's:
    an Embedding whose ``call(x, reverse=True)`` projects onto the vocabulary) built with
    ``tie_weights=False``: its output projection, a (hidden, vocabulary) matrix as large as the
    table, which the Embedding rule alone left dense without a word. Tied (the default), the
    projection is the compressed ``embeddings`` table itself."""
    reverse = getattr(layer, "reverse_embeddings", None) if isinstance(layer, keras.layers.Embedding) else None
    return [("reverse_embeddings", reverse, -2)] if isinstance(reverse, keras.Variable) and reverse.trainable else []


def compressible_weights(layer):
    """List of ``(name, variable, input_axis)`` to prune/cluster in a built ``layer``.

    For layers that own sublayers the variables belong to the sublayer (an RNN's ``cell``,
    MultiHeadAttention's ``query_dense``...); the names say which (``recurrent_kernel``,
    ``query_kernel``, ``forward_kernel``...).
    """
    declared = _declared(layer)
    if declared is not None:
        return _declared_weights(layer, declared)
    for cls, names, axis in _SIMPLE:
        if isinstance(layer, cls):
            return [(n, _own_variable(layer, n), axis) for n in names] + _reverse_embeddings(layer)
    if _is_rnn(layer):
        return _rnn_weights(layer)
    if _is_bidirectional_rnn(layer):
        return _rnn_weights(layer.forward_layer, "forward_") + _rnn_weights(layer.backward_layer, "backward_")
    if _is_time_distributed(layer) and is_supported(layer.layer):
        return compressible_weights(layer.layer)
    if is_attention(layer):
        return attention_weights(layer, "kernel")
    if is_library_layer(layer):
        found = library_weights(layer)
        if found:
            return found
    raise ValueError(
        f"Layer {layer.name!r} cannot be pruned or clustered: {unsupported_reason(layer)}. "
        f"Supported: {SUPPORTED_TYPES}."
    )


class substitute_variables:
    """Context manager: reads of the given variables return the given tensors instead.

    Built on ``keras.StatelessScope``; an enclosing stateless scope (e.g. a stateless training
    step) keeps its own substitutions and collected losses. Variables the inner layer updates
    inside (e.g. a dropout seed) are written back on exit, to the enclosing scope if any, else to
    the variables themselves (``owned``: the variables of the wrapped layer). Losses added inside
    (an ``activity_regularizer``, a layer's own ``add_loss``) go to the enclosing scope if any,
    else to ``loss_owner.add_loss`` on exit: a ``StatelessScope`` of its own drops them unless it
    collects them (TensorFlow's and torch's ``fit()``/``evaluate()`` and eager calls run no
    enclosing scope).
    """

    def __init__(self, pairs, owned=(), loss_owner=None):
        self.pairs = pairs
        self.owned = owned
        self.loss_owner = loss_owner

    def __enter__(self):
        self.scope = keras.StatelessScope(state_mapping=self.pairs, initialize_variables=False)
        self.scope.__enter__()
        parent = self.scope.original_scope  # public attribute: the scope that was active
        if parent is not None:
            self.scope.collect_losses = parent.collect_losses
            merged = dict(parent.state_mapping)
            merged.update(self.scope.state_mapping)
            self.scope.state_mapping = merged
            self.scope.losses = parent.losses
        else:
            self.scope.collect_losses = self.loss_owner is not None
        return self.scope

    def __exit__(self, *exc):
        self.scope.__exit__(*exc)
        parent = self.scope.original_scope
        own = {id(v) for v, _ in self.pairs}
        if parent is not None:
            for key, value in self.scope.state_mapping.items():
                if key not in own:
                    parent.state_mapping[key] = value
        elif exc[0] is None:
            for var in self.owned:
                value = self.scope.get_current_value(var)
                if id(var) not in own and value is not None:
                    var.assign(value)
            if self.loss_owner is not None:
                for loss in self.scope.losses:
                    self.loss_owner.add_loss(loss)
        return False


class CompressionWrapper(keras.layers.Wrapper):
    """Base of :class:`PruneWrapper` and :class:`ClusterWrapper`.

    Subclasses implement :meth:`compressed_values` (the tensors the inner layer sees in place of
    its compressed variables) and may restore variable attributes in :meth:`_release`.
    The wrapper passes every call argument on (``mha(query, value)``, ``rnn(x, mask=m)``).

    ``weights``: optional names of the layer's compressible weights to compress (default: all of
    :func:`compressible_weights`), e.g. ``["pointwise_kernel"]`` for a SeparableConv2D whose
    depthwise kernel stays dense (what tfmot's registry does; the drop-in uses it).

    Example:
        >>> from dc_keras.train.pruning import PruneWrapper
        >>> PruneWrapper(keras.layers.SeparableConv2D(8, 3), schedule, weights=["pointwise_kernel"])
    """

    def __init__(self, layer, weights=None, call_inputs=None, **kwargs):
        if isinstance(layer, CompressionWrapper):
            raise ValueError(
                f"Layer {layer.name!r} is already wrapped by {type(layer).__name__}; "
                "call dc_keras.strip() before pruning or clustering it again."
            )
        if isinstance(layer, keras.layers.Layer) and not is_supported(layer):
            raise ValueError(
                f"Layer {layer.name!r} cannot be pruned or clustered: {unsupported_reason(layer)}. "
                f"Supported: {SUPPORTED_TYPES}."
            )
        if weights is not None:
            if isinstance(weights, str) or not all(isinstance(w, str) for w in weights) or not list(weights):
                raise ValueError(f"`weights` must be None or a non-empty list of weight names, got {weights!r}.")
            weights = tuple(weights)
        self._untracked("only_weights", weights)
        # [[shape, dtype] | None] of the positional arguments of the first call, kept in the config
        # for a layer that builds in its call() (see _build_by_running): a .keras file's load
        # builds the wrapper from one input shape
        self._untracked("_call_inputs", call_inputs)
        kwargs.setdefault("name", getattr(layer, "name", None))
        if isinstance(layer, keras.layers.Layer):
            # The layer's own dtype policy, not the global one: under a mixed-precision policy a
            # wrapper computing in float16 would read the kernel it substitutes (and the centroids)
            # as float16 inside its autocast scope, and a float32 layer (the usual float32 head)
            # would run on float16-rounded weights that strip() does not reproduce.
            kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        _compat.carry_input_shape(self, layer)  # Sequential([wrapper(Dense(20, input_shape=...))]) builds now
        self.supports_masking = bool(getattr(layer, "supports_masking", False))
        self._untracked("_targets", [])

    def _check_store_not_stripped(self, store):
        """A built wrapper loading a file that holds none of its variables: the file has the plain
        layer there, as a subclassed model saved after strip() (stripped in place) does."""
        if self.built and not list(store.keys()) and self.weights:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}): the file holds no dc_keras variables for "
                "it, only a plain layer, as a subclassed model saved after dc_keras.strip() (which strips "
                "it in place) does, while this model wraps the layer again in __init__. Load the file into "
                "an instance built without the wrappers (e.g. an __init__ flag that skips "
                "dc_keras.prune/cluster), or load a file saved before strip().")

    def selected(self, targets):
        """``targets`` (``[(name, variable, axis)]``) restricted to ``weights`` when it was given."""
        if self.only_weights is None:
            return targets
        names = [name for name, _, _ in targets]
        unknown = [w for w in self.only_weights if w not in names]
        if unknown:
            raise ValueError(f"Layer {self.layer.name!r}: `weights` names {unknown}, which it does not have; "
                             f"its compressible weights are {names}.")
        return [t for t in targets if t[0] in self.only_weights]

    def get_config(self):
        config = super().get_config()
        if self.only_weights is not None:
            config["weights"] = list(self.only_weights)
        call_inputs = self._call_inputs
        if call_inputs is None and _builds_in_call(self.layer, built=True):
            called = _compat.first_call_arguments(self)
            if called is not None:
                call_inputs = [[list(a.shape), a.dtype] if isinstance(a, keras.KerasTensor) else None
                               for a in called[0]]
        if call_inputs is not None:
            config["call_inputs"] = call_inputs
        return config

    # -- subclass interface -------------------------------------------------------------------
    def compressed_values(self, training):
        """Return ``[(variable, tensor), ...]`` used by the forward pass."""
        raise NotImplementedError

    def _release(self):
        """Undo changes made to the inner layer's variables (constraints, trainable flags)."""

    # -- Keras layer API ----------------------------------------------------------------------
    def build(self, input_shape=None):
        builds_in_call = _builds_in_call(self.layer)
        if not self.layer.built or builds_in_call:
            if builds_in_call:
                self._build_by_running(input_shape)
            try:
                self.layer.build(input_shape)
            except TypeError as e:
                raise ValueError(
                    f"Cannot build {type(self.layer).__name__} {self.layer.name!r} from one input shape "
                    f"({e}); call the layer once on its inputs before wrapping it."
                ) from e
        self._untracked("_targets", self.selected(compressible_weights(self.layer)))

    def _build_by_running(self, input_shape):
        """Build a layer that has no build() of its own (its sublayers build in its call(), e.g.
        keras.io's PatchEncoder given a get_prunable_weights()) by running its call() symbolically on
        an input of ``input_shape``: in its compute dtype, else as int32 (token ids). Keras's default
        build only marks such a layer built (also when a .keras file loads), and its declared
        weights could not be read ("You must build the layer before accessing `kernel`")."""
        if self._call_inputs and all(spec is not None for spec in self._call_inputs):
            try:
                self.layer.compute_output_spec(*[keras.KerasTensor(tuple(shape), dtype=dtype)
                                                 for shape, dtype in self._call_inputs])
            except Exception:
                pass
            if not _builds_in_call(self.layer):
                return
        shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
        if shape is not None and all(d is None or isinstance(d, int) for d in shape):
            for dtype in (self.layer.compute_dtype, "int32"):
                try:
                    self.layer.compute_output_spec(keras.KerasTensor(shape, dtype=dtype))
                except Exception:
                    continue
                if not _builds_in_call(self.layer):
                    return
        raise ValueError(
            f"Cannot build {type(self.layer).__name__} {self.layer.name!r}: it has no build() method and its "
            f"sublayers are built only by its call(), which did not run on an input of shape {input_shape}. "
            "Give the layer a build() that builds its sublayers from the input shape(s) (e.g. def build(self, "
            "input_shape): self.dense.build(input_shape); for a call on two inputs, def build(self, query_shape, "
            "value_shape)).")

    def __call__(self, *args, **kwargs):
        # A layer called with keywords only (keras_hub's BartBackbone: transformer_layer(decoder_sequence=x,
        # encoder_sequence=...); mha(query=x, value=x)) reaches call() below without `inputs`, and Keras's
        # binding of the call failed ("missing a required argument: 'inputs'"): its first argument is
        # passed by position, as the layer takes it too.
        if not args:
            first = _first_call_parameter(self.layer)
            if first is not None and first in kwargs:
                args = (kwargs.pop(first),)
        # Keywords mixing tensors and Python values (mha(q, v, attention_mask=m, use_causal_mask=True))
        # reached Keras as one `kwargs` argument, which it refuses ("cannot mix tensors and non-tensors")
        # (`training` is a parameter of call() below: bound on its own already)
        collected = {name: value for name, value in kwargs.items() if name != "training"}
        if _mixes_tensors(collected):
            with _compat.keyword_parameters(self, collected):
                return super().__call__(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def _untracked(self, name, value):
        """Set an attribute without Keras tracking (it holds the inner layer's variables)."""
        object.__setattr__(self, name, value)

    def call(self, inputs, *args, training=None, **kwargs):
        # No `mask` parameter on purpose: Keras records it in the graph node, and the plain layer
        # that strip() puts back may not take one. Masks travel on the tensors (and explicit
        # `mask=` arguments through **kwargs).
        pairs = self.compressed_values(bool(training) if isinstance(training, bool) else False)
        for var, value in pairs:
            # Keras adds the regularizers of trainable variables only: a variable the wrapper
            # computes (a clustered kernel: its centroids train) would lose the user's one.
            if self.trainable and not var.trainable and getattr(var, "regularizer", None) is not None:
                self.add_loss(var.regularizer(value))
        with substitute_variables(pairs, self._updatable_variables(), loss_owner=self):
            if training is not None:
                kwargs["training"] = training
            return self.layer(inputs, *args, **kwargs)

    def _updatable_variables(self):
        """The variables the inner layer may update in its call, written back after it: its own
        (a dropout seed) and the state variables of a stateful RNN, which Keras does not track
        (``RNN.states``, also of the RNNs inside a Bidirectional): left out, a wrapped stateful
        RNN started every call from a zero state."""
        variables = list(self.layer.variables)
        known = {id(v) for v in variables}
        for layer in _compat.flatten_layers(self.layer, include_self=True):
            for state in keras.tree.flatten(getattr(layer, "states", None) or []) \
                    if isinstance(layer, keras.layers.RNN) else []:
                if isinstance(state, keras.Variable) and id(state) not in known:
                    known.add(id(state))
                    variables.append(state)
        return variables

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, inputs, *args, training=None, **kwargs):
        return self.layer.compute_output_spec(inputs, *args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # -- reporting / strip ---------------------------------------------------------------------
    def compressed_params(self):
        """Number of entries in the compressed variables."""
        return params(v for _, v, _ in (self._targets or self.selected(compressible_weights(self.layer))))

    def stripped_weights(self):
        """Numpy weights of the inner layer (``layer.get_weights()`` order) with the compressed
        variables replaced by their final (masked / clustered) values. Zeros are +0.0: a pruned
        weight is stored as ``w * 0`` (-0.0 where w was negative, as many as the backend's
        arithmetic leaves), and a sign bit would be a value of its own to the packer."""
        values = {id(var): _positive_zeros(to_numpy(value)) for var, value in self.compressed_values(False)}
        return [values[id(v)] if id(v) in values else to_numpy(v) for v in self.layer.weights]

    def strip_layer(self):
        """Write the final values into the inner layer and return it (the wrapper is spent)."""
        weights = self.stripped_weights()
        self._release()
        self.layer.set_weights(weights)
        return self.layer


def _is_tensor(value):
    """A tensor, symbolic or not, or a numpy array (Keras's __call__ turns those into tensors)."""
    return isinstance(value, (keras.KerasTensor, np.ndarray)) or ops.is_tensor(value)


def _mixes_tensors(kwargs):
    """Do the keyword arguments hold tensors and also values that are neither tensors nor None?"""
    flat = keras.tree.flatten(list(kwargs.values()))
    return any(map(_is_tensor, flat)) and any(v is not None and not _is_tensor(v) for v in flat)


def _first_call_parameter(layer):
    """The name of the first parameter of ``layer.call`` when it can be given by position, else None."""
    import inspect

    try:
        parameters = list(inspect.signature(layer.call).parameters.values())
    except (TypeError, ValueError):
        return None
    if parameters and parameters[0].kind in (inspect.Parameter.POSITIONAL_ONLY,
                                             inspect.Parameter.POSITIONAL_OR_KEYWORD):
        return parameters[0].name
    return None


def _positive_zeros(array):
    """``array`` with every -0.0 made +0.0 (``x + 0.0``: every other value is kept bit for bit)."""
    array = np.asarray(array)
    return array + array.dtype.type(0) if np.issubdtype(array.dtype, np.floating) else array


def flatten_layers(model):
    """All layers of ``model`` (recursively; wrappers and their inner layers included)."""
    return _compat.flatten_layers(model, include_self=not isinstance(model, keras.Model))


def find_wrappers(model, cls=CompressionWrapper):
    return [layer for layer in flatten_layers(model) if isinstance(layer, cls)]


def is_graph_model(model):
    return isinstance(model, keras.Sequential) or _compat.is_functional(model)


_is_graph_model = is_graph_model  # older name


def graph_layers(model, frozen=False):
    """``[(layer, frozen), ...]``: the layers of a graph model, descending into nested graph models
    (not into layers: an LSTM is one entry). ``frozen``: the layer or an enclosing model has
    ``trainable=False``. Each layer once (shared layers too)."""
    seen = set()
    result = []

    def walk(m, frozen):
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            f = frozen or not layer.trainable
            if isinstance(layer, keras.Model) and is_graph_model(layer):
                walk(layer, f)
            else:
                result.append((layer, f))

    walk(model, frozen)
    return result


def params(variables):
    """Number of entries in ``variables``."""
    return sum(int(np.prod(v.shape)) for v in variables)


def _parse_layers_arg(layers, mapping_ok, what):
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
            raise ValueError(f"`layers` must be None, a list of names/classes or a dict; got {layers!r}.") from None
    if not items:
        raise ValueError("`layers` is empty: nothing to be " + what + ".")
    for key, _ in items:
        if not (isinstance(key, str) or (isinstance(key, type) and issubclass(key, keras.layers.Layer))):
            raise ValueError(f"`layers` entries must be layer names or Layer classes, got {key!r}.")
    return items


def _nested_graph_models(model):
    """The Sequential/Functional models nested in ``model``, at any depth."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            found += [layer, *_nested_graph_models(layer)]
    return found


def unknown_names_hints(model, unknown, argument, what, values=None):
    """Why names given in ``layers=`` / ``bits=`` name no layer, for the error that lists them: a
    nested model's name (name the layers inside it), a layer class's name (``"Dense"``: pass the
    class; ``values``: the dict given, ``bits={keras.layers.Dense: 3}``). Empty when neither applies.

    Example:
        >>> unknown_names_hints(model, ["Dense"], "layers", "pruned")
        " 'Dense' is a layer class name, not a layer name: pass the class itself, layers=[keras.layers.Dense]."
    """
    nested = {m.name: [layer.name for layer, _ in graph_layers(m) if is_supported(layer)]
              for m in _nested_graph_models(model)}
    hints = []
    for k in unknown:
        if k in nested:
            inside = f"{', '.join(repr(n) for n in nested[k][:4])}{', ...' if len(nested[k]) > 4 else ''}"
            rest = (f"or leave `layers` out (every supported layer is then {what}, inside nested models too)"
                    if argument == "layers" else
                    "or give an int `bits` (every layer then gets it, inside nested models too)")
            hints.append(f" {k!r} is a nested model, not a layer: name the layers inside it ({inside}), {rest}.")
        elif isinstance(getattr(keras.layers, k, None), type) and issubclass(getattr(keras.layers, k), keras.layers.Layer):
            value = None if values is None else values[k]
            example = (f"{argument}=[keras.layers.{k}]" if values is None else
                       f"{argument}={{keras.layers.{k}: {value if isinstance(value, int) else '...'}}}")
            hints.append(f" {k!r} is a layer class name, not a layer name: pass the class itself, {example}.")
    return "".join(hints)


def _named(model, leaves, items, what, include_frozen):
    """Layers the ``layers=`` items select: ``{id: (layer, value)}`` (names checked strictly)."""
    by_name = {}
    for layer, frozen in leaves:
        by_name.setdefault(layer.name, []).append((layer, frozen))
    unknown = [k for k, _ in items if isinstance(k, str) and k not in by_name]
    if unknown:
        raise ValueError(
            f"Unknown layer name(s) {unknown} in `layers`; model {model.name!r} has {sorted(by_name)}."
            + unknown_names_hints(model, unknown, "layers", what,
                                  dict(items) if any(v is not None for _, v in items) else None))
    chosen = {}
    for key, value in items:
        if isinstance(key, str):
            for layer, frozen in by_name[key]:
                reason = unsupported_reason(layer)
                if reason is not None:
                    raise ValueError(
                        f"Layer {key!r} ({type(layer).__name__}) cannot be {what}: {reason}. "
                        f"Supported: {SUPPORTED_TYPES}."
                    )
                if frozen and not include_frozen:
                    raise ValueError(
                        f"Layer {key!r} is frozen (trainable=False, or inside a frozen model) and is not "
                        f"{what} by default; pass include_frozen=True to include frozen layers."
                    )
                chosen[id(layer)] = (layer, value)
        else:
            for layer, frozen in leaves:
                if isinstance(layer, key) and is_supported(layer) and id(layer) not in chosen:
                    if include_frozen or not frozen:
                        chosen[id(layer)] = (layer, value)
    return chosen


def _skip_reason(layer, frozen, include_frozen, min_params, selected):
    reason = unsupported_reason(layer)
    if reason is not None:
        return reason
    if frozen and not include_frozen:
        return "frozen (trainable=False); pass include_frozen=True to compress it"
    if not selected:
        return "not selected by `layers`"
    size = params(v for _, v, _ in compressible_weights(layer))
    if size < min_params:
        return f"too small ({size} weights < min_params={min_params})"
    return None


def select_layers(model, layers, what="pruned", mapping_ok=True, include_frozen=False, min_params=0):
    """Resolve a ``layers=`` argument over the model's graph layers.

    ``layers`` is None (every supported layer, value None), a sequence of layer names and/or
    classes (value None), or a dict name-or-class -> value. Frozen layers are left out unless
    ``include_frozen``; layers with fewer than ``min_params`` compressible weights too.

    Returns ``(chosen, skipped)``: ``{id(layer): (layer, value)}`` and ``[(layer, reason), ...]``
    for every other layer that has weights.
    """
    if not isinstance(include_frozen, (bool, np.bool_)):
        raise ValueError(f"`include_frozen` must be True or False, got {include_frozen!r}.")
    if isinstance(min_params, (bool, np.bool_)) or not isinstance(min_params, numbers.Real) or not min_params >= 0:
        raise ValueError(f"`min_params` must be a number >= 0 (layers with fewer compressible weights stay dense; "
                         f"0: none), got {min_params!r}.")
    leaves = graph_layers(model)
    if layers is None:
        named = {id(l): (l, None) for l, _ in leaves}
    else:
        named = _named(model, leaves, _parse_layers_arg(layers, mapping_ok, what), what, include_frozen)
    chosen, skipped = {}, []
    for layer, frozen in leaves:
        if not layer.weights:
            continue
        reason = _skip_reason(layer, frozen, include_frozen, min_params, id(layer) in named)
        if reason is None:
            chosen[id(layer)] = named[id(layer)]
        else:
            skipped.append((layer, reason))
    small = {layer.name: params(v for _, v, _ in compressible_weights(layer))
             for layer, reason in skipped if reason.startswith("too small")}
    if not chosen and small:
        sizes = ", ".join(f"{name!r} ({n})" for name, n in small.items())
        biggest = max(small.values())
        frozen_note = (" (Frozen layers were left out too: pass include_frozen=True to include them.)"
                       if any(r.startswith("frozen") for _, r in skipped) else "")
        raise ValueError(
            f"Model {model.name!r} has no layer that can be {what} with min_params={min_params}: every layer that "
            f"could be has fewer compressible weights: {sizes}. Lower min_params (e.g. min_params={biggest} keeps "
            f"the largest).{frozen_note}")
    if not chosen:
        frozen_note = ""
        if any(r.startswith("frozen") for _, r in skipped):
            frozen_note = " Frozen layers were left out: pass include_frozen=True to include them."
        raise ValueError(
            f"Model {model.name!r} has no layer that can be {what} (nothing prunable).{frozen_note} "
            f"Supported: {SUPPORTED_TYPES}."
        )
    return chosen, skipped


def restrict(chosen, skipped, weights_of, model, what):
    """Apply a per-layer weight choice to :func:`select_layers` output: ``weights_of(layer)`` gives
    None (every compressible weight), a list of weight names, or a string: the reason the layer is
    left dense (moved to ``skipped``). Returns ``(chosen, skipped, names)`` with ``names`` mapping
    ``id(layer)`` to the names (or None), and a ``targets_of(layer)`` for the report. No layer
    left is a ValueError naming each one's reason (``what``: "pruned", "clustered")."""
    names = {}
    for key, (layer, _value) in list(chosen.items()):
        choice = weights_of(layer)
        if isinstance(choice, str):
            del chosen[key]
            skipped = skipped + [(layer, choice)]
        else:
            names[key] = None if choice is None else tuple(choice)

    def targets_of(layer):
        targets = compressible_weights(layer)
        only = names.get(id(layer))
        return targets if only is None else [t for t in targets if t[0] in only]

    if not chosen:
        raise ValueError(f"Model {model.name!r} has no layer that can be {what}: "
                         + "; ".join(f"{layer.name}: {reason}" for layer, reason in skipped))
    return chosen, skipped, names, targets_of


def _tf_keras_class(obj):
    """The tf_keras (Keras 2) class ``obj`` is an instance of, or None."""
    return next((c for c in type(obj).__mro__ if c.__module__.split(".")[0] == "tf_keras"), None)


def not_keras3_error(what, expected, obj, fix=None):
    """The ``ValueError`` for ``what`` (e.g. ``"prune()"``) given ``obj`` in place of ``expected``
    (e.g. ``"a Keras model or layer"``), ending with ``fix`` when given. A tf_keras (Keras 2) model
    or layer (what ``tf.keras`` is under ``TF_USE_LEGACY_KERAS=1``, as tfmot's users have it) is
    named as such, with how to get a Keras 3 model instead.

    A path (``str`` / ``os.PathLike``: a ``.keras`` file passed for its model) gets, unless ``fix``
    is given, the fix of loading it first.

    Example:
        >>> error = not_keras3_error("prune()", "a Keras model or layer", "model.keras")
        >>> str(error)
        "prune() takes a Keras model or layer, got str: load it first: keras.saving.load_model('model.keras')"
    """
    name = type(obj).__name__
    if fix is None and isinstance(obj, (str, os.PathLike)):
        fix = f"load it first: keras.saving.load_model({os.fspath(obj)!r})"
    if _tf_keras_class(obj) is None:
        return ValueError(f"{what} takes {expected}, got {name}" + (f": {fix}" if fix else "."))
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "")
    where = (f"TF_USE_LEGACY_KERAS={legacy} is set in this process, so tf.keras is tf_keras: unset it (before "
             "TensorFlow is imported) or build the model with `keras.` in place of `tf.keras.`"
             if legacy in ("1", "true", "True") else "build the model with `import keras` in place of tf_keras")
    return ValueError(
        f"{what} takes {expected} of Keras 3, got a Keras 2 (tf_keras) {name}: dc_keras runs on Keras 3; {where}. "
        "A trained tf_keras model moves over as an .h5 file: model.save('model.h5') in tf_keras, then "
        "keras.saving.load_model('model.h5', compile=False) here (docs/migrating_from_tfmot.md).")


def refuse_quantized(model_or_layer, what):
    """A ValueError naming the layers of ``model_or_layer`` that Keras quantized (``model.quantize("int8")``,
    ``"float8"``, ``"int4"``: a quantized dtype policy), before ``what`` ("prune", "cluster") wraps
    them. Their call runs Keras's quantized kernel, not the one a wrapper substitutes: an int8
    model's wrappers failed in fit() ("PruneWrapper does not have a `_int8_call` method"), a float8
    model's rebuild with "weight shape () is not compatible with provided weight shape (8, 16)".

    Example:
        >>> refuse_quantized(keras.layers.Dense(4), "prune")  # a float layer: nothing raised
    """
    if isinstance(model_or_layer, keras.Model) and is_graph_model(model_or_layer):
        layers = [layer for layer, _ in graph_layers(model_or_layer)]
    else:
        layers = [model_or_layer]
    quantized = [(layer, mode) for layer in layers
                 if (mode := getattr(layer, "quantization_mode", None))]  # as export's check reads it
    if not quantized:
        return
    named = ", ".join(f"{layer.name!r} ({mode})" for layer, mode in quantized[:6])
    more = f" and {len(quantized) - 6} more" if len(quantized) > 6 else ""
    raise ValueError(
        f"{what}() takes float layers; {len(quantized)} layer(s) were quantized by Keras "
        f"(model.quantize(...)): {named}{more}. Their call runs the quantized kernel, which a wrapper cannot "
        f"prune or cluster. Apply dc_keras.{what}() to the float model (before model.quantize), then quantize the "
        "stripped result at export: dc_keras.export.to_tflite(model, quantize='int8', representative_data=x[:100]) "
        "or quantize='dynamic' (docs/quantization.md).")


def check_buildable(model, what):
    if not is_graph_model(model):
        raise ValueError(
            f"{what}() rebuilds Sequential and Functional models; {type(model).__name__} is a subclassed "
            f"model: apply dc_keras.{what}() to its layers inside the model instead."
        )
    if not model.built:
        raise ValueError(f"Model {model.name!r} is not built; build it (call it once) before {what}().")


class Rebuilder:
    """Fresh copies of layers for :func:`rewrite_model`, built and holding the original's weights.

    A layer that cannot be built before the graph is run (no build config) gets its weights after
    the rebuild (:meth:`finish`).
    """

    def __init__(self):
        self._later = []

    def clone(self, layer, weights=None, config_dict=None, **config_changes):
        """A new layer from ``layer``'s config (updated with ``config_dict`` and ``config_changes``:
        the dict for keys that are this method's own argument names, e.g. a Bidirectional's
        ``layer``), built like it, holding ``weights`` (default: ``layer.get_weights()``; a callable
        gets the built copy and returns the list).

        A ``keras.layers.Lambda`` is put back as it is (shared with the input model): it holds no
        weights, and its config holds Python bytecode that Keras refuses to deserialize
        (``safe_mode``) unless ``keras.config.enable_unsafe_deserialization()`` was called."""
        config_changes = {**(config_dict or {}), **config_changes}
        if type(layer) is keras.layers.Lambda and weights is None and not config_changes:
            return layer
        try:
            config = layer.get_config()
        except Exception as e:
            raise _config_error(layer, "its get_config()", e) from e
        config.update(config_changes)
        fresh = None
        if "name" not in config:  # a subclassed model's config has no name: its copy was 'inner_1'
            try:
                fresh = layer.__class__.from_config({**config, "name": layer.name})
            except TypeError:  # an __init__ that takes no name: the name Keras gives
                pass
        if fresh is None:
            try:
                fresh = layer.__class__.from_config(config)
            except Exception as e:
                raise _config_error(layer, f"{type(layer).__name__}.from_config(layer.get_config())", e) from e
        values = _weights_of(layer) if weights is None else weights
        if callable(values):
            if not layer.built:
                raise ValueError(f"Layer {layer.name!r} must be built to be rebuilt with new weights.")
            if not fresh.built:
                fresh.build_from_config(layer.get_build_config())
            fresh.set_weights(values(fresh))
            return fresh
        copy = layer if weights is None else None  # an exact copy: also the state set_weights misses
        if layer.built:
            build_config = layer.get_build_config()
            # A layer without its own build() (e.g. keras.io's PatchEncoder / TokenAndPositionEmbedding:
            # sublayers made in __init__, built by their first call in call()) is not built by
            # build_from_config: Keras only marks it built (warning "does not have a `build()` method"),
            # its sublayers hold no weights yet and set_weights failed ("expecting 0 weights"). It is
            # built by a symbolic run of its call() on an input like its own, as its first call did.
            lazy = type(fresh).build is keras.layers.Layer.build and bool(_compat.flatten_layers(fresh))
            # A layer that builds itself in __init__ from shapes its config holds (keras_hub's
            # TransformerDecoder: "decoder_sequence_shape") is built by from_config: building it again
            # created its sublayers a second time, which Keras refuses ("cannot add new elements of
            # state ... to a layer that is already built"). Keras's own loading skips a built layer too.
            if build_config and not lazy and not fresh.built:
                fresh.build_from_config(build_config)
            if lazy and len(fresh.weights) != len(values) and _build_by_running(layer, fresh):
                try:  # its sublayers are built: this only marks it built (and records the build config)
                    fresh.build_from_config(build_config)
                except TypeError:  # Keras's default build() takes one shape: not a call on two inputs
                    pass
                fresh.built = True
            if fresh.built and len(fresh.weights) == len(values):
                fresh.set_weights(values)
                _copy_saved_state(copy, fresh)
            else:
                self._later.append((fresh, values, copy))
        return fresh

    def finish(self):
        for fresh, values, copy in self._later:
            if len(fresh.weights) != len(values):
                raise ValueError(
                    f"Layer {fresh.name!r} ({type(fresh).__name__}) has {len(fresh.weights)} weight(s) after it was "
                    f"rebuilt from its config and called, where the original holds {len(values)}: its weights "
                    "cannot be copied. Give the layer a build() that creates all its weights (and builds its "
                    "sublayers) from the input shape, and a get_config() with every __init__ argument.")
            fresh.set_weights(values)
            _copy_saved_state(copy, fresh)
        self._later = []


def _config_error(layer, step, exc):
    """The error for a layer that cannot be rebuilt from its own config (``step`` failed with ``exc``):
    KerasHub 0.32's ``LlamaTransformerDecoder.get_config()`` reads attributes its ``__init__`` never
    sets, and ``ViTPatchingAndEmbedding.get_config()`` returns arguments its ``__init__`` refuses.
    Their models save and load (a KerasHub backbone saves its own arguments, not its layers'), but a
    rebuild layer by layer, as ``keras.models.clone_model`` does, fails on them."""
    cls = type(layer)
    detail = " ".join(str(exc).split())
    # Keras's deserialization error quotes the whole config first: its cause comes last
    detail = detail.rsplit("Exception encountered: ", 1)[-1]
    if len(detail) > 300:
        detail = detail[:300] + " ..."
    return ValueError(
        f"Layer {layer.name!r} ({cls.__module__}.{cls.__name__}) cannot be rebuilt from its config: {step} raised "
        f"{type(exc).__name__}: {detail}. dc_keras.prune(), cluster() and strip() rebuild every layer of a Sequential "
        "or Functional model from its config (as keras.models.clone_model does), also the layers they leave dense, "
        "so a layer whose get_config() does not give back the arguments of its own __init__ stops them. That is a "
        f"bug of {cls.__name__}'s get_config() (or from_config()): fix it in the class or a subclass (a "
        "get_config() returning exactly its __init__ arguments); "
        f"{cls.__name__}.from_config(layer.get_config()) reproduces it without dc_keras.")


def _build_by_running(layer, fresh):
    """Build ``fresh`` (a copy of the built ``layer`` whose class has no build()) by running its
    call() symbolically on tensors like those of ``layer``'s first call (the sublayers it calls
    build, as they did there). True if it ran."""
    called = _compat.first_call_arguments(layer)
    if called is None:  # never called in a graph: its call in the rebuilt graph builds it
        return False

    def like(value):  # a new symbolic tensor: no link to the input model's graph
        if isinstance(value, keras.KerasTensor):
            return keras.KerasTensor(value.shape, dtype=value.dtype, sparse=value.sparse)
        return value

    args, kwargs = keras.tree.map_structure(like, called)
    try:
        fresh.compute_output_spec(*args, **kwargs)
    except Exception:  # its call in the rebuilt graph builds it; the weights follow (finish())
        return False
    return True


def _copy_saved_state(layer, fresh):
    """Carry over to ``fresh`` (built from ``layer``'s config, holding its weights) the state that
    Keras's saving restores through the layer's own hooks and ``set_weights`` does not: a
    ``load_own_variables`` that recomputes what the layer computes with (an adapted
    ``Normalization``'s mean and variance, made in ``finalize_state()``: without it the copy
    normalised with 0 and 1), and assets (the vocabulary of an adapted ``StringLookup``,
    ``IntegerLookup`` or ``TextVectorization``: not a weight, the copy had none). The same calls a
    ``.keras`` file's save and load make. ``layer`` None: nothing to copy."""
    if layer is None or not fresh.built:
        return
    if type(layer).load_own_variables is not keras.layers.Layer.load_own_variables:
        store = {}
        layer.save_own_variables(store)
        # Copies: on JAX an assigned variable would hold the original's very array, which the
        # copy's training step then donates (deleted under the input model).
        fresh.load_own_variables({key: np.array(to_numpy(value)) for key, value in store.items()})
    if callable(getattr(layer, "save_assets", None)) and callable(getattr(fresh, "load_assets", None)):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="dc_keras_assets_") as directory:
            layer.save_assets(directory)
            fresh.load_assets(directory)


def _copy_model_flags(original, new):
    """``clone_model`` rebuilds nested Functional models as trainable: restore ``trainable=False``."""
    if not original.trainable and new.trainable:
        new.trainable = False
    inner = {l.name: l for l in new.layers if isinstance(l, keras.Model)}
    for layer in original.layers:
        if isinstance(layer, keras.Model) and layer.name in inner:
            _copy_model_flags(layer, inner[layer.name])


def _graph_layer_ids(model):
    """ids of every layer of a graph model, through its nested graph models."""
    return {id(layer) for layer, _ in graph_layers(model)}


def _sharing_nested_models(model):
    """ids of the trainable graph models nested in ``model`` (at any depth) that hold a layer their
    enclosing graph also calls outside them: KerasHub's ``GPT2CausalLM`` / ``GemmaCausalLM`` call the
    backbone, then the backbone's own ``token_embedding`` (tied output projection,
    ``reverse=True``). Keras's Functional config cannot say that a layer of the outer graph lives in
    a nested model: a ``.keras`` file of such a plain Functional model makes the layer twice on
    load and one copy gets no weights ("expected 2 variables, but received 0"; Keras 3.15, plain
    Keras models too). KerasHub's task classes avoid it with a config of their own, which the
    rewritten model (a plain Functional model) does not have; :func:`rewrite_model` calls these
    nested models' layers in the enclosing graph instead (the nested model is not kept)."""
    found = set()

    def walk(graph):
        nested = [isinstance(layer, keras.Model) and is_graph_model(layer) for layer in graph.layers]
        held = [_graph_layer_ids(layer) if is_nested else {id(layer)}  # each layer's ids, once
                for layer, is_nested in zip(graph.layers, nested)]
        for i, child in enumerate(graph.layers):
            if not nested[i]:
                continue
            outside = set().union(*(ids for j, ids in enumerate(held) if j != i))
            if held[i] & outside and child.trainable and _compat.is_functional(graph) and _compat.is_functional(child):
                found.add(id(child))
            walk(child)

    walk(model)
    return found


def rewrite_model(model, replace, what):
    """Rebuild a Sequential/Functional ``model`` with ``keras.models.clone_model`` (recursively
    through nested models; a shared layer is replaced once and stays shared). ``replace(layer,
    rebuilder)`` returns the layer to put in place of ``layer`` (e.g. a wrapper around
    ``rebuilder.clone(layer)``); operations (``h + x``, ``keras.ops.relu``) are re-created from
    their config. The input model is not modified.

    Returns ``(new_model, [(original, replacement), ...])``.
    """
    check_buildable(model, what)
    rebuilder = Rebuilder()
    pairs = []
    identities = set()  # layers replaced by keras.layers.Identity: called with the input only
    inline = _sharing_nested_models(model)
    inlined = set()  # ids of the clones of those models: their layers are called in the enclosing graph

    done = {}  # id(original) -> its clone: a shared layer (or nested model) is cloned once

    def clone_function(operation):
        if id(operation) in done:
            return done[id(operation)]
        if isinstance(operation, keras.Model) and is_graph_model(operation):
            # Nested models are cloned here rather than by clone_model(recursive=True), which does not
            # hand call_function to a Functional model nested in a Sequential one: there a folded
            # BatchNormalization's Identity was called with the BatchNormalization's mask/training
            # arguments (TypeError: got an unexpected keyword argument 'mask')
            clone = keras.models.clone_model(
                operation, clone_function=clone_function, recursive=False,
                call_function=call_function if _compat.is_functional(operation) else None)
            if id(operation) in inline:
                inlined.add(id(clone))
        elif not isinstance(operation, keras.layers.Layer):
            clone = operation.__class__.from_config(operation.get_config())  # stateless op
        else:
            clone = replace(operation, rebuilder)
            if isinstance(clone, keras.layers.Identity) and not isinstance(operation, keras.layers.Identity):
                identities.add(id(clone))
            pairs.append((operation, clone))
        done[id(operation)] = clone
        return clone

    def call_function(layer, *args, **kwargs):
        if id(layer) in identities:  # e.g. a folded BatchNormalization: drop its mask/training
            return layer(args[0])
        if id(layer) in inlined:  # its graph replayed here: its layers join the enclosing graph
            return layer.call(*args, **kwargs)
        return layer(*args, **kwargs)

    call = call_function if _compat.is_functional(model) else None
    new_model = keras.models.clone_model(model, clone_function=clone_function, call_function=call,
                                         recursive=False)
    rebuilder.finish()
    _copy_model_flags(model, new_model)
    return new_model, pairs
