"""Scale: pack / unpack / inspect / runtime on big and wide .tflite models (wall time, peak RSS).

Models are synthesised through the TFLite schema module (no converter run): chains of
FULLY_CONNECTED ops whose kernels are pruned to 10 % and shared among 16 values (numpy), float32
or int8 (per-tensor scales, int32 biases), one or several subgraphs (one signature each); int16
and int32: GATHER ops on constant tables (build_gather), TFLite runs them too. Every
operation runs in a child process of its own (``python benchmarks/bench_scale.py --child ...``), so
its peak RSS (``VmHWM``) is its own, reading the input file included. The packed model's
outputs are compared bit for bit with the plain model's (``dc_keras.runtime.Interpreter``,
default delegates on both sides).

Cases (``--cases``, default all but ``huge``):
  big_f32   6 x 2048x2048 float32 (100.7 MB, 19 tensors)
  big_i8    6 x 4096x4096 int8 (100.8 MB, 19 tensors)
  big_i16   6 GATHER ops on 2896x2896 int16 tables (100.6 MB, 13 tensors): 3 clustered, 3 not (pack keeps them)
  big_i32   6 GATHER ops on 2048x2048 int32 tables (100.7 MB, 13 tensors): 3 clustered, 3 not (pack keeps them)
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

``--codec`` measures ``dc_keras.codec.encode`` alone (what pack runs per tensor) on one big
tensor per case, each in a child process: peak RSS (VmHWM after the tensor is made) and
tracemalloc's peak, both as multiples of the tensor's bytes, the time of one encode, and the
output's sha256 (compare it across code versions: the output must not change). Cases
(``--codec all`` or a comma list; ``--size`` N gives N x N tensors, default 2048):
  i16_pc      int16, 16 values per output channel (axis 0), 30 % kept
  i16_pcq     int16 per-channel quantized, unpruned (most values distinct within a channel)
  i32_wide    int32 over +-2^20, nearly all distinct (bias-like)
  i32_pc, f32_pc, f16_pc   int32 / float32 / float16, 16 values per channel, 30 % kept
  f32_cl256, f16_cl256     256 values shared by the whole tensor
  f32_raw, f16_raw         unclustered (float planes)
  i16_raw, i8_raw          uniform over the type's range (incompressible)
Figures before (ec2a7a6: one np.unique over the whole tensor's int64 (group, value) keys) and
after blocking the grouped layouts' wide path (2026-12-03, x86_64, 2 cores shared, load ~5, so
the times are CPU seconds of one encode, old and new alternating, min of 2 at 2048, 1 at 4096;
peaks as multiples of the tensor's bytes; the output's sha256 the same before and after):

                         tracemalloc peak    peak RSS           CPU seconds
  case       tensor MB   before -> after     before -> after    before -> after
  2048 x 2048
  i16_pc        8.4      29.1x -> 4.8x       30.0x -> 4.7x      3.33 -> 0.56
  i16_pcq       8.4      40.0x -> 6.5x       42.1x -> 7.9x      2.32 -> 0.91
  i32_wide     16.8      22.1x -> 4.7x       23.2x -> 5.6x      2.36 -> 0.88
  i32_pc       16.8      14.6x -> 2.9x       15.1x -> 2.6x      3.30 -> 0.65
  f32_pc       16.8      14.6x -> 2.9x       15.1x -> 2.5x      3.13 -> 0.59
  f16_pc        8.4      29.0x -> 4.8x       29.8x -> 4.7x      3.21 -> 0.54
  f32_cl256    16.8      13.9x -> 2.8x       15.0x -> 2.9x      1.67 -> 1.05
  f16_cl256     8.4      27.3x -> 4.7x       27.7x -> 5.4x      1.77 -> 0.93
  f32_raw      16.8       3.7x -> 2.9x        4.2x -> 3.3x      0.13 -> 0.13
  f16_raw       8.4       4.1x -> 4.1x        4.9x -> 4.5x      0.10 -> 0.10
  4096 x 4096
  i16_pc       33.6      29.1x -> 3.4x       29.7x -> 2.9x     20.15 -> 2.64
  i16_pcq      33.6      37.7x -> 5.4x       38.2x -> 6.7x     15.13 -> 4.48
  i32_wide     67.1      19.7x -> 4.3x       20.0x -> 5.2x     14.47 -> 4.73
  i32_pc       67.1      14.6x -> 2.2x       14.9x -> 1.6x     19.94 -> 3.22
  f32_pc       67.1      14.6x -> 2.2x       14.9x -> 1.6x     20.29 -> 3.18
  f16_pc       33.6      28.9x -> 3.4x       29.5x -> 2.9x     19.56 -> 2.54
  f32_cl256    67.1      13.3x -> 2.2x       13.6x -> 1.9x     13.93 -> 4.53
  f16_cl256    33.6      26.4x -> 3.5x       26.5x -> 3.6x     11.07 -> 3.64
  f32_raw      67.1       3.7x -> 2.9x        4.1x -> 3.1x      0.76 -> 0.81
  f16_raw      33.6       4.0x -> 3.2x        4.8x -> 4.1x      0.51 -> 0.53
The rest at 2048 is mostly the blocks' fixed ~20 MB of int64 temporaries; what grows with the
tensor is each element's uint16 rank in its group, the pairs' values, the tables (as big as the
tensor for unclustered groups: i16_pcq, i32_wide) and the smallest plan's indices so far.

``--cap`` encodes with the ``max_bytes`` pack gives (``dc_keras.export._pack.max_packed_bytes``: the
most ``keep_reason`` lets pack use): a tensor pack keeps raw raises ``codec.MaxBytesError`` without
its layouts being made ("kept>=": a lower bound of its size). Before (a05d010, no cap: what pack
ran per tensor) and after (``--cap``), 2026-12-03, x86_64, 2 cores shared, load 2-3 (other runs),
old and new alternating, one sample each; RSS as multiples of the tensor's bytes:

  4096 x 4096   before                              after (--cap)
  i16_pcq       4.57 s  7.6x  -> 56,997,153 B       0.05 s  0.1x  kept, >= 31,326,249 B
  i32_wide      5.74 s  5.2x  -> 92,276,776 B       0.01 s  0.0x  kept, >= 66,994,217 B
  i16_raw       5.06 s  7.8x  -> 57,937,182 B       0.08 s  0.1x  kept, >= 32,489,513 B
  i8_raw        2.32 s  5.7x  -> 16,777,639 B       0.55 s  3.5x  kept, >= 16,699,109 B
  f32_raw, f16_raw, i16_pc (they pack): same bytes, 0.99 / 0.69 / 2.13 s before, 0.95 / 0.66 / 2.14 s after
  2048 x 2048: i16_pcq 0.92-1.34 s -> 0.02 s, i32_wide 0.90-1.75 -> 0.01, i16_raw 0.78-1.10 -> 0.02,
  i8_raw 0.42-0.75 s / 9.9x -> 0.16-0.23 s / 7.2x; the others the same bytes, times within the noise.

i8_raw still counts values per group (256 per group: small tables, so only the per-group entropy
rules the grouped layouts out). pack / inspect of the GATHER models, same conditions (two samples):

  big_i16  pack     10.5-13.5 s / 326 MB  ->  3.9-4.8 s / 326 MB   -> 57,741,616 B (same bytes)
           inspect  11.3-14.4 s / 278 MB  ->  5.0-6.3 s / 207 MB
  big_i32  pack      5.6-7.5 s / 322 MB   ->  3.1-3.6 s / 277 MB   -> 54,507,136 B (same bytes)
           inspect   6.7-8.2 s / 246 MB   ->  2.6-4.3 s / 195 MB
  after: unpack 0.42 s / 357 MB (i16), 1.28 s / 353 MB (i32); run plain 0.06 s, packed 0.11 / 0.51 s;
  packed lookups bit-identical. What remains is the clustered tables' encode and inspect's distinct
  counts (np.unique of each table). build_gather(2, 4096, "int32") (134 MB: one clustered table,
  one unclustered, 4096 x 4096 each), load 1.7-1.9: pack 7.45-7.75 s / 502 MB -> 3.32-3.43 s /
  361 MB, the same 72,218,848 B.

Usage: python benchmarks/bench_scale.py [--cases big_f32,big_i8,big_i16,big_i32,wide,multi,huge] [--dir DIR] [--json PATH]
       python benchmarks/bench_scale.py --codec all [--size 4096] [--cap]
"""
import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = {  # name: (layers, width, dtype, subgraphs, buffers, distinct kernels: 0 = all)
    "big_f32": (6, 2048, "float32", 1, "auto", 0),
    "big_i8": (6, 4096, "int8", 1, "auto", 0),
    "big_i16": (6, 2896, "int16", 1, "auto", 0),  # GATHER tables (build_gather)
    "big_i32": (6, 2048, "int32", 1, "auto", 0),
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


def _model(op):
    """An empty ``ModelT`` (buffer 0 empty) whose one operator code is the builtin ``op``."""
    from dc_keras import _flatbuffer as fb
    from dc_keras._flatbuffer import schema

    m = schema.ModelT()
    m.version, m.buffers, m.subgraphs, m.signatureDefs = fb.SCHEMA_VERSION, [schema.BufferT()], [], []
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = op
    code.version = 1
    m.operatorCodes = [code]
    return m


def _add_tensor(m, sg, name, shape, typ, data=None, scale=None):
    """Appends a tensor (and its buffer, holding ``data`` if given; per-tensor ``scale``, zero point
    0 if given) to subgraph ``sg`` of ``m``; its index."""
    from dc_keras._flatbuffer import schema

    b = schema.BufferT()
    if data is not None:
        b.data = data.reshape(-1).view(np.uint8)
    m.buffers.append(b)
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), typ, len(m.buffers) - 1
    if scale is not None:
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = [scale], [0]
        t.quantization = q
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def build(layers, width, dtype="float32", subgraphs=1, buffers="auto", distinct=0, seed=0):
    """The ``.tflite`` bytes of a FULLY_CONNECTED chain per subgraph (with ``distinct`` > 0 the
    kernels cycle through that many arrays, so a 2 GB model needs only a few in memory); int16
    and int32: ``build_gather``'s model."""
    if dtype in GATHER_DTYPES:
        return build_gather(layers, width, dtype, buffers, seed)
    from dc_keras import _flatbuffer as fb
    from dc_keras._flatbuffer import schema

    rng = np.random.default_rng(seed)
    m = _model(schema.BuiltinOperator.FULLY_CONNECTED)
    ttype = schema.TensorType.INT8 if dtype == "int8" else schema.TensorType.FLOAT32
    kernels = []
    for s in range(subgraphs):
        sg = schema.SubGraphT()
        sg.tensors, sg.operators = [], []

        def tensor(name, shape, data=None, typ=ttype, scale=None, sg=sg):
            return _add_tensor(m, sg, name, shape, typ, data, scale if dtype == "int8" else None)

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


GATHER_DTYPES = ("int16", "int32")
GATHER_ROWS = 8  # the model's input: this many indices, each < 8


def build_gather(tables, width, dtype, buffers="auto", seed=0):
    """The ``.tflite`` bytes of ``tables`` GATHER ops, each looking the model's int32 indices up
    in a ``width`` x ``width`` constant table of ``dtype`` (int16 / int32: lookup tables, token or
    hash embeddings), one output each. Even tables are clustered (16 values per row, 30 % kept:
    they pack), odd ones unclustered (int16: rows quantized per channel, most values distinct;
    int32: over +-2^20, nearly all distinct: no codebook packs them, FORMAT.md §17's integer
    planes (version 4) do, to ~66 %)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras._flatbuffer import schema

    types = {"int16": schema.TensorType.INT16, "int32": schema.TensorType.INT32}
    m = _model(schema.BuiltinOperator.GATHER)
    sg = schema.SubGraphT()
    sg.tensors, sg.operators = [], []

    def tensor(name, shape, typ, data=None):
        return _add_tensor(m, sg, name, shape, typ, data)

    x = tensor("indices", [GATHER_ROWS], schema.TensorType.INT32)
    sg.inputs, sg.outputs = [x], []
    for i in range(tables):
        kind = ("i16_pc" if dtype == "int16" else "i32_pc") if i % 2 == 0 else (
            "i16_pcq" if dtype == "int16" else "i32_wide")
        table = codec_tensor(kind, width, seed + i)
        k = tensor(f"table{i}", table.shape, types[dtype], table)
        y = tensor(f"lookup{i}", [GATHER_ROWS, width], types[dtype])
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [k, x], [y]
        op.builtinOptionsType = schema.BuiltinOptions.GatherOptions
        op.builtinOptions = schema.GatherOptionsT()
        sg.operators.append(op)
        sg.outputs.append(y)
    m.subgraphs = [sg]
    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "lookup", 0
    sig.inputs = [schema.TensorMapT()]
    sig.inputs[0].name, sig.inputs[0].tensorIndex = "indices", x
    sig.outputs = []
    for j, y in enumerate(sg.outputs):
        sig.outputs.append(schema.TensorMapT())
        sig.outputs[-1].name, sig.outputs[-1].tensorIndex = f"y{j}", y
    m.signatureDefs = [sig]
    return fb.write_model(m, buffers)


CODEC_CASES = ["i16_pc", "i16_pcq", "i32_wide", "i32_pc", "f32_pc", "f16_pc", "f32_cl256", "f16_cl256",
               "f32_raw", "f16_raw", "i16_raw", "i8_raw"]


def codec_tensor(case, n, seed=0):
    """The ``n`` x ``n`` tensor of a ``--codec`` case."""
    rng = np.random.default_rng(seed)
    kind = case.split("_")[1]
    dtype = {"i8": "int8", "i16": "int16", "i32": "int32", "f32": "float32", "f16": "float16"}[case.split("_")[0]]
    if kind == "pc":  # 16 values per output channel, 30 % kept
        if dtype.startswith("int"):
            hi = 32767 if dtype == "int16" else 1 << 24
            table = rng.integers(-hi, hi + 1, (n, 16)).astype(dtype)
        else:
            table = rng.standard_normal((n, 16)).astype(dtype)
        w = np.take_along_axis(table, rng.integers(0, 16, (n, n)), 1)
        w[rng.random((n, n)) >= 0.3] = 0
        return w
    if kind == "pcq":
        x = rng.standard_normal((n, n))
        return np.round(x / np.abs(x).max(axis=1, keepdims=True) * 32767).astype(np.int16)
    if kind == "wide":
        return rng.integers(-(1 << 20), 1 << 20, (n, n)).astype(np.int32)
    if kind == "cl256":
        return (rng.standard_normal(256) * 0.1).astype(dtype)[rng.integers(0, 256, (n, n))]
    if dtype.startswith("int"):  # every value of the type equally likely
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, (n, n)).astype(dtype)
    return rng.standard_normal((n, n)).astype(dtype)


def codec_child(case, n, cap=False):
    """One encode in this process: prints tensor bytes, seconds, peak RSS and tracemalloc bytes
    over the tensor's, the layout and the output's sha256 (with ``cap``, pack's max_bytes: "kept",
    the size or its lower bound and "-" when the tensor would pack to more)."""
    import gc
    import hashlib
    import tracemalloc

    from dc_keras import codec
    from dc_keras.export._pack import max_packed_bytes

    w = codec_tensor(case, int(n))
    kw = {"max_bytes": max(0, max_packed_bytes(w.nbytes))} if cap else {}

    def encode():
        try:
            return codec.encode(w, **kw)
        except codec.MaxBytesError as exc:
            return exc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM := VmRSS: making the tensor peaked higher
            f.write("5")
    except OSError:
        pass
    base = _peak_rss_mb()
    t0 = time.perf_counter()
    out = encode()
    secs = time.perf_counter() - t0
    rss = (_peak_rss_mb() - base) * (1 << 20)
    tracemalloc.start()
    encode()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if isinstance(out, codec.MaxBytesError):
        print(w.nbytes, f"{secs:.2f}", int(rss), traced, "kept" if out.exact else "kept>=", out.packed_bytes, "-")
    else:
        print(w.nbytes, f"{secs:.2f}", int(rss), traced, codec.info(out)["layout"], len(out),
              hashlib.sha256(out).hexdigest())


def codec_main(cases, n, json_path, argv, cap=False):
    """The ``--codec`` table (and JSON)."""
    rows = []
    print(f"{'case':10} {'tensor MB':>9} {'seconds':>8} {'RSS':>7} {'traced':>7}  layout, packed bytes, sha256"
          + (" (kept: over pack's max_bytes, kept>=: at least that many bytes)" if cap else ""))
    for case in cases:
        r = subprocess.run([sys.executable, __file__, "--child", "codec-cap" if cap else "codec", case, str(n)],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"encode of {case} failed:\n{r.stderr[-2000:]}")
        nbytes, secs, rss, traced, layout, size, sha = r.stdout.split()[-7:]
        row = {"case": case, "shape": [n, n], "tensor_bytes": int(nbytes), "seconds": float(secs),
               "peak_rss_bytes": int(rss), "traced_peak_bytes": int(traced), "layout": layout,
               "packed_bytes": int(size), "sha256": sha, "pack_cap": cap,
               "lower_bound": layout == "kept>="}
        rows.append(row)
        print(f"{case:10} {int(nbytes) / 1e6:9.1f} {float(secs):8.2f} {int(rss) / int(nbytes):6.1f}x "
              f"{int(traced) / int(nbytes):6.1f}x  {layout}, {int(size):,}, {sha[:16]}", flush=True)
    if json_path:
        from _common import machine_info, write_json

        write_json(json_path, {"benchmark": "scale_codec", "machine": machine_info(frameworks=False), "rows": rows,
                               "command": "python benchmarks/bench_scale.py " + shlex.join(argv)})
    return 0


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
            elif spec["dtype"] == np.int32:  # GATHER indices
                x = np.random.default_rng(0).integers(0, GATHER_ROWS, spec["shape"]).astype(np.int32)
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
    ap.add_argument("--cases", default="big_f32,big_i8,big_i16,big_i32,wide,multi")
    ap.add_argument("--dir", default=None, help="where the models go (default: a temporary directory)")
    ap.add_argument("--json", default=None, help="write the figures here (docs/results/scale.json; results_doc.py --scale)")
    ap.add_argument("--codec", default=None, help=f"codec.encode alone: 'all' or some of {','.join(CODEC_CASES)}")
    ap.add_argument("--size", type=int, default=2048, help="--codec tensors are SIZE x SIZE (default 2048)")
    ap.add_argument("--cap", action="store_true", help="--codec: encode with the max_bytes pack gives (kept tensors stop early)")
    ap.add_argument("--child", nargs=3, metavar=("OP", "SRC", "DST"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        if args.child[0] in ("codec", "codec-cap"):
            return codec_child(*args.child[1:], cap=args.child[0] == "codec-cap")
        return child(*args.child)
    if args.codec:
        cases = CODEC_CASES if args.codec == "all" else [c for c in args.codec.split(",") if c]
        unknown = [c for c in cases if c not in CODEC_CASES]
        if unknown or args.size < 1:
            ap.error(f"unknown --codec case(s) {unknown}: choose from {CODEC_CASES}" if unknown
                     else f"--size must be >= 1, got {args.size}")
        return codec_main(cases, args.size, args.json, argv if argv is not None else sys.argv[1:], args.cap)
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
                               "command": "python benchmarks/bench_scale.py " + shlex.join(
                                   argv if argv is not None else sys.argv[1:])})
    return 0


def _tensor_count(model):
    from dc_keras import _flatbuffer as fb

    m = fb.schema.Model.GetRootAs(model, 0)
    return sum(m.Subgraphs(i).TensorsLength() for i in range(m.SubgraphsLength()))


if __name__ == "__main__":
    sys.exit(main())
