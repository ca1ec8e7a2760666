"""Scoring prediction files and comparing models by cross-entropy, streaming in batches.

Rows of several files are paired by position (read in lockstep, same row count and order;
memory bounded by the batch size), or by an id column: joined to a truth file
(``truth=..., id=...``) or, without one, to the first file's ids. A join holds the reference
ids and labels in memory (a few bytes per row); the predictions still stream.

The comparison of two models is a paired bootstrap of the per-example difference in
cross-entropy. Up to ``exact_limit`` examples it resamples examples
(:func:`~crossent.evaluation.paired_bootstrap`); beyond, each example is assigned at random to
one of ``n_buckets`` buckets by a seeded hash of its position, per-bucket loss sums are
accumulated while streaming, and the buckets are resampled
(:func:`~crossent.evaluation.bucketed_paired_bootstrap`): memory O(buckets), however many rows.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

from .bootstrap import PairedBootstrap, bucket_of, bucketed_paired_bootstrap, paired_bootstrap, verdict
from .io import DEFAULT_BATCH_ROWS, KeyIndex, PredictionFile, PredictionFileError, _fail, _show, read_truth
from .metrics import ScoreAccumulator, Scores
from .multilabel import MultilabelAccumulator

__all__ = ["score_file", "compare_files", "Comparison", "PairComparison", "EXACT_LIMIT", "N_BUCKETS"]

#: Up to this many examples, compare resamples examples; beyond, buckets.
EXACT_LIMIT = 20_000
#: Buckets of the streaming bootstrap.
N_BUCKETS = 10_000

Progress = Callable[[str, Optional[int]], Callable[[int], None]]


def _prefetch(batches, depth=2):
    """Read the next batches in a background thread while the current one is scored.

    At most ``depth`` batches wait in the queue, so memory stays bounded; errors of the reader
    are raised in the caller's thread.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work():
        try:
            for b in batches:
                if stop.is_set():
                    return
                q.put(b)
            q.put(end)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


def _no_progress(description, total):
    return lambda n: None


def _accumulator(pf: PredictionFile, logits, normalize, clip, n_bins):
    if pf.multilabel:
        return MultilabelAccumulator(pf.classes, logits=logits, clip=clip, where=pf.where, row_base=1,
                                     error=PredictionFileError)
    hint = "" if pf.explicit_classes else (
        f" (the class columns are {', '.join(pf.classes)}: every numeric column other than "
        "--label and --id; choose them with --classes)")
    return ScoreAccumulator(pf.classes, logits=logits, normalize=normalize, clip=clip, n_bins=n_bins,
                            where=pf.where, row_base=1, hint=hint, error=PredictionFileError)


class _Join:
    """Maps a file's ids to positions in a reference (truth file or first prediction file)."""

    def __init__(self, index: KeyIndex, labels: np.ndarray, ref_path, id_column):
        self.index, self.labels, self.ref_path, self.id = index, labels, ref_path, id_column

    def start(self):
        self._first_row = np.full(len(self.index), -1, dtype=np.int64)

    def positions(self, pf: PredictionFile, batch) -> np.ndarray:
        pos = self.index.lookup(batch.ids)
        missing = pos < 0
        if missing.any():
            i = int(np.argmax(missing))
            raise _fail(pf.path, f"id {_show(batch.ids[i])} is not in {self.ref_path}",
                        row=batch.start + i + 1, column=self.id)
        rows = np.arange(batch.start, batch.start + batch.size)
        seen = self._first_row[pos] >= 0
        order = np.argsort(pos, kind="stable")
        dup_in_batch = np.zeros(pos.size, dtype=bool)
        dup_in_batch[order[1:]] = pos[order[1:]] == pos[order[:-1]]
        dup = seen | dup_in_batch
        if dup.any():
            i = int(np.argmax(dup))
            earlier = (int(self._first_row[pos[i]]) if seen[i]
                       else int(rows[np.argmax(pos == pos[i])]))
            raise _fail(pf.path, f"id {_show(batch.ids[i])} occurs more than once (rows "
                                 f"{earlier + 1} and {rows[i] + 1})", row=rows[i] + 1, column=self.id)
        self._first_row[pos] = rows
        return pos

    def finish(self, pf: PredictionFile):
        unseen = self._first_row < 0
        if unseen.any():
            r = int(np.argmax(unseen))
            raise _fail(self.ref_path, f"id {_show(self.index.ids[r])} has no row in {pf.path} "
                                       f"({int(unseen.sum())} of {unseen.size} ids have none)",
                        row=r + 1, column=self.id)


def _open(path, *, label, truth, id, classes, batch_size, weight=None, multilabel=False):
    if truth is not None:
        if multilabel:
            raise PredictionFileError(f"{truth}: multi-label scoring reads the label columns from "
                                      "the prediction file; a truth file is not supported")
        if id is None:
            raise PredictionFileError(f"{truth}: a truth file is joined to the predictions by an "
                                      "id column: give --id")
        return PredictionFile(path, id=id, classes=classes, batch_size=batch_size, weight=weight,
                              exclude=() if label is None else (label,))
    if label is None:
        raise PredictionFileError(f"{path}: name the label column (--label), or give a truth file")
    return PredictionFile(path, label=label, id=id, classes=classes, batch_size=batch_size,
                          weight=weight, multilabel=multilabel)


def score_file(path, *, label=None, truth=None, id=None, classes=None, weight=None, multilabel=False,
               logits=False, normalize=False, clip=None, n_bins=15, batch_size=DEFAULT_BATCH_ROWS,
               progress: Optional[Progress] = None):
    """Score a prediction file: every metric of :func:`~crossent.evaluation.score_arrays`.

    Parameters
    ----------
    path : str or os.PathLike
        CSV (``.csv``, ``.tsv``, optionally compressed), Parquet or NPZ, or a glob or directory
        of Parquet files; see :class:`~crossent.evaluation.io.PredictionFile` for which columns
        are classes.
    label : str, or sequence of str with ``multilabel``
        The label column: in ``path``, or in ``truth`` when that is given. Multi-label: the 0/1
        label columns, one per class column, in order.
    truth : str or os.PathLike, optional
        A file with the id and label columns, joined to ``path`` by ``id`` (each id exactly once
        on both sides).
    id : str, optional
        The id column (never a class).
    classes : sequence of str, optional
        The class columns, in order.
    weight : str, optional
        A column of sample weights: every metric is a weighted mean (as scikit-learn's
        ``sample_weight``).
    multilabel : bool, default False
        Score independent per-class probabilities against 0/1 label columns (per-class binary
        cross-entropy and its mean): returns :class:`~crossent.evaluation.MultilabelScores`.
    logits, normalize, clip, n_bins
        As in :class:`~crossent.evaluation.ScoreAccumulator`.
    batch_size : int
        Rows per batch; memory is a few batches' worth (plus the truth file's ids and labels,
        or the ids of ``id``, which must be unique).
    progress : callable, optional
        ``progress(description, total_rows_or_None)`` returning ``advance(n_rows)``.

    Returns
    -------
    Scores or MultilabelScores
        Rows numbered from 1 (``first_infinite_rows``).

    Raises
    ------
    PredictionFileError
        Any bad input; the message names the file, the row and the column.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation import score_file
    >>> path = os.path.join(tempfile.mkdtemp(), "preds.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("cat,dog,y\\n0.5,0.5,cat\\n0.25,0.75,dog\\n")
    >>> s = score_file(path, label="y")
    >>> round(s.cross_entropy, 6), s.accuracy, s.classes
    (0.490415, 1.0, ('cat', 'dog'))
    """
    progress = progress or _no_progress
    pf = _open(path, label=label, truth=truth, id=id, classes=classes, batch_size=batch_size,
               weight=weight, multilabel=multilabel)
    acc = _accumulator(pf, logits, normalize, clip, n_bins)
    join, ids = None, None
    if truth is not None:
        t = read_truth(truth, id=id, label=label, classes=pf.classes, batch_size=batch_size)
        join = _Join(t.index, t.labels, t.path, id)
        join.start()
    elif id is not None:
        ids = []  # an id column is unique wherever it is given
    advance = progress(os.path.basename(str(path)), pf.num_rows)
    for batch in _prefetch(pf.batches()):
        if pf.multilabel:
            acc.update(batch.scores, batch.targets, weights=batch.weights, start=batch.start)
        elif join is None:  # a dictionary column's codes are read through its map
            acc.update(batch.scores, batch.label_codes, weights=batch.weights, start=batch.start,
                       label_map=batch.label_map)
        else:
            acc.update(batch.scores, join.labels[join.positions(pf, batch)], weights=batch.weights,
                       start=batch.start)
        if ids is not None:
            ids.append(batch.ids)
        advance(batch.size)
    if join is not None:
        join.finish(pf)
    if ids is not None:
        KeyIndex(np.concatenate(ids), pf.path, id)  # raises on a duplicate, naming both rows
    return acc.result()


@dataclass(frozen=True)
class PairComparison:
    """Model ``b`` against model ``a`` (indices into :attr:`Comparison.names`).

    ``result`` is None when either model has an infinite cross-entropy (then ``verdict`` says so).
    """

    a: int
    b: int
    result: Optional[PairedBootstrap]
    verdict: str


@dataclass(frozen=True)
class Comparison:
    """Metrics of each model and, for each pair, the paired bootstrap of the difference.

    ``method`` is ``"examples"`` (resampling examples) or ``"buckets"`` (resampling
    ``n_buckets`` random buckets of examples; see the module documentation).
    """

    names: List[str]
    scores: List[Scores]
    pairs: List[PairComparison]
    method: str
    n_buckets: int


class _Model:
    """Per-model state: metrics, per-bucket loss sums, per-example losses while few."""

    def __init__(self, pf, acc, n_buckets, keep_examples):
        self.pf, self.acc = pf, acc
        self.sums = np.zeros(n_buckets)
        self.chunks: Optional[list] = [] if keep_examples else None

    def add(self, positions, loss, buckets, exact_limit, kept):
        with np.errstate(invalid="ignore"):
            self.sums += np.bincount(buckets, weights=loss, minlength=self.sums.size)
        if self.chunks is not None:
            if kept + loss.size > exact_limit:
                self.chunks = None
            else:
                self.chunks.append((positions, loss))

    def losses(self, n):
        out = np.empty(n)
        for pos, loss in self.chunks:
            out[pos] = loss
        return out


def _names(paths) -> List[str]:
    stems = [os.path.basename(str(p)) for p in paths]
    stems = [s.split(".")[0] if s.count(".") else s for s in stems]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def compare_files(paths: Sequence, *, label=None, truth=None, id=None, classes=None, logits=False,
                  normalize=False, clip=None, n_bins=15, n_resamples=2000, confidence=0.95, seed=0,
                  exact_limit=EXACT_LIMIT, n_buckets=N_BUCKETS, batch_size=DEFAULT_BATCH_ROWS,
                  progress: Optional[Progress] = None) -> Comparison:
    """Score several prediction files of the same examples and compare each pair.

    Rows are paired by position (every file has the same rows in the same order; their labels
    must agree), or by ``id`` (joined to ``truth`` if given, else to the first file). For each
    pair (a, b) the difference ``mean_b - mean_a`` of the per-example cross-entropy (nats) gets
    a percentile bootstrap interval: resampling examples up to ``exact_limit`` of them,
    resampling ``n_buckets`` random buckets of examples beyond (memory bounded whatever the
    row count). Both are seeded by ``seed``.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Two or more prediction files; the models are named by the file names.
    label, truth, id, classes, logits, normalize, clip, n_bins, batch_size, progress
        As in :func:`score_file`; they apply to every file. The files must have the same
        class names (in any order).
    n_resamples : int, default 2000
    confidence : float, default 0.95
    seed : int, default 0
    exact_limit : int, default 20000
    n_buckets : int, default 10000

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation import compare_files
    >>> d = tempfile.mkdtemp()
    >>> for name, p in (("a", 0.6), ("b", 0.9)):
    ...     with open(os.path.join(d, name + ".csv"), "w") as f:
    ...         _ = f.write("no,yes,y\\n" + f"{1 - p},{p},yes\\n" * 50)
    >>> c = compare_files([os.path.join(d, "a.csv"), os.path.join(d, "b.csv")], label="y")
    >>> c.pairs[0].verdict
    'b is better than a by 0.405 nats per example, 95% CI [0.405, 0.405]'
    """
    paths = list(paths)
    if len(paths) < 2:
        raise ValueError(f"compare needs at least two prediction files, got {len(paths)}")
    progress = progress or _no_progress
    exact_limit = int(exact_limit)
    pfs = [_open(p, label=label, truth=truth, id=id, classes=classes, batch_size=batch_size)
           for p in paths]
    ref = pfs[0]
    for pf in pfs[1:]:
        if set(pf.classes) != set(ref.classes):
            raise PredictionFileError(f"{pf.path}: classes {', '.join(pf.classes)} differ from "
                                      f"{ref.path}'s {', '.join(ref.classes)}")
    models = [_Model(pf, _accumulator(pf, logits, normalize, clip, n_bins), n_buckets, exact_limit > 0)
              for pf in pfs]
    if truth is not None or id is not None:
        n, counts = _compare_joined(models, truth, id, label, exact_limit, n_buckets, seed,
                                    batch_size, progress)
    else:
        n, counts = _compare_lockstep(models, exact_limit, n_buckets, seed, progress)
    exact = all(m.chunks is not None for m in models) and n <= exact_limit
    return _comparison(_names(paths), [m.acc.result() for m in models], [m.sums for m in models],
                       [m.losses(n) for m in models] if exact else None, counts, n_resamples,
                       confidence, seed, n_buckets)


def _comparison(names, scores, sums, losses, counts, n_resamples, confidence, seed, n_buckets):
    """Each pair's paired bootstrap: over examples when ``losses`` (per model) are given, else
    over the buckets of ``sums`` (per model) holding ``counts`` examples."""
    pairs = []
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            bad = [k for k in (i, j) if scores[k].infinite_rows]
            if bad:
                k = bad[0]
                rows = ", ".join(str(r) for r in scores[k].first_infinite_rows)
                count = scores[k].infinite_rows
                many = "rows give" if count > 1 else "row gives"
                pairs.append(PairComparison(i, j, None, (
                    f"cannot compare {names[i]} and {names[j]}: {names[k]} has infinite cross-entropy "
                    f"({count} {many} the true class probability 0, first: {rows}); pass a clip "
                    "(--clip EPS) for a finite comparison")))
                continue
            if losses is not None:
                r = paired_bootstrap(losses[i], losses[j], n_resamples=n_resamples,
                                     confidence=confidence, seed=seed)
            else:
                r = bucketed_paired_bootstrap(sums[i], sums[j], counts,
                                              n_resamples=n_resamples, confidence=confidence, seed=seed)
            pairs.append(PairComparison(i, j, r, verdict(names[i], names[j], r)))
    return Comparison(list(names), scores, pairs, "examples" if losses is not None else "buckets",
                      int(n_buckets))


def _compare_lockstep(models, exact_limit, n_buckets, seed, progress):
    """Read every file at once, row by row in step; labels must agree across files."""
    ref = models[0].pf
    perms = [np.array([ref.classes.index(c) for c in m.pf.classes]) for m in models]
    iters = [_prefetch(m.pf.batches()) for m in models]
    cur: list = [None] * len(models)
    off = [0] * len(models)
    counts = np.zeros(n_buckets, dtype=np.int64)
    advance = progress(" + ".join(os.path.basename(str(m.pf.path)) for m in models), ref.num_rows)
    n = 0
    try:
        while True:
            for j, it in enumerate(iters):
                if cur[j] is None or off[j] == cur[j].size:
                    cur[j], off[j] = next(it, None), 0
            ended = [c is None for c in cur]
            if all(ended):
                break
            if any(ended):
                short = models[ended.index(True)].pf
                longer = models[ended.index(False)].pf
                raise PredictionFileError(
                    f"{short.path} has {n} rows but {longer.path} has more: rows are paired by "
                    "position, so the files must have the same rows in the same order (or join "
                    "them with --id)")
            m_rows = min(c.size - o for c, o in zip(cur, off))
            positions = np.arange(n, n + m_rows)
            buckets = bucket_of(positions, n_buckets=n_buckets, seed=seed)
            counts += np.bincount(buckets, minlength=n_buckets)
            labels0 = perms[0][cur[0].labels[off[0]:off[0] + m_rows]]
            for j, model in enumerate(models):
                c, o = cur[j], off[j]
                labels = c.labels[o:o + m_rows]
                if j:
                    differ = perms[j][labels] != labels0
                    if differ.any():
                        i = int(np.argmax(differ))
                        raise _fail(model.pf.path, (
                            f"label {model.pf.classes[labels[i]]!r} differs from "
                            f"{ref.classes[labels0[i]]!r} in {ref.path} on the same row; rows are "
                            "paired by position (or join them with --id)"),
                            row=n + i + 1, column=model.pf.label)
                loss = model.acc.update([col[o:o + m_rows] for col in c.scores], labels, start=c.start + o)
                model.add(positions, loss, buckets, exact_limit, n)
                off[j] += m_rows
            n += m_rows
            advance(m_rows)
    finally:
        for it in iters:
            it.close()
    return n, counts


def _compare_joined(models, truth, id, label, exact_limit, n_buckets, seed, batch_size, progress):
    """Join every file to the truth file (or to the first file) by id, one file after another."""
    first = 0
    if truth is not None:
        t = read_truth(truth, id=id, label=label, classes=models[0].pf.classes, batch_size=batch_size)
        join = _Join(t.index, t.labels, t.path, id)
    else:  # the first file is the reference: read it, keep its ids and labels
        m0 = models[0]
        ids, labels, n = [], [], 0
        advance = progress(os.path.basename(str(m0.pf.path)), m0.pf.num_rows)
        for batch in _prefetch(m0.pf.batches()):
            positions = np.arange(batch.start, batch.start + batch.size)
            loss = m0.acc.update(batch.scores, batch.labels, start=batch.start)
            m0.add(positions, loss, bucket_of(positions, n_buckets=n_buckets, seed=seed), exact_limit, n)
            ids.append(batch.ids)
            labels.append(batch.labels)
            n += batch.size
            advance(batch.size)
        join = _Join(KeyIndex(np.concatenate(ids), m0.pf.path, id), np.concatenate(labels),
                     m0.pf.path, id)
        first = 1
    n = len(join.index)
    ref_classes = models[0].pf.classes
    for model in models[first:]:
        pf = model.pf
        perm = np.array([pf.classes.index(c) for c in ref_classes])  # reference index -> pf index
        join.start()
        advance = progress(os.path.basename(str(pf.path)), pf.num_rows)
        kept = 0
        for batch in _prefetch(pf.batches()):
            pos = join.positions(pf, batch)
            labels = perm[join.labels[pos]]
            if truth is None:
                differ = batch.labels != labels
                if differ.any():
                    i = int(np.argmax(differ))
                    raise _fail(pf.path, (f"label {pf.classes[batch.labels[i]]!r} differs from "
                                          f"{pf.classes[labels[i]]!r} for the same id in {join.ref_path}"),
                                row=batch.start + i + 1, column=pf.label)
            loss = model.acc.update(batch.scores, labels, start=batch.start)
            model.add(pos, loss, bucket_of(pos, n_buckets=n_buckets, seed=seed), exact_limit, kept)
            kept += batch.size
            advance(batch.size)
        join.finish(pf)
    counts = np.bincount(bucket_of(np.arange(n), n_buckets=n_buckets, seed=seed), minlength=n_buckets)
    return n, counts
