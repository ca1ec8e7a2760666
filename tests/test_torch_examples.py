"""The examples run: a tiny LM head trained with linear_cross_entropy, on one process and
with its vocabulary split over two gloo processes (localhost), and they print the same losses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _losses(script):
    out = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                         timeout=300, cwd=EXAMPLES)
    assert out.returncode == 0, out.stderr
    return out.stdout, [float(v) for v in re.findall(r"step +\d+  loss (\d+\.\d+)", out.stdout)]


@pytest.fixture(scope="module")
def single():
    return _losses("lm_head.py")


def test_lm_head_trains_and_matches_the_naive_loss(single):
    stdout, losses = single
    assert len(losses) == 5 and losses[-1] < losses[0] - 2.0  # it learns the successor table
    fused, naive = map(float, re.search(r"fused (\S+)  naive (\S+)", stdout).groups())
    assert abs(fused - naive) <= 1e-5 * naive


def test_vocab_parallel_lm_head_follows_the_one_process_run(single):
    _, parallel = _losses("lm_head_vocab_parallel.py")
    assert len(parallel) == 5
    assert parallel == pytest.approx(single[1], abs=2e-3)
