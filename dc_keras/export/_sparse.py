"""TFLite-sparse constants (``Tensor.sparsity``, what ``Optimize.EXPERIMENTAL_SPARSITY`` writes):
densify them in Python, so that ``pack`` can replace ``DENSIFY(sparse constant)`` by
``HuffDecode(packed dense tensor)``.

A sparse constant stores only its traversal-ordered values in its buffer; the index arrays
(``DimensionMetadata`` segments / indices, CSR per level, optional blocks) live in the flatbuffer
tables. The runtime's ``DENSIFY`` op expands it once at prepare time into a dense tensor that the
consumers read. ``HuffDecode`` producing the same dense tensor is bit-exact for every consumer,
and Deep Compression's relative-index coding is far smaller than CSR with 8/16-bit indices plus
32-bit values. Semantics follow TFLite's ``FormatConverter`` (sparsity/format_converter.cc).
"""
from __future__ import annotations

import numpy as np

from dc_keras import _flatbuffer as fb
from dc_keras._flatbuffer import schema

DENSIFY = "DENSIFY"


def _vector(union):
    """Int32/Uint16/Uint8 ``...VectorT`` -> int64 numpy array (``None`` -> empty)."""
    if union is None or getattr(union, "values", None) is None:
        return np.zeros(0, np.int64)
    return np.asarray(union.values, dtype=np.int64)


def densify(values: np.ndarray, shape, sparsity) -> np.ndarray:
    """The dense array a TFLite sparse tensor (``values`` in traversal order) stands for.

    Raises ``ValueError`` for inconsistent metadata (wrong lengths, indices out of range).
    """
    shape = [int(d) for d in shape]
    rank = len(shape)
    order = [int(x) for x in (sparsity.traversalOrder if sparsity.traversalOrder is not None else [])]
    bmap = [int(x) for x in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    dims = list(sparsity.dimMetadata or [])
    n = rank + len(bmap)
    if sorted(order) != list(range(n)) or len(dims) != n or any(not 0 <= b < rank for b in bmap):
        raise ValueError(f"sparsity metadata does not match a rank-{rank} tensor with {len(bmap)} blocks")
    pos = np.zeros(1, np.int64)
    coords = np.zeros((n, 1), np.int64)
    for level, dm in enumerate(dims):
        if dm.format == schema.DimensionType.DENSE:
            size = int(dm.denseSize)
            idx = np.tile(np.arange(size, dtype=np.int64), len(pos))
            parent = np.repeat(np.arange(len(pos)), size)
            pos = pos[parent] * size + idx
        else:
            seg, ind = _vector(dm.arraySegments), _vector(dm.arrayIndices)
            if len(seg) != 0 and (pos.max(initial=0) + 1 >= len(seg) or np.any(np.diff(seg) < 0)):
                raise ValueError(f"sparsity level {level}: segment array too short or not ascending")
            start, stop = seg[pos], seg[pos + 1]
            counts = stop - start
            parent = np.repeat(np.arange(len(pos)), counts)
            pos = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts) \
                + np.repeat(start, counts)
            if len(pos) and pos.max() >= len(ind):
                raise ValueError(f"sparsity level {level}: index array too short")
            idx = ind[pos]
        coords = coords[:, parent]
        coords[order[level]] = idx
    flat_values = np.asarray(values).reshape(-1)
    if coords.shape[1] != flat_values.size:
        raise ValueError(f"sparse tensor holds {flat_values.size} values but its metadata "
                         f"describes {coords.shape[1]}")
    full = coords[:rank].copy()
    for j, d in enumerate(bmap):
        block = int(dims[order.index(rank + j)].denseSize)
        full[d] = full[d] * block + coords[rank + j]
    if any(np.any(full[d] >= shape[d]) for d in range(rank)):
        raise ValueError("sparsity indices fall outside the tensor's shape")
    out = np.zeros(shape, dtype=flat_values.dtype)
    out[tuple(full)] = flat_values
    return out


def sparse_values(model, t):
    """The stored values of sparse constant ``t`` (1-D numpy), or None (unsupported type / empty)."""
    raw = fb.buffer_bytes(model, t.buffer)
    dtype = fb.NUMPY_DTYPES.get(t.type)  # byte-sized types only: sparse sub-byte values stay
    if not raw or dtype is None or len(raw) % dtype.itemsize:
        return None
    return np.frombuffer(raw, dtype)


def densify_plans(model, s):
    """[(densify op index, sparse tensor index, dense array)] for ``DENSIFY`` ops of subgraph ``s``
    whose input is a sparse constant used by nothing else; arrays that cannot be densified are
    skipped (``inspect`` names the reason)."""
    sg = model.subgraphs[s]
    readers = {}
    for op in sg.operators or []:
        for x in op.inputs if op.inputs is not None else []:
            readers[int(x)] = readers.get(int(x), 0) + 1
    out = []
    for j, op in enumerate(sg.operators or []):
        if fb.opcode_name(model, op) != DENSIFY or op.inputs is None or len(op.inputs) != 1:
            continue
        i = int(op.inputs[0])
        t = sg.tensors[i]
        if t.sparsity is None or readers.get(i) != 1:
            continue
        values = sparse_values(model, t)
        if values is None:
            continue
        try:
            out.append((j, i, densify(values, t.shape, t.sparsity)))
        except ValueError:
            continue
    return out


def stored_bytes(t, model) -> int:
    """Bytes the sparse tensor costs in the file: its values plus its index arrays."""
    n = fb.buffer_size(model, t.buffer)
    width = {"Int32VectorT": 4, "Uint16VectorT": 2, "Uint8VectorT": 1}
    for dm in t.sparsity.dimMetadata or []:
        for v in (dm.arraySegments, dm.arrayIndices):
            if v is not None and getattr(v, "values", None) is not None:
                n += width.get(type(v).__name__, 4) * len(v.values)
    return n
