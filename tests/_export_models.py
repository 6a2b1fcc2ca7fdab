"""Small Keras models with clustered + pruned weights, converted to .tflite, for export/runtime tests."""
import functools
import subprocess
import sys

import numpy as np

INPUT_SHAPES = {"dense": (20,), "conv": (10, 10, 3)}


def cluster_and_prune(model, levels=8, prune=0.1, seed=0):
    """Rounds every weight to few distinct values (weight sharing) and zeroes the small ones."""
    for v in model.weights:
        w = v.numpy()
        scale = float(np.abs(w).max()) or 1.0
        w = np.round(w / scale * levels) / levels * scale
        w[np.abs(w) < prune * scale] = 0
        v.assign(w.astype(w.dtype))
    return model


@functools.lru_cache(maxsize=None)
def keras_model(kind):
    import keras

    keras.utils.set_random_seed(1)
    if kind == "dense":
        m = keras.Sequential([keras.Input(INPUT_SHAPES[kind]), keras.layers.Dense(96, activation="relu"),
                              keras.layers.Dense(48, activation="relu"), keras.layers.Dense(10)])
    elif kind == "conv":
        m = keras.Sequential([keras.Input(INPUT_SHAPES[kind]), keras.layers.Conv2D(32, 3, activation="relu"),
                              keras.layers.DepthwiseConv2D(3, activation="relu"),
                              keras.layers.Conv2D(48, 1), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    else:
        raise ValueError(kind)
    return cluster_and_prune(m)


def inputs(kind, n, seed=0):
    return np.random.RandomState(seed).randn(n, *INPUT_SHAPES[kind]).astype(np.float32)


@functools.lru_cache(maxsize=None)
def tflite(kind, quantize):
    """Unpacked .tflite bytes of model ``kind`` (``dense``/``conv``) with ``quantize`` mode."""
    from dc_keras.export import to_tflite

    return to_tflite(keras_model(kind), pack=False, quantize=quantize,
                     representative_data=inputs(kind, 32, seed=5) if quantize == "int8" else None)


def run(interpreter, xs):
    """Runs ``xs`` one sample at a time; returns the stacked outputs."""
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    ys = []
    for x in xs:
        interpreter.set_tensor(inp, x[None])
        interpreter.invoke()
        ys.append(interpreter.get_tensor(out).copy())
    return np.concatenate(ys)


def run_batch(interpreter, xs):
    """Runs ``xs`` as one batch (the input resized to its shape); returns the output."""
    inp = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(inp, list(xs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp, xs)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def signature_outputs(it, inputs, calls=3):
    """{(signature, call, output name): array} for ``calls`` calls of every signature of interpreter
    ``it`` in turn, call ``c``'s inputs ``inputs(runner.get_input_details(), c)`` (a dict by input name);
    state such as a resource variable carries from one call to the next."""
    res = {}
    for key in it.get_signature_list():
        runner = it.get_signature_runner(key)
        for call in range(calls):
            for name, y in runner(**inputs(runner.get_input_details(), call)).items():
                res[(key, call, name)] = np.array(y).copy()
    assert res
    return res


def assert_bit_identical(a, b):
    """Two ``signature_outputs`` results: the same keys, and per key the same dtype, shape and bytes
    (strings: the same values)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        if a[k].dtype == object:  # strings
            assert a[k].ravel().tolist() == b[k].ravel().tolist(), k
        else:
            assert a[k].tobytes() == b[k].tobytes(), (k, np.abs(a[k].astype(np.float64) - b[k]).max())


def no_default_delegates(backend):
    if backend == "litert":
        from ai_edge_litert.interpreter import OpResolverType
    else:
        from tensorflow.lite.python.interpreter import OpResolverType
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def reference_interpreter(backend, content, **kwargs):
    """The backend's plain interpreter (no HuffDecode support) for the unpacked model."""
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter
    else:
        from tensorflow.lite.python.interpreter import Interpreter
    return Interpreter(model_content=content, **kwargs)


def cli(*args, timeout=600, **run_kwargs):
    """``python -m dc_keras.cli ARGS`` (each argument through str) in a subprocess: its
    CompletedProcess, stdout and stderr as text; ``run_kwargs`` go to subprocess.run."""
    return subprocess.run([sys.executable, "-m", "dc_keras.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **run_kwargs)


# Files whose weights are not in them (review s55/s56: pack, inspect and the runtime say so)
def _convert_without_weights(model, shape):
    """``model`` converted the way that leaves its weights out: ``from_concrete_functions([fn], model)``."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec(shape, tf.float32)])
    return bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model).convert())


@functools.lru_cache(maxsize=None)
def weightless_tflite(kind):
    """A Keras 3 model's file without its weights: ``dense`` (16 -> 32 -> 4, 4 variables) or ``lstm``
    (LSTM(4) over 5 steps of 3 features, 3 variables)."""
    import keras

    if kind == "dense":
        return _convert_without_weights(keras.Sequential([keras.Input((16,)), keras.layers.Dense(32), keras.layers.Dense(4)]), [1, 16])
    return _convert_without_weights(keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)]), [1, 5, 3])


@functools.lru_cache(maxsize=None)
def stateful_tflite():
    """A model whose resource variable an ASSIGN_VARIABLE op assigns (a running sum): a valid file."""
    import tensorflow as tf

    class Stateful(tf.Module):
        def __init__(self):
            self.acc = tf.Variable(np.zeros((1, 8), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def __call__(self, x):
            self.acc.assign_add(x)
            return self.acc.read_value()

    m = Stateful()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([m.__call__.get_concrete_function()], m)
    converter.experimental_enable_resource_variables = True
    return bytes(converter.convert())
