"""Shims around private framework APIs (the only place dc_keras may touch them).

Each shim says why it is needed and which versions it was tested with; each has a test in
``tests/test_compat.py``. Other engineers append their own sections below.
"""
from __future__ import annotations

import ctypes
import glob
import os

# ---------------------------------------------------------------------------------------------
# runtime: TensorFlow Lite's C++ MutableOpResolver::AddCustom (owner: runtime, issue 17)
#
# Why: TF's InterpreterWithCustomOps hands a registerer a C++ ``tflite::MutableOpResolver*``.
# Our C99 library has no C++ ABI, so the host looks up the non-virtual member
# ``MutableOpResolver::AddCustom(const char*, const TfLiteRegistration*, int, int)`` by its
# Itanium-mangled name in TF's shared objects and hands the address to the library. Neither the
# symbol nor the file that exports it is public API.
# Tested: TensorFlow 2.21 (x86_64 Linux): exported by tensorflow/lite/python/*.so
# (``_pywrap_tensorflow_interpreter_wrapper``) and/or libtensorflow_cc.so.2.
# ---------------------------------------------------------------------------------------------
TFLITE_ADD_CUSTOM_SYMBOL = "_ZN6tflite17MutableOpResolver9AddCustomEPKcPK18TfLiteRegistrationii"


def tflite_add_custom_address() -> int:
    """Address of ``tflite::MutableOpResolver::AddCustom`` in the loaded TensorFlow.

    Imports TensorFlow (only call it on the TensorFlow backend). Raises ``RuntimeError`` naming the
    fix when no TF shared object exports the symbol.
    """
    import tensorflow

    root = os.path.dirname(os.path.abspath(tensorflow.__file__))
    candidates = sorted(glob.glob(os.path.join(root, "libtensorflow_cc.so*"))) + sorted(
        glob.glob(os.path.join(root, "lite", "python", "*.so"))
    )
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            return ctypes.cast(getattr(lib, TFLITE_ADD_CUSTOM_SYMBOL), ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    raise RuntimeError(
        f"TensorFlow {getattr(tensorflow, '__version__', '?')} exports no "
        "tflite::MutableOpResolver::AddCustom; use dc_keras.runtime.Interpreter(..., "
        "decode='delegate') or backend='litert' instead"
    )


# ---------------------------------------------------------------------------------------------
# runtime: the native TfLiteDelegate* behind a Python external-delegate object (issue 17)
#
# Why: the library reports what its delegate did (which FULLY_CONNECTED layers run compressed,
# which stay dense and why) through DcKerasHuffDecodeDelegateReport(TfLiteDelegate*). The Python
# ``Delegate`` returned by ``load_delegate`` exposes its pointer only through the private method
# ``_get_native_delegate_pointer()`` (attribute ``_delegate_ptr`` in older versions).
# Tested: ai-edge-litert 2.3 and tensorflow 2.21 (``tf.lite.experimental.load_delegate``).
# ---------------------------------------------------------------------------------------------
def delegate_pointer(delegate) -> int:
    """Address of the ``TfLiteDelegate`` of a LiteRT/TF external-delegate object."""
    getter = getattr(delegate, "_get_native_delegate_pointer", None)
    ptr = getter() if callable(getter) else getattr(delegate, "_delegate_ptr", None)
    if ptr is None:
        raise RuntimeError(f"cannot find the native pointer of {type(delegate).__name__}; "
                           "this LiteRT/TF version is not supported by dc_keras' report")
    return ctypes.cast(ptr, ctypes.c_void_p).value if not isinstance(ptr, int) else ptr


# --------------------------------------------------------------------------------------------
# Keras training side (dc_keras/train). Tested with Keras 3.15 (TensorFlow 2.21 backend).
# --------------------------------------------------------------------------------------------


def is_functional(model):
    """True for a Functional model (``keras.Model(inputs, outputs)`` or a subclass built that way).

    Why private: ``keras.src.models.functional.Functional`` is not exported; ``keras.Model(...)``
    returns it but there is no public ``isinstance`` target, and duck typing (``model.operations``)
    also matches subclassed models. Needed to choose between ``keras.models.clone_model`` (graph
    models) and the in-place path (subclassed models).
    """
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def first_call_arguments(layer):
    """``(args, kwargs)`` of ``layer``'s first call in a graph (its KerasTensors and the other
    arguments, e.g. ``block(query, value, training=False)``), or None if it was never called there.

    Why private: ``Layer._inbound_nodes`` / ``Node.arguments`` are not exported; the public
    ``layer.input`` gives the tensors flattened, without saying which argument each one was. Used
    to build a copy of a layer with no build() of its own by running its call() symbolically.
    """
    nodes = getattr(layer, "_inbound_nodes", None)
    arguments = getattr(nodes[0], "arguments", None) if nodes else None
    if arguments is None or not hasattr(arguments, "args") or not hasattr(arguments, "kwargs"):
        return None
    return tuple(arguments.args), dict(arguments.kwargs)


def flatten_layers(layer, include_self=False, recursive=True):
    """Every layer tracked by ``layer``, recursively (sublayers of sublayers, wrappers' inner layers,
    layers held in attributes of subclassed models and custom layers); ``recursive=False``: the
    layers it holds directly.

    Why private: ``Layer._flatten_layers`` is the only traversal that sees layers held by plain
    layers (``model.layers`` exists only on models and is not recursive). Used to find compression
    wrappers wherever a user put them.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def untrack_variables(layer, variables):
    """Remove ``variables`` from ``layer``'s tracked variables (its ``weights`` and, on JAX, the
    state ``fit()`` passes into and out of the compiled step); their values stay.

    Why private: Keras 3 has no public way to stop tracking a variable; ``Layer._untrack_variable``
    is what Keras itself uses (e.g. for a layer's seed generator). dc_keras takes a pruned layer's
    step counter and thresholds out of the JAX training step this way for the length of a
    ``fit()`` (the step does not use them) and puts them back with :func:`track_variables`.
    Tested: Keras 3.15 (JAX, TensorFlow, torch backends).
    """
    for variable in variables:
        layer._untrack_variable(variable)


def track_variables(layer, variables):
    """Track ``variables`` on ``layer`` again, in this order, after its other variables of the same
    kind (trainable / non-trainable). Why private: see :func:`untrack_variables`
    (``Layer._track_variable``; the tracker is locked once the layer is built)."""
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        for variable in variables:
            layer._track_variable(variable)
    finally:
        if locked:
            layer._tracker.lock()


# ---------------------------------------------------------------------------------------------
# export: per-tensor weight quantization in TFLite's converter (owner: export/pack, issue 15)
#
# Why: per-channel scales spread a clustered tensor's few shared values over many int8 codes
# (each output channel rescales them), which costs the weight sharing its Huffman gain; one scale
# per tensor keeps <= 2**bits codes. TF exposes no public switch: the converter's own attribute
# ``_experimental_disable_per_channel`` (read by ``convert()`` for both full-integer and
# dynamic-range quantization) is it.
# Tested: TensorFlow 2.21.0.
# ---------------------------------------------------------------------------------------------


def converter_per_tensor(converter):
    """Makes ``tf.lite.TFLiteConverter`` quantize weights per tensor instead of per channel."""
    if not hasattr(converter, "_experimental_disable_per_channel"):
        raise RuntimeError("this TensorFlow's TFLiteConverter has no _experimental_disable_per_channel "
                           "(tested with TF 2.21); per-tensor quantization is unavailable")
    converter._experimental_disable_per_channel = True
    return converter


# ---------------------------------------------------------------------------------------------
# train: is the TF graph being traced compiled by XLA? (owner: train/clustering, issue 16)
#
# Why: the clustered training step's native TF ops (dc_keras/train/_tf_ops.py) have CPU kernels
# only, no XLA lowering; inside ``tf.function(jit_compile=True)`` (``model.compile(jit_compile=True)``)
# they would fail to compile, so the step takes the XLA-compilable fallback there. TF has no public
# way to ask; ``tf.function`` marks the graph with an ``XLAControlFlowContext`` that TF's own
# ``control_flow_util.GraphOrParentsInXlaContext`` finds (also through outer graphs).
# Tested: TensorFlow 2.21.0. If it is gone, ``None`` ("cannot tell"): callers then take the path
# that works under XLA.
# ---------------------------------------------------------------------------------------------


def tf_in_xla_context():
    """True/False: the default TF graph (or one it is nested in) is XLA-compiled; ``None`` when
    this TensorFlow gives no way to tell."""
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return None
    check = getattr(control_flow_util, "GraphOrParentsInXlaContext", None)
    if check is None:
        return None
    return bool(check(tf.compat.v1.get_default_graph()))


# ---------------------------------------------------------------------------------------------
# train: is a layer being built inside a keras.StatelessScope? (owner: clustering)
#
# Why: a ClusterWrapper of a layer that was not built when wrapped clusters the weights the layer
# is built with. Keras builds a subclassed model's layers in a symbolic pass under a
# StatelessScope (torch: compute_output_spec; JAX: eval_shape): the variables created there are
# deferred (their values are placeholders, assignments go to the scope), so they cannot be
# clustered then. Keras exports ``keras.StatelessScope`` but not its ``in_stateless_scope()``.
# Tested: Keras 3.15.1. If it is gone, ``None`` ("cannot tell"): the caller then clusters.
# ---------------------------------------------------------------------------------------------


def in_stateless_scope():
    """True inside a ``keras.StatelessScope``, False outside; ``None`` when this Keras gives no way
    to tell."""
    try:
        from keras.src.backend.common.stateless_scope import in_stateless_scope as check
    except ImportError:
        return None
    return bool(check())


def stateless_scope_maps(variable):
    """True when the current ``keras.StatelessScope`` holds a value for ``variable`` (Keras-JAX's
    ``stateless_call``, e.g. fit()'s training step), False when it does not (the symbolic pass that
    builds a subclassed model: ``compute_output_spec``, ``load_model``'s rebuild, JAX's build call)
    or when there is no scope; ``None`` when this Keras gives no way to tell.

    Why private: as for :func:`in_stateless_scope`, the scope object (``get_stateless_scope()``) and
    its ``get_current_value(variable)`` are not exported. A ClusterWrapper whose layer was built in
    a symbolic pass waits there and clusters at the first use outside it; inside a stateless call
    with the variable mapped, its values are traced and it must refuse instead.
    Tested: Keras 3.15.1 (TensorFlow, JAX, torch backends)."""
    try:
        from keras.src.backend.common.stateless_scope import get_stateless_scope
    except ImportError:
        return None
    scope = get_stateless_scope()
    if scope is None:
        return False
    get = getattr(scope, "get_current_value", None)
    return None if get is None else get(variable) is not None


def current_stateless_scope():
    """The current ``keras.StatelessScope`` object, or ``None`` outside one (or when this Keras gives
    no way to get it).

    Why private: as above, ``get_stateless_scope()`` is not exported. Keras-JAX traces each
    training step (fit()'s, ``stateless_call``'s) inside one scope: a pruned layer called several
    times in that step (a shared layer) advances its step counter once, keyed on the scope.
    Tested: Keras 3.15.1 (JAX backend)."""
    try:
        from keras.src.backend.common.stateless_scope import get_stateless_scope
    except ImportError:
        return None
    return get_stateless_scope()


def current_call_context():
    """The context object Keras keeps for the outermost layer call running now (one per forward
    pass of a model, shared by every layer called inside it), or ``None`` outside a layer call (or
    when this Keras gives no way to get it).

    Why private: ``Layer.__call__`` creates it (``CallContext``, global attribute
    ``current_call_ctx``) at the outermost call and drops it when that call returns; nothing public
    names it. A training step run eagerly (torch, ``run_eagerly=True``, an eager custom loop) has
    no trace to key on: a pruned layer called several times in one forward pass (a shared layer)
    advances its step counter once, keyed on this object.
    Tested: Keras 3.15.1 (TensorFlow, JAX, torch backends)."""
    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return None
    return global_state.get_global_attribute("current_call_ctx")


# ---------------------------------------------------------------------------------------------
# train: a wrapper takes over its layer's legacy ``input_shape=`` argument (owner: _base)
#
# Why: ``keras.Sequential([wrapper(keras.layers.Dense(20, input_shape=(20,))), ...])`` (tfmot's
# guides) builds at construction only when its first layer holds the ``input_shape`` it was given,
# which Keras keeps in ``Layer._input_shape_arg`` (not in the config, no public accessor). Without
# it the model was built in fit()'s first, traced step: a ClusterWrapper cannot cluster there.
# tfmot's wrappers do the same (``kwargs['input_shape'] = layer._batch_input_shape``).
# Tested: Keras 3.15.1. If the attribute is gone, nothing is carried over.
# ---------------------------------------------------------------------------------------------


def carry_input_shape(wrapper, layer):
    """Give ``wrapper`` the ``input_shape=`` argument ``layer`` was created with, if any."""
    shape = getattr(layer, "_input_shape_arg", None)
    if shape is not None and getattr(wrapper, "_input_shape_arg", None) is None:
        wrapper._input_shape_arg = shape


# ---------------------------------------------------------------------------------------------
# train: a JAX fit() whose first training step fails keeps the model's weights (owner: backends)
#
# Why: Keras 3's JAX ``Model.fit`` reads every variable's value into ``state``, detaches the
# values from the variables (``_purge_model_variables``: ``v._value = None``) and calls the
# compiled step; its ``finally`` reattaches them (``jax_state_sync``) only from ``_jax_state``,
# which is set once a step has returned. An error raised while the first step is traced (our
# missing-PruningCallback error) therefore left every variable of the model empty. Just before
# raising, this hands ``fit``'s own ``state`` (the values it detached) to ``_jax_state``, so that
# ``finally`` puts them back. ``train_on_batch`` does not detach, but marks the model unsynced the
# same way: the same hand-over keeps a later sync from restoring an older state.
# Tested: Keras 3.15.1 with JAX 0.10.2. If the frame or its names change, nothing is done.
# ---------------------------------------------------------------------------------------------
_JAX_STATE_KEYS = ("trainable_variables", "non_trainable_variables", "optimizer_variables", "metrics_variables")


def jax_keep_fit_state():
    """Called while a Keras JAX training step is being traced, before raising out of it: lets the
    enclosing ``fit``/``train_on_batch`` reattach the values it detached. Returns True if it did."""
    import inspect
    import keras

    frame = inspect.currentframe()
    try:
        while frame is not None:
            code = frame.f_code
            path = code.co_filename.replace(os.sep, "/")
            if code.co_name in ("fit", "train_on_batch") and path.endswith("/backend/jax/trainer.py"):
                model, state = frame.f_locals.get("self"), frame.f_locals.get("state")
                if isinstance(model, keras.Model) and isinstance(state, tuple) and len(state) == 4 \
                        and not getattr(model, "_jax_state_synced", True):
                    model._jax_state = dict(zip(_JAX_STATE_KEYS, state))
                    return True
                return False
            frame = frame.f_back
        return False
    finally:
        del frame


# ---------------------------------------------------------------------------------------------
# train: a compiled .keras file's optimizer class belongs to the backend it was saved on
#
# Why: on the torch backend Keras replaces the standard optimizers by torch-only subclasses
# (``keras.src.backend.torch.optimizers.torch_adam.Adam``, ...) and the ``.keras`` file of a
# compiled model records that class. ``load_model`` (compile=True) on JAX or TensorFlow restores
# it, and its update calls ``torch._foreach_*`` on JAX / TF arrays: ``fit`` fails at its first step
# with "TypeError: expected Tensor as element 0 in argument 0, but got jaxlib._jax.ArrayImpl"
# ("... ResourceVariable" on TF), for plain Keras models as for ours (Keras's limitation, not a
# dc_keras layer's). The class's (private) module path is the only sign of it.
# Tested: Keras 3.15.1 with torch 2.13, JAX 0.10.2, TF 2.21 (JAX and TF optimizers are the
# backend-neutral ``keras.src.optimizers`` classes: files compiled there train on torch). If the
# layout changes, ``None``: no check, Keras's own error.
# ---------------------------------------------------------------------------------------------


def optimizer_backend(optimizer):
    """The backend whose own optimizer class ``optimizer`` is (``"torch"`` for the classes Keras
    swaps in on the torch backend), or ``None`` for a backend-neutral class. A wrapper
    (``LossScaleOptimizer``) answers for the optimizer it wraps."""
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None and inner is not optimizer:
        return optimizer_backend(inner)
    for cls in type(optimizer).__mro__:  # the first Keras class: a user's subclass is not Keras's
        parts = (getattr(cls, "__module__", None) or "").split(".")
        if parts[0] == "keras":
            return parts[3] if parts[:3] == ["keras", "src", "backend"] and len(parts) > 4 else None
    return None


# ---------------------------------------------------------------------------------------------
# train: a wrapper called with keyword arguments that mix tensors and Python values (owner: _base)
#
# Why: Keras binds a layer's call to ``Layer._call_signature`` (``inspect.signature(self.call)``,
# taken in ``Layer.__init__``) and refuses a parameter whose value nests tensors with non-tensors.
# The wrappers' ``call(inputs, *args, training=None, **kwargs)`` collects every keyword in one
# ``kwargs`` dict, so ``mha(q, v, attention_mask=m, use_causal_mask=True)`` or
# ``mha(query=q, value=v, return_attention_scores=True)``, which the plain MultiHeadAttention takes,
# stopped prune()/cluster() with "In a nested call() argument, you cannot mix tensors and
# non-tensors". For such a call the signature Keras binds lists each of those keywords as a
# parameter of its own, as the plain layer's does; the call itself is unchanged.
# Tested: Keras 3.15.1 (CallSpec(self._call_signature, ...) in Layer.__call__). If the attribute
# is gone, nothing is changed (Keras's own error).
# ---------------------------------------------------------------------------------------------


class keyword_parameters:
    """Context manager: while it is open, ``layer``'s call signature as Keras binds it lists
    ``names`` as keyword-only parameters (default None) of their own instead of inside ``**kwargs``.

    Example:
        >>> query, value = np.ones((1, 3, 8), "float32"), np.ones((1, 5, 8), "float32")
        >>> mha = keras.layers.MultiHeadAttention(2, 4)
        >>> _ = mha(query, value)  # built: a wrapper takes a built attention layer
        >>> wrapper = dc_keras.cluster(mha, bits=8)
        >>> with keyword_parameters(wrapper, ["value", "return_attention_scores"]):
        ...     outputs, scores = keras.layers.Layer.__call__(wrapper, query, value=value, return_attention_scores=True)
        >>> tuple(scores.shape)
        (1, 2, 3, 5)
    """

    def __init__(self, layer, names):
        self.layer, self.names, self.saved = layer, list(names), None

    def __enter__(self):
        import inspect

        signature = getattr(self.layer, "_call_signature", None)
        if not isinstance(signature, inspect.Signature) or not self.names:
            return self
        kinds = inspect.Parameter
        known = set(signature.parameters)
        parameters = [p for p in signature.parameters.values() if p.kind is not kinds.VAR_KEYWORD]
        extra = [kinds(name, kinds.KEYWORD_ONLY, default=None) for name in self.names if name not in known]
        rest = [p for p in signature.parameters.values() if p.kind is kinds.VAR_KEYWORD]
        self.saved = signature
        self.layer._call_signature = signature.replace(parameters=parameters + extra + rest)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            self.layer._call_signature = self.saved
        return False


# ---------------------------------------------------------------------------------------------
# train: a check on every value assigned to one Keras variable (owner: train, review s47)
#
# Why: a cluster wrapper's assignments variable must refuse an index outside its codebook when
# it is put in (layer/model.set_weights, a file's load, a checkpoint restore, a user's
# variable.assign, JAX's write-back of the training state), else JAX's gather clamps it silently.
# Keras has no public per-variable hook (a ``constraint`` runs after optimizer updates only), so
# the variable's class is swapped for a subclass of its backend class (keras.src.backend.*.core.
# Variable, private) that runs the check in ``assign`` first. Relies on: every route above going
# through ``Variable.assign`` and the backend class adding no __slots__ (Python's __class__ swap).
# Tested: Keras 3.15 on TensorFlow 2.21 and JAX 0.10.2 (test_training_wrappers_and_assignments is in BACKEND_TESTS: the
# PyTorch pass of make test runs it too); tests/test_compat.py.
# ---------------------------------------------------------------------------------------------
_CHECKED_VARIABLE_CLASSES = {}  # a backend variable class -> its subclass whose assign() checks first


def check_assigned_values(variable, check):
    """Make ``variable.assign(value)`` call ``check(value)`` first: ``check`` raises to refuse the
    value (nothing is stored then) or returns to let the assignment go on. Set again, the new check
    replaces the old. The variable's type name, ``repr`` and ``isinstance`` relations are kept.

    Example:
        >>> v = keras.Variable(np.zeros(3, "int32"), trainable=False)
        >>> def nonnegative(value):
        ...     if np.min(value) < 0:
        ...         raise ValueError("negative")
        >>> check_assigned_values(v, nonnegative)
        >>> v.assign(np.array([-1, 0, 1], "int32"))
        Traceback (most recent call last):
        ValueError: negative
    """
    base = type(variable)
    if getattr(base, "_dc_keras_checked", False):
        base = base.__mro__[1]
    if base not in _CHECKED_VARIABLE_CLASSES:
        def assign(self, value):
            self._dc_keras_check(value)
            return base.assign(self, value)

        _CHECKED_VARIABLE_CLASSES[base] = type(base.__name__, (base,), {
            "assign": assign, "_dc_keras_checked": True, "__module__": base.__module__,
            "__qualname__": base.__qualname__, "__doc__": base.__doc__})
    variable.__class__ = _CHECKED_VARIABLE_CLASSES[base]
    variable._dc_keras_check = check


# ---------------------------------------------------------------------------------------------
# train: a TensorFlow variable's own ``trainable`` (owner: train, session 52)
#
# Why: Keras on TensorFlow makes a variable's ``tf.Variable`` with the Keras flag as it is when the
# variable is initialized, and ``variable.trainable = ...`` later changes only the Keras flag
# (torch's setter also sets ``requires_grad``); ``tf.GradientTape`` watches a ``tf.Variable`` only
# if its own ``trainable`` is True. A ClusterWrapper built in a subclassed model's symbolic pass marks
# the inner kernel untrainable before Keras initializes it (deferred), so its tf.Variable is made
# untrainable; ``strip`` (in place there) hands the layer back with the Keras flag True, and
# training the stripped model gave the kernel no gradient ("Gradients do not exist for variables
# ['net/dense/dense/kernel']"): it never trained. ``tf.Variable.trainable`` is read-only; its
# private ``_trainable`` is what the tape reads.
# Tested: TensorFlow 2.21, Keras 3.15.1. Nothing on the other backends, nor when the attribute is gone.
# ---------------------------------------------------------------------------------------------


def sync_tf_trainable(variable):
    """Give a Keras variable's ``tf.Variable`` (TensorFlow backend) the Keras ``trainable`` flag, so
    that ``tf.GradientTape`` watches it as Keras's trainer expects; returns whether it changed it."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:
        value = variable.value
    except Exception:  # noqa: BLE001 (not initialized yet: nothing made to sync)
        return False
    if value is None or not hasattr(value, "_trainable") or bool(value._trainable) == bool(variable.trainable):
        return False
    value._trainable = bool(variable.trainable)
    return True
