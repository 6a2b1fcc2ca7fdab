"""Re-packs the files a ``model_zoo.py`` run left in its work dir with ``pack``'s size options, and
adds the sizes to that run's JSON rows (key ``repacked``; the zoo models are not retrained): after
a change of ``pack``'s structure (e.g. FORMAT.md §15's nameless packed tensors) this measures the
same weights packed by today's ``pack``.

For each row of ``--json`` whose ``<work_dir>/<model>.packed.tflite`` is the file the row measured
(same byte count), the file is unpacked and packed again with ``strip_strings`` and/or ``compact``;
every variant's outputs on the first ``--samples`` test inputs must be bit-identical to the run's
packed file, else the row records the mismatch (and no ratio).

    .venv/bin/python benchmarks/zoo_repack.py --json=docs/results/model_zoo_seq_transformer.json
"""
import json
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

HERE = os.path.dirname(os.path.abspath(__file__))

import model_zoo  # noqa: E402  benchmarks/ is on sys.path when run as a script; its --json: the JSON to extend, in place

FLAGS = flags.FLAGS
flags.DEFINE_integer("samples", 500, "test inputs compared bit for bit")

# "default": pack's defaults (names kept; compact on since 2026-11-30); "no_compact": every table
# kept, as pack wrote before that (but with its nameless 4-byte aligned packed tensors).
VARIANTS = {"default": {}, "no_compact": dict(compact=False), "strip_strings": dict(strip_strings=True),
            "strip_strings+compact": dict(strip_strings=True, compact=True)}


def repack_row(row, path, samples):
    """The ``repacked`` entry of one zoo row: bytes, ratio and bit-identity per pack variant."""
    from dc_keras import export, pipeline

    with open(path, "rb") as f:
        packed = f.read()
    if len(packed) != row["packed_bytes"]:
        return {"error": f"{path} has {len(packed)} B, the row measured {row['packed_bytes']} B (another run?)"}
    _, _, (xt, _) = model_zoo.load(row["data"])
    x = xt[:samples]
    ref = pipeline.predict_tflite(packed, x).tobytes()
    plain = export.unpack(packed)
    out = {"samples_compared": len(x)}
    for name, kwargs in VARIANTS.items():
        data = export.pack(plain, **kwargs)
        same = pipeline.predict_tflite(data, x).tobytes() == ref
        out[name] = {"bytes": len(data), "outputs_identical": same,
                     "ratio": row["float_tflite_bytes"] / len(data) if same else None}
    return out


def main(argv):
    del argv
    from _common import write_json

    with open(FLAGS.json) as f:
        result = json.load(f)
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    for row in result["models"]:
        path = os.path.join(FLAGS.work_dir, f"{row['model']}.packed.tflite")
        if not os.path.exists(path):
            print(f"{row['model']}: no {path}; skipped")
            continue
        row["repacked"] = repack_row(row, path, FLAGS.samples)
        row["repacked"].update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=commit,
                               command="benchmarks/zoo_repack.py " + shlex.join(sys.argv[1:]))
        print(row["model"], json.dumps(row["repacked"]))
    write_json(FLAGS.json, result)


if __name__ == "__main__":
    app.run(main)
