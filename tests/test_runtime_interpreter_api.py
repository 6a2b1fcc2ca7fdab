"""A fresh review of the runtime side (dc_keras.runtime, pipeline.predict_tflite): each test is a bug
a user would hit, fixed; each fails on the code before its fix."""
import numpy as np

import _export_models as em
from dc_keras import export, pipeline, runtime


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


def _token_model():
    """Token ids of any length ([-1, -1] input): Embedding -> average -> Dense, on few shared values."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((None,), dtype="int32")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(64, 32)(inp))
    return em.cluster_and_prune(keras.Model(inp, keras.layers.Dense(4)(keras.layers.Dense(32, activation="relu")(h))))


def test_predict_tflite_feeds_a_model_whose_inputs_have_free_dimensions_past_the_batch():
    """predict_tflite resized each input to [batch, *its allocated shape[1:]]: a dimension the model
    leaves free past the batch (a sequence length, shape_signature [-1, -1]) is allocated as 1, so
    every call failed with TFLite's 'Cannot set tensor: Dimension mismatch. Got 12 but expected 1 for
    dimension 1 of input 0'. It now allocates the arrays' own shapes."""
    plain = export.to_tflite(_token_model(), pack=False)
    packed = export.pack(plain, min_bytes=64)
    assert b"HuffDecode" in packed
    ref = em.reference_interpreter("litert", plain)
    assert [int(v) for v in ref.get_input_details()[0]["shape_signature"]] == [-1, -1]
    for length in (12, 3):
        x = np.random.RandomState(length).randint(0, 64, (7, length)).astype(np.int32)
        want = em.run_batch(ref, x)
        for data in (plain, packed):
            np.testing.assert_array_equal(pipeline.predict_tflite(data, x, batch_size=3), want)


def test_the_interpreters_signature_is_its_constructors():
    """inspect.signature(Interpreter) -- what help(), notebooks' and IDEs' call tips show -- was
    __new__'s catch-all '(*_args, backend='auto', decode='delegate', weights='decoded', **_kwargs)'
    since 3f3aef4 gave the class a __new__ (inspect prefers it): model_path, release_decoded,
    max_density were gone from it. A subclass with an __init__ of its own shows that one's."""
    import inspect

    params = inspect.signature(runtime.Interpreter).parameters
    assert list(params)[:2] == ["model_path", "model_content"], params
    assert {"backend", "decode", "weights", "release_decoded", "max_density", "kwargs"} <= set(params)

    class Fixed(runtime.Interpreter):
        def __init__(self, path, threads=2):
            super().__init__(model_path=path, num_threads=threads)

    class Same(runtime.Interpreter):
        pass

    assert list(inspect.signature(Fixed).parameters) == ["path", "threads"]
    assert inspect.signature(Same) == inspect.signature(runtime.Interpreter)


def test_compiled_model_given_the_bytes_as_its_path_names_itself_in_the_fix():
    """compiled_model(data) -- the model's bytes as the first argument, model_path -- said to pass them
    as 'Interpreter(model_content=data)', another function."""
    import pytest

    packed = export.pack(em.tflite("dense", None))
    with pytest.raises(TypeError, match=r"pass them as model_content=, e\.g\. compiled_model\(model_content=data\)$"):
        runtime.compiled_model(packed)
    with pytest.raises(TypeError, match=r"e\.g\. Interpreter\(model_content=data\)$"):
        runtime.Interpreter(packed)


def test_compressed_report_reads_tensor_names_holding_tabs_and_newlines():
    """The delegate's report (DcKerasHuffDecodeDelegateReport: one tab-separated line per layer) printed
    tensor names as they are, so a name holding a tab or a newline shifted or split its line and
    compressed_report() raised IndexError (the model itself ran fine). The library now writes tab,
    newline, carriage return and backslash in names and reasons as \\t, \\n, \\r and \\\\, and the
    report gives the names back as they are."""
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(em.tflite("dense", None))
    sg = m.subgraphs[0]
    fcs = [op for op in sg.operators if fb.opcode_name(m, op) == "FULLY_CONNECTED"]
    odd = [b"fc\tweights\nx", b"back\\slash\r"]
    for op, name in zip(fcs, odd):
        sg.tensors[op.inputs[1]].name = name
    plain = fb.write_model(m)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    it.allocate_tensors()
    names = {row["weights"] for row in it.compressed_report()}
    assert {n.decode() for n in odd} <= names, names
    assert len(it.compressed_report()) == len(fcs)
