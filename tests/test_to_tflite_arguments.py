"""``dc_keras.export.to_tflite``'s arguments, each doing what it says or saying why not.

``to_tflite(representative_data=...)`` with a ``quantize`` that does not calibrate: said, not ignored.

``representative_data`` only calibrates full-integer quantization (``quantize="int8"``); with every
other mode (None, "float16", "dynamic") the converter never sees it. A user who passes it believes
it is used, so ``to_tflite`` warns (UserWarning) naming the mode, that the data is unused and the fix,
from the line that called it, and converts exactly as without it.

``to_tflite(batch_size=N)`` of a Sequential model built with ``build()`` and never called: it has
``inputs`` but no ``input`` (Keras raises AttributeError), and 7741a3c's dict-signature check read
``model.input``, failing every such export (the ``to_tflite`` docstring's own example)."""
import warnings

import keras
import numpy as np
import pytest

from dc_keras import export, runtime
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


def test_empty_representative_data_says_what_to_give(model_and_x):
    """Notebook 02 with N_CALIBRATION = 0 got "representative_data is empty" and no fix (helper-197)."""
    model, x = model_and_x
    with pytest.raises(ValueError, match=r"representative_data is empty \(0 samples along its first axis\): "
                                         r"int8 calibration needs samples .*x_train\[:100\]"):
        export.to_tflite(model, pack=False, quantize="int8", representative_data=x[:0])


def test_no_data_no_warning(model_and_x):
    model, _ = model_and_x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export.to_tflite(model, pack=False, quantize="dynamic")
    assert not _ours(caught)


def test_static_batch_of_a_sequential_built_but_never_called():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.build((None, 5))
    data = export.to_tflite(model, batch_size=2, pack=False)
    it = runtime.Interpreter(model_content=data)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    assert list(d["shape"]) == [2, 5]
    x = np.random.RandomState(1).rand(2, 5).astype(np.float32)
    it.set_tensor(d["index"], x)
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(it.get_output_details()[0]["index"]), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
