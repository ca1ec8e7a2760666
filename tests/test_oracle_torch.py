"""PyTorch as the oracle: values and gradients (torch autograd) in float64.

softmax_cross_entropy against torch.nn.functional.cross_entropy for every combination of
index/dense targets x weight x ignore_index x label_smoothing x reduction; nll_loss against
F.nll_loss; the binary losses against F.binary_cross_entropy(_with_logits); sigmoid_focal_loss
against torchvision's formula re-implemented in torch; softmax_focal_loss against the paper's
formula in torch. The documented differences are asserted, not skipped: an all-ignored "mean"
(torch: NaN, crossent: 0 with zero gradient) and ignore_index with dense targets (crossent
raises; torch ignores the argument).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import crossent

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-12, 1e-14
N, C = 7, 5
WEIGHT = np.array([0.5, 2.0, 1.0, 3.0, 0.25])


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual), expected.detach().numpy(), rtol=rtol, atol=atol)


def _torch_value_grad(fn, x_np, reduction):
    """torch's value, and its gradient of the reduced value (or of the sum for "none")."""
    x = torch.tensor(x_np, dtype=torch.float64, requires_grad=True)
    out = fn(x)
    (out if reduction != "none" else out.sum()).backward()
    return out, x.grad


# ----------------------------------------------------------------------------- cross_entropy
GRID = list(itertools.product(["index", "dense"], [False, True], [False, True], [0.0, 0.15],
                              ["mean", "sum", "none"]))


@pytest.mark.parametrize("kind,weighted,ignore,eps,reduction", GRID,
                         ids=[f"{k}-w{int(w)}-ig{int(i)}-ls{e}-{r}" for k, w, i, e, r in GRID])
def test_cross_entropy_against_torch(backend, kind, weighted, ignore, eps, reduction):
    rng = np.random.default_rng(GRID.index((kind, weighted, ignore, eps, reduction)))
    x = rng.normal(size=(N, C)) * 3
    weight = WEIGHT if weighted else None
    labels = rng.integers(0, C, size=N)
    if ignore:
        labels[[1, 4]] = -100
    targets = labels if kind == "index" else rng.dirichlet(np.ones(C), size=N)
    opts = dict(weight=weight, label_smoothing=eps, reduction=reduction)
    if kind == "dense" and ignore:
        # the documented difference: crossent refuses what torch silently ignores
        with pytest.raises(ValueError, match="ignore_index"):
            crossent.softmax_cross_entropy(x, targets, ignore_index=-100, **opts)
        return
    ce_opts = dict(opts, ignore_index=-100 if ignore else None)
    t_targets = torch.tensor(targets)
    t_weight = None if weight is None else torch.tensor(weight)
    expected, expected_grad = _torch_value_grad(
        lambda xt: F.cross_entropy(xt, t_targets, weight=t_weight, ignore_index=-100,
                                   label_smoothing=eps, reduction=reduction), x, reduction)
    _close(crossent.softmax_cross_entropy(x, targets, **ce_opts), expected)
    if reduction != "none":
        value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)(x, targets, **ce_opts)
        _close(value, expected)
        _close(g, expected_grad)


@pytest.mark.parametrize("kind", ["index", "dense"])
@pytest.mark.parametrize("shape", [(N, C), (3, 20_001)], ids=["short", "long_rows"])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_softcapped_cross_entropy_against_torch(backend, kind, shape, threads):
    """Gemma 2's soft-capping is F.cross_entropy of s tanh(x / s) (gradient through tanh by
    autograd); three long rows over 2 or 4 threads are split over the threads."""
    rng = np.random.default_rng(17)
    x = rng.normal(size=shape) * 20
    weight = rng.random(shape[1]) + 0.5
    targets = rng.integers(0, shape[1], size=shape[0]) if kind == "index" else \
        rng.dirichlet(np.ones(shape[1]), size=shape[0])
    t_targets, t_weight = torch.tensor(targets), torch.tensor(weight)
    expected, expected_grad = _torch_value_grad(
        lambda xt: F.cross_entropy(15.0 * torch.tanh(xt / 15.0), t_targets, weight=t_weight,
                                   label_smoothing=0.1), x, "mean")
    before = crossent.get_num_threads()
    try:
        crossent.set_num_threads(threads)
        value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)(
            x, targets, weight=weight, label_smoothing=0.1, softcap=15.0)
    finally:
        crossent.set_num_threads(before)
    _close(value, expected)
    _close(g, expected_grad)


@pytest.mark.parametrize("kind", ["index", "dense"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_class_dim_one(backend, kind, eps):
    """torch's class dim 1 on (N, C, d1, d2) is crossent's axis=1."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, C, 4, 2))
    if kind == "index":
        targets = rng.integers(0, C, size=(3, 4, 2))
    else:
        targets = np.moveaxis(rng.dirichlet(np.ones(C), size=(3, 4, 2)), -1, 1)
    t_w = torch.tensor(WEIGHT)
    expected, expected_grad = _torch_value_grad(
        lambda xt: F.cross_entropy(xt, torch.tensor(targets), weight=t_w, label_smoothing=eps), x, "mean")
    value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)(x, targets, axis=1, weight=WEIGHT,
                                                                       label_smoothing=eps)
    _close(value, expected)
    _close(g, expected_grad)
    per_row = F.cross_entropy(torch.tensor(x), torch.tensor(targets), weight=t_w, label_smoothing=eps,
                              reduction="none")
    _close(crossent.softmax_cross_entropy(x, targets, axis=1, weight=WEIGHT, label_smoothing=eps,
                                          reduction="none"), per_row)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_all_ignored_batch_is_the_documented_difference(backend, weighted, eps):
    x = np.random.default_rng(6).normal(size=(4, C))
    labels = np.full(4, -100)
    weight = WEIGHT if weighted else None
    xt = torch.tensor(x, requires_grad=True)
    torch_value = F.cross_entropy(xt, torch.tensor(labels), weight=None if weight is None else torch.tensor(weight),
                                  label_smoothing=eps)
    assert torch.isnan(torch_value)  # torch: 0 / 0
    value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)(
        x, labels, weight=weight, ignore_index=-100, label_smoothing=eps)
    assert value == 0.0
    assert g.shape == x.shape and not g.any()
    # "sum" agrees with torch: nothing counted sums to 0
    torch_sum = F.cross_entropy(torch.tensor(x), torch.tensor(labels), reduction="sum", label_smoothing=eps)
    assert float(torch_sum) == 0.0
    assert crossent.softmax_cross_entropy(x, labels, ignore_index=-100, reduction="sum",
                                          label_smoothing=eps) == 0.0


def test_cross_entropy_float32_against_torch(backend):
    """A batch large enough for the compiled kernel to split rows across threads."""
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(4096, 33)) * 5).astype(np.float32)
    y = rng.integers(0, 33, size=4096)
    xt = torch.tensor(x, requires_grad=True)
    out = F.cross_entropy(xt, torch.tensor(y), label_smoothing=0.05)
    out.backward()
    value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)(x, y, label_smoothing=0.05)
    assert value.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(value, out.item(), rtol=2e-6)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------- nll_loss
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_against_torch(backend, weighted, ignore, reduction):
    rng = np.random.default_rng(9)
    log_probs = np.log(rng.dirichlet(np.ones(C), size=(N, 3)))  # (N, 3, C)
    labels = rng.integers(0, C, size=(N, 3))
    if ignore:
        labels[0, 1] = labels[5, 2] = 7
    weight = WEIGHT if weighted else None
    x_torch_layout = np.moveaxis(log_probs, -1, 1)  # torch wants (N, C, d)
    expected, expected_grad = _torch_value_grad(
        lambda xt: F.nll_loss(xt, torch.tensor(labels), weight=None if weight is None else torch.tensor(weight),
                              ignore_index=7 if ignore else -100, reduction=reduction),
        x_torch_layout, reduction)
    opts = dict(weight=weight, ignore_index=7 if ignore else None, reduction=reduction)
    _close(crossent.nll_loss(x_torch_layout, labels, axis=1, **opts), expected)
    _close(crossent.nll_loss(log_probs, labels, **opts), expected)
    if reduction != "none":
        _, g = crossent.value_and_grad(crossent.nll_loss)(x_torch_layout, labels, axis=1, **opts)
        _close(g, expected_grad)


# ----------------------------------------------------------------------------- binary
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("pos_weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_binary_cross_entropy_against_torch(backend, weighted, pos_weighted, eps, reduction):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(N, 4)) * 4
    x[0, 0], x[1, 1] = 40.0, -40.0
    t = np.where(rng.uniform(size=(N, 4)) < 0.3, rng.uniform(size=(N, 4)), rng.integers(0, 2, size=(N, 4)))
    weight = rng.uniform(0, 2, size=(N, 1)) if weighted else None
    pos_weight = np.array([1.0, 3.0, 0.5, 0.0]) if pos_weighted else None
    t_smooth = t * (1 - eps) + eps / 2  # torch has no label_smoothing here: smooth the targets
    expected, expected_grad = _torch_value_grad(
        lambda xt: F.binary_cross_entropy_with_logits(
            xt, torch.tensor(t_smooth), weight=None if weight is None else torch.tensor(weight),
            pos_weight=None if pos_weight is None else torch.tensor(pos_weight), reduction=reduction),
        x, reduction)
    opts = dict(weight=weight, pos_weight=pos_weight, label_smoothing=eps, reduction=reduction)
    _close(crossent.sigmoid_binary_cross_entropy(x, t, **opts), expected)
    if reduction != "none":
        _, g = crossent.value_and_grad(crossent.sigmoid_binary_cross_entropy)(x, t, **opts)
        _close(g, expected_grad)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_against_torch(backend, weighted, reduction):
    rng = np.random.default_rng(11)
    p = rng.uniform(1e-6, 1 - 1e-6, size=(N, 3))  # inside (0, 1): torch clamps log at -100
    t = rng.uniform(size=(N, 3))
    weight = rng.uniform(0, 2, size=3) if weighted else None
    expected, expected_grad = _torch_value_grad(
        lambda pt: F.binary_cross_entropy(pt, torch.tensor(t), weight=None if weight is None else torch.tensor(weight),
                                          reduction=reduction), p, reduction)
    _close(crossent.binary_cross_entropy(p, t, weight=weight, reduction=reduction), expected)
    if reduction != "none":
        _, g = crossent.value_and_grad(crossent.binary_cross_entropy)(p, t, weight=weight, reduction=reduction)
        _close(g, expected_grad, rtol=1e-11)


def test_binary_cross_entropy_no_clamp_unlike_torch(backend):
    """The documented difference: torch clamps log at -100, crossent returns the exact inf."""
    p, t = np.array([0.0, 0.5]), np.array([1.0, 1.0])
    assert F.binary_cross_entropy(torch.tensor(p), torch.tensor(t), reduction="sum").item() == pytest.approx(
        100 + np.log(2))
    assert crossent.binary_cross_entropy(p, t, reduction="sum") == np.inf


# ----------------------------------------------------------------------------- focal losses
def _torchvision_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss (v0.20), verbatim but for alpha=None meaning 'off'."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("alpha", [0.25, None, 0.9])
@pytest.mark.parametrize("gamma", [2.0, 0.5, 0.0, 1.3])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_focal_loss_against_torchvision_formula(backend, alpha, gamma, soft, reduction):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(N, 3)) * 3
    t = rng.uniform(size=(N, 3)) if soft else rng.integers(0, 2, size=(N, 3)).astype(np.float64)
    expected, expected_grad = _torch_value_grad(
        lambda xt: _torchvision_sigmoid_focal_loss(xt, torch.tensor(t), alpha, gamma, reduction), x, reduction)
    opts = dict(alpha=alpha, gamma=gamma, reduction=reduction)
    _close(crossent.sigmoid_focal_loss(x, t, **opts), expected, rtol=1e-11)
    if reduction != "none":
        _, g = crossent.value_and_grad(crossent.sigmoid_focal_loss)(x, t, **opts)
        _close(g, expected_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("alpha", [None, 0.25, "per_class"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("ignore", [False, True])
def test_softmax_focal_loss_against_torch_formula(backend, alpha, gamma, ignore):
    rng = np.random.default_rng(13)
    x = rng.normal(size=(N, C)) * 2
    y = rng.integers(0, C, size=N)
    if ignore:
        y[2] = -1
    a = WEIGHT if alpha == "per_class" else alpha
    keep = torch.tensor(y != -1)

    def focal(xt):
        logp = torch.log_softmax(xt, dim=1)[torch.arange(N), torch.tensor(np.where(y < 0, 0, y))]
        a_y = torch.ones(N, dtype=torch.float64) if a is None else torch.tensor(np.broadcast_to(a, (C,)))[
            torch.tensor(np.where(y < 0, 0, y))]
        loss = -a_y * (1 - logp.exp()) ** gamma * logp
        return loss[keep].mean()

    expected, expected_grad = _torch_value_grad(focal, x, "mean")
    value, g = crossent.value_and_grad(crossent.softmax_focal_loss)(
        x, y, alpha=a, gamma=gamma, ignore_index=-1 if ignore else None)
    _close(value, expected, rtol=1e-11)
    _close(g, expected_grad, rtol=1e-10, atol=1e-13)
