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
Parquet is read batch by batch (``ParquetFile.iter_batches``) and NPZ members are streamed from
the archive (stored or deflated) without loading whole arrays.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

__all__ = ["PredictionFileError", "PredictionFile", "Batch", "KeyIndex", "Truth", "read_truth",
           "file_format", "DEFAULT_BATCH_ROWS"]

#: Rows per batch for Parquet and NPZ (CSV is read in blocks of about the same byte size).
DEFAULT_BATCH_ROWS = 1 << 18
_CSV_BLOCK_BYTES = 16 << 20
#: Parquet and NPZ batches hold at most this many bytes of class columns (8 bytes a value).
_MAX_BATCH_BYTES = 32 << 20
_CSV_SUFFIXES = (".csv", ".tsv")
_COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
_INT_NAME = re.compile(r"[+-]?\d+")


class PredictionFileError(ValueError):
    """Bad input in a prediction or truth file; the message names file, row and column."""


def _fail(path, message, row=None, column=None) -> PredictionFileError:
    """``"<path>: row <r>, column '<c>': <message>"`` (row and column when known)."""
    where = [f"row {row}"] if row is not None else []
    if column is not None:
        where.append(f"column {column!r}")
    return PredictionFileError(f"{path}: " + (", ".join(where) + ": " if where else "") + message)


def _pa():
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is in the cli extra
        raise ImportError("reading prediction files needs pyarrow: pip install 'crossent[cli]'") from None
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
    columns (1-D arrays of length ``size``, in class order, as read: no copy); ``labels`` the
    class indices (or None when the file has no label column); ``ids`` the id column as a
    NumPy array (or None).
    """

    start: int
    size: int
    scores: tuple
    labels: Optional[np.ndarray]
    ids: Optional[np.ndarray]


class _Labels:
    """Maps a label column (names or indices) to class indices."""

    def __init__(self, classes: Sequence[str]):
        self.classes = list(classes)
        self.by_name = all(_INT_NAME.fullmatch(c) for c in self.classes)
        if self.by_name:  # integer names: label v is the class named v
            values = np.array([int(c) for c in self.classes], dtype=np.int64)
            self._order = np.argsort(values, kind="stable")
            self._sorted = values[self._order]

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

    def map(self, column, fail) -> np.ndarray:
        """Class indices of an Arrow array ``column``; ``fail(i, msg)`` builds the error for row i."""
        pa = _pa()
        import pyarrow.compute as pc

        if column.null_count:
            i = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise fail(i, "missing label")
        if pa.types.is_dictionary(column.type):
            # Map the (few) distinct labels once, then look up each row's code.
            codes = column.indices.to_numpy(zero_copy_only=False)
            used = np.zeros(len(column.dictionary), dtype=bool)
            used[codes] = True
            first = np.full(used.size, -1, dtype=np.int64)  # a row holding each used label
            first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)
            dictionary = column.dictionary.filter(pa.array(used))
            mapped = np.zeros(used.size, dtype=np.int64)
            mapped[used] = self.map(dictionary, lambda k, m: fail(int(first[np.flatnonzero(used)[k]]), m))
            return mapped[codes]
        t = column.type
        if pa.types.is_boolean(t):
            return column.to_numpy(zero_copy_only=False).astype(np.int64)
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
                        raise fail(int(i), f"label {text!r} names no class (classes: {names})")
            out[rows] = self._from_ints(values, lambda k, m: fail(int(rows[k]), m))
            return out
        raise fail(0, f"labels of type {t} are neither class names nor class indices")


class PredictionFile:
    """A prediction file, opened for reading in batches.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (or ``.tsv``, optionally ``.gz``/``.bz2``/``.zst`` compressed),
        ``.parquet`` / ``.pq`` or ``.npz`` file (one 1-D member per column).
    label : str, optional
        Name of the column of true labels (class names or indices). Without it, batches carry
        no labels (a truth file supplies them).
    id : str, optional
        Name of an id column: read as row keys and never taken for a class.
    classes : sequence of str, optional
        The class columns, in order. Default: every numeric column other than ``label`` and
        ``id``, in file order. At least two are needed.
    batch_size : int, default 262144
        Rows per batch (Parquet, NPZ); CSV is parsed in 16 MiB blocks.
    exclude : sequence of str, optional
        Columns never taken for classes (e.g. a label column whose labels come from a truth file).

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
                 exclude=(), _label_classes=None):
        self.path = path
        self.format = file_format(path)
        if not os.path.exists(path):
            raise _fail(path, "no such file")
        if os.path.isdir(path):
            raise _fail(path, "is a directory, not a prediction file")
        self.label = label
        self.id = id
        self.batch_size = int(batch_size)
        self.num_rows: Optional[int] = None
        self._npz_members: dict = {}
        columns, numeric = self._schema()
        dup = {c for c in columns if columns.count(c) > 1}
        if dup:
            raise _fail(path, f"column name {sorted(dup)[0]!r} occurs more than once in the header")
        self.columns = columns
        for name, what in ((label, "label"), (id, "id")):
            if name is not None and name not in columns:
                raise _fail(path, f"no {what} column {name!r} (columns: {', '.join(columns)})")
        if _label_classes is not None:  # a truth file: labels name another file's classes
            self.classes, self._labels = [], _Labels(_label_classes)
            if self.num_rows == 0:
                raise _fail(path, "has no data rows")
            return
        explicit = classes is not None
        if explicit:
            classes = [str(c) for c in classes]
            for c in classes:
                if c not in columns:
                    raise _fail(path, f"no class column {c!r} (columns: {', '.join(columns)})")
                if c not in numeric:
                    raise _fail(path, "is not numeric: a class column holds probabilities or logits",
                                column=c)
                if c in (label, id):
                    raise _fail(path, "cannot be both a class and the label or id column", column=c)
            if len(set(classes)) != len(classes):
                raise _fail(path, "--classes names a class twice")
        else:
            skip = {label, id, *exclude}
            classes = [c for c in columns if c in numeric and c not in skip]
        if len(classes) < 2:
            raise _fail(path, f"needs at least two class columns (numeric columns other than the "
                              f"label and id), found {len(classes)}: {', '.join(classes) or 'none'}")
        self.classes = classes
        self.explicit_classes = explicit
        self._labels = _Labels(classes)
        if self.num_rows == 0:
            raise _fail(path, "has no data rows")

    # -- schema -------------------------------------------------------------------------------
    def _schema(self):
        pa = _pa()
        try:
            if self.format == "csv":
                import pyarrow.csv as pacsv

                if os.path.getsize(self.path) == 0:
                    raise _fail(self.path, "is empty (no header, no rows)")
                reader = pacsv.open_csv(self.path, read_options=self._csv_read_options(),
                                        parse_options=self._csv_parse_options(),
                                        convert_options=pacsv.ConvertOptions(null_values=[""]))
                schema = reader.schema
                reader.close()
                if all(pa.types.is_null(f.type) for f in schema):
                    raise _fail(self.path, "has a header but no data rows")
            elif self.format == "parquet":
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(self.path)
                schema = meta.schema_arrow
                self.num_rows = meta.metadata.num_rows
            else:
                return self._npz_schema()
        except PredictionFileError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise self._unreadable(exc) from None
        numeric = {f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)}
        return list(schema.names), numeric

    def _unreadable(self, exc) -> PredictionFileError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.format == "csv" and re.search(r"Expected \d+ columns, got", text) and "Row #" not in text:
            text = self._csv_error_with_row() or text
        m = re.search(r"Row #(\d+): Expected (\d+) columns, got (\d+)", text)
        if m:
            # pyarrow counts the header as row 1 (and skips blank lines): data row = number - 1
            return _fail(self.path, f"has {m.group(3)} fields but the header names {m.group(2)} "
                                    "columns: a ragged CSV row", row=int(m.group(1)) - 1)
        if "Empty CSV file" in text:
            return _fail(self.path, "is empty (no header, no rows)")
        return _fail(self.path, f"cannot be read as {self.format.upper()}: {text}")

    def _csv_error_with_row(self) -> Optional[str]:
        """Parse again on one thread, which numbers rows, to say where a parse error is."""
        pa = _pa()
        import pyarrow.csv as pacsv

        read = pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=False)
        try:
            for _ in pacsv.open_csv(self.path, read_options=read, parse_options=self._csv_parse_options(),
                                    convert_options=pacsv.ConvertOptions(include_columns=[])):
                pass
        except pa.ArrowInvalid as exc:
            return str(exc).strip().splitlines()[0]
        return None

    def _npz_schema(self):
        try:
            zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise _fail(self.path, f"cannot be read as NPZ: {exc}") from None
        with zf:
            names, numeric, length = [], set(), None
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                with zf.open(info) as f:
                    shape, fortran, dtype = _npy_header(f, self.path, name)
                if dtype.hasobject:
                    raise _fail(self.path, f"member {name!r} holds Python objects (pickled); "
                                           "store labels as fixed-width strings or integers")
                if len(shape) != 1:
                    raise _fail(self.path, f"member {name!r} has shape {shape}; every member must be "
                                           "a 1-D column")
                if length is not None and shape[0] != length:
                    raise _fail(self.path, f"member {name!r} has {shape[0]} rows, the others {length}")
                length = shape[0]
                names.append(name)
                if dtype.kind in "iuf":
                    numeric.add(name)
                self._npz_members[name] = (info, dtype)
        if not names:
            raise _fail(self.path, "is empty (no .npy members)")
        self.num_rows = length
        return names, numeric

    # -- CSV options --------------------------------------------------------------------------
    def _csv_read_options(self):
        import pyarrow.csv as pacsv

        return pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, use_threads=True)

    def _csv_parse_options(self):
        import pyarrow.csv as pacsv

        name = str(self.path).lower()
        tsv = any(name.endswith(".tsv" + s) for s in ("",) + _COMPRESSED)
        return pacsv.ParseOptions(delimiter="\t" if tsv else ",")

    def where(self, row: int, k=None) -> str:
        """Location text for 0-based ``row`` and class index ``k``: ``"<path>: row r, column 'c'"``."""
        text = f"{self.path}: row {row + 1}"
        return text if k is None else f"{text}, column {self.classes[k]!r}"

    # -- batches ------------------------------------------------------------------------------
    def _wanted(self):
        return self.classes + [c for c in (self.label, self.id) if c is not None]

    def _raw_batches(self):
        """Arrow record batches of the wanted columns."""
        pa = _pa()
        wanted = self._wanted()
        if self.format == "csv":
            import pyarrow.csv as pacsv

            types = {c: pa.float64() for c in self.classes}
            if self.label is not None:
                types[self.label] = pa.string()
            if self.id is not None:
                types[self.id] = pa.string()
            convert = pacsv.ConvertOptions(column_types=types, include_columns=wanted,
                                           null_values=[""], strings_can_be_null=True)
            reader = pacsv.open_csv(self.path, read_options=self._csv_read_options(),
                                    parse_options=self._csv_parse_options(), convert_options=convert)
            yield from reader
        elif self.format == "parquet":
            import pyarrow.parquet as pq

            # No pre-buffering of whole row groups and 1 MiB read buffers: memory stays bounded
            # by the batch (pre_buffer=True, the default, holds ~a row group of every column).
            # Labels stay dictionary-encoded (as Parquet stores them): decoding millions of
            # strings costs more than reading every probability column.
            pf = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20,
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
        with zipfile.ZipFile(self.path) as zf:
            streams = []
            for name in wanted:
                info, dtype = self._npz_members[name]
                f = zf.open(info)
                _npy_header(f, self.path, name)
                streams.append((f, dtype))
            try:
                step = self._rows_per_batch()
                for start in range(0, self.num_rows, step):
                    n = min(step, self.num_rows - start)
                    arrays = []
                    for f, dtype in streams:
                        raw = f.read(n * dtype.itemsize)
                        if len(raw) != n * dtype.itemsize:
                            raise _fail(self.path, "is truncated", row=start + 1)
                        a = np.frombuffer(raw, dtype=dtype)
                        arrays.append(pa.array(a.astype(a.dtype.newbyteorder("="), copy=False)))
                    yield pa.RecordBatch.from_arrays(arrays, names=wanted)
            finally:
                for f, _ in streams:
                    f.close()

    def batches(self) -> Iterator[Batch]:
        """Iterate over the file in batches; validation of the values is the caller's."""
        pa = _pa()
        start = 0
        it = self._raw_batches()
        while True:
            try:
                rb = next(it)
            except StopIteration:
                break
            except PredictionFileError:
                raise
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise self._unreadable(exc) from None
            n = rb.num_rows
            if n == 0:
                continue
            scores = []
            for name in self.classes:
                col = rb.column(name)
                if col.null_count:
                    i = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
                    raise _fail(self.path, "missing value", row=start + i + 1, column=name)
                values = col.to_numpy(zero_copy_only=False)
                if values.dtype.kind not in "fiu":
                    raise _fail(self.path, f"holds {col.type} values, not numbers", column=name)
                scores.append(values)
            labels = ids = None
            if self.label is not None:
                labels = self._labels.map(
                    rb.column(self.label),
                    lambda i, msg: _fail(self.path, msg, row=start + i + 1, column=self.label))
            if self.id is not None:
                ids = _id_values(rb.column(self.id), lambda i, msg: _fail(
                    self.path, msg, row=start + i + 1, column=self.id))
            yield Batch(start, n, tuple(scores), labels, ids)
            start += n
        if start == 0:
            raise _fail(self.path, "has no data rows")
        self.num_rows = start


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
        return column.to_numpy().astype(np.int64, copy=False)
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
    return repr(value.item() if isinstance(value, np.generic) else value)


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
