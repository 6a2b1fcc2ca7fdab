"""TensorFlow Lite Micro runs packed models: the HuffDecode TFLM kernel (tflite_kernels/micro) in
the PyPI tflite-micro wheel's Python interpreter on x86, registered by name.

A small LeNet-300-100-style MLP (196-96-48-10, 10 % of the weights kept, 32 shared values per
layer), exported float32 and full-int8, each run by TFLM unpacked and packed: the packed model's
outputs must equal the unpacked model's bit for bit, in both decode modes (once in Prepare /
every invoke) and with per-layer modes set in the model.  Also: bad input fails with the
kernel's message, and the registerer refuses a resolver whose layout is not the pinned wheel's.
All TFLM runs of the file happen in one subprocess in the TFLM venv (tools/mcu/tflm_env.py).
"""
import ctypes
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

import _cbuild

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "mcu"))

import set_decode_mode  # noqa: E402
import tflm_env  # noqa: E402


ONCE, EACH = "DcKerasRegisterHuffDecodeTflm", "DcKerasRegisterHuffDecodeTflmEachInvoke"


def _small_model():
    import keras

    rng = np.random.default_rng(0)
    inp = keras.Input((14, 14, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(96, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(48, activation="relu", name="fc2")(x)
    out = keras.layers.Dense(10, activation="softmax", name="fc3")(x)
    model = keras.Model(inp, out)
    centers = np.linspace(-0.5, 0.5, 32).astype(np.float32)
    for layer in model.layers:
        if not layer.get_weights():
            continue
        k, b = layer.get_weights()
        k = np.where(rng.random(k.shape) < 0.1, centers[rng.integers(0, 32, k.shape)], 0)
        layer.set_weights([k.astype(np.float32), (0.1 * rng.standard_normal(b.shape)).astype(np.float32)])
    return model, rng.random((16, 14, 14, 1)).astype(np.float32)


def _int16x8(model, x):
    """``model`` converted with 16-bit activations and int8 weights (TFLite's int16x8 mode: int64
    biases, FORMAT.md §16), 70 % of its biases zeroed first so that they pack."""
    import tensorflow as tf

    rng = np.random.default_rng(7)
    for layer in model.layers:
        if layer.get_weights():
            k, b = layer.get_weights()
            layer.set_weights([k, np.where(rng.random(b.shape) < 0.3, b, 0).astype(np.float32)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv.convert()


PLAN = "OfflineMemoryAllocation"


def _plan_words(data):
    """The int32 words of ``data``'s TFLM offline memory plan (metadata "OfflineMemoryAllocation")."""
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(data)
    entries = [e for e in m.metadata or [] if fb.tensor_name(e) == PLAN]
    assert len(entries) == 1
    return np.frombuffer(fb.buffer_bytes(m, entries[0].buffer), "<i4")


def _with_offline_plan(data, constant=-1, count=None):
    """``data`` with a TFLM offline memory plan (TFLM's docs/memory_management.md): every tensor
    without constant data at its own 16-byte aligned arena offset, one after the other (no reuse:
    valid whatever the lifetimes, and larger than what TFLM's online planner makes, so a run shows
    whether TFLM followed it); constants get ``constant``; ``count`` overrides the offsets count."""
    from dc_keras import _flatbuffer as fb
    from dc_keras._flatbuffer import schema

    m = fb.read_model(data)
    offsets, pos = [], 0
    for sg in m.subgraphs:
        for t in sg.tensors:
            if fb.buffer_bytes(m, t.buffer):
                offsets.append(constant)
                continue
            offsets.append(pos)
            pos += -(-int(np.prod([int(d) for d in t.shape])) * 4 // 16) * 16  # float32 / int32 tensors
    buf = schema.BufferT()
    buf.data = np.frombuffer(np.array([1, len(m.subgraphs), len(offsets) if count is None else count, *offsets],
                                      "<i4").tobytes(), np.uint8)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = PLAN, len(m.buffers) - 1
    m.metadata = list(m.metadata or []) + [entry]
    return fb.write_model(m)


def _all_runtime_plan(data):
    """``data`` with a TFLM offline memory plan that leaves every tensor to the run time (-1)."""
    words = _plan_words(_with_offline_plan(data))
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(_with_offline_plan(data))
    entry = next(e for e in m.metadata if fb.tensor_name(e) == PLAN)
    m.buffers[entry.buffer].data = np.frombuffer(np.array([*words[:3], *([-1] * words[2])], "<i4").tobytes(), np.uint8)
    return fb.write_model(m)


def _decode_memory(data):
    """(decoded bytes, dc_workspace_size bytes) of each packed weight of ``data``, in the order
    packed_tensors lists them: what a decode-once HuffDecode takes from the arena."""
    from dc_keras import _flatbuffer as fb
    from dc_keras._native import load_library
    from dc_keras.export._pack import packed_tensors

    lib = load_library()
    m = fb.read_model(data)
    out = []
    for s, p, o in packed_tensors(m):
        raw = bytes(fb.buffer_bytes(m, m.subgraphs[s].tensors[p].buffer))
        ws = ctypes.c_size_t()
        assert lib.dc_workspace_size(raw, ctypes.c_size_t(len(raw)), ctypes.byref(ws)) == 0
        t = m.subgraphs[s].tensors[o]
        out.append((int(np.prod(t.shape)) * fb.NUMPY_DTYPES[t.type].itemsize, ws.value))
    return out


def _check_decode_once_arena(plain, once, mem):
    """docs/microcontrollers.md's sizing rule for decode once, on TFLM's recording allocator's
    figures (``plain``: the unpacked model's run, ``once``: the packed model's; ``mem``:
    ``_decode_memory``): the persistent part of the arena (tail) grows by the decoded bytes plus
    under 256 B per HuffDecode (op state, tensor structs, scratch handle), not by the decoders'
    workspaces, which until 2026-12-05 stayed allocated there for the interpreter's lifetime; the
    planned part (head) grows by at most the largest workspace (a scratch buffer planned at its
    op alone, sharing memory with the tensors not alive there). Returns the (tail, head) growth."""
    tail = once["arena_tail_bytes"] - plain["arena_tail_bytes"]
    head = once["arena_head_bytes"] - plain["arena_head_bytes"]
    decoded = sum(d for d, _ in mem)
    assert 0 <= tail - decoded < 256 * len(mem), (tail, decoded, mem)
    assert 0 <= head <= max(w for _, w in mem), (head, mem)
    return tail, head


@pytest.fixture(scope="module")
def lib_path(micro_lib):
    """The wheel's library, built once for the session (tests/conftest.py)."""
    return micro_lib


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    from dc_keras import export

    d = tmp_path_factory.mktemp("micro_models")
    model, x = _small_model()
    files = {"float": export.to_tflite(model, pack=False),
             "int8": export.to_tflite(model, pack=False, quantize="int8", representative_data=x)}
    files["float.packed"] = export.pack(files["float"])
    files["int8.packed"] = export.pack(files["int8"])
    files["int16x8"] = _int16x8(_small_model()[0], x)
    files["int16x8.packed"] = export.pack(files["int16x8"])
    files["float.packed.each"] = set_decode_mode.set_modes(files["float.packed"], {}, default=1)
    files["float.plan"] = _with_offline_plan(files["float"])
    # no Flatten (whose shape ops read constants before any HuffDecode runs): HuffDecode goes first
    flat = keras.Sequential([keras.Input((196,)), *(keras.layers.Dense.from_config(layer.get_config())
                                                    for layer in model.layers[2:])])
    for new, old in zip(flat.layers, model.layers[2:]):
        new.set_weights(old.get_weights())
    files["flat.packed.external"] = export.pack(export.to_tflite(flat, pack=False), buffers="external")
    files["float.plan.packed"] = export.pack(files["float.plan"])
    paths = {}
    for name, data in files.items():
        paths[name] = str(d / f"{name}.tflite")
        with open(paths[name], "wb") as f:
            f.write(data)
    np.save(d / "x.npy", x)
    return d, paths, files


def _run_jobs(lib_path, d, jobs):
    py = tflm_env.ensure()
    spec = d / f"jobs{len(os.listdir(d))}.json"
    spec.write_text(json.dumps(jobs))
    r = subprocess.run([py, os.path.join(ROOT, "tools", "mcu", "tflm_run.py"), "--lib", lib_path,
                        "--jobs", str(spec)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(lib_path, models):
    """Every TFLM run of the file, in one process: name -> (result, outputs); "bad" -> results."""
    d, paths, files = models
    x = str(d / "x.npy")
    plan = {}
    for kind in ("float", "int8", "int16x8"):
        plan[kind] = {"model": paths[kind], "registerers": [], "arena_usage": True}
        plan[f"{kind}.once"] = {"model": paths[f"{kind}.packed"], "registerers": [ONCE], "arena_usage": True}
        plan[f"{kind}.each"] = {"model": paths[f"{kind}.packed"], "registerers": [EACH], "arena_usage": True}
    plan["float.options_each"] = {"model": paths["float.packed.each"], "registerers": [ONCE], "arena_usage": True}
    plan["float.plan"] = {"model": paths["float.plan"], "registerers": [], "arena_usage": True}
    plan["float.plan.once"] = {"model": paths["float.plan.packed"], "registerers": [ONCE], "arena_usage": True}
    plan["float.plan.each"] = {"model": paths["float.plan.packed"], "registerers": [EACH], "arena_usage": True}
    jobs = []
    for name, job in plan.items():
        jobs.append(dict(job, input=x, out=str(d / f"{name}.out.npy")))
    bad = _bad_jobs(d, paths, files, x)
    results = _run_jobs(lib_path, d, jobs + bad)
    out = {"bad": results[len(jobs):]}
    for (name, _job), res in zip(plan.items(), results):
        assert res["ok"], f"{name}: {res['error']}\n{res['log']}"
        out[name] = (res, np.load(d / f"{name}.out.npy"))
    return out


def _bad_jobs(d, paths, files, x):
    """A flipped stream byte (both modes), two-byte custom options, no registerer, the same
    registerer twice, a packed int4 weight, a model packed with buffers="external" (both
    modes) and an arena too small for the decoded fc1 (both modes): each must fail, with the
    kernel's / TFLM's message."""
    from dc_keras import _flatbuffer as fb

    from dc_keras.export._pack import packed_tensors

    data = files["float.packed"]
    m = fb.read_model(data)
    raw = max((fb.buffer_bytes(m, m.subgraphs[s].tensors[p].buffer) for s, p, _ in packed_tensors(m)),
              key=len)  # the largest packed tensor (file order is not tensor order)
    assert len(raw) > 240
    i = data.index(raw)
    corrupt = bytearray(data)
    corrupt[i + 120] ^= 0x10  # inside that packed tensor, past its header
    for sg in m.subgraphs:
        for op in sg.operators:
            if fb.is_huffdecode_code(m.operatorCodes[op.opcodeIndex]):
                op.customOptions = [1, 1]
    int4 = _int4_packed(data)
    for name, blob in (("corrupt", bytes(corrupt)), ("options", fb.write_model(m)), ("int4", int4)):
        with open(d / f"bad_{name}.tflite", "wb") as f:
            f.write(blob)
    c, o = str(d / "bad_corrupt.tflite"), str(d / "bad_options.tflite")
    return [{"model": c, "registerers": [ONCE], "input": x, "out": str(d / "b1.npy")},
            {"model": c, "registerers": [EACH], "input": x, "out": str(d / "b2.npy")},
            {"model": o, "registerers": [ONCE], "input": x, "out": str(d / "b3.npy")},
            {"model": paths["float.packed"], "registerers": [], "input": x, "out": str(d / "b4.npy")},
            {"model": paths["float.packed"], "registerers": [ONCE, ONCE], "input": x, "out": str(d / "b5.npy")},
            {"model": str(d / "bad_int4.tflite"), "registerers": [ONCE], "input": x, "out": str(d / "b6.npy")},
            {"model": paths["flat.packed.external"], "registerers": [ONCE], "input": x, "out": str(d / "b7.npy")},
            {"model": paths["flat.packed.external"], "registerers": [EACH], "input": x, "out": str(d / "b8.npy")},
            # an arena that holds TFLM's structures and the activations but not fc1's 75,264 decoded bytes
            {"model": paths["float.packed"], "registerers": [ONCE], "input": x, "out": str(d / "b9.npy"),
             "arena": 40_000},
            {"model": paths["float.packed"], "registerers": [EACH], "input": x, "out": str(d / "b10.npy"),
             "arena": 40_000}]


def _int4_packed(data):
    """The first packed weight of ``data`` replaced by a valid packed int4 tensor of its shape (as
    ``pack`` writes for int4 weights, FORMAT.md §13), its output tensor typed INT4."""
    import ml_dtypes

    from dc_keras import _flatbuffer as fb
    from dc_keras import codec
    from dc_keras.export._pack import packed_tensors

    m = fb.read_model(data)
    s, p, o = packed_tensors(m)[0]
    packed, out = m.subgraphs[s].tensors[p], m.subgraphs[s].tensors[o]
    shape = [int(n) for n in out.shape]
    enc = codec.encode((np.arange(int(np.prod(shape))) % 7 - 3).astype(ml_dtypes.int4).reshape(shape))
    m.buffers[packed.buffer].data = np.frombuffer(enc, np.uint8)
    packed.shape = np.array([len(enc)], np.int32)
    out.type = fb.schema.TensorType.INT4
    return fb.write_model(m)


@pytest.mark.parametrize("kind", ["float", "int8", "int16x8"])
@pytest.mark.parametrize("mode", ["once", "each"])
def test_packed_model_is_bit_exact_in_tflm(runs, models, kind, mode):
    """int16x8: the TFLM kernel decodes the int64 biases (format version 3, FORMAT.md §16); int8
    and int16x8: their int32 / int64 biases take the integer planes (§17, version 4)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import codec
    from dc_keras.export._pack import packed_tensors

    if kind == "int16x8":
        m = fb.read_model(models[2]["int16x8.packed"])
        assert sum(m.subgraphs[s].tensors[o].type == fb.schema.TensorType.INT64 for s, _, o in packed_tensors(m)) == 2
    if kind != "float":
        m = fb.read_model(models[2][f"{kind}.packed"])
        layouts = [codec.info(fb.buffer_bytes(m, m.subgraphs[s].tensors[p].buffer))["layout"]
                   for s, p, _ in packed_tensors(m)]
        assert "int_planes" in layouts, layouts
    ref = runs[kind][1]
    got = runs[f"{kind}.{mode}"][1]
    assert ref.shape == (16, 10) and ref.dtype == np.float32
    assert np.isfinite(ref).all() and len(np.unique(ref, axis=0)) == len(ref)  # real, input-dependent
    assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()


def test_decode_modes_trade_arena_for_invoke_time(runs, models):
    """Decode-once keeps every decoded layer in the arena; decode-every-invoke needs only the
    largest layer at a time (plus planner slack), so its arena is smaller but still holds fc1."""
    once = runs["float.once"][0]["arena_total_bytes"]
    each = runs["float.each"][0]["arena_total_bytes"]
    plain = runs["float"][0]["arena_total_bytes"]
    fc1, all_weights = 196 * 96 * 4, (196 * 96 + 96 * 48 + 48 * 10) * 4
    assert once >= plain + all_weights
    assert fc1 <= each < once - (all_weights - fc1) // 2
    # docs/microcontrollers.md's sizing rule: decode once adds each packed weight's decoded bytes
    # to the unpacked model's arena, plus under 256 B per HuffDecode, and plans the workspaces as
    # scratch (_check_decode_once_arena); every invoke needs the largest weight and its workspace
    # planned at once
    _, _, files = models
    for kind in ("float", "int8"):
        mem = _decode_memory(files[f"{kind}.packed"])
        _check_decode_once_arena(runs[kind][0], runs[f"{kind}.once"][0], mem)
        assert runs[f"{kind}.each"][0]["arena_head_bytes"] >= max(d + w for d, w in mem), (kind, mem)
    # per-layer custom options (all "every invoke") override the decode-once registration
    assert runs["float.options_each"][0]["arena_total_bytes"] == each
    assert runs["float.options_each"][1].tobytes() == runs["float"][1].tobytes()


def test_bad_models_fail_with_the_kernels_message(runs, models):
    r = runs["bad"]
    assert not any(j["ok"] for j in r), r
    # both modes: Prepare checks the packed bytes' CRC, so the corrupt tensor fails there
    # (AllocateTensors), not at an invoke (every invoke did until 2026-12-03; decode once, which
    # decodes at the first invoke since 2026-12-05, failed in Prepare's decode before)
    for j in r[:2]:
        assert "HuffDecode (output tensor" in j["log"], j
        assert "invalid packed tensor: checksum mismatch" in j["log"], j
        assert "decoding failed" not in j["log"] and j["stage"] == "load", j
    assert "custom options must be empty or one byte" in r[2]["log"], r[2]
    assert "CUSTOM" in r[3]["log"] or "HuffDecode" in r[3]["log"], r[3]  # op not registered
    assert "already registered" in r[4]["log"], r[4]
    # a valid packed int4 weight: says the kernel does not decode that type and what to do, not
    # that the model was edited
    assert "the TFLM kernel does not decode int4 tensors" in r[5]["log"], r[5]
    assert "dc-keras unpack" in r[5]["log"] and "edited after packing" not in r[5]["log"], r[5]
    # packed with buffers="external" (data after the flatbuffer, which TFLM does not read): the
    # first HuffDecode says so and what to do, in both modes (it said "must be a constant")
    for j in r[6:8]:
        assert "HuffDecode (output tensor" in j["log"] and "has no data in the flatbuffer" in j["log"], j
        assert "--buffers external" in j["log"] and "--buffers inline" in j["log"], j
    # arena too small for fc1 (96x196 float32): decode-once names the tensor, its decoded bytes
    # and both fixes; every-invoke fails in TFLM's planner (the decoded tensor is planned memory
    # there), with the bytes it needs; neither crashes the process
    assert (f"arena too small for the {196 * 96 * 4} decoded bytes; enlarge the arena "
            "or decode this layer every invoke") in r[8]["log"], r[8]
    assert r[8]["stage"] == r[9]["stage"] == "load", (r[8], r[9])
    need = re.search(r"Failed to resize buffer. Requested: (\d+), available (\d+)", r[9]["log"])
    assert need and int(need.group(2)) < 40_000 < int(need.group(1)), r[9]
    assert int(need.group(1)) == runs["float.each"][0]["arena_head_bytes"], (need.group(1), runs["float.each"][0])


def test_registerer_refuses_an_unknown_resolver_layout(lib_path):
    """The wheel route writes into the resolver's memory: a buffer that does not look like the
    pinned wheel's MicroMutableOpResolver<200> is refused before anything is written."""
    lib = ctypes.CDLL(lib_path)
    reg = lib.DcKerasRegisterHuffDecodeTflm
    reg.restype = ctypes.c_bool
    reg.argtypes = [ctypes.c_void_p]
    size = 13624  # sizeof(MicroMutableOpResolver<200>) on LP64 (tflm_abi.h)
    zeros = (ctypes.c_uint8 * size)()
    assert reg(ctypes.addressof(zeros)) is False  # NULL vtable
    assert bytes(zeros) == bytes(size)
    # a plausible resolver: vtable set, two builtins (FULLY_CONNECTED=9, RELU=19) in both tables
    fake = (ctypes.c_uint8 * size)()
    base = ctypes.addressof(fake)
    ctypes.c_uint64.from_address(base).value = 0x1000
    for i, code in enumerate((9, 19)):
        ctypes.c_int32.from_address(base + 8 + 56 * i + 40).value = code
        ctypes.c_int32.from_address(base + 11212 + 4 * i).value = code
    ctypes.c_uint32.from_address(base + 11208).value = 2
    ctypes.c_uint32.from_address(base + 13616).value = 2
    assert reg(base) is True
    assert ctypes.c_uint32.from_address(base + 11208).value == 3
    assert ctypes.c_int32.from_address(base + 8 + 56 * 2 + 40).value == 32  # BuiltinOperator_CUSTOM
    name = ctypes.c_char_p(ctypes.c_void_p.from_address(base + 8 + 56 * 2 + 48).value).value
    assert name == b"HuffDecode"
    assert reg(base) is False  # a second registration of the same name is refused
    # a builtin table that disagrees with the registrations: refused, nothing written
    ctypes.c_int32.from_address(base + 11212).value = 77
    before = bytes(fake)
    assert reg(base) is False and bytes(fake) == before


def _stand_in_runs(tmp_path, strip=False):
    """tools/mcu/tflm_mock_ctx.c (the kernel driven through its registration by a stand-in for
    TFLM's context, ASan + UBSan where the compiler has them) built in ``tmp_path``, the decoder
    from the project's native library (compiling dc_codec.c with the sanitizers took 20 s of CPU):
    returns run(mode, packed bytes, raw array, *args) -> ({key: value words}, kernel messages)."""
    import shutil

    from dc_keras._native import load_library

    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    k = os.path.join(ROOT, "tflite_kernels")
    native = load_library()._name
    exe = tmp_path / ("mock_strip" if strip else "mock")
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", f"-I{k}/include", f"-I{k}/micro",
             *([STRIP] if strip else [])]
    inputs = [os.path.join(ROOT, "tools", "mcu", "tflm_mock_ctx.c"), os.path.join(k, "micro", "huffdecode_tflm.c"),
              native]
    rpath = [f"-Wl,-rpath,{os.path.dirname(native)}"]
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    r = _cbuild.build(cc, san + flags, inputs, exe, ldflags=rpath, timeout=300)
    if r.returncode != 0:  # a compiler without the sanitizers' runtime
        r = _cbuild.build(cc, flags, inputs, exe, ldflags=rpath, objdir=str(exe) + ".plain", timeout=300)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
    types = {np.dtype(np.int8): 9, np.dtype(np.float32): 1}

    def run(mode, packed, raw, *args):
        (tmp_path / "p.bin").write_bytes(packed)
        (tmp_path / "r.bin").write_bytes(raw.tobytes())
        r = subprocess.run([str(exe), str(mode), str(tmp_path / "p.bin"), str(tmp_path / "r.bin"),
                            str(types[raw.dtype]), *map(str, raw.shape), *map(str, args)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and not r.stderr.strip(), (r.returncode, r.stdout, r.stderr[-3000:])
        facts = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines() if not ln.startswith("log ")}
        return facts, [ln[4:] for ln in r.stdout.splitlines() if ln.startswith("log ")]
    return run


def test_kernel_lifecycle_with_a_stand_in_context(tmp_path):
    """The kernel driven as TFLM drives it, by tools/mcu/tflm_mock_ctx.c, in the orders the wheel
    cannot make (Prepare twice, before and after the first invoke). Decode once: Prepare takes
    the decoded bytes alone from the persistent arena and asks for the workspace as a scratch
    buffer (until 2026-12-05 it took both persistent and asked for no scratch); the first invoke
    decodes with it, the later ones touch nothing; a second Prepare allocates nothing (before the
    first invoke it asks for the scratch buffer again, as a new plan needs). A format version 1
    tensor (checksum over the decoded bytes) still decodes in Prepare, its workspace persistent.
    Every invoke: no persistent bytes, the scratch workspace at each invoke. Corrupt bytes and a
    persistent arena too small fail Prepare with their messages; the stripped build fails the
    same way with none."""
    import ctypes

    from dc_keras import codec
    from dc_keras._native import load_library

    rng = np.random.default_rng(3)
    raw = np.where(rng.random((64, 96)) < 0.2, rng.integers(-8, 8, (64, 96)), 0).astype(np.int8)
    packed = {v: codec.encode(raw, version=v) for v in (None, 1)}
    assert codec.info(packed[None])["version"] >= 2 and codec.info(packed[1])["version"] == 1
    lib = load_library()
    ws = {}
    for v, data in packed.items():
        n = ctypes.c_size_t()
        assert lib.dc_workspace_size(data, ctypes.c_size_t(len(data)), ctypes.byref(n)) == 0
        ws[v] = n.value
    assert ws[None] > 1000 and raw.nbytes % 16 == 0  # (the stand-in aligns allocations to 16 B)
    run = _stand_in_runs(tmp_path)

    once, log = run(0, packed[None], raw)
    assert not log and once["prepare"] == ["0"], (once, log)
    assert once["prepare_persistent"] == [str(raw.nbytes)], once  # the decoded bytes, no workspace
    assert once["prepare_scratch_requests"] == ["1"] and once["prepare_scratch_bytes"] == [str(ws[None])], once
    assert once["output_set_by_prepare"] == ["1"]  # before planning: TFLM plans no memory for it
    assert once["reprepare_before_invoke"] == ["0", "persistent", "0", "scratch_requests", "2"], once
    assert once["invoke1"] == ["0", "decoded", "1", "scratch_gets", "1"], once
    assert once["invoke2"] == once["invoke3"] == ["0", "decoded", "1", "scratch_gets", "0"], once
    assert once["reprepare_after_invoke"] == ["0", "persistent", "0", "scratch_requests", "0", "same_output", "1"]

    each, log = run(1, packed[None], raw)
    assert not log and each["prepare"] == ["0"] and each["prepare_persistent"] == ["0"], (each, log)
    assert each["prepare_scratch_bytes"] == [str(ws[None])] and each["output_set_by_prepare"] == ["0"], each
    assert all(each[f"invoke{i}"] == ["0", "decoded", "1", "scratch_gets", "1"] for i in (1, 2, 3)), each

    v1, log = run(0, packed[1], raw)
    assert not log and v1["prepare"] == ["0"] and v1["decoded_after_prepare"] == ["1"], (v1, log)
    assert v1["prepare_persistent"] == [str(raw.nbytes + -(-ws[1] // 16) * 16)], (v1, ws)
    assert v1["prepare_scratch_requests"] == ["0"] and v1["invoke1"][-1] == "0", v1

    errors = [(0, packed[None], ["--corrupt"], "invalid packed tensor: checksum mismatch"),
              (1, packed[None], ["--corrupt"], "invalid packed tensor: checksum mismatch"),
              (0, packed[None], ["--persistent-limit", raw.nbytes - 16],
               f"arena too small for the {raw.nbytes} decoded bytes; enlarge the arena or decode this layer every invoke"),
              (0, packed[1], ["--persistent-limit", raw.nbytes + 64],
               f"arena too small for the {ws[1]}-byte workspace of this format version 1 tensor")]
    strip_run = _stand_in_runs(tmp_path, strip=True)
    for mode, data, args, want in errors:
        got, log = run(mode, data, raw, *args)
        assert got["prepare"] == ["1"] and len(log) == 1 and want in log[0], (args, got, log)
        assert got["prepare_scratch_requests"] == ["0"], (args, got)
        stripped, log = strip_run(mode, data, raw, *args)
        assert stripped == got and not log, (args, stripped, log)


def test_empty_version1_tensor_decoded_once_has_no_undefined_behaviour(tmp_path, codec_ubsan_obj):
    """An empty tensor (0 elements) packed at format version 1, decoded once (in Prepare, its
    checksum covering the decoded bytes): the kernel has no output buffer for it (NULL, 0 bytes),
    and dc_codec.c's version 1 checksum computed NULL + 0 from it, undefined in C; clang's UBSan
    stopped fuzz/fuzz_tflm.c on its first seed of this kind (2026-12-05, reproducer in
    tflite_kernels/fuzz/regressions/tflm/). The stand-in context (tools/mcu/tflm_mock_ctx.c) with
    the kernel and the decoder built by clang with -fsanitize=undefined runs it cleanly in both
    modes: Prepare and three invokes succeed (dc_codec.c's UBSan object: codec_ubsan_obj in
    tests/conftest.py, the same flags)."""
    import shutil

    from dc_keras import codec

    clang = shutil.which("clang")  # codec_ubsan_obj skipped without it
    k = os.path.join(ROOT, "tflite_kernels")
    exe = tmp_path / "mock_ubsan"
    r = _cbuild.build(clang, ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined",
                              "-fno-sanitize-recover=all", f"-I{k}/include", f"-I{k}/micro"],
                      [os.path.join(ROOT, "tools", "mcu", "tflm_mock_ctx.c"),
                       os.path.join(k, "micro", "huffdecode_tflm.c"), codec_ubsan_obj], exe, ldflags=["-lm"], timeout=300)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
    raw = np.zeros((0, 4), np.int16)
    packed = codec.encode(raw, version=1)
    assert codec.info(packed)["version"] == 1
    (tmp_path / "p.bin").write_bytes(packed)
    (tmp_path / "r.bin").write_bytes(b"")
    for mode in (0, 1):
        r = subprocess.run([str(exe), str(mode), str(tmp_path / "p.bin"), str(tmp_path / "r.bin"), "7", "0", "4"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and not r.stderr.strip(), (mode, r.stdout, r.stderr[-3000:])
        facts = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines() if not ln.startswith("log ")}
        assert facts["prepare"] == ["0"], (mode, facts)
        assert all(facts[f"invoke{i}"][0] == "0" for i in (1, 2, 3)), (mode, facts)


@pytest.mark.long  # a second TFLM interpreter run (~30 s); test_packed_model_is_bit_exact_in_tflm stays in make test
def test_docs_python_snippet_runs_as_written(models, tmp_path, make_env):
    """docs/microcontrollers.md's Python block, run as the doc says (from the repository root,
    with the TFLM venv's python, after `make -C tflite_kernels/micro`), on a packed model: it must
    run as written (no undefined names), with only the model's path swapped in."""

    with open(os.path.join(ROOT, "docs", "microcontrollers.md")) as f:
        doc = f.read()
    block = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    assert "model.packed.tflite" in block
    _, paths, _ = models
    app = tmp_path / "app.py"
    app.write_text(block.replace("model.packed.tflite", paths["float.packed"]) +
                   "\nimport numpy as np\n"
                   "interp.set_input(np.zeros((1, 14, 14, 1), np.float32), 0)\n"
                   "interp.invoke()\n"
                   "print('outputs', interp.get_output(0).shape)\n")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels", "micro")], check=True, env=make_env)
    r = subprocess.run([tflm_env.ensure(), str(app)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "outputs (1, 10)" in r.stdout


def test_set_decode_mode_cli_errors_and_never_touches_its_input(models, tmp_path):
    """tools/mcu/set_decode_mode.py, as docs/microcontrollers.md shows it: IN is never modified
    (also when OUT names the same file), a bad name or a missing file is one line naming the
    problem and the fix with status 1 and nothing written, no temporary file is left."""
    _, paths, files = models
    src = tmp_path / "m.packed.tflite"
    src.write_bytes(files["float.packed"])
    tool = os.path.join(ROOT, "tools", "mcu", "set_decode_mode.py")

    def run(*args):
        return subprocess.run([sys.executable, tool, *map(str, args)], capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))

    from dc_keras import _flatbuffer as fb
    from dc_keras.export._pack import packed_tensors

    m = fb.read_model(files["float.packed"])
    name = fb.tensor_name(m.subgraphs[0].tensors[packed_tensors(m)[0][2]])
    ok = run(src, tmp_path / "out.tflite", "--each-invoke", name)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out.tflite").read_bytes() == set_decode_mode.set_modes(files["float.packed"], {name: 1})
    for args, what in [((src, src, "--each-invoke", name), "same file as the input"),
                       ((src, tmp_path / "." / src.name, "--all-each-invoke"), "same file as the input"),
                       ((src, tmp_path / "o.tflite", "--each-invoke", "no/such/tensor"), f"outputs are: {name!r} = @0:"),
                       ((src, tmp_path / "o.tflite", "--once", name, "--each-invoke", name),
                        "both --once and --each-invoke"),
                       ((tmp_path / "missing.tflite", tmp_path / "o.tflite", "--all-each-invoke"),
                        "check the path"),
                       ((src, tmp_path / "o.tflite", "--each-invoke"), "nothing to set"),  # wrote a copy
                       ((src, tmp_path / "o.tflite"), "nothing to set")]:
        r = run(*args)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("set_decode_mode.py: ")]
        assert r.returncode == 1 and len(lines) == 1 and what in lines[0], (args, r.stderr[-2000:])
        assert "Traceback" not in r.stderr
        assert src.read_bytes() == files["float.packed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.packed.tflite", "out.tflite"]


def test_set_decode_mode_reset_and_all_once(models, tmp_path):
    """--reset gives every HuffDecode op not named empty options (the registration's default: there
    was no way back once a mode was written), --all-once sets 0 on every op not named; a NAME given
    with either keeps its own mode; two of --reset / --all-once / --all-each-invoke is a usage
    error. IN is never modified."""
    from dc_keras import _flatbuffer as fb

    _, _, files = models
    tool = os.path.join(ROOT, "tools", "mcu", "set_decode_mode.py")
    src = tmp_path / "each.tflite"
    src.write_bytes(files["float.packed.each"])

    def options(path):
        m = fb.read_model(path.read_bytes())
        return {t: (None if op.customOptions is None or not len(op.customOptions) else list(op.customOptions))
                for _, op, t, _ in set_decode_mode._outputs(m)}

    before = options(src)
    (tmp_path / "packed.tflite").write_bytes(files["float.packed"])
    assert options(tmp_path / "packed.tflite") == {t: None for t in before}  # as pack writes them
    assert len(before) >= 2 and set(map(tuple, before.values())) == {(1,)}
    first = sorted(before)[0]

    def run(*args):
        return subprocess.run([sys.executable, tool, str(src), *map(str, args)], capture_output=True, text=True,
                              timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))

    for args, want in [(("--reset",), {t: None for t in before}),
                       (("--reset", "--once", f"@{first}"), {t: [0] if t == first else None for t in before}),
                       (("--all-once",), {t: [0] for t in before}),
                       (("--all-once", "--each-invoke", f"@{first}"), {t: [1] if t == first else [0] for t in before})]:
        out = tmp_path / "out.tflite"
        r = run(out, *args)
        assert r.returncode == 0, (args, r.stderr[-2000:])
        assert options(out) == want, args
    r = run(tmp_path / "o.tflite", "--reset", "--all-once")
    assert r.returncode == 2 and "not allowed with" in r.stderr and not (tmp_path / "o.tflite").exists()
    assert src.read_bytes() == files["float.packed.each"]


def test_set_decode_mode_refuses_a_model_that_is_not_packed(models, tmp_path):
    """set_decode_mode.py on a model that was never packed (no HuffDecode op) wrote a copy and
    exited 0, as if the layers now decoded every invoke; it is now one line saying the model is
    not packed and the fix (status 1, nothing written), as `dc-keras unpack` refuses one."""
    _, paths, files = models
    tool = os.path.join(ROOT, "tools", "mcu", "set_decode_mode.py")
    out = tmp_path / "o.tflite"
    r = subprocess.run([sys.executable, tool, paths["float"], str(out), "--all-each-invoke"], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("set_decode_mode.py: ")]
    assert r.returncode == 1 and len(lines) == 1 and "not packed" in lines[0] and "dc-keras pack" in lines[0], \
        r.stderr[-2000:]
    assert not out.exists()
    with pytest.raises(ValueError, match="not packed"):
        set_decode_mode.set_modes(files["int8"], {}, default=1)


def test_offline_memory_plan_survives_packing(runs, models):
    """A TFLM offline memory plan (metadata "OfflineMemoryAllocation": one arena offset per tensor)
    stays valid through pack: pack adds tensors, and TFLM refused the packed model ("Nbr of offline
    buffer offsets (18) in metadata not equal nbr tensors (21)"). The packed model runs bit-exact
    in both modes with the plan followed, and unpack gives the input's plan back byte for byte."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    _, _, files = models
    before, after = _plan_words(files["float.plan"]), _plan_words(files["float.plan.packed"])
    m = fb.read_model(files["float.plan.packed"])
    n = len(m.subgraphs[0].tensors)
    assert after[2] == n == len(after) - 3 > before[2] and (after[3:][before[2]:] == -1).all()
    assert (after[:before[2] + 3] == np.concatenate([before[:2], [n], before[3:]])).all()
    ref = runs["float"][1]
    for name in ("float.plan", "float.plan.once", "float.plan.each"):
        res, out = runs[name]
        assert out.tobytes() == ref.tobytes(), name
    # TFLM followed the plan: no reuse between the activations, so more head than its own planner
    plain_head, plan_head = runs["float"][0]["arena_head_bytes"], runs["float.plan"][0]["arena_head_bytes"]
    assert plan_head >= max(o for o in before[3:]) > plain_head
    # decode once: the decoders' workspaces, planned at run time (scratch) around the plan's tensors
    ws = max(w for _, w in _decode_memory(files["float.plan.packed"]))
    assert plan_head <= runs["float.plan.once"][0]["arena_head_bytes"] <= plan_head + ws
    assert runs["float.plan.each"][0]["arena_head_bytes"] >= plan_head + 196 * 96 * 4
    back = export.unpack(files["float.plan.packed"])
    assert _plan_words(back).tobytes() == before.tobytes()
    mb, mi = fb.read_model(back), fb.read_model(files["float.plan"])
    assert [fb.buffer_bytes(mb, t.buffer) for t in mb.subgraphs[0].tensors] == \
        [fb.buffer_bytes(mi, t.buffer) for t in mi.subgraphs[0].tensors]
    # a file packed before pack kept plans (its plan still the input's, for the first tensors):
    # unpack gives that plan back as it is, which describes the unpacked model again
    old = fb.read_model(files["float.plan.packed"])
    entry = next(e for e in old.metadata if fb.tensor_name(e) == PLAN)
    old.buffers[entry.buffer].data = np.frombuffer(before.tobytes(), np.uint8)
    assert _plan_words(export.unpack(fb.write_model(old))).tobytes() == before.tobytes()


def test_offline_memory_plan_that_cannot_be_kept_is_refused(models):
    """A plan that does not describe the model (TFLM refuses it too) cannot be rewritten for the
    tensors pack adds: one error naming the plan, the problem and the fix, not a wrong plan. A
    constant the plan gives an offset (TFLM ignores it; decoded every invoke it would be written
    there) stays unpacked, the reason in pack's warning and in inspect."""
    from dc_keras import export

    _, _, files = models
    with pytest.raises(ValueError, match="pack: the model.s TFLite Micro offline memory plan") as e:
        export.pack(_with_offline_plan(files["float"], count=5))
    msg = str(e.value)
    assert PLAN in msg and "lists 5 arena offsets but the model has 18 tensors" in msg and "remove the" in msg
    planned = _with_offline_plan(files["float"], constant=0)
    with pytest.warns(UserWarning, match="offline memory plan") as w:
        out = export.pack(planned)
    assert "set its entry to -1" in str(w[0].message)
    assert out == planned  # nothing else is worth packing in this model
    assert "offline memory plan" in str(export.inspect(planned))
    # several subgraphs: TFLM's code reads each subgraph's offsets from index 0, its docs say one
    # after the other; with offsets given, pack cannot tell which is meant and refuses
    lstm = export.unpack(open(os.path.join(ROOT, "tests", "data", "zoo_lstm128.packed.tflite"), "rb").read())
    with pytest.raises(ValueError, match="has 3 subgraphs, and TFLM reads every subgraph's offsets from index 0"):
        export.pack(_with_offline_plan(lstm))
    # ... an all -1 plan means the same either way: kept, for the packed model's tensors
    out = export.pack(_all_runtime_plan(lstm))  # (its loop state packs too, since 2026-12-05)
    from dc_keras import _flatbuffer as fb

    n = sum(len(sg.tensors) for sg in fb.read_model(out).subgraphs)
    assert _plan_words(out).tolist() == [1, 3, n] + [-1] * n and n > 65


def test_packed_lstm_loop_state_is_bit_exact_in_tflm(lib_path, tmp_path):
    """The zoo's clustered LSTM(128) (tests/data): pack now packs the constants its WHILE op starts
    from (a 512 B zero state read as [1, 128] and [1, 1, 128], refused until 2026-12-05 as "loop
    state of a WHILE op"). TFLM's WHILE copies its inputs into the loop: the packed file runs bit
    for bit as the unpacked one in both decode modes, one inference per row of x."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import export
    from dc_keras.export._pack import packed_tensors

    plain = export.unpack(open(os.path.join(ROOT, "tests", "data", "zoo_lstm128.packed.tflite"), "rb").read())
    packed = export.pack(plain)
    m = fb.read_model(packed)
    decoded = {fb.tensor_name(m.subgraphs[s].tensors[o]) for s, _, o in packed_tensors(m)}
    assert {"arith.constant", "lstm_1/lstm_1/TensorArrayV2_1"} <= decoded, decoded
    paths = {}
    for name, data in (("plain", plain), ("packed", packed)):
        paths[name] = tmp_path / f"lstm.{name}.tflite"
        paths[name].write_bytes(data)
    np.save(tmp_path / "x.npy", np.random.default_rng(2).normal(size=(3, 32, 8)).astype("float32"))
    jobs = [dict(model=str(paths[name]), registerers=regs, input=str(tmp_path / "x.npy"),
                 out=str(tmp_path / f"{name}.{len(regs) and regs[0]}.npy"))
            for name, regs in (("plain", []), ("packed", [ONCE]), ("packed", [EACH]))]
    results = _run_jobs(lib_path, tmp_path, jobs)
    assert all(r["ok"] for r in results), results
    want = np.load(jobs[0]["out"])
    for job in jobs[1:]:
        assert np.load(job["out"]).tobytes() == want.tobytes(), job["registerers"]


def _huffdecode_options(data):
    """{(subgraph, output tensor): custom options} of ``data``'s HuffDecode ops."""
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(data)
    return {(s, int(op.outputs[0])): (None if op.customOptions is None else list(op.customOptions))
            for s, sg in enumerate(m.subgraphs) for op in sg.operators
            if fb.is_huffdecode_code(m.operatorCodes[op.opcodeIndex])}


def test_set_decode_mode_keeps_zip_tail_and_earlier_modes(models, tmp_path):
    """set_decode_mode.py dropped the zip of associated files after the model (TFLite metadata's
    labels) and, run a second time, reset the modes the first run set for tensors it was not
    given; both are kept now, from Python and the command line."""
    import io
    import zipfile

    from dc_keras.export import _zip

    _, _, files = models
    packed = files["float.packed"]
    outs = sorted(_huffdecode_options(packed))
    assert len(outs) == 3
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(packed)
    a, b = (fb.tensor_name(m.subgraphs[0].tensors[t]) for _, t in outs[:2])
    first = set_decode_mode.set_modes(packed, {a: 1})
    second = set_decode_mode.set_modes(first, {b: 0})
    assert _huffdecode_options(second) == {outs[0]: [1], outs[1]: [0], outs[2]: None}
    assert second == set_decode_mode.set_modes(packed, {a: 1, b: 0})
    # a zip of associated files after the model (as tflite_support's MetadataPopulator appends it)
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("labels.txt", "".join(f"class {i}\n" for i in range(10)))
    with_zip = packed + z.getvalue()
    src, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(with_zip)
    tool = os.path.join(ROOT, "tools", "mcu", "set_decode_mode.py")
    r = subprocess.run([sys.executable, tool, str(src), str(out), "--each-invoke", a], capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-2000:]
    got = out.read_bytes()
    assert got == set_decode_mode.set_modes(with_zip, {a: 1}) and len(got) > len(first)
    model, kept, error = _zip.split(got)
    assert error is None and kept.names == ["labels.txt"] and model == first
    with zipfile.ZipFile(io.BytesIO(got)) as zf:
        assert zf.read("labels.txt") == b"".join(b"class %d\n" % i for i in range(10))
    assert src.read_bytes() == with_zip


def test_set_decode_mode_names_nameless_tensors_and_lists_full_names(models, tmp_path):
    """A model packed with strip_strings has no tensor names: its HuffDecode outputs are named
    @S:T (subgraph, tensor); a name several outputs share (\"\" there) is refused, not applied to
    all; an unknown name's error lists every HuffDecode output by its full name and its @S:T."""
    from dc_keras import _flatbuffer as fb
    from dc_keras import export

    _, _, files = models
    stripped = export.pack(files["float"], strip_strings=True)
    outs = sorted(_huffdecode_options(stripped))
    assert len(outs) == 3 and all(fb.tensor_name(fb.read_model(stripped).subgraphs[0].tensors[t]) == ""
                                  for _, t in outs)
    got = set_decode_mode.set_modes(stripped, {f"@0:{outs[1][1]}": 1, f"@{outs[2][1]}": 0})
    assert _huffdecode_options(got) == {outs[0]: None, outs[1]: [1], outs[2]: [0]}
    with pytest.raises(ValueError, match="is the name of 3 HuffDecode outputs") as e:
        set_decode_mode.set_modes(stripped, {"": 1})
    assert all(f"@0:{t} (no name; float32[" in str(e.value) for _, t in outs)
    with pytest.raises(ValueError, match="the same HuffDecode output with different modes"):
        set_decode_mode.set_modes(stripped, {f"@0:{outs[1][1]}": 1, f"@{outs[1][1]}": 0})
    m = fb.read_model(files["float.packed"])
    names = [fb.tensor_name(m.subgraphs[0].tensors[t]) for _, t in sorted(_huffdecode_options(files["float.packed"]))]
    assert min(map(len, names)) > 20
    with pytest.raises(ValueError, match="no HuffDecode op outputs 'fc1'") as e:
        set_decode_mode.set_modes(files["float.packed"], {"fc1": 1})
    assert all(f"{n!r} = @0:" in str(e.value) for n in names), str(e.value)
    with pytest.raises(ValueError, match="no HuffDecode op outputs '@0:0'"):
        set_decode_mode.set_modes(files["float.packed"], {"@0:0": 1})  # tensor 0 is no HuffDecode output


def _c_strings(text):
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))


def _kernel_log_calls(kernel):
    """(format literals, arguments) of every message huffdecode_tflm.c reports: all go through its
    DC_TFLM_LOG macro (context->ReportError, or nothing with TF_LITE_STRIP_ERROR_STRINGS), which is
    its only use of ReportError."""
    assert kernel.count("->ReportError(") == 1 and "#define DC_TFLM_LOG(ctx, ...) (ctx)->ReportError(" in kernel
    return re.findall(r"DC_TFLM_LOG\(\s*ctx,\s*((?:\"(?:[^\"\\]|\\.)*\"\s*)+)(.*?)\);", kernel, re.S)


def test_kernel_messages_fit_a_tflm_cortex_m_log_line():
    """TFLM's Cortex-M logger (tensorflow/lite/micro/cortex_m_generic/debug_log.cc) formats each
    message into a 256-byte buffer, so on a device a longer one loses its end, where the kernel's
    messages say what to do. Every message of the kernel, each %d / %u at its widest and each %s
    at the longest string it can be (dc_strerror's, the kernel's type names), fits 255 characters.
    (The message for a model packed with external buffers had 307.)"""
    kernels = os.path.join(ROOT, "tflite_kernels")
    with open(os.path.join(kernels, "micro", "huffdecode_tflm.c")) as f:
        kernel = f.read()
    with open(os.path.join(kernels, "src", "dc_codec.c")) as f:
        codec = f.read()
    strerror = re.search(r"const char\* dc_strerror\(dc_status status\) \{(.*?)\n\}", codec, re.S).group(1)
    names = re.search(r"static const char\* dtype_name\(uint32_t dc_dtype\) \{(.*?)\n\}", kernel, re.S).group(1)
    left_out = re.search(r"static const char\* left_out_by\(.*?\) \{(.*?)\n\}", kernel, re.S).group(1)
    repack = re.search(r"static const char\* repack_with\(.*?\) \{(.*?)\n\}", kernel, re.S).group(1)
    with open(os.path.join(kernels, "include", "dc_codec.h")) as f:  # a dc_peek failure's kind
        peek = re.search(r"#define DC_PEEK_FAILURE\(st\)(.*?\n)\s*\n", f.read(), re.S).group(1)
    longest = {f: max(len(x) for x in re.findall(r'"((?:[^"\\]|\\.)*)"', body))
               for f, body in (("dc_strerror", strerror), ("dtype_name", names), ("DC_PEEK_FAILURE", peek),
                               ("left_out_by", left_out), ("repack_with", repack))}
    assert longest["dc_strerror"] >= 60 and longest["dtype_name"] >= 10 and longest["DC_PEEK_FAILURE"] >= 20
    assert longest["left_out_by"] >= 50 and longest["repack_with"] >= 30
    calls = _kernel_log_calls(kernel)
    assert len(calls) >= 15
    for fmt, args in calls:
        fmt = _c_strings(fmt)
        strings = [longest[f] for f in longest if f + "(" in args]
        assert fmt.count("%s") <= len(strings) or not fmt.count("%s"), (fmt, args)
        widest = {"%d": 11, "%u": 10, "%s": max(strings, default=0)}
        assert "%" not in re.sub(r"%[dus]", "", fmt), fmt
        n = len(re.sub(r"%[dus]", "", fmt)) + sum(widest[m] for m in re.findall(r"%[dus]", fmt))
        if fmt.count("%s") > 1 and fmt.count("%s") == len(strings):  # one %s per function: each its own
            n += sum(strings) - fmt.count("%s") * widest["%s"]
        assert n <= 255, (n, fmt)


# ---- TF_LITE_STRIP_ERROR_STRINGS (TFLM's BUILD_TYPE=release) -------------------------------------
STRIP = "-DTF_LITE_STRIP_ERROR_STRINGS"


def _message_pieces():
    """The kernel's message text (its DC_TFLM_LOG format literals, split at the %-conversions; pieces
    of 8+ characters) and the strings of dc_strerror, which only those messages use."""
    kernels = os.path.join(ROOT, "tflite_kernels")
    with open(os.path.join(kernels, "micro", "huffdecode_tflm.c")) as f:
        kernel = f.read()
    with open(os.path.join(kernels, "src", "dc_codec.c")) as f:
        strerror = re.search(r"const char\* dc_strerror\(dc_status status\) \{(.*?)\n\}", f.read(), re.S).group(1)
    pieces = {p for fmt, _ in _kernel_log_calls(kernel) for p in re.split(r"%[dus]", _c_strings(fmt)) if len(p) >= 8}
    errors = {x for x in re.findall(r'"((?:[^"\\]|\\.)*)"', strerror) if len(x) >= 8}
    assert len(pieces) >= 20 and len(errors) >= 12
    return sorted(p.encode() for p in pieces), sorted(e.encode() for e in errors)


def _arm_or_host():
    """(compiler, CPU flags, size tool): arm-none-eabi-gcc for Cortex-M4 when installed (make test-mcu
    installs it as root), else the host's cc (the object checks alone)."""
    import shutil

    if shutil.which("arm-none-eabi-gcc"):
        return "arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], \
            "arm-none-eabi-size"
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "needs a C compiler (apt install gcc)"
    return cc, [], "size"


def _code_bytes(size_tool, obj):
    """.text+.rodata+.data of ``obj`` (`size -A`, as tools/mcu/test_mcu.sh measures)."""
    out = subprocess.run([size_tool, "-A", str(obj)], capture_output=True, text=True, check=True).stdout
    return sum(int(f[1]) for f in (ln.split() for ln in out.splitlines())
               if len(f) >= 2 and re.match(r"\.(text|rodata|data)", f[0]) and f[1].isdigit())


def test_stripped_kernel_has_no_message_strings_and_is_smaller(tmp_path):
    """With TF_LITE_STRIP_ERROR_STRINGS (TFLM's BUILD_TYPE=release defines it) the kernel compiles
    warning-free for Cortex-M4 (-Wall -Wextra -Werror, -O2 and -Os, test_mcu.sh's flags), its object
    holds none of its messages' text (the normal object holds every piece of it) and is under a
    third of the normal one; linked with --gc-sections (an image that registers the op and so keeps
    every kernel function), dc_strerror and its strings drop out of the image too. Measured
    2026-12-05, arm-none-eabi-gcc 12.2: 3,541 -> 823 B at -O2, 3,253 -> 677 B at -Os; 3,865 -> 887 B
    and 3,490 -> 711 B once decode once's workspace became a scratch buffer (15:48 UTC)."""
    cc, cpu, size_tool = _arm_or_host()
    k = os.path.join(ROOT, "tflite_kernels")
    flags = [*cpu, "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
             f"-I{k}/include", f"-I{k}/src", f"-I{k}/micro"]
    pieces, errors = _message_pieces()
    for opt in ("-O2", "-Os"):
        objs = {}
        for name, extra in (("normal", []), ("strip", [STRIP])):
            objs[name] = tmp_path / f"k_{name}{opt}.o"
            r = _cbuild.compile_one(cc, [*flags, opt, *extra], os.path.join(k, "micro", "huffdecode_tflm.c"),
                                    str(objs[name]), timeout=120)
            assert r.returncode == 0 and not r.stderr.strip(), (name, opt, r.stderr[-3000:])
        normal, strip = objs["normal"].read_bytes(), objs["strip"].read_bytes()
        # On a 64-bit host (no arm-none-eabi-gcc yet: make test's lanes run in parallel, test-mcu
        # installs it) the "tensor too large" check (output_bytes > SIZE_MAX) is dead code and
        # its message compiled out; on Cortex-M (32-bit size_t) it is live.
        kept = [p for p in pieces if cpu or struct.calcsize("P") < 8 or p != b"): tensor too large"]
        assert len(kept) >= len(pieces) - 1 and all(p in normal for p in kept), [p for p in kept if p not in normal]
        assert not [p for p in pieces if p in strip], opt
        assert b"HuffDecode\0" in strip  # the op's name stays (its registration)
        a, b = _code_bytes(size_tool, objs["normal"]), _code_bytes(size_tool, objs["strip"])
        assert 0 < b < a / 3, (opt, a, b)
    if not cpu:
        return
    # linked for the Cortex-M4 board of make test-mcu: what the image keeps of dc_codec.c's strings
    app = tmp_path / "app.c"
    app.write_text('#include "huffdecode_tflm.h"\n'
                   "const DcTflmRegistration* volatile app_reg;\nvolatile int app_mode;\n"
                   "int main(void) {\n  app_reg = DcTflmHuffDecodeRegistration((DcTflmDecodeMode)app_mode);\n"
                   "  return app_reg == 0;\n}\n")
    mcu = os.path.join(ROOT, "tools", "mcu")
    # dc_codec.c does not read TF_LITE_STRIP_ERROR_STRINGS: compiled once (4 CPU s), linked into both
    codec_obj = tmp_path / "dc_codec.o"
    r = _cbuild.compile_one(cc, [*flags, "-O2"], os.path.join(k, "src", "dc_codec.c"), str(codec_obj), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    images = {}
    for name, extra in (("normal", []), ("strip", [STRIP])):
        images[name] = tmp_path / f"app_{name}.elf"
        r = _cbuild.build(cc, [*flags, "-O2", f"-I{mcu}", *extra, "--specs=rdimon.specs"],
                          [str(app), os.path.join(k, "micro", "huffdecode_tflm.c"), str(codec_obj),
                           os.path.join(mcu, "startup.c")], images[name],
                          ldflags=["-nostartfiles", "-T", os.path.join(mcu, "mps2.ld"), "-Wl,--gc-sections"], timeout=300)
        assert r.returncode == 0, (name, r.stderr[-3000:])
    normal, strip = images["normal"].read_bytes(), images["strip"].read_bytes()
    # (two of dc_strerror's literals belong to DC_CODEC_MINIMAL / DC_CODEC_NO_* builds only)
    assert sum(e in normal for e in errors) >= len(errors) - 2 >= 12 and all(p in normal for p in pieces)
    assert not [e for e in errors if e in strip] and not [p for p in pieces if p in strip]
    syms = subprocess.run(["arm-none-eabi-nm", str(images["strip"])], capture_output=True, text=True,
                          check=True).stdout.split()
    assert "dc_strerror" not in syms and "dc_decode_ws" in syms and "op_prepare" in syms


@pytest.fixture(scope="module")
def strip_lib_path(tmp_path_factory, make_env):
    """The wheel's library built with TF_LITE_STRIP_ERROR_STRINGS (its Makefile: -Wall -Wextra -Werror)."""
    build = tmp_path_factory.mktemp("tflm_lib_strip")
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "tflite_kernels", "micro"), f"BUILD={build}",
                        f"CFLAGS={STRIP}"], capture_output=True, text=True, env=make_env)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr[-3000:]
    return str(build / "libdc_huffdecode_tflm.so")


def test_stripped_kernel_decodes_bit_exact_and_fails_without_a_message(strip_lib_path, runs, models):
    """The stripped kernel in the wheel's TFLM: packed float / int8 / int16x8 models decode bit-exact
    in both modes, and the bad models of test_bad_models_fail_with_the_kernels_message fail as
    before (the same job, at the same stage: kTfLiteError from the same check) with none of the
    kernel's messages in the log."""
    d, paths, files = models
    x = str(d / "x.npy")
    plan = {f"{kind}.{mode}": {"model": paths[f"{kind}.packed"], "registerers": [reg]}
            for kind in ("float", "int8", "int16x8") for mode, reg in (("once", ONCE), ("each", EACH))}
    plan["float.options_each"] = {"model": paths["float.packed.each"], "registerers": [ONCE]}
    jobs = [dict(job, input=x, out=str(d / f"strip_{name}.out.npy")) for name, job in plan.items()]
    bad = _bad_jobs(d, paths, files, x)
    results = _run_jobs(strip_lib_path, d, jobs + bad)
    for (name, _), res in zip(plan.items(), results):
        assert res["ok"], f"{name}: {res['error']}\n{res['log']}"
        ref = runs[name.split(".")[0]][1]
        assert np.load(d / f"strip_{name}.out.npy").tobytes() == ref.tobytes(), name
    pieces, errors = _message_pieces()
    stripped, normal = results[len(jobs):], runs["bad"]
    assert len(stripped) == len(normal) == 10
    for i, (s, n) in enumerate(zip(stripped, normal)):
        assert not s["ok"] and s["stage"] == n["stage"], (i, s, n)
        assert not [p for p in pieces + errors if p.decode() in s["log"]], (i, s["log"])
        assert "HuffDecode (output tensor" not in s["log"], (i, s["log"])
    # the kernel's messages were there in the normal build (the check above is not vacuous) ...
    assert sum("HuffDecode (output tensor" in n["log"] for n in normal) >= 6
    # ... and the others still are: the wheel registerer's (huffdecode_tflm_wheel.c, host only) for a
    # second registration, TFLM's planner's for a too-small arena
    assert "already registered" in stripped[4]["log"] and "Failed to resize buffer" in stripped[9]["log"]
