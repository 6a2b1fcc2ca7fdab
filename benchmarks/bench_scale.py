"""Scale: pack / unpack / inspect / runtime on big and wide .tflite models (wall time, peak RSS).

Models are synthesised through the TFLite schema module (no converter run): chains of
FULLY_CONNECTED ops whose kernels are pruned to 10 % and shared among 16 values (numpy), float32
or int8 (per-tensor scales, int32 biases), one or several subgraphs (one signature each). Every
operation runs in a child process of its own (``python benchmarks/bench_scale.py --child ...``), so
its peak RSS (``VmHWM``) is its own, reading the input file included. The packed model's
outputs are compared bit for bit with the plain model's (``dc_keras.runtime.Interpreter``,
default delegates on both sides).

Cases (``--cases``, default all but ``huge``):
  big_f32   6 x 2048x2048 float32 (100.7 MB, 19 tensors)
  big_i8    6 x 4096x4096 int8 (100.8 MB, 19 tensors)
  wide      4,000 FULLY_CONNECTED ops of 16x16 float32 (5.4 MB, 12,001 tensors)
  multi     4 subgraphs x 500 ops of 64x64 float32 (33.8 MB, 6,004 tensors)
  huge      9 x 8192x8192 float32, buffers after the flatbuffer (2.42 GB; needs ~5 GB of RAM)

The current figures are in docs/results.md ("Scale"), generated from ``--json docs/results/scale.json``
by results_doc.py. The table below is the record of the work on big models (2026-12-03, x86_64,
2 cores shared with test runs: times vary by +-30 %), kept for its "before" column, which needs the
old code: "before" is the code before tests/test_scale.py's fixes (whole-model copies in write_model, int64
work arrays in codec.encode, a buffer copy per use in pack/inspect), on the same kinds of models:

  case      file            op       before                 after (this script)
  big_f32   100,714,272 B   pack     0.74 s / 240 MB RSS    0.67 s / 171 MB -> 2,756,904 B
                            unpack   1.12 s / 589 MB        0.43 s / 349 MB
                            inspect  1.27 s / 240 MB        0.65 s / 172 MB
  big_i8    100,764,224 B   pack     2.26 s / 446 MB        1.39 s / 249 MB -> 10,838,104 B
                            unpack   0.74 s / 566 MB        0.35 s / 357 MB
  wide      5,355,936 B     pack     8.3 s                  9.4 s / 83 MB   -> 1,946,432 B
  (12,001 tensors)          unpack   3.2 s                  2.5 s
                            inspect  15.2 s                 7.2 s
  multi     33,775,232 B    pack     13.2 s                 11.1 s / 103 MB -> 2,101,516 B
                            unpack   2.1 s / 244 MB         1.7 s / 152 MB
  huge      2,416,216,752 B pack     93 s / 3.9 GB          68 s / 3.2 GB   -> 22,036,233 B
                            unpack   not run (~9 GB est.)   21 s / 4.7 GB (external buffers)
                            inspect  60 s / 3.9 GB
  411 MB, external buffers  pack     7.2 s / 751 MB         5.7 s / 674 MB
                            unpack   4.6 s / 1,622 MB       3.5 s / 838 MB

Every case: packed outputs bit-identical to the plain model's (every signature; also with
backend="tensorflow", decode="op" and no default delegates). Running: load + allocate + invoke of
the packed model 0.1-0.5 s against 0.07-0.3 s plain (the delegate decodes at load: 2.4 GB in
2.7 s for huge, whose packed run peaks at 4.7 GB RSS like the plain one). Wide models cost ~1-2 ms
per tensor in pack and inspect (the codec tries several layouts); time per tensor does not grow
with their number (1,000 / 2,000 / 8,000 ops: 2.1 / 5.4 / 17.5 s).

Usage: python benchmarks/bench_scale.py [--cases big_f32,big_i8,wide,multi,huge] [--dir DIR] [--json PATH]
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = {  # name: (layers, width, dtype, subgraphs, buffers, distinct kernels: 0 = all)
    "big_f32": (6, 2048, "float32", 1, "auto", 0),
    "big_i8": (6, 4096, "int8", 1, "auto", 0),
    "wide": (4000, 16, "float32", 1, "auto", 0),
    "multi": (500, 64, "float32", 4, "auto", 0),
    "huge": (9, 8192, "float32", 1, "external", 3),
}


def _weights(rng, n, dtype, keep=0.1, values=16):
    if dtype == "int8":
        centroids = rng.integers(-127, 128, values).astype(np.int8)
    else:
        centroids = (rng.standard_normal(values) * 0.1).astype(np.float32)
    w = centroids[rng.integers(0, values, n)]
    w[rng.random(n) > keep] = 0
    return w


def build(layers, width, dtype="float32", subgraphs=1, buffers="auto", distinct=0, seed=0):
    """The ``.tflite`` bytes of a FULLY_CONNECTED chain per subgraph (with ``distinct`` > 0 the
    kernels cycle through that many arrays, so a 2 GB model needs only a few in memory)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras._flatbuffer import schema

    rng = np.random.default_rng(seed)
    m = schema.ModelT()
    m.version, m.buffers, m.subgraphs, m.signatureDefs = fb.SCHEMA_VERSION, [schema.BufferT()], [], []
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    m.operatorCodes = [code]
    ttype = schema.TensorType.INT8 if dtype == "int8" else schema.TensorType.FLOAT32
    kernels = []
    for s in range(subgraphs):
        sg = schema.SubGraphT()
        sg.tensors, sg.operators = [], []

        def tensor(name, shape, data=None, typ=ttype, scale=None, sg=sg):
            b = schema.BufferT()
            if data is not None:
                b.data = data.reshape(-1).view(np.uint8)
            m.buffers.append(b)
            t = schema.TensorT()
            t.name, t.shape, t.type, t.buffer = name, list(shape), typ, len(m.buffers) - 1
            if dtype == "int8":
                q = schema.QuantizationParametersT()
                q.scale, q.zeroPoint = [scale], [0]
                t.quantization = q
            sg.tensors.append(t)
            return len(sg.tensors) - 1

        x = tensor(f"s{s}/x", [1, width], scale=0.05)
        sg.inputs = [x]
        for i in range(layers):
            if not distinct or len(kernels) < distinct:
                kernels.append(_weights(rng, width * width, dtype))
            w = kernels[i % distinct] if distinct else kernels[-1]
            k = tensor(f"s{s}/fc{i}/kernel", [width, width], w, scale=0.01)
            if dtype == "int8":
                b = tensor(f"s{s}/fc{i}/bias", [width], np.zeros(width, np.int32), schema.TensorType.INT32, 5e-4)
            else:
                b = tensor(f"s{s}/fc{i}/bias", [width], _weights(rng, width, dtype, keep=0.5))
            y = tensor(f"s{s}/fc{i}/out", [1, width], scale=0.05)
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = 0, [x, k, b], [y]
            op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
            op.builtinOptions = schema.FullyConnectedOptionsT()
            sg.operators.append(op)
            x = y
        sg.outputs = [x]
        m.subgraphs.append(sg)
        sig = schema.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = f"sig{s}", s
        sig.inputs = [schema.TensorMapT()]
        sig.inputs[0].name, sig.inputs[0].tensorIndex = "x", sg.inputs[0]
        sig.outputs = [schema.TensorMapT()]
        sig.outputs[0].name, sig.outputs[0].tensorIndex = "y", x
        m.signatureDefs.append(sig)
    return fb.write_model(m, buffers)


def child(op, src, dst):
    """One operation in this process; prints its wall time (the model read included) and peak RSS."""
    import warnings

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if op == "run":
        from dc_keras.runtime import Interpreter

        it = Interpreter(model_path=src)
        outs = []
        for key in it.get_signature_list():
            runner = it.get_signature_runner(key)
            (name, spec), = runner.get_input_details().items()
            x = np.random.default_rng(0).standard_normal(spec["shape"]).astype(np.float32)
            if spec["dtype"] == np.int8:
                x = np.clip(x * 40, -128, 127).astype(np.int8)
            outs += [v for _, v in sorted(runner(**{name: x}).items())]
        np.save(dst, np.concatenate([o.reshape(-1).view(np.uint8) for o in outs]))
    else:
        from dc_keras import export

        with open(src, "rb") as f:
            data = f.read()
        if op == "inspect":
            export.inspect(data)
        else:
            out = export.pack(data) if op == "pack" else export.unpack(data)
            with open(dst, "wb") as f:
                f.write(out)
    print(f"{time.perf_counter() - t0:.2f} {_peak_rss_mb():.0f}")


def _peak_rss_mb():
    """This process's peak RSS: VmHWM (new at exec; ru_maxrss keeps the forking parent's)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(op, src, dst):
    """(wall seconds, peak RSS MB) of ``op`` in a child process."""
    r = subprocess.run([sys.executable, __file__, "--child", op, src, dst], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{op} {src} failed:\n{r.stderr[-2000:]}")
    secs, rss = r.stdout.split()[-2:]
    return float(secs), float(rss)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="big_f32,big_i8,wide,multi")
    ap.add_argument("--dir", default=None, help="where the models go (default: a temporary directory)")
    ap.add_argument("--json", default=None, help="write the figures here (docs/results/scale.json; results_doc.py --scale)")
    ap.add_argument("--child", nargs=3, metavar=("OP", "SRC", "DST"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child)
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}: choose from {sorted(CASES)}")
    from _common import machine_info, write_json

    machine = machine_info(frameworks=False)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        print(f"{'case':8} {'file':>14} {'op':8} {'seconds':>8} {'peak RSS MB':>12}  note")
        for name in names:
            plain, packed, back = (os.path.join(d, f"{name}{s}.tflite") for s in ("", ".packed", ".unpacked"))
            model = build(*CASES[name])
            tensors = _tensor_count(model)
            with open(plain, "wb") as f:
                f.write(model)
            del model
            size = os.path.getsize(plain)
            row = {"case": name, "file_bytes": size, "tensors": tensors, "dtype": CASES[name][2],
                   "subgraphs": CASES[name][3], "buffers": CASES[name][4], "ops": []}
            for op, src, dst in (("pack", plain, packed), ("unpack", packed, back), ("inspect", plain, ""),
                                 ("run", plain, plain + ".npy"), ("run", packed, packed + ".npy")):
                secs, rss = measure(op, src, dst)
                out = os.path.getsize(dst) if op in ("pack", "unpack") else None
                which = ("packed" if src == packed else "plain") if op == "run" else None
                row["ops"].append({"op": op if op != "run" else f"run {which}", "seconds": secs, "peak_rss_mb": rss,
                                   "out_bytes": out})
                note = f"-> {out:,} B" if out is not None else (which or "")
                print(f"{name:8} {size:>14,} {op:8} {secs:8.2f} {rss:12.0f}  {note}", flush=True)
            same = np.array_equal(np.load(plain + ".npy"), np.load(packed + ".npy"))
            row["bit_identical"] = bool(same)
            rows.append(row)
            print(f"{name:8} packed outputs bit-identical to the plain model's: {same}", flush=True)
            if not same:
                return 1
    machine["loadavg_end"] = machine_info(frameworks=False)["loadavg"]
    if args.json:
        write_json(args.json, {"benchmark": "scale", "machine": machine, "rows": rows,
                               "command": "python benchmarks/bench_scale.py " + " ".join(
                                   argv if argv is not None else sys.argv[1:])})
    return 0


def _tensor_count(model):
    from dc_keras import _flatbuffer as fb

    m = fb.schema.Model.GetRootAs(model, 0)
    return sum(m.Subgraphs(i).TensorsLength() for i in range(m.SubgraphsLength()))


if __name__ == "__main__":
    sys.exit(main())
