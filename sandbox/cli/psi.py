"""``sandbox psi``: match your own list against a dataset column; ``sandbox psi terms``.

``sandbox psi --dataset D --column C --items FILE.csv --as TOKEN`` runs the
operator's half here (:func:`sandbox.client.psi.run_psi`) through the command's
backend: on the platform's host it calls the platform in-process, with ``--server``
it goes over HTTP.
Items are the first column of the CSV (or the column ``--items-column`` names);
a header row is skipped when it is not an item. A progress bar shows the chunks.
``sandbox psi terms`` is the authority's: the PSI terms of an agreement or grant.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from policies.errors import InputError
from policies.psi import PsiMode
from sandbox.cli.common import Context, as_option, as_principal, emit, json_option, main

MODES = [m.value for m in PsiMode]


def read_items(path: Path, column: str | None) -> list[str]:
    """The items of a CSV file: the named column, else the first; a header row is dropped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise InputError(f"cannot read items file '{path}': {exc.strerror}") from None
    if not rows:
        return []
    index = 0
    header = [h.strip() for h in rows[0]]
    if column is not None:
        if column not in header:
            raise InputError(f"items file has no column '{column}' in its header")
        index = header.index(column)
        rows = rows[1:]
    elif header and header[0] and not any(ch.isdigit() for ch in header[0]):
        rows = rows[1:]  # a header such as "credit_code"; no identifier lacks digits
    return [row[index] for row in rows if len(row) > index]


def _text(data: dict) -> str:
    lines = [
        f"PSI session {data['session']}: {data['dataset']} v{data['version']} "
        f"column {data['column']}, {data['mode']} mode",
        f"your list: {data['list_size']:,} distinct items; in the intersection: {data['count']:,}",
    ]
    for group, n in sorted((data["groups"] or {}).items()):
        lines.append(f"  {group}: {n:,}")
    for item in data["items"] or []:
        lines.append(item)
    return "\n".join(lines)


@main.group("psi", invoke_without_command=True)
@click.option("--dataset", help="the dataset to match against")
@click.option("--column", help="its column (an identifier the PSI terms name)")
@click.option(
    "--items",
    "items_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV file of your items (first column, or --items-column)",
)
@click.option("--items-column", default=None, help="the CSV column holding the items")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="cardinality",
    show_default=True,
    help="learn only how many match, or which",
)
@click.option("--consent", default=None, help="consent reference of the batch (Art. 19)")
@click.option("--group-by", default=None, help="count matches per value of this public column")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="write the matched items (membership mode) to this CSV instead of printing",
)
@as_option
@json_option
@click.pass_context
def psi_cmd(
    ctx, dataset, column, items_path, items_column, mode, consent, group_by, out, token, as_json
) -> None:
    """Match your own list against a dataset column by private set intersection."""
    if ctx.invoked_subcommand is not None:
        return
    if not (dataset and column and items_path):
        raise click.UsageError("--dataset, --column and --items are required")
    obj: Context = ctx.find_object(Context)
    items = read_items(items_path, items_column)
    with click.progressbar(length=1, label="PSI chunks", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        with obj.backend(token) as backend:
            data = backend.psi(
                dataset,
                column,
                items,
                mode=mode,
                consent=consent,
                group_by=group_by,
                progress=progress,
            )
    if out is not None and data["items"] is not None:
        out.write_text("item\n" + "".join(f"{i}\n" for i in data["items"]), encoding="utf-8")
        data["items"] = None
        data["written"] = str(out)
    emit(data, as_json, _text(data))


@psi_cmd.command("terms")
@click.option("--agreement", type=int, default=None, help="the agreement the terms belong to")
@click.option("--grant", "grant_id", type=int, default=None, help="or a direct grant")
@click.option("--dataset", required=True)
@click.option("--column", required=True, help="the column PSI may match")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="cardinality",
    show_default=True,
    help="the most the operator may learn",
)
@click.option("--min-items", type=int, default=None, help="smallest list (default psi.min_items)")
@click.option("--max-items", type=int, default=None, help="largest list (default psi.max_items)")
@click.option("--daily-cap", type=int, default=None, help="match requests per day")
@click.option(
    "--group-dimension",
    "group_dimensions",
    multiple=True,
    help="a public column offered for group counts (repeat for more)",
)
@click.option(
    "--group-threshold",
    type=int,
    default=None,
    help="smallest platform-side group counted (default psi.group_threshold)",
)
@click.option(
    "--consent-required",
    is_flag=True,
    help="demand a consent reference for membership even outside persons",
)
@as_principal
def psi_terms(
    obj: Context,
    agreement,
    grant_id,
    dataset,
    column,
    mode,
    min_items,
    max_items,
    daily_cap,
    group_dimensions,
    group_threshold,
    consent_required,
    token,
    as_json,
) -> None:
    """Set the PSI terms of an agreement (or a direct grant) on one column (Art. 13)."""
    if (agreement is None) == (grant_id is None):
        raise InputError("name exactly one of --agreement or --grant")
    terms = dict(
        mode=mode,
        min_items=min_items,
        max_items=max_items,
        daily_cap=daily_cap,
        group_dimensions=list(group_dimensions),
        group_threshold=group_threshold,
        consent_required=consent_required,
    )
    with obj.backend(token) as backend:
        terms_id = backend.set_psi_terms(
            dataset, column, agreement=agreement, grant=grant_id, **terms
        )
    scope = f"agreement {agreement}" if agreement is not None else f"grant {grant_id}"
    emit(
        {"terms": terms_id}, as_json, f"PSI terms {terms_id} set for {scope} on {dataset}.{column}"
    )


def _count_text(data: dict) -> str:
    noise = data["noise"]
    lines = [
        f"PSI count session {data['session']} (job {data['job']}): {data['dataset']} "
        f"v{data['version']} column {data['column']}",
        f"your list: {data['list_size']:,} distinct items; in the column, with noise: "
        f"{data['count']:,} (+- {noise['half_width_95']} at 95% per count, "
        f"epsilon {noise['epsilon']:g}, scale {noise['scale']:.4g})",
    ]
    for group, n in (data["groups"] or {}).items():
        lines.append(f"  {group}: {n:,}")
    budget = data["budget"]
    lines.append(
        f"agreement {budget['agreement']}: {budget['remaining']:g} of its {budget['population']} "
        "share left this year"
    )
    return "\n".join(lines)


@psi_cmd.command("count")
@click.option("--dataset", required=True, help="the dataset to count against")
@click.option("--column", required=True, help="its column (an identifier the PSI terms name)")
@click.option(
    "--items",
    "items_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV file of your items (first column, or --items-column)",
)
@click.option("--items-column", default=None, help="the CSV column holding the items")
@click.option("--group-by", default=None, help="count per declared code of this public column")
@as_option
@json_option
@click.pass_context
def psi_count_cmd(ctx, dataset, column, items_path, items_column, group_by, token, as_json) -> None:
    """Count, with differential-privacy noise, how many of your items are in a column.

    The roles are swapped: your items are the PSI server's set (encrypted under a key that
    stays here), the platform's column the client's, so the platform learns the size of
    the intersection, never which items, and releases it with noise charged to your
    agreement's privacy budget. Both rounds run in this one command."""
    from dataclasses import asdict

    from sandbox.client.psi import CountTransport, HttpTransport, run_psi_count

    obj: Context = ctx.find_object(Context)
    items = read_items(items_path, items_column)
    with obj.backend(token) as backend:
        from sandbox.cli.local import LocalBackend

        transport: CountTransport
        if isinstance(backend, LocalBackend):  # on the platform's host: in-process
            from sandbox.psi.count_answers import LocalCountTransport

            transport = LocalCountTransport(backend.platform, backend.me)
        else:  # --server: over HTTP
            from sandbox.cli.remote import RemoteBackend

            assert isinstance(backend, RemoteBackend)
            transport = HttpTransport(backend.client)
        result = run_psi_count(transport, dataset, column, items, group_by=group_by)
    data = asdict(result)
    emit(data, as_json, _count_text(data))
