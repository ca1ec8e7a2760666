"""Every crossent loss and measure against PyTorch, SciPy and the memory floors.

    python benchmarks/bench_kernels.py             # full sizes
    python benchmarks/bench_kernels.py --quick     # small sizes, seconds

The same measurement as ``crossent bench`` (the harness is crossent/benchmarks.py): every
contender in this one process on the same arrays, forward and forward + backward; median time
after a warm-up, time over the memory floor (one read; one read + one write into an existing
buffer) and over crossent's, and the peak resident-set growth of each call.
"""

from __future__ import annotations

import argparse

import crossent
from crossent import benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per method (median)")
    parser.add_argument("--threads", type=int, default=2, help="threads for crossent and torch")
    args = parser.parse_args()
    crossent.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    sizes = benchmarks.QUICK if args.quick else benchmarks.FULL
    print(benchmarks.table(benchmarks.run(sizes, max(args.repeat, 1)), sizes))
    print(benchmarks.NOTES)


if __name__ == "__main__":
    main()
