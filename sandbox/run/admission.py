"""Before a job runs: its scope (the grants it runs under and their columns), admission
of the request by its job kind, the grants gate, and the evidence the release checks
need. Run at submission and again when the job is claimed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.base import JobPlan, SqlKind
from policies.access import Grant
from policies.admission import QueryScope, TableScope
from policies.disclosure import DisclosureParams
from policies.errors import PolicyRefusal
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.core.store import datasets
from sandbox.data.grants import grants_in_use, grants_of, may_run
from sandbox.data.places import scoped
from sandbox.data.vault import DatasetVersion, get_version
from sandbox.guard import dp_budget

PERSON_JOB = "review.person_jobs"  # the setting that holds a person job for the checkers


@dataclass(frozen=True)
class Hold:
    """Why an output waits for the two output checkers whatever its cells, and the
    setting (on by default) that makes the hold."""

    setting: str
    why: str


@dataclass(frozen=True)
class Prepared:
    """A job that passed admission and the grants gate, ready to run."""

    plan: JobPlan
    used: Mapping[str, Grant]
    params: DisclosureParams
    versions: Mapping[str, DatasetVersion]
    lineage: str | None = None  # the dataset whose entities the cells count (differencing)
    dp: dp_budget.DpMode | None = None  # the agreement's DP mode, its population's budget
    entities: bool = False  # the engine reads the entity numbering (each cell's contributors)
    # Why the output waits for the two output checkers whatever the check finds, decided
    # from the SQL and the declared metadata alone (table mode's person jobs, undeclared
    # domains): never from the data, so the hold itself tells the operator nothing.
    review: tuple[Hold, ...] = ()


def _scope(
    conn: Connection,
    platform: Platform,
    operator: Principal,
    kind: SqlKind,
    request: Mapping[str, Any],
    now: datetime,
    pinned: Mapping[str, int] | None = None,
) -> tuple[QueryScope, dict[str, DatasetVersion]]:
    """Every dataset the operator holds any grant for (usable or not: decide() says why not),
    with the columns of the grant the job would run under (:func:`grants_in_use`).

    ``pinned`` names the dataset versions recorded when the job was queued, so a
    queued job reads exactly what it was admitted against.
    """
    in_use = grants_in_use(conn, operator, kind.name, now)
    mine = grants_of(conn, operator.id)
    named = set(kind.referenced_datasets(request))
    tables: dict[str, TableScope] = {}
    versions: dict[str, DatasetVersion] = {}
    for name, grant in in_use.items():
        version = get_version(conn, platform, name, (pinned or {}).get(name))
        versions[name] = version
        tables[name] = TableScope(name, version.classification, grant.columns)
    relevant = [g for g in mine if g.dataset in named] or mine
    extras = (
        frozenset.intersection(*(g.extra_aggregates for g in relevant)) if relevant else frozenset()
    )
    expressions = bool(relevant) and all(g.aggregate_expressions for g in relevant)
    # The DP mode of the agreement behind the first table's grant answers free questions
    # with noise; every other query is admitted under table mode's rules.
    order = kind.referenced_datasets(request)
    first = order[0] if order else None
    dp = first is not None and dp_budget.mode_for(conn, in_use, first) is not None
    scope = QueryScope(
        tables=tables,
        extra_aggregates=extras,
        aggregate_expressions=expressions,
        mode="dp" if dp else "table",
    )
    return scope, versions


def _refuse_ungranted(
    conn: Connection,
    operator: Principal,
    kind: SqlKind,
    request: Mapping[str, Any],
    scope: QueryScope,
) -> None:
    """A registered dataset the operator holds no grant for is refused by the grant gate.

    Without this, admission would call it an unknown table: the scope holds only
    granted datasets. The rule that applies is ``not_granted`` (Art. 14).
    """
    outside = [n for n in kind.referenced_datasets(request) if n not in scope.tables]
    if not outside:
        return
    registered = set(
        conn.execute(select(datasets.c.name).where(datasets.c.name.in_(outside))).scalars()
    )
    missing = [n for n in outside if n in registered]
    if missing:
        may_run(conn, operator, missing, kind.name, datetime.now(UTC))


def _params(platform: Platform, used: Mapping[str, Grant]) -> DisclosureParams:
    params = platform.disclosure_minimums()
    for grant in used.values():
        params = params.tightened(grant.disclosure)
    return params


def _refuse_over_the_cap(
    platform: Platform, plan: JobPlan, versions: Mapping[str, DatasetVersion]
) -> None:
    """Refuse before the run a query whose declared domains allow more output rows than
    the cap: then a declared query never fails on the cap after running (issue 25)."""
    from policies.limits import output_bound

    bound = output_bound(plan.payload, {t: v.classification for t, v in versions.items()})
    cap = platform.settings.job.max_output_rows
    if bound is not None and bound > cap:
        raise PolicyRefusal(
            "output_rows",
            f"by the declared domains of its group keys the query can yield up to {bound} "
            f"rows, more than the cap of {cap} output rows (job.max_output_rows)",
            article="Art. 15",
            subject="GROUP BY",
            hint="group by fewer or coarser keys",
        )


def prepare(
    conn: Connection,
    platform: Platform,
    operator: Principal,
    kind: SqlKind,
    request: Mapping[str, Any],
    pinned: Mapping[str, int] | None = None,
) -> Prepared:
    """Admission and the grants gate; raises PolicyRefusal naming rule and article."""
    now = datetime.now(UTC)
    scope, versions = _scope(conn, platform, operator, kind, request, now, pinned)
    _refuse_ungranted(conn, operator, kind, request, scope)
    plan = kind.plan(request, scope)
    used = may_run(conn, operator, plan.tables, kind.name, now)
    # A county agreement's grant reads its county's slice of the snapshot (Art. 5).
    versions = {
        **versions,
        **{t: scoped(conn, platform, versions[t], used[t].agreement_id) for t in plan.tables},
    }
    if plan.kind != "sql_aggregate":
        return Prepared(plan, used, _params(platform, used), versions)
    _refuse_over_the_cap(platform, plan, versions)
    # Issue 11: the evidence the differencing defence and the DP mode need.
    from jobs.sql_evidence import argument_columns, first_table_alias, with_evidence
    from policies.dp import refuse_unsupported

    lineage = first_table_alias(plan.payload.tree).name
    # The lineage's entities are the population whose budget pays (charged when queued:
    # JobService.enqueue, dp_budget.reserve).
    reads = versions[lineage].classification if lineage in versions else None
    kind_of = reads.entity_kind if reads is not None else None
    declared = reads.bounds if reads is not None else None
    mode = dp_budget.mode_for(conn, used, lineage, kind_of, declared)
    if mode is None and scope.mode == "dp":  # the DP mode belongs to another table's grant
        plan = kind.plan(request, replace(scope, mode="table"))
    if mode is not None:
        refuse_unsupported(plan.payload.spec, argument_columns(plan.payload), mode.bounds)
        if plan.payload.spec.group_keys and plan.grid is None:
            raise PolicyRefusal(
                "dp_undeclared_grid",
                "the DP mode releases every cell of the declared grid of its group keys, "
                "and a key of this query is not a plain column with a declared code list",
                article="Art. 15",
                subject="GROUP BY",
                hint="group by columns whose provider declared their codes (classification "
                "'domains'); which groups exist may not depend on the data",
            )
    entities = platform.settings.differencing.enabled
    if entities or mode is not None:
        clamp = {c: (b.lower, b.upper) for c, b in mode.bounds.items()} if mode else None
        # Spark has no positional join: it looks each entity's number up by its key
        positional = platform.settings.engine != "spark"
        sql = with_evidence(
            plan.payload, scope, entities=entities, clamp=clamp, positional=positional
        )
        plan = replace(plan, engine_sql=sql)
    review = _review_reasons(plan, versions) if mode is None else ()
    return Prepared(plan, used, _params(platform, used), versions, lineage, mode, entities, review)


def _review_reasons(plan: JobPlan, versions: Mapping[str, DatasetVersion]) -> tuple[Hold, ...]:
    """Why a table-mode output waits for the output review, from metadata alone."""
    from policies.domains import is_person_job

    holds = []
    if is_person_job(versions[t].classification for t in plan.tables):
        why = "a person job in table mode (Art. 15): two output checkers review its cells"
        holds.append(Hold(PERSON_JOB, why))
    undeclared = getattr(plan.payload, "undeclared", ())
    if undeclared:
        why = "grouped or filtered on columns without a declared domain: " + ", ".join(undeclared)
        holds.append(Hold("review.undeclared_domains", why))
    return tuple(holds)
