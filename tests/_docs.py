"""What the documentation shows a user, extracted for tests/test_docs.py and tests/test_backends.py:
the fenced code blocks of README.md and docs/*.md, their placeholders and the names they leave
undefined.

Convention for Python blocks: a block runs as written, or it is an excerpt whose inputs are
placeholder lines ``name = ...  # what it is`` (``x, y = ...`` for several). The tests replace a
placeholder line by tiny values and run the block; every other name the block reads must be
defined in it (imported or assigned), so a missing import is an error even in a block the tests
cannot run.
"""
import ast
import builtins
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATED = {"docs/results.md"}  # written by benchmarks/results_doc.py, never by hand


def doc_files(include_generated=False):
    """README.md and docs/*.md, as paths relative to the repository root."""
    docs = sorted("docs/" + f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    return ["README.md"] + [d for d in docs if include_generated or d not in GENERATED]


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def blocks(rel, lang=None):
    """``(lang, line, code)`` of each fenced block of ``rel`` (``line``: 1-based line of the opening fence)."""
    out, inside = [], None
    for n, line in enumerate(read(rel).splitlines(), 1):
        m = re.match(r"^(\s*)```+\s*([\w+-]*)\s*$", line)
        if m and inside is None:
            inside, start, body, indent = m.group(2).lower(), n, [], len(m.group(1))
        elif m and inside is not None:
            out.append((inside, start, "\n".join(body) + "\n"))
            inside = None
        elif inside is not None:
            body.append(line[indent:] if line[:indent].isspace() else line)
    assert inside is None, f"{rel}: unclosed code fence opened at line {start}"
    return [b for b in out if lang is None or b[0] == lang]


def placeholders(code):
    """``{line number (0-based): [names]}`` of the ``name = ...`` lines of a Python block."""
    found = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is Ellipsis:
            names = []
            for target in node.targets:
                elts = target.elts if isinstance(target, ast.Tuple) else [target]
                names += [e.id for e in elts]
            found[node.lineno - 1] = names
    return found


def fill(code, values):
    """``code`` with each placeholder line replaced by ``values[names]`` (keyed by the names, joined
    with ", "), indented like the line; a placeholder without a value raises KeyError."""
    lines = code.splitlines()
    for i, names in sorted(placeholders(code).items(), reverse=True):
        key = ", ".join(names)
        if key not in values:
            raise KeyError(f"no value for the placeholder `{key} = ...`")
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = "\n".join(indent + v for v in values[key].strip("\n").splitlines())
    return "\n".join(lines) + "\n"


def undefined_names(code):
    """Names a Python block reads but never binds (imports, assignments, defs, loop and with
    targets, function arguments, placeholders), minus builtins: what a user would have to bring."""
    tree = ast.parse(code)
    bound, read_ = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read_ if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return sorted(read_ - bound)


def texts(include_generated=True, notebooks=True):
    """``{path: text}`` of the documentation a user reads: README.md, docs/*.md and, with
    ``notebooks``, every cell of examples/*.ipynb."""
    import glob
    import json

    out = {d: read(d) for d in doc_files(include_generated)}
    if notebooks:
        for nb in sorted(glob.glob(os.path.join(ROOT, "examples", "*.ipynb"))):
            with open(nb, encoding="utf-8") as f:
                cells = json.load(f)["cells"]
            out[os.path.relpath(nb, ROOT)] = "\n".join("".join(c["source"]) for c in cells)
    return out


def prose(path, text):
    """``text`` without its fenced code blocks (markdown; a notebook's text is returned as is): the
    text whose inline code spans can be paired. Left in, a fence's three backticks shift every
    later span by one, so that code in spans after it was read as prose and prose as code."""
    return re.sub(r"^[ \t]*```.*?^[ \t]*```[^\n]*$", "", text, flags=re.S | re.M) if path.endswith(".md") else text


def spans(path, text, multiline=True):
    """The inline code spans of ``text`` (outside fenced blocks); ``multiline``: a span may wrap."""
    return re.findall(r"`([^`]+)`" if multiline else r"`([^`\n]+)`", prose(path, text))


def command_lines(path, text):
    """Command lines shown in ``text``: inline code spans (a span may wrap onto a second line), lines
    of sh/bash/console blocks, and notebook `!` lines; comments removed, whitespace collapsed."""
    spans = [re.sub(r"\s+", " ", s) for s in re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", prose(path, text))]
    if path.endswith(".md"):
        for lang, _, code in blocks(path):
            if lang in ("sh", "bash", "console", "shell"):
                spans += code.replace("\\\n", " ").splitlines()
    spans += [line.strip().lstrip("!") for line in text.splitlines() if line.strip().startswith("!")]
    return [re.sub(r"\s+#.*$", "", s).strip() for s in spans if s.strip()]
