"""Metrics of predicted class probabilities, accumulated batch by batch.

Cross-entropy (log-loss) in nats and bits, perplexity, accuracy, Brier score, expected
calibration error and per-class cross-entropy, computed with vectorised NumPy on class-major
batches ``(C, n)`` and accumulated in float64, so memory is bounded by the batch size.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .. import _checks
from ..functional import log_softmax
from .calibration import CalibrationAccumulator, CalibrationCurve

__all__ = ["Scores", "ScoreAccumulator", "score_arrays", "SUM_TOLERANCE_PER_CLASS"]

#: Rows of probabilities must sum to 1 within this times the number of classes: 16 float32
#: epsilons per class, since prediction files are often written from float32 models or with
#: about 7 significant digits. Tighter data is of course accepted.
SUM_TOLERANCE_PER_CLASS = 16.0 * float(np.finfo(np.float32).eps)

#: Values of a batch processed at a time (32768 rows of 10 classes: 2.5 MB stay in cache).
_CHUNK_VALUES = 10 << 15
#: Up to this many classes, columns are copied one by one; beyond, the batch is stacked first.
_LOOP_CLASSES = 32

#: Threads scoring slices of a batch (at most this many, and no more than the CPUs).
MAX_THREADS = 4
_POOL: list = []  # the shared ThreadPoolExecutor, created on first use
_POOL_LOCK = threading.Lock()

#: How many row numbers of infinite-loss rows are remembered for the message.
_FIRST_ROWS = 5
_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Scores:
    """Metrics of one model's predictions (see :func:`score_arrays`).

    ``class_cross_entropy[k]`` is the mean cross-entropy (nats) over the ``class_counts[k]``
    rows whose true class is ``classes[k]`` (NaN when there are none). ``infinite_rows``
    counts rows whose true class got probability 0 (infinite cross-entropy) and
    ``first_infinite_rows`` lists the first few of them, numbered as in error messages
    (1-based rows for files, 0-based indices for arrays).
    """

    classes: tuple
    n_rows: int
    cross_entropy: float
    cross_entropy_bits: float
    perplexity: float
    accuracy: float
    brier: float
    ece: float
    class_counts: np.ndarray
    class_cross_entropy: np.ndarray
    infinite_rows: int
    first_infinite_rows: tuple
    clip: Optional[float]
    calibration: CalibrationCurve = field(repr=False)

    def to_dict(self) -> dict:
        """Plain Python values (for JSON); non-finite numbers become None."""

        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        curve = self.calibration
        return {
            "rows": self.n_rows,
            "classes": list(self.classes),
            "cross_entropy_nats": num(self.cross_entropy),
            "cross_entropy_bits": num(self.cross_entropy_bits),
            "perplexity": num(self.perplexity),
            "accuracy": num(self.accuracy),
            "brier": num(self.brier),
            "ece": num(self.ece),
            "per_class": [
                {"class": c, "count": int(n), "cross_entropy_nats": num(h)}
                for c, n, h in zip(self.classes, self.class_counts, self.class_cross_entropy)
            ],
            "infinite_rows": {"count": self.infinite_rows, "first_rows": list(self.first_infinite_rows)},
            "clip": self.clip,
            "calibration": {
                "bin_edges": [float(e) for e in curve.bin_edges],
                "confidence": [num(v) for v in curve.confidence],
                "accuracy": [num(v) for v in curve.accuracy],
                "counts": [int(n) for n in curve.counts],
            },
        }


def _array_where(i: int, k: Optional[int]) -> str:
    return f"predictions[{i}]" if k is None else f"predictions[{i}, {k}]"


class ScoreAccumulator:
    """Validates batches of predictions and accumulates every metric of :class:`Scores`.

    Parameters
    ----------
    classes : sequence of str
        Class names (their number C is the length of the class axis of every batch).
    logits : bool, default False
        Batches hold logits (turned into log-probabilities by :func:`crossent.log_softmax`)
        instead of probabilities.
    normalize : bool, default False
        Rescale probability rows to sum to 1 instead of rejecting those that do not.
    clip : float, optional
        Cross-entropy of a row is ``-log(max(p_true, clip))``: finite even when the true class
        got probability 0. Only the cross-entropy metrics are affected.
    n_bins : int, default 15
        Bins of the reliability curve (expected calibration error).
    where : callable, optional
        ``where(row, class_index_or_None)`` -> location text for error messages, ``row`` being
        the 0-based row in the whole input. Default: ``predictions[row, k]``.
    row_base : int, default 0
        Added to 0-based rows in ``first_infinite_rows`` (1 for files).
    hint : str, default ""
        Appended to the message of a value outside [0, 1].
    error : type, default ValueError
        The exception raised for bad values (a subclass of ValueError).

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.evaluation import ScoreAccumulator
    >>> acc = ScoreAccumulator(["no", "yes"])
    >>> acc.update(np.array([[0.5, 0.25], [0.5, 0.75]]), np.array([0, 1])).round(6).tolist()
    [0.693147, 0.287682]
    >>> acc.update([np.array([0.9]), np.array([0.1])], np.array([0])).round(6).tolist()
    [0.105361]
    >>> r = acc.result()
    >>> r.n_rows, round(r.cross_entropy, 6), r.accuracy
    (3, 0.362063, 1.0)
    """

    def __init__(self, classes: Sequence[str], *, logits=False, normalize=False, clip=None,
                 n_bins=15, where: Optional[Callable] = None, row_base=0, hint="", error=ValueError):
        self.classes = tuple(str(c) for c in classes)
        C = len(self.classes)
        if C < 2:
            raise ValueError(f"scoring needs at least two classes, got {C}")
        self.logits = bool(logits)
        self.normalize = bool(normalize)
        self.clip = None if clip is None else _checks.check_scalar(clip, "clip", low=0.0, high=1.0,
                                                                    low_open=True, high_open=True)
        self._where = where or _array_where
        self._row_base = int(row_base)
        self._hint = hint
        self._error_type = error
        self._tol = SUM_TOLERANCE_PER_CLASS * C
        self._calibration = CalibrationAccumulator(n_bins=n_bins)
        self.n_rows = 0
        self._loss_sum = 0.0
        self._hits = 0
        self._brier_sum = 0.0
        self._class_counts = np.zeros(C, dtype=np.int64)
        self._class_loss = np.zeros(C)
        self._n_inf = 0
        self._first_inf: list[int] = []
        self._cols = np.arange(0)
        self._local = threading.local()  # each thread's cache-sized buffer

    # -- validation ---------------------------------------------------------------------------
    def _error(self, start: int, i: int, k: Optional[int], message: str) -> ValueError:
        return self._error_type(f"{self._where(start + i, k)}: {message}")

    def _first_bad(self, bad: np.ndarray):
        i = int(np.argmax(bad.any(axis=0)))
        return i, int(np.argmax(bad[:, i]))

    def _check_probs(self, p: np.ndarray, top: np.ndarray, start: int) -> np.ndarray:
        """Validate probabilities ``p`` whose column maxima are ``top``; rescale if normalising."""
        if self.normalize:
            if not (p.min() >= 0 and np.isfinite(top).all()):
                i, k = self._first_bad(~(np.isfinite(p) & (p >= 0)))
                raise self._error(start, i, k, f"{_describe(p[k, i])} cannot be normalised "
                                               "(probabilities must be finite and >= 0)")
            total = p.sum(axis=0)
            if not total.all():
                i = int(np.argmax(total == 0))
                raise self._error(start, i, None, "the probabilities sum to 0 and cannot be normalised")
            return p / total
        if not (p.min() >= 0 and top.max() <= 1):  # NaN fails both comparisons
            i, k = self._first_bad(~((p >= 0) & (p <= 1)))
            v = p[k, i]
            what = (f"{_describe(v)} is not a probability" if not np.isfinite(v)
                    else f"probability {float(v)!r} is outside [0, 1]{self._hint}")
            raise self._error(start, i, k, what)
        total = p.sum(axis=0)
        off = np.abs(total - 1.0) > self._tol
        if off.any():
            i = int(np.argmax(off))
            raise self._error(start, i, None,
                              f"the probabilities of classes {', '.join(self.classes)} sum to "
                              f"{float(total[i]):.10g}, not 1 (tolerance {self._tol:.1e}); pass "
                              "--normalize (normalize=True) to rescale rows")
        return p

    def _check_logits(self, z: np.ndarray, start: int) -> np.ndarray:
        top = z.max(axis=0)
        if not (np.isfinite(top).all()):  # NaN or +inf anywhere, or a row of -inf only
            bad = np.isnan(z) | np.isposinf(z)
            if bad.any():
                i, k = self._first_bad(bad)
                raise self._error(start, i, k, f"{_describe(z[k, i])} is not a valid logit")
            i = int(np.argmax(~np.isfinite(top)))
            raise self._error(start, i, None, "every logit of the row is -inf: no class is possible")
        return log_softmax(z, axis=0)

    # -- accumulation -------------------------------------------------------------------------
    def update(self, scores, labels: np.ndarray, *, start: Optional[int] = None) -> np.ndarray:
        """Validate a batch and add it; return the per-row cross-entropy in nats.

        ``scores`` is class-major: a ``(C, n)`` array, or a sequence of C columns (1-D arrays of
        length n, as :class:`~crossent.evaluation.io.Batch` holds them); ``labels`` holds the n
        true class indices. ``start`` is the 0-based row of the batch's first row in the whole
        input (default: right after the rows added so far). The losses are clipped if ``clip``
        is set.
        """
        C = len(self.classes)
        if len(scores) != C:
            raise ValueError(f"a batch has {len(scores)} classes, expected {C}")
        n = len(labels)
        start = self.n_rows if start is None else int(start)
        if not isinstance(scores, np.ndarray) and C > _LOOP_CLASSES:
            scores = np.stack(scores)
        loss = np.empty(n)
        # Slices of about 2.5 MB are copied to a float64 buffer that stays in the CPU cache
        # across the passes of _chunk; slices run on a few threads (NumPy releases the GIL) and
        # their sums are added in row order, so the result does not depend on the threads.
        step = max(1, _CHUNK_VALUES // C)
        if self._cols.size < step:
            self._cols = np.arange(step)
        starts = range(0, n, step)
        pool = _pool() if len(starts) > 1 else None
        if pool is None:
            parts = [self._chunk(scores, labels, s, min(n, s + step), start, loss) for s in starts]
        else:
            futures = [pool.submit(self._chunk, scores, labels, s, min(n, s + step), start, loss)
                       for s in starts]
            try:
                parts = [f.result() for f in futures]  # the first error in row order is raised
            finally:
                for f in futures:
                    f.cancel()
        for part in parts:
            self._add(part)
        self.n_rows += n
        return loss

    def _chunk(self, scores, labels: np.ndarray, lo: int, hi: int, start: int, loss_out: np.ndarray):
        """Validate and score rows [lo, hi) of a batch; write their losses; return their sums."""
        C, m = len(self.classes), hi - lo
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] != C or buf.shape[1] < m:
            buf = self._local.buf = np.empty((C, max(m, _CHUNK_VALUES // C)))
        p = buf[:, :m]
        if isinstance(scores, np.ndarray):
            np.copyto(p, scores[:, lo:hi])
        else:
            for k in range(C):
                p[k] = scores[k][lo:hi]
        labels = labels[lo:hi]
        cols = self._cols[:m]
        at = start + lo
        if self.logits:
            log_p = self._check_logits(p, at)
            with np.errstate(under="ignore"):
                p = np.exp(log_p)  # probabilities for accuracy, Brier and calibration
            top = p.max(axis=0)
            log_true = log_p[labels, cols]
            p_true = np.exp(log_true)
        else:
            top = p.max(axis=0)
            q = self._check_probs(p, top, at)
            if q is not p:  # normalised
                p, top = q, q.max(axis=0)
            p_true = p[labels, cols]
            with np.errstate(divide="ignore"):
                log_true = np.log(p_true)
        if self.clip is not None:
            log_true = np.maximum(log_true, math.log(self.clip))
        loss = -log_true
        loss_out[lo:hi] = loss
        inf = np.isinf(loss)
        inf_rows = np.flatnonzero(inf)[:_FIRST_ROWS] + at if inf.any() else _NO_ROWS
        # Accuracy as argmax: the first class reaching the top probability is the prediction.
        hit = p_true == top
        if hit.any():
            tied = hit & (np.add.reduce(p == top, axis=0, dtype=np.uint8) > 1)
            if tied.any():
                rows = np.flatnonzero(tied)
                hit[rows] = np.argmax(p[:, rows], axis=0) == labels[rows]
        # Brier summed over rows: sum_n sum_c (p_nc - [c = y_n])^2 = sum_nc p_nc^2 - 2 sum_n p_ny + n
        squares = float(np.einsum("ij,ij->", p, p))
        with np.errstate(invalid="ignore"):
            class_loss = np.bincount(labels, weights=loss, minlength=C)
        return (float(np.sum(loss)), int(np.count_nonzero(hit)), squares - 2.0 * float(np.sum(p_true)) + m,
                np.bincount(labels, minlength=C), class_loss, int(np.count_nonzero(inf)), inf_rows,
                self._calibration.sums(top, hit))

    def _add(self, part) -> None:
        loss_sum, hits, brier_sum, class_counts, class_loss, n_inf, inf_rows, calibration = part
        self._loss_sum += loss_sum
        self._hits += hits
        self._brier_sum += brier_sum
        self._class_counts += class_counts
        with np.errstate(invalid="ignore"):
            self._class_loss += class_loss
        self._n_inf += n_inf
        room = _FIRST_ROWS - len(self._first_inf)
        self._first_inf.extend(int(r) + self._row_base for r in inf_rows[:room])
        self._calibration.add(*calibration)

    def result(self) -> Scores:
        """The metrics of every row added so far."""
        if self.n_rows == 0:
            raise ValueError("no rows to score")
        N = self.n_rows
        C = len(self.classes)
        ce = self._loss_sum / N
        # sklearn's brier_score_loss convention: the binary score is (p_1 - y)^2, half the sum.
        brier = self._brier_sum / N / (2.0 if C == 2 else 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = self._class_loss / self._class_counts
        curve = self._calibration.curve()
        return Scores(self.classes, N, ce, ce / math.log(2.0), math.exp(ce) if ce < 709 else math.inf,
                      self._hits / N, brier, curve.ece, self._class_counts.copy(), per_class,
                      self._n_inf, tuple(self._first_inf), self.clip, curve)


def _pool() -> Optional[ThreadPoolExecutor]:
    """The shared worker threads (None on a single CPU)."""
    workers = min(MAX_THREADS, os.cpu_count() or 1)
    if workers < 2:
        return None
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(workers, thread_name_prefix="crossent-score"))
        return _POOL[0]


def _describe(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def score_arrays(predictions, labels, *, classes=None, logits=False, normalize=False, clip=None,
                 n_bins=15, batch_size=1 << 18):
    r"""Score predictions held in memory: cross-entropy, accuracy, Brier score, calibration.

    .. math::

        H = -\frac{1}{N}\sum_n \log p_{n, y_n}, \qquad
        \mathrm{Brier} = \frac{1}{N}\sum_n \sum_c (p_{nc} - [c = y_n])^2, \qquad
        \mathrm{ECE} = \sum_k \frac{n_k}{N}\,\lvert\mathrm{acc}_k - \mathrm{conf}_k\rvert

    For two classes the Brier score is halved, i.e. :math:`(p_{n1} - y_n)^2`, as
    ``sklearn.metrics.brier_score_loss``. Bits are nats / log 2; perplexity is exp(H).

    Parameters
    ----------
    predictions : array_like, shape (N, C)
        Probabilities (rows summing to 1), or logits with ``logits=True``.
    labels : array_like of int, shape (N,)
        True class indices in [0, C).
    classes : sequence of str, optional
        Class names (default ``"0", ..., "C-1"``).
    logits, normalize, clip, n_bins
        As in :class:`ScoreAccumulator`. A probability 0 on the true class gives an infinite
        cross-entropy (reported, with its rows) unless ``clip`` is given.
    batch_size : int, default 262144
        Rows per batch: the extra memory is a few batches' worth.

    Returns
    -------
    Scores

    Raises
    ------
    ValueError
        A probability outside [0, 1], NaN or inf, a row not summing to 1 (without
        ``normalize``), fewer than two classes; the message names the row and column.
    IndexError
        A label outside [0, C).

    References
    ----------
    G. W. Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather
    Review 78 (1950). C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> from crossent.evaluation import score_arrays
    >>> s = score_arrays([[0.5, 0.5], [0.25, 0.75]], [0, 1])
    >>> round(s.cross_entropy, 6), s.accuracy, round(s.brier, 6)
    (0.490415, 1.0, 0.15625)
    """
    x = _checks.check_floating(predictions, "predictions")
    if x.ndim != 2:
        raise ValueError(f"predictions must have shape (N, C), got {x.shape}")
    N, C = x.shape
    if N == 0:
        raise ValueError("predictions has no rows")
    y = np.asarray(labels)
    if y.shape != (N,):
        raise ValueError(f"labels has shape {y.shape}, but predictions has {N} rows")
    y = _checks.check_labels(y, C, None)
    names = [str(k) for k in range(C)] if classes is None else list(classes)
    if len(names) != C:
        raise ValueError(f"classes names {len(names)} classes, but predictions has {C} columns")
    acc = ScoreAccumulator(names, logits=logits, normalize=normalize, clip=clip, n_bins=n_bins)
    step = int(_checks.check_scalar(batch_size, "batch_size", low=1))
    for s in range(0, N, step):
        acc.update(x[s:s + step].T, y[s:s + step], start=s)
    return acc.result()
