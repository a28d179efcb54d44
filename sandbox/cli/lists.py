"""``sandbox notice|application|agreement|request|quality|review|evaluation|incident list``:
a page of workflow objects.

Each is one call of :meth:`sandbox.cli.backend.Backend.list_workflow` (on the host, or
``GET /v1/workflow/{kind}`` with ``--server``), newest first, with ``--status``,
``--limit`` and ``--before`` (the last line says the next page's ``--before``); ``notice
list --open`` keeps the notices still taking applications. Who sees which rows is the
rule of :mod:`sandbox.workflow.lists`. Added to ``sandbox`` by :mod:`sandbox.cli.app`.
"""

from __future__ import annotations

import click

from sandbox.cli.common import Context, as_option, emit, json_option, pass_ctx, table
from sandbox.cli.duties import security_group
from sandbox.cli.jobs import product
from sandbox.cli.supervision import evaluation_group, incident, quality, request_group
from sandbox.cli.workflow import agreement, application, notice, review

# kind -> (group, the columns of the text table, the command's help)
LISTS = {
    "notices": (notice, ("id", "title", "jurisdiction", "deadline", "status"),
                "Notices, newest first (anyone); --open: those still taking applications."),
    "applications": (application, ("id", "notice", "operator", "status"),
                     "Applications you may read (yours, those you review, your jurisdiction's)."),
    "agreements": (agreement, ("id", "operator", "status", "datasets", "until"),
                   "Agreements you may read (yours; a provider's, those using its data)."),
    "requests": (request_group, ("id", "agreement", "operator", "dataset", "status"),
                 "Data requests you may read (yours; a provider's, those for its data)."),
    "tickets": (quality, ("id", "dataset", "status", "text"),
                "Quality tickets (yours; a provider's, those on its data; authorities)."),
    "reviews": (review, ("id", "application", "reviewer", "status"),
                "Reviews (a reviewer's own appointments; your jurisdiction's; auditors)."),
    "evaluations": (evaluation_group, ("id", "agreement", "status", "deadline", "notes"),
                    "Evaluations (an operator's own; your jurisdiction's; auditors)."),
    "incidents": (incident, ("id", "operator", "kind", "reported_by", "created_at"),
                  "Incidents (an operator's own; a provider's, of those using its data; "
                  "authorities within their reach; a consumer's own; auditors)."),
    "plans": (security_group, ("id", "consumer", "created_at", "plan"),
              "Consumers' incident-response plans (a consumer's own; authorities, auditors)."),
}  # fmt: skip
NAMES = {"plans": "plans"}  # the command's name where the group has a 'list' already


def _add(kind: str, group: click.Group, columns: tuple[str, ...], doc: str) -> None:
    @group.command(NAMES.get(kind, "list"), help=doc)
    @click.option("--status", default=None, help="only this state")
    @click.option("--limit", type=int, default=50, show_default=True)
    @click.option("--before", type=int, default=None, help="ids below this one (next page)")
    @as_option
    @json_option
    @pass_ctx
    def command(obj: Context, status, limit, before, token, as_json, **extra) -> None:
        filters = {"status": status, "limit": limit, "before": before, **extra}
        with obj.backend(token) as backend:
            page = backend.list_workflow(kind, **filters)
        rows = [[_cell(item.get(c)) for c in columns] for item in page["items"]]
        more = f"\nmore: --before {page['next_before']}" if page["next_before"] else ""
        emit(page, as_json, table(rows, columns, right=("id",), empty=f"(no {kind})") + more)

    if kind == "notices":
        click.option("--open", "open_only", is_flag=True, help="only those open now")(command)


@product.command("catalogue")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--before", default=None, help="the next page's position, as the last line says")
@as_option
@json_option
@pass_ctx
def product_catalogue(obj: Context, limit, before, token, as_json) -> None:
    """The catalogue of released products in force, newest first (everyone, Art. 17):
    reports, verification products and scoring services, with the datasets they were
    derived from; never a value."""
    with obj.backend(token) as backend:
        page = backend.catalogue(limit, before)
    columns = ("id", "kind", "operator", "datasets", "released_at", "title")
    rows = [[_cell(item.get(c)) for c in columns] for item in page["items"]]
    more = f"\nmore: --before '{page['next_before']}'" if page["next_before"] else ""
    emit(page, as_json, table(rows, columns, empty="(no products)") + more)


def _cell(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    text = "" if value is None else str(value)
    return text[:16].replace("T", " ") if text[:4].isdigit() and "T" in text[:11] else text[:60]


for _kind, (_group, _columns, _doc) in LISTS.items():
    _add(_kind, _group, _columns, _doc)
