"""Tests of the private-API shims in dc_keras/_compat.py (one per shim)."""
import ctypes
import subprocess
import sys

import keras
import numpy as np
import pytest

from dc_keras import _compat


# ---- runtime: tflite::MutableOpResolver::AddCustom (issue 17) --------------------------------
def test_tflite_add_custom_address_is_a_callable_symbol():
    addr = _compat.tflite_add_custom_address()
    assert isinstance(addr, int) and addr != 0
    # the address lies inside a mapped executable segment of a loaded TF shared object
    with open("/proc/self/maps") as f:
        hit = [line for line in f if _in_range(line, addr)]
    assert hit and "x" in hit[0].split()[1] and ".so" in hit[0]


def _in_range(maps_line, addr):
    lo, hi = (int(v, 16) for v in maps_line.split()[0].split("-"))
    return lo <= addr < hi


def test_tflite_add_custom_is_not_touched_by_import():
    code = "import dc_keras._compat, sys; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert ctypes.sizeof(ctypes.c_void_p) == 8


# ---- runtime: native pointer of an external delegate (issue 17) -------------------------------
def test_delegate_pointer_is_the_created_delegate():
    from ai_edge_litert.interpreter import load_delegate

    from dc_keras import runtime

    d = load_delegate(runtime.library_path())
    ptr = _compat.delegate_pointer(d)
    assert isinstance(ptr, int) and ptr != 0
    # the library reads it back as its own delegate: an empty report (no model yet), no crash
    lib = ctypes.CDLL(runtime.library_path())
    lib.DcKerasHuffDecodeDelegateReport.restype = ctypes.c_size_t
    lib.DcKerasHuffDecodeDelegateReport.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    assert lib.DcKerasHuffDecodeDelegateReport(ptr, None, 0) == 0
    assert _compat.delegate_pointer(d) == ptr


# ---- training side (issue 14) ----
def test_is_functional():
    inputs = keras.Input((2,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Sub(keras.Model):
        def call(self, x):
            return x

    assert _compat.is_functional(functional)
    assert not _compat.is_functional(Sub())
    assert not _compat.is_functional(keras.layers.Dense(1))
    assert isinstance(sequential, keras.Model)


def test_flatten_layers_sees_nested_and_held_layers():
    lstm = keras.layers.LSTM(2)
    inputs = keras.Input((3, 2))
    inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="inner_fc")], name="inner")
    model = keras.Model(inputs, inner(lstm(inputs)))
    names = {l.name for l in _compat.flatten_layers(model)}
    assert {"inner", "inner_fc", lstm.name, lstm.cell.name} <= names
    assert model.name not in names
    assert model.name in {l.name for l in _compat.flatten_layers(model, include_self=True)}
    direct = {l.name for l in _compat.flatten_layers(model, recursive=False)}
    assert "inner" in direct and lstm.name in direct and not {"inner_fc", lstm.cell.name} & direct



# ---- export: per-tensor quantization switch of the TFLite converter (issue 15) ----------------
def test_converter_per_tensor_gives_one_scale_per_weight_tensor():
    import numpy as np
    import tensorflow as tf

    from dc_keras import _flatbuffer as fb

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6)])

    def scales(per_tensor):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([np.random.rand(1, 8).astype(np.float32)] for _ in range(8))
        if per_tensor:
            _compat.converter_per_tensor(conv)
        model = fb.read_model(conv.convert())
        return [len(t.quantization.scale) for t in model.subgraphs[0].tensors
                if t.type == fb.schema.TensorType.INT8 and fb.buffer_bytes(model, t.buffer)]

    assert scales(False) == [6]  # the converter's default: per channel
    assert scales(True) == [1]


# ---- training side: variables kept out of JAX fit()'s compiled step (issue 16) ----------------
def test_untrack_and_track_variables_keep_values_and_order():
    class Extra(keras.layers.Dense):
        def build(self, input_shape):
            super().build(input_shape)
            self.a = self.add_weight(name="a", shape=(), initializer="ones", trainable=False)
            self.b = self.add_weight(name="b", shape=(2,), initializer="zeros", trainable=False)

    layer = Extra(3)
    model = keras.Sequential([keras.Input((2,)), layer])  # built: its tracker is locked
    a, b = layer.a, layer.b
    _compat.untrack_variables(layer, [a])
    assert [v.name for v in layer.non_trainable_variables] == ["b"]
    assert all(v is not a for v in model.weights) and len(model.weights) == 3
    assert float(keras.ops.convert_to_numpy(a)) == 1.0  # the value stays
    _compat.untrack_variables(layer, [b])
    _compat.track_variables(layer, [a, b])  # back, in this order
    assert [v.name for v in layer.non_trainable_variables] == ["a", "b"]
    assert [v.name for v in model.weights] == ["kernel", "bias", "a", "b"]
    assert layer._tracker.locked


def test_tf_in_xla_context_tells_jit_compiled_functions_apart():
    if keras.backend.backend() != "tensorflow":
        import pytest

        pytest.skip("the shim is for the TF backend's training step")
    import tensorflow as tf

    seen = {}

    def probe(name):
        def fn(x):
            seen[name] = _compat.tf_in_xla_context()
            return x + 1
        return fn

    assert _compat.tf_in_xla_context() is False  # eager
    tf.function(probe("graph"))(tf.constant(1.0))
    tf.function(probe("xla"), jit_compile=True)(tf.constant(1.0))
    inner = tf.function(probe("nested"))
    tf.function(lambda x: inner(x), jit_compile=True)(tf.constant(1.0))  # a plain function inside XLA
    assert seen == {"graph": False, "xla": True, "nested": True}


# ---- train: a JAX fit() whose first step fails keeps the weights (backends) ------------------
_JAX_KEEP_CHILD = r"""
import keras, numpy as np
from dc_keras import _compat
seen = []
class Fails(keras.layers.Layer):
    def call(self, x, training=None):
        if training:
            seen.append(_compat.jax_keep_fit_state())
            raise ValueError("boom")
        return x
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Fails()])
model.compile("sgd", "mse")
before = [w.copy() for w in model.get_weights()]
for call in (lambda: model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0),
             lambda: model.train_on_batch(np.ones((4, 3)), np.ones((4, 2)))):
    try:
        call()
    except ValueError:
        pass
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
    model.make_train_function(force=True)
print(seen, _compat.jax_keep_fit_state())
"""


# make test runs it in the JAX pass (Makefile's BACKEND_TESTS), in that process; in the TensorFlow pass it
# is a child importing TensorFlow and JAX again (3 CPU s): make test-long's there.
@(pytest.mark.long if keras.backend.backend() != "jax" else lambda f: f)
def test_jax_keep_fit_state_reattaches_the_detached_weights():
    import os

    pytest.importorskip("jax", reason="jax is not installed (make install installs it)")

    if keras.backend.backend() == "jax":  # the JAX pass: the same script in this process
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(_JAX_KEEP_CHILD, "<_JAX_KEEP_CHILD>", "exec"), {"__name__": "__child__"})
        assert out.getvalue().strip().splitlines()[-1] == "[True, True] False", out.getvalue()
        return
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", _JAX_KEEP_CHILD], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[True, True] False"


# ---- train: keras.StatelessScope detection (clustering a layer built inside the wrapper) -------
def test_in_stateless_scope():
    assert _compat.in_stateless_scope() is False
    with keras.StatelessScope():
        assert _compat.in_stateless_scope() is True
    assert _compat.in_stateless_scope() is False


def test_stateless_scope_maps():
    """False outside a scope and in a scope without the variable (a symbolic pass), True in a
    scope that maps it (a stateless call: Keras-JAX's training step)."""
    v = keras.Variable(np.zeros(3, "float32"))
    other = keras.Variable(np.zeros(3, "float32"))
    assert _compat.stateless_scope_maps(v) is False
    with keras.StatelessScope():
        assert _compat.stateless_scope_maps(v) is False
    with keras.StatelessScope(state_mapping=[(v, np.ones(3, "float32"))]):
        assert _compat.stateless_scope_maps(v) is True
        assert _compat.stateless_scope_maps(other) is False
    assert _compat.stateless_scope_maps(v) is False


def test_current_stateless_scope_is_the_scope_entered():
    assert _compat.current_stateless_scope() is None
    with keras.StatelessScope() as outer:
        assert _compat.current_stateless_scope() is outer
        with keras.StatelessScope() as inner:
            assert _compat.current_stateless_scope() is inner
        assert _compat.current_stateless_scope() is outer
    assert _compat.current_stateless_scope() is None


def test_current_call_context_is_one_object_per_outermost_call():
    """None outside a layer call; inside a model's forward pass every layer (nested, called twice)
    sees the same object; the next forward pass gets a new one."""
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(_compat.current_call_context())
            return x

    probe = Probe()
    inner = keras.Sequential([probe])
    inputs = keras.Input((3,))
    model = keras.Model(inputs, probe(inner(inputs)))
    assert _compat.current_call_context() is None
    x = np.ones((2, 3), "float32")
    seen.clear()
    model(x, training=True)
    first = list(seen)
    model(x, training=True)
    second = seen[len(first):]
    assert len(first) == 2 and first[0] is not None and first[0] is first[1]
    assert len(second) == 2 and second[0] is second[1] and second[0] is not first[0]
    assert _compat.current_call_context() is None


# ---- train: a wrapper takes over its layer's legacy input_shape= argument ------------------------
def test_carry_input_shape_builds_a_sequential_at_construction():
    import warnings

    import dc_keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: "Do not pass an `input_shape`"
        inner = keras.layers.Dense(4, input_shape=(6,))
    wrapper = dc_keras.cluster(inner, bits=2)  # _compat.carry_input_shape in the wrapper's __init__
    model = keras.Sequential([wrapper, keras.layers.Dense(2)])
    assert model.built and wrapper.built and tuple(model.input_shape) == (None, 6)
    plain = keras.layers.Dense(4)
    other = keras.layers.Layer()
    _compat.carry_input_shape(other, plain)  # no input_shape given: nothing carried
    assert getattr(other, "_input_shape_arg", None) is None


def test_optimizer_backend_names_only_a_backend_specific_class():
    """``optimizer_backend``: "torch" for the class Keras swaps in on torch (what a .keras file
    compiled there restores anywhere), None for the backend-neutral classes, a user's subclass and
    a LossScaleOptimizer around a neutral one (tests/test_backends.py: the torch class itself)."""
    backend = keras.backend.backend()
    own = "torch" if backend == "torch" else None
    assert _compat.optimizer_backend(keras.optimizers.Adam()) == own
    assert _compat.optimizer_backend(keras.optimizers.SGD()) == own
    assert _compat.optimizer_backend(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())) == own

    class Mine(keras.optimizers.Adam):
        pass

    assert _compat.optimizer_backend(Mine()) is None
    assert _compat.optimizer_backend(keras.optimizers.Ftrl()) is None  # no torch class of its own


def test_compat_first_call_arguments_reads_the_first_calls_arguments():
    """dc_keras/_compat.py's first_call_arguments (Layer._inbound_nodes / Node.arguments, private):
    the positional tensors of a layer's first call in order, and its other arguments."""
    q, c = keras.Input((5, 16)), keras.Input((3, 16))
    mha = keras.layers.MultiHeadAttention(2, 8)
    mha(q, c, training=False)
    mha(c, c)
    args, kwargs = _compat.first_call_arguments(mha)
    assert args[0] is q and args[1] is c and kwargs == {"training": False}
    assert _compat.first_call_arguments(keras.layers.Dense(2)) is None  # never called in a graph


def test_keyword_parameters_lets_keras_bind_keywords_that_mix_tensors_and_values():
    """dc_keras/_compat.py's keyword_parameters (Layer._call_signature, private): a layer whose call()
    collects keywords in **kwargs is refused by Keras when they mix tensors and Python values; while
    the context is open the signature Keras binds lists them as parameters of their own, and the
    layer's own signature comes back after it."""
    import inspect

    import pytest

    class Collects(keras.layers.Layer):
        def call(self, inputs, **kwargs):
            return inputs * kwargs["scale"] if kwargs.get("twice") else inputs

    layer, x = Collects(), np.ones((2, 3), "float32")
    with pytest.raises(ValueError, match="cannot mix tensors and non-tensors"):
        layer(x, scale=np.full((2, 3), 2.0, "float32"), twice=True)
    before = layer._call_signature
    assert isinstance(before, inspect.Signature)  # what the shim rewrites: still there in this Keras
    with _compat.keyword_parameters(layer, ["scale", "twice"]):
        assert list(layer._call_signature.parameters) == ["inputs", "scale", "twice", "kwargs"]
        out = layer(x, scale=np.full((2, 3), 2.0, "float32"), twice=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), np.full((2, 3), 2.0, "float32"))
    assert layer._call_signature is before


def test_check_assigned_values_runs_before_every_assign_route():
    """dc_keras/_compat.py's check_assigned_values (a subclass of the backend's private Variable
    class, swapped in): assign, layer.set_weights and model.set_weights run the check first; a
    refused value stores nothing; type name and repr are kept; setting it again replaces the check."""
    import pytest

    seen = []

    def nonnegative(value):
        seen.append(np.asarray(value).copy())
        if np.min(value) < 0:
            raise ValueError("negative index")

    layer = keras.layers.Dense(2, use_bias=False)
    model = keras.Sequential([keras.Input((3,)), layer])
    v = layer.kernel
    base_name, base_repr = type(v).__name__, repr(v).split(" ")[0]
    _compat.check_assigned_values(v, nonnegative)
    assert type(v).__name__ == base_name and repr(v).split(" ")[0] == base_repr
    assert isinstance(v, keras.Variable)
    good = np.ones((3, 2), "float32")
    v.assign(good)
    layer.set_weights([good * 2])
    model.set_weights([good * 3])
    assert len(seen) == 3
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), good * 3)
    for route in (v.assign, lambda w: layer.set_weights([w]), lambda w: model.set_weights([w])):
        with pytest.raises(ValueError, match="negative index"):
            route(-good)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), good * 3)  # nothing stored
    _compat.check_assigned_values(v, lambda _value: None)  # replaced, not stacked
    v.assign(-good)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), -good)
    assert not getattr(type(v).__mro__[1], "_dc_keras_checked", False)  # one subclass level only


def test_sync_tf_trainable_makes_the_tape_watch_what_keras_trains():
    """The private-API shim of clustering's trainable fix (tests/test_training_review_s52.py's
    test of a clustered model frozen and unfrozen, and of a stripped subclassed one): a variable made while its Keras
    flag was False (as in a symbolic build after ClusterWrapper.build marked it), then marked
    trainable."""
    variable = keras.Variable(np.ones(3, "float32"), trainable=False)
    variable.trainable = True
    changed = _compat.sync_tf_trainable(variable)
    if keras.backend.backend() != "tensorflow":
        assert changed is False
        return
    import tensorflow as tf

    assert changed is True and variable.value.trainable
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(variable.value * 2.0)
    np.testing.assert_array_equal(tape.gradient(loss, variable.value).numpy(), [2.0, 2.0, 2.0])
    assert _compat.sync_tf_trainable(variable) is False  # already in step
