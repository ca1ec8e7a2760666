"""One rank of the vocabulary-parallel tests (run by tests/test_torch_distributed.py).

Usage: python _torch_dist_worker.py RANK WORLD PORT OUT_FILE [hardening]

Joins a gloo group on 127.0.0.1:PORT, computes the vocabulary-parallel losses of the shared
problems on this rank's slice of the classes, and saves values, gradients and the bytes that
crossed the group (counted by wrapping torch.distributed.all_reduce) to OUT_FILE.

With ``hardening``, runs instead the scenarios of ``HARDENING``: uneven slices without
vocab_start, uneven slices with thousands of rows, and ranks that disagree (slices that
overlap or leave a gap, options, batch shapes, targets, arguments bad on one rank only),
recording per scenario either the results or the exception each rank raised. The group's
timeout is short, so a rank left waiting in a collective fails the scenario within seconds
instead of hanging the suite.
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


# The distillation option sets (beta, temperature, hard_weight, reduction) checked against one process.
DISTILL_CASES = [(0.0, 1.0, 0.0, "mean"), (1.0, 0.7, 0.0, "sum"), (0.5, 2.0, 0.3, "none"),
                 (0.1, 0.5, 0.5, "mean"), (0.9, 1.0, 1.0, "sum")]


def distill_problem(seed=4):
    """Student and teacher logits with masked classes (a whole slice of the student's for some
    layouts, one only the teacher masks: the reverse KL is then inf) and a row whose student
    maximum is tied between the first and the last class (on different ranks), and targets."""
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(N, V, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(N, V, generator=g, dtype=torch.float64) * 3
    student[0, 4:8] = -torch.inf
    teacher[0, 5:8] = -torch.inf
    teacher[2, 3] = -torch.inf
    student[4, 0] = student[4, V - 1] = 12.0
    target = torch.randint(0, V, (N,), generator=g)
    target[1] = -100
    return student, teacher, target


def _distill(rank, world):
    """This rank's values and gradients of the DISTILL_CASES (explicit vocab_start)."""
    student, teacher, target = distill_problem()
    start, stop = split(world)[rank]
    out = []
    for beta, temperature, hard_weight, reduction in DISTILL_CASES:
        x = student[:, start:stop].clone().requires_grad_(True)
        value = ct.vocab_parallel_distillation_loss(x, teacher[:, start:stop], target, vocab_start=start,
                                                    beta=beta, temperature=temperature,
                                                    hard_weight=hard_weight, reduction=reduction)
        (value.sum() if value.dim() else value).backward()
        out.append(dict(value=value.detach(), grad=x.grad))
    return out


def split(world):
    """Uneven contiguous slices [start, stop) of the V classes (passed as vocab_start)."""
    edges = [round(r * V / world) for r in range(world + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _backward(out, upstream):
    (out * upstream).sum().backward() if out.dim() else out.backward()


def _cases(rank, world):
    """This rank's values and gradients of the CASES: the plain and the fused linear loss."""
    logits, hidden, weight, bias, target, upstream = problem()
    start, stop = split(world)[rank]
    cases = []
    for opts in CASES:
        x = logits[:, start:stop].clone().requires_grad_(True)
        out = ct.vocab_parallel_cross_entropy(x, target, vocab_start=start, **opts)
        _backward(out, upstream)
        h = hidden.clone().requires_grad_(True)
        w = weight[start:stop].clone().requires_grad_(True)
        b = bias[start:stop].clone().requires_grad_(True)
        lin = ct.vocab_parallel_linear_cross_entropy(h, w, target, b, vocab_start=start, chunk_size=4, **opts)
        _backward(lin, upstream)
        cases.append(dict(value=out.detach(), grad=x.grad, linear_value=lin.detach(),
                           grad_hidden=h.grad, grad_weight=w.grad, grad_bias=b.grad))
    return cases


def triton(rank, world, port, out_file):
    """The CASES with every rank on the Triton kernels (under TRITON_INTERPRET=1 on CPUs)."""
    from crossent.torch import _engine

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    with _engine.force_triton_path():
        results = {"cases": _cases(rank, world)}
    torch.save(results, out_file)
    dist.barrier()
    dist.destroy_process_group()


def main(rank, world, port, out_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    sent = []
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(tensor, *args, **kwargs):
        sent.append(tensor.numel() * tensor.element_size())
        return real_all_reduce(tensor, *args, **kwargs)
    dist.all_reduce = counting_all_reduce

    results = {"cases": _cases(rank, world), "distill": _distill(rank, world), "bytes": {},
               "distill_bytes": {}}
    logits, _, _, _, target, _ = problem()
    start, stop = split(world)[rank]

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

        xl = torch.randn(64, v_local, requires_grad=True)
        sent.clear()
        ct.vocab_parallel_distillation_loss(xl, torch.randn(64, v_local), y, beta=0.3,
                                            hard_weight=0.5).backward()
        results["distill_bytes"][v_local] = sum(sent)

    # A target in nobody's slice raises on every rank (no rank is left waiting).
    try:
        ct.vocab_parallel_cross_entropy(logits[:, start:stop], torch.full((N,), V + 3), vocab_start=start)
    except IndexError as exc:
        results["error"] = str(exc)
    torch.save(results, out_file)
    dist.barrier()  # no rank tears the group down while a peer still talks to it
    dist.destroy_process_group()


def widths(world, v):
    """Uneven slice widths of v classes (rank r holds r + 1 parts)."""
    parts = world * (world + 1) // 2
    w = [v * (r + 1) // parts for r in range(world)]
    w[-1] += v - sum(w)
    return w


def _vp_ce(rank, world, logits, target, widths_, **kw):
    start = sum(widths_[:rank])
    x = logits[:, start:start + widths_[rank]].clone().requires_grad_(True)
    out = ct.vocab_parallel_cross_entropy(x, target, **kw)
    out.backward()
    return dict(value=out.detach(), grad=x.grad, start=start)


def _vp_linear(rank, world, hidden, weight, target, widths_, **kw):
    start = sum(widths_[:rank])
    h = hidden.clone().requires_grad_(True)
    w = weight[start:start + widths_[rank]].clone().requires_grad_(True)
    out = ct.vocab_parallel_linear_cross_entropy(h, w, target, **kw)
    (out.sum() if out.dim() else out).backward()
    return dict(value=out.detach(), grad_hidden=h.grad, grad_weight=w.grad, start=start)


def _uneven_default(rank, world):
    logits, hidden, weight, _, target, _ = problem()
    ws = widths(world, V)
    return dict(ce=_vp_ce(rank, world, logits, target, ws, label_smoothing=0.1),
                linear=_vp_linear(rank, world, hidden, weight, target, ws, chunk_size=4, reduction="none"),
                widths=ws)


def _uneven_many_rows(rank, world):
    """3000 rows, 2100 classes split unevenly, explicit vocab_start, default chunking: the
    chunk count would differ per rank if it followed the local width."""
    g = torch.Generator().manual_seed(21)
    n, v, d = 3000, 2100, 4
    logits = torch.randn(n, v, generator=g, dtype=torch.float64)
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = torch.randn(v, d, generator=g, dtype=torch.float64)
    target = torch.randint(0, v, (n,), generator=g)
    ws = widths(world, v)
    start = sum(ws[:rank])
    ce = _vp_ce(rank, world, logits, target, ws, vocab_start=start)
    lin = _vp_linear(rank, world, hidden, weight, target, ws, vocab_start=start)
    x = logits.clone().requires_grad_(True)
    ref = ct.cross_entropy(x, target)
    ref.backward()
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ref_lin = ct.linear_cross_entropy(h, w, target)
    ref_lin.backward()
    stop = start + ws[rank]
    return dict(ce_error=float((ce["value"] - ref).abs()), ce_grad_error=float((ce["grad"] - x.grad[:, start:stop]).abs().max()),
                linear_error=float((lin["value"] - ref_lin).abs()),
                hidden_grad_error=float((lin["grad_hidden"] - h.grad).abs().max()),
                weight_grad_error=float((lin["grad_weight"] - w.grad[start:stop]).abs().max()))


def _slices(rank, world, shift):
    """Explicit vocab_start: rank 1's slice moved by ``shift`` (overlap < 0, gap > 0)."""
    logits, _, _, _, target, _ = problem()
    ws = [V // world] * world
    start = sum(ws[:rank]) + (shift if rank == 1 else 0)
    x = logits[:, :ws[rank]]
    return ct.vocab_parallel_cross_entropy(x, target, vocab_start=start)


def _disagree(rank, world, **per_rank):
    """Rank world-1 passes per_rank's options, the others the defaults."""
    logits, _, _, _, target, _ = problem()
    v_local = V // world
    x = logits[:, rank * v_local:(rank + 1) * v_local]
    return ct.vocab_parallel_cross_entropy(x, target, **(per_rank if rank == world - 1 else {}))


def _batch_differs(rank, world):
    logits, _, _, _, target, _ = problem()
    v_local = V // world
    rows = N - (rank == world - 1)
    return ct.vocab_parallel_cross_entropy(logits[:rows, rank * v_local:(rank + 1) * v_local], target[:rows])


def _target_differs(rank, world):
    logits, _, _, _, target, _ = problem()
    v_local = V // world
    if rank == world - 1:
        target = target.clone()
        target[5] = (target[5] + 1) % V
    return ct.vocab_parallel_cross_entropy(logits[:, rank * v_local:(rank + 1) * v_local], target)


def _bad_chunk_on_last_rank(rank, world):
    _, hidden, weight, _, target, _ = problem()
    v_local = V // world
    return ct.vocab_parallel_linear_cross_entropy(hidden, weight[rank * v_local:(rank + 1) * v_local], target,
                                                  chunk_size=2.5 if rank == world - 1 else 2)


def _float_target_on_rank_0(rank, world):
    logits, _, _, _, target, _ = problem()
    v_local = V // world
    return ct.vocab_parallel_cross_entropy(logits[:, rank * v_local:(rank + 1) * v_local],
                                           target.double() if rank == 0 else target)


def _vocab_start_on_some_ranks(rank, world):
    logits, _, _, _, target, _ = problem()
    v_local = V // world
    return ct.vocab_parallel_cross_entropy(logits[:, rank * v_local:(rank + 1) * v_local], target,
                                           vocab_start=rank * v_local if rank == 0 else None)


def _grad_differs(rank, world):
    """The last rank asks for no gradient (reduction "none": only the others would backward)."""
    _, hidden, weight, _, target, _ = problem()
    v_local = V // world
    w = weight[rank * v_local:(rank + 1) * v_local].clone().requires_grad_(rank != world - 1)
    return ct.vocab_parallel_linear_cross_entropy(hidden, w, target, reduction="none")


def _distill_disagree(rank, world, **per_rank):
    """Rank world-1 passes per_rank's distillation options, the others the defaults."""
    student, teacher, target = distill_problem()
    v_local = V // world
    cols = slice(rank * v_local, (rank + 1) * v_local)
    return ct.vocab_parallel_distillation_loss(student[:, cols], teacher[:, cols], target,
                                               **(per_rank if rank == world - 1 else {}))


def _distill_teacher_shape_on_rank_0(rank, world):
    student, teacher, target = distill_problem()
    v_local = V // world
    cols = slice(rank * v_local, (rank + 1) * v_local + (rank == 0))
    return ct.vocab_parallel_distillation_loss(student[:, rank * v_local:(rank + 1) * v_local],
                                               teacher[:, cols], target)


HARDENING = {
    "uneven_default": _uneven_default,
    "uneven_many_rows": _uneven_many_rows,
    "overlap": lambda r, w: _slices(r, w, -1),
    "gap": lambda r, w: _slices(r, w, 1),
    "ignore_index": lambda r, w: _disagree(r, w, ignore_index=0),
    "reduction": lambda r, w: _disagree(r, w, reduction="sum"),
    "label_smoothing": lambda r, w: _disagree(r, w, label_smoothing=0.1),
    "batch": _batch_differs,
    "target": _target_differs,
    "bad_chunk_size": _bad_chunk_on_last_rank,
    "float_target": _float_target_on_rank_0,
    "vocab_start_some": _vocab_start_on_some_ranks,
    "grad_differs": _grad_differs,
    "distill_beta": lambda r, w: _distill_disagree(r, w, beta=0.3),
    "distill_temperature": lambda r, w: _distill_disagree(r, w, temperature=2.0),
    "distill_teacher_shape": _distill_teacher_shape_on_rank_0,
}


def hardening(rank, world, port, out_file):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=15))
    results = {}
    for name, scenario in HARDENING.items():
        try:
            results[name] = dict(result=scenario(rank, world))
        except Exception as exc:  # recorded: the test checks every rank raised the same
            results[name] = dict(error=f"{type(exc).__name__}: {exc}")
    torch.save(results, out_file)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    entry = {"hardening": hardening, "triton": triton}.get(sys.argv[5] if sys.argv[5:] else "", main)
    entry(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
