"""Stable building blocks: logsumexp, softmax, log_softmax, sigmoid, log_sigmoid, one_hot,
smooth_labels.

Each accepts array-likes of float32 or float64 (float16 is computed in float32) and returns the
floating input's dtype; inputs are never modified. logsumexp, softmax and log_softmax run a
compiled row kernel (sums in float64; the reference is crossent._reference.normalize_rows);
the element-wise functions compute in float64.
"""

from __future__ import annotations

import numpy as np

from . import _checks, _dispatch, _layout

__all__ = ["logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid", "one_hot", "smooth_labels"]


def _normalize(x, axis, need_out, log_space):
    """Rows of ``x`` along ``axis`` through the kernel (or reference): ``(rows, lse, out)``."""
    rows = _layout.Rows(x, "x", axis)
    lse, out = _dispatch.normalize_rows(rows.block, need_out, log_space)
    return rows, lse, out


def logsumexp(x, *, axis=-1, keepdims=False):
    r"""Log of the sum of exponentials along ``axis``, without overflow.

    .. math:: \operatorname{lse}(x) = m + \log \sum_i e^{x_i - m}, \qquad m = \max_i x_i

    Parameters
    ----------
    x : array_like
        Real values, any shape with at least one dimension.
    axis : int, default -1
        The axis to reduce.
    keepdims : bool, default False
        Keep the reduced axis with length 1.

    Returns
    -------
    ndarray
        ``x``'s shape without ``axis`` (or with length 1 there). A row of ``-inf`` gives
        ``-inf``; a row holding ``+inf`` gives ``+inf``; NaN gives NaN.

    References
    ----------
    P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the log-sum-exp and
    softmax functions", IMA J. Numer. Anal. 41 (2021).

    Examples
    --------
    >>> import crossent
    >>> float(crossent.logsumexp([1000.0, 1000.0]))  # 1000 + log 2, no overflow
    1000.6931471805599
    """
    rows, lse, _ = _normalize(x, axis, False, True)
    out = rows.per_row(lse)
    return (np.expand_dims(out, rows.axis) if keepdims else out)[()]


def log_softmax(x, *, axis=-1):
    r"""Log of the softmax along ``axis``: :math:`\log p_i = x_i - \operatorname{lse}(x)`.

    Parameters
    ----------
    x : array_like
        Logits, any shape with at least one dimension.
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray
        Same shape and floating dtype as ``x``. A ``-inf`` logit gives ``-inf`` (a masked
        class); a row that is entirely ``-inf``, or that holds ``+inf``, has no defined
        distribution and gives NaN, as in SciPy and PyTorch.

    Examples
    --------
    >>> import crossent
    >>> crossent.log_softmax([0.0, 0.0]).round(6).tolist()
    [-0.693147, -0.693147]
    """
    rows, _, out = _normalize(x, axis, True, True)
    return rows.restore(out)


def softmax(x, *, axis=-1):
    r"""Softmax along ``axis``: :math:`p_i = e^{x_i} / \sum_j e^{x_j}`, computed shifted.

    Parameters
    ----------
    x : array_like
        Logits, any shape with at least one dimension.
    axis : int, default -1
        The class axis.

    Returns
    -------
    ndarray
        Probabilities of the same shape and floating dtype as ``x``; see :func:`log_softmax`
        for infinite inputs.

    Examples
    --------
    >>> import crossent
    >>> crossent.softmax([1.0, 2.0, 3.0]).round(4).tolist()
    [0.09, 0.2447, 0.6652]
    """
    rows, _, out = _normalize(x, axis, True, False)
    return rows.restore(out)


def sigmoid(x):
    r"""The logistic function :math:`\sigma(x) = 1 / (1 + e^{-x})`, without overflow.

    Parameters
    ----------
    x : array_like
        Real values.

    Returns
    -------
    ndarray
        Values in [0, 1], same shape and floating dtype as ``x``.

    Examples
    --------
    >>> import crossent
    >>> crossent.sigmoid([-800.0, 0.0, 800.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    x = _checks.check_floating(x, "x")
    xd = x.astype(np.float64)
    # sigma(x) = 1/(1 + e^-x) for x >= 0 and e^x/(1 + e^x) for x < 0: e^(-|x|) never overflows.
    e = np.exp(-np.abs(xd))
    out = np.where(xd >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return np.where(np.isnan(xd), xd, out).astype(x.dtype)[()]


def log_sigmoid(x):
    r"""Log of the logistic function, exact for large ``|x|``.

    .. math:: \log \sigma(x) = \min(x, 0) - \operatorname{log1p}(e^{-|x|})

    ``log_sigmoid(-x)`` is :math:`\log(1 - \sigma(x))`.

    Parameters
    ----------
    x : array_like
        Real values.

    Returns
    -------
    ndarray
        Values in (-inf, 0], same shape and floating dtype as ``x``.

    Examples
    --------
    >>> import crossent
    >>> crossent.log_sigmoid([-1000.0, 0.0]).round(6).tolist()
    [-1000.0, -0.693147]
    """
    x = _checks.check_floating(x, "x")
    xd = x.astype(np.float64)
    # log sigma(x) = min(x, 0) - log1p(e^(-|x|))
    return (np.minimum(xd, 0.0) - np.log1p(np.exp(-np.abs(xd)))).astype(x.dtype)[()]


def one_hot(labels, num_classes, *, dtype=np.float64):
    """One-hot encoding of integer class indices; the class axis is appended last.

    Parameters
    ----------
    labels : array_like of int
        Class indices in ``[0, num_classes)``, any shape.
    num_classes : int
        Number of classes ``C`` (at least 1).
    dtype : data-type, default float64
        Floating dtype of the result.

    Returns
    -------
    ndarray
        Shape ``labels.shape + (C,)``, with 1 at each label and 0 elsewhere.

    Raises
    ------
    TypeError
        If ``labels`` is not of an integer dtype.
    IndexError
        If a label lies outside ``[0, num_classes)``; the message names its position.

    Examples
    --------
    >>> import crossent
    >>> crossent.one_hot([1, 0], 3).tolist()
    [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    c = int(_checks.check_scalar(num_classes, "num_classes", low=1))
    if c != num_classes:
        raise TypeError(f"num_classes must be an integer, got {num_classes!r}")
    y = _checks.check_labels(labels, c, None)
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {dt}")
    out = np.zeros(y.shape + (c,), dtype=dt)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


def smooth_labels(targets, *, label_smoothing, axis=-1):
    r"""Mix target distributions with the uniform one: :math:`(1-\varepsilon)\,t + \varepsilon / C`.

    Parameters
    ----------
    targets : array_like
        Target probabilities in [0, 1] (for example from :func:`one_hot`).
    label_smoothing : float
        :math:`\varepsilon` in [0, 1].
    axis : int, default -1
        The class axis; ``C`` is its length.

    Returns
    -------
    ndarray
        Same shape and floating dtype as ``targets``.

    References
    ----------
    C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016.

    Examples
    --------
    >>> import crossent
    >>> crossent.smooth_labels([0.0, 1.0], label_smoothing=0.1).round(12).tolist()
    [0.05, 0.95]
    """
    t = _checks.check_floating(targets, "targets")
    ax = _checks.check_axis(axis, t.ndim)
    eps = _checks.check_scalar(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    _checks.check_unit_interval(t, "targets")
    return ((1.0 - eps) * t.astype(np.float64) + eps / t.shape[ax]).astype(t.dtype)
