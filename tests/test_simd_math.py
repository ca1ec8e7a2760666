"""The math layer of the kernels (csrc/simd_math.hpp) in isolation, at every SIMD level this CPU
runs, against mpmath at 50 digits: dense grids over each function's domain and its edges (±0,
subnormals, the overflow and underflow thresholds, ±inf, NaN). The bounds asserted are the ones
stated in the header.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

mp = pytest.importorskip("mpmath")
ext = pytest.importorskip("crossent._ext")

LEVELS = ext.supported_simd_levels().split(",")
DTYPES = [np.float32, np.float64]

# Maximum error in ulps of the exact result (rounded to the format), as csrc/simd_math.hpp states.
MAX_ULPS = {"exp": 2, "exp_nonpos": 2, "log": 1, "log_pos": 1, "log1p": 2, "log_sigmoid": 2,
            "softplus": 2, "tanh": 2}
# Functions whose results below the smallest normal number may flush to 0 (absolute error
# below the smallest normal): the one-scaling exp and the sigmoid family built on it.
FLUSHES = {"exp_nonpos", "log_sigmoid", "softplus"}

MP_FUNCTIONS = {
    "exp": mp.exp,
    "exp_nonpos": mp.exp,
    "log": mp.log,
    "log_pos": mp.log,  # log without its special values: positive finite x only (the log grid)
    "log1p": mp.log1p,
    "log_sigmoid": lambda x: -mp.log1p(mp.exp(-x)),
    "softplus": lambda x: mp.log1p(mp.exp(x)),
    "tanh": mp.tanh,
}


@pytest.fixture(params=LEVELS)
def level(request):
    previous = ext.simd_level()
    ext.set_simd_level(request.param)
    yield request.param
    ext.set_simd_level(previous)


def _grid(name, dtype):
    """Dense grids over the domain of ``name`` in ``dtype``, with its edges."""
    info = np.finfo(dtype)
    f32 = dtype == np.float32
    rng = np.random.default_rng(0)
    tiny = [info.smallest_subnormal, 2 * info.smallest_subnormal, info.smallest_normal / 3,
            info.smallest_normal, 1e-30, 1e-20, 1e-10, 1e-5]
    if name in ("exp", "exp_nonpos"):
        lo, hi = (-104.0, 89.0) if f32 else (-746.0, 710.0)
        if name == "exp_nonpos":
            hi = 0.0
        pts = [np.linspace(lo, hi, 6001), rng.uniform(-1, 1, 2000) * 0.35,
               np.array([-87.33, -87.34, -86.0, -103.9, -103.98, 88.72, 88.7228, 88.7229,
                         -708.39, -708.4, -745.1, 709.78, 709.79])]
        pts.append(-np.array(tiny))
        if name == "exp":
            pts.append(np.array(tiny))
    elif name in ("log", "log_pos"):
        pts = [np.geomspace(info.smallest_subnormal, float(info.max) / 4, 6001), 1 + rng.uniform(-0.3, 0.3, 2000),
               1 + np.arange(-50, 50) * info.eps, np.array(tiny), np.array([np.sqrt(0.5), np.sqrt(2.0)])]
    elif name == "log1p":
        g = np.geomspace(info.smallest_subnormal, 1, 3001)
        pts = [g, -g[g < 1], -1 + g[g < 1] * 0.999, np.geomspace(1, float(info.max) / 4, 2001),
               rng.uniform(-0.5, 1, 2000)]
    elif name in ("log_sigmoid", "softplus"):
        r = 120.0 if f32 else 800.0
        pts = [np.linspace(-r, r, 6001), rng.uniform(-2, 2, 2000), np.array(tiny), -np.array(tiny)]
    else:  # tanh
        g = np.geomspace(info.smallest_subnormal, 30, 4001)
        pts = [g, -g, np.linspace(0.5, 0.6, 501), rng.uniform(-3, 3, 2000)]
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p in pts]).astype(dtype)
    x = x[np.isfinite(x)]
    return np.unique(x[x <= 0] if name == "exp_nonpos" else x)


@functools.lru_cache(maxsize=None)
def _case(name, dtype):
    """(x, exact values as mpf) on the grid of ``name``."""
    x = _grid(name, dtype)
    with mp.workdps(50):
        exact = [MP_FUNCTIONS[name](mp.mpf(float(v))) for v in x]
    return x, exact


def _evaluate(name, x):
    out = np.empty_like(x)
    ext._math(name, x, out)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(MAX_ULPS))
def test_error_bound_over_the_domain(level, name, dtype):
    x, exact = _case(name, dtype)
    got = _evaluate(name, x)
    info = np.finfo(dtype)
    worst = 0.0
    with mp.workdps(50):
        for xi, yi, ei in zip(x, got, exact):
            with np.errstate(over="ignore"):
                rounded = dtype(float(ei))  # the exact value rounded to the format (may be inf)
            if np.isinf(rounded):
                assert yi == rounded, (name, xi, yi, ei)
                continue
            err = abs(mp.mpf(float(yi)) - ei)
            if name in FLUSHES and abs(ei) < info.smallest_normal:
                assert err < info.smallest_normal, (name, xi, yi, ei)
                continue
            ulp = np.spacing(abs(rounded)) if rounded != 0 else info.smallest_subnormal
            ulps = float(err / mp.mpf(float(ulp)))
            assert ulps <= MAX_ULPS[name], (level, name, dtype.__name__, float(xi), float(yi),
                                            mp.nstr(ei, 20), ulps)
            worst = max(worst, ulps)
    assert worst > 0 or name == "exp_nonpos"  # the grid really exercised rounding


# ----------------------------------------------------------------------------- powers of [0, 1]
# pow_unit(u, g) = u^g = exp(g log u) and pow1m(p, g) = (1-p)^g = exp(g log1p(-p)), the focal
# losses' modulating factor: (3 + 2 |g log u|) ulp, as the header states (the log's relative
# error is carried through g log u into the exp); results below 1.01 times the smallest normal
# may flush to 0 (exp_nonpos's threshold lies just above log of the smallest normal).
POWERS = {"pow_unit": lambda u: u, "pow1m": lambda p: 1 - p}
GAMMAS = [0.0, 0.5, 2.0, 7.3]


@functools.lru_cache(maxsize=None)
def _power_case(name, dtype, gamma):
    info = np.finfo(dtype)
    x = np.unique(np.concatenate([np.geomspace(info.smallest_subnormal, 1, 800), np.linspace(0, 1, 401),
                                  1 - np.geomspace(info.eps / 2, 0.5, 300)]).astype(dtype))
    with mp.workdps(50):
        bases = [POWERS[name](mp.mpf(float(v))) for v in x]
        exact = [mp.mpf(1) if gamma == 0 else b ** mp.mpf(gamma) for b in bases]
        logs = [abs(gamma * mp.log(b)) if b > 0 and gamma > 0 else mp.mpf(0) for b in bases]
    return x, exact, logs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", sorted(POWERS))
def test_powers_of_the_unit_interval_error_bound(level, name, gamma, dtype):
    x, exact, logs = _power_case(name, dtype, gamma)
    got = np.empty_like(x)
    ext._math(name, x, got, gamma)
    info = np.finfo(dtype)
    with mp.workdps(50):
        for xi, yi, ei, li in zip(x, got, exact, logs):
            err = abs(mp.mpf(float(yi)) - ei)
            if ei < 1.01 * info.smallest_normal:
                assert err < 1.01 * info.smallest_normal, (name, gamma, float(xi), float(yi), ei)
                continue
            ulps = float(err / mp.mpf(float(np.spacing(dtype(float(ei))))))
            assert ulps <= 3 + 2 * float(li), (level, name, gamma, float(xi), float(yi), ulps)
    if gamma == 0:  # u^0 = 1, 0^0 included
        np.testing.assert_array_equal(got, 1.0)


def test_powers_edges():
    for dtype in DTYPES:
        got = np.empty(3, dtype)
        ext._math("pow_unit", np.array([0.0, 1.0, np.nan], dtype), got, 2.0)
        np.testing.assert_array_equal(got, [0.0, 1.0, np.nan])
        ext._math("pow1m", np.array([1.0, 0.0, np.nan], dtype), got, 0.5)
        np.testing.assert_array_equal(got, [0.0, 1.0, np.nan])


SPECIALS = {
    # name: [(x, expected)]
    "exp": [(np.inf, np.inf), (-np.inf, 0.0), (0.0, 1.0), (-0.0, 1.0), (1000.0, np.inf),
            (-1000.0, 0.0)],
    "exp_nonpos": [(-np.inf, 0.0), (0.0, 1.0), (-0.0, 1.0), (-1000.0, 0.0)],
    "log": [(0.0, -np.inf), (-0.0, -np.inf), (-1.0, np.nan), (np.inf, np.inf), (-np.inf, np.nan),
            (1.0, 0.0)],
    "log1p": [(-1.0, -np.inf), (-2.0, np.nan), (np.inf, np.inf), (0.0, 0.0), (-np.inf, np.nan)],
    "log_sigmoid": [(-np.inf, -np.inf), (np.inf, 0.0), (0.0, -np.log(2.0))],
    "softplus": [(np.inf, np.inf), (-np.inf, 0.0), (0.0, np.log(2.0))],
    "tanh": [(np.inf, 1.0), (-np.inf, -1.0), (0.0, 0.0), (-0.0, -0.0)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(SPECIALS))
def test_special_values_and_nan(level, name, dtype):
    xs = np.array([x for x, _ in SPECIALS[name]] + [np.nan], dtype=dtype)
    expected = np.array([e for _, e in SPECIALS[name]] + [np.nan], dtype=dtype)
    with np.errstate(all="ignore"):
        got = _evaluate(name, xs)
    np.testing.assert_allclose(got, expected, rtol=np.finfo(dtype).eps, atol=0)
    if name == "tanh":  # odd: the sign of zero is kept
        assert np.signbit(got[-2]) and not np.signbit(got[-3])


def test_every_level_gives_the_same_values_within_the_bounds():
    x = np.linspace(-30, 30, 4097, dtype=np.float32)
    previous = ext.simd_level()
    try:
        results = []
        for lvl in LEVELS:
            ext.set_simd_level(lvl)
            results.append(_evaluate("log_sigmoid", x))
    finally:
        ext.set_simd_level(previous)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=4 * np.finfo(np.float32).eps, atol=1e-37)


def _run_with_simd(value):
    env = dict(os.environ, CROSSENT_SIMD=value)
    code = "import crossent._ext as e; print(e.simd_level())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("lvl", LEVELS)
def test_environment_variable_forces_the_level(lvl):
    proc = _run_with_simd(lvl)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == lvl


def test_environment_variable_rejects_an_unknown_level():
    proc = _run_with_simd("sse9")
    assert proc.returncode != 0
    assert "CROSSENT_SIMD=sse9" in proc.stderr and "avx2" in proc.stderr


def test_set_simd_level_rejects_bad_names():
    with pytest.raises(ValueError, match="unknown SIMD level 'neon'"):
        ext.set_simd_level("neon")
    with pytest.raises(ValueError, match="unknown math function 'sin'"):
        ext._math("sin", np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="out has 3 elements"):
        ext._math("exp", np.zeros(2), np.zeros(3))
