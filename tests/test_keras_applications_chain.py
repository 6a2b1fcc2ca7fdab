"""Layer and model coverage review (session 46): the models people ship, through the documented chain.

prune -> fit(PruningCallback) -> strip -> cluster (BatchNorm folded) -> fit -> strip, each wrapped
model through a ``.keras`` file with no ``custom_objects`` (weights and predictions bit-exact), the
stripped model to ``.tflite`` with ``to_tflite(pack=False)`` and ``pack``, packed and unpacked files
run bit-exact, and every layer left dense named in ``compression_report`` with its reason.

What was found: EfficientNet's input ``Normalization`` (mean, variance, count: statistics, none
trained) was reported as "unsupported layer type Normalization", as if dc_keras lacked support for a
layer it leaves dense by design; the pipeline's training steps given a list of arrays (a model with
two inputs) crashed in numpy ("inhomogeneous shape") or, for arrays of one shape, stacked them into
one array whose first axis counted the inputs. keras.applications' MobileNetV3Small and
EfficientNetB0 (SE blocks, hard-swish, Rescaling, every BatchNormalization folded) go through the
whole chain: those two are ``long`` (about 1.5 and 3 minutes), the rest run in ``make test``.

MultiHeadAttention called with keywords mixing tensors and Python values (``attention_mask=m,
use_causal_mask=True``; ``query=q, value=v, return_attention_scores=True``) stopped prune() and
cluster() with Keras's "cannot mix tensors and non-tensors". Its training cases (no export) also run
on JAX and torch (Makefile BACKEND_TESTS).
"""
import os
import warnings

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras import export, pipeline
from dc_keras.train import _base

L = keras.layers


def _np(v):
    return keras.ops.convert_to_numpy(v)


def _outputs(model, x):
    out = model(x, training=False)
    return [_np(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _data(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.random((n,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]
    ys = [rng.normal(size=(n,) + tuple(t.shape[1:])).astype("float32") for t in model.outputs]
    return (xs if len(xs) > 1 else xs[0]), (ys if len(ys) > 1 else ys[0])


def _round_trip(model, x, path):
    """``model`` through a ``.keras`` file loaded with no custom_objects: same weights, same outputs."""
    model.save(path)
    loaded = keras.saving.load_model(path)
    before, after = model.get_weights(), loaded.get_weights()
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for a, b in zip(_outputs(model, x), _outputs(loaded, x)):
        assert a.tobytes() == b.tobytes()


def _chain(model, x, y, tmp_path, bits=3, sparsity=0.5, to_tflite=True):
    """The documented chain on ``model``; returns ``(pruned, clustered, final, raw, packed)``
    (``to_tflite=False``: without the export, raw and packed None)."""
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(sparsity, 0))
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[dc_keras.PruningCallback()])
    _round_trip(pruned, x, str(tmp_path / "pruned.keras"))
    stripped = dc_keras.strip(pruned)
    for a, b in zip(_outputs(pruned, x), _outputs(stripped, x)):
        assert a.tobytes() == b.tobytes()
    clustered = dc_keras.cluster(stripped, bits=bits)
    clustered.compile("adam", "mse")
    clustered.fit(x, y, epochs=1, batch_size=4, verbose=0)
    _round_trip(clustered, x, str(tmp_path / "clustered.keras"))
    final = dc_keras.strip(clustered)
    assert not _base.find_wrappers(final)
    for a, b in zip(_outputs(clustered, x), _outputs(final, x)):
        assert a.tobytes() == b.tobytes()
    _round_trip(final, x, str(tmp_path / "final.keras"))
    # every kernel prune and cluster wrapped: pruned to the target, at most 2**bits shared values
    wrapped = {e["layer"] for e in clustered.compression_report.wrapped}
    assert wrapped == {e["layer"] for e in pruned.compression_report.wrapped}
    rows = [r for r in pipeline.layer_stats(final) if r["layer"] in wrapped and r["weight"] != "bias"]
    assert {r["layer"] for r in rows} == wrapped
    for r in rows:
        assert abs(r["density"] - (1 - sparsity)) <= 0.5 / r["params"] + 0.02, r
        assert 1 <= r["distinct"] <= 2 ** bits, r
    if not to_tflite:
        return pruned, clustered, final, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("error", export.ClusterSpreadWarning)  # the folded BatchNorms keep the sharing
        raw = export.to_tflite(final, pack=False)
    packed = export.pack(raw, min_bytes=0)
    assert len(packed) < len(raw)
    feed = dict(zip([t.name for t in final.inputs], x)) if isinstance(x, list) else x
    plain, unpacked = pipeline.predict_tflite(raw, feed), pipeline.predict_tflite(packed, feed)
    plain, unpacked = (plain, unpacked) if isinstance(plain, list) else ([plain], [unpacked])
    assert [a.tobytes() for a in plain] == [b.tobytes() for b in unpacked]
    for a, b in zip(plain, _outputs(final, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return pruned, clustered, final, raw, packed


def _skipped(report):
    return {e["layer"]: e["reason"] for e in report.skipped}


def test_normalization_statistics_are_reported_left_dense_by_design():
    """An adapted Normalization (EfficientNet's input layer) holds mean, variance and count, none
    trained. The report called it 'unsupported layer type Normalization', the wording of a layer
    dc_keras cannot compress, for one it leaves dense by design; no UserWarning either way."""
    keras.utils.set_random_seed(0)
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(0).normal(size=(32, 5)).astype("float32"))
    model = keras.Sequential([keras.Input((5,)), norm, L.Dense(8, name="fc"), L.Dense(2, name="out")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 0))
        clustered = dc_keras.cluster(model, bits=3)
    for report in (pruned.compression_report, clustered.compression_report, dc_keras.coverage(model)):
        reason = _skipped(report)["norm"]
        assert reason.startswith("preprocessing layer Normalization: its mean and variance are statistics")
        assert reason.endswith("left dense by design") and "unsupported" not in reason
    assert not _base.left_dense_unsupported(norm)
    # copied with its statistics
    for copy in (pruned.get_layer("norm"), clustered.get_layer("norm")):
        assert type(copy) is L.Normalization
        assert [w.tobytes() for w in copy.get_weights()] == [w.tobytes() for w in norm.get_weights()]


@pytest.mark.parametrize("step", ["train_baseline", "prune_retrain", "cluster_finetune"])
@pytest.mark.parametrize("inputs", ["two shapes", "one shape", "dict"])
def test_pipeline_refuses_several_input_arrays_with_one_clear_error(step, inputs):
    """A model with two inputs given to the pipeline's training steps with x as a list of arrays: two
    shapes crashed in numpy ('setting an array element with a sequence ... inhomogeneous shape'), one
    shape was stacked into one (2, N, ...) array, its first axis the inputs ('x and y differ in
    length: 2 vs 16'). One error naming the step, the cause and the fix, before any training."""
    rng = np.random.default_rng(0)
    a = keras.Input((5,), name="a")
    b = keras.Input((5,) if inputs == "one shape" else (4, 4, 1), name="b")
    h = L.Concatenate()([L.Dense(8, name="fa")(a), L.Flatten()(L.Dense(2, name="fb")(b))])
    model = keras.Model([a, b], L.Dense(3, activation="softmax", name="out")(h))
    xs = [rng.random((16,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]
    x = {"a": xs[0], "b": xs[1]} if inputs == "dict" else xs
    y = rng.integers(0, 3, 16)
    before = [w.copy() for w in model.get_weights()]
    kind = "a dict" if inputs == "dict" else "a list of 2 arrays"
    call = {"train_baseline": lambda: pipeline.train_baseline(model, x, y, 1, max_shift=0, verbose=0),
            "prune_retrain": lambda: pipeline.prune_retrain(model, x, y, 0.5, 1, max_shift=0, verbose=0),
            "cluster_finetune": lambda: pipeline.cluster_finetune(model, x, y, bits=3, epochs=1, max_shift=0,
                                                                  verbose=0)}[step]
    with pytest.raises(ValueError, match=rf"^{step}: x is {kind}; the pipeline's recipe trains a model with one "
                                         r"input and one output.*dc_keras\.prune\(model, schedule\).*"
                                         r"PruningCallback"):
        call()
    assert all(np.array_equal(p, q) for p, q in zip(before, model.get_weights()))
    # labels as several arrays (two outputs) too; a plain Python list of labels is one array and trains
    with pytest.raises(ValueError, match=r"^train_baseline: y is a list of 2 arrays"):
        pipeline.train_baseline(model, xs[0], [y, y], 1, max_shift=0, verbose=0)


def test_pipeline_takes_labels_as_a_python_list():
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((5,)), L.Dense(3, activation="softmax")])
    x = rng.random((16, 5)).astype("float32")
    trained = pipeline.train_baseline(model, x, [int(v) for v in rng.integers(0, 3, 16)], 1, max_shift=0, verbose=0)
    assert trained is model


def test_siamese_tower_with_batchnorm_shared_twice_goes_through_the_chain(tmp_path):
    """A nested Sequential tower (Conv2D -> BatchNormalization) called on two inputs: its layers are
    wrapped once and stay shared, the BatchNormalization folds inside the tower, and the file packs
    bit-exact (not covered before: test_graphs' nested models are called once)."""
    keras.utils.set_random_seed(0)
    tower = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(16, 3, name="conv"), L.BatchNormalization(name="bn"),
                              L.ReLU(), L.GlobalAveragePooling2D()], name="tower")
    a, b = keras.Input((8, 8, 3), name="a"), keras.Input((8, 8, 3), name="b")
    model = keras.Model([a, b], L.Dense(2, name="head")(L.Concatenate()([tower(a), tower(b)])))
    x, y = _data(model)
    pruned, clustered, final, _, _ = _chain(model, x, y, tmp_path)
    assert sorted(e["layer"] for e in clustered.compression_report.wrapped) == ["conv", "head"]
    assert clustered.compression_report.folds == [("conv", "bn")]
    # one tower, called twice, in every model of the chain
    for m in (pruned, clustered, final):
        assert [type(l).__name__ for l in m.layers].count("Sequential") == 1
    assert isinstance(final.get_layer("tower").get_layer("bn"), L.Identity)


def _mobilenetv3():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3), classes=4)


def _efficientnet():
    keras.utils.set_random_seed(0)
    return keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=4)


@pytest.mark.long
@pytest.mark.parametrize("build", [_mobilenetv3, _efficientnet], ids=["MobileNetV3Small", "EfficientNetB0"])
def test_keras_applications_go_through_the_chain_and_every_batchnorm_folds(build, tmp_path):
    """keras.applications' MobileNetV3Small (hard-swish, SE blocks, Rescaling) and EfficientNetB0
    (Normalization input layer, swish, SE blocks): every Conv2D/DepthwiseConv2D kernel pruned and
    clustered, every BatchNormalization folded (the converter finds none to spread the sharing),
    the only layers left dense are named with their reason, and the packed file runs bit-exact."""
    model = build()
    x, y = _data(model, n=8)
    x = x * 255.0  # the applications take pixels in [0, 255]
    bns = [l.name for l in model.layers if isinstance(l, L.BatchNormalization)]
    rng = np.random.default_rng(2)  # BatchNorm statistics that change the outputs when folded wrongly
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    folded = dc_keras.train.fold_batchnorm(model)
    assert sorted(bn for _, bn in folded.compression_report.folds) == sorted(bns)
    np.testing.assert_allclose(_outputs(folded, x)[0], _outputs(model, x)[0], atol=1e-5)  # the documented tolerance
    pruned, clustered, final, raw, packed = _chain(model, x, y, tmp_path, bits=4)
    convs = {l.name for l in model.layers if isinstance(l, (L.Conv2D, L.DepthwiseConv2D, L.Dense))}
    assert {e["layer"] for e in pruned.compression_report.wrapped} == convs
    assert sorted(bn for _, bn in clustered.compression_report.folds) == sorted(bns)
    skipped = _skipped(pruned.compression_report)
    assert set(skipped) == set(bns) | ({"normalization"} if build is _efficientnet else set())
    assert all("left dense by design" in reason for reason in skipped.values())
    assert set(_skipped(clustered.compression_report)) == set(skipped) - set(bns)  # the BNs are folded
    assert len(packed) * 4 < len(raw)
    assert os.listdir(tmp_path)  # the three .keras files were written


def _attention_model():
    """MultiHeadAttention called as users call it: keywords that mix tensors and Python values."""
    keras.utils.set_random_seed(0)
    q, v = keras.Input((6, 8), name="q"), keras.Input((5, 8), name="v")
    mask = keras.Input((6, 5), dtype="bool", name="mask")
    out, scores = L.MultiHeadAttention(2, 4, name="cross")(query=q, value=v, key=v, return_attention_scores=True)
    h = L.MultiHeadAttention(2, 4, name="self")(out, v, attention_mask=mask, use_causal_mask=False)
    h = L.MultiHeadAttention(2, 4, name="causal")(h, h, attention_mask=None, use_causal_mask=True)
    return keras.Model([q, v, mask], [L.Dense(3, name="head")(h), scores])


# [train] is [export] without its last step (the export): on TensorFlow, where make test runs [export],
# it is make test-long's; the JAX and PyTorch passes run [train] alone (Makefile's BACKEND_TESTS).
@pytest.mark.parametrize("to_tflite", [True, pytest.param(False, marks=[pytest.mark.long]
                                                          if keras.backend.backend() == "tensorflow" else [])],
                         ids=["export", "train"])
def test_attention_called_with_keywords_mixing_tensors_and_python_values_goes_through_the_chain(to_tflite, tmp_path):
    """mha(query=q, value=v, return_attention_scores=True) and mha(q, v, attention_mask=m,
    use_causal_mask=False) stopped prune() and cluster() with Keras's 'In a nested call()
    argument, you cannot mix tensors and non-tensors': the wrapper's call collects its keywords in
    one **kwargs argument, which held a tensor and a bool. The plain layer takes them."""
    model = _attention_model()
    rng = np.random.default_rng(0)
    x = [rng.random((8, 6, 8)).astype("float32"), rng.random((8, 5, 8)).astype("float32"), rng.random((8, 6, 5)) > 0.3]
    y = [rng.normal(size=(8, 6, 3)).astype("float32"), rng.random((8, 2, 6, 5)).astype("float32")]
    wrapped = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.5, 1000))  # no mask before step 1000
    assert [a.tobytes() for a in _outputs(wrapped, x)] == [b.tobytes() for b in _outputs(model, x)]
    _, clustered, final, _, _ = _chain(model, x, y, tmp_path, to_tflite=to_tflite)
    assert sorted(e["layer"] for e in clustered.compression_report.wrapped) == ["causal", "cross", "head", "self"]
    # (the scores' symbolic shape is Keras's own (None, 2, 6, 6), query length twice: its MultiHeadAttention)
    assert [o.shape for o in _outputs(final, x)] == [(8, 6, 3), (8, 2, 6, 5)]


def test_a_single_wrapped_attention_layer_takes_mixed_keywords_eagerly():
    """The same call on a layer wrapped alone (a subclassed model's self.mha = dc_keras.prune(...)),
    eagerly; Keras's binding is unchanged afterwards (the signature is restored)."""
    keras.utils.set_random_seed(0)
    mha = L.MultiHeadAttention(2, 4)
    rng = np.random.default_rng(0)
    q, v = rng.random((2, 6, 8)).astype("float32"), rng.random((2, 5, 8)).astype("float32")
    mask = rng.random((2, 6, 5)) > 0.3
    expected = mha(q, v, attention_mask=mask, return_attention_scores=True)
    copy = L.MultiHeadAttention.from_config(mha.get_config())
    copy(q, v)
    copy.set_weights(mha.get_weights())
    for wrapper in (dc_keras.prune(mha, dc_keras.schedules.ConstantSparsity(0.5, 1000)), dc_keras.cluster(copy, bits=8)):
        signature = wrapper._call_signature
        got = wrapper(q, v, attention_mask=mask, return_attention_scores=True)
        assert wrapper._call_signature is signature
        if isinstance(wrapper, dc_keras.train.PruneWrapper):  # nothing pruned yet: the very outputs
            assert [_np(a).tobytes() for a in got] == [_np(b).tobytes() for b in expected]
        else:  # 8 bits for 4 x 32 values per kernel: k-means keeps nearly every value
            for a, b in zip(got, expected):
                np.testing.assert_allclose(_np(a), _np(b), atol=1e-2)


@pytest.mark.parametrize("mode", ["int8", "float8"])
def test_a_model_quantized_by_keras_is_one_clear_error(mode):
    """model.quantize('int8') then prune(): the wrappers failed in fit() with Keras's 'Layer
    PruneWrapper does not have a `_int8_call` method implemented'; after quantize('float8') the
    rebuild failed with 'Layer a weight shape () is not compatible with provided weight shape (8, 16)'.
    One error before any wrapping, naming the layers, the mode and the order that works."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), L.Dense(16, name="a"), L.ReLU(), L.Dense(4, name="b")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: "Layer InputLayer does not have a `quantize` method"
        model.quantize(mode)
    before = [w.tobytes() for w in model.get_weights()]
    calls = {"prune": lambda target: dc_keras.prune(target, dc_keras.schedules.ConstantSparsity(0.5, 0)),
             "cluster": lambda target: dc_keras.cluster(target, bits=3)}
    for what, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{what}\(\) takes float layers; 2 layer\(s\) were quantized by Keras "
                                             rf"\(model.quantize\(...\)\): 'a' \({mode}\), 'b' \({mode}\)\. .*"
                                             rf"dc_keras\.{what}\(\) to the float model \(before model\.quantize\)"):
            call(model)
        with pytest.raises(ValueError, match=rf"^{what}\(\) takes float layers; 1 layer\(s\) .*'b' \({mode}\)"):
            call(model.get_layer("b"))
    assert [w.tobytes() for w in model.get_weights()] == before
    # the float model, compressed first, quantizes as Keras's own afterwards
    float_model = keras.Sequential([keras.Input((8,)), L.Dense(16, name="a"), L.ReLU(), L.Dense(4, name="b")])
    stripped = dc_keras.strip(dc_keras.cluster(float_model, bits=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stripped.quantize(mode)
    assert stripped.get_layer("a").dtype_policy.quantization_mode == mode


@pytest.mark.parametrize("name, size", [("ResNet50V2", 32), ("DenseNet121", 32), ("InceptionV3", 75)])
def test_every_batchnorm_of_an_application_is_folded_or_named_with_its_reason(name, size):
    """Pre-activation blocks (ResNet50V2, DenseNet121: BatchNormalization after pooling or a
    Concatenate, before the conv) and InceptionV3's BatchNormalization(scale=False): each
    BatchNormalization is either folded into the layer before it or named in a note saying why not,
    and the folded model gives the same predictions within the documented tolerance (atol 1e-5:
    folding changes the arithmetic, not the function)."""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=3)
    rng = np.random.default_rng(0)
    bns = [l for l in model.layers if isinstance(l, L.BatchNormalization)]
    for layer in bns:
        n = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0, 0.1, n))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
    folded = dc_keras.train.fold_batchnorm(model)
    report = folded.compression_report
    done = {bn for _, bn in report.folds}
    noted = {bn.name for bn in bns if any(note.startswith(f"BatchNormalization {bn.name!r} ") for note in report.notes)}
    assert done | noted == {bn.name for bn in bns} and not done & noted
    assert all("not folded" in note for note in report.notes)
    assert name == "InceptionV3" or noted  # the pre-activation models have BatchNorms that cannot fold
    x = rng.random((2, size, size, 3)).astype("float32") * 255.0
    np.testing.assert_allclose(_outputs(folded, x)[0], _outputs(model, x)[0], atol=1e-5)
