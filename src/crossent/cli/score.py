"""``crossent score`` and ``crossent compare``: models judged by cross-entropy on prediction files.

    crossent score preds.csv --label y
    crossent score submission.csv --truth solution.csv --id id --label y --json
    crossent compare a.parquet b.parquet --label y --bootstrap 2000 --seed 0
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..evaluation import compare_files, score_file
from ._app import CliError, app, console, err_console

__all__: list[str] = []

_FILES_HELP = (
    "CSV (.csv, .tsv, optionally .gz/.bz2/.zst), Parquet (.parquet, .pq) or NPZ "
    "(one 1-D member per column). Every numeric column other than --label and --id is a class "
    "(its name is the class name) unless --classes says which. Rows are numbered from 1 (the "
    "header is not a row)."
)
_LABEL = typer.Option(..., "--label", "-l", help="The label column (class names or 0-based class "
                      "indices; names only when every class name is an integer); in --truth when "
                      "that is given.")
_TRUTH = typer.Option(None, "--truth", help="A file holding the --id and --label columns, joined to "
                      "the predictions by id (the Kaggle solution file).")
_ID = typer.Option(None, "--id", help="The id column: joins --truth (or, in compare, the files to "
                   "the first one); never a class.")
_CLASSES = typer.Option(None, "--classes", help="The class columns, comma-separated, in order "
                        "(default: every numeric column other than --label and --id).")
_LOGITS = typer.Option(False, "--logits", help="The class columns hold logits (a softmax is applied).")
_NORMALIZE = typer.Option(False, "--normalize", help="Rescale each row of probabilities to sum to 1 "
                          "instead of rejecting rows that do not.")
_CLIP = typer.Option(None, "--clip", metavar="EPS", help="Cross-entropy of a row is -log(max(p, EPS)): "
                     "finite even when the true class got probability 0. Off by default.")
_BINS = typer.Option(15, "--bins", min=1, help="Bins of the reliability curve (expected calibration error).")
_JSON = typer.Option(False, "--json", help="Print the results as JSON (non-finite numbers as null).")
_BATCH = typer.Option(1 << 18, "--batch-size", min=1, help="Rows per batch read (memory stays bounded).")


def _classes(text: Optional[str]):
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if len(names) < 2:
        raise CliError(f"--classes: give at least two class columns, got {text!r}")
    return names


@contextlib.contextmanager
def _progress(enabled: bool):
    """A Rich progress bar on standard error when it is a terminal (and not for --json)."""
    if not (enabled and err_console.is_terminal):
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        def start(description, total):
            task = bar.add_task(description, total=total)
            return lambda n: bar.advance(task, n)

        yield start


def _fmt(x: float, digits: int = 4) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}"


def _infinite_note(name: str, s) -> Optional[str]:
    if not s.infinite_rows:
        return None
    rows = ", ".join(str(r) for r in s.first_infinite_rows)
    more = ", ..." if s.infinite_rows > len(s.first_infinite_rows) else ""
    many = "rows give" if s.infinite_rows > 1 else "row gives"
    return (f"{name}: {s.infinite_rows} {many} the true class probability 0, so the "
            f"cross-entropy is infinite (rows {rows}{more}); --clip EPS gives a finite number")


_METRICS = (
    ("cross-entropy (nats)", "cross_entropy"),
    ("cross-entropy (bits)", "cross_entropy_bits"),
    ("perplexity", "perplexity"),
    ("accuracy", "accuracy"),
    ("Brier score", "brier"),
    ("ECE", "ece"),
)


@app.command("score")
def score_cmd(
    pred: Path = typer.Argument(..., help="The prediction file: " + _FILES_HELP, show_default=False),
    label: str = _LABEL,
    truth: Optional[Path] = _TRUTH,
    id: Optional[str] = _ID,
    classes: Optional[str] = _CLASSES,
    logits: bool = _LOGITS,
    normalize: bool = _NORMALIZE,
    clip: Optional[float] = _CLIP,
    bins: int = _BINS,
    as_json: bool = _JSON,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a reliability diagram (PNG)."),
    batch_size: int = _BATCH,
) -> None:
    """Cross-entropy (nats, bits), perplexity, accuracy, Brier score, calibration of a prediction file."""
    with _progress(not as_json) as progress:
        s = score_file(pred, label=label, truth=truth, id=id, classes=_classes(classes), logits=logits,
                       normalize=normalize, clip=clip, n_bins=bins, batch_size=batch_size,
                       progress=progress)
    if plot is not None:
        try:
            from ..plots import reliability_diagram

            reliability_diagram(s.calibration, plot, title=f"Reliability of {pred.name}")
        except ImportError as exc:  # matplotlib is missing
            raise CliError(f"--plot: {exc}") from None
    if as_json:
        print(json.dumps({"file": str(pred), **s.to_dict()}, allow_nan=False))
        return
    table = Table(title=f"{pred.name}: {s.n_rows:,} rows, {len(s.classes)} classes"
                        + (f", log-loss clipped at {clip:g}" if clip is not None else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for text, attr in _METRICS:
        name = f"ECE ({bins} bins)" if attr == "ece" else text
        table.add_row(name, _fmt(getattr(s, attr)))
    console.print(table)
    per_class = Table(title="per class (rows whose true class it is)")
    per_class.add_column("class")
    per_class.add_column("rows", justify="right")
    per_class.add_column("cross-entropy (nats)", justify="right")
    for c, n, h in zip(s.classes, s.class_counts, s.class_cross_entropy):
        per_class.add_row(c, f"{int(n):,}", _fmt(float(h)))
    console.print(per_class)
    if plot is not None:
        console.print(f"reliability diagram: {plot}")
    note = _infinite_note(pred.name, s)
    if note:
        console.print(note, markup=False, soft_wrap=True)


@app.command("compare")
def compare_cmd(
    preds: List[Path] = typer.Argument(..., help="Two or more prediction files: " + _FILES_HELP,
                                       show_default=False),
    label: str = _LABEL,
    truth: Optional[Path] = _TRUTH,
    id: Optional[str] = _ID,
    classes: Optional[str] = _CLASSES,
    logits: bool = _LOGITS,
    normalize: bool = _NORMALIZE,
    clip: Optional[float] = _CLIP,
    bins: int = _BINS,
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, help="Bootstrap resamples."),
    confidence: float = typer.Option(0.95, "--confidence", min=0.5, max=0.999,
                                     help="Coverage of the confidence intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap (same seed, same intervals)."),
    as_json: bool = _JSON,
    batch_size: int = _BATCH,
) -> None:
    """Metrics side by side and, for each pair, the difference in cross-entropy with a paired
    bootstrap confidence interval and a verdict in plain words.

    Rows are paired by position (same rows, same order) or, with --id, by id. Up to 20,000 rows
    the bootstrap resamples rows; beyond, it resamples 10,000 buckets of rows assigned at random,
    so memory stays bounded however many rows there are.
    """
    if len(preds) < 2:
        raise CliError(f"compare needs at least two prediction files, got {len(preds)}")
    with _progress(not as_json) as progress:
        c = compare_files(preds, label=label, truth=truth, id=id, classes=_classes(classes),
                          logits=logits, normalize=normalize, clip=clip, n_bins=bins,
                          n_resamples=bootstrap, confidence=confidence, seed=seed,
                          batch_size=batch_size, progress=progress)
    if as_json:
        out = {
            "models": [{"name": n, "file": str(p), **s.to_dict()}
                       for n, p, s in zip(c.names, preds, c.scores)],
            "comparisons": [
                {"a": c.names[pc.a], "b": c.names[pc.b], "verdict": pc.verdict,
                 "difference_nats": None if pc.result is None else pc.result.difference,
                 "ci_low": None if pc.result is None else pc.result.low,
                 "ci_high": None if pc.result is None else pc.result.high,
                 "confidence": confidence, "n_resamples": bootstrap, "seed": seed}
                for pc in c.pairs],
            "bootstrap": {"method": c.method, "n_buckets": c.n_buckets if c.method == "buckets" else None},
        }
        print(json.dumps(out, allow_nan=False))
        return
    rows = c.scores[0].n_rows
    table = Table(title=f"{len(c.names)} models, {rows:,} rows")
    table.add_column("metric")
    for name in c.names:
        table.add_column(name, justify="right")
    for text, attr in _METRICS:
        table.add_row(f"ECE ({bins} bins)" if attr == "ece" else text,
                      *(_fmt(getattr(s, attr)) for s in c.scores))
    console.print(table)
    pct = f"{100 * confidence:g}%"
    units = "rows" if c.method == "examples" else f"{c.n_buckets:,} buckets of rows"
    diffs = Table(title=f"difference in cross-entropy (nats per row), paired bootstrap, "
                        f"{bootstrap:,} resamples of {units}, seed {seed}")
    diffs.add_column("b - a")
    diffs.add_column("difference", justify="right")
    diffs.add_column(f"{pct} CI", justify="right")
    for pc in c.pairs:
        r = pc.result
        pair = f"{c.names[pc.b]} - {c.names[pc.a]}"
        if r is None:
            diffs.add_row(pair, "-", "-")
        else:
            diffs.add_row(pair, f"{r.difference:+.4f}", f"[{r.low:+.4f}, {r.high:+.4f}]")
    console.print(diffs)
    for pc in c.pairs:
        console.print(pc.verdict, markup=False, soft_wrap=True)
