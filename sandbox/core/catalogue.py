"""Every setting of the platform, declared once: name, type, default, help, and the check
its value must pass (:class:`Setting`). :mod:`sandbox.core.settings` reads them;
docs/settings.md lists them (a test keeps the two equal)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    kind: type = str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # what the check demands, in words


def _positive(value: Any) -> bool:
    return value > 0


def _fraction(value: Any) -> bool:
    return 0 < value <= 1


class PathList(tuple):
    """A list of folders: a TOML array of strings, or one string split at ``os.pathsep``."""

    def __new__(cls, raw: Any = ()):
        if isinstance(raw, str):
            raw = [part for part in raw.split(os.pathsep) if part.strip()]
        if not isinstance(raw, list | tuple) or not all(isinstance(p, str) for p in raw):
            raise TypeError(raw)
        return super().__new__(cls, (p.strip() for p in raw))


def _absolute_paths(value: Any) -> bool:
    return all(Path(p).is_absolute() for p in value)


class HostList(tuple):
    """A list of ``host`` or ``host:port``: a TOML array of strings, or one string split at ','."""

    def __new__(cls, raw: Any = ()):
        if isinstance(raw, str):
            raw = raw.split(",")
        if not isinstance(raw, list | tuple) or not all(isinstance(h, str) for h in raw):
            raise TypeError(raw)
        return super().__new__(cls, (h.strip() for h in raw if h.strip()))


def _hosts(value: Any) -> bool:
    from urllib.parse import urlsplit

    for entry in value:
        try:
            parts = urlsplit(f"//{entry}")
            if not parts.hostname or parts.path or parts.query or "@" in entry or "," in entry:
                return False
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            return False
    return True


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "engine",
        "duckdb",
        "SQL engine for aggregate jobs",
        str,
        lambda v: v in {"duckdb", "spark"},
        "one of: duckdb, spark",
    ),
    Setting(
        "job.time_limit_s",
        60.0,
        "wall-clock limit of one job's worker, seconds",
        float,
        _positive,
        "a positive number",
    ),
    Setting(
        "job.memory_limit_mb",
        4096,
        "address-space limit of one job's worker, MiB; DuckDB gets half of it",
        int,
        lambda v: v >= 3072,
        "at least 3072 (pyarrow and DuckDB reserve address space up front)",
    ),
    Setting(
        "job.max_output_rows",
        10_000,
        "most output rows a job may produce; more fails the job",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "job.threads",
        2,
        "DuckDB threads inside a worker",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "job.spare_worker",
        True,
        "keep one pre-started worker so jobs do not wait for imports",
        bool,
    ),
    Setting(
        "disclosure.min_entities",
        10,
        "platform minimum: distinct entities per released cell (agreements may only raise it)",
        int,
        lambda v: v >= 2,
        "at least 2",
    ),
    Setting(
        "disclosure.dominance_n",
        2,
        "platform default n of the (n, k) dominance rule",
        int,
        lambda v: v in (1, 2),
        "1 or 2",
    ),
    Setting(
        "disclosure.dominance_k",
        0.9,
        "platform maximum k of the (n, k) dominance rule (agreements may only lower it)",
        float,
        _fraction,
        "a fraction in (0, 1]",
    ),
    Setting(
        "disclosure.p_ratio",
        0.1,
        "platform minimum p of the p% rule (agreements may only raise it)",
        float,
        lambda v: 0 <= v < 1,
        "a fraction in [0, 1)",
    ),
    Setting(
        "disclosure.class_share",
        0.9,
        "platform maximum share of a margin's entities one count cell may hold before the "
        "class rule suppresses it (agreements may only lower it)",
        float,
        _fraction,
        "a fraction in (0, 1]",
    ),
    Setting(
        "disclosure.missing_cells",
        "pass",
        "platform minimum verdict for a cell that left out rows with a missing value, as ACRO's "
        "check_missing_values: pass (a note), review or suppress (agreements may only raise it)",
        str,
        lambda v: v in ("pass", "review", "suppress"),
        "one of pass, review, suppress",
    ),
    Setting(
        "ingest.batch_rows",
        131_072,
        "rows per Arrow batch when ingesting a source",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "ingest.compression",
        "zstd",
        "Parquet compression of dataset snapshots",
        str,
        lambda v: v in {"zstd", "snappy", "none"},
        "one of: zstd, snappy, none",
    ),
    Setting(
        "api.max_body_mb",
        1.0,
        "largest HTTP request body the API reads, MiB (uploads have their own cap); more is 413",
        float,
        _positive,
        "a positive number",
    ),
    Setting(
        "api.max_upload_mb",
        512.0,
        "largest dataset upload the API accepts, MiB; more is 413",
        float,
        _positive,
        "a positive number",
    ),
    Setting(
        "api.rate_per_minute",
        600,
        "requests one principal may make per minute to the server, all its processes "
        "together (token bucket); more is 429",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "api.source_roots",
        PathList(),
        "folders whose files providers may register by server-side path through the API "
        "(empty: none; database hosts: api.source_hosts)",
        PathList,
        _absolute_paths,
        "absolute folder paths (environment: separated by ':')",
    ),
    Setting(
        "api.source_hosts",
        HostList(),
        "database hosts a provider may name in a postgresql:// source through the API, "
        "as host (port 5432) or host:port (empty: none)",
        HostList,
        _hosts,
        "host or host:port entries (environment: separated by ',')",
    ),
    Setting(
        "review.person_jobs",
        True,
        "hold every table-mode person job (any person dataset reached, sole proprietors "
        "included) for the two output checkers before anything is released (Art. 15)",
        bool,
    ),
    Setting(
        "review.undeclared_domains",
        True,
        "hold for the two output checkers a table-mode job that groups or filters on a column "
        "without a declared domain: values seen in the data are not a declared domain",
        bool,
    ),
    Setting(
        "review.person_jobs_per_quarter",
        50,
        "most table-mode person jobs one agreement may queue per calendar quarter (UTC); "
        "exact tables about persons fall outside any epsilon (rule person_jobs_per_quarter)",
        int,
        lambda v: v >= 0,
        "a whole number of at least 0",
    ),
    Setting(
        "differencing.enabled",
        True,
        "check every released cell against all earlier releases on the same dataset and "
        "suppress cells that would single out a few entities (rule differencing, Art. 15)",
        bool,
    ),
    Setting(
        "differencing.k",
        10,
        "smallest group of entities two releases may differ by, or earlier parts may leave "
        "uncovered, before a cell is suppressed by the differencing defence",
        int,
        lambda v: v >= 2,
        "a whole number of at least 2",
    ),
    Setting(
        "he.processes",
        2,
        "worker processes that share the groups of one HE aggregate job",
        int,
        lambda v: 1 <= v <= 64,
        "a whole number from 1 to 64",
    ),
    Setting(
        "he.max_values",
        2_000_000,
        "most values (keys) in one HE aggregate request",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "he.max_request_mb",
        512.0,
        "largest HE aggregate request body (context, keys, ciphertexts), MiB; more is 413",
        float,
        _positive,
        "a positive number",
    ),
    Setting(
        "verify.consumer_per_minute",
        600,
        "verification subjects one consumer may ask per minute, all products; more is 429",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.consumer_per_day",
        20_000,
        "verification subjects one consumer may ask per day, all products; more is 429",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.subject_per_day",
        10,
        "answers about one subject per day across all consumers; more is refused (Art. 19)",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.throttled_per_minute",
        5,
        "per-minute allowance of a consumer throttled by the enumeration defence",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.guess_ids_throttle",
        3,
        "distinct subjects missed for one check value (a name) in a day that throttle a consumer",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.guess_ids_block",
        5,
        "distinct subjects missed for one check value in a day that block a consumer",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.miss_min_calls",
        50,
        "answers a consumer must have had today before its share of misses is judged",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.miss_share_throttle",
        0.6,
        "share of miss codes (mismatch, not_found) in a day that throttles a consumer",
        float,
        _fraction,
        "a fraction in (0, 1]",
    ),
    Setting(
        "verify.miss_share_block",
        0.9,
        "share of miss codes in a day that blocks a consumer",
        float,
        _fraction,
        "a fraction in (0, 1]",
    ),
    Setting(
        "verify.commit_interval_ms",
        2.0,
        "how long the group commit gathers verification calls before one durable commit",
        float,
        lambda v: 0 <= v <= 100,
        "between 0 and 100",
    ),
    Setting(
        "verify.value_per_hour",
        20,
        "answers with one value of an input field in a rolling hour, all consumers and products",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.value_per_day",
        60,
        "answers with one value of an input field in a rolling day, all consumers and products",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.subject_lifetime",
        1000,
        "answers ever about one subject (one value of a subject key), all consumers",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "verify.alert_accounts",
        3,
        "different consumers trying one value within a day that alert the authority",
        int,
        lambda v: v >= 2,
        "a whole number of at least 2",
    ),
    Setting(
        "psi.build_processes",
        2,
        "processes that build a PSI setup in parallel (shards under one key)",
        int,
        lambda v: 1 <= v <= 64,
        "a whole number from 1 to 64",
    ),
    Setting(
        "psi.data_structure",
        "raw",
        "form of the PSI setup: raw (exact, 33 bytes per item, shards merge into one), "
        "gcs or bloom (about 6 to 8 bytes per item, false positives up to psi.fpr)",
        str,
        lambda v: v in {"raw", "gcs", "bloom"},
        "one of: raw, gcs, bloom",
    ),
    Setting(
        "psi.fpr",
        1e-9,
        "false-positive bound of one PSI request of psi.max_items items (gcs and bloom)",
        float,
        lambda v: 0 < v < 0.01,
        "a number in (0, 0.01)",
    ),
    Setting(
        "psi.min_items",
        100,
        "default minimum distinct items of a PSI list when terms do not say",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "psi.max_items",
        1_000_000,
        "largest PSI list any terms may allow; also the client size the setup is built for",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "psi.daily_cap",
        20,
        "default PSI match requests per operator, terms and UTC day when terms do not say",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "psi.chunk_items",
        20_000,
        "most items in one PSI chunk (about 35 bytes each on the wire); more is 413",
        int,
        lambda v: v >= 2,
        "a whole number of at least 2",
    ),
    Setting(
        "psi.group_threshold",
        10,
        "default smallest platform-side group counted in PSI group cardinality",
        int,
        _positive,
        "a positive whole number",
    ),
    Setting(
        "spark.master",
        "local[2]",
        "Spark master for SQL jobs when engine = spark (local[N], spark://host:7077, yarn, ...)",
        str,
        lambda v: bool(v.strip()),
        "a Spark master URL",
    ),
    Setting(
        "ray.address",
        "",
        "Ray cluster for PSI set-up and HE group-sum shards: empty = local processes, "
        "'local' = a 2-CPU cluster started here, or a cluster address (ray://host:10001)",
        str,
    ),
    Setting(
        "ray.dispatch_jobs",
        False,
        "with ray.address set, run each SQL job's isolated DuckDB worker as a Ray task on a "
        "cluster node instead of on the platform host",
        bool,
    ),
)
