"""Sizes of docs/FORMAT.md §17's integer planes (layout 6) against the alternatives its text says were
not kept: sizes only, deterministic -> docs/results/format_int_planes.json.

    .venv/bin/python benchmarks/int_planes_sizes.py --json docs/results/format_int_planes.json

Tensors: the biases of §17's table (the int16x8 model's hidden int64 bias with unclustered weights and
the per-channel int8 CNN's int32 dense-layer bias, built by tests/test_export_v3_types.py /
tests/test_export_v4_ints.py as benchmarks/int_biases.py does) and three made here with seed 0: a
sorted int64 index table (4096 draws from 0..9999), int32 over +-2^20 (1024 x 1024: bench_scale's
``i32_wide``, its own seed 0) and uniformly random int32 (4096). For each: raw bytes, ``codec.encode`` with the layouts
before §17 (best of 0-5) and with layout 6 alone (the predictor it chose), and layout 6's size
computed here for other choices, from the same class counts and Huffman code builder as the encoder:
  - base 0 and base = the minimum instead of the median (predictor 0);
  - a class alphabet of sign x bit length of |d| (2W + 1 symbols: 0, then +b / -b for b = 1..W, the
    b - 1 bits of |d| below its leading one raw), best of the two predictors as layout 6 takes.
The computed size of layout 6 with the encoder's own choice is checked against ``codec.encode``'s
bytes, so the alternatives are sized by the same rules (header, descriptor §4, four streams §7).
"""
import os
import warnings

import numpy as np

from _common import child_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


def _unsigned(a):
    return a.view(f"u{a.dtype.itemsize}")


def _stream_bytes(per_element_bits):
    """§7: element i in stream i mod 4; each stream rounded up to whole bytes."""
    return sum(-(-int(per_element_bits[s::4].sum()) // 8) for s in range(4))


def _residuals(a, predictor, base):
    from dc_keras.codec._int_planes import residuals

    bits = _unsigned(a)
    return residuals(bits, 0, len(bits), 1, base, predictor)  # zigzagged, W-bit


def planes_size(a, predictor, base, limit):
    """§17's size of ``a`` (flattened) with this predictor and base (bit pattern)."""
    from dc_keras.codec._encode import _Code
    from dc_keras.codec._int_planes import bit_length

    w = 8 * a.dtype.itemsize
    cls = bit_length(_residuals(a, predictor, base)).astype(np.int64)
    code = _Code(np.bincount(cls, minlength=w + 1), limit)
    per = code.lengths.astype(np.int64)[cls] + np.maximum(cls - 1, 0)
    return 1 + a.dtype.itemsize + code.descriptor_size() + 16 + _stream_bytes(per)


def sign_length_size(a, predictor, base, limit):
    """The same with the class alphabet sign x bit length of |d| (the alternative not kept)."""
    from dc_keras.codec._encode import _Code
    from dc_keras.codec._int_planes import bit_length

    w = 8 * a.dtype.itemsize
    z = _residuals(a, predictor, base)
    neg = (z & z.dtype.type(1)).astype(bool)  # zigzag: odd z <=> d < 0, |d| = (z + 1) >> 1
    mag = (z >> z.dtype.type(1)) + neg.astype(z.dtype)
    b = bit_length(mag).astype(np.int64)  # |d| = 2^(W-1) (d = INT_MIN) has b = W
    sym = np.where(b == 0, 0, 2 * b - 1 + neg)
    code = _Code(np.bincount(sym, minlength=2 * w + 1), limit)
    per = code.lengths.astype(np.int64)[sym] + np.maximum(b - 1, 0)
    return 1 + a.dtype.itemsize + code.descriptor_size() + 16 + _stream_bytes(per)


def row(label, a):
    from dc_keras import codec
    from dc_keras.codec._format import _NUMPY_CODES, MAX_CODE_LENGTH
    from dc_keras.codec._int_planes import PREDICT_BASE, PREDICT_PREVIOUS, _median_bits
    from test_export_v4_ints import OLD_LAYOUTS

    tensor = np.ascontiguousarray(a)
    a = tensor.reshape(-1)  # layout 6 codes the elements in C order
    info = codec.info(packed := codec.encode(tensor, layouts=("int_planes",)))
    header = 12 + 4 * tensor.ndim  # §2's header, as codec.encode writes it
    median = _median_bits(_unsigned(a), _NUMPY_CODES[a.dtype])
    first = int(_unsigned(a)[0])
    sizes = {"median": planes_size(a, PREDICT_BASE, median, MAX_CODE_LENGTH),
             "previous": planes_size(a, PREDICT_PREVIOUS, first, MAX_CODE_LENGTH)}
    chosen = min(sizes, key=sizes.get)  # the base predictor wins ties, as the encoder's
    if len(packed) - header != sizes[chosen]:
        raise SystemExit(f"{label}: computed {sizes} + {header} B header, codec.encode wrote {len(packed)} B ({info})")
    mask = (1 << (8 * a.dtype.itemsize)) - 1
    sign = min(sign_length_size(a, PREDICT_BASE, median, MAX_CODE_LENGTH),
               sign_length_size(a, PREDICT_PREVIOUS, first, MAX_CODE_LENGTH))
    try:
        old = len(codec.encode(tensor, layouts=OLD_LAYOUTS))
    except ValueError:  # no older layout holds it (more than 4096 distinct values, not float)
        old = None
    r = {"tensor": label, "dtype": a.dtype.name, "shape": list(tensor.shape), "raw_bytes": int(a.nbytes),
         "best_old_layouts_bytes": old, "int_planes_bytes": len(packed),
         "int_planes_predictor": "previous" if chosen == "previous" else "base",
         "old_layouts_layout": codec.info(codec.encode(tensor, layouts=OLD_LAYOUTS))["layout"] if old else None,
         "default_encode_bytes": len(codec.encode(tensor)),  # pack keeps a tensor raw unless smaller
         "base_zero_bytes": header + planes_size(a, PREDICT_BASE, 0, MAX_CODE_LENGTH),
         "base_min_bytes": header + planes_size(a, PREDICT_BASE, int(a.min()) & mask, MAX_CODE_LENGTH),
         "sign_length_alphabet_bytes": header + sign}
    print(r, flush=True)
    return r


def measure():
    """In the child (tests/ on PYTHONPATH): every row (child_main writes them)."""
    from bench_scale import codec_tensor
    from test_export_v3_types import _constants, int16x8_model
    from test_export_v4_ints import int8_cnn

    def bias(data, dtype, n):
        [raw] = [b for t, s, b in _constants(data).values() if t == dtype and s == [n]]
        return np.frombuffer(raw, {"int64": np.int64, "int32": np.int32}[dtype])

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tensors = [("int16x8 hidden int64 bias, unclustered weights", bias(int16x8_model(clustered=False), "int64", 2048)),
                   ("int8 per-channel CNN int32 dense bias", bias(int8_cnn._get_wrapped_function()(), "int32", 128)),
                   ("sorted int64 indices (4096 of 0..9999)", np.sort(rng.integers(0, 10000, 4096)).astype(np.int64)),
                   ("int32 over +-2^20, 1024 x 1024 (bench_scale's i32_wide)", codec_tensor("i32_wide", 1024)),
                   ("uniformly random int32 (4096)", rng.integers(-(1 << 31), 1 << 31, 4096).astype(np.int32))]
    rows = [row(label, a) for label, a in tensors]
    return {"rows": rows}


def main(argv=None):
    return child_main(__file__, "format_int_planes", measure, argv, description=__doc__, frameworks=False,
                      pythonpath=[TESTS], prefix="dc_keras-int-planes-")


if __name__ == "__main__":
    main()
