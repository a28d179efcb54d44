"""Benchmark: how long a job waits for its worker, and what the isolation layers cost.

Usage::

    python bench/worker.py [--rows 1000000] [--runs 5] [--settle 1.5]
    python bench/worker.py --quick       # --runs 2 (make bench)

Figures (``name: value unit``, medians of ``--runs``):

``wait_no_spare`` / ``wait_spare``
    from :meth:`Runner.run` to the worker reading its task (``RunResult.wait_s``):
    a fresh worker must start Python and import DuckDB and pyarrow first; a
    pre-started spare has done so already (``--settle`` seconds are left
    between runs, as between two operators' jobs, for the next spare to warm).
``run_no_spare`` / ``run_spare``
    the whole :meth:`Runner.run`: task, isolation, query, Arrow IPC result.
``bare_subprocess``
    a plain ``python -c`` subprocess running the same query over the same
    Parquet file with the same DuckDB settings (a pyarrow dataset, threads,
    memory limit), returning the rows through a pipe: no limits, no
    namespaces, no seccomp, no Landlock, no scrubbing. The ratio
    ``run_no_spare / bare_subprocess`` is the whole price of the runner.
``layers_isolate`` / ``layers_confine``
    the set-up of the layers themselves, timed inside a throw-away process
    (:func:`sandbox.run.isolation.isolate`: limits, network namespace, capabilities,
    seccomp; :func:`sandbox.run.isolation.confine`: Landlock).

Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _results
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.run.runner import Limits, Runner, _scrubbed_env  # noqa: E402

SQL = "SELECT g, COUNT(*) AS n, SUM(x) AS s FROM t GROUP BY g ORDER BY g"

BARE = """
import sys, duckdb, pyarrow.dataset as ds
con = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "2048MB"})
con.register("t", ds.dataset(sys.argv[1], format="parquet"))
rows = con.execute(sys.argv[2]).fetchall()
print(len(rows))
"""

LAYERS = """
import json, sys, time
from pathlib import Path
from sandbox.run import isolation
t0 = time.perf_counter()
layers = isolation.isolate(60, 4096, 64)
t1 = time.perf_counter()
import duckdb, pyarrow.dataset  # noqa
t2 = time.perf_counter()
layers += isolation.confine([Path(sys.argv[1])], Path.cwd())
t3 = time.perf_counter()
print(json.dumps({"isolate": t1 - t0, "imports": t2 - t1, "confine": t3 - t2, "layers": layers}))
"""


def _data(rows: int, folder: Path) -> Path:
    path = folder / f"bench_worker_{rows}.parquet"
    rng = np.random.default_rng(5)
    pq.write_table(
        pa.table({"g": rng.integers(0, 16, rows), "x": rng.integers(0, 1000, rows)}), path
    )
    return path


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=1.5)
    args = _results.parse_args(parser, {"runs": 2})
    with _results.recording(__file__, args):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    data = _data(args.rows, folder)
    tables = {"t": data}
    limits = Limits(time_s=120)

    cold = Runner(limits, spare=False)
    warm = Runner(limits, spare=True)
    figures: dict[str, list[float]] = {
        k: [] for k in ("wait_no_spare", "run_no_spare", "wait_spare", "run_spare", "bare")
    }
    layer_times: dict[str, list[float]] = {"isolate": [], "confine": [], "imports": []}
    in_force: list[str] = []
    try:
        cold.run(SQL, tables)  # warm-up: the page cache, the interpreter's files
        time.sleep(args.settle)
        warm.run(SQL, tables)
        for _ in range(args.runs):
            time.sleep(args.settle)
            r = cold.run(SQL, tables)
            figures["wait_no_spare"].append(r.wait_s)
            figures["run_no_spare"].append(r.total_s)
            time.sleep(args.settle)
            r = warm.run(SQL, tables)
            assert r.spare_used
            figures["wait_spare"].append(r.wait_s)
            figures["run_spare"].append(r.total_s)
            in_force = list(r.layers)
            time.sleep(args.settle)
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", BARE, str(data), SQL], check=True, capture_output=True
            )
            figures["bare"].append(time.perf_counter() - started)
            env = _scrubbed_env()
            out = subprocess.run(
                [sys.executable, "-c", LAYERS, str(data)],
                check=True,
                capture_output=True,
                text=True,
                cwd=folder,
                env=env,
            ).stdout
            measured = json.loads(out.strip().splitlines()[-1])
            for key in layer_times:
                layer_times[key].append(measured[key])
    finally:
        cold.close()
        warm.close()

    figure("rows", args.rows, "count")
    figure("runs", args.runs, "count")
    for name in ("wait_no_spare", "wait_spare", "run_no_spare", "run_spare"):
        figure(name, _median(figures[name]) * 1000, "ms", fmt=".1f")
    bare = _median(figures["bare"])
    figure("bare_subprocess", bare * 1000, "ms", fmt=".1f")
    figure("layers_isolate", _median(layer_times["isolate"]) * 1000, "ms", fmt=".2f")
    figure("layers_confine", _median(layer_times["confine"]) * 1000, "ms", fmt=".2f")
    figure("worker_imports", _median(layer_times["imports"]) * 1000, "ms", fmt=".1f")
    figure(
        "ratio_wait_spare_vs_no_spare",
        _median(figures["wait_spare"]) / _median(figures["wait_no_spare"]),
        "x",
        fmt=".5f",
    )
    figure("ratio_run_no_spare_vs_bare", _median(figures["run_no_spare"]) / bare, "x", fmt=".2f")
    figure("ratio_run_spare_vs_bare", _median(figures["run_spare"]) / bare, "x", fmt=".2f")
    figure("layers_in_force", ",".join(in_force))


if __name__ == "__main__":
    main()
