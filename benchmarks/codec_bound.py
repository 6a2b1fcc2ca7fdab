"""What a better model could buy on a pruned + clustered tensor (issue 19's codec goal, <= 0.75x of
the best general-purpose compressor): entropies and Huffman costs of the sparse layout's two
symbol streams under candidate contexts the decoder could know, side by side with our packed
sizes (FORMAT.md §6, §14) and gzip-9 / bz2-9 / xz-9e / zstd-19 of the same raw float32 bytes.

Streams, as §6 builds them (fillers included, G as the encoder picks it):
  gap   the background run before each entry;   index   the codebook index of each entry.
Contexts measured (all known to a decoder before it decodes the symbol):
  gap:   previous gap bucket (0, 1, 2-3, 4-7, ..); kept/not kept of the element one image row
         above the run's start (``--image_width``: a fully-connected kernel [out, in] whose input is
         an image has each row = one neuron's image of W-pixel rows).
  index: §14's (sign class of the previous entry, gap = 0); the 2-D sign vote of the already
         decoded neighbours left, up, up-left, up-right in the image (sum of +1 / -1 / 0);
         the four neighbours' classes jointly.
  mask:  the kept/not-kept bit of every element coded on its own (what an arithmetic / ANS
         binary coder would pay): i.i.d., given the element's pixel density, given the 2-D
         neighbours (left, up, up-left, up-right, two left), given both.
  adaptive: the kept bit of every element and the index of every kept one under models learned
         while decoding (Krichevsky-Trofimov counts per context: model cost included, no tables):
         what an adaptive binary arithmetic coder would pay, one decision per element.
  side info counted: models sent ahead of the data, their parameters paid for: the kept bit under
         per-row / per-column densities (rank-1 logistic sigmoid(a_i + b_j), quantised); the indices of
         each row (column) under that row's own histogram (enumerative code); every element's symbol
         given a bucket of a rank-r prediction of the tensor (quantised SVD factors).
  mixing: the kept bit under a logistic mix of 5 adaptive predictors (what context-mixing
         compressors do); --peers also runs such compressors (zpaq, PPMd, brotli, lrzip, 7-Zip PPMd)
         on the float32 tensor, its dense index array and the two streams (benchmarks/codec_peers.py).
"strongest model": the fixed bytes plus the cheapest position and index models (or joint model)
whose model cost is paid (Huffman / rANS tables, adaptive, side info counted).
"static rANS" costs are fractional-bit codes from one frequency table per context, tables counted
(the cheaper of 12-bit frequencies in Elias-gamma and 5-bit half-bit code lengths).
"Huffman" costs are Huffman codes per context (length-limited to 12, FORMAT.md §4) including
each table's descriptor, and without them ("tables free": a bound for any cleverer table coding;
only for at most 81 context values, beyond which free tables overfit); "entropy" costs are static conditional entropies (no model cost, an
unreachable floor for the given context; the "context-coder floor" takes the lowest position cost,
gaps or mask bits, plus the lowest index cost, contexts with more than 81 values left out). Fixed
bytes (header, codebook, stream sizes) are taken from the §6 file.

    .venv/bin/python benchmarks/codec_bound.py --tflite PICK/shared_float.tflite --bench-tensor --peers \\
        --json docs/results/codec_bound.json

(--bench-tensor adds bench_codec.py's own tensor: trains LeNet-300-100 one epoch, ~30 s.)

The initial weights known to the decoder (a seeded initializer whose seed the file carries, the decoder
regenerating every initial value w0): the kept bit and index of each element given a bucket of w0, coded
statically and by Huffman tables per bucket, and a Gaussian update around w0, on the bench tensor trained
1 .. 30 epochs, and pruned during training (--init-known-gradual B+P; init_known_report; its own JSON,
~8 min: it trains):

    .venv/bin/python benchmarks/codec_bound.py --init-known-epochs 1,2,5,10,20,30 \
        --init-known-gradual 1+5,20+30 --json docs/results/codec_init_known.json
"""
import argparse
import bz2
import ctypes
import gzip
import lzma
import os
import shlex
import sys

import numpy as np

from _common import log, machine_info, write_json
from bench_codec import best_time, tflite_weights, trained_lenet300_ip1
from dc_keras import codec
from dc_keras.codec._decode import _library
from dc_keras.codec._encode import _descriptor_size, code_lengths

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None


def entropy_bytes(x, ctx=None):
    """Static (conditional) entropy of the symbols ``x`` given ``ctx``, in bytes."""
    ctx = np.zeros(len(x), np.int64) if ctx is None else ctx
    total = 0.0
    for c in np.unique(ctx):
        _, cnt = np.unique(x[ctx == c], return_counts=True)
        total -= float((cnt * np.log2(cnt / cnt.sum())).sum())
    return total / 8


def huffman_bytes(x, n, ctx=None, tables=True):
    """Bytes of one length-limited Huffman code per context value, descriptors (§4) included
    unless ``tables`` is False (then: the code bits alone, as if the tables were free)."""
    ctx = np.zeros(len(x), np.int64) if ctx is None else ctx
    bits = 0
    for c in np.unique(ctx):
        cnt = np.bincount(x[ctx == c], minlength=n)
        lengths, max_len = code_lengths(cnt)
        bits += int(np.dot(cnt, lengths.astype(np.int64))) + (8 * _descriptor_size(n, max_len) if tables else 0)
    return bits / 8


def adaptive_bytes(x, n, ctx=None, a=0.5):
    """Bytes an *adaptive* arithmetic / ANS coder pays for the symbols ``x`` (alphabet ``n``) coded
    in order, one model per context value: symbol i costs -log2((c_i + a) / (t + a n)), c_i and t the
    counts of that symbol and of all symbols seen before in the same context (Krichevsky-Trofimov
    for a = 0.5). The model is learned while decoding, so this includes the model cost (no tables,
    no side information): a realistic figure, not a floor. Coder overhead (state flush, rounding
    of probabilities) is not counted (a few bytes)."""
    x = np.asarray(x, np.int64)
    if len(x) == 0:
        return 0.0
    ctx = np.zeros(len(x), np.int64) if ctx is None else np.asarray(ctx, np.int64)
    seen_sym = _seen_before(ctx * n + x)
    seen_ctx = _seen_before(ctx)
    return float(-np.log2((seen_sym + a) / (seen_ctx + a * n)).sum()) / 8


def _seen_before(key):
    """For each position, how many earlier positions hold the same key."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.concatenate([[0], np.flatnonzero(k[1:] != k[:-1]) + 1])
    start = np.repeat(first, np.diff(np.concatenate([first, [len(k)]])))
    out = np.empty(len(key), np.int64)
    out[order] = np.arange(len(k)) - start
    return out


def rans_bytes(x, n, ctx=None, precision=12):
    """Bytes of a *static* rANS / arithmetic code of ``x`` with one frequency table per context value,
    each table the cheaper of (a) the counts normalised to 2^precision (every used symbol >= 1),
    sent as Elias-gamma codes of f + 1 (2 floor(log2(f + 1)) + 1 bits per symbol, 1 for an unused
    one) and (b) half-bit code lengths round(2 log2(total / count)) in 1..31 (5 bits per symbol,
    0 = unused), the probabilities 2^(-l / 2) renormalised. A symbol of probability p costs
    -log2(p) bits (fractional: no Huffman rounding); what a static-table coder that decodes one
    entry at a time (as §6) could reach."""
    x = np.asarray(x, np.int64)
    ctx = np.zeros(len(x), np.int64) if ctx is None else np.asarray(ctx, np.int64)
    bits = 0.0
    for c in np.unique(ctx):
        cnt = np.bincount(x[ctx == c], minlength=n)
        used = cnt > 0
        f = _normalise(cnt, 1 << precision)
        exact = float((cnt[used] * (precision - np.log2(f[used]))).sum()) \
            + float((2 * np.floor(np.log2(f + 1)) + 1).sum())
        half = np.clip(np.round(2 * np.log2(cnt.sum() / np.maximum(cnt, 1))), 1, 31)
        q = np.where(used, 2.0 ** (-half / 2), 0)
        coarse = float(-(cnt[used] * np.log2(q[used] / q.sum())).sum()) + 5 * n
        bits += min(exact, coarse)
    return bits / 8


def _normalise(cnt, total):
    """Frequencies summing to ``total``, proportional to ``cnt``, >= 1 for every used symbol."""
    used = cnt > 0
    if used.sum() <= 1:
        return np.where(used, total, 0)
    f = np.where(used, np.maximum(1, np.floor(cnt * total / cnt.sum())), 0).astype(np.int64)
    while f.sum() != total:  # move the rounding error onto the largest frequencies
        i = int(np.argmax(f))
        f[i] += np.sign(total - f.sum()) * min(abs(total - int(f.sum())), int(f[i]) - 1)
    return f


def _row(stream, context, x, n, ctx):
    """One measured context: entropy, Huffman with tables, Huffman with free tables (the latter
    only for at most MAX_FREE_CONTEXTS context values: with more, free tables overfit)."""
    few = ctx is None or len(np.unique(ctx)) <= MAX_FREE_CONTEXTS
    return {"stream": stream, "context": context, "entropy_bytes": entropy_bytes(x, ctx),
            "huffman_bytes": huffman_bytes(x, n, ctx), "rans_bytes": rans_bytes(x, n, ctx),
            "huffman_free_tables_bytes": huffman_bytes(x, n, ctx, tables=False) if few else None}


MAX_FREE_CONTEXTS = 81


def entries(w, G):
    """§6's entries of ``w`` (flat, background 0): (gap, index, position) with fillers, and K."""
    f = w.reshape(-1)
    pos = np.flatnonzero(f)
    runs = np.diff(pos, prepend=-1) - 1
    uniq, idx = np.unique(f[pos].view(np.uint32), return_inverse=True)
    bg = int(np.searchsorted(uniq, np.float32(0).view(np.uint32)))
    idx = idx + (idx >= bg)  # index of 0.0 in the full codebook
    fill = runs // G
    gap, index, where = [], [], []
    for r, i, p, k in zip(runs, idx, pos, fill):
        gap += [G - 1] * int(k) + [int(r % G)]
        index += [bg] * int(k) + [int(i)]
        where += [-1] * int(k) + [int(p)]
    return np.array(gap), np.array(index), np.array(where), len(uniq) + 1


def _classes(f):
    return np.where(f == 0, 0, np.where(f > 0, 1, -1)).astype(np.int64)


def _neighbour(cls, pos, d, width, dx):
    """Class of the element ``d`` before ``pos`` if it lies in the same image (0 outside)."""
    q = pos - d
    x = pos % width
    ok = (pos >= 0) & (q >= 0) & (x + dx >= 0) & (x + dx < width)
    return np.where(ok, cls[np.maximum(q, 0)], 0)


def index_rows(f, gap, index, where, K, W, cols):
    cls = _classes(f)
    neg = (where >= 0) & (f[np.maximum(where, 0)] < 0)  # sign class of each entry (fillers: 0.0)
    prev = np.concatenate([[0], neg[:-1]]).astype(np.int64)
    g0 = (gap == 0).astype(np.int64)
    left, up = _neighbour(cls, where, 1, W, -1), _neighbour(cls, where, W, W, 0)
    ul, ur = _neighbour(cls, where, W + 1, W, -1), _neighbour(cls, where, W - 1, W, 1)
    vote = np.sign(left + up + ul + ur) + 1
    joint = (((left + 1) * 3 + up + 1) * 3 + ul + 1) * 3 + ur + 1
    prev_index = np.concatenate([[0], index[:-1]])
    in_row = (np.maximum(where, 0) % cols) * 8 // cols
    ctxs = {"none (order 0)": None, "previous index (order 1)": prev_index,
            "position in the row (8 buckets)": in_row,
            "§14: previous entry's sign class, gap = 0": prev * 2 + g0,
            f"2-D sign vote of left/up/up-left/up-right (W={W})": vote,
            f"2-D vote x gap = 0 (W={W})": vote * 2 + g0,
            f"left, up, up-left, up-right classes jointly (W={W}, 81 contexts)": joint}
    return [_row("index", k, index, K, c) for k, c in ctxs.items()]


def gap_rows(f, gap, where, G, W, cols):
    prev = np.concatenate([[0], gap[:-1]])
    bucket = np.digitize(prev, [1, 2, 4, 8, 16, 32, 64])
    start = np.maximum(np.where(where >= 0, where - gap, 0), 0)
    above = _neighbour(np.abs(_classes(f)), start, W, W, 0)
    mask = (f != 0).reshape(-1, cols)
    density = mask.mean(axis=0)[start % cols]
    ctxs = {"none (order 0)": None, "previous gap (order 1)": prev, "previous gap bucket (8)": bucket,
            "position of the run's start in the row (8 buckets)": (start % cols) * 8 // cols,
            "density of the run start's column (8 buckets; side info not counted)":
                np.digitize(density, [0.005, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25]),
            f"element one image row above the run's start kept (W={W})": above}
    return [_row("gap", k, gap, G, c) for k, c in ctxs.items()]


def per_row_rows(w, G):
    """Positions as a count per row plus gaps restarted at each row (the row's tail implicit)."""
    counts = np.count_nonzero(w, axis=1)
    gaps = np.concatenate([entries(r[None, :], G)[0] for r in w if np.any(r)] or [np.zeros(0, np.int64)])
    n = int(counts.max()) + 1
    return [{"stream": "gap", "context": "order 0, restarted each row (+ per-row counts, order 0)",
             "entropy_bytes": entropy_bytes(gaps) + entropy_bytes(counts),
             "huffman_bytes": huffman_bytes(gaps, G) + huffman_bytes(counts, n),
             "huffman_free_tables_bytes": huffman_bytes(gaps, G, tables=False) + huffman_bytes(counts, n, tables=False)}]


def empty_column_rows(w, G):
    """Positions coded over the columns that hold any kept weight (the others, e.g. pruned input
    pixels, skipped): gap cost plus a 1-bit-per-column map of the live columns."""
    live = np.any(w != 0, axis=0)
    gap = entries(w[:, live], G)[0]
    side = (w.shape[1] + 7) // 8
    return [{"stream": "gap", "context": f"order 0, {int((~live).sum())} empty columns skipped (+{side} B map)",
             "entropy_bytes": entropy_bytes(gap) + side, "huffman_bytes": huffman_bytes(gap, G) + side,
             "huffman_free_tables_bytes": huffman_bytes(gap, G, tables=False) + side}]


def mask_rows(w, W):
    """Kept bits coded one by one (binary arithmetic/ANS coder floor) under 2-D contexts."""
    m = (w.reshape(-1) != 0).astype(np.int64)
    p = np.arange(m.size)
    n = [_neighbour(m, p, d, W, dx) for d, dx in ((1, -1), (W, 0), (W + 1, -1), (W - 1, 1), (2, -2))]
    nbrs = (((n[0] * 2 + n[1]) * 2 + n[2]) * 2 + n[3]) * 2 + n[4]
    pixel = p % w.shape[-1]
    dens = np.bincount(pixel, weights=m, minlength=w.shape[-1]) / (m.size / w.shape[-1])
    dbucket = np.digitize(dens[pixel], [0.005, 0.02, 0.04, 0.07, 0.1, 0.15, 0.25])
    ctxs = {"i.i.d. (one density)": None, "pixel density (8 buckets; side info not counted)": dbucket,
            f"2-D neighbours left, up, up-left, up-right, two left (W={W}, 32 contexts)": nbrs,
            "both (256 contexts)": nbrs * 8 + dbucket}
    return [{"stream": "mask bits", "context": k, "entropy_bytes": entropy_bytes(m, c), "huffman_bytes": None,
             "huffman_free_tables_bytes": None} for k, c in ctxs.items()]


def _density_so_far(m, axis):
    """Bucket (0..7) of the kept fraction among the elements of the same column (axis 0) or row
    (axis 1) already decoded; 8 while fewer than 8 of them are known. No side information."""
    seen = np.cumsum(m, axis=axis) - m
    before = np.broadcast_to(np.arange(m.shape[axis]).reshape((-1, 1) if axis == 0 else (1, -1)), m.shape)
    return np.where(before < 8, 8, np.minimum(seen * 40 // np.maximum(before, 1), 7))


def adaptive_rows(w, W):
    """Positions and indices under *adaptive* models (learned while decoding; model cost included):
    the kept/not-kept bit of every element, then the codebook index of each kept element, given
    what a decoder knows (densities so far of the element's column and row, the two elements left,
    the 2-D neighbours in a W-wide image, §14's class and the 2-D sign vote)."""
    w2 = w.reshape(w.shape[0], -1)
    m = (w2 != 0).astype(np.int64)
    f = w2.reshape(-1)
    p = np.arange(f.size)
    flat = m.reshape(-1)
    left = [_neighbour(flat, p, d, w2.shape[1], -d) for d in (1, 2)]
    img = [_neighbour(flat, p, d, W, dx) for d, dx in ((W, 0), (W + 1, -1), (W - 1, 1), (2 * W, 0))]
    col, row = _density_so_far(m, 0).reshape(-1), _density_so_far(m, 1).reshape(-1)
    near = left[0] * 2 + left[1]
    mask_ctx = {"i.i.d.": None, "column density so far (9 buckets)": col,
                "row density so far (9 buckets)": row,
                "column and row density so far, two left (324 contexts)": (col * 9 + row) * 4 + near,
                f"two left, up, up-left, up-right (W={W}, 32 contexts)": ((near * 2 + img[0]) * 2 + img[1]) * 2 + img[2],
                f"two left, up, up-left, up-right, two up (W={W}, 64 contexts)":
                    (((near * 2 + img[0]) * 2 + img[1]) * 2 + img[2]) * 2 + img[3],
                f"how many of those 6 are kept (0..6) x column density so far (W={W}, 63 contexts)":
                    (left[0] + left[1] + sum(img)) * 9 + col,
                "all of these (2,592 contexts)": (((col * 9 + row) * 4 + near) * 2 + img[0]) * 4 + img[1] * 2 + img[2]}
    rows = [{"stream": "mask bits, adaptive", "context": k, "entropy_bytes": adaptive_bytes(flat, 2, c),
             "huffman_bytes": None, "huffman_free_tables_bytes": None} for k, c in mask_ctx.items()]
    pos = np.flatnonzero(f)
    uniq, idx = np.unique(f[pos].view(np.uint32), return_inverse=True)
    cls = _classes(f)
    prev = np.concatenate([[0], (f[pos[:-1]] < 0)]).astype(np.int64)
    adj = np.concatenate([[0], np.diff(pos) == 1]).astype(np.int64)
    nbr = [_neighbour(cls, pos, d, W, dx) for d, dx in ((1, -1), (W, 0), (W + 1, -1), (W - 1, 1), (2, -2), (2 * W, 0))]
    vote = np.sign(sum(nbr[:4])) + 1
    idx_ctx = {"none (order 0)": None, "§14: previous kept weight's sign class, adjacent": prev * 2 + adj,
               f"2-D sign vote of left/up/up-left/up-right x adjacent (W={W})": vote * 2 + adj,
               f"sum of the sign classes of those 4, two left and two up, clipped to -2..2 (W={W})":
                   np.clip(sum(nbr), -2, 2) + 2}
    return rows + [{"stream": "index, adaptive", "context": k, "entropy_bytes": adaptive_bytes(idx, len(uniq), c),
                    "huffman_bytes": None, "huffman_free_tables_bytes": None} for k, c in idx_ctx.items()]


# ---------------------------------------------------------------------------------------------
# models with their side information counted, and a mixing model (issue 19: is 0.75x reachable?)
# ---------------------------------------------------------------------------------------------
def _fit_rank1(m, iters=30):
    """Maximum-likelihood a_i, b_j of p_ij = sigmoid(a_i + b_j) for the 0/1 matrix ``m``
    (alternating one-dimensional Newton steps)."""
    a = np.zeros(m.shape[0])
    b = np.full(m.shape[1], np.log(m.mean() / (1 - m.mean())))
    for _ in range(iters):
        for ax in (1, 0):
            p = 1 / (1 + np.exp(-(a[:, None] + b[None, :])))
            step = np.clip((m - p).sum(axis=ax) / ((p * (1 - p)).sum(axis=ax) + 1e-9), -2, 2)
            if ax == 1:
                a += step
            else:
                b += step
    return a, b


def _logit_density(m, axis):
    """Per-row (axis 1) or per-column (axis 0) log-odds of the kept fraction, clipped off 0 and 1."""
    n = m.shape[axis]
    d = np.clip(m.mean(axis=axis), 0.5 / n, 1 - 0.5 / n)
    return np.log(d / (1 - d))


def _mask_bits(m, a, b):
    """Bits of the 0/1 matrix ``m`` coded with p_ij = sigmoid(a_i + b_j) (an ideal arithmetic coder)."""
    p = np.clip(1 / (1 + np.exp(-(a[:, None] + b[None, :]))), 1e-6, 1 - 1e-6)
    return float(-(m * np.log2(p) + (1 - m) * np.log2(1 - p)).sum())


def _param_bytes(q):
    """Side information of integer parameters ``q``: an adaptive (KT) code of q - min(q), + 2 bytes."""
    q = q - q.min()
    return adaptive_bytes(q, int(q.max()) + 1) + 2


def rank1_mask_rows(w):
    """The kept bit of every element under a per-row and/or per-column density, p_ij = sigmoid(a_i + b_j)
    (rank-1 logistic), a_i, b_j quantised to a step of 1/16 .. 1 and sent (side information counted; the
    step giving the smallest total is taken), and the unquantised fit with free parameters (a floor)."""
    m = (w.reshape(w.shape[0], -1) != 0).astype(np.float64)
    a, b = _fit_rank1(m)
    zero_r, zero_c = np.zeros(m.shape[0]), np.zeros(m.shape[1])
    fits = {"per-row density": (_logit_density(m, 1), zero_c, True, False),
            "per-column density": (zero_r, _logit_density(m, 0), False, True),
            "per-row and per-column densities, rank-1 logistic": (a, b, True, True)}
    rows = [{"stream": "mask bits", "context": "rank-1 logistic sigmoid(a_i + b_j), parameters free (side info not counted)",
             "entropy_bytes": _mask_bits(m, a, b) / 8, "huffman_bytes": None, "huffman_free_tables_bytes": None}]
    for name, (ra, cb, use_r, use_c) in fits.items():
        best = None
        for step in (0.0625, 0.125, 0.25, 0.5, 1.0):
            qa, qb = np.round(ra / step).astype(np.int64), np.round(cb / step).astype(np.int64)
            side = (_param_bytes(qa) if use_r else 0) + (_param_bytes(qb) if use_c else 0)
            total = _mask_bits(m, qa * step, qb * step) / 8 + side
            if best is None or total < best[0]:
                best = (total, side, step)
        rows.append({"stream": "mask bits, side info counted",
                     "context": f"{name} (step {best[2]:g}, {best[1]:,.0f} B of parameters included)",
                     "entropy_bytes": best[0], "huffman_bytes": None, "huffman_free_tables_bytes": None})
    return rows


def _log2_fact(n):
    from math import lgamma, log
    return lgamma(n + 1) / log(2)


def own_histogram_rows(w):
    """Indices of the kept weights of each row (and, separately, of each column) coded with that row's
    own index histogram: the histogram sent first (log2 C(n + K - 1, K - 1) bits, every histogram of n
    entries equally likely), then the row's indices as one of the multinomial(n; counts) sequences with
    that histogram (enumerative code: the cheapest code for a known histogram). Side information counted.
    Also an adaptive (KT) model per row, which needs no side information."""
    w2 = w.reshape(w.shape[0], -1)
    f = w2.reshape(-1)
    pos = np.flatnonzero(f)
    uniq, idx = np.unique(f[pos].view(np.uint32), return_inverse=True)
    k = len(uniq)
    rows = []
    for unit, what in ((pos // w2.shape[1], "row"), (pos % w2.shape[1], "column")):
        side = code = 0.0
        for u in np.unique(unit):
            c = np.bincount(idx[unit == u], minlength=k)
            n = int(c.sum())
            side += _log2_fact(n + k - 1) - _log2_fact(n) - _log2_fact(k - 1)
            code += _log2_fact(n) - sum(_log2_fact(int(x)) for x in c)
        rows += [{"stream": "index, side info counted",
                  "context": f"each {what}'s own histogram, enumerative ({side / 8:,.0f} B of histograms included)",
                  "entropy_bytes": (side + code) / 8, "huffman_bytes": None, "huffman_free_tables_bytes": None},
                 {"stream": "index, adaptive", "context": f"each {what}'s own counts so far (KT)",
                  "entropy_bytes": adaptive_bytes(idx, k, unit), "huffman_bytes": None,
                  "huffman_free_tables_bytes": None}]
    return rows


def mixed_mask_row(w, W, lr=0.002):
    """The kept bit of every element under a logistic mix (as context-mixing compressors do) of five
    adaptive predictors, all causal (no side information): the 6 kept bits two left / up / up-left /
    up-right / two up (W-wide image), the column and row densities so far, the number of those 6 kept x
    the column density so far, the same x the row density so far, and the sum of the 6 neighbours'
    magnitudes x the column density so far; mixer weights chosen by the column density so far and
    learned online (rate ``lr``). Model cost included; a realistic figure for a slow adaptive coder."""
    from math import exp, log, log2
    w2 = w.reshape(w.shape[0], -1)
    m = (w2 != 0).astype(np.int64)
    flat, f = m.reshape(-1), np.abs(w2.reshape(-1)).astype(np.float64)
    p = np.arange(flat.size)
    offs = [(d, -d, w2.shape[1]) for d in (1, 2)] + [(d, dx, W) for d, dx in ((W, 0), (W + 1, -1), (W - 1, 1), (2 * W, 0))]
    nb = [_neighbour(flat, p, d, width, dx) for d, dx, width in offs]
    mag = sum(_neighbour(f, p, d, width, dx) for d, dx, width in offs) / np.abs(f[f > 0]).mean()
    col, row = _density_so_far(m, 0).reshape(-1), _density_so_far(m, 1).reshape(-1)
    kept6 = sum(nb)
    ctxs = np.stack([sum(v << i for i, v in enumerate(nb)), col * 9 + row, kept6 * 9 + col, kept6 * 9 + row,
                     np.minimum(np.round(mag).astype(np.int64), 7) * 9 + col], 1).tolist()
    counts = [[[0.4, 0.4] for _ in range(c)] for c in (64, 81, 63, 63, 72)]
    weights = [[0.3] * 5 for _ in range(9)]
    bits = 0.0
    for y, c, sel in zip(flat.tolist(), ctxs, col.tolist()):
        x = [log(counts[k][c[k]][1] / counts[k][c[k]][0]) for k in range(5)]
        wt = weights[sel]
        z = sum(a * b for a, b in zip(wt, x))
        pr = min(max(1 / (1 + exp(-max(min(z, 30), -30))), 1e-6), 1 - 1e-6)
        bits -= log2(pr if y else 1 - pr)
        err = lr * (y - pr)
        weights[sel] = [a + err * b for a, b in zip(wt, x)]
        for k in range(5):
            counts[k][c[k]][y] += 1
    return {"stream": "mask bits, adaptive", "context": f"logistic mix of 5 adaptive predictors (W={W}; no side info)",
            "entropy_bytes": bits / 8, "huffman_bytes": None, "huffman_free_tables_bytes": None}



def low_rank_rows(w, ranks=(1, 2, 4, 8), bits=(2, 3, 4), buckets=16):
    """Every element's symbol (background or codebook index: mask and index jointly) given its
    bucket of a rank-r prediction mu = U V^T of the tensor (truncated SVD, both factors scaled by
    sqrt(S) and quantised to ``bits`` bits per entry over their range; ``buckets`` quantiles of mu),
    coded by static rANS with one table per bucket. Side information counted: the factors (adaptive KT
    code of the quantised integers, + 8 B of ranges each), the bucket edges (4 B each), the tables."""
    w2 = w.reshape(w.shape[0], -1).astype(np.float64)
    f = w2.reshape(-1)
    inv = np.unique(f.astype(np.float32).view(np.uint32), return_inverse=True)[1]
    k = int(inv.max()) + 1
    u, sv, vt = np.linalg.svd(w2, full_matrices=False)
    rows = []
    for r in ranks:
        best = None
        for b in bits:
            fac = [u[:, :r] * np.sqrt(sv[:r]), vt[:r].T * np.sqrt(sv[:r])]
            q, side = [], 0.0
            for x in fac:
                lo, hi = x.min(), x.max()
                qi = np.round((x - lo) / (hi - lo) * (2 ** b - 1)).astype(np.int64)
                q.append(lo + qi * (hi - lo) / (2 ** b - 1))
                side += _param_bytes(qi.reshape(-1)) + 8
            mu = (q[0] @ q[1].T).reshape(-1)
            ctx = np.digitize(mu, np.quantile(mu, np.linspace(0, 1, buckets + 1)[1:-1]))
            total = rans_bytes(inv, k, ctx) + side + 4 * (buckets - 1)
            if best is None or total < best[0]:
                best = (total, side, b)
        rows.append({"stream": "joint symbol, side info counted",
                     "context": f"bucket of a rank-{r} prediction ({buckets} buckets; {best[2]}-bit factors, "
                                f"{best[1]:,.0f} B of factors included)",
                     "entropy_bytes": best[0], "huffman_bytes": None, "huffman_free_tables_bytes": None})
    return rows


def _uniform_plus_gauss_cdf(x, lim, sig):
    """P(U + N <= x) for U ~ Uniform(-lim, lim), N ~ Normal(0, sig^2) (exact, elementwise)."""
    from math import erf, exp, pi, sqrt
    phi_cdf = np.frompyfunc(lambda z: 0.5 * (1 + erf(z / sqrt(2))), 1, 1)
    phi_pdf = np.frompyfunc(lambda z: exp(-0.5 * z * z) / sqrt(2 * pi), 1, 1)

    def g(z):  # an antiderivative of Phi(z / sig)
        z = np.asarray(z, np.float64)
        return z * phi_cdf(z / sig).astype(np.float64) + sig * phi_pdf(z / sig).astype(np.float64)

    return (g(x + lim) - g(x - lim)) / (2 * lim)


def _symbol_intervals(w, d):
    """(lo, hi, kept, thr): the interval of trained values each element's symbol stands for (the
    pruned band [-thr, thr] for the background, a k-means cell for a kept weight, clipped to +-1e3),
    flat; ValueError if ``d`` (trained_lenet300_ip1's details) does not reproduce ``w``."""
    thr, cent = d["threshold"], np.asarray(d["centroids"], np.float64)
    mids = (cent[1:] + cent[:-1]) / 2
    f = np.asarray(d["trained"], np.float64).reshape(-1)
    kept = np.abs(f) > thr
    j = np.searchsorted(mids, f)
    lo = np.where(kept, np.concatenate([[-np.inf], mids])[j], -thr)
    hi = np.where(kept, np.concatenate([mids, [np.inf]])[j], thr)
    lo, hi = np.maximum(lo, -1e3), np.minimum(hi, 1e3)
    if np.shape(d["trained"]) != np.shape(w) or \
            not np.array_equal(np.where(kept, cent.astype(np.float32)[j], 0).reshape(w.shape), w):
        raise ValueError("the details do not reproduce the tensor")
    return lo, hi, kept, thr


def oracle_rows(w, d, ranks=(1, 2, 4, 8, 16), factor_bits=3):
    """How the tensor came about, as a model: each trained weight = its Glorot-uniform initial value
    (i.i.d. on [-L, L]) + the training update, the symbol = the pruning / k-means interval it falls in.
    Code lengths of the actual symbols (i) knowing only L and the update's spread (Gaussian: a two-
    parameter model any coder could use), (ii) knowing in addition the true update's top-r singular
    vectors, paid at ``factor_bits`` bits per entry (an oracle: the encoder has only the tensor, and the
    factors are priced below what they would cost), (iii) knowing the whole update for free (an oracle
    floor: what the initial weights' randomness alone costs). ``d``: trained_lenet300_ip1's details."""
    delta = d["trained"] - d["init"]
    lim = d["init_limit"]
    lo, hi, kept, thr = _symbol_intervals(w, d)
    f = d["trained"].reshape(-1)

    def bits(mu, sig):
        p = _uniform_plus_gauss_cdf(hi - mu, lim, sig) - _uniform_plus_gauss_cdf(lo - mu, lim, sig)
        # a kept weight's interval may cross the pruned band [-thr, thr]: take that part out
        inner_lo, inner_hi = np.maximum(lo, -thr), np.minimum(hi, thr)
        cross = kept & (inner_hi > inner_lo)
        if cross.any():
            p = p - np.where(cross, _uniform_plus_gauss_cdf(inner_hi - mu, lim, sig)
                             - _uniform_plus_gauss_cdf(inner_lo - mu, lim, sig), 0)
        return float(-np.log2(np.maximum(p, 1e-300)).sum())

    tiny = 1e-6 * lim  # a spread of 0 (no update) as a very narrow Gaussian
    rows = [{"model": "initial weights i.i.d. uniform + a Gaussian update (2 parameters)",
             "bytes": bits(np.full(f.size, delta.mean()), max(delta.std(), tiny)) / 8 + 8}]
    u, sv, vt = np.linalg.svd(delta, full_matrices=False)
    for r in ranks:
        mu = (u[:, :r] * sv[:r]) @ vt[:r]
        side = r * sum(delta.shape) * factor_bits / 8
        rows.append({"model": f"+ the true update's top-{r} singular vectors at {factor_bits} bits per entry "
                              f"({side:,.0f} B) (oracle)", "bytes": bits(mu.reshape(-1), max((delta - mu).std(), tiny)) / 8 + side,
                     "update_energy": float((sv[:r] ** 2).sum() / (sv ** 2).sum())})
    exact = bits(delta.reshape(-1), tiny)
    rows.append({"model": "+ the whole true update, free (oracle floor: the initial weights' randomness alone)",
                 "bytes": exact / 8})
    return rows


# ---------------------------------------------------------------------------------------------
# the initial weights known to the decoder (a seeded initializer whose seed the file carries)
# ---------------------------------------------------------------------------------------------
INIT_BUCKETS = (4, 16, 64)
SEED_BYTES = 8  # the initializer's seed, carried by the file (the PRNG and Glorot's limit are fixed / known)


def init_buckets(init, lim, buckets):
    """Bucket 0..buckets-1 of each initial value: ``buckets`` equal cells of [-lim, lim] (values outside
    clipped to the end cells)."""
    b = np.floor((np.asarray(init, np.float64) + lim) / (2 * lim) * buckets)
    return np.clip(b, 0, buckets - 1).astype(np.int64)


def _normal_mass(lo, hi, mu, sig):
    """P(lo < N(mu, sig^2) <= hi), elementwise, accurate in both tails (differences of erfc on the
    side away from the mean)."""
    from math import erfc, sqrt
    q = np.frompyfunc(lambda z: 0.5 * erfc(z / sqrt(2)), 1, 1)  # P(N(0, 1) > z)
    a, b = (lo - mu) / sig, (hi - mu) / sig
    right = a > 0  # the whole interval above the mean: Q(a) - Q(b); else Phi(b) - Phi(a) = Q(-b) - Q(-a)
    upper = q(np.where(right, a, -b)).astype(np.float64)
    lower = q(np.where(right, b, -a)).astype(np.float64)
    return np.maximum(upper - lower, 0.0)


def init_known_gaussian_bytes(w, d):
    """Bytes of every element's symbol (background or k-means cell) coded with P(symbol | w0) = the mass of
    N(w0 + m, s^2) on the symbol's interval (a kept cell's part inside the pruned band taken out), w0 the
    element's initial value known to the decoder, m and s the training update's mean and standard
    deviation (two parameters, 8 B): the complement of oracle_rows' first row, which knows only Glorot's
    limit. Needs w0 at every element. ``d``: trained_lenet300_ip1's details."""
    lo, hi, kept, thr = _symbol_intervals(w, d)
    init = np.asarray(d["init"], np.float64).reshape(-1)
    delta = np.asarray(d["trained"], np.float64).reshape(-1) - init
    mu, sig = init + delta.mean(), max(float(delta.std()), 1e-6 * d["init_limit"])
    p = _normal_mass(lo, hi, mu, sig)
    inner_lo, inner_hi = np.maximum(lo, -thr), np.minimum(hi, thr)
    cross = kept & (inner_hi > inner_lo)
    if cross.any():
        p = p - np.where(cross, _normal_mass(inner_lo, inner_hi, mu, sig), 0)
    return float(-np.log2(np.maximum(p, 1e-300)).sum()) / 8 + 8


def init_known_report(w, d, buckets=INIT_BUCKETS, gaussian=True):
    """What a decoder that knows every element's initial value w0 (regenerated from a seed the file
    carries) could save on the pruned + clustered tensor ``w`` (``d``: trained_lenet300_ip1's details), in
    bytes, each next to the same model without w0 (a context of one value) and against the best of
    gzip-9 / bz2-9 / xz-9e / zstd-19 of the float32 tensor:
      entropy    the kept bit of every element | w0's bucket + each kept index | w0's bucket (static
                 conditional entropies, model cost not counted: a floor), + the fixed bytes;
      rans       the same contexts coded by static rANS, one frequency table per bucket counted as
                 rans_bytes counts it (one binary decision per element for the mask), + fixed + seed;
      huffman    §6's gap stream unchanged (order-0 Huffman), the index stream Huffman-coded with one
                 table per w0 bucket of the entry (descriptors counted as huffman_bytes does; w0 needed
                 at the entries only), + fixed + seed;
      gaussian   init_known_gaussian_bytes (+ fixed + seed), beside oracle_rows' first row (w0 unknown);
                 None with ``gaussian`` False (a tensor pruned during training: its pruned weights were
                 set to 0, not moved into a band by the update, so the model does not apply);
    the bucket cells are ``buckets`` equal cells of [-L, L], L Glorot's limit. Also the correlation of
    w0 and the trained weights and the update's standard deviation / L (over the kept weights when
    ``gaussian`` is False: the others were set to 0)."""
    lim = d["init_limit"]
    _symbol_intervals(w, d)  # refuses details that do not reproduce w
    plain, ctx = codec.encode(w, layout="sparse"), codec.encode(w, context_model=True)
    i6 = codec.info(plain)
    G = i6["gap_alphabet"]
    fixed = len(plain) - sum(i6["stream_bytes"]) - _descriptor_size(G, i6["gap_code"]["max_length"]) \
        - _descriptor_size(i6["codebook_size"], i6["index_code"]["max_length"])
    comp = compressors(np.ascontiguousarray(w, np.float32).tobytes())
    best = min(comp.values())
    f = w.reshape(-1)
    kept = (f != 0).astype(np.int64)
    uniq, idx = np.unique(f[f != 0].view(np.uint32), return_inverse=True)
    gap, index, _where, K = entries(w, G)
    where = np.cumsum(gap + 1) - 1  # every entry's element, fillers included (the decoder knows it)
    init = np.asarray(d["init"], np.float64).reshape(-1)
    trained = np.asarray(d["trained"], np.float64).reshape(-1)
    on = slice(None) if gaussian else f != 0  # pruned during training: the statistics of the kept weights
    delta = trained[on] - init[on]
    gap_huff = huffman_bytes(gap, G)

    def model(bkt):
        mask_e, idx_e = entropy_bytes(kept, bkt), entropy_bytes(idx, None if bkt is None else bkt[f != 0])
        mask_r, idx_r = rans_bytes(kept, 2, bkt), rans_bytes(idx, len(uniq), None if bkt is None else bkt[f != 0])
        idx_h = huffman_bytes(index, K, None if bkt is None else bkt[where])
        seed = 0 if bkt is None else SEED_BYTES
        return {"mask_entropy_bytes": mask_e, "index_entropy_bytes": idx_e, "entropy_bytes": fixed + mask_e + idx_e,
                "mask_rans_bytes": mask_r, "index_rans_bytes": idx_r, "rans_bytes": fixed + mask_r + idx_r + seed,
                "index_huffman_bytes": idx_h, "huffman_bytes": fixed + gap_huff + idx_h + seed}

    out = {"shape": list(w.shape), "nonzero": int(kept.sum()), "entries": len(gap), "gap_alphabet": G,
           "codebook_size": K, "fixed_bytes": fixed, "seed_bytes": SEED_BYTES, "init_limit": lim,
           "stats_over": "all elements" if gaussian else "kept weights",
           "corr_init_trained": float(np.corrcoef(init[on], trained[on])[0, 1]),
           "update_mean": float(delta.mean()), "update_std": float(delta.std()),
           "update_std_vs_limit": float(delta.std() / lim),
           "compressor_bytes": comp, "best_compressor": min(comp, key=comp.get), "best_bytes": best,
           "goal_bytes": 0.75 * best, "packed_sparse_bytes": len(plain), "packed_context_bytes": len(ctx),
           "gap_huffman_bytes": gap_huff, "init_unknown": model(None),
           "init_known": {str(b): model(init_buckets(init, lim, b)) for b in buckets},
           "gaussian_init_unknown_bytes": fixed + oracle_rows(w, d, ranks=())[0]["bytes"] if gaussian else None,
           "gaussian_init_known_bytes": fixed + init_known_gaussian_bytes(w, d) + SEED_BYTES if gaussian else None}
    return out


def _vs(x, best):
    return f"{x:,.0f} B ({x / best:.3f}x)"


def gradual_pruning_tensor(base_epochs, prune_epochs, density=0.08, bits=5, seed=0):
    """Deep Compression's own recipe on bench_codec.py's model: LeNet-300-100 built and seeded as
    bench_codec.trained_lenet300_ip1 builds it (the same initial weights), trained ``base_epochs`` the same
    way, then its first kernel pruned *during* training to ``density`` by dc_keras.pipeline.prune_retrain
    (AGP ramp over the first 60 % of ``prune_epochs`` epochs, the rest retraining the survivors; the
    other layers dense, no augmentation), the kept weights clustered by the same k-means (``bits``).
    Returns (tensor, details) like trained_lenet300_ip1(details=True), the threshold 0 (the pruned
    weights are exactly 0), or None without the data set."""
    from bench_codec import fashion_lenet300, kmeans_linear_1d

    got = fashion_lenet300(seed)
    if got is None:
        return None
    import keras

    from dc_keras import pipeline

    x, y, model = got
    w0 = np.asarray(model.layers[0].kernel.numpy(), np.float64)
    if base_epochs:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=128, epochs=base_epochs, verbose=0)
    name = model.layers[0].name
    stripped = pipeline.prune_retrain(model, x, y, {name: 1 - density}, epochs=prune_epochs, max_shift=0, seed=seed,
                                      verbose=0)
    w = np.asarray(stripped.get_layer(name).kernel.numpy(), np.float32)
    keep = w != 0
    out = np.zeros_like(w)
    out[keep], cent = kmeans_linear_1d(w[keep].astype(np.float64), 2**bits, centroids=True)
    return out, {"init": w0, "trained": w.astype(np.float64), "threshold": 0.0, "centroids": cent,
                 "init_limit": float(np.sqrt(6 / sum(w.shape)))}


def init_known_run(epochs, gradual=(), density=0.08, bits=5, seed=0, say=log):
    """init_known_report for LeNet-300-100's first kernel trained ``epochs`` (each a fresh run of
    bench_codec.trained_lenet300_ip1 with that seed / density / bits: one-shot pruning after training);
    for 1 epoch also whether the tensor is bit-identical to bench_codec.py's own (trained_lenet300_ip1()
    with its defaults). Then, for each (base, prune) of ``gradual``, the kernel of gradual_pruning_tensor
    (pruned during training; no Gaussian rows). Each row records a hash of the initial weights."""
    import hashlib

    rows = []
    for e in list(epochs) + list(gradual):
        if isinstance(e, tuple):
            got = gradual_pruning_tensor(*e, density=density, bits=bits, seed=seed)
            head = {"epochs": sum(e), "pruning": "gradual", "base_epochs": e[0], "prune_epochs": e[1]}
        else:
            got = trained_lenet300_ip1(epochs=e, density=density, bits=bits, seed=seed, details=True)
            head = {"epochs": e, "pruning": "one-shot"}
        if got is None:
            raise SystemExit("--init-known-epochs needs keras and Fashion-MNIST (see bench_codec.py)")
        w, d = got
        r = {**head, **init_known_report(w, d, gaussian=head["pruning"] == "one-shot"),
             "init_sha256": hashlib.sha256(np.ascontiguousarray(d["init"], np.float64).tobytes()).hexdigest()[:16]}
        if (e, density, bits, seed) == (1, 0.08, 5, 0):
            r["identical_to_bench_codec_tensor"] = bool(np.array_equal(w, trained_lenet300_ip1()))
        rows.append(r)
        best = r["best_bytes"]
        what = f"{e[0]} + {e[1]} epochs, gradual pruning" if isinstance(e, tuple) else f"{e} epochs"
        gauss = "" if r["gaussian_init_known_bytes"] is None else (
            f"; Gaussian update, init unknown {_vs(r['gaussian_init_unknown_bytes'], best)}, init known "
            f"{_vs(r['gaussian_init_known_bytes'], best)}")
        say(f"{what}: {r['best_compressor']} {best:,} B, §6 {_vs(r['packed_sparse_bytes'], best)}, §14 "
            f"{_vs(r['packed_context_bytes'], best)}; {r['nonzero']:,} kept; corr(init, trained) {r['corr_init_trained']:.3f}, "
            f"update std {r['update_std_vs_limit']:.3f} L" + gauss
            + ("" if "identical_to_bench_codec_tensor" not in r else
               f"; bit-identical to bench_codec.py's tensor: {r['identical_to_bench_codec_tensor']}"))
        for b, m in [("none", r["init_unknown"])] + list(r["init_known"].items()):
            say(f"   init buckets {b:>4}: entropy {_vs(m['entropy_bytes'], best)}, static rANS {_vs(m['rans_bytes'], best)}, "
                f"§6 gaps + index Huffman per bucket {_vs(m['huffman_bytes'], best)}")
    return rows


def compressors(raw):
    out = {"gzip-9": len(gzip.compress(raw, 9, mtime=0)), "bz2-9": len(bz2.compress(raw, 9)),
           "xz-9e": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))}
    if zstandard is not None:
        out["zstd-19"] = len(zstandard.ZstdCompressor(level=19).compress(raw))
    return out


def decode_melem_s(packed, n):
    """Our C decoder's speed on ``packed`` (n float32 elements): million elements per CPU second, best run."""
    lib, out = _library(), np.empty(n, np.float32)

    def run():
        st = lib.dc_decode(packed, len(packed), out.ctypes.data_as(ctypes.c_void_p), out.nbytes)
        if st:
            raise RuntimeError(lib.dc_strerror(st))

    return n / best_time(run, 20)[0] / 1e6


def tensor_report(name, w, W):
    plain, ctx = codec.encode(w, layout="sparse"), codec.encode(w, context_model=True)
    i6 = codec.info(plain)
    G = i6["gap_alphabet"]
    fixed = len(plain) - sum(i6["stream_bytes"]) - _descriptor_size(G, i6["gap_code"]["max_length"]) \
        - _descriptor_size(i6["codebook_size"], i6["index_code"]["max_length"])
    gap, index, where, K = entries(w, G)
    f = w.reshape(-1)
    comp = compressors(np.ascontiguousarray(w, np.float32).tobytes())
    best = min(comp.values())
    cols = w.shape[-1]
    rows = gap_rows(f, gap, where, G, W, cols) + per_row_rows(w, G) + empty_column_rows(w, G) \
        + index_rows(f, gap, index, where, K, W, cols) \
        + mask_rows(w, W) + adaptive_rows(w, W) + rank1_mask_rows(w) + own_histogram_rows(w) + [mixed_mask_row(w, W)] + low_rank_rows(w)
    best_huff = fixed + min(r["huffman_bytes"] for r in rows if r["stream"] == "gap") \
        + min(r["huffman_bytes"] for r in rows if r["stream"] == "index")
    free = fixed + sum(min(r["huffman_free_tables_bytes"] for r in rows
                           if r["stream"] == st and r["huffman_free_tables_bytes"] is not None)
                       for st in ("gap", "index"))
    # positions: gap or mask-bit entropies, index: entropies; contexts with > 81 values (over-fit
    # static entropies) left out
    fair = [r for r in rows if r["huffman_free_tables_bytes"] is not None or r["stream"] == "mask bits"]
    floor = fixed + min(r["entropy_bytes"] for r in fair if r["stream"] != "index") \
        + min(r["entropy_bytes"] for r in fair if r["stream"] == "index")
    # adaptive coder: the cheapest adaptive position model plus the cheapest adaptive index model
    rans = fixed + sum(min(r["rans_bytes"] for r in rows if r["stream"] == st and r.get("rans_bytes") is not None)
                       for st in ("gap", "index"))
    adaptive = fixed + sum(min(r["entropy_bytes"] for r in rows if r["stream"] == st)
                           for st in ("mask bits, adaptive", "index, adaptive"))
    strongest, parts = _strongest(rows, fixed)
    out = {"tensor": name, "shape": list(w.shape), "nonzero": int(np.count_nonzero(w)), "entries": len(gap),
           "gap_alphabet": G, "codebook_size": K, "image_width": W, "fixed_bytes": fixed,
           "packed_sparse_bytes": len(plain), "packed_context_bytes": len(ctx), "compressor_bytes": comp,
           "best_compressor": min(comp, key=comp.get), "goal_bytes": 0.75 * best,
           "best_huffman_family_bytes": best_huff, "huffman_free_tables_bound_bytes": free,
           "context_coder_floor_bytes": floor, "static_rans_bytes": rans,
           "adaptive_coder_bytes": adaptive, "strongest_model_bytes": strongest,
           "strongest_model_parts": parts,
           "packed_decode_melem_s": decode_melem_s(min(plain, ctx, key=len), w.size), "rows": rows}
    for k in ("packed_sparse_bytes", "packed_context_bytes", "best_huffman_family_bytes",
              "huffman_free_tables_bound_bytes", "context_coder_floor_bytes", "static_rans_bytes", "adaptive_coder_bytes",
              "strongest_model_bytes"):
        out[k.replace("_bytes", "_vs_best")] = out[k] / best
    return out


def _realistic(r):
    """A row's cost with its model paid for (None if it has none): Huffman or static rANS with the
    tables, or the code length of an adaptive / side-information-counted model."""
    if r["stream"].endswith((", adaptive", ", side info counted")):
        return r["entropy_bytes"]
    costs = [r[k] for k in ("huffman_bytes", "rans_bytes") if r.get(k) is not None]
    return min(costs) if costs else None


def _strongest(rows, fixed):
    """(bytes, [(stream, context) of each part]) of the cheapest paid-for model: the cheapest position row
    plus the cheapest index row, or the cheapest joint row, plus the fixed bytes."""
    def cheapest(streams):
        ok = [r for r in rows if r["stream"].split(",")[0] in streams and _realistic(r) is not None]
        return min(ok, key=_realistic) if ok else None

    pos, idx, joint = cheapest(("gap", "mask bits")), cheapest(("index",)), cheapest(("joint symbol",))
    split = fixed + _realistic(pos) + _realistic(idx)
    if joint is not None and fixed + _realistic(joint) < split:
        return fixed + _realistic(joint), [[joint["stream"], joint["context"]]]
    return split, [[pos["stream"], pos["context"]], [idx["stream"], idx["context"]]]


def peer_blobs(name, w, G):
    """The byte strings the peer coders see for one tensor: the float32 tensor, its dense index array
    (one uint8 per element, the background one of the symbols), and §6's gap and index streams as uint8
    (G capped at 256)."""
    f = w.reshape(-1)
    gap, index, _, _ = entries(w, min(G, 256))  # G > 256: more fillers, so that a gap fits a byte
    if len(np.unique(f)) > 256:
        raise ValueError(f"{name}: more than 256 distinct values (no uint8 index stream)")
    return {f"{name}|float32": np.ascontiguousarray(w, np.float32).tobytes(),
            f"{name}|dense uint8 index": np.unique(f, return_inverse=True)[1].astype(np.uint8).tobytes(),
            f"{name}|gap stream": gap.astype(np.uint8).tobytes(), f"{name}|index stream": index.astype(np.uint8).tobytes()}


def peer_summary(name, report, peers):
    """Per input (float32; the dense uint8 index + the float32 codebook; the two streams + the codebook)
    each coder's bytes, and the smallest of all with its ratio to the best of gzip/bz2/xz/zstd."""
    cb = 4 * (report["codebook_size"] - 1)
    s = {k.split("|")[1]: v for k, v in peers["sizes"].items() if k.split("|")[0] == name}
    table = {"float32": dict(s["float32"]),
             "dense uint8 index + codebook": {c: v + cb for c, v in s["dense uint8 index"].items()},
             "gap + index streams + codebook": {c: v + s["index stream"][c] + cb for c, v in s["gap stream"].items()}}
    inp, coder = min(((i, c) for i in table for c in table[i]), key=lambda ic: table[ic[0]][ic[1]])
    n = report["shape"][0] * report["shape"][1]
    blobs = {"float32": ["float32"], "dense uint8 index + codebook": ["dense uint8 index"],
             "gap + index streams + codebook": ["gap stream", "index stream"]}[inp]
    dec = [peers["decode_seconds"][f"{name}|{b}"].get(coder) for b in blobs]
    best = {"input": inp, "coder": coder, "bytes": table[inp][coder],
            "vs_best": table[inp][coder] / min(report["compressor_bytes"].values()),
            "decode_melem_s": n / sum(dec) / 1e6 if all(dec) else None}
    return {"bytes": table, "overhead": peers["overhead"], "missing": peers["missing"], "best": best}


def _log_report(name, w, r):
    log(f"{name} {w.shape}: §6 {r['packed_sparse_bytes']:,} B ({r['packed_sparse_vs_best']:.3f}x), §14 "
        f"{r['packed_context_bytes']:,} B ({r['packed_context_vs_best']:.3f}x) of {r['best_compressor']} "
        f"{min(r['compressor_bytes'].values()):,} B; goal {r['goal_bytes']:,.0f} B; best Huffman-family "
        f"{r['best_huffman_family_bytes']:,.0f} B ({r['best_huffman_family_vs_best']:.3f}x), tables free "
        f"{r['huffman_free_tables_bound_bytes']:,.0f} B ({r['huffman_free_tables_bound_vs_best']:.3f}x); context-coder "
        f"floor {r['context_coder_floor_bytes']:,.0f} B ({r['context_coder_floor_vs_best']:.3f}x); static rANS "
        f"{r['static_rans_bytes']:,.0f} B ({r['static_rans_vs_best']:.3f}x); adaptive coder "
        f"{r['adaptive_coder_bytes']:,.0f} B ({r['adaptive_coder_vs_best']:.3f}x); strongest model "
        f"{r['strongest_model_bytes']:,.0f} B ({r['strongest_model_vs_best']:.3f}x)")
    for row in r["rows"]:
        hb = "-" if row["huffman_bytes"] is None else f"{row['huffman_bytes']:,.0f}"
        hf = "-" if row["huffman_free_tables_bytes"] is None else f"{row['huffman_free_tables_bytes']:,.0f}"
        rb = "-" if row.get("rans_bytes") is None else f"{row['rans_bytes']:,.0f}"
        log(f"   {row['stream']:<9} | {row['context']:<75} H {row['entropy_bytes']:>8,.0f} B  Huffman {hb} B"
            f" (tables free {hf} B)  static rANS {rb} B")


def _add_peers(tensors, reports):
    from codec_peers import run_peers

    blobs = {}
    for (name, w), r in zip(tensors, reports):
        blobs.update(peer_blobs(name, w, r["gap_alphabet"]))
    peers = run_peers(blobs)
    for (name, _w), r in zip(tensors, reports):
        r["peers"] = peer_summary(name, r, peers)
        b = r["peers"]["best"]
        log(f"{name}: strongest peer {b['coder']} on the {b['input']}: {b['bytes']:,} B ({b['vs_best']:.3f}x); "
            + "; ".join(f"{i}: " + ", ".join(f"{c} {v:,}" for c, v in t.items()) for i, t in r["peers"]["bytes"].items()))
    if peers["missing"]:
        log("not installed (rows missing): " + ", ".join(peers["missing"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tflite", default=None, help="a pruned + clustered float .tflite (required unless "
                                                    "--init-known-epochs)")
    ap.add_argument("--image_width", type=int, default=28, help="W of the 2-D contexts (MNIST: 28)")
    ap.add_argument("--min_elements", type=int, default=20000)
    ap.add_argument("--bench-tensor", action="store_true",
                    help="also bench_codec.py's tensor: LeNet-300-100's first kernel trained 1 epoch on "
                         "Fashion-MNIST, one-shot pruned to 8 %%, 5-bit k-means, as [in, out] and [out, in]")
    ap.add_argument("--peers", action="store_true",
                    help="also context-mixing / PPM coders (zpaq, PPMd, brotli from PyPI in their own venv, made "
                         "on first use; zpaq / lrzip / 7zz command-line coders when on PATH) on each tensor")
    ap.add_argument("--init-known-epochs", default=None, metavar="E1,E2,..",
                    help="instead: the initial weights known to the decoder (init_known_report) on bench_codec.py's "
                         "tensor trained E1, E2, .. epochs (same seed, density, bits; 1 = the bench tensor); its own "
                         "JSON (docs/results/codec_init_known.json), ~1 min + 8 s per epoch")
    ap.add_argument("--init-known-gradual", default=None, metavar="B+P,..",
                    help="with --init-known-epochs: also the kernel pruned during training (Deep Compression's "
                         "recipe, dc_keras.pipeline.prune_retrain) after B epochs, over P more, e.g. 1+5,20+30")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.init_known_gradual is not None and args.init_known_epochs is None:
        ap.error("--init-known-gradual adds rows to --init-known-epochs's JSON: give --init-known-epochs too")
    if args.init_known_epochs is not None:
        gradual = []
        for item in (args.init_known_gradual or "").split(",") if args.init_known_gradual is not None else []:
            b, plus, p = item.partition("+")
            if not (plus and b.isdigit() and p.isdigit() and int(p) >= 1):
                ap.error(f"--init-known-gradual {args.init_known_gradual!r}: give BASE+PRUNE epoch pairs separated by "
                         "commas (BASE >= 0, PRUNE >= 1), e.g. 1+5,20+30")
            gradual.append((int(b), int(p)))
        if args.tflite or args.bench_tensor or args.peers:
            ap.error("--init-known-epochs writes its own JSON: run it without --tflite, --bench-tensor and --peers")
        try:
            epochs = [int(e) for e in args.init_known_epochs.split(",")]
        except ValueError:
            epochs = []
        if not epochs or min(epochs) < 1:
            ap.error(f"--init-known-epochs {args.init_known_epochs!r}: give positive whole numbers of epochs "
                     "separated by commas, e.g. 1,2,5,10,20")
        return init_known_main(epochs, args.json, argv, gradual)
    if not args.tflite:
        ap.error("--tflite is required (a pruned + clustered float .tflite), unless --init-known-epochs")
    if args.peers:  # the peers' venv first: without PyPI access the run stops now, not after the tensor work
        from codec_peers import venv_python

        try:
            venv_python()
        except RuntimeError as e:
            raise SystemExit(f"codec_bound.py --peers: {e}\nOr run without --peers.") from None
    out = {"tflite": os.path.basename(args.tflite), "machine": machine_info(frameworks=False), "tensors": [],
           "command": shlex.join(["python", os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))}
    tensors = [(name, w) for name, w in tflite_weights(args.tflite, args.min_elements)
               if w.ndim == 2 and np.count_nonzero(w) <= 0.5 * w.size]
    if args.bench_tensor:
        trained = trained_lenet300_ip1(details=True)
        if trained is None:
            raise SystemExit("--bench-tensor needs keras and Fashion-MNIST (see bench_codec.py)")
        bench, details = trained
        tensors += [("bench_codec.py ip1 [in, out]", bench), ("bench_codec.py ip1 [out, in]", np.ascontiguousarray(bench.T))]
    for name, w in tensors:
        r = tensor_report(name, w, args.image_width)
        out["tensors"].append(r)
        _log_report(name, w, r)
    if args.bench_tensor:  # the [out, in] copy against the stored [in, out] tensor's best compressor too
        stored, t = out["tensors"][-2:]
        stored["oracle_rows"] = oracle_rows(bench, details)
        for r in stored["oracle_rows"]:
            log(f"   generative model: {r['model']}: {r['bytes']:,.0f} B (+ {stored['fixed_bytes']} fixed)")
        t["stored_orientation_best_bytes"] = min(stored["compressor_bytes"].values())
        t["strongest_model_vs_stored_best"] = t["strongest_model_bytes"] / t["stored_orientation_best_bytes"]
    if args.peers:
        _add_peers(tensors, out["tensors"])
    if args.json:
        write_json(args.json, out)


def _uptime():
    """`uptime`'s line (date, time up, load averages), or None without the command."""
    import subprocess

    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def init_known_main(epochs, json_path, argv=None, gradual=()):
    """--init-known-epochs (--init-known-gradual): init_known_run on each training length, written to
    ``json_path``."""
    out = {"benchmark": "codec_init_known", "uptime_start": _uptime(), "loadavg_start": machine_info(False)["loadavg"],
           "command": shlex.join(["python", os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
           "config": {"density": 0.08, "bits": 5, "seed": 0, "buckets": list(INIT_BUCKETS), "seed_bytes": SEED_BYTES,
                      "model": "LeNet-300-100's first kernel [in, out], trained on Fashion-MNIST with Adam, batch 128, "
                               "from Keras's Glorot-uniform init, then one-shot magnitude pruning and k-means: "
                               "bench_codec.trained_lenet300_ip1"}}
    out["rows"] = init_known_run(epochs, gradual)
    out["machine"] = machine_info(frameworks=True)
    out["uptime_end"] = _uptime()
    if json_path:
        write_json(json_path, out)
        log(f"wrote {json_path}")
    return out


if __name__ == "__main__":
    main()
