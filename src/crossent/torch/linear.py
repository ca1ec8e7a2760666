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

import numbers
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor
from torch.library import custom_op

from .. import _dispatch
from .._options import SoftmaxCEOptions
from . import _engine
from ._autograd import (
    check_same_device,
    check_tensor,
    checked_options,
    _is_unit,
    default_chunk_rows,
    empty_grad,
    grad_scale,
    head_options,
    labels_numpy,
    mean_denominator,
    reduce,
    row_weights,
)

__all__ = ["linear_cross_entropy", "linear_cross_entropy_with_stats"]


def check_linear(hidden, weight, target, bias, chunk_size, weight_name="weight", bias_name="bias"):
    """Shapes, dtypes and devices of a fused linear cross-entropy (before anything runs)."""
    check_tensor(hidden, "hidden")
    check_tensor(weight, weight_name)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    for other, name in ((weight, weight_name), (target, "target"), (bias, bias_name)):
        if other is not None:
            check_same_device(hidden, other, "hidden", name)
    if hidden.dim() < 1 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden (..., D) and {weight_name} (V, D) must share D; got hidden of shape "
                         f"{tuple(hidden.shape)} and {weight_name} of shape {tuple(weight.shape)}")
    if weight.shape[0] == 0:
        raise ValueError(f"{weight_name} has no rows: the vocabulary is empty")
    if bias is not None:
        check_tensor(bias, bias_name)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"{bias_name} must have shape ({weight.shape[0]},) (one entry per row of "
                             f"{weight_name}), got {tuple(bias.shape)}")
    if tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"target must have shape {tuple(hidden.shape[:-1])} (hidden's shape "
                         f"without the last dim), got {tuple(target.shape)}")
    return check_chunk_size(chunk_size)


def check_chunk_size(chunk_size):
    """None, or a positive integer (not a float that would be truncated)."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    return int(chunk_size)


class LinearProblem:
    """Inputs of a (possibly vocabulary-sharded) fused linear cross-entropy, as the operator
    sees them (shapes already checked by :func:`check_linear`).

    ``hidden`` ``(..., D)`` becomes ``(N, D)`` rows; ``weight`` ``(V, D)`` holds this
    process's classes ``[vocab_start, vocab_start + V)``; targets are global class indices.
    The logits, their gradient and the accumulated gradients are in the compute dtype (float64,
    or float32 for float32/float16/bfloat16: float16/bfloat16 weight gradients accumulate in
    float32 across the chunks and are cast once). The operands of the products are too, except
    float16/bfloat16 on a GPU, which stay in their dtype for the tensor cores (products formed
    in float32 by cuBLAS, see :class:`_Products`). ``options``, a
    :class:`~crossent._options.SoftmaxCEOptions` without class weights, is what the kernels read.
    """

    def __init__(self, hidden, weight, target, bias, options, chunk, logit_scale=1.0, sample_weight=None,
                 normalizer=None, vocab_start=0, vocab_size=None, chunk_vocab=None):
        self.options = options
        self.reduction, self.ignore_index = options.reduction, options.ignore_index
        self.logit_scale = logit_scale
        self.out_dtype = hidden.dtype
        self.batch_shape = tuple(hidden.shape[:-1])
        self.vocab_start = int(vocab_start)
        self.local_vocab = weight.shape[0]
        total = self.vocab_start + self.local_vocab if vocab_size is None else vocab_size
        cd = self.cd = _engine.compute_dtype(hidden.dtype)
        od = hidden.dtype if _low_precision_on_gpu(hidden, weight) else cd  # the operands' dtype
        self.hidden, self.weight = hidden, weight
        self.h = hidden.detach().reshape(-1, hidden.shape[-1]).to(od).contiguous()
        self.w = weight.detach().to(od).contiguous()
        self.b = None if bias is None else bias.detach().to(cd).contiguous()
        self.bias_dtype = None if bias is None else bias.dtype
        n = self.h.shape[0]
        # the chunking depends only on N and chunk_vocab (the widest slice of the group), so
        # every rank of a vocabulary-parallel group runs the same number of chunks
        width = self.local_vocab if chunk_vocab is None else chunk_vocab
        self.chunk = default_chunk_rows(n, width, cd.itemsize) if chunk is None else chunk
        self.y = labels_numpy(target, total, self.ignore_index).reshape(-1)
        counted = self.y != self.ignore_index if self.ignore_index is not None else np.ones(n, bool)
        self.s_np = row_weights(sample_weight)
        row_w = counted.astype(np.float64) if self.s_np is None else np.where(counted, self.s_np, 0.0)
        self.denominator = mean_denominator(self.reduction, float(np.sum(row_w)), normalizer)
        device = self.h.device
        self.sample_weight = None if self.s_np is None else torch.from_numpy(self.s_np).to(device)
        self.counted = torch.from_numpy(counted).to(device)
        local = self.y - self.vocab_start
        owned = counted & (local >= 0) & (local < self.local_vocab)
        self.owned = torch.from_numpy(owned).to(device)
        self.y_local = torch.from_numpy(np.where(owned, local, 0)).to(device)

    def run(self, need_h, need_w, need_b, scale, row_scale=None, shard_hooks=None, stats=None):
        """One pass over the row chunks: per-row losses and the requested gradients.

        ``scale`` multiplies every gradient; ``row_scale`` (N,) multiplies each row's (as do the
        sample weights). ``shard_hooks`` = (all_max, all_sum) combines statistics across
        vocabulary shards (None on one process, where CPU tensors use the compiled kernel).
        ``stats`` = (lse, entropy, predicted) (N,) tensors are filled from each chunk's logits.
        Returns (loss float64 (N,), grad_h, grad_w, grad_b, owned_count or None).
        """
        if self.sample_weight is not None:
            row_scale = self.sample_weight if row_scale is None else row_scale * self.sample_weight
        h, w, b, cd = self.h, self.w, self.b, self.cd
        n = h.shape[0]
        need_any = need_h or need_w or need_b
        use_kernel = shard_hooks is None and _engine.uses_kernels(h)
        loss = torch.empty(n, dtype=torch.float64, device=h.device)
        owned_count = None if shard_hooks is None else torch.empty(n, dtype=torch.float64, device=h.device)
        grad_h = torch.empty(h.shape, dtype=cd, device=h.device) if need_h else None
        grad_w = torch.zeros(w.shape, dtype=cd, device=h.device) if need_w else None
        grad_b = torch.zeros(w.shape[0], dtype=cd, device=h.device) if need_b else None
        buffer = torch.empty((min(self.chunk, n), w.shape[0]), dtype=cd, device=h.device)
        products = _Products(h, w, b, min(self.chunk, n), cd)
        for start in range(0, n, self.chunk):
            sl = slice(start, min(start + self.chunk, n))
            logits = buffer[: sl.stop - sl.start]
            products.logits(h[sl], logits)
            if self.logit_scale != 1.0:
                logits.mul_(self.logit_scale)
            if stats is not None:
                _chunk_stats(logits, self.options.softcap, [t[sl] for t in stats])
            if use_kernel:
                arr = logits.numpy()
                rows_loss, _ = _dispatch.softmax_ce_index(
                    arr, self.y[sl], self.options, scale * self.logit_scale, need_any,
                    out=arr)  # the gradient overwrites the logits
                loss[sl] = torch.from_numpy(rows_loss)
            else:
                all_max, all_sum = shard_hooks or (_engine._identity, _engine._identity)
                loss[sl], _, count = _engine.softmax_ce_index_rows(
                    logits, self.y_local[sl], self.owned[sl], self.counted[sl], self.options,
                    scale * self.logit_scale, need_any, out=logits, all_max=all_max, all_sum=all_sum)
                if owned_count is not None:
                    owned_count[sl] = count
            if self.sample_weight is not None:  # l_n s_n, 0 for a weight of 0 even beside inf
                s_c = self.sample_weight[sl]
                loss[sl] = torch.where(s_c == 0, 0.0, loss[sl] * s_c)
            if not need_any:
                continue
            g = logits
            if row_scale is not None:
                g.mul_(row_scale[sl].to(g.dtype).unsqueeze(1))
            products.backward(g, h[sl], None if grad_h is None else grad_h[sl], grad_w, grad_b)
        return loss, grad_h, grad_w, grad_b, owned_count

    def value(self, loss):
        return reduce(loss, self.reduction, self.denominator, self.out_dtype, self.batch_shape)

    def grads_out(self, grad_h, grad_w, grad_b):
        """Gradients in the shapes and dtypes of hidden, weight and bias (empty placeholders
        for those not computed); float32 accumulators of float16/bfloat16 cast once, here."""
        empty = self.hidden.new_empty
        return (empty(0) if grad_h is None else grad_h.reshape(self.hidden.shape).to(self.hidden.dtype),
                empty(0) if grad_w is None else grad_w.to(self.weight.dtype),
                empty(0) if grad_b is None else grad_b.to(self.bias_dtype))


def _chunk_stats(logits, softcap, out):
    """lse, entropy and argmax of each row of a chunk of logits (softcapped as the loss sees
    them): H = lse - sum_c p_c z_c, with p_c z_c = 0 for masked classes (p_c = 0)."""
    lse, entropy, predicted = out
    z = logits if softcap is None else torch.where(logits == -torch.inf, logits,
                                                   softcap * torch.tanh(logits / softcap))
    row_lse = torch.logsumexp(z, dim=1)
    p = torch.exp(z - row_lse.unsqueeze(1))
    lse.copy_(row_lse)
    entropy.copy_(row_lse - torch.where(p > 0, p * z, 0.0).sum(dim=1))
    predicted.copy_(z.argmax(dim=1))


def _low_precision_on_gpu(hidden, weight):
    """float16/bfloat16 operands on a GPU: their products run on the tensor cores."""
    low = (torch.float16, torch.bfloat16)
    return hidden.device.type == "cuda" and hidden.dtype in low and weight.dtype == hidden.dtype


def _mm_f32(a, b, out):
    """out = a @ b in float32 from float16/bfloat16 operands (cuBLAS accumulates in float32)."""
    return torch.ops.aten.mm.dtype_out(a, b, torch.float32, out=out)


def _addmm_f32_(acc, a, b):
    """acc += a @ b, ``acc`` float32, ``a``/``b`` float16/bfloat16 (one rounding per product)."""
    return torch.ops.aten.addmm.dtype_out(acc, a, b, torch.float32, out=acc)


class _Products:
    """The chunk's three products with ``weight`` (``h_c W^T``, ``G W``, ``G^T h_c``), laid out
    for the BLAS at hand.

    On the CPU (MKL), a product with few rows on the left and the long vocabulary on the right
    (``h_c @ W.T``, ``G @ W``) runs ~30% slower than the same product transposed, with the
    vocabulary on the left. ``layout`` chooses what the CPU does about it:

    * ``"transposed"`` (linear cross-entropy's chunks): the logits are formed as
      ``W[v] @ h_c.T`` in blocks of 2048 classes and copied transposed into the buffer (a
      2048 x chunk scratch), and ``grad_h[c]`` as ``(W.T @ G.T).T`` (a D x chunk scratch);
    * ``"columns"`` (the fused distillation's chunks of under 128 rows, where the 2048-class
      blocks of the transposed layout are too long for the short side): the logits are formed
      directly into the buffer's columns, ``h_c @ W[v].T`` in blocks of 512 classes; on two
      threads 86 x 1024 x 32768 logits cost 1.1-1.2x a full-size product this way against
      1.7-1.8x as one product;
    * ``"direct"``: one product each.

    Elsewhere the products are formed directly.

    Operands in float16/bfloat16 (on a GPU, see :func:`_low_precision_on_gpu`) are multiplied
    in their dtype into float32 results: the logits and the gradients are float32, and the
    chunk's logit gradient is rounded once to the operands' dtype (a chunk-sized scratch) for
    the two backward products, as autograd rounds the gradient of a bfloat16 ``F.linear``.
    """

    BLOCK = 2048
    COLUMNS = 512

    def __init__(self, h, w, b, rows, cd, backward=True, layout="transposed"):
        """``rows``: the most rows of a chunk; ``cd``: the compute dtype; ``backward``: whether
        the backward products will run; ``layout``: the CPU layout (see the class)."""
        self.w, self.b = w, b
        self.mixed = h.dtype != cd
        self.low = (torch.empty((rows, w.shape[0]), dtype=h.dtype, device=h.device)
                    if self.mixed and backward else None)
        cpu = h.device.type == "cpu" and not self.mixed
        self.transposed = cpu and layout == "transposed"
        self.columns = cpu and layout == "columns"
        if self.transposed:
            self.scratch = torch.empty(max(self.BLOCK, h.shape[1]) * rows, dtype=h.dtype, device=h.device)

    def backward(self, g, h_c, grad_h, grad_w, grad_b):
        """The chunk's share of the gradients from its logit gradient ``g``: ``grad_h = G W``
        (the chunk's rows), ``grad_w += G^T h_c``, ``grad_b += sum_n G_n``; None: not asked."""
        if grad_b is not None:
            grad_b.add_(g.sum(dim=0))
        if self.mixed:  # rounded once to the operands' dtype for the tensor cores
            g = self.low[: g.shape[0]].copy_(g)
        if grad_h is not None:
            self._grad_hidden(g, grad_h)
        if grad_w is not None:
            if self.mixed:
                _addmm_f32_(grad_w, g.t(), h_c)
            else:
                grad_w.addmm_(g.t(), h_c)

    def logits(self, h_c, out):
        w, b = self.w, self.b
        if self.mixed:
            _mm_f32(h_c, w.t(), out)
            if b is not None:
                out.add_(b)
            return
        if self.columns:  # out[:, v] = h_c W[v]^T (+ b[v]), written in place (ldc = V)
            for start in range(0, w.shape[0], self.COLUMNS):
                v = slice(start, start + self.COLUMNS)
                if b is None:
                    torch.mm(h_c, w[v].t(), out=out[:, v])
                else:
                    torch.addmm(b[v], h_c, w[v].t(), out=out[:, v])
            return
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

    def _grad_hidden(self, g, out):
        if self.mixed:
            _mm_f32(g, self.w, out)
            return
        if not self.transposed:
            torch.mm(g, self.w, out=out)
            return
        n, d = out.shape
        part = self.scratch[: d * n].view(d, n)
        torch.mm(self.w.t(), g.t(), out=part)
        out.copy_(part.t())


class LinearStats(NamedTuple):
    r"""Per-row statistics of the logits from the pass that computes the loss (detached).

    ``lse``: :math:`\log\sum_c e^{z_c}`; ``entropy``: :math:`-\sum_c p_c\log p_c` of the
    predicted distribution; ``predicted``: :math:`\arg\max_c z_c` (int64), all of the
    target's shape, ``z`` the logits as the loss sees them (scaled, soft-capped).
    """

    lse: Tensor
    entropy: Tensor
    predicted: Tensor


def _no_finish(gh, gw, gb):
    return gh, gw, gb


def linear_forward(problem, need_h, need_w, need_b, with_stats, shard_hooks=None, finish=_no_finish):
    """Operator body: (value, grad_h, grad_w, grad_b, lse, entropy, predicted), each gradient or
    statistic an empty placeholder where not asked for. With ``reduction="none"`` no gradient
    is formed here (backward recomputes the chunks with the upstream gradient per row)."""
    h = problem.h
    n = h.shape[0]
    stats = None
    if with_stats:
        stats = (torch.empty(n, dtype=problem.cd, device=h.device), torch.empty(n, dtype=problem.cd, device=h.device),
                 torch.empty(n, dtype=torch.int64, device=h.device))
    if problem.reduction == "none":
        need_h = need_w = need_b = False
    scale = grad_scale(problem.reduction, problem.denominator)
    loss, gh, gw, gb, count = problem.run(need_h, need_w, need_b, scale, shard_hooks=shard_hooks, stats=stats)
    if count is not None:
        check_owned(problem, count)
    gh, gw, gb = finish(gh, gw, gb)
    grads = problem.grads_out(gh, gw, gb)
    if stats is None:
        stats = (h.new_empty(0, dtype=problem.cd), h.new_empty(0, dtype=problem.cd),
                 torch.empty(0, dtype=torch.int64, device=h.device))
    else:
        lse, entropy, predicted = stats
        stats = (lse.reshape(problem.batch_shape), entropy.reshape(problem.batch_shape),
                 (predicted + problem.vocab_start).reshape(problem.batch_shape))
    return (problem.value(loss), *grads, *stats)


def linear_backward(problem, grad_output, need_h, need_w, need_b, shard_hooks=None, finish=_no_finish):
    """reduction="none": the chunks again, each row's gradient times its upstream gradient."""
    row_scale = grad_output.reshape(-1).to(device=problem.h.device, dtype=problem.cd)
    _, gh, gw, gb, _ = problem.run(need_h, need_w, need_b, 1.0, row_scale=row_scale, shard_hooks=shard_hooks)
    return problem.grads_out(*finish(gh, gw, gb))


def linear_fake(hidden, weight, bias, reduction, with_stats, need_h, need_w, need_b):
    """Fake outputs of :func:`linear_forward` (shapes, dtypes) for tracing."""
    scalar = reduction != "none"
    batch = tuple(hidden.shape[:-1])
    cd = _engine.compute_dtype(hidden.dtype)

    def like(t, need):
        return torch.empty(t.shape, dtype=t.dtype, device=t.device) if need and scalar else empty_grad(hidden)
    stats = (hidden.new_empty(batch if with_stats else (0,), dtype=cd),
             hidden.new_empty(batch if with_stats else (0,), dtype=cd),
             hidden.new_empty(batch if with_stats else (0,), dtype=torch.int64))
    return (hidden.new_empty(batch if not scalar else ()), like(hidden, need_h), like(weight, need_w),
            like(bias, need_b) if bias is not None else empty_grad(hidden), *stats)


def linear_backward_fake(hidden, weight, bias, need_h, need_w, need_b):
    def like(t, need):
        return torch.empty(t.shape, dtype=t.dtype, device=t.device) if need else empty_grad(hidden)
    grad_bias = like(bias, need_b) if bias is not None else empty_grad(hidden)
    return like(hidden, need_h), like(weight, need_w), grad_bias


def linear_function(name, op, backward_op):
    """The autograd.Function of a fused linear operator ``op(hidden, weight, bias, target,
    ignore_index, reduction, ..., need_h, need_w, need_b)``; ``backward_op(grad_output, <op's
    arguments>)`` recomputes the gradients for reduction="none". No second derivative: a
    backward with a graph raises."""

    def forward(*args):
        return op(*args)

    def setup_context(ctx, inputs, output):
        ctx.slots = [None if isinstance(a, torch.Tensor) else a for a in inputs]
        ctx.tensor_pos = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the kept-gradient outputs
        ctx.save_for_backward(*(inputs[i] for i in ctx.tensor_pos), *output[1:4])

    def backward(ctx, grad_value, *_):
        if grad_value is None:  # gradients are not materialised: the value was not used
            return (None,) * len(ctx.slots)
        if torch.is_grad_enabled():
            raise RuntimeError(
                f"{name} has no second derivative: backward was called with create_graph=True "
                "(or under a torch.func transform), and the fused head's gradient is not itself "
                "differentiable. Use crossent.torch.cross_entropy on the logits for higher-order "
                "gradients")
        saved = ctx.saved_tensors
        args = list(ctx.slots)
        for i, t in zip(ctx.tensor_pos, saved):
            args[i] = t
        needs = ctx.needs_input_grad[:3]
        if args[5] == "none":
            grads = backward_op(grad_value, *args)
        else:
            unit = _is_unit(grad_value)
            grads = [g if unit else g * grad_value.to(g.dtype) for g in saved[len(ctx.tensor_pos):]]
        grads = [g if need else None for g, need in zip(grads, needs)]
        return (*grads, *(None,) * (len(args) - 3))

    return type(f"Fused_{name}", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })


def apply_linear(function, op, hidden, weight, bias, *args):
    """The outputs of ``op``: through ``function`` when hidden, weight or bias needs a gradient."""
    needs = tuple(bool(torch.is_grad_enabled() and t is not None and t.requires_grad)
                  for t in (hidden, weight, bias))
    if not any(needs):
        return op(hidden, weight, bias, *args, *needs)
    return function.apply(hidden, weight, bias, *args, *needs)


def check_owned(problem, owned_count):
    """Every counted target must live in exactly one shard (same verdict on every rank)."""
    bad = problem.counted & (owned_count != 1)
    if bool(bad.any()):
        i = int(torch.argmax(bad.to(torch.uint8)))
        raise IndexError(f"target[{i}] = {int(problem.y[i])} is in no rank's vocabulary slice "
                         "(outside [0, V) for the V classes of the whole group)")


def _problem(hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss, softcap,
             chunk_size, logit_scale, sample_weight, normalizer):
    options = SoftmaxCEOptions.checked(reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                                       softcap=softcap, ignore_index=ignore_index)
    return LinearProblem(hidden, weight, target, bias, options, chunk_size, logit_scale, sample_weight,
                         normalizer)


@custom_op("crossent::linear_cross_entropy", mutates_args=())
def _linear_op(hidden: Tensor, weight: Tensor, bias: Optional[Tensor], target: Tensor,
               ignore_index: Optional[int], reduction: str, label_smoothing: float, z_loss: float,
               softcap: Optional[float], chunk_size: Optional[int], logit_scale: float,
               sample_weight: Optional[Tensor], normalizer: Optional[Tensor], with_stats: bool,
               need_hidden: bool, need_weight: bool, need_bias: bool) -> tuple[Tensor, Tensor, Tensor, Tensor,
                                                                              Tensor, Tensor, Tensor]:
    problem = _problem(hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss,
                       softcap, chunk_size, logit_scale, sample_weight, normalizer)
    return linear_forward(problem, need_hidden, need_weight, need_bias, with_stats)


@_linear_op.register_fake
def _(hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss, softcap, chunk_size,
      logit_scale, sample_weight, normalizer, with_stats, need_hidden, need_weight, need_bias):
    return linear_fake(hidden, weight, bias, reduction, with_stats, need_hidden, need_weight, need_bias)


_LINEAR_OP = torch.ops.crossent.linear_cross_entropy.default


@custom_op("crossent::linear_cross_entropy_backward", mutates_args=())
def _linear_backward_op(grad_output: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
                        target: Tensor, ignore_index: Optional[int], reduction: str, label_smoothing: float,
                        z_loss: float, softcap: Optional[float], chunk_size: Optional[int], logit_scale: float,
                        sample_weight: Optional[Tensor], normalizer: Optional[Tensor], with_stats: bool,
                        need_hidden: bool, need_weight: bool, need_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    problem = _problem(hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss,
                       softcap, chunk_size, logit_scale, sample_weight, normalizer)
    return linear_backward(problem, grad_output, need_hidden, need_weight, need_bias)


@_linear_backward_op.register_fake
def _(grad_output, hidden, weight, bias, target, ignore_index, reduction, label_smoothing, z_loss, softcap,
      chunk_size, logit_scale, sample_weight, normalizer, with_stats, need_hidden, need_weight, need_bias):
    return linear_backward_fake(hidden, weight, bias, need_hidden, need_weight, need_bias)


_LINEAR_BACKWARD_OP = torch.ops.crossent.linear_cross_entropy_backward.default


_LinearCrossEntropy = linear_function("linear_cross_entropy", _LINEAR_OP, _LINEAR_BACKWARD_OP)


def _linear(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss, softcap,
            chunk_size, logit_scale, sample_weight, normalizer, with_stats):
    o = checked_options(SoftmaxCEOptions, reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                        softcap=softcap, ignore_index=ignore_index)
    chunk = check_linear(hidden, weight, target, bias, chunk_size)
    scale, sw, norm = head_options(logit_scale, sample_weight, normalizer, target.shape, hidden.device)
    return apply_linear(_LinearCrossEntropy, _LINEAR_OP, hidden, weight, bias, target, o.ignore_index,
                        o.reduction, o.label_smoothing, o.z_loss, o.softcap, chunk, scale, sw, norm, with_stats)


def linear_cross_entropy(hidden, weight, target, bias=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, *, z_loss=0.0, softcap=None, chunk_size=None,
                         logit_scale=1.0, sample_weight=None, normalizer=None):
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
        Rows per chunk, a positive integer. Default: N/16 rows (the working buffer is 1/16
        of the N x V logits), or as many as fill 4 MiB of logits if that is more.
    logit_scale, sample_weight, normalizer
        As in :func:`crossent.torch.cross_entropy` ("mean" divides by the sum of the sample
        weights of the rows not ignored, or by ``normalizer``).

    Returns
    -------
    Tensor
        A scalar of hidden's dtype, or the per-row losses for "none".

    Notes
    -----
    With "mean" or "sum" every gradient is computed in the forward pass and held until
    ``backward`` (which scales them by the upstream gradient): the memory of the gradients,
    not of the logits. With "none" the forward pass keeps nothing and ``backward`` recomputes
    the logits chunk by chunk, each row's gradient scaled by its own upstream gradient. The
    loss is the operator ``torch.ops.crossent.linear_cross_entropy`` (``torch.compile`` and
    ``torch.export`` trace it); it has no second derivative: a ``create_graph=True`` backward
    raises. float16/bfloat16 inputs are computed in float32 (``weight`` is
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
    return _linear(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss,
                   softcap, chunk_size, logit_scale, sample_weight, normalizer, False)[0]


def linear_cross_entropy_with_stats(hidden, weight, target, bias=None, ignore_index=-100,
                                    reduction="mean", label_smoothing=0.0, *, z_loss=0.0, softcap=None,
                                    chunk_size=None, logit_scale=1.0, sample_weight=None,
                                    normalizer=None):
    r""":func:`linear_cross_entropy` plus per-row statistics of the logits from the same pass.

    Parameters
    ----------
    hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss, softcap, \
chunk_size, logit_scale, sample_weight, normalizer
        As in :func:`linear_cross_entropy`.

    Returns
    -------
    loss : Tensor
        As :func:`linear_cross_entropy` returns it (differentiable).
    stats : LinearStats
        ``lse`` (:math:`\log\sum_c e^{z_c}`), ``entropy`` (:math:`-\sum_c p_c \log p_c`) and
        ``predicted`` (:math:`\arg\max_c z_c`), each of the target's shape, detached: O(N)
        memory, computed from each chunk of logits before it is overwritten by its gradient.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import linear_cross_entropy_with_stats
    >>> hidden, weight = torch.eye(2), torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> loss, stats = linear_cross_entropy_with_stats(hidden, weight, torch.tensor([0, 1]))
    >>> stats.predicted.tolist(), round(stats.lse[1].item(), 6)  # row 1: logits (0, 0)
    ([0, 0], 0.693147)
    """
    out = _linear(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, chunk_size, logit_scale, sample_weight, normalizer, True)
    return out[0], LinearStats(*out[4:])
