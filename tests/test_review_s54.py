"""Session 54's lead review: checks of what the session changed."""
import re

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.train.strip import FLOAT32_COPY_BY_HAND


class _Sub(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(4, name="fc", dtype="mixed_float16")
        self.out = keras.layers.Dense(2, name="out", dtype="float32")

    def call(self, x):
        return self.out(self.fc(x))


def test_the_subclassed_models_float32_copy_is_told_in_the_same_words_by_strip_and_to_tflite():
    """A subclassed model computing in float16 cannot be rebuilt by strip(dtype='float32'); strip's
    error and to_tflite's said how to make the copy by hand in two wordings (session 53's final read).
    Both now say the one phrase, FLOAT32_COPY_BY_HAND."""
    model = _Sub()
    model(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError) as strip_error:
        dc_keras.strip(model, dtype="float32")
    with pytest.raises(RuntimeError) as export_error:
        dc_keras.export.to_tflite(model, pack=False)
    for text in (str(strip_error.value), str(export_error.value)):
        assert FLOAT32_COPY_BY_HAND in text, text
    assert re.search(r"compute in float16 \(a mixed-precision dtype policy\).*" + re.escape(FLOAT32_COPY_BY_HAND)
                     + r" and export that", str(export_error.value), re.S)
