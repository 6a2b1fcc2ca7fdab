"""Helpers shared by the emulated-ARM tests (see conftest.py)."""
import os
import pathlib
import subprocess


ROOT = pathlib.Path(__file__).resolve().parents[2]
KERNELS = ROOT / "tflite_kernels"

# arch -> (build dir, qemu command prefix); "host" is the x86_64 reference build (its own dir:
# `make lib` of other sessions rebuilds tflite_kernels/build/ concurrently; not build/x86_64, which
# glibc's loader searches before $ORIGIN for the tools in tflite_kernels/build).
ARCHS = {
    "host": (KERNELS / "build" / "host", []),
    "aarch64": (KERNELS / "build" / "aarch64", ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"]),
    "armv7": (KERNELS / "build" / "armv7", ["qemu-arm-static", "-L", "/usr/arm-linux-gnueabihf"]),
}


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                env[key] = value.strip("'")
    return env


def built(arch, name):
    """Path of an artifact of the `make test-arm` cross build; fails (not skips) when absent."""
    path = ARCHS[arch][0] / name
    assert path.is_file(), f"{path} missing: `make test-arm` builds it (tools/arm/test_arm.sh)"
    return path


def run_arch(arch, argv, **kw):
    """Runs a program built for `arch` (under qemu user-mode for ARM)."""
    return subprocess.run([*ARCHS[arch][1], *map(str, argv)], check=True, capture_output=True,
                          text=True, timeout=600, **kw)


def run_aarch64_python(env, argv, cpu=None):
    """Runs the emulated aarch64 Python 3.11 of the sysroot with the aarch64 wheels on its path.

    ``cpu`` is a qemu CPU model (``QEMU_CPU``), e.g. ``cortex-a76``; qemu's default is ``max``."""
    sysroot = env["DC_ARM_SYSROOT"]
    # The source tree (dc_keras) is importable too: dc_keras.runtime needs only numpy + LiteRT.
    proc_env = dict(os.environ, PYTHONPATH=f"{env['DC_ARM_SITE']}:{ROOT}", PYTHONDONTWRITEBYTECODE="1",
                    TF_CPP_MIN_LOG_LEVEL="2")
    proc_env.pop("QEMU_CPU", None)
    if cpu:
        proc_env["QEMU_CPU"] = cpu
    proc = subprocess.run(["qemu-aarch64-static", "-L", sysroot, f"{sysroot}/usr/bin/python3.11",
                           *map(str, argv)], capture_output=True, text=True, timeout=900,
                          env=proc_env)
    assert proc.returncode == 0, f"emulated aarch64 python failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def share_and_prune(model, seed, zero_fraction):
    """Gives every layer with a kernel Deep Compression's kind of weights: 16 shared values
    (linear over the kernel's range) and about `zero_fraction` of them zero; biases + 0.01."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not layer.weights:
            continue
        kernel, bias = layer.get_weights()
        book = np.linspace(-1, 1, 16).astype(np.float32) * np.abs(kernel).max()
        shared = book[np.abs(kernel[..., None] - book).argmin(-1)]
        shared[rng.random(kernel.shape) < zero_fraction] = 0.0
        layer.set_weights([shared, bias + 0.01])
    return model
