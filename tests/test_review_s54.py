"""Session 54's lead review: checks of what the session changed."""
import os
import re

import keras
import numpy as np
import pytest

import dc_keras
from dc_keras.train.strip import FLOAT32_COPY_BY_HAND

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Sub(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = keras.layers.Dense(4, name="fc", dtype="mixed_float16")
        self.out = keras.layers.Dense(2, name="out", dtype="float32")

    def call(self, x):
        return self.out(self.fc(x))


def test_the_subclassed_models_float32_copy_is_told_in_the_same_words_by_strip_and_to_tflite():
    """A subclassed model computing in float16 cannot be rebuilt by strip(dtype='float32'); strip's
    error and to_tflite's said how to make the copy by hand in two wordings (session 53's final read).
    Both now say the one phrase, FLOAT32_COPY_BY_HAND."""
    model = _Sub()
    model(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError) as strip_error:
        dc_keras.strip(model, dtype="float32")
    with pytest.raises(RuntimeError) as export_error:
        dc_keras.export.to_tflite(model, pack=False)
    for text in (str(strip_error.value), str(export_error.value)):
        assert FLOAT32_COPY_BY_HAND in text, text
    assert re.search(r"compute in float16 \(a mixed-precision dtype policy\).*" + re.escape(FLOAT32_COPY_BY_HAND)
                     + r" and export that", str(export_error.value), re.S)


def test_tflm_run_imports_the_tflm_runtime_without_tensorflow():
    """tools/mcu/tflm_run.py: tflite_micro's runtime imported TensorFlow (flatbuffer_utils' schema_util
    and gfile), ~6.7 of each tflm_run process's CPU seconds; make test's micro tests took 162 CPU s,
    113 with the stand-ins (session 54). The runtime now loads without it, and flatbuffer_utils' gfile
    still works (the real TensorFlow imported at its first use)."""
    import subprocess
    import sys as _sys

    mcu = os.path.join(ROOT, "tools", "mcu")
    _sys.path.insert(0, mcu)
    try:
        import tflm_env
    finally:
        _sys.path.remove(mcu)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import tflm_run; rt = tflm_run._tflm_runtime(); "
            "print('runtime', rt.Interpreter.__name__, 'tensorflow' in sys.modules); "
            "from tflite_micro.tensorflow.lite.tools import flatbuffer_utils as fu; "
            "print('gfile', fu.gfile.Exists(sys.argv[2]), 'tensorflow' in sys.modules)")
    r = subprocess.run([tflm_env.ensure(), "-c", code, mcu, __file__], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.splitlines()[-2:] == ["runtime Interpreter False", "gfile True True"], r.stdout
