"""Keras 3's own exporter, ``model.export(path, format="litert")``, in place of
``dc_keras.export.to_tflite``, then ``pack`` (helper session 42): the flow
prune -> strip -> cluster -> strip -> ``model.export`` -> ``pack`` on the TensorFlow backend.

- A stripped clustered model (Dense MLP; a BatchNorm CNN, BN folded by ``cluster``): Keras's file
  holds the same weight values as ``to_tflite``'s (no folding, reordering or quantizing of its own),
  packs to within a few bytes of it (tensor names differ), and the packed file's outputs are
  bit-identical to the unpacked one's through ``dc_keras.runtime.Interpreter``; the unpacked file runs
  the same through plain ``ai_edge_litert``.
- The *unstripped* models: Keras exports the wrappers' inference pass, which the converter folds into
  the same kernels (a clustered wrapper's gather of its centroids). A pruned wrapper's kernel was
  ``w * mask``, -0.0 wherever a pruned weight was negative: ~9-13 % larger packed, silently beside a
  -0.0 note that blamed tfmot; its inference pass now writes +0.0 there, as ``strip`` stores
  (tested here: the constants equal those of the stripped model's export).
- An LSTM exported without ``input_signature`` gets a dynamic batch, which Keras converts with
  TensorFlow (Flex) TensorList ops: it runs nowhere in Python; ``dc_keras.runtime``'s error names the
  fixed-batch ``input_signature`` and ``to_tflite``. With a fixed batch it packs bit-exact (long).
- ``optimizations=[tf.lite.Optimize.DEFAULT]`` through Keras's converter keywords quantizes per
  channel (spreads the shared values); ``_experimental_disable_per_channel=True`` keeps them.

- torch (long): the same MLP compressed and exported with KERAS_BACKEND=torch (litert-torch, in a venv of
  its own, ~/.cache/dc_keras/venvs/keras-litert-torch-s42, created once) holds ``to_tflite``'s weights and
  packs bit-exact; the still-pruned model's file holds its strip's weights.

Sizes of these flows, also on JAX (where Keras refuses the export): docs/models.md, measured by
benchmarks/keras_litert_export.py."""
import os

import keras
import numpy as np
import pytest

import dc_keras
from _benchmarks import load as load_bench
from _compress_flow import five_calls, random_data, run_tflite
from dc_keras import _flatbuffer as fb
from dc_keras import export
from dc_keras.export._convert import _tensor_array

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="keras's model.export(format='litert') converts on TensorFlow (and torch) only")


def _export(model, tmp_path, name, **kwargs):
    path = os.path.join(tmp_path, f"{name}.tflite")
    model.export(path, format="litert", verbose=False, **kwargs)
    with open(path, "rb") as f:
        return f.read()


def _constants(content, min_size=64):
    """The file's constant arrays of ``min_size`` entries or more, as sorted ``(dtype, shape, bytes)``:
    the weights, whatever the tensors are named."""
    m = fb.read_model(content)
    out = []
    for sg in m.subgraphs:
        for t in sg.tensors or []:
            a = _tensor_array(m, t)
            if a is not None and a.size >= min_size:
                out.append((str(a.dtype), tuple(a.shape), a.tobytes()))
    return sorted(out)


def _negative_zeros(content):
    return sum(int(np.sum((np.frombuffer(b, dtype=d) == 0) & np.signbit(np.frombuffer(b, dtype=d))))
               for d, _, b in _constants(content) if d.startswith("float"))


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])


def _bn_cnn():
    """The benchmark's ``cnn`` (benchmarks/keras_litert_export.py), smaller: 8x8x3, Conv2D 16 and 32."""
    keras.utils.set_random_seed(0)
    return load_bench("keras_litert_export").bn_cnn(side=8, filters=(16, 32))


def _plain_litert(content, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


@pytest.fixture(scope="module")
def chain():
    """chain(build) -> five_calls(build(), sparsity=0.75, bits=3): (pruned, clustered, final), trained
    once per model for the tests below (the MLP's: two tests trained it each)."""
    made = {}

    def get(build):
        if build not in made:
            made[build] = five_calls(build(), sparsity=0.75, bits=3)
        return made[build]
    return get


@pytest.mark.parametrize("build", [_mlp, _bn_cnn], ids=["mlp", "bn_cnn"])
def test_keras_export_packs_like_to_tflite(build, tmp_path, chain):
    pruned, clustered, final = chain(build)
    x, _ = random_data(final, n=4)
    ours = export.to_tflite(final, pack=False)
    theirs = _export(final, tmp_path, "stripped")
    assert _constants(theirs) == _constants(ours)  # the same weights: Keras's exporter changes none
    packed, packed_ours = export.pack(theirs), export.pack(ours)
    assert len(packed) < len(theirs) / 2
    assert abs(len(packed) - len(packed_ours)) <= 128, (len(packed), len(packed_ours))  # names only
    unpacked_out = run_tflite(theirs, x)
    assert _same_bits(run_tflite(packed, x), unpacked_out)
    assert _same_bits(_plain_litert(theirs, x), unpacked_out)
    np.testing.assert_allclose(unpacked_out, keras.ops.convert_to_numpy(final(x, training=False)), atol=1e-5)
    report = export.inspect(theirs)  # every constant has a status; the small ones say why they stay
    assert {r.status for r in report.rows} <= {"packable", "kept", "skipped", "refused"}
    assert all(r.reason for r in report.rows if r.status != "packable")
    # the wrapped (unstripped) clustered model: its centroid gather folds into the same kernels
    assert _constants(_export(clustered, tmp_path, "clustered_wrapped")) == _constants(theirs)


def test_pruned_wrapper_exports_as_strip_does(tmp_path):
    """``model.export`` of a model still wrapped by ``prune`` writes the kernels ``strip`` would:
    +0.0 where pruned. It wrote ``w * mask`` (-0.0 wherever a pruned weight was negative), which
    packs ~10 % larger than the stripped model's file, each -0.0 a value of its own to the codebook."""
    pruned = dc_keras.prune(_mlp(), dc_keras.schedules.ConstantSparsity(0.8, 0))
    x, y = random_data(pruned, n=64)
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[dc_keras.PruningCallback()])
    stored = [keras.ops.convert_to_numpy(w) for w in pruned.weights if w.path.endswith("/kernel")]
    assert sum(int(np.sum((a == 0) & np.signbit(a))) for a in stored) > 100  # the case: -0.0 stored
    stripped = dc_keras.strip(pruned)
    assert _same_bits(keras.ops.convert_to_numpy(pruned(x, training=False)),
                      keras.ops.convert_to_numpy(stripped(x, training=False)))
    wrapped_file, stripped_file = _export(pruned, tmp_path, "wrapped"), _export(stripped, tmp_path, "stripped")
    assert _negative_zeros(wrapped_file) == 0
    assert _constants(wrapped_file) == _constants(stripped_file)
    assert abs(len(export.pack(wrapped_file)) - len(export.pack(stripped_file))) <= 256


def test_dynamic_range_through_keras_keywords_keeps_sharing_per_tensor(tmp_path, chain):
    """Keras passes converter attributes through: ``optimizations=[DEFAULT]`` alone quantizes per
    channel (each output channel its own scale: the shared values spread), which is what
    ``_experimental_disable_per_channel=True`` (to_tflite's default for clustered models) avoids."""
    import tensorflow as tf

    _, _, final = chain(_mlp)  # five_calls(_mlp(), sparsity=0.75, bits=3)
    kernel = 64 * 32

    def int8_kernel_values(content):
        return [int(np.unique(np.frombuffer(b, dtype=d)).size) for d, s, b in _constants(content)
                if d == "int8" and int(np.prod(s)) == kernel]

    per_channel = _export(final, tmp_path, "dyn_pc", optimizations=[tf.lite.Optimize.DEFAULT])
    per_tensor = _export(final, tmp_path, "dyn_pt", optimizations=[tf.lite.Optimize.DEFAULT],
                         _experimental_disable_per_channel=True)
    assert int8_kernel_values(per_tensor) and max(int8_kernel_values(per_tensor)) <= 9  # 8 shared + 0
    assert max(int8_kernel_values(per_channel)) > 9
    assert len(export.pack(per_tensor)) < len(export.pack(per_channel))
    assert _constants(per_tensor) == _constants(export.to_tflite(final, pack=False, quantize="dynamic"))


def _lstm():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6, 8)), keras.layers.LSTM(16), keras.layers.Dense(4)])


@pytest.mark.long
def test_lstm_export_dynamic_batch_needs_flex_fixed_batch_packs(tmp_path):
    _, _, final = five_calls(_lstm(), sparsity=0.75, bits=3)
    x, _ = random_data(final, n=1)
    dynamic = _export(final, tmp_path, "dynamic")  # Keras's default: batch None -> TensorList (Flex) ops
    with pytest.raises(RuntimeError, match=r"FlexTensorList.*recurrent layer.*input_signature=\[keras.InputSpec"
                                           r"\(shape=\(1, timesteps, features\).*dc_keras.export.to_tflite"):
        run_tflite(export.pack(dynamic), x)
    fixed = _export(final, tmp_path, "fixed",
                    input_signature=[keras.InputSpec(shape=(1, 6, 8), dtype="float32")])
    packed = export.pack(fixed)
    assert _same_bits(run_tflite(packed, x), run_tflite(fixed, x))
    ours = export.pack(export.to_tflite(final, pack=False, batch_size=1))
    assert abs(len(packed) - len(ours)) <= 128, (len(packed), len(ours))


_TORCH_CHILD = """
import sys
import keras
import dc_keras
from _compress_flow import five_calls

out = sys.argv[1]
keras.utils.set_random_seed(0)  # the model of _mlp()
mlp = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
pruned, clustered, final = five_calls(mlp, sparsity=0.75, bits=3)
final.save(out + "/final.keras")
final.export(out + "/final.tflite", format="litert", verbose=False)
pruned.save(out + "/pruned.keras")
pruned.export(out + "/pruned.tflite", format="litert", verbose=False)
"""


@pytest.mark.long
def test_torch_backend_keras_export_packs_like_to_tflite(tmp_path):
    """KERAS_BACKEND=torch (litert-torch converts; a venv of its own, created once: keras, the CPU wheel
    of torch, litert-torch): the stripped clustered MLP's file holds the weights ``to_tflite`` exports
    from the same model (loaded here, TensorFlow backend), packs bit-exact; the still-pruned model's
    export holds its strip's weights (no -0.0)."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "benchmarks"))
    from _venv import cached_venv

    py = cached_venv("keras-litert-torch-s42", ["litert-torch==0.10.0", "torch==2.13.0+cpu", "keras==3.15.1"],
                     "keras + litert-torch")
    env = dict(os.environ, KERAS_BACKEND="torch",
               PYTHONPATH=os.pathsep.join([root, os.path.join(root, "tests")]))
    r = subprocess.run([py, "-c", _TORCH_CHILD, str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    final = keras.saving.load_model(os.path.join(tmp_path, "final.keras"), compile=False)
    with open(os.path.join(tmp_path, "final.tflite"), "rb") as f:
        theirs = f.read()
    assert _constants(theirs) == _constants(export.to_tflite(final, pack=False))
    x, _ = random_data(final, n=1)  # litert-torch fixes the batch to 1
    packed = export.pack(theirs)
    assert len(packed) < len(theirs) / 2
    assert _same_bits(run_tflite(packed, x), run_tflite(theirs, x))
    assert _same_bits(_plain_litert(theirs, x), run_tflite(theirs, x))
    pruned = keras.saving.load_model(os.path.join(tmp_path, "pruned.keras"), compile=False)
    with open(os.path.join(tmp_path, "pruned.tflite"), "rb") as f:
        wrapped = f.read()
    assert _negative_zeros(wrapped) == 0
    assert _constants(wrapped) == _constants(export.to_tflite(dc_keras.strip(pruned), pack=False))
