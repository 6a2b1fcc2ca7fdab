"""``to_tflite(batch_size=N)`` of a Sequential model built with ``build()`` and never called: it has
``inputs`` but no ``input`` (Keras raises AttributeError), and 7741a3c's dict-signature check read
``model.input``, failing every such export (the ``to_tflite`` docstring's own example)."""
import keras
import numpy as np

from dc_keras import export, runtime


def test_static_batch_of_a_sequential_built_but_never_called():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    model.build((None, 5))
    data = export.to_tflite(model, batch_size=2, pack=False)
    it = runtime.Interpreter(model_content=data)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    assert list(d["shape"]) == [2, 5]
    x = np.random.RandomState(1).rand(2, 5).astype(np.float32)
    it.set_tensor(d["index"], x)
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(it.get_output_details()[0]["index"]), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
