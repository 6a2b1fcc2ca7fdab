"""What ``prune_scope()`` / ``cluster_scope()`` put in scope: tfmot's (Keras 2) wrapper class names,
each raising one error that says how to bring such a file to Keras 3.

dc_keras's own wrappers are registered Keras serializables and need no scope. A file saved by
tfmot with its wrappers still in it (a checkpoint taken during pruning or clustering) names
``PruneLowMagnitude`` / ``ClusterWeights``, which no Keras 3 class can rebuild; without these
names in scope Keras only says "Unknown layer ... custom_object_scope".
"""
import contextlib

import keras

_TFMOT_WRAPPERS = {
    "PruneLowMagnitude": "strip_pruning",
    "ClusterWeights": "strip_clustering",
    "ClusterWeightsRNN": "strip_clustering",
    "ClusterWeightsMHA": "strip_clustering",
}


def _stand_in(class_name, strip_name):
    def from_config(cls, config, custom_objects=None):  # noqa: ARG001 (Keras passes it)
        inner = config.get("layer", {}) if isinstance(config, dict) else {}
        name = inner.get("config", {}).get("name") if isinstance(inner, dict) else None
        raise ValueError(
            f"This file holds tfmot's Keras 2 {class_name} wrapper of layer {name!r}, which Keras 3 cannot "
            f"rebuild. In tfmot (tf_keras, TF_USE_LEGACY_KERAS=1) call {strip_name}(model) and save that model "
            "as .h5 (tf_keras's .keras files hold Keras 2 configs); keras.saving.load_model(path, compile=False) "
            "reads it here with its weights (and zeros), and "
            "prune_low_magnitude / cluster_weights continue from it (docs/migrating_from_tfmot.md).")

    return type(class_name, (keras.layers.Layer,), {"from_config": classmethod(from_config),
                                                     "__module__": __name__})


_STAND_INS = {name: _stand_in(name, strip) for name, strip in _TFMOT_WRAPPERS.items()}


@contextlib.contextmanager
def tfmot_file_scope():
    """Keras custom-object scope naming tfmot's wrapper classes (see the module docstring)."""
    with keras.saving.custom_object_scope(_STAND_INS):
        yield
