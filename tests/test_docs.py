"""The documentation as a user copies from it (README.md, docs/*.md but the generated docs/results.md,
the notebooks' markdown): Python blocks run, commands exist with the flags shown, C snippets compile
against the public headers, relative links and anchors resolve. Conventions: tests/_docs.py."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import _docs
from _docs import ROOT

# -- Python blocks ---------------------------------------------------------------------------------

# Tiny values for the placeholders (`name = ...`) of each block, keyed by (doc, placeholder names).
_MLP = """
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu", name="fc1"),
                              keras.layers.Dense(4, activation="softmax", name="fc2")])
"""
_XY = """
    import numpy as np
    rng = np.random.default_rng(0)
    x, y = rng.random((256, 20), dtype=np.float32), rng.integers(0, 4, 256)
"""
VALUES = {
    ("README.md", "model"): "import keras\n" + textwrap.dedent(_MLP),
    ("README.md", "x, y"): textwrap.dedent(_XY),
    ("docs/models.md", "model"): "import keras\n" + textwrap.dedent(_MLP),
    ("docs/models.md", "x, y"): textwrap.dedent(_XY),
}

# Blocks this file does not run (too slow for a doc test, or a different environment), with the
# reason; matched by a string the block contains. Their names are still checked.
NOT_RUN_HERE = {
    ("README.md", "MobileNetV2"): "trains MobileNetV2 (minutes); the same pipeline calls run in "
                                  "tests/test_user_journey.py and tests/test_zoo.py",
    ("docs/multi_worker.md", "jax.distributed.initialize"): "one process per host; examples/multi_worker.py "
                                                            "(the same steps) runs in tests/test_multi_worker.py",
    ("docs/microcontrollers.md", "tflite_micro"): "needs the tflite-micro venv: run as written by "
                                                  "tests/test_micro.py::test_docs_python_snippet_runs_as_written",
}


def _python_blocks():
    out = []
    for doc in _docs.doc_files():
        for _, line, code in _docs.blocks(doc, "python"):
            out.append(pytest.param(doc, line, code, id=f"{doc}:{line}"))
    return out


PY_BLOCKS = _python_blocks()


def _not_run_here(doc, code):
    return [why for (d, key), why in NOT_RUN_HERE.items() if d == doc and key in code]


RUN_BLOCKS = [p for p in PY_BLOCKS if not _not_run_here(p.values[0], p.values[2])]


def runnable(doc, code):
    """The block with its placeholders filled from VALUES (KeyError naming a missing one)."""
    values = {names: v for (d, names), v in VALUES.items() if d == doc}
    return _docs.fill(code, values)


_CHILD = r"""
import contextlib, io, json, os, sys, tempfile, traceback
results = {}
for key, code in json.load(sys.stdin).items():
    os.chdir(tempfile.mkdtemp(prefix="dc_keras_doc_"))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, key, "exec"), {"__name__": "__main__"})
        results[key] = None
    except BaseException:
        results[key] = traceback.format_exc()[-4000:]
print("RESULTS " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def block_results():
    """Runs every runnable Python block once, each in its own namespace and directory, in one fresh
    TensorFlow-backend interpreter (a user's `python script.py`)."""
    todo = {}
    for p in RUN_BLOCKS:
        doc, line, code = p.values
        try:
            todo[f"{doc}:{line}"] = runnable(doc, code)
        except KeyError as e:
            todo[f"{doc}:{line}"] = f"raise KeyError({str(e)!r} + ': add it to VALUES in tests/test_docs.py')"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(todo), env=env, capture_output=True,
                       text=True, timeout=600)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULTS ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    return json.loads(lines[-1][8:])


def test_python_blocks_found():
    names = [p.id for p in PY_BLOCKS]
    assert any(n.startswith("README.md:") for n in names) and len(names) >= 6, names


def test_every_block_not_run_here_exists():
    """NOT_RUN_HERE names blocks that are in the docs, one each (a stale entry would hide nothing)."""
    for doc, key in NOT_RUN_HERE:
        hits = [p.id for p in PY_BLOCKS if p.values[0] == doc and key in p.values[2]]
        assert len(hits) == 1, (doc, key, hits)


@pytest.mark.parametrize(("doc", "line", "code"), PY_BLOCKS)
def test_python_block_defines_what_it_reads(doc, line, code):
    """A block may leave inputs to the user only as `name = ...  # what it is` lines."""
    missing = _docs.undefined_names(code)
    assert not missing, (f"{doc}:{line}: the block reads {missing} but never defines them: import them, or "
                         f"add a placeholder line `{missing[0]} = ...  # what it is`")


@pytest.mark.parametrize(("doc", "line", "code"), RUN_BLOCKS)
def test_python_block_runs(doc, line, code, block_results):
    error = block_results[f"{doc}:{line}"]
    assert error is None, f"{doc}:{line} fails as written (placeholders filled from tests/test_docs.py):\n{error}"
