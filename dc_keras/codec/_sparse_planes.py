"""The encoder of the sparse float planes layout (docs/FORMAT.md §18, layout 7, format version 5).

A pruned but unclustered float tensor: the positions of the elements other than the background B
are coded as §6's gaps, each such element as §12's Huffman-coded symbol (the 8 bits below the
sign) and raw rest, stored for those elements only. Symbol 256 writes B (the fillers), 257 writes
B with its sign bit flipped (tfmot's -0.0 next to +0.0).
"""
import struct

import numpy as np

from ._encode import _sparse_plan, _streams_sparse
from ._format import LAYOUT_SPARSE_PLANES, SPARSE_PLANE_SYMBOLS

_STREAM_SIZES = 16  # §7: 4 x u32
FILLER, FLIPPED = 256, 257  # §18 symbols: B, B xor sign bit
MIN_SHARE = 16  # tried only when B and its sign flip make at least 1/16 of the elements (§18)


def background(bits, known=None):
    """(B, how many elements are B or B with its sign flipped): B is the most frequent bit pattern,
    ``known`` if given (a codebook's mode), else found in 65,536 evenly spaced elements, then
    counted over the whole tensor."""
    if known is None:
        vals, cnts = np.unique(bits[:: max(1, len(bits) >> 16)], return_counts=True)
        known = vals[int(np.argmax(cnts))]
    b = bits.dtype.type(known)
    flipped = b ^ bits.dtype.type(1 << (8 * bits.dtype.itemsize - 1))
    return b, int(np.count_nonzero(bits == b)) + int(np.count_nonzero(bits == flipped))


def rest_plane_bytes(n_stored, esz):
    return n_stored * (esz - 1)


class SparsePlanes:
    """§18 plan: background B, §6's gap plan over the symbols (filler 256), the rest plane."""

    layout = LAYOUT_SPARSE_PLANES

    def __init__(self, bits, esz, bg, limit, big):
        w = 8 * esz
        self.bits, self.esz, self.bg = bits, esz, bg
        sym = (bits >> np.uint8(w - 9)).astype(np.uint16)
        sym &= 0xFF
        sym[bits == bg] = FILLER
        sym[bits == (bg ^ bits.dtype.type(1 << (w - 1)))] = FLIPPED
        counts = np.bincount(sym, minlength=SPARSE_PLANE_SYMBOLS).astype(np.int64)
        self.stored = int(len(bits) - counts[FILLER] - counts[FLIPPED])
        self.symbols_over_limit = 0  # symbols used when no code of <= limit bits holds them (encode's reason)
        try:
            self.plan = _sparse_plan(sym, counts, limit, big, bg=FILLER)
        except ValueError:  # more symbols used than codes of <= limit bits tell apart
            self.plan, self.size = None, float("inf")
            self.symbols_over_limit = int(np.count_nonzero(counts))
            return
        # background, E, R, G (esz + 10) instead of §6's background index, E, G (8)
        self.size = self.plan["size"] - 8 + esz + 10 + _STREAM_SIZES + rest_plane_bytes(self.stored, esz)

    def release(self):
        self.bits = None
        if self.plan is not None:
            self.plan["idx"] = None

    def parts(self):
        """(body bytes before the stream sizes, 4 streams, the rest plane)."""
        p, w = self.plan, 8 * self.esz
        e, streams = _streams_sparse(p)
        u = self.bits[p["idx"] < FILLER]
        rest = u & u.dtype.type((1 << (w - 9)) - 1)
        rest |= (u >> np.uint8(w - 1)) << np.uint8(w - 9)
        plane = np.asarray(rest, f"<u{self.esz}").view(np.uint8).reshape(-1, self.esz)[:, : self.esz - 1]
        head = [np.asarray([self.bg], f"<u{self.esz}").tobytes(), struct.pack("<IIH", e, self.stored, p["G"]),
                p["gap_code"].descriptor(), p["index_code"].descriptor()]
        return b"".join(head), streams, plane.tobytes()
