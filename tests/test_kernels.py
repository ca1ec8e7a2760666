"""The compiled kernels (crossent._ext) called directly, against crossent._reference.

Expected values come from the NumPy reference computed in float64 on the same inputs (SPEC §4
tolerances: 1e-12 for float64, 5e-6 for float32; relative above 1, absolute below). Sizes
cover the tails of every SIMD width and the 256-element chunks of the online softmax.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import contextlib

import _mp_reference as mpr
import crossent
import crossent._backend as _backend
from crossent import _dispatch
from crossent import _reference as ref
from crossent._options import BinaryOptions, NLLOptions, SoftmaxCEOptions, SoftmaxFocalOptions

ext = _backend._compiled
pytestmark = pytest.mark.skipif(ext is None, reason=f"compiled kernels unavailable: {_backend._IMPORT_ERROR}")

TOL = {np.float64: 1e-12, np.float32: 5e-6}
DTYPES = [np.float64, np.float32]
# tails of 2, 4, 8, 16 lanes, and around the 256-element chunks
ODD_SIZES = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257, 513]


LEVELS = ext.supported_simd_levels().split(",") if ext is not None else []


@contextlib.contextmanager
def at_level(level):
    """Run the kernels at one SIMD level inside the block."""
    previous = ext.simd_level()
    ext.set_simd_level(level)
    try:
        yield
    finally:
        ext.set_simd_level(previous)


def assert_close(actual, expected, tol):
    """|actual - expected| <= tol * max(1, |expected|); NaN and inf where expected has them."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    inf = np.isinf(expected)
    np.testing.assert_array_equal(actual[inf], expected[inf])
    ok = ~np.isnan(expected) & ~inf
    err = np.abs(actual[ok] - expected[ok]) / np.maximum(1.0, np.abs(expected[ok]))
    assert err.size == 0 or err.max() <= tol, f"max error {err.max():.3g} > {tol:g}"


def _values(dtype, masked):
    width = 32 if dtype is np.float32 else 64
    base = st.one_of(st.floats(-30, 30, width=width), st.floats(-1e4, 1e4, width=width),
                     st.sampled_from([0.0, 88.0, -88.0, 1e4, -1e4]))
    return st.one_of(base, st.just(-np.inf)) if masked else base


@st.composite
def softmax_case(draw, dtype):
    n = draw(st.integers(1, 4))
    c = draw(st.one_of(st.sampled_from(ODD_SIZES), st.integers(1, 40)))
    x = draw(hnp.arrays(dtype, (n, c), elements=_values(dtype, draw(st.booleans()))))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return x, labels


def _call_index(x, labels, weight=None, ignore_index=None, eps=0.0, z_loss=0.0, softcap=0.0,
                grad=True, scale=1.0, out=None):
    loss = np.empty(x.shape[0])
    g = (np.empty_like(x) if out is None else out) if grad else None
    ext.softmax_ce_index(x, labels, weight, ignore_index, eps, z_loss, softcap, loss, g, scale)
    return loss, g


# ----------------------------------------------------------------------------- softmax CE, index
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_ce_index_matches_reference(dtype, data):
    x, labels = data.draw(softmax_case(dtype))
    n, c = x.shape
    weight = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (c,), elements=st.floats(0, 3))))
    ignore_index = data.draw(st.sampled_from([None, -100, 0]))
    eps = data.draw(st.sampled_from([0.0, 0.1, 1.0]))
    z_loss = data.draw(st.sampled_from([0.0, 1e-4]))
    softcap = data.draw(st.sampled_from([0.0, 0.0, 5.0]))
    scale = data.draw(st.sampled_from([1.0, 0.25]))
    loss, g = _call_index(x, labels, weight, ignore_index, eps, z_loss, softcap, scale=scale)
    lf, gf = _call_index(x, labels, weight, ignore_index, eps, z_loss, softcap, grad=False)
    opts = SoftmaxCEOptions.checked(weight=weight, num_classes=c, ignore_index=ignore_index,
                                    label_smoothing=eps, z_loss=z_loss, softcap=softcap or None)
    r_loss, r_grad = ref.softmax_cross_entropy_index(x.astype(np.float64), labels, opts)
    assert g.dtype == dtype and gf is None
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(lf, r_loss, TOL[dtype])
    assert_close(g, r_grad * scale, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 17, 256, 300, 70_000])
@pytest.mark.parametrize("where", ["start", "end", "masked_head"])
def test_long_rows_and_chunk_boundaries(dtype, c, where):
    """The running maximum rises late, or the first chunks are all masked (online rescaling)."""
    rng = np.random.default_rng(c)
    x = (rng.standard_normal((3, c)) * 4).astype(dtype)
    if where == "start":
        x[:, 0] = 40
    elif where == "end":
        x[:, -1] = 40
        x[:, : c // 2] -= 30
    else:
        x[:, : max(c - 3, 1) // 2] = -np.inf
        x[:, -1] = 3
    labels = np.array([0, c - 1, c // 2], dtype=np.int64)
    for eps in (0.0, 0.1):
        loss, g = _call_index(x, labels, eps=eps, scale=0.5)
        r_loss, r_grad = ref.softmax_cross_entropy_index(x.astype(np.float64), labels,
                                                         SoftmaxCEOptions(label_smoothing=eps))
        assert_close(loss, r_loss, TOL[dtype])
        assert_close(g, 0.5 * r_grad, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("c", [3, 33, 1000])
def test_in_place_gradient_overwrites_the_logits(dtype, eps, c):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, c)) * 3).astype(dtype)
    x[1, 2] = -np.inf
    x[2, :] = -np.inf
    x[2, 0] = np.inf  # a non-finite maximum takes the general path, in place too
    labels = np.array([0, 2, 1, c - 1], dtype=np.int64)
    r_loss, r_grad = ref.softmax_cross_entropy_index(x.astype(np.float64), labels,
                                                     SoftmaxCEOptions(label_smoothing=eps))
    buf = x.copy()
    loss, g = _call_index(buf, labels, eps=eps, out=buf)
    assert g is buf
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(buf, r_grad, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_classes_and_nan_rows(dtype):
    x = np.array([[0.0, -np.inf, 1.0, 2.0],      # a masked class: gradient exactly 0
                  [0.0, -np.inf, 1.0, 2.0],      # the target masked: loss inf
                  [-np.inf] * 4,                 # every class masked: loss inf
                  [0.0, np.nan, 1.0, 2.0]],      # NaN in: NaN out for the whole row
                 dtype=dtype)
    labels = np.array([0, 1, 2, 3], dtype=np.int64)
    loss, g = _call_index(x, labels)
    assert g[0, 1] == 0.0
    assert loss[1] == np.inf and loss[2] == np.inf
    assert np.isnan(loss[3]) and np.isnan(g[3]).all()
    assert np.isfinite(g[:2]).all()
    r_loss, r_grad = ref.softmax_cross_entropy_index(x.astype(np.float64), labels)
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(g[[0, 1, 3]], r_grad[[0, 1, 3]], TOL[dtype])


def test_float32_exp_range():
    """Softmax of float32 rows whose logits spread over the whole exponent range."""
    x = np.array([np.linspace(-200, 0, 999, dtype=np.float32)])
    labels = np.array([998], dtype=np.int64)
    loss, g = _call_index(x, labels)
    r_loss, r_grad = ref.softmax_cross_entropy_index(x.astype(np.float64), labels)
    assert_close(loss, r_loss, 5e-6)
    assert_close(g, r_grad, 5e-6)


# ----------------------------------------------------------------------------- threads
def test_one_and_two_threads_agree_and_runs_repeat():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 3000)).astype(np.float32)
    labels = rng.integers(0, 3000, 64)
    before = crossent.get_num_threads()
    try:
        crossent.set_num_threads(1)
        l1, g1 = _call_index(x, labels, eps=0.1)
        crossent.set_num_threads(2)
        l2, g2 = _call_index(x, labels, eps=0.1)
        l3, g3 = _call_index(x, labels, eps=0.1)
    finally:
        crossent.set_num_threads(before)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(l2, l3)
    np.testing.assert_array_equal(g2, g3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["plain", "weight_zloss", "masked", "nan", "inf", "ignored"])
def test_few_long_rows_split_over_threads(dtype, case):
    """Fewer rows than threads: each row's vocabulary is split over the threads and merged."""
    rng = np.random.default_rng(7)
    c = 70_001
    x = (rng.standard_normal((1, c)) * 3).astype(dtype)
    x[0, 60_000] = 25  # the maximum in the second thread's slice
    labels = np.array([123], dtype=np.int64)
    weight, z_loss, ignore_index = None, 0.0, None
    if case == "weight_zloss":
        weight, z_loss = rng.random(c) + 0.5, 1e-3
    elif case == "masked":
        x[0, :40_000] = -np.inf  # the first slice all masked, the target among it
    elif case == "nan":
        x[0, 5] = np.nan
    elif case == "inf":
        x[0, 69_000] = np.inf
    elif case == "ignored":
        ignore_index = 123
    before = crossent.get_num_threads()
    try:
        crossent.set_num_threads(2)
        loss, g = _call_index(x, labels, weight, ignore_index, z_loss=z_loss, scale=0.5)
        lf, _ = _call_index(x, labels, weight, ignore_index, z_loss=z_loss, grad=False)
    finally:
        crossent.set_num_threads(before)
    with np.errstate(invalid="ignore"):
        opts = SoftmaxCEOptions(weight=weight, ignore_index=ignore_index, z_loss=z_loss)
        r_loss, r_grad = ref.softmax_cross_entropy_index(x.astype(np.float64), labels, opts)
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(lf, r_loss, TOL[dtype])
    assert_close(g, 0.5 * r_grad, TOL[dtype])


# ----------------------------------------------------------------------------- other kernels
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softmax_ce_dense_matches_reference(level, dtype, data):
    x, _ = data.draw(softmax_case(dtype))
    n, c = x.shape
    t_dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    t = data.draw(hnp.arrays(t_dtype, (n, c), elements=st.floats(0, 1, width=32)))
    weight = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (c,), elements=st.floats(0, 3))))
    eps = data.draw(st.sampled_from([0.0, 0.1]))
    z_loss = data.draw(st.sampled_from([0.0, 1e-4]))
    softcap = data.draw(st.sampled_from([0.0, 5.0]))
    loss, g = np.empty(n), np.empty_like(x)
    with at_level(level):
        ext.softmax_ce_dense(x, t, weight, eps, z_loss, softcap, loss, g, 0.5)
    opts = SoftmaxCEOptions.checked(weight=weight, num_classes=c, label_smoothing=eps, z_loss=z_loss,
                                    softcap=softcap or None)
    r_loss, r_grad = ref.softmax_cross_entropy_dense(x.astype(np.float64), t.astype(np.float64), opts)
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(g, 0.5 * r_grad, TOL[dtype])


# ----------------------------------------------------------------------------- softcap, split rows, dense checks
def _call_dense(x, t, weight=None, eps=0.0, z_loss=0.0, softcap=0.0, grad=True, scale=1.0,
                out=None):
    loss = np.empty(x.shape[0])
    g = (np.empty_like(x) if out is None else out) if grad else None
    n_bad = ext.softmax_ce_dense(x, t, weight, eps, z_loss, softcap, loss, g, scale)
    return loss, g, n_bad


def _softcap_rows(dtype):
    """Rows through tanh's two branches (|x/s| < 0.55 and above), its saturation, masked
    classes and +inf (capped to s)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((5, 300)) * 20).astype(dtype)
    x[0, :7] = [0.0, 1e-3, -2.7, 2.8, 1e4, -1e4, 3e38 if dtype is np.float32 else 1e300]
    x[1, 5] = -np.inf
    x[2, 17] = np.inf
    x[3, :] = np.linspace(-1, 1, 300, dtype=dtype)
    x[4, 9] = -np.inf
    return x, np.array([3, 7, 17, 150, 8], dtype=np.int64)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softcap_matches_mpmath_at_every_level(level, dtype):
    """z = s tanh(x / s) through the math layer's vectorised tanh, and dz/dx = 1 - (z/s)^2,
    against a 50-digit mpmath reference (sech^2), class indices and distributions."""
    x, labels = _softcap_rows(dtype)
    t = np.random.default_rng(12).dirichlet(np.ones(x.shape[1]), x.shape[0]).astype(dtype)
    t[x == -np.inf] = 0.0  # no mass on masked classes: finite
    w = np.random.default_rng(13).random(x.shape[1]) + 0.5
    for eps, weight in [(0.0, None), (0.1, w)]:
        with at_level(level):
            loss, g = _call_index(x, labels, weight, eps=eps, softcap=5.0, scale=0.5)
            lf, _ = _call_index(x, labels, weight, eps=eps, softcap=5.0, grad=False)
            dl, dg, n_bad = _call_dense(x, t, weight, eps, softcap=5.0, scale=0.5)
        m_loss, m_grad, _ = mpr.softmax_cross_entropy(x, labels, weight=weight, label_smoothing=eps,
                                                     softcap=5.0)
        mpr.assert_close(loss, m_loss, TOL[dtype], "index loss")
        mpr.assert_close(lf, m_loss, TOL[dtype], "index loss, forward only")
        mpr.assert_close(g.astype(np.float64) * 2, m_grad, TOL[dtype], "index gradient")
        m_loss, m_grad, _ = mpr.softmax_cross_entropy(x, t, weight=weight, label_smoothing=eps,
                                                     softcap=5.0)
        assert n_bad == 0
        mpr.assert_close(dl, m_loss, TOL[dtype], "dense loss")
        mpr.assert_close(dg.astype(np.float64) * 2, m_grad, TOL[dtype], "dense gradient")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_softcap_index_matches_reference_at_every_level(level, dtype, data):
    x, labels = data.draw(softmax_case(dtype))
    c = x.shape[1]
    cap = data.draw(st.sampled_from([0.5, 5.0, 30.0, 1e4]))
    eps = data.draw(st.sampled_from([0.0, 0.1]))
    weight = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (c,), elements=st.floats(0, 3))))
    in_place = data.draw(st.booleans())
    buf = x.copy()
    with at_level(level):
        loss, g = _call_index(buf, labels, weight, eps=eps, z_loss=1e-4, softcap=cap,
                              out=buf if in_place else None)
    r_loss, r_grad = ref.softmax_cross_entropy_index(
        x.astype(np.float64), labels,
        SoftmaxCEOptions(weight=weight, label_smoothing=eps, z_loss=1e-4, softcap=cap))
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(g, r_grad, TOL[dtype])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("shape", [(1, 9), (3, 257), (2, 40_000)])
def test_dense_kernel_counts_targets_outside_the_unit_interval(level, shape):
    """The count comes from the kernel's own pass, at every level, whole rows or split."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    for t_dtype in (np.float32, np.float64):
        t = np.full(shape, 0.5 / shape[1], dtype=t_dtype)
        bad = rng.choice(t.size, size=min(5, t.size), replace=False)
        t.flat[bad] = [1.5, -1e-30, np.nan, np.inf, -np.inf][: bad.size]
        x.flat[bad[-1]] = -np.inf  # a bad target on a masked class counts too
        with at_level(level):
            assert _call_dense(x, t)[2] == bad.size
            assert _call_dense(x, t, grad=False, softcap=3.0)[2] == bad.size
        t.flat[bad] = [0.0, 1.0, 0.0, 1.0, 0.0][: bad.size]
        with at_level(level):
            assert _call_dense(x, t, eps=0.1)[2] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("case", ["plain", "masked_head", "nan", "inf"])
def test_split_rows_dense_focal_and_options_match_reference(dtype, threads, case):
    """Three long rows over 2 threads (they do not divide evenly) or 4 (fewer rows than
    threads): every row is split over the threads, and the slices merged, for distributions,
    focal and class indices with smoothing, weights, z-loss and softcap."""
    rng = np.random.default_rng(21)
    n, c = 3, 20_001
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    x[:, 15_000] = 25  # the maximum in a later slice
    labels = np.array([5, 19_999, 10_000], dtype=np.int64)
    if case == "masked_head":
        x[:, :12_000] = -np.inf  # whole slices masked, the first target among them
    elif case == "nan":
        x[1, 7] = np.nan
    elif case == "inf":
        x[2, 19_000] = np.inf
    t = rng.dirichlet(np.ones(c), n)
    if case == "masked_head":
        t[:, :12_000] = 0.0
        t /= t.sum(axis=1, keepdims=True)
    w = rng.random(c) + 0.5
    x64 = x.astype(np.float64)
    before = crossent.get_num_threads()
    try:
        crossent.set_num_threads(threads)
        with np.errstate(all="ignore"):
            for t_dtype in (np.float32, np.float64):
                tt = t.astype(t_dtype)
                for eps, weight, cap in [(0.0, None, 0.0), (0.1, w, 0.0), (0.1, w, 20.0)]:
                    loss, g, n_bad = _call_dense(x, tt, weight, eps, 1e-3, cap, scale=0.5)
                    lf, _, _ = _call_dense(x, tt, weight, eps, 1e-3, cap, grad=False)
                    r_loss, r_grad = ref.softmax_cross_entropy_dense(
                        x64, tt.astype(np.float64),
                        SoftmaxCEOptions(weight=weight, label_smoothing=eps, z_loss=1e-3,
                                         softcap=cap or None))
                    assert n_bad == 0
                    assert_close(loss, r_loss, TOL[dtype])
                    assert_close(lf, r_loss, TOL[dtype])
                    assert_close(g, 0.5 * r_grad, TOL[dtype])
            for eps, weight, cap in [(0.1, w, 0.0), (0.2, None, 20.0)]:
                loss, g = _call_index(x, labels, weight, -1, eps, 1e-3, cap)
                r_loss, r_grad = ref.softmax_cross_entropy_index(
                    x64, labels, SoftmaxCEOptions(weight=weight, ignore_index=-1, label_smoothing=eps,
                                                  z_loss=1e-3, softcap=cap or None))
                assert_close(loss, r_loss, TOL[dtype])
                assert_close(g, r_grad, TOL[dtype])
            loss, g = np.empty(n), np.empty_like(x)
            ext.softmax_focal(x, labels, w, 2.0, 10_000, loss, g, 0.5)
            r_loss, r_grad = ref.softmax_focal(
                x64, labels, SoftmaxFocalOptions(alpha=w, gamma=2.0, ignore_index=10_000))
            assert_close(loss, r_loss, TOL[dtype])
            assert_close(g, 0.5 * r_grad, TOL[dtype])
    finally:
        crossent.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_split_rows_match_whole_rows(dtype, data):
    """The same rows split over 2 or 3 threads and whole on one agree to rounding."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    c = data.draw(st.integers(33_000, 50_000))  # past the kernels' one-thread size
    x = (rng.standard_normal((1, c)) * data.draw(st.sampled_from([1.0, 30.0]))).astype(dtype)
    x[0, rng.integers(0, c, data.draw(st.integers(0, 50)))] = -np.inf
    t = rng.dirichlet(np.full(c, 0.1), 1).astype(dtype)
    t[x == -np.inf] = 0.0
    labels = np.array([data.draw(st.integers(0, c - 1))], dtype=np.int64)
    kw = dict(weight=data.draw(st.sampled_from([None, rng.random(c)])),
              eps=data.draw(st.sampled_from([0.0, 0.3])),
              softcap=data.draw(st.sampled_from([0.0, 4.0])))
    before = crossent.get_num_threads()
    try:
        crossent.set_num_threads(1)
        whole = _call_dense(x, t, **kw), _call_index(x, labels, **kw)
        crossent.set_num_threads(data.draw(st.sampled_from([2, 3])))
        split = _call_dense(x, t, **kw), _call_index(x, labels, **kw)
    finally:
        crossent.set_num_threads(before)
    for a, b in zip(whole, split):
        assert_close(a[0], b[0], TOL[dtype])
        assert_close(a[1], b[1], TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cap", [0.0, 5.0])
def test_dense_in_place_gradient_overwrites_the_logits(dtype, cap):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((4, 600)) * 3).astype(dtype)
    x[1, 2] = -np.inf
    x[2, :] = -np.inf
    x[2, 0] = np.inf  # a +inf maximum takes the scalar path before the row is overwritten
    t = rng.dirichlet(np.ones(600), 4)
    t[1, 2] = 0.0
    with np.errstate(all="ignore"):
        r_loss, r_grad = ref.softmax_cross_entropy_dense(
            x.astype(np.float64), t, SoftmaxCEOptions(label_smoothing=0.1, softcap=cap or None))
    buf = x.copy()
    loss, g, _ = _call_dense(buf, t, eps=0.1, softcap=cap, out=buf)
    assert g is buf
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(buf, r_grad, TOL[dtype])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_nll_and_softmax_focal_match_reference(level, dtype, data):
    x, labels = data.draw(softmax_case(dtype))
    n, c = x.shape
    weight = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (c,), elements=st.floats(0, 3))))
    ignore_index = data.draw(st.sampled_from([None, 0]))
    gamma = data.draw(st.sampled_from([0.0, 0.5, 2.0]))
    loss, g = np.empty(n), np.empty_like(x)
    logp = np.minimum(x, 0).astype(dtype)
    ext.nll(logp, labels, weight, ignore_index, loss, g, 2.0)
    with np.errstate(invalid="ignore"):  # 0 * -inf: NaN in both
        r_loss, r_grad = ref.nll(logp.astype(np.float64), labels,
                                 NLLOptions.checked(weight=weight, num_classes=c, ignore_index=ignore_index))
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(g, 2.0 * r_grad, TOL[dtype])
    with at_level(level):
        ext.softmax_focal(x, labels, weight, gamma, ignore_index, loss, g, 1.0)
    opts = SoftmaxFocalOptions.checked(alpha=weight, num_classes=c, gamma=gamma, ignore_index=ignore_index)
    r_loss, r_grad = ref.softmax_focal(x.astype(np.float64), labels, opts)
    assert_close(loss, r_loss, TOL[dtype])
    assert_close(g, r_grad, TOL[dtype])


def _binary_call(fn, x, t, *args, grad_scale=1.0):
    """Run an element-wise kernel with per-element losses, and again for the sum alone: the
    returned sum equals the per-element losses' sum and the sum-only call gives it too."""
    loss, g = np.empty(x.size), np.empty_like(x)
    total, n_bad = fn(x, t, *args, loss, g, grad_scale)
    assert n_bad == 0  # every target (and probability) drawn lies in [0, 1]
    np.testing.assert_equal(fn(x, t, *args, None, None, grad_scale), (total, 0))
    np.testing.assert_allclose(total, np.sum(loss), rtol=1e-6 if x.dtype == np.float32 else 1e-12)
    return loss, g


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("n", [1, 17, 2048, 70_000])
def test_binary_kernels_count_inputs_outside_the_unit_interval(level, n):
    x = np.zeros(n)
    t = np.full(n, 0.5, dtype=np.float32)
    t[[0, -1]] = [1.5, np.nan] if n > 1 else [np.nan]
    p = np.full(n, 0.5)
    p[n // 2] = -0.25
    expected_t = 2 if n > 1 else 1
    with at_level(level):
        assert ext.sigmoid_bce(x, t, None, None, 0.0, None, None, 1.0)[1] == expected_t
        assert ext.sigmoid_focal(x, t, 0.25, 2.0, None, None, 1.0)[1] == expected_t
        assert ext.bce(p, t, None, None, None, 1.0)[1] == expected_t + 1
        assert ext.bce(p, t, np.ones(n), None, None, 1.0)[1] == expected_t + 1


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_binary_kernels_match_reference(level, dtype, data):
    n = data.draw(st.sampled_from(ODD_SIZES + [2048, 2049, 5000]))
    width = 32 if dtype is np.float32 else 64
    x = data.draw(hnp.arrays(dtype, (n,), elements=st.one_of(
        st.floats(-40, 40, width=width),
        st.sampled_from([0.0, 1e4, -1e4, 90.0, -90.0, 710.0, -710.0, np.inf, -np.inf]))))
    p = data.draw(hnp.arrays(dtype, (n,), elements=st.floats(0, 1, width=width)))
    t_dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    t = data.draw(hnp.arrays(t_dtype, (n,), elements=st.one_of(
        st.floats(0, 1, width=32), st.sampled_from([0.0, 1.0]))))
    w = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (n,), elements=st.floats(0, 3))))
    pw = data.draw(st.one_of(st.none(), hnp.arrays(np.float64, (n,), elements=st.floats(0, 3))))
    eps = data.draw(st.sampled_from([0.0, 0.1]))
    alpha = data.draw(st.sampled_from([None, 0.25]))
    gamma = data.draw(st.sampled_from([0.0, 0.5, 2.0]))
    t64 = t.astype(np.float64)
    with np.errstate(all="ignore"), at_level(level):
        loss, g = _binary_call(ext.sigmoid_bce, x, t, w, pw, eps)
        opts = BinaryOptions.checked(weight=w, pos_weight=pw, label_smoothing=eps, alpha=alpha, gamma=gamma,
                                     shape=x.shape)
        r_loss, r_grad = ref.sigmoid_binary_cross_entropy(x.astype(np.float64), t64, opts)
        assert_close(loss, r_loss, TOL[dtype])
        assert_close(g, r_grad, TOL[dtype])
        loss, g = _binary_call(ext.bce, p, t, w)
        r_loss, r_grad = ref.binary_cross_entropy(p.astype(np.float64), t64, opts)
        assert_close(loss, r_loss, TOL[dtype])
        assert_close(g, r_grad.astype(dtype), TOL[dtype])  # 1/p may overflow float32
        loss, g = _binary_call(ext.sigmoid_focal, x, t, alpha, gamma)
        r_loss, r_grad = ref.sigmoid_focal(x.astype(np.float64), t64, opts)
        assert_close(loss, r_loss, TOL[dtype])
        assert_close(g, r_grad, TOL[dtype])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_focal_gradient_is_zero_at_infinite_logits_with_hard_targets(level, dtype):
    """The loss is 0 there and the gradient's limit is 0 (it was NaN: -inf - -inf)."""
    x = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype)
    t = np.array([1.0, 0.0, 1.0, 0.0])
    for alpha, gamma in [(0.25, 2.0), (None, 0.5), (None, 0.0)]:
        with at_level(level):
            loss, g = _binary_call(ext.sigmoid_focal, x, t, alpha, gamma)
        np.testing.assert_array_equal(loss, 0.0)
        np.testing.assert_array_equal(g, 0.0)
        r_loss, r_grad = ref.sigmoid_focal(x.astype(np.float64), t, BinaryOptions(alpha=alpha, gamma=gamma))
        np.testing.assert_array_equal(r_loss, 0.0)
        np.testing.assert_array_equal(r_grad, 0.0)


# ------------------------------------------------------------- binary kernels, hard targets
# The element-wise kernels run blocks of 2048 elements whose targets are all 0 or 1 by a path
# with one logarithm (bce) or none of 1 - p_t (sigmoid focal); a block holding a soft target,
# or for the focal loss a logit beyond +-80 (float32) or NaN, is recomputed by the general path.
def _hard_case(dtype, n=3 * 2048 + 17, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 6).astype(dtype)
    x[:40] = [0.0, -0.0, 79.0, -79.0, 30.0, -30.0, 1e-30, -1e-30] * 5
    t = (rng.random(n) < 0.4).astype(np.float32)
    p = rng.random(n).astype(dtype)
    p[:60] = np.concatenate([np.geomspace(1e-30, 0.49, 30), 1 - np.geomspace(1e-7, 0.49, 30)]).astype(dtype)
    p[60:64] = [0.0, 1.0, 0.0, 1.0]
    t[60:64] = [0.0, 1.0, 1.0, 0.0]  # exact 0 (loss 0) and -log 0 = inf
    return x, t, p


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", ["hard", "soft target", "large logit", "nan logit"])
def test_binary_kernels_hard_target_blocks_match_reference(level, dtype, block):
    x, t, p = _hard_case(dtype)
    if block == "soft target":
        t[2048 + 5] = 0.3
    elif block == "large logit":
        x[2048 + 5] = 200.0
    elif block == "nan logit":
        x[2048 + 5] = np.nan
    t64 = t.astype(np.float64)
    with np.errstate(all="ignore"), at_level(level):
        for alpha, gamma in [(0.25, 2.0), (None, 0.5), (None, 0.0), (0.5, 3.0)]:
            loss, g = _binary_call(ext.sigmoid_focal, x, t, alpha, gamma, grad_scale=0.5)
            r_loss, r_grad = ref.sigmoid_focal(x.astype(np.float64), t64,
                                               BinaryOptions(alpha=alpha, gamma=gamma))
            assert_close(loss, r_loss, TOL[dtype])
            assert_close(g, 0.5 * r_grad, TOL[dtype])
        loss, g = _binary_call(ext.bce, p, t, None, grad_scale=0.5)
        r_loss, r_grad = ref.binary_cross_entropy(p.astype(np.float64), t64)
        assert_close(loss, r_loss, TOL[dtype])
        assert_close(g, (0.5 * r_grad).astype(dtype), TOL[dtype])


@pytest.mark.parametrize("level", LEVELS)
def test_bce_hard_targets_keep_relative_accuracy_of_small_losses(level):
    """-log(1 - p) for tiny p (t = 0) and -log p near p = 1 (t = 1) are small numbers; the
    hard-target path keeps them to a few float32 ulps (log1p accuracy), not just absolutely."""
    p = np.concatenate([np.geomspace(1e-30, 0.49, 500), 1 - np.geomspace(6e-8, 0.49, 500)]).astype(np.float32)
    t = np.concatenate([np.zeros(500), np.ones(500)]).astype(np.float32)
    with at_level(level):
        loss, _ = _binary_call(ext.bce, p, t, None)
    p64 = p.astype(np.float64)
    exact = np.where(t == 1, -np.log(p64), -np.log1p(-p64))
    np.testing.assert_allclose(loss, exact, rtol=4 * np.finfo(np.float32).eps, atol=0)


# ----------------------------------------------------------------------------- bad input
def _good():
    x = np.zeros((3, 4), dtype=np.float32)
    return x, np.array([0, 1, 3], dtype=np.int64), np.empty(3), np.empty_like(x)


def _index(x, labels, loss, g, weight=None, ignore_index=None, eps=0.0):
    ext.softmax_ce_index(x, labels, weight, ignore_index, eps, 0.0, 0.0, loss, g, 1.0)


def test_bindings_reject_label_out_of_range_naming_position_and_value():
    x, labels, loss, g = _good()
    labels[1] = 4
    with pytest.raises(IndexError, match=r"labels\[1\] = 4 is outside \[0, 4\)"):
        _index(x, labels, loss, g)
    labels[1] = -1
    with pytest.raises(IndexError, match=r"labels\[1\] = -1"):
        _index(x, labels, loss, g)
    labels[1] = -100  # the ignore_index is allowed
    _index(x, labels, loss, g, ignore_index=-100)
    with pytest.raises(IndexError, match=r"labels\[2\] = 9"):
        ext.nll(x, np.array([0, 1, 9]), None, None, loss, g, 1.0)
    with pytest.raises(IndexError, match=r"labels\[0\] = 7"):
        ext.softmax_focal(x, np.array([7, 1, 2]), None, 2.0, None, loss, g, 1.0)


@pytest.mark.parametrize("bad", ["int_logits", "float16", "fortran", "strided", "three_d",
                                 "int32_labels", "grad_dtype", "grad_strided", "loss_float32"])
def test_bindings_reject_wrong_dtype_rank_or_layout(bad):
    x, labels, loss, g = _good()
    if bad == "int_logits":
        x = x.astype(np.int64)
    elif bad == "float16":
        x = x.astype(np.float16)
    elif bad == "fortran":
        x = np.asfortranarray(np.zeros((3, 4), dtype=np.float32))
    elif bad == "strided":
        x = np.zeros((3, 8), dtype=np.float32)[:, ::2]
    elif bad == "three_d":
        x = x[None]
    elif bad == "int32_labels":
        labels = labels.astype(np.int32)
    elif bad == "grad_dtype":
        g = g.astype(np.float64)
    elif bad == "grad_strided":
        g = np.zeros((3, 8), dtype=np.float32)[:, ::2]
    elif bad == "loss_float32":
        loss = loss.astype(np.float32)
    with pytest.raises(TypeError):
        _index(x, labels, loss, g)


def test_bindings_reject_wrong_shapes_and_options():
    x, labels, loss, g = _good()
    with pytest.raises(ValueError, match="labels has 2 entries"):
        _index(x, labels[:2], loss, g)
    with pytest.raises(ValueError, match="loss_out has 2 entries"):
        _index(x, labels, loss[:2], g)
    with pytest.raises(ValueError, match="grad has shape"):
        _index(x, labels, loss, np.empty((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="weight has 3 entries"):
        _index(x, labels, loss, g, weight=np.ones(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        _index(x, labels, loss, g, eps=1.5)
    with pytest.raises(ValueError, match="at least one class"):
        _index(np.zeros((3, 0), dtype=np.float32), labels, loss, None)
    with pytest.raises(ValueError, match="targets must have the shape"):
        ext.softmax_ce_dense(x, np.zeros((3, 5)), None, 0.0, 0.0, 0.0, loss, g, 1.0)
    with pytest.raises(ValueError, match="alpha has 2 entries"):
        ext.softmax_focal(x, labels, np.ones(2), 2.0, None, loss, g, 1.0)
    flat = np.zeros(5, dtype=np.float64)
    with pytest.raises(ValueError, match="targets has 4 elements"):
        ext.sigmoid_bce(flat, np.zeros(4), None, None, 0.0, np.empty(5), None, 1.0)
    with pytest.raises(ValueError, match="pos_weight has 3 elements"):
        ext.sigmoid_bce(flat, np.zeros(5), None, np.ones(3), 0.0, np.empty(5), None, 1.0)
    with pytest.raises(ValueError, match="grad has 4 elements"):
        ext.bce(flat, np.zeros(5), None, np.empty(5), np.empty(4), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        ext.sigmoid_focal(flat, np.zeros(5), 1.5, 2.0, np.empty(5), None, 1.0)
    with pytest.raises(ValueError, match=r"n must be in \[1, 1024\], got 0"):
        ext.set_num_threads(0)


# ----------------------------------------------------------------------------- logsumexp, softmax, log_softmax
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_normalize_rows_matches_reference(dtype, data):
    x, _ = data.draw(softmax_case(dtype))
    log_space = data.draw(st.booleans())
    lse, out = np.empty(x.shape[0]), np.empty_like(x)
    ext.normalize_rows(x, lse, out, log_space)
    r_lse, r_out = ref.normalize_rows(x.astype(np.float64), log_space)
    assert_close(lse, r_lse, TOL[dtype])
    assert_close(out, r_out, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", ["all_masked", "plus_inf", "nan", "nan_and_plus_inf", "huge"])
def test_normalize_rows_non_finite_rows(dtype, row):
    x = np.linspace(-3, 3, 300).astype(dtype)[None, :].repeat(2, axis=0)
    if row == "all_masked":
        x[0] = -np.inf
    elif row == "plus_inf":
        x[0, 290] = np.inf
    elif row == "nan":
        x[0, 3] = np.nan
    elif row == "nan_and_plus_inf":
        x[0, 3], x[0, 290] = np.inf, np.nan  # the NaN after the +inf still makes the row NaN
    else:
        x[0] += dtype(1e4)
    for log_space in (False, True):
        lse, out = np.empty(2), np.empty_like(x)
        ext.normalize_rows(x, lse, out, log_space)
        r_lse, r_out = ref.normalize_rows(x.astype(np.float64), log_space)
        assert_close(lse, r_lse, TOL[dtype])
        assert_close(out, r_out, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalize_rows_in_place_and_lse_only(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((70, 1000)) * 5).astype(dtype)  # above the threading threshold
    r_lse, r_out = ref.normalize_rows(x.astype(np.float64), True)
    lse_only = np.empty(70)
    ext.normalize_rows(x, lse_only, None, True)
    in_place = x.copy()
    ext.normalize_rows(in_place, None, in_place, True)
    assert_close(lse_only, r_lse, TOL[dtype])
    assert_close(in_place, r_out, TOL[dtype])


def test_normalize_rows_bad_input():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="out must have the shape of x"):
        ext.normalize_rows(x, None, np.empty((3, 5)), True)
    with pytest.raises(ValueError, match="entries, expected 3"):
        ext.normalize_rows(x, np.empty(2), None, True)
    with pytest.raises(ValueError, match="at least one class"):
        ext.normalize_rows(np.zeros((3, 0)), None, None, True)
    with pytest.raises(TypeError):
        ext.normalize_rows(np.zeros((4, 3)).T, None, None, True)  # not C-contiguous: never converted
    with pytest.raises(TypeError):
        ext.normalize_rows(x, None, np.empty((3, 4), np.float32), True)  # dtype mismatch


# ----------------------------------------------------------------------------- measures
MEASURES = ["entropy", "cross_entropy", "kl_divergence", "js_divergence"]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_measure_kernels_match_the_numpy_path(level, dtype, data):
    """The compiled measures (rows validated in the same read) against measures.py's own NumPy
    path (float64), on rows with zeros, near-one-hot rows and subnormal entries."""
    n = data.draw(st.integers(1, 4))
    c = data.draw(st.sampled_from(ODD_SIZES))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    conc = data.draw(st.sampled_from([0.05, 1.0, 20.0]))
    p = rng.dirichlet(np.full(c, conc), n)
    q = rng.dirichlet(np.full(c, conc), n)
    p[p < data.draw(st.sampled_from([0.0, 1e-3]))] = 0.0
    if c > 1 and data.draw(st.booleans()):
        q[:, 0] = data.draw(st.sampled_from([0.0, 1e-310, 1e-40]))
        q[q[:, 1:].sum(axis=1) == 0, -1] = 1.0  # all of a row's mass was on class 0
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    p, q = p.astype(dtype), q.astype(dtype)
    for name in MEASURES:
        fn = getattr(crossent, name)
        args = (p,) if name == "entropy" else (p, q)
        with _backend.use_backend("reference"):
            expected = fn(*args)
        with at_level(level):
            got = _dispatch.measure(name, *args, None, -1) if name == "entropy" else \
                _dispatch.measure(name, p, q, -1)
        if got is None:  # the kernel handed the case back (a row sum off 1 in float32, say)
            continue
        assert_close(np.asarray(got, dtype=dtype), expected, TOL[dtype])


def test_measure_kernel_hands_bad_rows_back_and_rejects_bad_arguments():
    p = np.array([[0.5, 0.5], [0.7, 0.7]])
    assert _dispatch.measure("entropy", p, None, -1) is None  # row 1 sums to 1.4
    with pytest.raises(ValueError, match=r"p row \[1\] sums to 1.4"):
        crossent.entropy(p)
    p[1] = [1.5, -0.5]
    assert _dispatch.measure("kl_divergence", p, p[::-1].copy(), -1) is None
    value, s = np.empty(2), np.empty(2)
    with pytest.raises(ValueError, match="q is needed"):
        ext.measure_rows(2, p, None, value, s, None)
    with pytest.raises(ValueError, match="kind must be"):
        ext.measure_rows(7, p, p, value, s, s)
    with pytest.raises(ValueError, match="q must have the shape of p"):
        ext.measure_rows(1, p, np.zeros((2, 3)), value, s, s)


@pytest.mark.parametrize("level", LEVELS)
def test_bce_gradient_scaled_before_it_can_overflow(level):
    """-t/p overflows float32 for a subnormal p (8.8e-44) and t = 5.2e-5, but the mean's
    gradient -t/(2p) = -2.95e38 does not: the scale multiplies t before the division (found by
    Hypothesis)."""
    p = np.array([8.8e-44, 0.5], dtype=np.float32)
    t = np.array([5.2e-5, 0.5], dtype=np.float32)
    with at_level(level):
        _, g = crossent.value_and_grad(crossent.binary_cross_entropy)(p, t)
    exact = -np.float64(t[0]) / np.float64(p[0]) / 2
    assert np.isfinite(g[0]) and abs(g[0] / exact - 1) < 4 * np.finfo(np.float32).eps


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softcap_gradient_keeps_its_digits_where_tanh_saturates(level, dtype):
    """dz/dx = sech^2(x/s) where tanh(x/s) rounds near +-1 (x/s from 2 to 12): formed from x,
    not as 1 - tanh^2 of the rounded tanh (which lost every float32 digit by x/s = 9; found by
    Hypothesis). Against 50-digit mpmath, index and dense targets, in place too."""
    import mpmath

    mpmath.mp.dps = 50
    cap, ratios = 5.0, [2.0, 5.1, 9.0, 12.0]
    x = np.zeros((len(ratios), 40), dtype=dtype)
    x[:, 0] = [r * cap for r in ratios]
    x[:, 3] = -2.0
    labels = np.full(len(ratios), 7, dtype=np.int64)

    def exact(row):  # d/dx_0 of -log softmax(s tanh(x / s))_7 = p_0 sech^2(x_0 / s)
        z = [cap * mpmath.tanh(mpmath.mpf(float(v)) / cap) for v in row]
        p0 = mpmath.exp(z[0]) / mpmath.fsum(mpmath.exp(v) for v in z)
        return float(p0 * mpmath.sech(mpmath.mpf(float(row[0])) / cap) ** 2)

    want = np.array([exact(row) for row in x])
    t = np.zeros_like(x)
    t[:, 7] = 1.0
    with at_level(level):
        _, g = _call_index(x, labels, softcap=cap)
        _, g_dense, _ = _call_dense(x, t, softcap=cap)
        buf = x.copy()
        _call_index(buf, labels, softcap=cap, out=buf)
    for got in (g[:, 0], g_dense[:, 0], buf[:, 0]):
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=0)
