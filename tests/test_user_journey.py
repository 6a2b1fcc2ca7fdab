"""What a new user meets when following the README and docs/ (session 5 user-journey review):
errors that name the problem *and* the fix, documented CLI flags that exist, `python -m dc_keras`,
tfmot names the drop-in does not have, and exporting a model that was not stripped.

The CLI cases run `dc_keras.cli.main` in-process (the subprocess path is covered by
tests/test_cli_errors.py); each must print exactly one `dc-keras CMD: error: ...` line.
"""
import errno
import os
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dc_keras import _fileio, cli, export

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def plain():
    import _export_models as em

    return em.tflite("dense", None)


def _error(capsys, argv):
    """Runs the CLI; returns its one error line (asserting exit 1, one line, no traceback)."""
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert status == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"dc-keras {argv[0]}: error: "), err
    assert "Traceback" not in err
    return err


# -- bad input files: the problem and what to do ------------------------------------------------

@pytest.mark.parametrize("cut", [16, 100, 0.5, -1])
def test_truncated_file_says_truncated_and_what_to_do(plain, cut):
    n = cut if isinstance(cut, int) and cut > 0 else len(plain) - 1 if cut == -1 else int(len(plain) * cut)
    for fn in (export.pack, export.unpack, export.inspect):
        with pytest.raises(ValueError) as info:
            fn(plain[:n])
        text = str(info.value)
        assert "malformed .tflite" in text and "truncated or corrupt" in text and "again" in text, text
        assert "unpack_from" not in text  # no struct internals


def test_truncated_file_through_the_cli(tmp_path, plain, capsys):
    src = tmp_path / "cut.tflite"
    src.write_bytes(plain[: len(plain) // 2])
    line = _error(capsys, ["pack", src, tmp_path / "out.tflite"])
    assert "points past the end of the file" in line and "truncated or corrupt" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tflite"]


def test_not_a_tflite_says_what_to_give(tmp_path, capsys):
    src = tmp_path / "notes.tflite"
    src.write_text("some text, not a model\n" * 4)
    line = _error(capsys, ["inspect", src])
    assert "not a .tflite model" in line and "TFLiteConverter" in line, line
    with pytest.raises(ValueError, match=r"zip archive \(a \.keras model\?\).*to_tflite"):
        export.inspect(b"PK\x03\x04" + bytes(60))


def test_path_instead_of_bytes_says_read_it(plain):
    for fn in (export.pack, export.unpack, export.inspect):
        with pytest.raises(TypeError, match=r"got str: read the file first"):
            fn("model.tflite")
        with pytest.raises(TypeError, match=r"got PosixPath: read the file first"):
            fn(pathlib.Path("model.tflite"))
