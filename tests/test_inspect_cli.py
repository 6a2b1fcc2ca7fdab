"""`dc-keras inspect` / `pack` reporting (QA session 6): tensors the packer refuses show their
data's statistics and the reason (never `nan`), refusals are reported by `pack` too, and a bad
`--plot` path is refused before any work, with one error line naming the problem and the fix.

The CLI runs in-process (`dc_keras.cli.main`); tests/test_export_cli.py covers the subprocess path.
"""
import functools
import os

import numpy as np
import pytest

from dc_keras import cli, export


@functools.lru_cache(maxsize=None)
def _int64_tflite():
    """A .tflite whose one constant is int64 (2000 values in 0..6): ``x + c`` on an int64 input."""
    import tensorflow as tf

    c = tf.constant(np.arange(2000, dtype=np.int64) % 7)

    @tf.function(input_signature=[tf.TensorSpec([2000], tf.int64)])
    def f(x):
        return x + c

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


@pytest.fixture()
def int64_file(tmp_path):
    p = tmp_path / "int64.tflite"
    p.write_bytes(_int64_tflite())
    return p


def test_inspect_of_a_refused_int64_tensor_gives_stats_and_reason(int64_file, capsys):
    report = export.inspect(int64_file.read_bytes())
    (row,) = report.rows
    assert row.dtype == "int64" and row.status == "refused" and row.packed_bytes is None
    assert row.density == pytest.approx(1 - 286 / 2000) and row.distinct == 7  # 286 zeros, 0..6
    assert "int64" in row.reason and "no packed-format element type" in row.reason
    assert cli.main(["inspect", str(int64_file)]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out, out
    line = next(ln for ln in out.splitlines() if ln.lstrip().startswith("0 add/y"))
    assert " 0.857 " in line and " 7 " in line and "refused" in line and "no packed-format" in line, line
    assert "refused: 1 tensor(s), 16000 B stay raw" in out, out


def test_unreadable_refused_tensor_shows_a_dash_not_nan():
    """A constant whose buffer does not hold its declared shape: no statistics, '-' and the reason."""
    from dc_keras.export._inspect import Report, TensorRow

    row = TensorRow(0, "t", "int64", (3,), None, None, 5, None, "refused", "buffer holds 5 B, not ...")
    text = Report(file_bytes=100, rows=[row], packed=False).to_text()
    assert "nan" not in text and "buffer holds 5 B" in text, text
    assert Report(file_bytes=100, rows=[], packed=False).to_text().count("nan") == 0


def test_pack_reports_the_tensors_it_cannot_pack(int64_file, tmp_path, capsys):
    out = tmp_path / "p.tflite"
    assert cli.main(["pack", str(int64_file), str(out)]) == 0
    text = capsys.readouterr().out
    assert "not packed: 1 constant tensor(s), 16000 B" in text, text
    assert "add/y: 16000 B: int64: no packed-format element type for it" in text, text
    _, stats = export._pack.pack_with_stats(int64_file.read_bytes())
    assert stats["refused"] == [("add/y", 16000, "int64: no packed-format element type for it")]


def test_pack_of_a_packable_model_reports_no_refusal(tmp_path, capsys):
    import _export_models as em

    src = tmp_path / "m.tflite"
    src.write_bytes(em.tflite("dense", None))
    assert cli.main(["pack", str(src), str(tmp_path / "p.tflite")]) == 0
    assert "not packed" not in capsys.readouterr().out
