"""crossent.measures: entropy, cross_entropy, kl_divergence, js_divergence — worked examples,
edge conventions, axes, bases, normalize, dtypes. (SciPy as the oracle: test_oracle_scipy_sklearn.py;
50-digit accuracy: test_accuracy.py; bad inputs: test_checks.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

import crossent

MEASURES = [crossent.cross_entropy, crossent.kl_divergence, crossent.js_divergence]


# ----------------------------------------------------------------------------- worked examples
def test_worked_example_p_and_q():
    """p = (0.8, 0.1, 0.1), q = (0.2, 0.2, 0.6): H(p) = 0.639 nats, H(p, q) = 1.50 nats."""
    p, q = [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]
    h_p = -(0.8 * math.log(0.8) + 0.1 * math.log(0.1) + 0.1 * math.log(0.1))
    h_pq = -(0.8 * math.log(0.2) + 0.1 * math.log(0.2) + 0.1 * math.log(0.6))
    assert round(h_p, 3) == 0.639 and round(h_pq, 2) == 1.50
    assert crossent.entropy(p) == pytest.approx(h_p, rel=1e-15)
    assert crossent.cross_entropy(p, q) == pytest.approx(h_pq, rel=1e-15)
    assert crossent.kl_divergence(p, q) == pytest.approx(h_pq - h_p, rel=1e-14)  # Gibbs: H(p,q) = H(p) + KL


def test_worked_example_one_hot_b():
    assert crossent.cross_entropy([0.0, 1.0, 0.0], [0.228, 0.619, 0.153]) == pytest.approx(-math.log(0.619), rel=1e-15)


def test_worked_example_coins():
    assert crossent.entropy([0.5, 0.5], base=2) == 1.0  # a fair coin holds exactly one bit
    h = crossent.entropy([0.9, 0.1], base=2)
    assert h == pytest.approx(-(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1)), rel=1e-15)
    assert round(float(h), 3) == 0.469
    assert crossent.entropy([0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-15)  # nats


# ----------------------------------------------------------------------------- conventions
def test_zero_log_zero_is_zero():
    assert crossent.entropy([1.0, 0.0, 0.0]) == 0.0
    assert crossent.cross_entropy([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert crossent.kl_divergence([0.0, 1.0], [0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-15)


def test_zero_q_under_positive_p_is_infinite():
    assert crossent.cross_entropy([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert crossent.kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
    # but JS is always finite: at most log 2, reached by disjoint supports
    assert crossent.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2), rel=1e-15)
    assert crossent.js_divergence([1.0, 0.0], [0.0, 1.0], base=2) == 1.0


def test_kl_and_js_are_zero_on_equal_distributions_and_nonnegative():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=50)
    q = rng.dirichlet(np.ones(6), size=50)
    np.testing.assert_allclose(crossent.kl_divergence(p, p), 0.0, atol=1e-16)
    assert np.all(crossent.kl_divergence(p, q) >= 0)
    js = crossent.js_divergence(p, q)
    assert np.all((js >= 0) & (js <= math.log(2)))
    np.testing.assert_allclose(js, crossent.js_divergence(q, p), rtol=1e-15)  # symmetric
    np.testing.assert_allclose(crossent.js_divergence(p, p), 0.0, atol=1e-16)


def test_js_subnormal_entries_do_not_blow_up():
    """m = (p + q) / 2 underflowing to 0 for a subnormal q once made a term infinite (JS = log 2)."""
    js = crossent.js_divergence([1.0, 0.0], [1.0, 5e-324])
    assert 0.0 <= js < 1e-300


# ----------------------------------------------------------------------------- shapes, axes, bases
def test_axis_and_batch_shapes():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=(2, 3))  # (2, 3, 4)
    q = rng.dirichlet(np.ones(4), size=(2, 3))
    for f in MEASURES:
        out = f(p, q)
        assert out.shape == (2, 3)
        np.testing.assert_allclose(f(np.moveaxis(p, -1, 0), np.moveaxis(q, -1, 0), axis=0), out, rtol=1e-15)
    assert crossent.entropy(p, axis=-1).shape == (2, 3)
    assert np.ndim(crossent.entropy([0.25, 0.75])) == 0


@pytest.mark.parametrize("base", [2, 10, math.e, 0.5, 3.7])
def test_base_divides_by_log_base(base):
    p, q = [0.7, 0.2, 0.1], [0.1, 0.3, 0.6]
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert crossent.entropy(p, base=base) == pytest.approx(h / math.log(base), rel=1e-14)
    for f in MEASURES:
        assert f(p, q, base=base) == pytest.approx(f(p, q) / math.log(base), rel=1e-14)


def test_normalize_rescales_rows():
    counts = np.array([[8.0, 1.0, 1.0], [3.0, 3.0, 0.0]])
    np.testing.assert_allclose(crossent.entropy(counts, normalize=True),
                               [-(0.8 * math.log(0.8) + 0.2 * math.log(0.1)), math.log(2)], rtol=1e-15)
    assert crossent.cross_entropy([8, 1, 1], [2, 2, 6], normalize=True) == pytest.approx(
        -(0.8 * math.log(0.2) + 0.1 * math.log(0.2) + 0.1 * math.log(0.6)), rel=1e-15)
    with pytest.raises(ValueError, match=r"p\[0, 0\] = .*8.0.* is outside \[0, 1\]; pass normalize=True"):
        crossent.entropy(counts)
    with pytest.raises(ValueError, match=r"p row \[1\] sums to 0.6.*normalize=True"):
        crossent.entropy([[0.5, 0.5], [0.3, 0.3]])


@pytest.mark.parametrize("dtype,expected", [(np.float16, np.float32), (np.float32, np.float32),
                                            (np.float64, np.float64)])
def test_dtypes_and_inputs_unchanged(dtype, expected):
    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.125, 0.75]], dtype=dtype)
    q = np.asfortranarray(np.array([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]], dtype=dtype))
    p0, q0 = p.copy(), q.copy()
    assert crossent.entropy(p).dtype == expected
    for f in MEASURES:
        out = f(p, q, base=2)
        assert out.dtype == expected
        assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(q, q0)
    assert crossent.entropy(p[0], base=2) == 1.5  # dyadic: exact in every dtype


def test_float16_rows_are_checked_at_float16_tolerance():
    """(0.1, 0.2, 0.7) rounded to float16 sums to 1.00012: rounding, not a bad row."""
    p = np.array([0.1, 0.2, 0.7], dtype=np.float16)
    h = crossent.entropy(p)
    assert h.dtype == np.float32
    pd = p.astype(np.float64)
    assert h == pytest.approx(-(pd * np.log(pd)).sum(), rel=1e-6)
    with pytest.raises(ValueError, match="p sums to"):
        crossent.entropy(np.array([0.1, 0.2, 0.6], dtype=np.float16))


# ----------------------------------------------------------------------------- normalize at the edges of float range (issue 9)
@pytest.mark.parametrize("scale", [1e308, 1.7e308, 5e-324 * 2**20, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalize_is_exact_for_any_finite_row(scale, dtype):
    """[1e308, 1e308] summed to inf and entropy(..., normalize=True) returned 0.0. Rows are
    rescaled by their maximum first; the expected values are those of the rows 2:1:1 and
    1:1:2 written out by hand (Python's math module)."""
    if dtype == np.float32 and scale > 3e38:
        scale = 3e38
    if dtype == np.float32 and scale < 1e-38:
        scale = 1e-38
    p = np.array([2.0, 1.0, 1.0]) * (scale / 2)
    q = np.array([1.0, 1.0, 2.0]) * (scale / 2)
    p, q = p.astype(dtype), q.astype(dtype)
    pn, qn = [0.5, 0.25, 0.25], [0.25, 0.25, 0.5]
    h = -sum(a * math.log(a) for a in pn)
    ce = -sum(a * math.log(b) for a, b in zip(pn, qn))
    m = [(a + b) / 2 for a, b in zip(pn, qn)]
    js = 0.5 * sum(a * math.log(a / c) for a, c in zip(pn, m)) \
        + 0.5 * sum(b * math.log(b / c) for b, c in zip(qn, m))
    rtol = 1e-15 if dtype == np.float64 else 1e-6
    assert float(crossent.entropy(p, normalize=True)) == pytest.approx(h, rel=rtol)
    assert float(crossent.cross_entropy(p, q, normalize=True)) == pytest.approx(ce, rel=rtol)
    assert float(crossent.kl_divergence(p, q, normalize=True)) == pytest.approx(ce - h, rel=rtol)
    assert float(crossent.js_divergence(p, q, normalize=True)) == pytest.approx(js, rel=rtol)


def test_normalize_huge_row_reproducer():
    with np.errstate(all="raise"):  # no overflow on the way either
        assert float(crossent.entropy([1e308, 1e308], normalize=True)) == math.log(2)
