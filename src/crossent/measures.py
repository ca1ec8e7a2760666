"""Information measures of probability distributions: entropy, cross-entropy, KL and JS divergence.

Inputs are probabilities along ``axis``; every row is checked to lie in [0, 1] and to sum to 1
(within a rounding tolerance proportional to the row length and the dtype). ``normalize=True``
accepts any non-negative rows (counts, say) and rescales them. Nothing is clipped: a zero
probability where the math needs a positive one gives ``inf``.
"""

from __future__ import annotations

import numpy as np

from . import _checks, _dispatch

__all__ = ["entropy", "cross_entropy", "kl_divergence", "js_divergence"]


def _prepare(p, name, axis, normalize):
    given = _checks.as_array(p, name).dtype
    arr = _checks.check_floating(p, name)
    ax = _checks.check_axis(axis, arr.ndim)
    # float16 rows are checked at float16's rounding tolerance, then computed in float32
    arr = _checks.check_distributions(arr, name, ax, bool(normalize),
                                      given_dtype=np.float16 if given == np.float16 else None)
    return arr, ax


def _prepare_pair(p, q, axis, normalize):
    p_arr, ax = _prepare(p, "p", axis, normalize)
    q_arr, _ = _prepare(q, "q", axis, normalize)
    _checks.check_same_shape(p_arr, q_arr, "p", "q")
    return p_arr, q_arr, ax, np.result_type(p_arr, q_arr)


def _finish(total, base, dtype):
    base = _checks.check_base(base)
    if base is not None:
        total = total / np.log(base)
    return np.asarray(total).astype(dtype)[()]


def _xlogy(x, y):
    """x log y with 0 log y = 0 for any y (the convention 0 log 0 = 0)."""
    with np.errstate(divide="ignore"):
        return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def _rel_entr(x, y):
    """x log(x / y), with 0 log(0 / y) = 0 and x log(x / 0) = inf for x > 0."""
    with np.errstate(divide="ignore", over="ignore"):
        ratio = x / np.where(y == 0, 1.0, y)
        # log(x / y), falling back to log x - log y where x / y would overflow.
        log_ratio = np.where(np.isfinite(ratio), np.log(np.where(ratio > 0, ratio, 1.0)),
                             np.log(np.where(x > 0, x, 1.0)) - np.log(np.where(y > 0, y, 1.0)))
    terms = np.where(y == 0, np.inf, x * log_ratio)
    return np.where(x == 0, 0.0, terms)


def entropy(p, *, axis=-1, base=None, normalize=False):
    r"""Shannon entropy :math:`H(p) = -\sum_i p_i \log p_i` of each distribution along ``axis``.

    Parameters
    ----------
    p : array_like
        Probabilities in [0, 1] whose rows along ``axis`` sum to 1.
    axis : int, default -1
        The axis holding each distribution.
    base : float, optional
        Base of the logarithm: None for nats, 2 for bits; any positive number other than 1.
    normalize : bool, default False
        Accept any non-negative rows and divide each by its sum first.

    Returns
    -------
    ndarray or numpy scalar
        ``p``'s shape without ``axis``; ``0 \log 0`` counts as 0. float32 inputs give float32.

    Raises
    ------
    ValueError
        A value outside [0, 1], or a row that does not sum to 1; the message names it.

    References
    ----------
    C. E. Shannon, "A Mathematical Theory of Communication", Bell Syst. Tech. J. 27 (1948).

    Examples
    --------
    A fair coin holds one bit; a 90:10 coin, less than half of one:

    >>> import crossent
    >>> float(crossent.entropy([0.5, 0.5], base=2))
    1.0
    >>> round(float(crossent.entropy([0.9, 0.1], base=2)), 3)
    0.469
    """
    fast = None if normalize else _dispatch.measure("entropy", p, None, axis)
    if fast is not None:  # the compiled kernel, rows validated in the same read
        return _finish(np.maximum(fast, 0.0), base, p.dtype)
    arr, ax = _prepare(p, "p", axis, normalize)
    total = -np.sum(_xlogy(arr.astype(np.float64), arr.astype(np.float64)), axis=ax)
    return _finish(np.maximum(total, 0.0), base, arr.dtype)


def cross_entropy(p, q, *, axis=-1, base=None, normalize=False):
    r"""Cross-entropy :math:`H(p, q) = -\sum_i p_i \log q_i` of ``q`` relative to ``p``.

    Parameters
    ----------
    p : array_like
        The true (target) distributions, probabilities along ``axis``.
    q : array_like
        The predicted distributions, same shape as ``p``.
    axis : int, default -1
        The axis holding each distribution.
    base : float, optional
        Base of the logarithm: None for nats, 2 for bits.
    normalize : bool, default False
        Accept any non-negative rows and divide each by its sum first.

    Returns
    -------
    ndarray or numpy scalar
        ``p``'s shape without ``axis``. Terms with :math:`p_i = 0` are 0; :math:`p_i > 0`
        with :math:`q_i = 0` gives ``inf``.

    Raises
    ------
    ValueError
        Values outside [0, 1], rows not summing to 1, or ``p`` and ``q`` of different shapes.

    See Also
    --------
    crossent.softmax_cross_entropy : the same quantity from logits, with gradients.

    Examples
    --------
    >>> import crossent
    >>> round(float(crossent.cross_entropy([0.0, 1.0, 0.0], [0.228, 0.619, 0.153])), 3)
    0.48
    >>> round(float(crossent.cross_entropy([0.8, 0.1, 0.1], [0.2, 0.2, 0.6])), 2)
    1.5
    """
    fast = None if normalize else _dispatch.measure("cross_entropy", p, q, axis)
    if fast is not None:
        return _finish(fast, base, p.dtype)
    p_arr, q_arr, ax, dtype = _prepare_pair(p, q, axis, normalize)
    total = -np.sum(_xlogy(p_arr.astype(np.float64), q_arr.astype(np.float64)), axis=ax)
    return _finish(total, base, dtype)


def kl_divergence(p, q, *, axis=-1, base=None, normalize=False):
    r"""Kullback-Leibler divergence :math:`D(p \,\|\, q) = \sum_i p_i \log(p_i / q_i) = H(p, q) - H(p)`.

    Parameters
    ----------
    p, q : array_like
        Distributions along ``axis``, same shape.
    axis : int, default -1
        The axis holding each distribution.
    base : float, optional
        Base of the logarithm: None for nats, 2 for bits.
    normalize : bool, default False
        Accept any non-negative rows and divide each by its sum first.

    Returns
    -------
    ndarray or numpy scalar
        Non-negative divergences; ``p_i = 0`` terms are 0, ``p_i > 0`` with ``q_i = 0`` gives
        ``inf``. Rounding never makes a result negative.

    References
    ----------
    S. Kullback, R. A. Leibler, "On Information and Sufficiency", Ann. Math. Statist. 22 (1951).

    Examples
    --------
    >>> import crossent
    >>> p, q = [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]
    >>> round(float(crossent.kl_divergence(p, q)), 4)
    0.8605
    """
    fast = None if normalize else _dispatch.measure("kl_divergence", p, q, axis)
    if fast is not None:
        return _finish(np.maximum(fast, 0.0), base, p.dtype)
    p_arr, q_arr, ax, dtype = _prepare_pair(p, q, axis, normalize)
    total = np.sum(_rel_entr(p_arr.astype(np.float64), q_arr.astype(np.float64)), axis=ax)
    return _finish(np.maximum(total, 0.0), base, dtype)


def js_divergence(p, q, *, axis=-1, base=None, normalize=False):
    r"""Jensen-Shannon divergence :math:`\tfrac12 D(p\|m) + \tfrac12 D(q\|m)`, :math:`m = (p+q)/2`.

    Symmetric, always finite, between 0 and :math:`\log 2` (one bit). SciPy's
    ``scipy.spatial.distance.jensenshannon`` returns its square root (a metric).

    Parameters
    ----------
    p, q : array_like
        Distributions along ``axis``, same shape.
    axis : int, default -1
        The axis holding each distribution.
    base : float, optional
        Base of the logarithm: None for nats, 2 for bits.
    normalize : bool, default False
        Accept any non-negative rows and divide each by its sum first.

    Returns
    -------
    ndarray or numpy scalar
        ``p``'s shape without ``axis``.

    References
    ----------
    J. Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37 (1991).

    Examples
    --------
    >>> import crossent
    >>> float(crossent.js_divergence([1.0, 0.0], [0.0, 1.0], base=2))
    1.0
    """
    fast = None if normalize else _dispatch.measure("js_divergence", p, q, axis)
    if fast is not None:
        return _finish(np.clip(fast, 0.0, np.log(2.0)), base, p.dtype)
    p_arr, q_arr, ax, dtype = _prepare_pair(p, q, axis, normalize)
    pd, qd = p_arr.astype(np.float64), q_arr.astype(np.float64)
    # p log(p/m) = (1/2) (2p) log(2p/(p+q)): with s = p + q rather than m = s/2, a subnormal
    # entry does not underflow to m = 0 (which would make a tiny term infinite).
    s = pd + qd
    total = 0.25 * np.sum(_rel_entr(2 * pd, s) + _rel_entr(2 * qd, s), axis=ax)
    return _finish(np.clip(total, 0.0, np.log(2.0)), base, dtype)
