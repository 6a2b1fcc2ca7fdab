"""fit() step time of pruned and of clustered vs plain LeNet-300-100 at batch 128: dc_keras on Keras 3
with the TensorFlow and the JAX backend (one subprocess each, in one run) and, side by side, tfmot's
prune_low_magnitude / cluster_weights on tf_keras (Keras 2; TF_USE_LEGACY_KERAS=1 because tfmot does
not run on Keras 3). Pruned: 90 % sparsity with PruningCallback. Clustered: the fine-tuning step of
5-bit weight sharing (32 trainable centroids per kernel, a centroid gather in the forward pass).

    python benchmarks/bench_fit_step.py [--steps 200] [--repeats 5] [--backends tensorflow,jax]
                                        [--skip-tfmot] [--json docs/results/fit_step.json]

Goal (issue 16): dc_keras pruned / plain <= 1.1x on TF and on JAX (the clustered ratio is held to
the same bar). Times are medians over ``--repeats`` timed epochs of ``--steps`` batches each, after
a warm-up epoch that traces/compiles the step; plain, pruned and clustered epochs alternate so
machine load affects them alike. The JSON records the machine load (os.getloadavg) before and after.
"""
import argparse
import json
import os
import subprocess
import sys
import time


_TIMER = r"""
import json, os, sys, time
import numpy as np
steps, repeats, batch, legacy = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
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

runs = {name: make(name) for name in ("plain", "pruned", "clustered")}
for model, callbacks in runs.values():  # warm-up: trace and compile
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
import os
times = {k: [] for name in runs for k in (name, name + "_cpu")}
for _ in range(repeats):
    for name, (model, callbacks) in runs.items():
        t0, c0 = time.perf_counter(), sum(os.times()[:2])
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks)
        times[name].append((time.perf_counter() - t0) / steps)
        times[name + "_cpu"].append((sum(os.times()[:2]) - c0) / steps)
out = {k: float(np.median(v)) for k, v in times.items()}
out["backend"] = "tf_keras" if legacy else keras.backend.backend()
if not legacy and out["backend"] == "jax":  # the clustered step's native centroid kernels (make jax-ffi)
    from dc_keras.train import _jax_ffi
    out["jax_ffi"] = _jax_ffi.available()
    if not out["jax_ffi"]:
        out["jax_ffi_why"] = _jax_ffi._state.get("why")
print("RESULT " + json.dumps(out))
"""


def run(legacy, steps, repeats, batch, backend="tensorflow"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    proc = subprocess.run([sys.executable, "-c", _TIMER, str(steps), str(repeats), str(batch), "1" if legacy else "0"],
                          capture_output=True, text=True, env=env, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):]), None
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return None, "\n    ".join(tail)


GOAL = 1.1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--skip-tfmot", action="store_true", help="time dc_keras only")
    p.add_argument("--backends", default="tensorflow,jax",
                   help="comma-separated Keras backends to time dc_keras on (default: tensorflow,jax)")
    p.add_argument("--json", default=None, help="write the results here (e.g. docs/results/fit_step.json)")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    print(f"LeNet-300-100, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, 90 % sparsity")
    print("wall = elapsed time; cpu = user+sys CPU time of the process (steadier on a loaded machine)")
    print(f"{'':32} {'plain':>10} {'pruned':>10} {'ratio':>7} {'cpu':>7} {'clustered':>10} {'ratio':>7} {'cpu':>7}")
    print(f"{'framework':32} {'ms/step':>10} {'ms/step':>10} {'':7} {'ratio':>7} {'ms/step':>10} {'':7} {'ratio':>7}")
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
        result, err = run(legacy, args.steps, args.repeats, args.batch_size, backend)
        if result is None:
            print(f"{label:32} did not run: {err}")
            rows.append({"label": label, "backend": backend, "legacy": legacy, "error": err})
            continue
        ratio = result["pruned"] / result["plain"]
        cpu_ratio = result["pruned_cpu"] / max(result["plain_cpu"], 1e-9)
        c_ratio = result["clustered"] / result["plain"]
        c_cpu_ratio = result["clustered_cpu"] / max(result["plain_cpu"], 1e-9)
        rows.append({"label": label, "backend": backend, "legacy": legacy, "plain_s": result["plain"],
                     "pruned_s": result["pruned"], "ratio": ratio, "cpu_ratio": cpu_ratio,
                     "goal_met": None if legacy else ratio <= GOAL,
                     "clustered_s": result["clustered"], "cluster_ratio": c_ratio, "cluster_cpu_ratio": c_cpu_ratio,
                     "cluster_goal_met": None if legacy else c_ratio <= GOAL, "seconds": time.time() - t0})
        if "jax_ffi" in result:
            rows[-1]["jax_ffi"] = result["jax_ffi"]
        print(f"{label:32} {1e3 * result['plain']:10.2f} {1e3 * result['pruned']:10.2f} {ratio:6.2f}x"
              f" {cpu_ratio:6.2f}x {1e3 * result['clustered']:10.2f} {c_ratio:6.2f}x {c_cpu_ratio:6.2f}x"
              f"   ({time.time() - t0:.0f} s)")
        if "jax_ffi" in result:
            print(f"{'':32} clustered step: " + ("native centroid kernels (make jax-ffi)" if result["jax_ffi"] else
                                                 f"lax.gather fallback: {result.get('jax_ffi_why')}"))
    load_after = os.getloadavg()
    print(f"goal: dc_keras ratio <= {GOAL:.2f}x on each backend (pruned; clustered held to the same bar)")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    if args.json:
        import platform

        import keras
        import tensorflow as tf

        out = {"benchmark": "fit_step", "command": "python benchmarks/bench_fit_step.py " + " ".join(argv or sys.argv[1:]),
               "config": {"steps": args.steps, "repeats": args.repeats, "batch_size": args.batch_size,
                          "model": "LeNet-300-100", "sparsity": 0.9, "cluster_bits": 5},
               "goal_ratio": GOAL, "rows": rows,
               "machine": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
                           "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                           "tensorflow": tf.__version__, "keras": keras.__version__,
                           "loadavg_before": list(load_before), "loadavg": list(os.getloadavg())}}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
