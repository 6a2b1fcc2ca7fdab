"""Runs in the ai-edge-quantizer venv (never imported by the main environment).

usage: python _aeq_child.py FLOAT.tflite CALIB.npy OUT_DIR RECIPE [RECIPE ...]
Writes OUT_DIR/<recipe>.tflite for each recipe name of ``ai_edge_quantizer.recipe``. Its arguments
are checked before the first recipe runs (exit status 2 and one line naming the problem and the fix):
the recipe names, OUT_DIR, a model of one signature with one input, and CALIB.npy against that input
(shape past the samples axis, finite values; a float64 array, numpy's default, is given to the model
as float32).
"""
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import quantizer, recipe


def _fail(text):
    sys.stderr.write(f"_aeq_child.py: error: {text}\n")
    sys.exit(2)


def _recipes():
    return sorted(n for n in dir(recipe) if not n.startswith("_") and callable(getattr(recipe, n))
                  and n[:1].islower() and n not in ("algorithm_manager", "qtyping", "recipe_manager"))


def _calibration(calib, detail):
    """``calib`` (first axis = samples) as the model's input takes it, or an error naming the fix."""
    want_shape, want = [int(d) for d in detail["shape"][1:]], np.dtype(detail["dtype"])
    if calib.ndim == 0 or list(calib.shape[1:]) != want_shape:
        _fail(f"CALIB.npy holds an array of shape {calib.shape}, but the model's input {detail['name']!r} takes "
              f"samples of shape {tuple(want_shape)}: save an (N, {', '.join(map(str, want_shape))}) array, "
              "first axis = samples")
    if not len(calib):
        _fail("CALIB.npy holds no sample: save a few of the model's typical inputs")
    if calib.dtype != want:
        if not (want.kind == "f" and calib.dtype.kind in "fiu"):
            _fail(f"CALIB.npy holds {calib.dtype} values, but the model's input {detail['name']!r} is {want}: "
                  f"save x.astype({want.name!r})")
        calib = calib.astype(want)
    if calib.dtype.kind == "f" and not np.isfinite(calib).all():
        _fail("CALIB.npy holds NaN or inf values: save finite inputs like the training data")
    return calib


def main(src, calib_path, out_dir, *recipes):
    known = _recipes()
    unknown = [r for r in recipes if r not in known]
    if not recipes or unknown:
        _fail((f"unknown recipe(s) {', '.join(unknown)}" if unknown else "no recipe given")
              + f": ai_edge_quantizer.recipe has {', '.join(known)}")
    if not os.path.isdir(out_dir):
        _fail(f"OUT_DIR {out_dir!r} is not a directory: create it first (mkdir -p {out_dir})")
    with open(src, "rb") as f:
        content = f.read()
    it = Interpreter(model_content=content)
    sigs = it.get_signature_list()
    key = next(iter(sigs))
    if len(sigs) != 1 or len(sigs[key]["inputs"]) != 1:
        _fail(f"the model has {len(sigs)} signature(s), {len(sigs[key]['inputs'])} input(s) in {key!r}: this script "
              "calibrates a model with one signature and one input; for others call ai_edge_quantizer's "
              "Quantizer.calibrate with {signature key: [{input name: array, ...}, ...]} yourself")
    name = sigs[key]["inputs"][0]
    detail = it.get_signature_runner(key).get_input_details()[name]
    calib = _calibration(np.load(calib_path), dict(detail, name=name))
    data = {key: [{name: calib[i : i + 1]} for i in range(len(calib))]}
    for r in recipes:
        q = quantizer.Quantizer(content, getattr(recipe, r)())
        result = q.calibrate(data) if q.need_calibration else None
        out = q.quantize(result, enable_progress_report=False).quantized_model
        with open(os.path.join(out_dir, r + ".tflite"), "wb") as f:
            f.write(bytes(out))


if __name__ == "__main__":
    if len(sys.argv) < 5:
        _fail("usage: python _aeq_child.py FLOAT.tflite CALIB.npy OUT_DIR RECIPE [RECIPE ...]")
    main(*sys.argv[1:])
