"""Privacy budgets over HTTP: each population's yearly epsilon, the agreements' shares,
and what was spent (:mod:`sandbox.guard.dp_budget`; docs/disclosure.md).

The city authority sets a population's total for a year; an authority covering an
agreement sets its share; the shares never add up to more than the total (Art. 15).
Authorities and auditors read every budget; an operator reads the shares and spends
of its own agreements (a county authority: those of its county). Every answer states
the accounting: pure epsilon-DP, basic composition, delta 0. Bad input is a 400 naming
the field and the article; a share above what remains is a 403 refusal naming its rule.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sandbox.api.auth import CurrentPrincipal
from sandbox.guard import dp_admin, dp_budget, dp_views

router = APIRouter(prefix="/v1/dp", tags=["privacy budgets"])

AGREEMENT = Field(ge=1, le=2**31 - 1, description="the agreement's number")
YEAR = Field(description=f"a UTC year, {dp_budget.FIRST_YEAR} to {dp_budget.LAST_YEAR}")
Population = Literal["person", "organisation"]
Accounting = Field(description="how the spends compose", examples=[dp_budget.ACCOUNTING])


class BudgetSet(BaseModel):
    """The city authority sets a population's epsilon for one year."""

    model_config = ConfigDict(extra="forbid")
    population: Population = "person"
    year: int = YEAR
    epsilon: float = Field(description="the year's total epsilon for the population")


class ShareSet(BaseModel):
    """An authority gives an agreement its share of a population-year."""

    model_config = ConfigDict(extra="forbid")
    agreement: int = AGREEMENT
    population: Population = "person"
    year: int = YEAR
    epsilon: float = Field(description="the agreement's share (0 stops its DP jobs)")


class PopulationBudget(BaseModel):
    population: str
    year: int
    epsilon: float
    shared: float
    unshared: float
    spent: float
    remaining: float
    accounting: str = Accounting


class Budgets(BaseModel):
    accounting: str = Accounting
    budgets: list[PopulationBudget]


class Share(BaseModel):
    agreement: int
    population: str
    year: int
    epsilon: float
    spent: float
    remaining: float
    accounting: str = Accounting


class Shares(BaseModel):
    accounting: str = Accounting
    shares: list[Share]


class AgreementSpend(BaseModel):
    agreement: int
    population: str
    year: int
    spent: float
    jobs: list[int] = Field(description="the jobs that spent it, each charged when queued")


class Spends(BaseModel):
    accounting: str = Accounting
    agreements: list[AgreementSpend]
    total: float = Field(description="the sum over the agreements listed")


@router.get("/budgets", response_model=Budgets)
def dp_budgets(
    request: Request,
    me: CurrentPrincipal,
    year: int | None = Query(default=None, ge=-(2**31), le=2**31),
) -> dict:
    """Every population's yearly budget: total, shared, spent (authority or auditor)."""
    with request.app.state.platform.store.read() as conn:
        return dp_views.budgets(conn, me, year)


@router.post("/budgets", response_model=PopulationBudget)
def dp_budget_set(request: Request, me: CurrentPrincipal, body: BudgetSet) -> dict:
    """Set a population's epsilon for a year (the city authority; lowered, never raised)."""
    return dp_admin.set_total(
        request.app.state.platform, me, body.population, body.year, body.epsilon
    )


@router.get("/shares", response_model=Shares)
def dp_shares(
    request: Request,
    me: CurrentPrincipal,
    year: int | None = Query(default=None, ge=-(2**31), le=2**31),
    agreement: int | None = Query(default=None, ge=1, le=2**31 - 1),
) -> dict:
    """The agreements' shares you may see, with what each has spent and has left."""
    with request.app.state.platform.store.read() as conn:
        return dp_views.shares(conn, me, year, agreement)


@router.post("/shares", response_model=Share)
def dp_share_set(request: Request, me: CurrentPrincipal, body: ShareSet) -> dict:
    """Give an agreement its share of a population-year (an authority covering it)."""
    return dp_admin.set_share(
        request.app.state.platform, me, body.agreement, body.year, body.epsilon, body.population
    )


@router.get("/spends", response_model=Spends)
def dp_spends(
    request: Request,
    me: CurrentPrincipal,
    year: int | None = Query(default=None, ge=-(2**31), le=2**31),
    agreement: int | None = Query(default=None, ge=1, le=2**31 - 1),
) -> dict:
    """What was spent per agreement and population-year, the jobs that spent it, the total."""
    with request.app.state.platform.store.read() as conn:
        return dp_views.spends(conn, me, year, agreement)
