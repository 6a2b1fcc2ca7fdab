"""TFLM's own compression (tflite_micro.compression, LUT) of a .tflite, for size comparisons.

    PYTHONPATH=<lut tool dir> python tools/mcu/tflm_lut.py IN.tflite OUT.tflite   # prints JSON

Uses the compression package of a newer tflite-micro nightly (tflm_env.ensure_lut_tool(): pure
Python, installed --no-deps into its own directory; the runtime wheel pinned for the kernel only
LUT-compresses quantized tensors, this one also float ones).  Every constant tensor of >= 1000
elements is compressed with the smaller of one value table (per tensor) or one per output channel
(axis 0 of a FULLY_CONNECTED weight; the quantized axis of a per-channel tensor), at the smallest
index width (1..7 bits) that holds its values; tensors needing more than 7 bits are left as they
are and listed.  Huffman and pruning encoders of that package are stubs ("not yet implemented").
"""
import importlib
import json
import os
import sys

import numpy as np


def _bits(n):
    return max(1, int(np.ceil(np.log2(max(n, 1)))))


def plan(model_bytes):
    spec = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.spec")
    me = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.model_editor")
    model = me.read(model_bytes)
    specs, rows = [], []
    for si, sg in enumerate(model.subgraphs):
        for ti, t in enumerate(sg.tensors):
            try:
                arr = t.array
            except (TypeError, ValueError, AttributeError):
                continue
            if arr is None or arr.size < 1000:
                continue
            q = getattr(t, "quantization", None)
            axis = int(getattr(q, "axis", 0) or 0) if q is not None else 0
            per_t = _bits(len(np.unique(arr)))
            per_c = _bits(max(len(np.unique(s)) for s in np.moveaxis(arr, axis, 0)))
            cost_t = per_t * arr.size / 8 + (2 ** per_t) * arr.itemsize
            cost_c = per_c * arr.size / 8 + (2 ** per_c) * arr.itemsize * arr.shape[axis]
            options = [(cost_t, per_t, spec.PerTensor()), (cost_c, per_c, spec.PerChannel(axis=axis))]
            options = [o for o in options if o[1] <= 7]
            if not options:
                rows.append({"tensor": ti, "shape": list(arr.shape), "skipped": "needs > 7 index bits"})
                continue
            cost, bits, mode = min(options, key=lambda o: o[0])
            specs.append(spec.Tensor(subgraph=si, tensor=ti,
                                     compression=[spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)]))
            rows.append({"tensor": ti, "shape": list(arr.shape), "bits": bits, "mode": type(mode).__name__})
    return specs, rows


def main(argv=None):
    src, dst = (argv or sys.argv[1:])[:2]
    tc = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
    with open(src, "rb") as f:
        data = f.read()
    specs, rows = plan(data)
    out = bytes(tc.compress(data, specs))
    tmp = f"{dst}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, dst)
    import tflite_micro

    print(json.dumps({"bytes": len(out), "tensors": rows, "tool": tflite_micro.__version__}))


if __name__ == "__main__":
    main()
