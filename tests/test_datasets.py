"""The bundled Iris data against scikit-learn's copy, and the stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from crossent.datasets import load_iris, train_test_split


def test_iris_equals_scikit_learns_copy():
    datasets = pytest.importorskip("sklearn.datasets")
    theirs = datasets.load_iris()
    ours = load_iris()
    np.testing.assert_array_equal(ours.data, theirs.data)
    np.testing.assert_array_equal(ours.target, theirs.target)
    assert ours.target_names == tuple(theirs.target_names)
    assert ours.feature_names == ("sepal_length", "sepal_width", "petal_length", "petal_width")


def test_iris_by_hand():
    iris = load_iris()
    assert iris.data.shape == (150, 4) and iris.data.dtype == np.float64
    assert np.bincount(iris.target).tolist() == [50, 50, 50]
    # Fisher's last flower: 5.9, 3.0, 5.1, 1.8, virginica.
    assert iris.data[-1].tolist() == [5.9, 3.0, 5.1, 1.8]
    assert iris.target_names[iris.target[-1]] == "virginica"


def test_split_is_stratified_disjoint_and_reproducible():
    labels = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    train, test = train_test_split(labels, test_size=0.2, random_state=1)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).tolist() == list(range(100))
    assert sorted(labels[test].tolist()).count("a") == 10
    assert sorted(labels[test].tolist()).count("b") == 6
    assert sorted(labels[test].tolist()).count("c") == 4
    again = train_test_split(labels, test_size=0.2, random_state=1)
    assert np.array_equal(again[1], test)
    other = train_test_split(labels, test_size=0.2, random_state=2)
    assert not np.array_equal(other[1], test)


def test_split_keeps_every_class_in_training():
    labels = np.array([0, 0, 1, 1, 2])  # class 2 has one row: it stays in training
    train, test = train_test_split(labels, test_size=0.5, random_state=0)
    assert 4 in train.tolist()
    assert sorted(labels[test].tolist()) == [0, 1]


@pytest.mark.parametrize("size", [0.0, 1.0, -0.1, 2])
def test_split_rejects_bad_test_size(size):
    with pytest.raises(ValueError, match="test_size"):
        train_test_split([0, 1, 0, 1], test_size=size)
