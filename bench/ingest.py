"""Benchmark: registering a CSV in the vault against DuckDB's own CSV -> Parquet copy.

Usage::

    python bench/ingest.py [--rows 10000000] [--repeat 3] [--variants] [--diagnose] [--database]
    python bench/ingest.py --quick       # --rows 1000000 --repeat 2 (make bench)

What it measures, in one run of this script (same machine, same page cache: the
CSV is read once beforehand so neither side pays the disk):

``duckdb_copy``
    the reference: ``COPY (SELECT * FROM read_csv('f.csv')) TO 'x.parquet'
    (FORMAT parquet)`` in an in-process DuckDB with its default settings (all
    cores, snappy). ``duckdb_copy_zstd`` adds ``COMPRESSION zstd``, the vault's
    default codec, for a like-for-like reading.
``register``
    :func:`sandbox.data.vault.register` on a fresh platform home (``Platform.init`` in
    a temporary folder, one provider, a classification of every column), in a
    child process so that DuckDB's copy in this process does not count in its
    memory. Its time is split into ingestion (CSV -> Parquet), hashing,
    profiling and the rest (store, ledger, renames).

Each figure is the median of ``--repeat`` runs, interleaved (register, copy,
copy zstd, register, ...) so that a change in the machine's load hits both sides.

Peak memory of the register step: ``register_peak_rss`` is the child's own
high-water mark (``VmHWM`` of ``/proc/self/status``, read at its end).
``register_ru_maxrss`` is ``ru_maxrss`` of the child (``os.wait4``, the per-child
form of ``getrusage(RUSAGE_CHILDREN)``) for the first child only, which is
started before this process has run DuckDB. On Linux, ``ru_maxrss`` keeps the
high-water mark of the image the child replaced at ``exec``, that is of this
process at fork time; after the DuckDB copy (which leaves several hundred MB
resident here) it would report this process's memory, not the child's.

The time split wraps three functions of ``sandbox.data.vault`` (``_write_snapshot``,
``_sha256``, ``profile_parquet``) with timers in the child. Known shortcut: it
leans on those private names; a phase hook in ``vault.register`` would remove it.

``--variants`` repeats the register step with other ingestion settings through
the environment (``SANDBOX_INGEST_BATCH_ROWS``, ``SANDBOX_INGEST_COMPRESSION``).
``--diagnose`` times the pieces with plain pyarrow and DuckDB (CSV parse alone,
Parquet encode alone with a few writer options, the two scans of the profile),
to show where a faster ingestion could come from. Nothing here asserts a time:
the aims (ratio <= 1.5x, peak memory < 1.5 GB) are printed beside the figures.
``--database`` adds the connectors' figures: the table read from PostgreSQL against
ADBC, and from MariaDB against a plain cursor (``bench/_ingest_db.py``).
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
from pathlib import Path

import _data
import _results

AIM_RATIO = 1.5
AIM_RSS_MB = 1536
PHASES = ("ingest", "hash", "profile")
VARIANTS = (
    {"SANDBOX_INGEST_BATCH_ROWS": "1048576"},
    {"SANDBOX_INGEST_BATCH_ROWS": "32768"},
    {"SANDBOX_INGEST_COMPRESSION": "snappy"},
    {"SANDBOX_INGEST_COMPRESSION": "none"},
)


def line(name: str, value, unit: str = "", note: str = "") -> None:
    _results.figure(name, value, unit, note, fmt=".2f" if isinstance(value, float) else None)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _proc_status_mb(field: str) -> float:
    """``VmHWM`` / ``VmRSS`` of this process in MB (Linux), NaN elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for row in fh:
                if row.startswith(field + ":"):
                    return int(row.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def warm_cache(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as fh:
        while fh.read(16 << 20):
            pass
    return time.perf_counter() - started


def make_csv(rows: int) -> Path:
    """The benchmark CSV, generated in a child so that this process stays small."""
    script = "import sys, _data; print(_data.payments_csv(int(sys.argv[1])))"
    out = subprocess.run(
        [sys.executable, "-c", script, str(rows)],
        cwd=Path(__file__).resolve().parent,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def duckdb_copy(csv: Path, out: Path, compression: str | None = None) -> float:
    """DuckDB's own CSV -> Parquet copy, in this process, default settings."""
    import duckdb

    options = "FORMAT parquet" + (f", COMPRESSION {compression}" if compression else "")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        started = time.perf_counter()
        con.execute(
            f"COPY (SELECT * FROM read_csv({_sql_literal(str(csv))})) "
            f"TO {_sql_literal(str(out))} ({options})"
        )
        return time.perf_counter() - started
    finally:
        con.close()
        out.unlink(missing_ok=True)


def run_register_child(csv: Path, env_extra: dict[str, str] | None = None) -> dict:
    """Run the register step in a child; its report plus its ``ru_maxrss``."""
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(csv)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    out = proc.stdout.read()
    proc.stdout.close()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"register child failed (exit {proc.returncode})")
    report = json.loads(out[out.rindex("{") :])
    report["ru_maxrss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return report


def child(csv: Path) -> None:
    """In the child: a fresh platform home, one provider, one timed register."""
    import pyarrow.parquet as pq

    from policies.classes import Classification
    from sandbox.core import principals
    from sandbox.core.ledger import now_utc
    from sandbox.core.platform import Platform
    from sandbox.core.principals import Role
    from sandbox.data import vault

    phases: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    vault._write_snapshot = timed("ingest", vault._write_snapshot)
    vault._sha256 = timed("hash", vault._sha256)
    vault.profile_parquet = timed("profile", vault.profile_parquet)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        platform = Platform.init(Path(tmp) / "home")
        with platform.store.transaction() as conn:
            provider, _token = principals.insert(
                conn, "bench_provider", Role.PROVIDER, "bench", None, now_utc()
            )
        rss_before = _proc_status_mb("VmRSS")
        started = time.perf_counter()
        result = vault.register(
            platform,
            provider,
            "payments",
            str(csv),
            Classification.from_dict(_data.CLASSIFICATION),
        )
        total = time.perf_counter() - started
        report = {
            "total_s": total,
            **{f"{k}_s": v for k, v in phases.items()},
            "rows": result.version.rows,
            "bytes": result.version.bytes,
            "row_groups": pq.read_metadata(result.version.path).num_row_groups,
            "rss_before_mb": rss_before,
            "peak_rss_mb": _proc_status_mb("VmHWM"),
            "self_ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "batch_rows": platform.settings.ingest.batch_rows,
            "compression": platform.settings.ingest.compression,
        }
        platform.close()
    print(json.dumps(report), flush=True)


def _median(reports: list[dict], key: str) -> float:
    return statistics.median(r.get(key, 0.0) for r in reports)


def print_register(prefix: str, reports: list[dict], reference_s: float) -> None:
    total = _median(reports, "total_s")
    line(f"{prefix}_total", total, "s", f"median of {len(reports)}")
    parts = 0.0
    for phase in PHASES:
        seconds = _median(reports, f"{phase}_s")
        parts += seconds
        line(f"{prefix}_{phase}", seconds, "s", f"{100 * seconds / total:.0f}% of register")
    line(f"{prefix}_other", max(0.0, total - parts), "s", "store, ledger, rename")
    peak = max(r["peak_rss_mb"] for r in reports)
    line(f"{prefix}_peak_rss", peak, "MB", f"child's VmHWM, aim < {AIM_RSS_MB} MB")
    line(f"{prefix}_rss_before_register", reports[0]["rss_before_mb"], "MB", "after imports")
    line(f"{prefix}_snapshot_bytes", reports[0]["bytes"], "bytes")
    line(f"{prefix}_snapshot_row_groups", reports[0]["row_groups"])
    line(f"{prefix}_ratio_vs_duckdb_copy", total / reference_s, "x", f"aim <= {AIM_RATIO}x")
    ingest = _median(reports, "ingest_s")
    line(f"{prefix}_ingest_ratio_vs_duckdb_copy", ingest / reference_s, "x", "CSV -> Parquet alone")


def diagnose(csv: Path) -> None:
    """The pieces of a CSV registration, timed with plain pyarrow and DuckDB."""
    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    def read(threads: bool) -> tuple[float, pa.Table]:
        started = time.perf_counter()
        reader = pacsv.open_csv(
            csv,
            read_options=pacsv.ReadOptions(use_threads=threads, block_size=1 << 20),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
        table = reader.read_all()
        return time.perf_counter() - started, table

    seconds, _table = read(False)
    line("diag_csv_parse_1thread", seconds, "s", "the connector's reader options")
    del _table
    seconds, table = read(True)
    line("diag_csv_parse_threads", seconds, "s", "use_threads=True")
    table = table.combine_chunks()
    with tempfile.TemporaryDirectory(prefix="bench-diag-", dir=_data.DATA_DIR) as tmp:
        out = Path(tmp) / "x.parquet"
        for label, options in (
            ("zstd", {"compression": "zstd"}),
            ("snappy", {"compression": "snappy"}),
            ("zstd_dict_county_only", {"compression": "zstd", "use_dictionary": ["county"]}),
        ):
            started = time.perf_counter()
            with pq.ParquetWriter(out, table.schema, **options) as writer:
                for batch in table.to_batches(131_072):
                    writer.write_batch(batch)
            line(f"diag_parquet_write_{label}", time.perf_counter() - started, "s")
            line(f"diag_parquet_write_{label}_bytes", out.stat().st_size, "bytes")
        del table
        # ``out`` now holds the last file written (zstd, 131072-row groups, as the vault's).
        source = f"read_parquet({_sql_literal(str(out))})"
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        names = [f.name for f in pq.read_schema(out)]
        scans = {
            "profile_scan_all_columns": ", ".join(
                f'count("{n}"), approx_count_distinct("{n}")' for n in names
            ),
            "profile_scan_without_key": ", ".join(
                f'count("{n}")' + ("" if n == "pid" else f', approx_count_distinct("{n}")')
                for n in names
            ),
        }
        for label, select in scans.items():
            started = time.perf_counter()
            con.execute(f"SELECT count(*), {select} FROM {source}").fetchone()
            line(f"diag_{label}", time.perf_counter() - started, "s")
        started = time.perf_counter()
        con.execute(
            "SELECT count(*), count_if(n > 1), sum(n) FILTER (WHERE n > 1) FROM "
            f"(SELECT pid, count(*) AS n FROM {source} WHERE pid IS NOT NULL GROUP BY pid)"
        ).fetchone()
        line("diag_profile_grouped_entity_key", time.perf_counter() - started, "s")
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--variants", action="store_true", help="also register with other ingestion settings"
    )
    parser.add_argument("--diagnose", action="store_true", help="time the pieces with pyarrow")
    parser.add_argument(
        "--database",
        nargs="?",
        const="postgres,mysql",
        default=None,
        help="also read the table from PostgreSQL and MariaDB, or the one named "
        "(--database postgres) (bench/_ingest_db.py)",
    )
    parser.add_argument("--child", metavar="CSV", help=argparse.SUPPRESS)
    args = _results.parse_args(parser, {"rows": 1_000_000, "repeat": 2}, argv)
    if args.child:
        child(Path(args.child))
        return 0

    with _results.recording(__file__, args):
        started = time.perf_counter()
        csv = make_csv(args.rows)
        line("rows", args.rows, "rows")
        line("csv_bytes", csv.stat().st_size, "bytes")
        line("data_ready", time.perf_counter() - started, "s", "generated or reused")
        line("csv_read_warm", warm_cache(csv), "s", "page cache filled before timing")
        line("parent_rss_at_first_child", _proc_status_mb("VmRSS"), "MB")

        reports: list[dict] = []
        copies: list[float] = []
        copies_zstd: list[float] = []
        with tempfile.TemporaryDirectory(prefix="bench-duckdb-", dir=_data.DATA_DIR) as tmp:
            for _ in range(args.repeat):
                reports.append(run_register_child(csv))
                copies.append(duckdb_copy(csv, Path(tmp) / "copy.parquet"))
                copies_zstd.append(duckdb_copy(csv, Path(tmp) / "copy.parquet", "zstd"))
        reference = statistics.median(copies)
        line("duckdb_copy", reference, "s", f"reference, snappy, median of {len(copies)}")
        line("duckdb_copy_zstd", statistics.median(copies_zstd), "s")
        print_register("register", reports, reference)
        line(
            "register_ru_maxrss",
            reports[0]["ru_maxrss_mb"],
            "MB",
            "first child, started before DuckDB ran here",
        )
        line(
            "register_settings",
            f"batch_rows={reports[0]['batch_rows']} compression={reports[0]['compression']}",
        )
        if args.variants:
            for env in VARIANTS:
                name = "variant_" + "_".join(
                    f"{k.removeprefix('SANDBOX_INGEST_').lower()}_{v}" for k, v in env.items()
                )
                runs = [run_register_child(csv, env) for _ in range(args.repeat)]
                print_register(name, runs, reference)
        if args.diagnose:
            diagnose(csv)
        if args.database:
            from _ingest_db import database_figures

            kinds = {k.strip() for k in args.database.split(",")}
            database_figures(csv, args.rows, args.repeat, line, _data.DATA_DIR, kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
