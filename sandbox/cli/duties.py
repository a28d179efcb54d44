"""The operator's security duties on record: staff training (Art. 20) and emergency
drills (Art. 21), ``sandbox security record`` and ``security list``; a consumer's
incident-response plan (Art. 21), ``security plan``. When they fall due
is the agreement's schedule (``agreement sign --training-every``, ``agreement
schedule``, :mod:`sandbox.cli.workflow`). Added to ``sandbox`` by :mod:`sandbox.cli.app`;
each command calls :meth:`sandbox.cli.common.Context.backend` and prints.
"""

from __future__ import annotations

import click

from sandbox.cli.common import Context, as_principal, emit, main, table

# --- security duties: training and drills (Art. 20, 21) ------------------------------------------


@main.group("security")
def security_group() -> None:
    """Records of staff training (Art. 20) and emergency drills (Art. 21)."""


@security_group.command("record")
@click.option("--kind", type=click.Choice(["training", "drill"]), required=True)
@click.option("--held-on", required=True, help="the day it was held, ISO date")
@click.option("--topic", required=True)
@click.option("--attendees", type=int, required=True, help="how many attended")
@click.option("--name", "names", multiple=True, help="who attended (repeat)")
@click.option("--agreement", "agreement_id", type=int, default=None, help="the agreement served")
@as_principal
def security_record(obj: Context, kind, held_on, topic, attendees, names, agreement_id, token,
                    as_json) -> None:  # fmt: skip
    """Record a training or drill you held (operators)."""
    fields = {"held_on": held_on, "topic": topic, "attendees": attendees, "names": list(names),
              "agreement_id": agreement_id}  # fmt: skip
    with obj.backend(token) as backend:
        rid = backend.record_duty(kind, fields)
    emit({"record": rid, "kind": kind}, as_json, f"{kind} of {held_on} recorded ({rid})")


@security_group.command("plan")
@click.option(
    "--file",
    "path",
    type=click.File("r", encoding="utf-8"),
    required=True,
    help="the plan, a text file ('-' for standard input)",
)
@as_principal
def security_plan(obj: Context, path, token, as_json) -> None:  # fmt: skip
    """File your incident-response plan (consumers, Art. 21); the newest is in force."""
    with obj.backend(token) as backend:
        pid = backend.file_plan(path.read())
    emit({"plan": pid}, as_json, f"incident-response plan {pid} filed")


@security_group.command("list")
@click.option("--operator", default=None, help="one operator's (authorities, auditors)")
@as_principal
def security_list(obj: Context, operator, token, as_json) -> None:
    """Training and drill records: yours, or those within your reach."""
    with obj.backend(token) as backend:
        rows = backend.duties(operator)
    emit(rows, as_json, table(
        [(r["id"], r["operator"], r["kind"], r["held_on"], r["attendees"], r["topic"][:50])
         for r in rows],
        ("id", "operator", "kind", "held on", "attended", "topic"),
        right=("id", "attended"),
        empty="(no records)",
    ))  # fmt: skip
