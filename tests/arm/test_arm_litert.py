"""LiteRT on emulated aarch64: the aarch64 ai-edge-litert wheel runs packed models (float and int8)
through our aarch64 libdc_huffdecode.so; outputs are bit-identical to the unpacked model on
aarch64 with the same op resolver, and match x86_64 (int8 exactly, float within tolerance).

The aarch64 runs emulate a Cortex-A76 and qemu's "max" CPU.  Everything is made at test time: a small Keras model with pruned, weight-shared kernels (what
Deep Compression produces) is converted and packed on x86 with ``dc_keras.export``; the same
model files run on x86_64 and, in one emulated process, on aarch64 (tools/arm/litert_run.py).
Packed models run through ``dc_keras.runtime.Interpreter`` (the HuffDecode external delegate),
unpacked ones through a plain LiteRT Interpreter."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from arm_helpers import ROOT, built, run_aarch64_python, share_and_prune

RUNNER = ROOT / "tools" / "arm" / "litert_run.py"
N_SAMPLES = 6
KINDS = ("float", "int8")
# BUILTIN_REF (reference kernels), BUILTIN_WITHOUT_DEFAULT_DELEGATES (optimized builtin kernels),
# AUTO (the default: XNNPACK delegate).
RESOLVERS = ("reference", "without_default_delegates", "default")
# Emulated CPUs: cortex-a76 (Armv8.2 + dotprod, the big core of most 2019-2023 phones) is the one
# compared with x86; qemu's default "max" (SVE2, i8mm, ...) is checked for packed == unpacked only:
# under qemu 7.2 LiteRT's XNNPACK int8 path on "max" gives results up to 100 quantization steps
# away from x86 and from cortex-a76 for the *unpacked* model too (see docs/android.md).
CPUS = ("cortex-a76", "max")
ARCHS = ("x86_64",) + tuple(f"aarch64-{c}" for c in CPUS)


def _keras_model():
    """Conv + dense model whose kernels are pruned (~75 % zeros) and shared (16 values)."""
    import keras

    keras.utils.set_random_seed(1234)
    inp = keras.Input((12, 12, 1), batch_size=1)
    x = keras.layers.Conv2D(8, 3, activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    out = keras.layers.Dense(10)(x)
    model = keras.Model(inp, out)
    return share_and_prune(model, seed=3, zero_fraction=0.75)


@pytest.fixture(scope="module")
def runs(arm_env, tmp_path_factory):
    """Builds and packs the models on x86 and runs every (model, packed, resolver) on x86_64 and
    on each emulated aarch64 CPU; returns {(kind, packed, resolver, arch): outputs} and info."""
    from dc_keras import export

    tmp = tmp_path_factory.mktemp("litert_arm")
    rng = np.random.default_rng(7)
    calib = rng.random((16, 12, 12, 1), dtype=np.float32)
    x = rng.random((N_SAMPLES, 12, 12, 1), dtype=np.float32)
    np.savez(tmp / "in.npz", x0=x)
    model = _keras_model()
    files = {}
    for kind in KINDS:
        plain = export.to_tflite(model, pack=False, quantize=None if kind == "float" else "int8",
                                 representative_data=calib if kind == "int8" else None)
        packed = export.pack(plain)
        (tmp / f"{kind}.tflite").write_bytes(plain)
        (tmp / f"{kind}.packed.tflite").write_bytes(packed)
        files[kind] = (plain, packed)
    libs = {"x86_64": built("host", "libdc_huffdecode.so"),
            "aarch64": built("aarch64", "libdc_huffdecode.so")}

    def out_name(kind, packed, resolver, arch):
        return tmp / f"{kind}{'.packed' if packed else ''}.{resolver}.{arch}.npz"

    def jobs_for(arch):
        lib = libs[arch.split("-")[0]]
        jobs = []
        for kind in KINDS:
            for packed in (False, True):
                for resolver in RESOLVERS:
                    jobs.append({
                        "model": str(tmp / f"{kind}{'.packed' if packed else ''}.tflite"),
                        "inputs": str(tmp / "in.npz"),
                        "output": str(out_name(kind, packed, resolver, arch)),
                        "runtime": "dc_keras" if packed else "litert", "library": str(lib),
                        "resolver": resolver})
            # Without our library the packed model must not load (the op is really needed).
            jobs.append({"model": str(tmp / f"{kind}.packed.tflite"), "runtime": "litert",
                         "output": str(tmp / f"{kind}.nolib.{arch}.txt"), "expect_error": True})
        path = tmp / f"jobs_{arch}.json"
        path.write_text(json.dumps(jobs))
        return path

    info = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    host = subprocess.run([sys.executable, str(RUNNER), str(jobs_for("x86_64"))],
                          capture_output=True, text=True, timeout=600, env=env)
    assert host.returncode == 0, host.stdout + host.stderr
    info["x86_64"] = json.loads(host.stdout.strip().splitlines()[-1])
    for cpu in CPUS:
        arch = f"aarch64-{cpu}"
        out = run_aarch64_python(arm_env, [RUNNER, jobs_for(arch)], cpu=cpu)
        info[arch] = json.loads(out.strip().splitlines()[-1])
    outputs = {(kind, packed, resolver, arch): np.load(out_name(kind, packed, resolver, arch))["y0"]
               for kind in KINDS for packed in (False, True) for resolver in RESOLVERS
               for arch in ARCHS}
    errors = {(kind, arch): (tmp / f"{kind}.nolib.{arch}.txt").read_text()
              for kind in KINDS for arch in ARCHS}
    return {"outputs": outputs, "errors": errors, "files": files, "info": info,
            "int8_scale": _output_scale(tmp / "int8.tflite")}


def _output_scale(path):
    """Quantization scale of the int8 tensor the int8 model dequantizes into its float output."""
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_path=str(path))
    out = it.get_output_details()[0]["index"]
    details = {t["index"]: t for t in it.get_tensor_details()}
    for op in it._get_ops_details():
        if op["op_name"] == "DEQUANTIZE" and out in list(op["outputs"]):
            return details[op["inputs"][0]]["quantization"][0]
    raise AssertionError("int8 model has no DEQUANTIZE feeding its output")


def test_runtimes(runs):
    info = runs["info"]
    assert info["x86_64"]["machine"] == "x86_64"
    for cpu in CPUS:
        assert info[f"aarch64-{cpu}"]["machine"] == "aarch64"
        assert info[f"aarch64-{cpu}"]["ai_edge_litert"] == info["x86_64"]["ai_edge_litert"]
    print("\nruntimes:", info)


@pytest.mark.parametrize("kind", KINDS)
def test_models_are_really_packed(runs, kind):
    plain, packed = runs["files"][kind]
    assert b"HuffDecode" in packed and b"HuffDecode" not in plain
    assert len(packed) < len(plain)
    for arch in ARCHS:
        assert "HuffDecode" in runs["errors"][kind, arch], runs["errors"][kind, arch]


@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("kind", KINDS)
def test_aarch64_packed_bit_identical_to_unpacked(runs, kind, resolver, cpu):
    out = runs["outputs"]
    a = out[kind, True, resolver, f"aarch64-{cpu}"]
    b = out[kind, False, resolver, f"aarch64-{cpu}"]
    assert a.shape == (N_SAMPLES, 10) and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.abs(a).max() > 0
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("packed", [False, True])
def test_int8_aarch64_matches_x86(runs, packed, resolver):
    """Reference kernels and XNNPACK: identical integer results on aarch64 and x86 (the float
    output is their dequantization, at most 1 ulp apart: DEQUANTIZE rounds differently).
    LiteRT's optimized builtin int8 kernels are not bit-exact across architectures (their
    requantization rounds differently on NEON and x86): there, at most 1 quantization step."""
    out, scale = runs["outputs"], runs["int8_scale"]
    a = out["int8", packed, resolver, "aarch64-cortex-a76"]
    b = out["int8", packed, resolver, "x86_64"]
    qa, qb = np.round(a / scale), np.round(b / scale)
    if resolver == "without_default_delegates":
        assert np.abs(qa - qb).max() <= 1
        np.testing.assert_allclose(a, b, rtol=0, atol=1.01 * scale)
    else:
        assert np.array_equal(qa, qb)
        np.testing.assert_array_max_ulp(a, b, maxulp=1)


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize("packed", [False, True])
def test_float_aarch64_matches_x86_within_tolerance(runs, packed, resolver):
    out = runs["outputs"]
    a = out["float", packed, resolver, "aarch64-cortex-a76"]
    b = out["float", packed, resolver, "x86_64"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
