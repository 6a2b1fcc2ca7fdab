"""A fresh review of the runtime user journey (dc_keras.runtime with a packed .tflite, as docs/runtime.md
tells it): each test is a bug a user would hit, fixed; each fails on the code before its fix."""
import functools
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime


@functools.lru_cache(maxsize=None)
def _packed_lstm():
    """A packed LSTM classifier as ``to_tflite`` exports it: a fixed batch of 1 (TFLite converts
    recurrent layers only with a static batch), so the file stores no ``shape_signature``."""
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(16), keras.layers.Dense(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fixed batch of 1, said by to_tflite
        return export.to_tflite(em.cluster_and_prune(model), min_bytes=64)


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_resizing_the_batch_of_a_fixed_batch_model_says_it_takes_no_other_batch(backend):
    """resize_tensor_input(i, [4, 6, 3]) on a recurrent model exported with its fixed batch of 1, then
    allocate_tensors(), failed with XNNPACK's words only ("XNNPack delegate failed to reshape runtime
    Node number 6 (TfLiteXNNPackDelegate) failed to prepare."): the check that names the input and the
    shape the model takes read the shape signature TFLite reports, which, for a file that stores none
    (fixed shapes throughout), is the resized shape itself, so nothing differed. It now reads the
    file's own, and says the batch is fixed and what to do."""
    packed = _packed_lstm()
    assert b"HuffDecode" in packed
    it = runtime.Interpreter(model_content=packed, backend=backend)
    index = it.get_input_details()[0]["index"]
    assert [int(v) for v in it.get_input_details()[0]["shape_signature"]] == [1, 6, 3]
    it.resize_tensor_input(index, [4, 6, 3])
    with pytest.raises(RuntimeError, match=r"model_content: input '.*' was resized to \[4, 6, 3\], but the model "
                                           r"takes \[1, 6, 3\] .*a fixed shape, with no -1 .*resize it back to "
                                           r"\[1, 6, 3\] and feed 1 sample\(s\) at a time.*batch_size=N\) "
                                           r"\(allocate_tensors failed: "):
        it.allocate_tensors()
    # the fix it names works: back to the model's shape, the packed model runs as the unpacked one
    it.resize_tensor_input(index, [1, 6, 3])
    x = np.random.RandomState(0).randn(3, 6, 3).astype(np.float32)
    plain = export.unpack(packed)
    np.testing.assert_array_equal(em.run(it, x), em.run(em.reference_interpreter(backend, plain), x))


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_a_batch_mismatch_after_resizing_a_fixed_batch_model_names_the_exported_batch_and_the_resize(backend):
    """A model exported with a fixed batch of 2 (to_tflite(batch_size=2)) resized to 4 (it allocates:
    dense layers take any batch), then fed 3 samples: set_tensor said "the model was exported with a
    fixed batch of 4 ... so feed 4 sample(s) at a time, or export it with to_tflite(model, batch_size=N)",
    false on both counts (TFLite reports the resized shape as the shape signature of a file storing
    none). It now names the exported batch and the resize that works, which runs as the plain model."""
    plain = export.to_tflite(em.keras_model("dense"), pack=False, batch_size=2)
    it = runtime.Interpreter(model_content=export.pack(plain), backend=backend)
    index = it.get_input_details()[0]["index"]
    it.allocate_tensors()
    x = em.inputs("dense", 3)
    with pytest.raises(ValueError, match=r"holds a batch of 2, the array a batch of 3: the model was exported with "
                                         r"a fixed batch of 2 "):
        it.set_tensor(index, x)
    it.resize_tensor_input(index, [4, 20])
    it.allocate_tensors()
    with pytest.raises(ValueError, match=rf"holds a batch of 4, the array a batch of 3: it was resized to that batch "
                                         rf"\(the model was exported with a fixed batch of 2\), so call "
                                         rf"resize_tensor_input\({index}, \[3, 20\]\) and allocate_tensors\(\)"):
        it.set_tensor(index, x)
    np.testing.assert_array_equal(em.run_batch(it, x), em.run_batch(em.reference_interpreter(backend, plain), x))


def _deferred_prepare_packed():
    """A packed model whose HuffDecode Prepares TFLite defers to invoke(): its weights are read after a
    SHAPE -> RESHAPE by the run-time batch (as tests/test_runtime.py's _dynamic_shape_packed)."""
    import keras

    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 16))
    x = keras.layers.Dense(32, name="a")(inputs)
    x = keras.layers.Lambda(lambda t: keras.ops.reshape(t, (keras.ops.shape(t)[0], -1)), output_shape=(256,))(x)
    model = keras.Model(inputs, keras.layers.Dense(64, name="h")(x))
    for v in model.weights:
        v.assign(np.round(keras.ops.convert_to_numpy(v) * 8) / 8)
    return export.pack(export.to_tflite(model, pack=False))


@pytest.mark.parametrize("field, offset, value, words", [
    ("magic", 0, 0x00, "bad magic"), ("version", 4, 99, "version 99"), ("dtype", 5, 33, "unknown element type"),
    ("layout", 7, 77, "unknown layout")])
def test_decode_op_refuses_a_damaged_packed_header_at_load_when_prepare_is_deferred(field, offset, value, words):
    """decode='op' checks the packed tensors at construction because TFLite may defer HuffDecode's
    Prepare to the first invoke(); a damaged header (magic, version, dtype, layout: the bytes the CRC
    check cannot get to, since the walk that lists the tensors refuses them first) was left to that
    Prepare, so Interpreter() and allocate_tensors() succeeded and only invoke() failed, against the
    module's word (a corrupt packed buffer fails by allocate_tensors). It now fails at load, in the
    words of the default delegate route (the same library's), which did so already."""
    packed = _deferred_prepare_packed()
    x = np.zeros((1, 8, 16), np.float32)
    assert em.run_batch(runtime.Interpreter(model_content=packed, backend="tensorflow", decode="op"), x).shape == (1, 64)
    start = packed.index(b"DCHF")
    bad = bytearray(packed)
    bad[start + offset] = value
    bad = bytes(bad)
    with pytest.raises(RuntimeError) as delegate:
        runtime.Interpreter(model_content=bad, backend="tensorflow").allocate_tensors()
    assert str(delegate.value).startswith("model_content: HuffDecode(") and words in str(delegate.value)
    with pytest.raises(RuntimeError) as op:
        runtime.Interpreter(model_content=bad, backend="tensorflow", decode="op").allocate_tensors()
    assert str(op.value) == str(delegate.value)


_NEVER = 120  # seconds: a call that waits this long for a FIFO's writer is the bug


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_a_fifo_pipe_or_device_as_model_path_is_one_clear_error_not_a_wait(tmp_path):
    """Interpreter(model_path=FIFO) with nothing writing to it waited forever (its header check opened
    the FIFO, and such an open waits for a writer; LiteRT's own Interpreter waits too), and a pipe
    (process substitution, /dev/fd/N) holding a model ended in a bare "OSError: [Errno 22] Invalid
    argument" (LiteRT cannot map it; the diagnosis then tried to). Now one ValueError naming the path and
    the fix (model_content), before anything is opened. compiled_model, which reads the file, reads a
    pipe as `dc-keras inspect` does (the model runs) and refuses a FIFO nothing writes to, also without
    waiting. Run in a subprocess: the old code never returns."""
    fifo = tmp_path / "model fifo.tflite"
    os.mkfifo(fifo)
    packed = export.pack(em.tflite("dense", None))
    assert len(packed) < 16 << 10  # fits in a pipe's buffer: the write below does not block
    code = textwrap.dedent("""
        import os, sys
        from dc_keras import runtime
        rd, w = os.pipe()
        os.write(w, open(sys.argv[2], "rb").read())
        os.close(w)
        for path in (sys.argv[1], f"/dev/fd/{rd}", "/dev/zero"):
            try:
                runtime.Interpreter(model_path=path)
                print("loaded")
            except ValueError as e:
                print(type(e).__name__, e)
        cm = runtime.compiled_model(f"/dev/fd/{rd}")
        cm.run_by_index(0, cm.create_input_buffers(0), cm.create_output_buffers(0))
        print("compiled ok")
        try:
            runtime.compiled_model(sys.argv[1])
        except OSError as e:
            print("OSError", e.strerror)
    """)
    (tmp_path / "m.packed.tflite").write_bytes(packed)
    try:
        r = subprocess.run([sys.executable, "-c", code, str(fifo), str(tmp_path / "m.packed.tflite")],
                           capture_output=True, text=True, timeout=_NEVER, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("Interpreter(model_path=FIFO) or compiled_model(FIFO) waited for a writer")
    lines = [line for line in r.stdout.splitlines() if line.startswith(("ValueError", "loaded", "compiled", "OSError"))]
    assert lines and lines[0] == (f"ValueError {fifo} is a FIFO, not a regular file: model_path takes a .tflite file (LiteRT maps "
                        "it into memory); to load a model from a pipe, read it and pass its bytes, e.g. "
                        "Interpreter(model_content=open(path, 'rb').read())"), r.stdout + r.stderr[-3000:]
    assert re.fullmatch(r"ValueError /dev/fd/\d+ is a FIFO, not a regular file: .*", lines[1]), lines
    assert lines[2] == ("ValueError /dev/zero is a character device, not a regular file: model_path takes a .tflite "
                        "file (LiteRT maps it into memory)"), lines
    assert lines[3] == "compiled ok", lines
    assert lines[4].startswith("OSError a FIFO (named pipe) that no process is writing to"), lines
    assert len(lines) == 5, lines


def test_a_signature_runner_made_after_a_failed_call_still_names_the_fixed_batch():
    """`it.get_signature_runner()(x=batch_of_4)` on a fixed-batch (1) recurrent model said which input
    and the shape the model takes; the same line run again (a new runner, as code calling
    get_signature_runner() per call makes) gave XNNPACK's bare "failed to reshape runtime": the new
    runner read the shape the first call had resized the input to as the signature's (the file stores
    no shape_signature). On an error the runner now reads the file's shapes."""
    packed = _packed_lstm()
    it = runtime.Interpreter(model_content=packed)
    (name,) = it.get_signature_runner().get_input_details()
    x = np.random.RandomState(1).randn(4, 6, 3).astype(np.float32)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=rf"model_content: input '{name}' was given an array of shape \[4, 6, 3\], "
                                               r"but the model takes \[1, 6, 3\] "):
            it.get_signature_runner()(**{name: x})
    got = np.concatenate([it.get_signature_runner()(**{name: x[i:i + 1]})["output_0"] for i in range(4)])
    want = em.run(em.reference_interpreter("litert", export.unpack(packed)), x)
    np.testing.assert_array_equal(got, want)


def test_compressed_fc_skips_pruned_zeros_so_a_nan_input_reaches_only_their_nonzero_outputs():
    """What docs/runtime.md and android.md now say (they said only "summation order"): the compressed
    FULLY_CONNECTED skips the pruned zeros instead of multiplying them, so a NaN or infinite input
    reaches only the outputs whose weight for it is non-zero, while the dense kernels (the decoded
    route, the unpacked model) make 0 x NaN = NaN and 0 x Inf = NaN in every other output too. The
    other outputs are those of the input with that value zeroed, bit for bit."""
    import keras

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs"
    for page in ("runtime.md", "android.md"):  # where a user reads what the compressed route computes
        assert "reaches only the outputs whose weight for it is non-zero" in " ".join((docs / page).read_text().split())

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, use_bias=False)])
    em.cluster_and_prune(model, prune=0.6)
    w = model.layers[0].get_weights()[0]  # (64, 32): input i feeds output j through w[i, j]
    plain = export.to_tflite(model, pack=False)
    packed = export.pack(plain, min_bytes=64)
    col = int(np.argmax((w == 0).sum(axis=1) * (w != 0).any(axis=1)))  # an input with zero and non-zero weights
    nonzero = w[col] != 0
    assert 0 < nonzero.sum() < 32
    x = np.random.RandomState(2).randn(2, 64).astype(np.float32)
    bad = x.copy()
    bad[0, col], bad[1, col] = np.nan, np.inf
    zeroed = x.copy()
    zeroed[:, col] = 0
    dense = em.run_batch(em.reference_interpreter("litert", plain), bad)
    np.testing.assert_array_equal(em.run_batch(runtime.Interpreter(model_content=packed), bad), dense)
    assert np.isnan(dense[0]).all() and np.isnan(dense[1][~nonzero]).all()
    it = runtime.Interpreter(model_content=packed, weights="compressed", max_density=1.0)
    assert [r["route"] for r in it.compressed_report()] == ["compressed"]
    got, clean = em.run_batch(it, bad), em.run_batch(it, zeroed)
    assert np.array_equal(np.isnan(got[0]), nonzero) and np.array_equal(np.isinf(got[1]), nonzero)
    np.testing.assert_array_equal(got[:, ~nonzero], clean[:, ~nonzero])
