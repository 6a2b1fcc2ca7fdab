"""Session 56's review of the runtime (helper-222): a ``.tflite`` whose weights are not in the file.

TF 2.21's ``TFLiteConverter.from_concrete_functions([fn], model)`` of a Keras 3 model writes the
weights as resource variables (``VAR_HANDLE`` ops) that no ``ASSIGN_VARIABLE`` op assigns.
``dc_keras.export.pack`` warns since session 55 (tests/test_packing_review_s55.py);
``dc_keras.runtime.Interpreter`` ran such a Dense model on uninitialized memory (NaN / inf /
arbitrary outputs) without a word, and an LSTM failed at its first ``invoke()`` with TFLite's
"variable != nullptr was not true". It now warns at construction, in pack's words."""
import warnings

import numpy as np
import pytest

import _export_models as em
from dc_keras import _flatbuffer as fb
from dc_keras import export, runtime

WEIGHTS_MISSING = "resource variable(s) (VAR_HANDLE ops) that no operator assigns"


_weightless, _stateful = em.weightless_tflite, em.stateful_tflite


def _ours(caught):
    return [w for w in caught if WEIGHTS_MISSING in str(w.message)]


@pytest.mark.parametrize("backend", runtime.available_backends())
def test_a_file_without_its_weights_warns_at_construction_in_packs_words(tmp_path, backend):
    """One UserWarning when the interpreter is made, naming the file (or model_content), the problem
    and the fix, worded as pack's (the same note: ``_flatbuffer.unassigned_variables_note``),
    pointing at the caller's line. The model still loads: the warning does not refuse it."""
    plain = _weightless("dense")
    path = tmp_path / "weightless.tflite"
    path.write_bytes(plain)
    with pytest.warns(UserWarning, match=r"^pack: the model reads 4 resource variable") as packed:
        export.pack(plain)
    note = str(_ours(packed)[0].message).removeprefix("pack: ")
    assert note == fb.unassigned_variables_note(4)
    assert 'model.export(path, format="litert")' in note and "dc_keras.export.to_tflite(model)" in note
    for kwargs, label in (({"model_path": str(path)}, str(path)), ({"model_content": plain}, "model_content")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            it = runtime.Interpreter(backend=backend, **kwargs)
        ours = _ours(caught)
        assert [str(w.message) for w in ours] == [f"{label}: {note}"], [str(w.message) for w in caught]
        assert ours[0].category is UserWarning and ours[0].filename == __file__
        it.allocate_tensors()  # it runs (on memory nothing wrote): only the warning says so
        it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 16), np.float32))
        it.invoke()


@pytest.mark.parametrize("backend", runtime.available_backends())
def test_an_lstm_without_its_weights_is_named_before_and_when_its_invoke_fails(backend):
    """The LSTM's file failed only at the first invoke(), in TFLite's words alone (READ_VARIABLE
    "variable != nullptr was not true", node numbers): the warning at construction says why, before
    that, and the error says it too, with the fix, TFLite's words kept; so does a signature runner's."""
    plain = _weightless("lstm")
    note = fb.unassigned_variables_note(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = runtime.Interpreter(model_content=plain, backend=backend)
    assert [str(w.message) for w in _ours(caught)] == [f"model_content: {note}"]
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 5, 3), np.float32))
    with pytest.raises(RuntimeError) as err:
        it.invoke()
    text = str(err.value)
    assert text.startswith(f"model_content: {note}; TFLite's error: ") and "variable != nullptr" in text, text
    (key,) = it.get_signature_list()  # a model converted from one concrete function: one signature
    run = it.get_signature_runner(key)
    (name,) = run.get_input_details()
    with pytest.raises(RuntimeError, match=r"^model_content: the model reads 3 resource variable.*READ_VARIABLE"):
        run(**{name: np.ones((1, 5, 3), np.float32)})


def test_no_warning_for_files_with_their_weights():
    """Ordinary files (float, int8, packed) and a stateful model whose variable an ASSIGN_VARIABLE
    op gives a value get no such warning."""
    files = {"dense": em.tflite("dense", None), "dense int8": em.tflite("dense", "int8"),
             "packed": export.pack(em.tflite("dense", None), min_bytes=64), "stateful": _stateful()}
    assert fb.unassigned_variables(fb.read_model(files["stateful"])) == 0
    assert runtime._VAR_HANDLE in runtime._builtin_codes(files["stateful"])  # so the full check ran and said no
    for name, data in files.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runtime.Interpreter(model_content=data).allocate_tensors()
        assert not _ours(caught), (name, [str(w.message) for w in caught])


def _rewritten(data, change):
    model = fb.read_model(data)
    for code in model.operatorCodes:
        change(code)
    return fb.write_model(model)


def _old_style(code):  # a file from before builtin_code: only the 8-bit deprecated_builtin_code
    if code.builtinCode < 127:
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0


def _new_only(code):  # deprecated_builtin_code left 0 (absent from the table)
    code.deprecatedBuiltinCode = 0


def test_the_schema_free_reader_of_operator_codes_agrees_with_the_schema():
    """The load path looks for VAR_HANDLE without the schema module (~25 ms to import; test_runtime's
    test_loading_a_good_model_does_not_import_the_schema_module): its hand-written read of the operator
    codes gives the schema module's builtin codes on every kind of file, fields present or absent,
    and nothing (not an exception) for bytes whose offsets point outside them."""
    from dc_keras._flatbuffer import schema

    assert runtime._VAR_HANDLE == schema.BuiltinOperator.VAR_HANDLE
    dense = em.tflite("dense", None)
    files = [dense, em.tflite("conv", "int8"), export.pack(dense, min_bytes=64), _weightless("dense"),
             _weightless("lstm"), _stateful(), _rewritten(dense, _old_style), _rewritten(_weightless("lstm"), _new_only)]
    for i, data in enumerate(files):
        want = [fb.builtin_code(c) for c in fb.read_model(data).operatorCodes]
        assert runtime._builtin_codes(data) == want, i
        assert want and (i < 6 or any(c.builtinCode == 0 or c.deprecatedBuiltinCode == 0
                                      for c in fb.read_model(data).operatorCodes)), i
    for cut in (b"", dense[:8], dense[:64], b"\xff" * 64):
        assert runtime._builtin_codes(cut) == []


def test_compiled_model_warns_for_a_file_without_its_weights_too():
    """LiteRT's CompiledModel ran the same file to NaN outputs without a word; ``compiled_model``
    warns as the Interpreter does, once, at the caller's line, and not for a file with its weights."""
    pytest.importorskip("ai_edge_litert.compiled_model", reason="a LiteRT with CompiledModel (ai-edge-litert >= 2)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.compiled_model(model_content=_weightless("dense"))
        runtime.compiled_model(model_content=export.pack(em.tflite("dense", None), min_bytes=64))
    ours = _ours(caught)
    assert [str(w.message) for w in ours] == [f"model_content: {fb.unassigned_variables_note(4)}"], \
        [str(w.message) for w in caught]
    assert ours[0].filename == __file__


def test_make_lint_reads_the_notebooks():
    """The Colab notebooks (examples/*.ipynb) were excluded from ruff (pyproject.toml's
    extend-exclude: "executed, and so checked, by the tests"), which left unused imports and one-line
    multiple imports in all four. ``make lint``'s ``ruff check .`` now reads every notebook (ruff
    parses .ipynb natively) with the same rules, and finds nothing in them."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    examples = os.path.join(root, "examples")
    notebooks = sorted(os.path.join(examples, n) for n in os.listdir(examples) if n.endswith(".ipynb"))
    assert len(notebooks) >= 4
    shown = subprocess.run([sys.executable, "-m", "ruff", "check", "--show-files", "."], cwd=root,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert set(notebooks) <= {os.path.realpath(p) for p in shown} | set(shown), shown[-5:]
    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *notebooks],
                           cwd=root, capture_output=True, text=True)
    assert found.returncode == 0, found.stdout + found.stderr


def test_inspect_says_the_weights_are_not_in_the_file():
    """``dc-keras inspect`` of such a file listed no constant and said nothing else (pack and the
    runtime warn); its report now counts the unassigned variables and its text says pack's note. A
    normal file: 0, no such line."""
    report = export.inspect(_weightless("dense"))
    assert report.unassigned_variables == 4 and not report.rows
    assert f"note: the model reads 4 {WEIGHTS_MISSING}: its weights are not in the file" in str(report)
    plain = export.inspect(em.tflite("dense", None))
    assert plain.unassigned_variables == 0 and WEIGHTS_MISSING not in str(plain)
