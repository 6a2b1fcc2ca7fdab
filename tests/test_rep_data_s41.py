"""``to_tflite(representative_data=...)`` with a ``quantize`` that does not calibrate: said, not ignored.

``representative_data`` only calibrates full-integer quantization (``quantize="int8"``); with every
other mode (None, "float16", "dynamic") the converter never sees it. A user who passes it believes
it is used, so ``to_tflite`` warns (UserWarning) naming the mode, that the data is unused and the fix,
from the line that called it, and converts exactly as without it."""
import warnings

import keras
import numpy as np
import pytest

from dc_keras import export
from dc_keras.export._convert import QUANTIZE_MODES

IGNORED = "representative_data is ignored"
NOT_CALIBRATING = [q for q in QUANTIZE_MODES if q != "int8"]


@pytest.fixture(scope="module")
def model_and_x():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
    x = np.random.default_rng(0).standard_normal((32, 8)).astype("float32")
    return model, x


def _ours(caught):
    return [w for w in caught if IGNORED in str(w.message)]


def test_every_mode_but_int8_is_listed():
    """The modes checked below are every mode ``to_tflite`` takes (a new one is checked too)."""
    assert set(NOT_CALIBRATING) == {None, "float16", "dynamic"}


@pytest.mark.parametrize("quantize", NOT_CALIBRATING)
def test_representative_data_with_a_mode_that_does_not_calibrate_warns_once_naming_the_fix(model_and_x, quantize):
    model, x = model_and_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = export.to_tflite(model, pack=False, quantize=quantize, representative_data=x)
    ours = _ours(caught)
    assert len(ours) == 1, [str(w.message) for w in caught]
    w = ours[0]
    text = str(w.message)
    assert issubclass(w.category, UserWarning)
    assert f"quantize={quantize!r}" in text, text  # the mode
    assert "quantize='int8'" in text and "leave representative_data out" in text, text  # the fixes
    assert w.filename == __file__, (w.filename, w.lineno)  # from the caller's line, not the library's
    # unused indeed: the same file as without it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert data == export.to_tflite(model, pack=False, quantize=quantize)


def test_a_generator_function_is_said_unused_too(model_and_x):
    model, x = model_and_x
    with pytest.warns(UserWarning, match=r"representative_data is ignored with quantize='dynamic'"):
        export.to_tflite(model, pack=False, quantize="dynamic", representative_data=lambda: iter([[x[:1]]]))


def test_int8_uses_it_and_does_not_warn(model_and_x):
    model, x = model_and_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = export.to_tflite(model, pack=False, quantize="int8", representative_data=x)
    assert not _ours(caught), [str(w.message) for w in caught]
    # and it is used: other data calibrates other activation ranges
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert data != export.to_tflite(model, pack=False, quantize="int8", representative_data=x * 10)


def test_no_data_no_warning(model_and_x):
    model, _ = model_and_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.to_tflite(model, pack=False, quantize="dynamic")
    assert not _ours(caught)
