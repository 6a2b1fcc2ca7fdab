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
    with pytest.raises(ValueError, match="val_samples"):  # image data has its fixed split: a clear error
        zoo.load("fashion", val_samples=400)


@pytest.mark.parametrize("name", list(zoo.ZOO))
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
