r"""Distillation losses for PyTorch: ``kl_div``, ``distillation_loss``, ``linear_distillation_loss``.

The divergences are those of :mod:`crossent.divergences` (SPEC §3.5): the teacher's
:math:`p = \operatorname{softmax}(y/T)`, the student's :math:`q = \operatorname{softmax}(x/T)`,
TRL's generalised Jensen-Shannon divergence with mixture weight :math:`\beta` (0: forward
:math:`\mathrm{KL}(p\|q)`, 1: reverse :math:`\mathrm{KL}(q\|p)`), no :math:`T^2` factor. A loss
mixes in the hard-label cross-entropy of the raw student logits:

.. math:: \ell_n = h\,\mathrm{CE}(x_n, y_n) + (1 - h)\,\mathrm{JSD}_\beta(p_n, q_n),

rows whose target is ``ignore_index`` counting for neither; "mean" divides by the counted rows.

The fused losses are PyTorch operators (``torch.library.custom_op``, namespace ``crossent``)
with fake-tensor kernels and registered autograd, so ``torch.compile(fullgraph=True)`` traces
them without a graph break. CPU tensors run the compiled kernel (:mod:`crossent._dispatch`,
``csrc/distill.cpp``); other devices run the same formulas in torch operations. The value and
the student's gradient come from one fused pass; ``backward`` scales the saved gradient (with
``reduction="none"`` the linear loss recomputes its chunks instead). The teacher is a
constant: no gradient flows to its logits, hidden states or head.

Vocabulary-parallel form: the row statistics compose across vocabulary shards (the maxima, the
sums of exponentials, then the divergence's sums), so
:func:`crossent.torch.vocab_parallel_distillation_loss` moves O(N) numbers per all-reduce, three
per chunk of rows where the cross-entropy needs two.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from .. import _checks, _dispatch
from ..divergences import _check_beta, _check_temperature
from . import _engine
from ._autograd import check_same_device, check_tensor, grad_scale, reduce
from .linear import _low_precision_on_gpu, _Products, check_chunk_size

__all__ = ["kl_div", "distillation_loss", "linear_distillation_loss"]

_KINDS = ("forward", "reverse", "jsd")


# ----------------------------------------------------------------------------- kl_div
def kl_div(input, target, reduction="mean", log_target=False):
    r"""Drop-in for :func:`torch.nn.functional.kl_div`: element-wise KL terms of log-probabilities.

    ``input`` holds the model's log-probabilities :math:`\log q`, ``target`` the probabilities
    :math:`p` (or :math:`\log p` with ``log_target=True``); element-wise

    .. math:: \ell = p(\log p - \log q) \quad(\texttt{xlogy}(p, p) - p\log q,\ 0\log 0 = 0),
              \qquad \ell = e^{\log p}(\log p - \log q) \text{ with log\_target}.

    Parameters
    ----------
    input : Tensor
        Log-probabilities, any shape.
    target : Tensor
        Probabilities (or log-probabilities with ``log_target``), ``input``'s shape.
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        "batchmean" is the sum over ``input.size(0)`` (the KL divergence per row); "mean"
        averages over elements, as PyTorch does (which is not the KL divergence: PyTorch warns
        about it; this function does not warn).
    log_target : bool, default False
        Whether ``target`` holds log-probabilities.

    Returns
    -------
    Tensor
        A scalar, or the element-wise terms for "none".

    Notes
    -----
    The same element-wise formula as PyTorch, built from ``torch`` operations, so values,
    gradients (for ``input`` and ``target``), second derivatives, ``torch.compile`` and
    ``torch.func`` all behave as PyTorch's — except that with ``log_target=True`` a target of
    ``-inf`` (a class with no mass) gives the term 0 and zero gradients, where PyTorch gives NaN
    (:math:`0 \cdot \infty`). For a divergence between two models' logits (softmax
    and temperature fused, masked classes handled) use :func:`distillation_loss`.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import kl_div
    >>> log_q = torch.log(torch.tensor([[0.5, 0.5]]))
    >>> p = torch.tensor([[0.75, 0.25]])
    >>> round(float(kl_div(log_q, p, reduction="batchmean")), 6)
    0.130812
    """
    check_tensor(input, "input")
    check_tensor(target, "target")
    if reduction not in ("mean", "batchmean", "sum", "none"):
        raise ValueError(f"reduction must be one of 'mean', 'batchmean', 'sum', 'none'; got {reduction!r}")
    if not isinstance(log_target, bool):
        raise TypeError(f"log_target must be a bool, got {log_target!r}")
    if log_target:  # a target log-probability of -inf is a class with no mass: its term is 0
        masked = target == -math.inf
        safe = torch.where(masked, 0.0, target)  # no 0 * inf in the discarded branch's gradient
        terms = torch.where(masked, 0.0, torch.exp(safe) * (safe - input))
    else:
        terms = torch.xlogy(target, target) - target * input  # 0 log 0 = 0
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "batchmean":
        return terms.sum() / input.size(0) if input.dim() > 0 else terms.sum()
    return terms.mean()


# ----------------------------------------------------------------------------- row formulas
def _kind(beta):
    return 0 if beta == 0.0 else 1 if beta == 1.0 else 2


def _local(t):
    """The all-reduce of a single process: the statistics are already whole."""
    return t


def _torch_rows(x, z, labels, counted, kind, beta, temperature, hard_weight, scale, need_grad,
                owned=None, all_max=_local, all_sum=_local):
    """The formulas of :func:`crossent._reference.softmax_divergence` (and of the hard
    cross-entropy) in torch operations, for tensors off the CPU, second derivatives and the
    vocabulary-parallel form: per-row float64 losses, ``scale`` times each row's gradient in the
    compute dtype (None unless ``need_grad``) and the rows' target-owner counts.

    With the classes split over a process group, ``x`` and ``z`` hold this rank's columns,
    ``labels`` are local (valid where ``owned``) and every row sum is completed by the hooks:

    1. ``all_max``: each side's row maximum, in the logits' units (NaN and +inf left out:
       counted below);
    2. ``all_sum``: s_s = sum e^((x - m_s)/T), s_t likewise, s_x = sum e^(x - m_s) (the hard
       term's raw log-sum-exp), the target's logit and owner count, the NaN/+inf entries, the
       live classes of each side, and the teacher's logit where x = m_s with its count (the
       centre r* of the reverse KL and the JSD, at the student's top class, as the kernels
       take it);
    3. ``all_sum``: the divergence's sums: forward, sum p (a - b); otherwise k = sum q (r - r*),
       and for the JSD sum p (a - log m).

    The maxima are constants of the formulas (shift invariance): they are taken detached.
    """
    if labels is None:
        labels = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        owned = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    elif owned is None:
        owned = counted
    y = labels
    cd = _engine.compute_dtype(x.dtype)
    f64 = torch.float64
    x, z = x.to(cd), z.to(cd)
    inf = math.inf
    masked_s, masked_t = x == -inf, z == -inf
    fin_s, fin_t = torch.isfinite(x), torch.isfinite(z)
    xd = x.detach()
    m = all_max(torch.stack([torch.where(fin_s, xd, -inf).amax(1), torch.where(fin_t, z, -inf).amax(1)],
                            1).to(f64))
    # each side shifted by its maximum before the division by T (x_c - m is exact near m)
    sh_s = torch.where(torch.isfinite(m[:, 0]), m[:, 0], 0.0).to(cd)[:, None]
    sh_t = torch.where(torch.isfinite(m[:, 1]), m[:, 1], 0.0).to(cd)[:, None]
    ds = torch.where(fin_s, (x - sh_s) / temperature, -inf)  # masked (and bad) entries: no mass
    dt = torch.where(fin_t, (z - sh_t) / temperature, -inf)
    dx = torch.where(fin_s, x - sh_s, -inf)
    star = fin_s & (x == sh_s)  # the student's top class (several where tied: their mean)
    x_y = torch.where(owned, x.gather(1, y[:, None])[:, 0], 0.0)
    stats = all_sum(torch.stack([
        ds.exp().to(f64).sum(1), dt.exp().to(f64).sum(1), dx.exp().to(f64).sum(1), x_y.to(f64),
        owned.to(f64), ((~(fin_s | masked_s)).sum(1) + (~(fin_t | masked_t)).sum(1)).to(f64),
        (~masked_s).sum(1).to(f64), (~masked_t).sum(1).to(f64),
        torch.where(star, z, 0.0).to(f64).sum(1), star.sum(1).to(f64)], 1))
    s_s, s_t, s_x, x_y, count, bad, live_s, live_t, z_star, n_star = stats.unbind(1)
    ls_s, ls_t = s_s.log().to(cd)[:, None], s_t.log().to(cd)[:, None]
    b, a = ds - ls_s, dt - ls_t  # log q, log p
    q, p = b.exp(), a.exp()
    if kind == 0:  # KL(p || q); d/dx = (q - p) / T
        terms = torch.where(masked_t, 0.0, torch.where(masked_s, inf, p * (a - b)))
        div = all_sum(terms.to(f64).sum(1)[:, None])[:, 0]
        g = (q - p) / temperature
    else:
        b_star = -ls_s  # at the student's top class (x - m_s)/T = 0
        a_star = ((z_star / n_star.clamp_min(1)).to(cd)[:, None] - sh_t) / temperature - ls_t
        if kind == 1:  # KL(q || p) = sum_c q_c r_c, r = b - a
            r, r_star = b - a, b_star - a_star
        else:  # JSD: r = b - log m, m = beta p + (1-beta) q
            log_m = torch.logaddexp(math.log(beta) + a, math.log1p(-beta) + b)
            r = b - log_m
            r_star = b_star - torch.logaddexp(math.log(beta) + a_star, math.log1p(-beta) + b_star)
        r_star = torch.where(torch.isfinite(r_star), r_star, 0.0)
        terms = torch.where(masked_s, 0.0, q * (r - r_star))
        parts = [terms]
        if kind == 1:
            parts = [torch.where(masked_t & ~masked_s, inf, terms)]
        else:
            parts.append(torch.where(masked_t, 0.0, p * (a - log_m)))
        sums = all_sum(torch.stack([t.to(f64).sum(1) for t in parts], 1))
        k = sums[:, 0]
        div = r_star[:, 0].to(f64) + k
        if kind == 2:
            div = beta * sums[:, 1] + (1.0 - beta) * div
        weight = 1.0 if kind == 1 else 1.0 - beta
        # d/dx_j = w q_j ((r_j - r*) - k) / T
        g = torch.where(masked_s, 0.0, weight * q * ((r - r_star) - k.to(cd)[:, None]) / temperature)
    loss = div
    if hard_weight > 0:  # + h CE: lse(x) - x_y, gradient softmax(x) - onehot(y) on the owner
        log_sx = s_x.log()
        ce = m[:, 0] + log_sx - x_y
        g_ce = torch.exp(dx - log_sx.to(cd)[:, None])
        g_ce = g_ce - torch.zeros_like(g_ce).scatter_(1, y[:, None], owned.to(cd)[:, None])
        loss = (0.0 if hard_weight == 1 else (1 - hard_weight) * loss) + hard_weight * ce
        g = (0.0 if hard_weight == 1 else (1 - hard_weight) * g) + hard_weight * g_ce
    ok = (bad == 0) & (live_s > 0) & (live_t > 0)
    loss = torch.where(counted, torch.where(ok, loss, math.nan), 0.0)
    if need_grad:
        g = torch.where(counted[:, None], torch.where(ok[:, None], g, math.nan), 0.0) * scale
    return loss, (g if need_grad else None), count


def _rows(x, z, labels, counted, kind, beta, temperature, hard_weight, scale, need_grad, out=None):
    """Per-row losses (float64) and ``scale`` times each row's gradient for ``(n, V)`` student
    logits ``x`` and teacher logits ``z``; on the CPU through the compiled kernel (the gradient
    written into ``out`` when given, which may be ``x`` itself)."""
    gpu = _engine._triton_for(x)
    if gpu is not None:  # CUDA tensors: the Triton kernel of the same formulas
        return gpu.softmax_divergence_rows(x, z, labels, counted, kind, beta, temperature,
                                           hard_weight, scale, need_grad, out=out)
    if not _engine.uses_kernels(x):
        return _torch_rows(x, z, labels, counted, kind, beta, temperature, hard_weight, scale,
                           need_grad)[:2]
    cd = _engine.compute_dtype(x.dtype)  # float16/bfloat16 are computed in float32
    xa, za = x.detach().to(cd).contiguous().numpy(), z.detach().to(cd).contiguous().numpy()
    where = counted.numpy()
    y = None if labels is None else labels.numpy()
    loss, g = _dispatch.softmax_divergence(xa, za, _KINDS[kind], beta, temperature, hard_weight,
                                           where, y, scale, need_grad,
                                           out=None if out is None else out.numpy())
    loss = torch.from_numpy(loss)
    if g is None:
        return loss, None
    return loss, (out if out is not None else torch.from_numpy(g))


def _labels_counted(target, n, num_classes, ignore_index, device):
    """Host-validated labels (ignored rows -> 0) and the counted-rows mask, as tensors."""
    if target is None:
        return None, torch.ones(n, dtype=torch.bool, device=device)
    y = _checks.check_labels(target.detach().cpu().numpy(), num_classes, ignore_index, "target")
    counted = y != ignore_index
    y = np.where(counted, y, 0)
    return torch.from_numpy(y).to(device), torch.from_numpy(counted).to(device)


# ----------------------------------------------------------------------------- distillation_loss
@torch.library.custom_op("crossent::distillation_loss", mutates_args=())
def _distillation_op(student: torch.Tensor, teacher: torch.Tensor, target: Optional[torch.Tensor],
                     beta: float, temperature: float, hard_weight: float, ignore_index: int,
                     reduction: str, need_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n, v = student.shape
    labels, counted = _labels_counted(target, n, v, ignore_index, student.device)
    denominator = float(counted.sum())
    scale = grad_scale(reduction, denominator)
    loss, g = _rows(student, teacher, labels, counted, _kind(beta), beta, temperature,
                    hard_weight, scale, need_grad)
    value = reduce(loss.to(student.device), reduction, denominator, student.dtype, (n,))
    grad = g.to(student.dtype) if need_grad else student.new_empty((0,))
    return value, grad


@_distillation_op.register_fake
def _(student, teacher, target, beta, temperature, hard_weight, ignore_index, reduction, need_grad):
    value = student.new_empty((student.shape[0],) if reduction == "none" else ())
    return value, student.new_empty(student.shape if need_grad else (0,))


def _distillation_setup(ctx, inputs, output):
    ctx.none = inputs[7] == "none"
    ctx.save_for_backward(output[1])


def _distillation_backward(ctx, grad_value, _grad_grad):
    (g,) = ctx.saved_tensors
    go = grad_value.unsqueeze(1) if ctx.none else grad_value
    return g * go.to(g.dtype), None, None, None, None, None, None, None, None


_distillation_op.register_autograd(_distillation_backward, setup_context=_distillation_setup)


class _Distillation(torch.autograd.Function):
    """The operator inside an autograd.Function with ``setup_context``: ``torch.func.grad``
    does not honour a custom op's registered autograd (pytorch #170834), this form it does;
    ``torch.compile`` traces both."""

    @staticmethod
    def forward(student, teacher, target, options, need_grad):
        return _distillation_op(student, teacher, target, *options, need_grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        student, teacher, target, options, _ = inputs
        ctx.none = options[4] == "none"
        ctx.options = options
        ctx.set_materialize_grads(False)  # no zero-filled gradient for the gradient output
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1], student, teacher, target)

    @staticmethod
    def backward(ctx, grad_value, _grad_grad):
        if grad_value is None:  # the value is not part of what is differentiated
            return None, None, None, None, None
        g, student, teacher, target = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True, or a torch.func transform
            return _differentiable_grad(student, teacher, target, ctx.options, grad_value), \
                None, None, None, None
        go = grad_value.unsqueeze(1) if ctx.none else grad_value
        return g * go.to(g.dtype), None, None, None, None


def _differentiable_grad(student, teacher, target, options, grad_value):
    """The gradient with respect to the student's logits as a differentiable function of them
    (second derivatives, Hessian-vector products): the value recomputed with the torch formulas
    of :func:`_torch_rows` and differentiated with ``create_graph=True``."""
    beta, temperature, hard_weight, ignore_index, reduction = options
    n = student.shape[0]
    if target is None:  # the labels were validated by the forward: torch operations suffice
        labels, counted = None, torch.ones(n, dtype=torch.bool, device=student.device)
    else:
        counted = target != ignore_index
        labels = torch.where(counted, target, 0)
    with torch.enable_grad():
        loss, _, _ = _torch_rows(student, teacher.detach(), labels, counted, _kind(beta), beta,
                              temperature, hard_weight, 1.0, False)
        value = reduce(loss, reduction, float(counted.sum()), student.dtype, (n,))
        (grad,) = torch.autograd.grad(value, student, grad_value, create_graph=True)
    return grad


def _check_options(beta, temperature, hard_weight, ignore_index, reduction, target):
    beta = _check_beta(beta)
    temperature = _check_temperature(temperature)
    hard_weight = _checks.check_scalar(hard_weight, "hard_weight", low=0.0, high=1.0)
    ignore_index = _checks.check_ignore_index(ignore_index)
    if ignore_index is None:
        raise TypeError("ignore_index must be an integer (rows whose target equals it count for nothing)")
    reduction = _checks.check_reduction(reduction)
    if target is None and hard_weight > 0:
        raise ValueError(f"hard_weight={hard_weight} mixes in the cross-entropy of the targets, "
                         "but target is None")
    return beta, temperature, hard_weight, ignore_index, reduction


def _check_logit_pair(student, teacher, student_name, teacher_name):
    """Two tensors of logits on one device, of one shape, with a non-empty vocabulary dim."""
    check_tensor(student, student_name)
    check_tensor(teacher, teacher_name)
    check_same_device(student, teacher, student_name, teacher_name)
    if student.dim() < 1 or student.shape[-1] == 0:
        raise ValueError(f"{student_name} must have a non-empty vocabulary dim, got shape "
                         f"{tuple(student.shape)}")
    if teacher.shape != student.shape:
        raise ValueError(f"{teacher_name} has shape {tuple(teacher.shape)}, but {student_name} has "
                         f"shape {tuple(student.shape)}; they must match")


def _check_target(target, batch_shape, device):
    if target is None:
        return None
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor or None, got {type(target).__name__}")
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(batch_shape):
        raise ValueError(f"target must have shape {tuple(batch_shape)} (the logits' shape without "
                         f"the vocabulary dim), got {tuple(target.shape)}")
    if target.device != device:
        raise ValueError(f"target is on {target.device}, but the student's logits are on {device}")
    return target.reshape(-1).to(torch.int64)


def distillation_loss(student_logits, teacher_logits, target=None, *, beta=0.5, temperature=1.0,
                      hard_weight=0.0, ignore_index=-100, reduction="mean"):
    r"""Knowledge-distillation loss between a student's and a teacher's logits.

    .. math:: \ell_n = h\,\mathrm{CE}(x_n, y_n) + (1-h)\,\mathrm{JSD}_\beta\big(
              \operatorname{softmax}(t_n/T),\ \operatorname{softmax}(x_n/T)\big)

    with :math:`\mathrm{JSD}_\beta` as TRL's ``generalized_jsd_loss`` defines it
    (:func:`crossent.softmax_js_divergence`: ``beta=0`` the forward KL(teacher‖student),
    ``beta=1`` the reverse KL), the temperature applied to both models' logits, and **no**
    :math:`T^2` factor (multiply by ``temperature**2`` for Hinton et al.'s scaling). The hard
    cross-entropy uses the raw student logits (no temperature).

    ============================  ===========================================  ==========================================
    crossent                      TRL ``generalized_jsd_loss``                 Liger ``LigerFusedLinearJSDLoss`` /
                                                                               ``LigerJSD``
    ============================  ===========================================  ==========================================
    ``student_logits``            ``student_logits``                           ``student_input @ student_weight.T``
    ``teacher_logits``            ``teacher_logits``                           ``teacher_input @ teacher_weight.T``
    ``beta``                      ``beta``                                     ``beta`` / ``jsd_beta``
    ``temperature``               ``temperature``                              ``temperature``
    ``target``, ``ignore_index``  ``labels`` (-100 masked)                     ``true_labels`` / ``shift_labels``,
                                                                               ``ignore_index``
    ``hard_weight=h``             (none: soft loss only)                       ``weight_hard_loss=h``,
                                                                               ``weight_soft_loss=1-h``
    ``reduction="mean"``          ``reduction="batchmean"``                    sum / non-ignored rows
    ============================  ===========================================  ==========================================

    Parameters
    ----------
    student_logits : Tensor
        ``(..., V)``: the vocabulary is the last dim (the layout of language-model logits).
    teacher_logits : Tensor
        The teacher's logits, ``student_logits``' shape; a constant (it gets no gradient).
    target : Tensor, optional
        Integer class indices ``(...)``. Rows whose target is ``ignore_index`` count for
        neither term. Needed when ``hard_weight > 0``.
    beta : float, default 0.5
        Teacher weight :math:`\beta \in [0, 1]` of the JSD mixture.
    temperature : float, default 1.0
        :math:`T > 0` for both distributions.
    hard_weight : float, default 0.0
        :math:`h \in [0, 1]`, the weight of the hard-label cross-entropy.
    ignore_index : int, default -100
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by the number of counted rows ("batchmean"; 0 when there are none).

    Returns
    -------
    Tensor
        A scalar of the student's dtype, or the per-row losses ``(...)`` for "none".

    Notes
    -----
    Masked classes (``-inf`` logits) follow :func:`crossent.softmax_js_divergence`. On the CPU
    the compiled kernel computes the value and the student's gradient in one fused pass.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import distillation_loss
    >>> student = torch.zeros(1, 2, requires_grad=True)     # q = (0.5, 0.5)
    >>> teacher = torch.tensor([[0.0, -float("inf")]])       # p = (1, 0)
    >>> loss = distillation_loss(student, teacher)          # JSD_0.5
    >>> round(loss.item(), 6)
    0.215762
    >>> loss.backward()
    >>> student.grad.shape
    torch.Size([1, 2])
    """
    _check_logit_pair(student_logits, teacher_logits, "student_logits", "teacher_logits")
    beta, temperature, hard_weight, ignore_index, reduction = _check_options(
        beta, temperature, hard_weight, ignore_index, reduction, target)
    batch_shape = student_logits.shape[:-1]
    y = _check_target(target, batch_shape, student_logits.device)
    v = student_logits.shape[-1]
    need_grad = torch.is_grad_enabled() and student_logits.requires_grad
    value, _ = _Distillation.apply(student_logits.reshape(-1, v), teacher_logits.detach().reshape(-1, v),
                                   y, (beta, temperature, hard_weight, ignore_index, reduction),
                                   need_grad)
    return value.reshape(batch_shape) if reduction == "none" else value


# ----------------------------------------------------------------------------- linear form
def _linear_run(hs, ws, bs, ht, wt, bt, labels, counted, beta, temperature, hard_weight, scale,
                chunk, need_h, need_w, need_b, row_scale=None):
    """One pass over the row chunks: per-row losses and the requested student gradients.

    Per chunk the student's and the teacher's logits are formed in two reusable
    ``(chunk, V)`` buffers by the fused linear cross-entropy's products
    (:class:`crossent.torch.linear._Products`: float16/bfloat16 operands kept for a GPU's
    tensor cores); the fused kernel overwrites the student's with the gradient
    of the loss with respect to those logits, G, consumed at once: ``grad_h[c] = G W_s``,
    ``grad_W_s += G^T h_c``, ``grad_b_s += sum_n G_n``. ``row_scale`` multiplies each row's G.
    """
    cd = _engine.compute_dtype(hs.dtype)
    low = _low_precision_on_gpu(hs, ws) and _low_precision_on_gpu(ht, wt)
    od_s, od_t = (hs.dtype, ht.dtype) if low else (cd, cd)  # the products' operand dtypes
    hs, ws = hs.detach().to(od_s).contiguous(), ws.detach().to(od_s).contiguous()
    ht, wt = ht.detach().to(od_t).contiguous(), wt.detach().to(od_t).contiguous()
    bs = None if bs is None else bs.detach().to(cd).contiguous()
    bt = None if bt is None else bt.detach().to(cd).contiguous()
    n, vocab = hs.shape[0], ws.shape[0]
    need_any = need_h or need_w or need_b
    rows = max(1, min(chunk, n))
    loss = torch.empty(n, dtype=torch.float64, device=hs.device)
    grad_h = torch.empty(hs.shape, dtype=cd, device=hs.device) if need_h else None
    grad_w = torch.zeros(ws.shape, dtype=cd, device=hs.device) if need_w else None
    grad_b = torch.zeros(vocab, dtype=cd, device=hs.device) if need_b else None
    s_buf = torch.empty((rows, vocab), dtype=cd, device=hs.device)
    t_buf = torch.empty((rows, vocab), dtype=cd, device=hs.device)
    # the two buffers' chunks are short: logits in column blocks (see _Products)
    student = _Products(hs, ws, bs, rows, cd, backward=need_any, layout="columns")
    teacher = _Products(ht, wt, bt, rows, cd, backward=False, layout="columns")
    kind = _kind(beta)
    for start in range(0, n, rows):
        sl = slice(start, min(start + rows, n))
        s, t = s_buf[: sl.stop - sl.start], t_buf[: sl.stop - sl.start]
        student.logits(hs[sl], s)
        teacher.logits(ht[sl], t)
        rows_loss, g = _rows(s, t, None if labels is None else labels[sl], counted[sl], kind, beta,
                             temperature, hard_weight, scale, need_any, out=s)
        loss[sl] = rows_loss.to(loss.device)
        if not need_any:
            continue
        if row_scale is not None:
            g.mul_(row_scale[sl].to(g.dtype).unsqueeze(1))
        student.backward(g, hs[sl], None if grad_h is None else grad_h[sl], grad_w, grad_b)
    return loss, grad_h, grad_w, grad_b


@torch.library.custom_op("crossent::linear_distillation_loss", mutates_args=())
def _linear_op(student_hidden: torch.Tensor, student_weight: torch.Tensor,
               student_bias: Optional[torch.Tensor], teacher_hidden: torch.Tensor,
               teacher_weight: torch.Tensor, teacher_bias: Optional[torch.Tensor],
               target: Optional[torch.Tensor], row_scale: Optional[torch.Tensor], beta: float,
               temperature: float, hard_weight: float, ignore_index: int, reduction: str,
               chunk: int, need_h: bool, need_w: bool, need_b: bool
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = student_hidden.shape[0]
    labels, counted = _labels_counted(target, n, student_weight.shape[0], ignore_index,
                                      student_hidden.device)
    denominator = float(counted.sum())
    scale = grad_scale(reduction, denominator)  # row_scale, if any, multiplies each row's on top
    if reduction == "none" and row_scale is None:  # backward forms the gradients, row-scaled
        need_h = need_w = need_b = False
    loss, gh, gw, gb = _linear_run(student_hidden, student_weight, student_bias, teacher_hidden,
                                   teacher_weight, teacher_bias, labels, counted, beta,
                                   temperature, hard_weight, scale, chunk, need_h, need_w, need_b,
                                   row_scale)
    value = reduce(loss, reduction, denominator, student_hidden.dtype, (n,))
    def out(g, like):  # outputs may not alias one another: a fresh empty for each missing one
        return student_hidden.new_empty((0,)) if g is None else g.to(like.dtype)
    return value, out(gh, student_hidden), out(gw, student_weight), out(gb, student_bias)


@_linear_op.register_fake
def _(student_hidden, student_weight, student_bias, teacher_hidden, teacher_weight, teacher_bias,
      target, row_scale, beta, temperature, hard_weight, ignore_index, reduction, chunk, need_h,
      need_w, need_b):
    n = student_hidden.shape[0]
    value = student_hidden.new_empty((n,) if reduction == "none" else ())
    if reduction == "none" and row_scale is None:
        need_h = need_w = need_b = False
    gh = student_hidden.new_empty(student_hidden.shape if need_h else (0,))
    gw = student_weight.new_empty(student_weight.shape if need_w else (0,))
    gb = (student_bias.new_empty(student_bias.shape) if need_b else student_hidden.new_empty((0,)))
    return value, gh, gw, gb


def _linear_setup(ctx, inputs, output):
    (hs, ws, bs, ht, wt, bt, target, _row_scale, beta, temperature, hard_weight, ignore_index,
     reduction, chunk, need_h, need_w, need_b) = inputs
    ctx.none = reduction == "none"
    ctx.options = (beta, temperature, hard_weight, ignore_index, reduction, chunk)
    ctx.needs = (need_h, need_w, need_b)
    ctx.n = hs.shape[0]
    ctx.grads = None
    ctx.saved_inputs = ctx.none or not torch.compiler.is_compiling()
    if ctx.saved_inputs:
        # eager: the gradients are handed to the first backward as they are (autograd then
        # stores them without a copy); a retained graph's next backward, and reduction="none",
        # run the chunks again with the upstream gradient as row weights
        ctx.save_for_backward(hs, ws, bs, ht, wt, bt, target)
        if not ctx.none:
            ctx.grads = output[1:]
    else:
        ctx.save_for_backward(*output[1:])


def _linear_backward(ctx, grad_value, *_unused):
    need_h, need_w, need_b = ctx.needs
    if ctx.grads is not None:
        gh, gw, gb = ctx.grads
        ctx.grads = None
        if grad_value.dim() > 0 or bool(grad_value != 1):  # not the usual loss.backward()
            gh, gw, gb = (g * grad_value.to(g.dtype) for g in (gh, gw, gb))
    elif ctx.saved_inputs:
        hs, ws, bs, ht, wt, bt, target = ctx.saved_tensors
        row_scale = grad_value.reshape(-1) if ctx.none else grad_value.expand(ctx.n)
        _, gh, gw, gb = _linear_op(hs, ws, bs, ht, wt, bt, target, row_scale, *ctx.options,
                                   need_h, need_w, need_b)
    else:
        gh, gw, gb = (g * grad_value.to(g.dtype) for g in ctx.saved_tensors)
    return (gh if need_h else None, gw if need_w else None, gb if need_b else None,
            None, None, None, None, None, None, None, None, None, None, None, None, None, None)


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup)


class _LinearDistillation(torch.autograd.Function):
    """The linear operator inside an autograd.Function with ``setup_context`` (for
    ``torch.func``; see :class:`_Distillation`)."""

    @staticmethod
    def forward(*inputs):
        return _linear_op(*inputs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the gradient outputs
        ctx.mark_non_differentiable(*output[1:])
        _linear_setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad_value, *_unused):
        if grad_value is None:  # the value is not part of what is differentiated
            return (None,) * 17
        if torch.is_grad_enabled():
            raise RuntimeError(
                "linear_distillation_loss has no second derivative: backward was called with "
                "create_graph=True (or under a torch.func transform), and the fused head's "
                "gradient is not itself differentiable. Use distillation_loss on the logits for "
                "higher-order gradients")
        return _linear_backward(ctx, grad_value)


def _default_chunk(n, vocab, itemsize):
    """Rows per chunk of :func:`linear_distillation_loss` for ``n`` rows of ``vocab`` classes:
    N/20 (its two buffers together 1/10 of one N x V array, plus BLAS scratch), or as many as
    fill 2 MiB per buffer if that is more, at most ``n``."""
    return max(1, min(n, max(math.ceil(n / 20), (2 << 20) // (vocab * itemsize))))


def _check_head(hidden, weight, bias, who):
    check_tensor(hidden, f"{who}_hidden")
    check_tensor(weight, f"{who}_weight")
    check_same_device(hidden, weight, f"{who}_hidden", f"{who}_weight")
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"{who}_hidden (..., D) and {who}_weight (V, D) must share D; got "
                         f"{who}_hidden of shape {tuple(hidden.shape)} and {who}_weight of shape "
                         f"{tuple(weight.shape)}")
    if weight.shape[0] == 0:
        raise ValueError(f"{who}_weight has no rows: the vocabulary is empty")
    if bias is not None:
        check_tensor(bias, f"{who}_bias")
        check_same_device(hidden, bias, f"{who}_hidden", f"{who}_bias")
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"{who}_bias must have shape ({weight.shape[0]},) (one entry per row "
                             f"of {who}_weight), got {tuple(bias.shape)}")


def linear_distillation_loss(student_hidden, student_weight, teacher_hidden, teacher_weight,
                             target=None, *, student_bias=None, teacher_bias=None, beta=0.5,
                             temperature=1.0, hard_weight=0.0, ignore_index=-100,
                             reduction="mean", chunk_size=None):
    r""":func:`distillation_loss` of two linear heads' logits, without either N x V logits.

    Equals ``distillation_loss(student_hidden @ student_weight.T + student_bias,
    teacher_hidden @ teacher_weight.T + teacher_bias, target, ...)`` in value and in the
    gradients for ``student_hidden``, ``student_weight`` and ``student_bias``, but only one
    ``(chunk_size, V)`` block of each model's logits exists at a time; the student's block is
    overwritten in place by its own gradient :math:`G_c` and consumed at once:

    .. math:: \nabla_{H}[c] = G_c W_s,\quad \nabla_{W_s} \mathrel{+}= G_c^\top H_c,\quad
              \nabla_{b_s} \mathrel{+}= \textstyle\sum_n G_{c,n}

    (four matrix products per chunk with the teacher's). The teacher is a constant: its
    tensors get no gradient.

    Parameters
    ----------
    student_hidden : Tensor
        ``(..., D_s)``.
    student_weight : Tensor
        The student's head ``(V, D_s)`` (an ``nn.Linear(D_s, V).weight``).
    teacher_hidden : Tensor
        ``(..., D_t)``, the same leading shape.
    teacher_weight : Tensor
        The teacher's head ``(V, D_t)``: the same vocabulary.
    target : Tensor, optional
        Integer class indices of the leading shape; ``ignore_index`` rows count for nothing.
    student_bias, teacher_bias : Tensor, optional
        ``(V,)``.
    beta, temperature, hard_weight, ignore_index, reduction
        As in :func:`distillation_loss` (the table there maps them to TRL's and Liger's).
    chunk_size : int, optional
        Rows per chunk. Default: N/20 rows (the two buffers together are 1/10 of one N x V
        logits array), or as many as fill 2 MiB per buffer if that is more.

    Returns
    -------
    Tensor
        A scalar of ``student_hidden``'s dtype, or the per-row losses for "none".

    Notes
    -----
    With "mean" or "sum" every gradient is computed in the forward pass and held until
    ``backward``; with "none" the forward keeps nothing and ``backward`` recomputes the chunks.
    float16/bfloat16 are computed in float32; gradients come back in each input's dtype.
    ``create_graph=True`` (second derivatives) is not supported.

    References
    ----------
    P.-L. Hsu et al., "Liger Kernel", 2024 (``LigerFusedLinearJSD``); R. Agarwal et al.,
    "On-Policy Distillation of Language Models", ICLR 2024.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import distillation_loss, linear_distillation_loss
    >>> g = torch.Generator().manual_seed(0)
    >>> hs = torch.randn(6, 4, generator=g, requires_grad=True)
    >>> ws = torch.randn(10, 4, generator=g, requires_grad=True)
    >>> ht, wt = torch.randn(6, 8, generator=g), torch.randn(10, 8, generator=g)
    >>> y = torch.tensor([1, 2, -100, 4, 5, 9])
    >>> loss = linear_distillation_loss(hs, ws, ht, wt, y, hard_weight=0.5, chunk_size=4)
    >>> naive = distillation_loss(hs @ ws.T, ht @ wt.T, y, hard_weight=0.5)
    >>> bool(torch.allclose(loss, naive))
    True
    """
    _check_head(student_hidden, student_weight, student_bias, "student")
    _check_head(teacher_hidden, teacher_weight, teacher_bias, "teacher")
    check_same_device(student_hidden, teacher_hidden, "student_hidden", "teacher_hidden")
    if tuple(teacher_hidden.shape[:-1]) != tuple(student_hidden.shape[:-1]):
        raise ValueError(f"teacher_hidden has leading shape {tuple(teacher_hidden.shape[:-1])}, "
                         f"student_hidden {tuple(student_hidden.shape[:-1])}; they must match")
    if teacher_weight.shape[0] != student_weight.shape[0]:
        raise ValueError(f"teacher_weight has {teacher_weight.shape[0]} classes, student_weight "
                         f"{student_weight.shape[0]}; the vocabularies must match")
    beta, temperature, hard_weight, ignore_index, reduction = _check_options(
        beta, temperature, hard_weight, ignore_index, reduction, target)
    batch_shape = student_hidden.shape[:-1]
    y = _check_target(target, batch_shape, student_hidden.device)
    hs = student_hidden.reshape(-1, student_hidden.shape[-1])
    ht = teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1])
    n, vocab = hs.shape[0], student_weight.shape[0]
    chunk = check_chunk_size(chunk_size)
    if chunk is None:
        itemsize = torch.empty((), dtype=_engine.compute_dtype(hs.dtype)).element_size()
        chunk = _default_chunk(n, vocab, itemsize)
    grad_on = torch.is_grad_enabled()
    need_h = grad_on and student_hidden.requires_grad
    need_w = grad_on and student_weight.requires_grad
    need_b = grad_on and student_bias is not None and student_bias.requires_grad
    value = _LinearDistillation.apply(
        hs, student_weight, student_bias, ht, teacher_weight.detach(),
        None if teacher_bias is None else teacher_bias.detach(), y, None, beta, temperature,
        hard_weight, ignore_index, reduction, chunk, need_h, need_w, need_b)[0]
    return value.reshape(batch_shape) if reduction == "none" else value
