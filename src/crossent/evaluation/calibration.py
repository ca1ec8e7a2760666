"""Calibration of predicted class probabilities: reliability curve and expected calibration error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import _checks

__all__ = ["CalibrationCurve", "calibration_curve", "CalibrationAccumulator", "curve_from_sums",
           "MAX_BINS"]

#: Most bins of a reliability curve: finer bins hold too few rows to estimate anything, and the
#: per-bin sums (and the JSON report) would grow with the count.
MAX_BINS = 10_000


@dataclass(frozen=True)
class CalibrationCurve:
    """Top-label reliability curve over equal-width confidence bins.

    ``confidence[k]`` and ``accuracy[k]`` are the mean top probability and the fraction of
    correct top predictions among the ``counts[k]`` rows whose top probability falls in
    ``[bin_edges[k], bin_edges[k+1])`` (the last bin includes 1; a row goes to bin
    ``floor(top * n_bins)``); empty bins hold NaN.
    ``ece`` is :math:`\\sum_k \\frac{n_k}{N}\\,|\\mathrm{acc}_k - \\mathrm{conf}_k|`.
    With sample weights, means and ECE are weighted (``n_k`` the weight of bin k, held in
    ``weights``); ``counts`` are always row counts.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float
    weights: Optional[np.ndarray] = None


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
        Number of equal-width bins of the top probability on [0, 1] (at most 10,000).

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
    acc = CalibrationAccumulator(n_bins=n_bins)
    top = p.max(axis=1).astype(np.float64)
    acc.update(top, p.argmax(axis=1) == y)
    return acc.curve()


class CalibrationAccumulator:
    """Per-bin sums of a reliability curve, accumulated batch by batch (memory O(n_bins)).

    Bin k holds the top probabilities t with ``floor(t * n_bins) == k`` (``t = 1`` goes to the
    last bin), i.e. ``[k / n_bins, (k + 1) / n_bins)``.

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.evaluation.calibration import CalibrationAccumulator
    >>> acc = CalibrationAccumulator(n_bins=2)
    >>> acc.update(np.array([0.9, 0.8]), np.array([True, False]))
    >>> acc.update(np.array([0.7]), np.array([True]))
    >>> curve = acc.curve()
    >>> curve.counts.tolist(), round(curve.ece, 6)
    ([0, 3], 0.133333)
    """

    def __init__(self, *, n_bins=15):
        self.n_bins = check_n_bins(n_bins)
        self._counts = np.zeros(self.n_bins, dtype=np.int64)
        self._conf = np.zeros(self.n_bins)
        self._hits = np.zeros(self.n_bins, dtype=np.int64)

    def update(self, top: np.ndarray, correct: np.ndarray) -> None:
        """Add rows with top probability ``top`` (float64) and ``correct`` (bool) predictions."""
        self.add(*self.sums(top, correct))

    def sums(self, top: np.ndarray, correct: np.ndarray):
        """Per-bin (counts, correct counts, confidence sums) of some rows, without adding them
        (so threads can compute them apart and :meth:`add` them in order)."""
        k = self.n_bins
        which = np.minimum((top * k).astype(np.intp), k - 1)
        # One count per (bin, correct) pair: entry 2b + 1 counts the correct rows of bin b.
        pairs = np.bincount(2 * which + np.asarray(correct, dtype=bool), minlength=2 * k)
        return pairs[0::2] + pairs[1::2], pairs[1::2], np.bincount(which, weights=top, minlength=k)

    def add(self, counts, hits, conf) -> None:
        """Add per-bin sums computed by :meth:`sums`."""
        self._counts += counts
        self._hits += hits
        self._conf += conf

    def curve(self) -> CalibrationCurve:
        """The reliability curve and ECE of the rows added so far."""
        return curve_from_sums(self._counts, None, self._hits, self._conf)


def check_n_bins(n_bins) -> int:
    """``n_bins`` as an int in [1, MAX_BINS], or a ValueError naming it."""
    return int(_checks.check_scalar(n_bins, "n_bins", low=1, high=MAX_BINS))


def curve_from_sums(rows, weights, hits, conf) -> CalibrationCurve:
    """The curve of per-bin sums: row counts, weights (None: unweighted, the counts), weighted
    correct predictions and weighted top probabilities.

    Examples
    --------
    >>> from crossent.evaluation.calibration import curve_from_sums
    >>> c = curve_from_sums([0, 2], [0.0, 4.0], [0.0, 3.0], [0.0, 3.4])
    >>> c.accuracy.tolist()[1], round(float(c.confidence[1]), 6), round(c.ece, 6)
    (0.75, 0.85, 0.1)
    """
    counts = np.asarray(rows).astype(np.int64)
    w = counts.astype(np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    hits = np.asarray(hits, dtype=np.float64)
    conf = np.asarray(conf, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = conf / w
        accuracy = hits / w
    # sum_k (W_k / W) |hits_k / W_k - conf_k / W_k| = sum_k |hits_k - conf_k| / W
    total = float(w.sum())
    ece = float(np.sum(np.abs(hits - conf)[w > 0]) / total) if total > 0 else 0.0
    edges = np.linspace(0.0, 1.0, counts.size + 1)
    return CalibrationCurve(edges, confidence, accuracy, counts, ece,
                            None if weights is None else w)
