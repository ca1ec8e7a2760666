"""Scoring on a Dask cluster: every metric from mergeable per-partition states.

Each partition of a Dask DataFrame is scored where it lives into a small state (the float64
sums of :class:`~crossent.evaluation.ScoreAccumulator`, and for a comparison the per-bucket
loss sums of the bootstrap); the states are added on the client. Sums are the same sums as on
one machine, bucket assignment depends only on a row's position in the whole input, so the
numbers are those of :func:`~crossent.evaluation.score_file` and
:func:`~crossent.evaluation.compare_files` on the same rows (up to the order of float
additions: about 1e-15 relative).

Dask is optional: ``pip install 'crossent[dask]'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .bootstrap import bucket_of
from .io import PredictionFileError, _cut, _Labels, expand_paths
from .metrics import ScoreAccumulator
from .multilabel import MultilabelAccumulator
from .scoring import EXACT_LIMIT, N_BUCKETS, Comparison, _comparison

__all__ = ["score_dask", "compare_dask", "read_parquet_dask", "dask_client", "DASK_EXTRA"]

DASK_EXTRA = "pip install 'crossent[dask]'"


def _dd():
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:
        raise ImportError(f"scoring on Dask needs dask[dataframe,distributed]: {DASK_EXTRA}") from None
    return dask, dd


def read_parquet_dask(path):
    """A Dask DataFrame of a Parquet file, a glob or a directory of Parquet files (name order).

    Examples
    --------
    >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> from crossent.evaluation.distributed import read_parquet_dask
    >>> d = tempfile.mkdtemp()
    >>> for k in range(2):
    ...     pq.write_table(pa.table({"a": [0.5, 0.2], "b": [0.5, 0.8]}), os.path.join(d, f"{k}.parquet"))
    >>> ddf = read_parquet_dask(d)
    >>> ddf.npartitions, len(ddf)
    (2, 4)
    """
    _, dd = _dd()
    files = expand_paths(path)
    other = [f for f in files if not f.lower().endswith((".parquet", ".pq"))]
    if other:
        raise PredictionFileError(f"{other[0]}: scoring on Dask reads Parquet files (a file, a glob "
                                  "or a directory of them)")
    return dd.read_parquet(files)


def dask_client(*, workers: Optional[int] = None, scheduler: Optional[str] = None, processes=True):
    """A ``dask.distributed.Client``: of a running scheduler (``scheduler="tcp://host:8786"``) or
    of a new ``LocalCluster`` of ``workers`` single-threaded workers on 127.0.0.1."""
    _dd()
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError(f"a Dask cluster needs dask.distributed: {DASK_EXTRA}") from None
    if scheduler is not None:
        return Client(scheduler, timeout="10s")
    # The client owns this LocalCluster: closing the client shuts it down.
    return Client(n_workers=int(workers), threads_per_worker=1, host="127.0.0.1",
                  processes=processes, dashboard_address=None)


@dataclass(frozen=True)
class _Spec:
    """What every partition task needs (small and picklable)."""

    name: str
    classes: tuple
    label: object
    weight: Optional[str]
    multilabel: bool
    logits: bool
    normalize: bool
    clip: Optional[float]
    n_bins: int

    def where(self, part: int):
        def where(row, k=None):
            text = f"{self.name}: partition {part}, row {row + 1}"
            return text if k is None else f"{text}, column {self.classes[k]!r}"
        return where

    def accumulator(self, part: int):
        if self.multilabel:
            return MultilabelAccumulator(self.classes, logits=self.logits, clip=self.clip,
                                         where=self.where(part), error=PredictionFileError)
        return ScoreAccumulator(self.classes, logits=self.logits, normalize=self.normalize,
                                clip=self.clip, n_bins=self.n_bins, where=self.where(part),
                                error=PredictionFileError)

    def update(self, acc, df, part: int):
        """Score a pandas partition; return the per-row losses and the class indices."""
        import pyarrow as pa

        fail = self.where(part)
        scores = [self._numbers(df, c, fail) for c in self.classes]
        weights = None if self.weight is None else self._numbers(df, self.weight, fail)
        if self.multilabel:
            targets = [self._numbers(df, t, fail) for t in self.label]
            return acc.update(scores, targets, weights=weights, start=0), None
        labels = _Labels(self.classes).map(
            pa.array(df[self.label]),
            lambda i, msg: PredictionFileError(f"{fail(i)}, column {self.label!r}: {msg}"))
        return acc.update(scores, labels, weights=weights, start=0), labels

    @staticmethod
    def _numbers(df, column, fail):
        values = df[column].to_numpy()
        if values.dtype.kind not in "fiub":
            raise PredictionFileError(f"{fail(0)}, column {column!r}: holds {values.dtype} values, "
                                      "not numbers")
        return values


def _partition_state(df, spec: _Spec, part: int):
    acc = spec.accumulator(part)
    if len(df):
        spec.update(acc, df, part)
    return acc.state, list(acc._first_inf), acc.weighted, len(df)


def _spec(ddf, name, label, classes, weight, multilabel, logits, normalize, clip, n_bins) -> _Spec:
    columns = [str(c) for c in ddf.columns]
    labels = ([label] if isinstance(label, str) else list(label)) if multilabel else [label]
    for c in labels + ([weight] if weight is not None else []):
        if c not in columns:
            raise PredictionFileError(f"{name}: no column {_cut(c)} (columns: {', '.join(columns)})")
    if classes is None:
        numeric = [c for c in columns if _is_numeric(ddf.dtypes[c])]
        classes = [c for c in numeric if c not in set(labels) | {weight}]
    classes = [str(c) for c in classes]
    if len(classes) < (1 if multilabel else 2):
        raise PredictionFileError(f"{name}: needs at least two class columns, found {', '.join(classes) or 'none'}")
    if multilabel and len(classes) != len(labels):
        raise PredictionFileError(f"{name}: {len(classes)} class columns but {len(labels)} label columns")
    return _Spec(name, tuple(classes), tuple(labels) if multilabel else label, weight, bool(multilabel),
                 bool(logits), bool(normalize), clip, int(n_bins))


def _is_numeric(dtype) -> bool:
    try:
        return np.dtype(dtype).kind in "fiu"
    except TypeError:  # pandas extension dtypes (strings, categories)
        return False


def score_dask(ddf, *, label, classes=None, weight=None, multilabel=False, logits=False,
               normalize=False, clip=None, n_bins=15, name="dask dataframe"):
    """Score a Dask DataFrame of predictions: the metrics of :func:`~crossent.evaluation.score_file`.

    Each partition is scored by a task on the cluster (or the local scheduler) into a state of a
    few hundred floats; the client adds the states in partition order.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        One column per class (probabilities, or logits), a label column, optionally a weight
        column; class columns default to every numeric column other than those.
    label, classes, weight, multilabel, logits, normalize, clip, n_bins
        As in :func:`~crossent.evaluation.score_file`.
    name : str
        Names the data in error messages (which give the partition and its row).

    Returns
    -------
    Scores or MultilabelScores

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> from crossent.evaluation import score_dask
    >>> df = pd.DataFrame({"cat": [0.5, 0.25], "dog": [0.5, 0.75], "y": ["cat", "dog"]})
    >>> round(score_dask(dd.from_pandas(df, npartitions=2), label="y").cross_entropy, 6)
    0.490415
    """
    dask, _ = _dd()
    spec = _spec(ddf, name, label, classes, weight, multilabel, logits, normalize, clip, n_bins)
    parts = ddf.to_delayed()
    task = dask.delayed(_partition_state, pure=True)
    results = dask.compute(*[task(p, spec, i) for i, p in enumerate(parts)])
    total = spec.accumulator(0)
    total._row_base = 1
    start = 0
    for state, first_inf, weighted, n in results:  # partition order: rows numbered as one input
        total.state += state
        total._first_inf.extend(r + start + 1 for r in first_inf)
        total.weighted |= weighted
        start += n
    total._first_inf = sorted(total._first_inf)[:5]
    return total.result()


def _compare_partition(dfs, spec: _Spec, part: int, offset: int, n_buckets: int, seed: int, keep: bool):
    """Per model: state, first infinite rows, bucket loss sums and (when ``keep``) the losses."""
    n = len(dfs[0])
    for k, df in enumerate(dfs[1:], 1):
        if len(df) != n:
            raise PredictionFileError(f"model {k + 1} has {len(df)} rows in partition {part}, model 1 "
                                      f"{n}: rows are paired by position, so the models must be "
                                      "partitioned alike")
    positions = np.arange(offset, offset + n)
    buckets = bucket_of(positions, n_buckets=n_buckets, seed=seed)
    out, ref_labels = [], None
    for k, df in enumerate(dfs):
        acc = spec.accumulator(part)
        loss, labels = spec.update(acc, df, part) if n else (np.zeros(0), np.zeros(0, np.int64))
        if ref_labels is None:
            ref_labels = labels
        elif not np.array_equal(labels, ref_labels):
            i = int(np.argmax(labels != ref_labels))
            raise PredictionFileError(f"{spec.where(part)(i)}, column {spec.label!r}: model {k + 1}'s "
                                      "label differs from model 1's on the same row")
        with np.errstate(invalid="ignore"):
            sums = np.bincount(buckets, weights=loss, minlength=n_buckets)
        out.append((acc.state, [r + offset for r in acc._first_inf], sums, loss if keep else None))
    return out, np.bincount(buckets, minlength=n_buckets)


def compare_dask(ddfs: Sequence, *, label, names=None, classes=None, logits=False, normalize=False,
                 clip=None, n_bins=15, n_resamples=2000, confidence=0.95, seed=0,
                 exact_limit=EXACT_LIMIT, n_buckets=N_BUCKETS) -> Comparison:
    """Compare models whose predictions are Dask DataFrames of the same rows, partitioned alike.

    The same numbers as :func:`~crossent.evaluation.compare_files` on the same rows in the same
    order: the metrics of each model and, for each pair, the paired bootstrap interval of the
    difference in cross-entropy (over examples up to ``exact_limit`` rows, over ``n_buckets``
    buckets of a seeded hash of the row position beyond).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd
    >>> from crossent.evaluation import compare_dask
    >>> a = pd.DataFrame({"no": [0.4] * 50, "yes": [0.6] * 50, "y": ["yes"] * 50})
    >>> b = pd.DataFrame({"no": [0.1] * 50, "yes": [0.9] * 50, "y": ["yes"] * 50})
    >>> c = compare_dask([dd.from_pandas(a, npartitions=2), dd.from_pandas(b, npartitions=2)],
    ...                  label="y", names=["a", "b"])
    >>> c.pairs[0].verdict
    'b is better than a by 0.405 nats per example, 95% CI [0.405, 0.405]'
    """
    dask, _ = _dd()
    ddfs = list(ddfs)
    if len(ddfs) < 2:
        raise ValueError(f"compare needs at least two models, got {len(ddfs)}")
    names = list(names) if names is not None else [f"model {k + 1}" for k in range(len(ddfs))]
    spec = _spec(ddfs[0], names[0], label, classes, None, False, logits, normalize, clip, n_bins)
    parts = [d.to_delayed() for d in ddfs]
    if len({len(p) for p in parts}) != 1:
        raise PredictionFileError("the models have different numbers of partitions: partition "
                                  "them alike (the same rows in the same order)")
    lengths = list(dask.compute(*[dask.delayed(len)(p) for p in parts[0]]))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    n = int(offsets[-1])
    keep = n <= int(exact_limit)
    task = dask.delayed(_compare_partition, pure=True)
    results = dask.compute(*[task([p[i] for p in parts], spec, i, int(offsets[i]), int(n_buckets),
                                  int(seed), keep) for i in range(len(lengths))])
    scores, sums, losses = [], [], []
    for k in range(len(ddfs)):
        acc = spec.accumulator(0)
        acc._row_base = 1
        total = np.zeros(int(n_buckets))
        for out, _ in results:
            state, first_inf, s, loss = out[k]
            acc.state += state
            acc._first_inf.extend(r + 1 for r in first_inf)
            total += s
        acc._first_inf = sorted(acc._first_inf)[:5]
        scores.append(acc.result())
        sums.append(total)
        if keep:
            losses.append(np.concatenate([out[k][3] for out, _ in results]))
    counts = sum(c for _, c in results)
    return _comparison(names, scores, sums, losses if keep else None, counts, n_resamples,
                       confidence, seed, n_buckets)
