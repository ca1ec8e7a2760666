r"""Scene *focal*: on a dense-detection-like problem the focal loss finds the rare objects better.

A one-stage detector scores tens of thousands of anchors per image; almost all are background,
and most of those are *easy* (far from any object). Each easy anchor's cross-entropy is small,
but there are so many that together they dominate the loss and its gradient, and the model
spends its effort pushing them further down instead of telling the few objects from the
*hard* background that looks like them. The focal loss
:math:`\mathrm{FL}(p_t) = -(1 - p_t)^\gamma \log p_t` multiplies each anchor's cross-entropy by
:math:`(1 - p_t)^\gamma`, nearly 0 for an easy anchor (:math:`p_t \to 1`), so the hard ones
steer (T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal Loss for Dense Object
Detection", ICCV 2017).

The scene's anchors have two features, drawn with a seed: easy background around
:math:`(-3, 1)`, hard background around :math:`(0, -1.5)`, objects around :math:`(0, 1.5)`.
The objects are told from the hard background by the second feature, while the easy
background spreads along it. Logistic regression is trained with the same budget (the same
number of full-batch gradient steps at the same rate, from zero) for each :math:`\gamma`
(:math:`\gamma = 0` is cross-entropy) and judged on a fresh draw by the average precision of
the rare class, the area under its precision-recall curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..losses import sigmoid_binary_cross_entropy, sigmoid_focal_loss, value_and_grad
from ._scene import SceneTable, check_count

__all__ = ["FocalScene", "focal_scene", "make_anchors", "average_precision",
           "precision_recall_curve"]

_bce = value_and_grad(sigmoid_binary_cross_entropy)
_focal = value_and_grad(sigmoid_focal_loss)

# Centre and spread of each kind of anchor (two features).
_EASY = ((-3.0, 1.0), (1.0, 1.5))
_HARD = ((0.0, -1.5), (1.0, 1.0))
_OBJECT = ((0.0, 1.5), (1.0, 1.0))


def make_anchors(*, n_easy=10_000, n_hard=500, n_objects=100, seed=0):
    """Draw a dense-detection-like set of anchors: many easy negatives, few positives.

    Parameters
    ----------
    n_easy, n_hard, n_objects : int
        How many easy background anchors, hard background anchors and object anchors.
    seed : int, numpy.random.SeedSequence or numpy.random.Generator
        Seed of the draw.

    Returns
    -------
    X : ndarray, shape (n_easy + n_hard + n_objects, 2)
        The anchors' features (easy, then hard, then object rows).
    y : ndarray of int, shape (N,)
        1 for an object, 0 for background.
    easy : ndarray of bool, shape (N,)
        True for the easy background anchors.

    Examples
    --------
    >>> from crossent.demos import make_anchors
    >>> X, y, easy = make_anchors(n_easy=6, n_hard=3, n_objects=1)
    >>> X.shape, y.tolist(), int(easy.sum())
    ((10, 2), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 6)
    """
    counts = [check_count(v, name, low=1) for v, name in
              ((n_easy, "n_easy"), (n_hard, "n_hard"), (n_objects, "n_objects"))]
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(centre, spread, size=(n, 2))
                   for n, (centre, spread) in zip(counts, (_EASY, _HARD, _OBJECT))])
    y = np.repeat([0, 0, 1], counts)
    easy = np.repeat([True, False, False], counts)
    return X, y, easy


def _check_binary_scores(labels, scores):
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels and scores must be 1-D of the same length, got shapes "
                         f"{y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not y.any():
        raise ValueError("labels has no positive (1): precision and recall are undefined")
    _checks.check_finite_values(s, "scores")
    return y.astype(np.int64), s


def precision_recall_curve(labels, scores):
    r"""Precision and recall of "positive if score >= threshold" at every distinct score.

    With the rows sorted by decreasing score and ties kept together, threshold :math:`k` keeps
    :math:`TP_k` positives and :math:`FP_k` negatives: precision :math:`TP_k/(TP_k+FP_k)`,
    recall :math:`TP_k/P`.

    Parameters
    ----------
    labels : array_like of {0, 1}, shape (N,)
        1 for the positive (rare) class; at least one.
    scores : array_like, shape (N,)
        Higher means more likely positive (probabilities or logits: only the order counts).

    Returns
    -------
    precision, recall, thresholds : ndarray
        One entry per distinct score, thresholds decreasing (recall rising to 1).

    Examples
    --------
    >>> from crossent.demos import precision_recall_curve
    >>> p, r, t = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> p.tolist(), r.tolist(), t.tolist()
    ([1.0, 0.5, 0.6666666666666666, 0.5], [0.5, 0.5, 1.0, 1.0], [0.8, 0.4, 0.35, 0.1])
    """
    y, s = _check_binary_scores(labels, scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tp = np.cumsum(y)[last_of_tie]
    kept = last_of_tie + 1
    return tp / kept, tp / tp[-1], s[last_of_tie]


def average_precision(labels, scores):
    r"""Average precision: :math:`\mathrm{AP} = \sum_k (R_k - R_{k-1})\,P_k`, with :math:`R_0 = 0`.

    The precision at each threshold weighted by the recall it adds (the step-wise area under the
    precision-recall curve, without interpolation; scikit-learn's ``average_precision_score``).

    Parameters
    ----------
    labels : array_like of {0, 1}, shape (N,)
    scores : array_like, shape (N,)

    Returns
    -------
    float
        In (0, 1]; the fraction of positives for a random ranking, 1 for a perfect one.

    Examples
    --------
    >>> from crossent.demos import average_precision
    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)   # 0.5*1 + 0.5*2/3
    0.833333
    """
    return _area(*precision_recall_curve(labels, scores)[:2])


def _area(precision, recall):
    """Sum of (R_k - R_{k-1}) P_k over the thresholds, R_0 = 0."""
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _easy_gradient_share(logits, labels, easy, gamma):
    """Fraction of sum |d loss / d logit| carried by the easy rows (gamma 0: cross-entropy)."""
    targets = labels.astype(np.float64)
    if gamma == 0:
        _, g = _bce(logits, targets, reduction="sum")
    else:
        _, g = _focal(logits, targets, alpha=None, gamma=gamma, reduction="sum")
    g = np.abs(g)
    return float(g[easy].sum() / g.sum())


def _recall_at(precision, recall, floor):
    """The largest recall among thresholds whose precision is at least ``floor`` (0 if none)."""
    ok = precision >= floor
    return float(recall[ok].max()) if ok.any() else 0.0


@dataclass(frozen=True)
class FocalScene:
    r"""Results per :math:`\gamma` (``gammas[i]``; 0 is cross-entropy) on the held-out anchors.

    ``average_precision[i]`` and ``recall_at_precision[i]`` (the best recall whose precision is
    at least ``precision_floor``), ``curves[i]`` = (precision, recall), and ``easy_share[i]``:
    at the weights cross-entropy trained, the fraction of the loss's gradient
    :math:`\sum_n |\partial \ell_n / \partial z_n|` that the easy background carries under
    the loss with ``gammas[i]`` (how loudly the already-right anchors still speak).
    """

    gammas: tuple
    average_precision: np.ndarray
    recall_at_precision: np.ndarray
    curves: tuple
    easy_share: np.ndarray
    precision_floor: float
    epochs: int
    learning_rate: float
    counts: tuple

    def _index(self, gamma):
        return self.gammas.index(gamma)

    def table(self) -> SceneTable:
        rows = tuple((("0 (cross-entropy)" if g == 0 else f"{g:g}"),
                      f"{self.average_precision[i]:.3f}", f"{self.recall_at_precision[i]:.3f}",
                      f"{100 * self.easy_share[i]:.0f}%")
                     for i, g in enumerate(self.gammas))
        n_easy, n_hard, n_objects = self.counts
        return SceneTable(
            f"Anchors: {n_easy} easy background, {n_hard} hard background, {n_objects} objects; "
            f"{self.epochs} gradient steps each",
            ("gamma", "average precision", f"recall at precision {self.precision_floor:g}",
             "easy share of gradient at CE's weights"), rows)

    @property
    def verdict(self) -> tuple:
        """Two lines: focal (the best :math:`\\gamma`) against cross-entropy, and why."""
        ce = self._index(0)
        best = int(np.argmax(self.average_precision))
        g = self.gammas[best]
        return (f"Same budget, rare class: focal loss (gamma={g:g}) reaches average precision "
                f"{self.average_precision[best]:.3f} against cross-entropy's "
                f"{self.average_precision[ce]:.3f}; recall at precision {self.precision_floor:g}: "
                f"{self.recall_at_precision[best]:.3f} vs {self.recall_at_precision[ce]:.3f}.",
                f"At cross-entropy's weights the {self.counts[0]} easy background anchors, "
                f"already right, still carry {100 * self.easy_share[ce]:.0f}% of its gradient; "
                f"the focal factor (1 - p_t)^gamma cuts that to {100 * self.easy_share[best]:.1f}%.")

    def draw(self, out):
        """Write ``focal.png`` (precision-recall curves and the gamma sweep) into ``out``."""
        from pathlib import Path

        from .. import plots

        ce, best = self._index(0), int(np.argmax(self.average_precision))
        shown = {("cross-entropy" if self.gammas[i] == 0 else f"focal, gamma={self.gammas[i]:g}"):
                 (*self.curves[i], self.average_precision[i]) for i in dict.fromkeys((ce, best))}
        return [plots.precision_recall(
            shown, Path(out) / "focal.png",
            sweep=(self.gammas, self.average_precision, self.recall_at_precision),
            precision_floor=self.precision_floor,
            title="Rare objects among many easy background anchors: the same training budget")]


def focal_scene(*, seed=0, gammas=(0.0, 0.5, 1.0, 2.0, 5.0), epochs=30, learning_rate=2.0,
                precision_floor=0.5, n_easy=10_000, n_hard=500, n_objects=100):
    r"""Train logistic regression on :func:`make_anchors` with cross-entropy and focal losses.

    For each :math:`\gamma`, :class:`crossent.models.LogisticRegression` (``loss="focal"``, or
    ``"cross_entropy"`` for :math:`\gamma = 0`, no class weights) runs ``epochs`` full-batch
    gradient steps from zero on anchors drawn with ``seed``; the logits of a second, independent
    draw are ranked to score the objects.

    Parameters
    ----------
    seed : int, default 0
        Seed of the training and held-out draws.
    gammas : sequence of float, default (0, 0.5, 1, 2, 5)
        Focusing parameters to try; must contain 0 (cross-entropy).
    epochs : int, default 30
        Gradient steps (the budget, the same for every loss).
    learning_rate : float, default 2.0
    precision_floor : float, default 0.5
        Precision at which the recall is reported.
    n_easy, n_hard, n_objects : int
        Passed to :func:`make_anchors` for both draws.

    Returns
    -------
    FocalScene

    Examples
    --------
    >>> from crossent.demos import focal_scene
    >>> scene = focal_scene(gammas=(0.0, 2.0), seed=0)
    >>> bool(scene.average_precision[1] > scene.average_precision[0])
    True
    """
    from ..models import LogisticRegression

    gammas = tuple(_checks.check_scalar(g, "gammas", low=0.0) for g in gammas)
    if 0.0 not in gammas:
        raise ValueError(f"gammas must contain 0 (cross-entropy, the baseline), got {gammas}")
    epochs = check_count(epochs, "epochs", low=1)
    learning_rate = _checks.check_scalar(learning_rate, "learning_rate", low=0.0, low_open=True)
    precision_floor = _checks.check_scalar(precision_floor, "precision_floor", low=0.0, high=1.0)
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    sizes = dict(n_easy=n_easy, n_hard=n_hard, n_objects=n_objects)
    X, y, easy = make_anchors(seed=train_seed, **sizes)
    X_test, y_test, _ = make_anchors(seed=test_seed, **sizes)
    ap, recall, curves, logits = [], [], [], None
    for gamma in gammas:
        model = LogisticRegression(loss="cross_entropy" if gamma == 0 else "focal", gamma=gamma,
                                   solver="gd", learning_rate=learning_rate, max_iter=epochs,
                                   tol=None).fit(X, y)
        precision, rec, _ = precision_recall_curve(y_test, model.decision_function(X_test))
        ap.append(_area(precision, rec))
        recall.append(_recall_at(precision, rec, precision_floor))
        curves.append((precision, rec))
        if gamma == 0:
            logits = model.decision_function(X)
    share = [_easy_gradient_share(logits, y, easy, gamma) for gamma in gammas]
    return FocalScene(gammas, np.array(ap), np.array(recall), tuple(curves), np.array(share),
                      precision_floor, epochs, learning_rate, (n_easy, n_hard, n_objects))
