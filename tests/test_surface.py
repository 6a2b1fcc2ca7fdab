"""The public surface (issue 18): ``dir(dc_keras)`` is the one table in dc_keras/__init__.py, and
``ShiftedBatches`` is one class (isinstance works) that does not import Keras until used."""
import importlib
import pkgutil
import subprocess
import sys
import types

import numpy as np

import dc_keras


def _public(names):
    return {n for n in names if not n.startswith("_")}


def test_dir_and_all_are_the_table():
    table = dc_keras._PUBLIC_API
    assert _public(dir(dc_keras)) == set(table) == set(dc_keras.__all__)
    for name, where in table.items():
        value = getattr(dc_keras, name)
        if where == f"dc_keras.{name}":
            assert isinstance(value, types.ModuleType) and value.__name__ == where
        else:
            assert value is getattr(importlib.import_module(where), name)


def test_no_public_name_outside_the_table_after_importing_everything():
    """Importing every submodule (which binds them on the package) adds no unlisted public name."""
    for info in pkgutil.walk_packages(dc_keras.__path__, "dc_keras."):
        if not info.name.startswith("dc_keras._native."):  # the C library, not a Python module
            importlib.import_module(info.name)
    assert _public(vars(dc_keras)) <= set(dc_keras._PUBLIC_API), _public(vars(dc_keras)) - set(dc_keras._PUBLIC_API)
    assert _public(dir(dc_keras)) == set(dc_keras._PUBLIC_API)


def test_unknown_attribute_is_an_attribute_error():
    try:
        dc_keras.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("dc_keras.no_such_thing did not raise")


def test_shifted_batches_is_one_class():
    from dc_keras import datasets

    x, y = np.zeros((10, 28, 28), np.uint8), np.arange(10)
    a = datasets.ShiftedBatches(x, y, batch_size=4, seed=0)
    b = datasets.ShiftedBatches(x, y, batch_size=3, seed=1)
    from dc_keras.datasets import ShiftedBatches

    assert type(a) is type(b) is ShiftedBatches is datasets.ShiftedBatches
    assert isinstance(a, ShiftedBatches)
    import keras

    assert isinstance(a, keras.utils.PyDataset)
    assert len(a) == 3 and len(b) == 4
    xb, yb = a[0]
    assert xb.shape == (4, 28, 28) and len(yb) == 4


def test_datasets_import_does_not_import_keras():
    code = ("import sys, dc_keras.datasets as d\n"
            "assert 'keras' not in sys.modules\n"
            "d.mnist, d.normalize\n"
            "assert 'keras' not in sys.modules\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
