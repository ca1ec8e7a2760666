"""Compiled kernel or NumPy reference: one entry point per loss, on validated canonical blocks.

Callers (:mod:`crossent.losses`, :mod:`crossent.torch`) have already validated everything (the
options into their family's object of :mod:`crossent._options`, which each function here unpacks
into its kernel's arguments or hands to the reference) and laid the data out as C-contiguous
float32/float64 blocks — ``(N, C)`` rows for the softmax family, any shape for the element-wise
binary family — with int64 labels and float64 weights.
Each function returns ``(loss, grad)``: the per-row (per-element) losses as float64, and, when
``need_grad``, ``grad_scale`` times the gradient of each row's own loss, in the input's dtype
(``None`` otherwise). The element-wise losses take ``total=True`` to return the float64 sum of
the losses instead (the kernels then write no per-element array). Dense targets are passed to
the kernels in their own dtype when it is float32 or float64 (no conversion copy). The binary
losses and softmax cross-entropy with dense targets check that targets (and probabilities) lie
in [0, 1] here, in the kernels' own pass on the compiled path, and name the first entry
outside. The reference path computes in float64.
"""

from __future__ import annotations

import numpy as np

from . import _checks, _reference
from ._backend import kernels

__all__: list[str] = []  # private module


def _scaled(grad, grad_scale, dtype, need_grad):
    if not need_grad:
        return None
    with np.errstate(over="ignore"):  # a gradient beyond float32's range rounds to +-inf
        # np.multiply of a 0-d array gives a scalar: keep the array the contract promises
        return np.asarray(grad * grad_scale).astype(dtype, copy=False)


def _f64(a):
    """A C-contiguous float64 array (no copy when it already is one), or None."""
    return None if a is None else np.ascontiguousarray(a, dtype=np.float64)


def _i64(labels):
    return np.ascontiguousarray(labels, dtype=np.int64)


def _rows(ext_fn, x, *args, need_grad, grad_scale, out=None):
    """Call a row kernel: per-row float64 losses, and the scaled gradient when asked for (into
    ``out``, a C-contiguous buffer of x's shape and dtype, when given)."""
    x = np.ascontiguousarray(x)
    loss = np.empty(x.shape[0], dtype=np.float64)
    grad = (np.empty_like(x) if out is None else out) if need_grad else None
    ext_fn(x, *args, loss, grad, grad_scale)
    return loss, grad


def _reference_rows(loss, grad, grad_scale, dtype, need_grad, out):
    """The reference's (loss, grad) in the kernels' form, the gradient in ``out`` if given."""
    grad = _scaled(grad, grad_scale, dtype, need_grad)
    if need_grad and out is not None:
        out[...] = grad
        grad = out
    return loss, grad


def _targets(t, shape):
    """Targets of ``shape`` as a C-contiguous float32 or float64 array, copied only when their
    dtype or layout needs it (float16 and integers become float64)."""
    t = np.broadcast_to(t, shape)
    dtype = t.dtype if t.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(t, dtype=dtype)


def _check_unit(arrays):
    """Raise ValueError naming the first entry outside [0, 1] of the (name, array) pairs."""
    for name, a in arrays:
        _checks.check_unit_interval(np.asarray(a), name)


def _elementwise(ext_fn, x, targets, *args, need_grad, grad_scale, total, unit, out=None):
    """Call an element-wise kernel on flat views; results take x's shape. ``total``: return the
    float64 sum of the losses instead of the per-element losses. ``unit``: the (name, array)
    pairs that must lie in [0, 1]; the kernel counts the entries outside in the same pass, and
    when there are any the first is named (ValueError). ``out``: a C-contiguous buffer of x's
    shape and dtype, sharing no memory with the inputs, that receives the gradient."""
    x = np.asarray(x, order="C")  # not ascontiguousarray: 0-d stays 0-d
    flat = x.reshape(-1)
    t = _targets(targets, x.shape).reshape(-1)
    loss = None if total else np.empty(flat.shape[0], dtype=np.float64)
    grad = (np.empty_like(flat) if out is None else out.reshape(-1)) if need_grad else None
    s, n_bad = ext_fn(flat, t, *args, loss, grad, grad_scale)
    if n_bad:
        _check_unit(unit)
    return (s if total else loss.reshape(x.shape)), None if grad is None else grad.reshape(x.shape)


def _reference_elementwise(loss, grad, grad_scale, dtype, need_grad, total):
    """The reference's element-wise (loss, grad) in the kernels' form."""
    return (float(np.sum(loss, dtype=np.float64)) if total else loss), \
        _scaled(grad, grad_scale, dtype, need_grad)


def _broadcast(w, shape):
    """An element-wise weight broadcast to ``shape`` as a flat float64 array, or None."""
    return None if w is None else _f64(np.broadcast_to(w, shape)).reshape(-1)


def normalize_rows(x, need_out, log_space):
    """Per row of x: ``(lse, out)``, the logsumexp as float64 and (when ``need_out``) the
    softmax, or the log_softmax when ``log_space``, in x's dtype (None otherwise)."""
    ext = kernels()
    if ext is not None:
        lse = np.empty(x.shape[0], dtype=np.float64)
        out = np.empty_like(x) if need_out else None
        ext.normalize_rows(x, lse, out, log_space)
        return lse, out
    lse, out = _reference.normalize_rows(x.astype(np.float64), log_space)
    return lse, (out.astype(x.dtype, copy=False) if need_out else None)


def softmax_ce_index(x, labels, options, grad_scale, need_grad, out=None):
    """``options``: a :class:`~crossent._options.SoftmaxCEOptions`. ``out``: a C-contiguous
    buffer of x's shape and dtype for the gradient; it may be ``x`` itself (the gradient then
    overwrites the logits in place)."""
    o = options
    ext = kernels()
    if ext is not None:
        loss = np.empty(x.shape[0], dtype=np.float64)
        grad = (np.empty_like(x) if out is None else out) if need_grad else None
        ext.softmax_ce_index(x, _i64(labels), _f64(o.weight), o.ignore_index, o.label_smoothing,
                             o.z_loss, o.softcap or 0.0, loss, grad, grad_scale)
        return loss, grad
    loss, grad = _reference.softmax_cross_entropy_index(x.astype(np.float64), labels, o)
    grad = _scaled(grad, grad_scale, x.dtype, need_grad)
    if need_grad and out is not None:
        out[...] = grad
        grad = out
    return loss, grad


def softmax_ce_dense(x, targets, options, grad_scale, need_grad, out=None, unit=None):
    """``options``: as for :func:`softmax_ce_index` (``ignore_index`` unused). ``out``: as
    there, but it may not be ``x`` itself. ``unit``: a ``(name, array)`` pair, the targets as
    the caller holds them, whose entries must lie in [0, 1]; the kernel counts the entries
    outside in its own pass, and when there are any the first is named (ValueError)."""
    o = options
    ext = kernels()
    if ext is not None:
        x = np.ascontiguousarray(x)
        loss = np.empty(x.shape[0], dtype=np.float64)
        grad = (np.empty_like(x) if out is None else out) if need_grad else None
        n_bad = ext.softmax_ce_dense(x, _targets(targets, x.shape), _f64(o.weight), o.label_smoothing,
                                     o.z_loss, o.softcap or 0.0, loss, grad, grad_scale)
        if n_bad and unit is not None:
            _check_unit([unit])
        return loss, grad
    if unit is not None:
        _check_unit([unit])
    loss, grad = _reference.softmax_cross_entropy_dense(
        x.astype(np.float64), targets.astype(np.float64), o)
    return _reference_rows(loss, grad, grad_scale, x.dtype, need_grad, out)


def nll(log_probs, labels, options, grad_scale, need_grad, out=None):
    """``options``: a :class:`~crossent._options.NLLOptions`. ``out``: as for
    :func:`softmax_ce_dense`."""
    o = options
    ext = kernels()
    if ext is not None:
        return _rows(ext.nll, log_probs, _i64(labels), _f64(o.weight), o.ignore_index,
                     need_grad=need_grad, grad_scale=grad_scale, out=out)
    loss, grad = _reference.nll(log_probs.astype(np.float64), labels, o)
    return _reference_rows(loss, grad, grad_scale, log_probs.dtype, need_grad, out)


def softmax_focal(x, labels, options, grad_scale, need_grad, out=None):
    """``options``: a :class:`~crossent._options.SoftmaxFocalOptions`. ``out``: as for
    :func:`softmax_ce_dense`."""
    o = options
    ext = kernels()
    if ext is not None:
        return _rows(ext.softmax_focal, x, _i64(labels), _f64(o.alpha), o.gamma, o.ignore_index,
                     need_grad=need_grad, grad_scale=grad_scale, out=out)
    loss, grad = _reference.softmax_focal(x.astype(np.float64), labels, o)
    return _reference_rows(loss, grad, grad_scale, x.dtype, need_grad, out)


def sigmoid_binary_cross_entropy(x, targets, options, grad_scale, need_grad, total=False, out=None):
    """``options``: a :class:`~crossent._options.BinaryOptions` (weight, pos_weight,
    label_smoothing)."""
    o = options
    ext = kernels()
    if ext is not None:
        return _elementwise(ext.sigmoid_bce, x, targets, _broadcast(o.weight, x.shape),
                            _broadcast(o.pos_weight, x.shape), o.label_smoothing,
                            need_grad=need_grad, grad_scale=grad_scale, total=total,
                            unit=[("targets", targets)], out=out)
    _check_unit([("targets", targets)])
    loss, grad = _reference.sigmoid_binary_cross_entropy(
        x.astype(np.float64), targets.astype(np.float64), o)
    return _reference_elementwise(loss, grad, grad_scale, x.dtype, need_grad, total)


def binary_cross_entropy(probs, targets, options, grad_scale, need_grad, total=False, out=None):
    """``options``: a :class:`~crossent._options.BinaryOptions` (its weight)."""
    ext = kernels()
    if ext is not None:
        return _elementwise(ext.bce, probs, targets, _broadcast(options.weight, probs.shape),
                            need_grad=need_grad, grad_scale=grad_scale, total=total,
                            unit=[("targets", targets), ("probs", probs)], out=out)
    _check_unit([("targets", targets), ("probs", probs)])
    loss, grad = _reference.binary_cross_entropy(
        probs.astype(np.float64), targets.astype(np.float64), options)
    return _reference_elementwise(loss, grad, grad_scale, probs.dtype, need_grad, total)


def sigmoid_focal(x, targets, options, grad_scale, need_grad, total=False, out=None):
    """``options``: a :class:`~crossent._options.BinaryOptions` (alpha, gamma)."""
    ext = kernels()
    if ext is not None:
        return _elementwise(ext.sigmoid_focal, x, targets,
                            None if options.alpha is None else float(options.alpha), options.gamma,
                            need_grad=need_grad, grad_scale=grad_scale, total=total,
                            unit=[("targets", targets)], out=out)
    _check_unit([("targets", targets)])
    loss, grad = _reference.sigmoid_focal(x.astype(np.float64), targets.astype(np.float64), options)
    return _reference_elementwise(loss, grad, grad_scale, x.dtype, need_grad, total)


_MEASURES = {"entropy": 0, "cross_entropy": 1, "kl_divergence": 2, "js_divergence": 3}


def measure(name, p, q, axis):
    """The measure ``name`` of each row of ``p`` (and ``q``) along ``axis`` from the compiled
    kernel, which validates the rows in the same read: float64 values of the batch shape, or
    None when the kernel cannot take the case (no kernels, not float32/float64 arrays of one
    dtype and shape, an axis out of range) or any row fails its check (an entry outside
    [0, 1], a sum off 1, a KL ratio beyond the range) — the caller's NumPy path then validates
    and names the offending entry, or computes the case in float64."""
    ext = kernels()
    arrays = [p] if q is None else [p, q]
    if ext is None or not all(isinstance(a, np.ndarray) for a in arrays):
        return None
    dtype = p.dtype
    if dtype not in (np.float32, np.float64) or any(a.dtype != dtype or a.shape != p.shape
                                                    for a in arrays):
        return None
    if p.ndim == 0 or not -p.ndim <= axis < p.ndim or p.shape[axis] == 0:
        return None
    rows = [np.ascontiguousarray(np.moveaxis(a, axis, -1)).reshape(-1, p.shape[axis]) for a in arrays]
    n, c = rows[0].shape
    value, sum_p = np.empty(n), np.empty(n)
    sum_q = None if q is None else np.empty(n)
    bad = ext.measure_rows(_MEASURES[name], rows[0], None if q is None else rows[1], value,
                           sum_p, sum_q)
    tol = _checks.sum_tolerance(c, dtype)
    sums = [sum_p] if q is None else [sum_p, sum_q]
    if bad or any(np.any(np.abs(s - 1.0) > tol) for s in sums):
        return None
    return value.reshape(np.moveaxis(p, axis, -1).shape[:-1])


_DIVERGENCE_KINDS = {"forward": 0, "reverse": 1, "jsd": 2}


def softmax_divergence(x, target_x, kind, beta, temperature, hard_weight, where, labels,
                       grad_scale, need_grad, out=None):
    """Per-row ``(1 - hard_weight) D + hard_weight CE`` of ``(N, C)`` student logits ``x``
    against teacher logits ``target_x`` (same dtype), ``D`` the divergence ``kind`` ("forward",
    "reverse", "jsd") at ``temperature``, CE the cross-entropy of the raw ``x`` against
    ``labels`` (only when ``hard_weight > 0``); rows outside ``where`` (bool (N,) or None) give 0.
    ``out``: a buffer for the gradient, which may be ``x`` itself."""
    ext = kernels()
    if ext is not None:
        loss = np.empty(x.shape[0], dtype=np.float64)
        grad = (np.empty_like(x) if out is None else out) if need_grad else None
        ext.softmax_divergence(x, target_x, _DIVERGENCE_KINDS[kind], beta, temperature, hard_weight,
                               None if where is None else where.view(np.uint8),
                               None if hard_weight == 0 else _i64(labels), loss, grad, grad_scale)
        return loss, grad
    keep = np.ones(x.shape[0], bool) if where is None else where
    loss = np.zeros(x.shape[0])
    grad = np.zeros(x.shape)
    xs, ts = x[keep].astype(np.float64), target_x[keep].astype(np.float64)
    d_loss, d_grad = _reference.softmax_divergence(xs, ts, kind, beta, temperature)
    if hard_weight < 1:  # a zero weight times an infinite divergence is 0
        loss[keep] += (1 - hard_weight) * d_loss
        grad[keep] += (1 - hard_weight) * d_grad
    if hard_weight > 0:
        ce_loss, ce_grad = _reference.softmax_cross_entropy_index(xs, labels[keep])
        loss[keep] += hard_weight * ce_loss
        grad[keep] += hard_weight * ce_grad
    grad = _scaled(grad, grad_scale, x.dtype, need_grad)
    if need_grad and out is not None:
        out[...] = grad
        grad = out
    return loss, grad
