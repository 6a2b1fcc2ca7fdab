""".tflite files made by PyTorch's converter, litert-torch 0.10.0 (formerly ai-edge-torch; helper
session 42): ``pack`` (API and CLI), ``unpack``, ``inspect`` and the runtimes on them.

The fixtures in tests/data/litert_torch/ (README.md there: producing command and versions) need no
PyTorch here:

- ``composite_two_signatures.tflite``: a custom StableHLO composite (``STABLEHLO_COMPOSITE`` op whose
  decomposition subgraph holds a layer's weights) under two signatures: 4 subgraphs, buffers read
  from two subgraphs each; 90 % zeros and 16 values per weight, so it packs 3.4x, bit-exact.
- ``int4_blockwise32.tflite``: litert-torch's INT4 recipe (``BLOCKWISE_32``): INT4 weights whose
  ``BlockwiseQuantization`` names separate float16 ``scales`` tensors that no operator lists. pack
  left them raw (right: the kernel reads them through the weight's quantization) but said "no
  operator reads it", which is wrong; now the reason names the weight whose scales they are.

The ``long`` test builds litert-torch's venv (~/.cache/dc_keras/venvs/litert-torch-0.10.0, the CPU
wheel of torch pinned), writes the files again with tests/data/litert_torch/make_files.py and runs
the same checks on them."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from _export_models import assert_bit_identical, signature_outputs
from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "litert_torch")
COMPOSITE = "composite_two_signatures.tflite"
INT4 = "int4_blockwise32.tflite"


def _read(name, folder=DATA):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


def _no_default_delegates():
    from ai_edge_litert.interpreter import OpResolverType

    return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def _float_inputs(details, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(d["shape"]).astype(d["dtype"]) for name, d in details.items()}


def _outputs(it):
    """{(signature, seed, output name): array} for seeded random float inputs of every signature (3 seeds)."""
    return signature_outputs(it, _float_inputs)


def _litert(content, **kw):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=content, **kw)


def _with_delegate(content, **kw):
    """Plain LiteRT given the library's delegate, as README's 'Running packed models elsewhere' says."""
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    return Interpreter(model_content=content, experimental_delegates=[load_delegate(runtime.library_path())], **kw)


def _pack(data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        packed = export.pack(data)
    return packed, [str(w.message) for w in caught]


def _composites(model):
    """[(subgraph, name, decomposition subgraph, attribute bytes)] of the STABLEHLO_COMPOSITE ops."""
    out = []
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators or []:
            if fb.opcode_name(model, op) == "STABLEHLO_COMPOSITE":
                o = op.builtinOptions2
                out.append((s, o.name, o.decompositionSubgraphIndex, bytes(o.compositeAttributes), o.version))
    return out


def _cli_pack(src, dst):
    r = subprocess.run([sys.executable, "-m", "dc_keras.cli", "pack", src, dst], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def check_composite_file(data, tmp_path):
    """pack (API = CLI) keeps the composites and packs the weights of the decomposition subgraphs;
    packed, unpacked and C-unpacked files give the original's outputs bit for bit on every route."""
    packed, _ = _pack(data)
    assert len(packed) * 3 < len(data), (len(data), len(packed))
    src, dst = tmp_path / "m.tflite", tmp_path / "m.packed.tflite"
    src.write_bytes(data)
    said = _cli_pack(str(src), str(dst))
    assert dst.read_bytes() == packed and "x)" in said, said
    before, after = fb.read_model(data), fb.read_model(packed)
    assert _composites(after) == _composites(before) and len(_composites(before)) == 2
    decompositions = {c[2] for c in _composites(before)}
    packed_in = {s for s, _, _ in export._pack.packed_tensors(after)}
    assert decompositions <= packed_in, (decompositions, packed_in)
    assert [s.signatureKey for s in after.signatureDefs] == [b"b1", b"b2"]

    ref = _outputs(_litert(data))
    assert_bit_identical(ref, _outputs(runtime.Interpreter(model_content=packed)))
    assert_bit_identical(ref, _outputs(_with_delegate(packed)))
    assert_bit_identical(ref, _outputs(_litert(export.unpack(packed))))
    assert_bit_identical(ref, _outputs(_litert(runtime.unpack(packed))))
    return packed


def check_int4_blockwise_file(data):
    """INT4 blockwise weights pack and keep their BlockwiseQuantization (block size, scales tensor
    and its bytes); the scales stay raw with the reason that says why; outputs bit-exact."""
    packed, said = _pack(data)
    assert len(packed) < 0.6 * len(data), (len(data), len(packed))
    before, after = fb.read_model(data), fb.read_model(packed)
    blockwise = fb.schema.QuantizationDetails.BlockwiseQuantization
    decoded = {i for _, _, i in export._pack.packed_tensors(after)}
    weights = [(i, t) for i, t in enumerate(before.subgraphs[0].tensors)
               if t.quantization is not None and t.quantization.detailsType == blockwise]
    assert len(weights) == 2
    for i, t in weights:
        t2 = after.subgraphs[0].tensors[i]
        assert t2.type == fb.schema.TensorType.INT4 and i in decoded  # packed, same index
        q, q2 = t.quantization.details, t2.quantization.details
        assert t2.quantization.detailsType == blockwise and (q2.blockSize, q2.scales) == (q.blockSize, q.scales) == (32, q.scales)
        s, s2 = before.subgraphs[0].tensors[q.scales], after.subgraphs[0].tensors[q2.scales]
        assert q.scales not in decoded and fb.tensor_name(s2) == fb.tensor_name(s)
        assert fb.buffer_bytes(after, s2.buffer) == fb.buffer_bytes(before, s.buffer)
        reason = (f"the blockwise quantization scales of tensor {i} '{fb.tensor_name(t)}': the kernel reads it "
                  "through that weight's quantization parameters, not as an operator input, so it stays raw")
        (row,) = [r for r in export.inspect(data).rows if r.name == fb.tensor_name(s)]
        if row.raw_bytes < export.DEFAULT_MIN_BYTES:  # fc2's 128 B of scales: too small to pack anyway
            assert (row.status, row.reason) == ("skipped", f"below min_bytes = {export.DEFAULT_MIN_BYTES}")
        else:
            assert (row.status, row.reason) == ("refused", reason)
            assert any(reason in w for w in said), said
    assert not any("no operator reads it" in w for w in said), said

    nod = _no_default_delegates()
    ref = _outputs(_litert(data, **nod))
    assert_bit_identical(ref, _outputs(runtime.Interpreter(model_content=packed, **nod)))
    assert_bit_identical(ref, _outputs(_with_delegate(packed, **nod)))
    assert_bit_identical(ref, _outputs(_litert(export.unpack(packed), **nod)))
    assert_bit_identical(ref, _outputs(_litert(runtime.unpack(packed), **nod)))
    return packed


def test_composite_two_signatures(tmp_path):
    check_composite_file(_read(COMPOSITE), tmp_path)


def test_composite_on_tensorflows_op_route():
    """decode="op" (HuffDecode runs inside the decomposition subgraphs) against TF's interpreter,
    both without default delegates."""
    tf = pytest.importorskip("tensorflow")
    data = _read(COMPOSITE)
    packed, _ = _pack(data)
    nod = {"experimental_op_resolver_type": tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    ref = _outputs(tf.lite.Interpreter(model_content=data, **nod))
    assert_bit_identical(ref, _outputs(runtime.Interpreter(model_content=packed, backend="tensorflow", decode="op", **nod)))


def test_int4_blockwise_scales_reason_and_bit_exact():
    check_int4_blockwise_file(_read(INT4))


def test_inspect_and_cli_name_the_blockwise_scales(tmp_path):
    """Every ``*_scales`` row of inspect and the CLI's 'not packed' lines give the blockwise reason."""
    rows = [r for r in export.inspect(_read(INT4), min_bytes=0).rows if r.name.endswith("_scales")]
    assert len(rows) == 2 and all(r.reason.startswith("the blockwise quantization scales of tensor ") for r in rows)
    src = tmp_path / "m.tflite"
    src.write_bytes(_read(INT4))
    said = _cli_pack(str(src), str(tmp_path / "p.tflite"))
    assert said.count("the blockwise quantization scales of tensor") == 1 and "no operator reads it" not in said, said


@pytest.mark.long
def test_files_written_again_by_litert_torch(tmp_path):
    """litert-torch's own venv (created once, reused): make_files.py writes both files again, and
    they pass the same checks. Fails with pip's output, never skips, if the venv cannot be made."""
    sys.path.insert(0, os.path.join(os.path.dirname(DATA), "..", "..", "benchmarks"))
    from _venv import litert_torch_venv

    try:
        py = litert_torch_venv()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    out = tmp_path / "files"
    r = subprocess.run([py, os.path.join(DATA, "make_files.py"), str(out)], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_composite_file(_read(COMPOSITE, out), tmp_path)
    check_int4_blockwise_file(_read(INT4, out))


def test_either_runtimes_op_resolver_type_is_taken():
    """``experimental_op_resolver_type`` given as the other runtime's ``OpResolverType`` (the int4
    file needs ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: XNNPACK refuses it) is mapped by name: each
    runtime refused the other's enum with "Unrecognized passed in op resolver type:
    OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES", and ``backend="auto"`` hands a TF user's enum
    to LiteRT."""
    tf = pytest.importorskip("tensorflow")
    from ai_edge_litert.interpreter import OpResolverType as LiteRT

    TF = tf.lite.experimental.OpResolverType
    data = _read(INT4)
    packed, _ = _pack(data)
    ref = _outputs(_litert(data, **_no_default_delegates()))
    for backend, enum in (("litert", TF), ("auto", TF), ("tensorflow", LiteRT)):
        it = runtime.Interpreter(model_content=packed, backend=backend,
                                 experimental_op_resolver_type=enum.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        got = _outputs(it)
        if backend != "tensorflow":  # TF's kernels may round differently from LiteRT's: TF against TF
            assert_bit_identical(ref, got)
        else:
            assert_bit_identical(_outputs(tf.lite.Interpreter(model_content=data,
                                                              experimental_op_resolver_type=TF.BUILTIN_WITHOUT_DEFAULT_DELEGATES)), got)
