"""The autograd Function shared by the fused losses, and small tensor helpers.

Each loss is a ``torch.library`` operator (namespace ``crossent``) that computes its value
and its gradients in one pass; the autograd Function around it (:func:`fused_function`) keeps
the gradients and ``backward`` only multiplies them by the upstream gradient (a scalar for the
"mean" and "sum" reductions, one value per row for "none"). The operators have fake (meta)
kernels, so ``torch.compile`` and ``torch.export`` trace them without running them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from .. import _checks

__all__: list[str] = []  # private module


_SAVED = object()  # marks an argument kept by save_for_backward


def fused_function(name, op, n_diff, reference=None, row_dim=None):
    """The autograd.Function of ``name``'s registered fused-loss operator ``op``.

    ``op(*args, *needs)`` takes its ``n_diff`` differentiable tensors first and one
    needs-gradient flag per differentiable tensor last, and returns ``(value, *grads)``: the
    gradient of the value with respect to each differentiable tensor (already scaled by the
    reduction), an empty tensor where not needed. ``backward`` multiplies a kept gradient by
    the upstream one (unsqueezed at ``row_dim(args)`` when the value has one entry per row and
    the gradient one per class). Under ``create_graph=True`` (and ``torch.func.grad``, which
    differentiates the backward pass) it instead differentiates ``reference(*args)``, the
    loss in differentiable torch operations, so second derivatives are exact; without a
    reference it raises.
    """

    def forward(*args):
        return op(*args)

    def setup_context(ctx, inputs, output):
        slots, tensors = [], []
        for a in inputs[:-n_diff]:
            if isinstance(a, torch.Tensor):
                slots.append(_SAVED)
                tensors.append(a)
            else:
                slots.append(a)
        ctx.slots = slots
        ctx.row_dim = None if row_dim is None else row_dim(inputs)
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the kept-gradient outputs
        ctx.save_for_backward(*tensors, *output[1:])

    def backward(ctx, grad_value, *_):
        if grad_value is None:  # gradients are not materialised: the value was not used
            return (None,) * (len(ctx.slots) + n_diff)
        saved = list(ctx.saved_tensors)
        n_args = sum(1 for s in ctx.slots if s is _SAVED)
        tensors, kept = iter(saved[:n_args]), saved[n_args:]
        args = [next(tensors) if s is _SAVED else s for s in ctx.slots]
        needs = ctx.needs_input_grad[:n_diff]
        if torch.is_grad_enabled():
            grads = _differentiate(name, reference, args, needs, grad_value)
        else:
            go = grad_value
            if go.dim() > 0 and ctx.row_dim is not None:
                go = go.unsqueeze(ctx.row_dim)
            unit = _is_unit(grad_value)  # the usual loss.backward(): no multiplication
            grads = [None if not need else g if unit else g * go.to(g.dtype)
                     for g, need in zip(kept, needs)]
        return (*grads, *(None,) * len(ctx.slots))  # options, then the needs flags

    return type(f"Fused_{name}", (torch.autograd.Function,), {
        "generate_vmap_rule": True,
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })


def _is_unit(grad_value):
    """Whether an eager scalar upstream gradient is exactly 1 (never under tracing)."""
    return (grad_value.dim() == 0 and not torch.compiler.is_compiling()
            and not torch._C._functorch.is_functorch_wrapped_tensor(grad_value)
            and bool(grad_value == 1))


def _differentiate(name, reference, args, needs, grad_value):
    """Gradients of ``reference(*args)`` with a graph, for second derivatives."""
    if reference is None:
        raise RuntimeError(
            f"{name} has no second derivative: backward was called with create_graph=True (or "
            "under a torch.func transform); its fused gradient is not itself differentiable. "
            "Compute the loss without crossent's fused head for higher-order gradients")
    wrt = [a for a, need in zip(args, needs) if need]
    with torch.enable_grad():
        value = reference(*args)
    grads = iter(torch.autograd.grad(value, wrt, grad_value, create_graph=True, allow_unused=True))
    out = []
    for a, need in zip(args, needs):
        g = next(grads) if need else None
        out.append(torch.zeros_like(a) if need and g is None else g)
    return out


def apply_fused(function, op, n_diff, *args):
    """The value of ``op`` on ``args``: through ``function`` (autograd) when a differentiable
    argument requires a gradient, else the operator alone (no gradient computed)."""
    needs = tuple(bool(torch.is_grad_enabled() and isinstance(a, torch.Tensor) and a.requires_grad)
                  for a in args[:n_diff])
    if not any(needs):
        return op(*args, *needs)[0]
    return function.apply(*args, *needs)[0]


def register_loop_vmap(op):
    """``torch.vmap`` over ``op``: one call per batch entry, outputs stacked on dim 0 (a loss's
    rows are independent, so this is exact; it replaces PyTorch's warning fallback)."""
    def rule(info, in_dims, *args):
        outs = [op(*(a if d is None else a.select(d, i) for a, d in zip(args, in_dims)))
                for i in range(info.batch_size)]
        return tuple(torch.stack(o) for o in zip(*outs)), (0,) * len(outs[0])
    torch.library.register_vmap(op, rule)


def empty_grad(x):
    """The placeholder an operator returns for a gradient that was not asked for."""
    return x.new_empty(0)


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


def host(weight):
    """A weight tensor's values as a float64 NumPy array (for the options' checks and the
    compiled kernels), or None."""
    return None if weight is None else weight.detach().to("cpu", torch.float64).numpy()


def tensor_options(options, device):
    """``options`` (an object of :mod:`crossent._options`) with its weight arrays as float64
    tensors on ``device``: the form the torch engine and the Triton kernels read."""
    arrays = {f.name: torch.tensor(getattr(options, f.name), device=device)
              for f in dataclasses.fields(options) if isinstance(getattr(options, f.name), np.ndarray)}
    return dataclasses.replace(options, **arrays) if arrays else options


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


@torch.compiler.assume_constant_result
def check_scalar(value, name, low=None, high=None, low_open=False):
    """:func:`crossent._checks.check_scalar` on a Python number, which ``torch.compile`` runs
    at trace time and keeps as a constant (it would otherwise trace NumPy's checks as
    tensors and break the graph on them)."""
    return _checks.check_scalar(value, name, low=low, high=high, low_open=low_open)


@torch.compiler.assume_constant_result
def checked_options(family, **options):
    """``family.checked(**options)``: a loss family's options object (:mod:`crossent._options`)
    validated by its one constructor, without weights, which ``torch.compile`` runs at trace time
    and keeps as a constant (the weights, tensors, are checked by the operators)."""
    return family.checked(**options)


def head_options(logit_scale, sample_weight, normalizer, batch_shape, device):
    """Validated fused-head options: (logit_scale float, sample_weight tensor or None,
    normalizer 0-d tensor or None). Values inside tensors are checked by the operators."""
    scale = check_scalar(logit_scale, "logit_scale", low=0.0, low_open=True)
    if sample_weight is not None:
        check_tensor(sample_weight, "sample_weight")
        check_constant(sample_weight, "sample_weight")
        if sample_weight.device != device:
            raise ValueError(f"sample_weight is on {sample_weight.device}, but the loss's inputs are "
                             f"on {device}")
        if tuple(sample_weight.shape) != tuple(batch_shape):
            raise ValueError(f"sample_weight holds one weight per row and must have shape "
                             f"{tuple(batch_shape)} (the target's), got {tuple(sample_weight.shape)}")
    if normalizer is not None:
        if isinstance(normalizer, torch.Tensor):
            if normalizer.numel() != 1:
                raise ValueError(f"normalizer must be one number, got a tensor of shape "
                                 f"{tuple(normalizer.shape)}")
            check_constant(normalizer, "normalizer")
            normalizer = normalizer.detach().reshape(()).to(device)
        else:
            normalizer = torch.tensor(check_scalar(normalizer, "normalizer", low=0.0, low_open=True),
                                      dtype=torch.float64, device=device)
    return scale, sample_weight, normalizer


def row_weights(sample_weight):
    """The per-row weights as a float64 NumPy vector (finite, non-negative), or None."""
    if sample_weight is None:
        return None
    s = sample_weight.detach().to("cpu", torch.float64).numpy()
    return _checks.check_broadcast_weight(s, s.shape, "sample_weight").reshape(-1)


def mean_denominator(reduction, denominator, normalizer):
    """What "mean" divides by: ``normalizer`` when given (checked positive), else ``denominator``."""
    if normalizer is None or reduction != "mean":
        return denominator
    value = float(normalizer)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"normalizer must be a positive finite number, got {value!r}")
    return value


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
