"""Drop-in layers for code written against other compression libraries.

- :mod:`dc_keras.compat.tfmot`: ``tensorflow_model_optimization``'s pruning and clustering APIs
  (``tfmot.sparsity.keras``, ``tfmot.clustering.keras``) on Keras 3. See
  ``docs/migrating_from_tfmot.md``.
"""
