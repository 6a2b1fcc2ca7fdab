"""Multi-worker prune + cluster fine-tuning on MNIST with Keras 3's JAX backend.

    python examples/multi_worker.py --workers 2

starts 2 worker processes on 127.0.0.1, each running this file with ``--worker-id``. Every worker
joins one JAX job (``jax.distributed.initialize``, gloo collectives on CPU), trains under
``keras.distribution.DataParallel`` over all devices of all workers, with the same seed everywhere
and a ``tf.data`` input that Keras shards per worker:

1. prune LeNet-300-100 from scratch (``dc_keras.prune``, PolynomialDecay to 80 %),
2. strip, cluster (``dc_keras.cluster``, 5 bits, zeros preserved) and fine-tune the centroids,
3. strip and report.

Both phases checkpoint with ``keras.callbacks.BackupAndRestore`` (one folder per worker), so a
job restarted after a crash resumes where the last epoch ended. The last line printed is one JSON
object::

    {"workers": 2, "sparsity": [s0, s1], "digest": [sha0, sha1], ...}

(sha256 of the stripped weights per worker: equal when the workers agree). The launcher exits with
1 if a worker failed, or if the masks, centroids or weights differ between workers, or a pruned
weight is not exactly 0. ``--kill-worker I --kill-after-epoch K`` SIGKILLs worker I once every
worker has written its backup of epoch K (of both phases counted together; worker I waits there
so the kill never lands mid-save) and restarts the whole job, which must then resume from the
backups (used by tests/test_multi_worker.py). A restarted job checks that all workers resume from
the same epoch and stops with an error naming the folders if they do not.

On real hosts run the worker command on each host yourself (docs/multi_worker.md).
"""
import argparse
import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ------------------------------------------------------------------------------------------------
# worker

def _init_jax(args):
    os.environ["KERAS_BACKEND"] = "jax"
    # Said first: a worker that never joins ends this process after --timeout with JAX's own
    # abort ("DEADLINE_EXCEEDED ... RegisterTask", "another task died"), which names neither.
    print(f"worker {args.worker_id} of {args.workers}: joining the job at {args.coordinator}, waiting up to "
          f"{args.timeout} s (--timeout) for all {args.workers} workers; if one does not join, JAX ends this "
          f"process with DEADLINE_EXCEEDED: start every worker, --worker-id 0 to {args.workers - 1}, with the same "
          "--workers and --coordinator", file=sys.stderr, flush=True)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.workers,
                               process_id=args.worker_id, initialization_timeout=args.timeout)
    return jax


def _dataset(args, x, y):
    import tensorflow as tf

    # Same order in every worker and every epoch (pre-shuffled with the shared seed), so a resumed
    # job sees exactly the batches the interrupted one would have seen.
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size, drop_remainder=True)
    return ds.prefetch(2)


def _lenet():
    import keras

    inputs = keras.Input((784,))
    h = keras.layers.Dense(300, activation="relu", name="fc1")(inputs)
    h = keras.layers.Dense(100, activation="relu", name="fc2")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc3")(h))


FIRST_EPOCH = {}  # phase -> first epoch this process trained (after a restore: > 0)


def _check_same_resume_epoch(backup, phase):
    """All workers must resume ``phase`` from the same epoch (each restores its own backup):
    compared before ``fit`` (its first collective), so a mismatch is an error, not a hang or a
    different model. The epoch is read from the ``training_metadata.json`` that
    keras.callbacks.BackupAndRestore writes next to its weights (0: no backup; Keras 3's layout,
    the kill test fails if that changes)."""
    import numpy as np
    from jax.experimental import multihost_utils

    path = os.path.join(backup, "training_metadata.json")
    epoch = 0
    if os.path.exists(path):
        with open(path) as f:
            epoch = int(json.load(f)["epoch"])
    values = [int(v) for v in np.asarray(multihost_utils.process_allgather(np.int32(epoch))).ravel()]
    if len(set(values)) != 1:
        raise RuntimeError(f"the workers' backups disagree on the epoch to resume {phase} from: {values} "
                           f"(worker 0, 1, ...), e.g. a worker died while saving. Delete worker<i>/{phase} "
                           "in every worker's --work-dir to restart that phase.")


SHARED_INTS = ("workers", "seed", "samples", "batch_size", "prune_epochs", "cluster_epochs")


def _check_same_flags(args):
    """Every worker must be started with the same --workers, --seed, --samples, --batch-size,
    --prune-epochs and --cluster-epochs (on real hosts each host types its own command): compared
    across workers right after joining, so a mismatch is one error naming the flag on every worker,
    not JAX's "passed to device_put is not the same on each process" with the weights dumped (another
    --seed), nor gloo's abort "Is there a distributed collective mismatch" minutes later (another
    --samples or --batch-size: a different number of steps)."""
    import numpy as np
    from jax.experimental import multihost_utils

    # as int32 pairs: JAX has no int64 unless jax_enable_x64
    mine = np.array([getattr(args, name) for name in SHARED_INTS], dtype="<i8").view("<i4")
    every = np.asarray(multihost_utils.process_allgather(mine)).astype("<i4").reshape(-1, 2 * len(SHARED_INTS))
    every = every.view("<i8")
    differ = [f"--{name.replace('_', '-')} {[int(v) for v in every[:, i]]}"
              for i, name in enumerate(SHARED_INTS) if len(set(every[:, i].tolist())) != 1]
    if differ:
        raise SystemExit(f"worker {args.worker_id}: the workers were started with different settings: "
                         f"{', '.join(differ)} (worker 0, 1, ...). Start every worker with the same "
                         "--workers, --seed, --samples, --batch-size, --prune-epochs and --cluster-epochs "
                         "(only --worker-id, --work-dir and --timeout may differ).")


class _Progress:
    """Prints ``EPOCH_DONE n`` (n counted over both phases) after each epoch's backup; with
    ``pause_after`` = n, waits there (to be killed)."""

    def __new__(cls, offset, phase, pause_after=None):
        import keras

        class Progress(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                FIRST_EPOCH.setdefault(phase, epoch)

            def on_epoch_end(self, epoch, logs=None):
                print(f"EPOCH_DONE {offset + epoch + 1}", flush=True)
                while pause_after == offset + epoch + 1:  # the launcher SIGKILLs this process here
                    time.sleep(1.0)

        return Progress()


def _fit(model, args, ds, epochs, phase, callbacks, offset, lr):
    import keras

    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    backup = os.path.join(args.work_dir, f"worker{args.worker_id}", phase)
    restore = keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)
    _check_same_resume_epoch(backup, phase)
    progress = _Progress(offset, phase, args.pause_after_epoch)
    model.fit(ds, epochs=epochs, verbose=0, callbacks=callbacks + [restore, progress])
    FIRST_EPOCH.setdefault(phase, epochs)  # no epoch ran: the backup said the phase was complete


def _digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()


def _checks(pruned, clustered):
    """Mask/centroid digests and the exact-zero check from the wrapped models."""
    import keras
    import numpy as np

    import dc_keras

    masks, zeros_ok = [], True
    for layer in dc_keras.train._base.find_wrappers(pruned, dc_keras.train.PruneWrapper):
        for (_, var, _), mask in zip(layer._targets, layer._masks):
            m, w = keras.ops.convert_to_numpy(mask), keras.ops.convert_to_numpy(var)
            masks.append(m)
            zeros_ok &= bool(np.all(w[m == 0] == 0))
    centroids = [keras.ops.convert_to_numpy(c) for layer in
                 dc_keras.train._base.find_wrappers(clustered, dc_keras.train.ClusterWrapper) for c in layer._centroids]
    return _digest(masks), _digest(centroids), zeros_ok


def worker(args):
    jax = _init_jax(args)
    _check_same_flags(args)
    import keras
    import numpy as np

    import dc_keras
    from dc_keras.datasets import mnist

    keras.utils.set_random_seed(args.seed)
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    (x, y), _ = mnist.load_data()
    order = np.random.default_rng(args.seed).permutation(len(x))[: args.samples]
    x = (x[order].reshape(-1, 784) / 255.0).astype("float32")
    y = y[order].astype("int32")
    ds = _dataset(args, x, y)
    steps = (len(x) // args.batch_size) * args.prune_epochs
    schedule = dc_keras.schedules.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=int(steps * 0.6), frequency=5)
    pruned = dc_keras.prune(_lenet(), schedule)
    _fit(pruned, args, ds, args.prune_epochs, "prune", [dc_keras.PruningCallback()], 0, 1e-3)
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=5)
    _fit(clustered, args, ds, args.cluster_epochs, "cluster", [], args.prune_epochs, 1e-4)
    final = dc_keras.strip(clustered)
    weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in final.weights]
    kernels = [w for w in weights if w.ndim == 2]
    mask_digest, centroid_digest, zeros_ok = _checks(pruned, clustered)
    result = {"worker": args.worker_id, "devices": len(jax.devices()),
              "sparsity": float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels)),
              "digest": _digest(weights), "masks": mask_digest, "centroids": centroid_digest,
              "zeros_exact": zeros_ok, "distinct": max(int(np.unique(k[k != 0]).size) for k in kernels),
              "first_epoch": dict(FIRST_EPOCH)}
    print("RESULT " + json.dumps(result), flush=True)
    jax.distributed.shutdown()


def _coordinator_problem(address, worker_id):
    """Why ``--coordinator`` cannot work (None: it may), checked before JAX, which crashes on these
    (a taken port or a port that is no number: a segmentation fault; no port: IndexError)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return (f"--coordinator {address!r} is not HOST:PORT with a port 1 to 65535 (e.g. 10.0.0.1:12345): "
                "give worker 0's host and a free port, the same on every host")
    if worker_id != 0:
        return None
    # worker 0 runs the coordinator: JAX listens on [::]:PORT (all addresses)
    for family, anywhere in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        with s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((anywhere, int(port)))
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue  # no IPv6 here: try IPv4
                what = "is in use (another job or program listens on it)" if exc.errno == errno.EADDRINUSE \
                    else f"cannot be listened on ({exc.strerror})"
                return (f"worker 0 runs the coordinator, but port {port} of --coordinator {address} {what}: "
                        "choose another port, the same --coordinator on every host")
            return None
    return None


# ------------------------------------------------------------------------------------------------
# launcher (loopback only)

def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args, worker_id, port, extra=()):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker-id", str(worker_id),
           "--coordinator", f"127.0.0.1:{port}"] + _shared_flags(args) + list(extra)
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = open(os.path.join(args.work_dir, f"worker{worker_id}.log"), "a")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env), log


def _shared_flags(args):
    return ["--workers", str(args.workers), "--work-dir", args.work_dir, "--seed", str(args.seed),
            "--samples", str(args.samples), "--batch-size", str(args.batch_size),
            "--prune-epochs", str(args.prune_epochs), "--cluster-epochs", str(args.cluster_epochs),
            "--timeout", str(args.timeout)]


def _read_lines(proc, sink):
    """Non-blocking-ish: collect complete stdout lines available now."""
    import select

    while proc.stdout and select.select([proc.stdout], [], [], 0)[0]:
        line = proc.stdout.readline()
        if not line:
            break
        sink.append(line.strip())


def _run_job(args, kill):
    """Run one job; returns (results or None, killed?). ``kill`` = (worker, after_epoch) or None."""
    port = _free_port()
    # The worker to kill waits after its backup of epoch kill[1]; it is killed once every worker
    # has printed that epoch (= written its backup), so no backup file is cut mid-write.
    procs = [_spawn(args, i, port, ["--pause-after-epoch", str(kill[1])] if kill and i == kill[0] else [])
             for i in range(args.workers)]
    lines = [[] for _ in procs]
    deadline = time.monotonic() + args.timeout
    killed = False
    try:
        while time.monotonic() < deadline:
            for (p, _), sink in zip(procs, lines):
                _read_lines(p, sink)
            if kill and not killed and all(f"EPOCH_DONE {kill[1]}" in sink for sink in lines):
                procs[kill[0]][0].send_signal(signal.SIGKILL)
                killed = True
            codes = [p.poll() for p, _ in procs]
            if killed or any(c not in (None, 0) for c in codes):
                # the others stop at their next collective; let them exit by themselves
                _wait_all(procs, 60.0)
                return None, killed
            if all(c == 0 for c in codes):
                for (p, _), sink in zip(procs, lines):
                    sink.extend(l.strip() for l in p.stdout.read().splitlines())
                return [json.loads(next(l for l in s if l.startswith("RESULT "))[7:]) for s in lines], killed
            time.sleep(0.2)
        return None, killed
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
            log.close()


def _wait_all(procs, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(p.poll() is None for p, _ in procs):
        time.sleep(0.2)


def launch(args):
    if args.work_dir is None:
        args.work_dir = tempfile.mkdtemp(prefix="dc_keras-mw-")
    os.makedirs(args.work_dir, exist_ok=True)
    kill = (args.kill_worker, args.kill_after_epoch) if args.kill_worker is not None else None
    results, killed = _run_job(args, kill)
    restarts = 0
    if killed:
        print(f"worker {args.kill_worker} killed after epoch {args.kill_after_epoch}; restarting the job", flush=True)
        results, _ = _run_job(args, None)
        restarts = 1
    if results is None:
        print(f"workers failed; logs in {args.work_dir}", file=sys.stderr)
        print(json.dumps({"workers": args.workers, "error": "worker failed", "work_dir": args.work_dir}))
        return 1
    agree = all(len({r[k] for r in results}) == 1 for k in ("digest", "masks", "centroids"))
    ok = agree and all(r["zeros_exact"] for r in results)
    print(json.dumps({"workers": args.workers, "sparsity": [r["sparsity"] for r in results],
                      "digest": [r["digest"] for r in results], "masks": [r["masks"] for r in results],
                      "centroids": [r["centroids"] for r in results],
                      "zeros_exact": [r["zeros_exact"] for r in results],
                      "distinct": [r["distinct"] for r in results],
                      "first_epoch": [r["first_epoch"] for r in results],
                      "devices": results[0]["devices"], "restarts": restarts, "agree": ok}))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work-dir", default=None, help="backups and logs (default: a new temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=6000, help="MNIST training images used")
    ap.add_argument("--batch-size", type=int, default=128, help="global batch (all workers)")
    ap.add_argument("--prune-epochs", type=int, default=3)
    ap.add_argument("--cluster-epochs", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=600, help="seconds for a job / for joining it")
    ap.add_argument("--kill-worker", type=int, default=None)
    ap.add_argument("--kill-after-epoch", type=int, default=1)
    ap.add_argument("--pause-after-epoch", type=int, default=None,
                    help="worker only, for --kill-worker: wait after this epoch's backup")
    ap.add_argument("--worker-id", type=int, default=None,
                    help="run only this worker (0..N-1; with --coordinator and --work-dir: one per host, "
                         "docs/multi_worker.md); without it, N workers are started on 127.0.0.1")
    ap.add_argument("--coordinator", default=None, help="host:port of worker 0 (real hosts; see docs)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    if args.batch_size % args.workers:
        ap.error(f"--batch-size {args.batch_size} must be a multiple of --workers {args.workers}")
    if args.samples < args.batch_size:  # the last partial batch is dropped: no step at all
        ap.error(f"--samples {args.samples} is less than one global batch (--batch-size {args.batch_size}): "
                 "the workers drop a last partial batch (docs/multi_worker.md), so no step would run; "
                 "give more samples or a smaller batch")
    if args.worker_id is None and args.coordinator is not None:  # host 0 without --worker-id: a local job
        ap.error("--coordinator is for one worker per host: give each host's --worker-id (0 on the "
                 "coordinator's host) and --work-dir (docs/multi_worker.md); without --worker-id this "
                 f"starts all {args.workers} workers here, on 127.0.0.1 with a coordinator of their own")
    if args.work_dir is not None:  # before any worker starts (else: a traceback, or a worker dying in fit)
        try:
            os.makedirs(args.work_dir, exist_ok=True)
        except OSError as exc:
            why = "it is a file" if exc.errno == errno.EEXIST else exc.strerror
            ap.error(f"--work-dir {args.work_dir}: cannot make it a directory ({why}): give the path "
                     "of a directory you may write (it is created if missing)")
    if args.worker_id is not None:
        if not 0 <= args.worker_id < args.workers:
            ap.error(f"--worker-id {args.worker_id} is not a worker of --workers {args.workers}: "
                     f"give 0 .. {args.workers - 1}, a different one per host")
        if args.coordinator is None or args.work_dir is None:
            ap.error("--worker-id needs --coordinator and --work-dir")
        problem = _coordinator_problem(args.coordinator, args.worker_id)
        if problem:
            ap.error(problem)
        worker(args)
        return 0
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
