"""`crossent bench --quick` runs and prints its table (no timings are asserted)."""

from __future__ import annotations

import pytest

pytest.importorskip("typer")

from crossent.cli import main  # noqa: E402

CASES = ["softmax CE, class indices", "softmax CE, label smoothing 0.1",
         "softmax CE, dense targets", "nll", "softmax focal, gamma 2", "sigmoid BCE with logits",
         "sigmoid focal, gamma 2", "BCE of probabilities", "entropy (float64)",
         "KL divergence (float64)", "JS divergence (float64)"]


def test_bench_quick_covers_every_loss_and_measure(capsys):
    assert main(["bench", "--quick", "--repeat", "1", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "x floor" in out and "x crossent" in out
    for case in CASES:
        assert case in out
    assert "forward+backward" in out and "floor: read + write (np.copyto)" in out
    assert "128 x 4096" in out


@pytest.mark.slow
def test_bench_quick_with_torch_lists_the_competitors(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    assert main(["bench", "--quick", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for method in ("torch eager + backward", "scipy.stats.entropy",
                   "floor: read x, t + write (torch.add out=, 2 thr)"):
        assert method in out


@pytest.mark.parametrize("option, value", [("--repeat", "0"), ("--threads", "0")])
def test_bench_rejects_bad_counts(capsys, option, value):
    assert main(["bench", "--quick", option, value]) == 2
    assert f"{option} must be >= 1, got 0" in capsys.readouterr().err


def test_bench_only_keeps_the_named_cases(capsys):
    assert main(["bench", "--quick", "--repeat", "1", "--no-torch", "--only", "entropy"]) == 0
    out = capsys.readouterr().out
    assert "entropy (float64)" in out
    assert "softmax CE" not in out and "KL divergence" not in out


def test_bench_only_matching_nothing_is_an_error(capsys):
    assert main(["bench", "--quick", "--repeat", "1", "--no-torch", "--only", "no such case"]) == 2
    assert "--only 'no such case' matches no case" in capsys.readouterr().err
