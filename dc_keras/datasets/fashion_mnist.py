"""Fashion-MNIST from Debian's package ``dataset-fashion-mnist`` (gzipped IDX files; no download)."""
import gzip
import os

import numpy as np

#: Where Debian's ``dataset-fashion-mnist`` installs its files; override with ``DC_KERAS_FASHION_MNIST_DIR``.
DEFAULT_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/datasets/fashion_mnist")
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def _find_dir() -> str:
    env = os.environ.get("DC_KERAS_FASHION_MNIST_DIR")
    candidates = (env,) if env else DEFAULT_DIRS
    for d in candidates:
        if d and all(os.path.isfile(os.path.join(d, f)) for f in _FILES.values()):
            return d
    raise FileNotFoundError(
        "Fashion-MNIST not found in "
        + ", ".join(c for c in candidates if c)
        + ". Install Debian's package: sudo apt-get install dataset-fashion-mnist"
    )


def _read_idx(path: str, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 + 4 * ndim or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] != ndim:
        raise ValueError(f"{path} is not a uint8 IDX file with {ndim} dimension(s)")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) - offset != count:
        raise ValueError(f"{path}: header says {dims} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


def load_data():
    """Loads Fashion-MNIST, same return value as ``keras.datasets.fashion_mnist.load_data()``.

    Raises:
        FileNotFoundError: naming the Debian package ``dataset-fashion-mnist`` when it is absent.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = dc_keras.datasets.fashion_mnist.load_data()
        >>> x_train.shape
        (60000, 28, 28)
    """
    d = _find_dir()
    p = {k: os.path.join(d, v) for k, v in _FILES.items()}
    return (_read_idx(p["x_train"], 3), _read_idx(p["y_train"], 1)), (_read_idx(p["x_test"], 3), _read_idx(p["y_test"], 1))
