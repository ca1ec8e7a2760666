"""Triton kernels of the loss rows: the GPU path of :mod:`crossent.torch`.

Each function here has the signature and the semantics of its namesake in
:mod:`crossent.torch._engine` (the readable, pure-torch statement of the same formulas, itself
a transcription of :mod:`crossent._reference`): per-row (per-element) losses in float64 and,
when asked, ``grad_scale`` times the gradient of each row's own loss in the compute dtype.
What differs is the work: one Triton program per row streams the row twice -- an online
max / sum-of-exponentials pass for the statistics, then one pass that writes the gradient (in
place when ``out`` is the input, as the fused linear head asks) -- where the eager engine
launches a dozen kernels and keeps several ``(n, V)`` temporaries.

Offsets are int64 throughout (rows x V exceeds 2**31 in real heads). Row statistics are
summed in float64 from per-block partial sums, as the CPU kernels do.

The kernels run on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (how the
tests compare them with the CPU kernels on machines without a GPU; see
:func:`crossent.torch._engine.force_triton_path`).
"""

from __future__ import annotations

import math

import torch

try:  # triton is optional: without it CUDA tensors take the eager torch engine
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None

__all__: list[str] = []  # private module


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _block(n_cols: int) -> int:
    """Columns per step of a row loop: the row in one block up to 4096 (fp32: 16 KiB)."""
    return max(16, min(triton.next_power_of_2(max(n_cols, 1)), 4096))


def _warps(block: int) -> int:
    return 4 if block <= 1024 else 8 if block <= 2048 else 16


if triton is not None:

    # ------------------------------------------------------------------ scalar math in Triton
    # Only IEEE basics (exp, log, division): libdevice is not available to the interpreter,
    # so log1p, expm1 and tanh are formed with the classic correction tricks.

    @triton.jit
    def _log1p(u):
        # log1p(u) = log(1+u) * u / ((1+u) - 1): the rounding of 1+u cancels (Goldberg 1991)
        v = 1.0 + u
        d = v - 1.0
        return tl.where(d == 0.0, u, tl.log(v) * (u / tl.where(d == 0.0, 1.0, d)))

    @triton.jit
    def _expm1(x):
        # expm1(x) = (e^x - 1) * x / log(e^x): the rounding of e^x cancels (Kahan)
        u = tl.exp(x)
        d = u - 1.0
        lu = tl.log(u)
        r = d * (x / tl.where(lu == 0.0, 1.0, lu))
        r = tl.where(d == 0.0, x, r)
        r = tl.where(d == -1.0, -1.0, r)
        return tl.where(x == float("inf"), float("inf"), r)

    @triton.jit
    def _tanh(x):
        # tanh(x) = sign(x) (1 - e^(-2|x|)) / (1 + e^(-2|x|)) = -sign(x) expm1(-2|x|) / (1 + e^(-2|x|))
        a = tl.abs(x)
        r = -_expm1(-2.0 * a) / (1.0 + tl.exp(-2.0 * a))
        return tl.where(x < 0, -r, r)

    @triton.jit
    def _log_sigmoid(x):
        # log sigma(x) = min(x, 0) - log1p(e^(-|x|))
        return tl.minimum(x, 0.0) - _log1p(tl.exp(-tl.abs(x)))

    @triton.jit
    def _zero_times(coef, value):
        """coef * value, with 0 * (+-inf or NaN) = 0 where coef is 0."""
        return tl.where(coef == 0.0, 0.0, coef * value)

    @triton.jit
    def _softcapped(x, softcap, SOFTCAP: tl.constexpr):
        """z = s tanh(x / s) (masked -inf stays -inf) and dz/dx = sech^2(x / s) = 4e / (1 + e)^2,
        e = exp(-2|x / s|) (0 where masked; 1 - tanh^2 would lose its digits near |tanh| = 1)."""
        if SOFTCAP:
            masked = x == float("-inf")
            z = softcap * _tanh(x / softcap)
            e = tl.exp(-2.0 * tl.abs(x / softcap))
            dz = tl.where(masked, 0.0, 4.0 * e / ((1.0 + e) * (1.0 + e)))
            z = tl.where(masked, float("-inf"), z)
        else:
            z = x
            dz = tl.zeros_like(x) + 1.0
        return z, dz

    @triton.jit
    def _online(m, shift, s, v, inv_t):
        """One block of an online log-sum-exp of v / T (``inv_t`` = 1/T): the running max m of
        v, its finite shift and s = sum exp((v - shift) / T) in float64, the shift subtracted
        before the scaling (v - shift is exact for v close to the max, where v / T would be
        rounded at the size of m / T): s <- s e^((shift - shift_new)/T) + sum
        exp((v - shift_new)/T), s = 0 staying 0 (no 0 * inf)."""
        m_new = tl.maximum(m, tl.max(v, axis=0))
        shift_new = tl.where((m_new > float("-inf")) & (m_new < float("inf")), m_new, 0.0)
        rescale = tl.exp(((shift - shift_new) * inv_t).to(tl.float64))
        s = tl.where(s == 0.0, s, s * rescale) + tl.sum(tl.exp((v - shift_new) * inv_t).to(tl.float64), axis=0)
        return m_new, shift_new, s

    @triton.jit
    def _params4(params_ptr, CD: tl.constexpr):
        """eps and z_loss in float64 (row statistics), softcap and grad_scale in the compute dtype."""
        return (tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2).to(CD),
                tl.load(params_ptr + 3).to(CD))

    @triton.jit
    def _row_stats(x_row, n_cols, softcap, w_ptr, CD: tl.constexpr, SOFTCAP: tl.constexpr,
                   HAS_WEIGHT: tl.constexpr, SMOOTH: tl.constexpr, BLOCK: tl.constexpr):
        """One streaming pass over a row: the maximum m, s = sum exp(z - shift) (shift = m where
        finite, else 0) and, for smoothing, C' (unmasked count), W = sum w_c and sum w_c z_c
        over unmasked classes. Sums are float64."""
        zero64 = tl.sum(tl.zeros([BLOCK], tl.float64), axis=0)
        m = zero64.to(CD) + float("-inf")
        shift = zero64.to(CD)
        s = zero64
        n_un = zero64
        w_sum = zero64
        wz_sum = zero64
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            x = tl.load(x_row + cols, mask=inside, other=float("-inf")).to(CD)
            z, _ = _softcapped(x, softcap, SOFTCAP)
            m, shift, s = _online(m, shift, s, z, 1.0)
            if SMOOTH:
                unmasked = inside & (z != float("-inf"))
                if HAS_WEIGHT:
                    w = tl.load(w_ptr + cols, mask=inside, other=0.0).to(CD)
                else:
                    w = tl.full([BLOCK], 1.0, CD)
                w = tl.where(unmasked, w, 0.0)
                n_un += tl.sum(unmasked.to(tl.float64), axis=0)
                w_sum += tl.sum(w.to(tl.float64), axis=0)
                wz_sum += tl.sum(tl.where(unmasked, w.to(tl.float64) * z.to(tl.float64), 0.0), axis=0)
        return m, shift, s, n_un, w_sum, wz_sum

    # ------------------------------------------------------------------ softmax CE, indices
    @triton.jit
    def _softmax_ce_index_kernel(x_ptr, x_stride, out_ptr, out_stride, y_ptr, owned_ptr, counted_ptr,
                                 w_ptr, loss_ptr, n_cols, params_ptr,
                                 CD: tl.constexpr, SOFTCAP: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                                 SMOOTH: tl.constexpr, NEED_GRAD: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * x_stride
        eps, z_loss, softcap, grad_scale = _params4(params_ptr, CD)
        m, shift, s, n_un, w_sum, wz_sum = _row_stats(x_row, n_cols, softcap, w_ptr, CD, SOFTCAP,
                                                      HAS_WEIGHT, SMOOTH, BLOCK)
        y = tl.load(y_ptr + row).to(tl.int64)
        owned = tl.load(owned_ptr + row) != 0
        counted = tl.load(counted_ptr + row) != 0
        z_y = tl.load(x_row + y).to(CD)
        if SOFTCAP:
            z_y = tl.where(z_y == float("-inf"), z_y, softcap * _tanh(z_y / softcap))
        z_y = tl.where(owned, z_y.to(tl.float64), 0.0)
        if HAS_WEIGHT:
            w_y = tl.where(owned, tl.load(w_ptr + y).to(tl.float64), 0.0)
        else:
            w_y = tl.where(counted, 1.0, 0.0).to(tl.float64)
        log_s = tl.log(s)
        shift64 = shift.to(tl.float64)
        lse = shift64 + log_s
        # l = (1-eps) w_y (lse - z_y) + (eps/C') [W (lse - m) + sum_c w_c (m - z_c)] + z_loss w_y lse^2
        loss = _zero_times((1.0 - eps) * w_y, log_s + (shift64 - z_y))
        a = (1.0 - eps) * w_y
        eps_c = tl.where(n_un > 0, eps / tl.maximum(n_un, 1.0), 0.0)
        if SMOOTH:
            loss += eps_c * (w_sum * log_s + (w_sum * shift64 - wz_sum))
            a += eps_c * w_sum
        loss += z_loss * w_y * lse * lse
        a += 2.0 * z_loss * w_y * lse
        loss = tl.where(m == float("-inf"), float("inf"), loss)  # every class masked: p_y = 0
        loss = tl.where(counted, loss, 0.0)
        tl.store(loss_ptr + row, loss)
        if NEED_GRAD:
            _index_grad_pass(x_row, out_ptr + row * out_stride, n_cols, y, owned, counted, shift,
                             (a / s).to(CD), eps_c.to(CD), ((1.0 - eps) * w_y).to(CD), softcap,
                             grad_scale, w_ptr, CD, SOFTCAP, HAS_WEIGHT, SMOOTH, BLOCK)

    @triton.jit
    def _index_grad_pass(x_row, out_row, n_cols, y, owned, counted, shift, coef, eps_c, hit, softcap,
                         grad_scale, w_ptr, CD: tl.constexpr, SOFTCAP: tl.constexpr,
                         HAS_WEIGHT: tl.constexpr, SMOOTH: tl.constexpr, BLOCK: tl.constexpr):
        """The gradient pass of a row of softmax CE with class indices, from its statistics:
        dl/dz_j = p_j A - (eps/C') w_j - (1-eps) w_y [j=y], A = (1-eps) w_y + (eps/C') W + 2 z_loss w_y lse,
        with p_j A = exp(z_j - shift) coef (coef = A / s), hit = (1-eps) w_y; times dz/dx for
        the softcap, grad_scale, and 0 on ignored rows."""
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            x = tl.load(x_row + cols, mask=inside, other=0.0).to(CD)
            z, dz = _softcapped(x, softcap, SOFTCAP)
            g = tl.exp(z - shift) * coef
            if SMOOTH:
                if HAS_WEIGHT:
                    w = tl.load(w_ptr + cols, mask=inside, other=0.0).to(CD)
                else:
                    w = tl.full([BLOCK], 1.0, CD)
                g = tl.where(z != float("-inf"), g - eps_c * w, 0.0)
            g = tl.where((cols == y) & owned, g - hit, g)
            if SOFTCAP:
                g = g * dz
            g = tl.where(counted, g * grad_scale, 0.0)
            tl.store(out_row + cols, g.to(out_row.dtype.element_ty), mask=inside)

    # ------------------------------------------------------------------ softmax CE, one vocabulary shard
    @triton.jit
    def _softmax_ce_shard_stats_kernel(x_ptr, x_stride, w_ptr, stats_ptr, n_rows, n_cols, params_ptr,
                                       CD: tl.constexpr, SOFTCAP: tl.constexpr,
                                       HAS_WEIGHT: tl.constexpr, SMOOTH: tl.constexpr,
                                       BLOCK: tl.constexpr):
        """A shard's row statistics, stacked (5, n) in float64: the maximum m, s = sum exp(z -
        shift) at this shard's own shift, and for smoothing C', W and sum_c w_c z_c."""
        row = tl.program_id(0).to(tl.int64)
        _, _, softcap, _ = _params4(params_ptr, CD)
        m, shift, s, n_un, w_sum, wz_sum = _row_stats(x_ptr + row * x_stride, n_cols, softcap, w_ptr,
                                                      CD, SOFTCAP, HAS_WEIGHT, SMOOTH, BLOCK)
        tl.store(stats_ptr + row, m.to(tl.float64))
        tl.store(stats_ptr + n_rows + row, s)
        if SMOOTH:
            tl.store(stats_ptr + 2 * n_rows + row, n_un)
            tl.store(stats_ptr + 3 * n_rows + row, w_sum)
            tl.store(stats_ptr + 4 * n_rows + row, wz_sum)

    @triton.jit
    def _softmax_ce_shard_grad_kernel(x_ptr, x_stride, out_ptr, out_stride, y_ptr, owned_ptr,
                                      counted_ptr, w_ptr, coefs_ptr, n_rows, n_cols, params_ptr,
                                      CD: tl.constexpr, SOFTCAP: tl.constexpr,
                                      HAS_WEIGHT: tl.constexpr, SMOOTH: tl.constexpr,
                                      BLOCK: tl.constexpr):
        """A shard's gradient rows from the group's statistics: ``coefs`` stacks (4, n) the
        global shift, A / s, eps / C' and (1-eps) w_y (see :func:`_index_grad_pass`)."""
        row = tl.program_id(0).to(tl.int64)
        _, _, softcap, grad_scale = _params4(params_ptr, CD)
        _index_grad_pass(x_ptr + row * x_stride, out_ptr + row * out_stride, n_cols,
                         tl.load(y_ptr + row).to(tl.int64), tl.load(owned_ptr + row) != 0,
                         tl.load(counted_ptr + row) != 0, tl.load(coefs_ptr + row).to(CD),
                         tl.load(coefs_ptr + n_rows + row).to(CD),
                         tl.load(coefs_ptr + 2 * n_rows + row).to(CD),
                         tl.load(coefs_ptr + 3 * n_rows + row).to(CD), softcap, grad_scale, w_ptr,
                         CD, SOFTCAP, HAS_WEIGHT, SMOOTH, BLOCK)

    # ------------------------------------------------------------------ softmax CE, dense targets
    @triton.jit
    def _softmax_ce_dense_kernel(x_ptr, x_stride, t_ptr, t_stride, out_ptr, out_stride, w_ptr,
                                 loss_ptr, n_cols, params_ptr,
                                 CD: tl.constexpr, SOFTCAP: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                                 NEED_GRAD: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        eps, z_loss, softcap, grad_scale = _params4(params_ptr, CD)
        x_row = x_ptr + row * x_stride
        t_row = t_ptr + row * t_stride
        m, shift, s, n_un, w_un, _ = _row_stats(x_row, n_cols, softcap, w_ptr, CD, SOFTCAP,
                                                HAS_WEIGHT, True, BLOCK)
        # sum_c w_c t~_c = (1-eps) sum_c w_c t_c + (eps/C') sum_{c unmasked} w_c
        wt_raw = tl.sum(tl.zeros([BLOCK], tl.float64), axis=0)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            t = tl.load(t_row + cols, mask=inside, other=0.0).to(CD)
            if HAS_WEIGHT:
                t = t * tl.load(w_ptr + cols, mask=inside, other=0.0).to(CD)
            wt_raw += tl.sum(t.to(tl.float64), axis=0)
        eps_c = eps / tl.maximum(n_un, 1.0)
        wt_sum = (1.0 - eps) * wt_raw + eps_c * w_un
        lse = shift.to(tl.float64) + tl.log(s)
        coef = (wt_sum + 2.0 * z_loss * lse).to(CD)
        inv_s = (1.0 / s).to(CD)
        eps_cd = eps_c.to(CD)
        # l = sum_c w_c t~_c (lse - z_c) + z_loss lse^2; dl/dz_j = p_j (sum_c w_c t~_c + 2 z_loss lse) - w_j t~_j
        loss = tl.sum(tl.zeros([BLOCK], tl.float64), axis=0)
        out_row = out_ptr + row * out_stride
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            x = tl.load(x_row + cols, mask=inside, other=float("-inf")).to(CD)
            z, dz = _softcapped(x, softcap, SOFTCAP)
            t = tl.load(t_row + cols, mask=inside, other=0.0).to(CD)
            if HAS_WEIGHT:
                w = tl.load(w_ptr + cols, mask=inside, other=0.0).to(CD)
            else:
                w = tl.full([BLOCK], 1.0, CD)
            t_s = (1.0 - eps) * t + tl.where(z != float("-inf"), eps_cd, 0.0)
            wt = w * t_s
            loss += tl.sum(_zero_times(wt.to(tl.float64), lse - z.to(tl.float64)), axis=0)
            if NEED_GRAD:
                g = tl.exp(z - shift) * inv_s * coef - wt
                if SOFTCAP:
                    g = g * dz
                tl.store(out_row + cols, (g * grad_scale).to(out_ptr.dtype.element_ty), mask=inside)
        loss += z_loss * lse * lse
        loss = tl.where(lse == float("-inf"), float("inf"), loss)
        tl.store(loss_ptr + row, loss)

    # ------------------------------------------------------------------ dense targets' gradient
    @triton.jit
    def _dense_target_grad_kernel(x_ptr, x_stride, w_ptr, out_ptr, out_stride, n_cols, params_ptr,
                                  CD: tl.constexpr, SOFTCAP: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                                  BLOCK: tl.constexpr):
        """dl/dt_j = -(1-eps) w_j log p_j (the smoothing mass eps/C' does not depend on t),
        times grad_scale: c (w_j log p_j) with c = -(1-eps) grad_scale, log p_j = z_j - lse."""
        row = tl.program_id(0).to(tl.int64)
        c = tl.load(params_ptr).to(CD)
        softcap = tl.load(params_ptr + 1).to(CD)
        x_row = x_ptr + row * x_stride
        stats = _row_stats(x_row, n_cols, softcap, w_ptr, CD, SOFTCAP, False, False, BLOCK)
        shift, s = stats[1], stats[2]
        lse = (shift.to(tl.float64) + tl.log(s)).to(CD)
        out_row = out_ptr + row * out_stride
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            x = tl.load(x_row + cols, mask=inside, other=0.0).to(CD)
            z, _ = _softcapped(x, softcap, SOFTCAP)
            logp = z - lse
            if HAS_WEIGHT:
                logp = tl.load(w_ptr + cols, mask=inside, other=0.0).to(CD) * logp
            tl.store(out_row + cols, (c * logp).to(out_ptr.dtype.element_ty), mask=inside)

    # ------------------------------------------------------------------ softmax focal
    @triton.jit
    def _softmax_focal_kernel(x_ptr, x_stride, out_ptr, out_stride, y_ptr, counted_ptr, alpha_ptr,
                              loss_ptr, n_cols, params_ptr, CD: tl.constexpr,
                              HAS_ALPHA: tl.constexpr, NEED_GRAD: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        gamma = tl.load(params_ptr)
        grad_scale = tl.load(params_ptr + 1).to(CD)
        x_row = x_ptr + row * x_stride
        m, shift, s, _, _, _ = _row_stats(x_row, n_cols, grad_scale, alpha_ptr, CD, False, False, False,
                                          BLOCK)
        y = tl.load(y_ptr + row).to(tl.int64)
        counted = tl.load(counted_ptr + row) != 0
        lse = shift.to(tl.float64) + tl.log(s)
        lp = tl.load(x_row + y).to(CD).to(tl.float64) - lse
        lp = tl.where(lse == float("-inf"), float("-inf"), lp)
        a_y = tl.load(alpha_ptr + y).to(tl.float64) if HAS_ALPHA else 1.0
        # l = -alpha_y u^gamma lp, u = 1 - p_y = -expm1(lp); u^gamma = exp(gamma log u), 0^0 = 1
        u = -_expm1(lp)
        u_gamma = tl.where(gamma == 0.0, 1.0, tl.where(u == 0.0, 0.0, tl.exp(gamma * tl.log(u))))
        loss = tl.where(counted, _zero_times(a_y * u_gamma, -lp), 0.0)
        tl.store(loss_ptr + row, loss)
        if NEED_GRAD:
            # dl/dz_j = alpha_y u^gamma (1 - gamma p_y lp / u) (p_j - [j=y]); lp / u -> -1 as u -> 0
            ratio = tl.where(u == 0.0, -1.0, lp / tl.where(u == 0.0, 1.0, u))
            g_row = a_y * u_gamma * (1.0 - gamma * _zero_times(tl.exp(lp), ratio))
            g_row = tl.where(counted, g_row * grad_scale, 0.0).to(CD)
            lse_cd = lse.to(CD)
            out_row = out_ptr + row * out_stride
            for start in range(0, n_cols, BLOCK):
                cols = start + tl.arange(0, BLOCK).to(tl.int64)
                inside = cols < n_cols
                z = tl.load(x_row + cols, mask=inside, other=0.0).to(CD)
                p = tl.exp(z - lse_cd) - tl.where(cols == y, 1.0, 0.0)
                tl.store(out_row + cols, _zero_times(g_row, p).to(out_ptr.dtype.element_ty), mask=inside)

    # ------------------------------------------------------------------ binary, element-wise
    @triton.jit
    def _sigmoid_bce_kernel(x_ptr, t_ptr, w_ptr, pw_ptr, loss_ptr, grad_ptr, n, params_ptr,
                            CD: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_POS_WEIGHT: tl.constexpr,
                            NEED_GRAD: tl.constexpr, BLOCK: tl.constexpr):
        eps = tl.load(params_ptr).to(CD)
        grad_scale = tl.load(params_ptr + 1).to(CD)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        inside = offs < n
        x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(CD)
        t0 = tl.load(t_ptr + offs, mask=inside, other=0.0).to(CD)
        w = tl.load(w_ptr + offs, mask=inside, other=0.0).to(CD) if HAS_WEIGHT else 1.0
        pw = tl.load(pw_ptr + offs, mask=inside, other=0.0).to(CD) if HAS_POS_WEIGHT else 1.0
        # l = -w [pw t' log sigma(x) + (1-t') log sigma(-x)], t' = t(1-eps) + eps/2
        t = t0 * (1.0 - eps) + eps / 2
        one_minus_t = (1.0 - t0) * (1.0 - eps) + eps / 2  # 1 - t' without cancellation near t' = 1
        ls = _log_sigmoid(x)
        lsn = _log_sigmoid(-x)  # log(1 - sigma(x)) = log sigma(-x)
        loss = -w * (_zero_times(pw * t, ls) + _zero_times(one_minus_t, lsn))
        tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=inside)
        if NEED_GRAD:
            # dl/dx = w [(1-t') sigma(x) - pw t' sigma(-x)]
            g = (w * grad_scale) * (one_minus_t * tl.exp(ls) - pw * t * tl.exp(lsn))
            tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _binary_target_grad_kernel(x_ptr, w_ptr, pw_ptr, out_ptr, n, params_ptr, CD: tl.constexpr,
                                   HAS_WEIGHT: tl.constexpr, HAS_POS_WEIGHT: tl.constexpr,
                                   BLOCK: tl.constexpr):
        """dl/dt = -(1-eps) w [pw log sigma(x) - log sigma(-x)], times grad_scale (c = its
        constant factor -(1-eps) grad_scale)."""
        c = tl.load(params_ptr).to(CD)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        inside = offs < n
        x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(CD)
        w = tl.load(w_ptr + offs, mask=inside, other=0.0).to(CD) if HAS_WEIGHT else 1.0
        pw = tl.load(pw_ptr + offs, mask=inside, other=0.0).to(CD) if HAS_POS_WEIGHT else 1.0
        g = (c * w) * (pw * _log_sigmoid(x) - _log_sigmoid(-x))
        tl.store(out_ptr + offs, g.to(out_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _sigmoid_focal_kernel(x_ptr, t_ptr, loss_ptr, grad_ptr, n, params_ptr,
                              CD: tl.constexpr, HAS_ALPHA: tl.constexpr, NEED_GRAD: tl.constexpr,
                              BLOCK: tl.constexpr):
        alpha = tl.load(params_ptr).to(CD)
        gamma = tl.load(params_ptr + 1).to(CD)
        grad_scale = tl.load(params_ptr + 2).to(CD)
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
        inside = offs < n
        x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(CD)
        t = tl.load(t_ptr + offs, mask=inside, other=0.0).to(CD)
        ls = _log_sigmoid(x)
        lsn = _log_sigmoid(-x)
        ce = -(_zero_times(t, ls) + _zero_times(1.0 - t, lsn))
        # log u = log(t sigma(-x) + (1-t) sigma(x)), a log-add-exp of two log-space terms
        a = tl.log(t) + lsn
        b = _log1p(-t) + ls
        hi = tl.maximum(a, b)
        log_u = tl.where(hi == float("-inf"), float("-inf"),
                         hi + _log1p(tl.exp(tl.minimum(a, b) - hi)))
        u_gamma = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * log_u))
        if HAS_ALPHA:
            alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
        else:
            alpha_t = 1.0
        # l = alpha_t u^gamma ce
        loss = alpha_t * u_gamma * ce
        tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=inside)
        if NEED_GRAD:
            # dl/dx = alpha_t u^gamma [gamma (1-2t) sigma(x) sigma(-x) / u * ce + sigma(x) - t];
            # where u = 0 (a saturated, correct prediction) the limit is 0: the ratio term is dropped
            ratio = tl.where(log_u == float("-inf"), 0.0, (1.0 - 2.0 * t) * tl.exp(ls + lsn - log_u))
            g = (alpha_t * u_gamma * grad_scale) * (_zero_times(gamma * ratio, ce) + tl.exp(ls) - t)
            tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=inside)


    # ------------------------------------------------------------------ distillation divergences
    @triton.jit
    def _log_m(a, b, log_beta, log_1m_beta):
        """log m, m = beta p + (1-beta) q: a log-add-exp of log beta + a and log(1-beta) + b."""
        u = log_beta + a
        v = log_1m_beta + b
        hi = tl.maximum(u, v)
        return tl.where(hi == float("-inf"), hi, hi + _log1p(tl.exp(tl.minimum(u, v) - hi)))

    @triton.jit
    def _softmax_divergence_kernel(x_ptr, x_stride, z_ptr, z_stride, out_ptr, out_stride, y_ptr,
                                   counted_ptr, loss_ptr, n_cols, params_ptr, CD: tl.constexpr,
                                   KIND: tl.constexpr, HARD: tl.constexpr, NEED_GRAD: tl.constexpr,
                                   BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        x_row = x_ptr + row * x_stride
        z_row = z_ptr + row * z_stride
        beta = tl.load(params_ptr)
        inv_t = tl.load(params_ptr + 1).to(CD)  # 1 / temperature
        hard_weight = tl.load(params_ptr + 2)
        scale = tl.load(params_ptr + 3).to(CD)
        log_beta = tl.load(params_ptr + 4).to(CD)
        log_1m_beta = tl.load(params_ptr + 5).to(CD)
        zero64 = tl.sum(tl.zeros([BLOCK], tl.float64), axis=0)
        m_s = zero64.to(CD) + float("-inf")
        m_t = m_s
        m_x = m_s
        sh_s = zero64.to(CD)
        sh_t = sh_s
        sh_x = sh_s
        s_s = zero64
        s_t = zero64
        s_x = zero64
        best = m_s
        best_at = tl.sum(tl.zeros([BLOCK], tl.int64), axis=0)
        bad = zero64  # NaN or +inf logits, on either side
        live_s = zero64  # unmasked classes, per side
        live_t = zero64
        # pass 1: the online log-sum-exps of x/T, z/T (and of x for the hard term), argmax x
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            x = tl.load(x_row + cols, mask=inside, other=float("-inf")).to(CD)
            z = tl.load(z_row + cols, mask=inside, other=float("-inf")).to(CD)
            m_s, sh_s, s_s = _online(m_s, sh_s, s_s, x, inv_t)
            m_t, sh_t, s_t = _online(m_t, sh_t, s_t, z, inv_t)
            if HARD:
                m_x, sh_x, s_x = _online(m_x, sh_x, s_x, x, 1.0)
            block_best = tl.max(x, axis=0)
            block_at = tl.argmax(x, axis=0).to(tl.int64) + start
            take = block_best > best
            best_at = tl.where(take, block_at, best_at)
            best = tl.where(take, block_best, best)
            bad += tl.sum(((x != x) | (x == float("inf")) | (z != z) | (z == float("inf"))).to(tl.float64), axis=0)
            live_s += tl.sum((x != float("-inf")).to(tl.float64), axis=0)
            live_t += tl.sum((z != float("-inf")).to(tl.float64), axis=0)
        # log q_c = (x_c - shift) / T - ls: the shift is in the logits' units (see _online)
        ls_s = tl.log(s_s).to(CD)
        ls_t = tl.log(s_t).to(CD)
        # r, centred on its value r* at the student's top class (no cancellation in r_j - r*):
        # reverse KL r = b - a, JSD r = b - log m, with b = log q, a = log p
        b_star = (tl.load(x_row + best_at).to(CD) - sh_s) * inv_t - ls_s
        a_star = (tl.load(z_row + best_at).to(CD) - sh_t) * inv_t - ls_t
        if KIND == 1:
            r_star = b_star - a_star
        else:
            r_star = b_star - _log_m(a_star, b_star, log_beta, log_1m_beta)
        r_star = tl.where((r_star > float("-inf")) & (r_star < float("inf")), r_star, 0.0)
        # pass 2: the divergence's sums
        acc = zero64  # forward KL: sum p (a - b); otherwise k = sum q (r - r*)
        kl_p = zero64  # JSD: sum p (a - log m)
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK).to(tl.int64)
            inside = cols < n_cols
            x = tl.load(x_row + cols, mask=inside, other=float("-inf")).to(CD)
            z = tl.load(z_row + cols, mask=inside, other=float("-inf")).to(CD)
            masked_s = x == float("-inf")
            masked_t = z == float("-inf")
            b = (x - sh_s) * inv_t - ls_s
            a = (z - sh_t) * inv_t - ls_t
            if KIND == 0:  # KL(p || q): a class the teacher masks is free, one only the student masks costs inf
                term = tl.where(masked_t, 0.0, tl.where(masked_s, float("inf"), tl.exp(a) * (a - b)))
                acc += tl.sum(term.to(tl.float64), axis=0)
            else:
                if KIND == 1:
                    r = b - a
                else:
                    log_m = _log_m(a, b, log_beta, log_1m_beta)
                    r = b - log_m
                    kl_p += tl.sum(tl.where(masked_t, 0.0, tl.exp(a) * (a - log_m)).to(tl.float64), axis=0)
                term = tl.where(masked_s, 0.0, tl.exp(b) * (r - r_star))
                if KIND == 1:
                    term = tl.where(masked_t & ~masked_s, float("inf"), term)
                acc += tl.sum(term.to(tl.float64), axis=0)
        if KIND == 0:
            loss = acc
        elif KIND == 1:
            loss = r_star.to(tl.float64) + acc
        else:
            loss = beta * kl_p + (1.0 - beta) * (r_star.to(tl.float64) + acc)
        lse_x = sh_x.to(tl.float64) + tl.log(s_x)
        y = tl.load(y_ptr + row).to(tl.int64) if HARD else best_at
        if HARD:  # + h CE(x, y) = h (lse(x) - x_y)
            ce = lse_x - tl.load(x_row + y).to(tl.float64)
            loss = tl.where(hard_weight == 1.0, 0.0, (1.0 - hard_weight) * loss) + hard_weight * ce
        ok = (bad == 0) & (live_s > 0) & (live_t > 0)
        counted = tl.load(counted_ptr + row) != 0
        loss = tl.where(ok, loss, float("nan"))
        tl.store(loss_ptr + row, tl.where(counted, loss, 0.0))
        if NEED_GRAD:
            # forward KL: d/dx_j = (q_j - p_j) / T; reverse KL and JSD (weight 1 and 1 - beta):
            # w q_j ((r_j - r*) - k) / T; the hard term adds h (softmax(x)_j - [j = y])
            k = acc.to(CD)
            w_div = tl.where(hard_weight == 1.0, 0.0, 1.0 - hard_weight).to(CD)
            if KIND == 2:
                w_div = w_div * (1.0 - beta).to(CD)
            w_div = w_div * inv_t
            hw = hard_weight.to(CD)
            lse_x_cd = lse_x.to(CD)
            out_row = out_ptr + row * out_stride
            for start in range(0, n_cols, BLOCK):
                cols = start + tl.arange(0, BLOCK).to(tl.int64)
                inside = cols < n_cols
                x = tl.load(x_row + cols, mask=inside, other=0.0).to(CD)
                z = tl.load(z_row + cols, mask=inside, other=0.0).to(CD)
                masked_s = x == float("-inf")
                b = (x - sh_s) * inv_t - ls_s
                a = (z - sh_t) * inv_t - ls_t
                q = tl.exp(b)
                if KIND == 0:
                    g = _zero_times(w_div, q - tl.exp(a))
                else:
                    if KIND == 1:
                        r = b - a
                    else:
                        r = b - _log_m(a, b, log_beta, log_1m_beta)
                    g = tl.where(masked_s, 0.0, _zero_times(w_div, q * ((r - r_star) - k)))
                if HARD:
                    g += hw * (tl.exp(x - lse_x_cd) - tl.where(cols == y, 1.0, 0.0))
                g = tl.where(ok, g, float("nan"))
                g = tl.where(counted, g * scale, 0.0)
                tl.store(out_row + cols, g.to(out_ptr.dtype.element_ty), mask=inside)


# ---------------------------------------------------------------------- Python entry points
def _cd_flag(cd):
    return tl.float64 if cd == torch.float64 else tl.float32


def _params(x, *values):
    """The kernel's scalar options as a float64 tensor on ``x``'s device (Python floats would
    reach the kernel as float32)."""
    return torch.tensor([float(v) for v in values], dtype=torch.float64, device=x.device)


def _rows(x):
    """``x`` with unit stride along the classes (a copy only when it lacks one)."""
    return x if x.stride(-1) == 1 else x.contiguous()


def _identity(t):
    return t


def softmax_ce_index_rows(x, y, owned, counted, options, grad_scale, need_grad, out=None,
                          all_max=_identity, all_sum=_identity):
    """Triton form of :func:`crossent.torch._engine.softmax_ce_index_rows`.

    On one process (identity ``all_max``/``all_sum``) one kernel per row computes the
    statistics, the loss and the gradient. On a vocabulary shard, a statistics kernel runs
    first, the per-row statistics are combined across the group (the shard's sum of
    exponentials rescaled to the global maximum), the O(n) epilogue of the eager engine
    (:func:`crossent.torch._engine.index_epilogue`) forms the loss and the coefficients, and a
    gradient kernel writes the shard's rows. Returns ``(loss (n,) float64, grad or None,
    owned_count (n,) float64)``.
    """
    weight, z_loss, softcap = options.weight, options.z_loss, options.softcap
    cd = _compute_dtype(x.dtype)
    n, v = x.shape
    x = _rows(x)
    if need_grad:
        if out is None:
            out = torch.empty((n, v), dtype=cd, device=x.device)
        elif out.stride(-1) != 1:
            raise ValueError("out must have unit stride along the classes")
    w = None if weight is None else weight.to(cd).contiguous()
    eps = float(options.label_smoothing)
    params = _params(x, eps, z_loss, 1.0 if softcap is None else softcap, grad_scale)
    flags = dict(CD=_cd_flag(cd), SOFTCAP=softcap is not None, HAS_WEIGHT=w is not None,
                 SMOOTH=eps > 0)
    block = _block(v)
    owned8, counted8 = owned.to(torch.int8).contiguous(), counted.to(torch.int8).contiguous()
    if all_max is _identity and all_sum is _identity:
        loss = torch.empty(n, dtype=torch.float64, device=x.device)
        if n:
            _softmax_ce_index_kernel[(n,)](
                x, x.stride(0), out if need_grad else x, out.stride(0) if need_grad else 0,
                y.contiguous(), owned8, counted8, w if w is not None else x, loss, v, params,
                NEED_GRAD=bool(need_grad), BLOCK=block, num_warps=_warps(block), **flags)
        return loss, (out if need_grad else None), owned.double()
    return _shard_rows(x, y, owned, counted, w, eps, z_loss, softcap, need_grad, out, all_max,
                       all_sum, params, flags, block, owned8, counted8)


def _shard_rows(x, y, owned, counted, w, eps, z_loss, softcap, need_grad, out, all_max, all_sum,
                params, flags, block, owned8, counted8):
    """The vocabulary-parallel form of :func:`softmax_ce_index_rows` (every rank calls it with
    the same rows, so the collectives match even where ``n`` is 0)."""
    from ._engine import index_epilogue  # _engine imports this module lazily

    n, v = x.shape
    stats = torch.zeros((5, n), dtype=torch.float64, device=x.device)
    if n:
        _softmax_ce_shard_stats_kernel[(n,)](x, x.stride(0), w if w is not None else x, stats, n, v,
                                             params, BLOCK=block, num_warps=_warps(block), **flags)
    m_local = stats[0]
    m = all_max(m_local.clone())
    inf = float("inf")
    shift = torch.where(torch.isfinite(m), m, 0.0)
    shift_local = torch.where(torch.isfinite(m_local), m_local, 0.0)
    # s = sum_c exp(z_c - shift) = e^(shift_local - shift) sum_c exp(z_c - shift_local); 0 stays 0
    s = torch.where(stats[1] == 0, 0.0, stats[1] * torch.exp(shift_local - shift))
    cd = _compute_dtype(x.dtype)
    x_y = x.gather(1, y.unsqueeze(1))[:, 0].to(cd)
    if softcap is not None:
        x_y = torch.where(x_y == -inf, x_y, softcap * torch.tanh(x_y / softcap))
    z_y = torch.where(owned, x_y, 0.0).double()
    w_y = torch.where(owned, w[y], 0.0).double() if w is not None else owned.double()
    reduced = [s, z_y, w_y, owned.double()]
    if eps > 0:
        # sum_c w_c (m - z_c) = m W - sum_c w_c z_c over this shard's unmasked classes
        reduced += [stats[2], stats[3], stats[3] * shift - stats[4]]
    loss, coef, eps_c, hit, owned_count = index_epilogue(
        all_sum(torch.stack(reduced)), m, shift, counted, w is not None, eps, z_loss)
    if not need_grad:
        return loss, None, owned_count
    coefs = torch.stack([shift, coef, eps_c, hit]).contiguous()
    if n:
        _softmax_ce_shard_grad_kernel[(n,)](
            x, x.stride(0), out, out.stride(0), y.contiguous(), owned8, counted8,
            w if w is not None else x, coefs, n, v, params, BLOCK=block, num_warps=_warps(block),
            **flags)
    return loss, out, owned_count


def softmax_ce_dense(x, targets, options, grad_scale, need_grad):
    """Triton form of :func:`crossent.torch._engine.softmax_ce_dense`."""
    weight, softcap = options.weight, options.softcap
    cd = _compute_dtype(x.dtype)
    n, v = x.shape
    x, targets = _rows(x), _rows(targets)
    loss = torch.empty(n, dtype=torch.float64, device=x.device)
    grad = torch.empty((n, v), dtype=cd, device=x.device) if need_grad else None
    w = None if weight is None else weight.to(cd).contiguous()
    if n:
        block = _block(v)
        _softmax_ce_dense_kernel[(n,)](
            x, x.stride(0), targets, targets.stride(0), grad if need_grad else x,
            grad.stride(0) if need_grad else 0, w if w is not None else x, loss, v,
            _params(x, options.label_smoothing, options.z_loss, 1.0 if softcap is None else softcap,
                    grad_scale),
            CD=_cd_flag(cd), SOFTCAP=softcap is not None, HAS_WEIGHT=w is not None,
            NEED_GRAD=bool(need_grad), BLOCK=block,
            num_warps=_warps(block))
    return loss, grad


def softmax_focal(x, y, counted, options, grad_scale, need_grad):
    """Triton form of :func:`crossent.torch._engine.softmax_focal`."""
    alpha, gamma = options.alpha, options.gamma
    cd = _compute_dtype(x.dtype)
    n, v = x.shape
    x = _rows(x)
    loss = torch.empty(n, dtype=torch.float64, device=x.device)
    grad = torch.empty((n, v), dtype=cd, device=x.device) if need_grad else None
    a = None if alpha is None else alpha.to(torch.float64).contiguous()
    if n:
        block = _block(v)
        _softmax_focal_kernel[(n,)](
            x, x.stride(0), grad if need_grad else x, grad.stride(0) if need_grad else 0,
            y.contiguous(), counted.to(torch.int8).contiguous(), a if a is not None else loss,
            loss, v, _params(x, gamma, grad_scale), CD=_cd_flag(cd), HAS_ALPHA=a is not None,
            NEED_GRAD=bool(need_grad), BLOCK=block, num_warps=_warps(block))
    return loss, grad


_ELEMENT_BLOCK = 1024


def _flat(t, shape, cd):
    """``t`` broadcast to ``shape`` as a contiguous flat tensor (or None)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        t = torch.tensor(t, dtype=cd)
    return t.to(cd).expand(shape).contiguous().reshape(-1)


def sigmoid_binary_cross_entropy(x, targets, options, grad_scale, need_grad):
    """Triton form of :func:`crossent.torch._engine.sigmoid_binary_cross_entropy`."""
    weight, pos_weight = options.weight, options.pos_weight
    cd = _compute_dtype(x.dtype)
    shape = x.shape
    xf = x.contiguous().reshape(-1)
    tf = targets.expand(shape).contiguous().reshape(-1)
    w, pw = _flat(weight, shape, cd), _flat(pos_weight, shape, cd)
    loss = torch.empty(xf.numel(), dtype=cd, device=x.device)
    grad = torch.empty(xf.numel(), dtype=cd, device=x.device) if need_grad else None
    if xf.numel():
        grid = (triton.cdiv(xf.numel(), _ELEMENT_BLOCK),)
        _sigmoid_bce_kernel[grid](
            xf, tf, w if w is not None else xf, pw if pw is not None else xf, loss,
            grad if need_grad else loss, xf.numel(), _params(x, options.label_smoothing, grad_scale),
            CD=_cd_flag(cd), HAS_WEIGHT=w is not None, HAS_POS_WEIGHT=pw is not None,
            NEED_GRAD=bool(need_grad), BLOCK=_ELEMENT_BLOCK)
    return loss.double().reshape(shape), (None if grad is None else grad.reshape(shape))


def dense_target_grad(x, options, grad_scale):
    """Triton form of :func:`crossent.torch._engine.dense_target_grad`."""
    weight, label_smoothing, softcap = options.weight, options.label_smoothing, options.softcap
    cd = _compute_dtype(x.dtype)
    n, v = x.shape
    x = _rows(x)
    out = torch.empty((n, v), dtype=cd, device=x.device)
    w = None if weight is None else weight.to(cd).contiguous()
    if n:
        block = _block(v)
        _dense_target_grad_kernel[(n,)](
            x, x.stride(0), w if w is not None else x, out, out.stride(0), v,
            _params(x, -(1.0 - float(label_smoothing)) * grad_scale, 1.0 if softcap is None else softcap),
            CD=_cd_flag(cd), SOFTCAP=softcap is not None, HAS_WEIGHT=w is not None, BLOCK=block,
            num_warps=_warps(block))
    return out


def binary_target_grad(x, options, grad_scale):
    """Triton form of :func:`crossent.torch._engine.binary_target_grad`."""
    weight, pos_weight, label_smoothing = options.weight, options.pos_weight, options.label_smoothing
    cd = _compute_dtype(x.dtype)
    shape = x.shape
    xf = x.contiguous().reshape(-1)
    w, pw = _flat(weight, shape, cd), _flat(pos_weight, shape, cd)
    out = torch.empty(xf.numel(), dtype=cd, device=x.device)
    if xf.numel():
        _binary_target_grad_kernel[(triton.cdiv(xf.numel(), _ELEMENT_BLOCK),)](
            xf, w if w is not None else xf, pw if pw is not None else xf, out, xf.numel(),
            _params(x, -(1.0 - float(label_smoothing)) * grad_scale), CD=_cd_flag(cd),
            HAS_WEIGHT=w is not None, HAS_POS_WEIGHT=pw is not None, BLOCK=_ELEMENT_BLOCK)
    return out.reshape(shape)


def sigmoid_focal(x, targets, options, grad_scale, need_grad):
    """Triton form of :func:`crossent.torch._engine.sigmoid_focal`."""
    alpha, gamma = options.alpha, options.gamma
    cd = _compute_dtype(x.dtype)
    shape = x.shape
    xf = x.contiguous().reshape(-1)
    tf = targets.expand(shape).contiguous().reshape(-1)
    loss = torch.empty(xf.numel(), dtype=cd, device=x.device)
    grad = torch.empty(xf.numel(), dtype=cd, device=x.device) if need_grad else None
    if xf.numel():
        grid = (triton.cdiv(xf.numel(), _ELEMENT_BLOCK),)
        _sigmoid_focal_kernel[grid](
            xf, tf, loss, grad if need_grad else loss, xf.numel(),
            _params(x, 0.0 if alpha is None else alpha, gamma, grad_scale),
            CD=_cd_flag(cd), HAS_ALPHA=alpha is not None, NEED_GRAD=bool(need_grad),
            BLOCK=_ELEMENT_BLOCK)
    return loss.double().reshape(shape), (None if grad is None else grad.reshape(shape))



def softmax_divergence_rows(x, z, labels, counted, kind, beta, temperature, hard_weight, scale,
                            need_grad, out=None):
    """Triton form of the distillation rows of :mod:`crossent.torch.distill` (its ``_torch_rows``):
    ``kind`` 0 forward KL(p||q), 1 reverse KL(q||p), 2 the beta-JSD, of the teacher's
    ``p = softmax(z/T)`` and the student's ``q = softmax(x/T)``, plus ``hard_weight`` times the
    cross-entropy of ``x`` against ``labels``. Returns ``(loss (n,) float64, grad or None)``;
    the gradient goes into ``out`` when given (it may be ``x``)."""
    cd = _compute_dtype(x.dtype)
    n, v = x.shape
    x, z = _rows(x), _rows(z)
    loss = torch.empty(n, dtype=torch.float64, device=x.device)
    if need_grad:
        if out is None:
            out = torch.empty((n, v), dtype=cd, device=x.device)
        elif out.stride(-1) != 1:
            raise ValueError("out must have unit stride along the classes")
    hard = hard_weight > 0
    if n:
        beta = float(beta)
        log_beta = math.log(beta) if 0 < beta < 1 else 0.0
        log_1m_beta = math.log1p(-beta) if 0 < beta < 1 else 0.0
        block = _block(v)
        _softmax_divergence_kernel[(n,)](
            x, x.stride(0), z, z.stride(0), out if need_grad else x,
            out.stride(0) if need_grad else 0, labels.contiguous() if hard else counted,
            counted.to(torch.int8).contiguous(), loss, v,
            _params(x, beta, 1.0 / float(temperature), hard_weight, scale, log_beta, log_1m_beta),
            CD=_cd_flag(cd), KIND=int(kind), HARD=hard, NEED_GRAD=bool(need_grad), BLOCK=block,
            num_warps=_warps(block))
    return loss, (out if need_grad else None)
