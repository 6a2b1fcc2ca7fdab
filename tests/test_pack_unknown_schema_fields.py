"""``pack`` / ``unpack`` / the runtime on .tflite files made elsewhere (helper session 39):

- a file holding data the TFLite schema read here has no field for (an operator-options table of a
  type it does not list, a field a newer schema added: written by a newer converter) was packed and
  unpacked without a word, the data dropped (the flatbuffer is rebuilt from the fields known);
  now both refuse it naming the field and the fix, and ``inspect`` notes it;
- ``decode="op"`` on a model whose packed weights are decoded at the first ``invoke()`` (TFLite defers
  the HuffDecode op's Prepare after a dynamic shape): ``get_tensor`` on such a weight after
  ``allocate_tensors()`` said TFLite's "Tensor data is null. Run allocate_tensors() first"."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

tf = pytest.importorskip("tensorflow")


def _clustered(shape, seed):
    rng = np.random.default_rng(seed)
    w = rng.choice(np.linspace(-1, 1, 8).astype(np.float32), shape)
    w[rng.random(shape) < 0.7] = 0
    return w


@pytest.fixture(scope="module")
def dynamic_batch():
    """x (None, 4, 16) -> reshape to (batch, 64) through SHAPE (a shape known only at run time) ->
    FULLY_CONNECTED 64x128 -> relu -> FULLY_CONNECTED 128x10, clustered and pruned weights."""
    w1, w2 = tf.constant(_clustered((64, 128), 0)), tf.constant(_clustered((128, 10), 1))

    class M(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 16], tf.float32)])
        def f(self, x):
            h = tf.reshape(x, [tf.shape(x)[0], -1])
            return tf.matmul(tf.nn.relu(tf.matmul(h, w1)), w2)

    m = M()
    return tf.lite.TFLiteConverter.from_concrete_functions([m.f.get_concrete_function()], m).convert()


def _with_unknown_options(data):
    """``data`` with its last operator given a ``builtin_options_2`` table of type 24, which the
    schema here does not list (as a newer converter writes an option of an operator it added)."""
    m = fb.read_model(data)
    op = m.subgraphs[0].operators[-1]
    op.builtinOptions2Type = 24
    op.builtinOptions2 = fb.schema.StablehloConcatenateOptionsT()
    op.builtinOptions2.dimension = 12345
    return fb.write_model(m)


def _options2_table(data):
    """Whether the operator with a type-24 ``builtin_options_2`` still has its table."""
    sg = fb.schema.Model.GetRootAs(data, 0).Subgraphs(0)
    (op,) = [sg.Operators(i) for i in range(sg.OperatorsLength()) if sg.Operators(i).BuiltinOptions2Type() == 24]
    return op.BuiltinOptions2() is not None


def test_data_the_schema_does_not_know_is_refused_by_pack_and_unpack_not_dropped(dynamic_batch, tmp_path):
    """pack returned a file whose operator kept its options type but had lost the table (the
    object tree drops a union member of a type it does not list), and unpack did the same."""
    data = _with_unknown_options(dynamic_batch)
    assert _options2_table(data)
    where = "subgraphs[0].operators[%d].builtin_options2" % (len(fb.read_model(data).subgraphs[0].operators) - 1)
    with pytest.raises(ValueError, match=r"pack cannot rewrite this \.tflite without losing data: "
                                         + where.replace("[", r"\[").replace("]", r"\]")
                                         + r" holds a builtin_options2 table of type 24.*pip install -U ai-edge-litert"):
        export.pack(data)
    packed = _with_unknown_options(export.pack(dynamic_batch))
    assert _options2_table(packed)
    with pytest.raises(ValueError, match=r"unpack cannot rewrite .* type 24.*and unpack again"):
        export.unpack(packed)
    assert "note: pack cannot rewrite this .tflite without losing data" in export.inspect(data).to_text()
    # a packed file is ready for unpack, which is what the note names there
    assert export.inspect(packed).not_rewritable.startswith("unpack cannot rewrite this .tflite")
    assert export.inspect(dynamic_batch).not_rewritable is None
    src, dst = tmp_path / "m.tflite", tmp_path / "p.tflite"
    src.write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "dc_keras.cli", "pack", str(src), str(dst)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and not dst.exists(), r.stdout + r.stderr
    assert "without losing data" in r.stderr and "Traceback" not in r.stderr, r.stderr


_FALLBACK = """
import sys, warnings
sys.modules["ai_edge_litert"] = None  # not installed: dc_keras reads files with TensorFlow's schema
from dc_keras import _flatbuffer as fb, export
assert fb.schema.__name__.startswith("tensorflow"), fb.schema.__name__
data = open(sys.argv[1], "rb").read()
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = export.pack(data)
except ValueError as exc:
    print("REFUSED", exc)
else:
    print("PACKED", len(out))
"""


def test_a_field_tensorflows_schema_lacks_is_refused_when_it_is_the_schema_read(dynamic_batch, tmp_path):
    """Without ai-edge-litert, dc_keras reads files with TensorFlow 2.21's schema, which lacks
    FullyConnectedOptions.quant_spec (LiteRT 2.3's schema has it): pack dropped the field."""
    m = fb.read_model(dynamic_batch)
    (fc,) = [op for op in m.subgraphs[0].operators if fb.opcode_name(m, op) == "FULLY_CONNECTED"][:1]
    if not hasattr(fc.builtinOptions, "quantSpec"):
        pytest.skip("the schema here has no FullyConnectedOptions.quant_spec to write")
    fc.builtinOptions.quantSpec = [4, 32]
    src = tmp_path / "quant_spec.tflite"
    src.write_bytes(fb.write_model(m))
    r = subprocess.run([sys.executable, "-c", _FALLBACK, str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("REFUSED pack cannot rewrite this .tflite without losing data: subgraphs[0].operators["), line
    assert "builtin_options holds field 5 of its FullyConnectedOptions table" in line, line
    assert "pip install ai-edge-litert" in line, line


def test_op_route_names_a_weight_decoded_at_the_first_invoke(dynamic_batch):
    """decode='op' with a dynamic batch: the weights are read bit-exactly after invoke(); before it
    get_tensor / tensor() said "Tensor data is null. Run allocate_tensors() first"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = export.pack(dynamic_batch)
    m = fb.read_model(dynamic_batch)
    weights = {i: fb.buffer_bytes(m, t.buffer) for i, t in enumerate(m.subgraphs[0].tensors)
               if fb.buffer_size(m, t.buffer) >= 4096}
    assert len(weights) == 2
    nodel = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # bit-exact: neither applies XNNPACK
    it = runtime.Interpreter(model_content=packed, backend="tensorflow", decode="op", experimental_op_resolver_type=nodel)
    it.allocate_tensors()
    for i in weights:
        for read in (lambda i=i: it.get_tensor(i), lambda i=i: it.tensor(i)()):
            with pytest.raises(ValueError, match=rf"tensor {i} \('.*'\) is a packed weight that decode='op' "
                                                 r"decodes in the HuffDecode op's Prepare, which TFLite defers to "
                                                 r"the first invoke\(\).*run the model once"):
                read()
    x = np.random.default_rng(0).standard_normal((3, 4, 16)).astype(np.float32)
    it.resize_tensor_input(it.get_input_details()[0]["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    for i, raw in weights.items():
        assert it.get_tensor(i).tobytes() == raw
        assert it.tensor(i)().tobytes() == raw
    plain = runtime.Interpreter(model_content=dynamic_batch, backend="tensorflow", decode="op",
                                experimental_op_resolver_type=nodel)
    plain.resize_tensor_input(plain.get_input_details()[0]["index"], x.shape)
    plain.allocate_tensors()
    plain.set_tensor(plain.get_input_details()[0]["index"], x)
    plain.invoke()
    want = plain.get_tensor(plain.get_output_details()[0]["index"])
    assert it.get_tensor(it.get_output_details()[0]["index"]).tobytes() == want.tobytes()
    # the delegate route (the default) decodes at load: the weights read at once
    it = runtime.Interpreter(model_content=packed)
    it.allocate_tensors()
    assert all(it.get_tensor(i).tobytes() == raw for i, raw in weights.items())


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_latest_features_flag_keeps_xnnpack_and_bit_exact_outputs(dynamic_batch, backend):
    """experimental_default_delegate_latest_features=True (a LiteRT / TF Interpreter flag) makes TFLite
    apply XNNPACK as the interpreter is built, before the HuffDecode delegate: XNNPACK took no layer
    of a packed weight (they ran on TFLite's builtin kernels) and the float outputs differed from
    the unpacked model's under the same flag (a few 1e-6). Now the model is unpacked in memory first."""
    if backend == "litert":
        pytest.importorskip("ai_edge_litert")
    flag = {"experimental_default_delegate_latest_features": True, "backend": backend}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = export.pack(dynamic_batch)
    x = np.random.default_rng(1).standard_normal((8, 4, 16)).astype(np.float32)
    outs, delegated = [], []
    for content in (dynamic_batch, packed):
        it = runtime.Interpreter(model_content=content, **flag)
        (name,) = it.get_signature_runner().get_input_details()
        outs.append(it.get_signature_runner()(**{name: x}))
        delegated.append(sum(o["op_name"] == "DELEGATE" for o in it._get_ops_details()))
    assert outs[0].keys() == outs[1].keys()
    for k in outs[0]:
        assert outs[0][k].tobytes() == outs[1][k].tobytes(), k
    assert delegated[0] >= 1 and delegated[1] == delegated[0]  # XNNPACK's node, as for the unpacked model
    for refused in ({"weights": "compressed"}, {"release_decoded": True}):
        with pytest.raises(ValueError, match="cannot be combined with experimental_default_delegate_latest_features"):
            runtime.Interpreter(model_content=packed, **flag, **refused)
