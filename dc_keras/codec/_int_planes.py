"""The encoder of the integer-planes layout (docs/FORMAT.md §17, layout 6, format version 4).

Every element of a 16, 32 or 64-bit integer tensor is coded as its residual against a prediction
(the base value, or the previous element), zigzagged to an unsigned number z: a Huffman-coded
class (the bit length of z) followed by the bits of z below its leading one, raw.
"""
import math
import struct

import numpy as np

from ._encode import _Code, _entropy_bits, _floor_bits, _pack_chunked
from ._format import DTYPE_TABLE, NUM_STREAMS

_STREAM_SIZES = 16  # §7: 4 x u32
PREDICT_BASE, PREDICT_PREVIOUS = 0, 1  # §17 predictor byte
_U32 = np.uint64(0xFFFFFFFF)
# Elements per step of the class counts: residuals() makes ~6 work arrays of 8 B per element, so a
# step allocates ~1.5 MB however big the tensor (encode under pack's cap: tests/test_codec_max_bytes.py).
_CHUNK = 1 << 15


def bit_length(z):
    """Bit length of each element of the unsigned array ``z`` (0 for 0), as uint8; exact for every
    value (a float conversion sees at most 32 bits at a time)."""
    if z.dtype.itemsize <= 4:
        return _bit_length32(z).astype(np.uint8)
    hi = z >> np.uint64(32)
    out = np.frexp((z & _U32).astype(np.float64))[1].astype(np.uint8)
    top = hi != 0
    if top.any():
        out[top] = np.frexp(hi[top].astype(np.float64))[1].astype(np.uint8) + 32
    return out


def _bit_length32(z):
    """``bit_length`` of an unsigned array of at most 32-bit elements, as int64: the exponent of
    z + 1/2 as a float64 (exact: 34 bits), 2^(b - 1) <= z + 1/2 < 2^b for z of b bits, 0 included."""
    f = z.astype(np.float64)
    f += 0.5
    e = f.view(np.int64)
    e >>= 52
    e -= 1022
    return e


def _classes(z):
    """``bit_length`` of ``z`` as int64 (what bincount and indexing take without a copy)."""
    return _bit_length32(z) if z.dtype.itemsize <= 4 else bit_length(z).astype(np.int64)


def residuals(bits, start, stop, step, base, predictor):
    """§17: zigzagged residuals z of the elements ``bits[start:stop:step]`` of the tensor whose
    bit patterns are the unsigned array ``bits``, in its own width W (its arithmetic wraps: mod
    2^W)."""
    x = bits[start:stop:step]
    if predictor == PREDICT_PREVIOUS and start > 0:
        p = bits[start - 1:stop - 1:step]
    elif predictor == PREDICT_PREVIOUS:  # element 0 is predicted by the base
        p = np.empty_like(x)
        p[:1] = base
        p[1:] = bits[step - 1:stop - 1:step][:len(x) - 1]
    else:
        p = bits.dtype.type(base)
    d = x - p
    z = d << 1
    z ^= (d.view(f"i{bits.dtype.itemsize}") >> (8 * bits.dtype.itemsize - 1)).view(bits.dtype)
    return z  # 2d for d >= 0, -2d - 1 for d < 0 (d read as W-bit two's complement)


def _median_bits(bits, code):
    """The median as a bit pattern (numeric order of the dtype, signed or not) of the tensor, or
    of 65,536 evenly spaced elements of a larger one (any base is valid: this one only makes the
    residuals small; a sample keeps the work arrays small). Found by a sort in the tensor's width
    (16-bit: a radix sort): np.partition took 5-9 ms on the 65,536 samples of a pruned tensor (70 %
    one value), a sort 0.3-0.6 ms; the same element either way."""
    w = DTYPE_TABLE[code][1]
    signed = DTYPE_TABLE[code][0].startswith("int")
    u = bits[:: max(1, len(bits) >> 16)]
    key = (u ^ u.dtype.type(1 << (w - 1))) if signed else u  # order-preserving unsigned key
    k = int(np.sort(key, kind="stable" if w <= 16 else None)[len(key) // 2])
    return (k ^ (1 << (w - 1))) if signed else k


# A predictor's size is bounded from the classes counted so far at most this many times per tensor
# (one bound: ~30 us; every 8 steps of a 2896 x 2896 int16 tensor).
_CHECKS = 32


def _size_floor(counts, width, fixed):
    """Lower bound of §17's size (bytes, ``fixed`` included) of a tensor of which some elements
    have the class counts ``counts`` (W + 1, summed over the streams): each element costs its
    class - 1 extra bits, exactly, plus its class's code length L, and whatever the final code
    (Kraft: sum 2^-L <= 1 over the classes used), sum n_c L_c >= the counts' Shannon bits (Gibbs'
    inequality), for any subset of the elements. The other elements cost >= 0 bits, and the
    streams' bytes sum to at least their bits / 8."""
    extra = int(np.dot(counts, np.maximum(np.arange(width + 1) - 1, 0)))
    total = int(counts.sum())
    bits = extra + _floor_bits(_entropy_bits(counts), 64.0 * total)
    return math.ceil(bits / 8) + fixed


def _class_code(counts, limit):
    """The class code of ``counts``, or None when more classes are used than codes of at most
    ``limit`` bits tell apart (``encode(max_code_length=...)`` below 5 or so): no such predictor
    plan, so ``encode`` keeps another layout instead of failing."""
    try:
        return _Code(counts, limit)
    except ValueError:
        return None


class IntPlanes:
    """§17 plan: predictor (base or previous element), base, class code; exact packed size.

    ``cannot_win(size)`` (None: never): True when a plan of ``size`` bytes or more cannot be
    written (over encode's budget, or no smaller than a plan already made). A predictor whose size
    bounded from the counts made so far (``_size_floor``, or from ``value_counts`` for the base
    predictor) reaches that is given up before its pass ends; the previous-element predictor also
    when it cannot beat the base predictor's exact size (the base one wins ties). ``size`` is then
    the smallest size or bound of the predictors: a true lower bound of §17's size, and exact (the
    plan ``cannot_win(None)`` would make, the same bytes) whenever ``cannot_win(size)`` is False:
    a predictor given up has a size >= its bound, which cannot win, so it was not the smallest.
    ``value_counts``: the count of each of the 2^16 bit patterns of a 16-bit tensor (encode's
    codebook made them): the base predictor's class counts follow without a pass, hence its size
    within 3 bytes (the streams' rounding).
    """

    def __init__(self, bits, code, limit, layout, big, cannot_win=None, value_counts=None):
        self.layout, self.bits, self.width = layout, bits, DTYPE_TABLE[code][1]
        self.esz = self.width // 8
        self.classes_over_limit = 0  # the fewest classes a predictor used that no code of <= limit bits held
        best, given_up = None, []
        for predictor, base in ((PREDICT_BASE, _median_bits(bits, code)), (PREDICT_PREVIOUS, int(bits[0]))):
            def stop(size, cut=None if best is None else best[0]):
                return (cannot_win is not None and cannot_win(size)) or (cut is not None and size >= cut)

            if predictor == PREDICT_BASE and value_counts is not None:
                totals = self._base_class_counts(value_counts, base)
                c = self._class_code(totals, limit)
                if c is None:
                    continue
                per = self._bits_per_class(c)
                if big and not per[totals > 0].any():  # §9: all zero-bit (the pass would find the same)
                    continue
                bound = -(-int(np.dot(totals, per)) // 8) + self._fixed(c)  # <= the streams' bytes summed
                if stop(bound):
                    given_up.append(bound)
                    continue
            hist = self._class_counts(predictor, base, stop)
            if not isinstance(hist, np.ndarray):  # given up: a bound of its size
                given_up.append(hist)
                continue
            c = self._class_code(hist.sum(axis=0), limit)
            if c is None:
                continue
            per = self._bits_per_class(c)
            if big and not per[hist.sum(axis=0) > 0].any():  # §9: all zero-bit
                continue
            size = sum(-(-int(np.dot(h, per)) // 8) for h in hist) + self._fixed(c)
            if best is None or size < best[0]:
                best = (size, predictor, base, c)
        self.size = min(([best[0]] if best else []) + given_up, default=float("inf"))
        if best is not None:
            _, self.predictor, self.base, self.code = best

    def _class_code(self, counts, limit):
        """``_class_code``, noting the classes used when no code of <= ``limit`` bits holds them."""
        c = _class_code(counts, limit)
        if c is None:
            used = int(np.count_nonzero(counts))
            self.classes_over_limit = min(self.classes_over_limit or used, used)
        return c

    def _fixed(self, c):
        """Bytes besides the streams: predictor, base, class code descriptor, stream sizes."""
        return 1 + self.esz + c.descriptor_size() + _STREAM_SIZES

    def _bits_per_class(self, c):
        """Bits of one element of each class: its code, then class - 1 extra bits."""
        return c.lengths.astype(np.int64) + np.maximum(np.arange(self.width + 1) - 1, 0)

    def _base_class_counts(self, value_counts, base):
        """Class counts of the base predictor's residuals from the count of each 16-bit pattern."""
        patterns = np.arange(len(value_counts), dtype=self.bits.dtype)
        cls = bit_length(residuals(patterns, 0, len(patterns), 1, base, PREDICT_BASE))
        return np.bincount(cls, weights=value_counts, minlength=self.width + 1).astype(np.int64)

    def _class_counts(self, predictor, base, stop):
        """Class counts (4 streams x W + 1 classes) of the predictor's residuals, or, when
        ``stop`` says a bound of its size (from the counts so far) cannot win, that bound."""
        bits, n, w = self.bits, len(self.bits), self.width + 1
        lanes = (np.arange(min(n, _CHUNK)) % NUM_STREAMS) * w  # element j: stream j mod 4
        hist = np.zeros(NUM_STREAMS * w, np.int64)
        every = max(_CHUNK, n // _CHECKS)
        check = every
        fixed = 1 + self.esz + 3 + _STREAM_SIZES  # a descriptor takes >= 3 bytes (§4)
        for a in range(0, n, _CHUNK):  # chunks start at multiples of 4
            cls = _classes(residuals(bits, a, min(n, a + _CHUNK), 1, base, predictor))
            cls += lanes[:len(cls)]
            hist += np.bincount(cls, minlength=len(hist))
            if check <= a + len(cls) < n:
                check += every
                counts = hist.reshape(NUM_STREAMS, w).sum(axis=0)
                # two classes, or extra bits: not a zero-bit code (§9 may refuse one: no bound, as before)
                if (np.count_nonzero(counts) > 1 or counts[2:].any()) and stop(
                        bound := _size_floor(counts, self.width, fixed)):
                    return bound
        return hist.reshape(NUM_STREAMS, w)

    def release(self):
        self.bits = None

    def parts(self):
        """(body bytes before the stream sizes, 4 streams, no plane): element i in stream i mod 4,
        its class code then its class - 1 extra bits (§17)."""
        bits, c = self.bits, self.code
        lengths = c.lengths.astype(np.int64)
        n = len(bits)

        def stream(s):
            def chunk(a, b, with_codes):
                z = residuals(bits, s + NUM_STREAMS * a, min(n, s + NUM_STREAMS * b), NUM_STREAMS, self.base,
                              self.predictor)
                cls = _classes(z)
                z = z.astype(np.uint64)
                extra_len = np.maximum(cls - 1, 0)
                lens = np.empty(2 * len(z), np.int64)
                lens[0::2], lens[1::2] = lengths[cls], extra_len
                if not with_codes:
                    return None, lens
                codes = np.empty(2 * len(z), np.uint64)
                codes[0::2] = c.codes[cls]
                codes[1::2] = z & ((np.uint64(1) << extra_len.astype(np.uint64)) - np.uint64(1))
                return codes, lens

            count = (n - s + NUM_STREAMS - 1) // NUM_STREAMS if n > s else 0
            return _pack_chunked(count, chunk, 2)

        base = struct.pack("<Q", self.base)[: self.esz]
        head = bytes([self.predictor]) + base + c.descriptor()
        return head, [stream(s) for s in range(NUM_STREAMS)], b""

