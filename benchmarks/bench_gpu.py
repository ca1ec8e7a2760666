"""crossent.torch on a CUDA GPU against torch's own chunked head, the naive head, Liger and CCE.

    python benchmarks/bench_gpu.py              # on a CUDA machine: the shapes below
    python benchmarks/bench_gpu.py --quick      # one repeat, the SPEC shape only
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --smoke   # tiny shapes on the CPU: the
                                                                 # script itself, no timing worth reading

Fused linear cross-entropy, forward + backward (gradients of hidden and weight):

- ``llama3``: N=8192 tokens, D=4096, V=128256, bfloat16 (a Llama-3-8B head);
- ``spec``:   N=2048, D=1024, V=32768, float32 (the SPEC 7 shape).

Contenders, on the same tensors, interleaved, median of ``--repeat`` timed calls after a
warm-up: ``crossent.torch.linear_cross_entropy`` (Triton row kernels between the matrix
products), torch's ``F.linear_cross_entropy`` with ``options=torch.nn.LinearCrossEntropyOptions()``
(its chunked engine, where the installed torch has it), the naive ``F.cross_entropy(h @ W.T)``,
the naive head under ``torch.compile``, and Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss``
and Apple's Cut Cross-Entropy when they import. Peak memory: ``torch.cuda.max_memory_allocated``
during one call, minus what was allocated before it and minus the gradients the call must
return ("extra" memory), printed as a fraction of one N x V logits array in the input dtype.
Ratios are against torch's chunked op (the anchor of SPEC 7) and the naive head.

A second table times the row losses alone (``cross_entropy``, ``binary_cross_entropy_with_logits``)
against ``torch.nn.functional`` and the read+write floor (``torch.add(x, t, out=g)``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import crossent.torch as ct

SHAPES = {"llama3": (8192, 4096, 128256, torch.bfloat16), "spec": (2048, 1024, 32768, torch.float32)}
SMOKE = {"smoke": (64, 16, 300, torch.float32)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _contenders(device):
    """name -> fn(hidden, weight, target) returning a scalar loss, for what imports here."""
    out = {"crossent": lambda h, w, t: ct.linear_cross_entropy(h, w, t)}
    if hasattr(F, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions"):
        options = torch.nn.LinearCrossEntropyOptions()
        out["torch chunked"] = lambda h, w, t: F.linear_cross_entropy(h, w, t, options=options)
    out["naive"] = lambda h, w, t: F.cross_entropy((h @ w.T).float(), t)
    if device.type == "cuda":
        compiled = torch.compile(lambda h, w, t: F.cross_entropy((h @ w.T).float(), t))
        out["naive compiled"] = compiled
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            liger = LigerFusedLinearCrossEntropyLoss()
            out["liger"] = lambda h, w, t: liger(w, h, t)
        except ImportError:
            pass
        try:
            from cut_cross_entropy import linear_cross_entropy as cce

            out["cce"] = lambda h, w, t: cce(h, w, t)
        except ImportError:
            pass
    return out


def _problem(n, d, v, dtype, device, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.randn(n, d, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    w = (torch.randn(v, d, generator=g) / d**0.5).to(device=device, dtype=dtype).requires_grad_(True)
    t = torch.randint(0, v, (n,), generator=g).to(device)
    return h, w, t


def _call(fn, h, w, t):
    h.grad = w.grad = None
    fn(h, w, t).backward()


def _peak_extra(fn, h, w, t, device):
    """Bytes allocated at the peak of one call beyond the inputs and the returned gradients."""
    if device.type != "cuda":
        return float("nan")
    h.grad = w.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn(h, w, t).backward()
    torch.cuda.synchronize()
    grads = h.numel() * h.element_size() + w.numel() * w.element_size()
    return torch.cuda.max_memory_allocated() - before - grads


def linear_table(shapes, repeat, device):
    contenders = _contenders(device)
    rows = []
    for label, (n, d, v, dtype) in shapes.items():
        h, w, t = _problem(n, d, v, dtype, device)
        times = {name: [] for name in contenders}
        failed = {}
        for name, fn in contenders.items():  # warm-up (compiles, autotunes)
            try:
                _call(fn, h, w, t)
            except Exception as exc:  # a contender that cannot run this case is reported, not fatal
                failed[name] = f"{type(exc).__name__}: {exc}"[:80]
        live = {k: f for k, f in contenders.items() if k not in failed}
        for _ in range(repeat):
            for name, fn in live.items():
                _sync(device)
                start = time.perf_counter()
                _call(fn, h, w, t)
                _sync(device)
                times[name].append(time.perf_counter() - start)
        peaks = {name: _peak_extra(fn, h, w, t, device) for name, fn in live.items()}
        logits_bytes = n * v * h.element_size()
        med = {name: statistics.median(ts) for name, ts in times.items() if ts}
        anchor = med.get("torch chunked")
        print(f"\nfused linear CE, {label}: N={n} D={d} V={v} {str(dtype)[6:]} on {device} "
              f"(forward+backward, median of {repeat}; logits would be {logits_bytes / 2**20:.0f} MiB)")
        print(f"{'contender':16} {'time ms':>9} {'vs torch chunked':>17} {'vs naive':>9} "
              f"{'extra MiB':>10} {'extra / logits':>15}")
        for name in contenders:
            if name in failed:
                print(f"{name:16} failed: {failed[name]}")
                continue
            ratio = f"{med[name] / anchor:.2f}x" if anchor else "-"
            print(f"{name:16} {med[name] * 1e3:9.2f} {ratio:>17} {med[name] / med['naive']:8.2f}x "
                  f"{peaks[name] / 2**20:10.1f} {peaks[name] / logits_bytes:15.3f}")
            rows.append((label, name, med[name], peaks[name]))
        del h, w, t
    return rows


def row_table(n, v, repeat, device):
    """Softmax CE and BCE-with-logits forward+backward against torch and the read+write floor."""
    g = torch.Generator(device="cpu").manual_seed(1)
    x = (torch.randn(n, v, generator=g) * 3).to(device).requires_grad_(True)
    y = torch.randint(0, v, (n,), generator=g).to(device)
    tb = torch.rand(n, v, generator=g).to(device)
    out = torch.empty_like(x)
    cases = {
        "crossent cross_entropy": lambda: ct.cross_entropy(x, y).backward(),
        "torch cross_entropy": lambda: F.cross_entropy(x, y).backward(),
        "crossent bce_with_logits": lambda: ct.binary_cross_entropy_with_logits(x, tb).backward(),
        "torch bce_with_logits": lambda: F.binary_cross_entropy_with_logits(x, tb).backward(),
        "floor: add(x, t, out=g)": lambda: torch.add(x.detach(), tb, out=out),
    }
    times = {k: [] for k in cases}
    for fn in cases.values():
        x.grad = None
        fn()
    for _ in range(repeat):
        for name, fn in cases.items():
            x.grad = None
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["floor: add(x, t, out=g)"]
    print(f"\nrow losses, N={n} V={v} float32 on {device} (forward+backward, median of {repeat})")
    print(f"{'case':26} {'time ms':>9} {'vs torch':>9} {'vs floor':>9}")
    for name, t in med.items():
        other = {"crossent cross_entropy": "torch cross_entropy",
                 "crossent bce_with_logits": "torch bce_with_logits"}.get(name)
        vs = f"{med[other] / t:.2f}x" if other else "-"
        print(f"{name:26} {t * 1e3:9.2f} {vs:>9} {t / floor:8.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the SPEC shape once")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes on the CPU (run with TRITON_INTERPRET=1): checks the script")
    args = parser.parse_args(argv)
    if args.smoke:
        from crossent.torch import _engine

        device = torch.device("cpu")
        with _engine.force_triton_path():
            linear_table(SMOKE, 1, device)
            row_table(8, 300, 1, device)
        return 0
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here (torch.cuda.is_available() is False); "
              "use --smoke with TRITON_INTERPRET=1 to check the script on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    import triton

    print(f"torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name()}")
    shapes = {"spec": SHAPES["spec"]} if args.quick else SHAPES
    linear_table(shapes, 1 if args.quick else args.repeat, device)
    row_table(8192, 32768, 1 if args.quick else args.repeat, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
