"""docs/FORMAT.md §15's unpack size table: ``dc_keras.export.unpack`` (Python) against ``dc_unpack``
(C, ``dc_keras.runtime.unpack``) on the models tests/test_runtime_unpack.py unpacks; sizes only.

    .venv/bin/python benchmarks/unpack_sizes.py --json docs/results/unpack_sizes.json

Models: the tests' float MLP (``_export_models.tflite("dense", None)``), int8 CNN (``("conv",
"int8")``), a 2-layer 512-wide FULLY_CONNECTED chain with its buffers after the flatbuffer
(``bench_scale.build(2, 512, buffers="external")``, packed with ``buffers="external"``) and the
DENSIFY MLP of tests/test_export_pack.py (``_sparse_tflite(block=False)``). For each: the file, the
packed file, the packed tensors, both unpacked sizes and whether both unpacked files hold the same
decoded tensors. The tests' builders are imported in a child with tests/ on PYTHONPATH.
"""
import argparse
import json
import os
import time
import warnings

from _common import child_json, command_line, machine_info, record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def measure(out):
    import _export_models as em
    import bench_scale
    import test_export_pack

    from dc_keras import _flatbuffer as fb
    from dc_keras import export, runtime

    warnings.simplefilter("ignore")
    cases = [("float MLP", em.tflite("dense", None), {}),
             ("int8 CNN", em.tflite("conv", "int8"), {}),
             ("FC chain, buffers after the flatbuffer", bench_scale.build(2, 512, buffers="external"),
              {"buffers": "external"}),
             ("DENSIFY MLP", test_export_pack._sparse_tflite(block=False)[0], {})]
    rows = []
    for name, plain, kw in cases:
        packed = export.pack(plain, **kw)
        py, c = export.unpack(packed), runtime.unpack(packed)
        rows.append({"model": name, "bytes": len(plain), "packed_bytes": len(packed),
                     "packed_tensors": len(export._pack.packed_tensors(fb.read_model(packed))),
                     "python_unpack_bytes": len(py), "c_unpack_bytes": len(c), "c_extra_bytes": len(c) - len(py)})
        print(rows[-1], flush=True)
    with open(out, "w") as f:
        json.dump({"rows": rows}, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return measure(args.child)
    t0, info = time.time(), machine_info()
    measured = child_json(__file__, pythonpath=[TESTS], prefix="dc_keras-unpack-sizes-")
    result = {"benchmark": "unpack_sizes", "seconds": round(time.time() - t0, 1), **measured,
              "command": command_line(__file__, argv), "machine": info}
    return record(args.json, result)


if __name__ == "__main__":
    main()
