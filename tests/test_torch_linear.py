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


# ----------------------------------------------------------------------------- fused-head options
def _naive_head(h, w, y, b=None, *, reduction="mean", logit_scale=1.0, sample_weight=None, normalizer=None,
                label_smoothing=0.0):
    """The options written out in float64 torch: each row's F.cross_entropy of the scaled logits
    times its sample weight; "mean" over sum of sample weights of counted rows (or normalizer)."""
    logits = (h @ w.T + (0 if b is None else b)) * logit_scale
    rows = F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    s = torch.ones_like(rows) if sample_weight is None else sample_weight
    rows = rows * s
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    den = normalizer if normalizer is not None else (s * (y != -100)).sum()
    return rows.sum() / den


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [dict(logit_scale=0.3), dict(sample_weight=True), dict(normalizer=7.0),
                                  dict(logit_scale=2.5, sample_weight=True, normalizer=3.0,
                                       label_smoothing=0.1)], ids=str)
def test_head_options_match_the_naive_formula(path, reduction, opts):
    h, w, b, y = _problem(torch.float64)
    kw = dict(opts)
    if kw.pop("sample_weight", False):
        kw["sample_weight"] = torch.rand(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        kw["sample_weight"][0] = 0.0
    upstream = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def run(fn):
        leaves = [t.detach().clone().requires_grad_(True) for t in (h, w, b)]
        out = fn(*leaves)
        ((out * upstream).sum() if out.dim() else out).backward()
        return [out.detach()] + [t.grad for t in leaves]
    got = run(lambda a, c, d: ct.linear_cross_entropy(a, c, y, d, reduction=reduction, chunk_size=4, **kw))
    want = run(lambda a, c, d: _naive_head(a, c, y, d, reduction=reduction, **kw))
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda a, c, d: ct.linear_cross_entropy(a, c, y, d, reduction=reduction, chunk_size=5, **kw),
        tuple(t.detach().clone().requires_grad_(True) for t in (h, w, b)))


def test_with_stats_returns_lse_entropy_and_argmax_of_the_same_pass(path):
    h, w, b, y = _problem(torch.float64)
    loss, stats = ct.linear_cross_entropy_with_stats(h, w, y, b, chunk_size=3, softcap=4.0, logit_scale=1.5)
    logits = 4.0 * torch.tanh((h @ w.T + b) * 1.5 / 4.0)
    log_p = torch.log_softmax(logits, 1)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats.lse, torch.logsumexp(logits, 1).detach())
    torch.testing.assert_close(stats.entropy, -(log_p.exp() * log_p).sum(1).detach())
    assert torch.equal(stats.predicted, logits.argmax(1))
    assert not any(t.requires_grad for t in stats)
    loss.backward()  # the loss stays differentiable
    assert h.grad is not None


def test_chunk_size_must_be_a_positive_integer():
    h, w, b, y = _problem(torch.float32)
    for bad, kind in ((2.5, TypeError), (True, TypeError), (0, ValueError), (-3, ValueError)):
        with pytest.raises(kind, match="chunk_size"):
            ct.linear_cross_entropy(h, w, y, chunk_size=bad)


def test_head_options_are_validated():
    h, w, b, y = _problem(torch.float32)
    cases = [(dict(logit_scale=0.0), ValueError, "logit_scale"),
             (dict(logit_scale=float("nan")), ValueError, "logit_scale"),
             (dict(sample_weight=torch.ones(3)), ValueError, "sample_weight"),
             (dict(sample_weight=-torch.ones(y.shape)), ValueError, "sample_weight.* is negative"),
             (dict(normalizer=0), ValueError, "normalizer"),
             (dict(normalizer=torch.ones(2)), ValueError, "normalizer"),
             (dict(normalizer=torch.tensor(-1.0)), ValueError, "normalizer must be a positive")]
    for kw, kind, match in cases:
        with pytest.raises(kind, match=match):
            ct.linear_cross_entropy(h, w, y, **kw)


def test_bfloat16_weight_gradient_accumulates_in_float32():
    """Across 64 chunks, the bf16 head's weight gradient is nearer the float64 one than a
    naive chunked loop that accumulates in bfloat16 (what float32 accumulation buys)."""
    g = torch.Generator().manual_seed(11)
    n, d, v, chunk = 1024, 16, 32, 16
    h = torch.randn(n, d, generator=g).to(torch.bfloat16)
    w = (torch.randn(v, d, generator=g) * 0.5).to(torch.bfloat16).requires_grad_(True)
    y = torch.randint(0, v, (n,), generator=g)
    ct.linear_cross_entropy(h, w, y, reduction="sum", chunk_size=chunk).backward()
    w64 = w.detach().double().requires_grad_(True)
    F.cross_entropy(h.double() @ w64.T, y, reduction="sum").backward()
    naive = torch.zeros(v, d, dtype=torch.bfloat16)
    for s in range(0, n, chunk):
        hc = h[s:s + chunk].float()
        gz = torch.softmax(hc @ w.detach().float().T, 1) - F.one_hot(y[s:s + chunk], v).float()
        naive += (gz.T @ hc).to(torch.bfloat16)
    ours_err = (w.grad.double() - w64.grad).abs().max()
    naive_err = (naive.double() - w64.grad).abs().max()
    assert ours_err < naive_err / 2


# ----------------------------------------------------------------------------- bfloat16 on a GPU
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_low_precision_operands_stay_low_for_the_tensor_cores(emulated_low_precision_products, reduction):
    """On a GPU, bfloat16 hidden states and weight are multiplied in bfloat16 into float32
    results (``mm.dtype_out``), with the logit gradient rounded once to bfloat16 for the two
    backward products. Without a GPU, the products are emulated in float32 from the same
    bfloat16 operands (exact: a bfloat16 product fits float32) and the path is compared with
    autograd through the naive bfloat16 head (F.linear in float32 on the same operands, the
    logit gradient rounded to bfloat16 as autograd rounds the gradient of a bfloat16 linear)."""
    calls = emulated_low_precision_products
    g = torch.Generator().manual_seed(0)
    n, d, v = 37, 24, 300
    h = (torch.randn(n, d, generator=g)).bfloat16().requires_grad_(True)
    w = (torch.randn(v, d, generator=g) * 0.3).bfloat16().requires_grad_(True)
    b = torch.randn(v, generator=g).requires_grad_(True)
    y = torch.randint(0, v, (n,), generator=g)
    y[3] = -100
    up = torch.rand(n, generator=g) if reduction == "none" else torch.tensor(1.0)
    with _engine.force_torch_path():  # the chunk loop of a non-CPU device, on CPU tensors
        out = ct.linear_cross_entropy(h, w, y, b, reduction=reduction, chunk_size=8)
        (out * up).sum().backward()
    assert calls.count("mm") >= 2 * 5 and "addmm" in calls  # 5 chunks: logits and grad_h each

    def naive(round_logit_grad):
        hf, wf, bf = (t.detach().float().requires_grad_(True) for t in (h, w, b))
        logits = torch.nn.functional.linear(hf, wf, bf)
        if round_logit_grad:  # autograd's bfloat16 rounding of the logit gradient
            logits.register_hook(lambda grad: grad.bfloat16().float())
        want = torch.nn.functional.cross_entropy(logits, y, reduction=reduction)
        (want * up.bfloat16().float()).sum().backward()  # what reaches a bfloat16 output
        return want.detach(), hf.grad, wf.grad, bf.grad

    want, gh, gw, _ = naive(True)
    _, _, _, gb = naive(False)  # the bias gradient sums the float32 logit gradient
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, rtol=8e-3, atol=1e-6)  # rounded once
    assert h.grad.dtype == w.grad.dtype == torch.bfloat16 and b.grad.dtype == torch.float32
    # a logit gradient one float32 ulp apart may round to the next bfloat16: sums of such
    # terms agree to a few bfloat16 ulps of their largest entry
    for got, ref in ((h.grad, gh), (w.grad, gw)):
        torch.testing.assert_close(got.float(), ref.bfloat16().float(), rtol=1.6e-2,
                                   atol=8e-3 * float(ref.abs().max()))
    torch.testing.assert_close(b.grad, gb, rtol=1e-5, atol=1e-7)


def test_low_precision_products_accept_their_operands_on_the_meta_device():
    """The real GPU ops (``aten::mm.dtype_out``, ``aten::addmm.dtype_out``) take bfloat16 and
    float16 operands into float32 outputs, accumulators included: checked by their meta kernels."""
    from crossent.torch import linear

    for low in (torch.bfloat16, torch.float16):
        a = torch.empty(8, 16, dtype=low, device="meta")
        b = torch.empty(16, 32, dtype=low, device="meta")
        assert linear._mm_f32(a, b, torch.empty(8, 32, device="meta")).dtype == torch.float32
        acc = torch.zeros(16, 32, device="meta")
        assert linear._addmm_f32_(acc, a.t(), torch.empty(8, 32, dtype=low, device="meta")) is acc
