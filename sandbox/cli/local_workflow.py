"""The host's answers to the workflow calls added for the regulation's issue 20 (inbox,
lists, providers' holds, deliveries and feedback), mixed into
:class:`sandbox.cli.local.LocalBackend`, which gives them ``platform`` and ``me``: each
is the domain function, in-process, as every call of that backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.errors import Conflict
from sandbox.core.platform import Platform


def saved_material(info: dict, data: bytes, out: Path) -> dict:
    """Write a downloaded material as ``out/<its file name>``, never over a file there;
    what ``evaluation download`` prints, on the host and through a server alike."""
    target = Path(out) / Path(info["filename"]).name
    if target.exists():
        raise Conflict(f"{target} exists already; choose another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {"material": info["id"], "path": str(target), "sha256": info["sha256"],
            "bytes": len(data)}  # fmt: skip


class LocalWorkflowCalls:
    platform: Platform
    me: Any  # the principal of the token: LocalBackend's property

    def inbox(self, limit, before, kind):
        from sandbox.registry.inbox import inbox_of

        return inbox_of(self.platform, self.me, limit=limit, before=before, kind=kind)

    def list_workflow(self, kind, **filters):
        from sandbox.workflow.lists import list_page

        return list_page(self.platform, self.me, kind, **filters)

    def catalogue(self, limit, before):
        from sandbox.workflow.catalogue import catalogue

        return catalogue(self.platform, self.me, limit=limit, before=before)

    def data_uses(self):
        from sandbox.workflow.providers import uses_of

        me = self.me
        with self.platform.store.read() as conn:
            return uses_of(conn, me)

    def countersign(self, agreement_id, dataset, terms):
        from sandbox.workflow.countersign import countersign

        return countersign(self.platform, self.me, agreement_id, dataset, terms)

    def hold_use(self, action, agreement_id, dataset, reason):
        from sandbox.workflow.providers import HOLDS

        return HOLDS[action](self.platform, self.me, agreement_id, dataset, reason)

    def give_feedback(self, product_id, points, comment):
        from sandbox.workflow.feedback import give

        return give(self.platform, self.me, product_id, **points, comment=comment)

    def deliver_product(self, product_id, consumer, note):
        from sandbox.workflow.deliveries import deliver

        return deliver(self.platform, self.me, product_id, consumer, note)

    def record_duty(self, kind, fields):
        from sandbox.workflow.duties import record

        return record(self.platform, self.me, kind, **fields)

    def duties(self, operator):
        from sandbox.workflow.duties import records_of

        return records_of(self.platform, self.me, operator)

    def evaluation(self, evaluation_id):
        from sandbox.workflow.evaluations import evaluation_dict

        return evaluation_dict(self.platform, self.me, evaluation_id)

    def submit_material(self, agreement_id, path, title):
        from sandbox.workflow.evaluations import submit_file

        return submit_file(self.platform, self.me, agreement_id, title=title, path=path)

    def materials(self, agreement_id):
        from sandbox.workflow.evaluations import materials_of

        return materials_of(self.platform, self.me, agreement_id)

    def download_material(self, material_id, out):
        from sandbox.workflow.evaluations import material_file

        info, source = material_file(self.platform, self.me, material_id)
        data = source.read_bytes()
        return saved_material(info, data, out)

    def inspections(self):
        from sandbox.workflow.inspections import inspections_of

        return inspections_of(self.platform, self.me)

    def inspection_step(self, action, inspection_id, notes):
        from sandbox.workflow import inspections

        step = {"rectify": inspections.rectify, "close": inspections.close}[action]
        step(self.platform, self.me, inspection_id, notes)
