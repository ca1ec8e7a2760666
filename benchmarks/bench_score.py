"""Scoring a prediction file: crossent against sklearn.metrics.log_loss, side by side.

    python benchmarks/bench_score.py                 # 10 million rows x 10 classes
    python benchmarks/bench_score.py --rows 1000000  # a quicker run

Writes a Parquet file of random predictions (float64 probabilities, one column per class, an
int64 label column) in a temporary directory, then, in this process and on the same data:

- crossent, end to end: ``crossent.evaluation.score_file`` streams the file in batches and
  computes every metric (cross-entropy, accuracy, Brier, ECE, per class);
- crossent, in memory: ``crossent.evaluation.score_arrays`` on the arrays sklearn gets;
- scikit-learn: ``sklearn.metrics.log_loss`` on the arrays already in memory (reading the file
  for it is *not* timed).

Times are the first call and the best of ``--repeat`` calls. Then each contender runs once
more in a fresh subprocess, from the file, as a command-line user would (a first call also
pays the kernel's first touch of every page it allocates: sklearn's temporaries are several
times the data).
Peak memory is measured there (Linux): after the imports the resident set's high-water mark is
reset (``/proc/self/clear_refs``), and the figure is the peak (``VmHWM``) minus the resident
set at that moment, so the interpreter and the libraries are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

CLASSES = 10
CHUNK = 1_000_000


def make_file(path: str, rows: int, classes: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([(f"c{k}", pa.float64()) for k in range(classes)] + [("y", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            z = rng.normal(scale=2.0, size=(n, classes))
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            y = rng.integers(0, classes, size=n)
            writer.write_table(pa.table({**{f"c{k}": p[:, k] for k in range(classes)}, "y": y}))


def load_arrays(path: str):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = [n for n in table.column_names if n != "y"]
    probs = np.empty((table.num_rows, len(names)))
    for k, name in enumerate(names):
        probs[:, k] = table.column(name).to_numpy()
    return probs, table.column("y").to_numpy()


def timed(repeat: int, fn):
    """(first call's seconds, best of ``repeat`` calls' seconds, value)."""
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return times[0], min(times), value


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) / 1024.0


def measure_fresh(path: str, who: str) -> None:
    """Run in a fresh subprocess, once, as a command-line user would: print the seconds from
    the file to the log-loss, the seconds of the metric call alone, and the peak growth of the
    resident set (MiB) over the imports."""
    import pyarrow.parquet  # noqa: F401  (imports are not part of the measure)
    import sklearn.metrics

    from crossent.evaluation import score_file

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    if who == "crossent":
        score_file(path, label="y")
        t1 = t0
    else:
        probs, labels = load_arrays(path)
        t1 = time.perf_counter()
        sklearn.metrics.log_loss(labels, probs)
    t2 = time.perf_counter()
    print(json.dumps({"total": t2 - t0, "metric": t2 - t1, "peak_mib": _status_mib("VmHWM") - before}))


def fresh(path: str, who: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--fresh", who, "--file", path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--classes", type=int, default=CLASSES)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-subprocess runs")
    ap.add_argument("--fresh", choices=["crossent", "sklearn"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fresh:
        measure_fresh(args.file, args.fresh)
        return

    import sklearn
    import sklearn.metrics

    from crossent.evaluation import score_arrays, score_file

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "preds.parquet")
        t0 = time.perf_counter()
        make_file(path, args.rows, args.classes)
        size = os.path.getsize(path) / 2**20
        print(f"{args.rows:,} rows x {args.classes} classes, float64 Parquet {size:,.0f} MiB "
              f"(written in {time.perf_counter() - t0:.1f} s); best of {args.repeat}; "
              f"{os.cpu_count()} CPUs; scikit-learn {sklearn.__version__}")

        f_file, t_file, s = timed(args.repeat, lambda: score_file(path, label="y"))
        probs, labels = load_arrays(path)
        f_mem, t_mem, s_mem = timed(args.repeat, lambda: score_arrays(probs, labels))
        f_sk, t_sk, ll = timed(args.repeat, lambda: sklearn.metrics.log_loss(labels, probs))
        assert abs(s.cross_entropy - ll) <= 1e-9 * ll, (s.cross_entropy, ll)
        assert abs(s_mem.cross_entropy - ll) <= 1e-9 * ll, (s_mem.cross_entropy, ll)
        del probs, labels

        print(f"log-loss: crossent {s.cross_entropy:.12f}, sklearn {ll:.12f}")
        print(f"In this process, same data; first call and best of {args.repeat} "
              "(ratio = sklearn / crossent):")
        print(f"  {'':44s} {'first':>8s} {'ratio':>6s} {'best':>8s} {'ratio':>6s}")
        for name, first, best in (("sklearn.metrics.log_loss (arrays in memory)", f_sk, t_sk),
                                  ("crossent score_arrays (arrays in memory)", f_mem, t_mem),
                                  ("crossent score_file (reads the file too)", f_file, t_file)):
            print(f"  {name:44s} {first:7.3f}s {f_sk / first:5.1f}x {best:7.3f}s {t_sk / best:5.1f}x")
        print("  (crossent computes every metric: log-loss, accuracy, Brier, ECE, per class; "
              "sklearn the log-loss only. sklearn's first call also pays the kernel's first touch "
              "of its temporaries, several times the data)")
        if not args.no_fresh:
            cx, sk = fresh(path, "crossent"), fresh(path, "sklearn")
            print("In a fresh process each, once, from the file (as on the command line); peak memory "
                  "is the growth of VmHWM over the imports:")
            print(f"  {'sklearn: read the file, then log_loss':46s} {sk['total']:7.3f} s "
                  f"(log_loss alone {sk['metric']:.3f} s)  peak {sk['peak_mib']:,.0f} MiB")
            print(f"  {'crossent score_file':46s} {cx['total']:7.3f} s "
                  f"{sk['total'] / cx['total']:5.1f}x faster from the file, "
                  f"{sk['metric'] / cx['total']:.1f}x than log_loss alone;  peak {cx['peak_mib']:,.0f} MiB")
            print(f"  (the arrays sklearn needs are {args.rows * (args.classes + 1) * 8 / 2**20:,.0f} MiB; "
                  f"crossent reads batches of {1 << 18:,} rows)")


if __name__ == "__main__":
    main()
