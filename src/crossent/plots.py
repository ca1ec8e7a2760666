"""Figures for students and for model comparison, written as PNG files with matplotlib.

- :func:`reliability_diagram`: accuracy per confidence bin against the diagonal, with the ECE.

matplotlib is imported inside each function with the non-interactive ``Agg`` backend, so
importing this module costs nothing and never opens a window. Only the command line (the edge)
imports it; the core of crossent never does.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["reliability_diagram"]


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
