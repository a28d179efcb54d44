"""The host-level commands: init, settings, principal, demo-data and demo. They act on the
platform home itself (:attr:`sandbox.cli.common.Context.platform`), so they refuse
``--server``; ``principal list`` authenticates its caller there. A principal's lifecycle
(``principal deactivate``, ``reactivate``, ``rotate-token``) goes through the backend: on
the host without a token it is the host's act, with ``--as`` an authority's, and with
``--server`` an authority's through the HTTP API."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from sandbox.cli.common import (
    Context,
    as_principal,
    emit,
    json_option,
    main,
    pass_ctx,
    table,
)


@main.command()
@pass_ctx
def init(obj: Context) -> None:
    """Create a platform home: store, signing key, vault."""
    from sandbox.core.platform import Platform  # SQLAlchemy: not at the CLI's start

    platform = Platform.init(obj.home)
    click.echo(f"platform home ready at {platform.home}")
    click.echo(f"public key: {platform.public_key_path}")


@main.command("settings")
@json_option
@pass_ctx
def show_settings(obj: Context, as_json: bool) -> None:
    """Show every setting, its value and where the value came from."""
    from sandbox.core.store import safe_url

    s = obj.platform.settings
    shown = {**s.values, "store.url": safe_url(s.store.url) if s.store.url else ""}  # no password
    rows = [{"name": k, "value": v, "source": s.sources[k]} for k, v in shown.items()]
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


def _lifecycle_text(done: dict) -> str:
    where = f", {done['jurisdiction']}" if done.get("jurisdiction") else ""
    return f"{done['name']} ({done['role']}{where}): {done['status']}"


@principal.command("deactivate")
@click.argument("name")
@click.option("--reason", required=True, help="why; written to the ledger")
@as_principal
def principal_deactivate(
    obj: Context, name: str, reason: str, token: str | None, as_json: bool
) -> None:
    """Deactivate a principal: its token is refused at once (the host without --as, or an
    authority of the principal's jurisdiction; also with --server)."""
    with obj.backend(token) as backend:
        done = backend.deactivate_principal(name, reason)
    emit(done, as_json, _lifecycle_text(done))


@principal.command("reactivate")
@click.argument("name")
@click.option("--reason", required=True, help="why; written to the ledger")
@as_principal
def principal_reactivate(
    obj: Context, name: str, reason: str, token: str | None, as_json: bool
) -> None:
    """Reactivate a deactivated principal: its token is accepted again (the host, or an
    authority of its jurisdiction)."""
    with obj.backend(token) as backend:
        done = backend.reactivate_principal(name, reason)
    emit(done, as_json, _lifecycle_text(done))


@principal.command("rotate-token")
@click.argument("name")
@as_principal
def principal_rotate_token(obj: Context, name: str, token: str | None, as_json: bool) -> None:
    """Give a principal a new token, printed once; the old one is refused at once (the
    host, or an authority of the principal's jurisdiction)."""
    with obj.backend(token) as backend:
        done = backend.rotate_token(name)
    emit(
        done,
        as_json,
        f"{done['token']}\n(the new token of {done['name']}, {done['role']}; shown once, keep "
        "it safe; the old token no longer works)",
    )


@principal.command("list")
@as_principal
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
                    principals.c.status,
                )
            ).mappings()
        ]
    emit(
        rows,
        as_json,
        table(
            [(r["name"], r["role"], r["org"], r["jurisdiction"], r["status"]) for r in rows],
            ("name", "role", "organisation", "jurisdiction", "status"),
            empty="(no principals)",
        ),
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
