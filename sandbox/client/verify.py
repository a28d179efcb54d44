"""Verification products in the HTTP client (docs/verification.md): define, approve or
reject, call (one subject or a batch), stats, and who asked about a subject. Mixed into
:class:`sandbox.client.Client`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import httpx


@dataclass(frozen=True)
class VerifyAnswer:
    """A verification call's answer: ``code`` for one subject, ``results`` for each."""

    request_id: str
    product: str
    versions: dict[str, Any]
    results: list[dict[str, Any]]
    code: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> VerifyAnswer:
        """The answer of a call's JSON (the fields it names)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class VerifyCalls:
    """One method per verification route."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # pragma: no cover
        raise NotImplementedError

    def define_verification(
        self,
        *,
        name: str,
        dataset: str,
        keys: list[str],
        codes: list[str],
        rule: str,
        miss_codes: list[str] | None = None,
        person_level: bool | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Define a verification product (operator): the key columns a caller gives, the
        codes it may answer, and the rule (SQL with ``$key`` parameters) choosing one.

        Example: ``api.define_verification(name="licence_check", dataset="licences",
        keys=["uscc"], codes=["valid", "invalid", "not_found"], rule="SELECT ...")``
        """
        body = {"name": name, "dataset": dataset, "keys": keys, "codes": codes, "rule": rule,
                "miss_codes": miss_codes, "person_level": person_level,
                "description": description}  # fmt: skip
        return self._json("POST", "/v1/verify/products", json=body)

    def verification_products(self) -> list[dict[str, Any]]:
        """The verification products you may call or manage.

        Example: ``[p["name"] for p in api.verification_products()]``
        """
        return self._json("GET", "/v1/verify/products")

    def approve_verification(self, name: str) -> dict[str, Any]:
        """The authority approves a defined verification product.

        Example: ``api.approve_verification("licence_check")``
        """
        return self._json("POST", f"/v1/verify/products/{name}/approve")

    def reject_verification(self, name: str, reason: str) -> None:
        """The authority rejects a defined verification product, saying why.

        Example: ``api.reject_verification("licence_check", "keys too broad")``
        """
        self._call("POST", f"/v1/verify/products/{name}/reject", json={"reason": reason})

    def verify(
        self, product: str, keys: dict[str, str], consent: dict[str, str] | None = None
    ) -> VerifyAnswer:
        """One subject: the code (a refused subject raises, e.g. ``subject_daily_limit``).

        Example: ``api.verify("licence_check", {"uscc": "91370800MA3C0000X1"}).code``
        """
        body = {"keys": keys, "consent": consent}
        return VerifyAnswer.of(self._json("POST", f"/v1/verify/{product}", json=body))

    def verify_batch(
        self, product: str, items: list[dict[str, Any]], consent: dict[str, str] | None = None
    ) -> VerifyAnswer:
        """Up to 1,000 subjects: ``items`` are ``{"keys": {...}[, "consent": {...}]}``;
        each result has ``code`` or ``refused``.

        Example: ``api.verify_batch("licence_check", [{"keys": {"uscc": "91370800MA3C0000X1"}}])``
        """
        body = {"items": items, "consent": consent}
        return VerifyAnswer.of(self._json("POST", f"/v1/verify/{product}", json=body))

    def verification_stats(self, name: str) -> dict[str, Any]:
        """A verification product's call counts.

        Example: ``api.verification_stats("licence_check")``
        """
        return self._json("GET", f"/v1/verify/products/{name}/stats")

    def who_verified(
        self, keys: dict[str, str], product: str | None = None
    ) -> list[dict[str, Any]]:
        """Auditors and the authority: the calls about the subject with these keys.

        Example: ``api.who_verified({"uscc": "91370800MA3C0000X1"})``
        """
        return self._json("POST", "/v1/verify/who", json={"keys": keys, "product": product})
