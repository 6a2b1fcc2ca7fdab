"""The real writer and readers of TFLite metadata's associated files, run by
tests/test_metadata_readers.py in their own venvs (they pin their own protobuf / runtimes):

    python tests/_metadata_child.py write MODEL LABELS OUT
        tflite_support's image-classifier ``MetadataWriter`` (what Model Maker runs): MODEL with
        metadata naming LABELS as its label file, and LABELS in the zip appended after it -> OUT.
    python tests/_metadata_child.py classify READER MODEL...
        READER is ``mediapipe`` (MediaPipe Tasks' ImageClassifier) or ``task_library``
        (tflite_support's Task Library ImageClassifier); both are C++ (minizip) readers of the
        appended zip. Classifies one fixed 32x32 RGB image with each MODEL and prints one JSON line
        per model: {"model": path, "categories": [[index, name, score as float.hex()], ...]}
        (every category, best first), or {"model": path, "error": "<type>: <message>"} when the
        reader refuses the model (e.g. no associated file named by the metadata).
    python tests/_metadata_child.py display MODEL...
        tflite_support's ``MetadataDisplayer`` (Python; reads the packed file too: it needs no
        runtime): one JSON line per model, {"model": path, "metadata": the metadata as JSON,
        "files": {name: sha256 of the associated file}}.
"""
import json
import sys

import numpy as np


def write(model, labels, out):
    from tflite_support.metadata_writers import image_classifier, writer_utils

    writer = image_classifier.MetadataWriter.create_for_inference(
        writer_utils.load_file(model), [127.5], [127.5], [labels])
    with open(out, "wb") as f:
        f.write(writer.populate())


def _classify(reader, path, image):
    if reader == "mediapipe":
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=path))
        with vision.ImageClassifier.create_from_options(options) as classifier:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
    elif reader == "task_library":
        from tflite_support.task import core, vision

        options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=path))
        result = vision.ImageClassifier.create_from_options(options).classify(
            vision.TensorImage.create_from_array(image))
    else:
        raise SystemExit(f"unknown reader {reader!r}: mediapipe or task_library")
    return [[c.index, c.category_name, float(c.score).hex()] for c in result.classifications[0].categories]


def classify(reader, models):
    image = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)
    for path in models:
        try:
            line = {"model": path, "categories": _classify(reader, path, image)}
        except Exception as exc:  # the reader's refusal is the result
            line = {"model": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(line), flush=True)


def display(models):
    import hashlib

    from tflite_support import metadata

    for path in models:
        shown = metadata.MetadataDisplayer.with_model_file(path)
        files = {name: hashlib.sha256(shown.get_associated_file_buffer(name)).hexdigest()
                 for name in shown.get_packed_associated_file_list()}
        print(json.dumps({"model": path, "metadata": shown.get_metadata_json(), "files": files}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["write"] and len(sys.argv) == 5:
        write(*sys.argv[2:])
    elif sys.argv[1:2] == ["classify"] and len(sys.argv) >= 4:
        classify(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["display"] and len(sys.argv) >= 3:
        display(sys.argv[2:])
    else:
        raise SystemExit(__doc__)
