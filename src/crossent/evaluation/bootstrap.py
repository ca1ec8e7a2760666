"""Paired bootstrap comparison of two models by their per-example cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks

__all__ = ["PairedBootstrap", "paired_bootstrap", "bucketed_paired_bootstrap", "bucket_of", "verdict"]


@dataclass(frozen=True)
class PairedBootstrap:
    """Result of :func:`paired_bootstrap`; ``difference`` is ``mean_b - mean_a``.

    Lower cross-entropy is better, so a negative difference favours model b.
    """

    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_examples: int


def paired_bootstrap(losses_a, losses_b, *, n_resamples=2000, confidence=0.95, seed=0):
    r"""Percentile confidence interval of the mean difference of paired per-example losses.

    Examples are resampled with replacement, the same indices for both models (the pairing
    removes the variance the two models share); each resample gives
    :math:`\bar d^* = \operatorname{mean}(\ell_b - \ell_a)^*`.

    Parameters
    ----------
    losses_a, losses_b : array_like
        Per-example losses (e.g. cross-entropy in nats) of models a and b on the same examples,
        1-D of equal length.
    n_resamples : int, default 2000
        Number of bootstrap resamples (at least 100).
    confidence : float, default 0.95
        Coverage of the interval, in (0, 1).
    seed : int, default 0
        Seed of the resampling: the same inputs and seed give the same interval.

    Returns
    -------
    PairedBootstrap

    Raises
    ------
    ValueError
        Lengths differ, fewer than 2 examples, or a non-finite loss.

    References
    ----------
    B. Efron, R. Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall (1993), ch. 13.

    Examples
    --------
    >>> from crossent.evaluation import paired_bootstrap
    >>> r = paired_bootstrap([0.5, 0.7, 0.2, 0.9], [0.4, 0.6, 0.1, 0.8])
    >>> round(r.difference, 6), round(r.low, 6), round(r.high, 6)
    (-0.1, -0.1, -0.1)
    """
    a = _checks.check_floating(losses_a, "losses_a").astype(np.float64).ravel()
    b = _checks.check_floating(losses_b, "losses_b").astype(np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"losses_a has {a.size} examples and losses_b {b.size}; they must be paired")
    if a.size < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 examples, got {a.size}")
    _checks.check_finite_values(a, "losses_a")
    _checks.check_finite_values(b, "losses_b")
    # One example per unit: the ordinary paired bootstrap.
    return _resample_units(a, b, np.ones_like(a), n_resamples, confidence, seed)


def _resample_units(a, b, n, n_resamples, confidence, seed):
    """Percentile interval of sum(b - a)* / sum(n)* over resamples of the units (examples, or
    buckets of n examples whose losses sum to a and b), the same draws for both models."""
    n_resamples = int(_checks.check_scalar(n_resamples, "n_resamples", low=100))
    confidence = _checks.check_scalar(confidence, "confidence", low=0.0, high=1.0,
                                      low_open=True, high_open=True)
    d = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # Resample in blocks so memory stays O(block * units) whatever n_resamples is.
    block = max(1, int(2**22 // d.size))
    for start in range(0, n_resamples, block):
        stop = min(n_resamples, start + block)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].sum(axis=1) / n[idx].sum(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    total = n.sum()
    return PairedBootstrap(mean_a=float(a.sum() / total), mean_b=float(b.sum() / total),
                           difference=float(d.sum() / total), low=float(low), high=float(high),
                           confidence=confidence, n_resamples=n_resamples, n_examples=int(total))


def bucket_of(rows, *, n_buckets, seed=0) -> np.ndarray:
    """Bucket in ``[0, n_buckets)`` of each row position: a seeded SplitMix64 hash.

    The assignment looks random (independent of the data and of the row order) but depends
    only on the position and the seed, so the same row goes to the same bucket in every file
    and in every batch split.

    Examples
    --------
    >>> from crossent.evaluation.bootstrap import bucket_of
    >>> b = bucket_of(range(100_000), n_buckets=10)
    >>> int(b.min()), int(b.max()), bool(abs(int((b == 3).sum()) - 10_000) < 400)
    (0, 9, True)
    """
    n_buckets = int(_checks.check_scalar(n_buckets, "n_buckets", low=1))
    x = np.asarray(rows, dtype=np.uint64)
    # SplitMix64 (Steele, Lea, Flood 2014): uint64 arithmetic wraps modulo 2**64.
    z = x + np.uint64(0x9E3779B97F4A7C15 * (int(seed) + 1) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_buckets)).astype(np.int64)


def bucketed_paired_bootstrap(sums_a, sums_b, counts, *, n_resamples=2000, confidence=0.95, seed=0):
    r"""Paired bootstrap from per-bucket loss sums: memory O(buckets), not O(examples).

    Each example was put in one of B buckets at random (:func:`bucket_of`), independently of
    the data; bucket k holds :math:`n_k` examples whose losses sum to :math:`A_k` (model a)
    and :math:`B_k` (model b). The buckets are then independent and identically distributed
    clusters, and resampling them with replacement is the cluster bootstrap of the ratio
    estimator

    .. math:: \bar d^* = \frac{\sum_k (B_k - A_k)^*}{\sum_k n_k^*},

    whose percentile interval is consistent for the mean paired difference as B grows
    (Davison & Hinkley 1997, section 3.8). With one example per bucket it is the ordinary
    paired bootstrap; with thousands of buckets its interval matches it closely, so files of
    any length are compared in bounded memory.

    Parameters
    ----------
    sums_a, sums_b : array_like, shape (B,)
        Per-bucket sums of the per-example losses of models a and b.
    counts : array_like of int, shape (B,)
        Examples per bucket.
    n_resamples, confidence, seed
        As in :func:`paired_bootstrap`.

    Returns
    -------
    PairedBootstrap
        ``n_examples`` is the total count; the means are the exact means over all examples.

    References
    ----------
    A. C. Davison, D. V. Hinkley, "Bootstrap Methods and their Application", Cambridge
    University Press (1997), sections 3.8 (clustered data) and 3.7 (ratio estimators).

    Examples
    --------
    >>> from crossent.evaluation.bootstrap import bucketed_paired_bootstrap
    >>> r = bucketed_paired_bootstrap([1.0, 2.0, 1.5], [0.5, 1.5, 1.0], [2, 4, 3])
    >>> round(r.difference, 6), r.n_examples
    (-0.166667, 9)
    """
    a = _checks.check_floating(sums_a, "sums_a").astype(np.float64).ravel()
    b = _checks.check_floating(sums_b, "sums_b").astype(np.float64).ravel()
    n = np.asarray(counts)
    if a.shape != b.shape or n.shape != a.shape:
        raise ValueError(f"sums_a, sums_b and counts must have one entry per bucket; got "
                         f"{a.size}, {b.size} and {n.size}")
    if n.dtype.kind not in "iu" or (n < 0).any():
        raise ValueError("counts must be non-negative integers")
    _checks.check_finite_values(a, "sums_a")
    _checks.check_finite_values(b, "sums_b")
    keep = n > 0
    a, b, n = a[keep], b[keep], n[keep].astype(np.float64)
    if n.sum() < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 examples, got {int(n.sum())}")
    return _resample_units(a, b, n, n_resamples, confidence, seed)


def verdict(name_a: str, name_b: str, result: PairedBootstrap, unit: str = "nats") -> str:
    """Plain words for a :class:`PairedBootstrap` (lower cross-entropy is better).

    Examples
    --------
    >>> from crossent.evaluation import PairedBootstrap, verdict
    >>> r = PairedBootstrap(0.5, 0.458, -0.042, -0.053, -0.031, 0.95, 2000, 1000)
    >>> verdict("a", "b", r)
    'b is better than a by 0.042 nats per example, 95% CI [0.031, 0.053]'
    """
    pct = f"{100 * result.confidence:g}%"
    if result.high < 0:  # b's loss is lower throughout the interval
        better, worse, lo, hi = name_b, name_a, -result.high, -result.low
    elif result.low > 0:
        better, worse, lo, hi = name_a, name_b, result.low, result.high
    else:
        return (f"no clear difference between {name_a} and {name_b}: {name_b} - {name_a} = "
                f"{result.difference:+.3g} {unit} per example, {pct} CI "
                f"[{result.low:+.3g}, {result.high:+.3g}]")
    return (f"{better} is better than {worse} by {abs(result.difference):.3g} {unit} per example, "
            f"{pct} CI [{lo:.3g}, {hi:.3g}]")
