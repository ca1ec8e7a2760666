"""Which path computes the losses: the compiled kernels, or the NumPy reference.

The compiled extension ``crossent._ext`` is used when it imports. When it is missing, every
function still works through :mod:`crossent._reference` and a warning says so once.
``CROSSENT_KERNELS=reference`` in the environment forces the reference path (no warning).
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import warnings

__all__ = ["kernels", "kernel_backend", "use_backend", "KernelsUnavailableWarning",
           "set_num_threads", "get_num_threads"]


class KernelsUnavailableWarning(RuntimeWarning):
    """The compiled kernels could not be loaded; the NumPy reference is used instead."""


try:
    from . import _ext as _compiled
    _IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised by installs without a compiler
    _compiled = None
    _IMPORT_ERROR = exc

_choice = os.environ.get("CROSSENT_KERNELS", "auto").strip().lower() or "auto"
if _choice not in ("auto", "compiled", "reference"):
    raise ValueError(f"CROSSENT_KERNELS must be 'auto', 'compiled' or 'reference', got {_choice!r}")
if _choice == "compiled" and _compiled is None:
    raise ImportError(f"CROSSENT_KERNELS=compiled, but the compiled kernels failed to load: {_IMPORT_ERROR}")
_warned = False
# set_num_threads is process-wide, but OpenMP keeps the team size per calling thread: the
# requested size is applied to each Python thread the first time it runs a kernel after a change.
MAX_THREADS = 1024  # more would not speed up memory-bound kernels, and libgomp aborts on failure
_threads = None  # the size set by set_num_threads; None: OpenMP's default
_applied = threading.local()


def kernels():
    """The compiled module to call, or None when the reference path is to be used."""
    global _warned
    if _choice == "reference":
        return None
    if _threads is not None and _compiled is not None and getattr(_applied, "n", None) != _threads:
        _compiled.set_num_threads(_threads)
        _applied.n = _threads
    if _compiled is None and not _warned:
        _warned = True
        warnings.warn(
            f"crossent's compiled kernels are unavailable ({_IMPORT_ERROR}); "
            "using the NumPy reference, which is slower",
            KernelsUnavailableWarning,
            stacklevel=3,
        )
    return _compiled


def kernel_backend() -> str:
    """``"compiled"`` or ``"reference"``: the path the losses take now.

    Examples
    --------
    >>> import crossent
    >>> crossent.kernel_backend() in ("compiled", "reference")
    True
    """
    return "compiled" if (_choice != "reference" and _compiled is not None) else "reference"


def set_num_threads(n: int) -> None:
    """Set the number of threads the compiled kernels use (OpenMP; default: all cores).

    The setting is process-wide: it holds for kernels called from every Python thread,
    including threads started before the call (unlike ``omp_set_num_threads``, which only
    sets the calling thread's team). Results do not depend on it: rows are independent and
    each row is reduced in a fixed order. Without the compiled kernels (the NumPy reference
    path) it has no effect.

    Parameters
    ----------
    n : int
        Number of threads, from 1 to ``MAX_THREADS`` (1024).

    Raises
    ------
    TypeError
        ``n`` is not an integer.
    ValueError
        ``n`` is outside [1, 1024].

    Examples
    --------
    >>> import crossent
    >>> before = crossent.get_num_threads()
    >>> crossent.set_num_threads(1)
    >>> crossent.get_num_threads()
    1
    >>> crossent.set_num_threads(before)
    """
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"n must be an integer, got {type(n).__name__}")
    n = operator.index(n)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n must be in [1, {MAX_THREADS}] (threads of the compiled kernels), "
                         f"got {n}")
    global _threads
    _threads = n
    if _compiled is not None:  # this thread at once; the others at their next kernel call
        _compiled.set_num_threads(n)
        _applied.n = n


def get_num_threads() -> int:
    """The number of threads the compiled kernels will use, in any Python thread (1 on the
    reference path when :func:`set_num_threads` was never called).

    Examples
    --------
    >>> import crossent
    >>> crossent.get_num_threads() >= 1
    True
    """
    if _threads is not None:
        return _threads
    if _compiled is not None:
        return int(_compiled.get_num_threads())
    return 1


@contextlib.contextmanager
def use_backend(name: str):
    """Temporarily force ``"compiled"`` or ``"reference"`` (for tests and benchmarks)."""
    global _choice
    if name not in ("compiled", "reference"):
        raise ValueError(f"backend must be 'compiled' or 'reference', got {name!r}")
    if name == "compiled" and _compiled is None:
        raise RuntimeError(f"the compiled kernels are unavailable: {_IMPORT_ERROR}")
    previous, _choice = _choice, name
    try:
        yield
    finally:
        _choice = previous
