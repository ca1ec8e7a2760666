"""crossent.functional: the stable building blocks against SciPy, at the infinities, and
their dtypes. (50-digit accuracy over random inputs: test_accuracy.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

import crossent

special = pytest.importorskip("scipy.special")

UTILITIES = [crossent.logsumexp, crossent.softmax, crossent.log_softmax, crossent.sigmoid,
             crossent.log_sigmoid]


def _x(seed=0, shape=(6, 5), scale=30.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_against_scipy(axis):
    x = _x(shape=(4, 5, 3))
    np.testing.assert_allclose(crossent.logsumexp(x, axis=axis), special.logsumexp(x, axis=axis), rtol=1e-14)
    np.testing.assert_allclose(crossent.logsumexp(x, axis=axis, keepdims=True),
                               special.logsumexp(x, axis=axis, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(crossent.softmax(x, axis=axis), special.softmax(x, axis=axis), rtol=1e-13,
                               atol=1e-300)
    np.testing.assert_allclose(crossent.log_softmax(x, axis=axis), special.log_softmax(x, axis=axis), rtol=1e-13)


def test_sigmoid_family_against_scipy():
    x = np.concatenate([_x().ravel(), [-800.0, -40.0, 0.0, 40.0, 800.0, -1e300, 1e300]])
    np.testing.assert_allclose(crossent.sigmoid(x), special.expit(x), rtol=1e-15, atol=0)
    np.testing.assert_allclose(crossent.log_sigmoid(x), special.log_expit(x), rtol=1e-15, atol=0)


def test_large_and_infinite_inputs():
    assert crossent.logsumexp([1e308, 1e308]) == pytest.approx(1e308, rel=1e-15)  # no overflow
    assert crossent.logsumexp([-np.inf, -np.inf]) == -np.inf
    assert crossent.logsumexp([np.inf, 0.0]) == np.inf
    assert crossent.logsumexp([-np.inf, 0.0]) == 0.0
    assert np.isnan(crossent.logsumexp([np.nan, 0.0]))
    np.testing.assert_array_equal(crossent.softmax([-np.inf, 0.0, 0.0]), [0.0, 0.5, 0.5])
    np.testing.assert_array_equal(crossent.log_softmax([-np.inf, 0.0]), [-np.inf, 0.0])
    np.testing.assert_array_equal(crossent.softmax([1e4, -1e4]), [1.0, 0.0])
    np.testing.assert_array_equal(crossent.log_softmax([1e4, -1e4]), [0.0, -2e4])
    assert np.isnan(crossent.log_softmax([-np.inf, -np.inf])).all()  # no distribution: NaN, like SciPy
    with np.errstate(invalid="ignore"):
        assert np.isnan(special.log_softmax([-np.inf, -np.inf])).all()
    np.testing.assert_array_equal(crossent.sigmoid([-np.inf, np.inf]), [0.0, 1.0])
    np.testing.assert_array_equal(crossent.log_sigmoid([-np.inf, np.inf]), [-np.inf, 0.0])
    assert crossent.log_sigmoid(-1e300) == -1e300
    # log sigma(40) = -log1p(e^-40): all the digits of a number near -4.2e-18
    assert crossent.log_sigmoid(40.0) == pytest.approx(-math.log1p(math.exp(-40.0)), rel=1e-15)
    assert np.isnan(crossent.sigmoid(np.nan)) and np.isnan(crossent.log_sigmoid(np.nan))


@pytest.mark.parametrize("f", UTILITIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype,expected", [(np.float16, np.float32), (np.float32, np.float32),
                                            (np.float64, np.float64), (np.int64, np.float64)])
def test_dtypes_and_inputs_unchanged(f, dtype, expected):
    x = np.asfortranarray(np.arange(12, dtype=dtype).reshape(3, 4) - 5)
    before = x.copy()
    out = f(x)
    assert np.asarray(out).dtype == expected
    np.testing.assert_array_equal(x, before)
    ref = f(x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), ref, rtol=5e-7 if expected == np.float32 else 0)


def test_one_hot():
    np.testing.assert_array_equal(crossent.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    out = crossent.one_hot(np.array([[1], [0]]), 2, dtype=np.float32)
    assert out.shape == (2, 1, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], np.eye(2)[[1, 0]])
    assert crossent.one_hot(np.zeros(0, dtype=int), 4).shape == (0, 4)


def test_smooth_labels():
    t = crossent.one_hot([1, 2], 4)
    out = crossent.smooth_labels(t, label_smoothing=0.2)
    np.testing.assert_allclose(out, [[0.05, 0.85, 0.05, 0.05], [0.05, 0.05, 0.85, 0.05]], rtol=1e-15)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(crossent.smooth_labels(t, label_smoothing=0.0), t)
    np.testing.assert_allclose(crossent.smooth_labels(t, label_smoothing=1.0), 0.25)
    along0 = crossent.smooth_labels(t.T, label_smoothing=0.2, axis=0)
    np.testing.assert_allclose(along0, out.T, rtol=1e-15)
    assert crossent.smooth_labels(t.astype(np.float32), label_smoothing=0.1).dtype == np.float32
