"""Helpers shared by the dataset loaders."""
import numpy as np


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 28, 28, 1)`` in [0, 1], the models' input.

    Example:
        >>> (x, y), _ = dc_keras.datasets.mnist.load_data()
        >>> dc_keras.datasets.normalize(x[:2]).shape
        (2, 28, 28, 1)
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W), got {images.shape}")
    return (images.astype(np.float32) / np.float32(255.0))[..., None]
