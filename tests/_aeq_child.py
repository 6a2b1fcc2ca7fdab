"""Runs in the ai-edge-quantizer venv (never imported by the main environment).

usage: python _aeq_child.py FLOAT.tflite CALIB.npy OUT_DIR RECIPE [RECIPE ...]
Writes OUT_DIR/<recipe>.tflite for each recipe name of ``ai_edge_quantizer.recipe``.
"""
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import quantizer, recipe


def main(src, calib_path, out_dir, *recipes):
    with open(src, "rb") as f:
        content = f.read()
    calib = np.load(calib_path)
    sigs = Interpreter(model_content=content).get_signature_list()
    key = next(iter(sigs))
    name = sigs[key]["inputs"][0]
    data = {key: [{name: calib[i : i + 1]} for i in range(len(calib))]}
    for r in recipes:
        q = quantizer.Quantizer(content, getattr(recipe, r)())
        result = q.calibrate(data) if q.need_calibration else None
        out = q.quantize(result, enable_progress_report=False).quantized_model
        with open(os.path.join(out_dir, r + ".tflite"), "wb") as f:
            f.write(bytes(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
