"""dc_keras: Deep Compression (Han, Mao & Dally, ICLR 2016) for Keras 3 and TensorFlow Lite.

Pruning and trained weight sharing inside ``model.fit``, then a ``.tflite`` whose weights are
Huffman-packed and decoded once at load time by the ``HuffDecode`` custom op.

Submodules and the main entry points load lazily, so ``import dc_keras`` is cheap and both
``dc_keras.models.lenet_5`` and ``from dc_keras.models import lenet_5`` work.
"""
import sys as _sys
from importlib import abc as _abc
from importlib import import_module as _import_module
from importlib import util as _util

__version__ = "0.1.0"

#: The public API, one row per name: name -> module that defines it (a submodule maps to itself).
#: ``dir(dc_keras)`` and ``__all__`` are this table (tests/test_surface.py checks it); to publish a
#: name, add its row here.
_PUBLIC_API = {
    # submodules
    "cli": "dc_keras.cli",
    "codec": "dc_keras.codec",
    "compat": "dc_keras.compat",  # compat.tfmot: the tfmot drop-in
    "datasets": "dc_keras.datasets",
    "demo": "dc_keras.demo",
    "export": "dc_keras.export",
    "models": "dc_keras.models",
    "pipeline": "dc_keras.pipeline",
    "runtime": "dc_keras.runtime",
    "schedules": "dc_keras.schedules",
    "train": "dc_keras.train",
    # training entry points
    "prune": "dc_keras.train",
    "cluster": "dc_keras.train",
    "strip": "dc_keras.train",
    "coverage": "dc_keras.train",
    "PruningCallback": "dc_keras.train",
    "sensitivity": "dc_keras.train",
    "suggest_sparsity": "dc_keras.train",
    "suggest_bits": "dc_keras.train",
    "plot_sensitivity": "dc_keras.train",
}


class _RegisterAfterKerasImport(_abc.MetaPathFinder):
    """Imports ``dc_keras.train`` right after the first ``import keras`` of the process.

    ``dc_keras.train`` registers the wrapper layers and schedules with Keras. Doing it when Keras
    arrives, rather than importing Keras (and TensorFlow, seconds) in ``import dc_keras``, keeps
    Keras-free uses fast: ``dc-keras pack``/``inspect``/``unpack``, the codec, the runtime.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _sys.meta_path.remove(self)  # one shot; the normal finders locate keras
        spec = _util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _import_module("dc_keras.train")

        spec.loader.exec_module = exec_then_register  # this spec's own loader instance
        return spec


def _register_keras_objects():
    """Registers the wrapper layers and schedules with Keras, so that
    ``keras.saving.load_model("pruned.keras")`` works after ``import dc_keras`` with no
    ``custom_objects``, whichever of the two was imported first. Without Keras (e.g. codec-only
    use on a device) nothing is imported."""
    if "keras" in _sys.modules:
        _import_module("dc_keras.train")
    elif _util.find_spec("keras") is not None:
        _sys.meta_path.insert(0, _RegisterAfterKerasImport())


def __getattr__(name):
    where = _PUBLIC_API.get(name)
    if where is None:
        raise AttributeError(f"module 'dc_keras' has no attribute {name!r}")
    module = _import_module(where)
    value = module if where == f"dc_keras.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(_PUBLIC_API) | {n for n in globals() if n.startswith("__")})


__all__ = list(_PUBLIC_API)

_register_keras_objects()
