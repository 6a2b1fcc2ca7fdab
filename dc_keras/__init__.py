"""dc_keras: Deep Compression (Han, Mao & Dally, ICLR 2016) for Keras 3 and TensorFlow Lite.

Pruning and trained weight sharing inside ``model.fit``, then a ``.tflite`` whose weights are
Huffman-packed and decoded once at load time by the ``HuffDecode`` custom op.

Submodules and the main entry points load lazily, so ``import dc_keras`` is cheap and both
``dc_keras.models.lenet_5`` and ``from dc_keras.models import lenet_5`` work.
"""
import importlib

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
    "PruningCallback": "dc_keras.train",
    "sensitivity": "dc_keras.train",
    "suggest_sparsity": "dc_keras.train",
    "plot_sensitivity": "dc_keras.train",
}


def _register_keras_objects():
    """Registers the wrapper layers and schedules with Keras when Keras is installed, so that
    ``keras.saving.load_model("pruned.keras")`` works after a plain ``import dc_keras`` with no
    ``custom_objects``. Without Keras (e.g. codec-only use on a device) nothing is imported."""
    import importlib.util

    if importlib.util.find_spec("keras") is not None:
        importlib.import_module("dc_keras.train")


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
