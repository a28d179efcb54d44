"""``sandbox dp``: privacy budgets per entity population and year (docs/disclosure.md).

Added to :data:`sandbox.cli.common.main` when :mod:`sandbox.cli.app` imports this module.
The city authority sets a population's yearly epsilon (``dp budget set``); an authority
covering an agreement gives it a share (``dp share``); ``dp budget show``,
``dp shares`` and ``dp spent`` show the totals, the shares and what was spent with the
jobs that spent it (an operator: its own agreements). Each command acts as the
principal of ``--as``, on the home, or through the HTTP API with ``--server``
(:mod:`sandbox.api.routes_dp`), and prints the same text and JSON either way, with the
accounting: pure epsilon-DP, basic composition, delta 0.
"""

from __future__ import annotations

import click

from sandbox.cli.common import (
    Context,
    as_principal,
    emit,
    main,
    table,
)

POPULATION = click.Choice(["person", "organisation"])


def _footer(data: dict) -> str:
    return f"accounting: {data['accounting']}"


@main.group("dp")
def dp_group() -> None:
    """Privacy budgets: one epsilon per population (persons, organisations) and year."""


@dp_group.group("budget")
def budget_group() -> None:
    """A population's yearly epsilon (set by the city authority)."""


@budget_group.command("set")
@click.option("--population", type=POPULATION, default="person", show_default=True)
@click.option("--year", type=int, required=True, help="the UTC year")
@click.option("--epsilon", type=float, required=True, help="the year's total epsilon")
@as_principal
def budget_set(
    obj: Context, population: str, year: int, epsilon: float, token: str | None, as_json: bool
) -> None:
    """Set a population's epsilon for a year (lowered later, never raised)."""
    with obj.backend(token) as backend:
        row = backend.dp_set_total(population, year, epsilon)
    emit(
        row,
        as_json,
        f"{row['population']} {row['year']}: epsilon {row['epsilon']:g}, "
        f"{row['shared']:g} shared out, {row['spent']:g} spent\n{_footer(row)}",
    )


def _budget_text(data: dict) -> str:
    rows = [
        (b["population"], b["year"], b["epsilon"], b["shared"], b["spent"], b["remaining"])
        for b in data["budgets"]
    ]
    grid = table(
        rows,
        ("population", "year", "epsilon", "shared", "spent", "remaining"),
        right=("epsilon", "shared", "spent", "remaining"),
        empty="(no budget set)",
    )
    return f"{grid}\n{_footer(data)}"


@budget_group.command("show")
@click.option("--year", type=int, default=None, help="one UTC year (default: every year)")
@as_principal
def budget_show(obj: Context, year: int | None, token: str | None, as_json: bool) -> None:
    """Each population's yearly total, what is shared out and spent (authority, auditor)."""
    with obj.backend(token) as backend:
        data = backend.dp_budgets(year)
    emit(data, as_json, _budget_text(data))


@dp_group.command("share")
@click.option("--agreement", type=int, required=True)
@click.option("--epsilon", type=float, required=True, help="the agreement's share")
@click.option("--year", type=int, required=True, help="the UTC year")
@click.option("--population", type=POPULATION, default="person", show_default=True)
@as_principal
def share_set(
    obj: Context,
    agreement: int,
    epsilon: float,
    year: int,
    population: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Give an agreement its share of a population-year (never above the year's total)."""
    with obj.backend(token) as backend:
        row = backend.dp_set_share(agreement, year, epsilon, population)
    emit(
        row,
        as_json,
        f"agreement {row['agreement']}: {row['epsilon']:g} of the {row['population']} "
        f"population's {row['year']} budget, {row['spent']:g} spent\n{_footer(row)}",
    )


@dp_group.command("shares")
@click.option("--year", type=int, default=None, help="one UTC year (default: every year)")
@click.option("--agreement", type=int, default=None, help="one agreement")
@as_principal
def shares_show(
    obj: Context, year: int | None, agreement: int | None, token: str | None, as_json: bool
) -> None:
    """The agreements' shares you may see, with what each spent and has left."""
    with obj.backend(token) as backend:
        data = backend.dp_shares(year, agreement)
    rows = [
        (s["agreement"], s["population"], s["year"], s["epsilon"], s["spent"], s["remaining"])
        for s in data["shares"]
    ]
    grid = table(
        rows,
        ("agreement", "population", "year", "share", "spent", "remaining"),
        right=("share", "spent", "remaining"),
        empty="(no share)",
    )
    emit(data, as_json, f"{grid}\n{_footer(data)}")


@dp_group.command("spent")
@click.option("--year", type=int, default=None, help="one UTC year (default: every year)")
@click.option("--agreement", type=int, default=None, help="one agreement")
@as_principal
def spent_show(
    obj: Context, year: int | None, agreement: int | None, token: str | None, as_json: bool
) -> None:
    """What was spent per agreement and population-year, with the jobs that spent it."""
    with obj.backend(token) as backend:
        data = backend.dp_spends(year, agreement)
    rows = [
        (g["agreement"], g["population"], g["year"], g["spent"], ", ".join(map(str, g["jobs"])))
        for g in data["agreements"]
    ]
    grid = table(
        rows,
        ("agreement", "population", "year", "spent", "jobs"),
        right=("spent",),
        empty="(nothing spent)",
    )
    emit(data, as_json, f"{grid}\ntotal: {data['total']:g}\n{_footer(data)}")
