"""Fused linear cross-entropy: the loss of ``hidden @ weight.T + bias`` without the N x V logits.

Rows are processed in chunks. For each chunk the logits ``h_c @ W.T (+ b)`` are formed in one
reusable ``(chunk, V)`` buffer, the fused kernel overwrites that buffer with the gradient of
the loss with respect to those logits, and the buffer is consumed at once:
``grad_h[c] = g @ W``, ``grad_W += g.T @ h_c``, ``grad_b += g.sum(0)``. With a scalar
reduction every gradient is ready when ``forward`` returns and ``backward`` only scales it;
with ``reduction="none"`` ``backward`` runs the chunks again, each row's gradient scaled by
its own upstream gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _checks, _dispatch
from . import _engine
from ._autograd import (
    check_same_device,
    check_tensor,
    default_chunk_rows,
    fused,
    grad_scale,
    labels_numpy,
    reduce,
    scalars,
)

__all__ = ["linear_cross_entropy"]


class LinearProblem:
    """Validated inputs of a (possibly vocabulary-sharded) fused linear cross-entropy.

    ``hidden`` ``(..., D)`` becomes ``(N, D)`` rows in the compute dtype (float64, or float32
    for float32/float16/bfloat16); ``weight`` ``(V, D)`` holds this process's classes
    ``[vocab_start, vocab_start + V)``; targets are global class indices.
    """

    def __init__(self, hidden, weight, target, bias, ignore_index, label_smoothing, z_loss, softcap,
                 reduction, chunk_size, vocab_start=0, vocab_size=None):
        self.reduction, self.eps, self.z_loss, self.softcap = scalars(reduction, label_smoothing,
                                                                      z_loss, softcap)
        check_tensor(hidden, "hidden")
        check_tensor(weight, "weight")
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
        for other, name in ((weight, "weight"), (target, "target"), (bias, "bias")):
            if other is not None:
                check_same_device(hidden, other, "hidden", name)
        if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
            raise ValueError(f"hidden (..., D) and weight (V, D) must share D; got hidden of shape "
                             f"{tuple(hidden.shape)} and weight of shape {tuple(weight.shape)}")
        if weight.shape[0] == 0:
            raise ValueError("weight has no rows: the vocabulary is empty")
        if bias is not None:
            check_tensor(bias, "bias")
            if tuple(bias.shape) != (weight.shape[0],):
                raise ValueError(f"bias must have shape ({weight.shape[0]},) (one entry per row of "
                                 f"weight), got {tuple(bias.shape)}")
        if tuple(target.shape) != tuple(hidden.shape[:-1]):
            raise ValueError(f"target must have shape {tuple(hidden.shape[:-1])} (hidden's shape "
                             f"without the last dim), got {tuple(target.shape)}")
        self.ignore_index = _checks.check_ignore_index(ignore_index)
        self.out_dtype = hidden.dtype
        self.batch_shape = tuple(hidden.shape[:-1])
        self.vocab_start = int(vocab_start)
        self.local_vocab = weight.shape[0]
        total = self.vocab_start + self.local_vocab if vocab_size is None else vocab_size
        cd = _engine.compute_dtype(hidden.dtype)
        self.hidden, self.weight = hidden, weight
        self.h = hidden.detach().reshape(-1, hidden.shape[-1]).to(cd).contiguous()
        self.w = weight.detach().to(cd).contiguous()
        self.b = None if bias is None else bias.detach().to(cd).contiguous()
        n = self.h.shape[0]
        if chunk_size is None:
            self.chunk = default_chunk_rows(n, self.local_vocab, self.h.element_size())
        else:
            self.chunk = int(_checks.check_scalar(chunk_size, "chunk_size", low=1))
        self.y = labels_numpy(target, total, self.ignore_index).reshape(-1)
        counted = self.y != self.ignore_index if self.ignore_index is not None else np.ones(n, bool)
        self.denominator = float(np.count_nonzero(counted))
        device = self.h.device
        self.counted = torch.from_numpy(counted).to(device)
        local = self.y - self.vocab_start
        owned = counted & (local >= 0) & (local < self.local_vocab)
        self.owned = torch.from_numpy(owned).to(device)
        self.y_local = torch.from_numpy(np.where(owned, local, 0)).to(device)

    def run(self, need_h, need_w, need_b, scale, row_scale=None, shard_hooks=None):
        """One pass over the row chunks: per-row losses and the requested gradients.

        ``scale`` multiplies every gradient; ``row_scale`` (N,) multiplies each row's.
        ``shard_hooks`` = (all_max, all_sum) combines statistics across vocabulary shards
        (None on one process, where CPU tensors use the compiled kernel).
        Returns (loss float64 (N,), grad_h, grad_w, grad_b, owned_count or None).
        """
        h, w, b = self.h, self.w, self.b
        n = h.shape[0]
        need_any = need_h or need_w or need_b
        use_kernel = shard_hooks is None and _engine.uses_kernels(h)
        loss = torch.empty(n, dtype=torch.float64, device=h.device)
        owned_count = None if shard_hooks is None else torch.empty(n, dtype=torch.float64, device=h.device)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(w) if need_w else None
        grad_b = torch.zeros(w.shape[0], dtype=h.dtype, device=h.device) if need_b else None
        buffer = torch.empty((min(self.chunk, n), w.shape[0]), dtype=h.dtype, device=h.device)
        products = _Products(h, w, b, min(self.chunk, n))
        for start in range(0, n, self.chunk):
            sl = slice(start, min(start + self.chunk, n))
            logits = buffer[: sl.stop - sl.start]
            products.logits(h[sl], logits)
            if use_kernel:
                arr = logits.numpy()
                rows_loss, _ = _dispatch.softmax_ce_index(
                    arr, self.y[sl], None, self.ignore_index, self.eps, self.z_loss, self.softcap,
                    scale, need_any, out=arr)  # the gradient overwrites the logits
                loss[sl] = torch.from_numpy(rows_loss)
            else:
                all_max, all_sum = shard_hooks or (_engine._identity, _engine._identity)
                loss[sl], _, count = _engine.softmax_ce_index_rows(
                    logits, self.y_local[sl], self.owned[sl], self.counted[sl], None, self.eps,
                    self.z_loss, self.softcap, scale, need_any, out=logits,
                    all_max=all_max, all_sum=all_sum)
                if owned_count is not None:
                    owned_count[sl] = count
            if not need_any:
                continue
            g = logits
            if row_scale is not None:
                g.mul_(row_scale[sl].to(g.dtype).unsqueeze(1))
            if need_h:
                products.grad_hidden(g, grad_h[sl])
            if need_w:
                grad_w.addmm_(g.t(), h[sl])
            if need_b:
                grad_b.add_(g.sum(dim=0))
        return loss, grad_h, grad_w, grad_b, owned_count

    def value(self, loss):
        return reduce(loss, self.reduction, self.denominator, self.out_dtype, self.batch_shape)

    def grads_out(self, grad_h, grad_w, grad_b, bias):
        """Gradients in the shapes and dtypes of hidden, weight and bias."""
        return (None if grad_h is None else grad_h.reshape(self.hidden.shape).to(self.hidden.dtype),
                None if grad_w is None else grad_w.to(self.weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype))


class _Products:
    """The chunk's two products with ``weight``, laid out for the BLAS at hand.

    On the CPU (MKL), a product with few rows on the left and the long vocabulary on the right
    (``h_c @ W.T``, ``G @ W``) runs ~30% slower than the same product transposed, with the
    vocabulary on the left: so the logits are formed as ``W[v] @ h_c.T`` in blocks of 2048
    classes and copied transposed into the buffer (a 2048 x chunk scratch), and ``grad_h[c]``
    as ``(W.T @ G.T).T`` (a D x chunk scratch). Elsewhere the products are formed directly.
    """

    BLOCK = 2048

    def __init__(self, h, w, b, rows):
        self.w, self.b = w, b
        self.transposed = h.device.type == "cpu"
        if self.transposed:
            self.scratch = torch.empty(max(self.BLOCK, h.shape[1]) * rows, dtype=h.dtype, device=h.device)

    def logits(self, h_c, out):
        w, b = self.w, self.b
        if not self.transposed:
            torch.mm(h_c, w.t(), out=out) if b is None else torch.addmm(b, h_c, w.t(), out=out)
            return
        n = h_c.shape[0]
        for start in range(0, w.shape[0], self.BLOCK):
            stop = min(start + self.BLOCK, w.shape[0])
            part = self.scratch[: (stop - start) * n].view(stop - start, n)
            if b is None:
                torch.mm(w[start:stop], h_c.t(), out=part)
            else:
                torch.addmm(b[start:stop, None], w[start:stop], h_c.t(), out=part)
            out[:, start:stop].copy_(part.t())

    def grad_hidden(self, g, out):
        if not self.transposed:
            torch.mm(g, self.w, out=out)
            return
        n, d = out.shape
        part = self.scratch[: d * n].view(d, n)
        torch.mm(self.w.t(), g.t(), out=part)
        out.copy_(part.t())


class _LinearRowsLoss(torch.autograd.Function):
    """reduction="none": forward computes the losses only; backward runs the chunks again."""

    @staticmethod
    def forward(ctx, problem, shard_hooks, finish, hidden, weight, bias):
        loss, _, _, _, count = problem.run(False, False, False, 1.0, shard_hooks=shard_hooks)
        if count is not None:
            check_owned(problem, count)
        ctx.problem, ctx.shard_hooks, ctx.finish, ctx.bias = problem, shard_hooks, finish, bias
        ctx.save_for_backward(hidden, weight, bias)  # autograd then notices in-place changes
        return problem.value(loss)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        p = ctx.problem
        ctx.saved_tensors  # raises if hidden, weight or bias changed in place since forward
        need_h, need_w, need_b = ctx.needs_input_grad[3:]
        _, gh, gw, gb, _ = p.run(need_h, need_w, need_b, 1.0, row_scale=grad_output.reshape(-1),
                                 shard_hooks=ctx.shard_hooks)
        gh, gw, gb = ctx.finish(gh, gw, gb)
        return (None, None, None, *p.grads_out(gh, gw, gb, ctx.bias))


def _no_finish(gh, gw, gb):
    return gh, gw, gb


def apply_linear(problem, hidden, weight, bias, shard_hooks=None, finish=_no_finish):
    """The autograd entry shared by the one-process and the vocabulary-parallel losses.

    ``finish(grad_h, grad_w, grad_b)`` post-processes the gradients (the vocabulary-parallel
    loss sums grad_h over the ranks there).
    """
    if problem.reduction == "none":
        return _LinearRowsLoss.apply(problem, shard_hooks, finish, hidden, weight, bias)

    def compute(needs):
        need_h, need_w, need_b = needs[0], needs[1], bias is not None and needs[2]
        scale = grad_scale(problem.reduction, problem.denominator)
        loss, gh, gw, gb, count = problem.run(need_h, need_w, need_b, scale, shard_hooks=shard_hooks)
        if count is not None:
            check_owned(problem, count)
        gh, gw, gb = finish(gh, gw, gb)
        return problem.value(loss), problem.grads_out(gh, gw, gb, bias)
    return fused(compute, None, hidden, weight, bias)


def check_owned(problem, owned_count):
    """Every counted target must live in exactly one shard (same verdict on every rank)."""
    bad = problem.counted & (owned_count != 1)
    if bool(bad.any()):
        i = int(torch.argmax(bad.to(torch.uint8)))
        raise IndexError(f"target[{i}] = {int(problem.y[i])} is in no rank's vocabulary slice "
                         "(outside [0, V) for the V classes of the whole group)")


def linear_cross_entropy(hidden, weight, target, bias=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, *, z_loss=0.0, softcap=None, chunk_size=None):
    r"""Cross-entropy of ``hidden @ weight.T + bias`` without materialising the N x V logits.

    Equals ``cross_entropy(hidden @ weight.T + bias, target, ...)`` (:func:`cross_entropy`'s
    formula, classes = rows of ``weight``), in values and in the gradients with respect to
    ``hidden``, ``weight`` and ``bias``, but only one ``(chunk_size, V)`` block of logits
    exists at a time and it is overwritten in place by its own gradient:

    .. math:: G_c = \partial\ell/\partial Z_c,\quad \nabla_H[c] = G_c W,\quad
              \nabla_W \mathrel{+}= G_c^\top H_c,\quad \nabla_b \mathrel{+}= \textstyle\sum_n G_{c,n}

    Parameters
    ----------
    hidden : Tensor
        Hidden states ``(..., D)``.
    weight : Tensor
        Output projection ``(V, D)`` (an ``nn.Linear(D, V).weight``).
    target : Tensor
        Integer class indices of shape ``hidden.shape[:-1]``.
    bias : Tensor, optional
        Output bias ``(V,)``.
    ignore_index : int or None, default -100
        Targets equal to it count for nothing.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by the number of rows not ignored (0 when there are none).
    label_smoothing, z_loss, softcap
        As in :func:`crossent.torch.cross_entropy`.
    chunk_size : int, optional
        Rows per chunk. Default: N/16 rows (the working buffer is 1/16 of the N x V
        logits), or as many as fill 4 MiB of logits if that is more.

    Returns
    -------
    Tensor
        A scalar of hidden's dtype, or the per-row losses for "none".

    Notes
    -----
    With "mean" or "sum" every gradient is computed in the forward pass and held until
    ``backward`` (which scales them by the upstream gradient): the memory of the gradients,
    not of the logits. With "none" the forward pass keeps nothing and ``backward`` recomputes
    the logits chunk by chunk. float16/bfloat16 inputs are computed in float32 (``weight`` is
    converted once); gradients come back in each input's dtype.

    References
    ----------
    E. Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024;
    P.-L. Hsu et al., "Liger Kernel", 2024.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import linear_cross_entropy
    >>> g = torch.Generator().manual_seed(0)
    >>> hidden = torch.randn(6, 4, generator=g, requires_grad=True)
    >>> weight = torch.randn(10, 4, generator=g, requires_grad=True)
    >>> target = torch.tensor([1, 2, 3, -100, 5, 9])
    >>> loss = linear_cross_entropy(hidden, weight, target, chunk_size=4)
    >>> naive = torch.nn.functional.cross_entropy(hidden @ weight.T, target)
    >>> bool(torch.allclose(loss, naive))
    True
    >>> loss.backward()
    >>> hidden.grad.shape, weight.grad.shape
    (torch.Size([6, 4]), torch.Size([10, 4]))
    """
    problem = LinearProblem(hidden, weight, target, bias, ignore_index, label_smoothing, z_loss,
                            softcap, reduction, chunk_size)
    return apply_linear(problem, hidden, weight, bias)
