"""``pipeline.predict_tflite`` / ``evaluate_tflite`` take ``interpreter_options``, the keyword arguments
of ``dc_keras.runtime.Interpreter``: the fix the runtime's errors name (another backend, no default
delegates) is then usable from the pipeline too. Before, a file only the built-in kernels run (int8
TFLite sparse tensors, on which the default XNNPACK delegate fails) could not be scored there at all."""
import keras
import numpy as np
import pytest

from dc_keras import pipeline, runtime
from test_sparse_tensors_runtime import SHAPES, _convert, _pruned, _reference, _resolver


@pytest.fixture(scope="module")
def sparse_int8():
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input(SHAPES["mlp"]), keras.layers.Dense(128, activation="relu"),
                            keras.layers.Dense(10)])
    return _convert(_pruned(mlp, 1), "mlp", "int8")


def _x(n=40):
    return np.random.RandomState(7).rand(n, *SHAPES["mlp"]).astype(np.float32)


def test_interpreter_options_reach_the_interpreter(sparse_int8):
    x = _x()
    want = _reference(sparse_int8, x)  # TFLite's built-in kernels
    backend = runtime.Interpreter(model_content=sparse_int8).backend
    resolver, _ = _resolver(backend)
    options = {"experimental_op_resolver_type": resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    got = pipeline.predict_tflite(sparse_int8, x, batch_size=16, interpreter_options=options)
    np.testing.assert_array_equal(got, want)  # the same kernels, batch by batch
    labels = np.argmax(want, axis=-1)
    assert pipeline.evaluate_tflite(sparse_int8, x, labels, batch_size=16, progress=False,
                                    interpreter_options=options) == 0.0
    try:  # with the default options: runs, or fails with the runtime's message naming the fix
        default = pipeline.predict_tflite(sparse_int8, x, batch_size=16)
    except RuntimeError as exc:
        assert "TFLite sparse tensor" in str(exc) and "BUILTIN_WITHOUT_DEFAULT_DELEGATES" in str(exc)
    else:
        np.testing.assert_allclose(default, want, atol=float(np.max(np.abs(want))) / 64)


def test_interpreter_options_backend(sparse_int8):
    """A backend given in the options is the one that runs (TensorFlow's XNNPACK runs full-integer sparse files)."""
    x = _x(8)
    got = pipeline.predict_tflite(sparse_int8, x, interpreter_options={"backend": "tensorflow"})
    it = runtime.Interpreter(model_content=sparse_int8, backend="tensorflow")
    i = it.get_input_details()[0]["index"]
    it.resize_tensor_input(i, x.shape)
    it.allocate_tensors()
    it.set_tensor(i, x)
    it.invoke()
    np.testing.assert_array_equal(got, it.get_tensor(it.get_output_details()[0]["index"]))


@pytest.mark.parametrize("options, error, words", [
    (["backend", "tensorflow"], TypeError, "must be a dict of keyword arguments"),
    ({1: "x"}, TypeError, "must be a dict of keyword arguments"),
    ({"model_path": "other.tflite"}, ValueError, "must not hold model_path"),
    ({"backend": "nonesuch"}, ValueError, "nonesuch"),
])
def test_bad_interpreter_options_are_named(sparse_int8, options, error, words):
    with pytest.raises(error, match=words):
        pipeline.predict_tflite(sparse_int8, _x(4), interpreter_options=options)
    with pytest.raises(error, match=words):
        pipeline.evaluate_tflite(sparse_int8, _x(4), np.zeros(4, int), interpreter_options=options)
