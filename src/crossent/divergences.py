r"""Divergences between two models' softmax distributions, from their logits (distillation).

The student's logits ``logits`` give :math:`q = \operatorname{softmax}(x / T)`, the teacher's
``target_logits`` give :math:`p = \operatorname{softmax}(y / T)`; both functions return the
divergence per row, reduced, and (through :func:`crossent.value_and_grad`) its gradient with
respect to the student's logits from the same fused pass. The teacher is a constant.

No :math:`T^2` factor is applied (as in TRL): Hinton et al. (2015) scale the soft loss by
:math:`T^2` to keep its gradients' size independent of ``T``; that factor is the caller's to
multiply.

How the arguments map to the peers' (``y`` the teacher's logits, ``x`` the student's):

=====================================  ================================================  =============================================
crossent                               TRL ``GKDTrainer.generalized_jsd_loss``           Liger-Kernel
=====================================  ================================================  =============================================
``softmax_js_divergence(x, y,          ``generalized_jsd_loss(x, y, beta=b,              ``LigerJSD(beta=b)(log_softmax(x / T),
beta=b, temperature=T)``               temperature=T)`` (``reduction="batchmean"``)      log_softmax(y / T))``; fused with the heads:
                                                                                         ``LigerFusedLinearJSD(jsd_beta=b,
                                                                                         temperature=T)``
``beta=0`` (forward KL(p‖q)),          ``beta=0``, ``beta=1`` (special-cased there too)  ``beta=0``, ``beta=1`` (same special cases)
``beta=1`` (reverse KL(q‖p))
``where`` (rows that count)            ``labels != -100``                                ``shift_labels != ignore_index``
"mean" (sum / counted rows)            "batchmean" (sum / unmasked tokens)               sum / non-ignored rows
``softmax_kl_divergence(x, y, T=T)``   ``beta=0``                                        ``LigerKLDIVLoss(log_target=True)`` on log-probs
=====================================  ================================================  =============================================

References
----------
R. Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated
Mistakes" (GKD), ICLR 2024, eq. (1); G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge
in a Neural Network", 2015.
"""

from __future__ import annotations

import numpy as np

from . import _checks, _dispatch, _layout
from .losses import _IMPLEMENTATIONS, _grad_scale, _into, _reduce

__all__ = ["softmax_kl_divergence", "softmax_js_divergence"]


def _check_where(where, batch_shape):
    """``where``: None (every row counts) or a bool array of the batch shape, as flat rows."""
    if where is None:
        return None
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array, got dtype {w.dtype}")
    if w.shape != tuple(batch_shape):
        raise ValueError(f"where must have the logits' shape without the class axis "
                         f"{tuple(batch_shape)}, got {w.shape}")
    return np.ascontiguousarray(w.reshape(-1))


def _check_beta(beta):
    return _checks.check_scalar(beta, "beta", low=0.0, high=1.0)


def _check_temperature(temperature):
    return _checks.check_scalar(temperature, "temperature", low=0.0, low_open=True)


def _divergence(logits, target_logits, kind, *, axis, beta, temperature, where, reduction,
                need_grad, out):
    reduction = _checks.check_reduction(reduction)
    temperature = _check_temperature(temperature)
    rows = _layout.Rows(logits, "logits", axis)
    target = _checks.check_floating(target_logits, "target_logits")
    if target.shape != rows.shape:
        raise ValueError(f"target_logits has shape {target.shape}, but logits has shape "
                         f"{rows.shape}; they must match")
    keep = _check_where(where, rows.batch_shape)
    dtype = np.result_type(rows.dtype, target.dtype)  # float32 logits, float64 teacher: float64
    x = rows.block.astype(dtype, copy=False)
    t = rows.rows_of(target).astype(dtype, copy=False)
    denominator = float(x.shape[0] if keep is None else np.count_nonzero(keep))
    direct = rows.out_rows(out) if dtype == rows.dtype else None
    loss, g = _dispatch.softmax_divergence(x, t, kind, beta, temperature, 0.0, keep, None,
                                           _grad_scale(reduction, denominator), need_grad,
                                           out=direct)
    value = _reduce(loss, reduction, denominator, rows.dtype, rows.batch_shape)
    return value, (None if g is None else _into(out, rows.restore(g)))


def _softmax_kl_divergence(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False,
                           where=None, reduction="mean", need_grad=False, out=None):
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"reverse must be a bool, got {reverse!r}")
    return _divergence(logits, target_logits, "reverse" if reverse else "forward", axis=axis,
                       beta=0.5, temperature=temperature, where=where, reduction=reduction,
                       need_grad=need_grad, out=out)


def softmax_kl_divergence(logits, target_logits, *, axis=-1, temperature=1.0, reverse=False,
                          where=None, reduction="mean"):
    r"""Kullback-Leibler divergence between the teacher's and the student's softmax.

    With :math:`p = \operatorname{softmax}(y/T)` (``target_logits``, the teacher) and
    :math:`q = \operatorname{softmax}(x/T)` (``logits``, the student), per row

    .. math:: \mathrm{KL}(p\,\|\,q) = \sum_c p_c(\log p_c - \log q_c), \qquad
              \frac{\partial}{\partial x_j} = \frac{q_j - p_j}{T},

    or with ``reverse=True``

    .. math:: \mathrm{KL}(q\,\|\,p) = \sum_c q_c r_c,\; r_c = \log q_c - \log p_c, \qquad
              \frac{\partial}{\partial x_j} = \frac{q_j (r_j - \mathrm{KL})}{T}.

    ``log p`` and ``log q`` are formed in log space (a shifted log-sum-exp per row).
    No :math:`T^2` factor is applied (multiply by ``T**2`` for Hinton et al.'s scaling).

    Parameters
    ----------
    logits : array_like
        The student's logits, classes along ``axis``.
    target_logits : array_like
        The teacher's logits, the shape of ``logits``.
    axis : int, default -1
        The class axis.
    temperature : float, default 1.0
        :math:`T > 0`, dividing both models' logits.
    reverse : bool, default False
        False: :math:`\mathrm{KL}(p\|q)` (forward, mass-covering); True:
        :math:`\mathrm{KL}(q\|p)` (reverse, mode-seeking).
    where : array_like of bool, optional
        The rows that count (the logits' shape without ``axis``); others give 0.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by the number of counted rows ("batchmean"; 0 when none).

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the logits' floating dtype, or the per-row values for "none".

    Notes
    -----
    A ``-inf`` logit is a masked class, with the math's answer: a class the first distribution
    of the KL gives no mass costs nothing, and one that only the second masks costs ``inf``
    (forward: masked for the teacher only is free, for the student only is ``inf``; reverse:
    the other way round). An infinite divergence has no usable gradient. A row holding NaN or
    ``+inf``, or with every logit ``-inf`` on either side, gives NaN.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> student = np.zeros((1, 2))                 # q = (0.5, 0.5)
    >>> teacher = np.log([[0.75, 0.25]])           # p = (0.75, 0.25)
    >>> round(float(crossent.softmax_kl_divergence(student, teacher)), 6)
    0.130812
    >>> value, g = crossent.value_and_grad(crossent.softmax_kl_divergence)(student, teacher)
    >>> g.round(6).tolist()                        # q - p
    [[-0.25, 0.25]]
    """
    return _softmax_kl_divergence(logits, target_logits, axis=axis, temperature=temperature,
                                  reverse=reverse, where=where, reduction=reduction)[0]


def _softmax_js_divergence(logits, target_logits, *, axis=-1, beta=0.5, temperature=1.0,
                           where=None, reduction="mean", need_grad=False, out=None):
    beta = _check_beta(beta)
    kind = "forward" if beta == 0.0 else "reverse" if beta == 1.0 else "jsd"
    return _divergence(logits, target_logits, kind, axis=axis, beta=beta,
                       temperature=temperature, where=where, reduction=reduction,
                       need_grad=need_grad, out=out)


def softmax_js_divergence(logits, target_logits, *, axis=-1, beta=0.5, temperature=1.0,
                          where=None, reduction="mean"):
    r"""Generalised Jensen-Shannon divergence between the teacher's and the student's softmax.

    As TRL's ``generalized_jsd_loss`` defines it (GKD, Agarwal et al. 2024, eq. 1): with
    :math:`p = \operatorname{softmax}(y/T)` (teacher), :math:`q = \operatorname{softmax}(x/T)`
    (student) and the mixture :math:`m = \beta p + (1-\beta) q`, per row

    .. math:: \mathrm{JSD}_\beta = \beta\,\mathrm{KL}(p\,\|\,m) + (1-\beta)\,\mathrm{KL}(q\,\|\,m),
              \qquad \frac{\partial}{\partial x_j} = \frac{(1-\beta)\,q_j\,(r_j - \mathrm{KL}(q\|m))}{T},

    :math:`r_c = \log q_c - \log m_c` (the derivative in :math:`q_c` is :math:`(1-\beta) r_c`:
    the mixture's own terms sum to zero). ``beta=0`` is the forward
    :math:`\mathrm{KL}(p\|q)` and ``beta=1`` the reverse :math:`\mathrm{KL}(q\|p)`, special
    cases exactly as in TRL and Liger (the formula itself tends to 0 at both ends, so the loss
    jumps there). ``beta=0.5`` is the symmetric Jensen-Shannon divergence, at most
    :math:`\log 2`. No :math:`T^2` factor is applied. The table mapping these arguments to
    TRL's and Liger's is in :mod:`crossent.divergences`.

    Parameters
    ----------
    logits : array_like
        The student's logits, classes along ``axis``.
    target_logits : array_like
        The teacher's logits, the shape of ``logits``.
    axis : int, default -1
        The class axis.
    beta : float, default 0.5
        The teacher's weight :math:`\beta \in [0, 1]` in the mixture.
    temperature : float, default 1.0
        :math:`T > 0`, dividing both models' logits.
    where : array_like of bool, optional
        The rows that count (the logits' shape without ``axis``); others give 0.
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" divides the sum by the number of counted rows ("batchmean"; 0 when none).

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the logits' floating dtype, or the per-row values for "none".

    Notes
    -----
    ``log m`` is a log-sum-exp of :math:`\log\beta + \log p` and :math:`\log(1-\beta) + \log q`
    where the mixture would underflow. For :math:`0 < \beta < 1` a class masked (``-inf``) on
    one side keeps finite mass in the mixture, so the divergence stays finite; a class masked
    on both sides costs nothing. ``beta`` 0 and 1 have the KL's edges (see
    :func:`softmax_kl_divergence`). A row holding NaN or ``+inf``, or with every logit ``-inf``
    on either side, gives NaN.

    References
    ----------
    R. Agarwal et al., "On-Policy Distillation of Language Models", ICLR 2024; TRL
    ``GKDTrainer.generalized_jsd_loss``; Liger-Kernel ``LigerJSD``.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> student = np.zeros((1, 2))                 # q = (0.5, 0.5)
    >>> teacher = np.array([[0.0, -np.inf]])       # p = (1, 0): the second class masked
    >>> round(float(crossent.softmax_js_divergence(student, teacher)), 6)
    0.215762
    >>> round(float(crossent.softmax_js_divergence(student, teacher, beta=0.0)), 6)  # KL(p||q) = log 2
    0.693147
    """
    return _softmax_js_divergence(logits, target_logits, axis=axis, beta=beta,
                                  temperature=temperature, where=where, reduction=reduction)[0]


# value_and_grad / grad differentiate these like the losses (with respect to ``logits``)
_IMPLEMENTATIONS[softmax_kl_divergence] = _softmax_kl_divergence
_IMPLEMENTATIONS[softmax_js_divergence] = _softmax_js_divergence
