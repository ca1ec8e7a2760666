"""Drop-in replacements for ``torch.nn.functional``'s cross-entropy losses (class dim 1).

Each loss is an operator registered with ``torch.library`` (``torch.ops.crossent.*``, with a
fake kernel for tracing) that computes its value and gradient in one fused pass; autograd
keeps the gradient for ``backward``, which only multiplies it by the upstream gradient
(second derivatives differentiate the formulas of :mod:`._formulas`). CPU tensors run
crossent's compiled kernels on the tensors' own memory (float32/float64 contiguous inputs are
not copied); tensors on other devices run a chunked pure-torch path with the same formulas.
float16/bfloat16 inputs are computed in float32 and their gradients returned in their dtype.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.library import custom_op

from .. import _dispatch
from .._options import BinaryOptions, SoftmaxCEOptions, SoftmaxFocalOptions
from . import _engine, _formulas
from ._autograd import (
    apply_fused,
    check_constant,
    check_same_device,
    check_scalar,
    check_tensor,
    check_unit_interval,
    checked_options,
    empty_grad,
    fused_function,
    grad_scale,
    head_options,
    host,
    labels_numpy,
    mean_denominator,
    numpy_block,
    reduce,
    register_loop_vmap,
    row_weights,
    tensor_options,
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


def _class_dim(x):
    return 0 if x.dim() == 1 else 1


def _batch_shape(x):
    d = _class_dim(x)
    return tuple(x.shape[:d]) + tuple(x.shape[d + 1:])


def _value_like(x, reduction, batch_shape):
    """Fake value: the per-row losses for "none", else a scalar, in the input's dtype."""
    return x.new_empty(batch_shape if reduction == "none" else ())


def _grad_like(x, need):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device) if need else empty_grad(x)


def _head_block(rows, logit_scale):
    """The rows as the kernels read them: multiplied by ``logit_scale`` first (a private copy)."""
    if logit_scale == 1.0:
        return rows.block
    return rows.block.to(_engine.compute_dtype(rows.dtype)) * logit_scale


def _weight_rows(loss, g, s_np):
    """Per-row losses and gradient rows times the sample weights (0 weight: 0, even beside inf)."""
    if s_np is None:
        return loss, g
    s = torch.from_numpy(s_np).to(loss.device)
    loss = torch.where(s == 0, 0.0, loss * s)
    if g is not None:
        g.mul_(s.to(g.dtype).unsqueeze(1))
    return loss, g


# ----------------------------------------------------------------------------- cross-entropy
def _ce_index(rows, target, opts, need, logit_scale, s_np, normalizer):
    w_np, ignore_index, reduction = opts.weight, opts.ignore_index, opts.reduction
    y = labels_numpy(target, rows.num_classes, ignore_index).reshape(-1)
    counted = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
    # "mean" divides by sum_n s_n w_{y_n} over counted rows (torch: sum_n w_{y_n})
    if w_np is None:
        row_w = counted.astype(np.float64)
    else:
        row_w = np.where(counted, w_np[np.where(counted, y, 0)], 0.0)
    if s_np is not None:
        row_w = row_w * s_np
    denominator = mean_denominator(reduction, float(np.sum(row_w, dtype=np.float64)), normalizer)
    scale = grad_scale(reduction, denominator) * logit_scale  # dl/dx = logit_scale dl/dz
    x = _head_block(rows, logit_scale)
    if _engine.uses_kernels(x):
        x_np, private = numpy_block(x)
        private = private or logit_scale != 1.0
        loss, g = _dispatch.softmax_ce_index(x_np, np.ascontiguousarray(y), opts, scale, need,
                                             out=x_np if private and need else None)
        loss, g = torch.from_numpy(loss), (torch.from_numpy(g) if need else None)
    else:
        y_t = torch.from_numpy(y).to(x.device)
        is_counted = torch.from_numpy(counted).to(x.device)
        y_t = torch.where(is_counted, y_t, 0)
        t_opts = tensor_options(opts, x.device)
        loss = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        g = torch.empty(x.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need else None
        for sl in _chunks(*x.shape):
            loss[sl] = _engine.softmax_ce_index_rows(
                x[sl], y_t[sl], is_counted[sl], is_counted[sl], t_opts, scale, need,
                out=g[sl] if need else None)[0]
    loss, g = _weight_rows(loss, g, s_np)
    return reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape), g


def _ce_dense(rows, target, opts, need, need_target, logit_scale, s_np, normalizer):
    reduction = opts.reduction
    check_unit_interval(target.detach(), "target")
    x, t = _head_block(rows, logit_scale), rows.rows_of(target.detach())
    denominator = float(x.shape[0]) if s_np is None else float(np.sum(s_np))
    denominator = mean_denominator(reduction, denominator, normalizer)
    scale = grad_scale(reduction, denominator)
    t_opts = tensor_options(opts, x.device)  # the weights as the torch engine reads them
    if _engine.uses_kernels(x):
        x_np, _ = numpy_block(x)
        t_np, _ = numpy_block(t)
        loss, g = _dispatch.softmax_ce_dense(x_np, t_np, opts, scale * logit_scale, need)
        loss, g = torch.from_numpy(loss), (torch.from_numpy(g) if need else None)
    else:
        loss = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
        g = torch.empty(x.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need else None
        for sl in _chunks(*x.shape):
            loss[sl], g_c = _engine.softmax_ce_dense(x[sl], t[sl], t_opts, scale * logit_scale, need)
            if need:
                g[sl] = g_c
    g_t = _engine.dense_target_grad(x, t_opts, scale) if need_target else None
    if g_t is not None and s_np is not None:
        g_t.mul_(torch.from_numpy(s_np).to(g_t).unsqueeze(1))
    loss, g = _weight_rows(loss, g, s_np)
    return reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape), g, g_t


@custom_op("crossent::cross_entropy_index", mutates_args=())
def _cross_entropy_index(input: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: Optional[int],
                         reduction: str, label_smoothing: float, z_loss: float, softcap: Optional[float],
                         logit_scale: float, sample_weight: Optional[Tensor], normalizer: Optional[Tensor],
                         need_input: bool) -> tuple[Tensor, Tensor]:
    rows = _Rows(input)
    opts = SoftmaxCEOptions.checked(reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                                    softcap=softcap, ignore_index=ignore_index, weight=host(weight),
                                    num_classes=rows.num_classes)
    value, g = _ce_index(rows, target, opts, need_input, logit_scale, row_weights(sample_weight), normalizer)
    return value, (rows.back(g).contiguous() if need_input else empty_grad(input))


@_cross_entropy_index.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap, logit_scale,
      sample_weight, normalizer, need_input):
    return _value_like(input, reduction, _batch_shape(input)), _grad_like(input, need_input)


_CROSS_ENTROPY_INDEX_OP = torch.ops.crossent.cross_entropy_index.default
register_loop_vmap(_CROSS_ENTROPY_INDEX_OP)


@custom_op("crossent::cross_entropy_dense", mutates_args=())
def _cross_entropy_dense(input: Tensor, target: Tensor, weight: Optional[Tensor], reduction: str,
                         label_smoothing: float, z_loss: float, softcap: Optional[float], logit_scale: float,
                         sample_weight: Optional[Tensor], normalizer: Optional[Tensor], need_input: bool,
                         need_target: bool) -> tuple[Tensor, Tensor, Tensor]:
    rows = _Rows(input)
    opts = SoftmaxCEOptions.checked(reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                                    softcap=softcap, weight=host(weight), num_classes=rows.num_classes)
    value, g, g_t = _ce_dense(rows, target, opts, need_input, need_target, logit_scale,
                              row_weights(sample_weight), normalizer)
    return (value, rows.back(g).contiguous() if need_input else empty_grad(input),
            rows.back(g_t).to(target.dtype).contiguous() if need_target else empty_grad(target))


@_cross_entropy_dense.register_fake
def _(input, target, weight, reduction, label_smoothing, z_loss, softcap, logit_scale, sample_weight,
      normalizer, need_input, need_target):
    return (_value_like(input, reduction, _batch_shape(input)), _grad_like(input, need_input),
            _grad_like(target, need_target))


_CROSS_ENTROPY_DENSE_OP = torch.ops.crossent.cross_entropy_dense.default
register_loop_vmap(_CROSS_ENTROPY_DENSE_OP)


_CrossEntropyIndex = fused_function("cross_entropy", _CROSS_ENTROPY_INDEX_OP, 1, _formulas.cross_entropy_index,
                                    lambda args: _class_dim(args[0]))
_CrossEntropyDense = fused_function("cross_entropy", _CROSS_ENTROPY_DENSE_OP, 2, _formulas.cross_entropy_dense,
                                    lambda args: _class_dim(args[0]))


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, z_loss=0.0, softcap=None, logit_scale=1.0,
                  sample_weight=None, normalizer=None):
    r"""Softmax cross-entropy, a drop-in for :func:`torch.nn.functional.cross_entropy`.

    With classes on dim 1, per row (soft-cap ``s``, logit scale ``a``): :math:`z = s\tanh(ax/s)`,
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
    logit_scale : float, default 1.0
        ``a > 0``: the logits are multiplied by it before anything else (Cohere/Granite heads,
        1/temperature).
    sample_weight : Tensor, optional
        Non-negative per-row weights of the target's row shape (a constant): each row's loss is
        multiplied by its weight, and "mean" divides by :math:`\sum_n s_n w_{y_n}` over the
        rows not ignored (by :math:`\sum_n s_n` for probabilities).
    normalizer : float or Tensor, optional
        A positive number "mean" divides by instead (gradient accumulation: transformers'
        ``num_items_in_batch``). "sum" and "none" ignore it.

    Returns
    -------
    Tensor
        A scalar of the input's dtype, or the per-row losses for "none" (input's shape without
        dim 1). Differentiable with respect to ``input`` (and probability targets), twice.

    See Also
    --------
    crossent.softmax_cross_entropy : the NumPy function with the same semantics.

    Notes
    -----
    The value and the gradient come from one fused pass (the operators
    ``torch.ops.crossent.cross_entropy_index`` and ``cross_entropy_dense``); backward multiplies
    the kept gradient by the upstream gradient. Under ``create_graph=True`` the gradient is
    formed from differentiable torch operations instead, so second derivatives are exact.
    ``-inf`` logits are masked classes (no probability, no smoothing mass: :math:`C` counts the
    unmasked classes).

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
    opts = checked_options(SoftmaxCEOptions, reduction=reduction, label_smoothing=label_smoothing,
                           z_loss=z_loss, softcap=softcap, ignore_index=ignore_index)
    x = check_tensor(input, "input")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    check_same_device(x, target, "input", "target")
    ignore_index, reduction = opts.ignore_index, opts.reduction
    eps, zl, cap = opts.label_smoothing, opts.z_loss, opts.softcap
    rows = _Rows(x)
    _check_class_weight_shape(weight, rows.num_classes, x.device, "weight")
    scale, sw, norm = head_options(logit_scale, sample_weight, normalizer, rows.batch_shape, x.device)
    if target.is_floating_point():
        if tuple(target.shape) != rows.shape:
            raise ValueError(f"target of floating dtype holds class probabilities and must have the "
                             f"input's shape {rows.shape}, got {tuple(target.shape)} "
                             "(class indices need an integer dtype)")
        if ignore_index not in (None, -100):
            raise ValueError(f"ignore_index={ignore_index} applies to class-index targets; "
                             "probability targets cannot ignore rows")
        return apply_fused(_CrossEntropyDense, _CROSS_ENTROPY_DENSE_OP, 2, x, target, weight, reduction,
                           eps, zl, cap, scale, sw, norm)
    if target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != rows.batch_shape:
        raise ValueError(f"target holds class indices of shape {tuple(target.shape)}, but input of "
                         f"shape {rows.shape} needs indices of shape {rows.batch_shape}")
    return apply_fused(_CrossEntropyIndex, _CROSS_ENTROPY_INDEX_OP, 1, x, target, weight, ignore_index,
                       reduction, eps, zl, cap, scale, sw, norm)


def _check_class_weight_shape(weight, num_classes, device, name):
    """Per-class weights: a constant tensor of shape (C,) on the input's device (values are
    checked by the operator)."""
    if weight is None:
        return
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({num_classes},), got {type(weight).__name__}")
    check_constant(weight, name)
    check_tensor(weight, name)
    if tuple(weight.shape) != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},) (one entry per class), "
                         f"got {tuple(weight.shape)}")
    if weight.device != device:
        raise ValueError(f"{name} is on {weight.device}, but input is on {device}")


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
    opts = checked_options(SoftmaxFocalOptions, reduction=reduction, gamma=gamma, ignore_index=ignore_index)
    x = check_tensor(input, "input")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    check_same_device(x, target, "input", "target")
    rows = _Rows(x)
    if alpha is None:
        a_t = None
    elif isinstance(alpha, torch.Tensor) and alpha.dim() > 0 or np.ndim(alpha) > 0:
        a_t = alpha if isinstance(alpha, torch.Tensor) else \
            torch.as_tensor(alpha, dtype=torch.float64, device=x.device)
        _check_class_weight_shape(a_t, rows.num_classes, x.device, "alpha")
    else:
        a = alpha.item() if isinstance(alpha, torch.Tensor) else alpha
        a = check_scalar(a, "alpha", low=0.0, high=1.0)
        a_t = torch.full((rows.num_classes,), a, dtype=torch.float64, device=x.device)
    if tuple(target.shape) != rows.batch_shape:
        raise ValueError(f"target holds class indices of shape {tuple(target.shape)}, but input of "
                         f"shape {rows.shape} needs indices of shape {rows.batch_shape}")
    return apply_fused(_SoftmaxFocal, _SOFTMAX_FOCAL_LOSS_OP, 1, x, target, a_t, opts.gamma, opts.ignore_index,
                       opts.reduction)


@custom_op("crossent::softmax_focal_loss", mutates_args=())
def _softmax_focal(input: Tensor, target: Tensor, alpha: Optional[Tensor], gamma: float,
                   ignore_index: Optional[int], reduction: str, need_input: bool) -> tuple[Tensor, Tensor]:
    rows = _Rows(input)
    opts = SoftmaxFocalOptions.checked(reduction=reduction, gamma=gamma, ignore_index=ignore_index,
                                       alpha=host(alpha), num_classes=rows.num_classes)
    ignore_index = opts.ignore_index
    y = labels_numpy(target, rows.num_classes, ignore_index).reshape(-1)
    counted = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
    denominator = float(np.count_nonzero(counted))
    scale = grad_scale(reduction, denominator)
    xb = rows.block
    if _engine.uses_kernels(xb):
        x_np, _ = numpy_block(xb)
        loss, g = _dispatch.softmax_focal(x_np, np.ascontiguousarray(y), opts, scale, need_input)
        loss, g = torch.from_numpy(loss), (torch.from_numpy(g) if need_input else None)
    else:
        y_t = torch.from_numpy(np.where(counted, y, 0)).to(xb.device)
        c_t = torch.from_numpy(counted).to(xb.device)
        loss, g = _engine.softmax_focal(xb, y_t, c_t, tensor_options(opts, xb.device), scale, need_input)
    value = reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape)
    return value, (rows.back(g).contiguous() if need_input else empty_grad(input))


@_softmax_focal.register_fake
def _(input, target, alpha, gamma, ignore_index, reduction, need_input):
    return _value_like(input, reduction, _batch_shape(input)), _grad_like(input, need_input)


_SOFTMAX_FOCAL_LOSS_OP = torch.ops.crossent.softmax_focal_loss.default
register_loop_vmap(_SOFTMAX_FOCAL_LOSS_OP)


_SoftmaxFocal = fused_function("softmax_focal_loss", _SOFTMAX_FOCAL_LOSS_OP, 1, _formulas.softmax_focal,
                               lambda args: _class_dim(args[0]))


# ----------------------------------------------------------------------------- binary family
def _check_broadcast_shape(weight, shape, device, name):
    """An element-wise weight: a constant tensor broadcasting to ``shape`` without enlarging it
    (its values are checked by the operator)."""
    if weight is None:
        return
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(weight).__name__}")
    check_constant(weight, name)
    check_tensor(weight, name)
    if weight.device != device:
        raise ValueError(f"{name} is on {weight.device}, but input is on {device}")
    try:
        full = torch.broadcast_shapes(weight.shape, shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(weight.shape)} does not broadcast to "
                         f"{tuple(shape)}") from None
    if tuple(full) != tuple(shape):
        raise ValueError(f"{name} of shape {tuple(weight.shape)} would enlarge the result "
                         f"beyond {tuple(shape)}")


def _check_binary_target(x, target, loss_name, differentiable):
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        raise TypeError(f"target must be a floating-point tensor of 0/1 (or soft) labels, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    check_same_device(x, target, "input", "target")
    if target.shape != x.shape:
        raise ValueError(f"target has shape {tuple(target.shape)}, but input has shape "
                         f"{tuple(x.shape)}; {loss_name} needs them equal")
    if not differentiable and target.requires_grad:
        raise ValueError(f"target requires grad, but {loss_name} does not differentiate its "
                         "targets; pass target.detach()")


def _elementwise(x, target, reduction, kernel, engine):
    """Shared operator body of the binary losses: both paths and the reduction.
    Returns (value, gradient scale of the reduction, grad in the input's shape and dtype or None)."""
    check_unit_interval(target.detach(), "target")
    n = float(x.numel())
    scale = grad_scale(reduction, n)
    xd, td = x.detach(), target.detach()
    if _engine.uses_kernels(xd):
        x_np, _ = numpy_block(xd)
        t_np, _ = numpy_block(td)
        loss, g = kernel(x_np, t_np, scale)
        # 0-d inputs may come back as NumPy scalars: np.asarray keeps torch.from_numpy happy
        loss = torch.from_numpy(np.asarray(loss, dtype=np.float64))
        g = torch.from_numpy(np.asarray(g)) if g is not None else None
    else:
        loss, g = engine(xd, td, scale)
    value = reduce(loss.reshape(-1), reduction, n, x.dtype, tuple(x.shape))
    return value, scale, (g.reshape(x.shape).to(x.dtype).contiguous() if g is not None else None)


@custom_op("crossent::binary_cross_entropy_with_logits", mutates_args=())
def _bce_with_logits(input: Tensor, target: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor],
                     reduction: str, label_smoothing: float, need_input: bool,
                     need_target: bool) -> tuple[Tensor, Tensor, Tensor]:
    opts = BinaryOptions.checked(reduction=reduction, label_smoothing=label_smoothing, weight=host(weight),
                                 pos_weight=host(pos_weight), shape=tuple(input.shape))
    t_opts = tensor_options(opts, input.device)
    value, scale, g = _elementwise(
        input, target, opts.reduction,
        lambda x_np, t_np, scale: _dispatch.sigmoid_binary_cross_entropy(x_np, t_np, opts, scale, need_input),
        lambda xd, td, scale: _engine.sigmoid_binary_cross_entropy(xd, td, t_opts, scale, need_input))
    g_t = (_engine.binary_target_grad(input.detach(), t_opts, scale).to(target.dtype).contiguous()
           if need_target else empty_grad(target))
    return value, (g if need_input else empty_grad(input)), g_t


@_bce_with_logits.register_fake
def _(input, target, weight, pos_weight, reduction, label_smoothing, need_input, need_target):
    return (_value_like(input, reduction, tuple(input.shape)), _grad_like(input, need_input),
            _grad_like(target, need_target))


_BCE_WITH_LOGITS_OP = torch.ops.crossent.binary_cross_entropy_with_logits.default
register_loop_vmap(_BCE_WITH_LOGITS_OP)


@custom_op("crossent::sigmoid_focal_loss", mutates_args=())
def _sigmoid_focal(input: Tensor, target: Tensor, alpha: Optional[float], gamma: float, reduction: str,
                   need_input: bool) -> tuple[Tensor, Tensor]:
    opts = BinaryOptions.checked(reduction=reduction, gamma=gamma, alpha=alpha)
    value, _, g = _elementwise(
        input, target, opts.reduction,
        lambda x_np, t_np, scale: _dispatch.sigmoid_focal(x_np, t_np, opts, scale, need_input),
        lambda xd, td, scale: _engine.sigmoid_focal(xd, td, opts, scale, need_input))
    return value, (g if need_input else empty_grad(input))


@_sigmoid_focal.register_fake
def _(input, target, alpha, gamma, reduction, need_input):
    return _value_like(input, reduction, tuple(input.shape)), _grad_like(input, need_input)


_SIGMOID_FOCAL_LOSS_OP = torch.ops.crossent.sigmoid_focal_loss.default
register_loop_vmap(_SIGMOID_FOCAL_LOSS_OP)


_BCEWithLogits = fused_function("binary_cross_entropy_with_logits", _BCE_WITH_LOGITS_OP, 2,
                                _formulas.binary_cross_entropy_with_logits)
_SigmoidFocal = fused_function("sigmoid_focal_loss", _SIGMOID_FOCAL_LOSS_OP, 1, _formulas.sigmoid_focal)


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
    opts = checked_options(BinaryOptions, reduction=reduction, label_smoothing=label_smoothing)
    x = check_tensor(input, "input")
    _check_binary_target(x, target, "binary_cross_entropy_with_logits", differentiable=True)
    _check_broadcast_shape(weight, x.shape, x.device, "weight")
    _check_broadcast_shape(pos_weight, x.shape, x.device, "pos_weight")
    return apply_fused(_BCEWithLogits, _BCE_WITH_LOGITS_OP, 2, x, target, weight, pos_weight, opts.reduction,
                       opts.label_smoothing)


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
    off = alpha is None or (not isinstance(alpha, bool) and isinstance(alpha, (int, float)) and alpha < 0)
    opts = checked_options(BinaryOptions, reduction=reduction, gamma=gamma, alpha=None if off else alpha)
    x = check_tensor(inputs, "inputs")
    _check_binary_target(x, targets, "sigmoid_focal_loss", differentiable=False)
    return apply_fused(_SigmoidFocal, _SIGMOID_FOCAL_LOSS_OP, 1, x, targets, opts.alpha, opts.gamma,
                       opts.reduction)
