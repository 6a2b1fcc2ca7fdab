"""Runs .tflite models with the PyPI tflite-micro wheel's interpreter (inside the TFLM venv).

    python tflm_run.py --lib libdc_huffdecode_tflm.so --model m.tflite --input x.npy --out y.npy
                       [--registerer DcKerasRegisterHuffDecodeTflm] [--arena BYTES] [--min-arena]

Each row of x.npy is one inference (batch 1, like a microcontroller).  With --min-arena it also
finds the smallest arena the model runs in (bisection over construct + invoke, 16-byte steps) and
prints it as JSON.  Our library is loaded with RTLD_GLOBAL before the interpreter is built: the
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


def make(model, registerers, arena):
    from tflite_micro import runtime

    with _quiet():
        return runtime.Interpreter.from_bytes(model, custom_op_registerers=registerers, arena_size=arena)


def run(model, registerers, x, arena):
    interp = make(model, registerers, arena)
    outs = []
    for row in x:
        interp.set_input(row[None, ...], 0)
        with _quiet():
            interp.invoke()
        outs.append(np.array(interp.get_output(0))[0])
    return np.stack(outs)


def min_arena(model, registerers, x, hi):
    def ok(n):
        try:
            run(model, registerers, x[:1], n)
            return True
        except (RuntimeError, ValueError):
            return False

    if not ok(hi):
        raise SystemExit(f"the model does not run in an arena of {hi} bytes")
    lo = 0
    while hi - lo > 16:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--registerer", action="append", default=None)
    ap.add_argument("--arena", type=int, default=None)
    ap.add_argument("--min-arena", action="store_true")
    a = ap.parse_args(argv)
    load_library(a.lib)
    with open(a.model, "rb") as f:
        model = f.read()
    regs = a.registerer if a.registerer is not None else ["DcKerasRegisterHuffDecodeTflm"]
    x = np.load(a.input)
    arena = a.arena or max(64 << 10, 4 * len(model) + (4 << 20))
    y = run(model, regs, x, arena)
    tmp = a.out + ".tmp.npy"
    np.save(tmp, y)
    os.replace(tmp, a.out)
    info = {"outputs": int(len(y))}
    if a.min_arena:
        info["min_arena_bytes"] = min_arena(model, regs, x, arena)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
