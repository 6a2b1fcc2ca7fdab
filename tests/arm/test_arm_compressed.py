"""weights="compressed" on emulated aarch64 (Cortex-A76): the aarch64 libdc_huffdecode.so runs
the FULLY_CONNECTED layers of packed float and int8 models from the compact sparse form inside
the aarch64 LiteRT wheel; int8 outputs equal the unpacked model's (XNNPACK) exactly, float ones
within 1e-5 of the output scale (summation order differs); a pruned but unclustered float model
(more than 255 distinct non-zero values per layer) on the value form too.  The C tests of the
compact form (tflite_kernels/tests/test_sparse_fc.c) run under qemu in tools/arm/test_arm.sh itself."""
import json

import numpy as np
import pytest

from arm_helpers import ROOT, built, run_aarch64_python, share_and_prune

RUNNER = ROOT / "tools" / "arm" / "litert_run.py"


def _keras_mlp():
    import keras

    keras.utils.set_random_seed(99)
    model = keras.Sequential([keras.Input((40,), batch_size=1), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(32, activation="relu6"), keras.layers.Dense(10)])
    return share_and_prune(model, seed=5, zero_fraction=0.8)


def _unclustered_mlp():
    """40 -> 128 -> 32 -> 10, every kernel pruned to 10 % (the value form's default limit) and not
    clustered: 512 and 409 distinct non-zero values (the value form), 32 (rows of codes)."""
    import keras

    keras.utils.set_random_seed(98)
    rng = np.random.default_rng(6)
    model = keras.Sequential([keras.Input((40,), batch_size=1), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(32, activation="relu6"), keras.layers.Dense(10)])
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        keep = rng.permutation(kernel.size).reshape(kernel.shape) < kernel.size // 10
        layer.set_weights([np.where(keep, kernel, 0).astype(np.float32), bias + 0.01])
    return model


KINDS = ("float", "int8", "unclustered")


@pytest.fixture(scope="module")
def outputs(arm_env, tmp_path_factory):
    from dc_keras import export

    tmp = tmp_path_factory.mktemp("arm_compressed")
    rng = np.random.default_rng(11)
    np.savez(tmp / "in.npz", x0=rng.standard_normal((5, 40)).astype(np.float32))
    model, lib, jobs = _keras_mlp(), built("aarch64", "libdc_huffdecode.so"), []
    for kind in KINDS:
        calib = rng.standard_normal((16, 40)).astype(np.float32)  # drawn for both: the same stream as before
        plain = export.to_tflite(_unclustered_mlp() if kind == "unclustered" else model, pack=False,
                                 quantize="int8" if kind == "int8" else None,
                                 representative_data=calib if kind == "int8" else None)
        (tmp / f"{kind}.tflite").write_bytes(plain)
        (tmp / f"{kind}.packed.tflite").write_bytes(export.pack(plain))
        for packed in (False, True):
            jobs.append({"model": str(tmp / f"{kind}{'.packed' if packed else ''}.tflite"),
                         "inputs": str(tmp / "in.npz"), "output": str(tmp / f"{kind}.{packed}.npz"),
                         "runtime": "dc_keras" if packed else "litert", "library": str(lib),
                         "resolver": "default", "weights": "compressed"})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    info = json.loads(run_aarch64_python(arm_env, [RUNNER, tmp / "jobs.json"], cpu="cortex-a76")
                      .strip().splitlines()[-1])
    assert info["machine"] == "aarch64"
    out = {(kind, packed): np.load(tmp / f"{kind}.{packed}.npz")["y0"]
           for kind in KINDS for packed in (False, True)}
    out["reports"] = {kind: json.loads(str(np.load(tmp / f"{kind}.True.npz")["report"])) for kind in KINDS}
    return out


def test_fc_layers_ran_compressed(outputs):
    # The three FC weight matrices run compressed; any other packed tensor (a bias) is listed as
    # decoded with its reason (compressed_report lists every packed tensor).
    for kind, report in outputs["reports"].items():
        fcs = [r for r in report if r["route"] == "compressed"]
        assert len(fcs) == 3 and all(r["op"] == "FULLY_CONNECTED" for r in fcs), (kind, report)
        for r in report:
            assert r["route"] == "compressed" or "not its weights" in r["reason"], (kind, r)


def test_int8_compressed_exact_on_aarch64(outputs):
    np.testing.assert_array_equal(outputs[("int8", True)], outputs[("int8", False)])


def test_float_compressed_close_on_aarch64(outputs):
    want = outputs[("float", False)]
    np.testing.assert_allclose(outputs[("float", True)], want, rtol=1e-5,
                               atol=1e-5 * float(np.abs(want).max()))


def test_unclustered_float_compressed_on_the_value_form_on_aarch64(outputs):
    """The two unclustered layers run on the value form (6 bytes per non-zero + 4 per row, plus the
    form's struct: the bytes of two forms of the same layer differ by 3 per non-zero from the rows
    of codes'), the third (32 values) on the rows of codes; outputs within summation order."""
    fcs = [r for r in outputs["reports"]["unclustered"] if r["route"] == "compressed"]
    assert [(tuple(r["shape"]), r["nonzeros"]) for r in fcs] == [((128, 40), 512), ((32, 128), 409), ((10, 32), 32)], fcs
    struct = fcs[2]["bytes"] - 4 * 11 - 3 * 32  # the rows of codes: 3 bytes per non-zero
    assert [r["bytes"] for r in fcs[:2]] == [struct + 4 * 129 + 6 * 512, struct + 4 * 33 + 6 * 409], fcs
    want = outputs[("unclustered", False)]
    np.testing.assert_allclose(outputs[("unclustered", True)], want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
