"""``crossent train``: softmax regression on a user's table, predictions that ``score`` reads.

    crossent train flowers.csv --target species --loss ce --out preds.csv --save model.json
    crossent train new_flowers.csv --model model.json --out new_preds.csv
    crossent score preds.csv --label species
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
from rich.table import Table

from ..datasets import train_test_split
from ..losses import softmax_cross_entropy
from ..models import SoftmaxRegression
from ..models import load as load_model
from ._app import Argument, CliError, Option, check_input_file, check_output_file, command, console

__all__: list[str] = []

_LOSSES = {"ce": "cross_entropy", "mse": "mse", "focal": "focal"}
_OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")


def _read_table(path: Path):
    """The whole file as a pyarrow Table (CSV, Parquet or NPZ, chosen by the suffix).

    ``pyarrow.csv.read_csv`` swaps in its own SIGINT handler for the read; it passes a Ctrl-C
    on through a helper thread and drops it when the read ends first (a third of them, on a
    busy machine), so the command trained on. With pyarrow's handlers off, SIGINT stays with
    the handler of :func:`crossent.cli.main` and interrupts as soon as the read returns.
    """
    import pyarrow as pa

    from ..evaluation.io import read_table

    pa.enable_signal_handlers(False)
    return read_table(path)


def _first_null(column) -> Optional[int]:
    """1-based row of the first missing value of a pyarrow column, or None."""
    if column.null_count == 0:
        return None
    mask = column.is_null().to_numpy(zero_copy_only=False)
    return int(np.argmax(mask)) + 1


def _labels(path: Path, table, target: str) -> np.ndarray:
    import pyarrow as pa

    if target not in table.column_names:
        raise CliError(f"{path}: no target column {target!r} (columns: {', '.join(table.column_names)})")
    column = table.column(target)
    row = _first_null(column)
    if row is not None:
        raise CliError(f"{path}: row {row}, column {target!r}: the target is missing")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            or pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        # booleans, dates, decimals, ...: the class names are Arrow's text of the values, the
        # spelling in which the predictions file writes them back (true/false, 2024-01-31), so
        # that the label column and the class columns of the predictions agree for `score`
        column = column.cast(pa.string())
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = int(np.argmax(bad)) + 1
            raise CliError(f"{path}: row {row}, column {target!r}: {values[row - 1]!r} is not a "
                           f"class (the target holds class names or integers)")
        values = values.astype(np.int64)
    return values


def _features(path: Path, table, names) -> np.ndarray:
    if not names:
        raise CliError(f"{path}: no feature columns (only the target and id columns)")
    from ..evaluation.io import numeric_column

    columns = []
    for name in names:
        if name not in table.column_names:
            raise CliError(f"{path}: no feature column {name!r} (columns: {', '.join(table.column_names)})")
        columns.append(numeric_column(table, name, path))  # a bad cell: its row and value
    return np.column_stack(columns)


def _power_of_two_scale(a: np.ndarray) -> np.ndarray:
    """2**floor(log2 a) for each entry of ``a`` (>= 0; 1 for 0): within a factor 2 below ``a``
    and finite for any finite ``a``. Dividing by it is exact: it only shifts exponents."""
    return np.ldexp(1.0, np.frexp(np.where(a > 0, a, 1.0))[1] - 1)


def _standardization(X: np.ndarray):
    """Per column mean and standard deviation (a constant column keeps scale 1), for any
    finite column: computed on the column divided by a power of two near its largest
    magnitude (the quotients lie in (-2, 2)), so no sum or square overflows: a column
    x 1e307 standardises as the column does."""
    s = _power_of_two_scale(np.max(np.abs(X), axis=0))
    U = X / s
    mean, std = U.mean(axis=0) * s, U.std(axis=0) * s
    return mean, np.where(std > 0, std, 1.0)


def _standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray, path: Path, names) -> np.ndarray:
    """``(X - mean) / std``, each column first divided by a power of two s near max(|mean|, std):
    (X/s - mean/s) / (std/s) rounds as the plain formula does (scaling by a power of two is
    exact short of subnormal numbers), but X - mean cannot overflow. A value so far from the training columns that its standard score is not finite
    is reported with its row and column."""
    s = _power_of_two_scale(np.maximum(np.abs(mean), std))
    with np.errstate(over="ignore"):
        Z = (X / s - mean / s) / (std / s)
    bad = ~np.isfinite(Z)
    if bad.any():
        row, col = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise CliError(f"{path}: row {row + 1}, column {names[col]!r}: {float(X[row, col])!r} is too far "
                       f"from the training values (standard score beyond the float range)")
    return Z


def _write_predictions(out: Path, probs, classes, target: Optional[str], labels, ids, id_name):
    import pyarrow as pa

    names = [str(c) for c in classes.tolist()]
    taken = set(names)
    for extra in (target, id_name):
        if extra is not None and extra in taken:
            raise CliError(f"{out}: a class is named {extra!r} like the target or id column; "
                           f"rename the column")
    arrays, fields = [], []
    if id_name is not None:
        arrays.append(pa.array(ids))
        fields.append(id_name)
    for j, name in enumerate(names):
        arrays.append(pa.array(probs[:, j]))
        fields.append(name)
    if target is not None and labels is not None:
        arrays.append(pa.array(labels.tolist()))
        fields.append(target)
    table = pa.Table.from_arrays(arrays, names=fields)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    else:  # .csv (train_cmd checked the suffix before the work)
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)


def _save_model(path: Path, model, *, features, mean, std, target):
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path, feature_names=features, target_name=target, mean=mean, std=std)


def _load_model(path: Path):
    try:
        model = load_model(path)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not isinstance(model, SoftmaxRegression):
        raise CliError(f"{path}: a {type(model).__name__}; crossent train predicts with "
                       f"SoftmaxRegression models")
    if model.feature_names_in_ is None:
        raise CliError(f"{path}: the model has no feature names, so the columns to read are "
                       f"unknown (save it with feature_names=...)")
    d = model.n_features_in_
    mean = model.feature_mean_ if model.feature_mean_ is not None else np.zeros(d)
    std = model.feature_std_ if model.feature_std_ is not None else np.ones(d)
    return model, list(model.feature_names_in_), mean, std, model.target_name_


def _metrics_table(title, rows):
    table = Table(title=title)
    for name in ("rows", "cross-entropy (nats)", "accuracy"):
        table.add_column(name, justify="right" if name != "rows" else "left")
    for label, n, ce, acc in rows:
        table.add_row(f"{label} ({n})", f"{ce:.4f}", f"{acc:.3f}")
    return table


def _score(model, X, labels):
    """Mean cross-entropy and accuracy of ``model`` on rows whose classes the model knows."""
    index = {c: i for i, c in enumerate(model.classes_.tolist())}
    y = np.array([index[v] for v in labels.tolist()], dtype=np.intp)
    return float(softmax_cross_entropy(model.decision_function(X), y)), model.score(X, labels)


@command("train")
def train_cmd(
    data: Path = Argument(..., help="Training table: CSV, TSV or Parquet, one row per example."),
    target: Optional[str] = Option(None, "--target", help="Column holding the class of each row."),
    loss: str = Option("ce", "--loss", help="Training loss: ce (cross-entropy), mse or focal."),
    test_size: float = Option(0.2, "--test-size", help="Fraction of each class held out, in (0, 1)."),
    seed: int = Option(0, "--seed", help="Seed of the stratified split."),
    out: Optional[Path] = Option(None, "--out", help="Write predictions (CSV or Parquet)."),
    save: Optional[Path] = Option(None, "--save", help="Write the fitted model as JSON."),
    model_path: Optional[Path] = Option(None, "--model",
                                        help="Predict with a saved model instead of training."),
    id_column: Optional[str] = Option(None, "--id", help="Column copied to the predictions, not a feature."),
    solver: str = Option("lbfgs", "--solver", help="lbfgs (exact optimum, needs SciPy) or gd."),
    epochs: int = Option(300, "--epochs", min=1, help="Epochs (gd) or iterations (lbfgs)."),
    learning_rate: float = Option(0.5, "--learning-rate", help="Step size of gd."),
    alpha: float = Option(1e-4, "--alpha", help="L2 strength on the weights (mean loss + alpha/2 |W|^2)."),
) -> None:
    """Fit softmax regression on a table (numeric features, standardised) and write predictions
    that 'crossent score' reads. With --model, predict with a saved model instead."""
    check_input_file(data, "DATA")
    if out is not None:
        check_output_file(out, "--out", _OUTPUT_SUFFIXES)
    if save is not None:
        check_output_file(save, "--save")
    if model_path is not None:
        check_input_file(model_path, "--model")
        _predict_with_saved(data, model_path, target, out, id_column, save)
        return
    if target is None:
        raise CliError("--target is required to train (the column holding the classes)")
    if loss not in _LOSSES:
        raise CliError(f"--loss must be one of {', '.join(_LOSSES)}; got {loss!r}")
    if solver not in ("lbfgs", "gd"):
        raise CliError(f"--solver must be lbfgs or gd; got {solver!r}")
    if not 0.0 < test_size < 1.0:
        raise CliError(f"--test-size must be in (0, 1); got {test_size}")
    table = _read_table(data)
    labels = _labels(data, table, target)
    if id_column is not None and id_column not in table.column_names:
        raise CliError(f"{data}: no id column {id_column!r} (columns: {', '.join(table.column_names)})")
    classes = np.unique(labels)
    if classes.size < 2:
        raise CliError(f"{data}: column {target!r} has only one class ({classes[0]!r}); "
                       f"a classifier needs at least two")
    features = [c for c in table.column_names if c not in (target, id_column)]
    X = _features(data, table, features)
    train, test = train_test_split(labels, test_size=test_size, random_state=seed)
    if test.size == 0:
        raise CliError(f"{data}: too few rows to hold out a test part ({len(labels)} rows)")
    mean, std = _standardization(X[train])
    Z = _standardize(X, mean, std, data, features)
    model = SoftmaxRegression(loss=_LOSSES[loss], solver=solver, max_iter=epochs,
                              learning_rate=learning_rate, alpha=alpha, random_state=seed,
                              tol=None if solver == "gd" else 1e-8)
    try:
        model.fit(Z[train], labels[train])
    except FloatingPointError as exc:
        raise CliError(f"training diverged: {exc}; try a smaller --learning-rate") from None
    except ImportError as exc:
        raise CliError(f"{exc}") from None
    unseen = sorted(set(labels[test].tolist()) - set(model.classes_.tolist()))
    if unseen:
        raise CliError(f"{data}: class {unseen[0]!r} has too few rows to appear in training")
    rows = []
    for part, idx in (("train", train), ("held out", test)):
        ce, acc = _score(model, Z[idx], labels[idx])
        rows.append((part, idx.size, ce, acc))
    console().print(f"{data}: {len(labels)} rows, {len(features)} features, {classes.size} classes; "
                  f"softmax regression, loss {loss}, solver {solver}, {model.n_iter_} "
                  f"{'epochs' if solver == 'gd' else 'iterations'}.")
    console().print(_metrics_table("Softmax regression", rows))
    if out is not None:
        ids = table.column(id_column).to_pylist() if id_column is not None else None
        _write_predictions(out, model.predict_proba(Z[test]), model.classes_, target, labels[test],
                           None if ids is None else [ids[i] for i in test], id_column)
        console().print(f"predictions of the {test.size} held-out rows: {out} "
                      f"(crossent score {out} --label {target}"
                      f"{'' if id_column is None else f' --id {id_column}'})")
    if save is not None:
        _save_model(save, model, features=features, mean=mean, std=std, target=target)
        console().print(f"model: {save}")


def _predict_with_saved(data, model_path, target, out, id_column, save):
    if save is not None:
        raise CliError("--save cannot be used with --model (the model is already saved)")
    model, features, mean, std, saved_target = _load_model(model_path)
    target = target if target is not None else saved_target
    table = _read_table(data)
    if id_column is not None and id_column not in table.column_names:
        raise CliError(f"{data}: no id column {id_column!r} (columns: {', '.join(table.column_names)})")
    X = _standardize(_features(data, table, features), mean, std, data, features)
    labels = _labels(data, table, target) if target in table.column_names else None
    console().print(f"{data}: {table.num_rows} rows, model {model_path} "
                  f"({len(model.classes_)} classes, {len(features)} features).")
    if labels is not None:
        known = set(model.classes_.tolist())
        unknown = next((i for i, v in enumerate(labels.tolist()) if v not in known), None)
        if unknown is not None:
            raise CliError(f"{data}: row {unknown + 1}, column {target!r}: class {labels[unknown]!r} "
                           f"is not one the model knows ({', '.join(map(str, model.classes_.tolist()))})")
        ce, acc = _score(model, X, labels)
        console().print(_metrics_table("Saved model", [("all", len(labels), ce, acc)]))
    if out is not None:
        ids = table.column(id_column).to_pylist() if id_column is not None else None
        _write_predictions(out, model.predict_proba(X), model.classes_, target if labels is not None
                           else None, labels, ids, id_column)
        console().print(f"predictions of {table.num_rows} rows: {out}")
