"""Makes ``.tflite`` files the way a tfmot 0.8.1 user does; run by tests/test_tfmot_tflite.py.

Runs in its own process with ``TF_USE_LEGACY_KERAS=1`` (tfmot needs Keras 2, i.e. tf_keras):

    TF_USE_LEGACY_KERAS=1 python tests/_tfmot_child.py OUT_DIR

Writes into OUT_DIR:
  pruned_clustered.tflite  float: prune_low_magnitude + strip_pruning, then cluster_weights
                           (preserve_sparsity) + strip_clustering, TFLiteConverter;
  pcqat_int8.tflite        int8 weights: the same model through tfmot's sparsity- and
                           cluster-preserving quantization-aware training (PCQAT), converted with
                           ``Optimize.DEFAULT``;
  pruned_dynamic.tflite    pruned only, converted with dynamic-range quantization;
  pruned_float.tflite      pruned only, float (strip_pruning leaves -0.0 where a weight was negative);
  cqat_int8.tflite         the unpruned model clustered (16) and trained with cluster-preserving
                           QAT (CQAT), ``Optimize.DEFAULT``;
  qat_int8.tflite          the unpruned model through plain QAT (``quantize_model``): dense int8,
                           nothing for pack to gain;
  inputs.npy               a few input samples;
  versions.json            tf_keras and tfmot versions.
"""
import json
import os
import sys

import numpy as np


def main(out_dir):
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("run with TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)")
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.rand(256, 16, 16, 1).astype(np.float32)
    y = rng.randint(0, 10, size=256)

    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="fc2"),
    ])

    def fit(m, epochs=1, callbacks=()):
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=list(callbacks))

    fit(model)
    baseline_weights = model.get_weights()

    def baseline():
        copy = keras.models.clone_model(model)
        copy.set_weights(baseline_weights)
        return copy

    sp = tfmot.sparsity.keras
    pruned = sp.prune_low_magnitude(model, pruning_schedule=sp.ConstantSparsity(0.75, begin_step=0, frequency=1))
    fit(pruned, epochs=2, callbacks=[sp.UpdatePruningStep()])
    pruned = sp.strip_pruning(pruned)

    def convert(m, optimize):
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        if optimize:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        return conv.convert()

    def write(name, data):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)

    write("pruned_dynamic.tflite", convert(pruned, optimize=True))
    write("pruned_float.tflite", convert(pruned, optimize=False))

    cl = tfmot.clustering.keras
    clustered = cl.cluster_weights(pruned, number_of_clusters=16, preserve_sparsity=True,
                                   cluster_centroids_init=cl.CentroidInitialization.KMEANS_PLUS_PLUS)
    fit(clustered)
    clustered = cl.strip_clustering(clustered)
    write("pruned_clustered.tflite", convert(clustered, optimize=False))

    q = tfmot.quantization.keras
    annotated = q.quantize_annotate_model(clustered)
    pcqat = q.quantize_apply(
        annotated, tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True))
    fit(pcqat)
    write("pcqat_int8.tflite", convert(pcqat, optimize=True))

    # Last, so the files above stay as they were. From the baseline's weights (tfmot's wrappers
    # wrap the original layer objects, so pruning changed `model` itself): plain QAT, and
    # clustering + cluster-preserving QAT.
    qat = q.quantize_model(baseline())
    fit(qat)
    write("qat_int8.tflite", convert(qat, optimize=True))
    unpruned_clustered = cl.strip_clustering(cl.cluster_weights(
        baseline(), number_of_clusters=16, cluster_centroids_init=cl.CentroidInitialization.KMEANS_PLUS_PLUS))
    cqat = q.quantize_apply(q.quantize_annotate_model(unpruned_clustered),
                            tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme())
    fit(cqat)
    write("cqat_int8.tflite", convert(cqat, optimize=True))

    np.save(os.path.join(out_dir, "inputs.npy"), rng.rand(8, 16, 16, 1).astype(np.float32))
    with open(os.path.join(out_dir, "versions.json"), "w") as f:
        json.dump({"tf_keras": keras.__version__, "tfmot": tfmot.__version__}, f)


if __name__ == "__main__":
    main(sys.argv[1])
