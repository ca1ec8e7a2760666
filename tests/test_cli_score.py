"""``crossent score`` through the real entry point: results against scikit-learn, and every bad
input ending in one line on standard error naming file, row and column, with exit status 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from crossent.cli import main

sklearn_metrics = pytest.importorskip("sklearn.metrics")
pytest.importorskip("pyarrow")
from _evaluation_data import prediction_columns, sklearn_predictions, write_predictions  # noqa: E402


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossent: error: "), err
    assert "Traceback" not in err
    return lines[0][len("crossent: error: "):]


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits")
    probs, labels, _ = sklearn_predictions("digits")
    cols = prediction_columns(probs, labels, classes=[f"d{k}" for k in range(10)], label_names=True,
                              ids=np.arange(labels.size))
    return {fmt: write_predictions(d / f"digits.{fmt}", cols) for fmt in ("csv", "parquet", "npz")}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_score_json_matches_sklearn(capsys, digits_files, fmt):
    probs, labels, _ = sklearn_predictions("digits")
    code, out, err = run(capsys, "score", digits_files[fmt], "--label", "y", "--id", "id", "--json")
    assert code == 0 and err == ""
    r = json.loads(out)
    assert r["rows"] == labels.size and r["classes"] == [f"d{k}" for k in range(10)]
    ce = sklearn_metrics.log_loss(labels, probs)
    assert r["cross_entropy_nats"] == pytest.approx(ce, rel=1e-12)
    assert r["cross_entropy_bits"] == pytest.approx(ce / math.log(2), rel=1e-12)
    assert r["perplexity"] == pytest.approx(math.exp(ce), rel=1e-12)
    assert r["accuracy"] == sklearn_metrics.accuracy_score(labels, probs.argmax(axis=1))
    assert r["brier"] == pytest.approx(sklearn_metrics.brier_score_loss(labels, probs, labels=np.arange(10)),
                                       rel=1e-12)
    assert [c["count"] for c in r["per_class"]] == np.bincount(labels).tolist()
    assert set(r) == {"file", "rows", "classes", "cross_entropy_nats", "cross_entropy_bits", "perplexity",
                      "accuracy", "brier", "ece", "per_class", "infinite_rows", "clip", "weight_sum",
                      "calibration"}


def test_score_table_binary_real_data(capsys, tmp_path):
    probs, labels, _ = sklearn_predictions("breast_cancer")
    path = write_predictions(tmp_path / "bc.csv", prediction_columns(probs, labels, classes=["malignant", "benign"]))
    code, out, err = run(capsys, "score", path, "--label", "y")
    assert code == 0, err
    ce = sklearn_metrics.log_loss(labels, probs)
    assert f"{ce:.4f}" in out and f"{ce / math.log(2):.4f}" in out
    assert f"{sklearn_metrics.brier_score_loss(labels, probs[:, 1]):.4f}" in out
    assert f"{sklearn_metrics.accuracy_score(labels, probs.argmax(1)):.4f}" in out
    for word in ("cross-entropy (nats)", "perplexity", "accuracy", "Brier score", "ECE (15 bins)",
                 "malignant", "benign", f"{labels.size} rows"):
        assert word in out


def test_score_logits_truth_join_and_same_json_shape(capsys, tmp_path):
    probs, labels, decision = sklearn_predictions("digits")
    ids = np.arange(labels.size) + 1000
    write_predictions(tmp_path / "sub.parquet", prediction_columns(decision[::-1], None, ids=ids[::-1], label=None))
    write_predictions(tmp_path / "sol.csv", {"id": ids, "y": labels})
    code, out, err = run(capsys, "score", tmp_path / "sub.parquet", "--truth", tmp_path / "sol.csv", "--id", "id",
                         "--label", "y", "--logits", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["cross_entropy_nats"] == pytest.approx(sklearn_metrics.log_loss(labels, probs), rel=1e-9)


def test_zero_probability_is_infinite_with_rows_named_and_clip_is_explicit(capsys, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b,y\n0.5,0.5,a\n1.0,0.0,b\n0.5,0.5,b\n0.0,1.0,a\n")
    code, out, err = run(capsys, "score", path, "--label", "y")
    assert code == 0 and err == ""
    assert "inf" in out
    assert "2 rows give the true class probability 0" in out and "(rows 2, 4)" in out and "--clip" in out
    code, out, _ = run(capsys, "score", path, "--label", "y", "--json")
    r = json.loads(out)
    assert r["cross_entropy_nats"] is None and r["infinite_rows"] == {"count": 2, "first_rows": [2, 4]}
    code, out, _ = run(capsys, "score", path, "--label", "y", "--clip", "1e-6", "--json")
    r = json.loads(out)
    expected = (2 * math.log(2) - 2 * math.log(1e-6)) / 4
    assert r["cross_entropy_nats"] == pytest.approx(expected, rel=1e-12) and r["clip"] == 1e-6


def test_normalize_option(capsys, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b,y\n0.2,0.2,a\n0.1,0.3,b\n")
    assert "sum to 0.4, not 1" in error_line(capsys, "score", path, "--label", "y")
    code, out, _ = run(capsys, "score", path, "--label", "y", "--normalize", "--json")
    assert code == 0
    assert json.loads(out)["cross_entropy_nats"] == pytest.approx(
        sklearn_metrics.log_loss([0, 1], [[0.5, 0.5], [0.25, 0.75]]), rel=1e-12)


def test_plot_writes_a_reliability_diagram(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    plots = pytest.importorskip("crossent.plots")
    if not hasattr(plots, "reliability_diagram"):
        pytest.skip("crossent.plots.reliability_diagram is not there")
    probs, labels, _ = sklearn_predictions("breast_cancer")
    path = write_predictions(tmp_path / "bc.csv", prediction_columns(probs, labels))
    png = tmp_path / "rel.png"
    code, out, err = run(capsys, "score", path, "--label", "y", "--plot", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, text, argv, expected", [
    ("p.csv", "a,b,y\n0.5,0.5,a\n1.3,-0.3,b\n", (), "p.csv: row 2, column 'a': probability 1.3 is outside [0, 1]"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.3,0.6,b\n", (), "p.csv: row 2: the probabilities of classes a, b sum to 0.9"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,nan,b\n", (), "p.csv: row 2, column 'b': NaN is not a probability"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,inf,b\n", (), "p.csv: row 2, column 'b': inf is not a probability"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,,b\n", (), "p.csv: row 2, column 'b': missing value"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,0.5,b,7\n", (), "p.csv: row 2: has 4 fields but the header names 3 columns"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,0.5,c\n", (), "p.csv: row 2, column 'y': label 'c' names no class"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,0.5,2\n", (),
     "p.csv: row 2, column 'y': label 2 is neither a class name nor a class index in [0, 2)"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n0.5,0.5,\n", (), "p.csv: row 2, column 'y': missing label"),
    ("p.csv", "a,b,z\n0.5,0.5,a\n", (), "p.csv: no label column 'y' (columns: a, b, z)"),
    ("p.csv", "a,y\n1.0,a\n", (), "p.csv: needs at least two class columns"),
    ("p.csv", "", (), "p.csv: is empty"),
    ("p.csv", "a,b,y\n", (), "p.csv: has no data rows (a header only)"),
    ("p.csv", "a,a,y\n0.5,0.5,a\n", (), "p.csv: column name 'a' occurs more than once"),
    ("p.csv", "a,b,y\n0,0.5,a\n", ("--logits",), None),
    ("p.csv", "a,b,y\n1.0,nan,a\n", ("--logits",), "p.csv: row 1, column 'b': NaN is not a valid logit"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n", ("--classes", "a,c"), "p.csv: no class column 'c'"),
    ("p.csv", "a,b,y\n0.5,0.5,a\n", ("--clip", "0"), "clip must be > 0.0, got 0.0"),
    ("p.txt", "a,b,y\n0.5,0.5,a\n", (), "p.txt: unknown format"),
    ("p.parquet", "not parquet", (), "p.parquet: cannot be read as PARQUET"),
    ("p.npz", "not a zip", (), "p.npz: cannot be read as NPZ"),
])
def test_bad_input_is_one_line_naming_file_row_column(capsys, tmp_path, name, text, argv, expected):
    path = _bad(tmp_path, name, text)
    if expected is None:  # valid: logits need not be probabilities
        code, out, err = run(capsys, "score", path, "--label", "y", *argv)
        assert code == 0, err
        return
    message = error_line(capsys, "score", path, "--label", "y", *argv)
    assert expected in message
    assert str(tmp_path) in message or expected.startswith("clip")


def test_missing_file(capsys, tmp_path):
    assert error_line(capsys, "score", tmp_path / "nope.csv", "--label", "y").endswith("nope.csv: no such file")


def test_npz_bad_members(capsys, tmp_path):
    np.savez(tmp_path / "ragged.npz", a=np.array([0.5, 0.5]), b=np.array([0.5, 0.5, 0.5]), y=np.array([0, 1]))
    assert "member 'b' has 3 rows, 'a' 2" in error_line(capsys, "score", tmp_path / "ragged.npz", "--label", "y")
    np.savez(tmp_path / "obj.npz", a=np.array([0.5]), b=np.array([0.5]), y=np.array(["a"], dtype=object))
    assert "member 'y' holds Python objects" in error_line(capsys, "score", tmp_path / "obj.npz", "--label", "y")


@pytest.mark.parametrize("truth_text, sub_text, expected", [
    ("id,y\n1,a\n2,b\n2,a\n", "id,a,b\n1,0.5,0.5\n2,0.2,0.8\n",
     "truth.csv: row 3, column 'id': id '2' occurs more than once (rows 2 and 3)"),
    ("id,y\n1,a\n2,b\n3,a\n", "id,a,b\n1,0.5,0.5\n2,0.2,0.8\n",
     "truth.csv: row 3, column 'id': id '3' has no row in"),
    ("id,y\n1,a\n", "id,a,b\n1,0.5,0.5\n2,0.2,0.8\n", "sub.csv: row 2, column 'id': id '2' is not in"),
    ("id,y\n1,a\n2,b\n", "id,a,b\n1,0.5,0.5\n1,0.2,0.8\n",
     "sub.csv: row 2, column 'id': id '1' occurs more than once (rows 1 and 2)"),
    ("id,label\n1,a\n2,b\n", "id,a,b\n1,0.5,0.5\n2,0.2,0.8\n", "truth.csv: no label column 'y'"),
    ("key,y\n1,a\n2,b\n", "id,a,b\n1,0.5,0.5\n2,0.2,0.8\n", "truth.csv: no id column 'id'"),
])
def test_truth_join_errors(capsys, tmp_path, truth_text, sub_text, expected):
    truth = _bad(tmp_path, "truth.csv", truth_text)
    sub = _bad(tmp_path, "sub.csv", sub_text)
    assert expected in error_line(capsys, "score", sub, "--truth", truth, "--id", "id", "--label", "y")


def test_truth_without_id_and_usage_errors(capsys, tmp_path):
    sub = _bad(tmp_path, "sub.csv", "id,a,b\n1,0.5,0.5\n")
    assert "give --id" in error_line(capsys, "score", sub, "--truth", sub, "--label", "y")
    assert "Missing option '--label'" in error_line(capsys, "score", sub)


def test_real_entry_point_in_a_subprocess(tmp_path):
    probs, labels, _ = sklearn_predictions("breast_cancer")
    path = write_predictions(tmp_path / "bc.parquet", prediction_columns(probs, labels))
    ok = subprocess.run([sys.executable, "-m", "crossent", "score", str(path), "--label", "y", "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cross_entropy_nats"] == pytest.approx(sklearn_metrics.log_loss(labels, probs),
                                                                        rel=1e-12)
    bad = _bad(tmp_path, "bad.csv", "a,b,y\n0.5,0.5,a\n0.5,0.5,b,1\n")
    err = subprocess.run([sys.executable, "-m", "crossent", "score", str(bad), "--label", "y"],
                         capture_output=True, text=True, timeout=120)
    assert err.returncode == 2 and err.stdout == ""
    assert err.stderr.count("\n") == 1 and "bad.csv: row 2: has 4 fields" in err.stderr


def test_progress_bar_only_on_a_terminal(capsys, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import crossent.cli.score as score_module

    probs, labels, _ = sklearn_predictions("breast_cancer")
    path = write_predictions(tmp_path / "bc.parquet", prediction_columns(probs, labels))
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(score_module, "err_console", lambda: terminal)
    code, out, err = run(capsys, "score", path, "--label", "y", "--batch-size", "100")
    assert code == 0 and err == ""
    assert f"{labels.size:,} rows" in screen.getvalue() and "bc.parquet" in screen.getvalue()
    screen.truncate(0)
    code, out, err = run(capsys, "score", path, "--label", "y", "--json")  # machines get no bar
    assert code == 0 and screen.getvalue() == ""


# -- issue 9: reading tables and scoring (items 11, 13, 15, 16, 20, 21, 23, 24) -------------------

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
import pyarrow.csv  # noqa: E402,F401  (pa.csv)

def test_text_in_a_probability_column_names_file_row_column_and_value(capsys, tmp_path):
    first_block = tmp_path / "first.csv"
    first_block.write_text("a,b,y\n0.5,0.5,a\n0.3,0.7,b\n0.2,oops,a\n")
    assert error_line(capsys, "score", first_block, "--label", "y") == \
        f"{first_block}: row 3, column 'b': 'oops' is not a number (a class column holds probabilities or logits)"
    # a bad cell beyond the first block (the column was inferred as numbers)
    later = tmp_path / "later.csv"
    rows = 1_000_000
    later.write_bytes(b"a,b,y\n" + b"0.5,0.5,a\n" * rows + b"0.5,bad,a\n")
    assert error_line(capsys, "score", later, "--label", "y") == \
        f"{later}: row {rows + 1}, column 'b': 'bad' is not a number"
    # Parquet: a text column named as a class, and decimal columns, which are numbers
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({"a": [0.5, 0.5], "b": ["0.5", "x"], "y": ["a", "b"]}), text)
    assert error_line(capsys, "score", text, "--label", "y", "--classes", "a,b") == \
        f"{text}: row 2, column 'b': 'x' is not a number (a class column holds probabilities or logits)"
    from decimal import Decimal

    dec = tmp_path / "decimal.parquet"
    pq.write_table(pa.table({"a": pa.array([Decimal("0.25"), Decimal("0.9")], pa.decimal128(4, 3)),
                             "b": pa.array([Decimal("0.75"), Decimal("0.1")], pa.decimal128(4, 3)),
                             "y": ["b", "a"]}), dec)
    code, out, err = run(capsys, "score", dec, "--label", "y", "--json")
    assert code == 0, err
    assert json.loads(out)["cross_entropy_nats"] == pytest.approx(-(math.log(0.75) + math.log(0.9)) / 2, rel=1e-12)


def test_huge_header_long_line_and_long_label_give_short_clear_messages(capsys, tmp_path):
    header = tmp_path / "header.csv"
    header.write_bytes(b"a" * (9 << 20) + b",b,y\n0.5,0.5,a\n")
    message = error_line(capsys, "score", header, "--label", "y")
    assert message == f"{header}: the header line is longer than 8 MiB: not a CSV file crossent reads"
    line = tmp_path / "line.csv"
    line.write_bytes(b"a,b,y\n0.5,0.5,a\n0.5,0.5,a\n0.5,0.5," + b"x" * (20 << 20) + b"\n0.5,0.5,a\n")
    message = error_line(capsys, "score", line, "--label", "y")
    assert message == f"{line}: row 3: a line longer than 8 MiB: crossent reads CSV rows of up to 8 MiB"
    label = tmp_path / "label.csv"
    label.write_bytes(b"a,b,y\n0.5,0.5,a\n0.5,0.5," + b"z" * (5 << 20) + b"\n")
    message = error_line(capsys, "score", label, "--label", "y")
    assert message.startswith(f"{label}: row 2, column 'y': label 'zzzz") and len(message) < 300
    assert "(5,242,880 characters) names no class" in message


def test_bins_are_bounded(capsys, digits_files):
    message = error_line(capsys, "score", digits_files["parquet"], "--label", "y", "--bins", "10000000")
    assert message.startswith("Invalid value for '--bins'") and "10000" in message


def test_plot_path_is_checked_first_and_the_written_path_is_printed(capsys, tmp_path, digits_files):
    code, out, err = run(capsys, "score", digits_files["csv"], "--label", "y", "--id", "id", "--plot", tmp_path / "rel")
    assert code == 0, err
    assert (tmp_path / "rel.png").is_file() and f"reliability diagram: {tmp_path / 'rel.png'}" in out
    assert error_line(capsys, "score", digits_files["csv"], "--label", "y", "--id", "id", "--id", "id", "--plot", tmp_path) == \
        f"--plot {tmp_path}: is a directory; give a file name such as {tmp_path / 'reliability.png'}"
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    assert error_line(capsys, "score", digits_files["csv"], "--label", "y", "--id", "id", "--id", "id", "--plot", blocker / "x.png") == \
        f"--plot {blocker / 'x.png'}: {blocker} is not a directory"
    assert "--plot" in error_line(capsys, "score", digits_files["csv"], "--label", "y", "--id", "id", "--id", "id", "--plot",
                                  tmp_path / "x.csv")


def test_scores_are_printed_when_only_the_plot_fails(capsys, tmp_path, digits_files, monkeypatch):
    import crossent.plots

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crossent.plots, "reliability_diagram", fail)
    code, out, err = run(capsys, "score", digits_files["parquet"], "--label", "y", "--id", "id", "--json",
                         "--plot", tmp_path / "r.png")
    assert code == 2 and json.loads(out)["rows"] > 0
    assert err.strip() == (f"crossent: error: --plot {tmp_path / 'r.png'}: cannot write the diagram "
                           "([Errno 28] No space left on device)")


def test_float16_parquet_columns_get_the_float16_tolerance(capsys, tmp_path):
    path = tmp_path / "half.parquet"
    p = np.array([[0.1, 0.2, 0.7]] * 3, dtype=np.float16)  # rows sum to 1 - 2.4e-4 in float16
    pq.write_table(pa.table({"a": p[:, 0], "b": p[:, 1], "c": p[:, 2], "y": ["c", "b", "a"]}), path)
    code, out, err = run(capsys, "score", path, "--label", "y", "--json")
    assert code == 0, err
    expected = -np.mean(np.log(p[0].astype(np.float64)))
    assert json.loads(out)["cross_entropy_nats"] == pytest.approx(expected, rel=1e-12)


def test_npz_members_not_needed_are_ignored(capsys, tmp_path):
    path = tmp_path / "extra.npz"
    np.savez(path, a=np.array([0.5, 0.2]), b=np.array([0.5, 0.8]), y=np.array([0, 1]),
             matrix=np.zeros((2, 3)), scalar=np.array(3.0))
    code, out, err = run(capsys, "score", path, "--label", "y", "--json")
    assert code == 0, err
    assert json.loads(out)["cross_entropy_nats"] == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2, rel=1e-12)
    assert "member 'matrix' has shape (2, 3)" in error_line(capsys, "score", path, "--label", "y",
                                                            "--classes", "a,matrix")


def test_an_id_column_must_be_unique_without_a_truth_file(capsys, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,a,b,y\n1,0.5,0.5,a\n2,0.5,0.5,a\n1,0.5,0.5,b\n")
    assert error_line(capsys, "score", path, "--label", "y", "--id", "id") == \
        f"{path}: row 3, column 'id': id '1' occurs more than once (rows 1 and 3)"


def test_weights_and_multilabel_on_the_command_line(capsys, tmp_path):
    probs, labels, _ = sklearn_predictions("breast_cancer")
    w = np.random.default_rng(0).uniform(0, 2, size=labels.size)
    path = tmp_path / "w.parquet"
    pq.write_table(pa.table({"no": probs[:, 0], "yes": probs[:, 1], "y": labels, "w": w}), path)
    code, out, err = run(capsys, "score", path, "--label", "y", "--weight", "w", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["cross_entropy_nats"] == pytest.approx(sklearn_metrics.log_loss(labels, probs, sample_weight=w), rel=1e-12)
    assert r["brier"] == pytest.approx(sklearn_metrics.brier_score_loss(labels, probs[:, 1], sample_weight=w), rel=1e-12)
    assert r["weight_sum"] == pytest.approx(w.sum(), rel=1e-12)
    # multi-label: two independent labels, each against its own probability
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, size=(300, 2))
    t = (rng.uniform(size=(300, 2)) < p).astype(np.int64)
    tags = tmp_path / "tags.csv"
    pa.csv.write_csv(pa.table({"cat": p[:, 0], "dog": p[:, 1], "y_cat": t[:, 0], "y_dog": t[:, 1]}), tags)
    code, out, err = run(capsys, "score", tags, "--multilabel", "--label", "y_cat,y_dog", "--json")
    assert code == 0, err
    r = json.loads(out)
    direct = [-np.mean(t[:, k] * np.log(p[:, k]) + (1 - t[:, k]) * np.log(1 - p[:, k])) for k in range(2)]
    assert [c["cross_entropy_nats"] for c in r["per_class"]] == pytest.approx(direct, rel=1e-12)
    assert r["cross_entropy_nats"] == pytest.approx(np.mean(direct), rel=1e-12)
    code, out, err = run(capsys, "score", tags, "--multilabel", "--label", "y_cat,y_dog")
    assert code == 0 and "mean" in out and "dog" in out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_csv_memory_does_not_grow_with_the_rows(tmp_path):
    """Issue 9 item 24: peak RSS of a scoring subprocess at N and 4N rows (not a timed test)."""
    import pyarrow.csv as pacsv

    peaks = []
    for rows in (600_000, 2_400_000):
        rng = np.random.default_rng(0)
        p = rng.dirichlet(np.ones(3), size=rows)
        path = tmp_path / f"p{rows}.csv"
        pacsv.write_csv(pa.table({"a": p[:, 0], "b": p[:, 1], "c": p[:, 2],
                                  "y": pa.array(np.array(["a", "b", "c"])[rng.integers(0, 3, rows)])}), path)
        del p
        # VmHWM, the peak of this process's own memory (ru_maxrss would keep the parent's
        # resident set from before the exec).
        code = ("import re; from crossent.cli import main; "
                f"assert main(['score', {str(path)!r}, '--label', 'y', '--normalize', '--json']) == 0; "
                "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        peaks.append(int(done.stdout.strip().splitlines()[-1]) / 1024)
        path.unlink()
    # 1.8 million more rows hold over 50 MB as float64 columns and labels; the peak stays put.
    assert peaks[1] - peaks[0] < 40, peaks


# -- issue 13: plain calls parsed without Typer's runtime -----------------------------------------
@pytest.mark.parametrize("plain, through_typer", [
    (["--label", "y", "--json"], ["--label=y", "--json"]),
    (["-l", "y", "--id", "id", "--bins", "7", "--clip", "1e-3"], ["-l", "y", "--id=id", "--bins=7", "--clip=1e-3"]),
    (["--label", "y", "--classes", "d0,d1,d2,d3,d4,d5,d6,d7,d8,d9", "--normalize", "--batch-size", "100", "--json"],
     ["--label", "y", "--classes=d0,d1,d2,d3,d4,d5,d6,d7,d8,d9", "--normalize", "--batch-size=100", "--json"]),
    (["--label", "nope"], ["--label=nope"]),
])
def test_plain_score_calls_print_what_typer_prints(capsys, digits_files, plain, through_typer):
    """A plain call gets its arguments without Typer (and pydantic); written with --name=value
    the same call is parsed by Typer: same output, same error line, same status."""
    path = digits_files["parquet"]
    assert run(capsys, "score", path, *plain) == run(capsys, "score", path, *through_typer)


def test_plain_compare_call_prints_what_typer_prints(capsys, digits_files):
    files = [digits_files["parquet"], digits_files["csv"]]
    plain = run(capsys, "compare", *files, "--label", "y", "--id", "id", "--bootstrap", "200", "--json")
    assert plain[0] == 0
    assert plain == run(capsys, "compare", *files, "--label=y", "--id=id", "--bootstrap=200", "--json")


def test_scoring_parquet_imports_neither_pydantic_nor_pandas_nor_rich(digits_files):
    """``crossent score preds.parquet --label y --json`` imported pandas (through pyarrow's
    lazy import), pydantic (through Typer) and Rich: more start-up time than the work."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print(sorted({m.split('.')[0] for m in sys.modules})))\n"
            "from crossent.cli import main\nsys.exit(main())\n")
    res = subprocess.run([sys.executable, "-c", code, "score", str(digits_files["parquet"]), "--label", "y",
                          "--id", "id", "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    imported = set(eval(res.stdout.strip().splitlines()[-1]))
    assert "pyarrow" in imported and not imported & {"pydantic", "pandas", "rich"}


@pytest.mark.parametrize("env, expected", [({}, "jemalloc"), ({"ARROW_DEFAULT_MEMORY_POOL": "system"}, "system")])
def test_score_allocates_with_jemalloc_unless_told_otherwise(digits_files, env, expected):
    """pyarrow's default mimalloc pool gave freed batch buffers back to the system and faulted
    them in again (a third of the system time of scoring a large file); the user's
    ARROW_DEFAULT_MEMORY_POOL still wins."""
    import os

    import pyarrow as pa

    if "jemalloc" not in pa.supported_memory_backends():
        pytest.skip("this pyarrow is built without jemalloc")
    code = ("import atexit, sys, pyarrow\n"
            "atexit.register(lambda: print(pyarrow.default_memory_pool().backend_name))\n"
            "from crossent.cli import main\nsys.exit(main())\n")
    res = subprocess.run([sys.executable, "-c", code, "score", str(digits_files["parquet"]), "--label", "y",
                          "--id", "id", "--json"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == expected
