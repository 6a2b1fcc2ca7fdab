"""A review of a packed .tflite written with names stripped (``pack(strip_strings=True)``, ``dc-keras pack
--strip-strings``: what microcontroller users take): every error and report names a nameless tensor
"(unnamed tensor N)", N its index in its subgraph (get_tensor_details()'s index, the tensor column of
``dc-keras inspect``), where each route said "HuffDecode()" or '' before. Each test fails on the code
before its fix."""
import ctypes
import functools
import re

import pytest

import _export_models as em
from dc_keras import export, runtime
from dc_keras._flatbuffer import schema


@functools.lru_cache(maxsize=None)
def _stripped():
    """(plain, stripped packed, [(output tensor index, packed data offset, packed length)] per HuffDecode op)
    of LeNet-300-100 with clustered weights."""
    import keras

    import dc_keras

    keras.utils.set_random_seed(0)
    plain = export.to_tflite(em.cluster_and_prune(dc_keras.models.lenet_300_100()), pack=False)
    packed = export.pack(plain, strip_strings=True)
    root = schema.Model.GetRootAs(packed, 0)
    codes = {k for k in range(root.OperatorCodesLength()) if root.OperatorCodes(k).CustomCode() == b"HuffDecode"}
    sg, ops = root.Subgraphs(0), []
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        if op.OpcodeIndex() in codes:
            b = root.Buffers(sg.Tensors(op.Inputs(0)).Buffer())
            ops.append((op.Outputs(0), b._tab.Vector(b._tab.Offset(4)), b.DataLength()))
    assert len(ops) == 3 and all(not sg.Tensors(i).Name() for i in range(sg.TensorsLength()))
    return plain, packed, ops


def _corrupt():
    """The stripped model with a byte near the end of the second packed stream flipped (a checksum
    mismatch), and the label every route must name it by."""
    _, packed, ops = _stripped()
    out, pos, n = ops[1]
    bad = bytearray(packed)
    bad[pos + n - 3] ^= 0x10
    return bytes(bad), f"(unnamed tensor {out})", out


def test_the_label_names_the_tensor_get_tensor_details_and_inspect_show(tmp_path):
    """The N of "(unnamed tensor N)" is the tensor's index: the interpreter's details at N are the
    weight the corrupt stream decodes to (fc2's 100x300 kernel), and `dc-keras inspect` lists it under
    that label (its tensor column was empty for a stripped file)."""
    plain, packed, _ = _stripped()
    bad, label, index = _corrupt()
    it = runtime.Interpreter(model_content=packed)
    it.allocate_tensors()
    detail = it.get_tensor_details()[index]
    assert detail["index"] == index and detail["name"] == "" and list(detail["shape"]) == [100, 300]
    rows = export.inspect(packed).rows
    assert [r.label for r in rows if r.status == "packed"] == [f"(unnamed tensor {i})" for i in (1, 2, 3)]
    assert [list(r.shape) for r in rows if r.label == label] == [[100, 300]]
    (tmp_path / "stripped.tflite").write_bytes(packed)
    text = em.cli("inspect", str(tmp_path / "stripped.tflite")).stdout
    assert re.search(r"^ 0 " + re.escape(label) + r" +float32 +\[100, 300\] ", text, re.M), text
    # a named file is listed by its names, as before
    assert all(not r.label.startswith("(unnamed") for r in export.inspect(export.pack(plain)).rows)


@pytest.mark.parametrize("kwargs", [{}, {"backend": "tensorflow"}, {"weights": "compressed"},
                                    {"decode": "op", "backend": "tensorflow"}],
                         ids=["delegate-litert", "delegate-tensorflow", "compressed", "op"])
def test_a_corrupt_stripped_model_names_the_tensor_on_every_runtime_route(kwargs):
    """Interpreter(model_content=bad).allocate_tensors() said "HuffDecode(): decoding failed: checksum
    mismatch" (the delegate and weights="compressed": the C library printed the empty name), and
    decode="op" "(unnamed; HuffDecode op 1)", an ordinal nothing else shows. Every route now says
    "HuffDecode((unnamed tensor 2))"."""
    bad, label, _ = _corrupt()
    with pytest.raises(RuntimeError) as e:
        it = runtime.Interpreter(model_content=bad, **kwargs)
        it.allocate_tensors()
    msg = str(e.value)
    assert f"HuffDecode({label}): " in msg and "checksum mismatch" in msg, msg
    assert "HuffDecode()" not in msg and "HuffDecode op" not in msg


def test_the_tensorflow_op_itself_names_a_nameless_output():
    """The custom op's own Prepare (huffdecode_op.c, reached without dc_keras.runtime's check first)
    printed "HuffDecode(): decoding failed", as an app registering the op with TF's interpreter sees it."""
    from tensorflow.lite.python.interpreter import InterpreterWithCustomOps

    bad, label, _ = _corrupt()
    it = InterpreterWithCustomOps(model_content=bad, experimental_preserve_all_tensors=False,
                                  custom_op_registerers=[runtime.prepare_tensorflow_registerer()])
    with pytest.raises(RuntimeError, match=re.escape(f"HuffDecode({label}): decoding failed: checksum mismatch")):
        it.allocate_tensors()
        it.invoke()  # TFLite defers HuffDecode's Prepare past the dynamic batch's shape ops to here


@pytest.mark.parametrize("max_density,route", [(None, "dense"), (1.0, "compressed")])
def test_compressed_report_names_nameless_weights(max_density, route):
    """compressed_report() of a stripped model gave 'weights': '' for every row (dense and compressed):
    which layer was kept dense could not be told. Each row now names its weight by index, the
    HuffDecode outputs (these ~94 %-dense layers: kept dense by default, compressed at max_density=1)."""
    _, packed, ops = _stripped()
    it = runtime.Interpreter(model_content=packed, weights="compressed", max_density=max_density)
    it.allocate_tensors()
    report = it.compressed_report()
    assert {r["route"] for r in report} == {route}
    assert sorted(r["weights"] for r in report) == sorted(f"(unnamed tensor {out})" for out, _, _ in ops)


def test_unpack_routes_name_a_nameless_corrupt_tensor():
    """export.unpack said "packed data of '' is invalid", export.inspect "tensor '': packed data is
    invalid", and the C library's dc_unpack / runtime.unpack / `dc_unpack` tool "HuffDecode(): decoding
    failed"; dc_list_huffdecode's name (which the LiteRT CompiledModel kernel prints) was ''."""
    bad, label, _ = _corrupt()
    with pytest.raises(ValueError, match=re.escape(f"packed data of '{label}' is invalid: checksum mismatch")):
        export.unpack(bad)
    with pytest.raises(ValueError, match=re.escape(f"tensor '{label}': packed data is invalid: checksum mismatch")):
        export.inspect(bad)
    with pytest.raises(ValueError, match=re.escape(f"HuffDecode({label}): decoding failed: checksum mismatch")):
        runtime.unpack(bad)
    lib = runtime.load_library()
    fn = lib.dc_unpack
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)),
                   ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    out, size, why = ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_size_t(0), ctypes.create_string_buffer(512)
    assert fn(bad, len(bad), ctypes.byref(out), ctypes.byref(size), why, len(why)) == 2  # DC_UNPACK_BAD_PACKED
    assert why.value.decode().startswith(f"HuffDecode({label}): decoding failed: checksum mismatch")
    # dc_list_huffdecode names each op's output so (the good file: names, not decoded)
    _, packed, ops = _stripped()
    lst = lib.dc_list_huffdecode
    lst.restype = ctypes.c_int
    lst.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(runtime._HuffDecodeOp)),
                    ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_size_t]
    listed, count = ctypes.POINTER(runtime._HuffDecodeOp)(), ctypes.c_size_t(0)
    assert lst(packed, len(packed), ctypes.byref(listed), ctypes.byref(count), why, len(why)) == 0
    try:
        assert [listed[i].name.decode() for i in range(count.value)] == [f"(unnamed tensor {o})" for o, _, _ in ops]
    finally:
        free = lib.dc_unpack_free
        free.argtypes, free.restype = [ctypes.c_void_p], None  # as each caller in dc_keras sets them
        free(ctypes.cast(listed, ctypes.c_void_p))


def test_a_nameless_tensor_past_the_first_subgraph_says_its_subgraph():
    """Past subgraph 0 an index alone is ambiguous: the library's flatbuffer walk (which knows the
    subgraph) and export.unpack say "(unnamed tensor N, subgraph S)". Checked on the stripped model
    with an empty subgraph 0 put in front (the same ops, now in subgraph 1)."""
    from dc_keras import _flatbuffer as fb

    bad, _, index = _corrupt()
    model = fb.read_model(bad)
    model.subgraphs.insert(0, schema.SubGraphT())
    model.subgraphs[0].tensors, model.subgraphs[0].operators = [], []
    model.subgraphs[0].inputs, model.subgraphs[0].outputs = [], []
    moved = bytes(fb.write_model(model))
    label = f"(unnamed tensor {index}, subgraph 1)"
    with pytest.raises(ValueError, match=re.escape(f"HuffDecode({label}): decoding failed: checksum mismatch")):
        runtime.unpack(moved)
    with pytest.raises(ValueError, match=re.escape(f"packed data of '{label}' is invalid")):
        export.unpack(moved)


def test_pack_notes_name_nameless_tensors_of_its_input():
    """pack() of a nameless plain file (a stripped one unpacked, to pack again) listed what it kept raw
    as "(unnamed) (940800 B), (unnamed) (120000 B), ...": which was which could not be told. The
    warning now names each by index, as inspect lists them."""
    _, packed, _ = _stripped()
    nameless = export.unpack(packed)
    with pytest.warns(UserWarning, match=r"kept raw: 3 constant tensor\(s\).*: \(unnamed tensor 3\) \(940800 B\), "
                                         r"\(unnamed tensor 2\) \(120000 B\), \(unnamed tensor 1\) \(4000 B\);"):
        export.pack(nameless, min_saving=0.95)
    rows = {r.label: r.raw_bytes for r in export.inspect(nameless).rows}
    assert (rows["(unnamed tensor 3)"], rows["(unnamed tensor 2)"], rows["(unnamed tensor 1)"]) == (940800, 120000, 4000)
