"""``crossent bench``: every loss and measure against PyTorch, SciPy and the memory floors.

    crossent bench            # full sizes (see crossent.benchmarks.FULL), about a minute
    crossent bench --quick    # small sizes, seconds

The harness is :mod:`crossent.benchmarks`; this command only parses options and prints.
"""

from __future__ import annotations

import sys
from typing import Optional

from .. import _backend, benchmarks
from ._app import CliError, Option, command

__all__: list[str] = []


@command("bench")
def bench_cmd(
    quick: bool = Option(False, "--quick", help="Small sizes: seconds."),
    repeat: int = Option(5, "--repeat", help="Timed calls per method (median)."),
    threads: int = Option(2, "--threads", help="Threads for crossent and PyTorch."),
    no_torch: bool = Option(False, "--no-torch", help="Leave PyTorch out."),
    only: Optional[str] = Option(None, "--only", metavar="TEXT",
                                 help="Only the cases whose name contains TEXT."),
) -> None:
    """Time crossent against PyTorch, SciPy and the memory floors, side by side."""
    if repeat < 1:
        raise CliError(f"--repeat must be >= 1, got {repeat}")
    if threads < 1:
        raise CliError(f"--threads must be >= 1, got {threads}")
    _backend.set_num_threads(threads)
    if not no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            print("crossent bench: PyTorch is not installed; its rows are left out", file=sys.stderr)
    sizes = benchmarks.QUICK if quick else benchmarks.FULL
    rows = benchmarks.run(sizes, repeat, with_torch=not no_torch, only=only)
    if not rows:
        raise CliError(f"--only {only!r} matches no case")
    print(benchmarks.table(rows, sizes))
    print(benchmarks.NOTES)
