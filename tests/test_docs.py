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
    ("docs/models.md", "clustered"): "import keras\n" + textwrap.dedent(_MLP).replace("model =", "plain =")
                                     + "clustered = dc_keras.cluster(plain, bits=4)\n",
}

# Blocks this file does not run (too slow for a doc test, or a different environment), with the
# reason; matched by a string the block contains. Their names are still checked.
NOT_RUN_HERE = {
    ("README.md", "MobileNetV2"): "trains MobileNetV2 (minutes); the same pipeline calls run in "
                                  "tests/test_user_journey.py and tests/test_zoo.py",
    ("docs/multi_worker.md", "jax.distributed.initialize"): "one process per host; examples/multi_worker.py "
                                                            "(the same steps) runs in tests/test_multi_worker.py",
    ("docs/models.md", "torch.optim"): "the torch backend's loop: the same steps run in "
                                       "tests/test_backends.py::test_torch_custom_loop_with_a_torch_optimizer_prunes_and_clusters "
                                       "(make test-backends-torch)",
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
results, dirs = {}, {}
for key, code in json.load(sys.stdin).items():
    dirs[key] = tempfile.mkdtemp(prefix="dc_keras_doc_")
    os.chdir(dirs[key])
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, key, "exec"), {"__name__": "__main__"})
        results[key] = None
    except BaseException:
        results[key] = traceback.format_exc()[-4000:]
print("RESULTS " + json.dumps({"errors": results, "dirs": dirs}))
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
    error = block_results["errors"][f"{doc}:{line}"]
    assert error is None, f"{doc}:{line} fails as written (placeholders filled from tests/test_docs.py):\n{error}"


def test_readme_cli_lines_run_on_the_readme_model(block_results):
    """README's `dc-keras pack / inspect / unpack` lines, run in order on "a .tflite you already
    have": the README Python example's model.packed.tflite unpacked first to a plain model.tflite
    (the venv's dc-keras: this interpreter's `-m dc_keras`)."""
    first = next(p for p in PY_BLOCKS if p.values[0] == "README.md")
    assert block_results["errors"][first.id] is None, "README's Python example failed: see test_python_block_runs"
    workdir = block_results["dirs"][first.id]
    lines = [re.sub(r"\s+#.*$", "", line) for line in code_lines("README.md") if line.startswith(".venv/bin/dc-keras ")]
    assert [line.split()[1] for line in lines] == ["pack", "inspect", "unpack"], lines
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for line in [".venv/bin/dc-keras unpack model.packed.tflite model.tflite", *lines]:
        r = subprocess.run([sys.executable, "-m", "dc_keras", *line.split()[1:]], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (line, r.stdout[-2000:], r.stderr[-2000:])
    assert os.path.getsize(os.path.join(workdir, "sizes.png")) > 0
    with open(os.path.join(workdir, "model.unpacked.tflite"), "rb") as f:  # not over model.tflite (s52)
        assert f.read(8)[4:8] == b"TFL3"


def code_lines(doc):
    """The lines of ``doc``'s sh blocks, in order."""
    return [line for lang, _, code in _docs.blocks(doc) if lang == "sh" for line in code.splitlines()]


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
    """Whether ``source`` (a script's text) declares ``flag``: argparse / sys.argv string literal (``--no-X``
    of an ``argparse.BooleanOptionalAction`` ``--X``), absl ``flags.DEFINE_*("name", ...)``, or a C tool's
    ``tool_is_help`` for --help."""
    text = _docs.read(source)
    if source.endswith(".c"):
        text += _docs.read("tflite_kernels/tools/tool_io.h") if "tool_is_help" in text else ""
    for module in re.findall(r"^import (\w+)", text, re.M):  # absl flags of a sibling module it imports
        sibling = os.path.join(os.path.dirname(source), module + ".py")
        if os.path.isfile(os.path.join(ROOT, sibling)):
            text += _docs.read(sibling)
    name = flag[2:]
    negated = flag.startswith("--no-") and re.search(  # argparse's BooleanOptionalAction: --X and --no-X
        rf"""["']--{re.escape(flag[5:])}["'][^\n]*BooleanOptionalAction""", text)
    return bool(re.search(rf"""["']{re.escape(flag)}["'=]""", text)
                or re.search(rf"""DEFINE_\w+\(\s*["']{re.escape(name)}["']""", text) or negated)


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
        for span in _docs.spans(path, text, multiline=False):
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


# -- figures quoted outside docs/results.md --------------------------------------------------------

def _json(name):
    with open(os.path.join(ROOT, "docs", "results", name)) as f:
        return json.load(f)


def _zoo(name, model=None):
    rows = _json(name)["models"]
    return next(r for r in rows if model is None or r["model"] == model)


def _x(v):
    return f"{v:.1f}x"


def _pp(v):
    return f"{v:+.2f} pp"


def _q(rows, variant):
    return next(r for r in rows if r["variant"] == variant)


def _figures():
    """``(doc, text, source)``: each text is built from its source JSON and must appear in the doc."""
    s51 = {r["model"]: r for r in _json("model_zoo_s51.json")["models"] if r.get("rerun_of")}  # today's re-runs
    mn = s51["mobilenetv2_035"]
    t4, t4_seeds = _zoo("model_zoo_transformer_s51_t4.json"), _json("model_zoo_transformer_s51_t4_seeds.json")["models"]
    q, qz = _json("quantized.json")["rows"], _json("quantized_zoo.json")["rows"]
    mcu, rt = _json("mcu_lenet_300_100.json"), _json("runtime.json")["models"]["mobilenetv2"]
    flt, i8 = _q(q, "float32"), _q(q, "int8 per-channel (TFLite converter)")
    pt, dyn = _q(q, "int8 per-tensor (TFLite converter)"), _q(q, "dynamic per-tensor (TFLite converter)")
    st = _q(q, "float32, pack(strip_strings=True)")
    aeq8 = [_q(q, f"ai-edge-quantizer {n}") for n in ("dynamic_wi8_afp32", "weight_only_wi8_afp32", "static_wi8_ai8")]
    aeq4 = [_q(q, f"ai-edge-quantizer {n}") for n in ("weight_only_wi4_afp32", "dynamic_wi4_afp32")]
    out = [
        ("README.md", f"{mn['float_tflite_bytes']:,} B -> {mn['packed_bytes']:,} B (**{_x(mn['ratio'])}** whole file; "
                      f"{mn['stripped_names']['bytes']:,} B = **{_x(mn['stripped_names']['ratio'])}** packed with "
                      f"`strip_strings=True`), test error {100 * mn['baseline_error']:.2f} % -> "
                      f"{100 * mn['final_error']:.2f} % on the packed file ({100 * mn['sparsity_covered']:.0f} % of the "
                      f"covered weights pruned", "model_zoo_s51.json"),
        ("README.md", f"resnet {_x(s51['resnet']['ratio'])} ({_pp(s51['resnet']['error_increase_pp'])}), ds_cnn "
                      f"{_x(s51['ds_cnn']['ratio'])} ({_pp(s51['ds_cnn']['error_increase_pp'])}; chosen on 20,000 held-out "
                      f"validation images), lstm {_x(s51['lstm']['ratio'])} ({_pp(s51['lstm']['error_increase_pp'])}; chosen",
         "model_zoo_s51.json"),
        ("README.md", f"transformer (68 K parameters) {_x(t4['ratio'])} ({_pp(t4['error_increase_pp'])}; its earlier settings "
                      f"missed the goal on today's code, {_pp(s51['transformer']['error_increase_pp'])}, so a search",
         "model_zoo_transformer_s51_t4.json"),
        ("README.md", f"seeds 1 / 2: {_pp(t4_seeds[0]['error_increase_pp'])} / {_pp(t4_seeds[1]['error_increase_pp'])}), "
                      f"transformer_128 (0.27 M) {_x(s51['transformer_128']['ratio'])} "
                      f"({_pp(s51['transformer_128']['error_increase_pp'])}), conv1d {_x(s51['conv1d']['ratio'])} "
                      f"({_pp(s51['conv1d']['error_increase_pp'])})", "model_zoo_s51.json"),
        ("docs/quantization.md", f"the reference: {flt['packed_bytes']:,} B packed ({_x(flt['bytes'] / flt['packed_bytes'])}), "
                                 f"{100 * flt['test_error']:.2f} %", "quantized.json"),
        ("docs/quantization.md", f"{i8['distinct_int_codes'][0]} / {i8['distinct_int_codes'][1]} codes in fc1 / fc2: int8 "
                                 f"**{i8['vs_float_packed']:.2f}x**, dynamic "
                                 f"**{_q(q, 'dynamic per-channel (TFLite converter)')['vs_float_packed']:.2f}x**",
         "quantized.json"),
        ("docs/quantization.md", f"turns into {i8['distinct_int_codes'][0]} and {i8['distinct_int_codes'][1]} distinct codes",
         "quantized.json"),
        ("docs/quantization.md", f"(fc1 / fc2: {pt['distinct_int_codes'][0]} / {pt['distinct_int_codes'][1]}); packs to "
                                 f"**{pt['vs_float_packed']:.2f}x** the packed float file, error {_pp(pt['error_vs_float_pp'])}",
         "quantized.json"),
        ("docs/quantization.md", f"integer planes code its int32 biases ({pt['packed_bytes']:,} B; {pt['packed_bytes_v3']:,} B, "
                                 f"{pt['vs_float_packed_v3']:.2f}x, with `pack(version=3)`", "quantized.json"),
        ("docs/quantization.md", f"(int8 {i8['packed_bytes_v3']:,} B, {i8['vs_float_packed_v3']:.2f}x with `pack(version=3)`",
         "quantized.json"),
        ("docs/quantization.md", f"packs to **{dyn['vs_float_packed']:.2f}x** the packed float file, "
                                 f"{_pp(dyn['error_vs_float_pp'])} on LeNet-300-100", "quantized.json"),
        ("docs/quantization.md", "**{:.2f}x** (dynamic), **{:.2f}x** (weight-only), **{:.2f}x** (static) the packed float file, "
                                 "{:+.2f}..{:+.2f} pp".format(*(a['vs_float_packed'] for a in aeq8),
                                                             min(a['error_vs_float_pp'] for a in aeq8),
                                                             max(a['error_vs_float_pp'] for a in aeq8)),
         "quantized.json"),
        ("docs/quantization.md", "**{:.2f}-{:.2f}x** the packed float file (~{} KB -> ~{} KB) but {} error".format(
            min(a['vs_float_packed'] for a in aeq4), max(a['vs_float_packed'] for a in aeq4),
            round(min(a['bytes'] for a in aeq4) / 1000), round(max(a['packed_bytes'] for a in aeq4) / 1000),
            _pp(max(a['error_vs_float_pp'] for a in aeq4))), "quantized.json"),
        ("docs/quantization.md", f"{flt['packed_bytes'] - st['packed_bytes']:,} B ({flt['packed_bytes']:,} -> "
                                 f"{st['packed_bytes']:,} B, {_x(flt['bytes'] / flt['packed_bytes'])} -> "
                                 f"{_x(st['bytes'] / st['packed_bytes'])} of the float file)", "quantized.json"),
        ("docs/microcontrollers.md", f"{100 * sum(r['nonzero'] for r in mcu['model']['layers']) / sum(r['params'] for r in mcu['model']['layers']):.1f} % of weights kept "
                                     f"(fc1 {100 * mcu['model']['layers'][0]['density']:.1f} %", "mcu_lenet_300_100.json"),
        ("docs/android.md", f"compressed {rt['compressed']['load_s_ratio']:.2f}x, decoded {rt['decoded']['load_s_ratio']:.2f}x "
                            "of dense", "runtime.json"),
        ("docs/android_design_notes.md", f"{rt['decoded']['load_s_ratio']:.2f}x, {1e3 * rt['decoded']['load_s']:.1f} vs "
                                         f"{1e3 * rt['dense']['load_s']:.1f} ms", "runtime.json"),
    ]
    for r in qz:  # quantization.md's DS-CNN table: bytes, packed bytes, ratio, error
        label = {"float32": "float32", "int8 per-tensor (default) (TFLite converter)": "int8 full-integer, per tensor (default)",
                 "dynamic per-tensor (default) (TFLite converter)": "dynamic int8, per tensor (default)",
                 "int8 per-channel (TFLite converter)": "int8 full-integer, per channel",
                 "dynamic per-channel (TFLite converter)": "dynamic int8, per channel"}.get(r["variant"])
        if label:
            ratio = f"**{r['vs_float_packed']:.3f}x**" if "default" in label else (
                "1.00x" if label == "float32" else f"{r['vs_float_packed']:.3f}x")
            out.append(("docs/quantization.md", f"| {label} | {r['bytes']:,} | {r['packed_bytes']:,} | {ratio} | "
                                                f"{100 * r['test_error']:.2f} %", "quantized_zoo.json"))
    ib = {r["model"]: r for r in _json("int_biases.json")["rows"]}  # quantization.md's int16x8 / int32 biases
    z, nz, u, unz, cnn = (ib[k] for k in ("int16x8", "int16x8_no_zero", "int16x8_unclustered",
                                          "int16x8_unclustered_no_zero", "int8_cnn"))
    out += [("docs/quantization.md", text, "int_biases.json") for text in (
        f"{round(100 * z['bias_zero_fraction'])} % of its hidden biases zero, "
        f"hidden int64 bias {z['bias_raw_bytes']:,} B → {z['bias_packed_bytes']:,} B, file {z['file_bytes']:,} B → "
        f"{z['packed_file_bytes']['default']:,} B ({z['packed_file_bytes']['version_2']:,} B with `pack(version=2)`",
        f"{nz['bias_distinct']} distinct int64 values) and 16 shared bias values, no zero, the same bias packs to "
        f"{nz['bias_packed_bytes']:,} B",
        f"are all distinct ({unz['bias_distinct']:,} values) and a codebook takes "
        f"{unz['bias_packed_bytes_old_layouts']:,} B > {unz['bias_raw_bytes']:,} B",
        f"pack them to {unz['bias_packed_bytes']:,} B (file {unz['file_bytes']:,} B, nothing packed before → "
        f"{unz['packed_file_bytes']['default']:,} B); with {round(100 * u['bias_zero_fraction'])} % of the biases zero, "
        f"{u['bias_packed_bytes_old_layouts']:,} B (sparse) → {u['bias_packed_bytes']:,} B",
        f"the converter's {cnn['bias_raw_bytes']} B dense-layer bias of a small CNN {cnn['bias_packed_bytes_old_layouts']} B "
        f"as a codebook (kept raw) → {cnn['bias_packed_bytes']} B")]
    gm = _json("int_biases.json")["gather_mask"]
    out += [("docs/FORMAT.md", text, "int_biases.json") for text in (  # §16 and §17's table
        f"{round(100 * z['bias_zero_fraction'])} % of its biases zero, {z['bias_raw_bytes']:,} B → "
        f"{z['bias_packed_bytes']:,} B (sparse); an int64 GATHER index table of 4096 entries and a (1, 4096) bool "
        f"mask, model {gm['file_bytes']:,} B → {gm['packed_file_bytes']['default']:,} B",
        f"so {unz['bias_distinct']:,} distinct int64 values) takes {unz['bias_packed_bytes_old_layouts']:,} B as a codebook",
        f"integer planes (§17) pack such a bias to {unz['bias_packed_bytes']:,} B",
        f"| {u['bias_raw_bytes']:,} | {u['bias_packed_bytes_old_layouts']:,} (§6) | {u['bias_packed_bytes']:,} (P = 0) |",
        f"| {z['bias_raw_bytes']:,} | {z['bias_packed_bytes']:,} (§6) | {z['bias_packed_bytes_int_planes_only']:,} |",
        f"| {cnn['bias_raw_bytes']} | {cnn['bias_packed_bytes_old_layouts']} (§5: kept raw) | {cnn['bias_packed_bytes']} (P = 0) |")]
    assert unz["packed_file_bytes"]["version_3"] == unz["file_bytes"] and unz["old_layouts_over_raw"]  # "nothing packed"
    assert cnn["old_layouts_over_raw"]  # "kept raw"
    hub = _json("keras_hub.json")["rows"]  # docs/models.md's KerasHub table and the sentences after it
    for r in hub:
        f = r["float32"]
        if r["backend"] == "tensorflow":
            assert f["bit_exact"] and r["wrapped_round_trip_exact"] and r["stripped_round_trip_exact"], r["model"]
            out += [("docs/models.md", f"| {r['label']} | {r['params']:,} | {100 * r['covered']:.1f} % |", "keras_hub.json"),
                    ("docs/models.md", f"| {f['bytes']:,} B -> {f['packed_bytes']:,} B ({f['ratio']:.2f}x) | "
                                       f"{round(r['seconds'])} s |", "keras_hub.json")]
    tf_hub = {r["model"]: r for r in hub if r["backend"] == "tensorflow"}
    jax_hub = {r["model"]: r for r in hub if r["backend"] == "jax"}
    assert all(jax_hub[m]["covered"] == tf_hub[m]["covered"] and jax_hub[m]["float32"]["bit_exact"] for m in jax_hub)
    b, g = tf_hub["bert"], tf_hub["gpt2"]
    assert all(b[q]["bit_exact"] for q in ("float16", "dynamic", "int8")) and g["dynamic"]["bit_exact"]
    out += [("docs/models.md", f"`keras_hub.layers` model and `GPT2CausalLM` give the same coverage and "
                               f"{jax_hub['hublayers']['float32']['ratio']:.2f}x / {jax_hub['gpt2']['float32']['ratio']:.2f}x, "
                               "bit-exact", "keras_hub.json"),
            ("docs/models.md", "BERT quantized: " + ", ".join(
                f"{q} {b[q]['bytes']:,} B -> {b[q]['packed_bytes']:,} B ({b[q]['ratio']:.2f}x)" for q in ("float16", "dynamic"))
             + f", int8 {b['int8']['bytes']:,} B -> {b['int8']['packed_bytes']:,} B ({b['int8']['ratio']:.2f}x); GPT-2 "
             f"dynamic {g['dynamic']['ratio']:.2f}x; all bit-exact", "keras_hub.json")]
    sz = _json("tfmot_signed_zeros.json")["rows"]  # README's tfmot signed zeros
    larger = sorted(round(100 * r["larger"]) for r in sz)
    span = f"{larger[0]}" if larger[0] == larger[-1] else f"{larger[0]}-{larger[-1]}"
    out.append(("docs/packing.md", f"A {sz[0]['float_tflite_bytes'] / 1e6:.2f} MB tfmot MLP, 784-300-100-10 pruned to 90 %, "
                                   f"packed {span} % larger than with its zeros made positive, in two seeded training runs: "
                                   + " and ".join(f"{r['packed_bytes']:,} / {r['packed_bytes_positive_zeros']:,} B" for r in sz)
                                   + " (format version 4: " + " and ".join(
                                       f"{r['version4']['packed_bytes']:,} / {r['version4']['packed_bytes_positive_zeros']:,} B"
                                       for r in sz), "tfmot_signed_zeros.json"))
    out.append(("docs/packing.md", f"packs from {sz[0]['float_tflite_bytes']:,} B to {sz[0]['packed_bytes']:,} B, where a zip "
                                   f"of the file takes {sz[0]['zip_bytes']:,} B and format version 4 packed it to "
                                   f"{sz[0]['version4']['packed_bytes']:,} B", "tfmot_signed_zeros.json"))
    for name in ("kmeans_init_lenet_300_100.json", "kmeans_init_lenet_5.json"):  # kmeans_init_rule.md, rule A
        d = _json(name)
        for r in d["rows"]:
            if r["bits"] == d["config"]["bits"]:
                shared = ", ".join(f"{k} {v}" for k, v in r["shared_values"].items())
                out.append(("docs/kmeans_init_rule.md", f"| {r['variant']} | {r['val_wrong']} | {r['packed_bytes']:,} | "
                                                        f"{r['ratio']:.1f}x / {r['weights_ratio']:.1f}x | {shared} |", name))
    for name in ("kmeans_init_lenet_300_100.json", "kmeans_init_lenet_5_drop.json"):  # rule B: one layer a bit less
        d = _json(name)
        for r in d["rows"]:
            drop = [k for k in r["bits"] if r["bits"][k] == d["config"]["bits"][k] - 1]
            if r["variant"] == "split-count" and len(drop) == 1:
                k = drop[0]
                out.append(("docs/kmeans_init_rule.md", f"| {k} {r['bits'][k] + 1} -> {r['bits'][k]} | {r['val_wrong']} | "
                                                        f"{r['packed_bytes']:,} | {r['ratio']:.1f}x / {r['weights_ratio']:.1f}x |",
                            name))
    out += _kmeans_init_prose_figures()
    out += _keras_export_prose_figures()
    cm = _json("codec_context_model.json")["rows"][1]  # FORMAT.md §14: ip1 [out, in], one run's sizes and times
    c = cm["interleaved_decode_cpu_s"]
    t = {k: round(1e6 * v) for k, v in c.items()}
    out.append(("docs/FORMAT.md", f"({cm['shape'][0]} × {cm['shape'][1]}, {cm['nonzero']:,} kept;", "codec_context_model.json"))
    out.append(("docs/FORMAT.md", f"{cm['packed_bytes']:,} B as §14 against {cm['sparse6_bytes']:,} B as §6, decoded in "
                                  f"{t['context14']} µs against today's §6 decoder's {t['sparse6']} µs: "
                                  f"**{c['sparse6'] / c['context14']:.2f}× today's §6 speed**", "codec_context_model.json"))
    out.append(("docs/FORMAT.md", f"**{c['sparse6_at_e617840'] / c['context14']:.2f}× the speed of the §6 decoder of the day "
                                  f"this layout was asked for** (e617840, 2026-11-29: {t['sparse6_at_e617840']} µs",
                "codec_context_model.json"))
    out += _demo_figures()
    for tag in ("ds_cnn_s4_d1", "ds_cnn_s4_d2", "ds_cnn_s4_d3", "ds_cnn_s4_d5", "ds_cnn_s4_d6", "ds_cnn_s4_d7",
                "transformer_s4_t1", "transformer_s4_t2"):  # zoo_search_rules.md, session 4
        r = _zoo(f"model_zoo_{tag}.json")
        val = 100 * (r["final_val_error"] - r["baseline_val_error"])
        out.append(("docs/zoo_search_rules.md", f"| {r['packed_bytes']:,} | {_x(r['ratio'])} | {_pp(val)} | "
                                                f"{_pp(r['error_increase_pp'])} |", f"model_zoo_{tag}.json"))
    for tag in ("e1", "e2", "e4", "e5", "e6"):  # session 5
        r = _zoo(f"model_zoo_ds_cnn_s5_{tag}.json")
        val = 100 * (r["final_val_error"] - r["baseline_val_error"])
        out.append(("docs/zoo_search_rules.md", f"| {r['packed_bytes']:,} | {_x(r['ratio'])} | ", f"model_zoo_ds_cnn_s5_{tag}.json"))
        out.append(("docs/zoo_search_rules.md", f"| {val:+.2f} ± {r['val_increase_se_pp']:.2f} pp | {_pp(r['error_increase_pp'])} | "
                                                f"{_x(r['stripped_names']['ratio'])} |", f"model_zoo_ds_cnn_s5_{tag}.json"))
    for k, seed in (("c1", 1), ("c2", 1), ("c3", 1), ("c4", 1), ("c4", 0), ("c4", 2)):  # session 57, every run
        name = f"model_zoo_ds_cnn_s57_{k}_seed{seed}.json"
        r = _zoo(name)
        val = 100 * (r["final_val_error"] - r["baseline_val_error"])
        out.append(("docs/zoo_search_rules.md", f"| {k} | {seed} | {r['packed_bytes']:,} | {_x(r['ratio'])} | "
                                                f"{_x(r['stripped_names']['ratio'])} | {100 * r['baseline_val_error']:.2f} % -> "
                                                f"{100 * r['minutes']['pruned_val_error']:.2f} % -> {100 * r['final_val_error']:.2f} % | "
                                                f"{val:+.2f} ± {r['val_increase_se_pp']:.2f} pp | {_pp(r['error_increase_pp'])} | "
                                                f"{r['minutes']['total']:.1f} | {r['loadavg_end'][0]:.1f} | "
                                                f"{'yes' if r['packed_outputs_identical'] else 'no'} |", name))
    c4 = [_zoo(f"model_zoo_ds_cnn_s57_c4_seed{s}.json") for s in (0, 1, 2)]  # README: session 57's pick
    assert all(r["goal_met"] for r in c4), [r["goal_met"] for r in c4]
    out.append(("README.md", "DS-CNN to 4-bit depthwise sharing and 5/18/12 epochs: " + " / ".join(
        f"{r['packed_bytes']:,}" for r in c4) + " B at seeds 0 / 1 / 2 (" + " / ".join(_x(r["ratio"]) for r in c4) +
        " names kept), test " + " / ".join(f"{r['error_increase_pp']:+.2f}" for r in c4) +
        " pp, its goal met at all three seeds", "model_zoo_ds_cnn_s57_c4_seed0.json"))
    rt_emb = _json("runtime.json")["models"]["emb50000x64_d10"]  # android.md's embedding pilot: the sizes
    out.append(("docs/android.md", f"({rt_emb['dense']['tflite_bytes'] / 1e6:.1f} MB dense, "
                                   f"{round(rt_emb['compressed']['tflite_bytes'] / 1e3)} KB packed)", "runtime.json"))
    out.append(("docs/android.md", f"{rt_emb['compressed']['compact_bytes'] / 1e6:.2f} MB compact form as reported",
                "runtime.json"))
    us = {r["model"]: r for r in _json("unpack_sizes.json")["rows"]}  # FORMAT.md §15's table, README's DENSIFY case
    cells = [(us[k], k) for k in ("float MLP", "int8 CNN", "FC chain, buffers after the flatbuffer", "DENSIFY MLP")]
    out.append(("docs/FORMAT.md", " | ".join([
        "; ".join(f"{r['python_unpack_bytes']:,} B ({what}, {r['packed_tensors']}{' packed tensors' if i == 0 else ''})"
                  for i, (r, what) in enumerate(cells)),
        "; ".join(f"{r['c_unpack_bytes']:,} B (+{r['c_extra_bytes']})" for r, _ in cells)]) + " |", "unpack_sizes.json"))
    dn = us["DENSIFY MLP"]
    out.append(("docs/packing.md", f"{dn['python_unpack_bytes']:,} B from {dn['bytes']:,} B for the float MLP", "unpack_sizes.json"))
    fc = us["FC chain, buffers after the flatbuffer"]  # android.md: dc_unpack and buffers after the flatbuffer
    out.append(("docs/android.md", f"a 2-layer FC chain of {fc['bytes']:,} B, {fc['packed_bytes']:,} B packed external",
                "unpack_sizes.json"))
    out.append(("docs/android.md", f"against {fc['python_unpack_bytes']:,} B from `dc_keras.export.unpack`, now "
                                   f"{fc['c_unpack_bytes']:,} B)", "unpack_sizes.json"))
    out += _per_packed_tensor_figures(us)
    out += _litert_torch_figures()
    qj = _json("quantized.json")
    out.append(("docs/quantization.md", f"Latest run: {qj['date']}, {qj['minutes']} min, load "
                                        f"{qj['machine']['loadavg_before'][0]:.1f}-{qj['machine']['loadavg_after'][0]:.1f}",
                "quantized.json"))
    o4 = qj["int4_decode_op"]  # quantization.md: why decode="op" refuses INT4 hybrids
    assert o4["argmax_agree"] == 1.0 and o4["reference_kernels_identical"] and o4["delegate_route_identical"], o4
    e = [f"{v:.1e}".replace("e-0", "e-") for v in (o4["max_abs_diff"], o4["mean_abs_diff"])]  # 1.6e-3, as written
    out.append(("docs/quantization.md", f"{o4['inputs']:,} test images, no default delegates: "
                                        f"{round(100 * o4['fraction_differing'])} % of the softmax outputs differ, by up to "
                                        f"{e[0]}, {e[1]} on average, same predicted class", "quantized.json"))
    zm = _json("quantized_zoo.json")
    out.append(("docs/quantization.md", f"2026-12-04 {zm['machine']['date'].split()[1]} UTC, load "
                                        f"{zm['machine']['loadavg'][0]:.1f}-{zm['machine']['loadavg_after'][0]:.1f} "
                                        f"(size/error only), {zm['minutes']:.0f} min", "quantized_zoo.json"))
    for names in (("dynamic_wi8_afp32", "weight_only_wi8_afp32", "static_wi8_ai8"),
                  ("weight_only_wi4_afp32", "dynamic_wi4_afp32")):  # the DS-CNN table's ai-edge-quantizer rows
        rs = [_q(qz, f"ai-edge-quantizer {n}") for n in names]
        out.append(("docs/quantization.md", " | ".join([
            " / ".join(f"`{n}`" for n in names), " / ".join(f"{r['bytes']:,}" for r in rs),
            " / ".join(f"{r['packed_bytes']:,}" for r in rs), " / ".join(f"{r['vs_float_packed']:.3f}x" for r in rs)]),
            "quantized_zoo.json"))
        pp = " / ".join(f"{r['error_vs_float_pp']:+.2f}" for r in rs) + " pp"
        out.append(("docs/quantization.md", f"| **{pp}** |" if "wi4" in names[0] else f"| {pp} |", "quantized_zoo.json"))
    fl, lr = mcu["tflm_x86"]["flash_bytes"], mcu["ratios_packed_vs_lut"]  # microcontrollers.md's flash table
    out += [("docs/microcontrollers.md", f"| float32 | {fl['float']:,} | **{fl['float.packed']:,}** | "
                                         f"{fl['float.lut_new']:,} (newer nightly's tool*; fc1 6-bit) | "
                                         f"**{lr['float (lut_new)']:.3f}** |", "mcu_lenet_300_100.json"),
            ("docs/microcontrollers.md", f"| {fl['int8']:,} | **{fl['int8.packed']:,}** | {fl['int8.lut']:,} (pinned "
                                         f"wheel's tool; fc1 6-bit) / {fl['int8.lut_new']:,} (newer; fc1 5-bit per "
                                         f"channel) | **{lr['int8 (lut)']:.3f} / {lr['int8 (lut_new)']:.3f}** |",
             "mcu_lenet_300_100.json")]
    cb, runs = mcu["cortex_m4"], mcu["tflm_x86"]["runs"]
    out += [("docs/microcontrollers.md", f"TFLM kernel `huffdecode_tflm.c` adds {cb['code_bytes_O2']['kernel']:,} B at -O2 / "
                                         f"{cb['code_bytes_Os']['kernel']:,} B at -Os ({cb['code_bytes_O2_strip']['kernel']:,} / "
                                         f"{cb['code_bytes_Os_strip']['kernel']:,} B in a release build", "mcu_lenet_300_100.json"),
            ("docs/microcontrollers.md", f"-> {runs['float.packed.once']['arena_total_bytes']:,} B float, 303,664 -> "
                                         f"{runs['int8.packed.once']['arena_total_bytes']:,} B int8; *Measured* below); every "
                                         "invoke saves {:,} B (float) / {:,} B (int8)".format(
                                             *(runs[f'{k}.packed.once']['arena_total_bytes'] - runs[f'{k}.packed.each']['arena_total_bytes']
                                               for k in ("float", "int8"))), "mcu_lenet_300_100.json")]
    x86 = mcu["tflm_x86"]["runs"]
    for kind in ("float", "int8"):
        out.append(("docs/microcontrollers.md", f"| {kind + '32' if kind == 'float' else kind} unpacked | — | "
                                                f"{x86[kind]['arena_total_bytes']:,} |", "mcu_lenet_300_100.json"))
        for mode, words in (("once", "decode once"), ("each", "decode every invoke")):
            out.append(("docs/microcontrollers.md", f"packed, {words} | bit-exact | "
                                                    f"{x86[f'{kind}.packed.{mode}']['arena_total_bytes']:,} |",
                        "mcu_lenet_300_100.json"))
    date = mcu["machine"]["date"]  # the goals table's stack row and "Release builds": the run's own figures
    frame = int(cb["largest_frame_m4_without_dc_decode"].split()[-2])
    out += [("docs/microcontrollers.md", f"| decoder stack ≤ 4 KiB | {cb['max_stack_bytes']:,} B (painted high-water mark of "
                                         f"`dc_decode_ws`, every tensor, run of {date}, docs/results/mcu_lenet_300_100.json,",
             "mcu_lenet_300_100.json"),
            ("docs/microcontrollers.md", f"largest frame {frame} B (`-fstack-usage`, {date},", "mcu_lenet_300_100.json"),
            ("docs/microcontrollers.md", f"16 KiB workspace on the stack ({int(cb['largest_frame_m4'].split()[-2]):,} B frame)",
             "mcu_lenet_300_100.json"),
            ("docs/microcontrollers_design_notes.md", f"({date}, the same script): {cb['code_bytes_O2']['kernel']:,} / "
                                         f"{cb['code_bytes_Os']['kernel']:,} B, stripped {cb['code_bytes_O2_strip']['kernel']:,} / "
                                         f"{cb['code_bytes_Os_strip']['kernel']:,} B; Cortex-M0 -Os {cb['code_bytes_Os_m0']['kernel']:,} B",
             "mcu_lenet_300_100.json")]
    for t in mcu["cortex_m4"]["tensors"]:
        out.append(("docs/microcontrollers.md", f"| {t['layout']} | {t['elements']:,} | {t['packed_bytes']:,} | "
                                                f"{t['insns_per_element']:.2f} | {t['stack_bytes']:,} | "
                                                f"{t['workspace_bytes']:,} |", "mcu_lenet_300_100.json"))
    for n, batch in ((1024, 1), (1024, 8), (1024, 32), (4096, 1), (4096, 8), (4096, 32)):  # android_design_notes.md's density table
        cells = []
        for d in (0.2, 0.3, 0.4, 0.5, 1.0):
            r = next(r for r in _json("density.json")["rows"]
                     if r["dtype"] == "float32" and r["n"] == n and r["batch"] == batch and abs(r["density"] - d) < 1e-3)
            cells.append(f"{r['ratio']:.1f}x" if r["ratio"] >= 2 else f"{r['ratio']:.2f}x")
        out.append(("docs/android_design_notes.md", f"| {n}², batch {batch} | " + " | ".join(cells) + " |", "density.json"))
    dens = {(r["n"], r["batch"], round(100 * r["density"])): r for r in _json("density.json")["rows"]
            if r["dtype"] == "float32"}
    out.append(("docs/android_design_notes.md", f"up to 50 % ({dens[1024, 8, 50]['ratio']:.2f}x on 1024², "
                                                f"{dens[4096, 8, 50]['ratio']:.2f}x on 4096²; at 70 % 1024² batch 8 takes "
                                                f"{dens[1024, 8, 70]['ratio']:.2f}x)", "density.json"))
    out.append(("docs/android_design_notes.md", f"at batch 32 it is slower from 30-40 % ({dens[1024, 32, 30]['ratio']:.2f}x / "
                                                f"{dens[4096, 32, 30]['ratio']:.2f}x at 30 %, {dens[1024, 32, 50]['ratio']:.2f}x / "
                                                f"{dens[4096, 32, 50]['ratio']:.2f}x at 50 %; 20 %: {dens[1024, 32, 20]['ratio']:.2f}x / "
                                                f"{dens[4096, 32, 20]['ratio']:.2f}x)", "density.json"))
    i8 = {p: [r for r in _json("density.json")["rows"] if r["dtype"] == "int8" and round(100 * r["density"]) == p
              and r["batch"] in (1, 8)] for p in (5, 10)}  # docs/runtime.md: the int8 tile form against XNNPACK
    rows5 = next(r for r in i8[5] if r["n"] == 1024 and r["batch"] == 1)["variants"]["scalar"]["ratio"]
    out.append(("docs/runtime.md", "XNNPACK's int8 kernels at 5 % ({:.2f}-{:.2f}x), about even at 10 % ({:.2f}-{:.2f}x)".format(
        min(r["ratio"] for r in i8[5]), max(r["ratio"] for r in i8[5]),
        min(r["ratio"] for r in i8[10]), max(r["ratio"] for r in i8[10])), "density.json"))
    out.append(("docs/runtime.md", f"({rows5:.1f}x at 5 % on a 1024² layer at batch 1; ARM not measured)", "density.json"))
    f10 = {r["n"]: r["variants"]["avx2"]["ratio"] for r in _json("density.json")["rows"]
           if r["dtype"] == "float32" and round(100 * r["density"]) == 10 and r["batch"] == 1}
    out.append(("docs/runtime.md", f"a 1024² layer at 10 % takes about XNNPACK's time at batch 1 ({f10[1024]:.2f}x; a "
                             f"4096² one {f10[4096]:.2f}x", "density.json"))
    assert all(r["variants"]["scalar"]["ratio"] > 1 for r in _json("density.json")["rows"]
               if r["dtype"] == "int8")  # docs/runtime.md: the rows "slower than XNNPACK at every density measured"
    with open(os.path.join(ROOT, "tflite_kernels", "src", "huffdecode_op.c")) as f:  # "there": the default
        tiles = int(re.search(r"#define DC_DEFAULT_MAX_DENSITY_FLOAT32_TILES (\d+)", f.read()).group(1))
    out.append(("docs/android_design_notes.md", "its memory there is "
                                                f"{dens[1024, 1, tiles]['compact_bytes'] / dens[1024, 1, tiles]['dense_bytes']:.2f}x of the "
                                                "dense weight's (" + f"{dens[1024, 1, 100]['compact_bytes'] / dens[1024, 1, 100]['dense_bytes']:.2f}"
                                                "x at 100 %: always smaller)", "density.json"))
    out += _density_variant_figures()
    out += _runtime_figures()
    return out


def _keras_export_prose_figures():
    """docs/models.md's quantization and wrapped-model sizes of Keras's model.export (keras_litert_export.json)."""
    k = _json("keras_litert_export.json")
    q, tf, pt = k["quantized_mlp"], k["backends"]["tensorflow"]["mlp"], k["backends"]["torch"]["mlp"]

    def arrow(r):
        return f"{r['bytes']:,} -> {r['packed']:,} B"

    src = "keras_litert_export.json"
    return [("docs/models.md", f"the shared values: the MLP {arrow(q['keras_dynamic_per_channel'])};", src),
            ("docs/models.md", f"keeps them: {arrow(q['keras_dynamic_per_tensor'])}, against `to_tflite(model, "
                               f"quantize=\"dynamic\")` {arrow(q['to_tflite_dynamic'])}.", src),
            ("docs/models.md", f"(MLP {arrow(tf['tf_export_clustered_wrapped'])} on TensorFlow, against "
                               f"{tf['to_tflite_of_strip_clustered_wrapped']['packed']:,} B for its strip", src),
            ("docs/models.md", f"(MLP {arrow(tf['tf_export_pruned_wrapped'])} against "
                               f"{tf['to_tflite_of_strip_pruned_wrapped']['packed']:,} B; torch "
                               f"{pt['keras_export_pruned_wrapped']['packed']:,} B against "
                               f"{pt['to_tflite_of_strip_pruned_wrapped']['packed']:,} B)", src)]


def _demo_figures():
    """README's `dc-keras demo` table (sizes, ratios, errors; its times are the lead's low-load runs)."""
    out = []
    for run in _json("demo.json")["runs"]:
        first, last = run["stages"][0], run["stages"][-1]
        cmd = "dc-keras demo" + (" --full" if run["variant"] == "full" else "")
        out.append(("README.md", f"| `{cmd}` ({'/'.join(map(str, run['epochs']))} epochs) |", "demo.json"))
        out.append(("README.md", f"| {last['file_bytes']:,} B | {run['ratio']:.1f}x | {100 * first['test_error']:.2f} % -> "
                                 f"{100 * last['test_error']:.2f} % |", "demo.json"))
        out.append(("README.md", f"float `.tflite` {first['file_bytes']:,} B", "demo.json"))
    out.append(("README.md", f"by `benchmarks/demo_table.py` in docs/results/demo.json, {_json('demo.json')['machine']['date']}",
                "demo.json"))
    return out


def _kmeans_init_prose_figures():
    """docs/kmeans_init_rule.md's figures outside its two tables: rule A's sums and growth, rule B's
    threshold and extra runs, the nosplit diagnostic, rule C's candidates, the split's live counts."""
    l3, l5, l5d = (_json(f"kmeans_init_{n}.json") for n in ("lenet_300_100", "lenet_5", "lenet_5_drop"))
    diag = {d["model"]: d["rows"][0] for d in _json("kmeans_init_nosplit_fc1_2bits.json")}
    src3, src5, src5d = "kmeans_init_lenet_300_100.json", "kmeans_init_lenet_5.json", "kmeans_init_lenet_5_drop.json"

    def row(d, variant, **drop):  # the variant's run at CONFIG bits but for ``drop`` (layer -> bits)
        bits = {**d["config"]["bits"], **drop}
        return next(r for r in d["rows"] if r["variant"] == variant and r["bits"] == bits)

    cfg3 = {v: row(l3, v) for v in ("nosplit", "split-count", "split-range")}
    cfg5 = {v: row(l5, v) for v in ("nosplit", "split-count", "split-range")}
    grow = {round(100 * (c[v]["packed_bytes"] / c["nosplit"]["packed_bytes"] - 1), 1)
            for c in (cfg3, cfg5) for v in ("split-count", "split-range")}
    out = [("docs/kmeans_init_rule.md", f"`nosplit` reproduces the official files byte for byte "
                                        f"({cfg3['nosplit']['packed_bytes']:,} B, {cfg5['nosplit']['packed_bytes']:,} B)", src3),
           ("docs/kmeans_init_rule.md", f"summed, split-count {cfg3['split-count']['val_wrong'] + cfg5['split-count']['val_wrong']} "
                                        f"and split-range {cfg3['split-range']['val_wrong'] + cfg5['split-range']['val_wrong']} "
                                        "wrong: a tie", src5),
           ("docs/kmeans_init_rule.md", f"The files grow {round(100 * (cfg3['split-count']['packed_bytes'] / cfg3['nosplit']['packed_bytes'] - 1), 1)} %", src3),
           ("docs/kmeans_init_rule.md", f"Threshold: `nosplit` at CONFIG bits, {cfg3['nosplit']['val_wrong']} (LeNet-300-100) / "
                                        f"{cfg5['nosplit']['val_wrong']} (LeNet-5) wrong.", src5)]
    assert len({round(100 * (c["split-count"]["packed_bytes"] / c["nosplit"]["packed_bytes"] - 1), 1) for c in (cfg3, cfg5)}) == 1, grow
    sr = ", ".join(str(row(l3, "split-range", **{k: b - 1})["val_wrong"]) for k, b in l3["config"]["bits"].items())
    again = row(l5d, "split-count")
    out.append(("docs/kmeans_init_rule.md", f"the drops for split-range: {sr} wrong; and LeNet-5's second split-count run at "
                                            f"CONFIG bits gave {again['val_wrong']} wrong again, {again['packed_bytes']:,} B.)", src5d))
    d3, d5 = diag["lenet-300-100"], diag["lenet-5"]
    out.append(("docs/kmeans_init_rule.md", f"LeNet-300-100 {d3['val_wrong']} wrong, {d3['packed_bytes']:,} B ({_x(d3['ratio'])} / "
                                            f"{_x(d3['weights_ratio'])}), LeNet-5 {d5['val_wrong']} wrong, {d5['packed_bytes']:,} B "
                                            f"({_x(d5['ratio'])} / {_x(d5['weights_ratio'])})", "kmeans_init_nosplit_fc1_2bits.json"))
    c3 = {k: row(l3, "split-count", **{k: b - 1}) for k, b in l3["config"]["bits"].items()}
    c5 = {k: row(l5d, "split-count", **{k: b - 1}) for k, b in l5d["config"]["bits"].items()}
    out.append(("docs/kmeans_init_rule.md", f"lowest {cfg3['split-count']['val_wrong']} (CONFIG {cfg3['split-count']['packed_bytes']:,} B; "
                                            f"fc3 -1 {c3['fc3']['packed_bytes']:,} B); tied within 3: fc1 -1 ({c3['fc1']['val_wrong']}, "
                                            f"{c3['fc1']['packed_bytes']:,} B), fc2 -1 ({c3['fc2']['val_wrong']}, {c3['fc2']['packed_bytes']:,} B)",
                src3))
    assert c3["fc3"]["val_wrong"] == cfg3["split-count"]["val_wrong"] and c5["conv1"]["val_wrong"] == c5["fc2"]["val_wrong"]
    out.append(("docs/kmeans_init_rule.md", f"lowest {c5['fc1']['val_wrong']} (fc1 -1, {c5['fc1']['packed_bytes']:,} B); tied within 3: "
                                            f"CONFIG ({again['val_wrong']}, {again['packed_bytes']:,} B); conv1 -1 and fc2 -1 "
                                            f"({c5['conv1']['val_wrong']}) and conv2 -1 ({c5['conv2']['val_wrong']}) are out", src5d))
    sv = {v: {**cfg3[v]["shared_values"]} for v in ("split-count", "split-range")}
    s5 = cfg5["split-count"]["shared_values"]
    assert cfg5["split-range"]["shared_values"] == s5 and sv["split-count"]["fc1"] == sv["split-range"]["fc1"]
    fc3 = sorted(sv[v]["fc3"] for v in sv)
    b3, b5 = l3["config"]["bits"], l5["config"]["bits"]
    out.append(("docs/kmeans_init_rule.md", f"keeps {sv['split-count']['fc1']}/{2 ** b3['fc1']}, {sv['split-range']['fc2']}/"
                                            f"{2 ** b3['fc2']} (count share: fc2 {sv['split-count']['fc2']}/{2 ** b3['fc2']}), "
                                            f"{fc3[0]}-{fc3[1]}/{2 ** b3['fc3']}, "
                                            + ", ".join(f"{s5[k]}/{2 ** b5[k]}" for k in ("conv1", "conv2", "fc1", "fc2")) + " live", src3))
    return out


def _per_packed_tensor_figures(us):
    """What pack adds per packed tensor and what dc_unpack leaves on top of export.unpack (README,
    FORMAT.md §15, android.md's "Unpack once"): unpack_sizes.json's rows of files in today's layout."""
    new = [r for r in us.values() if r["c_cut"] is not None]
    mn, old, again = us["MobileNetV2-0.35"], us["zoo LSTM128, packer of 2026-11-29"], us["zoo LSTM128, packed again"]
    assert old["c_cut"] is None and old["c_extra_bytes"] > old["payload_bytes"], old  # the old way keeps the payload

    def span(values):
        values = list(values)
        return f"{round(min(values))}–{round(max(values))} B"

    added = span(r["pack_bytes_per_packed_tensor"] for r in new if r["pack_bytes_per_packed_tensor"] is not None)
    left = span(r["c_tables_left_bytes"] / r["packed_tensors"] for r in new)
    per_buffer = span(r["c_appended_overhead_bytes"] / r["appended_buffers"] for r in new)
    extra = span(r["c_extra_bytes"] / r["packed_tensors"] for r in new)
    n = mn["packed_tensors"]
    return [
        ("docs/packing.md", f"what it adds per packed tensor is {added} ({round(mn['pack_bytes_per_packed_tensor'])} B on "
                      "MobileNetV2-0.35; FORMAT.md §15)", "unpack_sizes.json"),
        ("docs/runtime.md", f"the removed ops' tables stay, {extra.removesuffix(' B')} B per packed tensor more",
         "unpack_sizes.json"),
        ("docs/FORMAT.md", f"{added} per packed tensor on the models of `benchmarks/unpack_sizes.py`, "
                           f"{round(mn['pack_bytes_per_packed_tensor'])} B on MobileNetV2-0.35's {n}", "unpack_sizes.json"),
        ("docs/FORMAT.md", f"by the packing tables ({left} per packed tensor, the most on the smallest models), "
                           f"{per_buffer} per appended Buffer", "unpack_sizes.json"),
        ("docs/android.md", f"not trained: sizes only; {n} packed tensors): {mn['c_unpack_bytes']:,} B against "
                            f"`dc_keras.export.unpack`'s {mn['python_unpack_bytes']:,} B (+{mn['c_extra_bytes']:,} B, "
                            f"{100 * mn['c_extra_bytes'] / mn['python_unpack_bytes']:.1f} %: "
                            f"{mn['c_tables_left_bytes']:,} B of tables left in place, "
                            f"{round(mn['c_tables_left_bytes'] / n)} B per packed tensor, and "
                            f"{mn['c_appended_overhead_bytes']:,} B for the {mn['appended_buffers']} appended Buffers, "
                            f"{round(mn['c_appended_overhead_bytes'] / mn['appended_buffers'])} B each", "unpack_sizes.json"),
        ("docs/android.md", f"(+{old['c_extra_bytes']:,} B on `tests/data/zoo_lstm128.packed.tflite`, a zoo LSTM packed "
                            f"on 2026-11-29, {old['payload_bytes']:,} B of it the packed payload)", "unpack_sizes.json"),
        ("docs/android.md", f"to get the smaller result (+{again['c_extra_bytes']:,} B on that model)", "unpack_sizes.json"),
    ]


def _litert_torch_figures():
    """docs/quantization.md's litert-torch table and its run line, rebuilt from litert_torch.json
    (benchmarks/litert_torch_files.py); the claims around it checked on the JSON's rows."""
    lt = _json("litert_torch.json")
    r = {row["model"]: row for row in lt["rows"]}
    assert all("error" not in x for x in r.values()), [x["model"] for x in r.values() if "error" in x]
    for x in r.values():  # "packed by export.pack and dc-keras pack to the same bytes", bit-identical routes
        assert x["bit_exact"] and (x["model"] == "big" or x["api_same_as_cli"]), x["model"]
        refused = [k for k, v in x["routes"].items() if v is not True]  # decode="op" refuses INT4 hybrids (the doc says so)
        assert refused == (["tensorflow_decode_op"] if x["model"] == "sparse_mlp_int4_blockwise32" else []), x["routes"]
    assert r["sparse_mlp_int4_blockwise32"]["routes"]["tensorflow_decode_op"].startswith(
        "ValueError: decode='op' cannot run this model bit-exactly: 2 packed INT4 weight(s) of a dynamic-range")
    assert set(r["big"]["routes"]) == {"runtime", "runtime_unpacked_vs_litert", "litert_delegate", "unpack"}
    assert r["sparse_mlp_1024_dynamic"]["buffers_after_flatbuffer"] and not r["sparse_mlp_1024_dynamic"]["packed_buffers_after_flatbuffer"]
    assert r["big"]["buffers_after_flatbuffer"] and r["big"]["packed_buffers_after_flatbuffer"]
    assert [r[k]["packed_bytes"] == r[k]["bytes"] for k in ("cnn_pt2e_static_per_channel", "cnn_pt2e_static_per_tensor",
                                                               "mlp_pt2e_dynamic", "mlp_dynamic", "mlp_weight_only")] == [True] * 5

    def cells(names, sep=" / ", fmt=".2f", bold=False):
        b = "**" if bold else ""
        return " | ".join([sep.join(f"{r[n]['bytes']:,}" for n in names),
                           b + sep.join(f"{r[n]['packed_bytes']:,}" for n in names) + b,
                           b + sep.join(f"{r[n]['bytes'] / r[n]['packed_bytes']:{fmt}}x" for n in names) + b])

    rows = [cells([n]) for n in ("resnet18", "mobilenet_v3_small", "mobilenet_v3_small_dynamic", "transformer_encoder",
                                 "attention", "two_signatures", "composite", "sparse_mlp_int4_blockwise32",
                                 "sparse_mlp_1024_dynamic", "bool_mask_attention", "big")]
    rows += [cells(["lstm", "gru"]), cells(["toy_llm", "toy_llm_dynamic"]), cells(["sparse_mlp"], fmt=".1f", bold=True),
             cells(["sparse_mlp_fp16", "sparse_mlp_dynamic", "sparse_mlp_pt2e_static"], fmt=".1f"),
             f"{r['cnn_pt2e_static_per_channel']['bytes']:,} / {r['cnn_pt2e_static_per_tensor']['bytes']:,} | unchanged | 1.00x",
             "; ".join(f"{r[n]['bytes']:,}" for n in ("mlp_pt2e_dynamic", "mlp_dynamic", "mlp_weight_only", "mlp_fp16"))
             + f" | unchanged x3; {r['mlp_fp16']['packed_bytes']:,} | 1.00x; "
             f"{r['mlp_fp16']['bytes'] / r['mlp_fp16']['packed_bytes']:.2f}x (fp16)"]
    out = [("docs/quantization.md", f"| {row} |", "litert_torch.json") for row in rows]
    m = lt["machine"]
    big, v = r["big"], lt["versions"]
    out += [("docs/quantization.md", text, "litert_torch.json") for text in (
        f"latest run {lt['date']}, {lt['minutes']} min, load {m['loadavg'][0]:.1f}-{m['loadavg_after'][0]:.1f}: "
        f"`{lt['command']}`",
        f"(torch {v['torch']}, torchvision {v['torchvision']}, ai-edge-litert {v['ai-edge-litert']}, litert-converter "
        f"{v['litert-converter']}, ai-edge-quantizer {v['ai-edge-quantizer']}, torchao {v['torchao']};",
        f"ai-edge-quantizer writes {r['mobilenet_v3_small_dynamic']['buffers_after_flatbuffer']} buffers after the flatbuffer",
        f"`full_dynamic_recipe` ({r['toy_llm_dynamic']['buffers_after_flatbuffer']} buffers after the flatbuffer)",
        f"(`dc-keras pack` took {int(big['cli_seconds'] // 60)} min {round(big['cli_seconds'] % 60)} s, "
        f"{big['cli_max_rss_mb']:,} MiB peak memory;")]
    slices = [r[n]["ops"]["SLICE"] for n in ("lstm", "gru")]
    toy = r["toy_llm"]
    assert [r[n]["signatures"] for n in ("toy_llm", "toy_llm_dynamic")] == [["prefill", "decode"]] * 2
    out += [("docs/quantization.md", f"(unrolled: {min(slices)}-{max(slices)} SLICE ops)", "litert_torch.json"),
            ("docs/quantization.md", f"`decode` signatures, {toy['subgraphs']} subgraphs, {toy['composites']} "
                                     "`STABLEHLO_COMPOSITE`)", "litert_torch.json")]
    return out


def _density_variant_figures():
    """docs/android_design_notes.md's table *CPUs without AVX-512* (bench_density.py's kernel variants side by
    side), its run line and the bullets after it, plus README's figures on the same kernels and
    the row form's cost unpruned, all rebuilt from density.json (the run results.md holds)."""
    d = _json("density.json")
    m, loads = d["machine"], [r["loadavg"] for r in d["rows"] if "loadavg" in r]
    g = {}
    for r in d["rows"]:
        g.setdefault((r["dtype"], r["n"], r["batch"]), {})[round(100 * r["density"])] = r
    pcts = (5, 10, 20, 40, 50)  # the table's columns

    def v(key, p, variant):
        return g[key][p]["variants"][variant]

    def t(ms):
        return f"{1e3 * ms:.0f} µs" if ms < 1 else f"{ms:.2f} ms"

    def span(values, fmt=".2f", sep="–"):
        lo, hi = min(values), max(values)
        return f"{lo:{fmt}}x" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}{sep}{hi:{fmt}}x"

    kernels = {"float32": (("avx2", "AVX2 CPU: rows, scalar"), ("avx2_tiles", "AVX2 float tile kernels"),
                           ("native", "AVX-512 tiles")),
               "int8": (("avx2", "AVX2 CPU: AVX2 tiles"), ("scalar", "rows, scalar"),
                        ("native", "AVX-512 (VNNI) tiles"))}
    out = [("docs/android_design_notes.md", f"run {m['date']}, started at load average {m['loadavg'][0]:.1f} (the script waits for "
                                            f"< {m['load_wait']['limit']}), {min(loads):.1f}-{max(loads):.1f} after each layer, "
                                            f"{m['loadavg_end'][0]:.1f} at the end;", "density.json"),
           ("docs/android_design_notes.md", f"each variant alternates with XNNPACK, {3 * d['rounds']} invokes each, the fastest",
            "density.json")]
    for (dtype, n, batch), cells in g.items():
        if batch == 32:  # no variants measured at batch 32
            continue
        rows = [f"| {dtype} {n}², {batch} | XNNPACK | " + " | ".join(t(cells[p]["decoded_fastest_ms"]) for p in pcts) + " |"]
        for name, label in kernels[dtype]:
            texts = [f"{v((dtype, n, batch), p, name)['ratio_fastest']:.2f}x" for p in pcts]
            rows.append(f"| | {label} | " + " | ".join(
                f"**{s}**" if v((dtype, n, batch), p, name)["default"] == "compressed" else s
                for s, p in zip(texts, pcts)) + " |")
        out += [("docs/android_design_notes.md", row, "density.json") for row in rows]
    i8 = [k for k in g if k[0] == "int8"]
    f32 = [k for k in g if k[0] == "float32" and k[2] in (1, 8)]

    def fast(key, p, a, b):  # variant a's fastest invoke against variant b's
        return v(key, p, a)["fastest_ms"] / v(key, p, b)["fastest_ms"]

    def rf(key, p, name):
        return f"{v(key, p, name)['ratio_fastest']:.2f}x"

    avx2_vs_512 = span([fast(k, p, "avx2", "native") for k in i8 for p in pcts], ".1f")
    rows_vs_avx2 = span([fast(k, p, "scalar", "avx2") for k in i8 for p in pcts], ".1f")
    a, b, c, e = ("int8", 1024, 1), ("int8", 1024, 8), ("int8", 4096, 1), ("int8", 4096, 8)
    out.append(("docs/android_design_notes.md", f"the AVX2 tile kernels take {avx2_vs_512} the AVX-512 (VNNI) ones' time and "
                                                f"{rows_vs_avx2} less than the rows' (the row kernel's scalar byte gathers): "
                                                f"{rf(a, 5, 'avx2')} / {rf(b, 5, 'avx2')} of XNNPACK's time at 5 % on 1024² (batch 1 / 8; "
                                                f"rows {rf(a, 5, 'scalar')} / {rf(b, 5, 'scalar')}), {rf(c, 5, 'avx2')} / "
                                                f"{rf(e, 5, 'avx2')} on 4096² (rows {rf(c, 5, 'scalar')} / {rf(e, 5, 'scalar')}); about "
                                                f"even at 10 % at batch 1 ({rf(a, 10, 'avx2')}, {rf(c, 10, 'avx2')})", "density.json"))
    out.append(("docs/runtime.md", f"with AVX2 kernels, {avx2_vs_512.replace('–', '-')} the AVX-512 ones' time and "
                             f"{rows_vs_avx2.replace('–', '-')} faster than the rows", "density.json"))
    b1 = [k for k in f32 if k[2] == 1]
    b8 = [k for k in f32 if k[2] == 8]
    out.append(("docs/android_design_notes.md", f"the AVX2 float tile kernels took "
                                                f"{span([fast(k, 5, 'avx2_tiles', 'avx2') for k in f32])} the rows' time at 5 %, "
                                                f"{span([fast(k, 10, 'avx2_tiles', 'avx2') for k in f32])} at 10 %; only at batch 1 from "
                                                f"20 % were they faster ({span([fast(k, 20, 'avx2_tiles', 'avx2') for k in b1])} at 20 %, "
                                                f"{span([fast(k, 40, 'avx2_tiles', 'avx2') for k in b1])} at 40 %), while at batch 8 they "
                                                f"stayed slower ({span([fast(k, p, 'avx2_tiles', 'avx2') for k in b8 for p in (20, 30, 40, 50)])}"
                                                " at 20–50 %)", "density.json"))
    assert all(fast(k, p, "avx2_tiles", "avx2") > 1 for k in b8 for p in (20, 30, 40, 50))  # "stayed slower"
    med = {k: {p: v(k, p, "avx2")["ratio"] for p in (10, 20, 30)} for k in f32}
    out.append(("docs/android_design_notes.md", f"whose 1024² layer took {med['float32', 1024, 1][10]:.2f}x at 10 % at batch 1",
                "density.json"))
    out.append(("docs/android_design_notes.md", f"the 4096² one {med['float32', 4096, 1][10]:.2f}x. Large layers pay up to ~30 % "
                                                f"(4096²: {med['float32', 4096, 1][20]:.2f}x / {med['float32', 4096, 8][20]:.2f}x at 20 %, "
                                                f"{med['float32', 4096, 1][30]:.2f}x / {med['float32', 4096, 8][30]:.2f}x at 30 %)",
                "density.json"))
    unpruned = max(v(k, 100, "scalar")["ratio"] for k in f32)  # the row form (scalar kernels), unpruned
    out.append(("docs/runtime.md", f"unpruned layers would run up to {unpruned:.1f}x slower there", "density.json"))
    out.append(("docs/android_design_notes.md", f"unpruned layers run up to {unpruned:.1f}x slower compressed", "density.json"))
    with open(os.path.join(ROOT, "tflite_kernels", "src", "huffdecode_op.c")) as f:  # docs/runtime.md: the tile form's default
        tiles = int(re.search(r"#define DC_DEFAULT_MAX_DENSITY_FLOAT32_TILES (\d+)", f.read()).group(1))
    out.append(("docs/runtime.md", f"at {g['float32', 1024, 1][tiles]['compact_bytes'] / g['float32', 1024, 1][tiles]['dense_bytes']:.2f}x "
                             "of the dense memory", "density.json"))
    i8mem = {(n, p): g["int8", n, 1][p]["compact_bytes"] / g["int8", n, 1][p]["dense_bytes"] for n in (1024, 4096)
             for p in (10, 20, 30)}
    i8rows = [v(("int8", n, 1), 10, "scalar")["compact_bytes"] / g["int8", n, 1][10]["dense_bytes"] for n in (1024, 4096)]
    out.append(("docs/android.md", f"(~{min(i8rows):.1f}x of the int8 weights at 10 % on the row form, "
                                   f"{span([i8mem[n, 10] for n in (1024, 4096)])} on the tile form of AVX-512 CPUs)",
                "density.json"))
    rows10 = [v(("float32", n, 1), 10, "avx2")["compact_bytes"] / g["float32", n, 1][10]["dense_bytes"] for n in (1024, 4096)]
    out.append(("docs/android.md", f"so the layer needs ~{span(rows10)} of the dense memory at 10 % density", "density.json"))
    out.append(("docs/android.md", f"(AVX2 CPUs: the tile form too, {avx2_vs_512} the AVX-512 kernels' time)", "density.json"))
    out.append(("docs/android_design_notes.md", f"tiles: {span([i8mem[n, 20] for n in (1024, 4096)])} at 20 %, "
                                                f"{span([i8mem[n, 30] for n in (1024, 4096)])} at 30 %", "density.json"))
    return out


def _runtime_figures():
    """docs/android_design_notes.md's figures from the runtime table's run (bench_runtime.py, runtime.json:
    the run results.md holds) in *The tile form instead of the rows* and *Load time*, and the density
    run's unpruned figures in *How the default max_density was chosen* (density.json)."""
    rt = _json("runtime.json")
    m, md = rt["machine"], rt["models"]
    date = m["date"][:16].replace("T", " ")
    c10, d10, c5 = md["fc4096_d10"]["compressed"], md["fc4096_d10"]["dense"], md["fc4096_d5"]["compressed"]
    dram = [1e3 * md[k]["compressed"]["batch1_dram_s"] for k in ("fc1024_d10", "fc784x300_d10")]
    assert rt["command"].split()[2:4] == ["--rounds", str(rt["rounds"])], rt["command"]
    out = [("docs/android_design_notes.md", f"[results.md](results.md) ({date} UTC, load {m['loadavg_start'][0]:.1f} → "
                                            f"{m['loadavg'][0]:.1f}, `--rounds {rt['rounds']}`) settles it: 4096² at 10 % load "
                                            f"**{c10['load_s_ratio']:.2f}x** ({1e3 * c10['load_s']:.1f} vs {1e3 * d10['load_s']:.0f} ms), "
                                            f"batch 1 **{c10['batch1_s_ratio']:.2f}x** ({1e3 * c10['batch1_s']:.3f} ms; fastest "
                                            f"{c10['batch1_min_s_ratio']:.2f}x), memory **{c10['rss_delta_ratio']:.2f}x**; at 5 % "
                                            f"{c5['load_s_ratio']:.2f}x / {c5['batch1_s_ratio']:.2f}x / {c5['rss_delta_ratio']:.2f}x. "
                                            f"Dense batch 1 was {1e3 * d10['batch1_s']:.2f} ms in that run", "runtime.json"),
           ("docs/android_design_notes.md", f"{1e3 * d10['load_s']:.0f} ms in the official table", "runtime.json"),
           ("docs/android_design_notes.md", f"The small layers' DRAM figures ({min(dram):.2f}–{max(dram):.2f} ms in that run, "
                                            "fc1024_d10 and fc784x300_d10, one cold invoke per round)", "runtime.json"),
           ("docs/android.md", f"(runtime table in docs/results.md, {date} run: compressed", "runtime.json"),
           ("docs/android_design_notes.md", f"docs/results.md now holds the {date} run, after the spread-codebook loop below: "
                                            f"{md['mobilenetv2']['decoded']['load_s_ratio']:.2f}x", "runtime.json"),
           ("docs/android_design_notes.md", f"(the run docs/results.md holds now, {date} UTC (docs/results/runtime.json): "
                                            f"{md['mobilenetv2']['decoded']['load_s_ratio']:.2f}x)", "runtime.json")]
    dens = {(r["n"], r["batch"], round(100 * r["density"])): r for r in _json("density.json")["rows"]
            if r["dtype"] == "float32"}
    out.append(("docs/android_design_notes.md", f"08:48 run (the table in results.md) {dens[1024, 1, 50]['ratio']:.2f}x at 50 %, "
                                                f"{dens[1024, 1, 100]['ratio']:.2f}x unpruned, 4096² {dens[4096, 1, 100]['ratio']:.2f}x "
                                                "unpruned", "density.json"))
    assert _json("density.json")["machine"]["date"] == "2026-12-05 08:48 UTC"  # "08:48 run" in android_design_notes.md
    return out


FIGURES = _figures()


def _mcu_test_model_figures():
    """docs/microcontrollers.md's sizing figures of the test files' models (tests/test_micro.py's MLP,
    tests/test_micro_cnn.py's DS-CNN and autoencoder): benchmarks/mcu_bench.py --test-models."""
    src, d = "micro_test_models.json", "docs/microcontrollers.md"
    dn = "docs/microcontrollers_design_notes.md"  # the MLP's arenas, the sweep and the history moved there
    m = _json(src)["models"]
    assert all(r[f"bit_exact_{k}"] for r in m.values() for k in ("once", "each")), m

    def dec(name):
        return sum(t["decoded_bytes"] for t in m[name]["packed_tensors"])

    def ws(name):
        return sum(t["workspace_bytes"] for t in m[name]["packed_tensors"])

    def big(name):
        return max(t["decoded_bytes"] + t["workspace_bytes"] for t in m[name]["packed_tensors"])

    def op_bytes(name):
        a = m[name]["arena"]
        return a["once"]["tail"] - a["unpacked"]["tail"] - dec(name)

    out = []
    for kind in ("float", "int8"):  # *Sizing the arena*: the MLP's arenas, planned + persistent
        r = m[f"mlp_{kind}"]
        a, fc1 = r["arena"], max(r["packed_tensors"], key=lambda t: t["decoded_bytes"])
        un = f"unpacked {a['unpacked']['total']:,} B ({a['unpacked']['head']:,} + {a['unpacked']['tail']:,}); decode once "
        out += [(dn, un + f"{a['once']['total']:,} B = {a['once']['head']:,} planned", src),
                (dn, f"+ {a['once']['tail']:,} persistent ({a['unpacked']['tail']:,} + {dec(f'mlp_{kind}'):,} decoded + "
                    f"{op_bytes(f'mlp_{kind}')} for {r['huffdecode_ops']} ops)", src),
                (dn, f"every invoke {a['each']['total']:,} B, of it {a['each']['head']:,} B planned ≥ fc1's "
                    f"{fc1['decoded_bytes']:,} + {fc1['workspace_bytes']:,}", src)]
    bias = m["mlp_int8"]["packed_tensors"][0]
    out.append((dn, f"fc1's int32 bias ({bias['decoded_bytes']} B decoded + {bias['workspace_bytes']} B workspace)", src))
    for name, label in (("ds_cnn", "DS-CNN"), ("ds_cnn_min_bytes_1024", "DS-CNN, `pack(min_bytes=1024)`"),
                        ("autoencoder", "autoencoder")):  # the CNN table (the bracketed figures: before d1292fb)
        r, a = m[name], m[name]["arena"]
        tail = f"(largest {big(name):,})" if name != "ds_cnn_min_bytes_1024" else f"({r['huffdecode_ops']} tensors)"
        out.append((d, f"| {label} | {r['bytes']:,} -> {r['packed_bytes']:,} | {a['unpacked']['total']:,} | "
                       f"**{a['once']['total']:,}** (", src))
        out.append((d, f"| {a['each']['total']:,} | {dec(name):,} + {ws(name):,} {tail} |", src))
    ds, ae, dm = m["ds_cnn"], m["autoencoder"], m["ds_cnn_min_bytes_1024"]
    grow = {n: m[n]["arena"]["once"]["total"] - m[n]["arena"]["unpacked"]["total"] for n in ("ds_cnn", "autoencoder")}
    assert grow["ds_cnn"] - dec("ds_cnn") == op_bytes("ds_cnn") and op_bytes("ds_cnn") % ds["huffdecode_ops"] == 0
    out += [(d, f"is {grow['ds_cnn']:,} B above the unpacked model's = {dec('ds_cnn'):,} B decoded + "
                f"{op_bytes('ds_cnn'):,} B for its {ds['huffdecode_ops']} `HuffDecode` ops "
                f"({op_bytes('ds_cnn') // ds['huffdecode_ops']} B each); the autoencoder's {grow['autoencoder']:,} B = "
                f"{dec('autoencoder'):,} + {op_bytes('autoencoder')} for {ae['huffdecode_ops']}.", src),
            (d, f"the unpacked model's ({ds['arena']['unpacked']['head']:,} B DS-CNN, "
                f"{ae['arena']['unpacked']['head']:,} B autoencoder)", src),
            (d, f"than packing saves flash ({ds['bytes'] - ds['packed_bytes']:,} B)", src),
            (d, "+{:,} B (DS-CNN) and +{:,} B (autoencoder) of arena".format(
                *(m[n]["arena"]["each"]["total"] - m[n]["arena"]["unpacked"]["total"] for n in ("ds_cnn", "autoencoder"))),
             src),
            (d, f"{dm['packed_bytes'] - ds['packed_bytes']:,} B more flash, "
                f"{ds['arena']['once']['total'] - dm['arena']['once']['total']:,} B less decode-once arena", src),
            (d, f"{ds['arena']['each']['total'] - dm['arena']['each']['total']:,} B less every invoke", src)]
    mf, lenet = m["mlp_float"], _json("mcu_lenet_300_100.json")["cortex_m4"]["tensors"]
    pw = [t["workspace_bytes"] for t in ds["packed_tensors"] if t["decoded_bytes"] == 4096]  # the 1x1 convolutions
    lw = [t["workspace_bytes"] for t in lenet]
    out += [(dn, f"where {mf['arena']['each']['head']:,} B are needed", src),
            (dn, f"up to its need, {mf['arena']['unpacked']['total']:,} B)", src),
            (dn, f"(+{ws('mlp_float'):,} B of workspaces kept persistent)", src),
            (dn, f"{ws('ds_cnn'):,} B of the DS-CNN's", src),
            (d, f"the DS-CNN's 4,096 B 1x1 convolutions take {min(pw):,}-{max(pw):,} B)", src),
            (d, f"{ds['huffdecode_ops']} tensors packed (the {ds['huffdecode_ops'] - 4} weights and 4 of the int32 biases "
                "the converter folds from BatchNorm, 256 B each)", src),
            (d, f"{ae['huffdecode_ops']} tensors packed (the {ae['packed_tensors'][0]['decoded_bytes']:,} B", src),
            (d, f"{round(min(lw) / 1024)}–{round(max(lw) / 1024)} KiB in the LeNet below", "mcu_lenet_300_100.json"),
            (dn, "warning-free; {decoder:,} B / {kernel:,} B in the run of {date}, docs/results/mcu_lenet_300_100.json;".format(
                date=_json("mcu_lenet_300_100.json")["machine"]["date"],
                **_json("mcu_lenet_300_100.json")["cortex_m4"]["code_bytes_Os_m0"]), "mcu_lenet_300_100.json")]
    assert sum(t["decoded_bytes"] == 256 for t in ds["packed_tensors"]) == 4 and len(pw) == 4
    pl, (day, when) = _json(src)["pack_layouts"], _json(src)["machine"]["date"].split()[:2]  # *Leaving decoder ...*
    i8, fl = pl["int8"], pl["float"]
    out += [(dn, f"again on {day} at {when} UTC by `benchmarks/mcu_bench.py --test-models`", src),
            (d, f"60 % pruned; {i8['bytes']:,} B) packs to {i8['packed_default']:,} B by default (grouped layouts), "
                f"{i8['packed_minimal']:,} B with `decoder=\"minimal\"`; a float MLP with one unclustered and one "
                f"clustered kernel ({fl['bytes']:,} B) to {fl['packed_default']:,} B (float planes), "
                f"{fl['packed_minimal']:,} B with `decoder=\"minimal\"` (the unclustered kernel stays raw) and "
                f"{fl['packed_dense_sparse_float_planes']:,} B with `layouts=(", src)]
    return out


def _shared_vectors_figures():
    """docs/FORMAT.md §15: what writing each distinct vector once saves (benchmarks/shared_vectors.py)."""
    v = _json("shared_vectors.json")
    return [("docs/FORMAT.md", f"transformer architecture ({v['params']:,} parameters, synthetic pruned and clustered "
                               f"weights; `benchmarks/shared_vectors.py` -> docs/results/shared_vectors.json, "
                               f"{v['machine']['date'][:10]}): {v['saved_bytes']:,} B "
                               f"({100 * v['saved_fraction_of_unshared']:.1f} % of the file written without sharing)",
             "shared_vectors.json")]


def _keras_int8_and_tfmot_figures():
    """docs/quantization.md's Keras int8-on-JAX sizes (benchmarks/keras_int8_jax.py); README's and
    docs/migrating_from_tfmot.md's tfmot files (benchmarks/tfmot_files.py, tests/_tfmot_child.py's files)."""
    k, t = _json("keras_int8_jax.json"), _json("tfmot_files.json")["files"]
    assert k["backend"] == "jax" and k["int8_outputs_max_abs_diff_vs_keras"] == 0, k

    def r(name):
        return f"{t[name]['ratio']:.1f}x"

    return [("docs/quantization.md", f"default layer names: {k['int8_bytes']:,} B against {k['float_bytes']:,} B for the "
                                     "float file, unpacked", "keras_int8_jax.json"),
            ("README.md", f"a pruned + clustered tfmot file shrinks {round(t['pruned_clustered']['ratio'])}x as a file, "
                          f"its PCQAT int8 version {r('pcqat_int8')}, a pruned-only float file (every kept weight "
                          f"distinct) {r('pruned_float')}", "tfmot_files.json"),
            ("docs/migrating_from_tfmot.md", f"({t['qat_int8']['bytes']:,} -> {t['qat_int8']['packed_bytes']:,} B on the "
                                             "test's model)", "tfmot_files.json"),
            ("docs/migrating_from_tfmot.md", f"{r('cqat_int8')} and {r('pcqat_int8')} on the test's model", "tfmot_files.json")]


def _torch_lstm_ops_figure():
    """docs/models.md: what the torch export's unrolled LSTM adds (keras_litert_export.json)."""
    r = _json("keras_litert_export.json")["backends"]["torch"]["lstm"]
    ke, tt = r["keras_export_stripped"]["packed"], r["to_tflite"]["packed"]
    return [("docs/models.md", f"the operators add ~{round((ke - tt) / 1000)} KB ({ke:,} against {tt:,} B packed, "
                               "the table above)", "keras_litert_export.json")]


def _trim_sizes_figures():
    """docs/microcontrollers.md's decoder build-option tables (code bytes, instructions per element),
    from tools/mcu/trim_sizes.sh's table as benchmarks/mcu_bench.py --trim-sizes recorded it."""
    t, d, src = _json("micro_trim_sizes.json"), "docs/microcontrollers.md", "micro_trim_sizes.json"
    cb, default = t["code_bytes"], t["code_bytes"]["default (all features)"]
    labels = {"default (all features)": "none (default: everything)", "DC_CODEC_MINIMAL": "`DC_CODEC_MINIMAL` (all eight)",
              "DC_CODEC_MINIMAL DC_CRC_SMALL_TABLE": "`DC_CODEC_MINIMAL` + `DC_CRC_SMALL_TABLE`"}
    out = [(d, f"Code size for Cortex-M4 ({t['machine']['date']}, `benchmarks/mcu_bench.py --trim-sizes` ->", src)]
    for name, v in cb.items():
        saving = "—" if v is default else (f"{default['linked_Os'] - v['linked_Os']:,} / "
                                           f"{default['linked_O2'] - v['linked_O2']:,}")
        out.append((d, f"| {labels.get(name, f'`{name}`')} | {v['object_Os']:,} | {v['object_O2']:,} | "
                       f"{v['linked_Os']:,} | {v['linked_O2']:,} | {saving} |", src))
    for name, v in t["insns_per_element_O2"].items():
        label = {"DC_CODEC_MINIMAL": "`DC_CODEC_MINIMAL`",
                 "DC_CODEC_MINIMAL DC_CRC_SMALL_TABLE": "`DC_CODEC_MINIMAL` + `DC_CRC_SMALL_TABLE`"}.get(name, name)
        out.append(("docs/microcontrollers_design_notes.md", f"| {label} | " + " | ".join(f"{x:.2f}" for x in v.values()) + " |", src))
    n = int(re.search(r"(\d+) passed, 0 failed", t["test_codec_minimal"]).group(1))
    out.append(("docs/microcontrollers_design_notes.md", f"({n:,} built with `DC_CODEC_MINIMAL`)", src))
    rb = t["release_build"]  # *Release builds*: the image that registers the op, with and without messages
    img = {o: (rb[f"default{o}"]["image_text_bytes"], rb[f"strip{o}"]["image_text_bytes"]) for o in ("-O2", "-Os")}
    ker = {o: rb[f"default{o}"]["kernel_object_bytes"] - rb[f"strip{o}"]["kernel_object_bytes"] for o in ("-O2", "-Os")}
    out.append((d, f"had {img['-O2'][0] - img['-O2'][1]:,} B less `text` at -O2 ({img['-O2'][0]:,} → {img['-O2'][1]:,} B, "
                   f"`arm-none-eabi-size`) and {img['-Os'][0] - img['-Os'][1]:,} B less at -Os ({img['-Os'][0]:,} → "
                   f"{img['-Os'][1]:,} B): the kernel's {ker['-O2']:,} / {ker['-Os']:,} B plus "
                   f"{img['-O2'][0] - img['-O2'][1] - ker['-O2']} / {img['-Os'][0] - img['-Os'][1] - ker['-Os']} B of "
                   f"`dc_strerror`, its switch table and strings ({t['machine']['date']}, "
                   "`benchmarks/mcu_bench.py --trim-sizes` -> docs/results/micro_trim_sizes.json;", src))
    return out


def _tflm_m4_figures():
    """docs/microcontrollers.md's *TFLM on Cortex-M4* tables (benchmarks/mcu_bench.py --tflm-m4, a
    development check against a TFLM 90b983c tree) and the figures derived from them."""
    m, d, src = _json("micro_tflm_m4.json"), "docs/microcontrollers.md", "micro_tflm_m4.json"
    dn = "docs/microcontrollers_design_notes.md"  # the runs' history and the comparisons with earlier kernels
    le, cn = m["lenet"]["runs"], m["cnn"]["runs"]
    assert all(r["mismatches"] == 0 for r in [*le.values(), *cn.values()]) and len(le) == 6 and len(cn) == 6
    out = [(d, f"run of {m['machine']['date']}, 0 mismatches in all 4 packed runs, image "
               f"{m['lenet']['image_text_bytes']:,} B of `text`", src),
           (d, f"0 mismatches in all 6 runs, image {m['cnn']['image_text_bytes']:,} B of `text`:", src)]
    rows = {"float": "float32", "int8": "int8", "ds_cnn": "DS-CNN", "autoencoder": "autoencoder"}
    for runs in (le, cn):
        for name, r in runs.items():
            kind, _, mode = name.partition(".packed.")
            what = {"": "unpacked", "once": "packed, decode once", "each": "packed, decode every invoke"}[mode]
            arena = f"**{r['arena_used']:,}**" if mode == "once" else f"{r['arena_used']:,}"
            out.append((d, f"| {rows[kind]} {what} | {arena} | {r['prepare_insns']:,} | {r['first_invoke_insns']:,} | "
                           f"{r['invoke_insns_avg']:,} |", src))

    def decode(k, runs):
        return runs[f"{k}.packed.once"]["first_invoke_insns"] - runs[f"{k}.packed.once"]["invoke_insns_avg"]

    saves = [le[f"{k}.packed.once"]["arena_used"] - le[f"{k}.packed.each"]["arena_used"] for k in ("float", "int8")]
    times = [le[f"{k}.packed.each"]["invoke_insns_avg"] / le[k]["invoke_insns_avg"] for k in ("float", "int8")]
    out += [(d, f"Decode once's decode ({decode('float', le):,} instructions float, {decode('int8', le):,} int8)", src),
            (d, f"every invoke saves {saves[0]:,} B (float) / {saves[1]:,} B (int8) of arena against it, for "
                f"×{times[0]:.2f} / ×{times[1]:.2f} the instructions of an inference", src)]
    extra = {k: cn[f"{k}.packed.each"]["invoke_insns_avg"] - cn[k]["invoke_insns_avg"] for k in ("ds_cnn", "autoencoder")}
    pct = {k: 100 * extra[k] / cn[k]["invoke_insns_avg"] for k in extra}
    out += [(d, f"Decoding every invoke adds {pct['ds_cnn']:.2f} % (DS-CNN, {extra['ds_cnn']:,} instructions) and "
                f"{pct['autoencoder']:.2f} % (autoencoder)", src),
            (dn, "the arenas (`arena_used_bytes`, 32-bit pointers: smaller than the wheel's) " + " / ".join(
                f"{cn[f'ds_cnn{t}']['arena_used']:,}" for t in ("", ".packed.once", ".packed.each")), src),
            (dn, " / ".join(f"{cn[f'autoencoder{t}']['arena_used']:,}" for t in ("", ".packed.once", ".packed.each"))
                + " B (autoencoder; 37,296 B before)", src),
            (dn, f"DS-CNN on Cortex-M4: {cn['ds_cnn.packed.once']['prepare_insns']:,} instead of 1,376,000 "
                f"`AllocateTensors` instructions, the first invoke {decode('ds_cnn', cn):,} more than the later ones", src),
            (dn, f"costs {60960 - cn['ds_cnn.packed.once']['arena_used']:,} B (DS-CNN) and "
                f"{37296 - cn['autoencoder.packed.once']['arena_used']:,} B (autoencoder) less arena and moves the decode "
                f"({decode('ds_cnn', cn):,} / {decode('autoencoder', cn):,} instructions)", src)]
    st = m["lenet_strip"]["runs"]  # the release-build kernel: same arenas, AllocateTensors within one tick
    assert all(st[k]["mismatches"] == 0 and st[k]["arena_used"] == le[k]["arena_used"] and
               abs(st[k]["prepare_insns"] - le[k]["prepare_insns"]) <= 40 for k in le), st
    a, b = m["lenet"]["image_text_bytes"], m["lenet_strip"]["image_text_bytes"]
    out.append((dn, f"Again on {m['machine']['date'].replace(' ', ' at ', 1)} (`benchmarks/mcu_bench.py --tflm-m4`, "
                   f"`lenet_strip` in docs/results/micro_tflm_m4.json): 0 mismatches, the same arenas and AllocateTensors "
                   f"counts within 40 (one counter tick), image `text` {a:,} → {b:,} B (−{a - b:,} B).", src))
    return out


FIGURES += (_mcu_test_model_figures() + _shared_vectors_figures() + _keras_int8_and_tfmot_figures()
            + _torch_lstm_ops_figure() + _trim_sizes_figures() + _tflm_m4_figures())


def _mcu_lenet_more_figures():
    """docs/microcontrollers.md's *Measured* and *Goals* figures of the LeNet-300-100 run
    (benchmarks/mcu_bench.py -> mcu_lenet_300_100.json) and the CNNs' every-invoke cost on Cortex-M4
    (micro_tflm_m4.json) that the checks above leave out."""
    mcu, d, src = _json("mcu_lenet_300_100.json"), "docs/microcontrollers.md", "mcu_lenet_300_100.json"
    dn = "docs/microcontrollers_design_notes.md"  # the runs' provenance and how the arenas changed
    layers, runs, fl = mcu["model"]["layers"], mcu["tflm_x86"]["runs"], mcu["tflm_x86"]["flash_bytes"]
    assert runs["int8.lut"]["bit_exact_vs_unpacked"], runs["int8.lut"]
    head = {k: runs[k]["arena_head_bytes"] for k in ("float", "int8")}
    gain = {k: runs[f"{k}.packed.once"]["arena_head_bytes"] - head[k] for k in ("float", "int8")}
    ts = mcu["cortex_m4"]["tensors"]
    fc1 = {k: next(t for t in ts if t["name"].startswith(k) and "fc1" in t["name"]) for k in ("float", "int8")}
    small = [t["insns_per_element"] for t in ts if "fc1" not in t["name"]]
    per, lr = mcu["cortex_m4"]["insns_per_element_by_model"], mcu["ratios_packed_vs_lut"]
    out = [(d, f"{100 * mcu['model']['float_error_full_test']:.2f} % test error on the packed float `.tflite`; "
               "fc1 / fc2 / fc3 keep " + " / ".join(str(r["distinct"]) for r in layers) + " distinct non-zero values", src),
           (d, f"fc2 {100 * layers[1]['density']:.0f} %, fc3 {100 * layers[2]['density']:.0f} %), 5-bit shared values", src),
           (d, f"TFLM (PyPI wheel, x86-64, reference kernels), {mcu['tflm_x86']['images']} MNIST test images", src),
           (dn, f"({mcu['cortex_m4']['max_stack_bytes']:,} B at most; the decoder's sources changed in between)", src),
           (d, f"| int8 TFLM LUT (decoded by TFLM at run time) | bit-exact | {runs['int8.lut']['arena_total_bytes']:,} |", src),
           (dn, f"the planned part gained {gain['float']:,} / {gain['int8']:,} B (the largest workspace, fc1's, planned "
               f"beside the input, where the unpacked model plans {head['float']:,} / {head['int8']:,} B)", src),
           (d, f"| float LeNet {per['float']:.2f}, int8 {per['int8']:.2f} (fc1: {fc1['float']['insns_per_element']:.2f} / "
               f"{fc1['int8']['insns_per_element']:.2f}; small layers {round(min(small))}–{round(max(small))};", src),
           (d, f"| float {lr['float (lut_new)']:.3f}; int8 {lr['int8 (lut)']:.3f} / {lr['int8 (lut_new)']:.3f} (pinned / "
               "newer tool;", src),
           (dn, f"packed {fl['float.packed']:,} B float / {fl['int8.packed']:,} B int8", src)]
    m0 = _json("micro_trim_sizes.json")["release_build"]  # the kernel object (M4, M0), with and without messages
    k = {b: m0[b]["kernel_object_bytes"] for b in m0}
    out += [(d, f"Cortex-M0 -Os {k['default-Os-m0']:,} B, stripped {k['strip-Os-m0']:,} B", "micro_trim_sizes.json"),
            (d, f"is {k['default-O2']:,} / {k['default-Os']:,} B at -O2 / -Os with its messages and {k['strip-O2']:,} / "
                f"{k['strip-Os']:,} B without (*Code size* above)", "micro_trim_sizes.json")]
    c = {b: m0[b]["check_object_bytes"] for b in m0}  # the optional model-array check, huffdecode_tflm_check.c
    out.append((d, f"The optional `huffdecode_tflm_check.c` (*Checking the model array*) is {c['default-O2']:,} / "
                   f"{c['default-Os']:,} B at -O2 / -Os, {c['strip-O2']:,} / {c['strip-Os']:,} B stripped, Cortex-M0 -Os "
                   f"{c['default-Os-m0']:,} / {c['strip-Os-m0']:,} B ({_json('micro_trim_sizes.json')['machine']['date']}, "
                   "`benchmarks/mcu_bench.py --trim-sizes`, `check_object_bytes` in docs/results/micro_trim_sizes.json)",
                "micro_trim_sizes.json"))
    cn = _json("micro_tflm_m4.json")["cnn"]["runs"]
    pct = [100 * (cn[f"{k}.packed.each"]["invoke_insns_avg"] - cn[k]["invoke_insns_avg"]) / cn[k]["invoke_insns_avg"]
           for k in ("ds_cnn", "autoencoder")]
    out.append((d, f"for {pct[0]:.2f} % / {pct[1]:.2f} % more instructions per inference on Cortex-M4", "micro_tflm_m4.json"))
    return out


FIGURES += _mcu_lenet_more_figures()


def _int_planes_sizes_figures():
    """docs/FORMAT.md §17: the table's last three rows and the alternatives not kept
    (benchmarks/int_planes_sizes.py -> format_int_planes.json)."""
    src, d = "format_int_planes.json", "docs/FORMAT.md"
    j = _json(src)
    bias, cnn, idx, wide, rnd = j["rows"]
    sec = {"dense": "§5", "sparse": "§6", "grouped_dense": "§11"}
    assert "int64 bias" in bias["tensor"] and "int32 dense bias" in cnn["tensor"] and "sorted" in idx["tensor"]
    assert bias["base_zero_bytes"] == bias["int_planes_bytes"] and rnd["default_encode_bytes"] > rnd["raw_bytes"]
    assert all(r["sign_length_alphabet_bytes"] > r["int_planes_bytes"] for r in (bias, cnn))
    out = [(d, f"| sorted int64 indices (4096 draws from 0..9999) | {idx['raw_bytes']:,} | "
               f"{idx['best_old_layouts_bytes']:,} ({sec[idx['old_layouts_layout']]}) | {idx['int_planes_bytes']:,} (P = 1) |", src),
           (d, f"| {wide['raw_bytes']:,} | {wide['best_old_layouts_bytes']:,} ({sec[wide['old_layouts_layout']]}) | "
               f"{wide['int_planes_bytes']:,} |", src),
           (d, f"| uniformly random int32 (4096) | {rnd['raw_bytes']:,} | {rnd['best_old_layouts_bytes']:,} "
               f"({sec[rnd['old_layouts_layout']]}) | {rnd['int_planes_bytes']:,}: kept raw by `pack` |", src),
           (d, f"2026-12-06, the last three on tensors it makes with seed 0. Its sorted table packs to "
               f"{idx['int_planes_bytes']:,} B", src),
           (d, f"base 0 instead of the median ({bias['base_zero_bytes']:,} B on the int64 bias, as the median; "
               f"{cnn['base_zero_bytes']} B against {cnn['int_planes_bytes']} B on the int32 bias; "
               f"{wide['base_zero_bytes']:,} B against {wide['int_planes_bytes']:,} B, "
               f"{100 * (1 - wide['base_zero_bytes'] / wide['int_planes_bytes']):.1f} % smaller, on `i32_wide`", src),
           (d, f"base = the minimum ({bias['base_min_bytes'] / bias['int_planes_bytes']:.1f}× larger on the int64 bias: "
               f"{bias['base_min_bytes']:,} B)", src),
           (d, f"{8 * (idx['int_planes_bytes'] - idx['sign_length_alphabet_bytes']) / idx['shape'][0]:.1f} bit per element "
               f"smaller on monotone tables (sorted indices {idx['sign_length_alphabet_bytes']:,} B against "
               f"{idx['int_planes_bytes']:,} B) but larger on every bias (its descriptor is 16–32 bytes longer: "
               f"{bias['sign_length_alphabet_bytes']:,} B and {cnn['sign_length_alphabet_bytes']} B against "
               f"{bias['int_planes_bytes']:,} B and {cnn['int_planes_bytes']} B)", src)]
    for r in (bias, cnn):  # the rows int_biases.json also gives: the same tensors, the same bytes
        out.append((d, f"| {r['raw_bytes']:,} | {r['best_old_layouts_bytes']:,} ({sec[r['old_layouts_layout']]}"
                       + (": kept raw" if r["best_old_layouts_bytes"] > r["raw_bytes"] else "")
                       + f") | {r['int_planes_bytes']:,} (P = 0) |", src))
    return out


FIGURES += _int_planes_sizes_figures()


def _container_variants_figures():
    """docs/FORMAT.md §15: what one HuffDecode op, or one packed tensor, would save
    (benchmarks/container_variants.py -> format_container_variants.json)."""
    src = "format_container_variants.json"
    ds, ae = (r for r in _json(src)["rows"])
    assert (ds["model"], ae["model"]) == ("ds_cnn", "autoencoder")
    per = ds["saved_per_packed_tensor"]
    return [("docs/FORMAT.md", f"would save another ~{round(per['one_op'])} B per packed tensor, and that op with one packed "
                               f"tensor holding all the §2 streams ~{round(per['one_tensor'])} B per packed tensor in all", src),
            ("docs/FORMAT.md", f"int8 DS-CNN, {ds['packed_tensors']} packed tensors, {ds['saved_bytes']['one_op']:,} B and "
                               f"{ds['saved_bytes']['one_tensor']:,} B of {ds['variant_bytes']['as_packed']:,} B as dc_keras's "
                               f"writer writes it again (pack wrote {ds['packed_bytes']:,} B, "
                               f"{ds['packed_bytes'] - ds['variant_bytes']['as_packed']} B more: not traced); its autoencoder, "
                               f"{ae['packed_tensors']} packed tensors, "
                               f"{ae['saved_bytes']['one_op']} B and {ae['saved_bytes']['one_tensor']} B;", src)]


FIGURES += _container_variants_figures()


def _crc_speed_figures():
    """docs/FORMAT.md §8: the CRC's speed (benchmarks/bench_crc.py -> crc_speed.json)."""
    src = "crc_speed.json"
    j = _json(src)
    small, _, big = j["rows"]
    assert (small["bytes"], big["bytes"]) == (64 * 1024, 16 << 20)
    return [("docs/FORMAT.md", f"(`benchmarks/bench_crc.py --json docs/results/crc_speed.json`, {j['machine']['date'][:10]}, "
                               f"{j['machine']['cpu']}, load {j['machine']['loadavg'][0]:.1f}): 16 MiB at "
                               f"{big['run_time_choice_gb_per_s']:.2f} GB/s folded, {big['portable_table_gb_per_s']:.2f} GB/s "
                               "by the table", src),
            ("docs/FORMAT.md", f"Python's `zlib.crc32` {big['zlib_gb_per_s']:.2f} GB/s; 64 KiB at "
                               f"{small['run_time_choice_gb_per_s']:.2f} GB/s folded", src)]


FIGURES += _crc_speed_figures()


def _int_planes_speed_figures():
    """docs/FORMAT.md §17: the layout's decode speed (benchmarks/bench_int_planes.py -> int_planes_speed.json)."""
    src = "int_planes_speed.json"
    j = _json(src)
    bias, dense32, idx, dense64 = j["rows"]
    assert [r["layout"] for r in j["rows"]] == ["int_planes", "dense", "int_planes", "dense"]
    return [("docs/FORMAT.md", f"core, best CPU time of {j['reps']}, 2^20 elements, {j['machine']['date'][:10]}, load "
                               f"{j['machine']['loadavg'][0]:.1f} on 2 cores): int32 bias-like "
                               f"({bias['bits_per_element']:.1f} bits per element) {bias['decode_us']:,.0f} µs = "
                               f"{bias['ns_per_element']:.2f} ns per element against {dense32['decode_us']:,.0f} µs "
                               f"({dense32['ns_per_element']:.2f} ns) for a dense §5 int32", src),
            ("docs/FORMAT.md", f"a sorted int64 table (P = 1, {idx['bits_per_element']:.1f} bits per element) "
                               f"{idx['decode_us']:,.0f} µs against {dense64['decode_us']:,.0f} µs for dense int64", src)]


FIGURES += _int_planes_speed_figures()


def _sparse_planes_speed_figures():
    """docs/FORMAT.md §18: the layout's decode speed (benchmarks/bench_sparse_planes.py -> sparse_planes_speed.json)."""
    src = "sparse_planes_speed.json"
    j = _json(src)
    sp20, fp20, s20, sp05, fp05, s05, tf, fptf = j["rows"]
    assert [r["layout"] for r in j["rows"]] == ["sparse_planes", "float_planes", "sparse"] * 2 + ["sparse_planes",
                                                                                               "float_planes"]

    def us(r, path="default"):
        return f"{r[f'decode_us_{path}']:,.0f} µs"
    return [("docs/FORMAT.md", f"core, best CPU time of {j['reps']} in each of {j['rounds']} rounds, "
                               f"{j['machine']['date'][:10]}, load {j['loadavg_before'][0]:.1f} on 2 cores): 20 % kept "
                               f"{us(sp20)} ({sp20['ns_per_element_default']:.2f} ns per element) against {us(fp20)} "
                               f"for §12 of the same tensor and {us(s20)} for §6 ({us(s20, 'portable')} in its "
                               f"portable loop); 5 % kept {us(sp05)} against {us(fp05)} (§12) and {us(s05)} (§6)", src),
            ("docs/FORMAT.md", f"every one of its {tf['elements']:,} elements an entry): {us(tf)} "
                               f"({tf['ns_per_element_default']:.2f} ns per element) against {us(fptf)} for §12", src),
            ("docs/FORMAT.md", f"{sp20['packed_bytes']:,} B, {sp05['packed_bytes']:,} B and {tf['packed_bytes']:,} B "
                               f"against §12's {fp20['packed_bytes']:,} B", src)]


FIGURES += _sparse_planes_speed_figures()


def _lenet_records_figures():
    """README's Table 1 line: the whole-file ratios and test errors of the recorded LeNet runs
    (benchmarks/paper_table1.py) and the paper's, as docs/results.md's Table 1 shows them."""
    a, b = _json("lenet_300_100.json"), _json("lenet_5.json")
    return [("README.md", f"LeNet-300-100 packs to {_x(a['ratio'])} at {100 * a['test_error']:.2f} % test error and "
                          f"LeNet-5 to {_x(b['ratio'])} at {100 * b['test_error']:.2f} %", "lenet_300_100.json"),
            ("README.md", f"the paper: {_x(a['paper']['ratio'])} at {100 * a['paper']['test_error']:.2f} % and "
                          f"{_x(b['paper']['ratio'])} at {100 * b['paper']['test_error']:.2f} %", "lenet_5.json"),
            ("README.md", f"At seeds {_seeds(a)} of the same commands: LeNet-300-100 {_error_range(a)}, "
                          f"LeNet-5 {_error_range(b)}, " + ("all within the paper's errors" if all(
                              s["test_error"] <= r["paper"]["test_error"] for r in (a, b) for s in r["other_seeds"])
                              else "not all within the paper's errors"), "lenet_300_100.json")]


def _seeds(record):
    seeds = [s["seed"] for s in record["other_seeds"]]
    assert seeds == list(range(seeds[0], seeds[-1] + 1)), seeds
    return f"{seeds[0]}-{seeds[-1]}"


def _error_range(record):
    errors = [100 * s["test_error"] for s in record["other_seeds"]]
    return f"{min(errors):.2f}-{max(errors):.2f} %"


FIGURES += _lenet_records_figures()


def test_tflm_resolver_size_is_the_one_tflm_abi_h_asserts():
    """microcontrollers_design_notes.md's sizeof(MicroMutableOpResolver<200>) on x86-64 is the LP64 size tflm_abi.h
    asserts for DcTflmPythonOpsResolver (compiled in every host build of the TFLM kernel; the wheel's
    resolver memory is checked against that layout at registration, tests/test_micro.py)."""
    with open(os.path.join(ROOT, "tflite_kernels", "micro", "tflm_abi.h")) as f:
        size = int(re.search(r"sizeof\(DcTflmPythonOpsResolver\) == (\d+)", f.read()).group(1))
    body = re.sub(r"\s+", " ", _docs.read("docs/microcontrollers_design_notes.md"))
    assert f"`sizeof(MicroMutableOpResolver<200>)` ({size:,} B on x86-64) matches `DcTflmPythonOpsResolver`" in body


@pytest.mark.parametrize(("doc", "text", "source"), FIGURES, ids=[f"{d}:{s}:{k}" for k, (d, _, s) in enumerate(FIGURES)])
def test_figure_matches_its_json(doc, text, source):
    """A figure quoted outside docs/results.md, rebuilt from docs/results/<source>: a re-run that
    changes the JSON, or an edit of the doc, shows up here (update both together)."""
    body = re.sub(r"\s+", " ", _docs.read(doc))
    assert text in body, f"{doc} does not say {text!r} (rebuilt from docs/results/{source})"


def _default_density(name):
    """huffdecode_op.c's #define DC_DEFAULT_MAX_DENSITY_<name> (percent)."""
    with open(os.path.join(ROOT, "tflite_kernels", "src", "huffdecode_op.c")) as f:
        return int(re.search(rf"#define DC_DEFAULT_MAX_DENSITY_{name} (\d+)", f.read()).group(1))


def _densest_faster_float32(d, variant):
    """In bench_density.py's JSON d, the densest density measured at which every float32 layer
    (both sizes, batch 1 and 8) ran faster compressed than decoded (median ratio) and took less
    memory with the kernels of ``variant`` (None: the main figures), every sparser one too."""
    by_pct = {}
    for r in d["rows"]:
        if r["dtype"] == "float32" and r["batch"] in (1, 8):  # batch 32 is reported, not chosen for
            v = r if variant is None else r["variants"][variant]
            by_pct.setdefault(round(100 * r["density"]), []).append(
                v["ratio"] < 1 and v["compact_bytes"] < r["dense_bytes"])
    assert all(len(v) == 4 for v in by_pct.values()), by_pct  # 1024² and 4096², batch 1 and 8
    faster = 0
    for pct in sorted(by_pct):
        if not all(by_pct[pct]):
            break
        faster = pct
    return faster


def test_tile_form_default_max_density_is_the_densest_measured_faster_density():
    """The tile form's default max_density (tflite_kernels/src/huffdecode_op.c,
    DC_DEFAULT_MAX_DENSITY_FLOAT32_TILES; docs/android.md) is, in docs/results/density.json (an
    AVX-512 run: the tile form), the densest density measured at which every float32 layer (both
    sizes, batch 1 and 8) ran faster compressed than decoded and took less memory, every sparser
    one too. A re-run that moves the crossing shows up here: revisit the default and its
    justification in huffdecode_op.c, docs/android.md and docs/runtime.md together."""
    default = _default_density("FLOAT32_TILES")
    d = _json("density.json")
    assert d["compressed_kernel"] == "avx512", "density.json was not measured on the tile form"
    faster = _densest_faster_float32(d, None)
    assert default == faster, (f"DC_DEFAULT_MAX_DENSITY_FLOAT32_TILES is {default} %, the measurement "
                               f"says {faster} % (densest density faster at batch 1 and 8 in both sizes)")


def test_avx2_float32_default_max_density_is_the_densest_measured_faster_density():
    """The float32 default max_density with the AVX2 kernels (x86-64 CPUs without AVX-512:
    huffdecode_op.c, DC_DEFAULT_MAX_DENSITY_FLOAT32_AVX2; docs/android.md) follows the tile form's
    rule on docs/results/density.json's "avx2" variant (bench_density.py --variants: the layer built
    and run with dc_sparse_fc_use_simd(4), i.e. on the rows with the scalar kernels). A re-run that
    moves the crossing shows up here: revisit the default and its justification together."""
    default = _default_density("FLOAT32_AVX2")
    faster = _densest_faster_float32(_json("density.json"), "avx2")
    assert default == faster, (f"DC_DEFAULT_MAX_DENSITY_FLOAT32_AVX2 is {default} %, the measurement "
                               f"says {faster} % (densest density faster at batch 1 and 8 in both sizes)")


def test_int8_default_max_density_is_where_the_compact_form_stops_saving_a_quarter():
    """The int8 default max_density (huffdecode_op.c, DC_DEFAULT_MAX_DENSITY_INT8; docs/android.md,
    docs/runtime.md) is chosen for memory: in docs/results/density.json every int8 layer measured at or
    below it (both sizes, batch 1 and 8) takes at most 0.75x of the int8 weights' memory compressed,
    and at the next density measured above it some layer takes more. A re-run or a form change that
    moves the crossing shows up here: revisit the default and its justification together."""
    with open(os.path.join(ROOT, "tflite_kernels", "src", "huffdecode_op.c")) as f:
        default = int(re.search(r"#define DC_DEFAULT_MAX_DENSITY_INT8 (\d+)", f.read()).group(1))
    by_pct = {}
    for r in _json("density.json")["rows"]:
        if r["dtype"] == "int8":
            by_pct.setdefault(round(100 * r["density"]), []).append(r["compact_bytes"] <= 0.75 * r["dense_bytes"])
    assert all(len(v) == 4 for v in by_pct.values()), by_pct  # 1024² and 4096², batch 1 and 8
    below = [p for p in by_pct if p <= default]
    above = min(p for p in by_pct if p > default)
    assert below and all(all(by_pct[p]) for p in below), {p: by_pct[p] for p in below}
    assert not all(by_pct[above]), (f"DC_DEFAULT_MAX_DENSITY_INT8 is {default} %, but int8 layers at {above} % "
                                    "still take <= 0.75x of the weights' memory")


def test_default_max_density_figures_match_huffdecode_op():
    """docs/runtime.md's weights= section, docs/android.md and docs/android_design_notes.md give the default
    max_density of each form as huffdecode_op.c's DC_DEFAULT_MAX_DENSITY_* say (the tests above tie those
    to density.json): a changed default shows up here in every sentence that quotes it."""
    f, t, a, i, v = (_default_density(k) for k in ("FLOAT32", "FLOAT32_TILES", "FLOAT32_AVX2", "INT8",
                                                   "FLOAT32_VALUES"))
    texts = {"docs/runtime.md": [f"(≤ {f} % density; ≤ {t} % on AVX-512 CPUs, ≤ {a} % on other x86-64 CPUs",
                           f"by the form the layer runs in: {f} % for float32 weights on the row form",
                           f"slower there; {a} % with the AVX2 kernels", f"{t} % on the tile form that AVX-512 CPUs run",
                           f"and so do int8 layers above {i} %", f"`cluster`: ≤ {v} % density, on the *value form*",
                           f"{v} % for unclustered float32 weights on the value form"],
             "docs/android.md": [f"default by the form the layer runs in: {f} for float32 weights on the row form, {t} on "
                                 f"the tile form of AVX-512 CPUs, {a} for float32 with the AVX2 kernels of other x86-64 "
                                 f"CPUs, {v} for unclustered float32 weights (the value form), {i} for int8",
                                 f"**{f} % with float32 weights on the row form, {t} % with float32 weights on the tile "
                                 f"form** (AVX-512 CPUs, ≤ 32 values), **{a} % with float32 weights with the AVX2 kernels**",
                                 f"**{v} % with unclustered float32 weights** (the value form, every CPU)",
                                 f"**and {i} % with int8 weights**", f"or not clustered, ≤ {v} % dense",
                                 f"batch-1 inference of large float32 FC layers at ≤ {f} % density (≤ {t} % on the tile "
                                 "form of AVX-512 CPUs)"],
             "docs/android_design_notes.md": [f"The default, {t} %, is the densest density measured",
                                              f"the value form): {v} %, the densest density measured",
                                              f"5 % (AVX2), {v} % (value form)",
                                              f"default `max_density` is **{a} %** (huffdecode_op.c",
                                              f"The int8 default stays {i} %"]}
    missing = [(doc, text) for doc, want in texts.items() for text in want
               if text not in re.sub(r"\s+", " ", _docs.read(doc))]
    assert not missing, missing

def test_fuzzing_md_describes_every_harness():
    """docs/fuzzing.md's "The harnesses" names each tflite_kernels/fuzz/fuzz_*.c (it listed two of four)."""
    harnesses = sorted(f for f in os.listdir(os.path.join(ROOT, "tflite_kernels", "fuzz"))
                       if re.match(r"fuzz_\w+\.c$", f))
    section = _docs.read("docs/fuzzing.md").split("## The harnesses", 1)[1].split("\n## ", 1)[0]
    assert len(harnesses) >= 4 and [h for h in harnesses if f"* `{h}`" not in section] == [], harnesses


# -- calls shown in prose --------------------------------------------------------------------------

# Bare names the docs use for dc_keras's own functions (`to_tflite(model, batch_size=8)`).
_ALIASES = {**{f: f"dc_keras.export.{f}" for f in ("to_tflite", "pack", "unpack", "inspect")},
            **{f: f"dc_keras.{f}" for f in ("prune", "cluster", "strip", "sensitivity", "suggest_sparsity",
                                             "coverage", "PruningCallback")},
            "Interpreter": "dc_keras.runtime.Interpreter", "compiled_model": "dc_keras.runtime.compiled_model",
            "fold_batchnorm": "dc_keras.train.fold_batchnorm",
            "ClusteringSummaries": "dc_keras.train.ClusteringSummaries"}


def _resolve(dotted):
    import importlib

    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def _calls(texts):
    """``(path, name, keywords)`` of each dc_keras call in the code spans and Python blocks of ``texts``."""
    import ast

    out = []
    for path, text in texts.items():
        spans = _docs.spans(path, text)
        spans += [code for _, _, code in (_docs.blocks(path, "python") if path.endswith(".md") else [])]
        for span in spans:
            try:
                tree = ast.parse(span.strip())
            except SyntaxError:
                continue  # prose, a signature with defaults, another language
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func)
                    name = _ALIASES.get(name, name)
                    if name.startswith("dc_keras."):
                        out.append((path, name, [k.arg for k in node.keywords if k.arg]))
    return out


def _bad_calls(calls):
    import inspect

    bad = []
    for path, name, keywords in calls:
        try:
            obj = _resolve(name)
        except (ImportError, AttributeError) as e:
            bad.append((path, name, f"does not exist ({e})"))
            continue
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            bad += [(path, name, f"takes no keyword {k!r}") for k in keywords if k not in params]
    return bad


def test_every_dc_keras_call_shown_exists_with_its_keywords():
    """`dc_keras.X(...)` / `to_tflite(model, batch_size=8)` in the docs and notebooks: the function
    exists and takes each keyword shown (blocks this file cannot run are checked this way too)."""
    calls = _calls(_docs.texts())
    assert len(calls) >= 40, calls
    assert not _bad_calls(calls), _bad_calls(calls)
    # and the check can fail
    assert _bad_calls(_calls({"x.txt": "`dc_keras.prune(model, schedul=s)` `to_tflite(m, quantise='int8')` "
                                      "`dc_keras.export.no_such()`"})) and \
        len(_bad_calls(_calls({"x.txt": "`dc_keras.prune(model, schedul=s)` `to_tflite(m, quantise='int8')`"}))) == 2


def test_spans_after_a_fence_pair_up():
    """Inline code after a fenced block is read as code: a fence's backticks used to shift the
    pairing, so 36 of the 81 dc_keras calls the docs show were read as prose and never checked."""
    text = "a `dc_keras.strip(m)` b\n\n```sh\nmake x\n```\n\nc `dc_keras.prune(m, s)` and `x`\n"
    assert _docs.spans("x.md", text) == ["dc_keras.strip(m)", "dc_keras.prune(m, s)", "x"]
    assert len(_calls(_docs.texts())) >= 80

# Names the docs show on purpose as not provided (each raises one error naming the replacement).
_NOT_PROVIDED = ("dc_keras.compat.tfmot.quantization",)


def _unresolved_names(texts):
    """``(path, name)`` of each dotted ``dc_keras.x.y`` name in the code spans and Python blocks of
    ``texts`` that does not import or resolve (calls, classes, warnings, modules alike)."""
    out, seen = [], 0
    for path, text in texts.items():
        code = _docs.spans(path, text) + [c for _, _, c in (_docs.blocks(path, "python") if path.endswith(".md") else [])]
        for span in code:
            for name in re.findall(r"(?<![\w./])dc_keras(?:\.[A-Za-z_]\w*)+", span):
                seen += 1
                if name.startswith(_NOT_PROVIDED):
                    continue
                try:
                    _resolve(name)
                except (ImportError, AttributeError):
                    out.append((path, name))
    return out, seen


def test_every_dc_keras_name_shown_exists():
    """`dc_keras.export.ClusterSpreadWarning`, `dc_keras.runtime.library_path()`, ...: every dotted
    dc_keras name of the docs and notebooks resolves (121 names on 2026-12-03), not only the calls."""
    bad, seen = _unresolved_names(_docs.texts())
    assert seen >= 100 and not bad, (seen, bad)
    assert _unresolved_names({"x.txt": "`dc_keras.export.ClusterSpreadWarnin` `dc_keras.strip`"})[0] == [
        ("x.txt", "dc_keras.export.ClusterSpreadWarnin")]

def _missing_names(texts):
    """``DC_*`` names (environment variables, C macros and enums) the texts use that no source defines."""
    sources = []
    for top in ("dc_keras", "tflite_kernels", "tools", "benchmarks", "jax_kernels", "tests"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            sources += [os.path.join(folder, f) for f in files if f.endswith((".py", ".c", ".h", ".cc", ".sh", ".mk"))
                        or f == "Makefile"]
    pattern = r"\bDC_[A-Z0-9_]*[A-Z0-9]\b"
    defined = set()
    for path in sources + [os.path.join(ROOT, "Makefile")]:
        with open(path, encoding="utf-8", errors="replace") as f:
            defined.update(re.findall(pattern, f.read()))
    return sorted({n for text in texts.values() for n in re.findall(pattern, text)} - defined)


def test_every_dc_name_shown_exists():
    """`DC_KERAS_DECODE_THREADS=1`, `DC_TFLM_DECODE_EACH_INVOKE`, `DC_UNPACK_OK`, ...: each DC_* name the
    docs and notebooks use is in the sources (a renamed variable or macro would leave the docs behind)."""
    assert not _missing_names(_docs.texts())
    typo = "DC_KERAS_DECODE" + "_THREAD"  # not spelled out: this file is one of the sources
    assert _missing_names({"x": f"`{typo}=1`"}) == [typo]


# -- what the text around the code says it does ----------------------------------------------------

def test_readme_demo_rows_agree_with_the_demo():
    """README's `dc-keras demo` table: the epochs shown are dc_keras.demo's, each ratio is the float
    file's bytes over the packed bytes shown, and run_demo's docstring example prints the quick
    row's ratio (it said 41.2 while the README and a re-run gave 41.4: 1,069,652 / 25,824 B)."""
    from dc_keras import demo

    text = _docs.read("README.md")
    floats = int(re.search(r"float `\.tflite` ([\d,]+) B", text).group(1).replace(",", ""))
    rows = re.findall(r"^\| `dc-keras demo( --full)?` \((\d+)/(\d+)/(\d+) epochs\) \| [^|]+ \| ([\d,]+) B \| "
                      r"([\d.]+)x \|", text, re.M)
    assert [r[0] for r in rows] == ["", " --full"], rows
    for full, *epochs, packed, ratio in rows:
        assert tuple(map(int, epochs)) == (demo.FULL_EPOCHS if full else demo.QUICK_EPOCHS), (full, epochs)
        assert f"{floats / int(packed.replace(',', '')):.1f}" == ratio, (full, floats, packed, ratio)
    shown = re.search(r"rows\[0\]\.file_bytes / rows\[-1\]\.file_bytes.*\n\s*([\d.]+)\.\.\.", demo.run_demo.__doc__)
    assert shown and shown.group(1) == rows[0][-1], (shown and shown.group(1), rows[0][-1])


def test_decode_op_shown_with_the_backend_it_needs():
    """`Interpreter(decode="op")` runs on backend="tensorflow" only (the default LiteRT backend raises
    a ValueError saying so): a call the docs show with decode="op" passes that backend
    (docs/quantization.md showed it without)."""
    import ast

    calls = 0
    for path, text in _docs.texts().items():
        for span in _docs.spans(path, text):
            try:
                tree = ast.parse(span.strip())
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Interpreter"):
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    if kw.get("decode") == "'op'":
                        calls += 1
                        assert kw.get("backend") == "'tensorflow'", f"{path}: `{span}` needs backend=\"tensorflow\""
    assert calls >= 1
    import dc_keras

    with pytest.raises(ValueError, match="backend='tensorflow'"):
        dc_keras.runtime.Interpreter(model_content=b"", decode="op")


def test_multi_worker_md_shows_the_keys_the_example_prints():
    """docs/multi_worker.md's sample last line of `python examples/multi_worker.py --workers 2`: its
    keys, in order, begin the launcher's final JSON object (the values are the example's run,
    checked by tests/test_multi_worker.py; its digest was a stale "9a73…" where today's run printed
    "139f…": now a placeholder)."""
    import ast

    shown = next(code for lang, _, code in _docs.blocks("docs/multi_worker.md") if lang == "json")
    keys = re.findall(r'"(\w+)":', shown)
    tree = ast.parse(_docs.read("examples/multi_worker.py"))
    printed = [[k.value for k in node.keys] for node in ast.walk(tree)
               if isinstance(node, ast.Dict) and node.keys and getattr(node.keys[0], "value", None) == "workers"
               and any(getattr(k, "value", None) == "agree" for k in node.keys)]
    assert len(printed) == 1, printed
    assert keys[:-1] == printed[0][: len(keys) - 1] and keys[-1] in printed[0], (keys, printed)
    assert '"workers": 2' in shown and '"agree": true' in shown


_README_CHECKS = """
import json
import numpy as np
pruned_kernels = [l.get_weights()[0] for l in dc_keras.strip(pruned).layers]
shared_kernels = [l.get_weights()[0] for l in model.layers]
unpacked = dc_keras.runtime.Interpreter(model_content=dc_keras.export.unpack(packed))
outs = []
for it in (interpreter, unpacked):
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[:1])
    it.invoke()
    outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
with open("model.packed.tflite", "rb") as f:
    on_disk = f.read()
print("CHECKS " + json.dumps({
    "sparsity": [float(np.mean(k == 0)) for k in pruned_kernels],
    "expected": [float(np.floor(0.9 * k.size) / k.size) for k in pruned_kernels],
    "zeros_kept": [bool(np.array_equal(a == 0, b == 0)) for a, b in zip(pruned_kernels, shared_kernels)],
    "distinct": [int(np.unique(k[k != 0]).size) for k in shared_kernels],
    "file_is_packed": on_disk == packed and b"HuffDecode" in on_disk,
    "bit_identical": outs[0].tobytes() == outs[1].tobytes()}))
"""


@pytest.mark.long  # ~60 s: 2,000 training steps, what the README's schedule needs to reach 0.9
def test_readme_example_does_what_its_comments_say(tmp_path):
    """README's first example, with enough data (12,800 rows) for its schedule to finish
    (end_step=2000 = 5 epochs x 400 batches): each kernel ends at sparsity 0.9 (floor(0.9 n) zeros),
    clustering keeps exactly those zeros ("pruned zeros stay exactly 0") with <= 2**5 shared
    values, model.packed.tflite is the packed file, and the packed model's output is bit-identical
    to the unpacked one's. (test_python_block_runs only runs it: on its 256 rows nothing is pruned.)"""
    code = _docs.blocks("README.md", "python")[0][2]
    values = {"model": VALUES["README.md", "model"], "x, y": VALUES["README.md", "x, y"].replace("256", "12800")}
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _docs.fill(code, values) + _README_CHECKS], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads([line for line in r.stdout.splitlines() if line.startswith("CHECKS ")][-1][7:])
    assert res["sparsity"] == res["expected"] and len(res["sparsity"]) == 2, res
    assert res["zeros_kept"] == [True, True] and all(1 < d <= 32 for d in res["distinct"]), res
    assert res["file_is_packed"] and res["bit_identical"], res
