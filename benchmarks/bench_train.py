"""SoftmaxRegression(solver="lbfgs") against scikit-learn's LogisticRegression: time to the optimum.

    python benchmarks/bench_train.py                # 200,000 x 100 features, 10 classes
    python benchmarks/bench_train.py --quick        # 20,000 rows, seconds
    python benchmarks/bench_train.py --threads 1    # one BLAS/OpenMP thread for both
    python benchmarks/bench_train.py --threads 2 --both --no-float32   # raw, then standardised

Both fit the same objective on the same data in this one process,

    J(W, b) = mean cross-entropy + alpha/2 |W|^2,   alpha = 1 / (C n)  (scikit-learn's C),

from zero with L-BFGS-B stopped by the same projected-gradient tolerance (``--tol``, scikit-learn's
``tol``). The fits are interleaved (scikit-learn, crossent, scikit-learn, ...) and each time is the
median of ``--repeat`` fits: wall time, and the process's CPU time (all threads), which other
jobs on a shared CPU disturb much less (with ``--threads 1`` it is the work done). Each fit's J is then recomputed here in float64 by one NumPy formula
(logsumexp), and the table shows the objective and coefficient differences to scikit-learn's
float64 fit. float32 rows: the float32 copy of the same data for both libraries (crossent then
runs its matrix products in float32 BLAS, the loss and sums in float64).

The data: features of unequal scales (0.3 to 3, as unstandardised columns are), classes drawn from
a softmax of a random linear model, so the optimum is finite and unique; ``--standardise`` centres
and scales the columns first (then crossent's L-BFGS coordinates are scikit-learn's, and the
comparison is of the cost of one evaluation of J and its gradient alone); ``--both`` prints a
table for the raw features and one for the standardised.

Threads: ``--threads T`` limits BLAS and OpenMP to T for both libraries. scikit-learn then runs
its matrix products on T BLAS threads and its loss on T OpenMP threads; crossent runs T threads
of its own (``crossent.get_num_threads()``, which the limit sets), each with one BLAS thread.

The CPU may be shared (on the development machine it is, with other engineers' jobs): the
load average is printed, and only ratios of interleaved runs mean anything.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.special import logsumexp


def make_data(n_rows, n_features, n_classes, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.logspace(np.log10(0.3), np.log10(3.0), n_features)
    X = rng.standard_normal((n_rows, n_features)) * scales
    W = rng.standard_normal((n_classes, n_features)) / (scales * np.sqrt(n_features)) * 2.0
    logits = X @ W.T
    probs = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    y = (probs.cumsum(axis=1) < rng.random((n_rows, 1))).sum(axis=1)
    return X, np.minimum(y, n_classes - 1)


def objective(coef, intercept, X, y, alpha):
    """J in float64, by a formula independent of both libraries: mean(logsumexp(z) - z_y) + L2."""
    z = X @ np.asarray(coef, np.float64).T + np.asarray(intercept, np.float64)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y])
                 + 0.5 * alpha * np.sum(np.square(coef, dtype=np.float64)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--C", type=float, default=1.0, help="scikit-learn's C (alpha = 1/(C n))")
    parser.add_argument("--tol", type=float, default=1e-6, help="projected-gradient tolerance, both")
    parser.add_argument("--repeat", type=int, default=3, help="fits per contender (median)")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS and OpenMP threads (threadpoolctl), both libraries")
    parser.add_argument("--standardise", action="store_true", help="standardise the columns first")
    parser.add_argument("--both", action="store_true",
                        help="raw features, then standardised (one table each)")
    parser.add_argument("--no-float32", action="store_true", help="skip the float32 rows")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one fit each")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 20_000, 1

    import crossent.models  # noqa: F401  (loads the OpenMP runtime the limit must reach)
    import sklearn.linear_model  # noqa: F401

    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)

    X, y = make_data(args.rows, args.features, args.classes)
    for standardise in ((False, True) if args.both else (args.standardise,)):
        if standardise:
            X = (X - X.mean(axis=0)) / X.std(axis=0)
        compare(args, X, y, standardise)


def compare(args, X, y, standardise):
    """Fit both libraries on X, interleaved, and print the table."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    import crossent
    from crossent.models import SoftmaxRegression

    n = len(y)
    alpha = 1.0 / (args.C * n)
    data = {"float64": X} if args.no_float32 else {"float64": X, "float32": X.astype(np.float32)}
    contenders = {}
    for dtype in data:
        contenders[("scikit-learn", dtype)] = lambda Xd: SkLogisticRegression(
            C=args.C, tol=args.tol, max_iter=10_000).fit(Xd, y)
        contenders[("crossent", dtype)] = lambda Xd: SoftmaxRegression(
            solver="lbfgs", alpha=alpha, tol=args.tol, max_iter=10_000).fit(Xd, y)
    times = {key: [] for key in contenders}
    cpu = {key: [] for key in contenders}
    fitted = {}
    for _ in range(max(args.repeat, 1)):
        for key, fit in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fitted[key] = fit(data[key[1]])
            times[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)

    reference = fitted[("scikit-learn", "float64")]
    j_ref = objective(reference.coef_, reference.intercept_, X, y, alpha)
    print(f"{n} rows x {args.features} {'standardised ' if standardise else ''}features, "
          f"{args.classes} classes; C={args.C} "
          f"(alpha={alpha:.3g}), tol={args.tol}; median of {args.repeat} interleaved fits; "
          f"threads: {args.threads or 'default'} (crossent's: {crossent.get_num_threads()}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'fit':<22}{'wall s':>8}{'min':>7}{'cpu s':>8}{'iters':>6}{'sk/ours wall':>13}"
          f"{'sk/ours cpu':>12}{'J - J_sk64':>11}{'max|dcoef|':>11}{'max|db|':>9}")
    for (library, dtype), spent in times.items():
        model = fitted[(library, dtype)]
        iters = int(np.max(model.n_iter_))
        j = objective(model.coef_, model.intercept_, X, y, alpha)
        dcoef = np.max(np.abs(model.coef_ - reference.coef_))
        dint = np.max(np.abs(model.intercept_ - reference.intercept_))
        median, median_cpu = float(np.median(spent)), float(np.median(cpu[(library, dtype)]))
        ratio = ratio_cpu = ""
        if library != "scikit-learn":
            ratio = f"{np.median(times[('scikit-learn', dtype)]) / median:.2f}x"
            ratio_cpu = f"{np.median(cpu[('scikit-learn', dtype)]) / median_cpu:.2f}x"
        print(f"{library + ' ' + dtype:<22}{median:>8.2f}{min(spent):>7.2f}{median_cpu:>8.2f}"
              f"{iters:>6}{ratio:>13}{ratio_cpu:>12}{j - j_ref:>11.1e}{dcoef:>11.1e}{dint:>9.1e}")
    print("sklearn/ours > 1: crossent is faster. J is recomputed in float64 on the float64 data; "
          "differences are to scikit-learn's float64 fit.")


if __name__ == "__main__":
    main()
