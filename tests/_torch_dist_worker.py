"""One rank of the vocabulary-parallel tests (run by tests/test_torch_distributed.py).

Usage: python _torch_dist_worker.py RANK WORLD PORT OUT_FILE

Joins a gloo group on 127.0.0.1:PORT, computes the vocabulary-parallel losses of the shared
problems on this rank's slice of the classes, and saves values, gradients and the bytes that
crossed the group (counted by wrapping torch.distributed.all_reduce) to OUT_FILE.
"""

from __future__ import annotations

import datetime
import sys

import torch
import torch.distributed as dist

import crossent.torch as ct

N, V, D = 9, 12, 5

# The option sets checked against one process (the test reads CASES from here too).
CASES = [
    dict(reduction="mean"),
    dict(reduction="sum", label_smoothing=0.1),
    dict(reduction="none", label_smoothing=0.2, z_loss=1e-3, softcap=5.0),
    dict(reduction="mean", label_smoothing=0.3, z_loss=0.01),
]


def problem(seed=0):
    """Full logits (with masked classes), hidden states, weight, bias and targets: every rank
    builds the same."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=g, dtype=torch.float64) * 3
    logits[0, 4:8] = -torch.inf   # masked classes, a whole slice for some layouts
    logits[1, 1] = -torch.inf
    hidden = torch.randn(N, D, generator=g, dtype=torch.float64)
    weight = torch.randn(V, D, generator=g, dtype=torch.float64)
    bias = torch.randn(V, generator=g, dtype=torch.float64)
    target = torch.randint(0, V, (N,), generator=g)
    target[0] = 9
    target[3] = -100
    upstream = torch.randn(N, generator=g, dtype=torch.float64)
    return logits, hidden, weight, bias, target, upstream


def split(world):
    """Uneven contiguous slices [start, stop) of the V classes (passed as vocab_start)."""
    edges = [round(r * V / world) for r in range(world + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _backward(out, upstream):
    (out * upstream).sum().backward() if out.dim() else out.backward()


def main(rank, world, port, out_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    sent = []
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(tensor, *args, **kwargs):
        sent.append(tensor.numel() * tensor.element_size())
        return real_all_reduce(tensor, *args, **kwargs)
    dist.all_reduce = counting_all_reduce

    logits, hidden, weight, bias, target, upstream = problem()
    start, stop = split(world)[rank]
    results = {"cases": [], "bytes": {}}
    for opts in CASES:
        x = logits[:, start:stop].clone().requires_grad_(True)
        out = ct.vocab_parallel_cross_entropy(x, target, vocab_start=start, **opts)
        _backward(out, upstream)
        h = hidden.clone().requires_grad_(True)
        w = weight[start:stop].clone().requires_grad_(True)
        b = bias[start:stop].clone().requires_grad_(True)
        lin = ct.vocab_parallel_linear_cross_entropy(h, w, target, b, vocab_start=start, chunk_size=4, **opts)
        _backward(lin, upstream)
        results["cases"].append(dict(value=out.detach(), grad=x.grad, linear_value=lin.detach(),
                                     grad_hidden=h.grad, grad_weight=w.grad, grad_bias=b.grad))

    # Default layout (equal slices, rank r holds [r V_local, (r+1) V_local)) with float32.
    v_local = 4
    x = torch.randn(N, v_local * world, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, v_local * world, (N,), generator=torch.Generator().manual_seed(2))
    xl = x[:, rank * v_local:(rank + 1) * v_local].clone().requires_grad_(True)
    loss = ct.vocab_parallel_cross_entropy(xl, y, label_smoothing=0.1)
    loss.backward()
    results["default_layout"] = dict(logits=x, target=y, value=loss.detach(), grad=xl.grad)

    # Bytes crossing the group for the loss and its gradient, as the vocabulary grows.
    for v_local in (64, 4096):
        xl = torch.randn(64, v_local, requires_grad=True)
        y = torch.randint(0, v_local * world, (64,), generator=torch.Generator().manual_seed(3))
        sent.clear()
        ct.vocab_parallel_cross_entropy(xl, y, label_smoothing=0.1, z_loss=1e-4, softcap=30.0).backward()
        results["bytes"][v_local] = sum(sent)

    # A target in nobody's slice raises on every rank (no rank is left waiting).
    try:
        ct.vocab_parallel_cross_entropy(logits[:, start:stop], torch.full((N,), V + 3), vocab_start=start)
    except IndexError as exc:
        results["error"] = str(exc)
    torch.save(results, out_file)
    dist.barrier()  # no rank tears the group down while a peer still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
