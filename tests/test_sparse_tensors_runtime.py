"""Files with TFLite sparse tensors (``Optimize.EXPERIMENTAL_SPARSITY``) on ``dc_keras.runtime.Interpreter``.

Measured here (LiteRT 2.3, TensorFlow 2.21): the XNNPACK delegate both interpreters apply by default
fails in Prepare ("failed to delegate FULLY_CONNECTED node #1 ... (TfLiteXNNPackDelegate) failed to
prepare") on int8 sparse weights: LiteRT's on full-integer and dynamic-range files, TensorFlow's on
dynamic-range ones; unpacked, and packed when ``pack`` keeps a sparse tensor (one too small to pay).
Float32 and float16 sparse files run. Every route either runs and gives the reference outputs (TFLite's built-in
kernels on the unpacked file) or fails with our message naming the sparse tensors, the cause and
fixes -- and each fix it names is run here and gives those outputs. Nothing is skipped: if a later
LiteRT runs these files, the routes simply run and are compared."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

QUANTIZE = ("float", "float16", "dynamic", "int8")
SHAPES = {"mlp": (64,), "cnn": (12, 12, 4)}


def _pruned(model, seed):
    """80 % of every kernel set to zero (as pruning leaves it)."""
    rng = np.random.RandomState(seed)
    for w in model.weights:
        if len(w.shape) >= 2:
            a = w.numpy()
            a[rng.rand(*a.shape) < 0.8] = 0
            w.assign(a)
    return model


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input(SHAPES["mlp"]), keras.layers.Dense(128, activation="relu"),
                            keras.layers.Dense(10)])
    cnn = keras.Sequential([keras.Input(SHAPES["cnn"]), keras.layers.Conv2D(32, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(10)])
    return {"mlp": _pruned(mlp, 1), "cnn": _pruned(cnn, 2)}


def _convert(model, kind, quantize, sparse=True):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    opts = [] if quantize == "float" else [tf.lite.Optimize.DEFAULT]
    conv.optimizations = opts + ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else [])
    if quantize == "float16":
        conv.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        rng = np.random.RandomState(3)
        conv.representative_dataset = lambda: ([rng.rand(1, *SHAPES[kind]).astype(np.float32)] for _ in range(16))
    return conv.convert()


def _x(kind):
    return np.random.RandomState(5).rand(2, *SHAPES[kind]).astype(np.float32)


def _reference(content, x):
    """TFLite's built-in kernels (no XNNPACK) on the file."""
    it = tf.lite.Interpreter(model_content=content,
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return _invoke(it, x)


def _invoke(it, x):
    i = it.get_input_details()[0]["index"]
    it.resize_tensor_input(i, x.shape)
    it.allocate_tensors()
    it.set_tensor(i, x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _run(content, x, **kwargs):
    return _invoke(runtime.Interpreter(model_content=content, **kwargs), x)


def _resolver(backend):
    if backend == "tensorflow":
        return tf.lite.experimental.OpResolverType, "tf.lite.experimental.OpResolverType"
    from ai_edge_litert.interpreter import OpResolverType

    return OpResolverType, "ai_edge_litert.interpreter.OpResolverType"


def _sparse_names(content, floats=True):
    """The names of the file's sparse tensors (without float32 / float16 ones: ``floats=False``)."""
    m = fb.read_model(content)
    skip = () if floats else (fb.schema.TensorType.FLOAT32, fb.schema.TensorType.FLOAT16)
    return [fb.tensor_name(t) for sg in m.subgraphs for t in sg.tensors if t.sparsity is not None and t.type not in skip]


def _same(got, want, quantize):
    """Float: the kernels' summation order apart. Quantized: XNNPACK's int8 kernels and TFLite's built-in
    ones may round an output to the next int8 step (measured: one step, 0.0012 of outputs up to 0.11):
    two steps of an int8 range over the outputs are allowed, far below what a wrong route gives."""
    top = max(float(np.max(np.abs(want))), 1e-6)
    atol = 1e-6 * max(1.0, top) if quantize in ("float", "float16") else top / 64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)


def _check_route(content, x, want, backend, quantize):
    """Runs ``content`` on ``backend`` with default options: its outputs are ``want``, or it fails with
    our message and each fix that message names runs it and gives ``want``. Returns the message (None
    when it ran)."""
    try:
        got = _run(content, x, backend=backend)
    except RuntimeError as exc:
        text = str(exc)
        names = _sparse_names(content, floats=False)
        assert names, text  # only files with non-float sparse tensors fail here
        assert f"holds {len(names)} TFLite sparse tensor(s)" in text, text
        for name in names[:3]:
            assert repr(name) in text, (name, text)
        assert "Optimize.EXPERIMENTAL_SPARSITY" in text and "XNNPACK" in text, text
        assert "TfLiteXNNPackDelegate" in text, text  # the runtime's own error, kept
        resolver, spelled = _resolver(backend)
        assert f"experimental_op_resolver_type={spelled}.BUILTIN_WITHOUT_DEFAULT_DELEGATES" in text, text
        _same(_run(content, x, backend=backend,
                   experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES), want, quantize)
        if "backend='tensorflow'" in text:
            assert backend == "litert", text
            _same(_run(content, x, backend="tensorflow"), want, quantize)
        return text
    _same(got, want, quantize)
    return None


@pytest.mark.parametrize("kind", sorted(SHAPES))
@pytest.mark.parametrize("quantize", QUANTIZE)
def test_sparse_files_run_or_say_why_and_the_fixes_named_run_them(models, kind, quantize):
    raw = _convert(models[kind], kind, quantize)
    assert _sparse_names(raw), "the converter wrote no sparse tensor: the test would check nothing"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = export.pack(raw)
    x = _x(kind)
    want = _reference(raw, x)
    messages = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        for form, content in (("unpacked", raw), ("packed", packed)):
            for backend in runtime.available_backends():
                messages[form, backend] = _check_route(content, x, want, backend, quantize)
    if quantize in ("float", "float16"):  # XNNPACK takes float sparse weights: they must keep running
        assert not any(messages.values()), messages


def test_the_signature_runner_says_it_too(models):
    raw = _convert(models["mlp"], "mlp", "dynamic")
    x = _x("mlp")
    want = _reference(raw, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for backend in runtime.available_backends():
            run = runtime.Interpreter(model_content=raw, backend=backend).get_signature_runner()
            (name,) = run.get_input_details()
            try:
                got = next(iter(run(**{name: x}).values()))
            except RuntimeError as exc:
                assert "TFLite sparse tensor" in str(exc) and "BUILTIN_WITHOUT_DEFAULT_DELEGATES" in str(exc), str(exc)
                continue
            _same(got, want, "dynamic")


@pytest.mark.parametrize("quantize", QUANTIZE)
def test_the_conversion_without_sparsity_packs_and_runs_by_default(models, quantize):
    """The last fix the message names: the same model converted without EXPERIMENTAL_SPARSITY, packed,
    runs with default options on every backend (XNNPACK) and gives its unpacked file's outputs."""
    raw = _convert(models["mlp"], "mlp", quantize, sparse=False)
    assert not _sparse_names(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = export.pack(raw, min_bytes=0)
        assert len(packed) < len(raw)
        x = _x("mlp")
        want = _reference(raw, x)
        for backend in runtime.available_backends():
            _same(_run(packed, x, backend=backend), want, quantize)


def _run_compiled(content, x, **kwargs):
    cm = runtime.compiled_model(model_content=content, **kwargs)
    ins = cm.create_input_buffers(0)
    outs = cm.create_output_buffers(0)
    ins[0].write(x)
    cm.run_by_index(0, ins, outs)
    return outs[0].read(10, np.float32).reshape(len(x), 10)


@pytest.mark.parametrize("kind", sorted(SHAPES))
@pytest.mark.parametrize("quantize", QUANTIZE)
def test_compiled_model_runs_or_says_why_and_the_fix_named_runs_it(models, kind, quantize):
    """LiteRT's CompiledModel (runtime.compiled_model) failed on the int8 sparse files with LiteRT's
    message only ("Failed to allocate tensors" at create_output_buffers, or "Failed to invoke" at the
    first run): now that call raises Interpreter's message (the same helper), whose first fix, the CPU
    kernel mode BUILTIN, runs the file here and gives the reference outputs."""
    pytest.importorskip("ai_edge_litert.compiled_model", reason="a LiteRT with CompiledModel (ai-edge-litert >= 2)")
    from ai_edge_litert.cpu_options import CpuKernelMode, CpuOptions
    from ai_edge_litert.options import Options

    raw = _convert(models[kind], kind, quantize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = export.pack(raw)
    x = _x(kind)[:1]
    want = _reference(raw, x)
    failed = []
    for form, content in (("unpacked", raw), ("packed", packed)):
        try:
            got = _run_compiled(content, x)
        except RuntimeError as exc:
            text = str(exc)
            names = _sparse_names(export.unpack(content) if form == "packed" else content, floats=False)
            assert names, text
            assert text.startswith(f"model_content: it holds {len(names)} TFLite sparse tensor(s) ({names[0]!r}"), text
            assert "XNNPACK delegate LiteRT's CompiledModel applies by default" in text, text
            assert ("compiled_model(..., options=ai_edge_litert.options.Options(cpu_options=ai_edge_litert.cpu_options."
                    "CpuOptions(kernel_mode=ai_edge_litert.cpu_options.CpuKernelMode.BUILTIN)))") in text, text
            assert "without Optimize.EXPERIMENTAL_SPARSITY" in text and "CompiledModel's error: " in text, text
            assert "Failed to" in text, text  # LiteRT's own error, kept
            failed.append(form)
            got = _run_compiled(content, x, options=Options(cpu_options=CpuOptions(kernel_mode=CpuKernelMode.BUILTIN)))
        _same(got, want, quantize)
    if quantize in ("float", "float16"):  # XNNPACK takes float sparse weights: they must keep running
        assert not failed
