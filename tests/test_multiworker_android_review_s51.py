"""Session 51's review of two journeys: multi-worker training (docs/multi_worker.md,
examples/multi_worker.py) and Android (docs/android.md, tflite_kernels/CMakeLists.txt).

Multi-worker: processes that prune differently (another schedule, another number of epochs) trained
to the end with different masks and failed only in strip() (JAX's "not the same on each process"
with the weights dumped), or aborted in gloo minutes later; PruningCallback now stops every process
at the start of fit() with one ValueError. The example's workers started with different settings
are stopped right after joining. steps_per_execution > 1 keeps the workers bit-identical.

Android: libdc_tflite_example.so (which the doc's Kotlin classes load) was not linked for 16 KB
pages; the doc's Kotlin `classify` passed an array of another shape than the input to
Interpreter.run, which makes the Java API resize the input ([1, 784] for LeNet-5's [1, 28, 28, 1])."""
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "multi_worker.py")

# One process of a 2-process JAX job (docs/multi_worker.md's "What each worker does"): prune,
# strip, cluster, fine-tune; prints the sha256 of masks, centroids and stripped weights.
WORKER = r"""
import hashlib, json, os, sys
os.environ["KERAS_BACKEND"] = "jax"
wid, port = int(sys.argv[1]), int(sys.argv[2])
target, epochs, spe = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bits = int(sys.argv[6]) if len(sys.argv) > 6 else 3
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=wid,
                           initialization_timeout=120)
import keras, numpy as np, tensorflow as tf
import dc_keras
keras.utils.set_random_seed(0)
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 16)).astype("float32"); y = rng.integers(0, 4, size=512).astype("int32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64, drop_remainder=True)
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu", name="d1"),
                          keras.layers.Dense(4, name="out")])
pruned = dc_keras.prune(model, dc_keras.schedules.PolynomialDecay(0.0, target, begin_step=0, end_step=12, frequency=2))
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
pruned.compile(keras.optimizers.Adam(0.01), loss, steps_per_execution=spe)
pruned.fit(ds, epochs=epochs, verbose=0, callbacks=[dc_keras.PruningCallback()])
clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=bits)
clustered.compile(keras.optimizers.Adam(0.001), loss, steps_per_execution=spe)
clustered.fit(ds, epochs=1, verbose=0)
def digest(arrays):
    return hashlib.sha256(b"".join(np.asarray(keras.ops.convert_to_numpy(a)).tobytes() for a in arrays)).hexdigest()
final = dc_keras.strip(clustered)
kernel = keras.ops.convert_to_numpy(final.get_layer("d1").kernel)
print("RESULT " + json.dumps({
    "masks": digest([m for layer in pruned.layers for m in getattr(layer, "_masks", [])]),
    "centroids": digest([c for layer in clustered.layers for c in getattr(layer, "_centroids", [])]),
    "weights": digest(final.weights), "sparsity": float((kernel == 0).mean())}), flush=True)
jax.distributed.shutdown()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    assert importlib.util.find_spec("jax") is not None, "jax is installed by `make install` (test extra)"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("XLA_FLAGS", None)
    return env


def _run_together(tmp_path, cmds, timeout):
    """Starts every command at once, each one's output to files (not pipes: a process blocked on a
    full pipe would stall the other in a collective); (returncode, stdout, stderr) of each."""
    procs = []
    for wid, cmd in enumerate(cmds):
        with open(tmp_path / f"out{wid}", "w") as out, open(tmp_path / f"err{wid}", "w") as err:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=_env()))
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(code, (tmp_path / f"out{wid}").read_text(), (tmp_path / f"err{wid}").read_text(errors="backslashreplace"))
            for wid, code in enumerate(codes)]


def _job(tmp_path, *per_worker):
    """Runs the two processes (argument lists after the worker id and port); (returncode, stdout,
    stderr) of each."""
    port = _free_port()
    (tmp_path / "worker.py").write_text(WORKER)
    return _run_together(tmp_path, [[sys.executable, str(tmp_path / "worker.py"), str(wid), str(port), *map(str, args)]
                                     for wid, args in enumerate(per_worker)], timeout=600)


def _result(run):
    code, out, err = run
    assert code == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def test_processes_with_different_schedules_are_stopped_at_the_start_of_fit(tmp_path):
    """Worker 1 prunes to 50 %, worker 0 to 80 %: both stop at fit()'s start with one ValueError
    naming the layer, the process and the fix (they trained to the end with different masks and
    strip() failed in JAX's device_put check, the weights dumped)."""
    runs = _job(tmp_path, (0.8, 2, 1), (0.5, 2, 1))
    for wid, (code, out, err) in enumerate(runs):
        assert code != 0 and "RESULT" not in out, (wid, err[-3000:])
        assert ("ValueError: PruningCallback: the processes of this multi-process keras.distribution job do not "
                f"prune alike: on process {wid} pruned layer 'd1' has the schedule") in err, err[-3000:]
        assert f"which differs on process(es) [{1 - wid}]" in err
        assert f'"final_sparsity": {0.8 if wid == 0 else 0.5}' in err
        assert "prune it with the same dc_keras.prune() arguments" in err
        assert "passed to device_put is not the same on each process" not in err


@pytest.mark.long  # a 2-process job, 13 CPU s: the check of the schedules test above, another of its fields
def test_processes_with_different_epochs_are_stopped_at_the_start_of_fit(tmp_path):
    """fit(epochs=2) on one process, 3 on the other: one ValueError each at fit()'s start (gloo
    aborted ~100 s later with "Is there a distributed collective mismatch in your code?")."""
    runs = _job(tmp_path, (0.8, 2, 1), (0.8, 3, 1))
    for wid, (code, out, err) in enumerate(runs):
        assert code != 0 and "RESULT" not in out, (wid, err[-3000:])
        assert (f"do not prune alike: on process {wid} fit()'s [epochs, steps] are [{2 + wid}, null], which differs "
                f"on process(es) [{1 - wid}]") in err, err[-3000:]
        assert "collective mismatch" not in err


def test_processes_that_cluster_with_other_bits_are_stopped_at_cluster(tmp_path):
    """cluster(bits=3) on worker 0, bits=4 on worker 1 (helper-198's not-fixed finding): gloo aborted
    in the clustered model's variable creation ("Received data size doesn't match expected size. Is
    there a distributed collective mismatch"), naming neither the call nor the argument. Now one
    ValueError on each process at cluster(), naming the arguments and the other process."""
    runs = _job(tmp_path, (0.8, 2, 1, 3), (0.8, 2, 1, 4))
    for wid, (code, out, err) in enumerate(runs):
        assert code != 0 and "RESULT" not in out, (wid, err[-3000:])
        assert (f"ValueError: cluster(): the processes of this multi-process keras.distribution job do not cluster "
                f"alike: on process {wid} the arguments are ") in err, err[-3000:]
        assert f'"bits": {3 + wid}' in err and f"which differs on process(es) [{1 - wid}]" in err
        assert "collective mismatch" not in err


@pytest.mark.long  # two 2-process jobs, ~50 s
def test_steps_per_execution_keeps_the_workers_bit_identical(tmp_path):
    """docs/multi_worker.md: steps_per_execution > 1 moves the mask updates to execution boundaries
    (3 steps here, updates every 2 steps), so the result differs from steps_per_execution=1, and
    the workers agree bit for bit either way: masks, centroids (after clustering the pruned model
    across the workers) and the stripped weights."""
    one = [_result(r) for r in _job(tmp_path, (0.8, 2, 1), (0.8, 2, 1))]
    three = [_result(r) for r in _job(tmp_path, (0.8, 2, 3), (0.8, 2, 3))]
    for results in (one, three):
        assert results[0] == results[1]
        assert results[0]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert one[0]["masks"] != three[0]["masks"] and one[0]["weights"] != three[0]["weights"]


def test_example_workers_started_with_different_settings_stop_right_after_joining(tmp_path):
    """examples/multi_worker.py on real hosts: each host types its own command. Another --samples
    (a different number of steps: gloo's abort minutes later) and --seed (JAX's device_put check
    with the weights dumped) are named on both workers before any training, also a seed beyond
    int32 (gathered as int32 pairs)."""
    port = _free_port()
    base = [sys.executable, SCRIPT, "--workers", "2", "--coordinator", f"127.0.0.1:{port}",
            "--work-dir", str(tmp_path / "work"), "--timeout", "120"]
    runs = _run_together(tmp_path, [base + ["--worker-id", str(wid)] + extra for wid, extra in enumerate(
        (["--samples", "1024"], ["--samples", "512", "--seed", "3000000000"]))], timeout=300)
    for wid, (code, out, err) in enumerate(runs):
        assert code == 1 and "RESULT" not in out, (wid, code, err[-3000:])
        assert (f"worker {wid}: the workers were started with different settings: --seed [0, 3000000000], "
                "--samples [1024, 512] (worker 0, 1, ...). Start every worker with the same") in err, err[-3000:]
        assert "Traceback" not in err
    assert os.listdir(tmp_path / "work") == []  # stopped before any backup


def test_android_example_library_is_linked_for_16_kb_pages(tmp_path):
    """On Android both libraries need -z max-page-size=16384 (16 KB-page devices, Android 15+):
    libdc_tflite_example.so, which the doc's Kotlin classes load, was linked without it (NDK r27
    and older then align to 4 KB and the library does not load there). Configured as the NDK does
    (ANDROID set) with the host compiler, the link lines of both targets are compared."""
    cmake = shutil.which("cmake")
    assert cmake, "needs cmake (apt install cmake)"
    inc = tmp_path / "tflite" / "tensorflow" / "lite" / "c"
    inc.mkdir(parents=True)
    lib = tmp_path / "libtensorflowlite_jni.so"
    lib.write_bytes(b"")
    build = tmp_path / "build"
    r = subprocess.run([cmake, "-G", "Unix Makefiles", "-S", os.path.join(ROOT, "tflite_kernels"), "-B", str(build),
                        "-DANDROID=ON", "-DANDROID_ABI=arm64-v8a", "-DDC_ANDROID_EXAMPLE=ON",
                        f"-DTFLITE_INCLUDE_DIR={tmp_path / 'tflite'}", f"-DTFLITE_LIBRARY={lib}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for target in ("dc_huffdecode", "dc_tflite_example"):
        link = (build / "CMakeFiles" / f"{target}.dir" / "link.txt").read_text()
        assert "-Wl,-z,max-page-size=16384" in link, (target, link)
    # a desktop configure (no ANDROID) keeps the default page size
    r = subprocess.run([cmake, "-G", "Unix Makefiles", "-S", os.path.join(ROOT, "tflite_kernels"),
                        "-B", str(tmp_path / "desktop"), "-DDC_BUILD_TESTS=OFF"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "max-page-size" not in (tmp_path / "desktop" / "CMakeFiles" / "dc_huffdecode.dir" / "link.txt").read_text()


def _kotlin_classify():
    with open(os.path.join(ROOT, "docs", "android.md")) as f:
        doc = f.read()
    block = next(b for b in re.findall(r"```kotlin\n(.*?)```", doc, re.S) if "fun classify(" in b)
    return doc, block


def test_android_doc_kotlin_classify_passes_a_buffer_not_an_array_of_another_shape():
    """The Java Interpreter resizes an input to the shape of an array it is given
    (Tensor.getInputShapeIfDifferent; a Buffer is only checked for its byte size): the doc's
    `interpreter.run(arrayOf(pixels), output)` made LeNet-5's [1, 28, 28, 1] input [1, 784]. What
    that resize does to a conv net, shown with LiteRT's Python Interpreter (the same C++ core):
    allocate_tensors() fails."""
    doc, block = _kotlin_classify()
    assert "interpreter.run(FloatBuffer.wrap(pixels), output)" in block, block
    assert "import java.nio.FloatBuffer" in block
    assert "arrayOf(pixels)" not in re.sub(r"//.*", "", block)  # only in the comment that explains it
    assert "[1, 28, 28, 1]" in block

    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 5), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    it = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert())
    it.allocate_tensors()
    assert list(it.get_input_details()[0]["shape"]) == [1, 28, 28, 1]
    pixels = np.random.default_rng(0).random(784, dtype=np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], pixels.reshape(1, 28, 28, 1))  # what the Buffer does
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).shape == (1, 10)
    it.resize_tensor_input(it.get_input_details()[0]["index"], [1, 784])  # what arrayOf(pixels) does
    with pytest.raises(RuntimeError):
        it.allocate_tensors()


def test_android_doc_gradle_comment_says_the_kotlin_classes_need_the_example_library():
    """The Gradle snippet called the JNI example "Optional" while both Kotlin routes below load
    it (System.loadLibrary("dc_tflite_example")) for their native functions."""
    with open(os.path.join(ROOT, "docs", "android.md")) as f:
        doc = f.read()
    gradle = next(b for b in re.findall(r"```kotlin\n(.*?)```", doc, re.S) if "externalNativeBuild" in b)
    words = " ".join(w for w in gradle.split() if w != "//")
    assert "Optional" not in gradle and "which the Kotlin classes below load" in words, gradle
    assert doc.count('System.loadLibrary("dc_tflite_example")') == 2
    with open(os.path.join(ROOT, "tflite_kernels", "android", "dc_tflite_example.c")) as f:
        c = f.read()
    for fn in ("HuffDecodeDelegate_nativeCreate", "HuffDecodeDelegate_nativeDelete", "PackedModel_nativeCreate",
               "PackedModel_nativeRun", "PackedModel_nativeClose"):
        assert f"Java_org_dckeras_example_{fn}(" in c, fn
