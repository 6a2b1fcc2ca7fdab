"""docs/quantization.md's Keras int8-on-JAX file sizes -> docs/results/keras_int8_jax.json.

    python benchmarks/keras_int8_jax.py [--json docs/results/keras_int8_jax.json]

On the JAX backend (set here, before Keras loads), a 64-128-10 MLP (keras.utils.set_random_seed(0),
``Sequential([Input((64,)), Dense(128, "relu"), Dense(10)])``, default layer names) is exported by
``dc_keras.export.to_tflite(model, pack=False)`` before and after ``model.quantize("int8")``; the
second file runs Keras's int8 layers op by op. Records both sizes, the ops of each file, and whether
the int8 file's outputs equal Keras's on 16 inputs. Bytes only; deterministic.
"""
import argparse
import os
import sys

import numpy as np

import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_JSON = os.path.join(ROOT, "docs", "results", "keras_int8_jax.json")


def _ops(data):
    from dc_keras import _flatbuffer as fb

    m = fb.read_model(data)
    names = {v: k for k, v in vars(fb.schema.BuiltinOperator).items() if not k.startswith("_")}
    return sorted({names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in m.operatorCodes})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=OUT_JSON)
    a = ap.parse_args(argv)
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "jax":
        raise SystemExit("keras is already loaded with another backend: run this script on its own")
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    from dc_keras import export
    from dc_keras.runtime import Interpreter

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    float_file = export.to_tflite(model, pack=False)
    model.quantize("int8")
    int8_file = export.to_tflite(model, pack=False)
    x = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    want = np.asarray(model(x))
    it = Interpreter(model_content=int8_file)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for row in x:
        it.resize_tensor_input(inp["index"], (1, 64))
        it.allocate_tensors()
        it.set_tensor(inp["index"], row[None])
        it.invoke()
        got.append(it.get_tensor(out["index"])[0])
    got = np.stack(got)
    res = {"benchmark": "keras_int8_jax", "machine": _common.machine_info(frameworks=True),
           "command": _common.command_line(__file__, argv, prefix="python "), "backend": keras.backend.backend(),
           "float_bytes": len(float_file), "int8_bytes": len(int8_file),
           "float_ops": _ops(float_file), "int8_ops": _ops(int8_file),
           "int8_outputs_max_abs_diff_vs_keras": float(np.abs(got - want).max())}
    _common.record(a.json, res)
    print({k: res[k] for k in ("backend", "float_bytes", "int8_bytes", "int8_outputs_max_abs_diff_vs_keras")})


if __name__ == "__main__":
    main()
