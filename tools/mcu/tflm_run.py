"""Runs .tflite models with the PyPI tflite-micro wheel's interpreter (inside the TFLM venv).

    python tflm_run.py --lib libdc_huffdecode_tflm.so --model m.tflite --input x.npy --out y.npy
                       [--registerer DcKerasRegisterHuffDecodeTflm] [--arena BYTES] [--arena-usage]
    python tflm_run.py --lib ... --jobs jobs.json      # many runs in one process (JSON list of
        {"model", "input", "out", "registerers", "arena_usage", "lut_out"}; prints a JSON list of
         results, each with "ok", "error" and the C-level "log" of that job)

Each row of x.npy is one inference (batch 1, like a microcontroller); a model that fails to load
(a kernel's Prepare: TFLM's log on stderr says why) or to run ends in one line naming the stage
(exit status 1).  With --arena-usage it
also prints the arena bytes used (TFLM's recording allocator) as JSON.  Our library is loaded with RTLD_GLOBAL before the interpreter is built: the
wheel finds registerers with dlsym(RTLD_DEFAULT, name).
"""
import argparse
import contextlib
import ctypes
import json
import os
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


@contextlib.contextmanager
def _quiet():
    """The wheel prints to the C stdout/stderr; keep our stdout for JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def load_library(path):
    lib = ctypes.CDLL(os.path.abspath(path), mode=ctypes.RTLD_GLOBAL)
    lib.DcKerasTflmWheelVersion.restype = ctypes.c_char_p
    import importlib.metadata as md

    want, have = lib.DcKerasTflmWheelVersion().decode(), md.version("tflite-micro")
    if have != want:
        raise SystemExit(f"tflite-micro {have} is installed but {path} is built for "
                         f"tflite-micro=={want}: install that version (tools/mcu/tflm_env.py)")
    return lib


def _tflm_runtime():
    """``tflite_micro.runtime``, imported without importing TensorFlow. Its flatbuffer_utils
    imports TensorFlow for two names: schema_util calls ``all_util.remove_undocumented`` on itself
    (which only deletes the module's other names) and ``gfile`` reads and writes model files (the
    interpreter built from bytes never does). That import was most of a tflm_run process: ~6.7 of
    its CPU seconds (the tests start ~30 of them). Stand-ins of those modules take TensorFlow's
    place while the runtime is imported, then leave sys.modules: ``remove_undocumented`` does
    nothing, and the ``gfile`` stand-in imports the real one at its first use; a later ``import
    tensorflow`` (TFLM's compression tools) gets the real TensorFlow. Where TensorFlow is already
    imported, it is used as it is."""
    import importlib
    import types

    if "tensorflow" in sys.modules:
        from tflite_micro import runtime

        return runtime
    names = ["tensorflow", "tensorflow.python", "tensorflow.python.util", "tensorflow.python.util.all_util",
             "tensorflow.python.platform", "tensorflow.python.platform.gfile"]
    stand_in = {n: types.ModuleType(n) for n in names}
    stand_in["tensorflow.python.util.all_util"].remove_undocumented = lambda *_, **__: None
    stand_in["tensorflow.python.platform.gfile"].__getattr__ = lambda attr: getattr(
        importlib.import_module("tensorflow.python.platform.gfile"), attr)
    for n in names[1:]:
        parent, _, child = n.rpartition(".")
        setattr(stand_in[parent], child, stand_in[n])
    sys.modules.update(stand_in)
    try:
        from tflite_micro import runtime

        return runtime
    finally:
        for n in names:
            if sys.modules.get(n) is stand_in[n]:
                del sys.modules[n]


def make(model, registerers, arena):
    runtime = _tflm_runtime()

    with _quiet():
        return runtime.Interpreter.from_bytes(model, custom_op_registerers=registerers, arena_size=arena)


def run(model, registerers, x, arena, res=None):
    """Outputs for every row of ``x``; ``res["stage"]`` (if given) says how far it got: "load"
    (the interpreter's construction, TFLM's AllocateTensors: every op's Prepare), then "invoke"."""
    res = {} if res is None else res
    res["stage"] = "load"
    interp = make(model, registerers, arena)
    res["stage"] = "invoke"
    outs = []
    for row in x:
        interp.set_input(row[None, ...], 0)
        with _quiet():
            interp.invoke()
        outs.append(np.array(interp.get_output(0))[0])
    return np.stack(outs)


def arena_usage(model, registerers, x, arena):
    """Arena bytes the model uses (total, head = planned tensors + scratch, tail = persistent),
    from TFLM's RecordingMicroAllocator after one invoke.  (Bisecting the arena size instead
    is unsafe: the wheel's interpreter can crash on a too-small arena.)"""
    import re
    import tempfile

    interp = make(model, registerers, arena)
    interp.set_input(x[:1], 0)
    with _quiet():
        interp.invoke()
    with tempfile.NamedTemporaryFile(prefix="tflm_alloc", delete=False) as f:
        path = f.name
    with _capture_fd2(path):
        interp.print_allocations()
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise RuntimeError(f"no arena {key} in the allocator's report:\n{text[-2000:]}")
        out[f"arena_{key}_bytes"] = int(m.group(1))
    return out


@contextlib.contextmanager
def _capture_fd2(path):
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def lut_compress(model):
    """TFLM's own compression (tflite_micro.compression, LUT): every constant tensor of >= 1000
    elements that it accepts, at the smallest index bit width that holds its values."""
    import importlib

    # (the package's `compress` attribute is the function; the module holds the helpers)
    tc = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.compress")
    spec = importlib.import_module("tflite_micro.tensorflow.lite.micro.compression.spec")

    facade = tc.model_facade.read(model)
    specs, skipped = [], []
    for sg in facade.subgraphs:
        for t in sg.tensors:
            try:
                arr = t.array
            except (TypeError, AttributeError, ValueError):  # no constant data
                continue
            if arr is None or arr.size < 1000:
                continue
            try:
                axis = tc._identify_compression_axis(t)
            except tc.CompressionError as e:
                skipped.append(f"{t.index}: {e}")
                continue
            need = tc._lut_compress_array(arr, axis).index_bitwidth
            specs.append(spec.Tensor(subgraph=sg.index, tensor=t.index,
                                     compression=[spec.LookUpTableCompression(index_bitwidth=need)]))
    with _quiet():
        out = bytes(tc.compress(model, specs)) if specs else bytes(model)
    return out, len(specs), skipped


def run_jobs(jobs):
    import tempfile

    results = []
    for job in jobs:
        res = {"ok": False, "error": None, "log": ""}
        with tempfile.NamedTemporaryFile(prefix="tflm_log", delete=False) as f:
            log = f.name
        try:
            with _capture_fd2(log):
                with open(job["model"], "rb") as f:
                    model = f.read()
                if job.get("lut_out"):
                    model, res["lut_tensors"], res["lut_skipped"] = lut_compress(model)
                    with open(job["lut_out"] + ".tmp", "wb") as f:
                        f.write(model)
                    os.replace(job["lut_out"] + ".tmp", job["lut_out"])
                    res["bytes"] = len(model)
                regs = job.get("registerers", ["DcKerasRegisterHuffDecodeTflm"])
                arena = job.get("arena") or max(64 << 10, 4 * len(model) + (4 << 20))
                if job.get("input"):
                    y = run(model, regs, np.load(job["input"]), arena, res)
                    np.save(job["out"], y)
                if job.get("arena_usage"):
                    res.update(arena_usage(model, regs, np.load(job["input"]), arena))
                res["ok"] = True
        except (RuntimeError, ValueError, SystemExit, Exception) as e:  # reported per job
            res["error"] = f"{type(e).__name__}: {e}"
        with open(log, errors="replace") as f:
            res["log"] = f.read()[-4000:]
        os.unlink(log)
        results.append(res)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--jobs")
    ap.add_argument("--model")
    ap.add_argument("--input")
    ap.add_argument("--out")
    ap.add_argument("--registerer", action="append", default=None)
    ap.add_argument("--arena", type=int, default=None)
    ap.add_argument("--arena-usage", action="store_true")
    a = ap.parse_args(argv)
    if not a.jobs and not (a.model and a.input and a.out):
        ap.error("--model, --input and --out are needed (or --jobs)")
    load_library(a.lib)
    if a.jobs:
        with open(a.jobs) as f:
            print(json.dumps(run_jobs(json.load(f))))
        return
    with open(a.model, "rb") as f:
        model = f.read()
    regs = a.registerer if a.registerer is not None else ["DcKerasRegisterHuffDecodeTflm"]
    x = np.load(a.input)
    arena = a.arena or max(64 << 10, 4 * len(model) + (4 << 20))
    res = {}
    try:
        y = run(model, regs, x, arena, res)
    except (RuntimeError, ValueError) as e:  # one line, after TFLM's own log on stderr
        if res.get("stage") == "load":
            where = "to load (TFLM's AllocateTensors: every op's Prepare; TFLM's log above says why)"
        else:
            where = (f"at an invoke ({a.input}: {x.dtype} rows of shape {list(x.shape[1:])}, one per "
                     "inference, which must have the type and shape of the model's input 0)")
        raise SystemExit(f"tflm_run.py: {a.model} failed {where}: {type(e).__name__}: {e}") from None
    tmp = a.out + ".tmp.npy"
    np.save(tmp, y)
    os.replace(tmp, a.out)
    info = {"outputs": int(len(y))}
    if a.arena_usage:
        info.update(arena_usage(model, regs, x, arena))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
