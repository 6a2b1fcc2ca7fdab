"""docs/FORMAT.md §15's unpack size table: ``dc_keras.export.unpack`` (Python) against ``dc_unpack``
(C, ``dc_keras.runtime.unpack``) on the models tests/test_runtime_unpack.py unpacks, and what
``pack`` adds per packed tensor (docs/packing.md, docs/runtime.md, FORMAT.md §15, docs/android.md); sizes only.

    .venv/bin/python benchmarks/unpack_sizes.py --json docs/results/unpack_sizes.json

Models: the tests' float MLP (``_export_models.tflite("dense", None)``), int8 CNN (``("conv",
"int8")``), a 2-layer 512-wide FULLY_CONNECTED chain with its buffers after the flatbuffer
(``bench_scale.build(2, 512, buffers="external")``, packed with ``buffers="external"``) and the
DENSIFY MLP of tests/test_export_pack.py (``_sparse_tflite(block=False)``), MobileNetV2-0.35 (the
zoo's ``model_zoo.mobilenetv2_035``, 32x32x3, seeded with keras.utils.set_random_seed(0), not
trained: each layer of the zoo's sparsity plan magnitude-pruned to its target with numpy, then
``dc_keras.cluster(bits=5)`` and ``strip``, ``to_tflite(pack=False)``; its sizes, not its accuracy)
and tests/data/zoo_lstm128.packed.tflite, a file of the packer of 2026-11-29 (named packed tensors,
packed data not at the end: ``dc_unpack`` keeps them), plus that file unpacked and packed again.

For each: the file, the packed file, the packed tensors, both unpacked sizes, and
- ``pack_bytes_per_packed_tensor``: what pack adds per packed tensor besides its packed bytes:
  packed file minus its zero-overhead twin (tests/test_pack_structure.py: the packed bytes in the
  decoded tensor's own buffer, no HuffDecode op or packed tensor), over the packed tensors; null
  when two decoded tensors share a buffer (an LSTM's zero loop states: the twin holds one of their
  packed data);
- ``payload_bytes``, ``decoded_bytes``: the packed tensors' data, the decoded tensors' (each buffer
  once; ``appended_buffers``: how many buffers, the Buffer tables ``dc_unpack`` appends);
- ``c_cut``: where ``dc_unpack``'s copy of the packed file stops (the first packed data vector's
  length prefix; after the flatbuffer: its Buffer.offset), or null when the packed data are not the
  file's tail (older files);
- ``c_appended_overhead_bytes``: ``dc_unpack``'s output past ``c_cut`` minus the decoded tensors'
  bytes (the appended Buffer tables, their alignment, 4 B of empty vtable); ``c_tables_left_bytes``:
  the rest of ``c_extra_bytes`` (packing tables left in place, and the packed data when not cut).
The tests' builders are imported in a child with tests/ on PYTHONPATH.
"""
import os
import warnings

from _common import child_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


OLD_FILE = os.path.join(TESTS, "data", "zoo_lstm128.packed.tflite")


def mobilenet_tflite():
    """MobileNetV2-0.35 as described above: the zoo's pruning plan and bits, no training."""
    import keras
    import model_zoo
    import numpy as np

    import dc_keras
    from dc_keras import export

    keras.utils.set_random_seed(0)
    model = model_zoo.mobilenetv2_035()
    targets, _ = model_zoo.sparsity_plan(model, model_zoo.ZOO["mobilenetv2_035"])
    for name, sparsity in targets.items():
        layer = model.get_layer(name)
        ws = layer.get_weights()
        k = ws[0]
        ws[0] = np.where(np.abs(k) <= np.quantile(np.abs(k), sparsity), 0, k).astype(k.dtype)
        layer.set_weights(ws)
    shared = dc_keras.strip(dc_keras.cluster(model, bits=model_zoo.ZOO["mobilenetv2_035"]["bits"]))
    return export.to_tflite(shared, pack=False)


def _data_start(root, b):
    """Where buffer ``b``'s data start in the file: its length prefix (inline) or Buffer.offset."""
    buf = root.Buffers(b)
    if buf.Offset() > 1:
        return buf.Offset()
    return buf._tab.Vector(buf._tab.Offset(4)) - 4


def sizes(name, plain, packed):
    """One row (see the module docstring)."""
    import test_pack_structure

    from dc_keras import _flatbuffer as fb
    from dc_keras import export, runtime

    py, c = export.unpack(packed), runtime.unpack(packed)
    model, root = fb.read_model(packed), fb.schema.Model.GetRootAs(packed, 0)
    pairs = export._pack.packed_tensors(model)
    packed_buffers = {model.subgraphs[s].tensors[p].buffer for s, p, _ in pairs}
    payload = sum(len(fb.buffer_bytes(model, b)) for b in packed_buffers)
    cm = fb.read_model(c)
    decoded_buffers = {cm.subgraphs[s].tensors[o].buffer for s, _, o in pairs}
    decoded = sum(len(fb.buffer_bytes(cm, b)) for b in decoded_buffers)
    cut = min(_data_start(root, b) for b in packed_buffers)
    kept = fb.buffer_bytes(cm, model.subgraphs[pairs[0][0]].tensors[pairs[0][1]].buffer) != b""
    appended = None if kept else len(c) - cut - decoded
    twin, n = test_pack_structure._zero_overhead_twin(packed)
    shared = len({(s, model.subgraphs[s].tensors[o].buffer) for s, _, o in pairs}) < n  # the twin keeps one
    row = {"model": name, "bytes": len(plain), "packed_bytes": len(packed), "packed_tensors": n,
           "python_unpack_bytes": len(py), "c_unpack_bytes": len(c), "c_extra_bytes": len(c) - len(py),
           "payload_bytes": payload, "decoded_bytes": decoded, "appended_buffers": len(decoded_buffers),
           "pack_bytes_per_packed_tensor": None if shared else round((len(packed) - len(twin)) / n, 1),
           "c_cut": None if kept else cut, "c_appended_overhead_bytes": appended,
           "c_tables_left_bytes": len(c) - len(py) - (appended or 0)}
    print(row, flush=True)
    return row


def measure():
    import _export_models as em
    import bench_scale
    import test_export_pack

    from dc_keras import export

    warnings.simplefilter("ignore")
    cases = [("float MLP", em.tflite("dense", None), {}),
             ("int8 CNN", em.tflite("conv", "int8"), {}),
             ("FC chain, buffers after the flatbuffer", bench_scale.build(2, 512, buffers="external"),
              {"buffers": "external"}),
             ("DENSIFY MLP", test_export_pack._sparse_tflite(block=False)[0], {}),
             ("MobileNetV2-0.35", mobilenet_tflite(), {})]
    rows = [sizes(name, plain, export.pack(plain, **kw)) for name, plain, kw in cases]
    with open(OLD_FILE, "rb") as f:
        old = f.read()
    plain = export.unpack(old)
    rows.append(sizes("zoo LSTM128, packer of 2026-11-29", plain, old))
    rows.append(sizes("zoo LSTM128, packed again", plain, export.pack(plain)))
    return {"rows": rows}


def main(argv=None):
    return child_main(__file__, "unpack_sizes", measure, argv, description=__doc__,
                      pythonpath=[TESTS], prefix="dc_keras-unpack-sizes-")


if __name__ == "__main__":
    main()
