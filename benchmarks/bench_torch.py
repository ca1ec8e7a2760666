"""crossent.torch against PyTorch on the CPU: time and peak memory, side by side, as ratios.

    python benchmarks/bench_torch.py            # the SPEC 7 shapes
    python benchmarks/bench_torch.py --quick    # small shapes, a few seconds

Two comparisons, float32, forward + backward:

1. Fused linear cross-entropy, N=2048 x D=1024 -> V=32768: ``crossent.torch.linear_cross_entropy``
   against torch 2.13's own ``F.linear_cross_entropy`` (chunked: ``options=
   torch.nn.LinearCrossEntropyOptions()``; and its reference path, ``options=None``), the naive
   ``F.cross_entropy(hidden @ weight.T, target)`` eager and under ``torch.compile`` (inductor;
   compilation excluded from the timings), and the time of the three matrix products alone
   (``h @ W.T``, ``G @ W``, ``G.T @ h`` on preallocated buffers), which is the floor the fused
   loss is measured against (SPEC 7: within 1.15x, at most 1/8 of the logits extra, and at
   least 1.5x faster than torch's chunked op at no more than a quarter of its extra memory).
2. Softmax cross-entropy, N=4096 x V=32768: ``crossent.torch.cross_entropy`` against
   ``F.cross_entropy``.

Time: the contenders run in this process on the same tensors, interleaved round by round (so
load from other processes on a shared machine hits each alike), median and best of
``--repeat`` calls after one warm-up call. Peak memory: each contender runs once more alone in a
fresh subprocess (Linux): after the inputs exist, the resident set's high-water mark is reset
(``/proc/self/clear_refs``; a tiny warm-up call has already paid the libraries' one-time
set-up), and the figure is the peak (``VmHWM``) minus the resident set at
that moment, minus the bytes of the gradients the call must return — "extra" memory: what the
loss needs beyond its inputs and its gradients.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import crossent
import crossent.torch as ct
from crossent.benchmarks import peak_extra_bytes

MIB = 1 << 20


# ----------------------------------------------------------------------------- problems
def linear_problem(n, d, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g).requires_grad_(True)
    weight = (torch.randn(v, d, generator=g) / d**0.5).requires_grad_(True)
    target = torch.randint(0, v, (n,), generator=g)
    return hidden, weight, target


def ce_problem(n, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * 3).requires_grad_(True)
    target = torch.randint(0, v, (n,), generator=g)
    return logits, target


def _clear(*tensors):
    for t in tensors:
        t.grad = None


def run_crossent_linear(hidden, weight, target):
    _clear(hidden, weight)
    ct.linear_cross_entropy(hidden, weight, target).backward()


def run_naive_linear(hidden, weight, target):
    _clear(hidden, weight)
    F.cross_entropy(hidden @ weight.T, target).backward()


def run_torch_linear_chunked(hidden, weight, target):
    _clear(hidden, weight)
    F.linear_cross_entropy(hidden, weight, target, options=torch.nn.LinearCrossEntropyOptions()).backward()


def run_torch_linear_reference(hidden, weight, target):
    _clear(hidden, weight)
    F.linear_cross_entropy(hidden, weight, target).backward()


def _naive_loss(hidden, weight, target):
    return F.cross_entropy(hidden @ weight.T, target)


_compiled_naive = None


def run_compiled_naive_linear(hidden, weight, target):
    global _compiled_naive
    if _compiled_naive is None:
        _compiled_naive = torch.compile(_naive_loss, dynamic=True)  # one compilation for any shape
    _clear(hidden, weight)
    _compiled_naive(hidden, weight, target).backward()


class ThreeMatmuls:
    """The three products of a linear layer's forward and backward, on preallocated buffers."""

    def __init__(self, hidden, weight):
        n, v = hidden.shape[0], weight.shape[0]
        self.h, self.w = hidden.detach(), weight.detach()
        self.logits = torch.empty(n, v)
        self.grad_h = torch.empty_like(self.h)
        self.grad_w = torch.empty_like(self.w)

    def __call__(self, *_):
        torch.mm(self.h, self.w.T, out=self.logits)
        torch.mm(self.logits, self.w, out=self.grad_h)
        torch.mm(self.logits.T, self.h, out=self.grad_w)


def run_crossent_ce(logits, target):
    _clear(logits)
    ct.cross_entropy(logits, target).backward()


def run_torch_ce(logits, target):
    _clear(logits)
    F.cross_entropy(logits, target).backward()


CONTENDERS = {
    "crossent_linear": (run_crossent_linear, "linear"),
    "torch_linear_chunked": (run_torch_linear_chunked, "linear"),
    "torch_linear_reference": (run_torch_linear_reference, "linear"),
    "naive_linear": (run_naive_linear, "linear"),
    "compiled_naive_linear": (run_compiled_naive_linear, "linear"),
    "crossent_ce": (run_crossent_ce, "ce"),
    "torch_ce": (run_torch_ce, "ce"),
}


# ----------------------------------------------------------------------------- measuring
def seconds(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def interleaved(contenders, args, repeat):
    """name -> sorted call times: one warm-up call each, then ``repeat`` rounds, each running
    every contender once in turn."""
    for fn in contenders.values():
        fn(*args)
    times = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            times[name].append(seconds(fn, *args))
    return {name: sorted(t) for name, t in times.items()}


def median(ts):
    m = len(ts) // 2
    return ts[m] if len(ts) % 2 else (ts[m - 1] + ts[m]) / 2


def worker(name, shape):
    """Run one contender once in this fresh process; print its extra peak memory as JSON."""
    fn, kind = CONTENDERS[name]
    # libraries' first-use set-up (and compilation: dynamic shapes) on a tiny problem, so that
    # nothing it freed stays resident in the allocator and hides in the baseline
    fn(*(linear_problem(8, 8, 16) if kind == "linear" else ce_problem(8, 16)))
    if kind == "linear":
        args = linear_problem(*shape)
        grad_bytes = args[0].numel() * 4 + args[1].numel() * 4
    else:
        args = ce_problem(*shape)
        grad_bytes = args[0].numel() * 4
    extra = peak_extra_bytes(lambda: fn(*args))  # VmHWM after /proc/self/clear_refs
    print(json.dumps({"extra_mib": (extra - grad_bytes) / MIB}))


def peak_in_subprocess(name, shape):
    cmd = [sys.executable, __file__, "--worker", name, "--shape", ",".join(map(str, shape))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per contender")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, tuple(int(s) for s in args.shape.split(",")))
        return
    lin_shape = (512, 256, 8192) if args.quick else (2048, 1024, 32768)
    ce_shape = (1024, 8192) if args.quick else (4096, 32768)
    repeat = args.repeat or (3 if args.quick else 5)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; crossent kernels: "
          f"{crossent.kernel_backend()}; float32, forward + backward; {repeat} interleaved rounds")

    n, d, v = lin_shape
    problem = linear_problem(*lin_shape)
    matmuls = ThreeMatmuls(problem[0], problem[1])
    names = ("crossent_linear", "torch_linear_chunked", "torch_linear_reference", "naive_linear",
             "compiled_naive_linear")
    contenders = {name: CONTENDERS[name][0] for name in names} | {"matmuls": matmuls}
    timing = interleaved(contenders, problem, repeat)
    logits_mib = n * v * 4 / MIB
    mem = {name: peak_in_subprocess(name, lin_shape) for name in names}
    labels = {"crossent_linear": "crossent linear_cross_entropy",
              "torch_linear_chunked": "F.linear_cross_entropy chunked",
              "torch_linear_reference": "F.linear_cross_entropy ref.",
              "naive_linear": "F.cross_entropy(h @ W.T)",
              "compiled_naive_linear": "torch.compile'd naive",
              "matmuls": "three matmuls alone"}
    c = median(timing["crossent_linear"])
    print(f"\nlinear cross-entropy, N={n} D={d} V={v} (the N x V logits: {logits_mib:.0f} MiB)")
    print(f"  {'':32s}{'median s':>9s}{'best s':>9s}{'/ crossent':>11s}{'extra MiB':>10s}{'/ logits':>9s}")
    for name, label in labels.items():
        med = median(timing[name])
        extra = (f"{mem[name]:10.1f}{mem[name] / logits_mib:9.3f}" if name in mem else f"{'-':>10s}{'-':>9s}")
        print(f"  {label:32s}{med:9.3f}{timing[name][0]:9.3f}{med / c:11.2f}{extra}")
    m, tc = median(timing["matmuls"]), median(timing["torch_linear_chunked"])
    print(f"  crossent / three matmuls = {c / m:.3f} (target <= 1.15); extra memory = "
          f"{mem['crossent_linear'] / logits_mib:.3f} of the logits (target <= 0.125)")
    print(f"  torch chunked / crossent = {tc / c:.2f}x (target >= 1.5); crossent extra / torch chunked "
          f"extra = {mem['crossent_linear'] / mem['torch_linear_chunked']:.3f} (target <= 0.25)")
    del problem, matmuls

    n, v = ce_shape
    problem = ce_problem(*ce_shape)
    timing = interleaved({"crossent_ce": run_crossent_ce, "torch_ce": run_torch_ce}, problem, repeat)
    mem = {name: peak_in_subprocess(name, ce_shape) for name in ("crossent_ce", "torch_ce")}
    print(f"\nsoftmax cross-entropy, N={n} V={v} (logits {n * v * 4 / MIB:.0f} MiB; gradient not counted)")
    print(f"  {'':28s}{'median s':>9s}{'best s':>9s}{'extra peak MiB':>16s}")
    for name, label in (("crossent_ce", "crossent cross_entropy"), ("torch_ce", "F.cross_entropy")):
        print(f"  {label:28s}{median(timing[name]):9.3f}{timing[name][0]:9.3f}{mem[name]:16.1f}")
    print(f"  time: F.cross_entropy / crossent = "
          f"{median(timing['torch_ce']) / median(timing['crossent_ce']):.2f}x")


if __name__ == "__main__":
    main()
