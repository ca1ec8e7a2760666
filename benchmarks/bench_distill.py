"""Fused linear distillation against the naive loss on the CPU: time and peak memory, as ratios.

    python benchmarks/bench_distill.py            # the SPEC 7 shape
    python benchmarks/bench_distill.py --quick    # small shapes, a few seconds
    python benchmarks/bench_distill.py --breakdown  # where the time goes, chunk by chunk
    python benchmarks/bench_distill.py --chunk-size 512  # more memory for fewer, larger products

float32, forward + backward, N=2048 rows, D=1024 for both models, V=32768, the generalised
JSD with beta = 0.5 at T = 1: ``crossent.torch.linear_distillation_loss`` against

* the naive loss on materialised logits (``h_s @ W_s.T`` and ``h_t @ W_t.T``, then TRL's
  mixture formula in torch operations, differentiated by autograd), and
* the four matrix products alone on preallocated buffers (``h_s @ W_s.T``, ``h_t @ W_t.T``,
  ``G @ W_s``, ``G.T @ h_s``): the floor the fused loss is measured against (target: 1.2x).

``--breakdown`` times the parts of the fused loss's chunk loop one by one (the two logits
products of a chunk, the divergence kernel, the two gradient products) against the four
full-size products, in process CPU time (robust to other load on the machine) and wall time,
and the kernel per element against the softmax cross-entropy kernel's on the same chunk.

Time: the contenders run in this process on the same tensors, interleaved, best of
``--repeat``. Peak memory: each contender runs once more alone in a fresh subprocess (Linux):
after the inputs exist, the resident set's high-water mark is reset (``/proc/self/clear_refs``;
a tiny warm-up call has paid the libraries' one-time set-up), and the figure is the peak
(``VmHWM``) minus the resident set then, minus the bytes of the gradients the call returns:
the "extra" memory, compared with one N x V float32 logits array (target: at most 1/8).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch

import crossent
import crossent.torch as ct
from crossent.benchmarks import peak_extra_bytes
from crossent.torch.distill import _default_chunk

MIB = 1 << 20
BETA = 0.5


def problem(n, d, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(n, d, generator=g).requires_grad_(True)
    ws = (torch.randn(v, d, generator=g) / d**0.5).requires_grad_(True)
    ht = torch.randn(n, d, generator=g)
    wt = torch.randn(v, d, generator=g) / d**0.5 * 2
    return hs, ws, ht, wt


def _clear(*tensors):
    for t in tensors:
        t.grad = None


CHUNK = None  # rows per chunk: None, the loss's default (--chunk-size sets it)


def run_crossent(hs, ws, ht, wt):
    _clear(hs, ws)
    ct.linear_distillation_loss(hs, ws, ht, wt, beta=BETA, chunk_size=CHUNK).backward()


def run_naive(hs, ws, ht, wt):
    """Both logits materialised; TRL's generalised JSD formula, autograd for the gradients."""
    _clear(hs, ws)
    log_q = torch.log_softmax(hs @ ws.T, dim=-1)
    with torch.no_grad():
        log_p = torch.log_softmax(ht @ wt.T, dim=-1)
    log_m = torch.logsumexp(torch.stack([log_q + math.log(1 - BETA), log_p + math.log(BETA)]), dim=0)
    jsd = BETA * (log_p.exp() * (log_p - log_m)).sum(-1) + (1 - BETA) * (log_q.exp() * (log_q - log_m)).sum(-1)
    jsd.mean().backward()


class FourMatmuls:
    """The four products of the fused loss (two heads forward, the student's backward)."""

    def __init__(self, hs, ws, ht, wt):
        n, v = hs.shape[0], ws.shape[0]
        self.hs, self.ws, self.ht, self.wt = hs.detach(), ws.detach(), ht, wt
        self.s, self.t = torch.empty(n, v), torch.empty(n, v)
        self.grad_h, self.grad_w = torch.empty_like(self.hs), torch.empty_like(self.ws)

    def __call__(self, *_):
        torch.mm(self.hs, self.ws.T, out=self.s)
        torch.mm(self.ht, self.wt.T, out=self.t)
        torch.mm(self.s, self.ws, out=self.grad_h)
        torch.mm(self.s.T, self.hs, out=self.grad_w)


CONTENDERS = {"crossent": run_crossent, "naive": run_naive}


def _clock():
    return time.perf_counter(), time.process_time()


def breakdown(shape, repeat):
    """Per-part (CPU s, wall s) of the fused loop at its chunk size, and of the four
    full-size products, each the least of ``repeat`` passes; the divergence kernel per element
    against softmax CE's."""
    from crossent import _dispatch
    from crossent._options import SoftmaxCEOptions
    from crossent.torch.linear import _Products

    n, d, v = shape
    hs, ws, ht, wt = (t.detach() for t in problem(*shape))
    rows = CHUNK or _default_chunk(n, v, 4)  # linear_distillation_loss's own by default
    parts = {}

    def timed(name, fn):
        w0, c0 = _clock()
        fn()
        w1, c1 = _clock()
        cpu, wall = parts.get(name, (0.0, 0.0))
        parts[name] = (cpu + c1 - c0, wall + w1 - w0)

    s_buf, t_buf = torch.empty(rows, v), torch.empty(rows, v)
    # the fused loss's own products (its layout for these chunks)
    student = _Products(hs, ws, None, rows, torch.float32, layout="columns")
    teacher = _Products(ht, wt, None, rows, torch.float32, backward=False, layout="columns")
    grad_h, grad_w = torch.empty(n, d), torch.zeros(v, d)
    labels = torch.zeros(rows, dtype=torch.int64).numpy()
    ce_out = torch.empty(rows, v).numpy()
    where = torch.ones(rows, dtype=torch.bool).numpy()
    ce_options = SoftmaxCEOptions.checked(ignore_index=-100)

    def loop():
        for start in range(0, n, rows):
            sl = slice(start, min(start + rows, n))
            s, t = s_buf[: sl.stop - sl.start], t_buf[: sl.stop - sl.start]
            timed("chunk: student logits", lambda: student.logits(hs[sl], s))
            timed("chunk: teacher logits", lambda: teacher.logits(ht[sl], t))
            # the softmax cross-entropy kernel on the same chunk, for comparison (not part of the loop)
            timed("softmax CE kernel", lambda: _dispatch.softmax_ce_index(
                s.numpy(), labels[: len(s)], ce_options, 1.0, True, out=ce_out[: len(s)]))
            timed("chunk: divergence kernel", lambda: _dispatch.softmax_divergence(
                s.numpy(), t.numpy(), "jsd", BETA, 1.0, 0.0, where[: len(s)], None, 1.0 / n, True,
                out=s.numpy()))
            timed("chunk: grad_h (G W_s)", lambda: student.backward(s, hs[sl], grad_h[sl], None, None))
            timed("chunk: grad_W (+= G^T h)", lambda: student.backward(s, hs[sl], None, grad_w, None))

    loop()  # a first pass pays the buffers' first touch
    best = {}
    floor = FourMatmuls(hs, ws, ht, wt)
    floor()
    full = {
        "full: student logits": lambda: torch.mm(floor.hs, floor.ws.T, out=floor.s),
        "full: teacher logits": lambda: torch.mm(floor.ht, floor.wt.T, out=floor.t),
        "full: grad_h": lambda: torch.mm(floor.s, floor.ws, out=floor.grad_h),
        "full: grad_W": lambda: torch.mm(floor.s.T, floor.hs, out=floor.grad_w),
    }
    for _ in range(repeat):  # interleaved: the least of each part over the passes
        parts.clear()
        loop()
        for name, fn in full.items():
            timed(name, fn)
        best = {k: tuple(min(a, b) for a, b in zip(v, best.get(k, v))) for k, v in parts.items()}
    parts = best
    print(f"\nbreakdown, N={n} D={d} V={v}, {rows} rows per chunk, "
          f"{torch.get_num_threads()} threads, least of {repeat} passes (CPU s = process CPU time)")
    for name, (cpu, wall) in parts.items():
        print(f"  {name:28s} CPU {cpu:8.3f}  wall {wall:8.3f}")
    loop = [k for k in parts if k.startswith("chunk")]
    fulls = [k for k in parts if k.startswith("full")]
    for i in (0, 1):
        what = ("CPU", "wall")[i]
        a, b = sum(parts[k][i] for k in loop), sum(parts[k][i] for k in fulls)
        print(f"  {what}: fused loop / four full products = {a / b:.3f}; kernel share of the "
              f"products = {parts['chunk: divergence kernel'][i] / b:.3f}")
    per = n * v
    kern, ce = parts["chunk: divergence kernel"][0], parts["softmax CE kernel"][0]
    print(f"  divergence kernel {kern / per * 1e9:.2f} CPU-ns per element, softmax CE "
          f"{ce / per * 1e9:.2f} ({kern / ce:.1f}x)")


def worker(name, shape):
    """Run one contender once in this fresh process; print its extra peak memory as JSON."""
    fn = CONTENDERS[name]
    fn(*problem(8, 8, 16))  # the libraries' first-use set-up
    args = problem(*shape)
    grad_bytes = (args[0].numel() + args[1].numel()) * 4
    extra = peak_extra_bytes(lambda: fn(*args))  # VmHWM after /proc/self/clear_refs
    print(json.dumps({"extra_mib": (extra - grad_bytes) / MIB}))


def peak_in_subprocess(name, shape):
    cmd = [sys.executable, __file__, "--worker", name, "--shape", ",".join(map(str, shape))]
    if CHUNK is not None:
        cmd += ["--chunk-size", str(CHUNK)]
    # A fixed mmap threshold: glibc otherwise raises it (up to 32 MiB) when a large block is
    # freed, and later blocks below it reuse freed heap pages that are still resident, which
    # VmHWM does not see (the --quick shapes then showed less extra memory than the gradients)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a few seconds")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per contender")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the parts of the chunk loop against the full-size products")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="rows per chunk of the fused loss (default: its own, N/20 here)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global CHUNK
    CHUNK = args.chunk_size
    if args.worker:
        worker(args.worker, tuple(int(s) for s in args.shape.split(",")))
        return
    shape = (512, 256, 8192) if args.quick else (2048, 1024, 32768)
    repeat = args.repeat or 3
    if args.breakdown:
        breakdown(shape, repeat)
        return
    n, d, v = shape
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; crossent kernels: "
          f"{crossent.kernel_backend()}; float32, forward + backward; best of {repeat}")
    data = problem(*shape)
    floor = FourMatmuls(*data)
    timing = {}
    for _ in range(repeat):  # interleaved, so that load from elsewhere hits every contender
        for name, fn in (("crossent", run_crossent), ("naive", run_naive), ("matmuls", floor)):
            t0 = time.perf_counter()
            fn(*data)
            timing[name] = min(timing.get(name, math.inf), time.perf_counter() - t0)
    del data, floor
    logits_mib = n * v * 4 / MIB
    mem = {name: peak_in_subprocess(name, shape) for name in CONTENDERS}
    rows = CHUNK or _default_chunk(n, v, 4)
    print(f"\nlinear distillation (JSD, beta={BETA}), N={n} D={d} V={v}, {rows} rows per chunk "
          f"(one N x V logits array: {logits_mib:.0f} MiB)")
    print(f"  {'':36s}{'best s':>9s}{'extra peak MiB':>16s}")
    for name, label in (("crossent", "crossent linear_distillation_loss"),
                        ("naive", "naive (both logits, autograd)"), ("matmuls", "four matmuls alone")):
        extra = f"{mem[name]:16.1f}" if name in mem else f"{'-':>16s}"
        print(f"  {label:36s}{timing[name]:9.3f}{extra}")
    c, nv, m = timing["crossent"], timing["naive"], timing["matmuls"]
    print(f"  time: crossent / four matmuls = {c / m:.3f} (target <= 1.2); naive / crossent = {nv / c:.2f}x")
    print(f"  extra memory: crossent = {mem['crossent'] / logits_mib:.3f} of one logits array "
          f"(target <= 0.125); naive = {mem['naive'] / logits_mib:.2f}")


if __name__ == "__main__":
    main()
