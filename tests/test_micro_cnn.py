"""Small int8 CNNs of the kinds microcontroller users ship, packed, in TensorFlow Lite Micro (the
PyPI tflite-micro wheel with the HuffDecode kernel, tflite_kernels/micro): tests/test_micro.py
covers an MLP only (FULLY_CONNECTED weights).

- a DS-CNN for keyword spotting (49x10 MFCC input: Conv2D + 4x (DepthwiseConv2D + BatchNorm + ReLU
  + Conv2D 1x1 + BatchNorm + ReLU) + global average pooling + Dense), 64 channels as in DS-CNN-S;
- a tiny convolutional autoencoder (anomaly detection: 2 strided Conv2D, 2 Conv2DTranspose).

Each is trained a few steps on random data through dc_keras.prune -> strip -> cluster -> strip,
exported full-int8 (dc_keras.export.to_tflite(..., quantize="int8", representative_data=...)) and
packed.  TFLM runs unpacked and packed (decode once / every invoke): outputs bit-exact, and the
arena follows docs/microcontrollers.md's sizing rule (TFLM's recording allocator).  As in
test_micro.py, a missing TFLM environment or compiler fails the tests (CI requires them).
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "mcu"))

import set_decode_mode  # noqa: E402
import tflm_env  # noqa: E402
from test_micro import _check_decode_once_arena, _decode_memory  # noqa: E402

ONCE, EACH = "DcKerasRegisterHuffDecodeTflm", "DcKerasRegisterHuffDecodeTflmEachInvoke"
N = 8  # inferences per run


def _ds_cnn():
    import keras

    inp = keras.Input((49, 10, 1))
    x = keras.layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False, name="conv0")(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn0")(x))
    for i in range(4):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"dwbn{i}")(x))
        x = keras.layers.Conv2D(64, 1, use_bias=False, name=f"pw{i}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"pwbn{i}")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(12, name="fc")(x))


def _autoencoder():
    import keras

    inp = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="enc1")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="enc2")(x)
    x = keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu", name="dec1")(x)
    return keras.Model(inp, keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="dec2")(x))


def _calibrate_batchnorm(model, x):
    """Each BatchNormalization's moving statistics set to its input's statistics on ``x`` (as
    training would leave them): with the initial ones (mean 0, variance 1) the activations shrink
    layer after layer to ~1e-5 and every example gives the same int8 output."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            a = keras.ops.convert_to_numpy(keras.Model(model.input, layer.input)(x))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(axis=(0, 1, 2)), a.var(axis=(0, 1, 2))])
    return model


MODELS = {"ds_cnn": (_ds_cnn, (49, 10, 1)), "autoencoder": (_autoencoder, (32, 32, 1))}


def _compressed_int8(name):
    """(unpacked int8 .tflite, packed, inputs): prune 75 % -> fit -> strip -> cluster 16 -> fit -> strip."""
    import keras

    import dc_keras
    from dc_keras import export

    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, *shape)).astype(np.float32)
    if name == "ds_cnn":
        y, loss = rng.integers(0, 12, len(x)), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        y, loss = x, "mse"
    pruned = dc_keras.prune(_calibrate_batchnorm(build(), x), dc_keras.schedules.ConstantSparsity(0.75, 0))
    pruned.compile(keras.optimizers.Adam(1e-3), loss)
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=4)
    clustered.compile(keras.optimizers.Adam(1e-3), loss)
    clustered.fit(x, y, batch_size=8, epochs=1, verbose=0)
    final = dc_keras.strip(clustered)
    plain = export.to_tflite(final, pack=False, quantize="int8", representative_data=x[:16])
    return plain, export.pack(plain), x[16:16 + N]


def _consumers_of_packed(data):
    """The builtin op names that read a HuffDecode output."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export._pack import packed_tensors

    m = fb.read_model(data)
    names = {v: k for k, v in vars(fb.schema.BuiltinOperator).items() if not k.startswith("_")}
    outs = {(s, o) for s, _, o in packed_tensors(m)}
    found = set()
    for s, sg in enumerate(m.subgraphs):
        for op in sg.operators:
            if any((s, int(i)) in outs for i in op.inputs):
                code = m.operatorCodes[op.opcodeIndex]
                found.add(names[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return found


@pytest.fixture(scope="module")
def cnn_models():
    """name -> (unpacked int8 .tflite, packed, inputs)."""
    return {name: _compressed_int8(name) for name in MODELS}


@pytest.fixture(scope="module")
def cnn_lib(micro_lib):
    """The wheel's HuffDecode library (tflite_kernels/micro), built once for the session (tests/conftest.py)."""
    return micro_lib


def _tflm_jobs(lib, jobs, path):
    """Results of tools/mcu/tflm_run.py's ``jobs`` (written to ``path``), one TFLM process."""
    path.write_text(json.dumps(jobs))
    r = subprocess.run([tflm_env.ensure(), os.path.join(ROOT, "tools", "mcu", "tflm_run.py"), "--lib", lib,
                        "--jobs", str(path)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cnn_runs(cnn_models, cnn_lib, tmp_path_factory):
    """name -> (files, {"plain"/"once"/"each": (result, outputs)}): every TFLM run in one process."""
    d = tmp_path_factory.mktemp("micro_cnn")
    files, jobs = {}, []
    for name in MODELS:
        plain, packed, x = cnn_models[name]
        files[name] = {"plain": plain, "packed": packed}
        for tag, data in (("plain", plain), ("packed", packed)):
            (d / f"{name}.{tag}.tflite").write_bytes(data)
        np.save(d / f"{name}.x.npy", x)
        for mode, tag, regs in (("plain", "plain", []), ("once", "packed", [ONCE]), ("each", "packed", [EACH])):
            jobs.append({"model": str(d / f"{name}.{tag}.tflite"), "registerers": regs, "arena_usage": True,
                         "input": str(d / f"{name}.x.npy"), "out": str(d / f"{name}.{mode}.npy")})
    # per-layer modes (set_decode_mode.py): the DS-CNN's 1x1 convolution kernels and its packed
    # biases (folded from BatchNorm: names joined by ';') every invoke, the rest once
    packed = files["ds_cnn"]["packed"]
    names = [n for _, _, _, n in set_decode_mode._outputs(_read(packed)) if "/pw" in n or ";" in n]
    assert sum("/pw" in n for n in names) == 4 and any(";" in n for n in names), names
    files["ds_cnn"]["mixed"] = set_decode_mode.set_modes(packed, dict.fromkeys(names, 1), default=0)
    (d / "ds_cnn.mixed.tflite").write_bytes(files["ds_cnn"]["mixed"])
    jobs.append({"model": str(d / "ds_cnn.mixed.tflite"), "registerers": [ONCE], "arena_usage": True,
                 "input": str(d / "ds_cnn.x.npy"), "out": str(d / "ds_cnn.mixed.npy")})
    results = iter(_tflm_jobs(cnn_lib, jobs, d / "jobs.json"))
    out = {}
    for name in MODELS:
        out[name] = (files[name], {})
        for mode in ("plain", "once", "each"):
            res = next(results)
            assert res["ok"], f"{name} {mode}: {res['error']}\n{res['log']}"
            out[name][1][mode] = (res, np.load(d / f"{name}.{mode}.npy"))
    res = next(results)
    assert res["ok"], f"ds_cnn mixed: {res['error']}\n{res['log']}"
    out["ds_cnn"][1]["mixed"] = (res, np.load(d / "ds_cnn.mixed.npy"))
    return out


def _read(data):
    from dc_keras import _flatbuffer as fb

    return fb.read_model(data)


def test_cnn_weights_are_packed(cnn_models):
    """The packed tensors feed the CNN ops (not only FULLY_CONNECTED, which test_micro.py covers)."""
    want = {"ds_cnn": {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}, "autoencoder": {"CONV_2D", "TRANSPOSE_CONV"}}
    for name in MODELS:
        plain, packed, _ = cnn_models[name]
        assert len(packed) < 0.6 * len(plain), (name, len(plain), len(packed))
        assert want[name] <= _consumers_of_packed(packed), (name, _consumers_of_packed(packed))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mode", ["once", "each"])
def test_packed_cnn_is_bit_exact_in_tflm(cnn_runs, name, mode):
    runs = cnn_runs[name][1]
    ref, got = runs["plain"][1], runs[mode][1]
    assert len(ref) == N and ref.dtype == np.float32 and np.isfinite(ref).all()
    assert len(np.unique(ref.reshape(N, -1), axis=0)) == N  # input-dependent outputs: the comparison means something
    assert got.dtype == ref.dtype and got.shape == ref.shape and got.tobytes() == ref.tobytes()


@pytest.mark.parametrize("name", list(MODELS))
def test_cnn_arena_follows_the_sizing_rule(cnn_runs, name):
    """docs/microcontrollers.md, *Sizing the arena*: decode once adds every packed tensor's decoded
    bytes (+ under 256 B per HuffDecode) to the unpacked model's arena, its workspace planned as
    scratch at its op alone; on these CNNs that scratch fits beside the activations alive there,
    so the whole extra arena is the decoded bytes + the per-op slack. Until 2026-12-05 decode once
    kept every workspace too (the DS-CNN: 39,120 B extra for 23,040 B decoded + 13,980 B of
    workspace). Every invoke plans at least the largest tensor's decoded + workspace bytes, and
    needs less than decode once."""
    files, runs = cnn_runs[name]
    mem = _decode_memory(files["packed"])
    plain, once, each = (runs[m][0] for m in ("plain", "once", "each"))
    _check_decode_once_arena(plain, once, mem)
    extra = once["arena_total_bytes"] - plain["arena_total_bytes"]
    assert 0 <= extra - sum(d for d, _ in mem) < 256 * len(mem), (extra, mem)
    assert sum(w for _, w in mem) >= 256 * len(mem), mem  # (so the old kernel's arena fails the line above)
    assert each["arena_head_bytes"] >= max(d + w for d, w in mem), (each, mem)
    assert plain["arena_total_bytes"] < each["arena_total_bytes"] < once["arena_total_bytes"]


def test_per_layer_modes_on_a_cnn(cnn_runs):
    """The DS-CNN with its 1x1 convolutions decoded every invoke and the rest once: bit-exact, and
    its arena between the two single-mode ones."""
    runs = cnn_runs["ds_cnn"][1]
    assert runs["mixed"][1].tobytes() == runs["plain"][1].tobytes()
    total = {m: runs[m][0]["arena_total_bytes"] for m in ("each", "mixed", "once")}
    assert total["each"] < total["mixed"] < total["once"], total


def test_cnn_arena_short_of_the_decode_once_need_fails_at_load(cnn_models, cnn_runs, cnn_lib, tmp_path):
    """Decode once plans the decoders' workspace as scratch for its first invoke: an arena short of
    what the DS-CNN uses fails at load (the interpreter's construction, AllocateTensors) with TFLM's
    message, never at that first invoke; the exact arena it reported runs bit-exact."""
    files, runs = cnn_runs["ds_cnn"]
    once = runs["once"][0]
    (tmp_path / "m.tflite").write_bytes(files["packed"])
    np.save(tmp_path / "x.npy", cnn_models["ds_cnn"][2])
    jobs = [{"model": str(tmp_path / "m.tflite"), "registerers": [ONCE], "input": str(tmp_path / "x.npy"),
             "out": str(tmp_path / f"y{short}.npy"), "arena": once["arena_total_bytes"] - short}
            for short in (16, 1024, 0)]
    r = _tflm_jobs(cnn_lib, jobs, tmp_path / "jobs.json")
    for j in r[:2]:
        assert not j["ok"] and j["stage"] == "load" and "Failed to" in j["log"], j
    need = re.search(r"Failed to resize buffer. Requested: (\d+)", r[1]["log"])
    assert need and int(need.group(1)) == once["arena_head_bytes"], (r[1]["log"], once)
    assert r[2]["ok"], r[2]
    assert np.load(tmp_path / "y0.npy").tobytes() == runs["plain"][1].tobytes()
