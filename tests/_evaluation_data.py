"""Shared test data for the evaluation and score/compare CLI tests.

Predictions of scikit-learn models on scikit-learn's bundled datasets (no download), and a
writer for prediction files in every supported format.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def sklearn_predictions(dataset: str, strength: float = 1.0):
    """``(probs, labels, decision)`` of a logistic regression on half of ``dataset``, scored on
    the other half. ``strength`` is the inverse regularisation C."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = {"digits": load_digits, "breast_cancer": load_breast_cancer}[dataset](return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=5000)).fit(Xtr, ytr)
    return model.predict_proba(Xte), yte, model.decision_function(Xte)


def write_predictions(path, columns: dict, fmt: str | None = None):
    """Write ``columns`` (name -> 1-D array) as CSV, Parquet or NPZ, chosen by the suffix."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = str(path)
    fmt = fmt or path.rsplit(".", 1)[-1]
    if fmt == "npz":
        np.savez(path, **{k: np.asarray(v) for k, v in columns.items()})
        return path
    table = pa.table({k: pa.array(np.asarray(v)) for k, v in columns.items()})
    if fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        raise ValueError(fmt)
    return path


def prediction_columns(probs, labels, *, classes=None, label_names=False, ids=None, label="y"):
    """Columns of a prediction file: one per class, then the label (names or indices), then ids."""
    probs = np.asarray(probs)
    classes = [str(c) for c in range(probs.shape[1])] if classes is None else list(classes)
    cols = {c: probs[:, k] for k, c in enumerate(classes)}
    if label is not None:
        cols[label] = np.array(classes)[labels] if label_names else np.asarray(labels)
    if ids is not None:
        cols["id"] = np.asarray(ids)
    return cols
