"""The authority's two decisions on an offering, written once for every kind: ``approve``
publishes a defined verification product or scoring service, ``reject`` turns it down
with a reason (Art. 13). :func:`add_decisions` adds both commands to a kind's group from
the backend calls that carry them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from sandbox.cli.backend import Backend
from sandbox.cli.common import Context, as_principal, emit


def add_decisions(
    group: click.Group,
    *,
    noun: str,
    key: str,
    approve: Callable[[Backend, str], dict[str, Any]],
    reject: Callable[[Backend, str, str], None],
    published: Callable[[str, dict[str, Any]], str],
    builds: str,
) -> None:
    """``approve NAME`` and ``reject NAME --reason TEXT`` on ``group``; ``key`` names the
    offering in the JSON of a rejection, ``published`` words an approval's answer."""

    @group.command("approve", help=f"Publish a {noun} and build {builds} (authority).")
    @click.argument("name")
    @as_principal
    def approve_cmd(obj: Context, name: str, token: str | None, as_json: bool) -> None:
        with obj.backend(token) as backend:
            out = approve(backend, name)
        emit(out, as_json, published(name, out))

    @group.command("reject", help=f"Reject a defined {noun} (authority).")
    @click.argument("name")
    @click.option("--reason", required=True)
    @as_principal
    def reject_cmd(obj: Context, name: str, reason: str, token: str | None, as_json: bool) -> None:
        with obj.backend(token) as backend:
            reject(backend, name, reason)
        emit({key: name, "state": "rejected", "reason": reason}, as_json, f"rejected {name}")
