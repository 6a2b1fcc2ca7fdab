"""Model-zoo shapes through the public chain (prune -> cluster -> strip -> to_tflite -> runtime):
multi-input / multi-output models and the architectures an audit found mishandled."""

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras import export
from dc_keras.pipeline import evaluate_tflite, predict_tflite


def _two_in_two_out():
    """Inputs and outputs whose names sort against their order (the converter's subgraph lists
    these outputs in the other order; the signature sorts the inputs by name)."""
    z, a = keras.Input((3,), name="zeta"), keras.Input((5,), name="alpha")
    h = keras.layers.Concatenate()([keras.layers.Dense(4)(z), keras.layers.Dense(4)(a) * 2.0])
    return keras.Model([z, a], [keras.layers.Dense(2, name="out_b")(h), keras.layers.Dense(7, name="out_a")(h)])


def test_predict_tflite_of_a_multi_input_multi_output_model():
    """predict_tflite fed only the first input (np.asarray of the list: an error about an
    inhomogeneous array) and returned the first output of the subgraph, which is not the Keras
    model's first output here: silently the wrong head."""
    model = _two_in_two_out()
    rng = np.random.default_rng(0)
    xz, xa = rng.random((11, 3)).astype("float32"), rng.random((11, 5)).astype("float32")
    want = model.predict([xz, xa], verbose=0)
    for batch_size in (None, 4):  # dynamic batch; static batch (padded last batch)
        plain = export.to_tflite(model, pack=False, batch_size=batch_size)
        packed = export.to_tflite(model, batch_size=batch_size)
        got = predict_tflite(packed, [xz, xa], batch_size=5)
        assert [g.shape for g in got] == [(11, 2), (11, 7)]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        for g, h in zip(got, predict_tflite(plain, {"alpha": xa, "zeta": xz})):
            assert g.tobytes() == h.tobytes()  # packed vs unpacked bit-exact; by name = by order
    with pytest.raises(ValueError, match=r"has 2 inputs \('zeta' .*'alpha'.*a dict \{input name: array\}"):
        predict_tflite(packed, xz)
    for g, h in zip(got, predict_tflite(packed, [xa, xz], batch_size=5)):  # each array to the input of its shape
        assert g.tobytes() == h.tobytes()
    with pytest.raises(ValueError, match=r"x\[1\] has shape \(11, 4\), which no input"):
        predict_tflite(packed, [xz, xa[:, :4]])
    with pytest.raises(ValueError, match=r"names \['beta', 'zeta'\]"):
        predict_tflite(packed, {"beta": xa, "zeta": xz})
    with pytest.raises(ValueError, match=r"has 2 outputs.*predict_tflite"):
        evaluate_tflite(packed, [xz, xa], np.zeros(11, int), progress=False)
    single = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    data = export.to_tflite(single)
    rows = [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]  # samples as a nested list still work
    np.testing.assert_allclose(predict_tflite(data, rows), single.predict(np.array(rows, "float32"), verbose=0),
                               rtol=1e-5, atol=1e-6)
    # and in evaluate_tflite, which counted the samples of a list as the length of its first one
    scores = single.predict(np.array(rows * 3, "float32"), verbose=0)
    labels = np.argmax(scores, axis=-1)
    assert evaluate_tflite(data, rows * 3, labels, progress=False) == 0.0
    assert evaluate_tflite(data, rows * 3, 1 - labels, progress=False) == 1.0
    # one score per sample (a sigmoid binary classifier): the argmax was always class 0, so the
    # "error" was the share of positive labels, said as a result
    binary = export.to_tflite(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")]))
    with pytest.raises(ValueError, match=r"one score per sample \(shape \(6, 1\).*Threshold predict_tflite"):
        evaluate_tflite(binary, rows * 3, np.ones(6, int), progress=False)


def test_predict_tflite_of_inputs_of_the_same_shape_needs_their_names():
    """The .tflite keeps no Keras input order: TF's converter lists two unnamed inputs
    ("keras_tensor", "keras_tensor_1") the other way round (a list given in the Keras order was fed swapped: silently wrong outputs).
    A list two inputs could both take is refused; a dict by name is right whatever the order."""
    a, b = keras.Input((8,), name="left"), keras.Input((8,), name="right")  # unnamed: renamed on JAX/torch (the
    # TensorFlow-backend child loads the model from a .keras file)
    shared = keras.layers.Dense(16, activation="relu")
    model = keras.Model([a, b], keras.layers.Dense(5)(keras.layers.Concatenate()([shared(a), shared(b)])))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((4, 8)).astype("float32"), rng.random((4, 8)).astype("float32")
    data = export.to_tflite(model)
    with pytest.raises(ValueError, match=r"take arrays of the same shape.*give x as a dict"):
        predict_tflite(data, [xa, xb])
    got = predict_tflite(data, {"right": xb, "left": xa})
    np.testing.assert_allclose(got, model.predict([xa, xb], verbose=0), rtol=1e-5, atol=1e-6)


def test_cluster_folds_batchnorm_inside_a_functional_model_nested_in_a_sequential():
    """Transfer-learning shape: Sequential([backbone (Functional, Conv+BN), pooling, head]).
    cluster() folds the BatchNormalization into the conv and puts an Identity in its place;
    clone_model(recursive=True) cloned the nested Functional model without dc_keras's call_function,
    so that Identity was called with the BatchNormalization's arguments: TypeError "got an
    unexpected keyword argument 'mask'"."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, name="conv")(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    backbone = keras.Model(inputs, keras.layers.ReLU()(h), name="backbone")
    model = keras.Sequential([keras.Input((8, 8, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4, name="head")])
    rng = np.random.default_rng(0)
    bn = backbone.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6), rng.uniform(0.5, 2, 6)])
    x = rng.random((6, 8, 8, 3)).astype("float32")
    clustered = dc_keras.cluster(model, bits=8)  # as many clusters as weights: the fold alone changes nothing
    assert clustered.compression_report.folds == [("conv", "bn")]
    np.testing.assert_allclose(clustered.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0.02, atol=0.02)
    stripped = dc_keras.strip(clustered)
    conv = stripped.get_layer("backbone").get_layer("conv")
    assert np.unique(keras.ops.convert_to_numpy(conv.kernel)).size <= 256
    plain, packed = export.to_tflite(stripped, pack=False), export.to_tflite(stripped)
    assert predict_tflite(packed, x).tobytes() == predict_tflite(plain, x).tobytes()
    np.testing.assert_allclose(predict_tflite(packed, x), stripped.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_size", [None, pytest.param(2, marks=pytest.mark.long)])  # static: make test-long
def test_int8_calibration_of_two_unnamed_inputs_is_not_swapped(batch_size):
    """representative_data=[xa, xb] went to TF's calibrator as a list, which it maps to the converted
    graph's inputs in that graph's order: for two unnamed inputs the reverse of the Keras order, so
    each input was calibrated on the other's data (here ranges 1 and 1000: outputs all wrong)."""
    a, b = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([a, b], keras.layers.Dense(4)(keras.layers.Concatenate()(
        [keras.layers.Dense(8)(a), keras.layers.Dense(8)(b)])))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((64, 8)).astype("float32"), (1000 * rng.random((64, 8))).astype("float32")
    data = export.to_tflite(model, quantize="int8", representative_data=[xa, xb], batch_size=batch_size)
    from dc_keras.runtime import Interpreter

    names = Interpreter(model_content=data).get_signature_list()["serving_default"]["inputs"]
    keras_names = [t.name for t in model.inputs]  # (on TF: on JAX/torch the child's .keras renames them)
    assert sorted(keras_names) == sorted(names)
    want = model.predict([xa, xb], verbose=0)
    got = predict_tflite(data, dict(zip(keras_names, (xa, xb))))
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_int8_calibration_by_a_generator_of_lists_is_not_swapped():
    """The same with representative_data a generator function yielding [xa, xb] lists (the converter's
    own form): they went to the calibrator as they were, so each input was calibrated on the other's
    data; each list is now given by the model's input names, as the arrays are."""
    a, b = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([a, b], keras.layers.Dense(4)(keras.layers.Concatenate()(
        [keras.layers.Dense(8)(a), keras.layers.Dense(8)(b)])))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((64, 8)).astype("float32"), (1000 * rng.random((64, 8))).astype("float32")
    data = export.to_tflite(model, quantize="int8",
                            representative_data=lambda: ([xa[i:i + 1], xb[i:i + 1]] for i in range(64)))
    want = model.predict([xa, xb], verbose=0)
    got = predict_tflite(data, dict(zip([t.name for t in model.inputs], (xa, xb))))
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.parametrize("named", [False, True], ids=["unnamed-specs", "named-specs"])
def test_int8_calibration_with_an_input_signature(named):
    """input_signature with quantize='int8' on two inputs: the calibrator is fed by the converted
    signature's input names (the specs' own, or the model's), not the model's alone, which named specs
    do not have (the calibrator refused the samples)."""
    a, b = keras.Input((8,)), keras.Input((8,))
    model = keras.Model([a, b], keras.layers.Dense(4)(keras.layers.Concatenate()(
        [keras.layers.Dense(8)(a), keras.layers.Dense(8)(b)])))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((64, 8)).astype("float32"), (1000 * rng.random((64, 8))).astype("float32")
    specs = [keras.InputSpec(shape=(None, 8), name="left" if named else None),
             keras.InputSpec(shape=(None, 8), name="right" if named else None)]
    data = export.to_tflite(model, quantize="int8", representative_data=[xa, xb], input_signature=[specs])
    names = ["left", "right"] if named else [t.name for t in model.inputs]
    want = model.predict([xa, xb], verbose=0)
    got = predict_tflite(data, dict(zip(names, (xa, xb))))
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_predict_tflite_quantizes_float_inputs_of_an_int8_input_model():
    """A full-integer model with int8 inputs (converter_options inference_input_type=tf.int8):
    predict_tflite cast float x with astype(int8) (0.7 -> 0), so outputs were garbage and
    evaluate_tflite reported most samples wrong. Float x is now quantized as the model's own
    QUANTIZE op does: the outputs, dequantized, equal those of the same model with float I/O bit
    for bit (its QUANTIZE / DEQUANTIZE ops at the ends), and pre-quantized int8 x gives the same."""
    import _export_models as em
    import tensorflow as tf

    model, calib = em.keras_model("dense"), em.inputs("dense", 32, seed=5)
    io8 = export.to_tflite(model, quantize="int8", representative_data=calib,
                           converter_options={"inference_input_type": tf.int8, "inference_output_type": tf.int8})
    float_io = export.to_tflite(model, quantize="int8", representative_data=calib)
    it = dc_keras.runtime.Interpreter(model_content=io8)
    (s_in, z_in), (s_out, z_out) = it.get_input_details()[0]["quantization"], it.get_output_details()[0]["quantization"]
    assert it.get_input_details()[0]["dtype"] == np.int8 and s_in > 0
    x = em.inputs("dense", 40, seed=1) * 2  # some beyond the input range: clamped
    got = predict_tflite(io8, x, batch_size=16)
    assert got.dtype == np.int8
    want = predict_tflite(float_io, x, batch_size=16)
    np.testing.assert_array_equal((got.astype(np.float32) - np.float32(z_out)) * np.float32(s_out), want)
    pre = np.clip(np.sign(x / s_in) * np.floor(np.abs(x / s_in) + 0.5) + z_in, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(predict_tflite(io8, pre), got)
    pixels = (np.abs(pre).astype(np.uint8) + 128)  # e.g. uint8 images 0..255: wrapped to negative int8 silently
    with pytest.raises(ValueError, match=r"x for input .* holds \d+\.\.2\d\d, outside int8's -128\.\.127 .*pass float x "
                                         r"\(quantized with the input's scale"):
        predict_tflite(io8, pixels)
    x = x[:20] / 2  # inside the calibrated range
    labels = np.argmax(model.predict(x, verbose=0), axis=-1)
    assert evaluate_tflite(io8, x, labels, progress=False) == evaluate_tflite(float_io, x, labels, progress=False) < 0.1


def test_predict_tflite_refuses_integer_input_values_a_cast_would_change():
    """Token ids given as floats with fractions (2.7 -> 2) or beyond int32, cast silently by
    astype: now one ValueError naming the input; whole-number floats are taken, as before."""
    inputs = keras.Input((4,), dtype="int32", name="ids")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(10, 3)(inputs))))
    data = export.to_tflite(model)
    ids = np.array([[1, 2, 3, 9], [0, 0, 5, 4]])
    want = model.predict(ids, verbose=0)
    np.testing.assert_allclose(predict_tflite(data, ids.astype(np.float64)), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"x for input .*ids.* \(int32\) holds non-integer values \(e.g. 2.7\)"):
        predict_tflite(data, np.array([[1, 2.7, 3, 9]]))
    with pytest.raises(ValueError, match=r"non-integer values \(e.g. inf\)"):
        predict_tflite(data, np.array([[1, 2, 3, np.inf]]))
    with pytest.raises(ValueError, match=r"holds 1\.\.4294967296, outside int32's .*: pass values in that range"):
        predict_tflite(data, np.array([[1, 2, 3, 2**32]]))


def test_predict_tflite_arguments_fail_clearly_and_a_path_is_taken(tmp_path):
    """batch_size 0 / -5 / None / 2.5 failed with Python's "range() arg 3 must not be zero", "need at
    least one array to concatenate" or "'NoneType' object cannot be interpreted as an integer"; x with
    no samples with the concatenate error; a file's path with "string argument without an encoding"
    (the Interpreter takes paths: so does predict_tflite now)."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    data = export.to_tflite(model)
    x = np.random.default_rng(0).random((5, 3)).astype("float32")
    for bad in (0, -5, None, 2.5, True):
        with pytest.raises(ValueError, match=rf"predict_tflite: batch_size must be a whole number of samples >= 1, "
                                             rf"got {bad!r}"):
            predict_tflite(data, x, batch_size=bad)
    with pytest.raises(ValueError, match=r"evaluate_tflite: batch_size must be .* got 0"):
        evaluate_tflite(data, x, np.zeros(5, int), batch_size=0, progress=False)
    with pytest.raises(ValueError, match=r"predict_tflite: x holds no samples \(shape \(0, 3\)\)"):
        predict_tflite(data, x[:0])
    want = predict_tflite(data, x, batch_size=np.int64(2))
    path = tmp_path / "m.packed.tflite"
    path.write_bytes(data)
    for p in (path, str(path)):
        assert predict_tflite(p, x).tobytes() == want.tobytes()
    assert evaluate_tflite(path, x, np.argmax(want, -1), progress=False) == 0.0


def test_evaluate_tflite_takes_labels_as_a_column_or_one_hot():
    """Labels of shape (n, 1) were compared with the (n,) predictions by broadcasting: n * n
    comparisons, an "error" of 3.2 for 5 samples; one-hot labels (categorical_crossentropy's) gave a
    broadcast error, or garbage when n equals the number of classes. Both are read now; other
    shapes are refused by name."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    data = export.to_tflite(model)
    x = np.random.default_rng(1).random((5, 3)).astype("float32")
    labels = np.argmax(model.predict(x, verbose=0), axis=-1)
    wrong = (labels + 1) % 5
    for y, want in ((labels, 0.0), (wrong, 1.0)):
        assert evaluate_tflite(data, x, y, progress=False) == want
        assert evaluate_tflite(data, x, y[:, None], progress=False) == want
        assert evaluate_tflite(data, x, np.eye(5)[y], progress=False) == want  # n == classes here
    assert evaluate_tflite(data, np.concatenate([x, x]), np.eye(5)[np.concatenate([labels, wrong])],
                           progress=False) == 0.5
    with pytest.raises(ValueError, match=r"labels of shape \(5, 3\) for scores of shape \(5, 5\)"):
        evaluate_tflite(data, x, np.zeros((5, 3)), progress=False)
