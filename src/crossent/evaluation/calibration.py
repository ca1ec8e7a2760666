"""Calibration of predicted class probabilities: reliability curve and expected calibration error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks

__all__ = ["CalibrationCurve", "calibration_curve"]


@dataclass(frozen=True)
class CalibrationCurve:
    """Top-label reliability curve over equal-width confidence bins.

    ``confidence[k]`` and ``accuracy[k]`` are the mean top probability and the fraction of
    correct top predictions among the ``counts[k]`` rows whose top probability falls in
    ``[bin_edges[k], bin_edges[k+1])`` (the last bin includes 1); empty bins hold NaN.
    ``ece`` is :math:`\\sum_k \\frac{n_k}{N}\\,|\\mathrm{acc}_k - \\mathrm{conf}_k|`.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float


def calibration_curve(probs, labels, *, n_bins=15):
    r"""Reliability curve and expected calibration error (ECE) of top-label predictions.

    .. math:: \mathrm{ECE} = \sum_{k=1}^{K} \frac{n_k}{N}\,\bigl|\mathrm{acc}_k - \mathrm{conf}_k\bigr|

    Parameters
    ----------
    probs : array_like
        Predicted probabilities, shape ``(N, C)``, rows summing to 1.
    labels : array_like of int
        True class indices, shape ``(N,)``.
    n_bins : int, default 15
        Number of equal-width bins of the top probability on [0, 1].

    Returns
    -------
    CalibrationCurve

    References
    ----------
    C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural Networks",
    ICML 2017.

    Examples
    --------
    >>> from crossent.evaluation import calibration_curve
    >>> curve = calibration_curve([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], [0, 1, 1], n_bins=2)
    >>> curve.counts.tolist(), round(curve.ece, 6)
    ([0, 3], 0.133333)
    """
    p = _checks.check_floating(probs, "probs")
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {p.shape}")
    p = _checks.check_distributions(p, "probs", 1, False)
    y = np.asarray(labels)
    if y.shape != p.shape[:1]:
        raise ValueError(f"labels has shape {y.shape}, but probs has {p.shape[0]} rows")
    y = _checks.check_labels(y, p.shape[1], None)
    k = int(_checks.check_scalar(n_bins, "n_bins", low=1))
    top = p.max(axis=1).astype(np.float64)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, k + 1)
    which = np.clip(np.searchsorted(edges, top, side="right") - 1, 0, k - 1)
    counts = np.bincount(which, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(which, weights=top, minlength=k) / counts
        accuracy = np.bincount(which, weights=correct, minlength=k) / counts
    gaps = np.where(counts > 0, np.abs(accuracy - confidence), 0.0)
    ece = float(np.sum(counts * gaps) / max(top.size, 1))
    return CalibrationCurve(edges, confidence, accuracy, counts, ece)
