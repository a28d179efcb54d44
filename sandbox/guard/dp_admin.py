"""The authority's side of the privacy budgets: a population's yearly epsilon, each
agreement's share of it, and an agreement's DP mode on a dataset (per-query epsilon and
the bounds of its measures). :mod:`sandbox.guard.dp_budget` keeps and charges them;
:mod:`sandbox.guard.dp_views` shows them. Every change is one ledger entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import select

from policies.dp import Bounds
from policies.errors import InputError, PolicyRefusal
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.guard.dp_budget import (
    ACCOUNTING,
    ARTICLE,
    OVER_TOTAL,
    SLACK,
    agreement_row,
    budget_row,
    budget_year,
    checked_population,
    epsilon_of,
    share_of,
    share_row,
    shared_of,
    spent_of,
    total_of,
)
from sandbox.guard.tables import dp_budgets, dp_population_budgets, dp_shares


def set_total(
    platform: Platform, authority: Principal, population: str, year: int, epsilon: float
) -> dict:
    """Set a population's epsilon for a year (the city authority). It may be lowered, never
    below the shares already given, and never raised once set: a budget that grows after
    releases were made bounds nothing."""
    from policies.workflow import check_jurisdiction

    require_role(authority, Role.AUTHORITY, action="set privacy budgets", article=ARTICLE)
    check_jurisdiction(authority.name, authority.jurisdiction, "city")
    population, year = checked_population(population), budget_year(year)
    epsilon = epsilon_of(epsilon, "epsilon")
    with platform.store.transaction() as conn:
        before = total_of(conn, population, year)
        shared = shared_of(conn, population, year)
        if before is not None and epsilon > before + SLACK:
            raise PolicyRefusal(
                "dp_budget_fixed",
                f"epsilon: the {population} population's budget for {year} is {before:g}; "
                f"it may be lowered but never raised (to {epsilon:g})",
                article=ARTICLE,
                subject="epsilon",
            )
        if epsilon + SLACK < shared:
            raise PolicyRefusal(
                OVER_TOTAL,
                f"epsilon: {epsilon:g} is below the {shared:g} already shared out of the "
                f"{population} population's {year} budget; the shares may never exceed "
                "the year's total",
                article=ARTICLE,
                subject="epsilon",
            )
        values = dict(epsilon=epsilon, set_by=authority.id, updated_at=now_utc())
        if before is None:
            conn.execute(
                dp_population_budgets.insert().values(population=population, year=year, **values)
            )
        else:
            conn.execute(
                dp_population_budgets.update()
                .where(
                    dp_population_budgets.c.population == population,
                    dp_population_budgets.c.year == year,
                )
                .values(**values)
            )
        platform.record(
            conn,
            authority.actor,
            "dp.budget.set",
            f"dp:{population}:{year}",
            {"epsilon": epsilon, "before": before, "shared": shared, "accounting": ACCOUNTING},
            ARTICLE,
        )
        return budget_row(conn, population, year)


def set_share(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    year: int,
    epsilon: float,
    population: str = "person",
) -> dict:
    """Give an agreement its share of a population-year (an authority covering the
    agreement). The shares never exceed the year's total; a share is never set below what
    the agreement has already spent of it."""
    from sandbox.registry.base import require_authority

    require_role(authority, Role.AUTHORITY, action="share privacy budgets", article=ARTICLE)
    population, year = checked_population(population), budget_year(year)
    epsilon = epsilon_of(epsilon, "epsilon", zero=True)
    with platform.store.transaction() as conn:
        row = agreement_row(conn, agreement_id)
        require_authority(authority, row.jurisdiction, "share privacy budgets", "Art. 5")
        total = total_of(conn, population, year)
        if total is None:
            raise PolicyRefusal(
                OVER_TOTAL,
                f"year: the {population} population has no budget for {year} yet; the "
                "authority sets it first (sandbox dp budget set)",
                article=ARTICLE,
                subject="year",
            )
        others = shared_of(conn, population, year, but=agreement_id)
        if others + epsilon > total + SLACK:
            raise PolicyRefusal(
                OVER_TOTAL,
                f"epsilon: a share of {epsilon:g} for agreement {agreement_id} is more than the "
                f"{max(0.0, total - others):g} of the {population} population's {year} budget "
                f"of {total:g} not shared out to other agreements; the shares may never exceed "
                "the year's total",
                article=ARTICLE,
                subject="epsilon",
            )
        spent = spent_of(conn, population, year, agreement_id)
        if epsilon + SLACK < spent:
            raise PolicyRefusal(
                OVER_TOTAL,
                f"epsilon: agreement {agreement_id} has already spent {spent:g} of its share of "
                f"the {population} population's {year} budget; its share cannot be less",
                article=ARTICLE,
                subject="epsilon",
            )
        before = share_of(conn, agreement_id, population, year)
        keys = dict(agreement_id=agreement_id, population=population, year=year)
        values = dict(epsilon=epsilon, set_by=authority.id, updated_at=now_utc())
        exists = conn.execute(
            select(dp_shares.c.epsilon).where(*(dp_shares.c[k] == v for k, v in keys.items()))
        ).first()
        if exists is None:
            conn.execute(dp_shares.insert().values(**keys, **values))
        else:
            conn.execute(
                dp_shares.update()
                .where(*(dp_shares.c[k] == v for k, v in keys.items()))
                .values(**values)
            )
        platform.record(
            conn,
            authority.actor,
            "dp.share",
            f"agreement:{agreement_id}",
            {
                "population": population,
                "year": year,
                "epsilon": epsilon,
                "before": before,
                "shared": others + epsilon,
                "total": total,
            },
            ARTICLE,
        )
        return share_row(conn, agreement_id, population, year)


def configure(
    platform: Platform,
    authority: Principal,
    agreement_id: int,
    dataset: str,
    *,
    per_query: float,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    """Put an agreement's use of ``dataset`` into the DP mode (once): each job spends
    ``per_query`` of the agreement's share of the dataset's population-year."""
    from sandbox.registry.base import get, require_authority
    from sandbox.registry.tables import agreements

    require_role(authority, Role.AUTHORITY, action="set privacy budgets", article=ARTICLE)
    per_query = epsilon_of(per_query, "per_query")
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
                f"agreement {agreement_id} is already in the DP mode for '{dataset}'; "
                "its configuration is fixed for the agreement's term"
            )
        conn.execute(
            dp_budgets.insert().values(
                agreement_id=agreement_id,
                dataset=dataset,
                epsilon_total=0.0,  # the earlier model's column: budgets are per population
                epsilon_per_query=per_query,
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
            {"dataset": dataset, "per_query": per_query, "bounded": sorted(parsed)},
            ARTICLE,
        )


# --------------------------------------------------------------------------- jobs
