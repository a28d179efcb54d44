"""A consumer's call to a scoring service: a subject key and the subject's consent in,
a grade of the declared bands out; never a score, a feature or a value.

A call (:func:`call`) asks the grants gate again (a stopped agreement withdraws the
service), takes each item's key (normalised as verification keys are) and consent
(:class:`policies.verification.Consent`, required for every subject: Art. 19), and looks
the subject's grade up in the service's index. The limits and the ledger are
verification's own, reused as one unit of its group commit
(:class:`sandbox.verification.record.CallUnit`): the consumer's standing, its
per-minute and per-day allowance, the per-subject daily limit and the limits per value
across all consumers, and the enumeration defence (an unknown subject is a miss).
Those counters are shared with verification products: a consumer's allowance, a
subject's daily limit and a block span both kinds of service. :class:`ScoreUnit`
writes its own record: one ledger entry ``score.call`` (keyed hashes, consent, grades)
and one ``score_calls`` row per subject.

An item is exactly ``{"key": ..., "consent": {...}}``: a call cannot carry a feature,
so the model cannot be probed with made-up inputs to read a value back.
"""

from __future__ import annotations

import json
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from jobs.model import KIND
from jobs.model_bands import NOT_FOUND
from policies.errors import InputError, NotFound, PolicyRefusal, SandboxError
from policies.verification import Consent, ProductState
from sandbox.core import ledger as ledger_mod
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import insert_or
from sandbox.data.grants import may_run
from sandbox.models.service import model_row
from sandbox.models.services import SERVICES, service_row
from sandbox.models.tables import score_calls, score_index
from sandbox.registry.inbox import notify
from sandbox.verification.commit import GroupCommitter
from sandbox.verification.keys import (
    caller_value,
    key_hash,
    load_secret,
    normalise_key,
    subject_hash,
    value_hash,
)
from sandbox.verification.products import MAX_BATCH
from sandbox.verification.record import CallResult, CallUnit, Item, Limits
from sandbox.verification.tables import verify_standing
from sandbox.verification.values import ValueGuard
from sandbox.verification.withdrawal import cause_of, withdraw

ITEM_FIELDS = frozenset({"key", "consent"})


@dataclass
class Published:
    """What a call needs of a published service (the ``Loaded`` of a verification call)."""

    name: str
    versions: dict[str, int] = field(default_factory=dict)


class ScoreValues(ValueGuard):
    """Verification's counts per value, its alerts told about the scoring service."""

    def alert(self, conn: Connection, product: str, details: dict) -> None:
        _tell(self.platform, conn, product, f"score:{product}", details)


class ScoreUnit(CallUnit):
    """Verification's unit of the group commit with the scoring service's own record."""

    guard = ScoreValues  # its alerts go to the authority that approved the service

    def _write_call(self, conn, consumer, loaded, request_id, items, results) -> int:
        details = {
            "request_id": request_id,
            "service": loaded.name,
            "versions": loaded.versions,
            "items": [
                {
                    "subject_hash": i.subject_hash,
                    "grade": r.code,
                    "refused": r.refused,
                    "consent": i.consent.to_dict() if i.consent else None,
                }
                for i, r in zip(items, results, strict=True)
            ],
        }
        seq = ledger_mod.append(
            conn, self.platform.key, consumer.actor, "score.call", f"score:{loaded.name}",
            details, "Art. 19",
        )  # fmt: skip
        stamp = now_utc()
        conn.execute(
            score_calls.insert(),
            [
                {
                    "request_id": request_id,
                    "service": loaded.name,
                    "consumer_id": consumer.id,
                    "subject_hash": i.subject_hash,
                    "grade": r.code,
                    "refusal": r.refused,
                    "consent_json": json.dumps(i.consent.to_dict()) if i.consent else None,
                    "ledger_seq": seq,
                    "ts": stamp,
                }
                for i, r in zip(items, results, strict=True)
            ],
        )
        return seq

    def _alert(self, conn, consumer, loaded, request_id, standing, reason, day) -> None:
        """The consumer's standing worsened: recorded (the standing every service reads),
        ledgered and sent to the authority that approved the service."""
        stamp = now_utc()
        values = {"status": standing.value, "reason": reason, "day": day, "updated_at": stamp}
        conn.execute(
            insert_or(conn, verify_standing)
            .values(consumer_id=consumer.id, **values)
            .on_conflict_do_update(index_elements=["consumer_id"], set_=values)
        )
        details = {
            "kind": "consumer_standing", "consumer": consumer.name, "standing": standing.value,
            "reason": reason, "service": loaded.name, "request_id": request_id,
        }  # fmt: skip
        _tell(self.platform, conn, loaded.name, f"principal:{consumer.name}", details)


def _tell(platform: Platform, conn: Connection, service: str, target: str, details: dict) -> None:
    """A ``score.alert`` ledger entry and a ``scoring_alert`` to the authority that
    approved the service."""
    platform.record(conn, SYSTEM, "score.alert", target, details, "Art. 19")
    approved_by = service_row(conn, service).approved_by
    if approved_by is not None:
        notify(platform, conn, SYSTEM, approved_by, "scoring_alert", target, details, "Art. 19")


def _ready(platform: Platform, name: str) -> Published:
    """The published service, or the refusal (withdrawing it when the gate says so)."""
    with platform.store.read() as conn:
        row = service_row(conn, name)
        if row.status in (ProductState.DEFINED, ProductState.REJECTED):
            raise NotFound(f"no published scoring service '{name}'")
        model = model_row(conn, row.model)
        versions = json.loads(model.versions_json)
        try:
            may_run(conn, by_id(conn, row.operator_id), list(versions), KIND)
        except PolicyRefusal:
            cause = None
            if row.status == ProductState.PUBLISHED:
                cause = cause_of(conn, row.operator_id, row.agreement_id, list(versions), KIND)
            if cause is not None:
                withdraw(platform, SERVICES, name, cause)
            raise
    if row.status != ProductState.PUBLISHED:
        raise PolicyRefusal(
            "service_withdrawn",
            f"scoring service '{name}' was withdrawn",
            article="Art. 24",
            subject=name,
            hint="the authority may publish it again once the agreement is active",
        )
    return Published(name, versions)


def _subject(item: Any, consent: Any) -> tuple[str, Consent]:
    """An item's normalised key and its consent (required: Art. 19)."""
    if not isinstance(item, Mapping):
        raise InputError('each subject is {"key": "<subject key>", "consent": {...}}')
    extra = sorted(set(item) - ITEM_FIELDS)
    if extra:
        raise InputError(
            f"unknown field '{str(extra[0])[:40]}': a scoring call carries the subject's key "
            "and consent only, never features (Art. 15)",
            article="Art. 15",
        )
    key = caller_value("key", item.get("key"))
    given = Consent.from_dict(item.get("consent") or consent)
    for text in given.to_dict().values():
        if len(key) >= 2 and key in normalise_key(text):
            raise InputError(
                "the consent's fields must not repeat the subject's key (it would reach "
                "the ledger); give a reference to your record"
            )
    return key, given


def _items(
    platform: Platform, secret: bytes, service: str, items: Sequence[Any], consent: Any
) -> list[Item]:
    """Each item checked, then every subject's grade looked up in one read."""
    subjects = [_subject(item, consent) for item in items]
    hashes = [subject_hash(secret, (key,)) for key, _ in subjects]
    with platform.store.read() as conn:
        grades = dict(
            conn.execute(
                select(score_index.c.subject_hash, score_index.c.grade).where(
                    score_index.c.service == service, score_index.c.subject_hash.in_(set(hashes))
                )
            ).all()
        )
    out = []
    for (key, given), subject in zip(subjects, hashes, strict=True):
        grade = grades.get(subject)
        values = (
            ("key", value_hash(secret, "key", key), True),
            (
                "consent.reference",
                value_hash(secret, "consent", normalise_key(given.reference)),
                False,
            ),
        )
        out.append(
            Item(
                subject=(key,),
                checks=(),
                subject_hash=subject,
                key_hash=key_hash(secret, service, (key,)),
                check_hash=None,
                consent=given,
                code=grade or NOT_FOUND,
                values=values,
                missed=grade is None,
            )
        )
    return out


def _unit(platform: Platform) -> tuple[ScoreUnit, GroupCommitter]:
    def make() -> tuple[ScoreUnit, GroupCommitter]:
        interval = platform.settings.verify.commit_interval_ms / 1000.0
        return ScoreUnit(platform, Limits.of(platform)), GroupCommitter(
            platform.store.engine, interval
        )

    return platform.shared("models.score_unit", make)


def call(
    platform: Platform,
    consumer: Principal,
    service: str,
    items: Sequence[Mapping[str, Any]],
    consent: Mapping[str, Any] | None = None,
) -> CallResult:
    """Grade up to 1,000 subjects; ``consent`` stands for every item without its own."""
    require_role(consumer, Role.CONSUMER, action="call scoring services", article="Art. 19")
    if not isinstance(items, Sequence) or not 1 <= len(items) <= MAX_BATCH:
        raise InputError(f"a call asks about 1 to {MAX_BATCH} subjects")
    published = _ready(platform, service)
    secret = load_secret(platform.home / "keys")
    prepared = _items(platform, secret, service, items, consent)
    unit, committer = _unit(platform)
    request_id = _secrets.token_hex(8)
    outcome = committer.run(
        lambda conn: unit.record(conn, consumer, published, request_id, prepared)  # type: ignore[arg-type]
    )
    if isinstance(outcome, SandboxError):
        raise outcome
    return outcome


def close(platform: Platform) -> None:
    """Stop the group committer of this platform object (tests, server shutdown)."""
    _unit(platform)[1].close()
