"""``crossent demo`` through the real entry point: the tour plays every scene, prints each table
and two-line verdict and writes real PNG files; one scene plays alone; bad input is one line."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

pytest.importorskip("typer")
pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOUR_PNGS = ["doors.png", "focal.png", "learning_curves.png", "neg_log_p.png", "neuron.png",
             "reliability.png"]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_demo_tour_runs_through_the_entry_point(tmp_path):
    out = tmp_path / "plots"
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "crossent", "demo", "--out", str(out),
                           "--epochs", "60", "--seed", "0"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    text = proc.stdout
    # each scene's heading, table and verdict
    for scene in ("neuron:", "focal:", "doors:", "iris:"):
        assert scene in text
    assert "After 30 steps cross-entropy brought the output from 0.982" in text
    assert "sigma'(z) = 0.0177" in text
    assert "focal loss (gamma=" in text and "average precision" in text
    assert "0.8 x 0.7 x 0.9 = 0.504" in text and "= 0.685" in text and "0.084" in text
    for row in ("cross-entropy", "squared error", "focal (gamma=2)"):
        assert row in text
    assert "epochs to 90%" in text and "held-out CE (nats)" in text
    assert "95% CI" in text
    assert sorted(p.name for p in out.iterdir()) == TOUR_PNGS
    for name in TOUR_PNGS:
        width, height = _png_size(out / name)
        assert width >= 400 and height >= 400
        assert (out / name).stat().st_size > 20_000


def test_demo_plays_one_scene_into_crossent_demo_by_default(tmp_path, monkeypatch, capsys):
    from crossent.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "neuron"]) == 0
    out = capsys.readouterr().out
    assert "One sigmoid neuron" in out and "focal" not in out
    assert [p.name for p in (tmp_path / "crossent-demo").iterdir()] == ["neuron.png"]


def test_demo_iris_scene_alone(tmp_path, capsys):
    from crossent.cli import main

    assert main(["demo", "iris", "--epochs", "20", "--out", str(tmp_path)]) == 0
    assert "Softmax regression on Iris" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "learning_curves.png", "neg_log_p.png", "reliability.png"]


def test_demo_rejects_unknown_scene(capsys):
    from crossent.cli import main

    assert main(["demo", "walrus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossent: error: scene:") and "'walrus'" in err[0]


def test_demo_rejects_zero_epochs(capsys):
    from crossent.cli import main

    assert main(["demo", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossent: error:") and "--epochs" in err[0]
