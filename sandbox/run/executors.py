"""Where an admitted SQL plan runs: a local isolated worker (:class:`Runner`), a Ray
node (``ray.dispatch_jobs``) or Spark (``engine = spark``): same plan, same output check
(issue 9). Each executor records in ``runtime`` how the job ran; :func:`with_numbers`
hands the worker the lineage's entity numbering when the evidence reads it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa

from jobs.base import Executor
from jobs.sql_evidence import NUMBERS_TABLE, ROW_NUMBERS_TABLE
from sandbox.core.platform import Platform
from sandbox.guard.numbering import numbering_for
from sandbox.run.admission import Prepared
from sandbox.run.runner import Runner


def spark_executor(platform: Platform, runtime: dict[str, Any]) -> Executor:
    """The executor of ``engine = spark``: the admitted SQL on the Spark session."""
    from sandbox.run.engines.spark import engine_for

    settings = platform.settings
    spark = engine_for(settings.spark.master)

    def execute(sql: str, tables: Mapping[str, Path]) -> pa.Table:
        started = time.time()
        table = spark.run(sql, tables, settings.job.max_output_rows, settings.job.time_limit_s)
        runtime.update(engine="spark", master=spark.master, run_s=round(time.time() - started, 4))
        return table

    return execute


def ray_executor(platform: Platform, runner: Runner, runtime: dict[str, Any]) -> Executor:
    """The executor of ``ray.dispatch_jobs``: the same isolated worker, started by a
    Ray task on a cluster node."""
    from sandbox.run.engines.ray_pool import dispatch_sql_job

    address = platform.settings.ray.address
    limits = asdict(runner.limits)

    def execute(sql: str, tables: Mapping[str, Path]) -> pa.Table:
        runtime.update(dispatch="ray")  # recorded even when the task fails
        table, layers, wait_s, run_s, node, total_s = dispatch_sql_job(
            sql, dict(tables), limits, address
        )
        runtime.update(
            dispatch="ray",
            node=node,
            layers=layers,
            wait_s=round(wait_s, 4),
            run_s=round(run_s, 4),
            task_s=round(total_s, 4),
        )
        return table

    return execute


def with_numbers(
    platform: Platform, runner: Runner, prepared: Prepared, runtime: dict[str, Any]
) -> Executor:
    """The executor, handed the entity numbering too when the evidence reads it: the
    lineage's segments, numbering the version first if it is new (issue 25)."""
    execute = executor(platform, runner, prepared, runtime)
    if not prepared.entities or prepared.lineage is None:
        return execute
    started = time.perf_counter()
    numbering = numbering_for(platform, prepared.lineage, prepared.versions[prepared.lineage])
    runtime["numbering_s"] = round(time.perf_counter() - started, 4)
    extra: dict[str, Any] = {ROW_NUMBERS_TABLE: numbering.rows}
    if platform.settings.engine == "spark" and prepared.plan.kind == "sql_aggregate":
        extra = {NUMBERS_TABLE: numbering.segments}

    def numbered(sql: str, tables: Mapping[str, Any]) -> pa.Table:
        return execute(sql, {**tables, **extra})

    return numbered


def executor(
    platform: Platform, runner: Runner, prepared: Prepared, runtime: dict[str, Any]
) -> Executor:
    """Where the plan runs: a local isolated worker, or Spark or a Ray node for SQL
    aggregates (issue 9: same plan, same output check). ``runtime`` collects how."""
    settings = platform.settings
    if prepared.plan.kind == "sql_aggregate":
        if settings.engine == "spark":
            return spark_executor(platform, runtime)
        if settings.ray.dispatch_jobs:
            return ray_executor(platform, runner, runtime)

    def execute(sql: str, tables: Mapping[str, Path]) -> pa.Table:
        result = runner.run(sql, tables)
        runtime.update(
            layers=list(result.layers),
            wait_s=round(result.wait_s, 4),
            run_s=round(result.total_s, 4),
            spare_used=result.spare_used,
        )
        return result.table

    return execute
