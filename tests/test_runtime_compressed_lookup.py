"""weights="compressed": EMBEDDING_LOOKUP / GATHER (axis 0) on packed tables run from the compact
row form (the dense table is never built); a lookup copies values, so outputs are bit-exact."""
import functools

import numpy as np
import pytest

from _export_models import run_batch
from dc_keras import export, runtime
from dc_keras import _flatbuffer as fb

VOCAB, DIM = 300, 16


def _plain(content):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content)


@functools.lru_cache(maxsize=None)
def _embedding_tflite(quantize=None, shape=(6,), dtype="int32"):
    """A Keras Embedding pruned (90 %) and clustered (4 bits) with the public API, then exported."""
    import keras

    import dc_keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input(shape, dtype=dtype), keras.layers.Embedding(VOCAB, DIM)])
    ids = np.random.RandomState(0).randint(0, VOCAB, size=(32,) + shape).astype(dtype)
    target = np.random.RandomState(1).randn(32, *shape, DIM).astype(np.float32)
    pruned = dc_keras.prune(model, dc_keras.schedules.ConstantSparsity(0.9, 0))
    pruned.compile("sgd", "mse")
    pruned.fit(ids, target, epochs=1, batch_size=16, verbose=0, callbacks=[dc_keras.PruningCallback()])
    final = dc_keras.strip(dc_keras.cluster(dc_keras.strip(pruned), bits=4))
    table = final.layers[0].get_weights()[0]
    assert 0.05 < np.mean(table != 0) < 0.2 and len(np.unique(table)) <= 17
    return export.to_tflite(final, pack=False, quantize=quantize,
                            representative_data=ids if quantize == "int8" else None)


def _ops(content):
    m = fb.read_model(content)
    return [fb.opcode_name(m, op) for op in m.subgraphs[0].operators]


def _ids(shape, dtype="int32", seed=0):
    return np.random.RandomState(seed).randint(0, VOCAB, size=shape).astype(dtype)


@pytest.mark.parametrize("quantize,dtype", [(None, "int32"), (None, "int64"), ("int8", "int32")])
def test_gather_on_packed_table_bit_exact(quantize, dtype):
    plain = _embedding_tflite(quantize, dtype=dtype)
    assert "GATHER" in _ops(plain)  # what the converter emits for keras.layers.Embedding
    packed = export.pack(plain)
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    report = it.compressed_report()
    assert [(r["route"], r["op"]) for r in report] == [("compressed", "GATHER")], report
    r = report[0]
    assert r["shape"] == (VOCAB, DIM) and r["dtype"] == ("int8" if quantize else "float32")
    assert 0 < r["nonzeros"] < 0.2 * VOCAB * DIM
    # smaller than the dense table (int8: 3 B per stored value + 4 B per row + 1 KiB header)
    assert r["bytes"] < VOCAB * DIM * (1 if quantize else 2)
    for shape in ((1, 6), (5, 6), (2, 6)):  # resize and re-prepare between runs
        ids = _ids(shape, dtype, seed=shape[0])
        want = run_batch(_plain(plain), ids)
        got = run_batch(it, ids)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))  # bit for bit
    decoded = run_batch(runtime.Interpreter(model_content=packed), ids)
    np.testing.assert_array_equal(got.view(np.uint8), decoded.view(np.uint8))


def test_gather_index_out_of_range_fails_clearly():
    packed = export.pack(_embedding_tflite())
    it = runtime.Interpreter(model_content=packed, weights="compressed")
    ids = _ids((1, 6))
    np.testing.assert_array_equal(run_batch(it, ids), run_batch(_plain(_embedding_tflite()), ids))
    ids[0, 3] = VOCAB + 7
    with pytest.raises(RuntimeError, match=r"GATHER.*index out of bounds.*307.*\[0, 300\)"):
        run_batch(it, ids)
    ids[0, 3] = 4  # the interpreter still works afterwards
    np.testing.assert_array_equal(run_batch(it, ids), run_batch(_plain(_embedding_tflite()), ids))


def test_empty_batch_of_ids_gives_an_empty_output():
    """A batch of 0 id rows: the dense route gives a (0, 6, 16) output; the compressed lookup
    failed with "tensors not ready" (an empty output has no data pointer)."""
    plain = _embedding_tflite()
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    ids = _ids((0, 6))
    want, got = run_batch(_plain(plain), ids), run_batch(it, ids)
    assert got.shape == want.shape == (0, 6, DIM) and got.dtype == want.dtype
    ids = _ids((3, 6))  # and it runs on afterwards
    np.testing.assert_array_equal(run_batch(it, ids), run_batch(_plain(plain), ids))


def _as_embedding_lookup(content, hybrid=False):
    """The same model with its GATHER rewritten as EMBEDDING_LOOKUP(ids, table) (1-D ids): the op
    the TF1 embedding_lookup path emits, which the Keras converter does not. ``hybrid``: an int8
    table's GATHER -> DEQUANTIZE pair becomes one EMBEDDING_LOOKUP with a float output."""
    from ai_edge_litert import schema_py_generated as schema

    m = fb.read_model(content)
    ops = m.subgraphs[0].operators
    if hybrid:
        assert fb.opcode_name(m, ops[-1]) == "DEQUANTIZE" and fb.opcode_name(m, ops[-2]) == "GATHER"
        ops[-2].outputs = ops[-1].outputs
        del ops[-1]
        table = m.subgraphs[0].tensors[ops[-1].inputs[0]]
        table.quantization.zeroPoint = [0]  # TFLite's hybrid lookup takes a symmetric table
    for op in ops:
        code = m.operatorCodes[op.opcodeIndex]
        if code.builtinCode == schema.BuiltinOperator.GATHER:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.EMBEDDING_LOOKUP
            code.version = 1
            op.inputs = [int(op.inputs[1]), int(op.inputs[0])]
            op.builtinOptionsType, op.builtinOptions = 0, None
    return fb.write_model(m)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_embedding_lookup_on_packed_table_bit_exact(quantize):
    plain = _as_embedding_lookup(_embedding_tflite(quantize, shape=()))
    assert "EMBEDDING_LOOKUP" in _ops(plain)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    assert [(r["route"], r["op"]) for r in it.compressed_report()] == [
        ("compressed", "EMBEDDING_LOOKUP")]
    for n in (1, 7):
        ids = _ids((n,), seed=n)
        want, got = run_batch(_plain(plain), ids), run_batch(it, ids)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    with pytest.raises(RuntimeError, match=r"EMBEDDING_LOOKUP.*index out of bounds"):
        run_batch(it, np.array([3, VOCAB], np.int32))  # (negative ids: wrapped by the graph first)


def test_hybrid_embedding_lookup_keeps_decoded_route_and_says_why():
    """EMBEDDING_LOOKUP of an int8 table with a float output (TFLite's hybrid kernel dequantizes)
    is not a plain copy: it keeps the decoded route, reported with the reason, and still runs."""
    plain = _as_embedding_lookup(_embedding_tflite("int8", shape=()), hybrid=True)
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    (r,) = it.compressed_report()
    assert r["route"] == "dense" and r["op"] == "EMBEDDING_LOOKUP"
    assert "table int8" in r["reason"] and "output float32" in r["reason"], r
    ids = _ids((4,))
    want, got = run_batch(_plain(plain), ids), run_batch(it, ids)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_negative_zero_entries_are_kept():
    """A lookup is a copy: -0.0 in the table comes out as -0.0 (the FC form drops +-0 alike)."""
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(64, 8)])
    w = np.round(np.random.RandomState(0).randn(64, 8) * 2) / 4
    w[np.abs(w) < 0.3] = 0
    w[::3][w[::3] == 0] = -0.0  # every third row: its zeros are -0.0
    model.layers[0].set_weights([w.astype(np.float32)])
    plain = export.to_tflite(model, pack=False)
    ids = np.array([[0, 3, 1, 63]], np.int32)
    want = run_batch(_plain(plain), ids)
    assert np.any(np.signbit(want) & (want == 0))  # the converter kept the -0.0 entries
    it = runtime.Interpreter(model_content=export.pack(plain), weights="compressed")
    assert it.compressed_report()[0]["route"] == "compressed"
    np.testing.assert_array_equal(run_batch(it, ids).view(np.uint32), want.view(np.uint32))
