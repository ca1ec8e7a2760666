"""Paired bootstrap comparison of two models by their per-example cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks

__all__ = ["PairedBootstrap", "paired_bootstrap", "verdict"]


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
    n_resamples = int(_checks.check_scalar(n_resamples, "n_resamples", low=100))
    confidence = _checks.check_scalar(confidence, "confidence", low=0.0, high=1.0,
                                      low_open=True, high_open=True)
    d = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # Resample in blocks so memory stays O(block * n) whatever n_resamples is.
    block = max(1, int(2**22 // d.size))
    for start in range(0, n_resamples, block):
        stop = min(n_resamples, start + block)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedBootstrap(mean_a=float(a.mean()), mean_b=float(b.mean()), difference=float(d.mean()),
                           low=float(low), high=float(high), confidence=confidence,
                           n_resamples=n_resamples, n_examples=int(d.size))


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
