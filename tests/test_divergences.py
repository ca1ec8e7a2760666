"""crossent.divergences: softmax_kl_divergence and softmax_js_divergence from two models' logits.

Values and gradients against a 50-digit mpmath reference written here from the definitions
(SPEC §3.5: p = softmax(y/T) the teacher, q = softmax(x/T) the student, TRL's beta-JSD with
m = beta p + (1-beta) q) at SPEC §4's tolerances, on both kernel paths; masked classes, rows
selected by ``where`` and the "batchmean" reduction; the probability measures of
:mod:`crossent.measures` as a second oracle; bad input.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import _mp_reference as mpr
import crossent

TOL = {np.float64: 1e-12, np.float32: 5e-6}
BETAS = [0.0, 0.1, 0.5, 0.9, 1.0]
TEMPERATURES = [0.1, 0.5, 1.0, 2.5, 10.0]


# ----------------------------------------------------------------------------- mpmath reference
def mp_divergence(x_row, y_row, kind, beta, temperature):
    """(value, gradient, scale) of one row at 50 digits; the gradient is None where the value
    is infinite (no usable gradient) and NaN rows give (nan, [nan] * C, 1).

    ``scale`` is the conditioning of the gradient: for the reverse KL and the JSD it is
    q_j (r_j - sum_c q_c r_c) / T, a difference of terms as large as sum_c q_c |r_c|, which
    can reach 1e5 (logits of 1e4 at T = 0.1) while the result is of order 1 — no float64
    algorithm fed rounded intermediates (x / T) does better than eps times that. The tolerance
    of those gradients is SPEC §4's times max(1, sum_c q_c |r_c|)."""
    with mpmath.workdps(mpr.DPS):
        c = len(x_row)
        temp = mpr.mpf(temperature)
        x = [mpr.mpf(v) for v in x_row]
        y = [mpr.mpf(v) for v in y_row]
        live_s = [v != -mpr.INF for v in x]
        live_t = [v != -mpr.INF for v in y]
        if any(mpmath.isnan(v) or v == mpr.INF for v in x + y) or not any(live_s) or not any(live_t):
            return mpmath.nan, [mpmath.nan] * c, 1
        _, nlq, q = mpr._softmax_parts([v / temp for v in x], live_s)  # -log q_c, q_c
        _, nlp, p = mpr._softmax_parts([v / temp for v in y], live_t)
        if kind == "forward":  # KL(p || q)
            if any(live_t[k] and not live_s[k] for k in range(c)):
                return mpr.INF, None, 1
            value = mpmath.fsum(p[k] * (nlq[k] - nlp[k]) for k in range(c) if live_t[k])
            return value, [(q[k] - p[k]) / temp for k in range(c)], 1
        if kind == "reverse":  # KL(q || p)
            if any(live_s[k] and not live_t[k] for k in range(c)):
                return mpr.INF, None, 1
            r = [nlp[k] - nlq[k] for k in range(c)]
            value = mpmath.fsum(q[k] * r[k] for k in range(c) if live_s[k])
            scale = mpmath.fsum(q[k] * abs(r[k]) for k in range(c) if live_s[k])
            return value, [q[k] * (r[k] - value) / temp if live_s[k] else mpmath.mpf(0)
                           for k in range(c)], max(1, float(scale))
        b = mpr.mpf(beta)
        log_m = [mpmath.log(b * p[k] + (1 - b) * q[k]) if live_s[k] or live_t[k] else -mpr.INF
                 for k in range(c)]
        kl_p = mpmath.fsum(p[k] * (-nlp[k] - log_m[k]) for k in range(c) if live_t[k])
        kl_q = mpmath.fsum(q[k] * (-nlq[k] - log_m[k]) for k in range(c) if live_s[k])
        grad = [(1 - b) * q[k] * ((-nlq[k] - log_m[k]) - kl_q) / temp if live_s[k] else mpmath.mpf(0)
                for k in range(c)]
        scale = mpmath.fsum(q[k] * abs(-nlq[k] - log_m[k]) for k in range(c) if live_s[k])
        return b * kl_p + (1 - b) * kl_q, grad, max(1, float(scale))


def kind_of(fn, beta, reverse):
    if fn is crossent.softmax_kl_divergence:
        return "reverse" if reverse else "forward"
    return "forward" if beta == 0 else "reverse" if beta == 1 else "jsd"


def call(fn, beta, reverse, **kwargs):
    if fn is crossent.softmax_kl_divergence:
        return lambda x, y, **kw: fn(x, y, reverse=reverse, **kw, **kwargs)
    return lambda x, y, **kw: fn(x, y, beta=beta, **kw, **kwargs)


def check_against_mpmath(fn, x, y, beta, reverse, temperature, dtype):
    """Per-row values ("none") and the "sum" gradient against mpmath."""
    kind = kind_of(fn, beta, reverse)
    rows = [mp_divergence(x[i], y[i], kind, beta, temperature) for i in range(x.shape[0])]
    f = call(fn, beta, reverse, temperature=temperature)
    per_row = f(x, y, reduction="none")
    assert per_row.dtype == dtype
    mpr.assert_close(per_row, [v for v, _, _ in rows], TOL[dtype], "per-row value")
    value, grad = crossent.value_and_grad(fn)(
        x, y, temperature=temperature, reduction="sum",
        **({"reverse": reverse} if fn is crossent.softmax_kl_divergence else {"beta": beta}))
    assert grad.dtype == dtype and grad.shape == x.shape
    usable = [i for i, (v, g, _) in enumerate(rows) if g is not None and not mpmath.isnan(v)]
    for i in usable:
        mpr.assert_close(grad[i], rows[i][1], TOL[dtype] * rows[i][2], f"gradient of row {i}")
    if len(usable) == len(rows):
        mpr.assert_close(value, mpmath.fsum(v for v, _, _ in rows), TOL[dtype], "sum")


FUNCTIONS = [(crossent.softmax_kl_divergence, None, False),
             (crossent.softmax_kl_divergence, None, True)] + [
             (crossent.softmax_js_divergence, b, False) for b in BETAS]
IDS = ["kl", "kl-reverse"] + [f"jsd-beta{b}" for b in BETAS]


# ----------------------------------------------------------------------------- strategies
def _logits(dtype):
    width = 32 if dtype is np.float32 else 64
    return st.one_of(st.floats(-20, 20, width=width), st.floats(-1e4, 1e4, width=width),
                     st.sampled_from([0.0, 1e4, -1e4, 1e4 + 0.5, -1e4 - 0.5, 37.0]))


@st.composite
def pair(draw, dtype, masks):
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 8))
    x = draw(hnp.arrays(dtype, (n, c), elements=_logits(dtype)))
    y = draw(hnp.arrays(dtype, (n, c), elements=_logits(dtype)))
    if masks:
        for a in (x, y):
            hide = draw(hnp.arrays(np.bool_, (n, c), elements=st.sampled_from([False, False, True])))
            hide[:, 0] &= ~hide[:, 1:].all(axis=1)  # one class stays live (an empty row is NaN, below)
            a[hide] = -np.inf
    return x, y


@pytest.mark.parametrize(("fn", "beta", "reverse"), FUNCTIONS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_values_and_gradients_match_mpmath(backend, fn, beta, reverse, dtype, data):
    x, y = data.draw(pair(dtype, masks=data.draw(st.booleans())))
    temperature = data.draw(st.sampled_from(TEMPERATURES))
    check_against_mpmath(fn, x, y, beta, reverse, temperature, dtype)


@pytest.mark.parametrize(("fn", "beta", "reverse"), FUNCTIONS, ids=IDS)
@pytest.mark.parametrize("scale", [20.0, 40.0, 1e4])
def test_near_one_hot_teachers(backend, fn, beta, reverse, scale):
    """Teachers whose top class holds all but e^-20 .. e^-1e4 of the mass, students near or far."""
    rng = np.random.default_rng(int(scale))
    y = np.zeros((4, 9))
    y[np.arange(4), [0, 3, 8, 5]] = scale
    x = np.stack([y[0] + rng.normal(size=9), y[1] * 0.999, rng.normal(size=9) * 3, -y[3]])
    for temperature in (0.1, 1.0, 10.0):
        check_against_mpmath(fn, x, y, beta, reverse, temperature, np.float64)


@pytest.mark.parametrize(("fn", "beta", "reverse"), FUNCTIONS, ids=IDS)
def test_close_large_logits_at_a_low_temperature(backend, fn, beta, reverse):
    """Logits of 1e4 a few ulps apart at T = 0.1: y / T rounds at the size of 1e5 (1.5e-11, more
    than the difference of the logits), so the row's maximum is subtracted before the division
    (found by Hypothesis: the reference's JSD gradient was 60% off at y = (1e4 - ulp, 1e4))."""
    ulp = np.spacing(1e4)
    y = np.array([[1e4 - ulp, 1e4], [1e4, 1e4 + 2 * ulp], [-1e4, -1e4 + 3 * ulp]])
    x = np.array([[0.0, 0.0], [1e4 + ulp, 1e4], [-1e4 + ulp, -1e4]])
    for temperature in (0.1, 0.5):
        check_against_mpmath(fn, x, y, beta, reverse, temperature, np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_many_classes_kernel_matches_reference(dtype):
    """C = 10^5 (SPEC §4's widest rows): the compiled kernel against the NumPy reference."""
    from crossent import _backend

    if _backend._compiled is None:
        pytest.skip("compiled kernels unavailable")
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 100_000)) * 4).astype(dtype)
    y = (rng.normal(size=(3, 100_000)) * 4).astype(dtype)
    y[0, :50_000] = -np.inf
    for fn, beta, reverse in FUNCTIONS:
        results = []
        for name in ("compiled", "reference"):
            with _backend.use_backend(name):
                results.append(crossent.value_and_grad(fn)(
                    x, y, temperature=0.5, reduction="sum",
                    **({"reverse": reverse} if beta is None else {"beta": beta})))
        (v1, g1), (v2, g2) = results
        np.testing.assert_allclose(v1, v2, rtol=TOL[dtype])
        if np.isfinite(v1):
            np.testing.assert_allclose(g1, g2, rtol=0, atol=TOL[dtype] * max(1.0, np.abs(g2).max()))



def _multi_chunk_rows(dtype):
    """Rows of 3 x 256 + 17 classes (the kernel's chunks are 256 wide) whose maxima rise in
    later chunks (the online sums are rescaled), a leading chunk masked on both sides (the
    running maximum still -inf), logits to +-1e4, and one near-one-hot teacher."""
    rng = np.random.default_rng(5)
    c = 3 * 256 + 17
    x = rng.normal(size=(5, c)) * 3
    y = rng.normal(size=(5, c)) * 3
    x[0] += np.linspace(0, 40, c)  # every chunk's maximum above the one before
    y[0] += np.linspace(0, 25, c)
    x[1, :256] = y[1, :256] = -np.inf
    x[2], y[2] = x[2] * 3e3, y[2] * 3e3
    y[3, 700] = 60.0
    x[4, -5:] = 30.0
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_every_simd_level_matches_reference(dtype):
    """The compiled kernel at every SIMD level the CPU runs, against the NumPy reference, on
    multi-chunk rows; with the hard cross-entropy mixed in at T != 1 (its own log-sum-exp)."""
    from crossent import _backend, _dispatch

    ext = _backend._compiled
    if ext is None:
        pytest.skip("compiled kernels unavailable")
    x, y = _multi_chunk_rows(dtype)
    labels = np.array([3, 300, 700, 700, 780])
    where = np.array([True, True, True, True, True])
    previous = ext.simd_level()
    try:
        for kind, beta in (("forward", 0.5), ("reverse", 0.5), ("jsd", 0.1), ("jsd", 0.5)):
            for temperature, hard in ((1.0, 0.0), (0.5, 0.0), (2.0, 0.3), (1.0, 1.0)):
                with _backend.use_backend("reference"):
                    v_ref, g_ref = _dispatch.softmax_divergence(
                        x, y, kind, beta, temperature, hard, where, labels, 0.5, True)
                for level in ext.supported_simd_levels().split(","):
                    ext.set_simd_level(level)
                    v, g = _dispatch.softmax_divergence(x, y, kind, beta, temperature, hard, where,
                                                        labels, 0.5, True, out=x.copy())
                    what = f"{kind} beta={beta} T={temperature} h={hard} at {level}"
                    np.testing.assert_allclose(v, v_ref, rtol=TOL[dtype], atol=TOL[dtype], err_msg=what)
                    scale = max(1.0, np.abs(g_ref).max())
                    np.testing.assert_allclose(g, g_ref, rtol=0, atol=TOL[dtype] * scale, err_msg=what)
    finally:
        ext.set_simd_level(previous)

# ----------------------------------------------------------------------------- semantics
def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_agrees_with_the_probability_measures(backend):
    """KL and JSD(beta=1/2) of the softmaxes equal crossent.kl_divergence / js_divergence."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2
    for t in (0.5, 1.0, 3.0):
        p, q = softmax(y / t), softmax(x / t)
        np.testing.assert_allclose(
            crossent.softmax_kl_divergence(x, y, temperature=t, reduction="none"),
            crossent.kl_divergence(p, q), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            crossent.softmax_kl_divergence(x, y, temperature=t, reverse=True, reduction="none"),
            crossent.kl_divergence(q, p), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            crossent.softmax_js_divergence(x, y, temperature=t, reduction="none"),
            crossent.js_divergence(p, q), rtol=1e-12, atol=1e-14)


def test_masked_classes_as_spec_says(backend):
    x = np.array([[0.0, 1.0, 2.0]])
    teacher_masked = np.array([[0.5, -np.inf, 1.0]])
    both = np.array([[0.0, -np.inf, 2.0]])
    # forward KL: a class only the teacher masks is free ...
    kl = crossent.softmax_kl_divergence
    assert np.isfinite(kl(x, teacher_masked))
    # ... a class only the student masks costs inf; reverse the other way round
    assert kl(teacher_masked, x) == np.inf
    assert kl(x, teacher_masked, reverse=True) == np.inf
    assert np.isfinite(kl(teacher_masked, x, reverse=True))
    # masked on both sides is the same as sliced away, in value and gradient
    sliced = np.array([[0.0, 2.0]]), np.array([[0.5, 1.0]])
    masked = both, np.array([[0.5, -np.inf, 1.0]])
    for fn, kw in [(kl, {}), (kl, {"reverse": True})] + [
            (crossent.softmax_js_divergence, {"beta": b}) for b in BETAS]:
        v1, g1 = crossent.value_and_grad(fn)(*masked, **kw)
        v2, g2 = crossent.value_and_grad(fn)(*sliced, **kw)
        np.testing.assert_allclose(v1, v2, rtol=1e-14)
        np.testing.assert_allclose(g1[:, [0, 2]], g2, rtol=1e-13, atol=1e-16)
        assert g1[0, 1] == 0.0
    # the beta-mixture keeps a one-sided mask finite
    for b in (0.1, 0.5, 0.9):
        assert np.isfinite(crossent.softmax_js_divergence(x, teacher_masked, beta=b))
        assert np.isfinite(crossent.softmax_js_divergence(teacher_masked, x, beta=b))


def test_nan_inf_and_empty_rows_give_nan(backend):
    y = np.zeros((4, 3))
    x = np.array([[0.0, np.nan, 1.0], [0.0, np.inf, 1.0], [-np.inf] * 3, [0.0, 1.0, 2.0]])
    for fn in (crossent.softmax_kl_divergence, crossent.softmax_js_divergence):
        v, g = crossent.value_and_grad(fn)(x, y, reduction="sum")
        assert np.isnan(v)
        assert np.isnan(g[:3]).all() and np.isfinite(g[3]).all()
        assert np.isnan(fn(y, x, reduction="none")[:3]).all()


@pytest.mark.parametrize("fn", [crossent.softmax_kl_divergence, crossent.softmax_js_divergence])
def test_where_and_batchmean(backend, fn):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    where = np.array([[True, False, True], [False, False, True]])
    per_row = fn(x, y, reduction="none")
    masked_rows = fn(x, y, where=where, reduction="none")
    np.testing.assert_array_equal(masked_rows, np.where(where, per_row, 0.0))
    np.testing.assert_allclose(fn(x, y, where=where), per_row[where].sum() / 3, rtol=1e-14)
    np.testing.assert_allclose(fn(x, y, where=where, reduction="sum"), per_row[where].sum(), rtol=1e-14)
    np.testing.assert_allclose(fn(x, y), per_row.sum() / 6, rtol=1e-14)  # batchmean, not / (6*4)
    _, g = crossent.value_and_grad(fn)(x, y, where=where)
    _, g_sum = crossent.value_and_grad(fn)(x[where], y[where], reduction="sum")
    np.testing.assert_allclose(g[where], g_sum / 3, rtol=1e-13)
    assert not g[~where].any()
    nothing = np.zeros((2, 3), bool)
    v, g = crossent.value_and_grad(fn)(x, y, where=nothing)
    assert v == 0.0 and not g.any()


def test_axis_dtype_and_out(backend):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))
    fn = crossent.softmax_js_divergence
    v0, g0 = crossent.value_and_grad(fn)(np.moveaxis(x, 0, -1), np.moveaxis(y, 0, -1), beta=0.3)
    v1, g1 = crossent.value_and_grad(fn)(x, y, axis=0, beta=0.3)
    np.testing.assert_allclose(v0, v1, rtol=1e-14)
    np.testing.assert_allclose(np.moveaxis(g0, -1, 0), g1, rtol=1e-13)
    out = np.empty_like(x)
    v2, g2 = crossent.value_and_grad(fn)(x, y, axis=0, beta=0.3, out=out)
    assert g2 is out and np.array_equal(out, g1)
    x32 = x.astype(np.float32)
    assert fn(x32, y.astype(np.float32)).dtype == np.float32
    assert fn(x32, y).dtype == np.float32  # a float64 teacher: computed in float64, the logits' dtype back
    assert crossent.grad(fn)(x32, y).dtype == np.float32
    assert fn(x.astype(np.float16), y).dtype == np.float32
    before = x.copy()
    crossent.value_and_grad(fn)(x, y, out=None)
    assert np.array_equal(x, before)


def test_temperature_scales_both_distributions(backend):
    """softmax(x/T) vs softmax(y/T): T applies to both, and no T^2 factor."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    for fn in (crossent.softmax_kl_divergence, crossent.softmax_js_divergence):
        np.testing.assert_allclose(fn(x, y, temperature=4.0), fn(x / 4.0, y / 4.0), rtol=1e-13)
        g_t = crossent.grad(fn)(x, y, temperature=4.0)
        np.testing.assert_allclose(g_t, crossent.grad(fn)(x / 4.0, y / 4.0) / 4.0, rtol=1e-12)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
    ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
    ({"reduction": "batchmean"}, ValueError, "reduction must be one of"),
    ({"where": np.ones(3)}, TypeError, "where must be a boolean array"),
    ({"where": np.ones(2, bool)}, ValueError, r"where must have the logits' shape .*\(3,\)"),
])
def test_bad_options(kwargs, error, match):
    x = np.zeros((3, 4))
    with pytest.raises(error, match=match):
        crossent.softmax_kl_divergence(x, x, **kwargs)


def test_bad_input():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"target_logits has shape \(3, 5\), but logits has shape \(3, 4\)"):
        crossent.softmax_js_divergence(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="beta must be <= 1.0, got 1.5"):
        crossent.softmax_js_divergence(x, x, beta=1.5)
    with pytest.raises(TypeError, match="reverse must be a bool"):
        crossent.softmax_kl_divergence(x, x, reverse="yes")
    with pytest.raises(TypeError, match="target_logits must be a real floating array"):
        crossent.softmax_kl_divergence(x, np.zeros((3, 4), complex))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        crossent.value_and_grad(crossent.softmax_kl_divergence)(x, x, reduction="none")
