"""Figures: each plot writes a real PNG (signature, size, pixel dimensions) and rejects bad input."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from crossent import plots  # noqa: E402
from crossent.evaluation import calibration_curve  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) read from the IHDR chunk, which follows the 8-byte signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_reliability_diagram_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 3, size=200)
    curve = calibration_curve(probs, labels, n_bins=10)
    out = plots.reliability_diagram(curve, tmp_path / "sub" / "rel.png", title="random")
    assert out == tmp_path / "sub" / "rel.png"
    width, height = _png_size(out)
    assert width > 300 and height > 300
    assert out.stat().st_size > 10_000


def test_reliability_diagram_with_empty_bins(tmp_path):
    # Two rows, both in the top bin: every other bin is empty (NaN accuracy) and must not break.
    curve = calibration_curve([[0.99, 0.01], [0.98, 0.02]], [0, 1], n_bins=15)
    out = plots.reliability_diagram(curve, tmp_path / "rel.png")
    assert _png_size(out)[0] > 300


def test_reliability_diagram_rejects_mismatched_curve(tmp_path):
    curve = calibration_curve([[0.9, 0.1]], [0], n_bins=4)
    bad = type(curve)(curve.bin_edges[:-1], curve.confidence, curve.accuracy, curve.counts, curve.ece)
    with pytest.raises(ValueError, match="bin_edges"):
        plots.reliability_diagram(bad, tmp_path / "rel.png")


def test_learning_curves_writes_png(tmp_path):
    curves = {"cross-entropy": (np.geomspace(1.0, 0.1, 50), np.linspace(0.5, 0.98, 50)),
              "squared error": (np.geomspace(1.0, 0.4, 30), np.linspace(0.4, 0.9, 30))}
    out = plots.learning_curves(curves, tmp_path / "curves.png", title="t", target_accuracy=0.9)
    width, height = _png_size(out)
    assert width > height > 300  # two panels side by side
    assert out.stat().st_size > 20_000


def test_learning_curves_rejects_bad_curves(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plots.learning_curves({}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="same length"):
        plots.learning_curves({"a": ([1.0, 0.5], [0.5])}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="pair"):
        plots.learning_curves({"a": ([1.0],)}, tmp_path / "c.png")


def test_neg_log_curve_writes_png(tmp_path):
    out = plots.neg_log_curve(tmp_path / "neglog.png", title="-log p")
    width, height = _png_size(out)
    assert width > height > 300
    assert out.stat().st_size > 20_000


def test_importing_plots_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, crossent.plots; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_neuron_traces_writes_png(tmp_path):
    steps = np.arange(50)
    traces = {"cross-entropy": (np.exp(-steps / 5), np.exp(-steps / 5), np.full(50, 0.1)),
              "squared error": (np.full(50, 0.98), np.full(50, 0.48), np.full(50, 0.02))}
    out = plots.neuron_traces(traces, tmp_path / "neuron.png", checkpoint=30, title="t")
    width, height = _png_size(out)
    assert width > 2 * height > 600  # three panels side by side
    with pytest.raises(ValueError, match="triple"):
        plots.neuron_traces({"a": ([1.0], [1.0])}, tmp_path / "n.png")
    with pytest.raises(ValueError, match="length 2"):
        plots.neuron_traces({"a": ([1.0, 0.5], [1.0, 0.5], [0.1])}, tmp_path / "n.png")
    with pytest.raises(ValueError, match="empty"):
        plots.neuron_traces({}, tmp_path / "n.png")


def test_precision_recall_writes_png(tmp_path):
    curves = {"ce": ([1.0, 0.5, 0.4], [0.2, 0.6, 1.0], 0.6), "focal": ([1.0, 0.8, 0.5], [0.3, 0.7, 1.0], 0.8)}
    out = plots.precision_recall(curves, tmp_path / "pr.png", sweep=([0, 1, 2], [0.6, 0.7, 0.8],
                                 [0.3, 0.4, 0.5]), precision_floor=0.5)
    width, height = _png_size(out)
    assert width > height > 300
    alone = plots.precision_recall(curves, tmp_path / "pr1.png")
    assert _png_size(alone)[0] < width  # one panel without the sweep
    with pytest.raises(ValueError, match="length 3"):
        plots.precision_recall(curves, tmp_path / "x.png", sweep=([0, 1, 2], [0.6], [0.3, 0.4, 0.5]))
    with pytest.raises(ValueError, match="triple"):
        plots.precision_recall({"a": ([1.0], [1.0])}, tmp_path / "x.png")


def test_doors_writes_png(tmp_path):
    table = [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]]
    out = plots.doors({"good": ([0.8, 0.7, 0.1], [0.8, 0.7, 0.9]), "bad": ([0.2, 0.3, 0.9], [0.2, 0.3, 0.1])},
                      [1, 1, 0], table, ["duck", "beaver", "walrus"], [0, 2, 2], tmp_path / "d.png")
    width, height = _png_size(out)
    assert width > height > 300
    assert out.stat().st_size > 20_000
    with pytest.raises(ValueError, match="animal_probs"):
        plots.doors({"good": ([0.8], [0.8])}, [1], table, ["duck", "beaver"], [0], tmp_path / "d.png")
    with pytest.raises(ValueError, match="length 3"):
        plots.doors({"good": ([0.8], [0.8])}, [1, 1, 0], table, ["duck", "beaver", "walrus"],
                    [0, 2, 2], tmp_path / "d.png")
