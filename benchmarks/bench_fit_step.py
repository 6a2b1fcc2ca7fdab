"""fit() step time of pruned and of clustered vs plain LeNet-300-100 at batch 128: dc_keras on Keras 3
with the TensorFlow and the JAX backend (one subprocess each, in one run) and, side by side, tfmot's
prune_low_magnitude / cluster_weights on tf_keras (Keras 2; TF_USE_LEGACY_KERAS=1 because tfmot does
not run on Keras 3). Pruned: 90 % sparsity with PruningCallback. Clustered: the fine-tuning step of
5-bit weight sharing (32 trainable centroids per kernel, a centroid gather in the forward pass).

    python benchmarks/bench_fit_step.py [--steps 200] [--rounds 15] [--warmup 2] [--backends tensorflow,jax]
                                        [--skip-tfmot] [--json docs/results/fit_step.json]

Goal (issue 16): dc_keras pruned / plain <= 1.1x on TF and on JAX (the clustered ratio is held to
the same bar).

How it is measured (robust on a small, shared machine): each backend runs in one process that builds
the plain, pruned and clustered models once, warms each up (``--warmup`` epochs: tracing/compiling),
then times ``--rounds`` interleaved rounds ``plain, pruned, clustered`` of one ``fit()`` epoch of
``--steps`` batches each, and a last plain epoch. Every model gets the same ``fit()`` call; the pruned
one adds the PruningCallback it needs. Each wrapped epoch is compared with the mean of the plain epochs
just before and after it (so load that drifts during a round affects both sides alike); the ratio is
the median of these per-round ratios, shown with their min and max. Wall time and process CPU time
(``time.process_time``: user + sys of all threads) are recorded per epoch; the per-epoch times are in
the JSON too. The JSON records the machine load (os.getloadavg) before and after.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


_TIMER = r"""
import gc, json, os, sys, time
import numpy as np
steps, rounds, batch, legacy, warmup = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1",
                                        int(sys.argv[5]))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
rng = np.random.default_rng(0)
x = rng.random((steps * batch, 28, 28, 1), dtype=np.float32)
y = rng.integers(0, 10, steps * batch)
if legacy:
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot
else:
    import keras
    import dc_keras

def lenet():
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(300, activation="relu", name="fc1")(h)
    h = keras.layers.Dense(100, activation="relu", name="fc2")(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="fc3")(h))

def make(kind):
    model = lenet()
    callbacks = []
    pruned = kind == "pruned"
    if kind == "clustered" and legacy:
        cl = tfmot.clustering.keras
        model = cl.cluster_weights(model, number_of_clusters=32,
                                   cluster_centroids_init=cl.CentroidInitialization.LINEAR)
    elif kind == "clustered":
        model = dc_keras.cluster(model, bits=5)
    elif pruned and legacy:
        sched = tfmot.sparsity.keras.ConstantSparsity(0.9, begin_step=0, frequency=100)
        model = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=sched)
        callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    elif pruned:
        model = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.9, begin_step=0, frequency=100))
        callbacks = [dc_keras.PruningCallback()]
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model, callbacks

def epoch(name):
    model, callbacks = runs[name]
    gc.collect()  # every timed epoch starts from the same garbage-collector state
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
    times[name].append((time.perf_counter() - t0) / steps)
    times[name + "_cpu"].append((time.process_time() - c0) / steps)

runs = {name: make(name) for name in ("plain", "pruned", "clustered")}
for _ in range(warmup):  # trace and compile every model's step
    for model, callbacks in runs.values():
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
times = {k: [] for name in runs for k in (name, name + "_cpu")}
for _ in range(rounds):
    for name in runs:
        epoch(name)
epoch("plain")  # closes the last round: every wrapped epoch lies between two plain ones
times["backend"] = "tf_keras" if legacy else keras.backend.backend()
if not legacy and times["backend"] == "jax":  # the clustered step's native centroid kernels (make jax-ffi)
    from dc_keras.train import _jax_ffi
    times["jax_ffi"] = _jax_ffi.available()
    times["jax_ffi_split"] = _jax_ffi.split_mode()  # DC_KERAS_JAX_FFI_SPLIT: large calls shared with a pool thread
    if not times["jax_ffi"]:
        times["jax_ffi_why"] = _jax_ffi.unavailable_reason()
if not legacy and times["backend"] == "tensorflow":  # the same kernels as TF custom ops (make tf-ops)
    from dc_keras.train import _tf_ops
    times["tf_ops"] = _tf_ops.available()
    if not times["tf_ops"]:
        times["tf_ops_why"] = _tf_ops.unavailable_reason()
print("RESULT " + json.dumps(times))
"""


def run(legacy, steps, rounds, batch, backend="tensorflow", warmup=2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    argv = [sys.executable, "-c", _TIMER, str(steps), str(rounds), str(batch), "1" if legacy else "0", str(warmup)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):]), None
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return None, "\n    ".join(tail)


def round_ratios(wrapped, plain):
    """Per-round ratios: epoch ``i`` of the wrapped model over the mean of plain epochs ``i`` and
    ``i + 1`` (run just before and just after it); plain has one epoch more than ``wrapped``.

    Example:
        >>> round_ratios([2.2, 2.0], [2.0, 2.0, 2.0])
        [1.1, 1.0]
    """
    return [w / max((plain[i] + plain[i + 1]) / 2, 1e-12) for i, w in enumerate(wrapped)]


def summarize(times):
    """Row fields from the per-epoch times the timer process returns (seconds per step)."""
    out = {"plain_s": statistics.median(times["plain"]), "plain_cpu_s": statistics.median(times["plain_cpu"])}
    for kind, prefix in (("pruned", ""), ("clustered", "cluster_")):
        wall = round_ratios(times[kind], times["plain"])
        cpu = round_ratios(times[kind + "_cpu"], times["plain_cpu"])
        out.update({f"{kind}_s": statistics.median(times[kind]), f"{kind}_cpu_s": statistics.median(times[kind + "_cpu"]),
                    f"{prefix}ratio": statistics.median(wall), f"{prefix}ratio_min": min(wall),
                    f"{prefix}ratio_max": max(wall), f"{prefix}cpu_ratio": statistics.median(cpu),
                    f"{prefix}cpu_ratio_min": min(cpu), f"{prefix}cpu_ratio_max": max(cpu)})
    out["epochs"] = {k: times[k] for k in ("plain", "pruned", "clustered", "plain_cpu", "pruned_cpu", "clustered_cpu")}
    return out


GOAL = 1.1


def _cell(row, prefix):
    return (f"{row[prefix + 'ratio']:5.2f}x [{row[prefix + 'ratio_min']:.2f}-{row[prefix + 'ratio_max']:.2f}]"
            f" {row[prefix + 'cpu_ratio']:5.2f}x [{row[prefix + 'cpu_ratio_min']:.2f}-{row[prefix + 'cpu_ratio_max']:.2f}]")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="batches per timed fit() epoch")
    p.add_argument("--rounds", "--repeats", type=int, default=15, dest="rounds",
                   help="interleaved rounds (plain, pruned, clustered) of one timed epoch each")
    p.add_argument("--warmup", type=int, default=2, help="untimed epochs per model first (tracing, compiling)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--skip-tfmot", action="store_true", help="time dc_keras only")
    p.add_argument("--backends", default="tensorflow,jax",
                   help="comma-separated Keras backends to time dc_keras on (default: tensorflow,jax)")
    p.add_argument("--json", default=None, help="write the results here (e.g. docs/results/fit_step.json)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--rounds and --steps must be at least 1, --warmup at least 0")
    load_before = os.getloadavg()
    print(f"LeNet-300-100, batch {args.batch_size}, {args.rounds} rounds of {args.steps}-step epochs after "
          f"{args.warmup} warm-up epochs, 90 % sparsity")
    print("ratio: median over rounds of wrapped / mean of the plain epochs before and after it [min-max];")
    print("wall = elapsed time, cpu = user+sys CPU time of the process (steadier on a loaded machine)")
    print(f"{'':32} {'plain':>7} {'pruned':>7} {'pruned ratio wall, cpu':>34} {'clust.':>7} {'clustered ratio wall, cpu':>34}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"tensorflow", "jax"})
    if unknown or not backends:
        p.error(f"--backends: choose from tensorflow, jax (got {args.backends!r})")
    sides = tuple((f"dc_keras, Keras 3 {'TensorFlow' if b == 'tensorflow' else 'JAX'}", False, b) for b in backends)
    if not args.skip_tfmot:
        sides += (("tfmot 0.8 (tf_keras, Keras 2)", True, "tensorflow"),)
    rows = []
    for label, legacy, backend in sides:
        t0 = time.time()
        result, err = run(legacy, args.steps, args.rounds, args.batch_size, backend, args.warmup)
        if result is None:
            print(f"{label:32} did not run: {err}")
            rows.append({"label": label, "backend": backend, "legacy": legacy, "error": err})
            continue
        row = {"label": label, "backend": backend, "legacy": legacy, **summarize(result)}
        row.update(goal_met=None if legacy else row["ratio"] <= GOAL,
                   cluster_goal_met=None if legacy else row["cluster_ratio"] <= GOAL, seconds=time.time() - t0)
        for key in ("jax_ffi", "jax_ffi_split", "tf_ops"):
            if key in result:
                row[key] = result[key]
        rows.append(row)
        print(f"{label:32} {1e3 * row['plain_s']:7.2f} {1e3 * row['pruned_s']:7.2f} {_cell(row, '')} "
              f"{1e3 * row['clustered_s']:7.2f} {_cell(row, 'cluster_')}   ({row['seconds']:.0f} s)")
        if "jax_ffi" in result:
            split = " shared with a pool thread (DC_KERAS_JAX_FFI_SPLIT=1)" if result.get("jax_ffi_split") else " on one thread (DC_KERAS_JAX_FFI_SPLIT=0)"
            print(f"{'':32} clustered step: " + ("native centroid kernels (make jax-ffi)" + split if result["jax_ffi"] else
                                                 f"lax.gather fallback: {result.get('jax_ffi_why')}"))
        if "tf_ops" in result:
            print(f"{'':32} clustered step: " + ("native centroid ops (make tf-ops)" if result["tf_ops"] else
                                                 f"XLA tf.gather fallback: {result.get('tf_ops_why')}"))
    load_after = os.getloadavg()
    print(f"goal: dc_keras ratio <= {GOAL:.2f}x on each backend (pruned; clustered held to the same bar)")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        write_json(args, argv, rows, load_before)
    return 0


def write_json(args, argv, rows, load_before):
    import platform

    import _common  # benchmarks/ is on sys.path when this runs as a script (quiets TF's start-up lines)
    import keras
    import tensorflow as tf

    out = {"benchmark": "fit_step", "command": "python benchmarks/bench_fit_step.py " + shlex.join(argv or sys.argv[1:]),
           "config": {"steps": args.steps, "rounds": args.rounds, "repeats": args.rounds, "warmup": args.warmup,
                      "batch_size": args.batch_size, "model": "LeNet-300-100", "sparsity": 0.9, "cluster_bits": 5,
                      "ratio": "median over rounds of wrapped / mean of the plain epochs before and after"},
           "goal_ratio": GOAL, "rows": rows,
           "machine": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
                       "cpu": _common.cpu_model(), "python": platform.python_version(),
                       "tensorflow": tf.__version__, "keras": keras.__version__,
                       "loadavg_before": list(load_before), "loadavg": list(os.getloadavg())}}
    _common.write_json(args.json, out)  # atomic, umask-respecting
    print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
