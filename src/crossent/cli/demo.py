"""``crossent demo``: why cross-entropy trains classifiers faster than squared error, on Iris.

    crossent demo --out crossent-demo --epochs 100 --seed 0
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..datasets import load_iris, train_test_split
from ..losses import softmax_cross_entropy
from ..models import SoftmaxRegression
from ._app import app, console

__all__: list[str] = []

TARGET_ACCURACY = 0.9
# Name shown -> loss of SoftmaxRegression; all three use the same learning rate.
MODELS = {"cross-entropy": "cross_entropy", "squared error": "mse", "focal (gamma=2)": "focal"}


def _epochs_to(accuracies, target):
    """First epoch (from 1) whose training accuracy reaches ``target``, or None."""
    hits = np.flatnonzero(np.asarray(accuracies) >= target)
    return int(hits[0]) + 1 if hits.size else None


def _train_all(X_train, y_train, *, epochs, learning_rate, seed):
    """Fit the three models with a live progress display; also record the training
    cross-entropy of every model at every epoch (the common yardstick of the curves)."""
    fitted, train_ce = {}, {}
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("train acc {task.fields[acc]:.3f}  train CE {task.fields[ce]:.4f}"),
                  console=console, transient=False) as progress:
        for name, loss in MODELS.items():
            task = progress.add_task(name, total=epochs, acc=0.0, ce=float("nan"))
            ce = train_ce[name] = []

            def on_epoch(epoch, model, task=task, ce=ce):
                ce.append(float(softmax_cross_entropy(model.decision_function(X_train), y_train)))
                progress.update(task, completed=epoch, acc=model.accuracy_curve_[-1], ce=ce[-1])

            model = SoftmaxRegression(loss=loss, solver="gd", learning_rate=learning_rate,
                                      max_iter=epochs, tol=None, random_state=seed)
            fitted[name] = model.fit(X_train, y_train, callback=on_epoch)
    return fitted, train_ce


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("crossent-demo"), "--out", help="Directory for the PNG plots."),
    epochs: int = typer.Option(100, "--epochs", min=1, max=100_000,
                               help="Epochs of full-batch gradient descent per model."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/test split and the bootstrap."),
    learning_rate: float = typer.Option(0.5, "--learning-rate", min=1e-6, max=100.0,
                                        help="Step size shared by the three models."),
) -> None:
    """Train softmax regression on Iris with cross-entropy, squared error and focal loss;
    compare them by held-out cross-entropy and draw the learning curves."""
    from ..evaluation import calibration_curve, paired_bootstrap, verdict
    from .. import plots

    start = time.perf_counter()
    iris = load_iris()
    train, test = train_test_split(iris.target, test_size=0.2, random_state=seed)
    # Standardise with the training rows' statistics only (the test rows stay unseen).
    mean, std = iris.data[train].mean(axis=0), iris.data[train].std(axis=0)
    X = (iris.data - mean) / std
    X_train, y_train, X_test, y_test = X[train], iris.target[train], X[test], iris.target[test]
    console.print(f"Iris: {len(train)} training and {len(test)} held-out flowers, "
                  f"{X.shape[1]} features (standardised), {len(iris.target_names)} species; "
                  f"full-batch gradient descent, learning rate {learning_rate:g}, {epochs} epochs.")

    fitted, train_ce = _train_all(X_train, y_train, epochs=epochs, learning_rate=learning_rate,
                                  seed=seed)

    held_out = {name: softmax_cross_entropy(m.decision_function(X_test), y_test, reduction="none")
                for name, m in fitted.items()}
    table = Table(title="Softmax regression on Iris, three losses, same learning rate")
    table.add_column("trained with")
    table.add_column(f"epochs to {100 * TARGET_ACCURACY:g}%", justify="right")
    table.add_column("train acc", justify="right")
    table.add_column("test acc", justify="right")
    table.add_column("held-out CE (nats)", justify="right")
    for name, model in fitted.items():
        reached = _epochs_to(model.accuracy_curve_, TARGET_ACCURACY)
        table.add_row(name, f"not in {epochs}" if reached is None else str(reached),
                      f"{model.score(X_train, y_train):.3f}", f"{model.score(X_test, y_test):.3f}",
                      f"{float(np.mean(held_out[name])):.4f}")
    console.print(table)

    console.print("Paired bootstrap of the per-flower held-out cross-entropy "
                  f"({len(test)} flowers, 2000 resamples):")
    names = list(MODELS)
    for other in names[1:]:
        result = paired_bootstrap(held_out[names[0]], held_out[other], n_resamples=2000,
                                  confidence=0.95, seed=seed)
        console.print(f"  {verdict(names[0], other, result)}")

    out.mkdir(parents=True, exist_ok=True)
    written = [
        plots.learning_curves(
            {name: (train_ce[name], fitted[name].accuracy_curve_) for name in names},
            out / "learning_curves.png", loss_label="training cross-entropy (nats)",
            title=f"Iris, learning rate {learning_rate:g}: the same step, three losses",
            target_accuracy=TARGET_ACCURACY),
        plots.reliability_diagram(
            calibration_curve(fitted[names[0]].predict_proba(X_test), y_test, n_bins=5),
            out / "reliability.png",
            title=f"Cross-entropy model, {len(test)} held-out flowers"),
        plots.neg_log_curve(out / "neg_log_p.png"),
    ]
    console.print("Plots: " + ", ".join(str(p) for p in written))
    console.print(f"Done in {time.perf_counter() - start:.1f} s.")
