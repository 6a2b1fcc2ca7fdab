"""Centroid initialisation for weight sharing on LeNet-300-100 (Deep Compression Sec. 3.1 / Fig. 4):
linear vs density vs random vs kmeans++ at 3-5 bits, test error after centroid fine-tuning, and a
plot of the weight distribution with the centroids of each initialisation.

    python benchmarks/bench_cluster_init.py PLOT.png [--model pruned.keras] [--bits 3 4 5] [--epochs 1]

``--model``: a pruned, stripped LeNet-300-100 (.keras), e.g. written by
``benchmarks/lenet_prune_cluster.py --out-pruned``. Without it a quick one is trained here
(baseline + AGP pruning to ~92 %, a few epochs: higher error than the full recipe).
Every layer is clustered at the given bits with each init, fine-tuned ``--epochs`` epochs (Adam,
1e-4), then evaluated on the MNIST test set (error before and after fine-tuning).
"""
import argparse
import sys
import time

import numpy as np

from _common import save_figure


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
    p.add_argument("plot", help="output image (.png/.svg/.pdf)")
    p.add_argument("--model", default=None, help="pruned, stripped LeNet-300-100 .keras")
    p.add_argument("--bits", type=int, nargs="+", default=[3, 4, 5])
    p.add_argument("--inits", nargs="+", default=["linear", "density", "random", "kmeans++"])
    p.add_argument("--epochs", type=int, default=1, help="centroid fine-tuning epochs")
    p.add_argument("--quick-epochs", type=int, default=4, help="epochs per stage when no --model is given")
    p.add_argument("--plot-layer", default="fc2")
    p.add_argument("--plot-bits", type=int, default=4)
    args = p.parse_args(argv)

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
    w = w[w != 0]
    plot_bits = args.plot_bits if args.plot_bits in args.bits else args.bits[0]
    fig, axes = plt.subplots(len(args.inits), 1, figsize=(7, 2.2 * len(args.inits)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, init in zip(axes, args.inits):
        ax.hist(w, bins=200, color="#9ab", density=True)
        c_km, c_ft = centroids[(plot_bits, init)]
        c_init = init_centroids(w, 2 ** plot_bits, init, seed=0)
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


if __name__ == "__main__":
    sys.exit(main())
