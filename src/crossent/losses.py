"""The cross-entropy losses, their reductions, and their analytic gradients.

Every loss validates its arguments (its options once, into its family's object of
:mod:`crossent._options`, which the kernels and the reference read), brings the class axis
last and the rows into one C-contiguous ``(N, C)`` block (a copy only when the layout needs
one; inputs are never modified), then runs the compiled kernel when there is one for the case
and the NumPy reference (:mod:`crossent._reference`) otherwise. Per-row losses are summed in
float64.

:func:`value_and_grad` and :func:`grad` return the gradient with respect to the first argument,
computed in the same pass as the value.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import _checks, _dispatch, _layout
from ._options import BinaryOptions, NLLOptions, SoftmaxCEOptions, SoftmaxFocalOptions

__all__ = [
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "binary_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "nll_loss",
    "value_and_grad",
    "grad",
]


# ----------------------------------------------------------------------------- plumbing
class _Rows(_layout.Rows):
    """Logits (or log-probabilities) as ``(N, C)`` rows, and the reduction on the way back."""

    def finish(self, loss, grad, reduction, denominator, out=None):
        """Reduce the per-row ``loss`` and bring ``grad`` (already scaled) back to shape."""
        value = _reduce(loss, reduction, denominator, self.dtype, self.batch_shape)
        if grad is None:
            return value, None
        return value, _into(out, self.restore(grad))


def _distinct_out_rows(rows, out, *others):
    """``out`` as rows a kernel may write directly, unless it shares memory with the input
    block or ``others`` (only softmax cross-entropy with class indices computes in place)."""
    o = rows.out_rows(out)
    if o is None or any(np.may_share_memory(o, a) for a in (rows.block, *others)):
        return None
    return o


def _into(out, grad):
    """The gradient in the caller's ``out`` buffer (copied unless a kernel wrote it there)."""
    if out is None:
        return grad
    if not np.may_share_memory(grad, out):
        np.copyto(out, grad)
    return out


def _reduce(loss, reduction, denominator, dtype, shape):
    """Sum (in float64), mean (``sum / denominator``; 0 when nothing is counted) or nothing."""
    if reduction == "none":
        return loss.astype(dtype, copy=False).reshape(shape)
    total = float(np.sum(loss, dtype=np.float64))
    if reduction == "mean":
        total = total / denominator if denominator > 0 else 0.0
    return dtype.type(total)


def _grad_scale(reduction, denominator):
    if reduction == "mean":
        return 1.0 / denominator if denominator > 0 else 0.0
    return 1.0


def _counted_weight(labels, weight, ignore_index, sample=None):
    """PyTorch's "mean" denominator: sum of w[y] over rows that are not ignored; with row
    weights (``sample``, a :class:`_SampleWeights`), sum of r_n w[y_n] (Keras, scikit-learn)."""
    if sample is None or sample.r is None:
        counted = labels if ignore_index is None else labels[labels != ignore_index]
        if weight is None:
            return float(counted.size)
        return float(np.sum(weight[counted], dtype=np.float64))
    kept = np.ones(labels.shape, bool) if ignore_index is None else labels != ignore_index
    c = kept.astype(np.float64) if weight is None else np.where(kept, weight[np.where(kept, labels, 0)], 0.0)
    return float(np.sum(sample.r * c, dtype=np.float64))


class _SampleWeights:
    """``sample_weight`` times ``where``, validated once: one non-negative weight per row (or
    element) of ``shape``, flattened (``r``, float64), or None when neither is given.

    A row's loss and gradient are multiplied by its weight, a zero weight zeroing them even
    where they are infinite or NaN; "mean" divides by the weights of the counted rows."""

    def __init__(self, sample_weight, where, shape):
        r = _checks.check_broadcast_weight(sample_weight, shape, "sample_weight")
        if where is not None:
            mask = np.asarray(where)
            if mask.dtype != np.bool_:
                raise TypeError(f"where must be a boolean mask, got dtype {mask.dtype}")
            try:
                if np.broadcast_shapes(mask.shape, shape) != tuple(shape):
                    raise ValueError
            except ValueError:
                raise ValueError(f"where of shape {mask.shape} does not broadcast to {shape}") from None
            r = mask.astype(np.float64) if r is None else np.where(mask, r, 0.0)
        self.r = None if r is None else np.broadcast_to(r, shape).reshape(-1).astype(np.float64)

    def total(self, n):
        """The "mean" denominator of n rows counted once each."""
        return float(n) if self.r is None else float(np.sum(self.r, dtype=np.float64))

    def apply(self, loss, grad):
        """Each row's loss, and its gradient rows (``grad`` of shape (rows, ...)), times r_n."""
        if self.r is None:
            return loss, grad
        r = self.r.reshape(loss.shape)
        with np.errstate(invalid="ignore"):
            loss = np.where(r == 0, 0.0, loss * r)
            if grad is not None:
                rg = self.r.reshape((-1,) + (1,) * (grad.ndim - 1)) if grad.ndim > r.ndim else r
                np.multiply(grad, rg.astype(grad.dtype, copy=False), out=grad)
                grad[np.broadcast_to(rg == 0, grad.shape)] = 0
        return loss, grad


def _index_or_dense(targets, rows, name="targets"):
    """``"index"`` for integer targets of the batch shape, ``"dense"`` for float targets of
    the logits' shape; anything else raises with both accepted shapes named."""
    t = _checks.as_array(targets, name)
    if t.dtype.kind in "iu" and t.dtype != np.bool_:
        if t.shape != rows.batch_shape:
            raise ValueError(
                f"{name} holds class indices of shape {t.shape}, but logits of shape {rows.shape} "
                f"with the class axis {rows.axis} need indices of shape {rows.batch_shape}")
        return "index", t
    if t.dtype.kind == "f":
        if t.shape != rows.shape:
            hint = (" (class indices must have an integer dtype)" if t.shape == rows.batch_shape else "")
            raise ValueError(
                f"{name} of float dtype must be target distributions of the logits' shape "
                f"{rows.shape}, got shape {t.shape}{hint}")
        return "dense", t
    raise TypeError(f"{name} must be integer class indices or float distributions, got dtype {t.dtype}")


# ----------------------------------------------------------------------------- softmax family
def _softmax_cross_entropy(logits, targets, *, axis=-1, weight=None, ignore_index=None,
                           label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
                           where=None, reduction="mean", need_grad=False, out=None):
    rows = _Rows(logits, "logits", axis)
    opts = SoftmaxCEOptions.checked(reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                                    softcap=softcap, ignore_index=ignore_index, weight=weight,
                                    num_classes=rows.num_classes)
    reduction, ignore_index = opts.reduction, opts.ignore_index
    kind, t = _index_or_dense(targets, rows)
    sample = _SampleWeights(sample_weight, where, rows.batch_shape)
    x = rows.block
    if kind == "index":
        y = _checks.check_labels(t, rows.num_classes, ignore_index, "targets").reshape(-1)
        denominator = _counted_weight(y, opts.weight, ignore_index, sample)
        loss, g = _dispatch.softmax_ce_index(x, np.ascontiguousarray(y), opts,
                                             _grad_scale(reduction, denominator), need_grad,
                                             out=rows.out_rows(out))
        return rows.finish(*sample.apply(loss, g), reduction, denominator, out)
    if ignore_index is not None:
        raise ValueError("ignore_index applies to class-index targets; dense (float) targets "
                         "cannot ignore rows: give those rows zero targets, or pass indices")
    denominator = sample.total(x.shape[0])
    t_rows = rows.rows_of(t)
    loss, g = _dispatch.softmax_ce_dense(x, t_rows, opts, _grad_scale(reduction, denominator), need_grad,
                                         out=_distinct_out_rows(rows, out, t_rows),
                                         unit=("targets", t))
    return rows.finish(*sample.apply(loss, g), reduction, denominator, out)


def softmax_cross_entropy(logits, targets, *, axis=-1, weight=None, ignore_index=None,
                          label_smoothing=0.0, z_loss=0.0, softcap=None, sample_weight=None,
                          where=None, reduction="mean"):
    r"""Cross-entropy of the softmax of ``logits`` against class indices or distributions.

    Per row, with soft-cap ``s``: :math:`z = s \tanh(x / s)`, :math:`\operatorname{lse} =
    \log\sum_c e^{z_c}`, :math:`\log p = z - \operatorname{lse}`. For class indices ``y``
    (smoothing :math:`\varepsilon`, class weights ``w``, ``C`` classes):

    .. math:: \ell_n = (1-\varepsilon)\,w_{y_n}(-\log p_{y_n})
              + \frac{\varepsilon}{C}\sum_c w_c(-\log p_c) + \lambda_z\,w_{y_n}\operatorname{lse}_n^2

    For distributions ``t``: :math:`\tilde t = (1-\varepsilon)t + \varepsilon/C`,
    :math:`\ell_n = -\sum_c w_c \tilde t_{nc}\log p_{nc} + \lambda_z \operatorname{lse}_n^2`.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, shape ``(..., C, ...)`` with the classes along ``axis``.
    targets : array_like
        Integer class indices of the logits' shape without ``axis``, or float target
        distributions of the logits' shape.
    axis : int, default -1
        The class axis of ``logits`` (and of dense ``targets``).
    weight : array_like, optional
        Non-negative per-class weights, shape ``(C,)``.
    ignore_index : int, optional
        A target value whose rows count for nothing (index targets only).
    label_smoothing : float, default 0.0
        :math:`\varepsilon` in [0, 1].
    z_loss : float, default 0.0
        :math:`\lambda_z \ge 0`, the weight of the :math:`\operatorname{lse}^2` penalty (PaLM).
    softcap : float, optional
        ``s > 0``: logits pass through :math:`s\tanh(x/s)` first (Gemma 2).
    sample_weight : array_like, optional
        Non-negative weight of each row (broadcastable to the logits' shape without ``axis``): its loss and gradient are
        multiplied by it, and "mean" divides by the weights of the counted rows (as Keras
        and scikit-learn do; with class weights, w[y] times it).
    where : array_like of bool, optional
        Mask of the rows that count (as in optax); the others add nothing, not even to the
        "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by :math:`\sum_n w_{y_n}` over rows not ignored (by ``N`` for
        dense targets); a mean over nothing is 0. "none" returns the per-row losses.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the logits' floating dtype, or for "none" the per-row losses, shaped like
        the logits without ``axis``.

    Raises
    ------
    ValueError
        Bad shapes, options, weights or dense targets outside [0, 1]; ``ignore_index`` with
        dense targets.
    TypeError
        Targets that are neither integers nor floats.
    IndexError
        A class index outside ``[0, C)`` that is not ``ignore_index`` (position named).

    Notes
    -----
    Semantics follow ``torch.nn.functional.cross_entropy`` where PyTorch defines them, except
    that a "mean" over rows that are all ignored is 0 (PyTorch gives NaN). A ``-inf`` logit is a
    masked class: it keeps ``-inf`` through the soft-cap, takes no smoothing mass (``C`` counts
    the unmasked classes of the row) and gets no gradient, so masking a class equals slicing it
    away. A target whose logit is ``-inf`` gives ``inf``; NaN in gives NaN out.

    References
    ----------
    C. Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016 (label smoothing);
    A. Chowdhery et al., "PaLM", 2022 (z-loss); Gemma Team, "Gemma 2", 2024 (soft-capping).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.log([[0.228, 0.619, 0.153]])  # probabilities 0.228, 0.619, 0.153
    >>> round(float(crossent.softmax_cross_entropy(logits, [1])), 3)
    0.48
    >>> float(crossent.softmax_cross_entropy([[0.0, 0.0], [0.0, 0.0]], [0, -100], ignore_index=-100))
    0.6931471805599453
    """
    return _softmax_cross_entropy(logits, targets, axis=axis, weight=weight,
                                  ignore_index=ignore_index, label_smoothing=label_smoothing,
                                  z_loss=z_loss, softcap=softcap, sample_weight=sample_weight,
                                  where=where, reduction=reduction)[0]


def _nll_loss(log_probs, labels, *, axis=-1, weight=None, ignore_index=None, sample_weight=None,
              where=None, reduction="mean", need_grad=False, out=None):
    rows = _Rows(log_probs, "log_probs", axis)
    opts = NLLOptions.checked(reduction=reduction, ignore_index=ignore_index, weight=weight,
                              num_classes=rows.num_classes)
    reduction, ignore_index = opts.reduction, opts.ignore_index
    y_arr = _checks.as_array(labels, "labels")
    if y_arr.shape != rows.batch_shape:
        raise ValueError(f"labels has shape {y_arr.shape}, but log_probs of shape {rows.shape} "
                         f"with the class axis {rows.axis} needs labels of shape {rows.batch_shape}")
    y = _checks.check_labels(y_arr, rows.num_classes, ignore_index).reshape(-1)
    sample = _SampleWeights(sample_weight, where, rows.batch_shape)
    denominator = _counted_weight(y, opts.weight, ignore_index, sample)
    loss, g = _dispatch.nll(rows.block, y, opts, _grad_scale(reduction, denominator),
                            need_grad, out=_distinct_out_rows(rows, out))
    return rows.finish(*sample.apply(loss, g), reduction, denominator, out)


def nll_loss(log_probs, labels, *, axis=-1, weight=None, ignore_index=None, sample_weight=None,
             where=None, reduction="mean"):
    r"""Negative log-likelihood of class indices under given log-probabilities.

    .. math:: \ell_n = -w_{y_n} \log p_{n, y_n}

    Parameters
    ----------
    log_probs : array_like
        Log-probabilities (for example from :func:`crossent.log_softmax`), classes along ``axis``.
    labels : array_like of int
        Class indices, the shape of ``log_probs`` without ``axis``.
    axis : int, default -1
        The class axis.
    weight : array_like, optional
        Non-negative per-class weights, shape ``(C,)``.
    ignore_index : int, optional
        A label value whose rows count for nothing.
    sample_weight : array_like, optional
        Non-negative weight of each row (broadcastable to the shape without ``axis``): its loss and gradient are
        multiplied by it, and "mean" divides by the weights of the counted rows (as Keras
        and scikit-learn do; with class weights, w[y] times it).
    where : array_like of bool, optional
        Mask of the rows that count (as in optax); the others add nothing, not even to the
        "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides by :math:`\sum_n w_{y_n}` over rows not ignored (0 if there are none).

    Returns
    -------
    numpy scalar or ndarray
        As for :func:`softmax_cross_entropy`.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> round(float(crossent.nll_loss(np.log([[0.8, 0.2], [0.5, 0.5]]), [0, 1])), 6)
    0.458145
    """
    return _nll_loss(log_probs, labels, axis=axis, weight=weight, ignore_index=ignore_index,
                     sample_weight=sample_weight, where=where, reduction=reduction)[0]


def _softmax_focal_loss(logits, labels, *, axis=-1, alpha=None, gamma=2.0, ignore_index=None,
                        sample_weight=None, where=None, reduction="mean", need_grad=False,
                        out=None):
    rows = _Rows(logits, "logits", axis)
    opts = SoftmaxFocalOptions.checked(reduction=reduction, gamma=gamma, ignore_index=ignore_index,
                                       alpha=alpha, num_classes=rows.num_classes)
    reduction, ignore_index = opts.reduction, opts.ignore_index
    y_arr = _checks.as_array(labels, "labels")
    if y_arr.shape != rows.batch_shape:
        raise ValueError(f"labels has shape {y_arr.shape}, but logits of shape {rows.shape} "
                         f"with the class axis {rows.axis} need labels of shape {rows.batch_shape}")
    y = _checks.check_labels(y_arr, rows.num_classes, ignore_index).reshape(-1)
    sample = _SampleWeights(sample_weight, where, rows.batch_shape)
    denominator = _counted_weight(y, None, ignore_index, sample)
    loss, g = _dispatch.softmax_focal(rows.block, y, opts, _grad_scale(reduction, denominator), need_grad,
                                      out=_distinct_out_rows(rows, out))
    return rows.finish(*sample.apply(loss, g), reduction, denominator, out)


def softmax_focal_loss(logits, labels, *, axis=-1, alpha=None, gamma=2.0, ignore_index=None,
                       sample_weight=None, where=None, reduction="mean"):
    r"""Multi-class focal loss: cross-entropy down-weighted on well-classified rows.

    .. math:: \ell_n = -\alpha_{y_n}\,(1 - p_{n,y_n})^{\gamma}\,\log p_{n,y_n},
              \qquad p = \operatorname{softmax}(x)

    computed from :math:`\log p` so that :math:`1-p_y` keeps its digits near 1 and
    :math:`\gamma < 1` has a finite gradient. With ``gamma=0`` and ``alpha=None`` it is
    :func:`softmax_cross_entropy`.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores, classes along ``axis``.
    labels : array_like of int
        Class indices, the logits' shape without ``axis``.
    axis : int, default -1
        The class axis.
    alpha : float or array_like, optional
        Balancing weight: a scalar in [0, 1] for every class, or one non-negative value per
        class; None (default) turns balancing off.
    gamma : float, default 2.0
        Focusing parameter :math:`\gamma \ge 0`.
    ignore_index : int, optional
        A label value whose rows count for nothing.
    sample_weight : array_like, optional
        Non-negative weight of each row (broadcastable to the logits' shape without ``axis``): its loss and gradient are
        multiplied by it, and "mean" divides by the weights of the counted rows (as Keras
        and scikit-learn do).
    where : array_like of bool, optional
        Mask of the rows that count (as in optax); the others add nothing, not even to the
        "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over the rows not ignored (``alpha`` weighs terms, not the count).

    Returns
    -------
    numpy scalar or ndarray
        As for :func:`softmax_cross_entropy`.

    References
    ----------
    T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
    Detection", ICCV 2017.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> x = np.log([[0.9, 0.1]])  # p_y = 0.9: (1 - 0.9)^2 * -log 0.9
    >>> round(float(crossent.softmax_focal_loss(x, [0])), 8)
    0.00105361
    """
    return _softmax_focal_loss(logits, labels, axis=axis, alpha=alpha, gamma=gamma,
                               ignore_index=ignore_index, sample_weight=sample_weight,
                               where=where, reduction=reduction)[0]


# ----------------------------------------------------------------------------- binary family
def _binary_inputs(x, targets, name_x):
    """C-contiguous float inputs of one shape (0-d stays 0-d); and the "mean" denominator. That targets (and
    probabilities) lie in [0, 1] is checked by :mod:`crossent._dispatch`, in the kernels' pass."""
    arr = np.asarray(_checks.check_floating(x, name_x), order="C")
    t = _checks.check_floating(targets, "targets")
    _checks.check_same_shape(arr, t, name_x, "targets")
    return arr, np.asarray(t, order="C"), float(arr.size)


def _elementwise_out(out, *inputs):
    """``out`` if a kernel may write the gradient straight into it (C-contiguous, sharing no
    memory with the inputs), else None (the gradient is then copied into it)."""
    if out is None or not out.flags.c_contiguous or any(np.may_share_memory(out, a) for a in inputs):
        return None
    return out


def _totals(reduction, sample):
    """Whether the kernel may return the sum of the losses alone (no per-element losses)."""
    return reduction != "none" and sample.r is None


def _finish_elementwise(loss, g, reduction, dtype, n, out=None, sample=None):
    """``loss``: the element-wise losses, or their float64 sum (the kernels' ``total``)."""
    if sample is not None and sample.r is not None:
        loss, g = sample.apply(loss, g)
        if reduction != "none":
            loss = float(np.sum(loss, dtype=np.float64))
    if reduction == "none":
        value = loss.astype(dtype, copy=False)
    elif reduction == "mean":
        value = dtype.type(loss / n if n > 0 else 0.0)
    else:
        value = dtype.type(loss)
    return value, (None if g is None else _into(out, g))


def _sigmoid_binary_cross_entropy(logits, targets, *, weight=None, pos_weight=None,
                                  label_smoothing=0.0, sample_weight=None, where=None,
                                  reduction="mean", need_grad=False, out=None):
    x, t, n = _binary_inputs(logits, targets, "logits")
    opts = BinaryOptions.checked(reduction=reduction, label_smoothing=label_smoothing, weight=weight,
                                 pos_weight=pos_weight, shape=x.shape)
    reduction = opts.reduction
    sample = _SampleWeights(sample_weight, where, x.shape)
    n = sample.total(n)
    loss, g = _dispatch.sigmoid_binary_cross_entropy(x, t, opts, _grad_scale(reduction, n),
                                                     need_grad, total=_totals(reduction, sample),
                                                     out=_elementwise_out(out, x, t))
    return _finish_elementwise(loss, g, reduction, x.dtype, n, out, sample)


def sigmoid_binary_cross_entropy(logits, targets, *, weight=None, pos_weight=None,
                                 label_smoothing=0.0, sample_weight=None, where=None,
                                 reduction="mean"):
    r"""Binary cross-entropy of the sigmoid of ``logits``, element-wise, in log space.

    .. math:: \ell = -w\,[\,p_w\,t\log\sigma(x) + (1-t)\log\sigma(-x)\,],
              \qquad t \leftarrow t(1-\varepsilon) + \varepsilon/2

    using :math:`\log(1-\sigma(x)) = \log\sigma(-x)`, so no logit overflows or loses digits.
    Its gradient is :math:`w[\sigma(x)(p_w t + 1 - t) - p_w t]`, simply
    :math:`\sigma(x) - t` without weights.

    Parameters
    ----------
    logits : array_like
        Real scores, any shape.
    targets : array_like
        Targets in [0, 1] (hard 0/1 or soft), the shape of ``logits``.
    weight : array_like, optional
        Non-negative element weights broadcastable to the logits' shape.
    pos_weight : array_like, optional
        Non-negative weight of the positive term, broadcastable (per class along the last axis,
        as in PyTorch).
    label_smoothing : float, default 0.0
        :math:`\varepsilon` in [0, 1].
    sample_weight : array_like, optional
        Non-negative weight of each element (broadcastable to the logits' shape): its loss and gradient are
        multiplied by it, and "mean" divides by the weights of the counted elements (as Keras
        and scikit-learn do).
    where : array_like of bool, optional
        Mask of the elements that count (as in optax); the others add nothing, not even to the
        "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over all elements.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the logits' floating dtype, or the element-wise losses for "none".

    Examples
    --------
    >>> import crossent
    >>> float(crossent.sigmoid_binary_cross_entropy([0.0], [1.0]))  # -log(1/2)
    0.6931471805599453
    """
    return _sigmoid_binary_cross_entropy(logits, targets, weight=weight, pos_weight=pos_weight,
                                         label_smoothing=label_smoothing,
                                         sample_weight=sample_weight, where=where,
                                         reduction=reduction)[0]


def _binary_cross_entropy(probs, targets, *, weight=None, sample_weight=None, where=None,
                          reduction="mean", need_grad=False, out=None):
    p, t, n = _binary_inputs(probs, targets, "probs")
    opts = BinaryOptions.checked(reduction=reduction, weight=weight, shape=p.shape)
    reduction = opts.reduction
    sample = _SampleWeights(sample_weight, where, p.shape)
    n = sample.total(n)
    loss, g = _dispatch.binary_cross_entropy(p, t, opts, _grad_scale(reduction, n), need_grad,
                                             total=_totals(reduction, sample),
                                             out=_elementwise_out(out, p, t))
    return _finish_elementwise(loss, g, reduction, p.dtype, n, out, sample)


def binary_cross_entropy(probs, targets, *, weight=None, sample_weight=None, where=None,
                         reduction="mean"):
    r"""Binary cross-entropy of probabilities, exactly: no clamping of the logarithm.

    .. math:: \ell = -w\,[\,t\log p + (1-t)\log(1-p)\,]

    with :math:`0\log 0 = 0`. Where the math is infinite (``p = 0`` with ``t > 0``) the result
    is ``inf`` — PyTorch clamps the log at -100 instead. Prefer
    :func:`sigmoid_binary_cross_entropy` when you have logits.

    Parameters
    ----------
    probs : array_like
        Predicted probabilities in [0, 1], any shape.
    targets : array_like
        Targets in [0, 1], the shape of ``probs``.
    weight : array_like, optional
        Non-negative element weights broadcastable to the shape of ``probs``.
    sample_weight : array_like, optional
        Non-negative weight of each element (broadcastable to the shape of ``probs``): its loss and gradient are
        multiplied by it, and "mean" divides by the weights of the counted elements (as Keras
        and scikit-learn do).
    where : array_like of bool, optional
        Mask of the elements that count (as in optax); the others add nothing, not even to the
        "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over all elements.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the probabilities' floating dtype, or the element-wise losses.

    Raises
    ------
    ValueError
        Probabilities or targets outside [0, 1] (NaN included), with the position named.

    Examples
    --------
    Three doors hide a gift with probabilities 0.8, 0.7 and 0.1; the first two had one:

    >>> import crossent
    >>> round(float(crossent.binary_cross_entropy([0.8, 0.7, 0.1], [1, 1, 0], reduction="sum")), 3)
    0.685
    """
    return _binary_cross_entropy(probs, targets, weight=weight, sample_weight=sample_weight,
                                 where=where, reduction=reduction)[0]


def _sigmoid_focal_loss(logits, targets, *, alpha=0.25, gamma=2.0, sample_weight=None,
                        where=None, reduction="mean", need_grad=False, out=None):
    opts = BinaryOptions.checked(reduction=reduction, gamma=gamma, alpha=alpha)
    x, t, n = _binary_inputs(logits, targets, "logits")
    reduction = opts.reduction
    sample = _SampleWeights(sample_weight, where, x.shape)
    n = sample.total(n)
    loss, g = _dispatch.sigmoid_focal(x, t, opts, _grad_scale(reduction, n), need_grad,
                                      total=_totals(reduction, sample),
                                      out=_elementwise_out(out, x, t))
    return _finish_elementwise(loss, g, reduction, x.dtype, n, out, sample)


def sigmoid_focal_loss(logits, targets, *, alpha=0.25, gamma=2.0, sample_weight=None, where=None,
                       reduction="mean"):
    r"""Binary focal loss of the sigmoid of ``logits`` (torchvision's definition), in log space.

    .. math:: \ell = \alpha_t\,(1-p_t)^{\gamma}\,\mathrm{BCE}(x, t), \quad
              1 - p_t = t\,\sigma(-x) + (1-t)\,\sigma(x), \quad
              \alpha_t = \alpha t + (1-\alpha)(1-t)

    :math:`(1-p_t)^\gamma` is formed as :math:`\exp(\gamma\log(1-p_t))` from log-sigmoids, so
    confident logits, soft targets and :math:`\gamma < 1` stay finite and exact.

    Parameters
    ----------
    logits : array_like
        Real scores, any shape.
    targets : array_like
        Targets in [0, 1], the shape of ``logits``.
    alpha : float or None, default 0.25
        Balancing weight of the positive class in [0, 1]; None turns balancing off.
    gamma : float, default 2.0
        Focusing parameter :math:`\gamma \ge 0`; 0 gives (alpha-balanced) cross-entropy.
    sample_weight : array_like, optional
        Non-negative weight of each element (broadcastable to the logits' shape): its loss and gradient are
        multiplied by it, and "mean" divides by the weights of the counted elements (as Keras
        and scikit-learn do).
    where : array_like of bool, optional
        Mask of the elements that count (as in optax); the others add nothing, not even to the
        "mean" denominator.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" averages over all elements.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the logits' floating dtype, or the element-wise losses.

    References
    ----------
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import crossent
    >>> float(crossent.sigmoid_focal_loss([0.0], [1.0], alpha=None, gamma=0.0))  # = BCE
    0.6931471805599453
    """
    return _sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma,
                               sample_weight=sample_weight, where=where, reduction=reduction)[0]


# ----------------------------------------------------------------------------- gradients
_IMPLEMENTATIONS = {
    softmax_cross_entropy: _softmax_cross_entropy,
    sigmoid_binary_cross_entropy: _sigmoid_binary_cross_entropy,
    binary_cross_entropy: _binary_cross_entropy,
    sigmoid_focal_loss: _sigmoid_focal_loss,
    softmax_focal_loss: _softmax_focal_loss,
    nll_loss: _nll_loss,
}


def value_and_grad(loss):
    r"""Turn a crossent loss into a function returning ``(value, d value / d first argument)``.

    The gradient is analytic and comes from the same pass as the value; it has the shape and
    floating dtype of the first argument. Only the reductions "mean" and "sum" (scalar values)
    can be differentiated.

    Parameters
    ----------
    loss : callable
        One of :func:`softmax_cross_entropy`, :func:`sigmoid_binary_cross_entropy`,
        :func:`binary_cross_entropy`, :func:`sigmoid_focal_loss`,
        :func:`softmax_focal_loss`, :func:`nll_loss`.

    Returns
    -------
    callable
        Takes the loss's own arguments, plus an optional keyword ``out``: an array of the first
        argument's shape and (result) floating dtype that receives the gradient and is returned
        in its place — no gradient is allocated, and softmax cross-entropy with class indices
        writes it there directly (``out`` may even be the logits: the gradient then replaces
        them). Returns ``(value, gradient)``.

    Raises
    ------
    TypeError
        If ``loss`` is not a crossent loss, or ``out`` is not an array of the gradient's dtype.
    ValueError
        When called with ``reduction="none"``, or with ``out`` of the wrong shape or read-only.

    Examples
    --------
    The gradient of softmax cross-entropy is softmax minus the one-hot target:

    >>> import crossent
    >>> value, g = crossent.value_and_grad(crossent.softmax_cross_entropy)([[0.0, 0.0]], [0])
    >>> g.tolist()
    [[-0.5, 0.5]]
    """
    impl = _IMPLEMENTATIONS.get(loss)
    if impl is None:
        raise TypeError(f"value_and_grad needs a crossent loss ({', '.join(f.__name__ for f in _IMPLEMENTATIONS)}); "
                        f"got {loss!r}")

    signature = inspect.signature(loss)
    first = next(iter(signature.parameters))

    @functools.wraps(loss)
    def value_and_grad_fn(*args, out=None, **kwargs):
        reduction = kwargs.get("reduction", "mean")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"value_and_grad differentiates scalar losses: reduction must be "
                             f"'mean' or 'sum', got {reduction!r}")
        if out is not None:
            try:
                given = signature.bind(*args, **kwargs).arguments
            except TypeError as exc:  # a missing or unknown argument, named
                raise TypeError(f"{loss.__name__}(): {exc}") from None
            x = given.pop(first)
            _checks.check_out(out, x, first, given)
        return impl(*args, **kwargs, need_grad=True, out=out)

    return value_and_grad_fn


def grad(loss):
    r"""Turn a crossent loss into a function returning ``d value / d first argument``.

    See :func:`value_and_grad`, of which this keeps the gradient only.

    Examples
    --------
    >>> import crossent
    >>> crossent.grad(crossent.sigmoid_binary_cross_entropy)([0.0], [1.0]).tolist()  # sigma(0) - 1
    [-0.5]
    """
    value_and_grad_fn = value_and_grad(loss)

    @functools.wraps(loss)
    def grad_fn(*args, **kwargs):
        return value_and_grad_fn(*args, **kwargs)[1]

    return grad_fn
