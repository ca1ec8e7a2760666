"""The losses as plain differentiable torch expressions: the route of second derivatives.

The fused operators return a gradient that is a number, not a graph. When a backward pass
must itself be differentiable (``create_graph=True``: gradient penalties, Hessian-vector
products; ``torch.func.grad``), :func:`crossent.torch._autograd.fused_function` differentiates
these formulas instead. Each takes the arguments of its operator (without the needs flags)
and returns the reduced loss; they follow :mod:`crossent._reference` term by term.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__: list[str] = []  # private module


def _reduce(loss, reduction, denominator):
    """"none" keeps ``loss``; "sum" sums it; "mean" divides the sum by ``denominator`` (0 over nothing)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _class_rows(x):
    """(N, C) rows of an input with classes on dim 1 (dim 0 when 1-D)."""
    class_dim = 0 if x.dim() == 1 else 1
    return x.movedim(class_dim, -1).reshape(-1, x.shape[class_dim])


def _head_logits(x, logit_scale, softcap):
    """z = s tanh(x l / s) (l = logit_scale), -inf (a masked class) staying -inf."""
    z = x * logit_scale if logit_scale != 1.0 else x
    if softcap is not None:
        z = torch.where(z == -math.inf, z, softcap * torch.tanh(z / softcap))
    return z


def _masked_log_softmax(z):
    """(log p with masked classes at 0, unmasked mask, C' = unmasked count, lse)."""
    unmasked = (z != -math.inf).detach()
    lse = torch.logsumexp(z, dim=1)
    logp = torch.where(unmasked, z - lse.unsqueeze(1), torch.zeros((), dtype=z.dtype))
    return logp, unmasked, unmasked.sum(dim=1).clamp_min(1).to(z.dtype), lse


def cross_entropy_index(x, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                        softcap, logit_scale, sample_weight, normalizer):
    """l = (1-eps) w_y (-log p_y) + (eps/C') sum_c w_c (-log p_c) + z_loss w_y lse^2, times the
    sample weight; "mean" divides by sum_n s_n w_{y_n} over counted rows (or the normalizer)."""
    z = _class_rows(_head_logits(x.double(), logit_scale, softcap))
    y = target.reshape(-1)
    counted = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
    y0 = torch.where(counted, y, 0)
    logp, _, c_eff, lse = _masked_log_softmax(z)
    w = torch.ones(z.shape[1], dtype=z.dtype) if weight is None else weight.to(z.dtype)
    w_y = torch.where(counted, w[y0], 0.0)
    eps = label_smoothing
    loss = (1 - eps) * w_y * -logp.gather(1, y0.unsqueeze(1))[:, 0]
    if eps > 0:
        loss = loss + torch.where(counted, (eps / c_eff) * -(w * logp).sum(dim=1), 0.0)
    if z_loss > 0:
        loss = loss + z_loss * w_y * lse**2
    den_rows = w_y
    if sample_weight is not None:
        s = sample_weight.reshape(-1).double()
        loss, den_rows = loss * s, w_y * s
    den = normalizer.double() if normalizer is not None else den_rows.sum()
    shape = target.shape
    return _reduce(loss.reshape(shape), reduction, den).to(x.dtype)


def cross_entropy_dense(x, target, weight, reduction, label_smoothing, z_loss, softcap, logit_scale,
                        sample_weight, normalizer):
    """l = -sum_c w_c t~_c log p_c + z_loss lse^2, t~ = (1-eps) t + eps/C' on unmasked classes."""
    z = _class_rows(_head_logits(x.double(), logit_scale, softcap))
    t = _class_rows(target.double())
    logp, unmasked, c_eff, lse = _masked_log_softmax(z)
    eps = label_smoothing
    t_s = (1 - eps) * t + torch.where(unmasked, eps / c_eff.unsqueeze(1), 0.0)
    w = 1.0 if weight is None else weight.double()
    loss = -(w * t_s * logp).sum(dim=1)
    if z_loss > 0:
        loss = loss + z_loss * lse**2
    den = torch.tensor(float(loss.shape[0]), dtype=torch.float64)
    if sample_weight is not None:
        s = sample_weight.reshape(-1).double()
        loss, den = loss * s, s.sum()
    if normalizer is not None:
        den = normalizer.double()
    class_dim = 0 if x.dim() == 1 else 1
    shape = x.shape[:class_dim] + x.shape[class_dim + 1:]
    return _reduce(loss.reshape(shape), reduction, den).to(x.dtype)


def softmax_focal(x, target, alpha, gamma, ignore_index, reduction):
    """l = -alpha_y (1 - p_y)^gamma log p_y over counted rows; "mean" over their number."""
    z = _class_rows(x.double())
    y = target.reshape(-1)
    counted = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
    y0 = torch.where(counted, y, 0)
    lp = torch.log_softmax(z, dim=1).gather(1, y0.unsqueeze(1))[:, 0]
    a_y = 1.0 if alpha is None else alpha.double()[y0]
    loss = torch.where(counted, -a_y * torch.pow(-torch.expm1(lp), gamma) * lp, 0.0)
    return _reduce(loss.reshape(target.shape), reduction, counted.sum().double()).to(x.dtype)


def binary_cross_entropy_with_logits(x, target, weight, pos_weight, reduction, label_smoothing):
    """l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)], t' = t (1-eps) + eps/2."""
    xd, t = x.double(), target.double() * (1 - label_smoothing) + label_smoothing / 2
    pw = 1.0 if pos_weight is None else pos_weight.double()
    w = 1.0 if weight is None else weight.double()
    loss = -w * (pw * t * F.logsigmoid(xd) + (1 - t) * F.logsigmoid(-xd))
    return _reduce(loss, reduction, torch.tensor(float(x.numel()), dtype=torch.float64)).to(x.dtype)


def sigmoid_focal(x, target, alpha, gamma, reduction):
    """l = alpha_t (1 - p_t)^gamma BCE(x, t), 1 - p_t = t sigma(-x) + (1-t) sigma(x)."""
    xd, t = x.double(), target.double()
    ce = -(t * F.logsigmoid(xd) + (1 - t) * F.logsigmoid(-xd))
    u = t * torch.sigmoid(-xd) + (1 - t) * torch.sigmoid(xd)
    loss = torch.pow(u, gamma) * ce
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction, torch.tensor(float(x.numel()), dtype=torch.float64)).to(x.dtype)
