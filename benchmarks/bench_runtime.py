"""Runtime routes side by side: latency (batch 1 / 8, weights in cache and from DRAM), resident
memory (anonymous / file-backed) and load time of FULLY_CONNECTED layers and MobileNetV2.

Routes (each measured in its own fresh process; rounds interleave the routes):
  dense          the unpacked .tflite, LiteRT Interpreter with default delegates (XNNPACK)
  decoded        the packed .tflite, dc_keras.runtime.Interpreter() (decode at load -> XNNPACK)
  compressed     the packed .tflite, dc_keras.runtime.Interpreter(weights="compressed",
                 max_density=1.0): every FC layer compressed, whatever its density
  tflite_sparse  the unpacked model converted with tf.lite.Optimize.EXPERIMENTAL_SPARSITY
                 (TFLite's own sparse format; unstructured sparsity gets a DENSIFY op)
  tflite_1x4     FC 4096^2 only: the same density pruned in 1x4 blocks along the input dim,
                 EXPERIMENTAL_SPARSITY (TFLite's built-in block-sparse FC kernel)
FC models: one Dense layer (bias, no activation), weights pruned to the density (unstructured,
smallest |w|) and clustered to 32 values. Embedding models (emb<rows>x<width>): one
keras.layers.Embedding (GATHER in TFLite) with its table pruned and clustered the same way, 16 ids
per call (batch 8: 8 x 16). Ratios are vs `dense` of the same model, same run.
Load: wall time of create + allocate_tensors (and its CPU time in every thread of the process,
load_cpu_s: a steadier pilot on a loaded machine). Children run with OPENBLAS_NUM_THREADS=1 (numpy's
idle BLAS threads would otherwise spin on the other cores during the load).
Latency: median of the invokes (and the fastest one: on a loaded machine a long invoke is more
often preempted, which the minimum filters out).
Memory = growth of the process's RSS from before the interpreter is created to after load +
invokes (from /proc/self/smaps_rollup), split into anonymous and file-backed pages.  The
baseline is taken after the imports and numpy.random's first use (the inputs' generator), so
only the interpreter's pages count: its model (mmapped by path), arenas, weights and the
LiteRT / dc_keras code pages it touches.

Usage: python benchmarks/bench_runtime.py [--rounds N] [--quick] [--json docs/results/runtime.json]
"""
import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

CACHE = os.path.expanduser("~/.cache/dc_keras/bench_runtime")
FC_SHAPES = {"fc784x300": (784, 300), "fc1024": (1024, 1024), "fc4096": (4096, 4096)}
DENSITIES = (0.05, 0.10, 0.30)
EMB_SHAPES = {"emb50000x64": (50000, 64)}  # GATHER on a 12.8 MB float table
FLUSH_BYTES = 256 << 20


# ---------------------------------------------------------------- child (one measurement)
def smaps():
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].rstrip(":") in ("Rss", "Anonymous", "Private_Clean", "Shared_Clean"):
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    out["File"] = out["Rss"] - out["Anonymous"]
    return out


def _make(route, path):
    if route in ("dense", "tflite_sparse", "tflite_1x4"):
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=path)
    from dc_keras import runtime

    if route == "compressed":  # every FC layer compressed, at any density (the default stops at 30-50 %)
        return runtime.Interpreter(model_path=path, release_decoded=True, weights="compressed", max_density=1.0)
    return runtime.Interpreter(model_path=path, release_decoded=True)  # memory goal: keep_decoded=0


def _invoke_times(it, n, cpu=None):
    """Wall time of n invokes; `cpu` (a list) also gets each invoke's CPU time of this thread
    (every route runs batch-1 FC in the calling thread): unlike wall time it leaves out the time
    other processes hold the core, a steadier pilot on a loaded machine."""
    ts = []
    for _ in range(n):
        c0, t0 = time.thread_time(), time.perf_counter()
        it.invoke()
        ts.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.thread_time() - c0)
    return ts


def _cpu():
    """CPU time of this process (every thread: a route's helper threads count)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _input(shape, dtype, seed):
    rng = np.random.RandomState(seed)
    if np.issubdtype(dtype, np.integer):  # embedding ids: rows spread over the first 1000
        return rng.randint(0, 1000, size=shape).astype(dtype)
    return rng.rand(*shape).astype(dtype)


def child(route, path, invokes, cold):
    import ai_edge_litert.interpreter  # noqa: F401  (imports before the baseline)
    import dc_keras.runtime  # noqa: F401

    # numpy.random (used by _input) loads lazily, with libcrypto: ~5 MiB of the benchmark's own
    # pages that would otherwise be counted in every route's memory.
    _input([1], np.float32, 0)
    rss0 = smaps()
    c0, t0 = _cpu(), time.perf_counter()
    it = _make(route, path)
    it.allocate_tensors()
    load = time.perf_counter() - t0
    load_cpu = _cpu() - c0
    inp = it.get_input_details()[0]
    shape = list(inp["shape"])
    x = _input(shape, inp["dtype"], 0)
    it.set_tensor(inp["index"], x)
    for _ in range(3):
        it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"]).copy()
    cpu1 = []
    ts1 = _invoke_times(it, invokes, cpu1)
    rss1 = smaps()
    res = {"load_s": load, "load_cpu_s": load_cpu, "batch1_s": statistics.median(ts1), "batch1_min_s": min(ts1),
           "batch1_cpu_s": statistics.median(cpu1), "rss_anon": rss1["Anonymous"] - rss0["Anonymous"],
           "rss_file": rss1["File"] - rss0["File"], "rss_total": rss1["Rss"],
           "output": out.ravel()[:64].tolist(), "tflite_bytes": os.path.getsize(path)}
    if hasattr(it, "compressed_report"):
        rep = it.compressed_report()
        res["compressed_layers"] = sum(r["route"] == "compressed" for r in rep)
        res["compact_bytes"] = sum(r.get("bytes", 0) for r in rep)
    if cold:
        flush = np.zeros(FLUSH_BYTES, np.uint8)
        ts = []
        for _ in range(cold):
            flush[::64] += 1  # evicts the weights from every cache level
            t0 = time.perf_counter()
            it.invoke()
            ts.append(time.perf_counter() - t0)
        res["batch1_dram_s"] = statistics.median(ts)
        del flush
    shape[0] = 8
    it.resize_tensor_input(inp["index"], shape)
    it.allocate_tensors()
    it.set_tensor(inp["index"], _input(shape, inp["dtype"], 1))
    it.invoke()
    res["batch8_s"] = statistics.median(_invoke_times(it, max(5, invokes // 4)))
    print("RESULT " + json.dumps(res))


# ---------------------------------------------------------------- models (parent)
def fc_weights(n_in, n_out, density, seed, block=1):
    rng = np.random.RandomState(seed)
    w = rng.randn(n_in, n_out).astype(np.float32) * 0.05
    if block == 1:
        keep = np.abs(w) >= np.quantile(np.abs(w), 1 - density)
    else:  # 1 x block blocks along the input dim (Keras kernel rows)
        blocks = np.abs(w.reshape(n_in // block, block, n_out)).sum(1)
        keep = np.repeat(blocks >= np.quantile(blocks, 1 - density), block, axis=0)
    w = np.where(keep, w, 0).astype(np.float32)
    nz = w[w != 0]
    levels = np.quantile(nz, np.linspace(0, 1, 32))  # 32 shared values
    idx = np.abs(nz[:, None] - levels[None, :]).argmin(1)
    w[w != 0] = levels[idx].astype(np.float32)
    return w


def fc_model(n_in, n_out, w):
    import keras

    m = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(n_out)])
    m.layers[0].set_weights([w, np.linspace(-0.1, 0.1, n_out).astype(np.float32)])
    return m


def sparse_tflite(model):
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return conv.convert()


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def build_models(names):
    """{model: {route: path}} under CACHE (built once)."""
    from dc_keras import export

    os.makedirs(CACHE, exist_ok=True)
    out = {}
    for name in names:
        paths = {r: os.path.join(CACHE, f"{name}.{r}.tflite")
                 for r in ("dense", "packed", "tflite_sparse", "tflite_1x4")}
        routes = {"dense": paths["dense"], "decoded": paths["packed"], "compressed": paths["packed"]}
        if name.startswith("fc"):
            routes["tflite_sparse"] = paths["tflite_sparse"]
        if name == "fc4096_d10":
            routes["tflite_1x4"] = paths["tflite_1x4"]
        if not all(os.path.exists(p) for p in routes.values()):
            _build_one(name, paths, export)
        out[name] = routes
    return out


def _build_one(name, paths, export):
    if name == "mobilenetv2":
        from bench_load_invoke import build  # benchmarks/ is on sys.path when run as a script

        model = build(1.0, 224)
    elif name.startswith("emb"):
        import keras

        base, d = name.split("_d")
        rows, width = EMB_SHAPES[base]
        model = keras.Sequential([keras.Input((16,), dtype="int32"), keras.layers.Embedding(rows, width)])
        model.layers[0].set_weights([fc_weights(rows, width, int(d) / 100, seed=rows)])
    else:
        base, d = name.split("_d")
        n_in, n_out = FC_SHAPES[base]
        model = fc_model(n_in, n_out, fc_weights(n_in, n_out, int(d) / 100, seed=n_in))
        write(paths["tflite_sparse"], sparse_tflite(model))
        if name == "fc4096_d10":
            blk = fc_model(n_in, n_out, fc_weights(n_in, n_out, 0.10, seed=7, block=4))
            write(paths["tflite_1x4"], sparse_tflite(blk))
    plain = export.to_tflite(model, pack=False)
    write(paths["dense"], plain)
    write(paths["packed"], export.pack(plain))


# ---------------------------------------------------------------- parent
def run_child(route, path, invokes, cold):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", route, path, str(invokes), str(cold)]
    # OPENBLAS_NUM_THREADS=1: numpy's OpenBLAS otherwise starts a thread per CPU at import, which
    # busy-waits for work for a while; it often still spins when the load starts (12 ms of CPU
    # measured in a 14 ms dense load) and then takes the core a route's helper threads need. No
    # route uses BLAS, and no app loading a model has that thread: it is the benchmark's own.
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OPENBLAS_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (p.stderr or p.stdout)[-600:]}


def summarize(samples):
    keys = ("load_s", "load_cpu_s", "batch1_s", "batch1_min_s", "batch1_cpu_s", "batch1_dram_s", "batch8_s", "rss_anon",
            "rss_file")
    ok = [s for s in samples if "error" not in s]
    if not ok:
        return {"error": samples[0]["error"]}
    out = {k: statistics.median(s[k] for s in ok) for k in keys if k in ok[0]}
    out["rss_delta"] = out["rss_anon"] + out["rss_file"]
    out["tflite_bytes"] = ok[0]["tflite_bytes"]
    for k in ("compressed_layers", "compact_bytes"):
        if k in ok[0]:
            out[k] = ok[0][k]
    out["output"] = ok[0]["output"]
    if len(ok) < len(samples):  # the medians are over fewer rounds: said in the JSON (results_doc lists it)
        failed = [s for s in samples if "error" in s]
        out.update(failed_rounds=len(failed), rounds=len(samples), failed_error=failed[0]["error"][-300:])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--invokes", type=int, default=40)
    ap.add_argument("--cold", type=int, default=8, help="invokes timed after evicting the caches")
    ap.add_argument("--quick", action="store_true", help="fc models at 10 %% only, 1 round")
    ap.add_argument("--json", default=None)
    ap.add_argument("--models", default=None,
                    help="comma-separated subset of the models (e.g. mobilenetv2,fc4096_d10); default: all")
    if argv and argv[0] == "--child":
        return child(argv[1], argv[2], int(argv[3]), int(argv[4]))
    args = ap.parse_args(argv)
    names = ([f"{k}_d{int(d * 100)}" for k in FC_SHAPES for d in DENSITIES] + ["mobilenetv2"]
             + [f"{k}_d10" for k in EMB_SHAPES])
    if args.quick:
        names, args.rounds = [n for n in names if n.endswith("_d10")], 1
    if args.models:
        unknown = set(args.models.split(",")) - set(names)
        if unknown:
            ap.error(f"unknown --models {sorted(unknown)}; choose from {names}")
        names = [n for n in names if n in args.models.split(",")]
    models = build_models(names)
    load_before = os.getloadavg()
    samples = {m: {r: [] for r in routes} for m, routes in models.items()}
    for rnd in range(args.rounds):
        for m, routes in models.items():
            for r, path in routes.items():
                cold = args.cold if m.startswith("fc") else 0
                samples[m][r].append(run_child(r, path, args.invokes, cold))
        print(f"round {rnd + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    from _common import compressed_kernel_name, cpu_model  # here: the measuring children import nothing more

    result = {"machine": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "nproc": os.cpu_count(), "cpu": cpu_model(),
                          "loadavg_start": list(load_before), "loadavg": list(os.getloadavg()),
                          "compressed_kernel": compressed_kernel_name(),
                          "compressed_max_density": 1.0,
                          "memory_baseline": "taken after the imports and numpy.random's first use"},
              "command": "python benchmarks/bench_runtime.py " + shlex.join(argv or sys.argv[1:]),
              "rounds": args.rounds, "models": {}}
    for m in models:
        res = {r: summarize(s) for r, s in samples[m].items()}
        dense_out = np.array(res["dense"].get("output", []))
        for r, v in res.items():
            if "error" in v or "error" in res["dense"]:
                continue
            o = np.array(v.pop("output"))
            if r in ("decoded", "compressed") and len(o) == len(dense_out):
                v["max_rel_diff_vs_dense"] = float(np.abs(o - dense_out).max() / (np.abs(dense_out).max() or 1))
            for k in ("load_s", "load_cpu_s", "batch1_s", "batch1_min_s", "batch1_cpu_s", "batch1_dram_s", "batch8_s",
                      "rss_anon", "rss_delta"):
                if k in v and res["dense"].get(k):
                    v[k + "_ratio"] = v[k] / res["dense"][k]
        res["dense"].pop("output", None)
        result["models"][m] = res
        print(m, json.dumps({r: {k: (round(x, 4) if isinstance(x, float) else x) for k, x in v.items()}
                             for r, v in res.items()}))
    if args.json:
        write(args.json, (json.dumps(result, indent=1) + "\n").encode())
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
