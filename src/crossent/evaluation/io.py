"""Reading prediction files (CSV, Parquet, NPZ) in batches of bounded size.

A prediction file holds one column per class (a probability, or a logit), the column names
being the class names, and optionally a label column and an id column; other columns are
ignored. Which columns are classes: the ones named by ``classes`` if given (in that order),
otherwise every numeric column other than the label and id columns, in file order.

Labels are class names or 0-based indices into the class columns. When every class name is an
integer (``0, 1, ..., 9``), labels are read as names only, so ``7`` always means the class
*named* 7, whatever the column order.

Rows are numbered from 1 for the first data row (the header is not a row; in a CSV file without
blank lines or quoted line breaks, row r is on line r + 1). Every error raised here is a
:class:`PredictionFileError` (a ValueError) whose one-line message names the file, the row and
the column.

Memory is bounded by the batch size: CSV is parsed block by block (``pyarrow.csv.open_csv``),
Parquet is read batch by batch (``ParquetFile.iter_batches``, labels kept dictionary-encoded)
and NPZ members are streamed from the archive (stored or deflated) without loading whole
arrays. A glob (``preds/*.parquet``) or a directory of Parquet files is read as one table, file
after file in name order; errors name the file and its own row.

:func:`read_table` reads a whole CSV/Parquet/NPZ table (``crossent train`` uses it) with the
same checks and messages.
"""

from __future__ import annotations

import functools
import glob as _glob
import io
import math
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

__all__ = ["PredictionFileError", "PredictionFile", "Batch", "KeyIndex", "Truth", "read_truth",
           "read_table", "numeric_column", "file_format", "expand_paths", "DEFAULT_BATCH_ROWS"]

#: Rows per batch for Parquet and NPZ (CSV is read in blocks of about the same byte size).
DEFAULT_BATCH_ROWS = 1 << 18
_CSV_BLOCK_BYTES = 8 << 20
#: Parquet and NPZ batches hold at most this many bytes of class columns (8 bytes a value).
_MAX_BATCH_BYTES = 32 << 20
_CSV_SUFFIXES = (".csv", ".tsv")
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
_INT_NAME = re.compile(r"[+-]?\d+")
#: A CSV cell that reads as a number (what pyarrow's float conversion accepts, roughly).
_NUMBER = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf|infinity|nan)\s*$"
#: Echoed values (labels, ids, cells) are cut to this many characters.
_ECHO_CHARS = 60
_GLOB_CHARS = "*?["


class PredictionFileError(ValueError):
    """Bad input in a prediction or truth file; the message names file, row and column."""


def _fail(path, message, row=None, column=None) -> PredictionFileError:
    """``"<path>: row <r>, column '<c>': <message>"`` (row and column when known)."""
    where = [f"row {row}"] if row is not None else []
    if column is not None:
        where.append(f"column {column!r}")
    return PredictionFileError(f"{path}: " + (", ".join(where) + ": " if where else "") + message)


def _cut(value) -> str:
    """``repr`` of a value, cut to a readable length: a 20 MB label is not echoed whole."""
    text = repr(value)
    if len(text) <= _ECHO_CHARS:
        return text
    return f"{text[:_ECHO_CHARS]}... ({len(str(value)):,} characters)"


def expand_paths(path) -> list:
    """The files a path names: itself, or the Parquet files of a glob or a directory (sorted).

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation.io import expand_paths
    >>> d = tempfile.mkdtemp()
    >>> for name in ("b.parquet", "a.parquet", "notes.txt"):
    ...     open(os.path.join(d, name), "w").close()
    >>> [os.path.basename(p) for p in expand_paths(d)]
    ['a.parquet', 'b.parquet']
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        files = sorted(os.path.join(text, f) for f in os.listdir(text)
                       if f.lower().endswith((".parquet", ".pq")) and not f.startswith((".", "_")))
        if not files:
            raise _fail(text, "is a directory without .parquet files")
        return files
    if any(c in text for c in _GLOB_CHARS) and not os.path.exists(text):
        files = sorted(f for f in _glob.glob(text) if os.path.isfile(f))
        if not files:
            raise _fail(text, "matches no file")
        other = [f for f in files if file_format(f) != "parquet"]
        if other:
            raise _fail(text, f"matches {other[0]}, not a Parquet file: globs and directories "
                              "are read as Parquet datasets")
        return files
    return [text]


def _pa(*, pandas: bool = False):
    """pyarrow; with ``pandas=True``, pandas (when installed) imported first, from Python.

    pyarrow's first conversion of a table to NumPy (``to_numpy``) imports pandas from C++ and
    discards any exception raised during that import, Ctrl-C included. :func:`read_table`
    (whose caller converts whole columns) imports it here, where an interrupt propagates as
    from any import. The streaming reader never converts that way (Arrow buffers are viewed
    with :func:`_view`), so it leaves pandas out: importing it costs more start-up time than
    reading a million rows.
    """
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is in the cli extra
        raise ImportError("reading prediction files needs pyarrow: pip install 'crossent[cli]'") from None
    if pandas:
        try:
            import pandas  # noqa: F401
        except ImportError:
            pass
    return pyarrow


def file_format(path) -> str:
    """``"csv"``, ``"parquet"`` or ``"npz"`` from the file name (CSV may be compressed).

    Examples
    --------
    >>> from crossent.evaluation.io import file_format
    >>> file_format("preds.csv.gz"), file_format("preds.pq"), file_format("run/preds.npz")
    ('csv', 'parquet', 'npz')
    """
    name = os.path.basename(str(path)).lower()
    compressed = name.endswith(_COMPRESSED)
    if compressed:  # only CSV may be compressed
        name = name.rsplit(".", 1)[0]
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith((".parquet", ".pq")) and not compressed:
        return "parquet"
    if name.endswith(".npz") and not compressed:
        return "npz"
    raise _fail(path, "unknown format: expected a .csv, .tsv, .parquet, .pq or .npz file "
                      "(CSV may be compressed: .csv.gz, .csv.bz2, .csv.zst)")


@dataclass(frozen=True)
class Batch:
    """One batch of a prediction file.

    ``start`` is the 0-based index of its first row in the file; ``scores`` holds the C class
    columns (1-D arrays of length ``size``, in class order, as read: no copy); ``label_codes``
    the labels as read (None when the file has no label column): the class indices, or, with
    ``label_map``, the codes of a dictionary-encoded column (no copy), row i's class being
    ``label_map[label_codes[i]]``; :attr:`labels` the class indices either way. ``ids`` the id
    column as a NumPy array (or None); ``weights`` the sample weights (float64, or None);
    ``targets`` the 0/1 label columns of a multi-label file (float64 arrays, or None).
    """

    start: int
    size: int
    scores: tuple
    label_codes: Optional[np.ndarray]
    ids: Optional[np.ndarray]
    weights: Optional[np.ndarray] = None
    targets: Optional[tuple] = None
    label_map: Optional[np.ndarray] = None

    @functools.cached_property
    def labels(self) -> Optional[np.ndarray]:
        """The class index of each row (int64), or None."""
        if self.label_codes is None or self.label_map is None:
            return self.label_codes
        return np.take(self.label_map, self.label_codes)


class _NotALabel(Exception):
    """A dictionary entry that is no label (raised inside :meth:`_Labels._map_all` only)."""


class _Labels:
    """Maps a label column (names or indices) to class indices."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self._dictionary = (None, None)  # the last dictionary mapped whole, and its class indices
        self.by_name = all(_INT_NAME.fullmatch(c) for c in self.classes)
        if self.by_name:  # integer names: label v is the class named v
            values = np.array([int(c) for c in self.classes], dtype=np.int64)
            self._order = np.argsort(values, kind="stable")
            self._sorted = values[self._order]

    def _map_all(self, values) -> Optional[np.ndarray]:
        """Class indices of every entry of a dictionary (remembered), or None if one is no label."""

        def fail(message):
            raise _NotALabel

        try:
            mapped = np.array([self._one(v, fail) for v in values], dtype=np.int64)
        except _NotALabel:
            return None
        self._dictionary = (values, mapped)
        return mapped

    def _from_ints(self, v: np.ndarray, fail) -> np.ndarray:
        n = len(self.classes)
        if self.by_name:
            pos = np.clip(np.searchsorted(self._sorted, v), 0, n - 1)
            ok = self._sorted[pos] == v
            if not ok.all():
                i = int(np.argmax(~ok))
                raise fail(i, f"label {int(v[i])} names no class (classes: {', '.join(self.classes)})")
            return self._order[pos]
        ok = (v >= 0) & (v < n)
        if not ok.all():
            i = int(np.argmax(~ok))
            raise fail(i, f"label {int(v[i])} is neither a class name nor a class index in [0, {n}) "
                          f"(classes: {', '.join(self.classes)})")
        return v.astype(np.int64, copy=False)

    def _one(self, value, fail) -> int:
        """The class index of one label value (a distinct value of a dictionary column)."""
        names = ", ".join(self.classes)
        if isinstance(value, str):
            if value in self.classes:
                return self.classes.index(value)
            if self.by_name or not _INT_NAME.fullmatch(value.strip()):
                raise fail(f"label {_cut(value)} names no class (classes: {names})")
            value = int(value.strip())
        if isinstance(value, float):
            if not (math.isfinite(value) and value == round(value)):
                raise fail(f"label {value!r} is not a class index")
            value = int(value)
        if not isinstance(value, int):
            raise fail(f"label {_cut(value)} is neither a class name nor a class index")
        return int(self._from_ints(np.array([int(value)], dtype=np.int64), lambda i, m: fail(m))[0])

    def codes(self, column, fail) -> tuple:
        """(codes, map): the class indices of an Arrow array ``column`` as ``map[codes]``: a
        dictionary column's codes, without a copy, and the class of each dictionary entry; or
        the class indices themselves and None for other columns (see :meth:`map`)."""
        pa = _pa()
        if not pa.types.is_dictionary(column.type):
            return self.map(column, fail), None
        if column.null_count:
            i = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise fail(i, "missing label")
        # Map the (few) distinct labels once, then look up each row's code. The batches of
        # a row group share one dictionary of class names, mapped whole once; a dictionary
        # with an entry that is no label has only its entries in use mapped, the first
        # row of a bad one named.
        codes = _view(column.indices)
        values = tuple(column.dictionary.to_pylist())
        mapped = self._dictionary[1] if self._dictionary[0] == values else self._map_all(values)
        if mapped is None:
            used = np.zeros(len(values), dtype=bool)
            used[codes] = True
            mapped = np.zeros(used.size, dtype=np.int64)
            for j in np.flatnonzero(used):
                mapped[j] = self._one(values[j], lambda m: fail(int(np.argmax(codes == j)), m))
        if codes.dtype not in (np.int32, np.int64):  # narrow index types
            codes = codes.astype(np.int32)
        return codes, mapped

    def map(self, column, fail) -> np.ndarray:
        """Class indices of an Arrow array ``column``; ``fail(i, msg)`` builds the error for row i."""
        pa = _pa()
        if pa.types.is_dictionary(column.type):  # missing labels are named by codes()
            codes, mapped = self.codes(column, fail)
            return np.take(mapped, codes)
        if column.null_count:
            i = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise fail(i, "missing label")
        t = column.type
        if pa.types.is_boolean(t):
            return _view(column.cast(pa.int8())).astype(np.int64)
        if pa.types.is_integer(t):
            return self._from_ints(column.to_numpy().astype(np.int64, copy=False), fail)
        if pa.types.is_floating(t):
            v = column.to_numpy()
            whole = np.isfinite(v) & (v == np.round(v))
            if not whole.all():
                i = int(np.argmax(~whole))
                raise fail(i, f"label {float(v[i])!r} is not a class index")
            return self._from_ints(v.astype(np.int64), fail)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            import pyarrow.compute as pc  # not for dictionary labels: its import costs start-up time

            idx = pc.index_in(column, value_set=pa.array(self.classes, type=t))
            if idx.null_count == 0:
                return idx.to_numpy().astype(np.int64, copy=False)
            missing = idx.is_null().to_numpy(zero_copy_only=False)
            out = idx.fill_null(0).to_numpy().astype(np.int64)
            rows = np.flatnonzero(missing)
            texts = column.filter(pa.array(missing))
            values = None
            if not self.by_name:  # the other labels must be integer indices
                try:
                    values = pc.cast(pc.utf8_trim_whitespace(texts), pa.int64()).to_numpy()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    values = None
            if values is None:  # name the first label that is neither a class name nor an index
                names = ", ".join(self.classes)
                for i, text in zip(rows, texts.to_pylist()):
                    if self.by_name or not _INT_NAME.fullmatch(text.strip()):
                        raise fail(int(i), f"label {_cut(text)} names no class (classes: {names})")
            out[rows] = self._from_ints(values, lambda k, m: fail(int(rows[k]), m))
            return out
        raise fail(0, f"labels of type {t} are neither class names nor class indices")


class PredictionFile:
    """A prediction file, opened for reading in batches.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (or ``.tsv``, optionally ``.gz``/``.bz2``/``.zst`` compressed),
        ``.parquet`` / ``.pq`` or ``.npz`` file (one 1-D member per column; other members are
        ignored), or a glob or directory of Parquet files with the same columns.
    label : str, optional
        Name of the column of true labels (class names or indices). Without it, batches carry
        no labels (a truth file supplies them).
    id : str, optional
        Name of an id column: read as row keys and never taken for a class.
    classes : sequence of str, optional
        The class columns, in order. Default: every numeric column other than ``label`` and
        ``id``, in file order. At least two are needed.
    batch_size : int, default 262144
        Rows per batch (Parquet, NPZ); CSV is parsed in 8 MiB blocks.
    exclude : sequence of str, optional
        Columns never taken for classes (e.g. a label column whose labels come from a truth file).
    weight : str, optional
        A column of sample weights (finite, >= 0); never a class.
    multilabel : bool, default False
        ``label`` is then a list of 0/1 label columns, one per class column, in order
        (``Batch.targets``).

    Raises
    ------
    PredictionFileError
        Missing or unreadable file, unknown format, missing or duplicated column, fewer than
        two classes, an empty file.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation import PredictionFile
    >>> path = os.path.join(tempfile.mkdtemp(), "preds.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id,cat,dog,y\\n7,0.9,0.1,cat\\n8,0.3,0.7,1\\n")
    >>> pf = PredictionFile(path, label="y", id="id")
    >>> pf.classes
    ['cat', 'dog']
    >>> [(b.start, b.size, b.labels.tolist(), b.ids.tolist()) for b in pf.batches()]
    [(0, 2, [0, 1], ['7', '8'])]
    """

    def __init__(self, path, *, label=None, id=None, classes=None, batch_size=DEFAULT_BATCH_ROWS,
                 exclude=(), weight=None, multilabel=False, _label_classes=None):
        self.files = expand_paths(path)
        self.path = path if len(self.files) > 1 else self.files[0]
        self.format = file_format(self.files[0])
        first = self.files[0]
        if not os.path.exists(first):
            raise _fail(first, "no such file")
        if os.path.isdir(first):
            raise _fail(first, "is a directory, not a prediction file")
        if not os.path.isfile(first):
            raise _fail(first, "is not a regular file")
        self.multilabel = bool(multilabel)
        targets = None
        if self.multilabel:  # one 0/1 label column per class
            targets = [label] if isinstance(label, str) else list(label or ())
            label = None
        self.label = label
        self.targets = targets
        self.id = id
        self.weight = weight
        self.batch_size = int(batch_size)
        self.num_rows: Optional[int] = None
        self._npz_members: dict = {}
        self._offsets = [0]
        columns, numeric = self._schema()
        dup = {c for c in columns if columns.count(c) > 1}
        if dup:
            raise _fail(first, f"column name {_cut(sorted(dup)[0])} occurs more than once in the header")
        self.columns = columns
        named = [(label, "label"), (id, "id"), (weight, "weight")] + [(t, "label") for t in targets or ()]
        for name, what in named:
            if name is not None and name not in columns:
                raise _fail(first, f"no {what} column {_cut(name)} (columns: {', '.join(columns)})")
        if weight is not None and weight not in numeric:
            raise self._not_numeric(weight, "the weight column holds numbers")
        for t in targets or ():
            if t not in numeric and t not in self._bools:
                raise self._not_numeric(t, "a multi-label label column holds 0 or 1")
        if _label_classes is not None:  # a truth file: labels name another file's classes
            self.classes, self._labels = [], _Labels(_label_classes)
            self.explicit_classes = False
            if self.num_rows == 0:
                raise _fail(first, "has no data rows")
            return
        explicit = classes is not None
        taken = {label, id, weight, *(targets or ())}
        if explicit:
            classes = [str(c) for c in classes]
            for c in classes:
                if c not in columns:
                    raise _fail(first, f"no class column {_cut(c)} (columns: {', '.join(columns)})")
                if c in taken:
                    raise _fail(first, "cannot be both a class and the label, id or weight column",
                                column=c)
                if c not in numeric:
                    raise self._not_numeric(c, "a class column holds probabilities or logits")
            if len(set(classes)) != len(classes):
                raise _fail(first, "--classes names a class twice")
        else:
            skip = taken | set(exclude)
            for c in self._text_numbers:  # a column of numbers but for some cells: a class
                if c not in skip:
                    raise self._not_numeric(c, "a class column holds probabilities or logits")
            classes = [c for c in columns if c in numeric and c not in skip]
        if len(classes) < 2:
            raise _fail(first, f"needs at least two class columns (numeric columns other than the "
                               f"label, id and weight), found {len(classes)}: "
                               f"{', '.join(classes) or 'none'}")
        if targets is not None and len(targets) != len(classes):
            raise _fail(first, f"multi-label scoring pairs each class column with a label column, "
                               f"in order: {len(classes)} classes ({', '.join(classes)}) but "
                               f"{len(targets)} label columns ({', '.join(targets)})")
        self.classes = classes
        self.explicit_classes = explicit
        self._labels = _Labels(classes)
        if self.num_rows == 0:
            raise _fail(first, "has no data rows")

    # -- locations ----------------------------------------------------------------------------
    def _locate(self, row: int):
        """(file, 1-based row in that file) of the 0-based ``row`` of the whole input."""
        k = int(np.searchsorted(self._offsets, row, side="right")) - 1
        k = max(0, min(k, len(self.files) - 1))
        return self.files[k], row - self._offsets[k] + 1

    def _fail_at(self, row: int, message: str, column=None) -> PredictionFileError:
        """The error for 0-based ``row`` of the whole input (the file and its own row named)."""
        path, r = self._locate(row)
        return _fail(path, message, row=r, column=column)

    def where(self, row: int, k=None) -> str:
        """Location text for 0-based ``row`` and class index ``k``: ``"<path>: row r, column 'c'"``."""
        path, r = self._locate(row)
        text = f"{path}: row {r}"
        return text if k is None else f"{text}, column {self.classes[k]!r}"

    # -- schema -------------------------------------------------------------------------------
    def _schema(self):
        pa = _pa()
        self._text_numbers: list = []  # CSV text columns most of whose cells are numbers
        self._bools: set = set()
        first = self.files[0]
        try:
            if self.format == "csv":
                schema = self._csv_schema(first)
            elif self.format == "parquet":
                import pyarrow.parquet as pq

                schema, rows = None, 0
                for f in self.files:
                    try:
                        meta = pq.ParquetFile(f)
                    except (pa.ArrowException, OSError) as exc:
                        raise _fail(f, f"cannot be read as PARQUET: {_first_line(exc)}") from None
                    if schema is None:
                        schema = meta.schema_arrow
                    elif meta.schema_arrow.names != schema.names:
                        raise _fail(f, f"has the columns {', '.join(meta.schema_arrow.names)}, but "
                                       f"{first} has {', '.join(schema.names)}")
                    rows += meta.metadata.num_rows
                    self._offsets.append(rows)
                self.num_rows = rows
            else:
                return self._npz_schema()
        except PredictionFileError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise self._unreadable(exc) from None
        numeric = {f.name for f in schema if _is_number_type(f.type)}
        self._bools = {f.name for f in schema if pa.types.is_boolean(f.type)}
        self._types = {f.name: f.type for f in schema}
        return list(schema.names), numeric

    def _csv_schema(self, path):
        """The inferred schema of a CSV file; text columns most of whose first-block cells are
        numbers are remembered (a class column with a bad cell, reported by row)."""
        pa = _pa()
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        if os.path.getsize(path) == 0:
            raise _fail(path, "is empty (no header, no rows)")
        with pa.input_stream(path) as f:  # decompresses .gz, .bz2, .zst by the suffix
            head = f.read(_CSV_BLOCK_BYTES)
        if len(head) == _CSV_BLOCK_BYTES and b"\n" not in head:
            raise _fail(path, f"the header line is longer than {_CSV_BLOCK_BYTES >> 20} MiB: "
                              "not a CSV file crossent reads")
        stream = _GatedStream(path)
        try:
            reader = pacsv.open_csv(stream, read_options=self._csv_read_options(),
                                    parse_options=self._csv_parse_options(),
                                    convert_options=pacsv.ConvertOptions(null_values=[""]))
            schema = reader.schema
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                batch = None
            finally:
                reader.close()
        finally:
            stream.close()
        if all(pa.types.is_null(f.type) for f in schema):
            raise _fail(path, "has no data rows (a header only)")
        if batch is not None:
            for f in schema:
                if pa.types.is_string(f.type) and f.name not in (self.label, self.id):
                    cells = batch.column(f.name).drop_null()
                    numbers = pc.sum(pc.match_substring_regex(cells, _NUMBER, ignore_case=True)).as_py() or 0
                    if 2 * numbers > len(cells):
                        self._text_numbers.append(f.name)
        return schema

    def _not_numeric(self, column, what) -> PredictionFileError:
        """The error for a column that is not numeric, naming its first cell that is no number."""
        first = self.files[0]
        if column in getattr(self, "_npz_unusable", {}):
            return _fail(first, f"member {column!r} {self._npz_unusable[column]}")
        found = self._first_text_cell(column) if self.format != "npz" else None
        if found is None:
            kind = self._types.get(column) if hasattr(self, "_types") else None
            return _fail(first, f"is not numeric ({kind}): {what}" if kind else f"is not numeric: {what}",
                         column=column)
        row, text = found
        return _fail(first, f"{_cut(text)} is not a number ({what})", row=row, column=column)

    def _first_text_cell(self, column):
        """(1-based row, text) of the first cell of ``column`` in the first file that does not
        read as a number, or None."""
        pa = _pa()
        import pyarrow.compute as pc

        try:
            if self.format == "csv":
                import pyarrow.csv as pacsv

                convert = pacsv.ConvertOptions(include_columns=[column], column_types={column: pa.string()},
                                               null_values=[""], strings_can_be_null=True)
                batches = pacsv.open_csv(self.files[0], read_options=self._csv_read_options(False),
                                         parse_options=self._csv_parse_options(), convert_options=convert)
            else:
                import pyarrow.parquet as pq

                batches = pq.ParquetFile(self.files[0]).iter_batches(columns=[column])
            start = 0
            for rb in batches:
                cells = rb.column(0)
                if not (pa.types.is_string(cells.type) or pa.types.is_large_string(cells.type)):
                    cells = pc.cast(cells, pa.string())
                ok = pc.fill_null(pc.match_substring_regex(cells, _NUMBER, ignore_case=True), True)
                bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
                if bad.size:
                    return start + int(bad[0]) + 1, cells[int(bad[0])].as_py()
                start += rb.num_rows
        except (pa.ArrowException, OSError):
            return None
        return None

    def _unreadable(self, exc, path=None) -> PredictionFileError:
        path = path or self.files[0]
        text = _first_line(exc)
        if self.format == "csv":
            if "straddl" in text:
                return self._long_line(path)
            m = re.search(r"In CSV column #(\d+): CSV conversion error to \w+: invalid value", text)
            if m and int(m.group(1)) < len(self.columns):
                name = self.columns[int(m.group(1))]
                found = self._first_text_cell(name)
                if found is not None:
                    return _fail(path, f"{_cut(found[1])} is not a number", row=found[0], column=name)
            if re.search(r"Expected \d+ columns, got", text) and "Row #" not in text:
                text = self._csv_error_with_row(path) or text
        m = re.search(r"Row #(\d+): Expected (\d+) columns, got (\d+)", text)
        if m:
            # pyarrow counts the header as row 1 (and skips blank lines): data row = number - 1
            return _fail(path, f"has {m.group(3)} fields but the header names {m.group(2)} "
                               "columns: a ragged CSV row", row=int(m.group(1)) - 1)
        if "Empty CSV file" in text:
            return _fail(path, "is empty (no header, no rows)")
        return _fail(path, f"cannot be read as {self.format.upper()}: {_cut_text(text)}")

    def _long_line(self, path) -> PredictionFileError:
        """The error for a CSV line longer than a block, naming its row (one scan of the file)."""
        pa = _pa()
        line, length = 0, 0
        with pa.input_stream(path) as f:
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                pos = 0
                while True:
                    nl = chunk.find(b"\n", pos)
                    if nl < 0:
                        length += len(chunk) - pos
                        break
                    length += nl - pos
                    if length > _CSV_BLOCK_BYTES:
                        break
                    line, length, pos = line + 1, 0, nl + 1
                if length > _CSV_BLOCK_BYTES:
                    break
        return _fail(path, f"a line longer than {_CSV_BLOCK_BYTES >> 20} MiB: crossent reads CSV "
                           f"rows of up to {_CSV_BLOCK_BYTES >> 20} MiB", row=line if line else None)

    def _csv_error_with_row(self, path) -> Optional[str]:
        """Parse again on one thread, which numbers rows, to say where a parse error is."""
        pa = _pa()
        import pyarrow.csv as pacsv

        try:
            for _ in pacsv.open_csv(path, read_options=self._csv_read_options(False),
                                    parse_options=self._csv_parse_options(),
                                    convert_options=pacsv.ConvertOptions(include_columns=[])):
                pass
        except pa.ArrowInvalid as exc:
            return _first_line(exc)
        return None

    def _npz_schema(self):
        path = self.files[0]
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise _fail(path, f"cannot be read as NPZ: {exc}") from None
        self._npz_unusable: dict = {}
        with zf:
            names, numeric, lengths = [], set(), {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                with zf.open(info) as f:
                    shape, fortran, dtype = _npy_header(f, path, name)
                names.append(name)
                # Members that are not 1-D columns are ignored unless a column they name is needed.
                if dtype.hasobject:
                    self._npz_unusable[name] = ("holds Python objects (pickled); store labels as "
                                                "fixed-width strings or integers")
                    continue
                if len(shape) != 1:
                    self._npz_unusable[name] = f"has shape {shape}; a column is a 1-D member"
                    continue
                lengths[name] = shape[0]
                if dtype.kind in "iuf":
                    numeric.add(name)
                elif dtype.kind == "b":
                    self._bools.add(name)
                self._npz_members[name] = (info, dtype)
        if not names:
            raise _fail(path, "is empty (no .npy members)")
        self._npz_lengths = lengths
        return names, numeric

    def _check_npz_members(self):
        """Every member needed is a 1-D column, and all have one length."""
        path, wanted = self.files[0], self._wanted()
        for name in wanted:
            if name in self._npz_unusable:
                raise _fail(path, f"member {name!r} {self._npz_unusable[name]}")
        lengths = {self._npz_lengths[n] for n in wanted}
        if len(lengths) > 1:
            ref = wanted[0]
            other = next(n for n in wanted if self._npz_lengths[n] != self._npz_lengths[ref])
            raise _fail(path, f"member {other!r} has {self._npz_lengths[other]} rows, "
                              f"{ref!r} {self._npz_lengths[ref]}")
        self.num_rows = lengths.pop()
        self._offsets = [0, self.num_rows]

    # -- CSV options --------------------------------------------------------------------------
    def _csv_read_options(self, threads=True):
        import pyarrow.csv as pacsv

        return pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=threads)

    def _csv_parse_options(self):
        import pyarrow.csv as pacsv

        name = str(self.files[0]).lower()
        tsv = any(name.endswith(".tsv" + s) for s in ("",) + _COMPRESSED)
        return pacsv.ParseOptions(delimiter="\t" if tsv else ",")

    # -- batches ------------------------------------------------------------------------------
    def _wanted(self):
        extra = [c for c in (self.label, self.id, self.weight) if c is not None]
        return self.classes + extra + list(self.targets or ())

    def _raw_batches(self, path):
        """Arrow record batches of the wanted columns of one file."""
        pa = _pa()
        wanted = self._wanted()
        if self.format == "csv":
            import pyarrow.csv as pacsv

            types = {c: pa.float64() for c in self.classes}
            for c in (self.label, self.id):
                if c is not None:
                    types[c] = pa.string()
            convert = pacsv.ConvertOptions(column_types=types, include_columns=wanted,
                                           null_values=[""], strings_can_be_null=True)
            # pyarrow's CSV reader reads the file ahead without bound when its consumer is
            # slower: the gated stream lets it read only a few blocks past the batches taken.
            stream = _GatedStream(path)
            try:
                reader = pacsv.open_csv(stream, read_options=self._csv_read_options(),
                                        parse_options=self._csv_parse_options(), convert_options=convert)
                for rb in reader:
                    stream.took()
                    yield rb
            finally:
                stream.close()
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            # Labels stay dictionary-encoded (as Parquet stores them): decoding millions of
            # strings costs more than reading every probability column. No pre-buffering of
            # whole row groups and 1 MiB read buffers: memory stays bounded by the batch.
            pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20,
                                read_dictionary=[self.label] if self.label is not None else None)
            yield from pf.iter_batches(batch_size=self._rows_per_batch(), columns=wanted)
        else:
            yield from self._npz_batches(wanted)

    def _rows_per_batch(self) -> int:
        """``batch_size``, lowered for many classes so a batch stays within 32 MiB."""
        per_row = 8 * max(len(self.classes), 1)
        return max(1, min(self.batch_size, max(1024, _MAX_BATCH_BYTES // per_row)))

    def _npz_batches(self, wanted):
        pa = _pa()
        path = self.files[0]
        with zipfile.ZipFile(path) as zf:
            streams = []
            for name in wanted:
                info, dtype = self._npz_members[name]
                f = zf.open(info)
                _npy_header(f, path, name)
                streams.append((f, dtype))
            try:
                step = self._rows_per_batch()
                for start in range(0, self.num_rows, step):
                    n = min(step, self.num_rows - start)
                    arrays = []
                    for f, dtype in streams:
                        raw = f.read(n * dtype.itemsize)
                        if len(raw) != n * dtype.itemsize:
                            raise _fail(path, "is truncated", row=start + 1)
                        a = np.frombuffer(raw, dtype=dtype)
                        arrays.append(pa.array(a.astype(a.dtype.newbyteorder("="), copy=False)))
                    yield pa.RecordBatch.from_arrays(arrays, names=wanted)
            finally:
                for f, _ in streams:
                    f.close()

    def _numbers(self, rb, name, start, what):
        """A numeric column of a record batch as a NumPy array (no copy when possible)."""
        pa = _pa()
        col = rb.column(name)
        if col.null_count:
            i = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
            raise self._fail_at(start + i, f"missing {what}", column=name)
        if pa.types.is_decimal(col.type) or pa.types.is_boolean(col.type):
            col = col.cast(pa.float64())
        values = _view(col) if str(col.type) in _NUMPY_TYPES else col.to_numpy(zero_copy_only=False)
        if values.dtype.kind not in "fiu":
            raise self._fail_at(start, f"holds {col.type} values, not numbers", column=name)
        return values

    def batches(self) -> Iterator[Batch]:
        """Iterate over the file(s) in batches; validation of the values is the caller's."""
        if self.format == "npz":
            self._check_npz_members()
        start = 0
        for k, path in enumerate(self.files):
            self._offsets[k] = start
            for rb in self._file_batches(path):
                n = rb.num_rows
                if n == 0:
                    continue
                yield self._batch(rb, start)
                start += n
            if len(self._offsets) < k + 2:
                self._offsets.append(start)
            self._offsets[k + 1] = start
        if start == 0:
            raise _fail(self.path, "has no data rows")
        self.num_rows = start

    def _file_batches(self, path):
        pa = _pa()
        it = self._raw_batches(path)
        while True:
            try:
                rb = next(it)
            except StopIteration:
                return
            except PredictionFileError:
                raise
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise self._unreadable(exc, path) from None
            yield rb

    def _batch(self, rb, start) -> Batch:
        scores = tuple(self._numbers(rb, name, start, "value") for name in self.classes)
        labels = label_map = ids = weights = targets = None
        if self.label is not None:
            labels, label_map = self._labels.codes(
                rb.column(self.label), lambda i, msg: self._fail_at(start + i, msg, column=self.label))
        if self.id is not None:
            ids = _id_values(rb.column(self.id),
                             lambda i, msg: self._fail_at(start + i, msg, column=self.id))
        if self.weight is not None:
            weights = np.asarray(self._numbers(rb, self.weight, start, "weight"), dtype=np.float64)
            bad = ~(np.isfinite(weights) & (weights >= 0))
            if bad.any():
                i = int(np.argmax(bad))
                raise self._fail_at(start + i, f"sample weight {weights[i]!r} is not finite and >= 0",
                                    column=self.weight)
        if self.targets is not None:
            targets = tuple(np.asarray(self._numbers(rb, t, start, "label"), dtype=np.float64)
                            for t in self.targets)
        return Batch(start, rb.num_rows, scores, labels, ids, weights, targets, label_map)


class _GatedStream(io.RawIOBase):
    """A (decompressed) file that its reader may read only ``ahead`` blocks ahead of the bytes
    taken from it: memory stays bounded whatever the file's length.

    The reader turns each block into one batch, so the consumer's taking a batch lets it read
    one more block. A read waits at most ``patience`` seconds (a safety net: a row longer
    than the blocks allowed ahead is slowed, never stuck).
    """

    def __init__(self, path, *, ahead=2, patience=30.0):
        self._raw = _pa().input_stream(path)  # decompresses .gz, .bz2, .zst by the suffix
        self._cond = threading.Condition()
        self._read = 0
        self._taken = 0
        self._ahead = ahead * _CSV_BLOCK_BYTES
        self._patience = patience

    def readable(self) -> bool:
        return True

    def read(self, n=-1):
        with self._cond:
            self._cond.wait_for(lambda: self._read < self._taken + self._ahead or self.closed,
                                timeout=self._patience)
        if self.closed:
            return b""
        data = self._raw.read(n if n is not None and n >= 0 else None)
        self._read += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def took(self) -> None:
        """The consumer took a batch (one block of the file)."""
        with self._cond:
            self._taken += _CSV_BLOCK_BYTES
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if not self.closed:
                self._raw.close()
            super().close()
            self._cond.notify_all()


_NUMPY_TYPES = {"halffloat": "f2", "float": "f4", "double": "f8", "int8": "i1", "int16": "i2",
                "int32": "i4", "int64": "i8", "uint8": "u1", "uint16": "u2", "uint32": "u4",
                "uint64": "u8"}


def _view(array) -> np.ndarray:
    """A NumPy view (no copy) of a primitive Arrow array without nulls.

    ``Array.to_numpy`` does the same but imports pandas when it is installed, which costs more
    than reading a large file.
    """
    dtype = np.dtype(_NUMPY_TYPES[str(array.type)])
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cut_text(text: str) -> str:
    return text if len(text) <= 4 * _ECHO_CHARS else text[:4 * _ECHO_CHARS] + "..."


def _is_number_type(t) -> bool:
    pa = _pa()
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _npy_header(f, path, name):
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        return np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise _fail(path, f"member {name!r} is not a .npy array: {exc}") from None


def _id_values(column, fail) -> np.ndarray:
    """Ids as int64 (integer columns) or as str (anything else)."""
    pa = _pa()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if column.null_count:
        i = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise fail(i, "missing id")
    if pa.types.is_integer(column.type):
        return _view(column).astype(np.int64, copy=False)
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind != "U":
        values = values.astype(str)
    return values


class KeyIndex:
    """Positions of ids in a reference list of unique ids (sorted search; O(N) memory).

    Integer ids are compared as integers; when one side holds strings, both are compared as
    strings (so the CSV id ``"17"`` matches the Parquet id ``17``).

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.evaluation.io import KeyIndex
    >>> KeyIndex(np.array([30, 10, 20]), "truth.csv", "id").lookup(np.array(["20", "99"])).tolist()
    [2, -1]
    """

    def __init__(self, ids: np.ndarray, path, column):
        self.ids = ids
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        dup = np.flatnonzero(self._sorted[1:] == self._sorted[:-1])
        if dup.size:
            first, second = sorted((int(self._order[dup[0]]), int(self._order[dup[0] + 1])))
            raise _fail(path, f"id {_show(ids[first])} occurs more than once (rows {first + 1} "
                              f"and {second + 1})", row=second + 1, column=column)
        self._as_str: Optional[KeyIndex] = None

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Positions of ``ids`` in the index; -1 where an id is not there."""
        if (self._sorted.dtype.kind == "U") != (ids.dtype.kind == "U"):
            if ids.dtype.kind != "U":
                ids = ids.astype(str)
            if self._sorted.dtype.kind != "U":
                if self._as_str is None:
                    self._as_str = KeyIndex(self.ids.astype(str), "", None)
                return self._as_str.lookup(ids)
        pos = np.clip(np.searchsorted(self._sorted, ids), 0, self._sorted.size - 1)
        found = self._sorted[pos] == ids
        return np.where(found, self._order[pos], -1).astype(np.int64)


def _show(value) -> str:
    return _cut(value.item() if isinstance(value, np.generic) else value)


@dataclass
class Truth:
    """True labels of a truth file, held in memory: ``index`` maps ids to rows, ``labels``
    holds the class index of each row."""

    path: str
    id: str
    label: str
    index: KeyIndex
    labels: np.ndarray


def read_truth(path, *, id, label, classes, batch_size=DEFAULT_BATCH_ROWS) -> Truth:
    """Read a truth file (id and label columns) and map its labels to ``classes``.

    The id and label columns are held in memory (a few bytes per row); ids must be unique.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation import read_truth
    >>> path = os.path.join(tempfile.mkdtemp(), "truth.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id,y\\n7,dog\\n8,cat\\n")
    >>> t = read_truth(path, id="id", label="y", classes=["cat", "dog"])
    >>> t.labels.tolist(), t.index.lookup(t.index.ids).tolist()
    ([1, 0], [0, 1])
    """
    if id is None:
        raise PredictionFileError(f"{path}: a truth file is joined to the predictions by an id "
                                  "column: give --id")
    if label is None:
        raise PredictionFileError(f"{path}: give the truth file's label column (--label)")
    tf = PredictionFile(path, label=label, id=id, batch_size=batch_size, _label_classes=classes)
    ids, labels = [], []
    for batch in tf.batches():
        ids.append(batch.ids)
        labels.append(batch.labels)
    return Truth(str(path), id, label, KeyIndex(np.concatenate(ids), path, id), np.concatenate(labels))


def read_table(path):
    """A whole CSV, Parquet or NPZ table as a ``pyarrow.Table``, with the checks of
    :class:`PredictionFile` (a missing or empty file, duplicated column names, ragged or
    unreadable rows, over-long lines), each a :class:`PredictionFileError` naming the file.

    For tables that fit in memory (``crossent train`` reads its data with it); prediction
    files are streamed by :class:`PredictionFile` instead.

    Examples
    --------
    >>> import os, tempfile
    >>> from crossent.evaluation.io import read_table
    >>> path = os.path.join(tempfile.mkdtemp(), "data.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("x,y\\n1.5,a\\n2.5,b\\n")
    >>> read_table(path).column_names
    ['x', 'y']
    """
    pa = _pa(pandas=True)
    text = os.fspath(path)
    fmt = file_format(text)
    if not os.path.exists(text):
        raise _fail(text, "no such file")
    if not os.path.isfile(text):
        raise _fail(text, "is a directory, not a table" if os.path.isdir(text) else "is not a regular file")
    reader = PredictionFile.__new__(PredictionFile)  # its schema checks and error messages
    reader.files, reader.path, reader.format = [text], text, fmt
    reader.label = reader.id = reader.weight = reader.targets = None
    reader._npz_members, reader._offsets = {}, [0]
    columns, _ = reader._schema()
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise _fail(text, f"column name {_cut(dup[0])} occurs more than once in the header")
    reader.columns = columns
    try:
        if fmt == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(text, read_options=reader._csv_read_options(),
                                   parse_options=reader._csv_parse_options(),
                                   convert_options=pacsv.ConvertOptions(null_values=[""]))
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(text)
        else:
            reader.classes = [c for c in columns if c not in reader._npz_unusable]
            table = pa.Table.from_batches(list(reader._npz_batches(reader.classes)))
    except PredictionFileError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise reader._unreadable(exc, text) from None
    if table.num_rows == 0:
        raise _fail(text, f"has no data rows (columns: {', '.join(table.column_names)})")
    return table


def numeric_column(table, name, path) -> np.ndarray:
    """Column ``name`` of a ``pyarrow.Table`` as finite float64 values, or a
    :class:`PredictionFileError` naming the row, the column and the value of the first bad cell.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from crossent.evaluation.io import numeric_column
    >>> numeric_column(pa.table({"f": ["1", "x"]}), "f", "data.csv")
    Traceback (most recent call last):
    ...
    crossent.evaluation.io.PredictionFileError: data.csv: row 2, column 'f': 'x' is not a number
    """
    pa = _pa()
    import pyarrow.compute as pc

    column = table.column(name)
    if column.null_count:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False))) + 1
        raise _fail(path, "missing value", row=row, column=name)
    t = column.type
    if not (_is_number_type(t) or pa.types.is_boolean(t) or pa.types.is_null(t)):
        cells = column if pa.types.is_string(t) or pa.types.is_large_string(t) else pc.cast(column, pa.string())
        ok = pc.match_substring_regex(cells, _NUMBER, ignore_case=True).to_numpy(zero_copy_only=False)
        row = int(np.argmax(~ok)) if not ok.all() else 0
        raise _fail(path, f"{_cut(cells[row].as_py())} is not a number", row=row + 1, column=name)
    values = column.to_numpy(zero_copy_only=False).astype(np.float64) if not pa.types.is_decimal(t) \
        else pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise _fail(path, f"{values[row]} is not a finite number", row=row + 1, column=name)
    return values
