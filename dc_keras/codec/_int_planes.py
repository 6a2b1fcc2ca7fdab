"""The encoder of the integer-planes layout (docs/FORMAT.md §17, layout 6, format version 4).

Every element of a 16, 32 or 64-bit integer tensor is coded as its residual against a prediction
(the base value, or the previous element), zigzagged to an unsigned number z: a Huffman-coded
class (the bit length of z) followed by the bits of z below its leading one, raw.
"""
import struct

import numpy as np

from ._encode import _Code, _pack_chunked
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
        return np.frexp(z.astype(np.float64))[1].astype(np.uint8)
    hi = z >> np.uint64(32)
    out = np.frexp((z & _U32).astype(np.float64))[1].astype(np.uint8)
    top = hi != 0
    if top.any():
        out[top] = np.frexp(hi[top].astype(np.float64))[1].astype(np.uint8) + 32
    return out


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
    residuals small; a sample keeps the work arrays small)."""
    w = DTYPE_TABLE[code][1]
    signed = DTYPE_TABLE[code][0].startswith("int")
    u = bits[:: max(1, len(bits) >> 16)].astype(np.uint64)
    key = (u ^ np.uint64(1 << (w - 1))) if signed else u  # order-preserving unsigned key
    k = int(np.partition(key, len(key) // 2)[len(key) // 2])
    return (k ^ (1 << (w - 1))) if signed else k


class IntPlanes:
    """§17 plan: predictor (base or previous element), base, class code; exact packed size."""

    def __init__(self, bits, code, limit, layout, big):
        self.layout, self.bits, self.width = layout, bits, DTYPE_TABLE[code][1]
        self.esz = self.width // 8
        n = len(bits)
        best = None
        lanes = (np.arange(min(n, _CHUNK)) % NUM_STREAMS) * (self.width + 1)  # element j: stream j mod 4
        for predictor, base in ((PREDICT_BASE, _median_bits(bits, code)), (PREDICT_PREVIOUS, int(bits[0]))):
            hist = np.zeros(NUM_STREAMS * (self.width + 1), np.int64)
            for a in range(0, n, _CHUNK):  # chunks start at multiples of 4
                cls = bit_length(residuals(bits, a, min(n, a + _CHUNK), 1, base, predictor))
                hist += np.bincount(lanes[:len(cls)] + cls, minlength=len(hist))
            hist = hist.reshape(NUM_STREAMS, self.width + 1)
            c = _Code(hist.sum(axis=0), limit)
            per = c.lengths.astype(np.int64) + np.maximum(np.arange(self.width + 1) - 1, 0)  # code + extra bits
            if big and not per[hist.sum(axis=0) > 0].any():  # §9: all zero-bit
                continue
            size = sum(-(-int(np.dot(h, per)) // 8) for h in hist) + 1 + self.esz + c.descriptor_size() \
                + _STREAM_SIZES
            if best is None or size < best[0]:
                best = (size, predictor, base, c)
        if best is None:
            self.size = float("inf")
            return
        self.size, self.predictor, self.base, self.code = best

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
                cls = bit_length(z).astype(np.int64)
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

