"""The host's answers to the model and scoring-service calls of :class:`sandbox.cli.backend.Backend`
(:mod:`sandbox.models` in-process), mixed into :class:`sandbox.cli.local.LocalBackend`."""

from __future__ import annotations

from typing import Any


class LocalModelCalls:
    """``train_model`` ... ``grade``: one domain function each."""

    platform: Any
    me: Any

    def train_model(self, request):
        from sandbox.models.training import train

        return train(self.platform, self.me, request)

    def show_model(self, name):
        from sandbox.models.service import show

        return show(self.platform, self.me, name)

    def list_models(self):
        from sandbox.models.service import list_models

        return list_models(self.platform, self.me)

    def export_model(self, name):
        from sandbox.models.export import request_export

        return request_export(self.platform, self.me, name)

    def approve_model_export(self, name):
        from sandbox.models.export import approve_export

        return approve_export(self.platform, self.me, name)

    def reject_model_export(self, name, reason):
        from sandbox.models.export import reject_export

        reject_export(self.platform, self.me, name, reason)

    def model_exports(self):
        from sandbox.models.export import list_exports

        return list_exports(self.platform, self.me)

    def define_score_service(self, definition):
        from sandbox.models.services import define

        return define(self.platform, self.me, definition)

    def approve_score_service(self, name):
        from sandbox.models.services import approve

        return approve(self.platform, self.me, name)

    def reject_score_service(self, name, reason):
        from sandbox.models.services import reject

        reject(self.platform, self.me, name, reason)

    def score_services(self):
        from sandbox.models.services import list_services

        return list_services(self.platform, self.me)

    def who_scored(self, key, service):
        from sandbox.models.audit import who

        return who(self.platform, self.me, key, service)

    def grade(self, service, items, consent):
        from sandbox.models.calls import call

        return call(self.platform, self.me, service, items, consent).to_dict()
