"""What writing each distinct numeric vector once saves (docs/FORMAT.md §15) -> docs/results/shared_vectors.json.

    python benchmarks/shared_vectors.py [--json docs/results/shared_vectors.json]

The zoo's transformer architecture (benchmarks/model_zoo.py's ``transformer``, 68 K parameters),
built with keras.utils.set_random_seed(0) and given pruned and clustered weights without training
(every kernel of rank >= 2: 94 % zeros, as the zoo's recipe, the rest one of 16 shared values; the
vectors shared are shapes and tables, which the weights' values do not change), exported and packed
by ``dc_keras.export.to_tflite``, then written again by dc_keras's writer (``_flatbuffer.write_model``
on the file read back) with and without its vector sharing (``_SharingBuilder.CreateNumpyVector``
replaced by the plain builder's for the second write: every vector written once per use). Bytes
only; deterministic.
"""
import argparse
import os

import numpy as np

import _common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_JSON = os.path.join(ROOT, "docs", "results", "shared_vectors.json")


def _written(data, share):
    """``data`` read back and written by ``write_model``, sharing equal vectors or not."""
    import flatbuffers

    from dc_keras import _flatbuffer as fb

    cls = fb._SharingBuilder
    saved = cls.CreateNumpyVector
    if not share:
        cls.CreateNumpyVector = flatbuffers.Builder.CreateNumpyVector
    try:
        return fb.write_model(fb.read_model(data))
    finally:
        cls.CreateNumpyVector = saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=OUT_JSON)
    a = ap.parse_args(argv)
    import keras

    import model_zoo
    from dc_keras import export

    keras.utils.set_random_seed(0)
    model = model_zoo.transformer()
    rng = np.random.default_rng(0)
    centers = np.linspace(-0.3, 0.3, 16).astype(np.float32)
    for w in model.weights:
        if len(w.shape) >= 2:
            v = np.where(rng.random(w.shape) < 0.06, centers[rng.integers(0, 16, w.shape)], 0).astype(np.float32)
            w.assign(v)
    packed = export.to_tflite(model)
    shared, unshared = _written(packed, True), _written(packed, False)
    res = {"benchmark": "shared_vectors", "machine": _common.machine_info(frameworks=False),
           "command": _common.command_line(__file__, argv, prefix="python "),
           "model": "model_zoo.transformer (synthetic pruned + clustered weights, seed 0)",
           "params": int(model.count_params()), "packed_bytes": len(packed), "rewritten_shared_bytes": len(shared),
           "rewritten_unshared_bytes": len(unshared), "saved_bytes": len(unshared) - len(shared),
           "saved_fraction_of_unshared": round((len(unshared) - len(shared)) / len(unshared), 4)}
    _common.record(a.json, res)
    print({k: res[k] for k in ("params", "packed_bytes", "rewritten_shared_bytes", "rewritten_unshared_bytes", "saved_bytes", "saved_fraction_of_unshared")})


if __name__ == "__main__":
    main()
