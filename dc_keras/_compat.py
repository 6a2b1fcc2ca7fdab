"""The only place where dc_keras touches private framework APIs.

Each shim is small, says why no public API does the job and which versions were tested, and has
a test in tests/test_compat.py that fails loudly if a framework upgrade moves the private name.
Other engineers append their shims as separate sections.
"""

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


def flatten_layers(layer, include_self=False):
    """Every layer tracked by ``layer``, recursively (sublayers of sublayers, wrappers' inner layers,
    layers held in attributes of subclassed models and custom layers).

    Why private: ``Layer._flatten_layers`` is the only traversal that sees layers held by plain
    layers (``model.layers`` exists only on models and is not recursive). Used to find compression
    wrappers wherever a user put them.
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=True))
