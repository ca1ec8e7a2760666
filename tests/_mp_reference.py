"""A 50-digit mpmath reference of every crossent loss (value and gradient) and utility.

Written from the formulas of SPEC §3 and the textbook derivatives, independently of
``crossent._reference`` and the kernels: no NumPy arithmetic touches a value, inputs are
converted exactly (a float32 or float64 number is a dyadic rational, held exactly by an mpf of
166 bits), and every quantity that could cancel is formed without cancellation:

* ``lse - z_c = log1p(sum_{k != argmax} e^(z_k - m)) + (m - z_c)``, ``m = max z``: both parts
  are non-negative, so ``-log p_c`` keeps its digits even when ``p_c`` is within 1e-8000 of 1;
* ``1 - p_y = sum_{k != y} p_k`` and ``1 - sigma(x) = sigma(-x)``;
* ``d tanh(x/s) / dx = sech(x/s)^2``, ``sigma(x) - t = (1-t) sigma(x) - t sigma(-x)``.

mpmath has no overflow, so ``e^(1e4)`` is just a big number. Every function returns plain
Python lists of mpf (losses per row, gradients per row and class) and the reduction helpers
below turn them into the value and gradient a reduction produces.
"""

from __future__ import annotations

import mpmath
import numpy as np

DPS = 50
INF = mpmath.inf


def mpf(v) -> mpmath.mpf:
    """The exact mpf of a float32/float64/int value (float32 -> float64 is exact)."""
    return mpmath.mpf(float(v))


def _rows(a):
    """Rows of mpf from an array, or from nested lists of mpf (kept as they are)."""
    if isinstance(a, list):
        return [[mpmath.mpf(v) for v in row] for row in a]
    return [[mpf(v) for v in row] for row in np.asarray(a, dtype=np.float64)]


def _flat(a):
    if isinstance(a, list):
        return [mpmath.mpf(v) for row in a for v in row]
    return [mpf(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _log_sigmoid(x):
    return -mpmath.log1p(mpmath.exp(-x))


# ----------------------------------------------------------------------------- softmax rows
def _softmax_parts(z, live):
    """For logits ``z`` (masked entries excluded by ``live``): (lse, [-log p_c], [p_c])."""
    idx = [c for c in range(len(z)) if live[c]]
    top = max(idx, key=lambda c: z[c])
    m = z[top]
    rest = mpmath.fsum(mpmath.exp(z[c] - m) for c in idx if c != top)
    log_s = mpmath.log1p(rest)  # log sum_c e^(z_c - m), the sum being 1 + rest
    nlogp = [log_s + (m - z[c]) if live[c] else INF for c in range(len(z))]
    p = [mpmath.exp(-v) if live[c] else mpmath.mpf(0) for c, v in enumerate(nlogp)]
    return m + log_s, nlogp, p


def softmax_cross_entropy(logits, targets, *, weight=None, ignore_index=None,
                          label_smoothing=0.0, z_loss=0.0, softcap=None):
    """Per-row losses, per-row gradients d l_n / d x_n, and the "mean" denominator.

    ``logits``: (N, C); ``targets``: (N,) integers or (N, C) floats.
    """
    with mpmath.workdps(DPS):
        x_rows = _rows(logits)
        n, c = len(x_rows), len(x_rows[0])
        w = [mpmath.mpf(1)] * c if weight is None else _flat(weight)
        eps, zl = mpf(label_smoothing), mpf(z_loss)
        t_arr = np.asarray(targets)
        dense = t_arr.dtype.kind == "f"
        t_rows = _rows(t_arr) if dense else None
        losses, grads, denominator = [], [], mpmath.mpf(0)
        for i in range(n):
            x = x_rows[i]
            live = [v != -INF for v in x]
            if not dense and ignore_index is not None and int(t_arr[i]) == ignore_index:
                losses.append(mpmath.mpf(0))
                grads.append([mpmath.mpf(0)] * c)
                continue
            if softcap is None:
                z, dz = list(x), [mpmath.mpf(1)] * c
            else:
                s = mpf(softcap)
                z = [s * mpmath.tanh(v / s) if live[k] else -INF for k, v in enumerate(x)]
                dz = [mpmath.sech(v / s) ** 2 if live[k] else mpmath.mpf(0) for k, v in enumerate(x)]
            n_live = sum(live)
            share = eps / n_live if n_live else mpmath.mpf(0)
            if dense:
                coef = [w[k] * ((1 - eps) * t_rows[i][k] + (share if live[k] else 0)) for k in range(c)]
                w_lse = mpmath.mpf(1)
                denominator += 1
            else:
                y = int(t_arr[i])
                coef = [w[k] * (share if live[k] else 0) for k in range(c)]
                coef[y] += (1 - eps) * w[y]
                w_lse = w[y]
                denominator += w[y]
            if n_live == 0 or any(coef[k] > 0 and not live[k] for k in range(c)):
                losses.append(INF)  # a target class (or every class) has probability 0
                grads.append([mpmath.nan] * c)
                continue
            lse, nlogp, p = _softmax_parts(z, live)
            loss = mpmath.fsum(coef[k] * nlogp[k] for k in range(c) if coef[k] != 0)
            loss += zl * w_lse * lse ** 2
            total = mpmath.fsum(coef)
            a = total + 2 * zl * w_lse * lse
            # d l / d z_j = p_j (sum_c coef_c + 2 z_loss w lse) - coef_j ; d z_j / d x_j = sech^2
            g = [(p[k] * a - coef[k]) * dz[k] if live[k] else mpmath.mpf(0) for k in range(c)]
            losses.append(loss)
            grads.append(g)
        return losses, grads, denominator


def nll_loss(log_probs, labels, *, weight=None, ignore_index=None):
    with mpmath.workdps(DPS):
        rows = _rows(log_probs)
        c = len(rows[0])
        w = [mpmath.mpf(1)] * c if weight is None else _flat(weight)
        losses, grads, denominator = [], [], mpmath.mpf(0)
        for i, y in enumerate(np.asarray(labels).ravel()):
            y = int(y)
            g = [mpmath.mpf(0)] * c
            if ignore_index is not None and y == ignore_index:
                losses.append(mpmath.mpf(0))
            else:
                losses.append(-w[y] * rows[i][y])
                g[y] = -w[y]
                denominator += w[y]
            grads.append(g)
        return losses, grads, denominator


def softmax_focal_loss(logits, labels, *, alpha=None, gamma=2.0, ignore_index=None):
    """FL = -alpha_y (1 - p_y)^gamma log p_y and its gradient with respect to the logits:

    d FL / d x_j = -alpha_y ([j=y] - p_j) [u^gamma - gamma p_y u^(gamma-1) log p_y],  u = 1 - p_y.
    """
    with mpmath.workdps(DPS):
        rows = _rows(logits)
        c = len(rows[0])
        if alpha is None:
            a = [mpmath.mpf(1)] * c
        elif np.ndim(alpha) == 0:
            a = [mpf(alpha)] * c
        else:
            a = _flat(alpha)
        gm = mpf(gamma)
        losses, grads, denominator = [], [], mpmath.mpf(0)
        for i, y in enumerate(np.asarray(labels).ravel()):
            y = int(y)
            if ignore_index is not None and y == ignore_index:
                losses.append(mpmath.mpf(0))
                grads.append([mpmath.mpf(0)] * c)
                continue
            denominator += 1
            x = rows[i]
            live = [v != -INF for v in x]
            if not any(live):  # every class masked: p_y = 0, as for the cross-entropy
                losses.append(mpmath.mpf(0) if a[y] == 0 else INF)
                grads.append([mpmath.mpf(0) if a[y] == 0 else mpmath.nan] * c)
                continue
            _, nlogp, p = _softmax_parts(x, live)
            u = mpmath.fsum(p[k] for k in range(c) if k != y)  # 1 - p_y without cancellation
            lp = -nlogp[y]
            u_g = mpmath.mpf(1) if gm == 0 else (u ** gm if u > 0 else mpmath.mpf(0))
            # a zero coefficient times an infinite log (a masked target) is 0
            losses.append(mpmath.mpf(0) if a[y] * u_g == 0 else -a[y] * u_g * lp)
            if a[y] == 0:  # the loss is 0 around this point: so is its gradient
                grads.append([mpmath.mpf(0)] * c)
                continue
            if u > 0:  # p_y log p_y -> 0 as p_y -> 0 (a masked target)
                bracket = u_g - (gm * p[y] * u ** (gm - 1) * lp if p[y] != 0 else 0)
            else:  # u = 0 only for a single class, where [j=y] - p_j = 0 anyway
                bracket = mpmath.mpf(1) if gm == 0 else mpmath.mpf(0)
            grads.append([-a[y] * ((1 if k == y else 0) - p[k]) * bracket for k in range(c)])
        return losses, grads, denominator


# ----------------------------------------------------------------------------- binary family
def _broadcast(v, shape):
    return None if v is None else np.broadcast_to(np.asarray(v, dtype=np.float64), shape)


def sigmoid_binary_cross_entropy(logits, targets, *, weight=None, pos_weight=None,
                                 label_smoothing=0.0):
    """l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)], t' = t(1-eps) + eps/2;
    dl/dx = w [(1-t') sigma(x) - pw t' sigma(-x)]. Element-wise, flattened."""
    with mpmath.workdps(DPS):
        shape = np.shape(logits)
        xs, ts = _flat(logits), _flat(targets)
        ws = _flat(_broadcast(weight, shape)) if weight is not None else [mpmath.mpf(1)] * len(xs)
        pws = _flat(_broadcast(pos_weight, shape)) if pos_weight is not None else [mpmath.mpf(1)] * len(xs)
        eps = mpf(label_smoothing)
        losses, grads = [], []
        for x, t, w, pw in zip(xs, ts, ws, pws):
            t = t * (1 - eps) + eps / 2
            losses.append(-w * (pw * t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x)))
            grads.append(w * ((1 - t) * _sigmoid(x) - pw * t * _sigmoid(-x)))
        return losses, grads, mpmath.mpf(len(xs))


def binary_cross_entropy(probs, targets, *, weight=None):
    """l = -w [t log p + (1-t) log(1-p)] (0 log 0 = 0); dl/dp = w [(1-t)/(1-p) - t/p]."""
    with mpmath.workdps(DPS):
        shape = np.shape(probs)
        ps, ts = _flat(probs), _flat(targets)
        ws = _flat(_broadcast(weight, shape)) if weight is not None else [mpmath.mpf(1)] * len(ps)
        losses, grads = [], []
        for p, t, w in zip(ps, ts, ws):
            pos = 0 if t == 0 else (INF if p == 0 else -t * mpmath.log(p))
            neg = 0 if t == 1 else (INF if p == 1 else -(1 - t) * mpmath.log(1 - p))
            losses.append(w * (pos + neg) if w != 0 else mpmath.mpf(0))
            dpos = 0 if t == 0 else (-INF if p == 0 else -t / p)
            dneg = 0 if t == 1 else (INF if p == 1 else (1 - t) / (1 - p))
            grads.append(w * (dpos + dneg) if w != 0 else mpmath.mpf(0))
        return losses, grads, mpmath.mpf(len(ps))


def sigmoid_focal_loss(logits, targets, *, alpha=0.25, gamma=2.0):
    """torchvision's FL = alpha_t u^gamma ce, u = t sigma(-x) + (1-t) sigma(x);
    dFL/dx = alpha_t [gamma u^(gamma-1) (1-2t) sigma(x) sigma(-x) ce + u^gamma (sigma(x) - t)]."""
    with mpmath.workdps(DPS):
        xs, ts = _flat(logits), _flat(targets)
        gm = mpf(gamma)
        losses, grads = [], []
        for x, t in zip(xs, ts):
            sp, sn = _sigmoid(x), _sigmoid(-x)
            ce = -(t * _log_sigmoid(x) + (1 - t) * _log_sigmoid(-x))
            u = t * sn + (1 - t) * sp
            a_t = mpmath.mpf(1) if alpha is None else mpf(alpha) * t + (1 - mpf(alpha)) * (1 - t)
            u_g = mpmath.mpf(1) if gm == 0 else u ** gm
            losses.append(a_t * u_g * ce)
            du = (1 - 2 * t) * sp * sn
            dce = (1 - t) * sp - t * sn
            grads.append(a_t * ((gm * u ** (gm - 1) * du * ce if gm != 0 else 0) + u_g * dce))
        return losses, grads, mpmath.mpf(len(xs))


# ----------------------------------------------------------------------------- reductions
def reduce(losses, grads, denominator, reduction):
    """The value and the gradient (same nesting as ``grads``) of a reduction, as mpf."""
    with mpmath.workdps(DPS):
        if reduction == "none":
            return losses, None
        total = mpmath.fsum(losses)
        scale = mpmath.mpf(1)
        if reduction == "mean":  # SPEC §3.2: a mean with a zero denominator is 0, gradient 0
            scale = 1 / denominator if denominator != 0 else mpmath.mpf(0)
            total = total * scale if denominator != 0 else mpmath.mpf(0)

        def scaled(g):
            return [scaled(v) for v in g] if isinstance(g, list) else g * scale

        return total, scaled(grads)


# ----------------------------------------------------------------------------- utilities
def logsumexp_rows(x):
    with mpmath.workdps(DPS):
        out = []
        for row in _rows(x):
            live = [v != -INF for v in row]
            out.append(_softmax_parts(row, live)[0] if any(live) else -INF)
        return out


def log_softmax_rows(x):
    with mpmath.workdps(DPS):
        return [[-v for v in _softmax_parts(row, [v != -INF for v in row])[1]] for row in _rows(x)]


def softmax_rows(x):
    with mpmath.workdps(DPS):
        return [_softmax_parts(row, [v != -INF for v in row])[2] for row in _rows(x)]


def sigmoid(x):
    with mpmath.workdps(DPS):
        return [_sigmoid(v) for v in _flat(x)]


def log_sigmoid(x):
    with mpmath.workdps(DPS):
        return [_log_sigmoid(v) for v in _flat(x)]


def entropy_rows(p):
    with mpmath.workdps(DPS):
        return [-mpmath.fsum(v * mpmath.log(v) for v in row if v > 0) for row in _rows(p)]


def cross_entropy_rows(p, q):
    with mpmath.workdps(DPS):
        out = []
        for pr, qr in zip(_rows(p), _rows(q)):
            if any(a > 0 and b == 0 for a, b in zip(pr, qr)):
                out.append(INF)
            else:
                out.append(-mpmath.fsum(a * mpmath.log(b) for a, b in zip(pr, qr) if a > 0))
        return out


def kl_rows(p, q):
    with mpmath.workdps(DPS):
        out = []
        for pr, qr in zip(_rows(p), _rows(q)):
            if any(a > 0 and b == 0 for a, b in zip(pr, qr)):
                out.append(INF)
            else:
                out.append(mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(pr, qr) if a > 0))
        return out


def js_rows(p, q):
    with mpmath.workdps(DPS):
        out = []
        for pr, qr in zip(_rows(p), _rows(q)):
            m = [(a + b) / 2 for a, b in zip(pr, qr)]
            kl_p = mpmath.fsum(a * mpmath.log(a / c) for a, c in zip(pr, m) if a > 0)
            kl_q = mpmath.fsum(b * mpmath.log(b / c) for b, c in zip(qr, m) if b > 0)
            out.append((kl_p + kl_q) / 2)
        return out


# ----------------------------------------------------------------------------- comparison
def to_float(values) -> np.ndarray:
    """Nested lists of mpf (or one mpf) as a float64 array (correctly rounded)."""
    if isinstance(values, list):
        return np.array([to_float(v) for v in values], dtype=np.float64)
    return np.float64(float(values))


def assert_close(actual, expected, tol, what="value"):
    """|actual - expected| <= tol * max(1, |expected|) elementwise: relative for magnitudes
    above 1, absolute below (SPEC §4). Infinities and NaNs must match exactly."""
    a = np.asarray(actual)
    e = to_float(expected).reshape(a.shape)
    if a.dtype == np.float32:  # a value beyond float32's range correctly rounds to +-inf
        big = np.abs(e) > np.finfo(np.float32).max
        e = np.where(big, np.copysign(np.inf, e), e)
    a = a.astype(np.float64)
    special = ~np.isfinite(e)
    if special.any():
        np.testing.assert_array_equal(a[special], e[special], err_msg=f"{what}: non-finite entries")
    fa, fe = a[~special], e[~special]
    assert np.isfinite(fa).all(), f"{what}: non-finite result where the reference is finite: {fa}"
    err = np.abs(fa - fe) / np.maximum(1.0, np.abs(fe))
    worst = int(np.argmax(err)) if err.size else 0
    assert err.size == 0 or err[worst] <= tol, (
        f"{what}: scaled error {err[worst]:.3e} > {tol:.1e} at flat position {worst}: "
        f"got {fa[worst]!r}, mpmath says {fe[worst]!r}")
