r"""Figures for students and for model comparison, written as PNG files with matplotlib.

- :func:`reliability_diagram`: accuracy per confidence bin against the diagonal, with the ECE.
- :func:`learning_curves`: loss and accuracy against the epoch for several models side by side.
- :func:`neg_log_curve`: the cross-entropy ``-log p`` of one example against the probability
  ``p`` given to its true class, with the squared error beside it.
- :func:`neuron_traces`: one sigmoid neuron's output, loss and :math:`\sigma'(z)` over the steps of
  gradient descent, for several losses.
- :func:`precision_recall`: precision-recall curves of the rare class, with a sweep of one
  hyperparameter (the focal loss's :math:`\gamma`).
- :func:`doors`: the doors lesson: probability of what happened per door (a product) and its
  :math:`-\ln` (a sum), and the animals table.

matplotlib is imported inside each function with the non-interactive ``Agg`` backend, so
importing this module costs nothing and never opens a window. Only the command line (the edge)
imports it; the core of crossent never does.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["reliability_diagram", "learning_curves", "neg_log_curve", "neuron_traces",
           "precision_recall", "doors"]


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


def _series(value, name, length=None):
    """A 1-D float array, non-empty, of the given length if one is given."""
    v = np.asarray(value, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or (length is not None and v.size != length):
        want = "a non-empty 1-D sequence" if length is None else f"a 1-D sequence of length {length}"
        raise ValueError(f"{name} must be {want}, got shape {v.shape}")
    return v


def neuron_traces(traces, path, *, checkpoint=None, title=None):
    r"""Draw one neuron's output, loss and :math:`\sigma'(z)` against the step, for each loss.

    Parameters
    ----------
    traces : dict
        ``{loss name: (outputs, losses, slopes)}``, three sequences of equal length (step 0 first):
        the output :math:`\sigma(z)`, the loss, and :math:`\sigma'(z)`.
    path : str or os.PathLike
        PNG file to write; missing parent directories are created.
    checkpoint : int, optional
        Step to mark with a vertical dotted line.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.plots import neuron_traces
    >>> traces = {"cross-entropy": ([0.98, 0.5, 0.1], [4.0, 0.7, 0.1], [0.02, 0.25, 0.09])}
    >>> out = neuron_traces(traces, os.path.join(tempfile.mkdtemp(), "neuron.png"))
    >>> out.read_bytes()[:4] == b"\x89PNG"
    True
    """
    from pathlib import Path

    if not traces:
        raise ValueError("traces is empty: give at least one loss")
    series = {}
    for name, triple in traces.items():
        if len(triple) != 3:
            raise ValueError(f"traces[{name!r}] must be a triple (outputs, losses, slopes)")
        outputs = _series(triple[0], f"traces[{name!r}] outputs")
        series[name] = (outputs, *(_series(v, f"traces[{name!r}] {what}", outputs.size)
                                   for v, what in zip(triple[1:], ("losses", "slopes"))))
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0))
    labels = ("output a = sigma(z)", "loss (relative to its start)", "sigma'(z) = a (1 - a)")
    for name, (outputs, losses, slopes) in series.items():
        steps = np.arange(outputs.size)
        line, = axes[0].plot(steps, outputs, linewidth=2, label=name)
        axes[1].plot(steps, losses / losses[0], linewidth=2, color=line.get_color(), label=name)
        axes[2].plot(steps, slopes, linewidth=2, color=line.get_color(), label=name)
    for ax, label in zip(axes, labels):
        ax.set_xlabel("gradient step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if checkpoint is not None:
            ax.axvline(checkpoint, color="0.4", linestyle=":", linewidth=1.2)
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("Output (target 0)")
    axes[1].set_title("Loss / loss at step 0")
    axes[2].set_title("The slope squared error's gradient carries")
    axes[0].legend(frameon=False)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def precision_recall(curves, path, *, sweep=None, precision_floor=None, title=None):
    r"""Draw precision-recall curves of the rare class and, optionally, a hyperparameter sweep.

    Parameters
    ----------
    curves : dict
        ``{model name: (precision, recall, average_precision)}``; precision and recall are
        sequences of equal length (one point per threshold).
    path : str or os.PathLike
        PNG file to write; missing parent directories are created.
    sweep : tuple, optional
        ``(gammas, average_precisions, recalls)``: drawn in a second panel against
        :math:`\gamma`.
    precision_floor : float, optional
        Draw a horizontal line at this precision (the one the recall is reported at).
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.plots import precision_recall
    >>> curves = {"model": ([1.0, 0.5, 0.67, 0.5], [0.5, 0.5, 1.0, 1.0], 0.83)}
    >>> out = precision_recall(curves, os.path.join(tempfile.mkdtemp(), "pr.png"))
    >>> out.stat().st_size > 0
    True
    """
    from pathlib import Path

    if not curves:
        raise ValueError("curves is empty: give at least one model")
    checked = {}
    for name, triple in curves.items():
        if len(triple) != 3:
            raise ValueError(f"curves[{name!r}] must be a triple (precision, recall, average_precision)")
        precision = _series(triple[0], f"curves[{name!r}] precision")
        checked[name] = (precision, _series(triple[1], f"curves[{name!r}] recall", precision.size),
                         float(triple[2]))
    plt = _pyplot()
    panels = 2 if sweep is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.4), squeeze=False)
    ax = axes[0, 0]
    for name, (precision, recall, ap) in checked.items():
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="post", linewidth=1.8,
                label=f"{name} (AP {ap:.3f})")
    if precision_floor is not None:
        ax.axhline(precision_floor, color="0.4", linestyle=":", linewidth=1.2,
                   label=f"precision {precision_floor:g}")
    ax.set_xlabel("recall (fraction of objects found)")
    ax.set_ylabel("precision (fraction of detections that are objects)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall of the rare class (held out)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="upper right")
    if sweep is not None:
        gammas, aps, recalls = (_series(v, name, len(sweep[0])) for v, name in
                                zip(sweep, ("sweep gammas", "sweep average precisions",
                                            "sweep recalls")))
        ax2 = axes[0, 1]
        ax2.plot(gammas, aps, "o-", linewidth=1.8, label="average precision")
        ax2.plot(gammas, recalls, "s--", linewidth=1.8,
                 label="recall at precision " + (f"{precision_floor:g}" if precision_floor
                                                 is not None else "floor"))
        ax2.set_xlabel("gamma (0 = cross-entropy)")
        ax2.set_ylabel("held-out score of the rare class")
        ax2.set_title("The focusing parameter")
        ax2.grid(alpha=0.3)
        ax2.legend(frameon=False)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return Path(path)


def doors(models, outcome, animal_probs, animals, found, path, *, title=None):
    r"""Draw the doors lesson: what each model gave to what happened, and the animals table.

    Left: for each model, the probability it gave to what happened behind each door (bars), the
    product (the likelihood) and the sum of :math:`-\ln` (the cross-entropy) in the legend.
    Right: the animals table (one row per door) with the animal found outlined.

    Parameters
    ----------
    models : dict
        ``{model name: (gift_probs, happened)}``: P(gift) per door and the probability given to
        what happened per door.
    outcome : sequence of {0, 1}
        1 where a gift was found (labels the doors).
    animal_probs : array_like, shape (doors, animals)
        Probability of each animal behind each door.
    animals : sequence of str
        The animals' names (columns of ``animal_probs``).
    found : sequence of int
        Column of the animal found behind each door.
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
    >>> from crossent.plots import doors
    >>> out = doors({"good": ([0.8, 0.7, 0.1], [0.8, 0.7, 0.9])}, [1, 1, 0],
    ...             [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.5, 0.4]],
    ...             ["duck", "beaver", "walrus"], [0, 2, 2],
    ...             os.path.join(tempfile.mkdtemp(), "doors.png"))
    >>> out.read_bytes()[:4] == b"\x89PNG"
    True
    """
    from pathlib import Path

    if not models:
        raise ValueError("models is empty: give at least one model")
    n_doors = len(outcome)
    table = np.asarray(animal_probs, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != len(animals) or len(found) != table.shape[0]:
        raise ValueError(f"animal_probs must have shape (doors, {len(animals)}) with one found "
                         f"animal per door, got shape {table.shape} and {len(found)} finds")
    happened = {name: _series(pair[1], f"models[{name!r}] happened", n_doors)
                for name, pair in models.items()}
    plt = _pyplot()
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(12.0, 4.4))
    width = 0.8 / len(happened)
    x = np.arange(n_doors)
    for i, (name, probs) in enumerate(happened.items()):
        likelihood, ce = float(np.prod(probs)), float(-np.sum(np.log(probs)))
        bars = ax.bar(x + (i - (len(happened) - 1) / 2) * width, probs, width=width,
                      label=f"{name}: product {likelihood:.3g}, sum of -ln {ce:.3f}")
        ax.bar_label(bars, labels=[f"{p:g}" for p in probs], fontsize=8)
    ax.set_xticks(x, [f"door {d + 1}\n({'gift' if o else 'nothing'})" for d, o in enumerate(outcome)])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("probability the model gave to what happened")
    ax.set_title("Likelihood = product; cross-entropy = sum of -ln")
    ax.legend(frameon=False, loc="upper right", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    image = ax_t.imshow(table, cmap="Blues", vmin=0, vmax=1)
    for d in range(table.shape[0]):
        for a in range(table.shape[1]):
            ax_t.text(a, d, f"{table[d, a]:g}", ha="center", va="center",
                      color="white" if table[d, a] > 0.6 else "black")
        ax_t.add_patch(plt.Rectangle((found[d] - 0.5, d - 0.5), 1, 1, fill=False,
                                     edgecolor="#C44E52", linewidth=2.5))
    ax_t.set_xticks(np.arange(len(animals)), list(animals))
    ax_t.set_yticks(np.arange(table.shape[0]), [f"door {d + 1}" for d in range(table.shape[0])])
    picked = table[np.arange(table.shape[0]), np.asarray(found)]
    ax_t.set_title(f"Animals (found: outlined): product {np.prod(picked):.3g}, "
                   f"sum of -ln {-np.sum(np.log(picked)):.3f}", fontsize=10)
    fig.colorbar(image, ax=ax_t, fraction=0.046, pad=0.04, label="probability")
    fig.suptitle(title if title is not None else "Three doors: what the model expected, and what happened")
    fig.tight_layout()
    _save(fig, path)
    return Path(path)
