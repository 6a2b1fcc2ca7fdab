"""Every tfmot 0.8.1 (Keras 2) result tests/test_compat_tfmot.py compares with, in one process.

Importing TensorFlow + tf_keras + tensorflow_model_optimization takes 10-20 s (minutes under
load); the test module's ``tfmot_side`` fixture runs this script once instead of once per test:

    TF_USE_LEGACY_KERAS=1 python tests/_tfmot_side_child.py SPEC_JSON OUT_DIR

SPEC_JSON is ``{part: argument}``; the parts run in the order given and each writes its result
(or its traceback) to ``OUT_DIR/result.json`` as soon as it ends, ``{part: {"result": ...}}`` or
``{part: {"error": "..."}}``, so one failing part does not hide the others:

- ``script:NAME``: the argument is Python code run as ``python -c CODE OUT_DIR/NAME`` would run
  it (its own namespace, ``sys.argv[1]`` its own directory); the result is its stdout. Listed
  first, a script runs before tfmot is imported, as in a fresh process.
- ``schedules``: ``[[kind, kwargs, steps], ...]``: per case, ``[should_prune, sparsity]`` per step.
- ``masks``: cases of ``_tfmot_masks_child.main``: per case, per batch ``[step, mask of d1]``.
- ``cluster``: numbers of clusters for ``_tfmot_cluster_child.cluster`` (preserve_sparsity=True).
- ``registry``: ``_tfmot_cluster_child.registry``: the weights tfmot prunes and clusters.
"""
import contextlib
import io
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _tfmot_cluster_child as cluster_child  # noqa: E402
import _tfmot_masks_child as masks_child  # noqa: E402


def schedules(cases):
    import tensorflow_model_optimization as tfmot

    out = []
    for kind, kwargs, steps in cases:
        sched = getattr(tfmot.sparsity.keras, kind)(**kwargs)
        out.append([[bool(should), float(value)] for should, value in map(sched, steps)])
    return out


def script(code, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    argv, sys.argv = sys.argv, ["-c", out_dir]
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            exec(compile(code, "<script>", "exec"), {"__name__": "__main__"})  # noqa: S102
    finally:
        sys.argv = argv
    return stdout.getvalue()


def main(spec, out_dir):
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("run with TF_USE_LEGACY_KERAS=1 (tfmot needs tf_keras)")
    parts = {"schedules": schedules, "masks": masks_child.masks, "cluster": cluster_child.cluster,
             "registry": lambda _: cluster_child.registry()}
    results = {}
    for part, argument in spec.items():
        try:
            if part.startswith("script:"):
                value = script(argument, os.path.join(out_dir, part.split(":", 1)[1]))
            else:
                value = parts[part](argument)
            results[part] = {"result": value}
        except BaseException:  # noqa: BLE001  (reported to the tests that need this part)
            results[part] = {"error": traceback.format_exc()}
        with open(os.path.join(out_dir, "result.json.tmp"), "w") as f:
            json.dump(results, f)
        os.replace(os.path.join(out_dir, "result.json.tmp"), os.path.join(out_dir, "result.json"))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), sys.argv[2])
