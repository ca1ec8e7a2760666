"""Vocabulary-parallel cross-entropy and distillation over a ``torch.distributed`` process group.

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

The distillation loss (:func:`vocab_parallel_distillation_loss`) needs one more all-reduce: the
maxima (MAX), then the sums of exponentials of both models and the few numbers of the hard
term and of the centre r* (SUM), then the divergence's own sums (SUM), at most 14 N values in
all; its gradient needs none either.
"""

from __future__ import annotations

import zlib
from typing import Optional

import numpy as np
import torch
import torch.distributed
from torch import Tensor
from torch.library import custom_op

from .._options import SoftmaxCEOptions
from . import _engine
from ._autograd import (
    apply_fused,
    check_same_device,
    check_tensor,
    checked_options,
    empty_grad,
    fused_function,
    grad_scale,
    head_options,
    labels_numpy,
    mean_denominator,
    reduce,
    row_weights,
)
from .distill import _check_logit_pair as _distill_pair
from .distill import _check_options as _distill_options
from .distill import _check_target as _distill_target
from .distill import _kind as _distill_kind
from .distill import _torch_rows as _divergence_rows
from .linear import (
    LinearProblem,
    apply_linear,
    check_linear,
    linear_backward,
    linear_backward_fake,
    linear_fake,
    linear_forward,
    linear_function,
)

__all__ = ["vocab_parallel_cross_entropy", "vocab_parallel_distillation_loss",
           "vocab_parallel_linear_cross_entropy"]

_CHUNK_ELEMENTS = 1 << 22

# Process groups by the integer key the operators receive (a schema cannot hold a group).
_GROUPS: dict[int, object] = {0: None}

_ERRORS = {"TypeError": TypeError, "ValueError": ValueError, "IndexError": IndexError}

_FIELDS = ("the batch shape (rows)", "the dtype", "ignore_index", "reduction", "label_smoothing",
           "z_loss", "softcap", "logit_scale", "normalizer", "sample_weight (checksum)",
           "target (checksum)", "chunk_size", "the hidden size D", "which inputs need gradients")


def _group_key(group):
    for key, g in _GROUPS.items():
        if g is group:
            return key
    key = len(_GROUPS)
    _GROUPS[key] = group
    return key


def _check_initialised():
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError("vocabulary-parallel losses need an initialised torch.distributed "
                           "process group (torch.distributed.init_process_group)")


def _checksum(t):
    """A CRC-32 of a tensor's values (identical tensors give identical sums on every rank)."""
    if t is None:
        return None
    arr = t.detach().to("cpu", torch.float64 if t.is_floating_point() else torch.int64).contiguous()
    return zlib.crc32(arr.numpy().tobytes())


def _signature(batch_shape, dtype, ignore_index, reduction, eps, z_loss, softcap, logit_scale,
               normalizer, sample_weight, target, chunk_size=None, hidden_size=None, needs=None):
    """What every rank must pass identically, in the order of ``_FIELDS``."""
    return (tuple(batch_shape), str(dtype), ignore_index, reduction, eps, z_loss, softcap, logit_scale,
            None if normalizer is None else float(normalizer), _checksum(sample_weight),
            _checksum(target), chunk_size, hidden_size, needs)


def _agree(group, error, signature, width, vocab_start, fields=_FIELDS):
    """The one collective before any other: every rank's error (if its checks failed),
    signature, width and ``vocab_start`` go to every rank (a small all_gather), and every
    rank reaches the same verdict: the same exception, or this rank's (vocab_start, V total,
    the widest slice). Slices tile [0, V): given ``vocab_start`` on every rank, they must
    neither overlap nor leave a gap; without it, offsets are the running sum of the widths
    in rank order."""
    world = torch.distributed.get_world_size(group)
    table = [None] * world
    torch.distributed.all_gather_object(table, (error, signature, width, vocab_start), group=group)
    for r, (err, *_) in enumerate(table):
        if err is not None:
            kind, message = err
            raise _ERRORS.get(kind, RuntimeError)(f"rank {r} of the vocabulary-parallel group: {message}")
    for r in range(1, world):
        for name, mine, theirs in zip(fields, table[0][1], table[r][1]):
            if mine != theirs:
                raise ValueError(f"vocabulary-parallel ranks disagree on {name}: rank 0 passed "
                                 f"{mine!r}, rank {r} passed {theirs!r}; every rank must pass the same")
    widths = [t[2] for t in table]
    starts = [t[3] for t in table]
    given = [s is not None for s in starts]
    if any(given) and not all(given):
        raise ValueError(f"vocab_start was given on ranks {[r for r in range(world) if given[r]]} but "
                         f"not on ranks {[r for r in range(world) if not given[r]]}: pass it on every "
                         "rank or on none")
    if not any(given):
        starts = [int(x) for x in np.cumsum([0] + widths[:-1])]
    position = 0
    for r in sorted(range(world), key=lambda r: starts[r]):
        if starts[r] != position:
            what = "overlaps the slice before it" if starts[r] < position else "leaves a gap before it"
            raise ValueError(f"the vocabulary slices must tile [0, V) without gaps or overlaps, but rank "
                             f"{r}'s slice [{starts[r]}, {starts[r] + widths[r]}) {what} (the slices "
                             f"below it end at {position})")
        position += widths[r]
    rank = torch.distributed.get_rank(group)
    return starts[rank], position, max(widths)


def _fail_everywhere(group, exc):
    """This rank's arguments failed their checks: tell every rank (which then all raise)."""
    _agree(group, (type(exc).__name__, str(exc)), None, 0, None)


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


@custom_op("crossent::vocab_parallel_cross_entropy", mutates_args=())
def _vp_ce_op(local_logits: Tensor, target: Tensor, ignore_index: Optional[int], reduction: str,
              label_smoothing: float, z_loss: float, softcap: Optional[float], logit_scale: float,
              sample_weight: Optional[Tensor], normalizer: Optional[Tensor], group_key: int,
              vocab_start: Optional[int], need_input: bool) -> tuple[Tensor, Tensor]:
    group = _GROUPS[group_key]
    x = local_logits
    local = x.shape[-1]
    batch_shape = tuple(x.shape[:-1])
    signature = _signature(batch_shape, x.dtype, ignore_index, reduction, label_smoothing, z_loss, softcap,
                           logit_scale, normalizer, sample_weight, target, needs=need_input)
    start, total, widest = _agree(group, None, signature, local, vocab_start)
    options = SoftmaxCEOptions.checked(reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                                       softcap=softcap, ignore_index=ignore_index)
    y = labels_numpy(target, total, ignore_index).reshape(-1)  # same targets, same verdict everywhere
    counted_np = y != ignore_index if ignore_index is not None else np.ones(y.shape, bool)
    s_np = row_weights(sample_weight)
    row_w = counted_np.astype(np.float64) if s_np is None else np.where(counted_np, s_np, 0.0)
    denominator = mean_denominator(reduction, float(np.sum(row_w)), normalizer)
    scale = grad_scale(reduction, denominator) * logit_scale
    counted = torch.from_numpy(counted_np).to(x.device)
    y_t = torch.from_numpy(y).to(x.device) - start
    owned = counted & (y_t >= 0) & (y_t < local)
    y_t = torch.where(owned, y_t, 0)
    rows = x.detach().reshape(-1, local)
    if logit_scale != 1.0:
        rows = rows.to(_engine.compute_dtype(x.dtype)) * logit_scale
    n = rows.shape[0]
    loss = torch.empty(n, dtype=torch.float64, device=x.device)
    count = torch.empty(n, dtype=torch.float64, device=x.device)
    g = torch.empty(rows.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need_input else None
    all_max, all_sum = _hooks(group)
    step = max(1, _CHUNK_ELEMENTS // widest)  # the same chunks on every rank
    for i in range(0, n, step):
        sl = slice(i, min(i + step, n))
        loss[sl], _, count[sl] = _engine.softmax_ce_index_rows(
            rows[sl], y_t[sl], owned[sl], counted[sl], options, scale, need_input,
            out=g[sl] if need_input else None, all_max=all_max, all_sum=all_sum)
    bad = counted & (count != 1)
    if bool(bad.any()):
        i = int(torch.argmax(bad.to(torch.uint8)))
        raise IndexError(f"target[{i}] = {int(y[i])} is in no rank's vocabulary slice")
    if s_np is not None:  # l_n s_n, 0 for a weight of 0 even beside inf
        s = torch.from_numpy(s_np).to(x.device)
        loss = torch.where(s == 0, 0.0, loss * s)
        if g is not None:
            g.mul_(s.to(g.dtype).unsqueeze(1))
    value = reduce(loss, reduction, denominator, x.dtype, batch_shape)
    return value, (g.reshape(x.shape).to(x.dtype) if need_input else empty_grad(x))


@_vp_ce_op.register_fake
def _(local_logits, target, ignore_index, reduction, label_smoothing, z_loss, softcap, logit_scale,
      sample_weight, normalizer, group_key, vocab_start, need_input):
    x = local_logits
    value = x.new_empty(tuple(x.shape[:-1]) if reduction == "none" else ())
    return value, (torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_input else empty_grad(x))


_VP_CE_OP = torch.ops.crossent.vocab_parallel_cross_entropy.default


_VocabParallelCrossEntropy = fused_function("vocab_parallel_cross_entropy", _VP_CE_OP, 1,
                                            row_dim=lambda args: args[0].dim() - 1)


def vocab_parallel_cross_entropy(local_logits, target, group=None, ignore_index=-100,
                                 reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                                 vocab_start=None, logit_scale=1.0, sample_weight=None, normalizer=None):
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
        The first global class of this rank's slice, given on every rank or on none. Default:
        the sum of the widths of the lower ranks' slices (ranks may hold different numbers of
        classes).
    logit_scale, sample_weight, normalizer
        As in :func:`crossent.torch.cross_entropy`.

    Returns
    -------
    Tensor
        The loss (identical on every rank), a scalar or per-row for "none".

    Raises
    ------
    IndexError
        A target that is not ``ignore_index`` and lies in no rank's slice (raised on every rank).
    ValueError, TypeError
        Bad arguments on any rank, ranks disagreeing on the batch shape, the options or the
        targets, or slices that do not tile [0, V): the same error on every rank, raised
        before any collective that could hang.

    Notes
    -----
    Communication for the loss: one small all_gather of every rank's arguments' summary
    (shapes, options, checksums of targets and weights, slice widths), then two all-reduces of
    at most 7 N numbers in all (see the module documentation); none for the gradient. Runs on
    any backend (gloo on CPU, NCCL on GPU).

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
    _check_initialised()
    try:
        o = checked_options(SoftmaxCEOptions, reduction=reduction, label_smoothing=label_smoothing,
                            z_loss=z_loss, softcap=softcap, ignore_index=ignore_index)
        x = check_tensor(local_logits, "local_logits")
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
        check_same_device(x, target, "local_logits", "target")
        if x.dim() < 1 or x.shape[-1] == 0:
            raise ValueError(f"local_logits must have classes on its last dim, got shape {tuple(x.shape)}")
        batch_shape = tuple(x.shape[:-1])
        if tuple(target.shape) != batch_shape:
            raise ValueError(f"target must have shape {batch_shape} (local_logits' shape without the "
                             f"class dim), got {tuple(target.shape)}")
        start = _check_vocab_start(vocab_start)
        scale, sw, norm = head_options(logit_scale, sample_weight, normalizer, batch_shape, x.device)
    except (TypeError, ValueError) as exc:
        _fail_everywhere(group, exc)
        raise  # pragma: no cover - _fail_everywhere raises
    return apply_fused(_VocabParallelCrossEntropy, _VP_CE_OP, 1, x, target, o.ignore_index, o.reduction,
                       o.label_smoothing, o.z_loss, o.softcap, scale, sw, norm, _group_key(group), start)


def _check_vocab_start(vocab_start):
    if vocab_start is None:
        return None
    if isinstance(vocab_start, bool) or not isinstance(vocab_start, int) or vocab_start < 0:
        raise ValueError(f"vocab_start must be a non-negative integer or None, got {vocab_start!r}")
    return int(vocab_start)


def _vp_problem(hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss, softcap,
                chunk_size, logit_scale, sample_weight, normalizer, group_key, vocab_start, needs):
    """The agreement across the group, then this rank's LinearProblem and hooks."""
    group = _GROUPS[group_key]
    signature = _signature(tuple(hidden.shape[:-1]), hidden.dtype, ignore_index, reduction, label_smoothing,
                           z_loss, softcap, logit_scale, normalizer, sample_weight, target, chunk_size,
                           hidden.shape[-1], needs)
    start, total, widest = _agree(group, None, signature, weight.shape[0], vocab_start)
    options = SoftmaxCEOptions.checked(reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                                       softcap=softcap, ignore_index=ignore_index)
    problem = LinearProblem(hidden, weight, target, bias, options, chunk_size, logit_scale, sample_weight,
                            normalizer, vocab_start=start, vocab_size=total, chunk_vocab=widest)

    def finish(grad_h, grad_w, grad_b):
        if grad_h is not None:  # hidden is replicated: its gradient sums every rank's classes
            torch.distributed.all_reduce(grad_h, op=torch.distributed.ReduceOp.SUM, group=group)
        return grad_h, grad_w, grad_b
    return problem, _hooks(group), finish


@custom_op("crossent::vocab_parallel_linear_cross_entropy", mutates_args=())
def _vp_linear_op(hidden: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor,
                  ignore_index: Optional[int], reduction: str, label_smoothing: float, z_loss: float,
                  softcap: Optional[float], chunk_size: Optional[int], logit_scale: float,
                  sample_weight: Optional[Tensor], normalizer: Optional[Tensor], group_key: int,
                  vocab_start: Optional[int], need_hidden: bool, need_weight: bool,
                  need_bias: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    # the needs agree too: with "none" they decide which ranks run the backward's collectives
    problem, hooks, finish = _vp_problem(hidden, weight, bias, target, ignore_index, reduction, label_smoothing,
                                         z_loss, softcap, chunk_size, logit_scale, sample_weight, normalizer,
                                         group_key, vocab_start, (need_hidden, need_weight, need_bias))
    return linear_forward(problem, need_hidden, need_weight, need_bias, False, shard_hooks=hooks, finish=finish)


@_vp_linear_op.register_fake
def _(hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size,
      logit_scale, sample_weight, normalizer, group_key, vocab_start, need_hidden, need_weight, need_bias):
    return linear_fake(hidden, weight, bias, reduction, False, need_hidden, need_weight, need_bias)


_VP_LINEAR_OP = torch.ops.crossent.vocab_parallel_linear_cross_entropy.default


@custom_op("crossent::vocab_parallel_linear_cross_entropy_backward", mutates_args=())
def _vp_linear_backward_op(grad_output: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
                           target: Tensor, ignore_index: Optional[int], reduction: str, label_smoothing: float,
                           z_loss: float, softcap: Optional[float], chunk_size: Optional[int],
                           logit_scale: float, sample_weight: Optional[Tensor], normalizer: Optional[Tensor],
                           group_key: int, vocab_start: Optional[int], need_hidden: bool, need_weight: bool,
                           need_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    problem, hooks, finish = _vp_problem(hidden, weight, bias, target, ignore_index, reduction, label_smoothing,
                                         z_loss, softcap, chunk_size, logit_scale, sample_weight, normalizer,
                                         group_key, vocab_start, (need_hidden, need_weight, need_bias))
    return linear_backward(problem, grad_output, need_hidden, need_weight, need_bias, shard_hooks=hooks,
                           finish=finish)


@_vp_linear_backward_op.register_fake
def _(grad_output, hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss, softcap,
      chunk_size, logit_scale, sample_weight, normalizer, group_key, vocab_start, need_hidden, need_weight,
      need_bias):
    return linear_backward_fake(hidden, weight, bias, need_hidden, need_weight, need_bias)


_VP_LINEAR_BACKWARD_OP = torch.ops.crossent.vocab_parallel_linear_cross_entropy_backward.default


_VocabParallelLinear = linear_function("vocab_parallel_linear_cross_entropy", _VP_LINEAR_OP,
                                       _VP_LINEAR_BACKWARD_OP)


def vocab_parallel_linear_cross_entropy(hidden, local_weight, target, local_bias=None, group=None,
                                        ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                                        z_loss=0.0, softcap=None, chunk_size=None, vocab_start=None,
                                        logit_scale=1.0, sample_weight=None, normalizer=None):
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
    logit_scale, sample_weight, normalizer
        As in :func:`crossent.torch.linear_cross_entropy`.
    vocab_start : int, optional
        As in :func:`vocab_parallel_cross_entropy` (default: the running sum of the widths).

    Returns
    -------
    Tensor
        The loss, identical on every rank.

    Notes
    -----
    Communication: one small all_gather that checks the ranks agree (as in
    :func:`vocab_parallel_cross_entropy`); for the loss, two all-reduces per row chunk, of at
    most 7 numbers per row in all, the same chunks on every rank (sized for the widest slice);
    for the gradient, one all-reduce of the ``(N, D)`` gradient of ``hidden``.

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
    _check_initialised()
    try:
        o = checked_options(SoftmaxCEOptions, reduction=reduction, label_smoothing=label_smoothing,
                            z_loss=z_loss, softcap=softcap, ignore_index=ignore_index)
        chunk = check_linear(hidden, local_weight, target, local_bias, chunk_size, "local_weight", "local_bias")
        start = _check_vocab_start(vocab_start)
        scale, sw, norm = head_options(logit_scale, sample_weight, normalizer, target.shape, hidden.device)
    except (TypeError, ValueError) as exc:
        _fail_everywhere(group, exc)
        raise  # pragma: no cover - _fail_everywhere raises
    return apply_linear(_VocabParallelLinear, _VP_LINEAR_OP, hidden, local_weight, local_bias, target,
                        o.ignore_index, o.reduction, o.label_smoothing, o.z_loss, o.softcap, chunk, scale, sw,
                        norm, _group_key(group), start)[0]


# ----------------------------------------------------------------------------- distillation
_DISTILL_FIELDS = ("the batch shape (rows)", "the dtype", "beta", "temperature", "hard_weight",
                   "ignore_index", "reduction", "target (checksum)", "whether the student needs a gradient")


@custom_op("crossent::vocab_parallel_distillation_loss", mutates_args=())
def _vp_distill_op(local_student_logits: Tensor, local_teacher_logits: Tensor, target: Optional[Tensor],
                   beta: float, temperature: float, hard_weight: float, ignore_index: int, reduction: str,
                   group_key: int, vocab_start: Optional[int], need_input: bool) -> tuple[Tensor, Tensor]:
    """Rows ``(N, V_local)`` of both models' logits (the public function flattens the batch)."""
    group = _GROUPS[group_key]
    x, z = local_student_logits, local_teacher_logits
    n, local = x.shape
    signature = ((n,), str(x.dtype), beta, temperature, hard_weight, ignore_index, reduction,
                 _checksum(target), need_input)
    start, total, widest = _agree(group, None, signature, local, vocab_start, _DISTILL_FIELDS)
    if target is None:
        y_t = torch.zeros(n, dtype=torch.int64, device=x.device)
        counted = torch.ones(n, dtype=torch.bool, device=x.device)
        owned = torch.zeros(n, dtype=torch.bool, device=x.device)
    else:  # the same targets everywhere (checked above): the same verdict on every rank
        y = labels_numpy(target, total, ignore_index).reshape(-1)
        counted = torch.from_numpy(y != ignore_index).to(x.device)
        y_t = torch.from_numpy(y).to(x.device) - start
        owned = counted & (y_t >= 0) & (y_t < local)
        y_t = torch.where(owned, y_t, 0)
    denominator = float(counted.sum())
    scale = grad_scale(reduction, denominator)
    kind = _distill_kind(beta)
    loss = torch.empty(n, dtype=torch.float64, device=x.device)
    count = torch.empty(n, dtype=torch.float64, device=x.device)
    g = torch.empty(x.shape, dtype=_engine.compute_dtype(x.dtype), device=x.device) if need_input else None
    all_max, all_sum = _hooks(group)
    step = max(1, _CHUNK_ELEMENTS // widest)  # the same chunks on every rank
    for i in range(0, n, step):
        sl = slice(i, min(i + step, n))
        loss[sl], g_sl, count[sl] = _divergence_rows(
            x.detach()[sl], z.detach()[sl], y_t[sl], counted[sl], kind, beta, temperature, hard_weight,
            scale, need_input, owned=owned[sl], all_max=all_max, all_sum=all_sum)
        if need_input:
            g[sl] = g_sl
    if target is not None:
        bad = counted & (count != 1)
        if bool(bad.any()):
            i = int(torch.argmax(bad.to(torch.uint8)))
            raise IndexError(f"target[{i}] = {int(target.reshape(-1)[i])} is in no rank's vocabulary slice")
    value = reduce(loss, reduction, denominator, x.dtype, (n,))
    return value, (g.to(x.dtype) if need_input else empty_grad(x))


@_vp_distill_op.register_fake
def _(local_student_logits, local_teacher_logits, target, beta, temperature, hard_weight, ignore_index,
      reduction, group_key, vocab_start, need_input):
    x = local_student_logits
    value = x.new_empty((x.shape[0],) if reduction == "none" else ())
    return value, (torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_input else empty_grad(x))


_VP_DISTILL_OP = torch.ops.crossent.vocab_parallel_distillation_loss.default


_VocabParallelDistillation = fused_function("vocab_parallel_distillation_loss", _VP_DISTILL_OP, 1,
                                            row_dim=lambda args: 1)


def vocab_parallel_distillation_loss(local_student_logits, local_teacher_logits, target=None, group=None, *,
                                     beta=0.5, temperature=1.0, hard_weight=0.0, ignore_index=-100,
                                     reduction="mean", vocab_start=None):
    r"""Distillation loss between a student's and a teacher's logits whose classes are split
    across the ranks of ``group``.

    The value (and, on each rank, the gradient of its slice of the student's logits) equals
    :func:`crossent.torch.distillation_loss` on the concatenated logits, with the same
    ``beta`` (TRL's generalised JSD; 0 the forward KL, 1 the reverse KL), ``temperature``
    (both models, no :math:`T^2` factor), ``hard_weight``, ``ignore_index`` and reductions.
    Both models' slices hold the same classes on a rank.

    Parameters
    ----------
    local_student_logits : Tensor
        This rank's student logits ``(..., V_local)``: classes on the LAST dim.
    local_teacher_logits : Tensor
        This rank's teacher logits, the same shape (a constant: no gradient reaches it).
    target : Tensor, optional
        Global class indices of shape ``local_student_logits.shape[:-1]``, the same on every
        rank: rows equal to ``ignore_index`` count for nothing, and with ``hard_weight > 0``
        the cross-entropy of the raw student logits is mixed in.
    group : ProcessGroup, optional
        The group sharing the vocabulary (default: the world).
    beta, temperature, hard_weight, ignore_index, reduction
        As in :func:`crossent.torch.distillation_loss`.
    vocab_start : int, optional
        As in :func:`vocab_parallel_cross_entropy` (default: the running sum of the widths).

    Returns
    -------
    Tensor
        The loss (identical on every rank), a scalar or per-row for "none".

    Raises
    ------
    IndexError
        A target that is not ``ignore_index`` and lies in no rank's slice (on every rank).
    ValueError, TypeError
        Bad arguments on any rank, ranks disagreeing on the batch shape, the options or the
        targets, or slices that do not tile [0, V): the same error on every rank, raised
        before any collective that could hang.
    RuntimeError
        Under ``create_graph=True``: the fused gradient has no second derivative here.

    Notes
    -----
    Communication for the loss: the small all_gather that checks the ranks agree, then three
    all-reduces per chunk of rows (see the module documentation): O(N) numbers whatever the
    vocabulary; none for the gradient. Row sums are float64; the rows' log-probabilities are
    formed in the compute dtype of the logits (float32 for float16/bfloat16).

    Examples
    --------
    >>> import tempfile, torch, torch.distributed as dist
    >>> from crossent.torch import distillation_loss, vocab_parallel_distillation_loss
    >>> store = tempfile.NamedTemporaryFile(delete=False).name  # a one-process group, no network
    >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    >>> student, teacher = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    >>> loss = vocab_parallel_distillation_loss(student, teacher, beta=0.1, temperature=2.0)
    >>> bool(torch.allclose(loss, distillation_loss(student, teacher, beta=0.1, temperature=2.0)))
    True
    >>> dist.destroy_process_group()
    """
    _check_initialised()
    try:
        x, z = local_student_logits, local_teacher_logits  # the same classes on this rank
        _distill_pair(x, z, "local_student_logits", "local_teacher_logits")
        beta, temperature, hard_weight, ignore_index, reduction = _distill_options(
            beta, temperature, hard_weight, ignore_index, reduction, target)
        batch_shape = tuple(x.shape[:-1])
        y = _distill_target(target, batch_shape, x.device)
        start = _check_vocab_start(vocab_start)
    except (TypeError, ValueError) as exc:
        _fail_everywhere(group, exc)
        raise  # pragma: no cover - _fail_everywhere raises
    local = x.shape[-1]
    value = apply_fused(_VocabParallelDistillation, _VP_DISTILL_OP, 1, x.reshape(-1, local),
                        z.detach().reshape(-1, local), y, beta, temperature, hard_weight, ignore_index,
                        reduction, _group_key(group), start)
    return value.reshape(batch_shape) if reduction == "none" else value
