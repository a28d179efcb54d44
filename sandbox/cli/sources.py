"""``sandbox dataset suggest``: a proposed classification for a source, with its evidence.

The proposal is a classification file with each column's evidence as a comment; the
provider edits it and registers with ``sandbox dataset register ... --classification``.
Nothing is registered by ``suggest``.
"""

from __future__ import annotations

from pathlib import Path

import click

from policies.errors import InputError
from sandbox.cli.common import Context, as_principal, emit, table
from sandbox.cli.data import dataset


@dataset.command("suggest")
@click.argument("source")
@click.option("--rows", type=int, default=None, help="rows to read (default 200,000)")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="write the proposed classification YAML here (default: print it)",
)
@as_principal
def dataset_suggest(
    obj: Context, source: str, rows: int | None, out: Path | None, token: str | None, as_json: bool
) -> None:
    """Propose a classification for SOURCE (a file or URI); nothing is registered."""
    if out is not None and out.exists():
        raise InputError(f"--out {out}: the file exists; choose another name or remove it")
    with obj.backend(token) as backend:
        data = backend.suggest_classification(source, rows)
    if out is not None:
        out.write_text(data["yaml"], encoding="utf-8")
    text = data["yaml"] if out is None else (
        f"proposed classification written to {out} ({data['rows']:,} rows read); "
        "check and edit it, then register with it"
    )  # fmt: skip
    emit(data, as_json, text.rstrip("\n"))


@dataset.command("refresh")
@click.argument("name")
@as_principal
def dataset_refresh(obj: Context, name: str, token: str | None, as_json: bool) -> None:
    """Pull dataset NAME from its source again (a new version only if its data changed)."""
    with obj.backend(token) as backend:
        data = backend.refresh_dataset(name)
    word = "changed: version" if data["changed"] else "unchanged, kept version"
    emit(data, as_json, f"{name}: {word} {data['version']} ({data['rows']:,} rows)")


@dataset.command("schedule")
@click.argument("name")
@click.option("--daily", "daily_at", default=None, help="pull every day at HH:MM (Asia/Shanghai)")
@click.option("--off", is_flag=True, help="no scheduled pulls")
@as_principal
def dataset_schedule(
    obj: Context, name: str, daily_at: str | None, off: bool, token: str | None, as_json: bool
) -> None:
    """Pull dataset NAME from its source every day at a time, or stop (--off)."""
    if (daily_at is None) == (not off):
        raise InputError("give either --daily HH:MM or --off")
    with obj.backend(token) as backend:
        data = backend.schedule_refresh(name, None if off else daily_at)
    text = (
        f"{name}: pulled every day at {data['daily_at']} ({data['timezone']})"
        if data["daily_at"]
        else f"{name}: no scheduled pulls"
    )
    emit(data, as_json, text)


@dataset.command("sources")
@as_principal
def dataset_sources(obj: Context, token: str | None, as_json: bool) -> None:
    """Your datasets that can be pulled again: source, schedule, the last pull and its error."""
    with obj.backend(token) as backend:
        rows = backend.list_sources()
    emit(
        rows,
        as_json,
        table(
            [
                (
                    r["dataset"],
                    r["daily_at"] or "-",
                    r["last_status"] or "-",
                    r["last_error"] or "",
                    r["source"],
                )
                for r in rows
            ],
            ("dataset", "daily", "last pull", "error", "source"),
            empty="(no datasets with a source to pull again)",
        ),
    )
