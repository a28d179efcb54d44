"""``sandbox dataset ...`` and ``sandbox grant ...``: register datasets, read their profiles,
list grants. Each command runs through :meth:`sandbox.cli.common.Context.backend`, except
``grant add``: a direct grant outside the workflow, made on the platform's host only
(:attr:`sandbox.cli.common.Context.platform` refuses ``--server``) for tests and recovery."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from policies.errors import InputError
from sandbox.cli.common import (
    Context,
    as_principal,
    emit,
    main,
    table,
)

HIDDEN_PROFILE = (
    "(the quality profile is shown to the dataset's provider, the authority and "
    "auditors only; Art. 14)"
)


@main.group()
def dataset() -> None:
    """Register datasets and read their profiles."""


class _Progress:
    """Rows and bytes on stderr, at most twice a second, for long ingestions."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False

    def __call__(self, rows: int, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        size = f"{done / 1e6:,.1f} MB" + (f" of {total / 1e6:,.1f} MB" if total else "")
        click.echo(f"\r  ingesting: {rows:,} rows, {size}", nl=False, err=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("", err=True)


@dataset.command("register")
@click.argument("name")
@click.option(
    "--source",
    required=True,
    help="file path or URI (csv, parquet, jsonl, xlsx?sheet=, duckdb://, postgresql://, mysql://)",
)
@click.option(
    "--classification",
    "classification_path",
    required=True,
    type=click.Path(path_type=Path),
    help="YAML: entity_key, columns, formats",
)
@as_principal
def dataset_register(
    obj: Context,
    name: str,
    source: str,
    classification_path: Path,
    token: str | None,
    as_json: bool,
) -> None:
    """Register a dataset (a new version if its data changed)."""
    from sandbox.data.vault import load_classification

    classification = load_classification(classification_path)
    progress = _Progress()
    try:
        with obj.backend(token) as backend:
            data = backend.register_dataset(
                name, source, classification_path, classification, progress
            )
    finally:
        progress.close()
    word = "registered" if data["changed"] else "unchanged, kept"
    emit(
        data,
        as_json,
        f"{name}: {word} version {data['version']} ({data['rows']:,} rows, "
        f"sha256 {data['sha256'][:12]})",
    )


@dataset.command("list")
@as_principal
def dataset_list(obj: Context, token: str | None, as_json: bool) -> None:
    """List datasets and their latest versions."""
    with obj.backend(token) as backend:
        rows = backend.list_datasets()
    emit(
        rows,
        as_json,
        table(
            [(r["name"], r["version"], r["rows"]) for r in rows],
            ("dataset", "version", "rows"),
            right=("version", "rows"),
            empty="(no datasets)",
        ),
    )


@dataset.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None)
@as_principal
def dataset_show(
    obj: Context, name: str, version: int | None, token: str | None, as_json: bool
) -> None:
    """Show a dataset's classification and quality profile (provider, authority, auditor)."""
    from connectors.quality import format_profile

    with obj.backend(token) as backend:
        data = backend.show_dataset(name, version)
    profile = format_profile(data["profile"]) if data["profile"] else HIDDEN_PROFILE
    emit(
        data,
        as_json,
        f"{name} version {data['version']} ({data['rows']:,} rows, "
        f"sha256 {data['sha256'][:12]})\n" + profile,
    )


# --- grants -------------------------------------------------------------------


@main.group()
def grant() -> None:
    """Data grants: who may run which kinds of job on which dataset, until when."""


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _overrides(disclosure: tuple[str, ...]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in disclosure:
        if "=" not in item:
            raise InputError(f"--disclosure '{item}': use NAME=VALUE, e.g. min_entities=20")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value.strip()
    return overrides


@grant.command("add")
@click.option("--operator", required=True)
@click.option("--dataset", "dataset_name", required=True)
@click.option("--until", required=True, help="end of the term, ISO date")
@click.option("--from", "start", default=None, help="start of the term (default: now)")
@click.option("--columns", default=None, help="comma-separated granted columns (default: all)")
@click.option(
    "--aggregates", default="", help="extra aggregates: min,max,median,quantile,stddev,variance"
)
@click.option("--expressions", is_flag=True, help="allow aggregates over expressions")
@click.option(
    "--kinds",
    default="sql_aggregate",
    show_default=True,
    help="comma-separated job kinds: sql_aggregate, psi_match, he_aggregate, verification",
)
@click.option("--disclosure", multiple=True, help="stricter disclosure parameter, NAME=VALUE")
@as_principal
def grant_add(
    obj: Context,
    operator: str,
    dataset_name: str,
    until: str,
    start: str | None,
    columns: str | None,
    aggregates: str,
    expressions: bool,
    kinds: str,
    disclosure: tuple[str, ...],
    token: str | None,
    as_json: bool,
) -> None:
    """Host only: grant an operator use of a dataset directly, outside the workflow.

    For tests and recovery. No notice, review, agreement or provider approval stands
    behind it (Art. 13, 14 require them), so it runs without --server only and the
    ledger records it as grant.direct. Data use is granted by `sandbox request data`
    under an agreement and its approval (docs/workflow.md)."""
    job_kinds = _split(kinds) or []
    if not job_kinds:
        raise InputError("--kinds names no job kind; e.g. --kinds sql_aggregate,psi_match")
    overrides = _overrides(disclosure)
    from sandbox.data.grants import add_grant

    platform = obj.platform  # refuses --server: a direct grant is made on the host only
    grant_id = add_grant(
        platform,
        obj.principal(token),
        operator,
        dataset_name,
        until=until,
        start=start,
        columns=_split(columns),
        extra_aggregates=_split(aggregates) or [],
        aggregate_expressions=expressions,
        job_kinds=job_kinds,
        disclosure=overrides,
    )
    emit(
        {"grant": grant_id, "kinds": sorted(job_kinds)},
        as_json,
        f"grant {grant_id}: {operator} may use {dataset_name} until {until} "
        f"for {', '.join(sorted(job_kinds))}",
    )


@grant.command("list")
@as_principal
def grant_list(obj: Context, token: str | None, as_json: bool) -> None:
    """Grants you may see (operators: yours; providers: on your datasets; authority, auditors:
    all), with the job kinds each covers."""
    with obj.backend(token) as backend:
        rows = backend.list_grants()
    emit(
        rows,
        as_json,
        table(
            [
                (
                    r["id"],
                    r["operator"],
                    r["dataset"],
                    ", ".join(r["kinds"]),
                    r["columns"] if r["columns"] == "all" else ", ".join(r["columns"]),
                    r["valid_until"][:16].replace("T", " "),
                    r["status"] if r["in_term"] or r["status"] != "active" else "out of term",
                )
                for r in rows
            ],
            ("grant", "operator", "dataset", "kinds", "columns", "ends (UTC)", "status"),
            right=("grant",),
            empty="(no grants)",
        ),
    )
