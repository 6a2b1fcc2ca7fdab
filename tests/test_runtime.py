"""dc_keras.runtime: the Interpreter wrapper, its backends and the TF registerer route."""
import functools
import json
import os
import sys

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime


def test_library_path_and_backends():
    path = runtime.library_path()
    assert os.path.isabs(path) and os.path.isfile(path)
    assert runtime.available_backends() == ["litert", "tensorflow"]


def test_auto_backend_looks_up_only_what_it_needs(monkeypatch):
    """backend="auto" picks LiteRT without even looking TensorFlow up (each lookup scans sys.path:
    part of every Interpreter's load time), and falls back to TF, or a clear error, without it."""
    looked = []

    def installed(have):
        return lambda module: looked.append(module) or module in have

    monkeypatch.setattr(runtime, "_installed", installed({"ai_edge_litert", "tensorflow"}))
    assert runtime._check_args("auto", "delegate", "decoded") == "litert" and looked == ["ai_edge_litert"]
    monkeypatch.setattr(runtime, "_installed", installed({"tensorflow"}))
    assert runtime._check_args("auto", "delegate", "decoded") == "tensorflow"
    monkeypatch.setattr(runtime, "_installed", installed(set()))
    with pytest.raises(ImportError, match="pip install ai-edge-litert"):
        runtime._check_args("auto", "delegate", "decoded")


def test_a_backend_that_is_not_installed_is_named_with_the_fix(monkeypatch):
    """backend='litert' (or 'tensorflow', or compiled_model) without the package raised Python's bare
    ModuleNotFoundError ("import of ai_edge_litert halted", "'ai_edge_litert' is not a package")."""
    import sys

    packed = export.pack(em.tflite("dense", None))
    for name in [n for n in sys.modules if n.split(".")[0] == "ai_edge_litert"] + ["ai_edge_litert"]:
        # as if not installed: submodules too (an import of ai_edge_litert.compiled_model that an
        # earlier test in this process made would be found in sys.modules without its package)
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"^backend='litert' needs ai_edge_litert, which this Python cannot import "
                                          r"\(.*\): pip install ai-edge-litert, or use backend='tensorflow'$"):
        runtime.Interpreter(model_content=packed, backend="litert")
    with pytest.raises(ImportError, match=r"^compiled_model needs ai_edge_litert.*pip install -U ai-edge-litert"):
        runtime.compiled_model(model_content=packed)
    assert runtime.Interpreter(model_content=packed).backend == "tensorflow"  # auto: the one installed
    monkeypatch.setitem(sys.modules, "tensorflow.lite.python", None)
    with pytest.raises(ImportError, match=r"^backend='tensorflow' needs tensorflow.lite.python, .*pip install tensorflow"):
        runtime.Interpreter(model_content=packed, backend="tensorflow")


def test_argument_errors():
    plain = em.tflite("dense", None)
    from ai_edge_litert.interpreter import load_delegate

    with pytest.raises(TypeError, match=r"experimental_delegates must be a list of delegates, got one Delegate: "
                                        r"pass \[delegate\]"):  # was "'Delegate' object is not iterable"
        runtime.Interpreter(model_content=plain, experimental_delegates=load_delegate(runtime.library_path()))
    with pytest.raises(ValueError, match="backend"):
        runtime.Interpreter(model_content=plain, backend="tflite-micro")
    with pytest.raises(ValueError, match="decode"):
        runtime.Interpreter(model_content=plain, decode="lazy")
    with pytest.raises(ValueError, match="backend='tensorflow'"):
        runtime.Interpreter(model_content=plain, backend="litert", decode="op")
    # the model's bytes given as the first argument (model_path): a FileNotFoundError whose message was
    # the whole model's repr (3x the file's size), without the fix
    for content in (plain, bytearray(plain), memoryview(plain)):
        with pytest.raises(TypeError, match=rf"^model_path got {len(plain)} bytes of model content, not a path: "
                                            r"pass them as model_content="):
            runtime.Interpreter(content)


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_model_path_plain_model_and_forwarding(tmp_path, backend):
    plain = em.tflite("dense", None)
    path = tmp_path / "m.packed.tflite"
    path.write_bytes(export.pack(plain))
    it = runtime.Interpreter(model_path=str(path), backend=backend, num_threads=1)
    assert it.backend == backend and backend in repr(it)
    xs = em.inputs("dense", 3)
    got = em.run(it, xs)  # allocate_tensors, get_input_details, set_tensor, invoke, get_tensor forwarded
    assert got.shape == (3, 10)
    assert it.get_signature_list()  # any backend attribute is reachable
    # an ordinary (unpacked) model runs unchanged through the same class
    ref = em.run(runtime.Interpreter(model_content=plain, backend=backend, num_threads=1), xs)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_model_path_that_is_not_utf8_loads(tmp_path, backend):
    """A file name that is not UTF-8 (a str holding a surrogate, as os.listdir and argv give it)
    failed in both backends with pybind's "incompatible function arguments": it is passed as bytes."""
    name = os.fsdecode(b"caf\xe9.tflite")  # Latin-1 'cafe' on a UTF-8 file system
    packed = export.pack(em.tflite("dense", None))
    try:
        (tmp_path / name).write_bytes(packed)
    except (OSError, UnicodeError) as e:  # e.g. a file system that takes only UTF-8 names
        pytest.skip(f"this file system refuses the non-UTF-8 name {name!r}: {e}")
    xs = em.inputs("dense", 2)
    want = em.run(runtime.Interpreter(model_content=packed, backend=backend), xs)
    for path in (str(tmp_path / name), tmp_path / name, os.fsencode(tmp_path / name)):
        np.testing.assert_array_equal(em.run(runtime.Interpreter(model_path=path, backend=backend), xs), want)


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_model_content_takes_what_pack_takes(tmp_path, backend):
    """bytearray / memoryview / mmap content (pack accepts them) runs as bytes do (LiteRT and TF
    raised a pybind 'incompatible function arguments'); a path or an array says what to give."""
    import mmap

    packed = export.pack(em.tflite("dense", None))
    xs = em.inputs("dense", 2)
    ref = em.run(runtime.Interpreter(model_content=packed, backend=backend), xs)
    (tmp_path / "p.tflite").write_bytes(packed)
    with open(tmp_path / "p.tflite", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for content in (bytearray(packed), memoryview(packed), m):
            np.testing.assert_array_equal(em.run(runtime.Interpreter(model_content=content, backend=backend), xs), ref)
    with pytest.raises(TypeError, match="model_content must be the .tflite's bytes, got str: give a file's path "
                                        "as model_path"):
        runtime.Interpreter(model_content=str(tmp_path / "p.tflite"), backend=backend)
    with pytest.raises(TypeError, match="got ndarray"):
        runtime.Interpreter(model_content=np.frombuffer(packed, np.uint8), backend=backend)


def test_user_delegates_and_auto_backend():
    from ai_edge_litert.interpreter import load_delegate

    packed = export.pack(em.tflite("dense", None))
    extra = load_delegate(runtime.library_path())  # a second copy of ours: must be harmless
    it = runtime.Interpreter(model_content=packed, experimental_delegates=[extra])
    assert it.backend == "litert"
    assert em.run(it, em.inputs("dense", 2)).shape == (2, 10)


def test_tensorflow_interpreter_with_custom_ops_loads_packed_model():
    """A user's own TF InterpreterWithCustomOps, given only the registerer name."""
    from tensorflow.lite.python.interpreter import InterpreterWithCustomOps, OpResolverType

    plain = em.tflite("conv", "float16")
    packed = export.pack(plain)
    it = InterpreterWithCustomOps(model_content=packed,
                                  custom_op_registerers=[runtime.prepare_tensorflow_registerer()],
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    xs = em.inputs("conv", 10, seed=7)
    ref = em.run(em.reference_interpreter("tensorflow", plain,
                                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES), xs)
    np.testing.assert_array_equal(em.run(it, xs), ref)


def test_litert_plain_interpreter_with_our_delegate():
    """The documented route for LiteRT users who do not use dc_keras.runtime."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    plain = em.tflite("dense", "int8")
    packed = export.pack(plain)
    xs = em.inputs("dense", 10, seed=2)
    it = Interpreter(model_content=packed, experimental_delegates=[load_delegate(runtime.library_path())])
    np.testing.assert_array_equal(em.run(it, xs), em.run(Interpreter(model_content=plain), xs))


def test_reallocate_after_resize_keeps_decoded_weights():
    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    for backend, decode in [("litert", "delegate"), ("tensorflow", "op")]:
        it = runtime.Interpreter(model_content=packed, backend=backend, decode=decode)
        ref = em.reference_interpreter(backend, plain)
        xs = em.inputs("dense", 4, seed=9)
        for interp in (it, ref):
            interp.resize_tensor_input(interp.get_input_details()[0]["index"], [4, 20])
            interp.allocate_tensors()
            interp.set_tensor(interp.get_input_details()[0]["index"], xs)
            interp.invoke()
        a = it.get_tensor(it.get_output_details()[0]["index"])
        b = ref.get_tensor(ref.get_output_details()[0]["index"])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_signature_runner_on_packed_model():
    from ai_edge_litert.interpreter import Interpreter

    plain = em.tflite("dense", None)
    it = runtime.Interpreter(model_content=export.pack(plain))
    ref = Interpreter(model_content=plain)
    x = em.inputs("dense", 1)
    name = list(it.get_signature_list().values())[0]["inputs"][0]
    run = it.get_signature_runner()
    assert {"get_input_details", "get_output_details"} <= set(dir(run))  # the backend runner's
    got, want = run(**{name: x}), ref.get_signature_runner()(**{name: x})
    assert got.keys() == want.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], want[k])



@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_signature_runner_is_the_backends_signature_runner(backend):
    """``isinstance(run, SignatureRunner)`` was False: get_signature_runner returned a wrapper object
    that forwarded attributes to the backend's runner. It is now an instance of the backend's class
    (LiteRT's, or TF's), one subclass per backend, with the backend's methods; an unknown key is the
    backend's error; a failed call is still this Interpreter's error (tested in the next tests)."""
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter, SignatureRunner
    else:
        from tensorflow.lite.python.interpreter import Interpreter, SignatureRunner

    plain = _two_signature_model()
    it = runtime.Interpreter(model_content=export.pack(plain), backend=backend)
    a, b = it.get_signature_runner("a"), it.get_signature_runner("b")
    assert isinstance(a, SignatureRunner) and type(a) is type(b) and type(a).__name__ == "SignatureRunner"
    want = Interpreter(model_content=plain).get_signature_runner("b")
    assert b.get_input_details().keys() == want.get_input_details().keys() == {"x"}
    assert b.get_output_details().keys() == want.get_output_details().keys() == {"y"}
    x = np.linspace(-1, 1, 8, dtype=np.float32)[None]
    np.testing.assert_array_equal(b(x=x)["y"], want(x=x)["y"])
    with pytest.raises(ValueError, match="SignatureDef signature_key is None and model has 2 Signatures"):
        it.get_signature_runner()  # two signatures: the backend's own error
    with pytest.raises(ValueError) as ours:
        it.get_signature_runner("nope")
    with pytest.raises(ValueError) as theirs:  # its wording varies (TF 2.19: "Invalid signature_key provided.")
        Interpreter(model_content=plain).get_signature_runner("nope")
    assert str(ours.value) == str(theirs.value)
    one = runtime.Interpreter(model_content=export.pack(em.tflite("dense", None)), backend=backend)
    assert isinstance(one.get_signature_runner(), SignatureRunner)  # the only signature, key not given


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_interpreter_is_the_backends_interpreter(backend, monkeypatch):
    """``isinstance(it, ai_edge_litert.interpreter.Interpreter)`` (``tf.lite.Interpreter`` with
    backend="tensorflow") was False: Interpreter wrapped the backend's object and forwarded attributes
    to it, so code typed for the backend's class refused it, and the backend's own SignatureRunner
    could not take it. It is now an instance of the backend's class (one subclass per backend class,
    shared by its interpreters), with the backend's methods and ours; it runs bit-exact to the plain
    model; an unknown attribute is an AttributeError naming it; pickling or copying it is a TypeError
    saying what to do (it was "Can't pickle local object 'CDLL.__init__.<locals>._FuncPtr'").
    get_signature_runner builds one runner (it built the backend's too, for its key errors)."""
    import copy
    import pickle

    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter as Base
        from ai_edge_litert.interpreter import SignatureRunner
    else:
        from tensorflow.lite.python.interpreter import Interpreter as Base
        from tensorflow.lite.python.interpreter import SignatureRunner

    plain = _two_signature_model()
    it = runtime.Interpreter(model_content=export.pack(plain), backend=backend)
    other = runtime.Interpreter(model_content=plain, backend=backend)
    assert isinstance(it, Base) and isinstance(it, runtime.Interpreter) and type(it) is type(other)
    assert type(it).__name__ == "Interpreter" and it.interpreter is it
    assert repr(it) == f"<dc_keras.runtime.Interpreter backend={backend!r} decode='delegate' weights='decoded'>"
    x = np.linspace(-1, 1, 8, dtype=np.float32)[None]
    want = Base(model_content=plain).get_signature_runner("b")(x=x)["y"]
    np.testing.assert_array_equal(SignatureRunner(interpreter=it, signature_key="b")(x=x)["y"], want)
    built = []
    init = SignatureRunner.__init__
    monkeypatch.setattr(SignatureRunner, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    np.testing.assert_array_equal(it.get_signature_runner("b")(x=x)["y"], want)
    assert len(built) == 1, built
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = it.nope
    for how in (pickle.dumps, copy.copy):
        with pytest.raises(TypeError, match="cannot be pickled or copied: .*create an Interpreter where it runs"):
            how(it)


def _arena_model():
    """An embedding table (1 MiB, GATHER: not XNNPACK's, so its decoded copy is never released)
    and a fully-connected weight (2 MiB, packed by XNNPACK), pruned and on a grid so they pack:
    3 MiB of decoded weights, which the delegate decodes into one huge-page arena."""
    import keras

    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(4096, 64),
                          keras.layers.Flatten(), keras.layers.Dense(1024)])
    for layer in (m.layers[0], m.layers[2]):
        w = layer.get_weights()
        k = w[0]
        k[np.abs(k) < np.quantile(np.abs(k), 0.9)] = 0
        w[0] = np.round(k * 64) / 64
        layer.set_weights(w)
    return export.to_tflite(m, pack=False)


def test_decoded_weights_in_one_arena_are_bit_exact_kept_and_released():
    """decode_nodes puts all decoded weights (>= 2 MiB in all) in one mapping: outputs equal the
    unpacked model's bit for bit with keep_decoded 1 and 0; with 0 the FC weight's pages are
    returned while the embedding table next to it in the arena stays readable (later invokes,
    a resize, the table read back with get_tensor)."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    plain = _arena_model()
    packed = export.pack(plain)
    assert len(packed) < len(plain) // 4
    ids = np.random.RandomState(0).randint(0, 4096, size=(3, 8)).astype(np.int32)
    ref = Interpreter(model_content=plain)

    run = em.run_batch

    want1, want3 = run(ref, ids[:1]), run(ref, ids)
    table = [d for d in ref.get_tensor_details() if tuple(d["shape"]) == (4096, 64)][0]
    for keep in ("1", "0"):
        it = Interpreter(model_content=packed,
                         experimental_delegates=[load_delegate(runtime.library_path(), {"keep_decoded": keep})])
        for _ in range(2):
            assert run(it, ids[:1]).tobytes() == want1.tobytes()
            assert run(it, ids).tobytes() == want3.tobytes()
        got = [d for d in it.get_tensor_details() if tuple(d["shape"]) == (4096, 64)][0]
        assert it.get_tensor(got["index"]).tobytes() == ref.get_tensor(table["index"]).tobytes()


@functools.lru_cache(maxsize=None)  # seeded, bytes: built once per process (several tests read it)
def _layers_model(widths=(256,) * 5):
    """FULLY_CONNECTED layers of these widths on a 256-wide input (pruned and on a grid so they
    pack); by default five 256x256 (256 KiB of float weights each): 1.25 MiB of decoded weights,
    no tensor above half of it -- what decode_lazily decodes on helper threads while the XNNPACK
    delegate packs the first layers."""
    import keras

    keras.utils.set_random_seed(7)
    m = keras.Sequential([keras.Input((256,))] + [keras.layers.Dense(w, activation="relu")
                                                   for w in widths])
    for layer in m.layers:
        k, b = layer.get_weights()
        k[np.abs(k) < np.quantile(np.abs(k), 0.8)] = 0
        layer.set_weights([np.round(k * 64) / 64, b])
    return export.to_tflite(m, pack=False)


def _lazy_available():
    """Whether this kernel lets the library use userfaultfd (dc_arena_new_lazy)."""
    import ctypes

    lib = ctypes.CDLL(runtime.library_path())
    lib.dc_arena_new_lazy.restype = ctypes.c_void_p
    lib.dc_arena_new_lazy.argtypes = [ctypes.c_size_t]
    lib.dc_arena_free.argtypes = [ctypes.c_void_p]
    a = lib.dc_arena_new_lazy(1 << 20)
    lib.dc_arena_free(a)
    return bool(a)


@pytest.mark.parametrize("widths", [(256,) * 5, (1024, 640, 1024, 256)], ids=["small", "large"])
def test_decoded_weights_decoded_while_xnnpack_packs_are_bit_exact(monkeypatch, widths):
    """decode_async (default): with two or more CPUs the delegate's Prepare hands the weights'
    addresses out at once and helpers decode them while the XNNPACK delegate packs (a page
    not decoded yet waits for it). Outputs and weights read back equal the unpacked model's bit
    for bit, kept or released, with decode_async 1 and 0, on LiteRT and TF; the helpers were used
    where userfaultfd is allowed (DcKerasHuffDecodeDelegateAsync) and not otherwise nor with
    DC_KERAS_DECODE_ASYNC=0; a corrupt packed tensor, decoded by a helper or in place, makes
    allocate_tensors fail with the decoder's reason. "large": two 2.5 MiB kernels, which the
    helpers decode into fresh huge pages and move into place (UFFDIO_MOVE, where the kernel has
    it) instead of copying."""
    import ctypes

    from ai_edge_litert.interpreter import Interpreter, load_delegate
    from dc_keras._compat import delegate_pointer

    plain = _layers_model(widths)
    packed = export.pack(plain)
    x = np.random.RandomState(1).rand(4, 256).astype(np.float32)
    ref = Interpreter(model_content=plain)
    want = em.run_batch(ref, x)
    kernels = sorted(d["name"] for d in ref.get_tensor_details() if len(d["shape"]) == 2
                     and d["shape"][0] in widths and d["shape"][1] in (256,) + tuple(widths))
    assert len(kernels) == len(widths)
    by_name = {d["name"]: d["index"] for d in ref.get_tensor_details()}
    weights = {n: ref.get_tensor(by_name[n]).tobytes() for n in kernels}
    fn = ctypes.CDLL(runtime.library_path()).DcKerasHuffDecodeDelegateAsync
    fn.restype, fn.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    lazy = _lazy_available() and (os.cpu_count() or 1) >= 2
    for async_, keep in (("1", "1"), ("1", "0"), ("0", "1")):
        dlg = load_delegate(runtime.library_path(), {"decode_async": async_, "keep_decoded": keep,
                                                     "decode_threads": "2"})
        it = Interpreter(model_content=packed, experimental_delegates=[dlg])
        assert em.run_batch(it, x).tobytes() == want.tobytes()
        assert (fn(delegate_pointer(dlg)) > 0) == (lazy and async_ == "1"), (async_, lazy)
        if keep == "1":
            idx = {d["name"]: d["index"] for d in it.get_tensor_details()}
            assert {n: it.get_tensor(idx[n]).tobytes() for n in kernels} == weights
    tf_it = runtime.Interpreter(model_content=packed, backend="tensorflow")  # the TF runtime too
    assert em.run_batch(tf_it, x).tobytes() == want.tobytes()
    assert (fn(delegate_pointer(tf_it._delegate)) > 0) == lazy
    monkeypatch.setenv("DC_KERAS_DECODE_ASYNC", "0")  # the environment's switch
    off = runtime.Interpreter(model_content=packed)
    assert em.run_batch(off, x).tobytes() == want.tobytes()
    assert fn(delegate_pointer(off._delegate)) == 0
    monkeypatch.delenv("DC_KERAS_DECODE_ASYNC")
    pos = [i for i in range(len(packed)) if packed.startswith(b"DCHF", i)]
    assert len(pos) >= len(widths)
    for p in pos:  # every packed tensor in turn: those the helper decodes and those decoded in place
        bad = bytearray(packed)
        bad[p + int.from_bytes(packed[p - 4:p], "little") - 8] ^= 0x40  # in its bit streams
        dlg = load_delegate(runtime.library_path(), {"decode_threads": "2"})
        it = Interpreter(model_content=bytes(bad), experimental_delegates=[dlg])
        with pytest.raises(RuntimeError, match=r"HuffDecode\(.*\): decoding failed: checksum mismatch"):
            it.allocate_tensors()
        assert (fn(delegate_pointer(dlg)) > 0) == lazy


def test_interpreter_dropped_while_the_helper_decodes(tmp_path):
    """An interpreter dropped before allocate_tensors frees the model's buffers while
    decode_lazily's helper may still be decoding from them: the runtime frees the delegate's
    kernels first, and their free waits for the helper (without that wait this crashed)."""
    import subprocess
    import sys

    path = tmp_path / "layers.packed.tflite"
    path.write_bytes(export.pack(_layers_model()))
    code = ("import sys, gc\n"
            "from dc_keras import runtime\n"
            "p = sys.argv[1]; data = open(p, 'rb').read()\n"
            "for _ in range(40):\n"
            "    it = runtime.Interpreter(model_path=p); del it\n"
            "    it = runtime.Interpreter(model_content=bytes(data)); del it; gc.collect()\n"
            "print('dropped 80')\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)
    assert r.returncode == 0 and "dropped 80" in r.stdout, (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_bad_model_path_names_the_file_and_the_fix(tmp_path, backend):
    from dc_keras import _flatbuffer as fb

    missing = tmp_path / "missing.tflite"
    with pytest.raises(FileNotFoundError, match=r"missing\.tflite: no such file: check the path"):
        runtime.Interpreter(model_path=str(missing), backend=backend)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        runtime.Interpreter(model_path=tmp_path, backend=backend)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"this is not a model at all")
    with pytest.raises(ValueError, match=r"bad\.tflite: not a \.tflite model.*give a TensorFlow Lite"):
        runtime.Interpreter(model_path=str(bad), backend=backend)
    with pytest.raises(ValueError, match=r"model_content: not a \.tflite model"):
        runtime.Interpreter(model_content=b"this is not a model at all", backend=backend)
    good = export.pack(em.tflite("dense", None))
    end = _last_referenced_byte(good)  # the packed data end the file, then alignment padding
    assert len(good) - 16 < end <= len(good), (end, len(good))
    tail = list(range(len(good) - 64, end))  # the last bytes too: TF's loader alone accepts those
    for n in list(range(16, end, max(1, len(good) // 23))) + tail:  # each named, with the fix
        bad.write_bytes(good[:n])
        try:
            runtime.Interpreter(model_path=str(bad), backend=backend)
        except ValueError as e:
            assert str(e).startswith(f"{bad}: ") and fb.CORRUPT_FIX in str(e), (n, e)
        else:
            pytest.fail(f"a file cut to {n} of {len(good)} bytes (data end at {end}) loaded")
    x = em.inputs("dense", 2)
    want = em.run(runtime.Interpreter(model_content=good, backend=backend), x)
    for n in range(end, len(good)):  # only padding cut: the model is whole and runs as before
        bad.write_bytes(good[:n])
        np.testing.assert_array_equal(em.run(runtime.Interpreter(model_path=str(bad), backend=backend), x), want)


def _last_referenced_byte(model):
    """End of the last buffer's data in ``model`` (bytes after it are alignment padding)."""
    from dc_keras._flatbuffer import buffer_data_end, schema

    m = schema.Model.GetRootAsModel(model, 0)
    return max(buffer_data_end(m.Buffers(i)) for i in range(m.BuffersLength()))


def test_runtime_load_errors_get_the_file_name_and_the_fix():
    from dc_keras import _flatbuffer as fb

    with pytest.raises(ValueError, match=r"^m\.tflite: LiteRT cannot load it \(The model is not a "
                                         r"valid Flatbuffer buffer\); the file is truncated") as e:
        with runtime._load_errors("m.tflite"):
            raise ValueError("The model is not a valid Flatbuffer buffer")
    assert str(e.value).endswith(fb.CORRUPT_FIX)
    with pytest.raises(ValueError, match="^other$"):  # other errors pass through unchanged
        with runtime._load_errors("m.tflite"):
            raise ValueError("other")


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_damaged_tables_fail_naming_the_model_and_the_fix(backend):
    """Damage in the flatbuffer's tables that our parser's bounds check cannot see came out as
    TFLite's bare messages ("Invalid tensor index 15 in node inputs ... inconsistent model" at
    allocate_tensors, "BytesRequired number of elements overflowed ... invalidly specified in
    schema" at load): now each names the model and says the file is damaged, with the fix."""
    from dc_keras import _flatbuffer as fb

    packed = export.pack(em.tflite("dense", None))
    m = fb.read_model(packed)
    sg = m.subgraphs[0]
    fc = next(op for op in sg.operators if fb.opcode_name(m, op) == "FULLY_CONNECTED")
    fc.inputs = np.array([len(sg.tensors) + 5, *fc.inputs[1:]], np.int32)  # a tensor it does not have
    it = runtime.Interpreter(model_content=fb.write_model(m), backend=backend)
    with pytest.raises(RuntimeError, match=r"^model_content: LiteRT cannot run it \(Invalid tensor index 15 .*\); "
                                           r"the file is truncated or corrupt") as e:
        it.allocate_tensors()
    assert str(e.value).endswith(fb.CORRUPT_FIX)
    m = fb.read_model(packed)
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].shape = np.array([1, 2**31 - 1, 2**31 - 1, 2**31 - 1], np.int32)
    sg.tensors[sg.inputs[0]].shapeSignature = None
    with pytest.raises(ValueError, match=r"^model_content: LiteRT cannot load it \(.*invalidly specified in schema.*\); "
                                         r"the file is truncated or corrupt"):
        runtime.Interpreter(model_content=fb.write_model(m), backend=backend)


@pytest.mark.parametrize("weights", ["decoded", "compressed"])
def test_a_delegate_shared_by_interpreters_fails_only_the_bad_model(weights):
    """One load_delegate(...) object given to several interpreters (an app loading models as they
    come): a corrupt model made every later interpreter of that delegate fail with the corrupt
    model's error (the delegate kept one sticky error); now each interpreter fails or runs on
    its own model, before and after the bad one is dropped."""
    import gc

    from ai_edge_litert.interpreter import Interpreter, load_delegate

    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    bad = bytearray(packed)
    at = bad.find(b"DCHF")
    bad[at + 60] ^= 0xFF  # inside the first packed tensor's data
    dlg = load_delegate(runtime.library_path(), {"weights": weights, "max_density": "100"})
    xs = em.inputs("dense", 3, seed=1)
    want = em.run(Interpreter(model_content=plain), xs)

    def check(it):
        got = em.run(it, xs)
        if weights == "decoded":
            assert got.tobytes() == want.tobytes()
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))

    first = Interpreter(model_content=packed, experimental_delegates=[dlg])
    broken = Interpreter(model_content=bytes(bad), experimental_delegates=[dlg])
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        broken.allocate_tensors()
    check(first)
    check(Interpreter(model_content=packed, experimental_delegates=[dlg]))  # after the bad one
    del broken
    gc.collect()
    for _ in range(3):  # its graph's memory may now hold a new one
        check(Interpreter(model_content=packed, experimental_delegates=[dlg]))
    with pytest.raises(RuntimeError, match="checksum mismatch"):  # and a bad one still fails
        Interpreter(model_content=bytes(bad), experimental_delegates=[dlg]).allocate_tensors()


def test_delegate_destroyed_before_its_interpreter(tmp_path):
    """Python's garbage collector may destroy a load_delegate object before the interpreter that
    holds it (both in one reference cycle; LiteRT's Delegate.__del__ calls
    tflite_plugin_destroy_delegate): the delegate's memory (decoded weights, compressed layers) was
    freed under a live interpreter, and its kernels read the freed delegate when the interpreter
    went (a double free once they freed its graph's weights). It now lives until its last kernel
    is freed: the interpreter runs on, then goes, without a crash."""
    import subprocess

    path = tmp_path / "m.packed.tflite"
    path.write_bytes(export.pack(em.tflite("dense", None)))
    code = f"""if True:
        import gc
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter, load_delegate
        from dc_keras import runtime
        x = np.random.RandomState(0).randn(3, 20).astype(np.float32)
        plain = Interpreter(model_content=runtime.unpack(open({str(path)!r}, "rb").read()))
        for opts in ({{}}, {{"weights": "compressed", "max_density": "100"}}, {{"keep_decoded": "0"}}):
            for _ in range(3):
                dlg = load_delegate(runtime.library_path(), opts)
                it = Interpreter(model_path={str(path)!r}, experimental_delegates=[dlg])
                for interp in (it, plain):
                    interp.resize_tensor_input(0, [3, 20]); interp.allocate_tensors()
                    interp.set_tensor(interp.get_input_details()[0]["index"], x)
                want = (plain.invoke(), plain.get_tensor(plain.get_output_details()[0]["index"]))[1]
                dlg.__del__()  # the collector's order: the delegate first
                for _ in range(2):
                    it.invoke()
                    got = it.get_tensor(it.get_output_details()[0]["index"])
                    assert np.allclose(got, want, rtol=1e-5, atol=1e-5), opts
                del it, dlg
                gc.collect()
        print("survived")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0 and "survived" in r.stdout, (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
@pytest.mark.parametrize("weights", ["decoded", "compressed"])
def test_resizing_a_fixed_input_dimension_says_which_and_what_the_model_takes(backend, weights):
    """resize_tensor_input(i, [1, 7]) on a [-1, 20] input failed in allocate_tensors with the
    kernels' words only ("XNNPack delegate failed to reshape runtime", "compressed FC(...): input
    size is not a multiple of 20"): now the input, its shape and the model's are named. The decoded
    route runs the backend's own kernels, so it refuses exactly when the backend's interpreter
    refuses the plain model (TF 2.19's, at setup.cfg's floor, takes it: then so does ours); the
    compressed route's own kernel always refuses."""
    it = runtime.Interpreter(model_content=export.pack(em.tflite("dense", None)), backend=backend,
                             weights=weights, **({"max_density": 1.0} if weights == "compressed" else {}))
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], [1, 7])
    plain = em.reference_interpreter(backend, em.tflite("dense", None))
    plain.resize_tensor_input(plain.get_input_details()[0]["index"], [1, 7])
    try:
        plain.allocate_tensors()
        backend_refuses = False
    except (RuntimeError, ValueError):
        backend_refuses = True
    if weights == "decoded" and not backend_refuses:
        it.allocate_tensors()
    else:
        with pytest.raises(RuntimeError, match=r"input '.*' was resized to \[1, 7\], but the model takes \[-1, 20\] "
                                               r"\(-1: any size\): resize only its -1 dimensions.*\(allocate_tensors "
                                               r"failed: "):
            it.allocate_tensors()
    xs = em.inputs("dense", 3)
    ref = em.run_batch(em.reference_interpreter(backend, em.tflite("dense", None)), xs)
    np.testing.assert_allclose(em.run_batch(it, xs), ref, rtol=1e-5, atol=1e-5)  # a batch resize still runs


def _two_signature_model():
    """A .tflite with two signatures over two packable weights: 'a' takes [-1, 4], 'b' a fixed [1, 8]."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    w = [tf.constant(np.where(rng.random((n, 256)) < 0.7, 0.0, rng.choice(np.linspace(-1, 1, 16), (n, 256)))
                     .astype(np.float32)) for n in (4, 8)]

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def a(self, x):
            return {"y": tf.matmul(x, w[0])}

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def b(self, x):
            return {"y": tf.matmul(x, w[1])}

    m = Two()
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [m.a.get_concrete_function(), m.b.get_concrete_function()], m).convert()


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_a_signature_runner_given_a_fixed_dimension_of_another_size_says_which_and_what_it_takes(backend):
    """Signature 'b' (its own subgraph) takes [1, 8]; called with a [1, 5] array, the runner
    resized the input and failed in Prepare with the kernel's words only ("XNNPack delegate failed
    to reshape runtime"): the check looked at subgraph 0's inputs, and after the call the backend
    reports the new size as the signature. At TensorFlow 2.19 (the declared floor) its runner did
    not fail at all: it returned y of shape (0, 256), silently. Now such a call is refused before
    running, naming the signature, the input and both shapes, packed or not; a right-sized call
    then runs, bit-exact to the plain model."""
    plain = _two_signature_model()
    packed = export.pack(plain)
    x = np.linspace(-1, 1, 8, dtype=np.float32)[None]
    want = runtime.Interpreter(model_content=plain, backend=backend).get_signature_runner("b")(x=x)["y"]
    for content in (plain, packed):
        it = runtime.Interpreter(model_content=content, backend=backend)
        run = it.get_signature_runner("b")
        with pytest.raises(ValueError, match=r"^model_content: signature 'b' input 'x' was given an array of "
                                             r"shape \[1, 5\], but the model takes \[1, 8\] \(-1: any size\): "
                                             r"give it an array of that shape \(any size only where -1\)$"):
            run(x=np.ones((1, 5), np.float32))
        assert np.array_equal(it.get_signature_runner("b")(x=x)["y"], want)
        # signature 'a' takes any batch: a batch of 3 runs
        assert it.get_signature_runner("a")(x=np.ones((3, 4), np.float32))["y"].shape == (3, 256)


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_a_tensor_name_that_is_not_utf8_fails_naming_the_model_and_the_fix(backend):
    """A damaged byte in the output tensor's name: the model loads and runs, but
    get_output_details raised a bare UnicodeDecodeError; now a ValueError naming the model."""
    from dc_keras import _flatbuffer as fb

    packed = export.pack(em.tflite("dense", None))
    m = fb.read_model(packed)
    sg = m.subgraphs[0]
    sg.tensors[sg.outputs[0]].name = b"out\xee\xff"
    it = runtime.Interpreter(model_content=fb.write_model(m), backend=backend)
    it.allocate_tensors()
    assert it.get_input_details()[0]["shape"].tolist() == [1, 20]
    with pytest.raises(ValueError, match=r"^model_content: a tensor name in it is not valid UTF-8 .*the file is "
                                         r"truncated or corrupt"):
        it.get_output_details()


_SHARED_IN_TURN = """if True:
    import gc, json, os, sys
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, load_delegate
    from dc_keras import runtime
    sys.path.insert(0, sys.argv[2])
    import _export_models as em
    data = np.load(sys.argv[1])
    packed = [data["m0"].tobytes(), data["m1"].tobytes()]
    x, wants, weights = data["x"], [data["want0"], data["want1"]], sys.argv[3]

    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    dlg = load_delegate(runtime.library_path(), {"weights": weights, "max_density": "100"})
    rss = []
    for k in range(36):
        it = Interpreter(model_content=packed[k % 2], experimental_delegates=[dlg])
        got, want = em.run_batch(it, x), wants[k % 2]
        assert got.shape == want.shape, (k, got.shape)
        if weights == "decoded":
            assert got.tobytes() == want.tobytes(), k
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()),
                                       err_msg=str(k))
        del it
        gc.collect()
        if k in (5, 35):
            rss.append(rss_kb())
    print(json.dumps(rss))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("weights", ["decoded", "compressed"])
def test_a_delegate_shared_by_interpreters_runs_each_ones_model_and_frees_its_weights(weights, tmp_path):
    """One delegate for interpreters made and dropped in turn (an app's models, one after the
    other): the delegate kept each graph's compressed layers and decoded weights keyed by the
    graph's address, which the next interpreter's graph usually gets: with weights="compressed"
    the second model then ran the first model's weights (silently wrong outputs), and the decoded
    weights of every dropped interpreter stayed allocated until the delegate was destroyed (+ one
    model's weights per interpreter). Now each graph's state goes with it.

    Measured in a fresh process: in a long pytest worker the RSS moved by up to 6.4 MiB over the
    30 interpreters on its own (ci15 2026-12-04, at load 4), as much as the leak's 15 MiB bound
    allowed; alone, it moves by 256 KiB (decoded) and 376 KiB (compressed), the same in each of
    10 runs (2026-12-04), and by +27.5 MiB with the bug put back (forget_graph not freeing the
    decoded blocks)."""
    import subprocess

    from ai_edge_litert.interpreter import Interpreter

    plains = [_layers_model(), _layers_model((256, 128, 256, 64, 10))]
    x = np.random.RandomState(1).rand(2, 256).astype(np.float32)
    wants = [em.run_batch(Interpreter(model_content=p), x) for p in plains]
    data = tmp_path / "models.npz"
    np.savez(data, x=x, want0=wants[0], want1=wants[1],
             **{f"m{i}": np.frombuffer(export.pack(p), np.uint8) for i, p in enumerate(plains)})
    r = subprocess.run([sys.executable, "-c", _SHARED_IN_TURN, str(data),
                        os.path.dirname(os.path.abspath(__file__)), weights],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr[-3000:]
    rss = json.loads(r.stdout.strip().splitlines()[-1])
    # 30 interpreters: +15 MiB before the fix in a pytest worker, +27.5 MiB alone
    assert rss[1] - rss[0] < 2048, rss


def _report(dlg) -> bytes:
    import ctypes

    from dc_keras._compat import delegate_pointer

    fn = ctypes.CDLL(runtime.library_path()).DcKerasHuffDecodeDelegateReport
    fn.restype, fn.argtypes = ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    buf = ctypes.create_string_buffer(fn(delegate_pointer(dlg), None, 0) + 1)
    fn(delegate_pointer(dlg), buf, len(buf))
    return buf.value


_SHARED_ON_THREADS = """if True:
    import sys, threading
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, load_delegate
    from dc_keras import runtime
    sys.path.insert(0, sys.argv[3])
    from test_runtime import _report
    packed, x = open(sys.argv[1], "rb").read(), np.load(sys.argv[2])
    opts = dict(a.split("=") for a in sys.argv[4:])

    def run(it):
        i = it.get_input_details()[0]["index"]
        it.resize_tensor_input(i, list(x.shape)); it.allocate_tensors(); it.set_tensor(i, x); it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]).tobytes()

    own = load_delegate(runtime.library_path(), opts)  # one interpreter, its own delegate: the reference
    want = run(Interpreter(model_content=packed, experimental_delegates=[own]))
    for _ in range(8):
        dlg = load_delegate(runtime.library_path(), opts)  # one delegate for 4 threads x 3 interpreters
        outs, bar = [[] for _ in range(4)], threading.Barrier(4)

        def work(k):
            bar.wait()  # the constructors, which apply the delegate, run outside the GIL: at once
            its = [Interpreter(model_content=packed, experimental_delegates=[dlg]) for _ in range(3)]
            for it in its:
                i = it.get_input_details()[0]["index"]
                it.resize_tensor_input(i, list(x.shape)); it.allocate_tensors()
            bar.wait()  # invoke() runs outside the GIL too
            for it in its:
                it.set_tensor(it.get_input_details()[0]["index"], x); it.invoke()
                outs[k].append(it.get_tensor(it.get_output_details()[0]["index"]).tobytes())

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        [t.start() for t in threads]; [t.join() for t in threads]
        assert all(o == want for out in outs for o in out), opts
        assert _report(dlg) == _report(own), (len(_report(dlg)), len(_report(own)))
    print("same outputs, same report")
"""


@pytest.mark.parametrize("opts", [["weights=decoded"], ["keep_decoded=0"], ["weights=compressed", "max_density=100"]])
def test_a_delegate_shared_by_interpreters_on_threads(tmp_path, opts):
    """One load_delegate object for interpreters made and run on 4 threads at once (LiteRT applies
    the delegate in the Interpreter constructor and invokes outside the GIL): the delegate's state
    (report, decoded tensors, errors, kernels, release helper) had no lock. With keep_decoded=0
    (release_decoded=True) the invokes of several interpreters joined the same release helper at
    once and hung (pthread_join of one thread from 3 threads); a ThreadSanitizer build of the C test
    (test_huffdecode_op.c) showed 47 races. Now every output is bit for bit the output of an
    interpreter with a delegate of its own, and the report is that interpreter's (it was one copy
    per interpreter: 16x)."""
    import subprocess

    path = tmp_path / "m.packed.tflite"
    path.write_bytes(export.pack(_layers_model((256, 256, 128, 64, 10))))
    np.save(tmp_path / "x.npy", np.random.RandomState(1).rand(2, 256).astype(np.float32))
    r = subprocess.run([sys.executable, "-c", _SHARED_ON_THREADS, str(path), str(tmp_path / "x.npy"),
                        os.path.dirname(os.path.abspath(__file__)), *opts],
                       capture_output=True, text=True, timeout=240,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0 and "same outputs, same report" in r.stdout, (r.returncode, r.stderr[-3000:])


def test_a_delegate_shared_by_many_interpreters_reports_each_model_once():
    """The report of a delegate shared by interpreters (weights="compressed") grew by the model's
    lines for every interpreter made with it -- ~80 B per compressed layer, 241 KB after 1,000
    interpreters of a 3-layer model, for as long as the delegate lived. Now a model's lines are
    kept once (another model adds its own), and a report reaching 1 MiB keeps its first MiB and
    ends with one "more" line counting the lines not kept (the C test test_huffdecode_op.c
    checks that bound)."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    models = [export.pack(em.tflite("dense", None)), export.pack(_layers_model((64, 10)))]
    dlg = load_delegate(runtime.library_path(), {"weights": "compressed", "max_density": "100"})
    Interpreter(model_content=models[0], experimental_delegates=[dlg]).allocate_tensors()
    first = _report(dlg)
    assert first.count(b"\n") == 3 and first.startswith(b"compressed\t"), first
    for _ in range(200):
        Interpreter(model_content=models[0], experimental_delegates=[dlg]).allocate_tensors()
    assert _report(dlg) == first  # before: 201 copies, 48 KB
    Interpreter(model_content=models[1], experimental_delegates=[dlg]).allocate_tensors()
    both = _report(dlg)
    assert both.startswith(first) and both.count(b"\n") == 5, both
    for k in range(20):
        Interpreter(model_content=models[k % 2], experimental_delegates=[dlg]).allocate_tensors()
    assert _report(dlg) == both
    row = runtime._report_row(["more", "7", "7 more lines not kept: the report keeps 1048576 bytes"])
    assert row == {"weights": None, "route": "more", "count": 7,
                   "reason": "7 more lines not kept: the report keeps 1048576 bytes"}, row


def test_compressed_weights_on_an_unpacked_model_warn_once(tmp_path):
    import warnings

    plain = em.tflite("dense", None)
    path = tmp_path / "plain.tflite"
    path.write_bytes(plain)
    for kw in ({"model_path": str(path)}, {"model_content": plain}):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            it = runtime.Interpreter(weights="compressed", **kw)
        ours = [str(w.message) for w in caught if "no packed tensors" in str(w.message)]
        assert len(ours) == 1 and "dc_keras.export.pack or dc-keras pack" in ours[0], ours
        assert it.compressed_report() == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
        runtime.Interpreter(model_content=plain)
    assert not [w for w in caught if "no packed tensors" in str(w.message)]


def test_loading_a_good_model_does_not_import_the_schema_module(tmp_path):
    """The load path stays cheap: the flatbuffer schema module (~25 ms to import) is only for errors.
    (It was imported on every load once, which made the packed routes' load 17x dense on small layers.)"""
    import subprocess
    import sys

    path = tmp_path / "m.packed.tflite"
    path.write_bytes(export.pack(em.tflite("dense", None)))
    code = ("import sys; from dc_keras import runtime\n"
            f"for w in ('decoded', 'compressed'): runtime.Interpreter(model_path={str(path)!r}, weights=w)"
            ".allocate_tensors()\n"
            "print(sorted(m for m in sys.modules if 'schema_py_generated' in m or m == 'dc_keras._flatbuffer'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def _dynamic_shape_packed():
    """A packed model whose weights are read after a SHAPE -> RESHAPE (a reshape by the run-time
    batch): TFLite defers the Prepare of every later op, HuffDecode's included, to invoke()."""
    import keras

    inputs = keras.Input((8, 16))
    x = keras.layers.Dense(32, name="a")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.reshape(t, (keras.ops.shape(t)[0], -1)), output_shape=(256,))(x)
    model = keras.Model(inputs, keras.layers.Dense(64, name="h")(x))
    for layer in model.layers:
        for v in layer.weights:
            v.assign(np.round(keras.ops.convert_to_numpy(v) * 8) / 8)
    return export.pack(export.to_tflite(model, pack=False))


def test_corrupt_packed_data_fails_at_load_even_when_prepare_is_deferred(tmp_path):
    """A flipped byte in a packed tensor's bit stream used to surface only at the first invoke() in a
    model whose HuffDecode Prepare TFLite defers (dynamic shapes): Interpreter() and
    allocate_tensors() succeeded. Now it fails by allocate_tensors() on every route, naming the model,
    the tensor and the fix: the delegate routes ask the delegate for its error
    (DcKerasHuffDecodeDelegateError), decode='op' checks the CRCs at construction; the intact model
    still loads and runs."""
    from dc_keras import _flatbuffer as fb

    packed = _dynamic_shape_packed()
    model = fb.read_model(packed)
    assert "SHAPE" in [fb.opcode_name(model, op) for op in model.subgraphs[0].operators]
    x = np.zeros((1, 8, 16), np.float32)
    good = runtime.Interpreter(model_content=packed)
    assert em.run_batch(good, x).shape == (1, 64)
    pos = [i for i in range(len(packed)) if packed.startswith(b"DCHF", i)]
    assert len(pos) == 2
    path = tmp_path / "bad.packed.tflite"
    named = set()
    for p in pos:
        bad = bytearray(packed)
        bad[p + int.from_bytes(packed[p - 4:p], "little") - 3] ^= 0x08  # the stream's last bytes
        path.write_bytes(bad)
        for kwargs in ({"model_content": bytes(bad)}, {"model_path": str(path)},
                       {"model_path": str(path), "backend": "tensorflow", "decode": "op"},
                       {"model_content": bytes(bad), "weights": "compressed", "max_density": 1.0}):
            with pytest.raises(RuntimeError) as info:
                runtime.Interpreter(**kwargs).allocate_tensors()
            msg = str(info.value)
            label = str(path) if "model_path" in kwargs else "model_content"
            assert msg.startswith(f"{label}: HuffDecode(") and "checksum mismatch" in msg and "copy it again" in msg, msg
            named.add(msg[len(label) + len(": HuffDecode("):].split(")")[0])
            # a signature runner prepares at its first call: the same error there (it was TFLite's
            # "...the packed data is corruptNode number 6 (DcKerasHuffDecodeDelegate) failed to prepare.")
            with pytest.raises(RuntimeError) as info:
                it = runtime.Interpreter(**kwargs)
                (inputs,) = [v["inputs"] for v in it.get_signature_list().values()]
                it.get_signature_runner()(**{inputs[0]: x})
            assert str(info.value) == msg
    sg = model.subgraphs[0]  # both packed tensors named: HuffDecode's outputs (the converter names them)
    assert named == {fb.tensor_name(sg.tensors[op.outputs[0]]) for op in sg.operators
                     if fb.opcode_name(model, op) == "HuffDecode"}, named
    assert len(named) == 2, named


def _flex_model():
    """A .tflite that converts only with SELECT_TF_OPS (TFLite has no builtin for Cumprod or
    MatrixDeterminant: the converter fails without it) and a 64x64 float32 weight worth packing (16 shared values, 70 %
    zeros)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = np.where(rng.random((64, 64)) < 0.7, 0.0, rng.choice(np.linspace(-1, 1, 16), (64, 64))).astype(np.float32)
    weight = tf.constant(w)

    @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32)])
    def fn(x):
        y = tf.math.cumprod(tf.matmul(x, weight) * 0.01 + 1.0, axis=1)
        return y, tf.linalg.det(tf.reshape(y, [1, 8, 8]))  # a second Flex op: MatrixDeterminant

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return bytes(converter.convert()), w


def test_a_flex_model_packs_unpacks_and_says_why_it_does_not_run_here():
    """Flex (SELECT_TF_OPS) models: pack packs their weights and leaves the Flex op (its NodeDef
    custom options) as it was; both unpackers restore the weight. They do not run in Python here:
    the tensorflow(-cpu) 2.19/2.21 and ai-edge-litert 2.3 pip packages do not link the Flex delegate
    (no TF_AcquireFlexDelegate), so tf.lite.Interpreter fails on the *unpacked* model too ("Select
    TensorFlow op(s) ... not supported by this interpreter"). dc_keras.runtime.Interpreter says so,
    naming the op and the fixes, instead of passing on TFLite's advice to link the delegate."""
    import tensorflow as tf

    from dc_keras import _flatbuffer as fb

    plain, w = _flex_model()
    packed = export.pack(plain)

    def ops(data):
        m = fb.read_model(data)
        return {fb.opcode_name(m, op): op for op in m.subgraphs[0].operators}

    before, after = ops(plain), ops(packed)
    assert "FlexCumprod" in before and "HuffDecode" in after and len(packed) < len(plain)
    assert bytes(after["FlexCumprod"].customOptions) == bytes(before["FlexCumprod"].customOptions)
    def constants(data):
        m = fb.read_model(data)
        data = {fb.tensor_name(t): fb.buffer_bytes(m, t.buffer) for t in m.subgraphs[0].tensors}
        return {k: v for k, v in data.items() if v}

    want = constants(plain)
    assert max(len(v) for v in want.values()) == w.nbytes  # the weight (the converter folds the 0.01 in)
    for back in (export.unpack(packed), runtime.unpack(packed)):
        got = constants(back)
        assert {k: got[k] for k in want} == want  # every constant of the original, same bytes
        assert "HuffDecode" not in ops(back)
    with pytest.raises(RuntimeError, match="Select TensorFlow op"):  # if this passes one day: TF links Flex;
        tf.lite.Interpreter(model_content=plain).allocate_tensors()  # then compare outputs bit-exactly here
    for backend in ("tensorflow", "litert"):
        for data in (packed, plain):
            it = runtime.Interpreter(model_content=data, backend=backend)
            # every Flex op of the model (the runtime's message names the first it meets)
            with pytest.raises(RuntimeError, match=r"^model_content: it holds TensorFlow ops \(FlexCumprod, "
                                                   r"FlexMatrixDeterminant\) "
                                                   r".*Flex delegate.*without SELECT_TF_OPS") as e:
                it.allocate_tensors()
            assert "Select TensorFlow op" in str(e.value) and isinstance(e.value.__cause__, RuntimeError)
    # LiteRT's CompiledModel took such a model and failed at its first run ("Failed to invoke the
    # compiled model / Failed to allocate tensors"): refused when made, with the same words
    pytest.importorskip("ai_edge_litert.compiled_model")
    for data in (packed, plain):
        with pytest.raises(RuntimeError, match=r"^model_content: it holds TensorFlow ops \(FlexCumprod, "
                                               r"FlexMatrixDeterminant\) .*LiteRT's CompiledModel here has none "
                                               r".*without SELECT_TF_OPS"):
            runtime.compiled_model(model_content=data)


def test_a_damaged_packed_header_says_the_fix_on_every_route():
    """A packed tensor whose header is damaged ("invalid packed tensor: ...") or of a newer format
    version ("packed tensor not readable here: ... newer than this decoder?") failed on the
    delegate route without a fix (only checksum failures had one); now every route -- delegate,
    op, runtime.unpack, export.unpack, inspect -- ends with the fix: the file is corrupt, or it
    was packed by a newer dc_keras."""
    from dc_keras import _flatbuffer as fb

    packed = export.pack(em.tflite("dense", None))
    at = packed.find(b"DCHF")
    for offset, flip, fix in ((4, 0x40, fb.NEWER_FIX), (4, 2, fb.CORRUPT_FIX), (5, 0x40, fb.CORRUPT_FIX),
                              (7, 0x40, fb.CORRUPT_FIX), (40, 0x40, fb.CORRUPT_FIX)):
        bad = bytearray(packed)
        bad[at + offset] ^= flip  # 4: the version (2 ^ 0x40 = 66; 2 ^ 2 = 0: no such version, damage), 5: the
        bad = bytes(bad)  # dtype, 7: the layout, 40: inside the streams
        routes = {"delegate": lambda b=bad: runtime.Interpreter(model_content=b).allocate_tensors(),
                  "op": lambda b=bad: runtime.Interpreter(model_content=b, backend="tensorflow",
                                                          decode="op").allocate_tensors(),
                  "runtime.unpack": lambda b=bad: runtime.unpack(b), "inspect": lambda b=bad: export.inspect(b),
                  "export.unpack": lambda b=bad: export.unpack(b)}
        for route, call in routes.items():
            with pytest.raises((RuntimeError, ValueError)) as e:
                call()
            msg = str(e.value)
            if route == "export.unpack" and fix is fb.NEWER_FIX:  # the Python decoder's own words
                assert msg.endswith("upgrade dc_keras"), (offset, route, msg)
            else:
                assert msg.endswith(fix), (offset, route, msg)
            if offset == 4:  # the version named: which decoder reads it, or that none exists (version 0 was
                # given the newer-version fix by the op and delegate routes and by inspect)
                assert ("version 66" if fix is fb.NEWER_FIX else "version 0 does not exist") in msg, (route, msg)
    # a HuffDecode output whose shape is not its packed tensor's (header intact, checksum valid): the
    # delegate said "packed dim 0 is 256 but the output's is 64" without the fix (the op route had it)
    model = fb.read_model(packed)
    sg = model.subgraphs[0]
    (out,) = [sg.tensors[op.outputs[0]] for op in sg.operators if fb.opcode_name(model, op) == "HuffDecode"][:1]
    out.shape = out.shape[::-1].copy()
    bad = fb.write_model(model)
    for decode in ("delegate", "op"):
        with pytest.raises(RuntimeError) as e:
            runtime.Interpreter(model_content=bad, backend="tensorflow", decode=decode).allocate_tensors()
        assert "packed dim 0 is" in str(e.value) and str(e.value).endswith(fb.CORRUPT_FIX), (decode, str(e.value))


def test_a_packed_input_whose_shape_disagrees_with_its_bytes_says_the_fix_on_every_route(tmp_path):
    """A packed tensor whose declared shape is not its buffer's size (one damaged shape entry): the
    runtime said "HuffDecode(W): packed input '' byte size disagrees with its shape" (the nameless
    packed tensor as '', no fix), unpack "must be 1-D with one entry per byte" (no fix). Now every
    route -- delegate, op, runtime.unpack, export.unpack, dc-keras unpack -- names it as the packed
    input of W (the tensor the model reads), gives both sizes and ends with the corrupt-file fix; a
    named packed tensor (files of the older packer) by its own name. Names are escaped (an ESC in W)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import cli

    packed = export.pack(em.tflite("dense", None))
    for packed_name, weight_name in ((None, None), ("w/dc_packed", None), (None, "w\x1b[31m")):
        m = fb.read_model(packed)
        s, i, o = export._pack.packed_tensors(m)[0]
        p, w = m.subgraphs[s].tensors[i], m.subgraphs[s].tensors[o]
        n = int(p.shape[0])
        p.shape = np.array([n - 1], np.int32)
        p.name = packed_name
        w.name = weight_name or w.name
        name = fb.printable(fb.tensor_name(w))
        what = f"packed input '{packed_name}'" if packed_name else f"packed input of '{name}'"
        bad = fb.write_model(m)
        (tmp_path / "bad.tflite").write_bytes(bad)
        says = f"HuffDecode({name}): {what} holds {n} bytes, but its shape says {n - 1}; {fb.CORRUPT_FIX}"
        for kw in ({"backend": "litert"}, {"backend": "tensorflow"}, {"backend": "tensorflow", "decode": "op"}):
            with pytest.raises(RuntimeError) as e:
                runtime.Interpreter(model_content=bad, **kw).allocate_tensors()
            assert str(e.value) == f"model_content: {says}", (kw, str(e.value))
        with pytest.raises(ValueError) as e:
            runtime.unpack(bad)
        assert str(e.value) == f"dc_unpack: {says}", str(e.value)
        says = (f"subgraph {s} operator 0 (HuffDecode): {what if packed_name else f'packed input of {fb.tensor_name(w)!r}'}"
                f" holds {n} bytes, but its shape is [{n - 1}] (one entry per byte: [{n}]); {fb.CORRUPT_FIX}")
        with pytest.raises(ValueError) as e:
            export.unpack(bad)
        assert str(e.value) == says, str(e.value)
        assert cli.main(["unpack", str(tmp_path / "bad.tflite"), str(tmp_path / "u.tflite")]) == 1
        with pytest.raises(ValueError) as e:  # inspect listed it as packed, silently
            export.inspect(bad)
        assert f"holds {n} bytes, but its shape is [{n - 1}] (one entry per byte: [{n}]): no runtime loads it; " \
            f"{fb.CORRUPT_FIX}" in str(e.value), str(e.value)
        assert cli.main(["inspect", str(tmp_path / "bad.tflite")]) == 1

