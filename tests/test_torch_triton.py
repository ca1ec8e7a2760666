"""The Triton kernels (the GPU path of crossent.torch) against the CPU kernels, on CPU tensors.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set here
before the kernels are first imported): the same kernel source, executed with NumPy. Every
option of the losses is compared, values and gradients, through the public functions (the
CPU kernels of :mod:`crossent._dispatch` are the oracle, themselves tested against the
reference and PyTorch) and kernel by kernel against the readable torch formulas of
:mod:`crossent.torch._engine`.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")  # TRITON_INTERPRET=1 is set by conftest.py when there is no GPU

import crossent.torch as ct  # noqa: E402
from crossent.torch import _engine  # noqa: E402
from crossent._options import BinaryOptions, SoftmaxCEOptions  # noqa: E402
from crossent.torch._autograd import tensor_options  # noqa: E402

# The interpreter evaluates masked lanes too (log 0, inf - inf): NumPy warns, results are right.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

TOL = {torch.float64: (1e-12, 1e-13), torch.float32: (2e-5, 2e-6), torch.bfloat16: (2e-2, 4e-3)}


@pytest.fixture(scope="module")
def kernels():
    """The kernels' module; without a GPU, its kernels must be the interpreter's."""
    from triton.runtime.interpreter import InterpretedFunction

    from crossent.torch import _triton

    if not torch.cuda.is_available():
        assert isinstance(_triton._sigmoid_bce_kernel, InterpretedFunction), \
            "the kernels were defined before TRITON_INTERPRET=1 was set (see conftest.py)"
    return _triton


def _both(fn, leaves):
    """fn's value and its leaves' gradients on the CPU kernels, then on the Triton kernels."""
    results = []
    for forced in (False, True):
        copies = [leaf.detach().clone().requires_grad_(leaf.requires_grad) for leaf in leaves]
        with _engine.force_triton_path(forced):
            out = fn(*copies)
        up = torch.linspace(-1.0, 2.0, out.numel(), dtype=torch.float64).reshape(out.shape)
        (out.double() * up).sum().backward()
        results.append((out.detach(), [c.grad for c in copies if c.requires_grad]))
    return results


def _assert_same(results, dtype):
    (v0, g0), (v1, g1) = results
    rtol, atol = TOL[dtype]
    assert v1.dtype == v0.dtype and v1.shape == v0.shape
    torch.testing.assert_close(v1.double(), v0.double(), rtol=rtol, atol=atol, equal_nan=True)
    for a, b in zip(g1, g0):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)


def _logits(rng, n, c, dtype, masked=True):
    x = torch.tensor(rng.normal(size=(n, c)) * 3)
    if masked:
        x[1, 2: c // 2] = -math.inf  # masked classes
    return x.to(dtype).requires_grad_(True)


# (label_smoothing, z_loss, softcap): each option alone and all together
OPTIONS = [(0.0, 0.0, None), (0.2, 0.0, None), (0.0, 1e-3, None), (0.0, 0.0, 4.0), (0.2, 1e-3, 4.0)]
CE_GRID = [(kind, weighted, *options, reduction, dtype)
           for kind, weighted, options, reduction, dtype in itertools.product(
               ["index", "dense"], [False, True], OPTIONS, ["mean", "none"],
               [torch.float64, torch.float32, torch.bfloat16])
           if reduction == "mean" or dtype == torch.float32]


@pytest.mark.parametrize("kind,weighted,eps,z_loss,softcap,reduction,dtype", CE_GRID)
def test_cross_entropy_every_option(kernels, kind, weighted, eps, z_loss, softcap, reduction, dtype):
    rng = np.random.default_rng(CE_GRID.index((kind, weighted, eps, z_loss, softcap, reduction, dtype)))
    n, c = 6, 37
    x = _logits(rng, n, c, dtype)
    weight = torch.tensor(rng.uniform(0.2, 2.0, size=c)) if weighted else None
    if kind == "index":
        target = torch.tensor(rng.integers(0, c, size=n))
        target[1] = 0  # unmasked target on the masked row
        target[3] = -100  # ignored row
        leaves = [x]
    else:
        t = torch.tensor(rng.dirichlet(np.ones(c), size=n))
        t[1, 2: c // 2] = 0.0  # no mass on the masked classes
        target = t.to(dtype).requires_grad_(True)
        leaves = [x, target]

    def fn(x, *rest):
        tgt = rest[0] if rest else target
        return ct.cross_entropy(x, tgt, weight=weight, reduction=reduction, label_smoothing=eps,
                                z_loss=z_loss, softcap=softcap)

    _assert_same(_both(fn, leaves), dtype)


def test_cross_entropy_all_ignored_and_fully_masked_rows(kernels):
    x = torch.randn(4, 9, dtype=torch.float64)
    x[2] = -math.inf
    x.requires_grad_(True)
    ignored = torch.full((4,), -100)
    (v0, g0), (v1, g1) = _both(lambda x: ct.cross_entropy(x, ignored), [x])
    assert v1.item() == v0.item() == 0.0 and torch.equal(g1[0], torch.zeros_like(x))
    target = torch.tensor([1, 2, 3, 4])
    with _engine.force_triton_path():
        value = ct.cross_entropy(x.detach(), target, reduction="none")
    assert value[2].item() == math.inf  # every class masked: the target has no probability
    torch.testing.assert_close(value[[0, 1, 3]], torch.nn.functional.cross_entropy(
        x.detach()[[0, 1, 3]], target[[0, 1, 3]], reduction="none"), rtol=1e-12, atol=0)


@pytest.mark.parametrize("weighted,pos_weighted,eps,reduction,dtype", list(itertools.product(
    [False, True], [False, True], [0.0, 0.1], ["mean", "none"], [torch.float64, torch.bfloat16])))
def test_binary_cross_entropy_with_logits(kernels, weighted, pos_weighted, eps, reduction, dtype):
    rng = np.random.default_rng(int(weighted) + 2 * int(pos_weighted) + 4 * int(eps > 0))
    x = torch.tensor(rng.normal(size=(5, 7)) * 4).to(dtype).requires_grad_(True)
    t = torch.tensor(rng.uniform(size=(5, 7))).to(dtype).requires_grad_(True)  # its gradient too
    weight = torch.tensor(rng.uniform(0.5, 2.0, size=7)).to(dtype) if weighted else None
    pos_weight = torch.tensor(rng.uniform(0.5, 3.0, size=7)).to(dtype) if pos_weighted else None
    fn = lambda x, t: ct.binary_cross_entropy_with_logits(  # noqa: E731
        x, t, weight=weight, pos_weight=pos_weight, reduction=reduction, label_smoothing=eps) \
        if eps else ct.binary_cross_entropy_with_logits(x, t, weight=weight, pos_weight=pos_weight,
                                                        reduction=reduction)
    _assert_same(_both(fn, [x, t]), dtype)


@pytest.mark.parametrize("alpha,gamma,reduction,dtype", list(itertools.product(
    [None, 0.25], [0.0, 0.5, 2.0], ["mean", "none"], [torch.float64, torch.float32])))
def test_sigmoid_focal_loss(kernels, alpha, gamma, reduction, dtype):
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.normal(size=(4, 6)) * 4).to(dtype).requires_grad_(True)
    t = torch.tensor(rng.integers(0, 2, size=(4, 6))).to(dtype)
    kwargs = {"gamma": gamma, "reduction": reduction}
    if alpha is not None:
        kwargs["alpha"] = alpha
    else:
        kwargs["alpha"] = -1  # torchvision's "no balancing"
    _assert_same(_both(lambda x: ct.sigmoid_focal_loss(x, t, **kwargs), [x]), dtype)


@pytest.mark.parametrize("per_class,gamma,reduction,dtype", list(itertools.product(
    [False, True], [0.0, 2.0], ["mean", "none"], [torch.float64, torch.float32])))
def test_softmax_focal_loss(kernels, per_class, gamma, reduction, dtype):
    rng = np.random.default_rng(11)
    x = _logits(rng, 6, 13, dtype, masked=False)
    target = torch.tensor(rng.integers(0, 13, size=6))
    target[2] = -100
    alpha = torch.tensor(rng.uniform(0.1, 1.0, size=13)) if per_class else 0.5
    fn = lambda x: ct.softmax_focal_loss(x, target, alpha=alpha, gamma=gamma, reduction=reduction)  # noqa: E731
    _assert_same(_both(fn, [x]), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_linear_cross_entropy_chunks_through_the_row_kernel(kernels, dtype):
    rng = np.random.default_rng(3)
    h = torch.tensor(rng.normal(size=(2, 11, 8))).to(dtype).requires_grad_(True)
    w = torch.tensor(rng.normal(size=(50, 8)) * 0.5).to(dtype).requires_grad_(True)
    b = torch.tensor(rng.normal(size=50)).to(dtype).requires_grad_(True)
    target = torch.tensor(rng.integers(0, 50, size=(2, 11)))
    target[0, :3] = -100
    fn = lambda h, w, b: ct.linear_cross_entropy(h, w, target, bias=b, label_smoothing=0.1,  # noqa: E731
                                                 z_loss=1e-3, softcap=5.0, chunk_size=4)
    _assert_same(_both(fn, [h, w, b]), dtype)


# ----------------------------------------------------------------------------- kernel level
def test_row_kernels_against_the_torch_formulas_at_many_blocks(kernels):
    """Rows longer than one block (online max/sum across blocks), in place, float32 and float64."""
    rng = np.random.default_rng(5)
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor(rng.normal(size=(3, 9000)) * 5).to(dtype)
        x[0, :5000] = -math.inf  # the first blocks wholly masked: the running max starts at -inf
        x[2, 8000] = 40.0  # the maximum in the last block
        y = torch.tensor([6000, 10, 8000])
        ones = torch.ones(3, dtype=torch.bool)
        opts = SoftmaxCEOptions.checked(label_smoothing=0.1, z_loss=1e-4, softcap=7.0)
        want = _engine.softmax_ce_index_rows(x.clone(), y, ones, ones, opts, 0.5, True)
        buf = x.clone()
        got = kernels.softmax_ce_index_rows(buf, y, ones, ones, opts, 0.5, True, out=buf)
        assert got[1].data_ptr() == buf.data_ptr()  # the gradient replaced the logits
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol)
        torch.testing.assert_close(buf, want[1], rtol=rtol, atol=atol)


@pytest.mark.parametrize("eps,z_loss,softcap,weighted", [(0.0, 0.0, None, False), (0.1, 1e-4, 7.0, True)])
def test_shard_path_of_one_shard_equals_the_fused_kernel(kernels, eps, z_loss, softcap, weighted):
    """The vocabulary-parallel form (statistics kernel, combine, O(n) epilogue, gradient kernel)
    with a group of one (collectives that return their input) against the one-kernel form and
    the eager engine, on rows longer than a block with masked classes and an ignored row."""
    rng = np.random.default_rng(11)
    x = torch.tensor(rng.normal(size=(4, 5000)) * 4)
    x[0, :4500] = -math.inf
    x[3, :] = -math.inf  # every class masked
    y = torch.tensor([4700, 10, 2000, 3])
    counted = torch.tensor([True, True, False, True])
    w = rng.uniform(0.5, 2.0, size=5000) if weighted else None
    opts = tensor_options(SoftmaxCEOptions.checked(label_smoothing=eps, z_loss=z_loss, softcap=softcap,
                                                   weight=w, num_classes=5000), x.device)
    args = (y, counted, counted, opts, 0.25, True)
    fused = kernels.softmax_ce_index_rows(x.clone(), *args)
    sharded = kernels.softmax_ce_index_rows(x.clone(), *args, all_max=lambda t: t, all_sum=lambda t: t)
    eager = _engine.softmax_ce_index_rows(x.clone(), *args)  # CPU tensors, not forced: eager torch
    torch.testing.assert_close(fused[0], eager[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused[1], eager[1], rtol=1e-12, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(sharded[0], fused[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(sharded[1], fused[1], rtol=1e-13, atol=1e-15, equal_nan=True)
    assert torch.isinf(fused[0][3])  # every class masked: p_y = 0
    torch.testing.assert_close(sharded[2], fused[2])


def test_sigmoid_focal_gradient_is_zero_at_saturated_correct_logits(kernels):
    """At x = +-inf with the matching hard target the loss is 0 and the gradient's limit is 0."""
    x = torch.tensor([math.inf, -math.inf, 30.0, -30.0], dtype=torch.float64)
    t = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    loss, grad = kernels.sigmoid_focal(x, t, BinaryOptions(alpha=0.25, gamma=2.0), 1.0, True)
    assert loss.tolist()[:2] == [0.0, 0.0] and grad.tolist()[:2] == [0.0, 0.0]
    assert all(abs(g) < 1e-25 for g in grad.tolist()[2:])


def test_element_kernel_math_edges(kernels):
    """log1p, expm1, tanh and log_sigmoid built from exp/log keep full relative accuracy."""
    x = torch.tensor([0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 20.0, -20.0, 700.0, -700.0,
                      math.inf, -math.inf], dtype=torch.float64)
    t = torch.zeros_like(x)
    loss, grad = kernels.sigmoid_binary_cross_entropy(x, t, BinaryOptions(), 1.0, True)
    # l(x, t=0) = -log sigma(-x) = softplus(x); dl/dx = sigma(x)
    torch.testing.assert_close(loss, torch.nn.functional.softplus(x, threshold=1000), rtol=1e-15, atol=0)
    torch.testing.assert_close(grad, torch.sigmoid(x), rtol=1e-15, atol=0)
    rows = torch.tensor([[1e-9, 0.0], [-3.0, 3.0]], dtype=torch.float64)
    cap = 2.0
    loss, _, _ = kernels.softmax_ce_index_rows(rows, torch.tensor([0, 0]), torch.ones(2, dtype=torch.bool),
                                               torch.ones(2, dtype=torch.bool),
                                               SoftmaxCEOptions(softcap=cap), 1.0, False)
    z = cap * torch.tanh(rows / cap)
    torch.testing.assert_close(loss, -torch.log_softmax(z, 1)[:, 0], rtol=1e-15, atol=0)


def test_gpu_benchmark_script_runs_its_smoke_shapes(kernels, capsys):
    """benchmarks/bench_gpu.py on tiny CPU shapes through the interpreter: the tables print."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "fused linear CE, smoke" in out and "crossent" in out and "row losses" in out
    assert "failed" not in out


_COMPILE_FOR_HOPPER = r"""
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from crossent.torch import _triton as T

def compile_(fn, signature, constants):
    names = list(signature)
    for name in constants:
        signature[name] = "constexpr"
    src = ASTSource(fn=fn, signature=signature,
                    constexprs={(list(signature).index(k),): v for k, v in constants.items()})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32))
    assert "ptx" in kernel.asm, fn
    print("compiled", fn.__name__ if hasattr(fn, "__name__") else fn)

every = dict(CD=tl.float32, NEED_GRAD=True, BLOCK=4096)
compile_(T._softmax_ce_index_kernel, {"x_ptr": "*bf16", "x_stride": "i64", "out_ptr": "*fp32",
         "out_stride": "i64", "y_ptr": "*i64", "owned_ptr": "*i8", "counted_ptr": "*i8",
         "w_ptr": "*fp32", "loss_ptr": "*fp64", "n_cols": "i32", "params_ptr": "*fp64"},
         dict(every, SOFTCAP=True, HAS_WEIGHT=True, SMOOTH=True))
compile_(T._softmax_ce_shard_stats_kernel, {"x_ptr": "*bf16", "x_stride": "i64", "w_ptr": "*fp32",
         "stats_ptr": "*fp64", "n_rows": "i32", "n_cols": "i32", "params_ptr": "*fp64"},
         dict(CD=tl.float32, BLOCK=4096, SOFTCAP=True, HAS_WEIGHT=True, SMOOTH=True))
compile_(T._softmax_ce_shard_grad_kernel, {"x_ptr": "*bf16", "x_stride": "i64", "out_ptr": "*bf16",
         "out_stride": "i64", "y_ptr": "*i64", "owned_ptr": "*i8", "counted_ptr": "*i8",
         "w_ptr": "*fp32", "coefs_ptr": "*fp64", "n_rows": "i32", "n_cols": "i32",
         "params_ptr": "*fp64"}, dict(CD=tl.float32, BLOCK=4096, SOFTCAP=True, HAS_WEIGHT=True,
                                      SMOOTH=True))
compile_(T._softmax_ce_dense_kernel, {"x_ptr": "*fp16", "x_stride": "i64", "t_ptr": "*fp16",
         "t_stride": "i64", "out_ptr": "*fp32", "out_stride": "i64", "w_ptr": "*fp32",
         "loss_ptr": "*fp64", "n_cols": "i32", "params_ptr": "*fp64"},
         dict(every, SOFTCAP=True, HAS_WEIGHT=True))
compile_(T._softmax_focal_kernel, {"x_ptr": "*fp32", "x_stride": "i64", "out_ptr": "*fp32",
         "out_stride": "i64", "y_ptr": "*i64", "counted_ptr": "*i8", "alpha_ptr": "*fp64",
         "loss_ptr": "*fp64", "n_cols": "i32", "params_ptr": "*fp64"}, dict(every, HAS_ALPHA=True))
compile_(T._sigmoid_bce_kernel, {"x_ptr": "*fp64", "t_ptr": "*fp64", "w_ptr": "*fp64",
         "pw_ptr": "*fp64", "loss_ptr": "*fp64", "grad_ptr": "*fp64", "n": "i64",
         "params_ptr": "*fp64"}, dict(CD=tl.float64, HAS_WEIGHT=True, HAS_POS_WEIGHT=True,
                                      NEED_GRAD=True, BLOCK=1024))
compile_(T._dense_target_grad_kernel, {"x_ptr": "*bf16", "x_stride": "i64", "w_ptr": "*fp32",
         "out_ptr": "*fp32", "out_stride": "i64", "n_cols": "i32", "params_ptr": "*fp64"},
         dict(CD=tl.float32, BLOCK=4096, SOFTCAP=True, HAS_WEIGHT=True))
compile_(T._binary_target_grad_kernel, {"x_ptr": "*fp16", "w_ptr": "*fp32", "pw_ptr": "*fp32",
         "out_ptr": "*fp32", "n": "i64", "params_ptr": "*fp64"},
         dict(CD=tl.float32, HAS_WEIGHT=True, HAS_POS_WEIGHT=True, BLOCK=1024))
compile_(T._sigmoid_focal_kernel, {"x_ptr": "*bf16", "t_ptr": "*bf16", "loss_ptr": "*fp32",
         "grad_ptr": "*fp32", "n": "i64", "params_ptr": "*fp64"},
         dict(CD=tl.float32, HAS_ALPHA=True, NEED_GRAD=True, BLOCK=1024))
for kind in (0, 2):
    compile_(T._softmax_divergence_kernel, {"x_ptr": "*bf16", "x_stride": "i64", "z_ptr": "*bf16",
             "z_stride": "i64", "out_ptr": "*bf16", "out_stride": "i64", "y_ptr": "*i64",
             "counted_ptr": "*i8", "loss_ptr": "*fp64", "n_cols": "i32", "params_ptr": "*fp64"},
             dict(every, KIND=kind, HARD=True))
"""


@pytest.mark.slow
def test_every_kernel_compiles_for_a_hopper_gpu_without_one():
    """The interpreter does not type-check like the compiler: each kernel, every option on, is
    compiled ahead of time to PTX for sm_90 (Triton's own compiler; no GPU or driver needed)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE_FOR_HOPPER], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("compiled") == 11


# ----------------------------------------------------------------------------- distillation
DISTILL_GRID = list(itertools.product([0.0, 0.1, 0.5, 1.0], [0.5, 2.0], [0.0, 0.3],
                                      [torch.float64, torch.float32]))


@pytest.mark.parametrize("beta,temperature,hard_weight,dtype", DISTILL_GRID)
def test_distillation_loss_every_option(kernels, beta, temperature, hard_weight, dtype):
    rng = np.random.default_rng(DISTILL_GRID.index((beta, temperature, hard_weight, dtype)))
    student = _logits(rng, 6, 41, dtype)
    teacher = torch.tensor(rng.normal(size=(6, 41)) * 2).to(dtype)
    teacher[2, 30:] = -math.inf  # classes the teacher masks
    target = torch.tensor(rng.integers(0, 41, size=6))
    target[1], target[4] = 0, -100
    fn = lambda x: ct.distillation_loss(x, teacher, target, beta=beta,  # noqa: E731
                                        temperature=temperature, hard_weight=hard_weight)
    _assert_same(_both(fn, [student]), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_distillation_of_large_close_logits_at_a_low_temperature(kernels, beta, dtype):
    """Logits near 1e4 at T = 0.1: the kernel keeps its running maximum in the logits' units
    and subtracts it before scaling by 1/T, as the CPU kernel does (x / T rounds at the size of
    1e5: in float32 by 0.008, a tenth of these logits' spread)."""
    rng = np.random.default_rng(11)
    student = torch.tensor(1e4 + rng.normal(size=(5, 37)) * 0.1).to(dtype).requires_grad_(True)
    teacher = torch.tensor(1e4 + rng.normal(size=(5, 37)) * 0.1).to(dtype)
    fn = lambda x: ct.distillation_loss(x, teacher, beta=beta, temperature=0.1)  # noqa: E731
    _assert_same(_both(fn, [student]), dtype)


def test_linear_distillation_loss_through_the_row_kernel(kernels):
    rng = np.random.default_rng(9)
    hs = torch.tensor(rng.normal(size=(13, 8))).requires_grad_(True)
    ws = torch.tensor(rng.normal(size=(40, 8)) * 0.5).requires_grad_(True)
    ht = torch.tensor(rng.normal(size=(13, 12)))
    wt = torch.tensor(rng.normal(size=(40, 12)) * 0.5)
    target = torch.tensor(rng.integers(0, 40, size=13))
    fn = lambda hs, ws: ct.linear_distillation_loss(hs, ws, ht, wt, target, beta=0.3,  # noqa: E731
                                                    temperature=2.0, hard_weight=0.25, chunk_size=5)
    _assert_same(_both(fn, [hs, ws]), torch.float64)
