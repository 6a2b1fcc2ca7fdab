"""Log noise (issue 18): a ``to_tflite`` call prints nothing of TensorFlow's (C++ reader/loader
lines, Python INFO, Keras' signature print) unless DC_KERAS_VERBOSE=1; on failure the captured
C++ log is replayed; logger levels are restored afterwards."""
import logging
import os
import subprocess
import sys

import pytest

from dc_keras import _logs

_CONVERT = """
import os, sys
import keras
from dc_keras import export
m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
for verbose in ("0", "1"):
    os.environ["DC_KERAS_VERBOSE"] = verbose
    print("<<<", flush=True); print("<<<", file=sys.stderr, flush=True)
    assert export.to_tflite(m)[4:8] == b"TFL3"
    print(">>>", flush=True); print(">>>", file=sys.stderr, flush=True)
"""


def _between_markers(text):
    return [part.split(">>>", 1)[0] for part in text.split("<<<\n")[1:]]


def test_to_tflite_prints_nothing_unless_verbose():
    """One process (TensorFlow already imported, no TF_CPP_MIN_LOG_LEVEL: a notebook's case)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DC_KERAS_VERBOSE")}
    r = subprocess.run([sys.executable, "-c", _CONVERT], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (quiet_out, _), (quiet_err, verbose_err) = _between_markers(r.stdout), _between_markers(r.stderr)
    assert quiet_out == "" and quiet_err == "", (quiet_out, quiet_err)
    # the noise is real: the converter logs when not silenced
    assert "reader.cc" in verbose_err or "loader.cc" in verbose_err or "Ignored output_format" in verbose_err, \
        verbose_err


def test_failed_conversion_replays_the_captured_log(capfd):
    with pytest.raises(RuntimeError, match="boom"):
        with _logs.quiet_conversion():
            os.write(2, b"E0000 converter.cc] the reason\n")
            print("signature noise")
            raise RuntimeError("boom")
    out, err = capfd.readouterr()
    assert "the reason" in err and "signature noise" not in out
    with _logs.quiet_conversion():
        os.write(2, b"I0000 reader.cc] chatter\n")
    assert capfd.readouterr().err == ""


def test_logger_levels_are_restored():
    from absl import logging as absl_logging

    tf_logger = logging.getLogger("tensorflow")
    tf_logger.setLevel(logging.INFO)
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with _logs.quiet_conversion():
            assert tf_logger.level == logging.ERROR
            assert absl_logging.get_verbosity() == absl_logging.ERROR
        assert tf_logger.level == logging.INFO
        assert absl_logging.get_verbosity() == absl_logging.INFO
    finally:
        tf_logger.setLevel(logging.NOTSET)
        absl_logging.set_verbosity(absl_logging.WARNING)


def test_full_int8_export_raises_no_spurious_statistics_warning(monkeypatch):
    """Every to_tflite(quantize='int8', representative_data=x) relayed TF's UserWarning "Statistics
    for quantized inputs were expected, but not specified; continuing anyway": the calibration
    supplies those statistics, and the line read as if the user had left something out. It is
    dropped like the converter's other log lines; DC_KERAS_VERBOSE=1 still shows it; a warning of
    the same kind raised outside a conversion is untouched."""
    import warnings

    import keras
    import numpy as np

    from dc_keras import export

    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    for verbose in ("0", "1"):
        monkeypatch.setenv("DC_KERAS_VERBOSE", verbose)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert export.to_tflite(m, quantize="int8", representative_data=x, pack=False)[4:8] == b"TFL3"
            warnings.warn("Statistics for quantized inputs were expected, but not specified (the user's own)",
                          stacklevel=1)
        stats = [str(w.message) for w in caught if str(w.message).startswith("Statistics for quantized inputs")]
        assert len(stats) == (1 if verbose == "0" else 2), (verbose, stats)


def test_startup_default_respects_the_user(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("DC_KERAS_VERBOSE", raising=False)
    _logs.quiet_tensorflow_startup()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    _logs.quiet_tensorflow_startup()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
