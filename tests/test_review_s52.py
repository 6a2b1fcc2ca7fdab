"""Session 52's review fixes (lead)."""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_process_distribution_job_runs_no_cross_process_check():
    """A single-process JAX ``keras.distribution`` job: prune's and cluster's cross-process checks
    (``_base.processes_disagree``, an all-gather of hashes) return before building their rows —
    cluster() hashed every weight of the model first, then learned there was one process. Here
    ``processes_disagree`` raises if called: prune + fit + strip + cluster must not reach it."""
    code = textwrap.dedent("""
        import os
        os.environ["KERAS_BACKEND"] = "jax"
        import jax, keras, numpy as np
        import dc_keras
        from dc_keras.train import _base
        def called(rows):
            raise AssertionError(f"processes_disagree called in a one-process job with {rows}")
        _base.processes_disagree = called
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
        assert jax.process_count() == 1 and not _base.multi_process()
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 8)).astype("float32"); y = rng.integers(0, 3, size=64)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d1"), keras.layers.Dense(3)])
        pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, begin_step=0, frequency=1))
        pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
        clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=3)
        print("OK", _base.multi_process())
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "OK False" in r.stdout, r.stderr[-3000:]


@pytest.mark.long  # builds the C library and one test program into a new directory (~30 s CPU)
def test_kernel_tests_run_from_an_absolute_build_directory(tmp_path):
    """``make -C tflite_kernels BUILD=/abs/path test`` (helper-198's finding in session 51) ran each
    test program as ``.//abs/path/test_x``: "No such file or directory". Now absolute and relative
    BUILD directories both run."""
    build = tmp_path / "kb"
    one = build / "test_pages"
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels"), f"BUILD={build}",
                        f"TEST_BINS={one}", "test"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"== {one}" in r.stdout and "No such file" not in r.stderr
