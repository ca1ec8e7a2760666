"""``crossent demo`` through the real entry point: it finishes, prints its table and verdicts,
and writes three real PNG files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

pytest.importorskip("typer")
pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_demo_runs_through_the_entry_point(tmp_path):
    out = tmp_path / "plots"
    env = dict(os.environ, COLUMNS="120")
    proc = subprocess.run([sys.executable, "-m", "crossent", "demo", "--out", str(out),
                           "--epochs", "60", "--seed", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    text = proc.stdout
    for row in ("cross-entropy", "squared error", "focal (gamma=2)"):
        assert row in text
    assert "epochs to 90%" in text and "held-out CE (nats)" in text
    assert "Paired bootstrap" in text and "95% CI" in text
    for name in ("learning_curves.png", "reliability.png", "neg_log_p.png"):
        path = out / name
        width, height = _png_size(path)
        assert width >= 400 and height >= 400
        assert path.stat().st_size > 20_000


def test_demo_writes_to_crossent_demo_by_default(tmp_path, monkeypatch, capsys):
    from crossent.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--epochs", "20"]) == 0
    out = capsys.readouterr().out
    assert "Softmax regression on Iris" in out
    assert sorted(p.name for p in (tmp_path / "crossent-demo").iterdir()) == [
        "learning_curves.png", "neg_log_p.png", "reliability.png"]


def test_demo_rejects_zero_epochs(capsys):
    from crossent.cli import main

    assert main(["demo", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossent: error:") and "--epochs" in err[0]
