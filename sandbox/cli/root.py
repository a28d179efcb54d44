"""The host and data commands: init, settings, principal, dataset, grant, job, product,
ledger, demo-data and demo."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from policies.errors import InputError
from sandbox.cli.common import (
    Context,
    as_option,
    cell_text,
    emit,
    job_exit,
    json_option,
    main,
    pass_ctx,
    table,
)
from sandbox.core import ledger as ledger_mod
from sandbox.core.platform import Platform


@main.command()
@pass_ctx
def init(obj: Context) -> None:
    """Create a platform home: store, signing key, vault."""
    platform = Platform.init(obj.home)
    click.echo(f"platform home ready at {platform.home}")
    click.echo(f"public key: {platform.public_key_path}")


@main.command("settings")
@json_option
@pass_ctx
def show_settings(obj: Context, as_json: bool) -> None:
    """Show every setting, its value and where the value came from."""
    s = obj.platform.settings
    rows = [{"name": k, "value": v, "source": s.sources[k]} for k, v in s.values.items()]
    emit(
        rows,
        as_json,
        table([(r["name"], r["value"], r["source"]) for r in rows], ("setting", "value", "from")),
    )


# --- principals ---------------------------------------------------------------


@main.group()
def principal() -> None:
    """Accounts and their roles."""


@principal.command("add")
@click.option("--name", required=True)
@click.option(
    "--role", required=True, help="provider, authority, reviewer, operator, consumer or auditor"
)
@click.option("--org", default="", help="the organisation the principal belongs to")
@click.option("--jurisdiction", default=None, help="authorities: 'city' or a county code")
@json_option
@pass_ctx
def principal_add(
    obj: Context, name: str, role: str, org: str, jurisdiction: str | None, as_json: bool
) -> None:
    """Add a principal (host-level); prints its token once."""
    from sandbox.core.principals import add_principal, parse_role

    role_value = parse_role(role)
    _created, token = add_principal(obj.platform, name, role_value, org, jurisdiction)
    emit(
        {"name": name, "role": role_value.value, "token": token},
        as_json,
        f"{token}\n(the token of {name}, {role_value.value}; shown once, keep it safe)",
    )


@principal.command("list")
@as_option
@json_option
@pass_ctx
def principal_list(obj: Context, token: str | None, as_json: bool) -> None:
    """List principals (authority or auditor)."""
    from sqlalchemy import select

    from sandbox.core.principals import Role, require_role
    from sandbox.core.store import principals

    me = obj.principal(token)
    require_role(me, Role.AUTHORITY, Role.AUDITOR, action="list principals")
    with obj.platform.store.read() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(
                    principals.c.name,
                    principals.c.role,
                    principals.c.org,
                    principals.c.jurisdiction,
                )
            ).mappings()
        ]
    emit(
        rows,
        as_json,
        table(
            [(r["name"], r["role"], r["org"], r["jurisdiction"]) for r in rows],
            ("name", "role", "organisation", "jurisdiction"),
            empty="(no principals)",
        ),
    )


# --- datasets -----------------------------------------------------------------


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
    help="file path or URI (csv, parquet, jsonl, duckdb://, postgresql://)",
)
@click.option(
    "--classification",
    "classification_path",
    required=True,
    type=click.Path(path_type=Path),
    help="YAML: entity_key, columns, formats",
)
@as_option
@json_option
@pass_ctx
def dataset_register(
    obj: Context,
    name: str,
    source: str,
    classification_path: Path,
    token: str | None,
    as_json: bool,
) -> None:
    """Register a dataset (a new version if its data changed)."""
    from sandbox.data.vault import load_classification, register

    classification = load_classification(classification_path)
    if obj.server:
        with obj.client(token) as client:
            if Path(source).is_file():  # a local file is uploaded; anything else the server reads
                reg = client.register_upload(name, source, classification_path)
            else:
                reg = client.register_uri(name, source, classification.to_dict())
        data = dataclasses.asdict(reg)
        word = "registered" if reg.changed else "unchanged, kept"
        emit(
            data,
            as_json,
            f"{name}: {word} version {reg.version} ({reg.rows:,} rows, sha256 {reg.sha256[:12]})",
        )
        return
    me = obj.principal(token)
    progress = _Progress()
    try:
        result = register(obj.platform, me, name, source, classification, progress)
    finally:
        progress.close()
    v = result.version
    data = {
        "dataset": name,
        "version": v.version,
        "changed": result.changed,
        "rows": v.rows,
        "sha256": v.sha256,
    }
    word = "registered" if result.changed else "unchanged, kept"
    emit(
        data,
        as_json,
        f"{name}: {word} version {v.version} ({v.rows:,} rows, sha256 {v.sha256[:12]})",
    )


@dataset.command("list")
@as_option
@json_option
@pass_ctx
def dataset_list(obj: Context, token: str | None, as_json: bool) -> None:
    """List datasets and their latest versions."""
    from sandbox.data.vault import list_datasets

    if obj.server:
        with obj.client(token) as client:
            rows = [dataclasses.asdict(d) for d in client.list_datasets()]
    else:
        obj.principal(token)
        with obj.platform.store.read() as conn:
            rows = list_datasets(conn)
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
@as_option
@json_option
@pass_ctx
def dataset_show(
    obj: Context, name: str, version: int | None, token: str | None, as_json: bool
) -> None:
    """Show a dataset's classification and quality profile (provider, authority, auditor)."""
    from connectors.quality import format_profile
    from sandbox.core.principals import Role, require_role
    from sandbox.data.vault import get_version

    if obj.server:  # the route shows the profile only to the roles the host shows it to
        with obj.client(token) as client:
            d = client.show_dataset(name, version)
        data = {
            "dataset": name,
            "version": d.version,
            "sha256": d.sha256,
            "rows": d.rows,
            "classification": d.classification,
            "profile": d.profile,
        }
        profile = (
            format_profile(d.profile)
            if d.profile
            else (
                "(the quality profile is shown to the dataset's provider, the authority and "
                "auditors only; Art. 14)"
            )
        )
        emit(
            data,
            as_json,
            f"{name} version {d.version} ({d.rows:,} rows, sha256 {d.sha256[:12]})\n" + profile,
        )
        return
    me = obj.principal(token)
    require_role(
        me,
        Role.PROVIDER,
        Role.AUTHORITY,
        Role.AUDITOR,
        action="read quality profiles (they stay inside the platform)",
        article="Art. 14",
    )
    with obj.platform.store.read() as conn:
        v = get_version(conn, obj.platform, name, version)
    if me.role.value == "provider" and v.provider_id != me.id:
        from policies.errors import PermissionDenied

        raise PermissionDenied(
            f"dataset '{name}' belongs to another provider (Art. 14)", article="Art. 14"
        )
    data = {
        "dataset": name,
        "version": v.version,
        "sha256": v.sha256,
        "rows": v.rows,
        "classification": v.classification.to_dict(),
        "profile": v.profile,
    }
    emit(
        data,
        as_json,
        f"{name} version {v.version} ({v.rows:,} rows, sha256 {v.sha256[:12]})\n"
        + format_profile(v.profile),
    )


# --- grants -------------------------------------------------------------------


@main.group()
def grant() -> None:
    """Data grants: who may run which kinds of job on which dataset, until when."""


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


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
@as_option
@json_option
@pass_ctx
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
    """Grant an operator use of a dataset for a term."""
    from sandbox.data.grants import add_grant

    job_kinds = _split(kinds) or []
    if not job_kinds:
        raise InputError("--kinds names no job kind; e.g. --kinds sql_aggregate,psi_match")

    overrides: dict[str, Any] = {}
    for item in disclosure:
        if "=" not in item:
            raise InputError(f"--disclosure '{item}': use NAME=VALUE, e.g. min_entities=20")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(value)
        except ValueError:
            overrides[key.strip()] = value.strip()
    if obj.server:
        with obj.client(token) as client:
            grant_id = client.add_grant(
                operator,
                dataset_name,
                until,
                start=start,
                columns=_split(columns),
                extra_aggregates=_split(aggregates) or [],
                aggregate_expressions=expressions,
                kinds=job_kinds,
                disclosure=overrides,
            )
    else:
        grant_id = add_grant(
            obj.platform,
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
@as_option
@json_option
@pass_ctx
def grant_list(obj: Context, token: str | None, as_json: bool) -> None:
    """Grants you may see (operators: yours; providers: on your datasets; authority, auditors:
    all), with the job kinds each covers."""
    from sandbox.data.grants import list_grants

    if obj.server:
        with obj.client(token) as client:
            rows = client.list_grants()
    else:
        me = obj.principal(token)
        with obj.platform.store.read() as conn:
            rows = list_grants(conn, me)
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


# --- jobs ---------------------------------------------------------------------


@main.group()
def job() -> None:
    """Submit jobs and read their outcome."""


def _outcome_dict(outcome) -> dict:
    return {
        "job": outcome.job_id,
        "state": outcome.state.value,
        "reason": outcome.reason,
        "report": outcome.report,
        "product": outcome.product_id,
    }


def _job_dict(job) -> dict:
    """The same dict from a client's Job as _outcome_dict makes from a JobOutcome."""
    return {
        "job": job.job,
        "state": job.state,
        "reason": job.reason,
        "report": job.report,
        "product": job.product,
    }


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
@as_option
@json_option
@pass_ctx
def job_submit(obj: Context, sql_file, token: str | None, as_json: bool) -> None:
    """Submit an SQL aggregate job and wait for its outcome."""
    if obj.server:
        with obj.client(token) as client:
            job = client.submit_job(sql_file.read())
            data = _job_dict(client.wait_job(job.job))
        emit(data, as_json, _outcome_text(data))
        sys.exit(job_exit(data["state"]))
    me = obj.principal(token)
    from sandbox.run.execution import JobService

    service = JobService(obj.platform, spare=False)
    try:
        outcome = service.submit(me, {"sql": sql_file.read()})
    finally:
        service.close()
    emit(_outcome_dict(outcome), as_json, _outcome_text(_outcome_dict(outcome)))
    sys.exit(job_exit(outcome.state.value))


@job.command("show")
@click.argument("job_id", type=int)
@as_option
@json_option
@pass_ctx
def job_show(obj: Context, job_id: int, token: str | None, as_json: bool) -> None:
    """Status, refusal or check report of a job."""
    if obj.server:
        with obj.client(token) as client:
            data = _job_dict(client.job(job_id))
        emit(data, as_json, _outcome_text(data))
        return
    me = obj.principal(token)
    with obj.platform.store.read() as conn:
        from sandbox.run.execution import job_outcome

        outcome = job_outcome(conn, me, job_id)
    emit(_outcome_dict(outcome), as_json, _outcome_text(_outcome_dict(outcome)))


@job.command("list")
@as_option
@json_option
@pass_ctx
def job_list(obj: Context, token: str | None, as_json: bool) -> None:
    """Your jobs (authorities and auditors: all jobs)."""
    if obj.server:
        with obj.client(token) as client:
            rows = [dataclasses.asdict(j) for j in client.list_jobs()]
    else:
        me = obj.principal(token)
        with obj.platform.store.read() as conn:
            from sandbox.run.execution import list_jobs

            rows = list_jobs(conn, me)
    emit(
        rows,
        as_json,
        table(
            [(r["id"], r["status"], r["product_id"]) for r in rows],
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
@as_option
@json_option
@pass_ctx
def product_list(obj: Context, token: str | None, as_json: bool) -> None:
    """Products you may download."""
    from sandbox.data.products import list_products

    if obj.server:
        with obj.client(token) as client:
            rows = [dataclasses.asdict(p) for p in client.list_products()]
    else:
        me = obj.principal(token)
        with obj.platform.store.read() as conn:
            rows = list_products(conn, me)
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
@as_option
@json_option
@pass_ctx
def product_get(obj: Context, product_id: str, out: Path, token: str | None, as_json: bool) -> None:
    """Download a released product (its files, manifest and signature)."""
    from sandbox.data.products import fetch_product

    if obj.server:
        target = _remote_get(obj, token, product_id, out)
    else:
        target = fetch_product(obj.platform, obj.principal(token), product_id, out)
    files = sorted(path.name for path in Path(target).iterdir())
    emit(
        {"product": product_id, "folder": str(target), "files": files},
        as_json,
        f"{product_id} copied to {target}",
    )


@product.command("verify")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(path_type=Path),
    default=None,
    help="the platform's public key (default: the one in --home)",
)
@json_option
@pass_ctx
def product_verify(obj: Context, folder: Path, public_key: Path | None, as_json: bool) -> None:
    """Check a product's signature and the hash of every file."""
    from sandbox.core.keys import load_public
    from sandbox.data.release import verify_product

    key_path = public_key or obj.home / "keys" / "platform.pub"
    manifest = verify_product(folder, load_public(key_path))
    emit(
        {"product": manifest["product"], "verified": True, "files": sorted(manifest["files"])},
        as_json,
        f"{manifest['product']}: signature and {len(manifest['files'])} file hashes verified",
    )


def _remote_get(obj: Context, token: str | None, product_id: str, out: Path) -> Path:
    """Download a product's zip through the API and unpack it into ``out/<id>``."""
    import tempfile
    import zipfile

    from policies.errors import Conflict

    target = Path(out) / product_id
    if target.exists():
        raise Conflict(f"{target} exists already; choose another --out")
    with tempfile.TemporaryDirectory() as tmp, obj.client(token) as client:
        archive = client.download_zip(product_id, tmp)
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if any(Path(n).is_absolute() or ".." in Path(n).parts for n in names):
                raise Conflict(f"{product_id}: the archive names a path outside its folder")
            target.mkdir(parents=True)
            for name in names:
                (target / Path(name).name).write_bytes(zf.read(name))
    return target


# --- ledger -------------------------------------------------------------------


@main.group()
def ledger() -> None:
    """The audit ledger."""


@ledger.command("verify")
@as_option
@json_option
@pass_ctx
def ledger_verify(obj: Context, token: str | None, as_json: bool) -> None:
    """Walk the hash chain and check the signed head (host-level, or --server with a token)."""
    from sandbox.core.keys import load_public

    if obj.server:
        with obj.client(token) as client:
            report = client.verify_ledger()
    else:
        platform = obj.platform
        with platform.store.read() as conn:
            report = ledger_mod.verify(conn, load_public(platform.public_key_path))
    emit(
        {"entries": report.entries, "head_seq": report.head_seq, "head_hash": report.head_hash},
        as_json,
        f"ledger verified: {report.entries} entries, head {report.head_seq} "
        f"{report.head_hash[:16]}",
    )


@ledger.command("show")
@click.option("--actor")
@click.option("--subject")
@click.option("--action")
@click.option("--since", help="ISO date or time (a time without a zone is UTC)")
@click.option("--until", help="ISO date or time; a date takes in the whole day")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@as_option
@json_option
@pass_ctx
def ledger_show(obj: Context, actor, subject, action, since, until, limit, token, as_json) -> None:
    """Read ledger entries (auditor or authority)."""
    from sandbox.core.principals import Role, require_role

    filters = dict(
        actor=actor, subject=subject, action=action, since=since, until=until, limit=limit
    )
    if obj.server:
        with obj.client(token) as client:
            rows = [dataclasses.asdict(e) for e in client.ledger(**filters)]
    else:
        me = obj.principal(token)
        require_role(me, Role.AUDITOR, Role.AUTHORITY, action="read the ledger")
        with obj.platform.store.read() as conn:
            rows = ledger_mod.query(conn, **filters)
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


# --- demo ---------------------------------------------------------------------


@main.command("demo-data")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--persons", type=int, default=100_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo_data(out: Path, persons: int, seed: int) -> None:
    """Write deterministic synthetic public data of Jining."""
    from sandbox.demo.data import write_demo_data

    paths = write_demo_data(out, persons=persons, seed=seed)
    for name, path in paths.items():
        click.echo(f"{name:<18} {path}")


@main.command()
@click.option("--persons", type=int, default=100_000, show_default=True)
@click.option("--keep", is_flag=True, help="keep the throw-away home (its path is printed)")
@pass_ctx
def demo(obj: Context, persons: int, keep: bool) -> None:
    """Run the whole flow on a throw-away platform home."""
    from sandbox.demo.flow import run_demo

    home = run_demo(persons=persons, echo=click.echo)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
