"""The clustered training step's centroid gather on TensorFlow through native CPU ops (issue 16).

``libdc_tf_ops.so`` (``jax_kernels/dc_centroids_tf.cc``, built by ``make tf-ops``, part of
``make install``; the same kernel loops as the JAX backend's FFI kernels, shared through
``jax_kernels/dc_centroids_core.h``) holds two TF ops, loaded with the public
``tf.load_op_library``: ``DcCentroidGather`` (``concat(centroids, [0])[assignments]``) and
``DcCentroidSums`` (each centroid's members' gradients summed in dc_keras's part order, as the
other paths' ``tf.math.unsorted_segment_sum`` / XLA scatter-add over one set of sums per part sum
them: ``dc_keras.train.clustering.SUMS_PARTS``).
:func:`gather` ties them together with ``tf.custom_gradient`` (each op's gradient is the other, so
gradients of gradients work). The results are bit-identical to the path without the library
(XLA-compiled ``tf.gather`` / ``unsorted_segment_sum``), which runs instead when the library is
absent or fails its first-use check, when the tensors are not float32/int32, when a GPU is
visible (the ops are CPU-only), inside an XLA-compiled function (``jit_compile=True``: the ops
have no XLA kernels), or when turned off. Only the training step uses them: inference
and ``strip`` keep the plain ``tf.gather``. Each op alone on LeNet-300-100's fc1 (235,200 entries,
33 slots; ``benchmarks/bench_centroid_ops.py``, pilot on a loaded 2-core machine): gather ~60-105 us
vs ~290-400 us for the XLA call, sums ~300-460 us vs ~570-820 us (90 % of the entries in the zero
slot, as after pruning: ~95-155 us vs ~1,240-1,400 us).

``DC_KERAS_TF_OPS``: ``auto`` (default: use the library when present; its absence is logged once
at INFO level on the ``dc_keras`` logger, a library present that fails to load or its check at
WARNING), ``0`` (never use it), ``1`` (required: raise if it
cannot load). ``DC_KERAS_TF_OPS_LIBRARY`` names a library built elsewhere. (The JAX backend's
switch is ``DC_KERAS_JAX_FFI``, same values: each backend's library is built and checked on its
own.)

Example:
    >>> from dc_keras.train import _tf_ops
    >>> _tf_ops.available()  # True after `make install` / `make tf-ops`
"""
from __future__ import annotations

import os
import threading

from dc_keras.train import _kernels

LIBRARY_NAME = "libdc_tf_ops.so"
_MODE_ENV, _PATH_ENV = "DC_KERAS_TF_OPS", "DC_KERAS_TF_OPS_LIBRARY"
_lock = threading.Lock()
_state = {}  # "ok": bool once decided; "why": the reason it is off; "ops": the two loaded ops (when ok)


def library_path() -> str:
    """Where the library is looked for: ``$DC_KERAS_TF_OPS_LIBRARY`` or ``dc_keras/_native/``."""
    return _kernels.library_path(LIBRARY_NAME, _PATH_ENV)


def _mode() -> str:
    return _kernels.mode(_MODE_ENV)


def _load():
    """Loads the op library into ``_state["ops"]`` (the two ops): ``None``, or the reason it is
    unavailable (nothing stored)."""
    if _mode() == "0":
        return f"{_MODE_ENV}=0"
    path = library_path()
    if not os.path.isfile(path):
        return f"{path} not found (build it with `make tf-ops`, part of `make install`)"
    import tensorflow as tf

    try:
        module = tf.load_op_library(path)
        ops = (module.dc_centroid_gather, module.dc_centroid_sums)
    except (tf.errors.OpError, OSError, AttributeError, RuntimeError, ValueError) as err:  # stale/foreign
        return f"{path} did not load ({type(err).__name__}: {err}); rebuild it with `make tf-ops`"
    why = _smoke_test(path, ops)
    if why is None:
        _state["ops"] = ops
    return why


def _smoke_test(path, ops):
    """Runs both ops once, eagerly (a library built against another TF can load and still fail
    when called): ``None`` if they give numpy's answer, else the reason. Runs in a thread of its
    own (:func:`dc_keras.train._kernels.check_in_thread`: TF's graph and tape state is per thread,
    so the check runs at once instead of being staged into the training step's graph)."""
    return _kernels.check_in_thread(lambda: _smoke_test_here(path, ops), path, "tf-ops")


def _smoke_test_here(path, ops):
    import tensorflow as tf

    case = _kernels.check_case()
    centroids, assignments, upstream = case
    if not tf.executing_eagerly():
        return "the test call could not run eagerly (TF1-style graph mode?)"
    try:
        c = tf.constant(centroids)
        with tf.GradientTape() as tape:
            tape.watch(c)
            shared = _gather_with(ops, c, tf.constant(assignments))
            loss = tf.reduce_sum(shared * upstream)
        grad = tape.gradient(loss, c).numpy()
        shared = shared.numpy()
    except Exception as err:  # noqa: BLE001 (any failure of a stale or foreign library: do not use it)
        return f"{path} failed a test call ({type(err).__name__}: {err}); rebuild it with `make tf-ops`"
    return _kernels.check_result(case, shared, grad, path, "tf-ops")


def available() -> bool:
    """True when the native ops are loaded and passed their check (decided once per process).

    Raises ``RuntimeError`` when ``DC_KERAS_TF_OPS=1`` and they cannot be."""
    return _kernels.decide(_state, _lock, _load, _MODE_ENV, library_path, "ops", "TF", "XLA-compiled tf.gather")


def unavailable_reason():
    """Why the native centroid ops are off (e.g. the library is missing), or None when they are
    in use or :func:`available` was not asked yet."""
    return _state.get("why")


def usable(centroids, assignments) -> bool:
    """The ops take float32 centroids (a vector) and int32 assignments, on the CPU (other dtypes,
    e.g. under a mixed precision policy, take the fallback: logged once at INFO)."""
    import tensorflow as tf

    if centroids.shape.rank != 1 or centroids.shape[0] in (None, 0) or tf.config.list_logical_devices("GPU"):
        return False
    from dc_keras import _compat

    if _compat.tf_in_xla_context() is not False:  # no XLA kernels (jit_compile=True), or cannot tell
        return False
    if centroids.dtype != tf.float32 or assignments.dtype != tf.int32:
        if available():  # skipped although built: said once (its absence is said by available())
            _kernels.note_skipped("TF", "XLA-compiled tf.gather", centroids, assignments)
        return False
    return available()


def gather(centroids, assignments):
    """``concat(centroids, [0])[assignments]`` with the per-centroid sums as its gradient (see the
    module docstring). Call only when :func:`usable` says so."""
    import tensorflow as tf

    # Tensors, not variables, inside tf.custom_gradient (a variable read there would need a
    # `variables` gradient); an IndexedSlices upstream (e.g. from an Embedding) is made dense.
    return _gather_with(_state["ops"], tf.convert_to_tensor(centroids), tf.convert_to_tensor(assignments))


def _gather_with(ops, centroids, assignments):
    import tensorflow as tf

    gather_op, sums_op = ops
    n = int(centroids.shape[0])

    @tf.custom_gradient
    def gather_(c):
        return gather_op(c, assignments), lambda upstream: sums_(tf.convert_to_tensor(upstream))

    @tf.custom_gradient
    def sums_(upstream):  # the gather's gradient; its own gradient is the gather again
        return sums_op(upstream, assignments, n=n), lambda ct: gather_(tf.convert_to_tensor(ct))

    return gather_(centroids)
