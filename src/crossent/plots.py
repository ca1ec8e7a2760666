"""Figures for students and for model comparison, written as PNG files with matplotlib.

- :func:`reliability_diagram`: accuracy per confidence bin against the diagonal, with the ECE.
- :func:`learning_curves`: loss and accuracy against the epoch for several models side by side.
- :func:`neg_log_curve`: the cross-entropy ``-log p`` of one example against the probability
  ``p`` given to its true class, with the squared error beside it.

matplotlib is imported inside each function with the non-interactive ``Agg`` backend, so
importing this module costs nothing and never opens a window. Only the command line (the edge)
imports it; the core of crossent never does.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["reliability_diagram", "learning_curves", "neg_log_curve"]


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first use)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "crossent.plots needs matplotlib: pip install 'crossent[cli]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    plt = _pyplot()
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def reliability_diagram(curve, path, *, title=None):
    r"""Draw a reliability diagram of a :class:`~crossent.evaluation.CalibrationCurve` to a PNG.

    Each confidence bin :math:`[e_k, e_{k+1})` is a bar whose height is the fraction of correct
    top-label predictions in it, :math:`\mathrm{acc}_k`; the diagonal is perfect calibration
    (:math:`\mathrm{acc}_k = \mathrm{conf}_k`) and a red marker shows each bin's mean confidence.
    Bars below the diagonal mean over-confidence. The legend states the expected calibration
    error :math:`\mathrm{ECE} = \sum_k \frac{n_k}{N} |\mathrm{acc}_k - \mathrm{conf}_k|`.
    A lower panel shows how many rows fall in each bin. Empty bins are left blank.

    Parameters
    ----------
    curve : CalibrationCurve
        From :func:`crossent.evaluation.calibration_curve` (``bin_edges``, ``confidence``,
        ``accuracy``, ``counts``, ``ece``).
    path : str or os.PathLike
        PNG file to write; missing parent directories are created.
    title : str, optional
        Figure title (default "Reliability diagram").

    Returns
    -------
    pathlib.Path
        The path written.

    References
    ----------
    C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural Networks",
    ICML 2017.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation import calibration_curve
    >>> from crossent.plots import reliability_diagram
    >>> curve = calibration_curve([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], [0, 1, 1], n_bins=5)
    >>> out = reliability_diagram(curve, os.path.join(tempfile.mkdtemp(), "rel.png"))
    >>> out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    True
    """
    from pathlib import Path

    edges = np.asarray(curve.bin_edges, dtype=np.float64)
    acc = np.asarray(curve.accuracy, dtype=np.float64)
    conf = np.asarray(curve.confidence, dtype=np.float64)
    counts = np.asarray(curve.counts)
    if edges.ndim != 1 or edges.size != acc.size + 1 or not acc.shape == conf.shape == counts.shape:
        raise ValueError(
            f"curve: bin_edges must have one more entry than accuracy, confidence and counts; "
            f"got {edges.size} edges for {acc.size} bins")
    plt = _pyplot()
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(5.2, 6.0), sharex=True, gridspec_kw={"height_ratios": [3.2, 1]})
    left, width = edges[:-1], np.diff(edges)
    filled = counts > 0
    ax.bar(left[filled], acc[filled], width=width[filled], align="edge", color="#4C72B0",
           edgecolor="white", label=f"accuracy per bin (ECE = {curve.ece:.4f})")
    gap_bottom = np.minimum(acc, conf)[filled]
    ax.bar(left[filled], np.abs(acc - conf)[filled], bottom=gap_bottom, width=width[filled],
           align="edge", facecolor="none", edgecolor="#C44E52", hatch="///", linewidth=0.8,
           label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], color="0.25", linestyle="--", linewidth=1.2,
            label="perfect calibration")
    ax.plot(conf[filled], conf[filled], "o", color="#C44E52", markersize=4,
            label="mean confidence of bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction correct (accuracy)")
    ax.set_title(title if title is not None else "Reliability diagram")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    axn.bar(left, counts, width=width, align="edge", color="0.55", edgecolor="white")
    axn.set_xlabel("confidence (top predicted probability)")
    axn.set_ylabel("rows")
    axn.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def learning_curves(curves, path, *, loss_label="training loss", title=None, target_accuracy=None):
    r"""Draw loss and accuracy against the epoch for several models, side by side, to a PNG.

    Left panel: each model's loss per epoch (log scale when all values are positive); right
    panel: each model's accuracy per epoch, with an optional dotted line at a target accuracy.

    Parameters
    ----------
    curves : dict
        ``{model name: (losses, accuracies)}``, two sequences per model (one entry per epoch,
        the first being epoch 1; the sequences of different models may differ in length).
    path : str or os.PathLike
        PNG file to write; missing parent directories are created.
    loss_label : str, default "training loss"
        Label of the loss axis (say which loss is drawn, e.g. "training cross-entropy (nats)").
    title : str, optional
        Figure title.
    target_accuracy : float, optional
        Draw a horizontal line at this accuracy (e.g. 0.9).

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.plots import learning_curves
    >>> curves = {"cross-entropy": ([1.0, 0.5, 0.3], [0.5, 0.8, 0.9]),
    ...           "squared error": ([0.3, 0.28, 0.25], [0.4, 0.5, 0.7])}
    >>> out = learning_curves(curves, os.path.join(tempfile.mkdtemp(), "curves.png"))
    >>> out.stat().st_size > 0
    True
    """
    from pathlib import Path

    if not curves:
        raise ValueError("curves is empty: give at least one model")
    series = {}
    for name, pair in curves.items():
        if len(pair) != 2:
            raise ValueError(f"curves[{name!r}] must be a pair (losses, accuracies)")
        losses, accs = (np.asarray(v, dtype=np.float64) for v in pair)
        if losses.ndim != 1 or accs.ndim != 1 or losses.size == 0 or losses.size != accs.size:
            raise ValueError(f"curves[{name!r}]: losses and accuracies must be non-empty sequences "
                             f"of the same length, got {losses.size} and {accs.size}")
        series[name] = (losses, accs)
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for name, (losses, accs) in series.items():
        epochs = np.arange(1, losses.size + 1)
        line, = ax_loss.plot(epochs, losses, linewidth=1.8, label=name)
        ax_acc.plot(epochs, accs, linewidth=1.8, color=line.get_color(), label=name)
    if all((v > 0).all() for v, _ in series.values()):
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel(loss_label)
    ax_loss.set_title("Loss")
    ax_loss.grid(alpha=0.3, which="both")
    ax_loss.legend(frameon=False)
    if target_accuracy is not None:
        ax_acc.axhline(target_accuracy, color="0.3", linestyle=":", linewidth=1.2,
                       label=f"{100 * target_accuracy:g}% accuracy")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("training accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title("Accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(frameon=False, loc="lower right")
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def neg_log_curve(path, *, title=None):
    r"""Draw the loss of one example against the probability ``p`` given to its true class.

    Left: cross-entropy :math:`-\log p` and squared error :math:`(1-p)^2` (the one-hot target's
    error on the true class); right: their slopes :math:`-1/p` and :math:`-2(1-p)`. The
    cross-entropy grows without bound as a confident prediction turns out wrong
    (:math:`p \to 0`), and its slope is steepest there; the squared error stays below 1 and its
    slope is bounded, which is why it corrects bad mistakes slowly.

    Parameters
    ----------
    path : str or os.PathLike
        PNG file to write; missing parent directories are created.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.plots import neg_log_curve
    >>> out = neg_log_curve(os.path.join(tempfile.mkdtemp(), "neglog.png"))
    >>> out.read_bytes()[:4] == b"\x89PNG"
    True
    """
    from pathlib import Path

    p = np.linspace(0.005, 1.0, 400)
    plt = _pyplot()
    fig, (ax, ax_slope) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    ax.plot(p, -np.log(p), linewidth=2, label=r"cross-entropy $-\log p$")
    ax.plot(p, (1 - p) ** 2, linewidth=2, label=r"squared error $(1-p)^2$")
    ax.set_xlabel("p = probability given to the true class")
    ax.set_ylabel("loss of the example")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5.3)
    ax.set_title("Loss")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    ax.annotate("confidently wrong:\nlarge loss", xy=(0.02, -np.log(0.02)), xytext=(0.25, 4.2),
                arrowprops={"arrowstyle": "->", "color": "0.3"}, fontsize=9)
    ax_slope.plot(p, -1 / p, linewidth=2, label=r"cross-entropy: $-1/p$")
    ax_slope.plot(p, -2 * (1 - p), linewidth=2, label=r"squared error: $-2(1-p)$")
    ax_slope.set_xlabel("p = probability given to the true class")
    ax_slope.set_ylabel("slope d loss / d p")
    ax_slope.set_xlim(0, 1)
    ax_slope.set_ylim(-20, 0.5)
    ax_slope.set_title("Slope: how hard a mistake pushes back")
    ax_slope.grid(alpha=0.3)
    ax_slope.legend(frameon=False, loc="lower right")
    fig.suptitle(title if title is not None else
                 "Cross-entropy punishes confident mistakes; squared error barely does")
    fig.tight_layout()
    _save(fig, path)
    return Path(path)
