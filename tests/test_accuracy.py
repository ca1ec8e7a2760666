"""SPEC §4: values and gradients against a 50-digit mpmath reference, property-based.

float64 results must agree to 1e-12 and float32 results to 5e-6, relative above 1 and
absolute below (tests/_mp_reference.assert_close). A float32 result is compared with the
mpmath value of its own float32 inputs, converted exactly. Inputs range over ordinary and
adversarial values: logits up to +-1e5, near-one-hot distributions, probabilities of exactly
0 and 1, many classes.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import _mp_reference as mpr
import crossent

TOL = {np.float64: 1e-12, np.float32: 5e-6}
DTYPES = [np.float64, np.float32]


# ----------------------------------------------------------------------------- strategies
def _logit_values(dtype):
    """Ordinary logits, huge ones, and exact ties with huge ones."""
    width = 32 if dtype is np.float32 else 64
    beyond = [1e15, -1e15] if dtype is np.float32 else [1e15, -1e15, 1e100, -1e100]
    return st.one_of(
        st.floats(-20, 20, width=width),
        st.floats(-1e5, 1e5, width=width),
        st.sampled_from([0.0, 1e4, -1e4, 1e4 + 0.5, -1e4 - 0.5, 1e5, -1e5, 37.0, -37.0]),
        st.sampled_from([float(dtype(v)) for v in beyond]),
    )


def _unit_values(dtype):
    """Values in [0, 1], with extra weight on 0, 1 and the values next to them."""
    width = 32 if dtype is np.float32 else 64
    info = np.finfo(dtype)
    # float64 subnormal probabilities are left out: for them the element gradient -t/p
    # overflows float64 before a "mean" could scale it back into range (float32 subnormals
    # are in: their element gradients are formed in float64).
    return st.one_of(
        st.floats(0, 1, width=width, allow_subnormal=dtype is np.float32),
        st.sampled_from([0.0, 1.0, 0.5, float(info.eps), 1.0 - float(info.epsneg),
                         float(info.tiny), 1e-30]),
    )


@st.composite
def logits_block(draw, dtype, max_rows=3, max_classes=7):
    n = draw(st.integers(1, max_rows))
    c = draw(st.integers(2, max_classes))
    return draw(hnp.arrays(dtype, (n, c), elements=_logit_values(dtype)))


@st.composite
def near_one_hot(draw, dtype, shape):
    """Target rows holding 1 - delta on one class and delta spread over the others."""
    n, c = shape
    rows = []
    for _ in range(n):
        k = draw(st.integers(0, c - 1))
        delta = draw(st.sampled_from([0.0, 1e-12, 1e-6, 0.3]))
        row = np.full(c, delta / (c - 1))
        row[k] = 1.0 - delta
        rows.append(row)
    return np.array(rows).astype(dtype)


@st.composite
def masked(draw, x):
    """Set some logits to -inf (masked classes); sometimes none, sometimes a target's."""
    mask = draw(hnp.arrays(np.bool_, x.shape, elements=st.sampled_from([False, False, False, True])))
    if draw(st.booleans()):
        return x
    return np.where(mask, -np.inf, x).astype(x.dtype)


def class_weight(c):
    return st.one_of(st.none(), hnp.arrays(np.float64, c, elements=st.just(0.0) | st.floats(1e-3, 5)))


def _check(value_grad, expected_value, expected_grad, dtype, what, row_losses=None):
    """Compare a value and its gradient; rows whose loss is infinite have no gradient to
    compare (the value itself must then be inf)."""
    value, g = value_grad
    assert np.asarray(value).dtype == dtype and g.dtype == dtype
    mpr.assert_close(value, expected_value, TOL[dtype], f"{what} value")
    if row_losses is not None:
        finite = np.isfinite(mpr.to_float(row_losses))
        expected_grad = [row for row, ok in zip(expected_grad, finite) if ok]
        g = g[finite]
    mpr.assert_close(g, expected_grad, TOL[dtype], f"{what} gradient")


# ----------------------------------------------------------------------------- softmax family
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_cross_entropy_index(backend, dtype, data):
    x = data.draw(logits_block(dtype).flatmap(masked), label="logits")
    n, c = x.shape
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.sampled_from(list(range(c)) + [-100])), label="labels")
    weight = data.draw(class_weight(c), label="weight")
    eps = data.draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0, 1), label="label_smoothing")
    z_loss = data.draw(st.sampled_from([0.0, 1e-4, 0.5]), label="z_loss")
    softcap = data.draw(st.none() | st.floats(0.5, 50), label="softcap")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    opts = dict(weight=weight, ignore_index=-100, label_smoothing=eps, z_loss=z_loss, softcap=softcap)
    losses, grads, den = mpr.softmax_cross_entropy(x, labels, **opts)
    per_row = crossent.softmax_cross_entropy(x, labels, reduction="none", **opts)
    mpr.assert_close(per_row, losses, TOL[dtype], "per-row loss")
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.softmax_cross_entropy)(x, labels, reduction=reduction, **opts),
           value, g, dtype, reduction, row_losses=losses)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_cross_entropy_dense(backend, dtype, data):
    x = data.draw(logits_block(dtype).flatmap(masked), label="logits")
    t = data.draw(st.one_of(hnp.arrays(dtype, x.shape, elements=_unit_values(dtype)),
                            near_one_hot(dtype, x.shape)), label="targets")
    weight = data.draw(class_weight(x.shape[1]), label="weight")
    eps = data.draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0, 1), label="label_smoothing")
    z_loss = data.draw(st.sampled_from([0.0, 1e-4, 0.5]), label="z_loss")
    softcap = data.draw(st.none() | st.floats(0.5, 50), label="softcap")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    opts = dict(weight=weight, label_smoothing=eps, z_loss=z_loss, softcap=softcap)
    losses, grads, den = mpr.softmax_cross_entropy(x, t, **opts)
    mpr.assert_close(crossent.softmax_cross_entropy(x, t, reduction="none", **opts), losses,
                     TOL[dtype], "per-row loss")
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.softmax_cross_entropy)(x, t, reduction=reduction, **opts),
           value, g, dtype, reduction, row_losses=losses)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_nll_loss(backend, dtype, data):
    x = data.draw(logits_block(dtype), label="logits")
    log_probs = crossent.log_softmax(x)  # any real numbers would do: nll is linear in them
    n, c = x.shape
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.sampled_from(list(range(c)) + [-1])), label="labels")
    weight = data.draw(class_weight(c), label="weight")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    losses, grads, den = mpr.nll_loss(log_probs, labels, weight=weight, ignore_index=-1)
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.nll_loss)(log_probs, labels, weight=weight, ignore_index=-1,
                                                      reduction=reduction),
           value, g, dtype, reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_focal_loss(backend, dtype, data):
    x = data.draw(logits_block(dtype).flatmap(masked), label="logits")
    n, c = x.shape
    labels = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)), label="labels")
    alpha = data.draw(st.one_of(st.none(), st.floats(0, 1),
                                hnp.arrays(np.float64, c, elements=st.floats(0, 2))), label="alpha")
    gamma = data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]) | st.floats(0, 5), label="gamma")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    losses, grads, den = mpr.softmax_focal_loss(x, labels, alpha=alpha, gamma=gamma)
    mpr.assert_close(crossent.softmax_focal_loss(x, labels, alpha=alpha, gamma=gamma, reduction="none"),
                     losses, TOL[dtype], "per-row loss")
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.softmax_focal_loss)(x, labels, alpha=alpha, gamma=gamma,
                                                                reduction=reduction),
           value, g, dtype, reduction, row_losses=losses)


# ----------------------------------------------------------------------------- binary family
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_sigmoid_binary_cross_entropy(backend, dtype, data):
    x = data.draw(logits_block(dtype), label="logits")
    t = data.draw(hnp.arrays(dtype, x.shape, elements=_unit_values(dtype)), label="targets")
    c = x.shape[1]
    weight = data.draw(st.none() | hnp.arrays(np.float64, x.shape, elements=st.floats(0, 3)), label="weight")
    pos_weight = data.draw(st.none() | hnp.arrays(np.float64, c, elements=st.floats(0, 10)), label="pos_weight")
    eps = data.draw(st.sampled_from([0.0, 0.1]) | st.floats(0, 1), label="label_smoothing")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    opts = dict(weight=weight, pos_weight=pos_weight, label_smoothing=eps)
    losses, grads, den = mpr.sigmoid_binary_cross_entropy(x, t, **opts)
    mpr.assert_close(crossent.sigmoid_binary_cross_entropy(x, t, reduction="none", **opts).ravel(),
                     losses, TOL[dtype], "element-wise loss")
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.sigmoid_binary_cross_entropy)(x, t, reduction=reduction, **opts),
           value, g, dtype, reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_binary_cross_entropy(backend, dtype, data):
    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 5)), label="shape")
    p = data.draw(hnp.arrays(dtype, shape, elements=_unit_values(dtype)), label="probs")
    t = data.draw(hnp.arrays(dtype, shape, elements=_unit_values(dtype)), label="targets")
    weight = data.draw(st.none() | hnp.arrays(np.float64, shape[1], elements=st.floats(0, 3)), label="weight")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    losses, grads, den = mpr.binary_cross_entropy(p, t, weight=weight)
    mpr.assert_close(crossent.binary_cross_entropy(p, t, weight=weight, reduction="none").ravel(),
                     losses, TOL[dtype], "element-wise loss")
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.binary_cross_entropy)(p, t, weight=weight, reduction=reduction),
           value, g, dtype, reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_sigmoid_focal_loss(backend, dtype, data):
    x = data.draw(logits_block(dtype), label="logits")
    t = data.draw(hnp.arrays(dtype, x.shape, elements=_unit_values(dtype)), label="targets")
    alpha = data.draw(st.none() | st.sampled_from([0.25, 0.5]) | st.floats(0, 1), label="alpha")
    gamma = data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]) | st.floats(0, 5), label="gamma")
    reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    losses, grads, den = mpr.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma)
    mpr.assert_close(crossent.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction="none").ravel(),
                     losses, TOL[dtype], "element-wise loss")
    value, g = mpr.reduce(losses, grads, den, reduction)
    _check(crossent.value_and_grad(crossent.sigmoid_focal_loss)(x, t, alpha=alpha, gamma=gamma,
                                                                reduction=reduction),
           value, g, dtype, reduction)


# ----------------------------------------------------------------------------- many classes
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=8)
@given(data=st.data())
def test_softmax_cross_entropy_many_classes(backend, dtype, data):
    """C in the hundreds: the sums over classes keep their accuracy."""
    c = data.draw(st.integers(100, 400), label="C")
    x = data.draw(hnp.arrays(dtype, (2, c), elements=_logit_values(dtype)), label="logits")
    labels = data.draw(hnp.arrays(np.int64, 2, elements=st.integers(0, c - 1)), label="labels")
    eps = data.draw(st.sampled_from([0.0, 0.1]), label="label_smoothing")
    z_loss = data.draw(st.sampled_from([0.0, 1e-4]), label="z_loss")
    opts = dict(label_smoothing=eps, z_loss=z_loss)
    losses, grads, den = mpr.softmax_cross_entropy(x, labels, **opts)
    value, g = mpr.reduce(losses, grads, den, "mean")
    _check(crossent.value_and_grad(crossent.softmax_cross_entropy)(x, labels, **opts), value, g, dtype,
           "mean", row_losses=losses)



@functools.lru_cache(maxsize=None)
def _large_vocabulary_case():
    """One row of C = 10^5 float32-representable logits (so one mpmath reference serves both
    dtypes), with a +-1e4 outlier, and its 50-digit loss and gradient."""
    rng = np.random.default_rng(7)
    c = 100_000
    x = (rng.standard_normal((1, c)) * 8).astype(np.float32)
    x[0, 17] = 1e4
    x[0, 99_999] = -1e4
    labels = np.array([31_337])
    losses, grads, _ = mpr.softmax_cross_entropy(x, labels, label_smoothing=0.1)
    return x, labels, losses, grads


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_large_vocabulary(backend, dtype):
    x, labels, losses, grads = _large_vocabulary_case()
    value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)(
        x.astype(dtype), labels, label_smoothing=0.1, reduction="sum")
    mpr.assert_close(value, losses[0], TOL[dtype], "C=1e5 value")
    mpr.assert_close(g, grads, TOL[dtype], "C=1e5 gradient")


# ----------------------------------------------------------------------------- utilities
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_utilities(dtype, data):
    x = data.draw(logits_block(dtype, max_classes=6), label="x")
    tol = TOL[dtype]
    mpr.assert_close(crossent.logsumexp(x), mpr.logsumexp_rows(x), tol, "logsumexp")
    mpr.assert_close(crossent.log_softmax(x), mpr.log_softmax_rows(x), tol, "log_softmax")
    mpr.assert_close(crossent.softmax(x), mpr.softmax_rows(x), tol, "softmax")
    mpr.assert_close(crossent.sigmoid(x).ravel(), mpr.sigmoid(x), tol, "sigmoid")
    mpr.assert_close(crossent.log_sigmoid(x).ravel(), mpr.log_sigmoid(x), tol, "log_sigmoid")
    for f in (crossent.logsumexp, crossent.log_softmax, crossent.softmax, crossent.sigmoid,
              crossent.log_sigmoid):
        assert f(x).dtype == dtype, f.__name__


@st.composite
def distributions(draw, dtype, shape):
    """Rows that sum to 1 in ``dtype`` up to rounding: random, near-one-hot, or with zeros."""
    kind = draw(st.sampled_from(["random", "near_one_hot", "sparse"]))
    if kind == "near_one_hot":
        return draw(near_one_hot(dtype, shape))
    raw = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
    if kind == "sparse":
        raw = np.where(raw < 0.5, 0.0, raw)
    raw[:, 0] += 1e-3  # no all-zero row
    return (raw / raw.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_measures(dtype, data):
    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(2, 6)), label="shape")
    p = data.draw(distributions(dtype, shape), label="p")
    q = data.draw(distributions(dtype, shape), label="q")
    tol = TOL[dtype]
    mpr.assert_close(crossent.entropy(p), mpr.entropy_rows(p), tol, "entropy")
    mpr.assert_close(crossent.cross_entropy(p, q), mpr.cross_entropy_rows(p, q), tol, "cross_entropy")
    mpr.assert_close(crossent.kl_divergence(p, q), mpr.kl_rows(p, q), tol, "kl_divergence")
    mpr.assert_close(crossent.js_divergence(p, q), mpr.js_rows(p, q), tol, "js_divergence")


# ----------------------------------------------------------------------------- the reference itself
@pytest.mark.parametrize("case", ["index", "dense", "focal", "sigmoid_focal"])
def test_mp_reference_gradients_match_mp_finite_differences(case):
    """The analytic mpmath gradients against 50-digit central differences (h = 1e-15), so the
    reference's own derivations are checked independently of crossent."""
    import mpmath

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4)) * 3
    if case in ("index", "dense"):
        t = np.array([2, 0]) if case == "index" else rng.dirichlet(np.ones(4), size=2)
        opts = dict(weight=np.array([1.0, 2.0, 0.5, 3.0]), label_smoothing=0.2, z_loss=0.1, softcap=4.0)

        def f(xx):
            return mpr.softmax_cross_entropy(xx, t, **opts)[0]

        grads = mpr.softmax_cross_entropy(x, t, **opts)[1]
    elif case == "focal":
        t = np.array([1, 3])

        def f(xx):
            return mpr.softmax_focal_loss(xx, t, alpha=np.array([0.5, 1.0, 2.0, 0.1]), gamma=0.7)[0]

        grads = mpr.softmax_focal_loss(x, t, alpha=np.array([0.5, 1.0, 2.0, 0.1]), gamma=0.7)[1]
    else:
        t = rng.uniform(size=(2, 4))

        def f(xx):
            return mpr.sigmoid_focal_loss(xx, t, alpha=0.3, gamma=0.6)[0]

        flat = mpr.sigmoid_focal_loss(x, t, alpha=0.3, gamma=0.6)[1]
        grads = [flat[:4], flat[4:]]
    with mpmath.workdps(60):
        h = mpmath.mpf(10) ** -15
        for i in range(2):
            for j in range(4):
                def at(delta):
                    xx = [[mpmath.mpf(float(v)) for v in row] for row in x]
                    xx[i][j] += delta
                    return mpmath.fsum(f(xx))

                fd = (at(h) - at(-h)) / (2 * h)
                assert abs(fd - grads[i][j]) < mpmath.mpf(10) ** -24, (case, i, j)

