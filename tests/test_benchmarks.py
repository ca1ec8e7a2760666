"""The benchmark scripts run end to end on their small shapes (their figures are not asserted:
speed is claimed from benchmarks, never from tests), so a change of an internal signature cannot
leave one broken unnoticed. The GPU script's smoke run is in test_torch_triton.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow


def _run(script, *args):
    run = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run.stdout


def test_distillation_benchmark_and_its_breakdown_run():
    pytest.importorskip("torch")
    out = _run("bench_distill.py", "--quick", "--repeat", "1")
    assert re.search(r"time: crossent / four matmuls = \d+\.\d+", out)
    assert re.search(r"extra memory: crossent = \d+\.\d+ of one logits array", out)
    out = _run("bench_distill.py", "--quick", "--breakdown", "--repeat", "1")
    for part in ("chunk: student logits", "chunk: divergence kernel", "chunk: grad_W", "full: grad_h"):
        assert part in out
    assert re.search(r"fused loop / four full products = \d+\.\d+", out)


def test_scoring_benchmark_runs_and_its_contenders_agree():
    """bench_score.py on a small file: every contender's mean cross-entropy is checked against
    crossent's inside the script (it exits non-zero otherwise); here, that each part printed."""
    pytest.importorskip("duckdb")
    pytest.importorskip("sklearn")
    out = _run("bench_score.py", "--rows", "20000", "--runs", "1", "--no-dask")
    for line in ("crossent score --json (every metric)", "DuckDB SQL, mean cross-entropy alone",
                 "crossent score_arrays (arrays in memory)", "sklearn log_loss, string labels (once)",
                 "iter_batches as crossent, jemalloc memory pool"):
        assert line in out
    assert re.search(r"log_loss on arrays in memory / the whole crossent score process "
                     r"\(\d+\.\d+ s\): \d+\.\d+x \(integer labels\), \d+\.\d+x \(string labels\)", out)
