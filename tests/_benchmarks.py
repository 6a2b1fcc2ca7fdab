"""benchmarks/ scripts loaded by path for the tests, as they run (``python benchmarks/NAME.py``:
benchmarks/ on sys.path while they import, for _common, _venv and the like)."""
import importlib.util
import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def load(name):
    """benchmarks/``name``.py as a module (not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", os.path.join(BENCH, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, BENCH)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(BENCH)
    return module
