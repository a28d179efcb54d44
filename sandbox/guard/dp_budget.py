"""Privacy budgets per entity population and year, and the DP mode of each agreement.

Accounting: pure epsilon-DP with basic sequential composition (delta 0). Every
release about one entity adds its epsilon to what that entity has lost; nothing
better than the plain sum is claimed (:data:`ACCOUNTING`).

* **One budget per population per year** (issue 18). The persons (every dataset
  whose classification's ``entity_kind`` is ``person`` or undeclared) are one
  population, the organisations another. The authority sets each population's
  epsilon for a UTC year (:func:`set_total`) and shares it out per agreement
  (:func:`set_share`); the shares of a population-year never add up to more than
  its total, so the agreements of colluding operators together never spend more
  than the total, whichever datasets and dataset versions they touch.
* **The DP mode** of an agreement's use of one dataset (:func:`configure`): the
  epsilon each job spends and the bounds of each measure column that may be summed.
  A job in the DP mode draws its epsilon from its agreement's share of the
  population-year it touches: its first table's population, in the year of the
  job's submission (UTC).
* **Charged at admission** (:func:`reserve`), in the store transaction that moves
  the job to ``queued``, with the check under the store's write lock: two jobs
  cannot both take the last epsilon. A job that would exceed the share or the
  population's remainder is refused (rule ``dp_budget_exhausted``, Art. 15, naming
  what remains) and spends nothing. A job admitted to run has spent its epsilon
  whether it is later released, withheld or fails: a refund decided by the run's
  outcome would tell the operator something about the data.
* Every setting, share and spend is one ledger entry; :mod:`sandbox.guard.dp_views`
  is what the authority, the auditors and the operators (their own agreements only)
  see.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Row

from policies.access import Grant
from policies.dp import Bounds
from policies.errors import InputError, NotFound, PolicyRefusal
from sandbox.core.ledger import Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.store import jobs
from sandbox.guard.tables import dp_budgets, dp_charges, dp_population_budgets, dp_shares

ARTICLE = "Art. 15"
ACCOUNTING = "pure epsilon-DP, basic composition, delta 0"
POPULATIONS = ("person", "organisation")
FIRST_YEAR, LAST_YEAR = 2000, 2100
RULE = "dp_budget_exhausted"
OVER_TOTAL = "dp_shares_over_total"
SLACK = 1e-9  # floating-point sums of epsilons: a job may use exactly what remains


def population_of(entity_kind: str | None) -> str:
    """The population whose budget a dataset's entities draw on (undeclared: person)."""
    return "organisation" if entity_kind == "organisation" else "person"


@dataclass(frozen=True)
class DpMode:
    """The DP mode that applies to one job: whose share pays, and how to bound sums."""

    agreement_id: int
    dataset: str
    per_query: float
    bounds: Mapping[str, Bounds]
    population: str = "person"


@dataclass(frozen=True)
class Balance:
    """One agreement's share of one population-year, and the population's total."""

    agreement_id: int
    population: str
    year: int
    share: float
    share_spent: float
    total: float
    total_spent: float

    @property
    def share_remaining(self) -> float:
        return max(0.0, self.share - self.share_spent)

    @property
    def total_remaining(self) -> float:
        return max(0.0, self.total - self.total_spent)

    @property
    def remaining(self) -> float:
        """What a job of this agreement may still spend: the smaller of the two."""
        return min(self.share_remaining, self.total_remaining)


# --------------------------------------------------------------------------- input


def epsilon_of(value: Any, field: str, *, zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise InputError(
            f"{field}: epsilon must be a finite number {'of 0 or more' if zero else 'above 0'}, "
            f"not {value!r} ({ARTICLE})",
            article=ARTICLE,
        )
    if number == 0 and not zero:
        raise InputError(f"{field}: epsilon must be above 0, not 0 ({ARTICLE})", article=ARTICLE)
    return number


def budget_year(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise InputError(
                f"year: '{value}' is not a year ({ARTICLE})", article=ARTICLE
            ) from None
    if not FIRST_YEAR <= value <= LAST_YEAR:
        raise InputError(
            f"year: {value} is out of range; budgets are set for the years {FIRST_YEAR} to "
            f"{LAST_YEAR} (UTC) ({ARTICLE})",
            article=ARTICLE,
        )
    return value


def checked_population(value: Any) -> str:
    if value not in POPULATIONS:
        raise InputError(
            f"population: '{value}' is not a population; use person or organisation ({ARTICLE})",
            article=ARTICLE,
        )
    return str(value)


def agreement_row(conn: Connection, agreement_id: Any) -> Row:
    from sandbox.registry.tables import agreements

    if isinstance(agreement_id, bool) or not isinstance(agreement_id, int):
        raise InputError(
            f"agreement: '{agreement_id}' is not an agreement number ({ARTICLE})", article=ARTICLE
        )
    row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
    if row is None:
        raise NotFound(
            f"agreement: there is no agreement {agreement_id} ({ARTICLE})", article=ARTICLE
        )
    return row


# --------------------------------------------------------------------------- sums


def total_of(conn: Connection, population: str, year: int) -> float | None:
    row = conn.execute(
        select(dp_population_budgets.c.epsilon).where(
            dp_population_budgets.c.population == population,
            dp_population_budgets.c.year == year,
        )
    ).first()
    return None if row is None else float(row.epsilon)


def shared_of(conn: Connection, population: str, year: int, but: int | None = None) -> float:
    where = [dp_shares.c.population == population, dp_shares.c.year == year]
    if but is not None:
        where.append(dp_shares.c.agreement_id != but)
    return float(
        conn.execute(
            select(func.coalesce(func.sum(dp_shares.c.epsilon), 0.0)).where(*where)
        ).scalar_one()
    )


def spent_of(
    conn: Connection, population: str, year: int, agreement_id: int | None = None
) -> float:
    where = [dp_charges.c.population == population, dp_charges.c.year == year]
    if agreement_id is not None:
        where.append(dp_charges.c.agreement_id == agreement_id)
    return float(
        conn.execute(
            select(func.coalesce(func.sum(dp_charges.c.epsilon), 0.0)).where(*where)
        ).scalar_one()
    )


def share_of(conn: Connection, agreement_id: int, population: str, year: int) -> float:
    row = conn.execute(
        select(dp_shares.c.epsilon).where(
            dp_shares.c.agreement_id == agreement_id,
            dp_shares.c.population == population,
            dp_shares.c.year == year,
        )
    ).first()
    return 0.0 if row is None else float(row.epsilon)


def balance(conn: Connection, agreement_id: int, population: str, year: int) -> Balance:
    """The agreement's share of a population-year and the population's total, with spends."""
    return Balance(
        agreement_id,
        population,
        year,
        share_of(conn, agreement_id, population, year),
        spent_of(conn, population, year, agreement_id),
        total_of(conn, population, year) or 0.0,
        spent_of(conn, population, year),
    )


# --------------------------------------------------------------------------- the authority


def mode_for(
    conn: Connection,
    used: Mapping[str, Grant],
    dataset: str,
    entity_kind: str | None = None,
    declared: Mapping[str, tuple[float, float]] | None = None,
) -> DpMode | None:
    """The DP mode of the job's first dataset, if the agreement behind its grant has one;
    ``entity_kind`` (of the dataset version the job reads) names the population, and
    ``declared`` is its classification's ``bounds``: the provider's range of one entity's
    value of each measure, the clamp the noise is scaled for. A measure the provider
    declared no bounds for takes the agreement's (``dp_admin.configure``), if any."""
    grant = used.get(dataset)
    if grant is None or grant.agreement_id is None:
        return None
    row = conn.execute(
        select(dp_budgets.c.bounds_json, dp_budgets.c.epsilon_per_query).where(
            dp_budgets.c.agreement_id == grant.agreement_id, dp_budgets.c.dataset == dataset
        )
    ).first()
    if row is None:
        return None
    agreed = json.loads(row.bounds_json)
    bounds = {c: Bounds(lo, hi) for c, (lo, hi) in {**agreed, **(declared or {})}.items()}
    return DpMode(
        grant.agreement_id,
        dataset,
        float(row.epsilon_per_query),
        bounds,
        population_of(entity_kind),
    )


def year_of_job(conn: Connection, job_id: int) -> int:
    """The UTC year the job was submitted in: the year whose budget it draws on."""
    created = conn.execute(select(jobs.c.created_at).where(jobs.c.id == job_id)).scalar_one()
    moment = datetime.fromisoformat(created)
    return (moment if moment.tzinfo is None else moment.astimezone(UTC)).year


def refusal(current: Balance, asked: float) -> PolicyRefusal | None:
    """The refusal of a job the remaining budget cannot pay for, or None."""
    if asked <= current.remaining + SLACK:
        return None
    return PolicyRefusal(
        RULE,
        f"the privacy budget is exhausted: this job needs epsilon {asked:g}; agreement "
        f"{current.agreement_id} has {current.share_remaining:g} of its share of "
        f"{current.share:g} left, and the {current.population} population has "
        f"{current.total_remaining:g} of {current.total:g} left, for {current.year} "
        f"({ACCOUNTING}); nothing was spent",
        article=ARTICLE,
        subject=f"agreement:{current.agreement_id}",
        hint="no further differentially private releases on this population are possible "
        "this year under this agreement's share; ask the authority",
    )


def charge_of(conn: Connection, job_id: int) -> Row | None:
    """The job's charge, if it has one."""
    return conn.execute(select(dp_charges).where(dp_charges.c.job_id == job_id)).first()


def reserve(
    platform: Platform, conn: Connection, actor: Actor, mode: DpMode, job_id: int
) -> Balance:
    """Charge the job's epsilon to its agreement's share, in the caller's write
    transaction (the one that queues the job): check and insert under one lock. Raises
    the ``dp_budget_exhausted`` refusal, having written nothing. A job already charged
    is not charged again."""
    done = charge_of(conn, job_id)
    if done is not None:
        return balance(conn, done.agreement_id, done.population, done.year)
    year = year_of_job(conn, job_id)
    current = balance(conn, mode.agreement_id, mode.population, year)
    refused = refusal(current, mode.per_query)
    if refused is not None:
        raise refused
    conn.execute(
        dp_charges.insert().values(
            job_id=job_id,
            agreement_id=mode.agreement_id,
            population=mode.population,
            year=year,
            dataset=mode.dataset,
            epsilon=mode.per_query,
            created_at=now_utc(),
        )
    )
    after = balance(conn, mode.agreement_id, mode.population, year)
    platform.record(
        conn,
        actor,
        "dp.spend",
        f"agreement:{mode.agreement_id}",
        {
            "job": job_id,
            "dataset": mode.dataset,
            "population": mode.population,
            "year": year,
            "epsilon": mode.per_query,
            "share_remaining": after.share_remaining,
            "population_remaining": after.total_remaining,
            "accounting": ACCOUNTING,
        },
        ARTICLE,
    )
    return after


def charged(platform: Platform, conn: Connection, actor: Actor, mode: DpMode, job_id: int) -> dict:
    """In a release transaction: what the job spent (charging it now if it was queued
    before its agreement entered the DP mode). Nothing is released in the DP mode without
    a charge of at least the epsilon its noise was calibrated for."""
    after = reserve(platform, conn, actor, mode, job_id)
    row = charge_of(conn, job_id)
    assert row is not None  # reserve wrote it or found it
    if row.epsilon + SLACK < mode.per_query:
        raise PolicyRefusal(
            RULE,
            f"job {job_id} was charged epsilon {row.epsilon:g}, less than the {mode.per_query:g} "
            "of its noise; nothing is released",
            article=ARTICLE,
            subject=f"job:{job_id}",
        )
    return {
        "epsilon": float(row.epsilon),
        "population": row.population,
        "year": row.year,
        "remaining": after.share_remaining,
        "accounting": ACCOUNTING,
    }


# --------------------------------------------------------------------------- views


def budget_row(conn: Connection, population: str, year: int) -> dict:
    total = total_of(conn, population, year) or 0.0
    shared, spent = shared_of(conn, population, year), spent_of(conn, population, year)
    return {
        "population": population,
        "year": year,
        "epsilon": total,
        "shared": shared,
        "unshared": max(0.0, total - shared),
        "spent": spent,
        "remaining": max(0.0, total - spent),
        "accounting": ACCOUNTING,
    }


def share_row(conn: Connection, agreement_id: int, population: str, year: int) -> dict:
    current = balance(conn, agreement_id, population, year)
    return {
        "agreement": agreement_id,
        "population": population,
        "year": year,
        "epsilon": current.share,
        "spent": current.share_spent,
        "remaining": current.share_remaining,
        "accounting": ACCOUNTING,
    }
