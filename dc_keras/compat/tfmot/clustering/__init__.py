"""``tfmot.clustering``: only the Keras API (``tfmot.clustering.keras``)."""
from dc_keras.compat.tfmot.clustering import keras

__all__ = ["keras"]
