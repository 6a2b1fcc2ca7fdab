"""1-D k-means for weight sharing (numpy only).

``kmeans_1d(values, k, init="linear")`` -> ``(centroids, assignments)``. Initialisations from the
Deep Compression paper (Sec. 3.1): ``linear`` (evenly spaced between min and max, the paper's best),
``density`` (evenly spaced quantiles of the CDF), ``random`` (Forgy: k distinct weights drawn at
random), plus ``kmeans++`` (D^2 sampling). Then Lloyd iterations; in 1-D the assignment step is a
binary search over the midpoints between sorted centroids.

``split_at_zero=True`` (what :func:`dc_keras.cluster` asks for when ``preserve_sparsity`` leaves the
pruned zeros out): the linear initialisation spaces the centroids evenly over the negative values
and over the positive values separately, ``k`` shared between the two sides in proportion to their
number of values (tfmot's sparsity-preserving initialisation). Linear over ``[min, max]`` would put
centroids in the empty interval ``(-t, t)`` that magnitude pruning leaves around zero; no value is
nearest to them, so they stay empty and the kernel ends with fewer shared values than ``2**bits``.

Values with at most ``k`` distinct entries (a kernel clustered and stripped before, clustered again
with as many clusters) keep them exactly: each distinct value is a centroid (the spare ones repeat
the largest and stay empty). Initialisation and Lloyd iterations could merge two of them into one
centroid and leave another empty: a fine-tuned 32-value kernel clustered again with 5 bits kept 23.
"""
import numpy as np

INITS = ("linear", "density", "random", "kmeans++")


def split_counts(values, k):
    """``(negative, positive)``: how many of ``k`` centroids the linear initialisation with
    ``split_at_zero`` gives the values below and above zero, in proportion to their numbers (as
    tfmot: ``round(k * negatives / non-zeros)``), with at least one for a side that has values
    (tfmot may give it none, and its weights then take the other side's sign) and at most as many
    as the side's distinct values (the rest go to the other side).

    Example:
        >>> split_counts(np.array([-0.5, -0.3, 0.2, 0.4, 0.6, 0.8]), 4)
        (1, 3)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    neg, pos = values[values < 0], values[values > 0]
    if neg.size == 0 or pos.size == 0 or k < 2:
        return (k, 0) if pos.size == 0 else (0, k)
    n_neg = int(np.clip(np.round(k * neg.size / (neg.size + pos.size)), 1, k - 1))
    d_neg, d_pos = np.unique(neg).size, np.unique(pos).size
    n_neg = min(n_neg, d_neg)
    if k - n_neg > d_pos:
        n_neg = min(k - d_pos, d_neg)
    return n_neg, k - n_neg


def init_centroids(values, k, init="linear", seed=0, split_at_zero=False):
    """Initial centroids (float64, sorted) for 1-D ``values``. ``split_at_zero``: the linear
    initialisation spaces the negative and the positive values' centroids separately
    (:func:`split_counts`), so none starts in an empty interval around zero (the other
    initialisations start at weight values and ignore it).

    Example:
        >>> init_centroids(np.array([-0.5, -0.3, 0.2, 0.4, 0.6, 0.8]), 4, split_at_zero=True).tolist()
        [-0.5, 0.2, 0.5, 0.8]
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("Cannot cluster an empty set of weights.")
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
    if not isinstance(split_at_zero, (bool, np.bool_)):
        raise ValueError(f"`split_at_zero` must be True or False, got {split_at_zero!r}.")
    lo, hi = float(values.min()), float(values.max())
    if init == "linear" and split_at_zero and lo < 0 < hi:
        n_neg, n_pos = split_counts(values, k)
        neg, pos = values[values < 0], values[values > 0]
        c = np.concatenate([np.linspace(lo, float(neg.max()), n_neg), np.linspace(float(pos.min()), hi, n_pos)])
    elif init == "linear":
        c = np.linspace(lo, hi, k)
    elif init == "density":
        c = np.quantile(values, (np.arange(k) + 0.5) / k)
    elif init == "random":
        rng = np.random.default_rng(seed)
        c = rng.choice(values, size=k, replace=values.size < k)
    else:  # kmeans++
        rng = np.random.default_rng(seed)
        sample = values if values.size <= 200_000 else rng.choice(values, 200_000, replace=False)
        c = [sample[rng.integers(sample.size)]]
        d2 = (sample - c[0]) ** 2
        for _ in range(1, k):
            total = d2.sum()
            if total <= 0:
                c.append(sample[rng.integers(sample.size)])
            else:
                c.append(sample[rng.choice(sample.size, p=d2 / total)])
            d2 = np.minimum(d2, (sample - c[-1]) ** 2)
        c = np.array(c)
    return np.sort(np.asarray(c, dtype=np.float64))


def assign(values, centroids):
    """Index of the nearest centroid (``centroids`` sorted ascending)."""
    mids = (centroids[1:] + centroids[:-1]) / 2.0
    return np.searchsorted(mids, values, side="left").astype(np.int64)


def _few_distinct(flat, k):
    """The sorted distinct values of ``flat`` when there are at most ``k`` of them, else None. Its
    first ``4k + 1`` values are looked at first: trained weights have more than ``k`` distinct ones
    there, so only a tensor of few values (a clustered one) is read whole."""
    if np.unique(flat[:4 * k + 1]).size > k:
        return None
    distinct = np.unique(flat)
    return distinct if distinct.size <= k else None


def kmeans_1d(values, k, init="linear", max_iter=30, tol=1e-7, seed=0, split_at_zero=False):
    """Cluster 1-D ``values`` into ``k`` shared values.

    Returns ``(centroids, assignments)``: float64 centroids sorted ascending (an empty cluster keeps
    its previous centroid) and int64 indices with ``values.shape``. At most ``k`` distinct values
    are kept exactly, each its own centroid. ``split_at_zero``: see
    :func:`init_centroids`; pass it for the non-zero weights of a pruned kernel, where a linear
    initialisation over ``[min, max]`` leaves the centroids inside the pruned interval empty.

    Example:
        >>> c, a = kmeans_1d(np.array([0.1, 0.12, 0.9, 1.0]), 2)
        >>> c.round(2).tolist(), a.tolist()
        ([0.11, 0.95], [0, 0, 1, 1])
        >>> pruned = np.array([-0.9, -0.8, -0.7, 0.5, 0.6, 0.7, 0.8])  # nothing in (-0.5, 0.5)
        >>> [np.unique(kmeans_1d(pruned, 4, split_at_zero=s)[1]).size for s in (False, True)]
        [3, 4]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Number of clusters must be a positive integer, got {k!r}.")
    values = np.asarray(values)
    shape = values.shape
    flat = values.astype(np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("Cannot cluster weights containing NaN or infinity.")
    centroids = init_centroids(flat, int(k), init, seed, split_at_zero)  # (also checks the arguments)
    distinct = _few_distinct(flat, int(k))
    if distinct is not None:  # each value its own centroid: exact (see the module docstring)
        centroids = np.concatenate([distinct, np.full(int(k) - distinct.size, distinct[-1])])
        return centroids, assign(flat, centroids).reshape(shape)
    for _ in range(max_iter):
        idx = assign(flat, centroids)
        sums = np.bincount(idx, weights=flat, minlength=centroids.size)
        counts = np.bincount(idx, minlength=centroids.size)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        new = np.sort(new)
        shift = np.max(np.abs(new - centroids))
        centroids = new
        if shift <= tol * max(1.0, float(np.max(np.abs(flat)))):
            break
    return centroids, assign(flat, centroids).reshape(shape)


__all__ = ["kmeans_1d", "init_centroids", "split_counts", "assign", "INITS"]
