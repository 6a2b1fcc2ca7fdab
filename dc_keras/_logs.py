"""Keeping TensorFlow's log lines out of what a dc_keras user reads.

A ``to_tflite`` call makes TensorFlow print ~20 lines (``reader.cc``, ``loader.cc``,
``tf_tfl_flatbuffer_helpers.cc`` from C++, ``signature_serialization.py``/``lite.py`` INFO from
Python, the SavedModel signature from Keras). Only public means are used:

* entry points (``dc-keras``, benchmarks) call :func:`quiet_tensorflow_startup` before TensorFlow
  is imported: ``TF_CPP_MIN_LOG_LEVEL`` is read once, when TensorFlow's C++ runtime loads. Some
  start-up lines of TF 2.21 (``port.cc``, ``cudart_stub.cc``: logged before absl's log is
  initialised) ignore it, so ``dc-keras`` also runs under :func:`native_stderr_captured`;
* :func:`quiet_conversion` wraps one conversion: Python loggers (``tensorflow``, absl) raised to
  ERROR and restored afterwards; stdout captured; C++ output on file descriptor 2 captured to a
  temporary file and replayed only if the conversion fails (so an error keeps its context); and
  TF's Python warning "Statistics for quantized inputs were expected, but not specified" dropped:
  every full-int8 conversion from a representative dataset raises it (the calibration supplies
  those statistics), and it reads as if the user had left something out; and its "Warning:
  tf.lite.Interpreter is deprecated": the calibrator makes one to read a model's signature when it
  is fed named inputs (``to_tflite`` feeds a model of several inputs by name), which the user, who
  made no interpreter, cannot act on.

Set ``DC_KERAS_VERBOSE=1`` to see everything.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings


def verbose() -> bool:
    """True when the user asked for TensorFlow's logs (``DC_KERAS_VERBOSE=1``)."""
    return os.environ.get("DC_KERAS_VERBOSE", "") not in ("", "0")


def progress_bar_class():
    """tqdm's bar class for our progress bars: ``tqdm.auto``'s (a widget in Jupyter) when ipywidgets
    is installed, else the text bar. ``tqdm.auto`` in a Jupyter kernel without ipywidgets warned
    ``TqdmWarning: IProgress not found`` at each bar, even a disabled one (every first export in
    the notebooks).

    Example:
        >>> for _ in progress_bar_class()(range(3), disable=True):
        ...     pass
    """
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm as bar
    else:
        from tqdm.std import tqdm as bar
    return bar


def quiet_tensorflow_startup() -> None:
    """For entry points, before ``import tensorflow``: no C++ INFO/WARNING start-up lines.

    A value the user already set wins; too late once TensorFlow is loaded (then a no-op).
    """
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _python_loggers_at_error():
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl", "keras")]
    saved = [lg.level for lg in loggers]
    absl_logging = sys.modules.get("absl.logging")
    saved_verbosity = absl_logging.get_verbosity() if absl_logging else None
    try:
        for lg in loggers:
            lg.setLevel(max(lg.getEffectiveLevel(), logging.ERROR))
        if absl_logging:
            absl_logging.set_verbosity(absl_logging.ERROR)
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)
        if absl_logging:
            absl_logging.set_verbosity(saved_verbosity)


@contextlib.contextmanager
def native_stderr_captured(keep_python_stderr: bool = False, replay=(BaseException,)):
    """Points file descriptor 2 (where TensorFlow's C++ code logs) at a temporary file.

    With ``keep_python_stderr`` Python's ``sys.stderr`` (tqdm bars, warnings, our messages) keeps
    writing to the real stderr. If an exception of a type in ``replay`` leaves the block, the
    captured text is written to the real stderr first, so an error keeps its context.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreter...)
        yield
        return
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as log:
        if keep_python_stderr:
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        os.dup2(log.fileno(), 2)
        try:
            yield
        except replay:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if keep_python_stderr:
                sys.stderr.close()
                sys.stderr = python_stderr


@contextlib.contextmanager
def quiet_conversion():
    """Silences one TFLite conversion (see the module docstring); no-op with DC_KERAS_VERBOSE=1.

    Example:
      >>> import tensorflow as tf
      >>> with quiet_conversion():
      ...     data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    """
    if verbose():
        yield
        return
    with _python_loggers_at_error(), contextlib.redirect_stdout(io.StringIO()), native_stderr_captured(), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SPURIOUS_INT8_WARNING, category=UserWarning)
        warnings.filterwarnings("ignore", message=_CALIBRATOR_INTERPRETER_WARNING, category=UserWarning)
        yield


#: TF's lite/python/convert.py, on each calibrated full-int8 conversion (see the module docstring).
_SPURIOUS_INT8_WARNING = "Statistics for quantized inputs were expected, but not specified"
#: TF's lite/python/interpreter.py, when its calibrator makes a tf.lite.Interpreter (named inputs).
_CALIBRATOR_INTERPRETER_WARNING = r"\s*Warning: tf\.lite\.Interpreter is deprecated"

