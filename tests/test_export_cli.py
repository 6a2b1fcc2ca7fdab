"""`dc-keras pack`, `unpack`, `inspect` as a user runs them."""
import subprocess
import sys

import _export_models as em
from dc_keras import export


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dc_keras.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_pack_unpack_inspect_commands(tmp_path):
    plain = em.tflite("dense", None)
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    packed, restored = tmp_path / "m.packed.tflite", tmp_path / "m.restored.tflite"
    r = _cli("pack", src, packed)
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == plain  # input untouched
    assert packed.read_bytes() == export.pack(plain)
    r = _cli("unpack", packed, restored)
    assert r.returncode == 0, r.stderr
    assert restored.read_bytes() == export.unpack(packed.read_bytes())
    r = _cli("inspect", packed, f"--plot={tmp_path / 'sizes.png'}")
    assert r.returncode == 0, r.stderr
    assert "packed" in r.stdout and "file:" in r.stdout and (tmp_path / "sizes.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.tflite", "m.packed.tflite", "m.restored.tflite", "sizes.png"])  # no temporary files left


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all, definitely")
    r = _cli("pack", bad, tmp_path / "out.tflite")
    assert r.returncode != 0 and "not a .tflite" in r.stderr
    assert not (tmp_path / "out.tflite").exists()
    r = _cli("pack", bad, bad)
    assert r.returncode != 0 and "must differ" in r.stderr
    assert bad.read_bytes() == b"not a model at all, definitely"
    r = _cli("inspect")
    assert r.returncode != 0
