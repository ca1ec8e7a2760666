"""``crossent score`` and ``crossent compare``: models judged by cross-entropy on prediction files.

    crossent score preds.csv --label y
    crossent score submission.csv --truth solution.csv --id id --label y --json
    crossent compare a.parquet b.parquet --label y --bootstrap 2000 --seed 0
    crossent score 'preds/*.parquet' --label y --workers 4        # a local Dask cluster
    crossent score preds.parquet --label y --weight w
    crossent score tags.parquet --multilabel --label y_cat,y_dog --classes cat,dog

The library and Rich's progress and tables are imported when a command runs, not when the
command line starts (``crossent --help`` stays quick).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import List, Optional


from ._app import Argument, CliError, Option, command, console, err_console

__all__: list[str] = []

_FILES_HELP = (
    "CSV (.csv, .tsv, optionally .gz/.bz2/.zst), Parquet (.parquet, .pq), NPZ (one 1-D member "
    "per column), or a glob ('preds/*.parquet', quoted) or directory of Parquet files. Every "
    "numeric column other than --label, --id and --weight is a class (its name is the class "
    "name) unless --classes says which. Rows are numbered from 1 (the header is not a row)."
)
_LABEL = Option(..., "--label", "-l", help="The label column (class names or 0-based class "
                "indices; names only when every class name is an integer); in --truth when "
                "that is given.")
_TRUTH = Option(None, "--truth", help="A file holding the --id and --label columns, joined to "
                "the predictions by id (the Kaggle solution file).")
_ID = Option(None, "--id", help="The id column: joins --truth (or, in compare, the files to "
             "the first one); never a class.")
_CLASSES = Option(None, "--classes", help="The class columns, comma-separated, in order "
                  "(default: every numeric column other than --label and --id).")
_LOGITS = Option(False, "--logits", help="The class columns hold logits (a softmax is applied).")
_NORMALIZE = Option(False, "--normalize", help="Rescale each row of probabilities to sum to 1 "
                    "instead of rejecting rows that do not.")
_CLIP = Option(None, "--clip", metavar="EPS", help="Cross-entropy of a row is -log(max(p, EPS)): "
               "finite even when the true class got probability 0. Off by default.")
_BINS = Option(15, "--bins", min=1, max=10_000,
               help="Bins of the reliability curve (expected calibration error), 1 to 10000.")
_JSON = Option(False, "--json", help="Print the results as JSON (non-finite numbers as null).")
_BATCH = Option(1 << 18, "--batch-size", min=1, help="Rows per batch read (memory stays bounded).")
_WORKERS = Option(None, "--workers", min=1, help="Score on a local Dask cluster of this many "
                  "worker processes (127.0.0.1); needs the dask extra.")
_SCHEDULER = Option(None, "--scheduler", metavar="ADDRESS", help="Score on a running Dask "
                    "cluster (tcp://host:8786); needs the dask extra.")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _plot_path(plot: Optional[Path]) -> Optional[Path]:
    """The file --plot will write (.png added when there is no suffix), checked before the work."""
    if plot is None:
        return None
    if plot.is_dir():
        raise CliError(f"--plot {plot}: is a directory; give a file name such as {plot / 'reliability.png'}")
    if plot.suffix == "":
        plot = plot.with_suffix(".png")
    if plot.suffix.lower() not in _PLOT_SUFFIXES:
        raise CliError(f"--plot {plot}: the diagram is written as PNG, PDF or SVG "
                       f"({', '.join(_PLOT_SUFFIXES)}), not {plot.suffix!r}")
    if plot.is_dir():
        raise CliError(f"--plot {plot}: is a directory")
    parent = plot.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CliError(f"--plot {plot}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (plot.exists() and not os.access(plot, os.W_OK)):
        raise CliError(f"--plot {plot}: not writable (permission denied)")
    return plot


def _dask_frames(paths, workers, scheduler, truth, id):
    """Dask DataFrames of the inputs for --workers / --scheduler (None without them), checked
    before a cluster starts."""
    if workers is None and scheduler is None:
        return None
    if workers is not None and scheduler is not None:
        raise CliError("give --workers (a local cluster) or --scheduler (a running one), not both")
    if truth is not None or id is not None:
        raise CliError("--truth and --id are not supported with --workers/--scheduler")
    try:
        from ..evaluation.distributed import read_parquet_dask

        return [read_parquet_dask(p) for p in paths]
    except ImportError:
        raise CliError("--workers and --scheduler need Dask: pip install 'crossent[dask]'") from None


def _cluster(workers: Optional[int], scheduler: Optional[str]):
    """A Dask client for --workers / --scheduler (None without them)."""
    if workers is None and scheduler is None:
        return contextlib.nullcontext(None)
    try:
        from ..evaluation.distributed import dask_client

        return dask_client(workers=workers, scheduler=scheduler)
    except ImportError:
        raise CliError("--workers and --scheduler need Dask: pip install 'crossent[dask]'") from None
    except OSError as exc:
        raise CliError(f"--scheduler {scheduler}: cannot connect ({exc})") from None


def _arrow_memory_pool() -> None:
    """Let pyarrow allocate with jemalloc (unless ARROW_DEFAULT_MEMORY_POOL says otherwise).

    Streaming a file allocates and frees a few batches' buffers over and over: pyarrow's default
    mimalloc pool hands the pages back to the system and faults them in again, zeroed (about a
    third of the system time of ``crossent score`` on a 10M-row Parquet file; jemalloc halves
    it: benchmarks/bench_score.py measures both). A pyarrow built without jemalloc keeps its
    default. The command sets it for its own process; the library leaves the choice to its caller.
    """
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    try:
        import pyarrow

        pyarrow.set_memory_pool(pyarrow.jemalloc_memory_pool())
    except (ImportError, NotImplementedError):  # the reader says which extra installs pyarrow
        pass


def _labels(text: str, multilabel: bool):
    if not multilabel:
        return text
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise CliError(f"--label: give the 0/1 label columns, comma-separated, got {text!r}")
    return names


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
    if not (enabled and err_console().is_terminal):
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console(), transient=True) as bar:
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


@command("score")
def score_cmd(
    pred: Path = Argument(..., help="The prediction file: " + _FILES_HELP, show_default=False),
    label: str = _LABEL,
    truth: Optional[Path] = _TRUTH,
    id: Optional[str] = _ID,
    classes: Optional[str] = _CLASSES,
    weight: Optional[str] = Option(None, "--weight", help="A column of sample weights: every "
                                   "metric is a weighted mean (as scikit-learn's sample_weight)."),
    multilabel: bool = Option(False, "--multilabel", help="Independent per-class probabilities "
                              "against 0/1 label columns (--label names them, comma-separated, "
                              "in class order): binary cross-entropy per class and its mean."),
    logits: bool = _LOGITS,
    normalize: bool = _NORMALIZE,
    clip: Optional[float] = _CLIP,
    bins: int = _BINS,
    as_json: bool = _JSON,
    plot: Optional[Path] = Option(None, "--plot", help="Write a reliability diagram (PNG; PDF "
                                  "or SVG by the suffix)."),
    batch_size: int = _BATCH,
    workers: Optional[int] = _WORKERS,
    scheduler: Optional[str] = _SCHEDULER,
) -> None:
    """Cross-entropy (nats, bits), perplexity, accuracy, Brier score, calibration of a prediction file."""
    plot = _plot_path(plot)
    if plot is not None and multilabel:
        raise CliError("--plot draws the reliability of a multi-class file; --multilabel has none")
    labels = _labels(label, multilabel)
    names = _classes(classes)
    frames = _dask_frames([pred], workers, scheduler, truth, id)
    with _cluster(workers, scheduler) as client:
        if client is None:
            from ..evaluation import score_file

            _arrow_memory_pool()
            with _progress(not as_json) as progress:
                s = score_file(pred, label=labels, truth=truth, id=id, classes=names, weight=weight,
                               multilabel=multilabel, logits=logits, normalize=normalize, clip=clip,
                               n_bins=bins, batch_size=batch_size, progress=progress)
        else:
            from ..evaluation.distributed import score_dask

            s = score_dask(frames[0], label=labels, classes=names, weight=weight,
                           multilabel=multilabel, logits=logits, normalize=normalize, clip=clip,
                           n_bins=bins, name=str(pred))
    if as_json:
        print(json.dumps({"file": str(pred), **s.to_dict()}, allow_nan=False))
    elif multilabel:
        _print_multilabel(pred, s)
    else:
        _print_scores(pred, s, bins, clip)
    if plot is not None:  # the scores are out; only the plot can fail now
        try:
            from ..plots import reliability_diagram

            reliability_diagram(s.calibration, plot, title=f"Reliability of {pred.name}")
        except ImportError as exc:  # matplotlib is missing
            raise CliError(f"--plot {plot}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise CliError(f"--plot {plot}: cannot write the diagram ({exc})") from None
        if not as_json:
            console().print(f"reliability diagram: {plot}", markup=False, soft_wrap=True)
    note = None if as_json or multilabel else _infinite_note(pred.name, s)
    if note:
        console().print(note, markup=False, soft_wrap=True)


def _print_scores(pred: Path, s, bins: int, clip) -> None:
    from rich.table import Table

    weighted = "" if s.weight_sum is None else f", weighted (total weight {s.weight_sum:g})"
    table = Table(title=f"{pred.name}: {s.n_rows:,} rows, {len(s.classes)} classes"
                        + (f", log-loss clipped at {clip:g}" if clip is not None else "") + weighted)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for text, attr in _METRICS:
        name = f"ECE ({bins} bins)" if attr == "ece" else text
        table.add_row(name, _fmt(getattr(s, attr)))
    console().print(table)
    per_class = Table(title="per class (rows whose true class it is)")
    per_class.add_column("class")
    per_class.add_column("rows", justify="right")
    per_class.add_column("cross-entropy (nats)", justify="right")
    for c, n, h in zip(s.classes, s.class_counts, s.class_cross_entropy):
        per_class.add_row(c, f"{int(n):,}", _fmt(float(h)))
    console().print(per_class)


def _print_multilabel(pred: Path, s) -> None:
    from rich.table import Table

    table = Table(title=f"{pred.name}: {s.n_rows:,} rows, {len(s.classes)} labels (multi-label)")
    table.add_column("label")
    table.add_column("present", justify="right")
    table.add_column("binary cross-entropy (nats)", justify="right")
    for c, f, h in zip(s.classes, s.positives, s.class_cross_entropy):
        table.add_row(c, _fmt(float(f), 3), _fmt(float(h)))
    table.add_row("mean", "", _fmt(s.cross_entropy))
    console().print(table)
    if s.infinite_rows:
        rows = ", ".join(str(r) for r in s.first_infinite_rows)
        console().print(f"{pred.name}: {s.infinite_rows} rows give a label probability 0 or 1 on "
                      f"the wrong side, so the cross-entropy is infinite (rows {rows}); --clip EPS "
                      "gives a finite number", markup=False, soft_wrap=True)


@command("compare")
def compare_cmd(
    preds: List[Path] = Argument(..., help="Two or more prediction files: " + _FILES_HELP,
                                 show_default=False),
    label: str = _LABEL,
    truth: Optional[Path] = _TRUTH,
    id: Optional[str] = _ID,
    classes: Optional[str] = _CLASSES,
    logits: bool = _LOGITS,
    normalize: bool = _NORMALIZE,
    clip: Optional[float] = _CLIP,
    bins: int = _BINS,
    bootstrap: int = Option(2000, "--bootstrap", min=100, help="Bootstrap resamples."),
    confidence: float = Option(0.95, "--confidence", min=0.5, max=0.999,
                               help="Coverage of the confidence intervals."),
    seed: int = Option(0, "--seed", help="Seed of the bootstrap (same seed, same intervals)."),
    as_json: bool = _JSON,
    batch_size: int = _BATCH,
    workers: Optional[int] = _WORKERS,
    scheduler: Optional[str] = _SCHEDULER,
) -> None:
    """Metrics side by side and, for each pair, the difference in cross-entropy with a paired
    bootstrap confidence interval and a verdict in plain words.

    Rows are paired by position (same rows, same order) or, with --id, by id. Up to 20,000 rows
    the bootstrap resamples rows; beyond, it resamples 10,000 buckets of rows assigned at random,
    so memory stays bounded however many rows there are.
    """
    if len(preds) < 2:
        raise CliError(f"compare needs at least two prediction files, got {len(preds)}")
    frames = _dask_frames(preds, workers, scheduler, truth, id)
    with _cluster(workers, scheduler) as client:
        if client is None:
            from ..evaluation import compare_files

            _arrow_memory_pool()
            with _progress(not as_json) as progress:
                c = compare_files(preds, label=label, truth=truth, id=id, classes=_classes(classes),
                                  logits=logits, normalize=normalize, clip=clip, n_bins=bins,
                                  n_resamples=bootstrap, confidence=confidence, seed=seed,
                                  batch_size=batch_size, progress=progress)
        else:
            from ..evaluation.distributed import compare_dask
            from ..evaluation.scoring import _names

            c = compare_dask(frames, label=label, names=_names(preds),
                             classes=_classes(classes), logits=logits, normalize=normalize, clip=clip,
                             n_bins=bins, n_resamples=bootstrap, confidence=confidence, seed=seed)
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
    from rich.table import Table

    rows = c.scores[0].n_rows
    table = Table(title=f"{len(c.names)} models, {rows:,} rows")
    table.add_column("metric")
    for name in c.names:
        table.add_column(name, justify="right")
    for text, attr in _METRICS:
        table.add_row(f"ECE ({bins} bins)" if attr == "ece" else text,
                      *(_fmt(getattr(s, attr)) for s in c.scores))
    console().print(table)
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
    console().print(diffs)
    for pc in c.pairs:
        console().print(pc.verdict, markup=False, soft_wrap=True)
