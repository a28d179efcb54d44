"""The host's answers to the workflow calls added for the regulation's issue 20 (inbox,
lists, providers' holds, deliveries and feedback), mixed into
:class:`sandbox.cli.local.LocalBackend`, which gives them ``platform`` and ``me``: each
is the domain function, in-process, as every call of that backend."""

from __future__ import annotations

from typing import Any

from sandbox.core.platform import Platform


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

    def inspections(self):
        from sandbox.workflow.inspections import inspections_of

        return inspections_of(self.platform, self.me)

    def inspection_step(self, action, inspection_id, notes):
        from sandbox.workflow import inspections

        step = {"rectify": inspections.rectify, "close": inspections.close}[action]
        step(self.platform, self.me, inspection_id, notes)
