"""The nn.Module wrappers equal torch.nn's modules (and crossent.torch's functions), keep their
weights as buffers (they follow .to() and the state_dict) and pass gradients through."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import crossent.torch as ct  # noqa: E402


def _pair(module, reference, *inputs):
    x = inputs[0].clone().requires_grad_(True)
    xr = inputs[0].clone().requires_grad_(True)
    out, expected = module(x, *inputs[1:]), reference(xr, *inputs[1:])
    out.backward(torch.ones_like(out))
    expected.backward(torch.ones_like(expected))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-14)


def test_cross_entropy_loss_module():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 3, dtype=torch.float64, generator=g)
    y = torch.randint(0, 4, (6, 3), generator=g)
    y[0, 0] = 7  # ignored with ignore_index=7
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        _pair(ct.CrossEntropyLoss(w, ignore_index=7, reduction=reduction, label_smoothing=0.1),
              nn.CrossEntropyLoss(w, ignore_index=7, reduction=reduction, label_smoothing=0.1), x, y)


def test_bce_with_logits_loss_module():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g)
    t = torch.rand(5, 3, dtype=torch.float64, generator=g)
    pw = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    w = torch.rand(5, 1, dtype=torch.float64, generator=g)
    _pair(ct.BCEWithLogitsLoss(w, pos_weight=pw), nn.BCEWithLogitsLoss(w, pos_weight=pw), x, t)


def test_focal_modules_reduce_to_cross_entropy_at_gamma_zero():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 4, dtype=torch.float64, generator=g)
    y = torch.randint(0, 4, (5,), generator=g)
    _pair(ct.SoftmaxFocalLoss(gamma=0.0), nn.CrossEntropyLoss(), x, y)
    t = torch.rand(5, 4, dtype=torch.float64, generator=g)
    _pair(ct.SigmoidFocalLoss(alpha=None, gamma=0.0, reduction="mean"), nn.BCEWithLogitsLoss(), x, t)


def test_weights_are_buffers():
    w = torch.tensor([1.0, 2.0, 3.0])
    loss = ct.CrossEntropyLoss(w, z_loss=1e-4)
    assert "weight" in loss.state_dict() and loss.to(torch.float64).weight.dtype == torch.float64
    assert "z_loss=0.0001" in repr(loss)
    alpha = ct.SoftmaxFocalLoss(alpha=torch.tensor([0.2, 0.3, 0.5]))
    assert "alpha" in alpha.state_dict()


def test_linear_cross_entropy_loss_module_trains_a_head():
    g = torch.Generator().manual_seed(3)
    head = nn.Linear(8, 20).double()
    h = torch.randn(16, 8, dtype=torch.float64, generator=g)
    y = torch.randint(0, 20, (16,), generator=g)
    loss = ct.LinearCrossEntropyLoss(z_loss=1e-3, chunk_size=5)(h, head.weight, y, head.bias)
    loss.backward()
    ref = nn.Linear(8, 20).double()
    ref.load_state_dict(head.state_dict())
    z = ref(h)
    expected = nn.functional.cross_entropy(z, y) + 1e-3 * (torch.logsumexp(z, 1) ** 2).mean()
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(head.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(head.bias.grad, ref.bias.grad, rtol=1e-10, atol=1e-13)


def test_linear_cross_entropy_loss_module_head_options():
    g = torch.Generator().manual_seed(3)
    h, w = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    y, s = torch.tensor([0, 6, 2, -100, 3, 1]), torch.rand(6, generator=g, dtype=torch.float64)
    loss = ct.LinearCrossEntropyLoss(logit_scale=0.5)(h, w, y, sample_weight=s, normalizer=4.0)
    rows = torch.nn.functional.cross_entropy(0.5 * h @ w.T, y, reduction="none")
    torch.testing.assert_close(loss, (rows * s).sum() / 4.0)
