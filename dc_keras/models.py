"""The paper's MNIST models (Deep Compression, Table 1), as Keras 3 functional models.

Both take float32 images of shape ``(28, 28, 1)`` in [0, 1] (see ``dc_keras.datasets.normalize``)
and end in a softmax over 10 classes.
"""
import keras


def lenet_300_100(num_classes: int = 10, input_shape=(28, 28, 1), name: str = "lenet_300_100") -> keras.Model:
    """LeNet-300-100: fully connected 784-300-100-10 with ReLU (266,610 parameters).

    Example:
        >>> model = dc_keras.models.lenet_300_100()
        >>> model.count_params()
        266610
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(300, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="fc3")(x)
    return keras.Model(inputs, outputs, name=name)


def lenet_5(num_classes: int = 10, input_shape=(28, 28, 1), name: str = "lenet_5") -> keras.Model:
    """Caffe's LeNet-5: conv 20@5x5, maxpool, conv 50@5x5, maxpool, FC 500, FC 10 (431,080 parameters).

    Example:
        >>> model = dc_keras.models.lenet_5()
        >>> model.count_params()
        431080
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(20, 5, name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(50, 5, name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(500, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="fc2")(x)
    return keras.Model(inputs, outputs, name=name)


__all__ = ["lenet_300_100", "lenet_5"]
