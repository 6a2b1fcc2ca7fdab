"""Structural checks of .tflite files: our reader refuses exactly the files TFLite's own
flatbuffer verifier refuses (the check every runtime runs before it loads a model), so no
damaged file is packed, unpacked or inspected as if it were whole, and no file a runtime loads
is refused. The reference is LiteRT's loader: ``Interpreter(model_content=...)`` says "The model
is not a valid Flatbuffer buffer" when its verifier fails (other load errors, such as an unknown
op, come after it and are not structural)."""
import re

import numpy as np
import pytest

from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

VERIFIER_MESSAGE = "not a valid Flatbuffer"


@pytest.fixture(scope="module")
def files():
    import _export_models as em

    plain = em.tflite("conv", None)
    return {"plain": plain, "packed": export.pack(plain)}


def _structure_positions(data):
    """Every byte of ``data`` outside the buffers' data vectors (tables, vtables, vectors, strings)
    and the file identifier (its own error: tests/test_user_journey.py)."""
    root = fb.schema.Model.GetRootAs(data, 0)
    in_data = np.zeros(len(data), bool)
    in_data[4:8] = True
    for i in range(root.BuffersLength()):
        end = fb.buffer_data_end(root.Buffers(i))
        if end:
            in_data[end - root.Buffers(i).DataLength():end] = True
    return np.flatnonzero(~in_data)


def _litert_verifier_refuses(data) -> bool:
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=data)
    except Exception as e:  # noqa: BLE001 - any load error; only the verifier's counts
        return VERIFIER_MESSAGE in str(e)
    return False


def _refused(data) -> bool:
    try:
        fb.check_model(data)
    except ValueError as e:
        assert str(e).startswith("malformed .tflite: ") and fb.CORRUPT_FIX in str(e), e
        return True
    return False


@pytest.mark.parametrize("name, bit", [("plain", 0), ("plain", 5), ("packed", 7)])
def test_single_bit_flips_are_refused_exactly_when_litert_refuses(files, name, bit):
    """Every structure byte of a conv model, one bit flipped. Before the whole-file walk, about one
    in six of the flips LiteRT's verifier refuses passed our reader (195 of 1,191 flips of bit 0 of
    a small conv + dense model: a vtable, string or vector outside the file or misaligned, a string
    without its terminator), and pack turned 175 of those 195 into files LiteRT loads."""
    data = files[name]
    refused, disagree = 0, []
    for p in _structure_positions(data):
        d = bytearray(data)
        d[p] ^= 1 << bit
        d = bytes(d)
        ours, theirs = _refused(d), _litert_verifier_refuses(d)
        refused += ours
        if ours != theirs:
            disagree.append((int(p), ours, theirs))
    assert not disagree, disagree[:10]
    assert refused > 300  # the flips reach the structure


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tensorflow_interpreter_refuses_the_same_flips(files):
    """TensorFlow's own interpreter (the ``backend="tensorflow"`` route) runs the same verifier."""
    import tensorflow as tf

    def tf_refuses(d):
        try:
            tf.lite.Interpreter(model_content=d)
        except Exception as e:  # noqa: BLE001 - any load error; only the verifier's counts
            return VERIFIER_MESSAGE in str(e)
        return False

    data, disagree = files["plain"], []
    for p in _structure_positions(data):
        d = bytearray(data)
        d[p] ^= 1
        d = bytes(d)
        if _refused(d) != tf_refuses(d):
            disagree.append(int(p))
    assert not disagree, disagree[:10]


def test_random_damage_and_truncation_agree_with_litert(files):
    rng = np.random.default_rng(20261204)
    data = files["plain"]
    positions = _structure_positions(data)
    cases = [data[:n] for n in range(16, len(data), 97)]
    for _ in range(400):
        d = bytearray(data)
        p = int(rng.choice(positions[positions >= 8]))
        d[p:p + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        cases.append(bytes(d[:len(data)]))
    disagree = [i for i, d in enumerate(cases) if _refused(d) != _litert_verifier_refuses(d)]
    assert not disagree, disagree[:10]


def _tensor_name_terminator(data, k):
    """Offset of tensor ``k``'s name's 0 terminator in ``data``."""
    t = fb.schema.Model.GetRootAs(data, 0).Subgraphs(0).Tensors(k)
    o = t._tab.Offset(10)  # Tensor.name (field 3)
    start = t._tab.Vector(o)  # first byte of the string
    assert t._tab.String(o + t._tab.Pos) == t.Name()
    return start + t._tab.VectorLen(o)


def test_the_message_names_the_field_and_the_fix(files, tmp_path):
    data = bytearray(files["plain"])
    end = _tensor_name_terminator(bytes(data), 2)
    assert data[end] == 0
    data[end] = ord("x")
    data = bytes(data)
    assert _litert_verifier_refuses(data)
    want = r"malformed \.tflite: subgraphs\[0\]\.tensors\[2\]\.name: its string does not end in a 0 byte"
    for fn in (export.pack, export.unpack, export.inspect, fb.read_model):
        with pytest.raises(ValueError, match=want) as info:
            fn(data)
        assert "truncated or corrupt" in str(info.value)
    with pytest.raises(ValueError, match=r"model_content: .*tensors\[2\]\.name: its string does not end"):
        runtime.Interpreter(model_content=data, backend="litert")
    # a file the verifier accepts still reads: the same byte set back
    fixed = bytearray(data)
    fixed[end] = 0
    assert fb.check_model(bytes(fixed)) is False


def test_a_vector_of_tables_may_hold_offset_zero_as_flatbuffers_reads_it(files):
    """flatbuffers checks a field's offset (not 0, not negative) but reads a vector's element
    offsets as they are: 0 is an empty table at the offset itself, which the runtimes load (every
    field at its default). Our reader does the same, so it refuses no file a runtime loads."""
    data = bytearray(files["plain"])
    sg = fb.schema.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    o = sg._tab.Offset(4)  # SubGraph.tensors
    first = sg._tab.Vector(o)  # the first element's offset
    last = first + 4 * (sg.TensorsLength() - 1)
    data[last:last + 4] = bytes(4)
    data = bytes(data)
    assert not _litert_verifier_refuses(data)
    assert fb.check_model(data) is False
    t = fb.read_model(data).subgraphs[0].tensors[-1]
    assert t.name is None and t.shape is None and t.buffer == 0


def test_model_extent_is_unchanged_by_the_checks(files):
    for data in files.values():
        assert fb.model_extent(data) <= len(data)
        assert fb.model_extent(data + bytes(64)) == fb.model_extent(data)
    with pytest.raises(ValueError, match=re.escape("malformed .tflite")):
        fb.model_extent(files["plain"][:len(files["plain"]) // 2])


def test_pack_unpack_and_inspect_walk_the_input_once(files, monkeypatch):
    """read_model's walk also finds where the model ends (what follows it: a zip of associated
    files): pack, unpack and inspect reuse it instead of walking the input a second time (0.16 s
    of a 12,000-operator model's inspect, 1.19 -> 1.02 s)."""
    walked = []
    run = fb._Walk.run
    monkeypatch.setattr(fb._Walk, "run", lambda self: walked.append(self.size) or run(self))
    plain, packed = files["plain"], files["packed"]
    for fn, data in ((export.pack, plain), (export.unpack, packed), (export.inspect, packed)):
        walked.clear()
        fn(data + bytes(64))
        assert walked.count(len(data) + 64) == 1, (fn.__name__, walked)
    model = fb.read_model(plain + bytes(64))
    assert fb.model_extent(plain + bytes(64), model) == fb.model_extent(plain) == model._dc_extent


def test_an_options_table_of_a_type_this_schema_does_not_know_is_read_as_the_runtime_reads_it(files):
    """A newer converter may write builtin options this schema module does not list: the runtimes'
    verifier checks only the offset of such a union member (its generated code accepts unknown
    types), and so do we; the member's table bytes still count toward where the model ends."""
    data = bytearray(files["plain"])
    op = fb.schema.Model.GetRootAs(bytes(data), 0).Subgraphs(0).Operators(0)
    assert op.BuiltinOptionsType() != 0
    slot, width = fb._layout(fb.schema.Operator)[1]["BuiltinOptionsType"]
    at = op._tab.Pos + op._tab.Offset(slot)
    data[at] = 250  # no BuiltinOptions member has this number
    data = bytes(data)
    assert fb.schema.Model.GetRootAs(data, 0).Subgraphs(0).Operators(0).BuiltinOptionsType() == 250
    assert not _litert_verifier_refuses(data)
    assert fb.check_model(data) is False
    assert fb.model_extent(data) == fb.model_extent(files["plain"])


def test_a_vtable_before_the_start_of_the_file_is_named_so(files):
    data = bytearray(files["plain"])
    root = int.from_bytes(data[:4], "little")
    data[root:root + 4] = (root + 8).to_bytes(4, "little", signed=True)  # vtable at byte -8
    data = bytes(data)
    assert _litert_verifier_refuses(data)
    with pytest.raises(ValueError, match=r"the root table: its vtable points 8 bytes before the start of the file"):
        fb.check_model(data)
