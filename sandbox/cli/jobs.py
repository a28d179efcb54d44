"""``sandbox job ...``, ``sandbox product ...`` and ``sandbox ledger ...``: submit jobs, read
their outcome, download and check products, read and check the audit ledger.

Each command that acts as a principal runs through
:meth:`sandbox.cli.common.Context.backend`; ``product verify`` needs only the public key,
``ledger head`` runs on the platform's host only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sandbox.cli.common import (
    Context,
    as_principal,
    cell_text,
    emit,
    job_exit,
    json_option,
    main,
    pass_ctx,
    table,
)


@main.group()
def job() -> None:
    """Submit jobs and read their outcome."""


def _outcome_text(data: dict) -> str:
    lines = [f"job {data['job']}: {data['state']}"]
    if data["reason"]:
        r = data["reason"]
        rule = f" [{r['rule']}]" if r.get("rule") else ""
        article = (
            f" ({r['article']})" if r.get("article") and r["article"] not in r["message"] else ""
        )
        lines.append(f"  {r.get('code', '')}{rule}: {r['message']}{article}")
    if data["report"]:
        lines.extend("  " + line for line in data["report"]["summary"].splitlines())
        for cell in data["report"].get("cells", [])[:20]:
            lines.append(
                f"    row {cell['row']}, {cell['column']}: {cell['verdict']} "
                f"({', '.join(cell['rules'])})"
            )
    if data["product"]:
        lines.append(f"  product: {data['product']}")
    return "\n".join(lines)


@job.command("submit")
@click.option(
    "--sql",
    "sql_file",
    required=True,
    type=click.File("r"),
    help="file with one SELECT, or - for standard input",
)
@as_principal
def job_submit(obj: Context, sql_file, token: str | None, as_json: bool) -> None:
    """Submit an SQL aggregate job and wait for its outcome."""
    with obj.backend(token) as backend:
        data = backend.submit_job(sql_file.read())
    emit(data, as_json, _outcome_text(data))
    sys.exit(job_exit(data["state"]))


@job.command("show")
@click.argument("job_id", type=int)
@as_principal
def job_show(obj: Context, job_id: int, token: str | None, as_json: bool) -> None:
    """Status, refusal or check report of a job."""
    with obj.backend(token) as backend:
        data = backend.job(job_id)
    emit(data, as_json, _outcome_text(data))


@job.command("list")
@as_principal
def job_list(obj: Context, token: str | None, as_json: bool) -> None:
    """Your jobs (authorities and auditors: all jobs)."""
    with obj.backend(token) as backend:
        rows = backend.list_jobs()
    emit(
        rows,
        as_json,
        table(
            [(r["id"], r["state"], r["product_id"]) for r in rows],
            ("job", "state", "product"),
            right=("job",),
            empty="(no jobs)",
        ),
    )


# --- products -----------------------------------------------------------------


@main.group()
def product() -> None:
    """Released products."""


@product.command("list")
@as_principal
def product_list(obj: Context, token: str | None, as_json: bool) -> None:
    """Products you may download."""
    with obj.backend(token) as backend:
        rows = backend.list_products()
    emit(
        rows,
        as_json,
        table(
            [(r["id"], r["job_id"], r["verdict"]) for r in rows],
            ("product", "job", "verdict"),
            right=("job",),
            empty="(no products)",
        ),
    )


@product.command("get")
@click.argument("product_id")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="folder to copy the product into"
)
@as_principal
def product_get(obj: Context, product_id: str, out: Path, token: str | None, as_json: bool) -> None:
    """Download a released product (its files, manifest and signature)."""
    with obj.backend(token) as backend:
        target = backend.get_product(product_id, out)
    files = sorted(path.name for path in Path(target).iterdir())
    emit(
        {"product": product_id, "folder": str(target), "files": files},
        as_json,
        f"{product_id} copied to {target}",
    )


@product.command("verify")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "--public-key",
    "key",
    metavar="FILE|URL",
    default=None,
    help="the platform's public key: a PEM file, or an http(s) address such as "
    "https://HOST/v1/keys/platform (default: the --server's key, else the key of --home)",
)
@click.option(
    "--fingerprint",
    default=None,
    help="refuse a key whose SHA-256 fingerprint is not this one (sha256:HEX, as "
    "GET /v1/keys/platform gives it)",
)
@json_option
@pass_ctx
def product_verify(
    obj: Context, folder: Path, key: str | None, fingerprint: str | None, as_json: bool
) -> None:
    """Check a product's signature and the hash of every file, on the host or off it.

    Example: sandbox product verify prod-000001 --key https://HOST/v1/keys/platform
    """
    from sandbox.data.release import verify_product

    public, found = obj.product_key(key, fingerprint)
    manifest = verify_product(folder, public)
    emit(
        {
            "product": manifest["product"],
            "verified": True,
            "files": sorted(manifest["files"]),
            "key_fingerprint": found,
        },
        as_json,
        f"{manifest['product']}: signature and {len(manifest['files'])} file hashes verified "
        f"(key {found})",
    )


# --- ledger -------------------------------------------------------------------


@main.group()
def ledger() -> None:
    """The audit ledger."""


@ledger.command("verify")
@as_principal
def ledger_verify(obj: Context, token: str | None, as_json: bool) -> None:
    """Walk the hash chain and check the signed head (host-level, or --server with a token)."""
    with obj.backend(token) as backend:
        data = backend.verify_ledger()
    emit(
        data,
        as_json,
        f"ledger verified: {data['entries']} entries, head {data['head_seq']} "
        f"{data['head_hash'][:16]}",
    )


@ledger.command("show")
@click.option("--actor")
@click.option("--subject")
@click.option("--action")
@click.option("--since", help="ISO date or time (a time without a zone is UTC)")
@click.option("--until", help="ISO date or time; a date takes in the whole day")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@as_principal
def ledger_show(obj: Context, actor, subject, action, since, until, limit, token, as_json) -> None:
    """Read ledger entries (auditor or authority)."""
    filters = dict(
        actor=actor, subject=subject, action=action, since=since, until=until, limit=limit
    )
    with obj.backend(token) as backend:
        rows = backend.ledger(**filters)
    emit(
        rows,
        as_json,
        table(
            [
                (r["seq"], r["ts"][:19], r["actor"], r["action"], r["subject"], r["article"])
                for r in rows
            ],
            ("seq", "time (UTC)", "actor", "action", "subject", "article"),
            right=("seq",),
            empty="(no entries)",
        ),
    )


@ledger.command("head")
@json_option
@pass_ctx
def ledger_head_cmd(obj: Context, as_json: bool) -> None:
    """Print the signed head, to publish outside the platform (host-level)."""
    from sqlalchemy import select

    from sandbox.core.store import ledger_head

    with obj.platform.store.read() as conn:
        head = conn.execute(select(ledger_head)).mappings().first()
    data = dict(head) if head else {}
    emit(
        data,
        as_json,
        "\n".join(f"{key}: {cell_text(value)}" for key, value in data.items())
        or "(the ledger has no head yet)",
    )
