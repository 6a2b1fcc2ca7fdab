"""The Deep Compression recipe as a few functions: the chain behind ``dc-keras demo`` and the
paper benchmark (``benchmarks/paper_table1.py``).

    baseline = train_baseline(models.lenet_300_100(), x, y, epochs=20)
    pruned = prune_retrain(baseline, x, y, PAPER_SPARSITY["lenet_300_100"], epochs=10)
    shared = cluster_finetune(pruned, x, y, bits=5, epochs=3)
    packed = dc_keras.export.to_tflite(shared)                  # .tflite with HuffDecode ops
    error = evaluate_tflite(packed, x_test, y_test)             # measured on the file itself

Training uses Adam with cosine decay on randomly shifted (+-2 px) images
(``dc_keras.datasets.ShiftedBatches``; ``max_shift=0`` trains on any array data as it is, e.g.
tabular features) and sparse categorical cross-entropy on integer labels, from the model's class
probabilities or its logits (which one, read from its outputs); every function returns a plain
(stripped) Keras model.

The training steps take their data and required arguments by position (``model, x, y`` and
``epochs``, ``sparsity``) and every setting by name, as ``dc_keras.cluster`` does:
``cluster_finetune(model, x, y, 5)`` (bits, or 5 clusters?) is a TypeError naming
``bits=5`` and ``clusters=5``. ``predict_tflite`` / ``evaluate_tflite`` keep ``batch_size``
positional: it changes how they run, not what they return.
"""
import numbers
import os
import sys
import warnings

import numpy as np

from dc_keras._positional import _model_only_positional

#: The paper's per-layer sparsity (Deep Compression, Table 2/3: 1 - fraction of weights kept).
PAPER_SPARSITY = {
    "lenet_300_100": {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74},
    "lenet_5": {"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "fc2": 0.81},
}


def _verbose(verbose):
    if verbose is None:
        return 1 if sys.stdout.isatty() else 2
    return verbose


def _batches(x, y, batch_size, max_shift, seed):
    """The shuffled training batches: ``dc_keras.datasets.ShiftedBatches`` (random shifts of up to
    ``max_shift`` pixels) for images; ``max_shift=0`` leaves the samples as they are, so any array
    data trains (tabular features, token ids). A shift of data that is not images is refused."""
    from dc_keras.datasets import ShiftedBatches

    shape = np.shape(x)
    if max_shift and len(shape) not in (3, 4):
        raise ValueError(f"x of shape {shape} is not images (N, H, W[, C]): the pipeline's augmentation shifts "
                         f"images by up to max_shift={max_shift} pixels. Pass max_shift=0 to train on other data "
                         "as it is.")
    if max_shift:
        return ShiftedBatches(x, y, batch_size=batch_size, max_shift=max_shift, seed=seed)
    return _unshifted_class()(x, y, batch_size=batch_size, max_shift=0, seed=seed)


_UNSHIFTED = []


def _unshifted_class():
    """``ShiftedBatches`` without the shift (made once, on first use: it imports Keras)."""
    if not _UNSHIFTED:
        from dc_keras.datasets import ShiftedBatches

        class UnshiftedBatches(ShiftedBatches):
            def __getitem__(self, i):
                idx = self.order[i * self.batch_size:(i + 1) * self.batch_size]
                return self.x[idx], self.y[idx]

        _UNSHIFTED.append(UnshiftedBatches)
    return _UNSHIFTED[0]


def _check_single_arrays(x, y, caller):
    """The recipe trains a model with one input and one output on one array ``x`` and one array of
    integer labels ``y``. Several arrays (a list / tuple of arrays or a dict, for a model with two
    inputs or two outputs) crashed in numpy ("inhomogeneous shape") or, when they had one shape,
    were stacked into one array whose first axis counts the inputs: one clear error instead."""
    for name, value in (("x", x), ("y", y)):
        several = isinstance(value, dict) or (
            isinstance(value, (list, tuple)) and any(hasattr(item, "shape") for item in value))
        if several:
            kind = "a dict" if isinstance(value, dict) else f"a {type(value).__name__} of {len(value)} arrays"
            raise ValueError(
                f"{caller}: {name} is {kind}; the pipeline's recipe trains a model with one input and one "
                "output on one array x and one array of integer labels y. For a model with several inputs or "
                "outputs, call dc_keras.prune(model, schedule) / dc_keras.cluster(model, bits=...) and train the "
                "result with your own compile() and fit(x, y, callbacks=[dc_keras.PruningCallback()]) "
                "(README, 'Compressing your own model'); predict_tflite and evaluate_tflite take several inputs.")


def _outputs_logits(model, x, caller):
    """Does ``model`` end in logits rather than class probabilities? Read from its outputs on a
    few samples of ``x`` (probabilities: non-negative, each row summing to 1), whatever layer makes
    them (a softmax activation, a Softmax layer, keras.ops.softmax). The recipe's loss was
    sparse_categorical_crossentropy on probabilities only: a model ending in a plain Dense (logits,
    keras.io's usual head with from_logits=True) trained on logits read as probabilities, to near
    chance (35 % where the softmax model reaches 97 %), silently.

    A model giving one score per sample (a binary classifier, ``Dense(1, "sigmoid")``) is refused
    (ValueError naming ``caller``): under that loss a single score has nothing to learn, and on JAX
    ``fit`` ran without moving a weight, silently (TensorFlow failed in its first step)."""
    import keras

    try:
        out = model(np.asarray(x[:16]), training=False)
    except Exception:  # not a single array input: the recipe's data is one array anyway
        return False
    if isinstance(out, (list, tuple, dict)):
        return False
    out = np.asarray(keras.ops.convert_to_numpy(out), np.float64)
    if out.ndim < 2 or out.shape[-1] < 2:
        raise ValueError(
            f"{caller}: the model gives one score per sample (output shape {out.shape}: a binary classifier with a "
            "sigmoid or a logit output?), and the pipeline's recipe trains class scores with "
            "sparse_categorical_crossentropy, under which one score has nothing to learn (on JAX fit() would run "
            "without changing a weight). End the model in one score per class (Dense(2), softmax or logits), or "
            "use dc_keras.prune / dc_keras.cluster with your own compile(loss='binary_crossentropy') and fit().")
    return not (np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1.0, atol=1e-2))


# Each step draws its batches from its own stream of ``seed``: train_baseline from ``seed`` itself,
# prune_retrain and cluster_finetune from streams 1 and 2 of it (numpy's seed sequence [seed, n]). Until
# session 49 every step drew from ``seed``, so retraining replayed the baseline's batch order and shifts
# epoch for epoch, a correlation between the steps nobody asked for.
_STREAMS = {"train_baseline": None, "prune_retrain": 1, "cluster_finetune": 2}


def _stream_seed(seed, step):
    """The seed of ``step``'s batches (see ``_STREAMS``); ``seed=None`` stays unseeded, and a seed that is
    not an int is passed on as it is (numpy's error names it)."""
    n = _STREAMS[step]
    if n is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        return seed
    return [int(seed), n]


def _fit(model, x, y, epochs, lr, batch_size, max_shift, seed, verbose, callbacks=(), from_logits=False, *, step):
    import keras

    batches = _batches(x, y, batch_size, max_shift, _stream_seed(seed, step))
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, epochs * len(batches)))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if from_logits else \
        "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=["accuracy"])
    # shuffle=False: the batches reshuffle themselves each epoch from ``seed`` (ShiftedBatches); Keras's own
    # shuffle of a PyDataset's batch order draws from Python's unseeded ``random``, so the same seed gave
    # different pruned and shared weights from run to run
    model.fit(batches, epochs=epochs, verbose=_verbose(verbose), callbacks=list(callbacks), shuffle=False)
    return len(batches)


@_model_only_positional("train_baseline", "the model, x, y and epochs", lead=4)
def train_baseline(model, x, y, epochs, *, lr=1e-3, batch_size=128, max_shift=2, seed=0, verbose=None):
    """Trains ``model`` in place (Adam, cosine decay, shift augmentation) and returns it.

    Args:
        seed: fixes the batch order and the shift augmentation (None: a fresh draw each call). The
            initial weights are the model's own: call ``keras.utils.set_random_seed`` before building
            it for a run that repeats.

    Example:
        >>> model = train_baseline(dc_keras.models.lenet_300_100(), x_train, y_train, epochs=20)
    """
    _check_single_arrays(x, y, "train_baseline")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    _fit(model, x, y, epochs, lr, batch_size, max_shift, seed, verbose, from_logits=_outputs_logits(model, x, "train_baseline"),
         step="train_baseline")
    return model


def _check_sparsity(sparsity):
    """prune_retrain's ``sparsity``: one ValueError naming it (and the layer, for a dict) rather
    than the ``final_sparsity`` / ``initial_sparsity`` of the schedule built from it."""
    def bad(value):
        return isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0

    def hint(value):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and 1.0 <= value <= 100.0:
            return f" (a fraction: {value / 100:g} for {value:g} %)" if value > 1.0 else f" ({value!r} would remove every weight)"
        return ""

    if isinstance(sparsity, dict):
        if not sparsity:
            raise ValueError("`sparsity` is an empty dict: give layer name -> sparsity, e.g. {'fc1': 0.9}, or one "
                             "number for every prunable layer.")
        for name, value in sparsity.items():
            if bad(value):
                raise ValueError(f"`sparsity` of layer {getattr(name, '__name__', name)!r} must be a number in "
                                 f"[0, 1){hint(value)}, got {value!r}.")
    elif bad(sparsity):
        raise ValueError(f"`sparsity` must be a number in [0, 1){hint(sparsity)} or a dict layer name -> "
                         f"sparsity, got {sparsity!r}.")


@_model_only_positional("prune_retrain", "the model, x, y, sparsity and epochs", lead=5)
def prune_retrain(model, x, y, sparsity, epochs, *, ramp_fraction=0.6, lr=5e-4, batch_size=128, max_shift=2,
                  seed=0, verbose=None):
    """Iterative magnitude pruning with retraining; returns the stripped (plain Keras) model.

    Sparsity rises along the AGP schedule (``PolynomialDecay``, masks updated every 50 steps) over the
    first ``ramp_fraction`` of the steps; the rest retrains the survivors with the masks fixed.

    Args:
        sparsity: the fraction of weights to remove, in [0, 1) (0.9, not 90): one number for every
            prunable layer, or a dict layer name -> sparsity.
        seed: fixes the batch order and the shift augmentation, drawn from this step's own stream of
            it (not the batches ``train_baseline`` drew with the same seed); the same model, data and
            seed on the same machine give the same pruned weights. None: a fresh draw each call.

    Example:
        >>> pruned = prune_retrain(model, x_train, y_train, {"fc1": 0.92, "fc2": 0.91, "fc3": 0.74}, epochs=10)
    """
    from dc_keras import train

    _check_single_arrays(x, y, "prune_retrain")
    _check_sparsity(sparsity)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 < ramp_fraction <= 1.0:
        raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction}")
    steps = epochs * len(_batches(x, y, batch_size, max_shift, seed))
    # Training runs steps 0 .. steps - 1: the ramp ends at the last of them at the latest (ramp_fraction=1,
    # or a single step, which prunes to the target at once).
    end = min(max(1, int(steps * ramp_fraction)), steps - 1)
    frequency = max(1, min(50, end))

    def schedule(target):
        # The constructor warns on the guess that training runs end_step steps; here it runs `steps`
        # (> end_step), and PruningCallback's fit-time check warns if that falls short.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"PolynomialDecay\(.*\): training for end_step", category=UserWarning)
            return train.schedules.PolynomialDecay(0.0 if end else float(target), float(target), begin_step=0,
                                                   end_step=end, frequency=frequency)

    from_logits = _outputs_logits(model, x, "prune_retrain")
    if isinstance(sparsity, dict):
        wrapped = train.prune(model, layers={name: schedule(s) for name, s in sparsity.items()})
    else:
        wrapped = train.prune(model, schedule(sparsity))
    _fit(wrapped, x, y, epochs, lr, batch_size, max_shift, seed, verbose, callbacks=[train.PruningCallback()],
         from_logits=from_logits, step="prune_retrain")
    return train.strip(wrapped)


@_model_only_positional("cluster_finetune", "the model, x and y", lead=3)
def cluster_finetune(model, x, y, *, bits=None, epochs=3, init="linear", lr=2e-4, batch_size=128, max_shift=2,
                     seed=0, verbose=None, cluster_biases=False, **cluster_kwargs):
    """Trained weight sharing: clusters each layer's non-zero weights into ``2**bits`` shared values,
    fine-tunes the centroids, and returns the stripped model.

    Args:
        bits: int or dict layer name/class -> bits; None uses ``dc_keras.cluster``'s defaults
            (8 for conv layers, ConvLSTM included, 5 for the others, the paper's choice).
        cluster_biases: share the biases too (``dc_keras.cluster``'s option: False, True or bits).
        **cluster_kwargs: passed on to ``dc_keras.cluster`` (e.g. ``min_params``;
            ``preserve_sparsity=False`` clusters the zeros with the other weights, True by default).
        seed: fixes the fine-tuning's batch order and shift augmentation, drawn from this step's own
            stream of it (k-means starts from a deterministic linear init); the same model, data and
            seed on the same machine give the same shared weights. None: a fresh draw each call.

    Example:
        >>> shared = cluster_finetune(pruned, x_train, y_train, bits=5, epochs=3)
    """
    from dc_keras import train

    _check_single_arrays(x, y, "cluster_finetune")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    kwargs = {} if bits is None else {"bits": bits}
    from_logits = _outputs_logits(model, x, "cluster_finetune") if epochs else False
    # pruned zeros stay zeros unless the caller says otherwise (dc_keras.cluster's preserve_sparsity)
    cluster_kwargs.setdefault("preserve_sparsity", True)
    wrapped = train.cluster(model, init=init, cluster_biases=cluster_biases, **kwargs, **cluster_kwargs)
    if epochs:
        _fit(wrapped, x, y, epochs, lr, batch_size, max_shift, seed, verbose, from_logits=from_logits,
             step="cluster_finetune")
    return train.strip(wrapped)


def _signature_order(interpreter, details, kind):
    """``details`` (input or output details) in the order of the model's ``serving_default``
    signature, with each one's signature name: outputs ``output_0, output_1, ...`` are the Keras
    model's outputs in order (the subgraph may list them in another order); inputs keep the
    subgraph's order (``to_tflite``: the Keras model's ``model.inputs`` order). Without a signature
    (a ``.tflite`` from elsewhere): the subgraph's order, named by tensor."""
    names = {}
    try:
        runners = interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in runners else (next(iter(runners)) if len(runners) == 1 else None)
        if key is not None:
            runner = interpreter.get_signature_runner(key)
            found = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
            names = {int(d["index"]): name for name, d in found.items()}
    except (ValueError, RuntimeError, AttributeError):
        names = {}
    if len(names) != len(details) or set(names) != {int(d["index"]) for d in details}:
        names = {}
    named = [(names.get(int(d["index"]), d["name"]), d) for d in details]
    if kind == "outputs" and names:
        def position(item):
            tail = item[0].rsplit("_", 1)[-1]
            return (0, int(tail)) if item[0].startswith("output_") and tail.isdigit() else (1, item[0])

        named.sort(key=position)
    return named


def _fits(a, d):
    want = [int(s) for s in d["shape_signature"]][1:]
    got = list(a.shape[1:])
    return len(want) == len(got) and all(w < 0 or w == g for w, g in zip(want, got))


def _match_by_shape(arrays, inputs, shapes):
    """A list of arrays in the ``.tflite``'s input order, each matched to the one input of its shape
    (ties broken by integer vs float type). The ``.tflite`` does not keep the Keras model's input
    order (TF's converter may list its inputs in another order, the signature sorts them by name), so
    a list whose arrays two inputs could both take is refused rather than guessed."""
    kind = lambda dtype: "i" if np.dtype(dtype).kind in "iub" else "f"  # noqa: E731
    order = [None] * len(inputs)
    for i, a in enumerate(arrays):
        fit = [j for j, (_, d) in enumerate(inputs) if _fits(a, d)]
        if len(fit) > 1:
            fit = [j for j in fit if kind(inputs[j][1]["dtype"]) == kind(a.dtype)] or fit
        if not fit:
            raise ValueError(f"predict_tflite: x[{i}] has shape {a.shape}, which no input of the .tflite takes (first "
                             f"axis: samples); its inputs: {shapes}")
        if len(fit) > 1 or order[fit[0]] is not None:
            names = [inputs[j][0] for j in fit]
            raise ValueError(f"predict_tflite: x is a list, and inputs {names} of the .tflite take arrays of the same "
                             "shape; the .tflite does not keep the Keras model's input order, so give x as a dict "
                             f"{{input name: array}} (its inputs: {shapes}; name the Keras inputs, "
                             "keras.Input(shape, name=...), to choose these names)")
        order[fit[0]] = a
    return order


def _input_arrays(x, inputs):
    """``x`` as one array per ``.tflite`` input (``inputs``: ``[(name, details)]``), checked."""
    n = len(inputs)
    shapes = ", ".join(f"{name!r} {tuple(int(s) for s in d['shape_signature'])}" for name, d in inputs)
    if isinstance(x, dict):
        lookup = {}
        for name, d in inputs:
            for alias in {name, d["name"], d["name"].split(":")[0].removeprefix("serving_default_")}:
                lookup[alias] = d
        unknown = [k for k in x if k not in lookup]
        if unknown or len(x) != n:
            raise ValueError(f"predict_tflite: x names {sorted(x)}, but the .tflite's inputs are {shapes}: give one "
                             "array per input, by these names")
        by_index = {int(lookup[k]["index"]): np.asarray(v) for k, v in x.items()}
        arrays = [by_index.get(int(d["index"])) for _, d in inputs]
        if any(a is None for a in arrays):
            raise ValueError(f"predict_tflite: x names an input twice; the .tflite's inputs are {shapes}")
    elif isinstance(x, (list, tuple)) and n == 1 and not (len(x) == 1 and np.ndim(x[0]) == len(inputs[0][1]["shape"])):
        arrays = [np.asarray(x)]  # samples as a (nested) list
    elif isinstance(x, (list, tuple)):
        if len(x) != n:
            raise ValueError(f"predict_tflite: x holds {len(x)} arrays, but the .tflite has {n} input(s): {shapes}; give "
                             "one array per input, or a dict {input name: array}")
        arrays = _match_by_shape([np.asarray(a) for a in x], inputs, shapes)
    elif n == 1:
        arrays = [np.asarray(x)]
    else:
        raise ValueError(f"predict_tflite: the .tflite has {n} inputs ({shapes}); give x as a dict {{input name: "
                         f"array}} or a list of {n} arrays, not one {type(x).__name__}")
    for a, (name, d) in zip(arrays, inputs):
        if not _fits(a, d):
            raise ValueError(f"predict_tflite: an array of shape {a.shape} for input {name!r} of shape "
                             f"{tuple(int(s) for s in d['shape_signature'])} (first axis: samples); the inputs: {shapes}")
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"predict_tflite: the input arrays hold different numbers of samples: {[len(a) for a in arrays]}")
    return arrays


def predict_tflite(tflite_bytes, x, batch_size=1000, progress=False, interpreter_options=None):
    """Raw outputs of a ``.tflite`` model (packed or not: its bytes, or its file's path) over ``x``,
    in batches of ``batch_size`` samples, through ``dc_keras.runtime.Interpreter`` with the
    ``HuffDecode`` op available. A model with a static
    batch (``to_tflite(batch_size=N)``, recurrent models) runs in batches of N; an input with free
    dimensions past the batch (e.g. token ids of any length, ``keras.Input((None,))``) takes ``x``'s.

    ``x``: an array (one input); for a model with several inputs, a dict ``{input name: array}``
    (the names of the Keras model's inputs, ``keras.Input(shape, name=...)``; e.g.
    ``predict_tflite(data, {"image": x_image, "meta": x_meta})``) or a list of arrays,
    each given to the input of its shape (the ``.tflite`` does not keep the Keras order of its
    inputs, so a list for two inputs of the same shape is refused: use the dict). Returns an array,
    or for a model with several outputs a list of arrays in the Keras model's output order (read from
    the ``.tflite``'s signature: its operators may list them in another order). Float ``x`` for a
    quantized integer input (``converter_options={"inference_input_type": tf.int8}``) is quantized
    with that input's scale and zero point; integer ``x`` is taken as already quantized (values
    outside the input's dtype, e.g. uint8 pixels for an int8 input, and non-whole floats for an
    integer input such as token ids are refused: a cast would change them). Outputs come
    in the model's output type (a quantized int8 output as its int8 values: dequantize them with
    ``get_output_details()[i]["quantization"]``).

    ``interpreter_options``: a dict of keyword arguments for ``dc_keras.runtime.Interpreter``
    (``backend``, ``decode``, ``weights``, ``experimental_op_resolver_type``, ``num_threads``, ...),
    e.g. the fix its errors name for a file the default delegates cannot run.

    Example:
        >>> data = dc_keras.export.to_tflite(model)
        >>> probs = predict_tflite(data, x_test)
        >>> probs = predict_tflite(data, x_test, interpreter_options={"backend": "tensorflow"})
    """
    return _run(*_prepare(tflite_bytes, x, batch_size, "predict_tflite", interpreter_options), int(batch_size),
                progress)


def _prepare(tflite_bytes, x, batch_size, caller, interpreter_options=None):
    """``(interpreter, inputs, outputs, arrays)`` for :func:`_run`: the ``.tflite``'s inputs and
    outputs in the signature's order and ``x`` as one checked array per input. ``tflite_bytes``:
    the model's bytes or a ``.tflite`` file's path; ``batch_size`` and ``interpreter_options``
    (keyword arguments of ``dc_keras.runtime.Interpreter``) are checked first."""
    from dc_keras.runtime import Interpreter

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{caller}: batch_size must be a whole number of samples >= 1, got {batch_size!r}")
    options = {} if interpreter_options is None else interpreter_options
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"{caller}: interpreter_options must be a dict of keyword arguments for "
                        f"dc_keras.runtime.Interpreter (e.g. {{'backend': 'tensorflow'}}), got {interpreter_options!r}")
    given = sorted({"model_path", "model_content"} & set(options))
    if given:
        raise ValueError(f"{caller}: interpreter_options must not hold {', '.join(given)}: the model is "
                         f"{caller}'s first argument (its bytes or its file's path)")
    if isinstance(tflite_bytes, (str, os.PathLike)):
        interpreter = Interpreter(model_path=tflite_bytes, **options)
    else:
        interpreter = Interpreter(model_content=bytes(tflite_bytes), **options)
    inputs = _signature_order(interpreter, interpreter.get_input_details(), "inputs")
    outs = _signature_order(interpreter, interpreter.get_output_details(), "outputs")
    return interpreter, inputs, outs, _input_arrays(x, inputs)


def _as_input(a, d):
    """``a`` in the dtype of input ``d``: float values for a quantized integer input (int8 / uint8 /
    int16 with a scale, e.g. ``converter_options={"inference_input_type": tf.int8}``) are quantized
    as TFLite's QUANTIZE op does (``round(x / scale) + zero_point``, halves away from zero,
    clamped), so ``x`` is the Keras model's input either way; a plain cast would turn 0.7 into 0."""
    dtype = np.dtype(d["dtype"])
    scale, zero_point = d.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and scale and np.asarray(a).dtype.kind == "f":
        v = (np.asarray(a, np.float32) / np.float32(scale)).astype(np.float64)
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)
    if dtype.kind in "iu":
        _check_integer_input(np.asarray(a), d, dtype, scale, zero_point)
    return a.astype(dtype)


def _check_integer_input(a, d, dtype, scale, zero_point):
    """Values an integer input cannot hold as given (outside its dtype's range, e.g. uint8 pixels for
    an int8 input, or non-integers for token ids) are refused: ``astype`` would wrap or truncate them
    silently."""
    name = d.get("name", "")
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a) | (a != np.trunc(a))
        if bad.any():
            raise ValueError(f"predict_tflite: x for input {name!r} ({dtype.name}) holds non-integer values "
                             f"(e.g. {float(a[bad].flat[0])!r}), which a cast would truncate: pass whole "
                             "numbers (e.g. token ids)")
    info = np.iinfo(dtype)
    if a.size and a.dtype.kind in "iuf" and (a.min() < info.min or a.max() > info.max):
        fix = (f"pass float x (quantized with the input's scale {scale:g} and zero point {zero_point}) or x "
               f"already quantized to {dtype.name}" if scale else "pass values in that range")
        raise ValueError(f"predict_tflite: x for input {name!r} holds {a.min()}..{a.max()}, outside "
                         f"{dtype.name}'s {info.min}..{info.max} (a cast would wrap them): {fix}")


def _run(interpreter, inputs, outs, arrays, batch_size, progress):
    """The outputs of :func:`predict_tflite` for :func:`_prepare`'s result."""
    from dc_keras._logs import progress_bar_class

    tqdm = progress_bar_class()
    total = len(arrays[0])
    if total == 0:
        raise ValueError(f"predict_tflite: x holds no samples (shape {arrays[0].shape}); give at least one")
    sig = [d["shape_signature"] for _, d in inputs]
    fixed = int(sig[0][0]) if len(sig[0]) else -1
    if fixed > 0:  # static batch (e.g. recurrent models): run that batch, pad the last one
        batch_size = fixed
    current = None  # the shapes the inputs are allocated for
    outputs = [[] for _ in outs]
    for start in tqdm(range(0, total, batch_size), desc="interpreter", unit="batch", leave=False,
                      disable=None if progress else True):  # None: only on a terminal
        batch = [a[start:start + batch_size] for a in arrays]
        if fixed > 0 and len(batch[0]) < fixed:
            batch = [np.concatenate([b, np.zeros((fixed - len(b), *b.shape[1:]), b.dtype)]) for b in batch]
        shapes = [list(b.shape) for b in batch]
        if current != shapes:
            # the arrays' own shapes: a dimension the model leaves free past the batch (-1 in its
            # shape_signature: a sequence length, an image size) is allocated as 1 until resized
            for (_, d), shape in zip(inputs, shapes):
                interpreter.resize_tensor_input(d["index"], shape)
            interpreter.allocate_tensors()
            current = shapes
        for (_, d), b in zip(inputs, batch):
            interpreter.set_tensor(d["index"], _as_input(b, d))
        interpreter.invoke()
        for got, (_, d) in zip(outputs, outs):
            got.append(interpreter.get_tensor(d["index"]).copy())
    results = [np.concatenate(got)[:total] for got in outputs]
    return results[0] if len(results) == 1 else results


def evaluate_tflite(tflite_bytes, x, y, batch_size=1000, progress=True, interpreter_options=None) -> float:
    """Fraction of ``x`` misclassified by a ``.tflite`` model (packed or not; bytes or a path), run through
    ``dc_keras.runtime.Interpreter`` with the ``HuffDecode`` op available. ``x`` as for
    :func:`predict_tflite`; the model has one output (class scores, two or more per sample). ``y``:
    class indices (shape ``(n,)`` or ``(n, 1)``) or one-hot labels (the scores' shape).
    ``interpreter_options``: as for :func:`predict_tflite`.

    Example:
        >>> error = evaluate_tflite(dc_keras.export.to_tflite(model), x_test, y_test)
    """
    y = np.asarray(y)
    prepared = _prepare(tflite_bytes, x, batch_size, "evaluate_tflite", interpreter_options)
    n = len(prepared[3][0])  # samples, however x was given (one array, a list of samples, a dict)
    if n != len(y) or n == 0:
        raise ValueError(f"need as many labels as inputs (and at least one): {n} vs {len(y)}")
    scores = _run(*prepared, int(batch_size), progress)
    if isinstance(scores, list):
        raise ValueError(f"evaluate_tflite: the .tflite has {len(scores)} outputs; it scores a classifier with one. "
                         "Use predict_tflite (a list of arrays, in the Keras model's output order) and score the "
                         "output you mean")
    if scores.ndim < 2 or scores.shape[-1] == 1:  # argmax of one score is always class 0
        raise ValueError(f"evaluate_tflite: the .tflite gives one score per sample (shape {scores.shape}: a binary "
                         "classifier with a sigmoid or a logit output?), and evaluate_tflite takes the class of the "
                         "highest score, which would always be 0. Threshold predict_tflite's scores yourself "
                         "(> 0.5 for a sigmoid output, > 0 for a logit), or score two classes (softmax over 2 units)")
    pred = np.argmax(scores, axis=-1)
    if y.shape != pred.shape:
        if y.shape == pred.shape + (1,):  # a column of labels, (n, 1)
            y = y[..., 0]
        elif y.shape == scores.shape and scores.shape[-1] > 1:  # one-hot (categorical_crossentropy's labels)
            y = np.argmax(y, axis=-1)
        else:  # compared as they are, (n,) against (n, 1) counted n * n comparisons: an "error" of 51
            raise ValueError(f"evaluate_tflite: labels of shape {y.shape} for scores of shape {scores.shape}: give "
                             f"class indices of shape {pred.shape}, or one-hot labels of shape {scores.shape}")
    return int(np.sum(pred != y)) / n


def layer_stats(model):
    """Per-layer kernel statistics of a Keras model: parameters, non-zeros, density and the
    number of distinct non-zero values (what pruning and weight sharing leave behind). One row per
    trainable weight of two or more dimensions, the kernels of frozen layers (``trainable=False``)
    included; the layers of a nested Sequential/Functional model get rows of their own. A layer
    still wrapped by ``prune`` / ``cluster`` counts the values ``dc_keras.strip`` would give it
    (masked, or the shared values), in its inner layer's weights. A weight ``prune`` / ``cluster``
    compress is named as in their report (``query_kernel``, ``forward_recurrent_kernel``: a
    MultiHeadAttention's four kernels, or a Bidirectional's two directions, were each ``kernel``).

    Example:
        >>> for row in layer_stats(model): print(row["layer"], row["weight"], row["density"], row["distinct"])
    """
    from dc_keras.train import _base

    rows = []
    for layer, frozen in _base.graph_layers(model):
        plain = layer.layer if isinstance(layer, _base.CompressionWrapper) else layer
        labels = ({id(v): name for name, v, _ in _base.compressible_weights(plain)}
                  if _base.is_supported(plain) and plain.built else {})
        values = {}
        if isinstance(layer, _base.CompressionWrapper):
            # A clustered kernel is not trainable (its centroids are): the layer had no rows at all
            inner = layer.layer.weights
            compressed = {id(v) for _, v, _ in layer._targets}
            values = {id(v): a for v, a in zip(inner, layer.stripped_weights())}
            kernels = [w for w in inner if (w.trainable or frozen or id(w) in compressed) and len(w.shape) >= 2]
        else:
            # A frozen layer's variables are not trainable: its kernel counts all the same (what the
            # model stores), not a non-trainable matrix of a trainable layer (e.g. a pruning mask).
            kernels = [w for w in layer.weights if (w.trainable or frozen) and len(w.shape) >= 2]
        for w in kernels:
            a = values[id(w)] if id(w) in values else np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            nz = a[a != 0]
            rows.append({
                "layer": layer.name,
                "weight": labels.get(id(w), w.name),
                "params": int(a.size),
                "nonzero": int(nz.size),
                "density": float(nz.size / a.size) if a.size else 0.0,
                "distinct": int(np.unique(nz).size),
            })
    return rows


__all__ = ["PAPER_SPARSITY", "train_baseline", "prune_retrain", "cluster_finetune", "predict_tflite", "evaluate_tflite", "layer_stats"]
