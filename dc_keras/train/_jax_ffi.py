"""The clustered training step's centroid gather on JAX through native XLA CPU kernels (issue 16).

``libdc_jax_ffi.so`` (``jax_kernels/dc_centroids.cc``, built by ``make jax-ffi``, part of
``make install``) holds two XLA FFI handlers, called with JAX's public ``jax.ffi`` API (JAX >= 0.5.0;
with an older JAX, down to setup.cfg's floor, the ``lax.gather`` path runs):
``DcCentroidGather`` (``concat(centroids, [0])[assignments]``) and ``DcCentroidSums`` (each
centroid's members' gradients summed in dc_keras's part order, the one the generic ``lax.gather``
path's scatter-add uses too: ``dc_keras.train.clustering.SUMS_PARTS``; the parts of a large
kernel are shared with one thread of XLA's pool). :func:`gather` ties them together with
``jax.custom_vjp``. The results are bit-identical to the ``lax.gather`` path, which runs instead
when the library is absent, when the arrays are not float32/int32 or not on the CPU, or when
turned off. The two kernels are each other's transpose, so gradients of gradients work;
forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) of the centroids does not, on either
path (JAX says so).

``DC_KERAS_JAX_FFI``: ``auto`` (default: use the library when present; its absence is logged once
at INFO level on the ``dc_keras`` logger, a library present that fails to load or its check at
WARNING), ``0`` (never use it), ``1`` (required: raise if it
cannot load). ``DC_KERAS_JAX_FFI_LIBRARY`` names a library built elsewhere.
``DC_KERAS_JAX_FFI_SPLIT``: ``0`` (default: each kernel call on one thread) or ``1`` (large calls
shared with a pool thread; see :func:`split_mode`).

Example:
    >>> from dc_keras.train import _jax_ffi
    >>> _jax_ffi.available()  # True after `make install` / `make jax-ffi`
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

from dc_keras.train import _kernels

LIBRARY_NAME = "libdc_jax_ffi.so"
MIN_JAX = "0.5.0"  # the first JAX with the public jax.ffi API used here
_MODE_ENV, _PATH_ENV, _SPLIT_ENV = "DC_KERAS_JAX_FFI", "DC_KERAS_JAX_FFI_LIBRARY", "DC_KERAS_JAX_FFI_SPLIT"
_GATHER, _SUMS = "dc_keras_centroid_gather", "dc_keras_centroid_sums"
_lock = threading.Lock()
_state = {}  # "ok": bool once decided; "why": the reason it is off; "gather": the custom_vjp function


def library_path() -> str:
    """Where the library is looked for: ``$DC_KERAS_JAX_FFI_LIBRARY`` or ``dc_keras/_native/``."""
    return _kernels.library_path(LIBRARY_NAME, _PATH_ENV)


def _mode() -> str:
    return _kernels.mode(_MODE_ENV)


def _load():
    """Registers the two FFI targets; returns ``None`` or the reason they are unavailable."""
    if _mode() == "0":
        return f"{_MODE_ENV}=0"
    split_mode()  # a bad value is the caller's error (raised), not a failed test call of the library
    path = library_path()
    if not os.path.isfile(path):
        return f"{path} not found (build it with `make jax-ffi`, part of `make install`)"
    import jax

    if not hasattr(jax, "ffi"):  # jax.ffi arrived in JAX 0.5.0 (0.4.x: jax.extend.ffi, another API)
        return f"JAX {jax.__version__} has no jax.ffi (the native kernels need JAX >= {MIN_JAX})"
    try:
        lib = ctypes.CDLL(path)
        jax.ffi.register_ffi_target(_GATHER, jax.ffi.pycapsule(lib.DcCentroidGather), platform="cpu")
        jax.ffi.register_ffi_target(_SUMS, jax.ffi.pycapsule(lib.DcCentroidSums), platform="cpu")
    except (OSError, AttributeError, RuntimeError, ValueError) as err:  # stale/foreign library, old jax
        return f"{path} did not load ({type(err).__name__}: {err}); rebuild it with `make jax-ffi`"
    return _smoke_test(path)


def _smoke_test(path):
    """Runs both kernels once (a library built against another jaxlib can register and still fail
    when called): ``None`` if they give numpy's answer, else the reason. Runs in a thread of its
    own (:func:`dc_keras.train._kernels.check_in_thread`: JAX's trace state is per thread)."""
    return _kernels.check_in_thread(lambda: _smoke_test_here(path), path, "jax-ffi")


def _smoke_test_here(path):
    import jax
    import numpy as np

    case = _kernels.check_case()
    centroids, assignments, upstream = case
    try:
        shared = np.asarray(jax.jit(_gather_fn())(centroids, assignments))
        grad = np.asarray(jax.jit(jax.grad(lambda c: (_gather_fn()(c, assignments) * upstream).sum()))(centroids))
    except Exception as err:  # any failure of a stale or foreign library means: do not use it
        return f"{path} failed a test call ({type(err).__name__}: {err}); rebuild it with `make jax-ffi`"
    return _kernels.check_result(case, shared, grad, path, "jax-ffi")


def available() -> bool:
    """True when the native kernels are registered with JAX (decided once per process).

    Raises ``RuntimeError`` when ``DC_KERAS_JAX_FFI=1`` and they cannot be."""
    return _kernels.decide(_state, _lock, _load, _MODE_ENV, library_path, "kernels", "JAX", "lax.gather")


def unavailable_reason():
    """Why the native centroid kernels are off (e.g. the library is missing), or None when they are
    in use or :func:`available` was not asked yet."""
    return _state.get("why")


def split_mode() -> bool:
    """``DC_KERAS_JAX_FFI_SPLIT``: ``0`` (default) keeps each call on one thread; ``1`` shares a
    large gather's chunks and a large kernel's sums' parts with one thread of XLA's pool (same bits
    either way; read when a step is traced). Default 0 because sharing did not pay on 2 CPUs: idle
    LeNet-300-100 step, clustered vs plain, 1.12x wall / 1.19x CPU shared against 1.11x / 1.04x on
    one thread (2026-11-30; under load sharing cost 5-10 % more)."""
    value = os.environ.get(_SPLIT_ENV, "0").strip() or "0"
    if value not in ("0", "1"):
        raise ValueError(f"{_SPLIT_ENV} must be 0 or 1, got {value!r}.")
    return value == "1"


def usable(centroids, assignments) -> bool:
    """The kernels take float32 centroids and int32 assignments, on the CPU (other dtypes, e.g.
    under a mixed precision policy, take the ``lax.gather`` path: logged once at INFO)."""
    import jax

    if 0 in assignments.shape or 0 in centroids.shape or jax.default_backend() != "cpu":
        return False
    if str(centroids.dtype) != "float32" or str(assignments.dtype) != "int32" or centroids.ndim != 1:
        if available():  # skipped although built: said once (its absence is said by available())
            _kernels.note_skipped("JAX", "lax.gather", centroids, assignments)
        return False
    return available()


def gather(centroids, assignments):
    """``concat(centroids, [0])[assignments]`` with the per-centroid sums as its gradient (see the
    module docstring). Call only when :func:`usable` says so."""
    return _gather_fn()(centroids, assignments)


def _gather_fn():
    if "gather" not in _state:
        import jax
        import numpy as np

        def call(target, shape, dtype, *args):
            return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype), vmap_method="sequential")(
                *args, split=np.bool_(split_mode()))

        # The gather and the sums are each other's transpose: each one's gradient is the other, so
        # reverse-over-reverse differentiation works too (forward mode, jax.jvp, does not: a
        # custom_vjp function has none).
        def no_cotangent(assignments):  # the int input's
            return np.zeros(assignments.shape, jax.dtypes.float0)

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def gather_n(n, centroids, assignments):  # noqa: ARG001 (n, static: the sums need it)
            return call(_GATHER, assignments.shape, centroids.dtype, centroids, assignments)

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def sums_n(n, upstream, assignments):
            return call(_SUMS, (n,), upstream.dtype, upstream, assignments)

        gather_n.defvjp(lambda n, c, a: (gather_n(n, c, a), a),
                        lambda n, a, upstream: (sums_n(n, upstream, a), no_cotangent(a)))
        sums_n.defvjp(lambda n, u, a: (sums_n(n, u, a), a),
                      lambda n, a, ct: (gather_n(n, ct, a), no_cotangent(a)))

        def fn(centroids, assignments):
            return gather_n(int(centroids.shape[0]), centroids, assignments)

        _state["gather"] = fn
    return _state["gather"]
