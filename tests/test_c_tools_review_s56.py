"""dc_unpack (the C tool) refuses an OUT that is another model's .tflite, as `dc-keras unpack` does
(review s55: `dc-keras unpack *.tflite` in a folder of two models unpacked the first over the
second; the C tool did the same, silently)."""
import shlex
import subprocess

import pytest


def _run(args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def two_packed_models():
    import _export_models as em

    from dc_keras import export

    return export.pack(em.tflite("dense", None)), export.pack(em.tflite("conv", None))


def test_dc_unpack_refuses_to_unpack_over_another_model(tools, two_packed_models, tmp_path):
    a, b = two_packed_models
    assert a != b
    src, other = tmp_path / "a.tflite", tmp_path / "it's b.tflite"
    src.write_bytes(a)
    other.write_bytes(b)
    r = _run([tools["dc_unpack"], src, other])  # `dc_unpack *.tflite`: the second packed model is OUT
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert f"dc_unpack: OUT {other} is an existing .tflite model other than {src} unpacked" in r.stderr
    assert f"Choose a new OUT, or delete {shlex.quote(str(other))} first to replace it" in r.stderr, r.stderr
    assert other.read_bytes() == b and src.read_bytes() == a  # nothing lost, nothing written
    assert not [p for p in tmp_path.iterdir() if p.name not in (src.name, other.name)]  # no temporary left
    plain = tmp_path / "plain.tflite"
    assert _run([tools["dc_unpack"], tmp_path / other.name, plain]).returncode == 0
    r = _run([tools["dc_unpack"], src, plain])  # an unpacked model of other weights: refused too
    assert r.returncode == 1 and "is an existing .tflite model other than" in r.stderr, r.stderr


def test_dc_unpack_replaces_its_own_earlier_output_and_files_that_are_no_tflite(tools, two_packed_models, tmp_path):
    src, out = tmp_path / "a.tflite", tmp_path / "out.tflite"
    src.write_bytes(two_packed_models[0])
    assert _run([tools["dc_unpack"], src, out]).returncode == 0
    first = out.read_bytes()
    r = _run([tools["dc_unpack"], src, out])  # a re-run: the same bytes, replaced
    assert r.returncode == 0 and out.read_bytes() == first, r.stderr
    out.write_bytes(b"not a model at all")
    r = _run([tools["dc_unpack"], src, out])
    assert r.returncode == 0 and out.read_bytes() == first, r.stderr
