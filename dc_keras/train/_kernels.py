"""Where the training step's optional native kernel libraries live and how they are switched:
shared by :mod:`dc_keras.train._jax_ffi` and :mod:`dc_keras.train._tf_ops` (each library is built
and checked on its own, so each has its own pair of environment variables)."""
from __future__ import annotations

import os


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
