"""Model zoo: the five-call Deep Compression recipe on the models people ship, measured end to end.

    prune -> fit -> strip -> cluster -> fit -> strip -> export.to_tflite

Models (one row each in ``ZOO``; per-model settings live only there):

* ``mobilenetv2_035``: ``keras.applications.MobileNetV2(alpha=0.35, weights=None)`` on
  Fashion-MNIST padded 28 -> 32 px and repeated to 3 channels (32x32x3: MobileNetV2's smallest
  input, which keeps CPU time sane).
* ``resnet``: a ResNet-style CNN whose residual joins are written with ``+`` (Conv + BN blocks), on
  Fashion-MNIST 28x28x1.
* ``ds_cnn``: a keyword-spotting style DS-CNN (Conv + BN, then DepthwiseConv + BN + 1x1 Conv + BN
  blocks), on Fashion-MNIST 28x28x1.
* ``lstm``, ``transformer`` (MultiHeadAttention + Dense encoder blocks), ``conv1d``: on a generated
  sequence task (``make_sequences``): 10 classes, each a fixed random motif (6 steps x 8 features,
  rule seed 1234) added at a random position of a 32-step Gaussian-noise sequence.

Per-layer choices follow fixed rules (``sparsity_plan``), never the test data: layers with fewer
than ``min_params`` weights and the first layer that sees the input stay dense (they are clustered
only); every other covered layer gets the model's sparsity (``sparsity_big`` for layers with at least
``big_params`` weights); ``bits`` for every clustered layer, or ``bits_pruned`` (when set) for the pruned
ones, and ``bits_by_type`` (when set) per layer class; ``prune_ramp`` (default 0.6) is the share of the
pruning epochs over which sparsity rises, ``cluster_lr`` (default 2e-4) the centroid fine-tune rate;
``cluster_biases`` (when set) also shares the biases, BatchNorm-folded ones included. Training uses 5,000 (image) / 2,000
(sequence) training samples as a validation split, or, with ``val_samples``, that many sequences
generated from a third seed / the last that many of Fashion-MNIST's 60,000 training images (``load``;
training and test unchanged); each row records the split (``val_source``) and the standard error
of its validation-error increase (``val_increase_se_pp``, paired over the same samples); validation
drives the documented choices between configurations, never training itself; errors are
measured on the full held-out test split through the ``.tflite`` interpreter (packed file). Every
model's packed outputs are compared bit for bit with the unpacked ``.tflite`` of the same final model.

    nice .venv/bin/python benchmarks/model_zoo.py                       # all models, JSON + log
    .venv/bin/python benchmarks/model_zoo.py --models=ds_cnn,lstm --epoch_scale=0.25
    .venv/bin/python benchmarks/results_doc.py ... --zoo docs/results/model_zoo.json
"""
import functools
import json
import os
import shlex
import sys
import time

import numpy as np
from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "zoo models to run (default: all): " + ", ".join(
    ["mobilenetv2_035", "resnet", "ds_cnn", "lstm", "transformer", "transformer_128", "conv1d"]))
flags.DEFINE_string("json", os.path.join(HERE, "..", "docs", "results", "model_zoo.json"), "output JSON")
flags.DEFINE_float("epoch_scale", 1.0, "multiplies every epoch count of ZOO (rounded, at least 1)")
flags.DEFINE_integer("train_subset", 0, "training samples per model (0: ZOO's train_samples); for quick runs")
flags.DEFINE_bool("update", False, "keep the other models' rows of an existing --json (each row records "
                  "its own date, load and commit); replace only the rows of the models run now")
flags.DEFINE_integer("seed", 0, "training seed")
flags.DEFINE_string("config", None, "JSON object overriding ZOO settings of every model run now (search runs; "
                    "recorded in the row's config and command), e.g. '{\"sparsity_big\": 0.93, \"bits_pruned\": 4}'")
flags.DEFINE_string("work_dir", os.path.expanduser("~/.cache/dc_keras/zoo"), "where .tflite files go")

SEQ_T, SEQ_F, SEQ_CLASSES, MOTIF = 32, 8, 10, 6
SEQ_TRAIN_SEED, SEQ_TEST_SEED, SEQ_VAL_SEED = 1, 2, 3  # make_sequences seeds: independent streams
MOTIF_AMPLITUDE = 1.0  # 0.6 left a 128-unit LSTM at 33 % error after 8 epochs (too hard to measure 1 pp)

# Goals of issue 14 (whole-file ratio vs the float .tflite, error increase in percentage points).
GOALS = {"mobilenetv2_035": (10.0, 1.0), "resnet": (15.0, 1.0), "ds_cnn": (15.0, 1.0),
         "lstm": (8.0, 1.0), "transformer": (8.0, 1.0), "transformer_128": (8.0, 1.0), "conv1d": None}

# One row per model: builder, data, epochs (baseline, prune, cluster), sparsity rule, bits.
ZOO = {
    "mobilenetv2_035": dict(data="fashion32x3", train_samples=20000, epochs=(5, 4, 1), sparsity=0.8,
                            sparsity_big=0.9, big_params=20000, min_params=2000, bits=5, lr=2e-3, prune_lr=1e-3,
                            note="second run: 75 %/85 % gave 9.6x (validation error 18.4 % -> 16.3 %), "
                                 "so 80 %/90 %"),
    "resnet": dict(data="fashion", train_samples=20000, epochs=(4, 4, 1), sparsity=0.85, sparsity_big=0.9,
                   big_params=20000, min_params=2000, bits=5, lr=2e-3, prune_lr=1e-3),
    "ds_cnn": dict(data="fashion", train_samples=20000, val_samples=20000, epochs=(5, 18, 12), sparsity=0.91,
                   sparsity_big=0.94, big_params=10000, min_params=1000, bits=5, cluster_biases=4, lr=2e-3,
                   prune_lr=1e-3, prune_ramp=0.5, cluster_lr=5e-4, sparsity_by_type={"DepthwiseConv2D": 0.0, "Dense": 0.7},
                   bits_by_type={"DepthwiseConv2D": 4},
                   note="the row of docs/results/model_zoo_ds_cnn_s57_c4_seed0.json (session-57 run c4): pointwise 91 %/94 %, "
                        "fc 70 %, depthwise dense and shared at 4 bits, 5 bits otherwise, 4-bit biases, 5/18/12 epochs "
                        "(sparsity ramp over half the pruning epochs), sharing lr 5e-4; validation on the last 20,000 of "
                        "the 60,000 training images (training: the same first 20,000 as every earlier row). Why: the "
                        "previous settings (session-5 run e6: depthwise 5 bits, 5/14/8 epochs) met 15x at seed 0 only on "
                        "the code of 2026-12-07 (17,584 / 17,856 / 17,744 B at seeds 0 / 1 / 2). Session-57 search (rule "
                        "committed before it, docs/zoo_search_rules.md: ratio >= 15x names kept and validation rise <= "
                        "0.6 pp at each of seeds 0, 1, 2, then the smallest median rise; the test split only reports), "
                        "seed 1 first: c1 pointwise 91.5/94.5 % 15.2x, val +0.94 pp (out); c2 92/95 % 15.4x, +0.95 (out); "
                        "c3 depthwise 4 bits 15.4x, +0.80 (out); c4 = c3 with 5/18/12 epochs 15.5x / 15.6x / 15.5x, val "
                        "-0.53 / +0.09 / +0.26 pp at seeds 0 / 1 / 2: chosen (test -0.47 / -0.25 / -0.12 pp). Earlier: "
                        "session 5 chose e6 (15.1x, val -0.32 pp) on 20,000 validation images over e1 (92/95 %, 5/12/8, "
                        "+0.70), e2 (d6's 4-bit settings, 5/12/8, +1.07), e4 (5-bit biases, +0.66), e5 (40,000 training "
                        "images, +1.80); sessions 3 and 4 (5,000 validation images) kept 90/93 % (12.6x) then d6 (14.7x, "
                        "test +1.22 pp)"),
    "lstm": dict(data="sequences", train_samples=20000, epochs=(12, 24, 5), sparsity=0.65, sparsity_big=0.65,
                 big_params=20000, min_params=2000, bits=5, lr=3e-3, prune_lr=1e-3, val_samples=10000,
                 note="chosen by the fourth search (s4, docs/results/model_zoo_lstm_s4_<k>.json; 10,000 validation "
                      "sequences of seed 3 instead of 2,000; rule fixed and committed before its runs: of the runs "
                      "whose whole-file ratio (names kept) is >= 8.5x, the smallest validation-error increase "
                      "(Keras, final minus baseline on the 10,000 validation sequences); increases within 0.1 pp of "
                      "the smallest are tied and the tie goes to the larger ratio; if no run reaches 8.5x, the "
                      "largest ratio >= 8x; the test split only reports). Validation increase per run: s4_1 (70 %, "
                      "6 bits, min_params 2000, 12/24/5 epochs) 8.8x +0.71 pp; s4_2 (65 %, 5 bits, min_params 2000, "
                      "12/24/5) 8.9x +0.28 pp, chosen (this row); s4_3 (70 %, 5 bits, min_params 2000, 12/24/5) 9.6x "
                      "+0.72 pp; s4_4 (the previous settings: 70 %, 6 bits, min_params 1000, 8/10/3) 9.0x +0.81 pp. "
                      "min_params 2000 keeps the 1,290-weight classifier fc dense (clustered only). s4_1 and s4_2 "
                      "repeat the earlier search runs r7 and r6 (whose test figures were known before this search)"),
    # Transformers export with a static batch of 1 (what on-device apps run): with a dynamic batch the
    # converter keeps 53 shape-computing ops (SHAPE/GATHER/REDUCE_PROD/PACK/CONCATENATION/RESHAPE) and
    # their tensors, 8.5 KB of the 68 K-parameter model's flatbuffer. Attention projections are pruned
    # less than the feed-forward layers (sparsity_by_type).
    "transformer": dict(data="sequences", train_samples=20000, val_samples=10000, epochs=(8, 20, 5), sparsity=0.94,
                        sparsity_big=0.94, big_params=10000, min_params=1000, bits=4, cluster_biases=4, lr=1e-3,
                        prune_lr=1e-3, sparsity_by_type={"MultiHeadAttention": 0.9, "Embedding": 0.0}, batch_size=1,
                        note="the row of docs/results/model_zoo_transformer_s51_t4.json (session-51 search run t4): "
                             "run t2's settings (attention 90 % / FFN 94 %, 4 bits everywhere, 4-bit biases) with "
                             "8/20/5 epochs and 10,000 validation sequences of the validation seed. On the code of "
                             "2026-12-07, t2's settings (8/14/3) gave 9.7x at +1.14 pp test (seed 0; +1.48 / -0.10 pp "
                             "at seeds 1 / 2), past the goal's +1 pp, so a search, rule committed before it "
                             "(docs/zoo_search_rules.md, session 51: ratio >= 8.5x, then the smallest validation "
                             "increase on the 10,000 sequences; the test split only reports): t0 = t2's settings "
                             "9.7x, val +0.89 pp; t1 FFN 92 % 9.5x, +0.71; t2 attention 85 % 9.3x, +0.08; t3 5 bits "
                             "9.1x, +0.84; t4 8/20/5 epochs 9.7x, -0.19: chosen. Earlier (code of 2026-11-30): run 1 "
                             "(6/4/1 epochs, 80 %/85 %, an untrained random position constant) 5.3x at +6.48 pp; run "
                             "2 (trained position embedding, attention 75 %, FFN 85 %, 5 bits, batch 1, 8/8/2) 6.8x; "
                             "session-4 search (docs/zoo_search_rules.md): t1 attention 85 % / FFN 92 %, 4 bits "
                             "pruned / 5, 8/12/3 7.9x; t2 8.4x at +0.16 pp test, chosen then"),
    "transformer_128": dict(data="sequences", train_samples=20000, epochs=(6, 7, 2), sparsity=0.85,
                            sparsity_big=0.85, big_params=10000, min_params=1000, bits=5, lr=1e-3, prune_lr=1e-3,
                            sparsity_by_type={"MultiHeadAttention": 0.75, "Embedding": 0.0}, batch_size=1,
                            note="the transformer at d_model 128 (2 blocks, 4 heads, FFN 256): at 68 K "
                                 "parameters the flatbuffer structure is a third of the packed file"),
    "conv1d": dict(data="sequences", train_samples=20000, epochs=(6, 4, 1), sparsity=0.8, sparsity_big=0.85,
                   big_params=10000, min_params=1000, bits=5, lr=3e-3, prune_lr=1e-3),
}


# ----------------------------------------------------------------------------------------- models
def mobilenetv2_035(input_shape=(32, 32, 3), classes=10, tiny=False):
    """``keras.applications.MobileNetV2(alpha=0.35, weights=None)``; ``tiny``: two inverted-residual
    blocks of the same design (1x1 expand + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 project + BN,
    residual Add), for tests: the 155-layer application takes minutes to wrap on a loaded CPU."""
    import keras
    from keras import layers

    if not tiny:
        model = keras.applications.MobileNetV2(input_shape=input_shape, alpha=0.35, weights=None, classes=classes)
        for layer in model.layers:  # the application's BN momentum 0.999 needs ~10k steps before its
            if isinstance(layer, layers.BatchNormalization):  # moving statistics fit; we train ~800
                layer.momentum = 0.9
        return model
    inp = keras.Input(input_shape)
    h = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="Conv1")(inp)
    h = layers.ReLU(6.0)(layers.BatchNormalization(name="bn_Conv1")(h))
    for b in range(2):
        x = layers.Conv2D(48, 1, use_bias=False, name=f"block_{b}_expand")(h)
        x = layers.ReLU(6.0)(layers.BatchNormalization(name=f"block_{b}_expand_BN")(x))
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"block_{b}_depthwise")(x)
        x = layers.ReLU(6.0)(layers.BatchNormalization(name=f"block_{b}_depthwise_BN")(x))
        x = layers.Conv2D(8, 1, use_bias=False, name=f"block_{b}_project")(x)
        h = layers.Add()([h, layers.BatchNormalization(name=f"block_{b}_project_BN")(x)])
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="predictions")(h))


def resnet(input_shape=(28, 28, 1), classes=10, tiny=False):
    import keras
    from keras import layers

    widths = (8, 16) if tiny else (24, 48, 96)

    def conv_bn(h, filters, stride=1, kernel=3, name=None):
        h = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(h)
        return layers.BatchNormalization(name=name + "_bn")(h)

    inp = keras.Input(input_shape)
    h = keras.ops.relu(conv_bn(inp, widths[0], 2, name="stem"))
    for s, width in enumerate(widths):
        stride = 1 if s == 0 else 2
        shortcut = h if stride == 1 and s == 0 else conv_bn(h, width, stride, 1, name=f"s{s}_proj")
        r = keras.ops.relu(conv_bn(h, width, stride, name=f"s{s}_a"))
        h = keras.ops.relu(conv_bn(r, width, name=f"s{s}_b") + shortcut)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="fc")(h), name="resnet")


def ds_cnn(input_shape=(28, 28, 1), classes=10, tiny=False):
    import keras
    from keras import layers

    widths = (8, 16) if tiny else (64, 128)
    inp = keras.Input(input_shape)
    h = layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False, name="conv0")(inp)
    h = layers.ReLU()(layers.BatchNormalization(name="conv0_bn")(h))
    for i, stride in enumerate((2, 1, 1, 1)):  # 14x14 -> 7x7, then three blocks at 7x7
        h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw{i}")(h)
        h = layers.ReLU()(layers.BatchNormalization(name=f"dw{i}_bn")(h))
        h = layers.Conv2D(widths[1], 1, use_bias=False, name=f"pw{i}")(h)
        h = layers.ReLU()(layers.BatchNormalization(name=f"pw{i}_bn")(h))
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="fc")(h), name="ds_cnn")


def lstm(input_shape=(SEQ_T, SEQ_F), classes=SEQ_CLASSES, tiny=False):
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    h = layers.LSTM(16 if tiny else 128, name="lstm")(inp)
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="fc")(h), name="lstm")


def transformer(input_shape=(SEQ_T, SEQ_F), classes=SEQ_CLASSES, tiny=False, d_model=64):
    """Post-LN encoder: ``blocks`` x (MultiHeadAttention, Dense FFN), learned position embedding.

    The position ids are computed in the graph (``cumsum`` of ones) so that ``pos`` is a layer of the
    model, trained, pruned and clustered (``Embedding(...)(keras.ops.arange(T))`` runs eagerly at
    build time: the zoo's first transformer had an untrained random constant there, raw in the file).
    The input projection ``embed`` has no bias: the position embedding already adds a learned vector
    per step (same function class), and the converter would fold bias + position table into one
    constant whose values no longer share the clustered table's."""
    import keras
    from keras import layers

    d, heads, ffn, blocks = (16, 2, 32, 1) if tiny else (d_model, 4, 2 * d_model, 2)
    inp = keras.Input(input_shape)
    h = layers.Dense(d, use_bias=False, name="embed")(inp)
    steps = keras.ops.cumsum(keras.ops.ones_like(inp[:, :, 0], dtype="int32"), axis=1) - 1  # 0..T-1
    h = h + layers.Embedding(input_shape[0], d, name="pos")(steps)
    for b in range(blocks):
        a = layers.MultiHeadAttention(heads, d // heads, name=f"mha{b}")(h, h)
        h = layers.LayerNormalization(name=f"ln{b}a")(h + a)
        f = layers.Dense(ffn, activation="relu", name=f"ffn{b}a")(h)
        h = layers.LayerNormalization(name=f"ln{b}b")(h + layers.Dense(d, name=f"ffn{b}b")(f))
    h = layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="fc")(h), name="transformer")


def transformer_128(input_shape=(SEQ_T, SEQ_F), classes=SEQ_CLASSES, tiny=False):
    """``transformer`` at d_model 128 (FFN 256): 2 blocks, 4 heads, ~0.27 M parameters."""
    return transformer(input_shape, classes, tiny, d_model=128)


def conv1d(input_shape=(SEQ_T, SEQ_F), classes=SEQ_CLASSES, tiny=False):
    import keras
    from keras import layers

    w = (8, 16) if tiny else (64, 128)
    inp = keras.Input(input_shape)
    h = layers.Conv1D(w[0], 5, padding="same", activation="relu", name="c1")(inp)
    h = layers.Conv1D(w[1], 5, strides=2, padding="same", activation="relu", name="c2")(h)
    h = layers.Conv1D(w[1], 3, padding="same", activation="relu", name="c3")(h)
    h = layers.GlobalMaxPooling1D()(h)
    h = layers.Dense(w[1], activation="relu", name="fc1")(h)
    return keras.Model(inp, layers.Dense(classes, activation="softmax", name="fc")(h), name="conv1d")


BUILDERS = {"mobilenetv2_035": mobilenetv2_035, "resnet": resnet, "ds_cnn": ds_cnn, "lstm": lstm,
            "transformer": transformer, "transformer_128": transformer_128, "conv1d": conv1d}


# ------------------------------------------------------------------------------------------- data
def make_sequences(n, seed):
    """The generated sequence task: class c = motif c (fixed by rule seed 1234, 6 steps x 8 features,
    amplitude ``MOTIF_AMPLITUDE``) added at a random position of a 32x8 standard-normal sequence."""
    motifs = MOTIF_AMPLITUDE * np.random.default_rng(1234).normal(size=(SEQ_CLASSES, MOTIF, SEQ_F))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, SEQ_CLASSES, n)
    x = rng.normal(size=(n, SEQ_T, SEQ_F))
    pos = rng.integers(0, SEQ_T - MOTIF + 1, n)
    steps = pos[:, None] + np.arange(MOTIF)[None, :]
    x[np.arange(n)[:, None], steps] += motifs[y]
    return x.astype("float32"), y.astype("int64")


def load(data, train_subset=0, val_samples=None):
    """(x_train, y_train), (x_val, y_val), (x_test, y_test) for a ZOO ``data`` kind.

    Sequences: training = the first 20,000 of seed ``SEQ_TRAIN_SEED``, test = 5,000 of seed
    ``SEQ_TEST_SEED``. Validation: the last 2,000 of the training seed's 22,000, or, with
    ``val_samples`` (ZOO field), that many generated from seed ``SEQ_VAL_SEED`` (an independent
    stream); the training and test sequences are the same either way, so rows stay comparable.
    Images (Fashion-MNIST): validation = the last 5,000 of the 60,000 training images, or the last
    ``val_samples``; training = the first ``train_subset`` of the others (the same images whatever the
    split, as long as both fit: a clear error if they would overlap); test = the 10,000 test images."""
    if val_samples is not None and (isinstance(val_samples, bool) or not isinstance(val_samples, (int, np.integer))
                                    or val_samples < 1):
        raise ValueError(f"val_samples must be a positive whole number of samples, got {val_samples!r}")
    if data == "sequences":
        x, y = make_sequences(22000, seed=SEQ_TRAIN_SEED)
        xt, yt = make_sequences(5000, seed=SEQ_TEST_SEED)
        val = 2000
    else:
        from dc_keras.datasets import fashion_mnist

        (x, y), (xt, yt) = fashion_mnist.load_data()
        val = 5000 if val_samples is None else _image_val_size(val_samples, train_subset, len(x))
        x, xt = (_images(a, data) for a in (x, xt))
        y, yt = y.astype("int64"), yt.astype("int64")
    x_train, y_train, x_val, y_val = x[:-val], y[:-val], x[-val:], y[-val:]
    if val_samples is not None and data == "sequences":  # the seed's last 2,000 stay unused: same training
        x_val, y_val = make_sequences(int(val_samples), seed=SEQ_VAL_SEED)
    if train_subset:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    return (x_train, y_train), (x_val, y_val), (xt, yt)


def _image_val_size(val_samples, train_subset, available):
    """``val_samples`` for an image set of ``available`` training images, checked: it leaves
    ``train_subset`` (0: all the rest) training images disjoint from it."""
    if int(val_samples) + int(train_subset) > available or val_samples >= available:
        raise ValueError(f"val_samples={val_samples} + train_samples={train_subset} exceed the {available:,} "
                         "training images: validation would overlap training; lower one of them")
    return int(val_samples)


def _images(a, data):
    a = a.astype("float32") / 255.0
    if data == "fashion32x3":  # 28 -> 32 px (zero border), 3 channels
        a = np.pad(a, ((0, 0), (2, 2), (2, 2)))
        return np.repeat(a[..., None], 3, axis=-1)
    return a[..., None]


# ------------------------------------------------------------------------------------ compression
def sparsity_plan(model, cfg):
    """Per-layer pruning targets by the documented rules; returns (targets, covered layer rows).

    Covered layers are those ``dc_keras.prune`` wraps (found with a throw-away ``prune`` call)."""
    from dc_keras import schedules, train

    wrapped = train.prune(model, schedules.ConstantSparsity(0.5, 0))
    covered = [layer.name for layer in wrapped.layers if isinstance(layer, train.PruneWrapper)]
    targets, rows = {}, []
    for i, name in enumerate(covered):
        layer = model.get_layer(name)
        n = sum(int(np.prod(w.shape)) for w in layer.weights if len(w.shape) >= 2)
        if n < cfg["min_params"] or (i == 0 and cfg["data"] != "sequences"):
            target = 0.0  # tiny layer, or the first conv that sees the image: clustered only
        elif type(layer).__name__ in cfg.get("sparsity_by_type", {}):
            target = cfg["sparsity_by_type"][type(layer).__name__]
        else:
            target = cfg["sparsity_big"] if n >= cfg["big_params"] else cfg["sparsity"]
        if target:
            targets[name] = target
        rows.append({"layer": name, "type": type(layer).__name__, "weights": n, "sparsity_target": target})
    return targets, rows


def weight_stats(model, names):
    """Parameters, kernel weights of the covered layers, and zeros among them / among all parameters."""
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    zeros_all = sum(int(np.sum(np.asarray(w) == 0)) for w in model.weights)
    kernels = [np.asarray(w) for layer in model.layers if layer.name in names
               for w in layer.weights if len(w.shape) >= 2]
    covered = sum(k.size for k in kernels)
    zeros = sum(int(np.sum(k == 0)) for k in kernels)
    return {"params": total, "covered_weights": covered, "covered_fraction": covered / total,
            "sparsity_covered": zeros / max(covered, 1), "sparsity_all": zeros_all / total}


def bytes_breakdown(packed):
    """Where the packed file's bytes go: packed tensors, raw tensors (1-D: biases, folded BN
    shifts; other), tensor names, and the rest of the flatbuffer (operators, shapes, tables).
    A buffer several rows read (an LSTM's zero initial states, a scalar read in two subgraphs) is
    counted once, with its first row, as the file holds it (it was counted once per row before)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export import inspect

    report = inspect(packed)
    out = {"file": len(packed), "packed_tensors": 0, "raw_1d": 0, "raw_other": 0}
    out["packed_1d"] = 0  # of packed_tensors: the 1-D ones (shared biases, folded BN shifts)
    seen = set()
    for r in report.rows:
        if r.buffer > 0 and r.buffer in seen:  # the file's buffer: the packed one for a packed row
            continue
        seen.add(r.buffer)
        if r.status == "packed":
            out["packed_tensors"] += r.packed_bytes
            out["packed_1d"] += r.packed_bytes if len(r.shape) <= 1 else 0
        elif len(r.shape) <= 1:
            out["raw_1d"] += r.raw_bytes
        else:
            out["raw_other"] += r.raw_bytes
    model = fb.read_model(packed)
    out["tensor_names"] = sum(len(fb.tensor_name(t)) for sg in model.subgraphs for t in sg.tensors or [])
    out["structure"] = len(packed) - out["packed_tensors"] - out["raw_1d"] - out["raw_other"] - out["tensor_names"]
    return out


def compress(model, cfg, data, epochs, seed, verbose=None, val=None):
    """The five calls (through dc_keras.pipeline's helpers): prune -> fit -> strip -> cluster -> fit
    -> strip. Returns (final model, plan rows, minutes per stage and, given ``val`` = (x, y), the
    validation error after pruning: which stage costs accuracy)."""
    from dc_keras import pipeline

    (x, y) = data
    shift = 0 if cfg["data"] == "sequences" else 2
    targets, rows = sparsity_plan(model, cfg)
    t = time.time()
    pruned = pipeline.prune_retrain(model, x, y, targets, epochs=epochs[1], lr=cfg["prune_lr"],
                                    ramp_fraction=cfg.get("prune_ramp", 0.6), max_shift=shift, seed=seed,
                                    verbose=verbose)
    t_prune = (time.time() - t) / 60
    pruned_val = None if val is None else _keras_error(pruned, *val)
    t = time.time()
    shared = pipeline.cluster_finetune(pruned, x, y, bits=layer_bits(cfg, rows), epochs=epochs[2],
                                       lr=cfg.get("cluster_lr", 2e-4), max_shift=shift, seed=seed, verbose=verbose,
                                       **_bias_kwargs(cfg))
    return shared, rows, {"prune_minutes": t_prune, "cluster_minutes": (time.time() - t) / 60,
                          "pruned_val_error": pruned_val}


def layer_bits(cfg, plan):
    """``bits`` for every clustered layer, or a dict (every covered layer of ``plan`` by name) giving
    the pruned ones ``bits_pruned`` and the layers of a class in ``bits_by_type`` (class name -> bits,
    e.g. ``{"DepthwiseConv2D": 4}``) that class's bits, which win over both."""
    by_type = cfg.get("bits_by_type") or {}
    if cfg.get("bits_pruned") in (None, cfg["bits"]) and not by_type:
        return cfg["bits"]
    pruned = cfg.get("bits_pruned") or cfg["bits"]
    return {r["layer"]: by_type.get(r.get("type"), pruned if r["sparsity_target"] else cfg["bits"]) for r in plan}


def _bias_kwargs(cfg):
    return {"cluster_biases": cfg["cluster_biases"]} if cfg.get("cluster_biases") else {}


def export_and_check(model, x_test, y_test, work_path=None, batch_size=None):
    """Packed and unpacked ``.tflite`` of ``model``; errors on the test split from the packed file;
    bit-identical outputs check; warnings raised by ``to_tflite``."""
    import warnings

    from dc_keras import export, pipeline

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = export.to_tflite(model, path=work_path, batch_size=batch_size)
        unpacked = export.to_tflite(model, pack=False, batch_size=batch_size)
    out_packed = pipeline.predict_tflite(packed, x_test)
    out_plain = pipeline.predict_tflite(unpacked, x_test)
    return {
        "packed": packed, "unpacked": unpacked, "unpacked_bytes": len(unpacked), "plain_outputs": out_plain,
        "identical": out_packed.tobytes() == out_plain.tobytes(),
        "error": float(np.mean(np.argmax(out_packed, -1) != y_test)),
        "warnings": sorted({str(w.message) for w in caught}),
    }


def _epochs(cfg, scale):
    return tuple(max(1, int(round(e * scale))) if e else 0 for e in cfg["epochs"])


def run_model(name, scale, seed, train_subset=0, work_dir=None, verbose=None, override=None):
    """Trains, compresses, exports and measures one zoo model; returns its JSON row. ``override``:
    settings replacing ZOO's for this run (a search run; recorded in the row)."""
    import keras

    from dc_keras import export, pipeline

    cfg, start = {**ZOO[name], **(override or {})}, time.time()
    epochs = _epochs(cfg, scale)
    (x, y), (xv, yv), (xt, yt) = load(cfg["data"], train_subset or cfg["train_samples"], cfg.get("val_samples"))
    keras.utils.set_random_seed(seed)
    model = BUILDERS[name](input_shape=x.shape[1:])
    _log(f"{name}: {model.count_params():,} parameters, {len(x):,} training samples, epochs {epochs}")
    pipeline.train_baseline(model, x, y, epochs=epochs[0], lr=cfg["lr"], seed=seed, verbose=verbose,
                            max_shift=0 if cfg["data"] == "sequences" else 2)
    t_base = (time.time() - start) / 60
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixed-batch note of recurrent models; recorded below
        float_tfl = export.to_tflite(model, pack=False, batch_size=cfg.get("batch_size"))
        dynamic_float = export.to_tflite(model, pack=False) if cfg.get("batch_size") else None
    base_error = pipeline.evaluate_tflite(float_tfl, xt, yt, progress=False)
    base_wrong = _keras_wrong(model, xv, yv)
    base_val = float(np.mean(base_wrong))
    _log(f"{name}: baseline float .tflite {len(float_tfl):,} B, test error {100 * base_error:.2f} %")
    final, plan, times = compress(model, cfg, (x, y), epochs, seed, verbose, val=(xv, yv))
    path = os.path.join(work_dir, f"{name}.packed.tflite") if work_dir else None
    out = export_and_check(final, xt, yt, path, cfg.get("batch_size"))
    stripped = stripped_check(out, xt, yt, len(float_tfl))
    stats = weight_stats(final, {r["layer"] for r in plan})
    row = {
        "model": name, "data": cfg["data"], "input_shape": list(x.shape[1:]), "train_samples": len(x),
        "val_samples": len(xv), "val_source": _val_source({**cfg, "train_samples": len(x)}), "test_samples": len(xt), "epochs": {"baseline": epochs[0], "prune": epochs[1], "cluster": epochs[2]},
        "config": {k: v for k, v in cfg.items() if k not in ("epochs", "note")}, "note": cfg.get("note"),
        "baseline_params": model.count_params(), **stats, "bits": cfg["bits"], "plan": plan,
        "float_tflite_bytes": len(float_tfl), "packed_bytes": len(out["packed"]),
        "unpacked_final_bytes": out["unpacked_bytes"], "ratio": len(float_tfl) / len(out["packed"]),
        "baseline_error": base_error, "final_error": out["error"],
        "error_increase_pp": 100 * (out["error"] - base_error),
        "baseline_val_error": base_val, **_val_change(base_wrong, _keras_wrong(final, xv, yv)),
        "packed_outputs_identical": out["identical"], "bytes": bytes_breakdown(out["packed"]),
        "export_warnings": out["warnings"], "stripped_names": stripped, "override": override or None,
        "dynamic_batch": _dynamic_batch(dynamic_float, final),
        "minutes": {"baseline": t_base, **times, "total": (time.time() - start) / 60},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit(),
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
    }
    goal = GOALS.get(name)
    row["goal"] = None if goal is None else {"ratio": goal[0], "max_increase_pp": goal[1]}
    row["goal_verdict_uses"] = "names kept (the default pack); goal_met_stripped: the same goal for the file packed with strip_strings=True"
    row["goal_met"] = None if goal is None else bool(row["ratio"] >= goal[0] and row["error_increase_pp"] <= goal[1])
    row["goal_met_stripped"] = None if goal is None else bool(
        stripped["ratio"] >= goal[0] and 100 * (stripped["error"] - base_error) <= goal[1] and stripped["identical"])
    _log(f"{name}: {row['ratio']:.1f}x ({len(float_tfl):,} -> {len(out['packed']):,} B), error "
         f"{100 * base_error:.2f} % -> {100 * out['error']:.2f} %, identical={out['identical']}, names stripped "
         f"{stripped['ratio']:.1f}x (identical={stripped['identical']}), val error {100 * base_val:.2f} % -> "
         f"{100 * row['final_val_error']:.2f} % (+-{row['val_increase_se_pp']:.2f} pp, {row['val_source']}), "
         f"{row['minutes']['total']:.1f} min")
    return row


@functools.lru_cache(maxsize=None)
def _commit():
    """The checkout's commit, read once (``main`` calls it before training: the code that runs)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except OSError:
        return None


def stripped_check(out, x_test, y_test, float_bytes):
    """The same final model packed with ``strip_strings=True`` (tensor, subgraph names and the
    description dropped): its size, ratio, test error and whether its outputs are bit-identical
    to the unpacked ``.tflite`` (``out`` from ``export_and_check``)."""
    from dc_keras import export, pipeline

    data = export.pack(out["unpacked"], strip_strings=True)
    outputs = pipeline.predict_tflite(data, x_test)
    return {"bytes": len(data), "ratio": float_bytes / len(data), "bytes_saved": len(out["packed"]) - len(data),
            "identical": outputs.tobytes() == out["plain_outputs"].tobytes(),
            "error": float(np.mean(np.argmax(outputs, -1) != y_test))}


def _dynamic_batch(dynamic_float, final):
    """For a model the zoo exports with a static batch (``batch_size`` in ZOO, not recurrent): float and
    packed sizes with the converter's dynamic batch instead, to show what the shape ops cost."""
    from dc_keras import export

    if dynamic_float is None:
        return None
    packed = export.to_tflite(final)
    return {"float_tflite_bytes": len(dynamic_float), "packed_bytes": len(packed),
            "ratio": len(dynamic_float) / len(packed)}


def _val_source(cfg):
    """Where the row's validation split comes from (recorded in the JSON, shown by results_doc.py)."""
    if cfg.get("val_samples") is not None and cfg["data"] == "sequences":
        return f"{cfg['val_samples']:,} generated sequences, seed {SEQ_VAL_SEED} (training seed {SEQ_TRAIN_SEED}, test seed {SEQ_TEST_SEED})"
    if cfg.get("val_samples") is not None:
        return (f"held-out training images (the last {cfg['val_samples']:,} of the 60,000; training: the first "
                f"{cfg['train_samples']:,}, disjoint)")
    return "held-out training samples (the last 2,000 of the training seed)" if cfg["data"] == "sequences" else \
        "held-out training images (the last 5,000)"


def _keras_wrong(model, x, y):
    return np.argmax(model.predict(x, batch_size=500, verbose=0), -1) != y


def _keras_error(model, x, y):
    return float(np.mean(_keras_wrong(model, x, y)))


def _val_change(base_wrong, final_wrong):
    """The final validation error, and the standard error (pp) of its increase over the baseline's:
    paired over the same samples, sqrt(var(final_wrong - base_wrong) / n); ``val_flips``: samples whose
    right/wrong verdict changed (either way)."""
    d = final_wrong.astype("float64") - base_wrong.astype("float64")
    return {"final_val_error": float(np.mean(final_wrong)), "val_flips": int(np.count_nonzero(d)),
            "val_increase_se_pp": float(100 * np.std(d) / np.sqrt(len(d)))}


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv):
    del argv  # absl's app.run passes the leftover command line: none is used
    from _common import machine_info, write_json  # benchmarks/ is on sys.path when run as a script

    names = FLAGS.models or list(ZOO)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise app.UsageError(f"unknown model(s) {unknown}; the zoo has {list(ZOO)}")
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    _commit()  # the commit at start: the code this process runs, even if HEAD moves meanwhile
    result = {"command": "benchmarks/model_zoo.py " + shlex.join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "loadavg_start": [round(v, 2) for v in os.getloadavg()], "epoch_scale": FLAGS.epoch_scale,
              "train_subset": FLAGS.train_subset, "seed": FLAGS.seed, "models": [], "failures": []}
    earlier_pending = []
    if FLAGS.update and os.path.exists(FLAGS.json):
        with open(FLAGS.json) as f:
            old = json.load(f)
        result["models"] = [r for r in old.get("models", []) if r["model"] not in names]
        result["failures"] = [x for x in old.get("failures", []) if x.split(":")[0] not in names]
        earlier_pending = [n for n in old.get("pending", []) if n not in names]
        result["command"] = old.get("command", "") + " ; " + result["command"]
    for i, name in enumerate(names):
        # the models not run yet, in every write: a run stopped (Ctrl-C) between two models leaves a JSON
        # that says which rows it lacks (results_doc.py lists them), not one that looks complete
        result["pending"] = earlier_pending + names[i + 1:]
        try:
            row = run_model(name, FLAGS.epoch_scale, FLAGS.seed, FLAGS.train_subset, FLAGS.work_dir,
                            override=json.loads(FLAGS.config) if FLAGS.config else None)
            row["command"] = "benchmarks/model_zoo.py " + shlex.join(sys.argv[1:])
            result["models"].append(row)
        except Exception as exc:  # one model failing must not lose the others' figures
            import traceback

            traceback.print_exc()
            result["failures"].append(f"{name}: {type(exc).__name__}: {str(exc)[:500]}")
        result["models"].sort(key=lambda r: list(ZOO).index(r["model"]))
        result["machine"] = machine_info()
        write_json(FLAGS.json, result)
    _log(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
