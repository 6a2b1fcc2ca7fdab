"""Where the training step's optional native kernel libraries live and how they are switched:
shared by :mod:`dc_keras.train._jax_ffi` and :mod:`dc_keras.train._tf_ops` (each library is built
and checked on its own, so each has its own pair of environment variables)."""
from __future__ import annotations

import logging
import os
import threading

_noted = set()  # the reasons note_skipped has logged (once each per process)
_noted_lock = threading.Lock()


def library_path(name: str, path_env: str) -> str:
    """``$path_env`` if set, else ``dc_keras/_native/<name>`` (where ``make install`` puts it)."""
    override = os.environ.get(path_env)
    if override:
        return os.path.abspath(override)
    native = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_native")
    return os.path.join(native, name)


def mode(mode_env: str) -> str:
    """``$mode_env``: ``auto`` (default: use the library when it loads and passes its check), ``0``
    (never) or ``1`` (required: its absence is an error)."""
    value = os.environ.get(mode_env, "auto").strip().lower() or "auto"
    if value not in ("auto", "0", "1"):
        raise ValueError(f"{mode_env} must be auto, 0 or 1, got {value!r}.")
    return value


def log_level(mode_value: str, path: str) -> int:
    """The level of the note that the library is not used: INFO when it is switched off or absent
    (not built: a choice), WARNING when it is there but failed to load or its check (stale, built
    for another jaxlib / TF: the fix is a rebuild, and INFO is not shown by default)."""
    return logging.INFO if mode_value == "0" or not os.path.isfile(path) else logging.WARNING


def decide(state, lock, load, mode_env: str, library_path, what: str, framework: str, route: str) -> bool:
    """Whether a native library is used, decided once per process under ``lock`` and kept in
    ``state`` (``"ok"``, ``"why"``): ``load()`` returns ``None`` (loaded and checked) or the reason
    it is unavailable. With ``$mode_env=1`` that reason is a ``RuntimeError`` (nothing kept: asked
    again next time); otherwise it is logged once (:func:`log_level`) and ``route`` runs on
    ``framework`` instead. ``library_path``: the module's function (read after the load, as the
    note names the file it looked at); ``what``: "kernels" / "ops", as the error names them."""
    with lock:
        if "ok" not in state:
            why = load()
            state.update(ok=why is None, why=why)
            if why is not None:
                if mode(mode_env) == "1":
                    state.clear()
                    raise RuntimeError(f"{mode_env}=1 but the native centroid {what} are unavailable: {why}.")
                logging.getLogger("dc_keras").log(
                    log_level(mode(mode_env), library_path()),
                    "dc_keras: clustered training on %s uses %s (same results, slower): %s", framework, route, why)
        return state["ok"]


def check_in_thread(check, path: str, target: str):
    """Runs the first-use test call ``check()`` (``None`` or the reason the library is not used) in
    a thread of its own, ``dc_keras-<target>-check``: the first use usually comes while Keras
    traces the training step, and JAX's trace state and TF's graph and tape state are per thread
    (in the tracing thread the call would be staged into that trace, not run; TF's
    ``tf.init_scope`` leaves the graph but also pauses the tapes: no gradient to check).
    ``target``: the ``make`` target that rebuilds the library, named if the call does not finish."""
    result = []
    worker = threading.Thread(target=lambda: result.append(check()), name=f"dc_keras-{target}-check")
    worker.start()
    worker.join()
    return result[0] if result else f"{path}: the test call did not finish; rebuild it with `make {target}`"


def check_case():
    """The first-use test call's inputs: ``(centroids, assignments, upstream)``; 5 centroids plus
    the zero slot, 70,000 entries (vector loops, tails, all 8 parts of the sums and, on JAX, the
    two-thread gather and sums)."""
    import numpy as np

    rng = np.random.default_rng(0)
    centroids = rng.normal(size=5).astype("float32")
    assignments = rng.integers(0, 6, size=70_000).astype("int32")
    upstream = rng.normal(size=70_000).astype("float32")
    return centroids, assignments, upstream


def check_result(case, shared, grad, path: str, target: str):
    """``None`` when the test call's gather ``shared`` and centroid gradient ``grad`` equal numpy's
    bit for bit (sums in dc_keras's part order), else the reason, naming the ``make`` target that
    rebuilds."""
    import numpy as np

    from dc_keras.train.clustering import centroid_sums_reference

    centroids, assignments, upstream = case
    sums = centroid_sums_reference(upstream, assignments, 6)
    if not (np.array_equal(shared, np.append(centroids, 0)[assignments]) and np.array_equal(grad, sums[:5])):
        return f"{path} gave wrong results in a test call; rebuild it with `make {target}`"
    return None


def note_skipped(framework: str, route: str, centroids, assignments) -> None:
    """Logs once (INFO, ``dc_keras`` logger) per framework and dtypes that the native kernels were
    skipped for tensors they do not take (float16 / bfloat16 centroids under a mixed precision
    policy, int64 assignments): the fit step then takes ``route``, slower, without it being said."""
    why = f"{centroids.dtype} centroids of rank {len(centroids.shape)}, {assignments.dtype} assignments"
    with _noted_lock:
        if (framework, why) in _noted:
            return
        _noted.add((framework, why))
    logging.getLogger("dc_keras").info(
        "dc_keras: clustered training on %s uses %s for %s (slower): the native centroid kernels take "
        "float32 centroids (a vector) and int32 assignments; a mixed precision policy computes the "
        "layers in float16 / bfloat16", framework, route, why)
