"""Foundation: embedded data, model builders, a short training run, float export, CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest

import dc_keras


def test_mnist_shapes_dtypes_labels():
    (x_train, y_train), (x_test, y_test) = dc_keras.datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8
    assert set(np.unique(y_train)) == set(range(10)) and set(np.unique(y_test)) == set(range(10))
    assert x_train.max() == 255 and x_train.min() == 0
    # Fresh copies: a caller mutating them cannot corrupt the next load.
    x_train[0] = 7
    (x2, _), _ = dc_keras.datasets.mnist.load_data()
    assert not np.all(x2[0] == 7)


def test_public_names_import_both_ways():
    from dc_keras.datasets import fashion_mnist, mnist
    from dc_keras.models import lenet_5, lenet_300_100

    assert dc_keras.models.lenet_5 is lenet_5 and dc_keras.models.lenet_300_100 is lenet_300_100
    assert dc_keras.datasets.mnist is mnist and dc_keras.datasets.fashion_mnist is fashion_mnist
    with pytest.raises(AttributeError):
        _ = dc_keras.no_such_name


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_shapes():
    (x_train, y_train), (x_test, y_test) = dc_keras.datasets.fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_test.dtype == np.uint8
    assert set(np.unique(y_test)) == set(range(10))


def test_fashion_mnist_absent_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("DC_KERAS_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        dc_keras.datasets.fashion_mnist.load_data()


def test_normalize():
    x = np.array([[[0, 255]]], dtype=np.uint8)
    out = dc_keras.datasets.normalize(x)
    assert out.shape == (1, 1, 2, 1) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    with pytest.raises(ValueError, match="expected images"):
        dc_keras.datasets.normalize(np.zeros(3))


def test_model_parameter_counts():
    assert dc_keras.models.lenet_300_100().count_params() == 266_610
    m = dc_keras.models.lenet_5()
    assert m.count_params() == 431_080
    assert [l.name for l in m.layers if l.weights] == ["conv1", "conv2", "fc1", "fc2"]


@pytest.fixture(scope="module")
def trained_lenet():
    import keras

    keras.utils.set_random_seed(1)
    (x_train, y_train), (x_test, y_test) = dc_keras.datasets.mnist.load_data()
    x_train, x_test = dc_keras.datasets.normalize(x_train[:6000]), dc_keras.datasets.normalize(x_test[:2000])
    model = dc_keras.models.lenet_300_100()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train[:6000], epochs=2, batch_size=64, verbose=0)
    return model, x_test, y_test[:2000]


def test_short_training_learns(trained_lenet):
    model, x_test, y_test = trained_lenet
    error = np.mean(np.argmax(model.predict(x_test, verbose=0), -1) != y_test)
    assert error < 0.15  # chance is 0.9


def test_float_tflite_matches_keras(trained_lenet):
    from dc_keras.export import to_tflite
    from dc_keras.pipeline import evaluate_tflite
    from dc_keras.runtime import Interpreter

    model, x_test, y_test = trained_lenet
    tfl = to_tflite(model, pack=False)
    it = Interpreter(model_content=tfl)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [64, 28, 28, 1])
    it.allocate_tensors()
    it.set_tensor(inp["index"], x_test[:64])
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(out["index"]), model.predict(x_test[:64], verbose=0), atol=1e-5)
    keras_error = np.mean(np.argmax(model.predict(x_test, verbose=0), -1) != y_test)
    assert abs(evaluate_tflite(tfl, x_test, y_test) - keras_error) <= 2 / len(y_test)


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "dc_keras.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_help():
    r = _cli("--help")
    assert r.returncode in (0, 1)  # absl's --help exits 1 by convention
    assert "dc-keras demo" in r.stdout and "pack" in r.stdout


def test_cli_unknown_command():
    r = _cli("frobnicate")
    assert r.returncode != 0 and "unknown command 'frobnicate'" in (r.stdout + r.stderr)


def test_cli_tiny_demo(tmp_path):
    r = _cli("demo", "--epochs=1", "--train_subset=2000", f"--out_dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "baseline (float .tflite)" in r.stdout and "test error" in r.stdout
    assert "packed .tflite (HuffDecode)" in r.stdout
    float_size = (tmp_path / "lenet_300_100_float.tflite").stat().st_size
    packed_size = (tmp_path / "lenet_300_100_packed.tflite").stat().st_size
    assert float_size > 1_000_000
    assert packed_size * 20 < float_size  # pruned to 8 % and 5-bit shared: far smaller even when barely trained
    for name in ("pruned", "shared"):
        assert (tmp_path / f"lenet_300_100_{name}.tflite").stat().st_size > 1_000_000


def test_random_shift_moves_pixels_within_bounds():
    rng = np.random.default_rng(0)
    x = np.zeros((50, 28, 28, 1), np.float32)
    x[:, 14, 14, 0] = 1.0
    out = dc_keras.datasets.random_shift(x, 2, rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    ys, xs = np.nonzero(out[..., 0].reshape(50, -1).reshape(50, 28, 28))[1:]
    assert np.all(np.abs(ys - 14) <= 2) and np.all(np.abs(xs - 14) <= 2)
    assert len(set(zip(ys.tolist(), xs.tolist()))) > 5  # really random, not a constant offset
    assert np.array_equal(dc_keras.datasets.random_shift(x, 0, rng), x)
    with pytest.raises(ValueError, match="max_shift"):
        dc_keras.datasets.random_shift(x, -1)


def test_shifted_batches_cover_the_data_each_epoch():
    x = np.arange(10 * 4 * 4, dtype=np.float32).reshape(10, 4, 4)
    y = np.arange(10)
    ds = dc_keras.datasets.ShiftedBatches(x, y, batch_size=4, max_shift=0, seed=0)
    assert len(ds) == 3
    labels = np.concatenate([ds[i][1] for i in range(len(ds))])
    assert sorted(labels.tolist()) == list(range(10))
    for i in range(len(ds)):
        xb, yb = ds[i]
        np.testing.assert_array_equal(xb, x[yb])  # max_shift=0 keeps images paired with labels
    with pytest.raises(ValueError, match="differ in length"):
        dc_keras.datasets.ShiftedBatches(x, y[:3])
