"""A newcomer's run through examples/*.ipynb on Colab (review s51): the mistakes a tutorial user makes
(a sparsity or min_saving typed as a percent or as 1; a shorter run than the notebook's; a .tflite of
their own in notebook 02) and a claim the markdown of notebook 02 now makes (why `unpack` writes a
smaller file than the converter's).

- Notebook 01's SPARSITY and notebook 04's `final_sparsity` go to the schedules, which said only
  "`final_sparsity` must be in [0, 1), got 96.0.": they now say what 96 or 1.0 was taken for.
- Notebooks 01 and 03 updated the masks every min(50, end_step) steps: with fewer steps than the
  notebook's full run (the smoke run, a user's smaller TRAIN_N or EPOCHS) that is one jump at
  end_step, and PolynomialDecay warned about it at every run. They now update every tenth of the
  ramp, at most every 50 steps: notebook 01's full run keeps its 50 (its dated figures), and no size
  of run warns.
- Notebook 02's `min_saving=0.0` changed to 10 (a percent) or 1: pack now says which fraction to give.
- Notebook 02 says how to start from a .tflite of your own (its bytes: pack takes no path); that line
  and its pack cell run as written on a user's file.
- cluster(bits={..., "flatten": 5}) ignored the entry silently: refused now, as prune's layers= is.
- tests/test_notebooks.py read a print split by the other stream as two lines (notebook 02 failed
  now and then): each stream is read as one text.
"""
import json
import os
import re
import warnings

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def _code_cells(name):
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        nb = json.load(f)
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


# ---- a sparsity out of range names what it was taken for -------------------------------------------

@pytest.mark.parametrize("make, name", [
    (lambda s: __import__("dc_keras").schedules.PolynomialDecay(0.0, s, begin_step=0, end_step=100, frequency=10), "final_sparsity"),
    (lambda s: __import__("dc_keras").schedules.PolynomialDecay(s, 0.99, begin_step=0, end_step=100, frequency=10), "initial_sparsity"),
    (lambda s: __import__("dc_keras").schedules.ConstantSparsity(s, begin_step=0), "target_sparsity"),
    (lambda s: __import__("dc_keras.compat.tfmot", fromlist=["sparsity"]).sparsity.keras.PolynomialDecay(
        initial_sparsity=0.5, final_sparsity=s, begin_step=0, end_step=100, frequency=10), "final_sparsity"),
])
def test_a_sparsity_typed_as_a_percent_or_one_says_which_fraction_to_give(make, name):
    """96 (notebook 01's 0.96 typed as a percent) was refused with the range alone; 1.0 too. The
    message now gives the fraction, or says 1.0 removes every weight; other values keep the range."""
    for value, hint in ((96, " (a fraction: 0.96 for 96 %)"), (80.0, " (a fraction: 0.8 for 80 %)"),
                        (1.0, " (1.0 would remove every weight: give at most 0.99, or leave the layer out)"),
                        (1, " (1.0 would remove every weight: give at most 0.99, or leave the layer out)"),
                        (-0.1, ""), (150, ""), (float("nan"), "")):
        with pytest.raises(ValueError, match=rf"^`{name}` must be in \[0, 1\){re.escape(hint)}, "
                                             rf"got {re.escape(str(float(value)))}\.$"):
            make(value)
    assert make(0.5) is not None


def test_notebook_01s_sparsity_typed_as_a_percent_fails_in_its_schedule_cell_with_the_fraction():
    """SPARSITY = {"fc1": 96, ...} in notebook 01's settings: the pruning cell stops at the schedule,
    before any training, with the fraction to give."""
    import dc_keras

    cell = next(c for c in _code_cells("01_quickstart_mnist.ipynb") if "PolynomialDecay" in c)
    cell = cell[:cell.index("pruned = dc_keras.prune(")]
    x = np.broadcast_to(np.zeros((1, 28, 28, 1), np.float32), (2048, 28, 28, 1))
    scope = {"dc_keras": dc_keras, "datasets": dc_keras.datasets, "EPOCHS": {"prune": 12}, "x_train": x,
             "y_train": np.zeros(len(x), np.int64), "SPARSITY": {"fc1": 96, "fc2": 0.93, "fc3": 0.75}}
    with pytest.raises(ValueError, match=r"^`final_sparsity` must be in \[0, 1\) \(a fraction: 0\.96 for 96 %\), "
                                         r"got 96\.0\.$"):
        exec(cell, scope)


# ---- the notebooks' schedules do not warn, whatever the length of the run ------------------------------

def _schedule_warnings(run):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "PolynomialDecay(" in str(w.message)]


@pytest.mark.parametrize("train_n, epochs", [(2048, 1), (60000, 12), (60000, 1), (2048, 12), (10000, 3), (4096, 1)])
def test_notebook_01_schedules_update_in_small_steps_at_any_run_length(train_n, epochs):
    """(2048, 1) is the smoke run, (60000, 12) the full run the markdown's figures come from (still
    updated every 50 steps, as measured); the others a user's smaller TRAIN_N or EPOCHS["prune"]."""
    import dc_keras

    cell = next(c for c in _code_cells("01_quickstart_mnist.ipynb") if "PolynomialDecay" in c)
    cell = cell[:cell.index("pruned = dc_keras.prune(")]
    x = np.broadcast_to(np.zeros((1, 28, 28, 1), np.float32), (train_n, 28, 28, 1))
    scope = {"dc_keras": dc_keras, "datasets": dc_keras.datasets, "EPOCHS": {"prune": epochs}, "x_train": x,
             "y_train": np.zeros(train_n, np.int64), "SPARSITY": {"fc1": 0.96, "fc2": 0.93, "fc3": 0.75}}
    assert _schedule_warnings(lambda: exec(cell, scope)) == []
    if (train_n, epochs) == (60000, 12):
        assert {s.frequency for s in scope["schedules"].values()} == {50}
    assert all(s.end_step // s.frequency >= min(10, s.end_step) for s in scope["schedules"].values())


@pytest.mark.parametrize("train_n, epochs", [(2048, 1), (20000, 3), (20000, 1), (60000, 1), (4096, 1)])
def test_notebook_03_schedules_update_in_small_steps_at_any_run_length(train_n, epochs):
    """(2048, 1) is notebook 03's smoke run, (20000, 3) its full run; the rest a user's changes."""
    import dc_keras

    cell = next(c for c in _code_cells("03_compression_report.ipynb") if "PolynomialDecay" in c)
    cell = cell[:cell.index("pruned.compile(")]
    scope = {"dc_keras": dc_keras, "EPOCHS": epochs, "x_train": np.zeros((train_n, 1), np.float32),
             "model": dc_keras.models.lenet_300_100(), "targets": {"fc1": 0.9, "fc2": 0.5, "fc3": 0.0}}
    assert _schedule_warnings(lambda: exec(cell, scope)) == []
    assert len(scope["pruned"].layers) == len(scope["model"].layers)


# ---- notebook 02: why the unpacked file is smaller than the converter's --------------------------------

def test_unpack_writes_the_same_int8_model_smaller_than_the_converter_as_notebook_02_says(tmp_path):
    """Notebook 02 prints the unpacked file's size next to the converter's (2,510,784 B vs 2,754,360 B
    for its MobileNetV2) and says why: the same tensors, data and quantization, each repeated small
    vector (per-channel zero points, shapes) written once. Checked on a small per-channel int8 CNN:
    smaller, every tensor's data and quantization equal, outputs bit-identical."""
    import keras

    from dc_keras import _flatbuffer as fb
    from dc_keras import export
    from dc_keras.runtime import Interpreter

    nb = json.load(open(os.path.join(EXAMPLES, "02_pack_existing_tflite.ipynb"), encoding="utf-8"))
    markdown = re.sub(r"\s+", " ", "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"))
    assert ("It comes out smaller than the converter's file: the same tensors, data and quantization, but dc_keras "
            "writes each repeated small vector (the int8 tensors' per-channel zero points, shapes) once.") in markdown

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(64, 3, activation="relu"),
                              keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = export.to_tflite(model, pack=False, quantize="int8", representative_data=x)
        restored = export.unpack(export.pack(int8, min_saving=0.0, compact=False))  # not its compaction
    assert len(restored) < len(int8), (len(restored), len(int8))
    a, b = fb.read_model(int8), fb.read_model(restored)
    for ta, tb in zip(a.subgraphs[0].tensors, b.subgraphs[0].tensors, strict=True):
        assert fb.tensor_name(ta) == fb.tensor_name(tb)
        assert bytes(fb.buffer_bytes(a, ta.buffer)) == bytes(fb.buffer_bytes(b, tb.buffer))
        # an empty quantization table (no scale) may be left out: no runtime reads it
        qa, qb = (q if q is not None and q.scale is not None and len(q.scale) else None
                  for q in (ta.quantization, tb.quantization))
        assert (qa is None) == (qb is None), fb.tensor_name(ta)
        if qa is not None:
            for field in ("scale", "zeroPoint", "quantizedDimension"):
                assert np.array_equal(getattr(qa, field), getattr(qb, field)), (fb.tensor_name(ta), field)
            assert qa.zeroPoint is not None and len(qa.zeroPoint) == len(qa.scale)

    def run(data):
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x[:1])
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])

    np.testing.assert_array_equal(run(restored), run(int8))


def test_min_saving_typed_as_a_percent_or_one_says_which_fraction_to_give():
    """Notebook 02's `pack(..., min_saving=0.0)` changed to 10 (meaning 10 %) or 1 was refused with
    the range alone; pack (and to_tflite's pack_options) now say what to give. Other bad values keep
    the range."""
    import keras

    from dc_keras import export

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = export.to_tflite(model, pack=False)
    for call in (export.pack, lambda _, min_saving: export.to_tflite(model, pack_options={"min_saving": min_saving})):
        for value, hint in ((10, " (the fraction of a tensor's bytes packing must save: 0.1 for 10 %)"),
                            (12.5, " (the fraction of a tensor's bytes packing must save: 0.125 for 12.5 %)"),
                            (1, " (1 would ask every tensor to shrink to nothing; the default is 0.1)"),
                            (1.0, " (1 would ask every tensor to shrink to nothing; the default is 0.1)"),
                            (-0.1, ""), (1000, ""), (True, ""), ("0.1", "")):
            with pytest.raises(ValueError, match=rf"^(to_tflite: )?min_saving must be a number in \[0, 1\){re.escape(hint)}, "
                                                 rf"got {re.escape(repr(value))}$"):
                call(data, min_saving=value)
    assert export.pack(data, min_saving=0.0)


def test_notebook_02s_pack_cell_runs_on_a_users_own_file_as_its_markdown_says(tmp_path, monkeypatch, capsys):
    """Notebook 02 builds its .tflite from an .h5; its markdown now says how to start from a .tflite of
    your own (its bytes in `int8_tflite`). That line, then the notebook's pack cell as written, on a
    float .tflite: packed, and the packed file written next to it; a missing file is Python's own
    FileNotFoundError, an .h5 given instead is named as one by pack."""
    import keras

    from dc_keras import export

    nb = json.load(open(os.path.join(EXAMPLES, "02_pack_existing_tflite.ipynb"), encoding="utf-8"))
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    line = re.search(r'`(int8_tflite = open\("your_model\.tflite", "rb"\)\.read\(\))`', markdown)
    assert line, "notebook 02 no longer says how to start from a .tflite of your own"
    pack_cell = next(c for c in _code_cells("02_pack_existing_tflite.ipynb") if "export.pack(int8_tflite" in c)

    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, name="fc1"), keras.layers.Dense(4, name="fc2")])
    for layer in model.layers:  # pruned and shared by hand: both kernels pack
        k = layer.kernel.numpy()
        layer.kernel.assign(np.where(np.abs(k) < 0.15, 0, np.sign(k) * 0.2).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (tmp_path / "your_model.tflite").write_bytes(export.to_tflite(model, pack=False))
        scope = {"export": export}
        exec(line.group(1), scope)
        exec(pack_cell, scope)
    assert re.search(r"^2 of \d+ constant tensors packed$", capsys.readouterr().out, re.M)
    packed = (tmp_path / "mobilenetv2_int8.packed.tflite").read_bytes()
    assert packed == scope["packed"] and len(packed) < len(scope["int8_tflite"])

    with pytest.raises(FileNotFoundError):
        exec(line.group(1).replace("your_model", "missing"), {})
    (tmp_path / "your_model.tflite").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    exec(line.group(1), scope)
    with pytest.raises(ValueError, match=r"it is an HDF5 file \(a Keras \.h5 model\?\): load it with "
                                         r"keras\.models\.load_model and convert it with dc_keras\.export\.to_tflite$"):
        exec(pack_cell, scope)


def test_bits_naming_a_layer_with_nothing_to_cluster_is_refused_like_prunes_layers():
    """Notebook 01's BITS = {"fc1": 5, ..., "flatten": 5} clustered the Dense layers and ignored the
    Flatten entry without a word (an unknown name was refused; prune's layers={"flatten": ...} too).
    It is now refused with the reason; a layer `bits` does not name still gets the defaults."""
    import keras

    import dc_keras

    model = dc_keras.models.lenet_300_100()
    with pytest.raises(ValueError, match=r"^`bits` names layer 'flatten' \(Flatten\), which cannot be clustered: it has "
                                         r"no weights[^.]*\. Remove it from `bits` \(the layers `bits` does not name "
                                         r"get the defaults\)\.$"):
        dc_keras.cluster(model, bits={"fc1": 5, "fc2": 5, "fc3": 5, "flatten": 5})
    cnn = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                            keras.layers.LayerNormalization(name="norm"), keras.layers.Flatten(),
                            keras.layers.Dense(3, name="fc")])
    with pytest.raises(ValueError, match=r"^`bits` names layer 'norm' \(LayerNormalization\), which cannot be "
                                         r"clustered: "):
        dc_keras.cluster(cnn, bits={"norm": 4})
    clustered = dc_keras.cluster(model, bits={"fc1": 3})  # named: 3 bits; the others: Dense's default 5
    assert {w.layer.name: w.bits for w in clustered.layers if hasattr(w, "bits")} == {"fc1": 3, "fc2": 5, "fc3": 5}
    assert dc_keras.cluster(cnn, bits={keras.layers.Dense: 4, "conv": 6}) is not None  # classes: not checked by name


def test_notebook_output_checks_read_a_print_split_by_the_other_stream_as_one_line():
    """tests/test_notebooks.py joined every stream output with newlines: when LiteRT's stderr line
    ("INFO: Created TensorFlow Lite XNNPACK delegate") arrived while `print("bit-identical:", ok)`
    was being flushed, the check read "bit-identical:\\n True" and notebook 02's smoke run failed
    (2 of 4 runs here, 2026-12-07). Each stream is now read as one text."""
    nbformat = pytest.importorskip("nbformat")
    from test_notebooks import _printed

    out = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell("print('bit-identical:', True)")
    cell.outputs = [out("stream", name="stdout", text="bit-identical:"),
                    out("stream", name="stderr", text="INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"),
                    out("stream", name="stdout", text=" True\ntop class per image: [6] [6]\n")]
    warn = nbformat.v4.new_code_cell("")
    warn.outputs = [out("stream", name="stderr", text="UserWarning: tf.lite.Interpreter is deprecated\n")]
    text = _printed(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), cell, warn]))
    assert re.search(r"^bit-identical: True$", text, re.M), text
    assert re.search(r"(?s)XNNPACK delegate for CPU\.\nUserWarning: tf\.lite\.Interpreter is deprecated", text), text
