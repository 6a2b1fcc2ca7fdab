"""A fresh review of the runtime side (dc_keras.runtime, pipeline.predict_tflite): each test is a bug
a user would hit, fixed; each fails on the code before its fix."""
import numpy as np

import _export_models as em
from dc_keras import export, runtime


def test_a_subclass_that_picks_the_backend_in_its_init_gets_that_backends_interpreter(tmp_path):
    """Since Interpreter is an instance of the backend's class (3f3aef4), __new__ picks the backend
    from the arguments it sees; a subclass whose __init__ passes its own (``super().__init__(backend=
    "tensorflow", ...)``) got LiteRT's class from __new__ and then the TypeError 'this object is not a
    ...InterpreterWithCustomOps: create the interpreter as dc_keras.runtime.Interpreter(...)'."""
    from tensorflow.lite.python.interpreter import InterpreterWithCustomOps

    class TFInterpreter(runtime.Interpreter):
        def __init__(self, path, **kwargs):
            super().__init__(model_path=path, backend="tensorflow", **kwargs)

    assert runtime.available_backends()[0] == "litert"  # "auto" would pick LiteRT
    plain = em.tflite("dense", None)
    x = em.inputs("dense", 5)
    want = em.run_batch(em.reference_interpreter("tensorflow", plain), x)
    path = tmp_path / "m.packed.tflite"
    path.write_bytes(export.pack(plain))
    it = TFInterpreter(path)
    assert isinstance(it, InterpreterWithCustomOps) and isinstance(it, TFInterpreter)
    assert it.backend == "tensorflow" and type(it).__name__ == "TFInterpreter"
    np.testing.assert_array_equal(em.run_batch(it, x), want)
    again = TFInterpreter(path, weights="compressed")
    assert type(again) is type(it)  # one class per (subclass, backend class)
