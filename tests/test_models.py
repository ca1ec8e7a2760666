"""crossent.models against scikit-learn's LogisticRegression, PyTorch autograd and hand checks;
and the seeds' claim: squared error trains slower than cross-entropy at the same step size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossent.datasets import load_iris, train_test_split
from crossent.models import LogisticRegression, NotFittedError, SoftmaxRegression

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("scipy")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression as SkLogisticRegression  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402


def _standardised_iris(seed=0):
    iris = load_iris()
    train, test = train_test_split(iris.target, test_size=0.2, random_state=seed)
    mean, std = iris.data[train].mean(axis=0), iris.data[train].std(axis=0)
    X = (iris.data - mean) / std
    return X[train], iris.target[train], X[test], iris.target[test]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    cut = int(0.75 * len(y))
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


def _epochs_to(accuracies, target):
    hits = np.flatnonzero(np.asarray(accuracies) >= target)
    return int(hits[0]) + 1 if hits.size else None


# ----------------------------------------------------------------------------- optimum vs sklearn
def test_digits_lbfgs_matches_sklearn(digits):
    X_tr, y_tr, X_te, y_te = digits
    C = 1.0
    sk = SkLogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(X_tr, y_tr)
    ours = SoftmaxRegression(loss="cross_entropy", solver="lbfgs", alpha=1.0 / (C * len(y_tr)),
                             max_iter=5000, tol=1e-8).fit(X_tr, y_tr)
    sk_loss = log_loss(y_tr, sk.predict_proba(X_tr))
    our_loss = log_loss(y_tr, ours.predict_proba(X_tr))
    assert abs(our_loss - sk_loss) < 1e-4
    assert abs(ours.score(X_te, y_te) - sk.score(X_te, y_te)) <= 0.01
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-3)


def test_class_weight_matches_sklearn():
    X, y, _, _ = _standardised_iris()
    weights = {0: 3.0, 1: 0.5, 2: 1.0}
    C = 0.5
    sk = SkLogisticRegression(C=C, class_weight=weights, tol=1e-10, max_iter=5000).fit(X, y)
    ours = SoftmaxRegression(solver="lbfgs", alpha=1.0 / (C * len(y)), class_weight=weights,
                             max_iter=5000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, atol=1e-5)
    balanced = SkLogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=5000)
    y_imb = np.where(y == 2, 1, y)  # classes 0 (40 rows) and 1 (80 rows)
    sk_b = balanced.fit(X, y_imb)
    ours_b = LogisticRegression(solver="lbfgs", alpha=1.0 / (C * len(y)), class_weight="balanced",
                                max_iter=5000, tol=1e-10).fit(X, y_imb)
    np.testing.assert_allclose(ours_b.coef_, sk_b.coef_, atol=1e-5)
    np.testing.assert_allclose(ours_b.intercept_, sk_b.intercept_, atol=1e-5)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_class_weight_reweights_the_class_frequencies(loss):
    # Features that carry no information: the optimum predicts, for every row, the weighted
    # class frequencies p_c = w_c n_c / sum_k w_k n_k (by hand: 10*40 / (40 + 40 + 400) = 5/6).
    X = np.zeros((120, 2))
    y = np.repeat([0, 1, 2], 40)
    model = SoftmaxRegression(loss=loss, solver="lbfgs", class_weight={2: 10.0}, max_iter=500,
                              tol=1e-12).fit(X, y)
    np.testing.assert_allclose(model.predict_proba(X[:1])[0], [1 / 12, 1 / 12, 5 / 6], atol=1e-6)
    assert (model.predict(X) == 2).all()


def test_focal_with_gamma_zero_is_cross_entropy_fit():
    X, y, _, _ = _standardised_iris()
    sk = SkLogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(X, y)
    ours = SoftmaxRegression(loss="focal", gamma=0.0, solver="lbfgs", alpha=1.0 / len(y),
                             max_iter=5000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-5)


def test_logistic_regression_matches_sklearn_on_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    C = 1.0
    sk = SkLogisticRegression(C=C, tol=1e-10, max_iter=5000).fit(X, y)
    ours = LogisticRegression(solver="lbfgs", alpha=1.0 / (C * len(y)), max_iter=5000,
                              tol=1e-9).fit(X, y)
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, atol=1e-4)
    assert abs(log_loss(y, ours.predict_proba(X)) - log_loss(y, sk.predict_proba(X))) < 1e-7
    assert (ours.predict(X) == sk.predict(X)).all()


# ----------------------------------------------------------------------------- the seeds' claim
def test_squared_error_needs_more_epochs_on_iris():
    X, y, _, _ = _standardised_iris()
    epochs = {}
    for loss in ("cross_entropy", "mse"):
        model = SoftmaxRegression(loss=loss, learning_rate=0.5, max_iter=200, tol=None).fit(X, y)
        epochs[loss] = _epochs_to(model.accuracy_curve_, 0.9)
    assert epochs["cross_entropy"] is not None and epochs["mse"] is not None
    assert epochs["mse"] >= 2 * epochs["cross_entropy"], epochs


def test_squared_error_needs_more_epochs_on_digits(digits):
    X, y, _, _ = digits
    ce = SoftmaxRegression(loss="cross_entropy", learning_rate=0.5, max_iter=60, tol=None).fit(X, y)
    reached = _epochs_to(ce.accuracy_curve_, 0.9)
    assert reached is not None and reached <= 40
    mse = SoftmaxRegression(loss="mse", learning_rate=0.5, max_iter=3 * reached, tol=None).fit(X, y)
    assert max(mse.accuracy_curve_) < 0.9  # not even three times as many epochs suffice


def test_gradient_descent_lowers_cross_entropy_monotonically():
    X, y, _, _ = _standardised_iris()
    # The softmax cross-entropy's Hessian in the logits is at most 1/2 (spectral norm), so the
    # mean loss is L-smooth in (W, b) with L = lambda_max(A^T A / N) / 2, A = [X, 1];
    # a step of 1/L never raises it.
    A = np.hstack([X, np.ones((len(X), 1))])
    L = 0.5 * np.linalg.eigvalsh(A.T @ A / len(X)).max()
    model = SoftmaxRegression(learning_rate=1.0 / L, max_iter=200, tol=None).fit(X, y)
    curve = np.asarray(model.loss_curve_)
    assert len(curve) == 200
    assert (np.diff(curve) < 0).all()
    assert curve[0] < np.log(3)  # the first step already improves on the uniform prediction


# ----------------------------------------------------------------------------- gradients vs torch
def test_squared_error_gradients_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(7, 4)) * 3
    y = rng.integers(0, 4, size=7)
    model = SoftmaxRegression(loss="mse", label_smoothing=0.1)
    value, g = model._loss_sum(logits, y, np.array([1.0, 2.0, 0.5, 1.5]))
    z = torch.tensor(logits, requires_grad=True)
    t = torch.nn.functional.one_hot(torch.tensor(y), 4).double() * 0.9 + 0.1 / 4
    w = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)[torch.tensor(y)]
    ref = (0.5 * ((torch.softmax(z, dim=1) - t) ** 2).sum(dim=1) * w).sum()
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(g, z.grad.numpy(), rtol=1e-10, atol=1e-14)

    binary = LogisticRegression(loss="mse")
    zb = rng.normal(size=9) * 4
    yb = rng.integers(0, 2, size=9)
    value, g = binary._loss_sum(zb[:, None], yb, None)
    zt = torch.tensor(zb, requires_grad=True)
    ref = (0.5 * (torch.sigmoid(zt) - torch.tensor(yb, dtype=torch.float64)) ** 2).sum()
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(g[:, 0], zt.grad.numpy(), rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------- label smoothing
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_label_smoothing_caps_confidence(loss):
    # Two separable pairs: the model can give each row any probability, and the optimum of the
    # smoothed loss is the smoothed target itself, 1 - eps + eps / C = 0.9 for eps = 0.2, C = 2.
    X = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    y = np.array([0, 0, 1, 1])
    model = SoftmaxRegression(loss=loss, label_smoothing=0.2, solver="lbfgs", max_iter=1000,
                              tol=1e-12).fit(X, y)
    np.testing.assert_allclose(model.predict_proba(X)[[0, 2], [0, 1]], [0.9, 0.9], atol=1e-6)
    sharp = SoftmaxRegression(loss=loss, solver="lbfgs", max_iter=200).fit(X, y)
    assert sharp.predict_proba(X)[0, 0] > 0.99


# ----------------------------------------------------------------------------- estimator protocol
def test_get_params_set_params_round_trip():
    model = SoftmaxRegression(loss="focal", gamma=1.5, alpha=0.01, batch_size=16, random_state=3)
    params = model.get_params()
    assert params["loss"] == "focal" and params["gamma"] == 1.5 and params["batch_size"] == 16
    again = SoftmaxRegression(**params)
    assert again.get_params() == params
    assert clone(model).get_params() == params  # scikit-learn's own clone works
    assert model.set_params(alpha=0.5, schedule="cosine") is model
    assert model.get_params()["alpha"] == 0.5 and model.schedule == "cosine"
    with pytest.raises(ValueError, match="invalid parameter 'C'"):
        model.set_params(C=1.0)
    with pytest.raises(TypeError):
        SoftmaxRegression("mse")  # hyperparameters are keyword-only


def test_predict_proba_rows_sum_to_one_and_predict_takes_the_argmax():
    X, y, X_te, _ = _standardised_iris()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = SoftmaxRegression(max_iter=30).fit(X, names)
    probs = model.predict_proba(X_te)
    assert probs.shape == (len(X_te), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-14)
    assert (probs >= 0).all()
    assert model.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert (model.predict(X_te) == model.classes_[probs.argmax(axis=1)]).all()
    binary = LogisticRegression(max_iter=30).fit(X, y == 2)
    np.testing.assert_allclose(binary.predict_proba(X_te).sum(axis=1), 1.0, rtol=1e-14)


def test_minibatch_training_is_reproducible_with_a_seed():
    X, y, _, _ = _standardised_iris()
    kwargs = dict(batch_size=16, max_iter=5, learning_rate=0.2, schedule="inverse_sqrt", tol=None)
    a = SoftmaxRegression(random_state=7, **kwargs).fit(X, y)
    b = SoftmaxRegression(random_state=7, **kwargs).fit(X, y)
    c = SoftmaxRegression(random_state=8, **kwargs).fit(X, y)
    assert np.array_equal(a.coef_, b.coef_) and a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.coef_, c.coef_)


def test_cosine_schedule_and_curves_have_one_entry_per_epoch():
    X, y, _, _ = _standardised_iris()
    seen = []
    model = SoftmaxRegression(schedule="cosine", max_iter=12, tol=None).fit(
        X, y, callback=lambda epoch, m: seen.append((epoch, len(m.loss_curve_))))
    assert seen == [(k, k) for k in range(1, 13)]
    assert len(model.accuracy_curve_) == 12 and model.n_iter_ == 12


def test_bad_input_raises_clear_errors():
    X, y, _, _ = _standardised_iris()
    with pytest.raises(ValueError, match="only one class"):
        SoftmaxRegression().fit(X[:5], np.zeros(5))
    with pytest.raises(ValueError, match="exactly two classes"):
        LogisticRegression().fit(X, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        SoftmaxRegression().predict(X)
    with pytest.raises(ValueError, match="loss must be one of"):
        SoftmaxRegression(loss="hinge").fit(X, y)
    with pytest.raises(ValueError, match="label_smoothing is not defined for loss='focal'"):
        SoftmaxRegression(loss="focal", label_smoothing=0.1).fit(X, y)
    with pytest.raises(ValueError, match="X must be finite|X.*nan|NaN"):
        SoftmaxRegression().fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="one label per row"):
        SoftmaxRegression().fit(X, y[:-1])
    model = SoftmaxRegression(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but the model was fitted with 4"):
        model.predict(X[:, :3])
    with pytest.raises(ValueError, match="class_weight names the class 7"):
        SoftmaxRegression(class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(FloatingPointError, match="learning_rate=1000.0 is too large"), \
            np.errstate(over="ignore"):
        SoftmaxRegression(alpha=1.0, learning_rate=1e3, max_iter=300).fit(X, y)


# ----------------------------------------------------------------------------- saving and loading
def test_save_load_round_trip_predicts_identically(tmp_path, digits):
    from crossent.models import load

    X, y, X_te, _ = digits
    names = np.array([f"digit {d}" for d in range(10)])[y]
    model = SoftmaxRegression(solver="lbfgs", alpha=1e-3, class_weight={"digit 3": 2.0},
                              max_iter=30).fit(X, names)
    features = [f"pixel{j}" for j in range(X.shape[1])]
    mean, std = np.linspace(-1, 1, X.shape[1]), np.linspace(0.5, 2, X.shape[1])
    path = tmp_path / "digits.json"
    model.save(path, feature_names=features, target_name="digit", mean=mean, std=std)
    again = load(path)
    assert type(again) is SoftmaxRegression and again.get_params() == model.get_params()
    assert again.classes_.tolist() == model.classes_.tolist()
    assert np.array_equal(again.coef_, model.coef_) and np.array_equal(again.intercept_, model.intercept_)
    assert np.array_equal(again.predict_proba(X_te), model.predict_proba(X_te))
    assert (again.predict(X_te) == model.predict(X_te)).all()
    assert again.feature_names_in_.tolist() == features and again.target_name_ == "digit"
    assert np.array_equal(again.feature_mean_, mean) and np.array_equal(again.feature_std_, std)
    # Saving the loaded model keeps what it records; refitting forgets it.
    again.save(tmp_path / "copy.json")
    assert load(tmp_path / "copy.json").feature_names_in_.tolist() == features
    assert again.fit(X, names).feature_mean_ is None

    # Binary model, integer classes and an integer-keyed class_weight (JSON keys are strings).
    binary = LogisticRegression(solver="lbfgs", class_weight={0: 3.0}, random_state=np.int64(4),
                                alpha=np.float64(0.01)).fit(X, y == 3)
    binary.save(tmp_path / "binary.json")
    loaded = load(tmp_path / "binary.json")
    assert type(loaded) is LogisticRegression and loaded.class_weight == {0: 3.0}
    assert loaded.classes_.tolist() == [False, True] and loaded.feature_names_in_ is None
    assert np.array_equal(loaded.predict_proba(X_te), binary.predict_proba(X_te))


def test_load_reads_the_version_1_file_of_crossent_train(tmp_path):
    from crossent.models import load

    # The layout `crossent train --save` wrote before models saved themselves.
    document = {"format": "crossent.SoftmaxRegression/1", "target": "species", "loss": "ce",
                "params": SoftmaxRegression(solver="lbfgs").get_params(),
                "classes": ["a", "b"], "feature_names": ["x"], "mean": [1.0], "std": [2.0],
                "coef": [[-1.5], [1.5]], "intercept": [0.25, -0.25]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(document))
    model = load(path)
    assert model.target_name_ == "species" and model.feature_names_in_.tolist() == ["x"]
    # softmax of (z_a, z_b) = (-1.5 x + 0.25, 1.5 x - 0.25): p_b = sigma(3 x - 0.5).
    x = 0.4
    np.testing.assert_allclose(model.predict_proba([[x]])[0, 1], 1 / (1 + np.exp(-(3 * x - 0.5))),
                               rtol=1e-14)


def test_bad_model_files_give_errors_naming_the_file(tmp_path):
    from crossent.models import load

    model = SoftmaxRegression(max_iter=3).fit(np.eye(3), ["a", "b", "c"])
    good = tmp_path / "good.json"
    model.save(good, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    document = json.loads(good.read_text())

    def written(name, content):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def fails(path, match, error=ValueError):
        with pytest.raises(error, match=match) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: ")

    fails(tmp_path / "missing.json", "no such file", FileNotFoundError)
    fails(written("text.json", "coef = [1, 2]"), "not a JSON model file")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    fails(binary, "not a JSON model file")
    fails(written("list.json", [1, 2]), "not a model saved by 'crossent train --save'")
    fails(written("other.json", {"weights": [1, 2]}), "expected format 'crossent.model'")
    fails(written("newer.json", {**document, "version": 3}), "newer crossent .*version 3")
    fails(written("version.json", {**document, "version": "2"}), "version must be an integer")
    fails(written("nocoef.json", {k: v for k, v in document.items() if k != "coef"}),
          "damaged model file: missing entry 'coef'")
    fails(written("shape.json", {**document, "intercept": [0.0, 0.0]}),
          r"coef must have shape \(3, n_features\) and intercept \(3,\)")
    fails(written("ragged.json", {**document, "coef": [[1.0, 2.0, 3.0], [1.0], [2.0]]}), "damaged")
    fails(written("names.json", {**document, "feature_names": ["a", "b"]}),
          "feature_names has 2 names, but the model has 3 features")
    fails(written("std.json", {**document, "std": [1.0, 0.0, 1.0]}), "std must be positive")
    fails(written("nan.json", {**document, "coef": [[float("nan")] * 3] * 3}), "must be finite")
    fails(written("param.json", {**document, "params": {**document["params"], "C": 1.0}}),
          "unknown parameter 'C'")
    fails(written("loss.json", {**document, "params": {**document["params"], "loss": "hinge"}}),
          "loss must be one of")
    fails(written("kind.json", {**document, "model": "SVC"}), "model must be one of")
    fails(written("one.json", {**document, "classes": ["a", "a", "b"]}), "distinct class names")
    assert load(good).feature_mean_.tolist() == [0.0, 0.0, 0.0]  # the original still loads


def test_save_rejects_what_it_cannot_write(tmp_path):
    model = SoftmaxRegression(max_iter=3).fit(np.eye(3), [0, 1, 2])
    with pytest.raises(NotFittedError):
        SoftmaxRegression().save(tmp_path / "m.json")
    with pytest.raises(ValueError, match="mean and std go together"):
        model.save(tmp_path / "m.json", mean=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"std must have shape \(3,\)"):
        model.save(tmp_path / "m.json", mean=[0.0, 0.0, 0.0], std=[1.0, 1.0])
    with pytest.raises(ValueError, match="feature_names has 1 names"):
        model.save(tmp_path / "m.json", feature_names=["a"])
    with pytest.raises(TypeError, match="target_name must be a string"):
        model.save(tmp_path / "m.json", target_name=3)
    with pytest.raises(TypeError, match="parameter random_state=.*cannot be saved"):
        model.set_params(random_state=np.random.default_rng(0)).save(tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


# ----------------------------------------------------------------------------- training core
def _softmax_data(n_rows, n_features, n_classes, seed=0):
    """Features of unequal scales and classes drawn from a softmax of a random linear model."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.3, 3.0, n_features)
    X = rng.standard_normal((n_rows, n_features)) * scales
    logits = X @ (rng.standard_normal((n_features, n_classes)) / scales[:, None])
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    y = (probs.cumsum(axis=1) < rng.random((n_rows, 1))).sum(axis=1)
    return X, np.minimum(y, n_classes - 1)


def _objective_by_hand(coef, intercept, X, y, alpha):
    """J = mean(logsumexp(z) - z_y) + alpha/2 |W|^2 in float64, with SciPy's logsumexp."""
    from scipy.special import logsumexp

    z = X.astype(np.float64) @ coef.T + intercept
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y])
                 + 0.5 * alpha * np.sum(coef * coef))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("block_rows", [7, 64, 10_000])
def test_blocked_objective_matches_a_direct_formula(monkeypatch, block_rows, threads):
    import crossent.models as models

    X, y = _softmax_data(300, 6, 4, seed=1)
    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((4, 6)) * 0.5, rng.standard_normal(4)
    monkeypatch.setattr(models, "_BLOCK_BYTES", block_rows * 6 * 8)  # block_rows float64 rows
    model = SoftmaxRegression(alpha=0.01)
    with models._RowThreads(threads) as pool:  # threads sharing the blocks
        value, gW, gb, correct = model._objective(W, b, X, y, None, pool)
    assert value == pytest.approx(_objective_by_hand(W, b, X, y, 0.01), rel=1e-13)
    # dJ/dz = (softmax(z) - onehot(y)) / N, chained through z = X W^T + b.
    z = X @ W.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    r = (p - np.eye(4)[y]) / len(y)
    np.testing.assert_allclose(gW, r.T @ X + 0.01 * W, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(gb, r.sum(axis=0), rtol=1e-11, atol=1e-15)
    assert correct == int(np.sum(np.argmax(z, axis=1) == y))
    binary = LogisticRegression(alpha=0.01)
    with models._RowThreads(threads) as pool:
        value, gW, gb, correct = binary._objective(W[:1], b[:1], X, (y > 1).astype(np.intp), None,
                                                   pool)
    t = (y > 1).astype(float)
    zb = X @ W[0] + b[0]
    assert value == pytest.approx(np.mean(np.logaddexp(0, zb) - t * zb)
                                  + 0.005 * np.sum(W[0] ** 2), rel=1e-13)
    np.testing.assert_allclose(gW[0], X.T @ (1 / (1 + np.exp(-zb)) - t) / len(t) + 0.01 * W[0],
                               rtol=1e-11)
    assert correct == int(np.sum((zb > 0) == (t == 1)))


def test_lbfgs_reaches_sklearns_optimum_tightly():
    # The optimum by scikit-learn's Newton solver (quadratic convergence: gradient ~1e-16) and by
    # its L-BFGS. Both L-BFGS runs stop on the relative decrease (64 eps) with J equal to the
    # optimum's to rounding; the coefficients then agree to ~1e-6, the flattest direction's slack.
    X, y = _softmax_data(3000, 12, 5)
    C = 0.5
    alpha = 1.0 / (C * len(y))
    newton = SkLogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=100).fit(X, y)
    sk = SkLogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    ours = SoftmaxRegression(solver="lbfgs", alpha=alpha, tol=1e-10, max_iter=10_000).fit(X, y)
    j_newton = _objective_by_hand(newton.coef_, newton.intercept_, X, y, alpha)
    j_ours = _objective_by_hand(ours.coef_, ours.intercept_, X, y, alpha)
    assert abs(j_ours - j_newton) < 1e-13
    for reference in (newton, sk):
        np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-5)
        np.testing.assert_allclose(ours.intercept_, reference.intercept_, atol=1e-5)
    # Standardised features: our L-BFGS coordinates are scikit-learn's, and so are the iterates.
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    sk = SkLogisticRegression(C=C, tol=1e-8, max_iter=10_000).fit(Z, y)
    ours = SoftmaxRegression(solver="lbfgs", alpha=alpha, tol=1e-8, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_sharing_the_rows_reach_sklearns_optimum(monkeypatch, threads):
    # Blocks of 64 rows, so that every thread has several: scikit-learn's Newton optimum whatever
    # the thread count; BLAS runs one thread inside the fit (the fit's threads share the rows)
    # and gets its own back afterwards.
    import crossent
    import crossent.models as models

    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]

    X, y = _softmax_data(3000, 12, 5, seed=8)
    C = 0.5
    alpha = 1.0 / (C * len(y))
    newton = SkLogisticRegression(C=C, solver="newton-cholesky", tol=1e-14, max_iter=100).fit(X, y)
    monkeypatch.setattr(models, "_BLOCK_BYTES", 64 * 12 * 8)
    before_threads, before_blas = crossent.get_num_threads(), blas_threads()
    seen = []
    crossent.set_num_threads(threads)
    try:
        ours = SoftmaxRegression(solver="lbfgs", alpha=alpha, tol=1e-10, max_iter=10_000).fit(
            X, y, callback=lambda epoch, model: seen.append(blas_threads()))
    finally:
        crossent.set_num_threads(before_threads)
    assert blas_threads() == before_blas
    if threads > 1:
        assert all(counts == [1] * len(before_blas) for counts in seen)
    j_newton = _objective_by_hand(newton.coef_, newton.intercept_, X, y, alpha)
    assert abs(_objective_by_hand(ours.coef_, ours.intercept_, X, y, alpha) - j_newton) < 1e-13
    np.testing.assert_allclose(ours.coef_, newton.coef_, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_, newton.intercept_, atol=1e-5)


def test_lbfgs_reaches_the_optimum_on_shifted_and_scaled_features():
    # Columns far from zero and of scales 1e-2 to 1e2 (L-BFGS runs on centred, scaled
    # coordinates, and must still land on the optimum in the model's own): Newton's optimum.
    X, y = _softmax_data(2000, 8, 3, seed=5)
    scales = np.logspace(-2, 2, 8)
    shifted = X * scales + 50.0 * scales
    alpha = 1e-3
    newton = SkLogisticRegression(C=1.0 / (alpha * len(y)), solver="newton-cholesky", tol=1e-14,
                                  max_iter=100).fit(shifted, y)
    ours = SoftmaxRegression(solver="lbfgs", alpha=alpha, tol=1e-9, max_iter=10_000).fit(shifted, y)
    j_newton = _objective_by_hand(newton.coef_, newton.intercept_, shifted, y, alpha)
    assert abs(_objective_by_hand(ours.coef_, ours.intercept_, shifted, y, alpha) - j_newton) < 1e-12
    np.testing.assert_allclose(ours.coef_ * scales, newton.coef_ * scales, atol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(shifted), newton.predict_proba(shifted), atol=1e-6)


def test_float32_data_trains_to_the_float64_optimum():
    # float32 features: float32 products, float64 loss and sums. The optimum is that of the
    # float32 values (read exactly in float64 by scikit-learn), to float32's resolution: the
    # logits carry float32 rounding, so L-BFGS ends where J's changes drown in it, within
    # eps32 * J (about 4e-8 here) of the optimal J.
    X, y = _softmax_data(3000, 12, 5, seed=3)
    X32 = X.astype(np.float32)
    alpha = 1.0 / len(y)
    sk = SkLogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(X32.astype(np.float64), y)
    ours = SoftmaxRegression(solver="lbfgs", alpha=alpha, tol=1e-6, max_iter=10_000).fit(X32, y)
    assert ours.coef_.dtype == np.float64
    j_sk = _objective_by_hand(sk.coef_, sk.intercept_, X32, y, alpha)
    j_ours = _objective_by_hand(ours.coef_, ours.intercept_, X32, y, alpha)
    assert 0 <= j_ours - j_sk < np.finfo(np.float32).eps * j_sk
    np.testing.assert_allclose(ours.coef_, sk.coef_, atol=2e-3)
    np.testing.assert_allclose(ours.intercept_, sk.intercept_, atol=2e-3)
    # The float32 objective agrees with the float64 one to float32's rounding of the logits.
    model = SoftmaxRegression(alpha=alpha)
    W, b = sk.coef_, sk.intercept_
    value32, gW32, _, _ = model._objective(W, b, X32, y, None)
    value64, gW64, _, _ = model._objective(W, b, X32.astype(np.float64), y, None)
    assert value32 == pytest.approx(value64, rel=1e-6)
    np.testing.assert_allclose(gW32, gW64, atol=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "focal"])
def test_float32_objective_is_the_float64_one_for_every_loss(monkeypatch, loss):
    import crossent.models as models

    X, y = _softmax_data(500, 6, 3, seed=6)
    monkeypatch.setattr(models, "_BLOCK_BYTES", 100 * 6 * 4)  # 100 float32 rows per block
    rng = np.random.default_rng(7)
    W, b = rng.standard_normal((3, 6)) * 0.3, rng.standard_normal(3) * 0.3
    for model, Wm, bm, labels in (
            (SoftmaxRegression(loss=loss, alpha=0.1, class_weight={0: 2.0, 2: 0.5}), W, b, y),
            (LogisticRegression(loss=loss, alpha=0.1, class_weight={1: 3.0}), W[:1], b[:1],
             (y == 2).astype(np.intp))):
        cw = model._class_weights(np.unique(labels), labels)
        v64, gW64, gb64, c64 = model._objective(Wm, bm, X, labels, cw)
        v32, gW32, gb32, c32 = model._objective(Wm, bm, X.astype(np.float32), labels, cw)
        assert v32 == pytest.approx(v64, rel=1e-6)
        np.testing.assert_allclose(gW32, gW64, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gb32, gb64, rtol=1e-5, atol=1e-6)
        assert abs(c32 - c64) <= 1


@pytest.mark.parametrize("solver", ["lbfgs", "gd"])
def test_curves_hold_each_iterations_objective_and_accuracy(solver):
    X, y = _softmax_data(400, 5, 3, seed=4)
    alpha = 1e-3
    seen = []

    def check(epoch, model):
        seen.append((model.loss_curve_[-1], _objective_by_hand(model.coef_, model.intercept_, X, y,
                                                                alpha),
                     model.accuracy_curve_[-1], model.score(X, y)))

    model = SoftmaxRegression(solver=solver, alpha=alpha, max_iter=15, tol=None,
                              learning_rate=0.3).fit(X, y, callback=check)
    assert len(seen) == len(model.loss_curve_) == model.n_iter_ > 5
    for recorded, direct, accuracy, score in seen:
        assert recorded == pytest.approx(direct, rel=1e-12)
        assert accuracy == score
