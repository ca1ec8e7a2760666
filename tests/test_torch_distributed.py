"""Vocabulary-parallel losses on gloo with 2 and 3 ranks (localhost only) against one process.

Each rank is a separate Python process (tests/_torch_dist_worker.py) joined through
tcp://127.0.0.1 on a free port, with a timeout so a hang fails the test instead of stalling
the suite. The loss and every gradient must equal crossent.torch's single-process result on
the full vocabulary (itself tested against torch.nn.functional), and the bytes that cross the
group must not grow with the vocabulary.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is unavailable", allow_module_level=True)

import crossent.torch as ct  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _torch_dist_worker as worker  # noqa: E402

WORKER = Path(worker.__file__)
TIMEOUT = 180


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world, tmp_path, *mode):
    port = _free_port()
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",
               OMP_NUM_THREADS="1")
    outs = [tmp_path / f"rank{r}.pt" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), str(port), str(outs[r]), *mode],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [torch.load(o) for o in outs]


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def ranks(request, tmp_path_factory):
    world = request.param
    return world, _launch(world, tmp_path_factory.mktemp(f"world{world}"))


def _single(opts, upstream):
    logits, hidden, weight, bias, target, _ = worker.problem()
    x = logits.clone().requires_grad_(True)
    out = ct.cross_entropy(x, target, **opts)
    (out * upstream).sum().backward() if out.dim() else out.backward()
    h, w, b = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))
    lin = ct.linear_cross_entropy(h, w, target, b, **opts)
    (lin * upstream).sum().backward() if lin.dim() else lin.backward()
    return dict(value=out.detach(), grad=x.grad, linear_value=lin.detach(), grad_hidden=h.grad,
                grad_weight=w.grad, grad_bias=b.grad)


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", range(len(worker.CASES)))
def test_loss_and_gradients_equal_one_process(ranks, case):
    world, results = ranks
    opts = worker.CASES[case]
    expected = _single(opts, worker.problem()[-1])
    for rank, res in enumerate(results):
        got = res["cases"][case]
        start, stop = worker.split(world)[rank]
        _close(got["value"], expected["value"])
        _close(got["grad"], expected["grad"][:, start:stop])
        _close(got["linear_value"], expected["linear_value"])
        _close(got["grad_hidden"], expected["grad_hidden"])  # summed over the ranks
        _close(got["grad_weight"], expected["grad_weight"][start:stop])
        _close(got["grad_bias"], expected["grad_bias"][start:stop])


@pytest.fixture(scope="module")
def triton_ranks(tmp_path_factory):
    pytest.importorskip("triton")  # TRITON_INTERPRET=1 is set by conftest.py without a GPU
    return _launch(2, tmp_path_factory.mktemp("triton"), "triton")


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(worker.CASES)))
def test_triton_shards_equal_one_process(triton_ranks, case):
    """Every rank on the Triton kernels (statistics kernel, all-reduce, gradient kernel): the
    loss and gradients of one process on the CPU kernels."""
    opts = worker.CASES[case]
    expected = _single(opts, worker.problem()[-1])
    for rank, res in enumerate(triton_ranks):
        got = res["cases"][case]
        start, stop = worker.split(2)[rank]
        _close(got["value"], expected["value"])
        _close(got["grad"], expected["grad"][:, start:stop])
        _close(got["linear_value"], expected["linear_value"])
        _close(got["grad_hidden"], expected["grad_hidden"])
        _close(got["grad_weight"], expected["grad_weight"][start:stop])
        _close(got["grad_bias"], expected["grad_bias"][start:stop])


@pytest.mark.parametrize("case", range(len(worker.DISTILL_CASES)))
def test_distillation_equals_one_process(ranks, case):
    """vocab_parallel_distillation_loss on every rank: distillation_loss of the whole logits
    (itself tested against mpmath and TRL's formula), masked classes, a tied student maximum
    across ranks, the reverse KL's inf."""
    world, results = ranks
    beta, temperature, hard_weight, reduction = worker.DISTILL_CASES[case]
    student, teacher, target = worker.distill_problem()
    x = student.clone().requires_grad_(True)
    expected = ct.distillation_loss(x, teacher, target, beta=beta, temperature=temperature,
                                    hard_weight=hard_weight, reduction=reduction)
    (expected.sum() if expected.dim() else expected).backward()
    if beta == 1.0:
        assert expected.item() == float("inf")  # a class only the teacher masks
    for rank, res in enumerate(results):
        got = res["distill"][case]
        start, stop = worker.split(world)[rank]
        torch.testing.assert_close(got["value"], expected.detach(), rtol=1e-12, atol=1e-14, equal_nan=True)
        torch.testing.assert_close(got["grad"], x.grad[:, start:stop], rtol=1e-12, atol=1e-14, equal_nan=True)


def test_distillation_bytes_on_the_wire_do_not_grow_with_the_vocabulary(ranks):
    _, results = ranks
    for res in results:
        small, large = res["distill_bytes"][64], res["distill_bytes"][4096]
        assert small == large
        # MAX of both maxima + SUM of 10 statistics + SUM of the JSD's 2 sums, float64, 64 rows
        assert small == 64 * 8 * (2 + 10 + 2)


def test_default_layout_float32(ranks):
    world, results = ranks
    ref = results[0]["default_layout"]
    x = ref["logits"].clone().requires_grad_(True)
    loss = ct.cross_entropy(x, ref["target"], label_smoothing=0.1)
    loss.backward()
    v_local = x.shape[1] // world
    for rank, res in enumerate(results):
        got = res["default_layout"]
        torch.testing.assert_close(got["value"], loss.detach(), rtol=2e-6, atol=1e-7)
        torch.testing.assert_close(got["grad"], x.grad[:, rank * v_local:(rank + 1) * v_local],
                                   rtol=2e-5, atol=1e-7)


def test_bytes_on_the_wire_do_not_grow_with_the_vocabulary(ranks):
    world, results = ranks
    for res in results:
        small, large = res["bytes"][64], res["bytes"][4096]
        assert small == large  # 64x more classes, not one byte more
        # MAX of the row maximum (float32) + SUM of 7 float64 statistics, 64 rows
        assert small == 64 * 4 + 7 * 64 * 8


def test_target_outside_every_slice_raises_on_every_rank(ranks):
    _, results = ranks
    for res in results:
        assert "target[0] = 15 is outside [0, 12)" in res["error"]  # V known from every rank's width


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo group of this process alone (a file store: no network)."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                                         world_size=1)
    yield
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_on_one_rank(one_rank_group, reduction):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 6, dtype=torch.float64, generator=g, requires_grad=True)
    h = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([0, 5, -100, 2, 3])
    opts = dict(reduction=reduction, label_smoothing=0.1, z_loss=0.01, softcap=4.0)
    assert torch.autograd.gradcheck(lambda a: ct.vocab_parallel_cross_entropy(a, y, **opts), (x,),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradcheck(
        lambda a, c, d: ct.vocab_parallel_linear_cross_entropy(a, c, y, d, chunk_size=2, **opts),
        (h, w, b), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.fixture(scope="module", params=[2, 3], ids=["2-ranks", "3-ranks"])
def hardening(request, tmp_path_factory):
    world = request.param
    return world, _launch(world, tmp_path_factory.mktemp(f"hardening{world}"), "hardening")


def test_uneven_slices_without_vocab_start(hardening):
    world, results = hardening
    logits, hidden, weight, _, target, _ = worker.problem()
    x = logits.clone().requires_grad_(True)
    expected = ct.cross_entropy(x, target, label_smoothing=0.1)
    expected.backward()
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    expected_lin = ct.linear_cross_entropy(h, w, target, reduction="none")
    expected_lin.sum().backward()
    assert len(set(results[0]["uneven_default"]["result"]["widths"])) == world  # all widths differ
    for res in results:
        got = res["uneven_default"]["result"]
        ce, lin = got["ce"], got["linear"]
        cols = slice(ce["start"], ce["start"] + ce["grad"].shape[1])
        _close(ce["value"], expected.detach())
        _close(ce["grad"], x.grad[:, cols])
        _close(lin["value"], expected_lin.detach())
        _close(lin["grad_hidden"], h.grad)
        _close(lin["grad_weight"], w.grad[cols])


def test_uneven_slices_with_thousands_of_rows_chunk_alike(hardening):
    _, results = hardening
    for res in results:
        errors = res["uneven_many_rows"]["result"]
        assert max(errors.values()) < 1e-10, errors


@pytest.mark.parametrize("scenario,message", [
    ("overlap", "ValueError: the vocabulary slices must tile .* overlaps"),
    ("gap", "ValueError: the vocabulary slices must tile .* leaves a gap"),
    ("ignore_index", "ValueError: vocabulary-parallel ranks disagree on ignore_index"),
    ("reduction", "ValueError: vocabulary-parallel ranks disagree on reduction"),
    ("label_smoothing", "ValueError: vocabulary-parallel ranks disagree on label_smoothing"),
    ("batch", r"ValueError: vocabulary-parallel ranks disagree on the batch shape"),
    ("target", r"ValueError: vocabulary-parallel ranks disagree on target \(checksum\)"),
    ("bad_chunk_size", "TypeError: rank [12] of the vocabulary-parallel group: chunk_size must be a positive integer"),
    ("float_target", "TypeError: rank 0 of the vocabulary-parallel group: target must hold integer"),
    ("vocab_start_some", r"ValueError: vocab_start was given on ranks \[0\] but not on ranks"),
    ("grad_differs", "ValueError: vocabulary-parallel ranks disagree on which inputs need gradients"),
    ("distill_beta", "ValueError: vocabulary-parallel ranks disagree on beta"),
    ("distill_temperature", "ValueError: vocabulary-parallel ranks disagree on temperature"),
    ("distill_teacher_shape", r"ValueError: rank 0 of the vocabulary-parallel group: local_teacher_logits "
                              r"has shape \(9, \d+\), but local_student_logits has shape \(9, \d+\)"),
])
def test_disagreeing_ranks_raise_the_same_error_everywhere(hardening, scenario, message):
    _, results = hardening
    errors = [res[scenario].get("error") for res in results]
    assert errors[0] is not None and all(e == errors[0] for e in errors), errors
    assert re.match(message, errors[0]), errors[0]


def test_needs_an_initialised_group():
    assert not torch.distributed.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        ct.vocab_parallel_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="init_process_group"):
        ct.vocab_parallel_distillation_loss(torch.randn(2, 3), torch.randn(2, 3))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compile_fullgraph_on_one_rank(one_rank_group, reduction):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 6, generator=g)
    h, w = torch.randn(5, 3, generator=g), torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 5, -100, 2, 3])

    def loss(a, c, d):
        return (ct.vocab_parallel_cross_entropy(a, y, reduction=reduction, label_smoothing=0.1).sum()
                + ct.vocab_parallel_linear_cross_entropy(c, d, y, reduction=reduction, chunk_size=2).sum())
    torch._dynamo.reset()
    explained = torch._dynamo.explain(loss)(x, h, w)
    assert explained.graph_break_count == 0, explained.break_reasons
    results = []
    for fn in (loss, torch.compile(loss, fullgraph=True, backend="aot_eager")):
        leaves = [t.clone().requires_grad_(True) for t in (x, h, w)]
        value = fn(*leaves)
        value.backward()
        results.append([value.detach()] + [t.grad for t in leaves])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_distillation_gradcheck_compile_and_export_on_one_rank(one_rank_group, reduction):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 6, dtype=torch.float64, generator=g, requires_grad=True)  # a batch shape
    t = torch.randn(2, 3, 6, dtype=torch.float64, generator=g)
    y = torch.tensor([[0, 5, -100], [2, 3, 1]])
    opts = dict(beta=0.3, temperature=1.5, hard_weight=0.25, reduction=reduction)
    assert torch.autograd.gradcheck(lambda a: ct.vocab_parallel_distillation_loss(a, t, y, **opts), (x,),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)

    def loss(a):
        return ct.vocab_parallel_distillation_loss(a, t, y, **opts).sum()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(loss)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    results = []
    for fn in (loss, torch.compile(loss, fullgraph=True, backend="aot_eager")):
        leaf = x.detach().clone().requires_grad_(True)
        value = fn(leaf)
        value.backward()
        results.append((value.detach(), leaf.grad))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)

    class Head(torch.nn.Module):
        def forward(self, a, b):
            return ct.vocab_parallel_distillation_loss(a, b, y, **opts)
    exported = torch.export.export(Head(), (x.detach(), t))
    torch.testing.assert_close(exported.module()(x.detach(), t), Head()(x.detach(), t))


def test_distillation_refuses_second_derivatives(one_rank_group):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    value = ct.vocab_parallel_distillation_loss(x, torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(value, x, create_graph=True)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.bfloat16, 1e-2)])
def test_distillation_low_precision_on_one_rank(one_rank_group, dtype, tol):
    """float32 and bfloat16 logits: the dtype kept, values and gradients those of
    distillation_loss (which computes them in float32)."""
    g = torch.Generator().manual_seed(8)
    s = (torch.randn(6, 50, generator=g) * 3).to(dtype)
    t = (torch.randn(6, 50, generator=g) * 3).to(dtype)
    y = torch.randint(0, 50, (6,), generator=g)
    got, want = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    v1 = ct.vocab_parallel_distillation_loss(got, t, y, beta=0.3, hard_weight=0.2, temperature=2.0)
    v2 = ct.distillation_loss(want, t, y, beta=0.3, hard_weight=0.2, temperature=2.0)
    v1.backward()
    v2.backward()
    assert v1.dtype == dtype and got.grad.dtype == dtype
    torch.testing.assert_close(v1.float(), v2.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(got.grad.float(), want.grad.float(), rtol=tol, atol=tol)
