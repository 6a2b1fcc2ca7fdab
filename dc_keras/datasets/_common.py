"""Helpers shared by the dataset loaders."""
import functools

import numpy as np


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(N, 28, 28)`` -> float32 ``(N, 28, 28, 1)`` in [0, 1], the models' input.

    Images scaled already (floats in [0, 1], e.g. ``x / 255.0``) or with a channel axis are a
    ``ValueError`` saying so: dividing them by 255 again would train on near-black images.

    Example:
        >>> (x, y), _ = dc_keras.datasets.mnist.load_data()
        >>> dc_keras.datasets.normalize(x[:2]).shape
        (2, 28, 28, 1)
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        raise ValueError(f"expected images of shape (N, H, W), got {images.shape}: these already have a channel "
                         "axis (normalize's output?); normalize takes the uint8 images load_data() returns, once")
    if images.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W), got {images.shape}")
    if images.dtype.kind == "f" and images.size and 0.0 < float(np.nanmax(images)) <= 1.0:
        # x / 255.0 (keras' tutorials) then normalize(x) trained on images 255 times too dark, silently
        raise ValueError(f"these images are already scaled to [0, 1] (float, max {float(np.nanmax(images)):.3g}): "
                         "normalize divides by 255; give it the uint8 images load_data() returns, or add the "
                         "channel axis yourself: images[..., None]")
    return (images.astype(np.float32) / np.float32(255.0))[..., None]


def random_shift(images: np.ndarray, max_shift: int = 2, rng=None) -> np.ndarray:
    """Shifts each image by a random whole number of pixels in [-max_shift, max_shift] on both axes.

    The classic MNIST augmentation; works on ``(N, H, W)`` or ``(N, H, W, C)`` arrays and fills the
    uncovered border with zeros.

    Example:
        >>> x = dc_keras.datasets.normalize(dc_keras.datasets.mnist.load_data()[0][0][:8])
        >>> dc_keras.datasets.random_shift(x, 2, np.random.default_rng(0)).shape
        (8, 28, 28, 1)
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"expected images of shape (N, H, W[, C]), got {images.shape}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    rng = np.random.default_rng() if rng is None else rng
    n, h, w = images.shape[:3]
    s = max_shift
    pad = [(0, 0), (s, s), (s, s)] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad)
    dy = rng.integers(0, 2 * s + 1, size=n)
    dx = rng.integers(0, 2 * s + 1, size=n)
    rows = dy[:, None] + np.arange(h)[None, :]  # (N, H)
    cols = dx[:, None] + np.arange(w)[None, :]  # (N, W)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


@functools.lru_cache(maxsize=None)
def _shifted_batches_class():
    """Builds ``ShiftedBatches`` once, on first use: it subclasses ``keras.utils.PyDataset``, and
    importing Keras (seconds) in ``import dc_keras.datasets`` would slow every Keras-free use."""
    import keras

    class ShiftedBatches(keras.utils.PyDataset):
        """A ``keras.utils.PyDataset`` of shuffled, randomly shifted training batches. It reshuffles itself
        each epoch from ``seed``: pass ``shuffle=False`` to ``fit`` for a run that ``seed`` fixes (``fit``
        otherwise also shuffles the batch order, from Python's unseeded ``random``).

        Example:
            >>> ds = dc_keras.datasets.ShiftedBatches(x_train, y_train, batch_size=128, max_shift=2, seed=0)
            >>> model.fit(ds, epochs=10, shuffle=False)
        """

        def __init__(self, x, y, batch_size=128, max_shift=2, seed=None, **kwargs):
            super().__init__(**kwargs)  # workers / use_multiprocessing / max_queue_size
            self.x, self.y = np.asarray(x), np.asarray(y)
            if len(self.x) != len(self.y):
                raise ValueError(f"x and y differ in length: {len(self.x)} vs {len(self.y)}")
            self.batch_size, self.max_shift = int(batch_size), int(max_shift)
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(self.x))

        def __len__(self):
            return -(-len(self.x) // self.batch_size)

        def __getitem__(self, i):
            idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
            return random_shift(self.x[idx], self.max_shift, self.rng), self.y[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.x))

    ShiftedBatches.__module__ = "dc_keras.datasets"
    ShiftedBatches.__qualname__ = "ShiftedBatches"
    return ShiftedBatches


def __getattr__(name):
    if name == "ShiftedBatches":  # one class for the whole process: isinstance works
        return _shifted_batches_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
