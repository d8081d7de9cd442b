"""Class-balanced random subsets of a labelled set."""

from __future__ import annotations

import numpy as np

from ..errors import InfoProError


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of `n` samples spread as evenly as possible over the classes in `labels`.

    Every class present gets n // K samples (K = number of classes present);
    the n % K left over go one each to classes picked by the seeded RNG, so no
    class is favoured by its label. A class with too few samples gives all it
    has and the rest is shared among the others, so the total is always
    exactly n. Needs K <= n <= len(labels), so every class is represented.
    Deterministic for a given seed.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InfoProError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if not len(classes) <= n <= len(labels):
        raise InfoProError(
            f"a stratified subset of {n} is impossible from {len(labels)} samples of {len(classes)} classes; "
            f"choose n between {len(classes)} and {len(labels)}"
        )
    rng = np.random.default_rng(seed)
    quota = np.zeros(len(classes), dtype=np.int64)
    remaining = n
    while remaining > 0:
        open_ = np.flatnonzero(quota < counts)
        share, extra = divmod(remaining, len(open_))
        if share == 0:
            quota[rng.choice(open_, size=extra, replace=False)] += 1
            break
        added = np.minimum(share, counts[open_] - quota[open_])
        quota[open_] += added
        remaining -= int(added.sum())
    order = np.argsort(inverse, kind="stable")  # indices grouped by class, ascending within each
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chosen = [
        rng.choice(order[start : start + count], size=q, replace=False)
        for start, count, q in zip(starts, counts, quota)
    ]
    return np.sort(np.concatenate(chosen))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a `fraction` of `labels` that keeps every class's share (a validation hold-out).

    Each class gives round(fraction * its count) samples (largest remainders settle the rounding, so the
    total is round(fraction * N)), and at least one while keeping at least one, so both sides see every
    class. Deterministic for a given seed.
    """
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    total = int(round(fraction * len(labels)))
    if not 0 < fraction < 1 or not len(classes) <= total <= len(labels) - len(classes) or counts.min() < 2:
        raise InfoProError(
            f"a stratified hold-out of {fraction:g} ({total} of {len(labels)} samples, {len(classes)} classes, the "
            f"smallest with {counts.min()}) cannot leave every class on both sides; choose another fraction"
        )
    exact = fraction * counts
    quota = np.clip(np.floor(exact).astype(np.int64), 1, counts - 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for k in order:  # hand out what rounding left, largest remainders first
        if quota.sum() >= total:
            break
        if quota[k] < counts[k] - 1:
            quota[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=q, replace=False) for k, q in enumerate(quota)]
    return np.sort(np.concatenate(chosen))
