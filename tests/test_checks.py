"""Every bad input gives a clear error naming the argument and the bad value or position —
checked before any compiled code runs (both backends)."""

from __future__ import annotations

import numpy as np
import pytest

import crossent

X = np.zeros((2, 3))
Y = np.array([0, 2])
T = np.full((2, 3), 0.5)
P = np.full((2, 3), 1 / 3)
SCE, NLL, FOCAL = crossent.softmax_cross_entropy, crossent.nll_loss, crossent.softmax_focal_loss
SBCE, BCE, SFOCAL = crossent.sigmoid_binary_cross_entropy, crossent.binary_cross_entropy, crossent.sigmoid_focal_loss

CASES = {
    # wrong shapes
    "index targets shape": (lambda: SCE(X, np.array([0, 1, 2])), ValueError,
                            r"targets holds class indices of shape \(3,\).*need indices of shape \(2,\)"),
    "dense targets shape": (lambda: SCE(X, np.zeros((2, 2))), ValueError,
                            r"targets of float dtype .* shape \(2, 3\), got shape \(2, 2\)"),
    "float labels as dense": (lambda: SCE(X, np.array([0.0, 1.0])), ValueError,
                              r"class indices must have an integer dtype"),
    "nll labels shape": (lambda: NLL(X, np.array([[0, 1]])), ValueError, r"labels has shape \(1, 2\)"),
    "focal labels shape": (lambda: FOCAL(X, np.array([0])), ValueError, r"labels has shape \(1,\)"),
    "binary targets shape": (lambda: SBCE(X, np.zeros((3, 2))), ValueError,
                             r"targets has shape \(3, 2\), but logits has shape \(2, 3\)"),
    "bce targets shape": (lambda: BCE(P, np.zeros(3)), ValueError, r"targets has shape \(3,\), but probs"),
    "class weight shape": (lambda: SCE(X, Y, weight=[1.0, 2.0]), ValueError,
                           r"weight must have shape \(3,\).*got \(2,\)"),
    "nll weight shape": (lambda: NLL(X, Y, weight=np.ones((3, 1))), ValueError, r"weight must have shape \(3,\)"),
    "binary weight broadcast": (lambda: SBCE(X, T, weight=np.ones(4)), ValueError,
                                r"weight of shape \(4,\) does not broadcast to \(2, 3\)"),
    "pos_weight broadcast": (lambda: SBCE(X, T, pos_weight=np.ones(2)), ValueError,
                             r"pos_weight of shape \(2,\) does not broadcast"),
    "weight enlarges": (lambda: BCE(P, T, weight=np.ones((4, 2, 3))), ValueError, r"weight of shape \(4, 2, 3\) would enlarge"),
    "no classes": (lambda: SCE(np.zeros((2, 0)), Y), ValueError, r"logits has no classes"),
    # non-integer labels, bad dtypes
    "float nll labels": (lambda: NLL(X, np.array([0.0, 1.0])), TypeError,
                         r"labels must hold integer class indices, got dtype float64"),
    "bool focal labels": (lambda: FOCAL(X, np.array([True, False])), TypeError, r"labels must hold integer"),
    "string targets": (lambda: SCE(X, np.array(["a", "b"])), TypeError, r"targets must be integer class indices or float"),
    "complex logits": (lambda: SCE(X.astype(complex), Y), TypeError, r"logits must be a real floating array"),
    "string probs": (lambda: BCE(np.array(["a"]), np.array([1.0])), TypeError, r"probs must be a real floating array"),
    "one_hot float labels": (lambda: crossent.one_hot([0.0, 1.0], 2), TypeError, r"labels must hold integer"),
    "one_hot num_classes": (lambda: crossent.one_hot([0], 2.5), TypeError, r"num_classes must be an integer, got 2.5"),
    "one_hot zero classes": (lambda: crossent.one_hot([0], 0), ValueError, r"num_classes must be >= 1"),
    "one_hot int dtype": (lambda: crossent.one_hot([0], 2, dtype=np.int64), TypeError,
                          r"dtype must be a floating dtype, got int64"),
    # labels out of range: IndexError with position and value
    "label too large": (lambda: SCE(X, np.array([0, 3])), IndexError, r"targets\[1\] = 3 is outside \[0, 3\)"),
    "label negative": (lambda: NLL(X, np.array([-1, 0])), IndexError, r"labels\[0\] = -1 is outside \[0, 3\)"),
    "label position nd": (lambda: SCE(np.zeros((2, 2, 3)), np.array([[0, 1], [2, 7]])), IndexError,
                          r"targets\[1, 1\] = 7 is outside \[0, 3\)"),
    "label vs ignore_index": (lambda: FOCAL(X, np.array([-100, -1]), ignore_index=-100), IndexError,
                              r"labels\[1\] = -1 is outside \[0, 3\) and is not ignore_index=-100"),
    "huge unsigned label": (lambda: SCE(X, np.array([0, 2**63 + 5], dtype=np.uint64)), IndexError,
                            r"targets\[1\] = 9223372036854775813 is outside"),
    "one_hot out of range": (lambda: crossent.one_hot([0, 4], 3), IndexError, r"labels\[1\] = 4 is outside \[0, 3\)"),
    # probabilities / targets outside [0, 1]
    "probs above one": (lambda: BCE(np.array([0.5, 1.5]), np.array([1.0, 0.0])), ValueError,
                        r"probs\[1\] = .*1\.5.* is outside \[0, 1\]"),
    "probs negative": (lambda: BCE(np.array([[0.5, -0.0], [-1e-9, 0.2]]), np.zeros((2, 2))), ValueError,
                       r"probs\[1, 0\] = .*1e-09.* is outside \[0, 1\]"),
    "binary targets outside": (lambda: SBCE(X, T + 0.6), ValueError, r"targets\[0, 0\] = .*1\.1.* is outside \[0, 1\]"),
    "focal targets nan": (lambda: SFOCAL(X, np.where(np.eye(2, 3) > 0, np.nan, T)), ValueError,
                          r"targets\[0, 0\] = .*nan.* is outside \[0, 1\]"),
    "dense targets outside": (lambda: SCE(X, T * 3), ValueError, r"targets\[0, 0\] = .*1\.5.* is outside \[0, 1\]"),
    "entropy negative": (lambda: crossent.entropy([0.5, 0.7, -0.2]), ValueError, r"p\[2\] = .*-0\.2.* is outside \[0, 1\]"),
    "q outside": (lambda: crossent.kl_divergence([0.5, 0.5], [1.5, -0.5]), ValueError, r"q\[0\] = .*1\.5"),
    "smooth_labels targets": (lambda: crossent.smooth_labels([0.0, 2.0], label_smoothing=0.1), ValueError,
                              r"targets\[1\] = .*2\.0.* is outside \[0, 1\]"),
    # rows not summing to 1: the first offending row is named
    "row sum": (lambda: crossent.entropy([[0.5, 0.5], [0.5, 0.5], [0.2, 0.2], [0.1, 0.1]]), ValueError,
                r"p row \[2\] sums to 0\.4.*, not 1"),
    "row sum nd": (lambda: crossent.cross_entropy(np.full((2, 2, 2), 0.5), np.full((2, 2, 2), 0.25)), ValueError,
                   r"q row \[0, 0\] sums to 0\.5"),
    "row sum axis 0": (lambda: crossent.js_divergence(np.full((2, 3), 0.5), np.array([[0.5, 0.9, 0.5], [0.5, 0.0, 0.5]]),
                                                      axis=0), ValueError, r"q row \[1\] sums to 0\.9"),
    "normalize negative": (lambda: crossent.entropy([2.0, -1.0], normalize=True), ValueError,
                           r"p\[1\] = .*-1\.0.* must be finite and >= 0"),
    "normalize zero row": (lambda: crossent.entropy([[1.0, 1.0], [0.0, 0.0]], normalize=True), ValueError,
                           r"p row \[1\] sums to 0 and cannot be normalised"),
    "p q shapes": (lambda: crossent.kl_divergence([0.5, 0.5], [0.2, 0.3, 0.5]), ValueError,
                   r"q has shape \(3,\), but p has shape \(2,\)"),
    # options
    "unknown reduction": (lambda: SCE(X, Y, reduction="avg"), ValueError,
                          r"reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
    "reduction binary": (lambda: SBCE(X, T, reduction=None), ValueError, r"reduction must be one of"),
    "negative gamma": (lambda: FOCAL(X, Y, gamma=-0.5), ValueError, r"gamma must be >= 0.0, got -0.5"),
    "negative gamma sigmoid": (lambda: SFOCAL(X, T, gamma=-1), ValueError, r"gamma must be >= 0.0, got -1"),
    "smoothing above one": (lambda: SCE(X, Y, label_smoothing=1.5), ValueError, r"label_smoothing must be <= 1.0, got 1.5"),
    "smoothing negative": (lambda: SBCE(X, T, label_smoothing=-0.1), ValueError, r"label_smoothing must be >= 0.0, got -0.1"),
    "smoothing nan": (lambda: SCE(X, Y, label_smoothing=float("nan")), ValueError, r"label_smoothing must be finite"),
    "smoothing string": (lambda: SCE(X, Y, label_smoothing="0.1"), TypeError, r"label_smoothing must be a real number"),
    "smooth_labels eps": (lambda: crossent.smooth_labels([0.0, 1.0], label_smoothing=2), ValueError, r"label_smoothing must be <= 1"),
    "dense with ignore_index": (lambda: SCE(X, T, ignore_index=-100), ValueError,
                                r"ignore_index applies to class-index targets"),
    "ignore_index float": (lambda: SCE(X, Y, ignore_index=1.5), TypeError, r"ignore_index must be an integer or None, got 1.5"),
    "negative z_loss": (lambda: SCE(X, Y, z_loss=-1e-4), ValueError, r"z_loss must be >= 0.0"),
    "zero softcap": (lambda: SCE(X, Y, softcap=0.0), ValueError, r"softcap must be > 0.0, got 0.0"),
    "negative weight": (lambda: SCE(X, Y, weight=[1.0, -2.0, 1.0]), ValueError, r"weight\[1\] = .*-2\.0.* is negative"),
    "nan weight": (lambda: NLL(X, Y, weight=[1.0, np.nan, 1.0]), ValueError, r"weight\[1\] = .*nan.* is not finite"),
    "negative pos_weight": (lambda: SBCE(X, T, pos_weight=[1.0, 1.0, -1.0]), ValueError,
                            r"pos_weight\[2\] = .*-1\.0.* is negative"),
    "scalar alpha range": (lambda: FOCAL(X, Y, alpha=1.5), ValueError, r"alpha must be <= 1.0, got 1.5"),
    "per-class alpha": (lambda: FOCAL(X, Y, alpha=[0.5, -0.5, 1.0]), ValueError, r"alpha\[1\] = .*-0\.5.* is negative"),
    "per-class alpha shape": (lambda: FOCAL(X, Y, alpha=[0.5, 0.5]), ValueError, r"alpha must have shape \(3,\)"),
    "sigmoid alpha range": (lambda: SFOCAL(X, T, alpha=-0.25), ValueError, r"alpha must be >= 0.0, got -0.25"),
    # bad base
    "base zero": (lambda: crossent.entropy([0.5, 0.5], base=0), ValueError, r"base must be > 0.0, got 0"),
    "base one": (lambda: crossent.kl_divergence([0.5, 0.5], [0.5, 0.5], base=1), ValueError, r"base must differ from 1"),
    "base negative": (lambda: crossent.js_divergence([0.5, 0.5], [0.5, 0.5], base=-2), ValueError, r"base must be > 0.0, got -2"),
    "base inf": (lambda: crossent.cross_entropy([0.5, 0.5], [0.5, 0.5], base=np.inf), ValueError, r"base must be finite"),
    "base string": (lambda: crossent.entropy([0.5, 0.5], base="2"), TypeError, r"base must be a real number, got '2'"),
    # bad axis
    "axis out of range": (lambda: SCE(X, Y, axis=2), ValueError, r"axis=2 is out of range for an array with 2 dimensions"),
    "axis negative out of range": (lambda: crossent.entropy(P, axis=-3), ValueError, r"axis=-3 is out of range"),
    "axis float": (lambda: NLL(X, Y, axis=1.0), TypeError, r"axis must be an integer, got 1.0"),
    "axis bool": (lambda: crossent.logsumexp(X, axis=True), TypeError, r"axis must be an integer, got True"),
    "axis scalar": (lambda: crossent.softmax(3.0), ValueError, r"axis=-1 needs an array with at least one dimension"),
    "smooth_labels axis": (lambda: crossent.smooth_labels(T, label_smoothing=0.1, axis=5), ValueError, r"axis=5 is out of range"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_clear_error(backend, name):
    call, error, pattern = CASES[name]
    with pytest.raises(error, match=pattern):
        call()


def test_errors_leave_state_unchanged(backend):
    """A failed call does not modify its inputs and the next call works."""
    x = np.array([[1.0, 2.0, 3.0]])
    before = x.copy()
    with pytest.raises(IndexError):
        crossent.softmax_cross_entropy(x, np.array([9]))
    np.testing.assert_array_equal(x, before)
    assert np.isfinite(crossent.softmax_cross_entropy(x, np.array([2])))


# ----------------------------------------------------------------------------- ragged nested lists (issue 9)
@pytest.mark.parametrize("call, name", [
    (lambda: crossent.softmax_cross_entropy([[1.0, 2.0], [3.0]], [0, 1]), "logits"),
    (lambda: crossent.softmax_cross_entropy([[1.0, 2.0], [3.0, 4.0]], [[0], 1]), "targets"),
    (lambda: crossent.nll_loss([[-1.0, -2.0], [-3.0, -4.0]], [[0, 1], [1]]), "labels"),
    (lambda: crossent.sigmoid_binary_cross_entropy([1.0, [2.0]], [0.0, 1.0]), "logits"),
    (lambda: crossent.binary_cross_entropy([0.5, 0.5], [[1.0], 0.0]), "targets"),
    (lambda: crossent.entropy([[0.5, 0.5], [1.0]]), "p"),
    (lambda: crossent.softmax([[1.0], [2.0, 3.0]]), "x"),
])
def test_ragged_input_names_the_argument(backend, call, name):
    with pytest.raises(ValueError, match=rf"^{name} is ragged"):
        call()
