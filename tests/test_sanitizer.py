"""The kernels built with AddressSanitizer + UndefinedBehaviorSanitizer, exercised in a subprocess.

The extension is built from this checkout with CMake (option CROSSENT_SANITIZE) into a
temporary directory (started in the background when the session begins: _sanitized_build),
then a script imports that build directly and runs every kernel over
edge sizes (SIMD tails, chunk boundaries, one class), options, masked and NaN rows, the
in-place gradient, float32 and float64 targets, the math layer, and bad inputs, at every SIMD
level the CPU runs. Any sanitizer report fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import _sanitized_build

pytestmark = pytest.mark.slow

EXERCISE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import _ext as ext

    rng = np.random.default_rng(0)
    SIZES = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257, 513, 70000]


    def expect(exc, fn, *args):
        try:
            fn(*args)
        except exc:
            return
        raise SystemExit(f"{fn.__name__}: expected {exc.__name__}")


    for level in ext.supported_simd_levels().split(","):
        ext.set_simd_level(level)
        for dtype in (np.float32, np.float64):
            for c in SIZES:
                n = 3
                x = (rng.standard_normal((n, c)) * 5).astype(dtype)
                x[1, : c // 2] = -np.inf
                if c > 2:
                    x[2, 1] = np.nan
                y = rng.integers(0, c, n)
                w = rng.random(c)
                loss, g = np.empty(n), np.empty_like(x)
                for opts in [(None, None, 0.0, 0.0, 0.0), (w, int(y[0]), 0.1, 1e-4, 0.0),
                             (w, None, 0.0, 0.0, 3.0), (None, None, 1.0, 0.0, 0.0)]:
                    ext.softmax_ce_index(x, y, *opts, loss, g, 0.5)
                    ext.softmax_ce_index(x, y, *opts, loss, None, 1.0)
                    buf = x.copy()
                    ext.softmax_ce_index(buf, y, *opts, loss, buf, 1.0)
                x[0, -1] = np.inf
                ext.softmax_ce_index(x, y, None, None, 0.0, 0.0, 0.0, loss, g, 1.0)
                t = rng.random((n, c))
                ext.softmax_ce_dense(x, t, w, 0.1, 1e-4, 2.0, loss, g, 1.0)
                ext.softmax_ce_dense(x, t, w, 0.1, 1e-4, 0.0, loss, g, 1.0)
                ext.softmax_ce_dense(x, t.astype(np.float32), None, 0.0, 0.0, 0.0, loss, None, 1.0)
                buf = x.copy()
                ext.softmax_ce_dense(buf, t * 2 - 0.5, w, 0.1, 0.0, 0.0, loss, buf, 1.0)
                ext.nll(np.minimum(x, 0), y, w, None, loss, g, 1.0)
                ext.softmax_focal(x, y, w, 2.0, int(y[1]), loss, g, 1.0)
                ext.softmax_focal(x, y, None, 0.5, None, loss, None, 1.0)
                flat = x.reshape(-1)
                tf = rng.random(flat.size)
                lf, gf = np.empty(flat.size), np.empty_like(flat)
                tf32 = tf.astype(np.float32)
                ext.sigmoid_bce(flat, tf, tf, tf, 0.1, lf, gf, 1.0)
                for tt in (tf, tf32, np.round(tf32)):  # soft, and hard targets (their own paths)
                    ext.sigmoid_bce(flat, tt, None, None, 0.1, lf, gf, 1.0)
                    ext.sigmoid_bce(flat, tt, None, None, 0.0, None, None, 1.0)
                    ext.bce(np.abs(np.tanh(flat)), tt, None, lf, gf, 1.0)
                    ext.bce(np.abs(np.tanh(flat)), tt, tf, None, gf, 1.0)
                    ext.sigmoid_focal(flat, tt, 0.25, 2.0, lf, gf, 1.0)
                    ext.sigmoid_focal(flat, tt, None, 0.5, None, gf, 1.0)
                pr = np.abs(x) / np.maximum(np.abs(x).sum(axis=1, keepdims=True), 1)
                pr = np.where(np.isfinite(pr), pr, 0).astype(dtype)
                vals, s1, s2 = np.empty(n), np.empty(n), np.empty(n)
                ext.measure_rows(0, pr, None, vals, s1, None)
                for kind in (1, 2, 3):
                    ext.measure_rows(kind, pr, pr[::-1].copy(), vals, s1, s2)
                out = np.empty_like(flat)
                for name in ("exp", "exp_nonpos", "log", "log_pos", "log1p", "log_sigmoid", "softplus", "tanh"):
                    ext._math(name, flat, out)
                for name in ("pow_unit", "pow1m"):
                    ext._math(name, np.abs(np.tanh(flat)), out, 2.5)
                lse, out = np.empty(x.shape[0]), np.empty_like(x)
                ext.normalize_rows(x, lse, out, True)
                ext.normalize_rows(x, lse, out, False)
                ext.normalize_rows(x, None, x.copy(), True)
                t2 = (rng.standard_normal((n, c)) * 5).astype(dtype)
                t2[0, : c // 3] = -np.inf
                rows = np.array([1, 1, 0], np.uint8)
                for kind, beta, temp, hw in ((0, 0.5, 1.0, 0.0), (1, 0.5, 0.5, 0.3), (2, 0.3, 2.0, 0.5)):
                    ext.softmax_divergence(x, t2, kind, beta, temp, hw, rows, y, loss, g, 0.5)
                    ext.softmax_divergence(x, t2, kind, beta, temp, 0.0, None, None, loss, None, 1.0)
                    buf = x.copy()
                    ext.softmax_divergence(buf, t2, kind, beta, temp, hw, None, y, loss, buf, 1.0)

            # one long row: its vocabulary split over the threads
            x1 = rng.standard_normal((1, 70001)).astype(dtype)
            x1[0, :30000] = -np.inf
            l1, g1 = np.empty(1), np.empty_like(x1)
            for label, ignore in ((5, None), (69999, None), (5, 5)):
                ext.softmax_ce_index(x1, np.array([label]), None, ignore, 0.0, 1e-4, 0.0, l1, g1, 1.0)
                ext.softmax_ce_index(x1, np.array([label]), None, ignore, 0.0, 0.0, 0.0, l1, None, 1.0)
            t1 = rng.random((1, 70001))
            w1 = rng.random(70001)
            ext.softmax_ce_index(x1, np.array([5]), w1, None, 0.1, 1e-4, 3.0, l1, g1, 1.0)
            ext.softmax_ce_dense(x1, t1, w1, 0.1, 1e-4, 0.0, l1, g1, 1.0)
            ext.softmax_ce_dense(x1, t1.astype(np.float32), None, 0.0, 0.0, 3.0, l1, None, 1.0)
            ext.softmax_focal(x1, np.array([69999]), w1, 2.0, None, l1, g1, 1.0)
            x1[0, 50000] = np.inf
            ext.softmax_ce_index(x1, np.array([5]), None, None, 0.0, 0.0, 0.0, l1, g1, 1.0)
            ext.softmax_ce_dense(x1, t1, None, 0.0, 0.0, 0.0, l1, g1, 1.0)
            ext.softmax_focal(x1, np.array([5]), None, 2.0, None, l1, g1, 1.0)

    x = np.zeros((3, 4), np.float32)
    y = np.array([0, 1, 9])
    loss, g = np.empty(3), np.empty_like(x)
    expect(IndexError, ext.softmax_ce_index, x, y, None, None, 0.0, 0.0, 0.0, loss, g, 1.0)
    expect(IndexError, ext.nll, x, y, None, None, loss, g, 1.0)
    expect(ValueError, ext.softmax_ce_index, x, y[:2], None, None, 0.0, 0.0, 0.0, loss, g, 1.0)
    expect(ValueError, ext.softmax_ce_index, x, y % 4, np.ones(2), None, 0.0, 0.0, 0.0, loss,
           g, 1.0)
    expect(TypeError, ext.softmax_ce_index, x[:, ::2], y % 2, None, None, 0.0, 0.0, 0.0, loss,
           None, 1.0)
    expect(ValueError, ext.bce, np.zeros(5), np.zeros(4), None, np.empty(5), None, 1.0)
    expect(ValueError, ext.set_simd_level, "neon")
    expect(ValueError, ext._math, "exp", np.zeros(5), np.zeros(4))
    expect(IndexError, ext.softmax_divergence, x, x, 0, 0.5, 1.0, 0.5, None, y, loss, g, 1.0)
    expect(ValueError, ext.softmax_divergence, x, x[:2], 0, 0.5, 1.0, 0.0, None, None, loss, g, 1.0)
    expect(ValueError, ext.softmax_divergence, x, x, 2, 1.0, 1.0, 0.0, None, None, loss, g, 1.0)
    expect(ValueError, ext.softmax_divergence, x, g, 0, 0.5, 1.0, 0.0, None, None, loss, g, 1.0)
    ext.set_num_threads(1)
    ext.softmax_ce_index(x, y % 4, None, None, 0.0, 0.0, 0.0, loss, g, 1.0)

    # scoring at every level: probability columns, label codes (through a map or not), every
    # option, slices on two threads, invalid rows; then bad arguments
    for level in ext.supported_simd_levels().split(","):
        ext.set_simd_level(level)
        for dtype in (np.float32, np.float64):
            for c in (2, 3, 17):
                for m in SIZES:
                    cols = list(rng.dirichlet(np.ones(c), size=m).T.astype(dtype).copy())
                    yl = rng.integers(0, c, m)
                    codes32 = rng.integers(0, 5, m).astype(np.int32)
                    code_class = rng.integers(0, c, 5)
                    wl, lm = rng.random(m), np.empty(m)
                    for bins in (1, 15):
                        for step in (1, 7, 300, m):
                            ns = -(-m // step)
                            states, inv = np.empty((ns, 6 + 3 * c + 4 * bins)), np.empty(ns, np.int64)
                            for weights, normalize, clip in ((None, False, -np.inf), (wl, True, -3.0)):
                                ext.score_columns(cols, yl, None, weights, 1e-3, normalize, clip, step,
                                                  lm, states, inv)
                                ext.score_columns(cols, codes32, code_class, weights, 1e-3, normalize,
                                                  clip, step, lm, states, inv)
                    bad = [col.copy() for col in cols]
                    bad[c - 1][m - 1] = np.nan
                    states, inv = np.empty((1, 6 + 3 * c + 4)), np.empty(1, np.int64)
                    assert ext.score_columns(bad, yl, None, None, 1e-3, False, -np.inf, m, lm, states,
                                             inv) == m - 1
    cols = [np.full(3, 0.5), np.full(3, 0.5)]
    ys, ls, st, inv = np.array([0, 1, 0]), np.empty(3), np.empty((1, 6 + 6 + 4)), np.empty(1, np.int64)
    args = (None, 1e-3, False, -np.inf, 3, ls, st, inv)
    expect(IndexError, ext.score_columns, cols, np.array([0, 2, 0]), None, *args)
    expect(IndexError, ext.score_columns, cols, np.array([0, 5, 0], np.int32), np.array([0, 1]), *args)
    expect(IndexError, ext.score_columns, cols, ys, np.array([0, 2]), *args)
    expect(ValueError, ext.score_columns, cols[:1], ys, None, *args)
    expect(ValueError, ext.score_columns, [cols[0], np.full(2, 0.5)], ys, None, *args)
    expect(ValueError, ext.score_columns, cols, ys, None, None, 1e-3, False, -np.inf, 3, ls,
           np.empty((1, 13)), inv)
    expect(ValueError, ext.score_columns, cols, ys, None, None, 1e-3, False, -np.inf, 1, ls, st, inv)
    expect(ValueError, ext.score_columns, cols, ys, None, None, 1e-3, False, -np.inf, 0, ls, st, inv)
    expect(ValueError, ext.score_columns, cols, ys, None, -np.ones(3), 1e-3, False, -np.inf, 3, ls,
           st, inv)
    expect(ValueError, ext.score_columns, cols, ys, None, None, 1e-3, False, np.nan, 3, ls, st, inv)
    expect(ValueError, ext.score_columns, cols, ys, None, None, 1e-3, False, -np.inf, 3,
           np.empty(2), st, inv)
    print("sanitized kernels ok")
    """
)


def _unavailable(reason):
    """Skip where a tool is missing; in CI (which installs them all) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"the sanitizer build cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sanitized_build():
    """The sanitized extension, built in the background since collection (_sanitized_build)."""
    try:
        return _sanitized_build.get()
    except _sanitized_build.Unavailable as exc:
        _unavailable(str(exc))


def test_kernels_run_clean_under_asan_and_ubsan(sanitized_build, tmp_path):
    build, preload = sanitized_build
    script = tmp_path / "exercise.py"
    script.write_text(EXERCISE)
    env = dict(os.environ, LD_PRELOAD=preload,
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               OMP_NUM_THREADS="2")
    run = subprocess.run([sys.executable, str(script), str(build)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert "AddressSanitizer" not in run.stderr, run.stderr[-4000:]
    assert "runtime error" not in run.stderr, run.stderr[-4000:]
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "sanitized kernels ok" in run.stdout
