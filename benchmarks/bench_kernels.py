"""crossent's softmax cross-entropy kernels against PyTorch, NumPy and the memory floor.

    python benchmarks/bench_kernels.py             # N=4096 x V=32768 and N=64 x V=262144
    python benchmarks/bench_kernels.py --quick     # small shapes, a few seconds

The same measurement as ``crossent bench`` (see crossent/cli/bench.py for the method):
every contender in this one process on the same float32 arrays, forward and
forward + backward; median time after a warm-up, speed-up over PyTorch, time over the
memory floor (one read; one read + one write into an existing buffer), GB/s and the peak
resident-set growth of each call.
"""

from __future__ import annotations

import argparse

import crossent
from crossent.cli import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per method (median)")
    parser.add_argument("--threads", type=int, default=None, help="threads for crossent")
    args = parser.parse_args()
    if args.threads is not None:
        crossent.set_num_threads(args.threads)
    shapes = bench.QUICK_SHAPES if args.quick else bench.FULL_SHAPES
    print(bench.table(bench.run(shapes, max(args.repeat, 1))))
    print(bench.NOTES)


if __name__ == "__main__":
    main()
