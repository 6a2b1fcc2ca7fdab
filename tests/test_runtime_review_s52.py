"""A fresh review of the runtime journey (session 52): a packed .tflite run through dc_keras.runtime,
LiteRT or tf.lite, with the library loaded as docs/runtime.md says. Each test is a mistake a user
makes or a claim of the docs, and fails on the code before its fix."""
import functools
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def _dense_packed():
    return export.pack(em.tflite("dense", None), min_bytes=64)


@functools.lru_cache(maxsize=None)
def _big_mlp():
    """(plain, packed) of a pruned, clustered 512-1024-10 MLP (float32, 2 MB of weights): big enough that a
    leaked copy of its weights per load shows in the process's RSS."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(1024, activation="relu"),
                              keras.layers.Dense(10)])
    for v in model.weights:
        if v.ndim == 2:
            w, top = v.numpy(), float(np.abs(v.numpy()).max())
            w = np.round(w / top * 16) / 16 * top  # shared weights: 33 values
            w[np.abs(w) < 0.75 * top] = 0  # ~75 % pruned
            v.assign(w)
    plain = export.to_tflite(model, pack=False)
    return plain, export.pack(plain)


def _child(code, env_extra, tmp_path):
    """``code`` in a fresh Python (the library is loaded once per process) with ``env_extra``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)


_TRY = """
import sys
from dc_keras import runtime
try:
    {call}
except OSError as e:
    print(type(e).__name__ + ": " + str(e))
    sys.exit(3)
print("no error")
"""


def _other_machine_library(tmp_path):
    """The installed library with its ELF header's machine changed to one this Python does not run
    on (as a library built for a phone or a board looks here)."""
    data = bytearray(open(runtime.library_path(), "rb").read())
    other, name = (183, "AArch64") if platform.machine().lower() != "aarch64" else (62, "x86-64")
    data[18:20] = other.to_bytes(2, "little")
    path = tmp_path / "libdc_huffdecode.so"
    path.write_bytes(bytes(data))
    return path, name


def test_a_library_built_for_another_machine_is_named_as_such_with_the_fix(tmp_path):
    """DC_KERAS_LIBRARY at a libdc_huffdecode.so built for another CPU (an aarch64 build copied from
    the Android/ARM lane): Interpreter(...) failed with dlopen's words, "cannot open shared object
    file: No such file or directory", of a file that is there, and LiteRT's Delegate.__del__ then
    printed an "Exception ignored" traceback. It now says which machine the library is for, which one
    this Python runs on, and the fix, before the backend sees the library."""
    lib, machine = _other_machine_library(tmp_path)
    (tmp_path / "m.tflite").write_bytes(_dense_packed())
    r = _child(_TRY.format(call="runtime.Interpreter(model_path='m.tflite', backend='litert')"),
               {"DC_KERAS_LIBRARY": str(lib)}, tmp_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"OSError: dc_keras native library {lib}: it is a library for {machine}" in r.stdout
    assert f"this Python runs on {platform.machine().lower()}" in r.stdout
    assert "point DC_KERAS_LIBRARY at a libdc_huffdecode.so built on this machine (`make lib`" in r.stdout
    assert "No such file" not in r.stdout and "Exception ignored" not in r.stderr


def test_a_file_that_is_no_library_or_another_library_is_named_with_the_fix(tmp_path):
    """DC_KERAS_LIBRARY at a text file: "file too short"; at another shared library (libm, or a
    libdc_huffdecode.so built from older sources without a function this dc_keras calls): an
    AttributeError "undefined symbol: dc_unpack" at the first call. Both are now an OSError naming
    the library, what is wrong with it and the fix; a directory names the fix too."""
    text = tmp_path / "notalib.so"
    text.write_text("not a library")
    r = _child(_TRY.format(call="runtime.library_path()"), {"DC_KERAS_LIBRARY": str(text)}, tmp_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"dc_keras native library {text}: it is not a shared library (no ELF header): point DC_KERAS_LIBRARY" \
        in r.stdout

    import ctypes.util

    libm = ctypes.util.find_library("m")
    assert libm, "libm is needed as a shared library that is not dc_keras's"
    call = "runtime.unpack(open('m.tflite', 'rb').read())"
    (tmp_path / "m.tflite").write_bytes(_dense_packed())
    r = _child(_TRY.format(call=call), {"DC_KERAS_LIBRARY": shutil.which("true") or "/bin/true"}, tmp_path)
    assert r.returncode == 3 and "cannot be loaded" in r.stdout and "`make lib`" in r.stdout, r.stdout + r.stderr

    found = next((os.path.join(d, libm) for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                                  "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64",
                                                  "/usr/lib64", "/lib", "/usr/lib")
                  if os.path.isfile(os.path.join(d, libm))), None)
    assert found, f"{libm} not found in the usual directories"
    r = _child(_TRY.format(call=call), {"DC_KERAS_LIBRARY": found}, tmp_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"dc_keras native library {found} lacks tflite_plugin_create_delegate, " in r.stdout
    assert "another library or one built from older sources; point DC_KERAS_LIBRARY" in r.stdout

    r = _child(_TRY.format(call="runtime.library_path()"), {"DC_KERAS_LIBRARY": str(tmp_path)}, tmp_path)
    assert r.returncode == 3 and "does not name a file (a directory): point it at a built libdc_huffdecode.so" \
        in r.stdout, r.stdout + r.stderr[-2000:]


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_invoke_before_allocate_tensors_says_to_allocate(backend):
    """invoke() before allocate_tensors(), or after resize_tensor_input without it: TFLite's "Invoke
    called on model that is not ready." (no fix, no model). It now names the model and the call
    to make; after it, the model runs as the unpacked one."""
    packed = _dense_packed()
    it = runtime.Interpreter(model_content=packed, backend=backend)
    with pytest.raises(RuntimeError, match=r"^model_content: invoke\(\) before the tensors are allocated: call "
                                           r"allocate_tensors\(\) first, and again after each resize_tensor_input"):
        it.invoke()
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    it.resize_tensor_input(index, [3, 20])
    with pytest.raises(RuntimeError, match=r"invoke\(\) before the tensors are allocated"):
        it.invoke()
    x = em.inputs("dense", 3)
    plain = em.tflite("dense", None)
    np.testing.assert_array_equal(em.run_batch(it, x), em.run_batch(em.reference_interpreter(backend, plain), x))


@pytest.mark.parametrize("backend,weights", [("litert", "decoded"), ("tensorflow", "compressed")])
def test_threads_sharing_one_interpreter_are_told_to_use_one_each(backend, weights):
    """Several threads calling invoke() on one Interpreter: TFLite refused the overlapping calls with
    "There is at least 1 reference to internal data in the interpreter in the form of a numpy array
    or slice. Be sure to only hold the function returned from tensor() ...", which sends the user
    after tensor() views they do not hold. The overlapping call now says that the interpreter is in
    use by another thread and what to do; the calls that ran gave the unpacked model's outputs, and
    the fix it names (one interpreter per thread) runs every thread."""
    packed, plain = _dense_packed(), em.tflite("dense", None)
    x = em.inputs("dense", 4096, seed=2)  # a big batch: each invoke takes milliseconds
    ref = em.run_batch(em.reference_interpreter(backend, plain), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter deprecation notice
        shared = runtime.Interpreter(model_content=packed, backend=backend, weights=weights)
    out = em.run_batch(shared, x)
    errors, wrong = [], []

    def hammer(it, deadline):
        while time.monotonic() < deadline and not errors:
            try:
                it.invoke()
            except RuntimeError as e:
                errors.append(str(e))
                return
            y = it.get_tensor(it.get_output_details()[0]["index"])
            if y.tobytes() != out.tobytes():
                wrong.append(1)

    deadline = time.monotonic() + 20
    threads = [threading.Thread(target=hammer, args=(shared, deadline)) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors, "no two invoke() calls overlapped in 20 s"
    assert all(e.startswith("model_content: invoke() while another thread uses this interpreter (its invoke(), a "
                            "signature runner's call, set_tensor(), resize_tensor_input() or allocate_tensors()): a "
                            "TFLite interpreter is not thread-safe") and "one "
               "dc_keras.runtime.Interpreter per thread" in e for e in errors), errors[0]
    assert not wrong
    if weights == "decoded":
        assert out.tobytes() == ref.tobytes()
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))

    results = {}

    def own(k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            it = runtime.Interpreter(model_content=packed, backend=backend, weights=weights)
        results[k] = [em.run_batch(it, x) for _ in range(3)]

    threads = [threading.Thread(target=own, args=(k,)) for k in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [0, 1, 2]
    assert all(y.tobytes() == out.tobytes() for ys in results.values() for y in ys)


@pytest.mark.parametrize("weights", ["decoded", "compressed"])
def test_loading_a_packed_model_200_times_does_not_grow_the_process(weights):
    """Memory over many loads (a server that reloads its model, a test suite): 200 Interpreters of a
    packed 2 MB MLP, each allocated and run, then dropped. Measured 2026-12-07 on LiteRT: RSS within
    +-4 MiB of its value after 10 warm-up loads on both routes (4.5 ms / 3.3 ms per load and run);
    a decoded copy leaked per load would add 400 MiB here, the compact form alone ~100 MiB."""
    import gc

    plain, packed = _big_mlp()
    x = np.random.RandomState(1).randn(1, 512).astype(np.float32)
    ref = em.run(em.reference_interpreter("litert", plain), x)

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def load_and_run():
        it = runtime.Interpreter(model_content=packed, backend="litert", weights=weights,
                                 max_density=1.0 if weights == "compressed" else None)  # on every CPU
        y = em.run(it, x)
        if weights == "decoded":
            assert y.tobytes() == ref.tobytes()
        return it.compressed_report()

    for _ in range(10):
        report = load_and_run()
    assert (weights == "compressed") == any(r["route"] == "compressed" for r in report)
    gc.collect()
    before = rss_mib()
    for _ in range(200):
        load_and_run()
    gc.collect()
    assert rss_mib() - before < 48, f"RSS grew by {rss_mib() - before:.1f} MiB over 200 loads"


def test_the_custom_op_registerer_route_matches_the_unpacked_model_on_builtin_kernels():
    """docs/runtime.md: TF's InterpreterWithCustomOps with prepare_tensorflow_registerer() (the
    plain op) decodes in the op's Prepare, after XNNPACK took the graph, so its floats differ from
    the unpacked model's under XNNPACK (the docs said nothing, beside the delegate's bit-identical
    outputs) and match it on TFLite's builtin kernels; the delegate route stays bit-identical."""
    import tensorflow as tf
    from tensorflow.lite.python.interpreter import InterpreterWithCustomOps, OpResolverType

    plain, packed = _big_mlp()
    x = np.random.RandomState(2).randn(4, 512).astype(np.float32)
    builtin = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter deprecation notice
        op = em.run(InterpreterWithCustomOps(model_content=packed, custom_op_registerers=[
            runtime.prepare_tensorflow_registerer()], **builtin), x)
        ref = em.run(tf.lite.Interpreter(model_content=plain, **builtin), x)
        assert op.tobytes() == ref.tobytes()
        xnnpack = em.run(tf.lite.Interpreter(model_content=plain), x)
        delegate = em.run(tf.lite.Interpreter(model_content=packed, experimental_delegates=[
            tf.lite.experimental.load_delegate(runtime.library_path())]), x)
    assert delegate.tobytes() == xnnpack.tobytes()
    with open(os.path.join(ROOT, "docs", "runtime.md")) as f:
        text = " ".join(f.read().split())
    assert ("match it with `experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES` on "
            "both; the delegate keeps XNNPACK and bit-identical outputs") in text


@functools.lru_cache(maxsize=None)
def _signatures_model():
    """(plain, packed) .tflite with three signatures: "mlp" (x [-1, 64] -> y), "embed" (ids [-1, 5] ->
    v, a 1000-row pruned, clustered table) and "both"."""
    import tensorflow as tf

    rs = np.random.RandomState(0)
    w1, w2, table = rs.randn(64, 256), rs.randn(256, 8), rs.randn(1000, 32)
    for w, cut in ((w1, 1.2), (w2, 1.0), (table, 1.0)):
        w[np.abs(w) < cut] = 0
        w[:] = np.round(w * 4) / 4
    w1, w2, table = (tf.constant(w.astype(np.float32)) for w in (w1, w2, table))

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)])
        def mlp(self, x):
            return {"y": tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2)}

        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.int32)])
        def embed(self, ids):
            return {"v": tf.reduce_sum(tf.gather(table, ids), axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None, 5], tf.int32)])
        def both(self, x, ids):
            return {"y": tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2), "v": tf.reduce_sum(tf.gather(table, ids), axis=1)}

    m = Model()
    plain = tf.lite.TFLiteConverter.from_concrete_functions(
        [m.mlp.get_concrete_function(), m.embed.get_concrete_function(), m.both.get_concrete_function()], m).convert()
    return plain, export.pack(plain)


@pytest.mark.parametrize("backend,weights", [("litert", "compressed"), ("tensorflow", "compressed"),
                                             ("litert", "decoded")])
def test_an_error_names_this_calls_cause_not_the_earlier_ones(backend, weights):
    """Calls that fail one after the other on one interpreter (ids out of range, in a loop over user
    data): the backend's error reporter never empties its buffer, so each error's text began with all
    the earlier ones': the compressed GATHER's second error began "index out of bounds: indices[0] =
    5000" for a call whose index was -1, and a failed resize after an invoke() before allocating began
    "Invoke called on model that is not ready.". Each error now says its own call's cause only; the
    interpreter then still runs as the unpacked model (lookups bit-exact on both routes)."""
    plain, packed = _signatures_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter deprecation notice
        it = runtime.Interpreter(model_content=packed, backend=backend, weights=weights)
        ref = em.reference_interpreter(backend, plain)
    embed = it.get_signature_runner("embed")
    messages = []
    for bad in (5000, -1, 1001):
        with pytest.raises(RuntimeError) as info:
            embed(ids=np.full((1, 5), bad, np.int32))
        messages.append(" ".join(str(info.value).split()))
    if weights == "compressed":
        for bad, msg in zip((5000, -1, 1001), messages):
            assert msg.count("dc_keras compressed GATHER(") == 1 and msg.count("index out of bounds") == 1, msg
            assert f"indices[0] = {bad}," in msg, msg
    else:
        assert all(msg.count("gather index out of bounds") == 1 for msg in messages), messages
    ids = np.random.RandomState(3).randint(0, 1000, (4, 5)).astype(np.int32)
    assert embed(ids=ids)["v"].tobytes() == ref.get_signature_runner("embed")(ids=ids)["v"].tobytes()

    it = runtime.Interpreter(model_content=packed, backend=backend, weights=weights)
    with pytest.raises(RuntimeError, match="invoke\\(\\) before the tensors are allocated"):
        it.invoke()
    (x,) = [d for d in it.get_input_details() if d["dtype"] == np.float32]
    it.resize_tensor_input(x["index"], [1, 100])
    with pytest.raises(RuntimeError, match="was resized to") as info:
        it.allocate_tensors()
    assert "not ready" not in str(info.value), info.value


def test_a_signature_runner_refuses_an_array_of_another_rank():
    """A signature runner given x of shape [64] (the batch dimension forgotten) or [128] for an input
    of [-1, 64]: LiteRT and TF resized the input to it and the FULLY_CONNECTED read it flattened, so
    [128] ran silently as 2 samples of 64. Refused now, naming the input, both shapes and the fix."""
    plain, packed = _signatures_model()
    run = runtime.Interpreter(model_content=packed).get_signature_runner("mlp")
    for shape in ([64], [128], [1, 1, 64]):
        with pytest.raises(ValueError, match=rf"^model_content: signature 'mlp' input 'x' was given an array of shape "
                                             rf"\[{', '.join(map(str, shape))}\] \(rank {len(shape)}\), but the model "
                                             r"takes \[-1, 64\] \(rank 2, -1: any size\): give it an array of that "
                                             r"rank"):
            run(x=np.ones(shape, np.float32))
    x = np.random.RandomState(4).randn(3, 64).astype(np.float32)
    want = em.reference_interpreter("litert", plain).get_signature_runner("mlp")(x=x)["y"]
    assert run(x=x)["y"].tobytes() == want.tobytes()
    assert run(x=x[0][None])["y"].tobytes() == want[:1].tobytes()


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_threads_sharing_one_signature_runner_are_refused_not_given_each_others_outputs(backend):
    """Two threads calling one interpreter's signature runner at once, each with its own batch: LiteRT
    and TF ran both, and about a quarter of the calls returned the other thread's outputs, silently
    (the plain interpreters do the same). The overlapping call is now refused, saying why and what
    to do; every call that ran returned its own batch's outputs."""
    plain, packed = _big_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter deprecation notice
        run = runtime.Interpreter(model_content=packed, backend=backend).get_signature_runner()
    (name,) = run.get_input_details()
    xs = [np.random.RandomState(k).randn(64, 512).astype(np.float32) for k in range(2)]
    want = [em.reference_interpreter(backend, plain).get_signature_runner()(**{name: x})["output_0"] for x in xs]
    errors, wrong, ran = [], [], [0, 0]

    def calls(k, deadline):
        while time.monotonic() < deadline and not (len(errors) >= 20 and min(ran) >= 3):
            try:
                y = run(**{name: xs[k]})["output_0"]
            except RuntimeError as e:
                errors.append(str(e))
                continue
            ran[k] += 1
            if y.tobytes() != want[k].tobytes():
                wrong.append(k)
            time.sleep(0.0005)  # lets the other thread in (no starving it)

    deadline = time.monotonic() + 20
    threads = [threading.Thread(target=calls, args=(k, deadline)) for k in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not wrong, f"{len(wrong)} of {sum(ran)} calls returned another thread's outputs"
    assert errors, "no two calls overlapped in 20 s"
    assert all(e.startswith("model_content: a signature runner's call while another thread uses this interpreter") and
               "create one dc_keras.runtime.Interpreter per thread" in e for e in errors), errors[0]
    assert min(ran) >= 3, ran  # both threads' calls ran, each giving its own outputs


def test_a_compiled_model_is_freed_when_dropped():
    """dc_keras.runtime.compiled_model stored closures over the CompiledModel's bound methods on it
    (its failure messages for sparse weights), a reference cycle: each CompiledModel, with the unpacked
    model it holds, lived until Python's cyclic GC ran, and 200 loads of a 3 MB model in a loop grew
    the process by 127 MiB (LiteRT's own from_buffer: 0). It is now freed when dropped, and still runs
    as the unpacked model."""
    import gc
    import weakref

    plain, packed = _big_mlp()
    x = np.random.RandomState(5).randn(1, 512).astype(np.float32)
    want = em.run(em.reference_interpreter("litert", plain), x)
    enabled = gc.isenabled()
    gc.disable()
    try:
        cm = runtime.compiled_model(model_content=packed)
        ins, outs = cm.create_input_buffers(0), cm.create_output_buffers(0)
        ins[0].write(x)
        cm.run_by_index(0, ins, outs)
        assert outs[0].read(10, np.float32).tobytes() == want.tobytes()
        ref = weakref.ref(cm)
        del cm, ins, outs
        assert ref() is None, "the CompiledModel outlived its last reference (a reference cycle)"
    finally:
        if enabled:
            gc.enable()


def test_a_model_path_with_a_tilde_says_python_does_not_expand_it(tmp_path, monkeypatch):
    """Interpreter(model_path="~/models/m.tflite"), copied from a shell line: "no such file: check the
    path", of a file the user sees there. It now says that Python does not expand '~' and what to
    pass; that runs."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m.tflite").write_bytes(_dense_packed())
    with pytest.raises(FileNotFoundError, match=r"^~/m\.tflite: no such file: Python does not expand '~' \(a shell "
                                                r"does\), so pass os\.path\.expanduser\('~/m\.tflite'\)$"):
        runtime.Interpreter(model_path="~/m.tflite")
    with pytest.raises(FileNotFoundError, match="check the path"):  # a file that is not there either way
        runtime.Interpreter(model_path="~/other.tflite")
    it = runtime.Interpreter(model_path=os.path.expanduser("~/m.tflite"))
    x = em.inputs("dense", 2)
    assert em.run(it, x).tobytes() == em.run(em.reference_interpreter("litert", em.tflite("dense", None)), x).tobytes()
