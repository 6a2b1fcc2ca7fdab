"""Keras model -> ``.tflite`` through TFLite's converter, then (optionally) the packing pass.

Besides converting, ``to_tflite`` handles two things a plain ``TFLiteConverter`` call gets wrong on
real models:

* recurrent layers (LSTM, GRU, SimpleRNN, ...) cannot be lowered to TFLite with a dynamic batch
  dimension (the converter's ``TensorListReserve ... element_shape to be static`` error), so such
  models are exported with a static batch signature (``batch_size``, default 1);
* a kernel that was clustered in Keras (few distinct values) can reach the packer with many more
  distinct values when the converter folds a BatchNormalization into it or per-channel
  quantization rescales it; ``to_tflite`` compares both sides and warns
  (:class:`ClusterSpreadWarning`), naming the tensor, the layer, the counts and the fix.
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
import warnings

import numpy as np

from dc_keras import _exportdir
from dc_keras._fileio import atomic_write, check_writable
from dc_keras.export import _backend
from dc_keras._logs import quiet_conversion
from dc_keras import _flatbuffer as fb
from dc_keras.export._pack import DEFAULT_MIN_BYTES, _tensor_array, packed_tensors
from dc_keras.export._pack import check_options, pack, pack_with_stats, warn_notes

QUANTIZE_MODES = (None, "float16", "int8", "dynamic")

# Converter messages of the dynamic-batch recurrent-layer failure (TF 2.16 - 2.21).
_TENSOR_LIST_ERRORS = ("TensorListReserve", "tensor list ops", "element_shape to be static")
# A Keras kernel counts as clustered when it holds at most this many distinct values and at most a
# quarter as many distinct values as elements; smaller kernels are not checked.
_SHARED_MAX_DISTINCT = 4096
_SHARED_MIN_SIZE = 64
# False in the TensorFlow-backend child of a JAX/torch export (dc_keras/export/_backend.py): its
# caller swept $TMPDIR (_exportdir.sweep) just before starting it, once per export is enough.
_SWEEP_TMPDIR = True


def _check_representative(inputs, model):
    """The arrays of ``representative_data`` against the model's inputs: their number (labels given
    too, as ``(x, y)``, is the usual slip) and each one's shape past the samples axis."""
    specs = getattr(model, "inputs", None)
    if not specs:
        return  # a subclassed model: the converter checks
    if len(inputs) != len(specs):
        one = tuple(specs[0].shape)[1:] if len(specs) == 1 else None
        samples = one is not None and len(inputs) > 2 and all(
            len(np.shape(a)) == len(one) and all(w is None or w == g for w, g in zip(one, np.shape(a)))
            for a in inputs)
        raise ValueError(
            f"representative_data holds {len(inputs)} arrays, but the model takes {len(specs)} input(s): "
            + ("each is one sample of its input (no samples axis): give them as one array, "
               "representative_data=np.stack(samples)" if samples else
               "give its inputs only (no labels: representative_data=x, not (x, y))"
               + (", one array per input in the order of model.inputs" if len(specs) > 1 else "")))
    for a, spec in zip(inputs, specs):
        want, got = tuple(spec.shape)[1:], tuple(np.shape(a))[1:]
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(
                f"representative_data: an array of shape {tuple(np.shape(a))} for the model's input "
                f"{getattr(spec, 'name', '')!r} of shape {tuple(spec.shape)}: give samples of that input "
                "(first axis = samples)")


def _inputs_by_name(data, model):
    """A dict of arrays by input name (as Keras' ``fit`` takes a multi-input model's data) as the list
    in the order of ``model.inputs``; keys that are not the input names are refused, naming them."""
    if not isinstance(data, dict):
        return data
    specs = getattr(model, "inputs", None)
    names = [getattr(spec, "name", None) for spec in specs or []]
    if not specs or None in names or len(set(names)) != len(names):
        raise ValueError("representative_data: a dict needs a model whose inputs have names (a functional or "
                         "Sequential model); give a list of arrays, one per input, in the order the model takes them")
    if set(data) != set(names):
        raise ValueError(f"representative_data: a dict with keys {sorted(map(str, data))}, but the model's inputs are "
                         f"named {names}: give one array per input name (or a list in the order of model.inputs)")
    return [data[name] for name in names]


def _integer_inputs_as_model_takes(data, model):
    """``representative_data`` with each integer array in the integer dtype of the model input it feeds.

    Token ids from numpy (``np.random.randint``, ``integers``, a tokenizer's arrays) are int64, an
    ``Embedding``'s input int32; TF's calibrator refused them only after the whole conversion
    ("Cannot set tensor: Got value of type INT64 but expected type INT32"), raised as a conversion
    failure whose hint was Flex ops. Integer arrays are cast when their values fit (else an error
    giving the range); a float array for an integer input is refused naming the cast. A generator
    function's integer samples are cast as they come (``_cast_samples``). Integer arrays for a float
    input (uint8 images) are cast to its float dtype, as Keras' ``fit`` / ``predict`` take them (the
    calibrator refused them: "Got value of type UINT8 but expected type FLOAT32"). Subclassed models
    (inputs unknown) pass unchanged: a dtype the calibrator refuses is then a ValueError naming the cast
    (``_failure``)."""
    specs = getattr(model, "inputs", None)
    if not specs:
        return data
    if callable(data):
        return _cast_samples(data, specs)
    single = not isinstance(data, (list, tuple))
    arrays = [data] if single else list(data)
    if len(arrays) != len(specs):
        return data  # _check_representative has said so already
    out = []
    for a, spec in zip(arrays, specs):
        want = _input_dtype(spec)
        a = np.asarray(a)
        name = getattr(spec, "name", "")
        if want.kind in "iu" and a.dtype != want:
            if a.dtype.kind in "iu":
                info = np.iinfo(want)
                if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
                    raise ValueError(f"representative_data for the model's {want} input {name!r} holds values from "
                                     f"{a.min()} to {a.max()}, outside the range of {want}: give values that fit")
                a = a.astype(want)
            elif a.dtype.kind in "fc":
                raise ValueError(f"representative_data: a {a.dtype} array for the model's {want} input {name!r} "
                                 f"(token ids of an Embedding?): give integer values, e.g. "
                                 f"representative_data=x.astype({want.name!r})")
        elif want.kind == "f" and a.dtype.kind in "iub":  # uint8 images for a float input: as Keras' fit and
            a = a.astype(want)                              # predict take them (the calibrator refused them)
        if want.kind in "iu" and a.dtype.kind in "iu":
            _check_ids_in_tables(a, spec, model)
        out.append(a)
    return out[0] if single else out


def _input_dtype(spec):
    try:
        return np.dtype(str(getattr(spec, "dtype", "float32")))
    except TypeError:
        return np.dtype("float32")


def _cast_samples(generator, specs):
    """A representative-dataset function whose integer samples (a tf.data pipeline's int64 ids, from
    ``TextVectorization`` or numpy) are cast to the integer dtype of the model input they feed, when
    their values fit; a sample is a list/tuple of one array per input, a dict by input name or, for a
    one-input model, the array itself (given to the calibrator as a list of it: TF refused a bare
    array, "Unsupported value from dataset"). Float or integer samples for a float input are cast to
    its dtype (numpy's float64, uint8 images: TF's calibrator refused them after the conversion, "Got
    value of type FLOAT64 but expected type FLOAT32", under a hint about Flex ops). A sample holding
    more or fewer arrays than the model has inputs (``(x, y)`` with the labels), or an array whose
    size past the samples axis differs from its input's, is an ``_ArgumentError`` naming the sample
    (TF's own errors spoke of dictionaries and ``ResizeInputTensorStrict``). Anything else passes as
    it is (the calibrator says what it expected)."""
    wants = [_input_dtype(spec) for spec in specs]
    by_name = {getattr(spec, "name", None): (spec, want) for spec, want in zip(specs, wants)}

    def check_shape(a, spec, i):
        want_shape, got = tuple(spec.shape), np.shape(a)
        if len(got) == len(want_shape) and any(w is not None and w != g for w, g in zip(want_shape[1:], got[1:])):
            raise _ArgumentError(
                f"representative_data: sample {i} the function yielded has an array of shape {tuple(got)} for the "
                f"model's input {getattr(spec, 'name', '')!r} of shape {want_shape}: yield samples of that input "
                "(first axis = samples), e.g. lambda: ([x[i:i + 1]] for i in range(100))")

    def cast(value, spec, want, i):
        if not hasattr(value, "__array__"):
            return value
        if spec is not None:
            check_shape(value, spec, i)
        if want.kind == "f":  # float64 / integer samples for a float input (uint8 images): as Keras takes them
            a = np.asarray(value)
            return a.astype(want) if a.dtype.kind in "iubf" and a.dtype != want else value
        if want.kind not in "iu":
            return value
        a = np.asarray(value)
        if a.dtype == want or a.dtype.kind not in "iu" or not a.size:
            return value
        info = np.iinfo(want)
        return a.astype(want) if info.min <= int(a.min()) and int(a.max()) <= info.max else value

    def samples():
        for i, sample in enumerate(generator()):
            if isinstance(sample, dict):
                yield {k: cast(v, *by_name.get(k, (None, np.dtype("float32"))), i) for k, v in sample.items()}
            elif isinstance(sample, (list, tuple)) and len(sample) == len(wants):
                yield type(sample)(cast(v, spec, w, i) for v, spec, w in zip(sample, specs, wants))
            elif isinstance(sample, (list, tuple)) and all(hasattr(v, "__array__") for v in sample):
                raise _ArgumentError(
                    f"representative_data: sample {i} the function yielded holds {len(sample)} arrays, but the model "
                    f"takes {len(wants)} input(s): yield its inputs only, one array per input (no labels: e.g. "
                    "lambda: ([x] for x, _ in dataset.take(100)) for a tf.data.Dataset of (inputs, labels))")
            elif len(wants) == 1 and hasattr(sample, "__array__"):  # TF's calibrator takes a list only
                yield [cast(sample, specs[0], wants[0], i)]
            else:
                yield sample

    return samples


def _check_ids_in_tables(ids, spec, model):
    """Ids for an input read directly by an ``Embedding`` lie in its table: the calibrator runs the
    model on them, and an id outside it failed after the conversion as TFLite's "gather index out of
    bounds", with the conversion-failure hint (Flex ops)."""
    import keras

    if not ids.size:
        return
    for layer in getattr(model, "layers", []):
        if not isinstance(layer, keras.layers.Embedding):
            continue
        try:
            feeds = layer.input is spec
        except (AttributeError, ValueError):  # a layer called several times, or never
            continue
        if feeds and (int(ids.min()) < 0 or int(ids.max()) >= layer.input_dim):
            raise ValueError(f"representative_data for the model's input {getattr(spec, 'name', '')!r} holds ids from "
                             f"{ids.min()} to {ids.max()}, but Embedding {layer.name!r} has input_dim="
                             f"{layer.input_dim} (ids 0 to {layer.input_dim - 1}): the calibrator runs the model on "
                             "them; give inputs like the training data")


class _ArgumentError(ValueError):
    """A bad argument found while converting (``converter_options`` entry, batch_size or a recurrent layer
    on a model without inputs, a dynamic batch in input_signature for recurrent layers): never wrapped as a
    conversion failure; ``_convert`` raises it as a plain ValueError, without the converter's log."""


class _ExplainedFailure(RuntimeError):
    """A conversion failure whose cause ``_failure`` names from the model itself (layers quantized by
    Keras, a mixed-precision policy), with the fix: raised without replaying the converter's log
    (pages of MLIR ``loc(...)`` lines that say less); the converter's error stays chained."""


class ClusterSpreadWarning(UserWarning):
    """A kernel clustered in Keras reached the packer with far more distinct values (it packs poorly
    or not at all). The message names the ``.tflite`` tensor, the Keras weight, both counts, the
    likely cause and the fix."""


_REPRESENTATIVE = ("an array of typical inputs (first axis = samples), a list of such arrays (or a dict of them by "
                   "input name) for a multi-input model, or a generator function")


def _representative(data, batch=1, model=None, names=None):
    """A converter representative-dataset generator from an array, a list of arrays or a callable;
    with ``model``, the arrays are checked against its inputs (count, shape) first. With ``names``
    (a multi-input model's input names), each sample is a dict by name: TF's calibrator takes a
    list in the order of the converted graph's inputs, which is not always the Keras model's (two
    unnamed inputs come out swapped: each was calibrated on the other's data). A callable's samples
    that are lists of one array per input are given by name the same way (dicts pass as they are)."""
    if data is None:
        raise ValueError(f"quantize='int8' needs representative_data: {_REPRESENTATIVE}")
    if callable(data):
        data = _finite_samples(data)
        if names is None or len(names) < 2 or len(set(names)) != len(names):
            return data

        def named():
            for sample in data():
                yield dict(zip(names, sample)) if isinstance(sample, (list, tuple)) and len(sample) == len(names) \
                    else sample

        return named
    if inspect.isgenerator(data):  # read once, so the calibrator would get nothing on a second conversion
        raise ValueError(
            f"representative_data must be {_REPRESENTATIVE}; got a generator object, which can be read only once: "
            "pass the function that makes it, e.g. representative_data=lambda: ([x[i:i + 1]] for i in range(100))")
    if not isinstance(data, (list, tuple, np.ndarray)) and not hasattr(data, "__array__"):
        raise ValueError(
            f"representative_data must be {_REPRESENTATIVE}; got {type(data).__name__}. For a tf.data.Dataset of "
            "(inputs, labels) batches, pass a function that yields the inputs: "
            "representative_data=lambda: ([x] for x, _ in dataset.take(100))")
    inputs = data if isinstance(data, (list, tuple)) else [data]
    if model is not None:
        _check_representative(inputs, model)
    # integer inputs (token ids of an Embedding) keep their dtype; the rest is fed as float32
    inputs = [np.asarray(a) for a in inputs]
    inputs = [a if a.dtype.kind in "iu" else a.astype(np.float32) for a in inputs]
    lengths = [len(a) if a.ndim else 0 for a in inputs]
    if len(set(lengths)) > 1:  # zip-like reading would calibrate on the shortest one's count, silently
        raise _ArgumentError(
            f"representative_data's arrays hold different numbers of samples ({', '.join(map(str, lengths))}): "
            "sample i of each input is fed together (first axis = samples); give every input the same count")
    n = min(lengths)
    if n == 0:
        raise ValueError(
            "representative_data is empty (0 samples along its first axis): int8 calibration needs samples of the "
            "model's input, e.g. representative_data=x_train[:100] (100 or more calibrate well)")
    if n < batch:  # the generator below would yield nothing: TF then writes a float model, silently
        raise _ArgumentError(
            f"representative_data holds {n} sample(s), fewer than the .tflite's fixed batch of {batch}: the "
            "calibrator is fed whole batches, so it would get none and the converter would write a float "
            f"model instead of an int8 one: give at least {batch} samples (100 or more calibrate well), or a "
            "smaller batch (batch_size, or the first dimension of input_signature)")

    used = min(n, 200 * batch)  # what gen() below feeds the calibrator
    for k, a in enumerate(inputs):
        rows = np.flatnonzero(~np.isfinite(a[:used]).reshape(used, -1).all(axis=1)) if a.dtype.kind == "f" else []
        if len(rows):
            error = _non_finite(a[:used], f"sample {rows[0]}" + (f" and {len(rows) - 1} more sample(s)" if len(rows) > 1 else ""),
                                f" of input {k}" if len(inputs) > 1 else "")
            raise error

    by_name = names is not None and len(names) == len(inputs) > 1 and len(set(names)) == len(names)

    def gen():
        for i in range(0, min(n, 200 * batch) - batch + 1, batch):
            sample = [a[i : i + batch] for a in inputs]
            yield dict(zip(names, sample)) if by_name else sample

    return gen


_NON_FINITE = ("TensorFlow's calibrator crashes the process (segmentation fault) on an inf, and an input that is "
               "NaN throughout leaves it writing a float model instead of an int8 one: give finite inputs like the "
               "training data")


def _non_finite(a, sample, where):
    """A ValueError (``_ArgumentError``) for a float sample array holding NaN or inf, else None."""
    if a.dtype.kind not in "fc" or not a.size or np.isfinite(a).all():
        return None
    bad = ~np.isfinite(a)
    kinds = " and ".join(k for k, m in (("NaN", np.isnan(a)), ("inf", np.isinf(a))) if m.any())
    return _ArgumentError(f"representative_data holds {kinds} ({int(bad.sum())} value(s)) in {sample}{where}: "
                          f"{_NON_FINITE} (drop such samples, e.g. x[np.isfinite(x).all(axis=tuple(range(1, x.ndim)))])")


def _finite_samples(generator):
    """``generator`` (a representative-dataset function) whose float samples are checked as they come:
    a NaN or inf fails with ``_non_finite``'s error instead of crashing or silently un-quantizing."""

    def samples():
        for i, sample in enumerate(generator()):
            parts = sample.items() if isinstance(sample, dict) else \
                enumerate(sample) if isinstance(sample, (list, tuple)) else [(None, sample)]
            for key, value in parts:
                if hasattr(value, "__array__"):  # numpy arrays, tf tensors
                    where = "" if key is None else f" (its part {key!r})"
                    error = _non_finite(np.asarray(value), f"sample {i} the function yielded", where)
                    if error is not None:
                        raise error
            yield sample

    return samples


def _counted(generator, count):
    """``generator`` (a representative-dataset function), counting in ``count[0]`` the samples it
    gives: one that yields none leaves TF's converter writing a float model without a word."""

    def samples():
        for sample in generator():
            count[0] += 1
            yield sample

    return samples


def _check_model(model):
    """A Keras model (or layer) to convert; a path, bytes or None is a user's mix-up, named with its fix."""
    import keras

    from dc_keras.train import _base

    if isinstance(model, keras.layers.Layer):
        return
    if isinstance(model, (str, os.PathLike)):
        fix = f"load it first: to_tflite(keras.saving.load_model({str(model)!r}))"
    elif isinstance(model, (bytes, bytearray, memoryview)):
        fix = "for a .tflite you already have, use dc_keras.export.pack(data) (or `dc-keras pack IN OUT`)"
    else:
        fix = "pass the (stripped) model itself"
    raise _base.not_keras3_error("to_tflite", "a Keras model", model, fix)


def _check_built(model):
    """An unbuilt model (no input shape yet: no weights, nothing to trace) is named with its fix, instead
    of the converter's error."""
    if not getattr(model, "built", True):
        raise ValueError(
            f"to_tflite: model {getattr(model, 'name', '')!r} is not built (its input shape is unknown, so it has "
            "no weights to convert). Build it first: start it with keras.Input(shape), call it once on a batch "
            "of data (model(x[:1])), or call model.build((None, *input_shape))")


# What a quantize= value that is no mode asked for, and how to get it (the modes are exact strings).
_INT16X8 = ("16-bit activations with int8 weights (int16x8) are no quantize mode: give quantize='int8', "
            "representative_data=x and converter_options={'target_spec.supported_ops': "
            "[tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]} (docs/quantization.md); "
            "pack stores its int64 biases too")
_INT4 = ("TFLite's converter writes no int4 weights: convert the float model (quantize=None, pack=False), run "
         "Google's ai-edge-quantizer on it (recipe weight_only_wi4_afp32 or dynamic_wi4_afp32: docs/quantization.md, "
         "'Running the LiteRT quantizer yourself') and pack its file with dc_keras.export.pack / `dc-keras pack`")
_QUANTIZE_HINTS = {"int16x8": _INT16X8, "int16": _INT16X8, "16x8": _INT16X8, "a16w8": _INT16X8,
                   "int4": _INT4, "w4": _INT4, "uint4": _INT4,
                   "fp16": "give quantize='float16'", "f16": "give quantize='float16'", "half": "give quantize='float16'",
                   "float32": "give quantize=None (float32 is the default)", "none": "give quantize=None (not a string)",
                   "uint8": "give quantize='int8' (TFLite's full-integer quantization is int8)",
                   "dynamic_range": "give quantize='dynamic'", "dynamic-range": "give quantize='dynamic'",
                   "drq": "give quantize='dynamic'", "full_integer": "give quantize='int8'"}


def _quantize_error(quantize):
    text = f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}"
    if isinstance(quantize, (int, np.integer)) and not isinstance(quantize, bool) and int(quantize) in (8, 16):
        text += f": give quantize={'int8' if int(quantize) == 8 else 'float16'!r} (a string)"
    elif isinstance(quantize, str):
        key = quantize.strip().lower().replace(" ", "")
        hint = _QUANTIZE_HINTS.get(key)
        if hint is None and key in QUANTIZE_MODES:
            hint = f"give quantize={key!r} (the modes are lowercase)"
        if hint is None:
            close = difflib.get_close_matches(key, [m for m in QUANTIZE_MODES if m], n=1)
            hint = f"did you mean quantize={close[0]!r}?" if close else None
        if hint:
            text += f": {hint}"
    return ValueError(text)


def _check_arguments(quantize, batch_size, converter_options, configure):
    if not isinstance(quantize, (str, type(None))) or quantize not in QUANTIZE_MODES:
        raise _quantize_error(quantize)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic batch) or a positive int, got {batch_size!r}")
    if converter_options is not None:
        if not isinstance(converter_options, dict) or not all(isinstance(k, str) for k in converter_options):
            raise ValueError("converter_options must be a dict of TFLiteConverter attribute names "
                             f"(e.g. 'allow_custom_ops', 'target_spec.supported_ops') to values, got "
                             f"{converter_options!r}")
    if configure is not None and not callable(configure):
        raise ValueError(f"configure must be a callable taking the TFLiteConverter, got {configure!r}")


# pack's arguments to_tflite takes itself (so not in pack_options: one spelling each)
_OWN_PACK_ARGUMENTS = ("min_bytes", "positive_zeros")


def _pack_options(pack_options, packs, min_bytes, positive_zeros):
    """``pack_options`` checked before the conversion, names and values (with ``min_bytes`` and
    ``positive_zeros``, the pack arguments to_tflite takes itself): a new dict (the caller's is not
    modified), its ``layouts`` a tuple (a generator is read once) and numpy scalars Python ones, as
    the TensorFlow-backend child gets them (JSON)."""
    if pack_options is None:
        pack_options = {}
    if not isinstance(pack_options, dict) or not all(isinstance(k, str) for k in pack_options):
        raise ValueError("to_tflite: pack_options must be a dict of dc_keras.export.pack argument names to values "
                         f"(e.g. {{'strip_strings': True}}), got {pack_options!r}")
    ignored = [f"{name}={value!r}" for name, value, default in (("min_bytes", min_bytes, DEFAULT_MIN_BYTES),
                                                                 ("positive_zeros", positive_zeros, False))
               if not packs and value != default]
    if ignored:  # as per_channel / representative_data a mode does not use: a warning
        warnings.warn(f"to_tflite: {' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored: "
                      f"{'it is an argument' if len(ignored) == 1 else 'they are arguments'} of the packing pass, "
                      "and this export has pack=False. Fix: pack=True, or leave "
                      f"{' and '.join(n.split('=')[0] for n in ignored)} out", UserWarning, stacklevel=3)
    if pack_options and not packs:
        raise ValueError(f"to_tflite: pack_options={pack_options!r} is given with pack=False, which does not pack: "
                         "pass pack=True (the default), or drop pack_options")
    valid = [name for name in inspect.signature(pack).parameters if name != "tflite_bytes"]
    for name in _OWN_PACK_ARGUMENTS:
        if name in pack_options:
            raise ValueError(f"to_tflite: {name} is given in pack_options ({{{name!r}: {pack_options[name]!r}}}), "
                             f"but it is to_tflite's own argument: give it once, as to_tflite(..., "
                             f"{name}={pack_options[name]!r}), not in pack_options")
    unknown = sorted(set(pack_options) - set(valid))
    if unknown:
        raise ValueError(f"to_tflite: unknown pack_options key(s) {unknown}: the valid keys are "
                         f"{[n for n in valid if n not in _OWN_PACK_ARGUMENTS]} (dc_keras.export.pack's arguments; "
                         f"{' and '.join(_OWN_PACK_ARGUMENTS)} are to_tflite's own)")
    options = dict(pack_options)
    layouts = options.get("layouts")
    if layouts is not None and not isinstance(layouts, (str, bytes)):
        with contextlib.suppress(TypeError):  # not iterable: check_options names it
            options["layouts"] = tuple(layouts)
    if packs:
        try:
            check_options(min_bytes=min_bytes, positive_zeros=positive_zeros, **options)
        except ValueError as exc:
            raise ValueError(f"to_tflite: {exc}") from None
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in options.items()}


_SPEC = "__dc_keras_input_spec__"  # a leaf of input_signature's JSON form: {_SPEC: [shape, dtype, name]}


def _signature_json(input_signature, batch_size, model=None):
    """``input_signature`` (a structure of ``keras.InputSpec`` / ``tf.TensorSpec`` / anything with
    ``shape`` and ``dtype``, as ``keras.Model.export`` takes it) as JSON-able data (the TensorFlow-backend
    child gets it so), checked before any slow work: one ValueError naming the bad entry and the fix."""
    import keras

    if input_signature is None:
        return None
    if batch_size is not None:
        raise ValueError("to_tflite: give either batch_size or input_signature, not both: put the batch as the "
                         "first dimension of input_signature's shapes (e.g. keras.InputSpec(shape=(8, 28, 28)))")
    form = ("a keras.InputSpec or tf.TensorSpec per model input, in the structure keras.Model.export takes "
            "(e.g. [keras.InputSpec(shape=(None, 64), dtype='int32')] for a model of one input)")

    def leaf(spec):
        shape, dtype = getattr(spec, "shape", None), getattr(spec, "dtype", None)
        if shape is None and dtype is None:
            raise ValueError(f"to_tflite: input_signature entry {spec!r} has no shape and dtype: give {form}")
        try:
            dims = [None if d is None else int(d) for d in (shape if shape is not None else ())]
        except (TypeError, ValueError):
            dims = None
        if dims is None or not dims or any(d is not None and d < 1 for d in dims):
            raise ValueError(f"to_tflite: input_signature entry {spec!r} has shape {shape!r}: give a shape with a "
                             "first (batch) dimension, None or positive ints (None = any size)")
        try:
            dtype = keras.backend.standardize_dtype(dtype if dtype is not None else "float32")
        except (TypeError, ValueError, AttributeError):
            raise ValueError(f"to_tflite: input_signature entry {spec!r} has dtype {dtype!r}, which is not a "
                             "dtype: give e.g. 'float32' or 'int32'") from None
        name = getattr(spec, "name", None)
        return {_SPEC: [dims, dtype, name if isinstance(name, str) and name else None]}

    def walk(x):
        if isinstance(x, dict):
            if not x or not all(isinstance(k, str) for k in x):
                raise ValueError(f"to_tflite: input_signature has a dict {x!r}: its keys must be the model's input "
                                 f"names (strings), its values specs; give {form}")
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            if not x:
                raise ValueError(f"to_tflite: input_signature has an empty list: give {form}")
            return [walk(v) for v in x]
        return leaf(x)

    if not isinstance(input_signature, (list, tuple)):
        raise ValueError(f"to_tflite: input_signature must be a list with an entry per argument of the model's call, "
                         f"got {type(input_signature).__name__}: give [{input_signature!r}] for a model of one input")
    signature = walk(input_signature)
    inputs = getattr(model, "inputs", None) or []
    if inputs and (len(signature) != 1 or len(_signature_leaves(signature)) != len(inputs)):
        raise ValueError(
            f"to_tflite: input_signature has {len(_signature_leaves(signature))} spec(s) in {len(signature)} "
            f"argument(s), but model {getattr(model, 'name', '')!r} takes one argument holding {len(inputs)} "
            "input(s): give [spec] for one input, [[spec_a, spec_b, ...]] (or [{name: spec, ...}]) for several, in "
            "model.inputs order")
    return signature


def _signature_specs(signature, names=()):
    """The ``tf.TensorSpec`` structure of ``_signature_json``'s form; specs without a name take the
    model's input names (``names``) in order when there are as many."""
    import tensorflow as tf

    given = iter(_signature_names(signature, names))  # in the order _signature_leaves walks

    def build(x):
        if isinstance(x, dict) and set(x) == {_SPEC}:
            shape, dtype, _ = x[_SPEC]
            return tf.TensorSpec(shape, dtype, name=next(given))
        if isinstance(x, dict):
            return {k: build(v) for k, v in x.items()}
        return [build(v) for v in x]

    return build(signature)


def _keyed_leaves(signature, key=None):
    """``([shape, dtype, name], key)`` of each spec of ``_signature_json``'s form, in order; ``key``:
    the dict key the spec is the value of (None for one in a list)."""
    if isinstance(signature, dict) and set(signature) == {_SPEC}:
        return [(signature[_SPEC], key)]
    if isinstance(signature, dict):
        return [leaf for k, v in signature.items() for leaf in _keyed_leaves(v, k)]
    return [leaf for v in signature for leaf in _keyed_leaves(v)]


def _signature_leaves(signature):
    """``[shape, dtype, name]`` of each spec of ``_signature_json``'s form, in order."""
    return [leaf for leaf, _ in _keyed_leaves(signature)]


def _signature_names(signature, names=()):
    """The input names of the converted signature: the specs' own (a dict's keys for its unnamed
    specs), or, when none has one, the model's input names (``names``) if there are as many. Not
    model.inputs' names for a dict: they come by sorted key (``padding_mask``, ``token_ids``), and
    the dict's own order gave the name token_ids to the padding mask (KerasHub's LlamaCausalLM and
    GemmaCausalLM converted to a .tflite that answered wrongly)."""
    given = [leaf[2] or key for leaf, key in _keyed_leaves(signature)]  # an unnamed dict value: its key
    return list(names) if len(names) == len(given) and all(names) and not any(given) else given


def _first_dim(signature):
    """The first leaf's batch dimension (int or None): the calibration batch for quantize='int8'."""
    while not (isinstance(signature, dict) and _SPEC in signature):
        signature = next(iter(signature.values())) if isinstance(signature, dict) else signature[0]
    return signature[_SPEC][0][0]


# Variable dtypes TFLite's ASSIGN_VARIABLE takes (the tfl.assign_variable op's operand types).
_TFLITE_VARIABLE_DTYPES = {"float32", "float64", "bool", "uint8", "int8", "int32", "int64", "complex64", "complex128"}


def _export_kwargs(model):
    """Extra ``model.export`` arguments. On JAX, Keras's SavedModel endpoint writes every
    non-trainable variable back after the call, the uint32 state of a ``keras.random.SeedGenerator``
    (Dropout, LSTM/GRU dropout) too, and TFLite's converter refused that assignment ("'tfl.assign_variable'
    op operand #1 must be tensor of 32-bit float ... but got 'tensor<2xui32>'"): any such model failed
    on the in-process jax2tf route (converter_options= / configure=). Such a model is exported with
    ``is_static=True``, the function jax2tf-converted as it is (its weights become constants, as the
    converter makes them anyway; inference assigns nothing)."""
    import keras

    if keras.backend.backend() != "jax":
        return {}
    dtypes = {str(getattr(v, "dtype", "")) for v in getattr(model, "non_trainable_variables", [])}
    return {"is_static": True} if dtypes - _TFLITE_VARIABLE_DTYPES else {}


def _convert_signature(model, apply, signature):
    import tensorflow as tf

    names = [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]
    with _exportdir.directory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        try:
            model.export(saved, format="tf_saved_model", input_signature=_signature_specs(signature, names),
                         verbose=False, **_export_kwargs(model))
        except Exception as exc:  # the model's call refused the specs (shape, dtype, structure)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise _ArgumentError(f"to_tflite: the model cannot be called with the input_signature given ({first}): "
                                 "give the shapes and dtypes its inputs take, one spec per input") from exc
        return apply(tf.lite.TFLiteConverter.from_saved_model(saved), _first_dim(signature)).convert()


def _option_target(conv, key):
    """``converter_options`` key ``"a.b"`` -> ``(conv.a, "b")``; an unknown name is an error naming the
    closest attribute and the public ones (a private one, e.g. ``_experimental_lower_tensor_list_ops``,
    is accepted when named exactly, and suggested, but not listed)."""
    target, parts = conv, key.split(".")
    for i, part in enumerate(parts):
        if not part or not hasattr(target, part):
            settable = [a for a in dir(target) if not a.startswith("__") and not callable(getattr(target, a))]
            public = sorted(a for a in settable if not a.startswith("_"))
            close = ([f"_{part}"] if f"_{part}" in settable else  # a private flag, named without its _
                     difflib.get_close_matches(part, public, n=1) or difflib.get_close_matches(part, settable, n=1))
            where = "the converter" if i == 0 else f"converter.{'.'.join(parts[:i])}"
            hint = f" (did you mean {'.'.join([*parts[:i], close[0]])!r}?)" if close else ""
            raise _ArgumentError(f"to_tflite: converter_options key {key!r}: the converter has no attribute "
                                 f"{'.'.join(parts[:i + 1])!r}{hint}; {where}'s public attributes: {', '.join(public)}")
        if i == len(parts) - 1:
            return target, part
        target = getattr(target, part)


def _set_option(conv, key, value):
    """``converter_options`` entry ``"a.b" = v`` -> ``conv.a.b = v`` (``_option_target``'s errors)."""
    target, name = _option_target(conv, key)
    if name in _IO_TYPES and not hasattr(value, "as_numpy_dtype"):  # "int8" / np.int8 as tf.int8 is taken
        import tensorflow as tf

        try:
            value = tf.as_dtype(value)
        except TypeError:  # not a dtype at all: the converter's refusal, explained by _failure
            pass
    setattr(target, name, value)


def _check_option_names(converter_options):
    """Every ``converter_options`` key names an attribute of a TFLite converter: checked on an empty
    ``TFLiteConverterV2`` before the export, so that a misspelt key fails in a moment, not after the
    model's SavedModel export. That class has every attribute of the saved-model converter the export
    uses (and one more, ``experimental_lower_to_saved_model``, which the conversion itself refuses)."""
    if not converter_options:
        return
    import tensorflow as tf

    probe = tf.lite.TFLiteConverter([], None)
    for key in converter_options:
        _option_target(probe, key)


def _configurer(quantize, representative_data, converter_options, configure, per_channel=True,
                legacy_dynamic=False, input_names=None):
    import tensorflow as tf

    def apply(conv, batch):
        if quantize in ("int8", "dynamic") and not per_channel:
            from dc_keras import _compat

            _compat.converter_per_tensor(conv)
        if quantize == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if legacy_dynamic:  # per-tensor DEPTHWISE_CONV_2D hybrids: see _misread_depthwise
                conv.experimental_new_dynamic_range_quantizer = False
        elif quantize == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = _representative(representative_data, batch or 1, names=input_names)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        for key, value in (converter_options or {}).items():
            _set_option(conv, key, value)
        if configure is not None:
            configure(conv)
        return conv

    return apply


def _misread_depthwise(content):
    """Filters of DEPTHWISE_CONV_2D operators that TFLite's hybrid kernel misreads: float input,
    int8 filter with ONE scale for several output channels.

    The hybrid depthwise kernel (``EvalHybridPerChannel`` in TFLite's depthwise_conv.cc, LiteRT and
    TF 2.21 alike, reference and optimized) always reads ``scale[c]`` for every output channel ``c``;
    its Prepare check ``len(scale) == filter.shape[quantized_dimension]`` passes for a per-tensor
    scale only because a depthwise filter is ``[1, H, W, C]`` and ``quantized_dimension`` is 0. So
    channels 1..C-1 take whatever follows the one scale in memory: garbage multipliers, outputs of
    1e38, inf, NaN. TF's MLIR dynamic-range quantizer (the converter's default) writes exactly that
    with ``_experimental_disable_per_channel``; its legacy quantizer
    (``experimental_new_dynamic_range_quantizer=False``) keeps the int8 per-tensor filter and puts a
    DEQUANTIZE in front of the float depthwise kernel instead (same int8 codes, so the sharing stays),
    which ``to_tflite`` selects for per-tensor dynamic range of a model with depthwise layers.
    """
    m = fb.read_model(content)
    found = []
    for sg in m.subgraphs:
        tensors = sg.tensors or []
        for op in sg.operators or []:
            inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            if fb.opcode_name(m, op) != "DEPTHWISE_CONV_2D" or len(inputs) < 2 or min(inputs[:2]) < 0:
                continue
            x, w = tensors[inputs[0]], tensors[inputs[1]]
            scales = w.quantization.scale if w.quantization is not None else None
            shape = list(w.shape) if w.shape is not None else []
            if (x.type == fb.schema.TensorType.FLOAT32 and w.type == fb.schema.TensorType.INT8
                    and scales is not None and len(scales) == 1 and shape and shape[-1] > 1):
                found.append(fb.tensor_name(w))
    return found


def _check_hybrid_depthwise(content):
    bad = _misread_depthwise(content)
    if bad:
        raise RuntimeError(
            f"to_tflite: the converter wrote {len(bad)} dynamic-range DEPTHWISE_CONV_2D filter(s) with one "
            f"int8 scale for all channels ({', '.join(repr(b) for b in bad[:3])}); TFLite's hybrid depthwise "
            "kernel reads one scale per channel, so this file would output garbage or NaN. Fix: do not "
            "override experimental_new_dynamic_range_quantizer (dc_keras sets it to False for per-tensor "
            "dynamic range), or export with per_channel=True.")


# Inputs that hold an operator's weights: what dynamic-range quantization turns into int8.
_WEIGHT_INPUTS = {"FULLY_CONNECTED": (1,), "CONV_2D": (1,), "DEPTHWISE_CONV_2D": (1,), "TRANSPOSE_CONV": (1,),
                  "CONV_3D": (1,), "CONV_3D_TRANSPOSE": (1,), "BATCH_MATMUL": (0, 1), "GATHER": (0,),
                  "EMBEDDING_LOOKUP": (1,)}
_DYNAMIC_MIN_ELEMENTS = 1024  # TFLite's dynamic-range quantizer leaves smaller weights float (measured: 1023 / 1024)
_FLOAT_LISTED = 6


def _float_weights_message(content):
    """The warning for weights a ``quantize="dynamic"`` file still holds as float32, or None.

    TFLite's dynamic-range quantizer keeps a weight of fewer than 1024 elements float, and a weight
    of an operator with no hybrid int8 kernel (CONV_3D): the file is correct, but a model of small
    layers comes back as the float model, which the user asking for int8 weights did not learn."""
    m = fb.read_model(content)
    small, unsupported, total, seen = [], [], 0, set()
    for si, sg in enumerate(m.subgraphs):
        tensors = sg.tensors or []
        for op in sg.operators or []:
            inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            opname = fb.opcode_name(m, op)
            for pos in _WEIGHT_INPUTS.get(opname, ()):
                if pos >= len(inputs) or inputs[pos] < 0 or (si, inputs[pos]) in seen:
                    continue
                t = tensors[inputs[pos]]
                shape = [int(d) for d in (t.shape if t.shape is not None else [])]
                if len(shape) < 2 or not fb.buffer_size(m, t.buffer):
                    continue
                seen.add((si, inputs[pos]))
                total += 1
                if t.type != fb.schema.TensorType.FLOAT32:
                    continue
                n = int(np.prod(shape))
                entry = f"{fb.tensor_name(t)!r} {shape} ({n} elements{'' if n < _DYNAMIC_MIN_ELEMENTS else ', ' + opname})"
                (small if n < _DYNAMIC_MIN_ELEMENTS else unsupported).append(entry)
    left = len(small) + len(unsupported)
    if not left:
        return None
    head = (f"to_tflite: quantize='dynamic' left all {total} weight tensor(s) float32, so the .tflite is the float "
            "model" if left == total else
            f"to_tflite: quantize='dynamic' left {left} of {total} weight tensors float32 (the rest are int8)")
    parts = []
    if small:
        more = f" and {len(small) - _FLOAT_LISTED} more" if len(small) > _FLOAT_LISTED else ""
        parts.append(f"TFLite's dynamic-range quantizer keeps weights of fewer than {_DYNAMIC_MIN_ELEMENTS} elements "
                     f"float: {', '.join(small[:_FLOAT_LISTED])}{more}")
    if unsupported:
        more = f" and {len(unsupported) - _FLOAT_LISTED} more" if len(unsupported) > _FLOAT_LISTED else ""
        parts.append(f"it has no int8 weights for these operators: {', '.join(unsupported[:_FLOAT_LISTED])}{more}")
    return (f"{head}: {'; '.join(parts)}. The file is correct; those layers compute in float from float weights. "
            "Fix: quantize='float16' stores every weight as float16; quantize='int8' with representative_data "
            "quantizes every weight of the operators TFLite has int8 kernels for; or keep them (dc_keras.export.inspect "
            "lists each tensor's type and packed size).")


def _has_depthwise(model):
    import keras

    kinds = tuple(getattr(keras.layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
                                                    "SeparableConv2D") if hasattr(keras.layers, n))
    return any(isinstance(layer, kinds) for layer in _leaf_layers(model))


def _scales(model, quantize, per_channel):
    """``(per_channel, legacy_dynamic)``: per tensor by default for a clustered model (keeps the
    sharing); the legacy dynamic-range quantizer for per-tensor dynamic range with depthwise layers."""
    if per_channel is None:
        per_channel = not _is_clustered(model)
    return per_channel, quantize == "dynamic" and not per_channel and _has_depthwise(model)


def _convert_checked(model, batch_size, quantize, per_channel, configurer, signature=None):
    """Converts; a per-tensor dynamic-range file with a misread depthwise filter (a depthwise op no
    Keras layer type announced, e.g. a lowered grouped convolution) is converted again with the
    legacy quantizer, and refused if it still has one."""
    per_channel, legacy = _scales(model, quantize, per_channel)
    data = bytes(_convert(model, configurer(per_channel, legacy), batch_size, signature))
    if quantize == "dynamic" and not legacy and _misread_depthwise(data):
        data = bytes(_convert(model, configurer(per_channel, True), batch_size, signature))
    if quantize == "dynamic":
        _check_hybrid_depthwise(data)
    return data


def _is_clustered(model, max_values=256):
    """True if every weight matrix / kernel of ``model`` holds at most ``max_values`` distinct values."""
    kernels = [np.asarray(w) for w in model.get_weights() if np.ndim(w) >= 2]
    return bool(kernels) and all(np.unique(k).size <= max_values for k in kernels)


def _is_loop(layer):
    """A recurrent layer (or a Bidirectional one) that TFLite converts as a loop: not ``unroll=True``."""
    import keras

    return isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)) \
        and not getattr(getattr(layer, "forward_layer", layer), "unroll", False)


def _recurrent_layers(model):
    return [layer.name for layer in _leaf_layers(model) if _is_loop(layer)]


def _looping_recurrent_layers(model):
    """Names of the recurrent layers of ``model`` that run as a loop (not ``unroll=True``), found
    wherever they are held (nested models, custom layers, attributes of a subclassed model); a
    Bidirectional counts once, by its own name."""
    import keras

    from dc_keras import _compat

    kinds = (keras.layers.RNN, keras.layers.Bidirectional)
    found, inside = [], set()
    for layer in _compat.flatten_layers(model, include_self=True):
        if id(layer) in inside or not isinstance(layer, kinds):
            continue
        inside.update(id(sub) for sub in _compat.flatten_layers(layer))
        if _is_loop(layer):
            found.append(layer.name)
    return found


def _check_int8_recurrent(model, quantize):
    """Full-integer quantization of a recurrent loop is refused before the converter runs: TF's int8
    calibrator dies with a segmentation fault on the TFLite WHILE loop of an LSTM/GRU/SimpleRNN/
    ConvLSTM (TF 2.21), which killed the calling process (no exception to catch)."""
    if quantize != "int8":
        return
    names = _looping_recurrent_layers(model)
    if names:
        shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ValueError(
            f"to_tflite: quantize='int8' cannot convert recurrent layer(s) {shown}: TensorFlow's int8 "
            "calibrator crashes the process (segmentation fault) on their loop. Use quantize='dynamic' (int8 "
            "weights, float activations), quantize='float16' or quantize=None; or rebuild those layers with "
            "unroll=True (needs a fixed sequence length) and copy the weights, which full int8 converts.")


def _input_signature(model, batch):
    """The signature of a static-batch export: a spec per input, in the structure the model takes
    them (a dict for a model built on a dict of inputs, KerasHub's token_ids / padding_mask: a list
    there failed in the model's call, "The structure of `inputs` doesn't match")."""
    import keras
    import tensorflow as tf

    def spec(x):
        return tf.TensorSpec([batch, *[None if d is None else int(d) for d in x.shape[1:]]], x.dtype,
                             name=getattr(x, "name", None))

    try:
        structure = model.input
    except AttributeError:  # a Sequential built by build(), never called: it has inputs, no input
        structure = None
    if isinstance(structure, dict):
        return [keras.tree.map_structure(spec, structure)]
    specs = [spec(x) for x in model.inputs]
    return [specs[0]] if len(specs) == 1 else [specs]


def _convert_dynamic(model, apply):
    import tensorflow as tf

    try:
        return apply(tf.lite.TFLiteConverter.from_keras_model(model), None).convert()
    except Exception as first:  # Keras 3 models the direct route cannot trace: SavedModel
        if _converter_refused_half_precision(first, model):
            raise
        with _exportdir.directory() as tmp:
            saved = os.path.join(tmp, "saved_model")
            try:
                model.export(saved, format="tf_saved_model", **_export_kwargs(model))
            except Exception:
                raise first from None
            saved = _with_named_dict_inputs(model, saved, tmp)
            return apply(tf.lite.TFLiteConverter.from_saved_model(saved), None).convert()


def _converter_refused_half_precision(exc, model):
    """Did the converter itself (TF's ``ConverterError``, not exported under ``tf.lite``: told by its
    name) fail on a model with float16/bfloat16 layers? The graph was traced, and the SavedModel route
    would give the converter the same half-precision ops: a second conversion, and the same error."""
    return type(exc).__name__ == "ConverterError" and bool(_half_precision_layers(model)[0])


def _with_named_dict_inputs(model, saved, tmp):
    """The SavedModel to convert: ``saved``, or, when its ``serve`` endpoint takes one dict of
    tensors (a subclassed model called with a dict), a re-export whose inputs are named by the dict's
    keys. A subclassed model loaded from a ``.keras`` file reaches the converter through
    ``model.export``, whose signature flattens the dict to ``args_0``, ``args_0_1``, ...; one the user
    called goes the direct route, which keeps the keys (``predict_tflite`` takes a dict by them).
    The dtypes and shapes are those Keras recorded (the first export's); a re-export that fails keeps
    the first one's names."""
    import keras
    import tensorflow as tf

    if not isinstance(_build_input_shape(model), dict):
        return saved
    try:
        sig = tf.saved_model.load(saved).serve.input_signature
    except Exception:  # noqa: BLE001 (no serve endpoint to read: keep the export)
        return saved
    if not (isinstance(sig, (list, tuple)) and len(sig) == 1 and isinstance(sig[0], dict) and sig[0]
            and all(isinstance(k, str) and isinstance(v, tf.TensorSpec) for k, v in sig[0].items())):
        return saved
    keys = sorted(sig[0])
    specs = [tf.TensorSpec(sig[0][k].shape, sig[0][k].dtype, name=k) for k in keys]
    named = os.path.join(tmp, "saved_model_named")
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda *args: model(dict(zip(keys, args)), training=False),
                             input_signature=specs, **_export_kwargs(model))
        archive.write_out(named, verbose=False)
    except Exception:  # noqa: BLE001 (e.g. a key TF does not take as a signature name)
        return saved
    return named


def _convert_static(model, apply, batch):
    import tensorflow as tf

    if not getattr(model, "inputs", None):
        example, note = _signature_example(model, batch)
        raise _ArgumentError(f"to_tflite: batch_size needs a model with known inputs (a Functional or Sequential "
                             f"model built with keras.Input), and model {getattr(model, 'name', '')!r} is "
                             f"subclassed: give the batch in input_signature instead, to_tflite(model, "
                             f"input_signature={example}) ({note})")
    with _exportdir.directory() as tmp:
        saved = os.path.join(tmp, "saved_model")
        model.export(saved, format="tf_saved_model", input_signature=_input_signature(model, batch), verbose=False,
                     **_export_kwargs(model))
        return apply(tf.lite.TFLiteConverter.from_saved_model(saved), batch).convert()


def _first_error_line(exc):
    lines = [ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()]
    text = lines[0] if lines else str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^.*?error: (loc\(.*?\): )?", "", text)[:300]


def _half_precision_layers(model):
    """``(names, compute dtype)`` of the layers that compute in float16/bfloat16 (a mixed-precision
    policy), which TFLite's converter cannot lower: a layer counts when it or a layer it holds (a
    Bidirectional's RNNs, an RNN's cell) does."""
    import keras

    from dc_keras import _compat

    def half(layer):
        return getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) in ("float16", "bfloat16")

    found = []
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.InputLayer):  # computes nothing
            continue
        inner = [l for l in [layer, *_compat.flatten_layers(layer)] if half(l)]
        if inner:
            found.append((layer.name, inner[0].dtype_policy.compute_dtype))
    return [name for name, _ in found], (found[0][1] if found else None)


def _keras_quantized_layers(model):
    """``(names, mode)`` of the layers quantized by Keras' ``model.quantize(mode)`` (``quantization_mode``
    set: int8, float8, ...), whose integer / float8 kernels TFLite's converter may not lower."""
    quantized = [l for l in _leaf_layers(model) if getattr(l, "quantization_mode", None)]
    return [l.name for l in quantized], (quantized[0].quantization_mode if quantized else None)


#: the end of ``_failure``'s message: the converter's own error is its ``__cause__`` (from a
#: TensorFlow-backend child, ``_backend.ChildError`` holding its text)
_CHAINED_TAIL = " Converter error ({}) chained above."


def _without_chained_tail(text):
    """``text`` without ``_CHAINED_TAIL``: for a warning quoting the error, where nothing is chained."""
    return re.sub(r" Converter error \(\w+\) chained above\.$", "", text)


_IO_TYPES = ("inference_input_type", "inference_output_type")


def _failure(exc, batch_note, model=None):
    head = f"TFLite conversion failed{batch_note}: {_first_error_line(exc)}."
    # a converter_options value, no op missing (a value that is no dtype: "Unsupported TensorFlow type `x`")
    if any(name in _first_error_line(exc) for name in (*_IO_TYPES, "Unsupported TensorFlow type")):
        return _ArgumentError(
            f"to_tflite: converter_options' inference_input_type / inference_output_type: the converter refused them "
            f"({_first_error_line(exc)}). With quantize='int8' they may be tf.int8 or tf.uint8 (an integer input and "
            "output, as microcontrollers take them; tf.int16 with the int16x8 ops set); the other quantize modes "
            "take tf.float32 only (leave them out)")
    wrong = re.search(r"Got value of type (\w+) but expected type (\w+) for input (\d+), name: ([^\s.]+)", str(exc))
    if wrong:  # the calibrator: a sample of another dtype (a subclassed model's, whose inputs are not known before)
        given, wanted, index, name = wrong.groups()
        return _ArgumentError(
            f"to_tflite: representative_data for the model's input {index} ({name!r}) is {given.lower()}, but the "
            f"converted model takes {wanted.lower()}: cast it, e.g. representative_data=x.astype("
            f"{wanted.lower()!r}) (the data of a model with known inputs, functional or Sequential, is cast "
            "to their dtypes; a subclassed model's inputs are known only to the converter)")
    tail = _CHAINED_TAIL.format(type(exc).__name__)
    strings = "string" in str(exc).lower()  # a string op the builtins lack (tf.StringLower, tf.StringSplitV2...)
    for find, says in ((_keras_quantized_layers, _quantized_fix),
                       (_half_precision_layers, lambda kind: _half_precision_fix(kind, model)),
                       (lambda m: _string_layers(m) if strings else ([], None), _string_fix)):
        names, kind = find(model) if model is not None else ([], None)
        if names:
            shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            return _ExplainedFailure(f"{head} Layer(s) {shown} {says(kind)}{tail}")
    return RuntimeError(
        f"{head} If the converter lacks an op, "
        "to_tflite(..., converter_options={'target_spec.supported_ops': [tf.lite.OpsSet.TFLITE_BUILTINS, "
        "tf.lite.OpsSet.SELECT_TF_OPS]}) allows TensorFlow ops (the .tflite then needs the Flex "
        "delegate, which the tensorflow and ai-edge-litert pip packages' interpreters lack: it will not run "
        "in Python); converter_options / configure=callable(converter) set any other converter flag." + tail)


def _string_layers(model):
    """``(names, first layer)`` of the layers that compute on strings (TextVectorization, StringLookup,
    or any layer reading a string input), whose ops TFLite's builtin set lacks."""
    import keras

    kinds = tuple(getattr(keras.layers, n) for n in ("TextVectorization", "StringLookup") if hasattr(keras.layers, n))
    found = []
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, kinds) or any(getattr(t, "dtype", None) == "string" for t in _inputs_of(layer)):
            found.append(layer)
    return [layer.name for layer in found], (found[0] if found else None)


def _inputs_of(layer):
    """The KerasTensors ``layer`` was first called on (none when it cannot say: never or often called)."""
    try:
        inputs = layer.input
    except (AttributeError, ValueError):
        return []
    return inputs if isinstance(inputs, (list, tuple)) else list(inputs.values()) if isinstance(inputs, dict) \
        else [inputs]


def _string_fix(layer):
    return (f"compute on strings ({type(layer).__name__}), which TFLite's builtin ops cannot. Keep the text "
            "preprocessing out of the .tflite: export the part of the model after it, e.g. "
            f"to_tflite(keras.Model(model.get_layer({layer.name!r}).output, model.output)), and run "
            f"{layer.name!r} (or the same vocabulary) in your app before the interpreter; or allow TensorFlow "
            "ops, converter_options={'target_spec.supported_ops': [tf.lite.OpsSet.TFLITE_BUILTINS, "
            "tf.lite.OpsSet.SELECT_TF_OPS]} (the .tflite then needs the Flex delegate, which the pip "
            "interpreters lack).")


def _quantized_fix(mode):
    return (f"were quantized by Keras (model.quantize({mode!r})), whose layers TFLite's converter cannot "
            "lower (they are for Keras/JAX/TF inference). Export the float model instead (quantize() "
            "changed this one in place: load or rebuild it from before) and let the converter quantize: "
            "to_tflite(float_model, quantize='int8', representative_data=x) or quantize='dynamic' "
            "(docs/quantization.md).")


def _half_precision_fix(dtype, model=None):
    import keras

    from dc_keras.train import _base
    from dc_keras.train.strip import FLOAT32_COPY_BY_HAND

    if model is None or (isinstance(model, keras.Model) and _base.is_graph_model(model)):
        fix = ("export a float32 copy, to_tflite(dc_keras.strip(model, dtype='float32')) (the same weights, every "
               "layer computing in float32, also those inside a Bidirectional or an RNN; quantize='float16' stores "
               "float16 weights).")
        lambdas = [l.name for l in _leaf_layers(model) if type(l) is keras.layers.Lambda and getattr(
            l.dtype_policy, "compute_dtype", None) in ("float16", "bfloat16")] if model is not None else []
        if lambdas:  # strip(dtype=) keeps a Lambda as it is: its config holds code Keras does not deserialize
            fix += (f" The Lambda layer(s) {lambdas} stay as they are in that copy: build them with "
                    "dtype='float32', or use keras.ops on the model's tensors instead of a Lambda layer.")
    else:  # a subclassed model: strip(dtype=) cannot rebuild it
        fix = (f"export a float32 copy: {FLOAT32_COPY_BY_HAND} and export that (quantize='float16' stores "
               "float16 weights).")
    return f"compute in {dtype} (a mixed-precision dtype policy), which TFLite's converter cannot lower: " + fix


def _convert(model, apply, batch_size, signature=None):
    """Runs the converter; recurrent models (and any model whose dynamic-batch conversion fails on
    tensor-list ops) are converted with a static batch signature; ``signature`` (``_signature_json``'s
    form): exactly that input signature. A bad argument (``_ArgumentError``) is raised as a ValueError
    after the quiet block, so the converter's captured log is not replayed under a message that already
    names the problem and its fix; a conversion failure (RuntimeError) replays it, unless its cause is
    named from the model (``_ExplainedFailure``: Keras-quantized or mixed-precision layers)."""
    error = None
    with quiet_conversion():  # converter/Keras log lines: dc_keras._logs (DC_KERAS_VERBOSE=1 shows them)
        try:
            data, why = _convert_quietly(model, apply, batch_size, signature)
        except (_ArgumentError, _ExplainedFailure) as exc:
            error = exc
    if isinstance(error, _ExplainedFailure):
        raise RuntimeError(str(error)).with_traceback(error.__traceback__) from error.__cause__
    if error is not None:
        raise ValueError(str(error)).with_traceback(error.__traceback__) from error.__cause__
    if why:
        warnings.warn(f"to_tflite: the model has {why}, so the .tflite takes a fixed batch of 1 "
                      "(input shape [1, ...]). Pass batch_size=N to export another fixed batch, or "
                      "batch_size=1 to silence this warning.", UserWarning, stacklevel=4)
    return data


def _convert_quietly(model, apply, batch_size, signature):
    """``(data, why)``: the converted model and, when it got a static batch of 1 by itself, why (for the
    warning), else None."""
    if signature is not None:
        try:
            return _convert_signature(model, apply, signature), None
        except _ArgumentError:
            raise
        except Exception as exc:
            if _is_tensor_list_error(exc) and _has_dynamic_batch(signature):
                raise _ArgumentError(_static_signature_message(model, signature)) from exc
            raise _failure(exc, " (with the input_signature given)", model) from exc
    if batch_size is not None:
        try:
            return _convert_static(model, apply, int(batch_size)), None
        except _ArgumentError:
            raise
        except Exception as exc:
            raise _failure(exc, f" (static batch {batch_size})", model) from exc
    recurrent = _recurrent_layers(model)
    if not recurrent:
        try:
            return _convert_dynamic(model, apply), None
        except _ArgumentError:
            raise
        except Exception as exc:
            if not _is_tensor_list_error(exc):
                raise _failure(exc, "", model) from exc
            if not getattr(model, "inputs", None):
                raise _ArgumentError(_needs_signature_message(model)) from exc
    elif not getattr(model, "inputs", None):
        raise _ArgumentError(_needs_signature_message(model))
    try:
        data = _convert_static(model, apply, 1)
    except _ArgumentError:
        raise
    except Exception as exc:
        raise _failure(exc, " (static batch 1)", model) from exc
    return data, (f"recurrent layer(s) {recurrent}" if recurrent else "ops (tensor lists)") + \
        " that TFLite only converts with a static batch dimension"


def _is_tensor_list_error(exc):
    return any(s in str(exc) for s in _TENSOR_LIST_ERRORS)


def _loops_named(model):
    """``recurrent layer(s) 'a', 'b'`` (wherever held), or the tensor-list ops when no layer is named."""
    names = _looping_recurrent_layers(model)
    if not names:
        return "tensor-list ops (a recurrent loop)"
    return "recurrent layer(s) " + ", ".join(repr(n) for n in names[:5]) + \
        (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _with_batch(signature, batch):
    """``_signature_json``'s form with every spec's first dimension set to ``batch``."""
    if isinstance(signature, dict) and set(signature) == {_SPEC}:
        dims, dtype, name = signature[_SPEC]
        return {_SPEC: [[batch, *dims[1:]], dtype, name]}
    if isinstance(signature, dict):
        return {k: _with_batch(v, batch) for k, v in signature.items()}
    return [_with_batch(v, batch) for v in signature]


def _has_dynamic_batch(signature):
    return any(dims[0] is None for dims, _, _ in _signature_leaves(signature))


def _spec_source(signature):
    """``input_signature`` as Python source, from ``_signature_json``'s form (for a message to copy)."""
    if isinstance(signature, dict) and set(signature) == {_SPEC}:
        dims, dtype, name = signature[_SPEC]
        return f"keras.InputSpec(shape={tuple(dims)!r}, dtype={dtype!r}" + (f", name={name!r})" if name else ")")
    if isinstance(signature, dict):
        return "{" + ", ".join(f"{k!r}: {_spec_source(v)}" for k, v in signature.items()) + "}"
    return "[" + ", ".join(_spec_source(v) for v in signature) + "]"


def _static_signature_message(model, signature):
    """The converter's tensor-list error of an ``input_signature`` with a dynamic batch, as its fix."""
    fixed = _with_batch(signature, 1)
    leaves = _signature_leaves(signature)
    change = (f"use shape={tuple(_signature_leaves(fixed)[0][0])!r} instead of {tuple(leaves[0][0])!r}"
              if len(leaves) == 1 else "give every spec a fixed first dimension")
    return (f"to_tflite: {_loops_named(model)} need a static batch size in the input signature (TFLite converts "
            f"them only with a fixed batch; input_signature is converted as given): {change}, "
            f"input_signature={_spec_source(fixed)} (or another fixed batch; dc_keras.pipeline.predict_tflite "
            "feeds any number of samples batch by batch)")


def _built_signature(model, batch):
    """The input signature (``_signature_json``'s form, first dimension ``batch``) of a subclassed model,
    from the input shape(s) it was built with (``get_build_config()``), or None when they are not
    known. The dtype is the one Keras records (float32), int32 for an input whose shape an
    ``Embedding`` was built with (token ids)."""
    import keras

    shapes = _build_input_shape(model)
    is_shape = lambda s: isinstance(s, (list, tuple)) and len(s) >= 1 and all(  # noqa: E731
        d is None or isinstance(d, int) for d in s)
    embedded = {tuple(s) for s in (_build_input_shape(layer) for layer in _leaf_layers(model)
                                   if isinstance(layer, keras.layers.Embedding)) if is_shape(s)}
    try:
        floats = keras.backend.standardize_dtype(getattr(model, "input_dtype", None) or "float32")
    except (TypeError, ValueError, AttributeError):
        floats = "float32"

    def spec(shape):
        if not is_shape(shape):
            raise TypeError(f"not a shape: {shape!r}")
        return {_SPEC: [[batch, *shape[1:]], "int32" if tuple(shape) in embedded else floats, None]}

    try:
        if is_shape(shapes):
            return [spec(shapes)]
        if isinstance(shapes, dict) and shapes:
            return [{k: spec(v) for k, v in shapes.items()}]
        if isinstance(shapes, (list, tuple)) and shapes:
            return [[spec(v) for v in shapes]]
    except TypeError:
        pass
    return None


def _signature_example(model, batch):
    """``(source, note)``: an ``input_signature`` for a model without known inputs, at batch ``batch``,
    and what to check in it."""
    signature = _built_signature(model, batch)
    if signature is None:
        return (f"[keras.InputSpec(shape=({batch}, <input shape>), dtype=<input dtype>)]",
                f"a spec per input: its shape at batch {batch} and its dtype")
    ints = any(dtype == "int32" for _, dtype, _ in _signature_leaves(signature))
    return _spec_source(signature), (f"the input shape it was built with, at batch {batch}; "
                                     + ("int32 for the token ids of its Embedding" if ints else
                                        "give your inputs' dtype if it is not float32"))


def _needs_signature_message(model):
    """A model without known inputs (subclassed) that needs a static batch: the fix, an input_signature."""
    example, note = _signature_example(model, 1)
    return (f"to_tflite: model {getattr(model, 'name', '')!r} has {_loops_named(model)}, which TFLite converts "
            "only with a static batch, and it is subclassed, so its input shapes are unknown to the converter: "
            f"give them with a fixed batch, to_tflite(model, input_signature={example}) ({note})")


def _leaf_layers(model):
    """Every non-Model layer of ``model``, nested models included, each once."""
    import keras

    seen, out = set(), []

    def walk(m):
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, keras.Model):
                walk(layer)
            else:
                out.append(layer)

    if isinstance(model, keras.Model):
        walk(model)
    return out


def _build_input_shape(model):
    """The input shape(s) a built model records in ``get_build_config()``, or None."""
    try:
        return (model.get_build_config() or {}).get("input_shape")
    except Exception:  # noqa: BLE001 (a custom get_build_config)
        return None


def _prime_subclassed(model):
    """Calls a built subclassed model once on zeros of the input shape it was built with (its
    ``get_build_config()``), so that the converter knows its inputs. A subclassed model learns them
    at its first call in the process: one loaded from a ``.keras`` file and not called since (also
    every subclassed model exported on torch/JAX, which the TensorFlow-backend child loads from a
    ``.keras`` file) failed with Keras' "cannot be saved because the input shapes have not been
    set". Keras keeps the input spec of the first call, so a model already called keeps its own (and
    its input dtype); a call that fails changes nothing (the converter's error follows). Several
    inputs (a list or dict of shapes) get zeros of the same structure; the dtype is float32, as
    ``keras.Input``'s default."""
    import keras

    from dc_keras.train import _base

    if not isinstance(model, keras.Model) or _base.is_graph_model(model) or not model.built:
        return
    shapes = _build_input_shape(model)
    is_shape = lambda s: isinstance(s, (list, tuple)) and len(s) >= 1 and all(  # noqa: E731
        d is None or isinstance(d, int) for d in s)

    def zeros(shape):
        if not is_shape(shape):
            raise TypeError(f"not a shape: {shape!r}")
        return np.zeros([1] + [1 if d is None else int(d) for d in shape[1:]], "float32")

    if shapes is None:
        return
    try:
        inputs = keras.tree.map_shape_structure(zeros, shapes)
    except (TypeError, ValueError):
        return  # a build config that is not made of shapes: not guessed
    with contextlib.suppress(Exception):
        model(inputs, training=False)


def _without_wrappers(model):
    """``model`` with dc_keras's training wrappers stripped (a copy: ``model`` is not modified),
    with a warning naming them; ``model`` itself when it has none or is subclassed (whose strip works
    in place: the user's call). The converter would otherwise see kernels, masks and centroids."""
    from dc_keras.train import _base, strip

    wrapped = _base.find_wrappers(model)
    if not wrapped:
        return model
    names = sorted({w.name for w in wrapped})
    if not _base.is_graph_model(model):
        warnings.warn(f"to_tflite: layers {names} still have dc_keras pruning/clustering wrappers; call "
                      "dc_keras.strip(model) before exporting (flow: prune -> fit -> strip -> cluster -> fit -> "
                      "strip -> to_tflite; tfmot drop-in: strip_pruning / strip_clustering)", UserWarning, stacklevel=3)
        return model
    warnings.warn(f"to_tflite: layers {names} still had dc_keras pruning/clustering wrappers: exported "
                  "dc_keras.strip(model) (same outputs; the model passed in is unchanged). Call dc_keras.strip "
                  "(tfmot drop-in: strip_pruning / strip_clustering) yourself before exporting to silence this warning", UserWarning, stacklevel=3)
    return strip(model)


def _shared_kernels(model):
    """Keras weights that look clustered: ``(layer, weight path, size, distinct values)``. Layers
    still wrapped for training are left out: their masks / indices are not what the converter exports."""
    from dc_keras.train import _base

    out, seen = [], set()
    for layer in _leaf_layers(model):
        if isinstance(layer, _base.CompressionWrapper):
            continue
        for w in layer.weights:
            if id(w) in seen or len(w.shape) < 2:
                continue
            seen.add(id(w))
            a = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            if a.size < _SHARED_MIN_SIZE or not np.issubdtype(a.dtype, np.floating):
                continue
            distinct = int(np.unique(a).size)
            if distinct <= _SHARED_MAX_DISTINCT and 4 * distinct <= a.size:
                out.append((layer, getattr(w, "path", w.name), int(a.size), distinct))
    return out


def _segments(name):
    return [s for s in re.split(r"[;/:]", name) if s]


def _names_layer(segments, layer_name):
    pattern = re.compile(re.escape(layer_name) + r"(_\d+)?$")
    return any(pattern.match(s) for s in segments)


def _names_other_sublayer(layer, path, segments):
    """Does the tensor name (``segments``) name a sublayer of ``layer`` that does not hold the
    weight at ``path``? Then the tensor is that sublayer's, not this weight's: a custom layer holding
    a clustered Dense and a MultiHeadAttention whose projections have as many entries (or a
    Bidirectional's backward kernel against its forward one) was matched by the outer layer's name
    and element count alone, and an unclustered projection reported as a clustered kernel spread."""
    from dc_keras import _compat

    owners = set(path.split("/")[:-1])
    return any(sub.name not in owners and _names_layer(segments, sub.name)
               for sub in _compat.flatten_layers(layer))


def _bn_layers(model):
    import keras

    return [layer for layer in _leaf_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _folded_bn(model, layer, names):
    """Name of a BatchNormalization the converter folded into ``layer``'s kernel, or None: found in
    the names of the tensors feeding the same operator (the folded bias), or as the layer that
    directly consumes ``layer``'s output in the Keras graph."""
    bns = _bn_layers(model)
    for name in names:  # the kernel's own name first, then its operator's other constants
        for bn in bns:
            if _names_layer(_segments(name), bn.name):
                return bn.name
    for bn in bns:
        with contextlib.suppress(Exception):  # layer.output/bn.input raise for shared layers
            if bn.input is layer.output:
                return bn.name
    return None


def _spread_messages(model, shared, converted, packed_names, quantize):
    """The warnings for ``.tflite`` tensors that hold far more distinct values than the Keras kernel
    they come from (matched by layer name in the tensor name and by element count): one per tensor,
    or one for all the tensors of the same cause and fix (``_spread_warnings``). ``packed_names``:
    a function giving the names of the tensors the packed file decodes (called only for a message)."""
    if not shared:
        return []
    tfl = fb.read_model(converted)
    names = None
    found = []
    for sg in tfl.subgraphs:
        tensors = sg.tensors or []
        for i, t in enumerate(tensors):
            arr = _tensor_array(tfl, t)
            if arr is None or arr.size < _SHARED_MIN_SIZE:
                continue
            name = fb.tensor_name(t)
            segments = _segments(name)
            match = [s for s in shared if s[2] == arr.size and _names_layer(segments, s[0].name)
                     and not _names_other_sublayer(s[0], s[1], segments)]
            if not match:
                continue
            layer, path, _, before = match[0]
            after = int(np.unique(arr.reshape(-1).view(f"u{arr.dtype.itemsize}")).size)
            if after <= max(2 * before, before + 16):
                continue
            siblings = [fb.tensor_name(tensors[int(x)]) for op in sg.operators or []  # e.g. the folded bias
                        if i in [int(v) for v in (op.inputs if op.inputs is not None else [])]
                        for x in op.inputs if int(x) >= 0 and fb.buffer_bytes(tfl, tensors[int(x)].buffer)]
            names = packed_names() if names is None else names
            found.append(_spread_message(model, layer, path, name, before, after, quantize, siblings,
                                         name in names))
    return _spread_warnings(found)


def _packed_names(packed):
    if packed is None:
        return set()
    m = fb.read_model(packed)  # the names of the tensors HuffDecode ops decode
    return {fb.tensor_name(m.subgraphs[s].tensors[o]) for s, _, o in packed_tensors(m)}


def _spread_message(model, layer, path, name, before, after, quantize, siblings, was_packed):
    bn = _folded_bn(model, layer, [name, *siblings])
    if bn is not None:
        cause = (f"the converter folded BatchNormalization {bn!r} into it (each output channel is "
                 "rescaled, so every shared value becomes one value per channel)")
        fix = ("fold the BatchNormalization before clustering: dc_keras.cluster folds BatchNormalization "
               "into the preceding layer by default (do not pass fold_batchnorm=False), or cluster a "
               "model built without it")
        from dc_keras.train import bn_fold

        blocked = bn_fold.fold_blocked(model, layer.name, bn)
        if blocked is not None and "shared layer" in blocked:  # cluster() could not fold it: default or not
            fix = (f"dc_keras.cluster cannot fold it, as {blocked}: folding would rescale the layer's other "
                   "calls too. Give the call that BatchNormalization follows a layer of its own (not shared; "
                   "cluster() then folds it), or remove that BatchNormalization")
        elif blocked is not None:
            fix = (f"dc_keras.cluster cannot fold it, as {blocked}: make the BatchNormalization the only reader "
                   "of the layer's output (cluster() then folds it), or remove it")
    elif quantize in ("int8", "dynamic"):
        cause = f"quantize={quantize!r} quantizes per output channel (each channel has its own scale)"
        fix = ("export with per_channel=False (one scale per tensor keeps the shared values; the default "
               "when every kernel has <= 256 distinct values), or quantize=None / 'float16'")
    else:
        cause = "the converter rewrote the values (a folded BatchNormalization, Mul/Add or other constant op)"
        fix = "fold such ops into the layer before clustering, or cluster after the rewrite"
    fate = "packed, but poorly" if was_packed else "left raw by the packer"
    what = (f"tensor {name!r} (Keras weight {path!r} of layer {layer.name!r}, {type(layer).__name__}) was "
            f"clustered to {before} distinct values in Keras but has {after} in the .tflite, so it was {fate}")
    return what, cause, fix


_SPREAD_LISTED = 6  # tensors named in full in a warning that covers several


def _spread_warnings(found):
    """One message per (cause, fix): a per-channel export of a clustered MobileNetV2 spreads ~35
    kernels for the same reason, which were ~35 warnings of the same cause and fix."""
    groups = {}
    for what, cause, fix in found:
        groups.setdefault((cause, fix), []).append(what)
    messages = []
    for (cause, fix), whats in groups.items():
        if len(whats) == 1:
            messages.append(f"to_tflite: {whats[0]}. Likely cause: {cause}. Fix: {fix}.")
            continue
        listed = "; ".join(whats[:_SPREAD_LISTED])
        more = (f"; and {len(whats) - _SPREAD_LISTED} more (dc_keras.export.inspect(data) gives each tensor's "
                "distinct values)") if len(whats) > _SPREAD_LISTED else ""
        messages.append(f"to_tflite: {len(whats)} tensors hold far more distinct values in the .tflite than their "
                        f"clustered Keras kernels, for one cause: {listed}{more}. Likely cause: {cause}. Fix: {fix}.")
    return messages


def _in_tensorflow_child(model, pack, quantize, representative_data, min_bytes, batch_size, converter_options,
                         configure, per_channel, positive_zeros=False, signature=None, pack_options=None):
    """The ``.tflite`` converted in a TF-backend child (torch always; JAX when nothing in the call needs
    this process: dc_keras/export/_backend.py), or None to convert here. A JAX child that fails
    falls back to this process with a warning, except for a model with layers quantized by Keras
    (``model.quantize``): TFLite's converter cannot lower its int8/float8 layers on the TensorFlow
    backend, jax2tf converts its int8 ones (the file runs them op by op), so that fallback is the
    route, nothing the user can act on: no warning (if jax2tf fails too, its error names the layers
    and the fix)."""
    must = _backend.needs_tensorflow_child()
    if not must and not _backend.prefers_tensorflow_child(configure, converter_options, representative_data):
        import keras

        if keras.backend.backend() == "jax":
            given = [name for name, value in (("configure=", configure is not None),
                                              ("converter_options=", bool(converter_options)),
                                              ("a generator function as representative_data", callable(representative_data)))
                     if value]
            warnings.warn(f"to_tflite: {' and '.join(given)} need(s) the converter in this process, so this JAX "
                          "model is converted through jax2tf: a correct but unfused, larger graph, not the file "
                          "the TensorFlow backend makes (docs: dc_keras/export/_backend.py). For that file, save "
                          "the model (model.save('m.keras')) and call to_tflite on it in a process with "
                          "KERAS_BACKEND=tensorflow (representative data can also be an array).",
                          UserWarning, stacklevel=3)
        return None
    try:
        return _backend.to_tflite_in_tensorflow(model, pack, quantize, representative_data=representative_data,
                                                min_bytes=min_bytes, batch_size=batch_size,
                                                converter_options=converter_options, configure=configure,
                                                per_channel=per_channel, positive_zeros=positive_zeros,
                                                signature=signature, pack_options=pack_options)
    except _backend.UnimportableClassError as exc:
        if must:
            raise
        warnings.warn(f"{exc}; meanwhile this JAX model is converted in this process through jax2tf instead (a "
                      "correct but unfused, larger graph; docs: dc_keras/export/_backend.py)", UserWarning,
                      stacklevel=3)
        return None
    except RuntimeError as exc:
        if must:
            raise
        if _keras_quantized_layers(model)[0]:
            return None
        if _half_precision_layers(model)[0]:  # jax2tf's graph computes in float16 too: the same failure,
            raise  # after a second conversion and a warning repeating this error (its message names the fix)
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"to_tflite: the TensorFlow-backend conversion of this JAX model failed "
                      f"({_without_chained_tail(last)}); "
                      "converting in this process through jax2tf instead (a correct but unfused, larger "
                      "graph; docs: dc_keras/export/_backend.py)", UserWarning, stacklevel=3)
        return None


def to_tflite(model, pack: bool = True, quantize=None, path=None, *, representative_data=None,
              min_bytes: int = DEFAULT_MIN_BYTES, batch_size=None, converter_options=None,
              configure=None, per_channel=None, positive_zeros: bool = False, input_signature=None,
              pack_options=None) -> bytes:
    """Converts a Keras 3 model to ``.tflite`` with TFLite's converter, then packs its weights.

    Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional) are converted with a static batch of 1
    (with a warning), since TFLite cannot lower them with a dynamic batch; ``batch_size`` chooses
    another fixed batch. When packing, a kernel clustered in Keras whose ``.tflite`` tensor holds far
    more distinct values (a folded BatchNormalization, per-channel quantization) raises a
    :class:`ClusterSpreadWarning` naming the tensor, the counts, the cause and the fix.

    Temporary files: the conversion goes through a temporary ``dc_keras-export-*`` directory
    (``$TMPDIR``), removed on return and on any exception. On the JAX and torch backends a
    TensorFlow-backend child process converts; if the calling process is killed instead (``kill``,
    SIGKILL, a closed terminal) or every process of the export is sent SIGTERM (a service stopped),
    at any moment, the child's clean-up process, which makes the directory once it ignores SIGTERM,
    ends the conversion and removes it, also while a process the caller forked (``os.fork``, a
    ``multiprocessing`` "fork" worker) lives on. A directory no process could remove (every process
    of the export killed by SIGKILL at once: ``kill -9`` of all of them, the OOM killer, a container
    stopped; in-process, on the TensorFlow backend, a plain ``kill``, since Python's default SIGTERM
    runs no clean-up and dc_keras installs no signal handlers) is removed by the next ``to_tflite``
    that uses the same ``$TMPDIR``, which says so on the ``dc_keras`` logger (level WARNING: stderr
    when logging is not configured). Each directory holds a ``dc_keras-export.lock`` file that every
    process using it keeps locked (``flock``, released by the kernel however the process dies), so a
    directory another export is using is never removed, nor anything without that file, a symbolic
    link or another user's directory; without ``fcntl.flock`` (Windows) nothing is swept. The
    ``dc-keras`` command turns SIGTERM into a clean exit, and a script may do the same
    (``signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))``).

    Args:
      model: a built ``keras.Model`` (typically after ``dc_keras.strip``: pruned, clustered
        weights, so they pack well). A Sequential/Functional model that still has dc_keras
        wrappers is exported as ``dc_keras.strip(model)``, with a warning.
      pack: run ``dc_keras.export.pack`` on the converted model (default True).
      quantize: ``None`` (float32), ``"float16"`` (float16 weights), ``"dynamic"`` (int8 weights,
        float activations; TFLite keeps weights of fewer than 1024 elements, and CONV_3D filters,
        float32: a UserWarning names them) or ``"int8"`` (full integer post-training quantization; needs
        ``representative_data``; input/output stay float32; not for LSTM/GRU/SimpleRNN loops: use
        ``"dynamic"``, or ``unroll=True`` layers).
      path: if given, the bytes are also written there (atomically).
      representative_data: for ``quantize="int8"``: array of typical inputs (first axis =
        samples), list of arrays (one per model input) or dict of them by input name, or a generator
        function as the TFLite converter takes (a sample that is a list of one array per input is
        given to the calibrator by the model's input names, in ``model.inputs`` order, as the arrays
        are). Integer arrays for a float input (uint8 images) are cast to float32; NaN or inf in the
        samples the calibrator gets is refused. With another ``quantize`` it is unused: a
        UserWarning says so (give ``quantize="int8"`` or leave it out).
      min_bytes: passed to ``pack``.
      batch_size: ``None`` (dynamic batch; static batch 1 for recurrent models) or a positive int:
        the ``.tflite`` input then has this fixed first dimension. A subclassed model (its input
        shapes unknown) takes the batch in ``input_signature`` instead, recurrent or with
        ``batch_size``: the ValueError gives that signature.
      converter_options: dict of ``tf.lite.TFLiteConverter`` attributes to set, e.g.
        ``{"allow_custom_ops": True}``; dotted names reach nested settings
        (``"target_spec.supported_ops"``). Applied after ``quantize``'s settings; an unknown name
        is an error.
      configure: a callable receiving the converter just before ``convert()`` (after
        ``converter_options``), for anything the options cannot express.
      per_channel: int8 scales per output channel (the converter's default) or per tensor. ``None``:
        per tensor for a clustered model (every kernel <= 256 distinct values: it keeps the sharing
        and packs like the float model, docs/quantization.md), else per channel. Per-tensor dynamic
        range uses the converter's legacy quantizer when the model has depthwise layers (see
        ``_misread_depthwise``: TFLite's hybrid depthwise kernel needs per-channel scales).
      positive_zeros: passed to ``pack``: its -0.0 weight entries packed as +0.0. A pruned Keras
        kernel holds +0.0 only, but the converter folds a following BatchNormalization into it,
        and 0 times a negative scale is -0.0, which bit-exact packing stores like a kept weight
        (a warning says so). With True, outputs can differ from the unpacked file's only in the
        sign of an output that is exactly zero. Default False (bit-exact).
      input_signature: the ``.tflite``'s inputs, as ``keras.Model.export`` takes them: a list with a
        ``keras.InputSpec`` (or ``tf.TensorSpec``) per positional argument of the model's call, e.g.
        ``[keras.InputSpec(shape=(None, 64), dtype="int32")]`` (``[[spec_a, spec_b]]`` for a model called
        with a list, ``[{"a": spec_a, ...}]`` with a dict). For a subclassed model, whose inputs Keras
        only knows as float32 (token ids of an ``Embedding`` come out as a float32 input), or to fix a
        dimension (``None`` = any size). Specs without a name take the model's input names. Exactly this
        signature is converted (no automatic static batch for recurrent layers: give the batch in the
        shapes); not with ``batch_size``.
      pack_options: a dict of further ``dc_keras.export.pack`` arguments for the packing pass, e.g.
        ``{"strip_strings": True, "decoder": "minimal"}``: ``verify``, ``min_saving``, ``version``,
        ``strip_strings``, ``buffers``, ``context_model``, ``compact``, ``layouts``, ``decoder`` (see
        ``pack`` for each). The result is the bytes ``pack(to_tflite(model, pack=False), **pack_options)``
        gives. Checked before converting: an unknown name or bad value is an error, so is
        ``min_bytes`` or ``positive_zeros`` here (give them as to_tflite's own arguments) and a
        non-empty dict with ``pack=False``. On every backend (JAX, torch: the TensorFlow-backend child
        packs with them).

    Returns:
      The ``.tflite`` bytes.

    Warns:
      UserWarning: with ``pack=True``, ``dc_keras.export.pack``'s warnings (prefixed ``to_tflite:``),
        e.g. the constants kept raw when they are at least a tenth of the file (weights neither
        pruned nor clustered); ``representative_data`` given with a ``quantize`` other than ``"int8"``
        (unused: the message names the mode and the fix). ClusterSpreadWarning: see above.

    Raises:
      ValueError: bad arguments (named); a model that is not built; ``quantize="int8"`` of a model with
        recurrent layers that are not ``unroll=True`` (TF's calibrator would crash the process; the
        message names the layers and the alternatives); on torch, a custom class the
        TensorFlow-backend subprocess cannot import (defined in ``__main__`` or inside a function:
        move it into a module).
      RuntimeError: the converter failed; the message gives its first error line and the options
        that usually fix it (the converter's exception is chained).

    Example:
      >>> data = dc_keras.export.to_tflite(model, path="lenet.tflite")
      >>> data8 = dc_keras.export.to_tflite(model, quantize="int8", representative_data=x[:100])
      >>> fixed = dc_keras.export.to_tflite(model, input_signature=[keras.InputSpec(shape=(1, *model.input_shape[1:]))])
      >>> rnn = dc_keras.export.to_tflite(lstm_model, batch_size=8,
      ...                                 converter_options={"experimental_enable_resource_variables": True})
      >>> import tensorflow as tf
      >>> def flex(converter):
      ...     converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
      >>> data = dc_keras.export.to_tflite(model, configure=flex)
      >>> mcu = dc_keras.export.to_tflite(model, pack_options={"decoder": "minimal", "strip_strings": True})
    """
    _check_model(model)
    _check_built(model)
    _check_arguments(quantize, batch_size, converter_options, configure)
    try:
        _check_option_names(converter_options)
    except _ArgumentError as exc:  # raised as a plain ValueError, as _convert raises it
        raise ValueError(str(exc)) from None
    signature = _signature_json(input_signature, batch_size, model)
    if isinstance(pack, (str, bytes, os.PathLike)):  # to_tflite(model, "model.tflite") wrote no file
        raise ValueError(f"to_tflite's second argument is pack (True/False), got {pack!r}: pass the output file as "
                         f"path=, e.g. to_tflite(model, path={pack!r}).")
    if not isinstance(pack, (bool, np.bool_)):
        raise ValueError(f"pack must be True or False, got {pack!r}")
    if not isinstance(positive_zeros, bool):
        raise ValueError(f"positive_zeros must be True or False, got {positive_zeros!r}")
    if per_channel is not None and not isinstance(per_channel, (bool, np.bool_)):
        raise ValueError(f"per_channel must be None (per tensor for a clustered model, else per channel), "
                         f"True or False, got {per_channel!r}")
    if per_channel is not None and quantize not in ("int8", "dynamic"):
        warnings.warn(f"to_tflite: per_channel={per_channel!r} is ignored: it sets the int8 scales of "
                      "quantize='int8' or 'dynamic', and this export has quantize="
                      f"{quantize!r} (leave per_channel out)", UserWarning, stacklevel=2)
    if representative_data is not None and quantize != "int8":
        # only full-integer calibration reads it: dropped here, so a JAX/torch child never gets it either
        warnings.warn(f"to_tflite: representative_data is ignored with quantize={quantize!r}: it only calibrates "
                      "the activation ranges of full-integer quantization. Fix: quantize='int8' to calibrate "
                      "with it, or leave representative_data out", UserWarning, stacklevel=2)
        representative_data = None
    options = _pack_options(pack_options, pack, min_bytes, positive_zeros)  # before the slow conversion
    if not pack:  # named as ignored (if given) just now: a JAX/torch child must not say it again
        min_bytes, positive_zeros = DEFAULT_MIN_BYTES, False
    if path is not None:
        check_writable(path)  # a bad or read-only output fails now, not after the conversion
    model = _without_wrappers(model)
    _check_int8_recurrent(model, quantize)
    if quantize == "int8":
        calibration_batch = (_first_dim(signature) if signature is not None else batch_size) or 1
        representative_data = _inputs_by_name(representative_data, model)
        try:  # validate before the slow conversion
            _representative(representative_data, int(calibration_batch), model=model)
        except _ArgumentError as exc:  # raised as a plain ValueError, as _convert raises it
            raise ValueError(str(exc)) from None
        if signature is None:  # (with input_signature, its dtypes are converted: the calibrator checks)
            representative_data = _integer_inputs_as_model_takes(representative_data, model)
    if _SWEEP_TMPDIR:  # the temporary directories of earlier exports that were killed (logged)
        _exportdir.sweep()
    data = _in_tensorflow_child(model, pack, quantize, representative_data, min_bytes, batch_size,
                                converter_options, configure, per_channel, positive_zeros, signature, options)
    if data is not None:
        if path is not None:
            atomic_write(path, data)
        return data
    if signature is None:
        _prime_subclassed(model)
    shared = _shared_kernels(model) if pack else []
    names = [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]
    if signature is not None:  # the calibrator feeds the converted signature's inputs by these names
        names = _signature_names(signature, names)
    yielded = [0]  # samples a representative_data function gave the calibrator
    if quantize == "int8" and callable(representative_data):
        representative_data = _counted(representative_data, yielded)
    data = _convert_checked(model, batch_size, quantize, per_channel, lambda pc, legacy: _configurer(
        quantize, representative_data, converter_options, configure, pc, legacy, names), signature)
    if quantize == "int8" and not yielded[0] and callable(representative_data):
        raise ValueError("to_tflite: representative_data (a function) yielded no sample, so the converter calibrated "
                         "nothing and wrote a float model instead of an int8 one: make it yield the model's inputs "
                         "(e.g. lambda: ([x[i:i + 1]] for i in range(100))), or pass the array itself")
    message = _float_weights_message(data) if quantize == "dynamic" else None
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)
    if pack:
        packed, stats = pack_with_stats(data, min_bytes=min_bytes, positive_zeros=positive_zeros, **options)
        warn_notes(stats, len(packed), "to_tflite(..., positive_zeros=True)", "to_tflite")

        def packed_names():  # with strip_strings, the packed file has no names: the same pack, with them
            named = packed if not options.get("strip_strings") else pack_with_stats(
                data, min_bytes=min_bytes, positive_zeros=positive_zeros, **{**options, "strip_strings": False})[0]
            return _packed_names(named)

        for message in _spread_messages(model, shared, data, packed_names, quantize):
            warnings.warn(message, ClusterSpreadWarning, stacklevel=2)
        data = packed
    if path is not None:
        atomic_write(path, data)
    return data
