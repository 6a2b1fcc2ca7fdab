"""dc_keras: Deep Compression (Han, Mao & Dally, ICLR 2016) for Keras 3 and TensorFlow Lite.

Pruning and trained weight sharing inside ``model.fit``, then a ``.tflite`` whose weights are
Huffman-packed and decoded once at load time by the ``HuffDecode`` custom op.

Submodules and the main entry points load lazily, so ``import dc_keras`` is cheap and both
``dc_keras.models.lenet_5`` and ``from dc_keras.models import lenet_5`` work.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_SUBMODULES = (
    "cli",
    "codec",
    "datasets",
    "export",
    "models",
    "pipeline",
    "runtime",
    "schedules",
    "train",
)

# Top-level name -> module that defines it.
_ATTRIBUTES = {
    "prune": "dc_keras.train",
    "cluster": "dc_keras.train",
    "strip": "dc_keras.train",
    "coverage": "dc_keras.train",
    "PruningCallback": "dc_keras.train",
    "sensitivity": "dc_keras.train",
    "suggest_sparsity": "dc_keras.train",
    "plot_sensitivity": "dc_keras.train",
}


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Imports ``dc_keras.train`` right after the first ``import keras`` of the process.

    ``dc_keras.train`` registers the wrapper layers and schedules with Keras. Doing it when Keras
    arrives, rather than importing Keras (and TensorFlow, seconds) in ``import dc_keras``, keeps
    Keras-free uses fast: ``dc-keras pack``/``inspect``/``unpack``, the codec, the runtime.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # one shot; the normal finders locate keras
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            importlib.import_module("dc_keras.train")

        spec.loader.exec_module = exec_then_register  # this spec's own loader instance
        return spec


def _register_keras_objects():
    """Registers the wrapper layers and schedules with Keras, so that
    ``keras.saving.load_model("pruned.keras")`` works after ``import dc_keras`` with no
    ``custom_objects``, whichever of the two was imported first. Without Keras (e.g. codec-only
    use on a device) nothing is imported."""
    if "keras" in sys.modules:
        importlib.import_module("dc_keras.train")
    elif importlib.util.find_spec("keras") is not None:
        sys.meta_path.insert(0, _RegisterAfterKerasImport())


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"dc_keras.{name}")
        globals()[name] = module
        return module
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dc_keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_ATTRIBUTES))


__all__ = list(_SUBMODULES) + list(_ATTRIBUTES)

_register_keras_objects()
