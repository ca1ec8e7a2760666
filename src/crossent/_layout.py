"""Arrays with a class axis seen as C-contiguous ``(N, C)`` rows, the layout of the kernels."""

from __future__ import annotations

import numpy as np

from . import _checks

__all__: list[str] = []  # private module


class Rows:
    """``x`` validated as a floating array, its class ``axis`` moved last and the other axes
    flattened into rows (a copy only when the layout needs one), and the way back."""

    def __init__(self, x, name, axis):
        arr = _checks.check_floating(x, name)
        self.axis = _checks.check_axis(axis, arr.ndim)
        self.dtype = arr.dtype
        self.shape = arr.shape
        self.num_classes = arr.shape[self.axis]
        if self.num_classes == 0:
            raise ValueError(f"{name} has no classes: axis {self.axis} has length 0")
        moved = np.moveaxis(arr, self.axis, -1)
        self.batch_shape = moved.shape[:-1]
        self.block = np.ascontiguousarray(moved.reshape(-1, self.num_classes))

    def rows_of(self, t):
        """``t`` (of the full shape) with the same axis moved and rows flattened."""
        return np.ascontiguousarray(np.moveaxis(t, self.axis, -1).reshape(-1, self.num_classes))

    def out_rows(self, out):
        """``out`` seen as the ``(N, C)`` rows a kernel can write, or None when its layout
        differs from the rows' (the caller then copies into it)."""
        if out is None or self.axis != len(self.shape) - 1 or not out.flags.c_contiguous:
            return None
        return out.reshape(-1, self.num_classes)

    def restore(self, rows):
        """``(N, C)`` rows back to the original shape, class axis where it was, in its dtype."""
        r = rows.astype(self.dtype, copy=False).reshape(self.batch_shape + (self.num_classes,))
        return np.moveaxis(r, -1, self.axis)

    def per_row(self, values):
        """One value per row back to the batch shape (the original shape without the axis)."""
        return values.astype(self.dtype, copy=False).reshape(self.batch_shape)
