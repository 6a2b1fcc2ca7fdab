"""The package's module data flow (train/ -> strip -> export/ -> codec/ -> runtime/ ->
tflite_kernels/): no module imports against it. Every import counts, lazy ones inside functions
too, since a lazy import is still a dependency."""
import ast
import functools
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "dc_keras"
FRAMEWORKS = {"keras", "tensorflow", "tf_keras", "jax", "torch", "tensorflow_model_optimization"}

# unit (first path component under dc_keras/, or a top-level module) -> what it must not import.
# "<x>" is a third-party framework. Units not listed (cli, demo, pipeline, ...) sit on top.
_TOP = {"cli", "demo", "pipeline"}
FORBIDDEN = {
    "train": {"export", "codec", "runtime", "_flatbuffer"} | _TOP,
    "codec": {"train", "export", "runtime", "_flatbuffer", "_compat"} | _TOP | {f"<{f}>" for f in FRAMEWORKS},
    "export": {"runtime"} | _TOP,
    "runtime": {"train", "export", "models", "datasets"} | _TOP | {"<keras>", "<tf_keras>", "<jax>", "<torch>"},
    "_flatbuffer": {"train", "export", "codec", "runtime", "_compat"} | _TOP | {"<keras>", "<jax>", "<torch>"},
    "_native": {"train", "export", "codec", "runtime", "_flatbuffer", "_compat"} | _TOP,
}


def _unit(rel):
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def edges(source, rel):
    """Units (and "<framework>"s) imported by the file at dc_keras/<rel> with this source."""
    pkg = ["dc_keras", *rel.parts[:-1]]  # the package a relative import starts from
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (pkg[: len(pkg) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            base = [b for b in base if b]
            names = [".".join(base + [a.name]) for a in node.names] if base == ["dc_keras"] else [".".join(base)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "dc_keras" and len(parts) > 1:
                out.add(parts[1])
            elif parts[0] in FRAMEWORKS:
                out.add(f"<{parts[0]}>")
    out.discard(_unit(rel))
    return out


@functools.lru_cache(maxsize=None)
def _graph():
    graph = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        graph.setdefault(_unit(rel), set()).update(edges(path.read_text(encoding="utf-8"), rel))
    return graph


def test_scanner_sees_every_import_form():
    rel = pathlib.PurePath("runtime/_x.py")
    src = ("import keras\nfrom dc_keras import _flatbuffer as fb\n"
           "def f():\n    from dc_keras.export import _pack\n    from ..codec import decode\n"
           "    from . import _litert_c\n    import tensorflow.lite\n")
    assert edges(src, rel) == {"<keras>", "_flatbuffer", "export", "codec", "<tensorflow>"}
    assert edges("from .._flatbuffer import schema\n", rel) == {"_flatbuffer"}


def test_real_graph_has_the_expected_edges():
    """The scanner is not vacuous on the real tree: the known forward edges are seen."""
    graph = _graph()
    assert {"codec", "_flatbuffer"} <= graph["export"]
    assert "_flatbuffer" in graph["runtime"] and "_native" in graph["codec"]
    assert "<keras>" in graph["train"]


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_no_import_against_the_data_flow(unit):
    bad = _graph().get(unit, set()) & FORBIDDEN[unit]
    assert not bad, f"dc_keras/{unit} imports {sorted(bad)}: against train -> export -> codec -> runtime"
