"""crossent.torch as first-class PyTorch operators (SPEC 5): torch.compile with no graph
break and eager-equal values and gradients, torch.export, torch.func.grad / vmap, meta
tensors, autocast, and second derivatives equal to PyTorch's own (gradgradcheck, and
Hessian-vector products against torch.nn.functional)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch._dynamo  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import crossent.torch as ct  # noqa: E402
from crossent import _backend  # noqa: E402
from crossent.torch import _engine  # noqa: E402


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _problems(dtype=torch.float32):
    """name -> (loss of the given leaves, the leaves): every crossent.torch loss."""
    g = _gen()
    x = torch.randn(6, 5, generator=g, dtype=dtype) * 2
    y = torch.tensor([0, 1, -100, 3, 4, 2])
    probs = torch.softmax(torch.randn(6, 5, generator=g, dtype=dtype), dim=1)
    xb = torch.randn(3, 4, generator=g, dtype=dtype) * 3
    tb = torch.rand(3, 4, generator=g, dtype=dtype)
    h = torch.randn(6, 4, generator=g, dtype=dtype)
    w = torch.randn(5, 4, generator=g, dtype=dtype)
    b = torch.randn(5, generator=g, dtype=dtype)
    cw = torch.rand(5, generator=g, dtype=dtype) + 0.5
    sw = torch.rand(6, generator=g, dtype=dtype)
    return {
        "cross_entropy_index": (lambda a: ct.cross_entropy(
            a, y, weight=cw, label_smoothing=0.1, z_loss=1e-3, softcap=5.0, logit_scale=0.7,
            sample_weight=sw), [x]),
        "cross_entropy_dense": (lambda a, t: ct.cross_entropy(a, t, label_smoothing=0.2), [x, probs]),
        "cross_entropy_none": (lambda a: ct.cross_entropy(a, y, reduction="none"), [x]),
        "bce_with_logits": (lambda a, t: ct.binary_cross_entropy_with_logits(
            a, t, pos_weight=torch.full((4,), 2.0, dtype=dtype)), [xb, tb]),
        "sigmoid_focal": (lambda a: ct.sigmoid_focal_loss(a, tb, reduction="mean"), [xb]),
        "softmax_focal": (lambda a: ct.softmax_focal_loss(a, y, alpha=cw, gamma=1.5), [x]),
        "linear": (lambda a, c, d: ct.linear_cross_entropy(a, c, y, d, chunk_size=4, z_loss=1e-3,
                                                           normalizer=4.0), [h, w, b]),
        "linear_none": (lambda a, c: ct.linear_cross_entropy(a, c, y, reduction="none", logit_scale=2.0),
                        [h, w]),
        "linear_with_stats": (lambda a, c: ct.linear_cross_entropy_with_stats(a, c, y)[0], [h, w]),
    }


def _value_and_grads(fn, leaves, upstream_seed=3):
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    out = fn(*leaves)
    upstream = torch.randn(out.shape, generator=_gen(upstream_seed), dtype=out.dtype)
    (out * upstream).sum().backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("name", list(_problems()))
def test_compile_fullgraph_has_no_graph_break_and_equals_eager(name):
    fn, leaves = _problems()[name]
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fn)(*[t.detach().clone().requires_grad_(True) for t in leaves])
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    value, grads = _value_and_grads(compiled, leaves)
    expected_value, expected_grads = _value_and_grads(fn, leaves)
    torch.testing.assert_close(value, expected_value)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.slow
def test_compile_with_inductor_equals_eager():
    fn, leaves = _problems()["linear"]
    torch._dynamo.reset()
    value, grads = _value_and_grads(torch.compile(fn, fullgraph=True), leaves)
    expected_value, expected_grads = _value_and_grads(fn, leaves)
    torch.testing.assert_close(value, expected_value)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


class _Head(torch.nn.Module):
    """A model whose loss uses crossent operators: a projection, its fused loss, a CE term."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 5)

    def forward(self, hidden, target):
        fused = ct.linear_cross_entropy(hidden, self.proj.weight, target, self.proj.bias)
        return fused + ct.cross_entropy(self.proj(hidden), target, label_smoothing=0.1)


def test_export_round_trip():
    torch.manual_seed(0)
    model = _Head()
    hidden, target = torch.randn(6, 4), torch.tensor([0, 1, -100, 3, 4, 2])
    program = torch.export.export(model, (hidden, target))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "crossent.linear_cross_entropy.default" in targets
    assert "crossent.cross_entropy_index.default" in targets
    torch.testing.assert_close(program.module()(hidden, target), model(hidden, target))
    other = torch.randn(6, 4)
    torch.testing.assert_close(program.module()(other, target), model(other, target))


@pytest.mark.parametrize("name", ["cross_entropy_index", "cross_entropy_dense", "bce_with_logits",
                                  "sigmoid_focal", "softmax_focal"])
def test_func_grad_equals_autograd(name):
    fn, leaves = _problems(torch.float64)[name]
    x, rest = leaves[0], leaves[1:]
    got = torch.func.grad(lambda a: fn(a, *rest).sum())(x)
    a = x.clone().requires_grad_(True)
    fn(a, *rest).sum().backward()
    torch.testing.assert_close(got, a.grad)


def test_vmap_over_rows_and_per_sample_gradients():
    g = _gen(1)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, -100, 1, 1, 3])
    per_row = torch.vmap(lambda a, t: ct.cross_entropy(a, t, label_smoothing=0.1))(x, y)
    torch.testing.assert_close(per_row, ct.cross_entropy(x, y, reduction="none", label_smoothing=0.1))
    grads = torch.vmap(torch.func.grad(lambda a, t: ct.cross_entropy(a, t, label_smoothing=0.1)))(x, y)
    a = x.clone().requires_grad_(True)
    ct.cross_entropy(a, y, reduction="sum", label_smoothing=0.1).backward()
    torch.testing.assert_close(grads, a.grad)
    # element-wise losses: per-sample gradients of sigmoid focal and BCE
    t = torch.rand(7, 3, generator=g, dtype=torch.float64)
    z = torch.randn(7, 3, generator=g, dtype=torch.float64)
    for loss in (lambda a, b: ct.sigmoid_focal_loss(a, b, reduction="sum"),
                 lambda a, b: ct.binary_cross_entropy_with_logits(a, b, reduction="sum")):
        per_sample = torch.vmap(torch.func.grad(loss))(z, t)
        a = z.clone().requires_grad_(True)
        loss(a, t).backward()
        torch.testing.assert_close(per_sample, a.grad)


def test_meta_tensors_give_output_shapes():
    m = dict(device="meta")
    x, y = torch.empty(4, 6, 3, **m), torch.empty(4, 3, dtype=torch.long, **m)
    assert ct.cross_entropy(x, y).shape == ()
    assert ct.cross_entropy(x, y, reduction="none").shape == (4, 3)
    assert ct.cross_entropy(x, torch.empty(4, 6, 3, **m), reduction="none").shape == (4, 3)
    assert ct.softmax_focal_loss(x, y, reduction="none").shape == (4, 3)
    assert ct.binary_cross_entropy_with_logits(x, torch.empty(4, 6, 3, **m), reduction="none").shape == (4, 6, 3)
    assert ct.sigmoid_focal_loss(x, torch.empty(4, 6, 3, **m)).shape == (4, 6, 3)
    h, w = torch.empty(2, 5, 8, **m, requires_grad=True), torch.empty(11, 8, **m, requires_grad=True)
    target = torch.empty(2, 5, dtype=torch.long, **m)
    assert ct.linear_cross_entropy(h, w, target, reduction="none").shape == (2, 5)
    loss, stats = ct.linear_cross_entropy_with_stats(h, w, target)
    assert loss.shape == () and loss.device.type == "meta"
    assert stats.lse.shape == stats.entropy.shape == stats.predicted.shape == (2, 5)
    assert stats.predicted.dtype == torch.int64


def test_autocast_bfloat16_head():
    g = _gen(2)
    layer = torch.nn.Linear(8, 6)
    hidden, target = torch.randn(5, 8, generator=g), torch.tensor([0, 5, 2, 3, -100])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(hidden)
        assert logits.dtype == torch.bfloat16
        loss = ct.cross_entropy(logits, target)
        expected = F.cross_entropy(logits.float(), target)
    assert loss.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float(), expected, rtol=1e-2, atol=1e-2)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# ----------------------------------------------------------------------------- second derivatives
_CE_OPTIONS = [
    dict(),
    dict(reduction="sum", label_smoothing=0.2),
    dict(reduction="none", z_loss=0.01, softcap=3.0),
    dict(weight=True, ignore_index=2, label_smoothing=0.1),
    dict(logit_scale=0.5, sample_weight=True, normalizer=3.0),
    dict(reduction="none", weight=True, sample_weight=True, z_loss=0.1),
]


def _ce_kwargs(opts, n=5, c=4):
    g = _gen(7)
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    if kw.pop("sample_weight", False):
        kw["sample_weight"] = torch.rand(n, generator=g, dtype=torch.float64)
    return kw


@pytest.mark.parametrize("opts", _CE_OPTIONS, ids=str)
def test_gradgradcheck_cross_entropy(opts):
    g = _gen(4)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 2, 1, 2])
    kw = _ce_kwargs(opts)
    assert torch.autograd.gradgradcheck(lambda a: ct.cross_entropy(a, y, **kw), (x,))
    if "normalizer" not in kw:
        probs = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1).requires_grad_(True)
        kw.pop("ignore_index", None)
        assert torch.autograd.gradgradcheck(lambda a, t: ct.cross_entropy(a, t, **kw), (x, probs))


def _hvp(loss_fn, x, v):
    """Hessian-vector product H v of a scalar loss at x, by double backward."""
    a = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(a), a, create_graph=True)
    return torch.autograd.grad((grad * v).sum(), a)[0]


@pytest.mark.parametrize("opts", [dict(), dict(reduction="sum", label_smoothing=0.3),
                                  dict(weight=True, ignore_index=1), dict(weight=True, label_smoothing=0.1)],
                         ids=str)
def test_second_derivative_of_cross_entropy_equals_torch(opts):
    g = _gen(5)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    v = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    kw = _ce_kwargs(opts, n=6)
    torch.testing.assert_close(_hvp(lambda a: ct.cross_entropy(a, y, **kw), x, v),
                               _hvp(lambda a: F.cross_entropy(a, y, **kw), x, v))
    # the gradient-penalty case of the issue: d/dx |grad|^2 with create_graph=True
    probs = torch.softmax(v, 1)
    torch.testing.assert_close(_hvp(lambda a: ct.cross_entropy(a, probs), x, v),
                               _hvp(lambda a: F.cross_entropy(a, probs), x, v))


@pytest.mark.parametrize("opts", [dict(), dict(reduction="sum", weight=True, pos_weight=True),
                                  dict(reduction="none", label_smoothing=0.2)], ids=str)
def test_gradgradcheck_binary_cross_entropy_with_logits(opts):
    g = _gen(6)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.rand(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    kw = dict(opts)
    if kw.pop("weight", False):
        kw["weight"] = torch.rand(3, 1, generator=g, dtype=torch.float64)
    if kw.pop("pos_weight", False):
        kw["pos_weight"] = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    assert torch.autograd.gradgradcheck(lambda a, b: ct.binary_cross_entropy_with_logits(a, b, **kw), (x, t))
    if "label_smoothing" not in kw:
        v = torch.randn(3, 4, generator=g, dtype=torch.float64)
        scalar = (lambda out: out.sum()) if kw.get("reduction") == "none" else (lambda out: out)
        torch.testing.assert_close(
            _hvp(lambda a: scalar(ct.binary_cross_entropy_with_logits(a, t.detach(), **kw)), x.detach(), v),
            _hvp(lambda a: scalar(F.binary_cross_entropy_with_logits(a, t.detach(), **kw)), x.detach(), v))


def _torchvision_sigmoid_focal(inputs, targets, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss (BSD-3, torchvision/ops/focal_loss.py), ported."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("alpha,gamma,reduction", [(0.25, 2.0, "none"), (-1, 1.5, "mean"), (0.6, 0.0, "sum")])
def test_second_derivative_of_sigmoid_focal_equals_torchvision(alpha, gamma, reduction):
    g = _gen(8)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(3, 5, generator=g, dtype=torch.float64) > 0.5).double()
    kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
    assert torch.autograd.gradgradcheck(lambda a: ct.sigmoid_focal_loss(a, t, **kw), (x,))
    v = torch.randn(3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_hvp(lambda a: ct.sigmoid_focal_loss(a, t, **kw).sum(), x.detach(), v),
                               _hvp(lambda a: _torchvision_sigmoid_focal(a, t, **kw).sum(), x.detach(), v))


@pytest.mark.parametrize("opts", [dict(), dict(gamma=0.0, reduction="sum"), dict(alpha=True, gamma=1.5),
                                  dict(alpha=0.3, ignore_index=1, reduction="none", gamma=3.0)], ids=str)
def test_second_derivative_of_softmax_focal(opts):
    g = _gen(9)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 3, 2, 1])
    kw = dict(opts)
    if kw.get("alpha") is True:
        kw["alpha"] = torch.rand(4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda a: ct.softmax_focal_loss(a, y, **kw), (x,))
    if kw.get("gamma") == 0.0:  # gamma = 0 is the cross-entropy: PyTorch's second derivative
        v = torch.randn(5, 4, generator=g, dtype=torch.float64)
        torch.testing.assert_close(_hvp(lambda a: ct.softmax_focal_loss(a, y, **kw), x.detach(), v),
                                   _hvp(lambda a: F.cross_entropy(a, y, reduction="sum"), x.detach(), v))


def test_first_derivative_keeps_the_fused_path():
    """Without create_graph the gradient is the fused one: no graph hangs off it."""
    x = torch.randn(4, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(ct.cross_entropy(x, torch.tensor([0, 1, 2, 0])), x)
    assert grad.grad_fn is None


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_linear_losses_refuse_create_graph(reduction):
    h = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(5, 3, requires_grad=True)
    loss = ct.linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 4]), reduction=reduction).sum()
    with pytest.raises(RuntimeError, match="no second derivative.*create_graph=True"):
        torch.autograd.grad(loss, h, create_graph=True)


# ----------------------------------------------------------------------------- 0-d inputs
@pytest.mark.parametrize("path", ["kernels", "reference", "torch"])
def test_zero_dimensional_binary_losses_with_gradients(path):
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(1.0, dtype=torch.float64)
    backend = _backend.use_backend("reference") if path == "reference" else _engine.force_torch_path(path == "torch")
    with backend:
        for ours, theirs in ((lambda a: ct.binary_cross_entropy_with_logits(a, t),
                              lambda a: F.binary_cross_entropy_with_logits(a, t)),
                             (lambda a: ct.sigmoid_focal_loss(a, t),
                              lambda a: _torchvision_sigmoid_focal(a, t, 0.25, 2.0, "none"))):
            a, b = x.clone().detach().requires_grad_(True), x.clone().detach().requires_grad_(True)
            value = ours(a)
            value.backward()
            theirs(b).backward()
            assert value.shape == ()
            torch.testing.assert_close(value, theirs(x.detach()))
            torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("loss", ["cross_entropy", "linear_cross_entropy"])
def test_backward_allocates_nothing_the_size_of_a_gradient(loss):
    """backward hands over the kept gradients: no zero-filled gradient of the kept-gradient
    outputs (autograd would materialise one per output), no copy."""
    from torch.profiler import ProfilerActivity, profile
    g = _gen(10)
    if loss == "cross_entropy":
        leaves = [torch.randn(256, 512, generator=g, requires_grad=True)]
        value = ct.cross_entropy(leaves[0], torch.randint(0, 512, (256,), generator=g))
    else:
        leaves = [torch.randn(256, 64, generator=g, requires_grad=True),
                  torch.randn(512, 64, generator=g, requires_grad=True)]
        value = ct.linear_cross_entropy(*leaves, torch.randint(0, 512, (256,), generator=g))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        value.backward()
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.key_averages())
    assert allocated < min(t.numel() for t in leaves) * 4 / 8, allocated
