"""crossent.torch.distill: kl_div, distillation_loss, linear_distillation_loss.

Oracles: ``torch.nn.functional.kl_div`` (every reduction, ``log_target``); TRL's
``generalized_jsd_loss`` formula ported below with its citation; a direct float64 torch formula
on materialised logits differentiated by autograd; ``torch.autograd.gradcheck``. Both CPU
kernel paths (compiled and NumPy reference) and the pure-torch path of other devices;
``torch.compile(fullgraph=True)``, ``torch.export`` and ``torch.func.grad``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from crossent.torch import (  # noqa: E402
    DistillationLoss,
    KLDivLoss,
    LinearDistillationLoss,
    distillation_loss,
    kl_div,
    linear_distillation_loss,
)
from crossent.torch import _engine  # noqa: E402

BETAS = [0.0, 0.1, 0.5, 0.9, 1.0]


@pytest.fixture(params=["compiled", "reference", "torch"])
def path(request):
    """CPU tensors through the compiled kernel, the NumPy reference, or the pure-torch path
    that other devices take."""
    import crossent._backend as _backend

    name = "reference" if request.param == "reference" else "compiled"
    if name == "compiled" and _backend._compiled is None:
        pytest.skip("compiled kernels unavailable")
    with _backend.use_backend(name), _engine.force_torch_path(request.param == "torch"):
        yield request.param


# ----------------------------------------------------------------------------- oracles
def trl_generalized_jsd_loss(student_logits, teacher_logits, labels=None, beta=0.5, temperature=1.0):
    """TRL's generalised JSD, ported from huggingface/trl ``trl/trainer/gkd_trainer.py``,
    ``GKDTrainer.generalized_jsd_loss`` (Apache-2.0; read at commit a9fa292c), "batchmean":
    log-softmax at T; beta = 0 -> kl_div(student, teacher) i.e. KL(teacher || student);
    beta = 1 -> KL(student || teacher); else the mixture log m = logsumexp(log q + log(1-beta),
    log p + log beta) and beta KL(teacher || m) + (1-beta) KL(student || m); rows with label
    -100 dropped; the sum divided by the number of unmasked tokens (all tokens without labels)."""
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        jsd = F.kl_div(log_q, log_p, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(log_p, log_q, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=log_q.dtype)
        log_m = torch.logsumexp(torch.stack([log_q + torch.log(1 - b), log_p + torch.log(b)]), dim=0)
        jsd = b * F.kl_div(log_m, log_p, reduction="none", log_target=True) + (1 - b) * F.kl_div(
            log_m, log_q, reduction="none", log_target=True)
    if labels is not None:
        mask = labels != -100
        return jsd[mask].sum() / mask.sum()
    return jsd.sum() / (jsd.size(0) * jsd.size(1))


def direct(student, teacher, target, beta, temperature, hard_weight, reduction, ignore_index=-100):
    """SPEC §5 on materialised float64 logits: h CE(x, y) + (1-h) JSD_beta, ignored rows
    counting for neither, "mean" over the counted rows."""
    def kl(log_a, log_b):  # sum_c a_c (log a_c - log b_c), a class with a_c = 0 costing nothing
        no_mass = log_a == -math.inf
        safe = torch.where(no_mass, 0.0, log_a)
        return torch.where(no_mass, 0.0, safe.exp() * (safe - log_b)).sum(-1)

    log_q = torch.log_softmax(student / temperature, -1)
    log_p = torch.log_softmax(teacher / temperature, -1)
    if beta == 0:
        d = kl(log_p, log_q)
    elif beta == 1:
        d = kl(log_q, log_p)
    else:
        log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
        d = beta * kl(log_p, log_m) + (1 - beta) * kl(log_q, log_m)
    if target is None:
        counted = torch.ones(student.shape[:-1], dtype=torch.bool)
        loss = d
    else:
        counted = target != ignore_index
        ce = -torch.log_softmax(student, -1).gather(-1, target.clamp_min(0).unsqueeze(-1))[..., 0]
        loss = (1 - hard_weight) * d + hard_weight * ce
    loss = torch.where(counted, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / counted.sum()


def make(n=6, v=11, dtype=torch.float64, seed=0, scale=2.0, shape=None):
    g = torch.Generator().manual_seed(seed)
    shape = shape or (n,)
    s = (torch.randn(*shape, v, generator=g, dtype=dtype) * scale).requires_grad_()
    t = torch.randn(*shape, v, generator=g, dtype=dtype) * scale
    y = torch.randint(0, v, shape, generator=g)
    y.view(-1)[::3] = -100
    return s, t, y


# ----------------------------------------------------------------------------- kl_div
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(reduction, log_target):
    g = torch.Generator().manual_seed(1)
    inp = torch.log_softmax(torch.randn(4, 5, 3, generator=g, dtype=torch.float64), 1).requires_grad_()
    p = torch.softmax(torch.randn(4, 5, 3, generator=g, dtype=torch.float64), 1)
    if not log_target:
        p[0, 0, 0] = 0.0  # 0 log 0 = 0
    target = (torch.log(p) if log_target else p).requires_grad_()
    ours = kl_div(inp, target, reduction=reduction, log_target=log_target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns that "mean" is not the KL divergence
        theirs = F.kl_div(inp, target, reduction=reduction, log_target=log_target)
    torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=1e-15)
    up = torch.rand_like(ours)
    ga = torch.autograd.grad(ours, (inp, target), up)
    gb = torch.autograd.grad(theirs, (inp, target), up)
    for a, b in zip(ga, gb):  # NaN alike: d/dp of p log p at p = 0
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15, equal_nan=True)
    positive = torch.where(p > 0, p, 0.1)
    positive = (torch.log(positive) if log_target else positive).requires_grad_()
    assert torch.autograd.gradcheck(lambda i, t: kl_div(i, t, reduction, log_target), (inp, positive),
                                    fast_mode=True)
    assert KLDivLoss(reduction, log_target)(inp, target).equal(ours)


def test_kl_div_log_target_minus_inf_is_no_mass():
    """A target log-probability of -inf contributes 0 with zero gradients (PyTorch: NaN)."""
    inp = torch.log(torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64)).requires_grad_()
    target = torch.log(torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)).requires_grad_()
    v = kl_div(inp, target, reduction="sum", log_target=True)
    assert v.item() == pytest.approx(0.5 * math.log(2.0), rel=1e-15)
    g_in, g_t = torch.autograd.grad(v, (inp, target))
    assert g_in[0, 2] == 0 and g_t[0, 2] == 0
    assert torch.isnan(F.kl_div(inp, target, reduction="sum", log_target=True))


def test_kl_div_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'batchmean'"):
        kl_div(x, x, reduction="avg")
    with pytest.raises(TypeError, match="log_target must be a bool"):
        kl_div(x, x, log_target=1)
    with pytest.raises(TypeError, match="target must be a floating-point tensor"):
        kl_div(x, torch.zeros(2, 3, dtype=torch.long))


# ----------------------------------------------------------------------------- distillation_loss
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_matches_trl_generalized_jsd(path, beta, temperature):
    s, t, y = make(shape=(2, 5), v=13, seed=int(beta * 10))
    ours = distillation_loss(s, t, y, beta=beta, temperature=temperature)
    torch.testing.assert_close(ours, trl_generalized_jsd_loss(s, t, y, beta, temperature),
                               rtol=1e-12, atol=1e-14)
    ours_all = distillation_loss(s, t, beta=beta, temperature=temperature)
    torch.testing.assert_close(ours_all, trl_generalized_jsd_loss(s, t, None, beta, temperature),
                               rtol=1e-12, atol=1e-14)
    g_ours = torch.autograd.grad(ours, s)[0]
    g_trl = torch.autograd.grad(trl_generalized_jsd_loss(s, t, y, beta, temperature), s)[0]
    torch.testing.assert_close(g_ours, g_trl, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("beta", "temperature", "hard_weight"),
                         [(0.0, 1.0, 0.0), (1.0, 0.7, 0.3), (0.5, 2.0, 0.5), (0.1, 1.0, 1.0), (0.9, 10.0, 0.2)])
def test_matches_direct_formula_and_gradcheck(path, reduction, beta, temperature, hard_weight):
    s, t, y = make(shape=(3, 4), v=9, seed=3)
    ours = distillation_loss(s, t, y, beta=beta, temperature=temperature, hard_weight=hard_weight,
                             reduction=reduction)
    ref = direct(s, t, y, beta, temperature, hard_weight, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    up = torch.rand_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, s, up)[0], torch.autograd.grad(ref, s, up)[0],
                               rtol=1e-10, atol=1e-13)
    assert torch.autograd.gradcheck(
        lambda s: distillation_loss(s, t, y, beta=beta, temperature=temperature,
                                    hard_weight=hard_weight, reduction=reduction), (s,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("beta", BETAS)
def test_large_close_logits_at_a_low_temperature(path, dtype, beta):
    """Logits near 1e4 at T = 0.1: x / T would round at the size of 1e5 (in float32 its ulp,
    0.008, is a tenth of the logits' spread), so every path subtracts the row's maximum before
    dividing. The oracle: the direct formula on the logits less 1e4, a subtraction exact in
    float64 for these values (Sterbenz), by which the softmax does not change."""
    g = torch.Generator().manual_seed(5)
    s = (1e4 + torch.randn(4, 7, generator=g, dtype=torch.float64) * 0.1).to(dtype).requires_grad_()
    t = (1e4 + torch.randn(4, 7, generator=g, dtype=torch.float64) * 0.1).to(dtype)
    ours = distillation_loss(s, t, beta=beta, temperature=0.1, reduction="sum")
    s64 = (s.detach().double() - 1e4).requires_grad_()
    ref = direct(s64, t.double() - 1e4, None, beta, 0.1, 0.0, "sum")
    rtol, atol = (1e-12, 1e-13) if dtype == torch.float64 else (2e-5, 2e-5)
    torch.testing.assert_close(ours.double(), ref, rtol=rtol, atol=atol)
    torch.testing.assert_close(torch.autograd.grad(ours, s)[0].double(),
                               torch.autograd.grad(ref, s64)[0], rtol=rtol, atol=atol)


def test_all_rows_ignored_give_zero(path):
    s, t, _ = make()
    y = torch.full((6,), -100)
    loss = distillation_loss(s, t, y, hard_weight=0.5)
    loss.backward()
    assert loss.item() == 0.0 and not s.grad.any()


def test_masked_classes_and_float16(path):
    s, t, y = make(v=6)
    with torch.no_grad():
        t[:, 2] = -math.inf  # masked for the teacher: finite for every beta but 1 (reverse KL)
    for beta in (0.0, 0.5):
        v = distillation_loss(s, t, y, beta=beta)
        assert torch.isfinite(v)
        torch.testing.assert_close(v, direct(s, t, y, beta, 1.0, 0.0, "mean"), rtol=1e-12, atol=1e-14)
    assert distillation_loss(s, t, beta=1.0).item() == math.inf
    h = s.detach().half().requires_grad_()
    out = distillation_loss(h, t.half(), y, hard_weight=0.5)
    out.backward()
    assert out.dtype == torch.float16 and h.grad.dtype == torch.float16
    torch.testing.assert_close(out.float(), direct(h.float(), t.half().float(), y, 0.5, 1.0, 0.5, "mean"),
                               rtol=2e-3, atol=1e-3)


def test_teacher_gets_no_gradient():
    s, t, y = make()
    t.requires_grad_()
    distillation_loss(s, t, y).backward()
    assert t.grad is None and s.grad is not None


def test_no_grad_evaluation_and_module():
    s, t, y = make()
    with torch.no_grad():
        v = distillation_loss(s, t, y, beta=0.1, hard_weight=0.2)
    assert v.grad_fn is None
    m = DistillationLoss(beta=0.1, hard_weight=0.2)
    assert m(s, t, y).item() == v.item()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"hard_weight": 0.5, "target": None}, ValueError, "hard_weight=0.5 mixes in the cross-entropy"),
    ({"beta": -0.1}, ValueError, "beta must be >= 0.0"),
    ({"temperature": 0}, ValueError, "temperature must be > 0"),
    ({"hard_weight": 2.0}, ValueError, "hard_weight must be <= 1.0"),
    ({"reduction": "batchmean"}, ValueError, "reduction must be one of"),
    ({"ignore_index": None}, TypeError, "ignore_index must be an integer"),
    ({"target": torch.zeros(6)}, TypeError, "target must hold integer class indices"),
    ({"target": torch.zeros(5, dtype=torch.long)}, ValueError, r"target must have shape \(6,\)"),
    ({"target": torch.tensor([0, 1, 2, 11, 0, 0])}, IndexError, r"target\[3\] = 11 is outside \[0, 11\)"),
])
def test_distillation_bad_input(kwargs, error, match):
    s, t, y = make()
    kwargs = {"target": y, **kwargs}
    target = kwargs.pop("target")
    with pytest.raises(error, match=match):
        distillation_loss(s, t, target, **kwargs)


def test_shape_mismatch():
    s, t, _ = make()
    with pytest.raises(ValueError, match=r"teacher_logits has shape \(6, 10\), but student_logits"):
        distillation_loss(s, t[:, :10])


# ----------------------------------------------------------------------------- linear form
def heads(n=7, ds=4, dt=6, v=10, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(n, ds, generator=g, dtype=dtype).requires_grad_()
    ws = torch.randn(v, ds, generator=g, dtype=dtype).requires_grad_()
    bs = torch.randn(v, generator=g, dtype=dtype).requires_grad_() if bias else None
    ht = torch.randn(n, dt, generator=g, dtype=dtype)
    wt = torch.randn(v, dt, generator=g, dtype=dtype)
    bt = torch.randn(v, generator=g, dtype=dtype) if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    y[1] = -100
    return hs, ws, bs, ht, wt, bt, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [1, 3, None])
@pytest.mark.parametrize(("beta", "temperature", "hard_weight"), [(0.5, 1.0, 0.0), (0.0, 2.0, 0.4), (1.0, 0.5, 0.7)])
def test_linear_equals_materialised(path, reduction, chunk_size, beta, temperature, hard_weight):
    hs, ws, bs, ht, wt, bt, y = heads()
    kw = dict(beta=beta, temperature=temperature, hard_weight=hard_weight, reduction=reduction)
    ours = linear_distillation_loss(hs, ws, ht, wt, y, student_bias=bs, teacher_bias=bt,
                                    chunk_size=chunk_size, **kw)
    ref = direct(hs @ ws.T + bs, ht @ wt.T + bt, y, beta, temperature, hard_weight, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    up = torch.rand_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (hs, ws, bs), up), torch.autograd.grad(ref, (hs, ws, bs), up)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_linear_vocabulary_over_several_column_blocks(path):
    # the CPU forms a chunk's logits in blocks of _Products.COLUMNS classes, here 2 and a ragged third
    from crossent.torch.linear import _Products
    v = 2 * _Products.COLUMNS + 77
    hs, ws, bs, ht, wt, bt, y = heads(n=9, v=v)
    ours = linear_distillation_loss(hs, ws, ht, wt, y, student_bias=bs, teacher_bias=bt, beta=0.3,
                                    hard_weight=0.2, chunk_size=4)
    ref = direct(hs @ ws.T + bs, ht @ wt.T + bt, y, 0.3, 1.0, 0.2, "mean")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    for a, b in zip(torch.autograd.grad(ours, (hs, ws, bs)), torch.autograd.grad(ref, (hs, ws, bs))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_gradcheck(path, reduction):
    hs, ws, bs, ht, wt, bt, y = heads(n=5, v=7)
    assert torch.autograd.gradcheck(
        lambda hs, ws, bs: linear_distillation_loss(hs, ws, ht, wt, y, student_bias=bs, teacher_bias=bt,
                                                    hard_weight=0.3, beta=0.2, reduction=reduction,
                                                    chunk_size=2),
        (hs, ws, bs), fast_mode=True)


def test_linear_batch_shape_dtype_teacher_and_module():
    hs, ws, _, ht, wt, _, y = heads(n=6, bias=False)
    h3, t3, y3 = hs.detach().reshape(2, 3, 4).requires_grad_(), ht.reshape(2, 3, 6), y.reshape(2, 3)
    per_row = linear_distillation_loss(h3, ws, t3, wt, y3, reduction="none")
    assert per_row.shape == (2, 3)
    torch.testing.assert_close(per_row.reshape(-1), linear_distillation_loss(hs, ws, ht, wt, y, reduction="none"))
    wt.requires_grad_()
    loss = linear_distillation_loss(hs.float(), ws.float(), ht.float(), wt.float(), y)
    loss.backward()
    assert loss.dtype == torch.float32 and wt.grad is None and ws.grad.dtype == torch.float64
    m = LinearDistillationLoss(beta=0.3, chunk_size=2)
    torch.testing.assert_close(m(hs, ws, ht, wt, y), linear_distillation_loss(hs, ws, ht, wt, y, beta=0.3))
    b16 = linear_distillation_loss(hs.detach().bfloat16(), ws.detach().bfloat16(), ht.bfloat16(), wt.detach().bfloat16(), y)
    assert b16.dtype == torch.bfloat16


def test_linear_bad_input():
    hs, ws, bs, ht, wt, bt, y = heads()
    with pytest.raises(ValueError, match="teacher_weight has 9 classes, student_weight 10"):
        linear_distillation_loss(hs, ws, ht, wt[:9], y)
    with pytest.raises(ValueError, match=r"student_hidden \(\.\.\., D\) and student_weight \(V, D\) must share D"):
        linear_distillation_loss(hs, ws[:, :3], ht, wt, y)
    with pytest.raises(ValueError, match=r"teacher_hidden has leading shape \(6,\)"):
        linear_distillation_loss(hs, ws, ht[:6], wt, y)
    with pytest.raises(ValueError, match=r"student_bias must have shape \(10,\)"):
        linear_distillation_loss(hs, ws, ht, wt, y, student_bias=bs[:4])
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        linear_distillation_loss(hs, ws, ht, wt, y, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size must be a positive integer or None, got 2.5"):
        linear_distillation_loss(hs, ws, ht, wt, y, chunk_size=2.5)


# ----------------------------------------------------------------------------- operators
def test_compile_fullgraph_equals_eager():
    s, t, y = make(dtype=torch.float32)
    hs, ws, bs, ht, wt, bt, yl = heads(dtype=torch.float32)

    def soft(s, t, y):
        return distillation_loss(s, t, y, beta=0.3, temperature=2.0, hard_weight=0.2)

    def linear(hs, ws, bs):
        return linear_distillation_loss(hs, ws, ht, wt, yl, student_bias=bs, teacher_bias=bt, chunk_size=3)

    for fn, args in ((soft, (s, t, y)), (linear, (hs, ws, bs))):
        compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")  # a graph break raises
        eager, comp = fn(*args), compiled(*args)
        torch.testing.assert_close(comp, eager)
        diff = [a for a in args if a.requires_grad]
        for a, b in zip(torch.autograd.grad(comp, diff), torch.autograd.grad(eager, diff)):
            torch.testing.assert_close(a, b)


def test_operators_registered_export_and_func_grad():
    assert hasattr(torch.ops.crossent, "distillation_loss")
    assert hasattr(torch.ops.crossent, "linear_distillation_loss")
    hs, ws, bs, ht, wt, bt, y = heads(dtype=torch.float32)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm_head = torch.nn.Linear(4, 10)

        def forward(self, hs, ht, wt, y):
            return linear_distillation_loss(hs, self.lm_head.weight, ht, wt, y, student_bias=self.lm_head.bias)

    model = Head()
    args = (hs.detach(), ht, wt, y)
    exported = torch.export.export(model, args)
    torch.testing.assert_close(exported.module()(*args), model(*args))
    s, t, yy = make()
    g = torch.func.grad(lambda s: distillation_loss(s, t, yy, beta=0.7))(s)
    torch.testing.assert_close(g, torch.autograd.grad(distillation_loss(s, t, yy, beta=0.7), s)[0])
    with torch.device("meta"):
        m = distillation_loss(torch.empty(3, 5), torch.empty(3, 5), reduction="none")
    assert m.shape == (3,) and m.device.type == "meta"


def test_example_distills_and_matches_the_naive_loss():
    """examples/distill_lm_head.py: the student's loss falls, and the fused loss equals the
    naive one on materialised logits."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    out = subprocess.run([sys.executable, str(examples / "distill_lm_head.py")], capture_output=True,
                         text=True, timeout=300, cwd=examples)
    assert out.returncode == 0, out.stderr
    losses = [float(v) for v in re.findall(r"step +\d+  loss (\d+\.\d+)", out.stdout)]
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.2
    fused, naive = map(float, re.search(r"fused (\S+)  naive (\S+)", out.stdout).groups())
    assert abs(fused - naive) <= 1e-5 * naive


# ----------------------------------------------------------------------------- second derivatives
def _direct_distillation(x, t, y, beta, temperature, hard_weight):
    """The loss written out in torch (TRL's generalised JSD, hard CE), "mean" over counted rows."""
    logq, logp = torch.log_softmax(x / temperature, -1), torch.log_softmax(t / temperature, -1)
    q, p = logq.exp(), logp.exp()
    if beta == 0.0:
        d = (p * (logp - logq)).sum(-1)
    elif beta == 1.0:
        d = (q * (logq - logp)).sum(-1)
    else:
        logm = torch.log(beta * p + (1 - beta) * q)
        d = beta * (p * (logp - logm)).sum(-1) + (1 - beta) * (q * (logq - logm)).sum(-1)
    counted = y != -100
    ce = torch.nn.functional.cross_entropy(x, y.clamp_min(0), reduction="none")
    rows = (1 - hard_weight) * d + hard_weight * ce
    return (rows * counted).sum() / counted.sum()


@pytest.mark.parametrize("beta,temperature,hard_weight", [(0.0, 1.0, 0.0), (0.5, 2.0, 0.3),
                                                          (1.0, 0.7, 0.0), (0.1, 1.0, 1.0)])
def test_distillation_loss_second_derivatives(beta, temperature, hard_weight):
    """Hessian-vector products (create_graph=True) against the direct formula, and
    gradgradcheck's finite differences."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 7, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, -100, 6, 2])
    v = torch.randn(5, 7, generator=g, dtype=torch.float64)

    def fn(a):
        return distillation_loss(a, t, y, beta=beta, temperature=temperature, hard_weight=hard_weight)

    got = torch.autograd.functional.hvp(fn, x, v)[1]
    want = torch.autograd.functional.hvp(
        lambda a: _direct_distillation(a, t, y, beta, temperature, hard_weight), x, v)[1]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_linear_distillation_loss_refuses_create_graph():
    hs = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    ws = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    loss = linear_distillation_loss(hs, ws, torch.randn(4, 2, dtype=torch.float64),
                                    torch.randn(6, 2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(loss, hs, create_graph=True)


def test_linear_low_precision_operands_stay_low_for_the_tensor_cores(emulated_low_precision_products):
    """On a GPU, bfloat16 student and teacher heads are multiplied in bfloat16 into float32
    logits (the fused linear CE's products), the student's logit gradient rounded once to
    bfloat16 for its backward products. Emulated here from the same bfloat16 operands in
    float32 (exact products) and compared with the distillation of the float32 logits."""
    calls = emulated_low_precision_products
    g = torch.Generator().manual_seed(3)
    n, d, v = 21, 16, 200
    hs = torch.randn(n, d, generator=g).bfloat16().requires_grad_(True)
    ws = (torch.randn(v, d, generator=g) * 0.4).bfloat16().requires_grad_(True)
    ht = torch.randn(n, d, generator=g).bfloat16()
    wt = (torch.randn(v, d, generator=g) * 0.4).bfloat16()
    with _engine.force_torch_path():
        out = linear_distillation_loss(hs, ws, ht, wt, beta=0.5, temperature=2.0, chunk_size=8)
        out.backward()
    assert calls.count("mm") == 3 * 3 and calls.count("addmm") == 3  # 3 chunks

    hf, wf = (t.detach().float().requires_grad_(True) for t in (hs, ws))
    student = hf @ wf.t()
    student.register_hook(lambda grad: grad.bfloat16().float())  # the one rounding of G
    want = distillation_loss(student, ht.float() @ wt.float().t(), beta=0.5, temperature=2.0)
    want.backward()
    assert out.dtype == hs.grad.dtype == ws.grad.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want.detach(), rtol=8e-3, atol=1e-6)
    for got, ref in ((hs.grad, hf.grad), (ws.grad, wf.grad)):
        torch.testing.assert_close(got.float(), ref.bfloat16().float(), rtol=1.6e-2,
                                   atol=8e-3 * float(ref.abs().max()))
