"""``sandbox inspection list|rectify|close``: inspections after they are recorded (Art. 22).

``sandbox inspect`` records one (:mod:`sandbox.cli.supervision`); these follow it: the
inspected operator reports its tasks rectified, the inspector closes it, and anyone with
a reach lists them with their state and history. Each runs through
:meth:`sandbox.cli.common.Context.backend`. Added to ``sandbox`` by :mod:`sandbox.cli.app`.
"""

from __future__ import annotations

import click

from sandbox.cli.common import (
    Context,
    as_option,
    as_principal,
    emit,
    json_option,
    main,
    pass_ctx,
    table,
)


@main.group("inspection")
def inspection_group() -> None:
    """Inspections after they are recorded: rectify, close, list. Art. 22."""


@inspection_group.command("list")
@as_principal
def inspection_list(obj: Context, token, as_json) -> None:
    """Inspections you may read: yours, those you made, or those within your reach."""
    with obj.backend(token) as backend:
        rows = backend.inspections()
    emit(rows, as_json, table(
        [(r["id"], r["operator"], r["inspector"], r["status"], (r["deadline"] or "")[:16],
          "; ".join(r["tasks"])[:50]) for r in rows],
        ("id", "operator", "inspector", "status", "deadline (UTC)", "tasks"),
        right=("id",),
        empty="(no inspections)",
    ))  # fmt: skip


def _step(action: str, doc: str) -> None:
    @inspection_group.command(action, help=doc)
    @click.argument("inspection_id", type=int)
    @click.option("--notes", required=True)
    @as_option
    @json_option
    @pass_ctx
    def command(obj: Context, inspection_id, notes, token, as_json) -> None:
        with obj.backend(token) as backend:
            backend.inspection_step(action, inspection_id, notes)
        status = "rectified" if action == "rectify" else "closed"
        emit({"inspection": inspection_id, "status": status}, as_json,
             f"inspection {inspection_id} {status}")  # fmt: skip


_step("rectify", "Report the tasks of an inspection of you done (operators).")
_step("close", "Close an inspection you made, rectified or not (the inspector).")
