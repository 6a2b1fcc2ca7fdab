"""Format version 4's integer planes (FORMAT.md §17, layout 6) through pack, the runtime (every
route), unpack (Python and the C dc_unpack), inspect and the CLI, bit-exact: the int32 biases of a
per-channel int8 model made by the TFLite converter, and the int64 bias of an int16x8 model whose
weights are not clustered. Tensors that do not take layout 6 keep their bytes; a decoder that
reads up to version 3 refuses a version 4 tensor with DC_ERR_VERSION."""
import ctypes
import os
import re
import warnings

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import codec, export

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import _cbuild  # noqa: E402
import _export_models as em  # noqa: E402
from test_export_v3_types import ROUTES, _constants, _outputs, int16x8_model  # noqa: E402

OLD_LAYOUTS = tuple(sorted(set(codec._format.LAYOUT_CODES) - {"int_planes"}))


def _packed_layouts(data):
    """{tensor name: (layout, format version)} of the packed constants of ``data``."""
    m = fb.read_model(data)
    out = {}
    for s, p, o in export._pack.packed_tensors(m):
        sg = m.subgraphs[s]
        packed = fb.buffer_bytes(m, sg.tensors[p].buffer)
        info = codec.info(packed)
        out[fb.tensor_name(sg.tensors[o])] = (info["layout"], info["version"])
    return out


@pytest.fixture(scope="module")
def int8_cnn():
    """12x12x1 -> conv 16 -> conv 32 -> dense 128 -> 10, full-integer int8 (per-channel weights):
    its int32 biases are distinct values (one scale per channel); the dense one is 512 B."""
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
                          keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Flatten(),
                          keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    rng = np.random.default_rng(1)
    for layer in m.layers:
        if layer.get_weights():
            w, b = layer.get_weights()
            layer.set_weights([w, rng.normal(0, 0.05, b.shape).astype(np.float32)])
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        r = np.random.default_rng(2)
        for _ in range(20):
            yield [r.normal(size=(1, 12, 12, 1)).astype(np.float32)]

    conv.representative_dataset = representative
    return conv.convert()


@pytest.fixture(scope="module")
def int16x8_unclustered():
    return int16x8_model(clustered=False)


def _check_runs_and_unpacks(original, packed, xs):
    want = _outputs(original, xs)
    for kw in ROUTES:
        np.testing.assert_array_equal(_outputs(packed, xs, **kw), want, err_msg=str(kw))
    consts = _constants(original)
    assert _constants(export.unpack(packed)) == consts
    from dc_keras import runtime

    assert _constants(runtime.unpack(packed)) == consts  # the C dc_unpack


def test_int8_per_channel_biases_pack_as_int_planes_and_run_bit_exact(int8_cnn):
    """The converter's int32 biases: the 512 B one packed to 327 B with §17 (its best codebook
    layout, 723 B, is larger than raw, so version 3 keeps it raw; docs/results/int_biases.json); the kernels' packing is
    unchanged (same layouts, version 2); outputs bit-identical on every route; both unpackers
    restore every constant."""
    consts = _constants(int8_cnn)
    [bias] = [n for n, (t, s, b) in consts.items() if t == "int32" and s == [128]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing refused; the unclustered int8 kernels kept raw, said once
        warnings.filterwarnings("ignore", message="pack: kept raw: ")
        packed = export.pack(int8_cnn)
    with pytest.warns(UserWarning, match="pack: kept raw: "):
        old = export.pack(int8_cnn, layouts=OLD_LAYOUTS)
    got, before = _packed_layouts(packed), _packed_layouts(old)
    assert got[bias] == ("int_planes", 4) and bias not in before
    assert {n: v for n, v in got.items() if n != bias} == before  # nothing else changed
    assert all(v == 2 for n, (_, v) in got.items() if n != bias)
    row = next(r for r in export.inspect(int8_cnn).rows if r.name == bias)
    assert row.status == "packable" and row.packed_bytes < 0.75 * 512
    assert len(codec.encode(np.frombuffer(consts[bias][2], np.int32), layouts=OLD_LAYOUTS)) > 512
    assert len(packed) < len(old)
    xs = np.random.default_rng(3).normal(size=(4, 12, 12, 1)).astype(np.float32)
    _check_runs_and_unpacks(int8_cnn, packed, xs)


def test_int16x8_unclustered_int64_bias_packs_as_int_planes(int16x8_unclustered):
    """The int64 bias of an int16x8 model with the initial (unclustered) weights: 16,384 B raw,
    5,133 B sparse before §17, ~1.9 KB with it; the file shrinks by as much, runs bit-exact,
    unpacks byte for byte."""
    consts = _constants(int16x8_unclustered)
    [bias] = [n for n, (t, s, _) in consts.items() if t == "int64" and s == [2048]]
    packed, old = export.pack(int16x8_unclustered), export.pack(int16x8_unclustered, layouts=OLD_LAYOUTS)
    assert _packed_layouts(packed)[bias] == ("int_planes", 4)
    assert _packed_layouts(old)[bias] == ("sparse", 3)
    a = np.frombuffer(consts[bias][2], np.int64)
    new_size, old_size = len(codec.encode(a)), len(codec.encode(a, layouts=OLD_LAYOUTS))
    assert new_size < 2_100 and old_size > 5_000
    assert abs(len(old) - len(packed) - (old_size - new_size)) < 16  # the bias (buffers: 16 B aligned)
    xs = np.random.default_rng(3).normal(size=(6, 16)).astype(np.float32)
    _check_runs_and_unpacks(int16x8_unclustered, packed, xs)


def test_tensors_layout_6_does_not_win_keep_their_bytes():
    """The int16x8 model of test_export_v3_types (clustered weights, 75 % zero bias): §6 stays
    the smallest for its bias, so the whole packed file is byte-identical to a pack without
    layout 6, and every tensor keeps version 2 or 3."""
    data = int16x8_model()
    packed = export.pack(data)
    assert packed == export.pack(data, layouts=OLD_LAYOUTS)
    assert {v for _, v in _packed_layouts(packed).values()} == {2, 3}


def test_int16x8_bias_no_codebook_packs_goes_from_raw_to_int_planes():
    """FORMAT.md §16's case: unclustered weights and no zero bias, so 2047 distinct int64 values:
    the best codebook layout takes 20,251 B > 16,384 B raw and version 3 keeps it raw; §17
    packs it to 6,443 B."""
    data = int16x8_model(clustered=False, zeros=False)
    [bias] = [n for n, (t, s, _) in _constants(data).items() if t == "int64" and s == [2048]]
    a = np.frombuffer(_constants(data)[bias][2], np.int64)
    assert len(codec.encode(a, layouts=OLD_LAYOUTS)) > a.nbytes
    assert bias not in _packed_layouts(export.pack(data, layouts=OLD_LAYOUTS))
    packed = export.pack(data)
    assert _packed_layouts(packed)[bias] == ("int_planes", 4) and len(codec.encode(a)) < 0.4 * a.nbytes
    assert _constants(export.unpack(packed)) == _constants(data)


def _model_with(values):
    """The test models' dense .tflite with its [10, 48] float kernel replaced by an int32 constant."""
    m = fb.read_model(em.tflite("dense", None))
    [w] = [t for t in m.subgraphs[0].tensors if list(t.shape) == [10, 48]]
    w.type = fb.schema.TensorType.INT32
    w.shape = list(values.shape)
    m.buffers[w.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
    return fb.write_model(m), fb.tensor_name(w)


def test_random_int32_stays_raw_and_small_ints_in_int32_pack():
    """A 256 x 256 int32 constant of uniformly random bit patterns: §17 takes more than its
    262,144 B, so pack keeps it raw and inspect says why; values of +-2^20 pack to ~66 %."""
    rng = np.random.default_rng(0)
    noise = rng.integers(-(1 << 31), 1 << 31, (256, 256)).astype(np.int32)
    data, name = _model_with(noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing refused: only the kept-raw warning, naming it
        warnings.filterwarnings("ignore", message="pack: kept raw: ")
        out = export.pack(data)
    with pytest.warns(UserWarning, match=rf"pack: kept raw: 1 constant tensor\(s\), 262144 B, .*{re.escape(name)} \(262144 B\)"):
        export.pack(data)
    assert name not in _packed_layouts(out)
    [row] = [r for r in export.inspect(data).rows if r.name == name]
    assert row.status == "kept" and "no smaller than its 262144 B raw" in row.reason, row.reason
    assert len(codec.encode(noise)) > noise.nbytes
    small = rng.integers(-(1 << 20), 1 << 20, (256, 256)).astype(np.int32)
    data, name = _model_with(small)
    out = export.pack(data)
    assert _packed_layouts(out)[name] == ("int_planes", 4)
    size = len(codec.encode(small))
    assert 0.64 * small.nbytes < size < 0.67 * small.nbytes
    assert _constants(export.unpack(out))[name][2] == small.tobytes()


def test_version_3_minimal_decoder_and_layouts_never_use_int_planes(int8_cnn):
    """pack(version=3 / 2), pack(decoder='minimal') and pack(layouts=...) without 'int_planes'
    write no layout 6; pack(layouts=('int_planes',)) packs only what it holds; version=4 writes
    version 4 for every tensor."""
    for kw in ({"version": 3}, {"version": 2}, {"decoder": "minimal"}, {"layouts": ("dense", "sparse")}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # version 2 / minimal: the reasons some tensors stay raw
            got = _packed_layouts(export.pack(int8_cnn, **kw))
        assert "int_planes" not in {lay for lay, _ in got.values()}, kw
    only = _packed_layouts(export.pack(int8_cnn, layouts=("int_planes",)))
    assert set(only.values()) == {("int_planes", 4)}
    v4 = _packed_layouts(export.pack(int8_cnn, version=4))
    assert {v for _, v in v4.values()} == {4}


def test_cli_packs_with_int_planes_and_inspect_names_it(int8_cnn, tmp_path):
    src, dst = tmp_path / "m.tflite", tmp_path / "p.tflite"
    src.write_bytes(int8_cnn)
    r = em.cli("pack", src, dst, "--layouts", "int_planes,dense,sparse")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("int_planes", 4) in _packed_layouts(dst.read_bytes()).values()
    r = em.cli("inspect", src)
    assert r.returncode == 0 and "int_planes" in r.stdout, r.stdout + r.stderr
    r = em.cli("pack", src, tmp_path / "q.tflite", "--version", "4")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_and_pack_name_the_weights_kept_raw_when_only_biases_pack(int8_cnn, tmp_path):
    """An int8 file whose weights are neither pruned nor clustered (a QAT or post-training int8
    file): only its int32 biases pack, and the CLI's "1.0Nx" came with no word on why. It now names
    the constants it kept raw (pack_with_stats' "kept_raw": inspect's "kept" rows) when they are at
    least a tenth of the output, and ``export.pack`` warns with the same line (a Python user saw
    nothing before); a clustered model's output has no such line and no warning."""
    rows = export.inspect(int8_cnn).rows
    kept = sorted((r.name, r.raw_bytes) for r in rows if r.status == "kept")
    assert kept and {r.dtype for r in rows if r.status == "packable"} == {"int32"}
    out, stats = export._pack.pack_with_stats(int8_cnn)
    assert sorted(stats["kept_raw"]) == kept and stats["packed_tensors"] >= 1 and len(out) < len(int8_cnn)
    src, dst = tmp_path / "m.tflite", tmp_path / "p.tflite"
    src.write_bytes(int8_cnn)
    r = em.cli("pack", src, dst)
    assert r.returncode == 0, r.stdout + r.stderr
    biggest = max(kept, key=lambda k: k[1])
    line = [x for x in r.stdout.splitlines() if x.startswith("kept raw: ")]
    assert len(line) == 1 and f"{len(kept)} constant tensor(s), {sum(n for _, n in kept)} B" in line[0], r.stdout
    assert f"{biggest[0]} ({biggest[1]} B)" in line[0] and f"dc-keras inspect {src}" in line[0], line
    with warnings.catch_warnings(record=True) as caught:  # the Python API says it too, at the caller's line
        warnings.simplefilter("always")
        assert export.pack(int8_cnn) == out
    said = [w for w in caught if "kept raw" in str(w.message)]
    assert len(said) == 1 and str(said[0].message).startswith(f"pack: kept raw: {len(kept)} constant tensor(s)"), said
    assert f"{biggest[0]} ({biggest[1]} B)" in str(said[0].message) and "dc_keras.export.inspect(data)" in str(said[0].message)
    assert said[0].filename == __file__, said[0].filename
    clustered = tmp_path / "clustered.tflite"
    clustered.write_bytes(em.tflite("dense", None))
    r = em.cli("pack", clustered, tmp_path / "c.tflite")
    assert r.returncode == 0 and "kept raw" not in r.stdout, r.stdout + r.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clustered weights pack: nothing kept raw, no warning
        export.pack(clustered.read_bytes())


@pytest.fixture(scope="module")
def version3_decoder(tmp_path_factory):
    """dc_codec.c built as a decoder that reads versions 1 to 3 (DC_VERSION_MAX 3, the value
    before §17): the header's constant redefined by a force-included header."""
    return _cbuild.older_decoder(tmp_path_factory.mktemp("v3dec"), 3)


def test_a_version3_decoder_refuses_version4_with_dc_err_version(version3_decoder):
    """§10: a decoder that reads up to version 3 meets version 4 only in layout 6 tensors and
    refuses them with DC_ERR_VERSION (3) at dc_peek, decoding nothing; it reads the same tensor
    packed without layout 6."""
    a = np.random.default_rng(0).normal(0, 5000, 300).astype(np.int32)
    v4, v2 = codec.encode(a), codec.encode(a, version=3)
    assert codec.info(v4)["layout"] == "int_planes" and v4[4] == 4
    info = ctypes.create_string_buffer(256)
    out = np.empty_like(a)
    assert version3_decoder.dc_peek(v4, len(v4), info) == 3
    assert version3_decoder.dc_decode(v4, len(v4), out.ctypes.data, out.nbytes) == 3
    assert version3_decoder.dc_decode(v2, len(v2), out.ctypes.data, out.nbytes) == 0
    assert np.array_equal(out, a)


def test_kept_raw_lists_the_planned_tensors_when_the_packed_file_is_no_smaller():
    """A model whose one packable kernel saves less than the tensor and op its packing adds (an int8
    per-channel conv: its quantization parameters are written again): pack gives the input back,
    and stats["kept_raw"] (the CLI's line, pack's warning) listed the other constants but not that
    kernel (helper-114's review)."""
    plain = export.unpack(open(os.path.join(os.path.dirname(__file__), "data", "conv_int8_tail.packed.tflite"),
                               "rb").read())
    m = fb.read_model(plain)
    consts = [t for t in m.subgraphs[0].tensors if t.buffer > 0 and fb.buffer_size(m, t.buffer)]
    [conv] = [t for t in consts if fb.buffer_size(m, t.buffer) == 864 and t.type == fb.schema.TensorType.INT8]
    rng = np.random.default_rng(2)
    for t in consts:  # every int8 weight random (kept raw), the conv's zeros chosen for a marginal saving
        if t.type == fb.schema.TensorType.INT8:
            m.buffers[t.buffer].data = rng.integers(-128, 128, fb.buffer_size(m, t.buffer)).astype(np.uint8)
    for p in np.linspace(0.0, 0.6, 400):
        a = rng.integers(-128, 128, 864).astype(np.int8)
        a[rng.random(864) < p] = 0
        if not 864 - 128 < len(codec.encode(a.reshape(32, 3, 3, 3))) < 864:  # not marginal
            continue
        m.buffers[conv.buffer].data = a.view(np.uint8)
        src = fb.write_model(m)
        out, stats = export._pack.pack_with_stats(src)
        if out == src and fb.tensor_name(conv) in [r.name for r in export.inspect(src).rows if r.status == "packable"]:
            break
    else:
        pytest.fail("no marginal kernel found")
    names = [name for name, _ in stats["kept_raw"]]
    assert fb.tensor_name(conv) in names and len(names) == len(set(names)), names
    assert sorted(names) == sorted(fb.tensor_name(t) for t in consts if t.type == fb.schema.TensorType.INT8)
    # each with its own reason: the random weights their packing's, the kernel the file's
    kinds = dict(zip(names, stats["kept_raw_kinds"]))
    assert kinds.pop(fb.tensor_name(conv)) == "file" and set(kinds.values()) == {"weights"}, stats["kept_raw_kinds"]
    line = export._pack.kept_raw_note(stats["kept_raw"], None, "inspect", kinds=stats["kept_raw_kinds"])
    assert "neither pruned nor clustered); they pack, but the packed file came out no smaller than the input: " in line
