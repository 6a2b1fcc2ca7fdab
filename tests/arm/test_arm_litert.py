"""LiteRT on emulated aarch64: the aarch64 ai-edge-litert wheel runs our models; packed models go
through our aarch64 libdc_huffdecode.so (external delegate), bit-identical to the unpacked model
on aarch64 and matching x86_64 (int8 exactly, float within tolerance).

All references are made at test time: models are built with Keras and converted on x86, run on
x86 and on emulated aarch64 with the same op resolver (BUILTIN_WITHOUT_DEFAULT_DELEGATES)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from arm_helpers import ROOT, built, run_aarch64_python

RUNNER = ROOT / "tools" / "arm" / "litert_run.py"
N_SAMPLES = 6


def _keras_model():
    import keras

    keras.utils.set_random_seed(1234)
    inp = keras.Input((12, 12, 1), batch_size=1)
    x = keras.layers.Conv2D(6, 3, activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    out = keras.layers.Dense(10)(x)
    return keras.Model(inp, out)


def _convert(model, int8, calib):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def _quantize_input(x, model_bytes):
    from ai_edge_litert import interpreter as litert

    d = litert.Interpreter(model_content=model_bytes).get_input_details()[0]
    scale, zero = d["quantization"]
    return np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def runs(arm_env, tmp_path_factory):
    """Builds the models on x86, runs every (model, arch) pair once; returns outputs + info."""
    tmp = tmp_path_factory.mktemp("litert_arm")
    rng = np.random.default_rng(7)
    calib = rng.random((16, 12, 12, 1), dtype=np.float32)
    x_float = rng.random((N_SAMPLES, 12, 12, 1), dtype=np.float32)
    model = _keras_model()
    models = {}
    for kind in ("float", "int8"):
        data = _convert(model, kind == "int8", calib)
        path = tmp / f"{kind}.tflite"
        path.write_bytes(data)
        x = _quantize_input(x_float, data) if kind == "int8" else x_float
        np.savez(tmp / f"{kind}_in.npz", x0=x)
        models[kind] = path
    jobs = {"x86_64": [], "aarch64": []}
    for kind, path in models.items():
        for arch in jobs:
            jobs[arch].append({"model": str(path), "inputs": str(tmp / f"{kind}_in.npz"),
                               "output": str(tmp / f"{kind}_{arch}.npz"), "delegate": None})
    for arch, job in jobs.items():
        (tmp / f"jobs_{arch}.json").write_text(json.dumps(job))
    host = subprocess.run([sys.executable, str(RUNNER), str(tmp / "jobs_x86_64.json")],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert host.returncode == 0, host.stderr
    arm_out = run_aarch64_python(arm_env, [RUNNER, tmp / "jobs_aarch64.json"])
    info = json.loads(arm_out.strip().splitlines()[-1])
    outputs = {(kind, arch): np.load(tmp / f"{kind}_{arch}.npz")["y0"]
               for kind in models for arch in jobs}
    return {"outputs": outputs, "aarch64": info, "x86_64": json.loads(host.stdout.strip().splitlines()[-1])}


def test_runtime_is_really_aarch64(runs):
    assert runs["aarch64"]["machine"] == "aarch64"
    assert runs["x86_64"]["machine"] == "x86_64"
    assert runs["aarch64"]["ai_edge_litert"] == runs["x86_64"]["ai_edge_litert"]
    print("runtimes:", runs["aarch64"], runs["x86_64"])


def test_unpacked_int8_matches_x86_exactly(runs):
    a, b = runs["outputs"][("int8", "aarch64")], runs["outputs"][("int8", "x86_64")]
    assert a.dtype == np.int8 and a.shape == (N_SAMPLES, 10)
    assert np.array_equal(a, b)


def test_unpacked_float_matches_x86_within_tolerance(runs):
    a, b = runs["outputs"][("float", "aarch64")], runs["outputs"][("float", "x86_64")]
    assert a.dtype == np.float32 and a.shape == (N_SAMPLES, 10)
    assert np.all(np.isfinite(a)) and np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
