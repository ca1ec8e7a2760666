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
from .._backend import kernels
from .calibration import CalibrationCurve, check_n_bins, curve_from_sums

__all__ = ["Scores", "ScoreAccumulator", "score_arrays", "state_size", "SUM_TOLERANCE_PER_CLASS"]

#: Rows of probabilities must sum to 1 within this times the number of classes: 16 float32
#: epsilons per class, since prediction files are often written from float32 models or with
#: about 7 significant digits (float16 columns: 16 float16 epsilons per class).
SUM_TOLERANCE_PER_CLASS = 16.0 * float(np.finfo(np.float32).eps)
_EPS32 = float(np.finfo(np.float32).eps)

# Positions in a score state (see state_size).
_LOSS, _HITS, _BRIER, _WEIGHT, _ROWS, _INF, _TOTALS = range(7)

#: Values of a batch processed at a time (32768 rows of 10 classes: 2.5 MB stay in cache).
_CHUNK_VALUES = 10 << 15
#: Up to this many classes, columns are read in place (or copied one by one to a slice's buffer);
#: beyond, the batch is stacked first, one stream for the kernel to read instead of C.
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
    (1-based rows for files, 0-based indices for arrays). With sample weights every metric is
    a weighted mean (``weight_sum`` the total weight; None without weights) and
    ``class_counts`` still counts rows.
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
    weight_sum: Optional[float] = None

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
            "weight_sum": self.weight_sum,
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

    Every metric is a ratio of sums, and the sums are held in one float64 vector, the
    *state* (:attr:`state`): states of disjoint parts of the data add up (:meth:`merge`), so
    the metrics of a file split across processes or Dask partitions are those of the whole.

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
        Bins of the reliability curve (expected calibration error), at most 10,000.
    where : callable, optional
        ``where(row, class_index_or_None)`` -> location text for error messages, ``row`` being
        the 0-based row in the whole input. Default: ``predictions[row, k]``.
    row_base : int, default 0
        Added to 0-based rows in ``first_infinite_rows`` (1 for files).
    hint : str, default ""
        Appended to the message of a value outside [0, 1].
    error : type, default ValueError
        The exception raised for bad values (a subclass of ValueError).
    precision : dtype, optional
        The dtype the predictions were stored in, when batches arrive converted (a float16
        file read as float32): it sets the row-sum tolerance.

    Notes
    -----
    Rows of probabilities must sum to 1 within ``16 * C * eps``, eps being the machine epsilon
    of the least precise class column or ``precision`` (float32's at least: float16 columns
    get float16's).
    Probability batches are scored by a compiled kernel in one pass per row when the kernels
    are available; :meth:`_chunk_reference` is its readable specification.

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
                 n_bins=15, where: Optional[Callable] = None, row_base=0, hint="", error=ValueError,
                 precision=None):
        self.classes = tuple(str(c) for c in classes)
        C = len(self.classes)
        if C < 2:
            raise ValueError(f"scoring needs at least two classes, got {C}")
        self.logits = bool(logits)
        self.normalize = bool(normalize)
        self.clip = None if clip is None else _checks.check_scalar(clip, "clip", low=0.0, high=1.0,
                                                                    low_open=True, high_open=True)
        self.n_bins = check_n_bins(n_bins)
        self._where = where or _array_where
        self._row_base = int(row_base)
        self._hint = hint
        self._error_type = error
        self._eps = _EPS32
        if precision is not None and np.dtype(precision).kind == "f":
            self._eps = max(_EPS32, float(np.finfo(precision).eps))
        #: The sums (see :func:`state_layout`); states of disjoint rows add up.
        self.state = np.zeros(state_size(C, self.n_bins))
        self.weighted = False
        self._first_inf: list[int] = []
        self._cols = np.arange(0)
        self._local = threading.local()  # each thread's cache-sized buffer

    @property
    def n_rows(self) -> int:
        return int(self.state[_ROWS])

    # -- validation ---------------------------------------------------------------------------
    def _error(self, start: int, i: int, k: Optional[int], message: str) -> ValueError:
        return self._error_type(f"{self._where(start + i, k)}: {message}")

    def _first_bad(self, bad: np.ndarray):
        i = int(np.argmax(bad.any(axis=0)))
        return i, int(np.argmax(bad[:, i]))

    def _check_probs(self, p: np.ndarray, top: np.ndarray, start: int, tol: float) -> np.ndarray:
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
        off = ~(np.abs(total - 1.0) <= tol)
        if off.any():
            i = int(np.argmax(off))
            raise self._error(start, i, None,
                              f"the probabilities of classes {', '.join(self.classes)} sum to "
                              f"{float(total[i]):.10g}, not 1 (tolerance {tol:.1e}); pass "
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

    def _tolerance(self, scores) -> float:
        """Row-sum tolerance: 16 C epsilons of the least precise class column (float32's at least)."""
        eps = self._eps
        for column in (scores if not isinstance(scores, np.ndarray) else (scores,)):
            if column.dtype.kind == "f":
                eps = max(eps, float(np.finfo(column.dtype).eps))
        return 16.0 * eps * len(self.classes)

    # -- accumulation -------------------------------------------------------------------------
    def update(self, scores, labels: np.ndarray, *, weights=None, start: Optional[int] = None,
               label_map: Optional[np.ndarray] = None) -> np.ndarray:
        """Validate a batch and add it; return the per-row cross-entropy in nats.

        ``scores`` is class-major: a ``(C, n)`` array, or a sequence of C columns (1-D arrays of
        length n, as :class:`~crossent.evaluation.io.Batch` holds them); ``labels`` holds the n
        true class indices, or with ``label_map`` n codes, row i's class being
        ``label_map[labels[i]]`` (a dictionary-encoded label column: its codes and the class of
        each dictionary entry); ``weights`` (optional) n finite non-negative sample weights.
        ``start`` is the 0-based row of the batch's first row in the whole input (default:
        right after the rows added so far). The losses are clipped if ``clip`` is set.
        """
        C = len(self.classes)
        if len(scores) != C:
            raise ValueError(f"a batch has {len(scores)} classes, expected {C}")
        n = len(labels)
        start = self.n_rows if start is None else int(start)
        if weights is not None:
            weights = self._check_weights(weights, n, start)
            self.weighted = True
        if not isinstance(scores, np.ndarray) and C > _LOOP_CLASSES:
            scores = np.stack(scores)
        tol = self._tolerance(scores)
        loss = np.empty(n)
        # Slices of 2.5 MB of values are scored on a few threads, and their sums are added in
        # row order, so the result does not depend on the threads.
        step = max(1, _CHUNK_VALUES // C)
        columns = None if self.logits else _same_type_columns(scores)
        ext = kernels() if columns is not None else None
        if ext is not None:
            parts = self._columns(ext, columns, labels, label_map, weights, tol, start, loss, step)
        else:
            if label_map is not None:
                labels = np.asarray(label_map)[labels]
            parts = self._slices(scores, labels, weights, tol, start, loss, step)
        for state, inf_rows in parts:
            self._add(state, inf_rows)
        return loss

    def _columns(self, ext, columns, labels, label_map, weights, tol, start, loss, step):
        """(state, first infinite rows) of each slice, scored by the compiled kernel straight
        from the class columns: the slices in a few contiguous runs, one per worker thread (the
        kernel releases the GIL); an invalid slice is handed to the reference, which raises the
        error naming its first invalid row."""
        n = loss.size
        n_slices = -(-n // step)
        states = np.empty((n_slices, self.state.size))
        invalid = np.empty(n_slices, dtype=np.int64)
        codes = np.asarray(labels)
        if codes.dtype not in (np.int32, np.int64) or not codes.flags.c_contiguous:
            codes = np.ascontiguousarray(codes, dtype=np.int64)
        code_class = None if label_map is None else np.ascontiguousarray(label_map, dtype=np.int64)

        def run(s0, s1):  # slices [s0, s1)
            lo, hi = s0 * step, min(n, s1 * step)
            ext.score_columns([c[lo:hi] for c in columns], codes[lo:hi], code_class,
                              None if weights is None else weights[lo:hi], tol, self.normalize,
                              self._log_clip(), step, loss[lo:hi], states[s0:s1], invalid[s0:s1])

        pool = _pool() if n_slices > 1 else None
        if pool is None:
            run(0, n_slices)
        else:
            runs = np.linspace(0, n_slices, min(n_slices, _workers()) + 1).astype(int)
            for f in [pool.submit(run, a, b) for a, b in zip(runs[:-1], runs[1:])]:
                f.result()
        parts = []
        for k in range(n_slices):
            lo, hi = k * step, min(n, (k + 1) * step)
            if invalid[k] >= 0:
                y = codes[lo:hi] if code_class is None else code_class[codes[lo:hi]]
                p = np.stack([c[lo:hi] for c in columns]).astype(np.float64)
                w = None if weights is None else weights[lo:hi]
                parts.append(self._chunk_reference(p, y, w, tol, start + lo, loss[lo:hi]))
                continue
            parts.append((states[k], _inf_rows(states[k], loss[lo:hi], start + lo)))
        return parts

    def _slices(self, scores, labels, weights, tol, start, loss, step):
        """(state, first infinite rows) of each slice, for columns of mixed or half precision
        and for logits: each slice is copied to a buffer that stays in the CPU cache while it is
        scored, the slices run on a few threads (NumPy and the kernel release the GIL)."""
        n = loss.size
        if self._cols.size < step:
            self._cols = np.arange(step)
        starts = range(0, n, step)
        pool = _pool() if len(starts) > 1 else None
        args = (scores, labels, weights, tol, start, loss)
        if pool is None:
            return [self._chunk(*args, s, min(n, s + step)) for s in starts]
        futures = [pool.submit(self._chunk, *args, s, min(n, s + step)) for s in starts]
        try:
            return [f.result() for f in futures]  # the first error in row order is raised
        finally:
            for f in futures:
                f.cancel()

    def _check_weights(self, weights, n: int, start: int) -> np.ndarray:
        w = np.asarray(weights)
        if w.shape != (n,) or w.dtype.kind not in "fiub":
            raise TypeError(f"weights must be {n} real numbers, got shape {w.shape} and dtype {w.dtype}")
        w = np.ascontiguousarray(w, dtype=np.float64)
        bad = ~(np.isfinite(w) & (w >= 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise self._error(start, i, None, f"sample weight {_describe(w[i])} is not finite and >= 0")
        return w

    def _buffer(self, dtype, m: int) -> np.ndarray:
        """This thread's cache-sized buffer, as a C-contiguous (C, m) array of ``dtype``."""
        C = len(self.classes)
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        b = bufs.get(dtype)
        if b is None or b.size < C * m:
            b = bufs[dtype] = np.empty(C * max(m, _CHUNK_VALUES // C), dtype=dtype)
        return b[:C * m].reshape(C, m)

    def _chunk(self, scores, labels, weights, tol, start, loss_out, lo: int, hi: int):
        """Validate and score rows [lo, hi) of a batch; write their losses; return
        (state of these rows, 0-based rows of their first infinite losses)."""
        m = hi - lo
        ext = None if self.logits else kernels()
        dtypes = {s.dtype for s in (scores if not isinstance(scores, np.ndarray) else (scores,))}
        single = dtypes <= {np.dtype(np.float32), np.dtype(np.float16)}
        p = self._buffer(np.float32 if (ext is not None and single) else np.float64, m)
        if isinstance(scores, np.ndarray):
            np.copyto(p, scores[:, lo:hi])
        else:
            for k, column in enumerate(scores):
                p[k] = column[lo:hi]
        labels = np.ascontiguousarray(labels[lo:hi], dtype=np.int64)
        w = None if weights is None else weights[lo:hi]
        at = start + lo
        if ext is not None:
            states, invalid = np.empty((1, self.state.size)), np.empty(1, dtype=np.int64)
            bad = ext.score_columns(list(p), labels, None, w, tol, self.normalize, self._log_clip(),
                                    m, loss_out[lo:hi], states, invalid)
            if bad < 0:
                return states[0], _inf_rows(states[0], loss_out[lo:hi], at)
            # an invalid row: the reference raises the error that names it
        return self._chunk_reference(p.astype(np.float64, copy=False), labels, w, tol, at, loss_out[lo:hi])

    def _log_clip(self) -> float:
        """The kernel's clip of log p_label: -inf when there is none."""
        return -math.inf if self.clip is None else math.log(self.clip)

    def _chunk_reference(self, p: np.ndarray, labels: np.ndarray, w, tol, at, loss_out):
        """The state of rows of class-major probabilities (or logits) ``p``, in NumPy: the
        readable specification of the compiled ``score_columns`` kernel."""
        C, m = p.shape
        cols = self._cols[:m] if self._cols.size >= m else np.arange(m)
        if self.logits:
            log_p = self._check_logits(p, at)
            with np.errstate(under="ignore"):
                p = np.exp(log_p)  # probabilities for accuracy, Brier and calibration
            log_true = log_p[labels, cols]
            p_true = np.exp(log_true)
        else:
            p = self._check_probs(p, p.max(axis=0), at, tol)
            p_true = p[labels, cols]
            with np.errstate(divide="ignore"):
                log_true = np.log(p_true)
        top = p.max(axis=0)
        if self.clip is not None:
            log_true = np.maximum(log_true, math.log(self.clip))
        loss = -log_true
        loss_out[:] = loss
        # Accuracy as argmax: the first class reaching the top probability is the prediction.
        hit = np.argmax(p, axis=0) == labels
        w = np.ones(m) if w is None else w
        with np.errstate(invalid="ignore"):
            w_loss = np.where(w == 0, 0.0, w * loss)  # a weight 0 removes even an infinite loss
        # Brier of a row: sum_c (p_c - [c = y])^2 = sum_c p_c^2 - 2 p_y + 1
        brier = np.einsum("ij,ij->j", p, p) - 2.0 * p_true + 1.0
        w_hit = np.where(hit, w, 0.0)
        which = np.minimum((top * self.n_bins).astype(np.intp), self.n_bins - 1)
        inf = np.isinf(loss)
        state = np.concatenate([
            [w_loss.sum(), w_hit.sum(), (w * brier).sum(), w.sum(), m, np.count_nonzero(inf)],
            np.bincount(labels, minlength=C), np.bincount(labels, weights=w, minlength=C),
            np.bincount(labels, weights=w_loss, minlength=C),
            np.bincount(which, minlength=self.n_bins), np.bincount(which, weights=w, minlength=self.n_bins),
            np.bincount(which, weights=w_hit, minlength=self.n_bins),
            np.bincount(which, weights=w * top, minlength=self.n_bins)]).astype(np.float64)
        return state, (np.flatnonzero(inf)[:_FIRST_ROWS] + at if inf.any() else _NO_ROWS)

    def _add(self, state, inf_rows) -> None:
        with np.errstate(invalid="ignore"):
            self.state += state
        room = _FIRST_ROWS - len(self._first_inf)
        self._first_inf.extend(int(r) + self._row_base for r in inf_rows[:room])

    def merge(self, other: "ScoreAccumulator") -> "ScoreAccumulator":
        """Add the sums of ``other`` (disjoint rows scored with the same options); return self.

        Examples
        --------
        >>> import numpy as np
        >>> from crossent.evaluation import ScoreAccumulator, score_arrays
        >>> p = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]); y = np.array([0, 1, 1])
        >>> a, b = ScoreAccumulator(["0", "1"]), ScoreAccumulator(["0", "1"])
        >>> _ = a.update(p[:2].T, y[:2]); _ = b.update(p[2:].T, y[2:], start=2)
        >>> bool(a.merge(b).result().cross_entropy == score_arrays(p, y).cross_entropy)
        True
        """
        if other.classes != self.classes or other.state.size != self.state.size:
            raise ValueError("merge: the accumulators score different classes or bins")
        self._add(other.state, np.asarray(other._first_inf, dtype=np.int64) - other._row_base)
        self._first_inf.sort()
        self.weighted |= other.weighted
        return self

    def result(self) -> Scores:
        """The metrics of every row added so far."""
        if self.n_rows == 0:
            raise ValueError("no rows to score")
        C, B = len(self.classes), self.n_bins
        st = self.state
        loss_sum, hits, brier_sum, W = (float(v) for v in st[[_LOSS, _HITS, _BRIER, _WEIGHT]])
        class_rows, class_w, class_loss = (st[_TOTALS + j * C:_TOTALS + (j + 1) * C] for j in range(3))
        b0 = _TOTALS + 3 * C
        bin_rows, bin_w, bin_hits, bin_conf = (st[b0 + j * B:b0 + (j + 1) * B] for j in range(4))
        weighted = self.weighted
        with np.errstate(invalid="ignore", divide="ignore"):
            ce = loss_sum / W if W > 0 else math.nan
            # sklearn's brier_score_loss convention: the binary score is (p_1 - y)^2, half the sum.
            brier = brier_sum / W / (2.0 if C == 2 else 1.0) if W > 0 else math.nan
            per_class = class_loss / class_w
        curve = curve_from_sums(bin_rows, bin_w if weighted else None, bin_hits, bin_conf)
        return Scores(self.classes, self.n_rows, ce, ce / math.log(2.0), math.exp(ce) if ce < 709 else math.inf,
                      hits / W if W > 0 else math.nan, brier, curve.ece, class_rows.astype(np.int64),
                      per_class, int(st[_INF]), tuple(self._first_inf), self.clip, curve,
                      float(W) if weighted else None)


def state_size(n_classes: int, n_bins: int) -> int:
    """Length of a score state: 6 totals, 3 sums per class and 4 per calibration bin.

    The layout: weighted loss sum, weighted correct predictions, weighted Brier sum, weight
    sum, rows, rows of infinite loss; per class the rows, weights and weighted losses of the
    rows of that true class; per bin the rows, weights, weighted correct predictions and
    weighted top probabilities.
    """
    return _TOTALS + 3 * n_classes + 4 * n_bins


def _inf_rows(state: np.ndarray, loss: np.ndarray, at: int) -> np.ndarray:
    """The first rows (from ``at``) of a slice whose loss is infinite, from its state and losses."""
    if not state[_INF]:
        return _NO_ROWS
    return np.flatnonzero(np.isinf(loss))[:_FIRST_ROWS] + at


def _same_type_columns(scores) -> Optional[list]:
    """The class columns as a list of contiguous 1-D arrays of one dtype, float32 or float64
    (what the compiled kernel reads in place), or None."""
    columns = list(scores)
    dtype = getattr(columns[0], "dtype", None)
    if dtype not in (np.float32, np.float64):
        return None
    for c in columns:
        if not (isinstance(c, np.ndarray) and c.dtype == dtype and c.ndim == 1 and c.flags.c_contiguous):
            return None
    return columns


def _workers() -> int:
    return min(MAX_THREADS, os.cpu_count() or 1)


def _pool() -> Optional[ThreadPoolExecutor]:
    """The shared worker threads (None on a single CPU)."""
    workers = _workers()
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


def score_arrays(predictions, labels, *, sample_weight=None, classes=None, logits=False,
                 normalize=False, clip=None, n_bins=15, batch_size=1 << 18):
    r"""Score predictions held in memory: cross-entropy, accuracy, Brier score, calibration.

    .. math::

        H = -\frac{1}{N}\sum_n \log p_{n, y_n}, \qquad
        \mathrm{Brier} = \frac{1}{N}\sum_n \sum_c (p_{nc} - [c = y_n])^2, \qquad
        \mathrm{ECE} = \sum_k \frac{n_k}{N}\,\lvert\mathrm{acc}_k - \mathrm{conf}_k\rvert

    For two classes the Brier score is halved, i.e. :math:`(p_{n1} - y_n)^2`, as
    ``sklearn.metrics.brier_score_loss``. Bits are nats / log 2; perplexity is exp(H). With
    sample weights :math:`w_n` every mean is weighted, :math:`\sum_n w_n x_n / \sum_n w_n`
    (as ``sklearn.metrics.log_loss(..., sample_weight=w)``).

    Parameters
    ----------
    predictions : array_like, shape (N, C)
        Probabilities (rows summing to 1), or logits with ``logits=True``.
    labels : array_like of int, shape (N,)
        True class indices in [0, C).
    sample_weight : array_like, shape (N,), optional
        Finite non-negative weight of each row.
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
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if w.shape != (N,):
            raise ValueError(f"sample_weight has shape {w.shape}, but predictions has {N} rows")
    acc = ScoreAccumulator(names, logits=logits, normalize=normalize, clip=clip, n_bins=n_bins,
                           precision=getattr(predictions, "dtype", None))
    step = int(_checks.check_scalar(batch_size, "batch_size", low=1))
    for s in range(0, N, step):
        acc.update(x[s:s + step].T, y[s:s + step], weights=None if w is None else w[s:s + step], start=s)
    return acc.result()
