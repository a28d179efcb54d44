"""One verification call's unit of the group commit (:class:`CallUnit`), its results,
and the counters it reads and writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from policies.errors import PolicyRefusal, RateLimited, SandboxError
from policies.verification import (
    AdmittedRule,
    Consent,
    Definition,
    Signals,
    Standing,
    Thresholds,
    ValueLimits,
    assess,
    worse,
)
from sandbox.core import ledger as ledger_mod
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.core.store import insert_or
from sandbox.verification.index import IndexReader
from sandbox.verification.products import (
    product_row,
)
from sandbox.verification.tables import (
    verify_calls,
    verify_counters,
    verify_guesses,
    verify_standing,
)
from sandbox.verification.values import Tally, ValueGuard


@dataclass(frozen=True)
class ItemResult:
    code: str | None
    refused: str | None = None  # the rule that refused this subject
    message: str | None = None


@dataclass(frozen=True)
class CallResult:
    request_id: str
    product: str
    versions: Mapping[str, int]
    results: tuple[ItemResult, ...]
    ledger_seq: int

    @property
    def code(self) -> str | None:
        return self.results[0].code if len(self.results) == 1 else None

    def to_dict(self) -> dict:
        return {
            "request_id": self.request_id,
            "product": self.product,
            "versions": dict(self.versions),
            "results": [
                {"code": r.code, "refused": r.refused, "message": r.message} for r in self.results
            ],
        }


@dataclass
class Loaded:
    name: str
    definition: Definition
    rule: AdmittedRule
    reader: IndexReader
    versions: dict[str, int]
    index_path: str
    checked_at: float = 0.0


@dataclass(frozen=True)
class Item:
    subject: tuple[str, ...]
    checks: tuple[str, ...]
    subject_hash: str
    key_hash: str
    check_hash: str | None
    consent: Consent | None
    code: str
    # (field, keyed hash of the value, is a subject key) per input value, consent reference
    # included: the counts per value across all consumers (sandbox.verification.values)
    values: tuple[tuple[str, str, bool], ...] = ()
    # a miss whatever the definition's miss codes: a miss code, or the subject's rows do
    # not hold every value supplied (an unknown subject, a name that is not its name)
    missed: bool = False


@dataclass
class Limits:
    per_minute: int
    per_day: int
    subject_per_day: int
    throttled_per_minute: int
    thresholds: Thresholds = field(default_factory=Thresholds)
    values: ValueLimits = field(default_factory=ValueLimits)

    @classmethod
    def of(cls, platform: Platform) -> Limits:
        s = platform.settings
        return cls(
            per_minute=s.verify.consumer_per_minute,
            per_day=s.verify.consumer_per_day,
            subject_per_day=s.verify.subject_per_day,
            throttled_per_minute=s.verify.throttled_per_minute,
            thresholds=Thresholds(
                guess_ids_throttle=s.verify.guess_ids_throttle,
                guess_ids_block=s.verify.guess_ids_block,
                miss_min_calls=s.verify.miss_min_calls,
                miss_share_throttle=s.verify.miss_share_throttle,
                miss_share_block=s.verify.miss_share_block,
            ),
            values=ValueLimits(
                per_hour=s.verify.value_per_hour,
                per_day=s.verify.value_per_day,
                subject_lifetime=s.verify.subject_lifetime,
                alert_accounts=s.verify.alert_accounts,
            ),
        )


class CallUnit:
    """A call's unit of the group commit: under the store's write lock it checks the
    consumer's standing and allowances and the enumeration defence, then writes the
    counters, the ledger entry and the call rows."""

    guard: type[ValueGuard] = ValueGuard  # the counts per value; a service's own alert

    def __init__(self, platform: Platform, limits: Limits):
        self.platform = platform
        self.limits = limits
        self.values = self.guard(platform, limits.values)

    # -- inside the group commit: limits, defence, ledger
    def record(
        self,
        conn: Connection,
        consumer: Principal,
        loaded: Loaded,
        request_id: str,
        items: Sequence[Item],
    ) -> CallResult | SandboxError:
        """One call's unit of the group commit. A refusal is returned, not raised: what
        the unit wrote before it (the counters, an alert that blocks the consumer) must
        commit with the others' units; :meth:`call` raises it after the commit."""
        now = datetime.now(UTC)
        clock = _Clock(now.strftime("%Y-%m-%d"), now.strftime("%Y-%m-%dT%H:%M"), now)
        standing = _standing(conn, consumer, clock.day)
        if standing is Standing.BLOCKED:
            row = conn.execute(
                select(verify_standing.c.reason).where(verify_standing.c.consumer_id == consumer.id)
            ).scalar_one()
            return _blocked(consumer, row)
        over = self._over_rate(conn, consumer, len(items), standing, clock)
        if over is not None:
            return over
        epoch = int(now.timestamp())
        tally = self.values.tally(conn, epoch)
        results, seen, answered = self._per_subject(conn, items, clock.day, tally)
        new, reason = self._enumeration(
            conn, consumer, loaded, request_id, standing, answered, clock
        )
        _bump(conn, "consumer_minute", str(consumer.id), clock.minute, len(items))
        counted = [] if new is Standing.BLOCKED else answered
        self.values.record(
            conn,
            consumer,
            loaded.name,
            request_id,
            [i.values for i in items],
            [i.values for i in counted],
            epoch,
        )
        if new is Standing.BLOCKED:
            return _blocked(consumer, reason, now=True)
        for subject, count in seen.items():
            _bump(conn, "subject_day", subject, clock.day, count)
        seq = self._write_call(conn, consumer, loaded, request_id, items, results)
        return CallResult(request_id, loaded.name, dict(loaded.versions), tuple(results), seq)

    def _over_rate(
        self, conn: Connection, consumer: Principal, n: int, standing: Standing, clock: _Clock
    ) -> RateLimited | None:
        """The consumer's per-minute (lower when throttled) and per-day allowance."""
        me = str(consumer.id)
        throttled = standing is Standing.THROTTLED
        per_minute = self.limits.throttled_per_minute if throttled else self.limits.per_minute
        if _count(conn, "consumer_minute", me, clock.minute) + n > per_minute:
            setting = "verify.throttled_per_minute" if throttled else "verify.consumer_per_minute"
            wait = 60 - clock.now.second
            error = RateLimited(
                f"over {per_minute} verification subjects per minute (setting {setting}); "
                f"retry in {wait} s",
                article="Art. 19",
            )
            error.headers = {"Retry-After": str(wait)}
            return error
        if _count(conn, "consumer_day", me, clock.day) + n > self.limits.per_day:
            error = RateLimited(
                f"over {self.limits.per_day} verification subjects per day "
                "(setting verify.consumer_per_day); retry tomorrow (UTC)",
                article="Art. 19",
            )
            error.headers = {"Retry-After": str(_seconds_to_midnight(clock.now))}
            return error
        return None

    def _per_subject(
        self, conn: Connection, items: Sequence[Item], day: str, tally: Tally
    ) -> tuple[list[ItemResult], dict[str, int], list[Item]]:
        """The per-subject daily limit and the limits per value of each input field, across
        consumers and products: each item's result, the subjects answered with how often,
        and the items answered. Only counts decide, never the item's code."""
        results: list[ItemResult] = []
        seen: dict[str, int] = {}
        answered: list[Item] = []
        for item in items:
            asked = _count(conn, "subject_day", item.subject_hash, day)
            if asked + seen.get(item.subject_hash, 0) >= self.limits.subject_per_day:
                results.append(
                    ItemResult(
                        None,
                        "subject_daily_limit",
                        f"this subject was verified {self.limits.subject_per_day} times today "
                        "(setting verify.subject_per_day, Art. 19); ask again tomorrow",
                    )
                )
                continue
            verdict = tally.refusal(item.values)
            if verdict is not None:
                results.append(ItemResult(None, *verdict))
                continue
            seen[item.subject_hash] = seen.get(item.subject_hash, 0) + 1
            answered.append(item)
            results.append(ItemResult(item.code))
        return results, seen, answered

    def _enumeration(
        self,
        conn: Connection,
        consumer: Principal,
        loaded: Loaded,
        request_id: str,
        standing: Standing,
        answered: Sequence[Item],
        clock: _Clock,
    ) -> tuple[Standing, str]:
        """The enumeration defence with this call counted: records the misses, counts the
        consumer's day, judges (:func:`policies.verification.assess`) and, when the
        standing worsens, alerts. Returns the consumer's standing after this call and why."""
        me, day = str(consumer.id), clock.day
        misses = [i for i in answered if i.missed]  # not the definition's word alone
        for item in misses:
            if item.check_hash is not None:
                conn.execute(
                    insert_or(conn, verify_guesses)
                    .values(
                        consumer_id=consumer.id,
                        day=day,
                        check_hash=item.check_hash,
                        subject_hash=item.subject_hash,
                    )
                    .on_conflict_do_nothing()
                )
        touched = {i.check_hash for i in misses if i.check_hash is not None}
        most = max((_guesses(conn, consumer.id, day, check) for check in touched), default=0)
        calls = _count(conn, "consumer_day", me, day) + len(answered)
        missed = _count(conn, "consumer_miss_day", me, day) + len(misses)
        verdict, reason = assess(Signals(most, calls, missed), self.limits.thresholds)
        new = worse(standing, verdict)
        _bump(conn, "consumer_day", me, day, len(answered))
        _bump(conn, "consumer_miss_day", me, day, len(misses))
        if new is not standing:
            self._alert(conn, consumer, loaded, request_id, new, reason, day)
        return new, reason

    def _write_call(
        self,
        conn: Connection,
        consumer: Principal,
        loaded: Loaded,
        request_id: str,
        items: Sequence[Item],
        results: Sequence[ItemResult],
    ) -> int:
        """One ledger entry ``verify.call`` (keyed hashes, consent, codes; never a key
        value) and one ``verify_calls`` row per subject; returns the entry's number."""
        details = {
            "request_id": request_id,
            "product": loaded.name,
            "versions": loaded.versions,
            "items": [
                {
                    "subject_hash": i.subject_hash,
                    "key_hash": i.key_hash,
                    "code": r.code,
                    "refused": r.refused,
                    "consent": i.consent.to_dict() if i.consent else None,
                }
                for i, r in zip(items, results, strict=True)
            ],
        }
        seq = ledger_mod.append(
            conn,
            self.platform.key,
            consumer.actor,
            "verify.call",
            f"verification:{loaded.name}",
            details,
            "Art. 19",
        )
        stamp = now_utc()
        versions_json = json.dumps(loaded.versions)
        conn.execute(
            verify_calls.insert(),
            [
                {
                    "request_id": request_id,
                    "product": loaded.name,
                    "consumer_id": consumer.id,
                    "subject_hash": i.subject_hash,
                    "key_hash": i.key_hash,
                    "code": r.code,
                    "refusal": r.refused,
                    "consent_json": json.dumps(i.consent.to_dict()) if i.consent else None,
                    "versions_json": versions_json,
                    "ledger_seq": seq,
                    "ts": stamp,
                }
                for i, r in zip(items, results, strict=True)
            ],
        )
        return seq

    def _alert(
        self,
        conn: Connection,
        consumer: Principal,
        loaded: Loaded,
        request_id: str,
        standing: Standing,
        reason: str,
        day: str,
    ) -> None:
        from sandbox.workflow.supervision import notify

        stamp = now_utc()
        conn.execute(
            insert_or(conn, verify_standing)
            .values(
                consumer_id=consumer.id,
                status=standing.value,
                reason=reason,
                day=day,
                updated_at=stamp,
            )
            .on_conflict_do_update(
                index_elements=["consumer_id"],
                set_={"status": standing.value, "reason": reason, "day": day, "updated_at": stamp},
            )
        )
        details = {
            "kind": "consumer_standing",
            "consumer": consumer.name,
            "standing": standing.value,
            "reason": reason,
            "product": loaded.name,
            "request_id": request_id,
        }
        self.platform.record(
            conn, SYSTEM, "verify.alert", f"principal:{consumer.name}", details, "Art. 19"
        )
        row = product_row(conn, loaded.name)
        recipient = row.approved_by
        if recipient is not None:
            notify(
                self.platform,
                conn,
                SYSTEM,
                recipient,
                "verification_alert",
                f"principal:{consumer.name}",
                details,
                "Art. 19",
            )


@dataclass(frozen=True)
class _Clock:
    day: str  # the UTC day of the call, YYYY-MM-DD
    minute: str  # its minute, YYYY-MM-DDTHH:MM
    now: datetime


def _standing(conn: Connection, consumer: Principal, day: str) -> Standing:
    """The consumer's standing: a block lasts until the authority lifts it, a throttle
    for the rest of its day."""
    row = conn.execute(
        select(verify_standing).where(verify_standing.c.consumer_id == consumer.id)
    ).first()
    if row is not None and (row.status == Standing.BLOCKED or row.day == day):
        return Standing(row.status)
    return Standing.OK


def _blocked(consumer: Principal, reason: str, *, now: bool = False) -> PolicyRefusal:
    looked = "look" if now else "looked"
    return PolicyRefusal(
        "enumeration_blocked",
        f"your verification calls were blocked: they {looked} like guessing subjects ({reason})",
        article="Art. 19",
        subject=consumer.name,
        hint="the authority has been told; it may lift the block",
    )


def _guesses(conn: Connection, consumer_id: int, day: str, check: str) -> int:
    """How many subjects this consumer tried today with the same check values."""
    return conn.execute(
        select(func.count()).where(
            and_(
                verify_guesses.c.consumer_id == consumer_id,
                verify_guesses.c.day == day,
                verify_guesses.c.check_hash == check,
            )
        )
    ).scalar_one()


def _count(conn: Connection, kind: str, key: str, window: str) -> int:
    value = conn.execute(
        select(verify_counters.c.n).where(
            and_(
                verify_counters.c.kind == kind,
                verify_counters.c.key == key,
                verify_counters.c.window == window,
            )
        )
    ).scalar()
    return int(value or 0)


def _bump(conn: Connection, kind: str, key: str, window: str, n: int) -> None:
    if n <= 0:
        return
    conn.execute(
        insert_or(conn, verify_counters)
        .values(kind=kind, key=key, window=window, n=n)
        .on_conflict_do_update(
            index_elements=["kind", "key", "window"], set_={"n": verify_counters.c.n + n}
        )
    )


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((tomorrow - now).total_seconds()) + 1
