"""``crossent train`` through the real entry point: the fit against scikit-learn, predictions that
``crossent score`` reads, saved models, and bad input ending in one line with exit status 2."""

from __future__ import annotations

import csv
import ctypes
import io
import json
import signal
import sys

import numpy as np
import pytest

from crossent.cli import main

pytest.importorskip("pyarrow")
pytest.importorskip("scipy")
sk_datasets = pytest.importorskip("sklearn.datasets")
from sklearn.linear_model import LogisticRegression as SkLogisticRegression  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossent: error: "), err
    assert "Traceback" not in err
    return lines[0][len("crossent: error: "):]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def iris_csv(tmp_path):
    iris = sk_datasets.load_iris()
    names = np.asarray(iris.target_names)[iris.target]
    rows = [list(map(float, x)) + [n] for x, n in zip(iris.data, names)]
    return write_csv(tmp_path / "flowers.csv", FEATURES + ["species"], rows), iris


def read_predictions(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return reader.fieldnames, rows


def test_train_matches_sklearn_and_score_reads_the_predictions(tmp_path, capsys, iris_csv):
    data, iris = iris_csv
    preds = tmp_path / "preds.csv"
    code, out, err = run(capsys, "train", data, "--target", "species", "--out", preds,
                         "--seed", "3", "--alpha", "0.01")
    assert code == 0, err
    assert "held out (30)" in out
    header, rows = read_predictions(preds)
    assert header == ["setosa", "versicolor", "virginica", "species"]
    assert len(rows) == 30
    probs = np.array([[float(r[c]) for c in header[:3]] for r in rows])
    labels = [r["species"] for r in rows]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)

    # The same fit by scikit-learn on the same rows: predictions are the held-out rows of the
    # stratified split, in file order, features standardised with the training rows' statistics.
    from crossent.datasets import train_test_split

    names = np.asarray(iris.target_names)[iris.target]
    train, test = train_test_split(names, test_size=0.2, random_state=3)
    assert [names[i] for i in test] == labels
    mean, std = iris.data[train].mean(axis=0), iris.data[train].std(axis=0)
    sk = SkLogisticRegression(C=1.0 / (0.01 * len(train)), tol=1e-10, max_iter=5000)
    sk.fit((iris.data[train] - mean) / std, names[train])
    expected = sk.predict_proba((iris.data[test] - mean) / std)
    np.testing.assert_allclose(probs, expected, atol=1e-5)

    code, out, err = run(capsys, "score", preds, "--label", "species", "--json")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["rows"] == 30
    assert scored["cross_entropy_nats"] == pytest.approx(log_loss(labels, probs), rel=1e-9)


def test_save_and_reuse_a_model(tmp_path, capsys, iris_csv):
    data, _ = iris_csv
    model = tmp_path / "model.json"
    held_out = tmp_path / "held_out.csv"
    code, _, err = run(capsys, "train", data, "--target", "species", "--out", held_out,
                       "--save", model, "--loss", "focal", "--solver", "gd", "--epochs", "50")
    assert code == 0, err
    saved = json.loads(model.read_text())
    assert saved["classes"] == ["setosa", "versicolor", "virginica"]
    assert saved["feature_names"] == FEATURES
    assert np.array(saved["coef"]).shape == (3, 4) and len(saved["mean"]) == 4
    everything = tmp_path / "all.parquet"
    code, out, err = run(capsys, "train", data, "--model", model, "--out", everything)
    assert code == 0, err
    assert "all (150)" in out
    import pyarrow.parquet as pq

    table = pq.read_table(everything)
    assert table.num_rows == 150 and table.column_names[-1] == "species"
    _, rows = read_predictions(held_out)
    # The held-out predictions reappear, unchanged, among the saved model's predictions.
    first = [float(rows[0][c]) for c in ("setosa", "versicolor", "virginica")]
    reused = np.column_stack([table.column(c).to_numpy() for c in ("setosa", "versicolor", "virginica")])
    assert np.isclose(reused, first, rtol=1e-12, atol=0).all(axis=1).any()


def test_parquet_input_mse_and_id_column(tmp_path, capsys, iris_csv):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _, iris = iris_csv
    names = np.asarray(iris.target_names)[iris.target]
    table = pa.table({"flower": [f"f{i}" for i in range(150)],
                      **{f: iris.data[:, j] for j, f in enumerate(FEATURES)}, "species": names})
    data = tmp_path / "flowers.parquet"
    pq.write_table(table, data)
    preds = tmp_path / "p.csv"
    code, _, err = run(capsys, "train", data, "--target", "species", "--id", "flower",
                       "--loss", "mse", "--out", preds)
    assert code == 0, err
    header, rows = read_predictions(preds)
    assert header == ["flower", "setosa", "versicolor", "virginica", "species"]
    assert all(names[int(r["flower"][1:])] == r["species"] for r in rows)


def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert error_line(capsys, "train", empty, "--target", "y") == f"{empty}: is empty (no header, no rows)"
    header_only = write_csv(tmp_path / "header.csv", ["a", "y"], [])
    assert "has no data rows" in error_line(capsys, "train", header_only, "--target", "y")
    table = write_csv(tmp_path / "t.csv", ["a", "color", "y"],
                      [[1, "red", "x"], [2, "blue", "z"], [3, "red", "x"], [4, "blue", "z"]])
    message = error_line(capsys, "train", table, "--target", "species")
    assert message.startswith(f"{table}: no target column 'species'")
    message = error_line(capsys, "train", table, "--target", "y")
    assert message == f"{table}: row 1, column 'color': 'red' is not a number"
    one = write_csv(tmp_path / "one.csv", ["a", "y"], [[1, "x"], [2, "x"], [3, "x"]])
    message = error_line(capsys, "train", one, "--target", "y")
    assert message == f"{one}: column 'y' has only one class ('x'); a classifier needs at least two"
    missing = write_csv(tmp_path / "m.csv", ["a", "y"], [[1, "x"], ["", "z"], [3, "x"], [4, "z"]])
    assert error_line(capsys, "train", missing, "--target", "y") == \
        f"{missing}: row 2, column 'a': missing value"
    assert "no such file" in error_line(capsys, "train", tmp_path / "nope.csv", "--target", "y")
    assert "--loss must be one of" in error_line(capsys, "train", table, "--target", "y",
                                                 "--loss", "hinge")
    assert "--target is required" in error_line(capsys, "train", table)
    assert "not a JSON model file" in error_line(capsys, "train", table, "--model", one)
    other = tmp_path / "other.json"
    other.write_text('{"weights": [1, 2]}')
    assert "not a model saved by 'crossent train --save'" in error_line(
        capsys, "train", table, "--model", other)


# ----------------------------------------------------------------------------- hostile inputs (issue 9)
def _metrics(out):
    """The metrics table printed by train (the lines around it hold file names)."""
    return out[out.index("Softmax regression"):].split("predictions of")[0]


def _predictions(path):
    header, rows = read_predictions(path)
    classes = header[:-1]
    return np.array([[float(r[c]) for c in classes] for r in rows]), [r[header[-1]] for r in rows]


@pytest.mark.parametrize("column, factor", [(0, 1e307), (2, 1e-300), (3, 2.0**1000)])
def test_standardisation_is_scale_invariant(tmp_path, capsys, iris_csv, column, factor):
    """A column x 1e307 overflowed the standard deviation: the column was standardised to zero
    (held-out accuracy 0.79 -> 0.42) with a RuntimeWarning. Oracle: the same fit on the
    unscaled table."""
    data, iris = iris_csv
    names = np.asarray(iris.target_names)[iris.target]
    scaled = iris.data.copy()
    scaled[:, column] *= factor
    big = write_csv(tmp_path / "big.csv", FEATURES + ["species"],
                    [[repr(float(v)) for v in x] + [n] for x, n in zip(scaled, names)])
    runs = []
    for table in (data, big):
        preds = tmp_path / f"{table.stem}_preds.csv"
        code, out, err = run(capsys, "train", table, "--target", "species", "--out", preds,
                             "--seed", "1", "--save", tmp_path / f"{table.stem}.json")
        assert code == 0 and err == "", err
        runs.append((_metrics(out), *_predictions(preds)))
    (out_a, probs_a, labels_a), (out_b, probs_b, labels_b) = runs
    assert out_a == out_b and labels_a == labels_b  # the same metrics table
    np.testing.assert_allclose(probs_b, probs_a, rtol=1e-7, atol=1e-12)
    # the saved model standardises the scaled table as it was trained
    preds = tmp_path / "again.csv"
    code, _, err = run(capsys, "train", big, "--model", tmp_path / "big.json", "--out", preds)
    assert code == 0 and err == "", err


def test_standardisation_of_a_column_spanning_the_float_range(tmp_path, capsys):
    """x - mean overflows for a column holding +-1.5e308: standard scores stay finite."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    y = np.where(x + 0.5 * rng.normal(size=200) > 0, "up", "down")
    tables = {}
    for scale in (1.0, 1.5e308 / np.max(np.abs(x))):
        tables[scale] = write_csv(tmp_path / f"s{len(tables)}.csv", ["f", "y"],
                                  [[repr(float(v * scale)), c] for v, c in zip(x, y)])
    outs = []
    for table in tables.values():
        code, out, err = run(capsys, "train", table, "--target", "y")
        assert code == 0 and err == "", err
        outs.append(_metrics(out))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_boolean_targets_round_trip_through_score(tmp_path, capsys, suffix):
    """``train`` wrote predictions of a true/false target that ``score`` could not read ("label
    'false' names no class (classes: False, True)"). Oracle: scikit-learn's log_loss on the
    written probabilities."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 2))
    flag = x[:, 0] - x[:, 1] + 0.7 * rng.normal(size=120) > 0
    data = write_csv(tmp_path / "flags.csv", ["a", "b", "flag"],
                     [[a, b, "true" if f else "false"] for (a, b), f in zip(x, flag)])
    preds = tmp_path / f"preds{suffix}"
    code, _, err = run(capsys, "train", data, "--target", "flag", "--out", preds,
                       "--save", tmp_path / "m.json")
    assert code == 0, err
    code, out, err = run(capsys, "score", preds, "--label", "flag", "--json")
    assert code == 0, err
    if suffix == ".csv":
        probs, labels = _predictions(preds)
        header, _ = read_predictions(preds)
        assert header[:2] == ["false", "true"] and set(labels) == {"false", "true"}
        expected = log_loss(labels, probs, labels=["false", "true"])
        assert json.loads(out)["cross_entropy_nats"] == pytest.approx(expected, rel=1e-9)
    # a saved model predicts the same target type back
    again = tmp_path / f"again{suffix}"
    code, _, err = run(capsys, "train", data, "--model", tmp_path / "m.json", "--out", again)
    assert code == 0, err
    code, _, err = run(capsys, "score", again, "--label", "flag")
    assert code == 0, err


def test_input_and_output_paths_are_checked_before_the_work(tmp_path, capsys, iris_csv):
    """A directory or a FIFO as DATA said "no such file"; --out or --save under an existing
    file gave "[Errno 17] File exists" after the training."""
    import os

    data, _ = iris_csv
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    cases = [
        (("train", tmp_path, "--target", "species"), f"DATA {tmp_path}: is a directory, not a file"),
        (("train", fifo, "--target", "species"),
         f"DATA {fifo}: is not a regular file (a FIFO, socket or device); give a file"),
        (("train", data, "--target", "species", "--out", a_file / "p.csv"),
         f"--out {a_file / 'p.csv'}: {a_file} is a file, not a directory"),
        (("train", data, "--target", "species", "--save", a_file / "sub" / "m.json"),
         f"--save {a_file / 'sub' / 'm.json'}: {a_file} is a file, not a directory"),
        (("train", data, "--target", "species", "--out", tmp_path / "dir.csv"),
         f"--out {tmp_path / 'dir.csv'}: is a directory; give a file name"),
        (("train", data, "--target", "species", "--out", tmp_path / "p.txt"),
         f"--out {tmp_path / 'p.txt'}: unknown format '.txt'; use .csv or .parquet or .pq"),
        (("train", data, "--model", tmp_path), f"--model {tmp_path}: is a directory, not a file"),
        (("train", data, "--model", tmp_path / "none.json"), f"--model {tmp_path / 'none.json'}: no such file"),
    ]
    (tmp_path / "dir.csv").mkdir()
    for argv, expected in cases:
        code, out, err = run(capsys, *argv)
        assert (code, out, err) == (2, "", f"crossent: error: {expected}\n"), argv


def test_table_reading_names_the_column_row_and_value(tmp_path, capsys):
    """Issue 9 items 10 and 12: duplicated column names, and text in a feature column."""
    dup = tmp_path / "dup.csv"
    dup.write_text("f,f,y\n1,2,a\n3,4,b\n")
    assert error_line(capsys, "train", dup, "--target", "y") == \
        f"{dup}: column name 'f' occurs more than once in the header"
    text = tmp_path / "text.csv"
    text.write_text("f1,f2,y\n" + "".join(f"{i},{i},{'ab'[i % 2]}\n" for i in range(6)) + "7,oops,a\n")
    assert error_line(capsys, "train", text, "--target", "y") == \
        f"{text}: row 7, column 'f2': 'oops' is not a number"



def _sigint_handler_address() -> int:
    """The C function the process runs on SIGINT (glibc's ``struct sigaction`` starts with it);
    every Python-level handler shares one, Python's own."""
    action = ctypes.create_string_buffer(512)
    assert ctypes.CDLL(None, use_errno=True).sigaction(signal.SIGINT, None, action) == 0
    return ctypes.c_void_p.from_buffer(action).value or 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads glibc's struct sigaction")
def test_table_read_leaves_sigint_to_main(tmp_path, monkeypatch, capsys):
    """``pyarrow.csv.read_csv`` put its own SIGINT handler in place of main's for the read: it
    passed a Ctrl-C on through a helper thread of pyarrow, which dropped it when the read ended
    first (about a third of them; ``crossent train`` then trained on). During the read, Python's
    handler (main's) must be the one in place."""
    import pyarrow.csv as pacsv

    path = tmp_path / "d.csv"
    write_csv(path, ["x", "label"], [[0.5, "a"], [1.5, "b"], [-0.5, "a"], [2.0, "b"]])
    python_handler = _sigint_handler_address()
    during_read = []

    class Source(io.BytesIO):  # the file's bytes, noting the SIGINT handler at each read
        def read(self, size=-1):
            during_read.append(_sigint_handler_address())
            return super().read(size)

    real = pacsv.read_csv
    monkeypatch.setattr(pacsv, "read_csv",
                        lambda source, **options: real(Source(path.read_bytes()), **options))
    code, out, err = run(capsys, "train", path, "--target", "label", "--solver", "gd", "--epochs", "3")
    assert code == 0, err
    assert during_read and set(during_read) == {python_handler}
