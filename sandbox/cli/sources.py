"""``sandbox dataset suggest``: a proposed classification for a source, with its evidence.

The proposal is a classification file with each column's evidence as a comment; the
provider edits it and registers with ``sandbox dataset register ... --classification``.
Nothing is registered by ``suggest``.
"""

from __future__ import annotations

from pathlib import Path

import click

from policies.errors import InputError
from sandbox.cli.common import Context, as_option, emit, json_option, pass_ctx
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
@as_option
@json_option
@pass_ctx
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
