"""The pure-PyTorch path: the formulas of :mod:`crossent._reference` in torch operations.

Tensors on devices other than the CPU take this path (CPU tensors run the compiled kernels
through :mod:`crossent._dispatch`); so does the vocabulary-parallel loss, whose statistics are
summed across ranks. On CUDA tensors (when triton imports) each function hands its rows to its
Triton namesake in :mod:`crossent.torch._triton`, which computes the same formulas in one
kernel per row; the formulas here remain their readable statement. Each function reads its
options from its loss family's object of :mod:`crossent._options` (weights as float64 tensors
on the input's device) and returns per-row (per-element) losses in float64 and, when asked,
``grad_scale`` times the gradient of each row's own loss in the compute dtype (float64 for
float64 inputs, float32 otherwise). Everything runs under ``torch.no_grad``.
"""

from __future__ import annotations

import contextlib
import math

import torch

__all__: list[str] = []  # private module

_force_torch_path = False
_force_triton_path = False


@contextlib.contextmanager
def force_torch_path(enabled: bool = True):
    """Run CPU tensors through the pure-torch path too (for tests of that path)."""
    global _force_torch_path
    previous, _force_torch_path = _force_torch_path, enabled
    try:
        yield
    finally:
        _force_torch_path = previous


@contextlib.contextmanager
def force_triton_path(enabled: bool = True):
    """Run CPU tensors through the Triton kernels (needs ``TRITON_INTERPRET=1``; for tests)."""
    global _force_triton_path
    previous, _force_triton_path = _force_triton_path, enabled
    try:
        yield
    finally:
        _force_triton_path = previous


def uses_kernels(tensor) -> bool:
    """Whether ``tensor`` goes to the compiled kernels (CPU) rather than the torch path."""
    return tensor.device.type == "cpu" and not (_force_torch_path or _force_triton_path)


def _triton_for(x):
    """:mod:`crossent.torch._triton` when ``x`` runs on its kernels (CUDA tensors when triton
    imports, or CPU tensors under :func:`force_triton_path`), else None."""
    if x.device.type != "cuda" and not _force_triton_path:
        return None
    from . import _triton  # imported on first use: triton's import is slow

    return _triton if _triton.triton is not None else None


def compute_dtype(dtype):
    """float64 stays float64; float32, float16 and bfloat16 are computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _zero_times(coef, value):
    """coef * value, with 0 * (+-inf or NaN) = 0 where coef is 0."""
    return torch.where(coef == 0, torch.zeros((), dtype=value.dtype, device=value.device), coef * value)


def _softcap_(z, softcap):
    """z <- s tanh(z / s) in place, -inf (masked) staying -inf; returns dz/dx = sech^2(z / s)
    = 4e / (1 + e)^2 with e = exp(-2|z / s|) (1 - tanh^2 would lose its digits to the rounding
    of tanh near |tanh| = 1), 0 where masked."""
    masked = z == -math.inf
    e = torch.exp(z.abs().div_(softcap).mul_(-2.0))
    dz = e.mul(4.0).div_((1.0 + e).square_()).masked_fill_(masked, 0.0)
    z.div_(softcap).tanh_().mul_(softcap).masked_fill_(masked, -math.inf)
    return dz


def _identity(t):
    return t


def softmax_ce_index_rows(x, y, owned, counted, options, grad_scale, need_grad, out=None,
                          all_max=_identity, all_sum=_identity):
    r"""Softmax cross-entropy of ``(n, V)`` logits against class indices, possibly of one shard.

    ``y`` holds each row's target column in this block (any valid column where the target
    lives elsewhere), ``owned`` marks the rows whose target lives here, ``counted`` the rows
    that are not ignored; ``options`` is a :class:`~crossent._options.SoftmaxCEOptions` whose
    ``weight`` is this block's slice of the class weights (or None; its ``ignore_index`` and
    ``reduction`` are the caller's business).
    ``all_max``/``all_sum`` combine per-row statistics across the shards of the vocabulary
    (identity on one process): the row maximum m; then s = sum_c exp(z_c - m), z_y, w_y, the
    number of owned targets and, for label smoothing, C', W = sum_c w_c and sum_c w_c (m - z_c).
    With lse = m + log s (the formula of :func:`crossent._reference.softmax_cross_entropy_index`):

        l = (1-eps) w_y (lse - z_y) + (eps/C') [W (lse - m) + sum_c w_c (m - z_c)] + z_loss w_y lse^2
        dl/dz_j = p_j [(1-eps) w_y + (eps/C') W + 2 z_loss w_y lse] - (eps/C') w_j - (1-eps) w_y [j=y]

    The gradient (times ``grad_scale``) is formed in ``out`` (which may be ``x`` itself), else
    in a new buffer. Returns ``(loss (n,) float64, grad or None, owned_count (n,) float64)``.
    """
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.softmax_ce_index_rows(x, y, owned, counted, options, grad_scale, need_grad,
                                         out=out, all_max=all_max, all_sum=all_sum)
    weight, z_loss, softcap = options.weight, options.z_loss, options.softcap
    cd = compute_dtype(x.dtype)
    if out is None:
        z = x.to(cd, copy=True)
    else:
        z = out if out is x else out.copy_(x)
    dz = _softcap_(z, softcap) if softcap is not None else None
    m = all_max(z.amax(dim=1))
    shift = torch.where(torch.isfinite(m), m, torch.zeros((), dtype=cd, device=z.device))
    col = y.unsqueeze(1)
    z_y = torch.where(owned, z.gather(1, col)[:, 0], 0.0).double()
    w_y = torch.where(owned, weight[y], 0.0).double() if weight is not None else owned.double()
    stats = [z_y, w_y, owned.double()]
    unmasked = None
    eps = float(options.label_smoothing)
    if eps > 0:
        unmasked = z != -math.inf
        w_row = unmasked.to(cd) if weight is None else torch.where(unmasked, weight.to(cd), 0.0)
        # sum_c w_c (lse - z_c) = W (lse - m) + sum_c w_c (m - z_c), a sum of non-negative terms
        dev = _zero_times(w_row, shift.unsqueeze(1) - z)
        stats += [unmasked.sum(dim=1).double(), w_row.sum(dim=1).double(), dev.sum(dim=1).double()]
        del dev
    e = z.sub_(shift.unsqueeze(1)).exp_()  # exp(z - m): masked classes give 0
    stats.insert(0, e.sum(dim=1).double())
    loss, coef, eps_c, hit, owned_count = index_epilogue(
        all_sum(torch.stack(stats)), m, shift, counted, weight is not None, eps, z_loss)
    if not need_grad:
        return loss, None, owned_count
    g = e.mul_(coef.to(cd).unsqueeze(1))  # p_j A = exp(z_j - m) A / s
    if eps > 0:
        g.sub_((eps_c.to(cd).unsqueeze(1) * w_row)).masked_fill_(~unmasked, 0.0)
    g.scatter_add_(1, col, torch.where(owned, -hit, 0.0).to(cd).unsqueeze(1))
    if dz is not None:
        g.mul_(dz)
    g.masked_fill_(~counted.unsqueeze(1), 0.0)
    if grad_scale != 1.0:
        g.mul_(grad_scale)
    return loss, g, owned_count


def index_epilogue(reduced, m, shift, counted, has_weight, eps, z_loss):
    """The per-row epilogue of :func:`softmax_ce_index_rows` from its summed statistics, shared
    by the eager engine and the sharded Triton path.

    ``reduced`` stacks (s, z_y, w_y, owned_count[, C', W, sum_c w_c (m - z_c)]) summed over
    the vocabulary (shards); ``m`` is the global row maximum and ``shift`` its finite form.
    Returns ``(loss, A / s, eps / C', (1-eps) w_y, owned_count)``, the gradient being
    ``exp(z_j - shift) A / s - (eps/C') w_j - (1-eps) w_y [j=y]``, all float64 (n,).
    """
    s, z_y, w_y, owned_count = reduced[0], reduced[1], reduced[2], reduced[3]
    if not has_weight:
        w_y = counted.double()
    log_s = torch.log(s)
    shift64 = shift.double()
    lse = shift64 + log_s
    one = torch.ones((), dtype=torch.float64, device=s.device)
    loss = _zero_times((1 - eps) * w_y, log_s + (shift64 - z_y))
    a = (1 - eps) * w_y
    eps_c = torch.zeros_like(s)
    if eps > 0:
        n_unmasked, w_sum, dev_sum = reduced[4], reduced[5], reduced[6]
        eps_c = torch.where(n_unmasked > 0, eps / torch.maximum(n_unmasked, one), 0.0)
        loss = loss + eps_c * (w_sum * log_s + dev_sum)
        a = a + eps_c * w_sum
    if z_loss > 0:
        loss = loss + z_loss * w_y * lse**2
        a = a + 2 * z_loss * w_y * lse
    loss = torch.where(m == -math.inf, math.inf, loss)  # every class masked: p_y = 0
    loss = torch.where(counted, loss, 0.0)
    return loss, a / s, eps_c, (1 - eps) * w_y, owned_count


def _log_softmax_rows(z):
    """(log p, lse) per row, lse = m + log sum exp(z - m) with m finite."""
    m = z.amax(dim=1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    log_s = torch.log(torch.exp(z - m).sum(dim=1, keepdim=True))
    return (z - m) - log_s, m + log_s


def softmax_ce_dense(x, targets, options, grad_scale, need_grad):
    """Softmax cross-entropy of ``(n, C)`` logits against target distributions, with the
    :class:`~crossent._options.SoftmaxCEOptions` ``options``.

    With t~ = (1-eps) t + eps/C' on unmasked classes: l = -sum_c w_c t~_c log p_c + z_loss lse^2
    and dl/dz_j = p_j (sum_c w_c t~_c + 2 z_loss lse) - w_j t~_j.
    """
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.softmax_ce_dense(x, targets, options, grad_scale, need_grad)
    weight, z_loss, softcap = options.weight, options.z_loss, options.softcap
    cd = compute_dtype(x.dtype)
    z = x.to(cd, copy=True)
    dz = _softcap_(z, softcap) if softcap is not None else None
    logp, lse = _log_softmax_rows(z)
    unmasked = z != -math.inf
    c_eff = unmasked.sum(dim=1, keepdim=True).clamp_min(1).to(cd)
    eps = float(options.label_smoothing)
    w = torch.ones(z.shape[1], dtype=cd, device=z.device) if weight is None else weight.to(cd)
    t = (1 - eps) * targets.to(cd) + torch.where(unmasked, eps / c_eff, 0.0)
    wt = w * t
    loss = _zero_times(wt, -logp).double().sum(dim=1)
    lse64 = lse[:, 0].double()
    if z_loss > 0:
        loss = loss + z_loss * lse64**2
    loss = torch.where(lse64 == -math.inf, math.inf, loss)
    if not need_grad:
        return loss, None
    grad = torch.exp(logp) * (wt.sum(dim=1, keepdim=True) + 2 * z_loss * lse) - wt
    if dz is not None:
        grad.mul_(dz)
    return loss, grad.mul_(grad_scale)


def dense_target_grad(x, options, grad_scale):
    """d l / d t_j = -(1-eps) w_j log p_j for dense targets (the smoothing mass is constant)."""
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.dense_target_grad(x, options, grad_scale)
    z = x.to(compute_dtype(x.dtype), copy=True)
    if options.softcap is not None:
        _softcap_(z, options.softcap)
    logp = torch.log_softmax(z, dim=1)
    w = 1.0 if options.weight is None else options.weight.to(z.dtype)
    return (-(1 - float(options.label_smoothing)) * grad_scale) * (w * logp)


def softmax_focal(x, y, counted, options, grad_scale, need_grad):
    """Softmax focal loss of ``(n, C)`` logits with the
    :class:`~crossent._options.SoftmaxFocalOptions` ``options`` (the rows' ``counted`` mask in
    place of its ``ignore_index``; formula of :func:`crossent._reference.softmax_focal`):
    l = -alpha_y u^gamma lp with lp = log p_y, u = 1 - p_y = -expm1(lp);
    dl/dz_j = alpha_y (p_j - [j=y]) u^gamma (1 - gamma p_y lp / u)."""
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.softmax_focal(x, y, counted, options, grad_scale, need_grad)
    alpha, gamma = options.alpha, options.gamma
    cd = compute_dtype(x.dtype)
    z = x.to(cd)
    logp, lse = _log_softmax_rows(z)
    col = y.unsqueeze(1)
    lp = torch.where(lse[:, 0] == -math.inf, -math.inf, logp.gather(1, col)[:, 0]).double()
    a_y = torch.ones_like(lp) if alpha is None else alpha.double()[y]
    u = -torch.expm1(lp)
    u_gamma = torch.pow(u, gamma)  # 0^0 = 1
    loss = torch.where(counted, _zero_times(a_y * u_gamma, -lp), 0.0)
    if not need_grad:
        return loss, None
    ratio = torch.where(u == 0, -1.0, lp / u)  # lp / u -> -1 as u -> 0
    g_row = a_y * u_gamma * (1.0 - gamma * _zero_times(torch.exp(lp), ratio))
    g_row = torch.where(counted, g_row * grad_scale, 0.0)
    grad = torch.exp(logp)
    grad.scatter_add_(1, col, -torch.ones_like(grad[:, :1]))
    grad = _zero_times(g_row.to(cd).unsqueeze(1), grad)
    return loss, grad


def _log_sigmoid(x):
    # log sigma(x) = min(x, 0) - log1p(e^(-|x|))
    return torch.clamp_max(x, 0.0) - torch.log1p(torch.exp(-x.abs()))


def sigmoid_binary_cross_entropy(x, targets, options, grad_scale, need_grad):
    """Element-wise l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)], t' = t(1-eps) + eps/2,
    with w, pw and eps of the :class:`~crossent._options.BinaryOptions` ``options``;
    dl/dx = w [(1-t') sigma(x) - pw t' sigma(-x)] (:func:`crossent._reference.sigmoid_binary_cross_entropy`)."""
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.sigmoid_binary_cross_entropy(x, targets, options, grad_scale, need_grad)
    weight, pos_weight = options.weight, options.pos_weight
    cd = compute_dtype(x.dtype)
    x = x.to(cd)
    t0 = targets.to(cd)
    eps = float(options.label_smoothing)
    t = t0 * (1 - eps) + eps / 2
    one_minus_t = (1 - t0) * (1 - eps) + eps / 2  # 1 - t' without cancellation near t' = 1
    pw = 1.0 if pos_weight is None else pos_weight.to(cd)
    w = 1.0 if weight is None else weight.to(cd)
    ls, lsn = _log_sigmoid(x), _log_sigmoid(-x)  # log(1 - sigma(x)) = log sigma(-x)
    loss = -w * (_zero_times(pw * t, ls) + _zero_times(one_minus_t, lsn))
    grad = None
    if need_grad:
        grad = (w * grad_scale) * (one_minus_t * torch.exp(ls) - pw * t * torch.exp(lsn))
    return loss.double(), grad


def binary_target_grad(x, options, grad_scale):
    """d l / d t = -(1-eps) w [pw log sigma(x) - log sigma(-x)]."""
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.binary_target_grad(x, options, grad_scale)
    x = x.to(compute_dtype(x.dtype))
    pw = 1.0 if options.pos_weight is None else options.pos_weight.to(x.dtype)
    w = 1.0 if options.weight is None else options.weight.to(x.dtype)
    return (-(1 - float(options.label_smoothing)) * grad_scale) * w * (pw * _log_sigmoid(x) - _log_sigmoid(-x))


def sigmoid_focal(x, targets, options, grad_scale, need_grad):
    """Element-wise l = alpha_t u^gamma ce with u = 1 - p_t, alpha and gamma of the
    :class:`~crossent._options.BinaryOptions` ``options`` (:func:`crossent._reference.sigmoid_focal`)."""
    gpu = _triton_for(x)
    if gpu is not None:
        return gpu.sigmoid_focal(x, targets, options, grad_scale, need_grad)
    alpha, gamma = options.alpha, options.gamma
    cd = compute_dtype(x.dtype)
    x = x.to(cd)
    t = targets.to(cd)
    ls, lsn = _log_sigmoid(x), _log_sigmoid(-x)
    ce = -(_zero_times(t, ls) + _zero_times(1 - t, lsn))
    log_u = torch.logaddexp(torch.log(t) + lsn, torch.log1p(-t) + ls)  # log(t sigma(-x) + (1-t) sigma(x))
    u_gamma = torch.exp(gamma * log_u) if gamma != 0 else torch.ones_like(log_u)
    alpha_t = 1.0 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    loss = alpha_t * u_gamma * ce
    grad = None
    if need_grad:
        ratio = (1 - 2 * t) * torch.exp(ls + lsn - log_u)
        grad = (alpha_t * u_gamma * grad_scale) * (gamma * ratio * ce + torch.exp(ls) - t)
    return loss.double(), grad
