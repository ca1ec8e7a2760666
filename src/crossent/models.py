r"""Linear classifiers trained with the cross-entropy family: softmax and logistic regression.

- :class:`SoftmaxRegression`: ``C`` classes, :math:`p = \operatorname{softmax}(XW + b)`.
- :class:`LogisticRegression`: two classes, :math:`p = \sigma(Xw + b)`.

Both have the scikit-learn estimator shape (``fit``, ``predict_proba``, ``predict``, ``score``,
``get_params``, ``set_params``; hyperparameters keyword-only) and minimise

.. math:: J(W, b) = \frac{1}{N}\sum_{n=1}^{N} \ell_n(W, b) + \frac{\alpha}{2}\,\lVert W\rVert_F^2

(the intercept is not penalised). ``alpha`` is scikit-learn's ``SGDClassifier`` scaling; it is
the ``C`` of :class:`sklearn.linear_model.LogisticRegression` through
:math:`\alpha = 1/(C\,N)`, ``N`` the number of training rows. The per-row loss
:math:`\ell_n` is cross-entropy, squared error on the probabilities, or focal loss; the
cross-entropy and focal gradients come from crossent's own fused losses
(:func:`crossent.value_and_grad`).

A fitted model is saved as JSON by :meth:`SoftmaxRegression.save` (with, optionally, the
feature names, the target's name and the standardisation of the features) and read back by
:func:`load`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import _backend, _checks
from .functional import log_sigmoid, one_hot, softmax
from .losses import (
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
    value_and_grad,
)

__all__ = ["SoftmaxRegression", "LogisticRegression", "NotFittedError", "load"]

_LOSSES = ("cross_entropy", "mse", "focal")
_SOLVERS = ("gd", "lbfgs")
_SCHEDULES = ("constant", "inverse_sqrt", "cosine")

# The model file (JSON). Version 1 is what `crossent train --save` wrote before the models saved
# themselves: {"format": "crossent.SoftmaxRegression/1", "target", "loss", "params", "classes",
# "feature_names", "mean", "std", "coef", "intercept"}; version 2 adds "version" and "model"
# (the class name) and allows the feature names, target and standardisation to be null.
_FORMAT = "crossent.model"
_FORMAT_VERSION = 2
_FORMAT_V1 = "crossent.SoftmaxRegression/1"
# What save records beside the fitted parameters; fit resets them to None.
_METADATA = ("feature_names_in_", "target_name_", "feature_mean_", "feature_std_")

# Bytes of X per block of rows of the objective's pass (see _LinearClassifier._objective): a
# block read by the product X_B W^T is read again by G_B^T X_B, from the last-level cache when
# every thread's block fits there (2 x 4 MiB of a 32 MiB L3), and a block is large enough that
# the calls per block (about 0.1 ms of Python and kernel overhead) cost little.
_BLOCK_BYTES = 4 << 20

_softmax_ce = value_and_grad(softmax_cross_entropy)
_softmax_focal = value_and_grad(softmax_focal_loss)
_sigmoid_ce = value_and_grad(sigmoid_binary_cross_entropy)
_sigmoid_focal = value_and_grad(sigmoid_focal_loss)


class _RowThreads(ThreadPoolExecutor):
    """``count`` threads that share the objective's blocks of rows (see :func:`_row_threads`)."""

    def __init__(self, count):
        super().__init__(count, initializer=_one_kernel_thread)
        self.count = count


def _one_kernel_thread():
    ext = _backend.kernels()
    if ext is not None:
        ext.set_num_threads(1)  # OpenMP keeps the team size per calling thread: this one's


@contextlib.contextmanager
def _row_threads():
    """While fitting: :func:`crossent.get_num_threads` threads, each computing the objective on
    its own blocks of rows with single-threaded BLAS and kernels (one join per evaluation),
    instead of threaded BLAS and kernels inside every block (two joins per block per call, and
    BLAS's threaded form of the skinny ``(K, B) x (B, D)`` product runs slower than one thread).
    The BLAS limit holds for the whole process while the fit runs (threadpoolctl). Yields a
    :class:`_RowThreads`, or None for one thread or without threadpoolctl (BLAS then keeps its
    own threads)."""
    count = _backend.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        count = 1
    if count == 1:
        yield None
        return
    with threadpool_limits(1, user_api="blas"), _RowThreads(count) as pool:
        yield pool


class NotFittedError(ValueError, AttributeError):
    """A model was used before :meth:`fit` (a ValueError and an AttributeError, as in scikit-learn)."""


class _LinearClassifier:
    """Shared machinery: validation, the gradient-descent and L-BFGS loops, prediction.

    Subclasses define ``_n_outputs(n_classes)`` (columns of the logits), ``_check_classes``,
    ``_loss_sum(logits, y, class_weight, out=None)`` (the summed per-row loss and its gradient
    with respect to the float64 logits, written into ``out`` where the loss can), ``_proba(logits)``
    and ``_predict_index(logits)``.
    """

    def __init__(self, *, loss="cross_entropy", alpha=0.0, label_smoothing=0.0, gamma=2.0,
                 class_weight=None, solver="gd", learning_rate=0.5, schedule="constant",
                 max_iter=100, batch_size=None, tol=1e-6, fit_intercept=True,
                 random_state=None):
        self.loss = loss
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.gamma = gamma
        self.class_weight = class_weight
        self.solver = solver
        self.learning_rate = learning_rate
        self.schedule = schedule
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.tol = tol
        self.fit_intercept = fit_intercept
        self.random_state = random_state

    # ------------------------------------------------------------------ estimator protocol
    @classmethod
    def _param_names(cls):
        signature = inspect.signature(_LinearClassifier.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep=True):
        """The hyperparameters as a dict (``deep`` is accepted for scikit-learn compatibility)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set hyperparameters by name; return the model. Unknown names raise ValueError."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters are {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = _LinearClassifier().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not _same(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------------------ validation
    def _validated_options(self):
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {', '.join(map(repr, _LOSSES))}; got {self.loss!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(map(repr, _SOLVERS))}; got {self.solver!r}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(map(repr, _SCHEDULES))}; "
                             f"got {self.schedule!r}")
        _checks.check_scalar(self.alpha, "alpha", low=0.0)
        eps = _checks.check_scalar(self.label_smoothing, "label_smoothing", low=0.0, high=1.0)
        if eps > 0 and self.loss == "focal":
            raise ValueError("label_smoothing is not defined for loss='focal'; use 0.0")
        _checks.check_scalar(self.gamma, "gamma", low=0.0)
        _checks.check_scalar(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) \
                or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.batch_size is not None and (
                isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer))
                or self.batch_size < 1):
            raise ValueError(f"batch_size must be None (full batch) or a positive integer, "
                             f"got {self.batch_size!r}")
        if self.tol is not None:
            _checks.check_scalar(self.tol, "tol", low=0.0)

    @staticmethod
    def _check_X(X, n_features=None):
        x = _checks.check_floating(X, "X")  # float32 stays float32; other dtypes become float64
        if x.ndim != 2:
            raise ValueError(f"X must have shape (n_samples, n_features), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("X has no rows")
        _checks.check_finite_values(x, "X")
        if n_features is not None and x.shape[1] != n_features:
            raise ValueError(f"X has {x.shape[1]} features, but the model was fitted with {n_features}")
        return x

    def _class_weights(self, classes, y):
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, str):
            if cw != "balanced":
                raise ValueError(f"class_weight must be None, 'balanced' or a dict; got {cw!r}")
            counts = np.bincount(y, minlength=len(classes))
            return len(y) / (len(classes) * counts.astype(np.float64))
        if not isinstance(cw, dict):
            raise TypeError(f"class_weight must be None, 'balanced' or a dict; got {type(cw).__name__}")
        known = set(classes.tolist())
        for key in cw:
            if key not in known:
                raise ValueError(f"class_weight names the class {key!r}, which is not in y "
                                 f"(classes: {classes.tolist()})")
        w = np.array([float(cw.get(c, 1.0)) for c in classes.tolist()])
        return _checks.check_class_weight(w, len(classes), "class_weight")

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    # ------------------------------------------------------------------ training
    def _objective(self, W, b, X, y, cw, pool=None):
        r""":math:`J` at ``(W, b)``, its gradients, and the number of rows predicted right.

        ``W`` has the layout of ``coef_``, ``(K, D)``. The rows go through in blocks of about
        ``_BLOCK_BYTES`` of ``X``, each read twice while it is still in cache: the logits
        :math:`Z_B = X_B W^\top + b` (a float32 product for float32 ``X``, widened to float64),
        the summed loss and its gradient :math:`G_B = \partial \sum_{n\in B}\ell_n/\partial Z_B`
        in float64 (written over :math:`Z_B`), then :math:`\partial J/\partial W \mathrel{+}=
        G_B^\top X_B / N` and :math:`\partial J/\partial b \mathrel{+}= \mathbf{1}^\top G_B / N`
        (chain rule through :math:`Z = XW^\top + b`), summed over blocks in float64. No
        ``N x K`` array is allocated. ``pool`` (from :func:`_row_threads`), when given, runs the
        blocks on its threads, thread ``t`` taking blocks ``t, t + T, ...``; their sums are
        added in thread order.
        """
        n, d = X.shape
        k = W.shape[0]
        rows = max(1, min(n, _BLOCK_BYTES // (max(d, 1) * X.itemsize)))
        starts = range(0, n, rows)
        Wx = np.ascontiguousarray(W.T, dtype=X.dtype)  # (D, K): the faster product layout
        threads = 1 if pool is None else min(pool.count, len(starts))

        def blocks(first):
            logits = np.empty((rows, k))
            narrow = None if X.dtype == np.float64 else np.empty((rows, k), dtype=X.dtype)
            ones = np.ones(rows)
            total, correct = 0.0, 0
            gW, gb = np.zeros_like(W), np.zeros_like(b)
            for start in starts[first::threads]:
                Xb, yb = X[start:start + rows], y[start:start + rows]
                m = Xb.shape[0]
                z = logits[:m]
                if narrow is None:
                    np.matmul(Xb, Wx, out=z)
                    z += b
                else:
                    np.matmul(Xb, Wx, out=narrow[:m])
                    np.add(narrow[:m], b, out=z)
                correct += int(np.count_nonzero(self._predict_index(z) == yb))
                value, g = self._loss_sum(z, yb, cw, out=z)
                total += value
                if self.fit_intercept:
                    gb += ones[:m] @ g  # column sums by BLAS (numpy's axis-0 sum is slower here)
                if narrow is not None:
                    np.copyto(narrow[:m], g)
                    g = narrow[:m]
                # G_B^T X_B, not (X_B^T G_B)^T: single-threaded BLAS runs this layout fastest.
                gW += g.T @ Xb
            return total, correct, gW, gb

        parts = [blocks(0)] if threads == 1 else list(pool.map(blocks, range(threads)))
        total = math.fsum(part[0] for part in parts)
        correct = sum(part[1] for part in parts)
        gW, gb = parts[0][2], parts[0][3]
        for part in parts[1:]:
            gW += part[2]
            gb += part[3]
        alpha = float(self.alpha)
        value = total / n + 0.5 * alpha * float(np.vdot(W, W))
        gW /= n
        gW += alpha * W
        gb /= n
        return value, gW, gb, correct

    def _step_size(self, epoch):
        lr = float(self.learning_rate)
        if self.schedule == "inverse_sqrt":
            return lr / math.sqrt(1.0 + epoch)
        if self.schedule == "cosine":
            return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.max_iter))
        return lr

    def _record(self, value, correct, n):
        self.loss_curve_.append(value)
        self.accuracy_curve_.append(correct / n)

    def fit(self, X, y, *, callback=None):
        """Fit the model to ``X`` (shape ``(N, D)``) and labels ``y`` (shape ``(N,)``).

        Parameters
        ----------
        X : array_like
            Features, finite numbers. float32 features are trained on in float32 (the matrix
            products in float32 BLAS, the loss and every sum in float64); other dtypes in float64.
        y : array_like
            Class labels of any sortable type (ints, strings); ``classes_`` keeps them sorted.
        callback : callable, optional
            Called as ``callback(epoch, model)`` after each epoch (gradient descent) or iteration
            (L-BFGS), ``epoch`` counting from 1; ``loss_curve_`` and ``accuracy_curve_`` already
            hold that epoch's entry and ``coef_``/``intercept_`` its parameters. It runs while
            BLAS is limited to one thread (the fit's own threads share the rows instead).

        Returns
        -------
        self
        """
        self._validated_options()
        X = self._check_X(X)
        labels = np.asarray(y)
        if labels.ndim != 1 or labels.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},) (one label per row of X), "
                             f"got {labels.shape}")
        classes, yi = np.unique(labels, return_inverse=True)
        self._check_classes(classes)
        cw = self._class_weights(classes, yi)
        k = self._n_outputs(len(classes))
        W = np.zeros((k, X.shape[1]))
        b = np.zeros(k)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        for name in _METADATA:
            setattr(self, name, None)
        self.loss_curve_ = []
        self.accuracy_curve_ = []
        with _row_threads() as pool:
            if self.solver == "lbfgs":
                W, b = self._fit_lbfgs(W, b, X, yi, cw, callback, pool)
            else:
                W, b = self._fit_gd(W, b, X, yi, cw, callback, pool)
        self._publish(W, b)
        return self

    def _publish(self, W, b):
        self.coef_, self.intercept_ = W.copy(), b.copy()

    def _fit_gd(self, W, b, X, y, cw, callback, pool):
        n = X.shape[0]
        rng = np.random.default_rng(self.random_state)
        batch = n if self.batch_size is None else min(int(self.batch_size), n)
        previous, gW, gb, _ = self._objective(W, b, X, y, cw, pool)
        self.n_iter_ = 0
        for epoch in range(self.max_iter):
            lr = self._step_size(epoch)
            if batch < n:
                order = rng.permutation(n)
                for rows in (order[start:start + batch] for start in range(0, n, batch)):
                    _, gW, gb, _ = self._objective(W, b, X[rows], y[rows], cw, pool)
                    W -= lr * gW
                    b -= lr * gb
            else:
                W -= lr * gW
                b -= lr * gb
            # The whole set's objective at the new parameters; full batch, also the next gradient.
            value, gW, gb, correct = self._objective(W, b, X, y, cw, pool)
            self._record(value, correct, n)
            self.n_iter_ = epoch + 1
            if callback is not None:
                self._publish(W, b)
                callback(epoch + 1, self)
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"the training loss became {value} at epoch {epoch + 1}: "
                    f"learning_rate={self.learning_rate} is too large")
            if self.tol is not None and abs(previous - value) < self.tol:
                break
            previous = value
        return W, b

    def _fit_lbfgs(self, W, b, X, y, cw, callback, pool):
        try:
            from scipy.optimize import minimize
        except ImportError as exc:
            raise ImportError("solver='lbfgs' needs SciPy: pip install scipy "
                              "(or use solver='gd')") from exc
        k, d = W.shape
        n = X.shape[0]
        centre, scale = self._feature_spread(X)
        tol = 1e-10 if self.tol is None else float(self.tol)
        last = {}  # the latest evaluation: L-BFGS-B reports the point it evaluated last

        # L-BFGS works on (V, c) with W = V / scale and b = c - W centre: the same objective
        # written for features centred and scaled to unit spread (J(W, b) is unchanged, the
        # intercept being unpenalised), so unequal feature scales and means far from zero do not
        # slow it; the optimum is the same point.
        def to_model(theta):
            Wt = theta[:k * d].reshape(k, d) / scale
            return Wt, theta[k * d:] - Wt @ centre

        def fun(theta):
            Wt, bt = to_model(theta)
            value, gW, gb, correct = self._objective(Wt, bt, X, y, cw, pool)
            largest = max(float(np.max(np.abs(gW))), float(np.max(np.abs(gb))))
            last.update(theta=theta.copy(), value=value, correct=correct, largest=largest)
            # Chain rule through W = V / scale and b = c - W centre:
            # dJ/dV = (dJ/dW - dJ/db centre^T) / scale, dJ/dc = dJ/db.
            return value, np.concatenate([((gW - np.outer(gb, centre)) / scale).ravel(), gb])

        def on_iteration(theta):
            if not np.array_equal(theta, last["theta"]):
                fun(theta)
            self._record(last["value"], last["correct"], n)
            if callback is not None:
                self._publish(*to_model(theta))
                callback(len(self.loss_curve_), self)
            if last["largest"] <= tol:  # the gradient in the model's own (W, b), as documented
                raise StopIteration

        # scikit-learn's other settings: relative-decrease tolerance 64 eps, up to 50 line-search
        # steps. The gradient test is ours above (gtol=0 leaves it to the callback).
        result = minimize(fun, np.concatenate([W.ravel(), b]), jac=True, method="L-BFGS-B",
                          callback=on_iteration,
                          options={"maxiter": int(self.max_iter), "gtol": 0.0, "maxls": 50,
                                   "ftol": 64 * np.finfo(float).eps})
        self.n_iter_ = len(self.loss_curve_)
        return to_model(result.x)

    def _feature_spread(self, X):
        """Per-feature centre (the mean; 0 without an intercept) and scale (from the root-mean-square
        distance to the centre; 1 where that is 0, not finite, or lost in the centre's rounding),
        in float64, by blocks of rows. They only choose L-BFGS's coordinates."""
        n, d = X.shape
        rows = max(1, _BLOCK_BYTES // (max(d, 1) * 8))
        centre = np.zeros(d)
        if self.fit_intercept:
            for start in range(0, n, rows):
                centre += X[start:start + rows].sum(axis=0, dtype=np.float64)
            centre /= n
        squares = np.zeros(d)
        for start in range(0, n, rows):
            r = X[start:start + rows] - centre
            squares += np.einsum("ij,ij->j", r, r)
        with np.errstate(over="ignore", invalid="ignore"):
            spread = np.sqrt(squares / n)
        usable = np.isfinite(spread) & (spread > 1e-8 * np.abs(centre)) & (spread > 0)
        # The curvature of J along a weight of feature j is about spread_j^2 (data) + alpha
        # (penalty): scaling by sqrt(spread^2 + alpha) evens out both, so nearly constant
        # features do not turn the penalty into a steep direction.
        return centre, np.where(usable, np.sqrt(spread * spread + float(self.alpha)), 1.0)

    # ------------------------------------------------------------------ prediction
    def decision_function(self, X):
        """The logits ``X @ coef_.T + intercept_``: shape ``(N, C)`` (softmax) or ``(N,)`` (binary)."""
        self._check_fitted()
        X = self._check_X(X, self.n_features_in_)
        z = X @ self.coef_.T + self.intercept_
        return z[:, 0] if z.shape[1] == 1 else z

    def predict_proba(self, X):
        """Class probabilities, shape ``(N, n_classes)``, columns in the order of ``classes_``."""
        self._check_fitted()
        X = self._check_X(X, self.n_features_in_)
        return self._proba(X @ self.coef_.T + self.intercept_)

    def predict(self, X):
        """The most probable class of each row (ties go to the first class in ``classes_``)."""
        self._check_fitted()
        X = self._check_X(X, self.n_features_in_)
        return self.classes_[self._predict_index(X @ self.coef_.T + self.intercept_)]

    def score(self, X, y):
        """Accuracy: the fraction of rows whose predicted class equals ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ------------------------------------------------------------------ saving
    def save(self, path, *, feature_names=None, target_name=None, mean=None, std=None):
        """Write the fitted model to ``path`` as JSON, read back by :func:`load`.

        The file holds the hyperparameters, the classes, ``coef_`` and ``intercept_`` (floats
        written exactly: a loaded model predicts bit for bit the same), and optionally the names
        of the features, the name of the target column and the standardisation
        ``(X_raw - mean) / std`` that produced the features the model was fitted on. Each of
        these defaults to what the model already records (``feature_names_in_``,
        ``target_name_``, ``feature_mean_``, ``feature_std_``, set by :func:`load`).

        Parameters
        ----------
        path : str or path-like
            The file to write (its folder must exist).
        feature_names : sequence of str, optional
            One name per feature, length ``n_features_in_``.
        target_name : str, optional
            The name of the column holding the classes.
        mean, std : array_like, optional
            Both or neither: the per-feature mean and (positive) scale, shape ``(n_features_in_,)``.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from crossent.models import LogisticRegression, load
        >>> model = LogisticRegression(solver="lbfgs").fit([[-1.0], [0.5], [1.0]], ["no", "no", "yes"])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.json")
        >>> model.save(path, feature_names=["dose"], target_name="outcome")
        >>> again = load(path)
        >>> again.feature_names_in_.tolist(), again.target_name_
        (['dose'], 'outcome')
        >>> bool((again.predict_proba([[0.2]]) == model.predict_proba([[0.2]])).all())
        True
        """
        self._check_fitted()
        d = self.n_features_in_
        names = feature_names if feature_names is not None else getattr(self, "feature_names_in_", None)
        target = target_name if target_name is not None else getattr(self, "target_name_", None)
        mean = mean if mean is not None else getattr(self, "feature_mean_", None)
        std = std if std is not None else getattr(self, "feature_std_", None)
        document = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "model": type(self).__name__,
            "params": _encode_params(self.get_params()),
            "classes": _encode_classes(self.classes_),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "feature_names": None if names is None else _check_feature_names(names, d, "feature_names"),
            "target": None if target is None else _check_target_name(target, "target_name"),
            "mean": None,
            "std": None,
        }
        if (mean is None) != (std is None):
            raise ValueError("mean and std go together: give both (the standardisation "
                             "(X - mean) / std) or neither")
        if mean is not None:
            document["mean"], document["std"] = (
                _check_standardisation(mean, std, d, ("mean", "std")))
        Path(path).write_text(json.dumps(document, indent=1, allow_nan=False) + "\n",
                              encoding="utf-8")


class SoftmaxRegression(_LinearClassifier):
    r"""Multinomial (softmax) regression trained by gradient descent or L-BFGS.

    :math:`p = \operatorname{softmax}(XW^\top + b)` over ``C`` classes; the model minimises
    :math:`\frac1N\sum_n \ell_n + \frac{\alpha}{2}\lVert W\rVert^2` with, for the true class
    :math:`y_n` and class weights :math:`w`:

    - ``"cross_entropy"``: :math:`\ell_n = -w_{y_n}\log p_{n,y_n}` (with label smoothing,
      :func:`crossent.softmax_cross_entropy`'s definition); gradient :math:`p - t`.
    - ``"mse"``: :math:`\ell_n = \frac{w_{y_n}}{2}\sum_c (p_{nc} - t_{nc})^2` on the
      probabilities, ``t`` the (smoothed) one-hot target; its gradient is damped by the
      softmax's slope, which is why it learns slower.
    - ``"focal"``: :math:`\ell_n = -w_{y_n}(1-p_{n,y_n})^{\gamma}\log p_{n,y_n}`.

    Parameters
    ----------
    loss : {"cross_entropy", "mse", "focal"}, default "cross_entropy"
    alpha : float, default 0.0
        L2 strength on the weights (not the intercept); scikit-learn's
        ``LogisticRegression(C=...)`` is ``alpha = 1 / (C * n_samples)``.
    label_smoothing : float, default 0.0
        :math:`\varepsilon` in [0, 1]: targets :math:`(1-\varepsilon)\,\mathrm{onehot} +
        \varepsilon/C` (cross-entropy and squared error; not focal).
    gamma : float, default 2.0
        Focusing parameter of the focal loss.
    class_weight : None, "balanced" or dict, default None
        Weight of each class's rows; "balanced" is ``N / (C * count(c))`` as in scikit-learn.
    solver : {"gd", "lbfgs"}, default "gd"
        Gradient descent (full batch, or mini-batches of ``batch_size`` shuffled each epoch), or
        SciPy's L-BFGS-B for the exact optimum (run on centred, unit-spread coordinates of the
        same objective, so unstandardised features do not slow it; scikit-learn's line-search
        and relative-decrease settings).
    learning_rate : float, default 0.5
        Step size of gradient descent (on standardised features 0.1 to 1 is typical).
    schedule : {"constant", "inverse_sqrt", "cosine"}, default "constant"
        Step size at epoch ``k`` (from 0): ``lr``, ``lr / sqrt(1 + k)``, or
        ``lr * (1 + cos(pi k / max_iter)) / 2``.
    max_iter : int, default 100
        Epochs of gradient descent, or iterations of L-BFGS.
    batch_size : int, optional
        Rows per mini-batch; None (default) is full-batch gradient descent.
    tol : float or None, default 1e-6
        Gradient descent stops when an epoch changes the objective by less than ``tol``;
        L-BFGS stops when the largest gradient entry is below it (None: run ``max_iter``
        epochs of gradient descent; 1e-10 for L-BFGS).
    fit_intercept : bool, default True
    random_state : int, optional
        Seed of the mini-batch shuffling (weights start at zero, so a seed fixes everything).

    Attributes
    ----------
    classes_ : ndarray, shape (C,)
    coef_ : ndarray, shape (C, D)
    intercept_ : ndarray, shape (C,)
    loss_curve_ : list of float
        The objective on the whole training set after each epoch (or L-BFGS iteration).
    accuracy_curve_ : list of float
        Training accuracy after each epoch.
    n_iter_ : int
    feature_names_in_, target_name_, feature_mean_, feature_std_
        What :meth:`save` records beside the model (set by :func:`load`; None after ``fit``).

    Notes
    -----
    float32 ``X`` is trained on in float32: the products :math:`XW^\top` and :math:`G^\top X`
    run in float32 BLAS, by blocks of rows, while the loss, its gradient and every sum over
    blocks are float64 (inside one product, BLAS sums the block's rows, a few thousand, in
    float32). Rows go through in blocks of about 4 MiB of ``X``, each read twice while in
    cache, and no ``N x C`` array is allocated. :func:`crossent.get_num_threads` threads share
    the blocks, each with single-threaded BLAS (limited by threadpoolctl, when installed, while
    ``fit`` runs) and kernels; the result does not depend on the thread count beyond rounding.

    References
    ----------
    C. M. Bishop, *Pattern Recognition and Machine Learning*, 2006, section 4.3.4;
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.models import SoftmaxRegression
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> model = SoftmaxRegression(learning_rate=1.0, max_iter=50).fit(X, ["a", "a", "b", "b"])
    >>> model.predict([[-1.5], [1.5]]).tolist()
    ['a', 'b']
    >>> bool(model.loss_curve_[-1] < model.loss_curve_[0])
    True
    """

    def _n_outputs(self, n_classes):
        return n_classes

    def _check_classes(self, classes):
        if len(classes) < 2:
            raise ValueError(f"y has only one class ({classes[0]!r}); a classifier needs at least two")

    def _targets(self, y, n_classes):
        t = one_hot(y, n_classes)
        eps = float(self.label_smoothing)
        return t if eps == 0 else (1.0 - eps) * t + eps / n_classes

    def _loss_sum(self, logits, y, cw, out=None):
        n_classes = logits.shape[1]
        if self.loss == "cross_entropy":
            value, g = _softmax_ce(logits, y, weight=cw, label_smoothing=float(self.label_smoothing),
                                   reduction="sum", out=out)
            return float(value), g
        if self.loss == "focal":
            value, g = _softmax_focal(logits, y, alpha=cw, gamma=float(self.gamma), reduction="sum",
                                      out=out)
            return float(value), g
        # Squared error on the probabilities, l = 1/2 sum_c (p_c - t_c)^2. With r = p - t and the
        # softmax Jacobian dp_c/dz_k = p_c (delta_ck - p_k):
        #   dl/dz_k = sum_c r_c p_c (delta_ck - p_k) = p_k r_k - p_k sum_c p_c r_c,
        # i.e. g = p*(p-t) - p*sum(p*(p-t)).
        p = softmax(logits)
        r = p - self._targets(y, n_classes)
        row = 1.0 if cw is None else cw[y]
        losses = 0.5 * np.sum(r * r, axis=1) * row
        pr = p * r
        g = (pr - p * pr.sum(axis=1, keepdims=True)) * (row if cw is None else row[:, None])
        return float(np.sum(losses)), g

    def _proba(self, logits):
        return softmax(logits)

    def _predict_index(self, logits):
        return np.argmax(logits, axis=1)


class LogisticRegression(_LinearClassifier):
    r"""Binary logistic regression trained by gradient descent or L-BFGS.

    :math:`p(\text{classes\_}[1]) = \sigma(Xw + b)`; the model minimises
    :math:`\frac1N\sum_n \ell_n + \frac{\alpha}{2}\lVert w\rVert^2` with ``t`` = 1 for the
    second class (smoothed to :math:`t(1-\varepsilon)+\varepsilon/2`) and class weights
    :math:`w_{y_n}`:

    - ``"cross_entropy"``: :math:`-w_{y_n}[t\log\sigma(z) + (1-t)\log\sigma(-z)]`
      (:func:`crossent.sigmoid_binary_cross_entropy`); gradient :math:`\sigma(z) - t`.
    - ``"mse"``: :math:`\frac{w_{y_n}}{2}(\sigma(z) - t)^2`; gradient
      :math:`(\sigma(z)-t)\,\sigma(z)\,\sigma(-z)`.
    - ``"focal"``: :math:`w_{y_n}(1-p_t)^\gamma\,\mathrm{BCE}` (:func:`crossent.sigmoid_focal_loss`
      without its alpha balancing; use ``class_weight`` for that).

    The parameters are those of :class:`SoftmaxRegression`; ``coef_`` has shape ``(1, D)`` and
    ``intercept_`` shape ``(1,)``, as in scikit-learn. ``alpha = 1 / (C * n_samples)`` matches
    ``sklearn.linear_model.LogisticRegression(C=C)``.

    Examples
    --------
    >>> import numpy as np
    >>> from crossent.models import LogisticRegression
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> model = LogisticRegression(solver="lbfgs", alpha=0.1).fit(X, [0, 0, 1, 1])
    >>> model.predict_proba([[0.0]]).round(6).tolist()  # symmetric data: 1/2 at 0
    [[0.5, 0.5]]
    """

    def _n_outputs(self, n_classes):
        return 1

    def _check_classes(self, classes):
        if len(classes) != 2:
            raise ValueError(f"LogisticRegression needs exactly two classes in y, got {len(classes)} "
                             f"({classes.tolist()[:5]}); use SoftmaxRegression for more")

    def _loss_sum(self, logits, y, cw, out=None):
        z = logits[:, 0]
        t = y.astype(np.float64)
        weight = None if cw is None else cw[y]
        eps = float(self.label_smoothing)
        if self.loss == "cross_entropy":
            value, g = _sigmoid_ce(z, t, weight=weight, label_smoothing=eps, reduction="sum",
                                   out=None if out is None else out[:, 0])
        elif self.loss == "focal":
            # The summed loss's gradient is the per-row gradient, so row weights scale it.
            value, g = _sigmoid_focal(z, t, alpha=None, gamma=float(self.gamma), reduction="sum")
            if weight is not None:
                rows = sigmoid_focal_loss(z, t, alpha=None, gamma=float(self.gamma), reduction="none")
                value, g = float(np.sum(weight * rows)), g * weight
        else:
            t = t * (1.0 - eps) + eps / 2
            # sigma(z) and sigma(-z) = 1 - sigma(z) from log-sigmoids (no cancellation near 1).
            p, q = np.exp(log_sigmoid(z)), np.exp(log_sigmoid(-z))
            r = p - t
            row = 1.0 if weight is None else weight
            value = float(np.sum(0.5 * r * r * row))
            g = r * p * q * row
        return float(value), np.asarray(g, dtype=np.float64)[:, None]

    def _proba(self, logits):
        z = logits[:, 0]
        # 1 - sigma(z) = sigma(-z): both columns from log-sigmoids.
        return np.stack([np.exp(log_sigmoid(-z)), np.exp(log_sigmoid(z))], axis=1)

    def _predict_index(self, logits):
        return (logits[:, 0] > 0).astype(np.intp)


_MODELS = {"SoftmaxRegression": SoftmaxRegression, "LogisticRegression": LogisticRegression}


def load(path):
    """Read a model written by :meth:`SoftmaxRegression.save` (or ``crossent train --save``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    SoftmaxRegression or LogisticRegression
        Fitted, with ``classes_``, ``coef_``, ``intercept_`` and ``n_features_in_``, and what the
        file records beside them: ``feature_names_in_`` (array of str), ``target_name_``,
        ``feature_mean_`` and ``feature_std_`` (each None when the file has none). The model
        predicts on the standardised features ``(X_raw - feature_mean_) / feature_std_``, as it
        was fitted.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a crossent model (not JSON, another format, a newer format version)
        or is damaged (missing entries, shapes that disagree, non-finite numbers); the message
        starts with the file's name.

    Examples
    --------
    See :meth:`SoftmaxRegression.save`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a JSON model file (not UTF-8 text)") from None
    except OSError as exc:
        raise OSError(f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a JSON model file ({exc})") from None
    version = _format_version(document, path)
    try:
        return _model_from_document(document, version)
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"{path}: damaged model file: {detail}") from None


def _format_version(document, path):
    """The format version of a parsed model file (1 or 2), or a ValueError naming the file."""
    if isinstance(document, dict) and document.get("format") == _FORMAT_V1:
        return 1
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise ValueError(f"{path}: not a model saved by 'crossent train --save' or crossent.models "
                         f"(expected format {_FORMAT!r}, found {found!r})")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 2:
        raise ValueError(f"{path}: damaged model file: version must be an integer >= 2, got {version!r}")
    if version > _FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer crossent (model format version {version}); "
                         f"this crossent reads versions 1 to {_FORMAT_VERSION}")
    return version


def _model_from_document(document, version):
    name = "SoftmaxRegression" if version == 1 else document["model"]
    if name not in _MODELS:
        raise ValueError(f"model must be one of {', '.join(_MODELS)}, got {name!r}")
    cls = _MODELS[name]
    params = document["params"]
    if not isinstance(params, dict):
        raise TypeError(f"params must be an object, got {type(params).__name__}")
    valid = cls._param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (valid parameters: {', '.join(valid)})")
    model = cls(**_decode_params(params))
    model._validated_options()
    classes = np.array(document["classes"])
    if classes.ndim != 1 or len(classes) < 2 or len(np.unique(classes)) != len(classes):
        raise ValueError(f"classes must be a list of at least two distinct class names, "
                         f"got {document['classes']!r}")
    coef = np.array(document["coef"], dtype=np.float64)
    intercept = np.array(document["intercept"], dtype=np.float64)
    k = model._n_outputs(len(classes))
    if coef.ndim != 2 or coef.shape[0] != k or coef.shape[1] < 1 or intercept.shape != (k,):
        raise ValueError(f"coef must have shape ({k}, n_features) and intercept ({k},) for "
                         f"{len(classes)} classes; got {coef.shape} and {intercept.shape}")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError("coef and intercept must be finite numbers")
    d = coef.shape[1]
    names, target = document.get("feature_names"), document.get("target")
    mean, std = document.get("mean"), document.get("std")
    if (mean is None) != (std is None):
        raise ValueError("mean and std go together: the file has one without the other")
    model._check_classes(classes)
    model.classes_, model.coef_, model.intercept_, model.n_features_in_ = classes, coef, intercept, d
    model.feature_names_in_ = (None if names is None else
                               np.array(_check_feature_names(names, d, "feature_names"), dtype=object))
    model.target_name_ = None if target is None else _check_target_name(target, "target")
    model.feature_mean_, model.feature_std_ = (
        (None, None) if mean is None else
        tuple(np.array(v) for v in _check_standardisation(mean, std, d, ("mean", "std"))))
    return model


def _check_feature_names(names, n_features, name):
    if isinstance(names, str) or not all(isinstance(f, str) for f in names):
        raise TypeError(f"{name} must be a list of strings, got {names!r}")
    names = list(names)
    if len(names) != n_features:
        raise ValueError(f"{name} has {len(names)} names, but the model has {n_features} features")
    return names


def _check_target_name(target, name):
    if not isinstance(target, str):
        raise TypeError(f"{name} must be a string, got {target!r}")
    return target


def _check_standardisation(mean, std, n_features, names):
    """``mean`` and ``std`` as lists of floats: finite, shape (n_features,), std positive."""
    out = []
    for values, name in zip((mean, std), names):
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (n_features,):
            raise ValueError(f"{name} must have shape ({n_features},) (one value per feature), "
                             f"got {arr.shape}")
        _checks.check_finite_values(arr, name)
        out.append(arr)
    if (out[1] <= 0).any():
        raise ValueError(f"{names[1]} must be positive, got {out[1][np.argmax(out[1] <= 0)]!r} "
                         f"at feature {int(np.argmax(out[1] <= 0))}")
    return out[0].tolist(), out[1].tolist()


def _encode_classes(classes):
    values = classes.tolist()
    if not all(isinstance(c, (str, bool, int, float)) for c in values):
        bad = next(c for c in values if not isinstance(c, (str, bool, int, float)))
        raise TypeError(f"the class {bad!r} ({type(bad).__name__}) cannot be saved; "
                        f"classes must be strings, integers, floats or booleans")
    return values


def _encode_params(params):
    """The hyperparameters as JSON values; a class_weight dict becomes [class, weight] pairs
    (JSON object keys are strings only, and the classes may be integers)."""
    encoded = {}
    for name, value in params.items():
        if name == "class_weight" and isinstance(value, dict):
            value = {"pairs": [[_encode_classes(np.array([c]))[0], float(w)] for c, w in value.items()]}
        elif isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (str, bool, int, float, dict)):
            raise TypeError(f"the parameter {name}={value!r} cannot be saved as JSON")
        encoded[name] = value
    return encoded


def _decode_params(params):
    decoded = dict(params)
    weights = decoded.get("class_weight")
    if isinstance(weights, dict):
        decoded["class_weight"] = {c: w for c, w in weights["pairs"]}
    return decoded


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False
