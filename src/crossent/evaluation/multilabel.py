"""Multi-label scoring: independent per-class probabilities against 0/1 labels.

Each class k is its own binary problem: row n holds the probability :math:`p_{nk}` that label
k is present and the label :math:`y_{nk} \\in \\{0, 1\\}`. The score of class k is its binary
cross-entropy, and the file's score their mean over classes. Sums are held in one float64
vector (the state), so parts of the data merge as in :class:`~crossent.evaluation.ScoreAccumulator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .. import _checks
from ..functional import log_sigmoid

__all__ = ["MultilabelScores", "MultilabelAccumulator", "score_multilabel_arrays"]

# Positions in a multi-label state: weight sum, rows, infinite elements, then per class the
# weighted loss sums and the weighted count of present labels.
_WEIGHT, _ROWS, _INF, _TOTALS = range(4)
_FIRST_ROWS = 5


@dataclass(frozen=True)
class MultilabelScores:
    """Binary cross-entropy (nats) of each class and their mean over classes.

    ``class_cross_entropy[k]`` is the (weighted) mean over rows of
    :math:`-[y_{nk} \\log p_{nk} + (1 - y_{nk}) \\log(1 - p_{nk})]`; ``cross_entropy`` is its
    mean over the classes; ``positives[k]`` the (weighted) fraction of rows with label k.
    """

    classes: tuple
    n_rows: int
    cross_entropy: float
    cross_entropy_bits: float
    class_cross_entropy: np.ndarray
    positives: np.ndarray
    infinite_rows: int
    first_infinite_rows: tuple
    clip: Optional[float]
    weight_sum: Optional[float] = None

    def to_dict(self) -> dict:
        """Plain Python values (for JSON); non-finite numbers become None."""

        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        return {
            "rows": self.n_rows,
            "multilabel": True,
            "classes": list(self.classes),
            "cross_entropy_nats": num(self.cross_entropy),
            "cross_entropy_bits": num(self.cross_entropy_bits),
            "per_class": [{"class": c, "positives": num(f), "cross_entropy_nats": num(h)}
                          for c, f, h in zip(self.classes, self.positives, self.class_cross_entropy)],
            "infinite_rows": {"count": self.infinite_rows, "first_rows": list(self.first_infinite_rows)},
            "clip": self.clip,
            "weight_sum": self.weight_sum,
        }


def _array_where(i: int, k: Optional[int]) -> str:
    return f"probs[{i}]" if k is None else f"probs[{i}, {k}]"


class MultilabelAccumulator:
    """Validates batches of multi-label predictions and accumulates per-class sums.

    Parameters
    ----------
    classes : sequence of str
        Class names (K >= 1).
    logits : bool, default False
        Batches hold logits (``log p = log_sigmoid(z)``, ``log(1 - p) = log_sigmoid(-z)``).
    clip : float, optional
        The log of each probability is at least ``log(clip)`` (finite losses).
    where, row_base, error
        As in :class:`~crossent.evaluation.ScoreAccumulator`.

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.evaluation import MultilabelAccumulator
    >>> acc = MultilabelAccumulator(["cat", "dog"])
    >>> acc.update([np.array([0.9, 0.2]), np.array([0.5, 0.5])], [np.array([1, 0]), np.array([1, 1])]).round(6).tolist()
    [0.399254, 0.458145]
    >>> r = acc.result()
    >>> r.class_cross_entropy.round(6).tolist(), round(r.cross_entropy, 6)
    ([0.164252, 0.693147], 0.4287)
    """

    def __init__(self, classes: Sequence[str], *, logits=False, clip=None,
                 where: Optional[Callable] = None, row_base=0, error=ValueError):
        self.classes = tuple(str(c) for c in classes)
        if not self.classes:
            raise ValueError("multi-label scoring needs at least one class")
        self.logits = bool(logits)
        self.clip = None if clip is None else _checks.check_scalar(clip, "clip", low=0.0, high=1.0,
                                                                    low_open=True, high_open=True)
        self._where = where or _array_where
        self._row_base = int(row_base)
        self._error_type = error
        self.state = np.zeros(_TOTALS + 2 * len(self.classes))
        self.weighted = False
        self._first_inf: list = []

    @property
    def n_rows(self) -> int:
        return int(self.state[_ROWS])

    def _error(self, row: int, k: Optional[int], message: str) -> ValueError:
        return self._error_type(f"{self._where(row, k)}: {message}")

    def update(self, scores, targets, *, weights=None, start: Optional[int] = None) -> np.ndarray:
        """Validate a batch and add it; return each row's mean binary cross-entropy over classes.

        ``scores`` and ``targets`` are class-major: ``(K, n)`` arrays or sequences of K columns.
        """
        K = len(self.classes)
        if len(scores) != K or len(targets) != K:
            raise ValueError(f"a batch has {len(scores)} probability and {len(targets)} label "
                             f"columns, expected {K} of each")
        z = np.array([np.asarray(c, dtype=np.float64) for c in scores])
        t = np.array([np.asarray(c, dtype=np.float64) for c in targets])
        if z.shape != t.shape or z.ndim != 2:
            raise ValueError(f"probabilities {z.shape} and labels {t.shape} differ in shape")
        n = z.shape[1]
        start = self.n_rows if start is None else int(start)
        w = np.ones(n)
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            bad = ~(np.isfinite(w) & (w >= 0)) if w.shape == (n,) else None
            if bad is None:
                raise ValueError(f"weights has shape {w.shape}, expected ({n},)")
            if bad.any():
                i = int(np.argmax(bad))
                raise self._error(start + i, None, f"sample weight {w[i]!r} is not finite and >= 0")
            self.weighted = True
        bad = ~((t == 0) | (t == 1))
        if bad.any():
            k, i = np.unravel_index(np.argmax(bad), bad.shape)
            raise self._error(start + i, k, f"label {t[k, i]!r} is not 0 or 1")
        if self.logits:
            bad = np.isnan(z)
            if bad.any():
                k, i = np.unravel_index(np.argmax(bad), bad.shape)
                raise self._error(start + i, k, "NaN is not a valid logit")
            # log p = log sigmoid(z), log(1 - p) = log sigmoid(-z)
            log_p = np.where(t == 1, log_sigmoid(z), log_sigmoid(-z))
        else:
            bad = ~((z >= 0) & (z <= 1))
            if bad.any():
                k, i = np.unravel_index(np.argmax(bad), bad.shape)
                raise self._error(start + i, k, f"probability {z[k, i]!r} is outside [0, 1]")
            with np.errstate(divide="ignore"):
                log_p = np.where(t == 1, np.log(z), np.log1p(-z))  # log(1 - p) = log1p(-p)
        if self.clip is not None:
            log_p = np.maximum(log_p, math.log(self.clip))
        loss = -log_p  # (K, n)
        with np.errstate(invalid="ignore"):
            w_loss = np.where(w == 0, 0.0, w * loss)  # a weight 0 removes even an infinite loss
        inf_rows = np.flatnonzero(np.isinf(loss).any(axis=0))
        self.state[_WEIGHT] += w.sum()
        self.state[_ROWS] += n
        self.state[_INF] += inf_rows.size
        self.state[_TOTALS:_TOTALS + K] += w_loss.sum(axis=1)
        self.state[_TOTALS + K:] += (t * w).sum(axis=1)
        room = _FIRST_ROWS - len(self._first_inf)
        self._first_inf.extend(int(r) + start + self._row_base for r in inf_rows[:room])
        return loss.mean(axis=0)

    def merge(self, other: "MultilabelAccumulator") -> "MultilabelAccumulator":
        """Add the sums of ``other`` (disjoint rows, same options); return self."""
        if other.classes != self.classes:
            raise ValueError("merge: the accumulators score different classes")
        self.state += other.state
        self._first_inf = sorted(self._first_inf + other._first_inf)[:_FIRST_ROWS]
        self.weighted |= other.weighted
        return self

    def result(self) -> MultilabelScores:
        """The scores of every row added so far."""
        if self.n_rows == 0:
            raise ValueError("no rows to score")
        K, W = len(self.classes), self.state[_WEIGHT]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = self.state[_TOTALS:_TOTALS + K] / W
            positives = self.state[_TOTALS + K:] / W
        ce = float(np.mean(per_class))
        return MultilabelScores(self.classes, self.n_rows, ce, ce / math.log(2.0), per_class, positives,
                                int(self.state[_INF]), tuple(self._first_inf), self.clip,
                                float(W) if self.weighted else None)


def score_multilabel_arrays(probs, targets, *, sample_weight=None, classes=None, logits=False,
                            clip=None) -> MultilabelScores:
    r"""Per-class binary cross-entropy of multi-label predictions, and its mean over classes.

    .. math::

        H_k = -\frac{1}{\sum_n w_n}\sum_n w_n \bigl[y_{nk}\log p_{nk}
              + (1 - y_{nk})\log(1 - p_{nk})\bigr], \qquad H = \frac{1}{K}\sum_k H_k

    Parameters
    ----------
    probs : array_like, shape (N, K)
        Independent probabilities of each label (or logits with ``logits=True``).
    targets : array_like, shape (N, K)
        0/1 labels.
    sample_weight : array_like, shape (N,), optional
    classes : sequence of str, optional
        Class names (default ``"0", ..., "K-1"``).
    logits, clip
        As in :class:`MultilabelAccumulator`.

    Returns
    -------
    MultilabelScores

    References
    ----------
    G. Tsoumakas, I. Katakis, "Multi-Label Classification: An Overview", IJDWM 3 (2007).

    Examples
    --------
    >>> from crossent.evaluation import score_multilabel_arrays
    >>> s = score_multilabel_arrays([[0.9, 0.5], [0.2, 0.5]], [[1, 1], [0, 1]])
    >>> s.class_cross_entropy.round(6).tolist(), round(s.cross_entropy, 6)
    ([0.164252, 0.693147], 0.4287)
    """
    p = _checks.check_floating(probs, "probs")
    y = np.asarray(targets)
    if p.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"probs and targets must both have shape (N, K); got {p.shape} and {y.shape}")
    if p.shape[0] == 0:
        raise ValueError("probs has no rows")
    names = [str(k) for k in range(p.shape[1])] if classes is None else list(classes)
    if len(names) != p.shape[1]:
        raise ValueError(f"classes names {len(names)} classes, but probs has {p.shape[1]} columns")
    acc = MultilabelAccumulator(names, logits=logits, clip=clip)
    acc.update(p.T, y.T, weights=sample_weight, start=0)
    return acc.result()
