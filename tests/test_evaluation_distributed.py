"""crossent.evaluation.distributed: a Dask DataFrame, and a 2-worker LocalCluster on 127.0.0.1,
give the numbers of one process (every metric, and compare's bootstrap interval) to 1e-12; globs
and directories of Parquet files on one machine; the CLI's --scheduler and its missing-extra
message. One cluster is shared by the module (starting one is slow on a small machine)."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")

from crossent.cli import main  # noqa: E402
from crossent.evaluation import compare_dask, compare_files, score_dask, score_file  # noqa: E402
from crossent.evaluation.distributed import read_parquet_dask  # noqa: E402

CLASSES = ["cat", "dog", "emu"]
N_FILES, ROWS = 4, 700  # 2800 rows: above the exact_limit used below, so buckets are tested too


def _table(seed, sharp=1.0, n=ROWS):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=sharp, size=(n, 3))
    p = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(np.float32)
    p[:, 2] = 1.0 - p[:, 0] - p[:, 1]  # float32 rows that sum to 1 closely
    y = np.random.default_rng(seed + 100).integers(0, 3, size=n)
    return pa.table({**{c: p[:, k] for k, c in enumerate(CLASSES)},
                     "y": pa.array(np.array(CLASSES)[y]),
                     "w": np.random.default_rng(seed + 200).uniform(0, 2, size=n)})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two models' predictions of the same rows: each as 4 Parquet files and as one file."""
    root = tmp_path_factory.mktemp("dist")
    out = {}
    for model, sharp in (("a", 1.0), ("b", 1.6)):
        d = root / model
        d.mkdir()
        tables = [_table(k, sharp) for k in range(N_FILES)]
        for k, t in enumerate(tables):
            pq.write_table(t, d / f"part-{k}.parquet")
        whole = pa.concat_tables(tables)
        # The same labels in both models: b's labels are a's.
        out[model] = (d, whole)
    labels = out["a"][1].column("y")
    b = out["b"][1].set_column(3, "y", labels)
    for k in range(N_FILES):
        pq.write_table(b.slice(k * ROWS, ROWS), out["b"][0] / f"part-{k}.parquet")
    for model, table in (("a", out["a"][1]), ("b", b)):
        pq.write_table(table, root / f"{model}.parquet")
    return root


@pytest.fixture(scope="module")
def client():
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                            host="127.0.0.1", dashboard_address=None) as c:
        yield c


def _same_scores(a, b):
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "calibration":
            for g in ("confidence", "accuracy", "counts", "ece"):
                np.testing.assert_allclose(getattr(x, g), getattr(y, g), rtol=1e-12)
        elif isinstance(x, (float, np.ndarray)):
            np.testing.assert_allclose(x, y, rtol=1e-12)
        else:
            assert x == y, f.name


@pytest.mark.parametrize("options", [{}, {"weight": "w"}, {"clip": 1e-6, "n_bins": 7}])
def test_four_partitions_give_the_single_process_numbers(data, options):
    one = score_file(data / "a.parquet", label="y", classes=CLASSES, **options)
    ddf = read_parquet_dask(data / "a" / "*.parquet")
    assert ddf.npartitions == 4
    _same_scores(score_dask(ddf, label="y", classes=CLASSES, **options), one)
    # a DataFrame made in memory, partitioned otherwise
    pdf = pq.read_table(data / "a.parquet").to_pandas()
    _same_scores(score_dask(dd.from_pandas(pdf, npartitions=3), label="y", classes=CLASSES, **options), one)


def test_multilabel_on_dask_matches_one_process(tmp_path):
    rng = np.random.default_rng(7)
    p = rng.uniform(0.01, 0.99, size=(500, 2))
    t = (rng.uniform(size=(500, 2)) < p).astype(np.int64)
    path = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"cat": p[:, 0], "dog": p[:, 1], "y_cat": t[:, 0], "y_dog": t[:, 1]}), path)
    one = score_file(path, label=["y_cat", "y_dog"], multilabel=True)
    many = score_dask(dd.from_pandas(pq.read_table(path).to_pandas(), npartitions=4),
                      label=["y_cat", "y_dog"], multilabel=True)
    _same_scores(many, one)


@pytest.mark.parametrize("exact_limit", [20_000, 100])  # resampling examples, and buckets
def test_compare_on_dask_gives_the_single_process_interval(data, exact_limit):
    files = [data / "a.parquet", data / "b.parquet"]
    one = compare_files(files, label="y", classes=CLASSES, n_resamples=300, exact_limit=exact_limit, n_buckets=500)
    many = compare_dask([read_parquet_dask(data / m) for m in ("a", "b")], label="y", classes=CLASSES, names=["a", "b"],
                        n_resamples=300, exact_limit=exact_limit, n_buckets=500)
    assert many.method == one.method == ("examples" if exact_limit > ROWS * N_FILES else "buckets")
    r1, r2 = one.pairs[0].result, many.pairs[0].result
    for f in ("mean_a", "mean_b", "difference", "low", "high"):
        assert getattr(r2, f) == pytest.approx(getattr(r1, f), rel=1e-12)
    for s1, s2 in zip(one.scores, many.scores):
        _same_scores(s2, s1)


def test_a_two_worker_cluster_gives_the_single_process_numbers(data, client):
    one = score_file(data / "a.parquet", label="y", classes=CLASSES, weight="w")
    _same_scores(score_dask(read_parquet_dask(data / "a"), label="y", classes=CLASSES, weight="w"), one)
    c1 = compare_files([data / "a.parquet", data / "b.parquet"], label="y", classes=CLASSES, n_resamples=200,
                       exact_limit=100, n_buckets=300)
    c2 = compare_dask([read_parquet_dask(data / m) for m in ("a", "b")], label="y", classes=CLASSES, n_resamples=200,
                      exact_limit=100, n_buckets=300)
    assert (c2.pairs[0].result.low, c2.pairs[0].result.high) == pytest.approx(
        (c1.pairs[0].result.low, c1.pairs[0].result.high), rel=1e-12)


def test_cli_scheduler_and_globs(data, client, capsys):
    one = score_file(data / "a.parquet", label="y", classes=CLASSES).to_dict()
    address = client.scheduler.address
    for source in ([str(data / "a" / "*.parquet"), "--scheduler", address], [str(data / "a")],
                   [str(data / "a" / "part-*.parquet")]):
        code = main(["score", *source, "--label", "y", "--classes", "cat,dog,emu", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        got = json.loads(out)
        for key in ("cross_entropy_nats", "accuracy", "brier", "ece"):
            assert got[key] == pytest.approx(one[key], rel=1e-12)
    code = main(["compare", str(data / "a"), str(data / "b"), "--label", "y", "--classes", "cat,dog,emu", "--json",
                 "--scheduler", address, "--bootstrap", "200"])
    out, err = capsys.readouterr()
    assert code == 0, err
    c = compare_files([data / "a.parquet", data / "b.parquet"], label="y", classes=CLASSES, n_resamples=200)
    got = json.loads(out)["comparisons"][0]
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((c.pairs[0].result.low, c.pairs[0].result.high),
                                                            rel=1e-12)


def test_glob_errors_name_the_file_and_its_own_row(tmp_path):
    for k in range(2):
        p = np.array([[0.5, 0.5]] * 3)
        if k == 1:
            p[2] = [0.7, 0.7]
        pq.write_table(pa.table({"a": p[:, 0], "b": p[:, 1], "y": ["a"] * 3}), tmp_path / f"{k}.parquet")
    with pytest.raises(ValueError, match=r"1\.parquet: row 3: the probabilities of classes a, b sum to 1.4"):
        score_file(tmp_path / "*.parquet", label="y")
    with pytest.raises(ValueError, match="matches no file"):
        score_file(tmp_path / "nothing-*.parquet", label="y")
    pq.write_table(pa.table({"a": [0.5], "c": [0.5], "y": ["a"]}), tmp_path / "2.parquet")
    with pytest.raises(ValueError, match=r"2\.parquet: has the columns a, c, y, but .*0\.parquet has a, b, y"):
        score_file(tmp_path, label="y")


def test_without_dask_the_options_say_which_extra(data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    code = main(["score", str(data / "a.parquet"), "--label", "y", "--workers", "2"])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip() == ("crossent: error: --workers and --scheduler need Dask: "
                                         "pip install 'crossent[dask]'")
