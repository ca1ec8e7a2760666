"""Small data shipped with crossent (no download) and a stratified train/test split.

- :func:`load_iris`: Fisher's Iris data, 150 flowers, 4 measurements, 3 species (public domain;
  the copy bundled with scikit-learn, with a header), read from ``iris.csv`` in this package.
- :func:`train_test_split`: a reproducible split that keeps each class's share in both parts.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .. import _checks

__all__ = ["Dataset", "load_iris", "train_test_split"]


@dataclass(frozen=True)
class Dataset:
    """A labelled table: ``data`` (N, D) float64, ``target`` (N,) class indices into
    ``target_names``, and the column names ``feature_names``."""

    data: np.ndarray
    target: np.ndarray
    feature_names: tuple
    target_names: tuple


def load_iris():
    """Fisher's Iris data: 150 rows, 4 features (cm), 3 species of 50 rows each.

    Returns
    -------
    Dataset
        ``data`` of shape (150, 4): sepal_length, sepal_width, petal_length, petal_width;
        ``target`` of shape (150,) with 0 = setosa, 1 = versicolor, 2 = virginica.

    References
    ----------
    R. A. Fisher, "The use of multiple measurements in taxonomic problems", Annals of
    Eugenics 7 (1936) 179-188.

    Examples
    --------
    >>> from crossent.datasets import load_iris
    >>> iris = load_iris()
    >>> iris.data.shape, iris.target_names
    ((150, 4), ('setosa', 'versicolor', 'virginica'))
    >>> iris.data[0].tolist(), iris.target_names[iris.target[0]]
    ([5.1, 3.5, 1.4, 0.2], 'setosa')
    """
    text = resources.files(__name__).joinpath("iris.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    names = tuple(sorted({row[-1] for row in body}))
    data = np.array([[float(v) for v in row[:-1]] for row in body])
    target = np.array([names.index(row[-1]) for row in body], dtype=np.intp)
    return Dataset(data, target, tuple(header[:-1]), names)


def train_test_split(labels, *, test_size=0.2, random_state=None):
    """Indices of a stratified train/test split: each class keeps its share in both parts.

    Per class with ``n_c`` rows, ``round(test_size * n_c)`` rows (at least 1 when
    ``n_c >= 2``, and never all of them) go to the test part, chosen at random.

    Parameters
    ----------
    labels : array_like, shape (N,)
        Class labels (any type numpy can compare).
    test_size : float, default 0.2
        Fraction of each class held out, in (0, 1).
    random_state : int, optional
        Seed; the same seed gives the same split.

    Returns
    -------
    train, test : ndarray of int
        Sorted row indices of the two parts.

    Examples
    --------
    >>> from crossent.datasets import train_test_split
    >>> train, test = train_test_split(["a"] * 5 + ["b"] * 5, test_size=0.4, random_state=0)
    >>> len(train), len(test)
    (6, 4)
    """
    frac = _checks.check_scalar(test_size, "test_size", low=0.0, high=1.0,
                                low_open=True, high_open=True)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {y.shape}")
    rng = np.random.default_rng(random_state)
    _, inverse = np.unique(y, return_inverse=True)
    test = []
    for c in range(inverse.max() + 1 if y.size else 0):
        rows = np.flatnonzero(inverse == c)
        k = int(round(frac * rows.size))
        if rows.size >= 2:
            k = min(max(k, 1), rows.size - 1)
        test.append(rng.permutation(rows)[:k])
    test = np.sort(np.concatenate(test)) if test else np.array([], dtype=np.intp)
    train = np.setdiff1d(np.arange(y.size), test)
    return train, test
