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
"static rANS" costs are fractional-bit codes from one frequency table per context, tables counted
(the cheaper of 12-bit frequencies in Elias-gamma and 5-bit half-bit code lengths).
"Huffman" costs are Huffman codes per context (length-limited to 12, FORMAT.md §4) including
each table's descriptor, and without them ("tables free": a bound for any cleverer table coding;
only for at most 81 context values, beyond which free tables overfit); "entropy" costs are static conditional entropies (no model cost, an
unreachable floor for the given context; the "context-coder floor" takes the lowest position cost,
gaps or mask bits, plus the lowest index cost, contexts with more than 81 values left out). Fixed
bytes (header, codebook, stream sizes) are taken from the §6 file.

    .venv/bin/python benchmarks/codec_bound.py --tflite PICK/shared_float.tflite --bench-tensor \\
        --json docs/results/codec_bound.json

(--bench-tensor adds bench_codec.py's own tensor: trains LeNet-300-100 one epoch, ~30 s.)
"""
import argparse
import bz2
import gzip
import lzma
import os
import sys

import numpy as np

from _common import log, machine_info, write_json
from bench_codec import tflite_weights, trained_lenet300_ip1
from dc_keras import codec
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


def compressors(raw):
    out = {"gzip-9": len(gzip.compress(raw, 9, mtime=0)), "bz2-9": len(bz2.compress(raw, 9)),
           "xz-9e": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))}
    if zstandard is not None:
        out["zstd-19"] = len(zstandard.ZstdCompressor(level=19).compress(raw))
    return out


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
        + mask_rows(w, W) + adaptive_rows(w, W)
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
    out = {"tensor": name, "shape": list(w.shape), "nonzero": int(np.count_nonzero(w)), "entries": len(gap),
           "gap_alphabet": G, "codebook_size": K, "image_width": W, "fixed_bytes": fixed,
           "packed_sparse_bytes": len(plain), "packed_context_bytes": len(ctx), "compressor_bytes": comp,
           "best_compressor": min(comp, key=comp.get), "goal_bytes": 0.75 * best,
           "best_huffman_family_bytes": best_huff, "huffman_free_tables_bound_bytes": free,
           "context_coder_floor_bytes": floor, "static_rans_bytes": rans,
           "adaptive_coder_bytes": adaptive, "rows": rows}
    for k in ("packed_sparse_bytes", "packed_context_bytes", "best_huffman_family_bytes",
              "huffman_free_tables_bound_bytes", "context_coder_floor_bytes", "static_rans_bytes", "adaptive_coder_bytes"):
        out[k.replace("_bytes", "_vs_best")] = out[k] / best
    return out


def _log_report(name, w, r):
    log(f"{name} {w.shape}: §6 {r['packed_sparse_bytes']:,} B ({r['packed_sparse_vs_best']:.3f}x), §14 "
        f"{r['packed_context_bytes']:,} B ({r['packed_context_vs_best']:.3f}x) of {r['best_compressor']} "
        f"{min(r['compressor_bytes'].values()):,} B; goal {r['goal_bytes']:,.0f} B; best Huffman-family "
        f"{r['best_huffman_family_bytes']:,.0f} B ({r['best_huffman_family_vs_best']:.3f}x), tables free "
        f"{r['huffman_free_tables_bound_bytes']:,.0f} B ({r['huffman_free_tables_bound_vs_best']:.3f}x); context-coder "
        f"floor {r['context_coder_floor_bytes']:,.0f} B ({r['context_coder_floor_vs_best']:.3f}x); static rANS "
        f"{r['static_rans_bytes']:,.0f} B ({r['static_rans_vs_best']:.3f}x); adaptive coder "
        f"{r['adaptive_coder_bytes']:,.0f} B ({r['adaptive_coder_vs_best']:.3f}x)")
    for row in r["rows"]:
        hb = "-" if row["huffman_bytes"] is None else f"{row['huffman_bytes']:,.0f}"
        hf = "-" if row["huffman_free_tables_bytes"] is None else f"{row['huffman_free_tables_bytes']:,.0f}"
        rb = "-" if row.get("rans_bytes") is None else f"{row['rans_bytes']:,.0f}"
        log(f"   {row['stream']:<9} | {row['context']:<75} H {row['entropy_bytes']:>8,.0f} B  Huffman {hb} B"
            f" (tables free {hf} B)  static rANS {rb} B")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tflite", required=True, help="a pruned + clustered float .tflite")
    ap.add_argument("--image_width", type=int, default=28, help="W of the 2-D contexts (MNIST: 28)")
    ap.add_argument("--min_elements", type=int, default=20000)
    ap.add_argument("--bench-tensor", action="store_true",
                    help="also bench_codec.py's tensor: LeNet-300-100's first kernel trained 1 epoch on "
                         "Fashion-MNIST, one-shot pruned to 8 %%, 5-bit k-means, as [in, out] and [out, in]")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = {"tflite": os.path.basename(args.tflite), "machine": machine_info(frameworks=False), "tensors": [],
           "command": " ".join(["python", os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))}
    tensors = [(name, w) for name, w in tflite_weights(args.tflite, args.min_elements)
               if w.ndim == 2 and np.count_nonzero(w) <= 0.5 * w.size]
    if args.bench_tensor:
        w = trained_lenet300_ip1()
        if w is None:
            raise SystemExit("--bench-tensor needs keras and Fashion-MNIST (see bench_codec.py)")
        tensors += [("bench_codec.py ip1 [in, out]", w), ("bench_codec.py ip1 [out, in]", np.ascontiguousarray(w.T))]
    for name, w in tensors:
        r = tensor_report(name, w, args.image_width)
        out["tensors"].append(r)
        _log_report(name, w, r)
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
