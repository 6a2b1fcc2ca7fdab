"""Session 53's review fixes (lead)."""
import threading
import time
import warnings

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime


def _dense_packed():
    return export.pack(em.tflite("dense", None), min_bytes=64)


@pytest.mark.parametrize("backend", ["litert", "tensorflow"])
def test_set_tensor_or_resize_while_another_thread_invokes_is_refused(backend):
    """``set_tensor`` while another thread's ``invoke()`` ran on the same interpreter wrote the input
    under the running kernels, silently (helper-202's finding in session 52); ``resize_tensor_input``
    got TFLite's words about numpy views ("There is at least 1 reference to internal data"). Both
    now raise the same RuntimeError as two ``invoke()`` calls at once, naming the call; afterwards
    the interpreter, used from one thread, gives the unpacked model's outputs bit for bit."""
    packed = _dense_packed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter deprecation notice
        it = runtime.Interpreter(model_content=packed, backend=backend)
    it.allocate_tensors()
    index = it.get_input_details()[0]["index"]
    x = em.inputs("dense", 1)
    seen, other = {}, []
    deadline = time.monotonic() + 30

    def invoking():
        while time.monotonic() < deadline and len(seen) < 2:
            try:
                it.invoke()
            except RuntimeError as e:
                other.append(str(e))

    def writing():
        calls = {"set_tensor()": lambda: it.set_tensor(index, x),
                 "resize_tensor_input()": lambda: it.resize_tensor_input(index, list(x.shape))}
        while time.monotonic() < deadline and len(seen) < 2:
            for name, call in calls.items():
                try:
                    call()
                except RuntimeError as e:
                    seen.setdefault(name, str(e))

    threads = [threading.Thread(target=invoking), threading.Thread(target=writing)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert set(seen) == {"set_tensor()", "resize_tensor_input()"}, f"no overlap in 30 s: {seen}"
    for name, text in seen.items():
        assert text.startswith(f"model_content: {name} while another thread uses this interpreter (its invoke(), "
                               "a signature runner's call, set_tensor(), resize_tensor_input() or "
                               "allocate_tensors()): a TFLite interpreter is not thread-safe"), text
    # the invoking thread was refused only while the other one held the interpreter, or ran after a resize
    assert all("while another thread uses this interpreter" in e or "before the tensors are allocated" in e
               for e in other), other[:3]
    it.allocate_tensors()
    plain = em.tflite("dense", None)
    xs = em.inputs("dense", 3)
    assert em.run_batch(it, xs).tobytes() == em.run_batch(em.reference_interpreter(backend, plain), xs).tobytes()


def test_a_closed_custom_op_compiled_model_says_so():
    """``CustomOpCompiledModel.run`` after ``close()`` (or its ``with`` block) gave LiteRT's
    "RunCompiledModel failed (LiteRtStatus 1)"; now one error saying it is closed and what to do.
    In its ``with`` block it runs the packed model as the unpacked one runs."""
    from dc_keras.runtime._litert_c import CustomOpCompiledModel

    packed, plain = _dense_packed(), em.tflite("dense", None)
    x = em.inputs("dense", 1)
    with CustomOpCompiledModel(packed) as m:
        (y,) = m.run(x)
    want = em.run_batch(em.reference_interpreter("litert", plain), x)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6 * float(np.abs(want).max()))
    with pytest.raises(RuntimeError, match=r"^this CustomOpCompiledModel is closed \(close\(\) or a with block "
                                           r"released it\): create a new one"):
        m.run(x)
    m.close()  # twice: nothing happens


def test_a_custom_loop_that_ran_no_step_is_told_so():
    """A custom training loop whose data was empty (``on_train_begin()``, no step, ``on_train_end()``)
    was told only that its layers "were not called in training mode" (helper-203's finding in session
    52); the error now says first that no step may have run. A loop that trains in training mode
    ends without an error and prunes."""
    import keras

    import dc_keras

    def pruned_model():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d1"), keras.layers.Dense(3, name="d2")])
        model = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, begin_step=0, frequency=1))
        model.compile("sgd", "mse")
        return model

    model = pruned_model()
    cb = dc_keras.PruningCallback()
    cb.set_model(model)
    cb.on_train_begin()
    with pytest.raises(RuntimeError, match=r"^Pruned layer\(s\) \['d1', 'd2'\] counted no training step between "
                                           r"on_train_begin\(\) and on_train_end\(\) of this custom training loop: "
                                           r"either no step ran \(its data was empty"):
        cb.on_train_end()

    model = pruned_model()
    cb = dc_keras.PruningCallback()
    cb.set_model(model)
    cb.on_train_begin()
    x, y = np.ones((4, 8), "float32"), np.zeros((4, 3), "float32")
    for _ in range(2):
        model.train_on_batch(x, y)
    cb.on_train_end()
    kernel = dc_keras.strip(model).get_layer("d1").kernel.numpy()
    assert np.mean(kernel == 0) == 0.5
