"""Plain NumPy reference of every loss and its gradient: the readable specification.

Each function takes validated, canonical inputs (float64; the class axis last, rows flattened
to ``(N, C)`` for the softmax losses; element-wise arrays for the binary ones) and its loss
family's options object (:mod:`crossent._options`; the reduction there is not applied) and returns
``(loss, grad)``: the per-row (or per-element) losses and the gradient of each row's own loss
with respect to its inputs. Reductions are applied by :mod:`crossent.losses`. The compiled
kernels compute the same quantities and are tested against these functions.

Conventions: a ``-inf`` logit is a masked class (it keeps ``-inf`` through the soft-cap, gets
no probability, no smoothing mass and no gradient, and the smoothing count ``C'`` excludes
it); a zero coefficient times an infinite logarithm is 0.
"""

from __future__ import annotations

import numpy as np

from ._options import BinaryOptions, NLLOptions, SoftmaxCEOptions, SoftmaxFocalOptions

__all__ = [
    "normalize_rows",
    "softmax_cross_entropy_index",
    "softmax_cross_entropy_dense",
    "nll",
    "softmax_focal",
    "sigmoid_binary_cross_entropy",
    "binary_cross_entropy",
    "sigmoid_focal",
    "softmax_divergence",
]


# ----------------------------------------------------------------------------- helpers
def _softcap(x, softcap):
    """z = s tanh(x / s) and dz/dx = sech^2(x / s); -inf (masked) stays -inf (dz/dx 0).

    sech^2(a) = 1 - tanh^2(a) = 4e / (1 + e)^2 with e = exp(-2|a|): the second form has no
    subtraction, where the first loses its digits to the rounding of tanh near |tanh| = 1."""
    if softcap is None:
        return x, None
    masked = x == -np.inf
    a = np.where(masked, 0.0, x) / softcap
    z = np.where(masked, -np.inf, softcap * np.tanh(a))
    e = np.exp(-2.0 * np.abs(a))
    dz = np.where(masked, 0.0, 4.0 * e / (1.0 + e) ** 2)
    return z, dz


def _log_softmax_rows(z, temperature=1.0):
    """Return (log p, lse) per row of p = softmax(z / T), with lse = m / T + log s computed
    shifted.

    The row's maximum m is subtracted before the division by T: z_c - m is exact for logits
    close to m (Sterbenz), where z_c / T - m / T would round each quotient at the size of m / T
    (1e4 / 0.1 loses 1.5e-11 per logit, more than the difference of two close logits)."""
    m = np.max(z, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (z - m) / temperature
        log_s = np.log(np.sum(np.exp(d), axis=1, keepdims=True))
        logp = d - log_s  # log p_c = z_c / T - lse, shifted: no digits lost to large logits
    return logp, m / temperature + log_s


def _zero_times(coef, value):
    """coef * value, with 0 * (+-inf or NaN) = 0 where coef is 0."""
    with np.errstate(invalid="ignore"):
        return np.where(coef == 0, 0.0, coef * value)


def _log1mexp(a):
    """log(1 - e^a) for a <= 0 (Maechler 2012): log(-expm1(a)) near 0, log1p(-e^a) below -ln 2."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > -np.log(2.0), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def _log_sigmoid(x):
    # log sigma(x) = min(x, 0) - log1p(e^(-|x|))
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


# ----------------------------------------------------------------------------- normalisation
def normalize_rows(x, log_space):
    """Per row of ``(N, C)`` logits: ``lse = m + log sum_c exp(x_c - m)`` (m the maximum, or 0
    where it is not finite) and ``log p = (x - m) - log s`` (``log_space``) or ``p = exp(log p)``.
    A row of -inf or one holding +inf gives NaN probabilities; NaN gives NaN."""
    logp, lse = _log_softmax_rows(x)
    return lse[:, 0], (logp if log_space else np.exp(logp))


# ----------------------------------------------------------------------------- softmax family
def softmax_cross_entropy_index(logits, labels, options=None):
    r"""Softmax cross-entropy of ``(N, C)`` logits against class indices, with the
    :class:`~crossent._options.SoftmaxCEOptions` ``options`` (default: none).

    With z = softcap(x), lse = logsumexp(z), p = softmax(z), C' the number of unmasked
    classes and w the class weights (ones by default):

        l_n = (1-eps) w_y (lse - z_y) + (eps/C') sum_c w_c (lse - z_c) + z_loss w_y lse^2

    dl/dz_j = p_j [(1-eps) w_y + (eps/C') W + 2 z_loss w_y lse] - (eps/C') w_j - (1-eps) w_y [j=y]
    with W = sum_c w_c; then dl/dx_j = dl/dz_j * dz_j/dx_j. Ignored rows: loss 0, gradient 0.
    """
    o = SoftmaxCEOptions() if options is None else options
    n, c = logits.shape
    w = np.ones(c) if o.weight is None else o.weight
    z, dz = _softcap(logits, o.softcap)
    logp, lse = _log_softmax_rows(z)
    ignored = (labels == o.ignore_index) if o.ignore_index is not None else np.zeros(n, bool)
    y = np.where(ignored, 0, labels)
    rows = np.arange(n)
    unmasked = z != -np.inf
    c_eff = np.maximum(unmasked.sum(axis=1, keepdims=True), 1)
    w_y = w[y][:, None]
    eps, z_loss = o.label_smoothing, o.z_loss

    nll_y = -logp[rows, y][:, None]
    with np.errstate(invalid="ignore"):  # 0 * inf on masked classes, discarded by the where
        smooth = np.sum(np.where(unmasked, w * -logp, 0.0), axis=1, keepdims=True)
    loss = _zero_times((1 - eps) * w_y, nll_y)  # a zero coefficient on a masked target is 0
    if eps > 0:
        loss = loss + eps / c_eff * smooth
    if z_loss > 0:
        with np.errstate(invalid="ignore"):  # 0 * inf when every class is masked: replaced below
            loss = loss + z_loss * w_y * lse**2
    loss = np.where(lse == -np.inf, np.inf, loss)  # every class masked: p_y = 0

    p = np.exp(logp)
    w_sum = np.sum(np.where(unmasked, w, 0.0), axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # a fully masked row (lse = -inf) has no gradient: NaN
        a = (1 - eps) * w_y + eps / c_eff * w_sum + 2 * z_loss * w_y * lse
        grad = p * a - np.where(unmasked, eps / c_eff * w, 0.0)
    grad[rows, y] -= (1 - eps) * w_y[:, 0]
    if dz is not None:
        grad = grad * dz
    loss = np.where(ignored[:, None], 0.0, loss)[:, 0]
    grad = np.where(ignored[:, None], 0.0, grad)
    return loss, grad


def softmax_cross_entropy_dense(logits, targets, options=None):
    r"""Softmax cross-entropy of ``(N, C)`` logits against target distributions, with the
    :class:`~crossent._options.SoftmaxCEOptions` ``options`` (its ``ignore_index`` unused).

    With t~ = (1-eps) t + eps/C' on unmasked classes ((1-eps) t on masked ones):

        l_n = -sum_c w_c t~_c log p_c + z_loss lse^2
        dl/dz_j = p_j sum_c w_c t~_c - w_j t~_j + 2 z_loss lse p_j
    """
    o = SoftmaxCEOptions() if options is None else options
    n, c = logits.shape
    w = np.ones(c) if o.weight is None else o.weight
    z, dz = _softcap(logits, o.softcap)
    logp, lse = _log_softmax_rows(z)
    unmasked = z != -np.inf
    c_eff = np.maximum(unmasked.sum(axis=1, keepdims=True), 1)
    eps, z_loss = o.label_smoothing, o.z_loss
    t = (1 - eps) * targets + np.where(unmasked, eps / c_eff, 0.0)
    wt = w * t
    loss = np.sum(_zero_times(wt, -logp), axis=1, keepdims=True)
    if z_loss > 0:
        loss = loss + z_loss * lse**2
    loss = np.where(lse == -np.inf, np.inf, loss)
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):  # a fully masked row (lse = -inf) has no gradient: NaN
        grad = p * (np.sum(wt, axis=1, keepdims=True) + 2 * z_loss * lse) - wt
    if dz is not None:
        grad = grad * dz
    return loss[:, 0], grad


def nll(log_probs, labels, options=None):
    r"""Negative log-likelihood of ``(N, C)`` log-probabilities: l_n = -w_y log_probs[n, y],
    with the :class:`~crossent._options.NLLOptions` ``options``.

    dl/d log_probs[n, j] = -w_y [j = y].
    """
    o = NLLOptions() if options is None else options
    n, c = log_probs.shape
    w = np.ones(c) if o.weight is None else o.weight
    ignored = (labels == o.ignore_index) if o.ignore_index is not None else np.zeros(n, bool)
    y = np.where(ignored, 0, labels)
    rows = np.arange(n)
    loss = np.where(ignored, 0.0, -w[y] * log_probs[rows, y])
    grad = np.zeros_like(log_probs)
    grad[rows, y] = np.where(ignored, 0.0, -w[y])
    return loss, grad


def softmax_focal(logits, labels, options=None):
    r"""Softmax focal loss (Lin et al. 2017) of ``(N, C)`` logits against class indices, with
    the :class:`~crossent._options.SoftmaxFocalOptions` ``options``.

    With lp = log p_y and u = 1 - p_y (from lp without cancellation, u = -expm1(lp)):

        l_n = -alpha_y u^gamma lp
        dl/dz_j = alpha_y (p_j - [j=y]) u^gamma (1 - gamma p_y lp / u)

    where lp/u -> -1 as u -> 0, so gamma < 1 stays finite. ``alpha`` is None, or per class.
    A row whose classes are all masked has p_y = 0 (loss inf, as in the cross-entropy); a zero
    alpha_y zeroes the row's loss and gradient even then.
    """
    o = SoftmaxFocalOptions() if options is None else options
    n, c = logits.shape
    a = np.ones(c) if o.alpha is None else o.alpha
    gamma = o.gamma
    ignored = (labels == o.ignore_index) if o.ignore_index is not None else np.zeros(n, bool)
    y = np.where(ignored, 0, labels)
    rows = np.arange(n)
    logp, lse = _log_softmax_rows(logits)
    lp = np.where(lse[:, 0] == -np.inf, -np.inf, logp[rows, y])  # every class masked: p_y = 0
    p_y = np.exp(lp)
    u = -np.expm1(lp)  # 1 - p_y
    u_gamma = np.power(u, gamma)  # 0^0 = 1
    loss = _zero_times(a[y] * u_gamma, -lp)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(u == 0, -1.0, lp / u)  # lp / u -> -1 as u -> 0
    g = u_gamma * (1.0 - gamma * _zero_times(p_y, r))
    grad = np.exp(logp)
    grad[rows, y] -= 1.0
    grad = _zero_times((a[y] * g)[:, None], grad)
    loss = np.where(ignored, 0.0, loss)
    grad = np.where(ignored[:, None], 0.0, grad)
    return loss, grad


# ----------------------------------------------------------------------------- binary family
def sigmoid_binary_cross_entropy(logits, targets, options=None):
    r"""Element-wise binary cross-entropy of logits, with the
    :class:`~crossent._options.BinaryOptions` ``options`` (weight w, pos_weight pw,
    label_smoothing eps) and t' = t (1-eps) + eps/2:

        l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)]
        dl/dx = w [sigma(x) (pw t' + 1 - t') - pw t'] = w [(1-t') sigma(x) - pw t' sigma(-x)]

    1 - t' is formed as (1-t)(1-eps) + eps/2, not as 1 - t': near t' = 1 the subtraction would
    lose its digits, and x = 1e15 multiplies them. The gradient uses the second form, two
    accurate terms with no 1 - sigma(x) in it.
    """
    o = BinaryOptions() if options is None else options
    eps = o.label_smoothing
    t = targets * (1 - eps) + eps / 2
    one_minus_t = (1 - targets) * (1 - eps) + eps / 2
    pw = 1.0 if o.pos_weight is None else o.pos_weight
    w = 1.0 if o.weight is None else o.weight
    # log(1 - sigma(x)) = log sigma(-x)
    ls, lsn = _log_sigmoid(logits), _log_sigmoid(-logits)
    loss = -w * (_zero_times(pw * t, ls) + _zero_times(one_minus_t, lsn))
    grad = w * (one_minus_t * np.exp(ls) - pw * t * np.exp(lsn))
    return loss, grad


def binary_cross_entropy(probs, targets, options=None):
    r"""Element-wise binary cross-entropy of probabilities, exact (no clamping), with the
    ``weight`` w of the :class:`~crossent._options.BinaryOptions` ``options``:

        l = -w [t log p + (1-t) log(1-p)],  dl/dp = w [-t/p + (1-t)/(1-p)]

    with 0 log 0 = 0; p = 0 with t > 0 (or p = 1 with t < 1) gives inf.
    """
    o = BinaryOptions() if options is None else options
    w = 1.0 if o.weight is None else o.weight
    with np.errstate(divide="ignore"):
        log_p = np.log(probs)
        log_1mp = np.log1p(-probs)  # log(1 - p) without cancellation for small p
        # a zero weight zeroes its element even where the logarithm is infinite
        loss = -_zero_times(w, _zero_times(targets, log_p) + _zero_times(1 - targets, log_1mp))
        # -t/p rather than t * (-1/p): 1/p overflows for subnormal p where t/p need not
        t, omt = np.broadcast_arrays(targets, 1 - targets)
        d_log_p = -np.divide(t, probs, out=np.zeros(np.broadcast(t, probs).shape), where=t != 0)
        d_log_1mp = np.divide(omt, 1 - probs, out=np.zeros(np.broadcast(omt, probs).shape), where=omt != 0)
        grad = _zero_times(w, d_log_p + d_log_1mp)
    return loss, grad


def sigmoid_focal(logits, targets, options=None):
    r"""Element-wise sigmoid focal loss (Lin et al. 2017; torchvision's definition), in log space,
    with the ``alpha`` and ``gamma`` of the :class:`~crossent._options.BinaryOptions` ``options``.

    With u = 1 - p_t = t sigma(-x) + (1-t) sigma(x), ce the binary cross-entropy and
    alpha_t = alpha t + (1-alpha)(1-t) (1 when alpha is None):

        l = alpha_t u^gamma ce
        dl/dx = alpha_t u^gamma [gamma (du/dx / u) ce + sigma(x) - t],
        du/dx / u = (1 - 2t) sigma(x) sigma(-x) / u = (1 - 2t) exp(ls + lsn - log u)

    |du/dx / u| <= max(sigma(x), sigma(-x)) <= 1, and u = 0 only for a hard target with the
    logit infinite on its side, where ce = 0: the term (du/dx / u) ce is then its limit 0 (not
    exp(-inf - -inf) * 0 = NaN).
    """
    o = BinaryOptions() if options is None else options
    alpha, gamma = o.alpha, o.gamma
    ls, lsn = _log_sigmoid(logits), _log_sigmoid(-logits)
    ce = -(_zero_times(targets, ls) + _zero_times(1 - targets, lsn))
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf; NaN logits stay NaN
        log_u = np.logaddexp(np.log(targets) + lsn, np.log1p(-targets) + ls)
    u_gamma = np.exp(gamma * log_u) if gamma != 0 else np.ones_like(log_u)
    alpha_t = 1.0 if alpha is None else alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * u_gamma * ce
    with np.errstate(invalid="ignore"):  # -inf - -inf where u = 0: replaced by the limit
        ratio_ce = np.where(log_u == -np.inf, 0.0, (1 - 2 * targets) * np.exp(ls + lsn - log_u) * ce)
    grad = alpha_t * u_gamma * (_zero_times(gamma, ratio_ce) + np.exp(ls) - targets)
    return loss, grad


# ----------------------------------------------------------------------------- divergences
def softmax_divergence(logits, target_logits, kind, beta=0.5, temperature=1.0):
    r"""Per-row divergence of q = softmax(logits / T) (student) from p = softmax(target_logits
    / T) (teacher), and its gradient with respect to ``logits``.

    With a = log p, b = log q and, for the JSD, m = beta p + (1-beta) q:

        "forward" KL(p || q) = sum_c p_c (a_c - b_c)       d/dx_j = (q_j - p_j) / T
        "reverse" KL(q || p) = sum_c q_c r_c, r = b - a      d/dx_j = q_j (r_j - KL) / T
        "jsd"     beta KL(p || m) + (1-beta) KL(q || m)      d/dx_j = (1-beta) q_j (r_j - KL(q || m)) / T
                  with r = b - log m

    (for the JSD, d/dq_c = (1-beta) r_c: the mixture's own terms sum to zero). A class masked
    (-inf) on the weighting side has no mass and costs nothing; one masked only on the other
    side costs inf (its mass is positive even where exp underflows); a masked student logit
    gets no gradient. A row holding NaN or +inf, or with every
    logit -inf on either side, has no distribution: NaN value and gradient.
    """
    masked_s, masked_t = logits == -np.inf, target_logits == -np.inf
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        b, _ = _log_softmax_rows(logits, temperature)
        a, _ = _log_softmax_rows(target_logits, temperature)
        p, q = np.exp(a), np.exp(b)
        if kind == "forward":  # p_c > 0 wherever the teacher's logit is finite, even if it underflows
            loss = np.sum(np.where(masked_t, 0.0, np.where(masked_s, np.inf, p * (a - b))), axis=1)
            grad = (q - p) / temperature
        else:
            if kind == "reverse":
                r = b - a
            else:  # log m = log(beta e^a + (1-beta) e^b)
                log_m = np.logaddexp(np.log(beta) + a, np.log1p(-beta) + b)
                r = b - log_m
            # r_j - sum_c q_c r_c cancels where r is large and q near one-hot: centre r on its
            # value r* at the student's top class first (sum_c q_c = 1)
            r_star = np.take_along_axis(r, np.argmax(logits, axis=1)[:, None], axis=1)
            r_star = np.where(np.isfinite(r_star), r_star, 0.0)
            terms = np.where(masked_s, 0.0, q * (r - r_star))
            if kind == "reverse":  # q_c > 0 where the student's logit is finite
                terms = np.where(masked_t & ~masked_s, np.inf, terms)
            k = np.sum(terms, axis=1, keepdims=True)
            weight = 1.0 if kind == "reverse" else 1.0 - beta
            grad = np.where(masked_s, 0.0, weight * q * ((r - r_star) - k) / temperature)
            loss = (r_star + k)[:, 0]
            if kind == "jsd":
                kl_p = np.sum(np.where(masked_t, 0.0, p * (a - log_m)), axis=1)
                loss = beta * kl_p + (1.0 - beta) * loss
    bad = ~(np.all(np.isfinite(logits) | (logits == -np.inf), axis=1)
            & np.all(np.isfinite(target_logits) | (target_logits == -np.inf), axis=1)
            & np.any(logits > -np.inf, axis=1) & np.any(target_logits > -np.inf, axis=1))
    loss = np.where(bad, np.nan, loss)
    grad = np.where(bad[:, None], np.nan, grad)
    return loss, grad
