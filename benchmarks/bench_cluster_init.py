"""Centroid initialisation for weight sharing on LeNet-300-100 (Deep Compression Sec. 3.1 / Fig. 4):
linear vs density vs random vs kmeans++ at 3-5 bits, test error after centroid fine-tuning, and a
plot of the weight distribution with the centroids of each initialisation.

    python benchmarks/bench_cluster_init.py PLOT.png [--model pruned.keras] [--bits 3 4 5] [--epochs 1]

``--model``: a pruned, stripped LeNet-300-100 (.keras), e.g. written by
``benchmarks/lenet_prune_cluster.py --out-pruned``. Without it a quick one is trained here
(baseline + AGP pruning to ~92 %, a few epochs: higher error than the full recipe).
Every layer is clustered at the given bits with each init, fine-tuned ``--epochs`` epochs (Adam,
1e-4), then evaluated on the MNIST test set (error before and after fine-tuning).

``--table1 MODEL --model pruned.keras``: instead, paper_table1.py's weight-sharing stage (its CONFIG
bits, ``cluster_epochs``, ``cluster_biases``; ``pipeline.cluster_finetune``, seed 0) on a pruned model
that stage starts from, per linear-init variant, scored on VALIDATION data only (the last ``--val``
MNIST training images, which no stage trains on; the test set is not loaded): validation error of
the packed ``.tflite``, packed bytes (whole file, weights only) and shared non-zero values per layer.
``--drop-bit`` adds, per variant, one run per layer with that layer at one bit fewer;
``--table1-bits fc1=2`` changes CONFIG's bits for every run.
Variants (how the non-zero weights of a pruned kernel start):

- ``split-count``: dc_keras's ``linear`` (``kmeans_1d(split_at_zero=True)``): evenly spaced on each side
  of zero, the centroids shared between the sides in proportion to their numbers of weights (tfmot).
- ``split-range``: the same, shared in proportion to each side's value range (``max - min``), so
  both sides get about the same spacing (this script's replacement of ``kmeans.split_counts``).
- ``nosplit``: evenly spaced between min and max, across the empty interval around zero (dc_keras's
  ``linear`` before the split; this script calls ``kmeans_1d`` with ``split_at_zero=False``).

    python benchmarks/bench_cluster_init.py --table1 lenet-300-100 \
        --model ~/.cache/dc_keras/paper_table1/lenet_300_100/pruned.keras \
        --baseline ~/.cache/dc_keras/paper_table1/lenet_300_100/baseline.tflite --json out.json
"""
import argparse
import contextlib
import shlex
import sys
import time

import numpy as np

from _common import CONFIG, log, machine_info, save_figure, write_json

VARIANTS = ("split-count", "split-range", "nosplit")


def quick_pruned(x, y, epochs):
    import keras

    import dc_keras
    from dc_keras.schedules import PolynomialDecay

    model = dc_keras.models.lenet_300_100()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    steps = epochs * int(np.ceil(len(x) / 128))
    layers = {"fc1": PolynomialDecay(0.0, 0.92, 0, steps // 2, frequency=100),
              "fc2": PolynomialDecay(0.0, 0.91, 0, steps // 2, frequency=100),
              "fc3": PolynomialDecay(0.0, 0.74, 0, steps // 2, frequency=100)}
    pruned = dc_keras.prune(model, layers=layers)
    pruned.compile(keras.optimizers.Adam(3e-4), "sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[dc_keras.PruningCallback()])
    return dc_keras.strip(pruned)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plot", nargs="?", help="output image (.png/.svg/.pdf); not with --table1")
    p.add_argument("--table1", choices=sorted(CONFIG), default=None,
                   help="paper_table1.py's sharing stage on --model, scored on the --val images")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="with --table1")
    p.add_argument("--drop-bit", action="store_true", help="with --table1: also each layer at one bit fewer")
    p.add_argument("--table1-bits", default=None, type=lambda t: {k: int(v) for k, v in (i.split("=") for i in t.split(","))},
                   help="with --table1: override CONFIG bits, e.g. fc1=2")
    p.add_argument("--val", type=int, default=10000, help="with --table1: last training images held out")
    p.add_argument("--baseline", default=None, help="with --table1: the baseline's float .tflite (for ratios)")
    p.add_argument("--json", default=None, help="with --table1: write the rows here")
    p.add_argument("--model", default=None, help="pruned, stripped LeNet-300-100 .keras")
    p.add_argument("--bits", type=int, nargs="+", default=[3, 4, 5])
    p.add_argument("--inits", nargs="+", default=["linear", "density", "random", "kmeans++"])
    p.add_argument("--epochs", type=int, default=1, help="centroid fine-tuning epochs")
    p.add_argument("--quick-epochs", type=int, default=4, help="epochs per stage when no --model is given")
    p.add_argument("--plot-layer", default="fc2")
    p.add_argument("--plot-bits", type=int, default=4)
    args = p.parse_args(argv)
    if args.table1:
        if not args.model:
            p.error("--table1 needs --model (the pruned, stripped model paper_table1.py saved)")
        return table1(args)
    if not args.plot:
        p.error("the plot path is required (or use --table1)")

    import keras

    import dc_keras
    from dc_keras.train.kmeans import init_centroids

    keras.utils.set_random_seed(0)
    t0 = time.time()
    (x_train, y_train), (x_test, y_test) = dc_keras.datasets.mnist.load_data()
    x_train, x_test = dc_keras.datasets.normalize(x_train), dc_keras.datasets.normalize(x_test)
    if args.model:
        base = keras.saving.load_model(args.model, compile=False)
        print(f"model: {args.model}")
    else:
        base = quick_pruned(x_train, y_train, args.quick_epochs)
        print(f"model: quick pruned LeNet-300-100 ({args.quick_epochs}+{args.quick_epochs} epochs)")

    def error(model):
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return 100.0 * (1.0 - model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])

    dense = [l for l in base.layers if isinstance(l, keras.layers.Dense)]
    density = sum(np.count_nonzero(l.kernel.numpy()) for l in dense) / sum(l.kernel.numpy().size for l in dense)
    print(f"input model: test error {error(base):.2f} %, density {100 * density:.2f} %")
    print(f"\n{'bits':>4} {'init':>9} {'err before ft':>14} {'err after ft':>13}")
    results = {}
    centroids = {}
    for bits in args.bits:
        for init in args.inits:
            keras.utils.set_random_seed(0)
            clustered = dc_keras.cluster(base, bits=bits, init=init)
            wrapper = clustered.get_layer(args.plot_layer)
            c_init = keras.ops.convert_to_numpy(wrapper._centroids[0]).copy()
            before = error(clustered)
            clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
            clustered.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=0)
            after = error(clustered)
            results[(bits, init)] = (before, after)
            centroids[(bits, init)] = (c_init, keras.ops.convert_to_numpy(wrapper._centroids[0]).copy())
            print(f"{bits:4d} {init:>9} {before:13.2f}% {after:12.2f}%", flush=True)

    print("\nerror after fine-tuning (%):")
    print(f"{'init':>9} " + " ".join(f"{b:>3d} bits" for b in args.bits))
    for init in args.inits:
        print(f"{init:>9} " + " ".join(f"{results[(b, init)][1]:8.2f}" for b in args.bits))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = base.get_layer(args.plot_layer).kernel.numpy().ravel()
    pruned = bool(np.any(w == 0))  # cluster() then splits a linear init at zero
    w = w[w != 0]
    plot_bits = args.plot_bits if args.plot_bits in args.bits else args.bits[0]
    fig, axes = plt.subplots(len(args.inits), 1, figsize=(7, 2.2 * len(args.inits)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, init in zip(axes, args.inits):
        ax.hist(w, bins=200, color="#9ab", density=True)
        c_km, c_ft = centroids[(plot_bits, init)]
        c_init = init_centroids(w, 2 ** plot_bits, init, seed=0, split_at_zero=pruned)
        ymax = ax.get_ylim()[1]
        ax.plot(c_init, np.full_like(c_init, 0.06 * ymax), "x", color="tab:red", label="initialisation")
        ax.plot(c_km, np.full_like(c_km, 0.14 * ymax), "^", mfc="none", color="tab:blue",
                label="after k-means (Lloyd)")
        ax.plot(c_ft, np.full_like(c_ft, 0.22 * ymax), "o", mfc="none", color="tab:green",
                label="after fine-tuning")
        ax.set_title(f"{init}: error {results[(plot_bits, init)][1]:.2f} % after fine-tuning", fontsize=9)
        ax.set_ylabel("density")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel(f"{args.plot_layer} non-zero weight value ({plot_bits} bits, {2 ** plot_bits} centroids)")
    fig.tight_layout()
    save_figure(fig, args.plot, dpi=120)
    plt.close(fig)
    print(f"\nwrote {args.plot}   ({(time.time() - t0) / 60:.1f} min)")
    return 0


def _split_range(values, k):
    """``split-range``: ``kmeans.split_counts`` with the centroids shared in proportion to each
    side's value range instead of its number of weights (same bounds)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    neg, pos = values[values < 0], values[values > 0]
    if neg.size == 0 or pos.size == 0 or k < 2:
        return (k, 0) if pos.size == 0 else (0, k)
    span_neg, span_pos = neg.max() - neg.min(), pos.max() - pos.min()
    share = span_neg / (span_neg + span_pos) if span_neg + span_pos > 0 else neg.size / values.size
    n_neg = int(np.clip(np.round(k * share), 1, k - 1))
    d_neg, d_pos = np.unique(neg).size, np.unique(pos).size
    n_neg = min(n_neg, d_neg)
    if k - n_neg > d_pos:
        n_neg = min(k - d_pos, d_neg)
    return n_neg, k - n_neg


@contextlib.contextmanager
def _variant(name):
    """dc_keras.cluster's linear init as ``name`` for the duration (see the module docstring)."""
    from dc_keras.train import clustering, kmeans

    saved = clustering.kmeans_1d, kmeans.split_counts
    if name == "nosplit":
        def no_split(*a, **kw):
            return saved[0](*a, **{**kw, "split_at_zero": False})

        clustering.kmeans_1d = no_split
    elif name == "split-range":
        kmeans.split_counts = _split_range
    try:
        yield
    finally:
        clustering.kmeans_1d, kmeans.split_counts = saved


def table1(args):
    """paper_table1.py's weight-sharing stage per variant (and bit drop), on the --val images only."""
    import keras

    import dc_keras
    from dc_keras import export, pipeline

    cfg = dict(CONFIG[args.table1])
    cfg["bits"] = {**cfg["bits"], **(args.table1_bits or {})}
    (x, y), _ = dc_keras.datasets.mnist.load_data()  # the test images are not used
    n = len(x) - args.val
    x_train, y_train = dc_keras.datasets.normalize(x[:n]), y[:n]
    x_val, y_val = dc_keras.datasets.normalize(x[n:]), y[n:]
    pruned = keras.saving.load_model(args.model)
    base = open(args.baseline, "rb").read() if args.baseline else None
    base_raw = export.inspect(base).raw_total if base else None
    runs = [(v, dict(cfg["bits"])) for v in args.variants]
    if args.drop_bit:
        runs += [(v, {**cfg["bits"], layer: b - 1}) for v in args.variants for layer, b in cfg["bits"].items()
                 if b > 1]
    rows = []
    for variant, bits in runs:
        t0 = time.time()
        keras.utils.set_random_seed(0)
        with _variant(variant):
            shared = pipeline.cluster_finetune(pruned, x_train, y_train, bits=bits, epochs=cfg["cluster_epochs"],
                                               seed=0, cluster_biases=cfg["cluster_biases"])
        packed = export.pack(export.to_tflite(shared, pack=False), context_model=cfg["context_model"])
        weights = export.inspect(packed).packed_total
        err = pipeline.evaluate_tflite(packed, x_val, y_val, progress=False)
        row = {"variant": variant, "bits": bits, "val_error": err, "val_wrong": int(round(err * len(x_val))),
               "packed_bytes": len(packed), "weights_bytes": weights,
               "ratio": len(base) / len(packed) if base else None,
               "weights_ratio": base_raw / weights if base else None,
               "shared_values": {r["layer"]: r["distinct"] for r in pipeline.layer_stats(shared)},
               "minutes": (time.time() - t0) / 60}
        rows.append(row)
        log(f"{variant:<12} bits {bits}: val {100 * err:.2f} % ({row['val_wrong']} wrong), {len(packed):,} B"
            + (f" ({row['ratio']:.1f}x / {row['weights_ratio']:.1f}x weights)" if base else "")
            + f", shared values {row['shared_values']}")
        if args.json:
            write_json(args.json, {"model": args.table1, "pruned": args.model, "val_images": args.val,
                                   "config": {k: cfg[k] for k in ("bits", "cluster_epochs", "cluster_biases")},
                                   "rows": rows, "machine": machine_info(), "command": shlex.join(sys.argv)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
