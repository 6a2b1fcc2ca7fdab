"""A fresh review of the compressed-weights runtime (session 55): an app engineer after the smallest
memory at inference walks docs/runtime.md's ``weights="compressed"`` on an MLP, a CNN and an Embedding
model. Each test checks a claim of that page against what the runtime does."""
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from _export_models import run_batch
from dc_keras import export, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pruned_clustered_table(rows, cols, seed=0):
    """A float32 table with 16 shared non-zero values and ~10 % of its entries non-zero."""
    rng = np.random.default_rng(seed)
    values = np.linspace(-0.5, 0.5, 16, dtype=np.float32)
    values = values[values != 0]
    # np.where, not a product with the mask: that leaves -0.0 where a negative value was dropped, which
    # bit-exact packing and the sparse form keep as values (docs/packing.md, Signed zeros)
    return np.where(rng.random((rows, cols)) < 0.1, rng.choice(values, (rows, cols)), np.float32(0))


@functools.lru_cache(maxsize=None)
def _embedding(rows=4000, cols=32):
    import keras

    model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(rows, cols)])
    table = _pruned_clustered_table(rows, cols)
    model.layers[0].embeddings.assign(table)
    plain = export.to_tflite(model, pack=False)
    return plain, export.pack(plain), table


def test_a_compressed_embedding_table_takes_about_3_bytes_per_non_zero_not_its_packed_size():
    """docs/runtime.md said a big pruned embedding table run with weights="compressed" "stays at about
    its packed size in memory"; measured, a clustered table's compact form is 3-4x its Huffman-coded
    tensor (1-byte code + 2-byte column per non-zero and ~4 B per row, against ~1 B per non-zero
    packed): the page now gives the per-non-zero figure. Lookups stay bit-exact."""
    plain, packed, table = _embedding()
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    (row,) = [r for r in it.compressed_report() if r["route"] == "compressed"]
    nonzeros, rows = int(np.count_nonzero(table)), table.shape[0]
    assert row["op"] == "GATHER" and row["nonzeros"] == nonzeros, row
    assert 3 * nonzeros <= row["bytes"] <= 3 * nonzeros + 5 * rows, (row, nonzeros, rows)
    assert row["bytes"] < table.nbytes / 4, row
    packed_tensor = len(packed) - (len(plain) - table.nbytes)  # the rest of the file is the same size
    assert row["bytes"] > 2 * packed_tensor, (row["bytes"], packed_tensor)
    doc = " ".join(open(os.path.join(ROOT, "docs", "runtime.md"), encoding="utf-8").read().split())
    assert "about its packed size in memory" not in doc
    assert "takes about 3 bytes per non-zero (plus ~4 per row)" in doc
    ids = np.random.default_rng(1).integers(0, rows, (3, 8)).astype(np.int32)
    from ai_edge_litert.interpreter import Interpreter

    want = run_batch(Interpreter(model_content=plain), ids)
    np.testing.assert_array_equal(run_batch(it, ids).view(np.uint8), want.view(np.uint8))


_RSS = r"""
import sys, numpy as np
from dc_keras import runtime
def rss():  # the process's own memory: anonymous pages (file-backed ones vary with the page cache)
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024
content = open(sys.argv[1], "rb").read()
warm = runtime.Interpreter(model_content=content[:0] or open(sys.argv[2], "rb").read(), weights=sys.argv[3])
warm.allocate_tensors(); del warm
before = rss()
it = runtime.Interpreter(model_content=content, weights=sys.argv[3])
it.allocate_tensors()
width = int(sys.argv[4])  # the ids' count: the model's input shape (1, width)
it.set_tensor(it.get_input_details()[0]["index"], np.arange(width, dtype=np.int32).reshape(1, width) * 1000)
it.invoke()
print(rss() - before)
"""


def rss_growth(tmp_path, big, small, width=8):
    """{"decoded": bytes, "compressed": bytes}: how much the anonymous memory of a fresh process grew
    while it loaded the packed model ``big`` (its bytes already read) and ran one lookup of ``width``
    ids, per route; ``small``, a model of the same ops loaded first, leaves the library's and backend's
    one-time costs out."""
    (tmp_path / "big.tflite").write_bytes(big)
    (tmp_path / "small.tflite").write_bytes(small)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    grew = {}
    for weights in ("decoded", "compressed"):
        out = subprocess.run([sys.executable, "-c", _RSS, str(tmp_path / "big.tflite"), str(tmp_path / "small.tflite"),
                              weights, str(width)], capture_output=True, text=True, timeout=300, env=env, check=True)
        grew[weights] = int(out.stdout.split()[-1])
    return grew


@pytest.mark.long
def test_a_compressed_embedding_tables_memory_is_a_fraction_of_the_decoded_one(tmp_path):
    """The figures docs/runtime.md states for this table (100,000 x 64 at 10 %: the process's own memory
    grew by 2.3 MB compressed against 25.6 MB decoded), measured in fresh processes (one per route; a small
    model loaded first so the library's and backend's one-time costs are not counted). Its anonymous
    memory (RssAnon): VmRSS also counts the library pages the first invoke maps, as many as the page cache
    lets fault-around map: +0.9 MB in both routes in a venv installed minutes before (session 56's fresh
    clones: 3.5 MB, over the bound) against one installed hours before (2.6 MB), the same code."""
    _, packed, table = _embedding(100_000, 64)
    _, small, _ = _embedding()
    grew = rss_growth(tmp_path, packed, small)
    nonzeros = int(np.count_nonzero(table))
    assert grew["decoded"] > 0.9 * table.nbytes, grew
    assert grew["compressed"] < 3 * nonzeros + 5 * table.shape[0] + 2**20, (grew, nonzeros)  # + page slack
    assert grew["compressed"] < grew["decoded"] / 5, grew
    assert f"the process's own memory grew by {grew['compressed'] / 1e6:.1f} MB) against {grew['decoded'] / 1e6:.1f} MB" \
        in " ".join(open(os.path.join(ROOT, "docs", "runtime.md"), encoding="utf-8").read().split()), grew
    (row,) = runtime.Interpreter(model_content=packed, weights="compressed").compressed_report()
    doc = " ".join(open(os.path.join(ROOT, "docs", "runtime.md"), encoding="utf-8").read().split())
    assert f"took {row['bytes'] / 1e6:.1f} MB" in doc, row


@functools.lru_cache(maxsize=None)
def _mlp(quantize, packed_bias=False):
    """A pruned (90 %), clustered (<= 17 values) 64-128-10 MLP exported with ``quantize``, packed;
    ``packed_bias``: its first bias holds 4 values, so that it is packed too."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128), keras.layers.Dense(10)])
    if packed_bias:
        model.layers[0].bias.assign(np.arange(128, dtype=np.float32) % 4 / 10)
    for v in model.weights:
        if v.ndim == 2:
            w = v.numpy()
            w = np.round(w / np.abs(w).max() * 8) / 8 * np.abs(w).max()
            v.assign(np.where(np.abs(w) >= np.quantile(np.abs(w), 0.9), w, 0).astype(np.float32))
    return export.pack(export.to_tflite(model, pack=False, quantize=quantize), min_bytes=64)


@pytest.mark.parametrize("quantize,words,via", [
    ("float16", "DEQUANTIZE has no compressed kernel", "allocate_tensors"),
    ("dynamic", "types input float32 / weights int8 / output float32", "signature runner"),
])
def test_compressed_weights_that_run_nothing_compressed_warn_with_the_reasons(quantize, words, via):
    """weights="compressed" picked for memory on a model none of whose packed tensors its kernels take
    (a float16 or dynamic-range export, a conv net) ran as "decoded", saving nothing, and said so only
    in compressed_report(), which a user who believed the docs had no reason to read. The first
    allocate_tensors() (or signature runner call) now warns, once, naming the tensors, their reasons
    and what runs compressed; a model with a compressed layer does not warn."""
    import warnings

    def said(caught):
        return [w for w in caught if "none of its" in str(w.message)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = runtime.Interpreter(model_content=_mlp(quantize), weights="compressed")
        assert not said(caught)  # not at load: the delegate's errors are known at allocation
        for _ in range(2):
            if via == "allocate_tensors":
                it.allocate_tensors()
            else:
                run = it.get_signature_runner()
                (name,) = run.get_input_details()
                run(**{name: np.zeros((1, 64), np.float32)})
    ours = said(caught)
    assert len(ours) == 1 and ours[0].filename == __file__, [(w.filename, str(w.message)) for w in caught]
    msg = str(ours[0].message)
    assert "none of its 2 packed tensor(s) runs compressed" in msg and "saves no memory" in msg, msg
    assert msg.count(words) == 2 and "; decoded" not in msg and "compressed_report()" in msg, msg
    assert all(r["route"] == "dense" for r in it.compressed_report())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = runtime.Interpreter(model_content=_mlp(None), weights="compressed")
        it.allocate_tensors()
    assert not said(caught)
    assert [r["route"] for r in it.compressed_report()] == ["compressed", "compressed"]


def test_a_packed_tensor_that_fails_to_decode_is_said_at_allocate_not_as_nothing_compressed():
    """A corrupt weight leaves the report without its row: the error (checksum) is what the user
    must hear, at allocate_tensors, not a warning that nothing runs compressed."""
    import warnings

    from dc_keras import _flatbuffer as fb

    packed = _mlp(None, packed_bias=True)
    model = fb.read_model(packed)
    bad = bytearray(packed)
    packed_weights = [fb.buffer_bytes(model, model.subgraphs[s].tensors[p].buffer)
                      for s, p, _ in export._pack.packed_tensors(model)]
    assert len(packed_weights) == 3, len(packed_weights)
    for data in sorted(packed_weights, key=len)[1:]:  # both weights: the bias's row alone would be left
        bad[packed.index(data) + len(data) // 2] ^= 0x10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = runtime.Interpreter(model_content=bytes(bad), weights="compressed")
        with pytest.raises(RuntimeError, match="checksum"):
            it.allocate_tensors()
    assert not [w for w in caught if "none of its" in str(w.message)]


@pytest.mark.parametrize("weights", ["decoded", "compressed"])
def test_an_id_outside_the_embedding_table_is_one_error_naming_the_model_and_the_fix(weights):
    """An id >= the vocabulary: the compressed GATHER said "dc_keras compressed GATHER(<table>): index out
    of bounds: ... [0, 4000)Node number 1 (DcKerasHuffDecodeDelegate) failed to invoke." and the decoded
    route TFLite's "gather index out of bounds" glued to its node line, naming neither the model nor the
    fix. Both now say one sentence naming the model, the kernel's words and the ids to give; a signature
    runner's call says the same; the interpreter then still runs bit-exact."""
    plain, packed, table = _embedding()
    it = runtime.Interpreter(model_content=packed, weights=weights)
    ids = np.zeros((1, 8), np.int32)
    ids[0, 3] = table.shape[0]
    with pytest.raises(RuntimeError) as info:
        run_batch(it, ids)
    msg = str(info.value)
    del info  # its traceback's frames hold views of the interpreter's tensors, which a resize refuses
    assert msg.startswith("model_content: an index is outside the table it looks up") and "Node number" not in msg, msg
    want = ("dc_keras compressed GATHER(" if weights == "compressed" else "gather index out of bounds")
    assert msg.count(want) == 1 and "ids below its input_dim" in msg, msg
    if weights == "compressed":
        assert "indices[3] = 4000, the table has rows [0, 4000)): give indices in [0, 4000)" in msg, msg
    good = ids.copy()
    good[0, 3] = 7
    from ai_edge_litert.interpreter import Interpreter

    np.testing.assert_array_equal(run_batch(it, good).view(np.uint8),
                                  run_batch(Interpreter(model_content=plain), good).view(np.uint8))
    run = runtime.Interpreter(model_content=packed, weights=weights).get_signature_runner()
    (name,) = run.get_input_details()
    with pytest.raises(RuntimeError, match="^model_content: an index is outside the table it looks up"):
        run(**{name: ids})


@pytest.mark.parametrize("weights", ["decoded", "compressed"])
def test_set_tensor_of_another_rank_or_dtype_names_the_input_and_the_fix(weights):
    """One sample without its batch dimension (x of shape [64] for a [-1, 64] input) and numpy's default
    float64 (to set_tensor or a signature runner) were TFLite's "Cannot set tensor: Dimension mismatch. Got 1 but expected 2 for input 0." and
    "Got value of type FLOAT64 but expected type FLOAT32": the ranks without saying so, no model, no
    fix. Both now name the model, the input, what it takes and the fix, TFLite's words kept; float ids
    for an Embedding's int32 input likewise. A right array then goes through."""
    it = runtime.Interpreter(model_content=_mlp(None), weights=weights)
    it.allocate_tensors()
    i = it.get_input_details()[0]["index"]
    with pytest.raises(ValueError) as info:
        it.set_tensor(i, np.zeros(64, np.float32))
    msg = str(info.value)
    assert msg.startswith(f"model_content: input {i} (") and "takes an array of rank 2, shape [-1, 64]" in msg, msg
    assert "rank 1, shape [64]" in msg and "add the batch dimension: array[None]" in msg, msg
    assert "Dimension mismatch. Got 1 but expected 2" in msg, msg
    with pytest.raises(ValueError, match=r"takes float32 values, but the array holds float64 \(TFLite: Got value of "
                                         r"type FLOAT64 but expected type FLOAT32.*\): convert it first: "
                                         r"x\.astype\(np\.float32\)$"):
        it.set_tensor(i, np.zeros((1, 64)))
    it.set_tensor(i, np.zeros((1, 64), np.float32))
    it.invoke()
    run = runtime.Interpreter(model_content=_mlp(None), weights=weights).get_signature_runner()
    (name,) = run.get_input_details()
    with pytest.raises(ValueError, match=rf"^model_content: input '{name}' takes float32 values, but the array holds "
                                         r"float64 \(TFLite: Got value of type FLOAT64.*x\.astype\(np\.float32\)$"):
        run(**{name: np.zeros((1, 64))})
    assert run(**{name: np.zeros((1, 64), np.float32)})
    emb = runtime.Interpreter(model_content=_embedding()[1], weights=weights)
    emb.allocate_tensors()
    with pytest.raises(ValueError, match=r"takes int32 values, but the array holds float32 .*x\.astype\(np\.int32\)$"):
        emb.set_tensor(emb.get_input_details()[0]["index"], np.zeros((1, 8), np.float32))


def test_floats_for_an_int8_input_are_told_to_quantize_with_its_scale_and_zero_point():
    """A full-integer file with int8 inputs (converter_options inference_input_type, as microcontrollers
    take them) given the float array: the error gives the quantization to apply, with the input's scale
    and zero point; the array it makes then runs."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    xs = np.random.default_rng(0).random((10, 16)).astype(np.float32)
    content = export.to_tflite(model, quantize="int8", representative_data=xs,
                               converter_options={"inference_input_type": "int8"})
    it = runtime.Interpreter(model_content=content)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    scale, zero = d["quantization"]
    assert d["dtype"] == np.int8 and zero < 0, d
    with pytest.raises(ValueError) as info:
        it.set_tensor(d["index"], xs[:1])
    msg = str(info.value)
    del info
    fix = f"np.clip(np.round(x / {scale!r} - {-zero}), -128, 127).astype(np.int8)"
    assert "takes int8 values, but the array holds float32" in msg and f"quantize it first: {fix}" in msg, msg
    x = xs[:1]
    it.set_tensor(d["index"], eval(fix, {"np": np, "x": x}))  # the expression the message gives
    it.invoke()
