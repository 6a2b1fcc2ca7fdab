"""The documentation as a user copies from it (README.md, docs/*.md but the generated docs/results.md,
the notebooks' markdown): Python blocks run, commands exist with the flags shown, C snippets compile
against the public headers, relative links and anchors resolve. Conventions: tests/_docs.py."""
import json
import os
import re
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


# -- commands, scripts, files ----------------------------------------------------------------------

TEXTS = _docs.texts()
COMMANDS = sorted({(path, line) for path, text in TEXTS.items() for line in _docs.command_lines(path, text)})
TOP_DIRS = ("benchmarks", "dc_keras", "docs", "examples", "jax_kernels", "tests", "tflite_kernels", "tools")


def _make_targets(directory):
    targets = set()
    with open(os.path.join(ROOT, directory, "Makefile")) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_./ -]+?)\s*:(?![=:])", line)
            if m:
                targets.update(m.group(1).split())
    return targets


def test_every_make_target_shown_exists():
    """`make [-C DIR] [VAR=value ...] TARGET ...` in the docs: DIR/Makefile has each TARGET."""
    checked, missing = 0, []
    for path, line in COMMANDS:
        for m in re.finditer(r"(?:^|[;&|] *|\bVAR=\S+ )make((?: +\S+)*)", line):
            words = m.group(1).split()
            directory = "."
            if words[:1] == ["-C"]:
                directory, words = words[1], words[2:]
            if "..." in words or not os.path.exists(os.path.join(ROOT, directory, "Makefile")):
                if "..." not in words:
                    missing.append((path, line, f"no {directory}/Makefile"))
                continue  # `make ... TARGET=...`: another project's make line, quoted
            targets = _make_targets(directory)
            for w in words:
                if re.match(r"^[a-z][a-z0-9_-]*$", w):
                    checked += 1
                    if w not in targets:
                        missing.append((path, line, f"no target {w!r} in {directory}/Makefile"))
    assert checked >= 20, checked
    assert not missing, missing


def _script(word):
    """The repository file a command word names (`benchmarks/x.py`, `tools/mcu/y.py`, `bench_codec.py`)."""
    for candidate in (word, os.path.join("benchmarks", word)):
        if os.path.isfile(os.path.join(ROOT, candidate)):
            return candidate
    return None


def _accepts(source, flag):
    """Whether ``source`` (a script's text) declares ``flag``: argparse / sys.argv string literal, absl
    ``flags.DEFINE_*("name", ...)``, or a C tool's ``tool_is_help`` for --help."""
    text = _docs.read(source)
    if source.endswith(".c"):
        text += _docs.read("tflite_kernels/tools/tool_io.h") if "tool_is_help" in text else ""
    for module in re.findall(r"^import (\w+)", text, re.M):  # absl flags of a sibling module it imports
        sibling = os.path.join(os.path.dirname(source), module + ".py")
        if os.path.isfile(os.path.join(ROOT, sibling)):
            text += _docs.read(sibling)
    name = flag[2:]
    return bool(re.search(rf"""["']{re.escape(flag)}["'=]""", text)
                or re.search(rf"""DEFINE_\w+\(\s*["']{re.escape(name)}["']""", text))


def test_every_script_and_flag_shown_exists():
    """`[python] path/script.py ... --flag` in the docs: the script exists and accepts each flag
    (argparse / absl flag names in its source; a C tool: in tflite_kernels/tools/NAME.c)."""
    checked, missing = 0, []
    for path, line in COMMANDS:
        words = line.split()
        for k, w in enumerate(words):
            before = os.path.basename(words[k - 1]) if k else ""
            tool = re.match(r"^(?:tflite_kernels/build/|build-fuzz/)?(dc_unpack|dc_decode)$", w)
            if "<" in w or "*" in w:
                continue
            if w.endswith((".py", ".sh")) and ("/" in w or before in ("python", "python3", "nice")
                                              or k == 0 and len(words) > 1):
                source = _script(w)
            elif tool and k == 0 and len(words) > 1:
                source = f"tflite_kernels/tools/{tool.group(1)}.c"
            else:
                continue
            if source is None:
                missing.append((path, line, f"{w}: no such file"))
                break
            checked += 1
            args = []
            for a in words[k + 1:]:
                if ".py=" in a:
                    break  # speed_table.py's --args SCRIPT=--flags: the flags of another script
                args.append(a)
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", " ".join(args)):
                if not _accepts(source, flag):
                    missing.append((path, line, f"{source} has no option {flag}"))
            break
    assert checked >= 15, checked
    assert not missing, missing


def test_every_repository_path_shown_exists():
    """Paths in code spans that start at a top-level folder (`tools/arm/check_abi.py`,
    `tflite_kernels/include/dc_unpack.h`) exist; placeholders (`<harness>`, `*`, `...`) are skipped."""
    missing, checked = [], 0
    for path, text in TEXTS.items():
        for span in re.findall(r"`([^`\n]+)`", text):
            for word in span.split():
                word = word.rstrip(".,;:)").split("::")[0]
                if not word.startswith(tuple(d + "/" for d in TOP_DIRS)) or re.search(r"[<>*$]|\.\.\.|\{", word):
                    continue
                if word.startswith(("tflite_kernels/build", "jax_kernels/build")) or "build-fuzz" in word:
                    continue  # build outputs
                checked += 1
                if not os.path.exists(os.path.join(ROOT, word.split("=")[0])):
                    missing.append((path, word))
    assert checked >= 50, checked
    assert not missing, missing


# -- links -----------------------------------------------------------------------------------------

def _slug(heading):
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(rel):
    """Anchors of a markdown file (headings; a repeated heading gets -1, -2, ... as on GitHub)."""
    seen, out = {}, set()
    text = re.sub(r"```.*?```", "", _docs.read(rel), flags=re.S)
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    out.update(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    return out


def _links():
    """``(file, target)`` of every relative markdown link (``[text](target)``, images too) outside code."""
    out = []
    for path, text in _docs.texts(include_generated=True).items():
        if path.endswith(".md"):
            text = re.sub(r"```.*?```", "", text, flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                out.append((path, target))
    return out


LINKS = _links()


def test_links_found():
    assert len(LINKS) >= 10 and any("#" in t for _, t in LINKS), LINKS


@pytest.mark.parametrize(("path", "target"), LINKS, ids=[f"{p}->{t}" for p, t in LINKS])
def test_relative_link_resolves(path, target):
    """Every relative link and anchor of README.md, docs/*.md (results.md too) and the notebooks."""
    file, _, anchor = target.partition("#")
    dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
    assert os.path.exists(os.path.join(ROOT, dest)), f"{path}: link to {target}: {dest} does not exist"
    if anchor:
        assert dest.endswith(".md"), f"{path}: anchor {target} into a file that is not markdown"
        anchors = _anchors(dest)
        assert anchor in anchors, (f"{path}: no heading for #{anchor} in {dest}; "
                                   f"near ones: {sorted(a for a in anchors if a[:6] == anchor[:6])}")


# -- docstring examples ----------------------------------------------------------------------------

def test_docstring_examples_run():
    """Every `Example:` / `>>>` block of dc_keras's docstrings runs as doctest (conventions and the
    tiny user objects in tests/_docstring_child.py), in one fresh TensorFlow-backend interpreter."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "_docstring_child.py")], env=env,
                       capture_output=True, text=True, timeout=900)
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULTS ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    results = json.loads(lines[-1][8:])
    assert len(results) >= 60, sorted(results)
    failed = {name: report for name, report in results.items() if report}
    assert not failed, "docstring examples that fail:\n" + "\n".join(f"== {k}\n{v}" for k, v in failed.items())
