"""Packing ``.tflite`` files made by tfmot 0.8.1 (tf_keras), the way its users make them.

tfmot does not run on Keras 3, so tests/_tfmot_child.py builds the files in a subprocess with
``TF_USE_LEGACY_KERAS=1``: pruned + clustered float, pruned + clustered int8 through tfmot's
PCQAT, pruned with dynamic-range quantization, clustered int8 through CQAT, and plain QAT int8.
Each is packed by ``dc_keras.export.pack`` and by the ``dc-keras pack`` CLI, and must give
outputs identical to the unpacked file (plain QAT: only its int32 bias packs, the weights are kept
raw and the CLI says why).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import _export_models as em
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb
from dc_keras.export import _pack

pytestmark = [pytest.mark.legacy, pytest.mark.long]  # the tfmot child making the files: make test-long
HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["pruned_clustered", "pcqat_int8", "pruned_dynamic", "cqat_int8"]


@pytest.fixture(scope="module")
def tfmot_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfmot")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_tfmot_child.py"), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"tfmot child failed:\n{proc.stderr[-4000:]}"
    versions = json.loads((out / "versions.json").read_text())
    assert versions["tf_keras"].startswith("2.") and versions["tfmot"].startswith("0.8")
    return out


def _read(d, name):
    return (d / f"{name}.tflite").read_bytes()


@pytest.mark.parametrize("name", FILES)
def test_tfmot_file_packs_smaller_and_runs_bit_identical(tfmot_dir, name):
    plain = _read(tfmot_dir, name)
    packed = export.pack(plain)
    ops = [fb.opcode_name(m, op) for m in [fb.read_model(packed)] for op in m.subgraphs[0].operators]
    assert "HuffDecode" in ops
    # Pruned + clustered float: 16 shared values at 25 % density; pruned int8 files: 25 % density;
    # CQAT: 16 shared int8 values, dense.
    limit = {"pruned_clustered": 0.1, "cqat_int8": 0.6}.get(name, 0.5)
    assert len(packed) < len(plain) * limit, (len(plain), len(packed))
    xs = np.load(tfmot_dir / "inputs.npy")
    refs = {}
    for backend, decode in [("litert", "delegate"), ("tensorflow", "op")]:
        resolver = em.no_default_delegates(backend)
        ref = refs[backend] = em.run(em.reference_interpreter(backend, plain, experimental_op_resolver_type=resolver), xs)
        got = em.run(runtime.Interpreter(model_content=packed, backend=backend, decode=decode,
                                         experimental_op_resolver_type=resolver), xs)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref, err_msg=f"{name} via {backend}/{decode}")
    # Default options (XNNPACK): packed vs unpacked, both with XNNPACK.
    ref = em.run(em.reference_interpreter("litert", plain), xs)
    got = em.run(runtime.Interpreter(model_content=packed, backend="litert"), xs)
    np.testing.assert_array_equal(got, ref, err_msg=f"{name} with XNNPACK")
    # unpack restores every tensor and runs without our library.
    restored = export.unpack(packed)
    got = em.run(em.reference_interpreter("litert", restored,
                                          experimental_op_resolver_type=em.no_default_delegates("litert")), xs)
    np.testing.assert_array_equal(got, refs["litert"], err_msg=f"{name} after unpack")


def test_pruned_float_file_holds_both_zeros_and_positive_zeros_packs_it_smaller_with_the_same_outputs(tfmot_dir):
    """strip_pruning leaves -0.0 where a pruned weight was negative: bit-exact packing codes each
    apart from +0.0 (about a bit each in the sparse float planes of FORMAT.md §18), pack reports it,
    and positive_zeros=True packs them as +0.0, smaller, with
    the outputs of the file as made (none is exactly zero), on XNNPACK and the builtin kernels."""
    plain = _read(tfmot_dir, "pruned_float")
    default, stats = _pack.pack_with_stats(plain)
    positive, pstats = _pack.pack_with_stats(plain, positive_zeros=True)
    tensors, entries = stats["negative_zeros"]
    assert tensors >= 2 and entries > 1000 and pstats["positive_zeros"] == (tensors, entries), stats
    assert len(positive) < 0.95 * len(default), (len(positive), len(default))
    xs = np.load(tfmot_dir / "inputs.npy")
    for backend in ("litert", "tensorflow"):
        for resolver in (em.no_default_delegates(backend), None):
            kw = {"experimental_op_resolver_type": resolver} if resolver is not None else {}
            ref = em.run(em.reference_interpreter(backend, plain, **kw), xs)
            got = em.run(runtime.Interpreter(model_content=positive, backend=backend, **kw), xs)
            np.testing.assert_array_equal(got, ref, err_msg=f"{backend} {resolver}")


def test_cli_pack_of_tfmot_file_equals_api_and_leaves_input(tfmot_dir, tmp_path):
    src = tfmot_dir / "pcqat_int8.tflite"
    before = src.read_bytes()
    out = tmp_path / "packed.tflite"
    proc = subprocess.run([sys.executable, "-m", "dc_keras.cli", "pack", str(src), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert src.read_bytes() == before
    assert out.read_bytes() == export.pack(before)
    assert "x)" in proc.stdout  # "... -> packed: N B (R.RRx)"


@pytest.mark.parametrize("name", FILES)
def test_inspect_says_what_pack_left_and_why(tfmot_dir, name):
    # docs/migrating_from_tfmot.md: `dc-keras inspect` lists every constant tensor of a tfmot file
    # with why it was or was not packed.
    plain = _read(tfmot_dir, name)
    before = {r.name: r for r in export.inspect(plain).rows}
    after = {r.name: r for r in export.inspect(export.pack(plain)).rows}
    assert before.keys() == after.keys()
    for tensor, row in after.items():
        assert (row.status == "packed") == (before[tensor].status == "packable"), tensor
        assert row.reason, tensor
        if row.status != "packed":
            assert row.status == before[tensor].status and row.reason == before[tensor].reason, tensor
    assert {r.status for r in after.values()} >= {"packed", "skipped"}


def test_plain_qat_file_packs_only_its_int32_bias_and_the_cli_says_why_the_weights_stay(tfmot_dir, tmp_path):
    # tfmot's plain QAT: dense int8 weights with ~256 distinct values each, which no layout shrinks
    # by min_saving; only fc1's int32 bias packs (FORMAT §17, version 4). The CLI names the weights
    # it kept raw and points at inspect; a decoder of version 3 or lower (--version 3) gets the file
    # back unchanged, and the CLI says so.
    src = tfmot_dir / "qat_int8.tflite"
    plain = src.read_bytes()
    rows = export.inspect(plain).rows
    packable = [r for r in rows if r.status == "packable"]
    assert [(r.dtype, r.reason) for r in packable] == [("int32", "int_planes")], packable
    assert all(r.reason for r in rows)
    weights = [r for r in rows if r.dtype == "int8" and r.status == "kept"]
    assert weights and all("min_saving" in r.reason or "no smaller" in r.reason for r in weights), weights
    packed = export.pack(plain)
    assert len(plain) - len(packed) >= packable[0].raw_bytes - packable[0].packed_bytes - 64
    xs = np.load(tfmot_dir / "inputs.npy")
    for backend, decode in [("litert", "delegate"), ("tensorflow", "op")]:
        resolver = em.no_default_delegates(backend)
        ref = em.run(em.reference_interpreter(backend, plain, experimental_op_resolver_type=resolver), xs)
        got = em.run(runtime.Interpreter(model_content=packed, backend=backend, decode=decode,
                                         experimental_op_resolver_type=resolver), xs)
        np.testing.assert_array_equal(got, ref, err_msg=f"qat_int8 via {backend}/{decode}")
    out = tmp_path / "packed.tflite"
    proc = subprocess.run([sys.executable, "-m", "dc_keras.cli", "pack", str(src), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == packed and src.read_bytes() == plain
    kept = f"kept raw: {len(weights)} constant tensor(s), {sum(r.raw_bytes for r in weights)} B"
    assert kept in proc.stdout and weights[0].name in proc.stdout and "inspect" in proc.stdout, proc.stdout
    assert export.pack(plain, version=3) == plain
    out3 = tmp_path / "packed_v3.tflite"
    proc = subprocess.run([sys.executable, "-m", "dc_keras.cli", "pack", "--version", "3", str(src), str(out3)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no tensor packed: written unchanged" in proc.stdout and "inspect" in proc.stdout, proc.stdout
    assert out3.read_bytes() == plain


def test_the_docs_tfmot_sizes_are_these_files(tfmot_dir):
    """README.md and docs/migrating_from_tfmot.md quote the packed sizes of these files (the child is
    seeded: the same bytes each run): pruned + clustered float 15x, PCQAT int8 3.9x, CQAT int8 1.9x,
    plain QAT 70,928 -> 70,528 B. A change to pack or to the child that moves them shows up here."""
    def ratio(name):
        plain = _read(tfmot_dir, name)
        return f"{len(plain) / len(export.pack(plain)):.1f}x"

    with open(os.path.join(os.path.dirname(HERE), "README.md")) as f:
        readme = " ".join(f.read().split())
    with open(os.path.join(os.path.dirname(HERE), "docs", "migrating_from_tfmot.md")) as f:
        migrating = " ".join(f.read().split())
    pc = _read(tfmot_dir, "pruned_clustered")
    assert f"a pruned + clustered tfmot file shrinks {round(len(pc) / len(export.pack(pc)))}x as a file, its PCQAT " \
           f"int8 version {ratio('pcqat_int8')}" in readme
    qat = _read(tfmot_dir, "qat_int8")
    assert f"({len(qat):,} -> {len(export.pack(qat)):,} B on the test's model)" in migrating
    assert f"{ratio('cqat_int8')} and {ratio('pcqat_int8')} on the test's model" in migrating
