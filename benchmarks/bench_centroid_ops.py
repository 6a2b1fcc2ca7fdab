"""Per-op cost of the clustered TF training step's centroid gather and per-centroid gradient sums:
the native ops (``make tf-ops``, dc_keras/train/_tf_ops.py) vs the fallback (XLA-compiled tf.gather
and unsorted_segment_sum, dc_keras/train/clustering.py), each op timed alone on LeNet-300-100's fc1
(784 x 300 entries, 32 centroids + the zero slot), without and with 90 % of the entries in the
zero slot (as after pruning). Issue 16 (fit step wrapped vs plain <= 1.1x).

    python benchmarks/bench_centroid_ops.py [--calls 30] [--repeat 50] [--intra-threads N] [--json out.json]

Each op runs ``--repeat`` times one after the other in a tf.function's while loop, called ``--calls``
times after a warm-up; the figure per op is the median per call of wall time and the mean of process
CPU time (``time.process_time``: all threads), minus the same for the empty loop, over ``--repeat``.
The fallback's figures include each XLA call's launch, which the training step pays too. "gather native split" / "sums
native split": the gather's chunks / the sums' parts shared with one thread of TF's intra-op pool (``split=True``; the TF
training step uses one thread; the JAX one shares both with a thread of XLA's pool).
Prints one line per op and route, and the load average (a shared machine: compare CPU times).
``--json``: the rows with the machine, the command and the settings (benchmarks/results_doc.py
``--centroid-ops`` makes its section of docs/results.md from it).
"""
import argparse
import os
import shlex
import statistics
import sys
import time


def _time(fn, args, calls):
    fn(*args)  # trace / compile
    wall, cpu = [], []
    for _ in range(calls):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(*args)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.mean(cpu)


def _looped(tf, op, repeat):
    """A tf.function running ``op(x, a)`` ``repeat`` times one after the other (a while loop whose
    carry depends on each result), so that one call's overhead is shared by ``repeat`` ops."""
    def run(x, a):
        def body(i, acc):
            return i + 1, acc + tf.reshape(op(x, a), (-1,))[0]
        return tf.while_loop(lambda i, _acc: i < repeat, body, (tf.constant(0), tf.constant(0.0)),
                             parallel_iterations=1)[1]
    return tf.function(run)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=50, help="ops per call (a while loop)")
    parser.add_argument("--intra-threads", type=int, default=0, help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np
    import tensorflow as tf

    if args.intra_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_threads)
    from dc_keras.train import _tf_ops
    from dc_keras.train.clustering import _gather_tf

    if not _tf_ops.available():
        raise SystemExit(f"the native ops are unavailable: {_tf_ops._state.get('why')}")
    gather_op, sums_op = _tf_ops._state["ops"]
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    n = 32
    centroids = tf.constant(rng.normal(size=n).astype("float32"))
    table = tf.concat([centroids, tf.zeros((1,), tf.float32)], 0)
    upstream = tf.constant(rng.normal(size=(784, 300)).astype("float32"))
    empty = _looped(tf, lambda x, _a: x, args.repeat)
    rows = []
    for pruned in (0.0, 0.9):
        a = rng.integers(0, n, size=(784, 300)).astype("int32")
        a[rng.random(a.shape) < pruned] = n
        a = tf.constant(a)
        base = _time(empty, (upstream, a), args.calls)

        def fallback_grad(u, a):
            with tf.GradientTape() as tape:
                tape.watch(table)
                w = _gather_tf(table, a)
            return tape.gradient(w, table, output_gradients=u)

        cases = {
            "gather native": (lambda c, a: gather_op(c, a), centroids),
            "gather native split": (lambda c, a: gather_op(c, a, split=True), centroids),
            "gather fallback (XLA)": (lambda t, a: _gather_tf(t, a), table),
            "sums native": (lambda u, a: sums_op(u, a, n=n), upstream),
            "sums native split": (lambda u, a: sums_op(u, a, n=n, split=True), upstream),
            "sums fallback (XLA)": (fallback_grad, upstream),
        }
        for name, (op, x) in cases.items():
            wall, cpu = _time(_looped(tf, op, args.repeat), (x, a), args.calls)
            row = {"op": name, "pruned": pruned, "wall_us": 1e6 * (wall - base[0]) / args.repeat,
                   "cpu_us": 1e6 * (cpu - base[1]) / args.repeat}
            rows.append(row)
            print(f"{name:24} pruned {pruned:.0%}: wall {row['wall_us']:7.1f} us  cpu {row['cpu_us']:7.1f} us")
    load_after = os.getloadavg()
    print(f"(per op, in a loop of {args.repeat}, minus the empty loop: wall {1e6 * base[0]:.1f} us, cpu "
          f"{1e6 * base[1]:.1f} us per call; "
          f"intra-op threads {args.intra_threads or 'default'}; load {load_before[0]:.1f} -> {load_after[0]:.1f})")
    if args.json:
        import _common  # benchmarks/ is on sys.path when this runs as a script

        _common.write_json(args.json, record(args, argv, rows, load_before, load_after, _common.machine_info()))
        print(f"wrote {args.json}")


def record(args, argv, rows, load_before, load_after, machine):
    """The ``--json`` content: the rows, the settings, the command and the machine."""
    return {"benchmark": "centroid_ops",
            "command": shlex.join(["python", "benchmarks/bench_centroid_ops.py", *(sys.argv[1:] if argv is None else argv)]),
            "rows": rows, "calls": args.calls, "repeat": args.repeat, "intra_threads": args.intra_threads,
            "loadavg_before": list(load_before), "loadavg_after": list(load_after), "machine": machine}


if __name__ == "__main__":
    main()
