"""Every setting of the platform, declared once, as typed attributes of :class:`Values`.

A section (``[job]`` in ``sandbox.toml``) is a frozen dataclass; each of its fields is
one setting, declared with :func:`setting`: its default, help text, and the check its
value must pass with that check's rule in words. Code reads them as attributes
(``platform.settings.job.time_limit_s``), typed for mypy; :data:`SETTINGS` lists the
same declarations by dotted name for the loader (:mod:`sandbox.core.settings`), the
``sandbox settings`` command and docs/settings.md (a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.core.setting_kinds import (
    HostList,
    PathList,
    Setting,
    absolute_paths,
    declared,
    fraction,
    hosts,
    positive,
    setting,
    store_url,
)


@dataclass(frozen=True)
class Job:
    """``[job]``: One job's worker: its limits and threads."""

    time_limit_s: float = setting(
        60.0,
        "wall-clock limit of one job's worker, seconds",
        positive,
        "a positive number",
    )
    memory_limit_mb: int = setting(
        4096,
        "address-space limit of one job's worker, MiB; DuckDB gets half of it",
        lambda v: v >= 3072,
        "at least 3072 (pyarrow and DuckDB reserve address space up front)",
    )
    max_output_rows: int = setting(
        10_000,
        "most output rows a job may produce; more fails the job",
        positive,
        "a positive whole number",
    )
    threads: int = setting(
        2,
        "DuckDB threads inside a worker",
        positive,
        "a positive whole number",
    )
    spare_worker: bool = setting(
        True,
        "keep one pre-started worker so jobs do not wait for imports",
    )


@dataclass(frozen=True)
class Disclosure:
    """``[disclosure]``: The platform's release rules (agreements may only tighten them)."""

    min_entities: int = setting(
        10,
        "platform minimum: distinct entities per released cell (agreements may only raise it)",
        lambda v: v >= 2,
        "at least 2",
    )
    dominance_n: int = setting(
        2,
        "platform default n of the (n, k) dominance rule",
        lambda v: v in (1, 2),
        "1 or 2",
    )
    dominance_k: float = setting(
        0.9,
        "platform maximum k of the (n, k) dominance rule (agreements may only lower it)",
        fraction,
        "a fraction in (0, 1]",
    )
    p_ratio: float = setting(
        0.1,
        "platform minimum p of the p% rule (agreements may only raise it)",
        lambda v: 0 <= v < 1,
        "a fraction in [0, 1)",
    )
    class_share: float = setting(
        0.9,
        "platform maximum share of a margin's entities one count cell may hold before the "
        "class rule suppresses it (agreements may only lower it)",
        fraction,
        "a fraction in (0, 1]",
    )
    missing_cells: str = setting(
        "pass",
        "platform minimum verdict for a cell that left out rows with a missing value, as ACRO's "
        "check_missing_values: pass (a note), review or suppress (agreements may only raise it)",
        lambda v: v in ("pass", "review", "suppress"),
        "one of pass, review, suppress",
    )


@dataclass(frozen=True)
class Ingest:
    """``[ingest]``: Reading providers' sources into the vault."""

    batch_rows: int = setting(
        131_072,
        "rows per Arrow batch when ingesting a source",
        positive,
        "a positive whole number",
    )
    compression: str = setting(
        "zstd",
        "Parquet compression of dataset snapshots",
        lambda v: v in {"zstd", "snappy", "none"},
        "one of: zstd, snappy, none",
    )


@dataclass(frozen=True)
class Api:
    """``[api]``: The HTTP API and its web console: body and rate limits, sessions, where
    sources may be read from."""

    max_body_mb: float = setting(
        1.0,
        "largest HTTP request body the API reads, MiB (uploads have their own cap); more is 413",
        positive,
        "a positive number",
    )
    max_upload_mb: float = setting(
        512.0,
        "largest dataset upload the API accepts, MiB; more is 413",
        positive,
        "a positive number",
    )
    rate_per_minute: int = setting(
        600,
        "requests one principal may make per minute to the server, all its processes "
        "together (token bucket); more is 429",
        positive,
        "a positive whole number",
    )
    console_session_hours: float = setting(
        8.0,
        "hours a web console sign-in lasts (its session cookie); sign-out, a deactivation "
        "or a rotated token ends it sooner",
        positive,
        "a positive number",
    )
    source_roots: PathList = setting(
        PathList(),
        "folders whose files providers may register by server-side path through the API "
        "(empty: none; database hosts: api.source_hosts)",
        absolute_paths,
        "absolute folder paths (environment: separated by ':')",
    )
    source_hosts: HostList = setting(
        HostList(),
        "database hosts a provider may name in a postgresql://, mysql:// or mariadb:// "
        "source through the API, as host (port 5432; 3306 for MySQL) or host:port "
        "(empty: none)",
        hosts,
        "host or host:port entries (environment: separated by ',')",
    )


@dataclass(frozen=True)
class Review:
    """``[review]``: What holds a job for two output checkers."""

    person_jobs: bool = setting(
        True,
        "hold every table-mode person job (any person dataset reached, sole proprietors "
        "included) for the two output checkers before anything is released (Art. 15)",
    )
    undeclared_domains: bool = setting(
        True,
        "hold for the two output checkers a table-mode job that groups or filters on a column "
        "without a declared domain: values seen in the data are not a declared domain",
    )
    person_jobs_per_quarter: int = setting(
        50,
        "most table-mode person jobs one agreement may queue per calendar quarter (UTC); "
        "exact tables about persons fall outside any epsilon (rule person_jobs_per_quarter)",
        lambda v: v >= 0,
        "a whole number of at least 0",
    )


@dataclass(frozen=True)
class Differencing:
    """``[differencing]``: The differencing defence across releases."""

    enabled: bool = setting(
        True,
        "check every released cell against all earlier releases on the same dataset and "
        "suppress cells that would single out a few entities (rule differencing, Art. 15)",
    )
    k: int = setting(
        10,
        "smallest group of entities two releases may differ by, or earlier parts may leave "
        "uncovered, before a cell is suppressed by the differencing defence",
        lambda v: v >= 2,
        "a whole number of at least 2",
    )


@dataclass(frozen=True)
class He:
    """``[he]``: Homomorphic-encryption sums."""

    processes: int = setting(
        2,
        "worker processes that share the groups of one HE aggregate job",
        lambda v: 1 <= v <= 64,
        "a whole number from 1 to 64",
    )
    max_values: int = setting(
        2_000_000,
        "most values (keys) in one HE aggregate request",
        positive,
        "a positive whole number",
    )
    max_request_mb: float = setting(
        512.0,
        "largest HE aggregate request body (context, keys, ciphertexts), MiB; more is 413",
        positive,
        "a positive number",
    )


@dataclass(frozen=True)
class Verify:
    """``[verify]``: Verification products: limits per consumer and subject, enumeration defence."""

    consumer_per_minute: int = setting(
        600,
        "verification subjects one consumer may ask per minute, all products; more is 429",
        positive,
        "a positive whole number",
    )
    consumer_per_day: int = setting(
        20_000,
        "verification subjects one consumer may ask per day, all products; more is 429",
        positive,
        "a positive whole number",
    )
    subject_per_day: int = setting(
        10,
        "answers about one subject per day across all consumers; more is refused (Art. 19)",
        positive,
        "a positive whole number",
    )
    throttled_per_minute: int = setting(
        5,
        "per-minute allowance of a consumer throttled by the enumeration defence",
        positive,
        "a positive whole number",
    )
    guess_ids_throttle: int = setting(
        3,
        "distinct subjects missed for one check value (a name) in a day that throttle a consumer",
        positive,
        "a positive whole number",
    )
    guess_ids_block: int = setting(
        5,
        "distinct subjects missed for one check value in a day that block a consumer",
        positive,
        "a positive whole number",
    )
    miss_min_calls: int = setting(
        50,
        "answers a consumer must have had today before its share of misses is judged",
        positive,
        "a positive whole number",
    )
    miss_share_throttle: float = setting(
        0.6,
        "share of miss codes (mismatch, not_found) in a day that throttles a consumer",
        fraction,
        "a fraction in (0, 1]",
    )
    miss_share_block: float = setting(
        0.9,
        "share of miss codes in a day that blocks a consumer",
        fraction,
        "a fraction in (0, 1]",
    )
    commit_interval_ms: float = setting(
        2.0,
        "how long the group commit gathers verification calls before one durable commit",
        lambda v: 0 <= v <= 100,
        "between 0 and 100",
    )
    value_per_hour: int = setting(
        20,
        "answers with one value of an input field in a rolling hour, all consumers and products",
        positive,
        "a positive whole number",
    )
    value_per_day: int = setting(
        60,
        "answers with one value of an input field in a rolling day, all consumers and products",
        positive,
        "a positive whole number",
    )
    subject_lifetime: int = setting(
        1000,
        "answers ever about one subject (one value of a subject key), all consumers",
        positive,
        "a positive whole number",
    )
    alert_accounts: int = setting(
        3,
        "different consumers trying one value within a day that alert the authority",
        lambda v: v >= 2,
        "a whole number of at least 2",
    )


@dataclass(frozen=True)
class Model:
    """``[model]``: Model training (issue 22): its limits and the checks of a fitted model."""

    time_limit_s: float = setting(
        600.0,
        "wall-clock limit of one training worker, seconds (fit, evaluation and attacks)",
        positive,
        "a positive number",
    )
    max_entities: int = setting(
        2_000_000,
        "most entities (rows of the features query) one model may train on",
        positive,
        "a positive whole number",
    )
    max_depth: int = setting(
        8,
        "deepest tree a model may hold (structural check tree_depth)",
        lambda v: 1 <= v <= 32,
        "a whole number from 1 to 32",
    )
    attack_max_auc: float = setting(
        0.6,
        "highest AUC a simulated membership-inference attack may reach on a passed model",
        lambda v: 0.5 < v <= 1,
        "a number in (0.5, 1]",
    )
    attack_sample: int = setting(
        2000,
        "training (and as many held-out) entities each attack is run on",
        lambda v: v >= 100,
        "a whole number of at least 100",
    )
    shadow_models: int = setting(
        8,
        "shadow models of the likelihood-ratio attack (LiRA)",
        lambda v: 2 <= v <= 64,
        "a whole number from 2 to 64",
    )


@dataclass(frozen=True)
class Psi:
    """``[psi]``: Private set intersection."""

    build_processes: int = setting(
        2,
        "processes that build a PSI setup in parallel (shards under one key)",
        lambda v: 1 <= v <= 64,
        "a whole number from 1 to 64",
    )
    data_structure: str = setting(
        "raw",
        "form of the PSI setup: raw (exact, 33 bytes per item, shards merge into one), "
        "gcs or bloom (about 6 to 8 bytes per item, false positives up to psi.fpr)",
        lambda v: v in {"raw", "gcs", "bloom"},
        "one of: raw, gcs, bloom",
    )
    fpr: float = setting(
        1e-9,
        "false-positive bound of one PSI request of psi.max_items items (gcs and bloom)",
        lambda v: 0 < v < 0.01,
        "a number in (0, 0.01)",
    )
    min_items: int = setting(
        100,
        "default minimum distinct items of a PSI list when terms do not say",
        positive,
        "a positive whole number",
    )
    max_items: int = setting(
        1_000_000,
        "largest PSI list any terms may allow; also the client size the setup is built for",
        positive,
        "a positive whole number",
    )
    daily_cap: int = setting(
        20,
        "default PSI match requests per operator, terms and UTC day when terms do not say",
        positive,
        "a positive whole number",
    )
    chunk_items: int = setting(
        20_000,
        "most items in one PSI chunk (about 35 bytes each on the wire); more is 413",
        lambda v: v >= 2,
        "a whole number of at least 2",
    )
    group_threshold: int = setting(
        10,
        "default smallest platform-side group counted in PSI group cardinality",
        positive,
        "a positive whole number",
    )


@dataclass(frozen=True)
class Spark:
    """``[spark]``: The Spark engine."""

    master: str = setting(
        "local[2]",
        "Spark master for SQL jobs when engine = spark (local[N], spark://host:7077, yarn, ...)",
        lambda v: bool(v.strip()),
        "a Spark master URL",
    )


@dataclass(frozen=True)
class Ray:
    """``[ray]``: Ray for PSI set-up, HE shards and, optionally, SQL job workers."""

    address: str = setting(
        "",
        "Ray cluster for PSI set-up and HE group-sum shards: empty = local processes, "
        "'local' = a 2-CPU cluster started here, or a cluster address (ray://host:10001)",
    )
    dispatch_jobs: bool = setting(
        False,
        "with ray.address set, run each SQL job's isolated DuckDB worker as a Ray task on a "
        "cluster node instead of on the platform host",
    )


@dataclass(frozen=True)
class Store:
    """``[store]``: Where the metadata store and the ledger live."""

    url: str = setting(
        "",
        "the metadata store and ledger: empty = store.sqlite in the home (embedded, one host), "
        "or postgresql://user:password@host:port/database for several server hosts on one store",
        store_url,
        "empty, sqlite:///<file> or postgresql://...",
    )
    host_lease_s: float = setting(
        30.0,
        "on PostgreSQL: seconds without a heartbeat after which a server process counts as "
        "gone and another host fails the jobs it was running (reason interrupted)",
        lambda v: v >= 2,
        "a number of seconds, at least 2",
    )


@dataclass(frozen=True)
class Values:
    """Every setting, as typed attributes: ``values.job.time_limit_s``."""

    engine: str = setting(
        "duckdb",
        "SQL engine for aggregate jobs",
        lambda v: v in {"duckdb", "spark"},
        "one of: duckdb, spark",
    )
    job: Job = field(default_factory=Job)
    disclosure: Disclosure = field(default_factory=Disclosure)
    ingest: Ingest = field(default_factory=Ingest)
    api: Api = field(default_factory=Api)
    review: Review = field(default_factory=Review)
    differencing: Differencing = field(default_factory=Differencing)
    he: He = field(default_factory=He)
    verify: Verify = field(default_factory=Verify)
    model: Model = field(default_factory=Model)
    psi: Psi = field(default_factory=Psi)
    spark: Spark = field(default_factory=Spark)
    ray: Ray = field(default_factory=Ray)
    store: Store = field(default_factory=Store)


SETTINGS: tuple[Setting, ...] = tuple(declared(Values, ""))
