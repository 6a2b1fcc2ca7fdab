"""A review of the clustered fit step's native kernels (jax_kernels/dc_centroids*.cc, their Python
glue dc_keras/train/_jax_ffi.py, _tf_ops.py, _kernels.py): bad assignments that come in through
``set_weights`` (refused on the way in since 2026-12-06) and native routes skipped for their dtypes. Runs in the
TensorFlow pass and again under JAX and PyTorch (the Makefile's BACKEND_TESTS)."""
import os

import keras
import numpy as np
import pytest

import dc_keras

RNG = np.random.default_rng(44)
X = RNG.normal(size=(64, 20)).astype("float32")
Y = RNG.normal(size=(64, 4)).astype("float32")

# Per backend: the native module and its switch (PyTorch has none: its own gather raises).
_NATIVE = {"jax": ("_jax_ffi", "DC_KERAS_JAX_FFI"), "tensorflow": ("_tf_ops", "DC_KERAS_TF_OPS")}


def _native_module(monkeypatch, mode):
    """The backend's native module with its decision reset and its switch at ``mode``, or None."""
    if keras.backend.backend() not in _NATIVE:
        return None
    import importlib

    name, env = _NATIVE[keras.backend.backend()]
    module = importlib.import_module(f"dc_keras.train.{name}")
    monkeypatch.setenv(env, mode)
    monkeypatch.setattr(module, "_state", {})
    return module


def _clustered(units=300):
    keras.utils.set_random_seed(3)
    inp = keras.Input((20,))
    x = keras.layers.Dense(units, activation="relu", name="d1")(inp)  # 6,000 entries: TF's XLA route
    model = keras.Model(inp, keras.layers.Dense(4, name="d2")(x))
    model = dc_keras.cluster(model, bits=2, layers=["d1"])
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize("mode", ["auto", "0"])
@pytest.mark.parametrize("bad", [5, 99, -1])
def test_assignments_set_out_of_range_are_refused_on_the_way_in(mode, bad, monkeypatch):
    # model.set_weights (and a variable's assign) put assignments in unchecked: strip caught them
    # (JAX without the native kernels clamped them in fit: 99 -> the zero slot, -1 -> centroid 0;
    # the native kernels reported them late, TF's gathers with their own error). Since 2026-12-06
    # the assign itself refuses them with the wrapper's error (layer, weight, index, fix), on every
    # backend and route, and the variable keeps its values.
    _native_module(monkeypatch, mode)
    model = _clustered()
    weights = model.get_weights()
    (i,) = [k for k, v in enumerate(model.weights) if v.path.endswith("kernel_assignments")]
    before = weights[i].copy()
    weights[i] = weights[i].copy()
    weights[i][7, 11] = bad
    with pytest.raises(ValueError, match=rf"'d1'.*assignments of 'kernel' hold index {bad}, outside 0\.\.4 .*cluster"):
        model.set_weights(weights)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.ops.copy(model.weights[i])), before)
    weights[i][7, 11] = 4  # the zero slot: in range
    model.set_weights(weights)
    kernel = dc_keras.strip(model).get_layer("d1").kernel.numpy()
    assert kernel[7, 11] == 0
    centroids = weights[[k for k, v in enumerate(model.weights) if v.path.endswith("kernel_centroids")][0]]
    np.testing.assert_array_equal(kernel, np.append(centroids, 0)[weights[i]])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_native_route_skipped_for_a_mixed_precision_policy_is_reported_once(policy, monkeypatch, caplog):
    # The native kernels take float32 centroids; under a mixed precision policy the layer computes in
    # float16 / bfloat16, and fit() took the slower fallback without a word (unavailable_reason()
    # None, nothing logged). Now one INFO line per dtype says so.
    module = _native_module(monkeypatch, "auto")
    if module is None:
        pytest.skip("PyTorch has no native centroid kernels")
    if not os.path.isfile(module.library_path()):
        pytest.skip(f"{module.library_path()} not built (make jax-ffi tf-ops)")
    from dc_keras.train import _kernels

    monkeypatch.setattr(_kernels, "_noted", set())
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        with caplog.at_level("INFO", logger="dc_keras"):
            model = _clustered()
            model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
            _clustered().fit(X, Y, batch_size=16, epochs=1, verbose=0)  # another model, same dtypes: not again
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert module.available() and module.unavailable_reason() is None  # built and loaded: only skipped
    dtype = policy.split("_")[1]
    notes = [r.getMessage() for r in caplog.records if "native centroid kernels take float32" in r.getMessage()]
    assert len(notes) == 1, notes
    assert f"{dtype} centroids" in notes[0] and "int32 assignments" in notes[0] and "mixed precision" in notes[0]
    # float32: the native route, nothing more said.
    caplog.clear()
    with caplog.at_level("INFO", logger="dc_keras"):
        _clustered().fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert not [r for r in caplog.records if "native centroid kernels take float32" in r.getMessage()]


def test_a_bad_split_setting_at_start_is_an_error_not_a_silent_fallback(monkeypatch, caplog):
    # DC_KERAS_JAX_FFI_SPLIT=yes set before the first use: the library's first-use test call raised
    # the setting's ValueError, which was taken for a broken library: the native kernels were turned
    # off with an INFO line saying "rebuild it with `make jax-ffi`", and training went on. Now the
    # ValueError reaches the caller, each time (nothing decided). Needs only JAX, whatever Keras's backend.
    pytest.importorskip("jax")
    from dc_keras.train import _jax_ffi

    monkeypatch.setattr(_jax_ffi, "_state", {})
    monkeypatch.setenv("DC_KERAS_JAX_FFI", "auto")
    monkeypatch.setenv("DC_KERAS_JAX_FFI_SPLIT", "yes")
    with caplog.at_level("INFO", logger="dc_keras"):
        for _ in range(2):
            with pytest.raises(ValueError, match="DC_KERAS_JAX_FFI_SPLIT must be 0 or 1, got 'yes'"):
                _jax_ffi.available()
    assert not [r for r in caplog.records if "make jax-ffi" in r.getMessage()]
    assert "ok" not in _jax_ffi._state
    monkeypatch.setenv("DC_KERAS_JAX_FFI", "0")  # off: the split setting does not matter
    assert not _jax_ffi.available()
    if os.path.isfile(_jax_ffi.library_path()):
        monkeypatch.setattr(_jax_ffi, "_state", {})
        monkeypatch.setenv("DC_KERAS_JAX_FFI", "auto")
        monkeypatch.setenv("DC_KERAS_JAX_FFI_SPLIT", "1")
        assert _jax_ffi.available(), _jax_ffi.unavailable_reason()


_DIRECT_GATHER = """
import numpy as np, jax
from dc_keras.train import _jax_ffi
assert _jax_ffi.available(), _jax_ffi.unavailable_reason()
for result, count in ((4, 200_000), (300, 100)):
    gather = jax.ffi.ffi_call(_jax_ffi._GATHER, jax.ShapeDtypeStruct((result,), "float32"))
    try:
        np.asarray(gather(np.arange(4, dtype="float32"), np.ones(count, "int32"), split=np.bool_(False)))
        print("no error", result, count)
    except Exception as err:
        print(type(err).__name__, err)
"""


# The child is the same JAX process whatever this process's backend: make test runs it in the JAX pass
# (which runs this file); the TensorFlow and PyTorch passes ran the same child again (3 CPU s each): long there.
@(pytest.mark.long if keras.backend.backend() != "jax" else lambda f: f)
def test_the_jax_gather_kernel_refuses_a_result_not_of_the_assignments_size():
    # The FFI gather wrote as many entries as there are assignments into its result buffer, whatever
    # its size: a direct ffi_call with a result of 4 entries for 200,000 assignments overran XLA's
    # buffer (the process died, SIGSEGV), one of 300 for 100 left 200 entries unwritten. The sums
    # kernel checked its sizes already. Run in a child process: the old code's overrun kills it.
    import subprocess
    import sys

    pytest.importorskip("jax")
    from dc_keras.train import _jax_ffi

    if not os.path.isfile(_jax_ffi.library_path()):
        pytest.skip(f"{_jax_ffi.library_path()} not built: run `make jax-ffi`")
    env = dict(os.environ, KERAS_BACKEND="jax", DC_KERAS_JAX_FFI="1", JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", _DIRECT_GATHER], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2, run.stdout
    for line, (result, count) in zip(lines, ((4, 200_000), (300, 100))):
        assert f"dc_keras centroid gather: a result of {result} entries for {count} assignments; give it the " \
               "assignments' shape" in line, line


@pytest.mark.parametrize("name", ["_jax_ffi", "_tf_ops"])
def test_a_library_present_but_unusable_is_a_warning_an_absent_one_info(name, monkeypatch, caplog, tmp_path):
    # A library that is there but does not load (stale: built for another jaxlib / TF, or damaged)
    # was noted at INFO like one never built, which Python's logging does not show by default: the
    # user who ran `make install` trained on the slow route without a word. Now WARNING, naming the
    # rebuild; an absent library or a switch at 0 stays INFO (a choice, not a fault).
    import importlib
    import logging

    pytest.importorskip("jax" if name == "_jax_ffi" else "tensorflow")
    module = importlib.import_module(f"dc_keras.train.{name}")
    env = {"_jax_ffi": "DC_KERAS_JAX_FFI", "_tf_ops": "DC_KERAS_TF_OPS"}[name]
    target = {"_jax_ffi": "jax-ffi", "_tf_ops": "tf-ops"}[name]
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not an ELF file")
    cases = [("auto", str(broken), logging.WARNING, f"{broken} did not load"),
             ("auto", str(tmp_path / "absent.so"), logging.INFO, "not found"),
             ("0", str(broken), logging.INFO, f"{env}=0")]
    for mode, path, level, says in cases:
        monkeypatch.setattr(module, "_state", {})
        monkeypatch.setenv(env, mode)
        monkeypatch.setenv(f"{env}_LIBRARY", path)
        caplog.clear()
        with caplog.at_level("INFO", logger="dc_keras"):
            assert not module.available()
        notes = [r for r in caplog.records if says in r.getMessage()]
        assert [r.levelno for r in notes] == [level], (mode, path, [(r.levelname, r.getMessage()) for r in caplog.records])
        if level == logging.WARNING:
            assert f"make {target}" in notes[0].getMessage()


def test_a_legacy_h5_file_with_out_of_range_assignments_is_refused_on_load(tmp_path):
    # A .keras / .weights.h5 file goes through ClusterWrapper.load_own_variables, which checks the
    # assignments; a legacy .h5 (model.save("m.h5"), load_model / load_weights of it) sets the
    # weights with set_weights and was not checked: the model loaded with index 99 in its
    # assignments. Keras calls the layer's finalize_state() after such a load: it checks them now.
    import warnings

    model = _clustered(units=30)
    wrapper = model.get_layer("d1")
    good = tmp_path / "good.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's note that .h5 is a legacy format
        model.save(good)
        loaded = keras.models.load_model(good, compile=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), err_msg=a.path)
    import shutil

    import h5py

    # assign() refuses index 99 (since 2026-12-06, tests/test_training_wrappers_and_assignments.py): damage the file
    damaged = tmp_path / "damaged.h5"
    shutil.copyfile(good, damaged)
    with h5py.File(damaged, "r+") as f:
        (name,) = [n for n in f["model_weights/d1"][wrapper.name] if n.endswith("kernel_assignments")]
        dataset = f["model_weights/d1"][wrapper.name][name]
        a = dataset[...]
        a[2, 3] = 99
        dataset[...] = a
    message = r"Layer 'd1': the assignments of 'kernel' hold index 99, outside 0\.\.4"
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(damaged, compile=False)
    with pytest.raises(ValueError, match=message):
        _clustered(units=30).load_weights(damaged)
