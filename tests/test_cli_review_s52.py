"""``dc-keras pack`` / ``unpack`` / ``inspect`` and ``dc_keras.export.pack`` reviewed as an engineer
who already has a .tflite (float32, dynamic-range, float16, full int8 from TF's converter, Keras's
``model.export(format="litert")``, several signatures, while/cond subgraphs, string constants, no
constants at all) and wants it smaller (helper session 52):

- a float16 export (``converter.target_spec.supported_types = [tf.float16]``) of a pruned model,
  tfmot's or one whose pruned weights were rounded, holds -0.0 in its float16 weights, which the
  converter reads through DEQUANTIZE: ``pack`` said nothing of them, and ``pack --positive-zeros``
  said "no packed float weight holds -0.0: nothing to change" and packed them bit-exact (7,904 B
  where +0.0 gives 6,240 B for a 64-256-128-10 MLP at 80 % sparsity). A float16 weight read only
  through a DEQUANTIZE whose output is read only as a product's weight is now such a weight; so is
  a CONV_3D_TRANSPOSE's kernel (Keras's Conv3DTranspose), left out of the list of products (2,912 B
  bit-exact, 2,448 B with +0.0, for a pruned 8->16 3x3x3 layer), and the input and recurrent weights
  of the fused op a tf_keras (tfmot) LSTM converts to, UNIDIRECTIONAL_SEQUENCE_LSTM (27,408 B
  -> 5,104 B bit-exact, 4,432 B with +0.0 for a pruned 16->32 LSTM; Keras 3's LSTM becomes
  FULLY_CONNECTED in a loop, covered before);
- ``dc_keras.export.pack(open("m.tflite", "rb"))`` (or ``inspect`` of a ``BytesIO``) said only
  "expected .tflite content as bytes, got BufferedReader": now it says to pass the file's content;
- ``dc-keras pack -m.tflite OUT`` (a file whose name starts with -) said "the following arguments
  are required: OUT", or "unrecognized arguments: -m.tflite" with IN and OUT after it: both now say
  the name was read as an option and how to write it (``./-m.tflite`` or ``--`` first);
- ``dc-keras inspect --plot`` of a model with no constant tensor drew an empty axis from -0.04 to
  0.04 KiB under "constant tensors: 0.0 KiB -> 0.0 KiB", its legend's two entries one colour: the
  chart now says there is no constant tensor, nothing to pack;
- ``dc-keras pack`` of a model whose constants are all under the default min_bytes (a 4-8-3 MLP)
  said only "no tensor packed: written unchanged; `dc-keras inspect ...` says why per tensor": the
  "skipped:" line, printed for an explicit ``--min-bytes``, is now printed under the default too
  when nothing was packed (they are the reason), naming the default and the option;
- ``dc-keras pack --layouts dense,sparse`` (``--decoder minimal``, ``--format-version 1``) listed
  the tensors it left raw in Python's words: "pack(layouts=('dense', 'sparse')) keeps it raw ...
  the default, layouts=None, packs it", options a command-line user never typed; the CLI now spells
  them as it takes them ("--layouts dense,sparse keeps it raw ... the default, no --layouts, packs
  it"), Python's warnings keep Python's words;
- ``dc-keras pack *.tflite packed/`` (a shell pattern: several models, then a folder) said
  "unrecognized arguments: packed/", naming only the last path, as if it were a bad option (and
  ``inspect a.tflite b.tflite`` "unrecognized arguments: b.tflite"): it now says the command takes one
  IN and one OUT (one FILE), the paths it got, and a shell loop that does what was meant;
- README's and docs/packing.md's three command lines, followed as written, ended with ``dc-keras
  unpack model.packed.tflite model.tflite``: the model the user started from, replaced (without
  asking, as OUT is) by its unpacked copy, other bytes; the line now writes model.unpacked.tflite.
"""
import numpy as np
import pytest

from dc_keras import cli, export

tf = pytest.importorskip("tensorflow")


def _signed_zero_mlp(seed=0):
    """A Keras MLP whose kernels are 80 % zeros, about half of them -0.0 (rounded small negatives,
    as tfmot's strip_pruning leaves them), the rest on a grid of 1/8; random biases."""
    import keras

    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10)])
    for layer in model.layers:
        w, b = layer.get_weights()
        pruned = rng.random(w.shape) < 0.8
        w = np.where(pruned, np.copysign(0.0, rng.normal(size=w.shape)), np.round(w * 8) / 8).astype("float32")
        layer.set_weights([w, rng.normal(size=b.shape).astype("float32")])  # biases: small constants kept
    return model


@pytest.fixture(scope="module")
def float16_export():
    converter = tf.lite.TFLiteConverter.from_keras_model(_signed_zero_mlp())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def _outputs(content, xs, packed):
    from _interp_outputs import per_sample_outputs

    return per_sample_outputs(content, xs, packed=packed)


def test_float16_weights_read_through_dequantize_get_positive_zeros(float16_export, tmp_path, capsys):
    src = tmp_path / "fp16.tflite"
    src.write_bytes(float16_export)
    assert cli.main(["pack", str(src), str(tmp_path / "bitexact.tflite")]) == 0
    out = capsys.readouterr().out
    assert "weight tensor(s) hold both -0.0 and +0.0" in out and "--positive-zeros" in out, out

    assert cli.main(["pack", "--positive-zeros", str(src), str(tmp_path / "positive.tflite")]) == 0
    out = capsys.readouterr().out
    assert "nothing to change" not in out, out
    assert "-0.0 entries of 2 weight tensor(s) packed as +0.0" in out, out
    bitexact = (tmp_path / "bitexact.tflite").read_bytes()
    positive = (tmp_path / "positive.tflite").read_bytes()
    assert len(positive) < 0.9 * len(bitexact), (len(positive), len(bitexact))

    xs = np.random.default_rng(1).normal(size=(8, 32)).astype("float32")
    want = _outputs(float16_export, xs, packed=False)
    for got in (_outputs(bitexact, xs, packed=True), _outputs(positive, xs, packed=True)):
        assert all(np.array_equal(a, b) for a, b in zip(want, got))
    assert all(np.array_equal(a.view(np.uint8), b.view(np.uint8))
               for a, b in zip(want, _outputs(bitexact, xs, packed=True)))
    assert src.read_bytes() == float16_export  # IN untouched


class _ProductAndMul(tf.Module):
    """One pruned float kernel read twice: by a matmul (the converter's FULLY_CONNECTED, which
    reads it transposed, from a buffer of its own) and multiplied by an input (MUL), where the
    sign of a zero reaches the output ``z``."""

    def __init__(self, kernel):
        super().__init__()
        self.kernel = tf.constant(kernel)

    @tf.function(input_signature=[tf.TensorSpec([1, 32], tf.float32)])
    def f(self, x):
        return {"y": tf.matmul(x, self.kernel), "z": self.kernel * x[0, 0]}


def test_a_float16_weight_read_by_another_op_keeps_its_signed_zeros(tmp_path, capsys):
    from dc_keras import runtime
    from ai_edge_litert.interpreter import Interpreter

    kernel = _signed_zero_mlp(1).layers[0].get_weights()[0]
    module = _ProductAndMul(kernel)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    content = converter.convert()
    src, dst = tmp_path / "two_readers.tflite", tmp_path / "positive.tflite"
    src.write_bytes(content)
    assert cli.main(["pack", "--positive-zeros", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "of 1 weight tensor(s) packed as +0.0" in out, out  # the FULLY_CONNECTED one, not MUL's

    x = np.full((1, 32), -1.0, np.float32)  # z = kernel * -1: +0.0 <-> -0.0, bit for bit
    want = Interpreter(model_content=content).get_signature_runner()(x=x)
    got = runtime.Interpreter(model_path=str(dst)).get_signature_runner()(x=x)
    assert np.array_equal(want["z"].view(np.uint32), got["z"].view(np.uint32))
    assert np.signbit(want["z"][want["z"] == 0]).any() and (~np.signbit(want["z"][want["z"] == 0])).any()
    assert np.array_equal(want["y"], got["y"])


@pytest.mark.parametrize("make", [lambda p: open(p, "rb"), lambda p: __import__("io").BytesIO(open(p, "rb").read())],
                         ids=["open-file", "BytesIO"])
@pytest.mark.parametrize("call", [export.pack, export.unpack, export.inspect], ids=["pack", "unpack", "inspect"])
def test_an_open_file_given_for_the_bytes_says_to_read_it(make, call, tmp_path, float16_export):
    path = tmp_path / "m.tflite"
    path.write_bytes(float16_export)
    with make(path) as f, pytest.raises(TypeError, match=r"an open file: pass its content, e\.g\. f\.read\(\)"):
        call(f)


def _dash_named_model(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-m.tflite").write_bytes(content)


@pytest.mark.parametrize("argv", [["pack", "-m.tflite", "out.tflite"], ["inspect", "-m.tflite"],
                                  ["pack", "-m.tflite", "a.tflite", "out.tflite"]])
def test_a_model_named_like_an_option_is_told_how_to_write_it(argv, tmp_path, monkeypatch, capsys, float16_export):
    _dash_named_model(tmp_path, monkeypatch, float16_export)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "-m.tflite was read as an option" in err and "./-m.tflite, or put -- before the file names" in err, err
    assert not (tmp_path / "out.tflite").exists()
    assert cli.main(["pack", "./-m.tflite", "out.tflite"]) == 0  # the way out it names works
    assert (tmp_path / "out.tflite").read_bytes()[4:8] == b"TFL3"


def test_an_unknown_option_that_is_no_file_gets_no_such_note(tmp_path, monkeypatch, capsys, float16_export):
    _dash_named_model(tmp_path, monkeypatch, float16_export)
    assert cli.main(["pack", "--m.tflite", "a.tflite", "b.tflite"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --m.tflite; `dc-keras pack --help`" in err, err


def test_the_size_chart_of_a_model_without_constants_says_so(tmp_path, capsys):
    import keras
    import matplotlib

    model = keras.Sequential([keras.Input((8,)), keras.layers.ReLU()])
    src = tmp_path / "no_weights.tflite"
    src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    chart = tmp_path / "sizes.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, to be read back
        assert cli.main(["inspect", str(src), "--plot", str(chart)]) == 0
    assert "constant tensors: 0" in capsys.readouterr().out
    svg = chart.read_text()
    assert "no constant tensors (weights) in this model: nothing to pack" in svg
    assert "KiB" not in svg and ">raw<" not in svg  # no empty axis, no legend of bars never drawn


def test_a_model_whose_constants_are_all_under_min_bytes_says_so(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    src = tmp_path / "small.tflite"
    src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    assert cli.main(["pack", str(src), str(tmp_path / "out.tflite")]) == 0
    out = capsys.readouterr().out
    assert "no tensor packed: written unchanged" in out, out
    assert ("skipped: 2 constant tensor(s), 224 B, smaller than the default --min-bytes 256 (too small for a "
            "packed header to pay off; a lower --min-bytes lets pack try them)") in out, out
    assert (tmp_path / "out.tflite").read_bytes() == src.read_bytes()


def test_a_packed_model_does_not_list_its_small_skipped_constants(float16_export, tmp_path, capsys):
    src = tmp_path / "fp16.tflite"
    src.write_bytes(float16_export)
    assert cli.main(["pack", str(src), str(tmp_path / "out.tflite")]) == 0
    out = capsys.readouterr().out
    assert "skipped:" not in out, out  # under the default, a few biases: inspect's totals say them
    assert any(row.status == "skipped" for row in export.inspect(float16_export).rows)  # there are some


@pytest.mark.parametrize("options, asked, defaults", [
    (["--layouts", "dense,sparse"], "--layouts dense,sparse keeps it raw", "the default, no --layouts, packs it"),
    (["--decoder", "minimal"], "--decoder minimal keeps it raw", "the default, no --decoder, packs it"),
    (["--format-version", "1", "--layouts", "dense"], "--format-version 1 --layouts dense keeps it raw",
     "the defaults, no --format-version and no --layouts, pack it"),
])
def test_a_tensor_the_options_keep_raw_is_listed_with_the_options_as_typed(options, asked, defaults, tmp_path,
                                                                             capsys):
    import keras

    keras.utils.set_random_seed(5)  # an unclustered float kernel: only layout float_planes packs it
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(96)])
    src = tmp_path / "plain.tflite"
    src.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    assert cli.main(["pack", *options, str(src), str(tmp_path / "out.tflite")]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("  ") and ": 24576 B: " in line]
    assert asked in row and defaults in row, row
    assert "pack(" not in row and "=None" not in row and "layouts=" not in row, row
    kw = {"--layouts": ("layouts", lambda v: tuple(v.split(","))), "--decoder": ("decoder", str),
          "--format-version": ("version", int)}
    args = {kw[o][0]: kw[o][1](v) for o, v in zip(options[::2], options[1::2])}
    with pytest.warns(UserWarning, match=r"keeps it raw: .*=None") as caught:  # Python keeps its own words
        export.pack(src.read_bytes(), **args)
    assert any("pack(" in str(w.message) for w in caught)


def test_several_models_from_a_shell_pattern_get_a_loop_that_packs_each(float16_export, tmp_path, monkeypatch,
                                                                        capsys):
    import shlex
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    for name in ("a.tflite", "b.tflite"):
        (tmp_path / name).write_bytes(float16_export)
    (tmp_path / "out").mkdir()
    assert cli.main(["pack", "a.tflite", "b.tflite", "out/"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized" not in err, err
    prefix = "dc-keras pack: error: pack takes one IN and one OUT, got 3 paths: a.tflite b.tflite out/ (a shell " \
             "pattern such as *.tflite?): pack one model per command, e.g. "
    assert prefix in err, err
    assert (tmp_path / "b.tflite").read_bytes() == float16_export and not list((tmp_path / "out").iterdir())
    loop = err.split(prefix)[1].strip()
    assert loop == 'for f in *.tflite; do dc-keras pack "$f" out/"${f%.tflite}.packed.tflite"; done', loop
    here = f"{shlex.quote(sys.executable)} -m dc_keras"
    subprocess.run(["bash", "-c", loop.replace("dc-keras", here)], check=True, capture_output=True, timeout=300)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.packed.tflite", "b.packed.tflite"]

    assert cli.main(["unpack", "out/a.packed.tflite", "out/b.packed.tflite", "plain.tflite"]) == 2
    err = capsys.readouterr().err
    assert ("unpack takes one IN and one OUT, got 3 paths: out/a.packed.tflite out/b.packed.tflite plain.tflite "
            "(a shell pattern such as *.tflite?): unpack one model per command, e.g. for f in *.packed.tflite; do "
            'dc-keras unpack "$f" "${f%.packed.tflite}.tflite"; done') in err, err
    assert not (tmp_path / "plain.tflite").exists()
    assert cli.main(["inspect", "a.tflite", "b.tflite"]) == 2
    err = capsys.readouterr().err
    assert ('inspect takes one FILE, got 2 paths: a.tflite b.tflite (a shell pattern such as *.tflite?): run it '
            'once per file, e.g. for f in *.tflite; do dc-keras inspect "$f"; done') in err, err


def test_a_conv3d_transpose_kernel_gets_positive_zeros(tmp_path, capsys):
    import keras

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4, 4, 4, 8)), keras.layers.Conv3DTranspose(16, 3)])
    w, b = model.layers[0].get_weights()
    w = np.where(rng.random(w.shape) < 0.8, np.copysign(0.0, rng.normal(size=w.shape)), np.round(w * 8) / 8)
    model.layers[0].set_weights([w.astype("float32"), b])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    src = tmp_path / "c3t.tflite"
    src.write_bytes(content)
    assert cli.main(["pack", "--positive-zeros", str(src), str(tmp_path / "positive.tflite")]) == 0
    out = capsys.readouterr().out
    assert "-0.0 entries of 1 weight tensor(s) packed as +0.0" in out, out
    positive = (tmp_path / "positive.tflite").read_bytes()
    with pytest.warns(UserWarning, match=r"1 weight tensor\(s\) hold both -0.0 and \+0.0"):
        bitexact = export.pack(content)
    assert len(positive) < 0.9 * len(bitexact)
    xs = rng.normal(size=(3, 4, 4, 4, 8)).astype("float32")
    assert all(np.array_equal(a, b) for a, b in zip(_outputs(content, xs, False), _outputs(positive, xs, True)))


@pytest.mark.parametrize("doc", ["README.md", "docs/packing.md"])
def test_the_docs_command_lines_never_write_over_a_file_they_started_from(doc):
    import _docs

    lines = [line.split("#")[0].split() for lang, _, code in _docs.blocks(doc) if lang == "sh"
             for line in code.splitlines() if line.startswith(".venv/bin/dc-keras ")]
    assert [words[1] for words in lines] == ["pack", "inspect", "unpack"], lines
    read = set()
    for words in lines:
        paths = [w for w in words[2:] if not w.startswith("-")]
        if words[1] in ("pack", "unpack"):
            assert paths[1] not in read | {paths[0]}, (doc, words)  # OUT: never a file the lines read
        read.add(paths[0])


def test_a_tf_keras_lstm_gets_positive_zeros(tmp_path):
    """tfmot prunes tf_keras LSTMs; TF's converter makes them one fused op (each half of a
    Bidirectional too), whose weights were not products to --positive-zeros: 'nothing to change'
    while both zeros were there."""
    tf_keras = pytest.importorskip("tf_keras")
    from dc_keras import _flatbuffer as fb

    rng = np.random.default_rng(0)
    model = tf_keras.Sequential([tf_keras.Input((6, 16), batch_size=1), tf_keras.layers.LSTM(32)])
    model.layers[0].set_weights([np.where(rng.random(w.shape) < 0.8, np.copysign(0.0, rng.normal(size=w.shape)),
                                          np.round(w * 8) / 8).astype("float32") if w.ndim == 2 else w for w in model.layers[0].get_weights()])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    m = fb.read_model(content)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in [fb.opcode_name(m, op) for op in m.subgraphs[0].operators]
    src, dst = tmp_path / "rnn.tflite", tmp_path / "positive.tflite"
    src.write_bytes(content)
    with pytest.warns(UserWarning, match=r"hold both -0.0 and \+0.0"):
        bitexact = export.pack(content)
    assert cli.main(["pack", "--positive-zeros", str(src), str(dst)]) == 0
    positive = dst.read_bytes()
    assert len(positive) < 0.9 * len(bitexact), (len(positive), len(bitexact))
    xs = rng.normal(size=(4, 6, 16)).astype("float32")
    want = _outputs(content, xs, False)
    assert all(np.array_equal(a.view(np.uint8), b.view(np.uint8)) for a, b in zip(want, _outputs(bitexact, xs, True)))
    assert all(np.array_equal(a, b) for a, b in zip(want, _outputs(positive, xs, True)))
