"""The model card: what was trained, on what, how well, and the verdicts of its checks,
signed with the platform's key like a product's manifest.

The card is canonical JSON (:func:`sandbox.core.ledger.canonical`) signed with Ed25519
(:func:`sandbox.core.keys.sign`); its SHA-256 goes into the ledger entry of the
training, so a card shown later can be checked against both (:func:`verify_card`).
It holds figures over many entities only: evaluation on the held-out split (deciles
of fewer than the threshold blanked), counts of parameters and entities, the attacks'
AUCs; never a parameter, a key or a value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from jobs.model import ModelPlan
from jobs.model_checks import Finding, ModelVerdict
from sandbox.core import keys
from sandbox.core.ledger import canonical, now_utc
from sandbox.core.platform import Platform

CARD_FORMAT = "model-card/1"
APPROACH = (
    "disclosure checks in the approach of SACRO-ML (structural checks; worst-case and "
    "LiRA membership-inference attacks with shadow models), implemented with scikit-learn"
)


def build_card(
    plan: ModelPlan,
    operator: str,
    versions: Mapping[str, int],
    meta: Mapping[str, Any],
    structure: Sequence[Finding],
    attacks: Sequence[Finding],
    verdict: ModelVerdict,
    layers: Sequence[str],
) -> dict[str, Any]:
    request = plan.request
    return {
        "format": CARD_FORMAT,
        "name": request.name,
        "operator": operator,
        "description": request.description,
        "algorithm": request.algorithm,
        "params": dict(request.params),
        "features": list(plan.feature_names),
        "label": request.label,
        "datasets": dict(versions),
        "entities": dict(meta.get("entities", {})),
        "evaluation": dict(meta.get("evaluation", {})),
        "structure": [f.to_dict() for f in structure],
        "attacks": {
            "figures": dict(meta.get("attacks", {})),
            "findings": [f.to_dict() for f in attacks],
        },
        "verdict": verdict.value,
        "approach": APPROACH,
        "library": dict(meta.get("library", {})),
        # where it was trained, when not the local worker (engine = spark: Spark MLlib)
        **({"engine": dict(meta["engine"])} if meta.get("engine") else {}),
        "isolation": list(layers),
        "model_sha256": hashlib.sha256(canonical(meta.get("arrays", {}))).hexdigest(),
        "created_at": now_utc(),
    }


def sign_card(platform: Platform, card: Mapping[str, Any]) -> tuple[str, str]:
    """The card's signature (hex) and SHA-256 (hex)."""
    body = canonical(dict(card))
    return keys.sign(platform.key, body), hashlib.sha256(body).hexdigest()


def verify_card(platform: Platform, card: Mapping[str, Any], signature: str) -> None:
    """Raises :class:`~policies.errors.IntegrityError` when the card was altered."""
    public = keys.load_public(platform.public_key_path)
    keys.verify(public, canonical(dict(card)), signature, "model card")
