"""The associated files of a real Model Maker-style model, read by the real C++ readers.

tests/test_associated_files.py checks the appended zip with Python's zipfile and a literal-offset
reader written here. This file runs the programs users run: tflite_support's image-classifier
``MetadataWriter`` (what Model Maker calls) writes the metadata and ``labels.txt``; the model is
packed and unpacked (``export.unpack``, the CLI, the C ``dc_unpack``); MediaPipe Tasks'
ImageClassifier and the TFLite Task Library's ImageClassifier (both C++, reading the zip with
minizip) must give every category with the same label and the same score bits from each unpacked
file as from the original, and tflite_support's ``MetadataDisplayer`` must show the same metadata
and files for the packed file and each unpacked one. A packed file needs our ``HuffDecode`` op, which neither runtime can
register, so apps unpack it first (docs/android.md); the zip's offsets are rewritten for the
unpacked file's length (docs/FORMAT.md §15). The controls show why: with the zip dropped, or
copied with its old offsets, both readers refuse the model for want of ``labels.txt``.

The writer and readers pin their own packages, so each lives in a venv under
``~/.cache/dc_keras/venvs/`` created here on first use (~40 s from PyPI, reused afterwards); if one
cannot be created the tests fail with pip's output, never skip.
"""
import io
import json
import os
import subprocess
import zipfile

import pytest

import _export_models as em
from _benchmarks import load as load_bench
from dc_keras import export

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_metadata_child.py")
VENVS = {"task_library": ("tflite-support-0.4.4", ["tflite-support==0.4.4"], "TFLite Support"),
         "mediapipe": ("mediapipe-1.2.3", ["mediapipe==1.2.3"], "MediaPipe")}
LABELS = [f"class_{i}" for i in range(10)]


def _python(reader):
    try:
        return load_bench("_venv").cached_venv(*VENVS[reader])
    except RuntimeError as exc:  # no venv: a failure with pip's output, never a skip
        pytest.fail(str(exc), pytrace=False)


def _child(python, *args):
    r = subprocess.run([python, CHILD, *map(str, args)], capture_output=True, text=True, timeout=600)
    hint = ("\n(tflite_support's native module needs Debian's libusb-1.0-0: `make install` installs it when "
            "run as root; otherwise apt install libusb-1.0-0)" if "libusb-1.0.so" in r.stderr else "")
    assert r.returncode == 0, f"{' '.join(map(str, args[:2]))} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}{hint}"
    return r.stdout


def _zip_start(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return min(i.header_offset for i in z.infolist())


@pytest.fixture(scope="module")
def files(tmp_path_factory, tools):
    """{name: path}: the original (metadata by tflite_support's writer), the packed file, its three
    unpacked forms, and the two controls."""
    import keras

    d = tmp_path_factory.mktemp("metadata")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3, activation="relu"), keras.layers.Conv2D(48, 1),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(len(LABELS)), keras.layers.Softmax()])
    (d / "plain.tflite").write_bytes(export.to_tflite(em.cluster_and_prune(model, prune=0.3), pack=False))
    (d / "labels.txt").write_text("\n".join(LABELS))
    _child(_python("task_library"), "write", d / "plain.tflite", d / "labels.txt", d / "original.tflite")
    original = (d / "original.tflite").read_bytes()
    packed = export.pack(original)
    (d / "packed.tflite").write_bytes(packed)
    unpacked = export.unpack(packed)
    (d / "unpacked.tflite").write_bytes(unpacked)
    r = em.cli("unpack", d / "packed.tflite", d / "cli_unpacked.tflite")
    assert r.returncode == 0, r.stderr
    r = subprocess.run([tools["dc_unpack"], d / "packed.tflite", d / "dc_unpacked.tflite"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # controls: the zip dropped; the zip copied unchanged (offsets still counted for the original)
    (d / "no_zip.tflite").write_bytes(unpacked[:_zip_start(unpacked)])
    (d / "stale_offsets.tflite").write_bytes(unpacked[:_zip_start(unpacked)] + original[_zip_start(original):])
    return {p.stem: str(p) for p in d.glob("*.tflite")}


def _classify(reader, paths):
    lines = [json.loads(line) for line in _child(_python(reader), "classify", reader, *paths).splitlines()
             if line.startswith("{")]
    assert [line["model"] for line in lines] == list(paths)
    return lines


@pytest.mark.parametrize("reader", [pytest.param("mediapipe", marks=pytest.mark.long), "task_library"])
def test_readers_get_the_labels_and_scores_from_unpacked_files(files, reader):
    """Every unpacked form gives the original's categories: all ten, each named by labels.txt,
    with bit-identical scores; the packed file itself is a fraction of the original's size."""
    names = ["original", "unpacked", "cli_unpacked", "dc_unpacked"]
    lines = _classify(reader, [files[n] for n in names])
    for name, line in zip(names, lines):
        assert "error" not in line, f"{reader} refused {name}: {line['error']}"
    original = lines[0]["categories"]
    assert sorted((i, label) for i, label, _ in original) == list(enumerate(LABELS))
    for name, line in zip(names[1:], lines[1:]):
        assert line["categories"] == original, f"{reader} on {name}"
    assert os.path.getsize(files["packed"]) < os.path.getsize(files["original"]) / 3


def test_metadata_displayer_shows_the_same_metadata_and_files(files):
    """tflite_support's MetadataDisplayer (Python, no runtime needed) shows the original's metadata
    and associated files, byte for byte, for the packed file and for each unpacked one."""
    names = ["original", "packed", "unpacked", "cli_unpacked", "dc_unpacked"]
    lines = [json.loads(line) for line in
             _child(_python("task_library"), "display", *(files[n] for n in names)).splitlines()
             if line.startswith("{")]
    assert [line["model"] for line in lines] == [files[n] for n in names]
    original = lines[0]
    assert list(original["files"]) == ["labels.txt"] and '"name": "labels.txt"' in original["metadata"]
    for name, line in zip(names[1:], lines[1:]):
        assert (line["metadata"], line["files"]) == (original["metadata"], original["files"]), name


@pytest.mark.parametrize("reader", [pytest.param("mediapipe", marks=pytest.mark.long), "task_library"])
def test_readers_refuse_a_dropped_or_stale_zip(files, reader):
    """The controls: without the zip, or with the zip's offsets left as they were in the larger
    original (pointing past where the archive now is), the reader finds no labels.txt."""
    for line in _classify(reader, [files["no_zip"], files["stale_offsets"]]):
        assert "error" in line and "labels.txt" in line["error"], line
