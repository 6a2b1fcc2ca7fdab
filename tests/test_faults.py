"""Failing environments (issue 10, s14 audit): a process out of memory, a file-size limit, a
signal in the middle of a write, a fork between loading and running a model, an interrupted
fit(). Each must end in one clear error naming the problem and the fix (or the right result),
never a crash, a hang or a silent wrong result, and nothing the user had may be lost: no
partial or temporary file left next to the output, inputs untouched.

What other files already cover is not repeated here: atomic writes, umask and modes
(test_fileio.py, test_c_tools.py), disk full and read-only outputs (test_cli_errors.py),
hostile sizes (test_reliability.py), corrupt models (test_corruption.py), SIGKILL + resume
(test_training_faults.py, test_multi_worker.py).
"""
import os
import resource
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "tflite_kernels", "build")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)


def _child(code, *args, timeout=300, **kw):
    """Runs ``code`` in a fresh Python (dc_keras of this checkout) with ``args``."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ENV, **kw)


@pytest.fixture(scope="module")
def big_packed(tmp_path_factory):
    """A packed model whose two 2048x2048 float kernels decode to 16 MiB each (a 4 MiB kernel
    beside them), written to a file: (path, input, the unpacked model's output)."""
    import keras

    from ai_edge_litert.interpreter import Interpreter

    from dc_keras import export

    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input((512,)), keras.layers.Dense(2048, name="a"),
                          keras.layers.Dense(2048, name="b"), keras.layers.Dense(2048, name="c")])
    for layer in m.layers:
        k, b = layer.get_weights()
        k[np.abs(k) < np.quantile(np.abs(k), 0.9)] = 0
        layer.set_weights([np.round(k * 64) / 64, b])
    plain = export.to_tflite(m, pack=False)
    path = tmp_path_factory.mktemp("big") / "big.packed.tflite"
    path.write_bytes(export.pack(plain))
    x = np.random.RandomState(0).rand(1, 512).astype(np.float32)
    ref = Interpreter(model_content=plain)
    ref.allocate_tensors()
    ref.set_tensor(ref.get_input_details()[0]["index"], x)
    ref.invoke()
    return path, x, ref.get_tensor(ref.get_output_details()[0]["index"])


# ------------------------------------------------------------------------------------------
# memory: a low RLIMIT_AS while loading a large packed model
# ------------------------------------------------------------------------------------------
_LOW_MEMORY = """
    import resource, sys
    import numpy as np
    from dc_keras import runtime
    path, extra_mib = sys.argv[1], int(sys.argv[2])
    small = runtime.Interpreter(model_content=open(path.replace("big.packed", "small.packed"), "rb").read())
    small.allocate_tensors()  # everything imported and initialised first
    size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (extra_mib << 20),) * 2)
    try:
        it = runtime.Interpreter(model_path=path)
        it.allocate_tensors()
        print("LOADED")
    except (RuntimeError, MemoryError) as exc:
        print("ERROR", " ".join(str(exc).split()))
"""


def test_out_of_memory_while_decoding_says_out_of_memory(big_packed, tmp_path):
    """A process that cannot get the 16 MiB a decoded weight needs (RLIMIT_AS 8 MiB above what it
    uses): the delegate said 'decoding failed: invalid argument (NULL pointer)' (its out-of-memory
    check compared the failed allocation, NULL, with the absent arena block, NULL, and handed the
    decoder a NULL output); now 'out of memory' with the size and the fix, and no crash."""
    import shutil

    from dc_keras import export

    path, _, _ = big_packed
    work = tmp_path / "big.packed.tflite"
    shutil.copy(path, work)
    import _export_models as em

    (tmp_path / "small.packed.tflite").write_bytes(export.pack(em.tflite("dense", None)))
    r = _child(_LOW_MEMORY, work, 8)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR"), r.stdout
    assert "NULL pointer" not in line, line
    assert "out of memory" in line and "memory limit" in line, line
