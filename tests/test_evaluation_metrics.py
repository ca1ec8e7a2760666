"""crossent.evaluation.metrics: scores of predictions against scikit-learn on real data.

The predictions are those of scikit-learn logistic regressions on its bundled datasets (digits:
10 classes, breast cancer: 2); the oracles are sklearn.metrics and hand-checkable examples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import crossent._backend as _backend
from crossent.evaluation import ScoreAccumulator, score_arrays

sklearn_metrics = pytest.importorskip("sklearn.metrics")
from _evaluation_data import sklearn_predictions  # noqa: E402


def _multiclass_brier(probs, labels):
    """Brier (1950): mean over rows of sum_c (p_c - [c = y])^2, written out here as the oracle."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


@pytest.mark.parametrize("dataset", ["digits", "breast_cancer"])
def test_scores_match_sklearn_on_real_predictions(dataset):
    probs, labels, _ = sklearn_predictions(dataset)
    C = probs.shape[1]
    s = score_arrays(probs, labels, batch_size=97)  # many batches and a ragged last one
    expected_ce = sklearn_metrics.log_loss(labels, probs, labels=np.arange(C))
    assert s.cross_entropy == pytest.approx(expected_ce, rel=1e-12)
    assert s.cross_entropy_bits == pytest.approx(expected_ce / math.log(2), rel=1e-12)
    assert s.perplexity == pytest.approx(math.exp(expected_ce), rel=1e-12)
    assert s.accuracy == sklearn_metrics.accuracy_score(labels, probs.argmax(axis=1))
    if C == 2:
        assert s.brier == pytest.approx(sklearn_metrics.brier_score_loss(labels, probs[:, 1]), rel=1e-12)
    else:
        assert s.brier == pytest.approx(_multiclass_brier(probs, labels), rel=1e-12)
        assert s.brier == pytest.approx(sklearn_metrics.brier_score_loss(labels, probs, labels=np.arange(C)),
                                        rel=1e-12)
    assert s.n_rows == labels.size
    np.testing.assert_array_equal(s.class_counts, np.bincount(labels, minlength=C))
    for k in range(C):
        rows = labels == k
        expected = sklearn_metrics.log_loss(labels[rows], probs[rows], labels=np.arange(C))
        assert s.class_cross_entropy[k] == pytest.approx(expected, rel=1e-12)


def test_logits_give_the_same_scores_as_their_softmax():
    probs, labels, decision = sklearn_predictions("digits")  # decision_function: softmax logits
    s = score_arrays(decision, labels, logits=True)
    assert s.cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs, labels=np.arange(10)),
                                            rel=1e-9)
    assert s.accuracy == sklearn_metrics.accuracy_score(labels, probs.argmax(axis=1))
    assert s.brier == pytest.approx(_multiclass_brier(probs, labels), rel=1e-9)


def test_ece_matches_a_written_out_loop_on_real_predictions():
    probs, labels, _ = sklearn_predictions("digits", 0.01)  # a regularised, less confident model
    s = score_arrays(probs, labels, n_bins=10, batch_size=100)
    gaps = [0.0] * 10
    count = [0] * 10
    conf_sum = [0.0] * 10
    hit_sum = [0] * 10
    for p, y in zip(probs.tolist(), labels.tolist()):
        top = max(p)
        b = min(int(top * 10), 9)
        count[b] += 1
        conf_sum[b] += top
        hit_sum[b] += int(p.index(top) == y)
    ece = 0.0
    for b in range(10):
        if count[b]:
            gaps[b] = abs(hit_sum[b] / count[b] - conf_sum[b] / count[b])
            ece += count[b] / len(labels) * gaps[b]
    assert s.ece == pytest.approx(ece, rel=1e-12)
    assert s.calibration.counts.tolist() == count
    assert s.ece > 0.01  # the regularised model is visibly under-confident


def test_worked_example_by_hand():
    # Rows: [0.5, 0.5] label 0 (a tie: argmax says class 0, correct), [0.25, 0.75] label 1.
    s = score_arrays([[0.5, 0.5], [0.25, 0.75]], [0, 1], classes=["no", "yes"])
    assert s.cross_entropy == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, rel=1e-15)
    assert s.accuracy == 1.0
    assert s.brier == pytest.approx((0.25 + 0.0625) / 2, rel=1e-15)  # binary: (p_yes - y)^2
    # Top probabilities 0.5 (bin 7 of 15: [7/15, 8/15)) and 0.75 (bin 11), both correct.
    assert s.ece == pytest.approx((0.5 + 0.25) / 2, rel=1e-15)
    assert s.classes == ("no", "yes")


def test_ties_follow_argmax_the_first_top_class_is_the_prediction():
    probs = [[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.2, 0.4, 0.4]]
    s = score_arrays(probs, [0, 1, 2])
    assert s.accuracy == pytest.approx(1 / 3)  # sklearn: accuracy_score(y, probs.argmax(1))
    assert s.accuracy == sklearn_metrics.accuracy_score([0, 1, 2], np.argmax(probs, axis=1))


def test_zero_probability_on_the_true_class_is_infinite_and_its_rows_are_named():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1], [1.0, 0.0]])
    s = score_arrays(probs, [0, 1, 0, 1])
    assert math.isinf(s.cross_entropy) and math.isinf(s.perplexity)
    assert s.infinite_rows == 2 and s.first_infinite_rows == (1, 3)  # 0-based for arrays
    assert s.accuracy == 0.5 and math.isfinite(s.brier)
    assert s.to_dict()["cross_entropy_nats"] is None  # strict JSON: no Infinity


def test_clip_gives_a_finite_cross_entropy_and_only_touches_the_log():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    s = score_arrays(probs, [0, 1], clip=1e-15)
    assert s.cross_entropy == pytest.approx((math.log(2) - math.log(1e-15)) / 2, rel=1e-12)
    assert s.infinite_rows == 0 and s.clip == 1e-15
    assert s.brier == pytest.approx((0.25 + 1.0) / 2)


def test_normalize_rescales_rows_and_is_needed_for_unnormalised_rows():
    weights = np.array([[0.1, 0.3], [0.2, 0.2]])
    with pytest.raises(ValueError, match=r"predictions\[0\]: the probabilities .* sum to 0.4, not 1"):
        score_arrays(weights, [1, 0])
    s = score_arrays(weights, [1, 0], normalize=True)
    assert s.cross_entropy == pytest.approx(sklearn_metrics.log_loss([1, 0], weights / 0.4), rel=1e-12)
    with pytest.raises(ValueError, match=r"predictions\[1, 0\]: -1.0 cannot be normalised"):
        score_arrays([[0.5, 0.5], [-1.0, 2.0]], [1, 0], normalize=True)


@pytest.mark.parametrize("bad, message", [
    ([[0.5, 0.5], [1.5, -0.5]], r"predictions\[1, 0\]: probability 1.5 is outside \[0, 1\]"),
    ([[0.5, 0.5], [np.nan, 0.5]], r"predictions\[1, 0\]: NaN is not a probability"),
    ([[0.5, 0.5], [0.5, np.inf]], r"predictions\[1, 1\]: inf is not a probability"),
])
def test_bad_probabilities_name_row_and_column(bad, message):
    with pytest.raises(ValueError, match=message):
        score_arrays(bad, [0, 1])


def test_bad_logits_name_row_and_column_and_masked_classes_are_allowed():
    with pytest.raises(ValueError, match=r"predictions\[1, 1\]: NaN is not a valid logit"):
        score_arrays([[0.0, 1.0], [2.0, np.nan]], [0, 1], logits=True)
    with pytest.raises(ValueError, match=r"predictions\[0\]: every logit of the row is -inf"):
        score_arrays([[-np.inf, -np.inf], [2.0, 1.0]], [0, 1], logits=True)
    s = score_arrays([[0.0, -np.inf, 0.0]], [0], logits=True)  # a masked class
    assert s.cross_entropy == pytest.approx(math.log(2), rel=1e-15)


def test_argument_errors():
    with pytest.raises(ValueError, match="at least two classes"):
        ScoreAccumulator(["only"])
    with pytest.raises(IndexError, match=r"labels\[1\] = 2 is outside \[0, 2\)"):
        score_arrays([[0.5, 0.5], [0.5, 0.5]], [0, 2])
    with pytest.raises(ValueError, match="clip must be"):
        score_arrays([[0.5, 0.5]], [0], clip=0.0)
    with pytest.raises(ValueError, match="shape"):
        score_arrays([0.5, 0.5], [0])


def test_batches_and_one_pass_agree():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(7), size=1000)
    labels = rng.integers(0, 7, size=1000)
    whole = score_arrays(probs, labels)
    split = score_arrays(probs, labels, batch_size=33)
    assert split.cross_entropy == pytest.approx(whole.cross_entropy, rel=1e-13)
    assert split.ece == pytest.approx(whole.ece, rel=1e-12)
    np.testing.assert_array_equal(split.calibration.counts, whole.calibration.counts)
    assert split.cross_entropy == pytest.approx(sklearn_metrics.log_loss(labels, probs, labels=np.arange(7)),
                                                rel=1e-12)


def test_threads_change_nothing_and_the_first_bad_row_is_reported(monkeypatch):
    import crossent.evaluation.metrics as metrics

    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(10), size=200_000)  # several cache-sized slices per batch
    labels = rng.integers(0, 10, size=200_000)
    threaded = score_arrays(probs, labels)
    monkeypatch.setattr(metrics, "MAX_THREADS", 1)
    single = score_arrays(probs, labels)
    assert threaded.cross_entropy == single.cross_entropy and threaded.brier == single.brier
    assert threaded.ece == single.ece and threaded.accuracy == single.accuracy
    np.testing.assert_array_equal(threaded.class_cross_entropy, single.class_cross_entropy)
    monkeypatch.undo()
    bad = probs.copy()
    bad[150_000, 3] = 2.0  # in a late slice
    bad[40_000, 7] = -1.0  # in an early one: this one is reported
    with pytest.raises(ValueError, match=r"predictions\[40000, 7\]: probability -1.0 is outside"):
        score_arrays(bad, labels)


@pytest.mark.parametrize("dataset", ["digits", "breast_cancer"])
def test_sample_weights_match_sklearn(dataset, backend):
    probs, labels, _ = sklearn_predictions(dataset)
    C = probs.shape[1]
    w = np.random.default_rng(3).uniform(0.0, 3.0, size=labels.size)
    w[:5] = 0.0  # zero weights count for nothing
    s = score_arrays(probs, labels, sample_weight=w, batch_size=101)
    assert s.cross_entropy == pytest.approx(
        sklearn_metrics.log_loss(labels, probs, sample_weight=w, labels=np.arange(C)), rel=1e-12)
    assert s.accuracy == pytest.approx(
        sklearn_metrics.accuracy_score(labels, probs.argmax(axis=1), sample_weight=w), rel=1e-12)
    brier = (sklearn_metrics.brier_score_loss(labels, probs[:, 1], sample_weight=w) if C == 2 else
             sklearn_metrics.brier_score_loss(labels, probs, sample_weight=w, labels=np.arange(C)))
    assert s.brier == pytest.approx(brier, rel=1e-12)
    assert s.weight_sum == pytest.approx(w.sum(), rel=1e-12)
    np.testing.assert_array_equal(s.class_counts, np.bincount(labels, minlength=C))
    for k in range(C):  # per class: the weighted mean loss of the rows of that class
        rows = labels == k
        expected = np.average(-np.log(probs[rows, k]), weights=w[rows])
        assert s.class_cross_entropy[k] == pytest.approx(expected, rel=1e-12)
    # ECE: weighted bins, written out as a loop over the rows
    top, hit = probs.max(axis=1), probs.argmax(axis=1) == labels
    which = np.minimum((top * 15).astype(int), 14)
    ece = sum(abs(np.sum(w[which == b] * hit[which == b]) - np.sum(w[which == b] * top[which == b]))
              for b in range(15)) / w.sum()
    assert s.ece == pytest.approx(ece, rel=1e-12)
    # integer weights are repeated rows
    reps = np.random.default_rng(4).integers(0, 3, size=labels.size)
    a = score_arrays(probs, labels, sample_weight=reps)
    b = score_arrays(np.repeat(probs, reps, axis=0), np.repeat(labels, reps))
    for f in ("cross_entropy", "accuracy", "brier", "ece"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-12)


def test_bad_sample_weights_are_named():
    p, y = np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([0, 1])
    with pytest.raises(ValueError, match=r"predictions\[1\]: sample weight -1.0 is not finite and >= 0"):
        score_arrays(p, y, sample_weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="sample_weight has shape"):
        score_arrays(p, y, sample_weight=[1.0])


_EXT = _backend._compiled
_LEVELS = _EXT.supported_simd_levels().split(",") if _EXT is not None else ["none"]


@pytest.fixture(params=_LEVELS)
def simd_level(request):
    """The compiled kernels at each SIMD level this CPU runs."""
    if _EXT is None:
        pytest.skip("the compiled kernels are not built")
    previous = _EXT.simd_level()
    _EXT.set_simd_level(request.param)
    yield request.param
    _EXT.set_simd_level(previous)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("options", [{}, {"normalize": True}, {"clip": 1e-3}, {"weights": True}])
@pytest.mark.parametrize("N", [100_000, 3000, 13])  # slices, 256-row blocks, 8-row lanes, tails
@pytest.mark.parametrize("layout", ["columns", "codes", "strided"])
def test_compiled_kernel_matches_the_reference(simd_level, dtype, options, N, layout):
    """The compiled score_columns against the NumPy reference (_chunk_reference): every sum.

    Layouts: a list of contiguous columns read in place (one call, slices on the kernel's
    threads), the same with the labels as codes through a map (a dictionary column), and a
    strided (C, N) view (copied slice by slice to a buffer)."""
    from crossent._backend import use_backend

    rng = np.random.default_rng(5)
    C = 7
    p = rng.dirichlet(np.full(C, 0.3), size=N)
    p[:50] = np.round(p[:50], 1)  # ties, zeros (infinite losses) and exact ones
    p[:50] /= p[:50].sum(axis=1, keepdims=True)
    p[-1] = np.eye(C)[3]  # a top probability of exactly 1: the last calibration bin
    if options.get("normalize"):
        p = p * rng.uniform(0.5, 2.0, size=(N, 1))
    y = rng.integers(0, C, size=N)
    w = rng.uniform(0, 2, size=N) if options.get("weights") else None
    kw = {k: v for k, v in options.items() if k != "weights"}
    scores, labels, label_map = p.astype(dtype).T, y, None
    if layout != "strided":
        scores = [np.ascontiguousarray(c) for c in scores]
    if layout == "codes":  # code j names class label_map[j]; codes 5 and 9 are never used
        label_map = np.array([3, 0, 6, 1, 5, 2, 2, 4, 0, 6])
        inverse = np.array([1, 3, 5, 0, 7, 4, 2])
        labels = inverse[y].astype(np.int32)
    results = []
    for name in ("compiled", "reference"):
        with use_backend(name):
            acc = ScoreAccumulator([str(k) for k in range(C)], n_bins=10, **kw)
            loss = acc.update(scores, labels, weights=w, label_map=label_map)
            results.append((acc.state.copy(), loss, acc.result().first_infinite_rows))
    (s1, l1, f1), (s2, l2, f2) = results
    np.testing.assert_allclose(s1, s2, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(l1, l2, rtol=1e-14)
    assert f1 == f2


@pytest.mark.parametrize("bad", ["above one", "negative", "nan", "sum", "zero sum"])
@pytest.mark.parametrize("row", [0, 9, 300])
def test_compiled_kernel_names_the_first_invalid_row(simd_level, bad, row):
    """The kernel stops at the first invalid row of its block passes; the error names it."""
    rng = np.random.default_rng(6)
    p = rng.dirichlet(np.ones(4), size=311)
    p[row] = p[row + 2] = {"above one": [1.5, -0.5, 0, 0], "negative": [1.2, -0.2, 0, 0],
                           "nan": [np.nan, 0.5, 0.5, 0], "sum": [0.5, 0.4, 0, 0],
                           "zero sum": [0, 0, 0, 0]}[bad]  # a later one is not named
    normalize = bad == "zero sum"
    with pytest.raises(ValueError, match=rf"predictions\[{row}(, \d)?\]"):
        score_arrays(p, rng.integers(0, 4, 311), normalize=normalize)


def test_float16_rows_get_the_float16_tolerance(backend):
    p = np.array([[0.1, 0.2, 0.7]] * 4, dtype=np.float16)  # rounded: sums to 1 - 2.4e-4
    s = score_arrays(p, [2, 2, 1, 0])
    assert s.cross_entropy == pytest.approx(-np.mean(np.log(p[0, [2, 2, 1, 0]].astype(float))), rel=1e-12)
    with pytest.raises(ValueError, match="sum to"):  # the same rows in float64 are off
        score_arrays(np.array([[0.1, 0.2, 0.7 - 3e-4]]), [0])


def test_bins_are_bounded():
    with pytest.raises(ValueError, match="n_bins must be <= 10000"):
        ScoreAccumulator(["a", "b"], n_bins=10_000_001)


def test_states_of_parts_merge_into_the_whole():
    probs, labels, _ = sklearn_predictions("digits")
    names = [str(k) for k in range(10)]
    whole = ScoreAccumulator(names)
    whole.update(probs.T, labels)
    parts = [ScoreAccumulator(names) for _ in range(3)]
    cuts = [0, 400, 401, labels.size]
    for acc, lo, hi in zip(parts, cuts, cuts[1:]):
        acc.update(probs[lo:hi].T, labels[lo:hi], start=lo)
    merged = parts[2].merge(parts[0]).merge(parts[1])
    np.testing.assert_allclose(merged.state, whole.state, rtol=1e-12)
    assert merged.result().cross_entropy == pytest.approx(whole.result().cross_entropy, rel=1e-12)
