"""The client's calls for models and scoring services (docs/models.md), mixed into
:class:`sandbox.client.Client`: one method per route of :mod:`sandbox.api.routes_models`."""

from __future__ import annotations

from typing import Any


class ModelCalls:
    """``train_model``, ``model``, ``models``; exports; scoring services and ``grade``."""

    def _json(self, method: str, path: str, **kwargs) -> Any:  # pragma: no cover - Client's
        raise NotImplementedError

    def train_model(self, **request: Any) -> dict:
        """Train a model inside and judge it (operator); waits for the training. Returns
        card, signature, card_sha256, timings.

        Example: ``api.train_model(name="credit_tree", features="SELECT credit_code, ...
        GROUP BY credit_code", label="defaulted", algorithm="decision_tree")["card"]["verdict"]``
        """
        return self._json("POST", "/v1/models", json=request)

    def model(self, name: str) -> dict:
        """A model's signed card: name, operator, status, card, signature.

        Example: ``api.model("credit_tree")["card"]["evaluation"]["auc"]``
        """
        return self._json("GET", f"/v1/models/{name}")

    def models(self) -> list[dict]:
        """The models you may see: name, status, algorithm, auc, created_at.

        Example: ``[m["name"] for m in api.models() if m["status"] == "passed"]``
        """
        return self._json("GET", "/v1/models")

    def export_model(self, name: str) -> dict:
        """Ask to export a passed model's file (operator); an authority approves it.
        Returns name, state (requested), agreement.

        Example: ``api.export_model("credit_tree")["state"]``
        """
        return self._json("POST", f"/v1/models/{name}/export")

    def approve_model_export(self, name: str) -> dict:
        """The authority approves a model's export: the product (model.onnx, model.json,
        card.json, a signed manifest) is written. Returns name, state, product.

        Example: ``api.approve_model_export("credit_tree")["product"]``
        """
        return self._json("POST", f"/v1/models/{name}/export/approve")

    def reject_model_export(self, name: str, reason: str) -> None:
        """The authority rejects a model's export, saying why.

        Example: ``api.reject_model_export("credit_tree", "not needed outside")``
        """
        self._json("POST", f"/v1/models/{name}/export/reject", json={"reason": reason})

    def model_exports(self) -> list[dict]:
        """The exports you may see: name, state, agreement, product, reason, updated_at.

        Example: ``[e["product"] for e in api.model_exports() if e["state"] == "approved"]``
        """
        return self._json("GET", "/v1/models/exports")

    def define_score_service(self, **definition: Any) -> dict:
        """Publish a passed model as a scoring service (operator): name, model, bands.

        Example: ``api.define_score_service(name="sme_credit", model="credit_tree",
        bands=[{"grade": "a", "upto": 0.05}, {"grade": "b", "upto": 1.0}])``
        """
        return self._json("POST", "/v1/score/services", json=definition)

    def approve_score_service(self, name: str) -> dict:
        """The authority approves a scoring service: its grade index is built.

        Example: ``api.approve_score_service("sme_credit")["index_rows"]``
        """
        return self._json("POST", f"/v1/score/services/{name}/approve")

    def reject_score_service(self, name: str, reason: str) -> None:
        """The authority rejects a defined scoring service, saying why.

        Example: ``api.reject_score_service("sme_credit", "bands too fine")``
        """
        self._json("POST", f"/v1/score/services/{name}/reject", json={"reason": reason})

    def score_services(self) -> list[dict]:
        """The scoring services you may see (consumers: the published ones).

        Example: ``[s["name"] for s in api.score_services()]``
        """
        return self._json("GET", "/v1/score/services")

    def who_scored(self, key: str, service: str | None = None) -> list[dict]:
        """Who graded the subject with this key? (auditors, the authority) The key is
        hashed as at call time, never stored.

        Example: ``[c["consumer"] for c in api.who_scored("91370800MA3C0000X1")]``
        """
        return self._json("POST", "/v1/score/who", json={"key": key, "service": service})

    def grade(self, service: str, items: list[dict], consent: dict | None = None) -> dict:
        """Grades of up to 1,000 subjects (consumer): each item ``{"key": ..., "consent":
        {...}}``; ``consent`` stands for items without one. Returns request_id, product,
        versions, results (code = the grade or not_found; refused, message).

        Example: ``api.grade("sme_credit", [{"key": "91370800MA3C0000X1"}], consent={
        "reference": "LOAN-1", "who": "legal representative", "purpose": "credit",
        "given_at": "2026-12-01"})["results"][0]["code"]``
        """
        body: dict[str, Any] = {"items": items}
        if consent is not None:
            body["consent"] = consent
        return self._json("POST", f"/v1/score/{service}", json=body)
