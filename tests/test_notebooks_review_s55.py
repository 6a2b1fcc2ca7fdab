"""The Colab tutorial journey through examples/*.ipynb read afresh (review s55): what a reader met
that the earlier reviews left, checked statically (the notebooks' smoke runs are in
tests/test_notebooks.py, whose CLAIMS hold this review's new claims about printed output).

- Notebook 04 ran the tutorials' `tf.lite.Interpreter`, which TensorFlow deprecates and says is
  scheduled for deletion (its warning in every run, explained away in the markdown): it now uses
  LiteRT's `ai_edge_litert.interpreter.Interpreter` (the same calls; dc_keras requires LiteRT), says
  so among its changes, and no longer lists that warning.
- Notebook 04 never showed what dc_keras adds for a tfmot user: the tutorials' files shrink only
  when zipped. A section (not the tutorials') packs them and checks packed vs unpacked outputs.
- Notebooks 01 and 02 said little about running the packed file on a phone (01: the C call and a
  Python delegate with no import; 02: nothing). Both now give the LiteRT line with its import, the
  Android route and links to docs/android.md; the Python line runs as written here.
- Links in the notebooks are full GitHub addresses (a relative docs/ link goes nowhere in Colab);
  each names a file and heading of this repository.
- Notebook 03's column table left out the report's `sg`, `tensor`, `ratio` and `reason` columns
  (`reason` reads "dense" for a packed tensor: the layout); it now covers every column printed.
- `Report.plot` labelled each bar with the layer name alone: fc1's kernel and bias were both "fc1_1"
  in notebook 03's chart (and the CLI's). Bars are now labelled with the name's last two parts,
  distinct, and the x axis says what the bars are.
- The notebooks keep no stored outputs (stale outputs that disagree with the code are worse than
  none).
"""
import json
import os
import re
import warnings

import numpy as np
import pytest
from _interp_outputs import first_output

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
NOTEBOOKS = sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".ipynb"))
REPO_URL = "https://github.com/dc-keras/dc_keras/blob/main/"


def _nb(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        return json.load(f)


def _sources(name, kind):
    return ["".join(c["source"]) for c in _nb(name)["cells"] if c["cell_type"] == kind]


def _markdown(name):
    return "\n".join(_sources(name, "markdown"))


def test_the_notebooks_store_no_outputs():
    """Outputs saved in an .ipynb are what a reader sees before running anything: none are kept, so
    none can disagree with the code or the markdown."""
    for name in NOTEBOOKS:
        for i, cell in enumerate(_nb(name)["cells"]):
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, (name, i)


def _github_slug(heading):
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_links_in_the_notebooks_are_github_addresses_of_files_and_headings_that_exist():
    """In Colab a relative link (docs/android.md) opens nothing: the notebooks link the repository's
    files by their GitHub address (setup.cfg's url). Each names a file here and, with an anchor, one
    of its headings (GitHub's slug)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    assert REPO_URL == cfg["metadata"]["url"] + "/blob/main/"
    seen = 0
    for name in NOTEBOOKS:
        text = _markdown(name)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("https://arxiv.org/"):
                continue
            assert target.startswith(REPO_URL), (name, target)
            path, _, anchor = target[len(REPO_URL):].partition("#")
            full = os.path.join(ROOT, path)
            assert os.path.isfile(full), (name, target)
            if anchor:
                with open(full, encoding="utf-8") as f:
                    slugs = {_github_slug(h) for h in re.findall(r"^#+ (.*)$", f.read(), re.M)}
                assert anchor in slugs, (name, target)
            seen += 1
    assert seen >= 5, seen


def test_notebook_04_runs_litert_s_interpreter_not_the_deprecated_tf_lite_one():
    """`tf.lite.Interpreter` warned "deprecated and scheduled for deletion" in every run; the cell
    uses LiteRT's interpreter (what the warning points to), and the markdown says so among the
    notebook's changes to the tutorials' code."""
    code = "\n".join(_sources("04_tfmot_tutorials.ipynb", "code"))
    live = "\n".join(line.split("#")[0] for line in code.splitlines())
    assert "tf.lite.Interpreter" not in live
    assert "from ai_edge_litert.interpreter import Interpreter\ninterpreter = Interpreter(" in code
    text = re.sub(r"\s+", " ", _markdown("04_tfmot_tutorials.ipynb"))
    assert "so the accuracy cell uses LiteRT's `ai_edge_litert.interpreter.Interpreter`, which takes the same calls" in text
    assert "`tf.lite.Interpreter` is deprecated)" not in text  # the warning it no longer prints


def test_litert_interpreter_takes_the_calls_of_notebook_04s_accuracy_cell(tmp_path):
    """The tutorial's evaluate_model() and its cell, on LiteRT's interpreter, on a quantized .tflite
    as the cell makes it (dynamic-range, via the converter's optimizations)."""
    import keras

    import dc_keras

    cells = _sources("04_tfmot_tutorials.ipynb", "code")
    evaluate = next(c for c in cells if "def evaluate_model(" in c)
    run = next(c for c in cells if "test_accuracy = evaluate_model(" in c)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tflite = dc_keras.export.to_tflite(model, pack=False, quantize="dynamic")
    images = np.random.default_rng(0).random((20, 28, 28))
    labels = np.argmax(model.predict(images.astype(np.float32), verbose=0), 1)
    scope = {"quantized_and_pruned_tflite_model": tflite, "test_images": images, "test_labels": labels,
             "model_for_pruning_accuracy": 1.0}
    exec(evaluate, scope)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no deprecation warning from this interpreter
        exec(run, scope)
    assert scope["test_accuracy"] >= 0.9


def test_notebook_04_packs_the_tutorials_files_and_checks_them():
    """The section after the tutorials packs their three .tflite files and the sparsity-preserving
    clustered one, compares each with the baseline .tflite, and the check cell needs every packed
    file bit-identical to its unpacked one."""
    cells = _sources("04_tfmot_tutorials.ipynb", "code")
    pack = next(c for c in cells if "export.pack(" in c)
    for name in ("pruned_tflite_model", "quantized_and_pruned_tflite_model", "tflite_clustered_model",
                 "sparsity_clustered_tflite_model", "baseline_tflite_model"):
        assert name in pack, name
    assert cells.index(pack) < len(cells) - 1  # before the checks
    assert "ok &= bool(packed_identical)" in cells[-1]
    assert "## Beyond the tutorials: the `.tflite` files themselves, packed" in _markdown("04_tfmot_tutorials.ipynb")


@pytest.mark.parametrize("name, file", [("01_quickstart_mnist.ipynb", "lenet_300_100.packed.tflite"),
                                        ("02_pack_existing_tflite.ipynb", "mobilenetv2_int8.packed.tflite")])
def test_the_litert_line_for_a_device_runs_as_written(name, file, tmp_path, monkeypatch):
    """Notebooks 01 and 02 give the LiteRT route for running the packed file outside dc_keras (its
    import, then Interpreter(..., experimental_delegates=[load_delegate(library_path())])): run as
    written on a packed file of that name, it loads and gives the unpacked file's outputs."""
    import keras

    import dc_keras

    text = _markdown(name)
    imports = re.search(r"`(from ai_edge_litert\.interpreter import Interpreter, load_delegate)`", text)
    line = re.search(r"`(Interpreter\(model_path=\"([^\"]+)\", experimental_delegates=\[load_delegate\("
                     r"dc_keras\.runtime\.library_path\(\)\)\]\))`", text)
    assert imports and line, name
    assert line.group(2) == file
    assert "docs/android.md" in text
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, name="fc1"), keras.layers.Dense(4, name="fc2")])
    for layer in model.layers:  # pruned and shared by hand: both kernels pack
        k = layer.kernel.numpy()
        layer.kernel.assign(np.where(np.abs(k) < 0.15, 0, np.sign(k) * 0.2).astype(np.float32))
    plain = dc_keras.export.to_tflite(model, pack=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / file).write_bytes(dc_keras.export.pack(plain))
    scope = {"dc_keras": dc_keras}
    exec(imports.group(1), scope)
    it = eval(line.group(1), scope)
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)

    def run(it):
        return first_output(it, x)

    np.testing.assert_array_equal(run(it), run(scope["Interpreter"](model_content=plain)))


def test_notebook_03s_column_table_explains_every_column_the_report_prints():
    """The report prints sg, tensor, dtype, shape, density, distinct, raw bytes, packed, ratio,
    status, reason; the notebook's table explained seven of them (not `reason`, which reads
    `dense` or `sparse` for a packed tensor)."""
    import keras

    import dc_keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = str(dc_keras.export.inspect(dc_keras.export.to_tflite(model, pack=False))).splitlines()[0]
    columns = re.split(r" +", head.strip().replace("raw bytes", "raw_bytes"))
    assert columns == ["sg", "tensor", "dtype", "shape", "density", "distinct", "raw_bytes", "packed", "ratio",
                       "status", "reason"], columns
    table = next(m for m in _sources("03_compression_report.ipynb", "markdown") if "| column | meaning |" in m)
    explained = {name for row in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`([^`]+)`", row)}
    assert {c.replace("_", " ") for c in columns} <= explained, explained
    assert "`dense` codes every element's shared value, `sparse` only the non-zero ones" in table


def test_plot_labels_each_bar_distinctly_with_the_end_of_its_name(tmp_path, monkeypatch):
    """notebook 03's chart labelled fc1's kernel and bias both "fc1_1" (the layer name alone): now
    "fc1_1/MatMul" and "fc1_1/BiasAdd", every label distinct, and the x axis says what they are."""
    import keras

    import dc_keras
    from dc_keras.export import _inspect

    assert _inspect._bar_labels(["m/fc1/MatMul", "m/Relu;m/fc1/BiasAdd", "x", "x", "", "m/fc2/MatMul"]) == [
        "fc1/MatMul", "fc1/BiasAdd", "x", "x #2", "(unnamed)", "fc2/MatMul"]
    # MobileNetV2's fused depthwise kernels all end ".../batchnorm/mul": one more part tells them apart
    net = "functional_1/mobilenetv2_1.00_160_1/"
    assert _inspect._bar_labels([f"{net}block_{i}_depthwise_BN_1/batchnorm/mul_1;{net}block_{i}_depthwise_1/depthwise;"
                                 f"{net}block_{i}_depthwise_BN_1/batchnorm/mul" for i in (16, 15)]
                                + [f"{net}Conv_1_1/convolution", "q/a/bn/mul", "a/bn/mul"]) == [
        "block_16_depthwise_BN_1/batchnorm/mul", "block_15_depthwise_BN_1/batchnorm/mul", "Conv_1_1/convolution",
        "q/a/bn/mul", "a/bn/mul"]
    keras.utils.set_random_seed(0)
    dense = {"bias_initializer": "random_normal"}  # biases the converter keeps as constants of their own
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu", name="fc1", **dense),
                              keras.layers.Dense(16, activation="relu", name="fc2", **dense),
                              keras.layers.Dense(4, name="fc3", **dense)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = dc_keras.export.inspect(dc_keras.export.to_tflite(model, pack=False))
    figures = []
    monkeypatch.setattr(_inspect, "write_figure", lambda fig, *_: figures.append(fig))
    report.plot(tmp_path / "sizes.png")
    ax = figures[0].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == len(report.rows) and len(set(labels)) == len(labels), labels
    assert any(re.fullmatch(r"fc1\w*/MatMul", t) for t in labels) and any(re.fullmatch(r"fc1\w*/BiasAdd", t)
                                                                          for t in labels), labels
    assert ax.get_xlabel() == "constant tensor (layer/op), largest first"
    assert ax.get_ylabel() == "KiB" and ax.get_title().startswith("constant tensors:")


def test_readme_names_every_notebook_in_order_and_where_colab_opens_it():
    """README said only that the notebooks are in examples/ (04 by name): a Colab user now reads each
    one's name and subject in order, and the address Colab opens them at (setup.cfg's repository)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = re.sub(r"\s+", " ", f.read())
    quick = readme[readme.index("## Quick start"):readme.index("## Compressing your own model")]
    positions = [quick.index(f"`{name[:-len('.ipynb')]}`") for name in NOTEBOOKS]
    assert positions == sorted(positions), NOTEBOOKS
    assert "`https://colab.research.google.com/github/dc-keras/dc_keras/blob/main/examples/<name>.ipynb`" in quick


def test_notebook_04s_packed_figures_agree_with_themselves_and_with_the_intro():
    """The packed section's dated figures (checked against a full run by the long
    test_readme_and_notebooks.test_full_run_prints_the_ratios_its_markdown_gives): each ratio is its
    sizes' to 0.1, and the zip sizes it compares with are the full run's that the intro gives; the
    intro's summary of the section gives its ratios' range and which files pack below their zips."""
    text = re.sub(r"\s+", " ", _markdown("04_tfmot_tutorials.ipynb"))
    base = re.search(r"against the baseline `\.tflite` of ([\d,]+) B:", text)
    rows = re.findall(r"(pruned|pruned and quantized|clustered|sparsity-preserving clustered) ([\d,]+) B \(([\d.]+)x\)",
                      text[base.end():])
    assert [r[0] for r in rows] == ["pruned", "pruned and quantized", "clustered", "sparsity-preserving clustered"]
    num = lambda s: int(s.replace(",", ""))  # noqa: E731
    for _, size, ratio in rows:
        assert f"{num(base.group(1)) / num(size):.1f}" == ratio, (size, ratio)
    intro = re.search(r"\(baseline [\d,]+ B; ([\d,]+) B, ([\d,]+) B and ([\d,]+) B\)", text)
    packed = {k: s for k, s, _ in rows}
    # packed-format version 5 (review s56): the pruned file packs smaller than its zip, the pruned and
    # quantized one does not, the clustered one does; the intro's summary gives the range of ratios
    assert f"(pruned: {packed['pruned']} B vs {intro.group(1)} B zipped)" in text
    assert f"(pruned and quantized: {packed['pruned and quantized']} B vs {intro.group(2)} B zipped)" in text
    assert f"(clustered: {packed['clustered']} B vs {intro.group(3)} B zipped)" in text
    assert num(packed["pruned"]) < num(intro.group(1)) and num(packed["clustered"]) < num(intro.group(3))
    assert num(packed["pruned and quantized"]) > num(intro.group(2))
    ratios = sorted(float(r) for _, _, r in rows)
    assert (f"not only their zips ({ratios[0]}x to {ratios[-1]}x smaller than the baseline's `.tflite`; "
            "all but the pruned and quantized one smaller than their zips too)") in text
