"""crossent.torch.functional against torch.nn.functional (and torchvision's focal formula in torch).

Every option combination, values and gradients, float64/float32/bfloat16 with per-dtype
tolerances, on both paths: the compiled kernels (CPU) and the pure-torch path (forced on CPU).
The documented difference from torch is asserted: an all-ignored "mean" is 0, not NaN.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import crossent.torch as ct  # noqa: E402
from crossent import _dispatch  # noqa: E402
from crossent.torch import _engine  # noqa: E402

N, C = 7, 5
WEIGHT = [0.5, 2.0, 1.0, 3.0, 0.25]
# (rtol, atol) for values and gradients, per input dtype
TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (2e-5, 2e-6), torch.bfloat16: (2e-2, 4e-3)}


@pytest.fixture(params=["kernels", "torch"])
def path(request):
    """Run on the compiled kernels (CPU) and on the pure-torch path (as on a GPU)."""
    if request.param == "torch":
        with _engine.force_torch_path():
            yield request.param
    else:
        yield request.param


def _close(actual, expected, dtype):
    rtol, atol = TOL[dtype]
    assert actual.dtype == dtype
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


def _value_grads(fn, leaves, reduction, upstream_seed=0):
    """fn's value and the gradients of its leaves; "none" is weighted by a random upstream."""
    out = fn(*leaves)
    if reduction == "none":
        up = torch.randn(out.shape, generator=torch.Generator().manual_seed(upstream_seed), dtype=torch.float64)
        (out.double() * up).sum().backward()
    else:
        out.backward()
    return out.detach(), [leaf.grad for leaf in leaves]


def _leaf(a, dtype):
    return torch.tensor(a).to(dtype).requires_grad_(True)


def _oracle_leaf(t):
    """The oracle's copy of a (possibly bfloat16) input: the same numbers, computed in float32+."""
    return t.detach().to(torch.float64 if t.dtype == torch.float64 else torch.float32).requires_grad_(True)


# ----------------------------------------------------------------------------- cross_entropy
GRID = list(itertools.product(["index", "dense"], [False, True], [False, True], [0.0, 0.15],
                              ["mean", "sum", "none"], [torch.float64, torch.float32, torch.bfloat16]))


@pytest.mark.parametrize("kind,weighted,ignore,eps,reduction,dtype", GRID,
                         ids=[f"{k}-w{int(w)}-ig{int(i)}-ls{e}-{r}-{str(d)[6:]}" for k, w, i, e, r, d in GRID])
def test_cross_entropy_matches_torch(path, kind, weighted, ignore, eps, reduction, dtype):
    rng = np.random.default_rng(GRID.index((kind, weighted, ignore, eps, reduction, dtype)))
    x = _leaf(rng.normal(size=(N, C)) * 3, dtype)
    weight = torch.tensor(WEIGHT) if weighted else None
    labels = rng.integers(0, C, size=N)
    if ignore:
        labels[[1, 4]] = -100
    if kind == "index":
        target = torch.tensor(labels)
    else:
        target = torch.tensor(rng.dirichlet(np.ones(C), size=N)).to(dtype)
    opts = dict(weight=weight, reduction=reduction, label_smoothing=eps)
    value, (grad,) = _value_grads(lambda a: ct.cross_entropy(a, target, **opts), [x], reduction)
    xo = _oracle_leaf(x)
    w_o = None if weight is None else weight.to(xo.dtype)
    expected, (expected_grad,) = _value_grads(
        lambda a: F.cross_entropy(a, target.to(xo.dtype) if kind == "dense" else target,
                                  **dict(opts, weight=w_o)), [xo], reduction)
    _close(value, expected.to(dtype), dtype)
    _close(grad, expected_grad.to(dtype), dtype)


@pytest.mark.parametrize("kind", ["index", "dense"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_class_dim_one(path, kind, reduction):
    """(N, C, d1, d2) inputs: classes on dim 1, as in torch."""
    rng = np.random.default_rng(3)
    x = _leaf(rng.normal(size=(3, C, 4, 2)), torch.float64)
    if kind == "index":
        target = torch.tensor(rng.integers(0, C, size=(3, 4, 2)))
        target[0, 1, 1] = -100
    else:
        target = torch.tensor(np.moveaxis(rng.dirichlet(np.ones(C), size=(3, 4, 2)), -1, 1))
    opts = dict(weight=torch.tensor(WEIGHT, dtype=torch.float64), label_smoothing=0.1, reduction=reduction)
    value, (grad,) = _value_grads(lambda a: ct.cross_entropy(a, target, **opts), [x], reduction)
    xo = _oracle_leaf(x)
    expected, (expected_grad,) = _value_grads(lambda a: F.cross_entropy(a, target, **opts), [xo], reduction)
    _close(value, expected, torch.float64)
    _close(grad, expected_grad, torch.float64)


def test_cross_entropy_unbatched_input(path):
    x = _leaf([1.0, -2.0, 0.5], torch.float64)
    value, (grad,) = _value_grads(lambda a: ct.cross_entropy(a, torch.tensor(2)), [x], "mean")
    xo = _oracle_leaf(x)
    expected, (expected_grad,) = _value_grads(lambda a: F.cross_entropy(a, torch.tensor(2)), [xo], "mean")
    _close(value, expected, torch.float64)
    _close(grad, expected_grad, torch.float64)


def _z_softcap_oracle(x, target, weight, eps, z_loss, softcap, reduction, dense):
    """PaLM's z-loss and Gemma 2's soft-cap written out in torch, differentiated by autograd."""
    z = softcap * torch.tanh(x / softcap) if softcap else x
    lse = torch.logsumexp(z, dim=1)
    ce = F.cross_entropy(z, target, weight=weight, label_smoothing=eps, reduction="none")
    if dense:
        rows = ce + z_loss * lse**2
        denominator = x.shape[0]
    else:
        counted = target != -100
        w_y = (weight[target.clamp_min(0)] if weight is not None else torch.ones_like(lse)) * counted
        rows = ce + z_loss * w_y * lse**2
        denominator = w_y.sum()
    if reduction == "none":
        return rows
    return rows.sum() / denominator if reduction == "mean" else rows.sum()


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("z_loss,softcap", [(1e-3, None), (0.0, 2.5), (0.05, 1.5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_z_loss_and_softcap(path, dense, z_loss, softcap, reduction, dtype):
    rng = np.random.default_rng(4)
    x = _leaf(rng.normal(size=(N, C)) * 4, dtype)
    weight = torch.tensor(WEIGHT, dtype=torch.float64)
    labels = torch.tensor(rng.integers(0, C, size=N))
    labels[2] = -100
    target = torch.tensor(rng.dirichlet(np.ones(C), size=N)) if dense else labels
    opts = dict(label_smoothing=0.1, z_loss=z_loss, softcap=softcap, reduction=reduction)
    value, (grad,) = _value_grads(
        lambda a: ct.cross_entropy(a, target.to(dtype) if dense else target, weight=weight, **opts), [x], reduction)
    xo = x.detach().double().requires_grad_(True)
    expected, (expected_grad,) = _value_grads(
        lambda a: _z_softcap_oracle(a, target, weight, 0.1, z_loss, softcap, reduction, dense), [xo], reduction)
    _close(value, expected.to(dtype), dtype)
    _close(grad, expected_grad.to(dtype), dtype)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_all_ignored_mean_is_zero_not_nan(path, weighted, eps):
    x = _leaf(np.random.default_rng(6).normal(size=(4, C)), torch.float32)
    target = torch.full((4,), -100)
    weight = torch.tensor(WEIGHT) if weighted else None
    assert torch.isnan(F.cross_entropy(x.detach(), target, weight=weight, label_smoothing=eps))  # torch: 0/0
    loss = ct.cross_entropy(x, target, weight=weight, label_smoothing=eps)
    loss.backward()
    assert loss.item() == 0.0
    assert x.grad.shape == x.shape and not x.grad.any()


def test_masked_logits_are_sliced_away(path):
    """A -inf logit is a masked class: the loss equals that of the logits without it."""
    x = torch.tensor([[1.0, -np.inf, 0.5, 2.0], [0.0, 3.0, -np.inf, -1.0]], dtype=torch.float64)
    kept = torch.tensor([[1.0, 0.5, 2.0], [0.0, 3.0, -1.0]], dtype=torch.float64)
    y, y_kept = torch.tensor([0, 1]), torch.tensor([0, 1])
    x.requires_grad_(True)
    loss = ct.cross_entropy(x, y, label_smoothing=0.2)
    loss.backward()
    expected = F.cross_entropy(kept, y_kept, label_smoothing=0.2)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    assert x.grad[0, 1] == 0 and x.grad[1, 2] == 0


def test_probability_targets_get_gradients(path):
    rng = np.random.default_rng(7)
    x = _leaf(rng.normal(size=(N, C)), torch.float64)
    t = _leaf(rng.dirichlet(np.ones(C), size=N), torch.float64)
    w = torch.tensor(WEIGHT, dtype=torch.float64)
    _, (gx, gt) = _value_grads(lambda a, b: ct.cross_entropy(a, b, weight=w, label_smoothing=0.2), [x, t], "mean")
    xo, to = _oracle_leaf(x), _oracle_leaf(t)
    _, (ex, et) = _value_grads(lambda a, b: F.cross_entropy(a, b, weight=w, label_smoothing=0.2), [xo, to], "mean")
    _close(gx, ex, torch.float64)
    _close(gt, et, torch.float64)


def test_backward_twice_with_retained_graph_accumulates(path):
    x = _leaf(np.random.default_rng(8).normal(size=(N, C)), torch.float32)
    y = torch.tensor(np.random.default_rng(8).integers(0, C, size=N))
    loss = ct.cross_entropy(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    xo = _oracle_leaf(x)
    F.cross_entropy(xo, y).backward()
    torch.testing.assert_close(first, xo.grad, rtol=2e-5, atol=2e-6)


def test_cpu_float32_input_reaches_the_kernel_without_a_copy(monkeypatch):
    seen = {}
    original = _dispatch.softmax_ce_index

    def spy(x, *args, **kwargs):
        seen["x"] = x
        return original(x, *args, **kwargs)
    monkeypatch.setattr(_dispatch, "softmax_ce_index", spy)
    x = torch.randn(16, 9, requires_grad=True)
    ct.cross_entropy(x, torch.randint(0, 9, (16,))).backward()
    assert np.shares_memory(seen["x"], x.detach().numpy())


# ----------------------------------------------------------------------------- binary losses
BGRID = list(itertools.product([False, True], [False, True], ["mean", "sum", "none"],
                               [torch.float64, torch.float32, torch.bfloat16]))


@pytest.mark.parametrize("weighted,pos_weighted,reduction,dtype", BGRID)
def test_binary_cross_entropy_with_logits_matches_torch(path, weighted, pos_weighted, reduction, dtype):
    rng = np.random.default_rng(BGRID.index((weighted, pos_weighted, reduction, dtype)))
    xa = rng.normal(size=(N, 4)) * 4
    xa[0, 0], xa[1, 1] = 30.0, -30.0
    x = _leaf(xa, dtype)
    t = torch.tensor(np.where(rng.uniform(size=(N, 4)) < 0.3, rng.uniform(size=(N, 4)),
                              rng.integers(0, 2, size=(N, 4)))).to(dtype)
    weight = torch.tensor(rng.uniform(0, 2, size=(N, 1))) if weighted else None
    pos_weight = torch.tensor([1.0, 3.0, 0.5, 0.0]) if pos_weighted else None
    value, (grad,) = _value_grads(
        lambda a: ct.binary_cross_entropy_with_logits(a, t, weight, reduction, pos_weight), [x], reduction)
    xo = _oracle_leaf(x)
    cast = (lambda v: None if v is None else v.to(xo.dtype))
    expected, (expected_grad,) = _value_grads(
        lambda a: F.binary_cross_entropy_with_logits(a, t.to(xo.dtype), cast(weight), reduction=reduction,
                                                     pos_weight=cast(pos_weight)), [xo], reduction)
    _close(value, expected.to(dtype), dtype)
    _close(grad, expected_grad.to(dtype), dtype)


def test_binary_label_smoothing_and_target_gradient(path):
    rng = np.random.default_rng(9)
    x, t = _leaf(rng.normal(size=(N, 3)) * 3, torch.float64), _leaf(rng.uniform(size=(N, 3)), torch.float64)
    pw = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    value, (gx, gt) = _value_grads(
        lambda a, b: ct.binary_cross_entropy_with_logits(a, b, pos_weight=pw, label_smoothing=0.2), [x, t], "mean")
    xo, to = _oracle_leaf(x), _oracle_leaf(t)
    expected, (ex, et) = _value_grads(  # torch has no smoothing: smooth the target by hand
        lambda a, b: F.binary_cross_entropy_with_logits(a, b * 0.8 + 0.1, pos_weight=pw), [xo, to], "mean")
    _close(value, expected, torch.float64)
    _close(gx, ex, torch.float64)
    _close(gt, et, torch.float64)


def _torchvision_sigmoid_focal(x, t, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, verbatim in torch."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2), (-1, 2), (0.6, 0.5), (0.25, 0)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sigmoid_focal_loss_matches_torchvision(path, alpha, gamma, reduction, dtype):
    rng = np.random.default_rng(10)
    x = _leaf(rng.normal(size=(N, 3)) * 3, dtype)
    t = torch.tensor(np.where(rng.uniform(size=(N, 3)) < 0.3, rng.uniform(size=(N, 3)),
                              rng.integers(0, 2, size=(N, 3)))).to(dtype)
    value, (grad,) = _value_grads(lambda a: ct.sigmoid_focal_loss(a, t, alpha, gamma, reduction), [x], reduction)
    xo = x.detach().double().requires_grad_(True)
    expected, (expected_grad,) = _value_grads(
        lambda a: _torchvision_sigmoid_focal(a, t.double(), alpha, gamma, reduction), [xo], reduction)
    _close(value, expected.to(dtype), dtype)
    _close(grad, expected_grad.to(dtype), dtype)


def test_sigmoid_focal_loss_default_reduction_is_none():
    x, t = torch.randn(3, 2), torch.ones(3, 2)
    assert ct.sigmoid_focal_loss(x, t).shape == (3, 2)


@pytest.mark.parametrize("alpha", [None, 0.3, "per-class"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_focal_loss_matches_the_formula(path, alpha, gamma, reduction):
    rng = np.random.default_rng(11)
    x = _leaf(rng.normal(size=(N, C)) * 2, torch.float64)
    y = torch.tensor(rng.integers(0, C, size=N))
    y[3] = -100
    a = torch.tensor(WEIGHT, dtype=torch.float64) if alpha == "per-class" else alpha
    value, (grad,) = _value_grads(lambda v: ct.softmax_focal_loss(v, y, a, gamma, reduction=reduction), [x], reduction)

    def oracle(v):  # Lin et al. 2017: -alpha_y (1 - p_y)^gamma log p_y
        counted = y != -100
        yc = y.clamp_min(0)
        lp = torch.log_softmax(v, dim=1).gather(1, yc[:, None])[:, 0]
        a_y = torch.ones_like(lp) if a is None else (a[yc] if isinstance(a, torch.Tensor) else torch.full_like(lp, a))
        rows = torch.where(counted, -a_y * (1 - lp.exp()) ** gamma * lp, 0.0)
        return {"none": rows, "sum": rows.sum(), "mean": rows.sum() / counted.sum()}[reduction]
    xo = _oracle_leaf(x)
    expected, (expected_grad,) = _value_grads(oracle, [xo], reduction)
    _close(value, expected, torch.float64)
    _close(grad, expected_grad, torch.float64)


# ----------------------------------------------------------------------------- gradcheck
def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck(path, reduction):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(5, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, 4, (5, 3), generator=g)
    y[0, 0] = -100
    w = torch.rand(4, dtype=torch.float64, generator=g) + 0.5
    probs = torch.softmax(torch.randn(5, 4, 3, dtype=torch.float64, generator=g), dim=1).requires_grad_(True)
    t = torch.rand(5, 4, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    _gradcheck(lambda a: ct.cross_entropy(a, y, w, reduction=reduction, label_smoothing=0.1, z_loss=0.01,
                                          softcap=3.0), x)
    _gradcheck(lambda a, b: ct.cross_entropy(a, b, w, reduction=reduction, label_smoothing=0.1), x, probs)
    _gradcheck(lambda a, b: ct.binary_cross_entropy_with_logits(a, b, reduction=reduction,
                                                                pos_weight=torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)),
               x, t)
    _gradcheck(lambda a: ct.sigmoid_focal_loss(a, t.detach(), 0.25, 1.5, reduction), x)
    _gradcheck(lambda a: ct.softmax_focal_loss(a, y, None, 1.5, reduction=reduction), x)


# ----------------------------------------------------------------------------- errors, imports
def test_bad_inputs_raise_clear_errors():
    x = torch.randn(3, 4)
    with pytest.raises(IndexError, match=r"target\[1\] = 4 is outside \[0, 4\)"):
        ct.cross_entropy(x, torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="label_smoothing"):
        ct.cross_entropy(x, torch.tensor([0, 1, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        ct.cross_entropy(x, torch.tensor([0, 1, 1]), reduction="avg")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        ct.cross_entropy(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="ignore_index=3"):
        ct.cross_entropy(x, torch.softmax(x, 1), ignore_index=3)
    with pytest.raises(ValueError, match=r"target\[0, 1\] = 2.0 is outside \[0, 1\]"):
        ct.binary_cross_entropy_with_logits(x, torch.tensor([[0.0, 2.0, 0, 0]] * 3))
    with pytest.raises(TypeError, match="floating"):
        ct.cross_entropy(torch.ones(3, 4, dtype=torch.long), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="weight requires grad"):
        ct.cross_entropy(x, torch.tensor([0, 1, 1]), weight=torch.ones(4, requires_grad=True))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        ct.cross_entropy(x, torch.tensor([0, 1, 1]), weight=torch.ones(3))


def test_import_crossent_does_not_import_torch():
    code = "import sys, crossent; crossent.softmax_cross_entropy([[0.0, 1.0]], [1]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_crossent_torch_without_torch_says_what_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import crossent.torch\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "crossent.torch needs PyTorch" in out.stdout and "pip install torch" in out.stdout


def test_float16_is_computed_in_float32(path):
    x = _leaf(np.random.default_rng(13).normal(size=(N, C)), torch.float16)
    y = torch.tensor(np.random.default_rng(13).integers(0, C, size=N))
    value, (grad,) = _value_grads(lambda a: ct.cross_entropy(a, y, label_smoothing=0.1), [x], "mean")
    xo = _oracle_leaf(x)
    expected, (expected_grad,) = _value_grads(lambda a: F.cross_entropy(a, y, label_smoothing=0.1), [xo], "mean")
    assert value.dtype == grad.dtype == torch.float16
    torch.testing.assert_close(value.float(), expected.to(torch.float16).float(), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(grad.float(), expected_grad.to(torch.float16).float(), rtol=1e-3, atol=1e-5)


def test_infinite_and_nan_logits(path):
    x = torch.tensor([[0.0, -np.inf, 1.0], [0.0, np.nan, 1.0], [0.5, 0.0, -1.0]], dtype=torch.float64)
    rows = ct.cross_entropy(x, torch.tensor([1, 0, 0]), reduction="none")
    assert rows[0] == np.inf  # the target's logit is -inf: probability 0
    assert torch.isnan(rows[1])  # NaN in, NaN out
    torch.testing.assert_close(rows[2], F.cross_entropy(x[2:], torch.tensor([0]))[()], rtol=1e-12, atol=0)


def test_no_gradient_is_computed_when_autograd_is_off(monkeypatch):
    calls = []
    original = _dispatch.softmax_ce_index

    def spy(*args, **kwargs):
        calls.append(args[4])  # need_grad
        return original(*args, **kwargs)
    monkeypatch.setattr(_dispatch, "softmax_ce_index", spy)
    x = torch.randn(4, 3, requires_grad=True)
    with torch.no_grad():
        value = ct.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    assert calls == [False] and value.grad_fn is None
    torch.testing.assert_close(value, F.cross_entropy(x.detach(), torch.tensor([0, 1, 2, 0])))
    ct.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    assert calls == [False, True]


@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "sigmoid_focal_loss"])
def test_binary_losses_on_0d_tensors_needing_grad(backend, name):
    """On the reference path a 0-d input needing a gradient failed with "expected np.ndarray
    (got numpy.float64)". Oracle: PyTorch's own BCE-with-logits (torchvision's focal formula
    with gamma=0, alpha=None is that BCE)."""
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    t = torch.tensor(1.0, dtype=torch.float64)
    if name == "sigmoid_focal_loss":
        loss = ct.sigmoid_focal_loss(x, t, alpha=-1, gamma=0.0, reduction="mean")
    else:
        loss = ct.binary_cross_entropy_with_logits(x, t)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(x_ref, t)
    loss.backward()
    expected.backward()
    assert loss.shape == () and x.grad.shape == ()
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- fused-head options
def _naive_options(x, target, weight, reduction, label_smoothing, logit_scale, sample_weight, normalizer):
    """The head options written out around F.cross_entropy in float64: rows of the scaled
    logits times their sample weight; "mean" over sum_n s_n w_{y_n} (counted rows), or
    sum_n s_n for probabilities, or the normalizer."""
    rows = F.cross_entropy(x * logit_scale, target, weight=weight, reduction="none",
                           label_smoothing=label_smoothing)
    s = torch.ones_like(rows) if sample_weight is None else sample_weight
    rows = rows * s
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    if normalizer is not None:
        return rows.sum() / normalizer
    if target.is_floating_point():
        return rows.sum() / s.sum()
    w_y = torch.ones_like(rows) if weight is None else weight[target.clamp_min(0)]
    return rows.sum() / (s * w_y * (target != -100)).sum()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dense", [False, True], ids=["index", "probs"])
@pytest.mark.parametrize("opts", [dict(logit_scale=0.4), dict(sample_weight=True, weight=True),
                                  dict(normalizer=5.0, label_smoothing=0.1),
                                  dict(logit_scale=3.0, sample_weight=True, normalizer=torch.tensor(2.0))],
                         ids=str)
def test_head_options_match_the_naive_formula(path, reduction, dense, opts):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(N, C, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N, 3), generator=g)
    y[1, 2] = -100
    target = torch.softmax(torch.randn(N, C, 3, generator=g, dtype=torch.float64), 1) if dense else y
    kw = dict(opts)
    weight = torch.tensor(WEIGHT, dtype=torch.float64) if kw.pop("weight", False) else None
    sample_weight = torch.rand(N, 3, generator=g, dtype=torch.float64) if kw.pop("sample_weight", False) else None
    full = dict(logit_scale=1.0, normalizer=None, label_smoothing=0.0) | kw
    upstream = torch.randn(N, 3, generator=g, dtype=torch.float64)

    def run(fn):
        a = x.clone().requires_grad_(True)
        out = fn(a)
        ((out * upstream).sum() if out.dim() else out).backward()
        return out.detach(), a.grad
    got = run(lambda a: ct.cross_entropy(a, target, weight, reduction=reduction,
                                         sample_weight=sample_weight, **kw))
    want = run(lambda a: _naive_options(a, target, weight, reduction, sample_weight=sample_weight,
                                        **full))
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_, rtol=1e-10, atol=1e-12)
    a = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ct.cross_entropy(t, target, weight, reduction=reduction,
                                                               sample_weight=sample_weight, **kw), (a,))


def test_sample_weight_is_checked():
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"sample_weight .* shape \(3,\)"):
        ct.cross_entropy(x, y, sample_weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"sample_weight\[1\] = -2.0 is negative"):
        ct.cross_entropy(x, y, sample_weight=torch.tensor([1.0, -2.0, 1.0]))
    with pytest.raises(ValueError, match="sample_weight requires grad"):
        ct.cross_entropy(x, y, sample_weight=torch.ones(3, requires_grad=True))
    with pytest.raises(ValueError, match="logit_scale must be > 0"):
        ct.cross_entropy(x, y, logit_scale=-1.0)
