"""``sandbox he sum``: an operator's encrypted sums per group (docs/he.md).

Added to :data:`sandbox.cli.common.main` when :mod:`sandbox.cli.app` imports this module.
The operator's half (key generation, encryption,
decryption) always runs in this process; the platform's half runs, through the
command's backend, on the host (in-process, on ``--home``) or behind ``--server``. Either way only the public
context, the keys and the ciphertexts cross to the platform.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from sandbox.cli.common import (
    Context,
    as_principal,
    emit,
    main,
    table,
)


@main.group("he")
def he_group() -> None:
    """Homomorphic-encryption aggregates: your values stay encrypted end to end."""


def _by(values: tuple[str, ...]) -> list[str]:
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


@he_group.command("sum")
@click.option("--dataset", required=True, help="the granted dataset to join to")
@click.option("--key-column", required=True, help="its identifier column your keys are values of")
@click.option("--by", "by", multiple=True, required=True, help="public column(s) to group by")
@click.option(
    "--keys-and-values",
    "source",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with a header row: key,value",
)
@click.option("--scheme", type=click.Choice(["ckks", "bfv"]), default="ckks", show_default=True)
@as_principal
def he_sum_command(
    obj: Context,
    dataset: str,
    key_column: str,
    by: tuple[str, ...],
    source: Path,
    scheme: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Sum your encrypted values per group of a dataset's public columns."""
    from sandbox.client import he as client_he

    columns = _by(by)
    keys, values = client_he.read_keys_and_values(source, scheme)
    started = time.perf_counter()
    ctx = client_he.make_context(scheme)
    with obj.backend(token) as backend:
        result = backend.he_sum(ctx, dataset, key_column, columns, keys, values, scheme)
    elapsed = time.perf_counter() - started
    data = {
        "dataset": result.dataset,
        "version": result.version,
        "scheme": result.scheme,
        "by": result.by,
        "groups": [
            {**g.group, "subjects": g.subjects, "sum": g.sum, "mean": g.mean} for g in result.groups
        ],
        "list_size": len(keys),
        "answer_bytes": result.answer_bytes,
        "seconds": round(elapsed, 2),
    }
    lines = [f"{' / '.join(result.by)}: subjects, sum, mean ({result.scheme}, {elapsed:.1f} s)"]
    rows = [
        (
            " / ".join(str(v) for v in g.group.values()),
            g.subjects,
            f"{g.sum:,.2f}" if result.scheme == "ckks" else f"{g.sum:,}",
            f"{g.mean:,.2f}",
        )
        for g in result.groups
    ]
    grid = table(rows, ("group", "subjects", "sum", "mean"), right=("subjects", "sum", "mean"))
    lines.extend("  " + line for line in grid.splitlines())
    lines.append(
        "Groups not listed were withheld or reached by none of your keys: the answer does "
        "not say which, nor how many keys matched nothing."
    )
    emit(data, as_json, "\n".join(lines))
