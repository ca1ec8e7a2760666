"""crossent.losses: worked examples, invariances, edge semantics (SPEC §3.2), dtypes, and
inputs left unchanged — on the compiled kernels and on the NumPy reference.

Expected values are hand-checkable (Python's math module) or come from SciPy; invariance tests
compare crossent with itself on inputs that the math says must give equal results.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.special import expit, log_softmax

import crossent

vg = crossent.value_and_grad
SOFTMAX_LOSSES = [crossent.softmax_cross_entropy, crossent.softmax_focal_loss, crossent.nll_loss]


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- worked examples
def test_worked_example_one_hot_b(backend):
    """Truth B (one-hot) against predictions (0.228, 0.619, 0.153): -ln 0.619 = 0.479... nats."""
    q = np.array([[0.228, 0.619, 0.153]])
    value = crossent.softmax_cross_entropy(np.log(q), np.array([1]))
    assert value == pytest.approx(-math.log(0.619), rel=1e-14)
    assert math.floor(value * 1000) / 1000 == 0.479
    # the same as the cross-entropy of distributions, and as dense one-hot targets
    assert crossent.cross_entropy([0.0, 1.0, 0.0], q[0]) == pytest.approx(-math.log(0.619), rel=1e-14)
    dense = crossent.softmax_cross_entropy(np.log(q), np.array([[0.0, 1.0, 0.0]]))
    assert dense == pytest.approx(-math.log(0.619), rel=1e-14)


def test_worked_example_three_doors(backend):
    """Gift probabilities 0.8, 0.7, 0.1; outcome gift, gift, none: likelihood 0.8 * 0.7 * 0.9 =
    0.504, cross-entropy -ln 0.504 = 0.685 nats."""
    probs = np.array([0.8, 0.7, 0.1])
    outcome = np.array([1.0, 1.0, 0.0])
    likelihood = 0.8 * 0.7 * 0.9
    assert likelihood == pytest.approx(0.504)
    bce = crossent.binary_cross_entropy(probs, outcome, reduction="sum")
    assert bce == pytest.approx(-math.log(0.504), rel=1e-13)
    assert round(float(bce), 3) == 0.685
    assert math.exp(-bce) == pytest.approx(0.504, rel=1e-13)
    logits = np.log(probs / (1 - probs))  # the logit of each probability
    sbce = crossent.sigmoid_binary_cross_entropy(logits, outcome, reduction="sum")
    assert sbce == pytest.approx(-math.log(0.504), rel=1e-13)
    # "mean" is the per-door average
    assert crossent.binary_cross_entropy(probs, outcome) == pytest.approx(-math.log(0.504) / 3, rel=1e-13)


def test_nll_loss_worked_example(backend):
    log_probs = np.log([[0.8, 0.2], [0.5, 0.5]])
    assert crossent.nll_loss(log_probs, [0, 1]) == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2, rel=1e-15)
    assert crossent.nll_loss(log_probs, [0, 1], reduction="sum") == pytest.approx(
        -(math.log(0.8) + math.log(0.5)), rel=1e-15)
    np.testing.assert_allclose(crossent.nll_loss(log_probs, [0, 1], reduction="none"),
                               [-math.log(0.8), -math.log(0.5)], rtol=1e-15)


# ----------------------------------------------------------------------------- invariances
def _grid_logits(shape, seed=0):
    """Multiples of 1/4: exactly representable, so adding 1e4 is exact too."""
    return _rng(seed).integers(-20, 20, size=shape) / 4.0


@pytest.mark.parametrize("shift", [3.25, -7.0, 1e4, -1e4])
@pytest.mark.parametrize("opts", [{}, {"weight": np.array([1.0, 2.0, 0.5, 3.0])},
                                  {"label_smoothing": 0.3, "ignore_index": -100}])
def test_shift_invariance(backend, shift, opts):
    x = _grid_logits((5, 4))
    y = np.array([0, 3, -100, 2, 1]) if "ignore_index" in opts else np.array([0, 3, 1, 2, 1])
    v0, g0 = vg(crossent.softmax_cross_entropy)(x, y, **opts)
    v1, g1 = vg(crossent.softmax_cross_entropy)(x + shift, y, **opts)
    assert v1 == pytest.approx(v0, rel=1e-14, abs=1e-14)
    np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-15)
    f0, fg0 = vg(crossent.softmax_focal_loss)(x, np.abs(y) % 4, gamma=1.5)
    f1, fg1 = vg(crossent.softmax_focal_loss)(x + shift, np.abs(y) % 4, gamma=1.5)
    assert f1 == pytest.approx(f0, rel=1e-14, abs=1e-14)
    np.testing.assert_allclose(fg1, fg0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("loss", SOFTMAX_LOSSES, ids=lambda f: f.__name__)
def test_class_axis_moved(backend, loss):
    """axis=1 on (N, C, d) equals axis=-1 on the moved array; the gradient moves back."""
    x = _rng(1).normal(size=(3, 5, 4))
    y = _rng(2).integers(0, 5, size=(3, 4))
    v1, g1 = vg(loss)(x, y, axis=1)
    v2, g2 = vg(loss)(np.moveaxis(x, 1, -1), y, axis=-1)
    assert v1 == pytest.approx(v2, rel=1e-15)
    assert g1.shape == x.shape
    np.testing.assert_allclose(g1, np.moveaxis(g2, -1, 1), rtol=1e-15, atol=0)
    none1 = loss(x, y, axis=1, reduction="none")
    assert none1.shape == (3, 4)
    np.testing.assert_allclose(none1, loss(np.moveaxis(x, 1, -1), y, reduction="none"), rtol=1e-15)


def test_class_axis_moved_dense(backend):
    x = _rng(1).normal(size=(3, 5, 4))
    t = _rng(2).dirichlet(np.ones(5), size=(3, 4))  # (3, 4, 5), classes last
    v1, g1 = vg(crossent.softmax_cross_entropy)(x, np.moveaxis(t, -1, 1), axis=1, label_smoothing=0.2)
    v2, g2 = vg(crossent.softmax_cross_entropy)(np.moveaxis(x, 1, -1), t, label_smoothing=0.2)
    assert v1 == pytest.approx(v2, rel=1e-15)
    np.testing.assert_allclose(g1, np.moveaxis(g2, -1, 1), rtol=1e-15, atol=0)


@pytest.mark.parametrize("t_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan, np.inf])
@pytest.mark.parametrize("shape", [(3, 4, 2), (2, 20_000, 2)])
def test_dense_targets_outside_unit_interval_name_the_first(backend, t_dtype, bad, shape):
    """The compiled path counts the entries outside [0, 1] in its own pass over the targets;
    both paths then name the first one in the caller's layout (the class axis here is 1)."""
    x = _rng(5).normal(size=shape)
    t = np.full(shape, 0.5 / shape[1], dtype=t_dtype)
    t[1, -1, 0] = 7.0  # a later entry outside
    t[1, 2, 0] = bad  # the first in C order
    t[0, 3, 1] = 1.0  # the bounds are inside
    t[0, 1, 1] = 0.0
    message = rf"targets\[1, 2, 0\] = {re.escape(repr(float(t_dtype(bad))))} is outside \[0, 1\]"
    with pytest.raises(ValueError, match=message):
        crossent.softmax_cross_entropy(x, t, axis=1)
    with pytest.raises(ValueError, match=message):
        vg(crossent.softmax_cross_entropy)(x, t, axis=1, label_smoothing=0.1, softcap=3.0)


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.25}, {"z_loss": 0.01},
                                  {"softcap": 3.0, "label_smoothing": 0.1}])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_index_equals_one_hot(backend, opts, reduction):
    x = _rng(3).normal(size=(6, 5)) * 4
    y = _rng(4).integers(0, 5, size=6)
    v1, g1 = vg(crossent.softmax_cross_entropy)(x, y, reduction=reduction, **opts)
    v2, g2 = vg(crossent.softmax_cross_entropy)(x, np.eye(5)[y], reduction=reduction, **opts)
    assert v1 == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("loss", [crossent.softmax_cross_entropy, crossent.nll_loss,
                                  crossent.softmax_focal_loss], ids=lambda f: f.__name__)
def test_ignored_rows_equal_removed_rows(backend, loss):
    x = _rng(5).normal(size=(7, 4))
    if loss is crossent.nll_loss:
        x = log_softmax(x, axis=-1)
    y = np.array([1, -100, 3, 0, -100, 2, 2])
    keep = y != -100
    opts = {} if loss is crossent.softmax_focal_loss else {"weight": np.array([0.5, 1.0, 2.0, 4.0])}
    v1, g1 = vg(loss)(x, y, ignore_index=-100, **opts)
    v2, g2 = vg(loss)(x[keep], y[keep], **opts)
    assert v1 == pytest.approx(v2, rel=1e-15)
    np.testing.assert_allclose(g1[keep], g2, rtol=1e-15)
    assert not g1[~keep].any()
    np.testing.assert_array_equal(loss(x, y, ignore_index=-100, reduction="none")[~keep], 0.0)


@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.2}, {"z_loss": 0.05},
                                  {"label_smoothing": 0.1, "softcap": 2.0,
                                   "weight": np.array([1.0, 3.0, 9.0, 0.5, 2.0])}])
def test_masked_class_equals_sliced_class(backend, opts):
    """A -inf logit removes its class: the same value as slicing the class away, and zero
    gradient there (label smoothing spreads over the unmasked classes only)."""
    x = _rng(6).normal(size=(4, 5))
    masked = x.copy()
    masked[:, 2] = -np.inf
    y = np.array([0, 4, 1, 3])
    kept = [0, 1, 3, 4]
    y_sliced = np.array([0, 3, 1, 2])
    sliced_opts = dict(opts)
    if "weight" in opts:
        sliced_opts["weight"] = opts["weight"][kept]
    v1, g1 = vg(crossent.softmax_cross_entropy)(masked, y, **opts)
    v2, g2 = vg(crossent.softmax_cross_entropy)(x[:, kept], y_sliced, **sliced_opts)
    assert v1 == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(g1[:, kept], g2, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(g1[:, 2], 0.0)
    # dense targets with no mass on the masked class
    t = _rng(7).dirichlet(np.ones(4), size=4)
    t_full = np.insert(t, 2, 0.0, axis=1)
    v3, g3 = vg(crossent.softmax_cross_entropy)(masked, t_full, **opts)
    v4, g4 = vg(crossent.softmax_cross_entropy)(x[:, kept], t, **sliced_opts)
    assert v3 == pytest.approx(v4, rel=1e-14)
    np.testing.assert_allclose(g3[:, kept], g4, rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(g3[:, 2], 0.0)


def test_huge_logits_finite_and_exact(backend):
    x = np.array([[1e4, -1e4], [1e4, -1e4], [-1e4, 1e4 + 0.5], [1e15, 0.0], [1e300, -1e300]])
    y = np.array([0, 1, 0, 1, 1])
    losses = crossent.softmax_cross_entropy(x, y, reduction="none")
    # -log p_y = lse - x_y: log1p(e^-20000) rounds to 0; the others are differences of logits
    np.testing.assert_array_equal(losses, [0.0, 2e4, 2e4 + 0.5, 1e15, 2e300])
    v, g = vg(crossent.softmax_cross_entropy)(x[:3], y[:3], reduction="sum")
    np.testing.assert_array_equal(g, [[0.0, 0.0], [1.0, -1.0], [-1.0, 1.0]])
    f32 = crossent.softmax_cross_entropy(x[:3].astype(np.float32), y[:3], reduction="none")
    np.testing.assert_array_equal(f32, np.array([0.0, 2e4, 2e4 + 0.5], dtype=np.float32))
    b = crossent.sigmoid_binary_cross_entropy(np.array([1e4, -1e4, 800.0]), np.array([0.0, 1.0, 1.0]),
                                              reduction="none")
    np.testing.assert_array_equal(b, [1e4, 1e4, 0.0])


# ----------------------------------------------------------------------------- inputs, dtypes
def _all_calls():
    rng = _rng(8)
    x = rng.normal(size=(4, 6, 3))
    y = rng.integers(0, 6, size=(4, 3))
    t = rng.uniform(size=(4, 6, 3))
    p = rng.uniform(0.01, 0.99, size=(4, 6, 3))
    return [
        (crossent.softmax_cross_entropy, x, (y,), {"axis": 1, "label_smoothing": 0.1}),
        (crossent.softmax_cross_entropy, x, (np.moveaxis(rng.dirichlet(np.ones(6), (4, 3)), -1, 1),),
         {"axis": 1}),
        (crossent.nll_loss, x, (y,), {"axis": 1}),
        (crossent.softmax_focal_loss, x, (y,), {"axis": 1, "alpha": 0.5}),
        (crossent.sigmoid_binary_cross_entropy, x, (t,), {"pos_weight": np.full(3, 2.0)}),
        (crossent.binary_cross_entropy, p, (t,), {}),
        (crossent.sigmoid_focal_loss, x, (t,), {}),
    ]


CALL_IDS = ["softmax_ce_index", "softmax_ce_dense", "nll", "softmax_focal", "sigmoid_bce", "bce",
            "sigmoid_focal"]


@pytest.mark.parametrize("call", range(len(CALL_IDS)), ids=CALL_IDS)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided", "float16", "float32"])
def test_inputs_unchanged_and_dtypes(backend, call, layout):
    loss, x, rest, opts = _all_calls()[call]
    if layout == "transposed":  # a non-contiguous view of the same values
        x = np.asfortranarray(x)
    elif layout == "strided":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
        big[..., ::2] = x
        x = big[..., ::2]
    elif layout in ("float16", "float32"):
        x = x.astype(layout)
    before = [x.copy()] + [r.copy() for r in rest]
    value, g = vg(loss)(x, *rest, **opts)
    none = loss(x, *rest, reduction="none", **opts)
    for a, b in zip([x, *rest], before):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    expected = np.float32 if layout in ("float16", "float32") else np.float64
    assert np.asarray(value).dtype == expected and g.dtype == expected and none.dtype == expected
    assert g.shape == x.shape
    # the float16 result is the float32 computation on the exactly widened input
    if layout == "float16":
        v32 = loss(x.astype(np.float32), *rest, **opts)
        assert value == v32


def test_array_likes_accepted(backend):
    assert crossent.softmax_cross_entropy([[0.0, 0.0]], [1]) == pytest.approx(math.log(2), rel=1e-15)
    assert crossent.binary_cross_entropy([0.5], [1]) == pytest.approx(math.log(2), rel=1e-15)


# ----------------------------------------------------------------------------- edge semantics
def test_masked_logits_contribute_nothing(backend):
    x = np.array([[0.0, 0.0, -np.inf], [-np.inf, 1.0, 1.0]])
    v, g = vg(crossent.softmax_cross_entropy)(x, np.array([0, 2]), reduction="sum")
    assert v == pytest.approx(2 * math.log(2), rel=1e-15)
    np.testing.assert_array_equal(g, [[-0.5, 0.5, 0.0], [0.0, 0.5, -0.5]])


def test_target_on_masked_logit_is_infinite(backend):
    x = np.array([[0.0, -np.inf], [0.0, 1.0]])
    losses = crossent.softmax_cross_entropy(x, np.array([1, 0]), reduction="none")
    assert losses[0] == np.inf and np.isfinite(losses[1])
    assert crossent.softmax_cross_entropy(x, np.array([1, 0])) == np.inf
    dense = crossent.softmax_cross_entropy(x, np.array([[0.5, 0.5], [1.0, 0.0]]), reduction="none")
    assert dense[0] == np.inf
    all_masked = crossent.softmax_cross_entropy(np.full((1, 3), -np.inf), np.array([0]))
    assert all_masked == np.inf


@pytest.mark.parametrize("call", range(len(CALL_IDS)), ids=CALL_IDS)
def test_nan_in_nan_out(backend, call):
    loss, x, rest, opts = _all_calls()[call]
    x = x.copy()
    if loss is crossent.binary_cross_entropy:  # NaN is not a probability: rejected, not propagated
        x[1, 2, 0] = np.nan
        with pytest.raises(ValueError, match=r"probs\[1, 2, 0\] = .*nan.* outside \[0, 1\]"):
            loss(x, *rest, **opts)
        return
    # nll_loss reads only the target's log-probability (like torch's gather), so poison that one
    c = rest[0][1, 0] if loss is crossent.nll_loss else 2
    x[1, c, 0] = np.nan
    assert np.isnan(loss(x, *rest, **opts))
    per = loss(x, *rest, reduction="none", **opts)
    assert np.isnan(per).any()
    assert np.isfinite(per).sum() >= per.size - x.shape[1]  # only the NaN's own row (or element)


@pytest.mark.parametrize("loss", [crossent.softmax_cross_entropy, crossent.nll_loss,
                                  crossent.softmax_focal_loss], ids=lambda f: f.__name__)
def test_mean_over_no_rows_is_zero(backend, loss):
    x = _rng(9).normal(size=(3, 4))
    y = np.full(3, -1)
    v, g = vg(loss)(x, y, ignore_index=-1)
    assert v == 0.0 and not np.isnan(v)
    assert g.shape == x.shape and not g.any()
    assert loss(x, y, ignore_index=-1, reduction="sum") == 0.0
    # an empty batch, too
    v0, g0 = vg(loss)(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))
    assert v0 == 0.0 and g0.shape == (0, 4)


def test_mean_with_all_target_weights_zero_is_zero(backend):
    x = _rng(10).normal(size=(3, 4))
    v, g = vg(crossent.softmax_cross_entropy)(x, np.array([1, 1, 2]), weight=np.array([1.0, 0.0, 0.0, 1.0]))
    assert v == 0.0 and not g.any()


def test_binary_cross_entropy_is_exact_at_the_edges(backend):
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-300])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    losses = crossent.binary_cross_entropy(p, t, reduction="none")
    assert losses[0] == np.inf and losses[1] == np.inf  # no -100 clamp (PyTorch gives 100)
    assert losses[2] == 0.0 and losses[3] == 0.0  # 0 log 0 = 0
    assert losses[4] == pytest.approx(300 * math.log(10), rel=1e-15)
    assert crossent.binary_cross_entropy(p, t) == np.inf
    # a soft target on p = 0 is infinite too
    assert crossent.binary_cross_entropy([0.0], [0.5]) == np.inf


def test_softmax_focal_gamma_zero_is_cross_entropy(backend):
    x = _rng(11).normal(size=(5, 4)) * 3
    y = np.array([0, 1, 2, 3, 1])
    expected = -log_softmax(x, axis=-1)[np.arange(5), y]
    focal = crossent.softmax_focal_loss(x, y, gamma=0.0, reduction="none")
    np.testing.assert_allclose(focal, expected, rtol=1e-14)
    v1, g1 = vg(crossent.softmax_focal_loss)(x, y, gamma=0.0)
    v2, g2 = vg(crossent.softmax_cross_entropy)(x, y)
    assert v1 == pytest.approx(v2, rel=1e-14)
    np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("alpha", [None, 0.25, np.array([0.1, 0.5, 1.0, 2.0])], ids=["none", "scalar", "per_class"])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_softmax_focal_alpha(backend, alpha, gamma):
    x = _rng(12).normal(size=(6, 4)) * 2
    y = np.array([0, 1, 2, 3, 3, 2])
    logp = log_softmax(x, axis=-1)[np.arange(6), y]
    a = np.ones(4) if alpha is None else np.broadcast_to(alpha, (4,))
    expected = -a[y] * (1 - np.exp(logp)) ** gamma * logp  # Lin et al. (2017), eq. 5
    got = crossent.softmax_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert crossent.softmax_focal_loss(x, y, alpha=alpha, gamma=gamma) == pytest.approx(expected.mean(), rel=1e-13)


def test_sigmoid_focal_gamma_zero_alpha_none_is_bce(backend):
    x = _rng(13).normal(size=(4, 3)) * 3
    t = _rng(14).uniform(size=(4, 3))
    expected = -(t * np.log(expit(x)) + (1 - t) * np.log(expit(-x)))
    got = crossent.sigmoid_focal_loss(x, t, alpha=None, gamma=0.0, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_sigmoid_binary_cross_entropy_weights(backend):
    x = _rng(15).normal(size=(3, 2))
    t = np.array([[1.0, 0.0], [0.3, 1.0], [0.0, 0.7]])
    w = np.array([[2.0], [0.5], [1.0]])
    pw = np.array([3.0, 0.25])
    eps = 0.2
    ts = t * (1 - eps) + eps / 2
    expected = -w * (pw * ts * np.log(expit(x)) + (1 - ts) * np.log(expit(-x)))
    got = crossent.sigmoid_binary_cross_entropy(x, t, weight=w, pos_weight=pw, label_smoothing=eps,
                                                reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_reduction_none_shapes(backend):
    x = _rng(16).normal(size=(2, 3, 4))
    assert crossent.softmax_cross_entropy(x, np.zeros((2, 3), dtype=int), reduction="none").shape == (2, 3)
    assert crossent.softmax_cross_entropy(x, np.zeros((2, 4), dtype=int), axis=1, reduction="none").shape == (2, 4)
    assert crossent.sigmoid_binary_cross_entropy(x, np.zeros_like(x), reduction="none").shape == (2, 3, 4)
    assert crossent.softmax_cross_entropy(np.zeros(3), np.array(1), reduction="none").shape == ()


def test_zero_coefficient_on_masked_target_is_zero(backend):
    """A masked target whose coefficient (1 - eps) w_y is 0 contributes 0, not 0 * inf = NaN."""
    x = np.array([[-np.inf, 0.0, 0.0]])
    y = np.array([0])
    # eps = 1: only the smoothing term, over the two unmasked classes: (ln 2 + ln 2) / 2
    assert crossent.softmax_cross_entropy(x, y, label_smoothing=1.0) == pytest.approx(math.log(2), rel=1e-15)
    w = np.array([0.0, 1.0, 1.0])
    assert crossent.softmax_cross_entropy(x, y, weight=w, reduction="sum") == 0.0
    # eps = 1/2 with w_y = 0: 0 * inf + (1/2)(1/2)(ln 2 + ln 2)
    assert crossent.softmax_cross_entropy(x, y, weight=w, label_smoothing=0.5, reduction="sum") == \
        pytest.approx(0.5 * math.log(2), rel=1e-15)
    p = np.array([0.0, 1.0])
    assert crossent.binary_cross_entropy(p, np.array([1.0, 1.0]), weight=np.array([0.0, 1.0]),
                                         reduction="sum") == 0.0


def test_sigmoid_bce_tiny_smoothing_huge_logit(backend):
    """1 - t' must keep its digits: for t = 1, 1 - t' = eps/2, and with x = 1e15 the loss is
    (eps/2) * 1e15 (the positive term log sigma(1e15) is 0). Forming t' first and then 1 - t'
    loses about 1% here."""
    eps = 2.9e-14
    value = crossent.sigmoid_binary_cross_entropy(np.array([1e15]), np.array([1.0]), label_smoothing=eps)
    assert value == pytest.approx(1e15 * eps / 2, rel=1e-14)
    f32 = crossent.sigmoid_binary_cross_entropy(np.array([1e15], dtype=np.float32), np.array([1.0], dtype=np.float32),
                                                label_smoothing=eps)
    assert f32 == pytest.approx(float(np.float32(1e15)) * eps / 2, rel=1e-7)


def test_focal_all_masked_row_is_infinite_like_cross_entropy(backend):
    x = np.array([[-np.inf, -np.inf], [0.0, 1.0]])
    y = np.array([0, 1])
    ce = crossent.softmax_cross_entropy(x, y, reduction="none")
    focal = crossent.softmax_focal_loss(x, y, gamma=0.5, reduction="none")
    assert ce[0] == np.inf and focal[0] == np.inf
    assert crossent.softmax_focal_loss(x, y, alpha=np.array([0.0, 1.0]), reduction="none")[0] == 0.0


def test_backend_fixture_switches_the_path(backend):
    assert crossent.kernel_backend() == backend


# ----------------------------------------------------------------------------- hostile inputs (issue 9)
def _out_cases():
    """(loss, args, kwargs, the argument ``out`` will alias): every loss that takes ``out=``."""
    rng = _rng(5)
    x = rng.normal(size=(4, 4))
    p = rng.random((4, 4)) * 0.8 + 0.1
    t = rng.random((4, 4))
    labels = np.array([1, 2, 3, 0])
    return [
        (crossent.softmax_cross_entropy, (x, labels), {}, "targets"),
        (crossent.softmax_cross_entropy, (x, t / t.sum(-1, keepdims=True)), {}, "targets"),
        (crossent.softmax_cross_entropy, (x, labels), {"weight": np.ones(4)}, "weight"),
        (crossent.nll_loss, (x, labels), {}, "labels"),
        (crossent.softmax_focal_loss, (x, labels), {"alpha": np.ones(4) / 2}, "alpha"),
        (crossent.sigmoid_binary_cross_entropy, (x, t), {}, "targets"),
        (crossent.sigmoid_binary_cross_entropy, (x, t), {"pos_weight": np.ones(4)}, "pos_weight"),
        (crossent.binary_cross_entropy, (p, t), {"weight": np.ones((4, 4))}, "weight"),
        (crossent.sigmoid_focal_loss, (x, t), {}, "targets"),
    ]


@pytest.mark.parametrize("case", range(len(_out_cases())))
def test_out_sharing_memory_with_another_input_raises(backend, case):
    """An ``out`` buffer over the labels crashed the compiled path (SIGSEGV): the kernel wrote
    the gradient over labels it still had to read. Every input but the first is protected."""
    loss, args, kwargs, alias = _out_cases()[case]
    args, kwargs = list(args), dict(kwargs)
    first = np.asarray(args[0])
    original = np.asarray(args[1] if alias in ("targets", "labels") else kwargs[alias])
    # a float64 buffer whose first bytes are the aliased input (same bytes, any dtype)
    buf = np.zeros(first.nbytes + original.nbytes, dtype=np.uint8)
    held = buf[:original.nbytes].view(original.dtype).reshape(original.shape)
    held[...] = original
    out = buf[:first.nbytes].view(np.float64).reshape(first.shape)
    if alias in ("targets", "labels"):
        args[1] = held
    else:
        kwargs[alias] = held
    before = held.copy()
    with pytest.raises(ValueError, match=rf"out shares memory with {alias}"):
        vg(loss)(*args, out=out, **kwargs)
    np.testing.assert_array_equal(held, before)


def test_out_segfault_reproducer(backend):
    """The report's own case, verbatim."""
    buf = np.zeros(16, dtype=np.int64)
    buf[:4] = [1, 2, 3, 0]
    labels = buf[:4]
    out = buf.view(np.float64).reshape(4, 4)
    x = np.random.default_rng(1).normal(size=(4, 4))
    with pytest.raises(ValueError, match="out shares memory with targets"):
        vg(crossent.softmax_cross_entropy)(x, labels, out=out)
    assert labels.tolist() == [1, 2, 3, 0]


@pytest.mark.parametrize("loss", [crossent.softmax_cross_entropy, crossent.sigmoid_focal_loss])
def test_out_may_be_the_first_argument_but_not_part_of_it(backend, loss):
    rng = _rng(6)
    targets = np.array([0, 2, 1]) if loss is crossent.softmax_cross_entropy else rng.random((3, 3))
    x = rng.normal(size=(3, 3))
    expected_value, expected_grad = vg(loss)(x, targets)
    value, g = vg(loss)(x, targets, out=x)
    assert g is x and value == expected_value
    np.testing.assert_array_equal(x, expected_grad)
    big = rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="out overlaps logits without being the same array"):
        vg(loss)(big[:3], targets, out=big[1:])


@pytest.mark.parametrize("loss, x, target, expected, expected_grad", [
    # -log 0.37 (PyTorch's test_bce_loss_always_nonnegative-style scalar case); d/dp = -1/p
    (crossent.binary_cross_entropy, 0.37, 1.0, -math.log(0.37), -1 / 0.37),
    # log(1 + e^-x) for t = 1; d/dx = sigma(x) - 1
    (crossent.sigmoid_binary_cross_entropy, 0.3, 1.0, math.log1p(math.exp(-0.3)),
     1 / (1 + math.exp(-0.3)) - 1),
    # gamma = 0, alpha = None: the BCE above
    (crossent.sigmoid_focal_loss, 0.3, 1.0, math.log1p(math.exp(-0.3)), 1 / (1 + math.exp(-0.3)) - 1),
])
def test_binary_losses_take_0d_input(backend, loss, x, target, expected, expected_grad):
    """0-d in, 0-d out: ``binary_cross_entropy(0.37, 1.0)`` raised "targets has shape ()"."""
    kwargs = {"alpha": None, "gamma": 0.0} if loss is crossent.sigmoid_focal_loss else {}
    assert float(loss(x, target, **kwargs)) == pytest.approx(expected, rel=1e-15)
    none = loss(np.float32(x), np.float32(target), reduction="none", **kwargs)
    assert none.shape == () and none.dtype == np.float32
    value, g = vg(loss)(np.array(x), np.array(target), **kwargs)
    assert np.shape(g) == () and isinstance(g, np.ndarray)
    assert float(g) == pytest.approx(expected_grad, rel=1e-14)
    out = np.empty(())
    assert vg(loss)(x, target, out=out, **kwargs)[1] is out and float(out) == float(g)


@pytest.mark.parametrize("loss", SOFTMAX_LOSSES)
@pytest.mark.parametrize("ignore_index", [2**70, -(2**70), 2**63, np.uint64(2**64 - 1)],
                         ids=["2**70", "-2**70", "2**63", "uint64_max"])
def test_ignore_index_beyond_int64_raises_on_both_paths(backend, loss, ignore_index):
    """The compiled path dumped nanobind's signatures, the reference path computed a value."""
    x = _rng(7).normal(size=(2, 3))
    with pytest.raises(ValueError, match=r"ignore_index=-?\d+ is outside the int64 range"):
        loss(x, np.array([0, 1]), ignore_index=ignore_index)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("code, result", [("f2", np.float32), ("f4", np.float32), ("f8", np.float64)])
def test_byte_order_does_not_change_the_result_dtype(backend, order, code, result):
    """Big-endian float32/float16 gave float64 results; native float32 gives float32."""
    rng = _rng(8)
    x = rng.normal(size=(3, 4))
    t = rng.random((3, 4))
    labels = np.array([0, 3, 1]).astype(order + "i8")
    xs = x.astype(order + code)
    for value in (crossent.softmax_cross_entropy(xs, labels),
                  crossent.nll_loss(xs, labels),
                  crossent.sigmoid_binary_cross_entropy(xs, t.astype(order + code)),
                  crossent.sigmoid_focal_loss(xs, t),
                  crossent.binary_cross_entropy(t.astype(order + code), t),
                  crossent.softmax(xs), crossent.logsumexp(xs)):
        assert value.dtype == result
    g = crossent.grad(crossent.softmax_cross_entropy)(xs, labels)
    assert g.dtype == result
    np.testing.assert_allclose(g, crossent.grad(crossent.softmax_cross_entropy)(
        x.astype(code), labels.astype(np.int64)), rtol=0)


@pytest.mark.parametrize("loss", [crossent.softmax_cross_entropy, crossent.binary_cross_entropy])
def test_value_and_grad_without_the_first_argument_is_a_missing_argument(backend, loss):
    """``value_and_grad(loss)(out=buf)`` said "logits must be a real floating array"."""
    first = "logits" if loss is crossent.softmax_cross_entropy else "probs"
    with pytest.raises(TypeError, match=rf"{loss.__name__}\(\): missing a required argument: '{first}'"):
        vg(loss)(out=np.zeros((2, 2)))
    with pytest.raises(TypeError, match="missing a required argument: 'targets'"):
        vg(loss)(np.zeros((2, 2)), out=np.zeros((2, 2)))


# ----------------------------------------------------------------------------- sample_weight, where
def _weighted_cases(rng):
    """(loss, first argument, other arguments, options, per-row count weight c_n) on a (6, 5)
    problem; "mean" with row weights r divides by sum_n r_n c_n."""
    x = rng.normal(size=(6, 5)) * 2
    y = rng.integers(0, 5, 6)
    y[2] = -100
    w = rng.uniform(0.5, 2, 5)
    t = rng.dirichlet(np.ones(5), 6)
    tb = rng.uniform(0, 1, (6, 5))
    p = rng.uniform(0.05, 0.95, (6, 5))
    kept = (y != -100).astype(float)
    return [
        (crossent.softmax_cross_entropy, x, (y,), {"weight": w, "ignore_index": -100},
         np.where(kept > 0, w[np.where(kept > 0, y, 0)], 0.0)),
        (crossent.softmax_cross_entropy, x, (t,), {"label_smoothing": 0.1}, np.ones(6)),
        (crossent.nll_loss, x - 3, (y,), {"ignore_index": -100}, kept),
        (crossent.softmax_focal_loss, x, (y,), {"ignore_index": -100, "gamma": 1.5}, kept),
        (crossent.sigmoid_binary_cross_entropy, x, (tb,), {"pos_weight": w}, np.ones((6, 5))),
        (crossent.binary_cross_entropy, p, (tb,), {}, np.ones((6, 5))),
        (crossent.sigmoid_focal_loss, x, (tb,), {"alpha": 0.3}, np.ones((6, 5))),
    ]


WEIGHTED_IDS = ["softmax_ce_index", "softmax_ce_dense", "nll", "softmax_focal", "sigmoid_bce",
                "bce", "sigmoid_focal"]


@pytest.mark.parametrize("case", range(7), ids=WEIGHTED_IDS)
def test_sample_weight_and_where_match_the_direct_formula(backend, case):
    rng = np.random.default_rng(case)
    loss, x, rest, opts, c = _weighted_cases(rng)[case]
    unit = c.shape  # rows, or elements for the binary losses
    r = rng.uniform(0, 3, unit)
    mask = rng.random(unit) < 0.7
    mask.flat[0] = True
    per_row = loss(x, *rest, reduction="none", **opts)  # l_n, unweighted
    rm = np.where(mask, r, 0.0)
    expected_sum = np.sum(rm * per_row)
    expected_mean = expected_sum / np.sum(rm * c)
    got_none = loss(x, *rest, sample_weight=r, where=mask, reduction="none", **opts)
    np.testing.assert_allclose(got_none, rm * per_row, rtol=1e-12, atol=1e-15)
    assert loss(x, *rest, sample_weight=r, where=mask, reduction="sum", **opts) == \
        pytest.approx(expected_sum, rel=1e-12)
    assert loss(x, *rest, sample_weight=r, where=mask, **opts) == pytest.approx(expected_mean, rel=1e-12)
    # the gradient: d/dx of sum_n r_n l_n / D, against central differences in float64
    g = vg(loss)(x, *rest, sample_weight=r, where=mask, **opts)[1]
    h = 1e-6
    fd = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (loss(xp, *rest, sample_weight=r, where=mask, **opts)
                   - loss(xm, *rest, sample_weight=r, where=mask, **opts)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_sample_weight_matches_sklearn_log_loss(backend):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), 50)
    y = rng.integers(0, 4, 50)
    sw = rng.uniform(0, 2, 50)
    ours = crossent.softmax_cross_entropy(np.log(p), y, sample_weight=sw)
    assert ours == pytest.approx(metrics.log_loss(y, p, sample_weight=sw, labels=range(4)), rel=1e-12)
    tb = rng.integers(0, 2, 50).astype(float)
    pb = rng.uniform(0.01, 0.99, 50)
    ours = crossent.binary_cross_entropy(pb, tb, sample_weight=sw)
    assert ours == pytest.approx(metrics.log_loss(tb, pb, sample_weight=sw), rel=1e-12)


def test_where_drops_rows_whose_loss_is_not_finite(backend):
    """Masked-out rows count for nothing, even where their logits are NaN (as optax's where)."""
    x = np.array([[0.0, 1.0], [np.nan, 0.0], [-np.inf, -np.inf]])
    y = np.array([1, 0, 0])
    mask = np.array([True, False, False])
    value, g = vg(crossent.softmax_cross_entropy)(x, y, where=mask)
    assert value == pytest.approx(np.log1p(np.exp(-1.0)), rel=1e-14)
    assert np.all(np.isfinite(g)) and np.all(g[1:] == 0)
    value, g = vg(crossent.softmax_cross_entropy)(x, y, where=np.zeros(3, bool))
    assert value == 0.0 and np.all(g == 0)  # nothing counted: 0, not NaN


@pytest.mark.parametrize("kwargs, error, match", [
    ({"where": np.ones(3)}, TypeError, "where must be a boolean mask, got dtype float64"),
    ({"where": np.ones(4, bool)}, ValueError, r"where of shape \(4,\) does not broadcast to \(3,\)"),
    ({"sample_weight": [1.0, -1.0, 1.0]}, ValueError, r"sample_weight\[1\] = -1"),
    ({"sample_weight": [1.0, np.nan, 1.0]}, ValueError, "sample_weight"),
])
def test_bad_sample_weight_or_where_is_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        crossent.softmax_cross_entropy(np.zeros((3, 2)), [0, 1, 0], **kwargs)
