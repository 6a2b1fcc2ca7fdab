"""Shared helper of the issue-14 training tests: the documented five-call flow on a tiny model."""
import keras
import numpy as np

import dc_keras
from dc_keras.train import ClusterWrapper, PruneWrapper


def np_(v):
    return keras.ops.convert_to_numpy(v)


def random_data(model, n=16, seed=0):
    rng = np.random.default_rng(seed)

    def one(t):
        shape = (n,) + tuple(t.shape[1:])
        if "int" in str(t.dtype):
            return rng.integers(0, 10, size=shape).astype(t.dtype)
        return rng.normal(size=shape).astype("float32")

    xs = [one(t) for t in model.inputs]
    ys = [rng.normal(size=(n,) + tuple(t.shape[1:])).astype("float32") for t in model.outputs]
    return (xs[0] if len(xs) == 1 else xs), (ys[0] if len(ys) == 1 else ys)


def predict(model, x):
    """Inference-mode outputs, eagerly (no predict-function tracing: cheaper for tiny RNN tests)."""
    out = model(x, training=False)
    return [np_(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_same_predictions(a, b, x):
    for pa, pb in zip(predict(a, x), predict(b, x)):
        np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-6)


def run_tflite(content, x):
    """Output of ``.tflite`` bytes (packed or not) on the batch ``x``, through dc_keras's interpreter
    (LiteRT with HuffDecode registered), the input resized to ``x``'s shape."""
    it = dc_keras.runtime.Interpreter(model_content=content)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def kernels(model):
    """``{variable path: numpy value}`` of every kernel/embedding of a plain model."""
    return {v.path: np_(v) for v in model.weights
            if v.path.rsplit("/", 1)[-1] in ("kernel", "recurrent_kernel", "embeddings",
                                              "depthwise_kernel", "pointwise_kernel")}


def wrappers_of(model, cls):
    return [l for l in dc_keras.train._base.find_wrappers(model) if isinstance(l, cls)]


def five_calls(model, sparsity=0.5, bits=3, epochs=1, **cluster_kwargs):
    """prune -> fit -> strip -> cluster -> fit -> strip; checks each strip keeps the predictions.
    Returns ``(pruned, clustered, final)``."""
    x, y = random_data(model)
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(sparsity, 0))
    assert wrappers_of(pruned, PruneWrapper)
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[dc_keras.PruningCallback()])
    stripped = dc_keras.strip(pruned)
    assert not dc_keras.train._base.find_wrappers(stripped)
    assert_same_predictions(pruned, stripped, x)
    clustered = dc_keras.cluster(stripped, bits=bits, **cluster_kwargs)
    assert wrappers_of(clustered, ClusterWrapper)
    clustered.compile(keras.optimizers.Adam(1e-3), "mse")
    clustered.fit(x, y, epochs=epochs, batch_size=8, verbose=0)
    final = dc_keras.strip(clustered)
    assert not dc_keras.train._base.find_wrappers(final)
    assert_same_predictions(clustered, final, x)
    return pruned, clustered, final


def check_compressed(final, names, sparsity=0.5, bits=3):
    """Each kernel whose path contains one of ``names``: pruned to ``sparsity`` and at most
    ``2**bits`` distinct non-zero values."""
    ks = kernels(final)
    for name in names:
        hits = [p for p in ks if name in p.split("/")]
        assert hits, f"no kernel of {name!r} in {sorted(ks)}"
        for path in hits:
            k = ks[path]
            assert abs(float(np.mean(k == 0)) - sparsity) <= 0.5 / k.size + 0.02, (path, np.mean(k == 0))
            assert 1 <= len(np.unique(k[k != 0])) <= 2 ** bits, path


# Layer types the training wrappers support: name -> (input shape, layer factory).
LAYER_CASES = {
    "dense": ((12,), lambda: keras.layers.Dense(8)),
    "conv1d": ((10, 4), lambda: keras.layers.Conv1D(8, 3)),
    "conv2d": ((6, 6, 4), lambda: keras.layers.Conv2D(8, 3)),
    "conv3d": ((4, 4, 4, 4), lambda: keras.layers.Conv3D(4, 2)),
    "depthwise": ((6, 6, 4), lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2)),
    "separable": ((6, 6, 4), lambda: keras.layers.SeparableConv2D(8, 3)),
    "conv2d_transpose": ((5, 5, 4), lambda: keras.layers.Conv2DTranspose(4, 3)),
    "embedding": ((5,), lambda: keras.layers.Embedding(20, 8)),
}


def layer_case(case):
    """``(model, layer, x, y, weight names)``: LAYER_CASES[case] between an Input and a Dense head,
    16 random samples, and the names of the layer's compressible weights."""
    shape, make = LAYER_CASES[case]
    layer = make()
    model = keras.Sequential([keras.Input(shape, dtype="int32" if case == "embedding" else "float32"), layer,
                              keras.layers.Flatten(), keras.layers.Dense(1, name="head")])
    rng = np.random.default_rng(1)
    x = rng.integers(0, 20, size=(16,) + shape) if case == "embedding" else rng.normal(size=(16,) + shape)
    y = rng.normal(size=(16, 1))
    names = {"separable": ["depthwise_kernel", "pointwise_kernel"], "embedding": ["embeddings"]}.get(case, ["kernel"])
    return model, layer, x, y, names


@keras.saving.register_keras_serializable(package="_compress_flow")
class MinimalCell(keras.layers.Layer):
    """A custom RNN cell (keras.layers.RNN's documented minimal one), a cell dc_keras does not know:
    since 2026-12-06 a StackedRNNCells of LSTM/GRU/SimpleRNN cells is compressed, one holding this is not."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def get_config(self):
        return {**super().get_config(), "units": self.units}

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")

    def call(self, inputs, states):
        h = keras.ops.matmul(inputs, self.kernel) + keras.ops.matmul(states[0], self.recurrent_kernel)
        return h, [h]
