"""Runs .tflite models with ai-edge-litert and saves their outputs (used by `make test-arm`).

Runs on any architecture with only numpy and ai-edge-litert installed (no TensorFlow, no
dc_keras), e.g. the emulated aarch64 Python: ``python litert_run.py JOBS.json``.

JOBS.json is a list of jobs::

    [{"model": "m.tflite", "inputs": "in.npz", "output": "out.npz",
      "delegate": "/path/libdc_huffdecode.so" or null}]

``inputs`` holds arrays ``x0, x1, ...`` for the model's inputs in order; each array's first axis
is a batch of samples that are fed one at a time (models have batch size 1).  ``output`` receives
arrays ``y0, y1, ...`` stacked the same way.  All models run with the same op resolver,
``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (no XNNPACK), so packed and unpacked models use the same
kernels.  ``delegate`` is loaded with ``load_delegate`` (our HuffDecode external delegate).
Prints one JSON line with the platform and runtime versions.
"""
import json
import os
import platform
import sys

import numpy as np
from ai_edge_litert import interpreter as litert


def _version(dist):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


def run_job(job):
    delegates = [litert.load_delegate(job["delegate"])] if job.get("delegate") else None
    interp = litert.Interpreter(
        model_path=job["model"], experimental_delegates=delegates,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inputs = np.load(job["inputs"])
    in_details = interp.get_input_details()
    out_details = interp.get_output_details()
    xs = [inputs[f"x{i}"] for i in range(len(in_details))]
    n = xs[0].shape[0]
    outs = [[] for _ in out_details]
    for s in range(n):
        for d, x in zip(in_details, xs):
            interp.set_tensor(d["index"], x[s:s + 1].astype(d["dtype"], copy=False))
        interp.invoke()
        for k, d in enumerate(out_details):
            outs[k].append(interp.get_tensor(d["index"]).copy())
    tmp = job["output"] + ".tmp.npz"
    np.savez(tmp, **{f"y{k}": np.concatenate(o, axis=0) for k, o in enumerate(outs)})
    os.replace(tmp, job["output"])


def main(argv):
    with open(argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        run_job(job)
    print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                      "numpy": np.__version__, "ai_edge_litert": _version("ai-edge-litert"),
                      "jobs": len(jobs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
