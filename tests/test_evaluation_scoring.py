"""crossent.evaluation.scoring (and .io): prediction files in every format, scored and compared.

Oracles: sklearn.metrics on the same predictions held in memory; the files are written by
pyarrow and NumPy, not by crossent.
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from crossent.evaluation import PredictionFile, PredictionFileError, compare_files, paired_bootstrap, score_file

sklearn_metrics = pytest.importorskip("sklearn.metrics")
pytest.importorskip("pyarrow")
from _evaluation_data import prediction_columns, sklearn_predictions, write_predictions  # noqa: E402

DIGITS = [f"d{k}" for k in range(10)]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
@pytest.mark.parametrize("label_names", [False, True])
def test_every_format_scores_like_sklearn(tmp_path, fmt, label_names):
    probs, labels, _ = sklearn_predictions("digits")
    cols = prediction_columns(probs, labels, classes=DIGITS, label_names=label_names,
                              ids=np.arange(labels.size) + 100)
    path = write_predictions(tmp_path / f"preds.{fmt}", cols)
    s = score_file(path, label="y", id="id", batch_size=128)  # several batches
    assert s.classes == tuple(DIGITS)
    assert s.n_rows == labels.size
    assert s.cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs), rel=1e-12)
    assert s.accuracy == sklearn_metrics.accuracy_score(labels, probs.argmax(axis=1))
    assert s.brier == pytest.approx(sklearn_metrics.brier_score_loss(labels, probs, labels=np.arange(10)),
                                    rel=1e-12)


def test_binary_real_data_and_a_float32_parquet(tmp_path):
    probs, labels, _ = sklearn_predictions("breast_cancer")
    p32 = probs.astype(np.float32)
    path = write_predictions(tmp_path / "bc.parquet", prediction_columns(p32, labels, classes=["malignant", "benign"]))
    s = score_file(path, label="y")
    # float32 rows sum to 1 within 1e-7: accepted as given (no renormalisation) ...
    p64 = p32.astype(np.float64)
    assert s.cross_entropy == pytest.approx(-np.mean(np.log(p64[np.arange(labels.size), labels])), rel=1e-12)
    # ... and rescaled with normalize=True.
    normalized = score_file(path, label="y", normalize=True)
    rescaled = p64 / p64.sum(axis=1, keepdims=True)
    assert normalized.cross_entropy == pytest.approx(
        -np.mean(np.log(rescaled[np.arange(labels.size), labels])), rel=1e-12)
    # Binary Brier is half the two-class sum; with rows off 1 by float32 rounding it differs
    # from sklearn's positive-class-only (p_1 - y)^2 at that level.
    assert s.brier == pytest.approx(sklearn_metrics.brier_score_loss(labels, p64[:, 1]), rel=1e-6)


def test_compressed_csv_and_tsv(tmp_path):
    probs, labels, _ = sklearn_predictions("breast_cancer")
    path = write_predictions(tmp_path / "p.csv", prediction_columns(probs, labels))
    with open(path, "rb") as src, gzip.open(tmp_path / "p.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (tmp_path / "p.tsv").write_text(open(path).read().replace(",", "\t"))
    expected = sklearn_metrics.log_loss(labels, probs)
    assert score_file(tmp_path / "p.csv.gz", label="y").cross_entropy == pytest.approx(expected, rel=1e-12)
    assert score_file(tmp_path / "p.tsv", label="y").cross_entropy == pytest.approx(expected, rel=1e-12)


def test_logit_files(tmp_path):
    probs, labels, decision = sklearn_predictions("digits")
    path = write_predictions(tmp_path / "z.parquet", prediction_columns(decision, labels))
    s = score_file(path, label="y", logits=True)
    assert s.cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs), rel=1e-9)


def test_truth_file_joined_by_id_in_any_order(tmp_path):
    probs, labels, _ = sklearn_predictions("digits")
    ids = np.arange(labels.size) * 7 + 3
    order = np.random.default_rng(0).permutation(labels.size)
    sub = prediction_columns(probs[order], labels[order], classes=DIGITS, ids=ids[order], label=None)
    write_predictions(tmp_path / "submission.csv", sub)
    write_predictions(tmp_path / "solution.parquet", {"id": ids, "y": np.array(DIGITS)[labels]})
    s = score_file(tmp_path / "submission.csv", truth=tmp_path / "solution.parquet", id="id", label="y")
    assert s.cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs), rel=1e-12)
    assert s.n_rows == labels.size


def test_class_rules_explicit_classes_and_integer_names(tmp_path):
    # Integer class names: the label 3 is the class *named* 3, whatever the column order.
    path = tmp_path / "p.csv"
    path.write_text("3,1,y,note\n0.9,0.1,3,a\n0.2,0.8,1,b\n")
    s = score_file(path, label="y")
    assert s.classes == ("3", "1")
    assert s.cross_entropy == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2, rel=1e-12)
    # --classes picks and orders the columns; indices refer to that order.
    path.write_text("a,b,extra,y\n0.9,0.1,5,0\n0.2,0.8,7,1\n")
    s = score_file(path, label="y", classes=["a", "b"])
    assert s.cross_entropy == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2, rel=1e-12)
    assert PredictionFile(path, label="y").classes == ["a", "b", "extra"]


def test_infinite_rows_are_numbered_from_one_in_files(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("a,b,y\n0.5,0.5,a\n1.0,0.0,b\n0.5,0.5,b\n")
    s = score_file(path, label="y")
    assert np.isinf(s.cross_entropy) and s.first_infinite_rows == (2,)
    assert score_file(path, label="y", clip=1e-12).cross_entropy == pytest.approx(
        (2 * np.log(2) - np.log(1e-12)) / 3, rel=1e-12)


def test_row_numbers_in_errors_count_across_batches(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=1000)
    probs[777, 2] = 1.5
    path = write_predictions(tmp_path / "p.parquet", prediction_columns(probs, rng.integers(0, 3, 1000)))
    with pytest.raises(PredictionFileError, match=r"p.parquet: row 778, column '2': probability 1.5 "):
        score_file(path, label="y", batch_size=100)


def test_compare_by_position_resamples_examples_like_paired_bootstrap(tmp_path):
    strong, labels, _ = sklearn_predictions("digits", 1.0)
    weak, _, _ = sklearn_predictions("digits", 0.001)
    a = write_predictions(tmp_path / "weak.csv", prediction_columns(weak, labels))
    b = write_predictions(tmp_path / "strong.parquet", prediction_columns(strong, labels))
    c = compare_files([a, b], label="y", n_resamples=500, seed=1)
    assert c.names == ["weak", "strong"] and c.method == "examples"
    loss_a = -np.log(weak[np.arange(labels.size), labels])
    loss_b = -np.log(strong[np.arange(labels.size), labels])
    expected = paired_bootstrap(loss_a, loss_b, n_resamples=500, seed=1)
    r = c.pairs[0].result
    assert r.difference == pytest.approx(expected.difference, rel=1e-12)
    assert (r.low, r.high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert c.pairs[0].verdict.startswith("strong is better than weak by ")
    assert c.scores[0].cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, weak), rel=1e-12)


def test_compare_streaming_buckets_agree_with_resampling_examples(tmp_path):
    strong, labels, _ = sklearn_predictions("digits", 1.0)
    weak, _, _ = sklearn_predictions("digits", 0.01)
    a = write_predictions(tmp_path / "a.npz", prediction_columns(weak, labels))
    b = write_predictions(tmp_path / "b.csv", prediction_columns(strong, labels))
    exact = compare_files([a, b], label="y", seed=3).pairs[0].result
    c = compare_files([a, b], label="y", seed=3, exact_limit=0, n_buckets=300, batch_size=64)
    assert c.method == "buckets"
    r = c.pairs[0].result
    assert r.difference == pytest.approx(exact.difference, rel=1e-12)
    width = exact.high - exact.low
    assert abs(r.low - exact.low) < 0.15 * width and abs(r.high - exact.high) < 0.15 * width


def test_compare_joined_by_id_with_shuffled_rows_and_three_models(tmp_path):
    probs = [sklearn_predictions("digits", s)[0] for s in (0.001, 0.01, 1.0)]
    labels = sklearn_predictions("digits")[1]
    ids = np.arange(labels.size)
    paths = []
    for k, p in enumerate(probs):
        order = np.random.default_rng(k).permutation(labels.size)
        paths.append(write_predictions(tmp_path / f"m{k}.parquet",
                                       prediction_columns(p[order], labels[order], ids=ids[order])))
    c = compare_files(paths, label="y", id="id", n_resamples=300)
    assert [(pc.a, pc.b) for pc in c.pairs] == [(0, 1), (0, 2), (1, 2)]
    for k in range(3):
        assert c.scores[k].cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs[k]), rel=1e-12)
    true_diff = sklearn_metrics.log_loss(labels, probs[2]) - sklearn_metrics.log_loss(labels, probs[0])
    assert c.pairs[1].result.difference == pytest.approx(true_diff, rel=1e-9)


def test_compare_with_infinite_loss_says_why_there_is_no_interval(tmp_path):
    (tmp_path / "a.csv").write_text("a,b,y\n1.0,0.0,b\n0.5,0.5,a\n")
    (tmp_path / "b.csv").write_text("a,b,y\n0.5,0.5,b\n0.5,0.5,a\n")
    c = compare_files([tmp_path / "a.csv", tmp_path / "b.csv"], label="y")
    assert c.pairs[0].result is None
    assert "a has infinite cross-entropy" in c.pairs[0].verdict and "first: 1" in c.pairs[0].verdict


def test_csv_read_in_many_blocks_keeps_row_numbers(tmp_path, monkeypatch):
    import crossent.evaluation.io as io_module

    monkeypatch.setattr(io_module, "_CSV_BLOCK_BYTES", 4096)  # ~250 rows a block
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=3000).round(6)
    probs[:, 2] = 1 - probs[:, 0] - probs[:, 1]
    labels = rng.integers(0, 3, 3000)
    lines = ["a,b,c,y"] + [f"{p[0]!r},{p[1]!r},{p[2]!r},{y}" for p, y in zip(probs.tolist(), labels)]
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines) + "\n")
    s = score_file(path, label="y")
    assert s.n_rows == 3000
    assert s.cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs), rel=1e-12)
    bad = list(lines)
    bad[2345] = bad[2345].replace(",", ",7,", 1)  # data row 2345 gets an extra field
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(PredictionFileError, match=r"p.csv: row 2345: has 5 fields but the header names 4"):
        score_file(path, label="y")
    bad = list(lines)
    bad[2999] = "0.5,0.7,0.1,0"
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(PredictionFileError, match=r"p.csv: row 2999: the probabilities of classes a, b, c sum to 1.3"):
        score_file(path, label="y")


def test_compare_against_a_truth_file(tmp_path):
    strong, labels, _ = sklearn_predictions("breast_cancer", 1.0)
    weak, _, _ = sklearn_predictions("breast_cancer", 0.001)
    ids = np.arange(labels.size) + 1
    write_predictions(tmp_path / "truth.csv", {"id": ids, "y": labels})
    paths = []
    for k, (name, p) in enumerate((("weak", weak), ("strong", strong))):
        order = np.random.default_rng(k).permutation(labels.size)
        paths.append(write_predictions(tmp_path / f"{name}.parquet",
                                       prediction_columns(p[order], None, ids=ids[order], label=None)))
    c = compare_files(paths, truth=tmp_path / "truth.csv", id="id", label="y", n_resamples=300)
    expected = sklearn_metrics.log_loss(labels, strong) - sklearn_metrics.log_loss(labels, weak)
    assert c.pairs[0].result.difference == pytest.approx(expected, rel=1e-9)
    assert c.pairs[0].verdict.startswith("strong is better than weak")
