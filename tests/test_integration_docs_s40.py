"""The user documentation followed as written by a new user outside the repository (README.md,
docs/models.md, docs/quantization.md, docs/migrating_from_tfmot.md, docs/multi_worker.md, the
notebooks in examples/): the traps found doing so, each through the public API."""
import numpy as np
import pytest

import dc_keras


def test_normalize_refuses_images_scaled_already_instead_of_dividing_them_by_255_again():
    """Keras's tutorials scale with `x / 255.0`; `dc_keras.datasets.normalize` of that divided by 255
    a second time and returned images in [0, 1/255] without a word (the model then trains on
    near-black inputs). It now says what happened and the fix; uint8 and 0..255 floats still work."""
    (x, _), _ = dc_keras.datasets.mnist.load_data()
    x = x[:4]
    with pytest.raises(ValueError, match=r"already scaled to \[0, 1\].*uint8 images load_data\(\) returns"):
        dc_keras.datasets.normalize(x / 255.0)
    with pytest.raises(ValueError, match=r"already have a channel axis.*normalize's output"):
        dc_keras.datasets.normalize(dc_keras.datasets.normalize(x))
    out = dc_keras.datasets.normalize(x)
    assert out.shape == (4, 28, 28, 1) and out.dtype == np.float32 and out.max() == 1.0
    np.testing.assert_array_equal(dc_keras.datasets.normalize(x.astype(np.float32)), out)  # 0..255 floats
    np.testing.assert_array_equal(dc_keras.datasets.normalize(np.zeros((2, 3, 3), np.float32)), 0)  # black
