"""crossent.evaluation.io: which columns are classes, how labels and ids are read, batching."""

from __future__ import annotations

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from crossent.evaluation.io import KeyIndex, PredictionFile, PredictionFileError, file_format, read_truth  # noqa: E402


def _parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def _labels(pf):
    return np.concatenate([b.labels for b in pf.batches()]).tolist()


def test_label_types_names_indices_categorical_float_bool(tmp_path):
    probs = {"a": [0.5, 0.2, 0.9], "b": [0.5, 0.8, 0.1]}
    cases = {
        "names": pa.array(["b", "a", "b"]),
        "categorical": pa.array(["b", "a", "b"]).dictionary_encode(),
        "indices": pa.array([1, 0, 1], pa.int8()),
        "float indices": pa.array([1.0, 0.0, 1.0]),
        "bool": pa.array([True, False, True]),
        "mixed text": pa.array(["b", "0", " 1"]),
    }
    for name, labels in cases.items():
        path = _parquet(tmp_path / "p.parquet", **probs, y=labels)
        assert _labels(PredictionFile(path, label="y")) == [1, 0, 1], name


def test_integer_class_names_are_matched_by_name_never_by_position(tmp_path):
    path = _parquet(tmp_path / "p.parquet", **{"5": [0.5], "2": [0.5]}, y=pa.array([2]))
    assert _labels(PredictionFile(path, label="y")) == [1]
    path = _parquet(tmp_path / "p.parquet", **{"5": [0.5], "2": [0.5]}, y=pa.array([0]))
    with pytest.raises(PredictionFileError, match=r"row 1, column 'y': label 0 names no class \(classes: 5, 2\)"):
        _labels(PredictionFile(path, label="y"))


@pytest.mark.parametrize("labels, message", [
    (pa.array([0.5]), "label 0.5 is not a class index"),
    (pa.array([None], pa.int64()), "missing label"),
    (pa.array([7]), r"label 7 is neither a class name nor a class index in \[0, 2\)"),
    (pa.array(["c"]), "label 'c' names no class"),
])
def test_bad_labels(tmp_path, labels, message):
    path = _parquet(tmp_path / "p.parquet", a=[0.5], b=[0.5], y=labels)
    with pytest.raises(PredictionFileError, match=message):
        _labels(PredictionFile(path, label="y"))


def test_classes_rule_and_batches_bounded_by_batch_size(tmp_path):
    n = 1000
    path = _parquet(tmp_path / "p.parquet", id=np.arange(n), note=np.array(["x"] * n),
                    a=np.full(n, 0.25), b=np.full(n, 0.75), y=np.zeros(n, dtype=np.int64))
    pf = PredictionFile(path, label="y", id="id", batch_size=128)
    assert pf.classes == ["a", "b"]  # numeric, not the label, not the id; text columns ignored
    sizes = [b.size for b in pf.batches()]
    assert max(sizes) <= 128 and sum(sizes) == n
    assert PredictionFile(path, label="y").classes == ["id", "a", "b"]  # without --id, a number is a class
    assert PredictionFile(path, label="y", classes=["b", "a"]).classes == ["b", "a"]
    with pytest.raises(PredictionFileError, match="row 1, column 'note': 'x' is not a number"):
        PredictionFile(path, label="y", classes=["a", "note"])


def test_npz_streams_stored_and_deflated_members(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random(1000)
    cols = {"a": a, "b": 1 - a, "y": np.array(["a", "b"])[rng.integers(0, 2, 1000)]}
    np.savez(tmp_path / "s.npz", **cols)
    np.savez_compressed(tmp_path / "c.npz", **cols)
    for name in ("s.npz", "c.npz"):
        batches = list(PredictionFile(tmp_path / name, label="y", batch_size=300).batches())
        assert [b.size for b in batches] == [300, 300, 300, 100]
        np.testing.assert_array_equal(np.concatenate([b.scores[0] for b in batches]), a)
        assert np.concatenate([b.labels for b in batches]).tolist() == (cols["y"] == "b").astype(int).tolist()


def test_ids_join_across_integer_and_text_columns(tmp_path):
    idx = KeyIndex(np.array([10, 30, 20]), "t.parquet", "id")
    assert idx.lookup(np.array([20, 10, 99])).tolist() == [2, 0, -1]
    assert idx.lookup(np.array(["30", "x"])).tolist() == [1, -1]
    with pytest.raises(PredictionFileError,
                       match=r"t.csv: row 3, column 'id': id 'b' occurs more than once \(rows 1 and 3\)"):
        KeyIndex(np.array(["b", "a", "b"]), "t.csv", "id")
    path = _parquet(tmp_path / "t.parquet", id=[5, 6], y=["dog", "cat"])
    t = read_truth(path, id="id", label="y", classes=["cat", "dog"])
    assert t.labels.tolist() == [1, 0] and t.index.lookup(np.array(["6"])).tolist() == [1]


def test_file_format_from_the_name():
    assert [file_format(p) for p in ("a.CSV", "a.tsv.gz", "a.parquet", "a.pq", "a.npz")] == \
        ["csv", "csv", "parquet", "parquet", "npz"]
    for bad in ("a.json", "a.gz", "a.parquet.gz"):
        with pytest.raises(PredictionFileError, match="unknown format"):
            file_format(bad)


def test_dictionary_labels_unused_entries_need_not_be_labels():
    """A dictionary of class names is mapped once for the batches that share it; an entry that
    is no label is an error only in the rows that use it (named by row)."""
    from crossent.evaluation.io import _Labels

    labels = _Labels(["a", "b"])
    names = pa.array(["b", "a", "zz"])

    def fail(i, message):
        return PredictionFileError(f"row {i}: {message}")

    for _ in range(2):  # the second batch reuses the mapping of the first
        column = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1], pa.int32()), pa.array(["b", "a"]))
        assert labels.map(column, fail).tolist() == [1, 0, 0]
    unused = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), names)
    assert labels.map(unused, fail).tolist() == [0, 1]
    used = pa.DictionaryArray.from_arrays(pa.array([1, 2, 0], pa.int32()), names)
    with pytest.raises(PredictionFileError, match=r"row 1: label 'zz' names no class"):
        labels.map(used, fail)
