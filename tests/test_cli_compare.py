"""``crossent compare`` through the real entry point: real models compared, seeded intervals,
plain-words verdicts, and unpaired files rejected in one line with exit status 2."""

from __future__ import annotations

import json
import re
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
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossent: error: "), err
    return lines[0][len("crossent: error: "):]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A strong and a weak (heavily regularised) logistic regression on digits, in two formats."""
    d = tmp_path_factory.mktemp("models")
    strong, labels, _ = sklearn_predictions("digits", 1.0)
    weak, _, _ = sklearn_predictions("digits", 0.001)
    return {
        "labels": labels, "strong": strong, "weak": weak,
        "a": write_predictions(d / "weak.csv", prediction_columns(weak, labels)),
        "b": write_predictions(d / "strong.parquet", prediction_columns(strong, labels)),
    }


def test_compare_table_and_verdict(capsys, models):
    labels = models["labels"]
    code, out, err = run(capsys, "compare", models["a"], models["b"], "--label", "y", "--bootstrap", "500")
    assert code == 0, err
    ce_weak = sklearn_metrics.log_loss(labels, models["weak"])
    ce_strong = sklearn_metrics.log_loss(labels, models["strong"])
    assert f"{ce_weak:.4f}" in out and f"{ce_strong:.4f}" in out
    m = re.search(r"strong is better than weak by ([0-9.]+) nats per example, 95% CI \[([0-9.]+), ([0-9.]+)\]", out)
    assert m, out
    gap, low, high = map(float, m.groups())
    assert gap == pytest.approx(ce_weak - ce_strong, rel=2e-3)  # printed with 3 significant digits
    assert low < gap < high


def test_compare_json_is_seeded_and_reproducible(capsys, models):
    argv = ("compare", models["a"], models["b"], "--label", "y", "--bootstrap", "300", "--seed", "7", "--json")
    code, out1, _ = run(capsys, *argv)
    code2, out2, _ = run(capsys, *argv)
    assert code == code2 == 0 and out1 == out2
    r = json.loads(out1)
    assert [m["name"] for m in r["models"]] == ["weak", "strong"]
    (pair,) = r["comparisons"]
    labels = models["labels"]
    expected = sklearn_metrics.log_loss(labels, models["strong"]) - sklearn_metrics.log_loss(labels, models["weak"])
    assert pair["difference_nats"] == pytest.approx(expected, rel=1e-9)
    assert pair["ci_low"] < expected < pair["ci_high"] < 0
    assert r["bootstrap"]["method"] == "examples"
    _, out3, _ = run(capsys, *argv[:-3], "--seed", "8", "--json")
    assert json.loads(out3)["comparisons"][0]["ci_low"] != pair["ci_low"]


def test_compare_three_files_joined_by_id_and_a_subprocess_run(models, tmp_path):
    labels = models["labels"]
    ids = np.arange(labels.size)
    mid, _, _ = sklearn_predictions("digits", 0.01)
    paths = []
    for k, (name, p) in enumerate((("weak", models["weak"]), ("mid", mid), ("strong", models["strong"]))):
        order = np.random.default_rng(k).permutation(labels.size)
        paths.append(write_predictions(tmp_path / f"{name}.npz", prediction_columns(p[order], labels[order],
                                                                                   ids=ids[order])))
    res = subprocess.run([sys.executable, "-m", "crossent", "compare", *map(str, paths), "--label", "y",
                          "--id", "id", "--bootstrap", "200", "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert [(c["a"], c["b"]) for c in r["comparisons"]] == [("weak", "mid"), ("weak", "strong"), ("mid", "strong")]
    assert all(c["verdict"].startswith(c["b"] + " is better than " + c["a"]) for c in r["comparisons"])


def test_compare_infinite_model_is_reported_not_crashed(capsys, tmp_path):
    (tmp_path / "a.csv").write_text("a,b,y\n1.0,0.0,b\n" + "0.5,0.5,a\n" * 30)
    (tmp_path / "b.csv").write_text("a,b,y\n0.5,0.5,b\n" + "0.6,0.4,a\n" * 30)
    code, out, err = run(capsys, "compare", tmp_path / "a.csv", tmp_path / "b.csv", "--label", "y")
    assert code == 0, err
    assert ("cannot compare a and b: a has infinite cross-entropy (1 row gives the true class "
            "probability 0, first: 1)") in out
    code, out, _ = run(capsys, "compare", tmp_path / "a.csv", tmp_path / "b.csv", "--label", "y", "--clip", "1e-3")
    assert code == 0 and "b is better than a by" in out


@pytest.mark.parametrize("a_text, b_text, argv, expected", [
    ("a,b,y\n0.5,0.5,a\n0.5,0.5,b\n", "a,b,y\n0.5,0.5,a\n", (), "b.csv has 1 rows but"),
    ("a,b,y\n0.5,0.5,a\n0.5,0.5,b\n", "a,b,y\n0.5,0.5,a\n0.5,0.5,a\n", (),
     "b.csv: row 2, column 'y': label 'a' differs from 'b' in"),
    ("a,b,y\n0.5,0.5,a\n", "a,c,y\n0.5,0.5,a\n", (), "b.csv: classes a, c differ from"),
    ("id,a,b,y\n1,0.5,0.5,a\n2,0.5,0.5,b\n", "id,a,b,y\n1,0.5,0.5,a\n3,0.5,0.5,b\n", ("--id", "id"),
     "b.csv: row 2, column 'id': id '3' is not in"),
    ("id,a,b,y\n1,0.5,0.5,a\n2,0.5,0.5,b\n", "id,a,b,y\n1,0.5,0.5,a\n1,0.5,0.5,a\n", ("--id", "id"),
     "b.csv: row 2, column 'id': id '1' occurs more than once (rows 1 and 2)"),
    ("id,a,b,y\n1,0.5,0.5,a\n1,0.5,0.5,b\n", "id,a,b,y\n1,0.5,0.5,a\n2,0.5,0.5,a\n", ("--id", "id"),
     "a.csv: row 2, column 'id': id '1' occurs more than once (rows 1 and 2)"),
    ("a,b,y\n0.5,0.5,a\n", "a,b,y\n0.5,0.7,a\n", (), "b.csv: row 1: the probabilities of classes a, b sum to 1.2"),
])
def test_unpaired_or_bad_files_are_one_line_errors(capsys, tmp_path, a_text, b_text, argv, expected):
    (tmp_path / "a.csv").write_text(a_text)
    (tmp_path / "b.csv").write_text(b_text)
    message = error_line(capsys, "compare", tmp_path / "a.csv", tmp_path / "b.csv", "--label", "y", *argv)
    assert expected in message


def test_compare_needs_two_files(capsys, models):
    assert "at least two prediction files" in error_line(capsys, "compare", models["a"], "--label", "y")
