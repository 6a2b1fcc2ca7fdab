"""codec.encode writes the same bytes as the encoder of ec2a7a6 (before the grouped layouts' wide
path was done by blocks, for its memory): ~1,400 encodings of small tensors of every dtype and
layout, forced and chosen, compared with digests the old code wrote (tests/data/
codec_digests_ec2a7a6.json; option sets that raise must raise the same message), also with
blocks small enough that the tensors here take every path of the blocked code.

The tensors come from a splitmix64 stream in numpy's uint64 arithmetic (not numpy.random, whose
streams may change between versions). To write the digests again with the old encoder:

  mkdir -p /tmp/old/oldcodec && for f in _encode _layouts _format; do
    git show ec2a7a6:dc_keras/codec/$f.py > /tmp/old/oldcodec/$f.py; done
  echo "from ._layouts import encode" > /tmp/old/oldcodec/__init__.py
  PYTHONPATH=/tmp/old:tests:. python -c "import oldcodec, test_codec_identity as t; t.write_digests(oldcodec.encode)"
"""
import hashlib
import json
import os

import ml_dtypes
import numpy as np
import pytest

from dc_keras import codec

DIGESTS = os.path.join(os.path.dirname(__file__), "data", "codec_digests_ec2a7a6.json")

DTYPES = ["float32", "float16", "bfloat16", "int32", "int16", "int8", "uint8"]
KINDS = ["per_channel_0", "per_channel_last", "global_100", "few", "unclustered", "constant", "special"]
SHAPES = [(0, 5), (1,), (1, 1), (7, 13), (130, 70), (70, 130), (3, 3, 8, 16), (2, 1, 3), (2, 5000)]
OPTIONS = [{"layout": "grouped_dense"}, {"layout": "grouped_sparse", "axis": -1}, {"max_code_length": 6},
           {"layout": "grouped_sparse", "axis": 0}, {"context_model": True}, {"layout": "dense"},
           {"axis": 0, "max_code_length": 8}, {"layout": "sparse"}, {"version": 1}, {"layout": "float_planes"},
           {"layout": "context_sparse"}, {"axis": -1}, {"layout": "grouped_dense", "max_code_length": 4}]


def _stream(n, seed):
    """``n`` pseudo-random uint64 (splitmix64 of seed, seed + 1, ...)."""
    x = np.arange(seed, seed + n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, 1)):
        x ^= x >> np.uint64(shift)
        x *= np.uint64(mult)
    return x


def _uniform(n, seed):
    return (_stream(n, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _values(dtype, n, seed, spread=1.0):
    """``n`` values of ``dtype`` spread over its range (floats: about +-2 * spread)."""
    dt = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    if dt.kind == "f" or dtype == "bfloat16":
        return ((_uniform(n, seed) - 0.5) * 4 * spread).astype(dt)
    info = np.iinfo(dt) if dt.kind in "iu" else ml_dtypes.iinfo(dt)
    lo, hi = int(info.min), int(info.max)
    span = max(1, int((hi - lo) * spread))
    return (lo + (_stream(n, seed) % np.uint64(span)).astype(np.int64)).astype(dt)


def tensor(dtype, kind, shape, seed=0):
    """A tensor of ``kind``: per-channel codebooks of 12 values on axis 0 or the last one (60 %
    pruned), 100 values shared by the tensor, 5 values, no sharing, one value, or (floats) a few
    values with -0.0, 0.0, NaN, +-inf and a subnormal."""
    n = int(np.prod(shape))
    dt = np.dtype(getattr(ml_dtypes, dtype, None) or dtype)
    if kind.startswith("per_channel"):
        shape2 = (shape[0], -1) if kind.endswith("0") else (-1, shape[-1])
        rows, cols = np.empty(shape).reshape(shape2).shape if n else (0, 0)
        table = _values(dtype, max(1, rows if kind.endswith("0") else cols) * 12, seed + 1).reshape(-1, 12)
        pick = (_stream(n, seed + 2) % np.uint64(12)).astype(np.int64).reshape(rows, cols)
        group = np.arange(rows)[:, None] if kind.endswith("0") else np.arange(cols)[None, :]
        w = table[group, pick]
        w[_uniform(n, seed + 3).reshape(rows, cols) < 0.6] = 0
        return w.reshape(shape)
    if kind in ("global_100", "few"):
        table = _values(dtype, 100 if kind == "global_100" else 5, seed + 4)
        w = table[(_stream(n, seed + 5) % np.uint64(len(table))).astype(np.int64)]
        if kind == "global_100":
            w[_uniform(n, seed + 6) < 0.5] = 0
        return w.reshape(shape)
    if kind == "unclustered":
        return _values(dtype, n, seed + 7).reshape(shape)
    if kind == "constant":
        return np.full(shape, _values(dtype, 1, seed + 8)[0], dt)
    if dt.kind != "f" and dtype != "bfloat16":  # "special": floats only
        return None
    table = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, 1e-40, 0.5, -0.5], np.float32).astype(dt)
    return table[(_stream(n, seed + 9) % np.uint64(len(table))).astype(np.int64)].reshape(shape)


def cases(dtypes=None):
    """(id, array, encode options): each tensor with the default options and two more sets;
    only those of ``dtypes`` if given."""
    out, i = [], 0
    for dtype in DTYPES:
        for kind in KINDS:
            for shape in SHAPES:
                w = tensor(dtype, kind, shape)
                if w is None:
                    continue
                for opts in ({}, OPTIONS[i % len(OPTIONS)], OPTIONS[(i + 5) % len(OPTIONS)]):
                    if dtypes is None or dtype in dtypes:
                        out.append((f"{dtype}/{kind}/{shape}/{json.dumps(opts, sort_keys=True)}", w, opts))
                i += 1
    for dtype in ("int4", "uint4", "int2") if dtypes is None else ():  # sub-byte types: dense / sparse only
        for kind in ("few", "unclustered", "constant"):
            for shape in ((1,), (7, 13), (130, 70)):
                w = tensor(dtype, kind, shape)
                for opts in ({}, {"layout": "sparse"}, {"layout": "grouped_dense"}):
                    out.append((f"{dtype}/{kind}/{shape}/{json.dumps(opts, sort_keys=True)}", w, opts))
    return out


def digests(encode, layouts=None, dtypes=None):
    """{case id: first 16 hex digits of the output's sha256, or the error raised} (the cases of
    ``dtypes`` if given); the layouts written are added to the set ``layouts``."""
    out = {}
    for name, w, opts in cases(dtypes):
        try:
            data = encode(w, **opts)
        except ValueError as exc:
            out[name] = f"ValueError: {exc}"
            continue
        out[name] = hashlib.sha256(data).hexdigest()[:16]
        if layouts is not None:
            layouts.add(codec.info(data)["layout"])
    return out


# Layouts added after ec2a7a6 (format version 4: §17 integer planes; 5: §18 sparse float planes).
# ``encode(version=None)`` picks
# one where it is smaller than every older layout (or where none of those could hold the tensor);
# then the older choice must still be the old encoder's bytes, and the new one smaller.
NEW_LAYOUTS = {"int_planes": 4, "sparse_planes": 5}  # the version each needs
OLD_LAYOUTS = sorted(set(codec._layouts.LAYOUT_CODES) - set(NEW_LAYOUTS))


def old_choice(newer):
    """An ``encode`` that returns what ``codec.encode`` picks among the layouts ec2a7a6 had, and
    appends (new size, old size or the old error) to ``newer`` for each tensor that now takes a
    new layout."""
    def encode(w, **opts):
        data = codec.encode(w, **opts)
        lay = codec.info(data)["layout"]
        if lay not in NEW_LAYOUTS:
            return data
        assert "layout" not in opts and codec.info(data)["version"] == NEW_LAYOUTS[lay]
        try:
            old = codec.encode(w, layouts=OLD_LAYOUTS, **opts)
        except ValueError as exc:
            newer.append((len(data), str(exc)))
            raise
        newer.append((len(data), len(old)))
        return old
    return encode


def write_digests(encode, path=DIGESTS):
    with open(path, "w") as f:
        json.dump(digests(encode), f, indent=0, sort_keys=True)
        f.write("\n")


@pytest.mark.parametrize("chunk", [None, 97])
def test_encode_is_byte_identical_to_ec2a7a6(chunk, monkeypatch):
    """Every case's output (or error) is the old encoder's; the cases are the ones the digests
    were written for, and they write every layout and refuse some option sets. With blocks of
    97 elements (the types whose grouped layouts can take the wide path only: int32, float32,
    and the 16-bit ones with > 64 groups) the wide path takes blocks of several groups, of one
    group, and groups too big for a block (counted by parts: a row's part, or rows) on these
    small tensors; the spy checks it did."""
    from dc_keras.codec import _layouts

    if chunk:
        monkeypatch.setattr(_layouts, "_CHUNK", chunk)
    seen = []
    wide = _layouts._distinct_per_group_wide

    def spy(bits, code, shape3, **kw):
        seen.append(shape3)
        return wide(bits, code, shape3, **kw)

    monkeypatch.setattr(_layouts, "_distinct_per_group_wide", spy)
    with open(DIGESTS) as f:
        expected = json.load(f)
    layouts, dtypes = set(), ("float32", "float16", "bfloat16", "int32", "int16") if chunk else None
    newer = []
    got = digests(old_choice(newer), layouts, dtypes)
    if chunk:
        expected = {k: v for k, v in expected.items() if k in got}
    else:
        assert set(got) == set(expected), "the cases are not the ones the digests were written for"
    diff = [f"{k}: {got[k]} (was {expected[k]})" for k in expected if got[k] != expected[k]]
    assert not diff, f"{len(diff)} of {len(expected)} encodings differ from ec2a7a6's:\n" + "\n".join(diff[:10])
    # the int16 / int32 tensors §17 codes smaller: unclustered ones, and small per-channel ones
    # (7 x 13: a table per row costs more than the residuals); measured: 27 of the 1,296 cases; and
    # 14 float ones §18 codes smaller (per-channel tables with a common mode, mostly 16-bit): 41
    assert all(isinstance(old, str) or new < old for new, old in newer), newer
    assert len(newer) == 41, newer
    assert layouts == {"dense", "sparse", "grouped_dense", "grouped_sparse", "float_planes", "context_sparse"}
    assert sum(v.startswith("ValueError") for v in expected.values()) > 30
    block = chunk or _layouts._CHUNK
    sizes = [(o * i, i) for o, _, i in seen]
    assert any(s * 2 <= block for s, _ in sizes), "no block of several groups"
    if chunk:
        assert any(s == block for s, _ in sizes) or any(block // 2 < s <= block for s, _ in sizes), "no block of one group"
        assert any(s > block and i >= block for s, i in sizes), "no group split within rows"
        assert any(s > block and i < block for s, i in sizes), "no group split by rows"
