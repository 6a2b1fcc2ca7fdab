"""What docs/FORMAT.md §15's two container changes not made would save: sizes only, deterministic ->
docs/results/format_container_variants.json.

    .venv/bin/python benchmarks/container_variants.py --json docs/results/format_container_variants.json

On the int8 DS-CNN and autoencoder of tests/test_micro_cnn.py (its own builder, each model in a
fresh Keras session, packed by ``pack``'s defaults), the packed file is read and written again by
dc_keras's writer three ways:
  - ``as_packed``: unchanged (the packed tensors' data 4-byte aligned at the end, as ``pack`` writes
    them), the base of the savings (``packed_bytes``: pack's own file, for comparison);
  - ``one_op``: the subgraph's ``HuffDecode`` ops replaced by one, at the first one's place, with
    every packed tensor as an input and every decoded tensor as the matching output;
  - ``one_tensor``: that op with one packed input: every packed tensor's data, each 4-byte aligned,
    one after the other in the first packed tensor's buffer, the other packed tensors and their
    buffers removed.
No decoder reads these files: each would be a container change (FORMAT.md §15); only their sizes
are the point.
"""
import os
import warnings

import numpy as np

from _common import child_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def _huffdecode_ops(model):
    from dc_keras import _flatbuffer as fb

    codes = {k for k, c in enumerate(model.operatorCodes or []) if fb.is_huffdecode_code(c)}
    [sg] = model.subgraphs
    return [k for k, op in enumerate(sg.operators) if op.opcodeIndex in codes]


def _read(data):
    """``data`` as a ModelT whose packed tensors' buffers are written as ``pack`` writes them."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export._pack import packed_tensors

    model = fb.read_model(data)
    for _, t, _ in packed_tensors(model):
        b = model.subgraphs[0].tensors[t].buffer
        packed = fb.PackedBufferT()
        packed.__dict__.update(model.buffers[b].__dict__)
        model.buffers[b] = packed
    return model


def one_op(data):
    """The model with one HuffDecode op (N inputs, N outputs) for its N."""
    model = _read(data)
    ops = _huffdecode_ops(model)
    sg = model.subgraphs[0]
    first = sg.operators[ops[0]]
    first.inputs = [int(sg.operators[k].inputs[0]) for k in ops]
    first.outputs = [int(sg.operators[k].outputs[0]) for k in ops]
    sg.operators = [op for k, op in enumerate(sg.operators) if k not in ops[1:]]
    return model


def one_tensor(data):
    """``one_op``'s model with every packed tensor's data in the first one's buffer (4-byte aligned)."""
    from dc_keras import _flatbuffer as fb
    from dc_keras.export._pack import _remove_tensors, _remove_unused_buffers

    model = one_op(data)
    sg = model.subgraphs[0]
    op = sg.operators[_huffdecode_ops(model)[0]]
    parts = []
    for t in op.inputs:
        raw = bytes(fb.buffer_bytes(model, sg.tensors[t].buffer))
        parts.append(raw + bytes(-len(raw) % 4))
    joined = b"".join(parts)
    keep, rest = int(op.inputs[0]), [int(t) for t in op.inputs[1:]]
    model.buffers[sg.tensors[keep].buffer].data = np.frombuffer(joined, np.uint8)
    sg.tensors[keep].shape = [len(joined)]
    op.inputs = [keep]
    buffers = {sg.tensors[t].buffer for t in rest}
    _remove_tensors(model, 0, set(rest))
    _remove_unused_buffers(model, buffers)
    return model


def measure():
    """In the child (tests/ on PYTHONPATH): both models (child_main writes them)."""

    import keras
    import test_micro_cnn as cnn

    from dc_keras import _flatbuffer as fb

    rows = []
    for name in cnn.MODELS:
        keras.backend.clear_session()  # names as in a process of its own (mcu_bench.py --test-models)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain, packed, _ = cnn._compressed_int8(name)
        n = len(_huffdecode_ops(fb.read_model(packed)))
        sizes = {"as_packed": len(fb.write_model(_read(packed))), "one_op": len(fb.write_model(one_op(packed))),
                 "one_tensor": len(fb.write_model(one_tensor(packed)))}
        base = sizes["as_packed"]  # the same writer as the variants (pack's own file may differ by padding)
        rows.append({"model": name, "bytes": len(plain), "packed_bytes": len(packed), "packed_tensors": n,
                     "variant_bytes": sizes,
                     "saved_bytes": {k: base - sizes[k] for k in ("one_op", "one_tensor")},
                     "saved_per_packed_tensor": {k: round((base - sizes[k]) / n, 1) for k in ("one_op", "one_tensor")}})
        print(rows[-1], flush=True)
    return {"rows": rows}


def main(argv=None):
    return child_main(__file__, "format_container_variants", measure, argv, description=__doc__, frameworks=False,
                      pythonpath=[TESTS], prefix="dc_keras-container-")


if __name__ == "__main__":
    main()
