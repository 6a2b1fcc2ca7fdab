"""Runs .tflite models with ai-edge-litert and saves their outputs (used by `make test-arm`).

Runs on any architecture with only numpy and ai-edge-litert installed (no TensorFlow, no
dc_keras), e.g. the emulated aarch64 Python: ``python litert_run.py JOBS.json``.

JOBS.json is a list of jobs::

    [{"model": "m.tflite", "inputs": "in.npz", "output": "out.npz",
      "runtime": "litert" | "dc_keras", "library": "/path/libdc_huffdecode.so",
      "resolver": "without_default_delegates" | "default", "expect_error": false,
      "weights": "decoded" | "compressed"}]

``inputs`` holds arrays ``x0, x1, ...`` for the model's inputs in order; each array's first axis
is a batch of samples that are fed one at a time (models have batch size 1).  ``output`` receives
arrays ``y0, y1, ...`` stacked the same way.

``runtime="litert"`` is a plain ``ai_edge_litert`` Interpreter (for unpacked models);
``"dc_keras"`` is ``dc_keras.runtime.Interpreter(backend="litert")`` with ``DC_KERAS_LIBRARY`` set
to ``library`` (the HuffDecode delegate built for this architecture); it imports only numpy,
ctypes and ai_edge_litert, so it runs from the source tree on PYTHONPATH.  ``resolver`` selects
``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (no XNNPACK: reference/optimized builtin kernels) or the
default (XNNPACK).  With ``expect_error`` the job must fail while building/allocating the
interpreter and ``output`` receives the error message as text.
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


def _interpreter(job):
    resolver = {"without_default_delegates": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                "default": litert.OpResolverType.AUTO,
                "reference": litert.OpResolverType.BUILTIN_REF}[job.get("resolver", "without_default_delegates")]
    if job.get("runtime", "litert") == "dc_keras":
        os.environ["DC_KERAS_LIBRARY"] = job["library"]
        from dc_keras import runtime

        interp = runtime.Interpreter(model_path=job["model"], backend="litert",
                                     weights=job.get("weights", "decoded"),
                                     experimental_op_resolver_type=resolver)
    else:
        interp = litert.Interpreter(model_path=job["model"], experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


def run_job(job):
    if job.get("expect_error"):
        try:
            _interpreter(job)
        except Exception as e:  # the error is the expected result
            with open(job["output"], "w") as f:
                f.write(f"{type(e).__name__}: {e}")
            return
        raise SystemExit(f"{job['model']}: expected an error, the interpreter was built")
    interp = _interpreter(job)
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
    extra = {}
    if job.get("weights") and hasattr(interp, "compressed_report"):  # routes taken, as JSON text
        extra["report"] = np.array(json.dumps(interp.compressed_report()))
    np.savez(tmp, **{f"y{k}": np.concatenate(o, axis=0) for k, o in enumerate(outs)}, **extra)
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
