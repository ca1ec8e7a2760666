"""Side-by-side benchmarks of every loss and measure: crossent against PyTorch (eager), SciPy
(the measures) and the memory floors measured on the running machine.

Every contender runs in this one process on the same arrays. For each case and pass (forward;
forward + backward) the floors are what any method must at least do with the bytes it touches:

* read floor: one streaming read of the inputs (``torch.sum``, on the benchmark's threads);
* read + write floor: one read of the inputs and one write of a gradient into an existing
  buffer (``torch.add(x, t, out=g)`` for two inputs, ``np.copyto`` / ``Tensor.copy_`` for one,
  ``Tensor.zero_`` for nll, whose gradient is written but whose input is gathered, not read).

Time: the median of ``repeat`` calls after one warm-up call (short calls are repeated more).
Memory: the peak growth of the resident set during one more call (Linux:
``/proc/self/clear_refs`` resets the high-water mark, ``VmHWM`` reads it), the returned
gradient included.

:func:`run` returns the rows, :func:`table` formats them; ``crossent bench`` and
``benchmarks/bench_kernels.py`` print them.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

from . import _backend
from .losses import (binary_cross_entropy, nll_loss, sigmoid_binary_cross_entropy,
                     sigmoid_focal_loss, softmax_cross_entropy, softmax_focal_loss,
                     value_and_grad)
from .measures import entropy, js_divergence, kl_divergence

__all__ = ["Row", "Sizes", "FULL", "QUICK", "run", "table", "NOTES", "peak_extra_bytes"]

FORWARD, BACKWARD = "forward", "forward+backward"


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: softmax rows (N x V), binary elements, measure rows (N x C)."""

    softmax: tuple
    binary: int
    measures: tuple
    budget: float  # seconds of repeated calls per method, at most


FULL = Sizes(softmax=(2048, 32768), binary=1 << 24, measures=(4096, 4096), budget=0.3)
QUICK = Sizes(softmax=(128, 4096), binary=1 << 18, measures=(256, 1024), budget=0.01)


@dataclass
class Row:
    """One method of one case and pass."""

    case: str
    kind: str  # FORWARD or BACKWARD
    method: str
    role: str  # "crossent", "torch", "scipy", "floor"
    seconds: float
    extra_bytes: Optional[int]


def _median_seconds(fn: Callable[[], object], repeat: int, budget: float) -> float:
    """Median of at least ``repeat`` timed calls after a warm-up call; short calls are repeated
    more (up to ``budget`` seconds or 100 calls) for a steadier median."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(repeat, min(100, int(budget / max(first, 1e-6))))):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_extra_bytes(fn: Callable[[], object]) -> Optional[int]:
    """Resident-set high-water mark during fn() minus the resident set before it (Linux; None
    elsewhere). Run it in a fresh process after a warm-up call for a figure free of earlier
    allocations (benchmarks/bench_torch.py does)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
    except OSError:
        return None
    before = _status_kib("VmRSS")
    result = fn()
    peak = _status_kib("VmHWM")
    del result
    if before is None or peak is None:
        return None
    return max(peak - before, 0) * 1024


# ----------------------------------------------------------------------------- the cases
# Each builder yields (case, kind, method, role, fn) for one problem, on arrays it owns.

def _softmax_cases(n, v, rng, torch):
    x = rng.standard_normal((n, v), dtype=np.float32) * np.float32(2.0)
    y = rng.integers(0, v, n)
    t = rng.random((n, v), dtype=np.float32)
    t /= t.sum(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    g = np.empty_like(x)

    cases = {
        "softmax CE, class indices": (
            lambda: softmax_cross_entropy(x, y),
            lambda: value_and_grad(softmax_cross_entropy)(x, y, out=g)),
        "softmax CE, label smoothing 0.1": (
            lambda: softmax_cross_entropy(x, y, label_smoothing=0.1),
            lambda: value_and_grad(softmax_cross_entropy)(x, y, label_smoothing=0.1, out=g)),
        "softmax CE, dense targets": (
            lambda: softmax_cross_entropy(x, t),
            lambda: value_and_grad(softmax_cross_entropy)(x, t, out=g)),
        "nll": (lambda: nll_loss(logp, y), lambda: value_and_grad(nll_loss)(logp, y, out=g)),
        "softmax focal, gamma 2": (
            lambda: softmax_focal_loss(x, y),
            lambda: value_and_grad(softmax_focal_loss)(x, y, out=g)),
    }
    for case, (fwd, bwd) in cases.items():
        yield case, FORWARD, "crossent", "crossent", fwd
        yield case, BACKWARD, "crossent value_and_grad(out=)", "crossent", bwd
    if torch is None:
        for case in cases:
            reads = (x, t) if "dense" in case else (x,)
            yield case, FORWARD, "floor: read (ndarray.sum)", "floor", lambda r=reads: [a.sum() for a in r]
            yield case, BACKWARD, "floor: read + write (np.copyto)", "floor", lambda: np.copyto(g, x)
        return
    F = torch.nn.functional
    xt, yt, tt, lt, gt = (torch.from_numpy(a) for a in (x, y, t, logp, g))
    xg = xt.clone().requires_grad_(True)
    lg = lt.clone().requires_grad_(True)

    def torch_pair(loss_fn, leaf):
        def fwd():
            with torch.no_grad():
                return float(loss_fn(leaf.detach()))

        def bwd():
            leaf.grad = None
            loss = loss_fn(leaf)
            loss.backward()
            return float(loss.detach()), leaf.grad
        return fwd, bwd

    def torch_focal(z, gamma=2.0):  # log_softmax, gather, (1 - p_y)^gamma (-log p_y)
        lp = F.log_softmax(z, dim=1).gather(1, yt[:, None])[:, 0]
        return (-(1 - lp.exp()) ** gamma * lp).mean()

    torch_cases = {
        "softmax CE, class indices": (lambda z: F.cross_entropy(z, yt), xg),
        "softmax CE, label smoothing 0.1": (lambda z: F.cross_entropy(z, yt, label_smoothing=0.1), xg),
        "softmax CE, dense targets": (lambda z: F.cross_entropy(z, tt), xg),
        "nll": (lambda z: F.nll_loss(z, yt), lg),
        "softmax focal, gamma 2": (torch_focal, xg),
    }
    threads = torch.get_num_threads()
    for case, (loss_fn, leaf) in torch_cases.items():
        fwd, bwd = torch_pair(loss_fn, leaf)
        yield case, FORWARD, "torch eager", "torch", fwd
        yield case, BACKWARD, "torch eager + backward", "torch", bwd
        if case == "nll":  # a gather of N entries; the gradient is written in full
            yield case, BACKWARD, f"floor: write (Tensor.zero_, {threads} thr)", "floor", gt.zero_
        elif "dense" in case:
            yield case, FORWARD, f"floor: read x, t (torch.sum, {threads} thr)", "floor", \
                lambda: (xt.sum(), tt.sum())
            yield case, BACKWARD, f"floor: read x, t + write (torch.add out=, {threads} thr)", \
                "floor", lambda: torch.add(xt, tt, out=gt)
        else:
            yield case, FORWARD, f"floor: read (torch.sum, {threads} thr)", "floor", xt.sum
            yield case, BACKWARD, f"floor: read + write (Tensor.copy_, {threads} thr)", "floor", \
                lambda: gt.copy_(xt)


def _binary_cases(n, rng, torch):
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(2.0)
    t = (rng.random(n) < 0.3).astype(np.float32)
    p = rng.random(n, dtype=np.float32) * np.float32(0.98) + np.float32(0.01)
    g = np.empty_like(x)
    cases = {
        "sigmoid BCE with logits": (
            lambda: sigmoid_binary_cross_entropy(x, t),
            lambda: value_and_grad(sigmoid_binary_cross_entropy)(x, t, out=g)),
        "sigmoid focal, gamma 2": (
            lambda: sigmoid_focal_loss(x, t),
            lambda: value_and_grad(sigmoid_focal_loss)(x, t, out=g)),
        "BCE of probabilities": (
            lambda: binary_cross_entropy(p, t),
            lambda: value_and_grad(binary_cross_entropy)(p, t, out=g)),
    }
    for case, (fwd, bwd) in cases.items():
        yield case, FORWARD, "crossent", "crossent", fwd
        yield case, BACKWARD, "crossent value_and_grad(out=)", "crossent", bwd
    if torch is None:
        for case in cases:
            yield case, FORWARD, "floor: read x, t (ndarray.sum)", "floor", lambda: (x.sum(), t.sum())
            yield case, BACKWARD, "floor: read x, t + write (np.add out=)", "floor", \
                lambda: np.add(x, t, out=g)
        return
    F = torch.nn.functional
    xt, tt, pt, gt = (torch.from_numpy(a) for a in (x, t, p, g))

    def focal(z):  # torchvision.ops.sigmoid_focal_loss, alpha 0.25, gamma 2, mean
        prob = torch.sigmoid(z)
        ce = F.binary_cross_entropy_with_logits(z, tt, reduction="none")
        p_t = prob * tt + (1 - prob) * (1 - tt)
        loss = ce * (1 - p_t) ** 2
        return ((0.25 * tt + 0.75 * (1 - tt)) * loss).mean()

    torch_cases = {
        "sigmoid BCE with logits": (lambda z: F.binary_cross_entropy_with_logits(z, tt), xt),
        "sigmoid focal, gamma 2": (focal, xt),
        "BCE of probabilities": (lambda z: F.binary_cross_entropy(z, tt), pt),
    }
    threads = torch.get_num_threads()
    for case, (loss_fn, base) in torch_cases.items():
        leaf = base.clone().requires_grad_(True)

        def fwd(loss_fn=loss_fn, base=base):
            with torch.no_grad():
                return float(loss_fn(base))

        def bwd(loss_fn=loss_fn, leaf=leaf):
            leaf.grad = None
            loss = loss_fn(leaf)
            loss.backward()
            return float(loss.detach()), leaf.grad

        yield case, FORWARD, "torch eager", "torch", fwd
        yield case, BACKWARD, "torch eager + backward", "torch", bwd
        yield case, FORWARD, f"floor: read x, t (torch.sum, {threads} thr)", "floor", \
            lambda: (xt.sum(), tt.sum())
        yield case, BACKWARD, f"floor: read x, t + write (torch.add out=, {threads} thr)", \
            "floor", lambda: torch.add(xt, tt, out=gt)


def _measure_cases(n, c, rng, torch, scipy_ok):
    p = rng.dirichlet(np.ones(c), n)
    q = rng.dirichlet(np.ones(c), n)
    yield "entropy (float64)", FORWARD, "crossent", "crossent", lambda: entropy(p)
    yield "KL divergence (float64)", FORWARD, "crossent", "crossent", lambda: kl_divergence(p, q)
    yield "JS divergence (float64)", FORWARD, "crossent", "crossent", lambda: js_divergence(p, q)
    if scipy_ok:
        import scipy.spatial.distance
        import scipy.special
        import scipy.stats
        yield "entropy (float64)", FORWARD, "scipy.stats.entropy", "scipy", \
            lambda: scipy.stats.entropy(p, axis=1)
        yield "KL divergence (float64)", FORWARD, "scipy.special.rel_entr(p, q).sum(1)", "scipy", \
            lambda: scipy.special.rel_entr(p, q).sum(axis=1)
        yield "JS divergence (float64)", FORWARD, "scipy jensenshannon(p, q)**2", "scipy", \
            lambda: scipy.spatial.distance.jensenshannon(p, q, axis=1) ** 2
    if torch is not None:
        pt, qt = torch.from_numpy(p), torch.from_numpy(q)
        threads = torch.get_num_threads()
        yield "entropy (float64)", FORWARD, f"floor: read p (torch.sum, {threads} thr)", "floor", pt.sum
        for case in ("KL divergence (float64)", "JS divergence (float64)"):
            yield case, FORWARD, f"floor: read p, q (torch.sum, {threads} thr)", "floor", \
                lambda: (pt.sum(), qt.sum())
    else:
        yield "entropy (float64)", FORWARD, "floor: read p (ndarray.sum)", "floor", p.sum
        for case in ("KL divergence (float64)", "JS divergence (float64)"):
            yield case, FORWARD, "floor: read p, q (ndarray.sum)", "floor", lambda: (p.sum(), q.sum())


def run(sizes: Sizes = QUICK, repeat: int = 5, seed: int = 0, with_torch: bool = True,
        with_scipy: bool = True, only: Optional[str] = None) -> List[Row]:
    """Time every method of every case (of the cases whose name contains ``only``, ignoring
    case, when it is given); returns the rows in case order."""
    torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            torch = None
    scipy_ok = False
    if with_scipy:
        try:
            import scipy  # noqa: F401
            scipy_ok = True
        except ImportError:
            scipy_ok = False
    rng = np.random.default_rng(seed)
    groups = [
        lambda: _softmax_cases(*sizes.softmax, rng, torch),
        lambda: _binary_cases(sizes.binary, rng, torch),
        lambda: _measure_cases(*sizes.measures, rng, torch, scipy_ok),
    ]
    rows: List[Row] = []
    for group in groups:
        for case, kind, method, role, fn in group():
            if only is not None and only.lower() not in case.lower():
                continue
            extra = peak_extra_bytes(fn)
            rows.append(Row(case, kind, method, role, _median_seconds(fn, repeat, sizes.budget),
                            extra))
        gc.collect()
    order = {}
    for r in rows:
        order.setdefault((r.case, r.kind), len(order))
    return sorted(rows, key=lambda r: order[(r.case, r.kind)])


def _fastest(rows, case, kind, role):
    times = [r.seconds for r in rows if r.case == case and r.kind == kind and r.role == role]
    return min(times) if times else None


def table(rows: List[Row], sizes: Sizes) -> str:
    """The rows as aligned plain text, one block per case and pass."""
    header = ("case", "pass", "method", "median ms", "x floor", "x crossent", "extra MiB")
    lines = []
    last = None
    for r in rows:
        section = (r.case, r.kind)
        if last is not None and section != last:
            lines.append(None)
        floor = _fastest(rows, r.case, r.kind, "floor")
        mine = _fastest(rows, r.case, r.kind, "crossent")
        lines.append((
            r.case if section != last else "",
            r.kind if section != last else "",
            r.method,
            f"{r.seconds * 1e3:.3g}",
            "-" if floor is None else f"{r.seconds / floor:.2f}",
            "-" if mine is None else f"{r.seconds / mine:.2f}",
            "n/a" if r.extra_bytes is None else f"{r.extra_bytes / 2**20:.0f}",
        ))
        last = section
    widths = [max(len(header[i]), *(len(row[i]) for row in lines if row)) for i in range(7)]

    def fmt(row):
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    n, v = sizes.softmax
    title = (f"float32 losses: softmax rows {n} x {v}, binary {sizes.binary} elements; measures "
             f"{sizes.measures[0]} x {sizes.measures[1]} float64 (kernels: "
             f"{_backend.kernel_backend()}, crossent threads: {_backend.get_num_threads()})")
    body = [rule if row is None else fmt(row) for row in lines]
    return "\n".join([title, fmt(header), rule, *body, rule])


NOTES = """\
x floor: time over the fastest floor of the same case and pass (1.00 = at the memory floor).
x crossent: time over crossent's in the same case and pass (above 1: crossent is faster).
extra MiB: peak resident-set growth during one call (VmHWM after /proc/self/clear_refs).
Floors and PyTorch run on torch.get_num_threads() threads, crossent on its own setting.
Two OpenMP thread pools (crossent's and PyTorch's) spin against each other on few cores: run
with OMP_WAIT_POLICY=passive in the environment for steady sub-millisecond figures."""
