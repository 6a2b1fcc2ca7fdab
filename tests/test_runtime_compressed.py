"""dc_keras.runtime: weights="compressed" (FULLY_CONNECTED from the compact sparse form) and an
Interpreter that leaves TensorFlow alone."""
import functools
import itertools
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime


def _plain(content):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content)


def _close(got, want):
    """Float: within 1e-5 of the output scale (summation order differs from the dense kernel)."""
    scale = float(np.abs(want).max()) or 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


# The test models of _export_models are ~93 % dense (clustered, lightly pruned): above the default
# max_density (float32: 30 % on the row form, 40 % on the tile form; int8: 25 %), where FC layers
# stay decoded. Tests of the compressed kernels themselves run every FC layer compressed
# (max_density=1.0); the defaults have their own tests (test_default_max_density_*).
ALL = {"max_density": 1.0}


def test_interpreter_does_not_import_tensorflow(tmp_path):
    path = tmp_path / "m.packed.tflite"
    path.write_bytes(export.pack(em.tflite("dense", None)))
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from dc_keras import runtime
        for weights in ("decoded", "compressed"):
            it = runtime.Interpreter(model_path={str(path)!r}, weights=weights)
            it.allocate_tensors()
            it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 20), np.float32))
            it.invoke()
            assert it.backend == "litert"
        print(sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow.")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_compressed_matches_dense_batch1_and_batch(quantize):
    plain = em.tflite("dense", quantize)
    packed = export.pack(plain)
    it = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
    report = it.compressed_report()
    assert report and all(r["route"] == "compressed" for r in report), report
    assert {r["dtype"] for r in report} == {"float32" if quantize is None else "int8"}
    assert all(0 < r["nonzeros"] < r["shape"][0] * r["shape"][1] for r in report)
    xs = em.inputs("dense", 9, seed=4)
    ref = em.run(_plain(plain), xs)
    got = em.run(it, xs)
    if quantize == "int8":  # integer kernels: exact (same requantization as XNNPACK)
        np.testing.assert_array_equal(got, ref)
    else:
        _close(got, ref)
    for n in (2, 8, 9):  # batch tile of 8, remainder, re-prepare after resize
        want, have = em.run_batch(_plain(plain), xs[:n]), em.run_batch(it, xs[:n])
        if quantize == "int8":
            np.testing.assert_array_equal(have, want)
        else:
            _close(have, want)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_empty_batch_gives_an_empty_output_as_the_dense_route_does(quantize):
    """An input resized to a batch of 0 (e.g. a server's empty request): the dense and decoded routes
    give a (0, 10) output; the compressed FC failed at invoke with "tensors not ready" (an empty
    tensor has no data pointer)."""
    plain = em.tflite("dense", quantize)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed", **ALL)
    assert all(r["route"] == "compressed" for r in it.compressed_report())
    xs = em.inputs("dense", 3, seed=4)
    for n in (0, 3, 0):  # and back: re-prepared each time
        want, got = em.run_batch(_plain(plain), xs[:n]), em.run_batch(it, xs[:n])
        assert got.shape == want.shape == (n, 10) and got.dtype == want.dtype
        if quantize or n == 0:
            np.testing.assert_array_equal(got, want)
        else:
            _close(got, want)


def test_unsupported_layers_fall_back_to_decoded_and_are_reported():
    plain = em.tflite("dense", "dynamic")  # hybrid FC (float input, int8 weights)
    packed = export.pack(plain)
    it = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
    report = it.compressed_report()
    dense = [r for r in report if r["route"] == "dense"]
    assert dense, report  # the converter keeps small layers float: those may run compressed
    assert all("weights int8" in r["reason"] and "input float32" in r["reason"] for r in dense)
    xs = em.inputs("dense", 4, seed=1)
    _close(em.run(it, xs), em.run(_plain(plain), xs))


def test_report_keeps_every_field_of_long_lines():
    """A dense row's reason plus a long tensor name once passed the C report's fixed line buffer:
    the cut line lost its op field and compressed_report() raised IndexError (MobileNetV2)."""
    from dc_keras._flatbuffer import read_model, write_model

    model = read_model(em.tflite("dense", "dynamic"))
    for t in model.subgraphs[0].tensors:
        t.name = (b"a_rather_long_scope/" * 20) + (t.name or b"")
    plain = write_model(model)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed", **ALL)
    dense = [r for r in it.compressed_report() if r["route"] == "dense"]
    assert dense and all(len(r["weights"]) > 400 for r in dense), dense
    assert all(r["op"] == "FULLY_CONNECTED" and r["reason"].endswith("run compressed") for r in dense), dense


def test_conv_model_keeps_conv_layers_decoded():
    plain = em.tflite("conv", None)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed", **ALL)
    xs = em.inputs("conv", 3, seed=2)
    _close(em.run(it, xs), em.run(_plain(plain), xs))
    assert runtime.Interpreter(model_content=export.pack(plain)).compressed_report() == []


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_reading_a_weight_that_runs_compressed_names_it_and_the_fix(backend):
    """A weight run from the compact form has no dense values: get_tensor / tensor()() say so by
    name with the fix, not the backend's "Tensor data is null. Run allocate_tensors() first"
    (already run); other tensors, and the same weight with weights="decoded", still read."""
    plain = em.tflite("dense", None)
    packed = export.pack(plain)
    it = runtime.Interpreter(model_content=packed, backend=backend, weights="compressed", **ALL)
    it.allocate_tensors()
    names = {r["weights"] for r in it.compressed_report() if r["route"] == "compressed"}
    by_name = {d["name"]: d["index"] for d in it.get_tensor_details()}
    assert names and names <= set(by_name)
    for name in names:
        with pytest.raises(ValueError, match=r"tensor \d+ \(.*\) is a packed weight that weights='compressed' "
                                             r"runs from its compact sparse form.*weights='decoded'"):
            it.get_tensor(by_name[name])
        with pytest.raises(ValueError, match="weights='compressed' runs from its compact sparse form"):
            it.tensor(by_name[name])()
    xs = em.inputs("dense", 2, seed=3)
    _close(em.run(it, xs), em.run(_plain(plain), xs))
    out = it.get_output_details()[0]["index"]
    assert it.tensor(out)().shape == it.get_tensor(out).shape
    dec = runtime.Interpreter(model_content=packed, backend=backend)
    dec.allocate_tensors()
    ref = _plain(plain)
    ref.allocate_tensors()
    ref_idx = {d["name"]: d["index"] for d in ref.get_tensor_details()}
    for name in names:
        np.testing.assert_array_equal(dec.get_tensor(by_name[name]), ref.get_tensor(ref_idx[name]))


@pytest.mark.parametrize("weights", ["compressed", "decoded"])
def test_corrupt_packed_weights_fail_allocate_with_the_reason(weights):
    """Both routes word a corrupt tensor alike: weights="compressed" said "HuffDecode(name): checksum
    mismatch", the decoded route "HuffDecode(name): decoding failed: checksum mismatch"."""
    packed = bytearray(export.pack(em.tflite("dense", None)))
    at = packed.find(b"DCHF")
    assert at > 0
    packed[at + 60] ^= 0xFF  # inside the first packed tensor
    with pytest.raises(RuntimeError, match=r"HuffDecode\([^)]+\): decoding failed: checksum mismatch"):
        it = runtime.Interpreter(model_content=bytes(packed), weights=weights, **(ALL if weights == "compressed" else {}))
        it.allocate_tensors()


@pytest.mark.parametrize("var,value", [("DC_KERAS_DECODE_THREADS", "four"), ("DC_KERAS_DECODE_THREADS", "-2"),
                                       ("DC_KERAS_DECODE_ASYNC", "false")])
def test_decode_environment_variables_that_cannot_be_read_are_refused(monkeypatch, var, value):
    """DC_KERAS_DECODE_THREADS=four (or -2) silently meant one thread per CPU, DC_KERAS_DECODE_ASYNC=false
    meant "on": the delegate (for C / Android callers too), the Interpreter and unpack now refuse
    them with one error naming the variable and its values; empty is unset, as before."""
    from ai_edge_litert.interpreter import load_delegate

    packed = export.pack(em.tflite("dense", None))
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=f"environment variable {var}='{value}'.* or unset it"):
        load_delegate(runtime.library_path())
    with pytest.raises(ValueError, match=f"environment variable {var}='{value}'.* or unset it"):
        runtime.Interpreter(model_content=packed)
    with pytest.raises(ValueError, match=f"environment variable {var}='{value}'"):
        runtime.unpack(packed)
    monkeypatch.setenv(var, "")
    runtime.Interpreter(model_content=packed).allocate_tensors()
    monkeypatch.setenv(var, "1")
    runtime.Interpreter(model_content=packed).allocate_tensors()
    assert runtime.unpack(packed)


@pytest.mark.parametrize("value", ["abc", "-3", "4x", "99999999999999999999", "65"])
def test_decode_threads_the_c_library_cannot_read_fail_every_route_in_the_same_words(monkeypatch, value):
    """DC_KERAS_DECODE_THREADS=abc (-3, 4x, an overflow, more than 64) was taken as unset -- one
    thread per CPU, silently -- by the C library's dc_unpack (what an Android app calls) and by the
    LiteRT CompiledModel kernel (DcKerasLiteRtHuffDecodeCreate), while the delegate and Python
    refused it. Now every route refuses it with one message naming the variable, its value and the
    fix: the C routes' words (dc_decode_threads_check) are runtime.unpack's, and the delegate's."""
    import ctypes

    from ai_edge_litert.interpreter import load_delegate

    from dc_keras.runtime._litert_c import CustomOpCompiledModel

    packed = export.pack(em.tflite("dense", None))
    monkeypatch.setenv("DC_KERAS_DECODE_THREADS", value)
    want = (f"environment variable DC_KERAS_DECODE_THREADS='{value}' is not a whole number from 0 to 64: "
            "set it to the number of decode threads (0 = one per CPU), or unset it")
    fn = runtime.load_library().dc_unpack  # the C API, as an app calls it
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
                   ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    out, size, why = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t(0), ctypes.create_string_buffer(512)
    assert fn(packed, len(packed), ctypes.byref(out), ctypes.byref(size), why, len(why)) == 6  # DC_UNPACK_ARGUMENT
    assert why.value.decode() == want and not out
    with pytest.raises(ValueError) as e:
        runtime.unpack(packed)
    assert str(e.value) == want
    with pytest.raises(ValueError, match=r"^dc_keras HuffDecode kernel: " + re.escape(want) + "$"):
        CustomOpCompiledModel(packed)
    with pytest.raises(ValueError, match=re.escape(want)):
        load_delegate(runtime.library_path())
    with pytest.raises(ValueError, match=re.escape(want)):
        runtime.Interpreter(model_content=packed)
    monkeypatch.setenv("DC_KERAS_DECODE_THREADS", "64")
    assert fn(packed, len(packed), ctypes.byref(out), ctypes.byref(size), why, len(why)) == 0
    runtime.load_library().dc_unpack_free(out)
    (y,) = CustomOpCompiledModel(packed).run(em.inputs("dense", 1))
    assert y.size


def test_delegate_option_validation():
    from ai_edge_litert.interpreter import load_delegate

    with pytest.raises(ValueError, match="weights=decoded|compressed"):
        load_delegate(runtime.library_path(), {"weights": "lazy"})
    with pytest.raises(ValueError, match="unknown option"):
        load_delegate(runtime.library_path(), {"threads": "2"})
    # a known option with a value out of range was also called "unknown option"
    with pytest.raises(ValueError, match=r"bad value in option max_density=0\.5 .*max_density=1\.\.100 \(percent\)"):
        load_delegate(runtime.library_path(), {"max_density": "0.5"})
    with pytest.raises(ValueError, match="weights"):
        runtime.Interpreter(model_content=em.tflite("dense", None), weights="sparse")
    with pytest.raises(ValueError, match="decode='delegate'"):
        runtime.Interpreter(model_content=em.tflite("dense", None), backend="tensorflow",
                            decode="op", weights="compressed")


def test_plain_litert_with_delegate_option():
    """The route C/Android users take: load_delegate(path, {"weights": "compressed"})."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    plain = em.tflite("dense", "int8")
    it = Interpreter(model_content=export.pack(plain),
                     experimental_delegates=[load_delegate(runtime.library_path(),
                                                           {"weights": "compressed",
                                                            "max_density": "100"})])
    xs = em.inputs("dense", 5, seed=6)
    np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))


def test_tensorflow_backend_compressed():
    plain = em.tflite("dense", None)
    it = runtime.Interpreter(model_content=export.pack(plain), backend="tensorflow",
                             weights="compressed", **ALL)
    assert all(r["route"] == "compressed" for r in it.compressed_report())
    xs = em.inputs("dense", 3, seed=8)
    _close(em.run(it, xs), em.run(_plain(plain), xs))


@functools.lru_cache(maxsize=None)  # seeded, bytes: built once per process (several tests read it)
def _big_fc_packed():
    import keras

    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048)])
    w = m.layers[0].kernel.numpy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    w = np.round(w * 64) / 64
    m.layers[0].kernel.assign(w)
    return export.to_tflite(m, pack=True)


def test_decoded_weights_released_after_xnnpack_packs_them(tmp_path):
    """keep_decoded=0 (opt-in): the decoded 8 MiB FC weight is freed once XNNPACK holds its packed
    copy (keep_decoded=1, the default, keeps it); outputs are unchanged, also after a resize."""
    path = tmp_path / "big.packed.tflite"
    path.write_bytes(_big_fc_packed())
    code = textwrap.dedent(f"""
        import json, numpy as np
        from ai_edge_litert.interpreter import Interpreter, load_delegate
        from dc_keras import runtime
        def anon():
            for line in open("/proc/self/smaps_rollup"):
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
        out = {{}}
        for keep in ("0", "1"):
            a0 = anon()
            it = Interpreter(model_path={str(path)!r}, experimental_delegates=[
                load_delegate(runtime.library_path(), {{"keep_decoded": keep}})])
            it.allocate_tensors()
            x = np.linspace(-1, 1, 1024, dtype=np.float32)[None]
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            y = it.get_tensor(it.get_output_details()[0]["index"]).copy()
            grow = anon() - a0
            it.resize_tensor_input(it.get_input_details()[0]["index"], [3, 1024])
            it.allocate_tensors()
            it.set_tensor(it.get_input_details()[0]["index"], np.repeat(x, 3, 0))
            it.invoke()
            y3 = it.get_tensor(it.get_output_details()[0]["index"])
            out[keep] = [grow, y.tolist(), bool((y3 == y).all())]
            del it
        print(json.dumps(out))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = __import__("json").loads(res.stdout.strip().splitlines()[-1])
    assert out["0"][1] == out["1"][1] and out["0"][2] and out["1"][2]
    # the 8 MiB decoded copy is gone with keep_decoded=0, kept with keep_decoded=1 (default)
    assert out["1"][0] - out["0"][0] > 6 * 2**20, out


def test_release_decoded_is_opt_in_and_checked():
    """Default: decoded weights stay readable (see test_corruption); release_decoded must be a bool."""
    with pytest.raises(ValueError, match="release_decoded must be True or False"):
        runtime.Interpreter(model_content=_big_fc_packed(), release_decoded="yes")
    # decode="op" has no delegate to free anything: the option was silently ignored, and get_tensor
    # then refused the weights as freed
    with pytest.raises(ValueError, match=r"release_decoded=True needs decode='delegate'"):
        runtime.Interpreter(model_content=_big_fc_packed(), backend="tensorflow", decode="op", release_decoded=True)


def test_reading_a_weight_release_decoded_may_free_is_refused_by_name():
    """release_decoded=True frees a decoded FC weight once XNNPACK has packed it; reading it then
    returned freed memory (garbage, or a segfault on a 20 MB model: found by an audit). The
    Interpreter now refuses get_tensor / tensor on such weights, naming the tensor and the fix;
    inputs and outputs stay readable, and without release_decoded the weight reads as before."""
    packed = _big_fc_packed()
    plain = export.unpack(packed)
    weight = [d for d in _plain(plain).get_tensor_details() if d["name"].endswith("MatMul")]
    assert len(weight) == 1
    name, x = weight[0]["name"], np.ones((1, 1024), np.float32)
    for release in (True, False):
        it = runtime.Interpreter(model_content=packed, release_decoded=release)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        np.testing.assert_array_equal(it.get_tensor(it.get_output_details()[0]["index"]), em.run(_plain(plain), x))
        index = [d["index"] for d in it.get_tensor_details() if d["name"] == name][0]
        if release:
            for method, kw in (("get_tensor", {}), ("tensor", {}), ("get_tensor", {"subgraph_index": 0})):
                with pytest.raises(ValueError, match=rf"tensor {index} \('{name}'\) is a packed weight "
                                                     r"that release_decoded=True frees.*release_decoded=False"):
                    getattr(it, method)(index, **kw)
        else:
            ref = _plain(plain)
            ref.allocate_tensors()
            np.testing.assert_array_equal(it.get_tensor(index), ref.get_tensor(weight[0]["index"]))


def _mapping_rss_kb(path):
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
                inside = len(head) >= 6 and head[5] == str(path)
            elif inside and head[0] == "Rss:":
                total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_packed_file_pages_are_released_after_the_compact_build(tmp_path):
    """Opened by path, LiteRT maps the file: once the compact form is built the packed bytes of a
    compressed layer are dropped from the process (dc_release_file_pages), later reads fault
    them back (a resize re-applies the delegate); a model passed as bytes is never touched."""

    plain, packed = _pruned_shared_dense(np.random.RandomState(3), 256, 384, cut=1.0)  # ~32 % non-zero
    path = tmp_path / "big.packed.tflite"
    path.write_bytes(packed)
    it = runtime.Interpreter(model_path=str(path), weights="compressed", **ALL)
    it.allocate_tensors()
    assert [r["route"] for r in it.compressed_report()] == ["compressed"]
    assert len(packed) > 24_000  # 6 whole pages or more
    resident = _mapping_rss_kb(path) * 1024
    assert resident < len(packed) // 2, (resident, len(packed))
    xs = np.random.RandomState(4).randn(3, 256).astype(np.float32)
    _close(em.run(it, xs), em.run(_plain(plain), xs))
    _close(em.run_batch(it, xs), em.run_batch(_plain(plain), xs))
    from_bytes = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
    _close(em.run_batch(from_bytes, xs), em.run_batch(_plain(plain), xs))
    _close(em.run_batch(from_bytes, xs[:1]), em.run_batch(_plain(plain), xs[:1]))


def _pruned_shared_dense(rng, n_in, n_out, cut):
    """One Dense layer with weights |w| < cut pruned and rounded to 1/8 steps (~32 shared values):
    the unpacked and the packed .tflite."""
    import keras

    w = rng.randn(n_in, n_out).astype(np.float32)
    w[np.abs(w) < cut] = 0
    w = np.clip(np.round(w * 8) / 8, -3, 3)
    m = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out)])
    m.layers[0].set_weights([w, np.linspace(-1, 1, n_out).astype(np.float32)])
    plain = export.to_tflite(m, pack=False)
    return plain, export.pack(plain)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
@pytest.mark.parametrize("threads", ["2", "1"])
def test_large_layer_build_with_helper_thread(tmp_path, monkeypatch, threads):
    """A compact form of 1 MiB or more is built beside a helper (dc_task_start: its pages mapped,
    the packed bytes' CRC and file mapping checked there while the caller decodes; with
    DC_KERAS_DECODE_THREADS=1 in the caller first): same outputs, file pages released by path
    only, and a corrupted byte still fails with the checksum error."""

    monkeypatch.setenv("DC_KERAS_DECODE_THREADS", threads)
    rng = np.random.RandomState(5)
    plain, packed = _pruned_shared_dense(rng, 1024, 1024, cut=0.5)  # ~62 %: ~650,000 entries, a 1.9 MB form
    path = tmp_path / "large.packed.tflite"
    path.write_bytes(packed)
    xs = rng.randn(2, 1024).astype(np.float32)
    want = em.run_batch(_plain(plain), xs)
    it = runtime.Interpreter(model_path=str(path), weights="compressed", **ALL)
    it.allocate_tensors()
    row, bias = sorted(it.compressed_report(), key=lambda r: r["route"])  # the bias is packed too
    assert row["route"] == "compressed" and row["bytes"] >= 1 << 20, row
    assert bias["route"] == "dense" and "input 2 of FULLY_CONNECTED, not its weights" in bias["reason"], bias
    assert _mapping_rss_kb(path) * 1024 < len(packed) // 2
    _close(em.run_batch(it, xs), want)
    _close(em.run_batch(runtime.Interpreter(model_content=packed, weights="compressed", **ALL), xs), want)
    bad = bytearray(packed)
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(packed)
    weight = max((fb.buffer_bytes(model, model.subgraphs[s].tensors[p].buffer)
                  for s, p, _ in export._pack.packed_tensors(model)), key=len)  # the weight, not the bias
    at = packed.index(weight)
    assert len(weight) > len(packed) // 2 and at + len(packed) // 4 < at + len(weight)
    bad[at + len(packed) // 4] ^= 0x10  # inside the weight's streams
    with pytest.raises(RuntimeError, match="checksum"):
        it = runtime.Interpreter(model_content=bytes(bad), weights="compressed", **ALL)
        it.allocate_tensors()


def test_report_lists_every_packed_tensor_with_route_and_reason():
    """Every packed tensor appears in compressed_report(): the conv model's CONV_2D and
    DEPTHWISE_CONV_2D filters (no compressed kernel) as 'dense' with the reason and the op, the
    Dense layer as 'compressed'; names match the packed model's HuffDecode outputs one for one."""
    from dc_keras import _flatbuffer as fb

    packed = export.pack(em.tflite("conv", None))
    model = fb.read_model(packed)
    want = sorted(fb.tensor_name(model.subgraphs[s].tensors[o])
                  for s, _, o in export._pack.packed_tensors(model))
    it = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
    report = it.compressed_report()
    assert sorted(r["weights"] for r in report) == want, report
    ops = {r["op"]: r for r in report}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(ops), report
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        row = ops[op]
        assert row["route"] == "dense" and f"{op} has no compressed kernel" in row["reason"], row
    assert ops["FULLY_CONNECTED"]["route"] == "compressed"
    it.allocate_tensors()  # a second Prepare adds no duplicate rows
    assert sorted(r["weights"] for r in it.compressed_report()) == want


def test_report_names_builtins_the_c_table_does_not():
    from dc_keras.runtime import _op_label, _report_row

    assert _op_label("BUILTIN_126") == "BATCH_MATMUL" and _op_label("BUILTIN_99999") == "BUILTIN_99999"
    assert _report_row(["dense", "w", "read by 2 operators", "BUILTIN_3"])["op"] == "CONV_2D"
    row = _report_row(["dense", "w", "BUILTIN_126 has no compressed kernel; decoded", "BUILTIN_126"])
    assert row["reason"] == "BATCH_MATMUL has no compressed kernel; decoded", row


def test_float16_weights_are_reported_with_the_dequantize_reading_them():
    """quantize="float16": each packed weight feeds a DEQUANTIZE, which the report called
    "BUILTIN_6" in its reason (C and Python) and its op (C); outputs bit-exact."""
    plain = export.to_tflite(em.keras_model("dense"), pack=False, quantize="float16")
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed", **ALL)
    report = it.compressed_report()
    assert len(report) == 3 and all(r["route"] == "dense" and r["op"] == "DEQUANTIZE" for r in report), report
    assert all(r["reason"].startswith("DEQUANTIZE has no compressed kernel") for r in report), report
    xs = em.inputs("dense", 3, seed=2)
    np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))
    import ctypes

    from ai_edge_litert.interpreter import Interpreter, load_delegate
    from dc_keras._compat import delegate_pointer

    dlg = load_delegate(runtime.library_path(), {"weights": "compressed"})  # what C callers read
    Interpreter(model_content=export.pack(plain), experimental_delegates=[dlg])
    fn = ctypes.CDLL(runtime.library_path()).DcKerasHuffDecodeDelegateReport
    fn.restype, fn.argtypes = ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    buf = ctypes.create_string_buffer(4096)
    fn(delegate_pointer(dlg), buf, len(buf))
    assert b"BUILTIN_" not in buf.value and buf.value.count(b"DEQUANTIZE") == 6, buf.value


def test_report_gives_the_reason_for_weights_read_by_several_ops():
    """One packed weight read by two FULLY_CONNECTED ops (the second FC's weights pointed at the
    first's in the flatbuffer): no compressed candidate, so a 'dense' row saying so; outputs as
    the unpacked model."""
    import keras
    from dc_keras import _flatbuffer as fb

    keras.utils.set_random_seed(0)
    inp = keras.Input((20,))
    d = keras.layers.Dense(64)
    m = em.cluster_and_prune(keras.Model(inp, keras.layers.Concatenate()([d(inp), d(inp * 2.0)])))
    model = fb.read_model(export.to_tflite(m, pack=False))
    sg = model.subgraphs[0]
    fcs = [op for op in sg.operators if fb.opcode_name(model, op) == "FULLY_CONNECTED"]
    assert len(fcs) == 2
    fcs[1].inputs = [int(v) for v in fcs[1].inputs]
    fcs[1].inputs[1] = int(fcs[0].inputs[1])  # one weight tensor, two readers
    plain = fb.write_model(model)
    packed = export.pack(plain)
    it = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
    rows = [r for r in it.compressed_report() if r["weights"] == fb.tensor_name(sg.tensors[fcs[0].inputs[1]])]
    assert len(rows) == 1 and rows[0]["route"] == "dense", it.compressed_report()
    assert "read by 2 operators" in rows[0]["reason"] and rows[0]["op"] == "FULLY_CONNECTED", rows
    xs = em.inputs("dense", 3, seed=3)
    _close(em.run(it, xs), em.run(_plain(plain), xs))


@pytest.mark.parametrize("density", [1.0, 0.3])  # the packer's dense (§5) and sparse (§6) layouts
def test_fc_with_too_many_values_is_refused_from_its_codebook_and_decoded(density):
    """An FC whose float32 weights take more than 255 distinct non-zero values (here 300: a
    clustered 8-bit layer without a zero cluster, like MobileNetV2's classifier) cannot run
    compressed. The delegate says so from the packed header, before decoding anything, and then
    decodes the weights with the other tensors. Before this, it decoded such a weight once just to
    count its values, then a second time on its own: MobileNetV2 took 1.5x longer to load with
    weights="compressed" than with "decoded". The layer then runs on the ordinary kernels, so the
    outputs are bit-exact with the unpacked model."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = keras.Input((20,))
    fc = keras.layers.Dense(300)
    model = keras.Model(inp, fc(inp))
    values = np.linspace(0.01, 0.3, 300, dtype=np.float32) * rng.choice([-1.0, 1.0], 300).astype(np.float32)
    w = rng.choice(values, size=(20, 300)) * (rng.random((20, 300)) < density)
    w[0] = values  # every value present
    fc.kernel.assign(w.astype(np.float32))
    plain = export.to_tflite(model, pack=False)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    (row,) = it.compressed_report()
    assert row["route"] == "dense" and row["op"] == "FULLY_CONNECTED", row
    assert row["reason"] == ("more than 255 distinct non-zero values (in its codebook): cluster the weights to at "
                             "most 255 values (dc_keras.cluster, bits <= 7) to run them compressed"), row
    xs = np.random.default_rng(1).random((5, 20)).astype(np.float32)
    np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))


def _two_fc_model(first_density, second_density, seed=0):
    """Dense(64) then Dense(10) on 20 inputs, 15 shared values, pruned to the given densities."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((20,))
    first, second = keras.layers.Dense(64), keras.layers.Dense(10)
    model = keras.Model(inp, second(first(inp)))
    values = np.linspace(-0.3, 0.3, 16, dtype=np.float32)
    values = values[values != 0]
    for layer, shape, density in ((first, (20, 64), first_density), (second, (64, 10), second_density)):
        w = rng.choice(values, shape) * (rng.permutation(shape[0] * shape[1]).reshape(shape)
                                         < round(density * shape[0] * shape[1]))
        layer.kernel.assign(w.astype(np.float32))
    return model


def test_max_density_keeps_unpruned_fc_layers_decoded():
    """max_density=0.9: the pruned FC (30 % density) runs compressed, the unpruned one (100 %)
    stays decoded, with its density as the reason; max_density=1.0: both run compressed. Outputs
    within summation order of the unpacked model either way. Bad values get one clear error, and
    the C option takes whole percents 1..100 only."""
    from ai_edge_litert.interpreter import load_delegate

    plain = export.to_tflite(_two_fc_model(0.3, 1.0), pack=False)
    packed = export.pack(plain)
    xs = np.random.default_rng(1).random((4, 20)).astype(np.float32)
    ref = em.run(_plain(plain), xs)

    it = runtime.Interpreter(model_content=packed, weights="compressed", max_density=0.9)
    rows = sorted(it.compressed_report(), key=lambda r: r["route"])
    assert [r["route"] for r in rows] == ["compressed", "dense"], rows
    assert rows[0]["shape"] == (64, 20) and rows[0]["nonzeros"] == 384, rows[0]
    assert rows[1]["reason"] == "density 100.0 % > max_density 90 %; decoded", rows[1]
    assert rows[1]["op"] == "FULLY_CONNECTED"
    _close(em.run(it, xs), ref)
    it = runtime.Interpreter(model_content=packed, weights="compressed", max_density=1.0)
    assert [r["route"] for r in it.compressed_report()] == ["compressed", "compressed"]
    _close(em.run(it, xs), ref)

    for bad in (0, 1.5, 0.905, True, "0.9", float("nan")):
        with pytest.raises(ValueError, match="max_density must be a fraction"):
            runtime.Interpreter(model_content=packed, weights="compressed", max_density=bad)
    with pytest.raises(ValueError, match="weights='compressed' only"):
        runtime.Interpreter(model_content=packed, max_density=0.9)
    for bad in ("0", "101", "90.5", "", "-5"):
        with pytest.raises(ValueError, match=r"max_density=1\.\.100"):
            load_delegate(runtime.library_path(), {"weights": "compressed", "max_density": bad})


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_default_max_density_by_weight_type(quantize):
    """Without max_density, FULLY_CONNECTED layers on the row form run compressed up to 30 %
    density with float32 weights and up to 25 % with int8 ones (where the compact form pays:
    faster for float32, smaller for int8, docs/android.md); a denser layer stays decoded and the
    report says which default applied. Float: a layer at exactly 30 % runs compressed, a 40 % one
    not, on the row form of every CPU (dc_sparse_fc_use_simd(0) at load: what ARM CPUs build;
    the tile form has its own default, test_default_max_density_by_form); int8 (always rows):
    20 % and 30 %."""
    lo, hi = (0.3, 0.4) if quantize is None else (0.2, 0.3)
    rng = np.random.default_rng(2)
    calib = rng.random((16, 20)).astype(np.float32)  # drawn for every mode: the same stream as before
    plain = export.to_tflite(_two_fc_model(lo, hi, seed=1), pack=False, quantize=quantize,
                             representative_data=calib if quantize == "int8" else None)
    packed = export.pack(plain)
    lib = _sparse_fc_lib()
    was = lib.dc_sparse_fc_use_simd(0)  # rows: the form ARM CPUs build
    try:
        it = runtime.Interpreter(model_content=packed, weights="compressed")
    finally:
        lib.dc_sparse_fc_use_simd(was)
    rows = {r["route"]: r for r in it.compressed_report() if r["op"] == "FULLY_CONNECTED"}
    assert set(rows) == {"compressed", "dense"}, it.compressed_report()
    assert rows["compressed"]["shape"] == (64, 20), rows
    kind, limit = ("float32 weights on the row form", 30) if quantize is None else ("int8 weights", 25)
    assert rows["dense"]["reason"] == (f"density {100 * hi:.1f} % > {limit} % "
                                       f"(default max_density for {kind}); decoded"), rows
    xs = rng.random((4, 20)).astype(np.float32)
    if quantize is None:
        _close(em.run(it, xs), em.run(_plain(plain), xs))
    else:  # integer kernels: exact
        np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))


def _one_fc_model(units, nonzeros, seed=0, inputs=20, values=None):
    """Dense(units) on `inputs` inputs with exactly `nonzeros` non-zero weights of 15 shared values
    (`values`' non-zero ones; default: 15 between -0.3 and 0.3)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((inputs,))
    layer = keras.layers.Dense(units)
    model = keras.Model(inp, layer(inp))
    values = np.linspace(-0.3, 0.3, 16, dtype=np.float32) if values is None else np.asarray(values, np.float32)
    shape = (inputs, units)
    w = rng.choice(values[values != 0], shape) * (rng.permutation(inputs * units).reshape(shape) < nonzeros)
    layer.kernel.assign(w.astype(np.float32))
    return model


def test_density_just_above_the_limit_is_reported_above_it():
    """A layer one non-zero above a density limit (769 of 2,560 weights: 30.04 %) is decoded, and
    the report says a density above the limit ("30.04 % > 30 %", not "30.0 % > 30 %", which reads
    as if it were not): the row form's default, an explicit max_density, and int8's default (641 of
    2,560: 25.04 %). Layers at 1.5 points above keep one decimal ("31.5 % > 30 %")."""
    rng = np.random.default_rng(3)
    lib = _sparse_fc_lib()
    for quantize, nonzeros, kw, reason in [
            (None, 769, {}, f"density 30.04 % > 30 % {ROWS_DEFAULT}; decoded"),
            (None, 807, {}, f"density 31.5 % > 30 % {ROWS_DEFAULT}; decoded"),
            (None, 2305, {"max_density": 0.9}, "density 90.04 % > max_density 90 %; decoded"),
            ("int8", 641, {}, "density 25.04 % > 25 % (default max_density for int8 weights); decoded")]:
        calib = rng.random((16, 20)).astype(np.float32)  # drawn for every mode: the same stream as before
        plain = export.to_tflite(_one_fc_model(128, nonzeros), pack=False, quantize=quantize,
                                 representative_data=calib if quantize == "int8" else None)
        was = lib.dc_sparse_fc_use_simd(0)  # the row form on every CPU
        try:
            it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed", **kw)
        finally:
            lib.dc_sparse_fc_use_simd(was)
        assert _fc_routes(it) == [("dense", reason)], it.compressed_report()


def test_layers_of_fewer_than_4_units_get_the_row_forms_default():
    """A float32 FC layer of 1-3 output units never fits the tile form (16 rows per tile: more
    than DC_SFC_TILE_FILL = 4 entries per non-zero), so dc_sparse_fc_form says rows from its header
    and the row form's default (30 %) applies from the start, on every CPU: an unpruned Dense(1)
    head (100 %), a Dense(2) at 62.5 % and a Dense(3) at 39 % stay decoded with the row form named
    (before: on AVX-512 CPUs the tile form's default was named, or the layer was built and then
    refused as "its tiles did not fit"); a Dense(3) at 30 % runs compressed on the rows (the
    report's bytes: the row form's 3 per non-zero + 4 per row). 256 inputs."""
    xs = np.random.default_rng(8).random((4, 256)).astype(np.float32)
    for units, nonzeros, want in [(1, 256, "density 100.0 % > 30 %"), (2, 320, "density 62.5 % > 30 %"),
                                  (3, 300, "density 39.1 % > 30 %"), (3, 230, None)]:
        plain = export.to_tflite(_one_fc_model(units, nonzeros, seed=units, inputs=256), pack=False)
        it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
        if want:
            assert _fc_routes(it) == [("dense", f"{want} {ROWS_DEFAULT}; decoded")], it.compressed_report()
        else:
            (row,) = it.compressed_report()
            assert row["route"] == "compressed" and row["nonzeros"] == nonzeros, row
            _, SparseFc = _sparse_fc_api()
            import ctypes

            assert row["bytes"] == ctypes.sizeof(SparseFc) + 4 * (units + 1) + 3 * nonzeros, row
        _close(em.run(it, xs), em.run(_plain(plain), xs))


def _fc_routes(it):
    """compressed_report()'s FULLY_CONNECTED weights, sorted: (route, shape or reason)."""
    return sorted((r["route"], r["shape"] if r["route"] == "compressed" else r["reason"])
                  for r in it.compressed_report() if r["op"] == "FULLY_CONNECTED")


@functools.lru_cache(maxsize=None)  # seeded, bytes: built once per process (several tests read it)
def _tile_form_model():
    """_two_fc_model at 35 % (weight [64, 20]) and 60 % ([10, 64]), 15 values: between the row
    form's default (30 %) and the tile form's (40 %), and above both; the unpacked and packed
    .tflite."""
    plain = export.to_tflite(_two_fc_model(0.35, 0.6, seed=5), pack=False)
    return plain, export.pack(plain)


ROWS_DEFAULT = "(default max_density for float32 weights on the row form)"
TILES_DEFAULT = "(default max_density for float32 weights on the tile form)"
ROWS_NO_FIT = "(default max_density for float32 weights on the row form: its tiles did not fit)"


def test_default_max_density_on_the_row_form_keeps_a_35_percent_layer_decoded():
    """Float32 layers on the row form (the scalar kernels, dc_sparse_fc_use_simd(0) at load: what
    ARM CPUs and CPUs without AVX-512 build) run compressed by default only up to 30 %: a 35 % and
    a 60 % layer stay decoded, the report naming the row form's default; outputs within summation
    order of the unpacked model. Runs on every CPU."""
    plain, packed = _tile_form_model()
    lib = _sparse_fc_lib()
    was = lib.dc_sparse_fc_use_simd(0)
    try:
        it = runtime.Interpreter(model_content=packed, weights="compressed")
    finally:
        lib.dc_sparse_fc_use_simd(was)
    assert _fc_routes(it) == [("dense", f"density 35.0 % > 30 % {ROWS_DEFAULT}; decoded"),
                              ("dense", f"density 60.0 % > 30 % {ROWS_DEFAULT}; decoded")], it.compressed_report()
    xs = np.random.default_rng(6).random((4, 20)).astype(np.float32)
    np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))  # decoded: exact


def test_default_max_density_by_form(tmp_path):
    """On an AVX-512 CPU a float32 FC layer of <= 32 values runs on the tile form, whose default
    max_density is 40 % (docs/results.md: faster than XNNPACK at batch 1 and 8 up to there in every
    run): the 35 % layer runs compressed by default, the 60 % one stays decoded with the tile
    form's default as reason. When its tiles do not fit (dc_sparse_fc_set_tile_fill(0): the build
    makes rows) the 35 % layer is refused after its build by the row form's 30 % and decoded (from the file,
    whose pages the build dropped: bit-exact with the unpacked model), and the report of the 60 %
    one, refused before any form was built, names that limit too (its tiles would not have fit). An explicit max_density
    applies to the tile form as to the rows (0.3: both decoded; 0.7: both compressed). Outputs
    within summation order of the unpacked model, batch 1 and 4."""
    lib = _sparse_fc_lib()
    if lib.dc_sparse_fc_kernel_name() != b"avx512":
        pytest.skip("the tile form needs an x86-64 CPU with AVX-512 F/BW/VL (dc_sparse_fc_kernel_name() "
                    "is 'scalar' here); the row form's default: "
                    "test_default_max_density_on_the_row_form_keeps_a_35_percent_layer_decoded")
    plain, packed = _tile_form_model()
    xs = np.random.default_rng(7).random((4, 20)).astype(np.float32)
    ref = _plain(plain)

    it = runtime.Interpreter(model_content=packed, weights="compressed")
    routes = _fc_routes(it)
    assert routes == [("compressed", (64, 20)),
                      ("dense", f"density 60.0 % > 40 % {TILES_DEFAULT}; decoded")], routes
    (row,) = [r for r in it.compressed_report() if r["route"] == "compressed"]
    assert row["nonzeros"] == 448, row
    for n in (1, 4):
        _close(em.run_batch(it, xs[:n]), em.run_batch(ref, xs[:n]))

    path = tmp_path / "m.packed.tflite"
    path.write_bytes(packed)
    fill = lib.dc_sparse_fc_set_tile_fill(0)  # every tile form built is turned into rows
    try:
        it = runtime.Interpreter(model_path=str(path), weights="compressed")
    finally:
        lib.dc_sparse_fc_set_tile_fill(fill)
    assert _fc_routes(it) == [("dense", f"density 35.0 % > 30 % {ROWS_NO_FIT}; decoded"),
                              ("dense", f"density 60.0 % > 30 % {ROWS_NO_FIT}; decoded")], it.compressed_report()
    np.testing.assert_array_equal(em.run_batch(it, xs), em.run_batch(ref, xs))  # decoded: exact

    it = runtime.Interpreter(model_content=packed, weights="compressed", max_density=0.3)
    assert _fc_routes(it) == [("dense", "density 35.0 % > max_density 30 %; decoded"),
                              ("dense", "density 60.0 % > max_density 30 %; decoded")]
    it = runtime.Interpreter(model_content=packed, weights="compressed", max_density=0.7)
    assert _fc_routes(it) == [("compressed", (10, 64)), ("compressed", (64, 20))]
    _close(em.run_batch(it, xs), em.run_batch(ref, xs))


def _skip_without_tiles(lib):
    if lib.dc_sparse_fc_kernel_name() != b"avx512":
        pytest.skip("the tile form needs an x86-64 CPU with AVX-512 F/BW/VL (dc_sparse_fc_kernel_name() "
                    "is 'scalar' here)")


def _rows_bytes(units, nonzeros):
    """dc_sparse_fc_bytes of a float32 row form: the struct, 4 bytes per row + 1, 3 per non-zero."""
    import ctypes

    return ctypes.sizeof(_sparse_fc_api()[1]) + 4 * (units + 1) + 3 * nonzeros


@pytest.mark.parametrize("packing", ["float_planes", "coded/dense", "uncoded/dense", "uncoded/sparse",
                                     "uncoded/sparse/1"])
def test_a_layers_form_and_default_density_follow_its_coded_values(monkeypatch, packing):
    """A float32 Dense(64) of 15 values on 20 inputs runs on the tile form (AVX-512) with the tile
    form's 40 % default when its packed codebook holds <= 32 values that have a code. Packed so
    that the header cannot tell its values -- §12 float planes (no codebook), or a codebook of 35
    values of which the 20 the layer does not use have a code too (another encoder; dense layout,
    §5: built through a dense copy) -- it is said and built as rows on every route: at 25 % it
    runs compressed on the rows (the report's bytes), at 35 % it stays decoded with the row form's
    30 % named. When those 20 have no code (FORMAT.md §4: length 0, so no element can hold them)
    they are not counted: the tile form, the same bytes as with dc_keras's own packing, in the
    dense layout (through the dense copy) and the sparse one (version 2: straight from §6's
    entries; version 1: the dense copy); the 35 % layer runs compressed too (before: the rows at
    25 %, and decoded at 35 %). Weights k/8 and integer inputs: every sum is exact, so outputs equal
    the unpacked model's bit for bit whatever the kernel's summation order."""
    from dc_keras import codec

    _skip_without_tiles(_sparse_fc_lib())
    encode = codec.encode
    kind, layout, version = (packing.split("/") + ["2"])[:3] if "/" in packing else (packing, packing, "2")
    version = int(version)

    def pack_so(array, **kw):
        a = np.asarray(array)
        if a.dtype != np.float32 or a.shape != (64, 20):  # not the FC weight [units, inputs]
            return encode(array, **kw)
        if kind == "float_planes":
            return encode(a, layout="float_planes")
        return _packed_with_unused_values(a, 20, layout, version, coded=kind == "coded")

    values = np.arange(-7, 9, dtype=np.float32) / 8
    plain = {d: export.to_tflite(_one_fc_model(64, round(d * 1280), seed=9, values=values), pack=False)
             for d in (0.25, 0.35)}
    as_usual = {d: runtime.Interpreter(model_content=export.pack(p), weights="compressed").compressed_report()
                for d, p in plain.items()}
    assert [r["route"] for r in as_usual[0.25] + as_usual[0.35]] == ["compressed"] * 2, as_usual
    assert as_usual[0.25][0]["bytes"] != _rows_bytes(64, 320), as_usual  # the tile form
    monkeypatch.setattr(codec, "encode", pack_so)
    packed = {d: export.pack(p, version=version) for d, p in plain.items()}
    monkeypatch.undo()
    info = codec.info(_weight_bytes(packed[0.25]))
    assert (info["layout"], info["version"]) == (layout, version), info
    assert kind == "float_planes" or info["codebook_size"] == 37, info  # 15, +0.0, -0.0 and 20 more
    xs = np.random.default_rng(9).integers(0, 4, (4, 20)).astype(np.float32)
    for d, nonzeros in ((0.25, 320), (0.35, 448)):
        it = runtime.Interpreter(model_content=packed[d], weights="compressed")
        if kind == "uncoded":
            assert it.compressed_report() == as_usual[d], (it.compressed_report(), as_usual[d])  # the tiles
        elif d == 0.25:
            (row,) = it.compressed_report()
            assert row["route"] == "compressed" and row["nonzeros"] == nonzeros, row
            assert row["bytes"] == _rows_bytes(64, nonzeros), row  # the rows, whichever route built them
        else:
            assert _fc_routes(it) == [("dense", f"density 35.0 % > 30 % {ROWS_DEFAULT}; decoded")], it.compressed_report()
        np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain[d]), xs))


def _weight_bytes(packed):
    """The packed bytes of the largest packed tensor of a packed .tflite (an FC weight)."""
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(packed)
    return max((fb.buffer_bytes(model, model.subgraphs[s].tensors[p].buffer)
                for s, p, _ in export._pack.packed_tensors(model)), key=len)


def test_layers_of_4_to_7_units_above_the_tile_default_name_the_limit_that_applied():
    """A float32 layer of 4-7 output units said on the tile form (AVX-512, <= 32 values) and
    denser than its 40 % default: refused before any form is built, its report names the limit
    of the form the layer would have taken -- the tile form's 40 % when its tiles fit (an
    unpruned Dense(4): 16 x 64 entries for 256 non-zeros, 4 per non-zero), the row form's 30 %
    when they would not have (a Dense(4) at 60 %: more than 4 entries per non-zero, as the build
    of a layer at 45 % finds them), as for a layer built and then refused. Before, both named the
    tile form's default. 64 inputs; outputs decoded: bit-exact."""
    _skip_without_tiles(_sparse_fc_lib())
    xs = np.random.default_rng(10).random((3, 64)).astype(np.float32)
    for nonzeros, want in [(256, f"density 100.0 % > 40 % {TILES_DEFAULT}"),
                           (154, f"density 60.2 % > 30 % {ROWS_NO_FIT}"),
                           (115, f"density 44.9 % > 30 % {ROWS_NO_FIT}")]:
        model = _one_fc_model(4, nonzeros, seed=11, inputs=64)
        w = model.layers[-1].kernel.numpy()
        assert (_tile_entries(w) <= 4 * nonzeros) == ("tile form" in want), (_tile_entries(w), nonzeros)
        plain = export.to_tflite(model, pack=False)
        it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
        assert _fc_routes(it) == [("dense", f"{want}; decoded")], it.compressed_report()
        np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))


_FAIL_ALIGNED_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
/* posix_memalign of DC_TEST_FAIL_ALIGNED_BYTES bytes called from libdc_huffdecode fails (ENOMEM) */
int posix_memalign(void** p, size_t align, size_t n) {
  static int (*real)(void**, size_t, size_t);
  const char* fail = getenv("DC_TEST_FAIL_ALIGNED_BYTES");
  Dl_info info;
  if (!real) real = (int (*)(void**, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  if (fail && n == strtoull(fail, NULL, 10) && dladdr(__builtin_return_address(0), &info) &&
      info.dli_fname && strstr(info.dli_fname, "libdc_huffdecode"))
    return ENOMEM;
  return real(p, align, n);
}
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="an LD_PRELOAD shim")
@pytest.mark.parametrize("packing", ["dense/1", "sparse/2"])
def test_a_tile_form_without_memory_falls_back_to_rows_and_says_so(tmp_path, monkeypatch, packing):
    """The 35 % layer of _tile_form_model ([64, 20], 15 values) when the tile form's entries
    (2,048: 4,096 bytes, dc_alloc_output) cannot be allocated, packed in the dense layout of
    version 1 (built through a dense copy, then turned into tiles) or the sparse one of version 2
    (§6: decoded straight into tiles): the build keeps the rows, the row form's 30 % default
    applies and the report says why -- "out of memory for its tiles" (dense copy, before: "its
    tiles did not fit", which they do; §6, before: the load failed, "out of memory"); without the
    shim the layer runs compressed on the tiles. With
    max_density=0.5 it runs compressed on those rows (the report's bytes), outputs within
    summation order of the unpacked model. The 60 % layer is refused by the tile form's 40 % as
    usual. A child Python with posix_memalign of that size failing in libdc_huffdecode
    (LD_PRELOAD)."""
    import json
    import os

    from dc_keras import codec

    lib = _sparse_fc_lib()
    _skip_without_tiles(lib)
    plain, _ = _tile_form_model()
    layout, version = packing.split("/")
    encode = codec.encode
    monkeypatch.setattr(codec, "encode", lambda a, **kw: encode(a, **dict(kw, layout=layout)))
    packed = export.pack(plain, version=int(version))
    monkeypatch.undo()
    assert {(codec.info(_weight_bytes(packed))["layout"], codec.info(_weight_bytes(packed))["version"])} == {
        (layout, int(version))}
    path = tmp_path / "m.packed.tflite"
    path.write_bytes(packed)
    assert _fc_routes(runtime.Interpreter(model_path=str(path), weights="compressed")) == [
        ("compressed", (64, 20)), ("dense", f"density 60.0 % > 40 % {TILES_DEFAULT}; decoded")]
    (tmp_path / "shim.c").write_text(_FAIL_ALIGNED_SHIM)
    r = subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "shim.so"), str(tmp_path / "shim.c"), "-ldl"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    xs = np.random.default_rng(12).random((3, 20)).astype(np.float32)
    code = textwrap.dedent(f"""
        import json
        import numpy as np
        from dc_keras import runtime
        out = []
        for kw in ({{}}, {{"max_density": 0.5}}):
            it = runtime.Interpreter(model_path={str(path)!r}, weights="compressed", **kw)
            it.allocate_tensors()
            fc = [r for r in it.compressed_report() if r["op"] == "FULLY_CONNECTED"]
            ys = []
            for x in np.array({xs.tolist()!r}, np.float32):
                it.set_tensor(it.get_input_details()[0]["index"], x[None])
                it.invoke()
                ys.append(it.get_tensor(it.get_output_details()[0]["index"])[0].tolist())
            out.append([sorted(r.get("reason", "compressed %d bytes" % r.get("bytes", 0)) for r in fc), ys])
        print(json.dumps(out))
    """)
    env = dict(os.environ, LD_PRELOAD=str(tmp_path / "shim.so"), DC_TEST_FAIL_ALIGNED_BYTES="4096",
               TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    (defaults, ys), (limit, ys_limit) = json.loads(r.stdout.strip().splitlines()[-1])
    assert defaults == [
        "density 35.0 % > 30 % (default max_density for float32 weights on the row form: out of memory for its "
        "tiles); decoded", f"density 60.0 % > 40 % {TILES_DEFAULT}; decoded"], r.stdout
    assert limit == [f"compressed {_rows_bytes(64, 448)} bytes", "density 60.0 % > max_density 50 %; decoded"], r.stdout
    want = em.run(_plain(plain), xs)
    np.testing.assert_array_equal(np.array(ys, np.float32), want)  # decoded: exact
    _close(np.array(ys_limit, np.float32), want)


@pytest.mark.parametrize("release", [False, True])
def test_layer_over_the_density_limit_runs_on_its_counted_decode_bit_exact(release):
    """An unpruned FC (packed in the dense layout) refused by the default max_density: the decode
    its build made to count the non-zeros becomes the layer's weight (no second decode), so the
    layer runs on the ordinary kernels bit-exact with the unpacked model, also when the decoded
    weight is released after XNNPACK packed it. A pruned (10 %) layer in the sparse layout,
    refused by max_density=0.05 after its direct build, is decoded again and bit-exact too."""
    cases = [(export.to_tflite(_two_fc_model(1.0, 1.0, seed=3), pack=False), {}, 20),
             (_pruned_shared_dense(np.random.RandomState(3), 256, 384, cut=1.65)[0], {"max_density": 0.05}, 256)]
    for plain, kw, width in cases:
        packed = export.pack(plain)
        it = runtime.Interpreter(model_content=packed, weights="compressed", release_decoded=release, **kw)
        rows = [r for r in it.compressed_report()
                if r["op"] == "FULLY_CONNECTED" and "not its weights" not in r["reason"]]
        assert rows and all(r["route"] == "dense" and r["reason"].startswith("density") for r in rows), rows
        xs = np.random.default_rng(4).random((5, width)).astype(np.float32)
        np.testing.assert_array_equal(em.run(it, xs), em.run(_plain(plain), xs))


def test_max_density_given_in_percent_says_python_takes_a_fraction():
    """The delegate option is in percent (max_density=50, docs/android.md), the Python argument a
    fraction: a C developer passing 50 to Python is told the fraction to write."""
    for pct, frac in ((50, "0.5"), (30, "0.3"), (100, "1.0")):
        with pytest.raises(ValueError, match=rf"got {pct}: .*percent.*max_density={frac}"):
            runtime.Interpreter(model_content=b"unused", weights="compressed", max_density=pct)


def test_max_density_takes_numpy_scalars():
    """A density computed with numpy (np.float32(0.3), np.int64(1)) was refused as "must be a fraction
    in (0, 1]": only Python int / float were taken, and float32's 0.3 is 30.0000012 percent. Now
    taken as the same fraction; 0.555 is still refused (not whole percent), as is a bool."""
    packed = export.pack(em.tflite("dense", None))
    want = runtime.Interpreter(model_content=packed, weights="compressed", max_density=0.3).compressed_report()
    for value in (np.float32(0.3), np.float64(0.3)):
        got = runtime.Interpreter(model_content=packed, weights="compressed", max_density=value).compressed_report()
        assert got == want
    assert all(r["route"] == "compressed" for r in runtime.Interpreter(
        model_content=packed, weights="compressed", max_density=np.int64(1)).compressed_report())
    for bad in (np.float32(0.555), True, np.int64(50)):
        with pytest.raises(ValueError, match="max_density must be a fraction"):
            runtime.Interpreter(model_content=packed, weights="compressed", max_density=bad)


def _sparse_fc_lib():
    """The delegate's library (the same copy LiteRT loaded) with the C test switches of
    dc_sparse_fc.h declared."""
    import ctypes

    lib = ctypes.CDLL(runtime.library_path())
    lib.dc_sparse_fc_kernel_name.restype = ctypes.c_char_p
    lib.dc_sparse_fc_use_simd.argtypes = [ctypes.c_int]
    lib.dc_sparse_fc_set_tile_fill.argtypes = [ctypes.c_uint32]
    lib.dc_sparse_fc_set_tile_fill.restype = ctypes.c_uint32
    return lib


def _tile_entries(w):
    """Entries of the tile form of weight w [inputs, units] (dc_sparse_fc.h): per group of 16
    units and block of 32 inputs, 16 x the most non-zeros of one unit in the block."""
    nz = (w.T != 0).astype(np.int64)  # [units, inputs]
    rows, cols = nz.shape
    nz = np.pad(nz, ((0, -rows % 16), (0, -cols % 32)))
    per = nz.reshape(nz.shape[0] // 16, 16, nz.shape[1] // 32, 32).sum(axis=3)  # [g, lane, block]
    return 16 * int(per.max(axis=1).sum())


def _compressed_and_rows(lib, packed):
    """The one-FC-layer model `packed` loaded with every layer compressed as the build makes it, and
    again at a tile fill of 0 (a tile form made is turned back into rows): (interpreter, its
    layer's report row, the rows' interpreter, its report row)."""
    it = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
    (row,) = [r for r in it.compressed_report() if r["route"] == "compressed"]
    fill = lib.dc_sparse_fc_set_tile_fill(0)
    try:
        as_rows = runtime.Interpreter(model_content=packed, weights="compressed", **ALL)
        (r0,) = [r for r in as_rows.compressed_report() if r["route"] == "compressed"]
    finally:
        lib.dc_sparse_fc_set_tile_fill(fill)
    return it, row, as_rows, r0


@pytest.mark.parametrize("n_in,n_out,cut", [(1, 600, 1.1), (1, 300, 2.0), (17, 37, 1.645),
                                            (1031, 40, 1.645), (300, 64, 2.3)])
def test_float_layers_run_on_the_tile_form_and_after_simd_is_turned_off(n_in, n_out, cut):
    """On an AVX-512 CPU a float32 FC layer of <= 32 values runs on the tile form instead of the
    rows when it holds at most DC_SFC_TILE_FILL = 4 entries per non-zero (the report's bytes differ
    from those of the rows, which a tile fill of 0 forces), else on the rows (1 input at ~5 %,
    ~2 % density); batch 1 (float_tiles_b1_avx512), 2..8 (the batched tile kernel), 9 (8 then 1)
    match the dense model, also with the AVX2 or the scalar kernels switched on after the build
    (dc_sparse_fc_use_simd(4): the AVX2 tile kernels; 0: the scalar tile kernel). Elsewhere: the
    rows every time."""
    lib = _sparse_fc_lib()
    avx512 = lib.dc_sparse_fc_kernel_name() == b"avx512"
    rng = np.random.RandomState(n_in)
    plain, packed = _pruned_shared_dense(rng, n_in, n_out, cut=cut)  # cut 1.645: ~10 %, 24 values
    xs = rng.randn(9, n_in).astype(np.float32)
    it, row, as_rows, r0 = _compressed_and_rows(lib, packed)
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(plain)
    w = max((np.frombuffer(fb.buffer_bytes(model, t.buffer), np.float32)
             for t in model.subgraphs[0].tensors if fb.buffer_bytes(model, t.buffer)), key=len)
    w = w.reshape(n_out, n_in).T  # the FC weight is [units, inputs]
    nnz = int((w != 0).sum())
    assert row["nonzeros"] == r0["nonzeros"] == nnz > 0 and len(np.unique(w[w != 0])) <= 32
    tiles = avx512 and _tile_entries(w) <= 4 * nnz
    assert (row["bytes"] != r0["bytes"]) == tiles, (row, r0, _tile_entries(w), nnz)
    ref = _plain(plain)
    for simd in (1, 4, 0):  # 4: the AVX2 tile kernels (on an AVX-512 CPU: forced)
        was = lib.dc_sparse_fc_use_simd(simd)
        try:
            for i in range(3):  # batch 1
                _close(em.run_batch(it, xs[i:i + 1]), em.run_batch(ref, xs[i:i + 1]))
            for n in range(2, 10):
                _close(em.run_batch(it, xs[:n]), em.run_batch(ref, xs[:n]))
            _close(em.run_batch(as_rows, xs), em.run_batch(ref, xs))
        finally:
            lib.dc_sparse_fc_use_simd(was)


@pytest.mark.parametrize("n_in,n_out,cut", [(1, 600, 1.1), (17, 37, 1.645), (1031, 40, 1.645), (300, 64, 2.3),
                                            (64, 48, 0.5)])
def test_int8_layers_run_on_the_tile_form_bit_exact(n_in, n_out, cut):
    """On an AVX-512 or AVX2 CPU an int8 FC layer (full-integer model) runs on the tile form, any values
    (the entry holds the weight), when its tiles hold at most 4 entries per non-zero and take no
    more bytes than the larger of the dense int8 weight and the rows (the report's bytes differ
    from those of the rows, which a tile fill of 0 forces), else on the rows (1 input at ~13 %);
    ~10 %, ~2 % and ~60 % layers. Outputs equal the unpacked model's (XNNPACK's int8 kernels) byte
    for byte at batch 1 (int8_tiles_b1_*), 2..8 (the batched tile kernel), 9 (8 then 1), also
    with the AVX2 or the scalar kernels switched on after the build (dc_sparse_fc_use_simd(4), 0:
    the AVX2 and the scalar tile kernels), and on the rows.
    Elsewhere: the rows both times."""
    lib = _sparse_fc_lib()
    avx512 = lib.dc_sparse_fc_kernel_name() in (b"avx512", b"avx2")  # the int8 tile kernels
    rng = np.random.RandomState(n_in)
    plain, packed, xs = _int8_dense_model(n_in, n_out, cut, rng)
    it, row, as_rows, r0 = _compressed_and_rows(lib, packed)
    assert row["dtype"] == "int8", row
    from dc_keras import _flatbuffer as fb

    model = fb.read_model(plain)
    (t,) = [t for t in model.subgraphs[0].tensors if t.type == 9 and len(t.shape) == 2 and fb.buffer_bytes(model, t.buffer)]
    q = np.frombuffer(fb.buffer_bytes(model, t.buffer), np.int8).reshape(n_out, n_in).T  # int8 [inputs, units]
    nnz, entries = int((q != 0).sum()), _tile_entries(q)
    assert row["nonzeros"] == r0["nonzeros"] == nnz > 0
    tiles = avx512 and entries <= 4 * nnz and 2 * entries <= max(q.size, 3 * nnz)
    assert (row["bytes"] != r0["bytes"]) == tiles, (row, r0, entries, nnz)
    assert tiles or n_in == 1 or not avx512, (entries, nnz)  # the cases but the first fit
    ref = _plain(plain)
    for simd in (1, 4, 0):  # 4: the AVX2 tile kernels (on an AVX-512 CPU: forced)
        was = lib.dc_sparse_fc_use_simd(simd)
        try:
            for i in range(3):  # batch 1
                np.testing.assert_array_equal(em.run_batch(it, xs[i:i + 1]), em.run_batch(ref, xs[i:i + 1]))
            for n in range(2, 10):
                np.testing.assert_array_equal(em.run_batch(it, xs[:n]), em.run_batch(ref, xs[:n]))
            np.testing.assert_array_equal(em.run_batch(as_rows, xs), em.run_batch(ref, xs))
        finally:
            lib.dc_sparse_fc_use_simd(was)


def _int8_dense_model(n_in, n_out, cut, rng):
    """A full-integer one-Dense-layer model (the converter's) whose float weight has |w| < cut
    zeroed: (plain, packed, 9 batch rows of inputs, quantized as the converter says when its input
    is int8)."""
    import keras

    w = rng.randn(n_in, n_out).astype(np.float32)
    w[np.abs(w) < cut] = 0
    m = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out)])
    m.layers[0].set_weights([w, np.linspace(-1, 1, n_out).astype(np.float32)])
    xs = rng.randn(9, n_in).astype(np.float32)
    plain = export.to_tflite(m, pack=False, quantize="int8", representative_data=xs)
    d = _plain(plain).get_input_details()[0]
    if d["dtype"] == np.int8:
        scale, zp = d["quantization"]
        xs = np.clip(np.round(xs / scale) + zp, -128, 127).astype(np.int8)
    return plain, export.pack(plain), xs


def _with_simd(lib, on, fn):
    was = lib.dc_sparse_fc_use_simd(on)
    try:
        return fn()
    finally:
        lib.dc_sparse_fc_use_simd(was)


def test_avx2_kernels_through_the_runtime():
    """dc_sparse_fc_use_simd(4): the AVX2 kernels, what x86-64 CPUs without AVX-512 run (forced on
    an AVX-512 CPU), named "avx2". Loaded with them, an int8 FC layer takes the tile form (the
    report's bytes: those of the AVX-512 build) and its outputs are XNNPACK's bytes at batch 1..9,
    and at ~20 % it runs compressed by default (int8: 25 %); a float32 layer keeps the rows (the
    bytes of a scalar build), and at ~10 % it stays decoded by default (float32 with the AVX2
    kernels: 5 %, the report naming that default). A float32 tile form built with
    the AVX-512 kernels runs on the AVX2 float tile kernels with the AVX-512 kernels' bits at
    batch 1..9 (dc_sfc_tiles.h: the same FMAs in the same order). Skipped without AVX2."""
    lib = _sparse_fc_lib()
    native = lib.dc_sparse_fc_kernel_name()
    if _with_simd(lib, 4, lib.dc_sparse_fc_kernel_name) != b"avx2":
        pytest.skip("no AVX2 + FMA on this CPU")
    rng = np.random.RandomState(5)

    def load(packed, on):
        it = _with_simd(lib, on, lambda: runtime.Interpreter(model_content=packed, weights="compressed", **ALL))
        (row,) = [r for r in it.compressed_report() if r["route"] == "compressed"]
        return it, row

    def run(it, on, xs):
        return _with_simd(lib, on, lambda: em.run_batch(it, xs))

    plain, packed, xs = _int8_dense_model(300, 64, 1.3, rng)  # ~20 %: the tiles fit
    ref = _plain(plain)
    it4, row4 = load(packed, 4)
    _, row0 = load(packed, 0)
    assert row4["bytes"] != row0["bytes"], (row4, row0)  # tiles, not the rows
    if native == b"avx512":
        assert row4["bytes"] == load(packed, 1)[1]["bytes"]
    for n in range(1, 10):
        np.testing.assert_array_equal(run(it4, 4, xs[:n]), em.run_batch(ref, xs[:n]))

    default = _with_simd(lib, 4, lambda: runtime.Interpreter(model_content=packed, weights="compressed"))
    (row,) = [r for r in default.compressed_report() if "not its weights" not in r.get("reason", "")]
    assert row["route"] == "compressed", row  # ~20 %: int8's default max_density is 25 % with them too

    plain, packed = _pruned_shared_dense(rng, 300, 64, cut=1.645)  # ~10 %, <= 32 values
    ref = _plain(plain)
    xf = rng.randn(9, 300).astype(np.float32)
    it4, row4 = load(packed, 4)
    _, row0 = load(packed, 0)
    assert row4["bytes"] == row0["bytes"], (row4, row0)  # the rows
    default = _with_simd(lib, 4, lambda: runtime.Interpreter(model_content=packed, weights="compressed"))
    (row,) = [r for r in default.compressed_report() if "not its weights" not in r.get("reason", "")]
    assert row["route"] == "dense" and "> 5 % (default max_density for float32 weights on the row form with " \
        "the AVX2 kernels); decoded" in row["reason"], row  # ~10 %: above their float32 default
    for n in (1, 3, 9):
        _close(run(it4, 4, xf[:n]), em.run_batch(ref, xf[:n]))
    if native != b"avx512":
        return
    it1, row1 = load(packed, 1)
    assert row1["bytes"] != row0["bytes"], (row1, row0)  # the tile form
    for n in range(1, 10):
        got = run(it1, 4, xf[:n])
        np.testing.assert_array_equal(got, run(it1, 1, xf[:n]))
        _close(got, em.run_batch(ref, xf[:n]))


def _sparse_fc_api():
    """_sparse_fc_lib with the build API of dc_sparse_fc.h declared: dc_sparse_fc_form / _check /
    _build / dc_sparse_table_build / _bytes / _free, and the form struct (dc_sparse_fc, as the
    public header lays it out). Returns (lib, struct class)."""
    import ctypes as C

    class SparseFc(C.Structure):
        _fields_ = [("rows", C.c_uint32), ("cols", C.c_uint32), ("dtype", C.c_uint32),
                    ("num_values", C.c_uint32), ("nnz", C.c_uint64), ("row_ptr", C.c_void_p),
                    ("col", C.c_void_p), ("code", C.c_void_p), ("row_sum", C.c_void_p),
                    ("from_dense", C.c_uint32), ("table", C.c_uint32), ("fill", C.c_int32),
                    ("codebook", C.c_float * 256), ("packed_file", C.c_int32),
                    ("tile_groups", C.c_uint32), ("tile_ptr", C.c_void_p), ("tile_block", C.c_void_p),
                    ("tile_steps", C.c_void_p), ("tile_e", C.c_void_p), ("tile_entries", C.c_uint64),
                    ("value", C.c_void_p)]

    lib = _sparse_fc_lib()
    lib.dc_sparse_fc_form.argtypes = [C.c_char_p, C.c_size_t]
    lib.dc_sparse_fc_check.argtypes = [C.c_char_p, C.c_size_t, C.c_int, C.c_char_p, C.c_size_t]
    for f in (lib.dc_sparse_fc_build, lib.dc_sparse_table_build):
        f.argtypes = [C.c_char_p, C.c_size_t, C.POINTER(SparseFc), C.POINTER(C.c_int), C.c_char_p, C.c_size_t]
    lib.dc_sparse_fc_bytes.argtypes = [C.POINTER(SparseFc)]
    lib.dc_sparse_fc_bytes.restype = C.c_size_t
    lib.dc_sparse_fc_free.argtypes = [C.POINTER(SparseFc)]
    return lib, SparseFc


FORM_NONE, FORM_ROWS, FORM_TILES = 0, 1, 2  # dc_sfc_form
SFC_OK, SFC_UNSUPPORTED = 0, 1  # dc_sfc_status


def _packed_with_unused_values(w, unused, layout, version, coded=False):
    """Float32 w packed in the dense or sparse layout (§5, §6) of `version` with `unused` more
    distinct non-zero values in its codebook that no element uses, after its own, as an encoder
    other than dc_keras's may write them: without a code (length 0, FORMAT.md §4), or with one
    (`coded`, dense layout only: the code built as if each were used once); decodes to w."""
    from dc_keras.codec import _layouts as lay

    assert not coded or layout == "dense", layout  # §6's index code counts the entries themselves
    a, code, bits, version = lay._to_array(w, version)
    uniq, idx, counts = lay._plain_codebook(bits, 4)
    pool = 0x40000000 + 104729 * np.arange(1, 4 * unused + 1, dtype=np.uint32)
    extra = np.setdiff1d(pool, uniq)[:unused].astype(uniq.dtype)
    plan = lay._Plain(np.concatenate([uniq, extra]), idx,
                      np.concatenate([counts, np.full(unused, int(coded), counts.dtype)]), 4, 12, layout == "sparse",
                      False)
    return lay._assemble(a, code, version, plan.layout, *plan.parts())


def _coded_values(info):
    """Distinct kept (FC: all but +-0) float32 values of the coded entries of a packed header's
    codebook(s) (codec.info): those with a code in its index code(s) (FORMAT.md §4: a length > 0,
    or a zero-bit code's only symbol; §14: in any of its codes) and a sparse layout's background
    -- the count dc_sparse_fc_form compares with 32."""
    codes = info.get("index_codes") or [info["index_code"]]
    coded = np.zeros(info["codebook_size"], bool)
    for c in codes:
        if c["max_length"] == 0:
            coded[c["single_symbol"]] = True
        else:
            coded |= np.asarray(c["lengths"]) > 0
    if "background_index" in info:
        coded[info["background_index"]] = True
    cb = np.asarray(info["codebook"]).reshape(-1, info["codebook_size"])[:, coded].reshape(-1).view(np.uint32)
    return len(np.unique(cb[cb << 1 != 0]))


def _form_tensors():
    """(name, weight, layout, version, packed) for test_form_from_header_agrees_with_the_build: 2-D
    float32 weights of 0, 1, 31, 32, 33, 255 and 256 distinct non-zero values (each used, so the
    encoder's codebook holds exactly them; packed None: codec.encode), +0.0 and -0.0 around them,
    at 5 %, 40 % and 100 % density, over shapes around the tile geometry (16 rows, 32 columns; 3
    and 4 rows) and the column limit (65536, 65537), in every layout (version 1: dense / sparse);
    int8 the same way (up to 255 values); 15 values used and 10 or 20 more unused in the codebook
    (_packed_with_unused_values: 25 or 35 in all), without a code (dense and sparse, versions 1 and
    2) or with one (dense); then what no form holds: float16, int16, rank 1 and 3."""
    rng = np.random.default_rng(16)
    layouts = {np.float32: ["dense", "sparse", "grouped_dense", "grouped_sparse", "float_planes", "context_sparse"],
               np.int8: ["dense", "sparse", "grouped_dense", "grouped_sparse", "context_sparse"]}
    out = []
    shapes = [(1, 1), (2, 1), (1, 33), (3, 11), (4, 8), (15, 32), (16, 32), (17, 33), (40, 70), (4, 65536),
              (1, 65537)]
    for shape in shapes:
        n = shape[0] * shape[1]
        for dtype in (np.float32, np.int8):
            if dtype is np.float32:
                pool = (0x3F800000 + 7919 * np.arange(256, dtype=np.uint32)).view(np.float32)
                pool = np.where(np.arange(256) % 2, -pool, pool)  # distinct, non-zero, both signs
            else:
                pool = np.arange(-128, 128)[np.arange(-128, 128) != 0].astype(np.int8)
            for nv in (0, 1, 31, 32, 33, 255, 256):
                if nv > min(n, len(pool)) or (n > 2000 and nv not in (32, 33)):
                    continue
                for density in (0.05, 0.4, 1.0):
                    k = min(n, max(nv, round(density * n)))
                    if nv == 0 and density != 0.05:  # an all-zero weight: once
                        continue
                    w = np.zeros(n, dtype)
                    at = rng.permutation(n)[:k]
                    if nv:
                        w[at] = np.concatenate([pool[:nv], rng.choice(pool[:nv], k - nv)])
                    if dtype is np.float32 and nv in (32, 33) and k < n:
                        w[rng.permutation(np.setdiff1d(np.arange(n), at))[:1]] = -0.0  # not kept by FC
                    w = w.reshape(shape)
                    lays = layouts[dtype] if n <= 2000 or density == 0.05 else ["sparse", "grouped_dense"]
                    if len(np.unique(w)) < 2:  # a constant: the grouped and §14 layouts cannot hold it
                        lays = [x for x in lays if not x.startswith(("grouped", "context"))]
                    for layout in lays + ["dense/1", "sparse/1"]:
                        lay, _, v = layout.partition("/")
                        out.append((f"{dtype.__name__} {shape} {nv} values {density:.0%} {layout}", w, lay,
                                    int(v or 2), None))
    for shape in [(4, 8), (16, 32), (40, 70)]:
        for density in (0.4, 1.0):
            n = shape[0] * shape[1]
            w = np.zeros(n, np.float32)
            w[rng.permutation(n)[:round(density * n)]] = rng.choice(np.arange(1, 16, dtype=np.float32) / 8, round(density * n))
            w = w.reshape(shape)
            for unused, layout, version in itertools.product((10, 20), ("dense", "sparse"), (1, 2)):
                out.append((f"float32 {shape} 15 values + {unused} unused {density:.0%} {layout}/{version}", w, layout,
                            version, _packed_with_unused_values(w, unused, layout, version)))
                if layout == "dense":
                    out.append((f"float32 {shape} 15 values + {unused} unused coded {density:.0%} dense/{version}", w,
                                layout, version, _packed_with_unused_values(w, unused, layout, version, coded=True)))
    # int8 at 25 % whose tiles fit their 4 entries per non-zero but would take 2x the dense weight (4 of
    # every 16 rows dense: each group's tiles as long as a full row): the rows (review of 2026-12-04)
    skew = np.zeros((64, 1024), np.int8)
    skew[np.arange(64) % 16 < 4] = rng.choice(np.arange(1, 100, dtype=np.int8), (16, 1024))
    for layout, version in (("sparse", 2), ("dense", 2), ("sparse", 1)):
        out.append((f"int8 (64, 1024) 25 % skewed {layout}/{version}", skew, layout, version, None))
    for name, w in (("float16", np.ones((4, 8), np.float16)), ("int16", np.ones((4, 8), np.int16)),
                    ("rank 1", np.ones(32, np.float32)), ("rank 3", np.ones((2, 4, 4), np.float32))):
        out.append((name, w, "dense", 2, None))
    return out


def test_form_from_header_agrees_with_the_build():
    """dc_sparse_fc_form (the form said from the header: the TFLite delegate's default max_density
    depends on it) against dc_sparse_fc_build over _form_tensors (~1,100 packed weights): NONE
    exactly where dc_sparse_fc_check refuses, and then the build refuses too (> 255 values, not
    2-D float32 / int8, > 65536 columns); TILES for float32 whose codebook holds <= 32 kept values
    with a code (_coded_values: -0.0 not counted; values the tensor does not use but that have a
    code counted too, those without one not) and for int8 (any values: a tile entry holds the
    weight itself), both with >= 4 rows, float32 on an AVX-512 CPU, int8 on one with the AVX-512
    or the AVX2 kernels; ROWS otherwise. The
    build makes the tile form exactly where TILES was said and its tiles hold at most 4 entries per
    non-zero and, for int8, take no more bytes than the larger of the dense weight and the rows (a
    skewed int8 layer whose tiles would take 2x the dense weight gets the rows) and at most 4 entries per
    non-zero (_tile_entries), the rows elsewhere, on every route (a codebook of 35 values of which
    15 are used: the tiles when the other 20 have no code, through the dense copy and straight from
    §6's entries -- the rows before; the rows when they have one; of 25: the tiles), with the count
    of the weight's non-zeros. Said
    TILES but built as rows: tile_entries keeps the count of the tiles (they did not fit), and
    dc_sparse_fc_build_max refusing the layer as too dense keeps it too (0 where they fit). Layers
    of 1..3 rows (output units) are said and built as rows: their tiles never fit. Float planes
    (§12: no codebook) are said ROWS and built as rows, or, with > 255 values (only the decode shows
    it), as the value form (a float32 weight per non-zero, 6 bytes; a lookup table of them is
    refused). With the scalar kernels (dc_sparse_fc_use_simd(0)) nothing is said or
    built on tiles; a lookup table (dc_sparse_table_build) never holds tiles. The struct read here
    is checked against dc_sparse_fc_bytes."""
    import ctypes as C

    from dc_keras import codec

    lib, SparseFc = _sparse_fc_api()
    lib.dc_sparse_fc_build_max.argtypes = [C.c_char_p, C.c_size_t, C.c_uint64, C.POINTER(SparseFc), C.c_void_p,
                                           C.POINTER(C.c_int), C.c_char_p, C.c_size_t]
    kernel = lib.dc_sparse_fc_kernel_name()
    avx, vec = kernel == b"avx512", kernel in (b"avx512", b"avx2")  # float32 tiles; int8 tiles
    seen = set()
    for name, w, layout, version, packed in _form_tensors():
        p = codec.encode(w, layout=layout, version=version) if packed is None else packed
        info = codec.info(p)
        assert info["layout"] == layout, (name, info["layout"])
        two_d = w.ndim == 2 and w.dtype in (np.float32, np.int8) and 0 < w.shape[1] <= 65536
        nz = w.view(np.uint32) << 1 != 0 if w.dtype == np.float32 else w != 0  # FC keeps all but +-0
        kept = len(np.unique(w.view(np.uint32)[nz])) if w.dtype == np.float32 else 0
        said = kept  # kept values of the coded entries of the codebook(s)
        if w.dtype == np.float32 and layout != "float_planes":
            said = _coded_values(info)
            assert said == kept or packed is not None, name  # the encoder's codebook holds the values used
        form = lib.dc_sparse_fc_form(p, len(p))
        why, bwhy = C.create_string_buffer(256), C.create_string_buffer(256)
        check = lib.dc_sparse_fc_check(p, len(p), 0, why, 256)
        m, ds = SparseFc(), C.c_int(0)
        st = lib.dc_sparse_fc_build(p, len(p), C.byref(m), C.byref(ds), bwhy, 256)
        assert (form == FORM_NONE) == (check != SFC_OK), (name, form, check)
        if not two_d or (w.dtype == np.float32 and layout != "float_planes" and said > 255):
            assert form == FORM_NONE and check == st == SFC_UNSUPPORTED and why.value == bwhy.value, name
            seen.add("none")
            continue
        said_tiles = w.shape[0] >= 4 and ((vec and w.dtype == np.int8)
                                          or (avx and layout != "float_planes" and said <= 32))
        assert form == (FORM_TILES if said_tiles else FORM_ROWS), (name, form)
        if layout == "float_planes" and kept > 255:  # §12: the count is known only from the decode
            # the value form (a float32 weight per non-zero: no codebook, no tiles), through the dense copy
            assert st == SFC_OK and m.value and not m.code and not m.tile_e, (name, st, bwhy.value)
            nnz = int(nz.sum())
            assert (m.nnz, m.num_values, m.from_dense) == (nnz, 0, 1), name
            assert lib.dc_sparse_fc_bytes(C.byref(m)) == C.sizeof(SparseFc) + 4 * (w.shape[0] + 1) + 6 * nnz, name
            lib.dc_sparse_fc_free(C.byref(m))
            tst = lib.dc_sparse_table_build(p, len(p), C.byref(m), C.byref(ds), bwhy, 256)  # a table: values too
            assert tst == SFC_OK and m.value and not m.code and m.table == 1, (name, tst, bwhy.value)
            assert m.nnz == int((w.view(np.uint32) != 0).sum()), name  # -0.0 kept: a lookup copies bits
            lib.dc_sparse_fc_free(C.byref(m))
            seen.add("planes > 255")
            continue
        assert st == SFC_OK, (name, st, ds.value, bwhy.value)
        nnz = int(nz.sum())
        assert (m.rows, m.cols, m.nnz) == (w.shape[0], w.shape[1], nnz), name
        # the values coded: those of the codebook (straight from §6's entries) or those used (dense copy)
        assert m.num_values in ((kept, said) if w.dtype == np.float32 else (0,)), (name, m.num_values, kept)
        entries = _tile_entries(w.T)
        # kept while <= 4 entries per non-zero; int8 also while its 2 bytes per entry are no more than
        # the larger of the dense weight (1 per weight) and the rows (3 per non-zero)
        tiles = said_tiles and entries <= 4 * nnz and (w.dtype != np.int8 or 2 * entries <= max(w.size, 3 * nnz))
        assert bool(m.tile_e) == tiles and bool(m.row_ptr) != tiles, (name, bool(m.tile_e), entries, nnz)
        assert m.tile_entries == (entries if said_tiles else 0), (name, m.tile_entries, entries)
        if m.row_ptr:  # the struct read as the header lays it out: its bytes as the library counts
            assert lib.dc_sparse_fc_bytes(C.byref(m)) == (C.sizeof(SparseFc) + 4 * (w.shape[0] + 1) + 3 * nnz
                                                         + (4 * w.shape[0] if m.row_sum else 0)), name
        lib.dc_sparse_fc_free(C.byref(m))
        if nnz:  # refused as too dense: the count of the tiles kept where they would not have fit
            assert lib.dc_sparse_fc_build_max(p, len(p), nnz - 1, C.byref(m), None, C.byref(ds), bwhy, 256) == 5
            assert (m.nnz, m.tile_entries) == (nnz, entries if said_tiles and not tiles else 0), name
        seen.add((form, bool(tiles), layout == "float_planes"))
        if w.dtype == np.int8:
            seen.add(("int8", form, bool(tiles)))
            if said_tiles and entries <= 4 * nnz and not tiles:
                seen.add("int8 tiles over the dense weight's bytes")
        if packed is not None:
            seen.add(("unused", form, bool(tiles)))
        was = lib.dc_sparse_fc_use_simd(0)
        try:
            assert lib.dc_sparse_fc_form(p, len(p)) == FORM_ROWS, name
            assert lib.dc_sparse_fc_build(p, len(p), C.byref(m), C.byref(ds), bwhy, 256) == SFC_OK, name
            assert not m.tile_e and m.row_ptr and m.nnz == nnz, name
            lib.dc_sparse_fc_free(C.byref(m))
        finally:
            lib.dc_sparse_fc_use_simd(was)
        tcheck = lib.dc_sparse_fc_check(p, len(p), 1, why, 256)
        tst = lib.dc_sparse_table_build(p, len(p), C.byref(m), C.byref(ds), bwhy, 256)
        assert tcheck != SFC_UNSUPPORTED or tst == SFC_UNSUPPORTED, name
        if tst == SFC_OK:
            assert not m.tile_e and m.row_ptr and m.table == 1, name
            lib.dc_sparse_fc_free(C.byref(m))
    want = {"none", "planes > 255", (FORM_ROWS, False, False), (FORM_ROWS, False, True), ("unused", FORM_ROWS, False)}
    want.add(("int8", FORM_ROWS, False))  # 1..3 rows; every int8 layer without AVX-512
    if avx:
        want.add("int8 tiles over the dense weight's bytes")
    if avx:  # tiles said and built, said and not fitting; 25 or 35 codebook values of which 15 are coded: tiles
        want |= {(FORM_TILES, True, False), (FORM_TILES, False, False), ("unused", FORM_TILES, True),
                 ("int8", FORM_TILES, True), ("int8", FORM_TILES, False)}
    assert want <= seen, want - seen
