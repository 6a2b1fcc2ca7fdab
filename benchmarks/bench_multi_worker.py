"""Multi-worker fit() step time: pruned and clustered vs plain LeNet-300-100 under the same
distribution (Keras 3 JAX backend, ``keras.distribution.DataParallel`` over N worker processes
on 127.0.0.1, gloo CPU collectives: the set-up of examples/multi_worker.py).

    python benchmarks/bench_multi_worker.py [--workers 2] [--steps 50] [--rounds 7] \\
        [--json docs/results/multi_worker_step.json]

Goal (issue 16): multi-worker step overhead vs the same distribution on the plain model <= 1.2x.
Every worker builds the three models from the same seed and data, traces each with a warm-up
epoch, then runs ``--rounds`` rounds; a round times one epoch of ``--steps`` batches of each model,
in an order rotated every round, so machine load affects all alike (interleaved). Reported:
median seconds per step on worker 0 (the workers step in lock-step through the collectives) and
the machine load (os.getloadavg) before and after.
"""
import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL = 1.2
VARIANTS = ("plain", "pruned", "clustered")


def _models(keras, dc_keras):
    """``{name: (compiled model, callbacks)}`` for the plain, pruned and clustered LeNet-300-100.

    Example:
        >>> runs = _models(keras, dc_keras)  # inside a worker, after set_distribution
    """
    def lenet():
        inputs = keras.Input((784,))
        h = keras.layers.Dense(300, activation="relu", name="fc1")(inputs)
        h = keras.layers.Dense(100, activation="relu", name="fc2")(h)
        return keras.Model(inputs, keras.layers.Dense(10, name="fc3")(h))

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    plain = lenet()
    schedule = dc_keras.schedules.ConstantSparsity(0.9, begin_step=0, frequency=100)
    pruned = dc_keras.prune(lenet(), schedule)
    clustered = dc_keras.cluster(lenet(), bits=5)
    runs = {"plain": (plain, []), "pruned": (pruned, [dc_keras.PruningCallback()]), "clustered": (clustered, [])}
    for model, _ in runs.values():
        model.compile(keras.optimizers.Adam(1e-3), loss)
    return runs


def worker(args):
    """One worker process: join the JAX job, time the three models, print ``RESULT {...}``.

    Example:
        >>> worker(argparse.Namespace(workers=2, worker_id=0, coordinator="127.0.0.1:1234", ...))
    """
    os.environ["KERAS_BACKEND"] = "jax"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.workers,
                               process_id=args.worker_id, initialization_timeout=args.timeout)
    import keras
    import numpy as np
    import tensorflow as tf

    import dc_keras

    keras.utils.set_random_seed(0)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size, drop_remainder=True).prefetch(2)
    runs = _models(keras, dc_keras)
    for model, callbacks in runs.values():  # warm-up: trace and compile
        model.fit(ds, epochs=1, verbose=0, callbacks=callbacks)
    times = {name: [] for name in runs}
    for r in range(args.rounds):
        order = VARIANTS[r % 3:] + VARIANTS[:r % 3]
        for name in order:
            model, callbacks = runs[name]
            t0 = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0, callbacks=callbacks)
            times[name].append((time.perf_counter() - t0) / args.steps)
    print("RESULT " + json.dumps({"worker": args.worker_id, "devices": len(jax.devices()), "times": times}),
          flush=True)
    jax.distributed.shutdown()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(args):
    """Start the workers on 127.0.0.1 and return their RESULT dicts (None and stderr on failure)."""
    port = _free_port()
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    flags = ["--workers", str(args.workers), "--steps", str(args.steps), "--rounds", str(args.rounds),
             "--batch-size", str(args.batch_size), "--timeout", str(args.timeout)]
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker-id", str(i),
                               "--coordinator", f"127.0.0.1:{port}"] + flags,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(args.workers)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=args.timeout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for p, (out, err) in zip(procs, outs):
        line = next((l for l in out.splitlines() if l.startswith("RESULT ")), None)
        if p.returncode != 0 or line is None:
            return None, (err or out).strip().splitlines()[-5:]
        results.append(json.loads(line[len("RESULT "):]))
    return results, None


def _summary(results):
    """Median step time per model (worker 0) and the ratios to plain."""
    import statistics

    times = results[0]["times"]
    med = {name: statistics.median(v) for name, v in times.items()}
    rows = [{"model": name, "step_s": med[name], "ratio": med[name] / med["plain"],
             "goal_met": None if name == "plain" else med[name] / med["plain"] <= GOAL,
             "all_s": times[name]} for name in VARIANTS]
    return rows


def _write_json(path, out):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=50, help="batches per timed epoch")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=128, help="global batch (all workers)")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--json", default=None, help="write the results here (docs/results/multi_worker_step.json)")
    p.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--coordinator", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.workers < 1 or args.batch_size % args.workers:
        p.error("--workers must be >= 1 and divide --batch-size")
    if args.worker_id is not None:
        worker(args)
        return 0
    load_before = os.getloadavg()
    t0 = time.time()
    results, err = _run_workers(args)
    if results is None:
        print("workers failed:\n  " + "\n  ".join(err), file=sys.stderr)
        return 1
    rows = _summary(results)
    load_after = os.getloadavg()
    print(f"LeNet-300-100, JAX DataParallel over {args.workers} workers on 127.0.0.1, global batch "
          f"{args.batch_size}, {args.steps} steps x {args.rounds} interleaved rounds")
    for row in rows:
        print(f"{row['model']:10} {1e3 * row['step_s']:8.2f} ms/step  {row['ratio']:5.2f}x")
    print(f"goal: pruned and clustered <= {GOAL:.1f}x plain; load average before {load_before[0]:.1f}, "
          f"after {load_after[0]:.1f} on {os.cpu_count()} CPUs ({time.time() - t0:.0f} s)")
    if args.json:
        import platform

        from _common import cpu_model

        out = {"benchmark": "multi_worker_step",
               "command": "python benchmarks/bench_multi_worker.py " + shlex.join(argv or sys.argv[1:]),
               "config": {"workers": args.workers, "steps": args.steps, "rounds": args.rounds,
                          "batch_size": args.batch_size, "model": "LeNet-300-100", "backend": "jax",
                          "distribution": "DataParallel", "devices": results[0]["devices"]},
               "goal_ratio": GOAL, "rows": rows,
               "machine": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "nproc": os.cpu_count(),
                           "cpu": cpu_model(), "python": platform.python_version(),
                           "loadavg_before": list(load_before), "loadavg": list(load_after)}}
        _write_json(args.json, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
