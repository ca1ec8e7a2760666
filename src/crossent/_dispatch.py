"""Compiled kernel or NumPy reference: one entry point per loss, on validated canonical blocks.

Callers (:mod:`crossent.losses`, :mod:`crossent.torch`) have already validated everything and
laid the data out as C-contiguous float32/float64 blocks — ``(N, C)`` rows for the softmax
family, any shape for the element-wise binary family — with int64 labels and float64 weights.
Each function returns ``(loss, grad)``: the per-row (per-element) losses as float64, and, when
``need_grad``, ``grad_scale`` times the gradient of each row's own loss, in the input's dtype
(``None`` otherwise). The reference path computes in float64.
"""

from __future__ import annotations

import numpy as np

from . import _reference
from ._backend import kernels

__all__: list[str] = []  # private module


def _scaled(grad, grad_scale, dtype, need_grad):
    if not need_grad:
        return None
    with np.errstate(over="ignore"):  # a gradient beyond float32's range rounds to +-inf
        return (grad * grad_scale).astype(dtype, copy=False)


def _f64(a):
    """A C-contiguous float64 array (no copy when it already is one), or None."""
    return None if a is None else np.ascontiguousarray(a, dtype=np.float64)


def _i64(labels):
    return np.ascontiguousarray(labels, dtype=np.int64)


def _rows(ext_fn, x, *args, need_grad, grad_scale):
    """Call a row kernel: per-row float64 losses, and the scaled gradient when asked for."""
    x = np.ascontiguousarray(x)
    loss = np.empty(x.shape[0], dtype=np.float64)
    grad = np.empty_like(x) if need_grad else None
    ext_fn(x, *args, loss, grad, grad_scale)
    return loss, grad


def _elementwise(ext_fn, x, targets, *args, need_grad, grad_scale):
    """Call an element-wise kernel on flat views; results take x's shape."""
    x = np.ascontiguousarray(x)
    flat = x.reshape(-1)
    t = _f64(np.broadcast_to(targets, x.shape)).reshape(-1)
    loss = np.empty(flat.shape[0], dtype=np.float64)
    grad = np.empty_like(flat) if need_grad else None
    ext_fn(flat, t, *args, loss, grad, grad_scale)
    return loss.reshape(x.shape), None if grad is None else grad.reshape(x.shape)


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


def softmax_ce_index(x, labels, weight, ignore_index, label_smoothing, z_loss, softcap,
                     grad_scale, need_grad, out=None):
    """``out``: a C-contiguous buffer of x's shape and dtype for the gradient; it may be ``x``
    itself (the gradient then overwrites the logits in place)."""
    ext = kernels()
    if ext is not None:
        loss = np.empty(x.shape[0], dtype=np.float64)
        grad = (np.empty_like(x) if out is None else out) if need_grad else None
        ext.softmax_ce_index(x, _i64(labels), _f64(weight), ignore_index, label_smoothing,
                             z_loss, softcap or 0.0, loss, grad, grad_scale)
        return loss, grad
    loss, grad = _reference.softmax_cross_entropy_index(
        x.astype(np.float64), labels, weight, ignore_index, label_smoothing, z_loss, softcap)
    grad = _scaled(grad, grad_scale, x.dtype, need_grad)
    if need_grad and out is not None:
        out[...] = grad
        grad = out
    return loss, grad


def softmax_ce_dense(x, targets, weight, label_smoothing, z_loss, softcap, grad_scale, need_grad):
    ext = kernels()
    if ext is not None:
        return _rows(ext.softmax_ce_dense, x, _f64(targets), _f64(weight), label_smoothing,
                     z_loss, softcap or 0.0, need_grad=need_grad, grad_scale=grad_scale)
    loss, grad = _reference.softmax_cross_entropy_dense(
        x.astype(np.float64), targets.astype(np.float64), weight, label_smoothing, z_loss, softcap)
    return loss, _scaled(grad, grad_scale, x.dtype, need_grad)


def nll(log_probs, labels, weight, ignore_index, grad_scale, need_grad):
    ext = kernels()
    if ext is not None:
        return _rows(ext.nll, log_probs, _i64(labels), _f64(weight), ignore_index,
                     need_grad=need_grad, grad_scale=grad_scale)
    loss, grad = _reference.nll(log_probs.astype(np.float64), labels, weight, ignore_index)
    return loss, _scaled(grad, grad_scale, log_probs.dtype, need_grad)


def softmax_focal(x, labels, alpha, gamma, ignore_index, grad_scale, need_grad):
    ext = kernels()
    if ext is not None:
        return _rows(ext.softmax_focal, x, _i64(labels), _f64(alpha), gamma, ignore_index,
                     need_grad=need_grad, grad_scale=grad_scale)
    loss, grad = _reference.softmax_focal(x.astype(np.float64), labels, alpha, gamma, ignore_index)
    return loss, _scaled(grad, grad_scale, x.dtype, need_grad)


def sigmoid_binary_cross_entropy(x, targets, weight, pos_weight, label_smoothing, grad_scale,
                                 need_grad):
    ext = kernels()
    if ext is not None:
        return _elementwise(ext.sigmoid_bce, x, targets, _broadcast(weight, x.shape),
                            _broadcast(pos_weight, x.shape), label_smoothing,
                            need_grad=need_grad, grad_scale=grad_scale)
    loss, grad = _reference.sigmoid_binary_cross_entropy(
        x.astype(np.float64), targets.astype(np.float64), weight, pos_weight, label_smoothing)
    return loss, _scaled(grad, grad_scale, x.dtype, need_grad)


def binary_cross_entropy(probs, targets, weight, grad_scale, need_grad):
    ext = kernels()
    if ext is not None:
        return _elementwise(ext.bce, probs, targets, _broadcast(weight, probs.shape),
                            need_grad=need_grad, grad_scale=grad_scale)
    loss, grad = _reference.binary_cross_entropy(
        probs.astype(np.float64), targets.astype(np.float64), weight)
    return loss, _scaled(grad, grad_scale, probs.dtype, need_grad)


def sigmoid_focal(x, targets, alpha, gamma, grad_scale, need_grad):
    ext = kernels()
    if ext is not None:
        return _elementwise(ext.sigmoid_focal, x, targets,
                            None if alpha is None else float(alpha), gamma,
                            need_grad=need_grad, grad_scale=grad_scale)
    loss, grad = _reference.sigmoid_focal(x.astype(np.float64), targets.astype(np.float64), alpha, gamma)
    return loss, _scaled(grad, grad_scale, x.dtype, need_grad)


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
