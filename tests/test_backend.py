"""crossent._backend: the kernel path and the thread setting of the compiled kernels."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import crossent
import crossent._backend as _backend


@pytest.mark.parametrize("n", [0, -1, 1025, 40_000, 100_000, 2**31, 2**70])
def test_set_num_threads_rejects_out_of_range(n):
    """40000 used to abort in libgomp, 100000 to segfault, 2**31 to dump nanobind's signatures."""
    before = crossent.get_num_threads()
    with pytest.raises(ValueError, match=rf"n must be in \[1, 1024\].*got {n}$"):
        crossent.set_num_threads(n)
    assert crossent.get_num_threads() == before


@pytest.mark.parametrize("n", [1.0, True, "2", None])
def test_set_num_threads_rejects_non_integers(n):
    with pytest.raises(TypeError, match="n must be an integer"):
        crossent.set_num_threads(n)


def test_set_num_threads_is_process_wide():
    """A thread started before the call, and one started after, both run the kernels with the
    team size set (OpenMP alone keeps it per calling thread: a new thread got the default)."""
    if _backend._compiled is None:
        pytest.skip(f"compiled kernels unavailable: {_backend._IMPORT_ERROR}")
    before = crossent.get_num_threads()
    wanted = before + 1
    seen = {}
    go = threading.Event()

    def worker(key):
        go.wait()
        crossent.softmax(np.zeros((2, 3)))  # any kernel call
        seen[key] = (crossent.get_num_threads(), _backend._compiled.get_num_threads())

    early = threading.Thread(target=worker, args=("early",))
    early.start()
    try:
        with _backend.use_backend("compiled"):
            crossent.set_num_threads(wanted)
            late = threading.Thread(target=worker, args=("late",))
            late.start()
            go.set()
            early.join()
            late.join()
    finally:
        go.set()
        early.join()
        crossent.set_num_threads(before)
    assert seen == {"early": (wanted, wanted), "late": (wanted, wanted)}
