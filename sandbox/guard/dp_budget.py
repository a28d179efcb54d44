"""Per-agreement privacy budgets: the DP mode's configuration, balance and ledgered spends.

An authority puts an agreement's use of one dataset into the
differential-privacy mode with :func:`configure`: a total epsilon for the
agreement's term, the epsilon each job spends, and the bounds of each measure
column that may be summed (the provider's declared range of one entity's
value). From then on every job of that agreement on that dataset is released
with noise (:func:`policies.dp.add_noise`) and spends its epsilon.

* A job that would exceed the budget is refused before it runs (rule
  ``dp_budget_exhausted``, Art. 15, naming the remaining budget): see
  :func:`refusal`, called by the job's policy check.
* The spend is written in the same transaction as the release (:func:`spend`,
  which checks the balance again under the store's write lock), so two jobs
  cannot both spend the last epsilon; a job that fails or is withheld spends
  nothing.
* Every configuration and spend is one ledger entry; :func:`show` is what the
  operator and the authority see.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from policies.access import Grant
from policies.dp import Bounds, Budget
from policies.errors import InputError, NotFound
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.guard.tables import dp_budgets, dp_spends

ARTICLE = "Art. 15"


@dataclass(frozen=True)
class DpMode:
    """The DP mode that applies to one job: whose budget, and how to bound sums."""

    agreement_id: int
    dataset: str
    budget: Budget
    bounds: Mapping[str, Bounds]


def configure(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    dataset: str,
    *,
    epsilon: float,
    per_query: float,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    """Put an agreement's use of ``dataset`` into the DP mode (once; the budget never grows)."""
    from sandbox.workflow.base import get, require_authority
    from sandbox.workflow.tables import agreements

    require_role(authority, Role.AUTHORITY, action="set privacy budgets", article=ARTICLE)
    if not (0 < per_query <= epsilon):
        raise InputError("the per-query epsilon must be positive and at most the total epsilon")
    try:
        parsed = {col: Bounds(float(lo), float(hi)) for col, (lo, hi) in (bounds or {}).items()}
    except (TypeError, ValueError) as exc:
        raise InputError(f"bounds must be [lower, upper] numbers per column: {exc}") from None
    with platform.store.transaction() as conn:
        row = get(conn, agreements, agreement_id, "agreement")
        require_authority(authority, row.jurisdiction, "set privacy budgets", ARTICLE)
        if dataset not in json.loads(row.scope_json)["datasets"]:
            raise InputError(f"dataset '{dataset}' is outside agreement {agreement_id}")
        exists = conn.execute(
            select(dp_budgets.c.agreement_id).where(
                dp_budgets.c.agreement_id == agreement_id, dp_budgets.c.dataset == dataset
            )
        ).first()
        if exists:
            raise InputError(
                f"agreement {agreement_id} already has a privacy budget for '{dataset}'; "
                "a budget is fixed for the agreement's term"
            )
        conn.execute(
            dp_budgets.insert().values(
                agreement_id=agreement_id,
                dataset=dataset,
                epsilon_total=float(epsilon),
                epsilon_per_query=float(per_query),
                bounds_json=json.dumps({c: [b.lower, b.upper] for c, b in parsed.items()}),
                configured_by=authority.id,
                created_at=now_utc(),
            )
        )
        platform.record(
            conn,
            authority.actor,
            "dp.configure",
            f"agreement:{agreement_id}",
            {
                "dataset": dataset,
                "epsilon": epsilon,
                "per_query": per_query,
                "bounded": sorted(parsed),
            },
            ARTICLE,
        )


def budget(conn: Connection, agreement_id: int, dataset: str) -> Budget | None:
    row = conn.execute(
        select(dp_budgets).where(
            dp_budgets.c.agreement_id == agreement_id, dp_budgets.c.dataset == dataset
        )
    ).first()
    if row is None:
        return None
    spent = conn.execute(
        select(func.coalesce(func.sum(dp_spends.c.epsilon), 0.0)).where(
            dp_spends.c.agreement_id == agreement_id, dp_spends.c.dataset == dataset
        )
    ).scalar_one()
    return Budget(row.epsilon_total, float(spent), row.epsilon_per_query)


def mode_for(conn: Connection, used: Mapping[str, Grant], dataset: str) -> DpMode | None:
    """The DP mode of the job's first dataset, if the agreement behind its grant has one."""
    grant = used.get(dataset)
    if grant is None or grant.agreement_id is None:
        return None
    row = conn.execute(
        select(dp_budgets.c.bounds_json).where(
            dp_budgets.c.agreement_id == grant.agreement_id, dp_budgets.c.dataset == dataset
        )
    ).first()
    if row is None:
        return None
    bounds = {c: Bounds(lo, hi) for c, (lo, hi) in json.loads(row.bounds_json).items()}
    current = budget(conn, grant.agreement_id, dataset)
    assert current is not None  # its dp_budgets row was just read in this transaction
    return DpMode(grant.agreement_id, dataset, current, bounds)


def refusal(mode: DpMode):
    """The refusal of a job the remaining budget cannot pay for, or None."""
    return mode.budget.refusal(subject=f"agreement:{mode.agreement_id}")


def spend(platform: Platform, conn: Connection, actor: Actor, mode: DpMode, job_id: int) -> Budget:
    """Spend one job's epsilon in the caller's (release) transaction; refuse if it is gone."""
    current = budget(conn, mode.agreement_id, mode.dataset)
    if current is None:
        raise NotFound(f"agreement {mode.agreement_id} has no privacy budget")
    refused = current.refusal(subject=f"agreement:{mode.agreement_id}")
    if refused is not None:
        raise refused
    conn.execute(
        dp_spends.insert().values(
            agreement_id=mode.agreement_id,
            dataset=mode.dataset,
            job_id=job_id,
            epsilon=current.per_query,
            created_at=now_utc(),
        )
    )
    after = Budget(current.total, current.spent + current.per_query, current.per_query)
    platform.record(
        conn,
        actor,
        "dp.spend",
        f"agreement:{mode.agreement_id}",
        {
            "dataset": mode.dataset,
            "job": job_id,
            "epsilon": current.per_query,
            "remaining": after.remaining,
        },
        ARTICLE,
    )
    return after


def show(conn: Connection, viewer: Principal, agreement_id: int) -> list[dict]:
    """The agreement's budgets: for its operator, an authority covering it or an auditor."""
    from sandbox.workflow.base import get, require_authority
    from sandbox.workflow.tables import agreements

    row = get(conn, agreements, agreement_id, "agreement")
    if viewer.role is Role.OPERATOR and viewer.id != row.operator_id:
        raise NotFound(f"no agreement {agreement_id}")
    if viewer.role not in (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR):
        raise NotFound(f"no agreement {agreement_id}")
    if viewer.role is Role.AUTHORITY:
        require_authority(viewer, row.jurisdiction, "read privacy budgets", "Art. 5")
    out = []
    for b in conn.execute(select(dp_budgets).where(dp_budgets.c.agreement_id == agreement_id)):
        current = budget(conn, agreement_id, b.dataset)
        assert current is not None  # b is its dp_budgets row
        out.append(
            {
                "dataset": b.dataset,
                "epsilon_total": current.total,
                "epsilon_spent": current.spent,
                "epsilon_remaining": current.remaining,
                "epsilon_per_query": current.per_query,
                "bounds": json.loads(b.bounds_json),
            }
        )
    return out
