"""1-D k-means for weight sharing (numpy only).

``kmeans_1d(values, k, init="linear")`` -> ``(centroids, assignments)``. Initialisations from the
Deep Compression paper (Sec. 3.1): ``linear`` (evenly spaced between min and max, the paper's best),
``density`` (evenly spaced quantiles of the CDF), ``random`` (Forgy: k distinct weights drawn at
random), plus ``kmeans++`` (D^2 sampling). Then Lloyd iterations; in 1-D the assignment step is a
binary search over the midpoints between sorted centroids.
"""
import numpy as np

INITS = ("linear", "density", "random", "kmeans++")


def init_centroids(values, k, init="linear", seed=0):
    """Initial centroids (float64, sorted) for 1-D ``values``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("Cannot cluster an empty set of weights.")
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS}, got {init!r}.")
    lo, hi = float(values.min()), float(values.max())
    if init == "linear":
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


def kmeans_1d(values, k, init="linear", max_iter=30, tol=1e-7, seed=0):
    """Cluster 1-D ``values`` into ``k`` shared values.

    Returns ``(centroids, assignments)``: float64 centroids sorted ascending (an empty cluster keeps
    its previous centroid) and int64 indices with ``values.shape``.

    Example:
        >>> c, a = kmeans_1d(np.array([0.1, 0.12, 0.9, 1.0]), 2)
        >>> c.round(2).tolist(), a.tolist()
        ([0.11, 0.95], [0, 0, 1, 1])
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Number of clusters must be a positive integer, got {k!r}.")
    values = np.asarray(values)
    shape = values.shape
    flat = values.astype(np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("Cannot cluster weights containing NaN or infinity.")
    centroids = init_centroids(flat, int(k), init, seed)
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


__all__ = ["kmeans_1d", "init_centroids", "assign", "INITS"]
