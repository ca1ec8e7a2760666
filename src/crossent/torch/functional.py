"""Drop-in replacements for ``torch.nn.functional``'s cross-entropy losses (class dim 1).

Each loss computes its value and gradient in one fused pass in ``forward`` and keeps the
gradient for ``backward``, which only multiplies it by the upstream gradient. CPU tensors run
crossent's compiled kernels on the tensors' own memory (float32/float64 contiguous inputs are
not copied); tensors on other devices run a chunked pure-torch path with the same formulas.
float16/bfloat16 inputs are computed in float32 and their gradients returned in their dtype.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _checks, _dispatch
from . import _engine
from ._autograd import (
    check_constant,
    check_same_device,
    check_tensor,
    check_unit_interval,
    class_weight,
    fused,
    grad_scale,
    labels_numpy,
    numpy_block,
    reduce,
    scalars,
)

__all__ = [
    "cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
]

# Elements of one chunk of the pure-torch path (its temporaries are a few chunks in size).
_TORCH_CHUNK_ELEMENTS = 1 << 22


class _Rows:
    """Input with classes on dim 1 seen as ``(N, C)`` rows (a view when already 2-D)."""

    def __init__(self, x):
        if x.dim() == 0:
            raise ValueError("input must have a class dimension, got a 0-d tensor")
        self.dtype = x.dtype
        self.shape = tuple(x.shape)
        self.class_dim = 0 if x.dim() == 1 else 1
        self.num_classes = x.shape[self.class_dim]
        if self.num_classes == 0:
            raise ValueError(f"input has no classes: dim {self.class_dim} has length 0")
        self.batch_shape = self.shape[:self.class_dim] + self.shape[self.class_dim + 1:]
        self.block = self.rows_of(x.detach())

    def rows_of(self, t):
        return t.movedim(self.class_dim, -1).reshape(-1, self.num_classes)

    def back(self, g):
        """An ``(N, C)`` gradient in the input's layout and dtype."""
        g = g.to(self.dtype).reshape(self.batch_shape + (self.num_classes,))
        return g.movedim(-1, self.class_dim)


def _chunks(n_rows, n_cols):
    step = max(1, _TORCH_CHUNK_ELEMENTS // max(1, n_cols))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


# ----------------------------------------------------------------------------- cross-entropy
def _ce_index(rows, target, w_np, w_t, ignore_index, eps, zl, cap, reduction, need):
    y = labels_numpy(target, rows.num_classes, ignore_index).reshape(-1)
    counted = y if ignore_index is None else y[y != ignore_index]
    denominator = float(counted.size) if w_np is None else float(np.sum(w_np[counted], dtype=np.float64))
    scale = grad_scale(reduction, denominator)
    x = rows.block
    if _engine.uses_kernels(x):
        x_np, private = numpy_block(x)
        loss, g = _dispatch.softmax_ce_index(x_np, np.ascontiguousarray(y), w_np, ignore_index, eps,
                                             zl, cap, scale, need, out=x_np if private and need else None)
        loss, g = torch.from_numpy(loss), (torch.from_numpy(g) if need else None)
    else:
        y_t = torch.from_numpy(y).to(x.device)
        is_counted = y_t != ignore_index if ignore_index is not None else torch.ones_like(y_t, dtype=torch.bool)
        y_t = torch.where(is_counted, y_t, 0)
        loss = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        g = torch.empty(x.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need else None
        for sl in _chunks(*x.shape):
            loss[sl] = _engine.softmax_ce_index_rows(
                x[sl], y_t[sl], is_counted[sl], is_counted[sl], w_t, eps, zl, cap, scale, need,
                out=g[sl] if need else None)[0]
    return reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape), g


def _ce_dense(rows, target, w_np, w_t, eps, zl, cap, reduction, need, need_target):
    check_unit_interval(target.detach(), "target")
    x, t = rows.block, rows.rows_of(target.detach())
    denominator = float(x.shape[0])
    scale = grad_scale(reduction, denominator)
    if _engine.uses_kernels(x):
        x_np, _ = numpy_block(x)
        t_np, _ = numpy_block(t)
        loss, g = _dispatch.softmax_ce_dense(x_np, t_np, w_np, eps, zl, cap, scale, need)
        loss, g = torch.from_numpy(loss), (torch.from_numpy(g) if need else None)
    else:
        loss = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        g = torch.empty(x.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need else None
        for sl in _chunks(*x.shape):
            loss[sl], g_c = _engine.softmax_ce_dense(x[sl], t[sl], w_t, eps, zl, cap, scale, need)
            if need:
                g[sl] = g_c
    g_t = _engine.dense_target_grad(x, w_t, eps, cap, scale) if need_target else None
    return reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape), g, g_t


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None):
    r"""Softmax cross-entropy, a drop-in for :func:`torch.nn.functional.cross_entropy`.

    With classes on dim 1, per row (soft-cap ``s``): :math:`z = s\tanh(x/s)`,
    :math:`\operatorname{lse} = \log\sum_c e^{z_c}`, :math:`\log p = z - \operatorname{lse}`;
    for class indices :math:`\ell_n = (1-\varepsilon)w_{y_n}(-\log p_{y_n}) +
    \frac{\varepsilon}{C}\sum_c w_c(-\log p_c) + \lambda_z w_{y_n}\operatorname{lse}_n^2`; for
    probabilities :math:`\tilde t = (1-\varepsilon)t + \varepsilon/C`,
    :math:`\ell_n = -\sum_c w_c\tilde t_c\log p_c + \lambda_z\operatorname{lse}_n^2`.

    Parameters
    ----------
    input : Tensor
        Logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)``; any floating dtype.
    target : Tensor
        Class indices (an integer tensor of the input's shape without dim 1) or class
        probabilities (a floating tensor of the input's shape).
    weight : Tensor, optional
        Non-negative class weights, shape ``(C,)`` (a constant: not differentiated).
    ignore_index : int or None, default -100
        Index targets equal to it count for nothing. Probability targets ignore the default;
        another value with probability targets raises.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by :math:`\sum_n w_{y_n}` over rows not ignored (by ``N`` for
        probabilities); a mean over nothing is 0 with a zero gradient (torch: NaN).
    label_smoothing : float, default 0.0
        :math:`\varepsilon \in [0, 1]`.
    z_loss : float, default 0.0
        :math:`\lambda_z \ge 0`, weight of the :math:`\operatorname{lse}^2` penalty (PaLM).
    softcap : float, optional
        ``s > 0``: logits pass through :math:`s\tanh(x/s)` first (Gemma 2).

    Returns
    -------
    Tensor
        A scalar of the input's dtype, or the per-row losses for "none" (input's shape without
        dim 1). Differentiable with respect to ``input`` (and probability targets).

    See Also
    --------
    crossent.softmax_cross_entropy : the NumPy function with the same semantics.

    Notes
    -----
    The value and the gradient come from one fused pass; backward multiplies the kept gradient
    by the upstream gradient. ``-inf`` logits are masked classes (no probability, no smoothing
    mass: :math:`C` counts the unmasked classes).

    References
    ----------
    C. Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016; A. Chowdhery et al.,
    "PaLM", 2022 (z-loss); Gemma Team, "Gemma 2", 2024 (soft-capping).

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import cross_entropy
    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = cross_entropy(logits, torch.tensor([0, -100]))
    >>> round(loss.item(), 6)  # only row 0 counts: -log softmax(x)[0]
    0.241311
    >>> loss.backward()
    >>> logits.grad[1].tolist()
    [0.0, 0.0, 0.0]
    """
    reduction, eps, zl, cap = scalars(reduction, label_smoothing, z_loss, softcap)
    x = check_tensor(input, "input")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    check_same_device(x, target, "input", "target")
    ignore_index = _checks.check_ignore_index(ignore_index)
    rows = _Rows(x)
    w_np, w_t = class_weight(weight, rows.num_classes, x.device)
    if target.is_floating_point():
        if tuple(target.shape) != rows.shape:
            raise ValueError(f"target of floating dtype holds class probabilities and must have the "
                             f"input's shape {rows.shape}, got {tuple(target.shape)} "
                             "(class indices need an integer dtype)")
        if ignore_index not in (None, -100):
            raise ValueError(f"ignore_index={ignore_index} applies to class-index targets; "
                             "probability targets cannot ignore rows")

        def compute(needs):
            value, g, g_t = _ce_dense(rows, target, w_np, w_t, eps, zl, cap, reduction, needs[0], needs[1])
            return value, (None if g is None else rows.back(g),
                           None if g_t is None else rows.back(g_t).to(target.dtype))
        return fused(compute, rows.class_dim, x, target)
    if tuple(target.shape) != rows.batch_shape:
        raise ValueError(f"target holds class indices of shape {tuple(target.shape)}, but input of "
                         f"shape {rows.shape} needs indices of shape {rows.batch_shape}")

    def compute(needs):
        value, g = _ce_index(rows, target, w_np, w_t, ignore_index, eps, zl, cap, reduction, needs[0])
        return value, (None if g is None else rows.back(g),)
    return fused(compute, rows.class_dim, x)


def softmax_focal_loss(input, target, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean"):
    r"""Multi-class focal loss of logits with classes on dim 1 (Lin et al. 2017).

    .. math:: \ell_n = -\alpha_{y_n}(1 - p_{n,y_n})^{\gamma}\log p_{n,y_n}

    computed from :math:`\log p` (so :math:`\gamma < 1` and :math:`p_y \to 1` stay exact).

    Parameters
    ----------
    input : Tensor
        Logits ``(N, C)`` or ``(N, C, d1, ...)``.
    target : Tensor
        Integer class indices, the input's shape without dim 1.
    alpha : float or Tensor, optional
        A scalar in [0, 1] for every class, or per-class weights of shape ``(C,)``; None
        (default) turns balancing off.
    gamma : float, default 2.0
        Focusing parameter :math:`\gamma \ge 0`; 0 gives the cross-entropy.
    ignore_index : int or None, default -100
        Targets equal to it count for nothing.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over the rows not ignored (0 when there are none).

    Returns
    -------
    Tensor
        A scalar, or the per-row losses for "none".

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
    Detection", ICCV 2017.

    Examples
    --------
    >>> import math, torch
    >>> from crossent.torch import softmax_focal_loss
    >>> x = torch.log(torch.tensor([[0.9, 0.1]], dtype=torch.float64))
    >>> round(softmax_focal_loss(x, torch.tensor([0])).item(), 8)  # (1 - 0.9)^2 * -log 0.9
    0.00105361
    """
    reduction = _checks.check_reduction(reduction)
    gamma = _checks.check_scalar(gamma, "gamma", low=0.0)
    x = check_tensor(input, "input")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    check_same_device(x, target, "input", "target")
    ignore_index = _checks.check_ignore_index(ignore_index)
    rows = _Rows(x)
    if alpha is None:
        a_np = None
    elif np.ndim(alpha) > 0:
        a_np, _ = class_weight(alpha, rows.num_classes, x.device, name="alpha")
    else:
        a = alpha.item() if isinstance(alpha, torch.Tensor) else alpha
        a_np = np.full(rows.num_classes, _checks.check_scalar(a, "alpha", low=0.0, high=1.0))
    if tuple(target.shape) != rows.batch_shape:
        raise ValueError(f"target holds class indices of shape {tuple(target.shape)}, but input of "
                         f"shape {rows.shape} needs indices of shape {rows.batch_shape}")

    def compute(needs):
        need = needs[0]
        y = labels_numpy(target, rows.num_classes, ignore_index).reshape(-1)
        counted = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
        denominator = float(np.count_nonzero(counted))
        scale = grad_scale(reduction, denominator)
        xb = rows.block
        if _engine.uses_kernels(xb):
            x_np, _ = numpy_block(xb)
            loss, g = _dispatch.softmax_focal(x_np, np.ascontiguousarray(y), a_np, gamma, ignore_index,
                                              scale, need)
            loss, g = torch.from_numpy(loss), (torch.from_numpy(g) if need else None)
        else:
            y_t = torch.from_numpy(np.where(counted, y, 0)).to(xb.device)
            c_t = torch.from_numpy(counted).to(xb.device)
            a_t = None if a_np is None else torch.from_numpy(a_np).to(xb.device)
            loss, g = _engine.softmax_focal(xb, y_t, c_t, a_t, gamma, scale, need)
        value = reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape)
        return value, (None if g is None else rows.back(g),)
    return fused(compute, rows.class_dim, x)


# ----------------------------------------------------------------------------- binary family
def _broadcast_weight(weight, shape, device, name):
    """An element-wise weight broadcastable to ``shape``: (float64 NumPy, float64 tensor) or Nones."""
    if weight is None:
        return None, None
    check_constant(weight, name)
    w = weight.detach().to("cpu", torch.float64).numpy() if isinstance(weight, torch.Tensor) else weight
    w_np = _checks.check_broadcast_weight(w, shape, name)
    return w_np, torch.from_numpy(w_np).to(device)


def _elementwise(x, target, reduction, loss_name, kernel, engine, target_grad=None):
    """Shared driver of the binary losses: validation, both paths, reduction."""
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        raise TypeError(f"target must be a floating-point tensor of 0/1 (or soft) labels, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    check_same_device(x, target, "input", "target")
    if target.shape != x.shape:
        raise ValueError(f"target has shape {tuple(target.shape)}, but input has shape "
                         f"{tuple(x.shape)}; {loss_name} needs them equal")
    if target_grad is None and target.requires_grad:
        raise ValueError(f"target requires grad, but {loss_name} does not differentiate its "
                         "targets; pass target.detach()")
    check_unit_interval(target.detach(), "target")
    n = float(x.numel())

    def compute(needs):
        need = needs[0]
        scale = grad_scale(reduction, n)
        xd, td = x.detach(), target.detach()
        if _engine.uses_kernels(xd):
            x_np, _ = numpy_block(xd)
            t_np, _ = numpy_block(td)
            loss, g = kernel(x_np, t_np, scale, need)
            loss, g = torch.from_numpy(np.asarray(loss, dtype=np.float64)), (torch.from_numpy(g) if need else None)
        else:
            loss, g = engine(xd, td, scale, need)
        value = reduce(loss.reshape(-1), reduction, n, x.dtype, tuple(x.shape))
        g_t = target_grad(xd, scale).to(target.dtype) if needs[1] else None
        return value, (None if g is None else g.reshape(x.shape).to(x.dtype), g_t)
    return fused(compute, None, x, target)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None,
                                     *, label_smoothing=0.0):
    r"""Binary cross-entropy of logits, a drop-in for
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`, computed in log space.

    .. math:: \ell = -w\,[\,p_w\,t\log\sigma(x) + (1-t)\log\sigma(-x)\,],
              \qquad t \leftarrow t(1-\varepsilon) + \varepsilon/2

    Parameters
    ----------
    input : Tensor
        Logits, any shape.
    target : Tensor
        Targets in [0, 1] (hard or soft), the input's shape.
    weight : Tensor, optional
        Non-negative element weights broadcastable to the input (a constant).
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over all elements.
    pos_weight : Tensor, optional
        Non-negative weight of the positive term, broadcast along the last dim (per class).
    label_smoothing : float, default 0.0
        :math:`\varepsilon \in [0, 1]` (not in torch; 0 reproduces it).

    Returns
    -------
    Tensor
        A scalar, or the element-wise losses for "none"; differentiable in input and target.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import binary_cross_entropy_with_logits
    >>> round(binary_cross_entropy_with_logits(torch.zeros(2), torch.tensor([1.0, 0.0])).item(), 6)
    0.693147
    """
    reduction, eps, _, _ = scalars(reduction, label_smoothing)
    x = check_tensor(input, "input")
    shape = tuple(x.shape)
    w_np, w_t = _broadcast_weight(weight, shape, x.device, "weight")
    pw_np, pw_t = _broadcast_weight(pos_weight, shape, x.device, "pos_weight")
    return _elementwise(
        x, target, reduction, "binary_cross_entropy_with_logits",
        lambda x_np, t_np, scale, need: _dispatch.sigmoid_binary_cross_entropy(x_np, t_np, w_np, pw_np, eps, scale, need),
        lambda xd, td, scale, need: _engine.sigmoid_binary_cross_entropy(xd, td, w_t, pw_t, eps, scale, need),
        lambda xd, scale: _engine.binary_target_grad(xd, w_t, pw_t, eps, scale))


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2, reduction="none"):
    r"""Binary focal loss with torchvision's signature and definition
    (:func:`torchvision.ops.sigmoid_focal_loss`), in log space.

    .. math:: \ell = \alpha_t\,(1-p_t)^{\gamma}\,\mathrm{BCE}(x, t), \quad
              1-p_t = t\,\sigma(-x) + (1-t)\,\sigma(x), \quad \alpha_t = \alpha t + (1-\alpha)(1-t)

    Parameters
    ----------
    inputs : Tensor
        Logits, any shape.
    targets : Tensor
        Targets in [0, 1], the shape of ``inputs`` (a constant: not differentiated).
    alpha : float or None, default 0.25
        Weight of the positive class in [0, 1]; None or a negative value (torchvision's
        convention) turns balancing off.
    gamma : float, default 2
        Focusing parameter :math:`\gamma \ge 0`.
    reduction : {"none", "mean", "sum"}, default "none"
        torchvision's default: the element-wise losses.

    Returns
    -------
    Tensor
        The element-wise losses, or their mean or sum.

    References
    ----------
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import sigmoid_focal_loss
    >>> sigmoid_focal_loss(torch.zeros(1), torch.ones(1), alpha=None, gamma=0).tolist()  # = BCE
    [0.6931471...]
    """
    reduction = _checks.check_reduction(reduction)
    gamma = _checks.check_scalar(gamma, "gamma", low=0.0)
    a = None if alpha is None or (not isinstance(alpha, bool) and isinstance(alpha, (int, float)) and alpha < 0) \
        else _checks.check_scalar(alpha, "alpha", low=0.0, high=1.0)
    x = check_tensor(inputs, "inputs")
    return _elementwise(
        x, targets, reduction, "sigmoid_focal_loss",
        lambda x_np, t_np, scale, need: _dispatch.sigmoid_focal(x_np, t_np, a, gamma, scale, need),
        lambda xd, td, scale, need: _engine.sigmoid_focal(xd, td, a, gamma, scale, need))
