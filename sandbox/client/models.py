"""The client's calls for models and scoring services (docs/models.md), mixed into
:class:`sandbox.client.Client`: one method per route of :mod:`sandbox.api.routes_models`."""

from __future__ import annotations

from typing import Any

from sandbox.client.results import ModelExport, QueuedTraining


class ModelCalls:
    """``train_model``, ``model``, ``models``; exports; scoring services and ``grade``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover - Client's
        raise NotImplementedError

    def train_model(
        self,
        *,
        name: str,
        features: str,
        label: str,
        algorithm: str,
        params: dict[str, float] | None = None,
        holdout: float = 0.3,
        seed: int = 1,
        description: str = "",
    ) -> dict[str, Any]:
        """Train a model inside and judge it (operator); waits for the training. Returns
        card, signature, card_sha256, timings.

        Example: ``api.train_model(name="credit_tree", features="SELECT credit_code, ...
        GROUP BY credit_code", label="defaulted", algorithm="decision_tree")["card"]["verdict"]``
        """
        body = _training(name, features, label, algorithm, params, holdout, seed, description)
        return self._json("POST", "/v1/models", json=body)

    def queue_model(
        self,
        *,
        name: str,
        features: str,
        label: str,
        algorithm: str,
        params: dict[str, float] | None = None,
        holdout: float = 0.3,
        seed: int = 1,
        description: str = "",
    ) -> QueuedTraining:
        """File a model's training as a queued job (operator); a refusal is raised at once.
        Returns job, state (queued), model.

        Example: ``api.wait_job(api.queue_model(name="credit_tree", ...).job).state``
        """
        body = _training(name, features, label, algorithm, params, holdout, seed, description)
        answer = self._json("POST", "/v1/models", params={"wait": "false"}, json=body)
        return QueuedTraining.model_validate(answer)

    def model(self, name: str) -> dict[str, Any]:
        """A model's signed card: name, operator, status, card, signature.

        Example: ``api.model("credit_tree")["card"]["evaluation"]["auc"]``
        """
        return self._json("GET", f"/v1/models/{name}")

    def models(self) -> list[dict[str, Any]]:
        """The models you may see: name, status, algorithm, auc, created_at.

        Example: ``[m["name"] for m in api.models() if m["status"] == "passed"]``
        """
        return self._json("GET", "/v1/models")

    def export_model(self, name: str) -> ModelExport:
        """Ask to export a passed model's file (operator); an authority approves it.
        Returns name, state (requested), agreement.

        Example: ``api.export_model("credit_tree")["state"]``
        """
        return ModelExport.model_validate(self._json("POST", f"/v1/models/{name}/export"))

    def approve_model_export(self, name: str) -> ModelExport:
        """The authority approves a model's export: the product (model.onnx, model.json,
        card.json, a signed manifest) is written. Returns name, state, product.

        Example: ``api.approve_model_export("credit_tree")["product"]``
        """
        path = f"/v1/models/{name}/export/approve"
        return ModelExport.model_validate(self._json("POST", path))

    def reject_model_export(self, name: str, reason: str) -> None:
        """The authority rejects a model's export, saying why.

        Example: ``api.reject_model_export("credit_tree", "not needed outside")``
        """
        self._json("POST", f"/v1/models/{name}/export/reject", json={"reason": reason})

    def model_exports(self) -> list[ModelExport]:
        """The exports you may see: name, state, agreement, product, reason, updated_at.

        Example: ``[e["product"] for e in api.model_exports() if e["state"] == "approved"]``
        """
        return [ModelExport.model_validate(e) for e in self._json("GET", "/v1/models/exports")]

    def define_score_service(
        self, *, name: str, model: str, bands: list[dict[str, Any]], description: str = ""
    ) -> dict[str, Any]:
        """Publish a passed model as a scoring service (operator): its bands, each a grade
        and the highest score (``upto``) it covers.

        Example: ``api.define_score_service(name="sme_credit", model="credit_tree",
        bands=[{"grade": "a", "upto": 0.05}, {"grade": "b", "upto": 1.0}])``
        """
        body = {"name": name, "model": model, "bands": bands, "description": description}
        return self._json("POST", "/v1/score/services", json=body)

    def approve_score_service(self, name: str) -> dict[str, Any]:
        """The authority approves a scoring service: its grade index is built.

        Example: ``api.approve_score_service("sme_credit")["index_rows"]``
        """
        return self._json("POST", f"/v1/score/services/{name}/approve")

    def reject_score_service(self, name: str, reason: str) -> None:
        """The authority rejects a defined scoring service, saying why.

        Example: ``api.reject_score_service("sme_credit", "bands too fine")``
        """
        self._json("POST", f"/v1/score/services/{name}/reject", json={"reason": reason})

    def score_services(self) -> list[dict[str, Any]]:
        """The scoring services you may see (consumers: the published ones).

        Example: ``[s["name"] for s in api.score_services()]``
        """
        return self._json("GET", "/v1/score/services")

    def who_scored(self, key: str, service: str | None = None) -> list[dict[str, Any]]:
        """Who graded the subject with this key? (auditors, the authority) The key is
        hashed as at call time, never stored.

        Example: ``[c["consumer"] for c in api.who_scored("91370800MA3C0000X1")]``
        """
        return self._json("POST", "/v1/score/who", json={"key": key, "service": service})

    def grade(
        self,
        service: str,
        items: list[dict[str, Any]],
        consent: dict[str, str] | None = None,
    ) -> dict[str, Any]:
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


def _training(
    name: str,
    features: str,
    label: str,
    algorithm: str,
    params: dict[str, float] | None,
    holdout: float,
    seed: int,
    description: str,
) -> dict[str, Any]:
    """The body of ``POST /v1/models``."""
    return {"name": name, "features": features, "label": label, "algorithm": algorithm,
            "params": dict(params or {}), "holdout": holdout, "seed": seed,
            "description": description}  # fmt: skip
