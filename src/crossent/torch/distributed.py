"""Vocabulary-parallel cross-entropy over a ``torch.distributed`` process group.

Each rank holds a contiguous slice of the classes: by default rank ``r`` of a group of ``R``
ranks, with ``V_local`` local classes, holds ``[r * V_local, (r + 1) * V_local)`` (every rank
the same number of classes, the layout of Megatron-LM's vocabulary-parallel embedding); pass
``vocab_start`` for any other contiguous split. Targets are global class indices, the same on
every rank, and every rank gets the same loss.

Only per-row statistics cross the group for the loss: one all-reduce (MAX) of the row
maximum m, and one all-reduce (SUM, float64) of a few per-row numbers: the sum of
exponentials s = sum_c exp(z_c - m), the target's logit z_y, its owner count (to check that
the target exists) and, with label smoothing, the number of unmasked classes and
sum_c (m - z_c). That is at most 7 N values, whatever the vocabulary size. The gradient of
the local logits needs no communication; the fused linear loss all-reduces the gradient of
the (replicated) hidden states.
"""

from __future__ import annotations

import torch
import torch.distributed

from .. import _checks
from . import _engine
from ._autograd import (
    check_same_device,
    check_tensor,
    fused,
    grad_scale,
    labels_numpy,
    reduce,
    scalars,
)
from .linear import LinearProblem, apply_linear

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_linear_cross_entropy"]

_CHUNK_ELEMENTS = 1 << 22


def _hooks(group):
    """(all_max, all_sum): in-place all-reduces of per-row statistics over ``group``."""
    def all_max(t):
        t = t.contiguous()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=group)
        return t

    def all_sum(t):
        t = t.contiguous()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM, group=group)
        return t
    return all_max, all_sum


def _layout(local_classes, group, vocab_start):
    """(vocab_start, total classes or None when the split is explicit)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError("vocabulary-parallel losses need an initialised torch.distributed "
                           "process group (torch.distributed.init_process_group)")
    if vocab_start is not None:
        return int(_checks.check_scalar(vocab_start, "vocab_start", low=0)), None
    rank = torch.distributed.get_rank(group)
    world = torch.distributed.get_world_size(group)
    return rank * local_classes, world * local_classes


def vocab_parallel_cross_entropy(local_logits, target, group=None, ignore_index=-100,
                                 reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                                 vocab_start=None):
    r"""Softmax cross-entropy of logits whose classes are split across the ranks of ``group``.

    The value (and, on each rank, the gradient of its slice of the logits) equals
    :func:`crossent.torch.cross_entropy` on the concatenated logits, with the same
    ``ignore_index``, ``label_smoothing``, ``z_loss``, ``softcap`` and reductions. Per row,
    with m the global maximum: :math:`\operatorname{lse} = m + \log\sum_r\sum_{c\in r}
    e^{z_c - m}`, the inner sums local to each rank.

    Parameters
    ----------
    local_logits : Tensor
        This rank's logits ``(..., V_local)``: classes on the LAST dim (as in Megatron-LM).
    target : Tensor
        Global class indices of shape ``local_logits.shape[:-1]``, the same on every rank.
    group : ProcessGroup, optional
        The group sharing the vocabulary (default: the world).
    ignore_index : int or None, default -100
        Targets equal to it count for nothing.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by the number of rows not ignored (0 when there are none).
    label_smoothing, z_loss, softcap
        As in :func:`crossent.torch.cross_entropy`.
    vocab_start : int, optional
        The first global class of this rank's slice. Default ``rank * V_local``.

    Returns
    -------
    Tensor
        The loss (identical on every rank), a scalar or per-row for "none".

    Raises
    ------
    IndexError
        A target that is not ``ignore_index`` and lies in no rank's slice (raised on every rank).

    Notes
    -----
    Communication for the loss: two all-reduces of at most 7 N numbers in all (see the module
    documentation); none for the gradient. Runs on any backend (gloo on CPU, NCCL on GPU).

    Examples
    --------
    >>> import tempfile, torch, torch.distributed as dist
    >>> from crossent.torch import cross_entropy, vocab_parallel_cross_entropy
    >>> store = tempfile.NamedTemporaryFile(delete=False).name  # a one-process group, no network
    >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    >>> logits, target = torch.randn(4, 6), torch.tensor([0, 5, 2, -100])
    >>> bool(torch.allclose(vocab_parallel_cross_entropy(logits, target), cross_entropy(logits, target)))
    True
    >>> dist.destroy_process_group()
    """
    reduction, eps, zl, cap = scalars(reduction, label_smoothing, z_loss, softcap)
    x = check_tensor(local_logits, "local_logits")
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    check_same_device(x, target, "local_logits", "target")
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"local_logits must have classes on its last dim, got shape {tuple(x.shape)}")
    batch_shape = tuple(x.shape[:-1])
    if tuple(target.shape) != batch_shape:
        raise ValueError(f"target must have shape {batch_shape} (local_logits' shape without the "
                         f"class dim), got {tuple(target.shape)}")
    ignore_index = _checks.check_ignore_index(ignore_index)
    local = x.shape[-1]
    start, total = _layout(local, group, vocab_start)
    all_max, all_sum = _hooks(group)

    def compute(needs):
        need = needs[0]
        y = labels_numpy(target, total if total is not None else torch.iinfo(torch.int64).max,
                         ignore_index).reshape(-1)
        counted = torch.from_numpy(y != ignore_index if ignore_index is not None else y == y).to(x.device)
        y_t = torch.from_numpy(y).to(x.device) - start
        owned = counted & (y_t >= 0) & (y_t < local)
        y_t = torch.where(owned, y_t, 0)
        denominator = float(counted.sum())
        scale = grad_scale(reduction, denominator)
        rows = x.detach().reshape(-1, local)
        n = rows.shape[0]
        loss = torch.empty(n, dtype=torch.float64, device=x.device)
        count = torch.empty(n, dtype=torch.float64, device=x.device)
        g = torch.empty(rows.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need else None
        step = max(1, _CHUNK_ELEMENTS // local)
        for i in range(0, n, step):
            sl = slice(i, min(i + step, n))
            loss[sl], _, count[sl] = _engine.softmax_ce_index_rows(
                rows[sl], y_t[sl], owned[sl], counted[sl], None, eps, zl, cap, scale, need,
                out=g[sl] if need else None, all_max=all_max, all_sum=all_sum)
        bad = counted & (count != 1)
        if bool(bad.any()):
            i = int(torch.argmax(bad.to(torch.uint8)))
            raise IndexError(f"target[{i}] = {int(y[i])} is in no rank's vocabulary slice")
        value = reduce(loss, reduction, denominator, x.dtype, batch_shape)
        return value, (None if g is None else g.reshape(x.shape).to(x.dtype),)
    return fused(compute, x.dim() - 1, x)


def vocab_parallel_linear_cross_entropy(hidden, local_weight, target, local_bias=None, group=None,
                                        ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                                        z_loss=0.0, softcap=None, chunk_size=None, vocab_start=None):
    r"""Fused linear cross-entropy with the output projection's rows split across ranks.

    Every rank holds the same ``hidden`` ``(..., D)`` and targets, and its own slice
    ``local_weight`` ``(V_local, D)`` (and ``local_bias``) of the classes. The loss equals
    :func:`crossent.torch.linear_cross_entropy` of the full weight, and so do the gradients:
    each rank gets the gradient of its slice of the weight and bias, and the full gradient of
    ``hidden`` (summed over the group). Row chunks of the local logits live only while their
    gradient is formed, as in :func:`crossent.torch.linear_cross_entropy`.

    Parameters
    ----------
    hidden : Tensor
        Hidden states ``(..., D)``, replicated on every rank.
    local_weight : Tensor
        This rank's rows of the output projection, ``(V_local, D)``.
    target : Tensor
        Global class indices of shape ``hidden.shape[:-1]``, the same on every rank.
    local_bias : Tensor, optional
        This rank's slice of the bias, ``(V_local,)``.
    group : ProcessGroup, optional
        The group sharing the vocabulary (default: the world).
    ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size
        As in :func:`crossent.torch.linear_cross_entropy`.
    vocab_start : int, optional
        The first global class of this rank's slice. Default ``rank * V_local``.

    Returns
    -------
    Tensor
        The loss, identical on every rank.

    Notes
    -----
    Communication: for the loss, two all-reduces per row chunk, of at most 7 numbers per row
    in all; for the gradient, one all-reduce of the ``(N, D)`` gradient of ``hidden``.

    Examples
    --------
    >>> import tempfile, torch, torch.distributed as dist
    >>> from crossent.torch import linear_cross_entropy, vocab_parallel_linear_cross_entropy
    >>> store = tempfile.NamedTemporaryFile(delete=False).name  # a one-process group, no network
    >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    >>> h, w, y = torch.randn(5, 3), torch.randn(8, 3), torch.tensor([7, 0, 1, 2, 3])
    >>> bool(torch.allclose(vocab_parallel_linear_cross_entropy(h, w, y), linear_cross_entropy(h, w, y)))
    True
    >>> dist.destroy_process_group()
    """
    if not isinstance(local_weight, torch.Tensor) or local_weight.dim() != 2:
        raise ValueError("local_weight must be a 2-d tensor (V_local, D)")
    start, total = _layout(local_weight.shape[0], group, vocab_start)
    problem = LinearProblem(hidden, local_weight, target, local_bias, ignore_index, label_smoothing,
                            z_loss, softcap, reduction, chunk_size, vocab_start=start,
                            vocab_size=total if total is not None else torch.iinfo(torch.int64).max)
    hooks = _hooks(group)

    def finish(grad_h, grad_w, grad_b):
        if grad_h is not None:
            torch.distributed.all_reduce(grad_h, op=torch.distributed.ReduceOp.SUM, group=group)
        return grad_h, grad_w, grad_b
    return apply_linear(problem, hidden, local_weight, local_bias, shard_hooks=hooks, finish=finish)
