"""pack(layouts=..., decoder="minimal") and `dc-keras pack --layouts/--version/--decoder`: a packed
model a decoder built without some layouts or types (docs/microcontrollers.md) reads, bit-exact."""
import functools

import numpy as np
import pytest

import _export_models as em
from dc_keras import _flatbuffer as fb
from dc_keras import codec, export, runtime
from dc_keras.export._pack import pack_with_stats, packed_tensors

MINIMAL = ("dense", "sparse")


@functools.lru_cache(maxsize=None)
def _model(kind):
    """(plain .tflite, inputs): "int8": per-channel int8 kernels with a codebook of 6 values per
    output channel, 60 % pruned (the default packs them grouped); "float": one unclustered float
    kernel (float planes by default) and one clustered."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(8, 64)).astype(np.float32)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(64)])
    if kind == "int8":
        for layer in m.layers:
            k = layer.kernel.numpy()
            books = rng.normal(size=(6, k.shape[1])) * rng.uniform(0.2, 2, k.shape[1])
            layer.kernel.assign(np.take_along_axis(books, rng.integers(0, 6, k.shape), 0) * (rng.random(k.shape) < 0.4))
        return export.to_tflite(m, pack=False, quantize="int8", representative_data=xs), xs
    m.layers[1].kernel.assign(np.round(m.layers[1].kernel.numpy() * 4) / 4 + 0.0)  # +0.0: no -0.0
    return export.to_tflite(m, pack=False), xs


def _packed(data):
    """{decoded tensor index: packed bytes} of subgraph 0."""
    m = fb.read_model(data)
    return {o: bytes(fb.buffer_bytes(m, m.subgraphs[0].tensors[i].buffer)) for _, i, o in packed_tensors(m)}


@pytest.mark.parametrize("kind, default_layout", [("int8", "grouped_dense"), ("float", "float_planes")])
def test_restricted_pack_decodes_with_a_minimal_decoder(kind, default_layout, minimal_decoder):
    """The default pack uses grouped / float-planes layouts, which a DC_CODEC_MINIMAL decoder
    refuses (15); pack(decoder="minimal") and pack(layouts=("dense", "sparse")) write only dense
    and sparse tensors, which it decodes bit-exact, and the model computes bit-identically."""
    plain, xs = _model(kind)
    default, restricted = export.pack(plain), export.pack(plain, decoder="minimal")
    assert export.pack(plain, layouts=MINIMAL) == restricted
    print(f"\n{kind}: plain {len(plain)} B, default pack {len(default)} B, decoder='minimal' {len(restricted)} B")
    info = __import__("ctypes").create_string_buffer(256)
    layouts = {o: codec.info(p)["layout"] for o, p in _packed(default).items()}
    assert default_layout in layouts.values(), layouts
    for o, p in _packed(default).items():
        assert minimal_decoder.dc_peek(p, len(p), info) == (0 if layouts[o] in MINIMAL else 15), layouts[o]
    tensors = fb.read_model(plain).subgraphs[0].tensors
    model = fb.read_model(plain)
    assert _packed(restricted), "nothing packed: the test would prove nothing"
    for o, p in _packed(restricted).items():
        assert codec.info(p)["layout"] in MINIMAL
        want = bytes(fb.buffer_bytes(model, tensors[o].buffer))
        out = np.empty(len(want), np.uint8)
        assert minimal_decoder.dc_decode(p, len(p), out.ctypes.data, out.nbytes) == 0
        assert out.tobytes() == want
    ref = em.run(runtime.Interpreter(model_content=plain), xs)
    np.testing.assert_array_equal(em.run(runtime.Interpreter(model_content=restricted), xs), ref)
    np.testing.assert_array_equal(em.run(runtime.Interpreter(model_content=default), xs), ref)


def test_restricted_pack_keeps_what_no_allowed_layout_holds_raw_with_the_reason():
    """The unclustered float kernel (over 4096 distinct values) has no codebook: without the
    float-planes layout it stays raw, named with the codec's reason and, since session 49, the
    option that left that layout out (as for decoder= and version=, below)."""
    plain, _ = _model("float")
    (default,) = [p for p in _packed(export.pack(plain)).values() if codec.info(p)["layout"] == "float_planes"]
    _, stats = pack_with_stats(plain, layouts=MINIMAL)
    assert [(nbytes, why) for _, nbytes, why in stats["refused"]] == [
        (64 * 128 * 4, f"pack(layouts={MINIMAL!r}) keeps it raw: the codec refuses it without layout 'float_planes' "
                       f"(FORMAT.md §12), which layouts={MINIMAL!r} leaves out (more than 4096 distinct values: "
                       f"cluster the tensor first); the default, layouts=None, packs it ({len(default)} B)")]
    _, stats = pack_with_stats(plain, layouts=("dense", "sparse", "float_planes"))
    assert not stats["refused"]


def test_a_float_kernel_only_the_options_keep_raw_names_the_option(tmp_path, capsys):
    """decoder="minimal" and version=1 leave out the float-planes layout (§12) that packs the
    unclustered kernel by default: the reason was the codec's "more than 4096 distinct values: cluster
    the tensor first", as though nothing would pack it; now it names the option, the layout and what
    the default packs it to (as the int64 case names pack(version=1)); the CLI prints the same with
    its own options (--format-version 1)."""
    plain, _ = _model("float")
    (default,) = [p for p in _packed(export.pack(plain)).values() if codec.info(p)["layout"] == "float_planes"]
    codec_why = "more than 4096 distinct values: cluster the tensor first"
    for kw, asked, which, defaults in (
            ({"decoder": "minimal"}, "decoder='minimal'", "which a DC_CODEC_MINIMAL decoder does not read",
             "the default, decoder=None, packs"),
            ({"version": 1}, "version=1", "which needs format version >= 2", "the default, version=None, packs"),
            ({"version": 1, "decoder": "minimal"}, "version=1, decoder='minimal'",
             "which needs format version >= 2 and which a DC_CODEC_MINIMAL decoder does not read",
             "the defaults, version=None and decoder=None, pack")):
        _, stats = pack_with_stats(plain, **kw)
        assert [(nbytes, why) for _, nbytes, why in stats["refused"]] == [
            (64 * 128 * 4, f"pack({asked}) keeps it raw: the codec refuses it without layout 'float_planes' "
                           f"(FORMAT.md §12), {which} ({codec_why}); {defaults} it ({len(default)} B)")], kw
    from dc_keras import cli

    (tmp_path / "m.tflite").write_bytes(plain)
    capsys.readouterr()
    assert cli.main(["pack", str(tmp_path / "m.tflite"), str(tmp_path / "o.tflite"), "--format-version", "1"]) == 0
    assert ": 32768 B: --format-version 1 keeps it raw: the codec refuses it without layout 'float_planes'" \
        in capsys.readouterr().out  # the CLI spells the options as it takes them (session 52)
    # a layouts= list leaving the layout out is named too (session 49: the codec's reason alone, "cluster
    # the tensor first", hid that the list was the cause), with every option that leaves it out
    _, stats = pack_with_stats(plain, layouts=MINIMAL, version=1)
    assert [why for _, _, why in stats["refused"]] == [
        f"pack(version=1, layouts={MINIMAL!r}) keeps it raw: the codec refuses it without layout 'float_planes' "
        f"(FORMAT.md §12), which needs format version >= 2 and which layouts={MINIMAL!r} leaves out ({codec_why}); "
        f"the defaults, version=None and layouts=None, pack it ({len(default)} B)"]


def _retyped(plain, tensor_type, values):
    """``plain`` with its largest constant retyped to ``tensor_type`` holding ``values`` (stored
    as TFLite stores that type): a model only packed and inspected, not run."""
    m = fb.read_model(plain)
    sg = m.subgraphs[0]
    t = max((t for t in sg.tensors if t.buffer > 0 and len(fb.buffer_bytes(m, t.buffer)) > 1000),
            key=lambda t: len(fb.buffer_bytes(m, t.buffer)))
    n = int(np.prod(t.shape))
    t.type = tensor_type
    raw = codec.pack_subbyte(values(n), 17) if tensor_type == fb.schema.TensorType.INT4 else values(n).tobytes()
    m.buffers[t.buffer].data = np.frombuffer(raw, np.uint8)
    return fb.write_model(m), fb.tensor_name(t)


def test_decoder_minimal_names_every_type_the_minimal_build_leaves_out():
    """pack's list of the types a DC_CODEC_MINIMAL decoder refuses is the codec's sub-byte and
    8-byte types, no more, no fewer (int2 and uint4 were missing; pack keeps them raw today anyway,
    since TFLite 2.21 cannot size them, but not because of this list)."""
    from dc_keras.codec import _format

    assert set(export._pack._DECODERS["minimal"][1]) == _format.SUBBYTE_CODES | _format.WIDE_CODES


@pytest.mark.parametrize("tensor_type, values, what", [
    (fb.schema.TensorType.INT4, lambda n: (np.arange(n) % 3 - 1).astype(np.int8), "sub-byte"),
    (fb.schema.TensorType.FLOAT64, lambda n: (np.arange(n) % 3 - 1).astype(np.float64) / 3, "8-byte"),
    (fb.schema.TensorType.INT64, lambda n: (np.arange(n) % 3 - 1).astype(np.int64) << 40, "8-byte"),
])
def test_decoder_minimal_keeps_the_types_it_does_not_read_raw(tensor_type, values, what, minimal_decoder):
    """The sub-byte and 8-byte types pack by default (which a DC_CODEC_MINIMAL decoder refuses);
    decoder="minimal" keeps them raw, naming why, and packs the rest for that decoder."""
    data, name = _retyped(_model("int8")[0], tensor_type, values)
    typed = lambda packed: [str(codec.info(p)["dtype"]) for p in _packed(packed).values()]  # noqa: E731
    info = __import__("ctypes").create_string_buffer(256)
    default = _packed(export.pack(data))
    assert any(minimal_decoder.dc_peek(p, len(p), info) == 15 for p in default.values())
    assert fb.TYPE_NAMES[tensor_type] in typed(export.pack(data))
    out, stats = pack_with_stats(data, decoder="minimal")
    assert fb.TYPE_NAMES[tensor_type] not in typed(out)
    assert [(n, why) for n, _, why in stats["refused"]] == [
        (name, f"{fb.TYPE_NAMES[tensor_type]}: a DC_CODEC_MINIMAL decoder does not read {what} (FORMAT.md "
               f"§{13 if what == 'sub-byte' else 16}) tensors, so pack(decoder='minimal') keeps it raw (the default, "
               "decoder=None, packs it)")]
    assert all(minimal_decoder.dc_peek(p, len(p), info) == 0 for p in _packed(out).values())


@pytest.mark.parametrize("kw, message", [
    ({"decoder": "tiny"}, r"decoder must be None .* or one of \['minimal'\]"),
    ({"decoder": ["minimal"]}, "decoder must be None"),
    ({"decoder": "minimal", "layouts": ("dense", "float_planes")}, r"reads only layouts \['dense', 'sparse'\]"),
    ({"layouts": ("dense", "planes")}, r"unknown layout name\(s\) 'planes'"),
    ({"layouts": ("dense",), "version": 6}, "version must be None"),
    ({"decoder": "minimal", "context_model": True}, r"^context_model=True tries layout 'context_sparse' \(FORMAT.md "
                                                    r"§14\), which a 'minimal' decoder does not read .*: drop "
                                                    r"context_model=True with decoder='minimal'$"),
])
def test_pack_bad_layout_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        export.pack(_model("float")[0], **kw)


def test_cli_decoder_minimal_with_context_model_is_a_usage_error(tmp_path, capsys):
    """`--decoder minimal --context-model` dropped --context-model without a word (exit 0, no
    context_sparse tensor written); now a usage error before IN is read, as `--decoder minimal
    --layouts context_sparse` is."""
    from dc_keras import cli

    missing = tmp_path / "never-read.tflite"
    assert cli.main(["pack", str(missing), str(tmp_path / "o.tflite"), "--decoder", "minimal", "--context-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dc-keras pack") and err.endswith(
        "dc-keras pack: error: --decoder minimal reads only layouts dense,sparse, and --context-model tries layout "
        "context_sparse (docs/FORMAT.md section 14): drop --context-model (or --decoder minimal)\n"), err
    assert not (tmp_path / "o.tflite").exists()


@pytest.mark.parametrize("layouts, version, needs", [
    (("float_planes",), 1, "float_planes needs format version >= 2"),
    (("dense", "int_planes"), 3, "int_planes needs format version >= 4"),
    (("float_planes", "int_planes", "sparse"), 1, "float_planes needs format version >= 2, int_planes needs format "
                                                  "version >= 4"),
])
def test_layouts_a_format_version_does_not_have_are_refused_up_front(tmp_path, capsys, layouts, version, needs):
    """`--layouts float_planes --format-version 1` (int_planes with 3) exited 0 with every tensor raw,
    each "none of layouts ['float_planes'] holds ...: allow 'dense' and 'sparse'"; now a usage error
    naming the version each layout needs, before the input is read (pack(...) raises the same), and
    the codec's own reason (encode(layouts=..., version=...)) names the version when that is the cause."""
    from dc_keras import cli

    want = max(int(n.split(",")[0]) for n in needs.split(">= ")[1:])
    with pytest.raises(ValueError, match=f"names .*which version={version} does not have \\({needs}, docs/FORMAT.md "
                                         f"§10\\): pass version={want} or None"):
        export.pack(_model("float")[0], layouts=layouts, version=version)
    missing = tmp_path / "never-read.tflite"  # refused before reading IN: no file needed
    assert cli.main(["pack", str(missing), str(tmp_path / "o.tflite"), "--layouts", ",".join(layouts),
                     "--format-version", str(version)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: dc-keras pack") and "No such file" not in err, err
    assert f"which --format-version {version} does not have ({needs.replace('format version', '--format-version')}; " \
           f"docs/FORMAT.md section 10): pass --format-version {want}, or drop --format-version" in err, err
    assert not (tmp_path / "o.tflite").exists()
    noise = np.random.default_rng(0).normal(size=(80, 80))
    for a, lay, v, since in ((noise.astype(np.float32), "float_planes", 1, 2),
                             ((noise * 1e6).astype(np.int64), "int_planes", 3, 4)):
        with pytest.raises(ValueError, match=f"none of layouts \\['{lay}'\\] holds a format version {v} .* tensor: "
                                             f"'{lay}' needs format version >= {since} \\(FORMAT.md §10-§17\\); use "
                                             f"version={since} or None, or allow 'dense' and 'sparse'"):
            codec.encode(a, layouts=(lay,), version=v)
        assert codec.info(codec.encode(a, layouts=(lay,), version=since))["layout"] == lay


def test_cli_pack_version_layouts_decoder(tmp_path, capsys):
    """`dc-keras pack --version 2 --layouts dense,sparse` writes what pack(...) does; --decoder
    minimal too (with --format-version, the same option as pack's --version: `dc-keras --version`
    prints the program's); an unknown layout name is a one-line usage error naming the valid ones."""
    plain, _ = _model("int8")
    src = tmp_path / "m.tflite"
    src.write_bytes(plain)
    r = em.cli("pack", src, tmp_path / "a.tflite", "--version", "2", "--layouts", "dense,sparse", timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.tflite").read_bytes() == export.pack(plain, version=2, layouts=MINIMAL)
    r = em.cli("pack", src, tmp_path / "b.tflite", "--decoder", "minimal", "--format-version", "1", timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.tflite").read_bytes() == export.pack(plain, version=1, decoder="minimal")
    from dc_keras import cli

    assert cli.main(["pack", str(src), str(tmp_path / "c.tflite"), "--layouts", "dense,grouped"]) == 2
    assert "unknown layout(s) grouped in 'dense,grouped': give comma-separated names from context_sparse, dense, " \
        "float_planes, grouped_dense, grouped_sparse, int_planes, sparse" in capsys.readouterr().err
    assert not (tmp_path / "c.tflite").exists()
