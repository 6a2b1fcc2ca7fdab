"""A tiny version of every benchmarks/model_zoo.py model through the five-call recipe:
prune -> fit -> strip -> cluster -> fit -> strip -> export.to_tflite, then packed vs unpacked
bit-exact, tflite vs Keras, and no clustered kernel spread by the converter (BatchNorm folded)."""
import importlib.util
import os
import warnings

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras import export, schedules
from dc_keras.pipeline import predict_tflite

HERE = os.path.dirname(os.path.abspath(__file__))


def _zoo():
    spec = importlib.util.spec_from_file_location("model_zoo", os.path.join(HERE, "..", "benchmarks", "model_zoo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo = _zoo()


def _data(name, n=16, seed=0):
    rng = np.random.default_rng(seed)
    if ZOO_INPUTS[name] is None:
        x, y = zoo.make_sequences(n, seed)
        return x, y
    x = rng.random((n, *ZOO_INPUTS[name])).astype("float32")
    return x, rng.integers(0, 10, n)


ZOO_INPUTS = {"mobilenetv2_035": (32, 32, 3), "resnet": (28, 28, 1), "ds_cnn": (28, 28, 1),
              "lstm": None, "transformer": None, "transformer_128": None, "conv1d": None}


def _fit(model, x, y, callbacks=()):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, callbacks=list(callbacks))


def test_zoo_table_is_complete():
    assert set(zoo.ZOO) == set(zoo.BUILDERS) == set(ZOO_INPUTS) == set(zoo.GOALS)
    x, y = zoo.make_sequences(50, seed=3)
    x2, y2 = zoo.make_sequences(50, seed=3)
    assert x.shape == (50, zoo.SEQ_T, zoo.SEQ_F) and x.tobytes() == x2.tobytes() and (y == y2).all()


def test_sequence_validation_split_from_its_own_seed_leaves_training_and_test_unchanged():
    (x, y), (xv, yv), (xt, yt) = zoo.load("sequences", train_subset=300)
    (x2, y2), (xv2, yv2), (xt2, yt2) = zoo.load("sequences", train_subset=300, val_samples=400)
    assert x.tobytes() == x2.tobytes() and xt.tobytes() == xt2.tobytes() and (y == y2).all() and (yt == yt2).all()
    assert xv.shape[0] == 2000 and xv2.shape == (400, zoo.SEQ_T, zoo.SEQ_F) and yv2.shape == (400,)
    assert xv2.tobytes() == zoo.make_sequences(400, seed=zoo.SEQ_VAL_SEED)[0].tobytes()
    assert len({zoo.SEQ_TRAIN_SEED, zoo.SEQ_TEST_SEED, zoo.SEQ_VAL_SEED}) == 3
    with pytest.raises(ValueError, match="val_samples"):  # not a count: a clear error
        zoo.load("sequences", val_samples=0.5)


def test_image_validation_split_is_the_last_images_disjoint_from_the_same_training_images():
    (x, y), (xv, yv), (xt, yt) = zoo.load("fashion", train_subset=300)
    (x2, y2), (xv2, yv2), (xt2, yt2) = zoo.load("fashion", train_subset=300, val_samples=10000)
    assert x.tobytes() == x2.tobytes() and (y == y2).all() and xt.tobytes() == xt2.tobytes() and (yt == yt2).all()
    assert xv.shape == (5000, 28, 28, 1) and xv2.shape == (10000, 28, 28, 1) and yv2.shape == (10000,)
    assert xv2[-5000:].tobytes() == xv.tobytes()  # the old split is the new one's tail: the last images
    (_, _), (xv3, _), (_, _) = zoo.load("fashion", train_subset=50000, val_samples=10000)  # fits exactly
    assert xv3.tobytes() == xv2.tobytes()
    for bad in (0, -5, True, 1.5, "10000"):
        with pytest.raises(ValueError, match="val_samples must be a positive whole number"):
            zoo.load("fashion", train_subset=300, val_samples=bad)
    with pytest.raises(ValueError, match="overlap training"):
        zoo.load("fashion", train_subset=50001, val_samples=10000)
    cfg = {**zoo.ZOO["ds_cnn"], "val_samples": 20000}
    assert zoo._val_source(cfg) == ("held-out training images (the last 20,000 of the 60,000; training: the first "
                                    "20,000, disjoint)")
    assert zoo._val_source(zoo.ZOO["resnet"]) == "held-out training images (the last 5,000)"


def test_validation_increase_standard_error_is_paired():
    base = np.array([1, 0, 0, 1, 0, 0, 0, 0], bool)
    final = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)  # +2 -1 over 8: +12.5 pp, 3 flips
    out = zoo._val_change(base, final)
    d = np.array([0, 1, 0, -1, 1, 0, 0, 0], float)
    assert out["final_val_error"] == 3 / 8 and out["val_flips"] == 3
    assert out["val_increase_se_pp"] == pytest.approx(100 * d.std() / np.sqrt(8))
    assert zoo._val_change(base, base)["val_increase_se_pp"] == 0.0


# make test runs four architectures; transformer_128 (the bigger transformer), ds_cnn (32 s: conv +
# depthwise, as mobilenetv2_035 and resnet already are) and conv1d run in make test-long (budget).
LONG_ZOO = ("transformer_128", "ds_cnn", "conv1d")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.long) if n in LONG_ZOO else n for n in zoo.ZOO])
def test_tiny_zoo_model_compresses_exports_and_packs_bit_exact(name):
    keras.utils.set_random_seed(0)
    x, y = _data(name)
    cfg = dict(zoo.ZOO[name], min_params=100)
    model = zoo.BUILDERS[name](input_shape=x.shape[1:], tiny=True)
    targets, plan = zoo.sparsity_plan(model, cfg)
    assert targets, plan  # something is pruned
    pruned = dc_keras.prune(model, layers={k: schedules.ConstantSparsity(v, 0) for k, v in targets.items()})
    _fit(pruned, x, y, [dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=cfg["bits"])
    _fit(clustered, x, y)
    final = dc_keras.strip(clustered)
    stats = zoo.weight_stats(final, set(targets))
    assert stats["sparsity_covered"] > 0.5, stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fixed batch of recurrent models
        warnings.simplefilter("error", export.ClusterSpreadWarning)  # BN must be folded before clustering
        packed = export.to_tflite(final)
        plain = export.to_tflite(final, pack=False)
    report = export.inspect(packed)
    assert report.packed and len(packed) < len(plain)
    for row in report.rows:  # every big kernel-like tensor packs
        if len(row.shape) >= 2 and row.raw_bytes >= 4096:
            assert row.status == "packed", str(report)
    out_packed, out_plain = predict_tflite(packed, x), predict_tflite(plain, x)
    assert out_packed.tobytes() == out_plain.tobytes()
    np.testing.assert_allclose(out_plain, final.predict(x, verbose=0), rtol=1e-3, atol=1e-5)
    parts = zoo.bytes_breakdown(packed)
    assert parts["packed_tensors"] > 0 and parts["structure"] > 0 and parts["file"] == len(packed)
    # the zoo's second file: names stripped, smaller, still bit-identical to the unpacked file
    stripped = zoo.stripped_check({"packed": packed, "unpacked": plain, "plain_outputs": out_plain}, x, y, len(plain))
    assert stripped["identical"] and 0 < stripped["bytes"] < len(packed), stripped
    assert stripped["bytes_saved"] == len(packed) - stripped["bytes"]


def test_zoo_bits_rule_gives_pruned_layers_their_own_bits():
    plan = [{"layer": "conv0", "sparsity_target": 0.0}, {"layer": "pw0", "sparsity_target": 0.9}]
    assert zoo.layer_bits({"bits": 5}, plan) == 5
    assert zoo.layer_bits({"bits": 5, "bits_pruned": 5}, plan) == 5
    assert zoo.layer_bits({"bits": 5, "bits_pruned": 4}, plan) == {"conv0": 5, "pw0": 4}
    typed = [dict(plan[0], type="Conv2D"), dict(plan[1], type="Conv2D"),
             {"layer": "dw0", "type": "DepthwiseConv2D", "sparsity_target": 0.5}]
    assert zoo.layer_bits({"bits": 5, "bits_pruned": 4, "bits_by_type": {"DepthwiseConv2D": 6}}, typed) == {
        "conv0": 5, "pw0": 4, "dw0": 6}
    assert zoo.layer_bits({"bits": 5, "bits_by_type": {"Conv2D": 3}}, typed) == {"conv0": 3, "pw0": 3, "dw0": 5}


@pytest.mark.slow
def test_keras_applications_mobilenetv2_compresses_exports_and_packs_bit_exact():
    """The zoo's real MobileNetV2-0.35 (155 layers; minutes on a loaded CPU) through the same calls."""
    keras.utils.set_random_seed(0)
    x, y = _data("mobilenetv2_035", n=8)
    model = zoo.mobilenetv2_035()
    targets, _ = zoo.sparsity_plan(model, zoo.ZOO["mobilenetv2_035"])
    pruned = dc_keras.prune(model, layers={k: schedules.ConstantSparsity(v, 0) for k, v in targets.items()})
    _fit(pruned, x, y, [dc_keras.PruningCallback()])
    clustered = dc_keras.cluster(dc_keras.strip(pruned), bits=5)
    _fit(clustered, x, y)
    final = dc_keras.strip(clustered)
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ClusterSpreadWarning)
        packed = export.to_tflite(final)
    plain = export.unpack(packed)
    assert len(packed) * 4 < len(plain)
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()


def test_bytes_breakdown_counts_a_buffer_several_rows_read_once():
    """The zoo LSTM's file (tests/data/zoo_lstm128.packed.tflite) has an int32 scalar read in two
    subgraphs (one 4 B buffer): bytes_breakdown counted it once per row, so its parts exceeded the
    constant bytes the file holds (raw 1-D 2,168 B for 2,164 B) and "other structure" was short by as
    much. The packed tensors plus the raw ones are now exactly the distinct buffers' bytes."""
    from dc_keras import _flatbuffer as fb

    with open(os.path.join(HERE, "data", "zoo_lstm128.packed.tflite"), "rb") as f:
        packed = f.read()
    m = fb.read_model(packed)
    held = sum(fb.buffer_size(m, b) for b in {t.buffer for sg in m.subgraphs for t in sg.tensors or []} if b > 0)
    parts = zoo.bytes_breakdown(packed)
    assert parts["packed_tensors"] + parts["raw_1d"] + parts["raw_other"] == held, (parts, held)
    assert (parts["raw_1d"], parts["raw_other"]) == (2164, 0), parts
    assert sum(parts[k] for k in ("packed_tensors", "raw_1d", "raw_other", "tensor_names", "structure")) == len(packed)
