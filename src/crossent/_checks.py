"""Argument validation: small helpers that raise ValueError, TypeError or IndexError.

Every public function validates through these before it computes anything (and before any
compiled code runs). Messages name the argument and the offending value or position.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__: list[str] = []  # private module

REDUCTIONS = ("mean", "sum", "none")
_TooHardError = getattr(np, "exceptions", np).TooHardError  # np.exceptions from NumPy 1.25


def _fmt_value(value) -> str:
    """A number as the user wrote it: ``1.5``, not NumPy 2's ``np.float64(1.5)``."""
    if isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)):
        return repr(int(value)) if isinstance(value, (numbers.Integral, np.integer)) else repr(float(value))
    return repr(value)


def _fmt_pos(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


INT64_RANGE = (-(2**63), 2**63 - 1)


def as_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``, with a ragged nested sequence reported under the argument's name."""
    try:
        return np.asarray(x)
    except ValueError as exc:  # NumPy: "... has an inhomogeneous shape after 1 dimensions ..."
        if "inhomogeneous" not in str(exc):
            raise
        detail = str(exc).split(". ", 1)[-1]
        raise ValueError(f"{name} is ragged (its nested sequences differ in length), so it is "
                         f"not an array: {detail}") from None


def check_floating(x, name: str) -> np.ndarray:
    """Return ``x`` as a native-byte-order float32/float64 array (float16 is promoted to float32).

    Booleans and integers become float64, like NumPy's own true division does; the byte
    order never changes the result dtype (``'>f4'`` gives float32). The input is never
    modified: a conversion returns a new array, and callers that write must copy first.
    """
    arr = as_array(x, name)
    kind = arr.dtype.kind
    if kind == "f":
        size = arr.dtype.itemsize
        if size == 2:
            return arr.astype(np.float32)
        if size in (4, 8):
            return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
        return arr.astype(np.float64)  # longdouble: computed in float64
    if kind in "biu":
        return arr.astype(np.float64)
    raise TypeError(f"{name} must be a real floating array, got dtype {arr.dtype}")


def check_axis(axis, ndim: int, name: str = "axis") -> int:
    """Return ``axis`` normalised to ``[0, ndim)``."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name}={axis} needs an array with at least one dimension, got a scalar")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")
    return reduction


def check_scalar(value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """Return ``value`` as a float, checking it is a finite real number inside the interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):  # math, not NumPy: torch.compile traces this without a graph break
        raise ValueError(f"{name} must be finite, got {_fmt_value(value)}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {_fmt_value(value)}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {_fmt_value(value)}")
    return v


def check_base(base) -> float | None:
    """``base`` of a logarithm: None (nats) or a positive number other than 1."""
    if base is None:
        return None
    b = check_scalar(base, "base", low=0.0, low_open=True)
    if b == 1.0:
        raise ValueError("base must differ from 1, got 1")
    return b


def check_finite_values(x: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first NaN or infinite entry of ``x``."""
    bad = ~np.isfinite(x)
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), x.shape)
        raise ValueError(f"{name}{_fmt_pos(pos)} = {_fmt_value(x[pos])} is not finite")


def check_unit_interval(x: np.ndarray, name: str) -> None:
    """Raise ValueError naming the first entry of ``x`` outside [0, 1] (NaN included)."""
    bad = ~((x >= 0) & (x <= 1))
    if bad.any():
        pos = np.unravel_index(int(np.argmax(bad)), x.shape)
        raise ValueError(f"{name}{_fmt_pos(pos)} = {_fmt_value(x[pos])} is outside [0, 1]")


def sum_tolerance(n: int, dtype) -> float:
    """How far from 1 the sum of ``n`` probabilities of ``dtype`` may stray by rounding alone."""
    return 16.0 * max(n, 1) * float(np.finfo(dtype).eps)


def check_distributions(p: np.ndarray, name: str, axis: int, normalize: bool,
                        given_dtype=None) -> np.ndarray:
    """Validate probability rows along ``axis`` and return them (rescaled when ``normalize``).

    Without ``normalize`` every entry must lie in [0, 1] and every row must sum to 1 within
    :func:`sum_tolerance` of ``given_dtype`` (the dtype the caller passed: float16 rows arrive
    here as float32 but carry float16 rounding; default ``p.dtype``); with it, entries must be
    finite and non-negative and each row's sum positive, and rows are divided by their sums.
    The first offending row is named.
    """
    if p.shape[axis] == 0:
        raise ValueError(f"{name} has no entries along axis {axis}")
    if normalize:
        bad = ~(np.isfinite(p) & (p >= 0))
        if bad.any():
            pos = np.unravel_index(int(np.argmax(bad)), p.shape)
            raise ValueError(f"{name}{_fmt_pos(pos)} = {_fmt_value(p[pos])} must be finite and >= 0")
        peak = np.max(p, axis=axis, keepdims=True)
        zero = peak == 0
        if zero.any():
            row = _row_position(np.squeeze(zero, axis=axis))
            where = f"{name} row {list(row)}" if row else name
            raise ValueError(f"{where} sums to 0 and cannot be normalised")
        # Divided by its maximum first, a row lies in [0, 1] and its sum (at most the row
        # length) cannot overflow, as the sum of [1e308, 1e308] would.
        scaled = np.divide(p, peak, dtype=np.float64)
        total = np.sum(scaled, axis=axis, keepdims=True)
        return (scaled / total).astype(p.dtype, copy=False)
    try:
        check_unit_interval(p, name)
    except ValueError as exc:
        if np.all(np.isfinite(p) & (p >= 0)):  # counts, say: rescaling would make them valid
            raise ValueError(f"{exc}; pass normalize=True to rescale rows") from None
        raise
    total = np.sum(p, axis=axis, dtype=np.float64)
    tol = sum_tolerance(p.shape[axis], p.dtype if given_dtype is None else given_dtype)
    off = np.abs(total - 1.0) > tol
    if off.any():
        row = _row_position(off)
        where = f"{name} row {list(row)}" if row else name
        raise ValueError(f"{where} sums to {float(np.asarray(total)[row])!r}, not 1 "
                         f"(tolerance {tol:.1e}); pass normalize=True to rescale rows")
    return p


def _row_position(mask: np.ndarray):
    """The index of the first True entry of ``mask`` (a tuple, or () for a scalar)."""
    if mask.ndim == 0:
        return ()
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} has shape {b.shape}, but {name_a} has shape {a.shape}; they must match")


def check_labels(labels, num_classes: int, ignore_index, name: str = "labels") -> np.ndarray:
    """Return integer class indices as int64, checking each is in [0, num_classes) or ignored.

    Raises TypeError for a non-integer dtype and IndexError naming the first position whose
    value is out of range and not ``ignore_index``.
    """
    arr = as_array(labels, name)
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        pos = np.unravel_index(int(np.argmax(arr)), arr.shape)
        raise IndexError(f"{name}{_fmt_pos(pos)} = {arr[pos]} is outside [0, {num_classes})")
    arr = arr.astype(np.int64, copy=False)
    valid = (arr >= 0) & (arr < num_classes)
    if ignore_index is not None:
        valid |= arr == ignore_index
    if not valid.all():
        pos = np.unravel_index(int(np.argmax(~valid)), arr.shape)
        raise IndexError(f"{name}{_fmt_pos(pos)} = {int(arr[pos])} is outside [0, {num_classes})"
                         + ("" if ignore_index is None else f" and is not ignore_index={ignore_index}"))
    return arr


def check_ignore_index(ignore_index):
    """None, or an integer that a class index can hold (int64, as in PyTorch)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an integer or None, got {ignore_index!r}")
    value = int(ignore_index)
    low, high = INT64_RANGE
    if not low <= value <= high:
        raise ValueError(f"ignore_index={value} is outside the int64 range of class indices "
                         f"[-2**63, 2**63 - 1]")
    return value


def check_out(out, x, name: str, inputs: dict) -> None:
    """``out``, a buffer for the gradient with respect to the argument ``x`` called ``name``,
    must be a writeable array of its shape and (computed) floating dtype and
    share no memory with ``inputs`` (the other arguments, by name): a kernel writing the
    gradient would otherwise change what it still has to read. ``out`` may be the array
    passed as ``name`` itself (the gradient then replaces it), not a part of it."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    given = as_array(x, name)
    expected = check_floating(given, name)
    if out.shape != expected.shape:
        raise ValueError(f"out has shape {out.shape}, but the gradient with respect to {name} "
                         f"has shape {expected.shape}")
    if out.dtype != expected.dtype:
        raise TypeError(f"out has dtype {out.dtype}, but the gradient with respect to {name} "
                        f"has dtype {expected.dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if _overlaps(out, given) and not _same_view(out, given):
        raise ValueError(f"out overlaps {name} without being the same array: pass out={name} "
                         f"to overwrite it with the gradient, or a separate buffer")
    for other, value in inputs.items():
        if value is not None and not isinstance(value, (str, numbers.Number)) \
                and _overlaps(out, as_array(value, other)):
            raise ValueError(f"out shares memory with {other}: the gradient would overwrite "
                             f"{other} while it is read; pass a separate buffer as out")


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` share memory (exactly when that is cheap to decide, else
    conservatively: interleaved views whose overlap is too costly to rule out count)."""
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=100_000))
    except _TooHardError:
        return True


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """The same elements in the same layout: one start address, shape, strides and dtype."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def check_class_weight(weight, num_classes: int, name: str = "weight") -> np.ndarray | None:
    """A per-class weight vector: shape (num_classes,), finite, non-negative; as float64."""
    if weight is None:
        return None
    w = check_floating(weight, name).astype(np.float64)
    if w.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},) (one entry per class), got {w.shape}")
    check_finite_values(w, name)
    if (w < 0).any():
        pos = int(np.argmax(w < 0))
        raise ValueError(f"{name}[{pos}] = {_fmt_value(w[pos])} is negative")
    return w


def check_broadcast_weight(weight, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """An element-wise weight that broadcasts to ``shape``: finite and non-negative; float64."""
    if weight is None:
        return None
    w = check_floating(weight, name).astype(np.float64)
    try:
        np.broadcast_shapes(w.shape, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {w.shape} does not broadcast to {shape}") from None
    if np.broadcast_shapes(w.shape, shape) != tuple(shape):
        raise ValueError(f"{name} of shape {w.shape} would enlarge the result beyond {shape}")
    check_finite_values(w, name)
    if (w < 0).any():
        pos = np.unravel_index(int(np.argmax(w < 0)), w.shape)
        raise ValueError(f"{name}{_fmt_pos(pos)} = {_fmt_value(w[pos])} is negative")
    return w
