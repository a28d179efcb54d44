"""Benchmark: the release history's evidence at scale (issue 25), with and without it.

Usage::

    python bench/history.py [--rows 10000000] [--runs 3] [--settle 1.5]
    python bench/history.py --quick      # --rows 1000000 --runs 2 (make bench)
    python bench/history.py --engine spark --rows 100000000 --runs 1 --no-ten-thousand

Over the payments table of ``bench/_data.py`` (about rows/10 persons), registered
twice: as ``t`` (``county`` and ``month`` dimensions) and as ``u`` (the same file,
``kwh`` a dimension too), it times :meth:`sandbox.run.execution.JobService.submit`
of two everyday tables:

``two_way``
    ``SELECT county, month, SUM(amount) ... GROUP BY county, month``: 264 cells of
    about rows/264 payments each. ``two_way_evidence`` runs with the differencing
    defence (each cell's contributors as a bitmap, checked against every earlier
    release and recorded), ``two_way_plain`` with ``differencing.enabled = false``
    (the per-cell evidence of the output check only): the reference. The aim of
    issue 25 is evidence <= 1.5x plain.
``ten_thousand``
    ``county, month, kwh // 55`` (11 x 24 x 37 = 9,768 cells, under the default cap of 10,000 output rows) with evidence: its
    checks complete.

With ``--engine spark`` the jobs run on Spark ``local[2]`` (the executors fold each
cell's entity numbers into bitmaps) and ``peak_rss`` reports the largest resident
memory of the platform's process and of its children (the Spark JVM, the job
worker) sampled every 0.2 s.

``register_numbering`` is the one-off numbering of a version's entities
(``sandbox.guard.numbering``), done when the version is registered, timed here on a
second numbering of the same version under another lineage name. Each figure is
the median of ``--runs`` warm runs after one warm-up, the cases interleaved round
by round. With ``--acro-python`` (an interpreter of an environment where ``acro`` is
installed, e.g. ``python -m venv acro-env && acro-env/bin/pip install acro``), ACRO's
crosstab of the same two-way table is timed beside them as a peer figure; ACRO is not
a dependency of the platform.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _data
import _results
from _results import figure
from sql_job import interleaved, runtime_of, setup

from policies.classes import Classification
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.guard.numbering import numbering_for
from sandbox.run.execution import JobService

TWO_WAY = "SELECT county, month, SUM(amount) AS total FROM t GROUP BY county, month"
TEN_THOUSAND = (
    "SELECT county, month, kwh // 55 AS band, SUM(amount) AS total, COUNT(*) AS n "
    "FROM u GROUP BY county, month, kwh // 55"
)
AIM_RATIO = 1.5


def _with_kwh_dimension(platform, rows: int) -> None:
    """The same payments file as dataset ``u``, with ``kwh`` a dimension."""
    from sandbox.core.principals import by_name

    classification = dict(_data.CLASSIFICATION)
    classification["columns"] = {**_data.CLASSIFICATION["columns"], "kwh": "dimension"}
    with platform.store.read() as conn:
        provider = by_name(conn, "bench_provider")
    source = _data.payments_parquet(rows)
    vault.register(platform, provider, "u", str(source), Classification.from_dict(classification))
    with platform.store.read() as conn:
        authority = by_name(conn, "bench_authority")
    add_grant(platform, authority, "bench_operator", "u", until="2030-01-01")


ACRO_SCRIPT = """
import sys, time
import acro, pandas as pd
frame = pd.read_parquet(sys.argv[1], columns=["county", "month", "amount"])
session = acro.ACRO(suppress=True)
started = time.perf_counter()
session.crosstab(frame["county"], frame["month"], values=frame["amount"], aggfunc="sum")
print("ACRO_SECONDS", time.perf_counter() - started)
"""


def _acro_crosstab(rows: int, python: str | None) -> float | None:
    """ACRO's crosstab with suppression of the two-way table, timed inside ``python``
    (an interpreter where ``acro`` is installed: its own environment, so its pins do not
    touch the platform's), or None without one."""
    import subprocess

    if not python:
        return None
    done = subprocess.run(
        [python, "-c", ACRO_SCRIPT, str(_data.payments_parquet(rows))],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("ACRO_SECONDS"))
    return float(line.split()[1])


class PeakMemory:
    """The largest resident memory of this process and of its children, sampled."""

    def __init__(self, every: float = 0.2) -> None:
        import threading

        import psutil

        self.me = psutil.Process()
        self.own = self.children = 0
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                self.own = max(self.own, self.me.memory_info().rss)
                kids = sum(c.memory_info().rss for c in self.me.children(recursive=True))
                self.children = max(self.children, kids)
            except psutil.Error:
                pass
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def bench_size(
    rows: int, runs: int, settle: float, engine: str, ten_thousand: bool, acro_python: str | None
) -> None:
    print(f"# rows={rows} engine={engine}", flush=True)
    peak = PeakMemory()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        platform, operator, version = setup(Path(tmp) / "home", rows)
        if ten_thousand:
            _with_kwh_dimension(platform, rows)
        platform.settings = platform.settings.changed(
            **{"engine": engine, "job.time_limit_s": max(platform.settings.job.time_limit_s, 3600)}
        )
        service = JobService(platform, spare=engine == "duckdb")

        def submit(sql: str, evidence: bool):
            platform.settings = platform.settings.changed(**{"differencing.enabled": evidence})
            return service.submit(operator, {"sql": sql})

        try:
            started = time.perf_counter()
            first = submit(TWO_WAY, True)
            figure(f"{rows}_first_job", time.perf_counter() - started, "s", first.state.value)
            started = time.perf_counter()
            numbering_for(platform, "bench-numbering", version)  # as registration does
            figure(
                f"{rows}_register_numbering",
                time.perf_counter() - started,
                "s",
                "once per dataset version, at its registration",
            )
            cases = {
                "two_way_evidence": lambda: submit(TWO_WAY, True),
                "two_way_plain": lambda: submit(TWO_WAY, False),
            }
            if ten_thousand:
                submit(TEN_THOUSAND, True)  # numbers u as well, outside the timed rounds
                cases["ten_thousand"] = lambda: submit(TEN_THOUSAND, True)
            times, results = interleaved(cases, runs, settle)
        finally:
            service.close()
        states = {name: sorted({o.state.value for o in outs}) for name, outs in results.items()}
        worker = {
            name: statistics.median(runtime_of(platform, o.job_id).get("run_s", 0) for o in outs)
            for name, outs in results.items()
        }
        platform.close()
    peak.stop()
    figure(f"{rows}_peak_rss_platform", peak.own / 2**20, "MiB", "the platform's own process")
    figure(
        f"{rows}_peak_rss_children",
        peak.children / 2**20,
        "MiB",
        "the Spark JVM" if engine == "spark" else "the job workers",
    )
    med = {name: statistics.median(values) for name, values in times.items()}
    for name in cases:
        spread = f"min {min(times[name]):.3f}, max {max(times[name]):.3f}"
        figure(f"{rows}_{name}", med[name], "s", f"{','.join(states[name])}; {spread}")
        figure(f"{rows}_{name}_worker", worker[name], "s", "runner: take worker..read")
    figure(
        f"{rows}_ratio_evidence_vs_plain",
        med["two_way_evidence"] / med["two_way_plain"],
        "x",
        f"aim <= {AIM_RATIO:g}x",
    )
    acro_s = _acro_crosstab(rows, acro_python)
    if acro_s is None:
        figure(f"{rows}_acro_crosstab", "not measured", "", "--acro-python: a Python with acro")
    else:
        figure(f"{rows}_acro_crosstab", acro_s, "s", "ACRO crosstab with suppression, same rows")
        figure(
            f"{rows}_ratio_acro_vs_evidence", acro_s / med["two_way_evidence"], "x", "aim >= 10x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--runs", type=int, default=3, help="timed warm runs per figure")
    parser.add_argument(
        "--settle", type=float, default=1.5, help="seconds of sleep before each call"
    )
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    parser.add_argument(
        "--spark-driver-memory",
        default="8g",
        help="heap of the local Spark JVM (driver and executors in one; 1g, Spark's "
        "default, runs out at 100M rows)",
    )
    parser.add_argument(
        "--acro-python",
        help="a Python interpreter with acro installed, for ACRO's crosstab as a peer figure",
    )
    parser.add_argument(
        "--no-ten-thousand", action="store_true", help="skip the table of about 10,000 cells"
    )
    args = _results.parse_args(parser, {"rows": [1_000_000], "runs": 2}, argv)
    if args.engine == "spark":  # read when the platform starts its Spark session
        os.environ["PYSPARK_SUBMIT_ARGS"] = (
            f"--driver-memory {args.spark_driver_memory} pyspark-shell"
        )
    with _results.recording(__file__, args):
        for rows in args.rows:
            bench_size(
                rows,
                args.runs,
                args.settle,
                args.engine,
                not args.no_ten_thousand,
                args.acro_python,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
