"""Scoring a Parquet file of predictions: crossent against DuckDB and scikit-learn, and on Dask.

    python benchmarks/bench_score.py                  # 10 million rows x 10 classes
    python benchmarks/bench_score.py --rows 2000000   # a quicker run
    python benchmarks/bench_score.py --runs 5         # more interleaved runs

Writes a Parquet file of random predictions (float32 probability columns named class_0 ...,
a string label column ``y`` naming the class, row groups of 1M rows) in a temporary
directory, then measures, on that same file:

Whole processes (``python -m crossent score FILE --label y --json``, the same with pyarrow's
default mimalloc memory pool instead of the jemalloc pool the command chooses, a DuckDB query of
the mean cross-entropy alone, and scikit-learn: pyarrow reads the columns, ``log_loss`` scores
them), plus ``crossent --help`` and the calculator (start-up, run as the ``crossent`` console
script runs them: through ``_crossent_launcher``). Wall seconds, CPU seconds (user + sys)
and peak resident memory (the child's own VmHWM, reported at its exit). The machine may be shared: the contenders run interleaved, ``--runs`` rounds, and the
medians are reported with every run's figure; CPU seconds are steadier than wall seconds there.

In this process: ``score_file`` (reads the file), ``score_arrays`` and ``sklearn.metrics.log_loss``
on the arrays in memory (reading them is not timed; ``log_loss`` with integer labels, its fastest
call, every round, and once with the label strings a DataFrame would hold), the DuckDB query,
and ``score_dask`` on a ``LocalCluster`` of 1 and 2 single-threaded worker processes
(127.0.0.1; cluster start-up not timed). Medians of ``--runs``.

Every contender's mean cross-entropy is checked against crossent's (1e-6 relative: DuckDB
divides float32 columns in float32).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
    names = np.array([f"class_{k}" for k in range(classes)])
    writer = None
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        z = rng.normal(scale=2.0, size=(n, classes))
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
        t = pa.table({**{names[k]: p[:, k] for k in range(classes)}, "y": names[rng.integers(0, classes, n)]})
        writer = writer or pq.ParquetWriter(path, t.schema)
        writer.write_table(t)
    writer.close()


def duckdb_query(path: str, classes: int) -> str:
    names = [f"class_{k}" for k in range(classes)]
    p_label = "CASE y " + " ".join(f"WHEN '{n}' THEN {n}" for n in names) + " END"
    return f"SELECT avg(-ln(({p_label}) / ({' + '.join(names)}))) FROM read_parquet('{path}')"


SKLEARN = """
import sys, numpy as np, pyarrow.parquet as pq, sklearn.metrics
t = pq.read_table(sys.argv[1]); names = [c for c in t.column_names if c != "y"]
probs = np.column_stack([t.column(c).to_numpy().astype(np.float64) for c in names])
labels = np.searchsorted(np.array(names), t.column("y").to_numpy(zero_copy_only=False).astype(str))
print(sklearn.metrics.log_loss(labels, probs, labels=np.arange(len(names))))
"""
DUCKDB = "import sys, duckdb; print(duckdb.execute(sys.argv[1]).fetchall()[0][0])"
LAUNCHER = "import sys; from _crossent_launcher import main; sys.exit(main())"  # the console script
# Runs a module (-m NAME) or a script (-c CODE) and reports its peak resident set (VmHWM) on
# standard error at exit: ru_maxrss of a child would also hold this process's resident set
# from before the exec.
PEAK = """
import atexit, re, runpy, sys
atexit.register(lambda: sys.stderr.write("\\nVmHWM " + re.search(r"VmHWM:\\s+(\\d+)",
                open("/proc/self/status").read()).group(1) + "\\n"))
mode, target = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
"""


def run_process(argv, env=None):
    """(wall s, cpu s, peak MiB, stdout) of a child process ``[python, -m|-c, ...]``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([argv[0], "-c", PEAK, *argv[1:]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    _, _, usage = 0, 0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {err}")
    peak = int(err.rsplit("VmHWM ", 1)[1].split()[0]) / 1024
    return wall, usage, peak, out


def median_of(runs, fn):
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--classes", type=int, default=CLASSES)
    ap.add_argument("--runs", type=int, default=3, help="interleaved rounds; medians reported")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask cluster runs")
    args = ap.parse_args()
    py = sys.executable

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "preds.parquet")
        make_file(path, args.rows, args.classes)
        size = os.path.getsize(path) / 2**20
        print(f"{args.rows:,} rows x {args.classes} classes: float32 probabilities, string labels, "
              f"Parquet {size:,.0f} MiB; {os.cpu_count()} CPUs (load average "
              f"{os.getloadavg()[0]:.1f} at the start: a shared machine makes wall times noisy); "
              f"medians of {args.runs} interleaved runs")

        score = [py, "-m", "crossent", "score", path, "--label", "y", "--json"]
        contenders = {
            "crossent score --json (every metric)": (score, None),
            "the same, pyarrow's mimalloc pool": (score, {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}),
            "DuckDB SQL, mean cross-entropy alone": ([py, "-c", DUCKDB, duckdb_query(path, args.classes)], None),
            "pyarrow read + sklearn log_loss": ([py, "-c", SKLEARN, path], None),
            "crossent --help": ([py, "-c", LAUNCHER, "--help"], None),
            "crossent entropy 0.5 0.5 (calculator)": ([py, "-c", LAUNCHER, "entropy", "0.5", "0.5"], None),
        }
        runs = {name: [] for name in contenders}
        values = {}
        for _ in range(args.runs):  # interleaved: each round runs every contender once
            for name, (argv, env) in contenders.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, after, peak, out = run_process(argv, env)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                runs[name].append((wall, cpu, peak))
                values[name] = out
        ce = json.loads(values["crossent score --json (every metric)"])["cross_entropy_nats"]
        other = json.loads(values["the same, pyarrow's mimalloc pool"])["cross_entropy_nats"]
        assert other == ce, (other, ce)
        for name in ("DuckDB SQL, mean cross-entropy alone", "pyarrow read + sklearn log_loss"):
            other = float(values[name].strip().splitlines()[-1])
            assert abs(other - ce) <= 1e-6 * ce, (name, other, ce)
        print(f"mean cross-entropy {ce:.12f} nats (DuckDB and sklearn agree to 1e-6: DuckDB divides "
              "float32 columns in float32)")
        print("Whole processes (wall s / CPU s / peak MiB, medians; every run's wall in brackets):")
        med = {n: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for n, rs in runs.items()}
        ref = med["crossent score --json (every metric)"]
        for name, (wall, cpu, peak) in med.items():
            ratio = "" if name.startswith("crossent") else (
                f"  this / crossent score: {wall / ref[0]:.2f}x wall, {cpu / ref[1]:.2f}x CPU, "
                f"{peak / ref[2]:.2f}x peak")
            walls = ", ".join(f"{r[0]:.2f}" for r in runs[name])
            print(f"  {name:40s} {wall:6.2f} s {cpu:6.2f} s {peak:6.0f} MiB [{walls}]{ratio}")

        in_process(path, args, whole_process=ref[0])


def in_process(path, args, whole_process=None) -> None:
    import duckdb
    import pyarrow.parquet as pq
    import sklearn.metrics

    from crossent.evaluation import score_arrays, score_file

    table = pq.read_table(path)
    names = [c for c in table.column_names if c != "y"]
    probs = np.column_stack([table.column(c).to_numpy() for c in names])  # float32, as in the file
    label_text = table.column("y").to_numpy(zero_copy_only=False)  # the strings a DataFrame holds
    labels = np.searchsorted(np.array(names), label_text.astype(str))
    del table
    query = duckdb_query(path, args.classes)
    con = duckdb.connect()
    contenders = {
        "crossent score_file (reads the file)": lambda: score_file(path, label="y").cross_entropy,
        "crossent score_arrays (arrays in memory)": lambda: score_arrays(probs, labels).cross_entropy,
        "sklearn log_loss (arrays in memory)": lambda: sklearn.metrics.log_loss(
            labels, probs, labels=np.arange(len(names))),
        "DuckDB query (reads the file)": lambda: con.execute(query).fetchall()[0][0],
    }
    times = {n: [] for n in contenders}
    cpus = {n: [] for n in contenders}
    values = {}
    for _ in range(args.runs):
        for name, fn in contenders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            values[name] = fn()
            times[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)  # every thread of this process
    ce = values["crossent score_file (reads the file)"]
    assert all(abs(v - ce) <= 1e-6 * ce for v in values.values()), values
    # log_loss as a DataFrame user calls it, on the label strings (the LabelBinarizer of object
    # arrays is most of its time): once, as it takes tens of seconds
    t0 = time.perf_counter()
    text_ce = sklearn.metrics.log_loss(label_text, probs, labels=names)
    sk_text = time.perf_counter() - t0
    assert abs(text_ce - ce) <= 1e-6 * ce, (text_ce, ce)
    probs = labels = label_text = None  # free them before the Dask runs
    sk = statistics.median(times["sklearn log_loss (arrays in memory)"])
    sk_cpu = statistics.median(cpus["sklearn log_loss (arrays in memory)"])
    print("In this process (medians: wall s / CPU s of all threads; sklearn / contender in brackets):")
    for name, ts in times.items():
        t, c = statistics.median(ts), statistics.median(cpus[name])
        print(f"  {name:44s} {t:7.3f} s ({sk / t:5.1f}x)  {c:7.3f} s CPU ({sk_cpu / c:5.1f}x)  runs: "
              + ", ".join(f"{x:.2f}" for x in ts))
    print(f"  {'sklearn log_loss, string labels (once)':44s} {sk_text:7.3f} s")
    if whole_process is not None:
        print(f"  log_loss on arrays in memory / the whole crossent score process ({whole_process:.2f} s): "
              f"{sk / whole_process:.1f}x (integer labels), {sk_text / whole_process:.1f}x (string labels)")
    engines(path, args)
    if args.no_dask:
        return
    from dask.distributed import Client

    from crossent.evaluation import score_dask
    from crossent.evaluation.distributed import read_parquet_dask

    one = score_file(path, label="y")
    for workers in (1, 2):
        with Client(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                    dashboard_address=None):
            ts = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                s = score_dask(read_parquet_dask(path), label="y")
                ts.append(time.perf_counter() - t0)
            assert abs(s.cross_entropy - one.cross_entropy) <= 1e-12 * one.cross_entropy
            print(f"  score_dask, LocalCluster of {workers} worker process(es) "
                  f"{statistics.median(ts):7.3f} s  (same numbers as score_file to 1e-12; "
                  f"cluster start not timed)  runs: " + ", ".join(f"{x:.2f}" for x in ts))


def engines(path, args) -> None:
    """Reading the columns alone, by each candidate engine (why score_file reads with
    ``ParquetFile.iter_batches`` and keeps the labels dictionary-encoded, and why ``crossent
    score`` has pyarrow allocate with jemalloc). Wall and CPU seconds (all threads): on a
    shared 2-core machine an engine's extra threads buy little wall time, and cost CPU."""
    from concurrent.futures import ThreadPoolExecutor

    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    names = [f"class_{k}" for k in range(args.classes)]
    listed = "[" + ", ".join(f"'{n}'" for n in names) + "]"

    def iter_batches(dictionary):
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20,
                            read_dictionary=["y"] if dictionary else None)
        return sum(b.num_rows for b in pf.iter_batches(batch_size=1 << 18))

    def dataset():
        return sum(b.num_rows for b in ds.dataset(path).to_batches(batch_size=1 << 18))

    def row_groups_in_threads():  # whole row groups, two at a time
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20, read_dictionary=["y"])
        with ThreadPoolExecutor(2) as ex:
            return sum(ex.map(lambda i: pf.read_row_group(i, use_threads=False).num_rows,
                              range(pf.num_row_groups)))

    def with_pool(pool, read):
        def run():
            previous = pa.default_memory_pool()
            pa.set_memory_pool(pool)
            try:
                return read()
            finally:
                pa.set_memory_pool(previous)
        return run

    def duck_arrow():  # the label's class index computed by DuckDB, streamed as Arrow batches
        query = f"SELECT {', '.join(names)}, list_position({listed}, y) AS y FROM read_parquet('{path}')"
        return sum(b.num_rows for b in duckdb.sql(query).to_arrow_reader(1 << 18))

    readers = {"pyarrow ParquetFile.iter_batches, labels dictionary-encoded (crossent)": lambda: iter_batches(True),
               "pyarrow ParquetFile.iter_batches, labels decoded to strings": lambda: iter_batches(False),
               "pyarrow.dataset to_batches (multithreaded scanner)": dataset,
               "pyarrow row groups read in 2 threads (whole row groups in memory)": row_groups_in_threads,
               "DuckDB Arrow streaming (to_arrow_reader)": duck_arrow}
    for backend in ("jemalloc", "mimalloc", "system"):
        if backend in pa.supported_memory_backends():
            pool = getattr(pa, f"{backend}_memory_pool")()
            readers[f"iter_batches as crossent, {backend} memory pool"] = with_pool(pool, lambda: iter_batches(True))
    times = {n: [] for n in readers}
    cpus = {n: [] for n in readers}
    for _ in range(args.runs):
        for name, fn in readers.items():
            t0, c0 = time.perf_counter(), time.process_time()
            assert fn() == args.rows
            times[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
    print("Reading engines, the columns alone (medians: wall s / CPU s of all threads):")
    for name, ts in times.items():
        print(f"  {name:72s} {statistics.median(ts):6.3f} s {statistics.median(cpus[name]):6.3f} s CPU"
              "  runs: " + ", ".join(f"{x:.2f}" for x in ts))


if __name__ == "__main__":
    main()
