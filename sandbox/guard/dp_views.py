"""What the privacy budgets show (:mod:`sandbox.guard.dp_budget` keeps and charges them).

:func:`budgets` (each population-year's total, shared out, spent, remaining: the
authority and auditors), :func:`shares` and :func:`spends` (per agreement, with the jobs
that spent it: an operator sees its own agreements only, a county authority its
county's) and :func:`show` (one agreement's DP-mode settings). Every answer states the
accounting.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import NotFound, PermissionDenied
from sandbox.core.principals import Principal, Role, require_role
from sandbox.guard.dp_budget import (
    ACCOUNTING,
    ARTICLE,
    agreement_row,
    budget_row,
    budget_year,
    share_row,
)
from sandbox.guard.tables import dp_budgets, dp_charges, dp_population_budgets, dp_shares


def _visible_agreements(conn: Connection, viewer: Principal) -> set[int] | None:
    """The agreements whose shares and spends ``viewer`` sees; None: every one."""
    from policies.workflow import covers
    from sandbox.registry.tables import agreements

    if viewer.role is Role.AUDITOR or (
        viewer.role is Role.AUTHORITY and viewer.jurisdiction == "city"
    ):
        return None
    if viewer.role is Role.AUTHORITY:
        rows = conn.execute(select(agreements.c.id, agreements.c.jurisdiction))
        return {r.id for r in rows if covers(viewer.jurisdiction, r.jurisdiction)}
    if viewer.role is Role.OPERATOR:
        return set(
            conn.execute(
                select(agreements.c.id).where(agreements.c.operator_id == viewer.id)
            ).scalars()
        )
    raise PermissionDenied(
        f"{viewer.name} is a {viewer.role.value}; privacy budgets are read by the authority, "
        f"the auditors and the operators of the agreements ({ARTICLE})",
        article=ARTICLE,
    )


def budgets(conn: Connection, viewer: Principal, year: int | None = None) -> dict:
    """Every population-year budget (authorities and auditors)."""
    require_role(
        viewer, Role.AUTHORITY, Role.AUDITOR, action="read population budgets", article=ARTICLE
    )
    query = select(dp_population_budgets.c.population, dp_population_budgets.c.year)
    if year is not None:
        query = query.where(dp_population_budgets.c.year == budget_year(year))
    rows = conn.execute(
        query.order_by(dp_population_budgets.c.year, dp_population_budgets.c.population)
    )
    return {
        "accounting": ACCOUNTING,
        "budgets": [budget_row(conn, r.population, r.year) for r in rows],
    }


def shares(
    conn: Connection, viewer: Principal, year: int | None = None, agreement_id: int | None = None
) -> dict:
    """The shares ``viewer`` may see (an operator: its own agreements')."""
    visible = _visible_agreements(conn, viewer)
    query = select(dp_shares.c.agreement_id, dp_shares.c.population, dp_shares.c.year)
    if year is not None:
        query = query.where(dp_shares.c.year == budget_year(year))
    if agreement_id is not None:
        _seen(conn, visible, agreement_id)
        query = query.where(dp_shares.c.agreement_id == agreement_id)
    rows = [
        r
        for r in conn.execute(
            query.order_by(dp_shares.c.year, dp_shares.c.population, dp_shares.c.agreement_id)
        )
        if visible is None or r.agreement_id in visible
    ]
    return {
        "accounting": ACCOUNTING,
        "shares": [share_row(conn, r.agreement_id, r.population, r.year) for r in rows],
    }


def _seen(conn: Connection, visible: set[int] | None, agreement_id: int) -> None:
    if visible is not None and agreement_id not in visible:
        raise NotFound(
            f"agreement: there is no agreement {agreement_id} ({ARTICLE})", article=ARTICLE
        )
    agreement_row(conn, agreement_id)


def spends(
    conn: Connection, viewer: Principal, year: int | None = None, agreement_id: int | None = None
) -> dict:
    """What was spent, per agreement and population-year with the jobs that spent it, and
    in total over the agreements ``viewer`` sees."""
    visible = _visible_agreements(conn, viewer)
    query = select(dp_charges).order_by(dp_charges.c.job_id)
    if year is not None:
        query = query.where(dp_charges.c.year == budget_year(year))
    if agreement_id is not None:
        _seen(conn, visible, agreement_id)
        query = query.where(dp_charges.c.agreement_id == agreement_id)
    groups: dict[tuple[int, str, int], dict] = {}
    total = 0.0
    for r in conn.execute(query):
        if visible is not None and r.agreement_id not in visible:
            continue
        key = (r.agreement_id, r.population, r.year)
        group = groups.setdefault(
            key,
            {
                "agreement": r.agreement_id,
                "population": r.population,
                "year": r.year,
                "spent": 0.0,
                "jobs": [],
            },
        )
        group["spent"] += float(r.epsilon)
        group["jobs"].append(r.job_id)
        total += float(r.epsilon)
    return {
        "accounting": ACCOUNTING,
        "agreements": [groups[k] for k in sorted(groups, key=lambda k: (k[2], k[1], k[0]))],
        "total": total,
    }


def show(conn: Connection, viewer: Principal, agreement_id: int) -> list[dict]:
    """The agreement's DP mode per dataset (per-query epsilon, bounds): for its operator,
    an authority covering it or an auditor. Its shares and spends: :func:`shares`,
    :func:`spends`."""
    from sandbox.registry.base import get, require_authority
    from sandbox.registry.tables import agreements

    row = get(conn, agreements, agreement_id, "agreement")
    if viewer.role is Role.OPERATOR and viewer.id != row.operator_id:
        raise NotFound(f"no agreement {agreement_id}")
    if viewer.role not in (Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR):
        raise NotFound(f"no agreement {agreement_id}")
    if viewer.role is Role.AUTHORITY:
        require_authority(viewer, row.jurisdiction, "read privacy budgets", "Art. 5")
    return [
        {
            "dataset": b.dataset,
            "epsilon_per_query": b.epsilon_per_query,
            "bounds": json.loads(b.bounds_json),
            "accounting": ACCOUNTING,
        }
        for b in conn.execute(select(dp_budgets).where(dp_budgets.c.agreement_id == agreement_id))
    ]
