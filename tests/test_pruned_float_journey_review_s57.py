"""A tfmot user's pruned-only float model, packed and run compressed (review of session 57).

The user pruned with tfmot 0.8.1 (tf_keras), did not cluster, converted to a float32 and a float16
.tflite and follows docs/packing.md and docs/runtime.md. Found: ``inspect`` said each packed tensor's
layout but not its format version, so a user whose app ships an older decoder could not tell from it
that the file needs ``DC_VERSION_MAX >= 5`` (FORMAT.md §18's sparse float planes) nor what to do;
and ``inspect`` of the packed file said nothing of the -0.0 it keeps bit-exact (only the unpacked
file's report and ``pack`` did). Now ``Report.format_version``, each row's ``version`` and a
"format version N" line; a packed file's -0.0 in ``Report.packed_negative_zeros`` and a note naming
``dc-keras unpack`` then ``dc-keras pack --positive-zeros``.

The cheap tests use Keras 3 models pruned by hand as tfmot leaves them (-0.0 where a pruned weight
was negative); the tfmot journey itself (a tf_keras child) is ``long``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import cli, codec, export, runtime
from dc_keras.export import _pack


def _pruned_mlp(negative_zeros=True, bias_zeros=False, seed=0):
    """Dense(128, relu) then Dense(30) on 40 inputs, every non-zero distinct, 10 % dense; -0.0 where
    a pruned weight was negative (tfmot's strip_pruning); bias_zeros: the first bias mostly ±0 (-0.0
    in a tensor that is no product's weight: pack(positive_zeros=True) leaves it)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((40,))
    first, second = keras.layers.Dense(128, activation="relu"), keras.layers.Dense(30)
    model = keras.Model(inp, second(first(inp)))
    for layer in (first, second):
        w = layer.kernel.numpy()
        keep = rng.permutation(w.size).reshape(w.shape) < w.size // 10
        layer.kernel.assign((w * keep if negative_zeros else np.where(keep, w, 0)).astype(np.float32))
    if bias_zeros:
        b = rng.standard_normal(128).astype(np.float32)
        first.bias.assign(b * (rng.random(128) < 0.05))  # ~half of the 0s are -0.0
    return model


@pytest.fixture(scope="module")
def plain():
    return export.to_tflite(_pruned_mlp(), pack=False)


def _packed_versions(packed):
    """The header version of each packed tensor of a packed file (codec.info, not inspect)."""
    model = fb.read_model(packed)
    return sorted(codec.info(fb.buffer_bytes(model, model.subgraphs[s].tensors[p].buffer))["version"]
                  for s, p, _ in _pack.packed_tensors(model))


def test_inspect_says_the_format_version_a_decoder_needs_and_how_to_pack_for_an_older_one(plain):
    packed = export.pack(plain)
    rp, rq = export.inspect(plain), export.inspect(packed)
    sparse_planes = [r for r in rq.rows if r.status == "packed" and r.reason == "sparse_planes"]
    assert len(sparse_planes) == 2 and {r.version for r in sparse_planes} == {5}
    assert sorted(r.version for r in rq.rows if r.status == "packed") == _packed_versions(packed)
    assert [r.version for r in rp.rows if r.status == "packable"] == [r.version for r in rq.rows if r.status == "packed"]
    assert rq.format_version == rp.format_version == 5
    text = str(rq)
    assert "format version 5 (packed tensors: 2 of version 5; FORMAT.md §10): a decoder with DC_VERSION_MAX >= 5" \
           in text and "unpack it and pack again with --format-version N" in text, text
    assert "DC_VERSION_MAX >= 5" in str(rp) and "pack with --format-version N (Python: version=N)" in str(rp)
    # the advice followed: version 4 holds these kernels in its own layouts, and inspect says 4
    older = export.pack(export.unpack(packed), version=4)
    assert export.inspect(older).format_version == max(_packed_versions(older)) <= 4
    assert "DC_VERSION_MAX >= 5" not in str(export.inspect(older))
    v2 = export.pack(plain, version=2)
    assert _packed_versions(v2) and export.inspect(v2).format_version == 2
    assert "DC_VERSION_MAX >= 2 (the C library an app or TFLM kernel ships) reads it (every decoder since format " \
           "version 2)" in str(export.inspect(v2))


def test_inspect_of_a_file_with_nothing_packed_gives_no_format_version():
    tiny = export.to_tflite(_tiny_model(), pack=False)  # every constant under min_bytes
    report = export.inspect(tiny)
    assert report.format_version is None and "format version" not in str(report)


def _tiny_model():
    import keras

    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(3)(inp))


def test_inspect_of_a_packed_file_counts_its_signed_zeros_as_the_unpacked_files_report(plain, tmp_path, capsys):
    packed = export.pack(plain)
    rp, rq = export.inspect(plain), export.inspect(packed)
    assert rp.negative_zeros[0] == 2 and rq.packed_negative_zeros == rp.negative_zeros
    assert rq.negative_zeros == (0, 0) and rp.packed_negative_zeros == (0, 0)
    text = str(rq)
    assert f"note: 2 weight tensor(s) hold both -0.0 and +0.0 ({rp.negative_zeros[1]} -0.0 entries" in text, text
    assert "`dc-keras unpack` of this file, then `dc-keras pack --positive-zeros` (pack(unpack(data), " \
           "positive_zeros=True))" in text, text
    # the advice followed gives what packing the original with positive zeros gives, smaller, and no note
    positive = export.pack(export.unpack(packed), positive_zeros=True)
    assert positive == export.pack(plain, positive_zeros=True) and len(positive) < len(packed)
    assert export.inspect(positive).packed_negative_zeros == (0, 0) and "-0.0" not in str(export.inspect(positive))
    # the CLI prints the same lines
    path = tmp_path / "m.packed.tflite"
    path.write_bytes(packed)
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format version 5 (packed tensors: 2 of version 5" in out and "`dc-keras unpack` of this file" in out, out


def test_packed_signed_zeros_count_only_weights_positive_zeros_changes_float16_ones_too():
    """-0.0 in a packed bias (no product's weight: positive_zeros leaves it) is not counted, as the
    unpacked file's report does not count it; the float16 export's weights (read through DEQUANTIZE)
    are, as there."""
    model = _pruned_mlp(bias_zeros=True)
    for quantize in (None, "float16"):
        plain = export.to_tflite(model, pack=False, quantize=quantize)
        packed = export.pack(plain, min_saving=0)
        rq = export.inspect(packed)
        bias = [r for r in rq.rows if r.status == "packed" and r.shape == (128,)]
        assert len(bias) == 1 and bias[0].negative_zeros == 0, (quantize, [(r.name, r.shape, r.status) for r in rq.rows])
        assert rq.packed_negative_zeros == export.inspect(plain).negative_zeros and rq.packed_negative_zeros[0] == 2
    clean = export.pack(export.to_tflite(_pruned_mlp(negative_zeros=False), pack=False))
    assert export.inspect(clean).packed_negative_zeros == (0, 0)


# --- the journey on tfmot's own files (tf_keras child: make test-long) ---------------------------

CHILD = r"""
import sys
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

out = sys.argv[1]
keras.utils.set_random_seed(0)
sp, rng = tfmot.sparsity.keras, np.random.default_rng(0)
x, y = rng.standard_normal((64, 64)).astype("float32"), rng.integers(0, 10, 64)
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256, activation="relu", name="fc1"),
                          keras.layers.Dense(128, activation="relu", name="fc2"), keras.layers.Dense(10, name="fc3")])
pruned = sp.prune_low_magnitude(model, pruning_schedule=sp.ConstantSparsity(0.9, begin_step=0, frequency=1))
pruned.compile("adam", "sparse_categorical_crossentropy")
pruned.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[sp.UpdatePruningStep()])
stripped = sp.strip_pruning(pruned)
open(out + "/f32.tflite", "wb").write(tf.lite.TFLiteConverter.from_keras_model(stripped).convert())
c = tf.lite.TFLiteConverter.from_keras_model(stripped)
c.optimizations, c.target_spec.supported_types = [tf.lite.Optimize.DEFAULT], [tf.float16]
open(out + "/f16.tflite", "wb").write(c.convert())
"""


@pytest.fixture(scope="module")
def tfmot_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfmot_pruned")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _run(it, x):
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(i["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(i["index"], x)
    it.invoke()
    return it.get_tensor(o["index"]).copy()


@pytest.mark.legacy
@pytest.mark.long
def test_tfmot_pruned_float_files_pack_inspect_unpack_and_run(tfmot_files, tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    for name in ("f32", "f16"):
        src, out, back = tfmot_files / f"{name}.tflite", tmp_path / f"{name}.p.tflite", tmp_path / f"{name}.u.tflite"
        plain = src.read_bytes()
        assert cli.main(["pack", str(src), str(out)]) == 0
        said = capsys.readouterr().out
        packed = out.read_bytes()
        assert src.read_bytes() == plain and packed == export.pack(plain) and len(packed) < len(plain) / 4
        rp, rq = export.inspect(plain), export.inspect(packed)
        assert "--positive-zeros" in said and rp.negative_zeros[0] == 3 and rq.packed_negative_zeros == rp.negative_zeros
        assert rq.format_version == 5 and [r.reason for r in rq.rows if r.status == "packed"] == ["sparse_planes"] * 3
        # pack again: refused with the way out; unpack: the same tensors and outputs
        assert cli.main(["pack", str(out), str(tmp_path / "again.tflite")]) != 0
        assert "already packed" in capsys.readouterr().err
        assert cli.main(["unpack", str(out), str(back)]) == 0
        capsys.readouterr()
        assert _constants(back.read_bytes()) == _constants(plain)
        if name == "f32":  # docs/packing.md's figure
            assert (len(plain), len(back.read_bytes())) == (205160, 205072)
        ref = _run(runtime.Interpreter(model_content=plain), x)
        assert np.array_equal(_run(runtime.Interpreter(model_content=back.read_bytes()), x).view(np.uint32),
                              ref.view(np.uint32))
        assert np.array_equal(_run(runtime.Interpreter(model_content=packed), x).view(np.uint32), ref.view(np.uint32))
        if name == "f32":
            it = runtime.Interpreter(model_content=packed, weights="compressed")
            got = _run(it, x)
            assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
            rows = {r["weights"].split("/")[1]: r for r in it.compressed_report()}
            # fc1: 1,638 of 16,384 kept (10.0 %): the value form; fc3: 128 kept, <= 255 values: codes
            assert rows["fc1"]["route"] == "compressed" and rows["fc1"]["form"] == "values", rows
            assert rows["fc1"]["bytes"] >= 6 * rows["fc1"]["nonzeros"]
            assert rows["fc3"]["route"] == "compressed" and rows["fc3"]["form"] == "codes", rows


def test_runtime_doc_names_the_forms_compressed_report_gives(plain):
    """docs/runtime.md's weights= section names compressed_report()'s `form` field and its values;
    the hand-pruned unclustered layers (10 % dense, every non-zero distinct) run on the value form."""
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    it.allocate_tensors()
    forms = [r.get("form") for r in it.compressed_report() if r["route"] == "compressed"]
    assert forms == ["values", "values"], it.compressed_report()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "runtime.md"), encoding="utf-8") as f:
        text = " ".join(f.read().split())
    assert "`compressed_report()` gives each layer's bytes and its `form`: `codes`, `tiles` or `values`" in text


def _constants(data):
    """{(subgraph, tensor name): (type, shape, data bytes)} of the constant tensors of a plain file."""
    model = fb.read_model(data)
    return {(s, fb.tensor_name(t)): (t.type, tuple(t.shape), bytes(fb.buffer_bytes(model, t.buffer)))
            for s, sg in enumerate(model.subgraphs) for t in sg.tensors or [] if fb.buffer_size(model, t.buffer)}


def test_unpack_gives_back_every_constant_as_it_was_in_a_file_written_anew(plain):
    """docs/packing.md: unpack gives back each tensor's bytes (the -0.0 too), not the file's bytes."""
    back = export.unpack(export.pack(plain))
    assert _constants(back) == _constants(plain) and len(_constants(plain)) >= 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "packing.md"), encoding="utf-8") as f:
        text = " ".join(f.read().split())
    assert "`unpack` gives back every tensor as it was (each weight's bytes, so the same outputs) in a file " \
           "written anew, not the original's bytes" in text
def test_a_layer_pruned_to_90_percent_by_dc_keras_or_tfmot_runs_at_the_10_percent_default():
    """dc_keras.prune and tfmot keep 3,277 of a 128x256 kernel's 32,768 weights at 90 % sparsity
    (10.0006 %): the value form's 10 % default counts it as at the limit (the limit's count rounded
    up), where it refused it as "density 10.001 % > 10 %"; one non-zero more is refused."""
    import keras

    rng = np.random.default_rng(5)
    for kept, route in ((3277, "compressed"), (3278, "dense")):
        inp = keras.Input((256,))
        layer = keras.layers.Dense(128, use_bias=False)
        model = keras.Model(inp, layer(inp))
        w = rng.standard_normal((256, 128)).astype(np.float32)
        layer.kernel.assign(np.where(rng.permutation(w.size).reshape(w.shape) < kept, w, 0))
        it = runtime.Interpreter(model_content=export.to_tflite(model), weights="compressed")
        it.allocate_tensors()
        row = it.compressed_report()[0]
        assert row["route"] == route, row
        if route == "dense":
            assert row["reason"].startswith("density 10.00") and "% > 10 % (default max_density for unclustered" in row["reason"], row
        else:
            assert row["form"] == "values" and row["nonzeros"] == kept
