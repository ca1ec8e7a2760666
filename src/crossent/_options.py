"""The options of each loss family: one frozen object per family, validated once.

A loss checks its keyword options in one place, the ``checked`` constructor of its family's
class here, and hands the object on: :mod:`crossent._dispatch` unpacks it into the compiled
kernel's arguments (the C++ side holds the same fields, ``csrc/options.hpp``),
:mod:`crossent._reference` reads its fields, and the PyTorch front builds the same objects
(with the weights as tensors for its torch engine and Triton kernels). A torch function builds
its object before its operator runs (a trace-time constant for ``torch.compile``); the
operator, whose schema carries plain values, rebuilds it with the same constructor, which
then checks the weight tensors' values too. A new option is a field and a check here, a term
in the reference and the kernel, and its tests.

The objects are immutable (frozen, their weight arrays read-only) and compare and hash by
value, so an object without weights is a constant that ``torch.compile`` can keep. Per-call
data (targets, ``sample_weight``, ``where``, the "mean" denominator) is not an option.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from . import _checks

__all__: list[str] = []  # private module


def _value_key(value):
    """A field's value as it compares and hashes: an array by its contents, a number or string
    as itself, any other object (a weight tensor of the torch front) by its identity."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return ("object", id(value))


def _read_only(weight):
    """A validated weight (a private float64 copy made by :mod:`crossent._checks`), frozen."""
    if weight is not None:
        weight.setflags(write=False)
    return weight


def _class_weight(weight, num_classes, name):
    """Per-class weights: None, or a read-only float64 ``(num_classes,)`` array, finite, >= 0."""
    if weight is None:
        return None
    return _read_only(_checks.check_class_weight(weight, num_classes, name))


def _element_weight(weight, shape, name):
    """Element weights broadcasting to ``shape``: None, or a read-only float64 array."""
    if weight is None:
        return None
    return _read_only(_checks.check_broadcast_weight(weight, shape, name))


def _softcap(softcap):
    return None if softcap is None else _checks.check_scalar(softcap, "softcap", low=0.0, low_open=True)


class _Options:
    """Value semantics of the frozen option classes: equal fields, equal objects and hashes."""

    def _key(self):
        return tuple(_value_key(getattr(self, f.name)) for f in dataclasses.fields(self))

    def __eq__(self, other):
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self):
        return hash((type(self).__name__, self._key()))


@dataclasses.dataclass(frozen=True, eq=False)
class SoftmaxCEOptions(_Options):
    r"""Softmax cross-entropy, class-index and dense targets (``SoftmaxCEOptions`` in C++).

    ``weight``: per-class weights ``(C,)`` (float64) or None for all ones; ``ignore_index``:
    the index target whose rows count for nothing, or None; ``label_smoothing``
    :math:`\varepsilon \in [0, 1]`; ``z_loss`` :math:`\lambda_z \ge 0`; ``softcap`` ``s > 0``
    or None; ``reduction`` "mean", "sum" or "none".
    """

    reduction: str = "mean"
    weight: Any = None
    ignore_index: Optional[int] = None
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: Optional[float] = None

    @classmethod
    def checked(cls, *, reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None,
                ignore_index=None, weight=None, num_classes=None):
        """The options, validated (ValueError/TypeError naming the option and its value);
        ``weight`` needs ``num_classes``.

        Examples
        --------
        >>> from crossent._options import SoftmaxCEOptions
        >>> SoftmaxCEOptions.checked(label_smoothing=0.1, softcap=30)
        SoftmaxCEOptions(reduction='mean', weight=None, ignore_index=None, label_smoothing=0.1, z_loss=0.0, softcap=30.0)
        >>> SoftmaxCEOptions.checked(weight=[1.0, -2.0], num_classes=2)
        Traceback (most recent call last):
        ValueError: weight[1] = -2.0 is negative
        """
        return cls(reduction=_checks.check_reduction(reduction),
                   label_smoothing=_checks.check_scalar(label_smoothing, "label_smoothing", low=0.0, high=1.0),
                   z_loss=_checks.check_scalar(z_loss, "z_loss", low=0.0),
                   softcap=_softcap(softcap),
                   ignore_index=_checks.check_ignore_index(ignore_index),
                   weight=_class_weight(weight, num_classes, "weight"))


@dataclasses.dataclass(frozen=True, eq=False)
class SoftmaxFocalOptions(_Options):
    r"""Softmax focal loss (the kernel's ``alpha``, ``gamma`` and ``ignore_index`` arguments).

    ``alpha``: per-class balancing weights ``(C,)`` (float64; a scalar is given to every
    class) or None for none; ``gamma`` :math:`\ge 0`; ``ignore_index`` and ``reduction`` as
    in :class:`SoftmaxCEOptions`.
    """

    reduction: str = "mean"
    alpha: Any = None
    gamma: float = 2.0
    ignore_index: Optional[int] = None

    @classmethod
    def checked(cls, *, reduction="mean", gamma=2.0, ignore_index=None, alpha=None, num_classes=None):
        """The options, validated; ``alpha`` (a scalar in [0, 1] or one non-negative value per
        class) needs ``num_classes``."""
        reduction = _checks.check_reduction(reduction)
        gamma = _checks.check_scalar(gamma, "gamma", low=0.0)
        ignore_index = _checks.check_ignore_index(ignore_index)
        if alpha is not None and np.ndim(alpha) == 0:
            alpha = np.full(num_classes, _checks.check_scalar(alpha, "alpha", low=0.0, high=1.0))
        return cls(reduction=reduction, gamma=gamma, ignore_index=ignore_index,
                   alpha=_class_weight(alpha, num_classes, "alpha"))


@dataclasses.dataclass(frozen=True, eq=False)
class NLLOptions(_Options):
    """Negative log-likelihood: per-class ``weight``, ``ignore_index`` and ``reduction``, as
    in :class:`SoftmaxCEOptions`."""

    reduction: str = "mean"
    weight: Any = None
    ignore_index: Optional[int] = None

    @classmethod
    def checked(cls, *, reduction="mean", ignore_index=None, weight=None, num_classes=None):
        """The options, validated; ``weight`` needs ``num_classes``."""
        return cls(reduction=_checks.check_reduction(reduction),
                   ignore_index=_checks.check_ignore_index(ignore_index),
                   weight=_class_weight(weight, num_classes, "weight"))


@dataclasses.dataclass(frozen=True, eq=False)
class BinaryOptions(_Options):
    r"""The element-wise binary losses (``BinaryOptions`` in C++): sigmoid and probability
    binary cross-entropy and the sigmoid focal loss.

    ``weight``, ``pos_weight``: non-negative element weights broadcasting to the input's
    shape (float64) or None; ``label_smoothing`` :math:`\varepsilon \in [0, 1]`; ``alpha`` in
    [0, 1] or None (no balancing); ``gamma`` :math:`\ge 0`; ``reduction``. The defaults are
    the plain cross-entropy (a focal loss with ``alpha=None, gamma=0`` is one).
    """

    reduction: str = "mean"
    weight: Any = None
    pos_weight: Any = None
    label_smoothing: float = 0.0
    alpha: Optional[float] = None
    gamma: float = 0.0

    @classmethod
    def checked(cls, *, reduction="mean", label_smoothing=0.0, gamma=0.0, alpha=None, weight=None,
                pos_weight=None, shape=None):
        """The options, validated; ``weight`` and ``pos_weight`` need the input's ``shape``."""
        return cls(reduction=_checks.check_reduction(reduction),
                   label_smoothing=_checks.check_scalar(label_smoothing, "label_smoothing", low=0.0, high=1.0),
                   gamma=_checks.check_scalar(gamma, "gamma", low=0.0),
                   alpha=None if alpha is None else _checks.check_scalar(alpha, "alpha", low=0.0, high=1.0),
                   weight=_element_weight(weight, shape, "weight"),
                   pos_weight=_element_weight(pos_weight, shape, "pos_weight"))
