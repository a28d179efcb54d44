"""Run an admitted SQL aggregate job on Spark instead of the DuckDB worker.

The job's SQL has already passed admission and the evidence rewrite (DuckDB
dialect). Here it is transpiled to Spark SQL with sqlglot, checked once more
(one SELECT, reading only the granted datasets, no table functions, no
commands), and run on one :class:`SparkEngine` per process and master. The
granted Parquet snapshots are the only inputs: each is registered as a
temporary view under its dataset name; ``spark.sql.runSQLOnFiles`` is off so
SQL cannot name a file; no UDF is ever registered and the catalog is the
in-memory one (no Hive, no warehouse writes). The result is collected to Arrow
with the row cap applied on the cluster (``LIMIT cap + 1``). The output check
that follows is the same code as for DuckDB.

Spark failures become platform errors: a session that cannot start is
:class:`~policies.errors.SandboxError` ``engine_unavailable``; a session that
dies while a job runs fails the job with ``engine_lost``; a query Spark
rejects fails it with ``engine_error``. Engine messages are never passed on
verbatim (they may quote data).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from policies.errors import JobFailed, SandboxError

# Configuration every session gets; the master comes from the ``spark.master`` setting.
SESSION_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # no progress bars in the platform's log
    "spark.sql.catalogImplementation": "in-memory",
    "spark.sql.runSQLOnFiles": "false",  # no `parquet.`/path`` in SQL
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.extraJavaOptions": "-Dlog4j2.level=ERROR",
}
LOCAL_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}
# Statements and expressions that have no place in an aggregate job, whatever admission said.
FORBIDDEN = (
    exp.Command,
    exp.Create,
    exp.Drop,
    exp.Insert,
    exp.Delete,
    exp.Update,
    exp.Merge,
    exp.Set,
    exp.Use,
    exp.Cache,
    exp.Uncache,
    exp.Refresh,
    exp.Anonymous,  # an unknown function name could be a registered UDF
)


def spark_sql(sql: str, tables: Mapping[str, Path]) -> str:
    """The Spark SQL of an admitted DuckDB statement; refuses anything but one SELECT
    over the granted datasets (a second line of defence behind admission)."""
    try:
        duck = sqlglot.parse_one(sql, read="duckdb").transform(_top_n).transform(_grouping_sets)
        spark = duck.sql(dialect="spark")
        tree = sqlglot.parse_one(spark, read="spark")
    except (sqlglot.errors.SqlglotError, ValueError) as exc:
        raise JobFailed(
            "the job's SQL cannot be translated for Spark (setting engine)", code="engine_error"
        ) from exc
    problem = None
    if not isinstance(tree, exp.Select):
        problem = "it is not a single SELECT"
    elif any(tree.find_all(*FORBIDDEN)):
        problem = "it holds a command or a function Spark does not know as built-in"
    else:
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        names = {t.name for t in tree.find_all(exp.Table)} - ctes
        if any(
            not isinstance(t.this, exp.Identifier) or t.catalog or t.db
            for t in tree.find_all(exp.Table)
        ) or not names <= set(tables):
            problem = "it reads something other than its granted datasets"
    if problem:
        raise JobFailed(
            f"the translated job was not run on Spark: {problem}",
            code="access_denied",
            article="Art. 15",
        )
    return spark


def _top_n(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``max(x, n)`` (the n largest values, which the evidence rewrite uses for
    the dominance rule) has no Spark form: ``sort_array(collect_list(x), false)`` holds
    the same values first (both skip NULLs), and the rewrite only indexes the top two."""
    if isinstance(node, exp.Max) and node.args.get("count") is not None:
        return exp.ArraySort(
            this=exp.ArrayAgg(this=node.this.copy(), nulls_excluded=True),
            asc=exp.false(),
            nulls_first=exp.false(),
        )
    if isinstance(node, exp.Grouping) and len(node.expressions) > 1:
        # DuckDB's GROUPING(a, b, ...) is a bit mask over the named keys, the first the
        # highest bit. Spark's grouping_id() must name every grouping column (the
        # per-entity evidence also groups by the entity key), so the mask is built from
        # one-column GROUPING()s, each widened to BIGINT before it is shifted.
        keys = node.expressions
        bits = [
            exp.Mul(
                this=exp.Cast(
                    this=exp.Grouping(expressions=[key.copy()]), to=exp.DataType.build("BIGINT")
                ),
                expression=exp.Literal.number(1 << (len(keys) - 1 - i)),
            )
            for i, key in enumerate(keys)
        ]
        mask: exp.Expr = bits[0]
        for bit in bits[1:]:
            mask = exp.Add(this=mask, expression=bit)
        return exp.Paren(this=mask)
    if isinstance(node, exp.Bracket) and not node.args.get("safe"):
        # DuckDB answers NULL for an index past the end of a list (a group with one
        # entity has no second-largest contribution); Spark's ANSI mode raises, so the
        # index is the tolerant form (try_element_at).
        node.set("safe", True)
    return node


def _grouping_sets(node: exp.Expression) -> exp.Expression:
    """Spark allows ``GROUPING(x)`` only under GROUPING SETS, ROLLUP or CUBE, while the
    evidence rewrite uses it with a plain ``GROUP BY a, b`` too: that is the same as
    ``GROUP BY GROUPING SETS ((a, b))``."""
    if not isinstance(node, exp.Select) or not node.args.get("group"):
        return node
    group = node.args["group"]
    keys = group.expressions
    uses_grouping = any(
        g.find_ancestor(exp.Select) is node for g in node.find_all(exp.Grouping, exp.GroupingId)
    )
    plain = keys and not any(isinstance(k, exp.GroupingSets | exp.Rollup | exp.Cube) for k in keys)
    if uses_grouping and plain and not any(group.args.get(a) for a in ("rollup", "cube")):
        sets = exp.GroupingSets(expressions=[exp.Tuple(expressions=[k.copy() for k in keys])])
        node.set("group", exp.Group(expressions=[sets]))
    return node


class SparkEngine:
    """One Spark session per process and master, started on first use.

    Jobs run one at a time on it (the temporary views are session-wide).
    """

    def __init__(self, master: str = "local[2]"):
        self.master = master
        self._session = None
        self._lock = threading.RLock()

    # --- the session --------------------------------------------------------

    def _alive(self) -> bool:
        session = self._session
        if session is None:
            return False
        try:
            jsc = session.sparkContext._jsc
            return jsc is not None and not jsc.sc().isStopped()
        except Exception:
            return False

    def session(self):
        """The running session; starts one if there is none (or the last one died)."""
        with self._lock:
            if self._alive():
                return self._session
            try:
                from pyspark.sql import SparkSession
            except ImportError as exc:
                raise SandboxError(
                    "engine = spark needs pyspark: install the platform with its 'spark' extra",
                    code="engine_unavailable",
                ) from exc
            why = _unreachable(self.master)
            if why:
                raise SandboxError(
                    f"the Spark master at '{self.master}' cannot be reached: {why}; check "
                    "the setting spark.master",
                    code="engine_unavailable",
                )
            builder = SparkSession.builder.master(self.master).appName("sandbox-jobs")
            conf = dict(SESSION_CONF)
            if self.master.startswith("local"):
                conf.update(LOCAL_CONF)
                # the executors' Python folds entity bitmaps (_folded): the platform's own,
                # with pyarrow and pyroaring (a cluster's executors need the package)
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            for key, value in conf.items():
                builder = builder.config(key, value)
            try:
                session = builder.getOrCreate()
                session.sparkContext.setLogLevel("ERROR")
            except Exception as exc:
                self._session = None
                raise SandboxError(
                    f"the Spark session at '{self.master}' could not start "
                    f"({type(exc).__name__}); check the setting spark.master and that "
                    "the cluster is reachable",
                    code="engine_unavailable",
                ) from exc
            if session.sparkContext.master != self.master:
                # getOrCreate hands back a running session whatever master is asked for.
                raise SandboxError(
                    f"this process already runs a Spark session on "
                    f"'{session.sparkContext.master}', not '{self.master}' (setting "
                    "spark.master): one master per platform process",
                    code="engine_unavailable",
                )
            self._session = session
            return session

    def stop(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.stop()
                finally:
                    self._session = None

    # --- a job ------------------------------------------------------------------

    @contextlib.contextmanager
    def job(self, tables: Mapping[str, Path], time_s: float | None = None) -> Iterator[Any]:
        """The session for one job, the granted snapshots registered as temporary views
        under their dataset names (dropped again at the end), nothing else.

        With ``time_s`` the job's Spark jobs are cancelled when it has not finished by
        then, and it fails with ``time_limit``; a session that dies fails it with
        ``engine_lost``, any other engine failure with ``engine_error``. Jobs hold the
        engine's lock: one at a time (the views are session-wide). Model training on
        Spark (:mod:`sandbox.models.spark_fit`) runs inside it too."""
        with self._lock:
            spark = self.session()
            registered: list[str] = []
            context = spark.sparkContext
            group = f"sandbox-{uuid.uuid4().hex}"
            expired = threading.Event()

            def cancel() -> None:
                expired.set()
                context.cancelJobGroup(group)

            timer = threading.Timer(time_s, cancel) if time_s else None
            try:
                context.setJobGroup(group, "sandbox job", interruptOnCancel=True)
                if timer is not None:
                    timer.start()
                for name, path in tables.items():
                    files = (
                        [str(p) for p in path] if isinstance(path, list | tuple) else [str(path)]
                    )
                    spark.read.parquet(*files).createOrReplaceTempView(name)
                    registered.append(name)
                yield spark
            except JobFailed:
                raise
            except Exception as exc:
                if expired.is_set() and self._alive():
                    raise JobFailed(
                        f"the job exceeded its time limit of {time_s:g} s and was stopped",
                        code="time_limit",
                    ) from exc
                if not self._alive():
                    self._session = None
                    raise JobFailed(
                        "the Spark session ended while the job ran (a lost executor or a "
                        "stopped cluster); nothing was released",
                        code="engine_lost",
                    ) from exc
                raise JobFailed(
                    f"the engine could not run the query (spark: {type(exc).__name__})",
                    code="engine_error",
                ) from exc
            finally:
                if timer is not None:
                    timer.cancel()
                if self._alive():
                    context.setLocalProperty("spark.jobGroup.id", None)
                    for name in registered:
                        try:
                            spark.catalog.dropTempView(name)
                        except Exception:
                            pass

    def run(
        self, sql: str, tables: Mapping[str, Path], max_rows: int, time_s: float | None = None
    ) -> pa.Table:
        """Run one admitted statement over the granted snapshots; the raw result.

        With ``time_s`` (the ``job.time_limit_s`` setting) the job's Spark jobs are
        cancelled when it has not finished by then, and it fails with ``time_limit``
        (:meth:`job`)."""
        translated = spark_sql(sql, tables)
        with self.job(tables, time_s) as spark:
            frame = _folded(spark.sql(translated).limit(max_rows + 1))
            table = _to_arrow(frame)
        if table.num_rows > max_rows:
            raise JobFailed(
                f"the job yields more than {max_rows} output rows, the cap; group more coarsely",
                code="output_rows",
            )
        return table


def _unreachable(master: str, timeout_s: float = 5.0) -> str | None:
    """Why a standalone master (``spark://h1:p1,h2:p2``) cannot be reached, or None.

    Without this, Spark keeps retrying an absent master for a minute before it gives
    up; other masters (local, yarn, k8s) are left to Spark."""
    if not master.startswith("spark://"):
        return None
    failures = []
    for hostport in master.removeprefix("spark://").split(","):
        host, sep, port = hostport.strip().rpartition(":")
        if not sep or not port.isdigit():
            return f"'{hostport}' is not host:port"
        try:
            with socket.create_connection((host, int(port)), timeout_s):
                return None
        except OSError as exc:
            failures.append(f"{host}:{port} ({type(exc).__name__})")
    return "nothing answered on " + ", ".join(failures)


def _fold_batches(batches):
    """Each batch with its cells' entity numbers folded into bitmaps (on the executor)."""
    from sandbox.guard.evidence import fold_entities

    for batch in batches:
        yield fold_entities(batch)


def _folded(frame):
    """The frame with ``__entities`` (a list of numbers per cell) as serialized roaring
    bitmaps, computed by the executors (``mapInArrow``, not a SQL function: nothing an
    operator's SQL can call): the driver collects one bitmap per cell, not the lists."""
    from pyspark.sql.types import BinaryType, StructField, StructType

    from sandbox.guard.evidence import ENTITIES

    if ENTITIES not in frame.columns:
        return frame
    fields = [
        StructField(ENTITIES, BinaryType(), True) if f.name == ENTITIES else f
        for f in frame.schema.fields
    ]
    return frame.mapInArrow(_fold_batches, StructType(fields))


def _to_arrow(frame) -> pa.Table:
    if hasattr(frame, "toArrow"):
        return frame.toArrow()
    return pa.Table.from_pandas(frame.toPandas(), preserve_index=False)


_ENGINES: dict[str, SparkEngine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(master: str) -> SparkEngine:
    """The process's engine for ``master`` (the ``spark.master`` setting)."""
    with _ENGINES_LOCK:
        if master not in _ENGINES:
            _ENGINES[master] = SparkEngine(master)
        return _ENGINES[master]


def stop_all() -> None:
    """Stop every session this process started (tests, shutdown)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.stop()
