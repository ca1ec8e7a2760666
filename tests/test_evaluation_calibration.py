"""crossent.evaluation.calibration: reliability bins and ECE on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from crossent.evaluation import CalibrationAccumulator, calibration_curve


def test_hand_example_two_bins():
    # Top probabilities 0.9 (correct), 0.8 (wrong), 0.7 (correct): all in bin [0.5, 1].
    curve = calibration_curve([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], [0, 1, 1], n_bins=2)
    assert curve.counts.tolist() == [0, 3]
    assert curve.confidence[1] == pytest.approx(0.8) and curve.accuracy[1] == pytest.approx(2 / 3)
    assert np.isnan(curve.confidence[0]) and np.isnan(curve.accuracy[0])
    assert curve.ece == pytest.approx(abs(2 / 3 - 0.8))
    np.testing.assert_allclose(curve.bin_edges, [0.0, 0.5, 1.0])


def test_perfectly_calibrated_and_edges():
    # Top probability 1.0 goes to the last bin; 0.5 opens bin 1 of 2.
    curve = calibration_curve([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]], [0, 0, 1], n_bins=2)
    assert curve.counts.tolist() == [0, 3]
    # bin 1: confidence (1 + 0.5 + 0.5) / 3, accuracy 2/3 (the tie predicts class 0)
    assert curve.ece == pytest.approx(0.0, abs=1e-15)


def test_batches_accumulate_like_one_pass():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=500)
    y = rng.integers(0, 4, size=500)
    whole = calibration_curve(p, y, n_bins=10)
    acc = CalibrationAccumulator(n_bins=10)
    for s in range(0, 500, 64):
        acc.update(p[s:s + 64].max(axis=1), p[s:s + 64].argmax(axis=1) == y[s:s + 64])
    part = acc.curve()
    np.testing.assert_array_equal(part.counts, whole.counts)
    assert part.ece == pytest.approx(whole.ece, rel=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        calibration_curve([0.5, 0.5], [0])
    with pytest.raises(ValueError, match="n_bins"):
        calibration_curve([[0.5, 0.5]], [0], n_bins=0)
    with pytest.raises(ValueError, match="sums to"):
        calibration_curve([[0.5, 0.6]], [0])
