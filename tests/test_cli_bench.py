"""`crossent bench --quick` runs and prints its table (no timings are asserted)."""

from __future__ import annotations

import pytest

pytest.importorskip("typer")

from crossent.cli import main  # noqa: E402


def test_bench_quick_prints_the_table(capsys):
    assert main(["bench", "--quick", "--repeat", "1", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "torch/this" in out
    for method in ("crossent kernel (out= gradient)", "numpy softmax - onehot",
                   "floor: read + write (np.copyto)", "floor: one read (ndarray.sum)"):
        assert method in out
    assert "256 x 4096" in out and "8 x 65536" in out


def test_bench_rejects_a_bad_repeat(capsys):
    assert main(["bench", "--quick", "--repeat", "0"]) == 2
    assert "--repeat must be >= 1, got 0" in capsys.readouterr().err
