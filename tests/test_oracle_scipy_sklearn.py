"""SciPy and scikit-learn as oracles.

SciPy: scipy.stats.entropy, scipy.special.entr / rel_entr / xlogy, and
scipy.spatial.distance.jensenshannon — which returns the SQUARE ROOT of the JS divergence (a
metric). scikit-learn: log_loss of a LogisticRegression fitted on its bundled digits data
(no download), against the index-target cross-entropy of the same held-out predictions.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import crossent

scipy_special = pytest.importorskip("scipy.special")
scipy_stats = pytest.importorskip("scipy.stats")
scipy_distance = pytest.importorskip("scipy.spatial.distance")


def _pairs(seed=0, shape=(20, 7)):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(shape[-1], 0.5), size=shape[:-1])
    q = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    p[0] = np.eye(shape[-1])[2]  # a one-hot row: 0 log 0 terms
    q[1, :3] = 0.0  # zeros in q under positive p: infinite KL
    q[1] /= q[1].sum()
    return p, q


@pytest.mark.parametrize("base", [None, 2, 10, 0.5])
def test_entropy_against_scipy(base):
    p, _ = _pairs()
    np.testing.assert_allclose(crossent.entropy(p, base=base), scipy_stats.entropy(p, base=base, axis=-1),
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(crossent.entropy(p), scipy_special.entr(p).sum(axis=-1), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("base", [None, 2, 10])
def test_kl_divergence_against_scipy(base):
    p, q = _pairs(1)
    expected = scipy_special.rel_entr(p, q).sum(axis=-1) / (1.0 if base is None else math.log(base))
    got = crossent.kl_divergence(p, q, base=base)
    assert got[1] == np.inf and expected[1] == np.inf
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got, scipy_stats.entropy(p, q, base=base, axis=-1), rtol=1e-13, atol=1e-15)


def test_cross_entropy_against_scipy():
    p, q = _pairs(2)
    expected = -scipy_special.xlogy(p, q).sum(axis=-1)
    got = crossent.cross_entropy(p, q)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    finite = np.isfinite(got)
    # Gibbs: H(p, q) = H(p) + KL(p || q), every term from SciPy
    np.testing.assert_allclose(got[finite], (scipy_stats.entropy(p, axis=-1)
                                             + scipy_stats.entropy(p, q, axis=-1))[finite], rtol=1e-12)


@pytest.mark.parametrize("base", [None, 2, math.e, 10])
def test_js_divergence_is_the_square_of_scipy_jensenshannon(base):
    p, q = _pairs(3)
    distance = scipy_distance.jensenshannon(p, q, base=base, axis=-1)  # sqrt of the divergence
    got = crossent.js_divergence(p, q, base=base)
    np.testing.assert_allclose(got, distance ** 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.sqrt(got), distance, rtol=1e-12, atol=1e-8)
    assert not np.allclose(got, distance)  # the square, not the distance itself


def test_js_on_axis_zero_against_scipy():
    p, q = _pairs(4, shape=(3, 5))
    np.testing.assert_allclose(crossent.js_divergence(p.T, q.T, axis=0),
                               scipy_distance.jensenshannon(p.T, q.T, axis=0) ** 2, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- scikit-learn
@pytest.fixture(scope="module")
def digits_predictions():
    """Held-out class probabilities of a LogisticRegression on sklearn's bundled digits."""
    datasets = pytest.importorskip("sklearn.datasets")
    linear_model = pytest.importorskip("sklearn.linear_model")
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        x / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a convergence warning does not matter for an oracle test
        model = linear_model.LogisticRegression(max_iter=300, C=0.5).fit(x_train, y_train)
    return model.predict_proba(x_test), y_test


def test_log_loss_against_sklearn(digits_predictions, backend):
    from sklearn.metrics import log_loss

    probs, y = digits_predictions
    assert probs.min() > 1e-15 and probs.max() < 1 - 1e-15  # log_loss would clip otherwise
    expected = log_loss(y, probs, labels=np.arange(10))
    assert crossent.softmax_cross_entropy(np.log(probs), y) == pytest.approx(expected, rel=1e-12)
    assert crossent.nll_loss(np.log(probs), y) == pytest.approx(expected, rel=1e-12)
    assert crossent.cross_entropy(np.eye(10)[y], probs).mean() == pytest.approx(expected, rel=1e-12)
    # log-loss in bits, and per-sample weights through "sum"
    assert crossent.cross_entropy(np.eye(10)[y], probs, base=2).mean() == pytest.approx(expected / math.log(2),
                                                                                         rel=1e-12)
    f32 = crossent.softmax_cross_entropy(np.log(probs).astype(np.float32), y)
    assert f32.dtype == np.float32 and f32 == pytest.approx(expected, rel=1e-6)


def test_binary_log_loss_against_sklearn(digits_predictions, backend):
    from sklearn.metrics import log_loss

    probs, y = digits_predictions
    p = np.clip(probs[:, 3] / (probs[:, 3] + probs[:, 8]), 1e-12, 1 - 1e-12)
    t = (y == 3).astype(np.float64)
    expected = log_loss(t, p)
    assert crossent.binary_cross_entropy(p, t) == pytest.approx(expected, rel=1e-12)
    assert crossent.sigmoid_binary_cross_entropy(np.log(p) - np.log1p(-p), t) == pytest.approx(expected, rel=1e-9)
