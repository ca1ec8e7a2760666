"""``crossent bench``: softmax cross-entropy against PyTorch, plain NumPy and the memory floor.

    crossent bench            # N=4096 x V=32768 and N=64 x V=262144, float32 (about a minute)
    crossent bench --quick    # small shapes, a few seconds

Every method runs in this one process on the same arrays (float32 logits, int64 labels,
reduction "mean"): forward, and forward + backward. Time: the median of ``--repeat`` calls
after one warm-up call. Memory: the peak growth of the resident set during one more call
(Linux: ``/proc/self/clear_refs`` resets the high-water mark, ``VmHWM`` reads it), which counts
every buffer the call touches (NumPy's, PyTorch's and the kernels' alike), the returned gradient
included. The floors are what any method must at least do: forward reads the logits once;
forward + backward reads them once and writes a gradient of the same size.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import typer

from .. import _backend, _dispatch
from ..losses import softmax_cross_entropy, value_and_grad
from ._app import CliError, app

__all__: list[str] = []

FULL_SHAPES = [(4096, 32768), (64, 262144)]
QUICK_SHAPES = [(256, 4096), (8, 65536)]
FORWARD, BACKWARD = "forward", "forward+backward"


@dataclass
class Result:
    """One method on one shape and pass."""

    shape: Tuple[int, int]
    kind: str  # FORWARD or BACKWARD
    method: str
    seconds: float
    floor: bool  # a memory floor, not a loss
    extra_bytes: Optional[int]  # peak resident-set growth during one call, None if unknown


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median of at least ``repeat`` timed calls after a warm-up call; calls shorter than
    a few milliseconds are repeated more (up to 0.3 s or 200 calls) for a steadier median."""
    t0 = time.perf_counter()
    fn()  # warm-up: first-call costs (imports, thread pools, page mapping of caches)
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(repeat, min(200, int(0.3 / max(first, 1e-6))))):
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


def _peak_extra_bytes(fn: Callable[[], object]) -> Optional[int]:
    """Resident-set high-water mark during fn() minus the resident set before it (Linux)."""
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


def _methods(x: np.ndarray, y: np.ndarray, torch_mod) -> List[Tuple[str, str, bool, Callable]]:
    """(pass, name, is_floor, fn) for every contender on these arrays."""
    n = x.shape[0]
    rows = np.arange(n)
    grad_buffer = np.empty_like(x)
    copy_buffer = np.empty_like(x)
    vg = value_and_grad(softmax_cross_entropy)

    def np_forward():
        m = x.max(axis=1, keepdims=True)
        lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]  # log-softmax, then gather
        return float(np.mean(lse - x[rows, y]))

    def np_backward():
        m = x.max(axis=1, keepdims=True)
        p = np.exp(x - m)
        s = p.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, y]))
        p /= s  # softmax - one-hot, over N
        p[rows, y] -= 1.0
        p /= n
        return loss, p

    def kernel_backward():  # the gradient into a buffer the caller owns (out=)
        loss, g = _dispatch.softmax_ce_index(x, y, None, None, 0.0, 0.0, None, 1.0 / n, True,
                                             out=grad_buffer)
        return float(loss.mean()), g

    forward = [
        ("crossent.softmax_cross_entropy", False, lambda: softmax_cross_entropy(x, y)),
        ("numpy log_softmax + gather", False, np_forward),
        ("floor: one read (ndarray.sum)", True, lambda: x.sum()),
    ]
    backward = [
        ("crossent value_and_grad (new gradient)", False, lambda: vg(x, y)),
        ("crossent kernel (out= gradient)", False, kernel_backward),
        ("numpy softmax - onehot", False, np_backward),
        ("floor: read + write (np.copyto)", True, lambda: np.copyto(copy_buffer, x)),
        ("read + write to a new array (copy)", True, lambda: x.copy()),
    ]
    if torch_mod is not None:
        F = torch_mod.nn.functional
        xt = torch_mod.from_numpy(x)
        yt = torch_mod.from_numpy(y)
        xg = torch_mod.from_numpy(x).requires_grad_(True)
        ct = torch_mod.from_numpy(copy_buffer)

        def torch_forward():
            with torch_mod.no_grad():
                return float(F.cross_entropy(xt, yt))

        def torch_backward():
            xg.grad = None
            loss = F.cross_entropy(xg, yt)
            loss.backward()
            return float(loss.detach()), xg.grad

        threads = torch_mod.get_num_threads()
        forward.insert(1, ("torch F.cross_entropy", False, torch_forward))
        forward.append((f"floor: one read (torch.sum, {threads} thr)", True, lambda: xt.sum()))
        backward.insert(2, ("torch F.cross_entropy + backward", False, torch_backward))
        backward.insert(5, (f"floor: read + write (torch copy_, {threads} thr)", True,
                            lambda: ct.copy_(xt)))
    methods = [(FORWARD, *m) for m in forward] + [(BACKWARD, *m) for m in backward]
    return methods


def run(shapes, repeat: int, seed: int = 0, with_torch: bool = True) -> List[Result]:
    """Time every method on every shape; float32 logits ~ N(0, 4), uniform labels."""
    torch_mod = None
    if with_torch:
        try:
            import torch as torch_mod
        except ImportError:
            torch_mod = None
    results = []
    rng = np.random.default_rng(seed)
    for shape in shapes:
        x = rng.standard_normal(shape, dtype=np.float32) * np.float32(2.0)
        y = rng.integers(0, shape[1], shape[0])
        for kind, name, is_floor, fn in _methods(x, y, torch_mod):
            extra = _peak_extra_bytes(fn)
            seconds = _median_seconds(fn, repeat)
            results.append(Result(shape, kind, name, seconds, is_floor, extra))
        del x, y
        gc.collect()
    return results


def _floor_seconds(results: List[Result], shape, kind) -> float:
    """The fastest floor: one read (forward); read + write into an existing buffer (backward)."""
    floors = [r.seconds for r in results if r.shape == shape and r.kind == kind and r.floor
              and "new array" not in r.method]
    return min(floors)


def table(results: List[Result]) -> str:
    """The results as aligned plain text, one block per shape and pass."""
    header = ("shape", "pass", "method", "median ms", "torch/this", "this/floor", "GB/s",
              "extra MiB (x logits)")
    lines = []
    last = None
    for r in results:
        n, v = r.shape
        logits_bytes = n * v * 4
        moved = logits_bytes * (1 if r.kind == FORWARD else 2)
        torch_rows = [q.seconds for q in results if q.shape == r.shape and q.kind == r.kind
                      and q.method.startswith("torch F.")]
        section = (r.shape, r.kind)
        if last is not None and section != last:
            lines.append(None)
        lines.append((
            f"{n} x {v}" if section != last else "",
            r.kind if section != last else "",
            r.method,
            f"{r.seconds * 1e3:.3g}",
            f"{torch_rows[0] / r.seconds:.1f}x" if torch_rows else "-",
            f"{r.seconds / _floor_seconds(results, r.shape, r.kind):.2f}",
            f"{moved / r.seconds / 1e9:.1f}",
            "n/a" if r.extra_bytes is None else
            f"{r.extra_bytes / 2**20:.0f} ({r.extra_bytes / logits_bytes:.2f})",
        ))
        last = section
    widths = [max(len(header[i]), *(len(row[i]) for row in lines if row)) for i in range(8)]

    def fmt(row):
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    title = (f"softmax cross-entropy, float32 logits, int64 labels, mean "
             f"(kernels: {_backend.kernel_backend()}, crossent threads: "
             f"{_backend.get_num_threads()})")
    body = [rule if row is None else fmt(row) for row in lines]
    return "\n".join([title, fmt(header), rule, *body, rule])


NOTES = """\
torch/this: speed-up over PyTorch in the same pass (higher is better).
this/floor: time over the fastest floor of the same pass that writes no new array
  (1.00 = at the memory floor). GB/s: logits read (+ gradient written) per second.
extra MiB: peak resident-set growth during one call (VmHWM after /proc/self/clear_refs),
  the returned gradient included: (1.00) = one logits-sized array, the gradient alone.
  A fresh array pays the kernel's page zeroing: compare 'new gradient' with 'copy'.
Sub-millisecond calls with PyTorch loaded: two OpenMP thread pools (crossent's and PyTorch's)
  spin against each other on few cores; OMP_WAIT_POLICY=passive avoids that."""


@app.command("bench")
def bench_cmd(
    quick: bool = typer.Option(False, "--quick", help="Small shapes: a few seconds."),
    repeat: int = typer.Option(5, "--repeat", help="Timed calls per method (median)."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="Threads for crossent and PyTorch."),
    no_torch: bool = typer.Option(False, "--no-torch", help="Leave PyTorch out."),
) -> None:
    """Time crossent against PyTorch, NumPy and the memory floor, side by side."""
    if repeat < 1:
        raise CliError(f"--repeat must be >= 1, got {repeat}")
    if threads is not None:
        if threads < 1:
            raise CliError(f"--threads must be >= 1, got {threads}")
        _backend.set_num_threads(threads)
        if "torch" in sys.modules or not no_torch:
            try:
                import torch
                torch.set_num_threads(threads)
            except ImportError:
                pass
    results = run(QUICK_SHAPES if quick else FULL_SHAPES, repeat, with_torch=not no_torch)
    print(table(results))
    print(NOTES)
