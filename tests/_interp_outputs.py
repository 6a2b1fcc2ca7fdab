"""Shared helper of the tests that compare packed and plain files of other tools bit for bit."""
import warnings

import numpy as np

from dc_keras import runtime


def per_sample_outputs(content, xs, packed=False, default_delegates=False, backend="litert"):
    """Output 0 of ``content`` for each float input of ``xs``, one invoke per sample (copies); an
    integer input gets ``xs`` quantized with its own parameters. ``packed``: run through
    ``dc_keras.runtime.Interpreter`` (on ``backend``), else the backend's own interpreter;
    ``default_delegates=False`` runs the builtin kernels only (no XNNPACK)."""
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    else:
        from tensorflow.lite.python.interpreter import Interpreter, OpResolverType
    kw = {} if default_delegates else {
        "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TF's interpreter deprecation notice
        it = runtime.Interpreter(model_content=content, backend=backend, **kw) if packed \
            else Interpreter(model_content=content, **kw)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        xs = np.clip(np.round(xs / scale) + zero, info.min, info.max).astype(inp["dtype"])
    ys = []
    for x in xs:
        it.set_tensor(inp["index"], x[None])
        it.invoke()
        ys.append(it.get_tensor(out["index"]).copy())
    return ys


def first_output(it, x):
    """Output 0 of interpreter ``it`` (any kind: LiteRT's, TF's, dc_keras.runtime's) for ``x`` as
    input 0: allocate, set, invoke, read."""
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])
