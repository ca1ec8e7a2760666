"""crossent.evaluation.bootstrap: paired bootstrap intervals cover the true difference.

Simulated models with a known gap in expected cross-entropy: the true probability of the
positive class is p ~ Uniform(0.1, 0.9); model a predicts p itself, model b predicts p + 0.1.
The true gap in expected cross-entropy is E_p[KL(p || p + 0.1)], integrated by SciPy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossent.evaluation import PairedBootstrap, bucket_of, bucketed_paired_bootstrap, paired_bootstrap, verdict

integrate = pytest.importorskip("scipy.integrate")
stats = pytest.importorskip("scipy.stats")

SHIFT = 0.1


def _true_gap() -> float:
    def kl(p):
        q = p + SHIFT
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    value, _ = integrate.quad(kl, 0.1, 0.9)
    return value / 0.8


def _simulate(rng, n):
    p = rng.uniform(0.1, 0.9, size=n)
    y = rng.random(n) < p
    q_b = p + SHIFT
    loss_a = -np.log(np.where(y, p, 1 - p))
    loss_b = -np.log(np.where(y, q_b, 1 - q_b))
    return loss_a, loss_b


def _coverage_bounds(reps, nominal):
    """Covered counts acceptable for a correct interval: a two-sided 99.9% binomial range,
    widened by 2 points for the percentile bootstrap's known small-sample undercoverage."""
    lo, hi = stats.binom.interval(0.999, reps, nominal)
    return lo - 0.02 * reps, hi


def test_paired_bootstrap_covers_the_true_gap_at_the_nominal_rate():
    gap = _true_gap()
    assert 0.01 < gap < 0.05  # a small gap: the intervals are informative, not trivial
    reps, covered = 200, 0
    for rep in range(reps):
        a, b = _simulate(np.random.default_rng(1000 + rep), 400)
        r = paired_bootstrap(a, b, n_resamples=400, confidence=0.9, seed=rep)
        covered += r.low <= gap <= r.high
    lo, hi = _coverage_bounds(reps, 0.9)
    assert lo <= covered <= hi, f"covered {covered} of {reps}"
    print(f"paired bootstrap: 90% intervals covered the true gap {covered} times of {reps}")


def test_bucketed_bootstrap_covers_the_true_gap_at_the_nominal_rate():
    gap = _true_gap()
    reps, covered, n, buckets = 200, 0, 3000, 300
    for rep in range(reps):
        a, b = _simulate(np.random.default_rng(5000 + rep), n)
        which = bucket_of(np.arange(n), n_buckets=buckets, seed=rep)
        r = bucketed_paired_bootstrap(np.bincount(which, weights=a, minlength=buckets),
                                      np.bincount(which, weights=b, minlength=buckets),
                                      np.bincount(which, minlength=buckets),
                                      n_resamples=400, confidence=0.9, seed=rep)
        assert r.difference == pytest.approx(np.mean(b - a), rel=1e-9, abs=1e-15)
        covered += r.low <= gap <= r.high
    lo, hi = _coverage_bounds(reps, 0.9)
    assert lo <= covered <= hi, f"covered {covered} of {reps}"
    print(f"bucketed bootstrap: 90% intervals covered the true gap {covered} times of {reps}")


def test_bucketed_interval_matches_the_normal_theory_width():
    # Large n: both intervals approach mean +- z * sd / sqrt(n) of the paired differences.
    a, b = _simulate(np.random.default_rng(7), 50_000)
    d = b - a
    half = stats.norm.ppf(0.975) * d.std(ddof=1) / math.sqrt(d.size)
    which = bucket_of(np.arange(d.size), n_buckets=5000, seed=1)
    r = bucketed_paired_bootstrap(np.bincount(which, weights=a), np.bincount(which, weights=b),
                                  np.bincount(which), n_resamples=2000, seed=1)
    assert (r.high - r.low) / 2 == pytest.approx(half, rel=0.1)
    assert r.low < d.mean() < r.high


def test_bucket_of_is_deterministic_and_looks_uniform():
    rows = np.arange(200_000)
    b1 = bucket_of(rows, n_buckets=100, seed=3)
    np.testing.assert_array_equal(b1[1000:2000], bucket_of(rows[1000:2000], n_buckets=100, seed=3))
    assert not np.array_equal(b1, bucket_of(rows, n_buckets=100, seed=4))
    chi2 = stats.chisquare(np.bincount(b1, minlength=100))
    assert chi2.pvalue > 1e-4
    # Sorted input does not give sorted buckets: neighbours are independent.
    assert abs(np.corrcoef(b1[:-1], b1[1:])[0, 1]) < 0.02


def test_same_seed_same_interval_and_a_no_difference_verdict():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 2.0, size=300)
    b = a + np.where(np.arange(300) % 2 == 0, 0.01, -0.01)  # differences +-0.01: mean exactly 0
    r1 = paired_bootstrap(a, b, seed=5)
    assert r1 == paired_bootstrap(a, b, seed=5)
    assert r1 != paired_bootstrap(a, b, seed=6)
    assert r1.low < 0 < r1.high and r1.difference == pytest.approx(0.0, abs=1e-15)
    assert verdict("a", "b", r1).startswith("no clear difference between a and b: b - a = ")


def test_verdict_wording_both_directions():
    r = PairedBootstrap(0.5, 0.458, -0.042, -0.053, -0.031, 0.95, 2000, 1000)
    assert verdict("a", "b", r) == "b is better than a by 0.042 nats per example, 95% CI [0.031, 0.053]"
    r = PairedBootstrap(0.458, 0.5, 0.042, 0.031, 0.053, 0.9, 2000, 1000)
    assert verdict("a", "b", r) == "a is better than b by 0.042 nats per example, 90% CI [0.031, 0.053]"


def test_bootstrap_argument_errors():
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="not finite"):
        paired_bootstrap([1.0, np.inf], [1.0, 2.0])
    with pytest.raises(ValueError, match="one entry per bucket"):
        bucketed_paired_bootstrap([1.0, 2.0], [1.0, 2.0], [1])
    with pytest.raises(ValueError, match="at least 2 examples"):
        bucketed_paired_bootstrap([1.0, 0.0], [1.0, 0.0], [1, 0])
