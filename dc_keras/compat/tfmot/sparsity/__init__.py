"""``tfmot.sparsity``: only the Keras API (``tfmot.sparsity.keras``)."""
from dc_keras.compat.tfmot.sparsity import keras

__all__ = ["keras"]
