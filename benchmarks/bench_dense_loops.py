"""A/B of dc_codec's §5 decode loops on a packed model's tensors (docs/android_design_notes.md,
"The portable loops (what phones run)"): thread CPU time of ``dc_decode`` over every packed tensor
of the file, the arms in random order each round in one process, best / 10th percentile / median
per arm, load average recorded.

Arms: the portable reference loop (``dc_codec_use_simd(0)``, ``dc_codec_portable_fast(0)``), the
portable spread-codebook loop (``dc_codec_use_simd(0)``, ``dc_codec_portable_fast(2)``: what 64-bit
ARM runs; both with the table CRC-32, as on ARM), the library's default (x86-64 with BMI2: the BMI2
spread loop and the carry-less CRC), the table CRC alone, and with ``--baseline`` another build's
default (e.g. the previous commit's library). Every arm's bytes are checked equal first.

    .venv/bin/python benchmarks/bench_dense_loops.py [--model FILE] [--rounds 200] [--baseline LIB]
"""
import argparse
import ctypes
import os
import random
import statistics
import time

import _common

from dc_keras import _flatbuffer as fb
from dc_keras._native import library_path
from dc_keras.export._pack import packed_tensors

DEFAULT_MODEL = os.path.expanduser("~/.cache/dc_keras/bench_runtime/mobilenetv2.packed.tflite")


class _Info(ctypes.Structure):  # dc_tensor_info (dc_codec.h)
    _fields_ = [("version", ctypes.c_uint32), ("dtype", ctypes.c_uint32), ("rank", ctypes.c_uint32),
                ("dims", ctypes.c_uint64 * 8), ("num_elements", ctypes.c_uint64),
                ("element_size", ctypes.c_uint64), ("output_bytes", ctypes.c_uint64),
                ("layout", ctypes.c_uint32), ("element_bits", ctypes.c_uint32)]


def _load(path):
    lib = ctypes.CDLL(path)
    lib.dc_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    lib.dc_peek.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.dc_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    lib.dc_crc32.restype = ctypes.c_uint32
    for name in ("dc_codec_use_simd", "dc_codec_portable_fast"):
        if hasattr(lib, name):
            getattr(lib, name).argtypes = [ctypes.c_int]
    return lib


def _tensors(model_path):
    data = open(model_path, "rb").read()
    m = fb.read_model(data)
    return [bytes(fb.buffer_bytes(m, m.subgraphs[s].tensors[i].buffer)) for s, i, _ in packed_tensors(m)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="packed .tflite (default: MobileNetV2's)")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--library", default=None, help="libdc_huffdecode.so (default: dc_keras's)")
    ap.add_argument("--baseline", default=None, help="another build's libdc_huffdecode.so")
    args = ap.parse_args()
    lib = _load(args.library or library_path())
    blobs = _tensors(args.model)
    outs, sizes = [], []
    for b in blobs:
        info = _Info()
        if lib.dc_peek(b, len(b), ctypes.byref(info)) != 0:
            raise SystemExit("dc_peek failed on a packed tensor")
        outs.append(ctypes.create_string_buffer(info.output_bytes))
        sizes.append(info.output_bytes)

    def decode_all(lb, simd, portable):
        was = lb.dc_codec_use_simd(simd)
        was_p = lb.dc_codec_portable_fast(portable) if portable is not None else None
        try:
            for b, o, n in zip(blobs, outs, sizes):
                st = lb.dc_decode(b, len(b), o, n)
                if st != 0:
                    raise RuntimeError(f"dc_decode: status {st}")
        finally:
            lb.dc_codec_use_simd(was)
            if was_p is not None:
                lb.dc_codec_portable_fast(was_p)

    def crc_only():
        was = lib.dc_codec_use_simd(0)
        for b in blobs:
            lib.dc_crc32(0, b[16:], len(b) - 16)
        lib.dc_codec_use_simd(was)

    arms = {
        "portable reference loop + table CRC": lambda: decode_all(lib, 0, 0),
        "portable spread loop + table CRC": lambda: decode_all(lib, 0, 2),
        "default (x86-64: BMI2 spread + CLMUL CRC)": lambda: decode_all(lib, 1, 1),
        "table CRC-32 alone": crc_only,
    }
    if args.baseline:
        base = _load(args.baseline)
        arms["baseline library's default"] = lambda: decode_all(base, 1, None)
    want = None
    for name, fn in arms.items():
        if "CRC-32 alone" in name:
            continue
        fn()
        got = [bytes(o) for o in outs]
        if want is not None and got != want:
            raise SystemExit(f"{name}: bytes differ")
        want = got
    times = {k: [] for k in arms}
    load = [os.getloadavg()]
    for _ in range(args.rounds):
        for k in random.sample(list(arms), len(arms)):
            c0 = time.thread_time()
            arms[k]()
            times[k].append(time.thread_time() - c0)
    load.append(os.getloadavg())
    _common.log(f"{len(blobs)} tensors, {sum(sizes) / 4e6:.2f} M elements, {args.rounds} rounds, "
                f"load average {load[0][0]:.2f} -> {load[1][0]:.2f}")
    for k, v in times.items():
        v.sort()
        print(f"{k:45s} best {v[0] * 1e3:6.3f} ms  p10 {v[len(v) // 10] * 1e3:6.3f} ms  "
              f"median {statistics.median(v) * 1e3:6.3f} ms")


if __name__ == "__main__":
    main()
