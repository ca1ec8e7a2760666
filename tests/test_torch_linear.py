"""crossent.torch.linear_cross_entropy against F.cross_entropy(hidden @ weight.T + bias).

Values and the gradients of hidden, weight and bias for every option, several chunk sizes
(one row, uneven, all rows), both paths (kernels and pure torch), float64/float32/bfloat16,
reduction "none" with an arbitrary upstream gradient, and gradcheck in float64 with a bias.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import crossent.torch as ct  # noqa: E402
from crossent.torch import _engine  # noqa: E402
from crossent.torch._autograd import default_chunk_rows  # noqa: E402

TOL = {torch.float64: (1e-10, 1e-12), torch.float32: (3e-5, 3e-6), torch.bfloat16: (3e-2, 1e-2)}


@pytest.fixture(params=["kernels", "torch"])
def path(request):
    if request.param == "torch":
        with _engine.force_torch_path():
            yield request.param
    else:
        yield request.param


def _problem(dtype, n=11, d=6, v=13, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.7).to(dtype).requires_grad_(True)
    b = (torch.randn(v, generator=g, dtype=torch.float64) * 0.3).to(dtype).requires_grad_(True) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    y[[2, n - 4]] = -100
    return h, w, b, y


def _run(fn, leaves, reduction, seed=1):
    out = fn(*leaves)
    if reduction == "none":
        up = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        (out.double() * up).sum().backward()
    else:
        out.backward()
    return out.detach(), [leaf.grad for leaf in leaves]


def _naive(h, w, b, y, reduction, eps, z_loss, softcap):
    z = h @ w.T + (b if b is not None else 0)
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    rows = F.cross_entropy(z, y, reduction="none", label_smoothing=eps)
    counted = y != -100
    rows = rows + z_loss * counted.to(z.dtype) * torch.logsumexp(z, dim=1) ** 2
    if reduction == "none":
        return rows
    return rows.sum() / counted.sum() if reduction == "mean" else rows.sum()


GRID = list(itertools.product(["mean", "sum", "none"], [0.0, 0.1], [(0.0, None), (1e-3, 4.0)],
                              [1, 4, None], [torch.float64, torch.float32, torch.bfloat16]))


@pytest.mark.parametrize("reduction,eps,zl_cap,chunk,dtype", GRID)
def test_matches_the_naive_loss(path, reduction, eps, zl_cap, chunk, dtype):
    z_loss, softcap = zl_cap
    h, w, b, y = _problem(dtype, seed=GRID.index((reduction, eps, zl_cap, chunk, dtype)))
    value, grads = _run(lambda h_, w_, b_: ct.linear_cross_entropy(
        h_, w_, y, b_, reduction=reduction, label_smoothing=eps, z_loss=z_loss, softcap=softcap,
        chunk_size=chunk), [h, w, b], reduction)
    oracle = [t.detach().to(torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_(True)
              for t in (h, w, b)]
    expected, expected_grads = _run(lambda *a: _naive(*a, y, reduction, eps, z_loss, softcap), oracle, reduction)
    rtol, atol = TOL[dtype]
    assert value.dtype == dtype
    torch.testing.assert_close(value.double(), expected.double(), rtol=rtol, atol=atol)
    for got, want, leaf in zip(grads, expected_grads, (h, w, b)):
        assert got.dtype == leaf.dtype and got.shape == leaf.shape
        torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol)


def test_without_bias_and_with_leading_dims(path):
    h, w, _, y = _problem(torch.float64, n=12, bias=False)
    h3 = h.detach().reshape(3, 4, -1).requires_grad_(True)
    y3 = y.reshape(3, 4)
    value, (gh, gw) = _run(lambda a, c: ct.linear_cross_entropy(a, c, y3, chunk_size=5), [h3, w], "mean")
    ho, wo = h.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    expected, (eh, ew) = _run(lambda a, c: F.cross_entropy(a @ c.T, y), [ho, wo], "mean")
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(gh, eh.reshape(3, 4, -1), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(gw, ew, rtol=1e-10, atol=1e-13)


def test_only_weight_requires_grad():
    h, w, b, y = _problem(torch.float32)
    h, b = h.detach(), b.detach()
    ct.linear_cross_entropy(h, w, y, b).backward()
    wo = w.detach().clone().requires_grad_(True)
    F.cross_entropy(h @ wo.T + b, y).backward()
    torch.testing.assert_close(w.grad, wo.grad, rtol=3e-5, atol=3e-6)


def test_all_ignored_mean_is_zero():
    h, w, b, _ = _problem(torch.float32)
    loss = ct.linear_cross_entropy(h, w, torch.full((h.shape[0],), -100), b)
    loss.backward()
    assert loss.item() == 0.0 and not h.grad.any() and not w.grad.any() and not b.grad.any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_with_bias(path, reduction):
    h, w, b, y = _problem(torch.float64, n=7, d=3, v=5)
    assert torch.autograd.gradcheck(
        lambda a, c, d: ct.linear_cross_entropy(a, c, y, d, reduction=reduction, label_smoothing=0.1,
                                                z_loss=0.01, softcap=3.0, chunk_size=4),
        (h, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_default_chunk_keeps_the_buffer_small():
    # SPEC 7 shape: N=2048, V=32768, float32 -> a (128, V) buffer, 1/16 of the logits
    assert default_chunk_rows(2048, 32768, 4) == 128
    assert default_chunk_rows(4096, 262144, 4) * 16 == 4096
    assert default_chunk_rows(10, 100, 4) == 10  # a small problem: one chunk


def test_bad_inputs_raise_clear_errors():
    h, w, b, y = _problem(torch.float32)
    with pytest.raises(ValueError, match="share D"):
        ct.linear_cross_entropy(h, w[:, :3], y)
    with pytest.raises(ValueError, match=r"bias must have shape \(13,\)"):
        ct.linear_cross_entropy(h, w, y, b[:4])
    with pytest.raises(IndexError, match=r"target\[0\] = 13 is outside \[0, 13\)"):
        ct.linear_cross_entropy(h, w, torch.full((h.shape[0],), 13))
    with pytest.raises(ValueError, match="chunk_size"):
        ct.linear_cross_entropy(h, w, y, chunk_size=0)
    with pytest.raises(ValueError, match=r"target must have shape \(11,\)"):
        ct.linear_cross_entropy(h, w, y[:3])


def test_module_wrapper():
    h, w, b, y = _problem(torch.float64)
    loss = ct.LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=3)(h, w, y, b)
    torch.testing.assert_close(loss, F.cross_entropy(h @ w.T + b, y, label_smoothing=0.1), rtol=1e-12, atol=0)


def test_none_reduction_notices_weights_changed_before_backward():
    h, w, b, y = _problem(torch.float32)
    loss = ct.linear_cross_entropy(h, w, y, b, reduction="none")
    with torch.no_grad():
        w.add_(1.0)  # e.g. an optimizer step between forward and backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.sum().backward()
