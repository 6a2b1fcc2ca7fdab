"""docs/quantization.md reviewed as an engineer with an int8 / float16 .tflite who wants it smaller
(helper session 51): every route's file packed, unpacked to the same tensors and run bit-exact on
LiteRT and TensorFlow; what users get wrong on the way:

- ``representative_data`` holding an inf crashed the whole process (TensorFlow's calibrator:
  segmentation fault), and one NaN throughout made the converter write a float32 file for
  ``quantize="int8"`` without a word: both refused now before the calibrator runs (arrays: the
  samples it would get; a generator function: each sample as it comes), naming the sample;
- uint8 images for a float input (Keras' ``fit`` / ``predict`` take them) failed after the whole
  conversion with TF's "Got value of type UINT8 but expected type FLOAT32" under a hint about Flex
  ops: now cast to float32, the same file as ``x.astype("float32")`` gives; so are a generator
  function's float64 samples; its ``(x, y)`` samples and wrongly sized ones are named;
- a list of single samples (``[x[0], x[1], ...]``) was told "no labels: representative_data=x, not
  (x, y)": now told to ``np.stack`` them; a dict of arrays by input name (as Keras' ``fit`` takes a
  multi-input model's data) was refused ("got dict"): now given by name; a generator object (read
  once) is told to pass the function that makes it;
- ``quantize="int16x8"`` / ``"int4"`` / ``"INT8"`` / ``"fp16"`` / ``8`` said only the four modes: now
  the call that writes int16x8 (``converter_options``), the ai-edge-quantizer route for int4, or the
  mode meant; the int16x8 call as the message gives it converts, packs and runs bit-exact;
- tests/_aeq_child.py (docs/quantization.md's "Running the LiteRT quantizer yourself") ran recipes
  until an unknown name (``AttributeError`` traceback), failed with a LiteRT traceback on numpy's
  default float64 CALIB.npy or a wrongly shaped one, and on a missing OUT_DIR after quantizing: now
  it checks its arguments first (exit status 2, one line naming the fix) and casts float64;
- ``converter_options={"inference_input_type": ...}`` (an int8 input and output, undocumented) with a
  type the converter refuses was a conversion failure hinting at Flex ops: now a ValueError naming
  the types each mode takes; tf.int8 / tf.uint8 files pack and run bit-exact;
- a blockwise INT4 file with an all-zero block (scale 0.0; litert-torch's and ai-edge-quantizer's
  blockwise recipes on a pruned model) failed in ``runtime.Interpreter`` with XNNPACK's run-together
  lines only: now the tensor, the cause and the fix docs/quantization.md gives.
"""
import os
import subprocess
import warnings

import numpy as np
import pytest

import _export_models as em
from _interp_outputs import per_sample_outputs
from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mlp(seed=0, levels=16):
    import keras

    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    return em.cluster_and_prune(m, levels=levels, prune=0.8)


def _x(n=50, seed=0):
    return np.random.RandomState(seed).rand(n, 64).astype(np.float32)


def _types(data):
    return {t.type for sg in fb.read_model(data).subgraphs for t in sg.tensors}


def _contents(data):
    """Every tensor's name, type, shape, bytes and quantization (an empty quantization table, which
    pack's compaction drops, counts as none)."""
    m = fb.read_model(data)

    def quant(q):
        if q is None or q.scale is None or not len(q.scale):
            return None
        return list(q.scale), list(q.zeroPoint), q.quantizedDimension

    return [[(fb.tensor_name(t), t.type, list(t.shape), fb.buffer_bytes(m, t.buffer), quant(t.quantization))
             for t in sg.tensors] for sg in m.subgraphs]


def _outputs(content, backend, packed, default_delegates, xs):
    """Raw output bytes for ``xs`` (quantized with the input's parameters for an integer input)."""
    return [y.tobytes() for y in per_sample_outputs(content, xs, packed, default_delegates, backend)]


def _check_bit_exact(plain):
    packed = export.pack(plain)
    assert len(packed) < len(plain) and any(fb.is_huffdecode_code(c) for c in fb.read_model(packed).operatorCodes)
    assert _contents(export.unpack(packed)) == _contents(plain)
    xs = _x(8, seed=3)
    for backend in ("litert", "tensorflow"):
        for default_delegates in (False, True):
            assert _outputs(packed, backend, True, default_delegates, xs) == \
                _outputs(plain, backend, False, default_delegates, xs), (backend, default_delegates)
    return packed


INT16X8 = "[tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]"


@pytest.mark.parametrize("quantize, says", [
    ("int16x8", "converter_options={'target_spec.supported_ops': " + INT16X8 + "}"),
    ("int4", "ai-edge-quantizer on it (recipe weight_only_wi4_afp32 or dynamic_wi4_afp32"),
    ("INT8", "give quantize='int8' (the modes are lowercase)"),
    ("fp16", "give quantize='float16'"),
    ("dynamc", "did you mean quantize='dynamic'?"),
    (8, "give quantize='int8' (a string)"),
])
def test_a_quantize_value_that_is_no_mode_names_the_one_meant(quantize, says):
    with pytest.raises(ValueError) as info:
        export.to_tflite(_mlp(), quantize=quantize)
    text = str(info.value)
    assert text.startswith("quantize must be one of (None, 'float16', 'int8', 'dynamic'), got ") and says in text, text


def test_int16x8_as_the_message_says_packs_per_tensor_and_runs_bit_exact():
    """The call the int16x8 message and docs/quantization.md give: 16-bit activations, int8 weights
    with one scale per tensor for a clustered model (so the sharing stays), bit-exact once packed."""
    import tensorflow as tf

    with pytest.raises(ValueError) as info:
        export.to_tflite(_mlp(), quantize="int16x8")
    assert INT16X8 in str(info.value)
    options = {"target_spec.supported_ops": eval(INT16X8, {"tf": tf})}  # the message's own spelling
    plain = export.to_tflite(_mlp(), pack=False, quantize="int8", representative_data=_x(), converter_options=options)
    m = fb.read_model(plain)
    weights = [t for t in m.subgraphs[0].tensors if t.type == fb.schema.TensorType.INT8]
    assert fb.schema.TensorType.INT16 in _types(plain) and len(weights) == 2
    assert all(len(t.quantization.scale) == 1 for t in weights)
    packed = _check_bit_exact(plain)
    assert len(packed) < len(plain) / 2, (len(packed), len(plain))


def test_a_weight_shared_by_two_ops_and_a_tf_int8_io_file_pack_bit_exact():
    """A Dense layer called twice (one int8 weight read by two FULLY_CONNECTED ops), and TF's
    converter run directly with int8 input and output (the classic microcontroller file)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(2)
    inp = keras.Input((64,))
    dense = keras.layers.Dense(64, activation="relu")
    shared = em.cluster_and_prune(keras.Model(inp, keras.layers.Dense(10)(dense(dense(inp)))), levels=16, prune=0.5)
    plain = export.to_tflite(shared, pack=False, quantize="int8", representative_data=_x())
    m = fb.read_model(plain)
    readers = {}
    for op in m.subgraphs[0].operators:
        for i in op.inputs:
            t = m.subgraphs[0].tensors[int(i)]
            if t.type == fb.schema.TensorType.INT8 and fb.buffer_bytes(m, t.buffer):
                readers[int(i)] = readers.get(int(i), 0) + 1
    assert 2 in readers.values(), readers  # the one weight two ops read
    _check_bit_exact(plain)

    model = _mlp(seed=4)
    x = _x()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = conv.convert()
    assert runtime.Interpreter(model_content=plain).get_input_details()[0]["dtype"] == np.int8
    _check_bit_exact(plain)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_inf_in_representative_data_is_refused_before_the_calibrator_crashes(value):
    """It killed the process (segmentation fault in TensorFlow's calibrator), as one inf anywhere did."""
    x = _x()
    x[3, 5] = value
    with pytest.raises(ValueError, match=r"representative_data holds inf \(1 value\(s\)\) in sample 3: "
                                         r"TensorFlow's calibrator crashes the process"):
        export.to_tflite(_mlp(), quantize="int8", representative_data=x)


def test_an_input_nan_throughout_is_refused_instead_of_a_float_file():
    """TF wrote a float32 .tflite for quantize='int8' without a word (no int8 tensor in it)."""
    with pytest.raises(ValueError, match=r"holds NaN \(3200 value\(s\)\) in sample 0 and 49 more sample\(s\): "):
        export.to_tflite(_mlp(), quantize="int8", representative_data=np.full((50, 64), np.nan, np.float32))


def test_a_nan_or_inf_from_a_generator_function_is_refused_naming_the_sample():
    x = _x(10)
    bad = x.copy()
    bad[4] = np.nan

    def samples():
        for i in range(10):
            yield [bad[i : i + 1]]

    with pytest.raises(ValueError, match=r"holds NaN \(64 value\(s\)\) in sample 4 the function yielded \(its part 0\)"):
        export.to_tflite(_mlp(), quantize="int8", representative_data=samples)
    inf = {"keras_tensor": np.full((1, 64), np.inf, np.float32)}
    with pytest.raises(ValueError, match=r"holds inf .* in sample 0 the function yielded"):
        export.to_tflite(_mlp(), quantize="int8", representative_data=lambda: iter([inf]))
    # finite samples still convert to an int8 file
    data = export.to_tflite(_mlp(), pack=False, quantize="int8", representative_data=lambda: ([x[i : i + 1]] for i in range(10)))
    assert fb.schema.TensorType.INT8 in _types(data)


def test_uint8_images_for_a_float_input_calibrate_as_their_float32_values():
    x = (_x() * 255).astype(np.uint8)
    model = _mlp()
    want = export.to_tflite(model, pack=False, quantize="int8", representative_data=x.astype(np.float32))
    assert fb.schema.TensorType.INT8 in _types(want)
    assert export.to_tflite(model, pack=False, quantize="int8", representative_data=x) == want
    assert export.to_tflite(model, pack=False, quantize="int8",
                            representative_data=lambda: ([x[i : i + 1]] for i in range(len(x)))) == want


def test_a_list_of_single_samples_is_told_to_stack_them():
    x = _x(10)
    with pytest.raises(ValueError, match=r"holds 10 arrays, but the model takes 1 input\(s\): each is one sample of "
                                         r"its input \(no samples axis\): .*representative_data=np.stack\(samples\)"):
        export.to_tflite(_mlp(), quantize="int8", representative_data=[x[i] for i in range(10)])


@pytest.fixture(scope="module")
def aeq_python():
    from _benchmarks import load as load_bench

    try:
        return load_bench("_aeq").venv_python()
    except RuntimeError as exc:  # no venv: a failure with pip's output, never a skip
        pytest.fail(str(exc), pytrace=False)


def _child(py, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([py, os.path.join(ROOT, "tests", "_aeq_child.py"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_aeq_child_checks_its_arguments_before_the_first_recipe(aeq_python, tmp_path):
    (tmp_path / "float.tflite").write_bytes(export.to_tflite(_mlp(), pack=False))
    np.save(tmp_path / "calib.npy", _x(8))
    np.save(tmp_path / "narrow.npy", _x(8)[:, :32])
    np.save(tmp_path / "one.npy", _x(1)[0])
    bad = _x(8)
    bad[2, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    (tmp_path / "out").mkdir()
    cases = [
        (("calib.npy", "out", "static_wi8_ai8", "int4"),
         "unknown recipe(s) int4: ai_edge_quantizer.recipe has ", "weight_only_wi4_afp32"),
        (("calib.npy", "missing", "static_wi8_ai8"),
         "OUT_DIR 'missing' is not a directory: create it first (mkdir -p missing)", None),
        (("narrow.npy", "out", "static_wi8_ai8"), "CALIB.npy holds an array of shape (8, 32), but the model's input "
         "'keras_tensor", "' takes samples of shape (64,): save an (N, 64) array, first axis = samples"),
        (("one.npy", "out", "static_wi8_ai8"), "CALIB.npy holds an array of shape (64,)", None),
        (("nan.npy", "out", "static_wi8_ai8"), "CALIB.npy holds NaN or inf values", None),
    ]
    import keras

    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    two = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Concatenate()([a, b])))
    (tmp_path / "two.tflite").write_bytes(export.to_tflite(two, pack=False))
    cases.append((("calib.npy", "out", "static_wi8_ai8"), "the model has 1 signature(s), 2 input(s) in "
                  "'serving_default': this script calibrates a model with one signature and one input", "two.tflite"))
    for args, says, also in cases:
        model = "two.tflite" if also == "two.tflite" else "float.tflite"
        also = None if also == "two.tflite" else also
        r = _child(aeq_python, model, *args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("_aeq_child.py: error: ") and says in r.stderr, (args, r.stderr)
        assert also is None or also in r.stderr
        assert "Traceback" not in r.stderr and not os.listdir(tmp_path / "out"), args
    # numpy's default float64 calibration data is the float32 data's file, byte for byte
    np.save(tmp_path / "calib64.npy", np.load(tmp_path / "calib.npy").astype(np.float64))
    (tmp_path / "out64").mkdir()
    for calib, out in (("calib.npy", "out"), ("calib64.npy", "out64")):
        r = _child(aeq_python, "float.tflite", calib, out, "static_wi8_ai8", cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "out" / "static_wi8_ai8.tflite").read_bytes() == \
        (tmp_path / "out64" / "static_wi8_ai8.tflite").read_bytes()


def test_a_dict_by_input_name_calibrates_as_the_list_and_a_generator_object_names_the_function():
    """Keras' fit takes a multi-input model's data as a dict by input name: to_tflite refused it ("got
    dict", with a hint about tf.data); a generator object (readable once) got the same hint."""
    import keras

    keras.utils.set_random_seed(5)
    a, b = keras.Input((8,), name="a"), keras.Input((4,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Concatenate()([a, b])))
    rs = np.random.RandomState(0)
    xa, xb = rs.rand(20, 8).astype(np.float32), rs.rand(20, 4).astype(np.float32)
    want = export.to_tflite(model, pack=False, quantize="int8", representative_data=[xa, xb])
    assert export.to_tflite(model, pack=False, quantize="int8", representative_data={"b": xb, "a": xa}) == want
    with pytest.raises(ValueError, match=r"a dict with keys \['a', 'c'\], but the model's inputs are named \['a', 'b'\]"):
        export.to_tflite(model, quantize="int8", representative_data={"a": xa, "c": xb})
    with pytest.raises(ValueError, match=r"got a generator object, which can be read only once: pass the function "
                                         r"that makes it, e\.g\. representative_data=lambda: "):
        export.to_tflite(model, quantize="int8", representative_data=([xa[i : i + 1], xb[i : i + 1]] for i in range(5)))


def test_xnnpack_refusing_a_zero_scale_int4_block_is_said_with_the_fix():
    """litert-torch's blockwise INT4 file (tests/data/litert_torch): a block of 32 zero weights gets
    scale 0.0, which XNNPACK refuses, packed or not; runtime.Interpreter passed XNNPACK's run-together
    lines through ("unsupported scale value (0.000000) in channel 3 for INT4 tensor 2 in XNNPACK
    delegateunsupported datatype ..."). Now the tensor, the cause and the fix, which runs it bit-exact."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with open(os.path.join(ROOT, "tests", "data", "litert_torch", "int4_blockwise32.tflite"), "rb") as f:
        plain = f.read()
    packed = export.pack(plain)
    x = np.random.RandomState(0).rand(1, 64).astype(np.float32)
    resolvers = {"litert": "ai_edge_litert.interpreter.OpResolverType", "tensorflow": "tf.lite.experimental.OpResolverType"}
    for backend, resolver in resolvers.items():
        for content in (plain, packed):
            with pytest.raises(RuntimeError, match=(
                    rf"^model_content: XNNPACK, the {backend} interpreter's default delegate, cannot run the INT4 weight "
                    r"tensor 2 '.*fc2;1': channel \d+ has quantization scale 0\.000000, .*The file is valid, packed or "
                    rf"not\. Fix: Interpreter\(\.\.\., experimental_op_resolver_type={resolver}\."
                    r"BUILTIN_WITHOUT_DEFAULT_DELEGATES\) runs it on TFLite's built-in kernels")):
                runtime.Interpreter(model_content=content, backend=backend).allocate_tensors()
        runner = runtime.Interpreter(model_content=packed, backend=backend).get_signature_runner()
        with pytest.raises(RuntimeError, match="cannot run the INT4 weight tensor 2"):
            runner(**{next(iter(runner.get_input_details())): x})
    # the fix as the message gives it: the packed file's outputs are the plain file's, bit for bit
    for backend, enum, plain_it in (
            ("litert", OpResolverType, lambda: Interpreter(model_content=plain, experimental_op_resolver_type=(
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))),
            ("tensorflow", tf.lite.experimental.OpResolverType, lambda: tf.lite.Interpreter(
                model_content=plain, experimental_op_resolver_type=tf.lite.experimental.OpResolverType.
                BUILTIN_WITHOUT_DEFAULT_DELEGATES))):
        got = runtime.Interpreter(model_content=packed, backend=backend,
                                  experimental_op_resolver_type=enum.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = plain_it()
        assert em.run(got, x).tobytes() == em.run(ref, x).tobytes()


def test_int8_input_and_output_through_converter_options_pack_bit_exact_and_a_wrong_type_is_named():
    """docs/quantization.md's int8-input/output call; a type the converter refuses was a conversion
    failure whose hint was Flex ops ("If the converter lacks an op, ..."), though no op is missing."""
    import tensorflow as tf

    model = _mlp(seed=6)
    for dtype, np_type in ((tf.int8, np.int8), (tf.uint8, np.uint8)):
        plain = export.to_tflite(model, pack=False, quantize="int8", representative_data=_x(), converter_options={
            "inference_input_type": dtype, "inference_output_type": dtype})
        details = runtime.Interpreter(model_content=plain)
        assert details.get_input_details()[0]["dtype"] == np_type == details.get_output_details()[0]["dtype"]
        _check_bit_exact(plain)
    for quantize, kw in (("int8", {"representative_data": _x()}), ("dynamic", {})):
        with pytest.raises(ValueError, match=r"^to_tflite: converter_options' inference_input_type / inference_output_type: "
                                             r"the converter refused them \(.*\)\. With quantize='int8' they may be "
                                             r"tf\.int8 or tf\.uint8") as info:
            export.to_tflite(model, quantize=quantize, converter_options={"inference_input_type": tf.int16}, **kw)
        assert "SELECT_TF_OPS" not in str(info.value)


def test_packing_a_packed_file_again_says_there_is_nothing_to_pack():
    """pack(pack(x)) said "unpack it first", as if the file had to be unpacked: to_tflite's output is
    packed already (a user packing it again to shrink it further has nothing to do)."""
    packed = export.to_tflite(_mlp(), quantize="int8", representative_data=_x())
    with pytest.raises(ValueError, match=r"^model is already packed \(it contains HuffDecode ops\), so there is nothing "
                                         r"to pack: use it as it is, or dc_keras\.export\.unpack\(data\) first to pack "
                                         r"it again with other options$"):
        export.pack(packed)
    assert export.pack(export.unpack(packed)) == packed


def test_a_generator_functions_float64_samples_are_cast_and_wrong_samples_named():
    """A generator function of numpy's float64 samples failed after the conversion ("Got value of type
    FLOAT64 but expected type FLOAT32") under a hint about Flex ops; one yielding (x, y) got TF's "You
    need to provide either a dictionary with input names and values ..."; a wrongly sized sample,
    "ResizeInputTensorStrict only allows mutating unknown dimensions": all with the Flex-ops hint."""
    x = _x()
    model = _mlp()
    want = export.to_tflite(model, pack=False, quantize="int8", representative_data=lambda: ([x[i : i + 1]] for i in range(50)))
    x64 = x.astype(np.float64)
    assert export.to_tflite(model, pack=False, quantize="int8",
                            representative_data=lambda: ([x64[i : i + 1]] for i in range(50))) == want
    with pytest.raises(ValueError, match=r"^representative_data: sample 0 the function yielded holds 2 arrays, but the "
                                         r"model takes 1 input\(s\): yield its inputs only"):
        export.to_tflite(model, quantize="int8", representative_data=lambda: ((x[i : i + 1], np.zeros(1)) for i in range(5)))
    with pytest.raises(ValueError, match=r"^representative_data: sample 0 the function yielded has an array of shape "
                                         r"\(1, 32\) for the model's input '.*' of shape \(None, 64\)"):
        export.to_tflite(model, quantize="int8", representative_data=lambda: ([x[i : i + 1, :32]] for i in range(5)))
