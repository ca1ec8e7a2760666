r"""Scene *iris*: softmax regression on Iris with cross-entropy, squared error and focal loss.

The same model (:class:`crossent.models.SoftmaxRegression`), the same data, the same step size;
only the loss differs. Every epoch the training cross-entropy of each model is recorded (the
common yardstick of the curves), and the three are compared on held-out flowers by
cross-entropy with a paired bootstrap (:func:`crossent.evaluation.paired_bootstrap`).
Squared error on a softmax learns slowly where the model is confidently wrong, because its
gradient carries the softmax's slope; cross-entropy's gradient is (prediction - target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..datasets import load_iris, train_test_split
from ..losses import softmax_cross_entropy
from ._scene import SceneTable, check_count

__all__ = ["IrisScene", "iris_scene", "MODELS", "TARGET_ACCURACY"]

TARGET_ACCURACY = 0.9
#: Name shown -> loss of SoftmaxRegression; all three use the same learning rate.
MODELS = {"cross-entropy": "cross_entropy", "squared error": "mse", "focal (gamma=2)": "focal"}


def _epochs_to(accuracies, target):
    """First epoch (from 1) whose training accuracy reaches ``target``, or None."""
    hits = np.flatnonzero(np.asarray(accuracies) >= target)
    return int(hits[0]) + 1 if hits.size else None


@dataclass(frozen=True)
class IrisScene:
    """The three fitted models (``models[name]``), their training cross-entropy per epoch
    (``train_ce[name]``), held-out per-flower cross-entropy (``held_out[name]``), the paired
    bootstraps of cross-entropy against each other model (``comparisons[other]``), and the data."""

    models: dict
    train_ce: dict
    held_out: dict
    comparisons: dict
    data: tuple
    epochs: int
    learning_rate: float

    def epochs_to_target(self, name):
        """First epoch at which ``name`` reached :data:`TARGET_ACCURACY` on the training rows."""
        return _epochs_to(self.models[name].accuracy_curve_, TARGET_ACCURACY)

    def table(self) -> SceneTable:
        X_train, y_train, X_test, y_test = self.data
        rows = []
        for name, model in self.models.items():
            reached = self.epochs_to_target(name)
            rows.append((name, f"not in {self.epochs}" if reached is None else str(reached),
                         f"{model.score(X_train, y_train):.3f}", f"{model.score(X_test, y_test):.3f}",
                         f"{float(np.mean(self.held_out[name])):.4f}"))
        return SceneTable("Softmax regression on Iris, three losses, same learning rate",
                          ("trained with", f"epochs to {100 * TARGET_ACCURACY:g}%", "train acc",
                           "test acc", "held-out CE (nats)"), tuple(rows))

    @property
    def verdict(self) -> tuple:
        """Two lines: the paired-bootstrap verdict of cross-entropy against each other loss."""
        from ..evaluation import verdict

        first = next(iter(self.models))
        return tuple(verdict(first, other, result) for other, result in self.comparisons.items())

    def draw(self, out):
        """Write ``learning_curves.png``, ``reliability.png`` and ``neg_log_p.png`` into ``out``."""
        from pathlib import Path

        from .. import plots
        from ..evaluation import calibration_curve

        out = Path(out)
        names = list(self.models)
        _, _, X_test, y_test = self.data
        return [
            plots.learning_curves(
                {name: (self.train_ce[name], self.models[name].accuracy_curve_) for name in names},
                out / "learning_curves.png", loss_label="training cross-entropy (nats)",
                title=f"Iris, learning rate {self.learning_rate:g}: the same step, three losses",
                target_accuracy=TARGET_ACCURACY),
            plots.reliability_diagram(
                calibration_curve(self.models[names[0]].predict_proba(X_test), y_test, n_bins=5),
                out / "reliability.png",
                title=f"Cross-entropy model, {len(y_test)} held-out flowers"),
            plots.neg_log_curve(out / "neg_log_p.png"),
        ]


def iris_scene(*, epochs=100, learning_rate=0.5, seed=0, n_resamples=2000, on_epoch=None):
    """Train softmax regression on Iris with the three losses of :data:`MODELS` and compare them.

    80% of the flowers train (standardised with the training rows' statistics), 20% are held out.

    Parameters
    ----------
    epochs : int, default 100
        Epochs of full-batch gradient descent per model.
    learning_rate : float, default 0.5
        The step size shared by the three models.
    seed : int, default 0
        Seed of the train/test split, the models and the bootstrap.
    n_resamples : int, default 2000
        Resamples of the paired bootstrap.
    on_epoch : callable, optional
        Called as ``on_epoch(name, epoch, model, train_ce)`` after every epoch of every model.

    Returns
    -------
    IrisScene

    Examples
    --------
    >>> from crossent.demos import iris_scene
    >>> scene = iris_scene(epochs=50, n_resamples=200)
    >>> scene.epochs_to_target("cross-entropy") < scene.epochs_to_target("squared error")
    True
    """
    from ..evaluation import paired_bootstrap
    from ..models import SoftmaxRegression

    epochs = check_count(epochs, "epochs", low=1)
    learning_rate = _checks.check_scalar(learning_rate, "learning_rate", low=0.0, low_open=True)
    iris = load_iris()
    train, test = train_test_split(iris.target, test_size=0.2, random_state=seed)
    # Standardise with the training rows' statistics only (the test rows stay unseen).
    mean, std = iris.data[train].mean(axis=0), iris.data[train].std(axis=0)
    X = (iris.data - mean) / std
    X_train, y_train, X_test, y_test = X[train], iris.target[train], X[test], iris.target[test]
    models, train_ce = {}, {}
    for name, loss in MODELS.items():
        ce = train_ce[name] = []

        def record(epoch, model, name=name, ce=ce):
            ce.append(float(softmax_cross_entropy(model.decision_function(X_train), y_train)))
            if on_epoch is not None:
                on_epoch(name, epoch, model, ce[-1])

        model = SoftmaxRegression(loss=loss, solver="gd", learning_rate=learning_rate,
                                  max_iter=epochs, tol=None, random_state=seed)
        models[name] = model.fit(X_train, y_train, callback=record)
    held_out = {name: softmax_cross_entropy(m.decision_function(X_test), y_test, reduction="none")
                for name, m in models.items()}
    names = list(MODELS)
    comparisons = {other: paired_bootstrap(held_out[names[0]], held_out[other],
                                           n_resamples=n_resamples, confidence=0.95, seed=seed)
                   for other in names[1:]}
    return IrisScene(models, train_ce, held_out, comparisons, (X_train, y_train, X_test, y_test),
                     epochs, learning_rate)
