"""The scenes of ``crossent demo`` make their claims with numbers checked against outside oracles:
PyTorch's autograd for the neuron, scikit-learn's average precision for the focal scene, plain
products and logarithms for the doors, and the learning curves themselves for Iris."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossent.demos import (
    SCENES,
    average_precision,
    doors_scene,
    focal_scene,
    iris_scene,
    make_anchors,
    neuron_scene,
    precision_recall_curve,
)
from crossent.models import LogisticRegression


# ---------------------------------------------------------------------------------- neuron
def test_neuron_cross_entropy_corrects_at_once_while_squared_error_stalls():
    scene = neuron_scene(steps=300, checkpoint=30)
    ce, se = scene.traces["cross-entropy"], scene.traces["squared error"]
    sigma4 = 1 / (1 + math.exp(-4.0))
    assert ce.outputs[0] == se.outputs[0] == pytest.approx(sigma4, rel=1e-15)
    # after 30 steps: cross-entropy's loss fell more than tenfold, squared error's by under 1%
    assert scene.loss_ratio("cross-entropy") < 0.1
    assert scene.loss_ratio("squared error") > 0.99
    assert ce.outputs[30] < 0.25 and se.outputs[30] > 0.97
    # squared error does get there in the end: the stall is a matter of the slope, not of the optimum
    assert se.outputs[-1] < 0.25
    # the start: sigma'(4) = sigma(4)(1 - sigma(4)); CE's gradient a - t, SE's (a - t) sigma'(z)
    slope = sigma4 * (1 - sigma4)
    assert se.slopes[0] == pytest.approx(slope, rel=1e-14)
    assert ce.grads[0] == pytest.approx(sigma4, rel=1e-14)
    assert se.grads[0] == pytest.approx(sigma4 * slope, rel=1e-14)
    lines = scene.verdict
    assert len(lines) == 2 and "0.982" in lines[0] and "sigma'(z)" in lines[1]


def test_neuron_trajectories_match_torch_autograd():
    torch = pytest.importorskip("torch")

    def descend(loss_of, steps=60, lr=0.15):
        w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        outputs = []
        for _ in range(steps + 1):
            a = torch.sigmoid(w * 1.0 + b)
            outputs.append(a.item())
            loss = loss_of(a)
            gw, gb = torch.autograd.grad(loss, (w, b))
            with torch.no_grad():
                w -= lr * gw
                b -= lr * gb
        return np.array(outputs)

    target = torch.tensor(0.0, dtype=torch.float64)
    scene = neuron_scene(steps=60)
    ce = descend(lambda a: torch.nn.functional.binary_cross_entropy(a, target))
    se = descend(lambda a: 0.5 * (a - target) ** 2)
    np.testing.assert_allclose(scene.traces["cross-entropy"].outputs, ce, rtol=1e-12)
    np.testing.assert_allclose(scene.traces["squared error"].outputs, se, rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"checkpoint": 400}, "checkpoint"),
    ({"target": 1.5}, "target"), ({"learning_rate": float("nan")}, "learning_rate")])
def test_neuron_rejects_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        neuron_scene(**kwargs)


# ---------------------------------------------------------------------------------- focal
def _scores_with_ties(seed, n=300):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(int)
    labels[0] = 1
    scores = np.round(rng.normal(size=n) + labels, 1)  # rounding makes ties
    return labels, scores


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_and_curve_match_sklearn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    labels, scores = _scores_with_ties(seed)
    assert average_precision(labels, scores) == pytest.approx(
        metrics.average_precision_score(labels, scores), rel=1e-12)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    sk_p, sk_r, sk_t = metrics.precision_recall_curve(labels, scores)
    # scikit-learn: increasing thresholds plus a final (precision 1, recall 0) point
    np.testing.assert_allclose(precision, sk_p[:-1][::-1], rtol=1e-12)
    np.testing.assert_allclose(recall, sk_r[:-1][::-1], rtol=1e-12)
    np.testing.assert_array_equal(thresholds, sk_t[::-1])


def test_average_precision_rejects_bad_input():
    with pytest.raises(ValueError, match="no positive"):
        average_precision([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        average_precision([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        average_precision([0, 1], [0.1])
    with pytest.raises(ValueError, match="scores"):
        average_precision([0, 1], [0.1, float("nan")])


@pytest.mark.parametrize("seed", range(4))
def test_focal_beats_cross_entropy_on_the_rare_class_for_the_same_budget(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    scene = focal_scene(seed=seed, gammas=(0.0, 2.0))
    # the oracle: retrain with the public model API and score with scikit-learn
    train_seed, test_seed = np.random.SeedSequence(seed).spawn(2)
    X, y, easy = make_anchors(seed=train_seed)
    X_test, y_test, _ = make_anchors(seed=test_seed)
    assert easy.mean() > 0.9 and y.mean() < 0.01  # dense detection: mostly easy background
    ap = {}
    for gamma, loss in ((0.0, "cross_entropy"), (2.0, "focal")):
        model = LogisticRegression(loss=loss, gamma=gamma, solver="gd", learning_rate=2.0,
                                   max_iter=30, tol=None).fit(X, y)
        ap[gamma] = metrics.average_precision_score(y_test, model.decision_function(X_test))
    np.testing.assert_allclose(scene.average_precision, [ap[0.0], ap[2.0]], rtol=1e-9)
    assert ap[2.0] > ap[0.0] + 0.02
    # recall at precision 0.5 from scikit-learn's curve
    sk_p, sk_r, _ = metrics.precision_recall_curve(y_test, LogisticRegression(
        loss="focal", gamma=2.0, solver="gd", learning_rate=2.0, max_iter=30,
        tol=None).fit(X, y).decision_function(X_test))
    assert scene.recall_at_precision[1] == pytest.approx(sk_r[sk_p >= 0.5].max())
    # the mechanism: at cross-entropy's weights the easy anchors carry far less of focal's gradient
    assert scene.easy_share[1] < scene.easy_share[0] / 2


def test_focal_gamma_sweep_and_verdict():
    scene = focal_scene(seed=0)
    assert scene.gammas == (0.0, 0.5, 1.0, 2.0, 5.0)
    # every moderate gamma beats cross-entropy; the share of the easy anchors falls with gamma
    assert (scene.average_precision[1:4] > scene.average_precision[0]).all()
    assert (np.diff(scene.easy_share) < 0).all()
    lines = scene.verdict
    assert len(lines) == 2 and "average precision" in lines[0] and "easy" in lines[1]
    assert len(scene.table().rows) == 5


def test_focal_rejects_bad_settings():
    with pytest.raises(ValueError, match="gammas must contain 0"):
        focal_scene(gammas=(1.0, 2.0))
    with pytest.raises(ValueError, match="epochs"):
        focal_scene(epochs=0)
    with pytest.raises(ValueError, match="n_objects"):
        make_anchors(n_objects=0)


# ---------------------------------------------------------------------------------- doors
def test_doors_likelihood_is_a_product_and_cross_entropy_a_sum():
    scene = doors_scene()
    gifts, happened, likelihood, ce = scene.models["good"]
    assert gifts == (0.8, 0.7, 0.1) and happened == pytest.approx((0.8, 0.7, 0.9))
    assert likelihood == pytest.approx(0.8 * 0.7 * 0.9, rel=1e-15) == pytest.approx(0.504)
    assert ce == pytest.approx(-(math.log(0.8) + math.log(0.7) + math.log(0.9)), rel=1e-14)
    assert round(ce, 3) == 0.685
    _, _, bad_likelihood, bad_ce = scene.models["bad"]
    assert bad_likelihood == pytest.approx(0.2 * 0.3 * 0.1) and bad_ce > ce
    # the eight arrangements: probabilities add to 1, the observed one is the most likely
    probs = {opened: p for opened, p, _ in scene.arrangements}
    assert len(probs) == 8 and sum(probs.values()) == pytest.approx(1.0, rel=1e-14)
    assert max(probs, key=probs.get) == (1, 1, 0)
    for _, p, c in scene.arrangements:
        assert c == pytest.approx(-math.log(p), rel=1e-12)


def test_doors_animals_table():
    scene = doors_scene()
    table, found, happened, likelihood, ce = scene.animals
    assert found == ("duck", "walrus", "walrus") and happened == (0.7, 0.3, 0.4)
    assert likelihood == pytest.approx(0.084, rel=1e-12)
    assert ce == pytest.approx(-math.log(0.084), rel=1e-12) and round(ce, 2) == 2.48
    assert all(sum(row) == pytest.approx(1.0) for row in table)
    assert "0.685" in scene.verdict[1] and "0.504" in scene.verdict[0]


def test_doors_rejects_bad_tables():
    with pytest.raises(ValueError, match="one entry per door"):
        doors_scene(outcome=(1, 0))
    with pytest.raises(ValueError, match="outcome"):
        doors_scene(outcome=(1, 2, 0))
    with pytest.raises(ValueError, match="'cat'"):
        doors_scene(animal_outcome=("cat", "duck", "duck"))
    with pytest.raises(ValueError, match="probs"):
        doors_scene(animal_probs=((0.5, 0.5, 0.0),))


# ---------------------------------------------------------------------------------- iris
def test_iris_cross_entropy_learns_faster_and_generalises_better():
    scene = iris_scene(epochs=100, n_resamples=500)
    assert scene.epochs_to_target("cross-entropy") < scene.epochs_to_target("squared error")
    X_train, y_train, X_test, y_test = scene.data
    assert scene.models["cross-entropy"].score(X_test, y_test) > 0.8  # softmax regression learns
    result = scene.comparisons["squared error"]
    assert result.low > 0  # squared error's held-out cross-entropy is higher, CI excludes 0
    assert len(scene.verdict) == 2 and "cross-entropy is better" in scene.verdict[0]
    # the training cross-entropy was recorded every epoch and fell
    curve = scene.train_ce["cross-entropy"]
    assert len(curve) == 100 and curve[-1] < curve[0] / 3


def test_every_scene_draws_non_trivial_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image  # matplotlib depends on Pillow

    kwargs = {"iris": {"epochs": 20, "n_resamples": 100}, "focal": {"gammas": (0.0, 2.0)}}
    for name, play in SCENES.items():
        paths = play(**kwargs.get(name, {})).draw(tmp_path / name)
        assert paths and all(p.parent == tmp_path / name for p in paths)
        for path in paths:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("L"), dtype=np.float64)
            assert min(pixels.shape) > 300
            assert pixels.std() > 20  # drawn, not blank
            assert len(np.unique(pixels)) > 20
