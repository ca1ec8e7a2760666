"""value_and_grad / grad: analytic gradients against central finite differences in float64,
for every loss and several option combinations, and the errors of the wrappers."""

from __future__ import annotations

import numpy as np
import pytest

import crossent


def _central_differences(f, x, h=1e-6):
    """d f / d x by (f(x + h e_i) - f(x - h e_i)) / 2h, one coordinate at a time."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (float(f(up)) - float(f(down))) / (2 * h)
    return g


def _case(name):
    rng = np.random.default_rng(17)
    x = rng.normal(size=(4, 5)) * 2
    y = np.array([0, 3, 4, 1])
    y_ign = np.array([0, -1, 4, 1])
    t = rng.dirichlet(np.ones(5), size=4)
    u = rng.uniform(size=(4, 5))
    p = rng.uniform(0.05, 0.95, size=(4, 5))
    w = np.array([0.5, 1.0, 2.0, 1.5, 0.0])
    return {
        "ce": (crossent.softmax_cross_entropy, x, (y,), {}),
        "ce_weight_ignore": (crossent.softmax_cross_entropy, x, (y_ign,), {"weight": w, "ignore_index": -1}),
        "ce_smooth_zloss": (crossent.softmax_cross_entropy, x, (y,), {"label_smoothing": 0.2, "z_loss": 0.03}),
        "ce_softcap_all": (crossent.softmax_cross_entropy, x * 3, (y_ign,),
                           {"weight": w, "ignore_index": -1, "label_smoothing": 0.1, "z_loss": 0.01,
                            "softcap": 4.0, "reduction": "sum"}),
        "ce_masked": (crossent.softmax_cross_entropy, np.where(np.eye(4, 5, 1) > 0, -np.inf, x), (y,),
                      {"label_smoothing": 0.3}),
        "ce_dense": (crossent.softmax_cross_entropy, x, (t,), {}),
        "ce_dense_all": (crossent.softmax_cross_entropy, x, (t,),
                         {"weight": w, "label_smoothing": 0.25, "z_loss": 0.02, "softcap": 3.0}),
        "ce_axis1": (crossent.softmax_cross_entropy, x.reshape(2, 5, 2), (np.array([[0, 4], [2, 1]]),),
                     {"axis": 1, "label_smoothing": 0.1}),
        "nll": (crossent.nll_loss, x, (y,), {}),
        "nll_weight_ignore": (crossent.nll_loss, x, (y_ign,), {"weight": w, "ignore_index": -1, "reduction": "sum"}),
        "focal": (crossent.softmax_focal_loss, x, (y,), {}),
        "focal_alpha_gamma_half": (crossent.softmax_focal_loss, x, (y_ign,),
                                   {"alpha": np.array([0.2, 1.0, 0.5, 2.0, 1.0]), "gamma": 0.5, "ignore_index": -1}),
        "focal_scalar_alpha": (crossent.softmax_focal_loss, x, (y,), {"alpha": 0.25, "gamma": 3.0, "reduction": "sum"}),
        "sbce": (crossent.sigmoid_binary_cross_entropy, x, (u,), {}),
        "sbce_all": (crossent.sigmoid_binary_cross_entropy, x, (u,),
                     {"weight": rng.uniform(size=(4, 1)), "pos_weight": w, "label_smoothing": 0.1,
                      "reduction": "sum"}),
        "bce": (crossent.binary_cross_entropy, p, (u,), {}),
        "bce_weight": (crossent.binary_cross_entropy, p, (u,), {"weight": w, "reduction": "sum"}),
        "sfocal": (crossent.sigmoid_focal_loss, x, (u,), {}),
        "sfocal_gamma_small": (crossent.sigmoid_focal_loss, x, (u,), {"alpha": None, "gamma": 0.4}),
        "sfocal_hard": (crossent.sigmoid_focal_loss, x, ((u > 0.5).astype(float),), {"alpha": 0.7, "gamma": 1.0}),
    }[name]


CASES = ["ce", "ce_weight_ignore", "ce_smooth_zloss", "ce_softcap_all", "ce_masked", "ce_dense",
         "ce_dense_all", "ce_axis1", "nll", "nll_weight_ignore", "focal", "focal_alpha_gamma_half",
         "focal_scalar_alpha", "sbce", "sbce_all", "bce", "bce_weight", "sfocal", "sfocal_gamma_small",
         "sfocal_hard"]


@pytest.mark.parametrize("name", CASES)
def test_gradient_matches_finite_differences(backend, name):
    loss, x, rest, opts = _case(name)
    value, g = crossent.value_and_grad(loss)(x, *rest, **opts)
    assert g.shape == x.shape and g.dtype == np.float64
    assert value == loss(x, *rest, **opts)
    np.testing.assert_array_equal(crossent.grad(loss)(x, *rest, **opts), g)
    finite = np.isfinite(x)
    fd = _central_differences(lambda z: loss(np.where(finite, z, x), *rest, **opts), np.where(finite, x, 0.0))
    np.testing.assert_allclose(g[finite], fd[finite], rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(g[~finite], 0.0)  # masked classes get no gradient


@pytest.mark.parametrize("loss", [crossent.softmax_cross_entropy, crossent.nll_loss,
                                  crossent.softmax_focal_loss, crossent.sigmoid_binary_cross_entropy,
                                  crossent.binary_cross_entropy, crossent.sigmoid_focal_loss],
                         ids=lambda f: f.__name__)
def test_reduction_none_cannot_be_differentiated(loss):
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'none'"):
        crossent.value_and_grad(loss)(np.zeros((2, 2)) + 0.5, np.array([0, 1]), reduction="none")
    with pytest.raises(ValueError, match="reduction"):
        crossent.grad(loss)(np.zeros((2, 2)) + 0.5, np.array([0, 1]), reduction="none")


@pytest.mark.parametrize("not_a_loss", [np.sum, crossent.entropy, crossent.logsumexp, lambda x: x, "softmax_cross_entropy"])
def test_non_crossent_function_raises_type_error(not_a_loss):
    with pytest.raises(TypeError, match="value_and_grad needs a crossent loss"):
        crossent.value_and_grad(not_a_loss)
    with pytest.raises(TypeError, match="crossent loss"):
        crossent.grad(not_a_loss)


def test_wrapped_function_keeps_name_and_doc():
    f = crossent.value_and_grad(crossent.softmax_cross_entropy)
    assert f.__name__ == "softmax_cross_entropy"
    assert f.__doc__ == crossent.softmax_cross_entropy.__doc__


def test_mean_gradient_is_sum_gradient_over_weight_total(backend):
    """PyTorch's rule: "mean" divides by the total weight of the counted targets."""
    x = np.random.default_rng(1).normal(size=(5, 3))
    y = np.array([0, 2, -9, 1, 2])
    w = np.array([2.0, 0.5, 4.0])
    _, g_sum = crossent.value_and_grad(crossent.softmax_cross_entropy)(x, y, weight=w, ignore_index=-9,
                                                                       reduction="sum")
    _, g_mean = crossent.value_and_grad(crossent.softmax_cross_entropy)(x, y, weight=w, ignore_index=-9)
    np.testing.assert_allclose(g_mean, g_sum / (2.0 + 4.0 + 0.5 + 4.0), rtol=1e-15)


# ----------------------------------------------------------------------------- out=
def _out_cases():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    hard = (x > 0).astype(np.float32)
    return [
        (crossent.softmax_cross_entropy, (x, y), {"label_smoothing": 0.1}),
        (crossent.softmax_cross_entropy, (x, crossent.softmax(x[::-1])), {}),
        (crossent.nll_loss, (crossent.log_softmax(x), y), {}),
        (crossent.softmax_focal_loss, (x, y), {}),
        (crossent.sigmoid_binary_cross_entropy, (x, hard), {}),
        (crossent.binary_cross_entropy, (crossent.sigmoid(x), hard), {}),
        (crossent.sigmoid_focal_loss, (x, hard), {}),
    ]


@pytest.mark.parametrize("case", range(7))
@pytest.mark.parametrize("layout", ["c", "fortran"])
def test_out_receives_the_gradient_and_is_returned(backend, case, layout):
    loss, args, kwargs = _out_cases()[case]
    f = crossent.value_and_grad(loss)
    value, expected = f(*args, **kwargs)
    out = np.full(expected.shape, np.nan, dtype=expected.dtype, order="F" if layout == "fortran" else "C")
    value_out, g = f(*args, out=out, **kwargs)
    assert g is out
    assert value_out == value
    np.testing.assert_array_equal(out, expected)


def test_out_with_the_class_axis_first(backend):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 7))
    y = rng.integers(0, 5, 7)
    f = crossent.value_and_grad(crossent.softmax_cross_entropy)
    _, expected = f(x.T, y)
    out = np.empty_like(x)
    _, g = f(x, y, axis=0, out=out)
    assert g is out
    np.testing.assert_allclose(out, expected.T, rtol=0, atol=1e-15)


def test_out_may_be_the_logits_themselves(backend):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((9, 33)).astype(np.float32)
    y = rng.integers(0, 33, 9)
    f = crossent.value_and_grad(crossent.softmax_cross_entropy)
    value, expected = f(x, y, z_loss=1e-3)
    in_place = x.copy()
    value_in_place, g = f(in_place, y, z_loss=1e-3, out=in_place)
    assert g is in_place
    assert value_in_place == value
    np.testing.assert_array_equal(in_place, expected)


@pytest.mark.parametrize("out, error, match", [
    (np.empty((6, 4), np.float32), ValueError, r"out has shape \(6, 4\).*logits has shape \(6, 5\)"),
    (np.empty((6, 5), np.float64), TypeError, r"out has dtype float64.*float32"),
    ([[0.0] * 5] * 6, TypeError, r"out must be a NumPy array, got list"),
])
def test_bad_out_is_rejected(out, error, match):
    x = np.zeros((6, 5), np.float32)
    with pytest.raises(error, match=match):
        crossent.value_and_grad(crossent.softmax_cross_entropy)(x, np.zeros(6, int), out=out)


def test_read_only_out_is_rejected():
    x = np.zeros((2, 3))
    out = np.empty_like(x)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        crossent.value_and_grad(crossent.softmax_cross_entropy)(x, [0, 1], out=out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 0.5), (None, 0.0)])
def test_sigmoid_focal_gradient_at_infinite_logits_with_hard_targets_is_zero(backend, dtype,
                                                                            alpha, gamma):
    """Where the loss is 0 (a hard target, the logit infinite on its side) the gradient is its
    limit 0, not NaN (issue 9, item 5): the factor (du/dx)/u, which is -inf - -inf in log space,
    is bounded by 1 and multiplies ce = 0."""
    x = np.array([np.inf, -np.inf], dtype=dtype)
    t = np.array([1.0, 0.0], dtype=dtype)
    value, g = crossent.value_and_grad(crossent.sigmoid_focal_loss)(x, t, alpha=alpha, gamma=gamma)
    assert value == 0.0
    np.testing.assert_array_equal(g, [0.0, 0.0])
    # the same limit from finite logits: the gradient shrinks towards 0
    near = crossent.grad(crossent.sigmoid_focal_loss)(np.array([30.0, -30.0], dtype), t,
                                                      alpha=alpha, gamma=gamma)
    assert np.all(np.abs(near) < 1e-12)


@pytest.mark.parametrize("which", ["dense_logits", "dense_targets", "nll", "focal", "binary",
                                   "binary_targets"])
def test_out_shared_with_an_input_still_gets_the_right_gradient(backend, which):
    """Kernels that cannot compute in place are not handed an ``out`` that aliases the first
    argument; an ``out`` over any other input is refused."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6))
    t = rng.dirichlet(np.ones(6), 4)
    y = rng.integers(0, 6, 4)
    loss, first, second = {"dense_logits": (crossent.softmax_cross_entropy, x, t),
                           "dense_targets": (crossent.softmax_cross_entropy, x, t),
                           "nll": (crossent.nll_loss, x - 3, y),
                           "focal": (crossent.softmax_focal_loss, x, y),
                           "binary": (crossent.sigmoid_focal_loss, x, t),
                           "binary_targets": (crossent.sigmoid_binary_cross_entropy, x, t)}[which]
    expected = crossent.grad(loss)(first, second)
    if which in ("dense_targets", "binary_targets"):
        # out over the targets is refused (test_losses.py: out sharing memory raises)
        buf = t.copy()
        with pytest.raises(ValueError, match="out shares memory with targets"):
            crossent.grad(loss)(first, buf, out=buf)
        np.testing.assert_array_equal(buf, t)
        return
    buf = first.copy()
    g = crossent.grad(loss)(buf, second, out=buf)
    assert g is buf
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-15)
