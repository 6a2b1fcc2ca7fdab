"""A JAX / PyTorch user's journey (helper-146's red team of the README, docs and notebooks on those
backends): what the existing backend tests did not cover.

Functions in a model's ``.keras`` file: Keras 3.15 saves a plain function (a ``Lambda`` layer's
``function``, a custom ``activation``) by its name under ``module: "builtins"``, registered or not.
The TensorFlow-backend child that converts a torch model (and a JAX one, by default) therefore never
imported the function's module: every such model failed on torch with Keras's "Could not locate
function" (a function of an importable module, registered or not, included), and a Python lambda
with Keras's safe_mode error, which suggests ``safe_mode=False``, an argument ``to_tflite`` does not
take; on JAX the child failed and the model went through jax2tf with a warning. Now the module is
read from the function the model holds and imported in the child, and what the child cannot load
(a lambda, a function of ``__main__`` or defined inside a function) is one error before it starts,
naming the layer and the fix (on JAX: the jax2tf route at once, with that message as its warning).

The in-process tests of ``child_imports`` run on every backend; the exports run under
``make test-backends`` (JAX) and ``make test-backends-torch``.
"""
import re
import warnings

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.export import _backend

BACKEND = keras.backend.backend()
X = np.random.default_rng(0).normal(size=(6, 16)).astype("float32")


def doubled(t):
    """A plain function at the top level of an importable module (this one), not registered."""
    return keras.ops.multiply(t, 2.0)


@keras.saving.register_keras_serializable(package="dc_keras_tests")
def leaky(t):
    """A registered function used as a Dense layer's activation."""
    return keras.ops.maximum(t, 0.1 * t)


def _model(function, activation=leaky):
    inputs = keras.Input((16,))
    h = keras.layers.Dense(32, activation=activation, name="d1")(inputs)
    h = keras.layers.Lambda(function, name="lam")(h)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(h))


def _run(data, x):
    it = dc_keras.runtime.Interpreter(model_content=data)
    index = it.get_input_details()[0]["index"]
    it.resize_tensor_input(index, list(x.shape))
    it.allocate_tensors()
    it.set_tensor(index, x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_child_imports_names_the_module_of_the_models_functions():
    """Both functions are saved under module 'builtins'; the child is told their real module."""
    imports = _backend.child_imports(_model(doubled))
    assert sorted(map(tuple, imports)) == [(__name__, "doubled", "doubled"),
                                           (__name__, "leaky", "dc_keras_tests>leaky")]


def test_child_imports_refuses_a_lambda_and_functions_it_cannot_import_naming_the_fix():
    with pytest.raises(_backend.UnimportableClassError) as err:
        _backend.child_imports(_model(lambda t: t * 2.0))
    message = str(err.value)
    assert message.startswith("to_tflite: this model holds Python lambda(s) (in layer 'lam'), which Keras saves "
                              "as bytecode and loads only with safe_mode=False")
    assert "Fix: call keras.ops on the Functional model's tensors instead of a Lambda layer" in message
    assert "\n" not in message

    def inner(t):
        return t * 3.0

    with pytest.raises(_backend.UnimportableClassError,
                       match=r"custom class\(es\) or function\(s\) cannot be loaded .*'inner' is not a top-level "
                             r"name of module .*Fix: move it to the top level of a module"):
        _backend.child_imports(_model(inner, activation="relu"))
    with pytest.raises(_backend.UnimportableClassError, match=r"lambda\(s\) \(in layer 'd1'\)"):
        _backend.child_imports(_model(doubled, activation=lambda t: t))
    assert _backend.child_imports(_model(doubled, activation="relu")) == [[__name__, "doubled", "doubled"]]


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the TensorFlow backend converts in process (no child): "
                                                    "make test-backends / test-backends-torch run this")
def test_lambda_layer_and_custom_activation_export_on_this_backend():
    """torch failed ("Could not locate function 'doubled'"); JAX went through jax2tf with a warning."""
    model = dc_keras.strip(dc_keras.cluster(_model(doubled), bits=2))  # (kernels that pack)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = dc_keras.export.to_tflite(model)
        plain = dc_keras.export.to_tflite(model, pack=False)
    assert not [str(w.message) for w in caught if "jax2tf" in str(w.message) or "TensorFlow-backend" in str(w.message)]
    assert packed != plain
    np.testing.assert_array_equal(_run(packed, X), _run(plain, X))
    np.testing.assert_allclose(_run(plain, X), keras.ops.convert_to_numpy(model(X)), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the TensorFlow backend converts in process (no child): "
                                                    "make test-backends / test-backends-torch run this")
def test_a_python_lambda_is_one_error_on_torch_and_jax2tf_on_jax():
    """torch: the error before the child starts (it was the child's safe_mode error, whose fix,
    safe_mode=False, to_tflite does not take); JAX: jax2tf at once, that message as its one warning."""
    model = _model(lambda t: t * 2.0)
    if BACKEND == "torch":
        with pytest.raises(ValueError, match=r"^to_tflite: this model holds Python lambda\(s\) \(in layer 'lam'\).*"
                                             r"on the torch backend cannot load the model\. Fix: call keras\.ops"):
            dc_keras.export.to_tflite(model)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = dc_keras.export.to_tflite(model, pack=False)
    said = [str(w.message) for w in caught if str(w.message).startswith("to_tflite")]
    assert len(said) == 1 and "Python lambda(s) (in layer 'lam')" in said[0] and "jax2tf" in said[0], said
    np.testing.assert_allclose(_run(data, X), keras.ops.convert_to_numpy(model(X)), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND != "jax", reason="the jax2tf route of a Keras-quantized model is the JAX backend's: "
                                             "make test-backends runs this")
def test_a_keras_quantized_model_converts_through_jax2tf_on_jax_without_a_failure_warning():
    """docs/quantization.md's row on ``model.quantize("int8")``: on JAX the TensorFlow-backend child
    fails (its converter cannot lower Keras's int8 layers) and jax2tf converts the model, which gives
    Keras's outputs. to_tflite warned with the child's error ("... Export the float model instead ...
    Converter error (ConverterError) chained above.") and then succeeded: advice for a failure that
    did not happen, nothing to act on. Now no warning; float8, which jax2tf cannot convert either, is
    the one error naming the layers and the fix, without that warning before it."""
    def quantized(mode):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                                  keras.layers.Dense(3, name="fc2")])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras: "Layer InputLayer does not have a `quantize` method"
            model.quantize(mode)
        return model

    model = quantized("int8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = dc_keras.export.to_tflite(model)
        plain = dc_keras.export.to_tflite(model, pack=False)
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)
                and str(w.message).startswith("to_tflite")]
    np.testing.assert_array_equal(_run(packed, X), _run(plain, X))
    np.testing.assert_allclose(_run(plain, X), keras.ops.convert_to_numpy(model(X)), rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match=r"Layer\(s\) 'fc1', 'fc2' were quantized by Keras "
                                               r"\(model\.quantize\('float8'\)\).*Export the float model"):
            dc_keras.export.to_tflite(quantized("float8"), pack=False)
    assert not [str(w.message) for w in caught if str(w.message).startswith("to_tflite")]


def _mixed_precision_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, name="fc1", dtype="mixed_float16"),
                             keras.layers.Dense(3, name="out", dtype="float32")])


@pytest.fixture(scope="module")
def mixed_precision_failure():
    """to_tflite(pack=False) of _mixed_precision_model(): its RuntimeError and the warnings it gave. The
    two tests below read the same failed conversion (on JAX and torch a TensorFlow-backend child,
    ~5 CPU s), which each of them made again."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError) as info:
            dc_keras.export.to_tflite(_mixed_precision_model(), pack=False)
    return info.value, [str(w.message) for w in caught]


def test_a_mixed_precision_model_is_converted_once_and_fails_with_one_error(mixed_precision_failure):
    """A model computing in float16 (a mixed-precision policy), which TFLite's converter cannot lower.
    The TensorFlow backend converted it twice (the direct route, then the SavedModel route, which gives
    the converter the same float16 ops), and a JAX model went through the TensorFlow-backend child,
    then jax2tf, with a warning repeating the error the jax2tf route then raised again: 8 s and the
    same advice twice. Now one conversion and one error naming the layers and the fix, no warning."""
    message = (r"^TFLite conversion failed: .*Layer\(s\) 'fc1' compute in float16 \(a mixed-precision dtype "
               r"policy\), which TFLite's converter cannot lower: export a float32 copy")
    error, said = mixed_precision_failure
    assert re.search(message, str(error)), str(error)
    assert not [m for m in said if m.startswith("to_tflite")], said
    if BACKEND == "tensorflow":  # converters made in this process: configure= sees each one
        made = []
        with pytest.raises(RuntimeError, match=message):
            dc_keras.export.to_tflite(_mixed_precision_model(), pack=False, configure=made.append)
        assert len(made) == 1, made


def test_a_conversion_error_has_the_converter_error_it_names_chained(mixed_precision_failure):
    """to_tflite's conversion error ends "Converter error (ConverterError) chained above.". From the
    TensorFlow-backend child (torch always, JAX by default) it was relayed as text alone: nothing was
    chained in the caller. Now the converter's error comes along and the caller's error is raised
    from it (``_backend.ChildError``, naming the class and giving its text), as on the TensorFlow
    backend, where it is the ConverterError itself."""
    error, _ = mixed_precision_failure  # to_tflite(pack=False)'s RuntimeError for a model TFLite cannot lower
    assert re.search(r"Converter error \(ConverterError\) chained above\.$", str(error)), str(error)
    cause = error.__cause__
    assert cause is not None
    first = str(error).split("TFLite conversion failed: ")[1].split(". Layer(s)")[0]
    assert first and first in str(cause), (first, str(cause))
    if BACKEND == "tensorflow":
        assert type(cause).__name__ == "ConverterError"
    else:
        assert isinstance(cause, _backend.ChildError) and cause.kind == "ConverterError"
        assert str(cause).startswith("ConverterError, raised in the TensorFlow-backend subprocess that converted "
                                     "the model:\n")
