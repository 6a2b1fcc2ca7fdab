"""The integer bias figures of docs/quantization.md (int16x8 int64 biases, FORMAT.md §16; integer
planes, §17): sizes only, on the models tests/test_export_v3_types.py and tests/test_export_v4_ints.py
build (same code, imported from tests/), so the doc's figures come from a recorded run.

    .venv/bin/python benchmarks/int_biases.py --json docs/results/int_biases.json

Models (each converted by TFLite's converter here; a few seconds each):

- ``int16x8``: 16 -> 2048 (relu) -> 10, int16x8, weights shared among 16 values, 75 % of the hidden
  biases zero (test_export_v3_types.int16x8_model()); its 2048-entry int64 bias and the whole file,
  packed by default, with version=2 (int64 kept raw) and version=3;
- ``int16x8_no_zero``: the same with no zero bias (16 shared bias values);
- ``int16x8_unclustered``: the initial (unclustered) weights, 75 % zero biases;
- ``int16x8_unclustered_no_zero``: unclustered, no zero bias (2047 distinct int64 values);
- ``int8_cnn``: test_export_v4_ints' per-channel int8 CNN, its 512 B int32 dense-layer bias;
- ``gather_mask`` (FORMAT.md §16): test_export_v3_types' GATHER with a 4096-entry int64 index table
  and a (1, 4096) bool mask, the file before and after ``pack``.

For each bias: raw bytes, distinct values, ``codec.encode`` with every layout (the default) and with
the layouts before §17 (``old_layouts``: what ``pack(version=3)`` may write), with layout 6 alone,
and whether the old layouts' best is over raw (then version 3 keeps it raw).
"""
import os
import warnings

import numpy as np

from _common import child_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")  # the child imports the tests' model builders from here (PYTHONPATH)


def bias(data, dtype, n):
    from test_export_v3_types import _constants

    [(name, raw)] = [(k, b) for k, (t, s, b) in _constants(data).items() if t == dtype and s == [n]]
    return name, np.frombuffer(raw, {"int64": np.int64, "int32": np.int32}[dtype])


def row(label, data, dtype, n):
    from dc_keras import codec, export
    from test_export_v4_ints import OLD_LAYOUTS

    name, a = bias(data, dtype, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pack's "kept raw" / version notes: the sizes are the point
        files = {"default": len(export.pack(data)), "version_3": len(export.pack(data, version=3)),
                 "version_2": len(export.pack(data, version=2))}
    old = len(codec.encode(a, layouts=OLD_LAYOUTS))
    try:
        planes = len(codec.encode(a, layouts=("int_planes",)))  # layout 6 alone (FORMAT.md §17's table)
    except ValueError:
        planes = None
    r = {"model": label, "file_bytes": len(data), "packed_file_bytes": files, "bias": name, "bias_dtype": dtype,
         "bias_raw_bytes": int(a.nbytes), "bias_distinct": int(np.unique(a).size),
         "bias_zero_fraction": float(np.mean(a == 0)), "bias_packed_bytes": len(codec.encode(a)),
         "bias_packed_bytes_old_layouts": old, "old_layouts_over_raw": old > a.nbytes,
         "bias_packed_bytes_int_planes_only": planes}
    print(r, flush=True)
    return r


def measure():
    """In the child (tests/ on PYTHONPATH): every row and the GATHER model (child_main writes them)."""
    from dc_keras import export
    from test_export_v3_types import gather_mask, int16x8_model
    from test_export_v4_ints import int8_cnn

    rows = [row("int16x8", int16x8_model(), "int64", 2048),
            row("int16x8_no_zero", int16x8_model(zeros=False), "int64", 2048),
            row("int16x8_unclustered", int16x8_model(clustered=False), "int64", 2048),
            row("int16x8_unclustered_no_zero", int16x8_model(clustered=False, zeros=False), "int64", 2048),
            row("int8_cnn", int8_cnn._get_wrapped_function()(), "int32", 128)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = gather_mask._get_wrapped_function()()  # FORMAT.md §16: int64 GATHER indices + bool mask
        gather = {"model": "gather_mask", "file_bytes": len(gm), "packed_file_bytes": {"default": len(export.pack(gm))}}
    print(gather, flush=True)
    return {"rows": rows, "gather_mask": gather}


def main(argv=None):
    return child_main(__file__, "int_biases", measure, argv, description=__doc__,
                      pythonpath=[TESTS], prefix="dc_keras-int-biases-")


if __name__ == "__main__":
    main()
