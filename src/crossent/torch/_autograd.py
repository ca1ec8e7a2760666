"""The autograd Function shared by the fused losses, and small tensor helpers.

A fused loss computes its value and its gradients in one pass, in ``forward``; ``backward``
only multiplies the saved gradients by the upstream gradient (a scalar for the "mean" and
"sum" reductions, one value per row for "none").
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _checks

__all__: list[str] = []  # private module


class FusedLoss(torch.autograd.Function):
    """``FusedLoss.apply(compute, row_dim, *inputs)``.

    ``compute(needs_grad)`` gets one flag per input and returns ``(value, grads)``, ``grads``
    holding for each input its gradient (already scaled by the reduction) or None. For
    reduction "none", ``row_dim`` is where the per-row upstream gradient gets a unit
    dimension to broadcast over the classes (None when value and gradient share a shape).
    """

    @staticmethod
    def forward(ctx, compute, row_dim, *inputs):
        value, grads = compute(ctx.needs_input_grad[2:])
        ctx.row_dim = row_dim
        ctx.save_for_backward(*grads)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = []
        unit = grad_output.dim() == 0 and bool(grad_output == 1)  # the usual loss.backward()
        for g in ctx.saved_tensors:
            if g is None:
                grads.append(None)
            elif unit:
                grads.append(g)
            else:
                go = grad_output
                if go.dim() > 0 and ctx.row_dim is not None:
                    go = go.unsqueeze(ctx.row_dim)
                grads.append(g * go.to(g.dtype))
        return (None, None, *grads)


def fused(compute, row_dim, *inputs):
    """``FusedLoss.apply``, except that with autograd off (``torch.no_grad``, inference mode)
    no gradient is computed at all: evaluation pays for the value only."""
    if not torch.is_grad_enabled():
        return compute((False,) * len(inputs))[0]
    return FusedLoss.apply(compute, row_dim, *inputs)


def check_tensor(x, name):
    """A floating-point tensor (float16/bfloat16/float32/float64)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_same_device(x, other, name_x, name_other):
    if other.device != x.device:
        raise ValueError(f"{name_other} is on {other.device}, but {name_x} is on {x.device}")


def check_constant(t, name):
    """Weights are constants: crossent does not differentiate them."""
    if t is not None and isinstance(t, torch.Tensor) and t.requires_grad:
        raise ValueError(f"{name} requires grad, but crossent treats {name} as a constant; "
                         f"pass {name}.detach()")


def class_weight(weight, num_classes, device, name="weight"):
    """Validated per-class weights: (float64 NumPy array, float64 tensor on ``device``), or Nones."""
    if weight is None:
        return None, None
    check_constant(weight, name)
    w = weight.detach().to("cpu", torch.float64).numpy() if isinstance(weight, torch.Tensor) else weight
    w_np = _checks.check_class_weight(w, num_classes, name)
    return w_np, torch.from_numpy(w_np).to(device)


def labels_numpy(target, num_classes, ignore_index, name="target"):
    """Class indices validated on the host (positions named in ``target``'s shape), as int64."""
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {target.dtype}")
    return _checks.check_labels(target.detach().cpu().numpy(), num_classes, ignore_index, name)


def check_unit_interval(t, name):
    """Raise ValueError naming the first entry of ``t`` outside [0, 1] (NaN included)."""
    bad = ~((t >= 0) & (t <= 1))
    if bool(bad.any()):
        flat = int(torch.argmax(bad.reshape(-1).to(torch.uint8)))
        pos = np.unravel_index(flat, tuple(t.shape))
        raise ValueError(f"{name}[{', '.join(str(int(i)) for i in pos)}] = "
                         f"{float(t.reshape(-1)[flat])!r} is outside [0, 1]")


def numpy_block(x):
    """``x`` as a C-contiguous float32/float64 NumPy array sharing memory when possible.

    Returns ``(array, private)``: ``private`` is True when a copy was made (so it may be
    overwritten, e.g. by the gradient).
    """
    x = x.detach()
    if x.dtype in (torch.float32, torch.float64) and x.is_contiguous():
        return x.numpy(), False
    target = torch.float64 if x.dtype == torch.float64 else torch.float32
    return x.to(target, memory_format=torch.contiguous_format, copy=True).numpy(), True


def scalars(reduction, label_smoothing, z_loss=0.0, softcap=None):
    """Validated options: (reduction, eps, z_loss, softcap or None)."""
    reduction = _checks.check_reduction(reduction)
    eps = _checks.check_scalar(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    zl = _checks.check_scalar(z_loss, "z_loss", low=0.0)
    cap = None if softcap is None else _checks.check_scalar(softcap, "softcap", low=0.0, low_open=True)
    return reduction, eps, zl, cap


def grad_scale(reduction, denominator):
    """The factor that turns each row's own gradient into the reduced loss's gradient."""
    if reduction == "mean":
        return 1.0 / denominator if denominator > 0 else 0.0
    return 1.0


def reduce(loss, reduction, denominator, dtype, shape):
    """Per-row float64 losses -> "none" (``shape``, ``dtype``), "sum" or "mean" (0 over nothing)."""
    if reduction == "none":
        return loss.reshape(shape).to(dtype)
    total = loss.sum()
    if reduction == "mean":
        total = total / denominator if denominator > 0 else torch.zeros_like(total)
    return total.to(dtype)


def default_chunk_rows(n_rows, n_cols, itemsize):
    """Rows per chunk for the (rows x n_cols) working buffer of the fused linear losses.

    N/16 rows: the buffer is 1/16 of the full logits, which leaves room within 1/8 of them
    for the BLAS's packing buffers (about 3 MiB at the SPEC 7 shape on 2 threads) and the
    kernel's own scratch. Never fewer rows than fill 4 MiB (small batches run in one or a few
    chunks), and never more than N.
    """
    floor_rows = max(1, (4 << 20) // max(1, n_cols * itemsize))
    return max(1, min(n_rows, max(math.ceil(n_rows / 16), floor_rows)))
